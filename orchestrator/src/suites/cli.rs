//! `orchestrator bench`: run suites from the suites file against any URL (no Docker);
//! writes `<out>/<target>-<suite>.json` and prints a summary per suite.

use std::path::PathBuf;

use anyhow::Context;

use super::def::{Profile, SuitesFile};
use super::run::{run_suite_blocking, RunOpts, TargetSpec};
use crate::load::settle::Settle;
use crate::load::table;

/// Options of `orchestrator bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The target's base URL, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub url: String,
    /// The upstream called directly (needed by the `overhead` suite).
    #[arg(long)]
    pub direct_url: Option<String>,
    /// Suite name, comma-separated names, or `all`.
    #[arg(long, default_value = "all")]
    pub suite: String,
    #[arg(long, value_enum, default_value = "quick")]
    pub profile: Profile,
    /// Directory for the JSON results.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Target name used in result file names.
    #[arg(long, default_value = "target")]
    pub target: String,
    /// Suites file (default: the one built in, orchestrator/suites.yaml).
    #[arg(long)]
    pub suites_file: Option<PathBuf>,
    /// Overrides the suites' API key.
    #[arg(long, env = "LOAD_API_KEY")]
    pub api_key: Option<String>,
    /// Overrides the suites' model.
    #[arg(long)]
    pub model: Option<String>,
    /// Extra header `name:value` (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Admin base URL of an upstream deployment's mock (`/__mock/`), deployment A first;
    /// repeat for B. Needed by the `faults` suite; with one, the target counts as having
    /// no second deployment (thresholds do not apply).
    #[arg(long = "mock-admin")]
    pub mock_admin: Vec<String>,
    /// Cores of the target (the `faults` suite's rate scales with them).
    #[arg(long, default_value_t = 1)]
    pub target_cores: usize,
    /// Generator worker threads (0 = the cores this process may use).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Start each phase at once, without waiting for the target to answer small probes
    /// at its idle latency (measured before the first suite) again.
    #[arg(long)]
    pub no_settle: bool,
}

/// The target's idle latency to the settle probe; `None` (said on stderr) when the probe
/// fails: phases then start at once.
fn idle_settle(target: &TargetSpec) -> Option<Settle> {
    match super::idle_settle(target) {
        Ok(s) => {
            eprintln!(
                "idle probe latency {:.2} ms: each phase starts once the target answers probes \
                 within {:.1} ms again",
                s.idle.as_secs_f64() * 1000.0,
                s.bound().as_secs_f64() * 1000.0
            );
            Some(s)
        }
        Err(e) => {
            eprintln!("no settle step between phases: {e}");
            None
        }
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header `{s}` must be name:value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Runs the chosen suites in order; exit code 0, 1 if a phase had no successful request,
/// 130 when interrupted (results measured so far are written).
pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let file = match &args.suites_file {
        Some(p) => SuitesFile::load(p)?,
        None => SuitesFile::builtin()?,
    };
    let suites = file.select(&args.suite)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let target = TargetSpec {
        name: args.target.clone(),
        url: args.url.clone(),
        direct_url: args.direct_url.clone(),
        api_key: args.api_key.clone(),
        model: args.model.clone(),
        headers: args.headers.clone(),
        faults: (!args.mock_admin.is_empty()).then(|| super::faults::FaultControl {
            admin_urls: args.mock_admin.clone(),
            cores: args.target_cores,
            redundant: args.mock_admin.len() > 1,
        }),
    };
    let opts = RunOpts {
        profile: args.profile,
        threads: args.threads,
        progress: true,
        settle: (!args.no_settle).then(|| idle_settle(&target)).flatten(),
        ..RunOpts::default()
    };
    crate::load::cancel_on_ctrl_c(&opts.cancel);
    let mut code = 0;
    for def in &suites {
        if matches!(def.kind, super::SuiteKind::Overhead(_)) && target.direct_url.is_none() {
            eprintln!("skipping suite `{}`: it needs --direct-url", def.name);
            continue;
        }
        if matches!(def.kind, super::SuiteKind::Faults(_)) && target.faults.is_none() {
            eprintln!("skipping suite `{}`: it needs --mock-admin", def.name);
            continue;
        }
        if opts.cancel.is_cancelled() {
            break;
        }
        let result = run_suite_blocking(def, &target, &opts, None)?;
        print!("{}", table::render(&result));
        // No container here: thresholds on its CPU or memory are not judged.
        let mut entry = crate::report::data::Entry {
            target: target.name.clone(),
            suite: def.name.clone(),
            result: Some(result),
            raw_file: String::new(),
            stats: None,
            repeats: Vec::new(),
        };
        if let Some(checks) = super::thresholds::judge_entry(def, &mut entry) {
            eprintln!(
                "{}",
                super::thresholds::summary_line(&target.name, &def.name, &checks)
            );
        }
        let Some(result) = entry.result else { continue };
        if result.phases.iter().any(|p| p.requests.ok == 0) {
            code = 1;
        }
        let path = args.out.join(format!("{}-{}.json", target.name, def.name));
        std::fs::write(&path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if opts.cancel.is_cancelled() {
        code = 130;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct W {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn options_parse() {
        W::command().debug_assert();
        let w = W::try_parse_from([
            "bench",
            "--url",
            "http://127.0.0.1:1",
            "--direct-url",
            "http://127.0.0.1:2",
            "--suite",
            "baseline",
            "--profile",
            "full",
            "--out",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(w.args.profile, Profile::Full);
        assert_eq!(w.args.direct_url.as_deref(), Some("http://127.0.0.1:2"));
    }
}
