//! The token endpoint's grants: authorization_code (with PKCE) and refresh_token (rotating,
//! with reuse detection).
use super::{
    grant_token::{self, Presented},
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
        tokens::{GrantFamily, Spend},
        StoreError,
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
        family_created_at: now,
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
    let now = now();
    let invalid = || OAuthError::invalid_grant("refresh token is invalid, revoked or expired");
    let Some((family_id, presented)) = presented_generation(state, token).await? else {
        return Err(OAuthError::invalid_grant("refresh token is invalid"));
    };
    // Read and check first (another client's grant stays untouched), sign, then move the family
    // to the next generation in one conditional write.
    let Some(family) = state.store.grant_family(&family_id).await? else {
        return Err(invalid());
    };
    if !constant_time_eq(family.client_id.as_bytes(), client.client_id.as_bytes()) {
        return Err(OAuthError::invalid_grant("refresh token was issued to another client"));
    }
    // This node's copy may be behind a rotation made on another node: anything but the current
    // generation is judged from the database.
    let family = if family.generation == presented && family.expires_at > now {
        family
    } else {
        state.store.grant_family_in_db(&family_id).await?.ok_or_else(invalid)?
    };
    if family.revoked_at.is_some() || family.expires_at <= now || presented > family.generation {
        return Err(invalid());
    }
    let Some(spend) = spend_for(state, &family, presented, now) else {
        return Err(refresh_reused(state, &family, now).await);
    };
    let granted = split_scopes(&family.scope);
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
    if state.store.live_session(&family.sid, now).await?.is_none() {
        state.store.revoke_family(&family.family_id, now).await?;
        return Err(OAuthError::invalid_grant("the sign-in session has ended"));
    }
    // Tenant tokens live no longer than the user's grant at their PDS: once its access token has
    // expired, it is refreshed first. A refusal has ended the session (single logout); when the
    // PDS cannot be reached, the refresh token stays unspent for a retry (README, "Upstream sessions": why 503).
    match upstream_grant(state, &family.sid).await? {
        UpstreamGrant::Usable => {}
        UpstreamGrant::Ended => return Err(OAuthError::invalid_grant("the sign-in session has ended")),
        UpstreamGrant::Unavailable => return Err(OAuthError::busy("the account's server could not be reached; try again later", 5)),
    }
    let grant = Grant {
        client_id: &client.client_id,
        access_token_alg: client.access_token_alg_or(state.config.access_token_alg),
        did: &family.did,
        sid: &family.sid,
        scopes,
        granted_scope: &family.scope,
        auth_time: family.auth_time,
        nonce: None,
        family_id: &family.family_id,
        family_created_at: family.created_at,
    };
    if let Some(response) = issue_tokens(state, grant.clone(), spend).await? {
        return Ok(response);
    }
    // Moved on or revoked since we read it: a revocation, a concurrent reuse, or a rotation on
    // another node (a lost response retried here) — judged from the database.
    match state.store.grant_family_in_db(&family_id).await? {
        Some(current) if current.revoked_at.is_none() && current.expires_at > now && presented < current.generation => {
            match spend_for(state, &current, presented, now) {
                Some(retry) => issue_tokens(state, grant, retry).await?.ok_or_else(invalid),
                None => Err(refresh_reused(state, &current, now).await),
            }
        }
        _ => Err(invalid()),
    }
}

/// The grant family and generation a presented refresh token names. A token from before grant
/// families stands for generation 0 of its family when it was the unrotated one, and for an
/// older generation (a reuse) when it had been rotated.
pub(super) async fn presented_generation(state: &AppState, token: &str) -> Result<Option<(String, i64)>, StoreError> {
    Ok(match grant_token::parse_refresh_token(&state.sealer, token) {
        Presented::Family { family_id, generation } => Some((family_id, generation)),
        Presented::Legacy { token_hash } => {
            state.store.legacy_refresh_token(&token_hash).await?.map(|legacy| (legacy.family_id, if legacy.rotated { -1 } else { 0 }))
        }
        Presented::Unknown => None,
    })
}

/// What presenting generation `presented` spends. The current generation moves the family on.
/// Within the retry window, the generation presented at the last rotation may come again while
/// the current one is unused: the response that carried it never arrived (a node killed
/// mid-request, a dropped connection), so the current one is spent in its place and the client
/// gets the one working token. Anything else is a reuse (None). The window is short and off by
/// default: within it, a thief holding the old token and the client can each get tokens until the
/// window ends, when the next stale presentation revokes the family.
fn spend_for(state: &AppState, family: &GrantFamily, presented: i64, now: i64) -> Option<Spend> {
    if presented == family.generation {
        return Some(Spend::Refresh { family_id: family.family_id.clone(), generation: presented, presented });
    }
    let window = state.config.refresh_retry_window_secs;
    let retry = window > 0 && family.retry_generation == Some(presented) && family.rotated_at.is_some_and(|at| now - at <= window);
    if !retry {
        return None;
    }
    tracing::info!(client_id = %family.client_id, "rotated refresh token presented again within the retry window; answering as a retry");
    Some(Spend::Refresh { family_id: family.family_id.clone(), generation: family.generation, presented })
}

/// A rotated refresh token presented again: revoke its whole family (OAuth 2.0 Security BCP).
async fn refresh_reused(state: &AppState, family: &GrantFamily, now: i64) -> OAuthError {
    tracing::warn!(client_id = %family.client_id, "rotated refresh token reused; revoking its family");
    metrics::counter!("atsso_refresh_reuse_detected_total").increment(1);
    if let Err(error) = state.store.revoke_family(&family.family_id, now).await {
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
