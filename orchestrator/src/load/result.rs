//! The load generator's result: one JSON document per (target, suite), written to
//! `raw/<target>-<suite>.json`. The JSON Schema for it is `orchestrator/schema/suite-result.schema.json`;
//! keep both in step (a unit test checks every `required` key of the schema is produced).
//!
//! Units are in the field names: `_ms` milliseconds (f64), `_us` microseconds, `_s` seconds,
//! `_per_s` per second. Latencies are measured by the generator on the client side.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of this document's shape; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything measured for one suite against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteResult {
    pub schema_version: u32,
    /// Suite name (`baseline`, `throughput`, ...), or `adhoc` for `orchestrator load`.
    pub suite: String,
    /// Target name (`direct`, `gateway`, `litellm`, or what the user called it).
    pub target: String,
    /// URL the requests were sent to.
    pub url: String,
    /// Suite profile (`full` or `quick`).
    pub profile: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// True when the run was cancelled before it finished: what was measured is kept.
    pub interrupted: bool,
    /// Measured phases in the order they ran (warm-ups are not included).
    pub phases: Vec<PhaseResult>,
    /// `frontier` suite only: the highest arrival rate sustained under each p99 bound.
    pub frontier: Option<Vec<FrontierPoint>>,
    /// `frontier` suite only: the search behind it, every rung in the order run. Absent in
    /// results written before the search existed (fixed steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier_search: Option<FrontierSearch>,
    /// `overhead` suite only: latency the target adds over calling the upstream directly.
    pub overhead: Option<Overhead>,
    /// `faults` suite only: per fault phase, what the client saw and what reached each
    /// upstream deployment. Absent in results written before the suite existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsResult>,
    /// The suite's `thresholds:` judged against this target's figures (`name` is the
    /// figure); absent when nothing was judged (`orchestrator load`, older results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<ThresholdCheck>>,
    pub warnings: Vec<ResultWarning>,
}

/// One measured phase: a closed-model run (virtual users) or an open-model run (arrival rate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseResult {
    pub name: String,
    pub model: LoadModel,
    /// URL this phase's requests went to (the overhead suite has two phases, two URLs).
    pub url: String,
    /// Wall-clock length of the measured phase, from its start to its last answer.
    pub duration_s: f64,
    /// When the measured phase started, seconds after its suite started (the clock of
    /// the container stats' `t`); absent outside suites and in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_s: Option<f64>,
    /// Closed phases with several stages (a ramp): the figures of each stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageResult>,
    /// Closed model: the largest number of virtual users reached.
    pub vus: Option<u64>,
    /// Open model: the scheduled arrival rate.
    pub target_rate_per_s: Option<f64>,
    pub stream: bool,
    pub requests: RequestCounts,
    pub throughput: Throughput,
    /// Whole request, from the start (closed) or the due time (open) to the last body byte.
    /// Only successful requests.
    pub latency_ms: Summary,
    /// Time to the first response byte. Only successful requests.
    pub ttfb_ms: Summary,
    /// Streams only: time to the first chunk carrying non-empty content.
    pub ttft_ms: Option<Summary>,
    /// Streams only: every gap between consecutive content chunks.
    pub itl_ms: Option<Summary>,
    /// Streams only: (latency - ttft) / (output tokens - 1), per request with >= 2 tokens.
    pub tpot_ms: Option<Summary>,
    /// Output tokens over successful requests (from `usage` when present, else counted chunks).
    pub output_tokens: u64,
    pub generator: GeneratorCost,
    /// Latency (successful requests) at increasing percentiles, for charts.
    pub percentile_curve: Vec<CurvePoint>,
    /// One point per second of the phase.
    pub timeseries: Vec<TimePoint>,
    /// Open model: latency of successful requests by due time, the schedule cut into four
    /// equal parts (a queue building up shows as latency rising from part to part); absent
    /// for closed phases and in older results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_by_due_ms: Vec<Summary>,
    /// The phase's HDR histograms, so results of several generators merge exactly
    /// ([`crate::load::merge`]); absent in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<PhaseHistograms>,
    /// A phase merged from several generators ([`crate::load::merge`]): each one's share,
    /// so a generator that failed, lagged or hit its own limit is named; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<GeneratorPart>,
    /// The CPU of the machine the orchestrator ran on over the phase ([`super::host`]):
    /// how busy its cores were and how much the hypervisor took (steal); absent off Linux
    /// and in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu: Option<super::host::HostCpu>,
}

