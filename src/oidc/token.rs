//! The token endpoint's grants: authorization_code (with PKCE) and refresh_token (rotating,
//! with reuse detection).
use super::{
    issue::{issue_tokens, Grant, TokenResponse},
    params::Params,
};
use crate::{
    clock::now,
    crypto::{constant_time_eq, pkce_s256_matches, sha256_b64},
    error::{ErrorCode, OAuthError},
    sso::upstream::{upstream_grant, UpstreamGrant},
    state::AppState,
    store::{
        clients::Client,
        grants::{AuthorizationCode, CodeRedemption},
        tokens::{RefreshTokenRecord, Spend},
    },
};

pub async fn exchange(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let issued = match params.get("grant_type") {
        Some("authorization_code") => authorization_code(state, client, params).await.map(|r| (r, "authorization_code")),
        Some("refresh_token") => refresh_token(state, client, params).await.map(|r| (r, "refresh_token")),
        Some(_) => Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "supported grant types: authorization_code, refresh_token")),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    };
    issued.map(|(response, grant_type)| {
        metrics::counter!("atsso_tokens_issued_total", "grant_type" => grant_type).increment(1);
        response
    })
}

async fn authorization_code(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let code = params.get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let code_hash = sha256_b64(code);
    let now = now();
    // Read and check first, sign, then spend the code and store the tokens in one write.
    let Some(record) = state.store.authorization_code(&code_hash).await? else {
        return Err(OAuthError::invalid_grant("authorization code is invalid"));
    };
    // Another client's code is refused before anything is spent or revoked: whoever got hold
    // of it can neither burn it for its rightful client nor revoke what it issued.
    if !constant_time_eq(record.client_id.as_bytes(), client.client_id.as_bytes()) {
        return Err(OAuthError::invalid_grant("authorization code was issued to another client"));
    }
    if record.used_at.is_some() {
        return Err(code_replayed(state, &record, now).await);
    }
    if let Err(refusal) = check_code(state, client, params, &record, now).await {
        // A code presented wrongly is spent all the same: no second try with other parameters.
        if let CodeRedemption::Replayed(record) = state.store.redeem_code(&code_hash, now).await? {
            return Err(code_replayed(state, &record, now).await);
        }
        return Err(refusal);
    }
    let grant = Grant {
        client_id: &client.client_id,
        access_token_alg: client.access_token_alg_or(state.config.access_token_alg),
        did: &record.did,
        sid: &record.sid,
        scopes: split_scopes(&record.scope),
        granted_scope: &record.scope,
        auth_time: record.auth_time,
        nonce: record.nonce.as_deref(),
        family_id: &record.family_id,
    };
    match issue_tokens(state, grant, Spend::Code { code_hash }).await? {
        Some(response) => Ok(response),
        // Redeemed by a concurrent request since we read it: a replay.
        None => Err(code_replayed(state, &record, now).await),
    }
}

/// RFC 6749 §4.1.2: a code used twice revokes what it issued.
async fn code_replayed(state: &AppState, record: &AuthorizationCode, now: i64) -> OAuthError {
    tracing::warn!(client_id = %record.client_id, "authorization code replayed; revoking its tokens");
    if let Err(error) = state.store.revoke_family(&record.family_id, now).await {
        return error.into();
    }
    OAuthError::invalid_grant("authorization code has already been used")
}

/// The checks after the client binding (done by the caller); a failure here spends the code.
async fn check_code(state: &AppState, client: &Client, params: &Params, record: &AuthorizationCode, now: i64) -> Result<(), OAuthError> {
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
        // Issued while the client was exempted from PKCE, which it no longer is.
        (None, None) if client.pkce_required() => return Err(OAuthError::invalid_grant("this client must use PKCE")),
        (None, None) => {}
    }
    if state.store.live_session(&record.sid, now).await?.is_none() {
        return Err(OAuthError::invalid_grant("the sign-in session has ended"));
    }
    Ok(())
}

