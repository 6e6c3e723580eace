//! The authorization endpoint's decisions (OIDC Core §3.1.2, RFC 6749 §4.1, RFC 7636, RFC 9207).
//! Handlers turn the typed outcome into redirects and pages.
use serde::{Deserialize, Serialize};
use url::Url;

use super::{claims::SUPPORTED_SCOPES, params::Params};
use crate::{
    atproto::permission::{self, Permission, TENANT_SCOPE_PREFIX},
    clock::now,
    config::{AUTHORIZATION_CODE_TTL_SECS, AUTHORIZATION_REQUEST_TTL_SECS},
    crypto::{random_token, sha256_b64},
    error::{ErrorCode, OAuthError},
    state::AppState,
    store::{clients::Client, grants::AuthorizationCode, sessions::SsoSession, StoreError},
};

/// A validated authorization request, stored while the user logs in or consents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_none: bool,
    pub prompt_consent: bool,
    /// The user must have authenticated at or after this time (prompt=login, max_age).
    pub min_auth_time: Option<i64>,
}

impl AuthorizationRequest {
    /// The atproto permissions asked for (the `atproto:` scopes), canonical, without the prefix.
    pub fn upstream_permissions(&self) -> Vec<String> {
        self.scopes.iter().filter_map(|s| s.strip_prefix(TENANT_SCOPE_PREFIX)).map(String::from).collect()
    }
}

/// How the user's upstream grant stands against what the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamAsk {
    /// The grant is what it was: ask the user's PDS for what is missing (step-up).
    MayStepUp,
    /// The user's PDS was just asked for this request: what it granted is what counts (users may
    /// grant less), so missing permissions are dropped from the request, not asked for again.
    JustAsked,
}
/// Where the user goes next.
#[derive(Debug)]
pub enum Outcome {
    /// Back to the client (with a code or an error).
    Redirect(String),
    /// The user must sign in; the request waits under this id.
    Login { request_id: String },
    /// The user must approve the client; the request waits under this id.
    Consent { request_id: String },
    /// The app asks for atproto permissions the user's upstream grant lacks: the user goes
    /// through their PDS again (step-up); the request waits under this id.
    StepUp { request_id: String },
}

/// A request that cannot be answered at the client's redirect URI (unknown client, unregistered
/// redirect URI, ...): the person in front of the browser is told why; the client is never
/// redirected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub title: String,
    pub message: String,
}

#[derive(Debug)]
pub enum AuthorizeError {
    /// Before the redirect URI is trusted: told to the person, never redirected.
    Refused(Refusal),
    /// Redirect the error to the client (the redirect URI is registered).
    Redirect(String),
    /// Our own failure (storage); the cause is for the log only.
    Internal(String),
    /// The database is out of reach (503, try again).
    Unavailable(String),
}

impl AuthorizeError {
    fn refused(title: &str, message: impl Into<String>) -> Self {
        Self::Refused(Refusal { title: title.to_owned(), message: message.into() })
    }
}

