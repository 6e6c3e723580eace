//! The token endpoint's grants: authorization_code (with PKCE) and refresh_token (rotating,
//! with reuse detection).
use super::{
    issue::{issue_tokens, Grant, TokenResponse},
    params::Params,
};
use crate::{
    crypto::{pkce_s256_matches, sha256_b64},
    error::{ErrorCode, OAuthError},
    state::{now, AppState},
    store::{clients::Client, grants::CodeRedemption, tokens::RefreshRotation},
};

pub async fn exchange(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    match params.get("grant_type") {
        Some("authorization_code") => authorization_code(state, client, params).await,
        Some("refresh_token") => refresh_token(state, client, params).await,
        Some(_) => Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "supported grant types: authorization_code, refresh_token")),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

async fn authorization_code(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let code = params.get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let now = now();
    let record = match state.store.redeem_code(&sha256_b64(code), now).await? {
        CodeRedemption::Redeemed(record) => record,
        CodeRedemption::Replayed(record) => {
            // RFC 6749 §4.1.2: a code used twice revokes what it issued.
            tracing::warn!(client_id = %record.client_id, "authorization code replayed; revoking its tokens");
            state.store.revoke_family(&record.family_id, now).await?;
            return Err(OAuthError::invalid_grant("authorization code has already been used"));
        }
        CodeRedemption::Unknown => return Err(OAuthError::invalid_grant("authorization code is invalid")),
    };
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("authorization code was issued to another client"));
    }
    if record.expires_at <= now {
        return Err(OAuthError::invalid_grant("authorization code has expired"));
    }
    match params.get("redirect_uri") {
        Some(uri) if uri == record.redirect_uri => {}
        Some(_) => return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request")),
        None => return Err(OAuthError::invalid_request("redirect_uri is required")),
    }
    match (&record.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            if !is_code_verifier(verifier) || !pkce_s256_matches(verifier, challenge) {
                return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required")),
        (None, Some(_)) => return Err(OAuthError::invalid_grant("code_verifier given but no code_challenge was sent")),
        (None, None) => {}
    }
    if state.store.live_session(&record.sid, now).await?.is_none() {
        return Err(OAuthError::invalid_grant("the sign-in session has ended"));
    }
    issue_tokens(
        state,
        Grant {
            client_id: &client.client_id,
            did: &record.did,
            sid: &record.sid,
            scopes: split_scopes(&record.scope),
            auth_time: record.auth_time,
            nonce: record.nonce.as_deref(),
            family_id: &record.family_id,
        },
    )
    .await
}

async fn refresh_token(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let token = params.get("refresh_token").ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let hash = sha256_b64(token);
    let now = now();
    let record = match state.store.rotate_refresh_token(&hash, &client.client_id, now).await? {
        RefreshRotation::Rotated(record) => record,
        RefreshRotation::Reused(record) => {
            tracing::warn!(client_id = %record.client_id, "rotated refresh token reused; revoking its family");
            state.store.revoke_family(&record.family_id, now).await?;
            return Err(OAuthError::invalid_grant("refresh token has already been used"));
        }
        RefreshRotation::OtherClient => return Err(OAuthError::invalid_grant("refresh token was issued to another client")),
        RefreshRotation::Invalid => return Err(OAuthError::invalid_grant("refresh token is invalid, revoked or expired")),
    };
    let granted = split_scopes(&record.scope);
    let scopes = match params.get("scope") {
        Some(requested) => {
            let requested = split_scopes(requested);
            if let Some(extra) = requested.iter().find(|s| !granted.contains(s)) {
                return Err(OAuthError::new(ErrorCode::InvalidScope, format!("scope `{extra}` was not granted")));
            }
            requested
        }
        None => granted,
    };
    if state.store.live_session(&record.sid, now).await?.is_none() {
        state.store.revoke_family(&record.family_id, now).await?;
        return Err(OAuthError::invalid_grant("the sign-in session has ended"));
    }
    issue_tokens(
        state,
        Grant {
            client_id: &client.client_id,
            did: &record.did,
            sid: &record.sid,
            scopes,
            auth_time: record.auth_time,
            nonce: None,
            family_id: &record.family_id,
        },
    )
    .await
}

fn split_scopes(scope: &str) -> Vec<String> {
    scope.split(' ').filter(|s| !s.is_empty()).map(String::from).collect()
}

/// RFC 7636 §4.1: 43–128 unreserved characters.
fn is_code_verifier(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}
