//! argon2 PHC strings computed in memory the caller provides, so that one buffer per hashing
//! slot is reused for every hash instead of each hash allocating `memory_kib` afresh (memory
//! that glibc's per-thread arenas keep after a burst).
//!
//! The output is what the argon2 crate's own `PasswordHasher` writes (a 16-byte random salt,
//! `$argon2id$v=19$m=..,t=..,p=..$salt$hash`), and verification follows its `PasswordVerifier`:
//! algorithm, version and parameters come from the stored string, the outputs are compared in
//! constant time.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash as Phc, Salt};
use argon2::password_hash::{Error as PhcError, try_generate_salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The algorithm and version every new hash uses.
const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;

/// A zeroed argon2 memory of `blocks` 1 KiB blocks.
pub fn memory(blocks: usize) -> Vec<Block> {
    vec![Block::new(); blocks]
}

/// Hashes `password` with `params` and a fresh random salt into a PHC string, working in
/// `memory`, which must hold at least `params.block_count()` blocks.
pub fn hash(params: &Params, password: &[u8], memory: &mut [Block]) -> Result<String, PhcError> {
    let salt = try_generate_salt()?;
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN))
        .ok_or(PhcError::OutputSize)?;
    Argon2::new(ALGORITHM, VERSION, params.clone())
        .hash_password_into_with_memory(password, &salt, out, memory)?;
    let phc = Phc {
        algorithm: ALGORITHM.ident(),
        version: Some(VERSION.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(Salt::new(&salt)?),
        hash: Some(Output::new(out)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored`, recomputed with the parameters stored in
/// it, so hashes made under other settings keep verifying. The work happens in `memory` when it
/// is large enough; a hash asking for more gets memory of its own for this call only, so that a
/// few old, costlier hashes do not grow every slot's buffer for good.
///
/// A string without salt or output matches nothing, as with the argon2 crate.
pub fn verify(password: &[u8], stored: &str, memory: &mut [Block]) -> Result<bool, PhcError> {
    let stored = Phc::new(stored)?;
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(stored.algorithm.as_str())?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let argon2 = Argon2::new(algorithm, version, Params::try_from(&stored)?);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..expected.len())
        .ok_or(PhcError::OutputSize)?;
    let blocks = argon2.params().block_count();
    if blocks <= memory.len() {
        argon2.hash_password_into_with_memory(password, salt, out, memory)?;
    } else {
        argon2.hash_password_into_with_memory(password, salt, out, self::memory(blocks))?;
    }
    // `Output`'s equality is constant-time.
    Ok(Output::new(out)? == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    fn params(memory_kib: u32) -> Params {
        Params::new(memory_kib, 1, 1, None).unwrap()
    }

    fn stock(params: Params) -> Argon2<'static> {
        Argon2::new(ALGORITHM, VERSION, params)
    }

    /// `phc` is a hash of "correct horse".
    fn assert_verifies_only_its_password(phc: &str, memory: &mut [Block]) {
        assert!(verify(b"correct horse", phc, memory).unwrap(), "{phc}");
        assert!(!verify(b"wrong horse", phc, memory).unwrap(), "{phc}");
    }

    #[test]
    fn our_hashes_are_standard_phc_strings_the_stock_crate_verifies() {
        let mut memory = memory(64);
        let phc = hash(&params(64), b"correct horse", &mut memory).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let parsed = Phc::new(&phc).unwrap();
        assert_eq!(parsed.salt.unwrap().len(), 16);
        assert_eq!(parsed.hash.unwrap().len(), Params::DEFAULT_OUTPUT_LEN);
        let argon2 = stock(Params::default());
        assert!(argon2.verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2.verify_password(b"wrong horse", &parsed).is_err());
    }

    #[test]
    fn stock_hashes_verify_here_including_costlier_and_cheaper_ones() {
        let mut memory = memory(64);
        for memory_kib in [32, 64, 256] {
            let phc = stock(params(memory_kib))
                .hash_password(b"correct horse")
                .unwrap()
                .to_string();
            assert_verifies_only_its_password(&phc, &mut memory);
        }
        assert_eq!(memory.len(), 64, "a costlier hash does not grow the buffer");
    }

    #[test]
    fn a_reused_buffer_gives_the_same_result_as_a_fresh_one() {
        let mut memory = memory(64);
        let first = hash(&params(64), b"first password", &mut memory).unwrap();
        let second = hash(&params(64), b"second password", &mut memory).unwrap();
        assert!(verify(b"first password", &first, &mut memory).unwrap());
        assert!(verify(b"second password", &second, &mut self::memory(64)).unwrap());
        assert!(!verify(b"first password", &second, &mut memory).unwrap());
    }

    #[test]
    fn other_algorithms_versions_and_output_lengths_verify_as_stored() {
        let mut memory = memory(64);
        let custom = Params::new(64, 2, 1, Some(16)).unwrap();
        for (algorithm, version) in [
            (Algorithm::Argon2i, Version::V0x13),
            (Algorithm::Argon2d, Version::V0x10),
        ] {
            let phc = Argon2::new(algorithm, version, custom.clone())
                .hash_password(b"correct horse")
                .unwrap()
                .to_string();
            assert_verifies_only_its_password(&phc, &mut memory);
        }
    }

    #[test]
    fn malformed_strings_are_errors_and_a_hashless_one_matches_nothing() {
        let mut memory = memory(64);
        assert!(verify(b"x", "not a phc string", &mut memory).is_err());
        assert!(verify(b"x", "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$aGFzaA", &mut memory).is_err());
        assert!(!verify(b"x", "$argon2id$v=19$m=64,t=1,p=1", &mut memory).unwrap());
    }
}
