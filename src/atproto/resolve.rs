//! Identity resolution: handle → DID → DID document → PDS, all through the SSRF-guarded client.

use crate::atproto::http::Endpoint;
use serde::Deserialize;
use url::Url;

use super::error::AtprotoError;
use super::http::SafeHttp;
use super::syntax::{did_web_host, normalize_handle, validate_did};
use super::urls::join_path;
use crate::net::is_loopback_name;

/// Where to resolve identities. Tests and local networks point these at their own services.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// PLC directory (default `https://plc.directory`).
    pub plc_directory_url: Url,
    /// When set, handles are resolved by `GET {url}/xrpc/com.atproto.identity.resolveHandle`
    /// only (no DNS, no well-known).
    pub handle_resolver_url: Option<Url>,
}

/// A parsed DID document (only what atproto needs).
#[derive(Debug, Clone, Deserialize)]
pub struct DidDocument {
    pub id: String,
    #[serde(rename = "alsoKnownAs", default)]
    pub also_known_as: Vec<String>,
    #[serde(default)]
    pub service: Vec<DidService>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DidService {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "serviceEndpoint")]
    pub service_endpoint: serde_json::Value,
}

impl DidDocument {
    /// The PDS endpoint (`#atproto_pds`, type `AtprotoPersonalDataServer`), as an origin URL.
    pub fn pds_endpoint(&self) -> Option<Url> {
        let full = format!("{}#atproto_pds", self.id);
        let svc = self.service.iter().find(|s| (s.id == "#atproto_pds" || s.id == full) && s.kind == "AtprotoPersonalDataServer")?;
        let url = Url::parse(svc.service_endpoint.as_str()?).ok()?;
        if !matches!(url.scheme(), "https" | "http")
            || url.host().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || (url.path() != "/" && !url.path().is_empty())
        {
            return None;
        }
        Some(url)
    }

    /// The first `at://` handle the document claims (normalized), if syntactically valid.
    pub fn claimed_handle(&self) -> Option<String> {
        self.also_known_as.iter().find_map(|a| a.strip_prefix("at://")).and_then(|h| normalize_handle(h).ok())
    }

    /// Does the document claim `handle` (bidirectional check)?
    pub fn claims_handle(&self, handle: &str) -> bool {
        let want = format!("at://{}", handle.to_ascii_lowercase());
        self.also_known_as.iter().any(|a| a.to_ascii_lowercase() == want)
    }
}

/// Result of resolving a handle or DID.
#[derive(Debug, Clone)]
pub struct ResolvedIdentity {
    pub did: String,
    /// Verified handle (the DID document claims it and it resolves to the DID), if any.
    pub handle: Option<String>,
    pub pds_url: Url,
    pub document: DidDocument,
}

/// Resolves handles and DIDs.
#[derive(Debug, Clone)]
pub struct IdentityResolver {
    http: SafeHttp,
    config: ResolverConfig,
}

impl IdentityResolver {
    pub fn new(http: SafeHttp, config: ResolverConfig) -> Self {
        Self { http, config }
    }

