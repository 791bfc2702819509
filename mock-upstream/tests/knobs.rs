//! Every knob and injected fault, against the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, client, sse_events, Mock};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn stream_body() -> Value {
    chat_body(json!({"stream": true}))
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let mock = Mock::start(&[]);
    let started = Instant::now();
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-latency-ms", "150")
        .header("x-mock-jitter-ms", "20")
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn latency_flag_sets_the_default() {
    let mock = Mock::start(&["--latency-ms", "120"]);
    let started = Instant::now();
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn ttft_delays_the_first_content_token() {
    let mock = Mock::start(&[]);
    let started = Instant::now();
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-ttft-ms", "150")
        .header("x-mock-output-tokens", "2")
        .json(&stream_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while let Some(chunk) = stream.next().await {
        seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if seen.contains("\"content\":\"tok \"") {
            break;
        }
    }
    assert!(seen.contains("\"content\":\"tok \""), "{seen}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn token_delay_paces_the_stream() {
    let mock = Mock::start(&[]);
    let started = Instant::now();
    let resp = client()
        .post(mock.url("/v1/messages"))
        .header("x-mock-output-tokens", "5")
        .header("x-mock-token-delay-ms", "30")
        .json(&json!({"model": "c", "max_tokens": 10, "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(text.matches("event: content_block_delta").count(), 5);
    assert!(elapsed >= Duration::from_millis(5 * 30), "{elapsed:?}");
}

#[tokio::test]
async fn error_rate_one_gives_500() {
    let mock = Mock::start(&[]);
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let resp = client()
            .post(mock.url(path))
            .header("x-mock-error-rate", "1")
            .json(&stream_body())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains("injected"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn rate_429_one_gives_429_with_retry_after() {
    let mock = Mock::start(&[]);
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-429-rate", "1.0")
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-429-rate", "1")
        .header("x-mock-retry-after-s", "30")
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "30");
}

#[tokio::test]
async fn error_rate_flag_applies_a_share() {
    let mock = Mock::start(&["--error-rate", "0.5"]);
    let c = client();
    let mut errors = 0;
    for _ in 0..200 {
        let resp = c
            .post(mock.url("/v1/chat/completions"))
            .json(&chat_body(json!({})))
            .send()
            .await
            .unwrap();
        if resp.status() == 500 {
            errors += 1;
        }
        resp.bytes().await.unwrap();
    }
    // Binomial(200, 0.5): outside 60..140 has probability far below 1e-8.
    assert!((60..140).contains(&errors), "{errors}");
}

#[tokio::test]
async fn hang_rate_one_never_answers_until_the_client_leaves() {
    let mock = Mock::start(&[]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = c
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-hang-rate", "1")
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        mock.metric("mock_requests_total{endpoint=\"chat_completions\",status=\"hang\"}")
            .await,
        1.0
    );
    // The client closed its connection: the hung request must be released.
    let deadline = Instant::now() + Duration::from_secs(3);
    while mock.metric("mock_in_flight_requests").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "hung request still in flight after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reset_rate_one_fails_a_plain_request() {
    let mock = Mock::start(&[]);
    let err = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-reset-rate", "1")
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(
        mock.metric("mock_requests_total{endpoint=\"chat_completions\",status=\"reset\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn reset_rate_one_cuts_a_stream_midway() {
    let mock = Mock::start(&[]);
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-reset-rate", "1")
        .header("x-mock-output-tokens", "6")
        .json(&stream_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => seen.push_str(std::str::from_utf8(&bytes).unwrap()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "stream ended cleanly: {seen}");
    assert!(!seen.contains("[DONE]"), "{seen}");
    let events = sse_events(&seen);
    // Role chunk and half of the tokens arrive before the cut.
    assert!(events.len() <= 4, "{seen}");
    assert_eq!(
        mock.metric("mock_output_tokens_total{endpoint=\"chat_completions\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn bad_knob_headers_get_400_naming_the_header() {
    let mock = Mock::start(&[]);
    for (name, value) in [
        ("x-mock-latency-ms", "soon"),
        ("x-mock-error-rate", "1.5"),
        ("x-mock-output-tokens", "-3"),
        ("x-mock-tokens", "3"),
    ] {
        let resp = client()
            .post(mock.url("/v1/chat/completions"))
            .header(name, value)
            .json(&chat_body(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{name}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], name);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(name),
            "{v}"
        );
    }
}

#[test]
fn bad_knob_flag_is_rejected_at_startup() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
        .args(["--listen", "127.0.0.1:0", "--hang-rate", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--hang-rate") && stderr.contains("between 0 and 1"),
        "{stderr}"
    );
}
