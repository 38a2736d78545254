//! The Rust peer: N concurrent agents, each making K sequential streaming chat requests.
//!
//! It is the program a careful Rust developer would write for the job, on Debian's own crates:
//! tokio's default multi-threaded runtime, one shared `reqwest::Client` whose pool keeps a
//! connection per agent alive, responses read with `bytes_stream()` and decoded record by
//! record as they arrive. For the runtime ablation (bench/ablation) the same agents run on
//! other runtimes (`--runtime tokio-local|smol|async-std`, src/runtime.rs) and, where reqwest
//! cannot run natively, on hyper's own client connection (`--client hyper`). It writes one record per request as docs/records.md defines them, so
//! the same harness computes every figure of METRICS.md for this program, the Python peer and
//! chimeraforge alike.

mod runtime;

use futures::StreamExt;
use hyper::body::HttpBody;
use runtime::{Client, Runtime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PROGRAM: &str = "rust";
/// docs/records.md: a chunk is a stall when its delivery_lag exceeds 1 ms.
const STALL_NS: i64 = 1_000_000;
const ERROR_EXCERPT: usize = 300;

/// CLOCK_MONOTONIC in nanoseconds: the clock the synthetic server writes `server_sent_ns` on
/// (std's `Instant` reads it too, but does not expose the absolute value).
fn now_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64
}

/// A server's error field in words: a string as it is, anything else as JSON.
fn error_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(ERROR_EXCERPT) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Ollama,
    OpenAi,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Ollama => "ollama",
            Backend::OpenAi => "openai",
        }
    }
}

struct Args {
    endpoint: String,
    backend: Backend,
    agents: usize,
    requests_per_agent: usize,
    model: String,
    prompt: String,
    max_tokens: u32,
    records: Option<String>,
    record_lags: bool,
    stagger_ms: f64,
    timeout_s: f64,
    startup_probe: bool,
    ca_file: Option<String>,
    runtime: Runtime,
    client: Client,
}

const HELP: &str = "\
usage: rust-peer --endpoint URL --backend ollama|openai [--agents N] [--requests-per-agent K]
                 [--model M] [--prompt TEXT] [--max-tokens T] [--records FILE] [--record-lags]
                 [--timeout S] [--startup-probe] [--ca-file FILE]
                 [--runtime tokio|tokio-local|smol|async-std] [--client reqwest|hyper]

N concurrent agents, each making K sequential streaming chat requests to an Ollama or
OpenAI-compatible server, on tokio's multi-threaded runtime with one shared reqwest::Client
(by default); writes one record per request (docs/records.md).

