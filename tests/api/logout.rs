//! Single logout: RP-initiated end-session, back-channel logout tokens, token revocation for
//! every client of the session, and upstream revocation.
use std::time::Duration;

use josekit::jws::RS256;
use openidconnect::OAuth2TokenResponse;
use serde_json::Value;

use super::{
    helpers::{eventually, hidden_input, location, query_param, receiver, spawn_app, Browser, RegisteredClient, TestApp},
    rp::Rp,
};

const ALICE: &str = "did:plc:alice0000000000000000000";

async fn register_with_backchannel(app: &TestApp, name: &str, backchannel: Option<&str>) -> RegisteredClient {
    let redirect_uri = format!("http://127.0.0.1:9/{name}/callback");
    let (client, secret) = atsso::oidc::clients::register(
        &app.state.store,
        atsso::oidc::clients::NewClient {
            name: name.into(),
            redirect_uris: vec![redirect_uri.clone()],
            post_logout_redirect_uris: vec![format!("http://127.0.0.1:9/{name}/logged-out")],
            backchannel_logout_uri: backchannel.map(String::from),
            first_party: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    RegisteredClient { client, secret, redirect_uri }
}

struct LoggedIn {
    rp: Rp,
    tokens: openidconnect::core::CoreTokenResponse,
    id_token: String,
    sid: String,
}

async fn log_in(app: &TestApp, browser: &Browser, registered: &RegisteredClient) -> LoggedIn {
    let rp = Rp::discover(app, registered).await;
    let pending = rp.start(&["profile"]);
    let code = rp.authorize(app, browser, &pending).await;
    let tokens = rp.exchange(&code, pending.verifier).await.unwrap();
    let claims = rp.verify_id_token(&tokens, Some(&pending.nonce));
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string();
    LoggedIn { rp, tokens, id_token, sid: claims["sid"].as_str().unwrap().to_owned() }
}

/// Verifies a logout token against our published JWKS; returns its claims.
async fn verify_logout_token(app: &TestApp, token: &str) -> Value {
    let jwks: josekit::jwk::JwkSet =
        josekit::jwk::JwkSet::from_bytes(reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().bytes().await.unwrap()).unwrap();
    let header = josekit::jwt::decode_header(token).unwrap();
    let kid = header.claim("kid").and_then(Value::as_str).unwrap().to_owned();
    let jwk = jwks.get(&kid).into_iter().next().expect("kid published").clone();
    let verifier = RS256.verifier_from_jwk(&jwk).unwrap();
    let (payload, _) = josekit::jwt::decode_with_verifier(token, &verifier).expect("logout token signature");
    serde_json::to_value(payload.claims_set()).unwrap()
}

#[tokio::test]
async fn rp_initiated_logout_logs_out_every_app() {
    let app = spawn_app().await;
    let receiver2 = receiver(200, false).await;
    let app1 = register_with_backchannel(&app, "one", None).await;
    let app2 = register_with_backchannel(&app, "two", Some(&receiver2.uri)).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let one = log_in(&app, &browser, &app1).await;
    let two = log_in(&app, &browser, &app2).await;
    assert_eq!(one.sid, two.sid);

    // The same hint in a browser that does not hold the session: confirmation, nothing ended.
    let stranger = Browser::new();
    let response = stranger.get(&format!("{}?id_token_hint={}", app.url("/oauth2/end_session"), one.id_token)).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Sign out?"));
    assert!(one.rp.userinfo(one.tokens.access_token()).await.is_ok(), "a leaked ID token logs nobody out");

    // RP 1 sends the browser to end-session with its ID token, a registered URI and state.
    let url = format!(
        "{}?id_token_hint={}&post_logout_redirect_uri={}&state=bye&ui_locales=fr&logout_hint=x",
        app.url("/oauth2/end_session"),
        one.id_token,
        urlenc("http://127.0.0.1:9/one/logged-out")
    );
    let response = browser.get(&url).await;
    assert_eq!(response.status(), 302);
    let next = location(&response);
    assert!(next.starts_with("http://127.0.0.1:9/one/logged-out"), "{next}");
    assert_eq!(query_param(&next, "state").as_deref(), Some("bye"));
    assert!(response.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("atsso_session=;")));

    // RP 2's back-channel receiver gets a logout token that verifies against our JWKS.
    let received = &receiver2.tokens;
    let token =
        eventually(Duration::from_secs(10), "logout token delivered", || async move { received.lock().unwrap().first().cloned() }).await;
    let claims = verify_logout_token(&app, &token).await;
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["aud"], app2.client.client_id);
    assert_eq!(claims["sub"], ALICE);
    assert_eq!(claims["sid"], two.sid);
    assert!(claims["events"].get("http://schemas.openid.net/event/backchannel-logout").is_some());
    assert!(claims.get("nonce").is_none());
    assert!(claims["jti"].is_string() && claims["iat"].is_i64() && claims["exp"].is_i64());

    // RP 2's tokens are dead: refresh refused, introspection inactive, userinfo 401.
    assert!(two.rp.refresh(two.tokens.refresh_token().unwrap()).await.is_err());
    let introspection = reqwest::Client::new()
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&app2.client.client_id, app2.secret.as_deref())
        .form(&[("token", two.tokens.access_token().secret().as_str())])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(introspection["active"], false);
    let userinfo =
        reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(two.tokens.access_token().secret()).send().await.unwrap();
    assert_eq!(userinfo.status(), 401);
    assert!(one.rp.userinfo(one.tokens.access_token()).await.is_err(), "RP 1's token too");

    // prompt=none now answers login_required, even with the old cookie value replayed.
    let response = browser.get(&format!("{}&prompt=none", two.rp.start(&[]).url)).await;
    assert_eq!(query_param(&location(&response), "error").as_deref(), Some("login_required"));

    // The delivery was recorded. The receiver had the token before its answer reached the
    // delivery task, which writes the outcome after that: wait for the row to leave `pending`.
    let (store, sid) = (&app.state.store, two.sid.as_str());
    let deliveries = eventually(Duration::from_secs(10), "the delivery's outcome recorded", || async move {
        let deliveries = store.outbox_for_sid(sid).await.unwrap();
        deliveries.iter().all(|d| d.status != "pending").then_some(deliveries)
    })
    .await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!((deliveries[0].kind.as_str(), deliveries[0].status.as_str()), ("backchannel_logout", "delivered"));
    assert_eq!(deliveries[0].attempts, 1);
}

