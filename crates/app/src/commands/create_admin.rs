//! `markets create-admin`.

use anyhow::Context;
use markets_domain::audit::{AuditAction, AuditEvent};
use markets_domain::auth::{Password, Registration};
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email, User};
use std::io::BufRead;
use tracing::info;

use super::migrate::migrate;
use crate::settings::Settings;
use crate::wiring::{AppAuthService, Components};

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

/// Makes `email` an administrator after migrating the database (so it works on a fresh one):
/// an existing account is promoted (its password is neither asked for nor changed), which is
/// how an installation that lost its last admin recovers without SQL; otherwise a new admin
/// account is created with the password from `password`.
///
/// # Errors
/// On invalid input or an unreachable database.
pub async fn create_admin(
    settings: &Settings,
    email: &str,
    display_name: &str,
    password: PasswordSource,
) -> anyhow::Result<()> {
    let email = Email::parse(email)?;
    let display_name = DisplayName::parse(display_name)?;
    migrate(settings).await?;
    let components = Components::build(settings).await?;
    let auth = components.state.auth();
    let admin = match auth.find_by_email(&email).await? {
        Some(user) => promote(auth, user).await?,
        None => {
            let password = Password::parse(&password.read()?)?;
            let registration = Registration::new(email, password, display_name);
            let admin = auth.register(registration, Role::Admin, true).await?;
            info!(user_id = %admin.id, email = %admin.email, "administrator created");
            admin
        }
    };
    println!("{}", admin.id);
    Ok(())
}

/// Gives an existing account the admin role, with a `user.role_changed` audit event (stored in
/// the change's transaction, by no user: an operator at the command line).
async fn promote(auth: &AppAuthService, user: User) -> anyhow::Result<User> {
    if user.role == Role::Admin {
        info!(user_id = %user.id, email = %user.email, "already an administrator");
        return Ok(user);
    }
    let event = AuditEvent::new(AuditAction::RoleChanged)
        .on("user", user.id)
        .with("role", Role::Admin.as_str())
        .with("via", "create-admin");
    let change = auth.set_role(user.id, Role::Admin, &event).await?;
    markets_application::security::log(&event.with_previous_role(change.previous));
    info!(user_id = %change.user.id, email = %change.user.email, previous_role = %change.previous,
        "existing account promoted to administrator");
    Ok(change.user)
}
