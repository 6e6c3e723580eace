//! End to end against a REAL PDS: `@atproto/dev-env` (e2e/) runs a PLC directory and a PDS on
//! loopback; atsso resolves `alice.test`, pushes the authorization request with DPoP, the user
//! signs in and consents at the PDS (browserless, e2e/pds-login.mjs), atsso's callback exchanges
//! the code, and a relying party gets a verified ID token. Then a second app signs in through the
//! SSO session, and single logout revokes the upstream grant at the PDS.
//!
//! Runs when ATSSO_E2E=1 (scripts/test.sh sets it after e2e/install.sh); otherwise each test
//! prints why it did nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "cluster/harness.rs"]
#[allow(dead_code)]
mod cluster_harness;
#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "support/real_pds.rs"]
mod real_pds;

use std::{collections::HashMap, net::TcpListener, process::Command, time::Duration};

use helpers::{query_param, spawn_app_on, TestApp};
use openidconnect::{
    core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet},
    ClientId, ClientSecret, IssuerUrl, Nonce,
};
use real_pds::{configure, enabled, repo, start_network, Network};
use serde_json::Value;

/// Signs in and consents at the PDS; returns the redirect it sends the browser to.
fn sign_in_at_pds(authorization_url: &str) -> String {
    let output = Command::new("node").arg(repo().join("e2e/pds-login.mjs")).arg(authorization_url).output().expect("run pds-login.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pds-login failed: {}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().find_map(|l| l.strip_prefix("REDIRECT ")).expect("REDIRECT line").trim().to_owned()
}

/// A browser that keeps cookies by hand (the confidential run's cookies are `Secure` for an
/// https public URL, while the test talks to the server over loopback http).
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self { http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(), cookies: HashMap::new() }
    }

    fn remember(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self.http.get(url).header("cookie", self.cookie_header()).send().await.unwrap();
        self.remember(&response);
        response
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self.http.post(url).header("cookie", self.cookie_header()).form(form).send().await.unwrap();
        self.remember(&response);
        response
    }
}

/// Opens atsso's login page for the parked request at `login_path`, submits `handle` and returns
/// where atsso sends the browser (the PDS's authorization URL).
async fn submit_handle(browser: &mut Browser, app: &TestApp, login_path: &str, handle: &str) -> String {
    let html = browser.get(&app.url(login_path)).await.text().await.unwrap();
    let form = [
        ("handle", handle),
        ("request_id", &helpers::hidden_input(&html, "request_id").unwrap()),
        ("csrf_token", &helpers::hidden_input(&html, "csrf_token").unwrap()),
    ];
    let response = browser.post_form(&app.url("/login"), &form).await;
    assert_eq!(response.status(), 302, "login submit: {}", response.text().await.unwrap_or_default());
    location(&response)
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").unwrap_or_else(|| panic!("no redirect; status {}", response.status())).to_str().unwrap().to_owned()
}

/// A confidential relying party driven by hand (its issuer may be a public URL the test cannot
/// reach), verifying ID tokens with the openidconnect crate against our JWKS.
struct Rp {
    client: helpers::RegisteredClient,
}

struct Authorization {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

impl Rp {
    fn start(&self, app: &TestApp) -> Authorization {
        self.start_with(app, "openid profile")
    }

    fn start_with(&self, app: &TestApp, scope: &str) -> Authorization {
        let verifier = atsso::crypto::random_token(32);
        let challenge = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        let state = atsso::crypto::random_token(12);
        let nonce = atsso::crypto::random_token(12);
        let url = format!(
            "{}?response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
            app.url("/oauth2/authorize"),
            self.client.client.client_id,
            enc(&self.client.redirect_uri),
            enc(scope)
        );
        Authorization { url, state, nonce, verifier }
    }

