//! Signing in through the whole server: the login form, PAR at a mock PDS, the callback, the
//! SSO session, and the tenant app's ID token (the mock PDS is tests/support/mock_pds.rs).
use super::{
    helpers::{eventually, hidden_input, location, query_param, spawn_app_with, Browser, TestApp},
    mock_pds::{MockPds, ALICE_DID, ALICE_HANDLE, MALLORY_DID},
    rp::Rp,
};

pub(super) async fn app_with_mock() -> (TestApp, MockPds) {
    app_with_mock_and(|_, _| {}).await
}

/// `adjust` gets the config and the mock's base URL (also its authorization server's issuer).
pub(super) async fn app_with_mock_and(adjust: impl FnOnce(&mut atsso::config::Config, &str)) -> (TestApp, MockPds) {
    let mock = MockPds::spawn().await;
    mock.configure(|c| {
        c.profile = Some(serde_json::json!({ "displayName": "Alice Liddell" }));
        c.granted_scope = "atproto".into();
    });
    let plc = url::Url::parse(&format!("{}/plc", mock.base)).unwrap();
    let resolver = url::Url::parse(&mock.base).unwrap();
    let app = spawn_app_with(|c| {
        c.plc_directory_url = plc;
        c.handle_resolver_url = Some(resolver);
        c.allow_insecure_loopback_upstream = true;
        adjust(c, &mock.base);
    })
    .await;
    (app, mock)
}

/// Submits the login form for a parked request and returns the PDS authorization URL.
pub(super) async fn submit_login(app: &TestApp, browser: &Browser, login_path: &str, handle: &str) -> reqwest::Response {
    let page = browser.get(&app.url(login_path)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let request_id = hidden_input(&html, "request_id").unwrap_or_default();
    browser.post_form(&app.url("/login"), &[("handle", handle), ("request_id", &request_id), ("csrf_token", &csrf)]).await
}

/// The user approves at the (mock) PDS: returns our callback URL with code/state/iss.
pub(super) async fn approve_at_pds(authorization_url: &str) -> String {
    let pds = Browser::new();
    let response = pds.get(authorization_url).await;
    assert_eq!(response.status(), 302, "mock PDS authorize");
    location(&response)
}

/// Submits the handle for the parked request and approves at the PDS: our callback URL.
async fn pds_callback(app: &TestApp, browser: &Browser, login_path: &str) -> String {
    approve_at_pds(&location(&submit_login(app, browser, login_path, ALICE_HANDLE).await)).await
}

/// A whole sign-in of a first-party app: its tokens and the SSO session id.
pub(super) async fn sign_in(app: &TestApp, rp: &Rp, browser: &Browser) -> (openidconnect::core::CoreTokenResponse, String) {
    let pending = rp.start(&[]);
    let login_path = location(&browser.get(&pending.url).await);
    let callback = pds_callback(app, browser, &login_path).await;
    let back = location(&browser.get(&callback).await);
    let tokens = rp.exchange(&query_param(&back, "code").unwrap(), pending.verifier).await.unwrap();
    let sid = rp.verify_id_token(&tokens, None)["sid"].as_str().unwrap().to_owned();
    (tokens, sid)
}

#[tokio::test]
async fn login_with_handle_then_second_app_has_sso() {
    let (app, mock) = app_with_mock().await;
    let first = app.register("first", false, true).await;
    let second = app.register("second", false, true).await;
    let browser = Browser::new();

    let rp = Rp::discover(&app, &first).await;
    let pending = rp.start(&["profile"]);
    let login_path = location(&browser.get(&pending.url).await);
    assert!(login_path.starts_with("/login?request_id="));
    let response = submit_login(&app, &browser, &login_path, ALICE_HANDLE).await;
    assert_eq!(response.status(), 302, "{:?}", response.text().await);
    let authorization_url = location(&response);
    assert!(authorization_url.starts_with(&format!("{}/oauth/authorize?", mock.base)));
    // PAR with DPoP: the first attempt was challenged for a nonce, the retry carried it.
    let par = mock.log_for("/oauth/par");
    assert!(par.len() >= 2 && par.last().unwrap().dpop_nonce.is_some(), "{par:?}");

    let callback = approve_at_pds(&authorization_url).await;
    assert!(callback.starts_with(&app.url("/atproto/callback?")), "{callback}");
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), 302);
    let back = location(&response);
    assert!(back.starts_with(&first.redirect_uri), "first-party app gets its code directly: {back}");
    let cookie =
        response.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).find(|c| c.starts_with("atsso_session="));
    let cookie = cookie.expect("session cookie set");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");

    let tokens = rp.exchange(&query_param(&back, "code").unwrap(), pending.verifier).await.unwrap();
    let claims = rp.verify_id_token(&tokens, Some(&pending.nonce));
    assert_eq!(claims["sub"], ALICE_DID);
    assert_eq!(claims["preferred_username"], ALICE_HANDLE);
    assert_eq!(claims["name"], "Alice Liddell");
    let info = rp.userinfo(openidconnect::OAuth2TokenResponse::access_token(&tokens)).await.unwrap();
    assert_eq!(info.subject().as_str(), ALICE_DID);

    // The upstream session is stored sealed: no token in clear in the database row.
    let sid = claims["sid"].as_str().unwrap();
    let row = app.state.store.upstream_session(sid).await.unwrap().expect("upstream session stored");
    assert_eq!(row.did, ALICE_DID);
    assert!(row.tokens_sealed.starts_with("v1.") && !row.tokens_sealed.contains("access"));

    // A second app: no handle typed again.
    let rp2 = Rp::discover(&app, &second).await;
    let pending2 = rp2.start(&[]);
    let back2 = location(&browser.get(&pending2.url).await);
    assert!(back2.starts_with(&second.redirect_uri), "SSO: {back2}");
    let tokens2 = rp2.exchange(&query_param(&back2, "code").unwrap(), pending2.verifier).await.unwrap();
    assert_eq!(rp2.verify_id_token(&tokens2, Some(&pending2.nonce))["sid"], claims["sid"]);
}

