//! Shared test server for the load generator tests: an in-process hyper HTTP/1.1 server
//! whose behaviour per request is decided by a closure (delays, statuses, streams, hangs).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Wait, then answer `status` with a JSON chat completion (or `body` if given).
    Json {
        delay: Duration,
        status: u16,
        body: Option<&'static str>,
    },
    /// Stream `tokens` content chunks, the first after `ttft`, then `gap` apart.
    Stream {
        anthropic: bool,
        ttft: Duration,
        gap: Duration,
        tokens: usize,
        usage: bool,
        /// Abort the connection after this many tokens.
        cut_after: Option<usize>,
    },
    /// Never answer.
    Hang,
}

impl Reply {
    pub fn ok(delay_ms: u64) -> Self {
        Reply::Json {
            delay: Duration::from_millis(delay_ms),
            status: 200,
            body: None,
        }
    }
}

pub type Behaviour = Arc<dyn Fn(u64) -> Reply + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    pub count: Arc<AtomicU64>,
    /// The path and `host` header of the latest request.
    pub last: Arc<Mutex<Option<(String, String)>>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

const COMPLETION: &str = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"tok tok tok "},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#;

type Body = BoxBody<Bytes, std::io::Error>;

fn full(s: &str) -> Body {
    Full::new(Bytes::from(s.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn handle(reply: Reply) -> Response<Body> {
    match reply {
        Reply::Json {
            delay,
            status,
            body,
        } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let text = body.unwrap_or(if status == 200 {
                COMPLETION
            } else {
                r#"{"error":{"message":"nope"}}"#
            });
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(full(text))
                .unwrap()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(full(""))
        }
        Reply::Stream {
            anthropic,
            ttft,
            gap,
            tokens,
            usage,
            cut_after,
        } => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
            tokio::spawn(async move {
                let send = |s: String| {
                    let tx = tx.clone();
                    async move { tx.send(Ok(Frame::data(Bytes::from(s)))).await.is_ok() }
                };
                if anthropic {
                    send("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n".into()).await;
                } else {
                    send("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n".into()).await;
                }
                tokio::time::sleep(ttft).await;
                for i in 0..tokens {
                    if i > 0 {
                        tokio::time::sleep(gap).await;
                    }
                    if cut_after == Some(i) {
                        let _ = tx.send(Err(std::io::Error::other("cut"))).await;
                        return;
                    }
                    let chunk = if anthropic {
                        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok \"}}\n\n".to_string()
                    } else {
                        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok \"}}]}\n\n"
                            .to_string()
                    };
                    if !send(chunk).await {
                        return;
                    }
                }
                if anthropic {
                    let u = if usage {
                        format!(",\"usage\":{{\"output_tokens\":{tokens}}}")
                    } else {
                        String::new()
                    };
                    send(format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}}{u}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n")).await;
                } else {
                    if usage {
                        send(format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":{tokens},\"total_tokens\":{}}}}}\n\n", tokens + 5)).await;
                    }
                    send("data: [DONE]\n\n".into()).await;
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
    }
}

/// Starts the server on 127.0.0.1:0 in its own thread and runtime.
pub fn start(behaviour: Behaviour) -> Server {
    start_on("127.0.0.1:0", behaviour).expect("binding 127.0.0.1:0")
}

/// Starts the server on `bind`; `None` when the address cannot be bound (no IPv6).
pub fn start_on(bind: &str, behaviour: Behaviour) -> Option<Server> {
    let listener = std::net::TcpListener::bind(bind).ok()?;
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(None));
    let c = count.clone();
    let seen = last.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                stream.set_nodelay(true).unwrap();
                let behaviour = behaviour.clone();
                let c = c.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let behaviour = behaviour.clone();
                            let c = c.clone();
                            let host = req
                                .headers()
                                .get("host")
                                .map(|h| h.to_str().unwrap().to_string());
                            *seen.lock().unwrap() =
                                Some((req.uri().path().to_string(), host.unwrap_or_default()));
                            async move {
                                let _ = req.into_body().collect().await;
                                let n = c.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, Infallible>(handle(behaviour(n)).await)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    Some(Server { addr, count, last })
}

/// Serves the mock upstream (the code its binary runs) on a port of its own, for the
/// test's life.
pub fn start_mock_upstream() -> SocketAddr {
    use clap::Parser;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let opts =
                mock_upstream::Opts::parse_from(["mock-upstream", "--listen", "127.0.0.1:0"]);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = mock_upstream::serve(listener, None, mock_upstream::Config::from(&opts)).await;
        });
    });
    rx.recv().unwrap()
}
