//! `POST /v1/messages` (Anthropic's API in front) through the real binary:
//! pass-through to an Anthropic upstream, translation to OpenAI and loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

async fn post_messages(gw: &Gateway, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_provider_passes_through() {
    let (fake, gw) = setup().await;
    let body = json!({"model": "claude", "max_tokens": 50, "system": "sys",
                      "messages": user_msg(), "top_k": 3});
    let r = post_messages(&gw, body, &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Hello!");
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.body["model"], "claude-up");
    assert_eq!(seen.body["top_k"], 3);
    assert_eq!(seen.body["system"], "sys");
    assert_eq!(seen.headers["x-api-key"], "ant-key");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");

    let body = json!({"model": "claude", "max_tokens": 50, "messages": user_msg(), "stream": true});
    let r = post_messages(&gw, body, &[]).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.first().unwrap(), "message_start");
    assert_eq!(events.last().unwrap(), "message_stop");
    assert!(
        events.contains(&"ping".to_string()),
        "pass-through keeps every event"
    );

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="input",model="claude",provider="claude"}"#
        ),
        18.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="output",model="claude",provider="claude"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_ttft_seconds_count{model="claude",provider="claude"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_provider_is_translated() {
    let (fake, gw) = setup().await;
    let body = json!({"model": "gpt", "max_tokens": 50, "system": [{"type": "text", "text": "sys"}],
                      "stop_sequences": ["X"], "temperature": 0.2,
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
    let r = post_messages(&gw, body, &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Hello!"}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"], json!({"input_tokens": 7, "output_tokens": 3}));
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-upstream");
    assert_eq!(seen.body["max_tokens"], 50);
    assert_eq!(seen.body["stop"], json!(["X"]));
    assert_eq!(seen.body["temperature"], 0.2);
    assert_eq!(
        seen.body["messages"],
        json!([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(seen.headers["authorization"], "Bearer up-key");

    let body = json!({"model": "gpt", "max_tokens": 50, "messages": user_msg(), "stream": true});
    let r = post_messages(&gw, body, &[("x-fake-mode", "slow-stream")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert_eq!(fake.last().body["stream_options"]["include_usage"], true);
    assert_eq!(
        sse_events(&text),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = data
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(content, "Hello!");
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_tokens_total{direction="output",model="gpt",provider="up"}"#
        ),
        6.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_ttft_seconds_count{model="gpt",provider="up"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_and_bearer_auth_work() {
    let (_fake, gw) = setup().await;
    let r = client()
        .post(gw.url("/v1/messages"))
        .bearer_auth(KEY)
        .json(&json!({"model": "loop", "max_tokens": 5, "messages": user_msg()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "tok tok tok tok tok ");
    assert_eq!(v["usage"]["output_tokens"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_anthropic_shape() {
    let (_fake, gw) = setup().await;
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "wrong")
        .json(&json!({"model": "claude", "max_tokens": 5, "messages": user_msg()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    let r = post_messages(
        &gw,
        json!({"model": "nope", "max_tokens": 5, "messages": user_msg()}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));

    let r = post_messages(&gw, json!({"model": "claude", "messages": user_msg()}), &[]).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{v}"
    );

    let body = json!({"model": "gpt", "max_tokens": 5,
                      "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]});
    let r = post_messages(&gw, body, &[]).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[0].type"),
        "{v}"
    );

    let body = json!({"model": "claude", "max_tokens": 5, "messages": user_msg()});
    let r = post_messages(&gw, body, &[("x-fake-mode", "status500")]).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("500") && msg.contains("boom upstream"),
        "{msg}"
    );
}
