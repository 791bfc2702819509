//! Keys by name, model restrictions, rpm/tpm limits (429s and `x-ratelimit-*`
//! headers), coalescing, the answer cache and the overhead figure, against the real
//! binary and a scripted fake upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use serde_json::{json, Value};

fn config(port: u16) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
threads: 1
api_keys: [{KEY}]
keys:
  - {{name: alice, key: sk-alice-secret, models: [plain]}}
  - {{name: bob, key: sk-bob-secret, rpm: 2}}
  - {{name: carol, key: sk-carol-secret, rpm: 1}}
  - {{name: dave, key: sk-dave-secret, tpm: 100}}
  - {{name: erin, key: sk-erin-secret, tpm: 20}}
forward_headers: [x-fake-]
resilience: {{retries: 0, breaker: {{enabled: false}}}}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:{port}/v1"}}
  claude: {{type: anthropic, base_url: "http://127.0.0.1:{port}", api_key: "k"}}
models:
  - {{name: gpt, provider: up}}
  - {{name: plain, provider: up}}
  - {{name: claude, provider: claude}}
  - {{name: capped, provider: up, rpm: 1}}
  - {{name: co, provider: up, coalesce: true}}
  - {{name: ca, provider: up, cache: {{ttl_ms: 600000, max_entries: 10}}}}
"#
    )
}

async fn start() -> (Fake, Gateway) {
    let fake = fake_upstream().await;
    let gw = Gateway::start(&config(fake.port));
    (fake, gw)
}

