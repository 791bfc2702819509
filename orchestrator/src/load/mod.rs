//! The load generator (closed and open models, HDR percentiles, streaming metrics).
pub mod cli;
pub mod result;
