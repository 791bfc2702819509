//! The layout of a run directory, `results/<run-id>/`: the contract between the lab, which
//! writes it, and the reports, which read it.
//!
//! ```text
//! results/<run-id>/
//!   manifest.json            Manifest: how the run was made, what happened to each target
//!   raw/<target>-<suite>.json the load generator's result for one target and suite
//!   stats/<target>-<suite>.json ContainerStats: the target container's per-second samples
//!   raw/<target>-<suite>.r<N>.json, stats/<target>-<suite>.r<N>.json
//!                            repeat N (2, 3, …) of a repeated suite (repeat 1 is unsuffixed)
//!   all_results.json         every result as {target_id, metrics, timestamp} (reports)
//!   summary.md, report.html  rendered by `orchestrator report`
//! results/latest -> <run-id>
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "manifest.json";
pub const RAW_DIR: &str = "raw";
pub const STATS_DIR: &str = "stats";
pub const ALL_RESULTS: &str = "all_results.json";
pub const SUMMARY_MD: &str = "summary.md";
pub const REPORT_HTML: &str = "report.html";
pub const LATEST: &str = "latest";

/// Paths inside one run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(results: &Path, run_id: &str) -> Self {
        Self {
            root: results.join(run_id),
        }
    }
    pub fn manifest(&self) -> PathBuf {
        self.root.join(MANIFEST)
    }
    pub fn raw(&self, target: &str, suite: &str) -> PathBuf {
        self.root
            .join(RAW_DIR)
            .join(format!("{target}-{suite}.json"))
    }
    pub fn stats(&self, target: &str, suite: &str) -> PathBuf {
        self.root
            .join(STATS_DIR)
            .join(format!("{target}-{suite}.json"))
    }
    /// The raw file of repeat `n` (1-based; repeat 1 is [`RunDir::raw`]).
    pub fn raw_repeat(&self, target: &str, suite: &str, n: u32) -> PathBuf {
        self.root.join(RAW_DIR).join(repeat_file(target, suite, n))
    }
    /// The stats file of repeat `n` (1-based; repeat 1 is [`RunDir::stats`]).
    pub fn stats_repeat(&self, target: &str, suite: &str, n: u32) -> PathBuf {
        self.root
            .join(STATS_DIR)
            .join(repeat_file(target, suite, n))
    }
}

/// `<target>-<suite>.json` for repeat 1, `<target>-<suite>.r<n>.json` after it.
pub fn repeat_file(target: &str, suite: &str, n: u32) -> String {
    if n <= 1 {
        format!("{target}-{suite}.json")
    } else {
        format!("{target}-{suite}.r{n}.json")
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Complete,
    /// Interrupted (Ctrl-C) or aborted: what was measured is kept.
    Partial,
}

/// `manifest.json`: everything needed to know how the numbers were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// Suite profile (`quick` or `full`).
    pub profile: String,
    pub suites: Vec<String>,
    pub git_commit: Option<String>,
    pub host: HostInfo,
    /// Where the load generator ran (cpuset of the orchestrator process).
    pub generator_cpuset: String,
    pub targets: Vec<TargetRecord>,
    /// Supporting services: mock-upstream, prometheus, influxdb, cadvisor.
    pub services: Vec<ServiceRecord>,
    /// The configuration used (compose values, env), secrets redacted.
    pub config: serde_json::Value,
    pub warnings: Vec<Warning>,
    /// The rig check made before the first target (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rig: Option<RigCheck>,
    /// Suites measured more than once per target, and how many times (planned; a repeat
    /// whose files are missing was not reached).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repeats: BTreeMap<String, u32>,
    /// The lane of the run: `plain`, `governed` or `both` (absent in older runs: plain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// The Docker engines of the run (absent in older runs: one local engine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<EngineRecord>,
}

/// One Docker engine of a run: where it is, what it has, which roles it ran, how far its
/// clock is from the orchestrator's, and the id of each image used on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineRecord {
    pub endpoint: String,
    pub roles: Vec<String>,
    pub host: String,
    pub cores: i64,
    pub memory_bytes: i64,
    pub version: String,
    /// Engine clock minus the orchestrator's, ms (± half of `clock_rtt_ms`). Series and
    /// generator start times from that engine are corrected by it.
    pub clock_offset_ms: f64,
    pub clock_rtt_ms: Option<f64>,
    /// Image → id on this engine.
    pub images: BTreeMap<String, String>,
}

impl Manifest {
    /// Planned repeats of `suite` (1 when it is not repeated).
    pub fn repeats_of(&self, suite: &str) -> u32 {
        self.repeats.get(suite).copied().unwrap_or(1)
    }
}

