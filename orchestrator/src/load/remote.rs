//! Phases run by several generators at once, elsewhere: each gets its share of the load
//! ([`share`]) in a [`PlanFile`] with a shared start time (plus [`start_offset_s`], which
//! interleaves open-model arrivals), runs it with the `lab-generator`
//! binary ([`generator_main`]) and writes an [`OutputFile`]; the results merge exactly
//! ([`merge_outputs`]: histograms added, series summed per second, each generator named).
//!
//! A [`PhaseRunner`] set in [`EngineOpts::runner`] makes [`run_phase`](super::run_phase) hand phases to such
//! generators without the load code knowing where they run: [`ProcessRunner`] runs them as
//! local processes (tests, `orchestrator load --generators N`); the lab runs them in
//! containers on several Docker engines with the same files.
//!
//! Plan file (JSON, unknown keys rejected):
//! `{"plan": {"name", "shape": {"model": "closed", "start_vus", "stages": [{"duration_s",
//! "target"}], "iterations"} | {"model": "open", "rate_per_s", "duration_s",
//! "max_in_flight"}, "requests": [{"label", "spec": RequestSpec, "url"}], "timeout_s",
//! "warmup"}, "threads", "start_at", "generator"}`.
//! Output file: `{"generator", "cost": GeneratorCost, "output": {"results": [PhaseResult],
//! "warnings", "interrupted", "rounds"}}`, each `PhaseResult` as in the suite result
//! (histograms and per-second series included).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cli::{epoch_now, run_at};
use super::engine::{report_started, EngineOpts, LoadShape, PhaseOutput, PhasePlan, Stage};
use super::merge::{lag_warnings, merge_phases, named_warnings, part_of, MergeError};
use super::request::{PreparedRequest, RequestSpec};
use super::result::{GeneratorCost, GeneratorPart, PhaseResult, ResultWarning, ResultWarningKind};
use super::{CancelToken, Event, LoadError, PhaseRunner};

/// Serde for a [`Duration`] as seconds (f64): plan files are written by hand too.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v)
            .map_err(|_| serde::de::Error::custom(format!("{v} is not a length in seconds (>= 0)")))
    }
}

/// One request of a plan file: what to render and where to send it (resolved by the
/// generator, in its own network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub label: String,
    pub spec: RequestSpec,
    pub url: String,
}

/// A [`PhasePlan`] as written to a plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    pub name: String,
    pub shape: LoadShape,
    pub requests: Vec<PlanRequest>,
    #[serde(rename = "timeout_s", with = "secs")]
    pub timeout: Duration,
    pub warmup: bool,
}

impl PlanSpec {
    pub fn of(plan: &PhasePlan) -> Self {
        Self {
            name: plan.name.clone(),
            shape: plan.shape.clone(),
            requests: plan
                .requests
                .iter()
                .map(|(label, r)| PlanRequest {
                    label: label.clone(),
                    spec: (*r.spec).clone(),
                    url: r.url.clone(),
                })
                .collect(),
            timeout: plan.timeout,
            warmup: plan.warmup,
        }
    }

    /// The plan to run: every request rendered (and its host resolved) here.
    pub fn to_plan(&self) -> Result<PhasePlan, LoadError> {
        let requests = self
            .requests
            .iter()
            .map(|r| Ok((r.label.clone(), PreparedRequest::new(&r.spec, &r.url)?)))
            .collect::<Result<_, LoadError>>()?;
        Ok(PhasePlan {
            name: self.name.clone(),
            shape: self.shape.clone(),
            requests,
            timeout: self.timeout,
            warmup: self.warmup,
        })
    }
}

/// What one generator is told to run: its share of a phase, its worker threads (0: the
/// cores it may use), when to start (seconds since the Unix epoch; `None`: at once) and
/// its name in the merged result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub plan: PlanSpec,
    pub threads: usize,
    pub start_at: Option<f64>,
    pub generator: String,
}

impl PlanFile {
    pub fn new(plan: &PhasePlan, threads: usize, start_at: Option<f64>, generator: &str) -> Self {
        Self {
            plan: PlanSpec::of(plan),
            threads,
            start_at,
            generator: generator.to_string(),
        }
    }

    pub fn to_json(&self) -> Result<String, LoadError> {
        to_json("plan file", self)
    }

