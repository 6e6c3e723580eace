//! The whole provider flow, driven by the openidconnect crate as relying party.
use openidconnect::{OAuth2TokenResponse, TokenIntrospectionResponse};
use serde_json::Value;

use super::{
    helpers::{location, query_param, spawn_app, Browser},
    rp::Rp,
};

const ALICE: &str = "did:plc:alice0000000000000000000";

async fn full_flow(public: bool) {
    let app = spawn_app().await;
    let registered = app.register(if public { "spa" } else { "webapp" }, public, false).await;
    assert_eq!(registered.secret.is_none(), public);
    let rp = Rp::discover(&app, &registered).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;

    // authorize → consent → code
    let pending = rp.start(&["profile", "email"]);
    let code = rp.authorize(&app, &browser, &pending).await;

    // code → tokens; ID token verified against the JWKS (signature, iss, aud, nonce, at_hash)
    let tokens = rp.exchange(&code, pending.verifier).await.expect("code exchange");
    let claims = rp.verify_id_token(&tokens, Some(&pending.nonce));
    assert_eq!(claims["sub"], ALICE);
    assert_eq!(claims["preferred_username"], "alice.test");
    assert_eq!(claims["name"], "alice.test display");
    assert_eq!(claims["picture"], "https://cdn.example/avatar.jpg");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["azp"], registered.client.client_id);
    assert!(claims["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(claims["auth_time"].as_i64().is_some());

    // The access token is an RFC 9068 JWT.
    let access = tokens.access_token().secret().clone();
    let header: Value = serde_json::from_slice(&base64_decode(access.split('.').next().unwrap())).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256", "access tokens are RS256 by default (ATSSO_ACCESS_TOKEN_ALG)");
    let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    assert!(
        jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header["kid"] && k["alg"] == "RS256"),
        "published for offline verification"
    );

    // userinfo
    let info = rp.userinfo(tokens.access_token()).await.expect("userinfo");
    assert_eq!(info.subject().as_str(), ALICE);
    assert_eq!(info.preferred_username().unwrap().as_str(), "alice.test");

    // refresh rotates the token
    let first_refresh = tokens.refresh_token().expect("refresh token").clone();
    let refreshed = rp.refresh(&first_refresh).await.expect("refresh");
    let second_refresh = refreshed.refresh_token().expect("rotated refresh token").clone();
    assert_ne!(first_refresh.secret(), second_refresh.secret());
    let refreshed_claims = rp.verify_id_token(&refreshed, None);
    assert_eq!(refreshed_claims["sub"], ALICE);
    assert_eq!(refreshed_claims["sid"], claims["sid"]);
    rp.userinfo(refreshed.access_token()).await.expect("new access token works");

    // reuse of the rotated token revokes the whole family
    let reuse = rp.refresh(&first_refresh).await;
    assert!(reuse.as_ref().is_err_and(|e| e.contains("invalid_grant")), "{reuse:?}");
    let after_reuse = rp.refresh(&second_refresh).await;
    assert!(after_reuse.is_err(), "the family must be revoked after reuse");
    assert!(rp.userinfo(refreshed.access_token()).await.is_err(), "family access tokens are revoked");

    // a new grant, then revocation and introspection
    let pending = rp.start(&["profile"]);
    let code = rp.authorize(&app, &browser, &pending).await; // consent remembered: no page
    let tokens = rp.exchange(&code, pending.verifier).await.expect("second exchange");
    let introspection = rp.client.introspect(tokens.access_token()).request_async(&rp.http).await.expect("introspect");
    assert!(introspection.active());
    assert_eq!(introspection.sub(), Some(ALICE));
    assert_eq!(introspection.client_id().map(|c| c.as_str()), Some(registered.client.client_id.as_str()));

    let refresh = tokens.refresh_token().unwrap().clone();
    // (The oauth2 crate refuses to revoke over plain http, so this request is built by hand.)
    let client_id = registered.client.client_id.as_str();
    let mut revoke = reqwest::Client::new().post(app.url("/oauth2/revoke"));
    let mut form = vec![("token", refresh.secret().as_str()), ("token_type_hint", "refresh_token")];
    match &registered.secret {
        Some(secret) => revoke = revoke.basic_auth(client_id, Some(secret)),
        None => form.push(("client_id", client_id)),
    }
    assert_eq!(revoke.form(&form).send().await.unwrap().status(), 200);
    assert!(rp.refresh(&refresh).await.is_err(), "revoked refresh token refused");
    let introspection = rp.client.introspect(tokens.access_token()).request_async(&rp.http).await.expect("introspect");
    assert!(!introspection.active(), "revoking the refresh token revokes its access tokens");
    assert!(rp.userinfo(tokens.access_token()).await.is_err());
}

fn base64_decode(segment: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).unwrap()
}

#[tokio::test]
async fn confidential_client_full_flow() {
    full_flow(false).await;
}

#[tokio::test]
async fn public_client_full_flow() {
    full_flow(true).await;
}

