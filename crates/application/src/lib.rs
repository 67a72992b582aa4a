//! The markets use cases that need a runtime, written once over the domain's ports so that every
//! front end (the HTTP server, the CLI, another service importing these crates) gets the same
//! policy: the durable job [`worker`] and its [`handlers`], the search [`indexer`], the [`login`]
//! flow (budgets of failures per account, authentication, failed-login audit), [`security`]
//! events and the audit policy, rate-limit decisions ([`limits`]) and the [`maintenance`] loops.
//!
//! It depends on `markets-domain`, tokio and tracing, and on no adapter or framework: adapters are
//! handed in as port implementations by the composition root (`markets-app`), and every use case
//! here is tested with the domain's in-memory fakes.
#![deny(missing_docs)]

pub mod handlers;
pub mod indexer;
pub mod limits;
pub mod login;
pub mod maintenance;
pub mod security;
pub mod wakeups;
pub mod worker;
