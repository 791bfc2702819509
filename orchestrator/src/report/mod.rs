//! summary.md, report.html and run-to-run comparison.
pub mod cli;