    /// Exchanges the code and verifies the ID token; returns (token response, ID token claims).
    async fn exchange(&self, app: &TestApp, code: &str, authorization: &Authorization) -> (Value, Value) {
        let response = reqwest::Client::new()
            .post(app.url("/oauth2/token"))
            .basic_auth(&self.client.client.client_id, self.client.secret.as_deref())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.client.redirect_uri),
                ("code_verifier", &authorization.verifier),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let tokens: Value = response.json().await.unwrap();
        let jwks: CoreJsonWebKeySet = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
        let verifier = CoreIdTokenVerifier::new_confidential_client(
            ClientId::new(self.client.client.client_id.clone()),
            ClientSecret::new(self.client.secret.clone().unwrap()),
            IssuerUrl::new(app.state.config.issuer()).unwrap(),
            jwks,
        );
        let id_token: CoreIdToken = tokens["id_token"].as_str().unwrap().parse().unwrap();
        id_token.claims(&verifier, &Nonce::new(authorization.nonce.clone())).expect("ID token verifies against the JWKS");
        let payload = tokens["id_token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
        let claims: Value =
            serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap()).unwrap();
        (tokens, claims)
    }
}

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The whole story against the running network. `public_base` is where the PDS sends the
/// browser back (the https public URL in confidential mode), mapped to the local server.
async fn full_story(app: &TestApp, network: &Network, public_base: &str) {
    let first = Rp { client: app.register("first-app", false, true).await };
    let second = Rp { client: app.register("second-app", false, true).await };
    let mut browser = Browser::new();

    let authorization = first.start(app);
    let login_path = location(&browser.get(&authorization.url).await);
    assert!(login_path.starts_with("/login?request_id="), "{login_path}");
    let pds_authorize = submit_handle(&mut browser, app, &login_path, &network.handle).await;
    assert!(pds_authorize.starts_with(&format!("{}/oauth/authorize?", network.pds_url)), "{pds_authorize}");

    let callback = sign_in_at_pds(&pds_authorize);
    assert!(callback.starts_with(&format!("{public_base}/atproto/callback?")), "{callback}");
    assert!(query_param(&callback, "code").is_some(), "the PDS granted: {callback}");
    let local_callback = callback.replacen(public_base, &app.base, 1);
    let response = browser.get(&local_callback).await;
    assert_eq!(response.status(), 302, "callback: {}", response.text().await.unwrap_or_default());
    let back = location(&response);
    assert!(back.starts_with(&first.client.redirect_uri), "{back}");
    assert_eq!(query_param(&back, "state").as_deref(), Some(authorization.state.as_str()));

    let (tokens, claims) = first.exchange(app, &query_param(&back, "code").unwrap(), &authorization).await;
    assert_eq!(claims["sub"], network.did.as_str(), "sub is alice's DID");
    assert_eq!(claims["preferred_username"], network.handle.as_str());
    let userinfo: Value = reqwest::Client::new()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], network.did.as_str());
    eprintln!("ID token for {} ({}) verified; userinfo answered", claims["preferred_username"], claims["sub"]);

    // SSO: the second app signs in without the handle being typed again.
    let authorization2 = second.start(app);
    let back2 = location(&browser.get(&authorization2.url).await);
    assert!(back2.starts_with(&second.client.redirect_uri), "SSO: {back2}");
    let (_, claims2) = second.exchange(app, &query_param(&back2, "code").unwrap(), &authorization2).await;
    assert_eq!(claims2["sub"], network.did.as_str());
    assert_eq!(claims2["sid"], claims["sid"]);

    // The upstream grant as stored (sealed), to check its fate after logout.
    let sid = claims["sid"].as_str().unwrap();
    let row = app.state.store.upstream_session(sid).await.unwrap().expect("upstream session stored");
    let upstream: atsso::atproto::UpstreamTokens = serde_json::from_str(&app.state.sealer.open_str(&row.tokens_sealed).unwrap()).unwrap();

    // Single logout from the first app.
    let response = browser.get(&format!("{}?id_token_hint={}", app.url("/oauth2/end_session"), tokens["id_token"].as_str().unwrap())).await;
    assert!(response.status().is_success() || response.status().is_redirection());
    assert!(app.state.store.upstream_session(sid).await.unwrap().is_none());
    upstream_revoked(app, sid).await;
    let refused = app.state.atproto.refresh(&upstream).await;
    assert!(refused.is_err(), "the PDS must refuse the revoked upstream refresh token");
    eprintln!("after logout the PDS refused the upstream refresh token: {}", refused.unwrap_err());
    let response = browser.get(&format!("{}&prompt=none", second.start(app).url)).await;
    assert_eq!(query_param(&location(&response), "error").as_deref(), Some("login_required"));
}

/// Waits until the outbox has revoked the session's upstream grant at the PDS (the logout
/// queues it; a worker sends it within milliseconds).
async fn upstream_revoked(app: &TestApp, sid: &str) {
    let store = &app.state.store;
    helpers::eventually(Duration::from_secs(15), "the upstream revocation delivered", || async move {
        let rows = store.outbox_for_sid(sid).await.unwrap();
        rows.iter().any(|r| r.kind == "upstream_revoke" && r.status == "delivered").then_some(())
    })
    .await;
}

