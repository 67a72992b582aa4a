//! A rate limiter shared by every instance: GCRA in one atomic Lua script per request, on
//! Redis's clock. When Redis cannot answer, each instance falls back to its own in-process
//! limiter (fail-open per instance, never a failed request).

use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use markets_domain::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};
use std::sync::Arc;
use std::time::Duration;

use crate::RedisSettings;
use crate::breaker::Breaker;
use crate::client::RedisConnection;

/// GCRA: `KEYS[1]` holds the theoretical arrival time (ms, Redis clock); `ARGV[1]` is the
/// emission interval in ms, `ARGV[2]` the limit, `ARGV[3]` `1` to count the request or `0` to
/// peek (decide as if counting, write nothing). Returns `{allowed, remaining, reset_ms,
/// retry_ms}`; a peek's `remaining` and `reset_ms` are those before the request. One key, so
/// the script runs on one cluster node.
const GCRA: &str = r"
local interval, limit, count = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local burst = interval * limit
local next_tat = tat + interval
local allow_at = next_tat - burst
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
if not count then
  return {1, math.floor((burst - (tat - now)) / interval), tat - now, 0}
end
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return {1, math.floor((burst - (next_tat - now)) / interval), next_tat - now, 0}
";

/// What a script call does with the request it decides.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Count,
    Peek,
}

/// Rate limits in Redis, with `F` as the fallback while Redis is unreachable.
#[derive(Clone)]
pub struct RedisRateLimiter<F> {
    client: Client,
    prefix: Arc<str>,
    script: Arc<Script>,
    breaker: Arc<Breaker>,
    fallback: F,
}

impl<F: std::fmt::Debug> std::fmt::Debug for RedisRateLimiter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl<F: RateLimiter> RedisRateLimiter<F> {
    /// A limiter on `connection`, keyed under the prefix of `settings`.
    pub fn new(connection: &RedisConnection, settings: &RedisSettings, fallback: F) -> Self {
        Self {
            client: connection.client.clone(),
            prefix: settings.key_prefix.as_str().into(),
            script: Arc::new(Script::from_lua(GCRA)),
            breaker: Arc::new(Breaker::for_timeout(settings.command_timeout)),
            fallback,
        }
    }

    async fn shared(
        &self,
        policy: &RatePolicy,
        key: &str,
        mode: Mode,
    ) -> Result<RateDecision, Error> {
        let redis_key = format!("{}rl:{}:{key}", self.prefix, policy.name);
        let interval = policy.emission_interval().as_millis().max(1);
        let count = match mode {
            Mode::Count => "1",
            Mode::Peek => "0",
        };
        let args = vec![interval.to_string(), policy.limit.to_string(), count.into()];
        let reply: Vec<i64> = self
            .script
            .evalsha_with_reload(&self.client, redis_key, args)
            .await?;
        let [allowed, remaining, reset_ms, retry_ms] = reply[..] else {
            return Err(Error::new(ErrorKind::Parse, "unexpected GCRA reply"));
        };
        let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or_default());
        Ok(RateDecision::new(
            allowed == 1,
            policy.limit,
            u32::try_from(remaining).unwrap_or_default(),
            millis(reset_ms),
            millis(retry_ms),
        ))
    }

    /// Decides on Redis or, while it cannot answer, with the fallback.
    async fn decide(
        &self,
        policy: &RatePolicy,
        key: &str,
        mode: Mode,
    ) -> Result<RateDecision, RateLimitError> {
        let shared = self.shared(policy, key, mode);
        if let Some(Ok(decision)) = self.breaker.call("rate limits", shared).await {
            return Ok(decision);
        }
        match mode {
            Mode::Count => self.fallback.check(policy, key).await,
            Mode::Peek => self.fallback.peek(policy, key).await,
        }
    }
}

#[async_trait]
impl<F: RateLimiter> RateLimiter for RedisRateLimiter<F> {
    async fn check(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        self.decide(policy, key, Mode::Count).await
    }

    async fn peek(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        self.decide(policy, key, Mode::Peek).await
    }
}
