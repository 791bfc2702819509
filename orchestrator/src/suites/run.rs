//! Running a suite against a target: warm-ups, phases, the overhead comparison and the
//! frontier search, assembled into one [`SuiteResult`].

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::def::{Phase, Profile, ProfileDef, SuiteDef, SuiteKind};
use super::faults::{self, FaultControl};
use super::{frontier, paired};
use crate::load::engine::{run_phase, EngineOpts, LoadShape, PhasePlan, RoundLog};
use crate::load::request::{PreparedRequest, RequestSpec};
use crate::load::result::{
    Overhead, PhaseResult, ResultWarning, ResultWarningKind, SuiteResult, SCHEMA_VERSION,
};
use crate::load::settle::{self, Settle, Settled};
use crate::load::{CancelToken, LoadError, Observer};

/// What to measure: a name for the results and the URL(s) to load.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetSpec {
    /// `direct`, `gateway`, `litellm`, ...; used in result file names.
    pub name: String,
    /// Base URL (`http://127.0.0.1:8080`) or full endpoint URL.
    pub url: String,
    /// The upstream called directly (the `overhead` suite needs it).
    pub direct_url: Option<String>,
    /// Overrides the suite's API key / model; extra headers are added.
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The upstream deployments' admin API (the `faults` suite needs it).
    pub faults: Option<FaultControl>,
}

impl TargetSpec {
    pub fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.to_string(),
            url: url.to_string(),
            ..Self::default()
        }
    }

    /// Applies the target's key, model and headers to a request.
    pub(crate) fn apply(&self, spec: &mut RequestSpec) {
        if let Some(k) = &self.api_key {
            spec.api_key = Some(k.clone());
        }
        if let Some(m) = &self.model {
            spec.model = m.clone();
        }
        for (k, v) in &self.headers {
            spec.headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
            spec.headers.push((k.clone(), v.clone()));
        }
    }
}

/// How suites run.
#[derive(Clone, Default)]
pub struct RunOpts {
    pub profile: Profile,
    /// Generator worker threads; 0 = the cores the process may use.
    pub threads: usize,
    pub cancel: CancelToken,
    /// Live progress line on stderr (drawn only when it is a terminal).
    pub progress: bool,
    /// Where phases run when not in this process (the lab's generator containers).
    pub runner: Option<Arc<dyn crate::load::engine::PhaseRunner>>,
    /// Wait for the target to be idle before each phase (see [`crate::load::settle`]);
    /// `None`: start each phase at once.
    pub settle: Option<Settle>,
    /// How a wait for the target to settle that the caller has just made went (the lab's
    /// check between suites): the first phase takes it as its own instead of probing again.
    pub settled: Option<Settled>,
}

/// The small request the settle step probes with, and the lab measures the idle latency
/// with: the default chat completion, with the target's key, model and headers.
pub fn probe_request(target: &TargetSpec) -> Result<PreparedRequest, LoadError> {
    let mut spec = RequestSpec::default();
    target.apply(&mut spec);
    PreparedRequest::new(&spec, &target.url)
}

/// The target's idle latency to [`probe_request`], measured once (blocking; see
/// [`settle::idle_latency`]): what each phase then waits for.
pub fn idle_settle(target: &TargetSpec) -> Result<Settle, LoadError> {
    let probe = probe_request(target)?;
    settle::idle_latency(&probe).map(Settle::new)
}

/// The settle step before each phase: its probe, what idle means, and a wait the caller
/// already made (see [`RunOpts::settled`]), taken by the first phase.
struct SettleStep {
    probe: PreparedRequest,
    settle: Settle,
    made: Cell<Option<Settled>>,
}

