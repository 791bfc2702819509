//! The noise of each key figure: a 95 % interval, a coefficient of variation and whether the
//! figure is `unstable`, and the rule `compare` uses to tell a change from noise.
//!
//! With one repeat (every run today) the interval comes from a moving-block bootstrap over
//! the headline phase's one-second windows: the statistic of the windows (mean rate,
//! median of the per-second p50s, mean of the per-second p99s) is resampled, and its
//! interval is scaled to the headline figure (the phase's own rate or HDR percentile), so
//! the relative width carries over. The CV is the bootstrap's standard error over its mean:
//! the spread a rerun of the same phase would show. With several repeats the figure is
//! their median, the interval a bootstrap of that median and the CV that of the repeats.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{self, Tail};
use crate::load::result::{LoadModel, PairedFigure, PhaseResult, TimePoint};
use crate::rundir::ContainerStats;

/// Fewest one-second windows a bootstrap is run on: under it the resamples repeat a
/// handful of values and the interval says nothing.
pub const MIN_WINDOWS: usize = 8;
/// A figure whose coefficient of variation exceeds this (percent) is `unstable`.
pub const UNSTABLE_CV_PERCENT: f64 = 5.0;
/// Fewest repeats in each run for `compare` to use the permutation test.
pub const MIN_REPEATS: usize = 3;
/// Significance of the permutation test (one-sided, p ≤ this).
pub const ALPHA: f64 = 0.05;

/// How an interval was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// One repeat: moving-block bootstrap over the phase's one-second windows.
    BlockBootstrap,
    /// Several repeats: bootstrap of the median over the repeats.
    Repeats,
    /// The overhead suite: moving-block bootstrap over the rounds' paired differences.
    Paired,
    /// A ramp: each stage's one-second windows detrended and resampled in blocks
    /// ([`stats::stratified_bootstrap`]).
    Stages,
}

/// The 95 % interval of one figure and how noisy it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureNoise {
    pub lo: f64,
    pub hi: f64,
    pub cv_percent: f64,
    /// CV above [`UNSTABLE_CV_PERCENT`].
    pub unstable: bool,
    pub method: Method,
    /// Windows (block bootstrap) or repeats resampled.
    pub samples: usize,
    /// Block length in windows (block bootstrap only).
    pub block: Option<usize>,
    /// The repeats' values ([`Method::Repeats`] only), for the permutation test.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<f64>,
    /// Paired figures: the interval reaches down to the instrument's own resolution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below_resolution: Option<bool>,
}

