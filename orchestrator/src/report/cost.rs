//! Cost figures that travel across machines: the target's CPU time per request (per
//! stream in streaming suites) from its cgroup's cumulative CPU counter, and, in long
//! phases, where its memory settles and how fast it grows.

use crate::load::result::PhaseResult;
use crate::rundir::{ContainerStats, StatsSample};

use super::stats;

/// Fewest per-second samples in a phase for a memory trend: under this a slope is noise.
const MIN_TREND_SAMPLES: usize = 20;

/// The stats samples taken while phase `p` ran (its `started_s` is on their clock).
fn during<'a>(p: &PhaseResult, stats: &'a ContainerStats) -> Vec<&'a StatsSample> {
    let Some(start) = p.started_s else {
        return Vec::new();
    };
    let end = start + p.duration_s;
    stats
        .samples
        .iter()
        .filter(|s| s.t >= start && s.t <= end)
        .collect()
}

/// The container's CPU time per request during phase `p`, µs: the rate of its cumulative
/// CPU counter between the first and last samples inside the phase, over the phase's
/// request rate. `None` without two such samples or without requests.
pub fn cpu_us_per_request(p: &PhaseResult, stats: &ContainerStats) -> Option<f64> {
    let inside = during(p, stats);
    let (first, last) = (inside.first()?, inside.last()?);
    let (a, b) = (first.cpu_total_ns?, last.cpu_total_ns?);
    let dt = last.t - first.t;
    let rps = p.throughput.requests_per_s;
    if dt <= 0.0 || rps <= 0.0 || b < a {
        return None;
    }
    let ns_per_s = (b - a) as f64 / dt;
    Some(ns_per_s / rps / 1000.0)
}

/// Memory over a long phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryTrend {
    /// Median of the last quarter of the phase's samples.
    pub plateau_bytes: f64,
    /// Least-squares slope over the second half of the phase, MiB per minute: near zero
    /// when memory has settled, the leak rate when it has not.
    pub growth_mib_per_min: f64,
}

/// The memory trend of phase `p`; `None` for phases with under [`MIN_TREND_SAMPLES`]
/// samples.
pub fn memory_trend(p: &PhaseResult, stats: &ContainerStats) -> Option<MemoryTrend> {
    let inside = during(p, stats);
    if inside.len() < MIN_TREND_SAMPLES {
        return None;
    }
    let n = inside.len();
    let last_quarter: Vec<f64> = inside[n - n / 4..]
        .iter()
        .map(|s| s.memory_bytes as f64)
        .collect();
    let half = &inside[n / 2..];
    let xs: Vec<f64> = half.iter().map(|s| s.t / 60.0).collect();
    let ys: Vec<f64> = half
        .iter()
        .map(|s| s.memory_bytes as f64 / (1024.0 * 1024.0))
        .collect();
    Some(MemoryTrend {
        plateau_bytes: stats::median(&last_quarter),
        growth_mib_per_min: slope(&xs, &ys)?,
    })
}

/// Least-squares slope of `ys` against `xs`; `None` when the xs do not vary.
fn slope(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (mx, my) = (stats::mean(xs), stats::mean(ys));
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::result::Throughput;

    fn sample(t: f64, cpu_total_ns: u64, memory_bytes: u64) -> StatsSample {
        StatsSample {
            t,
            cpu_percent: 0.0,
            memory_bytes,
            throttled_periods: 0,
            throttled_time_ns: 0,
            cpu_total_ns: Some(cpu_total_ns),
        }
    }

    fn phase(started_s: f64, duration_s: f64, rps: f64) -> PhaseResult {
        let mut p = crate::load::result::tests::sample_phase(false);
        p.started_s = Some(started_s);
        p.duration_s = duration_s;
        p.throughput = Throughput {
            requests_per_s: rps,
            ok_per_s: rps,
            output_tokens_per_s: 0.0,
        };
        p
    }

    fn stats(samples: Vec<StatsSample>) -> ContainerStats {
        ContainerStats {
            target: "t".into(),
            suite: "s".into(),
            container: "c".into(),
            samples,
        }
    }

    #[test]
    fn cpu_per_request_from_the_counter_inside_the_phase() {
        // Half a core busy from t = 2 s; 10,000 requests/s: 50 µs of CPU each.
        let s = stats(
            (0..=12)
                .map(|i| sample(i as f64, (i.max(2) - 2) * 500_000_000, 0))
                .collect(),
        );
        let p = phase(2.0, 10.0, 10_000.0);
        let got = cpu_us_per_request(&p, &s).unwrap_or(f64::NAN);
        assert!((got - 50.0).abs() < 1e-9, "{got}");
        // Without the phase's start, or without samples inside it: no figure.
        let mut old = p.clone();
        old.started_s = None;
        assert_eq!(cpu_us_per_request(&old, &s), None);
        assert_eq!(cpu_us_per_request(&phase(100.0, 10.0, 1.0), &s), None);
    }

    #[test]
    fn memory_settles_or_grows() {
        let mib = 1024 * 1024;
        // Flat at 40 MiB after a start-up climb.
        let flat = stats(
            (0..60)
                .map(|i| sample(i as f64, 0, (40 - (20 - i).max(0) / 2) as u64 * mib))
                .collect(),
        );
        let t = memory_trend(&phase(0.0, 60.0, 1.0), &flat).unwrap_or_else(|| panic!("trend"));
        assert_eq!(t.plateau_bytes, (40 * mib) as f64);
        assert!(t.growth_mib_per_min.abs() < 1e-9, "{t:?}");
        // Leaking 1 MiB every 10 s: 6 MiB/min.
        let leak = stats(
            (0..60)
                .map(|i| sample(i as f64, 0, 100 * mib + i * mib / 10))
                .collect(),
        );
        let t = memory_trend(&phase(0.0, 60.0, 1.0), &leak).unwrap_or_else(|| panic!("trend"));
        assert!((t.growth_mib_per_min - 6.0).abs() < 0.01, "{t:?}");
        // A short phase has no trend.
        assert_eq!(memory_trend(&phase(0.0, 5.0, 1.0), &leak), None);
    }
}
