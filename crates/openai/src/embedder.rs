//! [`OpenAiEmbedder`]: the embedding port on an OpenAI-compatible API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable;
use markets_domain::search::{Embedding, EmbeddingError, EmbeddingProvider};
use reqwest::Client;
use secrecy::ExposeSecret;
use tracing::{debug, warn};
use url::Url;

use crate::retry::{Failure, schedule, wait};
use crate::settings::{OpenAiSettings, RetryPolicy};
use crate::wire::{EmbeddingsRequest, EmbeddingsResponse, error_message, retry_after};

/// Why an [`OpenAiEmbedder`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting is out of range.
    #[error("invalid embeddings settings: {field}: {problem}")]
    Invalid {
        /// The [`OpenAiSettings`] field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Embeddings from an OpenAI-compatible API. Cheap to clone: clones share one HTTP client and
/// its connection pool.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    endpoint: Url,
    settings: OpenAiSettings,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = &self.inner.settings;
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("model", &settings.model)
            .field("dimensions", &settings.dimensions)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// Checks `settings` and builds the HTTP client (no request is made).
    ///
    /// Redirects are not followed (an embeddings API has no reason to send one, and the key
    /// must not travel elsewhere): a 3xx counts as an unusable answer.
    ///
    /// # Errors
    /// [`SetupError::Invalid`] if `dimensions`, `max_batch_size` or `retry.max_attempts` is 0,
    /// `retry.min_delay` exceeds `retry.max_delay`, or `base_url` is not an `http(s)` URL that
    /// can take a path; [`SetupError::Client`] if the TLS set-up fails.
    pub fn new(settings: OpenAiSettings) -> Result<Self, SetupError> {
        let invalid = |field, problem| Err(SetupError::Invalid { field, problem });
        if settings.dimensions == 0 {
            return invalid("dimensions", "must be at least 1");
        }
        if settings.max_batch_size == 0 {
            return invalid("max_batch_size", "must be at least 1");
        }
        let RetryPolicy {
            max_attempts,
            min_delay,
            max_delay,
        } = settings.retry;
        if max_attempts == 0 {
            return invalid("retry.max_attempts", "must be at least 1");
        }
        if min_delay > max_delay {
            return invalid("retry.min_delay", "must not exceed retry.max_delay");
        }
        let Some(endpoint) = endpoint(&settings.base_url) else {
            return invalid("base_url", "must be an http:// or https:// URL");
        };
        let client = Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("markets-openai/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| SetupError::Client(Box::new(error)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                endpoint,
                settings,
            }),
        })
    }

    /// One request for `texts`, retried while it fails transiently.
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        let policy = self.inner.settings.retry;
        let mut attempt = 1;
        let result = (|| self.request(texts))
            .retry(schedule(&policy).into_iter())
            .sleep(tokio::time::sleep)
            .when(Failure::is_transient)
            .adjust(|failure: &Failure, backoff| {
                backoff.map(|backoff| wait(backoff, failure.retry_after(), policy.max_delay))
            })
            .notify(|failure: &Failure, delay: Duration| {
                warn!(
                    error = %chain(failure),
                    attempt,
                    max_attempts = policy.max_attempts,
                    retry_in_ms = delay.as_millis(),
                    "embeddings request failed; retrying"
                );
                attempt += 1;
            })
            .await;
        result.map_err(|failure| {
            // The caller reports the failure as it sees fit: search falls back and logs that
            // once a minute, so a provider outage must not log a line per query here.
            if failure.is_transient() {
                debug!(
                    error = %chain(&failure),
                    attempts = policy.max_attempts,
                    "embeddings request failed; giving up"
                );
            }
            failure.into_embedding_error()
        })
    }

    /// One HTTP request: the embeddings of `texts`, in order and checked.
    async fn request(&self, texts: &[String]) -> Result<Vec<Embedding>, Failure> {
        let settings = &self.inner.settings;
        debug!(texts = texts.len(), model = %settings.model, "embeddings request");
        let response = self
            .inner
            .client
            .post(self.inner.endpoint.clone())
            .bearer_auth(settings.api_key.expose_secret())
            .json(&EmbeddingsRequest {
                model: &settings.model,
                input: texts,
                dimensions: settings.dimensions,
            })
            .send()
            .await
            .map_err(Failure::Transport)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.map_err(Failure::Transport)?;
        if !status.is_success() {
            return Err(Failure::Status {
                status,
                message: error_message(&body, settings.api_key.expose_secret()),
                retry_after,
            });
        }
        let response: EmbeddingsResponse = serde_json::from_slice(&body)
            .map_err(|error| Failure::Invalid(format!("not an embeddings response: {error}")))?;
        in_order(response, texts.len(), settings.dimensions)
    }
}

/// `error` and its sources, for a log line (`timed out` is in reqwest's source, not its message).
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// `{base_url}/embeddings`, whether or not `base_url` ends with a slash.
fn endpoint(base_url: &Url) -> Option<Url> {
    if !matches!(base_url.scheme(), "http" | "https") {
        return None;
    }
    let mut url = base_url.clone();
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .push("embeddings");
    Some(url)
}