options:
  -h, --help                show this help message and exit
  --endpoint URL            server base URL, e.g. http://127.0.0.1:11434 (the path is added;
                            plain http only)
  --backend ollama|openai   ollama: POST /api/chat (NDJSON);
                            openai: POST /v1/chat/completions (SSE)
  --agents N                concurrent agents, each a tokio task (default 1)
  --requests-per-agent K    sequential requests each agent makes (default 1)
  --model M                 model name sent to the server (default 'default')
  --prompt TEXT             the user message of every request (default 'Hello')
  --max-tokens T            tokens to generate: options.num_predict (ollama) or max_tokens
                            (openai) (default 32)
  --records FILE            write the records here (JSON lines, header first); required
                            unless --startup-probe
  --record-lags             also store every chunk's delivery_lag in lags_ns
  --stagger-ms MS           spread the agents' starts evenly over MS (agent i waits i/N of it)
  --timeout S               give up on a request not complete S seconds after it started
                            (default 300)
  --ca-file FILE            https: trust the CA certificates in this PEM file instead of
                            the system's (still verified)
  --startup-probe           make exactly one request (1 agent x 1) and exit; for measuring
                            startup
  --runtime R               what runs the agents (the runtime ablation, bench/ablation):
                            tokio (default: multi-threaded, one worker per core),
                            tokio-local (current-thread runtime + LocalSet, one thread),
                            smol (global executor, one thread per core), async-std (global
                            executor, one thread per core)
  --client C                reqwest (default on tokio and tokio-local: one shared client);
                            hyper (default on smol and async-std: hyper's own HTTP/1 client
                            connection on the runtime's sockets, one kept-alive connection
                            per agent; plain http only). reqwest on smol or async-std runs
                            through a tokio runtime bridge (its socket I/O on tokio's threads)

examples:
  # 4 agents x 5 requests against llama-server (OpenAI protocol), records to a file
  rust-peer --endpoint http://127.0.0.1:8080 --backend openai --agents 4 \\
      --requests-per-agent 5 --model tiny --prompt 'Say hi' --max-tokens 32 \\
      --records /tmp/rust.jsonl

  # 100 agents against Ollama's /api/chat (or chimeraforge synth-server), with every lag
  rust-peer --endpoint http://127.0.0.1:11434 --backend ollama --agents 100 \\
      --requests-per-agent 3 --model llama3.2:1b --prompt hi --max-tokens 64 \\
      --records /tmp/rust.jsonl --record-lags

  # startup: one request, then exit (the server notes when its first byte arrives)
  rust-peer --endpoint http://127.0.0.1:8080 --backend openai --model tiny --prompt hi \\
      --max-tokens 1 --startup-probe

The records file (docs/records.md) starts with a header line (\"kind\":\"header\") followed by
one JSON object per request; bench/peers/check_records.py validates one. Requests that fail
are recorded with \"ok\":false and the error in words; the run goes on. A request that fails
on a reused connection before any response byte (llama-server closes streaming connections
while advertising keep-alive) is retried once on a new connection, keeping its first t_send.
";

fn usage_error(msg: &str) -> ! {
    eprintln!("rust-peer: {msg}\nrun 'rust-peer --help' for the options");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut endpoint = None;
    let mut backend = None;
    let mut args = Args {
        endpoint: String::new(),
        backend: Backend::Ollama,
        agents: 1,
        requests_per_agent: 1,
        model: "default".into(),
        prompt: "Hello".into(),
        max_tokens: 32,
        records: None,
        record_lags: false,
        stagger_ms: 0.0,
        timeout_s: 300.0,
        startup_probe: false,
        ca_file: None,
        runtime: Runtime::Tokio,
        client: Client::Reqwest,
    };
    let mut client = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // Both "--flag value" and "--flag=value".
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        let mut value = |what: &str| -> String {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage_error(&format!("{name} needs {what}")))
        };
        fn number<T: std::str::FromStr>(name: &str, v: String) -> T {
            v.parse()
                .unwrap_or_else(|_| usage_error(&format!("{name}: '{v}' is not a number")))
        }
        match name.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--endpoint" => endpoint = Some(value("a URL")),
            "--backend" => {
                backend = Some(match value("ollama or openai").as_str() {
                    "ollama" => Backend::Ollama,
                    "openai" => Backend::OpenAi,
                    other => usage_error(&format!(
                        "--backend: '{other}' is neither ollama nor openai"
                    )),
                })
            }
            "--agents" => args.agents = number(&name, value("a count")),
            "--requests-per-agent" => args.requests_per_agent = number(&name, value("a count")),
            "--model" => args.model = value("a model name"),
            "--prompt" => args.prompt = value("a text"),
            "--max-tokens" => args.max_tokens = number(&name, value("a count")),
            "--records" => args.records = Some(value("a file name")),
            "--record-lags" => args.record_lags = true,
            "--stagger-ms" => args.stagger_ms = number(&name, value("milliseconds")),
            "--timeout" => args.timeout_s = number(&name, value("seconds")),
            "--startup-probe" => args.startup_probe = true,
            "--ca-file" => args.ca_file = Some(value("a PEM file")),
            "--runtime" => {
                let v = value("tokio, tokio-local, smol or async-std");
                args.runtime = Runtime::parse(&v).unwrap_or_else(|| {
                    usage_error(&format!(
                        "--runtime: '{v}' is none of tokio, tokio-local, smol, async-std"
                    ))
                })
            }
            "--client" => {
                let v = value("reqwest or hyper");
                client = Some(Client::parse(&v).unwrap_or_else(|| {
                    usage_error(&format!("--client: '{v}' is neither reqwest nor hyper"))
                }))
            }
            other => usage_error(&format!("unknown option '{other}'")),
        }
    }
    args.endpoint = endpoint.unwrap_or_else(|| usage_error("--endpoint URL is required"));
    args.backend = backend.unwrap_or_else(|| usage_error("--backend ollama|openai is required"));
    args.client = client.unwrap_or(args.runtime.native_client());
    if args.client == Client::Hyper && args.ca_file.is_some() {
        usage_error("--ca-file: --client hyper speaks plain http only; use --client reqwest");
    }
    if args.startup_probe {
        args.agents = 1;
        args.requests_per_agent = 1;
    } else if args.records.is_none() {
        usage_error("--records FILE is required (unless --startup-probe)");
    }
    if args.agents < 1 || args.requests_per_agent < 1 || args.max_tokens < 1 {
        usage_error("--agents, --requests-per-agent and --max-tokens must be at least 1");
    }
    if !(args.timeout_s > 0.0 && args.timeout_s.is_finite()) {
        usage_error("--timeout must be a positive number of seconds");
    }
    args
}

