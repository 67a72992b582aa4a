//! Redis adapters (fred) for the markets ports, sharing one [`RedisConnection`]: [`RedisCache`]
//! for the [`Cache`](markets_domain::cache::Cache), [`RedisRateLimiter`] for the
//! [`RateLimiter`](markets_domain::ratelimit::RateLimiter) and [`RedisRevocations`] for the
//! [`TokenRevocations`](markets_domain::auth::TokenRevocations) port. The limiter and the
//! revocations wrap a fallback that answers while Redis cannot (an in-process limiter, the
//! durable record of revocations), so an outage fails no request.
//!
//! - Cache entries are `m1|<version>|<json>` under `<prefix>market:<id>`, with a TTL. `m1` names
//!   the format: an entry in any other format (or one that does not decode) is a miss and is
//!   overwritten by the next write.
//! - Cache writes are compare-and-set in one Lua script call for any number of markets: an
//!   entry is only replaced by a strictly newer version, and a removal marker refuses every
//!   write for the TTL. A reader that missed, read the old row and writes it back after an
//!   update or delete therefore changes nothing.
//! - Revocations are `<prefix>revoked:<jti>` keys expiring with their token, written after the
//!   durable record; whenever the connection is made again, Redis is refilled from that record,
//!   since a restarted Redis may have lost them.
//! - One server (`redis://`) or a Redis Cluster (`redis-cluster://host:port,host:port,...`, some
//!   of its nodes as seeds). On a cluster every script and command stays in one hash slot: the
//!   cache's batch write is split per slot and the calls are sent together (a batch still
//!   spreads over the masters), the limiter's script has one key, revocations are one key per
//!   command (the refill's pipeline is routed command by command). The key names are the same
//!   as on one server.
//! - Every command has a short timeout; after a failure, a breaker makes cache calls, limit
//!   checks and revocation checks skip Redis for a moment, so an outage costs requests one
//!   timeout per breaker period instead of one per command. fred reconnects in the background
//!   with exponential backoff.
#![deny(missing_docs)]

mod breaker;
mod cache;
mod client;
mod entry;
mod ratelimit;
mod revocations;
#[cfg(feature = "testing")]
pub mod testing;

pub use cache::{RedisCache, RedisSettings};
pub use client::RedisConnection;
pub use ratelimit::RedisRateLimiter;
pub use revocations::RedisRevocations;
