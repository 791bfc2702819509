//! Ramps per stage: for suites whose phase climbs through stages of virtual users
//! (`throughput`, the `streams` levels of `realistic`), the figures of each stage per
//! target, so the report shows where each target stops scaling. Stream stages get one row
//! per figure: TTFT and inter-token p99 (with what they add over `direct`), errors, peak
//! memory and memory per open stream.

use super::data::{headline_phase, Entry, RunData};
use super::floor::CONTROL;
use super::format::{self, MISSING};
use super::model::{cell, row, table, RowView, TableView};
use super::noise;
use crate::load::result::{PhaseResult, StageResult, Summary};

/// The phase with stages of `target` in `suite` (the first one; else the headline).
fn staged_phase<'a>(run: &'a RunData, target: &str, suite: &str) -> Option<&'a PhaseResult> {
    let r = run.entry(target, suite)?.result.as_ref()?;
    r.phases
        .iter()
        .find(|p| !p.stages.is_empty())
        .or_else(|| headline_phase(r))
}

/// One stage with what the report needs beside it: its phase and the target's entry.
#[derive(Clone, Copy)]
struct Found<'a> {
    stage: &'a StageResult,
    phase: &'a PhaseResult,
    entry: &'a Entry,
}

/// One stage's cell: `2,345 ± 40 req/s · p99 1.20 ± 0.08 ms` (± when the stage is long
/// enough for its own interval), with its errors when there were any.
fn stage_text(f: &Found<'_>) -> String {
    let s = f.stage;
    let errors = if s.errors > 0 {
        format!(" · {} errors", format::thousands(s.errors as i64))
    } else {
        String::new()
    };
    let interval = |key, v| noise::of_stage(f.phase, s.stage, key, v);
    let rate = interval("requests_per_s", s.requests_per_s);
    let p99 = if s.latency_ms.count > 0 {
        let n = interval("p99", s.latency_ms.p99);
        noise::show(s.latency_ms.p99, n.as_ref(), format::latency_ms)
    } else {
        MISSING.to_string()
    };
    format!(
        "{} req/s · p99 {p99}{errors}{}",
        noise::show(s.requests_per_s, rate.as_ref(), format::rate),
        rig_text(s.rig_refused)
    )
}

/// ` · 12 rig refused` when the generator could not open some connections itself.
fn rig_text(n: u64) -> String {
    if n > 0 {
        format!(" · {} rig refused", format::thousands(n as i64))
    } else {
        String::new()
    }
}

/// Highest container memory during the stage, and that minus the suite's first sample
/// (the idle target) divided by the streams open: memory per open stream.
fn stage_memory(f: &Found<'_>) -> Option<(u64, Option<f64>)> {
    let stats = f.entry.stats.as_ref()?;
    let from = f.phase.started_s? + f.stage.start_s?;
    let to = from + f.stage.duration_s;
    let peak = stats
        .samples
        .iter()
        .filter(|x| x.t >= from && x.t <= to)
        .map(|x| x.memory_bytes)
        .max()?;
    let idle = stats.samples.first()?.memory_bytes;
    let per = (f.stage.peak_active_vus > 0)
        .then(|| peak.saturating_sub(idle) as f64 / f.stage.peak_active_vus as f64);
    Some((peak, per))
}

/// A p99 with what it adds over the same stage against `direct`: `62.1 ms (+1.2 ms)`.
fn p99_cell(
    get: fn(&StageResult) -> Option<&Summary>,
    f: &Found<'_>,
    direct: Option<&Found<'_>>,
) -> String {
    let Some(s) = get(f.stage).filter(|s| s.count > 0) else {
        return MISSING.to_string();
    };
    let added = direct
        .filter(|d| !std::ptr::eq(d.stage, f.stage))
        .and_then(|d| get(d.stage))
        .filter(|d| d.count > 0)
        .map_or(String::new(), |d| {
            format!(" ({})", format::added_us((s.p99 - d.p99) * 1000.0))
        });
    format!("{}{added}", format::latency_ms(s.p99))
}

fn errors_cell(f: &Found<'_>) -> String {
    let s = f.stage;
    let pct = if s.requests > 0 {
        s.errors as f64 * 100.0 / s.requests as f64
    } else {
        0.0
    };
    format!(
        "{} ({}){}",
        format::thousands(s.errors as i64),
        format::percent(pct),
        rig_text(s.rig_refused)
    )
}

fn memory_cell(f: &Found<'_>) -> String {
    match stage_memory(f) {
        Some((peak, Some(per))) => {
            format!(
                "{} · {} / stream",
                format::bytes(peak),
                format::bytes(per as u64)
            )
        }
        Some((peak, None)) => format::bytes(peak),
        None => MISSING.to_string(),
    }
}