// ---------------------------------------------------------------------------------------------
// One request's record (keys as docs/records.md)

#[derive(Serialize)]
struct Record {
    program: &'static str,
    agent: usize,
    request: usize,
    ok: bool,
    error: String,
    t_send_ns: i64,
    t_first_token_ns: Option<i64>,
    t_last_token_ns: Option<i64>,
    t_done_ns: i64,
    first_byte_server_ns: Option<i64>,
    tokens_out: Option<i64>,
    chunks: u64,
    lag_sum_ns: i64,
    lag_max_ns: i64,
    stalls: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lags_ns: Option<Vec<i64>>,
}

/// The state of one request while its stream is read.
struct Request {
    t_first: Option<i64>,
    t_last: Option<i64>,
    first_byte_server: Option<i64>,
    tokens_out: Option<i64>,
    chunks: u64,
    lag_sum: i64,
    lag_max: i64,
    stalls: u64,
    lags: Option<Vec<i64>>,
    text: String,   // what an agent would keep: the reply
    finished: bool, // the server said the answer is complete
}

impl Request {
    fn new(record_lags: bool) -> Self {
        Request {
            t_first: None,
            t_last: None,
            first_byte_server: None,
            tokens_out: None,
            chunks: 0,
            lag_sum: 0,
            lag_max: 0,
            stalls: 0,
            lags: if record_lags { Some(Vec::new()) } else { None },
            text: String::new(),
            finished: false,
        }
    }

    /// Hands one token-bearing chunk to the caller: the per-chunk figures of METRICS.md.
    fn token(&mut self, server_sent_ns: Option<i64>, content: &str) {
        let now = now_ns();
        if self.t_first.is_none() {
            self.t_first = Some(now);
            self.first_byte_server = server_sent_ns;
        }
        self.t_last = Some(now);
        self.chunks += 1;
        if let Some(sent) = server_sent_ns {
            let lag = now - sent;
            self.lag_sum += lag;
            self.lag_max = self.lag_max.max(lag);
            if lag > STALL_NS {
                self.stalls += 1;
            }
            if let Some(lags) = self.lags.as_mut() {
                lags.push(lag);
            }
        }
        self.text.push_str(content);
    }
}

// ---------------------------------------------------------------------------------------------
// The two protocols: the request body and what one decoded stream record means

fn request_body(args: &Args) -> Value {
    let messages = serde_json::json!([{"role": "user", "content": args.prompt}]);
    match args.backend {
        Backend::Ollama => serde_json::json!({
            "model": args.model,
            "messages": messages,
            "options": {"num_predict": args.max_tokens},
            "stream": true,
        }),
        Backend::OpenAi => serde_json::json!({
            "model": args.model,
            "messages": messages,
            "max_tokens": args.max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        }),
    }
}

fn request_url(endpoint: &str, backend: Backend) -> String {
    let base = endpoint.trim_end_matches('/');
    match backend {
        Backend::Ollama => format!("{base}/api/chat"),
        Backend::OpenAi if base.ends_with("/v1") => format!("{base}/chat/completions"),
        Backend::OpenAi => format!("{base}/v1/chat/completions"),
    }
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().map_or(false, |s| !s.is_empty())
}

fn has_items(v: &Option<Vec<Value>>) -> bool {
    v.as_ref().map_or(false, |v| !v.is_empty())
}

#[derive(Deserialize)]
struct OllamaChunk {
    message: Option<OllamaMessage>,
    done: Option<bool>,
    eval_count: Option<i64>,
    error: Option<Value>,
    server_sent_ns: Option<i64>,
}

#[derive(Deserialize)]
struct OllamaMessage {
    content: Option<String>,
    thinking: Option<String>,
    tool_calls: Option<Vec<Value>>,
}

