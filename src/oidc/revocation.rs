//! Token revocation (RFC 7009) and introspection (RFC 7662). Both only ever act on tokens
//! issued to the authenticated client. `token_type_hint` only decides which kind of token is
//! looked up first: a wrong hint costs a second lookup, never the answer (RFC 7009 §2.1).
use serde_json::{json, Value};

use super::{access::validate_access_token, params::Params, token::presented_generation};
use crate::{clock::now, error::OAuthError, state::AppState, store::clients::Client};

/// Whether the hint names a refresh token; any other value (or none) starts with access tokens.
fn refresh_first(params: &Params) -> bool {
    params.get("token_type_hint") == Some("refresh_token")
}

pub async fn revoke(state: &AppState, client: &Client, params: &Params) -> Result<(), OAuthError> {
    let token = params.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = now();
    if refresh_first(params) {
        if !revoke_refresh_token(state, client, token, now).await? {
            revoke_access_token(state, client, token).await?;
        }
    } else if !revoke_access_token(state, client, token).await? {
        revoke_refresh_token(state, client, token, now).await?;
    }
    // Unknown tokens are not an error (RFC 7009 §2.2).
    Ok(())
}

/// Revokes an active access token of this client; true when the token is an active access token
/// (of any client: another client's token is left alone, but there is nothing else to look for).
async fn revoke_access_token(state: &AppState, client: &Client, token: &str) -> Result<bool, OAuthError> {
    let Some(record) = validate_access_token(state, token).await? else {
        return Ok(false);
    };
    if record.client_id == client.client_id {
        state.store.revoke_access_token(&record.jti, record.expires_at).await?;
    }
    Ok(true)
}

/// Revokes the grant of a refresh token of this client (any generation of it: the family is what
/// it names); true when the token is one of our refresh tokens.
async fn revoke_refresh_token(state: &AppState, client: &Client, token: &str, now: i64) -> Result<bool, OAuthError> {
    let Some((family_id, _)) = presented_generation(state, token).await? else {
        return Ok(false);
    };
    let Some(family) = state.store.grant_family_in_db(&family_id).await? else {
        return Ok(false);
    };
    if family.client_id == client.client_id {
        // Revoking a refresh token ends the grant: its access tokens go too (RFC 7009 §2.1).
        state.store.revoke_family(&family.family_id, now).await?;
    }
    Ok(true)
}

pub async fn introspect(state: &AppState, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let token = params.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = now();
    let found = if refresh_first(params) {
        match introspect_refresh_token(state, client, token, now).await? {
            Some(answer) => Some(answer),
            None => introspect_access_token(state, client, token).await?,
        }
    } else {
        match introspect_access_token(state, client, token).await? {
            Some(answer) => Some(answer),
            None => introspect_refresh_token(state, client, token, now).await?,
        }
    };
    Ok(found.unwrap_or_else(inactive))
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// The answer for an active access token; None when the token is not one.
async fn introspect_access_token(state: &AppState, client: &Client, token: &str) -> Result<Option<Value>, OAuthError> {
    let Some(record) = validate_access_token(state, token).await? else {
        return Ok(None);
    };
    if record.client_id != client.client_id {
        return Ok(Some(inactive()));
    }
    Ok(Some(json!({
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
    })))
}

/// The answer for a refresh token we know (live or not); None when the token is not one. Only the
/// family's current generation is active; read from the database, as another node may have
/// rotated it.
async fn introspect_refresh_token(state: &AppState, client: &Client, token: &str, now: i64) -> Result<Option<Value>, OAuthError> {
    let Some((family_id, presented)) = presented_generation(state, token).await? else {
        return Ok(None);
    };
    let Some(family) = state.store.grant_family_in_db(&family_id).await? else {
        return Ok(None);
    };
    let live = family.client_id == client.client_id
        && family.generation == presented
        && family.revoked_at.is_none()
        && family.expires_at > now
        && state.store.live_session(&family.sid, now).await?.is_some();
    if !live {
        return Ok(Some(inactive()));
    }
    Ok(Some(json!({
        "active": true,
        "token_type": "refresh_token",
        "iss": state.config.issuer(),
        "scope": family.scope,
        "client_id": family.client_id,
        "sub": family.did,
        "exp": family.expires_at,
        "iat": family.rotated_at.unwrap_or(family.created_at),
        "sid": family.sid,
    })))
}
