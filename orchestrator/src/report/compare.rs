//! Run-to-run comparison: every key figure as `a → b (±%)`, and the regressions beyond a
//! threshold (throughput fell or p99 rose) that make `orchestrator compare` exit 2.

use serde::Serialize;

use super::data::RunData;
use super::figures::KeyFigures;
use super::format::{self, MISSING};
use super::model::{cell, row, table, TableView};
use super::{environment, render, ReportError, COMPARE_TEMPLATE};

/// Marker put next to a figure that regressed beyond the threshold.
pub const REGRESSION_MARK: &str = "⛔";

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
        fmt: format::rate,
        get: |k| k.requests_per_s,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "ok requests/s",
        fmt: format::rate,
        get: |k| k.ok_per_s,
        guard: Guard::Higher,
        optional: false,
    },
    Metric {
        label: "p50",
        fmt: format::latency_ms,
        get: |k| k.p50_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "p90",
        fmt: format::latency_ms,
        get: |k| k.p90_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "p99",
        fmt: format::latency_ms,
        get: |k| k.p99_ms,
        guard: Guard::Lower,
        optional: false,
    },
    Metric {
        label: "p99.9",
        fmt: format::latency_ms,
        get: |k| k.p99_9_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "max",
        fmt: format::latency_ms,
        get: |k| k.max_ms,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "errors",
        fmt: format::percent,
        get: |k| k.error_percent,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "TTFT p50",
        fmt: format::latency_ms,
        get: |k| k.ttft_p50_ms,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "TTFT p99",
        fmt: format::latency_ms,
        get: |k| k.ttft_p99_ms,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "inter-token p50",
        fmt: format::latency_ms,
        get: |k| k.itl_p50_ms,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "output tokens/s",
        fmt: format::rate,
        get: |k| k.output_tokens_per_s,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "added p50 over direct",
        fmt: format::added_us,
        get: |k| k.added_p50_us,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "added p99 over direct",
        fmt: format::added_us,
        get: |k| k.added_p99_us,
        guard: Guard::None,
        optional: true,
    },
    Metric {
        label: "CPU (mean)",
        fmt: format::percent,
        get: |k| k.cpu_percent,
        guard: Guard::None,
        optional: false,
    },
    Metric {
        label: "peak memory",
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
    out
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
    let mut regressions = Vec::new();
    let mut views = Vec::new();
    for s in &suites {
        let pairs: Vec<(Option<KeyFigures>, Option<KeyFigures>)> = targets
            .iter()
            .map(|t| (figs(a, t, s), figs(b, t, s)))
            .collect();
        if pairs.iter().all(|(x, y)| x.is_none() && y.is_none()) {
            continue;
        }
        let mut rows = Vec::new();
        let status = targets
            .iter()
            .zip(&pairs)
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
                    regressions.push(format!(
                        "{t}/{s}: measured in {} but no result in {}",
                        a.manifest.run_id, b.manifest.run_id
                    ));
                    text = format!("{text} {REGRESSION_MARK}");
                }
                cell(text, &[], if lost { "failed" } else { "ok" })
            })
            .collect();
        rows.push(row("status", "status", &[], status));
        for m in METRICS {
            let values: Vec<(Option<f64>, Option<f64>)> = pairs
                .iter()
                .map(|(x, y)| (x.as_ref().and_then(m.get), y.as_ref().and_then(m.get)))
                .collect();
            if m.optional && values.iter().all(|(x, y)| x.is_none() && y.is_none()) {
                continue;
            }
            let cells = targets
                .iter()
                .zip(&values)
                .map(|(t, &(va, vb))| {
                    let pct = va.zip(vb).and_then(|(x, y)| change_percent(x, y));
                    let regressed = match (m.guard, pct) {
                        (Guard::Higher, Some(p)) => -p > threshold,
                        (Guard::Lower, Some(p)) => p > threshold,
                        _ => false,
                    };
                    let mut text = if va.is_none() && vb.is_none() {
                        MISSING.to_string()
                    } else {
                        format!("{} → {}", format::opt(va, m.fmt), format::opt(vb, m.fmt))
                    };
                    if let Some(p) = pct {
                        text.push_str(&format!(" ({})", format::change(p)));
                    }
                    if regressed {
                        let verb = if m.guard == Guard::Higher {
                            "fell"
                        } else {
                            "rose"
                        };
                        regressions.push(format!(
                            "{t}/{s}: {} {verb} {text}, beyond {}",
                            m.label,
                            format::percent(threshold)
                        ));
                        text = format!("{text} {REGRESSION_MARK}");
                    }
                    cell(text, &[], if regressed { "failed" } else { "ok" })
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
        regressions: regressions.clone(),
    };
    let markdown = render(&environment()?, COMPARE_TEMPLATE, &view)?;
    Ok(Comparison {
        markdown,
        regressions,
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