/// One NDJSON line of /api/chat.
fn ollama_record(line: &[u8], req: &mut Request) -> Result<(), String> {
    let c: OllamaChunk = serde_json::from_slice(line).map_err(|e| {
        format!(
            "a stream record is not what /api/chat sends ({e}): {}",
            excerpt(&String::from_utf8_lossy(line))
        )
    })?;
    if let Some(err) = c.error {
        return Err(format!(
            "the server reported an error mid-stream: {}",
            excerpt(&error_text(&err))
        ));
    }
    if let Some(m) = &c.message {
        if non_empty(&m.content) || non_empty(&m.thinking) || has_items(&m.tool_calls) {
            req.token(c.server_sent_ns, m.content.as_deref().unwrap_or(""));
        }
    }
    if c.done == Some(true) {
        if c.eval_count.is_some() {
            req.tokens_out = c.eval_count;
        }
        req.finished = true;
    }
    Ok(())
}

#[derive(Deserialize)]
struct OpenAiChunk {
    choices: Option<Vec<OpenAiChoice>>,
    usage: Option<OpenAiUsage>,
    timings: Option<LlamaTimings>,
    error: Option<Value>,
    server_sent_ns: Option<i64>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    index: Option<i64>,
    delta: Option<OpenAiDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiDelta {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    completion_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct LlamaTimings {
    predicted_n: Option<i64>,
}

/// The JSON of one SSE `data:` event of /v1/chat/completions.
fn openai_record(data: &[u8], req: &mut Request) -> Result<(), String> {
    let c: OpenAiChunk = serde_json::from_slice(data).map_err(|e| {
        format!(
            "a stream event is not what /v1/chat/completions sends ({e}): {}",
            excerpt(&String::from_utf8_lossy(data))
        )
    })?;
    if let Some(err) = c.error {
        return Err(format!(
            "the server reported an error mid-stream: {}",
            excerpt(&error_text(&err))
        ));
    }
    for ch in c.choices.iter().flatten() {
        if ch.index.unwrap_or(0) != 0 {
            continue; // one choice was asked for
        }
        if let Some(d) = &ch.delta {
            let reasoning = non_empty(&d.reasoning_content) || non_empty(&d.reasoning);
            if non_empty(&d.content) || reasoning || has_items(&d.tool_calls) {
                req.token(c.server_sent_ns, d.content.as_deref().unwrap_or(""));
            }
        }
        if ch.finish_reason.as_deref().map_or(false, |f| !f.is_empty()) {
            req.finished = true;
        }
    }
    if let Some(n) = c.usage.and_then(|u| u.completion_tokens) {
        req.tokens_out = Some(n);
    }
    if req.tokens_out.is_none() {
        req.tokens_out = c.timings.and_then(|t| t.predicted_n);
    }
    Ok(())
}

/// Splits the body into lines as bytes arrive (HTTP chunks are not record boundaries) and
/// decodes each record the moment its line is whole.
struct LineReader {
    buf: Vec<u8>,
    decoder: Decoder,
}

/// What one line means, per protocol.
struct Decoder {
    backend: Backend,
    sse_event: String,
}

impl LineReader {
    fn new(backend: Backend) -> Self {
        LineReader {
            buf: Vec::with_capacity(4096),
            decoder: Decoder {
                backend,
                sse_event: String::new(),
            },
        }
    }

    fn feed(&mut self, bytes: &[u8], req: &mut Request) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut result = Ok(());
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            result = self.decoder.line(&self.buf[start..end], req);
            start = end + 1;
            if result.is_err() {
                break;
            }
        }
        self.buf.drain(..start);
        result
    }

    fn finish(&mut self, req: &mut Request) -> Result<(), String> {
        let rest = std::mem::take(&mut self.buf);
        self.decoder.line(&rest, req)
    }
}

