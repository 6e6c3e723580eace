//! Issue 14: access tokens are RS256 by default (what RS256-only verifiers such as Better Auth's
//! `jwtVerify(token, JWKS, { algorithms: ['RS256'] })` accept); ES256 is an opt-in per client
//! (CLI, API, UI, dynamic registration) or globally (`ATSSO_ACCESS_TOKEN_ALG=ES256`).
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{
    admin::{spawn_admin_app, spawn_admin_app_with, AdminApp, ADMIN_DID},
    helpers::{hidden_input, location, query_param, spawn_app, spawn_app_with, Browser, TestApp},
};
use atsso::{
    admin::auth::{create_token, TokenKind},
    crypto::signing::Alg,
    oidc::clients::{self, NewClient},
};

const ALICE: &str = "did:plc:alice0000000000000000000";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A first-party client's redirect (no consent page), its id and secret.
struct Rp {
    client_id: String,
    secret: Option<String>,
    redirect_uri: String,
}

async fn register(app: &TestApp, name: &str, access_token_alg: Option<&str>) -> Rp {
    let redirect_uri = format!("http://127.0.0.1:9/{name}/callback");
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![redirect_uri.clone()],
        first_party: true,
        access_token_alg: access_token_alg.map(String::from),
        ..Default::default()
    };
    let (client, secret) = clients::register(&app.state.store, new).await.unwrap();
    Rp { client_id: client.client_id, secret, redirect_uri }
}

/// Signs Alice in to `rp` and returns the access token of the code exchange.
async fn access_token(app: &TestApp, browser: &Browser, rp: &Rp) -> String {
    let redirect: String = url::form_urlencoded::byte_serialize(rp.redirect_uri.as_bytes()).collect();
    let path = format!(
        "/oauth2/authorize?client_id={}&redirect_uri={redirect}&response_type=code&scope=openid&state=s&nonce=n\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        rp.client_id
    );
    let response = browser.get(&app.url(&path)).await;
    assert_eq!(response.status(), 302);
    let code = query_param(&location(&response), "code").expect("a code");
    let response = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&rp.client_id, rp.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", rp.redirect_uri.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

fn header(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

async fn alg_of_access_token(app: &TestApp, browser: &Browser, rp: &Rp) -> String {
    header(&access_token(app, browser, rp).await)["alg"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn access_tokens_are_rs256_by_default_and_verify_with_an_rs256_only_verifier() {
    let app = spawn_app().await;
    let rp = register(&app, "plain", None).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let token = access_token(&app, &browser, &rp).await;
    let header = header(&token);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("RS256"), Some("at+jwt")));

    // Like `jwtVerify(token, JWKS, { algorithms: ['RS256'] })`: the key named by the kid, RS256 only.
    let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("the kid is in the JWKS");
    assert_eq!(key["alg"], "RS256");
    let jwk = josekit::jwk::Jwk::from_bytes(serde_json::to_vec(key).unwrap()).unwrap();
    let verifier = josekit::jws::RS256.verifier_from_jwk(&jwk).unwrap();
    let (payload, _) = josekit::jwt::decode_with_verifier(&token, &verifier).expect("verifies as RS256");
    assert_eq!(payload.subject(), Some(ALICE));

    // Introspection and userinfo know it (they look tokens up, whatever their algorithm).
    let info = reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(info.status(), 200);
    let introspection: Value = reqwest::Client::new()
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&rp.client_id, rp.secret.as_deref())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspection["active"], true, "{introspection}");
}

