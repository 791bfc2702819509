//! The suites' thresholds as the reports show them: per suite a table of every threshold
//! against each target (✓/✗ with the measured figure) and the target's verdict, and one
//! headline line per run. The verdicts are the ones stored in the raw results.

use super::data::RunData;
use super::model::{cell, row, table, CellView, TableView};
use crate::load::result::ThresholdCheck;

/// What a verdict cell says.
pub const PASS: &str = "✓ pass";
pub const FAIL: &str = "✗ fail";

fn checks<'a>(run: &'a RunData, target: &str, suite: &str) -> Option<&'a [ThresholdCheck]> {
    run.entry(target, suite)
        .and_then(|e| e.result.as_ref())
        .and_then(|r| r.thresholds.as_deref())
}

/// Failed when one failed, passed when one passed and none failed; `None` when nothing
/// could be judged.
pub fn verdict(checks: &[ThresholdCheck]) -> Option<bool> {
    if checks.iter().any(|c| c.pass == Some(false)) {
        Some(false)
    } else if checks.iter().any(|c| c.pass == Some(true)) {
        Some(true)
    } else {
        None
    }
}

fn label(c: &ThresholdCheck) -> String {
    format!("{} {}", c.name, c.expected)
}

fn check_cell(c: Option<&ThresholdCheck>) -> CellView {
    match c {
        Some(c) => match c.pass {
            Some(true) => cell(format!("✓ {}", c.measured), &[], "ok"),
            Some(false) => cell(format!("✗ {}", c.measured), &[], "failed"),
            None => cell(c.measured.clone(), &[], "missing"),
        },
        // Not judged for this target (added latency on direct) or no result.
        None => cell("n/a".into(), &[], "missing"),
    }
}

fn verdict_cell(checks: Option<&[ThresholdCheck]>) -> CellView {
    let Some(checks) = checks else {
        return cell("not judged".into(), &[], "missing");
    };
    let failed = checks.iter().filter(|c| c.pass == Some(false)).count();
    match verdict(checks) {
        Some(true) => cell(PASS.into(), &[], "ok"),
        Some(false) => cell(
            format!("{FAIL} ({failed} of {})", checks.len()),
            &[],
            "failed",
        ),
        None => cell("not judged".into(), &[], "missing"),
    }
}

/// The thresholds of one suite against each target; `None` when no target was judged.
pub fn table_of(run: &RunData, suite: &str, targets: &[String]) -> Option<TableView> {
    let per: Vec<Option<&[ThresholdCheck]>> =
        targets.iter().map(|t| checks(run, t, suite)).collect();
    let mut labels: Vec<String> = Vec::new();
    for c in per.iter().flatten().flat_map(|cs| cs.iter()) {
        if !labels.contains(&label(c)) {
            labels.push(label(c));
        }
    }
    if labels.is_empty() {
        return None;
    }
    let mut rows: Vec<_> = labels
        .iter()
        .map(|l| {
            let cells = per
                .iter()
                .map(|cs| check_cell(cs.and_then(|cs| cs.iter().find(|c| &label(c) == l))))
                .collect();
            row("threshold", l, &[], cells)
        })
        .collect();
    let verdicts = per.iter().map(|cs| verdict_cell(*cs)).collect();
    rows.push(row("verdict", "verdict", &[], verdicts));
    Some(table(targets.to_vec(), rows, "threshold"))
}

/// One line for the headline: each target's verdict over every suite, naming what failed.
pub fn headline(run: &RunData, targets: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    for t in targets {
        let mut judged = 0;
        let mut failed = Vec::new();
        for s in &run.manifest.suites {
            for c in checks(run, t, s).unwrap_or_default() {
                judged += usize::from(c.pass.is_some());
                if c.pass == Some(false) {
                    failed.push(format!("`{s}` {} {}", c.name, c.measured));
                }
            }
        }
        if judged == 0 {
            continue;
        }
        parts.push(if failed.is_empty() {
            format!("{t} ✓ {judged} of {judged} passed")
        } else {
            format!(
                "{t} ✗ {} of {judged} failed ({})",
                failed.len(),
                failed.join(", ")
            )
        });
    }
    (!parts.is_empty()).then(|| format!("thresholds: {}", parts.join("; ")))
}
