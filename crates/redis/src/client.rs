//! The fred client as this service configures it (fred's defaults are unsafe for a service: no
//! reconnect policy, no command timeout, an unbounded queue).

use fred::prelude::*;
use std::time::Duration;

use markets_domain::cache::CacheError;

use crate::RedisSettings;

/// One Redis connection (with its reconnection loop) that the cache, the rate limiter and the
/// revocations share. Cheap to clone.
#[derive(Clone)]
pub struct RedisConnection {
    pub(crate) client: Client,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection").finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Builds the client and starts connecting in the background: start-up does not wait for
    /// Redis, commands fail after the settings' timeout, and the client reconnects by itself.
    ///
    /// # Errors
    /// If the URL is invalid.
    pub fn connect(settings: &RedisSettings) -> Result<Self, CacheError> {
        connect(settings)
            .map(|client| Self { client })
            .map_err(|error| CacheError(Box::new(error)))
    }
}

/// Builds a client and starts connecting in the background: start-up does not wait for Redis,
/// and the client reconnects by itself (exponential backoff up to 2 s) whenever the connection
/// drops. Commands fail after the settings' timeout instead of waiting, and are never resent.
///
/// # Errors
/// If the URL is invalid.
fn connect(settings: &RedisSettings) -> Result<Client, Error> {
    let config = Config::from_url(&settings.url)?;
    let timeout = settings.command_timeout;
    let client = Builder::from_config(config)
        .with_connection_config(|connection| {
            connection.connection_timeout = timeout.max(Duration::from_millis(500));
            connection.internal_command_timeout = timeout.max(Duration::from_millis(500));
            connection.max_command_attempts = 1;
            connection.max_command_buffer_len = 10_000;
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()?;
    client.connect();
    Ok(client)
}
