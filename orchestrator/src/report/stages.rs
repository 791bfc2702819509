//! Ramps per stage: for suites whose headline phase climbs through stages of virtual
//! users (`throughput`), requests/s and p99 of each stage per target, so the report shows
//! where each target stops scaling.

use super::data::{headline_phase, RunData};
use super::format::{self, MISSING};
use super::model::{cell, rate_and_p99, row, table, TableView};
use crate::load::result::StageResult;

/// The stages of `target`'s headline phase in `suite` (empty without stages).
fn stages_of<'a>(run: &'a RunData, target: &str, suite: &str) -> &'a [StageResult] {
    run.entry(target, suite)
        .and_then(|e| e.result.as_ref())
        .and_then(headline_phase)
        .map_or(&[], |p| p.stages.as_slice())
}

/// One stage's cell: `2,345 req/s · p99 1.20 ms`, with its errors when there were any.
fn stage_text(s: &StageResult) -> String {
    let errors = if s.errors > 0 {
        format!(" · {} errors", format::thousands(s.errors as i64))
    } else {
        String::new()
    };
    format!("{}{errors}", rate_and_p99(s.requests_per_s, &s.latency_ms))
}

/// The per-stage table of `suite`, when some target's headline phase has stages.
pub fn table_of(run: &RunData, suite: &str, targets: &[String]) -> Option<TableView> {
    let per: Vec<&[StageResult]> = targets.iter().map(|t| stages_of(run, t, suite)).collect();
    let n = per
        .iter()
        .map(|s| s.iter().map(|x| x.stage + 1).max().unwrap_or(0))
        .max()?;
    if n == 0 {
        return None;
    }
    let rows = (0..n)
        .filter_map(|i| {
            let found: Vec<Option<&StageResult>> = per
                .iter()
                .map(|s| s.iter().find(|x| x.stage == i))
                .collect();
            let first = found.iter().flatten().next()?;
            let label = format!("stage {} (to {} VUs)", i + 1, first.target_vus);
            let cells = found
                .iter()
                .map(|s| cell(s.map_or(MISSING.to_string(), stage_text), &[], "ok"))
                .collect();
            Some(row("stage", &label, &[], cells))
        })
        .collect();
    Some(table(targets.to_vec(), rows, "stage"))
}