/// Waits for the target to settle before phase `name` (when `step` is set); a warning
/// when that took long or did not happen.
fn settle_before(
    name: &str,
    step: &Option<SettleStep>,
    cancel: &CancelToken,
    warnings: &mut Vec<ResultWarning>,
) -> Result<(), LoadError> {
    let Some(step) = step else {
        return Ok(());
    };
    let s = &step.settle;
    let outcome = match step.made.take() {
        Some(made) => made,
        None => settle::settle(&step.probe, s, cancel)?,
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (kind, message) = match outcome {
        Settled::Idle { waited, probes } if waited >= settle::REPORTED_WAIT => (
            ResultWarningKind::SettleWait,
            format!(
                "waited {:.1} s ({probes} probes) for the target to answer {} probes in a row \
                 within {:.1} ms (idle: {:.2} ms): it was still busy with the load before",
                waited.as_secs_f64(),
                settle::IN_A_ROW,
                ms(s.bound()),
                ms(s.idle)
            ),
        ),
        Settled::Busy { waited, last } => (
            ResultWarningKind::Unsettled,
            format!(
                "the target was still busy after {:.0} s (last probe: {}; idle: {:.2} ms): \
                 this phase measured it with the backlog of the load before",
                waited.as_secs_f64(),
                last.map_or("failed or over 5 s".to_string(), |t| format!(
                    "{:.1} ms",
                    ms(t)
                )),
                ms(s.idle)
            ),
        ),
        _ => return Ok(()),
    };
    warnings.push(ResultWarning {
        kind,
        phase: Some(name.to_string()),
        message,
    });
    Ok(())
}

/// Runs one suite on the generator's own threads and awaits the result. Safe to call
/// from any tokio runtime; see the `load` module docs.
pub async fn run_suite(
    def: &SuiteDef,
    target: &TargetSpec,
    opts: &RunOpts,
    observer: Option<Arc<dyn Observer>>,
) -> Result<SuiteResult, LoadError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (def, target, opts) = (def.clone(), target.clone(), opts.clone());
    std::thread::Builder::new()
        .name("loadgen-suite".into())
        .spawn(move || {
            let _ = tx.send(run_suite_blocking(&def, &target, &opts, observer));
        })
        .map_err(LoadError::Runtime)?;
    rx.await
        .map_err(|_| LoadError::Thread("the suite thread ended without a result".into()))?
}