impl Decoder {
    fn line(&mut self, line: &[u8], req: &mut Request) -> Result<(), String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.backend {
            Backend::Ollama => {
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    return Ok(());
                }
                ollama_record(line, req)
            }
            Backend::OpenAi => {
                if line.is_empty() {
                    self.sse_event.clear(); // the end of one event
                } else if let Some(data) = line.strip_prefix(b"data:") {
                    let data = data.strip_prefix(b" ").unwrap_or(data);
                    if data == b"[DONE]" {
                        req.finished = true;
                    } else if self.sse_event == "error" {
                        return Err(format!(
                            "the server sent an error event mid-stream: {}",
                            excerpt(&String::from_utf8_lossy(data))
                        ));
                    } else {
                        openai_record(data, req)?;
                    }
                } else if let Some(ev) = line.strip_prefix(b"event:") {
                    self.sse_event = String::from_utf8_lossy(ev).trim().to_string();
                }
                // comments (":") and other fields carry nothing for us
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One request, with the retry rule

struct Shared {
    args: Args,
    url: String,
    body: bytes::Bytes,
    /// reqwest: shared by every agent; its pool keeps one connection per agent alive.
    client: Option<reqwest::Client>,
    /// reqwest: keeps no connection; used only to retry a request a closed pooled connection
    /// lost.
    fresh: Option<reqwest::Client>,
    /// hyper: where to connect ("host:port") and what to ask for (authority, path).
    target: Option<HyperTarget>,
    /// smol with reqwest: the tokio runtime each agent's future enters when it is polled.
    bridge: Option<tokio::runtime::Handle>,
    retries: AtomicUsize,
}

struct HyperTarget {
    addr: String,
    authority: String,
    path: String,
}

fn hyper_target(url: &str) -> HyperTarget {
    let uri: hyper::Uri = url
        .parse()
        .unwrap_or_else(|e| usage_error(&format!("--endpoint: '{url}' is not a URL: {e}")));
    if uri.scheme_str() != Some("http") {
        usage_error(&format!(
            "--endpoint {url}: --client hyper speaks plain http only"
        ));
    }
    let host = uri
        .host()
        .unwrap_or_else(|| usage_error(&format!("--endpoint {url}: no host")));
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| host.to_string());
    HyperTarget {
        addr: format!("{host}:{port}"),
        authority,
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    }
}

fn describe(e: &reqwest::Error) -> String {
    // reqwest's Display already carries its sources ("error sending request for url (...):
    // error trying to connect: ..."); for a connect error only the innermost cause says more.
    if e.is_connect() {
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        return cause.to_string();
    }
    e.to_string()
}

/// What a pooled connection that the server has already closed produces before any response
/// byte. reqwest does not say whether the connection was reused, so a failure that is neither a
/// connect error (a new connection) nor a timeout is taken for one; the retry is on a new
/// connection, so a request is never retried twice.
fn is_stale_connection_error(e: &reqwest::Error) -> bool {
    !e.is_connect() && !e.is_timeout() && !e.is_status() && !e.is_builder()
}

/// Reads a successful response's body line by line into `req`; the error says what broke.
async fn read_body<S, E>(sh: &Shared, req: &mut Request, mut stream: S) -> Result<(), String>
where
    S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let url = &sh.url;
    let mut reader = LineReader::new(sh.args.backend);
    while let Some(item) = stream.next().await {
        let bytes = item.map_err(|e| format!("{url}: {e} after {} chunks", req.chunks))?;
        reader
            .feed(&bytes, req)
            .map_err(|e| format!("{url}: {e}"))?;
    }
    reader.finish(req).map_err(|e| format!("{url}: {e}"))?;
    if !req.finished {
        let ending = match sh.args.backend {
            Backend::Ollama => "\"done\":true",
            Backend::OpenAi => "a finish_reason or [DONE]",
        };
        return Err(format!(
            "the stream from {url} ended without {ending} after {} chunks",
            req.chunks
        ));
    }
    Ok(())
}

async fn stream_request(
    sh: &Shared,
    req: &mut Request,
    t_send: &mut Option<i64>,
) -> Result<(), String> {
    let url = &sh.url;
    let mut response = None;
    for attempt in 0..2 {
        let client = if attempt == 0 { &sh.client } else { &sh.fresh };
        let builder = client
            .as_ref()
            .expect("reqwest clients exist with --client reqwest")
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(sh.body.clone());
        if t_send.is_none() {
            *t_send = Some(now_ns()); // a retry keeps the first attempt's t_send
        }
        match builder.send().await {
            Ok(r) => {
                response = Some(r);
                break;
            }
            Err(e) if attempt == 0 && is_stale_connection_error(&e) => {
                sh.retries.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.is_connect() => {
                return Err(format!(
                    "cannot connect to {url}: {}; is the server running?",
                    describe(&e)
                ))
            }
            Err(e) => return Err(format!("{url}: {}", describe(&e))),
        }
    }
    let response = response.expect("the loop ends with a response or returns");
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!(
            "HTTP {} from POST {url}: {}",
            status.as_u16(),
            excerpt(&text)
        ));
    }
    read_body(sh, req, response.bytes_stream()).await
}

