//! The generator's measurements against an in-process server with injected delays:
//! percentiles, coordinated omission (open vs closed model), stages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod load_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use load_support::{start, Reply};
use orchestrator::load::{
    run_phase, EngineOpts, LoadShape, PhasePlan, PhaseResult, PreparedRequest, RequestSpec, Stage,
};

fn plan(url: &str, shape: LoadShape) -> PhasePlan {
    let req = PreparedRequest::new(&RequestSpec::default(), url).unwrap();
    PhasePlan {
        name: "t".into(),
        shape,
        requests: vec![("t".into(), req)],
        timeout: Duration::from_secs(10),
        warmup: false,
    }
}

fn run(url: &str, shape: LoadShape, threads: usize) -> PhaseResult {
    let opts = EngineOpts {
        threads,
        ..EngineOpts::default()
    };
    let out = run_phase(&plan(url, shape), &opts).unwrap();
    out.results.into_iter().next().unwrap()
}

#[test]
fn percentiles_match_injected_delays() {
    // 90% of requests take 5 ms, 10% take 20 ms.
    let server = start(Arc::new(|n| Reply::ok(if n % 10 == 9 { 20 } else { 5 })));
    let r = run(
        &server.url(),
        LoadShape::constant_vus(20, Duration::from_secs(2)),
        2,
    );
    assert_eq!(r.requests.total, r.requests.ok, "{:?}", r.requests);
    assert!(r.requests.ok > 1000, "{:?}", r.requests);
    let l = &r.latency_ms;
    // Upper bounds leave room for a loaded machine; the 5 ms / 20 ms split must show.
    assert!(l.p50 >= 4.9 && l.p50 < 12.0, "p50 {l:?}");
    assert!(l.p99 >= 19.9 && l.p99 < 40.0, "p99 {l:?}");
    assert!(l.min >= 4.9, "min {l:?}");
    // Closed model: throughput is VUs / mean latency.
    let expected = 20.0 / (l.mean / 1000.0);
    let got = r.throughput.requests_per_s;
    assert!(
        (got - expected).abs() / expected < 0.2,
        "{got} vs {expected}"
    );
    assert_eq!(r.percentile_curve.first().unwrap().percentile, 0.0);
    assert!(r.ttfb_ms.p50 <= l.p50 + 0.01);
    assert!(!r.timeseries.is_empty());
    assert!(r.generator.cpu_seconds > 0.0);
}

/// A server that stalls every request for 1 s once, from its `at`-th request.
fn stalling_server(at: u64) -> load_support::Server {
    let stall: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    start(Arc::new(move |n| {
        let mut s = stall.lock().unwrap();
        if n == at {
            *s = Some(Instant::now() + Duration::from_secs(1));
        }
        let delay = s
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(1));
        Reply::Json {
            delay,
            status: 200,
            body: None,
        }
    }))
}

#[test]
fn open_model_shows_a_stall_that_closed_model_hides() {
    let server = stalling_server(100);
    let open = run(
        &server.url(),
        LoadShape::Open {
            rate_per_s: 200.0,
            duration: Duration::from_secs(3),
            max_in_flight: 1000,
        },
        1,
    );
    assert_eq!(open.requests.dropped, 0);
    assert!(open.requests.ok >= 550, "{:?}", open.requests);
    // ~200 of ~600 requests were due during the stall: a third of them waited.
    assert!(open.latency_ms.max >= 990.0, "{:?}", open.latency_ms);
    assert!(open.latency_ms.p99 >= 900.0, "{:?}", open.latency_ms);
    assert!(open.latency_ms.p90 >= 500.0, "{:?}", open.latency_ms);

    let server = stalling_server(100);
    let closed = run(
        &server.url(),
        LoadShape::constant_vus(1, Duration::from_secs(3)),
        1,
    );
    // One VU waited once: the max shows it, the percentiles do not.
    assert!(closed.latency_ms.max >= 990.0, "{:?}", closed.latency_ms);
    assert!(closed.latency_ms.p99 < 200.0, "{:?}", closed.latency_ms);
}

