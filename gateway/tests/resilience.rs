//! Deployments, retries, the retry budget, breakers, fallbacks, routing and upstream
//! errors, against scripted fake upstreams (one per deployment).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A config with providers `a` and `b` on two fakes and the given models/resilience.
fn two(a: &Fake, b: &Fake, resilience: &str, models: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
threads: 1
api_keys: [{KEY}]
limits: {{upstream_timeout_ms: 1000, connect_timeout_ms: 1000}}
resilience: {resilience}
providers:
  a: {{type: openai, base_url: "http://127.0.0.1:{}/v1"}}
  b: {{type: openai, base_url: "http://127.0.0.1:{}/v1"}}
models:
{models}
"#,
        a.port, b.port
    )
}

async fn fakes() -> (Fake, Fake) {
    (fake_upstream().await, fake_upstream().await)
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": user_msg()})
}

async fn send(gw: &Gateway, model: &str) -> reqwest::Response {
    post(gw, "/v1/chat/completions", chat(model), &[]).await
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `a` is always tried first (weight 1), `b` only once `a` was tried or is open.
const A_THEN_B: &str =
    "  - {name: m, deployments: [{provider: a, weight: 1}, {provider: b, weight: 0}]}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_moves_to_the_other_deployment() {
    let (a, b) = fakes().await;
    a.set_mode("status500");
    let gw = Gateway::start(&two(&a, &b, "{breaker: {enabled: false}}", A_THEN_B));
    for reason in ["status500", "reset"] {
        a.set_mode(reason);
        let r = send(&gw, "m").await;
        assert_eq!(r.status(), 200, "{reason}");
        assert_eq!(header(&r, "x-gateway-deployment"), "b");
        assert_eq!(header(&r, "x-gateway-attempts"), "2");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["model"], "m");
    }
    assert_eq!((a.count(), b.count()), (2, 2));
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"llm_gateway_retries_total{model="m",reason="500"}"#),
        1.0
    );
    assert_eq!(
        metric(&m, r#"llm_gateway_retries_total{model="m",reason="reset"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_upstream_requests_total{provider="a",status="500"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_upstream_requests_total{provider="b",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_requests_total{model="m",provider="b",status="200"}"#
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_kept() {
    let (a, b) = fakes().await;
    let models = "  - {name: m, provider: a, retries: 1}";
    let gw = Gateway::start(&two(
        &a,
        &b,
        "{retry_after_max_ms: 500, breaker: {enabled: false}}",
        models,
    ));
    // retry-after-ms: 150 is within the cap: the same deployment is retried after it.
    a.set_mode("status429-fast");
    let t0 = Instant::now();
    let r = send(&gw, "m").await;
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.status(), 429);
    assert_eq!(a.count(), 2);
    assert_eq!(header(&r, "retry-after"), "1");
    // retry-after: 1 (1 s) is over the 500 ms cap: no retry, the client gets the 429.
    a.set_mode("status429");
    let r = send(&gw, "m").await;
    assert_eq!(r.status(), 429);
    assert_eq!(a.count(), 3);
    assert_eq!(header(&r, "retry-after"), "1");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["message"], "slow down upstream");
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_4xx_is_passed_on_without_retry() {
    let (a, b) = fakes().await;
    a.set_mode("status400");
    let models = "  - {name: m, deployments: [{provider: a}, {provider: b, weight: 0}]}";
    let gw = Gateway::start(&two(&a, &b, "{}", models));
    let r = send(&gw, "m").await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["message"], "too many tokens upstream");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    let body = json!({"model": "m", "max_tokens": 5, "messages": user_msg()});
    let r = post(&gw, "/v1/messages", body, &[]).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["message"], "too many tokens upstream");
    assert_eq!((a.count(), b.count()), (2, 0), "a 400 is never retried");
    // A 400 means the upstream is alive: the breaker stays closed.
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llm_gateway_circuit_breaker_state{model="m",deployment="a"}"#
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_once_the_stream_started() {
    let (a, b) = fakes().await;
    a.set_mode("stall-stream");
    let gw = Gateway::start(&two(&a, &b, "{breaker: {enabled: false}}", A_THEN_B));
    let body = json!({"model": "m", "messages": user_msg(), "stream": true});
    let r = post(&gw, "/v1/chat/completions", body, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-deployment"), "a");
    // The stream is cut after the upstream's silence; it is not replayed elsewhere.
    assert!(r.text().await.is_err());
    assert_eq!((a.count(), b.count()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_fails_fast() {
    let (a, b) = fakes().await;
    a.set_mode("status500");
    let res = "{retries: 2, backoff_base_ms: 1, backoff_max_ms: 2, breaker: {enabled: false}, \
               retry_budget: {percent: 0, min_per_second: 0.5, window_ms: 10000}}";
    let gw = Gateway::start(&two(&a, &b, res, "  - {name: m, provider: a}"));
    let mut attempts = Vec::new();
    for _ in 0..10 {
        let r = send(&gw, "m").await;
        assert_eq!(r.status(), 502);
        attempts.push(header(&r, "x-gateway-attempts"));
    }
    // The floor allows 0.5 retries/s over 10 s = 5 retries, then each request fails
    // after its one attempt.
    assert_eq!(a.count(), 15, "{attempts:?}");
    assert_eq!(attempts.last().unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_half_opens_and_closes() {
    let (a, b) = fakes().await;
    a.set_mode("status500");
    let res = "{retries: 1, breaker: {consecutive_failures: 2, cooldown_ms: 400}}";
    let gw = Gateway::start(&two(&a, &b, res, A_THEN_B));
    let state = r#"llm_gateway_circuit_breaker_state{model="m",deployment="a"}"#;
    for _ in 0..2 {
        assert_eq!(send(&gw, "m").await.status(), 200);
    }
    assert_eq!(
        metric(&gw.metrics().await, state),
        2.0,
        "open after 2 failures"
    );
    // Open: a is skipped, b answers at the first attempt.
    let r = send(&gw, "m").await;
    assert_eq!(header(&r, "x-gateway-attempts"), "1");
    assert_eq!(header(&r, "x-gateway-deployment"), "b");
    assert_eq!(a.count(), 2);
    // After the cooldown one probe goes to a; its success closes the breaker.
    a.set_mode("ok");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let r = send(&gw, "m").await;
    assert_eq!(header(&r, "x-gateway-deployment"), "a");
    assert_eq!(metric(&gw.metrics().await, state), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_breakers_open_is_503_or_429_with_retry_after() {
    let (a, b) = fakes().await;
    a.set_mode("status500");
    b.set_mode("status429");
    let res = "{retries: 0, breaker: {consecutive_failures: 1, cooldown_ms: 5000}}";
    let models = "  - {name: m, provider: a}\n  - {name: n, provider: b}";
    let gw = Gateway::start(&two(&a, &b, res, models));
    assert_eq!(send(&gw, "m").await.status(), 502);
    let r = send(&gw, "m").await;
    assert_eq!(r.status(), 503);
    let secs: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((4..=5).contains(&secs), "{secs}");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "no_healthy_deployment");
    assert_eq!(a.count(), 1);
    // Opened by a 429: the client keeps seeing a 429 (with the upstream's retry-after
    // as the cooldown), not a 5xx.
    assert_eq!(send(&gw, "n").await.status(), 429);
    let r = send(&gw, "n").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "1");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    assert_eq!(b.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_model_answers() {
    let (a, b) = fakes().await;
    a.set_mode("status500");
    let models = "  - {name: m, provider: a, fallbacks: [f]}\n  - {name: f, provider: b, upstream_model: f-up}";
    let gw = Gateway::start(&two(
        &a,
        &b,
        "{retries: 1, backoff_base_ms: 1, backoff_max_ms: 2}",
        models,
    ));
    let r = send(&gw, "m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-gateway-deployment"), "b");
    assert_eq!(header(&r, "x-gateway-attempts"), "3");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "m", "the client's model name, whoever answered");
    assert_eq!(b.last().body["model"], "f-up");
    assert_eq!(a.count(), 2);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"llm_gateway_fallbacks_total{model="m",to="f"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_strategies_spread_as_configured() {
    let (a, b) = fakes().await;
    let models = "  - {name: w, routing: weighted, deployments: [{provider: a, weight: 3}, {provider: b, weight: 1}]}\n  \
                  - {name: l, routing: latency, deployments: [{provider: a}, {provider: b}]}";
    let gw = Gateway::start(&two(&a, &b, "{}", models));
    for _ in 0..200 {
        send(&gw, "w").await;
    }
    let share = a.count() as f64 / 200.0;
    assert!((share - 0.75).abs() < 0.12, "weighted 3:1 gave {share}");
    // latency: a answers 40 ms late, so traffic moves to b.
    a.set_mode("slow");
    let (a0, b0) = (a.count(), b.count());
    for _ in 0..60 {
        send(&gw, "l").await;
    }
    let (na, nb) = (a.count() - a0, b.count() - b0);
    assert!(
        nb >= 50,
        "latency routing sent {na} to the slow one, {nb} to the fast one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_busy_avoids_the_busy_deployment() {
    let (a, b) = fakes().await;
    a.set_mode("hang");
    b.set_mode("hang");
    let models = "  - {name: m, routing: least_busy, retries: 0, deployments: [{provider: a}, {provider: b}]}";
    let text = two(&a, &b, "{}", models);
    let gw =
        Gateway::start(&text.replace("upstream_timeout_ms: 1000", "upstream_timeout_ms: 8000"));
    // One request held on whichever deployment it lands on...
    let url = gw.url("/v1/chat/completions");
    let held = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(KEY)
            .json(&chat("m"))
            .send()
            .await
    });
    let t0 = Instant::now();
    while a.count() + b.count() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "held request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (busy, idle, idle_name) = if a.count() == 1 {
        (&a, &b, "b")
    } else {
        (&b, &a, "a")
    };
    idle.set_mode("ok");
    // ...and every later request goes to the other one.
    for _ in 0..20 {
        let r = send(&gw, "m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-gateway-deployment"), idle_name);
    }
    assert_eq!((busy.count(), idle.count()), (1, 20));
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_request() {
    let (a, b) = fakes().await;
    // The upstream timeout (8 s) is far beyond the wait below: only the client's
    // leaving can end the upstream request in time.
    let text = two(&a, &b, "{}", "  - {name: m, provider: a}");
    let gw =
        Gateway::start(&text.replace("upstream_timeout_ms: 1000", "upstream_timeout_ms: 8000"));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for (mode, stream) in [("hang", false), ("stall-stream", true)] {
        a.set_mode(mode);
        let body = json!({"model": "m", "messages": user_msg(), "stream": stream});
        let r = quick
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await;
        if let Ok(r) = r {
            let _ = r.text().await; // times out mid-stream
        }
        let t0 = Instant::now();
        while a.open.load(std::sync::atomic::Ordering::SeqCst) != 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "{mode}: upstream request still open"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(a.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_before_any_upstream_call() {
    let (a, b) = fakes().await;
    let gw = Gateway::start(&two(&a, &b, "{}", "  - {name: m, provider: a}"));
    let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}".to_vec(),
            "UTF-8",
        ),
        (
            format!(r#"{{"model":"m","messages":[{{"role":"user"}}],"x":{deep}}}"#).into_bytes(),
            "deeper than 64",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-5}"#.to_vec(),
            "max_tokens",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user"}],"max_tokens":0}"#.to_vec(),
            "max_tokens",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#.to_vec(),
            "stream",
        ),
    ];
    for (body, want) in cases {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{want}");
        let e: Value = r.json().await.unwrap();
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{want}: {msg}");
    }
    let r = post(
        &gw,
        "/v1/messages",
        json!({"model": "m", "max_tokens": 0, "messages": user_msg()}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(a.count(), 0);
}