/// [`run_suite`] on the calling thread (blocks it).
pub fn run_suite_blocking(
    def: &SuiteDef,
    target: &TargetSpec,
    opts: &RunOpts,
    observer: Option<Arc<dyn Observer>>,
) -> Result<SuiteResult, LoadError> {
    let started_at = Utc::now();
    let t0 = std::time::Instant::now();
    let profile = def.profiles.get(opts.profile);
    let mut spec = def.request.clone();
    target.apply(&mut spec);
    let req = PreparedRequest::new(&spec, &target.url)?;
    let engine = EngineOpts {
        threads: opts.threads,
        cancel: opts.cancel.clone(),
        progress: opts.progress,
        observer,
        suite: def.name.clone(),
        runner: opts.runner.clone(),
    };
    let warmup = if def.warmup {
        profile.warmup.0
    } else {
        Duration::ZERO
    };
    let mut phases: Vec<PhaseResult> = Vec::new();
    let mut warnings = Vec::new();
    let mut interrupted = false;
    let mut frontier = None;
    let mut frontier_search = None;
    let mut overhead = None;
    let mut faults_result = None;
    let probe = match opts.settle {
        Some(settle) => Some(SettleStep {
            probe: probe_request(target)?,
            settle,
            made: Cell::new(opts.settled),
        }),
        None => None,
    };

    // `warm`: a warm-up at the phase's first load level first (when the profile has one).
    let mut run = |name: &str,
                   shape: LoadShape,
                   requests: Vec<(String, PreparedRequest)>,
                   warm: bool|
     -> Result<Option<Ran>, LoadError> {
        if engine.cancel.is_cancelled() {
            return Ok(None);
        }
        settle_before(name, &probe, &engine.cancel, &mut warnings)?;
        if warm && !warmup.is_zero() {
            let warm_shape = match &shape {
                LoadShape::Closed {
                    start_vus, stages, ..
                } => {
                    let level = std::iter::once(*start_vus)
                        .chain(stages.iter().map(|s| s.target))
                        .find(|v| *v > 0)
                        .unwrap_or(1);
                    LoadShape::constant_vus(level, warmup)
                }
                LoadShape::Open {
                    rate_per_s,
                    max_in_flight,
                    ..
                } => LoadShape::Open {
                    rate_per_s: *rate_per_s,
                    duration: warmup,
                    max_in_flight: *max_in_flight,
                },
            };
            run_phase(
                &PhasePlan {
                    name: name.to_string(),
                    shape: warm_shape,
                    requests: requests.clone(),
                    timeout: def.timeout,
                    warmup: true,
                },
                &engine,
            )?;
            if engine.cancel.is_cancelled() {
                return Ok(None);
            }
        }
        let started_s = t0.elapsed().as_secs_f64();
        let mut out = run_phase(
            &PhasePlan {
                name: name.to_string(),
                shape,
                requests,
                timeout: def.timeout,
                warmup: false,
            },
            &engine,
        )?;
        for r in &mut out.results {
            r.started_s = Some(started_s);
        }
        warnings.extend(out.warnings);
        if out.interrupted {
            interrupted = true;
        }
        Ok(Some((out.results, out.rounds)))
    };

    match &def.kind {
        SuiteKind::Closed(c) => {
            let (start_vus, stages, iterations) = c.shape(profile);
            let shape = LoadShape::Closed {
                start_vus,
                stages,
                iterations,
            };
            if let Some((r, _)) = run(
                &def.name,
                shape,
                vec![(def.name.clone(), req.clone())],
                true,
            )? {
                phases.extend(r);
            }
        }
        SuiteKind::Open(o) => {
            let shape = LoadShape::Open {
                rate_per_s: o.rate,
                duration: profile.scale(o.duration.0),
                max_in_flight: o.max_in_flight.unwrap_or(def.max_in_flight),
            };
            if let Some((r, _)) = run(
                &def.name,
                shape,
                vec![(def.name.clone(), req.clone())],
                true,
            )? {
                phases.extend(r);
            }
        }
        SuiteKind::Overhead(o) => {
            let direct_url = target.direct_url.clone().ok_or_else(|| LoadError::Config {
                what: format!("suite `{}`", def.name),
                why: "it needs the upstream's URL to compare with (--direct-url)".into(),
            })?;
            let direct = PreparedRequest::new(&spec, &direct_url)?;
            let shape = LoadShape::constant_vus(1, profile.scale(o.duration.0));
            // Order of a round: see `paired` (TARGET, DIRECT, CONTROL).
            let requests = vec![
                ("target".to_string(), req.clone()),
                ("direct".to_string(), direct.clone()),
                ("control".to_string(), direct),
            ];
            if let Some((r, rounds)) = run(&def.name, shape, requests, true)? {
                overhead = overhead_of(&r, &direct_url).map(|o| Overhead {
                    paired: paired::paired(&rounds),
                    ..o
                });
                phases.extend(r);
            }
        }
        SuiteKind::Frontier(f) => {
            let max_in_flight = f.max_in_flight.unwrap_or(def.max_in_flight);
            let search = frontier::search(f, profile, opts.profile, |rung| {
                let shape = LoadShape::Open {
                    rate_per_s: rung.rate,
                    duration: rung.duration,
                    max_in_flight,
                };
                let requests = vec![(rung.name.clone(), req.clone())];
                let Some((r, _)) = run(&rung.name, shape, requests, rung.warm)? else {
                    return Ok(None);
                };
                let judged = r
                    .first()
                    .map(|p| frontier::judge(f, p, rung.search, rung.duration));
                phases.extend(r);
                Ok::<_, LoadError>(judged)
            })?;
            frontier = Some(frontier::frontier_of(&f.bounds_ms, &search, &phases));
            frontier_search = Some(search);
        }
        SuiteKind::Phases(list) => {
            for ph in list {
                for (name, shape) in phase_shapes(ph, profile, def.max_in_flight) {
                    let mut spec = ph.request.clone();
                    target.apply(&mut spec);
                    let r = PreparedRequest::new(&spec, &target.url)?;
                    let Some((out, _)) = run(&name, shape, vec![(name.clone(), r)], true)? else {
                        break;
                    };
                    let stop = out.first().is_some_and(|p| step_overwhelmed(ph, p));
                    phases.extend(out);
                    if stop {
                        break;
                    }
                }
            }
        }
        SuiteKind::Faults(f) => {
            let control = target.faults.as_ref().ok_or_else(|| LoadError::Config {
                what: format!("suite `{}`", def.name),
                why: "it needs the upstream deployments' admin URLs (--mock-admin)".into(),
            })?;
            let ctx = faults::Ctx {
                target,
                control,
                engine: &engine,
                profile: opts.profile,
                warmup,
                timeout: def.timeout,
                max_in_flight: def.max_in_flight,
            };
            // Once before the whole suite: its phases inject faults that slow probes.
            settle_before(&def.name, &probe, &engine.cancel, &mut warnings)?;
            let out = faults::run(f, &ctx)?;
            phases.extend(out.phases);
            warnings.extend(out.warnings);
            interrupted |= out.interrupted;
            faults_result = Some(out.result);
        }
    }
    if engine.cancel.is_cancelled() {
        interrupted = true;
    }
    Ok(SuiteResult {
        schema_version: SCHEMA_VERSION,
        suite: def.name.clone(),
        target: target.name.clone(),
        url: req.endpoint.url.clone(),
        profile: opts.profile.name().to_string(),
        started_at,
        finished_at: Utc::now(),
        interrupted,
        phases,
        frontier,
        frontier_search,
        overhead,
        faults: faults_result,
        // Judged by the caller, which may know more figures (the container's memory).
        thresholds: None,
        warnings,
    })
}

