//! The key figures of one target in one suite: what the tables, `all_results.json` and the
//! comparison show. A figure that was not measured is `None` (printed "—", written `null`).

use serde::Serialize;

use super::cost;
use super::data::{headline_phase, Entry};
use super::noise::{FigureNoise, Noise};
use crate::load::result::Summary;

/// Headline figures of one (target, suite), taken from its headline phase and stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyFigures {
    /// The phase the figures come from.
    pub phase: Option<String>,
    pub requests: Option<u64>,
    pub ok: Option<u64>,
    pub errors: Option<u64>,
    pub error_percent: Option<f64>,
    pub requests_per_s: Option<f64>,
    pub ok_per_s: Option<f64>,
    /// Ramps (virtual users or rate changing through the phase): the busiest second's rate.
    pub peak_requests_per_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p99_9_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub output_tokens_per_s: Option<f64>,
    /// Mean CPU of the target container, percent of one core.
    pub cpu_percent: Option<f64>,
    /// The target's CPU time per request (per stream when streaming), µs.
    pub cpu_us_per_request: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    /// Long phases: where memory settled, and how fast it still grew.
    pub memory_plateau_bytes: Option<f64>,
    pub memory_growth_mib_per_min: Option<f64>,
    /// The load generator's own CPU, percent of one core.
    pub generator_cpu_percent: Option<f64>,
    pub generator_bound: Option<bool>,
    /// `overhead` suite: latency added over calling the upstream directly.
    pub added_p50_us: Option<f64>,
    pub added_p99_us: Option<f64>,
    /// `overhead` suite: what the target says it added (its own header), p50 and p99.
    pub claimed_p50_us: Option<f64>,
    pub claimed_p99_us: Option<f64>,
    /// `frontier` suite: highest rate sustained under each p99 bound.
    pub frontier: Option<Vec<FrontierFigure>>,
    /// 95 % intervals and CVs of the figures that have one, by table row key.
    pub noise: Noise,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontierFigure {
    pub p99_bound_ms: f64,
    pub max_rate_per_s: Option<f64>,
}

fn measured(s: &Summary) -> bool {
    s.count > 0
}

impl KeyFigures {
    pub fn of(e: &Entry) -> Self {
        let mut k = KeyFigures::default();
        if let Some(stats) = &e.stats {
            if !stats.samples.is_empty() {
                k.cpu_percent = Some(stats.mean_cpu_percent());
                k.peak_memory_bytes = Some(stats.peak_memory_bytes());
            }
        }
        let Some(r) = &e.result else { return k };
        let mut paired = Vec::new();
        if let Some(o) = &r.overhead {
            if let Some(pd) = &o.paired {
                // The paired quantiles replace the differences of percentiles.
                k.added_p50_us = Some(pd.p50.added_us);
                k.added_p99_us = Some(pd.p99.added_us);
                k.claimed_p50_us = pd.claimed.as_ref().map(|c| c.p50_us);
                k.claimed_p99_us = pd.claimed.as_ref().map(|c| c.p99_us);
                for (key, f) in [("added_p50", &pd.p50), ("added_p99", &pd.p99)] {
                    paired.push((key, FigureNoise::of_paired(f, pd.pairs, pd.block)));
                }
            } else if o.samples > 0 {
                k.added_p50_us = Some(o.added_p50_us);
                k.added_p99_us = Some(o.added_p99_us);
            }
        }
        k.frontier = r.frontier.as_ref().map(|f| {
            f.iter()
                .map(|p| FrontierFigure {
                    p99_bound_ms: p.p99_bound_ms,
                    max_rate_per_s: p.max_rate_per_s,
                })
                .collect()
        });
        let Some(p) = headline_phase(r) else { return k };
        k.phase = Some(p.name.clone());
        k.requests = Some(p.requests.total);
        k.ok = Some(p.requests.ok);
        k.errors = Some(p.requests.errors.total());
        k.error_percent = Some(p.requests.error_percent);
        if p.duration_s > 0.0 {
            k.requests_per_s = Some(p.throughput.requests_per_s);
            k.ok_per_s = Some(p.throughput.ok_per_s);
            k.output_tokens_per_s =
                (p.output_tokens > 0).then_some(p.throughput.output_tokens_per_s);
        }
        let ts = &p.timeseries;
        let ramp = ts.windows(2).any(|w| {
            w[0].active_vus != w[1].active_vus || w[0].target_rate_per_s != w[1].target_rate_per_s
        });
        if ramp {
            k.peak_requests_per_s = ts.iter().map(|t| t.requests_per_s).reduce(f64::max);
        }
        if measured(&p.latency_ms) {
            let l = &p.latency_ms;
            k.p50_ms = Some(l.p50);
            k.p90_ms = Some(l.p90);
            k.p95_ms = Some(l.p95);
            k.p99_ms = Some(l.p99);
            k.p99_9_ms = Some(l.p99_9);
            k.max_ms = Some(l.max);
        }
        if let Some(t) = p.ttft_ms.as_ref().filter(|s| measured(s)) {
            k.ttft_p50_ms = Some(t.p50);
            k.ttft_p99_ms = Some(t.p99);
        }
        if let Some(t) = p.itl_ms.as_ref().filter(|s| measured(s)) {
            k.itl_p50_ms = Some(t.p50);
            k.itl_p99_ms = Some(t.p99);
        }
        if let Some(st) = &e.stats {
            k.cpu_us_per_request = cost::cpu_us_per_request(p, st);
            if let Some(m) = cost::memory_trend(p, st) {
                k.memory_plateau_bytes = Some(m.plateau_bytes);
                k.memory_growth_mib_per_min = Some(m.growth_mib_per_min);
            }
        }
        k.generator_cpu_percent = Some(p.generator.cpu_percent);
        k.generator_bound = Some(p.generator.bound);
        let headline = [
            ("requests_per_s", k.requests_per_s),
            ("ok_per_s", k.ok_per_s),
            ("p50", k.p50_ms),
            ("p99", k.p99_ms),
            ("ttft_p50", k.ttft_p50_ms),
            ("output_tokens_per_s", k.output_tokens_per_s),
            ("cpu", k.cpu_percent),
        ];
        k.noise = Noise::of_phase(p, e.stats.as_ref(), &headline);
        for (key, n) in paired {
            k.noise.figures.insert(key.to_string(), n);
        }
        k
    }
}
