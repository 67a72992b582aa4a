//! The fred client as this service configures it (fred's defaults are unsafe for a service: no
//! reconnect policy, no command timeout, an unbounded queue).

use fred::prelude::*;
use std::time::Duration;

use crate::RedisSettings;

/// Builds a client and starts connecting in the background: start-up does not wait for Redis,
/// and the client reconnects by itself (exponential backoff up to 2 s) whenever the connection
/// drops. Commands fail after the settings' timeout instead of waiting, and are never resent.
///
/// # Errors
/// If the URL is invalid.
pub(crate) fn connect(settings: &RedisSettings) -> Result<Client, Error> {
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
