//! The Docker lab: the stack, the cpuset plan, runs against each target in turn.
pub mod cli;
