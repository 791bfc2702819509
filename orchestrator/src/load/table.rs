//! Plain-text summary of a result, printed by `orchestrator load` and `orchestrator bench`.

use std::fmt::Write;

use super::result::{PhaseResult, SuiteResult, Summary};

fn row(out: &mut String, name: &str, s: &Summary) {
    let _ = writeln!(
        out,
        "  {name:<10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        s.p50, s.p90, s.p95, s.p99, s.p99_9, s.max, s.mean
    );
}

fn phase(out: &mut String, p: &PhaseResult) {
    let load = match (p.vus, p.target_rate_per_s) {
        (Some(v), _) => format!("closed, up to {v} VUs"),
        (_, Some(r)) => format!("open, {r} req/s scheduled"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "phase {} ({load}{}) -> {}\n  duration {:.1} s, requests {} (ok {}, errors {}, dropped {}), {:.1} req/s, {:.1} output tokens/s",
        p.name,
        if p.stream { ", streaming" } else { "" },
        p.url,
        p.duration_s,
        p.requests.total,
        p.requests.ok,
        p.requests.errors.total(),
        p.requests.dropped,
        p.throughput.requests_per_s,
        p.throughput.output_tokens_per_s,
    );
    let e = &p.requests.errors;
    if e.total() > 0 {
        let _ = writeln!(
            out,
            "  errors: connect {} timeout {} 429 {} 4xx {} 5xx {} malformed {} stream_cut {} connection {}",
            e.connect, e.timeout, e.http_429, e.http_4xx, e.http_5xx, e.malformed, e.stream_cut, e.connection
        );
    }
    let _ = writeln!(
        out,
        "  {:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "p50", "p90", "p95", "p99", "p99.9", "max", "mean"
    );
    row(out, "latency", &p.latency_ms);
    row(out, "ttfb", &p.ttfb_ms);
    for (n, s) in [
        ("ttft", &p.ttft_ms),
        ("itl", &p.itl_ms),
        ("tpot", &p.tpot_ms),
    ] {
        if let Some(s) = s {
            row(out, n, s);
        }
    }
    let _ = writeln!(
        out,
        "  generator: {:.2} CPU s ({:.0}% of one core), {} thread(s), {} core(s){}",
        p.generator.cpu_seconds,
        p.generator.cpu_percent,
        p.generator.threads,
        p.generator.cores,
        if p.generator.bound { ", BOUND" } else { "" }
    );
}

/// Human-readable summary of a suite result.
pub fn render(r: &SuiteResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} against {} ({}, profile {}){}",
        r.suite,
        r.target,
        r.url,
        r.profile,
        if r.interrupted { " INTERRUPTED" } else { "" }
    );
    for p in &r.phases {
        phase(&mut out, p);
    }
    if let Some(o) = &r.overhead {
        let _ = writeln!(
            out,
            "overhead vs {}: added p50 {:.1} µs, p99 {:.1} µs (target p50 {:.1} µs, direct p50 {:.1} µs, {} samples)",
            o.direct_url, o.added_p50_us, o.added_p99_us, o.target_p50_us, o.direct_p50_us, o.samples
        );
        if let Some(pd) = &o.paired {
            for (q, f) in [("p50", &pd.p50), ("p99", &pd.p99)] {
                let _ = writeln!(
                    out,
                    "  paired {q}: {:.1} µs [{:.1}, {:.1}], control {:.1} µs, resolution {:.1} µs{} ({} pairs)",
                    f.added_us,
                    f.ci_us[0],
                    f.ci_us[1],
                    f.control_us,
                    f.resolution_us,
                    if f.below_resolution { ", below resolution" } else { "" },
                    pd.pairs
                );
            }
        }
    }
    if let Some(f) = &r.frontier {
        let _ = writeln!(out, "frontier (highest rate with p99 under the bound):");
        for p in f {
            let samples = match (p.samples, p.under_sampled) {
                (Some(n), true) => format!(", {n} samples: under the minimum, rough"),
                (Some(n), false) => format!(", {n} samples"),
                (None, _) => String::new(),
            };
            let missed = p.failed_rate_per_s.map_or(String::new(), |r| {
                let why: Vec<&str> = p.failed_because.iter().map(|f| f.label()).collect();
                format!("; {r} req/s missed ({})", why.join(", "))
            });
            let _ = match p.max_rate_per_s {
                Some(rate) => writeln!(
                    out,
                    "  p99 <= {:>6} ms: {rate} req/s (p99 {:.3} ms{samples}){missed}",
                    p.p99_bound_ms,
                    p.p99_ms.unwrap_or(0.0)
                ),
                None => writeln!(out, "  p99 <= {:>6} ms: none{missed}", p.p99_bound_ms),
            };
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "WARNING [{:?}] {}", w.kind, w.message);
    }
    out
}
