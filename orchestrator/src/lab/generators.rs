//! Load from generator containers (`LAB_ENGINE_GENERATORS`): for each phase, one
//! `lab-generator` container per entry gets its share of the load in a plan file, all
//! start at one shared time (told to each in its own engine's clock), and their output
//! files are merged exactly ([`crate::load::remote`]).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::docker::tar::TarBuilder;
use crate::docker::{ContainerSpec, Docker};
use crate::lab::stack::{self, Lab};
use crate::load::cli::epoch_now;
use crate::load::engine::{report_started, PhaseRunner};
use crate::load::remote::{finish_phase, share, start_offset_s, OutputFile, PlanFile};
use crate::load::{EngineOpts, LoadError, PhaseOutput, PhasePlan};

/// From launch to the shared start: time to create, fill and start every container.
const LEAD: Duration = Duration::from_secs(3);

/// The container of generator `i` (0-based) of the lab.
pub fn container_name(lab: &Lab, i: usize) -> String {
    format!("{}-generator-{}", lab.name, i + 1)
}

/// One generator: its container (placed on its engine) and that engine's clock offset.
#[derive(Debug, Clone)]
struct Generator {
    container: String,
    clock_offset_ms: f64,
}

/// Runs every phase on the lab's generator containers.
pub struct DockerRunner {
    docker: Docker,
    runtime: tokio::runtime::Handle,
    image: String,
    generators: Vec<Generator>,
    labels: HashMap<String, String>,
    cpuset: String,
    nofile: u64,
}

impl DockerRunner {
    /// The runner of `lab`'s generators, their containers already placed (see
    /// `run_images`); `offsets_ms` is each engine's clock offset, by engine index.
    pub fn new(
        lab: &Lab,
        docker: &Docker,
        image: &str,
        offsets_ms: &[f64],
    ) -> anyhow::Result<Self> {
        let generators = (0..lab.engines.generators.len())
            .map(|i| {
                let container = container_name(lab, i);
                let engine = docker.engine_of(&container);
                Generator {
                    clock_offset_ms: offsets_ms.get(engine).copied().unwrap_or(0.0),
                    container,
                }
            })
            .collect();
        let mut labels = lab.labels("generator");
        labels.insert(stack::SERVICE_LABEL.into(), "generator".into());
        Ok(Self {
            docker: docker.clone(),
            runtime: tokio::runtime::Handle::try_current().context("no tokio runtime")?,
            image: image.to_string(),
            generators,
            labels,
            cpuset: lab.plan.generator.clone(),
            nofile: lab
                .vars
                .get_or("LAB_NOFILE", "16384")
                .parse()
                .unwrap_or(16384),
        })
    }

    fn spec(&self, g: &Generator) -> ContainerSpec {
        ContainerSpec {
            name: g.container.clone(),
            image: self.image.clone(),
            cmd: Some(
                ["--plan", "/plan.json", "--out", "/out.json"]
                    .map(String::from)
                    .to_vec(),
            ),
            cpuset: Some(self.cpuset.clone()),
            labels: self.labels.clone(),
            ulimits: vec![("nofile".into(), self.nofile, self.nofile)],
            // The generator stops early on SIGINT and still writes what it measured.
            stop_signal: Some("SIGINT".into()),
            ..ContainerSpec::default()
        }
    }

    /// Creates, fills and starts generator `g` with `file`.
    async fn launch(&self, g: &Generator, file: &PlanFile) -> anyhow::Result<()> {
        self.docker.remove(&g.container).await?;
        self.docker.create(&self.spec(g)).await?;
        let mut tar = TarBuilder::new();
        tar.file("plan.json", 0o644, file.to_json()?.as_bytes())?;
        self.docker.upload(&g.container, "/", tar.finish()).await?;
        self.docker.start(&g.container).await?;
        Ok(())
    }

    /// Waits for generator `g` and reads its output; the container goes either way.
    async fn collect(
        &self,
        g: &Generator,
        cancel: &crate::load::CancelToken,
    ) -> anyhow::Result<PhaseOutput> {
        let name = &g.container;
        let code = tokio::select! {
            code = self.docker.wait(name) => code?,
            () = cancelled(cancel) => {
                self.docker.stop(name, Duration::from_secs(10)).await?;
                self.docker.wait(name).await?
            }
        };
        let result = match code {
            0 => {
                let bytes = self.docker.download_file(name, "/out.json").await?;
                let text = String::from_utf8_lossy(&bytes);
                Ok(OutputFile::from_json(&text)?.output)
            }
            c => {
                let logs = self.docker.logs_tail(name, 10).await.unwrap_or_default();
                Err(anyhow::anyhow!("exit code {c}: {}", logs.join(" / ")))
            }
        };
        self.docker.remove(name).await?;
        result
    }

    async fn run_async(
        &self,
        plan: &PhasePlan,
        opts: &EngineOpts,
    ) -> Result<PhaseOutput, LoadError> {
        let n = self.generators.len();
        let start_at = epoch_now() + LEAD.as_secs_f64();
        let started = Utc::now() + chrono::Duration::from_std(LEAD).unwrap_or_default();
        report_started(plan, opts, started);
        let mut failed: Vec<(String, String)> = Vec::new();
        let mut launched = Vec::new();
        for (i, g) in self.generators.iter().enumerate() {
            // The start time in that engine's clock; open-model arrivals of the generators
            // interleave rather than come n at a time.
            let at = start_at + g.clock_offset_ms / 1e3 + start_offset_s(plan, i);
            let file = PlanFile::new(&share(plan, i, n), opts.threads, Some(at), &g.container);
            match self.launch(g, &file).await {
                Ok(()) => launched.push(g),
                Err(e) => failed.push((g.container.clone(), format!("{e:#}"))),
            }
        }
        let outs =
            futures_util::future::join_all(launched.iter().map(|g| self.collect(g, &opts.cancel)))
                .await;
        let mut parts = Vec::new();
        for (g, out) in launched.iter().zip(outs) {
            match out {
                Ok(o) => parts.push((g.container.clone(), o)),
                Err(e) => failed.push((g.container.clone(), format!("{e:#}"))),
            }
        }
        finish_phase(plan, opts, parts, &failed, started)
    }
}

impl PhaseRunner for DockerRunner {
    /// Called on the suite's own thread (not a runtime worker), so it may block on the
    /// lab's runtime.
    fn run(&self, plan: &PhasePlan, opts: &EngineOpts) -> Result<PhaseOutput, LoadError> {
        self.runtime.block_on(self.run_async(plan, opts))
    }
}

async fn cancelled(cancel: &crate::load::CancelToken) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