fn urlenc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn end_session_refuses_bad_input_and_confirms_without_hint() {
    let app = spawn_app().await;
    let app1 = register_with_backchannel(&app, "one", None).await;
    let app2 = register_with_backchannel(&app, "two", None).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let one = log_in(&app, &browser, &app1).await;

    let end = app.url("/oauth2/end_session");
    let forged = {
        let mut parts: Vec<String> = one.id_token.split('.').map(String::from).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };
    let cases = [
        format!("{end}?id_token_hint={forged}"),
        format!("{end}?id_token_hint=not.a.jwt"),
        format!("{end}?id_token_hint={}&client_id={}", one.id_token, app2.client.client_id),
        format!("{end}?id_token_hint={}&post_logout_redirect_uri={}", one.id_token, urlenc("https://evil.example/")),
        format!("{end}?client_id={}&post_logout_redirect_uri={}", app1.client.client_id, urlenc("http://127.0.0.1:9/two/logged-out")),
        format!("{end}?post_logout_redirect_uri={}", urlenc("http://127.0.0.1:9/one/logged-out")),
        format!("{end}?client_id=unknown"),
    ];
    for case in cases {
        let response = browser.get(&case).await;
        assert_eq!(response.status(), 400, "{case}");
        assert!(response.headers().get("location").is_none(), "{case}: no redirect");
    }
    // Nothing was logged out by any of these.
    assert!(one.rp.userinfo(one.tokens.access_token()).await.is_ok());

    // Without a hint: a confirmation page; a cross-site POST without the CSRF token does nothing.
    let response = browser
        .get(&format!(
            "{end}?client_id={}&post_logout_redirect_uri={}&state=s1",
            app1.client.client_id,
            urlenc("http://127.0.0.1:9/one/logged-out")
        ))
        .await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("Sign out?"));
    let request_id = hidden_input(&html, "logout_request_id").unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let forged = browser.post_form(&app.url("/logout"), &[("logout_request_id", &request_id), ("decision", "logout")]).await;
    assert_eq!(forged.status(), 400);
    assert!(one.rp.userinfo(one.tokens.access_token()).await.is_ok(), "still logged in");

    // Confirmed: logged out and sent back to the registered URI with state.
    let response =
        browser.post_form(&app.url("/logout"), &[("logout_request_id", &request_id), ("csrf_token", &csrf), ("decision", "logout")]).await;
    assert_eq!(response.status(), 302);
    let next = location(&response);
    assert!(next.starts_with("http://127.0.0.1:9/one/logged-out") && next.contains("state=s1"), "{next}");
    assert!(one.rp.userinfo(one.tokens.access_token()).await.is_err());
    // Replaying the POST is harmless.
    let again =
        browser.post_form(&app.url("/logout"), &[("logout_request_id", &request_id), ("csrf_token", &csrf), ("decision", "logout")]).await;
    assert!(again.status() == 302 || again.status() == 200);
    // An expired hint is still accepted (here: after the session ended, it ends nothing new).
    let response = browser.get(&format!("{end}?id_token_hint={}", one.id_token)).await;
    assert_eq!(response.status(), 200, "logged-out page");
}

