//! The signing key ring: loaded from the store (sealed), generated on first start, reloaded
//! periodically so every node sees rotations.
use std::sync::{Arc, RwLock};

use crate::{
    clock::now,
    config::Config,
    crypto::{
        seal::Sealer,
        signing::{generate_key, Alg, KeySet, SigningError, StoredKey},
    },
    store::{Store, StoreError},
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

pub struct KeyRing {
    current: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    /// Loads the published keys, generating the first one when there is none.
    pub async fn load(store: &Store, sealer: &Sealer, config: &Config) -> Result<Self, KeyRingError> {
        let set = load_key_set(store, sealer, config).await?;
        Ok(Self { current: RwLock::new(Arc::new(set)) })
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub async fn reload(&self, store: &Store, sealer: &Sealer, config: &Config) -> Result<(), KeyRingError> {
        let set = Arc::new(load_key_set(store, sealer, config).await?);
        match self.current.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }
}

/// Makes new active keys (RS256 and ES256); the old ones stay published for the longest token
/// lifetime. Returns the new RS256 `kid`.
pub async fn rotate(store: &Store, sealer: &Sealer) -> Result<String, KeyRingError> {
    let keys = tokio::task::spawn_blocking(|| Ok::<_, SigningError>((generate_key(Alg::Rs256)?, generate_key(Alg::Es256)?)))
        .await
        .map_err(|e| SigningError::Key(e.to_string()))??;
    let (rsa, ec) = keys;
    let mut rows = Vec::new();
    for key in [&rsa, &ec] {
        let sealed = sealer.seal_str(&key.private_pem).map_err(|e| SigningError::Key(e.to_string()))?;
        rows.push((key.kid.clone(), key.alg.as_str().to_owned(), sealed));
    }
    store.rotate_signing_keys(&rows, now()).await?;
    Ok(rsa.kid)
}

async fn load_key_set(store: &Store, sealer: &Sealer, config: &Config) -> Result<KeySet, KeyRingError> {
    let overlap = config.max_signed_token_ttl_secs() + 60;
    let mut rows = store.published_signing_keys(now(), overlap).await?;
    let active = |alg: &str| rows.iter().any(|r| r.retired_at.is_none() && r.alg == alg);
    if !active("RS256") || !active("ES256") {
        rotate(store, sealer).await?;
        rows = store.published_signing_keys(now(), overlap).await?;
    }
    let keys = rows
        .into_iter()
        .map(|row| {
            let private_pem = sealer.open_str(&row.private_key_sealed).map_err(|_| KeyRingError::Unseal)?;
            let alg = Alg::parse(&row.alg).ok_or_else(|| SigningError::Key(format!("unknown algorithm {}", row.alg)))?;
            Ok(StoredKey { kid: row.kid, alg, private_pem, created_at: row.created_at, retired_at: row.retired_at })
        })
        .collect::<Result<Vec<_>, KeyRingError>>()?;
    Ok(KeySet::new(keys)?)
}
