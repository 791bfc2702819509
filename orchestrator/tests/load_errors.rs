//! Every error class is counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod load_support;

use std::sync::Arc;
use std::time::Duration;

use load_support::{start, Reply};
use orchestrator::load::result::ErrorCounts;
use orchestrator::load::{
    run_phase, EngineOpts, LoadShape, PhasePlan, PhaseResult, PreparedRequest, RequestSpec,
};

fn iterations(url: &str, stream: bool, n: u64, timeout: Duration) -> PhaseResult {
    let spec = RequestSpec {
        stream,
        ..RequestSpec::default()
    };
    let req = PreparedRequest::new(&spec, url).unwrap();
    let mut shape = LoadShape::constant_vus(1, Duration::from_secs(20));
    if let LoadShape::Closed { iterations, .. } = &mut shape {
        *iterations = Some(n);
    }
    let plan = PhasePlan {
        name: "e".into(),
        shape,
        requests: vec![("e".into(), req)],
        timeout,
        warmup: false,
    };
    run_phase(&plan, &EngineOpts::default())
        .unwrap()
        .results
        .remove(0)
}

fn errors_of(reply: Reply, stream: bool) -> ErrorCounts {
    let server = start(Arc::new(move |_| reply.clone()));
    let r = iterations(&server.url(), stream, 3, Duration::from_millis(300));
    assert_eq!(r.requests.total, 3);
    assert_eq!(r.requests.ok, 0, "{:?}", r.requests);
    assert_eq!(r.latency_ms.count, 0);
    r.requests.errors
}

fn status(code: u16) -> Reply {
    Reply::Json {
        delay: Duration::ZERO,
        status: code,
        body: None,
    }
}

#[test]
fn http_statuses_are_classified() {
    assert_eq!(errors_of(status(429), false).http_429, 3);
    assert_eq!(errors_of(status(404), false).http_4xx, 3);
    assert_eq!(errors_of(status(503), false).http_5xx, 3);
}

#[test]
fn malformed_body_is_counted() {
    let e = errors_of(
        Reply::Json {
            delay: Duration::ZERO,
            status: 200,
            body: Some("{\"choices\": [oops"),
        },
        false,
    );
    assert_eq!(e.malformed, 3);
    let e = errors_of(
        Reply::Json {
            delay: Duration::ZERO,
            status: 200,
            body: Some("{\"id\": \"no choices\"}"),
        },
        false,
    );
    assert_eq!(e.malformed, 3);
}

#[test]
fn timeout_is_counted() {
    let e = errors_of(Reply::Hang, false);
    assert_eq!(e.timeout, 3);
}

#[test]
fn stream_cut_short_is_counted() {
    let e = errors_of(
        Reply::Stream {
            anthropic: false,
            ttft: Duration::from_millis(1),
            gap: Duration::from_millis(1),
            tokens: 5,
            usage: true,
            cut_after: Some(2),
        },
        true,
    );
    assert_eq!(e.stream_cut, 3, "{e:?}");
}

#[test]
fn connect_refused_is_counted() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let r = iterations(&format!("http://{addr}"), false, 3, Duration::from_secs(1));
    assert_eq!(r.requests.errors.connect, 3, "{:?}", r.requests);
}

#[test]
fn connection_closed_before_answer_is_counted() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            drop(s);
        }
    });
    let r = iterations(&format!("http://{addr}"), false, 3, Duration::from_secs(1));
    assert_eq!(r.requests.errors.connection, 3, "{:?}", r.requests);
}

#[test]
fn open_model_counts_dropped_requests() {
    let server = start(Arc::new(|_| Reply::ok(300)));
    let req = PreparedRequest::new(&RequestSpec::default(), &server.url()).unwrap();
    let plan = PhasePlan {
        name: "d".into(),
        shape: LoadShape::Open {
            rate_per_s: 50.0,
            duration: Duration::from_secs(1),
            max_in_flight: 2,
        },
        requests: vec![("d".into(), req)],
        timeout: Duration::from_secs(5),
        warmup: false,
    };
    let out = run_phase(&plan, &EngineOpts::default()).unwrap();
    let r = &out.results[0];
    // 50 due; at most 2 in flight for 300 ms each: about 8 sent, the rest dropped.
    assert_eq!(
        r.requests.total + r.requests.dropped,
        50,
        "{:?}",
        r.requests
    );
    assert!(r.requests.dropped >= 35, "{:?}", r.requests);
    assert!(r.requests.total >= 4, "{:?}", r.requests);
    assert!(out
        .warnings
        .iter()
        .any(|w| w.kind == orchestrator::load::result::ResultWarningKind::Dropped));
}

/// A server that closes kept-alive connections after 300 ms idle (like uvicorn's
/// keep-alive timeout): reusing such a connection must not count as an error.
#[test]
fn idle_connections_closed_by_the_server_are_replaced() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut buf = [0u8; 8192];
                // One request per read is enough for this client (no pipelining).
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let body = r#"{"choices":[],"usage":{"completion_tokens":1}}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() {
                        break;
                    }
                }
                // Idle timeout: the server closes.
            });
        }
    });
    // Open model at 0.8 requests/s: every send follows 1.25 s of idleness.
    let req = PreparedRequest::new(&RequestSpec::default(), &format!("http://{addr}")).unwrap();
    let plan = PhasePlan {
        name: "idle".into(),
        shape: LoadShape::Open {
            rate_per_s: 0.8,
            duration: Duration::from_millis(3000),
            max_in_flight: 1,
        },
        requests: vec![("idle".into(), req)],
        timeout: Duration::from_secs(2),
        warmup: false,
    };
    let opts = EngineOpts {
        threads: 1,
        ..EngineOpts::default()
    };
    let r = &run_phase(&plan, &opts).unwrap().results[0];
    assert_eq!(r.requests.total, 3, "{:?}", r.requests);
    assert_eq!(r.requests.ok, 3, "{:?}", r.requests);
}