/// One agent's kept-alive hyper connection (its own: hyper's client connection is not a pool).
type HyperConn = hyper::client::conn::SendRequest<hyper::Body>;

async fn hyper_connect(sh: &Shared) -> Result<HyperConn, String> {
    let target = sh.target.as_ref().expect("a target with --client hyper");
    let rt = sh.args.runtime;
    let io = runtime::connect(rt, &target.addr)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}; is the server running?", sh.url))?;
    let (sender, conn) = hyper::client::conn::handshake(io)
        .await
        .map_err(|e| format!("{}: HTTP/1 handshake: {e}", sh.url))?;
    runtime::detach(rt, async move {
        let _ = conn.await; // ends when the server closes or the sender is dropped
    });
    Ok(sender)
}

async fn hyper_request(
    sh: &Shared,
    conn: &mut Option<HyperConn>,
    req: &mut Request,
    t_send: &mut Option<i64>,
) -> Result<(), String> {
    let url = &sh.url;
    let target = sh.target.as_ref().expect("a target with --client hyper");
    let mut response = None;
    for attempt in 0..2 {
        // A kept connection the server has visibly closed is dropped here, as a pool would.
        let mut reused = false;
        if let Some(c) = conn.as_mut() {
            if futures::future::poll_fn(|cx| c.poll_ready(cx))
                .await
                .is_ok()
            {
                reused = true;
            } else {
                *conn = None;
            }
        }
        if conn.is_none() {
            *conn = Some(hyper_connect(sh).await?);
        }
        let request = hyper::Request::post(target.path.as_str())
            .header(hyper::header::HOST, target.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "*/*")
            .body(hyper::Body::from(sh.body.clone()))
            .expect("a valid request");
        if t_send.is_none() {
            *t_send = Some(now_ns()); // a retry keeps the first attempt's t_send
        }
        let sender = conn.as_mut().expect("connected above");
        match sender.send_request(request).await {
            Ok(r) => {
                response = Some(r);
                break;
            }
            // The close arrived late: once, on a new connection (the retry rule).
            Err(e) if attempt == 0 && reused && !e.is_parse() => {
                *conn = None;
                sh.retries.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                *conn = None;
                return Err(format!("{url}: {e}"));
            }
        }
    }
    let response = response.expect("the loop ends with a response or returns");
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        let text = hyper::body::to_bytes(body).await.unwrap_or_default();
        return Err(format!(
            "HTTP {} from POST {url}: {}",
            status.as_u16(),
            excerpt(&String::from_utf8_lossy(&text))
        ));
    }
    let result = read_body(sh, req, HyperChunks(body)).await;
    if result.is_err() {
        *conn = None; // never reuse a connection a stream broke on
    }
    result
}

/// hyper's body as a stream of data frames.
struct HyperChunks(hyper::Body);

impl futures::Stream for HyperChunks {
    type Item = Result<bytes::Bytes, hyper::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.0).poll_data(cx)
    }
}

async fn one_request(
    sh: &Shared,
    conn: &mut Option<HyperConn>,
    agent: usize,
    index: usize,
) -> Record {
    let mut req = Request::new(sh.args.record_lags);
    let mut t_send = None;
    let fallback_t_send = now_ns();
    let limit = Duration::from_secs_f64(sh.args.timeout_s);
    let rt = sh.args.runtime;
    let outcome = match sh.args.client {
        Client::Reqwest => {
            runtime::timeout(rt, limit, stream_request(sh, &mut req, &mut t_send)).await
        }
        Client::Hyper => {
            let r =
                runtime::timeout(rt, limit, hyper_request(sh, conn, &mut req, &mut t_send)).await;
            if r.is_none() {
                *conn = None; // the request was abandoned mid-way
            }
            r
        }
    };
    let result = match outcome {
        Some(r) => r,
        None => Err(format!(
            "{}: no complete answer within --timeout {} s after {} chunks",
            sh.url, sh.args.timeout_s, req.chunks
        )),
    };
    let t_done = now_ns();
    let (ok, error) = match result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e),
    };
    Record {
        program: PROGRAM,
        agent,
        request: index,
        ok,
        error,
        t_send_ns: t_send.unwrap_or(fallback_t_send),
        t_first_token_ns: req.t_first,
        t_last_token_ns: req.t_last,
        t_done_ns: t_done,
        first_byte_server_ns: req.first_byte_server,
        tokens_out: req.tokens_out,
        chunks: req.chunks,
        lag_sum_ns: req.lag_sum,
        lag_max_ns: req.lag_max,
        stalls: req.stalls,
        lags_ns: req.lags,
    }
}