    /// Parses and checks a plan file; errors name the offending key.
    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        let f: Self = from_json("plan file", text)?;
        if let Some(t) = f.start_at.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(config(
                "plan file",
                format!("start_at {t} is not a time since the Unix epoch"),
            ));
        }
        Ok(f)
    }

    pub fn phase_plan(&self) -> Result<PhasePlan, LoadError> {
        self.plan.to_plan()
    }
}

/// What one generator sends back: its name, what it cost (CPU, whether it was at its own
/// limit, how late it started) and the phase's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    pub generator: String,
    /// The phase's cost on this generator; `bound` when any request's result was.
    pub cost: GeneratorCost,
    pub output: PhaseOutput,
}

impl OutputFile {
    pub fn new(generator: &str, output: PhaseOutput) -> Self {
        let mut cost = output
            .results
            .first()
            .map(|r| r.generator.clone())
            .unwrap_or_default();
        cost.bound = output.results.iter().any(|r| r.generator.bound);
        Self {
            generator: generator.to_string(),
            cost,
            output,
        }
    }

    pub fn to_json(&self) -> Result<String, LoadError> {
        to_json("output file", self)
    }

    pub fn from_json(text: &str) -> Result<Self, LoadError> {
        from_json("output file", text)
    }
}

fn config(what: &str, why: String) -> LoadError {
    LoadError::Config {
        what: what.to_string(),
        why,
    }
}

fn to_json<T: Serialize>(what: &str, v: &T) -> Result<String, LoadError> {
    serde_json::to_string_pretty(v).map_err(|e| config(what, e.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, text: &str) -> Result<T, LoadError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let why = e.into_inner().to_string();
        config(
            what,
            if at == "." {
                why
            } else {
                format!("at `{at}`: {why}")
            },
        )
    })
}

/// Generator `i`'s share of `plan` among `n` (`i < n`). Open model: the rate over `n`,
/// the in-flight cap over `n` rounded up (at least 1). Closed model: the start VUs and
/// every stage's target split so the shares add up exactly to the plan's at every stage
/// boundary (the remainder goes to the lowest indices); an iteration budget is split in
/// proportion to each share's peak VUs, so a share without VUs gets none.
///
/// A closed share with 0 VUs throughout (fewer VUs than generators) is a valid plan: it
/// runs nothing for the phase's length and returns an empty, well-formed result (zero
/// counts, empty histograms), so it merges like any other; callers need not skip it.
pub fn share(plan: &PhasePlan, i: usize, n: usize) -> PhasePlan {
    let n = n.max(1);
    let shape = match &plan.shape {
        LoadShape::Closed {
            start_vus,
            iterations,
            ..
        } => {
            let peaks: Vec<u64> = (0..n).map(|j| closed_share(plan, j, n).1).collect();
            LoadShape::Closed {
                start_vus: split(*start_vus, i, n),
                stages: closed_share(plan, i, n).0,
                iterations: iterations.map(|k| split_weighted(k, &peaks, i)),
            }
        }
        LoadShape::Open {
            rate_per_s,
            duration,
            max_in_flight,
        } => LoadShape::Open {
            rate_per_s: rate_per_s / n as f64,
            duration: *duration,
            max_in_flight: max_in_flight.div_ceil(n).max(1),
        },
    };
    PhasePlan {
        shape,
        ..plan.clone()
    }
}

/// How much later than the shared start time generator `i` should start its share of
/// `plan` (the whole plan, not the share), seconds: open model `i / rate`, so the
/// generators' arrivals interleave into the plan's own schedule (generator `i` sends its
/// `i`-th, `i + n`-th, … request, as the engine's threads do) rather than coming in bursts
/// of `n` at once; 0 for the closed model.
pub fn start_offset_s(plan: &PhasePlan, i: usize) -> f64 {
    match plan.shape {
        LoadShape::Open { rate_per_s, .. } if rate_per_s > 0.0 => i as f64 / rate_per_s,
        _ => 0.0,
    }
}

/// Share `i` of `v` among `n`: the remainder to the lowest indices.
fn split(v: u64, i: usize, n: usize) -> u64 {
    let (n, i) = (n as u64, i as u64);
    v / n + u64::from(i < v % n)
}

