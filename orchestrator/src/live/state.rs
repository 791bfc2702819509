//! What the live page shows, updated by the run as it goes: the plan of (target, suite)
//! pairs, the suite in progress, per-second series of every target for each suite, and the
//! key figures of the pairs already measured. Read as one JSON snapshot per poll.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::load::{Event, TimePoint};
use crate::report::charts::color;
use crate::report::figures::KeyFigures;
use crate::report::format;
use crate::rundir::StatsSample;

/// One (target, suite) pair of the run, in the order the run measures them.
#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    pub target: String,
    pub suite: String,
    /// The suite's estimated duration at the run's profile.
    pub estimate_s: f64,
}

/// Links the page shows next to the charts (absent services are `None`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Links {
    pub prometheus: Option<String>,
    pub console: Option<String>,
    /// Where cAdvisor's metrics are served, and by whom (`cAdvisor` or the stand-in).
    pub cadvisor: Option<String>,
    pub cadvisor_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct TargetView {
    name: String,
    color: String,
}

/// Per-second points of one target in one suite, seconds since the suite started.
#[derive(Debug, Clone, Default, Serialize)]
struct Series {
    /// `[t, requests/s, p50 ms, p99 ms, errors/s]`
    load: Vec<[f64; 5]>,
    /// `[t, CPU % of one core, memory MiB]`
    container: Vec<[f64; 3]>,
}

#[derive(Debug, Clone, Serialize)]
struct Current {
    target: String,
    suite: String,
    phase: String,
    #[serde(skip)]
    started: Instant,
    #[serde(skip)]
    started_at: DateTime<Utc>,
    elapsed_s: f64,
    estimate_s: f64,
}

/// Key figures of a measured pair, formatted as the report formats them.
#[derive(Debug, Clone, Serialize)]
struct Done {
    target: String,
    suite: String,
    requests_per_s: String,
    p50: String,
    p99: String,
    errors: String,
    cpu: String,
    memory: String,
}

#[derive(Debug, Clone, Serialize)]
struct Finished {
    status: String,
    /// Served by the live server (`/report.html`) while it runs.
    report: Option<String>,
    report_file: Option<String>,
}

#[derive(Debug, Serialize)]
struct State {
    run_id: String,
    profile: String,
    targets: Vec<TargetView>,
    plan: Vec<PlanItem>,
    links: Links,
    current: Option<Current>,
    /// The suite whose series are shown: the current one, else the last measured.
    shown_suite: Option<String>,
    done: Vec<Done>,
    finished: Option<Finished>,
    #[serde(skip)]
    series: BTreeMap<(String, String), Series>,
    #[serde(skip)]
    report_path: Option<PathBuf>,
}

/// The run's live state, shared by the run (writer) and the live server (reader).
#[derive(Clone)]
pub struct Live(Arc<Mutex<State>>);

impl Live {
    pub fn new(run_id: &str, profile: &str, targets: &[String], plan: Vec<PlanItem>) -> Self {
        let targets = targets
            .iter()
            .enumerate()
            .map(|(i, t)| TargetView {
                name: t.clone(),
                color: color(t, i),
            })
            .collect();
        Self(Arc::new(Mutex::new(State {
            run_id: run_id.to_string(),
            profile: profile.to_string(),
            targets,
            plan,
            links: Links::default(),
            current: None,
            shown_suite: None,
            done: Vec::new(),
            finished: None,
            series: BTreeMap::new(),
            report_path: None,
        })))
    }

    // A panic while holding the lock leaves plain data behind: keep serving it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn run_id(&self) -> String {
        self.lock().run_id.clone()
    }

    pub fn set_links(&self, links: Links) {
        self.lock().links = links;
    }

    /// A suite begins against a target; its series start empty.
    pub fn suite_started(&self, target: &str, suite: &str, estimate_s: f64) {
        let mut s = self.lock();
        s.current = Some(Current {
            target: target.to_string(),
            suite: suite.to_string(),
            phase: "starting".into(),
            started: Instant::now(),
            started_at: Utc::now(),
            elapsed_s: 0.0,
            estimate_s,
        });
        s.shown_suite = Some(suite.to_string());
        s.series
            .insert((suite.to_string(), target.to_string()), Series::default());
    }

    /// A load generator event of the current suite (phase starts and per-second points).
    pub fn on_event(&self, event: &Event) {
        let mut s = self.lock();
        let Some(cur) = s.current.as_mut() else {
            return;
        };
        match event {
            Event::PhaseStarted { phase, warmup, .. } => {
                cur.phase = if *warmup {
                    format!("{phase} (warm-up)")
                } else {
                    phase.clone()
                };
            }
            Event::Point { at, point, .. } => {
                let t = (*at - cur.started_at).num_milliseconds() as f64 / 1000.0;
                let key = (cur.suite.clone(), cur.target.clone());
                let row = load_row(t, point);
                s.series.entry(key).or_default().load.push(row);
            }
            Event::PhaseFinished { .. } | Event::Note { .. } => {}
        }
    }

    /// A container sample of the current suite's target.
    pub fn container_sample(&self, sample: &StatsSample) {
        let mut s = self.lock();
        let Some(cur) = s.current.as_ref() else {
            return;
        };
        let key = (cur.suite.clone(), cur.target.clone());
        let row = [
            sample.t,
            sample.cpu_percent,
            sample.memory_bytes as f64 / (1024.0 * 1024.0),
        ];
        s.series.entry(key).or_default().container.push(row);
    }

    /// The current suite finished with these figures.
    pub fn suite_done(&self, target: &str, suite: &str, k: &KeyFigures) {
        let mut s = self.lock();
        s.done.push(Done {
            target: target.to_string(),
            suite: suite.to_string(),
            requests_per_s: format::opt(k.requests_per_s, format::rate),
            p50: format::opt(k.p50_ms, format::latency_ms),
            p99: format::opt(k.p99_ms, format::latency_ms),
            errors: format::opt(k.error_percent, format::percent),
            cpu: format::opt(k.cpu_percent, |c| format!("{} %", format::rate(c))),
            memory: format::opt(k.peak_memory_bytes, format::bytes),
        });
        s.current = None;
    }

    /// The run ended; `report` is its `report.html` when rendering succeeded.
    pub fn finished(&self, status: &str, report: Option<&Path>) {
        let mut s = self.lock();
        s.current = None;
        s.report_path = report.map(Path::to_path_buf);
        s.finished = Some(Finished {
            status: status.to_string(),
            report: report.map(|_| "/report.html".to_string()),
            report_file: report.map(|p| p.display().to_string()),
        });
    }

    pub fn report_path(&self) -> Option<PathBuf> {
        self.lock().report_path.clone()
    }

    /// The whole state as JSON: the shown suite's series for every target, and how much
    /// of the run is left (estimates; container starts not counted).
    pub fn snapshot_json(&self) -> String {
        let mut s = self.lock();
        if let Some(cur) = s.current.as_mut() {
            cur.elapsed_s = cur.started.elapsed().as_secs_f64();
        }
        let series: BTreeMap<&str, &Series> = match &s.shown_suite {
            Some(suite) => s
                .series
                .iter()
                .filter(|((su, _), _)| su == suite)
                .map(|((_, t), v)| (t.as_str(), v))
                .collect(),
            None => BTreeMap::new(),
        };
        let (done_n, left_s) = progress(&s);
        let value = serde_json::json!({
            "state": &*s,
            "series": series,
            "progress": { "done": done_n, "total": s.plan.len(), "left_s": left_s },
        });
        value.to_string()
    }
}