#[test]
fn open_model_holds_its_rate() {
    let server = start(Arc::new(|_| Reply::ok(0)));
    let r = run(
        &server.url(),
        LoadShape::Open {
            rate_per_s: 500.0,
            duration: Duration::from_secs(2),
            max_in_flight: 1000,
        },
        1,
    );
    assert_eq!(r.requests.dropped, 0);
    assert!(
        (r.requests.total as i64 - 1000).abs() <= 2,
        "{:?}",
        r.requests
    );
    assert!((r.throughput.requests_per_s - 500.0).abs() < 10.0);
    assert_eq!(r.target_rate_per_s, Some(500.0));
}

#[test]
fn stages_reach_their_vu_counts() {
    let server = start(Arc::new(|_| Reply::ok(2)));
    let s = |secs: f64, target| Stage {
        duration: Duration::from_secs_f64(secs),
        target,
    };
    let r = run(
        &server.url(),
        LoadShape::Closed {
            start_vus: 0,
            stages: vec![s(0.5, 4), s(1.5, 4), s(0.5, 8), s(1.5, 8), s(0.5, 0)],
            iterations: None,
        },
        2,
    );
    let vus: Vec<u64> = r.timeseries.iter().map(|p| p.active_vus).collect();
    assert!(vus.contains(&4), "{vus:?}");
    assert!(vus.contains(&8), "{vus:?}");
    assert_eq!(r.vus, Some(8));
    assert!(vus.iter().all(|v| *v <= 8), "{vus:?}");
    assert!(r.timeseries.len() >= 4, "{:?}", r.timeseries);
    let total: u64 = r.timeseries.iter().map(|p| p.requests).sum();
    assert_eq!(total, r.requests.total);
    // Per-stage figures: each second goes to the stage running at its middle.
    let staged: u64 = r.stages.iter().map(|s| s.requests).sum();
    assert!(
        staged <= total && staged * 10 >= total * 8,
        "{staged} of {total}"
    );
    let at = |vus: u64| {
        r.stages
            .iter()
            .filter(|s| s.target_vus == vus && s.peak_active_vus == vus)
            .map(|s| s.requests_per_s)
            .fold(0.0, f64::max)
    };
    // 2 ms answers: twice the users, nearly twice the rate.
    assert!(at(8) > 1.3 * at(4) && at(4) > 0.0, "{:?}", r.stages);
    assert!(
        r.stages.iter().all(|s| s.latency_ms.p50 >= 2.0),
        "{:?}",
        r.stages
    );
}

#[test]
fn iterations_limit_the_phase() {
    let server = start(Arc::new(|_| Reply::ok(0)));
    let mut shape = LoadShape::constant_vus(3, Duration::from_secs(30));
    if let LoadShape::Closed { iterations, .. } = &mut shape {
        *iterations = Some(30);
    }
    let started = Instant::now();
    let r = run(&server.url(), shape, 1);
    assert_eq!(r.requests.total, 30);
    assert_eq!(r.vus, Some(3));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_ipv6_loopback_target_is_measured() {
    let Some(server) = load_support::start_on("[::1]:0", Arc::new(|_| Reply::ok(1))) else {
        eprintln!("skipped: this machine cannot bind [::1]");
        return;
    };
    let url = format!("http://[::1]:{}/v1", server.addr.port());
    let r = run(
        &url,
        LoadShape::constant_vus(1, Duration::from_millis(300)),
        1,
    );
    assert!(
        r.requests.ok > 0 && r.requests.total == r.requests.ok,
        "{:?}",
        r.requests
    );
    assert_eq!(
        r.url,
        format!("http://[::1]:{}/v1/chat/completions", server.addr.port())
    );
    let (path, host) = server.last.lock().unwrap().clone().unwrap();
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(host, format!("[::1]:{}", server.addr.port()));
}
