//! Runs one phase: worker threads with their own current-thread tokio runtimes drive the
//! load (closed: virtual users; open: an arrival schedule), while the calling thread
//! coordinates (VU targets, stop, one-second time-series points, progress line, observer).

use std::cell::{Cell, RefCell};
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::host::{CpuTicks, HostCpu, STEAL_WARN_PERCENT};
use super::http::{exchange, Conn, Scratch, Timing};
use super::request::PreparedRequest;
use super::result::{
    GeneratorCost, LoadModel, PhaseResult, RequestCounts, ResultWarning, ResultWarningKind,
    StageResult, Throughput, TimePoint,
};
use super::stats::{curve, histogram, summary, ErrorClass, OkSample, Recorder, Tally, DUE_PARTS};
use super::sys;
use super::{CancelToken, Event, LoadError, Observer};

/// One closed-model stage: move linearly from the previous VU count to `target` over
/// `duration` (k6 `stages`). A zero duration jumps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(rename = "duration_s", with = "super::remote::secs")]
    pub duration: Duration,
    pub target: u64,
}

/// How load is applied during a phase. In plan files ([`super::remote::PlanFile`]):
/// `{"model": "closed", "start_vus", "stages", "iterations"}` or
/// `{"model": "open", "rate_per_s", "duration_s", "max_in_flight"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoadShape {
    /// Virtual users. With `iterations`, the phase ends once that many requests were
    /// started in total (or the stages run out, whichever is first).
    Closed {
        start_vus: u64,
        stages: Vec<Stage>,
        iterations: Option<u64>,
    },
    /// Requests due at `rate_per_s` for `duration`; at most `max_in_flight` outstanding,
    /// requests due beyond that are counted as dropped.
    Open {
        rate_per_s: f64,
        #[serde(rename = "duration_s", with = "super::remote::secs")]
        duration: Duration,
        max_in_flight: usize,
    },
}

impl LoadShape {
    /// Closed model, a constant number of VUs.
    pub fn constant_vus(vus: u64, duration: Duration) -> Self {
        LoadShape::Closed {
            start_vus: vus,
            stages: vec![Stage {
                duration,
                target: vus,
            }],
            iterations: None,
        }
    }

    /// Scheduled length (an upper bound for iteration-limited phases).
    pub fn duration(&self) -> Duration {
        match self {
            LoadShape::Closed { stages, .. } => stages.iter().map(|s| s.duration).sum(),
            LoadShape::Open { duration, .. } => *duration,
        }
    }

    fn max_vus(&self) -> u64 {
        match self {
            LoadShape::Closed {
                start_vus, stages, ..
            } => stages.iter().map(|s| s.target).fold(*start_vus, u64::max),
            LoadShape::Open { .. } => 0,
        }
    }

    /// Closed model: which stage (0-based) runs `t` into the phase, and how many there are.
    pub fn stage_at(&self, t: Duration) -> Option<(usize, usize)> {
        let LoadShape::Closed { stages, .. } = self else {
            return None;
        };
        let mut end = Duration::ZERO;
        for (i, s) in stages.iter().enumerate() {
            end += s.duration;
            if t < end {
                return Some((i, stages.len()));
            }
        }
        None
    }

    /// Closed model: target VUs `t` into the phase (None once the stages are over).
    fn vus_at(&self, t: Duration) -> Option<u64> {
        let LoadShape::Closed {
            start_vus, stages, ..
        } = self
        else {
            return None;
        };
        let mut from = *start_vus as f64;
        let mut begin = Duration::ZERO;
        for s in stages {
            let end = begin + s.duration;
            if t < end {
                let frac = (t - begin).as_secs_f64() / s.duration.as_secs_f64();
                return Some((from + (s.target as f64 - from) * frac).round() as u64);
            }
            from = s.target as f64;
            begin = end;
        }
        None
    }
}

/// One phase to run: its load shape and the request(s) to send. With several requests,
/// each VU sends them in turn (interleaved), and each gets its own `PhaseResult` named
/// by its label.
#[derive(Debug, Clone)]
pub struct PhasePlan {
    pub name: String,
    pub shape: LoadShape,
    pub requests: Vec<(String, PreparedRequest)>,
    /// Per-request timeout (connect + whole answer).
    pub timeout: Duration,
    /// Not measured: results are discarded by the caller; only labels the progress line.
    pub warmup: bool,
}

/// Runs phases somewhere else than in this process (other processes, containers on other
/// engines): when set in [`EngineOpts::runner`], [`run_phase`] hands every phase to it.
/// It gets the same `opts` (runner included): one that ends up running in this process
/// must clear `runner` first. It should send the observer's events itself (see
/// [`super::remote::report_events`]).
pub trait PhaseRunner: Send + Sync {
    fn run(&self, plan: &PhasePlan, opts: &EngineOpts) -> Result<PhaseOutput, LoadError>;
}

/// How the generator runs.
#[derive(Clone, Default)]
pub struct EngineOpts {
    /// Worker threads (each its own current-thread runtime). 0 = the allowed core count.
    pub threads: usize,
    pub cancel: CancelToken,
    /// Live progress line on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    pub observer: Option<Arc<dyn Observer>>,
    /// Suite name passed to the observer.
    pub suite: String,
    /// Where phases run: `None` (the default) in this process.
    pub runner: Option<Arc<dyn PhaseRunner>>,
}

/// The results of one phase. Serializable: a generator elsewhere sends it back
/// ([`super::remote::OutputFile`]); its results carry their histograms, so several merge
/// exactly ([`super::remote::merge_outputs`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseOutput {
    pub results: Vec<PhaseResult>,
    pub warnings: Vec<ResultWarning>,
    pub interrupted: bool,
    /// Closed plans with several requests (interleaved): each VU's rounds in order, one
    /// [`RoundLog`] per VU, so request `i` of round `r` can be paired with the others.
    pub rounds: Vec<RoundLog>,
}

