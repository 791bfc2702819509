//! `orchestrator load`: an ad-hoc load against any URL (no Docker), with a summary table
//! and optionally the JSON result.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use super::engine::{run_phase, EngineOpts, LoadShape, PhaseOutput, PhasePlan, PhaseRunner};
use super::remote::ProcessRunner;
use super::request::{Api, PreparedRequest, RequestSpec};
use super::result::{SuiteResult, SCHEMA_VERSION};
use super::{CancelToken, LoadError};
use config_text::parse_duration;

/// Options of `orchestrator load`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("load_model").required(true).args(["vus", "rate"])))]
pub struct LoadArgs {
    /// Base URL (`http://127.0.0.1:8080`, the API path is added) or a full endpoint URL.
    #[arg(long)]
    pub url: String,
    /// Closed model: this many virtual users.
    #[arg(long)]
    pub vus: Option<u64>,
    /// Open model: this many requests per second, whatever the answers do.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to run (`10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Closed model: stop after this many requests in total.
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Unmeasured warm-up before the run.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    #[arg(long)]
    pub stream: bool,
    #[arg(long, value_enum, default_value = "openai")]
    pub api: Api,
    #[arg(long, default_value = "gpt-4o-mini")]
    pub model: String,
    #[arg(long, default_value_t = 16)]
    pub max_tokens: u32,
    /// Extra header `name:value` (repeatable), e.g. `--header x-mock-latency-ms:5`.
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    #[arg(long, env = "LOAD_API_KEY")]
    pub api_key: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Open model: most requests in flight; beyond it due requests are dropped (counted).
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// Worker threads (0 = the cores this process may use).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write the JSON result (suite-result schema) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Name of the target in the result.
    #[arg(long, default_value = "target")]
    pub target: String,
    /// Start the measured phase at this wall-clock time, in seconds since the Unix epoch
    /// (`date +%s.%N`), after any warm-up: several generators given the same time load the
    /// target together, each with its share of `--rate` or `--vus`. The result records how
    /// late it started (`generator.start_lag_ms`).
    #[arg(long, value_parser = parse_epoch)]
    pub start_at: Option<f64>,
    /// Run the load as this many `lab-generator` processes (found beside this binary),
    /// each with its share of `--rate` or `--vus`, started together and merged exactly;
    /// 1 runs it in this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub generators: u64,
}

fn parse_epoch(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        _ => Err(format!(
            "`{s}` is not a time in seconds since the Unix epoch (e.g. `date +%s.%N`)"
        )),
    }
}

/// Seconds since the Unix epoch, now.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sleeps until `at` (seconds since the epoch) and returns how late it woke, ms (negative
/// never: a time already passed is a lag).
pub fn wait_until(at: f64) -> f64 {
    let ahead = at - epoch_now();
    if ahead > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(ahead));
    }
    ((epoch_now() - at) * 1000.0).max(0.0)
}

/// [`run_phase`] started at `start_at` (seconds since the epoch) when given, each result
/// recording how late it started (`generator.start_lag_ms`).
pub fn run_at(
    plan: &PhasePlan,
    opts: &EngineOpts,
    start_at: Option<f64>,
) -> Result<PhaseOutput, LoadError> {
    let lag_ms = start_at.map(wait_until);
    let mut out = run_phase(plan, opts)?;
    for p in &mut out.results {
        p.generator.start_lag_ms = lag_ms;
    }
    Ok(out)
}

/// Options of `orchestrator merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Results written by `orchestrator load --json` (or any suite result with histograms)
    /// of generators that ran the same load at the same time. Each generator is named by its
    /// file's stem.
    #[arg(required = true, num_args = 2..)]
    pub parts: Vec<PathBuf>,
    /// Write the merged result here.
    #[arg(long)]
    pub out: PathBuf,
}

/// Merges generators' results, prints the merged table and each generator's part.
pub fn merge(args: MergeArgs) -> anyhow::Result<i32> {
    let parts = args
        .parts
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let r: SuiteResult = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a suite result", path.display()))?;
            let name = path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into(),
            );
            Ok((name, r))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = super::merge::merge_results(&parts)?;
    print!("{}", super::table::render(&merged));
    print_parts(&merged);
    for w in &merged.warnings {
        eprintln!("warning: {}", w.message);
    }
    let text = serde_json::to_string_pretty(&merged)?;
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(0)
}

