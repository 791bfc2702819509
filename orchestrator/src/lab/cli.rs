//! Lab subcommands: `images`, `start`, `stop`, `status`, `run`.

use std::collections::BTreeMap;

use anyhow::Context;

use crate::docker::Docker;
use crate::lab::compose::Role;
use crate::lab::images::{self, ImageChoice};
use crate::lab::stack::{self, Lab, LabOpts};

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub lab: LabOpts,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub lab: LabOpts,
    /// Targets to bring up besides the mock and monitoring (both share the target cpuset).
    #[arg(long, value_delimiter = ',', default_value = "gateway,litellm")]
    pub targets: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub lab: LabOpts,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub lab: LabOpts,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub lab: LabOpts,
    /// A suite name from the suites file, or `all`.
    pub suite: String,
    /// Targets measured in turn (default LAB_TARGETS, else direct,gateway,litellm).
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
}

/// The lab's runtime for Docker calls (the load generator runs its own threads).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

/// `orchestrator images`: pull or build every image the stack needs.
pub fn images(a: ImagesArgs) -> anyhow::Result<i32> {
    let lab = Lab::load(&a.lab)?;
    let mode = lab.image_mode(&a.lab)?;
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        images::ensure_all(&docker, &lab, mode, lab.pull_timeout()).await?;
        Ok(0)
    })
}

/// `orchestrator start`: the mock, monitoring and the chosen targets, each waited for.
pub fn start(a: StartArgs) -> anyhow::Result<i32> {
    let lab = Lab::load(&a.lab)?;
    let mode = lab.image_mode(&a.lab)?;
    for t in &a.targets {
        let svc = lab.service(t)?;
        anyhow::ensure!(
            svc.role == Role::Target,
            "`{t}` is not a target service (x-lab-role: target)"
        );
    }
    let wait = lab
        .vars
        .get_or("LAB_LOCK_WAIT_SECS", "1800")
        .parse()
        .unwrap_or(1800);
    let _lock = crate::lab::lock::acquire(std::time::Duration::from_secs(wait))?;
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        let choices = images::ensure_all(&docker, &lab, mode, lab.pull_timeout()).await?;
        stack::teardown(&docker, &lab.name).await?;
        let mut names: Vec<&str> = lab
            .by_role(Role::Mock)
            .into_iter()
            .chain(lab.by_role(Role::Monitoring))
            .map(|(n, _)| n)
            .collect();
        names.extend(a.targets.iter().map(String::as_str));
        let result = bring_up(&docker, &lab, &choices, &names).await;
        if let Err(e) = result {
            stack::teardown(&docker, &lab.name).await?;
            return Err(e);
        }
        print_status(&docker, &lab).await?;
        Ok(0)
    })
}

/// Starts services in order and waits for each to answer its readiness URL.
pub async fn bring_up(
    docker: &Docker,
    lab: &Lab,
    choices: &BTreeMap<String, ImageChoice>,
    names: &[&str],
) -> anyhow::Result<()> {
    let ports: Vec<(String, u16)> = names
        .iter()
        .filter(|n| choices.get(**n).is_some_and(|c| c.unavailable.is_none()))
        .filter_map(|n| {
            lab.service(n)
                .ok()
                .and_then(stack::port_of)
                .map(|p| (n.to_string(), p))
        })
        .collect();
    stack::check_ports_free(&ports)?;
    for name in names {
        let choice = choices
            .get(*name)
            .with_context(|| format!("no image for `{name}`"))?;
        if let Some(why) = &choice.unavailable {
            eprintln!("skip   {name}: {why}");
            continue;
        }
        let container = stack::start_service(docker, lab, name, choice).await?;
        let url = &lab.service(name)?.health_url;
        let waited = stack::wait_ready(docker, &container, url, stack::ready_timeout(name))
            .await
            .map_err(|f| anyhow::anyhow!("{name} did not become ready: {f}"))?;
        eprintln!("ready  {name:<14} {url} ({:.1} s)", waited.as_secs_f64());
    }
    Ok(())
}

