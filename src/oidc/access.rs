//! Recognising our own access tokens. The database is the source of truth: a token is ours and
//! active exactly when the SHA-256 of the whole token names a record that is neither revoked nor
//! expired. (The JWT signature is for resource servers that verify offline; checking it here too
//! would add nothing but CPU.)
use crate::{
    crypto::sha256_b64,
    state::{now, AppState},
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
    Ok((record.revoked_at.is_none() && record.expires_at > now()).then_some(record))
}