/// A closed plan's stages for share `i`, and that share's peak VUs.
fn closed_share(plan: &PhasePlan, i: usize, n: usize) -> (Vec<Stage>, u64) {
    let LoadShape::Closed {
        start_vus, stages, ..
    } = &plan.shape
    else {
        return (Vec::new(), 0);
    };
    let stages: Vec<Stage> = stages
        .iter()
        .map(|s| Stage {
            duration: s.duration,
            target: split(s.target, i, n),
        })
        .collect();
    let peak = stages
        .iter()
        .map(|s| s.target)
        .fold(split(*start_vus, i, n), u64::max);
    (stages, peak)
}

/// Share `i` of `k` in proportion to `weights` (largest-remainder rounding, the leftover
/// to the lowest indices with a weight); an even split when every weight is 0.
fn split_weighted(k: u64, weights: &[u64], i: usize) -> u64 {
    let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if total == 0 {
        return split(k, i, weights.len());
    }
    let base = |w: u64| (u128::from(k) * u128::from(w) / total) as u64;
    let left = k - weights.iter().map(|w| base(*w)).sum::<u64>();
    let rank = weights[..i].iter().filter(|w| **w > 0).count() as u64;
    base(weights[i]) + u64::from(weights[i] > 0 && rank < left)
}

/// The output of several generators that ran shares of one phase together, merged
/// exactly per request label ([`merge_phases`]): each merged result names every
/// generator's part (`generators`), each generator's warnings are kept under its name and
/// a `generator_lagged` warning names one that started over [`LAG_WARN_MS`] late or was
/// interrupted; `interrupted` when any was; rounds concatenated. A single part comes back
/// unchanged, so one generator gives today's figures.
///
/// [`LAG_WARN_MS`]: super::merge::LAG_WARN_MS
pub fn merge_outputs(parts: Vec<(String, PhaseOutput)>) -> Result<PhaseOutput, MergeError> {
    if parts.len() == 1 {
        return parts
            .into_iter()
            .next()
            .map(|(_, o)| o)
            .ok_or(MergeError::Empty);
    }
    merge_named(&parts)
}

/// [`merge_outputs`] when some generators failed (`failed`: name and why): each is named
/// in every result's `generators` (no requests, `interrupted`) and in a
/// `generator_lagged` warning, and the output is `interrupted`. Err when none succeeded.
pub fn merge_outputs_with_failures(
    parts: Vec<(String, PhaseOutput)>,
    failed: &[(String, String)],
) -> Result<PhaseOutput, MergeError> {
    if failed.is_empty() {
        return merge_outputs(parts);
    }
    let mut out = merge_named(&parts)?;
    for (name, why) in failed {
        for r in &mut out.results {
            r.generators.push(GeneratorPart {
                name: name.clone(),
                requests: 0,
                ok: 0,
                requests_per_s: 0.0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                generator: GeneratorCost::default(),
                interrupted: true,
            });
        }
        out.warnings.push(ResultWarning {
            kind: ResultWarningKind::GeneratorLagged,
            phase: out.results.first().map(|r| r.name.clone()),
            message: format!(
                "generator `{name}` failed ({why}): the figures lack its share of the load"
            ),
        });
    }
    out.interrupted = true;
    Ok(out)
}

fn labels(o: &PhaseOutput) -> String {
    let names: Vec<&str> = o.results.iter().map(|r| r.name.as_str()).collect();
    format!("requests [{}]", names.join(", "))
}

/// The merge proper, naming every part even when there is one.
fn merge_named(parts: &[(String, PhaseOutput)]) -> Result<PhaseOutput, MergeError> {
    let (_, first) = parts.first().ok_or(MergeError::Empty)?;
    let want = labels(first);
    if let Some((name, o)) = parts.iter().find(|(_, o)| labels(o) != want) {
        return Err(MergeError::Mismatch {
            name: name.clone(),
            got: labels(o),
            want,
        });
    }
    let results = (0..first.results.len())
        .map(|i| {
            let same: Vec<PhaseResult> = parts.iter().map(|(_, o)| o.results[i].clone()).collect();
            let mut merged = merge_phases(&same)?;
            merged.generators = parts
                .iter()
                .map(|(name, o)| part_of(name, &o.results[i], o.interrupted))
                .collect();
            Ok(merged)
        })
        .collect::<Result<Vec<_>, MergeError>>()?;
    let warnings = parts
        .iter()
        .flat_map(|(name, o)| named_warnings(name, &o.warnings))
        .chain(results.iter().flat_map(lag_warnings))
        .collect();
    Ok(PhaseOutput {
        warnings,
        interrupted: parts.iter().any(|(_, o)| o.interrupted),
        rounds: parts.iter().flat_map(|(_, o)| o.rounds.clone()).collect(),
        results,
    })
}

