//! The one outbound HTTP client for hosts that a user named (handle, DID document, PDS,
//! authorization server). SSRF-guarded:
//!
//! - `https` only (`http` only to loopback when `allow_insecure_loopback` is set);
//! - IP literals are classified directly (the `url` crate normalizes decimal/octal/hex forms);
//! - names are resolved by [`GuardedResolver`] (through the shared caching [`Dns`]), which drops
//!   non-public addresses, so the address that was checked is the address that is connected to;
//! - no redirects, no proxies, 5 s total timeout, bodies capped at 64 KiB (streamed, stopped early).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use url::{Host, Url};

use super::dns::Dns;
use super::error::AtprotoError;
use crate::net::{classify_ip, is_loopback_name, AddrClass};

/// Largest response body we read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest response body of a proxied XRPC call ([`SafeHttp::send_raw`]): records, listings and
/// timelines, not media archives.
pub const MAX_XRPC_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Total time allowed for one request, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn allowed(class: AddrClass, allow_loopback: bool) -> Result<(), String> {
    match class {
        AddrClass::Global => Ok(()),
        AddrClass::Loopback if allow_loopback => Ok(()),
        AddrClass::Loopback => Err("loopback address".to_string()),
        AddrClass::Forbidden(reason) => Err(reason.to_string()),
    }
}

/// The error the resolver returns when every address of a name is refused; found again in
/// reqwest's error chain so the caller sees [`HttpError::Forbidden`].
#[derive(Debug)]
struct SsrfBlocked(String);

impl std::fmt::Display for SsrfBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl StdError for SsrfBlocked {}

/// A reqwest DNS resolver that drops every address the guard refuses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    dns: Dns,
    allow_loopback: bool,
}

impl GuardedResolver {
    pub fn new(dns: Dns, allow_loopback: bool) -> Self {
        Self { dns, allow_loopback }
    }

    /// Resolve `host` and keep only the allowed addresses (error if none is left).
    pub async fn resolve_filtered(&self, host: &str) -> Result<Vec<SocketAddr>, String> {
        let host = host.to_string();
        let found: Vec<SocketAddr> = self
            .dns
            .lookup_ip(&host)
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        let mut refused = None;
        let kept: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match allowed(classify_ip(a.ip()), self.allow_loopback) {
                Ok(()) => true,
                Err(r) => {
                    refused = Some(r);
                    false
                }
            })
            .collect();
        if kept.is_empty() {
            return Err(match refused {
                Some(r) => format!("{host} resolves to a refused address ({r})"),
                None => format!("{host} has no addresses"),
            });
        }
        Ok(kept)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match this.resolve_filtered(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(reason) => Err(Box::new(SsrfBlocked(reason)) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

/// Transport-level failure of a guarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Refused by the SSRF guard (before or after DNS resolution).
    Forbidden(String),
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The body exceeded [`MAX_BODY_BYTES`].
    TooLarge,
    /// Connection, TLS or protocol failure.
    Transport(String),
}

impl HttpError {
    /// Turn into the module error; `Forbidden` stays `Forbidden`, other failures are given the
    /// context of the step (`PdsUnreachable`, `DidResolution`, ...).
    pub fn into_error(self, context: impl FnOnce(String) -> AtprotoError) -> AtprotoError {
        match self {
            HttpError::Forbidden(r) => AtprotoError::Forbidden(r),
            HttpError::Timeout => context("timed out".into()),
            HttpError::TooLarge => context("response too large".into()),
            HttpError::Transport(e) => context(e),
        }
    }
}

/// What an outbound request is for: the `endpoint` label of `atsso_upstream_requests_total`
/// and `atsso_upstream_request_duration_seconds` (a fixed set, never a URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Par,
    Token,
    Refresh,
    Revoke,
    ResolveHandle,
    DidDoc,
    Metadata,
    GetRecord,
    GetSession,
    BackchannelLogout,
    /// A tenant app's call proxied to the user's PDS (`/xrpc/{nsid}`).
    Xrpc,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Par => "par",
            Self::Token => "token",
            Self::Refresh => "refresh",
            Self::Revoke => "revoke",
            Self::ResolveHandle => "resolve_handle",
            Self::DidDoc => "did_doc",
            Self::Metadata => "metadata",
            Self::GetRecord => "get_record",
            Self::GetSession => "get_session",
            Self::BackchannelLogout => "backchannel_logout",
            Self::Xrpc => "xrpc",
        }
    }
}

