//! Recognising our own access tokens. A token is ours and active exactly when its signature
//! verifies against one of our published keys (typ `at+jwt`, our issuer), it has not expired, its
//! grant family (named by its `jti`, see `grant_token`) is live, it was not revoked on its own, and
//! its client still exists and is enabled. No access token has a row: revoking its family (a
//! logout, a reuse, a revoked refresh token, a disabled client) ends it, which keeps revocation
//! exact.
//!
//! The answer is cached by the token's SHA-256 until the next revocation anywhere (`cache`), so a
//! token presented again costs neither a signature check nor a read. The client check is
//! defence in depth for a change made by another process while this one has the token cached:
//! it holds within the client cache's lifetime (`cache::CLIENT_TTL`).
use serde_json::{Map, Value};

use super::grant_token::family_of_jti;
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
    let token_hash = sha256_b64(token);
    let record = match state.store.cached_access_token(&token_hash) {
        Some(record) => record,
        None => {
            let seen = state.store.cache_generation();
            let Some(record) = check_access_token(state, token, &token_hash).await? else {
                return Ok(None);
            };
            state.store.remember_access_token(&token_hash, &record, seen);
            record
        }
    };
    if record.expires_at <= now() {
        return Ok(None);
    }
    let client_enabled = state.store.client(&record.client_id).await?.is_some_and(|client| client.enabled);
    Ok(client_enabled.then_some(record))
}

/// The signature, the claims, the family and the single-token revocations (no cache).
async fn check_access_token(state: &AppState, token: &str, token_hash: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
    let Ok(claims) = state.keys.current().verify(token, Some("at+jwt")) else {
        return Ok(None);
    };
    let Some(record) = record_of(&claims) else {
        return Ok(None);
    };
    if claims.get("iss").and_then(Value::as_str) != Some(state.config.issuer().as_str()) {
        return Ok(None);
    }
    let family_id = match family_of_jti(&record.jti) {
        Some(family_id) => family_id.to_owned(),
        // Issued before grant families: its record names the family.
        None => match state.store.legacy_access_token_family(token_hash).await? {
            Some(family_id) => family_id,
            None => return Ok(None),
        },
    };
    let family_live = state
        .store
        .grant_family(&family_id)
        .await?
        .is_some_and(|family| family.revoked_at.is_none() && family.client_id == record.client_id && family.sid == record.sid);
    if !family_live || state.store.access_token_revoked(&record.jti).await? {
        return Ok(None);
    }
    Ok(Some(AccessTokenRecord { family_id, ..record }))
}

/// The record the claims describe (family filled in by the caller); None when one is missing.
fn record_of(claims: &Map<String, Value>) -> Option<AccessTokenRecord> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    Some(AccessTokenRecord {
        jti: text("jti")?,
        family_id: String::new(),
        client_id: text("client_id")?,
        did: text("sub")?,
        sid: text("sid")?,
        scope: text("scope")?,
        issued_at: number("iat")?,
        expires_at: number("exp")?,
    })
}
