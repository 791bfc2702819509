//! A fast LLM gateway: OpenAI Chat Completions and Anthropic Messages in front,
//! OpenAI-compatible, Anthropic and in-process loopback providers behind, with
//! Prometheus metrics. See `config.example.yaml` for the configuration.

pub mod busy;
pub mod config;
pub mod error;
pub mod fastpath;
pub mod governance;
pub mod metrics;
pub use probe;
pub mod providers;
pub mod routing;
pub mod server;
pub mod translate;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

/// What the command line decides.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The YAML configuration file.
    pub config: PathBuf,
    /// Overrides the config's `listen`.
    pub listen: Option<String>,
    /// Overrides the config's `threads`.
    pub threads: Option<usize>,
}

/// Loads the config, binds, prints `listening on ADDR`, and serves until SIGINT/SIGTERM
/// (then finishes the requests in flight, for a few seconds at most).
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut settings = config::load(&opts.config)?.validate()?;
    if let Some(l) = opts.listen {
        settings.listen = l
            .parse()
            .with_context(|| format!("bad --listen address {l:?} (want IP:PORT)"))?;
    }
    if let Some(t) = opts.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        settings.threads = Some(t);
    }
    let threads = settings
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let busy = (settings.busy_poll_us > 0)
            .then(|| busy::BusyPoll::new(std::time::Duration::from_micros(settings.busy_poll_us)));
        if let Some(b) = &busy {
            tokio::spawn(b.clone().run());
        }
        let state = Arc::new(server::State::new(&settings, busy)?);
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
        drop(out);
        server::serve(listener, state, shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