impl From<StoreError> for AuthorizeError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Self::Unavailable(err.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Builds `redirect_uri?...` with the given parameters plus `state` and `iss` (RFC 9207).
pub fn redirect_with(redirect_uri: &str, issuer: &str, state: Option<&str>, pairs: &[(&str, &str)]) -> String {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in pairs {
            query.append_pair(key, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    url.into()
}

pub fn error_redirect(issuer: &str, request: &AuthorizationRequest, code: ErrorCode, description: &str) -> String {
    redirect_with(&request.redirect_uri, issuer, request.state.as_deref(), &[("error", code.as_str()), ("error_description", description)])
}

fn is_pkce_challenge(text: &str) -> bool {
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates the request. Unknown client / redirect URI → page; the rest → redirect.
pub async fn validate(state: &AppState, params: &Params) -> Result<(AuthorizationRequest, Client), AuthorizeError> {
    let page = |title: &str, message: &str| AuthorizeError::refused(title, message);
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("Missing app identifier", "The app that sent you here did not say who it is (client_id is missing)."))?;
    let client = match state.store.client(client_id).await? {
        Some(client) if client.enabled => client,
        Some(_) => return Err(page("App disabled", "This app has been disabled by the administrator.")),
        None => return Err(page("Unknown app", "The app that sent you here is not registered with this sign-in service.")),
    };
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| page("Missing redirect address", "The app did not say where to return you (redirect_uri is missing)."))?;
    if !client.redirect_uris.iter().any(|registered| registered == redirect_uri) {
        return Err(page(
            "Unregistered redirect address",
            "The app asked to send you to an address it has not registered. For your safety you were not redirected.",
        ));
    }

    let issuer = state.config.issuer();
    let mut request = AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scopes: Vec::new(),
        state: params.get("state").map(String::from),
        nonce: params.get("nonce").map(String::from),
        code_challenge: None,
        prompt_none: false,
        prompt_consent: false,
        min_auth_time: None,
    };
    let fail = |request: &AuthorizationRequest, code: ErrorCode, description: &str| {
        AuthorizeError::Redirect(error_redirect(&issuer, request, code, description))
    };

    if params.contains("request") {
        return Err(fail(&request, ErrorCode::RequestNotSupported, "request objects are not supported"));
    }
    if params.contains("request_uri") {
        return Err(fail(&request, ErrorCode::RequestUriNotSupported, "request_uri is not supported"));
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => return Err(fail(&request, ErrorCode::UnsupportedResponseType, "only response_type=code is supported")),
        None => return Err(fail(&request, ErrorCode::InvalidRequest, "response_type is required")),
    }
    if params.get("response_mode").is_some_and(|mode| mode != "query") {
        return Err(fail(&request, ErrorCode::InvalidRequest, "only response_mode=query is supported"));
    }

    let scope = params.get("scope").unwrap_or("");
    let mut scopes: Vec<String> = Vec::new();
    let allowed_permissions = super::clients::allowed_atproto_permissions(&client);
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if let Some(parsed) = permission::from_tenant_scope(s) {
            let permission = parsed.map_err(|e| fail(&request, ErrorCode::InvalidScope, &format!("scope `{s}`: {e}")))?;
            if !permission::covers(&allowed_permissions, &permission) {
                return Err(fail(&request, ErrorCode::InvalidScope, &format!("scope `{s}` is not available to this client")));
            }
            let canonical = permission.to_tenant_scope();
            if !scopes.contains(&canonical) {
                scopes.push(canonical);
            }
            continue;
        }
        if !SUPPORTED_SCOPES.contains(&s) || !client.allowed_scopes.iter().any(|a| a == s) {
            return Err(fail(&request, ErrorCode::InvalidScope, &format!("scope `{s}` is not available to this client")));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    if !scopes.iter().any(|s| s == "openid") {
        return Err(fail(&request, ErrorCode::InvalidScope, "scope must include openid"));
    }
    request.scopes = scopes;

    match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (Some(challenge), Some("S256")) => {
            if !is_pkce_challenge(challenge) {
                return Err(fail(&request, ErrorCode::InvalidRequest, "code_challenge must be a base64url SHA-256 digest"));
            }
            request.code_challenge = Some(challenge.to_owned());
        }
        (Some(_), _) => return Err(fail(&request, ErrorCode::InvalidRequest, "code_challenge_method must be S256")),
        (None, Some(_)) => return Err(fail(&request, ErrorCode::InvalidRequest, "code_challenge is missing")),
        (None, None) if client.pkce_required() => {
            return Err(fail(&request, ErrorCode::InvalidRequest, "PKCE is required: send code_challenge with code_challenge_method=S256"));
        }
        (None, None) => {}
    }

    if let Some(prompt) = params.get("prompt") {
        let values: Vec<&str> = prompt.split(' ').filter(|s| !s.is_empty()).collect();
        for value in &values {
            match *value {
                "none" => request.prompt_none = true,
                "login" => request.min_auth_time = Some(now()),
                "consent" => request.prompt_consent = true,
                "select_account" => {}
                other => return Err(fail(&request, ErrorCode::InvalidRequest, &format!("unsupported prompt value `{other}`"))),
            }
        }
        if request.prompt_none && values.len() > 1 {
            return Err(fail(&request, ErrorCode::InvalidRequest, "prompt=none cannot be combined with other values"));
        }
    }
    if let Some(max_age) = params.get("max_age") {
        let seconds: i64 = max_age
            .parse()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| fail(&request, ErrorCode::InvalidRequest, "max_age must be a non-negative integer"))?;
        let bound = now() - seconds;
        request.min_auth_time = Some(request.min_auth_time.map_or(bound, |t| t.max(bound)));
    }
    Ok((request, client))
}

/// Decides the next step for a validated request and the browser's session (if any).
pub async fn decide(
    state: &AppState,
    request: &AuthorizationRequest,
    client: &Client,
    session: Option<&SsoSession>,
    request_id: Option<&str>,
    upstream: UpstreamAsk,
) -> Result<Outcome, AuthorizeError> {
    let issuer = state.config.issuer();
    let session = session.filter(|s| request.min_auth_time.is_none_or(|min| s.auth_time >= min));
    let Some(session) = session else {
        if request.prompt_none {
            return Ok(Outcome::Redirect(error_redirect(&issuer, request, ErrorCode::LoginRequired, "the user is not signed in")));
        }
        let request_id = park(state, request, request_id).await?;
        return Ok(Outcome::Login { request_id });
    };

    if !client.first_party {
        let granted = state.store.consented_scopes(&session.did, &client.client_id).await?;
        let covered = request.scopes.iter().all(|s| granted.contains(s));
        if !covered || request.prompt_consent {
            if request.prompt_none {
                return Ok(Outcome::Redirect(error_redirect(
                    &issuer,
                    request,
                    ErrorCode::ConsentRequired,
                    "the user has not approved this app",
                )));
            }
            let request_id = park(state, request, request_id).await?;
            return Ok(Outcome::Consent { request_id });
        }
    }
    // Narrowed (a copy) only when the PDS granted less than the app asked for.
    let mut request = std::borrow::Cow::Borrowed(request);
    let wanted = request.upstream_permissions();
    if !wanted.is_empty() {
        let held = crate::sso::upstream::upstream_permissions(state, &session.sid).await?.unwrap_or_default();
        let missing: Vec<String> =
            wanted.iter().filter(|w| Permission::parse(w).is_ok_and(|p| !permission::covers(&held, &p))).cloned().collect();
        if !missing.is_empty() {
            match upstream {
                UpstreamAsk::JustAsked => {
                    tracing::info!(missing = missing.len(), "the user granted fewer atproto permissions than the app asked for");
                    request.to_mut().scopes.retain(|s| s.strip_prefix(TENANT_SCOPE_PREFIX).is_none_or(|p| !missing.iter().any(|m| m == p)));
                }
                UpstreamAsk::MayStepUp if request.prompt_none => {
                    return Ok(Outcome::Redirect(error_redirect(
                        &issuer,
                        &request,
                        ErrorCode::InteractionRequired,
                        "the app asks for atproto permissions the user has not granted at their PDS",
                    )));
                }
                UpstreamAsk::MayStepUp => {
                    let request_id = park(state, &request, request_id).await?;
                    return Ok(Outcome::StepUp { request_id });
                }
            }
        }
    }
    if let Some(id) = request_id {
        state.store.delete_authorization_request(id).await?;
    }
    Ok(Outcome::Redirect(issue_code(state, &request, session).await?))
}