impl FigureNoise {
    /// Half the interval's width: what the reports print after `±`.
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }

    fn new(lo: f64, hi: f64, cv: f64, method: Method, samples: usize) -> Self {
        let cv_percent = cv * 100.0;
        Self {
            lo,
            hi,
            cv_percent,
            unstable: cv_percent > UNSTABLE_CV_PERCENT,
            method,
            samples,
            block: None,
            repeats: Vec::new(),
            below_resolution: None,
        }
    }

    /// A paired figure of the overhead suite (its interval was made with the result).
    /// Its spread is judged by the resolution, not by a CV, which means nothing for a
    /// difference near zero: `cv_percent` is NaN (null in JSON).
    pub fn of_paired(f: &PairedFigure, pairs: u64, block: u64) -> FigureNoise {
        let mut n = Self::new(f.ci_us[0], f.ci_us[1], f64::NAN, Method::Paired, 0);
        n.unstable = false;
        n.samples = usize::try_from(pairs).unwrap_or(usize::MAX);
        n.block = usize::try_from(block).ok();
        n.below_resolution = Some(f.below_resolution);
        n
    }

    /// A figure measured in several repeats: their median and its interval; `None` under
    /// two repeats.
    pub fn of_repeats(values: &[f64]) -> Option<(f64, FigureNoise)> {
        if values.len() < 2 {
            return None;
        }
        let i = stats::bootstrap_interval(values, stats::median_in_place)?;
        let cv = stats::cv(values).unwrap_or(0.0);
        let mut n = Self::new(i.lo, i.hi, cv, Method::Repeats, values.len());
        n.repeats = values.to_vec();
        Some((stats::median(values), n))
    }

    /// Block bootstrap of `stat` over `xs`, scaled to `headline`; `None` when the
    /// statistic of the windows is zero (nothing to scale by).
    fn of_windows(xs: &[f64], stat: Statistic, headline: f64) -> Option<FigureNoise> {
        let block = stats::block_length(xs.len());
        let reps =
            stats::block_bootstrap(xs, block, stats::REPLICATES, stats::SEED, |x| stat.apply(x));
        let own = stat.apply(&mut xs.to_vec());
        let mut n = Self::scaled(reps, own, headline, Method::BlockBootstrap, xs.len())?;
        n.block = Some(block);
        Some(n)
    }

    /// A ramp's figure: stratified bootstrap over its stages' windows, scaled to
    /// `headline`; `None` with fewer than [`MIN_WINDOWS`] windows left once the stages'
    /// trends are taken out.
    fn of_stages(strata: &[Vec<f64>], stat: Statistic, headline: f64) -> Option<FigureNoise> {
        if stats::residual_dof(strata) < MIN_WINDOWS {
            return None;
        }
        let reps =
            stats::stratified_bootstrap(strata, stats::REPLICATES, stats::SEED, |x| stat.apply(x));
        let own = stat.apply(&mut strata.concat());
        let samples = strata.iter().map(Vec::len).sum();
        Self::scaled(reps, own, headline, Method::Stages, samples)
    }

    /// The interval of bootstrap replicates of a statistic whose own value is `own`,
    /// scaled to `headline` so the relative width carries over; `None` when `own` is zero
    /// (nothing to scale by). `samples`: the windows resampled.
    fn scaled(
        mut reps: Vec<f64>,
        own: f64,
        headline: f64,
        method: Method,
        samples: usize,
    ) -> Option<FigureNoise> {
        if own == 0.0 || !own.is_finite() {
            return None;
        }
        let cv = stats::cv(&reps).unwrap_or(0.0);
        let i = stats::percentile_interval(&mut reps);
        let scale = headline / own;
        let (lo, hi) = (i.lo * scale, i.hi * scale);
        Some(Self::new(lo.min(hi), lo.max(hi), cv, method, samples))
    }
}

#[derive(Debug, Clone, Copy)]
enum Statistic {
    Mean,
    Median,
}

impl Statistic {
    fn apply(self, xs: &mut [f64]) -> f64 {
        match self {
            Statistic::Mean => stats::mean(xs),
            Statistic::Median => stats::median_in_place(xs),
        }
    }
}

/// Values each with the end of its window, in seconds into the phase.
type Timed = Vec<(f64, f64)>;

/// The per-second series behind one figure.
struct Source {
    key: &'static str,
    stat: Statistic,
    series: fn(&PhaseResult, Option<&ContainerStats>) -> Timed,
}

/// Seconds each window spans (its `t_s` less the previous one's).
fn spans(p: &PhaseResult) -> Vec<f64> {
    let mut prev = 0.0;
    p.timeseries
        .iter()
        .map(|w| {
            let d = w.t_s - prev;
            prev = w.t_s;
            d
        })
        .collect()
}

/// A per-window rate: `count` over the window's span.
fn per_s(p: &PhaseResult, count: fn(&TimePoint) -> u64) -> Vec<(f64, f64)> {
    p.timeseries
        .iter()
        .zip(spans(p))
        .filter(|(_, d)| *d > 0.0)
        .map(|(w, d)| (w.t_s, count(w) as f64 / d))
        .collect()
}

/// A per-window latency, over windows with a successful request.
fn latency(p: &PhaseResult, get: fn(&TimePoint) -> f64) -> Vec<(f64, f64)> {
    p.timeseries
        .iter()
        .filter(|w| w.ok > 0)
        .map(|w| (w.t_s, get(w)))
        .collect()
}

/// The target's CPU samples, on the phase's clock (NaN when the phase does not say when
/// it started: such samples fall in no stage).
fn cpu(p: &PhaseResult, s: Option<&ContainerStats>) -> Vec<(f64, f64)> {
    let start = p.started_s.unwrap_or(f64::NAN);
    s.map(|s| {
        s.samples
            .iter()
            .map(|x| (x.t - start, x.cpu_percent))
            .collect()
    })
    .unwrap_or_default()
}

