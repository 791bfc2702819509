//! The suites file (`orchestrator/suites.yaml`): profiles, request defaults and suites.
//! Unknown keys are rejected and every error names the offending field.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::load::engine::Stage;
use crate::load::request::{Api, RequestSpec};
use crate::suites::thresholds::Threshold;

/// The suites file shipped with the orchestrator (used when no other file is given).
pub const BUILTIN_SUITES: &str = include_str!("../../suites.yaml");

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read suites file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("suites file {path}: at `{field}`: {why}")]
    Parse {
        path: String,
        field: String,
        why: String,
    },
    #[error("suites file {path}: suite `{suite}`: {why}")]
    Invalid {
        path: String,
        suite: String,
        why: String,
    },
    #[error("unknown suite `{name}` (known: {known})")]
    Unknown { name: String, known: String },
}

/// A duration written as `500ms`, `30s`, `1.5m`, `1h` or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml::Value::deserialize(d)?;
        let s = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a duration like 30s, got {other:?}"
                )))
            }
        };
        config_text::parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = BTreeMap::<String, serde_yaml::Value>::deserialize(d)?;
    m.into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(serde::de::Error::custom(format!(
                        "header `{k}` must be a string, number or boolean"
                    )))
                }
            };
            Ok((k, s))
        })
        .collect()
}

/// Scaling for a profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDef {
    /// Multiplies every phase and stage duration.
    pub scale: f64,
    /// Warm-up before each measured phase (not counted).
    pub warmup: Dur,
    /// Lower bound for a scaled non-zero duration.
    #[serde(default)]
    pub min_phase: Dur,
}

impl ProfileDef {
    pub fn scale(&self, d: Duration) -> Duration {
        if d.is_zero() {
            return d;
        }
        d.mul_f64(self.scale).max(self.min_phase.0)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profiles {
    pub full: ProfileDef,
    pub quick: ProfileDef,
}

/// Request fields; in `defaults.request` and per suite (the suite's win).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    pub api: Option<Api>,
    pub stream: Option<bool>,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub prompt: Option<String>,
    /// Replaces the prompt with generated text of about this many tokens (~4 characters
    /// a token, deterministic): gateways that parse the body pay per byte.
    pub prompt_tokens: Option<u32>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub headers: BTreeMap<String, String>,
    pub api_key: Option<String>,
    /// A full JSON body replacing the generated one.
    pub body: Option<serde_json::Value>,
}

impl RequestDef {
    fn apply(&self, spec: &mut RequestSpec) {
        if let Some(v) = self.api {
            spec.api = v;
        }
        if let Some(v) = self.stream {
            spec.stream = v;
        }
        if let Some(v) = &self.model {
            spec.model = v.clone();
        }
        if let Some(v) = self.max_tokens {
            spec.max_tokens = v;
        }
        if let Some(v) = &self.prompt {
            spec.prompt = v.clone();
        }
        if let Some(n) = self.prompt_tokens {
            spec.prompt = crate::load::request::generated_prompt(n);
        }
        for (k, v) in &self.headers {
            spec.headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
            spec.headers.push((k.clone(), v.clone()));
        }
        if let Some(v) = &self.api_key {
            spec.api_key = Some(v.clone());
        }
        if let Some(v) = &self.body {
            spec.body = Some(v.clone());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub request: RequestDef,
    /// Per-request timeout.
    pub timeout: Dur,
    /// Open model in-flight cap.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDef {
    pub duration: Dur,
    pub target: u64,
}

/// Closed model: `vus` + `duration`, `vus` + `iterations`, or `stages` (k6 semantics).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedDef {
    pub vus: Option<u64>,
    pub duration: Option<Dur>,
    pub iterations: Option<u64>,
    #[serde(default)]
    pub start_vus: u64,
    pub stages: Option<Vec<StageDef>>,
}

/// Open model: a constant arrival rate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenDef {
    pub rate: f64,
    pub duration: Dur,
    pub max_in_flight: Option<usize>,
}

/// Interleaved target / direct requests at concurrency 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverheadDef {
    pub duration: Dur,
}

