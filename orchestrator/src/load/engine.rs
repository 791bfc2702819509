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
use tokio::sync::Notify;

use super::http::{exchange, Conn, Scratch, Timing};
use super::request::PreparedRequest;
use super::result::{
    GeneratorCost, LoadModel, PhaseResult, RequestCounts, ResultWarning, ResultWarningKind,
    Throughput, TimePoint,
};
use super::stats::{curve, summary, ErrorClass, OkSample, Recorder, Tally};
use super::sys;
use super::{CancelToken, Event, LoadError, Observer};

/// One closed-model stage: move linearly from the previous VU count to `target` over
/// `duration` (k6 `stages`). A zero duration jumps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: u64,
}

/// How load is applied during a phase.
#[derive(Debug, Clone, PartialEq)]
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
    fn stage_at(&self, t: Duration) -> Option<(usize, usize)> {
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
}

/// The results of one phase.
#[derive(Debug, Clone)]
pub struct PhaseOutput {
    pub results: Vec<PhaseResult>,
    pub warnings: Vec<ResultWarning>,
    pub interrupted: bool,
}

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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a phase to completion on dedicated threads, blocking the calling thread.
pub fn run_phase(plan: &PhasePlan, opts: &EngineOpts) -> Result<PhaseOutput, LoadError> {
    if plan.requests.is_empty() {
        return Err(LoadError::Config {
            what: format!("phase `{}`", plan.name),
            why: "no request to send".into(),
        });
    }
    let cores = sys::allowed_cores();
    let mut threads = if opts.threads == 0 {
        cores
    } else {
        opts.threads
    };
    if let LoadShape::Closed { .. } = plan.shape {
        threads = threads.min(plan.shape.max_vus().max(1) as usize);
    }
    if let LoadShape::Open {
        rate_per_s,
        max_in_flight,
        ..
    } = plan.shape
    {
        if !(rate_per_s > 0.0 && rate_per_s.is_finite()) || max_in_flight == 0 {
            return Err(LoadError::Config {
                what: format!("phase `{}`", plan.name),
                why: "the arrival rate and in-flight cap must be positive".into(),
            });
        }
        threads = threads.min(max_in_flight);
    }
    let threads = threads.max(1);
    let n_req = plan.requests.len();
    let iterations = match plan.shape {
        LoadShape::Closed {
            iterations: Some(n),
            ..
        } => n as i64,
        _ => i64::MAX,
    };
    let shared = Arc::new(Shared {
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
    });

    if let Some(o) = &opts.observer {
        o.on_event(&Event::PhaseStarted {
            suite: opts.suite.clone(),
            phase: plan.name.clone(),
            warmup: plan.warmup,
            at: Utc::now(),
        });
    }

    let start = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let shared = shared.clone();
        let plan = plan.clone();
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || worker_thread(t, threads, start, &plan, &shared))
            .map_err(LoadError::Runtime)?;
        handles.push(h);
    }

    let progress = opts.progress && std::io::stderr().is_terminal();
    let mut series: Vec<Vec<TimePoint>> = vec![Vec::new(); n_req];
    let mut interval: Vec<Tally> = (0..n_req).map(|_| Tally::new()).collect();
    let mut next_tick = start + Duration::from_secs(1);
    let mut last_tick = start;
    let mut stopped_at: Option<Instant> = None;
    let mut interrupted = false;
    let sched = plan.shape.duration();
    let target_rate = match plan.shape {
        LoadShape::Open { rate_per_s, .. } => rate_per_s,
        LoadShape::Closed { .. } => 0.0,
    };
    let mut prev_dt = 0.0f64;
    let mut totals = (0u64, 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = Instant::now();
        let el = now - start;
        if stopped_at.is_none() {
            if opts.cancel.is_cancelled() {
                interrupted = true;
            }
            match plan.shape.vus_at(el) {
                Some(v) => shared.target_vus.store(v, Ordering::Relaxed),
                None => {
                    if let LoadShape::Closed { .. } = plan.shape {
                        shared.target_vus.store(0, Ordering::Relaxed);
                    }
                }
            }
            if interrupted || el >= sched {
                shared.stop.store(true, Ordering::Relaxed);
                stopped_at = Some(now);
            }
        }
        let all_done = shared.finished_threads.load(Ordering::Acquire) == threads;
        if now >= next_tick || all_done {
            let dt = (now - last_tick).as_secs_f64();
            last_tick = now;
            next_tick += Duration::from_secs(1);
            for t in interval.iter_mut() {
                t.reset();
            }
            for th in &shared.threads {
                let mut recs = lock(th);
                for (i, r) in recs.iter_mut().enumerate() {
                    interval[i].merge(&r.interval);
                    r.interval.reset();
                }
            }
            let active = shared.active.load(Ordering::Relaxed);
            // A short last interval is folded into the previous point rather than
            // reported as a rate over a sliver of time.
            let fold = all_done && dt < 0.5 && !series[0].is_empty();
            for (i, t) in interval.iter().enumerate() {
                if fold {
                    if let Some(last) = series[i].last_mut() {
                        last.requests += t.requests();
                        last.ok += t.ok;
                        last.errors += t.errors.total();
                        last.dropped += t.dropped;
                        last.output_tokens += t.tokens;
                        last.requests_per_s = last.requests as f64 / (prev_dt + dt);
                        last.t_s = el.as_secs_f64();
                    }
                    continue;
                }
                let lat = summary(&t.latency);
                let requests = t.requests();
                let p = TimePoint {
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
                };
                if i == 0 {
                    totals.0 += requests;
                    totals.1 += t.errors.total() + t.dropped;
                }
                if !plan.warmup {
                    if let Some(o) = &opts.observer {
                        o.on_event(&Event::Point {
                            suite: opts.suite.clone(),
                            phase: plan.requests[i].0.clone(),
                            at: Utc::now(),
                            point: p.clone(),
                        });
                    }
                }
                if i == 0 && progress {
                    let what = match plan.shape {
                        LoadShape::Closed { ref stages, .. } => match plan.shape.stage_at(el) {
                            Some((i, n)) if stages.len() > 1 => {
                                format!("stage {}/{n}  vus {active}", i + 1)
                            }
                            _ => format!("vus {active}"),
                        },
                        LoadShape::Open { .. } => format!("rate {target_rate:.0}/s"),
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
                        totals.0,
                        totals.1
                    );
                    let _ = err.flush();
                }
                series[i].push(p);
            }
            prev_dt = dt;
        }
        if all_done {
            break;
        }
    }
    if progress {
        eprintln!();
    }
    let end = Instant::now();
    let mut thread_failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => thread_failure = Some(e),
            Err(_) => thread_failure = Some(LoadError::Thread("a worker thread panicked".into())),
        }
    }
    if let Some(e) = thread_failure {
        return Err(e);
    }

    // Measured window: the scheduled duration (requests finishing after the stop still
    // count), or until the last worker finished for iteration-limited phases.
    let window = match stopped_at {
        Some(s) if !interrupted => s - start,
        _ => end - start,
    }
    .as_secs_f64()
    .max(1e-9);
    let cpu = *lock(&shared.cpu);
    let cpu_s = cpu.as_secs_f64();
    let wall_s = (end - start).as_secs_f64();

    let mut results = Vec::with_capacity(n_req);
    let mut warnings = Vec::new();
    for (i, (label, req)) in plan.requests.iter().enumerate() {
        let mut total = Tally::new();
        for th in &shared.threads {
            total.merge(&lock(th)[i].total);
        }
        let sent = total.requests();
        let errors = total.errors.total();
        let achieved = sent as f64 / window;
        let short = match plan.shape {
            LoadShape::Open { rate_per_s, .. } => {
                achieved < 0.95 * rate_per_s / n_req as f64 || total.dropped > 0
            }
            LoadShape::Closed { .. } => true,
        };
        let bound = short && saturated(cpu_s, wall_s, threads, cores);
        let stream = req.stream;
        let r = PhaseResult {
            name: label.clone(),
            model: match plan.shape {
                LoadShape::Closed { .. } => LoadModel::Closed,
                LoadShape::Open { .. } => LoadModel::Open,
            },
            url: req.endpoint.url.clone(),
            duration_s: window,
            vus: match plan.shape {
                LoadShape::Closed { .. } => Some(shared.peak.load(Ordering::Relaxed)),
                LoadShape::Open { .. } => None,
            },
            target_rate_per_s: match plan.shape {
                LoadShape::Open { rate_per_s, .. } => Some(rate_per_s),
                LoadShape::Closed { .. } => None,
            },
            stream,
            requests: RequestCounts {
                total: sent,
                ok: total.ok,
                errors: total.errors.clone(),
                dropped: total.dropped,
                error_percent: if sent > 0 {
                    errors as f64 * 100.0 / sent as f64
                } else {
                    0.0
                },
            },
            throughput: Throughput {
                requests_per_s: achieved,
                ok_per_s: total.ok as f64 / window,
                output_tokens_per_s: total.tokens as f64 / window,
            },
            latency_ms: summary(&total.latency),
            ttfb_ms: summary(&total.ttfb),
            ttft_ms: stream.then(|| summary(&total.ttft)),
            itl_ms: stream.then(|| summary(&total.itl)),
            tpot_ms: stream.then(|| summary(&total.tpot)),
            output_tokens: total.tokens,
            generator: GeneratorCost {
                cpu_seconds: cpu_s,
                cpu_percent: cpu_s * 100.0 / (end - start).as_secs_f64().max(1e-9),
                threads: threads as u64,
                cores: cores as u64,
                bound,
            },
            percentile_curve: curve(&total.latency),
            timeseries: std::mem::take(&mut series[i]),
        };
        warnings.extend(phase_warnings(&r));
        if let Some(w) = lag_warning(&r.name, &total.lag) {
            warnings.push(w);
        }
        if let Some(o) = &opts.observer {
            if !plan.warmup {
                o.on_event(&Event::PhaseFinished {
                    suite: opts.suite.clone(),
                    result: Box::new(r.clone()),
                });
            }
        }
        results.push(r);
    }
    Ok(PhaseOutput {
        results,
        warnings,
        interrupted,
    })
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
                    let slots = max_in_flight.div_ceil(threads);
                    open_loop(t, threads, start, rate_per_s, duration, slots, plan, shared).await
                }
            }
        })
    })();
    *lock(&shared.cpu) += sys::thread_cpu_time().saturating_sub(cpu0);
    shared.finished_threads.fetch_add(1, Ordering::Release);
    result
}

