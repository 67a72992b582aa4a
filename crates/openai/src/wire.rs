//! The embeddings API's JSON and headers.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

/// The longest provider error message kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// `POST /embeddings` body.
#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingsRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) input: &'a [String],
    pub(crate) dimensions: usize,
}

/// A successful answer; fields not needed here (`object`, `model`, `usage`) are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsResponse {
    pub(crate) data: Vec<EmbeddingItem>,
}

/// One embedding, and the position of its text in the request.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingItem {
    pub(crate) embedding: Vec<f32>,
    pub(crate) index: usize,
}

/// An error answer: `{"error": {"message": "...", ...}}`.
#[derive(Debug, Deserialize)]
struct ErrorResponse {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: String,
}

/// The provider's error message in `body`, if it sent one in OpenAI's shape: shortened, and with
/// `secret` (the API key) blotted out in case the provider echoes it. Anything else in the body is
/// dropped, as it might echo the texts.
pub(crate) fn error_message(body: &[u8], secret: &str) -> Option<String> {
    let message = serde_json::from_slice::<ErrorResponse>(body)
        .ok()?
        .error
        .message;
    let message = if secret.is_empty() {
        message
    } else {
        message.replace(secret, "[redacted]")
    };
    let mut short: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    if short.len() < message.len() {
        short.push('…');
    }
    Some(short)
}

/// How long the server asks us to wait: `retry-after-ms` (OpenAI's, in milliseconds) or else
/// `Retry-After` in seconds. The HTTP-date form of `Retry-After` is not used by the APIs this
/// talks to and is ignored, as are malformed or negative values.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| -> Option<f64> {
        let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value)
    };
    let seconds = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn retry_after_reads_seconds_or_milliseconds() {
        let wait = |pairs| retry_after(&headers(pairs));
        assert_eq!(wait(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(
            wait(&[("retry-after", " 0.5 ")]),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            wait(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250)),
            "the precise header wins"
        );
        assert_eq!(wait(&[]), None);
        assert_eq!(
            wait(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            None
        );
        assert_eq!(wait(&[("retry-after", "-3")]), None);
        assert_eq!(wait(&[("retry-after", "NaN")]), None);
    }

    #[test]
    fn error_messages_are_extracted_shortened_and_scrubbed() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-secret.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(
            error_message(body, "sk-secret").as_deref(),
            Some("Incorrect API key provided: [redacted].")
        );
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(1000));
        let short = error_message(long.as_bytes(), "key").unwrap();
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(error_message(b"<html>Bad Gateway</html>", "key"), None);
        assert_eq!(error_message(b"{\"detail\":\"nope\"}", "key"), None);
    }

    #[test]
    fn requests_have_the_api_shape() {
        let input = vec!["a".to_owned(), "b".to_owned()];
        let request = EmbeddingsRequest {
            model: "m",
            input: &input,
            dimensions: 3,
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"model": "m", "input": ["a", "b"], "dimensions": 3})
        );
    }
}