/// Run-time faults of one mock instance (`PUT /__mock/faults`); unset keys stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSet {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_429: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u32>,
    /// `off`, `refuse` or `reset`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage: Option<String>,
}

impl FaultSet {
    pub fn is_empty(&self) -> bool {
        *self == FaultSet::default()
    }

    fn validate(&self) -> Result<(), String> {
        let rates = [
            ("error_rate", self.error_rate),
            ("rate_429", self.rate_429),
            ("hang_rate", self.hang_rate),
            ("reset_rate", self.reset_rate),
        ];
        for (k, v) in rates {
            if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return Err(format!("`{k}` must be within 0..1"));
            }
        }
        match self.outage.as_deref() {
            None | Some("off" | "refuse" | "reset") => Ok(()),
            Some(o) => Err(format!("`outage: {o}` is not off, refuse or reset")),
        }
    }
}

/// Thresholds of a fault phase, checked for targets that have a healthy second deployment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultThresholds {
    /// Client success rate during the fault, in percent, at least.
    pub min_success_percent: Option<f64>,
    /// Failed requests must all be answered with this class: `429` (no 5xx, no network error).
    pub errors_only_429: Option<bool>,
}

/// One phase of the `faults` suite: a fault-free lead-in, then `duration` of load with the
/// faults applied for the first `fault_for` (default: all of it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPhaseDef {
    pub name: String,
    pub description: String,
    pub duration: Dur,
    pub fault_for: Option<Dur>,
    /// Faults of deployment A (mock-upstream) and B (mock-upstream-b).
    #[serde(default)]
    pub a: FaultSet,
    #[serde(default)]
    pub b: FaultSet,
    /// Request overrides for this phase (e.g. `stream: true`).
    #[serde(default)]
    pub request: RequestDef,
    #[serde(default)]
    pub thresholds: FaultThresholds,
}

/// Clients that disconnect after the first token: does the target cancel upstream?
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelDef {
    /// Streams opened at once, each dropped after its first content token.
    pub streams: u32,
    /// Wait after the last disconnect before reading the upstreams' open streams.
    pub settle: Dur,
    /// Request overrides (long streams: `x-mock-output-tokens`, `x-mock-token-delay-ms`).
    #[serde(default)]
    pub request: RequestDef,
}

/// Faults injected into the upstream deployments while an open-model load runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsDef {
    /// Arrival rate per core of the target's cpuset (the same for every target).
    pub rate_per_core: f64,
    /// Fault-free load before each phase, the reference for its latency.
    pub lead_in: Dur,
    /// Interval of the mocks' `/__mock/stats` polling (per-deployment requests/s).
    pub poll: Dur,
    /// Requests sent one by one in the middle of each fault window to see the answers'
    /// statuses, `retry-after` headers and stream endings.
    pub probes: u32,
    /// The quick profile's scale for this suite: its phases cannot shrink below breaker
    /// cooldowns and `retry-after`, so it does not use the profile's scale.
    pub quick_scale: f64,
    pub phases: Vec<FaultPhaseDef>,
    pub cancel: Option<CancelDef>,
}

/// A fault phase with its request resolved (suite request + phase overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPhase {
    pub def: FaultPhaseDef,
    pub request: RequestSpec,
}

/// The `faults` suite, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub def: FaultsDef,
    pub phases: Vec<FaultPhase>,
    pub cancel_request: Option<RequestSpec>,
}

impl Faults {
    /// Duration scale under a profile.
    pub fn scale(&self, profile: Profile) -> f64 {
        match profile {
            Profile::Full => 1.0,
            Profile::Quick => self.def.quick_scale,
        }
    }

