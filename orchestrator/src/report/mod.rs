//! Reports of a run: `summary.md`, a self-contained `report.html` (inline SVG charts, no
//! network), the canonical `all_results.json`, and the run-to-run comparison.

pub mod charts;
pub mod cli;
pub mod compare;
pub mod cost;
pub mod data;
mod error;
pub mod faults;
pub mod figures;
pub mod floor;
pub mod format;
pub mod frontier;
pub mod links;
pub mod model;
pub mod noise;
pub mod stages;
pub mod stats;
pub mod svg;
pub mod tax;
pub mod thresholds;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

pub use data::RunData;
pub use error::ReportError;
use figures::KeyFigures;
use model::ReportView;

use crate::rundir::{TargetOutcome, ALL_RESULTS, REPORT_HTML, SUMMARY_MD};

pub const SUMMARY_TEMPLATE: &str = "summary.md.j2";
pub const HTML_TEMPLATE: &str = "report.html.j2";
pub const COMPARE_TEMPLATE: &str = "compare.md.j2";

/// The files [`render_run`] wrote.
#[derive(Debug, Clone)]
pub struct RenderedPaths {
    pub summary_md: PathBuf,
    pub report_html: PathBuf,
    pub all_results: PathBuf,
}

/// The template environment: the templates are compiled into the binary, and an undefined
/// variable or attribute is an error rather than an empty string.
pub fn environment() -> Result<Environment<'static>, ReportError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.add_filter("code_spans", code_spans);
    for (name, src) in [
        (
            SUMMARY_TEMPLATE,
            include_str!("../../templates/summary.md.j2"),
        ),
        (
            HTML_TEMPLATE,
            include_str!("../../templates/report.html.j2"),
        ),
        (
            COMPARE_TEMPLATE,
            include_str!("../../templates/compare.md.j2"),
        ),
        ("style.css", include_str!("../../templates/style.css")),
        (
            crate::live::LIVE_TEMPLATE,
            include_str!("../../templates/live.html.j2"),
        ),
    ] {
        env.add_template(name, src)
            .map_err(|e| ReportError::template(name, &e))?;
    }
    Ok(env)
}

/// HTML-escapes text and turns markdown code spans (`` `x` ``) into `<code>` elements, so
/// the same headline and warning text reads well in both reports.
fn code_spans(text: &str) -> minijinja::Value {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let mut out = String::with_capacity(escaped.len());
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    if escaped.matches('`').count() % 2 == 1 {
        // An unpaired backtick: keep the text as it was.
        return minijinja::Value::from_safe_string(escaped);
    }
    minijinja::Value::from_safe_string(out)
}

/// Renders one template with a serializable context.
pub fn render<T: Serialize>(env: &Environment, name: &str, ctx: &T) -> Result<String, ReportError> {
    env.get_template(name)
        .and_then(|t| t.render(minijinja::Value::from_serialize(ctx)))
        .map_err(|e| ReportError::template(name, &e))
}

/// The view of a run with its charts, ready for both templates.
pub fn view(run: &RunData) -> ReportView {
    let mut v = model::build(run);
    v.feature_tax = tax::view(run);
    v.headline.extend(tax::headline(run));
    for s in &mut v.suites {
        s.charts = charts::suite_charts(run, &s.name);
        s.charts
            .extend(faults::charts(run, &s.name, &run.target_names()));
        s.prometheus = links::suite_links(run, &s.name);
    }
    v
}

/// One line of `all_results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRecord {
    /// `<target>/<suite>`.
    pub target_id: String,
    pub metrics: Metrics,
    /// When the suite finished (RFC 3339); the run's end or start when there is no result.
    pub timestamp: String,
}

/// The key figures, with whether they were measured at all.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// `ok`, `interrupted`, `failed`, `skipped` or `missing`.
    pub status: String,
    pub reason: Option<String>,
    #[serde(flatten)]
    pub figures: KeyFigures,
}

/// Every (target, suite) of the run as a [`ResultRecord`].
pub fn all_results(run: &RunData) -> Vec<ResultRecord> {
    let fallback: DateTime<Utc> = run.manifest.finished_at.unwrap_or(run.manifest.started_at);
    run.entries
        .iter()
        .map(|e| {
            let (status, reason) = match (&e.result, run.outcome(&e.target)) {
                (Some(r), _) if r.interrupted => ("interrupted", None),
                (Some(_), _) => ("ok", None),
                (None, Some(TargetOutcome::Failed { reason, .. })) => {
                    ("failed", Some(reason.clone()))
                }
                (None, Some(TargetOutcome::Skipped)) => ("skipped", None),
                (None, _) => ("missing", Some(format!("{} missing", e.raw_file))),
            };
            ResultRecord {
                target_id: format!("{}/{}", e.target, e.suite),
                metrics: Metrics {
                    status: status.to_string(),
                    reason,
                    figures: KeyFigures::of(e),
                },
                timestamp: e
                    .result
                    .as_ref()
                    .map(|r| r.finished_at)
                    .unwrap_or(fallback)
                    .to_rfc3339(),
            }
        })
        .collect()
}

fn write(path: PathBuf, contents: &str) -> Result<PathBuf, ReportError> {
    std::fs::write(&path, contents).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads a run directory and writes `summary.md`, `report.html` and `all_results.json` in it.
pub fn render_run(run_dir: &Path) -> Result<RenderedPaths, ReportError> {
    let run = RunData::read(run_dir)?;
    let env = environment()?;
    let v = view(&run);
    let md = render(&env, SUMMARY_TEMPLATE, &v)?;
    let html = render(&env, HTML_TEMPLATE, &v)?;
    let all =
        serde_json::to_string_pretty(&all_results(&run)).map_err(|e| ReportError::Invalid {
            path: run_dir.join(ALL_RESULTS),
            message: e.to_string(),
        })?;
    Ok(RenderedPaths {
        summary_md: write(run_dir.join(SUMMARY_MD), &md)?,
        report_html: write(run_dir.join(REPORT_HTML), &html)?,
        all_results: write(run_dir.join(ALL_RESULTS), &all)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_escape_and_mark_code() {
        assert_eq!(
            code_spans("in `throughput` <b>").to_string(),
            "in <code>throughput</code> &lt;b&gt;"
        );
        assert_eq!(code_spans("a ` b").to_string(), "a ` b");
    }
}
