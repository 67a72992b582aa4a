//! The OpenAI adapter against a local fake of the API: request shape, batching, and which
//! failures are retried, how often, how long apart, and what the caller gets in the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use markets_domain::search::{EmbeddingError, EmbeddingProvider};
use markets_openai::{OpenAiEmbedder, OpenAiSettings, RetryPolicy};
use serde_json::{Value, json};
use support::{FakeEmbeddings, KEY, fake_embedding, settings};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DIMENSIONS: usize = 8;

fn texts(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|&text| text.to_owned()).collect()
}

fn embedder(settings: OpenAiSettings) -> OpenAiEmbedder {
    OpenAiEmbedder::new(settings).unwrap()
}

fn with_retry(settings: OpenAiSettings, max_attempts: u32, max_delay: Duration) -> OpenAiSettings {
    OpenAiSettings {
        retry: RetryPolicy {
            max_attempts,
            min_delay: Duration::from_millis(1),
            max_delay,
        },
        ..settings
    }
}

/// A mock answering every embeddings request like the real API.
fn fake_api() -> Mock {
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(FakeEmbeddings)
}

fn api_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}
    }))
}

#[tokio::test]
async fn big_inputs_take_several_requests_and_come_back_in_order() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(
            json!({"model": "text-embedding-3-small", "dimensions": DIMENSIONS}),
        ))
        .respond_with(FakeEmbeddings)
        .expect(3)
        .mount(&server)
        .await;
    let embedder = embedder(OpenAiSettings {
        max_batch_size: 2,
        ..settings(&server, DIMENSIONS)
    });
    let input = texts(&["one", "two", "three", "four", "five"]);

    let embeddings = embedder.embed(&input).await.unwrap();

    let expected: Vec<Vec<f32>> = input
        .iter()
        .map(|t| fake_embedding(t, DIMENSIONS))
        .collect();
    let got: Vec<Vec<f32>> = embeddings.iter().map(|e| e.as_slice().to_vec()).collect();
    assert_eq!(got, expected);
    let sent: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| serde_json::from_slice::<Value>(&request.body).unwrap()["input"].clone())
        .collect();
    assert_eq!(
        sent,
        [
            json!(["one", "two"]),
            json!(["three", "four"]),
            json!(["five"])
        ]
    );
}

