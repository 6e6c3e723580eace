//! Client secrets and admin tokens: argon2id hashes (PHC strings).
use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id with 7 MiB, 5 passes: one of OWASP's equivalent-strength settings (the crate's
/// default is 19 MiB, 2 passes). The smaller memory cost keeps a burst of first client
/// authentications from raising the server's peak memory by 19 MiB per verification. Stored
/// hashes carry their own parameters, so older hashes still verify.
fn hasher() -> Argon2<'static> {
    match argon2::Params::new(7 * 1024, 5, 1, None) {
        Ok(params) => Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        Err(_) => Argon2::default(),
    }
}

pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher().hash_password(secret.as_bytes(), &salt).map(|hash| hash.to_string()).map_err(|e| HashError(e.to_string()))
}

/// True when `secret` matches the stored PHC string; a malformed hash never matches.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let hash = hash_secret("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(verify_secret("s3cret", &hash));
        assert!(!verify_secret("s3cret!", &hash));
        assert!(!verify_secret("s3cret", "not-a-hash"));
        assert_ne!(hash, hash_secret("s3cret").unwrap());
    }
}