    /// Scheduled time of the suite (lead-ins, phases, the cancel check).
    pub fn estimated_duration(&self, profile: Profile) -> Duration {
        let k = self.scale(profile);
        let phases: Duration = self
            .def
            .phases
            .iter()
            .map(|p| (self.def.lead_in.0 + p.duration.0).mul_f64(k))
            .sum();
        let cancel = self
            .def
            .cancel
            .as_ref()
            .map_or(Duration::ZERO, |c| c.settle.0 + Duration::from_secs(1));
        phases + cancel
    }

    fn validate(&self) -> Result<(), String> {
        let d = &self.def;
        if !(d.rate_per_core > 0.0 && d.rate_per_core.is_finite()) {
            return Err("`faults.rate_per_core` must be positive".into());
        }
        if !(d.quick_scale > 0.0 && d.quick_scale <= 1.0) {
            return Err("`faults.quick_scale` must be within (0, 1]".into());
        }
        if d.poll.0.is_zero() || d.phases.is_empty() {
            return Err("`faults.poll` must be positive and `faults.phases` non-empty".into());
        }
        for p in &d.phases {
            let at = |why: String| format!("phase `{}`: {why}", p.name);
            p.a.validate().map_err(at)?;
            p.b.validate().map_err(at)?;
            if p.fault_for.is_some_and(|f| f.0 > p.duration.0) {
                return Err(at("`fault_for` is longer than `duration`".into()));
            }
            if d.phases.iter().filter(|q| q.name == p.name).count() > 1 {
                return Err(at("defined twice".into()));
            }
        }
        Ok(())
    }
}

/// A search on the open-model rate: coarse rungs over `rates`, then bisection between the
/// last rate meeting each p99 bound and the first missing it (see `suites::frontier`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontierDef {
    /// The coarse ladder: arrival rates to try, ascending.
    pub rates: Vec<f64>,
    /// Shortest rung (scaled by the profile).
    pub step: Dur,
    pub bounds_ms: Vec<f64>,
    /// A rung meets a bound only with errors under this share (percent).
    pub max_error_percent: f64,
    /// Stop the ladder once errors exceed this share (percent), p99 exceeds the largest
    /// bound or the rung saturates.
    pub stop_error_percent: f64,
    pub max_in_flight: Option<usize>,
    /// Samples a rung's p99 should rest on: a rung lasts `min_samples / rate` when that is
    /// longer than `step`.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// Longest rung (scaled by the profile, never under `step`): bounds the rule above at
    /// low rates; a rung it cuts short is marked under-sampled.
    #[serde(default = "default_max_rung")]
    pub max_rung: Dur,
    /// Bisection stops when the first failing rate is within this share (percent) above
    /// the last passing one.
    #[serde(default = "default_resolution")]
    pub resolution_percent: f64,
    /// Bisection rungs at most (all bounds together), full and quick profile: bounds the
    /// suite's length whatever the target does.
    #[serde(default = "default_bisections")]
    pub max_bisections: u32,
    #[serde(default = "default_quick_bisections")]
    pub quick_max_bisections: u32,
}

fn default_min_samples() -> u64 {
    1000
}
fn default_max_rung() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_resolution() -> f64 {
    10.0
}
fn default_bisections() -> u32 {
    6
}
fn default_quick_bisections() -> u32 {
    3
}

impl FrontierDef {
    /// A rung at `rate` under a profile: the scaled step, or long enough for `min_samples`
    /// answers when that is longer, up to the scaled `max_rung`.
    pub fn rung_duration(&self, p: &ProfileDef, rate: f64) -> Duration {
        let step = p.scale(self.step.0);
        let cap = p.scale(self.max_rung.0).max(step);
        // Whole milliseconds, rounded up: `min_samples` due requests fit in.
        let need_ms = (self.min_samples as f64 * 1000.0 / rate.max(1e-9)).ceil();
        let need = Duration::from_millis(need_ms.min(u64::MAX as f64) as u64);
        need.max(step).min(cap)
    }

