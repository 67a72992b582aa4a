//! Why the model could not be loaded or run.

use std::path::PathBuf;

/// Why the model directory could not be loaded; each names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file of the model could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON configuration file does not describe what this adapter runs.
    #[error("{path} is not a valid configuration: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The model is not the kind this adapter runs (pooling other than the mean, for instance).
    #[error("{path}: {reason}")]
    Unsupported {
        /// The file that says so.
        path: PathBuf,
        /// What is not supported.
        reason: String,
    },
    /// The tokenizer file could not be parsed.
    #[error("{path} is not a valid tokenizer: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizers crate's message.
        message: String,
    },
    /// The weights do not fit the configuration, or are not valid safetensors.
    #[error("cannot load the weights in {path}: {source}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: candle_core::Error,
    },
}

/// Why a batch of texts could not be embedded (none of these depends on the texts: they mean
/// the model or the process is broken).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// The tokenizer failed.
    #[error("tokenizing failed: {0}")]
    Tokenizer(String),
    /// A tensor operation failed.
    #[error("the forward pass failed")]
    Tensor(#[from] candle_core::Error),
    /// The blocking task running the model panicked or was cancelled.
    #[error("the model task did not finish")]
    Task(#[from] tokio::task::JoinError),
    /// The model's output is not a valid embedding.
    #[error("the model returned an invalid embedding")]
    Invalid(#[from] markets_domain::ValidationError),
}
