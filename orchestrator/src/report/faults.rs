//! The `faults` suite's figures side by side (one column per target) and, per target, a
//! chart of client errors/s and each deployment's requests/s with the fault windows shaded.

use super::charts::color;
use super::data::RunData;
use super::format;
use super::model::{cell, row, table, CellView, ChartView, RowView, TableView};
use super::svg::{Axis, LineChart, Scale, Series};
use crate::load::result::{
    ErrorCounts, FaultPhaseResult, FaultsResult, PhaseResult, SuiteResult, ThresholdCheck,
};

const MISSING: &str = "—";

fn results<'a>(run: &'a RunData, suite: &str, targets: &[String]) -> Vec<Option<&'a SuiteResult>> {
    targets
        .iter()
        .map(|t| run.entry(t, suite).and_then(|e| e.result.as_ref()))
        .collect()
}

/// Errors by class, e.g. `12 × 429 · 3 × 5xx`; `none` when there were none.
pub fn errors_text(e: &ErrorCounts) -> String {
    let parts: Vec<String> = [
        ("429", e.http_429),
        ("4xx", e.http_4xx),
        ("5xx", e.http_5xx),
        ("connect", e.connect),
        ("timeout", e.timeout),
        ("connection", e.connection),
        ("stream cut", e.stream_cut),
        ("malformed", e.malformed),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{} × {k}", format::thousands(*n as i64)))
    .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" · ")
    }
}

fn mark(check: Option<&ThresholdCheck>) -> (&'static str, &'static str) {
    match check.and_then(|c| c.pass) {
        Some(true) => (" ✓", "ok"),
        Some(false) => (" ✗", "failed"),
        None => ("", "ok"),
    }
}

fn phase_of<'a>(r: &'a SuiteResult, name: &str) -> Option<&'a PhaseResult> {
    r.phases.iter().find(|p| p.name == name)
}

fn lat(p: Option<&PhaseResult>, pick: fn(&PhaseResult) -> f64) -> String {
    p.filter(|p| p.latency_ms.count > 0)
        .map_or(MISSING.into(), |p| format::latency_ms(pick(p)))
}

/// The figures of one phase for one target, in row order.
fn phase_cells(r: &SuiteResult, f: &FaultPhaseResult) -> Vec<(String, CellView)> {
    let lead = phase_of(r, &f.lead_in_phase);
    let p = phase_of(r, &f.phase);
    let mut out = Vec::new();
    let success = p.map_or(MISSING.into(), |p| {
        let pct = if p.requests.total > 0 {
            p.requests.ok as f64 * 100.0 / p.requests.total as f64
        } else {
            0.0
        };
        format!("{pct:.2} %")
    });
    let (m, class) = mark(f.thresholds.iter().find(|c| c.name == "success"));
    out.push((
        "client success".into(),
        cell(format!("{success}{m}"), &[], class),
    ));
    out.push((
        "errors by class".into(),
        cell(
            p.map_or(MISSING.into(), |p| errors_text(&p.requests.errors)),
            &[],
            "ok",
        ),
    ));
    let p50 = format!(
        "{} → {}",
        lat(lead, |p| p.latency_ms.p50),
        lat(p, |p| p.latency_ms.p50)
    );
    let p99 = format!(
        "{} → {}",
        lat(lead, |p| p.latency_ms.p99),
        lat(p, |p| p.latency_ms.p99)
    );
    out.push(("p50, lead-in → fault".into(), cell(p50, &[], "ok")));
    out.push(("p99, lead-in → fault".into(), cell(p99, &[], "ok")));
    let calls = f
        .upstream_calls
        .iter()
        .zip(["A", "B"])
        .map(|(n, d)| format!("{d} {}", format::thousands(*n as i64)))
        .collect::<Vec<_>>()
        .join(" · ");
    let amp = f
        .upstream_calls_per_request
        .map_or(MISSING.into(), |a| format!("{a:.2}"));
    out.push((
        "upstream calls per request".into(),
        cell(format!("{amp} ({calls})"), &[], "ok"),
    ));
    let probes = f
        .probes
        .by_outcome
        .iter()
        .map(|(k, n)| format!("{n} × {k}"))
        .collect::<Vec<_>>()
        .join(" · ");
    let ra = f
        .probes
        .by_outcome
        .get("429")
        .map(|_| format!(" ({} with retry-after)", f.probes.http_429_with_retry_after))
        .unwrap_or_default();
    out.push((
        "probes see".into(),
        cell(
            if probes.is_empty() {
                MISSING.into()
            } else {
                format!("{probes}{ra}")
            },
            &[],
            "ok",
        ),
    ));
    if f.fault_for_s > 0.0
        && (f.errors_stop_after_s.is_some() || f.a_back_after_s.is_some() || phase_ends_early(r, f))
    {
        let stop = f
            .errors_stop_after_s
            .map_or("not within the fault".into(), |s| format!("{s:.0} s"));
        let back = f
            .a_back_after_s
            .map_or("never".into(), |s| format!("{s:.2} s"));
        out.push((
            "client errors stop after (1 s res.)".into(),
            cell(stop, &[], "ok"),
        ));
        out.push(("A takes traffic again after".into(), cell(back, &[], "ok")));
    }
    for c in f.thresholds.iter().filter(|c| c.name != "success") {
        let (m, class) = mark(Some(c));
        out.push((
            c.name.clone(),
            cell(format!("{}{m}", c.measured), &[], class),
        ));
    }
    out
}