/// The measured phases of one `phases:` entry: its closed shape, or one open phase per
/// rate (`<name>-<rate>rps`).
fn phase_shapes(
    ph: &Phase,
    profile: &ProfileDef,
    max_in_flight: usize,
) -> Vec<(String, LoadShape)> {
    if let Some(c) = &ph.def.closed {
        let (start_vus, stages, iterations) = c.shape(profile);
        let shape = LoadShape::Closed {
            start_vus,
            stages,
            iterations,
        };
        return vec![(ph.def.name.clone(), shape)];
    }
    let Some(o) = &ph.def.open else {
        return Vec::new();
    };
    o.rates
        .iter()
        .map(|&rate| {
            let shape = LoadShape::Open {
                rate_per_s: rate,
                duration: profile.scale(o.step.0),
                max_in_flight: o.max_in_flight.unwrap_or(max_in_flight),
            };
            (format!("{}-{rate}rps", ph.def.name), shape)
        })
        .collect()
}

/// Whether an open step failed so much (errors and drops over `stop_error_percent` of the
/// scheduled requests) that higher rates would only wait out timeouts.
fn step_overwhelmed(ph: &Phase, p: &PhaseResult) -> bool {
    let Some(stop) = ph.def.open.as_ref().and_then(|o| o.stop_error_percent) else {
        return false;
    };
    let scheduled = p.target_rate_per_s.unwrap_or(0.0) * p.duration_s;
    let failed = (p.requests.errors.total() + p.requests.dropped) as f64;
    scheduled > 0.0 && failed * 100.0 / scheduled > stop
}

fn overhead_of(phases: &[PhaseResult], direct_url: &str) -> Option<Overhead> {
    let t = phases.iter().find(|p| p.name == "target")?;
    let d = phases.iter().find(|p| p.name == "direct")?;
    if t.latency_ms.count == 0 || d.latency_ms.count == 0 {
        return None;
    }
    let us = |ms: f64| ms * 1000.0;
    Some(Overhead {
        direct_url: direct_url.to_string(),
        target_p50_us: us(t.latency_ms.p50),
        target_p99_us: us(t.latency_ms.p99),
        direct_p50_us: us(d.latency_ms.p50),
        direct_p99_us: us(d.latency_ms.p99),
        added_p50_us: us(t.latency_ms.p50 - d.latency_ms.p50),
        added_p99_us: us(t.latency_ms.p99 - d.latency_ms.p99),
        samples: t.latency_ms.count.min(d.latency_ms.count),
        paired: None,
    })
}

/// A measured phase's results, and its rounds when its requests were interleaved.
type Ran = (Vec<PhaseResult>, Vec<RoundLog>);
