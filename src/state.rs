//! What every request handler shares. Built once in `lib.rs`; tests build their own.
use std::{sync::Arc, time::Duration};

use crate::{atproto::AtprotoClient, config::Config, crypto::seal::Sealer, crypto::secrets::SecretVerifier, keys::KeyRing, store::Store};

#[derive(Clone)]
pub struct AppState {
    /// Our ATProto OAuth client (holds the DPoP nonce cache).
    pub atproto: AtprotoClient,
    pub config: Arc<Config>,
    pub store: Store,
    pub sealer: Sealer,
    pub keys: Arc<KeyRing>,
    /// Argon2-once verification of client secrets and admin tokens (bounded queue).
    pub secrets: Arc<SecretVerifier>,
    /// Abuse limits (per node).
    pub limits: Arc<crate::limits::Limits>,
    /// Discovery document, rendered once (shared bytes: no copy per request).
    pub discovery_json: bytes::Bytes,
    /// Cancelled when the server has stopped (SIGTERM/SIGINT, after in-flight requests): every
    /// background task ends its loop on it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// How long the readiness check waits for the database.
pub const READINESS_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a node should get no traffic. The text is shown by `/readyz` (never a database error's).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("database unreachable")]
    Database(#[source] crate::store::StoreError),
    #[error("no active signing key loaded")]
    Keys,
}

impl AppState {
    /// Ready for traffic: the database answers a `SELECT 1` within
    /// [`READINESS_DB_TIMEOUT`], and an ID-token signing key is loaded.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.store.ping(READINESS_DB_TIMEOUT).await.map_err(NotReady::Database)?;
        let keys = self.keys.current();
        // Both algorithms: any client may have opted into either for its access tokens.
        for alg in [crate::crypto::signing::Alg::Rs256, crate::crypto::signing::Alg::Es256] {
            if keys.active_kid(alg).is_none() {
                return Err(NotReady::Keys);
            }
        }
        Ok(())
    }
}
