//! `orchestrator report` and `orchestrator compare`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::compare::compare_runs;
use super::{render_run, RunData};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run id (a directory under the results directory); default: the `latest` link.
    pub run_id: Option<String>,
    /// The results directory.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The earlier run (run id, or a path to a run directory).
    pub run_a: String,
    /// The later run, compared against the earlier one.
    pub run_b: String,
    /// Largest tolerated change, in percent. Ok requests/s falling or p99 rising by more is
    /// a regression (exit code 2) only when the change also lies outside the noise: the two
    /// runs' 95 % intervals of that figure do not overlap (with 3 or more repeats in both
    /// runs: a one-sided permutation test on the repeats, p ≤ 0.05). A figure without an
    /// interval (a ramp, too few one-second windows) is judged by the threshold alone.
    /// Otherwise the change is listed as "within noise" (exit code 0).
    #[arg(long, default_value_t = 10.0)]
    pub threshold: f64,
    /// The results directory.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Also write the comparison (markdown) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A run id names a directory under `results`; an existing path is taken as is.
fn run_dir(results: &Path, id: &str) -> PathBuf {
    let p = Path::new(id);
    if p.is_absolute() || (p.components().count() > 1 && p.is_dir()) {
        p.to_path_buf()
    } else {
        results.join(id)
    }
}

pub fn report(args: ReportArgs) -> anyhow::Result<i32> {
    let id = args.run_id.as_deref().unwrap_or(crate::rundir::LATEST);
    let dir = run_dir(&args.results, id);
    let paths =
        render_run(&dir).with_context(|| format!("rendering the report of {}", dir.display()))?;
    println!("{}", paths.summary_md.display());
    println!("{}", paths.report_html.display());
    println!("{}", paths.all_results.display());
    Ok(0)
}

pub fn compare(args: CompareArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.threshold.is_finite() && args.threshold >= 0.0,
        "--threshold must be a percentage >= 0, got {}",
        args.threshold
    );
    let a = RunData::read(&run_dir(&args.results, &args.run_a))?;
    let b = RunData::read(&run_dir(&args.results, &args.run_b))?;
    let cmp = compare_runs(&a, &b, args.threshold)?;
    print!("{}", cmp.markdown);
    if let Some(out) = &args.out {
        std::fs::write(out, &cmp.markdown).with_context(|| format!("writing {}", out.display()))?;
    }
    if cmp.regressions.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "{} regression(s) beyond {} %:",
            cmp.regressions.len(),
            args.threshold
        );
        for r in &cmp.regressions {
            eprintln!("  {r}");
        }
        Ok(2)
    }
}
