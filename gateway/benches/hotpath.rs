//! Micro-benchmarks of the request path's shared state: routing picks, the rate
//! limiter, the breaker, coalescing and metrics. Goals: ≤ 50 ns per operation
//! uncontended, ≤ 200 ns with two threads contending.
//!
//! Run: `cargo bench -p gateway --bench hotpath` (`-- --quick` for a short run,
//! `-- limiter` for one group).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway::config::{self, Settings};
use gateway::error::GatewayError;
use gateway::governance::cache::AnswerKey;
use gateway::governance::coalesce::{Coalescer, Joined};
use gateway::governance::limiter::Gcra;
use gateway::metrics::Metrics;
use gateway::routing::breaker::{Breaker, Outcome};
use gateway::routing::{now_ms, now_ns, ModelRoute};

/// A config with one model of `n` deployments routed by `strategy`.
fn settings(n: usize, strategy: &str) -> Settings {
    let deps: Vec<String> = (0..n)
        .map(|i| format!("{{provider: p, upstream_model: m{i}}}"))
        .collect();
    let text = format!(
        "providers: {{p: {{type: loopback}}}}\nmodels:\n  - {{name: m, routing: {strategy}, deployments: [{}]}}\n",
        deps.join(", ")
    );
    config::parse(&text).unwrap().validate().unwrap()
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing_pick");
    for strategy in ["weighted", "least_busy", "latency"] {
        for n in [2, 8, 64] {
            let s = settings(n, strategy);
            let route = ModelRoute::new(&s.models[0], &s.providers, &s.retry, |_| 0);
            for d in route.deployments.iter() {
                d.observe(
                    Duration::from_micros(100 + fastrand::u64(..100)),
                    1e10,
                    now_ns(),
                );
            }
            // The pick itself; the server reads the clock for it (`now_ns`), whose
            // price `clock_read` below shows apart.
            let now = now_ns();
            g.bench_with_input(BenchmarkId::new(strategy, n), &route, |b, r| {
                b.iter(|| black_box(r.pick(black_box(0), black_box(now))))
            });
        }
    }
    g.finish();
    c.bench_function("clock_read", |b| b.iter(|| black_box(now_ns())));
}

fn limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter_check");
    // A limit high enough never to refuse: the admitting path is measured.
    let gcra = Gcra::per_minute(u64::MAX / 2);
    // Time advances as on the server, but is read once per sample batch here: the
    // clock's own price is `clock_read`.
    g.bench_function("uncontended", |b| {
        let t = now_ns();
        b.iter(|| black_box(gcra.check(black_box(t), 1)))
    });
    let shared = Arc::new(Gcra::per_minute(u64::MAX / 2));
    g.bench_function("contended_2_threads", |b| {
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = black_box(shared.check(now_ns(), 1));
                    }
                })
            };
            let t0 = Instant::now();
            let t = now_ns();
            for _ in 0..iters {
                let _ = black_box(shared.check(black_box(t), 1));
            }
            let took = t0.elapsed();
            stop.store(true, Ordering::Relaxed);
            other.join().unwrap();
            took
        })
    });
    g.finish();
}

fn breaker(c: &mut Criterion) {
    let s = settings(1, "weighted");
    let b = Breaker::new(&s.models[0].breaker, 5000);
    c.bench_function("breaker_record_and_check", |bench| {
        let now = now_ms();
        bench.iter(|| {
            let now = black_box(now);
            b.record(now, Outcome::Success, "p");
            black_box(b.available(now))
        })
    });
}

fn coalesce(c: &mut Criterion) {
    let co = Coalescer::<Result<Bytes, GatewayError>>::default();
    let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    let key = AnswerKey::new(0, 0, 0, body.clone());
    let mut g = c.benchmark_group("coalesce");
    // Three operations: a leader joins, a second request joins its flight, the leader
    // finishes (the key made once per request, measured apart below).
    g.bench_function("join_wait_finish", |b| {
        b.iter(|| {
            let Joined::Leader(l) = co.join(key.clone()) else {
                unreachable!()
            };
            let w = co.join(key.clone());
            l.finish(Ok(Bytes::from_static(b"{}")));
            black_box(w);
        })
    });
    // The usual case with coalescing on: nothing identical in flight (two operations).
    g.bench_function("join_finish_alone", |b| {
        b.iter(|| {
            let Joined::Leader(l) = co.join(key.clone()) else {
                unreachable!()
            };
            l.finish(Ok(Bytes::from_static(b"{}")));
        })
    });
    // A request's key (one SipHash of the body, shared by the cache and the coalescer).
    let big = Bytes::from(vec![b'x'; 4096]);
    for (name, b) in [("key_60B", body), ("key_4KB", big)] {
        g.bench_function(name, |bench| {
            bench.iter(|| black_box(AnswerKey::new(0, 0, 0, black_box(b.clone()))))
        });
    }
    g.finish();
}

fn metrics(c: &mut Criterion) {
    let m = Metrics::new(&["p".into()], &[("m".into(), 0)]);
    c.bench_function("metrics_record_request", |b| {
        b.iter(|| {
            m.start(0);
            m.status(0, 200);
            m.tokens(0, 7, 16);
            m.finish(0, Duration::from_micros(black_box(80)));
            m.overhead(Duration::from_micros(black_box(9)));
        })
    });
}

criterion_group!(benches, routing, limiter, breaker, coalesce, metrics);
criterion_main!(benches);
