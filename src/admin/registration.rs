//! OAuth 2.0 Dynamic Client Registration (RFC 7591), behind `ATSSO_DYNAMIC_REGISTRATION=true`
//! and an initial access token (`atsso admin-tokens create --name N --registration`).
//! Clients registered this way are never first-party (they always see the consent page), and
//! their logout URIs must be public https targets: we make requests to them (back-channel) or
//! have browsers load them (front-channel), so loopback and private addresses are refused here
//! and again at delivery.
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audit, Actor};
use crate::{
    oidc::clients::{NewClient, RegistrationError},
    state::AppState,
};

/// Client metadata we understand; other metadata is ignored (RFC 7591 §2).
#[derive(Debug, Default, Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub scope: Option<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    /// Not an RFC 7591 member (no standard one exists for access tokens; named after OIDC
    /// Registration's `id_token_signed_response_alg`): `RS256` or `ES256`; absent follows
    /// `ATSSO_ACCESS_TOKEN_ALG`.
    pub access_token_signed_response_alg: Option<String>,
}

/// RFC 7591 §3.2.2 error.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {description}")]
pub struct RegistrationRefused {
    pub code: &'static str,
    pub description: String,
}

fn metadata_error(description: impl Into<String>) -> RegistrationRefused {
    RegistrationRefused { code: "invalid_client_metadata", description: description.into() }
}

/// A logout URI of a dynamically registered client: https to a public host (the SSRF guard's
/// pre-flight rules: no loopback or private literal, no `localhost` names, no single-label
/// hosts, no credentials). Names are checked again after DNS resolution at delivery.
fn check_logout_uri(field: &'static str, uri: Option<&str>) -> Result<(), RegistrationRefused> {
    let Some(uri) = uri else {
        return Ok(());
    };
    let url = url::Url::parse(uri).map_err(|_| metadata_error(format!("{field}: not an absolute URL")))?;
    crate::atproto::http::check_url(&url, false).map_err(|e| {
        let reason = match e {
            crate::atproto::http::HttpError::Forbidden(reason) => reason,
            other => format!("{other:?}"),
        };
        metadata_error(format!("{field}: must be an https URL of a public host ({reason})"))
    })
}

pub async fn register(state: &AppState, actor: &Actor, request: RegistrationRequest) -> Result<Value, RegistrationRefused> {
    let public = match request.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic") {
        "client_secret_basic" | "client_secret_post" => false,
        "none" => true,
        other => return Err(metadata_error(format!("token_endpoint_auth_method `{other}` is not supported"))),
    };
    if let Some(bad) = request.grant_types.iter().flatten().find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token")) {
        return Err(metadata_error(format!("grant type `{bad}` is not supported")));
    }
    if let Some(bad) = request.response_types.iter().flatten().find(|r| r.as_str() != "code") {
        return Err(metadata_error(format!("response type `{bad}` is not supported")));
    }
    check_logout_uri("backchannel_logout_uri", request.backchannel_logout_uri.as_deref())?;
    check_logout_uri("frontchannel_logout_uri", request.frontchannel_logout_uri.as_deref())?;
    let name = request
        .client_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("Dynamic client {}", crate::crypto::random_token(6)));
    let new = NewClient {
        name,
        redirect_uris: request.redirect_uris,
        post_logout_redirect_uris: request.post_logout_redirect_uris,
        backchannel_logout_uri: request.backchannel_logout_uri,
        frontchannel_logout_uri: request.frontchannel_logout_uri,
        public,
        first_party: false,
        scopes: request.scope.map(|s| s.split(' ').filter(|s| !s.is_empty()).map(String::from).collect()),
        // Dynamic registration never exempts a client from PKCE: only an admin can.
        allow_no_pkce: false,
        access_token_alg: request.access_token_signed_response_alg,
        // Upstream ATProto permissions are allowed per client by an admin (issue 16), never by
        // whoever holds a registration token: a dynamically registered client gets none (an
        // admin can add some later), and `atproto:` scopes in `scope` are refused as unsupported.
        atproto_scopes: Vec::new(),
    };
    let (client, secret) = match crate::oidc::clients::register_dynamic(&state.store, new).await {
        Ok(registered) => registered,
        Err(RegistrationError::Invalid(fields)) => {
            let code = if fields.0.keys().any(|f| f.contains("redirect_uri")) { "invalid_redirect_uri" } else { "invalid_client_metadata" };
            // The field as this request named it.
            let description = fields.to_string().replace("access_token_alg:", "access_token_signed_response_alg:");
            return Err(RegistrationRefused { code, description });
        }
        Err(RegistrationError::DuplicateName) => return Err(metadata_error("client_name is already in use")),
        Err(other) => {
            let error_id = crate::error::log_internal(&other);
            return Err(RegistrationRefused { code: "server_error", description: format!("internal error (reference {error_id})") });
        }
    };
    audit::record(&state.store, actor, "client.register_dynamic", Some(&client.client_id), Some(format!("name={}", client.name))).await;
    let mut body = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": if public { "none" } else { "client_secret_basic" },
        "scope": client.allowed_scopes.join(" "),
        // What the client will get: its own choice, or the global setting.
        "access_token_signed_response_alg": client.access_token_alg_or(state.config.access_token_alg).as_str(),
    });
    if let Some(uri) = &client.backchannel_logout_uri {
        body["backchannel_logout_uri"] = json!(uri);
    }
    if let Some(uri) = &client.frontchannel_logout_uri {
        body["frontchannel_logout_uri"] = json!(uri);
    }
    if let Some(secret) = secret {
        body["client_secret"] = json!(secret);
        body["client_secret_expires_at"] = json!(0);
    }
    Ok(body)
}
