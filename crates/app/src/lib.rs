//! The markets service: configuration, wiring by constructor injection, the HTTP layer and the
//! subcommands of the `markets` binary. No business rules live here: they are in
//! `markets_domain`, reached through the services built in [`wiring`].
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod http;
pub mod indexer;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod wiring;
pub mod worker;
