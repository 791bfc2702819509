//! The view model both templates render: tables of formatted cells with warning markers
//! placed next to the figures they affect, the headline lines and the run's description.

use serde::Serialize;

use super::data::{headline_phase, RunData};
use super::figures::KeyFigures;
use super::floor::{is_gateway, FloorView, CONTROL};
use super::format::{self, MISSING};
use super::noise;
use crate::load::result::{LoadModel, Summary};
use crate::rundir::TargetOutcome;

/// Pairs of targets (indexes into `targets`) compared in ratio columns: the first gateway
/// (the first target that is neither `direct` nor the `nginx` floor, ours by convention)
/// against each later gateway, then every target against `direct` (latency as µs added).
/// The floor's own comparison with each gateway is the "Against the floor" section.
fn ratio_pairs(targets: &[String]) -> Vec<(usize, usize)> {
    let gateways: Vec<usize> = (0..targets.len())
        .filter(|&i| is_gateway(&targets[i]))
        .collect();
    let mut out: Vec<(usize, usize)> = match gateways.split_first() {
        Some((&first, rest)) => rest.iter().map(|&j| (first, j)).collect(),
        None => Vec::new(),
    };
    if let Some(d) = targets.iter().position(|t| t == CONTROL) {
        out.extend((0..targets.len()).filter(|&i| i != d).map(|i| (i, d)));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rate,
    Latency,
    Errors,
    Cpu,
    Memory,
    Added,
    /// CPU time per request, µs.
    CpuCost,
    /// MiB per minute.
    Growth,
}

/// One metric row of a suite table.
struct RowSpec {
    key: &'static str,
    label: &'static str,
    kind: Kind,
    /// Hidden when no target has a value (stream-only and suite-only rows).
    optional: bool,
    get: fn(&KeyFigures) -> Option<f64>,
}

const ROWS: &[RowSpec] = &[
    RowSpec {
        key: "requests_per_s",
        label: "requests/s",
        kind: Kind::Rate,
        optional: false,
        get: |k| k.requests_per_s,
    },
    RowSpec {
        key: "peak_requests_per_s",
        label: "peak requests/s (1 s)",
        kind: Kind::Rate,
        optional: true,
        get: |k| k.peak_requests_per_s,
    },
    RowSpec {
        key: "p50",
        label: "p50",
        kind: Kind::Latency,
        optional: false,
        get: |k| k.p50_ms,
    },
    RowSpec {
        key: "p90",
        label: "p90",
        kind: Kind::Latency,
        optional: false,
        get: |k| k.p90_ms,
    },
    RowSpec {
        key: "p95",
        label: "p95",
        kind: Kind::Latency,
        optional: false,
        get: |k| k.p95_ms,
    },
    RowSpec {
        key: "p99",
        label: "p99",
        kind: Kind::Latency,
        optional: false,
        get: |k| k.p99_ms,
    },
    RowSpec {
        key: "p99_9",
        label: "p99.9",
        kind: Kind::Latency,
        optional: false,
        get: |k| k.p99_9_ms,
    },
    RowSpec {
        key: "max",
        label: "max",
        kind: Kind::Latency,
        optional: false,
        get: |k| k.max_ms,
    },
    RowSpec {
        key: "errors",
        label: "errors",
        kind: Kind::Errors,
        optional: false,
        get: |k| k.errors.map(|e| e as f64),
    },
    RowSpec {
        key: "ttft_p50",
        label: "TTFT p50",
        kind: Kind::Latency,
        optional: true,
        get: |k| k.ttft_p50_ms,
    },
    RowSpec {
        key: "ttft_p99",
        label: "TTFT p99",
        kind: Kind::Latency,
        optional: true,
        get: |k| k.ttft_p99_ms,
    },
    RowSpec {
        key: "itl_p50",
        label: "inter-token p50",
        kind: Kind::Latency,
        optional: true,
        get: |k| k.itl_p50_ms,
    },
    RowSpec {
        key: "itl_p99",
        label: "inter-token p99",
        kind: Kind::Latency,
        optional: true,
        get: |k| k.itl_p99_ms,
    },
    RowSpec {
        key: "output_tokens_per_s",
        label: "output tokens/s",
        kind: Kind::Rate,
        optional: true,
        get: |k| k.output_tokens_per_s,
    },
    RowSpec {
        key: "added_p50",
        label: "added p50 over direct",
        kind: Kind::Added,
        optional: true,
        get: |k| k.added_p50_us,
    },
    RowSpec {
        key: "added_p99",
        label: "added p99 over direct",
        kind: Kind::Added,
        optional: true,
        get: |k| k.added_p99_us,
    },
    RowSpec {
        key: "claimed_p50",
        label: "claimed overhead p50 (own header)",
        kind: Kind::Added,
        optional: true,
        get: |k| k.claimed_p50_us,
    },
    RowSpec {
        key: "claimed_p99",
        label: "claimed overhead p99 (own header)",
        kind: Kind::Added,
        optional: true,
        get: |k| k.claimed_p99_us,
    },
    RowSpec {
        key: "cpu",
        label: "CPU (mean)",
        kind: Kind::Cpu,
        optional: false,
        get: |k| k.cpu_percent,
    },
    RowSpec {
        key: "cpu_per_request",
        label: "CPU per request (per stream when streaming)",
        kind: Kind::CpuCost,
        optional: true,
        get: |k| k.cpu_us_per_request,
    },
    RowSpec {
        key: "memory",
        label: "peak memory",
        kind: Kind::Memory,
        optional: false,
        get: |k| k.peak_memory_bytes.map(|b| b as f64),
    },
    RowSpec {
        key: "memory_plateau",
        label: "memory plateau (last quarter)",
        kind: Kind::Memory,
        optional: true,
        get: |k| k.memory_plateau_bytes,
    },
    RowSpec {
        key: "memory_growth",
        label: "memory growth (second half)",
        kind: Kind::Growth,
        optional: true,
        get: |k| k.memory_growth_mib_per_min,
    },
    RowSpec {
        key: "generator_cpu",
        label: "load generator CPU",
        kind: Kind::Cpu,
        optional: false,
        get: |k| k.generator_cpu_percent,
    },
];

const LATENCY_ROWS: [&str; 6] = ["p50", "p90", "p95", "p99", "p99_9", "max"];

/// The rows a warning of a kind marks.
fn affected_rows(kind: &str) -> Vec<&'static str> {
    match kind {
        "load_generator_bound" => {
            let mut v = vec!["requests_per_s", "peak_requests_per_s", "generator_cpu"];
            v.extend(LATENCY_ROWS);
            v
        }
        "cadvisor_unavailable" => vec!["cpu", "memory"],
        "high_error_rate" => vec!["errors"],
        "dropped" => vec!["errors", "requests_per_s"],
        // Not in the errors: the note says the generator, not the target, failed them.
        "rig_refused" => vec!["errors"],
        "no_success" => {
            let mut v = vec!["status"];
            v.extend(LATENCY_ROWS);
            v
        }
        _ => vec!["status"],
    }
}

