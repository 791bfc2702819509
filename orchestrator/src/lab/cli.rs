//! Lab subcommands: `images`, `start`, `stop`, `status` (`run` is in [`crate::lab::run`]).

use crate::docker::Docker;
use crate::lab::compose::Role;
use crate::lab::images;
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
    /// Targets to bring up besides the mock and monitoring (they share the target cpuset).
    /// Default: every service with `x-lab-role: target`.
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
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

/// `orchestrator images`: pull or build every image the stack needs.
/// `orchestrator run`: runs the lab, then prints where its results and report are.
pub fn run(a: crate::lab::run::RunArgs) -> anyhow::Result<i32> {
    let (code, run_dir, rendered) = crate::lab::run::run(a)?;
    println!("results: {}", run_dir.display());
    match rendered {
        Ok(paths) => {
            println!("report:  {}", paths.report_html.display());
            println!("summary: {}", paths.summary_md.display());
        }
        Err(e) => eprintln!("report: rendering failed: {e}"),
    }
    Ok(code)
}

pub fn images(a: ImagesArgs) -> anyhow::Result<i32> {
    let lab = Lab::load(&a.lab)?;
    let mode = lab.image_mode(&a.lab)?;
    stack::runtime()?.block_on(async {
        let docker = crate::lab::engines::connect(&lab).await?;
        images::ensure_all(&docker, &lab, mode, lab.pull_timeout()).await?;
        Ok(0)
    })
}

/// `orchestrator start`: the mock, monitoring and the chosen targets, each waited for.
pub fn start(a: StartArgs) -> anyhow::Result<i32> {
    let lab = Lab::load(&a.lab)?;
    let mode = lab.image_mode(&a.lab)?;
    let targets: Vec<String> = match &a.targets {
        Some(t) => t.clone(),
        None => lab
            .by_role(Role::Target)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect(),
    };
    for t in &targets {
        let svc = lab.service(t)?;
        anyhow::ensure!(
            svc.role == Role::Target,
            "`{t}` is not a target service (x-lab-role: target)"
        );
    }
    let _lock = crate::lab::lock::acquire(lab.lock_wait())?;
    stack::runtime()?.block_on(async {
        let docker = crate::lab::engines::connect(&lab).await?;
        let choices = images::ensure_all(&docker, &lab, mode, lab.pull_timeout()).await?;
        stack::teardown(&docker, &lab.name).await?;
        let mut names: Vec<&str> = lab
            .by_role(Role::Mock)
            .into_iter()
            .chain(lab.by_role(Role::Monitoring))
            .map(|(n, _)| n)
            .collect();
        let backing = lab.backing_for(&targets);
        names.extend(backing.iter().map(String::as_str));
        names.extend(targets.iter().map(String::as_str));
        let locks = crate::lab::engine_lock::acquire(&docker, &lab.name, lab.lock_wait()).await?;
        let images: Vec<(String, String)> = names
            .iter()
            .filter_map(|n| {
                let c = choices.get(*n).filter(|c| c.unavailable.is_none())?;
                Some((lab.container_name(n), c.image.clone()))
            })
            .collect();
        let result = match crate::lab::engines::prepare(&docker, &lab, &images).await {
            Ok(_) => stack::bring_up(&docker, &lab, &choices, &names).await,
            Err(e) => Err(e),
        };
        locks.release().await?;
        if let Err(e) = result {
            stack::teardown(&docker, &lab.name).await?;
            return Err(e);
        }
        print_status(&docker, &lab).await?;
        Ok(0)
    })
}

/// `orchestrator stop`: removes every container with the lab label (idempotent).
/// Works even when the compose file or env file is broken: it only needs the lab's name.
pub fn stop(a: StopArgs) -> anyhow::Result<i32> {
    let lab = Lab::load(&a.lab);
    let name = match &lab {
        Ok(lab) => lab.name.clone(),
        Err(e) => {
            let name = std::env::var("LAB_NAME")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "llm-gateway-lab".into());
            eprintln!(
                "warning: {e:#}\nremoving the containers labelled {}={name} on the local engine",
                stack::LABEL
            );
            name
        }
    };
    stack::runtime()?.block_on(async {
        let docker = match &lab {
            Ok(lab) => crate::lab::engines::connect(lab).await?,
            Err(_) => Docker::connect().await?,
        };
        let removed = stack::teardown(&docker, &name).await?;
        crate::lab::engine_lock::release_engines(&docker, &name).await?;
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
    stack::runtime()?.block_on(async {
        let docker = crate::lab::engines::connect(&lab).await?;
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
        "{:<16} {:<30} {:<9} {:<10} {:<7} {:>9}  {:<24} url",
        "service", "container", "state", "health", "cpuset", "memory", "engine"
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
            "{:<16} {:<30} {:<9} {:<10} {:<7} {:>8}M  {:<24} {}",
            svc,
            c.name,
            c.state,
            health,
            cpuset,
            mem >> 20,
            docker.engines()[c.engine].label(),
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
