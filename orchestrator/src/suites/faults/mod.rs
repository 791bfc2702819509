//! The `faults` suite: an open-model load at the same rate for every target while faults
//! are injected into upstream deployment A (or both) through the mocks' admin API; each
//! phase has a fault-free lead-in, the mocks' counters are polled for per-deployment
//! requests/s and retry amplification, single probes show what a client gets back, and a
//! last check drops streams after their first token to see whether the target cancels
//! upstream. Faults are reset after every phase and on any early exit.

mod admin;
mod figures;
mod probe;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use admin::MockStats;
use admin::{runtime, MockAdmin, ResetOnDrop};
use probe::Probe;

use super::def::{FaultPhase, Faults, Profile};
use super::run::TargetSpec;
use crate::load::engine::{run_phase, EngineOpts, LoadShape, PhaseOutput, PhasePlan};
use crate::load::request::PreparedRequest;
use crate::load::request::RequestSpec;
use crate::load::result::{FaultsResult, PhaseResult, ProbeCounts, ResultWarning};
use crate::load::LoadError;

/// Where the target's upstream deployments are controlled from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultControl {
    /// Admin base URLs of the deployments, A first (`http://127.0.0.1:9010`).
    pub admin_urls: Vec<String>,
    /// Cores of the target's cpuset (the load rate scales with them).
    pub cores: usize,
    /// Whether the target can route around A (false for `direct`, the mock itself).
    pub redundant: bool,
}

/// What the suite needs besides its definition.
pub struct Ctx<'a> {
    /// URL and request overrides (key, model, headers).
    pub target: &'a TargetSpec,
    pub control: &'a FaultControl,
    pub engine: &'a EngineOpts,
    pub profile: Profile,
    pub warmup: Duration,
    pub timeout: Duration,
    pub max_in_flight: usize,
}

/// The suite's phases, figures and warnings.
pub struct FaultsOutput {
    pub phases: Vec<PhaseResult>,
    pub result: FaultsResult,
    pub warnings: Vec<ResultWarning>,
    pub interrupted: bool,
}

/// What the controller thread saw during one faulted phase.
#[derive(Default)]
struct Watch {
    /// (seconds since the phase started, completions per deployment).
    samples: Vec<(f64, Vec<u64>)>,
    probes: ProbeCounts,
}

fn load(
    ctx: &Ctx,
    rate: f64,
    name: &str,
    d: Duration,
    req: &PreparedRequest,
    warm: bool,
) -> Result<PhaseOutput, LoadError> {
    let plan = PhasePlan {
        name: name.to_string(),
        shape: LoadShape::Open {
            rate_per_s: rate,
            duration: d,
            max_in_flight: ctx.max_in_flight,
        },
        requests: vec![(name.to_string(), req.clone())],
        timeout: ctx.timeout,
        warmup: warm,
    };
    run_phase(&plan, ctx.engine)
}

impl Ctx<'_> {
    /// A phase's request with the target's overrides.
    fn spec(&self, spec: &RequestSpec) -> RequestSpec {
        let mut spec = spec.clone();
        self.target.apply(&mut spec);
        spec
    }

    fn prepared(&self, spec: &RequestSpec) -> Result<PreparedRequest, LoadError> {
        PreparedRequest::new(&self.spec(spec), &self.target.url)
    }

    fn probe(&self, spec: &RequestSpec) -> Result<Probe, LoadError> {
        Probe::new(&self.spec(spec), &self.target.url, self.timeout)
    }
}

/// Runs the suite; faults are reset whatever happens.
pub fn run(f: &Faults, ctx: &Ctx) -> Result<FaultsOutput, LoadError> {
    let admin = MockAdmin::new(&ctx.control.admin_urls)?;
    let rt = runtime()?;
    rt.block_on(admin.reset_all())?;
    let _reset = ResetOnDrop(admin.clone());
    let rate = f.def.rate_per_core * ctx.control.cores.max(1) as f64;
    let k = f.scale(ctx.profile);
    let mut out = FaultsOutput {
        phases: Vec::new(),
        result: FaultsResult {
            rate_per_s: rate,
            deployments: ["a", "b"][..admin.urls.len().min(2)]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            poll_s: f.def.poll.0.as_secs_f64(),
            redundant: ctx.control.redundant,
            phases: Vec::new(),
            cancel: None,
        },
        warnings: Vec::new(),
        interrupted: false,
    };
    if let Some(p) = f.phases.first().filter(|_| !ctx.warmup.is_zero()) {
        let req = ctx.prepared(&p.request)?;
        load(ctx, rate, &p.def.name, ctx.warmup, &req, true)?;
    }
    for p in &f.phases {
        if ctx.engine.cancel.is_cancelled() {
            break;
        }
        run_one(f, p, ctx, &admin, rate, k, &mut out)?;
    }
    if let (Some(c), Some(spec)) = (&f.def.cancel, &f.cancel_request) {
        if !ctx.engine.cancel.is_cancelled() {
            let probe = ctx.probe(spec)?;
            out.result.cancel =
                Some(rt.block_on(probe.cancel_check(&admin, c.streams, c.settle.0))?);
        }
    }
    out.interrupted |= ctx.engine.cancel.is_cancelled();
    Ok(out)
}