/// The figures that get an interval, by the key the tables use. The p50 takes the median
/// of the windows (a median of medians); the p99 their mean, which, like the phase's own
/// p99, moves with a few bad seconds.
const SOURCES: &[Source] = &[
    Source {
        key: "requests_per_s",
        stat: Statistic::Mean,
        series: |p, _| {
            p.timeseries
                .iter()
                .map(|w| (w.t_s, w.requests_per_s))
                .collect()
        },
    },
    Source {
        key: "ok_per_s",
        stat: Statistic::Mean,
        series: |p, _| per_s(p, |w| w.ok),
    },
    Source {
        key: "p50",
        stat: Statistic::Median,
        series: |p, _| latency(p, |w| w.p50_ms),
    },
    Source {
        key: "p99",
        stat: Statistic::Mean,
        series: |p, _| latency(p, |w| w.p99_ms),
    },
    Source {
        key: "ttft_p50",
        stat: Statistic::Median,
        series: |p, _| latency(p, |w| w.ttft_p50_ms),
    },
    Source {
        key: "output_tokens_per_s",
        stat: Statistic::Mean,
        series: |p, _| per_s(p, |w| w.output_tokens),
    },
    Source {
        key: "cpu",
        stat: Statistic::Mean,
        series: cpu,
    },
];

/// The intervals of one (target, suite)'s key figures, by table row key.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Noise {
    pub figures: BTreeMap<String, FigureNoise>,
    /// Why the headline phase's figures have no interval, when they have none.
    pub none_because: Option<String>,
}

impl Noise {
    /// Intervals for the headline phase `p`; `headline` gives each figure's value by key.
    pub fn of_phase(
        p: &PhaseResult,
        stats: Option<&ContainerStats>,
        headline: &[(&str, Option<f64>)],
    ) -> Noise {
        let shape = match Shape::of(p) {
            Ok(shape) => shape,
            Err(why) => {
                return Noise {
                    figures: BTreeMap::new(),
                    none_because: Some(why),
                }
            }
        };
        let mut figures = BTreeMap::new();
        for (key, value) in headline {
            let (Some(src), Some(value)) = (SOURCES.iter().find(|s| s.key == *key), value) else {
                continue;
            };
            let xs = (src.series)(p, stats);
            let n = match &shape {
                Shape::Steady if xs.len() >= MIN_WINDOWS => {
                    let values: Vec<f64> = xs.iter().map(|x| x.1).collect();
                    FigureNoise::of_windows(&values, src.stat, *value)
                }
                Shape::Steady => None,
                Shape::Stages(bounds) => {
                    FigureNoise::of_stages(&by_stage(&xs, bounds), src.stat, *value)
                }
            };
            if let Some(n) = n {
                figures.insert(key.to_string(), n);
            }
        }
        Noise {
            figures,
            none_because: None,
        }
    }

    /// The interval of the figure with this table row key, if it has one.
    pub fn get(&self, key: &str) -> Option<&FigureNoise> {
        self.figures.get(key)
    }
}

/// The interval of one stage's figure (`requests_per_s` or `p99`, valued `value`): a
/// bootstrap over that stage's own windows, detrended; `None` under [`MIN_WINDOWS`]
/// windows left (the quick profile's stages of a few seconds).
pub fn of_stage(p: &PhaseResult, stage: u64, key: &str, value: f64) -> Option<FigureNoise> {
    let src = SOURCES.iter().find(|s| s.key == key)?;
    let bounds = stage_bounds(p);
    let i = p.stages.iter().position(|s| s.stage == stage)?;
    let xs = (src.series)(p, None);
    let own = by_stage(&xs, &bounds).swap_remove(i);
    FigureNoise::of_stages(&[own], src.stat, value)
}

/// How a phase's one-second windows can be resampled.
enum Shape {
    /// One steady load: the windows are samples of one state.
    Steady,
    /// A ramp through stages: each stage's windows, (from, to] seconds into the phase.
    Stages(Vec<(f64, f64)>),
}

