//! Issue 11, items 6, 10 and 13: a code is bound to its client before anything is spent or
//! revoked; disabling or deleting a client ends its tokens; POST-only endpoints answer 405; a
//! narrower refresh narrows only the access token; a wrong `token_type_hint` is only a hint.
use serde_json::Value;

use super::{
    helpers::{spawn_app, RegisteredClient, TestApp},
    rp::Rp,
};

const ALICE: &str = "did:plc:alice0000000000000000000";

/// POSTs a form to the token endpoint as `client` (Basic for confidential, `client_id` for public).
pub(super) async fn token_as(app: &TestApp, client: &RegisteredClient, form: &[(&str, &str)]) -> (u16, Value) {
    post_as(app, "/oauth2/token", client, form).await
}

pub(super) async fn post_as(app: &TestApp, path: &str, client: &RegisteredClient, form: &[(&str, &str)]) -> (u16, Value) {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut request = reqwest::Client::new().post(app.url(path));
    match &client.secret {
        Some(secret) => request = request.basic_auth(&client.client.client_id, Some(secret)),
        None => form.push(("client_id", &client.client.client_id)),
    }
    let response = request.form(&form).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(super) async fn userinfo_status(app: &TestApp, access_token: &str) -> (u16, String) {
    let response = reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(access_token).send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, challenge)
}

/// A fresh code for `registered` (first-party: no consent page) and the form that redeems it.
async fn code_for(app: &TestApp, registered: &RegisteredClient, scopes: &[&str]) -> (String, String) {
    let rp = Rp::discover(app, registered).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let pending = rp.start(scopes);
    let code = rp.authorize(app, &browser, &pending).await;
    (code, pending.verifier.secret().clone())
}

fn code_form<'a>(code: &'a str, verifier: &'a str, registered: &'a RegisteredClient) -> [(&'a str, &'a str); 4] {
    [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", registered.redirect_uri.as_str()), ("code_verifier", verifier)]
}

/// Tokens for `registered` from a full authorization.
pub(super) async fn tokens_for(app: &TestApp, registered: &RegisteredClient, scopes: &[&str]) -> Value {
    let (code, verifier) = code_for(app, registered, scopes).await;
    let (status, tokens) = token_as(app, registered, &code_form(&code, &verifier, registered)).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

pub(super) fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}"))
}

#[tokio::test]
async fn a_code_presented_by_another_client_is_refused_and_stays_redeemable() {
    let app = spawn_app().await;
    let rightful = app.register("rightful", false, true).await;
    let public = app.register("public", true, true).await;
    let other = app.register("other", false, true).await;
    let (code, verifier) = code_for(&app, &rightful, &["profile"]).await;
    let form = code_form(&code, &verifier, &rightful);

    for intruder in [&public, &other] {
        let (status, body) = token_as(&app, intruder, &form).await;
        assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"), "{} presented another client's code", intruder.client.name);
    }
    let (status, tokens) = token_as(&app, &rightful, &form).await;
    assert_eq!(status, 200, "the rightful client can still redeem its code: {tokens}");
    assert_eq!(userinfo_status(&app, str_of(&tokens, "access_token")).await.0, 200);
}

#[tokio::test]
async fn a_replay_by_the_wrong_client_does_not_revoke_the_family() {
    let app = spawn_app().await;
    let rightful = app.register("rightful", false, true).await;
    let public = app.register("public", true, true).await;
    let (code, verifier) = code_for(&app, &rightful, &["profile"]).await;
    let form = code_form(&code, &verifier, &rightful);
    let (status, tokens) = token_as(&app, &rightful, &form).await;
    assert_eq!(status, 200, "{tokens}");

    let (status, body) = token_as(&app, &public, &form).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    assert_eq!(userinfo_status(&app, str_of(&tokens, "access_token")).await.0, 200, "the rightful client's tokens live on");
    let (status, refreshed) =
        token_as(&app, &rightful, &[("grant_type", "refresh_token"), ("refresh_token", str_of(&tokens, "refresh_token"))]).await;
    assert_eq!(status, 200, "the refresh token lives on: {refreshed}");

    // The rightful client's own replay still revokes the family.
    let (status, _) = token_as(&app, &rightful, &form).await;
    assert_eq!(status, 400);
    assert_eq!(userinfo_status(&app, str_of(&refreshed, "access_token")).await.0, 401);
}

