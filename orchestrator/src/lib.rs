//! The benchmark lab's orchestrator: a load generator usable on its own (`load`, `suites`),
//! the Docker lab that runs the suites against each gateway in turn (`lab`, `docker`, `sinks`),
//! what people watch while a run goes (`live`), and the reports rendered from a run's results (`report`).

pub mod cli;
pub mod docker;
pub mod lab;
pub mod live;
pub mod load;
pub mod report;
pub mod rundir;
pub mod sinks;
pub mod suites;
