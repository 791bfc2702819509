//! "Feature tax": what governance costs each gateway, from a run with `--lane both`. Each
//! governed variant (a target whose manifest record carries `governed`) is put beside its
//! plain twin measured in the same run: requests/s in `baseline` (governed ÷ plain) and the
//! latency added at one request at a time in `overhead` (governed − plain, p50 and p99).
//! The section also says what each variant turns on and what it cannot have here.

use serde::Serialize;

use super::data::RunData;
use super::figures::KeyFigures;
use super::format::{self, MISSING};
use super::model::{cell, row, table, CellView, TableView};

/// The suite whose requests/s are compared.
pub const RATE_SUITE: &str = "baseline";
/// The suite whose added latency at concurrency 1 is compared.
pub const ADDED_SUITE: &str = "overhead";

/// The section, present when the run measured a governed variant.
#[derive(Debug, Clone, Serialize)]
pub struct TaxView {
    pub table: TableView,
    pub note: String,
    /// What each governed variant turns on and what it lacks, one line each.
    pub governance: Vec<String>,
}

/// The tax of one governed variant over its plain twin; a figure is `None` when either
/// side lacks it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tax {
    pub plain_rps: Option<f64>,
    pub governed_rps: Option<f64>,
    /// governed ÷ plain requests/s (1: no cost).
    pub rps_ratio: Option<f64>,
    pub plain_added_p50_us: Option<f64>,
    pub governed_added_p50_us: Option<f64>,
    /// governed − plain added p50, µs (0: no cost).
    pub added_p50_delta_us: Option<f64>,
    pub plain_added_p99_us: Option<f64>,
    pub governed_added_p99_us: Option<f64>,
    pub added_p99_delta_us: Option<f64>,
}

impl Tax {
    /// From the plain and governed figures of the rate suite and the added-latency suite.
    pub fn of(plain: (&KeyFigures, &KeyFigures), governed: (&KeyFigures, &KeyFigures)) -> Self {
        let (p_rate, p_added) = plain;
        let (g_rate, g_added) = governed;
        let ratio = match (g_rate.requests_per_s, p_rate.requests_per_s) {
            (Some(g), Some(p)) if p > 0.0 => Some(g / p),
            _ => None,
        };
        let delta = |g: Option<f64>, p: Option<f64>| g.zip(p).map(|(g, p)| g - p);
        Tax {
            plain_rps: p_rate.requests_per_s,
            governed_rps: g_rate.requests_per_s,
            rps_ratio: ratio,
            plain_added_p50_us: p_added.added_p50_us,
            governed_added_p50_us: g_added.added_p50_us,
            added_p50_delta_us: delta(g_added.added_p50_us, p_added.added_p50_us),
            plain_added_p99_us: p_added.added_p99_us,
            governed_added_p99_us: g_added.added_p99_us,
            added_p99_delta_us: delta(g_added.added_p99_us, p_added.added_p99_us),
        }
    }

    /// The governed requests/s as a change from the plain ones, percent (`-5`: 5 % fewer).
    pub fn rps_change_percent(&self) -> Option<f64> {
        self.rps_ratio.map(|r| (r - 1.0) * 100.0)
    }
}