/// One generator's part of a merged phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorPart {
    /// Which generator: the name it was given (its engine, or its result file).
    pub name: String,
    pub requests: u64,
    pub ok: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub generator: GeneratorCost,
    /// It stopped before its phase's end (interrupted or failed).
    pub interrupted: bool,
}

/// HDR histograms of a phase in microseconds, each serialized as HdrHistogram's V2 format
/// with deflate, base64-encoded (what HdrHistogram's own tools read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseHistograms {
    pub latency_us: String,
    pub ttfb_us: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_us: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_us: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_us: Option<String>,
    /// Open model: the latency histogram of each part of `latency_by_due_ms`, in order
    /// (the frontier's saturation check reads them, merged phases included); absent for
    /// closed phases and in older results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_by_due_us: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    /// Virtual users: each sends, waits for the whole answer, sends again.
    Closed,
    /// Arrival rate: requests are due on a schedule whatever the answers do.
    Open,
}

/// Requests by outcome. `total = ok + errors.total()`; `dropped` (open model) is not in
/// `total`: those requests were never sent because the in-flight cap was reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCounts {
    pub total: u64,
    pub ok: u64,
    pub errors: ErrorCounts,
    pub dropped: u64,
    /// Connections the generator itself could not open (out of file descriptors or
    /// local ports): not sent, so neither in `total` nor in `errors`, and never charged
    /// to the target. Absent when 0 (and in results written before it was counted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rig_refused: u64,
    /// Errors over requests sent, in percent.
    pub error_percent: f64,
}

/// Failed requests by class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorCounts {
    /// TCP connect failed (refused, unreachable, connect timeout).
    pub connect: u64,
    /// No complete answer within the request timeout.
    pub timeout: u64,
    /// HTTP 429.
    pub http_429: u64,
    /// Other HTTP 4xx.
    pub http_4xx: u64,
    /// HTTP 5xx.
    pub http_5xx: u64,
    /// 2xx with a body that is not the expected JSON (or SSE events that are not), or an
    /// unexpected 1xx/3xx status.
    pub malformed: u64,
    /// A 2xx stream that ended before its end marker (`[DONE]` / `message_stop`).
    pub stream_cut: u64,
    /// The connection closed or was reset before a complete non-streaming answer,
    /// or the response was not valid HTTP/1.1.
    pub connection: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect
            + self.timeout
            + self.http_429
            + self.http_4xx
            + self.http_5xx
            + self.malformed
            + self.stream_cut
            + self.connection
    }

    pub fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.http_429 += o.http_429;
        self.http_4xx += o.http_4xx;
        self.http_5xx += o.http_5xx;
        self.malformed += o.malformed;
        self.stream_cut += o.stream_cut;
        self.connection += o.connection;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throughput {
    /// Requests answered (ok or error) per second of the phase.
    pub requests_per_s: f64,
    /// Successful requests per second.
    pub ok_per_s: f64,
    pub output_tokens_per_s: f64,
}

/// Distribution summary from an HDR histogram (µs resolution, 3 significant figures).
/// All zero when `count` is 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub stddev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// The generator's own CPU use during the phase (its worker threads only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorCost {
    pub cpu_seconds: f64,
    /// CPU time over wall time, in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    /// Worker threads the generator ran.
    pub threads: u64,
    /// Cores the process may run on (sched_getaffinity).
    pub cores: u64,
    /// True when the generator's cores were saturated (>= 90%) while the target rate was
    /// not reached (open model) or at all (closed model): the figures show the
    /// generator's limit, not the target's. A `load_generator_bound` warning accompanies it.
    pub bound: bool,
    /// Started at a shared start time (`orchestrator load --start-at`): how late the phase
    /// began against it, ms (the wake-up's own lag; clock offsets between hosts are apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_lag_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

/// One second of a phase. Counts are of requests that completed in that second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimePoint {
    /// Seconds since the phase started (end of the interval).
    pub t_s: f64,
    /// Closed model: virtual users running at the end of the interval; open model:
    /// requests in flight at that moment.
    pub active_vus: u64,
    /// Open model: scheduled arrival rate during the interval (0 for closed).
    pub target_rate_per_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Streams only (0 otherwise).
    pub ttft_p50_ms: f64,
    pub output_tokens: u64,
}

