//! Run-to-run comparison: every key figure as `a → b (±%)`, and the regressions beyond a
//! threshold (throughput fell or p99 rose) and outside the noise that make
//! `orchestrator compare` exit 2.

use serde::Serialize;

use super::data::RunData;
use super::figures::KeyFigures;
use super::format::{self, MISSING};
use super::model::{cell, row, table, CellView, RowView, TableView};
use super::noise;
use super::stats::Tail;
use super::{environment, render, ReportError, COMPARE_TEMPLATE};

/// Marker put next to a figure that regressed beyond the threshold.
pub const REGRESSION_MARK: &str = "⛔";
/// Put next to a change beyond the threshold that lies within the noise.
pub const WITHIN_NOISE: &str = "(within noise)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// A fall beyond the threshold is a regression.
    Higher,
    /// A rise beyond the threshold is a regression.
    Lower,
    None,
}

struct Metric {
    label: &'static str,
    /// The key of the figure's interval in [`KeyFigures::noise`].
    key: &'static str,
    fmt: fn(f64) -> String,
    get: fn(&KeyFigures) -> Option<f64>,
    guard: Guard,
    optional: bool,
}

fn mem(v: f64) -> String {
    format::bytes(v as u64)
}

const METRICS: &[Metric] = &[
    Metric {
        label: "requests/s",
        key: "requests_per_s",
        fmt: format::rate,
        get: |k| k.requests_per_s,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "ok requests/s",
        key: "ok_per_s",
        fmt: format::rate,
        get: |k| k.ok_per_s,
        guard: Guard::Higher,
        optional: false,
    },
    Metric {
        label: "p50",
        key: "p50",
        fmt: format::latency_ms,
        get: |k| k.p50_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "p90",
        key: "p90",
        fmt: format::latency_ms,
        get: |k| k.p90_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "p99",
        key: "p99",
        fmt: format::latency_ms,
        get: |k| k.p99_ms,
        guard: Guard::Lower,
        optional: false,
    },
    Metric {
        label: "p99.9",
        key: "p99_9",
        fmt: format::latency_ms,
        get: |k| k.p99_9_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "max",
        key: "max",
        fmt: format::latency_ms,
        get: |k| k.max_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "errors",
        key: "errors",
        fmt: format::percent,
        get: |k| k.error_percent,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "TTFT p50",
        key: "ttft_p50",
        fmt: format::latency_ms,
        get: |k| k.ttft_p50_ms,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "TTFT p99",
        key: "ttft_p99",
        fmt: format::latency_ms,
        get: |k| k.ttft_p99_ms,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "inter-token p50",
        key: "itl_p50",
        fmt: format::latency_ms,
        get: |k| k.itl_p50_ms,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "output tokens/s",
        key: "output_tokens_per_s",
        fmt: format::rate,
        get: |k| k.output_tokens_per_s,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "added p50 over direct",
        key: "added_p50",
        fmt: format::added_us,
        get: |k| k.added_p50_us,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "added p99 over direct",
        key: "added_p99",
        fmt: format::added_us,
        get: |k| k.added_p99_us,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "CPU (mean)",
        key: "cpu",
        fmt: format::percent,
        get: |k| k.cpu_percent,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "peak memory",
        key: "memory",
        fmt: mem,
        get: |k| k.peak_memory_bytes.map(|b| b as f64),
        guard: Guard::None,
        optional: false,
    },
];

/// The relative change from `a` to `b` in percent, when `a` is not zero.
pub fn change_percent(a: f64, b: f64) -> Option<f64> {
    (a != 0.0).then(|| (b - a) / a.abs() * 100.0)
}

#[derive(Debug, Clone, Serialize)]
struct CompareSuite {
    name: String,
    table: TableView,
}

#[derive(Debug, Clone, Serialize)]
struct CompareView {
    run_a: String,
    run_b: String,
    /// How each run was made, one line each.
    about_a: String,
    about_b: String,
    /// Differences in how the runs were made that make the comparison shaky.
    caveats: Vec<String>,
    threshold: String,
    suites: Vec<CompareSuite>,
    regressions: Vec<String>,
    /// Changes beyond the threshold that lie within the noise: not regressions.
    within_noise: Vec<String>,
}