/// The mock's own requests/s at a fixed concurrency before the run, against the figure
/// this machine gave before (`<results>/rig-baseline.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigCheck {
    /// The mock's best whole second of the check.
    pub requests_per_s: f64,
    pub vus: u64,
    pub duration_s: f64,
    /// This machine's baseline; `None` when this run set it.
    pub baseline_requests_per_s: Option<f64>,
    /// Measured ÷ baseline.
    pub ratio: Option<f64>,
    /// Within ±20 % of the baseline (or the baseline itself), and no request failed.
    pub qualified: bool,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    pub cores: usize,
    pub kernel: String,
    pub os: String,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub docker_version: String,
}

/// A measured target (`direct`, `gateway`, `litellm`) and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRecord {
    pub name: String,
    pub url: String,
    pub image: String,
    pub image_id: Option<String>,
    pub version: String,
    pub cpuset: String,
    pub memory_limit_bytes: u64,
    pub outcome: TargetOutcome,
    /// A governed variant (`x-lab-governed`): which plain target it governs and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed: Option<GovernedRecord>,
}

/// What a governed target turns on over its plain twin, and what it cannot have here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernedRecord {
    /// The plain target it is the governed variant of.
    pub of: String,
    pub features: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TargetOutcome {
    Ok,
    /// The container died or never became healthy.
    Failed {
        exit_code: Option<i64>,
        reason: String,
        last_log_lines: Vec<String>,
    },
    /// Not reached (run interrupted before it).
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub name: String,
    pub image: String,
    pub available: bool,
    pub cpuset: Option<String>,
    pub memory_limit_bytes: Option<u64>,
    pub url: Option<String>,
    /// Why it is unavailable, when it is.
    pub note: Option<String>,
}

/// A warning raised during a run, shown next to the numbers it affects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warning {
    pub kind: WarningKind,
    pub target: Option<String>,
    pub suite: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    LoadGeneratorBound,
    TargetFailed,
    CadvisorUnavailable,
    NoisyMachine,
    /// The rig check fell outside its tolerance: the figures are not comparable.
    RigUnqualified,
    Interrupted,
    /// The target was still busy with a suite's load well after it ended, so it was
    /// restarted before the next suite.
    Restarted,
    Other,
}

/// `stats/<target>-<suite>.json`: one container's resource use, sampled every second
/// from the Docker stats API while a suite ran against it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerStats {
    pub target: String,
    pub suite: String,
    pub container: String,
    pub samples: Vec<StatsSample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSample {
    /// Seconds since the suite started.
    pub t: f64,
    /// CPU use in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// Cumulative CFS throttled periods and time, as the kernel counts them.
    pub throttled_periods: u64,
    pub throttled_time_ns: u64,
    /// Cumulative CPU time of the container, ns (absent in runs made before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_total_ns: Option<u64>,
}

impl ContainerStats {
    pub fn peak_memory_bytes(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.memory_bytes)
            .max()
            .unwrap_or(0)
    }
    pub fn mean_cpu_percent(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.samples.iter().map(|s| s.cpu_percent).sum::<f64>() / self.samples.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_layout() {
        let d = RunDir::new(Path::new("results"), "20261124-1");
        assert_eq!(
            d.raw("gateway", "baseline"),
            Path::new("results/20261124-1/raw/gateway-baseline.json")
        );
        assert_eq!(
            d.stats("litellm", "sustained"),
            Path::new("results/20261124-1/stats/litellm-sustained.json")
        );
        assert_eq!(
            d.raw_repeat("gateway", "baseline", 1),
            d.raw("gateway", "baseline")
        );
        assert_eq!(
            d.stats_repeat("gateway", "overhead", 3),
            Path::new("results/20261124-1/stats/gateway-overhead.r3.json")
        );
    }

    #[test]
    fn stats_aggregate() {
        let s = ContainerStats {
            target: "gateway".into(),
            suite: "baseline".into(),
            container: "lab-gateway".into(),
            samples: vec![
                StatsSample {
                    t: 1.0,
                    cpu_percent: 50.0,
                    memory_bytes: 10,
                    throttled_periods: 0,
                    throttled_time_ns: 0,
                    cpu_total_ns: None,
                },
                StatsSample {
                    t: 2.0,
                    cpu_percent: 100.0,
                    memory_bytes: 30,
                    throttled_periods: 1,
                    throttled_time_ns: 5,
                    cpu_total_ns: None,
                },
            ],
        };
        assert_eq!(s.peak_memory_bytes(), 30);
        assert!((s.mean_cpu_percent() - 75.0).abs() < 1e-9);
    }
}
