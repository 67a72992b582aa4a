//! The markets service's composition root: configuration, wiring by constructor injection, the
//! HTTP layer and the subcommands of the `markets` binary. No business rules or runtime policy
//! live here: rules are in `markets_domain`, the use cases that need a runtime (the job worker,
//! the login flow, the audit policy, maintenance) in `markets_application`, and [`wiring`] is the
//! only place that names the adapters.
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod http;
pub mod series;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod wiring;
