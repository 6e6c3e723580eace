//! What every request handler shares. Built once in `lib.rs`; tests build their own.
use std::sync::Arc;

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
}
