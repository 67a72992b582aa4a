//! Black-box tests of the HTTP API: the real server on a random port, a real PostgreSQL
//! database of its own per test, driven over HTTP with reqwest. One binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod accounts;
mod audit;
mod auth;
mod cache;
mod conditional;
mod cors;
mod errors;
mod hardening;
mod hashing;
mod idempotency;
mod logout;
mod markets;
mod operations;
mod outage;
mod paging;
mod proxy;
mod ratelimit;
mod search;
mod users;
