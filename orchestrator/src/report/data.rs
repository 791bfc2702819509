//! Reading a run directory: the manifest, each target's raw suite results and container stats.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ReportError;
use crate::load::result::{PhaseResult, SuiteResult};
use crate::rundir::{repeat_file, ContainerStats, Manifest, RunDir, TargetOutcome};

/// Everything a run directory holds, as read from disk.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: RunDir,
    pub manifest: Manifest,
    /// One entry per target (manifest order) and suite (manifest order).
    pub entries: Vec<Entry>,
}

/// One target's measurements for one suite.
#[derive(Debug, Clone)]
pub struct Entry {
    pub target: String,
    pub suite: String,
    /// `None` when the raw file does not exist.
    pub result: Option<SuiteResult>,
    /// Path of the raw file, relative to the run directory (for messages).
    pub raw_file: String,
    pub stats: Option<ContainerStats>,
    /// Repeats 2, 3, … of a repeated suite, in order (repeat 1 is `result` and `stats`);
    /// a repeat without a raw file (not reached) is left out.
    pub repeats: Vec<Repeat>,
}

/// One later repeat of a suite against a target.
#[derive(Debug, Clone)]
pub struct Repeat {
    pub result: SuiteResult,
    pub stats: Option<ContainerStats>,
}

impl Entry {
    /// Reads one (target, suite) and its `repeats - 1` later repeats from `rd`: a missing
    /// raw or stats file is recorded as missing, a broken one is an error naming it.
    pub fn read(rd: &RunDir, target: &str, suite: &str, repeats: u32) -> Result<Self, ReportError> {
        let read = |n: u32| -> Result<(Option<SuiteResult>, Option<ContainerStats>), ReportError> {
            let raw = rd.raw_repeat(target, suite, n);
            let result = read_optional::<SuiteResult>(&raw)?;
            if let Some(r) = &result {
                if r.target != target || r.suite != suite {
                    return Err(ReportError::Invalid {
                        path: raw,
                        message: format!(
                            "holds target `{}` suite `{}`, expected target `{target}` suite `{suite}`",
                            r.target, r.suite
                        ),
                    });
                }
            }
            let stats = read_optional::<ContainerStats>(&rd.stats_repeat(target, suite, n))?;
            Ok((result, stats))
        };
        let (result, stats) = read(1)?;
        let mut later = Vec::new();
        for n in 2..=repeats {
            if let (Some(result), stats) = read(n)? {
                later.push(Repeat { result, stats });
            }
        }
        Ok(Entry {
            target: target.to_string(),
            suite: suite.to_string(),
            result,
            raw_file: format!(
                "{}/{}",
                crate::rundir::RAW_DIR,
                repeat_file(target, suite, 1)
            ),
            stats,
            repeats: later,
        })
    }

    /// How many repeats were measured (0 without a result).
    pub fn measured_repeats(&self) -> usize {
        usize::from(self.result.is_some()) + self.repeats.len()
    }
}

impl RunData {
    /// Reads `dir`: a missing or broken manifest, or a broken raw/stats file, is an error
    /// naming the file; a missing raw or stats file is recorded as missing.
    pub fn read(dir: &Path) -> Result<Self, ReportError> {
        let rd = RunDir {
            root: dir.to_path_buf(),
        };
        let manifest: Manifest = read_json(&rd.manifest())?;
        let mut entries = Vec::new();
        for t in &manifest.targets {
            for suite in &manifest.suites {
                entries.push(Entry::read(
                    &rd,
                    &t.name,
                    suite,
                    manifest.repeats_of(suite),
                )?);
            }
        }
        Ok(Self {
            dir: rd,
            manifest,
            entries,
        })
    }

    pub fn entry(&self, target: &str, suite: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.target == target && e.suite == suite)
    }

    pub fn outcome(&self, target: &str) -> Option<&TargetOutcome> {
        self.manifest
            .targets
            .iter()
            .find(|t| t.name == target)
            .map(|t| &t.outcome)
    }

    pub fn target_names(&self) -> Vec<String> {
        self.manifest
            .targets
            .iter()
            .map(|t| t.name.clone())
            .collect()
    }
}

/// Reads and parses a JSON file; errors name the file, the field path, line and column.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let bytes = std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(path, &bytes)
}

/// Parses JSON bytes read from `path`.
pub fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, ReportError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        ReportError::Parse {
            path: path.to_path_buf(),
            field,
            line: inner.line(),
            column: inner.column(),
            message: inner.to_string(),
        }
    })
}

fn read_optional<T: DeserializeOwned>(path: &PathBuf) -> Result<Option<T>, ReportError> {
    match std::fs::read(path) {
        Ok(bytes) => parse_json(path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportError::Read {
            path: path.clone(),
            source,
        }),
    }
}

/// The phase a suite's tables show: the only one; for `overhead` the phase sent to the
/// target; for `frontier` the step behind the highest sustained rate; for `faults` the first
/// fault-free lead-in (the faulted phases have their own table); otherwise the phase with
/// the most successful requests per second.
pub fn headline_phase(r: &SuiteResult) -> Option<&PhaseResult> {
    if r.phases.len() <= 1 {
        return r.phases.first();
    }
    if let Some(lead) = r.faults.as_ref().and_then(|f| f.phases.first()) {
        if let Some(p) = r.phases.iter().find(|p| p.name == lead.lead_in_phase) {
            return Some(p);
        }
    }
    if r.overhead.is_some() {
        if let Some(p) = r
            .phases
            .iter()
            .find(|p| p.name == "target" || p.url == r.url)
        {
            return Some(p);
        }
    }
    if let Some(frontier) = &r.frontier {
        let best = frontier
            .iter()
            .filter(|f| f.max_rate_per_s.is_some())
            .max_by(|a, b| {
                a.max_rate_per_s
                    .partial_cmp(&b.max_rate_per_s)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .and_then(|f| f.phase.as_deref());
        if let Some(p) = best.and_then(|name| r.phases.iter().find(|p| p.name == name)) {
            return Some(p);
        }
    }
    r.phases.iter().max_by(|a, b| {
        a.throughput
            .ok_per_s
            .partial_cmp(&b.throughput.ok_per_s)
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}