/// Checks that `tokens` of `registered` are dead: userinfo 401 `invalid_token`, refresh refused
/// with `expected_refresh_error`.
async fn assert_tokens_dead(app: &TestApp, registered: &RegisteredClient, tokens: &Value, expected_refresh_error: &str) {
    let (status, challenge) = userinfo_status(app, str_of(tokens, "access_token")).await;
    assert_eq!(status, 401);
    assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
    let (status, body) =
        token_as(app, registered, &[("grant_type", "refresh_token"), ("refresh_token", str_of(tokens, "refresh_token"))]).await;
    assert_eq!((status >= 400, str_of(&body, "error")), (true, expected_refresh_error), "{body}");
}

#[tokio::test]
async fn disabling_a_client_revokes_its_tokens_at_once() {
    let app = spawn_app().await;
    let admin_path = app.register("admin-path", false, true).await;
    let cli_path = app.register("cli-path", true, true).await;
    let bystander = app.register("bystander", false, true).await;
    let bystander_tokens = tokens_for(&app, &bystander, &["profile"]).await;
    for (registered, through_admin) in [(&admin_path, true), (&cli_path, false)] {
        let tokens = tokens_for(&app, registered, &["profile"]).await;
        assert_eq!(userinfo_status(&app, str_of(&tokens, "access_token")).await.0, 200);
        let id = &registered.client.client_id;
        if through_admin {
            let actor = atsso::admin::Actor::new("test", None);
            atsso::admin::set_client_enabled(&app.state, &actor, id, false).await.unwrap();
        } else {
            // What `atsso clients disable` calls.
            atsso::oidc::clients::set_enabled(&app.state.store, None, id, false).await.unwrap();
        }
        // Disabled: the client cannot even authenticate.
        assert_tokens_dead(&app, registered, &tokens, "invalid_client").await;
        // Enabled again, its old tokens stay dead: they were revoked, not just refused.
        atsso::oidc::clients::set_enabled(&app.state.store, Some(&app.state.secrets), id, true).await.unwrap();
        assert_tokens_dead(&app, registered, &tokens, "invalid_grant").await;
        // New sign-ins work again.
        let fresh = tokens_for(&app, registered, &["profile"]).await;
        assert_eq!(userinfo_status(&app, str_of(&fresh, "access_token")).await.0, 200);
    }
    assert_eq!(userinfo_status(&app, str_of(&bystander_tokens, "access_token")).await.0, 200, "other clients' tokens are untouched");
}

#[tokio::test]
async fn deleting_a_client_revokes_its_tokens_at_once() {
    let app = spawn_app().await;
    let doomed = app.register("doomed", false, true).await;
    let bystander = app.register("bystander", false, true).await;
    let bystander_tokens = tokens_for(&app, &bystander, &["profile"]).await;
    let tokens = tokens_for(&app, &doomed, &["profile"]).await;
    assert_eq!(userinfo_status(&app, str_of(&tokens, "access_token")).await.0, 200);
    let actor = atsso::admin::Actor::new("test", None);
    atsso::admin::delete_client(&app.state, &actor, &doomed.client.client_id).await.unwrap();
    assert_tokens_dead(&app, &doomed, &tokens, "invalid_client").await;
    assert_eq!(userinfo_status(&app, str_of(&bystander_tokens, "access_token")).await.0, 200);
}