    pub fn max_bisections(&self, profile: Profile) -> u32 {
        match profile {
            Profile::Full => self.max_bisections,
            Profile::Quick => self.quick_max_bisections,
        }
    }

    /// Every coarse rung (the ladder may stop earlier) and every bisection rung allowed,
    /// each of those as long as the ladder's mean rung (its rate is not known beforehand),
    /// with warm-ups before the first rung and before each bisection rung.
    pub fn estimated_duration(&self, profile: Profile, p: &ProfileDef, warm: Duration) -> Duration {
        let coarse: Duration = self.rates.iter().map(|&r| self.rung_duration(p, r)).sum();
        let mean = coarse / self.rates.len().max(1) as u32;
        warm + coarse + (warm + mean) * self.max_bisections(profile)
    }

    fn validate(&self) -> Result<(), String> {
        if self.rates.is_empty() || self.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
            return Err("`frontier.rates` must be non-empty and positive".into());
        }
        if self.rates.windows(2).any(|w| w[0] >= w[1]) {
            return Err("`frontier.rates` must ascend".into());
        }
        if self.bounds_ms.is_empty() {
            return Err("`frontier.bounds_ms` is empty".into());
        }
        if !(self.resolution_percent > 0.0 && self.resolution_percent.is_finite()) {
            return Err("`frontier.resolution_percent` must be positive".into());
        }
        if self.min_samples == 0 {
            return Err("`frontier.min_samples` must be at least 1".into());
        }
        Ok(())
    }
}

/// Open model at stepped rates: one measured phase per rate, each after its own warm-up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteppedOpenDef {
    pub rates: Vec<f64>,
    /// Length of each step.
    pub step: Dur,
    pub max_in_flight: Option<usize>,
    /// Skip the higher rates once a step's errors and drops exceed this share of its
    /// scheduled requests (percent): a saturated target would only wait out timeouts.
    pub stop_error_percent: Option<f64>,
}

/// One entry of a `phases:` suite: its own request overrides and load, either closed
/// (held levels as `stages`, reported per stage) or open at stepped rates (a measured
/// phase per rate, named `<name>-<rate>rps`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseDef {
    pub name: String,
    #[serde(default)]
    pub request: RequestDef,
    pub closed: Option<ClosedDef>,
    pub open: Option<SteppedOpenDef>,
}

/// A `phases:` entry with its request resolved (suite request + phase overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub def: PhaseDef,
    pub request: RequestSpec,
}

impl Phase {
    /// Scheduled time under profile `p`, with `warm` before each measured phase.
    fn estimated_duration(&self, p: &ProfileDef, warm: Duration) -> Duration {
        match (&self.def.closed, &self.def.open) {
            (Some(c), _) => warm + closed_duration(c, p),
            (None, Some(o)) => (warm + p.scale(o.step.0)) * o.rates.len() as u32,
            (None, None) => Duration::ZERO,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let at = |why: String| format!("phase `{}`: {why}", self.def.name);
        match (&self.def.closed, &self.def.open) {
            (Some(c), None) => validate_closed(c).map_err(at),
            (None, Some(o)) => {
                if o.rates.is_empty() || o.rates.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
                    return Err(at("`open.rates` must be non-empty and positive".into()));
                }
                Ok(())
            }
            _ => Err(at("needs exactly one of `closed`, `open`".into())),
        }
    }
}

/// Checks a closed-model definition (`vus` with `duration` or `iterations`, or `stages`).
fn validate_closed(c: &ClosedDef) -> Result<(), String> {
    let has_stages = c.stages.as_ref().is_some_and(|v| !v.is_empty());
    if c.stages.is_some() && !has_stages {
        return Err("`closed.stages` is empty".into());
    }
    if has_stages && (c.vus.is_some() || c.duration.is_some()) {
        return Err("`closed.stages` excludes `closed.vus` and `closed.duration`".into());
    }
    if !has_stages {
        if c.vus.unwrap_or(0) == 0 {
            return Err("`closed.vus` must be at least 1".into());
        }
        if c.duration.is_none() && c.iterations.is_none() {
            return Err("`closed` needs `duration`, `iterations` or `stages`".into());
        }
    }
    Ok(())
}

