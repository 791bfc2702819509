//! `mock-upstream`: see the library docs; prints `listening on ADDR` once bound.
//! `mock-upstream --probe URL` is the image's healthcheck (exit 0 on a 2xx answer).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let opts = mock_upstream::Opts::parse();
    let result = match &opts.probe {
        Some(url) => mock_upstream::probe(url).map_err(anyhow::Error::from),
        None => mock_upstream::run(opts).map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
