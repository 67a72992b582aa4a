//! Contract test suites for the markets ports, written once against the traits. Each suite
//! comes with a fixture trait, which hands out the adapter under test over fresh, empty storage,
//! and a macro:
//!
//! - [`repository_contract!`] ([`RepositoryFixture`]): the market and user repositories;
//! - [`vector_index_contract!`] ([`VectorIndexFixture`]): vector indexes, beside the repositories
//!   that create the markets they index;
//! - [`job_queue_contract!`] ([`JobQueueFixture`]): job queues, beside the repositories whose
//!   writes schedule the jobs in their own transaction (the outbox);
//! - [`audit_log_contract!`] ([`AuditLogFixture`]): audit logs, beside the repositories whose
//!   changes write their events to them;
//! - [`token_revocations_contract!`] ([`TokenRevocationsFixture`]): token revocations;
//! - [`cache_contract!`] ([`CacheFixture`]), [`embedding_contract!`] ([`EmbeddingFixture`]) and
//!   [`rate_limiter_contract!`] ([`RateLimiterFixture`]): caches, embedding providers and rate
//!   limiters.
//!
//! A store (one database behind all of the first five ports) runs them all with one line,
//! [`store_contract!`].
//!
//! Every adapter of a port runs the port's suite; so can other teams with their own adapters.
//! A suite is a set of `pub async fn` cases, each taking a fresh fixture (isolated storage). Its
//! macro turns each case into a plain `#[test]` that builds the fixture and runs the case on a
//! current-thread tokio runtime of its own, so a test crate needs no async test attribute or
//! runtime of its own; its fixtures must work on a current-thread runtime. Cases panic with a
//! message naming the broken rule.
//!
//! The in-memory fakes of `markets_domain::testing` keep the contracts; an adapter crate's
//! contract test has this shape:
//!
//! ```
//! use markets_contract_tests::{RepositoryFixture, repository, repository_contract};
//! use markets_domain::testing::InMemoryStore;
//!
//! /// Both repositories over one store, as an adapter's share one database.
//! struct Fixture(InMemoryStore);
//!
//! impl RepositoryFixture for Fixture {
//!     type Markets = InMemoryStore;
//!     type Users = InMemoryStore;
//!
//!     fn markets(&self) -> &InMemoryStore {
//!         &self.0
//!     }
//!
//!     fn users(&self) -> &InMemoryStore {
//!         &self.0
//!     }
//! }
//!
//! /// Fresh, empty storage for every case.
//! async fn fixture() -> Fixture {
//!     Fixture(InMemoryStore::new())
//! }
//!
//! // In a test target (`tests/contract.rs`): one `#[test]` per case of the suite.
//! repository_contract!(fixture());
//!
//! // Each case is also a public async function, which runs on any fixture by hand:
//! # fn main() -> std::io::Result<()> {
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async { repository::user_email_is_unique(&fixture().await).await });
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
// A test kit reports contract violations by panicking, like `assert!` does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod audit_log;
pub mod cache;
pub mod embedding;
pub mod job_queue;
pub mod rate_limiter;
pub mod repository;
pub mod token_revocations;
pub mod vector_index;

pub use audit_log::AuditLogFixture;
pub use cache::CacheFixture;
pub use embedding::EmbeddingFixture;
pub use job_queue::JobQueueFixture;
pub use rate_limiter::RateLimiterFixture;
pub use repository::RepositoryFixture;
pub use token_revocations::TokenRevocationsFixture;
pub use vector_index::VectorIndexFixture;

/// Generates every store suite ([`repository_contract!`], [`vector_index_contract!`],
/// [`job_queue_contract!`], [`audit_log_contract!`], [`token_revocations_contract!`]) on fixtures
/// from `$make`, whose type implements all their fixture traits.
///
/// A store implements all of these ports over one database, so one line proves it whole, and a
/// suite added here reaches every store. Each suite's tests go in a module named after the
/// suite (`repository::user_email_is_unique`, ...), so equal case names in two suites cannot
/// clash; the calling module must not have items of those five names.
#[macro_export]
macro_rules! store_contract {
    ($make:expr) => {
        $crate::__suites_in_modules!($make;
            repository: repository_contract,
            vector_index: vector_index_contract,
            job_queue: job_queue_contract,
            audit_log: audit_log_contract,
            token_revocations: token_revocations_contract,
        );
    };
}

/// The body of [`store_contract!`]: each `$suite` macro on fixtures from `$make`, in a module
/// `$module` that sees the caller's items (the fixture function first of all).
#[doc(hidden)]
#[macro_export]
macro_rules! __suites_in_modules {
    ($make:expr; $($module:ident: $suite:ident),+ $(,)?) => {
        $(
            mod $module {
                use super::*;

                $crate::$suite!($make);
            }
        )+
    };
}

/// The body of every suite's macro: one `#[test]` per case of module `$suite`, each running the
/// case on a fixture from `$make` on its own runtime.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    ($suite:ident, $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__private::run(async {
                    let fixture = $make.await;
                    $crate::$suite::$case(&fixture).await;
                });
            }
        )+
    };
}

#[doc(hidden)]
pub mod __private {
    pub use tokio;

    /// Runs a contract case to completion on a fresh current-thread runtime: each test has its
    /// own, so nothing a fixture opens (pools, connections) outlives its case or is shared
    /// between cases.
    pub fn run<F: Future<Output = ()>>(case: F) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the contract case")
            .block_on(case);
    }
}