#[tokio::test]
async fn a_client_opted_into_es256_gets_es256_access_tokens_and_the_others_rs256() {
    let app = spawn_app().await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let es = register(&app, "es", Some("ES256")).await;
    let plain = register(&app, "plain", None).await;
    assert_eq!(app.state.store.client(&es.client_id).await.unwrap().unwrap().access_token_alg, Some(Alg::Es256));
    let token = access_token(&app, &browser, &es).await;
    assert_eq!(header(&token)["alg"], "ES256");
    let jwks: Value = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header(&token)["kid"] && k["alg"] == "ES256"));
    let info = reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(info.status(), 200, "userinfo accepts ES256 access tokens too");
    assert_eq!(alg_of_access_token(&app, &browser, &plain).await, "RS256");

    let refused = clients::register(
        &app.state.store,
        NewClient {
            name: "hs".into(),
            redirect_uris: vec!["https://hs.example/cb".into()],
            access_token_alg: Some("HS256".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(refused, Err(clients::RegistrationError::Invalid(ref fields)) if fields.0.contains_key("access_token_alg")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_global_setting_makes_es256_the_default_and_a_client_may_still_ask_for_rs256() {
    let app = spawn_app_with(|c| c.access_token_alg = Alg::Es256).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let plain = register(&app, "plain", None).await;
    let rs = register(&app, "rs", Some("RS256")).await;
    assert_eq!(alg_of_access_token(&app, &browser, &plain).await, "ES256");
    assert_eq!(alg_of_access_token(&app, &browser, &rs).await, "RS256");
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
async fn the_admin_api_sets_es256_and_patching_null_returns_to_the_global_default() {
    let admin = spawn_admin_app().await;
    let app = &admin.app;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let redirect_uri = "http://127.0.0.1:9/api-es/callback";
    let (status, body) = api(
        &admin,
        reqwest::Method::POST,
        "/clients",
        Some(json!({ "name": "Api", "redirect_uris": [redirect_uri], "first_party": true, "access_token_alg": "ES256" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["access_token_alg"], "ES256");
    let id = body["client_id"].as_str().unwrap().to_owned();
    let rp = Rp { client_id: id.clone(), secret: body["client_secret"].as_str().map(String::from), redirect_uri: redirect_uri.into() };
    assert_eq!(alg_of_access_token(app, &browser, &rp).await, "ES256");

    let (status, body) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{id}"), Some(json!({ "access_token_alg": null }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access_token_alg"], Value::Null, "{body}");
    let (_, audit) = api(&admin, reqwest::Method::GET, "/audit?action=client.update", None).await;
    assert_eq!(audit["items"][0]["details"], "fields=access_token_alg");
    assert_eq!(alg_of_access_token(app, &browser, &rp).await, "RS256", "back to the global default");

    // A PATCH without the field leaves it; a bad value is a field error.
    let (status, _) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{id}"), Some(json!({ "access_token_alg": "ES256" }))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{id}"), Some(json!({ "name": "Api 2" }))).await;
    assert_eq!(body["access_token_alg"], "ES256", "{body}");
    let (status, body) = api(&admin, reqwest::Method::PATCH, &format!("/clients/{id}"), Some(json!({ "access_token_alg": "HS256" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["fields"]["access_token_alg"].as_str().is_some(), "{body}");
}

#[tokio::test]
async fn the_admin_ui_offers_the_algorithm() {
    let admin = spawn_admin_app().await;
    let browser = admin.app.browser_with_session(ADMIN_DID, "admin.test").await;
    let base = &admin.app.base;
    let html = browser.get(&format!("{base}/admin/clients/new")).await.text().await.unwrap();
    assert!(html.contains(r#"name="access_token_alg""#), "the form offers the choice");
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let fields = |alg: &str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("name", "ui".to_owned()),
            ("redirect_uris", "https://ui.example/cb".to_owned()),
            ("scope", "openid".to_owned()),
            ("access_token_alg", alg.to_owned()),
        ]
    };
    let response = browser.http.post(format!("{base}/admin/clients")).form(&fields("ES256")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let id = regex::Regex::new(r#"id="client_id" value="([^"]+)""#).unwrap().captures(&html).unwrap()[1].to_owned();
    assert_eq!(admin.app.state.store.client(&id).await.unwrap().unwrap().access_token_alg, Some(Alg::Es256));
    let detail = browser.get(&format!("{base}/admin/clients/{id}")).await.text().await.unwrap();
    assert!(regex::Regex::new(r#"value="ES256"[^>]*selected"#).unwrap().is_match(&detail), "the detail page shows it");

    // The empty choice is the global default.
    let response = browser.http.post(format!("{base}/admin/clients/{id}")).form(&fields("")).send().await.unwrap();
    assert_eq!(response.status(), 303, "saved");
    assert_eq!(admin.app.state.store.client(&id).await.unwrap().unwrap().access_token_alg, None);
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
async fn the_cli_sets_and_changes_the_algorithm() {
    let app = spawn_app().await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let redirect_uri = "http://127.0.0.1:9/cli/callback";
    let args = ["clients", "add", "--name", "Cli", "--redirect-uri", redirect_uri, "--first-party", "--json"];
    let refused = cli(&app, &[&args[..], &["--access-token-alg", "HS256"]].concat());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("access_token_alg"), "{}", String::from_utf8_lossy(&refused.stderr));

    let added = cli(&app, &[&args[..], &["--access-token-alg", "ES256"]].concat());
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let added: Value = serde_json::from_slice(&added.stdout).unwrap();
    let rp = Rp {
        client_id: added["client_id"].as_str().unwrap().to_owned(),
        secret: added["client_secret"].as_str().map(String::from),
        redirect_uri: redirect_uri.into(),
    };
    // The server's client cache may hold the client for a moment; the CLI wrote it directly.
    let fresh = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    assert_eq!(fresh.client(&rp.client_id).await.unwrap().unwrap().access_token_alg, Some(Alg::Es256));
    assert_eq!(alg_of_access_token(&app, &browser, &rp).await, "ES256");

    let listed: Value = serde_json::from_slice(&cli(&app, &["clients", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["access_token_alg"], "ES256", "{listed}");

    let updated = cli(&app, &["clients", "update", &rp.client_id, "--access-token-alg", "default"]);
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    let fresh = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    assert_eq!(fresh.client(&rp.client_id).await.unwrap().unwrap().access_token_alg, None);
    let updated = cli(&app, &["clients", "update", &rp.client_id, "--access-token-alg", "RS256"]);
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    let fresh = atsso::store::Store::connect(&app.state.config.database_url, 1).await.unwrap();
    assert_eq!(fresh.client(&rp.client_id).await.unwrap().unwrap().access_token_alg, Some(Alg::Rs256));
}

#[tokio::test]
async fn dynamic_registration_accepts_es256_and_refuses_other_algorithms() {
    let on = spawn_admin_app_with(|c| {
        c.dynamic_registration = true;
        c.rate_limits.registration = 0;
    })
    .await;
    let initial = create_token(&on.app.state.store, "dcr", TokenKind::Registration).await.unwrap();
    let register = |extra: Value| {
        let mut body = json!({ "redirect_uris": ["https://rp.example/cb"] });
        if let Value::Object(extra) = extra {
            body.as_object_mut().unwrap().extend(extra);
        }
        let request = reqwest::Client::new().post(on.app.url("/oauth2/register")).bearer_auth(&initial).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = register(json!({ "access_token_signed_response_alg": "ES256" })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["access_token_signed_response_alg"], "ES256");
    let id = body["client_id"].as_str().unwrap();
    assert_eq!(on.app.state.store.client(id).await.unwrap().unwrap().access_token_alg, Some(Alg::Es256));

    let (status, body) = register(json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["access_token_signed_response_alg"], "RS256", "the algorithm it will get: the global default");
    assert_eq!(on.app.state.store.client(body["client_id"].as_str().unwrap()).await.unwrap().unwrap().access_token_alg, None);

    for bad in [json!("HS256"), json!("none"), json!(256)] {
        let (status, body) = register(json!({ "access_token_signed_response_alg": bad })).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_client_metadata", "{bad}");
    }
}
