//! The model itself: its files, tokenising a batch, the BERT forward pass and the
//! sentence-transformers pooling (mean over the attention mask, then L2 normalisation).
//! Synchronous and CPU-bound: the embedder runs it on the blocking pool.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{self, BertModel};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{InferenceError, LoadError};

/// How many dimensions all-MiniLM-L6-v2's embeddings have (its hidden size).
pub const DIMENSIONS: usize = 384;

/// `sentence_bert_config.json`: how long a text the sentence model reads.
#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: usize,
}

/// `1_Pooling/config.json`: how token vectors become one sentence vector.
#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    pooling_mode_mean_tokens: bool,
}

/// A loaded sentence-embedding model.
pub(crate) struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the model in `dir`: `config.json` and `model.safetensors` (the BERT),
    /// `tokenizer.json`, `sentence_bert_config.json` (the truncation length, as
    /// sentence-transformers applies it) and `1_Pooling/config.json` (which must be mean pooling
    /// over [`DIMENSIONS`] dimensions).
    pub(crate) fn load(dir: &Path) -> Result<Self, LoadError> {
        let config: bert::Config = read_json(&dir.join("config.json"))?;
        let max_length = read_json::<SentenceConfig>(&dir.join("sentence_bert_config.json"))?
            .max_seq_length
            .min(config.max_position_embeddings);
        check_pooling(&dir.join("1_Pooling").join("config.json"))?;
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        let vb = VarBuilder::from_buffered_safetensors(read(&weights)?, bert::DTYPE, &device)
            .map_err(|source| weights_error(&weights, source))?;
        let bert =
            BertModel::load(vb, &config).map_err(|source| weights_error(&weights, source))?;
        Ok(Self {
            bert,
            tokenizer: load_tokenizer(&dir.join("tokenizer.json"), max_length)?,
            device,
        })
    }

    /// The unit-length embedding of each text, in order, from one forward pass over the batch
    /// padded to its longest text.
    pub(crate) fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, InferenceError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, mask) = self.tokenize(texts)?;
        let hidden = self.bert.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        Ok(normalize(&mean_pool(&hidden, &mask)?)?.to_vec2()?)
    }

    /// Token ids and attention mask, both `[texts, longest]`, padded with zeros on the right
    /// (the pad token is id 0 and masked out).
    fn tokenize(&self, texts: &[String]) -> Result<(Tensor, Tensor), InferenceError> {
        let encodings = texts
            .iter()
            .map(|text| self.tokenizer.encode(text.as_str(), true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| InferenceError::Tokenizer(error.to_string()))?;
        let longest = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = vec![0_u32; texts.len() * longest];
        let mut mask = vec![0_u32; texts.len() * longest];
        for (row, encoding) in encodings.iter().enumerate() {
            let start = row * longest;
            ids[start..start + encoding.len()].copy_from_slice(encoding.get_ids());
            mask[start..start + encoding.len()].fill(1);
        }
        let shape = (texts.len(), longest);
        Ok((
            Tensor::from_vec(ids, shape, &self.device)?,
            Tensor::from_vec(mask, shape, &self.device)?,
        ))
    }
}

/// The mean of each row's token vectors over its unmasked tokens: `[n, tokens, hidden]` and
/// `[n, tokens]` to `[n, hidden]`.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    // Every text has at least [CLS] and [SEP]; the floor only guards the division.
    let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
    summed.broadcast_div(&counts)
}

/// Each row scaled to unit length (a zero row stays zero, as in torch's `normalize`).
fn normalize(vectors: &Tensor) -> candle_core::Result<Tensor> {
    let norms = vectors
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f32::MAX)?;
    vectors.broadcast_div(&norms)
}

fn check_pooling(path: &Path) -> Result<(), LoadError> {
    let pooling: PoolingConfig = read_json(path)?;
    if !pooling.pooling_mode_mean_tokens || pooling.word_embedding_dimension != DIMENSIONS {
        return Err(LoadError::Unsupported {
            path: path.to_owned(),
            reason: format!("only mean pooling over {DIMENSIONS} dimensions is supported"),
        });
    }
    Ok(())
}

/// The tokenizer, truncating to `max_length` tokens and padding nothing (batches are padded by
/// [`Model::tokenize`]; the file itself pads everything to 128).
fn load_tokenizer(path: &Path, max_length: usize) -> Result<Tokenizer, LoadError> {
    let error = |message: String| LoadError::Tokenizer {
        path: path.to_owned(),
        message,
    };
    let mut tokenizer = Tokenizer::from_bytes(read(path)?).map_err(|e| error(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length,
            ..TruncationParams::default()
        }))
        .map_err(|e| error(e.to_string()))?;
    Ok(tokenizer)
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    serde_json::from_slice(&read(path)?).map_err(|source| LoadError::Config {
        path: path.to_owned(),
        source,
    })
}

fn weights_error(path: &Path, source: candle_core::Error) -> LoadError {
    LoadError::Weights {
        path: PathBuf::from(path),
        source,
    }
}