/// The comparison of two runs.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub markdown: String,
    /// One line per figure beyond the threshold: `gateway/baseline: p99 …`.
    pub regressions: Vec<String>,
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|x| !a.contains(x)).cloned());
    out
}

fn about(r: &RunData) -> String {
    let m = &r.manifest;
    format!(
        "profile {}, commit {}, started {}, {} ({} cores)",
        m.profile,
        m.git_commit.as_deref().unwrap_or(MISSING),
        m.started_at.to_rfc3339(),
        m.host.cpu_model,
        m.host.cores
    )
}

/// What differs between the runs' set-ups beyond the code under test.
fn caveats(a: &RunData, b: &RunData) -> Vec<String> {
    let (ma, mb) = (&a.manifest, &b.manifest);
    let mut out = Vec::new();
    let mut differ = |what: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{what} differs: {x} → {y}"));
        }
    };
    differ("profile", ma.profile.clone(), mb.profile.clone());
    differ(
        "machine",
        ma.host.cpu_model.clone(),
        mb.host.cpu_model.clone(),
    );
    differ(
        "cores",
        ma.host.cores.to_string(),
        mb.host.cores.to_string(),
    );
    differ(
        "load generator cpuset",
        ma.generator_cpuset.clone(),
        mb.generator_cpuset.clone(),
    );

    for t in &ma.targets {
        if let Some(u) = mb.targets.iter().find(|u| u.name == t.name) {
            differ(
                &format!("{} cpuset", t.name),
                t.cpuset.clone(),
                u.cpuset.clone(),
            );
            differ(
                &format!("{} memory limit", t.name),
                format::bytes(t.memory_limit_bytes),
                format::bytes(u.memory_limit_bytes),
            );
        }
    }
    for (which, m) in [("A", ma), ("B", mb)] {
        if let Some(r) = m.rig.as_ref().filter(|r| !r.qualified) {
            out.push(format!("run {which}'s rig check failed: {}", r.note));
        }
    }
    out
}

/// What the figures of one suite said: regressions, and changes beyond the threshold that
/// lie within the noise.
#[derive(Default)]
struct Findings {
    regressions: Vec<String>,
    within_noise: Vec<String>,
}

/// The status row of a suite: where each target was measured; a target measured in `a`
/// and lost in `b` is a regression.
fn status_row(
    a: &RunData,
    b: &RunData,
    suite: &str,
    targets: &[String],
    pairs: &[(Option<KeyFigures>, Option<KeyFigures>)],
    found: &mut Findings,
) -> RowView {
    let cells = targets
        .iter()
        .zip(pairs)
        .map(|(t, (fa, fb))| {
            let mut text = match (fa, fb) {
                (Some(_), Some(_)) => "measured in both".to_string(),
                (Some(_), None) => format!("no result in {}", b.manifest.run_id),
                (None, Some(_)) => format!("no result in {}", a.manifest.run_id),
                (None, None) => MISSING.to_string(),
            };
            let lost = fa
                .as_ref()
                .and_then(|f| f.ok_per_s)
                .is_some_and(|v| v > 0.0)
                && fb.is_none();
            if lost {
                found.regressions.push(format!(
                    "{t}/{suite}: measured in {} but no result in {}",
                    a.manifest.run_id, b.manifest.run_id
                ));
                text = format!("{text} {REGRESSION_MARK}");
            }
            cell(text, &[], if lost { "failed" } else { "ok" })
        })
        .collect();
    row("status", "status", &[], cells)
}

