//! Every error path through the real binary: status, OpenAI error shape, the field
//! or upstream status named in the message, and the error metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    for k in ["message", "type", "param", "code"] {
        assert!(v["error"].get(k).is_some(), "error.{k} missing in {v}");
    }
    (status, v["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_routing_errors() {
    let (fake, gw) = setup().await;
    let body = json!({"model": "gpt", "messages": user_msg()});
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("invalid_api_key")));
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 401);

    let r = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "nope", "messages": user_msg()}),
        &[],
    )
    .await;
    let (s, e) = error_of(r).await;
    assert_eq!(s, 404);
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
    assert!(e["message"].as_str().unwrap().contains("nope"));

    let r = client().get(gw.url("/v2/what")).send().await.unwrap();
    assert_eq!(error_of(r).await.0, 404);
    let r = client()
        .get(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 405);
    assert_eq!(fake.count(), 0);

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="unauthorized",model="-",provider="-"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="model_not_found",model="-",provider="-"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="-",provider="-",status="401"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="-",provider="-",status="404"}"#
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_errors_name_the_field() {
    let (fake, gw) = setup().await;
    let send_raw = |body: &'static str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, e) = error_of(
        send_raw("{\"model\": \"gpt\", \"messages\": [")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(e["type"], "invalid_request_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("invalid request body"),
        "{e}"
    );

    let cases = [
        (json!({"model": "gpt"}), "messages"),
        (json!({"messages": user_msg()}), "model"),
        (json!({"model": 7, "messages": user_msg()}), "model"),
        (json!({"model": "gpt", "messages": "hi"}), "messages"),
        (
            json!({"model": "gpt", "messages": [{"content": "x"}]}),
            "messages[0]",
        ),
        (
            json!({"model": "gpt", "messages": [{"role": 1}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "gpt", "messages": user_msg(), "stream": "yes"}),
            "stream",
        ),
    ];
    for (body, field) in cases {
        let r = post(&gw, "/v1/chat/completions", body.clone(), &[]).await;
        let (s, e) = error_of(r).await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(e["param"], field, "{body}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(field),
            "{body}: {e}"
        );
    }
    assert_eq!(fake.count(), 0);

    // Translation to Anthropic refuses roles it cannot map, naming the field.
    let body = json!({"model": "claude", "messages": [{"role": "tool", "content": "x"}]});
    let (s, e) = error_of(post(&gw, "/v1/chat/completions", body, &[]).await).await;
    assert_eq!(s, 400);
    assert_eq!(e["param"], "messages[0].role");

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="invalid_request",model="-",provider="-"}"#
        ),
        8.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let (fake, gw) = setup().await;
    let big = "x".repeat(8000);
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": big}]});
    let (s, e) = error_of(post(&gw, "/v1/chat/completions", body, &[]).await).await;
    assert_eq!(s, 413);
    assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
    assert_eq!(fake.count(), 0);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="payload_too_large",model="-",provider="-"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_map_to_502_and_504() {
    let (_fake, gw) = setup().await;
    let body = json!({"model": "gpt", "messages": user_msg()});
    let (s, e) = error_of(
        post(
            &gw,
            "/v1/chat/completions",
            body.clone(),
            &[("x-fake-mode", "status500")],
        )
        .await,
    )
    .await;
    assert_eq!(s, 502);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("status 500") && msg.contains("boom upstream"),
        "{msg}"
    );
    assert_eq!(e["code"], "upstream_status");

    // Streaming requests fail the same way before any byte is sent.
    let sbody = json!({"model": "gpt", "messages": user_msg(), "stream": true});
    let (s, _) = error_of(
        post(
            &gw,
            "/v1/chat/completions",
            sbody,
            &[("x-fake-mode", "status500")],
        )
        .await,
    )
    .await;
    assert_eq!(s, 502);

    let t0 = std::time::Instant::now();
    let (s, e) = error_of(
        post(
            &gw,
            "/v1/chat/completions",
            body.clone(),
            &[("x-fake-mode", "hang")],
        )
        .await,
    )
    .await;
    assert_eq!(s, 504);
    assert_eq!(e["code"], "upstream_timeout");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));

    let dead = json!({"model": "dead", "messages": user_msg()});
    let (s, e) = error_of(post(&gw, "/v1/chat/completions", dead.clone(), &[]).await).await;
    assert_eq!(s, 502);
    assert_eq!(e["code"], "upstream_connect");
    assert!(e["message"].as_str().unwrap().contains("connect"), "{e}");

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="upstream_status",model="gpt",provider="up"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="upstream_timeout",model="gpt",provider="up"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="upstream_connect",model="dead",provider="dead"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="gpt",provider="up",status="502"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="gpt",provider="up",status="504"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&m, r#"llm_gateway_provider_health{provider="up"}"#),
        0.0
    );
    assert_eq!(
        metric(&m, r#"llm_gateway_provider_health{provider="dead"}"#),
        1.0
    );

    // Two more connect failures make three in a row: unhealthy.
    for _ in 0..2 {
        post(&gw, "/v1/chat/completions", dead.clone(), &[]).await;
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"llm_gateway_provider_health{provider="dead"}"#),
        0.0
    );

    // A success brings the provider back.
    let r = post(&gw, "/v1/chat/completions", body, &[]).await;
    assert_eq!(r.status(), 200);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"llm_gateway_provider_health{provider="up"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_is_cut_after_the_timeout() {
    let (_fake, gw) = setup().await;
    let body = json!({"model": "gpt", "messages": user_msg(), "stream": true});
    let t0 = std::time::Instant::now();
    let r = post(
        &gw,
        "/v1/chat/completions",
        body,
        &[("x-fake-mode", "stall-stream")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let mut failed = false;
    while let Some(c) = stream.next().await {
        match c {
            Ok(b) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the client must see the stream break, got {text}");
    assert!(text.contains("Hel") && !text.contains("[DONE]"));
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_errors_total{error_type="upstream_timeout",model="gpt",provider="up"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_active_requests{model="gpt",provider="up"}"#
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_body_is_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (fake, gw) = setup().await;
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("client_timeout"), "{text}");
    assert!(t0.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(fake.count(), 0);
}
