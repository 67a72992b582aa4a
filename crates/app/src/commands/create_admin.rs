//! `markets create-admin`.

use anyhow::Context;
use markets_domain::auth::{AuthError, Password, Registration};
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email};
use std::io::BufRead;
use tracing::info;

use super::migrate::migrate;
use crate::settings::Settings;
use crate::wiring::Components;

/// Where the new administrator's password comes from.
#[derive(Debug)]
pub enum PasswordSource {
    /// An environment variable, by name.
    Env(String),
    /// The first line of standard input.
    Stdin,
}

impl PasswordSource {
    fn read(&self) -> anyhow::Result<String> {
        match self {
            Self::Env(name) => std::env::var(name)
                .with_context(|| format!("environment variable {name} holds no password")),
            Self::Stdin => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                Ok(line.trim_end_matches(['\r', '\n']).to_owned())
            }
        }
    }
}

/// Creates an administrator after migrating the database (so it works on a fresh one).
///
/// # Errors
/// On invalid input, a taken email or an unreachable database.
pub async fn create_admin(
    settings: &Settings,
    email: &str,
    display_name: &str,
    password: PasswordSource,
) -> anyhow::Result<()> {
    let registration = Registration::new(
        Email::parse(email)?,
        Password::parse(&password.read()?)?,
        DisplayName::parse(display_name)?,
    );
    migrate(settings).await?;
    let components = Components::build(settings).await?;
    let admin = components
        .state
        .auth()
        .register(registration, Role::Admin)
        .await
        .map_err(|error| match error {
            AuthError::EmailTaken => anyhow::anyhow!("a user with email {email} already exists"),
            other => other.into(),
        })?;
    info!(user_id = %admin.id, email = %admin.email, "administrator created");
    println!("{}", admin.id);
    Ok(())
}
