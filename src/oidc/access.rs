//! Validating our own access tokens: signature, type, issuer, expiry, and the revocation record.
use serde_json::{Map, Value};

use crate::{
    state::{now, AppState},
    store::{tokens::AccessTokenRecord, StoreError},
};

pub struct ValidAccessToken {
    pub claims: Map<String, Value>,
    pub record: AccessTokenRecord,
}

/// Some(valid token) when active; None when invalid, expired or revoked.
pub async fn validate_access_token(state: &AppState, token: &str) -> Result<Option<ValidAccessToken>, StoreError> {
    if token.len() > 8192 || token.split('.').count() != 3 {
        return Ok(None);
    }
    let keys = state.keys.current();
    let Ok(claims) = keys.verify(token, Some("at+jwt")) else {
        return Ok(None);
    };
    let now = now();
    let issuer_ok = claims.get("iss").and_then(Value::as_str) == Some(state.config.issuer().as_str());
    let unexpired = claims.get("exp").and_then(Value::as_i64).is_some_and(|exp| exp > now);
    let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
        return Ok(None);
    };
    if !issuer_ok || !unexpired {
        return Ok(None);
    }
    let Some(record) = state.store.access_token_record(jti).await? else {
        return Ok(None);
    };
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Ok(None);
    }
    Ok(Some(ValidAccessToken { claims, record }))
}
