use clap::Parser;

/// Exit code for bad command-line usage (sysexits' EX_USAGE). Not clap's default 2,
/// because `compare` exits 2 to report a regression and CI must tell the two apart.
const EXIT_USAGE: i32 = 64;

fn main() {
    let cli = match orchestrator::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version: exit 0
        Err(err) => {
            let _ = err.print();
            std::process::exit(EXIT_USAGE);
        }
    };
    // The library's progress lines and warnings go to stderr.
    orchestrator::load::notes::install(Some(std::sync::Arc::new(
        orchestrator::load::notes::Stderr,
    )));
    match orchestrator::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("Error: {err:#}");
            std::process::exit(1);
        }
    }
}
