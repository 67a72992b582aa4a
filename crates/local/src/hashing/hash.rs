//! A stable 64-bit hash, written out here because the hashing embedder's vectors are stored:
//! std's `DefaultHasher` may change between Rust releases, and every stored vector with it.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a (64-bit) of `parts` taken as one byte string, followed by MurmurHash3's 64-bit
/// finaliser. FNV-1a alone spreads its low bits poorly over short inputs; the finaliser mixes
/// every input bit into every output bit, so both the bucket (low bits, taken modulo the
/// dimensions) and the sign (top bit) are well spread.
pub(super) fn hash(parts: &[&[u8]]) -> u64 {
    let mut state = FNV_OFFSET_BASIS;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        state ^= u64::from(*byte);
        state = state.wrapping_mul(FNV_PRIME);
    }
    fmix64(state)
}

/// MurmurHash3's 64-bit finaliser (a bijection, so it loses nothing of FNV's output).
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a before the finaliser, to check it against the published test vectors.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(FNV_OFFSET_BASIS, |state, byte| {
            (state ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
        })
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn parts_hash_as_their_concatenation() {
        assert_eq!(hash(&[b"w:", b"rain"]), hash(&[b"w:rain"]));
        assert_eq!(hash(&[b"foobar"]), fmix64(fnv1a(b"foobar")));
    }
}