/// What the observer would have seen had `out` run here, sent after the fact: every
/// second's point (at `started` + its `t_s`), then each result. Measured phases only, as
/// [`run_phase`](super::run_phase) does. For [`PhaseRunner`]s, which get their figures at
/// the end.
pub fn report_events(
    plan: &PhasePlan,
    opts: &EngineOpts,
    out: &PhaseOutput,
    started: DateTime<Utc>,
) {
    let Some(o) = opts.observer.as_ref().filter(|_| !plan.warmup) else {
        return;
    };
    for r in &out.results {
        for p in &r.timeseries {
            o.on_event(&Event::Point {
                suite: opts.suite.clone(),
                phase: r.name.clone(),
                at: started + chrono::Duration::milliseconds((p.t_s * 1000.0) as i64),
                point: p.clone(),
            });
        }
    }
    for r in &out.results {
        o.on_event(&Event::PhaseFinished {
            suite: opts.suite.clone(),
            result: Box::new(r.clone()),
        });
    }
}

/// The end of a [`PhaseRunner`]'s phase: the generators' outputs merged (those that failed
/// named), and the observer told; an error when every generator failed.
pub fn finish_phase(
    plan: &PhasePlan,
    opts: &EngineOpts,
    parts: Vec<(String, PhaseOutput)>,
    failed: &[(String, String)],
    started: DateTime<Utc>,
) -> Result<PhaseOutput, LoadError> {
    if parts.is_empty() {
        let why: Vec<String> = failed.iter().map(|(n, w)| format!("{n}: {w}")).collect();
        return Err(LoadError::Generators(format!(
            "every generator failed: {}",
            why.join("; ")
        )));
    }
    let out = merge_outputs_with_failures(parts, failed)
        .map_err(|e| LoadError::Generators(e.to_string()))?;
    report_events(plan, opts, &out, started);
    Ok(out)
}

/// Options of the `lab-generator` binary.
#[derive(Debug, clap::Parser)]
#[command(
    name = "lab-generator",
    about = "Runs one plan file's share of a phase"
)]
pub struct GeneratorArgs {
    /// The plan file ([`PlanFile`], JSON).
    #[arg(long, required_unless_present = "probe")]
    pub plan: Option<PathBuf>,
    /// Where to write the output file ([`OutputFile`], JSON).
    #[arg(long, required_unless_present = "probe")]
    pub out: Option<PathBuf>,
    /// Exit 0 at once (a health check for images with nothing else to run).
    #[arg(long)]
    pub probe: bool,
}

/// The `lab-generator` binary: reads the plan file, waits for its start time, runs the
/// phase, writes the output file. Exit 0 when the output was written (an interrupted run
/// included: the file says so), 1 with the reason on stderr otherwise, 64 on bad usage.
pub fn generator_main() -> i32 {
    let args = match <GeneratorArgs as clap::Parser>::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return 64;
        }
    };
    super::notes::install(Some(Arc::new(super::notes::Stderr)));
    match run_generator(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lab-generator: {e:#}");
            1
        }
    }
}

fn run_generator(args: &GeneratorArgs) -> anyhow::Result<()> {
    let (Some(plan_path), Some(out_path)) = (&args.plan, &args.out) else {
        return Ok(()); // --probe
    };
    let text = std::fs::read_to_string(plan_path)
        .with_context(|| format!("reading {}", plan_path.display()))?;
    let file = PlanFile::from_json(&text).with_context(|| plan_path.display().to_string())?;
    let plan = file.phase_plan()?;
    let cancel = CancelToken::new();
    super::cancel_on_ctrl_c(&cancel);
    let opts = EngineOpts {
        threads: file.threads,
        cancel,
        ..EngineOpts::default()
    };
    let out = run_at(&plan, &opts, file.start_at)?;
    let text = OutputFile::new(&file.generator, out).to_json()?;
    std::fs::write(out_path, text).with_context(|| format!("writing {}", out_path.display()))?;
    Ok(())
}

