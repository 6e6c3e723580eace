//! Token revocation (RFC 7009) and introspection (RFC 7662). Both only ever act on tokens
//! issued to the authenticated client.
use serde_json::{json, Value};

use super::{access::validate_access_token, params::Params};
use crate::{
    crypto::sha256_b64,
    error::OAuthError,
    state::{now, AppState},
    store::clients::Client,
};

pub async fn revoke(state: &AppState, client: &Client, params: &Params) -> Result<(), OAuthError> {
    let token = params.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = now();
    let hint = params.get("token_type_hint");
    if hint != Some("refresh_token") {
        if let Some(record) = validate_access_token(state, token).await? {
            if record.client_id == client.client_id {
                state.store.revoke_access_token(&record.jti, now).await?;
            }
            return Ok(());
        }
    }
    if let Some(record) = state.store.refresh_token(&sha256_b64(token)).await? {
        if record.client_id == client.client_id {
            // Revoking a refresh token ends the grant: its access tokens go too (RFC 7009 §2.1).
            state.store.revoke_family(&record.family_id, now).await?;
        }
    }
    // Unknown tokens are not an error (RFC 7009 §2.2).
    Ok(())
}

pub async fn introspect(state: &AppState, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let token = params.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = now();
    let inactive = json!({ "active": false });
    if params.get("token_type_hint") != Some("refresh_token") {
        if let Some(record) = validate_access_token(state, token).await? {
            if record.client_id != client.client_id {
                return Ok(inactive);
            }
            let response = json!({
                "active": true,
                "token_type": "Bearer",
                "iss": state.config.issuer(),
                "scope": record.scope,
                "client_id": record.client_id,
                "sub": record.did,
                "aud": record.client_id,
                "exp": record.expires_at,
                "iat": record.issued_at,
                "jti": record.jti,
                "sid": record.sid,
            });
            return Ok(response);
        }
    }
    if let Some(record) = state.store.refresh_token(&sha256_b64(token)).await? {
        let live = record.client_id == client.client_id
            && record.rotated_at.is_none()
            && record.revoked_at.is_none()
            && record.expires_at > now
            && state.store.live_session(&record.sid, now).await?.is_some();
        if live {
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "iss": state.config.issuer(),
                "scope": record.scope,
                "client_id": record.client_id,
                "sub": record.did,
                "exp": record.expires_at,
                "iat": record.created_at,
                "sid": record.sid,
            }));
        }
    }
    Ok(inactive)
}
