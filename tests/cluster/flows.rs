//! A tenant app and a person's browser, over plain HTTP: enough OpenID Connect to sign in
//! through the balancer, redeem and refresh at chosen nodes, and verify ID tokens.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const ALICE_HANDLE: &str = "alice.test";

pub fn sha256_b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

fn random(len: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").unwrap_or_else(|| panic!("no Location on {}", response.status())).to_str().unwrap().to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&#x2F;", "/").replace("&amp;", "&"))
}

/// A registered tenant app.
#[derive(Clone)]
pub struct App {
    pub client_id: String,
    pub secret: String,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
}

/// What the app keeps of one sign-in (one grant family).
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
}

impl Tokens {
    fn from_response(body: &Value) -> Tokens {
        let field = |name: &str| body[name].as_str().unwrap_or_else(|| panic!("no {name} in {body}")).to_owned();
        Tokens { access_token: field("access_token"), refresh_token: field("refresh_token"), id_token: field("id_token") }
    }
}

/// A browser: a cookie jar, no automatic redirects.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap();
        Browser { http }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }
}

pub struct Pending {
    pub url: String,
    pub verifier: String,
}

/// An authorization request of `app` (PKCE S256) against the endpoint at `base`.
pub fn authorization_request(base: &str, app: &App) -> Pending {
    let verifier = random(48);
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", app.client_id.as_str()),
        ("redirect_uri", app.redirect_uri.as_str()),
        ("scope", "openid profile offline_access"),
        ("state", random(12).as_str()),
        ("nonce", random(12).as_str()),
        ("code_challenge", sha256_b64(&verifier).as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    Pending { url: format!("{base}/oauth2/authorize?{query}"), verifier }
}

/// The whole sign-in at `base` (the balancer): handle, the (mock) PDS, back with a code.
pub async fn sign_in(browser: &Browser, base: &str, app: &App) -> (String, String) {
    let pending = authorization_request(base, app);
    let login = browser.get(&pending.url).await;
    assert_eq!(login.status(), 302, "authorize without a session sends to the login page");
    let login_page = browser.get(&format!("{base}{}", location(&login))).await;
    assert_eq!(login_page.status(), 200);
    let html = login_page.text().await.unwrap();
    let form = [
        ("handle", ALICE_HANDLE.to_owned()),
        ("request_id", hidden_input(&html, "request_id").unwrap_or_default()),
        ("csrf_token", hidden_input(&html, "csrf_token").expect("csrf token on the login page")),
    ];
    let submitted = browser.http.post(format!("{base}/login")).form(&form).send().await.unwrap();
    assert_eq!(submitted.status(), 302, "login goes to the PDS: {}", submitted.text().await.unwrap_or_default());
    let at_pds = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let approved = at_pds.get(location(&submitted)).send().await.unwrap();
    assert_eq!(approved.status(), 302, "the mock PDS approves");
    let callback = browser.get(&location(&approved)).await;
    assert_eq!(callback.status(), 302, "our callback: {}", callback.text().await.unwrap_or_default());
    let back = location(&callback);
    assert!(back.starts_with(&app.redirect_uri), "back at the app: {back}");
    (query_param(&back, "code").expect("a code"), pending.verifier)
}

/// With an SSO session: authorize at `base` (a chosen node or the balancer) → code.
pub async fn authorize(browser: &Browser, base: &str, app: &App) -> (String, String) {
    let pending = authorization_request(base, app);
    let response = browser.get(&pending.url).await;
    assert_eq!(response.status(), 302);
    let back = location(&response);
    assert!(back.starts_with(&app.redirect_uri), "silent SSO at {base}: {back}");
    (query_param(&back, "code").expect("a code"), pending.verifier)
}

/// POSTs to the token endpoint at `base` as `app`; the status and the JSON body (Null when the
/// answer was not JSON, e.g. the balancer's own error page).
pub async fn token_request(http: &reqwest::Client, base: &str, app: &App, form: &[(&str, &str)]) -> Result<(u16, Value), String> {
    let response = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let json = response.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, if json { serde_json::from_str(&text).unwrap_or(Value::Null) } else { Value::Null }))
}

pub async fn redeem(http: &reqwest::Client, base: &str, app: &App, code: &str, verifier: &str) -> Tokens {
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &app.redirect_uri), ("code_verifier", verifier)];
    let (status, body) = token_request(http, base, app, &form).await.unwrap();
    assert_eq!(status, 200, "code exchange at {base}: {body}");
    Tokens::from_response(&body)
}

pub async fn refresh(http: &reqwest::Client, base: &str, app: &App, refresh_token: &str) -> Result<(u16, Value), String> {
    token_request(http, base, app, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

pub async fn refreshed(http: &reqwest::Client, base: &str, app: &App, refresh_token: &str) -> Tokens {
    let (status, body) = refresh(http, base, app, refresh_token).await.unwrap();
    assert_eq!(status, 200, "refresh at {base}: {body}");
    Tokens::from_response(&body)
}

pub async fn userinfo_status(http: &reqwest::Client, base: &str, access_token: &str) -> u16 {
    http.get(format!("{base}/oauth2/userinfo")).bearer_auth(access_token).send().await.unwrap().status().as_u16()
}

/// Verifies an ID token's RS256 signature against the JWKS served by `base` right now.
pub async fn verify_with_jwks_of(http: &reqwest::Client, base: &str, id_token: &str) -> Result<Value, String> {
    let jwks = http.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap().bytes().await.unwrap();
    let set = josekit::jwk::JwkSet::from_bytes(&jwks).map_err(|e| e.to_string())?;
    let header = josekit::jwt::decode_header(id_token).map_err(|e| e.to_string())?;
    let kid = header.claim("kid").and_then(|v| v.as_str()).ok_or("no kid")?.to_owned();
    let jwk = set.get(&kid).first().cloned().ok_or_else(|| format!("kid {kid} is not in the JWKS of {base}"))?;
    let verifier = josekit::jws::RS256.verifier_from_jwk(jwk).map_err(|e| e.to_string())?;
    let (payload, _) = josekit::jwt::decode_with_verifier(id_token, &verifier).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(payload.claims_set()).unwrap())
}

pub fn kid_of(jwt: &str) -> String {
    josekit::jwt::decode_header(jwt).unwrap().claim("kid").and_then(|v| v.as_str()).unwrap().to_owned()
}

pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
