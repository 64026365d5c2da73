//! Passwords are kept only as argon2id hashes (PHC strings, salt included).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// The shortest password `gust users create` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Hashes `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// A hash of no one's password, made as [`hash_password`] makes them (argon2id, its default
/// cost, so the same work to check): a sign-in with an unknown user name is checked against it,
/// so that it takes as long as a wrong password for a real user and the time does not tell
/// which names exist. Made once, on first use; [`crate::AppState::new`] makes it up front so
/// that no sign-in pays for it.
#[must_use]
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        // Hashing fails only on parameters argon2 refuses; the defaults are not among them.
        hash_password(&random_password()).unwrap_or_default()
    });
    &DUMMY
}

/// Whether `password` matches `hash`; an unreadable hash matches nothing.
#[must_use]
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A random password for a generated account (24 characters from an unambiguous alphabet).
#[must_use]
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn the_dummy_hash_is_a_real_argon2_hash_of_no_known_password() {
        let dummy = PasswordHash::new(dummy_hash()).expect("the dummy hash parses");
        let real_hash = hash_password("anything").unwrap();
        let real = PasswordHash::new(&real_hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
        assert!(!verify_password("", dummy_hash()));
    }

    #[test]
    fn random_passwords_differ() {
        assert_ne!(random_password(), random_password());
        assert_eq!(random_password().len(), 24);
    }
}