/// One figure of one target as `a → b (±%)`, each with its interval. A change beyond the
/// threshold in the guarded direction is a regression when it also lies outside the noise
/// ([`noise::outside_noise`]), and "within noise" otherwise.
fn metric_cell(
    m: &Metric,
    at: &str,
    (fa, fb): (Option<&KeyFigures>, Option<&KeyFigures>),
    threshold: f64,
    found: &mut Findings,
) -> CellView {
    let (va, vb) = (fa.and_then(m.get), fb.and_then(m.get));
    let (na, nb) = (
        fa.and_then(|f| f.noise.get(m.key)),
        fb.and_then(|f| f.noise.get(m.key)),
    );
    if va.is_none() && vb.is_none() {
        return cell(MISSING.to_string(), &[], "ok");
    }
    let show = |v: Option<f64>, n| format::opt(v, |v| noise::show(v, n, m.fmt));
    let pct = va.zip(vb).and_then(|(x, y)| change_percent(x, y));
    let mut text = format!("{} → {}", show(va, na), show(vb, nb));
    if let Some(p) = pct {
        text.push_str(&format!(" ({})", format::change(p)));
    }
    let (beyond, verb, worse) = match (m.guard, pct) {
        (Guard::Higher, Some(p)) => (-p > threshold, "fell", Tail::Less),
        (Guard::Lower, Some(p)) => (p > threshold, "rose", Tail::Greater),
        _ => return cell(text, &[], "ok"),
    };
    if !beyond {
        return cell(text, &[], "ok");
    }
    let check = noise::outside_noise(na, nb, worse);
    let line = format!(
        "{at}: {} {verb} {text}, beyond {}",
        m.label,
        format::percent(threshold)
    );
    if check.outside {
        found.regressions.push(format!("{line} ({})", check.rule));
        cell(format!("{text} {REGRESSION_MARK}"), &[], "failed")
    } else {
        found
            .within_noise
            .push(format!("{line} but within noise ({})", check.rule));
        cell(format!("{text} {WITHIN_NOISE}"), &[], "ok")
    }
}

/// Compares run `b` against run `a`; `threshold` is in percent.
pub fn compare_runs(a: &RunData, b: &RunData, threshold: f64) -> Result<Comparison, ReportError> {
    let targets = union(&a.target_names(), &b.target_names());
    let suites = union(&a.manifest.suites, &b.manifest.suites);
    let figs = |run: &RunData, t: &str, s: &str| -> Option<KeyFigures> {
        let e = run.entry(t, s)?;
        e.result.as_ref()?;
        Some(KeyFigures::of(e))
    };
    let mut found = Findings::default();
    let mut views = Vec::new();
    for s in &suites {
        let pairs: Vec<(Option<KeyFigures>, Option<KeyFigures>)> = targets
            .iter()
            .map(|t| (figs(a, t, s), figs(b, t, s)))
            .collect();
        if pairs.iter().all(|(x, y)| x.is_none() && y.is_none()) {
            continue;
        }
        let mut rows = vec![status_row(a, b, s, &targets, &pairs, &mut found)];
        for m in METRICS {
            let absent = pairs.iter().all(|(x, y)| {
                x.as_ref().and_then(m.get).is_none() && y.as_ref().and_then(m.get).is_none()
            });
            if m.optional && absent {
                continue;
            }
            let cells = targets
                .iter()
                .zip(&pairs)
                .map(|(t, (x, y))| {
                    let at = format!("{t}/{s}");
                    metric_cell(m, &at, (x.as_ref(), y.as_ref()), threshold, &mut found)
                })
                .collect();
            rows.push(row(m.label, m.label, &[], cells));
        }
        views.push(CompareSuite {
            name: s.clone(),
            table: table(targets.clone(), rows, "metric"),
        });
    }
    let view = CompareView {
        run_a: a.manifest.run_id.clone(),
        run_b: b.manifest.run_id.clone(),
        about_a: about(a),
        about_b: about(b),
        caveats: caveats(a, b),
        threshold: format::percent(threshold),
        suites: views,
        regressions: found.regressions.clone(),
        within_noise: found.within_noise,
    };
    let markdown = render(&environment()?, COMPARE_TEMPLATE, &view)?;
    Ok(Comparison {
        markdown,
        regressions: found.regressions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_is_relative_to_a() {
        assert_eq!(change_percent(100.0, 90.0), Some(-10.0));
        assert_eq!(change_percent(0.0, 5.0), None);
    }
}
