//! How the client is configured, and how it presents itself (confidential or loopback client).

use serde::{Deserialize, Serialize};
use url::Url;

use crate::atproto::error::AtprotoError;

/// How we present ourselves to authorization servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientMode {
    /// `client_id` = `{public_url}/atproto/client-metadata.json`, `private_key_jwt` (ES256).
    Confidential,
    /// The atproto development client `http://localhost?redirect_uri=...&scope=...`
    /// (public client, no client authentication).
    Loopback,
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct AtprotoClientConfig {
    /// Our public base URL (`PUBLIC_URL`).
    pub public_url: Url,
    pub mode: ClientMode,
    /// Requested scope; must contain `atproto`.
    pub scope: String,
    /// PLC directory; default `https://plc.directory`.
    pub plc_directory_url: Url,
    /// XRPC service asked for `com.atproto.identity.resolveHandle` (local test networks).
    pub handle_resolver_url: Option<Url>,
    /// Allow `http://` and loopback addresses (local development / tests only).
    pub allow_insecure_loopback: bool,
    /// Display name in the client metadata document.
    pub client_name: String,
    /// Authorization servers (issuer URLs) trusted to vouch for their accounts' email
    /// addresses. Elsewhere an email is passed on with `email_verified: false`: anyone can run a
    /// PDS and claim any address is confirmed.
    pub email_trusted_issuers: Vec<String>,
}

/// The issuer trusted for email by default: the Bluesky entryway.
pub const DEFAULT_EMAIL_TRUSTED_ISSUER: &str = "https://bsky.social";

impl AtprotoClientConfig {
    /// Defaults: confidential, scope `atproto`, `https://plc.directory`, strict SSRF guard,
    /// email trusted from `https://bsky.social` only.
    pub fn new(public_url: Url) -> Result<Self, AtprotoError> {
        Ok(Self {
            public_url,
            mode: ClientMode::Confidential,
            scope: "atproto".to_string(),
            plc_directory_url: Url::parse("https://plc.directory").map_err(|e| AtprotoError::Config(e.to_string()))?,
            handle_resolver_url: None,
            allow_insecure_loopback: false,
            client_name: "atsso".to_string(),
            email_trusted_issuers: vec![DEFAULT_EMAIL_TRUSTED_ISSUER.to_string()],
        })
    }
}
