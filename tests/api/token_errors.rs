//! Token, userinfo, revocation and introspection error rules.
use base64::Engine;
use serde_json::Value;

use super::{
    helpers::{spawn_app, TestApp},
    rp::Rp,
};

const ALICE: &str = "did:plc:alice0000000000000000000";

async fn post_token(app: &TestApp, auth: Option<(&str, &str)>, form: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().post(app.url("/oauth2/token")).form(form);
    if let Some((id, secret)) = auth {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap_or(Value::Null), headers)
}

/// Gets a fresh code for the client through a first-party authorization.
async fn code_for(app: &TestApp, rp: &Rp) -> (String, openidconnect::PkceCodeVerifier) {
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let pending = rp.start(&["profile", "email"]);
    let code = rp.authorize(app, &browser, &pending).await;
    (code, pending.verifier)
}

#[tokio::test]
async fn client_authentication_failures() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;
    let id = registered.client.client_id.as_str();
    let secret = registered.secret.clone().unwrap();

    let (status, body, headers) = post_token(&app, Some((id, "wrong")), &[("grant_type", "authorization_code"), ("code", "x")]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));

    let (status, body, _) = post_token(&app, None, &[("grant_type", "authorization_code"), ("client_id", id)]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "confidential client without secret");

    let (status, body, _) =
        post_token(&app, Some((id, &secret)), &[("grant_type", "authorization_code"), ("client_secret", &secret), ("client_id", id)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "two auth methods");

    let (status, body, _) = post_token(&app, Some(("unknown", "x")), &[("grant_type", "authorization_code")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));

    let (status, body, _) = post_token(&app, Some((id, &secret)), &[("grant_type", "password")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
    let (status, body, _) = post_token(&app, Some((id, &secret)), &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

    // client_secret_post works too, and the cached digest accepts the right secret only.
    let (status, body, _) =
        post_token(&app, None, &[("grant_type", "authorization_code"), ("code", "nope"), ("client_id", id), ("client_secret", &secret)])
            .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _, _) =
        post_token(&app, None, &[("grant_type", "authorization_code"), ("code", "nope"), ("client_id", id), ("client_secret", "nope")])
            .await;
    assert_eq!(status, 401);

    // Wrong content type and duplicated parameters.
    let response = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(id, Some(&secret))
        .json(&serde_json::json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=a&code=b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_request");

    // Oversized body.
    let response = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=authorization_code&code={}", "a".repeat(200_000)))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());

    // Rotation makes the old secret fail at once; disabling refuses the client.
    let new_secret = atsso::oidc::clients::rotate_secret(&app.state.store, None, id).await.unwrap();
    let (status, _, _) = post_token(&app, Some((id, &secret)), &[("grant_type", "authorization_code"), ("code", "x")]).await;
    assert_eq!(status, 401, "old secret refused after rotation (even though it was cached)");
    let (status, body, _) = post_token(&app, Some((id, &new_secret)), &[("grant_type", "authorization_code"), ("code", "x")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    atsso::oidc::clients::set_enabled(&app.state.store, None, id, false).await.unwrap();
    let (status, _, _) = post_token(&app, Some((id, &new_secret)), &[("grant_type", "authorization_code"), ("code", "x")]).await;
    assert_eq!(status, 401, "disabled client refused");
}

#[tokio::test]
async fn code_rules_pkce_redirect_and_replay() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;
    let other = app.register("other", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let id = registered.client.client_id.as_str();
    let secret = registered.secret.clone().unwrap();

    // Wrong PKCE verifier: refused, and the code is spent.
    let (code, _verifier) = code_for(&app, &rp).await;
    let wrong = "x".repeat(43);
    let (status, body, _) = post_token(
        &app,
        Some((id, &secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", &registered.redirect_uri), ("code_verifier", &wrong)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    // Wrong redirect_uri.
    let (code, verifier) = code_for(&app, &rp).await;
    let (status, body, _) = post_token(
        &app,
        Some((id, &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", verifier.secret()),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    // Code of one client presented by another.
    let (code, verifier) = code_for(&app, &rp).await;
    let (status, body, _) = post_token(
        &app,
        Some((&other.client.client_id, other.secret.as_deref().unwrap())),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &registered.redirect_uri),
            ("code_verifier", verifier.secret()),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    // Replay: the second use fails and revokes the tokens of the first.
    let (code, verifier) = code_for(&app, &rp).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", registered.redirect_uri.as_str()),
        ("code_verifier", verifier.secret().as_str()),
    ];
    let (status, tokens, headers) = post_token(&app, Some((id, &secret)), &form).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(tokens["token_type"], "Bearer");
    let (status, body, _) = post_token(&app, Some((id, &secret)), &form).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let userinfo =
        reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(tokens["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(userinfo.status(), 401, "access token from a replayed code is revoked");
    let (status, _, _) = post_token(
        &app,
        Some((id, &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(status, 400, "refresh token from a replayed code is revoked");
}

#[tokio::test]
async fn refresh_token_of_another_client_is_refused_and_left_intact() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;
    let other = app.register("other", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let (code, verifier) = code_for(&app, &rp).await;
    let tokens = rp.exchange(&code, verifier).await.unwrap();
    let refresh = openidconnect::OAuth2TokenResponse::refresh_token(&tokens).unwrap().secret().clone();
    let (status, body, _) = post_token(
        &app,
        Some((&other.client.client_id, other.secret.as_deref().unwrap())),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let (status, body, _) = post_token(
        &app,
        Some((&registered.client.client_id, registered.secret.as_deref().unwrap())),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("scope", "openid email")],
    )
    .await;
    assert_eq!(status, 200, "narrowing scope is allowed: {body}");
    assert_eq!(body["scope"], "openid email");
    let narrowed = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body, _) = post_token(
        &app,
        Some((&registered.client.client_id, registered.secret.as_deref().unwrap())),
        &[("grant_type", "refresh_token"), ("refresh_token", &narrowed), ("scope", "openid offline_access")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "widening scope is refused");
    // A refused request does not spend the token.
    let (status, body, _) = post_token(
        &app,
        Some((&registered.client.client_id, registered.secret.as_deref().unwrap())),
        &[("grant_type", "refresh_token"), ("refresh_token", &narrowed)],
    )
    .await;
    assert_eq!(status, 200, "the token survives a refused scope request: {body}");
}

/// Two requests racing with one refresh token: exactly one gets tokens; the other is a reuse,
/// which revokes the whole family, including what the winner just received.
#[tokio::test]
async fn concurrent_refreshes_with_one_token_have_one_winner_then_the_family_is_revoked() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let (code, verifier) = code_for(&app, &rp).await;
    let tokens = rp.exchange(&code, verifier).await.unwrap();
    let refresh = openidconnect::OAuth2TokenResponse::refresh_token(&tokens).unwrap().secret().clone();
    let auth = Some((registered.client.client_id.as_str(), registered.secret.as_deref().unwrap()));
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
    let outcomes = futures_util::future::join_all((0..8).map(|_| post_token(&app, auth, &form))).await;
    let winners: Vec<&Value> = outcomes.iter().filter(|(status, _, _)| *status == 200).map(|(_, body, _)| body).collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {outcomes:?}");
    assert!(outcomes.iter().all(|(status, body, _)| *status == 200 || body["error"] == "invalid_grant"));
    let successor = winners[0]["refresh_token"].as_str().unwrap();
    let (status, body, _) = post_token(&app, auth, &[("grant_type", "refresh_token"), ("refresh_token", successor)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "the family is revoked after the reuse");
}

#[tokio::test]
async fn userinfo_and_introspection_refuse_bad_tokens() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;
    let other = app.register("other", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let (code, verifier) = code_for(&app, &rp).await;
    let tokens = rp.exchange(&code, verifier).await.unwrap();
    let access = openidconnect::OAuth2TokenResponse::access_token(&tokens).secret().clone();

    let http = reqwest::Client::new();
    for bad in ["", "garbage", "a.b.c", &format!("{access}x")] {
        let response = http.get(app.url("/oauth2/userinfo")).bearer_auth(bad).send().await.unwrap();
        assert_eq!(response.status(), 401, "{bad}");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    }
    let response = http.get(app.url("/oauth2/userinfo")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // A JWT with our shape but signed by someone else.
    let forged_header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let payload = access.split('.').nth(1).unwrap();
    let response = http.get(app.url("/oauth2/userinfo")).bearer_auth(format!("{forged_header}.{payload}.")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // POST with a form body works.
    let response = http.post(app.url("/api/auth/oauth2/userinfo")).form(&[("access_token", &access)]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["sub"], ALICE);

    // Introspection by another client: inactive; without authentication: 401.
    let response = http
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&other.client.client_id, other.secret.as_deref())
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["active"], false);
    let response = http.post(app.url("/oauth2/introspect")).form(&[("token", &access)]).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // Revocation by another client does nothing.
    let response = http
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&other.client.client_id, other.secret.as_deref())
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http.get(app.url("/oauth2/userinfo")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(response.status(), 200, "another client cannot revoke our token");
    // Revoking an unknown token is fine (RFC 7009).
    let response = http
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&registered.client.client_id, registered.secret.as_deref())
        .form(&[("token", "unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Revoking the access token itself makes it inactive.
    let response = http
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&registered.client.client_id, registered.secret.as_deref())
        .form(&[("token", access.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http.get(app.url("/oauth2/userinfo")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

/// The CLI (another process) and other nodes change clients behind the server's back: the
/// server's client cache must pick such a change up within its two-second lifetime.
#[tokio::test]
async fn client_disabled_by_another_process_is_refused_within_the_cache_lifetime() {
    let app = spawn_app().await;
    let registered = app.register("outside", false, true).await;
    let (id, secret) = (registered.client.client_id.clone(), registered.secret.clone().unwrap());
    let introspect = || {
        reqwest::Client::new().post(app.url("/oauth2/introspect")).basic_auth(&id, Some(&secret)).form(&[("token", "not-a-token")]).send()
    };
    assert_eq!(introspect().await.unwrap().status(), 200, "client authenticates (and is now cached)");
    // The client was cached during that request, so its entry expires by this instant + CLIENT_TTL.
    let cached_by = tokio::time::Instant::now();

    // What `atsso clients disable` does: its own connection to the same database.
    let outside = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    assert!(outside.set_client_enabled(&id, false, atsso::clock::now()).await.unwrap());
    // Until then either answer is right; a request that starts after it must be refused. (The
    // bound is the cache's lifetime, not a request's duration: a busy machine cannot flake it.)
    tokio::time::sleep_until(cached_by + atsso::store::cache::CLIENT_TTL).await;
    assert_eq!(introspect().await.unwrap().status(), 401, "refused once the cached client has expired");
}