fn phase_ends_early(r: &SuiteResult, f: &FaultPhaseResult) -> bool {
    phase_of(r, &f.phase).is_some_and(|p| f.fault_for_s + 1.0 < p.duration_s)
}

/// The side-by-side table; None when no target has faults figures.
pub fn table_of(run: &RunData, suite: &str, targets: &[String]) -> Option<TableView> {
    let res = results(run, suite, targets);
    let faults: Vec<Option<&FaultsResult>> = res
        .iter()
        .map(|r| r.and_then(|r| r.faults.as_ref()))
        .collect();
    let first = faults.iter().flatten().next()?;
    let mut rows: Vec<RowView> = Vec::new();
    for fp in &first.phases {
        let per_target: Vec<Vec<(String, CellView)>> = res
            .iter()
            .zip(&faults)
            .map(|(r, f)| {
                match (
                    r,
                    f.and_then(|f| f.phases.iter().find(|p| p.name == fp.name)),
                ) {
                    (Some(r), Some(p)) => phase_cells(r, p),
                    _ => Vec::new(),
                }
            })
            .collect();
        let labels = per_target
            .iter()
            .max_by_key(|c| c.len())
            .cloned()
            .unwrap_or_default();
        for (label, _) in labels {
            let cells = per_target
                .iter()
                .map(|c| {
                    c.iter()
                        .find(|(l, _)| *l == label)
                        .map_or_else(|| cell(MISSING.into(), &[], "missing"), |(_, v)| v.clone())
                })
                .collect();
            rows.push(row("fault", &format!("{} · {label}", fp.name), &[], cells));
        }
    }
    let cancel: Vec<CellView> = faults
        .iter()
        .map(|f| match f.and_then(|f| f.cancel.as_ref()) {
            Some(c) => cell(
                format!(
                    "{} of {} ({} while connected, {} before)",
                    c.upstream_open_after,
                    c.first_token,
                    c.upstream_open_connected,
                    c.upstream_open_before
                ),
                &[],
                "ok",
            ),
            None => cell(MISSING.into(), &[], "missing"),
        })
        .collect();
    rows.push(row(
        "fault",
        "client cancel · upstream streams still open 1 s after the clients left",
        &[],
        cancel,
    ));
    let head = targets.iter().zip(&faults).map(|(t, f)| match f {
        Some(f) if !f.redundant => format!("{t} (raw faults, no 2nd deployment)"),
        Some(f) => format!("{t} ({} req/s)", format::rate(f.rate_per_s)),
        None => t.clone(),
    });
    Some(table(head.collect(), rows, "phase · figure"))
}

/// Per target: client errors/s and each deployment's requests/s over the faulted phases
/// laid end to end, every fault window shaded.
pub fn charts(run: &RunData, suite: &str, targets: &[String]) -> Vec<ChartView> {
    let mut out = Vec::new();
    for (i, (t, r)) in targets.iter().zip(results(run, suite, targets)).enumerate() {
        let Some((r, f)) = r.and_then(|r| Some((r, r.faults.as_ref()?))) else {
            continue;
        };
        let (mut errs, mut a, mut b, mut bands) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0.0;
        for fp in &f.phases {
            let Some(p) = phase_of(r, &fp.phase) else {
                continue;
            };
            errs.extend(
                p.timeseries
                    .iter()
                    .map(|t| (offset + t.t_s, t.errors as f64)),
            );
            for d in &fp.series {
                a.push((offset + d.t_s, d.per_s.first().copied().unwrap_or(0.0)));
                b.push((offset + d.t_s, d.per_s.get(1).copied().unwrap_or(0.0)));
            }
            bands.push((offset, offset + fp.fault_for_s));
            offset += p.duration_s.max(fp.series.last().map_or(0.0, |d| d.t_s));
        }
        let chart = LineChart {
            title: format!(
                "{suite}: {t}, client errors/s and requests/s per deployment (faults shaded)"
            ),
            bands,
            x: Axis {
                label: "seconds of faulted phases".into(),
                scale: Scale::Linear,
                format: |v| format::rate(v),
                from_zero: true,
            },
            y: Axis {
                label: "per second".into(),
                scale: Scale::Linear,
                format: |v| format::rate(v),
                from_zero: true,
            },
            series: vec![
                Series {
                    name: "client errors/s".into(),
                    color: "#dc2626".into(),
                    points: errs,
                },
                Series {
                    name: "A requests/s".into(),
                    color: color(t, i),
                    points: a,
                },
                Series {
                    name: "B requests/s".into(),
                    color: "#16a34a".into(),
                    points: b,
                },
            ],
        };
        if let Some(svg) = chart.to_svg() {
            out.push(ChartView {
                title: chart.title,
                svg,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_listed_by_class() {
        assert_eq!(errors_text(&ErrorCounts::default()), "none");
        let e = ErrorCounts {
            http_429: 1200,
            stream_cut: 3,
            ..ErrorCounts::default()
        };
        assert_eq!(errors_text(&e), "1,200 × 429 · 3 × stream cut");
    }
}
