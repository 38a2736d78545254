"""Tests of the runtime ablation command (bench/ablation/ablation.py).

  /usr/bin/python3 -m unittest discover -s tests/bench -v

The command runs end to end on a tiny workload (1 repetition, 2 agents x 1 request of 4 tokens)
against a synthetic server it starts, and its JSON and Markdown must say what docs/ablation.md
promises: one row per variant, every chimeraforge executor measured, every Rust runtime measured
when the Rust peer is built with --runtime, and rows that say why when it is not (a peer that
does not exist). CHIMERA_CLI names the chimeraforge binary (default: build/apps/chimeraforge/
chimeraforge). The Rust peer's part is skipped, saying so, when its binary is not built.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = os.environ.get("CHIMERA_CLI", str(ROOT / "build/apps/chimeraforge/chimeraforge"))
ABLATION = ROOT / "bench/ablation/ablation.py"
RUST_PEER = ROOT / "bench/peers/rust/target/release/rust-peer"
EXECUTORS = ("single", "shared", "per-core", "thread-per-agent")
RUST_VARIANTS = ("rust-tokio", "rust-tokio-local", "rust-smol", "rust-async-std",
                 "rust-async-std-reqwest", "rust-smol-reqwest", "rust-tokio-hyper")


def rust_peer_has_runtimes():
    if not os.access(RUST_PEER, os.X_OK):
        return False
    out = subprocess.run([str(RUST_PEER), "--help"], capture_output=True, text=True).stdout
    return "--runtime" in out


def run_ablation(out, *extra):
    argv = ["/usr/bin/python3", str(ABLATION), "--cli", CLI, "--runs", "1", "--agents", "2",
            "--requests-per-agent", "1", "--tokens", "4", "--rate", "400", "--run-timeout", "60",
            "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=280)


@unittest.skipUnless(os.access(CLI, os.X_OK), f"chimeraforge is not built ({CLI})")
class Ablation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="chimera-ablation-test-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def load(self, out):
        result = json.loads((out / "ablation.json").read_text())
        table = (out / "ablation.md").read_text()
        self.assertEqual(result["kind"], "ablation")
        self.assertEqual(result["schema"], 1)
        self.assertEqual(result["runs"], 1)
        self.assertEqual(result["workload"]["agents"], 2)
        return result, table, {v["name"]: v for v in result["variants"]}

    def check_measured(self, v, table):
        self.assertEqual(v["status"], "ok", f"{v['name']}: {v['reason']}")
        eff = v["figures"]["efficiency"]
        self.assertEqual(eff["n"], 1)
        # measured, not judged: how far a loaded machine lowers it is not this test's business
        self.assertGreater(eff["mean"], 0.0)
        self.assertEqual(eff["min"], eff["max"])
        self.assertIsNone(eff["sd"])  # one repetition has no spread
        self.assertIsNotNone(v["figures"]["contention"]["mean"])
        self.assertIn(f"| {v['name']} |", table)

    def test_executors_and_a_missing_rust_peer(self):
        out = self.tmp / "no-rust"
        p = run_ablation(out, "--rust-peer", str(self.tmp / "missing-peer"))
        # the Rust rows could not run: exit status 1, with every file written
        self.assertEqual(p.returncode, 1, p.stdout[-3000:] + p.stderr[-3000:])
        result, table, rows = self.load(out)
        self.assertEqual(set(rows), {*RUST_VARIANTS, *(f"chimeraforge-{e}" for e in EXECUTORS)})
        for e in EXECUTORS:
            self.check_measured(rows[f"chimeraforge-{e}"], table)
        for name in RUST_VARIANTS:
            self.assertEqual(rows[name]["status"], "not run")
            self.assertIn("the Rust peer is not built", rows[name]["reason"])
            self.assertIn("missing-peer", rows[name]["reason"])
        self.assertIn("not run: the Rust peer is not built", table)
        # the study's figures beside ours, with the source
        self.assertEqual(rows["rust-tokio"]["study"]["efficiency"], 0.987)
        self.assertIn("TR115", rows["rust-tokio"]["study"]["source"])
        self.assertIn("98.7% (sd 1.21 pp)", table)
        self.assertIsNone(rows["chimeraforge-single"]["study"])
        self.assertTrue(all(r["agents"] in (1, 2) for r in result["repetitions"]))

    @unittest.skipUnless(rust_peer_has_runtimes(),
                         f"the Rust peer is not built with --runtime ({RUST_PEER}): "
                         "bash scripts/setup-peers.sh")
    def test_every_rust_runtime(self):
        out = self.tmp / "rust"
        p = run_ablation(out, "--variants", *RUST_VARIANTS, "chimeraforge-single")
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])
        _result, table, rows = self.load(out)
        self.assertEqual(set(rows), {*RUST_VARIANTS, "chimeraforge-single"})
        for name in RUST_VARIANTS:
            self.check_measured(rows[name], table)
        runs = [r for r in _result["repetitions"] if r["variant"] == "rust-smol"]
        self.assertIn("--runtime smol", runs[0]["command"])

    def test_a_running_synthetic_server(self):
        # --synth-url: the command uses it as it is and reports its rate and first-token delay
        spec = importlib.util.spec_from_file_location("compare",
                                                      ROOT / "bench/compare/compare.py")
        compare = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(compare)
        server = compare.start_synth(CLI, "synth-ablation-test", 5, 300, 6, 1, self.tmp)
        try:
            out = self.tmp / "external"
            p = run_ablation(out, "--synth-url", server.url, "--variants", "chimeraforge-single")
            stats = compare.http(server.url + "/stats")
        finally:
            server.stop()
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])
        result, table, rows = self.load(out)
        self.assertEqual(list(rows), ["chimeraforge-single"])
        self.check_measured(rows["chimeraforge-single"], table)
        w = result["workload"]
        self.assertEqual((w["synth_url"], w["tokens_per_s"], w["ttft_ms"]), (server.url, 300, 5))
        self.assertIn(server.url, table)
        # the lone agent's request and the two agents' requests, 4 tokens each, came from it
        self.assertEqual(stats["tokens_sent"], 3 * 4)

    def test_usage_errors(self):
        p = subprocess.run(["/usr/bin/python3", str(ABLATION), "--variants", "rust-tokoi"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown variant 'rust-tokoi'", p.stderr)
        p = subprocess.run(["/usr/bin/python3", str(ABLATION), "--cli", CLI, "--synth-url",
                            "http://127.0.0.1:9", "--out", str(self.tmp / "x")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--synth-url http://127.0.0.1:9: no synthetic server answers", p.stderr)


if __name__ == "__main__":
    unittest.main()
