//! A loopback OpenAI- and Anthropic-compatible upstream for gateway benchmarks.
//!
//! It answers `POST /v1/chat/completions` and `POST /v1/messages` (plain and streamed)
//! from precomputed byte templates so that it is never what a benchmark measures, and
//! injects latency, pacing and faults on demand through `x-mock-*` headers (see
//! [`config::Knobs`]). `GET /v1/models`, `GET /health` and `GET /metrics` complete it.
//! The `/__mock/` admin endpoints change the fault settings at run time, simulate an
//! outage, and report request counts as JSON (see [`faults`]).
//!
//! Tokens: every output token is the word chunk `"tok "`, so `completion_tokens` is
//! exactly the number of content pieces sent; prompt tokens are the whitespace-separated
//! words of the messages (see [`request`]).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod body;
pub mod config;
pub mod faults;
mod listener;
pub mod metrics;
pub mod render;
pub mod request;
mod server;

pub use config::{Fault, Knobs, Opts};
pub use faults::{FaultSettings, Outage};
pub use probe::{probe, ProbeError};
pub use server::{run, serve, Config, RunError};