/// Runs each phase as `generators` local `lab-generator` processes, each with its
/// [`share`], all starting `lead` after launch, and merges their outputs. Generators are
/// named `local-1`, `local-2`, …; one that fails is named in the result (see
/// [`merge_outputs_with_failures`]). Cancelling `opts.cancel` interrupts them (SIGINT):
/// what they measured is kept.
#[derive(Debug, Clone)]
pub struct ProcessRunner {
    /// The `lab-generator` binary.
    pub program: PathBuf,
    pub generators: usize,
    /// From launch to the shared start time: time for every process to start.
    pub lead: Duration,
}

/// A launched generator process.
struct Launched {
    name: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// A scratch directory of its own for one phase's plan and output files.
fn scratch_dir() -> Result<PathBuf, LoadError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lab-generator-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(LoadError::Runtime)?;
    Ok(dir)
}

impl ProcessRunner {
    pub fn new(program: impl Into<PathBuf>, generators: usize) -> Self {
        Self {
            program: program.into(),
            generators: generators.max(1),
            lead: Duration::from_secs(1),
        }
    }

    /// With the `lab-generator` built beside the running binary (cargo builds both).
    pub fn beside_current_exe(generators: usize) -> Result<Self, LoadError> {
        let exe = std::env::current_exe().map_err(LoadError::Runtime)?;
        let program = exe.with_file_name(format!("lab-generator{}", std::env::consts::EXE_SUFFIX));
        if !program.is_file() {
            return Err(LoadError::Generators(format!(
                "{} not found (build it: cargo build -p orchestrator --bin lab-generator)",
                program.display()
            )));
        }
        Ok(Self::new(program, generators))
    }

    /// Launches, waits for and collects every generator, its files in `dir`.
    fn run_in(
        &self,
        dir: &Path,
        plan: &PhasePlan,
        opts: &EngineOpts,
    ) -> Result<PhaseOutput, LoadError> {
        let start_at = epoch_now() + self.lead.as_secs_f64();
        let started = Utc::now() + chrono::Duration::milliseconds(self.lead.as_millis() as i64);
        report_started(plan, opts, started);
        let mut kids = self.launch(dir, plan, opts.threads, start_at)?;
        // Generous: a generator that runs past its schedule plus a request timeout is stuck.
        let deadline = Instant::now()
            + self.lead
            + plan.shape.duration()
            + plan.timeout
            + Duration::from_secs(30);
        let exits = wait_all(&mut kids, &opts.cancel, deadline);
        let mut parts = Vec::new();
        let mut failed = Vec::new();
        for (k, exit) in kids.iter().zip(exits) {
            match outcome(k, exit) {
                Ok(o) => parts.push((k.name.clone(), o)),
                Err(why) => failed.push((k.name.clone(), why)),
            }
        }
        finish_phase(plan, opts, parts, &failed, started)
    }

    /// Writes each generator's plan file and starts it; on failure none is left running.
    fn launch(
        &self,
        dir: &Path,
        plan: &PhasePlan,
        threads: usize,
        start_at: f64,
    ) -> Result<Vec<Launched>, LoadError> {
        let mut kids: Vec<Launched> = Vec::new();
        for i in 0..self.generators {
            let name = format!("local-{}", i + 1);
            let file = PlanFile::new(
                &share(plan, i, self.generators),
                threads,
                Some(start_at + start_offset_s(plan, i)),
                &name,
            );
            let (plan_path, out, err) = (
                dir.join(format!("{name}.plan.json")),
                dir.join(format!("{name}.out.json")),
                dir.join(format!("{name}.stderr")),
            );
            let spawned = file
                .to_json()
                .and_then(|text| std::fs::write(&plan_path, text).map_err(LoadError::Runtime))
                .and_then(|()| std::fs::File::create(&err).map_err(LoadError::Runtime))
                .and_then(|stderr| {
                    Command::new(&self.program)
                        .arg("--plan")
                        .arg(&plan_path)
                        .arg("--out")
                        .arg(&out)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(stderr)
                        .spawn()
                        .map_err(|e| {
                            LoadError::Generators(format!(
                                "starting {}: {e}",
                                self.program.display()
                            ))
                        })
                });
            match spawned {
                Ok(child) => kids.push(Launched {
                    name,
                    child,
                    out,
                    err,
                }),
                Err(e) => {
                    for k in &mut kids {
                        let _ = k.child.kill();
                        let _ = k.child.wait();
                    }
                    return Err(e);
                }
            }
        }
        Ok(kids)
    }
}