#[tokio::test]
async fn failing_backchannel_receivers_do_not_block_logout() {
    let app = spawn_app().await;
    let hanging = receiver(200, true).await;
    let failing = receiver(500, false).await;
    let refusing = receiver(404, false).await;
    let app1 = register_with_backchannel(&app, "hangs", Some(&hanging.uri)).await;
    let app2 = register_with_backchannel(&app, "fails", Some(&failing.uri)).await;
    let app3 = register_with_backchannel(&app, "gone", Some("http://127.0.0.1:1/backchannel")).await;
    let app4 = register_with_backchannel(&app, "refuses", Some(&refusing.uri)).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let one = log_in(&app, &browser, &app1).await;
    for registered in [&app2, &app3, &app4] {
        log_in(&app, &browser, registered).await;
    }

    let started = std::time::Instant::now();
    let response = browser.get(&format!("{}?id_token_hint={}", app.url("/oauth2/end_session"), one.id_token)).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3), "the user is not kept waiting");
    assert!(one.rp.userinfo(one.tokens.access_token()).await.is_err(), "logged out regardless");

    // Trouble that may pass (5xx, unreachable) is retried with backoff and stays pending; a
    // refusal (404) fails at once, after one attempt.
    let (store, sid) = (&app.state.store, one.sid.as_str());
    let ids = [app2.client.client_id.as_str(), app3.client.client_id.as_str(), app4.client.client_id.as_str()];
    let [fails, gone, refused] =
        eventually(Duration::from_secs(15), "a retry of the failing receiver and the refusal recorded", || async move {
            let rows = store.outbox_for_sid(sid).await.unwrap();
            let find = |id: &str| rows.iter().find(|r| r.client_id.as_deref() == Some(id)).unwrap().clone();
            let [fails, gone, refused] = ids.map(find);
            (fails.attempts >= 2 && gone.attempts >= 1 && refused.status == "failed").then_some([fails, gone, refused])
        })
        .await;
    assert_eq!((fails.status.as_str(), fails.last_error.as_deref()), ("pending", Some("HTTP 500")));
    assert!(fails.next_attempt_at > atsso::clock::now() - 1, "{fails:?}");
    assert_eq!((gone.status.as_str(), gone.last_error.as_deref()), ("pending", Some("unreachable")));
    assert_eq!((refused.attempts, refused.last_error.as_deref()), (1, Some("HTTP 404")));
    let tokens = failing.tokens.lock().unwrap().clone();
    assert!(tokens.len() >= 2 && tokens[0] != tokens[1], "each attempt signs a new logout token");
    assert_eq!(refusing.tokens.lock().unwrap().len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn logout_page_for_people_and_admin_end_all_sessions() {
    let app = spawn_app().await;
    let app1 = register_with_backchannel(&app, "one", None).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let other_browser = app.browser_with_session(ALICE, "alice.test").await;
    let one = log_in(&app, &browser, &app1).await;
    let two = log_in(&app, &other_browser, &app1).await;
    assert_ne!(one.sid, two.sid);

    let html = browser.get(&app.url("/logout")).await.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let response = browser.post_form(&app.url("/logout"), &[("csrf_token", &csrf), ("decision", "logout")]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("signed out"));
    assert!(one.rp.userinfo(one.tokens.access_token()).await.is_err());
    assert!(two.rp.userinfo(two.tokens.access_token()).await.is_ok(), "another browser's session is separate");

    let ended = atsso::sso::logout::end_all_sessions(&app.state, ALICE).await.unwrap();
    assert_eq!(ended, 1);
    assert!(two.rp.userinfo(two.tokens.access_token()).await.is_err());
}

#[tokio::test]
async fn front_channel_logout_renders_iframes_with_iss_and_sid() {
    let app = spawn_app().await;
    let (client, secret) = atsso::oidc::clients::register(
        &app.state.store,
        atsso::oidc::clients::NewClient {
            name: "framed".into(),
            redirect_uris: vec!["http://127.0.0.1:9/framed/callback".into()],
            post_logout_redirect_uris: vec!["http://127.0.0.1:9/framed/bye".into()],
            frontchannel_logout_uri: Some("https://framed.example/fc-logout".into()),
            first_party: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let registered = RegisteredClient { client, secret, redirect_uri: "http://127.0.0.1:9/framed/callback".into() };
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let session = log_in(&app, &browser, &registered).await;
    let response = browser
        .get(&format!(
            "{}?id_token_hint={}&post_logout_redirect_uri={}&state=z",
            app.url("/oauth2/end_session"),
            session.id_token,
            urlenc("http://127.0.0.1:9/framed/bye")
        ))
        .await;
    assert_eq!(response.status(), 200, "a page, so the iframes can load");
    let html = response.text().await.unwrap().replace("&#x2F;", "/").replace("&amp;", "&");
    let iframe = format!("https://framed.example/fc-logout?iss={}&sid={}", urlenc(&app.base), session.sid);
    assert!(html.contains(&format!(r#"<iframe src="{iframe}""#)), "{html}");
    assert!(html.contains("http://127.0.0.1:9/framed/bye?state=z"), "return link to the app");
}