/// Counts one outbound request and its latency (every attempt, retries included).
fn observe(endpoint: Endpoint, started: std::time::Instant, result: Result<u16, &HttpError>) {
    let outcome = match result {
        Ok(status) if status < 400 => "ok",
        Ok(status) if status < 500 => "client_error",
        Ok(_) => "server_error",
        Err(HttpError::Forbidden(_)) => "refused",
        Err(HttpError::Timeout) => "timeout",
        Err(HttpError::TooLarge) => "too_large",
        Err(HttpError::Transport(_)) => "transport_error",
    };
    metrics::counter!("atsso_upstream_requests_total", "endpoint" => endpoint.as_str(), "outcome" => outcome).increment(1);
    metrics::histogram!("atsso_upstream_request_duration_seconds", "endpoint" => endpoint.as_str()).record(started.elapsed().as_secs_f64());
}

/// A fully read (bounded) response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// `(error, error_description)` of an OAuth / XRPC JSON error body, when present.
    pub fn oauth_error(&self) -> Option<(String, Option<String>)> {
        let v: serde_json::Value = self.json().ok()?;
        let error = v.get("error")?.as_str()?.to_string();
        let description =
            v.get("error_description").or_else(|| v.get("message")).and_then(|d| d.as_str()).map(|d| d.chars().take(300).collect());
        Some((error, description))
    }

    /// Turn a non-2xx answer into `UpstreamError` (error code and description from the body).
    pub fn upstream_error(&self) -> AtprotoError {
        let (error, description) = self.oauth_error().unwrap_or_else(|| ("http_error".to_string(), None));
        AtprotoError::UpstreamError { status: self.status, error, description }
    }
}

/// The SSRF-guarded client.
#[derive(Debug, Clone)]
pub struct SafeHttp {
    /// Public addresses over https only.
    strict: reqwest::Client,
    /// The same guard, plus loopback (also over http).
    loopback: reqwest::Client,
    allow_insecure_loopback: bool,
    /// The resolver both clients use; also asked for handles' TXT records.
    dns: Dns,
}

fn build_client(dns: &Dns, allow_loopback: bool) -> Result<reqwest::Client, AtprotoError> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(dns.clone(), allow_loopback)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("atsso/", env!("CARGO_PKG_VERSION")))
        .https_only(!allow_loopback)
        .build()
        .map_err(|e| AtprotoError::Config(format!("cannot build HTTP client: {e}")))
}

impl SafeHttp {
    /// `allow_insecure_loopback` applies to the upstream fetches ([`SafeHttp::get`],
    /// [`SafeHttp::post_form`]); [`SafeHttp::post_form_to`] decides per call.
    ///
    /// Resolves through the system's DNS configuration ([`Dns::system`]).
    pub fn new(allow_insecure_loopback: bool) -> Result<Self, AtprotoError> {
        Self::with_dns(allow_insecure_loopback, Dns::system())
    }

    /// Like [`SafeHttp::new`], resolving through `dns`.
    pub fn with_dns(allow_insecure_loopback: bool, dns: Dns) -> Result<Self, AtprotoError> {
        Ok(Self { strict: build_client(&dns, false)?, loopback: build_client(&dns, true)?, allow_insecure_loopback, dns })
    }

    /// The shared resolver (handle TXT lookups use it too).
    pub fn dns(&self) -> &Dns {
        &self.dns
    }

    fn client(&self, allow_loopback: bool) -> &reqwest::Client {
        if allow_loopback {
            &self.loopback
        } else {
            &self.strict
        }
    }

    pub fn allow_insecure_loopback(&self) -> bool {
        self.allow_insecure_loopback
    }

    /// Check a URL before any network access (scheme, userinfo, literal IPs, loopback names).
    pub fn check_url(&self, url: &Url) -> Result<(), HttpError> {
        check_url(url, self.allow_insecure_loopback)
    }

    /// GET with extra headers.
    pub async fn get(&self, endpoint: Endpoint, url: &Url, headers: &[(&str, String)]) -> Result<HttpResponse, HttpError> {
        let started = std::time::Instant::now();
        let result = match self.send(Method::GET, url, headers, None, self.allow_insecure_loopback).await {
            Ok(resp) => read_bounded(resp).await,
            Err(e) => Err(e),
        };
        observe(endpoint, started, result.as_ref().map(|r| r.status));
        result
    }