/// Measured time of a closed definition (iteration-limited phases count nothing).
fn closed_duration(c: &ClosedDef, p: &ProfileDef) -> Duration {
    if c.iterations.is_some() && c.duration.is_none() && c.stages.is_none() {
        return Duration::ZERO;
    }
    let (_, stages, _) = c.shape(p);
    stages.iter().map(|s| s.duration).sum()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteRaw {
    name: String,
    description: String,
    #[serde(default)]
    request: RequestDef,
    timeout: Option<Dur>,
    /// Set false to skip warm-ups for this suite.
    #[serde(default = "yes")]
    warmup: bool,
    closed: Option<ClosedDef>,
    open: Option<OpenDef>,
    overhead: Option<OverheadDef>,
    frontier: Option<FrontierDef>,
    faults: Option<FaultsDef>,
    /// Several phases, each with its own request and load (see [`PhaseDef`]).
    phases: Option<Vec<PhaseDef>>,
    /// Pass/fail expressions on the suite's figures (`p99 < 5ms`), see [`Threshold`].
    #[serde(default)]
    thresholds: Vec<String>,
    /// Times the lab runs the suite per target (rounds interleaved across targets).
    repeats: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    profiles: Profiles,
    defaults: Defaults,
    suites: Vec<SuiteRaw>,
}

/// What a suite does.
#[derive(Debug, Clone, PartialEq)]
pub enum SuiteKind {
    Closed(ClosedDef),
    Open(OpenDef),
    Overhead(OverheadDef),
    Frontier(FrontierDef),
    Faults(Box<Faults>),
    Phases(Vec<Phase>),
}

/// One suite, self-contained (defaults and profiles resolved in).
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteDef {
    pub name: String,
    pub description: String,
    pub request: RequestSpec,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub warmup: bool,
    pub kind: SuiteKind,
    pub profiles: Profiles,
    /// Judged per target after the suite ran.
    pub thresholds: Vec<Threshold>,
    /// Times `orchestrator run` measures the suite per target, in rounds that interleave
    /// the targets (A B C A B C); its figures are then medians with an interval over the
    /// repeats. `--repeat` overrides it.
    pub repeats: u32,
}

/// Rounds a run of `suites` takes: the most repeats of any of them (each round runs the
/// suites repeated at least that often, against every target in turn).
pub fn rounds(suites: &[SuiteDef]) -> u32 {
    suites.iter().map(|s| s.repeats).max().unwrap_or(1)
}

/// Most repeats a suite may ask for: beyond it a typo (`repeats: 30`) would silently
/// multiply the run's length.
pub const MAX_REPEATS: u32 = 10;

/// Suite profile: `full`, or `quick` (under a tenth of the time, for CI and first tries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    Full,
    #[default]
    Quick,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Full => "full",
            Profile::Quick => "quick",
        }
    }
}

impl Profiles {
    pub fn get(&self, p: Profile) -> &ProfileDef {
        match p {
            Profile::Full => &self.full,
            Profile::Quick => &self.quick,
        }
    }
}

impl ClosedDef {
    /// Stages (scaled), start VUs and iteration limit.
    pub fn shape(&self, p: &ProfileDef) -> (u64, Vec<Stage>, Option<u64>) {
        if let Some(stages) = &self.stages {
            let st = stages
                .iter()
                .map(|s| Stage {
                    duration: p.scale(s.duration.0),
                    target: s.target,
                })
                .collect();
            return (self.start_vus, st, self.iterations);
        }
        let vus = self.vus.unwrap_or(1);
        // Iteration-limited phases without a duration get a generous cap.
        let d = self
            .duration
            .map_or(Duration::from_secs(3600), |d| p.scale(d.0));
        (
            vus,
            vec![Stage {
                duration: d,
                target: vus,
            }],
            self.iterations,
        )
    }
}