impl Shape {
    /// The phase's shape, or why its windows carry no interval: too few, or a ramp without
    /// stages to stratify by. The last window is left out of the check: closed-model users
    /// wind down in it.
    fn of(p: &PhaseResult) -> Result<Shape, String> {
        let n = p.timeseries.len();
        if n < MIN_WINDOWS {
            return Err(format!(
                "phase `{}` has {n} one-second window(s), fewer than {MIN_WINDOWS}",
                p.name
            ));
        }
        let level = |w: &TimePoint| match p.model {
            LoadModel::Closed => w.active_vus as f64,
            LoadModel::Open => w.target_rate_per_s,
        };
        let body = &p.timeseries[..n - 1];
        if !body.windows(2).any(|w| level(&w[0]) != level(&w[1])) {
            return Ok(Shape::Steady);
        }
        if p.stages.is_empty() {
            return Err(format!(
                "the load changes through phase `{}` (a ramp without stages): its seconds are not samples of one steady state",
                p.name
            ));
        }
        Ok(Shape::Stages(stage_bounds(p)))
    }
}

/// Each stage's seconds, (from, to] into the phase, in the phase's order of stages.
fn stage_bounds(p: &PhaseResult) -> Vec<(f64, f64)> {
    let mut at = 0.0;
    p.stages
        .iter()
        .map(|s| {
            let from = s.start_s.unwrap_or(at);
            at = from + s.duration_s;
            (from, at)
        })
        .collect()
}

/// The values of `xs` grouped by the stage their window ended in; a window ending after
/// the last stage (users winding down) counts in the last; NaN times in none.
fn by_stage(xs: &[(f64, f64)], bounds: &[(f64, f64)]) -> Vec<Vec<f64>> {
    const EPS: f64 = 1e-6;
    let mut out = vec![Vec::new(); bounds.len()];
    for &(t, v) in xs.iter().filter(|x| x.0.is_finite()) {
        let i = bounds
            .iter()
            .position(|(_, to)| t <= to + EPS)
            .unwrap_or(bounds.len().saturating_sub(1));
        if let Some(group) = out.get_mut(i) {
            group.push(v);
        }
    }
    out
}

/// A figure as the reports print it: `43,512 ± 1,204`, and `unstable` when its CV is over
/// [`UNSTABLE_CV_PERCENT`]; the figure alone without an interval.
pub fn show(v: f64, n: Option<&FigureNoise>, fmt: fn(f64) -> String) -> String {
    let text = fmt(v);
    match n {
        Some(n) => format!(
            "{text} ± {}{}{}",
            // Signed formats (added latency) print a width without its sign.
            fmt(n.half_width()).trim_start_matches('+'),
            if n.unstable { " unstable" } else { "" },
            if n.below_resolution == Some(true) {
                " below resolution"
            } else {
                ""
            }
        ),
        None => text,
    }
}