#[tokio::test]
async fn second_app_uses_the_same_session_and_first_party_skips_consent() {
    let app = spawn_app().await;
    let first = app.register("first", false, true).await;
    let second = app.register("second", false, true).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let mut sids = Vec::new();
    for registered in [&first, &second] {
        let rp = Rp::discover(&app, registered).await;
        let pending = rp.start(&["profile"]);
        let response = browser.get(&pending.url).await;
        let next = location(&response);
        assert!(next.starts_with(&registered.redirect_uri), "first-party: straight back with a code, got {next}");
        let code = query_param(&next, "code").unwrap();
        let tokens = rp.exchange(&code, pending.verifier).await.unwrap();
        sids.push(rp.verify_id_token(&tokens, Some(&pending.nonce))["sid"].clone());
    }
    assert!(sids[0].is_string(), "sid claim present");
    assert_eq!(sids[0], sids[1], "one SSO session for both apps");
}

#[tokio::test]
async fn prompt_none_and_login_required() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let anonymous = Browser::new();
    let pending = rp.start(&[]);
    let response = anonymous.get(&format!("{}&prompt=none", pending.url)).await;
    let next = location(&response);
    assert!(next.starts_with(&registered.redirect_uri));
    assert_eq!(query_param(&next, "error").as_deref(), Some("login_required"));
    assert_eq!(query_param(&next, "state").as_deref(), Some(pending.state.secret().as_str()));
    assert_eq!(query_param(&next, "iss").as_deref(), Some(app.base.as_str()));

    // Without a session and without prompt=none: the login page with the pending request.
    let response = anonymous.get(&pending.url).await;
    let next = location(&response);
    assert!(next.starts_with("/login?request_id="), "{next}");
    let page = anonymous.get(&app.url(&next)).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"name="handle""#));
    assert!(html.contains("app"), "the login page names the app");

    // With a session, prompt=none gives a code directly (first-party).
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let response = browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert!(query_param(&location(&response), "code").is_some());

    // prompt=login and max_age=0 force a new login even with a session.
    for extra in ["&prompt=login", "&max_age=0"] {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let response = browser.get(&format!("{}{extra}", rp.start(&[]).url)).await;
        assert!(location(&response).starts_with("/login?request_id="), "{extra} must force login");
    }
}

#[tokio::test]
async fn consent_required_and_denied() {
    let app = spawn_app().await;
    let registered = app.register("thirdparty", false, false).await;
    let rp = Rp::discover(&app, &registered).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;

    let response = browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert_eq!(query_param(&location(&response), "error").as_deref(), Some("consent_required"));

    let pending = rp.start(&["email"]);
    let response = browser.get(&pending.url).await;
    let consent_url = location(&response);
    assert!(consent_url.starts_with("/consent?request_id="));
    let html = browser.get(&app.url(&consent_url)).await.text().await.unwrap();
    assert!(html.contains("thirdparty"), "consent names the app");
    assert!(html.contains("email"), "consent names the claims");
    let request_id = super::helpers::hidden_input(&html, "request_id").unwrap();
    let csrf = super::helpers::hidden_input(&html, "csrf_token").unwrap();

    // A POST without the CSRF token changes nothing.
    let forged = browser.post_form(&app.url("/consent"), &[("request_id", &request_id), ("decision", "allow")]).await;
    assert_eq!(forged.status(), 400);
    assert!(app.state.store.consented_scopes(ALICE, &registered.client.client_id).await.unwrap().is_empty());

    let response =
        browser.post_form(&app.url("/consent"), &[("request_id", &request_id), ("csrf_token", &csrf), ("decision", "deny")]).await;
    let next = location(&response);
    assert_eq!(query_param(&next, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&next, "state").as_deref(), Some(pending.state.secret().as_str()));
    // The request is gone: a second decision is refused with a page.
    let again = browser.post_form(&app.url("/consent"), &[("request_id", &request_id), ("csrf_token", &csrf), ("decision", "allow")]).await;
    assert_eq!(again.status(), 400);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifiable() {
    let app = spawn_app().await;
    let registered = app.register("rotating", false, true).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let rp = Rp::discover(&app, &registered).await;
    let pending = rp.start(&[]);
    let code = rp.authorize(&app, &browser, &pending).await;
    let tokens = rp.exchange(&code, pending.verifier).await.unwrap();
    let old_kid = app.state.keys.current().active_kid(atsso::crypto::signing::Alg::Rs256).unwrap().to_owned();

    // An emergency rotation (`atsso keys rotate --now`): the new key signs at once.
    atsso::keys::rotate(&app.state.store, &app.state.sealer, 0).await.unwrap();
    app.state.keys.reload(&app.state.store, &app.state.sealer, &app.state.config).await.unwrap();
    let new_kid = app.state.keys.current().active_kid(atsso::crypto::signing::Alg::Rs256).unwrap().to_owned();
    assert_ne!(old_kid, new_kid);

    let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");
    // Tokens signed with the old key still work; new ones are signed with the new key.
    rp.userinfo(tokens.access_token()).await.expect("old access token still valid");
    let rp = Rp::discover(&app, &registered).await; // fresh JWKS
    let refreshed = rp.refresh(tokens.refresh_token().unwrap()).await.unwrap();
    let claims = rp.verify_id_token(&refreshed, None);
    assert_eq!(claims["sub"], ALICE);
    let header = openidconnect::TokenResponse::id_token(&refreshed).unwrap().to_string();
    let header: Value = serde_json::from_slice(&base64_decode(header.split('.').next().unwrap())).unwrap();
    assert_eq!(header["kid"], new_kid);
}
