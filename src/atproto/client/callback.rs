//! The callback: check `state` and `iss`, exchange the code, make sure the issuer speaks for the
//! account, then read its profile (and email, when asked for).

use crate::atproto::http::Endpoint;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use url::Url;

use super::login::PendingLogin;
use super::tokens::{expires_at, held_scope, parse_token_response, UpstreamTokens};
use super::{unix_now, AtprotoClient};
use crate::atproto::dpop::DpopKey;
use crate::atproto::dpop_http::FormFields;
use crate::atproto::error::AtprotoError;
use crate::atproto::profile;
use crate::atproto::syntax::validate_did;
use crate::atproto::urls::origin_string;

/// Query parameters of `/atproto/callback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    pub did: String,
    /// Bidirectionally verified handle; `None` when it could not be verified.
    pub handle: Option<String>,
    pub pds_url: String,
    pub issuer: String,
    pub display_name: Option<String>,
    /// `{pds}/xrpc/com.atproto.sync.getBlob?did=..&cid=..`
    pub avatar: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
}

/// Outcome of a completed login.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub identity: UpstreamIdentity,
    pub session: UpstreamTokens,
}

impl AtprotoClient {
    /// Handle the callback: check `state` and `iss`, exchange the code, check `sub` and that the
    /// issuer is authoritative for it, then read the profile.
    #[tracing::instrument(skip_all)]
    pub async fn complete_login(&self, pending: &PendingLogin, params: &CallbackParams) -> Result<LoginResult, AtprotoError> {
        let state_ok = params.state.as_deref().map(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes()))).unwrap_or(false);
        if !state_ok {
            return Err(AtprotoError::StateMismatch);
        }
        if let Some(error) = &params.error {
            // RFC 9207: an error response carrying a foreign `iss` is not ours to trust either.
            if let Some(iss) = &params.iss {
                if iss != &pending.issuer {
                    return Err(AtprotoError::IssuerMismatch { expected: pending.issuer.clone(), got: Some(iss.clone()) });
                }
            }
            if error == "access_denied" {
                return Err(AtprotoError::AccessDenied(params.error_description.clone()));
            }
            return Err(AtprotoError::UpstreamError { status: 0, error: error.clone(), description: params.error_description.clone() });
        }
        if params.iss.as_deref() != Some(pending.issuer.as_str()) {
            return Err(AtprotoError::IssuerMismatch { expected: pending.issuer.clone(), got: params.iss.clone() });
        }
        let code = params.code.as_deref().ok_or_else(|| AtprotoError::InvalidResponse("callback without code".into()))?;
        let dpop = DpopKey::from_private_jwk_json(&pending.dpop_private_jwk)?;
        let as_info = &pending.as_metadata;

        let client_id = pending.client_id.clone().unwrap_or_else(|| self.client_id());
        let token_url = Url::parse(&as_info.token_endpoint).map_err(|_| AtprotoError::HostileMetadata("bad token endpoint".into()))?;
        let build = || -> Result<FormFields, AtprotoError> {
            let mut form = self.client_auth(&pending.issuer, &client_id)?;
            form.extend([
                ("grant_type", "authorization_code".to_string()),
                ("code", code.to_string()),
                ("redirect_uri", pending.redirect_uri.clone()),
                ("code_verifier", pending.pkce_verifier.clone()),
            ]);
            Ok(form)
        };
        let resp = self.dpop_http.request(Endpoint::Token, &dpop, &token_url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
        if !resp.is_success() {
            return Err(resp.upstream_error());
        }
        let token = parse_token_response(&resp)?;
        // Only what we asked for counts: a grant of more (say `transition:email` when we asked
        // for `atproto`) is ignored, and a grant without `atproto` is no sign-in at all.
        let scope = held_scope(&pending.scope, token.scope.as_deref())?;
        let sub = token.sub.clone().ok_or_else(|| AtprotoError::InvalidResponse("token response without sub".into()))?;
        validate_did(&sub).map_err(|_| AtprotoError::InvalidResponse("token sub is not a valid DID".into()))?;
        if let Some(expected) = &pending.expected_did {
            if expected != &sub {
                return Err(AtprotoError::SubjectMismatch { expected: expected.clone(), got: sub });
            }
        }

        // Mix-up defence: the account's own PDS must name this issuer.
        let identity = self.resolver.resolve_from_did(&sub).await?;
        let authoritative = self.metadata.authorization_server_of(&identity.pds_url).await?;
        if authoritative != pending.issuer {
            return Err(AtprotoError::NotAuthoritative(format!("{sub}'s PDS names {authoritative}, not {}", pending.issuer)));
        }
        let pds_url = origin_string(&identity.pds_url);

        let prof = match profile::fetch_profile(&self.dpop_http, &dpop, &identity.pds_url, &sub, &token.access_token).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(did = %sub, error = %e, "profile not available");
                profile::Profile::default()
            }
        };
        let wants_email =
            scope.split_whitespace().any(|s| s == "transition:email" || s == "account:email" || s.starts_with("account:email?"));
        let (email, email_verified) = if wants_email {
            match profile::fetch_email(&self.dpop_http, &dpop, &identity.pds_url, &sub, &token.access_token).await {
                Ok((email, confirmed)) if self.vouches_for_email(&pending.issuer) => (email, confirmed),
                Ok((email, _)) => {
                    tracing::debug!(did = %sub, issuer = %pending.issuer, "email issuer not trusted: email passed on unverified");
                    let unverified = email.as_ref().map(|_| false);
                    (email, unverified)
                }
                Err(e) => {
                    tracing::warn!(did = %sub, error = %e, "email not available");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };

        tracing::info!(did = %sub, issuer = %pending.issuer, "ATProto login completed");
        Ok(LoginResult {
            identity: UpstreamIdentity {
                did: sub.clone(),
                handle: identity.handle,
                pds_url: pds_url.clone(),
                issuer: pending.issuer.clone(),
                display_name: prof.display_name,
                avatar: prof.avatar,
                email,
                email_verified,
            },
            session: UpstreamTokens {
                sub,
                access_token: token.access_token,
                refresh_token: token.refresh_token,
                expires_at: expires_at(unix_now(), token.expires_in),
                scope,
                dpop_private_jwk: pending.dpop_private_jwk.clone(),
                issuer: pending.issuer.clone(),
                token_endpoint: as_info.token_endpoint.clone(),
                revocation_endpoint: as_info.revocation_endpoint.clone(),
                pds_url,
                client_id: Some(client_id),
            },
        })
    }
}
