//! The rig check (a box qualification): before any target is measured, the mock's own
//! requests/s at a fixed concurrency, against the figure this machine gave before (kept
//! per machine in `<results>/rig-baseline.json`). Outside ±[`TOLERANCE`] the run is
//! marked `rig_unqualified`: its figures are not comparable with the baseline's runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::load::engine::{run_phase, EngineOpts, LoadShape, PhasePlan};
use crate::load::request::{PreparedRequest, RequestSpec};
use crate::load::result::PhaseResult;
use crate::rundir::{HostInfo, RigCheck};

/// Virtual users of the check (closed model), its warm-up and measured length.
pub const VUS: u64 = 16;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(3);
/// Largest relative distance from the baseline a qualified rig may show.
pub const TOLERANCE: f64 = 0.20;
/// The baseline file's name in the results directory.
pub const BASELINE_FILE: &str = "rig-baseline.json";

/// `rig-baseline.json`: one baseline per machine (see [`machine_key`]).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Baselines {
    machines: BTreeMap<String, Baseline>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Baseline {
    requests_per_s: f64,
    vus: u64,
    measured_at: DateTime<Utc>,
    run_id: String,
}

/// Which machine a baseline belongs to: what the manifest knows of the host.
pub fn machine_key(h: &HostInfo) -> String {
    format!(
        "{} / {} cores / {} MiB",
        h.cpu_model,
        h.cores,
        h.memory_bytes / (1024 * 1024)
    )
}

/// Measures the mock at `mock_url` (blocking: run it off the async runtime).
pub fn measure(mock_url: &str, cancel: &crate::load::CancelToken) -> anyhow::Result<PhaseResult> {
    let req = PreparedRequest::new(&RequestSpec::default(), mock_url)?;
    let engine = EngineOpts {
        cancel: cancel.clone(),
        suite: "rig".into(),
        ..EngineOpts::default()
    };
    let plan = |warmup: bool, d: Duration| PhasePlan {
        name: "rig".into(),
        shape: LoadShape::constant_vus(VUS, d),
        requests: vec![("rig".into(), req.clone())],
        timeout: Duration::from_secs(5),
        warmup,
    };
    run_phase(&plan(true, WARMUP), &engine)?;
    let out = run_phase(&plan(false, MEASURE), &engine)?;
    out.results
        .into_iter()
        .next()
        .context("the rig check measured nothing")
}

/// Judges `measured` against this machine's baseline in `results`, and records it as the
/// baseline when the machine has none yet.
pub fn judge(
    results: &Path,
    host: &HostInfo,
    run_id: &str,
    measured: &PhaseResult,
) -> anyhow::Result<RigCheck> {
    let path = baseline_path(results);
    let mut all = read_baselines(&path)?;
    let key = machine_key(host);
    let rps = capacity(measured);
    let errors = measured.requests.errors.total();
    let mut check = RigCheck {
        requests_per_s: rps,
        vus: VUS,
        duration_s: measured.duration_s,
        baseline_requests_per_s: None,
        ratio: None,
        qualified: true,
        note: String::new(),
    };
    if errors > 0 {
        check.qualified = false;
        check.note = format!("{errors} of the rig check's requests to the mock failed");
        return Ok(check);
    }
    let Some(b) = all.machines.get(&key) else {
        all.machines.insert(
            key,
            Baseline {
                requests_per_s: rps,
                vus: VUS,
                measured_at: Utc::now(),
                run_id: run_id.to_string(),
            },
        );
        write_baselines(&path, &all)?;
        check.note = format!(
            "first run on this machine: {} is its baseline now",
            path.display()
        );
        return Ok(check);
    };
    let ratio = rps / b.requests_per_s;
    check.baseline_requests_per_s = Some(b.requests_per_s);
    check.ratio = Some(ratio);
    check.qualified = (ratio - 1.0).abs() <= TOLERANCE;
    check.note = format!(
        "the mock served {rps:.0} req/s at {VUS} VUs, {:.0} % of this machine's baseline ({:.0} req/s, run {}, {})",
        ratio * 100.0,
        b.requests_per_s,
        b.run_id,
        b.measured_at.format("%Y-%m-%d")
    );
    if !check.qualified {
        check.note.push_str(&format!(
            ": outside ±{:.0} %, so this run's figures are not comparable with runs made on the baseline's rig (delete {} to take a new baseline)",
            TOLERANCE * 100.0,
            path.display()
        ));
    }
    Ok(check)
}

