//! The HTML report's charts for one suite, drawn with [`super::svg`].

use super::data::{headline_phase, RunData};
use super::format;
use super::model::ChartView;
use super::svg::{Axis, LineChart, Scale, Series};

/// A fixed colour per known target, so every chart agrees; any other target (a gateway
/// added to the compose file) takes one of the rest by its position in the run.
pub fn color(target: &str, index: usize) -> String {
    match target {
        "direct" => "#6b7280".to_string(),
        "nginx" => "#0d9488".to_string(),
        "gateway" => "#2563eb".to_string(),
        "litellm" => "#ea580c".to_string(),
        _ => ["#9333ea", "#db2777", "#0891b2", "#ca8a04"][index % 4].to_string(),
    }
}

/// Drops trailing zeros from the number a tick label starts with: `5.00` -> `5`, `1.00 ms` -> `1 ms`.
fn trim(label: String) -> String {
    let (num, unit) = label.split_once(' ').unwrap_or((&label, ""));
    let num = if num.contains('.') {
        num.trim_end_matches('0').trim_end_matches('.')
    } else {
        num
    };
    if unit.is_empty() {
        num.to_string()
    } else {
        format!("{num} {unit}")
    }
}
fn ms_tick(v: f64) -> String {
    trim(format::latency_ms(v))
}
fn pct_tick(v: f64) -> String {
    trim(format!("{v:.4}"))
}
fn num_tick(v: f64) -> String {
    trim(format::rate(v))
}
fn mib_tick(v: f64) -> String {
    trim(format!("{} MiB", format::rate(v)))
}
fn cpu_tick(v: f64) -> String {
    trim(format!("{} %", format::rate(v)))
}

fn axis(label: &str, scale: Scale, format: fn(f64) -> String, from_zero: bool) -> Axis {
    Axis {
        label: label.to_string(),
        scale,
        format,
        from_zero,
    }
}

fn push(out: &mut Vec<ChartView>, chart: LineChart) {
    if let Some(svg) = chart.to_svg() {
        out.push(ChartView {
            title: chart.title,
            svg,
        });
    }
}

/// Series of one suite per target, built by `f` (targets without data get no points).
fn series(
    run: &RunData,
    suite: &str,
    f: impl Fn(&super::data::Entry) -> Vec<(f64, f64)>,
) -> Vec<Series> {
    run.target_names()
        .iter()
        .enumerate()
        .map(|(i, t)| Series {
            name: t.clone(),
            color: color(t, i),
            points: run.entry(t, suite).map(&f).unwrap_or_default(),
        })
        .collect()
}

/// Charts for one suite: latency percentiles, requests/s and p99 over time, the frontier,
/// container CPU and memory over time. Charts with nothing to draw are left out.
pub fn suite_charts(run: &RunData, suite: &str) -> Vec<ChartView> {
    let mut out = Vec::new();
    push(
        &mut out,
        LineChart {
            bands: Vec::new(),
            title: format!("{suite}: latency by percentile"),
            x: axis("percentile", Scale::Nines, pct_tick, false),
            y: axis("latency", Scale::Log10, ms_tick, false),
            series: series(run, suite, |e| {
                e.result
                    .as_ref()
                    .and_then(headline_phase)
                    .map(|p| {
                        p.percentile_curve
                            .iter()
                            .map(|c| (c.percentile, c.latency_ms))
                            .collect()
                    })
                    .unwrap_or_default()
            }),
        },
    );
    // Time series: phases laid end to end.
    let over_time = |pick: fn(&crate::load::result::TimePoint) -> Option<f64>| {
        move |e: &super::data::Entry| -> Vec<(f64, f64)> {
            let mut pts = Vec::new();
            let mut offset = 0.0;
            // The overhead suite's two phases ran interleaved: only the target's is drawn.
            let phases: Vec<&crate::load::result::PhaseResult> = match &e.result {
                Some(r) if r.overhead.is_some() => headline_phase(r).into_iter().collect(),
                Some(r) => r.phases.iter().collect(),
                None => Vec::new(),
            };
            for p in phases {
                for tp in &p.timeseries {
                    if let Some(v) = pick(tp) {
                        pts.push((offset + tp.t_s, v));
                    }
                }
                offset += p
                    .duration_s
                    .max(p.timeseries.last().map(|t| t.t_s).unwrap_or(0.0));
            }
            pts
        }
    };
    push(
        &mut out,
        LineChart {
            bands: Vec::new(),
            title: format!("{suite}: requests/s over time"),
            x: axis("seconds", Scale::Linear, num_tick, true),
            y: axis("requests/s", Scale::Linear, num_tick, true),
            series: series(run, suite, over_time(|t| Some(t.requests_per_s))),
        },
    );
    push(
        &mut out,
        LineChart {
            bands: Vec::new(),
            title: format!("{suite}: p99 over time"),
            x: axis("seconds", Scale::Linear, num_tick, true),
            y: axis("p99 latency", Scale::Log10, ms_tick, false),
            series: series(run, suite, over_time(|t| (t.ok > 0).then_some(t.p99_ms))),
        },
    );
    push(
        &mut out,
        LineChart {
            bands: Vec::new(),
            // Every target on one chart; both axes logarithmic, so a target sustaining
            // 100/s and one sustaining 40,000/s both show their shape.
            title: format!("{suite}: highest rate sustained under a p99 bound"),
            x: axis("p99 bound", Scale::Log10, ms_tick, false),
            y: axis("requests/s", Scale::Log10, num_tick, false),
            series: series(run, suite, |e| {
                e.result
                    .iter()
                    .flat_map(|r| r.frontier.iter().flatten())
                    .filter_map(|f| Some((f.p99_bound_ms, f.max_rate_per_s?)))
                    .collect()
            }),
        },
    );
    push(
        &mut out,
        LineChart {
            bands: Vec::new(),
            title: format!("{suite}: container CPU"),
            x: axis("seconds", Scale::Linear, num_tick, true),
            y: axis("CPU (% of one core)", Scale::Linear, cpu_tick, true),
            series: series(run, suite, |e| {
                e.stats
                    .iter()
                    .flat_map(|s| &s.samples)
                    .map(|s| (s.t, s.cpu_percent))
                    .collect()
            }),
        },
    );
    push(
        &mut out,
        LineChart {
            bands: Vec::new(),
            title: format!("{suite}: container memory"),
            x: axis("seconds", Scale::Linear, num_tick, true),
            y: axis("memory", Scale::Linear, mib_tick, true),
            series: series(run, suite, |e| {
                e.stats
                    .iter()
                    .flat_map(|s| &s.samples)
                    .map(|s| (s.t, s.memory_bytes as f64 / (1024.0 * 1024.0)))
                    .collect()
            }),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(ms_tick(1.0), "1 ms");
        assert_eq!(ms_tick(0.1), "100 µs");
        assert_eq!(num_tick(5.0), "5");
        assert_eq!(num_tick(20000.0), "20,000");
        assert_eq!(pct_tick(99.9), "99.9");
        assert_eq!(cpu_tick(80.0), "80 %");
    }
}
