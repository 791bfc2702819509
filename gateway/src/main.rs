//! `gateway --config FILE [--listen ADDR] [--threads N]`, or `gateway --probe URL`
//! (the image's healthcheck: exit 0 on a 2xx answer; needs no config).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A fast LLM gateway (OpenAI and Anthropic APIs, Prometheus metrics).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// YAML configuration file (see config.example.yaml).
    #[arg(long, env = "GATEWAY_CONFIG", required_unless_present = "probe")]
    config: Option<PathBuf>,
    /// Listen address, overriding the config's `listen` (port 0 picks a free port).
    #[arg(long, env = "GATEWAY_LISTEN")]
    listen: Option<String>,
    /// Runtime threads, overriding the config's `threads` (1 = single-threaded runtime).
    #[arg(long, env = "GATEWAY_THREADS")]
    threads: Option<usize>,
    /// Healthcheck mode: GET this `http://` URL, exit 0 on a 2xx answer, else 1 (no server).
    #[arg(long, value_name = "URL")]
    probe: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.probe, cli.config) {
        (Some(url), _) => gateway::probe::probe(&url).map_err(anyhow::Error::from),
        (None, Some(config)) => gateway::run(gateway::RunOptions {
            config,
            listen: cli.listen,
            threads: cli.threads,
        }),
        (None, None) => Err(anyhow::anyhow!("--config is required (or --probe URL)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
