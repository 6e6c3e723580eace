//! Verifying presented secrets (client secrets, admin API tokens) against their argon2id hashes,
//! paying argon2 once per secret and never without bound.
//!
//! - A secret that verified is remembered as its SHA-256, keyed by what it belongs to and the
//!   stored hash, so a rotation or a new hash invalidates it everywhere.
//! - A secret that failed is remembered for a while: presenting it again costs no argon2.
//! - Argon2 (7 MiB, ~20 ms each, see `password.rs`) runs one at a time: a burst of first requests
//!   must not allocate 7 MiB each. At most `PER_KEY` verifications of one key and `QUEUED` in all
//!   are queued or running; beyond, `Busy`. So a flood against one client never queues another
//!   client behind it.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::{constant_time_eq, password};

/// Verifications one key may have queued or running.
const PER_KEY: usize = 2;
/// Verifications queued or running in all.
const QUEUED: usize = 16;
/// How long a failed secret is remembered.
const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(300);

/// Too many verifications queued: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many secret checks at once; try again shortly")]
pub struct Busy;

pub struct SecretVerifier {
    /// key → (stored PHC hash, SHA-256 of the secret that verified against it)
    verified: DashMap<String, (String, [u8; 32])>,
    /// (key, SHA-256 of a secret that failed), bounded and short-lived.
    recent_failures: moka::sync::Cache<(String, [u8; 32]), ()>,
    queued_per_key: DashMap<String, usize>,
    queued: AtomicUsize,
    argon2_permits: tokio::sync::Semaphore,
    runs: AtomicU64,
}

impl Default for SecretVerifier {
    fn default() -> Self {
        Self {
            verified: DashMap::new(),
            recent_failures: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(FAILURE_MEMORY).build(),
            queued_per_key: DashMap::new(),
            queued: AtomicUsize::new(0),
            argon2_permits: tokio::sync::Semaphore::new(1),
            runs: AtomicU64::new(0),
        }
    }
}

/// A place in the argon2 queue; given back when dropped.
struct QueuePlace<'a> {
    verifier: &'a SecretVerifier,
    key: String,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.verifier.queued.fetch_sub(1, Ordering::AcqRel);
        if let dashmap::Entry::Occupied(mut entry) = self.verifier.queued_per_key.entry(self.key.clone()) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl SecretVerifier {
    /// Forgets what is remembered for `key` (its secret was rotated, its client disabled).
    pub fn forget(&self, key: &str) {
        self.verified.remove(key);
    }

    /// Argon2 verifications run so far (tests and diagnostics).
    pub fn argon2_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// True when this exact secret already verified against `phc` (no argon2).
    pub fn remembered(&self, key: &str, phc: &str, secret: &str) -> bool {
        let digest = digest(secret);
        self.verified.get(key).is_some_and(|entry| entry.0 == phc && constant_time_eq(&entry.1, &digest))
    }

    /// Checks `secret` against the stored hash `phc` of `key`: from memory when this exact secret
    /// verified (or failed) recently, otherwise with argon2 through the bounded queue.
    pub async fn verify(&self, key: &str, phc: &str, secret: &str) -> Result<bool, Busy> {
        if self.remembered(key, phc, secret) {
            return Ok(true);
        }
        let failure_key = (key.to_owned(), digest(secret));
        if self.recent_failures.contains_key(&failure_key) {
            return Ok(false);
        }
        let _place = self.queue_place(key).ok_or(Busy)?;
        let _permit = self.argon2_permits.acquire().await.map_err(|_| Busy)?;
        // Another request may have verified (or failed) this very secret while we waited.
        if self.remembered(key, phc, secret) {
            return Ok(true);
        }
        if self.recent_failures.contains_key(&failure_key) {
            return Ok(false);
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        let (secret_owned, phc_owned) = (secret.to_owned(), phc.to_owned());
        let verified = tokio::task::spawn_blocking(move || password::verify_secret(&secret_owned, &phc_owned)).await.unwrap_or(false);
        if verified {
            self.verified.insert(key.to_owned(), (phc.to_owned(), failure_key.1));
        } else {
            self.recent_failures.insert(failure_key, ());
        }
        Ok(verified)
    }

    fn queue_place(&self, key: &str) -> Option<QueuePlace<'_>> {
        let mut mine = self.queued_per_key.entry(key.to_owned()).or_insert(0);
        if *mine >= PER_KEY {
            return None;
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= QUEUED {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *mine += 1;
        drop(mine);
        Some(QueuePlace { verifier: self, key: key.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2_once_per_secret_and_failures_remembered() {
        let verifier = SecretVerifier::default();
        let phc = password::hash_secret("right").unwrap();
        assert_eq!(verifier.verify("client", &phc, "right").await, Ok(true));
        assert_eq!(verifier.verify("client", &phc, "right").await, Ok(true));
        assert_eq!(verifier.argon2_runs(), 1);
        assert_eq!(verifier.verify("client", &phc, "wrong").await, Ok(false));
        assert_eq!(verifier.verify("client", &phc, "wrong").await, Ok(false));
        assert_eq!(verifier.argon2_runs(), 2, "a remembered failure costs no argon2");
        // A new stored hash (rotation) is not vouched for by the remembered secret.
        let rotated = password::hash_secret("right").unwrap();
        assert!(!verifier.remembered("client", &rotated, "right"));
        verifier.forget("client");
        assert!(!verifier.remembered("client", &phc, "right"));
    }

    #[tokio::test]
    async fn one_key_cannot_fill_the_queue() {
        let verifier = std::sync::Arc::new(SecretVerifier::default());
        let phc = password::hash_secret("right").unwrap();
        let flood: Vec<_> = (0..20)
            .map(|i| {
                let (verifier, phc) = (verifier.clone(), phc.clone());
                tokio::spawn(async move { verifier.verify("flooded", &phc, &format!("wrong-{i}")).await })
            })
            .collect();
        let mut busy = 0;
        for request in flood {
            if request.await.unwrap() == Err(Busy) {
                busy += 1;
            }
        }
        assert!(busy >= 20 - PER_KEY * 2, "the flood gets Busy, not a queue: {busy}");
        assert_eq!(verifier.verify("other", &phc, "right").await, Ok(true));
    }
}
