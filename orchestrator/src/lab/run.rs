//! `orchestrator run <suite|all>`: starts the mock and monitoring, then for each target in
//! turn starts it alone on its cpuset, waits for it, runs the suites in process while
//! sampling its container every second, and stops it. Results go to `results/<run-id>/`
//! (layout in [`crate::rundir`]) and every per-second point to the InfluxDB sink.
//!
//! Ctrl-C or a failure mid-run: the containers are removed, what was measured is kept and
//! the manifest is marked `partial`. A target that dies is recorded as failed (exit code,
//! last log lines) and the run goes on with the next one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use futures_util::StreamExt;

use crate::docker::Docker;
use crate::lab::compose::Role;
use crate::lab::image_source::ImageChoice;
use crate::lab::images;
use crate::lab::lane::{self, Lane};
use crate::lab::plan;
use crate::lab::rig;
use crate::lab::stack::{self, bring_up, runtime, Lab, LabOpts, ServiceFailure};
use crate::lab::watch;
use crate::live::Live;
use crate::load::settle::{self, Settle};
use crate::load::{CancelToken, ChannelObserver, Event, Observer};
use crate::report::figures::KeyFigures;
use crate::report::{RenderedPaths, ReportError};
use crate::rundir::{
    ContainerStats, GovernedRecord, HostInfo, Manifest, RunDir, RunStatus, ServiceRecord,
    StatsSample, TargetOutcome, TargetRecord, Warning, WarningKind, LATEST, RAW_DIR, STATS_DIR,
};
use crate::sinks::{self, InfluxSink, SeriesTags};
use crate::suites::faults::FaultControl;
use crate::suites::{run_suite, thresholds, Profile, RunOpts, SuiteDef, SuitesFile, TargetSpec};

/// Options of `orchestrator run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub lab: LabOpts,
    /// A suite name from the suites file, or `all`.
    pub suite: String,
    /// Targets measured in turn (default LAB_TARGETS, else direct,nginx,gateway,litellm).
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Suite profile: quick or full (default LAB_PROFILE, else quick).
    #[arg(long)]
    pub profile: Option<String>,
    /// Results directory (default LAB_RESULTS_DIR under the repository root).
    #[arg(long)]
    pub results: Option<std::path::PathBuf>,
    /// Suites file (default: the suites library's).
    #[arg(long)]
    pub suites_file: Option<std::path::PathBuf>,
    /// Leave the mock and monitoring running after the run (Prometheus' UI stays up).
    #[arg(long)]
    pub keep: bool,
    /// Exit with code 3 when a target missed a threshold of `suites.yaml` (the report
    /// shows the verdicts either way).
    #[arg(long)]
    pub fail_on_thresholds: bool,
    /// Measure every chosen suite N times per target (default: each suite's `repeats`
    /// in the suites file), in rounds that interleave the targets.
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,
    /// Which variant of each target runs (default LAB_LANE, else plain): `plain`, `governed`
    /// (the `x-lab-governed` variants: per-key auth, rpm/tpm limits, metrics) or `both`
    /// (each plain target then its governed variant, for the report's feature tax).
    #[arg(long, value_enum)]
    pub lane: Option<Lane>,
    /// Start each phase at once, without waiting for the target to answer small probes at
    /// its idle latency again, and never restart a target still busy after a suite.
    #[arg(long)]
    pub no_settle: bool,
}

/// The control target: the mock upstream called directly.
pub const DIRECT: &str = "direct";
/// Targets measured when neither `--targets` nor `LAB_TARGETS` names any.
pub const DEFAULT_TARGETS: &str = "direct,nginx,gateway,litellm";
const API_KEY: &str = "sk-lab-key";

/// What `run` was asked to do, validated.
struct Plan {
    lab: Lab,
    profile: Profile,
    suites: Vec<SuiteDef>,
    targets: Vec<String>,
    results: PathBuf,
    keep: bool,
    fail_on_thresholds: bool,
    lane: Lane,
    /// Wait for an idle target before each phase (not `--no-settle`).
    settle: bool,
}

