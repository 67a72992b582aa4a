//! The `markets` binary.

use clap::Parser;
use markets_app::cli::{Cli, Command};
use markets_app::commands::{self, create_admin::PasswordSource};
use markets_app::settings::Settings;
use markets_app::telemetry;
use markets_app::wiring::Components;
use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, with its causes, for the operator reading the terminal or the journal.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let _log_writer = telemetry::init(&settings.log)?;
    match cli.command.unwrap_or(Command::Serve { no_migrate: false }) {
        Command::Serve { no_migrate } => commands::serve(settings, !no_migrate).await,
        Command::Migrate => commands::migrate(&settings).await,
        Command::Worker => {
            let components = Components::build(&settings).await?;
            commands::worker(&settings, &components.infra).await
        }
        Command::Jobs { command } => {
            let components = Components::build(&settings).await?;
            commands::jobs(components.infra.jobs().as_ref(), command).await
        }
        Command::Reindex { resume } => {
            let components = Components::build(&settings).await?;
            commands::reindex(&settings, &components, resume).await
        }
        Command::WarmCache => {
            let components = Components::build(&settings).await?;
            let warmed = commands::warm_cache(&settings, components.state.markets()).await?;
            println!("{warmed}");
            Ok(())
        }
        Command::CreateAdmin {
            email,
            display_name,
            password_env,
        } => {
            let source = password_env.map_or(PasswordSource::Stdin, PasswordSource::Env);
            commands::create_admin(&settings, &email, &display_name, source).await
        }
    }
}
