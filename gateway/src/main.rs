//! `gateway --config FILE [--listen ADDR] [--threads N]`
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A fast LLM gateway (OpenAI and Anthropic APIs, Prometheus metrics).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// YAML configuration file (see config.example.yaml).
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: PathBuf,
    /// Listen address, overriding the config's `listen` (port 0 picks a free port).
    #[arg(long, env = "GATEWAY_LISTEN")]
    listen: Option<String>,
    /// Runtime threads, overriding the config's `threads` (1 = single-threaded runtime).
    #[arg(long, env = "GATEWAY_THREADS")]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = gateway::RunOptions {
        config: cli.config,
        listen: cli.listen,
        threads: cli.threads,
    };
    match gateway::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