#[tokio::test]
async fn real_pds_loopback_client() {
    if !enabled() {
        return;
    }
    let network = start_network(None);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = spawn_app_on(listener, |c| configure(c, &network)).await;
    let client_id = app.state.atproto.client_id();
    assert!(client_id.starts_with("http://localhost?"), "loopback development client: {client_id}");
    full_story(&app, &network, &app.base.clone()).await;
}

#[tokio::test]
async fn real_pds_confidential_private_key_jwt_client() {
    if !enabled() {
        return;
    }
    const PUBLIC_HOST: &str = "sso.e2e-bridge.net";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The PDS fetches https://sso.e2e-bridge.net/... (our client metadata and JWKS) from us.
    let network = start_network(Some(format!("{PUBLIC_HOST}=127.0.0.1:{port}")));
    let public_base = format!("https://{PUBLIC_HOST}");
    let app = spawn_app_on(listener, |c| {
        configure(c, &network);
        c.public_url = url::Url::parse(&public_base).unwrap();
    })
    .await;
    assert_eq!(app.state.atproto.client_id(), format!("{public_base}/atproto/client-metadata.json"));
    full_story(&app, &network, &public_base).await;
}

/// Two nodes on one PostgreSQL with the real PDS: the sign-in lands on the first (the issuer),
/// the code is redeemed and the second app signs in by SSO on the second, tokens refresh on the
/// first, and a logout on the second ends everything on the first and at the PDS.
#[tokio::test]
async fn real_pds_two_nodes_on_postgres() {
    if !enabled() {
        return;
    }
    let postgres = cluster_harness::Postgres::start();
    let network = start_network(None);
    let database_url = postgres.url();
    let first = spawn_app_on(TcpListener::bind("127.0.0.1:0").unwrap(), |c| {
        configure(c, &network);
        c.database_url = database_url.clone();
    })
    .await;
    let second = helpers::spawn_second_node(&first).await;
    first.wait_until_caching().await;
    second.wait_until_caching().await;
    let one = Rp { client: first.register("first-app", false, true).await };
    let two = Rp { client: first.register("second-app", false, true).await };
    let mut browser = Browser::new();

    // Sign in at the first node (the PDS sends the browser back to the issuer).
    let authorization = one.start(&first);
    let login_path = location(&browser.get(&authorization.url).await);
    let callback = sign_in_at_pds(&submit_handle(&mut browser, &first, &login_path, &network.handle).await);
    let back = location(&browser.get(&callback).await);
    assert!(back.starts_with(&one.client.redirect_uri), "{back}");

    // The code from the first node is redeemed on the second; the second app signs in by SSO
    // on the second node and redeems on the first.
    let (tokens, claims) = one.exchange(&second, &query_param(&back, "code").unwrap(), &authorization).await;
    assert_eq!(claims["sub"], network.did.as_str());
    let authorization2 = two.start(&second);
    let back2 = location(&browser.get(&authorization2.url).await);
    assert!(back2.starts_with(&two.client.redirect_uri), "SSO on the second node: {back2}");
    let (_, claims2) = two.exchange(&first, &query_param(&back2, "code").unwrap(), &authorization2).await;
    assert_eq!(claims2["sid"], claims["sid"]);
    let sid = claims["sid"].as_str().unwrap();
    let row = first.state.store.upstream_session(sid).await.unwrap().expect("upstream session stored");
    let upstream: atsso::atproto::UpstreamTokens = serde_json::from_str(&first.state.sealer.open_str(&row.tokens_sealed).unwrap()).unwrap();

    // Logout on the second node: the first refuses at once, and the PDS refuses the old grant.
    let access_token = tokens["access_token"].as_str().unwrap();
    let userinfo = |app: &TestApp| reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(access_token).send();
    assert_eq!(userinfo(&first).await.unwrap().status(), 200);
    let response =
        browser.get(&format!("{}?id_token_hint={}", second.url("/oauth2/end_session"), tokens["id_token"].as_str().unwrap())).await;
    assert!(response.status().is_success() || response.status().is_redirection());
    assert_eq!(userinfo(&first).await.unwrap().status(), 401, "the first node refuses at once");
    upstream_revoked(&first, sid).await;
    let refused = first.state.atproto.refresh(&upstream).await;
    assert!(refused.is_err(), "the PDS must refuse the revoked upstream refresh token");
    eprintln!(
        "two nodes on PostgreSQL: signed in on one, redeemed on the other, logged out on the other; the PDS refused the upstream token"
    );
}

