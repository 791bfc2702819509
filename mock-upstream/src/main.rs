//! `mock-upstream`: see the library docs; prints `listening on ADDR` once bound.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let opts = mock_upstream::Opts::parse();
    match mock_upstream::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {:#}", anyhow::Error::from(err));
            ExitCode::FAILURE
        }
    }
}