/// Highest rate sustained under one p99 bound (frontier suite).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontierPoint {
    pub p99_bound_ms: f64,
    /// None when even the lowest step missed the bound.
    pub max_rate_per_s: Option<f64>,
    /// Achieved request rate at that step.
    pub achieved_rate_per_s: Option<f64>,
    /// Measured p99 at that step.
    pub p99_ms: Option<f64>,
    /// Name of the phase (step) it came from.
    pub phase: Option<String>,
    /// Successful requests of that rung: what its p99 rests on. Absent in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// That rung's p99 rests on fewer samples than the search asks (`min_samples`, 1,000):
    /// near the maximum of a handful, a rough figure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub under_sampled: bool,
    /// The lowest rate that missed the bound: the frontier lies between `max_rate_per_s`
    /// and it. Absent when every rung met the bound (the ladder's top) or in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_rate_per_s: Option<f64>,
    /// Why that rung missed the bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_because: Vec<RungFail>,
}

/// The frontier search: coarse rungs over the configured ladder, then bisection between
/// the last rate meeting a bound and the first missing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontierSearch {
    /// Samples a rung's p99 should rest on; rungs with fewer are `under_sampled`.
    pub min_samples: u64,
    /// Bisection stops when the first failing rate is within this share (percent) above
    /// the last passing one.
    pub resolution_percent: f64,
    /// Bisection rungs allowed; a bracket still wider than the resolution when they ran out
    /// is left as it is (`failed_rate_per_s` shows how wide).
    pub max_bisections: u64,
    pub rungs: Vec<FrontierRung>,
}

/// One rung of the frontier search: an open-model phase at one rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontierRung {
    /// The `PhaseResult` it measured (`rate-2000`).
    pub phase: String,
    /// `coarse` (the configured ladder) or `bisect`.
    pub search: RungSearch,
    pub rate_per_s: f64,
    /// Scheduled length: long enough for `min_samples` at this rate, within the cap.
    pub duration_s: f64,
    /// Successful requests: what its p99 rests on.
    pub samples: u64,
    pub under_sampled: bool,
    /// None without a successful request.
    pub p99_ms: Option<f64>,
    /// Median latency of the requests due in the first and in the last quarter of the
    /// rung (the saturation check); None when a quarter had too few answers to judge.
    pub first_quarter_p50_ms: Option<f64>,
    pub last_quarter_p50_ms: Option<f64>,
    /// What fails the rung for every bound (p99 is judged per bound: `met_bounds_ms`).
    pub fails: Vec<RungFail>,
    /// The p99 bounds it met.
    pub met_bounds_ms: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RungSearch {
    Coarse,
    Bisect,
}

/// Why a rung missed a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RungFail {
    /// p99 above the bound.
    P99,
    /// Errors at or over `max_error_percent`.
    Errors,
    /// Requests dropped at the in-flight cap.
    Dropped,
    /// The load generator could not keep the schedule: its limit, not the target's.
    GeneratorBound,
    /// Latency rose over the rung: the target queues and would miss any bound given time.
    Saturated,
    /// Not one successful request.
    NoAnswers,
}

impl RungFail {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            RungFail::P99 => "p99",
            RungFail::Errors => "errors",
            RungFail::Dropped => "dropped",
            RungFail::GeneratorBound => "generator bound",
            RungFail::Saturated => "saturated",
            RungFail::NoAnswers => "no answers",
        }
    }
}

/// Latency added by the target over the upstream called directly, measured interleaved
/// at concurrency 1 (overhead suite). `added_*` are differences of percentiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overhead {
    pub direct_url: String,
    pub target_p50_us: f64,
    pub target_p99_us: f64,
    pub direct_p50_us: f64,
    pub direct_p99_us: f64,
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    pub samples: u64,
    /// The added latency as paired differences (target − direct in the same round),
    /// with intervals; absent in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<Paired>,
}

/// One stage of a ramp: its one-second intervals merged (an interval counts for the stage
/// running at its middle), so the latency is exact over those seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageResult {
    /// 0-based index in the phase's stages.
    pub stage: u64,
    /// The VUs the stage ramps to (k6 `target`).
    pub target_vus: u64,
    /// Most VUs running at the end of one of its seconds.
    pub peak_active_vus: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    /// Successful requests only.
    pub latency_ms: Summary,
    /// Seconds into the phase at which the stage was scheduled to start (the window of
    /// its container stats); absent in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_s: Option<f64>,
    /// Streams only: time to first token and inter-token gaps of the stage's seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<Summary>,
    /// Connections the generator could not open itself (see `RequestCounts::rig_refused`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rig_refused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Paired differences of the overhead suite: quantiles of (target − direct) over rounds,
