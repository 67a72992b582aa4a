//! argon2id password hashing, kept off the async executor, bounded in concurrency and in how
//! many callers may wait, each hash working in a reused memory.

mod phc;
mod queue;

use argon2::{Block, Params};
use async_trait::async_trait;
use markets_domain::auth::{HashError, Password, PasswordHash, PasswordHasher};
use std::sync::Arc;
use std::time::Duration;

use queue::{HashingQueue, Work};

/// argon2id cost parameters and the hashing queue's bounds, as configured
/// (`[auth.password_hashing]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashingSettings {
    /// Memory per hash in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// How many hashes may run at once; further logins wait their turn instead of each taking
    /// a blocking thread and `memory_kib` of memory. Each of these slots keeps its memory.
    pub max_concurrent: usize,
    /// How many hashes may wait for a slot; one more is refused at once (503). New hashes
    /// (registrations) may take only half of these places, keeping the rest for logins, which
    /// also overtake all waiting new hashes but one.
    pub max_waiting: usize,
    /// The longest a hash waits for a slot before it is refused (503), in milliseconds.
    pub queue_timeout_ms: u64,
}

impl Default for HashingSettings {
    /// OWASP's recommended argon2id minimum: 19 MiB, 2 iterations, 1 lane; two hashes at once,
    /// 16 waiting for at most 2 s.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 2,
            max_waiting: 16,
            queue_timeout_ms: 2000,
        }
    }
}

/// Hashes with argon2id on tokio's blocking pool, through a bounded queue (`queue::HashingQueue`).
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    params: Params,
    queue: Arc<HashingQueue>,
    dummy: PasswordHash,
}

impl Argon2Hasher {
    /// Builds the hasher and its dummy hash (one hash, computed here, synchronously).
    ///
    /// # Errors
    /// If the parameters are out of argon2's range.
    pub fn new(settings: HashingSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(HashError::failed)?;
        let blocks = params.block_count();
        let dummy = phc::hash(
            &params,
            b"dummy password for unknown accounts",
            &mut phc::memory(blocks),
        )
        .map_err(HashError::failed)?;
        let queue = HashingQueue::new(
            settings.max_concurrent,
            settings.max_waiting,
            Duration::from_millis(settings.queue_timeout_ms),
            blocks,
        );
        Ok(Self {
            params,
            queue: Arc::new(queue),
            dummy: PasswordHash::new(dummy),
        })
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.expose().to_owned();
        let params = self.params.clone();
        self.queue
            .run(Work::Hash, move |memory: &mut [Block]| {
                let phc =
                    phc::hash(&params, password.as_bytes(), memory).map_err(HashError::failed)?;
                Ok(PasswordHash::new(phc))
            })
            .await
    }

    async fn verify(&self, candidate: &str, hash: &PasswordHash) -> Result<bool, HashError> {
        let candidate = candidate.to_owned();
        let hash = hash.as_str().to_owned();
        self.queue
            .run(Work::Verify, move |memory: &mut [Block]| {
                phc::verify(candidate.as_bytes(), &hash, memory).map_err(HashError::failed)
            })
            .await
    }

    fn dummy_hash(&self) -> &PasswordHash {
        &self.dummy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::new(HashingSettings {
            memory_kib: 64,
            iterations: 1,
            ..HashingSettings::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let hasher = cheap();
        let password = Password::parse("correct horse").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(hasher.verify("correct horse", &hash).await.unwrap());
        assert!(!hasher.verify("wrong horse", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn each_hash_gets_its_own_salt() {
        let hasher = cheap();
        let password = Password::parse("same password").unwrap();
        let first = hasher.hash(&password).await.unwrap();
        let second = hasher.hash(&password).await.unwrap();
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn the_dummy_hash_matches_no_chosen_password() {
        let hasher = cheap();
        assert!(!hasher.verify("", hasher.dummy_hash()).await.unwrap());
        assert!(
            !hasher
                .verify("password", hasher.dummy_hash())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_corrupt_hash_is_an_error_not_a_mismatch() {
        let hasher = cheap();
        let corrupt = PasswordHash::new("not a phc string");
        assert!(hasher.verify("anything", &corrupt).await.is_err());
    }

    #[test]
    fn defaults_follow_owasp() {
        let settings = HashingSettings::default();
        assert_eq!(
            (
                settings.memory_kib,
                settings.iterations,
                settings.parallelism
            ),
            (19456, 2, 1)
        );
    }
}