fn prepare(a: &RunArgs) -> anyhow::Result<Plan> {
    let lab = Lab::load(&a.lab)?;
    let profile_name = a
        .profile
        .clone()
        .unwrap_or_else(|| lab.vars.get_or("LAB_PROFILE", "quick"));
    let profile = <Profile as clap::ValueEnum>::from_str(&profile_name, true)
        .map_err(|_| anyhow::anyhow!("unknown profile `{profile_name}` (quick or full)"))?;
    let file = match &a.suites_file {
        Some(p) => SuitesFile::load(p)?,
        None => SuitesFile::builtin()?,
    };
    let suites = if a.suite == "all" {
        file.suites.clone()
    } else {
        a.suite
            .split(',')
            .map(|name| {
                file.suites
                    .iter()
                    .find(|s| s.name == name.trim())
                    .cloned()
                    .with_context(|| {
                        let names: Vec<&str> =
                            file.suites.iter().map(|s| s.name.as_str()).collect();
                        format!("unknown suite `{name}` (suites: all, {})", names.join(", "))
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let suites = with_repeats(suites, a.repeat)?;
    let targets: Vec<String> = match &a.targets {
        Some(t) => t.clone(),
        None => lab
            .vars
            .get_or("LAB_TARGETS", DEFAULT_TARGETS)
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    };
    if targets.is_empty() {
        bail!("no target given (--targets {DEFAULT_TARGETS})");
    }
    check_targets(&lab, &targets)?;
    let lane = match a.lane {
        Some(l) => l,
        None => Lane::parse(&lab.vars.get_or("LAB_LANE", "plain"))?,
    };
    let selection = lane::select(&targets, lane, &lab.governed_variants())?;
    for n in &selection.notes {
        crate::note!("lane   {}: {n}", lane.name());
    }
    let results = match &a.results {
        Some(r) => r.clone(),
        None => lab.root.join(lab.vars.get_or("LAB_RESULTS_DIR", "results")),
    };
    Ok(Plan {
        lab,
        profile,
        suites,
        targets: selection.targets,
        results,
        keep: a.keep,
        fail_on_thresholds: a.fail_on_thresholds,
        lane,
        settle: !a.no_settle,
    })
}

/// Every target is `direct` or a service of role `target`.
fn check_targets(lab: &Lab, targets: &[String]) -> anyhow::Result<()> {
    for t in targets {
        if t != DIRECT {
            let ok = lab
                .compose
                .services
                .get(t)
                .is_some_and(|s| s.role == Role::Target);
            if !ok {
                let known: Vec<&str> = lab
                    .by_role(Role::Target)
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                bail!(
                    "unknown target `{t}` (targets: {DIRECT}, {})",
                    known.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Applies `--repeat N` to every suite.
fn with_repeats(mut suites: Vec<SuiteDef>, repeat: Option<u32>) -> anyhow::Result<Vec<SuiteDef>> {
    let Some(n) = repeat else { return Ok(suites) };
    let max = crate::suites::def::MAX_REPEATS;
    if !(1..=max).contains(&n) {
        bail!("--repeat {n}: must be within 1..={max}");
    }
    for s in &mut suites {
        s.repeats = n;
    }
    Ok(suites)
}

/// Entry point of `orchestrator run`: the exit code, the run directory and the report.
pub fn run(a: RunArgs) -> anyhow::Result<RunOutcome> {
    let plan = prepare(&a)?;
    let estimate = crate::lab::estimate::estimate(&plan.suites, &plan.targets, plan.profile);
    crate::note!("{}", estimate.line(plan.profile));
    let mode = plan.lab.image_mode(&a.lab)?;
    let _lock = crate::lab::lock::acquire(plan.lab.lock_wait())?;
    // Images first, unpinned: building them uses every core.
    let (choices, generator) = runtime()?.block_on(async {
        let docker = crate::lab::engines::connect(&plan.lab).await?;
        // Fail fast, before any image build: leftovers of this lab go, ports must be free
        // (services that may have no image offline are checked once images are known).
        stack::teardown(&docker, &plan.lab.name).await?;
        stack::check_ports_free(&run_ports(&plan, |n| {
            let offline = plan
                .lab
                .compose
                .services
                .get(n)
                .and_then(|s| s.offline.as_ref());
            !matches!(offline, Some(o) if o.unavailable.is_some())
        }))?;
        let choices = images::ensure_all(&docker, &plan.lab, mode, plan.lab.pull_timeout()).await?;
        let generator = match plan.lab.engines.generators.is_empty() {
            true => None,
            false => Some(images::ensure_generator(&docker, &plan.lab).await?),
        };
        anyhow::Ok((choices, generator))
    })?;
    // Then pin this thread; the runtime and the generator's threads inherit the cpuset.
    plan::pin_self(&plan.lab.plan.generator).with_context(|| {
        format!(
            "pinning the orchestrator to cpuset {}",
            plan.lab.plan.generator
        )
    })?;
    let rt = runtime()?;
    rt.block_on(run_lab(&plan, &choices, generator.as_deref()))
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

async fn host_info(docker: &Docker, cores: usize) -> HostInfo {
    let os = read_trim("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    let cpu_model = read_trim("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let memory_bytes = read_trim("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|s| s.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    HostInfo {
        cores,
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        os,
        cpu_model,
        memory_bytes,
        docker_version: docker.version().await.unwrap_or_default(),
    }
}

fn git_commit(root: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Creates `results/<run-id>/` and points `results/latest` at it.
fn create_run_dir(results: &Path) -> anyhow::Result<(String, RunDir)> {
    std::fs::create_dir_all(results).with_context(|| format!("creating {}", results.display()))?;
    let mut run_id = Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let mut n = 1;
    while results.join(&run_id).exists() {
        n += 1;
        run_id = format!("{}-{n}", Utc::now().format("%Y%m%d-%H%M%S"));
    }
    let dir = RunDir::new(results, &run_id);
    std::fs::create_dir_all(dir.root.join(RAW_DIR))?;
    std::fs::create_dir_all(dir.root.join(STATS_DIR))?;
    let latest = results.join(LATEST);
    if latest.symlink_metadata().is_ok() {
        std::fs::remove_file(&latest).with_context(|| format!("replacing {}", latest.display()))?;
    }
    std::os::unix::fs::symlink(&run_id, &latest)
        .with_context(|| format!("linking {}", latest.display()))?;
    Ok((run_id, dir))
}

/// Shared by the run and its Ctrl-C handling.
struct RunState {
    manifest: Manifest,
    dir: RunDir,
    /// `target/suite` pairs that missed a threshold.
    thresholds_missed: Vec<String>,
}

impl RunState {
    fn save(&self) -> anyhow::Result<()> {
        write_json(&self.dir.manifest(), &self.manifest)
    }
    fn warn(&mut self, kind: WarningKind, target: Option<&str>, suite: Option<&str>, msg: String) {
        crate::note!("warning: {msg}");
        self.manifest.warnings.push(Warning {
            kind,
            target: target.map(str::to_string),
            suite: suite.map(str::to_string),
            message: msg,
        });
    }
}

fn target_service(t: &str) -> &str {
    if t == DIRECT {
        "mock-upstream"
    } else {
        t
    }
}

/// Cancelled on Ctrl-C: the current suite stops and what was measured is kept.
fn cancel_on_ctrl_c() -> CancelToken {
    let cancel = CancelToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            crate::note!("\ninterrupted: stopping the current suite, keeping what was measured");
            token.cancel();
        }
    });
    cancel
}

/// The manifest of a run about to start: targets, supporting services, host, config.
async fn new_manifest(
    plan: &Plan,
    choices: &BTreeMap<String, ImageChoice>,
    docker: &Docker,
    run_id: &str,
) -> anyhow::Result<Manifest> {
    let lab = &plan.lab;
    let targets = plan
        .targets
        .iter()
        .map(|t| -> anyhow::Result<TargetRecord> {
            let svc = lab.service(target_service(t))?;
            let choice = choices.get(target_service(t)).context("no image")?;
            Ok(TargetRecord {
                name: t.clone(),
                url: stack::base_url(svc).unwrap_or_default(),
                image: choice.image.clone(),
                image_id: choice.image_id.clone(),
                version: choice.version.clone(),
                cpuset: svc.cpuset.clone(),
                memory_limit_bytes: crate::lab::compose::parse_bytes(&svc.mem_limit).unwrap_or(0),
                outcome: TargetOutcome::Skipped,
                governed: svc.governed.as_ref().map(|g| GovernedRecord {
                    of: g.of.clone(),
                    features: g.features.clone(),
                    missing: g.missing.clone(),
                }),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let backing = lab.backing_for(&plan.targets);
    let services = lab
        .compose
        .services
        .iter()
        .filter(|(n, s)| match s.role {
            Role::Target => false,
            Role::Backing => backing.contains(n),
            _ => true,
        })
        .map(|(n, s)| {
            let c = choices.get(n);
            ServiceRecord {
                name: n.clone(),
                image: c.map_or_else(|| s.image.clone(), |c| c.image.clone()),
                available: c.is_some_and(|c| c.unavailable.is_none()),
                cpuset: Some(s.cpuset.clone()),
                memory_limit_bytes: crate::lab::compose::parse_bytes(&s.mem_limit).ok(),
                url: stack::base_url(s),
                note: c.and_then(|c| c.unavailable.clone()),
            }
        })
        .collect();
    Ok(Manifest {
        run_id: run_id.to_string(),
        started_at: Utc::now(),
        finished_at: None,
        status: RunStatus::Running,
        profile: plan.profile.name().to_string(),
        suites: plan.suites.iter().map(|s| s.name.clone()).collect(),
        git_commit: git_commit(&lab.root),
        host: host_info(docker, lab.cores).await,
        generator_cpuset: lab.plan.generator.clone(),
        targets,
        services,
        config: lab.redacted_config(),
        warnings: Vec::new(),
        rig: None,
        repeats: plan
            .suites
            .iter()
            .filter(|s| s.repeats > 1)
            .map(|s| (s.name.clone(), s.repeats))
            .collect(),
        lane: Some(plan.lane.name().to_string()),
        engines: Vec::new(),
    })
}

/// Warnings known before the first suite: services without an image, a small machine.
fn initial_warnings(st: &mut RunState, lab: &Lab, choices: &BTreeMap<String, ImageChoice>) {
    for (name, c) in choices {
        if let Some(why) = &c.unavailable {
            let kind = if name == "cadvisor" {
                WarningKind::CadvisorUnavailable
            } else {
                WarningKind::Other
            };
            st.warn(kind, None, None, format!("{name} unavailable: {why}"));
        }
    }
    if lab.cores < 3 {
        st.warn(
            WarningKind::NoisyMachine,
            None,
            None,
            format!(
                "{} cores: the load generator, the mock and monitoring share cpuset {}; only the target has its own ({})",
                lab.cores, lab.plan.generator, lab.plan.target
            ),
        );
    }
}

/// The rig check: the mock's own requests/s against this machine's baseline, recorded in
/// the manifest; a `rig_unqualified` warning when outside the tolerance.
async fn rig_check(ctx: &Ctx<'_>, st: &mut RunState, mock_url: &str) -> anyhow::Result<()> {
    let (url, cancel) = (mock_url.to_string(), ctx.cancel.clone());
    let measured = tokio::task::spawn_blocking(move || rig::measure(&url, &cancel))
        .await
        .context("the rig check's thread")??;
    if ctx.cancel.is_cancelled() {
        return Ok(());
    }
    let check = rig::judge(
        &ctx.plan.results,
        &st.manifest.host,
        &st.manifest.run_id,
        &measured,
    )?;
    crate::note!(
        "rig    {}: {}",
        if check.qualified {
            "qualified"
        } else {
            "UNQUALIFIED"
        },
        check.note
    );
    if !check.qualified {
        st.warn(
            WarningKind::RigUnqualified,
            None,
            None,
            format!("rig check: {}", check.note),
        );
    }
    st.manifest.rig = Some(check);
    st.save()
}

/// Records in the manifest which dashboards ran: the cAdvisor stand-in stands in the
/// services table where cAdvisor would be, so the report says which one served.
fn record_dashboards(st: &mut RunState, w: &watch::Watch) {
    if let Some(url) = &w.stand_in_url {
        if let Some(svc) = st
            .manifest
            .services
            .iter_mut()
            .find(|s| s.name == "cadvisor")
        {
            let why = svc.note.take().unwrap_or_default();
            svc.image = watch::STAND_IN_IMAGE.to_string();
            svc.available = true;
            // It runs inside the orchestrator: the generator's cpuset, no memory limit.
            svc.cpuset = Some(st.manifest.generator_cpuset.clone());
            svc.memory_limit_bytes = None;
            svc.note = Some(format!(
                "{}: Docker stats of every lab container under cAdvisor's metric names at {url} (cAdvisor itself: {why})",
                watch::STAND_IN_IMAGE
            ));
        }
    }
    for p in &w.problems {
        st.warn(
            WarningKind::Other,
            None,
            None,
            format!("dashboard not served: {p}"),
        );
    }
}

/// What `run_lab` hands back: exit code, run directory, the report (or why not).
pub type RunOutcome = (i32, PathBuf, Result<RenderedPaths, ReportError>);

/// Runs the lab holding the lock of each of its Docker engines.
async fn run_lab(
    plan: &Plan,
    choices: &BTreeMap<String, ImageChoice>,
    generator: Option<&str>,
) -> anyhow::Result<RunOutcome> {
    let lab = &plan.lab;
    let docker = crate::lab::engines::connect(lab).await?;
    let locks = crate::lab::engine_lock::acquire(&docker, &lab.name, lab.lock_wait()).await?;
    let out = run_lab_locked(plan, choices, &docker, generator).await;
    let released = locks.release().await;
    let out = out?;
    released?;
    Ok(out)
}

/// The images each engine needs: every usable service's, on its engine, and the
/// generator's on each generator engine (containers `<lab>-generator-<i>`).
fn run_images(
    plan: &Plan,
    choices: &BTreeMap<String, ImageChoice>,
    docker: &Docker,
    generator: Option<&str>,
) -> Vec<(String, String)> {
    let lab = &plan.lab;
    let mut out: Vec<(String, String)> = run_ports_services(plan)
        .into_iter()
        .filter_map(|n| {
            choices
                .get(&n)
                .filter(|c| c.unavailable.is_none())
                .map(|c| (lab.container_name(&n), c.image.clone()))
        })
        .collect();
    if let Some(image) = generator {
        for (i, ep) in lab.engines.generators.iter().enumerate() {
            let name = crate::lab::generators::container_name(lab, i);
            docker.place(&name, docker.index_of(ep));
            out.push((name, image.to_string()));
        }
    }
    out
}

/// The runner of the generator containers, when the run has some.
fn generator_runner(
    lab: &Lab,
    docker: &Docker,
    image: Option<&str>,
    engines: &[crate::rundir::EngineRecord],
) -> anyhow::Result<Option<Arc<dyn crate::load::engine::PhaseRunner>>> {
    let Some(image) = image else { return Ok(None) };
    let offsets: Vec<f64> = engines.iter().map(|e| e.clock_offset_ms).collect();
    let runner = crate::lab::generators::DockerRunner::new(lab, docker, image, &offsets)?;
    crate::note!(
        "load   from {} generator containers ({})",
        lab.engines.generators.len(),
        lab.engines
            .generators
            .iter()
            .map(|g| g.label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(Arc::new(runner)))
}

async fn run_lab_locked(
    plan: &Plan,
    choices: &BTreeMap<String, ImageChoice>,
    docker: &Docker,
    generator: Option<&str>,
) -> anyhow::Result<RunOutcome> {
    let lab = &plan.lab;
    let docker = docker.clone();
    let cancel = cancel_on_ctrl_c();
    let (run_id, dir) = create_run_dir(&plan.results)?;
    crate::note!("run    {run_id} -> {}", dir.root.display());
    let mock = lab.service("mock-upstream")?;
    let mock_url =
        stack::base_url(mock).context("mock-upstream has no port in x-lab-health-url")?;
    let mut st = RunState {
        manifest: new_manifest(plan, choices, &docker, &run_id).await?,
        dir: dir.clone(),
        thresholds_missed: Vec::new(),
    };
    let images = run_images(plan, choices, &docker, generator);
    st.manifest.engines = crate::lab::engines::prepare(&docker, lab, &images).await?;
    initial_warnings(&mut st, lab, choices);
    let live = Live::new(
        &run_id,
        plan.profile.name(),
        &plan.targets,
        watch::plan_items(&plan.targets, &plan.suites, plan.profile),
    );
    let dashboards = watch::start(lab, &docker, choices, live.clone()).await;
    record_dashboards(&mut st, &dashboards);
    for line in dashboards.banner(lab) {
        crate::note!("{line}");
    }
    st.save()?;

    let ctx = Ctx {
        plan,
        choices,
        docker: &docker,
        cancel: &cancel,
        live: &live,
        runner: generator_runner(lab, &docker, generator, &st.manifest.engines)?,
    };
    let body = run_targets(&ctx, choices, &mut st, &mock_url).await;
    // Whatever happened: no container left behind (unless asked to keep the stack).
    let teardown = if plan.keep && body.is_ok() {
        for t in &plan.targets {
            if t != DIRECT {
                let _ = docker.remove(&lab.container_name(t)).await;
            }
        }
        Ok(Vec::new())
    } else {
        stack::teardown(&docker, &lab.name).await
    };
    close_manifest(&mut st, &cancel, &body)?;
    let rendered = crate::report::render_run(&dir.root);
    let status = if st.manifest.status == RunStatus::Complete {
        "complete"
    } else {
        "partial"
    };
    let report = rendered.as_ref().ok().map(|p| p.report_html.as_path());
    dashboards.finish(status, report, live_linger(lab)).await;
    teardown?;
    body?;
    let code = if cancel.is_cancelled() {
        130
    } else if plan.fail_on_thresholds && !st.thresholds_missed.is_empty() {
        crate::note!("thresholds missed in: {}", st.thresholds_missed.join(", "));
        thresholds::EXIT_THRESHOLDS
    } else {
        0
    };
    Ok((code, dir.root, rendered))
}

/// How long the live page stays up after the run (`LAB_LIVE_LINGER_SECS`), so a page
/// that polls each second shows the end and the report link.
fn live_linger(lab: &Lab) -> Duration {
    Duration::from_secs(
        lab.vars
            .get_or("LAB_LIVE_LINGER_SECS", "3")
            .parse()
            .unwrap_or(3),
    )
}

/// Marks the manifest finished (complete or partial, with why) and saves it.
fn close_manifest(
    st: &mut RunState,
    cancel: &CancelToken,
    body: &anyhow::Result<()>,
) -> anyhow::Result<()> {
    st.manifest.finished_at = Some(Utc::now());
    let interrupted = cancel.is_cancelled();
    if interrupted {
        st.warn(
            WarningKind::Interrupted,
            None,
            None,
            "the run was interrupted (Ctrl-C); results cover what ran before".into(),
        );
    }
    st.manifest.status = if body.is_err() || interrupted {
        RunStatus::Partial
    } else {
        RunStatus::Complete
    };
    if let Err(e) = body {
        st.warn(
            WarningKind::Other,
            None,
            None,
            format!("run aborted: {e:#}"),
        );
    }
    st.save()
}

/// The services a run uses: its targets, the backing stores they need, the mocks and
/// monitoring.
fn run_ports_services(plan: &Plan) -> Vec<String> {
    let lab = &plan.lab;
    let backing = lab.backing_for(&plan.targets);
    lab.compose
        .services
        .iter()
        .filter(|(n, s)| match s.role {
            Role::Target => plan.targets.iter().any(|t| t == *n),
            Role::Backing => backing.contains(n),
            _ => true,
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// Ports of the services a run uses (`usable` filters out services without an image).
fn run_ports(plan: &Plan, usable: impl Fn(&str) -> bool) -> Vec<(String, String, u16)> {
    run_ports_services(plan)
        .into_iter()
        .filter(|n| usable(n))
        .filter_map(|n| stack::endpoint_of(&n, plan.lab.service(&n).ok()?))
        .collect()
}

/// What every step of a run shares.
struct Ctx<'a> {
    plan: &'a Plan,
    choices: &'a BTreeMap<String, ImageChoice>,
    docker: &'a Docker,
    cancel: &'a CancelToken,
    live: &'a Live,
    /// The generator containers, when `LAB_ENGINE_GENERATORS` names some.
    runner: Option<Arc<dyn crate::load::engine::PhaseRunner>>,
}

/// The InfluxDB sink, when its service has an image.
fn influx_sink(lab: &Lab, choices: &BTreeMap<String, ImageChoice>) -> Option<Arc<InfluxSink>> {
    choices
        .get("influxdb")
        .filter(|c| c.unavailable.is_none())
        .and_then(|_| lab.compose.services.get("influxdb"))
        .and_then(stack::base_url)
        .map(|url| {
            Arc::new(InfluxSink::new(
                &url,
                &lab.vars.get_or("INFLUX_ORG", "lab"),
                &lab.vars.get_or("INFLUX_BUCKET", "lab"),
                &lab.vars.get_or("INFLUX_TOKEN", "lab-token"),
            ))
        })
}

async fn run_targets(
    ctx: &Ctx<'_>,
    choices: &BTreeMap<String, ImageChoice>,
    st: &mut RunState,
    mock_url: &str,
) -> anyhow::Result<()> {
    let (plan, docker, cancel) = (ctx.plan, ctx.docker, ctx.cancel);
    let lab = &plan.lab;
    stack::teardown(docker, &lab.name).await?;
    // Every port the run will use must be free before anything starts.
    stack::check_ports_free(&run_ports(plan, |n| {
        choices.get(n).is_some_and(|c| c.unavailable.is_none())
    }))?;
    let support: Vec<&str> = lab
        .by_role(Role::Mock)
        .into_iter()
        .chain(lab.by_role(Role::Monitoring))
        .map(|(n, _)| n)
        .collect();
    with_cancel(cancel, bring_up(docker, lab, choices, &support))
        .await
        .map_err(|()| anyhow::anyhow!("interrupted while starting the stack"))??;
    let sink = influx_sink(lab, choices);
    if sink.is_none() {
        st.warn(
            WarningKind::Other,
            None,
            None,
            "no InfluxDB sink: per-second points are only in the results files".into(),
        );
    }
    rig_check(ctx, st, mock_url).await?;
    // Rounds interleave the targets (A B C, A B C) so that drift hits all alike.
    for round in 1..=crate::suites::def::rounds(&plan.suites) {
        for (i, target) in plan.targets.iter().enumerate() {
            if cancel.is_cancelled() {
                return Ok(());
            }
            if matches!(st.manifest.targets[i].outcome, TargetOutcome::Failed { .. }) {
                continue;
            }
            let service = target_service(target);
            let choice = choices.get(service).context("no image")?;
            if !run_target(ctx, &sink, st, (i, round), choice, mock_url).await? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// How starting a target went.
enum Started {
    Ready,
    /// It failed (recorded in the manifest): go on with the next target.
    Failed,
    Interrupted,
}

/// Starts target `i`'s container alone on its cpuset and waits until it is ready.
async fn start_target(
    ctx: &Ctx<'_>,
    st: &mut RunState,
    i: usize,
    choice: &ImageChoice,
) -> anyhow::Result<Started> {
    let (lab, docker) = (&ctx.plan.lab, ctx.docker);
    let target = ctx.plan.targets[i].as_str();
    let service = target_service(target);
    let container = lab.container_name(service);
    crate::note!(
        "target {target}: starting on cpuset {}",
        lab.service(service)?.cpuset
    );
    let url = lab.service(service)?.health_url.clone();
    let backing = lab.service(service)?.depends_on.clone();
    let started = async {
        let names: Vec<&str> = backing.iter().map(String::as_str).collect();
        bring_up(docker, lab, ctx.choices, &names)
            .await
            .map_err(|e| ServiceFailure {
                exit_code: None,
                reason: format!("its backing services ({}): {e:#}", backing.join(", ")),
                last_log_lines: Vec::new(),
            })?;
        stack::start_service(docker, lab, service, choice)
            .await
            .map_err(|e| ServiceFailure {
                exit_code: None,
                reason: format!("{e:#}"),
                last_log_lines: Vec::new(),
            })?;
        stack::wait_ready(docker, &container, &url, stack::ready_timeout(service)).await
    };
    Ok(match with_cancel(ctx.cancel, started).await {
        Err(_) => Started::Interrupted,
        Ok(Err(f)) => {
            fail_target(st, i, target, None, &f);
            let _ = docker.remove(&container).await;
            stop_backing(ctx, service).await?;
            Started::Failed
        }
        Ok(Ok(waited)) => {
            crate::note!("target {target}: ready in {:.1} s", waited.as_secs_f64());
            Started::Ready
        }
    })
}

/// Starts target `i` (unless it is `direct`), runs the suites of this round against it
/// (round r: the suites repeated at least r times), stops it. `Ok(false)` when the run was
/// interrupted while the target started.
async fn run_target(
    ctx: &Ctx<'_>,
    sink: &Option<Arc<InfluxSink>>,
    st: &mut RunState,
    (i, round): (usize, u32),
    choice: &ImageChoice,
    mock_url: &str,
) -> anyhow::Result<bool> {
    let (lab, docker, cancel) = (&ctx.plan.lab, ctx.docker, ctx.cancel);
    let target = ctx.plan.targets[i].as_str();
    let container = lab.container_name(target_service(target));
    if target != DIRECT {
        match start_target(ctx, st, i, choice).await? {
            Started::Ready => {}
            Started::Failed => return Ok(true),
            Started::Interrupted => return Ok(false),
        }
    }
    if let Ok(Some(s)) = docker.state(&container).await {
        st.manifest.targets[i].image_id = s.image_id.or(choice.image_id.clone());
    }
    let spec = TargetSpec {
        name: target.to_string(),
        url: st.manifest.targets[i].url.clone(),
        direct_url: Some(mock_url.to_string()),
        api_key: Some(API_KEY.to_string()),
        faults: Some(fault_control(lab, target)?),
        ..TargetSpec::default()
    };
    let mut settle = idle_settle(ctx, st, &spec).await;
    let mut failed = false;
    for (n, def) in ctx
        .plan
        .suites
        .iter()
        .filter(|d| d.repeats >= round)
        .enumerate()
    {
        if cancel.is_cancelled() {
            break;
        }
        let waited = if n > 0 && target != DIRECT {
            wait_idle(ctx, &spec, settle).await
        } else {
            None
        };
        let restart = matches!(waited, Some(settle::Settled::Busy { .. }));
        if restart {
            st.warn(
                WarningKind::Restarted,
                Some(target),
                Some(&def.name),
                format!(
                    "still busy {} s after the suite before: restarted before `{}`",
                    BUSY_WAIT.as_secs(),
                    def.name
                ),
            );
            stack::stop_container(docker, &container).await?;
            stop_backing(ctx, target).await?;
            match start_target(ctx, st, i, choice).await? {
                Started::Ready => settle = idle_settle(ctx, st, &spec).await,
                Started::Failed => return Ok(true),
                Started::Interrupted => return Ok(false),
            }
        }
        let at = Measured {
            def,
            spec: &spec,
            container: &container,
            repeat: round,
            settle,
            // After a restart the first phase waits afresh, for the new idle latency.
            settled: waited.filter(|_| !restart),
        };
        if let Err(f) = measure(ctx, sink, st, &at).await? {
            fail_target(st, i, target, Some(&def.name), &f);
            failed = true;
            break;
        }
    }
    if !failed && !cancel.is_cancelled() {
        st.manifest.targets[i].outcome = TargetOutcome::Ok;
    }
    st.save()?;
    if target != DIRECT {
        stack::stop_container(docker, &container).await?;
        stop_backing(ctx, target).await?;
    }
    Ok(true)
}

/// Stops the backing services (`depends_on`) of a target once it is done: the next target
/// is measured without them.
async fn stop_backing(ctx: &Ctx<'_>, service: &str) -> anyhow::Result<()> {
    let lab = &ctx.plan.lab;
    for b in &lab.service(service)?.depends_on {
        stack::stop_container(ctx.docker, &lab.container_name(b)).await?;
    }
    Ok(())
}

/// The mocks' admin URLs (deployment A, then B) for the `faults` suite. `direct` is the
/// mock itself and a target with `x-lab-redundant: false` proxies to A only: neither has a
/// second deployment to route to.
fn fault_control(lab: &Lab, target: &str) -> anyhow::Result<FaultControl> {
    let svc = lab.service(target_service(target))?;
    // The admin ports are the mocks' own, at the mock role's address.
    let host = crate::lab::engines::with_host("http://127.0.0.1", &lab.engines.mock_addr);
    let admin = |var: &str, default: &str| format!("{host}:{}", lab.vars.get_or(var, default));
    Ok(FaultControl {
        admin_urls: vec![
            admin("MOCK_ADMIN_PORT", "9010"),
            admin("MOCK_B_ADMIN_PORT", "9011"),
        ],
        cores: plan::count(&svc.cpuset).max(1),
        redundant: target != DIRECT && svc.redundant,
    })
}

fn fail_target(st: &mut RunState, i: usize, target: &str, suite: Option<&str>, f: &ServiceFailure) {
    st.manifest.targets[i].outcome = TargetOutcome::Failed {
        exit_code: f.exit_code,
        reason: f.reason.clone(),
        last_log_lines: f.last_log_lines.clone(),
    };
    st.warn(
        WarningKind::TargetFailed,
        Some(target),
        suite,
        format!("target {target} failed: {f}"),
    );
}

/// Runs `fut` unless the run is cancelled first (`Err(())` then).
async fn with_cancel<T>(
    cancel: &CancelToken,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, ()> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return Ok(r),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if cancel.is_cancelled() {
                    return Err(());
                }
            }
        }
    }
}

/// Samples `container` every second until `stop` fires: to memory, the live page and the
/// sink. Returns the samples and how many sink writes failed.
fn spawn_sampler(
    ctx: &Ctx<'_>,
    sink: &Option<Arc<InfluxSink>>,
    tags: &SeriesTags,
    container: &str,
    t0: Instant,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<(Vec<StatsSample>, usize)> {
    let (sink, tags, live) = (sink.clone(), tags.clone(), ctx.live.clone());
    let container = container.to_string();
    let mut stream = Box::pin(ctx.docker.stats_stream(&container));
    let started_at = Utc::now();
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut sink_errors = 0usize;
        loop {
            let p = tokio::select! {
                _ = &mut stop => break,
                p = stream.next() => match p { Some(p) => p, None => break },
            };
            let s = StatsSample {
                t: t0.elapsed().as_secs_f64(),
                cpu_percent: p.cpu_percent,
                memory_bytes: p.memory_bytes,
                throttled_periods: p.throttled_periods,
                throttled_time_ns: p.throttled_time_ns,
                cpu_total_ns: Some(p.cpu_total_ns),
            };
            live.container_sample(&s);
            if let Some(sink) = &sink {
                let one = ContainerStats {
                    target: tags.target.clone(),
                    suite: tags.suite.clone(),
                    container: container.clone(),
                    samples: vec![s.clone()],
                };
                if let Ok(pts) = sinks::container_points(&tags, started_at, &one) {
                    if sink.write(pts).await.is_err() {
                        sink_errors += 1;
                    }
                }
            }
            samples.push(s);
        }
        (samples, sink_errors)
    })
}

/// Forwards the generator's events to the live page and its per-second points to the
/// sink. Returns (points written, write errors).
fn spawn_writer(
    ctx: &Ctx<'_>,
    sink: &Option<Arc<InfluxSink>>,
    tags: &SeriesTags,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    let (sink, tags, live) = (sink.clone(), tags.clone(), ctx.live.clone());
    tokio::spawn(async move {
        let (mut written, mut errors) = (0usize, 0usize);
        while let Some(ev) = rx.recv().await {
            live.on_event(&ev);
            let (
                Some(sink),
                Event::Point {
                    phase, at, point, ..
                },
            ) = (&sink, &ev)
            else {
                continue;
            };
            match sinks::load_point(&tags, phase, *at, point) {
                Ok(p) => match sink.write(vec![p]).await {
                    Ok(n) => written += n,
                    Err(_) => errors += 1,
                },
                Err(_) => errors += 1,
            }
        }
        (written, errors)
    })
}

/// Cancels the returned token on Ctrl-C or when the target's container stops running.
fn watch_target(ctx: &Ctx<'_>, container: &str) -> (CancelToken, tokio::task::JoinHandle<()>) {
    let suite_cancel = CancelToken::new();
    let (docker, cancel, token) = (ctx.docker.clone(), ctx.cancel.clone(), suite_cancel.clone());
    let container = container.to_string();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let alive = matches!(docker.state(&container).await, Ok(Some(s)) if s.running);
            if cancel.is_cancelled() || !alive {
                token.cancel();
                break;
            }
        }
    });
    (suite_cancel, task)
}

/// One repeat of one suite against one target.
struct Measured<'a> {
    def: &'a SuiteDef,
    spec: &'a TargetSpec,
    container: &'a str,
    /// 1-based.
    repeat: u32,
    /// The target's idle latency, waited for before each phase.
    settle: Option<Settle>,
    /// The wait for an idle target made just before the suite (it counts as its first
    /// phase's).
    settled: Option<settle::Settled>,
}

/// How long a target may stay busy after a suite before it is restarted for the next.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// Waits up to [`BUSY_WAIT`] for the target to answer probes at its idle latency after the
/// suite before (see [`settle`]); `Busy`: it did not, and a restart then gives the next
/// suite an idle target (waiting on, LiteLLM was still busy 60 s after `realistic`).
/// `None` when there is nothing to wait for (no settle step) or the wait failed.
async fn wait_idle(
    ctx: &Ctx<'_>,
    spec: &TargetSpec,
    settle: Option<Settle>,
) -> Option<settle::Settled> {
    let s = settle?;
    let probe = crate::suites::probe_request(spec).ok()?;
    let cancel = ctx.cancel.clone();
    let s = Settle {
        max_wait: BUSY_WAIT,
        ..s
    };
    let waited = tokio::task::spawn_blocking(move || settle::settle(&probe, &s, &cancel)).await;
    waited.ok()?.ok()
}

/// The target's idle latency to the settle probe, measured right after it started; `None`
/// (with a warning: phases then start at once) when the probe fails or `--no-settle`.
async fn idle_settle(ctx: &Ctx<'_>, st: &mut RunState, spec: &TargetSpec) -> Option<Settle> {
    if !ctx.plan.settle {
        return None;
    }
    let target = spec.clone();
    let idle = tokio::task::spawn_blocking(move || crate::suites::idle_settle(&target))
        .await
        .map_err(|e| crate::load::LoadError::Thread(e.to_string()))
        .and_then(|r| r);
    match idle {
        Ok(s) => {
            crate::note!(
                "target {}: idle probe latency {:.2} ms",
                spec.name,
                s.idle.as_secs_f64() * 1000.0
            );
            Some(s)
        }
        Err(e) => {
            st.warn(
                WarningKind::Other,
                Some(&spec.name),
                None,
                format!("no settle step between phases: {e}"),
            );
            None
        }
    }
}

impl Measured<'_> {
    /// The suite as the console and the live page name it (`overhead #2/3` when repeated).
    fn label(&self) -> String {
        watch::repeat_label(&self.def.name, self.repeat, self.def.repeats)
    }
}

/// One suite against one target: the suite in process, the container sampled every
/// second, every point to the sink and the live page; raw and stats files written.
/// `Ok(Err(_))` when the target died during the suite.
async fn measure(
    ctx: &Ctx<'_>,
    sink: &Option<Arc<InfluxSink>>,
    st: &mut RunState,
    at: &Measured<'_>,
) -> anyhow::Result<Result<(), ServiceFailure>> {
    let (def, spec, container) = (at.def, at.spec, at.container);
    let (target, suite, profile) = (spec.name.as_str(), def.name.as_str(), ctx.plan.profile);
    let label = at.label();
    let tags = SeriesTags {
        run_id: st.manifest.run_id.clone(),
        target: target.to_string(),
        suite: suite.to_string(),
        repeat: at.repeat,
    };
    let estimate = def.estimated_duration(profile);
    crate::note!(
        "suite  {target}/{label} ({} profile, about {} s)",
        profile.name(),
        estimate.as_secs()
    );
    ctx.live
        .suite_started(target, &label, estimate.as_secs_f64());
    let t0 = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = spawn_sampler(ctx, sink, &tags, container, t0, stop_rx);
    let (observer, rx) = ChannelObserver::new();
    let writer = spawn_writer(ctx, sink, &tags, rx);
    let observer: Arc<dyn Observer> = Arc::new(observer);
    // The suite stops early on Ctrl-C or when the target's container dies.
    let (suite_cancel, watcher) = watch_target(ctx, container);
    let opts = RunOpts {
        profile,
        threads: 0,
        cancel: suite_cancel,
        progress: true,
        runner: ctx.runner.clone(),
        settle: at.settle,
        settled: at.settled,
    };
    let result = run_suite(def, spec, &opts, Some(observer)).await;
    watcher.abort();
    let _ = stop_tx.send(());
    let (samples, stats_sink_errors) = sampler.await.unwrap_or_default();
    let (written, load_sink_errors) = writer.await.unwrap_or_default();
    let result = result.with_context(|| format!("suite {suite} against {target}"))?;
    let stats = ContainerStats {
        target: target.to_string(),
        suite: suite.to_string(),
        container: container.to_string(),
        samples,
    };
    let sink_errors = if sink.is_some() {
        stats_sink_errors + load_sink_errors
    } else {
        0
    };
    record_suite(ctx, st, at, result, stats, sink_errors)?;
    crate::note!(
        "suite  {target}/{label}: done in {:.0} s; {written} load points to the sink",
        t0.elapsed().as_secs_f64(),
    );
    Ok(stack::check_alive(ctx.docker, container).await)
}

/// Writes the suite's raw result and container stats (of this repeat), judges its
/// thresholds on every repeat so far, raises its warnings, and shows its key figures on the
/// live page.
fn record_suite(
    ctx: &Ctx<'_>,
    st: &mut RunState,
    at: &Measured<'_>,
    result: crate::load::SuiteResult,
    stats: ContainerStats,
    sink_errors: usize,
) -> anyhow::Result<()> {
    let (target, suite) = (stats.target.clone(), stats.suite.clone());
    write_json(&st.dir.stats_repeat(&target, &suite, at.repeat), &stats)?;
    write_json(&st.dir.raw_repeat(&target, &suite, at.repeat), &result)?;
    if sink_errors > 0 {
        st.warn(
            WarningKind::Other,
            Some(&target),
            Some(&suite),
            format!("{sink_errors} points could not be written to the sink"),
        );
    }
    for w in &result.warnings {
        if w.kind == crate::load::result::ResultWarningKind::LoadGeneratorBound {
            st.warn(
                WarningKind::LoadGeneratorBound,
                Some(&target),
                Some(&suite),
                w.message.clone(),
            );
        }
    }
    let one = crate::report::data::Entry {
        raw_file: String::new(),
        target: target.clone(),
        suite: suite.clone(),
        result: Some(result),
        stats: Some(stats),
        repeats: Vec::new(),
    };
    ctx.live
        .suite_done(&target, &at.label(), &KeyFigures::of(&one));
    judge_thresholds(st, at.def, &target, at.repeat)?;
    st.save()
}

/// Judges the suite's thresholds on its figures over every repeat so far (medians when
/// repeated) and stores the verdict in repeat 1's raw file, the one the reports read.
fn judge_thresholds(
    st: &mut RunState,
    def: &SuiteDef,
    target: &str,
    repeat: u32,
) -> anyhow::Result<()> {
    let suite = def.name.as_str();
    let mut entry = crate::report::data::Entry::read(&st.dir, target, suite, repeat)?;
    let Some(checks) = thresholds::judge_entry(def, &mut entry) else {
        return Ok(());
    };
    crate::note!("{}", thresholds::summary_line(target, suite, &checks));
    let key = format!("{target}/{suite}");
    st.thresholds_missed.retain(|k| *k != key);
    if checks.iter().any(|c| c.pass == Some(false)) {
        st.thresholds_missed.push(key);
    }
    if let Some(result) = &entry.result {
        write_json(&st.dir.raw(target, suite), result)?;
    }
    Ok(())
}