/// Waits for every process until `deadline`, passing a cancellation on as SIGINT; those
/// still running at the deadline are killed. Each one's exit, or why it has none.
fn wait_all(
    kids: &mut [Launched],
    cancel: &CancelToken,
    deadline: Instant,
) -> Vec<Result<ExitStatus, String>> {
    let mut done: Vec<Option<Result<ExitStatus, String>>> = kids.iter().map(|_| None).collect();
    let mut signalled = false;
    while done.iter().any(Option::is_none) {
        for (k, d) in kids.iter_mut().zip(&mut done).filter(|(_, d)| d.is_none()) {
            *d = k.child.try_wait().map_err(|e| e.to_string()).transpose();
        }
        if cancel.is_cancelled() && !signalled {
            signalled = true;
            for (k, _) in kids.iter().zip(&done).filter(|(_, d)| d.is_none()) {
                super::sys::interrupt(k.child.id());
            }
        }
        if Instant::now() > deadline {
            for (k, d) in kids.iter_mut().zip(&mut done).filter(|(_, d)| d.is_none()) {
                let _ = k.child.kill();
                let _ = k.child.wait();
                *d = Some(Err("did not finish in time; killed".into()));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done.into_iter().flatten().collect()
}

/// A generator's output, or why there is none (its exit and the end of its stderr).
fn outcome(k: &Launched, exit: Result<ExitStatus, String>) -> Result<PhaseOutput, String> {
    let tail = || {
        let text = std::fs::read_to_string(&k.err).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    };
    let status = exit?;
    if !status.success() {
        return Err(format!("{status}: {}", tail()));
    }
    let text = std::fs::read_to_string(&k.out).map_err(|e| format!("no output file: {e}"))?;
    let file = OutputFile::from_json(&text).map_err(|e| e.to_string())?;
    Ok(file.output)
}

impl PhaseRunner for ProcessRunner {
    fn run(&self, plan: &PhasePlan, opts: &EngineOpts) -> Result<PhaseOutput, LoadError> {
        let dir = scratch_dir()?;
        let out = self.run_in(&dir, plan, opts);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::load::merge::tests::part;
    use crate::load::result::TimePoint;

    fn plan(shape: LoadShape) -> PhasePlan {
        let spec = RequestSpec {
            headers: vec![("x-mock-latency-ms".into(), "1".into())],
            ..RequestSpec::default()
        };
        PhasePlan {
            name: "main".into(),
            shape,
            requests: vec![(
                "main".into(),
                PreparedRequest::new(&spec, "http://127.0.0.1:1").unwrap(),
            )],
            timeout: Duration::from_millis(1500),
            warmup: false,
        }
    }

    fn ramp(start_vus: u64, targets: &[u64], iterations: Option<u64>) -> LoadShape {
        LoadShape::Closed {
            start_vus,
            stages: targets
                .iter()
                .map(|&target| Stage {
                    duration: Duration::from_secs(2),
                    target,
                })
                .collect(),
            iterations,
        }
    }

    fn closed(shape: &LoadShape) -> (u64, Vec<u64>, Option<u64>) {
        let LoadShape::Closed {
            start_vus,
            stages,
            iterations,
        } = shape
        else {
            panic!("not closed: {shape:?}")
        };
        (
            *start_vus,
            stages.iter().map(|s| s.target).collect(),
            *iterations,
        )
    }

    #[test]
    fn closed_shares_add_up_at_every_stage() {
        for n in 1..=5 {
            for (start, targets, iters) in [
                (0u64, vec![10u64, 3, 0], Some(1001u64)),
                (7, vec![7, 1, 20], None),
                (1, vec![1], Some(10)),
            ] {
                let p = plan(ramp(start, &targets, iters));
                let shares: Vec<_> = (0..n).map(|i| closed(&share(&p, i, n).shape)).collect();
                assert_eq!(shares.iter().map(|s| s.0).sum::<u64>(), start, "n={n}");
                for (k, t) in targets.iter().enumerate() {
                    assert_eq!(shares.iter().map(|s| s.1[k]).sum::<u64>(), *t, "n={n}");
                }
                if let Some(k) = iters {
                    assert_eq!(shares.iter().map(|s| s.2.unwrap()).sum::<u64>(), k);
                }
                // The remainder goes to the lowest indices: shares never grow with i.
                assert!(shares.windows(2).all(|w| w[0].1 >= w[1].1), "{shares:?}");
            }
        }
        // One VU among three: the others get none, and no iterations they could not run.
        let p = plan(ramp(1, &[1], Some(10)));
        let s: Vec<_> = (0..3).map(|i| closed(&share(&p, i, 3).shape)).collect();
        assert_eq!(s[0], (1, vec![1], Some(10)));
        assert_eq!(s[2], (0, vec![0], Some(0)));
        let q = share(&p, 1, 3);
        assert_eq!((q.name.as_str(), q.timeout), ("main", p.timeout));
    }

    #[test]
    fn open_shares_split_the_rate_and_the_cap() {
        let p = plan(LoadShape::Open {
            rate_per_s: 1000.0,
            duration: Duration::from_secs(3),
            max_in_flight: 5,
        });
        let shares: Vec<_> = (0..3).map(|i| share(&p, i, 3).shape).collect();
        let mut rate = 0.0;
        for s in &shares {
            let LoadShape::Open {
                rate_per_s,
                duration,
                max_in_flight,
            } = s
            else {
                panic!()
            };
            rate += rate_per_s;
            assert_eq!((*duration, *max_in_flight), (Duration::from_secs(3), 2));
        }
        assert!((rate - 1000.0).abs() < 1e-9);
        let LoadShape::Open { max_in_flight, .. } = share(&p, 7, 8).shape else {
            panic!()
        };
        assert_eq!(max_in_flight, 1);
        assert_eq!(share(&p, 0, 1).shape, p.shape);
        assert_eq!(start_offset_s(&p, 0), 0.0);
        assert!((start_offset_s(&p, 2) - 0.002).abs() < 1e-12);
        let c = plan(LoadShape::constant_vus(2, Duration::from_secs(1)));
        assert_eq!(start_offset_s(&c, 1), 0.0);
    }

    #[test]
    fn a_share_without_vus_runs_nothing_and_is_well_formed() {
        let p = share(
            &plan(LoadShape::constant_vus(1, Duration::from_millis(300))),
            1,
            2,
        );
        let out = crate::load::run_phase(&p, &EngineOpts::default()).unwrap();
        let r = &out.results[0];
        assert_eq!((r.requests.total, r.latency_ms.count), (0, 0));
        assert!(r.histograms.is_some());
        // The VM's steal is the machine's, not the share's.
        let steal = crate::load::result::ResultWarningKind::HostSteal;
        assert!(
            out.warnings.iter().all(|w| w.kind == steal),
            "{:?}",
            out.warnings
        );
        let merged = merge_outputs(vec![("a".into(), out.clone()), ("b".into(), out)]).unwrap();
        assert_eq!(merged.results[0].generators.len(), 2);
    }

    #[test]
    fn plan_files_round_trip_and_reject_unknown_keys() {
        let mut p = plan(ramp(2, &[4, 0], Some(9)));
        p.timeout = Duration::from_millis(2500);
        let f = PlanFile::new(&p, 3, Some(1.9e9), "engine-b");
        let text = f.to_json().unwrap();
        assert!(text.contains("\"model\": \"closed\""), "{text}");
        assert!(text.contains("\"timeout_s\": 2.5"), "{text}");
        let back = PlanFile::from_json(&text).unwrap();
        assert_eq!(back, f);
        let again = back.phase_plan().unwrap();
        assert_eq!(again.shape, p.shape);
        assert_eq!(again.requests[0].1.bytes, p.requests[0].1.bytes);
        assert_eq!(again.requests[0].1.url, "http://127.0.0.1:1");

        let extra = text.replacen("\"threads\"", "\"thread\": 1, \"threads\"", 1);
        let e = PlanFile::from_json(&extra).unwrap_err().to_string();
        assert!(e.contains("unknown field `thread`"), "{e}");
        let bad = text.replacen("\"target\": 4", "\"target\": 4, \"vus\": 1", 1);
        let e = PlanFile::from_json(&bad).unwrap_err().to_string();
        assert!(
            e.contains("plan.shape") && e.contains("unknown field `vus`"),
            "{e}"
        );
        let neg = text.replacen("\"timeout_s\": 2.5", "\"timeout_s\": -1", 1);
        let e = PlanFile::from_json(&neg).unwrap_err().to_string();
        assert!(e.contains("plan.timeout_s") && e.contains("-1"), "{e}");
        let open = PlanFile::new(
            &plan(LoadShape::Open {
                rate_per_s: 10.0,
                duration: Duration::from_secs(1),
                max_in_flight: 4,
            }),
            0,
            None,
            "x",
        );
        let text = open.to_json().unwrap();
        assert!(text.contains("\"model\": \"open\""), "{text}");
        assert_eq!(PlanFile::from_json(&text).unwrap(), open);
        let past = text.replacen("\"start_at\": null", "\"start_at\": -5", 1);
        assert!(PlanFile::from_json(&past).is_err());
    }

    fn output(latencies_us: &[u64], lag_ms: f64, series: &[u64]) -> PhaseOutput {
        let mut r = part(latencies_us);
        r.generator.start_lag_ms = Some(lag_ms);
        r.generator.cpu_seconds = 0.5;
        r.timeseries = series
            .iter()
            .enumerate()
            .map(|(i, &n)| TimePoint {
                t_s: i as f64 + 1.0,
                requests: n,
                ok: n,
                ..TimePoint::default()
            })
            .collect();
        PhaseOutput {
            results: vec![r],
            warnings: Vec::new(),
            interrupted: false,
            rounds: Vec::new(),
        }
    }

    #[test]
    fn output_files_round_trip() {
        let mut o = output(&[1000; 5], 3.0, &[2, 3]);
        o.results[0].generator.bound = true;
        let f = OutputFile::new("engine-a", o);
        assert!(f.cost.bound && f.cost.start_lag_ms == Some(3.0));
        let back = OutputFile::from_json(&f.to_json().unwrap()).unwrap();
        assert_eq!(back, f);
        assert!(OutputFile::from_json("{\"generator\": \"x\"}")
            .unwrap_err()
            .to_string()
            .contains("missing field `cost`"));
    }

    #[test]
    fn outputs_merge_exactly_and_name_laggards() {
        let a = output(&[1000; 300], 2.0, &[100, 200]);
        let b = output(&[3000; 100], 250.0, &[40, 50, 10]);
        // One part: as it is.
        assert_eq!(merge_outputs(vec![("a".into(), a.clone())]).unwrap(), a);
        let m = merge_outputs(vec![("a".into(), a.clone()), ("b".into(), b.clone())]).unwrap();
        let r = &m.results[0];
        assert_eq!((r.requests.total, r.latency_ms.count), (400, 400));
        let per_s: Vec<u64> = r.timeseries.iter().map(|p| p.requests).collect();
        assert_eq!(per_s, [140, 250, 10]);
        let names: Vec<&str> = r.generators.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(r.generator.cpu_seconds, 1.0);
        assert!(!m.interrupted);
        let lagged: Vec<&str> = m
            .warnings
            .iter()
            .filter(|w| w.kind == ResultWarningKind::GeneratorLagged)
            .map(|w| w.message.as_str())
            .collect();
        assert_eq!(
            lagged,
            ["generator `b` started 250 ms after the shared start time"]
        );
        // Failures are named, and what the others measured is kept.
        let f = merge_outputs_with_failures(
            vec![("a".into(), a.clone())],
            &[("c".into(), "exit status: 1".into())],
        )
        .unwrap();
        assert!(f.interrupted);
        assert_eq!(f.results[0].generators.len(), 2);
        assert!(f.results[0].generators[1].interrupted);
        assert!(f.warnings.iter().any(|w| w.message.contains("`c` failed")));
        // Different requests do not merge.
        let mut other = b;
        other.results[0].name = "other".into();
        let e = merge_outputs(vec![("a".into(), a), ("z".into(), other)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("generator `z` ran requests [other]"), "{e}");
    }
}
