//! Command-line surface. Each subcommand's options and body live in the module that owns
//! the domain; this file only dispatches. Bodies are synchronous and build the runtime they
//! need, because the load generator sizes and pins its own runtime.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about = "LLM gateway benchmark lab")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate load against any URL (no Docker needed).
    Load(crate::load::cli::LoadArgs),
    /// Merge the JSON results of generators that ran the same load together (`load
    /// --start-at`): histograms added, counts summed, each generator named.
    Merge(crate::load::cli::MergeArgs),
    /// Run suites from the suites file against URLs you give (no Docker needed).
    Bench(crate::suites::cli::BenchArgs),
    /// Make every image the lab needs (pull, or build locally when no registry answers).
    Images(crate::lab::cli::ImagesArgs),
    /// Bring the lab stack up.
    Start(crate::lab::cli::StartArgs),
    /// Tear the lab down: every container with the lab label.
    Stop(crate::lab::cli::StopArgs),
    /// Show what runs where.
    Status(crate::lab::cli::StatusArgs),
    /// List the targets, suites and profiles `run` accepts (no Docker needed).
    List(crate::lab::list::ListArgs),
    /// Run suites against each target in turn inside the lab.
    Run(crate::lab::run::RunArgs),
    /// Render summary.md and report.html for a run.
    Report(crate::report::cli::ReportArgs),
    /// Compare two runs; exit 2 on a regression beyond the threshold and outside the noise.
    Compare(crate::report::cli::CompareArgs),
}

/// Runs the chosen subcommand and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Load(args) => crate::load::cli::run(args),
        Command::Merge(args) => crate::load::cli::merge(args),
        Command::Bench(args) => crate::suites::cli::run(args),
        Command::Images(args) => crate::lab::cli::images(args),
        Command::Start(args) => crate::lab::cli::start(args),
        Command::Stop(args) => crate::lab::cli::stop(args),
        Command::Status(args) => crate::lab::cli::status(args),
        Command::List(args) => crate::lab::list::list(args),
        Command::Run(args) => crate::lab::cli::run(args),
        Command::Report(args) => crate::report::cli::report(args),
        Command::Compare(args) => crate::report::cli::compare(args),
    }
}
