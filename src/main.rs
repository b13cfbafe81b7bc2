//! The `msr-billing` binary: read the configuration, start logging, build the app, serve.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use msr_billing::config::Settings;
use msr_billing::startup::Application;
use msr_billing::telemetry;

#[derive(Parser)]
#[command(name = "msr-billing", version, about = "Billing service of My Smart Road")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("msr-billing: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(settings.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match Application::build(settings).await {
            Ok(app) => match app.run_until_stopped().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("msr-billing: cannot start: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
