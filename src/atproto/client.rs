//! The ATProto OAuth client: PAR + PKCE + DPoP login, callback, refresh and revoke.

use std::sync::Arc;

use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{JwsHeader, ES256};
use josekit::jwt::{self, JwtPayload};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use url::Url;

use super::dpop::DpopKey;
use super::dpop_http::{DpopHttp, FormFields};
use super::error::AtprotoError;
use super::http::{HttpResponse, SafeHttp};
use super::metadata::{AuthServerInfo, MetadataFetcher, ServerKind};
use super::profile;
use super::resolve::{IdentityResolver, ResolverConfig};
use super::syntax::{normalize_handle, validate_did};
use super::urls::origin_string;
use crate::crypto::{random_token, sha256_b64};
use crate::net::is_loopback_host;

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

/// The longest upstream token lifetime we believe (a PDS can send any `expires_in`).
pub const MAX_EXPIRES_IN_SECS: u64 = 365 * 86400;

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

/// Our ES256 client authentication key (`private_key_jwt`), with its `kid`.
#[derive(Clone)]
pub struct ClientSigningKey {
    kid: String,
    key_pair: EcKeyPair,
}

impl std::fmt::Debug for ClientSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl ClientSigningKey {
    /// A new random P-256 key.
    pub fn generate(kid: impl Into<String>) -> Result<Self, AtprotoError> {
        let key_pair = EcKeyPair::generate(EcCurve::P256).map_err(|e| AtprotoError::Crypto(format!("client key generation: {e}")))?;
        Ok(Self { kid: kid.into(), key_pair })
    }

    /// From a PEM EC private key (PKCS#8 or SEC1), P-256 only.
    pub fn from_pem(pem: &str, kid: impl Into<String>) -> Result<Self, AtprotoError> {
        let key_pair = EcKeyPair::from_pem(pem.as_bytes(), Some(EcCurve::P256))
            .map_err(|e| AtprotoError::Config(format!("bad client key PEM: {e}")))?;
        Ok(Self { kid: kid.into(), key_pair })
    }

