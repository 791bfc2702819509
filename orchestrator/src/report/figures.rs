//! The key figures of one target in one suite: what the tables, `all_results.json` and the
//! comparison show. A figure that was not measured is `None` (printed "—", written `null`).

use serde::Serialize;

use super::cost;
use super::data::{headline_phase, Entry};
use super::noise::{FigureNoise, Noise};
use crate::load::result::{SuiteResult, Summary};
use crate::rundir::ContainerStats;

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
    /// Repeats the figures are medians of (`None`: measured once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeats: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontierFigure {
    pub p99_bound_ms: f64,
    pub max_rate_per_s: Option<f64>,
}

fn measured(s: &Summary) -> bool {
    s.count > 0
}

/// Reads a figure of [`KeyFigures`].
type Get = fn(&KeyFigures) -> Option<f64>;
/// Writes it.
type Set = fn(&mut KeyFigures, f64);

/// The figures a repeated suite reports as the median of its repeats, by table row key.
/// Counts are summed instead, peak memory is the highest, each frontier bound's rate is
/// the median of the searches ([`frontier_over_repeats`]), and the memory trend is repeat
/// 1's (`sustained` is long and not repeated by default).
const OVER_REPEATS: &[(&str, Get, Set)] = &[
    (
        "requests_per_s",
        |k| k.requests_per_s,
        |k, v| k.requests_per_s = Some(v),
    ),
    ("ok_per_s", |k| k.ok_per_s, |k, v| k.ok_per_s = Some(v)),
    ("p50", |k| k.p50_ms, |k, v| k.p50_ms = Some(v)),
    ("p90", |k| k.p90_ms, |k, v| k.p90_ms = Some(v)),
    ("p95", |k| k.p95_ms, |k, v| k.p95_ms = Some(v)),
    ("p99", |k| k.p99_ms, |k, v| k.p99_ms = Some(v)),
    ("p99_9", |k| k.p99_9_ms, |k, v| k.p99_9_ms = Some(v)),
    ("max", |k| k.max_ms, |k, v| k.max_ms = Some(v)),
    (
        "ttft_p50",
        |k| k.ttft_p50_ms,
        |k, v| k.ttft_p50_ms = Some(v),
    ),
    (
        "ttft_p99",
        |k| k.ttft_p99_ms,
        |k, v| k.ttft_p99_ms = Some(v),
    ),
    ("itl_p50", |k| k.itl_p50_ms, |k, v| k.itl_p50_ms = Some(v)),
    ("itl_p99", |k| k.itl_p99_ms, |k, v| k.itl_p99_ms = Some(v)),
    (
        "output_tokens_per_s",
        |k| k.output_tokens_per_s,
        |k, v| k.output_tokens_per_s = Some(v),
    ),
    (
        "added_p50",
        |k| k.added_p50_us,
        |k, v| k.added_p50_us = Some(v),
    ),
    (
        "added_p99",
        |k| k.added_p99_us,
        |k, v| k.added_p99_us = Some(v),
    ),
    (
        "claimed_p50",
        |k| k.claimed_p50_us,
        |k, v| k.claimed_p50_us = Some(v),
    ),
    (
        "claimed_p99",
        |k| k.claimed_p99_us,
        |k, v| k.claimed_p99_us = Some(v),
    ),
    ("cpu", |k| k.cpu_percent, |k, v| k.cpu_percent = Some(v)),
    (
        "cpu_per_request",
        |k| k.cpu_us_per_request,
        |k, v| k.cpu_us_per_request = Some(v),
    ),
    (
        "generator_cpu",
        |k| k.generator_cpu_percent,
        |k, v| k.generator_cpu_percent = Some(v),
    ),
];

impl KeyFigures {
    /// The figures of one (target, suite): of its one measurement, or over its repeats.
    pub fn of(e: &Entry) -> Self {
        let first = Self::of_one(e.result.as_ref(), e.stats.as_ref());
        if e.repeats.is_empty() || e.result.is_none() {
            return first;
        }
        let later = e
            .repeats
            .iter()
            .map(|r| Self::of_one(Some(&r.result), r.stats.as_ref()));
        Self::over_repeats(&std::iter::once(first).chain(later).collect::<Vec<_>>())
    }