async fn agent(sh: Arc<Shared>, agent: usize, t_start: std::time::Instant) -> Vec<Record> {
    if sh.args.stagger_ms > 0.0 {
        // Agent i starts at i/N of the stagger window, as every program compared does.
        let offset = sh.args.stagger_ms * 1e6 * agent as f64 / sh.args.agents as f64;
        runtime::sleep_until(
            sh.args.runtime,
            t_start + std::time::Duration::from_nanos(offset as u64),
        )
        .await;
    }
    let mut conn = None;
    let mut out = Vec::with_capacity(sh.args.requests_per_agent);
    for k in 0..sh.args.requests_per_agent {
        out.push(one_request(&sh, &mut conn, agent, k).await);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The records file

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    let field = |f: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (
        format!(
            "{} {} {}",
            field(&u.sysname),
            field(&u.release),
            field(&u.machine)
        ),
        field(&u.nodename),
    )
}

#[derive(Serialize)]
struct Header<'a> {
    kind: &'static str,
    program: &'static str,
    command: Vec<String>,
    endpoint: &'a str,
    url: &'a str,
    backend: &'static str,
    agents: usize,
    requests_per_agent: usize,
    model: &'a str,
    prompt: &'a str,
    max_tokens: u32,
    record_lags: bool,
    timeout_s: f64,
    env: Env,
}

#[derive(Serialize)]
struct Env {
    rustc: &'static str,
    crates: &'static str,
    profile: &'static str,
    runtime: String,
    client: String,
    os: String,
    cpu_model: String,
    cpu_count: usize,
    hostname: String,
}

fn header<'a>(args: &'a Args, url: &'a str) -> Header<'a> {
    let (os, hostname) = uname();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Header {
        kind: "header",
        program: PROGRAM,
        command: std::env::args().collect(),
        endpoint: &args.endpoint,
        url,
        backend: args.backend.name(),
        agents: args.agents,
        requests_per_agent: args.requests_per_agent,
        model: &args.model,
        prompt: &args.prompt,
        max_tokens: args.max_tokens,
        record_lags: args.record_lags,
        timeout_s: args.timeout_s,
        env: Env {
            rustc: env!("PEER_RUSTC_VERSION"),
            crates: env!("PEER_CRATES"),
            profile: env!("PEER_PROFILE"),
            // tokio's default multi-threaded runtime: one worker per core (--runtime tokio).
            runtime: args.runtime.describe(cores, args.client),
            client: match args.client {
                Client::Reqwest => "reqwest: one shared Client, its pool".into(),
                Client::Hyper => {
                    "hyper client::conn HTTP/1: one kept-alive connection per agent".into()
                }
            },
            os,
            cpu_model: cpu_model(),
            cpu_count: cores,
            hostname,
        },
    }
}

