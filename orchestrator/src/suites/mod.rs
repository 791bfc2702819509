//! Benchmark suites defined in YAML (`orchestrator/suites.yaml`, profiles `full` and
//! `quick`) and run against any URL by [`run_suite`]. See the `load` module docs for the API.
pub mod cli;
pub mod def;
pub mod faults;
pub mod frontier;
pub mod paired;
pub mod run;
pub mod thresholds;

pub use def::{Profile, SuiteDef, SuiteError, SuiteKind, SuitesFile};
pub use run::{idle_settle, probe_request, run_suite, run_suite_blocking, RunOpts, TargetSpec};