/// One VU's requests in send order, per request of the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundLog {
    /// Latency, µs: entry `r` of each list comes from round `r`. [`FAILED`] marks a
    /// request that failed.
    pub latency_us: Vec<Vec<u64>>,
    /// The overhead each answer said the target added (a header, see
    /// [`CLAIM_HEADERS`](super::http::CLAIM_HEADERS)), µs, when it said one.
    pub claimed_us: Vec<Vec<u64>>,
}

/// A failed request in a [`RoundLog`].
pub const FAILED: u64 = u64::MAX;

struct Shared {
    stop: AtomicBool,
    target_vus: AtomicU64,
    /// Closed: running VUs. Open: requests in flight.
    active: AtomicU64,
    /// Most VUs (closed) or requests in flight (open) seen at once.
    peak: AtomicU64,
    iterations_left: AtomicI64,
    finished_threads: AtomicUsize,
    threads: Vec<Mutex<Vec<Recorder>>>,
    cpu: Mutex<Duration>,
    rounds: Mutex<Vec<RoundLog>>,
}

impl Shared {
    /// One recorder per worker thread and request of the plan.
    fn new(plan: &PhasePlan, threads: usize) -> Self {
        let iterations = match plan.shape {
            LoadShape::Closed {
                iterations: Some(n),
                ..
            } => n as i64,
            _ => i64::MAX,
        };
        let n_req = plan.requests.len();
        Self {
            stop: AtomicBool::new(false),
            target_vus: AtomicU64::new(plan.shape.vus_at(Duration::ZERO).unwrap_or(0)),
            active: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            iterations_left: AtomicI64::new(iterations),
            finished_threads: AtomicUsize::new(0),
            threads: (0..threads)
                .map(|_| Mutex::new((0..n_req).map(|_| Recorder::new()).collect()))
                .collect(),
            cpu: Mutex::new(Duration::ZERO),
            rounds: Mutex::new(Vec::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a phase to completion on dedicated threads, blocking the calling thread; or hands
/// it to `opts.runner` when one is set.
pub fn run_phase(plan: &PhasePlan, opts: &EngineOpts) -> Result<PhaseOutput, LoadError> {
    let ticks = CpuTicks::now();
    let mut out = match &opts.runner {
        // The generators' own steal warnings would repeat this machine's (said below).
        Some(runner) => {
            let mut out = runner.run(plan, opts)?;
            out.warnings
                .retain(|w| w.kind != ResultWarningKind::HostSteal);
            out
        }
        None => run_here(plan, opts)?,
    };
    let cpu = ticks.zip(CpuTicks::now()).and_then(|(a, b)| a.until(&b));
    for r in &mut out.results {
        r.host_cpu = cpu;
    }
    if !plan.warmup {
        out.warnings.extend(steal_warning(&plan.name, cpu));
    }
    Ok(out)
}

/// A `host_steal` warning when the hypervisor took a noticeable share of the machine
/// during phase `name`.
fn steal_warning(name: &str, cpu: Option<HostCpu>) -> Option<ResultWarning> {
    let cpu = cpu.filter(|c| c.steal_percent > STEAL_WARN_PERCENT)?;
    Some(ResultWarning {
        kind: ResultWarningKind::HostSteal,
        phase: Some(name.to_string()),
        message: format!(
            "the hypervisor took {:.1} % of this machine's CPU time during the phase (steal; \
             the cores were {:.0} % busy): its latencies include the VM's neighbours",
            cpu.steal_percent, cpu.busy_percent
        ),
    })
}

/// [`run_phase`] on this process's own worker threads.
fn run_here(plan: &PhasePlan, opts: &EngineOpts) -> Result<PhaseOutput, LoadError> {
    sys::raise_nofile();
    let cores = sys::allowed_cores();
    let threads = thread_count(plan, opts.threads, cores)?;
    let shared = Arc::new(Shared::new(plan, threads));
    report_started(plan, opts, Utc::now());
    let start = Instant::now();
    let handles = spawn_workers(plan, threads, start, &shared)?;
    let run = coordinate(plan, opts, &shared, start);
    let end = Instant::now();
    join_workers(handles)?;
    let measured = Measured::new(&run, &shared, start, end, cores);
    Ok(collect_results(plan, opts, &shared, run, &measured))
}

/// Tells the observer, if any, that `plan` starts `at`.
pub(crate) fn report_started(plan: &PhasePlan, opts: &EngineOpts, at: chrono::DateTime<Utc>) {
    if let Some(o) = &opts.observer {
        o.on_event(&Event::PhaseStarted {
            suite: opts.suite.clone(),
            phase: plan.name.clone(),
            warmup: plan.warmup,
            at,
        });
    }
}

/// Checks the plan can run and sizes the worker threads: `asked` (0: the allowed cores),
/// but no more than there are VUs or in-flight slots to share out.
fn thread_count(plan: &PhasePlan, asked: usize, cores: usize) -> Result<usize, LoadError> {
    let config = |why: &str| LoadError::Config {
        what: format!("phase `{}`", plan.name),
        why: why.into(),
    };
    if plan.requests.is_empty() {
        return Err(config("no request to send"));
    }
    let threads = if asked == 0 { cores } else { asked };
    let threads = match plan.shape {
        LoadShape::Closed { .. } => threads.min(plan.shape.max_vus().max(1) as usize),
        LoadShape::Open {
            rate_per_s,
            max_in_flight,
            ..
        } => {
            if !(rate_per_s > 0.0 && rate_per_s.is_finite()) || max_in_flight == 0 {
                return Err(config(
                    "the arrival rate and in-flight cap must be positive",
                ));
            }
            threads.min(max_in_flight)
        }
    };
    Ok(threads.max(1))
}

type Worker = std::thread::JoinHandle<Result<(), LoadError>>;

fn spawn_workers(
    plan: &PhasePlan,
    threads: usize,
    start: Instant,
    shared: &Arc<Shared>,
) -> Result<Vec<Worker>, LoadError> {
    (0..threads)
        .map(|t| {
            let shared = shared.clone();
            let plan = plan.clone();
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || worker_thread(t, threads, start, &plan, &shared))
                .map_err(LoadError::Runtime)
        })
        .collect()
}

/// Waits for every worker; the last failure, if any, is the phase's.
fn join_workers(handles: Vec<Worker>) -> Result<(), LoadError> {
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(LoadError::Thread("a worker thread panicked".into())),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// What the coordinating thread saw: the time series and when and why the load stopped.
struct Coordinated {
    series: Vec<Vec<TimePoint>>,
    stages: Vec<Vec<StageAcc>>,
    stopped_at: Option<Instant>,
    interrupted: bool,
}

/// The coordinating thread's loop: every 5 ms steer the load, every second (and once all
/// workers are done) take a time-series point, until every worker has finished.
fn coordinate(plan: &PhasePlan, opts: &EngineOpts, shared: &Shared, start: Instant) -> Coordinated {
    let threads = shared.threads.len();
    let mut ticker = Ticker::new(plan, opts, start);
    let mut stopping = Stopping {
        sched: plan.shape.duration(),
        stopped_at: None,
        interrupted: false,
    };
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = Instant::now();
        let el = now - start;
        if stopping.stopped_at.is_none() {
            steer(plan, opts, shared, now, el, &mut stopping);
        }
        let all_done = shared.finished_threads.load(Ordering::Acquire) == threads;
        if now >= ticker.next_tick || all_done {
            ticker.tick(now, el, all_done, shared);
        }
        if all_done {
            break;
        }
    }
    if ticker.progress {
        eprintln!();
    }
    Coordinated {
        series: ticker.series,
        stages: ticker.stages,
        stopped_at: stopping.stopped_at,
        interrupted: stopping.interrupted,
    }
}

struct Stopping {
    /// The shape's scheduled length.
    sched: Duration,
    stopped_at: Option<Instant>,
    interrupted: bool,
}

/// Sets the VU target for `el` into the phase; raises the stop flag once the schedule is
/// over or the run was cancelled.
fn steer(
    plan: &PhasePlan,
    opts: &EngineOpts,
    shared: &Shared,
    now: Instant,
    el: Duration,
    stopping: &mut Stopping,
) {
    if opts.cancel.is_cancelled() {
        stopping.interrupted = true;
    }
    match plan.shape.vus_at(el) {
        Some(v) => shared.target_vus.store(v, Ordering::Relaxed),
        None => {
            if let LoadShape::Closed { .. } = plan.shape {
                shared.target_vus.store(0, Ordering::Relaxed);
            }
        }
    }
    if stopping.interrupted || el >= stopping.sched {
        shared.stop.store(true, Ordering::Relaxed);
        stopping.stopped_at = Some(now);
    }
}

/// Builds the per-second time series on the coordinating thread, one per request of the
/// plan, and passes each point to the observer and the progress line.
struct Ticker<'a> {
    plan: &'a PhasePlan,
    opts: &'a EngineOpts,
    /// Draw the progress line (asked for, and stderr is a terminal).
    progress: bool,
    target_rate: f64,
    series: Vec<Vec<TimePoint>>,
    /// The current interval's tallies, merged from every worker.
    interval: Vec<Tally>,
    next_tick: Instant,
    last_tick: Instant,
    prev_dt: f64,
    /// Requests and failures (errors + dropped) of the first request so far.
    totals: (u64, u64),
    /// Closed shapes with several stages: per request, each stage's seconds.
    stages: Vec<Vec<StageAcc>>,
}

/// The one-second intervals of one stage, merged (an interval belongs to the stage that
/// ran at its middle).
#[derive(Default)]
struct StageAcc {
    tally: Option<Tally>,
    seconds: f64,
    peak_active: u64,
}

impl<'a> Ticker<'a> {
    fn new(plan: &'a PhasePlan, opts: &'a EngineOpts, start: Instant) -> Self {
        let n_req = plan.requests.len();
        Self {
            plan,
            opts,
            progress: opts.progress && std::io::stderr().is_terminal(),
            target_rate: match plan.shape {
                LoadShape::Open { rate_per_s, .. } => rate_per_s,
                LoadShape::Closed { .. } => 0.0,
            },
            series: vec![Vec::new(); n_req],
            interval: (0..n_req).map(|_| Tally::new()).collect(),
            next_tick: start + Duration::from_secs(1),
            last_tick: start,
            prev_dt: 0.0,
            totals: (0, 0),
            stages: (0..n_req).map(|_| Vec::new()).collect(),
        }
    }

    /// Adds the interval that ends `el` (lasting `dt` s) to the stage at its middle.
    fn add_to_stage(&mut self, el: Duration, dt: f64, active: u64) {
        let mid = el.saturating_sub(Duration::from_secs_f64(dt / 2.0));
        let Some((si, n)) = self.plan.shape.stage_at(mid) else {
            return;
        };
        if n < 2 {
            return;
        }
        for (i, accs) in self.stages.iter_mut().enumerate() {
            accs.resize_with(n, StageAcc::default);
            let acc = &mut accs[si];
            acc.tally
                .get_or_insert_with(Tally::new)
                .merge(&self.interval[i]);
            acc.seconds += dt;
            acc.peak_active = acc.peak_active.max(active);
        }
    }

    /// Adds a point per request for the interval that ends `now`.
    fn tick(&mut self, now: Instant, el: Duration, all_done: bool, shared: &Shared) {
        let dt = (now - self.last_tick).as_secs_f64();
        self.last_tick = now;
        self.next_tick += Duration::from_secs(1);
        self.take_interval(shared);
        let active = shared.active.load(Ordering::Relaxed);
        self.add_to_stage(el, dt, active);
        // A short last interval is folded into the previous point rather than
        // reported as a rate over a sliver of time.
        let fold = all_done && dt < 0.5 && !self.series[0].is_empty();
        for i in 0..self.interval.len() {
            let t = &self.interval[i];
            if fold {
                if let Some(last) = self.series[i].last_mut() {
                    fold_into(last, t, self.prev_dt + dt, el);
                }
                continue;
            }
            let p = time_point(t, el, active, self.target_rate, dt);
            if i == 0 {
                self.totals.0 += p.requests;
                self.totals.1 += p.errors + p.dropped;
            }
            self.report(i, &p);
            if i == 0 && self.progress {
                self.draw(el, active, &p);
            }
            self.series[i].push(p);
        }
        self.prev_dt = dt;
    }

    /// Moves every worker's interval tallies into `self.interval`.
    fn take_interval(&mut self, shared: &Shared) {
        for t in self.interval.iter_mut() {
            t.reset();
        }
        for th in &shared.threads {
            let mut recs = lock(th);
            for (i, r) in recs.iter_mut().enumerate() {
                self.interval[i].merge(&r.interval);
                r.interval.reset();
            }
        }
    }

    /// Measured phases only: warm-up points would mix into the live charts.
    fn report(&self, i: usize, p: &TimePoint) {
        if self.plan.warmup {
            return;
        }
        if let Some(o) = &self.opts.observer {
            o.on_event(&Event::Point {
                suite: self.opts.suite.clone(),
                phase: self.plan.requests[i].0.clone(),
                at: Utc::now(),
                point: p.clone(),
            });
        }
    }

    /// Redraws the one-line progress display on stderr.
    fn draw(&self, el: Duration, active: u64, p: &TimePoint) {
        let plan = self.plan;
        let what = match plan.shape {
            LoadShape::Closed { ref stages, .. } => match plan.shape.stage_at(el) {
                Some((i, n)) if stages.len() > 1 => format!("stage {}/{n}  vus {active}", i + 1),
                _ => format!("vus {active}"),
            },
            LoadShape::Open { .. } => format!("rate {:.0}/s", self.target_rate),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{}{} {:>5.0}s  {what}  rps {:>8.0}  p99 {:>8.2} ms  requests {}  errors {}",
            plan.name,
            if plan.warmup { " (warm-up)" } else { "" },
            el.as_secs_f64(),
            p.requests_per_s,
            p.p99_ms,
            self.totals.0,
            self.totals.1
        );
        let _ = err.flush();
    }
}

/// Adds a short last interval's counts to the previous point; `span` is both intervals.
fn fold_into(last: &mut TimePoint, t: &Tally, span: f64, el: Duration) {
    last.requests += t.requests();
    last.ok += t.ok;
    last.errors += t.errors.total();
    last.dropped += t.dropped;
    last.output_tokens += t.tokens;
    last.requests_per_s = last.requests as f64 / span;
    last.t_s = el.as_secs_f64();
}

/// The point of one interval of `dt` seconds ending `el` into the phase.
fn time_point(t: &Tally, el: Duration, active: u64, target_rate: f64, dt: f64) -> TimePoint {
    let lat = summary(&t.latency);
    let requests = t.requests();
    TimePoint {
        t_s: el.as_secs_f64(),
        active_vus: active,
        target_rate_per_s: target_rate,
        requests,
        ok: t.ok,
        errors: t.errors.total(),
        dropped: t.dropped,
        requests_per_s: if dt > 0.0 { requests as f64 / dt } else { 0.0 },
        p50_ms: lat.p50,
        p99_ms: lat.p99,
        ttft_p50_ms: summary(&t.ttft).p50,
        output_tokens: t.tokens,
    }
}

/// The phase's window and what the generator itself cost.
struct Measured {
    /// Measured window in seconds: the scheduled duration (requests finishing after the
    /// stop still count), or until the last worker finished for iteration-limited or
    /// interrupted phases.
    window: f64,
    cpu_s: f64,
    wall_s: f64,
    threads: usize,
    cores: usize,
    peak: u64,
}

impl Measured {
    fn new(run: &Coordinated, shared: &Shared, start: Instant, end: Instant, cores: usize) -> Self {
        let window = match run.stopped_at {
            Some(s) if !run.interrupted => s - start,
            _ => end - start,
        };
        Self {
            window: window.as_secs_f64().max(1e-9),
            cpu_s: lock(&shared.cpu).as_secs_f64(),
            wall_s: (end - start).as_secs_f64(),
            threads: shared.threads.len(),
            cores,
            peak: shared.peak.load(Ordering::Relaxed),
        }
    }
}

/// One result per request of the plan, with its warnings; measured phases are passed to
/// the observer.
fn collect_results(
    plan: &PhasePlan,
    opts: &EngineOpts,
    shared: &Shared,
    mut run: Coordinated,
    m: &Measured,
) -> PhaseOutput {
    let mut results = Vec::with_capacity(plan.requests.len());
    let mut warnings = Vec::new();
    for i in 0..plan.requests.len() {
        let mut total = Tally::new();
        let mut by_due: Vec<hdrhistogram::Histogram<u64>> = Vec::new();
        for th in &shared.threads {
            let rec = &lock(th)[i];
            total.merge(&rec.total);
            if !rec.by_due.is_empty() && by_due.is_empty() {
                by_due = (0..DUE_PARTS).map(|_| histogram()).collect();
            }
            for (acc, h) in by_due.iter_mut().zip(&rec.by_due) {
                // Same bounds on both sides: adding cannot fail.
                let _ = acc.add(h);
            }
        }
        let mut r = phase_result(plan, i, &total, m, std::mem::take(&mut run.series[i]));
        r.latency_by_due_ms = by_due.iter().map(summary).collect();
        if let Some(h) = r.histograms.as_mut() {
            // All or none: a partial list would file parts under the wrong quarter.
            let encoded: Option<Vec<String>> = by_due.iter().map(super::merge::encode).collect();
            h.latency_by_due_us = encoded.unwrap_or_default();
        }
        r.stages = stage_results(&plan.shape, &run.stages[i], r.stream);
        warnings.extend(phase_warnings(&r));
        if let Some(w) = lag_warning(&r.name, &total.lag) {
            warnings.push(w);
        }
        if let Some(o) = opts.observer.as_ref().filter(|_| !plan.warmup) {
            o.on_event(&Event::PhaseFinished {
                suite: opts.suite.clone(),
                result: Box::new(r.clone()),
            });
        }
        results.push(r);
    }
    let mut rounds = std::mem::take(&mut *lock(&shared.rounds));
    rounds.retain(|r| r.latency_us.iter().any(|l| !l.is_empty()));
    PhaseOutput {
        results,
        warnings,
        interrupted: run.interrupted,
        rounds,
    }
}

/// Per-stage figures of a closed shape with several stages.
fn stage_results(shape: &LoadShape, accs: &[StageAcc], stream: bool) -> Vec<StageResult> {
    let LoadShape::Closed { stages, .. } = shape else {
        return Vec::new();
    };
    let starts: Vec<f64> = stages
        .iter()
        .scan(0.0, |at, s| {
            let start = *at;
            *at += s.duration.as_secs_f64();
            Some(start)
        })
        .collect();
    accs.iter()
        .zip(stages)
        .enumerate()
        .filter_map(|(i, (a, s))| {
            let t = a.tally.as_ref()?;
            let requests = t.requests();
            Some(StageResult {
                start_s: starts.get(i).copied(),
                ttft_ms: stream.then(|| summary(&t.ttft)),
                itl_ms: stream.then(|| summary(&t.itl)),
                rig_refused: t.rig_refused,
                stage: i as u64,
                target_vus: s.target,
                peak_active_vus: a.peak_active,
                duration_s: a.seconds,
                requests,
                errors: t.errors.total(),
                requests_per_s: requests as f64 / a.seconds.max(1e-9),
                latency_ms: summary(&t.latency),
            })
        })
        .collect()
}

/// The result of request `i` of the plan from its whole-phase tally.
fn phase_result(
    plan: &PhasePlan,
    i: usize,
    total: &Tally,
    m: &Measured,
    timeseries: Vec<TimePoint>,
) -> PhaseResult {
    let (label, req) = &plan.requests[i];
    let sent = total.requests();
    let errors = total.errors.total();
    let achieved = sent as f64 / m.window;
    let (model, vus, target_rate_per_s, short) = match plan.shape {
        LoadShape::Closed { .. } => (LoadModel::Closed, Some(m.peak), None, true),
        LoadShape::Open { rate_per_s, .. } => {
            let n_req = plan.requests.len() as f64;
            let short = achieved < 0.95 * rate_per_s / n_req || total.dropped > 0;
            (LoadModel::Open, None, Some(rate_per_s), short)
        }
    };
    let stream = req.stream;
    PhaseResult {
        name: label.clone(),
        model,
        url: req.endpoint.url.clone(),
        duration_s: m.window,
        started_s: None,
        stages: Vec::new(),
        vus,
        target_rate_per_s,
        stream,
        requests: RequestCounts {
            total: sent,
            ok: total.ok,
            errors: total.errors.clone(),
            dropped: total.dropped,
            rig_refused: total.rig_refused,
            error_percent: if sent > 0 {
                errors as f64 * 100.0 / sent as f64
            } else {
                0.0
            },
        },
        throughput: Throughput {
            requests_per_s: achieved,
            ok_per_s: total.ok as f64 / m.window,
            output_tokens_per_s: total.tokens as f64 / m.window,
        },
        latency_ms: summary(&total.latency),
        ttfb_ms: summary(&total.ttfb),
        ttft_ms: stream.then(|| summary(&total.ttft)),
        itl_ms: stream.then(|| summary(&total.itl)),
        tpot_ms: stream.then(|| summary(&total.tpot)),
        output_tokens: total.tokens,
        generator: GeneratorCost {
            cpu_seconds: m.cpu_s,
            cpu_percent: m.cpu_s * 100.0 / m.wall_s.max(1e-9),
            threads: m.threads as u64,
            cores: m.cores as u64,
            bound: short && saturated(m.cpu_s, m.wall_s, m.threads, m.cores),
            start_lag_ms: None,
        },
        percentile_curve: curve(&total.latency),
        timeseries,
        latency_by_due_ms: Vec::new(),
        histograms: super::merge::histograms_of(total, stream),
        generators: Vec::new(),
        host_cpu: None,
    }
}

/// Open model: a warning when the generator sent requests more than 1 ms after they were
/// due at p99 (that lateness is inside the measured latency).
fn lag_warning(phase: &str, lag: &hdrhistogram::Histogram<u64>) -> Option<ResultWarning> {
    if lag.is_empty() || lag.value_at_quantile(0.99) <= 1000 {
        return None;
    }
    let s = summary(lag);
    Some(ResultWarning {
        kind: ResultWarningKind::GeneratorLate,
        phase: Some(phase.to_string()),
        message: format!(
            "the load generator sent requests late: send lag after the due time p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (included in the latency figures)",
            s.p50, s.p99, s.max
        ),
    })
}

/// Whether the generator's worker threads kept their usable cores (the fewer of threads
/// and allowed cores) at least 90% busy over the phase.
pub fn saturated(cpu_s: f64, wall_s: f64, threads: usize, cores: usize) -> bool {
    let usable = threads.min(cores).max(1) as f64;
    wall_s > 0.0 && cpu_s / wall_s >= 0.9 * usable
}

/// Warnings a phase's figures call for.
pub fn phase_warnings(r: &PhaseResult) -> Vec<ResultWarning> {
    let mut w = Vec::new();
    let phase = Some(r.name.clone());
    if r.generator.bound {
        w.push(ResultWarning {
            kind: ResultWarningKind::LoadGeneratorBound,
            phase: phase.clone(),
            message: format!(
                "the load generator used {:.0}% CPU on {} thread(s) / {} allowed core(s) and reached {:.1} requests/s{}: these figures show the generator's limit, not the target's",
                r.generator.cpu_percent,
                r.generator.threads,
                r.generator.cores,
                r.throughput.requests_per_s,
                match r.target_rate_per_s {
                    Some(rate) => format!(" of {rate:.1} scheduled ({} dropped)", r.requests.dropped),
                    None => String::new(),
                }
            ),
        });
    }
    if r.requests.dropped > 0 {
        w.push(ResultWarning {
            kind: ResultWarningKind::Dropped,
            phase: phase.clone(),
            message: format!(
                "{} requests were due while the in-flight cap was reached and were not sent",
                r.requests.dropped
            ),
        });
    }
    if r.requests.rig_refused > 0 {
        w.push(ResultWarning {
            kind: ResultWarningKind::RigRefused,
            phase: phase.clone(),
            message: format!(
                "the load generator could not open {} connection(s) itself (file descriptors or local ports): counted as rig_refused, not as the target's errors",
                r.requests.rig_refused
            ),
        });
    }
    if r.requests.total > 0 && r.requests.ok == 0 {
        w.push(ResultWarning {
            kind: ResultWarningKind::NoSuccess,
            phase: phase.clone(),
            message: format!(
                "no request succeeded ({} sent); errors: {:?}",
                r.requests.total, r.requests.errors
            ),
        });
    } else if r.requests.error_percent > 1.0 {
        w.push(ResultWarning {
            kind: ResultWarningKind::HighErrorRate,
            phase,
            message: format!(
                "{:.2}% of requests failed: {:?}",
                r.requests.error_percent, r.requests.errors
            ),
        });
    }
    w
}

fn worker_thread(
    t: usize,
    threads: usize,
    start: Instant,
    plan: &PhasePlan,
    shared: &Arc<Shared>,
) -> Result<(), LoadError> {
    sys::tight_timer_slack();
    let cpu0 = sys::thread_cpu_time();
    let result = (|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LoadError::Runtime)?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            match plan.shape {
                LoadShape::Closed { .. } => {
                    let max = plan.shape.max_vus() as usize;
                    let mut tasks = Vec::new();
                    for vu in (t..max).step_by(threads) {
                        let shared = shared.clone();
                        let plan = plan.clone();
                        tasks.push(tokio::task::spawn_local(async move {
                            vu_loop(vu as u64, &plan, &shared).await;
                        }));
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                    Ok(())
                }
                LoadShape::Open {
                    rate_per_s,
                    duration,
                    max_in_flight,
                } => {
                    let schedule = Schedule {
                        thread: t,
                        threads,
                        start,
                        interval: 1.0 / rate_per_s,
                        end: start + duration,
                        max_slots: max_in_flight.div_ceil(threads),
                    };
                    open_loop(&schedule, plan, shared).await
                }
            }
        })
    })();
    *lock(&shared.cpu) += sys::thread_cpu_time().saturating_sub(cpu0);
    shared.finished_threads.fetch_add(1, Ordering::Release);
    result
}

