use clap::Parser;

fn main() {
    let cli = orchestrator::cli::Cli::parse();
    match orchestrator::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("Error: {err:#}");
            std::process::exit(1);
        }
    }
}