/// The lines under a suite's table that say how its intervals were made, and which
/// targets have none and why. `per_target`: each target with a result.
pub fn footnotes(per_target: &[(&str, &Noise)]) -> Vec<String> {
    let methods: Vec<Method> = per_target
        .iter()
        .flat_map(|(_, n)| n.figures.values().map(|f| f.method))
        .collect();
    let mut out = Vec::new();
    if methods.contains(&Method::BlockBootstrap) {
        out.push(format!(
            "± is half the width of a 95 % interval from a moving-block bootstrap over the headline \
             phase's one-second windows (blocks of √n windows, {} resamples, fixed seed), scaled to \
             the figure; `unstable`: coefficient of variation over {UNSTABLE_CV_PERCENT} %.",
            super::format::thousands(stats::REPLICATES as i64)
        ));
    }
    if methods.contains(&Method::Stages) {
        out.push(format!(
            "Ramps: ± is half a 95 % interval from a stratified bootstrap: each stage's \
             one-second windows keep the stage's trend (a line, or their mean under 4 windows) \
             and have their residuals resampled in blocks of √n ({} resamples, fixed seed); \
             within one run, so it does not see drift between runs. Per-stage figures get \
             their own interval from 10 windows on.",
            super::format::thousands(stats::REPLICATES as i64)
        ));
    }
    if methods.contains(&Method::Repeats) {
        out.push(format!(
            "Over repeats (rounds interleaving the targets): each figure is the median of the \
             repeats, ± half its 95 % bootstrap interval; `unstable`: CV of the repeats over \
             {UNSTABLE_CV_PERCENT} %. Requests and errors are summed over the repeats, peak \
             memory is the highest, a frontier bound's rate is the median of the searches (a \
             search that never met it counts 0); charts and the search table show repeat 1."
        ));
    }
    if methods.contains(&Method::Paired) {
        out.push(
            "Added latency: quantiles of paired differences (target − direct within a round of \
             target, direct, control requests), ± half a 95 % moving-block bootstrap interval; \
             `below resolution`: the interval reaches down to the largest difference the \
             upstream shows against itself (control − direct)."
                .to_string(),
        );
    }
    if [Method::BlockBootstrap, Method::Paired, Method::Stages]
        .iter()
        .any(|m| methods.contains(m))
    {
        out.push(
            "Measured once: p90, p95, p99.9, max, errors, TTFT p99, inter-token latency, peak \
             memory, the load generator's CPU and frontier rates have no interval: the \
             per-second windows do not carry them."
                .to_string(),
        );
    }
    // Targets sharing a reason share a line.
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (t, n) in per_target {
        let Some(why) = n.none_because.as_deref() else {
            continue;
        };
        match reasons.iter_mut().find(|(w, _)| *w == why) {
            Some((_, ts)) => ts.push(t),
            None => reasons.push((why, vec![t])),
        }
    }
    for (why, ts) in reasons {
        out.push(format!("{}: no interval: {why}.", ts.join(", ")));
    }
    out
}

/// Whether a change lies outside the noise, and by which rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseCheck {
    pub outside: bool,
    /// `95 % intervals overlap`, `permutation p = 0.31`, `no interval`…
    pub rule: String,
}