    /// POST an `application/x-www-form-urlencoded` body.
    pub async fn post_form(
        &self,
        endpoint: Endpoint,
        url: &Url,
        headers: &[(&str, String)],
        form: &[(&str, String)],
    ) -> Result<HttpResponse, HttpError> {
        let started = std::time::Instant::now();
        let result = match self.send(Method::POST, url, headers, Some(Body::Form(form)), self.allow_insecure_loopback).await {
            Ok(resp) => read_bounded(resp).await,
            Err(e) => Err(e),
        };
        observe(endpoint, started, result.as_ref().map(|r| r.status));
        result
    }

    /// POST a form to a URL that a tenant app chose (back-channel logout) and return the status;
    /// the body is not read. Same guard, timeout and no redirects as the upstream fetches.
    /// `allow_loopback` (also over http) only for URLs an admin registered; private and other
    /// non-public addresses are refused whatever it says.
    pub async fn post_form_to(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        form: &[(&str, String)],
        allow_loopback: bool,
    ) -> Result<u16, HttpError> {
        let started = std::time::Instant::now();
        let result = self.send(Method::POST, url, headers, Some(Body::Form(form)), allow_loopback).await.map(|resp| resp.status().as_u16());
        observe(Endpoint::BackchannelLogout, started, result.as_ref().copied());
        result
    }

    /// Any method with an optional raw body (a proxied XRPC call): the response is read up to
    /// `max_response_bytes`. Same guard, timeout and no redirects as the other upstream fetches.
    pub async fn send_raw(
        &self,
        endpoint: Endpoint,
        method: &str,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<&RawBody>,
        max_response_bytes: usize,
    ) -> Result<HttpResponse, HttpError> {
        let started = std::time::Instant::now();
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| HttpError::Transport(format!("invalid method {method}")))?;
        let result = match self.send(method, url, headers, body.map(Body::Raw), self.allow_insecure_loopback).await {
            Ok(resp) => read_bounded_to(resp, max_response_bytes).await,
            Err(e) => Err(e),
        };
        observe(endpoint, started, result.as_ref().map(|r| r.status));
        result
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<Body<'_>>,
        allow_loopback: bool,
    ) -> Result<reqwest::Response, HttpError> {
        check_url(url, allow_loopback)?;
        let mut req = self.client(allow_loopback).request(method, url.clone()).header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|_| HttpError::Transport(format!("invalid value for header {name}")))?;
            req = req.header(*name, value);
        }
        match body {
            Some(Body::Form(form)) => req = req.form(form),
            Some(Body::Raw(raw)) => {
                let content_type =
                    HeaderValue::from_str(&raw.content_type).map_err(|_| HttpError::Transport("invalid content type".into()))?;
                req = req.header(reqwest::header::CONTENT_TYPE, content_type).body(raw.bytes.clone());
            }
            None => {}
        }
        req.send().await.map_err(map_reqwest_error)
    }
}

/// A request body sent as is, with its content type.
#[derive(Debug, Clone)]
pub struct RawBody {
    pub bytes: bytes::Bytes,
    pub content_type: String,
}

/// What a guarded request carries.
enum Body<'a> {
    Form(&'a [(&'a str, String)]),
    Raw(&'a RawBody),
}

/// Reads a response body, at most [`MAX_BODY_BYTES`] (stopped early).
async fn read_bounded(resp: reqwest::Response) -> Result<HttpResponse, HttpError> {
    read_bounded_to(resp, MAX_BODY_BYTES).await
}

/// Reads a response body, at most `max` bytes (stopped early).
async fn read_bounded_to(mut resp: reqwest::Response, max: usize) -> Result<HttpResponse, HttpError> {
    if let Some(len) = resp.content_length() {
        if len > max as u64 {
            return Err(HttpError::TooLarge);
        }
    }
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(map_reqwest_error)? {
        if body.len() + chunk.len() > max {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse { status, headers, body })
}

fn map_reqwest_error(e: reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(blocked) = err.downcast_ref::<SsrfBlocked>() {
            return HttpError::Forbidden(blocked.0.clone());
        }
        source = err.source();
    }
    if e.is_timeout() {
        return HttpError::Timeout;
    }
    // Only the chain's text, never the URL's query (reqwest strips nothing sensitive we send:
    // tokens travel in headers and bodies, not in URLs).
    let mut chain = String::new();
    let mut source = StdError::source(&e);
    while let Some(err) = source {
        chain.push_str(": ");
        chain.push_str(&err.to_string());
        source = err.source();
    }
    HttpError::Transport(format!("{}{chain}", e.without_url()))
}