/// One line per generator of each merged phase: its share, CPU, lag and limit.
fn print_parts(merged: &SuiteResult) {
    for p in &merged.phases {
        for g in &p.generators {
            println!(
                "  {}: {} requests, {:.1} req/s, p50 {:.3} ms, p99 {:.3} ms, CPU {:.0} %{}{}",
                g.name,
                g.requests,
                g.requests_per_s,
                g.p50_ms,
                g.p99_ms,
                g.generator.cpu_percent,
                g.generator
                    .start_lag_ms
                    .map_or(String::new(), |l| format!(", started {l:.1} ms late")),
                if g.generator.bound {
                    ", at its own limit"
                } else {
                    ""
                }
            );
        }
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header `{s}` must be name:value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Runs the ad-hoc load and prints its summary; exit code 0 (130 when interrupted).
pub fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let spec = RequestSpec {
        api: args.api,
        stream: args.stream,
        model: args.model.clone(),
        max_tokens: args.max_tokens,
        headers: args.headers.clone(),
        api_key: args.api_key.clone(),
        ..RequestSpec::default()
    };
    let req = PreparedRequest::new(&spec, &args.url)?;
    let shape = match (args.vus, args.rate) {
        (Some(vus), None) => {
            anyhow::ensure!(vus > 0, "--vus must be at least 1");
            let mut s = LoadShape::constant_vus(vus, args.duration);
            if let LoadShape::Closed { iterations, .. } = &mut s {
                *iterations = args.iterations;
            }
            s
        }
        (None, Some(rate)) => {
            anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
            anyhow::ensure!(args.max_in_flight > 0, "--max-in-flight must be at least 1");
            anyhow::ensure!(args.iterations.is_none(), "--iterations needs --vus");
            LoadShape::Open {
                rate_per_s: rate,
                duration: args.duration,
                max_in_flight: args.max_in_flight,
            }
        }
        _ => anyhow::bail!("give exactly one of --vus and --rate"),
    };
    let cancel = CancelToken::new();
    super::cancel_on_ctrl_c(&cancel);
    let runner: Option<Arc<dyn PhaseRunner>> = match args.generators {
        1 => None,
        n => Some(Arc::new(ProcessRunner::beside_current_exe(n as usize)?)),
    };
    let opts = EngineOpts {
        threads: args.threads,
        cancel: cancel.clone(),
        progress: true,
        observer: None,
        suite: "adhoc".into(),
        runner,
    };
    let started_at = Utc::now();
    let requests = vec![("load".to_string(), req.clone())];
    if !args.warmup.is_zero() {
        let warm = match &shape {
            LoadShape::Closed { start_vus, .. } => LoadShape::constant_vus(*start_vus, args.warmup),
            LoadShape::Open {
                rate_per_s,
                max_in_flight,
                ..
            } => LoadShape::Open {
                rate_per_s: *rate_per_s,
                duration: args.warmup,
                max_in_flight: *max_in_flight,
            },
        };
        let plan = PhasePlan {
            name: "load".into(),
            shape: warm,
            requests: requests.clone(),
            timeout: args.timeout,
            warmup: true,
        };
        run_phase(&plan, &opts)?;
    }
    let plan = PhasePlan {
        name: "load".into(),
        shape,
        requests,
        timeout: args.timeout,
        warmup: false,
    };
    let out = run_at(&plan, &opts, args.start_at)?;
    let result = SuiteResult {
        schema_version: SCHEMA_VERSION,
        suite: "adhoc".into(),
        target: args.target.clone(),
        url: req.endpoint.url.clone(),
        profile: "adhoc".into(),
        started_at,
        finished_at: Utc::now(),
        interrupted: out.interrupted,
        phases: out.results,
        frontier: None,
        frontier_search: None,
        overhead: None,
        faults: None,
        thresholds: None,
        warnings: out.warnings,
    };
    print!("{}", super::table::render(&result));
    print_parts(&result);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if result.interrupted { 130 } else { 0 })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct W {
        #[command(flatten)]
        args: LoadArgs,
    }

    #[test]
    fn options_parse() {
        W::command().debug_assert();
        let w = W::try_parse_from([
            "load",
            "--url",
            "http://127.0.0.1:1",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--header",
            "x-mock-latency-ms: 5",
            "--stream",
            "--api",
            "anthropic",
        ])
        .unwrap();
        assert_eq!(w.args.rate, Some(100.0));
        assert_eq!(w.args.duration, Duration::from_secs(2));
        assert_eq!(
            w.args.headers,
            vec![("x-mock-latency-ms".into(), "5".into())]
        );
        assert_eq!(w.args.generators, 1);
        let two = [
            "load",
            "--url",
            "http://x:1",
            "--vus",
            "4",
            "--generators",
            "2",
        ];
        assert_eq!(W::try_parse_from(two).unwrap().args.generators, 2);
        let none = [
            "load",
            "--url",
            "http://x:1",
            "--vus",
            "4",
            "--generators",
            "0",
        ];
        assert!(W::try_parse_from(none).is_err());
        assert!(W::try_parse_from(["load", "--url", "http://x:1"]).is_err());
        assert!(
            W::try_parse_from(["load", "--url", "http://x:1", "--vus", "1", "--rate", "1"])
                .is_err()
        );
    }
}