/// Is `b` worse than `a` beyond the noise? `worse` is the direction of harm (`Less`: a fall
/// is bad). With at least [`MIN_REPEATS`] repeats on both sides: a one-sided permutation test
/// on the repeats' means at p ≤ [`ALPHA`]; otherwise the 95 % intervals must not overlap.
/// Without an interval on either side the noise is unknown and the threshold alone decides.
pub fn outside_noise(a: Option<&FigureNoise>, b: Option<&FigureNoise>, worse: Tail) -> NoiseCheck {
    let (Some(a), Some(b)) = (a, b) else {
        return NoiseCheck {
            outside: true,
            rule: "no interval".to_string(),
        };
    };
    if a.repeats.len() >= MIN_REPEATS && b.repeats.len() >= MIN_REPEATS {
        let p = stats::permutation_p(&a.repeats, &b.repeats, worse, |x| stats::mean(x));
        return NoiseCheck {
            outside: p <= ALPHA,
            rule: format!("permutation p = {p:.3}"),
        };
    }
    let apart = match worse {
        Tail::Less => b.hi < a.lo,
        Tail::Greater => b.lo > a.hi,
    };
    NoiseCheck {
        outside: apart,
        rule: if apart {
            "95 % intervals apart"
        } else {
            "95 % intervals overlap"
        }
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::load::result::TimePoint;

    fn phase(rates: &[f64], vus: &[u64]) -> PhaseResult {
        let mut p: PhaseResult = serde_json::from_value(serde_json::json!({
            "name": "steady", "model": "closed", "url": "http://x", "duration_s": 1.0,
            "vus": 10, "target_rate_per_s": null, "stream": false,
            "requests": {"total": 0, "ok": 0, "errors": {"connect": 0, "timeout": 0,
                "http_429": 0, "http_4xx": 0, "http_5xx": 0, "malformed": 0,
                "stream_cut": 0, "connection": 0}, "dropped": 0, "error_percent": 0.0},
            "throughput": {"requests_per_s": 0.0, "ok_per_s": 0.0, "output_tokens_per_s": 0.0},
            "latency_ms": {"count": 0, "min": 0.0, "mean": 0.0, "stddev": 0.0, "p50": 0.0,
                "p90": 0.0, "p95": 0.0, "p99": 0.0, "p99_9": 0.0, "max": 0.0},
            "ttfb_ms": {"count": 0, "min": 0.0, "mean": 0.0, "stddev": 0.0, "p50": 0.0,
                "p90": 0.0, "p95": 0.0, "p99": 0.0, "p99_9": 0.0, "max": 0.0},
            "ttft_ms": null, "itl_ms": null, "tpot_ms": null, "output_tokens": 0,
            "generator": {"cpu_seconds": 0.0, "cpu_percent": 0.0, "threads": 1, "cores": 1,
                "bound": false},
            "percentile_curve": [], "timeseries": []
        }))
        .unwrap();
        p.timeseries = rates
            .iter()
            .zip(vus)
            .enumerate()
            .map(|(i, (&r, &v))| TimePoint {
                t_s: (i + 1) as f64,
                active_vus: v,
                requests: r as u64,
                ok: r as u64,
                requests_per_s: r,
                p50_ms: r / 100.0,
                p99_ms: r / 10.0,
                ..Default::default()
            })
            .collect();
        p
    }

    fn headline(v: f64) -> Vec<(&'static str, Option<f64>)> {
        vec![("requests_per_s", Some(v)), ("p50", Some(v / 100.0))]
    }

    #[test]
    fn a_steady_constant_phase_has_zero_width_intervals_scaled_to_the_headline() {
        let p = phase(&[1000.0; 20], &[10; 20]);
        let n = Noise::of_phase(&p, None, &headline(990.0));
        let r = n.get("requests_per_s").unwrap();
        assert_eq!(
            (r.lo, r.hi, r.cv_percent, r.unstable),
            (990.0, 990.0, 0.0, false)
        );
        assert_eq!(
            (r.samples, r.block, r.method),
            (20, Some(4), Method::BlockBootstrap)
        );
        assert!(n.get("p50").is_some() && n.get("p99").is_none());
    }

    #[test]
    fn a_noisy_phase_is_unstable_and_its_interval_covers_the_figure() {
        let mut rng = fastrand::Rng::with_seed(3);
        let rates: Vec<f64> = (0..30).map(|_| 200.0 + 1600.0 * rng.f64()).collect();
        let p = phase(&rates, &[10; 30]);
        let r = Noise::of_phase(&p, None, &headline(1000.0)).figures["requests_per_s"].clone();
        assert!(r.lo < 1000.0 && 1000.0 < r.hi, "{r:?}");
        assert!(r.unstable && r.cv_percent > 5.0, "{r:?}");
        let text = serde_json::to_value(&r).unwrap();
        assert_eq!(text["method"], "block_bootstrap");
    }

    #[test]
    fn ramps_and_short_phases_get_no_interval_and_say_why() {
        let vus: Vec<u64> = (1..=20).collect();
        let n = Noise::of_phase(&phase(&[1000.0; 20], &vus), None, &headline(1.0));
        assert!(n.figures.is_empty());
        assert!(n.none_because.unwrap().contains("ramp"));
        let n = Noise::of_phase(&phase(&[1000.0; 5], &[10; 5]), None, &headline(1.0));
        assert!(n.none_because.unwrap().contains("5 one-second window(s)"));
        // Users winding down in the last window are not a ramp.
        let mut vus = vec![10; 20];
        vus[19] = 0;
        let n = Noise::of_phase(&phase(&[1000.0; 20], &vus), None, &headline(1.0));
        assert!(n.none_because.is_none());
    }

    /// A ramp of three 10-second stages (10, 20 and 30 VUs) whose rate is 100 per VU plus
    /// noise of `sd`.
    fn staged_ramp(sd: f64) -> PhaseResult {
        let mut rng = fastrand::Rng::with_seed(5);
        let vus: Vec<u64> = (0..30).map(|i| 10 * (1 + i / 10)).collect();
        let rates: Vec<f64> = vus
            .iter()
            .map(|v| 100.0 * *v as f64 + sd * (rng.f64() - 0.5) * 3.46)
            .collect();
        let mut p = phase(&rates, &vus);
        p.stages = (0..3)
            .map(|i| crate::load::result::StageResult {
                stage: i,
                target_vus: 10 * (i + 1),
                peak_active_vus: 10 * (i + 1),
                duration_s: 10.0,
                requests: 0,
                errors: 0,
                requests_per_s: 1000.0 * (i + 1) as f64,
                latency_ms: Default::default(),
                start_s: Some(10.0 * i as f64),
                ttft_ms: None,
                itl_ms: None,
                rig_refused: 0,
            })
            .collect();
        p
    }

    #[test]
    fn a_ramp_with_stages_gets_an_interval_from_the_noise_around_its_stages() {
        let n = Noise::of_phase(&staged_ramp(50.0), None, &headline(2000.0));
        assert!(n.none_because.is_none(), "{n:?}");
        let r = n.get("requests_per_s").unwrap();
        assert_eq!((r.method, r.samples), (Method::Stages, 30));
        // Noise of sd 50 on a mean of 2,000 over 30 windows: about ±1 %, where the stages'
        // own spread (1,000 to 3,000) would give ±30 %.
        assert!(r.lo < 2000.0 && 2000.0 < r.hi, "{r:?}");
        assert!(r.hi - r.lo < 100.0 && !r.unstable, "{r:?}");
        let clean = Noise::of_phase(&staged_ramp(0.0), None, &headline(2000.0));
        let r = clean.get("requests_per_s").unwrap();
        assert!(r.hi - r.lo < 1e-6, "{r:?}");
        // Each stage of 10 windows has its own interval; a stage that is not there has none.
        let p = staged_ramp(50.0);
        let s = of_stage(&p, 1, "requests_per_s", 2000.0).unwrap();
        assert!(
            s.lo < 2000.0 && 2000.0 < s.hi && s.hi - s.lo < 150.0,
            "{s:?}"
        );
        assert!(of_stage(&p, 7, "requests_per_s", 1.0).is_none());
        let lines = footnotes(&[("t", &n)]).join(" ");
        assert!(lines.contains("stratified bootstrap"), "{lines}");
    }

    #[test]
    fn repeats_give_their_median_and_a_cv() {
        let (m, n) = FigureNoise::of_repeats(&[100.0, 104.0, 96.0]).unwrap();
        assert_eq!(m, 100.0);
        assert!((n.cv_percent - 4.0).abs() < 1e-9, "{}", n.cv_percent);
        assert!(!n.unstable && n.lo >= 96.0 && n.hi <= 104.0 && n.lo < n.hi);
        assert_eq!(n.method, Method::Repeats);
        assert!(FigureNoise::of_repeats(&[1.0]).is_none());
    }

    fn interval(lo: f64, hi: f64) -> FigureNoise {
        FigureNoise::new(lo, hi, 0.01, Method::BlockBootstrap, 10)
    }

    #[test]
    fn overlapping_intervals_are_noise_and_apart_ones_are_not() {
        let a = interval(90.0, 110.0);
        let check = outside_noise(Some(&a), Some(&interval(80.0, 95.0)), Tail::Less);
        assert!(!check.outside && check.rule.contains("overlap"));
        let check = outside_noise(Some(&a), Some(&interval(60.0, 85.0)), Tail::Less);
        assert!(check.outside, "{check:?}");
        // Apart, but on the harmless side.
        let check = outside_noise(Some(&a), Some(&interval(60.0, 85.0)), Tail::Greater);
        assert!(!check.outside);
        assert!(outside_noise(None, Some(&a), Tail::Less).outside);
    }

    #[test]
    fn repeats_on_both_sides_use_the_permutation_test() {
        let (_, a) = FigureNoise::of_repeats(&[100.0, 101.0, 102.0]).unwrap();
        let (_, b) = FigureNoise::of_repeats(&[90.0, 91.0, 92.0]).unwrap();
        let check = outside_noise(Some(&a), Some(&b), Tail::Less);
        assert!(
            check.outside && check.rule == "permutation p = 0.050",
            "{check:?}"
        );
        let (_, c) = FigureNoise::of_repeats(&[99.0, 102.0, 90.0]).unwrap();
        let check = outside_noise(Some(&a), Some(&c), Tail::Less);
        assert!(
            !check.outside && check.rule.starts_with("permutation"),
            "{check:?}"
        );
    }
}
