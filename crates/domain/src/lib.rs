//! The markets domain: what a market and a user are, who may do what, and the ports through which
//! the application reaches storage, caches and embedding models.
//!
//! This crate performs no I/O and depends on no runtime or framework, so other services can import
//! its types and port traits, and adapters (Postgres, Redis, OpenAI, ...) implement them. Every
//! port is `Debug` and implemented for `Arc<T>`; the enums and structs that will grow are
//! `#[non_exhaustive]`, built with constructors, so importers survive additions. The use cases
//! that need a runtime (the job worker, the login flow, ...) live in `markets-application`.
//!
//! - [`market`]: markets, their validated values, paging queries, the [`market::MarketRepository`] port
//!   and the [`market::MarketService`].
//! - [`user`]: users, emails, roles and the [`user::UserRepository`] port.
//! - [`paging`]: offset paging shared by every list ([`paging::PageSize`], [`paging::Page`]).
//! - [`permission`]: the role to permission table and the [`permission::Actor`] making a request.
//! - [`auth`]: passwords, the [`auth::PasswordHasher`] port and the [`auth::AuthService`].
//! - [`search`]: the [`search::EmbeddingProvider`], [`search::VectorIndex`] (queries) and
//!   [`search::IndexBacklog`] (indexing) ports, the [`search::SearchService`] and the
//!   [`search::IndexService`].
//! - [`cache`]: the [`cache::Cache`] port, with versioned entries.
//! - [`ratelimit`]: rate-limit policies and the [`ratelimit::RateLimiter`] port.
//! - [`jobs`]: durable background jobs: the [`jobs::JobQueue`], [`jobs::JobWakeups`] and
//!   [`jobs::Notifier`] ports.
//! - [`audit`]: security-relevant events and the [`audit::AuditLog`] port.
#![deny(missing_docs)]

#[macro_use]
mod forward;

pub mod audit;
pub mod auth;
pub mod cache;
pub mod error;
mod id;
pub mod jobs;
pub mod market;
pub mod paging;
pub mod permission;
pub mod ratelimit;
pub mod search;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod text;
pub mod user;

pub use error::{RepositoryError, ValidationError};
