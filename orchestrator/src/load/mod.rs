//! The load generator: closed (virtual users, k6-style stages) and open (arrival rate,
//! no coordinated omission) models, HDR-histogram percentiles, streaming metrics
//! (TTFT, inter-token latency, time per output token), errors by class, a per-second time
//! series, and the generator's own CPU cost.
//!
//! # Using it from the lab
//!
//! The lab calls [`crate::suites::run_suite`] from inside its tokio runtime:
//!
//! ```no_run
//! # async fn lab() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use orchestrator::load::{ChannelObserver, Event};
//! use orchestrator::suites::{self, Profile, RunOpts, TargetSpec};
//! let file = suites::SuitesFile::load(std::path::Path::new("orchestrator/suites.yaml"))?;
//! let def = file.suite("baseline")?;
//! let target = TargetSpec::new("gateway", "http://127.0.0.1:8080");
//! let (observer, mut points) = ChannelObserver::new();
//! tokio::spawn(async move {
//!     while let Some(ev) = points.recv().await {
//!         if let Event::Point { phase, at, point, .. } = ev { /* write to InfluxDB */ }
//!     }
//! });
//! let opts = RunOpts { profile: Profile::Quick, ..RunOpts::default() };
//! let result = suites::run_suite(&def, &target, &opts, Some(Arc::new(observer))).await?;
//! # Ok(()) }
//! ```
//!
//! `run_suite` runs the generator on its own OS threads, each with its own current-thread
//! runtime (`RunOpts::threads`, default: the cores the process may use), so its speed does
//! not depend on the caller's runtime; the returned future only awaits completion.
//! The observer is called from the generator's coordinator thread: once per phase start,
//! once per second per phase ([`Event::Point`], absolute time in `at`), and once per
//! finished phase. Keep it cheap (e.g. send into a channel, as [`ChannelObserver`] does).
//! Cancel with [`CancelToken::cancel`] (in `RunOpts::cancel`): the phase in progress stops,
//! what was measured is returned with `interrupted: true`.
//!
//! Lower level: [`engine::run_phase`] runs one [`engine::PhasePlan`] (blocking).
//!
//! # What is measured
//!
//! Latency runs from the request's start (closed model) or its *due time* (open model: a
//! stalled target cannot hide its stalls by slowing the sender) to the last body byte.
//! TTFB, TTFT likewise. Only successful requests enter the latency histograms; failures are
//! counted by class (see [`result::ErrorCounts`]). Open-model requests due while the
//! in-flight cap is reached are counted as `dropped`. Results: [`result::SuiteResult`],
//! schema `orchestrator/schema/suite-result.schema.json`.

pub mod cli;
pub mod engine;
pub mod host;
mod http;
pub mod merge;
pub mod notes;
pub mod remote;
pub mod request;
pub mod result;
pub mod settle;
mod stats;
mod sys;
pub mod table;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use engine::{run_phase, EngineOpts, LoadShape, PhaseOutput, PhasePlan, PhaseRunner, Stage};
pub use request::{Api, Endpoint, PreparedRequest, RequestSpec};
pub use result::{PhaseResult, SuiteResult, TimePoint};
pub use sys::allowed_cores;

/// Load generator failures (not request failures: those are counted in the results).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bad URL `{url}`: {why}")]
    BadUrl { url: String, why: String },
    #[error("invalid {what}: {why}")]
    Config { what: String, why: String },
    #[error("load generator runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("load generator thread: {0}")]
    Thread(String),
    #[error("mock admin API {url}: {why}")]
    MockAdmin { url: String, why: String },
    /// Generators run elsewhere ([`remote`]) failed to run, or their results to merge.
    #[error("load generators: {0}")]
    Generators(String),
    /// The settle step's probe (see [`settle`]) gets no answer.
    #[error("probe {url}: {why}")]
    Probe { url: String, why: String },
}

/// Shared flag to stop a run early; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cancels `token` on the first Ctrl-C (the run stops and reports what it measured) and
/// exits with status 130 on the second. For the command-line entry points.
pub fn cancel_on_ctrl_c(token: &CancelToken) {
    let token = token.clone();
    let _ = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                crate::note!("\ninterrupted: stopping and reporting what was measured (Ctrl-C again to quit)");
                token.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
}

/// What the generator reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A phase (or its warm-up) begins.
    PhaseStarted {
        suite: String,
        phase: String,
        warmup: bool,
        at: DateTime<Utc>,
    },
    /// One second of a measured phase (not sent for warm-ups).
    Point {
        suite: String,
        phase: String,
        at: DateTime<Utc>,
        point: TimePoint,
    },
    /// A measured phase's full result.
    PhaseFinished {
        suite: String,
        result: Box<PhaseResult>,
    },
    /// A line for the operator from library code ([`notes`]): the lab's progress and
    /// warnings.
    Note { text: String },
}

/// Receives [`Event`]s from the generator's coordinator thread. Must not block for long.
pub trait Observer: Send + Sync {
    fn on_event(&self, event: &Event);
}

/// An [`Observer`] that forwards every event into an unbounded tokio channel.
pub struct ChannelObserver(tokio::sync::mpsc::UnboundedSender<Event>);

impl ChannelObserver {
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(tx), rx)
    }
}

impl Observer for ChannelObserver {
    fn on_event(&self, event: &Event) {
        let _ = self.0.send(event.clone());
    }
}