/// The pre-flight check used by [`SafeHttp`]; public for tests and for callers that want to
/// refuse a URL before storing it.
pub fn check_url(url: &Url, allow_insecure_loopback: bool) -> Result<(), HttpError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HttpError::Forbidden("URL with credentials".into()));
    }
    let host = url.host().ok_or_else(|| HttpError::Forbidden("URL without host".into()))?;
    let class = match &host {
        Host::Ipv4(ip) => classify_ip(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => classify_ip(IpAddr::V6(*ip)),
        Host::Domain(d) => {
            if is_loopback_name(d) {
                AddrClass::Loopback
            } else if !d.contains('.') {
                return Err(HttpError::Forbidden(format!("single-label host {d}")));
            } else {
                AddrClass::Global // checked again after DNS resolution
            }
        }
    };
    allowed(class, allow_insecure_loopback).map_err(|r| HttpError::Forbidden(format!("{host}: {r}")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_loopback && class == AddrClass::Loopback => Ok(()),
        "http" => Err(HttpError::Forbidden(format!("plain http to {host} (https required)"))),
        other => Err(HttpError::Forbidden(format!("scheme {other} not allowed"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn refused(u: &str) -> bool {
        matches!(check_url(&Url::parse(u).unwrap(), false), Err(HttpError::Forbidden(_)))
    }

    #[test]
    fn public_https_allowed() {
        assert!(check_url(&Url::parse("https://bsky.social/x").unwrap(), false).is_ok());
        assert!(check_url(&Url::parse("https://8.8.8.8/").unwrap(), false).is_ok());
        assert!(check_url(&Url::parse("https://[2606:4700::1111]/").unwrap(), false).is_ok());
    }

    #[test]
    fn plain_http_refused() {
        assert!(refused("http://bsky.social/"));
        assert!(refused("ftp://bsky.social/"));
        assert!(refused("file:///etc/passwd"));
    }

    #[test]
    fn loopback_refused_by_default() {
        assert!(refused("https://127.0.0.1/"));
        assert!(refused("https://127.1.2.3/"));
        assert!(refused("https://[::1]/"));
        assert!(refused("https://localhost/"));
        assert!(refused("https://foo.localhost/"));
        assert!(refused("http://localhost:2583/"));
    }

    #[test]
    fn obfuscated_ipv4_literals_refused() {
        // The url crate normalizes these to dotted IPv4: make sure that happened and is refused.
        for u in [
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://0x7f000001/",
            "https://017700000001/",
            "https://127.1/",
            "https://0/",
            "http://2130706433/",
        ] {
            let parsed = Url::parse(u).unwrap();
            assert!(matches!(parsed.host(), Some(Host::Ipv4(_))), "{u} not normalized to IPv4");
            assert!(refused(u), "{u} must be refused");
        }
    }

    #[test]
    fn private_ranges_refused() {
        for u in [
            "https://10.0.0.1/",
            "https://172.16.0.1/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://192.0.2.1/",
            "https://198.51.100.7/",
            "https://203.0.113.9/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://[fc00::1]/",
            "https://[fd12:3456::1]/",
            "https://[fe80::1]/",
            "https://[::]/",
            "https://[ff02::1]/",
            "https://[2001:db8::1]/",
        ] {
            assert!(refused(u), "{u} must be refused");
        }
        // Not private: just outside the ranges.
        assert!(!refused("https://172.32.0.1/"));
        assert!(!refused("https://100.128.0.1/"));
    }

    #[test]
    fn ipv4_mapped_and_embedded_ipv6_refused() {
        assert!(refused("https://[::ffff:127.0.0.1]/"));
        assert!(refused("https://[::ffff:7f00:1]/"));
        assert!(refused("https://[::ffff:10.0.0.1]/"));
        assert!(refused("https://[::ffff:169.254.169.254]/"));
        assert!(refused("https://[::127.0.0.1]/"));
        assert!(refused("https://[64:ff9b::a00:1]/"));
        assert!(refused("https://[2002:7f00:1::]/"));
        // the mapped loopback is refused even when loopback is allowed
        assert!(check_url(&Url::parse("http://[::ffff:127.0.0.1]/").unwrap(), true).is_err());
        assert_eq!(classify_ip("::ffff:8.8.8.8".parse().unwrap()), AddrClass::Global);
    }

    #[test]
    fn local_use_nat64_and_siit_are_not_global() {
        // RFC 8215 local-use NAT64 (64:ff9b:1::/48): the embedded IPv4 address is the operator's
        // own business, so the whole range is refused.
        for ip in ["64:ff9b:1::1", "64:ff9b:1::808:808", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "64:ff9b:1:0:0:0:a00:1"] {
            assert!(matches!(classify_ip(ip.parse().unwrap()), AddrClass::Forbidden(_)), "{ip}");
        }
        // RFC 2765 SIIT IPv4-translated addresses (::ffff:0:0:0/96).
        for ip in ["::ffff:0:808:808", "::ffff:0:7f00:1", "::ffff:0:a00:1", "::ffff:0:0:0", "::ffff:0:ffff:ffff"] {
            assert!(matches!(classify_ip(ip.parse().unwrap()), AddrClass::Forbidden(_)), "{ip}");
        }
        assert!(refused("https://[64:ff9b:1::808:808]/"));
        assert!(refused("https://[::ffff:0:808:808]/"));
        assert!(check_url(&Url::parse("http://[::ffff:0:7f00:1]/").unwrap(), true).is_err(), "not loopback either");
        // Just outside: the well-known NAT64 prefix with a public IPv4 address stays global.
        assert_eq!(classify_ip("64:ff9b::808:808".parse().unwrap()), AddrClass::Global);
        assert_eq!(classify_ip("64:ff9b:2::1".parse().unwrap()), AddrClass::Global);
    }

    #[test]
    fn credentials_and_single_label_refused() {
        assert!(refused("https://user:pw@bsky.social/"));
        assert!(refused("https://intranet/"));
    }

    #[test]
    fn insecure_loopback_allows_only_loopback() {
        let ok = |u: &str| check_url(&Url::parse(u).unwrap(), true).is_ok();
        assert!(ok("http://localhost:2583/"));
        assert!(ok("http://127.0.0.1:2583/"));
        assert!(ok("http://[::1]:2583/"));
        assert!(ok("https://bsky.social/"));
        assert!(!ok("http://bsky.social/"));
        assert!(!ok("http://10.0.0.1/"));
        assert!(!ok("https://192.168.0.1/"));
        assert!(!ok("https://169.254.169.254/"));
    }

    #[tokio::test]
    async fn resolver_filters_after_dns() {
        // "localhost" resolves to loopback: dropped unless allowed.
        let strict = GuardedResolver::new(Dns::system(), false);
        let err = strict.resolve_filtered("localhost").await.unwrap_err();
        assert!(err.contains("refused"), "{err}");
        let name = Name::from_str("localhost").unwrap();
        assert!(Resolve::resolve(&strict, name).await.is_err());

        let lax = GuardedResolver::new(Dns::system(), true);
        let addrs = lax.resolve_filtered("localhost").await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn resolver_filters_what_the_shared_dns_answers() {
        let (server, _) = crate::atproto::dns::testing::dns_server(vec![
            ("internal.example.com.", vec!["10.0.0.1"]),
            ("mixed.example.com.", vec!["10.0.0.1", "8.8.8.8"]),
        ])
        .await;
        let guard = GuardedResolver::new(Dns::with_server(server), false);
        let err = guard.resolve_filtered("internal.example.com").await.unwrap_err();
        assert!(err.contains("refused"), "{err}");
        let kept = guard.resolve_filtered("mixed.example.com").await.unwrap();
        assert_eq!(kept.iter().map(|a| a.ip()).collect::<Vec<_>>(), vec![IpAddr::from([8, 8, 8, 8])]);
    }

    #[tokio::test]
    async fn dns_refusal_surfaces_as_forbidden() {
        // Bypass the pre-flight check to prove the resolver itself refuses, and that the
        // refusal is recognised in reqwest's error chain.
        let http = SafeHttp::new(false).unwrap();
        let err = http.strict.get("https://localhost:9/").send().await.map_err(map_reqwest_error).unwrap_err();
        assert!(matches!(err, HttpError::Forbidden(_)), "{err:?}");
    }

    #[tokio::test]
    async fn post_form_to_allows_loopback_only_when_asked_and_never_private() {
        let http = SafeHttp::new(false).unwrap();
        let form = [("logout_token", "t".to_string())];
        // A closed loopback port: refused by the guard unless loopback is allowed, then a
        // plain connection failure (so the request was let through).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{}/bc", closed.local_addr().unwrap().port())).unwrap();
        drop(closed);
        assert!(matches!(http.post_form_to(&url, &[], &form, false).await, Err(HttpError::Forbidden(_))));
        assert!(matches!(http.post_form_to(&url, &[], &form, true).await, Err(HttpError::Transport(_))));
        // The name localhost is resolved by the guard too.
        let by_name = Url::parse("https://localhost:9/bc").unwrap();
        assert!(matches!(http.post_form_to(&by_name, &[], &form, false).await, Err(HttpError::Forbidden(_))));
        // Private, link-local and mapped addresses are refused before any connection, loopback
        // allowed or not (no packet is sent: the check runs before the request is built).
        for u in ["https://10.0.0.1/bc", "https://169.254.169.254/latest", "https://[::ffff:192.168.0.1]/bc", "http://10.0.0.1/bc"] {
            let url = Url::parse(u).unwrap();
            for allow in [false, true] {
                assert!(matches!(http.post_form_to(&url, &[], &form, allow).await, Err(HttpError::Forbidden(_))), "{u} {allow}");
            }
        }
    }

    #[tokio::test]
    async fn forbidden_is_reported_from_request() {
        let http = SafeHttp::new(false).unwrap();
        let err = http.get(Endpoint::Metadata, &Url::parse("https://127.0.0.1:9/").unwrap(), &[]).await.unwrap_err();
        assert!(matches!(err, HttpError::Forbidden(_)), "{err:?}");
    }
}

/// Property tests of the address classifier and `check_url`: every input gives a clear answer,
/// and no IPv4 address outside the public internet gets through in any of its spellings.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// IPv4 ranges that are never public: (network, prefix length).
    const NOT_PUBLIC_V4: &[([u8; 4], u32)] = &[
        ([127, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([172, 16, 0, 0], 12),
        ([192, 168, 0, 0], 16),
        ([169, 254, 0, 0], 16),
        ([0, 0, 0, 0], 8),
        ([100, 64, 0, 0], 10),
        ([192, 0, 0, 0], 24),
        ([192, 0, 2, 0], 24),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([198, 18, 0, 0], 15),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4),
    ];

    fn not_public_v4() -> impl Strategy<Value = Ipv4Addr> {
        (0..NOT_PUBLIC_V4.len(), any::<u32>()).prop_map(|(i, host)| {
            let (net, len) = NOT_PUBLIC_V4[i];
            let mask = u32::MAX << (32 - len);
            Ipv4Addr::from((u32::from(Ipv4Addr::from(net)) & mask) | (host & !mask))
        })
    }

    /// IPv6 spellings that embed an IPv4 address and must never make a non-public one public.
    fn embeddings(ip: Ipv4Addr) -> [(&'static str, Ipv6Addr); 5] {
        let [a, b, c, d] = ip.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        [
            ("IPv4-mapped", ip.to_ipv6_mapped()),
            ("NAT64", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
            ("local-use NAT64", Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo)),
            ("SIIT", Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo)),
            ("6to4", Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1)),
        ]
    }

    fn https(ip: IpAddr) -> Url {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        Url::parse(&format!("https://{host}/x")).unwrap()
    }

    proptest! {
        #[test]
        fn non_public_ipv4_is_refused_in_every_spelling(ip in not_public_v4(), allow_loopback in any::<bool>()) {
            let class = classify_ip(IpAddr::V4(ip));
            prop_assert_ne!(class, AddrClass::Global);
            let n = u32::from(ip);
            for text in [format!("https://{ip}/"), format!("https://{n}/"), format!("https://0x{n:x}/"), format!("https://0{n:o}/")] {
                let url = Url::parse(&text).unwrap();
                let answer = check_url(&url, allow_loopback);
                if allow_loopback && class == AddrClass::Loopback {
                    prop_assert!(answer.is_ok(), "{text}: {answer:?}");
                } else {
                    prop_assert!(matches!(answer, Err(HttpError::Forbidden(_))), "{text}: {answer:?}");
                }
            }
            for (form, v6) in embeddings(ip) {
                prop_assert!(matches!(classify_ip(IpAddr::V6(v6)), AddrClass::Forbidden(_)), "{form} {v6}");
                for allow in [false, true] {
                    prop_assert!(matches!(check_url(&https(IpAddr::V6(v6)), allow), Err(HttpError::Forbidden(_))), "{form} {v6}");
                }
            }
            // The deprecated IPv4-compatible form (::a.b.c.d) is never public either.
            let compatible = Ipv6Addr::from(u128::from(n));
            prop_assert_ne!(classify_ip(IpAddr::V6(compatible)), AddrClass::Global, "{}", compatible);
        }

        #[test]
        fn ipv4_mapped_is_judged_by_its_ipv4_address(ip in any::<Ipv4Addr>()) {
            let v4 = classify_ip(IpAddr::V4(ip)) == AddrClass::Global;
            prop_assert_eq!(classify_ip(IpAddr::V6(ip.to_ipv6_mapped())) == AddrClass::Global, v4);
            let [_, (_, nat64), ..] = embeddings(ip);
            prop_assert_eq!(classify_ip(IpAddr::V6(nat64)) == AddrClass::Global, v4, "{}", nat64);
        }

        #[test]
        fn std_non_global_ipv4_is_never_global(ip in any::<Ipv4Addr>()) {
            let flagged = ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_broadcast() || ip.is_documentation()
                || ip.is_multicast() || ip.is_unspecified();
            prop_assert!(!flagged || classify_ip(IpAddr::V4(ip)) != AddrClass::Global, "{}", ip);
        }

        #[test]
        fn non_global_ipv6_is_never_global(ip in any::<Ipv6Addr>()) {
            let s = ip.segments();
            let flagged = ip.is_loopback() || ip.is_unspecified() || ip.is_multicast()
                || s[0] & 0xfe00 == 0xfc00 // unique local
                || s[0] & 0xffc0 == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64
                || (s[0..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0); // SIIT
            prop_assert!(!flagged || classify_ip(IpAddr::V6(ip)) != AddrClass::Global, "{}", ip);
        }

        #[test]
        fn check_url_agrees_with_the_classifier(ip in any::<IpAddr>(), allow_loopback in any::<bool>()) {
            let class = classify_ip(ip);
            let answer = check_url(&https(ip), allow_loopback);
            let expected = class == AddrClass::Global || (allow_loopback && class == AddrClass::Loopback);
            prop_assert_eq!(answer.is_ok(), expected, "{} {:?} {:?}", ip, class, answer);
            prop_assert!(answer.as_ref().err().is_none_or(|e| matches!(e, HttpError::Forbidden(_))));
        }

        #[test]
        fn any_url_gets_a_clear_answer(text in any::<String>(), allow_loopback in any::<bool>()) {
            if let Ok(url) = Url::parse(&text) {
                check_answer(&url, allow_loopback)?;
            }
        }

        #[test]
        fn url_like_strings_get_a_clear_answer(
            scheme in "(https?|ftp|file|data|javascript)",
            host in "[a-zA-Z0-9.:%@\\[\\]_-]{0,40}",
            rest in "[/?#a-z0-9%@.:-]{0,20}",
            allow_loopback in any::<bool>(),
        ) {
            if let Ok(url) = Url::parse(&format!("{scheme}://{host}{rest}")) {
                check_answer(&url, allow_loopback)?;
            }
        }
    }

    /// An accepted URL is https (or http to loopback when allowed), has a host and no credentials.
    fn check_answer(url: &Url, allow_loopback: bool) -> Result<(), TestCaseError> {
        match check_url(url, allow_loopback) {
            Ok(()) => {
                prop_assert!(url.username().is_empty() && url.password().is_none(), "{}", url);
                let host = url.host();
                prop_assert!(host.is_some(), "{}", url);
                match url.scheme() {
                    "https" => {}
                    "http" => prop_assert!(allow_loopback, "{}", url),
                    other => prop_assert!(false, "scheme {} accepted: {}", other, url),
                }
                match host {
                    Some(Host::Ipv4(ip)) => prop_assert!(!ip.is_private() && !ip.is_link_local() && !ip.is_unspecified(), "{}", url),
                    Some(Host::Domain(d)) => prop_assert!(d.contains('.') && !d.trim_end_matches('.').eq_ignore_ascii_case("localhost")),
                    _ => {}
                }
            }
            Err(e) => prop_assert!(matches!(e, HttpError::Forbidden(_)), "{:?}", e),
        }
        Ok(())
    }
}