/// The section, or `None` when the run measured no governed variant.
pub fn view(run: &RunData) -> Option<TaxView> {
    let pairs: Vec<(&str, &crate::rundir::GovernedRecord)> = run
        .manifest
        .targets
        .iter()
        .filter_map(|t| t.governed.as_ref().map(|g| (t.name.as_str(), g)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let figs = |t: &str, s: &str| run.entry(t, s).map(KeyFigures::of).unwrap_or_default();
    let columns = [
        format!("requests/s ({RATE_SUITE}): plain → governed"),
        "requests/s governed ÷ plain".to_string(),
        format!("added p50 at c=1 ({ADDED_SUITE}): plain → governed"),
        "tax on added p50".to_string(),
        format!("added p99 ({ADDED_SUITE}): plain → governed"),
        "tax on added p99".to_string(),
    ]
    .to_vec();
    let mut governance = Vec::new();
    let rows = pairs
        .iter()
        .map(|(name, g)| {
            let in_run = run.manifest.targets.iter().any(|t| t.name == g.of);
            governance.push(governance_line(name, g));
            let label = format!("{name} vs {}", g.of);
            if !in_run {
                let why = format!("{MISSING} (`{}` not measured in this run)", g.of);
                let cells = (0..6).map(|_| cell(why.clone(), &[], "missing")).collect();
                return row("tax", &label, &[], cells);
            }
            let tax = Tax::of(
                (&figs(&g.of, RATE_SUITE), &figs(&g.of, ADDED_SUITE)),
                (&figs(name, RATE_SUITE), &figs(name, ADDED_SUITE)),
            );
            row("tax", &label, &[], cells(&tax))
        })
        .collect();
    Some(TaxView {
        table: table(columns, rows, "governed vs plain"),
        note: format!(
            "Each governed variant against its plain twin, measured in the same run (`--lane \
             both`), on the same cpuset: requests/s in `{RATE_SUITE}` (governed ÷ plain; 1x: \
             governance costs no throughput) and the latency added over `direct` at one \
             request at a time in `{ADDED_SUITE}` (governed − plain; +0 µs: no cost). Limits \
             sit far above the load, so every request pays the check and none is refused. \
             `direct` and `nginx` have nothing to govern: they run plain only."
        ),
        governance,
    })
}

/// `gateway-governed (of gateway): <features>. Missing here: <why>.`
fn governance_line(name: &str, g: &crate::rundir::GovernedRecord) -> String {
    let mut line = format!(
        "{name} (governed `{}`): {}.",
        g.of,
        g.features.trim_end_matches('.')
    );
    if let Some(m) = &g.missing {
        line.push_str(&format!(" Missing here: {}", m.trim()));
    }
    line
}

/// The six cells of a row: both figures, then the tax, for each compared figure.
fn cells(t: &Tax) -> Vec<CellView> {
    let both = |p: Option<f64>, g: Option<f64>, show: fn(f64) -> String| match (p, g) {
        (None, None) => cell(MISSING.to_string(), &[], "missing"),
        _ => cell(
            format!("{} → {}", format::opt(p, show), format::opt(g, show)),
            &[],
            "ok",
        ),
    };
    let ratio = match (t.rps_ratio, t.rps_change_percent()) {
        (Some(r), Some(c)) => cell(
            format!("{} ({})", format::ratio(r), format::change(c)),
            &[],
            "ratio",
        ),
        _ => cell(MISSING.to_string(), &[], "missing"),
    };
    let delta = |d: Option<f64>| match d {
        Some(d) => cell(format::added_us(d), &[], "ratio"),
        None => cell(MISSING.to_string(), &[], "missing"),
    };
    vec![
        both(t.plain_rps, t.governed_rps, format::rate),
        ratio,
        both(
            t.plain_added_p50_us,
            t.governed_added_p50_us,
            format::added_us,
        ),
        delta(t.added_p50_delta_us),
        both(
            t.plain_added_p99_us,
            t.governed_added_p99_us,
            format::added_us,
        ),
        delta(t.added_p99_delta_us),
    ]
}

/// One headline line per governed variant with both figures of the tax.
pub fn headline(run: &RunData) -> Vec<String> {
    let figs = |t: &str, s: &str| run.entry(t, s).map(KeyFigures::of).unwrap_or_default();
    run.manifest
        .targets
        .iter()
        .filter_map(|t| t.governed.as_ref().map(|g| (t.name.as_str(), g)))
        .filter(|(_, g)| run.manifest.targets.iter().any(|t| t.name == g.of))
        .filter_map(|(name, g)| {
            let tax = Tax::of(
                (&figs(&g.of, RATE_SUITE), &figs(&g.of, ADDED_SUITE)),
                (&figs(name, RATE_SUITE), &figs(name, ADDED_SUITE)),
            );
            let mut parts = Vec::new();
            if let Some(r) = tax.rps_ratio {
                parts.push(format!(
                    "{} {}'s requests/s (`{RATE_SUITE}`)",
                    format::ratio(r),
                    g.of
                ));
            }
            if let Some(d) = tax.added_p50_delta_us {
                parts.push(format!(
                    "{} added p50 at c=1 (`{ADDED_SUITE}`)",
                    format::added_us(d)
                ));
            }
            (!parts.is_empty()).then(|| format!("feature tax of {name}: {}", parts.join(", ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(rps: f64) -> KeyFigures {
        KeyFigures {
            requests_per_s: Some(rps),
            ..KeyFigures::default()
        }
    }

    fn added(p50: f64, p99: f64) -> KeyFigures {
        KeyFigures {
            added_p50_us: Some(p50),
            added_p99_us: Some(p99),
            ..KeyFigures::default()
        }
    }

    #[test]
    fn the_tax_is_a_ratio_of_rates_and_a_difference_of_added_latency() {
        let t = Tax::of(
            (&rate(20_000.0), &added(100.0, 300.0)),
            (&rate(18_000.0), &added(112.0, 350.0)),
        );
        assert_eq!(t.rps_ratio, Some(0.9));
        assert!((t.rps_change_percent().unwrap_or_default() + 10.0).abs() < 1e-9);
        assert_eq!(t.added_p50_delta_us, Some(12.0));
        assert_eq!(t.added_p99_delta_us, Some(50.0));
        let c = cells(&t);
        assert_eq!(c[0].text, "20,000 → 18,000");
        assert_eq!(c[1].text, "0.900x (-10.0 %)");
        assert_eq!(c[2].text, "+100 µs → +112 µs");
        assert_eq!(c[3].text, "+12 µs");
        assert_eq!(c[5].text, "+50 µs");
    }

    #[test]
    fn a_missing_side_or_a_zero_rate_gives_no_tax() {
        let none = KeyFigures::default();
        let t = Tax::of((&rate(0.0), &none), (&rate(10.0), &added(5.0, 9.0)));
        assert_eq!(t.rps_ratio, None);
        assert_eq!(t.added_p50_delta_us, None);
        assert_eq!(t.governed_added_p50_us, Some(5.0));
        let c = cells(&t);
        assert_eq!(c[1].text, MISSING);
        assert_eq!(c[2].text, format!("{MISSING} → +5 µs"));
        assert_eq!(c[3].class, "missing");
        let c = cells(&Tax::default());
        assert_eq!(c[0].text, MISSING);
    }

    #[test]
    fn a_governance_line_says_what_is_missing() {
        let g = crate::rundir::GovernedRecord {
            of: "litellm".into(),
            features: "master key; rpm per deployment.".into(),
            missing: Some("virtual keys: no database\n".into()),
        };
        assert_eq!(
            governance_line("litellm-governed", &g),
            "litellm-governed (governed `litellm`): master key; rpm per deployment. Missing here: virtual keys: no database"
        );
    }
}