#[tokio::test]
async fn login_errors_are_shown_on_the_page_and_keep_the_request() {
    let (app, mock) = app_with_mock().await;
    let client = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &client).await;
    let browser = Browser::new();
    let login_path = location(&browser.get(&rp.start(&[]).url).await);

    for (handle, words) in [
        ("not a handle!", "valid handle"),
        ("nobody.test", "could not find"),
        ("http://10.0.0.1", "not allowed"),
        ("", "Enter your handle"),
    ] {
        let response = submit_login(&app, &browser, &login_path, handle).await;
        assert_eq!(response.status(), 400, "{handle}");
        let html = response.text().await.unwrap();
        assert!(html.contains(words), "{handle}: {html}");
        assert!(html.contains(r#"name="request_id""#), "the request is kept for a retry");
    }
    // A form post without the CSRF cookie/token starts nothing.
    let before = mock.state.hits.lock().unwrap().len();
    let stranger = Browser::new();
    let response = stranger.post_form(&app.url("/login"), &[("handle", ALICE_HANDLE), ("csrf_token", "x")]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(mock.state.hits.lock().unwrap().len(), before, "no upstream request without CSRF");

    // Hostile metadata is refused with a plain message.
    mock.configure(|c| c.hostile = Some(super::mock_pds::Hostile::NoPar));
    let response = submit_login(&app, &browser, &login_path, ALICE_HANDLE).await;
    assert!(response.text().await.unwrap().contains("not configured in a way we can safely sign in with"));
}

#[tokio::test]
async fn callback_rules_state_iss_sub_browser_and_access_denied() {
    let (app, mock) = app_with_mock().await;
    let client = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &client).await;

    // Unknown state: refused with a page.
    let browser = Browser::new();
    let response = browser.get(&app.url("/atproto/callback?state=forged&code=x&iss=y")).await;
    assert_eq!(response.status(), 400);
    let response = browser.get(&app.url("/atproto/callback")).await;
    assert_eq!(response.status(), 400);

    // A callback replayed in another browser (login CSRF) is refused; the state is then spent.
    let login_path = location(&browser.get(&rp.start(&[]).url).await);
    let callback = pds_callback(&app, &browser, &login_path).await;
    let attacker = Browser::new();
    assert_eq!(attacker.get(&callback).await.status(), 400);
    assert_eq!(browser.get(&callback).await.status(), 400, "single use");

    // Wrong iss, wrong sub, and an issuer not authoritative for the DID: refused on the login page.
    for (label, setup) in [
        ("iss", Box::new(|c: &mut super::mock_pds::MockConfig| c.wrong_iss = true) as Box<dyn Fn(&mut super::mock_pds::MockConfig)>),
        (
            "sub",
            Box::new(|c: &mut super::mock_pds::MockConfig| {
                c.wrong_iss = false;
                c.sub_override = Some(MALLORY_DID.into());
            }),
        ),
    ] {
        mock.configure(|c| setup(c));
        let html = refused_at_callback(&app, &rp, &browser, label).await;
        assert!(html.contains("did not come from your account"), "{label}: {html}");
        assert!(html.contains(r#"name="request_id""#), "{label}: request kept");
    }

    // access_denied at the PDS returns the app an access_denied redirect with its state.
    mock.configure(|c| {
        c.sub_override = None;
        c.access_denied = true;
    });
    let pending = rp.start(&[]);
    let login_path = location(&browser.get(&pending.url).await);
    let callback = pds_callback(&app, &browser, &login_path).await;
    let back = location(&browser.get(&callback).await);
    assert!(back.starts_with(&client.redirect_uri));
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&back, "state").as_deref(), Some(pending.state.secret().as_str()));
}

/// Starts a login, lets the mock PDS answer, and follows the callback, which must be refused:
/// 400, no session. Returns the page (the login form with the error).
async fn refused_at_callback(app: &TestApp, rp: &Rp, browser: &Browser, label: &str) -> String {
    let login_path = location(&browser.get(&rp.start(&[]).url).await);
    let callback = pds_callback(app, browser, &login_path).await;
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), 400, "{label}");
    let html = response.text().await.unwrap();
    assert!(response_has_no_session(app, browser).await, "{label}: no session created");
    html
}

