//! What the tests that run the model share: where it is.

use std::path::PathBuf;

use markets_minilm::{MiniLmEmbedder, MiniLmSettings};

/// The model directory from `MARKETS_MODEL_DIR`. Fails, rather than skips, when it is unset: a
/// suite that silently runs nothing would pass in CI with the model never tried.
pub fn model_dir() -> PathBuf {
    match std::env::var_os("MARKETS_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "MARKETS_MODEL_DIR is not set: run `eval \"$(scripts/model.sh)\"` (or scripts/test.sh, \
             which does) to provision all-MiniLM-L6-v2 and point it at the model"
        ),
    }
}

/// The embedder over that model, with default settings.
pub fn embedder() -> MiniLmEmbedder {
    MiniLmEmbedder::load(&MiniLmSettings::new(model_dir())).unwrap()
}