    /// Several repeats' figures as one: medians with their interval over the repeats
    /// (a figure missing from any repeat stays repeat 1's, without an interval).
    fn over_repeats(all: &[KeyFigures]) -> Self {
        let mut k = all[0].clone();
        k.noise = Noise::default();
        for (key, get, set) in OVER_REPEATS {
            let values: Vec<f64> = all.iter().filter_map(get).collect();
            if values.len() != all.len() {
                continue;
            }
            let Some((median, mut n)) = FigureNoise::of_repeats(&values) else {
                continue;
            };
            set(&mut k, median);
            // A paired figure stays "below resolution" when most repeats were.
            let below: Vec<bool> = all
                .iter()
                .filter_map(|r| r.noise.get(key).and_then(|f| f.below_resolution))
                .collect();
            if !below.is_empty() {
                let most = below.iter().filter(|b| **b).count() * 2 > all.len();
                n.below_resolution = Some(most);
                // Near zero a CV means nothing: the resolution judges the spread instead.
                n.unstable &= !most;
            }
            k.noise.figures.insert(key.to_string(), n);
        }
        let sum = |get: fn(&KeyFigures) -> Option<u64>| all.iter().map(get).sum::<Option<u64>>();
        k.requests = sum(|r| r.requests);
        k.ok = sum(|r| r.ok);
        k.errors = sum(|r| r.errors);
        if let (Some(e), Some(n)) = (k.errors, k.requests.filter(|n| *n > 0)) {
            k.error_percent = Some(e as f64 * 100.0 / n as f64);
        }
        k.peak_memory_bytes = all.iter().filter_map(|r| r.peak_memory_bytes).max();
        k.generator_bound = all
            .iter()
            .filter_map(|r| r.generator_bound)
            .reduce(|a, b| a || b);
        frontier_over_repeats(&mut k, all);
        k.repeats = Some(all.len());
        k
    }