async fn call(gw: &Gateway, key: &str, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": user_msg()})
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// Waits (bounded by a count, not a clock) until the gateway has recorded `n`
/// answers of `model` with status 200: a stream's usage is settled by then.
async fn answered(gw: &Gateway, model: &str, n: f64) {
    let series =
        format!(r#"llm_gateway_requests_total{{model="{model}",provider="up",status="200"}}"#);
    for _ in 0..500 {
        if metric(&gw.metrics().await, &series) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{series} never reached {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_keys_and_model_restrictions() {
    let (_fake, gw) = start().await;
    let r = call(&gw, "sk-alice-secret", chat("plain"), &[]).await;
    assert_eq!(r.status(), 200);
    // A model the key may not use is unknown to it.
    let r = call(&gw, "sk-alice-secret", chat("gpt"), &[]).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    // The plain list still works, and an unknown secret is refused.
    assert_eq!(call(&gw, KEY, chat("gpt"), &[]).await.status(), 200);
    assert_eq!(
        call(&gw, "sk-alice-secreT", chat("plain"), &[])
            .await
            .status(),
        401
    );
    assert_eq!(
        call(&gw, "sk-alice-secre", chat("plain"), &[])
            .await
            .status(),
        401
    );
    // The model list shows a restricted key only its models.
    let list = |key: &'static str| client().get(gw.url("/v1/models")).bearer_auth(key).send();
    let v: Value = list("sk-alice-secret").await.unwrap().json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["id"], "plain");
    let v: Value = list(KEY).await.unwrap().json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 6);
    // Unlimited keys get no x-ratelimit headers.
    let r = call(&gw, KEY, chat("gpt"), &[]).await;
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_limit_answers_429_with_openai_headers() {
    let (fake, gw) = start().await;
    for remaining in ["1", "0"] {
        let r = call(&gw, "sk-bob-secret", chat("plain"), &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "x-ratelimit-limit-requests").as_deref(),
            Some("2")
        );
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests").as_deref(),
            Some(remaining)
        );
        assert!(header(&r, "x-ratelimit-reset-requests")
            .unwrap()
            .ends_with('s'));
    }
    let r = call(&gw, "sk-bob-secret", chat("plain"), &[]).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(
        header(&r, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("key `bob`"));
    assert_eq!(
        fake.count(),
        2,
        "a refused request never reaches the upstream"
    );

    // Anthropic's endpoint answers in Anthropic's shape.
    let body = json!({"model": "claude", "max_tokens": 10, "messages": user_msg()});
    let send = || {
        client()
            .post(gw.url("/v1/messages"))
            .header("x-api-key", "sk-carol-secret")
            .json(&body)
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(header(&r, "retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error"))
    );

    // A model's own limit applies to every key.
    assert_eq!(call(&gw, KEY, chat("capped"), &[]).await.status(), 200);
    let r = call(&gw, "sk-alice-secret", chat("capped"), &[]).await;
    assert_eq!(r.status(), 404, "alice may not use it at all");
    let r = call(&gw, KEY, chat("capped"), &[]).await;
    assert_eq!(r.status(), 429);

    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_rate_limit_hits_total{key="bob",model="plain"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_rate_limit_hits_total{key="carol",model="claude"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_rate_limit_hits_total{key="api_keys[0]",model="capped"}"#
        ),
        1.0
    );
    assert!(!m.contains("secret"), "metrics never show a secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_reserved_from_max_tokens_then_charged_from_usage() {
    let (_fake, gw) = start().await;
    let with_max = |n: u64| json!({"model": "plain", "messages": user_msg(), "max_tokens": n});
    // More than the whole bucket can never pass.
    let r = call(&gw, "sk-dave-secret", with_max(150), &[]).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "tokens");
    // 50 reserved, 10 used (the fake's usage): 40 given back...
    let r = call(&gw, "sk-dave-secret", with_max(50), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-ratelimit-limit-tokens").as_deref(),
        Some("100")
    );
    assert_eq!(
        header(&r, "x-ratelimit-remaining-tokens").as_deref(),
        Some("50")
    );
    answered(&gw, "plain", 1.0).await;
    // ...so 80 more fit (they would not without the refund: 50 + 80 > 100).
    let r = call(&gw, "sk-dave-secret", with_max(80), &[]).await;
    assert_eq!(r.status(), 200);

    // A stream is charged its usage chunk when it ends: 10 of erin's 20.
    let stream = json!({"model": "plain", "messages": user_msg(), "stream": true,
                        "stream_options": {"include_usage": true}});
    let r = call(&gw, "sk-erin-secret", stream, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    answered(&gw, "plain", 3.0).await;
    let r = call(&gw, "sk-erin-secret", with_max(15), &[]).await;
    assert_eq!(r.status(), 429, "10 used + 15 reserved is over 20");
    assert_eq!(
        call(&gw, "sk-erin-secret", with_max(5), &[]).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_requests_share_one_upstream_call() {
    let (fake, gw) = start().await;
    fake.set_mode("sleep-1000");
    let calls: Vec<_> = (0..8).map(|_| call(&gw, KEY, chat("co"), &[])).collect();
    let answers = futures_util::future::join_all(calls).await;
    let mut bodies = Vec::new();
    for r in answers {
        assert_eq!(r.status(), 200);
        bodies.push(r.json::<Value>().await.unwrap());
    }
    assert_eq!(
        fake.count(),
        1,
        "one upstream call for eight identical requests"
    );
    assert!(bodies.iter().all(|b| *b == bodies[0] && b["model"] == "co"));
    // Different bodies are not shared; nor are requests of different keys.
    fake.set_mode("ok");
    let mut other = chat("co");
    other["temperature"] = json!(0.5);
    assert_eq!(call(&gw, KEY, other, &[]).await.status(), 200);
    assert_eq!(fake.count(), 2);
    // Without a pending call, an identical request calls again (nothing is cached).
    assert_eq!(call(&gw, KEY, chat("co"), &[]).await.status(), 200);
    assert_eq!(fake.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_serves_hits_bypasses_no_cache_and_never_stores_errors() {
    let (fake, gw) = start().await;
    let r = call(&gw, KEY, chat("ca"), &[]).await;
    assert_eq!(header(&r, "x-gateway-cache").as_deref(), Some("miss"));
    let first: Value = r.json().await.unwrap();
    let r = call(&gw, KEY, chat("ca"), &[]).await;
    assert_eq!(header(&r, "x-gateway-cache").as_deref(), Some("hit"));
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    assert_eq!(fake.count(), 1);
    // no-cache goes upstream.
    let r = call(&gw, KEY, chat("ca"), &[("cache-control", "no-cache")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(fake.count(), 2);
    // Another key does not see this key's answers.
    let r = call(&gw, "sk-bob-secret", chat("ca"), &[]).await;
    assert_eq!(header(&r, "x-gateway-cache").as_deref(), Some("miss"));
    // An error is passed on and not stored: the same request then goes upstream.
    let mut body = chat("ca");
    body["temperature"] = json!(1);
    let r = call(&gw, KEY, body.clone(), &[("x-fake-mode", "status500")]).await;
    assert_eq!(r.status(), 502);
    let r = call(&gw, KEY, body, &[]).await;
    assert_eq!(
        (
            r.status().as_u16(),
            header(&r, "x-gateway-cache").as_deref()
        ),
        (200, Some("miss"))
    );
    // Streams are never cached.
    let mut s = chat("ca");
    s["stream"] = json!(true);
    let r = call(&gw, KEY, s, &[]).await;
    assert_eq!(header(&r, "x-gateway-cache"), None);

    let m = gw.metrics().await;
    let op = |op: &str| {
        metric(
            &m,
            &format!(r#"llm_gateway_cache_operations_total{{model="ca",op="{op}"}}"#),
        )
    };
    assert_eq!((op("hit"), op("miss"), op("store")), (1.0, 4.0, 4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overhead_is_reported_and_within_the_total() {
    let (fake, gw) = start().await;
    fake.set_mode("sleep-1000");
    for model in ["gpt", "nope"] {
        let t0 = Instant::now();
        let r = call(&gw, KEY, chat(model), &[]).await;
        let total_us = t0.elapsed().as_micros() as u64;
        let us: u64 = header(&r, "x-gateway-overhead-us")
            .unwrap()
            .parse()
            .unwrap();
        assert!(us <= total_us, "{model}: {us} us of {total_us} us");
        if model == "gpt" {
            // The upstream's one-second wait is not the gateway's.
            assert!(us < 1_000_000, "{us}");
        }
    }
    let m = gw.metrics().await;
    assert!(
        metric(&m, "llm_gateway_overhead_seconds_count") >= 2.0,
        "{m}"
    );
    assert!(m.contains("llm_gateway_overhead_seconds_bucket{le=\"0.00001\"}"));
}

/// The lab's config of one lane (`docker/gateway/<file>`), pointed at the fake upstream
/// instead of the lab's mocks and listening on port 0.
fn lab_config(file: &str, port: u16) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docker/gateway")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    for needle in ["127.0.0.1:9000", "127.0.0.1:9001", "listen: 127.0.0.1:"] {
        assert!(text.contains(needle), "{}: {needle}", path.display());
    }
    text.replace("127.0.0.1:9000", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9001", &format!("127.0.0.1:{port}"))
        .replace("api_key_env: OPENAI_API_KEY", "api_key: sk-mock")
        .lines()
        .map(|l| {
            if l.starts_with("listen:") {
                "listen: 127.0.0.1:0"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lab's governed lane (`gateway-governed`): the bearer key is the named key
/// `lab-governed` with limits far above the load: a request without it, or with another
/// key, gets 401; with it, 200 (the limits refuse nothing); the secret stays out of the
/// metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_governed_config_enforces_its_key() {
    let fake = fake_upstream().await;
    let gw = Gateway::start(&lab_config("governed.yaml", fake.port));
    let no_key = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let v: Value = no_key.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(
        call(&gw, "sk-other", chat("gpt-4o-mini"), &[])
            .await
            .status(),
        401
    );
    for _ in 0..3 {
        let r = call(&gw, "sk-lab-key", chat("gpt-4o-mini"), &[]).await;
        assert_eq!(r.status(), 200);
    }
    let m = gw.metrics().await;
    assert!(m.contains("llm_gateway_requests_total"), "{m}");
    assert!(!m.contains("sk-lab-key"), "the secret leaked into /metrics");
    // The plain lane's config takes the same key, without a name or limits.
    let plain = Gateway::start(&lab_config("config.yaml", fake.port));
    let r = call(&plain, "sk-lab-key", chat("gpt-4o-mini"), &[]).await;
    assert_eq!(r.status(), 200);
}
