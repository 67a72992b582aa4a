//! argon2id password hashing, kept off the async executor and bounded in concurrency.

use argon2::password_hash::{Error as PhcError, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use markets_domain::auth::{HashError, Password, PasswordHash, PasswordHasher};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// argon2id cost parameters, as configured (`[auth.password_hashing]`).
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
    /// a blocking thread and `memory_kib` of memory.
    pub max_concurrent: usize,
}

impl Default for HashingSettings {
    /// OWASP's recommended argon2id minimum: 19 MiB, 2 iterations, 1 lane; two hashes at once.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 2,
        }
    }
}

/// Hashes with argon2id on tokio's blocking pool, at most `max_concurrent` at a time.
#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy: PasswordHash,
}

fn hash_error(error: impl std::error::Error + Send + Sync + 'static) -> HashError {
    HashError(Box::new(error))
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
        .map_err(hash_error)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = argon2
            .hash_password(b"dummy password for unknown accounts")
            .map_err(hash_error)?;
        Ok(Self {
            argon2,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            dummy: PasswordHash::new(dummy.to_string()),
        })
    }

    /// Runs `work` on the blocking pool once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(hash_error)?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || work(&argon2))
            .await
            .map_err(hash_error)?
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let password = password.expose().to_owned();
        self.run(move |argon2| {
            let phc = argon2
                .hash_password(password.as_bytes())
                .map_err(hash_error)?;
            Ok(PasswordHash::new(phc.to_string()))
        })
        .await
    }

    async fn verify(&self, candidate: &str, hash: &PasswordHash) -> Result<bool, HashError> {
        let candidate = candidate.to_owned();
        let hash = hash.as_str().to_owned();
        // The parameters stored in the hash are used, so old hashes keep verifying after a
        // change of settings.
        self.run(
            move |argon2| match argon2.verify_password(candidate.as_bytes(), hash.as_str()) {
                Ok(()) => Ok(true),
                Err(PhcError::PasswordInvalid) => Ok(false),
                Err(error) => Err(hash_error(error)),
            },
        )
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
