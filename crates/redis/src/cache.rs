//! [`RedisCache`]: the [`Cache`] port on Redis.

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::util::redis_keyslot;
use futures_util::future::try_join_all;
use markets_domain::cache::{Cache, CacheError};
use markets_domain::market::{Market, MarketId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::info;

use crate::breaker::Breaker;
use crate::client::RedisConnection;
use crate::entry::{self, FORMAT, REMOVED};

/// Compare-and-set for any number of entries in one call. `ARGV[1]` is the instant the entries
/// expire (Unix milliseconds), `ARGV[2]` the format tag, then a version and an entry per key. An
/// entry is written unless the key holds a removal marker or an entry of this format with the
/// same or a newer version. On a Redis Cluster, the keys of one call share a hash slot: a batch
/// is split per slot (see [`RedisCache::put`](Cache::put)).
const PUT_IF_NEWER: &str = r"
local expire_at, format = ARGV[1], ARGV[2]
local written = 0
for i, key in ipairs(KEYS) do
  local version = tonumber(ARGV[1 + 2 * i])
  local current = redis.call('GET', key)
  local keep = false
  if current then
    if current == format .. '|removed' then
      keep = true
    else
      local held = tonumber(string.match(current, '^' .. format .. '|(%d+)|'))
      keep = held ~= nil and held >= version
    end
  end
  if not keep then
    redis.call('SET', key, ARGV[2 + 2 * i], 'PXAT', expire_at)
    written = written + 1
  end
end
return written
";

/// How to reach Redis and how to use it. Its `Debug` hides the URL's credentials.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[[user:]password@]host:port[/db]` for one server, or
    /// `redis-cluster://[[user:]password@]host:port,host:port,...` for a Redis Cluster (some of
    /// its nodes, from which the client learns the others).
    pub url: String,
    /// Prepended to every key, so deployments can share a Redis (e.g. `markets:v1:`). On a
    /// cluster, a prefix holding a hash tag (`{...}`) puts every key in one slot, on one node.
    pub key_prefix: String,
    /// How long entries and removal markers live.
    pub ttl: Duration,
    /// The most any command may take before it counts as failed.
    pub command_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &without_credentials(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("ttl", &self.ttl)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// `url` with its user and password (`scheme://user:password@host`) replaced by `***`, so that
/// settings can be logged.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[authority_end..]),
        None => url.to_owned(),
    }
}

/// Markets cached in Redis. Cheap to clone: clones share the connection.
///
/// Entries and removal markers expire at an instant the sender computes (its clock plus the
/// TTL), not a TTL counted from when Redis runs the command: a write delayed in a stalled
/// Redis, or restored from a snapshot, cannot live longer than it would have, which bounds how
/// long the [fences](markets_domain::cache::fences) must be kept.
#[derive(Clone)]
pub struct RedisCache {
    client: Client,
    prefix: Arc<str>,
    ttl: Duration,
    put_script: Arc<Script>,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> CacheError {
    CacheError(Box::new(error))
}

impl RedisCache {
    /// A cache on its own connection, started in the background: start-up does not wait for
    /// Redis, and the client reconnects by itself (exponential backoff up to 2 s).
    ///
    /// # Errors
    /// If the URL is invalid.
    pub fn connect(settings: &RedisSettings) -> Result<Self, CacheError> {
        Ok(Self::new(&RedisConnection::connect(settings)?, settings))
    }

    /// A cache on `connection`, with the TTL, prefix and timeout of `settings`.
    pub fn new(connection: &RedisConnection, settings: &RedisSettings) -> Self {
        Self {
            client: connection.client.clone(),
            prefix: settings.key_prefix.as_str().into(),
            ttl: settings.ttl,
            put_script: Arc::new(Script::from_lua(PUT_IF_NEWER)),
            breaker: Arc::new(Breaker::for_timeout(settings.command_timeout)),
        }
    }

    fn key(&self, id: MarketId) -> String {
        format!("{}market:{id}", self.prefix)
    }

    /// When an entry written now expires, in Unix milliseconds.
    fn expire_at(&self) -> i64 {
        let at = SystemTime::now() + self.ttl;
        let millis = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        i64::try_from(millis).unwrap_or(i64::MAX)
    }

    /// Runs `command` unless the breaker is open, and keeps the breaker's state.
    async fn call<T>(
        &self,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        match self.breaker.call("cache", command).await {
            None => Err(CacheError("cache skipped after a recent failure".into())),
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => {
                metrics::counter!("cache_errors_total").increment(1);
                Err(unavailable(error))
            }
        }
    }

    /// Checks that Redis answers, for readiness probes. It goes to Redis even while the
    /// breaker is open, and a success closes the breaker.
    ///
    /// # Errors
    /// If it does not answer within the command timeout.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.client
            .ping::<String>(None)
            .await
            .map_err(unavailable)?;
        if self.breaker.reset() {
            info!("cache is reachable again");
        }
        Ok(())
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, id: MarketId) -> Result<Option<Market>, CacheError> {
        let stored: Option<String> = self.call(self.client.get(self.key(id))).await?;
        Ok(stored.as_deref().and_then(entry::decode))
    }

    async fn put(&self, markets: &[Market]) -> Result<(), CacheError> {
        if markets.is_empty() {
            return Ok(());
        }
        let head = [self.expire_at().to_string(), FORMAT.to_owned()];
        // One script call per hash slot (a cluster refuses a script whose keys span slots),
        // all sent at once; one server takes the whole batch in one call.
        let mut batches: BTreeMap<u16, (Vec<String>, Vec<String>)> = BTreeMap::new();
        let clustered = self.client.is_clustered();
        for market in markets {
            let key = self.key(market.id);
            let slot = if clustered {
                redis_keyslot(key.as_bytes())
            } else {
                0
            };
            let (keys, args) = batches
                .entry(slot)
                .or_insert_with(|| (Vec::new(), head.to_vec()));
            keys.push(key);
            args.push(market.version.to_string());
            args.push(entry::encode(market).map_err(unavailable)?);
        }
        let script = &self.put_script;
        let calls = batches
            .into_values()
            .map(|(keys, args)| script.evalsha_with_reload::<i64, _, _>(&self.client, keys, args));
        let _written: Vec<i64> = self.call(try_join_all(calls)).await?;
        Ok(())
    }

    async fn remove(&self, id: MarketId) -> Result<(), CacheError> {
        let expire = Some(Expiration::PXAT(self.expire_at()));
        self.call(
            self.client
                .set::<(), _, _>(self.key(id), REMOVED, expire, None, false),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let settings = RedisSettings {
            url: "redis://default:s3cret@cache.internal:6379/2".into(),
            key_prefix: "markets:v1:".into(),
            ttl: Duration::from_secs(300),
            command_timeout: Duration::from_millis(100),
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(
            debug.contains("redis://***@cache.internal:6379/2"),
            "{debug}"
        );
        assert_eq!(
            without_credentials("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            without_credentials("redis-cluster://ann:s3cret@h1:7001,h2:7002"),
            "redis-cluster://***@h1:7001,h2:7002"
        );
    }
}