/// What one VU or open-model slot sends with: a kept-alive connection per request of the
/// plan and the answer's scratch space, recording into its thread's recorders.
struct Sender<'a> {
    plan: &'a PhasePlan,
    shared: &'a Shared,
    thread: usize,
    conns: Vec<Option<Conn>>,
    scratch: Scratch,
    /// Kept by closed VUs of interleaved plans (see [`RoundLog`]).
    log: Option<RoundLog>,
    /// Open model: the schedule's start and length, to file latency by due part.
    schedule: Option<(Instant, f64)>,
}

impl<'a> Sender<'a> {
    fn new(plan: &'a PhasePlan, shared: &'a Shared, thread: usize) -> Self {
        Self {
            plan,
            shared,
            thread,
            conns: (0..plan.requests.len()).map(|_| None).collect(),
            scratch: Scratch::new(),
            log: None,
            schedule: None,
        }
    }

    /// Sends request `idx` (with the plan's timeout) and records its outcome; `from` is
    /// when the request counts as started (closed: now; open: its due time, and how late
    /// it went out is recorded). True when it failed.
    async fn send(&mut self, from: Instant, idx: usize, open: bool) -> bool {
        let lag_us =
            open.then(|| Instant::now().saturating_duration_since(from).as_micros() as u64);
        let conn = &mut self.conns[idx];
        let req = &self.plan.requests[idx].1;
        let res =
            match tokio::time::timeout(self.plan.timeout, exchange(conn, req, &mut self.scratch))
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    *conn = None;
                    Err(ErrorClass::Timeout)
                }
            };
        let us = |a: Instant| a.saturating_duration_since(from).as_micros() as u64;
        let due_part = self.schedule.map(|(start, len)| {
            let at = from.saturating_duration_since(start).as_secs_f64() / len.max(1e-9);
            ((at * DUE_PARTS as f64) as usize).min(DUE_PARTS - 1)
        });
        if let Some(log) = &mut self.log {
            log.latency_us[idx].push(res.as_ref().map_or(FAILED, |t| us(t.end)));
            if let Some(c) = res.as_ref().ok().and_then(|t| t.claimed_us) {
                log.claimed_us[idx].push(c);
            }
        }
        let mut recs = lock(&self.shared.threads[self.thread]);
        let rec = &mut recs[idx];
        if let Some(us) = lag_us {
            rec.lag(us);
        }
        match res {
            Ok(Timing {
                first_byte,
                end,
                first_token,
                tokens,
                ..
            }) => rec.ok(&OkSample {
                latency_us: us(end),
                ttfb_us: us(first_byte),
                ttft_us: first_token.map(us),
                gaps_us: &self.scratch.gaps,
                tokens,
                due_part,
            }),
            Err(class) => {
                rec.error(class);
                return true;
            }
        }
        false
    }

    fn drop_connections(&mut self) {
        self.conns.iter_mut().for_each(|c| *c = None);
    }
}

