//! Recognising our own access tokens. The database is the source of truth: a token is ours and
//! active exactly when the SHA-256 of the whole token names a record that is neither revoked nor
//! expired, and whose client still exists and is enabled. (The JWT signature is for resource
//! servers that verify offline; checking it here too would add nothing but CPU.)
//!
//! Disabling or deleting a client revokes its tokens; the client check is defence in depth for a
//! change made by another process (the CLI, another node) while this one still has the token's
//! record cached: it holds within the client cache's lifetime (`cache::CLIENT_TTL`).
use crate::{
    clock::now,
    crypto::sha256_b64,
    state::AppState,
    store::{tokens::AccessTokenRecord, StoreError},
};

/// Some(record) when the token is one of ours and active.
pub async fn validate_access_token(state: &AppState, token: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
    if token.is_empty() || token.len() > 8192 {
        return Ok(None);
    }
    let Some(record) = state.store.access_token_by_hash(&sha256_b64(token)).await? else {
        return Ok(None);
    };
    if record.revoked_at.is_some() || record.expires_at <= now() {
        return Ok(None);
    }
    let client_enabled = state.store.client(&record.client_id).await?.is_some_and(|client| client.enabled);
    Ok(client_enabled.then_some(record))
}
