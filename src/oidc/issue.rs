//! Minting tokens: ID token (RS256) and RFC 9068 access token (the client's algorithm: RS256 by
//! default, ES256 on opt-in) JWTs, and refresh tokens naming their grant family's generation
//! (`grant_token`).
use serde::Serialize;
use serde_json::{Map, Value};

use super::claims::user_claims;
use super::grant_token;
use crate::{
    clock::now,
    crypto::{at_hash, signing::Alg},
    error::OAuthError,
    state::AppState,
    store::{
        tokens::{GrantFamily, Spend},
        users::UserProfile,
    },
};

/// What a grant hands to the issuer.
#[derive(Clone)]
pub struct Grant<'a> {
    pub client_id: &'a str,
    /// The client's access-token algorithm (its own, or `ATSSO_ACCESS_TOKEN_ALG`).
    pub access_token_alg: Alg,
    pub did: &'a str,
    pub sid: &'a str,
    /// The scopes of the access and ID tokens (a refresh may narrow them).
    pub scopes: Vec<String>,
    /// The whole grant's scope (space-separated), which the new refresh token keeps: a narrower
    /// refresh narrows only the access token (RFC 6749 §6).
    pub granted_scope: &'a str,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    pub family_id: &'a str,
    /// When the family started (its code exchange); a refresh keeps it.
    pub family_created_at: i64,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub id_token: String,
    pub scope: String,
}

/// Mints the tokens of a grant, then spends the code (storing the new family) or moves the family
/// to the next generation, in one write. `None` when the code or generation was spent by a
/// concurrent request in the meantime, or the family revoked (nothing stored; the signatures are
/// discarded).
pub async fn issue_tokens(state: &AppState, grant: Grant<'_>, spend: Spend) -> Result<Option<TokenResponse>, OAuthError> {
    let config = &state.config;
    let issuer = config.issuer();
    let issued_at = now();
    let user = state.store.user(grant.did).await?.unwrap_or_else(|| UserProfile { did: grant.did.to_owned(), ..Default::default() });
    let scope = grant.scopes.join(" ");
    let generation = spend.next_generation();
    let jti = grant_token::access_token_jti(grant.family_id, generation);
    let access_expires = issued_at + config.access_token_ttl_secs;

    let mut access_claims = Map::new();
    access_claims.insert("iss".into(), issuer.clone().into());
    access_claims.insert("sub".into(), grant.did.into());
    access_claims.insert("aud".into(), grant.client_id.into());
    access_claims.insert("client_id".into(), grant.client_id.into());
    access_claims.insert("iat".into(), issued_at.into());
    access_claims.insert("exp".into(), access_expires.into());
    access_claims.insert("jti".into(), jti.into());
    access_claims.insert("scope".into(), scope.clone().into());
    access_claims.insert("sid".into(), grant.sid.into());
    access_claims.insert("auth_time".into(), grant.auth_time.into());

    // The user's claims are openidconnect's typed `StandardClaims` (with `sub`); the ID token's
    // own claims are added by hand rather than through `CoreIdTokenClaims`, which would change
    // what we publish: it always serializes `aud` as an array (ours is the client_id string, as
    // RPs written against Better Auth compare it), and its times are chrono `DateTime`s, a
    // dependency atsso has no other use for. `sid` and `auth_time` would be extra claims there too.
    let mut id_claims = user_claims(&grant.scopes, &user).map_err(|e| OAuthError::server_error(&e))?;
    id_claims.insert("iss".into(), issuer.into());
    id_claims.insert("aud".into(), grant.client_id.into());
    id_claims.insert("azp".into(), grant.client_id.into());
    id_claims.insert("iat".into(), issued_at.into());
    id_claims.insert("exp".into(), (issued_at + config.id_token_ttl_secs).into());
    id_claims.insert("auth_time".into(), grant.auth_time.into());
    id_claims.insert("sid".into(), grant.sid.into());
    if let Some(nonce) = grant.nonce {
        id_claims.insert("nonce".into(), Value::String(nonce.to_owned()));
    }

    let keys = state.keys.current();
    let access_alg = grant.access_token_alg;
    // RSA signing is CPU-bound: off the async executor threads, onto the signing threads.
    let (access_token, id_token) = crate::crypto::cpu_pool::run(move || {
        let access_token = keys.sign_at(access_alg, "at+jwt", access_claims, issued_at)?;
        id_claims.insert("at_hash".into(), at_hash(&access_token).into());
        let id_token = keys.sign_at(Alg::Rs256, "JWT", id_claims, issued_at)?;
        Ok::<_, crate::crypto::signing::SigningError>((access_token, id_token))
    })
    .await
    .map_err(|e| OAuthError::server_error(&e))?
    .map_err(|e| OAuthError::server_error(&e))?;

    let refresh_token = grant_token::refresh_token(&state.sealer, grant.family_id, generation);
    let (retry_generation, rotated_at) = match &spend {
        Spend::Code { .. } => (None, None),
        Spend::Refresh { presented, .. } => (Some(*presented), Some(issued_at)),
    };
    let family = GrantFamily {
        family_id: grant.family_id.to_owned(),
        client_id: grant.client_id.to_owned(),
        did: grant.did.to_owned(),
        sid: grant.sid.to_owned(),
        scope: grant.granted_scope.to_owned(),
        auth_time: grant.auth_time,
        created_at: grant.family_created_at,
        generation,
        retry_generation,
        rotated_at,
        expires_at: issued_at + config.refresh_token_ttl_secs,
        revoked_at: None,
    };
    if !state.store.spend_and_store(spend, issued_at, &family).await? {
        return Ok(None);
    }

    Ok(Some(TokenResponse { access_token, token_type: "Bearer", expires_in: config.access_token_ttl_secs, refresh_token, id_token, scope }))
}
