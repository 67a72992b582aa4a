//! The security bounds of the settings, checked in every environment: a JWT secret nobody can
//! guess, the random development secret only where nobody else can reach the server, token
//! lifetimes and password-hashing costs within what a login service can defend, and plain-HTTP
//! embeddings traffic only on this machine.

use secrecy::ExposeSecret;
use url::{Host, Url};

use super::{Settings, SettingsError};

/// The shortest JWT secret accepted, in bytes (HS256's key size).
const MIN_JWT_SECRET_BYTES: usize = 32;

/// The least a JWT secret must carry, in bits, by a frequency estimate of its bytes: a random
/// 32-character hex secret (128 bits) estimates about 115, `"x" * 32` zero.
const MIN_JWT_SECRET_BITS: f64 = 96.0;

/// Access tokens live at least a minute (shorter ones expire in clients' clock skew) and at most
/// a day (a stolen token is good for as long as it lives).
const TOKEN_LIFETIME_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;

/// OWASP's argon2id configurations of equal strength, as (memory in KiB, iterations): settings
/// must reach both figures of at least one of them.
const OWASP_ARGON2ID: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// Checks every bound, reporting the first broken one.
pub(super) fn check(settings: &Settings) -> Result<(), SettingsError> {
    jwt_secret(settings)?;
    token_lifetime(settings)?;
    password_hashing(settings)?;
    openai_url(&settings.openai.base_url)
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), SettingsError> {
    Err(SettingsError::Invalid {
        key,
        problem: problem.into(),
    })
}

const JWT_SECRET_KEY: &str = "auth.jwt_secret (JWT_SECRET)";

/// A configured secret must be long and varied; without one, a random secret is only acceptable
/// for a server bound to loopback, and never in production.
fn jwt_secret(settings: &Settings) -> Result<(), SettingsError> {
    let Some(secret) = &settings.auth.jwt_secret else {
        if settings.environment == super::Environment::Production {
            return invalid(JWT_SECRET_KEY, "must be set in production");
        }
        if !settings.server.bind_addr.ip().is_loopback() {
            return invalid(
                JWT_SECRET_KEY,
                "must be set when server.bind_addr is not a loopback address \
                 (the random development secret is for loopback only)",
            );
        }
        return Ok(());
    };
    let secret = secret.expose_secret().as_bytes();
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return invalid(JWT_SECRET_KEY, "must be at least 32 bytes");
    }
    if estimated_bits(secret) < MIN_JWT_SECRET_BITS {
        return invalid(
            JWT_SECRET_KEY,
            "is too repetitive to be secret: use random bytes (e.g. `openssl rand -base64 32`)",
        );
    }
    Ok(())
}

/// The information in `bytes` by the Shannon entropy of their frequencies, times their count.
/// It cannot tell a random secret from a varied but public sentence; it does catch repetition.
fn estimated_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0_u32; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    let total = bytes.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / total;
            -p * p.log2()
        })
        .sum();
    per_byte * total
}

fn token_lifetime(settings: &Settings) -> Result<(), SettingsError> {
    if TOKEN_LIFETIME_SECS.contains(&settings.auth.token_lifetime_secs) {
        return Ok(());
    }
    invalid(
        "auth.token_lifetime_secs",
        "must be between 60 (a minute) and 86400 (a day)",
    )
}

fn password_hashing(settings: &Settings) -> Result<(), SettingsError> {
    let hashing = &settings.auth.password_hashing;
    let strong_enough = OWASP_ARGON2ID.iter().any(|&(memory_kib, iterations)| {
        hashing.memory_kib >= memory_kib && hashing.iterations >= iterations
    });
    if !strong_enough {
        return invalid(
            "auth.password_hashing",
            "is below OWASP's argon2id minimum: memory_kib and iterations must reach one of \
             47104/1, 19456/2, 12288/3, 9216/4, 7168/5",
        );
    }
    if hashing.parallelism == 0 || hashing.max_concurrent == 0 {
        return invalid(
            "auth.password_hashing",
            "parallelism and max_concurrent must be at least 1",
        );
    }
    Ok(())
}

/// The API key travels in a header: over plain HTTP only to a server on this machine.
fn openai_url(url: &Url) -> Result<(), SettingsError> {
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => invalid(
            "openai.base_url (OPENAI_BASE_URL)",
            "may use http:// only for a loopback host; use https://",
        ),
        _ => invalid(
            "openai.base_url (OPENAI_BASE_URL)",
            "must be an https:// URL",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_tells_repetition_from_random_secrets() {
        assert_eq!(estimated_bits(&[b'x'; 32]), 0.0);
        assert!(estimated_bits(b"abababababababababababababababab") < MIN_JWT_SECRET_BITS);
        // 32 hex digits, as `openssl rand -hex 16` prints them.
        assert!(estimated_bits(b"3f9a1c07e4b2d8560a7c9e1b3d5f7092") > MIN_JWT_SECRET_BITS);
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        for ok in [
            "https://api.openai.com/v1",
            "http://127.0.0.1:9000/v1",
            "http://localhost/v1",
            "http://[::1]:8000",
        ] {
            assert!(openai_url(&ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for refused in ["http://api.openai.com/v1", "http://10.0.0.5/v1", "ftp://x/"] {
            assert!(openai_url(&refused.parse().unwrap()).is_err(), "{refused}");
        }
    }
}
