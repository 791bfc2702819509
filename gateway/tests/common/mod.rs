//! Shared test helpers: a scripted in-process fake upstream (OpenAI and Anthropic
//! shapes, SSE with delays, error statuses, hangs) and the real gateway binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const KEY: &str = "test-key";

/// One request the fake upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A running fake upstream.
pub struct Fake {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The script used when a request has no `x-fake-mode` header.
    pub mode: Arc<Mutex<String>>,
    /// Requests being answered right now (a handler or its stream still alive).
    pub open: Arc<AtomicI64>,
}

impl Fake {
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    /// Sets the script for requests without an `x-fake-mode` header.
    pub fn set_mode(&self, mode: &str) {
        *self.mode.lock().unwrap() = mode.to_string();
    }
}

/// Counts a request as open until dropped (with the handler, or with its stream).
struct Open(Arc<AtomicI64>);

impl Open {
    fn new(c: &Arc<AtomicI64>) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        Open(c.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type FakeBody = BoxBody<Bytes, Infallible>;

/// Starts the fake upstream on 127.0.0.1:0. The `x-fake-mode` request header (or
/// [`Fake::set_mode`]) picks the script: `ok` (default), `slow` (answers after
/// 40 ms), `slow-stream` (300 ms pause after the first content chunk), `status500`,
/// `status400`, `status429` (`retry-after: 1`), `status429-fast` (`retry-after-ms:
/// 150`), `reset` (connection closed without an answer), `hang` (no answer for
/// 10 s), `stall-stream` (stream stops sending after the first content chunk),
/// `sleep-N` (answers after N ms).
pub async fn fake_upstream() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(Mutex::new("ok".to_string()));
    let open = Arc::new(AtomicI64::new(0));
    let shared = (seen.clone(), mode.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (seen, mode, open) = shared.clone();
                    async move {
                        let guard = Open::new(&open);
                        let default = mode.lock().unwrap().clone();
                        answer(seen, req, default, guard).await
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Fake {
        port,
        seen,
        mode,
        open,
    }
}

fn full(status: u16, body: String) -> Response<FakeBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

fn sse(events: Vec<(Duration, String)>, guard: Open) -> Response<FakeBody> {
    let s = futures_util::stream::iter(events).then(move |(delay, text)| {
        let _held = &guard;
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(Frame::data(Bytes::from(text)))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(s)))
        .unwrap()
}

fn data(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn event(name: &str, v: Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

/// The answers that do not depend on the request's body.
fn scripted(mode: &str) -> Option<Response<FakeBody>> {
    let error = |status: u16, kind: &str, code: &str, message: &str| {
        full(
            status,
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
                .to_string(),
        )
    };
    let mut r = match mode {
        "status500" => error(500, "server_error", "boom", "boom upstream"),
        "status400" => error(
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "too many tokens upstream",
        ),
        "status429" | "status429-fast" => {
            error(429, "requests", "rate_limit_exceeded", "slow down upstream")
        }
        _ => return None,
    };
    let h = r.headers_mut();
    match mode {
        "status429" => h.insert("retry-after", "1".parse().unwrap()),
        "status429-fast" => h.insert("retry-after-ms", "150".parse().unwrap()),
        _ => None,
    };
    Some(r)
}

async fn answer(
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
    default_mode: String,
    guard: Open,
) -> Result<Response<FakeBody>, std::io::Error> {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let mode = headers
        .get("x-fake-mode")
        .and_then(|v| v.to_str().ok())
        .map_or(default_mode, str::to_string);
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers,
        body: body.clone(),
    });
    if let Some(r) = scripted(&mode) {
        return Ok(r);
    }
    match mode.as_str() {
        "reset" => return Err(std::io::Error::other("reset by the script")),
        "hang" => tokio::time::sleep(Duration::from_secs(10)).await,
        "slow" => tokio::time::sleep(Duration::from_millis(40)).await,
        m => {
            if let Some(ms) = m.strip_prefix("sleep-").and_then(|v| v.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let stream = body["stream"] == json!(true);
    let pause = if mode == "slow-stream" {
        Duration::from_millis(300)
    } else {
        Duration::ZERO
    };
    let stall = if mode == "stall-stream" {
        Duration::from_secs(10)
    } else {
        Duration::ZERO
    };
    let z = Duration::ZERO;
    if path == "/v1/messages" {
        if !stream {
            return Ok(full(
                200,
                json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                       "content": [{"type": "text", "text": "Hello!"}],
                       "stop_reason": "max_tokens", "stop_sequence": null,
                       "usage": {"input_tokens": 9, "output_tokens": 3}})
                .to_string(),
            ));
        }
        let delta = |t: &str| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": t}}),
            )
        };
        return Ok(sse(
            vec![
                (
                    z,
                    event(
                        "message_start",
                        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
                       "role": "assistant", "model": model, "content": [], "stop_reason": null,
                       "usage": {"input_tokens": 9, "output_tokens": 1}}}),
                    ),
                ),
                (
                    z,
                    event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": 0,
                           "content_block": {"type": "text", "text": ""}}),
                    ),
                ),
                (z, event("ping", json!({"type": "ping"}))),
                (z, delta("Hel")),
                (pause + stall, delta("lo")),
                (z, delta("!")),
                (
                    z,
                    event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": 0}),
                    ),
                ),
                (
                    z,
                    event(
                        "message_delta",
                        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 3}}),
                    ),
                ),
                (z, event("message_stop", json!({"type": "message_stop"}))),
            ],
            guard,
        ));
    }
    if !stream {
        return Ok(full(
            200,
            json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
            .to_string(),
        ));
    }
    let chunk = |delta: Value, finish: Value| {
        data(
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                    "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![
        (
            z,
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        ),
        (z, chunk(json!({"content": "Hel"}), Value::Null)),
        (pause + stall, chunk(json!({"content": "lo"}), Value::Null)),
        (z, chunk(json!({"content": "!"}), Value::Null)),
        (z, chunk(json!({}), json!("stop"))),
    ];
    if body["stream_options"]["include_usage"] == json!(true) {
        events.push((
            z,
            data(
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                        "model": model, "choices": [],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}),
            ),
        ));
    }
    events.push((z, "data: [DONE]\n\n".to_string()));
    Ok(sse(events, guard))
}

