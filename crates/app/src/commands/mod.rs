//! What each subcommand does.

pub mod create_admin;
mod migrate;
mod serve;

pub use create_admin::create_admin;
pub use migrate::migrate;
pub use serve::serve;
