//! The frontier search per p99 bound and target: the rate found, the rung it rests on (its
//! p99 and how many samples), the rung just above that missed and why, and the rungs that
//! saturated or rest on too few samples, so a rough figure is never shown as a sound one.

use super::data::RunData;
use super::format::{self, MISSING};
use super::model::{cell, row, table, CellView, TableView};
use crate::load::result::{FrontierPoint, FrontierSearch, RungFail, RungSearch, SuiteResult};

fn reasons(r: &[RungFail]) -> String {
    r.iter().map(|f| f.label()).collect::<Vec<_>>().join(", ")
}

fn samples(n: u64) -> String {
    format!("{} samples", format::thousands(n as i64))
}

/// `4,500 req/s · p99 820 µs · 45,000 samples · 5,000 missed (saturated)`.
fn point_text(p: &FrontierPoint, min_samples: u64) -> String {
    let mut out = match p.max_rate_per_s {
        Some(rate) => {
            let mut s = format!(
                "{} req/s · p99 {}",
                format::rate(rate),
                format::opt(p.p99_ms, format::latency_ms)
            );
            if let Some(n) = p.samples {
                s.push_str(&format!(" · {}", samples(n)));
            }
            if p.under_sampled {
                s.push_str(&format!(
                    " (under {}: rough)",
                    format::thousands(min_samples as i64)
                ));
            }
            s
        }
        None => "none met".to_string(),
    };
    match p.failed_rate_per_s {
        Some(rate) => out.push_str(&format!(
            " · {} missed ({})",
            format::rate(rate),
            reasons(&p.failed_because)
        )),
        None if p.max_rate_per_s.is_some() => out.push_str(" · every rung met it"),
        None => {}
    }
    out
}

/// Saturated rungs: `10,000 (p50 0.20 → 9.00 ms)`, or `none`.
fn saturated_text(s: &FrontierSearch) -> String {
    let list: Vec<String> = s
        .rungs
        .iter()
        .filter(|r| r.fails.contains(&RungFail::Saturated))
        .map(|r| {
            format!(
                "{} (p50 {} → {})",
                format::rate(r.rate_per_s),
                format::opt(r.first_quarter_p50_ms, format::latency_ms),
                format::opt(r.last_quarter_p50_ms, format::latency_ms)
            )
        })
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// Rungs under `min_samples`: `3 of 15 (10 to 50 req/s)`, or `none`.
fn under_text(s: &FrontierSearch) -> String {
    let under: Vec<f64> = s
        .rungs
        .iter()
        .filter(|r| r.under_sampled)
        .map(|r| r.rate_per_s)
        .collect();
    let lo = under.iter().copied().reduce(f64::min);
    let hi = under.iter().copied().reduce(f64::max);
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo == hi => format!(
            "{} of {} ({} req/s)",
            under.len(),
            s.rungs.len(),
            format::rate(lo)
        ),
        (Some(lo), Some(hi)) => format!(
            "{} of {} ({} to {} req/s)",
            under.len(),
            s.rungs.len(),
            format::rate(lo),
            format::rate(hi)
        ),
        _ => "none".to_string(),
    }
}

fn search_text(s: &FrontierSearch) -> String {
    let bisect = s
        .rungs
        .iter()
        .filter(|r| r.search == RungSearch::Bisect)
        .count();
    format!(
        "{} coarse, {bisect} bisection (of {} allowed, to {} %)",
        s.rungs.len() - bisect,
        s.max_bisections,
        s.resolution_percent
    )
}

/// For the phases table: what failed the frontier rung `phase` for every bound, and its
/// samples when too few (` · ✗ saturated`, ` · 640 samples`); None for other phases.
pub fn rung_verdict(r: &SuiteResult, phase: &str) -> Option<String> {
    let s = r.frontier_search.as_ref()?;
    let rung = s.rungs.iter().find(|g| g.phase == phase)?;
    let mut out = String::new();
    if rung.search == RungSearch::Bisect {
        out.push_str(" · bisection");
    }
    if rung.under_sampled {
        out.push_str(&format!(" · {}", samples(rung.samples)));
    }
    if !rung.fails.is_empty() {
        out.push_str(&format!(" · ✗ {}", reasons(&rung.fails)));
    }
    (!out.is_empty()).then_some(out)
}

/// The search table of `suite`, when some target's result has a frontier search.
pub fn table_of(run: &RunData, suite: &str, targets: &[String]) -> Option<TableView> {
    let results: Vec<Option<&SuiteResult>> = targets
        .iter()
        .map(|t| run.entry(t, suite).and_then(|e| e.result.as_ref()))
        .collect();
    let searches: Vec<Option<&FrontierSearch>> = results
        .iter()
        .map(|r| r.and_then(|r| r.frontier_search.as_ref()))
        .collect();
    let min_samples = searches.iter().flatten().map(|s| s.min_samples).max()?;
    let mut bounds: Vec<f64> = Vec::new();
    for p in results
        .iter()
        .flatten()
        .flat_map(|r| r.frontier.iter().flatten())
    {
        if !bounds.iter().any(|b| (b - p.p99_bound_ms).abs() < 1e-9) {
            bounds.push(p.p99_bound_ms);
        }
    }
    bounds.sort_by(f64::total_cmp);
    let per_target = |f: &dyn Fn(&SuiteResult, &FrontierSearch) -> Option<String>| {
        results
            .iter()
            .zip(&searches)
            .map(|(r, s)| match (r, s) {
                (Some(r), Some(s)) => {
                    f(r, s).map_or(cell(MISSING.into(), &[], "missing"), |t| cell(t, &[], "ok"))
                }
                _ => cell(MISSING.into(), &[], "missing"),
            })
            .collect::<Vec<CellView>>()
    };
    let mut rows = Vec::new();
    for bound in &bounds {
        let cells = per_target(&|r, s| {
            r.frontier
                .iter()
                .flatten()
                .find(|p| (p.p99_bound_ms - bound).abs() < 1e-9)
                .map(|p| point_text(p, s.min_samples))
        });
        let label = format!("p99 ≤ {}", format::latency_ms(*bound));
        rows.push(row("frontier-bound", &label, &[], cells));
    }
    let rungs = per_target(&|_, s| Some(search_text(s)));
    rows.push(row("frontier-rungs", "rungs", &[], rungs));
    let saturated = per_target(&|_, s| Some(saturated_text(s)));
    rows.push(row(
        "frontier-saturated",
        "saturated (median of first → last quarter)",
        &[],
        saturated,
    ));
    let under = per_target(&|_, s| Some(under_text(s)));
    let label = format!(
        "rungs under {} samples",
        format::thousands(min_samples as i64)
    );
    rows.push(row("frontier-under", &label, &[], under));
    Some(table(targets.to_vec(), rows, "bound"))
}
