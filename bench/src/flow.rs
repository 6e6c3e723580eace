//! The OIDC flows the scenarios are made of: discovery, authorize (with an
//! existing SSO session and remembered consent), code exchange, refresh,
//! userinfo and introspection. Provider-agnostic: everything comes from the
//! target file and the provider's discovery document.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use reqwest::Client;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::raw::Http;

/// The target contract: what a provider's set-up prints after `PEER_READY `.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// Display name (e.g. "atsso", "oidc-provider", "better-auth").
    pub name: String,
    /// Issuer; discovery is read from `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    #[serde(default = "default_scope")]
    pub scope: String,
    /// `Cookie` header value of a logged-in browser session whose consent for
    /// this client (and `scope`) is remembered.
    pub cookie: String,
    /// Optional: one such session per worker (worker i uses `cookies[i % len]`),
    /// for providers that rotate the session cookie on every authorize
    /// (oidc-provider after an interaction), where workers sharing one
    /// session would log each other out.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Extra authorize query parameters (e.g. `{"prompt": "consent"}`).
    #[serde(default)]
    pub authorize_extra: BTreeMap<String, String>,
    /// Optional override of the discovery URL (defaults to the issuer's).
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Free-form facts the set-up wants in the report (versions, storage...).
    #[serde(default)]
    pub notes: Option<String>,
    /// PID of the server process, for peak-RSS sampling (optional).
    #[serde(default)]
    pub pid: Option<u32>,
    /// Optional: `jwt` or `opaque`, the access tokens this configuration
    /// issues (carried into the report; a JWT access token audienced to a
    /// resource server is not for userinfo/introspection).
    #[serde(default)]
    pub access_token_format: Option<String>,
}

fn default_scope() -> String {
    "openid profile offline_access".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

/// Everything a worker needs, resolved once.
#[derive(Debug, Clone)]
pub struct Env {
    pub target: Target,
    pub discovery_url: String,
    pub disco: Discovery,
    /// `Authorization` header value for client_secret_basic.
    pub basic_auth: String,
    pub issuer_origin: url::Origin,
    pub redirect: Url,
    pub token_url: Url,
    pub userinfo_url: Option<Url>,
    pub introspection_url: Option<Url>,
}

impl Env {
    /// Worker `i`'s browser session as the target gave it.
    pub fn jar_for(&self, i: usize) -> Jar {
        if self.target.cookies.is_empty() {
            Jar::from_header(&self.target.cookie)
        } else {
            Jar::from_header(&self.target.cookies[i % self.target.cookies.len()])
        }
    }

    pub async fn resolve(target: Target, timeout: Duration) -> Result<Env, String> {
        let discovery_url = target
            .discovery_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/openid-configuration", target.issuer.trim_end_matches('/')));
        let client = discovery_client(timeout)?;
        let resp = client.get(&discovery_url).send().await.map_err(|e| format!("GET {discovery_url}: {}", err_chain(&e)))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("GET {discovery_url}: HTTP {status}: {}", snippet(&body)));
        }
        let disco: Discovery = serde_json::from_str(&body).map_err(|e| format!("discovery document: {e}: {}", snippet(&body)))?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(&target.client_id), enc(&target.client_secret))));
        let issuer_origin = Url::parse(&disco.authorization_endpoint).map_err(|e| format!("authorization_endpoint: {e}"))?.origin();
        let redirect = Url::parse(&target.redirect_uri).map_err(|e| format!("redirect_uri: {e}"))?;
        let parse = |name: &str, url: &str| Url::parse(url).map_err(|e| format!("{name} {url:?}: {e}"));
        let token_url = parse("token_endpoint", &disco.token_endpoint)?;
        let userinfo_url = disco.userinfo_endpoint.as_deref().map(|u| parse("userinfo_endpoint", u)).transpose()?;
        let introspection_url = disco.introspection_endpoint.as_deref().map(|u| parse("introspection_endpoint", u)).transpose()?;
        Ok(Env { basic_auth: basic, token_url, userinfo_url, introspection_url, target, discovery_url, disco, issuer_origin, redirect })
    }
}

/// One HTTP/1.1 keep-alive connection's worth of client: each worker owns one.
pub fn new_client(timeout: Duration) -> Result<Http, String> {
    Ok(Http::new(timeout))
}

/// reqwest, for the one-off discovery read.
fn discovery_client(timeout: Duration) -> Result<Client, String> {
    Client::builder()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

pub fn err_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub fn snippet(body: &str) -> String {
    let t: String = body.chars().take(300).collect();
    t.replace('\n', " ")
}

fn rand_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A code from a completed authorize, with the PKCE verifier that goes with it.
pub struct Code {
    pub code: String,
    pub verifier: String,
    /// HTTP requests the authorize took (1 = direct 302 to the redirect_uri).
    pub hops: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<Instant>,
    /// RS256 signatures this response carried (id_token, JWT access/refresh
    /// tokens): what the signing limit is divided by.
    pub rs256: u32,
    /// Which tokens of the response are JWS and with which alg, e.g.
    /// "access_token ES256, id_token RS256".
    pub signed: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    id_token: Option<String>,
}

/// The `alg` of a compact JWS (None for opaque tokens).
fn jws_alg(tok: &str) -> Option<String> {
    let mut parts = tok.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(String::from))
}

