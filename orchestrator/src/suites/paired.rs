//! The overhead suite's paired measurement. Each virtual user sends, in every round, the
//! request to the target, the same request to the upstream directly, and again to the
//! upstream (the control). The target's added latency is the distribution of the
//! differences target − direct within a round (neighbouring requests share the machine's
//! state, so drift cancels); control − direct is the instrument's own difference, which
//! gives the resolution below which an added latency cannot be told from zero.

use crate::load::engine::{RoundLog, FAILED};
use crate::load::result::{Claimed, Paired, PairedFigure};
use crate::report::stats::{self, Interval};

/// Request indices of a round, in the order the overhead suite sends them.
pub const TARGET: usize = 0;
pub const DIRECT: usize = 1;
pub const CONTROL: usize = 2;

/// Bootstrap resamples; fewer than the reports' 2,000 because a minute at concurrency 1
/// can hold 100k+ pairs, and each resample takes a quantile of all of them.
const REPLICATES: usize = 1000;

/// The paired differences (µs) of request `of` against [`DIRECT`] over every round where
/// both answered, VU by VU in send order.
pub fn differences(logs: &[RoundLog], of: usize) -> Vec<f64> {
    let mut d = Vec::new();
    for log in logs {
        let (Some(a), Some(b)) = (log.latency_us.get(of), log.latency_us.get(DIRECT)) else {
            continue;
        };
        d.extend(
            a.iter()
                .zip(b)
                .filter(|(x, y)| **x != FAILED && **y != FAILED)
                .map(|(x, y)| *x as f64 - *y as f64),
        );
    }
    d
}

/// The `q` quantile of `xs`, reordering it (linear time).
fn quantile_in_place(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let k = ((xs.len() - 1) as f64 * q).round() as usize;
    let (_, v, _) = xs.select_nth_unstable_by(k, f64::total_cmp);
    *v
}

/// The `q` quantile of `d` with a moving-block bootstrap interval (blocks keep the
/// short-range correlation of consecutive rounds).
fn figure(d: &[f64], q: f64) -> (f64, Interval) {
    let value = quantile_in_place(&mut d.to_vec(), q);
    let block = stats::block_length(d.len());
    let mut reps = stats::block_bootstrap(d, block, REPLICATES, stats::SEED, |xs| {
        quantile_in_place(xs, q)
    });
    (value, stats::percentile_interval(&mut reps))
}

/// One quantile of target − direct against the same quantile of control − direct.
/// Resolution: the largest magnitude in the control's interval; the added figure is
/// below resolution when its interval reaches down to it.
fn paired_figure(target: &[f64], control: &[f64], q: f64) -> PairedFigure {
    let (value, ci) = figure(target, q);
    let (cval, cci) = figure(control, q);
    let resolution = cci.lo.abs().max(cci.hi.abs());
    PairedFigure {
        added_us: value,
        ci_us: [ci.lo, ci.hi],
        control_us: cval,
        control_ci_us: [cci.lo, cci.hi],
        resolution_us: resolution,
        below_resolution: ci.lo <= resolution,
    }
}

/// The paired figures of a run's rounds; `None` without any complete round.
pub fn paired(logs: &[RoundLog]) -> Option<Paired> {
    let target = differences(logs, TARGET);
    let control = differences(logs, CONTROL);
    if target.is_empty() || control.is_empty() {
        return None;
    }
    Some(Paired {
        pairs: target.len() as u64,
        block: stats::block_length(target.len()) as u64,
        replicates: REPLICATES as u64,
        p50: paired_figure(&target, &control, 0.5),
        p99: paired_figure(&target, &control, 0.99),
        claimed: claimed(logs),
    })
}

/// The target's own overhead headers over the rounds, when it sent any.
fn claimed(logs: &[RoundLog]) -> Option<Claimed> {
    let mut xs: Vec<f64> = logs
        .iter()
        .filter_map(|l| l.claimed_us.get(TARGET))
        .flatten()
        .map(|&v| v as f64)
        .collect();
    if xs.is_empty() {
        return None;
    }
    Some(Claimed {
        samples: xs.len() as u64,
        p50_us: quantile_in_place(&mut xs, 0.5),
        p99_us: quantile_in_place(&mut xs, 0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds of (target, direct, control) latencies from a deterministic jitter.
    fn rounds(n: usize, added: u64) -> Vec<RoundLog> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut log = RoundLog {
            latency_us: vec![Vec::new(); 3],
            claimed_us: vec![Vec::new(); 3],
        };
        let l = &mut log.latency_us;
        for _ in 0..n {
            // The machine's state drifts slowly; every request of a round shares it.
            let base = 200 + rng.u64(0..50);
            l[TARGET].push(base + added + rng.u64(0..10));
            l[DIRECT].push(base + rng.u64(0..10));
            l[CONTROL].push(base + rng.u64(0..10));
        }
        vec![log]
    }

    #[test]
    fn added_latency_is_found_and_bracketed() {
        let Some(p) = paired(&rounds(5000, 100)) else {
            panic!("no pairs")
        };
        assert_eq!(p.pairs, 5000);
        assert!((p.p50.added_us - 100.0).abs() <= 2.0, "{:?}", p.p50);
        assert!(p.p50.ci_us[0] <= p.p50.added_us && p.p50.added_us <= p.p50.ci_us[1]);
        assert!(p.p50.control_us.abs() <= 2.0, "{:?}", p.p50);
        assert!(!p.p50.below_resolution && !p.p99.below_resolution);
        // The spread of the differences is ±9 µs, far under the 50 µs drift.
        assert!(p.p99.added_us < 110.0, "{:?}", p.p99);
        assert!(p.claimed.is_none());
        // A target that states its overhead: its claims are summarized beside.
        let mut logs = rounds(100, 100);
        logs[0].claimed_us[TARGET] = (1..=100).collect();
        let Some(c) = paired(&logs).and_then(|p| p.claimed) else {
            panic!("no claims")
        };
        assert_eq!((c.samples, c.p50_us, c.p99_us), (100, 51.0, 99.0));
    }

    #[test]
    fn no_difference_is_below_resolution() {
        let Some(p) = paired(&rounds(5000, 0)) else {
            panic!("no pairs")
        };
        assert!(p.p50.below_resolution, "{:?}", p.p50);
    }

    #[test]
    fn failed_requests_drop_their_round() {
        let mut logs = rounds(10, 5);
        logs[0].latency_us[DIRECT][3] = FAILED;
        logs[0].latency_us[TARGET][7] = FAILED;
        assert_eq!(differences(&logs, TARGET).len(), 8);
        assert_eq!(differences(&logs, CONTROL).len(), 9);
        // A round cut short by the end of the phase pairs only what both sides sent.
        logs[0].latency_us[TARGET].push(1);
        assert_eq!(differences(&logs, TARGET).len(), 8);
        assert!(paired(&[]).is_none());
    }
}
