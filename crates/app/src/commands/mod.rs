//! What each subcommand does.

pub mod create_admin;
mod jobs;
mod migrate;
mod reindex;
mod serve;
mod warm_cache;

pub use create_admin::create_admin;
pub use jobs::{jobs, worker};
pub use migrate::migrate;
pub use reindex::reindex;
pub use serve::serve;
pub use warm_cache::{warm_cache, warm_on_start};
