//! OAuth metadata discovery: PDS protected-resource metadata → authorization server metadata,
//! validated against the atproto OAuth profile.

use crate::atproto::http::Endpoint;
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::AtprotoError;
use super::http::{HttpResponse, SafeHttp};
use super::urls::{join_path, origin_string};

/// `/.well-known/oauth-protected-resource` (RFC 9728), the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectedResourceMetadata {
    pub resource: Option<String>,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
}

/// `/.well-known/oauth-authorization-server` (RFC 8414), the fields we check.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthServerMetadata {
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub pushed_authorization_request_endpoint: Option<String>,
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

/// The validated endpoints of an authorization server; kept in the pending login and the
/// upstream session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthServerInfo {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub pushed_authorization_request_endpoint: String,
    pub revocation_endpoint: Option<String>,
}

fn hostile(msg: impl Into<String>) -> AtprotoError {
    AtprotoError::HostileMetadata(msg.into())
}

fn endpoint(http: &SafeHttp, name: &str, value: &Option<String>) -> Result<String, AtprotoError> {
    let v = value.as_deref().ok_or_else(|| hostile(format!("no {name}")))?;
    let u = Url::parse(v).map_err(|_| hostile(format!("{name} is not a URL")))?;
    if u.fragment().is_some() {
        return Err(hostile(format!("{name} has a fragment")));
    }
    http.check_url(&u).map_err(|e| hostile(format!("{name} is not an allowed URL: {e:?}")))?;
    Ok(u.to_string())
}

/// Validate authorization server metadata fetched from `expected_issuer`'s well-known URL.
pub fn validate_as_metadata(
    http: &SafeHttp,
    meta: &AuthServerMetadata,
    expected_issuer: &str,
    scope: &str,
) -> Result<AuthServerInfo, AtprotoError> {
    let issuer = meta.issuer.as_deref().ok_or_else(|| hostile("no issuer"))?;
    if issuer != expected_issuer {
        return Err(hostile(format!("issuer {issuer:?} differs from the server it was fetched from ({expected_issuer})")));
    }
    let par = endpoint(http, "pushed_authorization_request_endpoint", &meta.pushed_authorization_request_endpoint)?;
    let authorization_endpoint = endpoint(http, "authorization_endpoint", &meta.authorization_endpoint)?;
    let token_endpoint = endpoint(http, "token_endpoint", &meta.token_endpoint)?;
    let revocation_endpoint = match &meta.revocation_endpoint {
        Some(_) => Some(endpoint(http, "revocation_endpoint", &meta.revocation_endpoint)?),
        None => None,
    };
    if !meta.code_challenge_methods_supported.iter().any(|m| m == "S256") {
        return Err(hostile("PKCE S256 not supported"));
    }
    if !meta.dpop_signing_alg_values_supported.iter().any(|a| a == "ES256") {
        return Err(hostile("DPoP with ES256 not supported"));
    }
    if !meta.authorization_response_iss_parameter_supported {
        return Err(hostile("authorization_response_iss_parameter_supported is not true"));
    }
    if !meta.scopes_supported.iter().any(|s| s == "atproto") {
        return Err(hostile("scope atproto not supported"));
    }
    if let Some(missing) = scope.split_whitespace().find(|s| !meta.scopes_supported.iter().any(|m| m == s)) {
        tracing::warn!(scope = missing, "authorization server does not list a requested scope");
    }
    Ok(AuthServerInfo {
        issuer: issuer.to_string(),
        authorization_endpoint,
        token_endpoint,
        pushed_authorization_request_endpoint: par,
        revocation_endpoint,
    })
}

/// Metadata discovery.
#[derive(Debug, Clone)]
pub struct MetadataFetcher {
    http: SafeHttp,
    scope: String,
}

/// How the user's input turned out to be served.
#[derive(Debug, Clone)]
pub enum ServerKind {
    /// The URL itself is an authorization server (an entryway such as bsky.social).
    AuthServer(AuthServerInfo),
    /// The URL is a PDS; its authorization server is given.
    Pds { pds_url: Url, auth_server: AuthServerInfo },
}

impl MetadataFetcher {
    pub fn new(http: SafeHttp, scope: String) -> Self {
        Self { http, scope }
    }

    async fn get(&self, url: &Url) -> Result<HttpResponse, AtprotoError> {
        self.http.get(Endpoint::Metadata, url, &[]).await.map_err(|e| e.into_error(AtprotoError::PdsUnreachable))
    }