fn parse_tokens(body: &str, sent_at: Instant) -> Result<Tokens, String> {
    let t: TokenResponse = serde_json::from_str(body).map_err(|e| format!("token response: {e}: {}", snippet(body)))?;
    let exp = t.expires_in.and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let mut rs256 = 0;
    let mut signed = Vec::new();
    for (name, tok) in
        [("access_token", Some(&t.access_token)), ("refresh_token", t.refresh_token.as_ref()), ("id_token", t.id_token.as_ref())]
    {
        if let Some(alg) = tok.and_then(|x| jws_alg(x)) {
            if alg == "RS256" {
                rs256 += 1;
            }
            signed.push(format!("{name} {alg}"));
        }
    }
    Ok(Tokens {
        rs256,
        signed: signed.join(", "),
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        expires_at: exp.map(|s| sent_at + Duration::from_secs_f64(s.max(0.0))),
    })
}

/// A minimal per-worker cookie jar, as a browser keeps one: it starts from the
/// target's session cookie and applies `Set-Cookie` seen on the provider's
/// own hops (a rotated session cookie is kept for the next authorize).
/// Cookies are path-scoped; after each authorize only `Path=/` cookies are
/// kept (the others belong to that one flow).
pub struct Jar(Vec<(String, String, String)>); // (name, path, value)