async fn response_has_no_session(app: &TestApp, browser: &Browser) -> bool {
    let response = browser.get(&app.url("/")).await;
    response.status() == 302 && location(&response) == "/login"
}

#[tokio::test]
async fn dead_upstream_grant_means_login_required() {
    let (app, mock) = app_with_mock().await;
    let client = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &client).await;
    let browser = Browser::new();
    let (tokens, sid) = sign_in(&app, &rp, &browser).await;

    // Expire the upstream access token: the next authorization refreshes it (rotation upstream).
    expire_upstream(&app, &sid).await;
    let version_before = app.state.store.upstream_session(&sid).await.unwrap().unwrap().version;
    let refreshes_before = refresh_count(&mock);
    let response = browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert!(query_param(&location(&response), "code").is_some(), "refreshed upstream: still signed in");
    let refreshes_after = refresh_count(&mock);
    assert_eq!(refreshes_after, refreshes_before + 1, "{:?}", mock.log_for("/oauth/token"));
    let row = app.state.store.upstream_session(&sid).await.unwrap().unwrap();
    assert_eq!(row.version, version_before + 1, "the refreshed tokens were stored");
    assert!(row.expires_at.unwrap() > atsso::clock::now());

    // The user revokes the app at their PDS: the refresh is refused, prompt=none answers
    // login_required, and the session ends everywhere (single logout): the app's tokens die too.
    expire_upstream(&app, &sid).await;
    mock.state.refresh_tokens_clear();
    let response = browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert_eq!(query_param(&location(&response), "error").as_deref(), Some("login_required"));
    assert!(app.state.store.live_session(&sid, atsso::clock::now()).await.unwrap().is_none(), "the SSO session ended");
    assert!(rp.userinfo(openidconnect::OAuth2TokenResponse::access_token(&tokens)).await.is_err(), "the app's token was revoked");
    assert!(app.state.store.upstream_session(&sid).await.unwrap().is_none(), "the refused grant is forgotten");
}