/// Stores the request (or keeps the already stored one) and returns its id.
async fn park(state: &AppState, request: &AuthorizationRequest, existing: Option<&str>) -> Result<String, AuthorizeError> {
    if let Some(id) = existing {
        return Ok(id.to_owned());
    }
    let id = random_token(24);
    let json = serde_json::to_string(request).map_err(|e| AuthorizeError::Internal(e.to_string()))?;
    let created = now();
    state.store.insert_authorization_request(&id, &request.client_id, json, created, created + AUTHORIZATION_REQUEST_TTL_SECS).await?;
    Ok(id)
}

/// Loads a parked request; None when it is unknown or expired.
pub async fn load_parked(state: &AppState, request_id: &str) -> Result<Option<(AuthorizationRequest, Client)>, AuthorizeError> {
    let Some((json, _created)) = state.store.authorization_request(request_id, now()).await? else {
        return Ok(None);
    };
    let request: AuthorizationRequest = serde_json::from_str(&json).map_err(|e| AuthorizeError::Internal(e.to_string()))?;
    match state.store.client(&request.client_id).await? {
        Some(client) if client.enabled => Ok(Some((request, client))),
        _ => Ok(None),
    }
}

/// Mints a single-use code (stored hashed) and returns the client redirect carrying it.
pub async fn issue_code(state: &AppState, request: &AuthorizationRequest, session: &SsoSession) -> Result<String, AuthorizeError> {
    let code = random_token(32);
    let created = now();
    state
        .store
        .insert_code(&AuthorizationCode {
            code_hash: sha256_b64(&code),
            family_id: random_token(16),
            client_id: request.client_id.clone(),
            did: session.did.clone(),
            sid: session.sid.clone(),
            redirect_uri: request.redirect_uri.clone(),
            scope: request.scopes.join(" "),
            nonce: request.nonce.clone(),
            code_challenge: request.code_challenge.clone(),
            auth_time: session.auth_time,
            created_at: created,
            expires_at: created + AUTHORIZATION_CODE_TTL_SECS,
            used_at: None,
        })
        .await?;
    Ok(redirect_with(&request.redirect_uri, &state.config.issuer(), request.state.as_deref(), &[("code", &code)]))
}

/// The user declined on the consent page.
/// The user approved the client on the consent page: remember it, then continue the parked
/// request (to the client with a code).
pub async fn approve(
    state: &AppState,
    request_id: &str,
    mut request: AuthorizationRequest,
    client: &Client,
    session: &SsoSession,
) -> Result<Outcome, AuthorizeError> {
    state.store.save_consent(&session.did, &client.client_id, &request.scopes, now()).await?;
    request.prompt_consent = false;
    decide(state, &request, client, Some(session), Some(request_id), UpstreamAsk::MayStepUp).await
}

/// The user said no (on our consent page, or at their PDS): the parked request is dropped and
/// the client learns `access_denied` at its redirect URI.
pub async fn deny(state: &AppState, request_id: &str, request: &AuthorizationRequest, description: &str) -> Result<String, AuthorizeError> {
    state.store.delete_authorization_request(request_id).await?;
    Ok(error_redirect(&state.config.issuer(), request, ErrorCode::AccessDenied, description))
}

impl From<OAuthError> for AuthorizeError {
    fn from(err: OAuthError) -> Self {
        Self::refused("Request refused", err.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_existing_query_and_adds_iss() {
        let url = redirect_with("https://app.example/cb?x=1", "https://sso.example", Some("s t"), &[("code", "abc")]);
        assert_eq!(url, "https://app.example/cb?x=1&code=abc&state=s+t&iss=https%3A%2F%2Fsso.example");
    }

    #[test]
    fn pkce_challenge_shape() {
        assert!(is_pkce_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!is_pkce_challenge("short"));
        assert!(!is_pkce_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGEu6GjDX="));
    }
}