impl Jar {
    pub fn from_header(h: &str) -> Jar {
        Jar(h
            .split(';')
            .filter_map(|p| {
                let p = p.trim();
                let (n, v) = p.split_once('=')?;
                Some((n.trim().to_string(), "/".to_string(), v.trim().to_string()))
            })
            .collect())
    }
    fn apply(&mut self, set_cookies: &[String]) {
        for sc in set_cookies {
            let mut parts = sc.split(';');
            let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let mut path = "/".to_string();
            let mut expired = false;
            for a in parts {
                let a = a.trim();
                let lower = a.to_ascii_lowercase();
                if let Some(p) = lower.strip_prefix("path=") {
                    path = a[a.len() - p.len()..].to_string();
                } else if lower == "max-age=0"
                    || lower.starts_with("max-age=-")
                    || (lower.starts_with("expires=") && lower.contains("1970"))
                {
                    expired = true;
                }
            }
            self.0.retain(|(n, p, _)| !(n == name && *p == path));
            if !expired && !value.is_empty() {
                self.0.push((name.to_string(), path, value.to_string()));
            }
        }
    }
    fn header_for(&self, req_path: &str) -> String {
        self.0
            .iter()
            .filter(|(_, p, _)| {
                req_path == p || (req_path.starts_with(p.as_str()) && (p.ends_with('/') || req_path.as_bytes().get(p.len()) == Some(&b'/')))
            })
            .map(|(n, _, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    fn end_flow(&mut self) {
        self.0.retain(|(_, p, _)| p == "/");
    }
}

const MAX_HOPS: u32 = 10;

/// GET the authorization endpoint with the session cookie; follow redirects on
/// the provider's own origin (carrying cookies set on the way) until a
/// Location on the redirect_uri carries `code=`.
pub async fn authorize(c: &mut Http, env: &Env, jar: &mut Jar) -> Result<Code, String> {
    let r = authorize_inner(c, env, jar).await;
    jar.end_flow();
    r
}

async fn authorize_inner(c: &mut Http, env: &Env, jar: &mut Jar) -> Result<Code, String> {
    let verifier = rand_b64(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = rand_b64(12);
    let nonce = rand_b64(12);
    let t = &env.target;
    let mut url = Url::parse(&env.disco.authorization_endpoint).map_err(|e| e.to_string())?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &t.client_id)
            .append_pair("redirect_uri", &t.redirect_uri)
            .append_pair("scope", &t.scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in &t.authorize_extra {
            q.append_pair(k, v);
        }
    }
    let mut hops = 0u32;
    loop {
        hops += 1;
        let cookie = jar.header_for(url.path());
        let resp = c.send("GET", &url, &[("Cookie", &cookie)], b"").await.map_err(|e| format!("authorize hop {hops}: {e}"))?;
        let status = resp.status;
        if !(300..400).contains(&status) {
            let body = resp.text();
            return Err(format!(
                "authorize hop {hops} ({}): HTTP {status} instead of a redirect (no session/consent?): {}",
                url.path(),
                snippet(&body)
            ));
        }
        jar.apply(&resp.set_cookies);
        let loc = resp.location.ok_or_else(|| format!("authorize hop {hops}: HTTP {status} without Location"))?;
        let next = url.join(&loc).map_err(|e| format!("bad Location {loc:?}: {e}"))?;
        if next.origin() == env.redirect.origin() && next.path() == env.redirect.path() {
            let mut code = None;
            let mut got_state = None;
            let mut error = None;
            for (k, v) in next.query_pairs() {
                match &*k {
                    "code" => code = Some(v.into_owned()),
                    "state" => got_state = Some(v.into_owned()),
                    "error" => error = Some(next.query().unwrap_or_default().to_string()),
                    _ => {}
                }
            }
            if let Some(e) = error {
                return Err(format!("authorize error at redirect_uri: {e}"));
            }
            let code = code.ok_or_else(|| format!("redirect_uri without code: {next}"))?;
            if got_state.as_deref() != Some(state.as_str()) {
                return Err(format!("state mismatch at redirect_uri: {next}"));
            }
            return Ok(Code { code, verifier, hops });
        }
        if next.origin() != env.issuer_origin {
            return Err(format!("authorize hop {hops}: redirect off the provider: {next}"));
        }
        if hops >= MAX_HOPS {
            return Err(format!("authorize: more than {MAX_HOPS} hops, last {next}"));
        }
        url = next;
    }
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn token_request(c: &mut Http, env: &Env, form: &[(&str, &str)]) -> Result<Tokens, String> {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let sent = Instant::now();
    let resp = c
        .send("POST", &env.token_url, &[("Authorization", &env.basic_auth), FORM], body.as_bytes())
        .await
        .map_err(|e| format!("token: {e}"))?;
    let status = resp.status;
    let text = resp.text();
    if status != 200 {
        return Err(format!("token: HTTP {status}: {}", snippet(&text)));
    }
    parse_tokens(&text, sent)
}

/// Code → token exchange: confidential client, client_secret_basic, PKCE.
pub async fn exchange(c: &mut Http, env: &Env, code: &Code) -> Result<Tokens, String> {
    token_request(
        c,
        env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code.code),
            ("redirect_uri", &env.target.redirect_uri),
            ("code_verifier", &code.verifier),
        ],
    )
    .await
}

pub async fn refresh(c: &mut Http, env: &Env, refresh_token: &str) -> Result<Tokens, String> {
    token_request(c, env, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

/// authorize + exchange, untimed: a worker's own token set.
pub async fn bootstrap(c: &mut Http, env: &Env, jar: &mut Jar) -> Result<Tokens, String> {
    let code = authorize(c, env, jar).await?;
    exchange(c, env, &code).await
}

/// Outcome of a bearer-token call: `Unauthorized` means "renew and retry".
pub enum Bearer {
    Ok,
    Unauthorized(String),
}

pub async fn userinfo(c: &mut Http, env: &Env, access_token: &str) -> Result<Bearer, String> {
    let ep = env.userinfo_url.as_ref().ok_or("no userinfo_endpoint")?;
    let bearer = format!("Bearer {access_token}");
    let resp = c.send("GET", ep, &[("Authorization", &bearer)], b"").await.map_err(|e| format!("userinfo: {e}"))?;
    let status = resp.status;
    let text = resp.text();
    if status == 401 {
        return Ok(Bearer::Unauthorized(snippet(&text)));
    }
    if status != 200 {
        return Err(format!("userinfo: HTTP {status}: {}", snippet(&text)));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("userinfo json: {e}: {}", snippet(&text)))?;
    if v.get("sub").and_then(|s| s.as_str()).is_none() {
        return Err(format!("userinfo without sub: {}", snippet(&text)));
    }
    Ok(Bearer::Ok)
}

pub async fn introspect(c: &mut Http, env: &Env, access_token: &str) -> Result<Bearer, String> {
    let ep = env.introspection_url.as_ref().ok_or("no introspection_endpoint")?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", access_token)
        .append_pair("token_type_hint", "access_token")
        .finish();
    let resp =
        c.send("POST", ep, &[("Authorization", &env.basic_auth), FORM], body.as_bytes()).await.map_err(|e| format!("introspect: {e}"))?;
    let status = resp.status;
    let text = resp.text();
    if status != 200 {
        return Err(format!("introspect: HTTP {status}: {}", snippet(&text)));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("introspect json: {e}: {}", snippet(&text)))?;
    match v.get("active").and_then(|a| a.as_bool()) {
        Some(true) => Ok(Bearer::Ok),
        Some(false) => Ok(Bearer::Unauthorized(format!("active=false: {}", snippet(&text)))),
        None => Err(format!("introspect without active: {}", snippet(&text))),
    }
}
