//! Streaming metrics against a server with known token timing, both API formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod load_support;

use std::sync::Arc;
use std::time::Duration;

use load_support::{start, Reply};
use orchestrator::load::{
    run_phase, Api, EngineOpts, LoadShape, PhasePlan, PreparedRequest, RequestSpec,
};

fn stream_run(anthropic: bool, usage: bool) {
    const TOKENS: usize = 10;
    let server = start(Arc::new(move |_| Reply::Stream {
        anthropic,
        ttft: Duration::from_millis(50),
        gap: Duration::from_millis(20),
        tokens: TOKENS,
        usage,
        cut_after: None,
    }));
    let spec = RequestSpec {
        api: if anthropic {
            Api::Anthropic
        } else {
            Api::Openai
        },
        stream: true,
        ..RequestSpec::default()
    };
    let req = PreparedRequest::new(&spec, &server.url()).unwrap();
    let plan = PhasePlan {
        name: "s".into(),
        shape: LoadShape::constant_vus(3, Duration::from_millis(1500)),
        requests: vec![("s".into(), req)],
        timeout: Duration::from_secs(10),
        warmup: false,
    };
    let r = run_phase(&plan, &EngineOpts::default())
        .unwrap()
        .results
        .remove(0);
    assert!(r.requests.ok >= 6, "{:?}", r.requests);
    assert_eq!(r.requests.ok, r.requests.total, "{:?}", r.requests);
    assert_eq!(r.output_tokens, r.requests.ok * TOKENS as u64);
    let ttft = r.ttft_ms.unwrap();
    assert!(ttft.p50 >= 49.0 && ttft.p50 < 80.0, "ttft {ttft:?}");
    let itl = r.itl_ms.unwrap();
    assert!(itl.p50 >= 19.0 && itl.p50 < 35.0, "itl {itl:?}");
    assert_eq!(itl.count, r.requests.ok * (TOKENS as u64 - 1));
    let tpot = r.tpot_ms.unwrap();
    assert!(tpot.p50 >= 19.0 && tpot.p50 < 35.0, "tpot {tpot:?}");
    // latency ~ 50 + 9 * 20 = 230 ms
    assert!(
        r.latency_ms.p50 >= 229.0 && r.latency_ms.p50 < 330.0,
        "{:?}",
        r.latency_ms
    );
    assert!(
        r.ttfb_ms.p50 < 10.0,
        "first byte comes before the first token: {:?}",
        r.ttfb_ms
    );
    assert!(r.throughput.output_tokens_per_s > 0.0);
}

#[test]
fn openai_stream_metrics_match_token_timing() {
    stream_run(false, true);
}

#[test]
fn openai_stream_without_usage_counts_chunks() {
    stream_run(false, false);
}

#[test]
fn anthropic_stream_metrics_match_token_timing() {
    stream_run(true, true);
}