/// The embeddings of a response put in request order by their `index`, after checking there is
/// exactly one per text and each has `dimensions` finite components.
fn in_order(
    response: EmbeddingsResponse,
    texts: usize,
    dimensions: usize,
) -> Result<Vec<Embedding>, Failure> {
    if response.data.len() != texts {
        return Err(Failure::Invalid(format!(
            "{} embeddings for {texts} texts",
            response.data.len()
        )));
    }
    let mut slots: Vec<Option<Embedding>> = vec![None; texts];
    for item in response.data {
        if item.embedding.len() != dimensions {
            return Err(Failure::Invalid(format!(
                "an embedding of {} dimensions instead of {dimensions}",
                item.embedding.len()
            )));
        }
        let slot = slots
            .get_mut(item.index)
            .ok_or_else(|| Failure::Invalid(format!("index {} out of range", item.index)))?;
        if slot.is_some() {
            return Err(Failure::Invalid(format!("index {} repeated", item.index)));
        }
        *slot = Some(
            Embedding::new(item.embedding).map_err(|error| Failure::Invalid(error.to_string()))?,
        );
    }
    // With as many items as texts, every index in range and none repeated, every slot is full.
    slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Failure::Invalid("an index is missing".to_owned()))
}

#[async_trait]
impl EmbeddingProvider for OpenAiEmbedder {
    fn dimensions(&self) -> usize {
        self.inner.settings.dimensions
    }

    /// Sends the texts in requests of at most `max_batch_size`, one after another, each retried
    /// on its own; fails as soon as one request finally fails. Blank texts are refused up front
    /// (`Rejected`, no request made): the API refuses empty input, and it would take its whole
    /// request down with it.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        if let Some(blank) = texts.iter().position(|text| text.trim().is_empty()) {
            return Err(EmbeddingError::Rejected(format!(
                "text {blank} is blank: there is nothing to embed"
            )));
        }
        let mut embeddings = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.inner.settings.max_batch_size) {
            embeddings.extend(self.embed_batch(batch).await?);
        }
        Ok(embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EmbeddingItem;

    #[test]
    fn the_endpoint_is_appended_to_the_base_path() {
        for (base, expected) in [
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/embeddings",
            ),
            (
                "https://api.openai.com/v1/",
                "https://api.openai.com/v1/embeddings",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/embeddings"),
            (
                "http://proxy/openai/v1?x=1",
                "http://proxy/openai/v1/embeddings?x=1",
            ),
        ] {
            let url = endpoint(&Url::parse(base).unwrap()).unwrap();
            assert_eq!(url.as_str(), expected);
        }
        assert!(endpoint(&Url::parse("mailto:someone@example.com").unwrap()).is_none());
        assert!(endpoint(&Url::parse("ftp://example.com/v1").unwrap()).is_none());
    }

    fn response(items: &[(usize, Vec<f32>)]) -> EmbeddingsResponse {
        EmbeddingsResponse {
            data: items
                .iter()
                .map(|(index, embedding)| EmbeddingItem {
                    index: *index,
                    embedding: embedding.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn embeddings_are_put_in_index_order() {
        let sorted = in_order(response(&[(1, vec![1.0, 1.0]), (0, vec![0.0, 1.0])]), 2, 2).unwrap();
        assert_eq!(sorted[0].as_slice(), [0.0, 1.0]);
        assert_eq!(sorted[1].as_slice(), [1.0, 1.0]);
    }

    #[test]
    fn unusable_responses_are_refused() {
        let cases = [
            (response(&[(0, vec![1.0, 0.0])]), "1 embeddings for 2 texts"),
            (
                response(&[(0, vec![1.0]), (1, vec![1.0])]),
                "1 dimensions instead of 2",
            ),
            (
                response(&[(0, vec![1.0, 0.0]), (2, vec![1.0, 0.0])]),
                "index 2 out of range",
            ),
            (
                response(&[(1, vec![1.0, 0.0]), (1, vec![1.0, 0.0])]),
                "index 1 repeated",
            ),
            (
                response(&[(0, vec![1.0, 0.0]), (1, vec![f32::NAN, 0.0])]),
                "finite",
            ),
        ];
        for (response, expected) in cases {
            let Err(Failure::Invalid(message)) = in_order(response, 2, 2) else {
                panic!("accepted a response that should fail with {expected}");
            };
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let base = OpenAiSettings::new(Url::parse("http://127.0.0.1:1").unwrap(), "key".into());
        assert!(OpenAiEmbedder::new(base.clone()).is_ok());
        let broken = [
            OpenAiSettings {
                dimensions: 0,
                ..base.clone()
            },
            OpenAiSettings {
                max_batch_size: 0,
                ..base.clone()
            },
            OpenAiSettings {
                retry: RetryPolicy {
                    max_attempts: 0,
                    ..base.retry
                },
                ..base.clone()
            },
            OpenAiSettings {
                retry: RetryPolicy {
                    min_delay: Duration::from_secs(9),
                    max_delay: Duration::from_secs(1),
                    ..base.retry
                },
                ..base.clone()
            },
            OpenAiSettings {
                base_url: Url::parse("unix:/run/api.sock").unwrap(),
                ..base.clone()
            },
        ];
        for settings in broken {
            assert!(matches!(
                OpenAiEmbedder::new(settings),
                Err(SetupError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn debug_output_shows_no_key() {
        let settings = OpenAiSettings::new(
            Url::parse("http://127.0.0.1:1/v1").unwrap(),
            "sk-very-secret".into(),
        );
        let embedder = OpenAiEmbedder::new(settings.clone()).unwrap();
        assert!(!format!("{embedder:?}").contains("sk-very-secret"));
        assert!(!format!("{settings:?}").contains("sk-very-secret"));
    }
}
