//! The one error type of the ATProto client.

/// Everything that can go wrong while logging a user in through ATProto OAuth.
///
/// `Display` is for logs (it never contains tokens); [`AtprotoError::user_message`] is for
/// the login page.
#[derive(Debug, thiserror::Error)]
pub enum AtprotoError {
    /// The input is not a valid handle (checked before any network access).
    #[error("invalid handle: {0}")]
    InvalidHandle(String),
    /// A DID does not follow the DID syntax, or uses an unsupported method.
    #[error("invalid DID: {0}")]
    InvalidDid(String),
    /// The login input is neither a handle, a DID nor a usable https URL.
    #[error("invalid login input: {0}")]
    InvalidInput(String),
    /// The handle does not resolve to a DID.
    #[error("handle not found: {0}")]
    HandleNotFound(String),
    /// The DID document does not claim the handle back (`alsoKnownAs`).
    #[error("handle {handle} is not confirmed by the DID document of {did}")]
    HandleMismatch { handle: String, did: String },
    /// The DID document could not be fetched or is unusable.
    #[error("DID resolution failed: {0}")]
    DidResolution(String),
    /// The PDS (or the authorization server) could not be reached.
    #[error("PDS unreachable: {0}")]
    PdsUnreachable(String),
    /// The PDS publishes no OAuth metadata.
    #[error("no OAuth metadata: {0}")]
    NoOAuth(String),
    /// The OAuth metadata is present but unsafe or incompatible with the atproto profile.
    #[error("hostile or incompatible OAuth metadata: {0}")]
    HostileMetadata(String),
    /// The callback `state` does not match the pending login.
    #[error("state mismatch")]
    StateMismatch,
    /// The callback `iss` is not the authorization server the user was sent to.
    #[error("issuer mismatch: expected {expected}, got {got:?}")]
    IssuerMismatch { expected: String, got: Option<String> },
    /// The token response `sub` is not the account the login started for.
    #[error("subject mismatch: expected {expected}, got {got}")]
    SubjectMismatch { expected: String, got: String },
    /// The issuer is not the authorization server of the account's PDS (mix-up defence).
    #[error("issuer is not authoritative: {0}")]
    NotAuthoritative(String),
    /// The user (or the authorization server) refused the authorization.
    #[error("access denied: {0:?}")]
    AccessDenied(Option<String>),
    /// The authorization server or PDS answered with an OAuth/XRPC error.
    #[error("upstream error (HTTP {status}): {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    UpstreamError { status: u16, error: String, description: Option<String> },
    /// An outbound request was refused by the SSRF guard.
    #[error("outbound request refused: {0}")]
    Forbidden(String),
    /// The token response grants no `atproto` scope, or no scope at all: no sign-in.
    #[error("scope not granted: {0}")]
    ScopeNotGranted(String),
    /// A response could not be understood (bad JSON, missing fields, too large).
    #[error("invalid upstream response: {0}")]
    InvalidResponse(String),
    /// A network problem that is not attributable to a specific step (timeout, TLS...).
    #[error("network error: {0}")]
    Network(String),
    /// Key handling or signing failed.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// The client is misconfigured.
    #[error("configuration error: {0}")]
    Config(String),
}

impl AtprotoError {
    /// A fixed name of the variant (a bounded metrics label; never upstream text).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidHandle(_) => "invalid_handle",
            Self::InvalidDid(_) => "invalid_did",
            Self::InvalidInput(_) => "invalid_input",
            Self::HandleNotFound(_) => "handle_not_found",
            Self::HandleMismatch { .. } => "handle_mismatch",
            Self::DidResolution(_) => "did_resolution",
            Self::PdsUnreachable(_) => "pds_unreachable",
            Self::NoOAuth(_) => "no_oauth",
            Self::HostileMetadata(_) => "hostile_metadata",
            Self::StateMismatch => "state_mismatch",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::SubjectMismatch { .. } => "subject_mismatch",
            Self::NotAuthoritative(_) => "not_authoritative",
            Self::AccessDenied(_) => "access_denied",
            Self::UpstreamError { .. } => "upstream_error",
            Self::Forbidden(_) => "forbidden",
            Self::ScopeNotGranted(_) => "scope_not_granted",
            Self::InvalidResponse(_) => "invalid_response",
            Self::Network(_) => "network",
            Self::Crypto(_) => "crypto",
            Self::Config(_) => "config",
        }
    }

    /// Plain words for the login page. Never contains upstream-controlled text.
    pub fn user_message(&self) -> String {
        match self {
            Self::InvalidHandle(_) | Self::InvalidInput(_) => {
                "That does not look like a valid handle (for example alice.bsky.social) or server address.".into()
            }
            Self::InvalidDid(_) => "This account uses an identifier we cannot handle.".into(),
            Self::HandleNotFound(_) => "We could not find an account with that handle. Check the spelling and try again.".into(),
            Self::HandleMismatch { .. } => "That handle is not confirmed by its account, so we cannot sign you in with it.".into(),
            Self::DidResolution(_) => "We could not look up your account's identity document. Please try again later.".into(),
            Self::PdsUnreachable(_) | Self::Network(_) => "Your account's server could not be reached. Please try again later.".into(),
            Self::NoOAuth(_) => "Your account's server does not support OAuth sign-in.".into(),
            Self::HostileMetadata(_) => "Your account's server is not configured in a way we can safely sign in with.".into(),
            Self::StateMismatch => "This sign-in attempt expired or was not started here. Please start again.".into(),
            Self::IssuerMismatch { .. } | Self::SubjectMismatch { .. } | Self::NotAuthoritative(_) => {
                "The sign-in response did not come from your account's own server, so it was refused. Please start again.".into()
            }
            Self::AccessDenied(_) => "Sign-in was cancelled or refused.".into(),
            Self::ScopeNotGranted(_) => {
                "Your account's server did not grant the access needed to sign you in (the atproto scope), so it was refused.".into()
            }
            Self::UpstreamError { .. } | Self::InvalidResponse(_) => "Your account's server returned an error. Please try again.".into(),
            Self::Forbidden(_) => "That server address is not allowed.".into(),
            Self::Crypto(_) | Self::Config(_) => "Sign-in is temporarily unavailable. Please try again later.".into(),
        }
    }
}
