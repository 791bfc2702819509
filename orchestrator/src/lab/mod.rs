//! The Docker lab: the stack, the cpuset plan, runs against each target in turn.
pub mod cli;
pub mod compose;
pub mod copies;
pub mod engine_lock;
pub mod engines;
pub mod estimate;
pub mod generators;
pub mod image_source;
pub mod images;
pub mod lane;
pub mod list;
pub mod lock;
pub mod plan;
pub mod rig;
pub mod run;
pub mod stack;
pub mod watch;