#[tokio::test]
async fn no_texts_make_no_request() {
    let server = MockServer::start().await;
    fake_api().expect(0).mount(&server).await;
    let embedder = embedder(settings(&server, DIMENSIONS));
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn blank_texts_are_refused_before_any_request() {
    let server = MockServer::start().await;
    fake_api().expect(0).mount(&server).await;
    let embedder = embedder(settings(&server, DIMENSIONS));
    let error = embedder.embed(&texts(&["fine", " \n"])).await.unwrap_err();
    let EmbeddingError::Rejected(message) = error else {
        panic!("expected a rejection, got {error:?}");
    };
    assert!(message.contains("text 1"), "{message}");
}

#[tokio::test]
async fn a_rate_limit_is_retried_no_sooner_than_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(api_error(429, "Rate limit reached").insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    fake_api().expect(1).mount(&server).await;
    let embedder = embedder(with_retry(
        settings(&server, DIMENSIONS),
        4,
        Duration::from_secs(5),
    ));

    let started = Instant::now();
    let embeddings = embedder.embed(&texts(&["rain in Paris"])).await.unwrap();

    let elapsed = started.elapsed();
    assert_eq!(embeddings.len(), 1);
    assert!(
        elapsed >= Duration::from_secs(1),
        "retried after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "waited {elapsed:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_longest_wait_is_cut_to_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(api_error(429, "Slow down").insert_header("retry-after", "30"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    fake_api().expect(1).mount(&server).await;
    let embedder = embedder(with_retry(
        settings(&server, DIMENSIONS),
        4,
        Duration::from_millis(50),
    ));

    let started = Instant::now();
    embedder.embed(&texts(&["rain in Paris"])).await.unwrap();

    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(50),
        "retried after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(1), "waited {elapsed:?}");
}

#[tokio::test]
async fn server_errors_are_retried_until_one_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    fake_api().expect(1).mount(&server).await;
    let embedder = embedder(settings(&server, DIMENSIONS));
    assert_eq!(embedder.embed(&texts(&["a"])).await.unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_up_to_max_attempts_then_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(api_error(500, "The server had an error"))
        .expect(4)
        .mount(&server)
        .await;
    let embedder = embedder(with_retry(
        settings(&server, DIMENSIONS),
        4,
        Duration::from_millis(20),
    ));

    let error = embedder.embed(&texts(&["a"])).await.unwrap_err();

    let EmbeddingError::Unavailable(cause) = error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(cause.to_string().contains("500"), "{cause}");
    assert!(
        cause.to_string().contains("The server had an error"),
        "{cause}"
    );
}

#[tokio::test]
async fn client_errors_are_rejected_at_once_with_the_providers_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(api_error(
            400,
            "This model's maximum context length is 8192 tokens",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(settings(&server, DIMENSIONS));

    let error = embedder
        .embed(&texts(&["a very long text"]))
        .await
        .unwrap_err();

    let EmbeddingError::Rejected(message) = error else {
        panic!("expected Rejected, got {error:?}");
    };
    assert!(message.contains("400"), "{message}");
    assert!(
        message.contains("maximum context length is 8192 tokens"),
        "{message}"
    );
}

#[tokio::test]
async fn a_refused_key_is_not_repeated_in_the_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(api_error(
            401,
            &format!("Incorrect API key provided: {KEY}."),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(settings(&server, DIMENSIONS));

    let error = embedder.embed(&texts(&["a"])).await.unwrap_err();

    let EmbeddingError::Rejected(message) = error else {
        panic!("expected Rejected, got {error:?}");
    };
    assert!(
        message.contains("401") && message.contains("Incorrect API key"),
        "{message}"
    );
    assert!(!message.contains(KEY), "{message}");
}

#[tokio::test]
async fn a_hanging_server_fails_each_attempt_at_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .expect(3)
        .mount(&server)
        .await;
    let embedder = embedder(OpenAiSettings {
        request_timeout: Duration::from_millis(200),
        ..with_retry(settings(&server, DIMENSIONS), 3, Duration::from_millis(10))
    });

    let started = Instant::now();
    let error = embedder.embed(&texts(&["a"])).await.unwrap_err();

    let elapsed = started.elapsed();
    assert!(matches!(error, EmbeddingError::Unavailable(_)), "{error:?}");
    assert!(
        elapsed >= Duration::from_millis(600),
        "gave up after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "gave up after {elapsed:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let settings = OpenAiSettings::new(
        format!("http://127.0.0.1:{port}/v1").parse().unwrap(),
        KEY.into(),
    );
    let embedder = embedder(with_retry(settings, 2, Duration::from_millis(10)));

    let error = embedder.embed(&texts(&["a"])).await.unwrap_err();

    assert!(matches!(error, EmbeddingError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn unusable_answers_are_unavailable_without_retrying() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}],
        })))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(settings(&server, DIMENSIONS));

    let error = embedder.embed(&texts(&["a"])).await.unwrap_err();

    let EmbeddingError::Unavailable(cause) = error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(
        cause.to_string().contains("2 dimensions instead of 8"),
        "{cause}"
    );
}

/// Log lines written while the test runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn retries_are_logged_without_the_key_or_the_texts() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    fake_api().mount(&server).await;
    let embedder = embedder(settings(&server, DIMENSIONS));

    embedder
        .embed(&texts(&["secret plans for Paris"]))
        .await
        .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying") && logs.contains("502"), "{logs}");
    assert!(!logs.contains(KEY), "{logs}");
    assert!(!logs.contains("secret plans"), "{logs}");
}
