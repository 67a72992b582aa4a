//! Which failures are worth retrying, and how long to wait before each retry.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

use markets_domain::search::EmbeddingError;
use reqwest::StatusCode;

use crate::settings::RetryPolicy;

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// No answer: could not connect, timed out, connection lost mid-way.
    #[error("embeddings request failed")]
    Transport(#[source] reqwest::Error),
    /// An error status, with the provider's message if it gave one.
    #[error("embeddings API answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        status: StatusCode,
        message: Option<String>,
        retry_after: Option<Duration>,
    },
    /// A success status with an answer that cannot be used (malformed, wrong count or size).
    #[error("embeddings API answered unusably: {0}")]
    Invalid(String),
}

impl Failure {
    /// Whether another attempt may succeed: no answer at all, or 408, 429 or a 5xx.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Transport(error) => !error.is_builder(),
            Self::Status { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            Self::Invalid(_) => false,
        }
    }

    /// The wait the server asked for, if any.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What the caller gets once retrying is over: a refusal (a 4xx that retrying cannot fix,
    /// such as a bad key or input) is `Rejected`, anything else `Unavailable`.
    pub(crate) fn into_embedding_error(self) -> EmbeddingError {
        match &self {
            Self::Status { status, .. } if status.is_client_error() && !self.is_transient() => {
                EmbeddingError::Rejected(self.to_string())
            }
            _ => EmbeddingError::Unavailable(Box::new(self)),
        }
    }
}

/// The waits before each retry of one request under `policy`: `max_attempts − 1` of them.
pub(crate) fn schedule(policy: &RetryPolicy) -> Vec<Duration> {
    (0..policy.max_attempts.saturating_sub(1))
        .map(|retry| backoff(policy, retry, random_fraction()))
        .collect()
}

/// The wait before retry `retry` (0 for the first): `min_delay × 2^retry`, plus that times
/// `jitter` (in `0.0..1.0`), at most `max_delay`.
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32, jitter: f64) -> Duration {
    let base = policy
        .min_delay
        .saturating_mul(2_u32.saturating_pow(retry))
        .min(policy.max_delay);
    base.saturating_add(base.mul_f64(jitter.clamp(0.0, 1.0)))
        .min(policy.max_delay)
}

/// The wait actually taken: the backoff, lengthened to what the server asked for, never more
/// than `max_delay`.
pub(crate) fn wait(
    backoff: Duration,
    retry_after: Option<Duration>,
    max_delay: Duration,
) -> Duration {
    backoff.max(retry_after.unwrap_or_default()).min(max_delay)
}

/// A random number in `0.0..1.0`, from std's per-process random hash keys (good enough to spread
/// retries; no crate needed).
fn random_fraction() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    // 53 random bits fit exactly in an f64's mantissa.
    bits as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 6,
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
    };

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn waits_double_from_the_minimum_and_stop_at_the_maximum() {
        let waits: Vec<Duration> = (0..6).map(|retry| backoff(&POLICY, retry, 0.0)).collect();
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(backoff(&POLICY, u32::MAX, 0.0), ms(1000), "no overflow");
    }

    #[test]
    fn jitter_adds_up_to_one_more_base_within_the_maximum() {
        assert_eq!(backoff(&POLICY, 0, 0.5), ms(150));
        assert_eq!(backoff(&POLICY, 1, 0.999), Duration::from_micros(399_800));
        assert_eq!(backoff(&POLICY, 3, 0.9), ms(1000));
        for retry in 0..10 {
            for _ in 0..50 {
                let jitter = random_fraction();
                assert!((0.0..1.0).contains(&jitter));
                let wait = backoff(&POLICY, retry, jitter);
                assert!(wait >= backoff(&POLICY, retry, 0.0).min(POLICY.max_delay));
                assert!(wait <= POLICY.max_delay);
            }
        }
    }

    #[test]
    fn a_schedule_has_a_wait_per_retry() {
        let waits = schedule(&POLICY);
        assert_eq!(waits.len(), 5);
        assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]));
        let once = RetryPolicy {
            max_attempts: 1,
            ..POLICY
        };
        assert!(schedule(&once).is_empty());
        let none = RetryPolicy {
            max_attempts: 0,
            ..POLICY
        };
        assert!(schedule(&none).is_empty());
    }

    #[test]
    fn retry_after_lengthens_the_wait_up_to_the_maximum() {
        let max = ms(1000);
        assert_eq!(wait(ms(100), None, max), ms(100));
        assert_eq!(wait(ms(100), Some(ms(300)), max), ms(300));
        assert_eq!(wait(ms(500), Some(ms(300)), max), ms(500), "never shorter");
        assert_eq!(
            wait(ms(100), Some(Duration::from_secs(60)), max),
            max,
            "capped"
        );
    }

    fn status(code: u16) -> Failure {
        Failure::Status {
            status: StatusCode::from_u16(code).unwrap(),
            message: Some("nope".into()),
            retry_after: None,
        }
    }

    #[test]
    fn only_timeouts_rate_limits_and_server_errors_are_transient() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
            assert!(matches!(
                status(code).into_embedding_error(),
                EmbeddingError::Unavailable(_)
            ));
        }
        for code in [400, 401, 403, 404, 413, 422] {
            assert!(!status(code).is_transient(), "{code}");
            let EmbeddingError::Rejected(message) = status(code).into_embedding_error() else {
                panic!("{code} should be a rejection");
            };
            assert!(
                message.contains(&code.to_string()) && message.ends_with(": nope"),
                "{message}"
            );
        }
        let invalid = Failure::Invalid("2 embeddings for 3 texts".into());
        assert!(!invalid.is_transient());
        assert!(matches!(
            invalid.into_embedding_error(),
            EmbeddingError::Unavailable(_)
        ));
    }
}
