// Records what built the peer (rustc and the resolved versions of the crates that do the work)
// so that the records file's header can name them.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PEER_RUSTC_VERSION={version}");

    let lock =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.lock");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut crates = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("name = ") {
            name = v.trim_matches('"').to_string();
        } else if let Some(v) = line.strip_prefix("version = ") {
            if ["tokio", "reqwest", "hyper", "serde_json", "futures", "smol", "async-std", "async-io"].contains(&name.as_str()) {
                crates.push(format!("{}={}", name, v.trim_matches('"')));
            }
        }
    }
    println!("cargo:rustc-env=PEER_CRATES={}", crates.join(","));
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let opt = std::env::var("OPT_LEVEL").unwrap_or_default();
    println!("cargo:rustc-env=PEER_PROFILE={profile} (opt-level {opt})");
}