/// with moving-block bootstrap intervals, against the instrument's own (control − direct).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paired {
    /// Rounds where the target and direct requests both answered.
    pub pairs: u64,
    /// Bootstrap block length (rounds) and resamples.
    pub block: u64,
    pub replicates: u64,
    pub p50: PairedFigure,
    pub p99: PairedFigure,
    /// What the target says it added (its own overhead header), beside the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<Claimed>,
}

/// A target's self-reported overhead over the same requests (`x-gateway-overhead-us`,
/// LiteLLM's `x-litellm-overhead-duration-ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claimed {
    /// Answers that carried the header.
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One quantile of the paired differences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairedFigure {
    /// The quantile of target − direct, µs.
    pub added_us: f64,
    /// Its 95 % bootstrap interval, µs.
    pub ci_us: [f64; 2],
    /// The same quantile of control − direct (the upstream against itself), µs.
    pub control_us: f64,
    pub control_ci_us: [f64; 2],
    /// The largest magnitude in the control's interval: differences up to it are the
    /// instrument's own.
    pub resolution_us: f64,
    /// The added figure's interval reaches down to the resolution: not distinguishable
    /// from no added latency.
    pub below_resolution: bool,
}

/// The `faults` suite: faults injected into the upstream deployments (mock A, mock B)
/// while an open-model load runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsResult {
    /// Arrival rate of every phase (rate per core x the target's cores).
    pub rate_per_s: f64,
    /// Deployment names, in the order of every per-deployment array (`a`, `b`).
    pub deployments: Vec<String>,
    /// Interval of the mocks' stats polling.
    pub poll_s: f64,
    /// False when the target has no second deployment (`direct`): thresholds do not apply.
    pub redundant: bool,
    pub phases: Vec<FaultPhaseResult>,
    pub cancel: Option<CancelResult>,
}

/// One fault phase. Its load figures are the `PhaseResult`s named `lead_in_phase` and `phase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPhaseResult {
    pub name: String,
    pub description: String,
    /// The fault-free lead-in's `PhaseResult` name (the latency reference).
    pub lead_in_phase: String,
    /// The faulted `PhaseResult`'s name.
    pub phase: String,
    /// The faults set on each deployment (`PUT /__mock/faults` bodies; `{}` = none).
    pub faults: Vec<serde_json::Value>,
    /// Seconds from the phase's start during which the faults held.
    pub fault_for_s: f64,
    /// Upstream completions per deployment during the phase (stats differences).
    pub upstream_calls: Vec<u64>,
    /// Client requests sent during the phase (load and probes).
    pub client_requests: u64,
    /// Upstream calls per client request: retry amplification (1 = none).
    pub upstream_calls_per_request: Option<f64>,
    /// Completions per second of each deployment, from the stats polling.
    pub series: Vec<DeploymentPoint>,
    /// Faults that end before the phase does (the outage): seconds from the fault's start
    /// to the end of the last second with a client error within the fault window; 0 when
    /// none failed, absent when errors lasted until the window's end. 1 s resolution.
    pub errors_stop_after_s: Option<f64>,
    /// Faults that end before the phase does: seconds from the fault's end until
    /// deployment A completed a request again (poll resolution); absent when it never did.
    pub a_back_after_s: Option<f64>,
    /// What single requests sent in the middle of the fault window got back.
    pub probes: ProbeCounts,
    pub thresholds: Vec<ThresholdCheck>,
}

/// Completions per second of each deployment over one poll interval ending at `t_s`
/// (seconds since the phase started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentPoint {
    pub t_s: f64,
    pub per_s: Vec<f64>,
}

/// Probe answers by outcome: the HTTP status (`200`, `429`, `502`, ...), for 2xx streams
/// `complete`, `cut` (ended without `[DONE]`) or `error_event` (a `data:` event carrying
/// `"error"`), or `connection_error` / `timeout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCounts {
    pub sent: u64,
    pub by_outcome: std::collections::BTreeMap<String, u64>,
    /// Probes answered 429 that carried a `retry-after` (or `retry-after-ms`) header.
    pub http_429_with_retry_after: u64,
}