/// A port nothing listens on.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The standard test config routed to the fake upstream on `port`: one attempt per
/// request and no breakers, so each test sees exactly what one upstream call gives
/// (`tests/resilience.rs` covers retries, breakers and fallbacks).
pub fn config(port: u16) -> String {
    let dead = dead_port();
    format!(
        r#"
listen: 127.0.0.1:0
threads: 1
api_keys: [{KEY}]
limits: {{max_body_bytes: 4096, upstream_timeout_ms: 1000, connect_timeout_ms: 1000, client_body_timeout_ms: 300}}
forward_headers: [x-fake-]
resilience: {{retries: 0, breaker: {{enabled: false}}}}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: "up-key"}}
  claude: {{type: anthropic, base_url: "http://127.0.0.1:{port}", api_key: "ant-key", default_max_tokens: 333}}
  dead: {{type: openai, base_url: "http://127.0.0.1:{dead}/v1"}}
  local: {{type: loopback, output_tokens: 5}}
  tls: {{type: openai, base_url: "https://127.0.0.1:{port}/v1"}}
models:
  - {{name: gpt, provider: up, upstream_model: gpt-upstream}}
  - {{name: plain, provider: up}}
  - {{name: claude, provider: claude, upstream_model: claude-up}}
  - {{name: dead, provider: dead}}
  - {{name: loop, provider: local}}
  - {{name: tls, provider: tls}}
"#
    )
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Writes `text` to a fresh temp file.
pub fn temp_config(text: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("gateway-test-{}-{n}.yaml", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

/// The real gateway binary, killed on drop.
pub struct Gateway {
    child: Child,
    config: PathBuf,
    pub base: String,
}

impl Gateway {
    /// Starts the binary with `config_text` and waits for its `listening on` line.
    pub fn start(config_text: &str) -> Gateway {
        let config = temp_config(config_text);
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("gateway did not print its address");
        Gateway {
            child,
            config,
            base: format!("http://{addr}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(t0.elapsed() < limit, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Starts a fake upstream and a gateway in front of it.
pub async fn setup() -> (Fake, Gateway) {
    let fake = fake_upstream().await;
    let gw = Gateway::start(&config(fake.port));
    (fake, gw)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs JSON to `path` with the test key.
pub async fn post(
    gw: &Gateway,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = client().post(gw.url(path)).bearer_auth(KEY).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// The value of the series whose text (name and labels) is exactly `series`.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The `event:` names of an SSE body.
pub fn sse_events(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_string)
        .collect()
}

pub fn user_msg() -> Value {
    json!([{"role": "user", "content": "hi"}])
}