impl SuiteDef {
    /// Scheduled time of the suite under a profile, warm-ups included (iteration-limited
    /// phases count only their warm-up; frontier counts every rung it may run).
    pub fn estimated_duration(&self, profile: Profile) -> Duration {
        let p = self.profiles.get(profile);
        let warm = if self.warmup {
            p.warmup.0
        } else {
            Duration::ZERO
        };
        match &self.kind {
            SuiteKind::Closed(c) => warm + closed_duration(c, p),
            SuiteKind::Open(o) => warm + p.scale(o.duration.0),
            SuiteKind::Overhead(o) => warm + p.scale(o.duration.0),
            SuiteKind::Frontier(f) => f.estimated_duration(profile, p, warm),
            SuiteKind::Faults(f) => warm + f.estimated_duration(profile),
            SuiteKind::Phases(ph) => ph.iter().map(|x| x.estimated_duration(p, warm)).sum(),
        }
    }

    /// Whether some of the suite's requests are streams (its own, or a phase's).
    pub fn streams(&self) -> bool {
        match &self.kind {
            SuiteKind::Phases(ph) => ph.iter().any(|x| x.request.stream),
            _ => self.request.stream,
        }
    }
}

/// Resolves each phase's request (the suite's, then the phase's overrides).
fn resolve_faults(def: FaultsDef, suite_request: &RequestSpec) -> Faults {
    let with = |r: &RequestDef| {
        let mut spec = suite_request.clone();
        r.apply(&mut spec);
        spec
    };
    Faults {
        phases: def
            .phases
            .iter()
            .map(|p| FaultPhase {
                def: p.clone(),
                request: with(&p.request),
            })
            .collect(),
        cancel_request: def.cancel.as_ref().map(|c| with(&c.request)),
        def,
    }
}

/// Resolves each phase's request (the suite's, then the phase's overrides).
fn resolve_phases(phases: Vec<Phase>, suite_request: &RequestSpec) -> Vec<Phase> {
    phases
        .into_iter()
        .map(|p| {
            let mut request = suite_request.clone();
            p.def.request.apply(&mut request);
            Phase { request, ..p }
        })
        .collect()
}

/// A parsed, validated suites file.
#[derive(Debug, Clone, PartialEq)]
pub struct SuitesFile {
    pub path: String,
    pub suites: Vec<SuiteDef>,
}