/// The rig's figure: its best whole second. Other work on a 2-core machine only ever
/// lowers a second's rate, so the best second moves less between runs than the mean
/// (four back-to-back checks of the mean over 2 s gave 85 % to 129 % of one baseline).
fn capacity(p: &PhaseResult) -> f64 {
    p.timeseries
        .iter()
        .filter(|w| w.requests > 0)
        .map(|w| w.requests_per_s)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
        .unwrap_or(p.throughput.requests_per_s)
}

fn baseline_path(results: &Path) -> PathBuf {
    results.join(BASELINE_FILE)
}

fn read_baselines(path: &Path) -> anyhow::Result<Baselines> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not a rig baseline file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Baselines::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_baselines(path: &Path, b: &Baselines) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(b)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::result::TimePoint;

    fn host() -> HostInfo {
        HostInfo {
            cores: 2,
            kernel: "k".into(),
            os: "os".into(),
            cpu_model: "Test CPU".into(),
            memory_bytes: 24 << 30,
            docker_version: "d".into(),
        }
    }

    /// A fresh directory under the system's temporary one, removed by the caller.
    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    fn measured(rps: f64) -> PhaseResult {
        let mut p = crate::load::result::tests::sample_phase(false);
        p.throughput.requests_per_s = rps;
        p.timeseries.clear();
        p.requests.errors = Default::default();
        p
    }

    #[test]
    fn first_run_sets_the_baseline_then_runs_are_judged_against_it() {
        let dir = temp_dir("judge");
        let judge = |rps: f64, run: &str| {
            judge(&dir, &host(), run, &measured(rps)).unwrap_or_else(|e| panic!("{e:#}"))
        };
        let first = judge(10_000.0, "r1");
        assert!(first.qualified && first.baseline_requests_per_s.is_none());
        assert!(
            first.note.contains("first run on this machine"),
            "{}",
            first.note
        );
        let near = judge(8_500.0, "r2");
        assert!(near.qualified, "{near:?}");
        assert_eq!(near.baseline_requests_per_s, Some(10_000.0));
        let slow = judge(7_000.0, "r3");
        assert!(!slow.qualified, "{slow:?}");
        assert!(
            slow.note.contains("70 %") && slow.note.contains("run r1"),
            "{}",
            slow.note
        );
        // A judged run never moves the baseline.
        assert_eq!(
            judge(10_100.0, "r4").baseline_requests_per_s,
            Some(10_000.0)
        );
        // Another machine gets a baseline of its own.
        let other = HostInfo { cores: 8, ..host() };
        let c =
            super::judge(&dir, &other, "r5", &measured(3_000.0)).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.qualified && c.baseline_requests_per_s.is_none(), "{c:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_best_second_is_the_figure() {
        let mut p = measured(900.0);
        for (t, r) in [(1.0, 800.0), (2.0, 1000.0), (3.0, 950.0)] {
            p.timeseries.push(TimePoint {
                t_s: t,
                requests: r as u64,
                requests_per_s: r,
                ..TimePoint::default()
            });
        }
        assert_eq!(capacity(&p), 1000.0);
        assert_eq!(capacity(&measured(900.0)), 900.0);
    }

    #[test]
    fn a_broken_baseline_file_is_named() {
        let dir = temp_dir("broken");
        std::fs::write(dir.join(BASELINE_FILE), "{\"machine\": 1}")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = judge(&dir, &host(), "r", &measured(1.0))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.contains("rig-baseline.json") && err.contains("machine"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