/// One phase: lead-in, then the faulted load with the controller polling beside it.
fn run_one(
    f: &Faults,
    p: &FaultPhase,
    ctx: &Ctx,
    admin: &MockAdmin,
    rate: f64,
    k: f64,
    out: &mut FaultsOutput,
) -> Result<(), LoadError> {
    let req = ctx.prepared(&p.request)?;
    let lead_name = format!("{} lead-in", p.def.name);
    let lead = load(
        ctx,
        rate,
        &lead_name,
        f.def.lead_in.0.mul_f64(k),
        &req,
        false,
    )?;
    absorb(out, lead);
    if ctx.engine.cancel.is_cancelled() {
        return Ok(());
    }
    let duration = p.def.duration.0.mul_f64(k);
    let fault_for = p.def.fault_for.map_or(duration, |d| d.0.mul_f64(k));
    let rt = runtime()?;
    let before = rt.block_on(admin.stats())?;
    let applied = async {
        admin.set(0, &p.def.a).await?;
        if admin.urls.len() > 1 {
            admin.set(1, &p.def.b).await?;
        }
        Ok::<(), LoadError>(())
    };
    let guard = ResetOnDrop(admin.clone());
    rt.block_on(applied)?;
    let probe = ctx.probe(&p.request)?;
    let stop = AtomicBool::new(false);
    let (faulted, watch) = std::thread::scope(|s| {
        let ctl = s.spawn(|| watch(admin, &probe, f.def.probes, fault_for, f.def.poll.0, &stop));
        let faulted = load(ctx, rate, &p.def.name, duration, &req, false);
        stop.store(true, Ordering::Relaxed);
        (faulted, ctl.join())
    });
    drop(guard);
    let faulted = faulted?;
    let watch = watch.map_err(|_| LoadError::Thread("the fault controller panicked".into()))??;
    let after = rt.block_on(admin.stats())?;
    let phase = faulted.results.first().cloned();
    absorb(out, faulted);
    if let Some(phase) = phase {
        let fp = figures::phase(&figures::Inputs {
            def: p,
            phase: &phase,
            before: &before,
            after: &after,
            samples: &watch.samples,
            probes: watch.probes,
            fault_for,
            duration,
            redundant: ctx.control.redundant,
        });
        out.result.phases.push(fp);
    }
    Ok(())
}

fn absorb(out: &mut FaultsOutput, o: PhaseOutput) {
    out.phases.extend(o.results);
    out.warnings.extend(o.warnings);
    out.interrupted |= o.interrupted;
}

/// The controller: polls the mocks' counters every `poll`, probes in the middle of the
/// fault window, and resets the faults when the window ends.
fn watch(
    admin: &MockAdmin,
    probe: &Probe,
    probes: u32,
    fault_for: Duration,
    poll: Duration,
    stop: &AtomicBool,
) -> Result<Watch, LoadError> {
    let rt = runtime()?;
    rt.block_on(async {
        let t0 = Instant::now();
        let probing = tokio::spawn({
            let probe = probe.clone();
            async move {
                tokio::time::sleep(fault_for / 2).await;
                probe.many(probes).await
            }
        });
        let mut w = Watch::default();
        let mut reset = false;
        while !stop.load(Ordering::Relaxed) {
            let s = admin.stats().await?;
            let t = t0.elapsed();
            w.samples.push((
                t.as_secs_f64(),
                s.iter().map(|m| m.completions.total).collect(),
            ));
            if !reset && t >= fault_for {
                admin.reset_all().await?;
                reset = true;
            }
            let next = poll.saturating_sub(t0.elapsed() - t);
            let until_reset = fault_for.saturating_sub(t0.elapsed());
            let wait = if reset {
                next
            } else {
                next.min(until_reset.max(Duration::from_millis(1)))
            };
            tokio::time::sleep(wait).await;
        }
        w.probes = probing.await.unwrap_or_default();
        Ok(w)
    })
}