/// `orchestrator stop`: removes every container with the lab label (idempotent).
/// Works even when the compose file or env file is broken: it only needs the lab's name.
pub fn stop(a: StopArgs) -> anyhow::Result<i32> {
    let name = match Lab::load(&a.lab) {
        Ok(lab) => lab.name,
        Err(e) => {
            let name = std::env::var("LAB_NAME")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "llm-gateway-lab".into());
            eprintln!(
                "warning: {e:#}\nremoving the containers labelled {}={name}",
                stack::LABEL
            );
            name
        }
    };
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        let removed = stack::teardown(&docker, &name).await?;
        if removed.is_empty() {
            println!("no container with label {}={name}", stack::LABEL);
        } else {
            println!("removed {}", removed.join(", "));
        }
        Ok(0)
    })
}

/// `orchestrator status`: what runs where, and the dashboards' URLs.
pub fn status(a: StatusArgs) -> anyhow::Result<i32> {
    let lab = Lab::load(&a.lab)?;
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        print_status(&docker, &lab).await?;
        Ok(0)
    })
}

async fn print_status(docker: &Docker, lab: &Lab) -> anyhow::Result<()> {
    let list = docker.list_labelled(stack::LABEL, &lab.name).await?;
    println!(
        "lab {} — host cores: {}; cpuset plan: target {}, mock {}, generator {}, monitoring {}",
        lab.name,
        lab.cores,
        lab.plan.target,
        lab.plan.mock,
        lab.plan.generator,
        lab.plan.monitoring
    );
    println!(
        "{:<16} {:<30} {:<9} {:<10} {:<7} {:>9}  url",
        "service", "container", "state", "health", "cpuset", "memory"
    );
    let mut running = std::collections::BTreeSet::new();
    for c in &list {
        let svc = c
            .labels
            .get(stack::SERVICE_LABEL)
            .cloned()
            .unwrap_or_default();
        let st = docker.state(&c.id).await?;
        let (health, cpuset, mem) = st.as_ref().map_or(("-".into(), "-".into(), 0), |s| {
            (
                s.health.clone(),
                s.cpuset.clone().unwrap_or_else(|| "-".into()),
                s.memory_bytes.unwrap_or(0),
            )
        });
        if c.state == "running" {
            running.insert(svc.clone());
        }
        let url = lab
            .compose
            .services
            .get(&svc)
            .and_then(stack::base_url)
            .unwrap_or_default();
        println!(
            "{:<16} {:<30} {:<9} {:<10} {:<7} {:>8}M  {}",
            svc,
            c.name,
            c.state,
            health,
            cpuset,
            mem >> 20,
            url
        );
    }
    if list.is_empty() {
        println!("(no lab container; `orchestrator start` brings the stack up)");
    }
    let dash = |svc: &str, path: &str| -> String {
        let base = lab
            .compose
            .services
            .get(svc)
            .and_then(stack::base_url)
            .unwrap_or_default();
        if running.contains(svc) {
            format!("{base}{path}")
        } else if lab
            .compose
            .services
            .get(svc)
            .and_then(|s| s.offline.as_ref())
            .and_then(|o| o.unavailable.as_ref())
            .is_some()
            && !list.is_empty()
        {
            "no image offline: `run` serves the Docker stats on this port under cAdvisor's names"
                .into()
        } else {
            format!("not running ({base}{path})")
        }
    };
    println!("dashboards:");
    println!("  Prometheus  {}", dash("prometheus", "/graph"));
    println!(
        "  console     {}",
        dash("prometheus", crate::lab::watch::CONSOLE_PATH)
    );
    println!("  cAdvisor    {}", dash("cadvisor", "/containers/"));
    println!("  sink        {}", dash("influxdb", ""));
    println!(
        "  live page   http://127.0.0.1:{}/ (while `run` goes)",
        lab.vars
            .get_or("LAB_LIVE_PORT", crate::lab::watch::LIVE_PORT)
    );
    Ok(())
}

/// `orchestrator run <suite|all>`: see [`crate::lab::run`].
pub fn run(a: RunArgs) -> anyhow::Result<i32> {
    crate::lab::run::run(a)
}