fn load_row(t: f64, p: &TimePoint) -> [f64; 5] {
    // Errors per second: counts are of one-second intervals.
    [t, p.requests_per_s, p.p50_ms, p.p99_ms, p.errors as f64]
}

/// Pairs measured, and the estimated seconds left: the rest of the current suite plus
/// every pair not started yet.
fn progress(s: &State) -> (usize, f64) {
    let done = s.done.len();
    let current_left = s
        .current
        .as_ref()
        .map_or(0.0, |c| (c.estimate_s - c.elapsed_s).max(0.0));
    let started = done + usize::from(s.current.is_some());
    let rest: f64 = s.plan.iter().skip(started).map(|p| p.estimate_s).sum();
    if s.finished.is_some() {
        return (done, 0.0);
    }
    (done, current_left + rest)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn plan() -> Vec<PlanItem> {
        ["gateway", "litellm"]
            .iter()
            .map(|t| PlanItem {
                target: t.to_string(),
                suite: "baseline".into(),
                estimate_s: 30.0,
            })
            .collect()
    }

    #[test]
    fn snapshot_holds_the_shown_suite_of_every_target_and_the_time_left() {
        let targets = vec!["gateway".to_string(), "litellm".to_string()];
        let live = Live::new("r1", "quick", &targets, plan());
        live.suite_started("gateway", "baseline", 30.0);
        let start = Utc::now();
        live.on_event(&Event::PhaseStarted {
            suite: "baseline".into(),
            phase: "steady".into(),
            warmup: false,
            at: start,
        });
        let point = TimePoint {
            requests_per_s: 120.0,
            p50_ms: 2.0,
            p99_ms: 9.0,
            errors: 3,
            ..TimePoint::default()
        };
        live.on_event(&Event::Point {
            suite: "baseline".into(),
            phase: "steady".into(),
            at: start + chrono::Duration::seconds(2),
            point,
        });
        live.container_sample(&StatsSample {
            t: 1.0,
            cpu_percent: 55.0,
            memory_bytes: 64 << 20,
            throttled_periods: 0,
            throttled_time_ns: 0,
            cpu_total_ns: None,
        });
        let v: serde_json::Value = serde_json::from_str(&live.snapshot_json()).unwrap();
        assert_eq!(v["state"]["current"]["phase"], "steady");
        let load = &v["series"]["gateway"]["load"][0];
        assert!((load[0].as_f64().unwrap() - 2.0).abs() < 0.1, "{load}");
        assert_eq!(load[1], 120.0);
        assert_eq!(load[4], 3.0);
        assert_eq!(v["series"]["gateway"]["container"][0][2], 64.0);
        // The rest of this suite plus litellm's 30 s.
        let left = v["progress"]["left_s"].as_f64().unwrap();
        assert!(left > 55.0 && left <= 60.0, "{left}");
        assert_eq!(v["state"]["targets"][1]["color"], "#ea580c");

        let k = KeyFigures {
            requests_per_s: Some(1234.5),
            p99_ms: Some(9.0),
            ..KeyFigures::default()
        };
        live.suite_done("gateway", "baseline", &k);
        live.suite_started("litellm", "baseline", 30.0);
        let v: serde_json::Value = serde_json::from_str(&live.snapshot_json()).unwrap();
        // The measured target stays beside the current one.
        assert_eq!(v["series"]["gateway"]["load"].as_array().unwrap().len(), 1);
        assert!(v["series"]["litellm"]["load"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(
            v["state"]["done"][0]["requests_per_s"],
            format::rate(1234.5)
        );
        assert_eq!(v["progress"]["done"], 1);

        live.finished("complete", Some(Path::new("/tmp/r1/report.html")));
        let v: serde_json::Value = serde_json::from_str(&live.snapshot_json()).unwrap();
        assert_eq!(v["state"]["finished"]["report"], "/report.html");
        assert_eq!(v["progress"]["left_s"], 0.0);
        assert!(v["state"]["current"].is_null());
    }
}