async fn expire_upstream(app: &TestApp, sid: &str) {
    let row = app.state.store.upstream_session(sid).await.unwrap().unwrap();
    let mut tokens: atsso::atproto::UpstreamTokens = serde_json::from_str(&app.state.sealer.open_str(&row.tokens_sealed).unwrap()).unwrap();
    tokens.expires_at = Some(1);
    let sealed = app.state.sealer.seal_str(&serde_json::to_string(&tokens).unwrap()).unwrap();
    assert!(app.state.store.swap_upstream_tokens(sid, row.version, &sealed, Some(1), 1).await.unwrap());
}

#[tokio::test]
async fn client_metadata_and_jwks_documents() {
    let (app, _mock) = app_with_mock().await;
    let jwks: serde_json::Value = reqwest::get(app.url("/atproto/jwks.json")).await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert!(key.get("d").is_none(), "no private part");
    let oidc_jwks: serde_json::Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    assert_ne!(oidc_jwks["keys"][0]["kid"], key["kid"], "the ATProto client key is not an OIDC key");
    let metadata: serde_json::Value = reqwest::get(app.url("/atproto/client-metadata.json")).await.unwrap().json().await.unwrap();
    assert_eq!(metadata["dpop_bound_access_tokens"], true);
    assert!(metadata["scope"].as_str().unwrap().split(' ').any(|s| s == "atproto"));
}

fn refresh_count(mock: &MockPds) -> usize {
    mock.log_for("/oauth/token")
        .iter()
        .filter(|r| r.status == 200 && r.form.get("grant_type").map(String::as_str) == Some("refresh_token"))
        .count()
}

#[tokio::test]
async fn logout_revokes_the_upstream_grant_without_waiting_for_the_pds() {
    let (app, mock) = app_with_mock().await;
    let client = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &client).await;
    let browser = Browser::new();
    let (tokens, sid) = sign_in(&app, &rp, &browser).await;
    assert!(mock.revoked().is_empty());

    // The PDS's revocation endpoint hangs: the logout does not wait for it.
    mock.revoke_behaviour(|b| b.delay = std::time::Duration::from_secs(60));
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string();
    let started = std::time::Instant::now();
    let response = browser.get(&format!("{}?id_token_hint={id_token}", app.url("/api/auth/oauth2/endsession"))).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "the logout took {:?}", started.elapsed());
    assert!(app.state.store.upstream_session(&sid).await.unwrap().is_none(), "the grant is forgotten here at once");
    let queued = app.state.store.outbox_for_sid(&sid).await.unwrap();
    assert_eq!(queued.iter().map(|r| (r.kind.as_str(), r.target.as_str())).collect::<Vec<_>>(), [("upstream_revoke", mock.base.as_str())]);
    assert!(queued[0].payload_sealed.is_some());

    // Once the first attempt hangs at the PDS, the PDS answers again: the queued revocation is
    // retried and reaches it. (Switching before the attempt arrives would let it through at once.)
    eventually(std::time::Duration::from_secs(10), "the first revocation attempt reached the PDS", || async {
        (mock.revokes_delayed() > 0).then_some(())
    })
    .await;
    mock.revoke_behaviour(|b| b.delay = std::time::Duration::ZERO);
    let store = &app.state.store;
    let row = eventually(std::time::Duration::from_secs(30), "the upstream revocation delivered", || async {
        store.outbox_for_sid(&sid).await.unwrap().into_iter().find(|r| r.status == "delivered")
    })
    .await;
    assert!(row.attempts >= 2, "the hanging attempt timed out first: {row:?}");
    assert!(!mock.revoked().is_empty(), "the upstream grant is revoked at the PDS");
}

