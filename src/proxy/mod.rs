//! The permissioned XRPC proxy: a tenant app calls `/xrpc/{nsid}` with its atsso access token,
//! atsso checks the call against the atproto permissions the user granted that app
//! ([`check`]), then calls the user's PDS with the upstream DPoP-bound session. The upstream
//! token and DPoP key never leave atsso (the atproto OAuth spec forbids sharing them).
//!
//! Plain functions; `web::xrpc` is the HTTP glue and maps [`ProxyError`] to responses once.

pub mod check;

use crate::{
    atproto::AtprotoError,
    audit::{self, Actor},
    clock::now,
    oidc::access::validate_access_token,
    sso::upstream::{upstream_grant, upstream_tokens, UpstreamGrant},
    state::AppState,
    store::{tokens::AccessTokenRecord, StoreError},
};

pub use check::{authorize_call, token_permissions, ForwardedCall, WriteSummary, XrpcCall};

/// Why a proxied call was refused or failed. `web::xrpc` turns each into one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Bad, expired or revoked access token (401).
    #[error("the access token is invalid, expired or revoked")]
    InvalidToken,
    /// Malformed call: method name, body, headers (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// The app lacks a permission; `required` is the tenant scope that would allow it (403).
    #[error("this call needs the permission {required}, which the user has not granted this app")]
    InsufficientScope { required: String },
    /// The request body is over `ATSSO_XRPC_MAX_BODY_BYTES` (413).
    #[error("the request body is larger than {max} bytes")]
    BodyTooLarge { max: usize },
    /// Over `ATSSO_XRPC_RATE_PER_MINUTE` for this app and user (429).
    #[error("too many calls for this app and user; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The SSO session is over (logged out, or the PDS refused the upstream grant and it was
    /// ended with single logout), or it has no upstream grant (401).
    #[error("the sign-in session has ended; sign in again")]
    SessionEnded,
    /// The upstream grant could not be confirmed just now; nothing was ended (503).
    #[error("the user's PDS cannot be reached just now; try again shortly")]
    Unavailable,
    /// The PDS refused our (fresh) upstream token (502).
    #[error("the user's PDS refused atsso's session")]
    UpstreamAuth,
    /// The PDS could not be called or answered badly (502).
    #[error("calling the user's PDS failed: {0}")]
    Upstream(AtprotoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProxyError {
    /// A fixed name of the outcome (the `outcome` label of `atsso_xrpc_proxy_requests_total`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::BodyTooLarge { .. } => "too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::SessionEnded => "session_ended",
            Self::Unavailable => "unavailable",
            Self::UpstreamAuth | Self::Upstream(_) => "bad_gateway",
            Self::Store(_) => "store_error",
        }
    }
}

/// The PDS's answer, passed to the app as is (status, content type, XRPC error body).
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: u16,
    /// Headers passed back (`content-type`, `atproto-content-labelers`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

const PASSED_BACK_HEADERS: &[&str] = &["content-type", "atproto-content-labelers"];

/// Counts one call by outcome: `ok` (PDS 2xx), `upstream_error` (PDS error passed through), or
/// the refusal's [`ProxyError::kind`].
pub fn observe(result: Result<&UpstreamResponse, &ProxyError>) {
    let outcome = match result {
        Ok(resp) if (200..300).contains(&resp.status) => "ok",
        Ok(_) => "upstream_error",
        Err(e) => e.kind(),
    };
    metrics::counter!("atsso_xrpc_proxy_requests_total", "outcome" => outcome).increment(1);
}

/// The app's access token, and its allowance under the rate limit of its (client, user) pair.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AccessTokenRecord, ProxyError> {
    let record = validate_access_token(state, token).await?.ok_or(ProxyError::InvalidToken)?;
    state
        .limits
        .xrpc
        .check(&(record.client_id.clone(), record.did.clone()))
        .map_err(|limited| ProxyError::RateLimited { retry_after_secs: limited.retry_after_secs() })?;
    Ok(record)
}

/// A call of an authenticated app: its permissions, then the PDS. `remote_addr` goes to the
/// audit log.
pub async fn proxy_call(
    state: &AppState,
    record: &AccessTokenRecord,
    call: XrpcCall,
    remote_addr: Option<String>,
) -> Result<UpstreamResponse, ProxyError> {
    let forwarded = authorize_call(&token_permissions(&record.scope), &record.did, call)?;
    forward(state, record, forwarded, remote_addr).await
}

/// Calls the user's PDS for an allowed call: the upstream grant is refreshed first when due
/// (one refresh at a time across nodes); a refused refresh has ended the SSO session.
pub async fn forward(
    state: &AppState,
    record: &AccessTokenRecord,
    call: ForwardedCall,
    remote_addr: Option<String>,
) -> Result<UpstreamResponse, ProxyError> {
    if state.store.live_session(&record.sid, now()).await?.is_none() {
        return Err(ProxyError::SessionEnded);
    }
    match upstream_grant(state, &record.sid).await? {
        UpstreamGrant::Usable => {}
        UpstreamGrant::Unavailable => return Err(ProxyError::Unavailable),
        UpstreamGrant::Ended => return Err(ProxyError::SessionEnded),
    }
    let tokens = upstream_tokens(state, &record.sid).await?.ok_or(ProxyError::SessionEnded)?;
    if tokens.sub != record.did {
        tracing::error!("the upstream session is for another account than the access token");
        return Err(ProxyError::Upstream(AtprotoError::SubjectMismatch { expected: record.did.clone(), got: tokens.sub }));
    }
    let resp = state.atproto.xrpc(&tokens, &call.request).await.map_err(ProxyError::Upstream)?;
    if let Some(write) = &call.write {
        let details = format!("client={} method={} {} status={}", record.client_id, write.method, write.subject, resp.status);
        audit::record(&state.store, &Actor::new(&record.did, remote_addr), "xrpc.write", Some(&record.client_id), Some(details)).await;
    }
    if resp.status == 401 {
        // Our token was fresh by its expiry; the PDS says otherwise (revoked there, or its
        // keys changed). Not the app's fault: a gateway error. Whether the grant is over is
        // decided by the next refresh, which ends the session if the PDS refuses it.
        tracing::warn!(error = ?resp.oauth_error().map(|(e, _)| e), "the PDS refused the upstream token");
        return Err(ProxyError::UpstreamAuth);
    }
    let headers = PASSED_BACK_HEADERS.iter().filter_map(|name| resp.header(name).map(|value| (*name, value.to_owned()))).collect();
    Ok(UpstreamResponse { status: resp.status, headers, body: resp.body })
}
