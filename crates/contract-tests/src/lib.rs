//! Contract test suites for the markets ports, written once against the traits:
//! [`repository_contract!`] for the market and user repositories, [`cache_contract!`] for caches,
//! [`embedding_contract!`] for embedding providers, [`vector_index_contract!`] for vector indexes
//! (with [`VectorIndexFixture`], which extends [`RepositoryFixture`]: an index is tested beside
//! the repositories that create the markets it indexes), [`job_queue_contract!`] for job queues
//! (with [`JobQueueFixture`], also beside the repositories, whose writes schedule the jobs),
//! [`rate_limiter_contract!`] for rate limiters, [`audit_log_contract!`] for audit logs (with
//! [`AuditLogFixture`], beside the repositories whose changes write their events to it).
//!
//! Every adapter of a port runs the port's suite; so can other teams with their own adapters.
//! A suite is a set of `pub async fn` cases, each taking a fresh fixture (isolated storage), and a
//! macro that turns them into one `#[tokio::test]` each:
//!
//! ```text
//! use markets_contract_tests::{RepositoryFixture, repository_contract};
//!
//! struct MyFixture { markets: MyMarkets, users: MyUsers }
//!
//! impl RepositoryFixture for MyFixture {
//!     type Markets = MyMarkets;
//!     type Users = MyUsers;
//!     fn markets(&self) -> &MyMarkets { &self.markets }
//!     fn users(&self) -> &MyUsers { &self.users }
//! }
//!
//! async fn fixture() -> MyFixture { /* fresh, empty storage */ }
//!
//! repository_contract!(fixture());
//! ```
//!
//! The crate using the macro needs `tokio` (with `macros` and `rt`) as a dev-dependency. Cases
//! panic with a message naming the broken rule.
#![deny(missing_docs)]
// A test kit reports contract violations by panicking, like `assert!` does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod audit_log;
pub mod cache;
pub mod embedding;
pub mod job_queue;
pub mod rate_limiter;
pub mod repository;
pub mod vector_index;

pub use audit_log::AuditLogFixture;
pub use cache::CacheFixture;
pub use embedding::EmbeddingFixture;
pub use job_queue::JobQueueFixture;
pub use rate_limiter::RateLimiterFixture;
pub use repository::RepositoryFixture;
pub use vector_index::VectorIndexFixture;

/// The body of every suite's macro: one `#[test]` per case of module `$suite`, each running the
/// case on a fixture from `$make` on its own runtime.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    ($suite:ident, $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::repository::run(async {
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
}