// ---- issue 11, item 1: a PDS vouches for an email only where we asked and trust it ----

/// Signs a first-party app in asking for `email`; the ID token claims and the userinfo answer.
async fn sign_in_for_email(app: &TestApp) -> (serde_json::Value, openidconnect::core::CoreUserInfoClaims) {
    let client = app.register("mail-app", false, true).await;
    let rp = Rp::discover(app, &client).await;
    let browser = Browser::new();
    let pending = rp.start(&["email"]);
    let login_path = location(&browser.get(&pending.url).await);
    let callback = pds_callback(app, &browser, &login_path).await;
    let back = location(&browser.get(&callback).await);
    let tokens = rp.exchange(&query_param(&back, "code").unwrap(), pending.verifier).await.unwrap();
    let claims = rp.verify_id_token(&tokens, Some(&pending.nonce));
    let info = rp.userinfo(openidconnect::OAuth2TokenResponse::access_token(&tokens)).await.unwrap();
    (claims, info)
}

#[tokio::test]
async fn unrequested_email_scope_gives_no_verified_email() {
    // We ask the PDS for `atproto` only (the default); a hostile AS grants email as well and
    // its PDS claims a confirmed address that belongs to someone else.
    let (app, mock) = app_with_mock().await;
    mock.configure(|c| {
        c.granted_scope = "atproto transition:email".into();
        c.email = Some("ceo@victim.example".into());
    });
    let (claims, info) = sign_in_for_email(&app).await;
    assert_ne!(claims.get("email_verified"), Some(&serde_json::json!(true)), "{claims}");
    assert!(claims.get("email").is_none(), "{claims}");
    assert_ne!(info.email_verified(), Some(true));
    assert!(info.email().is_none());
    assert!(mock.log_for("/xrpc/com.atproto.server.getSession").is_empty(), "we never asked, so we never fetch");
}

#[tokio::test]
async fn email_from_an_untrusted_authorization_server_is_not_verified() {
    let (app, mock) = app_with_mock_and(|c, _| c.upstream_scope = "atproto transition:email".into()).await;
    mock.configure(|c| c.granted_scope = "atproto transition:email".into());
    let (claims, info) = sign_in_for_email(&app).await;
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], false, "{claims}");
    assert_eq!(info.email_verified(), Some(false));

    // The operator trusts this authorization server (ATSSO_EMAIL_TRUSTED_ISSUERS): verified.
    let (app, mock) = app_with_mock_and(|c, issuer| {
        c.upstream_scope = "atproto transition:email".into();
        c.email_trusted_issuers = vec![issuer.to_owned()];
    })
    .await;
    mock.configure(|c| c.granted_scope = "atproto transition:email".into());
    let (claims, _) = sign_in_for_email(&app).await;
    assert_eq!(claims["email_verified"], true, "{claims}");
}

#[tokio::test]
async fn token_response_without_atproto_is_a_login_error() {
    let (app, mock) = app_with_mock().await;
    let client = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &client).await;
    let browser = Browser::new();
    for (label, setup) in [
        (
            "no atproto",
            Box::new(|c: &mut super::mock_pds::MockConfig| c.granted_scope = "transition:generic".into())
                as Box<dyn Fn(&mut super::mock_pds::MockConfig)>,
        ),
        (
            "no scope",
            Box::new(|c: &mut super::mock_pds::MockConfig| {
                c.granted_scope = "atproto".into();
                c.omit_scope = true;
            }),
        ),
    ] {
        mock.configure(|c| setup(c));
        let html = refused_at_callback(&app, &rp, &browser, label).await;
        assert!(html.contains("did not grant"), "{label}: {html}");
    }
}
