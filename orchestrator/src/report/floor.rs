//! "Against the floor": each gateway beside `nginx`, a plain L7 proxy of the same mock
//! (Debian's nginx-light, one worker, keepalive upstream, unbuffered). A gateway's
//! requests/s as a multiple of nginx's says how close it comes to what proxying alone
//! allows; its added latency as a multiple of nginx's says what it costs beyond a proxy.

use serde::Serialize;

use super::data::RunData;
use super::figures::KeyFigures;
use super::format::{self, MISSING};
use super::model::{cell, row, table, CellView, TableView};

/// The control target: the mock upstream called directly.
pub const CONTROL: &str = "direct";
/// The floor target: nginx as a plain proxy.
pub const FLOOR: &str = "nginx";
/// Suites whose requests/s are compared, in this order when the run has them.
const RATE_SUITES: [&str; 2] = ["throughput", "baseline"];

/// The section: a table when nginx and at least one gateway were measured, and a line
/// saying how to read it or why it is omitted.
#[derive(Debug, Clone, Serialize)]
pub struct FloorView {
    pub table: Option<TableView>,
    pub note: String,
}

/// Whether a target is a gateway: neither the control nor the floor.
pub fn is_gateway(target: &str) -> bool {
    target != CONTROL && target != FLOOR
}

/// The section of a run measured against `targets`.
pub fn view(run: &RunData, targets: &[String]) -> FloorView {
    let omitted = |why: &str| FloorView {
        table: None,
        note: format!("Omitted: {why}."),
    };
    if !targets.iter().any(|t| t == FLOOR) {
        return omitted(
            "no `nginx` target in this run (name it in `--targets` or `LAB_TARGETS` to compare \
             each gateway with a plain proxy)",
        );
    }
    let gateways: Vec<&String> = targets.iter().filter(|t| is_gateway(t)).collect();
    if gateways.is_empty() {
        return omitted("no gateway was measured beside `nginx`");
    }
    let figs = |t: &str, s: &str| run.entry(t, s).map(KeyFigures::of).unwrap_or_default();
    let rate_suites: Vec<&str> = RATE_SUITES
        .into_iter()
        .filter(|s| run.manifest.suites.iter().any(|m| m == s))
        .collect();
    // The suite that measured added latency (`overhead`): the first with nginx's figure.
    let added_suite = run
        .manifest
        .suites
        .iter()
        .find(|s| figs(FLOOR, s).added_p50_us.is_some());
    if rate_suites.is_empty() && added_suite.is_none() {
        return omitted("none of `throughput`, `baseline` or `overhead` was run");
    }
    let mut columns: Vec<String> = rate_suites
        .iter()
        .map(|s| format!("requests/s × nginx ({s})"))
        .collect();
    if let Some(s) = added_suite {
        columns.push(format!("added p50 × nginx ({s})"));
        columns.push(format!("added p99 × nginx ({s})"));
    }
    let rows = gateways
        .iter()
        .map(|g| {
            let mut cells: Vec<CellView> = rate_suites
                .iter()
                .map(|s| {
                    let (a, n) = (figs(g, s).requests_per_s, figs(FLOOR, s).requests_per_s);
                    multiple(a, n, format::rate)
                })
                .collect();
            if let Some(s) = added_suite {
                let (a, n) = (figs(g, s), figs(FLOOR, s));
                cells.push(multiple(a.added_p50_us, n.added_p50_us, format::added_us));
                cells.push(multiple(a.added_p99_us, n.added_p99_us, format::added_us));
            }
            row("floor", g, &[], cells)
        })
        .collect();
    FloorView {
        table: Some(table(columns, rows, "gateway")),
        note: "Each gateway against `nginx` (one worker, keepalive upstream, unbuffered) on \
               the same cpuset: requests/s as a multiple of nginx's (1x: as fast as a plain \
               proxy), and the latency added over `direct` as a multiple of what nginx adds \
               (1x: no more than a plain proxy). The figures compared are in brackets."
            .into(),
    }
}

/// One headline line per gateway when nginx was measured: its requests/s in the first of
/// `throughput`/`baseline` and its added p99 as multiples of nginx's, where both exist.
pub fn headline(run: &RunData, targets: &[String]) -> Vec<String> {
    if !targets.iter().any(|t| t == FLOOR) {
        return Vec::new();
    }
    let figs = |t: &str, s: &str| run.entry(t, s).map(KeyFigures::of).unwrap_or_default();
    let rate_suite = RATE_SUITES
        .into_iter()
        .find(|s| run.manifest.suites.iter().any(|m| m == s));
    let added_suite = run
        .manifest
        .suites
        .iter()
        .find(|s| figs(FLOOR, s).added_p99_us.is_some());
    let ratio = |a: Option<f64>, n: Option<f64>| match (a, n) {
        (Some(a), Some(n)) if n > 0.0 => Some(format::ratio(a / n)),
        _ => None,
    };
    targets
        .iter()
        .filter(|t| is_gateway(t))
        .filter_map(|g| {
            let mut parts = Vec::new();
            if let Some(s) = rate_suite {
                let r = ratio(figs(g, s).requests_per_s, figs(FLOOR, s).requests_per_s);
                parts.extend(r.map(|r| format!("{r} nginx's requests/s in `{s}`")));
            }
            if let Some(s) = added_suite {
                let r = ratio(figs(g, s).added_p99_us, figs(FLOOR, s).added_p99_us);
                parts.extend(r.map(|r| format!("{r} the p99 nginx adds (`{s}`)")));
            }
            (!parts.is_empty()).then(|| format!("{g} against the floor: {}", parts.join(", ")))
        })
        .collect()
}

/// `a / n` with both figures, e.g. `0.85x (18,000 vs 21,000)`; `—` when either is missing
/// or the floor's figure is not positive (nothing to divide by).
fn multiple(a: Option<f64>, n: Option<f64>, show: fn(f64) -> String) -> CellView {
    match (a, n) {
        (Some(a), Some(n)) if n > 0.0 => cell(
            format!("{} ({} vs {})", format::ratio(a / n), show(a), show(n)),
            &[],
            "ratio",
        ),
        (Some(a), Some(n)) => cell(
            format!("{MISSING} ({} vs {})", show(a), show(n)),
            &[],
            "missing",
        ),
        _ => cell(MISSING.to_string(), &[], "missing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multiple_shows_both_figures_and_never_divides_by_nothing() {
        let c = multiple(Some(18000.0), Some(20000.0), format::rate);
        assert_eq!(c.text, "0.900x (18,000 vs 20,000)");
        let c = multiple(Some(400.0), Some(0.0), format::added_us);
        assert!(c.text.starts_with(MISSING), "{}", c.text);
        assert_eq!(c.class, "missing");
        assert_eq!(multiple(None, Some(1.0), format::rate).text, MISSING);
    }

    #[test]
    fn only_gateways_are_compared() {
        assert!(is_gateway("gateway") && is_gateway("bifrost"));
        assert!(!is_gateway(CONTROL) && !is_gateway(FLOOR));
    }
}
