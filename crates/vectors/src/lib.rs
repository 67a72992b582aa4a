//! Nearest-neighbour search over market embeddings, in memory: the copy the embedded set's
//! vector index (`markets_sqlite::SqliteVectorIndex`) loads from its table and searches.
//!
//! A [`Matrix`] holds each embedding once, normalised and in half precision, and scans them
//! exactly while they are few and through an HNSW graph (`hnsw_rs`) past that.
//!
//! It is a crate of its own because it is all arithmetic: the workspace's dev profile compiles
//! it optimised (a graph build is millions of distance computations, minutes unoptimised), which
//! it could not do for this code alone inside the adapter crate without compiling the adapter and
//! every one of its test targets optimised too.

mod ann;
mod matrix;
#[cfg(feature = "testing")]
pub mod testing;
mod unit;

pub use matrix::Matrix;
