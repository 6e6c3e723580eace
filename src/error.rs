//! Errors as the outside world sees them, mapped in exactly one place:
//! - `OAuthError`: RFC 6749 JSON errors (token, revocation, introspection), with protocol headers;
//! - `BearerError`: RFC 6750 errors for the userinfo endpoint;
//! - `PageError`: a readable HTML page for people.
//!
//! Internal causes are logged with an error id; only the id reaches the client. How each becomes
//! an HTTP response (status, protocol headers, JSON or page) is `web::errors`.
use http::StatusCode;

/// RFC 6749 / OIDC error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    InvalidToken,
    InsufficientScope,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

/// Logs an internal failure and returns the id to show instead of the cause.
pub fn log_internal(cause: &dyn std::fmt::Display) -> String {
    let error_id = crate::crypto::random_token(6);
    tracing::error!(%error_id, error = %cause, "internal error");
    error_id
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// Set when the client tried HTTP Basic authentication (RFC 6749 §5.2: 401 + challenge).
    pub basic_challenge: bool,
    /// Seconds for `Retry-After` on 429 (rate limited) and 503 (busy) answers.
    pub retry_after: Option<u64>,
    /// Over an abuse limit: 429 instead of 503 for `temporarily_unavailable`.
    pub rate_limited: bool,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into(), basic_challenge: false, retry_after: None, rate_limited: false }
    }
    /// Over an abuse limit: 429, `temporarily_unavailable`, `Retry-After`.
    pub fn rate_limited(limited: crate::limits::Limited) -> Self {
        let mut err = Self::new(ErrorCode::TemporarilyUnavailable, "too many requests; try again later");
        err.retry_after = Some(limited.retry_after_secs());
        err.rate_limited = true;
        err
    }
    /// Momentarily overloaded: 503, `temporarily_unavailable`, `Retry-After`.
    pub fn busy(description: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut err = Self::new(ErrorCode::TemporarilyUnavailable, description);
        err.retry_after = Some(retry_after_secs);
        err
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }
    pub fn server_error(cause: &dyn std::fmt::Display) -> Self {
        let error_id = log_internal(cause);
        Self::new(ErrorCode::ServerError, format!("internal error (reference {error_id})"))
    }
}

/// Seconds a client is asked to wait while the database is out of reach.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// The database is out of reach: logged once per request as a warning (no reference: it is not
/// a bug), answered 503 with Retry-After by each error type below.
fn log_unavailable(cause: &dyn std::fmt::Display) {
    tracing::warn!(%cause, "database unavailable; answering 503");
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(cause) => {
                log_unavailable(&cause);
                Self::busy("the service is briefly unavailable; try again shortly", UNAVAILABLE_RETRY_AFTER_SECS)
            }
            other => Self::server_error(&other),
        }
    }
}

/// RFC 6750 bearer-token errors (userinfo).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct BearerError {
    pub code: ErrorCode,
    pub description: String,
}

impl BearerError {
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self { code: ErrorCode::InvalidToken, description: description.into() }
    }

    pub fn server_error(cause: &dyn std::fmt::Display) -> Self {
        let error_id = log_internal(cause);
        Self { code: ErrorCode::ServerError, description: format!("internal error (reference {error_id})") }
    }
}

impl From<crate::store::StoreError> for BearerError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(cause) => {
                log_unavailable(&cause);
                Self {
                    code: ErrorCode::TemporarilyUnavailable,
                    description: "the service is briefly unavailable; try again shortly".into(),
                }
            }
            other => Self::server_error(&other),
        }
    }
}

/// An error shown to a person as a page.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{title}: {message}")]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub error_id: Option<String>,
    /// Seconds for `Retry-After` (rate limited).
    pub retry_after: Option<u64>,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, title: title.into(), message: message.into(), error_id: None, retry_after: None }
    }
    /// Over an abuse limit: a 429 page with `Retry-After`.
    pub fn rate_limited(limited: crate::limits::Limited) -> Self {
        let seconds = limited.retry_after_secs();
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            format!("Too many requests came from your network. Please wait {seconds} seconds and try again."),
        );
        err.retry_after = Some(seconds);
        err
    }
    pub fn bad_request(title: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, title, message)
    }
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let error_id = log_internal(cause);
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Something went wrong".into(),
            message: "The sign-in service ran into a problem. Please try again in a moment.".into(),
            error_id: Some(error_id),
            retry_after: None,
        }
    }
}

impl PageError {
    /// The database is out of reach: a 503 page with `Retry-After`.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        log_unavailable(cause);
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Briefly unavailable",
            "The sign-in service cannot reach its database right now. Please try again in a few seconds.",
        );
        err.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
        err
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(cause) => Self::unavailable(&cause),
            other => Self::internal(&other),
        }
    }
}

/// A JSON error of the admin REST API: `{"error": "...", "fields": {"redirect_uris": "..."}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub fields: std::collections::BTreeMap<String, String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), fields: Default::default(), retry_after: None }
    }
    /// Over an abuse limit: 429 with `Retry-After`.
    pub fn rate_limited(limited: crate::limits::Limited) -> Self {
        let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "too many failed attempts from this address; try again later");
        err.retry_after = Some(limited.retry_after_secs());
        err
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let error_id = log_internal(cause);
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error (reference {error_id})"))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(cause) => {
                log_unavailable(&cause);
                let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable; try again shortly");
                err.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
                err
            }
            other => Self::internal(&other),
        }
    }
}