fn write_records(path: &str, head: &Header, records: &[Record]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer(&mut f, head)?;
    f.write_all(b"\n")?;
    for r in records {
        serde_json::to_writer(&mut f, r)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

fn summary(records: &[Record], wall_ns: i64, retries: usize) -> String {
    let ok = records.iter().filter(|r| r.ok).count();
    let tokens: i64 = records
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.tokens_out)
        .sum();
    let first_send = records.iter().map(|r| r.t_send_ns).min();
    let last_token = records.iter().filter_map(|r| r.t_last_token_ns).max();
    let tps = match (first_send, last_token) {
        (Some(a), Some(b)) if b > a => tokens as f64 / (b - a) as f64 * 1e9,
        _ => 0.0,
    };
    let mut line = format!(
        "{PROGRAM}: {ok}/{} requests ok, {tokens} tokens, wall {:.3} s, system_tps {tps:.1} \
         (derived: tokens / (last token - first send)), {retries} retried on a new connection",
        records.len(),
        wall_ns as f64 / 1e9
    );
    if let Some(r) = records.iter().find(|r| !r.ok) {
        line.push_str(&format!("; first error: {}", r.error));
    }
    line
}

fn main() {
    let args = parse_args();
    let url = request_url(&args.endpoint, args.backend);
    let body = bytes::Bytes::from(
        serde_json::to_vec(&request_body(&args)).expect("a JSON value serializes"),
    );
    let timeout = Duration::from_secs_f64(args.timeout_s);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // smol with reqwest: a tokio runtime of its own for reqwest's sockets and timers, entered
    // by every agent's future when smol polls it (async-std's tokio1 feature does the same).
    let bridge = (args.runtime == Runtime::Smol && args.client == Client::Reqwest).then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    let _entered = bridge.as_ref().map(|b| b.enter());
    let (client, fresh, target) = match args.client {
        Client::Reqwest => {
            // https (the `tls` feature, built as rust-peer-tls): native-tls (OpenSSL on Debian),
            // verified against the system's CAs, or against --ca-file alone (as curl's --cacert
            // and chimeraforge's --ca-file). The plain build has no TLS at all: with native-tls
            // compiled in, reqwest loads the system's CA bundle for every Client it builds, even
            // for http:// (about 6 MB and 50 ms at start), which an agent talking to a local
            // server would not pay.
            #[cfg(feature = "tls")]
            let ca = args.ca_file.as_ref().map(|path| {
                let pem = std::fs::read(path)
                    .unwrap_or_else(|e| usage_error(&format!("--ca-file {path}: {e}")));
                reqwest::Certificate::from_pem(&pem).unwrap_or_else(|e| {
                    usage_error(&format!("--ca-file {path}: not a PEM certificate: {e}"))
                })
            });
            #[cfg(not(feature = "tls"))]
            if args.ca_file.is_some() || args.endpoint.starts_with("https:") {
                usage_error(
                    "this rust-peer is built without TLS; https needs rust-peer-tls beside it \
                     (scripts/setup-peers.sh builds both)",
                );
            }
            let build = |max_idle: usize| {
                #[allow(unused_mut)]
                let mut b = reqwest::Client::builder()
                    .pool_max_idle_per_host(max_idle)
                    .connect_timeout(timeout);
                #[cfg(feature = "tls")]
                if let Some(cert) = &ca {
                    b = b
                        .tls_built_in_root_certs(false)
                        .add_root_certificate(cert.clone());
                }
                b.build()
                    .unwrap_or_else(|e| usage_error(&format!("cannot make an HTTP client: {e}")))
            };
            // reqwest's default: keep every idle connection
            (Some(build(usize::MAX)), Some(build(0)), None)
        }
        Client::Hyper => (None, None, Some(hyper_target(&url))),
    };
    let rt = args.runtime;
    let sh = Arc::new(Shared {
        url,
        body,
        client,
        fresh,
        target,
        bridge: bridge.as_ref().map(|b| b.handle().clone()),
        retries: AtomicUsize::new(0),
        args,
    });

    let run = {
        let sh = sh.clone();
        async move {
            let t0 = now_ns();
            let t_start = std::time::Instant::now();
            let tasks: Vec<_> = (0..sh.args.agents)
                .map(|a| runtime::spawn(rt, sh.bridge.as_ref(), agent(sh.clone(), a, t_start)))
                .collect();
            let mut records = Vec::with_capacity(sh.args.agents * sh.args.requests_per_agent);
            for (a, t) in tasks.into_iter().enumerate() {
                match t.await {
                    Ok(r) => records.extend(r),
                    Err(e) => eprintln!("{PROGRAM}: agent {a} stopped: {e}"),
                }
            }
            let wall = now_ns() - t0;

            if let Some(path) = &sh.args.records {
                if let Err(e) = write_records(path, &header(&sh.args, &sh.url), &records) {
                    eprintln!("{PROGRAM}: cannot write the records to {path}: {e}");
                    std::process::exit(2);
                }
            }
            eprintln!(
                "{}",
                summary(&records, wall, sh.retries.load(Ordering::Relaxed))
            );
            // 1: nothing was measured.
            std::process::exit(if records.iter().any(|r| r.ok) { 0 } else { 1 });
        }
    };
    runtime::block_on(rt, cores, run);
}