    fn of_one(result: Option<&SuiteResult>, stats: Option<&ContainerStats>) -> Self {
        let mut k = KeyFigures::default();
        if let Some(stats) = stats {
            if !stats.samples.is_empty() {
                k.cpu_percent = Some(stats.mean_cpu_percent());
                k.peak_memory_bytes = Some(stats.peak_memory_bytes());
            }
        }
        let Some(r) = result else { return k };
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
        if let Some(st) = stats {
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
        k.noise = Noise::of_phase(p, stats, &headline);
        for (key, n) in paired {
            k.noise.figures.insert(key.to_string(), n);
        }
        k
    }
}

/// The key of a frontier bound's interval in [`KeyFigures::noise`]: `frontier@10ms`.
pub fn frontier_key(bound_ms: f64) -> String {
    format!("frontier@{bound_ms}ms")
}

/// Each frontier bound of repeat 1 as the median rate of the repeats' searches, with its
/// interval. A search that met the bound at no rate counts as 0, so the median is missing
/// (`None`) when most searches missed it.
fn frontier_over_repeats(k: &mut KeyFigures, all: &[KeyFigures]) {
    let Some(front) = k.frontier.as_mut() else {
        return;
    };
    for point in front.iter_mut() {
        let rates: Vec<f64> = all
            .iter()
            .map(|r| {
                r.frontier
                    .iter()
                    .flatten()
                    .find(|p| (p.p99_bound_ms - point.p99_bound_ms).abs() < 1e-9)
                    .and_then(|p| p.max_rate_per_s)
                    .unwrap_or(0.0)
            })
            .collect();
        let Some((median, n)) = FigureNoise::of_repeats(&rates) else {
            continue;
        };
        point.max_rate_per_s = (median > 0.0).then_some(median);
        if median > 0.0 {
            k.noise.figures.insert(frontier_key(point.p99_bound_ms), n);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::noise::Method;

    fn one(rps: f64, p99: f64, errors: u64, memory: u64) -> KeyFigures {
        KeyFigures {
            requests_per_s: Some(rps),
            p99_ms: Some(p99),
            requests: Some(100),
            ok: Some(100 - errors),
            errors: Some(errors),
            peak_memory_bytes: Some(memory),
            generator_bound: Some(errors > 0),
            ..KeyFigures::default()
        }
    }

    #[test]
    fn repeats_give_medians_with_intervals_and_summed_counts() {
        let k = KeyFigures::over_repeats(&[
            one(100.0, 2.0, 0, 10),
            one(110.0, 3.0, 1, 30),
            one(90.0, 1.0, 0, 20),
        ]);
        assert_eq!((k.requests_per_s, k.p99_ms), (Some(100.0), Some(2.0)));
        assert_eq!(
            (k.requests, k.ok, k.errors),
            (Some(300), Some(299), Some(1))
        );
        assert!((k.error_percent.unwrap() - 100.0 / 300.0).abs() < 1e-12);
        assert_eq!(k.peak_memory_bytes, Some(30));
        assert_eq!((k.generator_bound, k.repeats), (Some(true), Some(3)));
        let n = k.noise.get("requests_per_s").unwrap();
        assert_eq!((n.method, n.samples), (Method::Repeats, 3));
        assert!(n.lo >= 90.0 && n.hi <= 110.0 && n.lo < n.hi, "{n:?}");
        assert!(n.unstable, "a CV of 10 % is over 5 %: {n:?}");
        // Not measured in any repeat: no figure, no interval.
        assert!(k.p50_ms.is_none() && k.noise.get("p50").is_none());
    }

    #[test]
    fn each_frontier_bound_is_the_median_of_the_searches() {
        let search = |a: Option<f64>, b: Option<f64>| KeyFigures {
            frontier: Some(vec![
                FrontierFigure {
                    p99_bound_ms: 1.0,
                    max_rate_per_s: a,
                },
                FrontierFigure {
                    p99_bound_ms: 10.0,
                    max_rate_per_s: b,
                },
            ]),
            ..KeyFigures::default()
        };
        let k = KeyFigures::over_repeats(&[
            search(Some(900.0), Some(5000.0)),
            search(None, Some(4000.0)),
            search(Some(1100.0), None),
        ]);
        let f = k.frontier.unwrap();
        // 1 ms: 900, 0 and 1,100 → 900; 10 ms: 5,000, 4,000 and 0 → 4,000.
        assert_eq!(f[0].max_rate_per_s, Some(900.0));
        assert_eq!(f[1].max_rate_per_s, Some(4000.0));
        let n = k.noise.get(&frontier_key(10.0)).unwrap();
        assert_eq!((n.method, n.samples), (Method::Repeats, 3));
        assert!(n.unstable && n.lo <= 4000.0 && n.hi >= 4000.0, "{n:?}");
        // Missed by most searches: no rate, no interval.
        let k = KeyFigures::over_repeats(&[
            search(None, None),
            search(None, None),
            search(Some(1.0), None),
        ]);
        assert_eq!(k.frontier.unwrap()[0].max_rate_per_s, None);
        assert!(k.noise.get(&frontier_key(1.0)).is_none());
    }

    #[test]
    fn a_paired_figure_stays_below_resolution_when_most_repeats_were() {
        let paired = |us: f64, below: bool| {
            let mut k = KeyFigures {
                added_p50_us: Some(us),
                ..KeyFigures::default()
            };
            let mut n = FigureNoise::of_repeats(&[us, us + 1.0]).unwrap().1;
            n.below_resolution = Some(below);
            k.noise.figures.insert("added_p50".into(), n);
            k
        };
        let k =
            KeyFigures::over_repeats(&[paired(5.0, true), paired(7.0, true), paired(9.0, false)]);
        assert_eq!(k.added_p50_us, Some(7.0));
        assert_eq!(
            k.noise.get("added_p50").unwrap().below_resolution,
            Some(true)
        );
        let k =
            KeyFigures::over_repeats(&[paired(5.0, false), paired(7.0, true), paired(9.0, false)]);
        assert_eq!(
            k.noise.get("added_p50").unwrap().below_resolution,
            Some(false)
        );
    }
}