async fn refresh_token(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let token = params.get("refresh_token").ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let token_hash = sha256_b64(token);
    let now = now();
    // Read and check first (another client's token stays untouched), sign, then spend the token
    // and store its successor in one write.
    let Some(record) = state.store.refresh_token(&token_hash).await? else {
        return Err(OAuthError::invalid_grant("refresh token is invalid"));
    };
    if !constant_time_eq(record.client_id.as_bytes(), client.client_id.as_bytes()) {
        return Err(OAuthError::invalid_grant("refresh token was issued to another client"));
    }
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Err(OAuthError::invalid_grant("refresh token is invalid, revoked or expired"));
    }
    let spend = match record.rotated_at {
        None => Spend::RefreshToken { token_hash: token_hash.clone() },
        Some(_) => match retry_of_lost_response(state, &record, now).await? {
            Some(spend) => spend,
            None => return Err(refresh_reused(state, &record, now).await),
        },
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
    // Tenant tokens live no longer than the user's grant at their PDS: once its access token has
    // expired, it is refreshed first. A refusal has ended the session (single logout); when the
    // PDS cannot be reached, the refresh token stays unspent for a retry (README, "Upstream sessions": why 503).
    match upstream_grant(state, &record.sid).await? {
        UpstreamGrant::Usable => {}
        UpstreamGrant::Ended => return Err(OAuthError::invalid_grant("the sign-in session has ended")),
        UpstreamGrant::Unavailable => return Err(OAuthError::busy("the account's server could not be reached; try again later", 5)),
    }
    let grant = Grant {
        client_id: &client.client_id,
        access_token_alg: client.access_token_alg_or(state.config.access_token_alg),
        did: &record.did,
        sid: &record.sid,
        scopes,
        granted_scope: &record.scope,
        auth_time: record.auth_time,
        nonce: None,
        family_id: &record.family_id,
    };
    if let Some(response) = issue_tokens(state, grant.clone(), spend).await? {
        return Ok(response);
    }
    // Spent or revoked since we read it: a revocation, a concurrent reuse, or a spend on another
    // node that our cache had not seen (a lost response retried here) — judged from the database.
    let stale = || OAuthError::invalid_grant("refresh token is invalid, revoked or expired");
    match state.store.refresh_token_in_db(&token_hash).await? {
        Some(current) if current.rotated_at.is_some() && current.revoked_at.is_none() => {
            match retry_of_lost_response(state, &current, now).await? {
                Some(retry) => issue_tokens(state, grant, retry).await?.ok_or_else(stale),
                None => Err(refresh_reused(state, &current, now).await),
            }
        }
        _ => Err(stale()),
    }
}

/// A rotated token presented again within the retry window while its successor is unused: the
/// response that carried the successor never arrived (a node killed mid-request, a dropped
/// connection), so the successor is spent in its place and the client gets the one working token.
/// Anything else is a reuse. The window is short and off by default: within it, a thief holding
/// the old token and the client can each get tokens until the window ends, when the next stale
/// presentation revokes the family.
async fn retry_of_lost_response(state: &AppState, record: &RefreshTokenRecord, now: i64) -> Result<Option<Spend>, OAuthError> {
    let window = state.config.refresh_retry_window_secs;
    let (Some(rotated_at), Some(successor_hash)) = (record.rotated_at, record.replaced_by.as_deref()) else {
        return Ok(None);
    };
    if window == 0 || now - rotated_at > window {
        return Ok(None);
    }
    let unused = state.store.refresh_token_in_db(successor_hash).await?.is_some_and(|s| s.rotated_at.is_none() && s.revoked_at.is_none());
    if !unused {
        return Ok(None);
    }
    tracing::info!(client_id = %record.client_id, "rotated refresh token presented again within the retry window; answering as a retry");
    Ok(Some(Spend::RefreshRetry { presented_hash: record.token_hash.clone(), successor_hash: successor_hash.to_owned() }))
}

/// A rotated refresh token presented again: revoke its whole family (OAuth 2.0 Security BCP).
async fn refresh_reused(state: &AppState, record: &RefreshTokenRecord, now: i64) -> OAuthError {
    tracing::warn!(client_id = %record.client_id, "rotated refresh token reused; revoking its family");
    metrics::counter!("atsso_refresh_reuse_detected_total").increment(1);
    if let Err(error) = state.store.revoke_family(&record.family_id, now).await {
        return error.into();
    }
    OAuthError::invalid_grant("refresh token has already been used")
}

fn split_scopes(scope: &str) -> Vec<String> {
    scope.split(' ').filter(|s| !s.is_empty()).map(String::from).collect()
}

/// RFC 7636 §4.1: 43–128 unreserved characters.
fn is_code_verifier(text: &str) -> bool {
    (43..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}