impl SuitesFile {
    pub fn load(path: &Path) -> Result<Self, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The file compiled into the binary.
    pub fn builtin() -> Result<Self, SuiteError> {
        Self::parse(BUILTIN_SUITES, "orchestrator/suites.yaml (built in)")
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, SuiteError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: FileRaw = serde_path_to_error::deserialize(de).map_err(|e| SuiteError::Parse {
            path: path.to_string(),
            field: e.path().to_string(),
            why: e.inner().to_string(),
        })?;
        let invalid = |suite: &str, why: String| SuiteError::Invalid {
            path: path.to_string(),
            suite: suite.to_string(),
            why,
        };
        for (name, p) in [("full", &raw.profiles.full), ("quick", &raw.profiles.quick)] {
            if !(p.scale > 0.0 && p.scale.is_finite()) {
                return Err(invalid(
                    &format!("profiles.{name}"),
                    "scale must be positive".into(),
                ));
            }
        }
        let mut suites = Vec::new();
        for s in raw.suites {
            let kinds = [
                s.closed.clone().map(SuiteKind::Closed),
                s.open.clone().map(SuiteKind::Open),
                s.overhead.clone().map(SuiteKind::Overhead),
                s.frontier.clone().map(SuiteKind::Frontier),
                s.faults.clone().map(|def| {
                    SuiteKind::Faults(Box::new(Faults {
                        def,
                        phases: Vec::new(),
                        cancel_request: None,
                    }))
                }),
                s.phases.clone().map(|defs| {
                    SuiteKind::Phases(
                        defs.into_iter()
                            .map(|def| Phase {
                                def,
                                request: RequestSpec::default(),
                            })
                            .collect(),
                    )
                }),
            ];
            let mut set = kinds.into_iter().flatten();
            let kind = set.next().ok_or_else(|| {
                invalid(
                    &s.name,
                    "needs one of `closed`, `open`, `overhead`, `frontier`, `faults`, `phases`"
                        .into(),
                )
            })?;
            if set.next().is_some() {
                return Err(invalid(
                    &s.name,
                    "only one of `closed`, `open`, `overhead`, `frontier`, `faults`, `phases` may be set"
                        .into(),
                ));
            }
            match &kind {
                SuiteKind::Closed(c) => validate_closed(c).map_err(|why| invalid(&s.name, why))?,
                SuiteKind::Open(o) => {
                    if !(o.rate > 0.0 && o.rate.is_finite()) {
                        return Err(invalid(&s.name, "`open.rate` must be positive".into()));
                    }
                }
                SuiteKind::Overhead(_) | SuiteKind::Faults(_) | SuiteKind::Phases(_) => {}
                SuiteKind::Frontier(f) => f.validate().map_err(|why| invalid(&s.name, why))?,
            }
            if suites.iter().any(|d: &SuiteDef| d.name == s.name) {
                return Err(invalid(&s.name, "defined twice".into()));
            }
            let mut request = RequestSpec::default();
            raw.defaults.request.apply(&mut request);
            s.request.apply(&mut request);
            let kind = match kind {
                SuiteKind::Faults(f) => {
                    let f = resolve_faults(f.def, &request);
                    f.validate().map_err(|why| invalid(&s.name, why))?;
                    SuiteKind::Faults(Box::new(f))
                }
                SuiteKind::Phases(ph) => {
                    let ph = resolve_phases(ph, &request);
                    if ph.is_empty() {
                        return Err(invalid(&s.name, "`phases` is empty".into()));
                    }
                    for (i, p) in ph.iter().enumerate() {
                        p.validate().map_err(|why| invalid(&s.name, why))?;
                        if ph[..i].iter().any(|q| q.def.name == p.def.name) {
                            let why = format!("phase `{}` is defined twice", p.def.name);
                            return Err(invalid(&s.name, why));
                        }
                    }
                    SuiteKind::Phases(ph)
                }
                k => k,
            };
            let mut def = SuiteDef {
                name: s.name,
                description: s.description,
                request,
                timeout: s.timeout.unwrap_or(raw.defaults.timeout).0,
                max_in_flight: raw.defaults.max_in_flight,
                warmup: s.warmup,
                kind,
                profiles: raw.profiles.clone(),
                thresholds: Vec::new(),
                repeats: s.repeats.unwrap_or(1),
            };
            if !(1..=MAX_REPEATS).contains(&def.repeats) {
                return Err(invalid(
                    &def.name,
                    format!("`repeats` must be within 1..={MAX_REPEATS}"),
                ));
            }
            def.thresholds = s
                .thresholds
                .iter()
                .map(|e| {
                    super::thresholds::parse(e, &def)
                        .map_err(|why| invalid(&def.name, format!("threshold `{e}`: {why}")))
                })
                .collect::<Result<_, _>>()?;
            suites.push(def);
        }
        Ok(Self {
            path: path.to_string(),
            suites,
        })
    }

    /// The suite named `name`.
    pub fn suite(&self, name: &str) -> Result<SuiteDef, SuiteError> {
        self.suites
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| SuiteError::Unknown {
                name: name.to_string(),
                known: self
                    .suites
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// `all`, one name, or a comma-separated list.
    pub fn select(&self, which: &str) -> Result<Vec<SuiteDef>, SuiteError> {
        if which == "all" {
            return Ok(self.suites.clone());
        }
        which.split(',').map(|n| self.suite(n.trim())).collect()
    }
}