/// Sends one request (with timeout) and records its outcome; `from` is when the request
/// counts as started (closed: now; open: its due time).
#[allow(clippy::too_many_arguments)]
async fn send_and_record(
    from: Instant,
    idx: usize,
    conn: &mut Option<Conn>,
    req: &PreparedRequest,
    scratch: &mut Scratch,
    timeout: Duration,
    shared: &Shared,
    thread: usize,
    open: bool,
) -> bool {
    let lag_us = open.then(|| Instant::now().saturating_duration_since(from).as_micros() as u64);
    let res = match tokio::time::timeout(timeout, exchange(conn, req, scratch)).await {
        Ok(r) => r,
        Err(_) => {
            *conn = None;
            Err(ErrorClass::Timeout)
        }
    };
    let us = |a: Instant| a.saturating_duration_since(from).as_micros() as u64;
    let mut recs = lock(&shared.threads[thread]);
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
        }) => rec.ok(&OkSample {
            latency_us: us(end),
            ttfb_us: us(first_byte),
            ttft_us: first_token.map(us),
            gaps_us: &scratch.gaps,
            tokens,
        }),
        Err(class) => {
            rec.error(class);
            return true;
        }
    }
    false
}

async fn vu_loop(vu: u64, plan: &PhasePlan, shared: &Shared) {
    let threads = shared.threads.len();
    let thread = vu as usize % threads;
    let n = plan.requests.len();
    let mut conns: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
    let mut scratch = Scratch::new();
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
                conns.iter_mut().for_each(|c| *c = None);
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
        let from = Instant::now();
        let failed = send_and_record(
            from,
            i,
            &mut conns[i],
            &plan.requests[i].1,
            &mut scratch,
            plan.timeout,
            shared,
            thread,
            false,
        )
        .await;
        if failed {
            // Failures can complete without ever waiting (refused connects): let the
            // thread's other VUs run.
            tokio::task::yield_now().await;
        }
    }
    if active {
        shared.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pool slot of the open model: one task, one connection, one request at a time.
struct Slot {
    job: Cell<Option<(Instant, usize)>>,
    wake: Notify,
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    t: usize,
    threads: usize,
    start: Instant,
    rate: f64,
    duration: Duration,
    max_slots: usize,
    plan: &PhasePlan,
    shared: &Arc<Shared>,
) -> Result<(), LoadError> {
    let timer = sys::PreciseTimer::new().map_err(LoadError::Runtime)?;
    let n = plan.requests.len();
    let idle: Rc<RefCell<Vec<usize>>> = Rc::new(RefCell::new(Vec::new()));
    let closing = Rc::new(Cell::new(false));
    let mut slots: Vec<Rc<Slot>> = Vec::new();
    let mut tasks = Vec::new();
    let interval = 1.0 / rate;
    let end = start + duration;
    let mut k: u64 = 0;
    let mut since_yield = 0u32;
    loop {
        let seq = k * threads as u64 + t as u64;
        let due = start + Duration::from_secs_f64(seq as f64 * interval);
        if due >= end || shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if due > now + Duration::from_micros(20) {
            timer.sleep_until(due).await.map_err(LoadError::Runtime)?;
            since_yield = 0;
        } else {
            since_yield += 1;
            if since_yield >= 32 {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
        }
        let which = (seq % n as u64) as usize;
        let free = idle.borrow_mut().pop();
        match free {
            Some(s) => {
                slots[s].job.set(Some((due, which)));
                slots[s].wake.notify_one();
            }
            None if slots.len() < max_slots => {
                let slot = Rc::new(Slot {
                    job: Cell::new(Some((due, which))),
                    wake: Notify::new(),
                });
                let id = slots.len();
                slots.push(slot.clone());
                let idle = idle.clone();
                let closing = closing.clone();
                let shared = shared.clone();
                let plan = plan.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    let mut conns: Vec<Option<Conn>> =
                        (0..plan.requests.len()).map(|_| None).collect();
                    let mut scratch = Scratch::new();
                    loop {
                        if let Some((due, i)) = slot.job.take() {
                            shared.active.fetch_add(1, Ordering::Relaxed);
                            send_and_record(
                                due,
                                i,
                                &mut conns[i],
                                &plan.requests[i].1,
                                &mut scratch,
                                plan.timeout,
                                &shared,
                                t,
                                true,
                            )
                            .await;
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
            None => lock(&shared.threads[t])[which].dropped(),
        }
        k += 1;
    }
    closing.set(true);
    for s in &slots {
        s.wake.notify_one();
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

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
            },
            percentile_curve: vec![],
            timeseries: vec![],
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