/// The rows of one stream stage: one per figure.
fn stream_rows(i: u64, found: &[Option<Found<'_>>], direct: Option<usize>) -> Vec<RowView> {
    let Some(first) = found.iter().flatten().next() else {
        return Vec::new();
    };
    let d = direct.and_then(|d| found.get(d).copied().flatten());
    let label = |what: &str| {
        format!(
            "stage {} ({} streams): {what}",
            i + 1,
            format::thousands(first.stage.target_vus as i64)
        )
    };
    let cells = |f: &dyn Fn(&Found<'_>) -> String| {
        found
            .iter()
            .map(|x| cell(x.as_ref().map_or(MISSING.to_string(), f), &[], "ok"))
            .collect()
    };
    vec![
        row("stage", &label("streams/s · p99"), &[], cells(&stage_text)),
        row(
            "stage_ttft",
            &label("TTFT p99 (vs direct)"),
            &[],
            cells(&|x| p99_cell(|s| s.ttft_ms.as_ref(), x, d.as_ref())),
        ),
        row(
            "stage_itl",
            &label("inter-token p99 (vs direct)"),
            &[],
            cells(&|x| p99_cell(|s| s.itl_ms.as_ref(), x, d.as_ref())),
        ),
        row("stage_errors", &label("errors"), &[], cells(&errors_cell)),
        row(
            "stage_memory",
            &label("peak memory · per open stream"),
            &[],
            cells(&memory_cell),
        ),
    ]
}

/// The per-stage table of `suite`, when some target's phase has stages.
pub fn table_of(run: &RunData, suite: &str, targets: &[String]) -> Option<TableView> {
    let per: Vec<Option<(&PhaseResult, &Entry)>> = targets
        .iter()
        .map(|t| Some((staged_phase(run, t, suite)?, run.entry(t, suite)?)))
        .collect();
    let n = per
        .iter()
        .flatten()
        .map(|(p, _)| p.stages.iter().map(|x| x.stage + 1).max().unwrap_or(0))
        .max()?;
    if n == 0 {
        return None;
    }
    let direct = targets.iter().position(|t| t == CONTROL);
    let rows = (0..n)
        .flat_map(|i| {
            let found: Vec<Option<Found<'_>>> = per
                .iter()
                .map(|x| {
                    let (phase, entry) = (*x)?;
                    let stage = phase.stages.iter().find(|s| s.stage == i)?;
                    Some(Found {
                        stage,
                        phase,
                        entry,
                    })
                })
                .collect();
            let Some(first) = found.iter().flatten().next() else {
                return Vec::new();
            };
            if first.stage.ttft_ms.is_some() {
                return stream_rows(i, &found, direct);
            }
            let label = format!("stage {} (to {} VUs)", i + 1, first.stage.target_vus);
            let cells = found
                .iter()
                .map(|s| cell(s.map_or(MISSING.to_string(), |f| stage_text(&f)), &[], "ok"))
                .collect();
            vec![row("stage", &label, &[], cells)]
        })
        .collect();
    Some(table(targets.to_vec(), rows, "stage"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::load::result::tests::sample_phase;
    use crate::rundir::{ContainerStats, StatsSample};

    fn entry(memory: &[(f64, u64)]) -> Entry {
        let samples = memory
            .iter()
            .map(|&(t, memory_bytes)| StatsSample {
                t,
                cpu_percent: 0.0,
                memory_bytes,
                throttled_periods: 0,
                throttled_time_ns: 0,
                cpu_total_ns: None,
            })
            .collect();
        Entry {
            target: "t".into(),
            suite: "realistic".into(),
            result: None,
            raw_file: String::new(),
            stats: Some(ContainerStats {
                target: "t".into(),
                suite: "realistic".into(),
                container: "c".into(),
                samples,
            }),
            repeats: Vec::new(),
        }
    }

    /// A stream stage of 1,000 streams from 10 s to 12 s into a phase that started at 5 s.
    fn phase(ttft_p99: f64) -> PhaseResult {
        let mut p = sample_phase(true);
        p.started_s = Some(5.0);
        let s = &mut p.stages[0];
        (s.start_s, s.duration_s, s.peak_active_vus, s.target_vus) = (Some(10.0), 2.0, 1000, 1000);
        s.ttft_ms.as_mut().unwrap().p99 = ttft_p99;
        p
    }

    #[test]
    fn stream_stages_show_added_latency_and_memory_per_stream() {
        let mib = 1024 * 1024;
        // Idle 10 MiB at the suite's start; 30 MiB at the stage's peak; 90 MiB later on.
        let gw_entry = entry(&[
            (0.5, 10 * mib),
            (15.5, 30 * mib),
            (16.5, 20 * mib),
            (18.0, 90 * mib),
        ]);
        let (gw, direct) = (phase(60.0), phase(52.0));
        let d_entry = entry(&[]);
        let found = [
            Some(Found {
                stage: &direct.stages[0],
                phase: &direct,
                entry: &d_entry,
            }),
            Some(Found {
                stage: &gw.stages[0],
                phase: &gw,
                entry: &gw_entry,
            }),
        ];
        let rows = stream_rows(0, &found, Some(0));
        let text = |key: &str, col: usize| {
            let r = rows.iter().find(|r| r.key == key).unwrap();
            (r.label.clone(), r.cells[col].text.clone())
        };
        let (label, ttft) = text("stage_ttft", 1);
        assert_eq!(label, "stage 1 (1,000 streams): TTFT p99 (vs direct)");
        assert_eq!(ttft, "60.0 ms (+8.00 ms)");
        // Direct against itself: no added figure.
        assert_eq!(text("stage_ttft", 0).1, "52.0 ms");
        // (30 - 10) MiB over 1,000 streams.
        assert_eq!(text("stage_memory", 1).1, "30.0 MiB · 20.5 KiB / stream");
        assert_eq!(text("stage_memory", 0).1, MISSING);
        assert!(
            text("stage_errors", 1).1.ends_with("1 rig refused"),
            "{:?}",
            rows[3].cells[1].text
        );
    }
}
