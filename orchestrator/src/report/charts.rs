//! The HTML report's charts for one suite, drawn with [`super::svg`].

use super::data::{headline_phase, RunData};
use super::figures::KeyFigures;
use super::format;
use super::model::ChartView;
use super::svg::{Axis, Bar, BarChart, LineChart, Scale, Series};

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
    scaling_charts(&mut out, run, suite);
    interval_charts(&mut out, run, suite);
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

/// The suite's requests/s and p99 per target as bars with their 95 % intervals as error
/// bars; left out when no target has an interval for the figure.
fn interval_charts(out: &mut Vec<ChartView>, run: &RunData, suite: &str) {
    let figs: Vec<(String, KeyFigures)> = run
        .target_names()
        .into_iter()
        .filter_map(|t| Some((t.clone(), KeyFigures::of(run.entry(&t, suite)?))))
        .collect();
    let specs = [
        Figure {
            key: "requests_per_s",
            label: "requests/s",
            get: |k| k.requests_per_s,
            tick: num_tick,
        },
        Figure {
            key: "p99",
            label: "p99 latency",
            get: |k| k.p99_ms,
            tick: ms_tick,
        },
    ];
    for Figure {
        key,
        label,
        get,
        tick,
    } in specs
    {
        if figs.iter().all(|(_, k)| k.noise.get(key).is_none()) {
            continue;
        }
        let bars = figs
            .iter()
            .enumerate()
            .filter_map(|(i, (t, k))| {
                Some(Bar {
                    name: t.clone(),
                    color: color(t, i),
                    value: get(k)?,
                    interval: k.noise.get(key).map(|n| (n.lo, n.hi)),
                })
            })
            .collect();
        let chart = BarChart {
            title: format!("{suite}: {label} per target, 95 % interval"),
            y: axis(label, Scale::Linear, tick, true),
            bars,
        };
        if let Some(svg) = chart.to_svg() {
            out.push(ChartView {
                title: chart.title,
                svg,
            });
        }
    }
}

/// A figure drawn with its interval: its noise key, axis label, how to read it and print
/// its ticks.
struct Figure {
    key: &'static str,
    label: &'static str,
    get: fn(&KeyFigures) -> Option<f64>,
    tick: fn(f64) -> String,
}

/// Per stage of a ramp (`throughput`): `pick` of each stage against the virtual users it
/// ramped to. Ramp-down stages are left out, and of stages at the same level the last one
/// (the plateau, when the load had settled) is kept.
fn by_vus(
    e: &super::data::Entry,
    pick: fn(&crate::load::result::StageResult) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let Some(p) = e.result.as_ref().and_then(headline_phase) else {
        return Vec::new();
    };
    let mut pts: Vec<(f64, f64)> = Vec::new();
    let mut level = 0;
    for s in &p.stages {
        if s.target_vus == 0 || s.target_vus < level {
            continue;
        }
        level = s.target_vus;
        let Some(v) = pick(s) else { continue };
        match pts.last_mut() {
            Some(last) if last.0 == s.target_vus as f64 => last.1 = v,
            _ => pts.push((s.target_vus as f64, v)),
        }
    }
    pts
}

/// Where each target stops scaling: requests/s and p99 per stage against virtual users.
fn scaling_charts(out: &mut Vec<ChartView>, run: &RunData, suite: &str) {
    push(
        out,
        LineChart {
            bands: Vec::new(),
            title: format!("{suite}: requests/s against virtual users (per stage)"),
            x: axis("virtual users", Scale::Linear, num_tick, true),
            y: axis("requests/s", Scale::Linear, num_tick, true),
            series: series(run, suite, |e| by_vus(e, |s| Some(s.requests_per_s))),
        },
    );
    push(
        out,
        LineChart {
            bands: Vec::new(),
            title: format!("{suite}: p99 against virtual users (per stage)"),
            x: axis("virtual users", Scale::Linear, num_tick, true),
            y: axis("p99 latency", Scale::Log10, ms_tick, false),
            series: series(run, suite, |e| {
                by_vus(e, |s| (s.latency_ms.count > 0).then_some(s.latency_ms.p99))
            }),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::result::{StageResult, Summary};

    #[test]
    fn scaling_points_follow_the_ramp_up_and_keep_the_plateau() {
        let stage = |i: u64, vus: u64, rps: f64| StageResult {
            stage: i,
            target_vus: vus,
            peak_active_vus: vus,
            duration_s: 1.0,
            requests: rps as u64,
            errors: 0,
            requests_per_s: rps,
            latency_ms: Summary {
                count: 1,
                p99: rps / 1000.0,
                ..Summary::default()
            },
            start_s: None,
            ttft_ms: None,
            itl_ms: None,
            rig_refused: 0,
        };
        let mut p = crate::load::result::tests::sample_phase(false);
        p.stages = vec![
            stage(0, 5, 100.0),
            stage(1, 10, 180.0),
            stage(2, 10, 200.0),
            stage(3, 0, 50.0),
        ];
        let result: crate::load::result::SuiteResult = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "suite": "throughput", "target": "gateway", "url": "http://x",
            "profile": "quick", "started_at": "2026-12-06T00:00:00Z",
            "finished_at": "2026-12-06T00:00:10Z", "interrupted": false, "phases": [],
            "frontier": null, "overhead": null, "warnings": []
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let e = super::super::data::Entry {
            target: "gateway".into(),
            suite: "throughput".into(),
            result: Some(crate::load::result::SuiteResult {
                phases: vec![p],
                ..result
            }),
            raw_file: String::new(),
            stats: None,
            repeats: Vec::new(),
        };
        assert_eq!(
            by_vus(&e, |s| Some(s.requests_per_s)),
            [(5.0, 100.0), (10.0, 200.0)]
        );
    }

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
