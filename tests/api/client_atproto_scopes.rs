//! Issue 16 (admin side): which upstream ATProto permissions a client may ask for, set per
//! client through the admin API, the admin UI and the CLI, stored canonical without the
//! `atproto:` prefix; the union over enabled clients is what atsso asks PDSes for.
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{
    admin::{spawn_admin_app, spawn_admin_app_with, AdminApp, ADMIN_DID},
    helpers::{hidden_input, spawn_app, TestApp},
};
use atsso::{
    admin::auth::{create_token, TokenKind},
    oidc::clients::{self, NewClient},
};

async fn api(admin: &AdminApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, admin.app.url(&format!("/api/admin{path}"))).bearer_auth(&admin.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_sets_replaces_and_clears_a_clients_atproto_permissions() {
    let admin = spawn_admin_app().await;
    let (status, body) = api(
        &admin,
        reqwest::Method::POST,
        "/clients",
        Some(json!({
            "name": "Notes",
            "redirect_uris": ["https://notes.example/cb"],
            "atproto_scopes": ["atproto:repo:com.example.note?action=create", "repo?collection=com.example.note&action=create", "blob:image/*"],
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["atproto_scopes"], json!(["repo:com.example.note?action=create", "blob:image/*"]), "canonical, deduplicated");
    let id = body["client_id"].as_str().unwrap().to_owned();
    let (_, read) = api(&admin, reqwest::Method::GET, &format!("/clients/{id}"), None).await;
    assert_eq!(read["atproto_scopes"], body["atproto_scopes"], "{read}");

    // Absent leaves the list; an array replaces it; the change is audited.
    let (status, body) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{id}"), Some(json!({ "name": "Notes 2" }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["atproto_scopes"], json!(["repo:com.example.note?action=create", "blob:image/*"]));
    let (status, body) = api(
        &admin,
        reqwest::Method::PATCH,
        &format!("/clients/{id}"),
        Some(json!({ "atproto_scopes": ["atproto:rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["atproto_scopes"], json!(["rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"]));
    let (_, audit) = api(&admin, reqwest::Method::GET, "/audit?action=client.update", None).await;
    assert_eq!(audit["items"][0]["details"], "fields=atproto_scopes", "{audit}");

    // A malformed one is a 400 naming the field and the entry; nothing changes.
    let (status, body) = api(
        &admin,
        reqwest::Method::PATCH,
        &format!("/clients/{id}"),
        Some(json!({ "atproto_scopes": ["repo:com.example.ok", "repo:nope"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problem = body["fields"]["atproto_scopes"].as_str().unwrap_or_default();
    assert!(problem.contains("`repo:nope`"), "{body}");
    let (_, read) = api(&admin, reqwest::Method::GET, &format!("/clients/{id}"), None).await;
    assert_eq!(read["atproto_scopes"].as_array().map(Vec::len), Some(1), "{read}");

    // An empty array allows none again.
    let (status, body) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{id}"), Some(json!({ "atproto_scopes": [] }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["atproto_scopes"], json!([]));

    // Creation refuses a malformed one too, and a client created without the field has none.
    let (status, body) = api(
        &admin,
        reqwest::Method::POST,
        "/clients",
        Some(json!({ "name": "Bad", "redirect_uris": ["https://bad.example/cb"], "atproto_scopes": ["transition:generic"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["atproto_scopes"].as_str().is_some(), "{body}");
    let (status, body) =
        api(&admin, reqwest::Method::POST, "/clients", Some(json!({ "name": "Plain", "redirect_uris": ["https://plain.example/cb"] })))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["atproto_scopes"], json!([]));
}

async fn register(app: &TestApp, name: &str, atproto_scopes: &[&str]) -> String {
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![format!("https://{name}.example/cb")],
        atproto_scopes: atproto_scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    clients::register(&app.state.store, new).await.unwrap().0.client_id
}

#[tokio::test]
async fn the_union_covers_enabled_clients_sorted_and_deduplicated() {
    let app = spawn_app().await;
    let store = &app.state.store;
    assert_eq!(store.allowed_atproto_permissions_union().await.unwrap(), Vec::<String>::new());
    register(&app, "a", &["atproto:repo:com.example.post", "blob:image/*"]).await;
    register(&app, "b", &["repo:com.example.post", "atproto:account:email"]).await;
    register(&app, "none", &[]).await;
    let off = register(&app, "off", &["repo:com.example.secret"]).await;
    clients::set_enabled(store, None, &off, false).await.unwrap();
    assert_eq!(store.allowed_atproto_permissions_union().await.unwrap(), ["account:email", "blob:image/*", "repo:com.example.post"]);

    // Enabling the disabled client adds its permissions.
    clients::set_enabled(store, None, &off, true).await.unwrap();
    assert_eq!(
        store.allowed_atproto_permissions_union().await.unwrap(),
        ["account:email", "blob:image/*", "repo:com.example.post", "repo:com.example.secret"]
    );
}

#[tokio::test]
async fn the_admin_ui_edits_the_permissions_one_per_line_and_shows_errors_on_the_field() {
    let admin = spawn_admin_app().await;
    let browser = admin.app.browser_with_session(ADMIN_DID, "admin.test").await;
    let base = &admin.app.base;
    let html = browser.get(&format!("{base}/admin/clients/new")).await.text().await.unwrap();
    assert!(html.contains(r#"<textarea id="atproto_scopes" name="atproto_scopes""#), "the form offers the field");
    assert!(html.contains("ATProto permissions this app may ask for (one per line)"));
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let fields = |permissions: &str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("name", "ui".to_owned()),
            ("redirect_uris", "https://ui.example/cb".to_owned()),
            ("scope", "openid".to_owned()),
            ("atproto_scopes", permissions.to_owned()),
        ]
    };
    let response = browser
        .http
        .post(format!("{base}/admin/clients"))
        .form(&fields("atproto:repo:com.example.note?action=create\r\n\r\n  blob:image/*  \r\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let id = regex::Regex::new(r#"id="client_id" value="([^"]+)""#).unwrap().captures(&html).unwrap()[1].to_owned();
    let stored = admin.app.state.store.client(&id).await.unwrap().unwrap().atproto_scopes;
    assert_eq!(stored, ["repo:com.example.note?action=create", "blob:image/*"]);
    let unescape = |html: String| html.replace("&#x2F;", "/").replace("&amp;", "&");
    let detail = unescape(browser.get(&format!("{base}/admin/clients/{id}")).await.text().await.unwrap());
    assert!(detail.contains("repo:com.example.note?action=create\nblob:image/*</textarea>"), "the client page shows them");

    // A malformed line: 400, the form comes back with the error on the field, nothing saved.
    let response = browser
        .http
        .post(format!("{base}/admin/clients/{id}"))
        .form(&fields("blob:image/*\nrepo:com.example.note?action=publish"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let html = unescape(response.text().await.unwrap());
    assert!(
        regex::Regex::new(r#"(?s)id="atproto_scopes-error">[^<]*repo:com.example.note\?action=publish"#).unwrap().is_match(&html),
        "the error is shown on the field"
    );
    assert!(html.contains("repo:com.example.note?action=publish</textarea>"), "what was typed is kept");
    assert_eq!(admin.app.state.store.client(&id).await.unwrap().unwrap().atproto_scopes.len(), 2);

    // An empty field allows none.
    let response = browser.http.post(format!("{base}/admin/clients/{id}")).form(&fields("")).send().await.unwrap();
    assert_eq!(response.status(), 303, "saved");
    assert!(admin.app.state.store.client(&id).await.unwrap().unwrap().atproto_scopes.is_empty());
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

async fn stored_permissions(app: &TestApp, client_id: &str) -> Vec<String> {
    // A fresh store: the server's client cache may hold the row the CLI just changed.
    let fresh = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    fresh.client(client_id).await.unwrap().unwrap().atproto_scopes
}

#[tokio::test]
async fn the_cli_sets_replaces_and_clears_the_permissions() {
    let app = spawn_app().await;
    let args = ["clients", "add", "--name", "Cli", "--redirect-uri", "https://cli.example/cb", "--json"];
    let refused = cli(&app, &[&args[..], &["--atproto-scope", "repo:nope"]].concat());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("atproto_scopes"), "{}", String::from_utf8_lossy(&refused.stderr));

    let added = cli(&app, &[&args[..], &["--atproto-scope", "atproto:repo:com.example.note", "--atproto-scope", "blob:image/*"]].concat());
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let added: Value = serde_json::from_slice(&added.stdout).unwrap();
    let id = added["client_id"].as_str().unwrap().to_owned();
    assert_eq!(stored_permissions(&app, &id).await, ["repo:com.example.note", "blob:image/*"]);
    let listed: Value = serde_json::from_slice(&cli(&app, &["clients", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["atproto_scopes"], json!(["repo:com.example.note", "blob:image/*"]), "{listed}");

    let updated = cli(&app, &["clients", "update", &id, "--atproto-scope", "account:email"]);
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    assert_eq!(stored_permissions(&app, &id).await, ["account:email"], "the list is replaced");
    let refused = cli(&app, &["clients", "update", &id, "--atproto-scope", "repo:*?action=nuke"]);
    assert!(!refused.status.success());
    assert_eq!(stored_permissions(&app, &id).await, ["account:email"]);
    let both = cli(&app, &["clients", "update", &id, "--atproto-scope", "account:email", "--clear-atproto-scopes"]);
    assert!(!both.status.success(), "setting and clearing at once is refused");
    let cleared = cli(&app, &["clients", "update", &id, "--clear-atproto-scopes"]);
    assert!(cleared.status.success(), "{}", String::from_utf8_lossy(&cleared.stderr));
    assert!(stored_permissions(&app, &id).await.is_empty());
}

#[tokio::test]
async fn dynamically_registered_clients_get_no_atproto_permissions() {
    let on = spawn_admin_app_with(|c| {
        c.dynamic_registration = true;
        c.rate_limits.registration = 0;
    })
    .await;
    let initial = create_token(&on.app.state.store, "dcr", TokenKind::Registration).await.unwrap();
    let register = |body: Value| {
        let request = reqwest::Client::new().post(on.app.url("/oauth2/register")).bearer_auth(&initial).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = register(json!({ "redirect_uris": ["https://rp.example/cb"] })).await;
    assert_eq!(status, 201, "{body}");
    let id = body["client_id"].as_str().unwrap();
    assert!(on.app.state.store.client(id).await.unwrap().unwrap().atproto_scopes.is_empty());
    let (status, body) =
        register(json!({ "redirect_uris": ["https://rp.example/cb"], "scope": "openid atproto:repo:com.example.note" })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_client_metadata");
}
