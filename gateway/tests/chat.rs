//! `POST /v1/chat/completions` through the real binary: pass-through to an OpenAI
//! upstream, translation to an Anthropic upstream, loopback, plus /v1/models,
//! /health and the metrics those requests move.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_passes_through_with_model_rewrite() {
    let (fake, gw) = setup().await;
    let body =
        json!({"model": "gpt", "messages": user_msg(), "temperature": 0.5, "extra": {"k": [1, 2]}});
    let r = post(
        &gw,
        "/v1/chat/completions",
        body,
        &[("x-fake-note", "n1"), ("x-other", "no")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gateway-deployment"], "up");
    assert_eq!(r.headers()["x-gateway-attempts"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello!");
    // The upstream answered as gpt-upstream; the client sees the model it asked for.
    assert_eq!(v["model"], "gpt");
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-upstream");
    assert_eq!(seen.body["extra"], json!({"k": [1, 2]}));
    assert_eq!(seen.body["temperature"], 0.5);
    assert_eq!(seen.headers["authorization"], "Bearer up-key");
    assert_eq!(seen.headers["x-fake-note"], "n1");
    assert!(seen.headers.get("x-other").is_none());

    // Same model name upstream: body forwarded unchanged.
    let r = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "plain", "messages": user_msg()}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(fake.last().body["model"], "plain");

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="gpt",provider="up",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="input",model="gpt",provider="up"}"#
        ),
        7.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="output",model="gpt",provider="up"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_request_duration_seconds_count{model="gpt",provider="up"}"#
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
    assert_eq!(
        metric(&m, r#"llm_gateway_provider_health{provider="up"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_passes_chunks_through_as_they_come() {
    let (fake, gw) = setup().await;
    let start = Instant::now();
    let body = json!({"model": "gpt", "messages": user_msg(), "stream": true,
                      "stream_options": {"include_usage": true}});
    let r = post(
        &gw,
        "/v1/chat/completions",
        body,
        &[("x-fake-mode", "slow-stream")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let mut first_content = None;
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if first_content.is_none() && text.contains("Hel") {
            first_content = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    let first = first_content.expect("no content chunk");
    assert!(total >= Duration::from_millis(300), "total {total:?}");
    assert!(
        first + Duration::from_millis(200) < total,
        "first content at {first:?}, end at {total:?}: the stream was buffered"
    );
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(text.contains(r#""content":"lo""#));
    assert_eq!(fake.last().body["model"], "gpt-upstream");

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_ttft_seconds_count{model="gpt",provider="up"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_ttft_seconds_bucket{model="gpt",provider="up",le="0.25"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="output",model="gpt",provider="up"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="input",model="gpt",provider="up"}"#
        ),
        7.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="gpt",provider="up",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_request_duration_seconds_bucket{model="gpt",provider="up",le="0.1"}"#
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_without_usage_counts_content_chunks() {
    let (_fake, gw) = setup().await;
    let body = json!({"model": "plain", "messages": user_msg(), "stream": true});
    let text = post(&gw, "/v1/chat/completions", body, &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("usage\":{"));
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="output",model="plain",provider="up"}"#
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_provider_translates_both_ways() {
    let (fake, gw) = setup().await;
    let body = json!({"model": "claude", "temperature": 0.3, "stop": ["END", "STOP"],
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "yo"}, {"role": "user", "content": "again"}]});
    let r = post(&gw, "/v1/chat/completions", body, &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    );

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], "ant-key");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.body["model"], "claude-up");
    assert_eq!(seen.body["system"], "be brief");
    assert_eq!(seen.body["max_tokens"], 333);
    assert_eq!(seen.body["stop_sequences"], json!(["END", "STOP"]));
    assert_eq!(seen.body["temperature"], 0.3);
    let msgs = seen.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0], json!({"role": "user", "content": "hi"}));
    assert_eq!(msgs[1]["role"], "assistant");

    let body = json!({"model": "claude", "max_tokens": 12, "messages": user_msg()});
    post(&gw, "/v1/chat/completions", body, &[]).await;
    assert_eq!(fake.last().body["max_tokens"], 12);

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="input",model="claude",provider="claude"}"#
        ),
        18.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_provider_streams_as_openai_chunks() {
    let (fake, gw) = setup().await;
    let body = json!({"model": "claude", "messages": user_msg(), "stream": true,
                      "stream_options": {"include_usage": true}});
    let start = Instant::now();
    let r = post(
        &gw,
        "/v1/chat/completions",
        body,
        &[("x-fake-mode", "slow-stream")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let mut first = None;
    while let Some(c) = stream.next().await {
        text.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
        if first.is_none() && text.contains("Hel") {
            first = Some(start.elapsed());
        }
    }
    assert!(first.unwrap() + Duration::from_millis(200) < start.elapsed());
    assert_eq!(fake.last().body["stream"], true);
    let data = sse_data(&text);
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello!");
    let finish = chunks
        .iter()
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], 9);
    assert_eq!(usage["usage"]["completion_tokens"], 3);

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_ttft_seconds_count{model="claude",provider="claude"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="output",model="claude",provider="claude"}"#
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_answers_in_process() {
    let (fake, gw) = setup().await;
    let r = post(
        &gw,
        "/v1/chat/completions",
        json!({"model": "loop", "messages": user_msg()}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "tok tok tok tok tok "
    );
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let body = json!({"model": "loop", "messages": user_msg(), "stream": true, "stream_options": {"include_usage": true}});
    let text = post(&gw, "/v1/chat/completions", body, &[])
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.len(), 1 + 5 + 1 + 1 + 1, "{text}");
    assert_eq!(fake.count(), 0);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="output",model="loop",provider="local"}"#
        ),
        10.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="loop",provider="local",status="200"}"#
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_metrics_endpoints() {
    let (_fake, gw) = setup().await;
    let r = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt", "plain", "claude", "dead", "loop", "tls"]);
    assert_eq!(v["data"][2]["owned_by"], "claude");
    assert_eq!(v["data"][0]["object"], "model");
    let r = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let r = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");

    let r = client().get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = r.text().await.unwrap();
    for name in [
        "llm_gateway_requests_total",
        "llm_gateway_request_duration_seconds",
        "llm_gateway_ttft_seconds",
        "llm_gateway_tokens_total",
        "llm_gateway_active_requests",
        "llm_gateway_errors_total",
        "llm_gateway_provider_health",
    ] {
        assert!(m.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    assert_eq!(
        metric(&m, r#"llm_gateway_provider_health{provider="claude"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_requests_counts_open_streams() {
    let (_fake, gw) = setup().await;
    let body = json!({"model": "gpt", "messages": user_msg(), "stream": true});
    let r = post(
        &gw,
        "/v1/chat/completions",
        body,
        &[("x-fake-mode", "slow-stream")],
    )
    .await;
    let mut stream = r.bytes_stream();
    stream.next().await.unwrap().unwrap();
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_active_requests{model="gpt",provider="up"}"#
        ),
        1.0
    );
    while stream.next().await.is_some() {}
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_active_requests{model="gpt",provider="up"}"#
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_runtime_serves_concurrent_requests() {
    let fake = fake_upstream().await;
    let gw = Gateway::start(&config(fake.port).replace("threads: 1", "threads: 3"));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let stream = i % 2 == 0;
            let r = client()
                .post(url)
                .bearer_auth(KEY)
                .json(&json!({"model": "gpt", "messages": user_msg(), "stream": stream}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            assert!(text.contains("Hel"), "{text}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="gpt",provider="up",status="200"}"#
        ),
        24.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_active_requests{model="gpt",provider="up"}"#
        ),
        0.0
    );
    assert_eq!(fake.count(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_streams_finish() {
    let (_fake, mut gw) = setup().await;
    let body = json!({"model": "gpt", "messages": user_msg(), "stream": true});
    let r = post(
        &gw,
        "/v1/chat/completions",
        body,
        &[("x-fake-mode", "slow-stream")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while let Some(c) = stream.next().await {
        text.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
    }
    assert!(text.contains("[DONE]"), "stream cut by shutdown: {text}");
    let code = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    // New connections are refused once it is gone.
    assert!(client().get(gw.url("/health")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_gateway_serves() {
    let fake = fake_upstream().await;
    let gw =
        Gateway::start(&config(fake.port).replace("threads: 1", "threads: 1\nbusy_poll_us: 200"));
    for stream in [false, true, false] {
        let body = json!({"model": "gpt", "messages": user_msg(), "stream": stream});
        let r = post(&gw, "/v1/chat/completions", body, &[]).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Hel"));
    }
    assert_eq!(fake.count(), 3);
}
