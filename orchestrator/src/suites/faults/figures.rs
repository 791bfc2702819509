//! The figures of one fault phase, from its load result, the mocks' counters and probes.

use std::time::Duration;

use super::admin::MockStats;
use crate::load::result::{
    DeploymentPoint, FaultPhaseResult, PhaseResult, ProbeCounts, ThresholdCheck,
};
use crate::suites::def::FaultPhase;

pub struct Inputs<'a> {
    pub def: &'a FaultPhase,
    pub phase: &'a PhaseResult,
    pub before: &'a [MockStats],
    pub after: &'a [MockStats],
    pub samples: &'a [(f64, Vec<u64>)],
    pub probes: ProbeCounts,
    pub fault_for: Duration,
    pub duration: Duration,
    pub redundant: bool,
}

pub fn phase(i: &Inputs) -> FaultPhaseResult {
    let calls: Vec<u64> = i
        .after
        .iter()
        .zip(i.before)
        .map(|(a, b)| a.completions.total.saturating_sub(b.completions.total))
        .collect();
    let client = i.phase.requests.total + i.probes.sent;
    let ends_early = i.fault_for < i.duration;
    let fault_s = i.fault_for.as_secs_f64();
    let d = &i.def.def;
    FaultPhaseResult {
        name: d.name.clone(),
        description: d.description.clone(),
        lead_in_phase: format!("{} lead-in", d.name),
        phase: d.name.clone(),
        faults: [&d.a, &d.b]
            .iter()
            .take(i.after.len())
            .map(|f| serde_json::to_value(f).unwrap_or_default())
            .collect(),
        fault_for_s: fault_s,
        upstream_calls_per_request: (client > 0)
            .then(|| calls.iter().sum::<u64>() as f64 / client as f64),
        upstream_calls: calls,
        client_requests: client,
        series: series(i.samples),
        errors_stop_after_s: ends_early
            .then(|| errors_stop_after(i.phase, fault_s))
            .flatten(),
        a_back_after_s: ends_early
            .then(|| back_after(i.samples, 0, fault_s))
            .flatten(),
        thresholds: checks(i),
        probes: i.probes.clone(),
    }
}

/// Completions per second of each deployment between consecutive samples.
pub fn series(samples: &[(f64, Vec<u64>)]) -> Vec<DeploymentPoint> {
    samples
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| DeploymentPoint {
            t_s: w[1].0,
            per_s: w[1]
                .1
                .iter()
                .zip(&w[0].1)
                .map(|(b, a)| b.saturating_sub(*a) as f64 / (w[1].0 - w[0].0))
                .collect(),
        })
        .collect()
}

/// End of the last second with a client error inside the fault window (0 when none);
/// None when errors went on until the window's last second.
pub fn errors_stop_after(p: &PhaseResult, fault_s: f64) -> Option<f64> {
    let in_window: Vec<_> = p
        .timeseries
        .iter()
        .filter(|t| t.t_s <= fault_s + 1.0)
        .collect();
    let last = in_window
        .iter()
        .filter(|t| t.errors > 0)
        .map(|t| t.t_s)
        .fold(0.0, f64::max);
    let window_end = in_window.iter().map(|t| t.t_s).fold(0.0, f64::max);
    (last == 0.0 || last < window_end || window_end <= fault_s).then_some(last)
}

/// Seconds from `from_s` until deployment `i`'s completions grew again (first sample).
pub fn back_after(samples: &[(f64, Vec<u64>)], i: usize, from_s: f64) -> Option<f64> {
    samples
        .windows(2)
        .find(|w| w[1].0 >= from_s && w[1].1.get(i) > w[0].1.get(i))
        .map(|w| (w[1].0 - from_s).max(0.0))
}

fn checks(i: &Inputs) -> Vec<ThresholdCheck> {
    let t = &i.def.def.thresholds;
    let pass = |ok: bool| i.redundant.then_some(ok);
    let mut out = Vec::new();
    let r = &i.phase.requests;
    if let Some(min) = t.min_success_percent {
        let got = if r.total > 0 {
            r.ok as f64 * 100.0 / r.total as f64
        } else {
            0.0
        };
        out.push(ThresholdCheck {
            name: "success".into(),
            expected: format!("≥ {min} %"),
            measured: format!("{got:.2} %"),
            pass: pass(r.total > 0 && got >= min),
        });
    }
    if t.errors_only_429 == Some(true) {
        let other = r.errors.total() - r.errors.http_429;
        let p429 = i.probes.by_outcome.get("429").copied().unwrap_or(0);
        let probe_other =
            i.probes.sent - p429 - i.probes.by_outcome.get("200").copied().unwrap_or(0);
        out.push(ThresholdCheck {
            name: "errors are 429 with retry-after".into(),
            expected: "no 5xx or network error; 429s carry retry-after".into(),
            measured: format!(
                "{} × 429, {other} other; probes: {p429} × 429 ({} with retry-after), {probe_other} other",
                r.errors.http_429, i.probes.http_429_with_retry_after
            ),
            pass: pass(other == 0 && probe_other == 0 && i.probes.http_429_with_retry_after == p429),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_recovery() {
        let s = vec![
            (0.0, vec![0, 0]),
            (0.5, vec![10, 10]),
            (1.0, vec![10, 30]),
            (1.5, vec![10, 50]),
            (2.0, vec![15, 60]),
        ];
        let pts = series(&s);
        assert_eq!(pts.len(), 4);
        assert_eq!(pts[0].per_s, vec![20.0, 20.0]);
        assert_eq!(pts[1].per_s, vec![0.0, 40.0]);
        assert_eq!(back_after(&s, 0, 1.0), Some(1.0));
        assert_eq!(back_after(&s, 0, 2.5), None);
    }
}
