//! The fred client as this service configures it (fred's defaults are unsafe for a service: no
//! reconnect policy, no command timeout, an unbounded queue), on one server or a Redis Cluster.

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

    /// Checks that `url` is one [`connect`](Self::connect) takes, without connecting:
    /// `redis[s]://[[user:]password@]host[:port][/db]` for one server, or
    /// `redis[s]-cluster://[[user:]password@]host:port[,host:port...]` for a Redis Cluster
    /// (any of its nodes as seeds; fred's own `?node=host:port` form is taken too).
    ///
    /// # Errors
    /// If it is not such a URL.
    pub fn check_url(url: &str) -> Result<(), CacheError> {
        config(url)
            .map(drop)
            .map_err(|error| CacheError(Box::new(error)))
    }

    /// Whether this is a connection to a Redis Cluster.
    pub fn is_clustered(&self) -> bool {
        self.client.is_clustered()
    }
}

/// fred's configuration for `url`: a cluster URL with seeds separated by commas
/// (`redis-cluster://h1:p1,h2:p2`) is rewritten to fred's form (`redis-cluster://h1:p1?node=h2:p2`)
/// and everything else is left to fred's parser.
fn config(url: &str) -> Result<Config, Error> {
    let config = Config::from_url(&fred_url(url))?;
    if let ServerConfig::Clustered { hosts, .. } = &config.server
        && hosts.iter().any(|host| host.host.is_empty())
    {
        return Err(Error::new(ErrorKind::Config, "a cluster seed has no host"));
    }
    Ok(config)
}

/// `url` in the form fred's `Config::from_url` parses: for a `*-cluster` scheme, the seeds after
/// the first one (`,host:port`) move to `node=host:port` query parameters.
fn fred_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if !scheme.ends_with("-cluster") {
        return url.to_owned();
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let mut seeds = hosts.split(',');
    let first = seeds.next().unwrap_or_default();
    let others: Vec<&str> = seeds.collect();
    if others.is_empty() {
        return url.to_owned();
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut out = format!("{scheme}://");
    if let Some(credentials) = credentials {
        out.push_str(credentials);
        out.push('@');
    }
    out.push_str(first);
    out.push_str(path);
    let mut separator = '?';
    for part in query.into_iter().filter(|query| !query.is_empty()) {
        out.push(separator);
        out.push_str(part);
        separator = '&';
    }
    for seed in others {
        out.push(separator);
        out.push_str("node=");
        out.push_str(seed);
        separator = '&';
    }
    out
}

/// Builds a client and starts connecting in the background: start-up does not wait for Redis,
/// and the client reconnects by itself (exponential backoff up to 2 s) whenever the connection
/// drops. Commands fail after the settings' timeout instead of waiting, and are never resent.
///
/// # Errors
/// If the URL is invalid.
fn connect(settings: &RedisSettings) -> Result<Client, Error> {
    let config = config(&settings.url)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(url: &str) -> Vec<String> {
        match config(url).unwrap().server {
            ServerConfig::Clustered { hosts, .. } => {
                let mut hosts: Vec<String> = hosts
                    .iter()
                    .map(|host| format!("{}:{}", host.host, host.port))
                    .collect();
                hosts.sort();
                hosts
            }
            other => panic!("not a cluster: {other:?}"),
        }
    }

    #[test]
    fn cluster_urls_list_their_seeds_separated_by_commas() {
        assert_eq!(
            fred_url("redis-cluster://u:p@h1:7001,h2:7002,h3:7003"),
            "redis-cluster://u:p@h1:7001?node=h2:7002&node=h3:7003"
        );
        assert_eq!(
            seeds("redis-cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"),
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
        );
        assert_eq!(seeds("redis-cluster://h1:7001"), ["h1:7001"]);
        // fred's own form, and both together.
        assert_eq!(
            seeds("redis-cluster://h1:7001?node=h2:7002"),
            ["h1:7001", "h2:7002"]
        );
        assert_eq!(
            seeds("redis-cluster://h1:7001,h3:7003?node=h2:7002"),
            ["h1:7001", "h2:7002", "h3:7003"]
        );
        let config = config("redis-cluster://ann:s3cret@h1:7001,h2:7002").unwrap();
        assert_eq!(config.username.as_deref(), Some("ann"));
        assert_eq!(config.password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn single_server_urls_are_left_to_fred() {
        assert_eq!(fred_url("redis://h:6379/2"), "redis://h:6379/2");
        let config = config("redis://h:6380/2").unwrap();
        assert!(!config.server.is_clustered());
        assert_eq!(config.database, Some(2));
        assert!(RedisConnection::check_url("redis://127.0.0.1:6379").is_ok());
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "",
            "127.0.0.1:6379",
            "redis-cluster://h1:7001,",
            "redis-cluster://h1:7001,h2:notaport",
            "redis://h1:7001,h2:7002",
        ] {
            assert!(RedisConnection::check_url(url).is_err(), "{url}");
        }
    }
}