/// Registers a first-party app allowed `repo:com.example.note?action=create`, signs alice in at
/// it asking for that permission (the PDS is asked for it, and pds-login.mjs grants what is
/// asked), and returns the token response, the verified ID token's claims and the browser.
async fn sign_in_with_note_permission(app: &TestApp, network: &Network) -> (Value, Value, Browser) {
    let redirect_uri = "http://127.0.0.1:9/notes/callback".to_owned();
    let (client, secret) = atsso::oidc::clients::register(
        &app.state.store,
        atsso::oidc::clients::NewClient {
            name: "Notes".into(),
            redirect_uris: vec![redirect_uri.clone()],
            first_party: true,
            atproto_scopes: vec!["repo:com.example.note?action=create".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let notes = Rp { client: helpers::RegisteredClient { client, secret, redirect_uri } };
    let mut browser = Browser::new();
    let authorization = notes.start_with(app, "openid atproto:repo:com.example.note?action=create");
    let login_path = location(&browser.get(&authorization.url).await);
    let pds_authorize = submit_handle(&mut browser, app, &login_path, &network.handle).await;
    let back = location(&browser.get(&sign_in_at_pds(&pds_authorize)).await);
    assert!(back.starts_with(&notes.client.redirect_uri), "{back}");
    let (tokens, claims) = notes.exchange(app, &query_param(&back, "code").unwrap(), &authorization).await;
    (tokens, claims, browser)
}

/// A tenant app acting in the Atmosphere through atsso: granted
/// `atproto:repo:com.example.note?action=create`, it creates a record in alice's repository
/// through `/xrpc` (atsso calls the PDS with its DPoP-bound upstream token), and the record is
/// there when read from the PDS itself. A write to another collection is refused by atsso. After
/// single logout the proxy answers 401 and the PDS refuses the old upstream grant.
#[tokio::test]
async fn real_pds_tenant_writes_a_record_through_the_proxy() {
    if !enabled() {
        return;
    }
    let network = start_network(None);
    let app = spawn_app_on(TcpListener::bind("127.0.0.1:0").unwrap(), |c| configure(c, &network)).await;
    // Sign in with the permission: the PDS is asked for it and (pds-login.mjs) grants it.
    let (tokens, claims, mut browser) = sign_in_with_note_permission(&app, &network).await;
    assert!(tokens["scope"].as_str().unwrap().contains("atproto:repo:com.example.note?action=create"), "{tokens}");
    let access_token = tokens["access_token"].as_str().unwrap();
    let sid = claims["sid"].as_str().unwrap();

    // createRecord through the proxy: `repo` is alice's whatever the app says.
    let http = reqwest::Client::new();
    let record =
        serde_json::json!({ "$type": "com.example.note", "text": "written through atsso", "createdAt": "2026-12-05T10:00:00.000Z" });
    // createRecord through the proxy, as the app: its access token, alice's repo.
    let create_record = |collection: &str, record: &Value| {
        http.post(app.url("/xrpc/com.atproto.repo.createRecord"))
            .bearer_auth(access_token)
            .json(&serde_json::json!({ "repo": network.did, "collection": collection, "record": record }))
            .send()
    };
    let created = create_record("com.example.note", &record).await.unwrap();
    assert_eq!(created.status(), 200, "createRecord: {}", created.text().await.unwrap_or_default());
    let created: Value = created.json().await.unwrap();
    let uri = created["uri"].as_str().unwrap();
    let rkey = uri.rsplit('/').next().unwrap();
    assert!(uri.starts_with(&format!("at://{}/com.example.note/", network.did)), "{uri}");

    // Read back from the PDS itself, not through atsso.
    let stored: Value = http
        .get(format!("{}/xrpc/com.atproto.repo.getRecord", network.pds_url))
        .query(&[("repo", network.did.as_str()), ("collection", "com.example.note"), ("rkey", rkey)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["value"]["text"], "written through atsso", "{stored}");

    // Another collection: refused by atsso, naming the permission it would need.
    let refused = create_record("com.example.other", &serde_json::json!({ "$type": "com.example.other" })).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope", "{body}");
    assert!(body["message"].as_str().unwrap().contains("atproto:repo:com.example.other?action=create"), "{body}");

    // Single logout: the proxy answers 401, and the PDS refuses the old upstream grant.
    let upstream = atsso::sso::upstream::upstream_tokens(&app.state, sid).await.unwrap().expect("upstream session stored");
    browser.get(&format!("{}?id_token_hint={}", app.url("/oauth2/end_session"), tokens["id_token"].as_str().unwrap())).await;
    let after = create_record("com.example.note", &record).await.unwrap();
    assert_eq!(after.status(), 401, "after logout");
    upstream_revoked(&app, sid).await;
    assert!(app.state.atproto.refresh(&upstream).await.is_err(), "the PDS refuses the revoked upstream grant");
    eprintln!("created {uri} through atsso; another collection refused with 403; after logout 401 and the PDS refused the grant");
}

/// Benchmark, not a test (ignored; `scripts/bench-proxy.sh` runs it in release mode): the latency
/// of one record read (`com.atproto.repo.getRecord`) at the real PDS on loopback, three ways, each
/// `ATSSO_BENCH_PROXY_READS` (default 1000) times in a row after a warm-up:
/// `direct` (a plain GET at the PDS, no session), `dpop` (atsso's own DPoP-bound upstream client
/// calling the PDS in-process: what an app with its own ATProto session pays), and `proxied`
/// (an app's Bearer call to atsso's `/xrpc`, which checks the token and calls the PDS with DPoP).
/// Prints p50/p99 of each and the proxy's overhead; asserts nothing about speed.
#[tokio::test]
#[ignore = "a benchmark: scripts/bench-proxy.sh"]
async fn bench_proxied_read_overhead() {
    if !enabled() {
        return;
    }
    let reads: usize = std::env::var("ATSSO_BENCH_PROXY_READS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let network = start_network(None);
    let app = spawn_app_on(TcpListener::bind("127.0.0.1:0").unwrap(), |c| {
        configure(c, &network);
        c.rate_limits.xrpc = 0; // off: measuring latency, not the limiter
    })
    .await;
    let (tokens, claims, _) = sign_in_with_note_permission(&app, &network).await;
    let access_token = tokens["access_token"].as_str().unwrap().to_owned();
    let sid = claims["sid"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    let record = serde_json::json!({ "$type": "com.example.note", "text": "benchmark", "createdAt": "2026-12-05T10:00:00.000Z" });
    let created: Value = http
        .post(app.url("/xrpc/com.atproto.repo.createRecord"))
        .bearer_auth(&access_token)
        .json(&serde_json::json!({ "collection": "com.example.note", "record": record }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rkey = created["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let query = format!("repo={}&collection=com.example.note&rkey={rkey}", enc(&network.did));
    let direct_url = format!("{}/xrpc/com.atproto.repo.getRecord?{query}", network.pds_url);
    let proxied_url = app.url(&format!("/xrpc/com.atproto.repo.getRecord?{query}"));
    let upstream = atsso::sso::upstream::upstream_tokens(&app.state, &sid).await.unwrap().unwrap();
    let request = atsso::atproto::client::XrpcRequest {
        method: atsso::atproto::client::XrpcMethod::Get,
        nsid: "com.atproto.repo.getRecord".into(),
        query: query.clone(),
        body: None,
        headers: Vec::new(),
    };

    async fn timed<F: std::future::Future<Output = u16>>(reads: usize, mut call: impl FnMut() -> F) -> Vec<f64> {
        for _ in 0..reads / 10 {
            assert_eq!(call().await, 200, "warm-up");
        }
        let mut micros = Vec::with_capacity(reads);
        for _ in 0..reads {
            let started = std::time::Instant::now();
            assert_eq!(call().await, 200);
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
        micros.sort_by(f64::total_cmp);
        micros
    }
    let pct = |sorted: &[f64], p: f64| sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)] / 1000.0;
    let direct = timed(reads, || async { http.get(&direct_url).send().await.unwrap().status().as_u16() }).await;
    let dpop = timed(reads, || async { app.state.atproto.xrpc(&upstream, &request).await.unwrap().status }).await;
    let proxied =
        timed(reads, || async { http.get(&proxied_url).bearer_auth(&access_token).send().await.unwrap().status().as_u16() }).await;
    println!("proxied read overhead ({reads} sequential getRecord calls each, real PDS on loopback, ms):");
    println!("| path | p50 | p99 |");
    println!("|---|---:|---:|");
    for (name, sorted) in [
        ("direct GET at the PDS (no session)", &direct),
        ("DPoP-bound call at the PDS (atsso's upstream client, in-process)", &dpop),
        ("through atsso's /xrpc (Bearer)", &proxied),
    ] {
        println!("| {name} | {:.2} | {:.2} |", pct(sorted, 0.50), pct(sorted, 0.99));
    }
    println!(
        "proxy overhead over the DPoP-bound call: p50 +{:.2} ms, p99 +{:.2} ms; over the plain GET: p50 +{:.2} ms, p99 +{:.2} ms",
        pct(&proxied, 0.50) - pct(&dpop, 0.50),
        pct(&proxied, 0.99) - pct(&dpop, 0.99),
        pct(&proxied, 0.50) - pct(&direct, 0.50),
        pct(&proxied, 0.99) - pct(&direct, 0.99)
    );
}