/// Defence in depth: a client disabled by another process (the CLI, another node) while this
/// server still has the token's record cached: userinfo refuses the token once the client change
/// is seen (within the client cache's lifetime).
#[tokio::test]
async fn userinfo_refuses_a_token_whose_client_was_disabled_elsewhere() {
    let app = spawn_app().await;
    let registered = app.register("outside", false, true).await;
    let tokens = tokens_for(&app, &registered, &["profile"]).await;
    let access = str_of(&tokens, "access_token");
    assert_eq!(userinfo_status(&app, access).await.0, 200, "valid (and now cached)");

    let outside = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    assert!(outside.set_client_enabled(&registered.client.client_id, false, atsso::clock::now()).await.unwrap());
    let bound = atsso::store::cache::CLIENT_TTL + std::time::Duration::from_secs(2);
    let challenge =
        super::helpers::eventually(bound, "a token of a disabled client is refused within the client cache lifetime", || async {
            let (status, challenge) = userinfo_status(&app, access).await;
            assert!(status == 200 || status == 401, "{status}");
            (status == 401).then_some(challenge)
        })
        .await;
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

#[tokio::test]
async fn post_only_endpoints_answer_405_with_allow_post() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    for prefix in ["/oauth2", "/api/auth/oauth2"] {
        for endpoint in ["token", "revoke", "introspect"] {
            let path = format!("{prefix}/{endpoint}");
            for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE] {
                let response = http.request(method.clone(), app.url(&path)).send().await.unwrap();
                assert_eq!(response.status(), 405, "{method} {path}");
                assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"), "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn a_narrower_refresh_narrows_the_access_token_but_not_the_refresh_token() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;
    let tokens = tokens_for(&app, &registered, &["profile", "email"]).await;
    assert_eq!(str_of(&tokens, "scope"), "openid profile email");

    let (status, narrowed) = token_as(
        &app,
        &registered,
        &[("grant_type", "refresh_token"), ("refresh_token", str_of(&tokens, "refresh_token")), ("scope", "openid email")],
    )
    .await;
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(str_of(&narrowed, "scope"), "openid email", "the access token is narrowed");
    let info: Value = reqwest::Client::new()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(str_of(&narrowed, "access_token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(info.get("email").is_some() && info.get("preferred_username").is_none(), "{info}");
    let introspected = post_as(&app, "/oauth2/introspect", &registered, &[("token", str_of(&narrowed, "refresh_token"))]).await.1;
    assert_eq!(str_of(&introspected, "scope"), "openid profile email", "the new refresh token keeps the grant's scope");

    // RFC 6749 §6: the next refresh may ask for anything of the original grant again.
    let (status, widened) = token_as(
        &app,
        &registered,
        &[("grant_type", "refresh_token"), ("refresh_token", str_of(&narrowed, "refresh_token")), ("scope", "openid profile")],
    )
    .await;
    assert_eq!(status, 200, "{widened}");
    assert_eq!(str_of(&widened, "scope"), "openid profile");
    let (status, full) =
        token_as(&app, &registered, &[("grant_type", "refresh_token"), ("refresh_token", str_of(&widened, "refresh_token"))]).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(str_of(&full, "scope"), "openid profile email", "without `scope` the whole grant");
    // Never beyond the grant.
    let (status, body) = token_as(
        &app,
        &registered,
        &[("grant_type", "refresh_token"), ("refresh_token", str_of(&full, "refresh_token")), ("scope", "openid offline_access")],
    )
    .await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_scope"));
}

#[tokio::test]
async fn a_wrong_token_type_hint_is_only_a_hint() {
    let app = spawn_app().await;
    let registered = app.register("app", false, true).await;

    // Introspection: an access token hinted as a refresh token and the other way round.
    let tokens = tokens_for(&app, &registered, &["profile"]).await;
    let (access, refresh) = (str_of(&tokens, "access_token"), str_of(&tokens, "refresh_token"));
    let (_, body) = post_as(&app, "/oauth2/introspect", &registered, &[("token", access), ("token_type_hint", "refresh_token")]).await;
    assert_eq!((body["active"].as_bool(), body["token_type"].as_str()), (Some(true), Some("Bearer")), "{body}");
    let (_, body) = post_as(&app, "/oauth2/introspect", &registered, &[("token", refresh), ("token_type_hint", "access_token")]).await;
    assert_eq!((body["active"].as_bool(), body["token_type"].as_str()), (Some(true), Some("refresh_token")), "{body}");
    let (_, body) = post_as(&app, "/oauth2/introspect", &registered, &[("token", access), ("token_type_hint", "bogus")]).await;
    assert_eq!(body["active"], true, "an unknown hint is ignored: {body}");

    // Revocation of an access token hinted as a refresh token.
    let (status, _) = post_as(&app, "/oauth2/revoke", &registered, &[("token", access), ("token_type_hint", "refresh_token")]).await;
    assert_eq!(status, 200);
    assert_eq!(userinfo_status(&app, access).await.0, 401, "revoked despite the wrong hint");

    // Revocation of a refresh token hinted as an access token ends the grant.
    let tokens = tokens_for(&app, &registered, &["profile"]).await;
    let (status, _) =
        post_as(&app, "/oauth2/revoke", &registered, &[("token", str_of(&tokens, "refresh_token")), ("token_type_hint", "access_token")])
            .await;
    assert_eq!(status, 200);
    let (status, body) =
        token_as(&app, &registered, &[("grant_type", "refresh_token"), ("refresh_token", str_of(&tokens, "refresh_token"))]).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    assert_eq!(userinfo_status(&app, str_of(&tokens, "access_token")).await.0, 401);
}

/// A refresh whose response was lost (a node killed mid-request): with a retry window, the client
/// presenting the same token again gets a working successor, and the one it never received dies.
/// Once a successor has been used, the old token is a reuse again and revokes the family.
#[tokio::test]
async fn a_refresh_retried_within_the_window_gets_the_one_working_token() {
    let app = super::helpers::spawn_app_with(|c| c.refresh_retry_window_secs = 30).await;
    let client = app.register("retrying-app", false, true).await;
    let tokens = tokens_for(&app, &client, &["offline_access"]).await;
    let first = str_of(&tokens, "refresh_token").to_owned();
    let refresh = |token: String| {
        let (app, client) = (&app, &client);
        async move { token_as(app, client, &[("grant_type", "refresh_token"), ("refresh_token", &token)]).await }
    };

    let (status, lost) = refresh(first.clone()).await;
    assert_eq!(status, 200, "{lost}");
    let lost = str_of(&lost, "refresh_token").to_owned();
    let (status, retried) = refresh(first.clone()).await;
    assert_eq!(status, 200, "the retry within the window is answered: {retried}");
    let retried = str_of(&retried, "refresh_token").to_owned();
    assert_ne!(retried, lost);
    let (status, next) = refresh(retried.clone()).await;
    assert_eq!(status, 200, "the retry's token works: {next}");
    let next = str_of(&next, "refresh_token").to_owned();

    // The successor of `first` has been used now: presenting `first` again is a reuse.
    let (status, body) = refresh(first).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    let (status, body) = refresh(next).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"), "the family is revoked after the reuse");
    let (status, _) = refresh(lost).await;
    assert_eq!(status, 400, "the token of the lost response never works");
}

/// Without a window (the default), presenting a rotated token again revokes the family at once.
#[tokio::test]
async fn without_a_retry_window_a_second_presentation_revokes_the_family() {
    let app = spawn_app().await;
    let client = app.register("strict-app", false, true).await;
    let tokens = tokens_for(&app, &client, &["offline_access"]).await;
    let first = str_of(&tokens, "refresh_token").to_owned();
    let (status, successor) = token_as(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await;
    assert_eq!(status, 200);
    let successor = str_of(&successor, "refresh_token").to_owned();
    let (status, _) = token_as(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", &first)]).await;
    assert_eq!(status, 400);
    let (status, _) = token_as(&app, &client, &[("grant_type", "refresh_token"), ("refresh_token", &successor)]).await;
    assert_eq!(status, 400, "the family is revoked");
}

/// The retry of a lost response on another node than the one that spent the token: the node that
/// issued the token still has it cached as unspent, and must not take the lost compare-and-set
/// for a reuse (the cluster test's kill -9 found this). Postgres only (two nodes).
#[tokio::test]
async fn a_retry_on_the_node_that_issued_the_token_is_still_a_retry() {
    let first = super::helpers::spawn_app_with(|c| c.refresh_retry_window_secs = 30).await;
    if !first.on_postgres() {
        eprintln!("skipped: needs two nodes on PostgreSQL");
        return;
    }
    let second = super::helpers::spawn_second_node(&first).await;
    first.wait_until_caching().await;
    second.wait_until_caching().await;
    let client = first.register("two-node-app", false, true).await;
    let tokens = tokens_for(&first, &client, &["offline_access"]).await;
    let issued = str_of(&tokens, "refresh_token").to_owned();
    let (status, lost) = token_as(&second, &client, &[("grant_type", "refresh_token"), ("refresh_token", &issued)]).await;
    assert_eq!(status, 200, "{lost}");
    let (status, retried) = token_as(&first, &client, &[("grant_type", "refresh_token"), ("refresh_token", &issued)]).await;
    assert_eq!(status, 200, "the retry at the issuing node is answered: {retried}");
    let (status, next) =
        token_as(&second, &client, &[("grant_type", "refresh_token"), ("refresh_token", str_of(&retried, "refresh_token"))]).await;
    assert_eq!(status, 200, "{next}");
}
