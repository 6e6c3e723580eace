//! The signing key ring: loaded from the store (sealed), generated on first start, reloaded
//! periodically so every node sees rotations.
use std::sync::{Arc, RwLock};

use crate::{
    config::Config,
    crypto::{
        seal::Sealer,
        signing::{generate_key, KeySet, SigningError, StoredKey},
    },
    state::now,
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

/// Makes a new active key; the old one stays published for the longest token lifetime.
pub async fn rotate(store: &Store, sealer: &Sealer) -> Result<String, KeyRingError> {
    let key = tokio::task::spawn_blocking(generate_key)
        .await
        .map_err(|e| SigningError::Key(e.to_string()))??;
    let sealed = sealer.seal_str(&key.private_pem).map_err(|e| SigningError::Key(e.to_string()))?;
    store.rotate_signing_key(&key.kid, &sealed, now()).await?;
    Ok(key.kid)
}

async fn load_key_set(store: &Store, sealer: &Sealer, config: &Config) -> Result<KeySet, KeyRingError> {
    let overlap = config.max_signed_token_ttl_secs() + 60;
    let mut rows = store.published_signing_keys(now(), overlap).await?;
    if !rows.iter().any(|r| r.retired_at.is_none()) {
        rotate(store, sealer).await?;
        rows = store.published_signing_keys(now(), overlap).await?;
    }
    let keys = rows
        .into_iter()
        .map(|row| {
            let private_pem = sealer.open_str(&row.private_key_sealed).map_err(|_| KeyRingError::Unseal)?;
            Ok(StoredKey { kid: row.kid, private_pem, created_at: row.created_at, retired_at: row.retired_at })
        })
        .collect::<Result<Vec<_>, KeyRingError>>()?;
    Ok(KeySet::new(keys)?)
}
