//! Run-time fault control (`/__mock/faults`), outages and `/__mock/stats`, against the
//! real binary.
//!
//! No assertion depends on timing: every change is checked after the admin answer that
//! confirms it, and the few asynchronous effects (a client going away) are polled for
//! with a generous deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::{chat_body, client, Mock};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on every raw socket operation, so a regression fails instead of hanging.
const IO_BOUND: Duration = Duration::from_secs(10);

async fn chat(mock: &Mock) -> reqwest::Result<reqwest::Response> {
    // A fresh client each time: no pooled connection carries state between calls.
    client()
        .post(mock.url("/v1/chat/completions"))
        .json(&chat_body(json!({})))
        .send()
        .await
}

/// Polls `GET /__mock/stats` until `done` holds (deadline 10 s).
async fn stats_until(mock: &Mock, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = mock.stats().await;
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: mock\r\n\r\n";

/// Sends `GET /health` on a raw connection and reads the whole answer.
async fn health_on(conn: &mut TcpStream) {
    conn.write_all(HEALTH).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"{\"status\":\"ok\"}") {
        let n = tokio::time::timeout(IO_BOUND, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Sends `GET /health` on a raw connection and expects an RST instead of an answer.
async fn health_is_reset(conn: &mut TcpStream) {
    conn.write_all(HEALTH).await.unwrap();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(IO_BOUND, conn.read(&mut buf))
        .await
        .unwrap();
    match read {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}"),
        Ok(n) => panic!(
            "expected a reset, read {n} bytes: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

#[tokio::test]
async fn runtime_rate_429_applies_until_reset() {
    let mock = Mock::start(&[]);
    let (status, settings) = mock
        .put_faults(json!({"rate_429": 1, "retry_after_s": 7}))
        .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(
        settings,
        json!({"error_rate": 0.0, "rate_429": 1.0, "hang_rate": 0.0, "reset_rate": 0.0,
               "retry_after_s": 7, "outage": "off"})
    );
    assert_eq!(mock.faults().await, settings);
    for _ in 0..5 {
        let resp = chat(&mock).await.unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
    }
    let resp = client()
        .post(mock.admin_url("/__mock/faults/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let settings: Value = resp.json().await.unwrap();
    assert_eq!(settings["rate_429"], 0.0);
    assert_eq!(settings["retry_after_s"], 1);
    for _ in 0..5 {
        assert_eq!(chat(&mock).await.unwrap().status(), 200);
    }
    let stats = mock.stats().await;
    assert_eq!(stats["completions"]["by_outcome"]["429"], 5, "{stats}");
    assert_eq!(stats["completions"]["by_outcome"]["200"], 5, "{stats}");
}

#[tokio::test]
async fn reset_restores_the_startup_flags() {
    let mock = Mock::start(&["--error-rate", "0.25", "--retry-after-s", "3"]);
    let startup = mock.faults().await;
    assert_eq!(startup["error_rate"], 0.25);
    assert_eq!(startup["retry_after_s"], 3);
    let (status, _) = mock
        .put_faults(json!({"error_rate": 0, "hang_rate": 0.5}))
        .await;
    assert_eq!(status, 200);
    let resp = client()
        .delete(mock.admin_url("/__mock/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), startup);
    assert_eq!(mock.faults().await, startup);
}

#[tokio::test]
async fn request_headers_still_override_runtime_settings() {
    let mock = Mock::start(&[]);
    assert_eq!(mock.put_faults(json!({"error_rate": 1})).await.0, 200);
    assert_eq!(chat(&mock).await.unwrap().status(), 500);
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-error-rate", "0")
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn bad_updates_get_400_naming_the_key_and_change_nothing() {
    let mock = Mock::start(&[]);
    let before = mock.faults().await;
    for (body, key, code) in [
        (
            json!({"rate_429": 1, "429_rate": 1}),
            "429_rate",
            "unknown_key",
        ),
        (json!({"error_rate": 1.5}), "error_rate", "invalid_value"),
        (json!({"reset_rate": "0.5"}), "reset_rate", "invalid_value"),
        (
            json!({"retry_after_s": -1}),
            "retry_after_s",
            "invalid_value",
        ),
        (json!({"outage": "down"}), "outage", "invalid_value"),
        // The main port is the only way in: a refuse outage could never be ended.
        (
            json!({"outage": "refuse"}),
            "outage",
            "admin_listener_required",
        ),
    ] {
        let (status, v) = mock.put_faults(body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], key, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(key), "{v}");
    }
    let resp = client()
        .put(mock.admin_url("/__mock/faults"))
        .body("rate_429=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.faults().await, before);
    let c = client();
    let post = c
        .post(mock.admin_url("/__mock/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    let unknown = c.get(mock.admin_url("/__mock/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn outage_refuse_closes_the_port_until_it_ends() {
    let mock = Mock::start(&["--admin-listen", "127.0.0.1:0"]);
    let mut kept = TcpStream::connect(mock.addr()).await.unwrap();
    health_on(&mut kept).await;
    // Open on the port through the whole outage, so the rebind must coexist with it.
    let mut idle = TcpStream::connect(mock.addr()).await.unwrap();
    health_on(&mut idle).await;

    let (status, settings) = mock.put_faults(json!({"outage": "refuse"})).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["outage"], "refuse");
    // The answer comes once the listening socket is closed.
    let err = TcpStream::connect(mock.addr()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    health_is_reset(&mut kept).await;
    let stats = mock.stats().await;
    assert_eq!(stats["listening"], false, "{stats}");
    assert_eq!(stats["outage"], "refuse", "{stats}");
    assert_eq!(stats["by_endpoint"]["health"]["outage_reset"], 1, "{stats}");

    let (status, settings) = mock.put_faults(json!({"outage": "off"})).await;
    assert_eq!(status, 200, "{settings}");
    // The answer comes once the port listens again.
    assert_eq!(chat(&mock).await.unwrap().status(), 200);
    let mut fresh = TcpStream::connect(mock.addr()).await.unwrap();
    health_on(&mut fresh).await;
    // It sent nothing during the outage, so nothing reset it.
    health_on(&mut idle).await;
    assert_eq!(mock.stats().await["listening"], true);
}

#[tokio::test]
async fn outage_reset_resets_every_request_but_not_admin() {
    let mock = Mock::start(&[]);
    let (status, settings) = mock.put_faults(json!({"outage": "reset"})).await;
    assert_eq!(status, 200, "{settings}");

    let err = chat(&mock).await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    // Connections are still accepted; the request is what gets the RST.
    let mut conn = TcpStream::connect(mock.addr()).await.unwrap();
    health_is_reset(&mut conn).await;

    // Admin stays reachable on the main port, and is not counted.
    let stats = mock.stats().await;
    assert_eq!(stats["outage"], "reset", "{stats}");
    assert_eq!(stats["listening"], true, "{stats}");
    assert_eq!(stats["completions"]["total"], 1, "{stats}");
    assert_eq!(
        stats["completions"]["by_outcome"]["outage_reset"], 1,
        "{stats}"
    );
    assert_eq!(stats["by_endpoint"]["health"]["outage_reset"], 1, "{stats}");

    assert_eq!(mock.put_faults(json!({"outage": "off"})).await.0, 200);
    assert_eq!(chat(&mock).await.unwrap().status(), 200);
    assert_eq!(
        mock.metric("mock_requests_total{endpoint=\"chat_completions\",status=\"outage_reset\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn stats_count_what_was_sent() {
    let mock = Mock::start(&[]);
    let c = client();
    let send = |path: &'static str, header: Option<(&'static str, &'static str)>| {
        let mut req = c.post(mock.url(path));
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let body = if path == "/v1/messages" {
            json!({"model": "c", "max_tokens": 8, "messages": []})
        } else {
            chat_body(json!({}))
        };
        req.json(&body).send()
    };
    for _ in 0..3 {
        send("/v1/chat/completions", None).await.unwrap();
    }
    for _ in 0..2 {
        send("/v1/messages", None).await.unwrap();
    }
    for _ in 0..2 {
        let resp = send("/v1/chat/completions", Some(("x-mock-429-rate", "1")));
        assert_eq!(resp.await.unwrap().status(), 429);
    }
    let resp = send("/v1/messages", Some(("x-mock-error-rate", "1")));
    assert_eq!(resp.await.unwrap().status(), 500);
    let reset = send("/v1/chat/completions", Some(("x-mock-reset-rate", "1")));
    assert!(reset.await.is_err());

    // A hung request and an open stream, both still running when stats are read.
    let hang_url = mock.url("/v1/chat/completions");
    let hung = tokio::spawn(async move {
        let _ = client()
            .post(hang_url)
            .header("x-mock-hang-rate", "1")
            .json(&chat_body(json!({})))
            .send()
            .await;
    });
    let stream = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-output-tokens", "50")
        .header("x-mock-token-delay-ms", "1000")
        .json(&chat_body(json!({"stream": true})))
        .send()
        .await
        .unwrap();
    let mut stream = stream.bytes_stream();
    stream.next().await.unwrap().unwrap();

    let stats = stats_until(&mock, "hung request counted", |s| {
        s["completions"]["by_outcome"]["hang"] == 1
    })
    .await;
    let completions = &stats["completions"];
    assert_eq!(completions["total"], 11, "{stats}");
    assert_eq!(completions["by_outcome"]["200"], 6, "{stats}");
    assert_eq!(completions["by_outcome"]["429"], 2, "{stats}");
    assert_eq!(completions["by_outcome"]["500"], 1, "{stats}");
    assert_eq!(completions["by_outcome"]["reset"], 1, "{stats}");
    assert_eq!(
        stats["by_endpoint"]["chat_completions"]["200"], 4,
        "{stats}"
    );
    assert_eq!(stats["by_endpoint"]["messages"]["200"], 2, "{stats}");
    assert_eq!(stats["by_endpoint"]["messages"]["500"], 1, "{stats}");
    assert_eq!(stats["in_flight_requests"], 2, "{stats}");
    assert_eq!(stats["open_streams"], 1, "{stats}");
    assert!(
        stats["connections_accepted"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    // Admin requests are not traffic: reading stats again changes no counter.
    assert_eq!(mock.stats().await["by_endpoint"], stats["by_endpoint"]);

    hung.abort();
    drop(stream);
    stats_until(&mock, "clients gone", |s| {
        s["in_flight_requests"] == 0 && s["open_streams"] == 0
    })
    .await;
    assert_eq!(mock.metric("mock_open_streams").await, 0.0);
}
