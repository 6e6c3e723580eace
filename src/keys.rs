//! The signing key ring: loaded from the store (sealed), generated on first start, reloaded
//! periodically so every node publishes a rotated key before it signs (see
//! `Config::key_reload_interval`).
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::{
    clock::now,
    config::Config,
    crypto::{
        seal::Sealer,
        signing::{generate_key, is_published, Alg, KeySet, KeyState, NewKey, SigningError, StoredKey},
    },
    store::{keys::NewSigningKey, Store, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("a stored signing key cannot be unsealed with this master key")]
    Unseal,
}

const ALGS: [Alg; 2] = [Alg::Rs256, Alg::Es256];

pub struct KeyRing {
    current: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    /// Loads the published keys, generating (active at once) the first key of an algorithm that
    /// has none active: no token exists yet. Several nodes starting together call this under
    /// the store's startup lock.
    pub async fn load(store: &Store, sealer: &Sealer, config: &Config) -> Result<Self, KeyRingError> {
        let mut rows = published_keys(store, config).await?;
        let now = now();
        let missing: Vec<Alg> = ALGS
            .into_iter()
            .filter(|alg| {
                !rows.iter().any(|r| r.alg == alg.as_str() && KeyState::at(r.activates_at, r.retired_at, now) == KeyState::Active)
            })
            .collect();
        if !missing.is_empty() {
            let keys = generate(missing).await?;
            store.insert_first_signing_keys(&seal(&keys, sealer)?, now).await?;
            rows = published_keys(store, config).await?;
        }
        let set = key_set(rows, sealer, config)?;
        Ok(Self { current: RwLock::new(Arc::new(set)) })
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub async fn reload(&self, store: &Store, sealer: &Sealer, config: &Config) -> Result<(), KeyRingError> {
        let set = Arc::new(key_set(published_keys(store, config).await?, sealer, config)?);
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }
}

/// A rotation's new keys and the instant they start signing.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    /// The new RS256 key (ID and logout tokens, RS256 access tokens).
    pub rs256_kid: String,
    /// The new ES256 key (ES256 access tokens).
    pub es256_kid: String,
    pub activates_at: i64,
}

/// Makes new keys (RS256 and ES256), published at once and signing `activation_delay_secs`
/// later; the current keys sign until then, then stay published until their tokens expire.
/// A delay of 0 activates at once: only after a key leak, as relying parties with a cached
/// JWKS reject the new tokens until their cache expires.
pub async fn rotate(store: &Store, sealer: &Sealer, activation_delay_secs: i64) -> Result<Rotation, KeyRingError> {
    let keys = generate(ALGS.to_vec()).await?;
    let now = now();
    let activates_at = now + activation_delay_secs.max(0);
    store.rotate_signing_keys(&seal(&keys, sealer)?, now, activates_at).await?;
    // Other nodes publish the new keys at once instead of at their next periodic reload.
    if let Err(error) = store.announce_keys_changed().await {
        tracing::warn!(%error, "announcing the rotation failed; other nodes see it at their next reload");
    }
    let kid = |alg: Alg| keys.iter().find(|k| k.alg == alg).map(|k| k.kid.clone()).unwrap_or_default();
    Ok(Rotation { rs256_kid: kid(Alg::Rs256), es256_kid: kid(Alg::Es256), activates_at })
}

/// One signing key as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub kid: String,
    /// RS256 signs ID and logout tokens and RS256 access tokens, ES256 the access tokens of ES256 clients.
    pub alg: String,
    /// `published` (in the JWKS, not signing yet), `active` (signing) or `retired`.
    pub state: &'static str,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    /// Signs new tokens.
    pub active: bool,
    /// In the JWKS (every key but those retired longer than the longest token lifetime).
    pub published: bool,
}

/// Every key ever made, newest activation first.
pub async fn list(store: &Store, config: &Config) -> Result<Vec<KeyView>, StoreError> {
    let overlap = overlap_secs(config);
    let now = now();
    Ok(store
        .signing_key_infos()
        .await?
        .into_iter()
        .map(|k| {
            let state = KeyState::at(k.activates_at, k.retired_at, now);
            KeyView {
                kid: k.kid,
                alg: k.alg,
                state: state.as_str(),
                created_at: k.created_at,
                activates_at: k.activates_at,
                retired_at: k.retired_at,
                active: state == KeyState::Active,
                published: is_published(k.retired_at, now, overlap),
            }
        })
        .collect())
}

/// A retired key stays published until every token it signed has expired.
fn overlap_secs(config: &Config) -> i64 {
    config.max_signed_token_ttl_secs() + 60
}

async fn published_keys(store: &Store, config: &Config) -> Result<Vec<crate::store::keys::SigningKeyRow>, KeyRingError> {
    Ok(store.published_signing_keys(now(), overlap_secs(config)).await?)
}

async fn generate(algs: Vec<Alg>) -> Result<Vec<NewKey>, KeyRingError> {
    // RSA key generation takes a while: off the async threads.
    let keys = tokio::task::spawn_blocking(move || algs.into_iter().map(generate_key).collect::<Result<Vec<_>, _>>())
        .await
        .map_err(|e| SigningError::Key(e.to_string()))??;
    Ok(keys)
}

fn seal(keys: &[NewKey], sealer: &Sealer) -> Result<Vec<NewSigningKey>, KeyRingError> {
    keys.iter()
        .map(|key| {
            let private_key_sealed = sealer.seal_str(&key.private_pem).map_err(|e| SigningError::Key(e.to_string()))?;
            Ok(NewSigningKey { kid: key.kid.clone(), alg: key.alg.as_str().to_owned(), private_key_sealed })
        })
        .collect()
}

fn key_set(rows: Vec<crate::store::keys::SigningKeyRow>, sealer: &Sealer, config: &Config) -> Result<KeySet, KeyRingError> {
    let keys = rows
        .into_iter()
        .map(|row| {
            let private_pem = sealer.open_str(&row.private_key_sealed).map_err(|_| KeyRingError::Unseal)?;
            let alg = Alg::parse(&row.alg).ok_or_else(|| SigningError::Key(format!("unknown algorithm {}", row.alg)))?;
            Ok(StoredKey {
                kid: row.kid,
                alg,
                private_pem,
                created_at: row.created_at,
                activates_at: row.activates_at,
                retired_at: row.retired_at,
            })
        })
        .collect::<Result<Vec<_>, KeyRingError>>()?;
    Ok(KeySet::published_at(keys, now(), overlap_secs(config))?)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ` (UTC), for operators.
pub fn utc_text(ts: i64) -> String {
    // Days to civil date: Howard Hinnant's algorithm (proleptic Gregorian).
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_text_reads_like_a_calendar() {
        assert_eq!(super::utc_text(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::utc_text(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(super::utc_text(1_796_443_845), "2026-12-05 04:10:45Z");
    }
}