    /// From a private JWK (JSON). `kid` overrides the JWK's own `kid`; one of them is required.
    pub fn from_jwk_json(json: &str, kid: Option<String>) -> Result<Self, AtprotoError> {
        let jwk = Jwk::from_bytes(json.as_bytes()).map_err(|e| AtprotoError::Config(format!("bad client key JWK: {e}")))?;
        let kid = kid.or_else(|| jwk.key_id().map(str::to_string)).ok_or_else(|| AtprotoError::Config("client key has no kid".into()))?;
        let key_pair = EcKeyPair::from_jwk(&jwk).map_err(|e| AtprotoError::Config(format!("bad client key JWK: {e}")))?;
        if key_pair.curve() != EcCurve::P256 {
            return Err(AtprotoError::Config("client key must be P-256".into()));
        }
        Ok(Self { kid, key_pair })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Private key as PKCS#8 PEM, for storing sealed. Secret material.
    pub fn to_pem(&self) -> String {
        String::from_utf8_lossy(&self.key_pair.to_pem_private_key()).into_owned()
    }

    /// Public JWK with `kid`, `alg: ES256`, `use: sig`.
    pub fn public_jwk(&self) -> Jwk {
        let mut jwk = self.key_pair.to_jwk_public_key();
        jwk.set_key_id(self.kid.clone());
        jwk.set_algorithm("ES256");
        jwk.set_key_use("sig");
        jwk
    }

    fn assertion(&self, client_id: &str, audience: &str) -> Result<String, AtprotoError> {
        let mut header = JwsHeader::new();
        header.set_algorithm("ES256");
        header.set_key_id(self.kid.clone());
        let mut payload = JwtPayload::new();
        payload.set_issuer(client_id);
        payload.set_subject(client_id);
        payload.set_audience(vec![audience.to_string()]);
        payload.set_jwt_id(random_token(16));
        let now = crate::state::now();
        let set = |p: &mut JwtPayload, k: &str, v: i64| {
            p.set_claim(k, Some(Value::from(v))).map_err(|e| AtprotoError::Crypto(format!("client assertion {k}: {e}")))
        };
        set(&mut payload, "iat", now)?;
        set(&mut payload, "exp", now + 60)?;
        let signer =
            ES256.signer_from_jwk(&self.key_pair.to_jwk_private_key()).map_err(|e| AtprotoError::Crypto(format!("client signer: {e}")))?;
        jwt::encode_with_signer(&payload, &header, &signer).map_err(|e| AtprotoError::Crypto(format!("client assertion signing: {e}")))
    }
}

/// What the caller stores (sealed, keyed by `state`, single-use) between `start_login` and
/// the callback.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    /// Where to send the user's browser.
    pub authorization_url: String,
    pub issuer: String,
    /// Secret.
    pub pkce_verifier: String,
    /// Private JWK JSON of this login's DPoP key. Secret.
    pub dpop_private_jwk: String,
    /// Known when the login started from a handle or DID.
    pub expected_did: Option<String>,
    pub handle: Option<String>,
    pub pds_url: Option<String>,
    pub as_metadata: AuthServerInfo,
    pub redirect_uri: String,
    pub scope: String,
    /// Unix seconds.
    pub created_at: u64,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("issuer", &self.issuer)
            .field("expected_did", &self.expected_did)
            .field("handle", &self.handle)
            .field("pds_url", &self.pds_url)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

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

/// Outcome of a completed login.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub identity: UpstreamIdentity,
    pub session: UpstreamTokens,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    scope: Option<String>,
    sub: Option<String>,
}

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
            ResolverConfig {
                plc_directory_url: config.plc_directory_url.clone(),
                handle_resolver_url: config.handle_resolver_url.clone(),
                dns_server: None,
            },
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

    /// Our `client_id`.
    pub fn client_id(&self) -> String {
        match self.config.mode {
            ClientMode::Confidential => format!("{}/atproto/client-metadata.json", self.base()),
            ClientMode::Loopback => {
                let q = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("redirect_uri", &self.redirect_uri())
                    .append_pair("scope", &self.config.scope)
                    .finish()
                    .replace('+', "%20");
                format!("http://localhost?{q}")
            }
        }
    }

    /// Our callback URL (loopback mode: host `127.0.0.1`, as the PDS requires).
    pub fn redirect_uri(&self) -> String {
        match self.config.mode {
            ClientMode::Confidential => format!("{}/atproto/callback", self.base()),
            ClientMode::Loopback => {
                let mut u = self.config.public_url.clone();
                if u.host_str() == Some("localhost") {
                    // set_host only fails for cannot-be-a-base URLs, which http URLs are not.
                    let _ = u.set_host(Some("127.0.0.1"));
                }
                format!("{}/atproto/callback", u.as_str().trim_end_matches('/'))
            }
        }
    }

    /// The document served at `/atproto/client-metadata.json`.
    pub fn client_metadata_document(&self) -> Value {
        let mut doc = json!({
            "client_id": self.client_id(),
            "client_name": self.config.client_name,
            "client_uri": self.base(),
            "application_type": "web",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [self.redirect_uri()],
            "scope": self.config.scope,
            "dpop_bound_access_tokens": true,
        });
        if let Some(obj) = doc.as_object_mut() {
            match self.config.mode {
                ClientMode::Confidential => {
                    obj.insert("token_endpoint_auth_method".into(), json!("private_key_jwt"));
                    obj.insert("token_endpoint_auth_signing_alg".into(), json!("ES256"));
                    obj.insert("jwks_uri".into(), json!(format!("{}/atproto/jwks.json", self.base())));
                }
                ClientMode::Loopback => {
                    obj.insert("token_endpoint_auth_method".into(), json!("none"));
                }
            }
        }
        doc
    }

    /// The document served at `/atproto/jwks.json` (public key only).
    pub fn client_jwks(&self) -> Value {
        let keys: Vec<Value> = self.client_key.iter().filter_map(|k| serde_json::to_value(k.public_jwk().as_ref()).ok()).collect();
        json!({ "keys": keys })
    }

    fn client_auth(&self, issuer: &str) -> Result<FormFields, AtprotoError> {
        let client_id = self.client_id();
        let mut form = vec![("client_id", client_id.clone())];
        if self.config.mode == ClientMode::Confidential {
            let key = self.client_key.as_ref().ok_or_else(|| AtprotoError::Config("no client key".into()))?;
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()));
            form.push(("client_assertion", key.assertion(&client_id, issuer)?));
        }
        Ok(form)
    }

    /// Resolve the input (handle, DID, or PDS / entryway URL), push the authorization request
    /// and return what to store plus where to send the browser.
    #[tracing::instrument(skip_all)]
    pub async fn start_login(&self, input: &str) -> Result<PendingLogin, AtprotoError> {
        let input = input.trim();
        let (expected_did, handle, pds_url, as_info) = if input.starts_with("https://") || input.starts_with("http://") {
            let url = Url::parse(input).map_err(|_| AtprotoError::InvalidInput("not a valid URL".into()))?;
            self.http.check_url(&url).map_err(|e| e.into_error(AtprotoError::InvalidInput))?;
            match self.metadata.for_server_url(&url).await? {
                ServerKind::AuthServer(info) => (None, None, None, info),
                ServerKind::Pds { pds_url, auth_server } => (None, None, Some(pds_url), auth_server),
            }
        } else if input.starts_with("did:") {
            validate_did(input)?;
            let id = self.resolver.resolve_from_did(input).await?;
            let info = self.metadata.for_pds(&id.pds_url).await?;
            (Some(id.did), id.handle, Some(id.pds_url), info)
        } else {
            let handle = normalize_handle(input)?;
            let id = self.resolver.resolve_from_handle(&handle).await?;
            let info = self.metadata.for_pds(&id.pds_url).await?;
            (Some(id.did), id.handle, Some(id.pds_url), info)
        };

        let pkce_verifier = random_token(32);
        let code_challenge = sha256_b64(&pkce_verifier);
        let state = random_token(24);
        let dpop = DpopKey::generate()?;
        let redirect_uri = self.redirect_uri();
        let scope = self.config.scope.clone();
        let login_hint = handle.clone().or_else(|| expected_did.clone());

        let par_url = Url::parse(&as_info.pushed_authorization_request_endpoint)
            .map_err(|_| AtprotoError::HostileMetadata("bad PAR endpoint".into()))?;
        let issuer = as_info.issuer.clone();
        let build = || -> Result<FormFields, AtprotoError> {
            let mut form = self.client_auth(&issuer)?;
            form.extend([
                ("response_type", "code".to_string()),
                ("code_challenge", code_challenge.clone()),
                ("code_challenge_method", "S256".to_string()),
                ("state", state.clone()),
                ("redirect_uri", redirect_uri.clone()),
                ("scope", scope.clone()),
            ]);
            if let Some(h) = &login_hint {
                form.push(("login_hint", h.clone()));
            }
            Ok(form)
        };
        let resp = self.dpop_http.request(&dpop, &par_url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
        if !resp.is_success() {
            return Err(resp.upstream_error());
        }
        #[derive(Deserialize)]
        struct ParResponse {
            request_uri: String,
        }
        let par: ParResponse = resp.json().map_err(|_| AtprotoError::InvalidResponse("PAR response without request_uri".into()))?;
        let mut authorization_url =
            Url::parse(&as_info.authorization_endpoint).map_err(|_| AtprotoError::HostileMetadata("bad authorization endpoint".into()))?;
        authorization_url.query_pairs_mut().append_pair("client_id", &self.client_id()).append_pair("request_uri", &par.request_uri);

        tracing::info!(issuer = %as_info.issuer, did = ?expected_did, "ATProto login started");
        Ok(PendingLogin {
            state,
            authorization_url: authorization_url.to_string(),
            issuer: as_info.issuer.clone(),
            pkce_verifier,
            dpop_private_jwk: dpop.to_private_jwk_json(),
            expected_did,
            handle,
            pds_url: pds_url.map(|u| origin_string(&u)),
            as_metadata: as_info,
            redirect_uri,
            scope,
            created_at: unix_now(),
        })
    }

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

        let token_url = Url::parse(&as_info.token_endpoint).map_err(|_| AtprotoError::HostileMetadata("bad token endpoint".into()))?;
        let build = || -> Result<FormFields, AtprotoError> {
            let mut form = self.client_auth(&pending.issuer)?;
            form.extend([
                ("grant_type", "authorization_code".to_string()),
                ("code", code.to_string()),
                ("redirect_uri", pending.redirect_uri.clone()),
                ("code_verifier", pending.pkce_verifier.clone()),
            ]);
            Ok(form)
        };
        let resp = self.dpop_http.request(&dpop, &token_url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
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
            },
        })
    }

    /// Use the refresh token (the AS rotates it: store the returned tokens, and serialize
    /// refreshes per upstream session).
    #[tracing::instrument(skip_all, fields(did = %tokens.sub))]
    pub async fn refresh(&self, tokens: &UpstreamTokens) -> Result<UpstreamTokens, AtprotoError> {
        let refresh_token = tokens.refresh_token.as_deref().ok_or_else(|| AtprotoError::InvalidInput("no refresh token".into()))?;
        let dpop = DpopKey::from_private_jwk_json(&tokens.dpop_private_jwk)?;
        let url = Url::parse(&tokens.token_endpoint).map_err(|_| AtprotoError::Config("bad stored token endpoint".into()))?;
        let build = || -> Result<FormFields, AtprotoError> {
            let mut form = self.client_auth(&tokens.issuer)?;
            form.extend([("grant_type", "refresh_token".to_string()), ("refresh_token", refresh_token.to_string())]);
            Ok(form)
        };
        let resp = self.dpop_http.request(&dpop, &url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
        if !resp.is_success() {
            return Err(resp.upstream_error());
        }
        let token = parse_token_response(&resp)?;
        // Never more than we asked for at login and still ask for now.
        let requested = intersect(&tokens.scope, &self.config.scope).join(" ");
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
        let mut to_revoke = Vec::new();
        if let Some(r) = &tokens.refresh_token {
            to_revoke.push((r.as_str(), "refresh_token"));
        }
        to_revoke.push((tokens.access_token.as_str(), "access_token"));
        for (token, hint) in to_revoke {
            let build = || -> Result<FormFields, AtprotoError> {
                let mut form = self.client_auth(&tokens.issuer)?;
                form.push(("token", token.to_string()));
                form.push(("token_type_hint", hint.to_string()));
                Ok(form)
            };
            let resp = self.dpop_http.request(&dpop, &url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
            if !resp.is_success() {
                return Err(resp.upstream_error());
            }
        }
        Ok(())
    }
}

fn parse_token_response(resp: &HttpResponse) -> Result<TokenResponse, AtprotoError> {
    let token: TokenResponse = resp.json().map_err(|_| AtprotoError::InvalidResponse("token response is not valid JSON".into()))?;
    if !token.token_type.eq_ignore_ascii_case("DPoP") {
        return Err(AtprotoError::InvalidResponse(format!("token_type {} (DPoP required)", token.token_type)));
    }
    Ok(token)
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
fn held_scope(requested: &str, granted: Option<&str>) -> Result<String, AtprotoError> {
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
fn expires_at(now: u64, expires_in: Option<u64>) -> Option<u64> {
    expires_in.map(|s| now.saturating_add(s.min(MAX_EXPIRES_IN_SECS)))
}

/// [`crate::state::now`] as the unsigned seconds of our stored types.
fn unix_now() -> u64 {
    u64::try_from(crate::state::now()).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn client(public: &str, mode: ClientMode) -> AtprotoClient {
        let mut cfg = AtprotoClientConfig::new(Url::parse(public).unwrap()).unwrap();
        cfg.mode = mode;
        cfg.scope = "atproto transition:generic".into();
        let key = ClientSigningKey::generate("k1").unwrap();
        AtprotoClient::new(cfg, Some(key)).unwrap()
    }

    #[test]
    fn confidential_ids() {
        let c = client("https://sso.example.com/", ClientMode::Confidential);
        assert_eq!(c.client_id(), "https://sso.example.com/atproto/client-metadata.json");
        assert_eq!(c.redirect_uri(), "https://sso.example.com/atproto/callback");
        let doc = c.client_metadata_document();
        assert_eq!(doc["client_id"], c.client_id());
        assert_eq!(doc["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(doc["token_endpoint_auth_signing_alg"], "ES256");
        assert_eq!(doc["jwks_uri"], "https://sso.example.com/atproto/jwks.json");
        assert_eq!(doc["dpop_bound_access_tokens"], true);
        assert_eq!(doc["redirect_uris"][0], "https://sso.example.com/atproto/callback");
        let jwks = c.client_jwks();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], "k1");
        assert_eq!(k["alg"], "ES256");
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none(), "private key in JWKS");
    }

    #[test]
    fn loopback_ids() {
        let c = client("http://localhost:8080", ClientMode::Loopback);
        assert_eq!(c.redirect_uri(), "http://127.0.0.1:8080/atproto/callback");
        assert_eq!(
            c.client_id(),
            "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fatproto%2Fcallback&scope=atproto%20transition%3Ageneric"
        );
        let parsed = Url::parse(&c.client_id()).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(pairs[0].1, "http://127.0.0.1:8080/atproto/callback");
        assert_eq!(pairs[1].1, "atproto transition:generic");
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
    fn client_key_from_pem_and_jwk() {
        let k = ClientSigningKey::generate("a").unwrap();
        let pem = k.to_pem();
        let k2 = ClientSigningKey::from_pem(&pem, "a").unwrap();
        assert_eq!(k.public_jwk().to_string(), k2.public_jwk().to_string());
        let mut priv_jwk = k.key_pair.to_jwk_private_key();
        priv_jwk.set_key_id("from-jwk");
        let k3 = ClientSigningKey::from_jwk_json(&priv_jwk.to_string(), None).unwrap();
        assert_eq!(k3.kid(), "from-jwk");
        assert!(format!("{k3:?}").contains("from-jwk"));
        assert!(!format!("{k3:?}").contains("\"d\""));
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
        send(&c.start_login("alice.test"));
        send(&c.complete_login(&pending, &params));
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

    #[test]
    fn email_trust_is_by_issuer() {
        let c = client("https://sso.example.com", ClientMode::Confidential);
        assert!(c.vouches_for_email("https://bsky.social"));
        assert!(c.vouches_for_email("https://bsky.social/"));
        assert!(!c.vouches_for_email("https://evil.example"));
        assert!(!c.vouches_for_email("https://bsky.social.evil.example"));
    }
}