    /// PDS → the issuer URL named by its protected-resource metadata.
    pub async fn authorization_server_of(&self, pds_url: &Url) -> Result<String, AtprotoError> {
        let origin = origin_string(pds_url);
        let url = join_path(
            &Url::parse(&origin).map_err(|e| AtprotoError::PdsUnreachable(e.to_string()))?,
            "/.well-known/oauth-protected-resource",
        )?;
        let resp = self.get(&url).await?;
        if resp.status == 404 {
            return Err(AtprotoError::NoOAuth(format!("{origin} has no protected-resource metadata")));
        }
        if !resp.is_success() {
            return Err(AtprotoError::PdsUnreachable(format!("protected-resource metadata answered HTTP {}", resp.status)));
        }
        let prm: ProtectedResourceMetadata =
            resp.json().map_err(|_| AtprotoError::NoOAuth("protected-resource metadata is not JSON".into()))?;
        if let Some(resource) = &prm.resource {
            let same = Url::parse(resource).map(|r| origin_string(&r) == origin).unwrap_or(false);
            if !same {
                return Err(hostile(format!("protected-resource metadata names resource {resource:?}, not {origin}")));
            }
        }
        let first = prm.authorization_servers.first().ok_or_else(|| AtprotoError::NoOAuth("no authorization_servers".into()))?;
        let as_url = Url::parse(first).map_err(|_| hostile("authorization server is not a URL"))?;
        if as_url.path() != "/" || as_url.query().is_some() || as_url.fragment().is_some() {
            return Err(hostile("authorization server URL must be an origin"));
        }
        self.http.check_url(&as_url).map_err(|e| e.into_error(AtprotoError::HostileMetadata))?;
        Ok(origin_string(&as_url))
    }

    /// Fetch `{issuer}/.well-known/oauth-authorization-server` and validate it.
    pub async fn auth_server_metadata(&self, issuer: &str) -> Result<AuthServerInfo, AtprotoError> {
        match self.try_auth_server_metadata(issuer).await? {
            Some(info) => Ok(info),
            None => Err(AtprotoError::NoOAuth(format!("{issuer} serves no authorization server metadata"))),
        }
    }

    /// Like [`Self::auth_server_metadata`], but `Ok(None)` when the server has no such document.
    async fn try_auth_server_metadata(&self, issuer: &str) -> Result<Option<AuthServerInfo>, AtprotoError> {
        let base = Url::parse(issuer).map_err(|_| hostile("issuer is not a URL"))?;
        let url = join_path(&base, "/.well-known/oauth-authorization-server")?;
        let resp = self.get(&url).await?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(AtprotoError::PdsUnreachable(format!("authorization server metadata answered HTTP {}", resp.status)));
        }
        let meta: AuthServerMetadata = resp.json().map_err(|_| hostile("authorization server metadata is not valid JSON"))?;
        validate_as_metadata(&self.http, &meta, issuer, &self.scope).map(Some)
    }

    /// PDS → its authorization server, validated.
    pub async fn for_pds(&self, pds_url: &Url) -> Result<AuthServerInfo, AtprotoError> {
        let issuer = self.authorization_server_of(pds_url).await?;
        self.auth_server_metadata(&issuer).await
    }

    /// A URL typed by the user: an authorization server (entryway) if it serves AS metadata,
    /// otherwise a PDS.
    pub async fn for_server_url(&self, url: &Url) -> Result<ServerKind, AtprotoError> {
        let origin = origin_string(url);
        if let Some(info) = self.try_auth_server_metadata(&origin).await? {
            return Ok(ServerKind::AuthServer(info));
        }
        let pds_url = Url::parse(&origin).map_err(|e| AtprotoError::InvalidInput(e.to_string()))?;
        let auth_server = self.for_pds(&pds_url).await?;
        Ok(ServerKind::Pds { pds_url, auth_server })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn good() -> AuthServerMetadata {
        serde_json::from_str(include_str!("testdata/wk-as.json")).unwrap()
    }

    fn check(m: &AuthServerMetadata) -> Result<AuthServerInfo, AtprotoError> {
        let http = SafeHttp::new(true).unwrap();
        validate_as_metadata(&http, m, "http://localhost:2583", "atproto")
    }

    #[test]
    fn real_pds_metadata_is_accepted() {
        let info = check(&good()).unwrap();
        assert_eq!(info.issuer, "http://localhost:2583");
        assert_eq!(info.token_endpoint, "http://localhost:2583/oauth/token");
        assert_eq!(info.revocation_endpoint.as_deref(), Some("http://localhost:2583/oauth/revoke"));
    }

    #[test]
    fn real_pds_metadata_refused_without_loopback_setting() {
        let http = SafeHttp::new(false).unwrap();
        let err = validate_as_metadata(&http, &good(), "http://localhost:2583", "atproto");
        assert!(matches!(err, Err(AtprotoError::HostileMetadata(_))));
    }

    #[test]
    fn each_missing_requirement_is_refused() {
        type Mutation = Box<dyn Fn(&mut AuthServerMetadata)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("issuer", Box::new(|m| m.issuer = Some("http://localhost:9999".into()))),
            ("no issuer", Box::new(|m| m.issuer = None)),
            ("PAR", Box::new(|m| m.pushed_authorization_request_endpoint = None)),
            ("S256", Box::new(|m| m.code_challenge_methods_supported = vec!["plain".into()])),
            ("ES256", Box::new(|m| m.dpop_signing_alg_values_supported = vec!["RS256".into()])),
            ("iss param", Box::new(|m| m.authorization_response_iss_parameter_supported = false)),
            ("token", Box::new(|m| m.token_endpoint = None)),
            ("authorize", Box::new(|m| m.authorization_endpoint = None)),
            ("scope", Box::new(|m| m.scopes_supported = vec!["openid".into()])),
            ("private token endpoint", Box::new(|m| m.token_endpoint = Some("https://10.0.0.1/token".into()))),
        ];
        for (name, mutate) in cases {
            let mut m = good();
            mutate(&mut m);
            assert!(matches!(check(&m), Err(AtprotoError::HostileMetadata(_))), "{name} should be refused");
        }
    }
}
