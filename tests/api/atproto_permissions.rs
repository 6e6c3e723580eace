//! Tenant apps asking for atproto permissions (`atproto:` scopes): validated against what the
//! admin allows the client, asked of the user's PDS at sign-in (or in a step-up when the upstream
//! grant lacks them), what the PDS granted is what counts, shown on the consent page and
//! remembered per permission, carried by the access token and shown by introspection.
use atsso::oidc::clients::{self, NewClient};
use base64::Engine;
use serde_json::Value;

use super::{
    atproto_login::{app_with_mock_and, approve_at_pds, sign_in, submit_login},
    helpers::{eventually, hidden_input, location, query_param, Browser, RegisteredClient, TestApp},
    mock_pds::{MockPds, ALICE_DID, ALICE_HANDLE},
    rp::Rp,
};

const NOTE_CREATE: &str = "atproto:repo:com.example.note?action=create";

async fn app(grant_as_requested: bool) -> (TestApp, MockPds) {
    let (app, mock) = app_with_mock_and(|_, _| {}).await;
    mock.configure(|c| {
        c.granted_scope = "atproto".into();
        c.grant_as_requested = grant_as_requested;
    });
    (app, mock)
}

/// A client that may ask for `allowed` atproto permissions.
async fn register(app: &TestApp, name: &str, first_party: bool, allowed: &[&str]) -> RegisteredClient {
    let redirect_uri = format!("http://127.0.0.1:9/{name}/callback");
    let (client, secret) = clients::register(
        &app.state.store,
        NewClient {
            name: name.into(),
            redirect_uris: vec![redirect_uri.clone()],
            first_party,
            atproto_scopes: allowed.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    RegisteredClient { client, secret, redirect_uri }
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn introspect(app: &TestApp, client: &RegisteredClient, token: &str) -> Value {
    reqwest::Client::new()
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&client.client.client_id, client.secret.as_deref())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The scope the last PAR at the mock PDS asked for.
fn last_par_scope(mock: &MockPds) -> String {
    mock.log_for("/oauth/par").last().unwrap().form.get("scope").cloned().unwrap_or_default()
}

#[tokio::test]
async fn malformed_or_unallowed_atproto_scopes_are_invalid_scope() {
    let (app, _mock) = app(true).await;
    let notes = register(&app, "notes", true, &["repo:com.example.note"]).await;
    let rp = Rp::discover(&app, &notes).await;
    let browser = Browser::new();
    for (scope, words) in [
        ("atproto:repo:not_an_nsid", "atproto:repo:not_an_nsid"),
        ("atproto:bogus:thing", "atproto:bogus:thing"),
        ("atproto:rpc:app.bsky.feed.getTimeline", "aud"),
        ("atproto:blob:image/*", "not available to this client"),
        ("atproto:repo:com.example.other", "not available to this client"),
        ("atproto:repo:*", "not available to this client"),
    ] {
        let back = location(&browser.get(&rp.start(&[scope]).url).await);
        assert!(back.starts_with(&notes.redirect_uri), "{scope}: {back}");
        assert_eq!(query_param(&back, "error").as_deref(), Some("invalid_scope"), "{scope}: {back}");
        let description = query_param(&back, "error_description").unwrap();
        assert!(description.contains(words), "{scope}: {description}");
    }
}

#[tokio::test]
async fn sign_in_asks_the_pds_for_the_apps_permissions_and_the_tokens_carry_them() {
    let (app, mock) = app(true).await;
    let notes = register(&app, "notes", true, &["repo:com.example.note"]).await;
    let rp = Rp::discover(&app, &notes).await;
    let browser = Browser::new();

    let pending = rp.start(&["atproto:repo:com.example.note?action=create"]);
    let login_path = location(&browser.get(&pending.url).await);
    let response = submit_login(&app, &browser, &login_path, ALICE_HANDLE).await;
    let authorization_url = location(&response);
    let asked = last_par_scope(&mock);
    assert_eq!(asked, "atproto repo:com.example.note?action=create", "the PDS is asked for the app's permission");
    // The loopback development client declares the scope in its client_id.
    let client_id = mock.log_for("/oauth/par").last().unwrap().form["client_id"].clone();
    assert!(client_id.contains("scope=atproto%20repo%3Acom.example.note%3Faction%3Dcreate"), "{client_id}");

    let back = location(&browser.get(&approve_at_pds(&authorization_url).await).await);
    let tokens = rp.exchange(&query_param(&back, "code").unwrap(), pending.verifier).await.unwrap();
    let access_token = openidconnect::OAuth2TokenResponse::access_token(&tokens).secret().clone();
    let scope = claims_of(&access_token)["scope"].as_str().unwrap().to_owned();
    assert!(scope.split(' ').any(|s| s == NOTE_CREATE), "the access token carries the permission: {scope}");
    let introspection = introspect(&app, &notes, &access_token).await;
    assert!(introspection["scope"].as_str().unwrap().split(' ').any(|s| s == NOTE_CREATE), "{introspection}");

    // The upstream grant holds it, and keeps it across an upstream refresh.
    let sid = rp.verify_id_token(&tokens, None)["sid"].as_str().unwrap().to_owned();
    let held: Vec<String> =
        atsso::sso::upstream::upstream_permissions(&app.state, &sid).await.unwrap().unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(held, ["repo:com.example.note?action=create"]);
}

#[tokio::test]
async fn a_permission_the_upstream_grant_lacks_sends_the_user_through_the_pds_again() {
    let (app, mock) = app(true).await;
    let plain = app.register("plain", false, true).await;
    let notes = register(&app, "notes", true, &["repo:com.example.note"]).await;
    let browser = Browser::new();
    let (_, sid) = sign_in(&app, &Rp::discover(&app, &plain).await, &browser).await;
    assert_eq!(last_par_scope(&mock), "atproto", "the first sign-in asked for no permission");
    let revoked_before = mock.revoked().len();

    // prompt=none cannot step up.
    let rp = Rp::discover(&app, &notes).await;
    let silent = browser.get(&format!("{}&prompt=none", rp.start(&[NOTE_CREATE]).url)).await;
    assert_eq!(query_param(&location(&silent), "error").as_deref(), Some("interaction_required"));

    // The step-up page: the account filled in, what the PDS will be asked for, in words.
    let pending = rp.start(&[NOTE_CREATE]);
    let login_path = location(&browser.get(&pending.url).await);
    assert!(login_path.starts_with("/login?request_id="), "{login_path}");
    let html = browser.get(&app.url(&login_path)).await.text().await.unwrap();
    assert!(html.contains("More access needed"), "{html}");
    assert!(html.contains("create records of type com.example.note"), "{html}");
    assert_eq!(hidden_or_value(&html, "handle").as_deref(), Some(ALICE_DID));

    let response = submit_login(&app, &browser, &login_path, ALICE_DID).await;
    assert_eq!(last_par_scope(&mock), "atproto repo:com.example.note?action=create");
    let back = location(&browser.get(&approve_at_pds(&location(&response)).await).await);
    assert!(back.starts_with(&notes.redirect_uri), "one step-up, then the code: {back}");
    let tokens = rp.exchange(&query_param(&back, "code").unwrap(), pending.verifier).await.unwrap();
    let claims = rp.verify_id_token(&tokens, Some(&pending.nonce));
    assert_eq!(claims["sid"], sid.as_str(), "the same SSO session");
    let access_token = openidconnect::OAuth2TokenResponse::access_token(&tokens).secret().clone();
    assert!(claims_of(&access_token)["scope"].as_str().unwrap().contains(NOTE_CREATE));
    // The new grant replaced the old one, which is revoked at the PDS.
    let held: Vec<String> =
        atsso::sso::upstream::upstream_permissions(&app.state, &sid).await.unwrap().unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(held, ["repo:com.example.note?action=create"]);
    eventually(std::time::Duration::from_secs(10), "the replaced upstream grant revoked", || async {
        (mock.revoked().len() > revoked_before).then_some(())
    })
    .await;

    // A further app with another permission: the step-up keeps what the grant holds.
    let photos = register(&app, "photos", true, &["repo:com.example.photo"]).await;
    let rp = Rp::discover(&app, &photos).await;
    let login_path = location(&browser.get(&rp.start(&["atproto:repo:com.example.photo"]).url).await);
    submit_login(&app, &browser, &login_path, ALICE_DID).await;
    assert_eq!(last_par_scope(&mock), "atproto repo:com.example.photo repo:com.example.note?action=create");
}

/// The value of the input named `name` (hidden or not).
fn hidden_or_value(html: &str, name: &str) -> Option<String> {
    hidden_input(html, name).or_else(|| {
        let at = html.find(&format!(r#"name="{name}""#))?;
        let rest = &html[at..];
        let value = rest.find("value=\"")? + 7;
        rest[value..].split('"').next().map(String::from)
    })
}

#[tokio::test]
async fn what_the_pds_grants_counts_and_is_not_asked_again() {
    // The user approves only `atproto` at their PDS.
    let (app, mock) = app(false).await;
    let notes = register(&app, "notes", true, &["repo:com.example.note"]).await;
    let rp = Rp::discover(&app, &notes).await;
    let browser = Browser::new();
    let pending = rp.start(&[NOTE_CREATE]);
    let login_path = location(&browser.get(&pending.url).await);
    let response = submit_login(&app, &browser, &login_path, ALICE_HANDLE).await;
    let back = location(&browser.get(&approve_at_pds(&location(&response)).await).await);
    assert!(back.starts_with(&notes.redirect_uri), "no second trip to the PDS: {back}");
    let tokens = rp.exchange(&query_param(&back, "code").unwrap(), pending.verifier).await.unwrap();
    let access_token = openidconnect::OAuth2TokenResponse::access_token(&tokens).secret().clone();
    let scope = claims_of(&access_token)["scope"].as_str().unwrap().to_owned();
    assert!(!scope.contains("atproto:"), "a permission the user did not grant is not in the token: {scope}");
    assert_eq!(mock.log_for("/oauth/par").iter().filter(|r| r.status == 201).count(), 1);
}

#[tokio::test]
async fn consent_names_each_permission_in_words_and_remembers_it() {
    let (app, _mock) = app(true).await;
    let plain = app.register("plain", false, true).await;
    let notes = register(&app, "notes", false, &["repo:*"]).await;
    let browser = Browser::new();
    sign_in(&app, &Rp::discover(&app, &plain).await, &browser).await;
    let rp = Rp::discover(&app, &notes).await;

    // Consent first (then the step-up at the PDS).
    let consent_path = location(&browser.get(&rp.start(&[NOTE_CREATE]).url).await);
    assert!(consent_path.starts_with("/consent?request_id="), "{consent_path}");
    let html = browser.get(&app.url(&consent_path)).await.text().await.unwrap();
    assert!(html.contains("In your ATProto account"), "{html}");
    assert!(html.contains("create records of type com.example.note in your repository"), "{html}");
    let form = [
        ("request_id", hidden_input(&html, "request_id").unwrap()),
        ("csrf_token", hidden_input(&html, "csrf_token").unwrap()),
        ("decision", "allow".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let login_path = location(&browser.post_form(&app.url("/consent"), &form).await);
    assert!(login_path.starts_with("/login?request_id="), "after consent, the step-up: {login_path}");
    let response = submit_login(&app, &browser, &login_path, ALICE_DID).await;
    let back = location(&browser.get(&approve_at_pds(&location(&response)).await).await);
    assert!(back.starts_with(&notes.redirect_uri), "{back}");

    // The same permission again: remembered, straight to the app.
    let again = location(&browser.get(&rp.start(&[NOTE_CREATE]).url).await);
    assert!(again.starts_with(&notes.redirect_uri), "remembered: {again}");
    // Another permission: asked again.
    let other = location(&browser.get(&rp.start(&["atproto:repo:com.example.note?action=delete"]).url).await);
    assert!(other.starts_with("/consent?request_id="), "a new permission needs consent: {other}");
}

#[tokio::test]
async fn discovery_names_the_prefix_and_the_proxy() {
    let (app, _mock) = app(true).await;
    let doc: Value = reqwest::get(app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["atproto_scope_prefix"], "atproto:");
    assert_eq!(doc["atproto_xrpc_endpoint"], app.url("/xrpc"));
}