async fn vu_loop(vu: u64, plan: &PhasePlan, shared: &Shared) {
    let threads = shared.threads.len();
    let mut sender = Sender::new(plan, shared, vu as usize % threads);
    let n = plan.requests.len();
    if n > 1 {
        sender.log = Some(RoundLog {
            latency_us: vec![Vec::new(); n],
            claimed_us: vec![Vec::new(); n],
        });
    }
    let mut active = false;
    let mut k = 0usize;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if vu >= shared.target_vus.load(Ordering::Relaxed) {
            if active {
                active = false;
                shared.active.fetch_sub(1, Ordering::Relaxed);
                sender.drop_connections();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        if !active {
            active = true;
            let now_active = shared.active.fetch_add(1, Ordering::Relaxed) + 1;
            shared.peak.fetch_max(now_active, Ordering::Relaxed);
        }
        if shared.iterations_left.fetch_sub(1, Ordering::Relaxed) <= 0 {
            break;
        }
        let i = k % n;
        k = k.wrapping_add(1);
        if sender.send(Instant::now(), i, false).await {
            // Failures can complete without ever waiting (refused connects): let the
            // thread's other VUs run.
            tokio::task::yield_now().await;
        }
    }
    if active {
        shared.active.fetch_sub(1, Ordering::Relaxed);
    }
    if let Some(log) = sender.log.take() {
        lock(&shared.rounds).push(log);
    }
}

/// The open model's arrivals on one worker thread: `thread`, `thread + threads`, … of
/// one schedule `interval` seconds apart, until `end`.
struct Schedule {
    thread: usize,
    threads: usize,
    start: Instant,
    interval: f64,
    end: Instant,
    /// This thread's share of the in-flight cap.
    max_slots: usize,
}

async fn open_loop(s: &Schedule, plan: &PhasePlan, shared: &Arc<Shared>) -> Result<(), LoadError> {
    let timer = sys::PreciseTimer::new().map_err(LoadError::Runtime)?;
    let n = plan.requests.len();
    let span = (s.end - s.start).as_secs_f64();
    let mut pool = Pool::new(plan, shared, s.thread, s.max_slots, (s.start, span));
    let mut k: u64 = 0;
    let mut since_yield = 0u32;
    loop {
        let seq = k * s.threads as u64 + s.thread as u64;
        let due = s.start + Duration::from_secs_f64(seq as f64 * s.interval);
        if due >= s.end || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        pace(&timer, due, &mut since_yield).await?;
        let which = (seq % n as u64) as usize;
        if !pool.dispatch(due, which) {
            lock(&shared.threads[s.thread])[which].dropped();
        }
        k += 1;
    }
    pool.close().await;
    Ok(())
}

/// Sleeps until `due`; when already (nearly) late, sends at once but yields every 32
/// sends so the slots' tasks get to run.
async fn pace(
    timer: &sys::PreciseTimer,
    due: Instant,
    since_yield: &mut u32,
) -> Result<(), LoadError> {
    let now = Instant::now();
    if due > now + Duration::from_micros(20) {
        timer.sleep_until(due).await.map_err(LoadError::Runtime)?;
        *since_yield = 0;
    } else {
        *since_yield += 1;
        if *since_yield >= 32 {
            *since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// A pool slot of the open model: one task, one connection, one request at a time.
struct Slot {
    job: Cell<Option<(Instant, usize)>>,
    wake: Notify,
}

/// The open model's slots on one worker thread, started on demand up to `max`.
struct Pool<'a> {
    plan: &'a PhasePlan,
    shared: &'a Arc<Shared>,
    thread: usize,
    max: usize,
    /// The schedule's start and length (see [`Sender`]).
    schedule: (Instant, f64),
    slots: Vec<Rc<Slot>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    idle: Rc<RefCell<Vec<usize>>>,
    closing: Rc<Cell<bool>>,
}

impl<'a> Pool<'a> {
    fn new(
        plan: &'a PhasePlan,
        shared: &'a Arc<Shared>,
        thread: usize,
        max: usize,
        schedule: (Instant, f64),
    ) -> Self {
        Self {
            plan,
            shared,
            thread,
            max,
            schedule,
            slots: Vec::new(),
            tasks: Vec::new(),
            idle: Rc::new(RefCell::new(Vec::new())),
            closing: Rc::new(Cell::new(false)),
        }
    }

    /// Hands request `which`, due at `due`, to an idle slot or a new one; false when
    /// every slot is busy (the request is dropped).
    fn dispatch(&mut self, due: Instant, which: usize) -> bool {
        let free = self.idle.borrow_mut().pop();
        match free {
            Some(s) => {
                self.slots[s].job.set(Some((due, which)));
                self.slots[s].wake.notify_one();
            }
            None if self.slots.len() < self.max => self.spawn_slot(due, which),
            None => return false,
        }
        true
    }

    fn spawn_slot(&mut self, due: Instant, which: usize) {
        let slot = Rc::new(Slot {
            job: Cell::new(Some((due, which))),
            wake: Notify::new(),
        });
        let id = self.slots.len();
        self.slots.push(slot.clone());
        let idle = self.idle.clone();
        let closing = self.closing.clone();
        let shared = self.shared.clone();
        let plan = self.plan.clone();
        let thread = self.thread;
        let schedule = self.schedule;
        self.tasks.push(tokio::task::spawn_local(async move {
            let mut sender = Sender::new(&plan, &shared, thread);
            sender.schedule = Some(schedule);
            loop {
                if let Some((due, i)) = slot.job.take() {
                    shared.active.fetch_add(1, Ordering::Relaxed);
                    sender.send(due, i, true).await;
                    shared.active.fetch_sub(1, Ordering::Relaxed);
                    idle.borrow_mut().push(id);
                }
                if closing.get() {
                    break;
                }
                slot.wake.notified().await;
            }
        }));
    }

    /// Lets every slot finish its request, then waits for their tasks.
    async fn close(self) {
        self.closing.set(true);
        for s in &self.slots {
            s.wake.notify_one();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn steal_over_two_percent_is_a_warning_on_the_phase() {
        let cpu = |steal_percent| {
            Some(HostCpu {
                busy_percent: 60.0,
                steal_percent,
            })
        };
        assert_eq!(steal_warning("p", cpu(1.5)), None);
        assert_eq!(steal_warning("p", None), None);
        let w = steal_warning("p", cpu(7.31)).unwrap();
        assert_eq!(w.kind, ResultWarningKind::HostSteal);
        assert_eq!(w.phase.as_deref(), Some("p"));
        assert!(w.message.contains("7.3 %"), "{}", w.message);
    }

    #[test]
    fn late_sends_are_flagged() {
        let mut h = crate::load::stats::histogram();
        for _ in 0..100 {
            h.record(50).unwrap();
        }
        assert!(lag_warning("p", &h).is_none());
        for _ in 0..5 {
            h.record(3000).unwrap();
        }
        let w = lag_warning("p", &h).unwrap();
        assert_eq!(w.kind, ResultWarningKind::GeneratorLate);
        assert!(w.message.contains("p99 3.00"), "{}", w.message);
    }

    #[test]
    fn saturation_uses_the_usable_cores() {
        assert!(saturated(0.95, 1.0, 1, 2));
        assert!(!saturated(0.95, 1.0, 2, 2));
        assert!(saturated(1.9, 1.0, 4, 2));
        assert!(!saturated(0.5, 1.0, 1, 1));
        assert!(!saturated(1.0, 0.0, 1, 1));
    }

    #[test]
    fn bound_phase_gets_a_warning() {
        let r = PhaseResult {
            name: "rate-1000".into(),
            model: LoadModel::Open,
            url: "http://127.0.0.1:1/v1/chat/completions".into(),
            duration_s: 1.0,
            started_s: None,
            stages: Vec::new(),
            vus: None,
            target_rate_per_s: Some(1000.0),
            stream: false,
            requests: RequestCounts {
                total: 700,
                ok: 700,
                dropped: 300,
                ..Default::default()
            },
            throughput: Throughput {
                requests_per_s: 700.0,
                ..Default::default()
            },
            latency_ms: Default::default(),
            ttfb_ms: Default::default(),
            ttft_ms: None,
            itl_ms: None,
            tpot_ms: None,
            output_tokens: 0,
            generator: GeneratorCost {
                cpu_seconds: 0.98,
                cpu_percent: 98.0,
                threads: 1,
                cores: 1,
                bound: true,
                start_lag_ms: None,
            },
            percentile_curve: vec![],
            timeseries: vec![],
            latency_by_due_ms: vec![],
            histograms: None,
            generators: Vec::new(),
            host_cpu: None,
        };
        let w = phase_warnings(&r);
        let bound = w
            .iter()
            .find(|w| w.kind == ResultWarningKind::LoadGeneratorBound)
            .unwrap();
        assert!(bound.message.contains("98%"), "{}", bound.message);
        assert!(
            bound.message.contains("of 1000.0 scheduled (300 dropped)"),
            "{}",
            bound.message
        );
        assert!(w.iter().any(|w| w.kind == ResultWarningKind::Dropped));
    }

    #[test]
    fn stages_interpolate_like_k6() {
        let shape = LoadShape::Closed {
            start_vus: 0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(10),
                    target: 10,
                },
                Stage {
                    duration: Duration::ZERO,
                    target: 20,
                },
                Stage {
                    duration: Duration::from_secs(10),
                    target: 20,
                },
                Stage {
                    duration: Duration::from_secs(10),
                    target: 0,
                },
            ],
            iterations: None,
        };
        let at = |s: f64| shape.vus_at(Duration::from_secs_f64(s));
        assert_eq!(at(0.0), Some(0));
        assert_eq!(at(5.0), Some(5));
        assert_eq!(at(10.0), Some(20));
        assert_eq!(at(15.0), Some(20));
        assert_eq!(at(25.0), Some(10));
        assert_eq!(at(30.0), None);
        assert_eq!(shape.max_vus(), 20);
        assert_eq!(shape.duration(), Duration::from_secs(30));
    }
}
