//! Issue 11, item 7: PKCE (S256) is required of every client by default; a confidential client
//! may be let off (a legacy app) by an admin through the CLI, the API or the UI; a public client
//! never.
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{
    admin::{spawn_admin_app, AdminApp, ADMIN_DID},
    helpers::{hidden_input, location, query_param, spawn_app, Browser, RegisteredClient, TestApp},
};
use atsso::oidc::clients::{self, ClientUpdate, NewClient, RegistrationError};

const ALICE: &str = "did:plc:alice0000000000000000000";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

async fn register(app: &TestApp, name: &str, public: bool, allow_no_pkce: bool) -> Result<RegisteredClient, RegistrationError> {
    let redirect_uri = format!("http://127.0.0.1:9/{name}/callback");
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![redirect_uri.clone()],
        public,
        first_party: true,
        allow_no_pkce,
        ..Default::default()
    };
    let (client, secret) = clients::register(&app.state.store, new).await?;
    Ok(RegisteredClient { client, secret, redirect_uri })
}

fn authorize_path(registered: &RegisteredClient, pkce: bool) -> String {
    let redirect: String = url::form_urlencoded::byte_serialize(registered.redirect_uri.as_bytes()).collect();
    let mut path = format!(
        "/oauth2/authorize?client_id={}&redirect_uri={redirect}&response_type=code&scope=openid&state=xyz&nonce=n",
        registered.client.client_id
    );
    if pkce {
        path.push_str(&format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"));
    }
    path
}

/// Where the authorization request sends the signed-in browser (first-party clients: no consent).
async fn authorize(app: &TestApp, browser: &Browser, registered: &RegisteredClient, pkce: bool) -> String {
    let response = browser.get(&app.url(&authorize_path(registered, pkce))).await;
    assert_eq!(response.status(), 302);
    let next = location(&response);
    assert!(next.starts_with(&registered.redirect_uri), "{next}");
    next
}

async fn exchange(app: &TestApp, registered: &RegisteredClient, code: &str, verifier: Option<&str>) -> (u16, Value) {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", registered.redirect_uri.as_str())];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    let response = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&registered.client.client_id, registered.secret.as_deref())
        .form(&form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn confidential_clients_need_pkce_unless_an_admin_lets_them_off() {
    let app = spawn_app().await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let strict = register(&app, "strict", false, false).await.unwrap();
    assert!(!strict.client.allow_no_pkce, "required by default");

    // Without a code_challenge: an error redirect to the client, state and iss kept.
    let next = authorize(&app, &browser, &strict, false).await;
    assert_eq!(query_param(&next, "error").as_deref(), Some("invalid_request"), "{next}");
    assert!(query_param(&next, "error_description").unwrap().contains("PKCE"));
    assert_eq!(query_param(&next, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(&next, "iss").as_deref(), Some(app.base.as_str()));
    assert!(query_param(&next, "code").is_none());
    // With one: a code, redeemed with the verifier.
    let code = query_param(&authorize(&app, &browser, &strict, true).await, "code").unwrap();
    assert_eq!(exchange(&app, &strict, &code, Some(VERIFIER)).await.0, 200);

    // A legacy confidential client let off: works without PKCE, and still checks PKCE when sent.
    let legacy = register(&app, "legacy", false, true).await.unwrap();
    assert!(legacy.client.allow_no_pkce);
    let code = query_param(&authorize(&app, &browser, &legacy, false).await, "code").expect("a code without PKCE");
    let (status, tokens) = exchange(&app, &legacy, &code, None).await;
    assert_eq!(status, 200, "{tokens}");
    let code = query_param(&authorize(&app, &browser, &legacy, true).await, "code").unwrap();
    let (status, body) = exchange(&app, &legacy, &code, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a challenge sent is a challenge checked");

    // Requiring PKCE again also refuses a code issued without it in the meantime.
    let code = query_param(&authorize(&app, &browser, &legacy, false).await, "code").unwrap();
    clients::update(&app.state.store, &legacy.client.client_id, ClientUpdate { allow_no_pkce: Some(false), ..Default::default() })
        .await
        .unwrap();
    let (status, body) = exchange(&app, &legacy, &code, None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let next = authorize(&app, &browser, &legacy, false).await;
    assert_eq!(query_param(&next, "error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn public_clients_cannot_be_let_off_pkce() {
    let app = spawn_app().await;
    match register(&app, "spa", true, true).await {
        Err(RegistrationError::Invalid(fields)) => assert!(fields.0.contains_key("allow_no_pkce"), "{fields}"),
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("a public client was let off PKCE"),
    }
    let spa = register(&app, "spa", true, false).await.unwrap();
    let refused =
        clients::update(&app.state.store, &spa.client.client_id, ClientUpdate { allow_no_pkce: Some(true), ..Default::default() }).await;
    assert!(matches!(refused, Err(RegistrationError::Invalid(ref fields)) if fields.0.contains_key("allow_no_pkce")), "{refused:?}");
    assert!(!app.state.store.client(&spa.client.client_id).await.unwrap().unwrap().allow_no_pkce);
}

async fn api(admin: &AdminApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, admin.app.url(&format!("/api/admin{path}"))).bearer_auth(&admin.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_sets_and_shows_the_opt_out_and_refuses_it_for_public_clients() {
    let admin = spawn_admin_app().await;
    let post = reqwest::Method::POST;
    let (status, body) =
        api(&admin, post.clone(), "/clients", Some(json!({ "name": "Plain", "redirect_uris": ["https://plain.example/cb"] }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["allow_no_pkce"], false, "PKCE required by default");

    let (status, body) = api(
        &admin,
        post.clone(),
        "/clients",
        Some(json!({ "name": "Legacy", "redirect_uris": ["https://legacy.example/cb"], "allow_no_pkce": true })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["allow_no_pkce"], true);
    let id = body["client_id"].as_str().unwrap().to_owned();
    let (status, body) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{id}"), Some(json!({ "allow_no_pkce": false }))).await;
    assert_eq!((status, &body["allow_no_pkce"]), (StatusCode::OK, &json!(false)), "{body}");
    let (_, audit) = api(&admin, reqwest::Method::GET, "/audit?action=client.update", None).await;
    assert_eq!(audit["items"][0]["details"], "fields=allow_no_pkce");

    let (status, body) = api(
        &admin,
        post.clone(),
        "/clients",
        Some(json!({ "name": "Spa", "redirect_uris": ["https://spa.example/cb"], "public": true, "allow_no_pkce": true })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["allow_no_pkce"].as_str().is_some(), "{body}");
    let (status, body) =
        api(&admin, post.clone(), "/clients", Some(json!({ "name": "Spa", "redirect_uris": ["https://spa.example/cb"], "public": true })))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let spa = body["client_id"].as_str().unwrap().to_owned();
    let (status, body) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{spa}"), Some(json!({ "allow_no_pkce": true }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["allow_no_pkce"].as_str().is_some(), "{body}");
}

#[tokio::test]
async fn the_admin_ui_sets_the_opt_out_for_confidential_clients_only() {
    let admin = spawn_admin_app().await;
    let browser = admin.app.browser_with_session(ADMIN_DID, "admin.test").await;
    let base = &admin.app.base;
    let html = browser.get(&format!("{base}/admin/clients/new")).await.text().await.unwrap();
    assert!(html.contains(r#"name="allow_no_pkce""#), "the form offers the opt-out");
    let csrf = hidden_input(&html, "csrf_token").unwrap();

    let form = |name: &'static str, extra: &'static [(&'static str, &'static str)]| {
        let mut fields =
            vec![("csrf_token", csrf.clone()), ("name", name.to_owned()), ("redirect_uris", format!("https://{name}.example/cb"))];
        fields.push(("scope", "openid".into()));
        fields.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        fields
    };
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let browser = &browser;
        async move { browser.http.post(path).form(&fields).send().await.unwrap() }
    };

    let response = post(format!("{base}/admin/clients"), form("spa", &[("public", "on"), ("allow_no_pkce", "on")])).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("PKCE"));

    let response = post(format!("{base}/admin/clients"), form("legacy", &[("allow_no_pkce", "on")])).await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let id = regex::Regex::new(r#"id="client_id" value="([^"]+)""#).unwrap().captures(&html).unwrap()[1].to_owned();
    assert!(admin.app.state.store.client(&id).await.unwrap().unwrap().allow_no_pkce);
    let detail = browser.get(&format!("{base}/admin/clients/{id}")).await.text().await.unwrap();
    assert!(regex::Regex::new(r#"name="allow_no_pkce"[^>]*checked"#).unwrap().is_match(&detail), "the detail page shows it");
    let list = browser.get(&format!("{base}/admin")).await.text().await.unwrap();
    assert!(list.contains("PKCE not required"), "and so does the list");

    // Saving the form without the box requires PKCE again.
    let response = post(format!("{base}/admin/clients/{id}"), form("legacy", &[])).await;
    assert_eq!(response.status(), 303);
    assert!(!admin.app.state.store.client(&id).await.unwrap().unwrap().allow_no_pkce);

    // A public client's page does not offer the box.
    let (status, body) = api(
        &admin,
        reqwest::Method::POST,
        "/clients",
        Some(json!({ "name": "Spa", "redirect_uris": ["https://spa.example/cb"], "public": true })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let spa = body["client_id"].as_str().unwrap();
    let detail = browser.get(&format!("{base}/admin/clients/{spa}")).await.text().await.unwrap();
    assert!(!detail.contains(r#"name="allow_no_pkce""#));
}

/// The `atsso` binary itself, against the test server's database.
fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_atsso"))
        .args(args)
        .env("ATSSO_DATA_DIR", &app.state.config.data_dir)
        .env("ATSSO_DATABASE_URL", &app.state.config.database_url)
        .env("ATSSO_LOG", "error")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_cli_sets_the_opt_out_and_refuses_it_for_public_clients() {
    let app = spawn_app().await;
    let refused =
        cli(&app, &["clients", "add", "--name", "Spa", "--redirect-uri", "https://spa.example/cb", "--public", "--allow-no-pkce"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PKCE"), "{}", String::from_utf8_lossy(&refused.stderr));

    let added =
        cli(&app, &["clients", "add", "--name", "Legacy", "--redirect-uri", "https://legacy.example/cb", "--allow-no-pkce", "--json"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let added: Value = serde_json::from_slice(&added.stdout).unwrap();
    let id = added["client_id"].as_str().unwrap();
    assert!(app.state.store.client(id).await.unwrap().unwrap().allow_no_pkce);

    let updated = cli(&app, &["clients", "update", id, "--require-pkce"]);
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    let outside = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    assert!(!outside.client(id).await.unwrap().unwrap().allow_no_pkce);
    let updated = cli(&app, &["clients", "update", id, "--allow-no-pkce"]);
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    let outside = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    assert!(outside.client(id).await.unwrap().unwrap().allow_no_pkce);

    let listed = cli(&app, &["clients", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["allow_no_pkce"], true, "{listed}");

    let spa = cli(&app, &["clients", "add", "--name", "Spa", "--redirect-uri", "https://spa.example/cb", "--public", "--json"]);
    let spa: Value = serde_json::from_slice(&spa.stdout).unwrap();
    let refused = cli(&app, &["clients", "update", spa["client_id"].as_str().unwrap(), "--allow-no-pkce"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PKCE"));
}