/// A threshold of `suites.yaml` against what was measured; `pass` is absent when it does
/// not apply (a target without a second deployment) or its figure was not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdCheck {
    pub name: String,
    pub expected: String,
    pub measured: String,
    pub pass: Option<bool>,
}

/// Clients that disconnect after their first token: does the target cancel upstream?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelResult {
    /// Streams opened, and how many delivered a first token before being dropped.
    pub streams: u64,
    pub first_token: u64,
    /// Open upstream streams (both mocks) before, while every client still held its
    /// stream, and `settle_s` after the last client disconnected.
    pub upstream_open_before: u64,
    pub upstream_open_connected: u64,
    pub upstream_open_after: u64,
    pub settle_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultWarning {
    pub kind: ResultWarningKind,
    /// The phase it applies to, if one.
    pub phase: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultWarningKind {
    /// The generator saturated its cores while short of the target rate.
    LoadGeneratorBound,
    /// Many requests failed (more than 1%).
    HighErrorRate,
    /// Open model: requests were dropped at the in-flight cap.
    Dropped,
    /// A phase ended with no successful request.
    NoSuccess,
    /// The generator could not open some connections itself (file descriptors, local
    /// ports): counted as `rig_refused`, not as the target's errors.
    RigRefused,
    /// Open model: the generator sent requests late (send lag p99 over 1 ms); the lag is
    /// part of the measured latency.
    GeneratorLate,
    /// A merged phase: one generator started late against the shared start time, or
    /// stopped early; the merged figures are short of its share for that time.
    GeneratorLagged,
    /// Before the phase, the target took over a second to answer probes at its idle
    /// latency again (see [`crate::load::settle`]).
    SettleWait,
    /// Before the phase, the target was still slow after the longest wait: the phase
    /// measured it with an earlier load's backlog.
    Unsettled,
    /// During the phase the hypervisor took more than [`super::host::STEAL_WARN_PERCENT`]
    /// of the machine's CPU time (steal): the latencies carry the VM's neighbours too.
    HostSteal,
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::Value;

    const SCHEMA: &str = include_str!("../../schema/suite-result.schema.json");

    pub(crate) fn sample_phase(stream: bool) -> PhaseResult {
        let s = Summary {
            count: 3,
            min: 1.0,
            mean: 2.0,
            stddev: 0.5,
            p50: 2.0,
            p90: 3.0,
            p95: 3.0,
            p99: 3.0,
            p99_9: 3.0,
            max: 3.0,
        };
        PhaseResult {
            name: "main".into(),
            model: LoadModel::Open,
            url: "http://127.0.0.1:1/v1/chat/completions".into(),
            duration_s: 1.0,
            started_s: Some(0.5),
            stages: vec![StageResult {
                stage: 0,
                target_vus: 5,
                peak_active_vus: 5,
                duration_s: 1.0,
                requests: 3,
                errors: 0,
                requests_per_s: 3.0,
                latency_ms: s.clone(),
                start_s: Some(0.0),
                ttft_ms: Some(s.clone()),
                itl_ms: Some(s.clone()),
                rig_refused: 1,
            }],
            vus: None,
            target_rate_per_s: Some(10.0),
            stream,
            requests: RequestCounts {
                total: 3,
                ok: 3,
                ..Default::default()
            },
            throughput: Throughput::default(),
            latency_ms: s.clone(),
            ttfb_ms: s.clone(),
            ttft_ms: stream.then(|| s.clone()),
            itl_ms: stream.then(|| s.clone()),
            tpot_ms: None,
            output_tokens: 9,
            generator: GeneratorCost::default(),
            percentile_curve: vec![CurvePoint {
                percentile: 50.0,
                latency_ms: 2.0,
            }],
            timeseries: vec![TimePoint::default()],
            latency_by_due_ms: vec![s.clone(); 4],
            histograms: None,
            generators: Vec::new(),
            host_cpu: None,
        }
    }

    pub(crate) fn sample() -> SuiteResult {
        let figure = PairedFigure {
            added_us: 1.0,
            ci_us: [0.5, 1.5],
            control_us: 0.0,
            control_ci_us: [-0.2, 0.3],
            resolution_us: 0.3,
            below_resolution: false,
        };
        SuiteResult {
            schema_version: SCHEMA_VERSION,
            suite: "frontier".into(),
            target: "gateway".into(),
            url: "http://127.0.0.1:1".into(),
            profile: "quick".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            interrupted: false,
            phases: vec![sample_phase(true), sample_phase(false)],
            frontier: Some(vec![FrontierPoint {
                p99_bound_ms: 1.0,
                max_rate_per_s: None,
                achieved_rate_per_s: None,
                p99_ms: None,
                phase: None,
                samples: Some(10),
                under_sampled: true,
                failed_rate_per_s: Some(20.0),
                failed_because: vec![RungFail::P99, RungFail::Saturated],
            }]),
            frontier_search: Some(FrontierSearch {
                min_samples: 1000,
                resolution_percent: 10.0,
                max_bisections: 6,
                rungs: vec![FrontierRung {
                    phase: "rate-20".into(),
                    search: RungSearch::Bisect,
                    rate_per_s: 20.0,
                    duration_s: 2.0,
                    samples: 40,
                    under_sampled: true,
                    p99_ms: Some(3.0),
                    first_quarter_p50_ms: Some(1.0),
                    last_quarter_p50_ms: None,
                    fails: vec![RungFail::Saturated],
                    met_bounds_ms: vec![5.0],
                }],
            }),
            faults: None,
            thresholds: Some(vec![ThresholdCheck {
                name: "p99".into(),
                expected: "< 5.00 ms".into(),
                measured: "3.00 ms".into(),
                pass: Some(true),
            }]),
            overhead: Some(Overhead {
                direct_url: "http://127.0.0.1:2".into(),
                target_p50_us: 1.0,
                target_p99_us: 1.0,
                direct_p50_us: 1.0,
                direct_p99_us: 1.0,
                added_p50_us: 0.0,
                added_p99_us: 0.0,
                samples: 1,
                paired: Some(Paired {
                    pairs: 1,
                    block: 1,
                    replicates: 1000,
                    claimed: Some(Claimed {
                        samples: 1,
                        p50_us: 9.0,
                        p99_us: 12.0,
                    }),
                    p50: figure.clone(),
                    p99: figure,
                }),
            }),
            warnings: vec![ResultWarning {
                kind: ResultWarningKind::LoadGeneratorBound,
                phase: Some("main".into()),
                message: "x".into(),
            }],
        }
    }

    fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/$defs/");
                &root["$defs"][name]
            }
            None => schema,
        }
    }

    /// Checks `value` against the parts of JSON Schema the schema file uses: required keys,
    /// no extra keys, types, enums, arrays and nullable refs.
    fn check(root: &Value, schema: &Value, value: &Value, path: &str) {
        let schema = resolve(root, schema);
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            if value.is_null() {
                assert!(any.iter().any(|s| s["type"] == "null"), "{path}: null");
                return;
            }
            let branch = any.iter().find(|s| s["type"] != "null").unwrap();
            return check(root, branch, value, path);
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            assert!(allowed.contains(value), "{path}: {value} not in enum");
        }
        if let Some(c) = schema.get("const") {
            assert_eq!(c, value, "{path}");
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !types.is_empty() {
            let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
            assert!(ok, "{path}: {actual} is not {types:?}");
        }
        if let Value::Object(map) = value {
            let props = schema["properties"].as_object().unwrap();
            for req in schema["required"].as_array().unwrap() {
                let key = req.as_str().unwrap();
                assert!(map.contains_key(key), "{path}: missing required `{key}`");
            }
            for (k, v) in map {
                let sub = props
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}: `{k}` not in schema"));
                check(root, sub, v, &format!("{path}.{k}"));
            }
        }
        if let Value::Array(items) = value {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(root, item_schema, v, &format!("{path}[{i}]"));
                }
            }
        }
    }

    #[test]
    fn produced_result_matches_schema() {
        let root: Value = serde_json::from_str(SCHEMA).unwrap();
        let value = serde_json::to_value(sample()).unwrap();
        check(&root, &root, &value, "$");
    }

    #[test]
    fn schema_check_catches_a_missing_key() {
        let root: Value = serde_json::from_str(SCHEMA).unwrap();
        let mut value = serde_json::to_value(sample()).unwrap();
        value["phases"][0]
            .as_object_mut()
            .unwrap()
            .remove("ttfb_ms");
        let caught = std::panic::catch_unwind(|| check(&root, &root, &value, "$"));
        assert!(caught.is_err());
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let back: SuiteResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(r, back);
    }
}