    /// Handle → DID (not yet verified against the document).
    pub async fn resolve_handle(&self, handle: &str) -> Result<String, AtprotoError> {
        let handle = normalize_handle(handle)?;
        if let Some(base) = &self.config.handle_resolver_url {
            return self.resolve_handle_xrpc(base, &handle).await;
        }
        match self.resolve_handle_dns(&handle).await {
            Ok(Some(did)) => return Ok(did),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "DNS handle resolution failed"),
        }
        self.resolve_handle_well_known(&handle).await
    }

    async fn resolve_handle_xrpc(&self, base: &Url, handle: &str) -> Result<String, AtprotoError> {
        let mut url = join_path(base, "/xrpc/com.atproto.identity.resolveHandle")?;
        url.query_pairs_mut().append_pair("handle", handle);
        let resp = self.http.get(Endpoint::ResolveHandle, &url, &[]).await.map_err(|e| e.into_error(AtprotoError::HandleNotFound))?;
        if !resp.is_success() {
            return Err(AtprotoError::HandleNotFound(format!("resolveHandle answered HTTP {}", resp.status)));
        }
        #[derive(Deserialize)]
        struct Out {
            did: String,
        }
        let out: Out = resp.json().map_err(|_| AtprotoError::HandleNotFound("bad resolveHandle response".into()))?;
        validate_did(&out.did)?;
        Ok(out.did)
    }

    async fn resolve_handle_dns(&self, handle: &str) -> Result<Option<String>, AtprotoError> {
        let name = format!("_atproto.{handle}.");
        let records = tokio::time::timeout(std::time::Duration::from_secs(5), self.http.dns().txt(&name))
            .await
            .map_err(|_| AtprotoError::HandleNotFound("DNS timeout".into()))?
            .map_err(|e| AtprotoError::HandleNotFound(format!("DNS: {e}")))?;
        let Some(records) = records else {
            return Ok(None);
        };
        let mut dids: Vec<String> = Vec::new();
        for joined in records {
            let Ok(s) = String::from_utf8(joined) else {
                continue;
            };
            if let Some(did) = s.trim().strip_prefix("did=") {
                if !dids.iter().any(|d| d == did) {
                    dids.push(did.to_string());
                }
            }
        }
        match dids.len() {
            0 => Ok(None),
            1 => {
                let did = dids.remove(0);
                validate_did(&did)?;
                Ok(Some(did))
            }
            _ => Err(AtprotoError::HandleNotFound("several different DIDs in DNS".into())),
        }
    }

    async fn resolve_handle_well_known(&self, handle: &str) -> Result<String, AtprotoError> {
        let url =
            Url::parse(&format!("https://{handle}/.well-known/atproto-did")).map_err(|e| AtprotoError::InvalidHandle(e.to_string()))?;
        let resp = self.http.get(Endpoint::ResolveHandle, &url, &[]).await.map_err(|e| e.into_error(AtprotoError::HandleNotFound))?;
        if !resp.is_success() {
            return Err(AtprotoError::HandleNotFound(format!("well-known answered HTTP {}", resp.status)));
        }
        let did =
            String::from_utf8(resp.body).map_err(|_| AtprotoError::HandleNotFound("non-UTF-8 atproto-did".into()))?.trim().to_string();
        validate_did(&did).map_err(|_| AtprotoError::HandleNotFound("no valid DID".into()))?;
        Ok(did)
    }

    /// Where the DID document lives: the PLC directory, or `did:web`'s well-known URL.
    fn did_document_url(&self, did: &str) -> Result<Url, AtprotoError> {
        validate_did(did)?;
        if did.starts_with("did:plc:") {
            join_path(&self.config.plc_directory_url, &format!("/{did}"))
        } else if let Some(id) = did.strip_prefix("did:web:") {
            let host = did_web_host(id)?;
            // `host[:port]`; plain http only to a loopback name, and only when allowed.
            let name = host.split_once(':').map_or(host.as_str(), |(name, _)| name);
            let scheme = if is_loopback_name(name) && self.http.allow_insecure_loopback() { "http" } else { "https" };
            Url::parse(&format!("{scheme}://{host}/.well-known/did.json")).map_err(|e| AtprotoError::InvalidDid(e.to_string()))
        } else {
            Err(AtprotoError::InvalidDid("unsupported DID method".into()))
        }
    }

    /// DID → DID document (checked: `id` equals the DID).
    pub async fn resolve_did(&self, did: &str) -> Result<DidDocument, AtprotoError> {
        let url = self.did_document_url(did)?;
        let resp = self.http.get(Endpoint::DidDoc, &url, &[]).await.map_err(|e| e.into_error(AtprotoError::DidResolution))?;
        if !resp.is_success() {
            return Err(AtprotoError::DidResolution(format!("DID document fetch answered HTTP {}", resp.status)));
        }
        let doc: DidDocument = resp.json().map_err(|e| AtprotoError::DidResolution(format!("bad DID document: {e}")))?;
        if doc.id != did {
            return Err(AtprotoError::DidResolution("DID document id differs from the DID".into()));
        }
        Ok(doc)
    }

    /// Handle → DID → document, with the bidirectional check and the PDS endpoint.
    pub async fn resolve_from_handle(&self, handle: &str) -> Result<ResolvedIdentity, AtprotoError> {
        let handle = normalize_handle(handle)?;
        let did = self.resolve_handle(&handle).await?;
        let document = self.resolve_did(&did).await?;
        if !document.claims_handle(&handle) {
            return Err(AtprotoError::HandleMismatch { handle, did });
        }
        let pds_url = document.pds_endpoint().ok_or_else(|| AtprotoError::DidResolution("no usable #atproto_pds service".into()))?;
        Ok(ResolvedIdentity { did, handle: Some(handle), pds_url, document })
    }

    /// DID → document → PDS, and the handle the document claims if it resolves back to the DID.
    pub async fn resolve_from_did(&self, did: &str) -> Result<ResolvedIdentity, AtprotoError> {
        let document = self.resolve_did(did).await?;
        let pds_url = document.pds_endpoint().ok_or_else(|| AtprotoError::DidResolution("no usable #atproto_pds service".into()))?;
        let handle = match document.claimed_handle() {
            Some(h) => match self.resolve_handle(&h).await {
                Ok(back) if back == did => Some(h),
                Ok(_) => {
                    tracing::info!(did, "claimed handle resolves to another DID");
                    None
                }
                Err(e) => {
                    tracing::info!(did, error = %e, "claimed handle does not resolve");
                    None
                }
            },
            None => None,
        };
        Ok(ResolvedIdentity { did: did.to_string(), handle, pds_url, document })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::atproto::dns::{testing::dns_server, Dns};
    use serde_json::json;

    fn dns_resolver(server: std::net::SocketAddr) -> IdentityResolver {
        IdentityResolver::new(
            SafeHttp::with_dns(false, Dns::with_server(server)).unwrap(),
            ResolverConfig { plc_directory_url: Url::parse("https://plc.directory").unwrap(), handle_resolver_url: None },
        )
    }

    #[tokio::test]
    async fn handle_resolves_by_dns_txt() {
        let (server, _) = dns_server(vec![
            ("_atproto.alice.example.com.", vec!["did=did:plc:z72i7hdynmk6r22z27h6tvur"]),
            ("_atproto.twice.example.com.", vec!["did=did:plc:z72i7hdynmk6r22z27h6tvur"]),
            ("_atproto.twice.example.com.", vec!["did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"]),
            ("_atproto.junk.example.com.", vec!["did=not-a-did"]),
        ])
        .await;
        let resolver = dns_resolver(server);
        assert_eq!(resolver.resolve_handle("Alice.Example.com").await.unwrap(), "did:plc:z72i7hdynmk6r22z27h6tvur");
        // Conflicting records are refused rather than guessed.
        assert!(resolver.resolve_handle_dns("twice.example.com").await.is_err());
        assert!(resolver.resolve_handle_dns("junk.example.com").await.is_err());
        // No record: not found by DNS (the caller then tries https://<handle>/.well-known/atproto-did).
        assert_eq!(resolver.resolve_handle_dns("nobody.example.com").await.unwrap(), None);
    }

    fn doc(v: serde_json::Value) -> DidDocument {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn did_document_urls() {
        let resolver = |allow: bool| {
            IdentityResolver::new(
                SafeHttp::new(allow).unwrap(),
                ResolverConfig { plc_directory_url: Url::parse("https://plc.example/dir/").unwrap(), handle_resolver_url: None },
            )
        };
        let url = |allow: bool, did: &str| resolver(allow).did_document_url(did).map(|u| u.to_string());
        let plc = "did:plc:z72i7hdynmk6r22z27h6tvur";
        assert_eq!(url(false, plc).unwrap(), format!("https://plc.example/dir/{plc}"));
        assert_eq!(url(false, "did:web:example.com").unwrap(), "https://example.com/.well-known/did.json");
        assert_eq!(url(true, "did:web:example.com").unwrap(), "https://example.com/.well-known/did.json");
        // Plain http only to a loopback name, and only when loopback is allowed.
        assert_eq!(url(true, "did:web:localhost%3A2583").unwrap(), "http://localhost:2583/.well-known/did.json");
        assert_eq!(url(false, "did:web:localhost%3A2583").unwrap(), "https://localhost:2583/.well-known/did.json");
        assert_eq!(url(true, "did:web:localhost.example.com").unwrap(), "https://localhost.example.com/.well-known/did.json");
        assert!(url(true, "did:key:z6Mk").is_err());
    }

    #[test]
    fn pds_endpoint_and_handle() {
        let d = doc(json!({
            "id": "did:plc:z72i7hdynmk6r22z27h6tvur",
            "alsoKnownAs": ["at://Alice.Test", "https://elsewhere"],
            "service": [
                {"id": "#other", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://evil.example"},
                {"id": "did:plc:z72i7hdynmk6r22z27h6tvur#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example.com"}
            ]
        }));
        assert_eq!(d.pds_endpoint().unwrap().as_str(), "https://pds.example.com/");
        assert_eq!(d.claimed_handle().as_deref(), Some("alice.test"));
        assert!(d.claims_handle("alice.test"));
        assert!(!d.claims_handle("bob.test"));
    }

    #[test]
    fn pds_endpoint_rejects_wrong_type_or_odd_url() {
        for (kind, ep) in [
            ("Other", "https://pds.example.com"),
            ("AtprotoPersonalDataServer", "ftp://pds.example.com"),
            ("AtprotoPersonalDataServer", "https://pds.example.com/path"),
            ("AtprotoPersonalDataServer", "https://u:p@pds.example.com"),
        ] {
            let d = doc(json!({"id": "did:web:x.com", "service": [{"id": "#atproto_pds", "type": kind, "serviceEndpoint": ep}]}));
            assert!(d.pds_endpoint().is_none(), "{kind} {ep}");
        }
    }
}
