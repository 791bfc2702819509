//! Benchmark suites defined in YAML (profiles `full` and `quick`).
pub mod cli;