/// A warning as shown: its marker, where it applies and what it says.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: usize,
    pub marker: String,
    pub kind: String,
    /// `gateway · baseline`, `baseline`, or `run`.
    pub scope: String,
    pub message: String,
    #[serde(skip)]
    target: Option<String>,
    #[serde(skip)]
    suite: Option<String>,
    /// The phase a load generator warning is about.
    #[serde(skip)]
    phase: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellView {
    /// The formatted figure, `—` when missing.
    pub text: String,
    /// Warning markers (`⚠1 ⚠3`), empty when none.
    pub marks: String,
    /// `ok`, `missing`, `failed` or `ratio`: for styling.
    pub class: &'static str,
    /// Text and markers, escaped for a markdown table cell.
    pub md: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowView {
    pub key: String,
    pub label: String,
    pub marks: String,
    pub cells: Vec<CellView>,
    /// Label, markers and cells, escaped for a markdown table row.
    pub md: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableView {
    pub columns: Vec<String>,
    pub rows: Vec<RowView>,
    /// `|---|--:|…` for markdown.
    pub md_header: String,
    pub md_rule: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChartView {
    pub title: String,
    pub svg: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteView {
    pub name: String,
    /// Which phase the table shows, per target.
    pub caption: String,
    pub table: TableView,
    /// Suites with several phases: requests/s and p99 of each phase.
    pub phases: Option<TableView>,
    /// Ramps: requests/s and p99 of each stage of the headline phase.
    pub stages: Option<TableView>,
    /// The `faults` suite: per phase and target, what the client saw and the upstreams did.
    pub faults: Option<TableView>,
    /// The `frontier` suite's search: per bound the rate found, its samples, the rung that
    /// missed above it and why; saturated and under-sampled rungs.
    pub frontier: Option<TableView>,
    /// The suite's thresholds against each target, with each target's verdict.
    pub thresholds: Option<TableView>,
    pub notes: Vec<Note>,
    /// How the figures' intervals were made, and why some have none.
    pub noise_notes: Vec<String>,
    pub charts: Vec<ChartView>,
    /// Prometheus graphs of the suite's window, per target (filled by `report::view`).
    pub prometheus: Vec<super::links::PromLink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    pub run_id: String,
    pub headline: Vec<String>,
    pub run_info: Vec<KeyValue>,
    pub targets: TableView,
    pub services: TableView,
    /// Each gateway against the `nginx` floor, or why the section is omitted.
    pub floor: FloorView,
    /// Governed variants against their plain twins (`--lane both`), filled by `report::view`.
    pub feature_tax: Option<super::tax::TaxView>,
    pub config_json: String,
    /// Warnings that apply to the whole run (no suite), shown at the top.
    pub run_notes: Vec<Note>,
    /// Every warning the run raised.
    pub all_notes: Vec<Note>,
    pub suites: Vec<SuiteView>,
}

/// Escapes text for a markdown table cell.
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn join_marks(ids: &[usize]) -> String {
    ids.iter()
        .map(|i| format!("⚠{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn cell(text: String, marks: &[usize], class: &'static str) -> CellView {
    let marks = join_marks(marks);
    let md = if marks.is_empty() {
        md_cell(&text)
    } else {
        format!("{} {}", md_cell(&text), marks)
    };
    CellView {
        text,
        marks,
        class,
        md,
    }
}

pub(crate) fn row(key: &str, label: &str, label_marks: &[usize], cells: Vec<CellView>) -> RowView {
    let marks = join_marks(label_marks);
    let head = if marks.is_empty() {
        md_cell(label)
    } else {
        format!("{} {}", md_cell(label), marks)
    };
    let md = format!(
        "| {head} | {} |",
        cells
            .iter()
            .map(|c| c.md.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    RowView {
        key: key.to_string(),
        label: label.to_string(),
        marks,
        cells,
        md,
    }
}

pub(crate) fn table(columns: Vec<String>, rows: Vec<RowView>, first: &str) -> TableView {
    table_aligned(columns, rows, first, "---:|")
}

/// A table of text (run description): left-aligned in markdown.
fn text_table(columns: Vec<String>, rows: Vec<RowView>, first: &str) -> TableView {
    table_aligned(columns, rows, first, "---|")
}

fn table_aligned(columns: Vec<String>, rows: Vec<RowView>, first: &str, align: &str) -> TableView {
    let md_header = format!(
        "| {} | {} |",
        md_cell(first),
        columns
            .iter()
            .map(|c| md_cell(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let md_rule = format!("|---|{}", align.repeat(columns.len()));
    TableView {
        columns,
        rows,
        md_header,
        md_rule,
    }
}

fn kind_label<T: Serialize>(k: &T) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "other".to_string())
}

/// Collects every warning of the run, numbered in order: the manifest's, then each result's.
fn collect_notes(run: &RunData) -> Vec<Note> {
    let mut notes = Vec::new();
    for w in &run.manifest.warnings {
        notes.push((
            kind_label(&w.kind),
            w.target.clone(),
            w.suite.clone(),
            None,
            w.message.clone(),
        ));
    }
    for e in &run.entries {
        let Some(r) = &e.result else { continue };
        for w in &r.warnings {
            let message = match &w.phase {
                Some(p) => format!("phase `{p}`: {}", w.message),
                None => w.message.clone(),
            };
            notes.push((
                kind_label(&w.kind),
                Some(e.target.clone()),
                Some(e.suite.clone()),
                w.phase.clone(),
                message,
            ));
        }
    }
    notes
        .into_iter()
        .enumerate()
        .map(|(i, (kind, target, suite, phase, message))| {
            let scope = match (&target, &suite) {
                (Some(t), Some(s)) => format!("{t} · {s}"),
                (Some(t), None) => t.clone(),
                (None, Some(s)) => s.clone(),
                (None, None) => "run".to_string(),
            };
            Note {
                id: i + 1,
                marker: format!("⚠{}", i + 1),
                kind,
                scope,
                message,
                target,
                suite,
                phase,
            }
        })
        .collect()
}

/// Where each note lands in one suite's table.
struct Placement<'a> {
    notes: Vec<&'a Note>,
    targets: &'a [String],
    visible_rows: Vec<&'static str>,
    /// Each target's headline phase (the one the table shows), by target index.
    headline: Vec<Option<String>>,
}

impl<'a> Placement<'a> {
    fn new(
        all: &'a [Note],
        suite: &str,
        targets: &'a [String],
        visible_rows: Vec<&'static str>,
        headline: Vec<Option<String>>,
    ) -> Self {
        let notes = all
            .iter()
            .filter(|n| match n.suite.as_deref() {
                None => true,
                Some(s) => s == suite,
            })
            .collect();
        Self {
            notes,
            targets,
            visible_rows,
            headline,
        }
    }

    /// Whether a note is about a phase other than the one the table shows for its target.
    fn other_phase(&self, n: &Note) -> bool {
        let (Some(p), Some(t)) = (&n.phase, &n.target) else {
            return false;
        };
        match self.targets.iter().position(|x| x == t) {
            Some(i) => self.headline[i].as_deref() != Some(p.as_str()),
            None => false,
        }
    }

    fn rows_of(&self, n: &Note) -> Vec<&'static str> {
        if self.other_phase(n) {
            return vec!["status"];
        }
        let rows: Vec<_> = affected_rows(&n.kind)
            .into_iter()
            .filter(|r| self.visible_rows.contains(r))
            .collect();
        if rows.is_empty() {
            vec!["status"]
        } else {
            rows
        }
    }

    fn in_cell(&self, n: &Note) -> bool {
        n.target.as_ref().is_some_and(|t| self.targets.contains(t))
    }

    /// Markers for one target's cell in a row.
    fn cell(&self, row: &str, target: &str) -> Vec<usize> {
        self.notes
            .iter()
            .filter(|n| {
                self.in_cell(n)
                    && n.target.as_deref() == Some(target)
                    && self.rows_of(n).contains(&row)
            })
            .map(|n| n.id)
            .collect()
    }

    /// Markers for a row's label (warnings not tied to one shown target).
    fn label(&self, row: &str) -> Vec<usize> {
        self.notes
            .iter()
            .filter(|n| !self.in_cell(n) && self.rows_of(n).contains(&row))
            .map(|n| n.id)
            .collect()
    }
}

/// The status cell of a target in a suite: its result when there is one, else why not.
fn target_status(run: &RunData, target: &str, suite: &str) -> (String, &'static str) {
    let entry = run.entry(target, suite);
    if let Some(r) = entry.and_then(|e| e.result.as_ref()) {
        return if r.interrupted {
            ("interrupted (partial)".to_string(), "ok")
        } else {
            ("ok".to_string(), "ok")
        };
    }
    match run.outcome(target) {
        Some(TargetOutcome::Failed {
            reason, exit_code, ..
        }) => {
            let code = exit_code
                .map(|c| format!(" (exit code {c})"))
                .unwrap_or_default();
            (format!("✗ failed: {reason}{code}"), "failed")
        }
        Some(TargetOutcome::Skipped) => ("skipped (not reached)".to_string(), "missing"),
        _ => (
            format!(
                "no result: {} missing",
                entry.map(|e| e.raw_file.clone()).unwrap_or_default()
            ),
            "missing",
        ),
    }
}

fn format_value(kind: Kind, v: f64, k: &KeyFigures) -> String {
    match kind {
        Kind::Rate => format::rate(v),
        Kind::Latency => format::latency_ms(v),
        Kind::Errors => match k.error_percent {
            Some(p) => format!("{} ({})", format::thousands(v as i64), format::percent(p)),
            None => format::thousands(v as i64),
        },
        Kind::Cpu => format::percent(v),
        Kind::Memory => format::bytes(v as u64),
        Kind::Added => format::added_us(v),
        Kind::CpuCost => format::added_us(v).trim_start_matches('+').to_string(),
        Kind::Growth => format!("{v:+.2} MiB/min"),
    }
}

/// How a row's figure and the half-width of its interval are printed (as [`format_value`]
/// does); `None` for rows that never have an interval.
fn half_width_format(kind: Kind) -> Option<fn(f64) -> String> {
    match kind {
        Kind::Rate => Some(format::rate),
        Kind::Latency => Some(format::latency_ms),
        Kind::Cpu => Some(format::percent),
        Kind::Added => Some(format::added_us),
        Kind::Errors | Kind::Memory | Kind::CpuCost | Kind::Growth => None,
    }
}

/// The footnotes on the intervals of one suite's figures.
fn noise_notes(run: &RunData, suite: &str, targets: &[String]) -> Vec<String> {
    let figs: Vec<(&str, KeyFigures)> = targets
        .iter()
        .filter_map(|t| {
            let e = run.entry(t, suite)?;
            e.result.as_ref()?;
            Some((t.as_str(), KeyFigures::of(e)))
        })
        .collect();
    let per_target: Vec<(&str, &noise::Noise)> = figs.iter().map(|(t, k)| (*t, &k.noise)).collect();
    noise::footnotes(&per_target)
}

/// The ratio cell of `a` against `b` for one row.
fn ratio_text(kind: Kind, a: Option<f64>, b: Option<f64>, b_name: &str) -> String {
    if matches!(kind, Kind::Errors | Kind::Added | Kind::Growth) {
        return String::new();
    }
    let (Some(a), Some(b)) = (a, b) else {
        return MISSING.to_string();
    };
    match kind {
        Kind::Latency if b_name == CONTROL => format::added_us((a - b) * 1000.0),
        Kind::Rate | Kind::Latency | Kind::Cpu | Kind::Memory | Kind::CpuCost if b > 0.0 => {
            format::ratio(a / b)
        }
        // Nothing to divide by.
        _ => MISSING.to_string(),
    }
}

/// The manifest's repeats as the run-info table shows them.
fn repeats_line(m: &crate::rundir::Manifest) -> String {
    if m.repeats.is_empty() {
        return "every suite once".to_string();
    }
    let each: Vec<String> = m
        .repeats
        .iter()
        .map(|(s, n)| format!("{s} × {n}"))
        .collect();
    format!(
        "{}, in rounds interleaving the targets; other suites once",
        each.join(", ")
    )
}

fn phase_caption(run: &RunData, suite: &str, targets: &[String]) -> String {
    let mut parts = Vec::new();
    for t in targets {
        let Some(e) = run.entry(t, suite) else {
            continue;
        };
        let Some(r) = e.result.as_ref() else { continue };
        let Some(p) = headline_phase(r) else { continue };
        let repeats = match e.measured_repeats() {
            n if n > 1 => format!(", × {n} repeats"),
            _ => String::new(),
        };
        let load = match p.model {
            LoadModel::Closed if p.vus == Some(1) => "1 VU".to_string(),
            LoadModel::Closed => format!("{} VUs", p.vus.unwrap_or(0)),
            LoadModel::Open => format!(
                "{}/s scheduled",
                format::rate(p.target_rate_per_s.unwrap_or(0.0))
            ),
        };
        let stream = if p.stream { ", streaming" } else { "" };
        parts.push(format!(
            "{t}: phase `{}` ({load}{stream}, {}{repeats})",
            p.name,
            format::latency_ms(p.duration_s * 1000.0)
        ));
    }
    parts.join("; ")
}

/// Builds one suite's table.
fn suite_table(
    run: &RunData,
    suite: &str,
    notes: &[Note],
    targets: &[String],
) -> (TableView, Vec<Note>) {
    let figs: Vec<KeyFigures> = targets
        .iter()
        .map(|t| run.entry(t, suite).map(KeyFigures::of).unwrap_or_default())
        .collect();
    let pairs = ratio_pairs(targets);
    // Frontier rows: one per p99 bound any target reported.
    let mut bounds: Vec<f64> = Vec::new();
    for f in &figs {
        for p in f.frontier.iter().flatten() {
            if !bounds.iter().any(|b| (b - p.p99_bound_ms).abs() < 1e-9) {
                bounds.push(p.p99_bound_ms);
            }
        }
    }
    bounds.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));

    let specs: Vec<&RowSpec> = ROWS
        .iter()
        .filter(|s| !s.optional || figs.iter().any(|f| (s.get)(f).is_some()))
        .collect();
    let mut visible: Vec<&'static str> = vec!["status"];
    visible.extend(specs.iter().map(|s| s.key));
    if !bounds.is_empty() {
        visible.push("frontier");
    }
    let place = Placement::new(
        notes,
        suite,
        targets,
        visible,
        figs.iter().map(|f| f.phase.clone()).collect(),
    );

    let mut columns: Vec<String> = targets.to_vec();
    columns.extend(
        pairs
            .iter()
            .map(|(a, b)| format!("{} vs {}", targets[*a], targets[*b])),
    );

    let mut rows = Vec::new();
    let status: Vec<(String, &'static str)> = targets
        .iter()
        .map(|t| target_status(run, t, suite))
        .collect();
    let mut cells: Vec<CellView> = targets
        .iter()
        .zip(&status)
        .map(|(t, (text, class))| cell(text.clone(), &place.cell("status", t), class))
        .collect();
    cells.extend(pairs.iter().map(|_| cell(String::new(), &[], "ratio")));
    rows.push(row("status", "status", &place.label("status"), cells));

    for spec in &specs {
        let mut cells: Vec<CellView> = targets
            .iter()
            .zip(&figs)
            .zip(&status)
            .map(|((t, f), (_, class))| {
                let text = format::opt((spec.get)(f), |v| match half_width_format(spec.kind) {
                    Some(fmt) => noise::show(v, f.noise.get(spec.key), fmt),
                    None => format_value(spec.kind, v, f),
                });
                let class = if text == MISSING && *class == "ok" {
                    "missing"
                } else {
                    class
                };
                cell(text, &place.cell(spec.key, t), class)
            })
            .collect();
        cells.extend(pairs.iter().map(|&(a, b)| {
            let text = ratio_text(
                spec.kind,
                (spec.get)(&figs[a]),
                (spec.get)(&figs[b]),
                &targets[b],
            );
            cell(text, &[], "ratio")
        }));
        rows.push(row(spec.key, spec.label, &place.label(spec.key), cells));
    }
    for bound in &bounds {
        let get = |f: &KeyFigures| {
            f.frontier
                .iter()
                .flatten()
                .find(|p| (p.p99_bound_ms - bound).abs() < 1e-9)
                .and_then(|p| p.max_rate_per_s)
        };
        // A rate whose rung rests on too few samples says so (the search table has more).
        let under = |t: &String| {
            run.entry(t, suite)
                .and_then(|e| e.result.as_ref())
                .and_then(|r| r.frontier.as_ref())
                .and_then(|f| f.iter().find(|p| (p.p99_bound_ms - bound).abs() < 1e-9))
                .filter(|p| p.under_sampled && p.max_rate_per_s.is_some())
                .and_then(|p| p.samples)
        };
        let mut cells: Vec<CellView> = targets
            .iter()
            .zip(&figs)
            .zip(&status)
            .map(|((t, f), (_, class))| {
                let interval = f.noise.get(&super::figures::frontier_key(*bound));
                let mut text = format::opt(get(f), |v| noise::show(v, interval, format::rate));
                if let Some(n) = under(t) {
                    text.push_str(&format!(" ({} samples)", format::thousands(n as i64)));
                }
                let class = if text == MISSING && *class == "ok" {
                    "missing"
                } else {
                    class
                };
                cell(text, &place.cell("frontier", t), class)
            })
            .collect();
        cells.extend(pairs.iter().map(|&(a, b)| {
            cell(
                ratio_text(Kind::Rate, get(&figs[a]), get(&figs[b]), &targets[b]),
                &[],
                "ratio",
            )
        }));
        let label = format!("max rate @ p99 ≤ {}", format::latency_ms(*bound));
        rows.push(row("frontier", &label, &place.label("frontier"), cells));
    }
    let shown: Vec<Note> = place.notes.iter().map(|n| (*n).clone()).collect();
    (table(columns, rows, "metric"), shown)
}

/// Per-phase requests/s and p99, for suites with several phases.
/// Per-phase requests/s and p99, for suites with several phases; a warning about one phase
/// is marked in that phase's cell.
/// A phase's or a stage's cell: `2,345 req/s · p99 1.20 ms` (p99 missing without answers).
pub(crate) fn rate_and_p99(requests_per_s: f64, latency: &Summary) -> String {
    let p99 = if latency.count > 0 {
        format::latency_ms(latency.p99)
    } else {
        MISSING.to_string()
    };
    format!("{} req/s · p99 {p99}", format::rate(requests_per_s))
}

/// One phase's cell: `2,345 req/s · p99 1.20 ms`, with its errors and the connections the
/// generator could not open itself (never the target's) when there were any.
fn phase_text(p: &crate::load::result::PhaseResult) -> String {
    let mut text = rate_and_p99(p.throughput.requests_per_s, &p.latency_ms);
    let errors = p.requests.errors.total();
    if errors > 0 {
        text.push_str(&format!(" · {} errors", format::thousands(errors as i64)));
    }
    if p.requests.rig_refused > 0 {
        let n = format::thousands(p.requests.rig_refused as i64);
        text.push_str(&format!(" · {n} rig refused"));
    }
    text
}

fn phases_table(
    run: &RunData,
    suite: &str,
    targets: &[String],
    notes: &[Note],
) -> Option<TableView> {
    let results: Vec<_> = targets
        .iter()
        .map(|t| run.entry(t, suite).and_then(|e| e.result.as_ref()))
        .collect();
    if results.iter().flatten().all(|r| r.phases.len() <= 1) {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for r in results.iter().flatten() {
        for p in &r.phases {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
    }
    let rows = names
        .iter()
        .map(|name| {
            let cells = results
                .iter()
                .zip(targets)
                .map(|(r, t)| {
                    let p = r.and_then(|r| r.phases.iter().find(|p| &p.name == name));
                    let mut text = p.map_or(MISSING.to_string(), phase_text);
                    if let Some(verdict) = r.and_then(|r| super::frontier::rung_verdict(r, name)) {
                        text.push_str(&verdict);
                    }
                    let marks: Vec<usize> = notes
                        .iter()
                        .filter(|n| {
                            n.suite.as_deref() == Some(suite)
                                && n.target.as_ref() == Some(t)
                                && n.phase.as_ref() == Some(name)
                        })
                        .map(|n| n.id)
                        .collect();
                    cell(text, &marks, "ok")
                })
                .collect();
            row("phase", name, &[], cells)
        })
        .collect();
    Some(table(targets.to_vec(), rows, "phase"))
}

/// The warning marks of these rows for these targets in suite `s`'s table, each mark once
/// (` ⚠1 ⚠3`, empty when none).
fn marks(suites: &[SuiteView], s: &str, ts: &[&str], rows: &[&str]) -> String {
    let Some(view) = suites.iter().find(|v| v.name == s) else {
        return String::new();
    };
    let cols: Vec<usize> = ts
        .iter()
        .filter_map(|t| view.table.columns.iter().position(|c| c == t))
        .collect();
    let mut m: Vec<String> = Vec::new();
    for r in view
        .table
        .rows
        .iter()
        .filter(|r| rows.contains(&r.key.as_str()))
    {
        let cells = cols.iter().map(|&c| &r.cells[c].marks);
        for mark in std::iter::once(&r.marks).chain(cells) {
            for x in mark.split(' ').filter(|x| !x.is_empty()) {
                if !m.iter().any(|y| y == x) {
                    m.push(x.to_string());
                }
            }
        }
    }
    if m.is_empty() {
        String::new()
    } else {
        format!(" {}", m.join(" "))
    }
}

fn figs_of(run: &RunData, t: &str, s: &str) -> KeyFigures {
    run.entry(t, s).map(KeyFigures::of).unwrap_or_default()
}

/// Headline lines of gateway `a` against gateway `b`: the rate sustained under the loosest
/// common p99 bound (frontier suites), else throughput, per suite in `order`.
fn peer_lines(
    run: &RunData,
    suites: &[SuiteView],
    order: &[&String],
    a_name: &str,
    b_name: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    for s in order {
        let (g, l) = (figs_of(run, a_name, s), figs_of(run, b_name, s));
        // The overhead suite runs at concurrency 1: its added latency has its own line.
        if g.added_p50_us.is_some() || l.added_p50_us.is_some() {
            continue;
        }
        if let (Some(gf), Some(lf)) = (&g.frontier, &l.frontier) {
            // The loosest bound both sustained some rate under.
            let best = gf
                .iter()
                .filter_map(|a| {
                    let b = lf
                        .iter()
                        .find(|b| (b.p99_bound_ms - a.p99_bound_ms).abs() < 1e-9)?;
                    Some((a.p99_bound_ms, a.max_rate_per_s?, b.max_rate_per_s?))
                })
                .filter(|(_, _, b)| *b > 0.0)
                .max_by(|x, y| x.0.total_cmp(&y.0));
            if let Some((bound, a, b)) = best {
                let m = marks(suites, s, &[a_name, b_name], &["status", "frontier"]);
                lines.push(format!(
                    "{a_name}: {} the rate {b_name} sustains with p99 ≤ {} in `{s}` ({} vs {} req/s){m}",
                    format::ratio(a / b),
                    format::latency_ms(bound),
                    format::rate(a),
                    format::rate(b)
                ));
            }
            continue;
        }
        let (Some(gr), Some(lr)) = (g.requests_per_s, l.requests_per_s) else {
            continue;
        };
        if lr <= 0.0 {
            continue;
        }
        let p99 = match (g.p99_ms, l.p99_ms) {
            (Some(a), Some(b)) => format!(
                ", p99 {} vs {}",
                noise::show(a, g.noise.get("p99"), format::latency_ms),
                noise::show(b, l.noise.get("p99"), format::latency_ms)
            ),
            _ => String::new(),
        };
        let m = marks(
            suites,
            s,
            &[a_name, b_name],
            &["status", "requests_per_s", "p99"],
        );
        lines.push(format!(
            "{a_name}: {} the throughput of {b_name} in `{s}` ({} vs {} req/s){p99}{m}",
            format::ratio(gr / lr),
            noise::show(gr, g.noise.get("requests_per_s"), format::rate),
            noise::show(lr, l.noise.get("requests_per_s"), format::rate)
        ));
    }
    lines
}

/// The latency `t` adds over `direct`: the overhead suite when run, else the first suite
/// with both p50s.
fn added_line(run: &RunData, suites: &[SuiteView], t: &str) -> Option<String> {
    let over = run.manifest.suites.iter().find_map(|s| {
        let f = figs_of(run, t, s);
        let show = |v: f64, key: &str| {
            noise::show(v, f.noise.get(key), format::added_us)
                .trim_start_matches('+')
                .to_string()
        };
        let paired = f.noise.get("added_p50").is_some();
        let a50 = show(f.added_p50_us?, "added_p50");
        let a99 = f.added_p99_us.map(|v| show(v, "added_p99"));
        let claim = f
            .claimed_p50_us
            .map(|c| format!("; says {} p50", format::added_us(c).trim_start_matches('+')));
        Some((s.clone(), a50, a99, paired, claim.unwrap_or_default()))
    });
    match over {
        Some((s, a50, a99, paired, claim)) => Some(format!(
            "{t}: adds {a50} p50{} over direct (`{s}`, {}{claim}){}",
            a99.map(|a| format!(", {a} p99")).unwrap_or_default(),
            if paired { "paired" } else { "interleaved" },
            marks(suites, &s, &[t], &["status", "added_p50", "added_p99"])
        )),
        None => run.manifest.suites.iter().find_map(|s| {
            let (a, d) = (figs_of(run, t, s).p50_ms?, figs_of(run, CONTROL, s).p50_ms?);
            Some(format!(
                "{t}: adds {} p50 over direct in `{s}`{}",
                format::added_us((a - d) * 1000.0).trim_start_matches('+'),
                marks(suites, s, &[t], &["status", "p50"])
            ))
        }),
    }
}

fn headline(run: &RunData, suites: &[SuiteView], targets: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    // Throughput first, then the other suites in run order.
    let mut order: Vec<&String> = run
        .manifest
        .suites
        .iter()
        .filter(|s| *s == "throughput")
        .collect();
    order.extend(run.manifest.suites.iter().filter(|s| *s != "throughput"));
    // The first gateway (ours) against each other one.
    let gateways: Vec<&String> = targets.iter().filter(|t| is_gateway(t)).collect();
    if let Some((first, rest)) = gateways.split_first() {
        for other in rest {
            lines.extend(peer_lines(run, suites, &order, first, other));
        }
    }
    if targets.iter().any(|t| t == CONTROL) {
        for t in targets.iter().filter(|t| *t != CONTROL) {
            lines.extend(added_line(run, suites, t));
        }
    }
    for t in &run.manifest.targets {
        if let TargetOutcome::Failed { reason, .. } = &t.outcome {
            lines.push(format!("{} failed: {reason}", t.name));
        }
    }
    lines
}

/// Builds the view model of a run. Charts are added by the caller (HTML only).
pub fn build(run: &RunData) -> ReportView {
    let targets = run.target_names();
    let notes = collect_notes(run);
    let mut suites = Vec::new();
    for s in &run.manifest.suites {
        let (table, shown) = suite_table(run, s, &notes, &targets);
        suites.push(SuiteView {
            name: s.clone(),
            caption: phase_caption(run, s, &targets),
            table,
            phases: phases_table(run, s, &targets, &notes),
            stages: super::stages::table_of(run, s, &targets),
            faults: super::faults::table_of(run, s, &targets),
            frontier: super::frontier::table_of(run, s, &targets),
            thresholds: super::thresholds::table_of(run, s, &targets),
            notes: shown,
            noise_notes: noise_notes(run, s, &targets),
            charts: Vec::new(),
            prometheus: Vec::new(),
        });
    }
    let m = &run.manifest;
    let kv = |k: &str, v: String| KeyValue {
        key: k.to_string(),
        value: v,
    };
    let run_info = vec![
        kv("run", m.run_id.clone()),
        kv("status", kind_label(&m.status)),
        kv("profile", m.profile.clone()),
        kv("suites", m.suites.join(", ")),
        kv("started", m.started_at.to_rfc3339()),
        kv("finished", format::opt(m.finished_at, |t| t.to_rfc3339())),
        kv(
            "took",
            format::opt(m.finished_at, |t| {
                format::duration((t - m.started_at).to_std().unwrap_or_default())
            }),
        ),
        kv("repeats", repeats_line(m)),
        kv("git commit", format::opt(m.git_commit.clone(), |c| c)),
        kv(
            "machine",
            format!(
                "{}, {} cores, {} RAM",
                m.host.cpu_model,
                m.host.cores,
                format::bytes(m.host.memory_bytes)
            ),
        ),
        kv("OS", format!("{}, kernel {}", m.host.os, m.host.kernel)),
        kv("Docker", m.host.docker_version.clone()),
        kv("load generator cpuset", m.generator_cpuset.clone()),
        kv(
            "rig check",
            m.rig
                .as_ref()
                .map_or("not made (older run)".to_string(), |r| {
                    format!(
                        "{}: {} req/s from the mock at {} VUs; {}",
                        if r.qualified {
                            "qualified"
                        } else {
                            "✗ unqualified"
                        },
                        format::rate(r.requests_per_s),
                        r.vus,
                        r.note
                    )
                }),
        ),
    ];
    let target_rows = m
        .targets
        .iter()
        .map(|t| {
            let outcome = match &t.outcome {
                TargetOutcome::Ok => ("ok".to_string(), "ok"),
                TargetOutcome::Skipped => ("skipped".to_string(), "missing"),
                TargetOutcome::Failed {
                    exit_code,
                    reason,
                    last_log_lines,
                } => {
                    let code = exit_code
                        .map(|c| format!(" (exit code {c})"))
                        .unwrap_or_default();
                    let log = last_log_lines
                        .last()
                        .map(|l| format!("; last log: {l}"))
                        .unwrap_or_default();
                    (format!("✗ failed: {reason}{code}{log}"), "failed")
                }
            };
            let cells = vec![
                cell(t.url.clone(), &[], "ok"),
                cell(t.image.clone(), &[], "ok"),
                cell(t.version.clone(), &[], "ok"),
                cell(t.cpuset.clone(), &[], "ok"),
                cell(format::bytes(t.memory_limit_bytes), &[], "ok"),
                cell(outcome.0, &[], outcome.1),
            ];
            row("target", &t.name, &[], cells)
        })
        .collect();
    let targets_table = text_table(
        [
            "url",
            "image",
            "version",
            "cpuset",
            "memory limit",
            "outcome",
        ]
        .map(String::from)
        .to_vec(),
        target_rows,
        "target",
    );
    let service_rows = m
        .services
        .iter()
        .map(|s| {
            let available = if s.available {
                "yes".to_string()
            } else {
                "no".to_string()
            };
            let cells = vec![
                cell(s.image.clone(), &[], "ok"),
                cell(available, &[], if s.available { "ok" } else { "missing" }),
                cell(format::opt(s.cpuset.clone(), |c| c), &[], "ok"),
                cell(format::opt(s.memory_limit_bytes, format::bytes), &[], "ok"),
                cell(format::opt(s.url.clone(), |c| c), &[], "ok"),
                cell(s.note.clone().unwrap_or_default(), &[], "ok"),
            ];
            row("service", &s.name, &[], cells)
        })
        .collect();
    let services_table = text_table(
        [
            "image",
            "available",
            "cpuset",
            "memory limit",
            "url",
            "note",
        ]
        .map(String::from)
        .to_vec(),
        service_rows,
        "service",
    );
    let mut headline = headline(run, &suites, &targets);
    headline.extend(super::floor::headline(run, &targets));
    headline.extend(super::thresholds::headline(run, &targets));
    ReportView {
        run_id: m.run_id.clone(),
        headline,
        run_info,
        targets: targets_table,
        services: services_table,
        floor: super::floor::view(run, &targets),
        feature_tax: None,
        config_json: serde_json::to_string_pretty(&m.config).unwrap_or_default(),
        run_notes: notes
            .iter()
            .filter(|n| n.suite.is_none() && n.target.is_none())
            .cloned()
            .collect(),
        all_notes: notes,
        suites,
    }
}
