//! The ATProto OAuth client: PAR + PKCE + DPoP login, callback, refresh and revoke.
//!
//! - `config`: configuration, confidential or loopback client;
//! - `key`: our ES256 client key and its client assertions;
//! - `documents`: `client_id`, `redirect_uri`, client metadata and JWKS documents;
//! - `login`: PAR and the authorization URL ([`AtprotoClient::start_login`]);
//! - `callback`: the code exchange and the checks after it ([`AtprotoClient::complete_login`]);
//! - `tokens`: refresh and revoke of the upstream session.

mod callback;
mod config;
mod documents;
mod key;
mod login;
mod tokens;
mod xrpc;

use std::sync::Arc;

use super::dpop_http::{DpopHttp, FormFields};
use super::error::AtprotoError;
use super::http::SafeHttp;
use super::metadata::MetadataFetcher;
use super::resolve::{IdentityResolver, ResolverConfig};
use crate::net::is_loopback_host;

pub use callback::{CallbackParams, LoginResult, UpstreamIdentity};
pub use config::{AtprotoClientConfig, ClientMode, DEFAULT_EMAIL_TRUSTED_ISSUER};
pub use key::ClientSigningKey;
pub use login::PendingLogin;
pub use tokens::{UpstreamTokens, MAX_EXPIRES_IN_SECS};
pub use xrpc::{XrpcMethod, XrpcRequest};

/// The client. Cheap to clone; share one per process (it holds the DPoP nonce cache).
#[derive(Debug, Clone)]
pub struct AtprotoClient {
    config: Arc<AtprotoClientConfig>,
    client_key: Option<Arc<ClientSigningKey>>,
    http: SafeHttp,
    resolver: IdentityResolver,
    metadata: MetadataFetcher,
    dpop_http: DpopHttp,
}

impl AtprotoClient {
    /// `client_key` is required in confidential mode.
    pub fn new(config: AtprotoClientConfig, client_key: Option<ClientSigningKey>) -> Result<Self, AtprotoError> {
        if !config.scope.split_whitespace().any(|s| s == "atproto") {
            return Err(AtprotoError::Config("scope must contain atproto".into()));
        }
        if config.mode == ClientMode::Confidential && client_key.is_none() {
            return Err(AtprotoError::Config("confidential mode needs a client signing key".into()));
        }
        if config.mode == ClientMode::Loopback && (config.public_url.scheme() != "http" || !is_loopback_host(&config.public_url)) {
            return Err(AtprotoError::Config("loopback mode needs an http://localhost or loopback public URL".into()));
        }
        let http = SafeHttp::new(config.allow_insecure_loopback)?;
        let resolver = IdentityResolver::new(
            http.clone(),
            ResolverConfig { plc_directory_url: config.plc_directory_url.clone(), handle_resolver_url: config.handle_resolver_url.clone() },
        );
        let metadata = MetadataFetcher::new(http.clone(), config.scope.clone());
        let dpop_http = DpopHttp::new(http.clone());
        Ok(Self { config: Arc::new(config), client_key: client_key.map(Arc::new), http, resolver, metadata, dpop_http })
    }

    pub fn config(&self) -> &AtprotoClientConfig {
        &self.config
    }

    /// Whether the operator trusts this authorization server to vouch for email addresses.
    pub fn vouches_for_email(&self, issuer: &str) -> bool {
        let issuer = issuer.trim_end_matches('/');
        self.config.email_trusted_issuers.iter().any(|t| t.trim_end_matches('/') == issuer)
    }

    /// The SSRF-guarded HTTP client, for other requests to hosts someone else chose
    /// (back-channel logout deliveries).
    pub fn http(&self) -> &SafeHttp {
        &self.http
    }

    pub fn resolver(&self) -> &IdentityResolver {
        &self.resolver
    }

    fn base(&self) -> String {
        self.config.public_url.as_str().trim_end_matches('/').to_string()
    }

    /// Client authentication for a token request of a grant obtained as `client_id`.
    fn client_auth(&self, issuer: &str, client_id: &str) -> Result<FormFields, AtprotoError> {
        let mut form = vec![("client_id", client_id.to_owned())];
        if self.config.mode == ClientMode::Confidential {
            let key = self.client_key.as_ref().ok_or_else(|| AtprotoError::Config("no client key".into()))?;
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()));
            form.push(("client_assertion", key.assertion(client_id, issuer)?));
        }
        Ok(form)
    }
}

/// [`crate::clock::now`] as the unsigned seconds of our stored types.
fn unix_now() -> u64 {
    u64::try_from(crate::clock::now()).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use url::Url;

    pub(super) fn client(public: &str, mode: ClientMode) -> AtprotoClient {
        let mut cfg = AtprotoClientConfig::new(Url::parse(public).unwrap()).unwrap();
        cfg.mode = mode;
        cfg.scope = "atproto transition:generic".into();
        let key = ClientSigningKey::generate("k1").unwrap();
        AtprotoClient::new(cfg, Some(key)).unwrap()
    }

    #[test]
    fn config_is_checked() {
        let cfg = AtprotoClientConfig::new(Url::parse("https://sso.example.com").unwrap()).unwrap();
        assert!(matches!(AtprotoClient::new(cfg.clone(), None), Err(AtprotoError::Config(_))));
        let mut no_atproto = cfg.clone();
        no_atproto.scope = "openid".into();
        let key = ClientSigningKey::generate("k").unwrap();
        assert!(AtprotoClient::new(no_atproto, Some(key)).is_err());
        let mut lb = cfg;
        lb.mode = ClientMode::Loopback;
        assert!(AtprotoClient::new(lb, None).is_err(), "https public URL is not loopback");
    }

    #[test]
    fn futures_are_send_and_client_is_shareable() {
        fn send<T: Send>(_: &T) {}
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<AtprotoClient>();
        let c = client("https://sso.example.com", ClientMode::Confidential);
        let pending: PendingLogin = serde_json::from_value(serde_json::json!({
            "state": "s", "authorization_url": "https://a/", "issuer": "https://a",
            "pkce_verifier": "v", "dpop_private_jwk": "{}", "expected_did": null, "handle": null,
            "pds_url": null, "redirect_uri": "https://r", "scope": "atproto", "created_at": 0,
            "as_metadata": {"issuer": "https://a", "authorization_endpoint": "https://a/x",
                "token_endpoint": "https://a/t", "pushed_authorization_request_endpoint": "https://a/p",
                "revocation_endpoint": null}
        }))
        .unwrap();
        let params = CallbackParams::default();
        send(&c.start_login("alice.test", &[]));
        send(&c.complete_login(&pending, &params));
    }

    #[test]
    fn email_trust_is_by_issuer() {
        let c = client("https://sso.example.com", ClientMode::Confidential);
        assert!(c.vouches_for_email("https://bsky.social"));
        assert!(c.vouches_for_email("https://bsky.social/"));
        assert!(!c.vouches_for_email("https://evil.example"));
        assert!(!c.vouches_for_email("https://bsky.social.evil.example"));
    }
}
