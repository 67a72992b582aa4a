//! The command line: `markets [serve|migrate|create-admin]`.

use clap::{Parser, Subcommand};

/// The markets backend.
#[derive(Debug, Parser)]
#[command(name = "markets", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve {
        /// Do not apply pending migrations before serving.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load the markets with the most volume into the cache and exit.
    WarmCache,
    /// Run the background job worker alone (scale it separately from the API), until SIGTERM.
    Worker,
    /// Inspect and retry background jobs.
    Jobs {
        /// What to do.
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Recompute every market's search embedding, in batches, with a progress bar. Interrupted,
    /// it can be resumed with --resume (pending markets are remembered in the database).
    Reindex {
        /// Only finish the markets still pending; do not mark the others again.
        #[arg(long)]
        resume: bool,
    },
    /// Make an administrator: promote the account with this email if there is one (audited as
    /// `user.role_changed`; no password asked), or else create an admin account. The new
    /// account's password is read from the environment variable named by --password-env, or
    /// else from the first line of standard input; never from the command line, where other
    /// users of the machine could read it.
    CreateAdmin {
        /// The administrator's email.
        #[arg(long)]
        email: String,
        /// The name shown for the administrator.
        #[arg(long, default_value = "Administrator")]
        display_name: String,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
}

/// `markets jobs ...`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs.
    List {
        /// Only dead jobs (failed every attempt). Required for now: the others are in flight.
        #[arg(long)]
        dead: bool,
    },
    /// Print, per kind of job, how many are queued, running and dead, how long the oldest due
    /// one has waited, and how many completed in the last minute.
    Stats,
    /// Queue dead jobs again.
    Retry {
        /// The dead job to retry.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<String>,
        /// Retry every dead job.
        #[arg(long)]
        all_dead: bool,
    },
}
