use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = leadscore::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    leadscore::app::run(cli)
}
