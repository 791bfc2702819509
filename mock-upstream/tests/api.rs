//! Answer shapes of every endpoint, against the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chat_body, client, sse_events, Mock};
use serde_json::{json, Value};

#[tokio::test]
async fn openai_non_streaming_shape_and_usage() {
    let mock = Mock::start(&[]);
    let body = json!({
        "model": "my-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]}
        ]
    });
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-output-tokens", "5")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "my-model");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "tok tok tok tok tok ");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10})
    );
}

#[tokio::test]
async fn default_output_tokens_flag_and_max_tokens_cap() {
    let mock = Mock::start(&["--output-tokens", "7"]);
    let c = client();
    let v: Value = c
        .post(mock.url("/v1/chat/completions"))
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 7);
    for cap in [
        json!({"max_tokens": 3}),
        json!({"max_completion_tokens": 3}),
        json!({"max_tokens": 9, "max_completion_tokens": 3}),
    ] {
        let v: Value = c
            .post(mock.url("/v1/chat/completions"))
            .json(&chat_body(cap))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["choices"][0]["message"]["content"], "tok tok tok ");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }
}

#[tokio::test]
async fn openai_streaming_chunk_sequence() {
    let mock = Mock::start(&[]);
    for include_usage in [true, false] {
        let body =
            chat_body(json!({"stream": true, "stream_options": {"include_usage": include_usage}}));
        let resp = client()
            .post(mock.url("/v1/chat/completions"))
            .header("x-mock-output-tokens", "4")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = resp.text().await.unwrap();
        let events = sse_events(&text);
        assert_eq!(events.last().copied(), Some("data: [DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        let expected = 1 + 4 + 1 + usize::from(include_usage);
        assert_eq!(chunks.len(), expected, "{text}");
        let id = &chunks[0]["id"];
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "gpt-4o-mini");
            assert_eq!(&c["id"], id);
        }
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "", "refusal": null})
        );
        for c in &chunks[1..5] {
            assert_eq!(c["choices"][0]["delta"], json!({"content": "tok "}));
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        }
        assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
        if include_usage {
            assert_eq!(chunks[6]["choices"], json!([]));
            assert_eq!(
                chunks[6]["usage"],
                json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
            );
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
    }
}

#[tokio::test]
async fn anthropic_non_streaming_shape() {
    let mock = Mock::start(&[]);
    let body = json!({
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 2,
        "system": "you are terse",
        "messages": [{"role": "user", "content": "hello there"}]
    });
    let resp = client()
        .post(mock.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-3-5-haiku-20241022");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["content"], json!([{"type": "text", "text": "tok tok "}]));
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"], json!({"input_tokens": 5, "output_tokens": 2}));

    let body =
        json!({"model": "c", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    let v: Value = client()
        .post(mock.url("/v1/messages"))
        .header("x-mock-output-tokens", "3")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn anthropic_streaming_event_sequence() {
    let mock = Mock::start(&[]);
    let body = json!({"model": "c", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "a b c d"}]});
    let resp = client()
        .post(mock.url("/v1/messages"))
        .header("x-mock-output-tokens", "3")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let mut names = Vec::new();
    let mut data = Vec::new();
    for event in sse_events(&text) {
        let (name, payload) = event.split_once('\n').unwrap();
        let name = name.strip_prefix("event: ").unwrap();
        let v: Value = serde_json::from_str(payload.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["type"], name);
        names.push(name.to_owned());
        data.push(v);
    }
    let expected = [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    assert_eq!(names, expected);
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 4);
    assert_eq!(data[0]["message"]["model"], "c");
    for d in &data[3..6] {
        assert_eq!(d["delta"], json!({"type": "text_delta", "text": "tok "}));
    }
    assert_eq!(data[7]["delta"]["stop_reason"], "end_turn");
    assert_eq!(data[7]["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn models_health_and_not_found() {
    let mock = Mock::start(&["--models", "m1,m2"]);
    let c = client();
    let v: Value = c
        .get(mock.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(v["data"][0]["object"], "model");

    let resp = c.get(mock.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let resp = c.get(mock.url("/v1/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/nope"));

    let resp = c
        .get(mock.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn broken_json_and_bad_fields_get_openai_400() {
    let mock = Mock::start(&[]);
    let c = client();
    for (body, needle) in [
        ("{\"model\":", "EOF"),
        ("{\"messages\":[]}", "missing field `model`"),
        (
            "{\"model\":\"m\",\"messages\":\"hi\"}",
            "an array of messages",
        ),
    ] {
        let resp = c
            .post(mock.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        let err = &v["error"];
        assert_eq!(err["type"], "invalid_request_error");
        assert!(err["message"].as_str().unwrap().contains(needle), "{v}");
        assert!(
            err.get("param").is_some() && err.get("code").is_some(),
            "{v}"
        );
    }
    // /v1/messages answers in Anthropic's error shape.
    let resp = c
        .post(mock.url("/v1/messages"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let mock = Mock::start(&["--max-body-bytes", "100"]);
    let big = chat_body(json!({"padding": "x".repeat(200)}));
    let resp = client()
        .post(mock.url("/v1/chat/completions"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn metrics_count_by_status() {
    let mock = Mock::start(&[]);
    let c = client();
    for _ in 0..3 {
        let resp = c
            .post(mock.url("/v1/chat/completions"))
            .json(&chat_body(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let resp = c
        .post(mock.url("/v1/chat/completions"))
        .header("x-mock-error-rate", "1")
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let resp = c
        .post(mock.url("/v1/chat/completions"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .post(mock.url("/v1/messages"))
        .json(&chat_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let resp = c.get(mock.url("/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for line in [
        "mock_requests_total{endpoint=\"chat_completions\",status=\"200\"} 3",
        "mock_requests_total{endpoint=\"chat_completions\",status=\"500\"} 1",
        "mock_requests_total{endpoint=\"chat_completions\",status=\"400\"} 1",
        "mock_requests_total{endpoint=\"messages\",status=\"200\"} 1",
        "mock_output_tokens_total{endpoint=\"chat_completions\"} 48",
        "mock_in_flight_requests 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}
