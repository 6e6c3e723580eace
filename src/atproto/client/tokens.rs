//! The upstream session's tokens: refresh (rotated by the AS) and revoke, and the checks every
//! token response goes through.

use crate::atproto::http::Endpoint;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{unix_now, AtprotoClient};
use crate::atproto::dpop::DpopKey;
use crate::atproto::dpop_http::FormFields;
use crate::atproto::error::AtprotoError;
use crate::atproto::http::HttpResponse;

/// The longest upstream token lifetime we believe (a PDS can send any `expires_in`).
pub const MAX_EXPIRES_IN_SECS: u64 = 365 * 86400;

/// The upstream session, for the caller to store sealed.
#[derive(Clone, Serialize, Deserialize)]
pub struct UpstreamTokens {
    /// The account DID (`sub`).
    pub sub: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds; `None` when the AS gave no `expires_in`.
    pub expires_at: Option<u64>,
    pub scope: String,
    pub dpop_private_jwk: String,
    pub issuer: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub pds_url: String,
    /// The `client_id` the grant was obtained as (see [`AtprotoClient::client_id_for`]); absent
    /// in sessions stored before it was recorded, which used the configured scope's.
    #[serde(default)]
    pub client_id: Option<String>,
}

impl UpstreamTokens {
    /// The atproto permissions this grant holds (parsed from its `scope`).
    pub fn permissions(&self) -> Vec<crate::atproto::permission::Permission> {
        crate::atproto::permission::permissions_in(&self.scope)
    }
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("sub", &self.sub)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("issuer", &self.issuer)
            .field("pds_url", &self.pds_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
pub(super) struct TokenResponse {
    pub(super) access_token: String,
    pub(super) token_type: String,
    pub(super) expires_in: Option<u64>,
    pub(super) refresh_token: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) sub: Option<String>,
}

impl AtprotoClient {
    /// Use the refresh token (the AS rotates it: store the returned tokens, and serialize
    /// refreshes per upstream session).
    #[tracing::instrument(skip_all, fields(did = %tokens.sub))]
    pub async fn refresh(&self, tokens: &UpstreamTokens) -> Result<UpstreamTokens, AtprotoError> {
        let refresh_token = tokens.refresh_token.as_deref().ok_or_else(|| AtprotoError::InvalidInput("no refresh token".into()))?;
        let dpop = DpopKey::from_private_jwk_json(&tokens.dpop_private_jwk)?;
        let url = Url::parse(&tokens.token_endpoint).map_err(|_| AtprotoError::Config("bad stored token endpoint".into()))?;
        let client_id = tokens.client_id.clone().unwrap_or_else(|| self.client_id());
        let build = || -> Result<FormFields, AtprotoError> {
            let mut form = self.client_auth(&tokens.issuer, &client_id)?;
            form.extend([("grant_type", "refresh_token".to_string()), ("refresh_token", refresh_token.to_string())]);
            Ok(form)
        };
        let resp = self.dpop_http.request(Endpoint::Refresh, &dpop, &url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
        if !resp.is_success() {
            return Err(resp.upstream_error());
        }
        let token = parse_token_response(&resp)?;
        // Never more than we hold: the configured words we still ask for, and the atproto
        // permissions the grant was given for tenant apps.
        let requested = refresh_scope(&tokens.scope, &self.config.scope);
        let scope = held_scope(&requested, token.scope.as_deref())?;
        if let Some(sub) = &token.sub {
            if sub != &tokens.sub {
                return Err(AtprotoError::SubjectMismatch { expected: tokens.sub.clone(), got: sub.clone() });
            }
        }
        Ok(UpstreamTokens {
            sub: tokens.sub.clone(),
            access_token: token.access_token,
            refresh_token: token.refresh_token.or_else(|| tokens.refresh_token.clone()),
            expires_at: expires_at(unix_now(), token.expires_in),
            scope,
            dpop_private_jwk: tokens.dpop_private_jwk.clone(),
            issuer: tokens.issuer.clone(),
            token_endpoint: tokens.token_endpoint.clone(),
            revocation_endpoint: tokens.revocation_endpoint.clone(),
            pds_url: tokens.pds_url.clone(),
            client_id: tokens.client_id.clone(),
        })
    }

    /// Revoke the upstream grant (refresh token, then access token). `Ok` when the AS has no
    /// revocation endpoint (nothing to do; logged).
    #[tracing::instrument(skip_all, fields(did = %tokens.sub))]
    pub async fn revoke(&self, tokens: &UpstreamTokens) -> Result<(), AtprotoError> {
        let Some(endpoint) = &tokens.revocation_endpoint else {
            tracing::warn!("authorization server has no revocation endpoint");
            return Ok(());
        };
        let url = Url::parse(endpoint).map_err(|_| AtprotoError::Config("bad stored revocation endpoint".into()))?;
        let dpop = DpopKey::from_private_jwk_json(&tokens.dpop_private_jwk)?;
        let client_id = tokens.client_id.clone().unwrap_or_else(|| self.client_id());
        let mut to_revoke = Vec::new();
        if let Some(r) = &tokens.refresh_token {
            to_revoke.push((r.as_str(), "refresh_token"));
        }
        to_revoke.push((tokens.access_token.as_str(), "access_token"));
        for (token, hint) in to_revoke {
            let build = || -> Result<FormFields, AtprotoError> {
                let mut form = self.client_auth(&tokens.issuer, &client_id)?;
                form.push(("token", token.to_string()));
                form.push(("token_type_hint", hint.to_string()));
                Ok(form)
            };
            let resp = self.dpop_http.request(Endpoint::Revoke, &dpop, &url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
            if !resp.is_success() {
                return Err(resp.upstream_error());
            }
        }
        Ok(())
    }
}

pub(super) fn parse_token_response(resp: &HttpResponse) -> Result<TokenResponse, AtprotoError> {
    let token: TokenResponse = resp.json().map_err(|_| AtprotoError::InvalidResponse("token response is not valid JSON".into()))?;
    if !token.token_type.eq_ignore_ascii_case("DPoP") {
        return Err(AtprotoError::InvalidResponse(format!("token_type {} (DPoP required)", token.token_type)));
    }
    Ok(token)
}

/// What a refresh keeps of the `held` scope: its words the configured scope still has, plus its
/// atproto permissions (asked for by tenant apps, not configured).
fn refresh_scope(held: &str, configured: &str) -> String {
    let configured: std::collections::HashSet<&str> = configured.split_whitespace().collect();
    let mut kept: Vec<&str> = Vec::new();
    for word in held.split_whitespace() {
        let keep = configured.contains(word) || crate::atproto::permission::Permission::parse(word).is_ok();
        if keep && !kept.contains(&word) {
            kept.push(word);
        }
    }
    kept.join(" ")
}

/// The words of `wanted` that `offered` also has, in `wanted`'s order, without repeats.
fn intersect<'a>(wanted: &'a str, offered: &str) -> Vec<&'a str> {
    let offered: std::collections::HashSet<&str> = offered.split_whitespace().collect();
    let mut held: Vec<&str> = Vec::new();
    for s in wanted.split_whitespace() {
        if offered.contains(s) && !held.contains(&s) {
            held.push(s);
        }
    }
    held
}

/// The scope we hold after a token response: what we requested *and* were granted. A response
/// without `scope`, or whose scope lacks `atproto`, is refused (the atproto profile requires both).
pub(super) fn held_scope(requested: &str, granted: Option<&str>) -> Result<String, AtprotoError> {
    let granted = granted.ok_or_else(|| AtprotoError::ScopeNotGranted("token response without scope".into()))?;
    if !granted.split_whitespace().any(|s| s == "atproto") {
        return Err(AtprotoError::ScopeNotGranted("granted scope lacks atproto".into()));
    }
    let held = intersect(requested, granted);
    if !held.contains(&"atproto") {
        return Err(AtprotoError::ScopeNotGranted("atproto was not requested".into()));
    }
    Ok(held.join(" "))
}

/// Unix time at which a token with this `expires_in` expires: bounded by
/// [`MAX_EXPIRES_IN_SECS`], never overflowing.
pub(super) fn expires_at(now: u64, expires_in: Option<u64>) -> Option<u64> {
    expires_in.map(|s| now.saturating_add(s.min(MAX_EXPIRES_IN_SECS)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_keeps_the_configured_words_and_the_granted_permissions() {
        let held = "atproto transition:generic repo:com.example.note?action=create blob:image/*";
        assert_eq!(refresh_scope(held, "atproto"), "atproto repo:com.example.note?action=create blob:image/*");
        assert_eq!(refresh_scope(held, "atproto transition:generic"), held);
        assert_eq!(refresh_scope("atproto atproto", "atproto"), "atproto");
    }

    #[test]
    fn held_scope_is_requested_and_granted() {
        assert_eq!(held_scope("atproto", Some("atproto transition:email")).unwrap(), "atproto");
        assert_eq!(held_scope("atproto transition:email", Some("transition:email atproto")).unwrap(), "atproto transition:email");
        assert_eq!(held_scope("atproto transition:email", Some("atproto")).unwrap(), "atproto");
        assert_eq!(held_scope("atproto atproto", Some("  atproto  ")).unwrap(), "atproto");
        for (requested, granted) in
            [("atproto", None), ("atproto", Some("")), ("atproto", Some("transition:email")), ("transition:email", Some("atproto"))]
        {
            assert!(matches!(held_scope(requested, granted), Err(AtprotoError::ScopeNotGranted(_))), "{requested} / {granted:?}");
        }
    }

    #[test]
    fn expires_at_saturates_and_is_bounded() {
        assert_eq!(expires_at(1000, None), None);
        assert_eq!(expires_at(1000, Some(3600)), Some(4600));
        assert_eq!(expires_at(1000, Some(u64::MAX)), Some(1000 + MAX_EXPIRES_IN_SECS));
        assert_eq!(expires_at(1000, Some(i64::MAX as u64)), Some(1000 + MAX_EXPIRES_IN_SECS));
        assert_eq!(expires_at(u64::MAX - 1, Some(u64::MAX)), Some(u64::MAX));
    }
}
