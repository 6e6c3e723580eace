//! Administration: the REST API (every operation and every refusal), the web UI's rules
//! (sign-in, 403, CSRF, confirmation, secret shown once), dynamic registration and the audit log.
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{
    helpers::{hidden_input, location, spawn_app_with, Browser, TestApp},
    mock_pds::{MockPds, ALICE_DID, ALICE_HANDLE},
};
use atsso::admin::auth::{create_token, TokenKind};

pub const ADMIN_DID: &str = "did:plc:adminadminadminadminadmi";
const BOB: &str = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb";

pub struct AdminApp {
    pub app: TestApp,
    pub token: String,
    http: reqwest::Client,
}

pub async fn spawn_admin_app() -> AdminApp {
    spawn_admin_app_with(|_| {}).await
}

pub async fn spawn_admin_app_with(adjust: impl FnOnce(&mut atsso::config::Config)) -> AdminApp {
    let app = spawn_app_with(|c| {
        c.admin_dids = vec![ADMIN_DID.into()];
        adjust(c);
    })
    .await;
    let token = create_token(&app.state.store, "ci", TokenKind::Admin).await.unwrap();
    AdminApp { app, token, http: reqwest::Client::new() }
}

impl AdminApp {
    fn url(&self, path: &str) -> String {
        self.app.url(&format!("/api/admin{path}"))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")) })
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn create(&self, name: &str) -> (String, String) {
        let (status, body) = self.post("/clients", json!({ "name": name, "redirect_uris": [format!("https://{name}.example/cb")] })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["client_id"].as_str().unwrap().to_owned(), body["client_secret"].as_str().unwrap().to_owned())
    }

    async fn client_count(&self) -> u64 {
        self.get("/clients").await.1["total"].as_u64().unwrap()
    }
}

/// A token request with a made-up code: `invalid_grant` (400) proves the client authenticated,
/// `invalid_client` (401) that it did not.
pub async fn token_request_status(app: &TestApp, client_id: &str, secret: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "authorization_code"), ("code", "made-up"), ("redirect_uri", "https://x.example/cb")])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn clients_create_list_get_update_rotate_disable_enable_delete() {
    let admin = spawn_admin_app().await;
    let (status, created) = admin
        .post(
            "/clients",
            json!({
                "name": "Notes",
                "redirect_uris": ["https://notes.example/cb", "http://127.0.0.1:3000/cb"],
                "post_logout_redirect_uris": ["https://notes.example/"],
                "backchannel_logout_uri": "https://notes.example/bcl",
                "scopes": ["openid", "profile"],
                "first_party": true
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43);
    assert_eq!(created["public"], false);
    assert_eq!(created["first_party"], true);
    assert_eq!(created["scopes"], json!(["openid", "profile"]));
    assert!(created.get("secret_hash").is_none());
    assert_eq!(token_request_status(&admin.app, &id, &secret).await, (400, "invalid_grant".into()));

    // list and get never show a secret
    let (status, list) = admin.get("/clients").await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["client_id"], id.as_str());
    assert!(!list.to_string().contains(&secret));
    let (status, one) = admin.get(&format!("/clients/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["redirect_uris"], json!(["https://notes.example/cb", "http://127.0.0.1:3000/cb"]));
    assert!(one.get("client_secret").is_none());

    // update: redirect and logout URIs, scopes, first-party; null removes an optional URI
    let (status, updated) = admin
        .patch(
            &format!("/clients/{id}"),
            json!({
                "redirect_uris": ["https://notes.example/auth/callback"],
                "post_logout_redirect_uris": [],
                "backchannel_logout_uri": null,
                "scopes": ["openid", "email", "offline_access"],
                "first_party": false
            }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["redirect_uris"], json!(["https://notes.example/auth/callback"]));
    assert_eq!(updated["post_logout_redirect_uris"], json!([]));
    assert_eq!(updated["backchannel_logout_uri"], Value::Null);
    assert_eq!(updated["scopes"], json!(["openid", "email", "offline_access"]));
    assert_eq!(updated["first_party"], false);
    assert_eq!(updated["name"], "Notes", "absent fields are kept");
    let stored = admin.app.state.store.client(&id).await.unwrap().unwrap();
    assert_eq!(stored.redirect_uris, ["https://notes.example/auth/callback"]);

    // rotate: the old secret stops working at once, the new one works
    let (status, rotated) = admin.post(&format!("/clients/{id}/rotate-secret"), json!({})).await;
    assert_eq!(status, 200);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(token_request_status(&admin.app, &id, &secret).await.0, 401);
    assert_eq!(token_request_status(&admin.app, &id, &new_secret).await, (400, "invalid_grant".into()));

    // disable: refused at the token endpoint; enable: accepted again
    let (status, disabled) = admin.post(&format!("/clients/{id}/disable"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(disabled["enabled"], false);
    assert_eq!(token_request_status(&admin.app, &id, &new_secret).await, (401, "invalid_client".into()));
    let (status, enabled) = admin.post(&format!("/clients/{id}/enable"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(enabled["enabled"], true);
    assert_eq!(token_request_status(&admin.app, &id, &new_secret).await.0, 400);

    // delete
    let (status, _) = admin.delete(&format!("/clients/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(admin.get(&format!("/clients/{id}")).await.0, 404);
    assert_eq!(token_request_status(&admin.app, &id, &new_secret).await, (401, "invalid_client".into()));
    assert_eq!(admin.client_count().await, 0);
}

#[tokio::test]
async fn public_clients_have_no_secret_to_rotate() {
    let admin = spawn_admin_app().await;
    let (status, created) = admin
        .post("/clients", json!({ "name": "SPA", "public": true, "redirect_uris": ["com.example.app:/cb", "https://spa.example/cb"] }))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["client_secret"], Value::Null);
    assert_eq!(created["public"], true);
    let id = created["client_id"].as_str().unwrap();
    let (status, body) = admin.post(&format!("/clients/{id}/rotate-secret"), json!({})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("public clients have no secret"));
}

#[tokio::test]
async fn invalid_redirect_uris_are_refused_per_field_and_nothing_is_stored() {
    let admin = spawn_admin_app().await;
    for (uri, problem) in [
        ("https://app.example/cb#frag", "fragment"),
        ("http://app.example/cb", "https"),
        ("https://*.example/cb", "wildcard"),
        ("/relative/cb", "absolute"),
        ("javascript:alert(1)", "scheme"),
    ] {
        let (status, body) = admin.post("/clients", json!({ "name": "Bad", "redirect_uris": [uri] })).await;
        assert_eq!(status, 400, "{uri}: {body}");
        let message = body["fields"]["redirect_uris"].as_str().unwrap_or_else(|| panic!("{uri}: {body}"));
        assert!(message.contains(problem), "{uri}: {message}");
    }
    // several problems at once: every field is listed
    let (status, body) = admin
        .post(
            "/clients",
            json!({
                "name": "",
                "redirect_uris": [],
                "post_logout_redirect_uris": ["https://a.example/#x"],
                "backchannel_logout_uri": "http://a.example/bcl",
                "scopes": ["openid", "admin"]
            }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid input");
    for field in ["name", "redirect_uris", "post_logout_redirect_uris", "backchannel_logout_uri", "scopes"] {
        assert!(body["fields"][field].is_string(), "{field} missing in {body}");
    }
    assert_eq!(admin.client_count().await, 0);

    // the same rules apply to updates, and a refused update changes nothing
    let (id, _) = admin.create("keep").await;
    let (status, body) = admin.patch(&format!("/clients/{id}"), json!({ "redirect_uris": ["https://keep.example/cb#x"] })).await;
    assert_eq!(status, 400);
    assert!(body["fields"]["redirect_uris"].as_str().unwrap().contains("fragment"));
    assert_eq!(admin.get(&format!("/clients/{id}")).await.1["redirect_uris"], json!(["https://keep.example/cb"]));
    let (status, body) = admin.patch(&format!("/clients/{id}"), json!({ "scopes": ["profile"] })).await;
    assert_eq!(status, 400);
    assert!(body["fields"]["scopes"].as_str().unwrap().contains("openid"));
}

#[tokio::test]
async fn duplicate_names_conflict() {
    let admin = spawn_admin_app().await;
    admin.create("one").await;
    let (id_two, _) = admin.create("two").await;
    let (status, body) = admin.post("/clients", json!({ "name": "one", "redirect_uris": ["https://x.example/cb"] })).await;
    assert_eq!(status, 409);
    assert!(body["fields"]["name"].is_string(), "{body}");
    let (status, _) = admin.patch(&format!("/clients/{id_two}"), json!({ "name": "one" })).await;
    assert_eq!(status, 409);
    assert_eq!(admin.get(&format!("/clients/{id_two}")).await.1["name"], "two");
    assert_eq!(admin.client_count().await, 2);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let admin = spawn_admin_app().await;
    let path = "/clients/no-such-client";
    assert_eq!(admin.get(path).await.0, 404);
    let (status, body) = admin.patch(path, json!({ "name": "x" })).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no such client");
    assert_eq!(admin.delete(path).await.0, 404);
    for action in ["rotate-secret", "disable", "enable"] {
        assert_eq!(admin.post(&format!("{path}/{action}"), json!({})).await.0, 404, "{action}");
    }
    assert_eq!(admin.get("/users/did:plc:nobodynobodynobodynobody").await.0, 404);
    assert_eq!(admin.post("/users/did:plc:nobodynobodynobodynobody/end-sessions", json!({})).await.0, 404);
    let (status, body) = admin.get("/no-such-endpoint").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn bad_bodies_are_refused_with_clear_messages() {
    let admin = spawn_admin_app().await;
    let http = reqwest::Client::new();
    // oversized
    let huge = json!({ "name": "big", "redirect_uris": [format!("https://big.example/{}", "a".repeat(70 * 1024))] });
    let response = http.post(admin.url("/clients")).bearer_auth(&admin.token).json(&huge).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too large"), "{body}");
    // not JSON
    let response = http
        .post(admin.url("/clients"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().await.unwrap()["error"].as_str().unwrap().starts_with("invalid JSON"));
    // wrong content type
    let response = http.post(admin.url("/clients")).bearer_auth(&admin.token).form(&[("name", "x")]).send().await.unwrap();
    assert_eq!(response.status(), 415);
    // unknown fields and wrong types
    let (status, body) = admin.post("/clients", json!({ "name": "x", "redirect_uris": ["https://x.example/cb"], "secret": "mine" })).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown field `secret`"), "{body}");
    let (status, _) = admin.post("/clients", json!({ "name": "x", "redirect_uris": "https://x.example/cb" })).await;
    assert_eq!(status, 400);
    let (id, _) = admin.create("x").await;
    let (status, body) = admin.patch(&format!("/clients/{id}"), json!({ "public": true })).await;
    assert_eq!(status, 400, "public cannot change: {body}");
    let (status, body) = admin.patch(&format!("/clients/{id}"), json!({})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("nothing to change"));
    assert_eq!(admin.client_count().await, 1);
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_refused_and_change_nothing() {
    // Every wrong credential is tried many times here: the failure limit (tested in security.rs)
    // would answer 429 before the case under test.
    let admin = spawn_admin_app_with(|c| c.rate_limits.admin_auth_failures = 0).await;
    let (id, _) = admin.create("target").await;
    let http = reqwest::Client::new();
    let registration = create_token(&admin.app.state.store, "dcr", TokenKind::Registration).await.unwrap();
    let revoked = create_token(&admin.app.state.store, "old", TokenKind::Admin).await.unwrap();
    assert!(admin.app.state.store.revoke_admin_token("old", 1).await.unwrap());
    let tampered = format!("{}x", &admin.token[..admin.token.len() - 1]);

    let attempts: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (reqwest::Method::GET, "/clients".into(), None),
        (reqwest::Method::POST, "/clients".into(), Some(json!({ "name": "evil", "redirect_uris": ["https://evil.example/cb"] }))),
        (reqwest::Method::GET, format!("/clients/{id}"), None),
        (reqwest::Method::PATCH, format!("/clients/{id}"), Some(json!({ "redirect_uris": ["https://evil.example/cb"] }))),
        (reqwest::Method::POST, format!("/clients/{id}/rotate-secret"), None),
        (reqwest::Method::POST, format!("/clients/{id}/disable"), None),
        (reqwest::Method::DELETE, format!("/clients/{id}"), None),
        (reqwest::Method::GET, "/users".into(), None),
        (reqwest::Method::POST, format!("/users/{ADMIN_DID}/end-sessions"), None),
        (reqwest::Method::GET, "/keys".into(), None),
        (reqwest::Method::POST, "/keys/rotate".into(), None),
        (reqwest::Method::GET, "/audit".into(), None),
    ];
    // An admin's browser session is not accepted by the API (token-only: no CSRF exposure).
    let admin_browser = admin.app.browser_with_session(ADMIN_DID, "admin.test").await;
    for (method, path, body) in &attempts {
        for (credential, expected) in [
            (None, 401),
            (Some(format!("Bearer {tampered}")), 401),
            (Some(format!("Bearer {revoked}")), 401),
            (Some("Bearer atsso_nope.nope".to_string()), 401),
            (Some("Bearer garbage".to_string()), 401),
            (Some(format!("Basic {}", admin.token)), 401),
            (Some(format!("Bearer {registration}")), 403),
        ] {
            let mut request = http.request(method.clone(), admin.url(path));
            if let Some(value) = &credential {
                request = request.header("authorization", value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), expected, "{method} {path} with {credential:?}");
            if expected == 401 {
                assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"atsso-admin\"");
            }
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].is_string());
        }
        let mut request = admin_browser.http.request(method.clone(), admin.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "session cookie on {method} {path}");
    }
    // nothing changed
    let (_, list) = admin.get("/clients").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["redirect_uris"], json!(["https://target.example/cb"]));
    assert_eq!(list["items"][0]["enabled"], true);
    assert_eq!(admin.get("/keys").await.1["total"], 2, "one RS256 and one ES256 key");
    let (_, audit) = admin.get("/audit").await;
    assert!(audit["items"].as_array().unwrap().iter().all(|e| e["actor"] == "token:ci"), "{audit}");
}

#[tokio::test]
async fn pagination_limits_and_offsets() {
    let admin = spawn_admin_app().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(admin.create(name).await.0);
    }
    let (_, page) = admin.get("/clients?limit=2").await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, rest) = admin.get("/clients?limit=2&offset=2").await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    let seen: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(seen.len(), 3);
    for id in &ids {
        assert!(seen.contains(&id.as_str()));
    }
    let (status, capped) = admin.get("/clients?limit=100000").await;
    assert_eq!(status, 200, "an oversized limit is capped, not refused");
    assert_eq!(capped["items"].as_array().unwrap().len(), 3);
    assert_eq!(admin.get("/clients?offset=10").await.1["items"], json!([]));
    for bad in ["limit=0", "limit=-1", "limit=ten", "offset=-1"] {
        let (status, body) = admin.get(&format!("/clients?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        let field = bad.split('=').next().unwrap();
        assert!(body["fields"][field].is_string(), "{bad}: {body}");
    }
    // the audit log pages the same way, newest first
    let (_, audit) = admin.get("/audit?limit=1").await;
    assert_eq!(audit["total"], 3);
    assert_eq!(audit["items"][0]["target"], ids[2].as_str());
}

#[tokio::test]
async fn users_search_show_and_end_sessions() {
    let admin = spawn_admin_app().await;
    let alice = admin.app.browser_with_session(ALICE_DID, "alice.test").await;
    let _alice_phone = admin.app.browser_with_session(ALICE_DID, "alice.test").await;
    admin.app.browser_with_session(BOB, "bob.test").await;
    let (client_id, _) = admin.create("notes").await;
    admin.app.state.store.save_consent(ALICE_DID, &client_id, &["openid".into(), "profile".into()], 1).await.unwrap();

    let (status, all) = admin.get("/users").await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 2);
    let (_, found) = admin.get("/users?q=alice").await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["did"], ALICE_DID);
    assert_eq!(found["items"][0]["handle"], "alice.test");
    assert_eq!(admin.get("/users?q=%40bob.test").await.1["items"][0]["did"], BOB);
    assert_eq!(admin.get(&format!("/users?q={BOB}")).await.1["total"], 1);
    assert_eq!(admin.get("/users?q=carol").await.1["total"], 0);

    let (status, detail) = admin.get(&format!("/users/{ALICE_DID}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["user"]["handle"], "alice.test");
    assert_eq!(detail["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(detail["consents"][0]["client_id"], client_id.as_str());
    assert_eq!(detail["consents"][0]["client_name"], "notes");
    assert_eq!(detail["consents"][0]["scopes"], json!(["openid", "profile"]));
    assert!(!detail.to_string().contains("secret_hash"));

    let (status, ended) = admin.post(&format!("/users/{ALICE_DID}/end-sessions"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(ended["ended_sessions"], 2);
    assert_eq!(admin.get(&format!("/users/{ALICE_DID}")).await.1["sessions"], json!([]));
    assert_eq!(location(&alice.get(&admin.app.url("/")).await), "/login", "Alice's browser is signed out");
    assert_eq!(admin.get(&format!("/users/{BOB}")).await.1["sessions"].as_array().unwrap().len(), 1, "Bob is untouched");

    let (_, audit) = admin.get("/audit?action=logout").await;
    assert_eq!(audit["total"], 2, "each ended session is a logout in the audit log");
    assert_eq!(audit["items"][0]["actor"], ALICE_DID);
    let (_, audit) = admin.get("/audit?action=user.end_sessions").await;
    assert_eq!(audit["items"][0]["target"], ALICE_DID);
    assert_eq!(audit["items"][0]["actor"], "token:ci");
}

#[tokio::test]
async fn signing_keys_list_and_rotate() {
    let admin = spawn_admin_app().await;
    let (status, keys) = admin.get("/keys").await;
    assert_eq!(status, 200);
    assert_eq!(keys["total"], 2, "one RS256 (ID tokens) and one ES256 (access tokens) key");
    assert_eq!(keys["items"][0]["alg"], "RS256");
    assert_eq!(keys["items"][1]["alg"], "ES256");
    let old_kid = keys["items"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(keys["items"][0]["active"], true);
    assert!(!keys.to_string().contains("PRIVATE"));

    let (status, rotated) = admin.post("/keys/rotate", json!({})).await;
    assert_eq!(status, 200);
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let (_, keys) = admin.get("/keys").await;
    assert_eq!(keys["total"], 4);
    assert_eq!(keys["items"][0]["kid"], new_kid.as_str());
    assert_eq!(keys["items"][0]["state"], "published", "signs only after the activation delay");
    assert_eq!(keys["items"][0]["active"], false);
    assert_eq!(keys["items"][0]["activates_at"], rotated["activates_at"]);
    assert_eq!(keys["items"][1]["state"], "published", "the new ES256 key");
    assert_eq!(keys["items"][2]["kid"], old_kid.as_str());
    assert_eq!(keys["items"][2]["state"], "active", "the old key signs until then");
    assert_eq!(keys["items"][2]["retired_at"], rotated["activates_at"]);
    assert_eq!(keys["items"][2]["published"], true);
    // this node publishes both at once
    let jwks: Value = reqwest::get(admin.app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");
}

#[tokio::test]
async fn audit_log_records_who_what_when_and_from_where() {
    let admin = spawn_admin_app().await;
    let before = atsso::clock::now();
    let (id, _) = admin.create("audited").await;
    admin.patch(&format!("/clients/{id}"), json!({ "first_party": true })).await;
    admin.post(&format!("/clients/{id}/rotate-secret"), json!({})).await;
    admin.post(&format!("/clients/{id}/disable"), json!({})).await;
    admin.post(&format!("/clients/{id}/enable"), json!({})).await;
    admin.delete(&format!("/clients/{id}")).await;
    admin.post("/keys/rotate", json!({})).await;

    let (status, audit) = admin.get("/audit").await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["keys.rotate", "client.delete", "client.enable", "client.disable", "client.rotate_secret", "client.update", "client.create"]
    );
    for entry in audit["items"].as_array().unwrap() {
        assert_eq!(entry["actor"], "token:ci");
        assert_eq!(entry["remote_addr"], "127.0.0.1");
        assert!(entry["at"].as_i64().unwrap() >= before);
    }
    assert_eq!(audit["items"][5]["details"], "fields=first_party");
    assert_eq!(audit["items"][6]["target"], id.as_str());
    // secrets never reach the audit log
    let text = audit.to_string();
    assert!(!text.contains(&admin.token) && !text.contains("client_secret"));
    // filters
    let (_, filtered) = admin.get(&format!("/audit?target={id}&action=client.disable")).await;
    assert_eq!(filtered["total"], 1);
    let (_, none) = admin.get("/audit?actor=someone-else").await;
    assert_eq!(none["total"], 0);
}

/// A real sign-in through atsso's own login (mock PDS) is audited, and an admin DID that signs
/// in this way reaches /admin; signing out is audited too.
#[tokio::test]
async fn login_and_logout_are_audited_and_an_admin_signs_in_through_atsso() {
    let mock = MockPds::spawn().await;
    mock.configure(|c| c.granted_scope = "atproto".into());
    let plc = url::Url::parse(&format!("{}/plc", mock.base)).unwrap();
    let resolver = url::Url::parse(&mock.base).unwrap();
    let app = spawn_app_with(|c| {
        c.plc_directory_url = plc;
        c.handle_resolver_url = Some(resolver);
        c.allow_insecure_loopback_upstream = true;
        c.admin_dids = vec![ALICE_DID.into()];
    })
    .await;
    let browser = Browser::new();
    let signin = browser.get(&app.url("/admin")).await;
    assert_eq!(signin.status(), 200);
    assert!(signin.text().await.unwrap().contains(r#"href="/login""#));

    let html = browser.get(&app.url("/login")).await.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let response = browser.post_form(&app.url("/login"), &[("handle", ALICE_HANDLE), ("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 302);
    let callback = location(&Browser::new().get(&location(&response)).await);
    let response = browser.get(&callback).await;
    assert_eq!(location(&response), "/");
    let admin_page = browser.get(&app.url("/admin")).await;
    assert_eq!(admin_page.status(), 200);
    assert!(admin_page.text().await.unwrap().contains("@alice.test"));

    let (entries, _) = app.state.store.list_audit(&Default::default(), 10, 0).await.unwrap();
    let login = entries.iter().find(|e| e.action == "login").expect("login audited");
    assert_eq!(login.actor, ALICE_DID);
    assert_eq!(login.remote_addr.as_deref(), Some("127.0.0.1"));

    let html = browser.get(&app.url("/logout")).await.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let response = browser.post_form(&app.url("/logout"), &[("csrf_token", &csrf), ("decision", "logout")]).await;
    assert_eq!(response.status(), 200);
    let (entries, _) = app.state.store.list_audit(&Default::default(), 10, 0).await.unwrap();
    let logout = entries.iter().find(|e| e.action == "logout").expect("logout audited");
    assert_eq!(logout.actor, ALICE_DID);
}

#[tokio::test]
async fn dynamic_registration_needs_the_setting_and_an_initial_access_token() {
    // off by default
    let off = spawn_admin_app().await;
    let response = reqwest::Client::new()
        .post(off.app.url("/oauth2/register"))
        .bearer_auth(&off.token)
        .json(&json!({ "redirect_uris": ["https://dcr.example/cb"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let discovery: Value = reqwest::get(off.app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert!(discovery.get("registration_endpoint").is_none());

    let on = spawn_admin_app_with(|c| c.dynamic_registration = true).await;
    let discovery: Value = reqwest::get(on.app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["registration_endpoint"], on.app.url("/oauth2/register"));
    let initial = create_token(&on.app.state.store, "dcr", TokenKind::Registration).await.unwrap();
    let register = |token: Option<String>, body: Value| {
        let mut request = reqwest::Client::new().post(on.app.url("/oauth2/register")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let metadata = json!({ "client_name": "Dyn", "redirect_uris": ["https://dyn.example/cb"], "scope": "openid profile" });
    assert_eq!(register(None, metadata.clone()).await.0, 401);
    assert_eq!(register(Some("atsso_bad.token".into()), metadata.clone()).await.0, 401);

    let (status, body) = register(Some(initial.clone()), metadata.clone()).await;
    assert_eq!(status, 201, "{body}");
    let client_id = body["client_id"].as_str().unwrap();
    let secret = body["client_secret"].as_str().unwrap();
    assert_eq!(body["client_secret_expires_at"], 0);
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(body["scope"], "openid profile");
    assert_eq!(token_request_status(&on.app, client_id, secret).await.0, 400, "the new client authenticates");
    let stored = on.app.state.store.client(client_id).await.unwrap().unwrap();
    assert!(!stored.first_party, "dynamic clients always see the consent page");

    let (status, body) =
        register(Some(initial.clone()), json!({ "redirect_uris": ["com.example.app:/cb"], "token_endpoint_auth_method": "none" })).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("client_secret").is_none());
    assert_eq!(body["token_endpoint_auth_method"], "none");

    let (status, body) = register(Some(initial.clone()), json!({ "redirect_uris": ["http://dyn.example/cb"] })).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_redirect_uri");
    let (status, body) = register(Some(initial.clone()), metadata.clone()).await;
    assert_eq!(status, 400, "duplicate name");
    assert_eq!(body["error"], "invalid_client_metadata");
    let (status, body) =
        register(Some(initial.clone()), json!({ "redirect_uris": ["https://x.example/cb"], "grant_types": ["client_credentials"] })).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_client_metadata");

    // an initial access token opens nothing else; registrations are audited
    let response = reqwest::Client::new().get(on.url("/clients")).bearer_auth(&initial).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let (_, audit) = on.get("/audit?action=client.register_dynamic").await;
    assert_eq!(audit["total"], 2);
    assert_eq!(audit["items"][0]["actor"], "token:dcr");
}

// ---- the web UI's rules (the happy path in a real browser is in admin_browser.rs) ----

fn csrf_of(html: &str) -> String {
    hidden_input(html, "csrf_token").expect("a CSRF field on the page")
}

#[tokio::test]
async fn ui_sign_in_page_forbidden_for_non_admins_and_csrf_on_every_form() {
    let admin = spawn_admin_app().await;
    let (id, secret) = admin.create("ui-target").await;

    // signed out: a page with a sign-in link; posts are refused
    let anonymous = Browser::new();
    let page = anonymous.get(&admin.app.url("/admin")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"href="/login""#) && html.contains("Sign in"));
    assert_eq!(anonymous.post_form(&admin.app.url(&format!("/admin/clients/{id}/disable")), &[]).await.status(), 401);

    // signed in, not an admin: 403 on pages and forms
    let bob = admin.app.browser_with_session(BOB, "bob.test").await;
    let page = bob.get(&admin.app.url("/admin")).await;
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("not listed in ATSSO_ADMIN_DIDS"));
    for path in ["/admin/users", "/admin/keys", "/admin/audit", &format!("/admin/clients/{id}")] {
        assert_eq!(bob.get(&admin.app.url(path)).await.status(), 403, "{path}");
    }
    let html = bob.get(&admin.app.url("/login")).await.text().await.unwrap(); // a page with a CSRF cookie
    let bob_csrf = csrf_of(&html);
    let response = bob.post_form(&admin.app.url(&format!("/admin/clients/{id}/disable")), &[("csrf_token", &bob_csrf)]).await;
    assert_eq!(response.status(), 403);

    // an admin without (or with a wrong) CSRF token: refused, nothing changed
    let browser = admin.app.browser_with_session(ADMIN_DID, "admin.test").await;
    let html = browser.get(&admin.app.url(&format!("/admin/clients/{id}"))).await.text().await.unwrap();
    let csrf = csrf_of(&html);
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/admin/clients".into(), vec![("name", "csrf-less"), ("redirect_uris", "https://x.example/cb"), ("scope", "openid")]),
        (format!("/admin/clients/{id}"), vec![("name", "renamed"), ("redirect_uris", "https://evil.example/cb"), ("scope", "openid")]),
        (format!("/admin/clients/{id}/rotate-secret"), vec![]),
        (format!("/admin/clients/{id}/disable"), vec![]),
        (format!("/admin/clients/{id}/delete"), vec![]),
        (format!("/admin/users/{ADMIN_DID}/end-sessions"), vec![]),
        ("/admin/keys/rotate".into(), vec![]),
    ];
    for (path, fields) in &forms {
        for token in [None, Some("x".repeat(43)), Some(String::new())] {
            let mut form = fields.clone();
            if let Some(token) = &token {
                form.push(("csrf_token", token));
            }
            let response = browser.post_form(&admin.app.url(path), &form).await;
            assert_eq!(response.status(), 400, "{path} with {token:?}");
            assert!(response.text().await.unwrap().contains("CSRF"), "{path}");
        }
    }
    let client = admin.app.state.store.client(&id).await.unwrap().unwrap();
    assert_eq!(client.name, "ui-target");
    assert!(client.enabled);
    assert_eq!(token_request_status(&admin.app, &id, &secret).await.0, 400, "secret unchanged");
    assert_eq!(admin.client_count().await, 1);
    assert_eq!(admin.get("/keys").await.1["total"], 2, "one RS256 and one ES256 key");
    assert_eq!(admin.get(&format!("/users/{ADMIN_DID}")).await.1["sessions"].as_array().unwrap().len(), 1);

    // oversized form
    let big = "a".repeat(40 * 1024);
    let response = browser.post_form(&admin.app.url("/admin/clients"), &[("csrf_token", &csrf), ("name", &big)]).await;
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().contains("larger than"));
}

#[tokio::test]
async fn ui_forms_create_show_secret_once_edit_confirm_and_act() {
    let admin = spawn_admin_app().await;
    let browser = admin.app.browser_with_session(ADMIN_DID, "admin.test").await;
    let base = &admin.app.base;
    let html = browser.get(&format!("{base}/admin/clients/new")).await.text().await.unwrap();
    let csrf = csrf_of(&html);

    // invalid input comes back with per-field messages and the values typed
    let response = browser
        .post_form(
            &format!("{base}/admin/clients"),
            &[
                ("csrf_token", &csrf),
                ("name", "Shop"),
                ("redirect_uris", "http://shop.example/cb\nhttps://shop.example/#x"),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(html.contains("must use https"), "{html}");
    assert!(html.contains("http:&#x2F;&#x2F;shop.example&#x2F;cb"), "the typed values are kept (HTML-escaped)");
    assert_eq!(admin.client_count().await, 0);

    // created: the secret is shown once
    let response = browser
        .post_form(
            &format!("{base}/admin/clients"),
            &[
                ("csrf_token", &csrf),
                ("name", "Shop"),
                ("redirect_uris", "https://shop.example/cb\r\n\r\n"),
                ("scope", "openid"),
                ("scope", "email"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let secret = regex::Regex::new(r#"id="client_secret" value="([^"]+)""#).unwrap().captures(&html).unwrap()[1].to_owned();
    let id = regex::Regex::new(r#"id="client_id" value="([^"]+)""#).unwrap().captures(&html).unwrap()[1].to_owned();
    assert!(html.contains("shown only this once"));
    let client = admin.app.state.store.client(&id).await.unwrap().unwrap();
    assert_eq!(client.allowed_scopes, ["openid", "email"]);
    assert_eq!(client.redirect_uris, ["https://shop.example/cb"]);
    let detail = browser.get(&format!("{base}/admin/clients/{id}")).await.text().await.unwrap();
    assert!(!detail.contains(&secret), "the secret is never shown again");
    let list = browser.get(&format!("{base}/admin")).await.text().await.unwrap();
    assert!(list.contains("Shop") && !list.contains(&secret));

    // duplicate name in the form → 409 with the field message
    let response = browser
        .post_form(
            &format!("{base}/admin/clients"),
            &[("csrf_token", &csrf), ("name", "Shop"), ("redirect_uris", "https://x.example/cb"), ("scope", "openid")],
        )
        .await;
    assert_eq!(response.status(), 409);
    assert!(response.text().await.unwrap().contains("already used"));

    // edit
    let response = browser
        .post_form(
            &format!("{base}/admin/clients/{id}"),
            &[
                ("csrf_token", &csrf),
                ("name", "Shop"),
                ("redirect_uris", "https://shop.example/cb\nhttps://shop.example/cb2"),
                ("scope", "openid"),
                ("first_party", "on"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), format!("/admin/clients/{id}?notice=saved"));
    let client = admin.app.state.store.client(&id).await.unwrap().unwrap();
    assert_eq!(client.redirect_uris, ["https://shop.example/cb", "https://shop.example/cb2"]);
    assert!(client.first_party);
    let (_, audit) = admin.get("/audit?action=client.update").await;
    assert_eq!(audit["items"][0]["details"], "fields=redirect_uris,first_party,scopes", "only what changed is recorded");
    assert_eq!(audit["items"][0]["actor"], ADMIN_DID);

    // destructive actions show a confirmation page first (GET changes nothing)
    for action in ["rotate-secret", "disable", "delete"] {
        let page = browser.get(&format!("{base}/admin/clients/{id}/{action}")).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap().replace("&#x2F;", "/");
        assert!(html.contains(&format!(r#"action="/admin/clients/{id}/{action}""#)), "{action}");
        assert!(html.contains("Cancel"));
    }
    assert_eq!(token_request_status(&admin.app, &id, &secret).await.0, 400);

    let html = browser.post_form(&format!("{base}/admin/clients/{id}/rotate-secret"), &[("csrf_token", &csrf)]).await.text().await.unwrap();
    let new_secret = regex::Regex::new(r#"id="client_secret" value="([^"]+)""#).unwrap().captures(&html).unwrap()[1].to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(token_request_status(&admin.app, &id, &secret).await.0, 401);

    let response = browser.post_form(&format!("{base}/admin/clients/{id}/disable"), &[("csrf_token", &csrf)]).await;
    assert_eq!(location(&response), format!("/admin/clients/{id}?notice=disabled"));
    assert_eq!(token_request_status(&admin.app, &id, &new_secret).await, (401, "invalid_client".into()));
    browser.post_form(&format!("{base}/admin/clients/{id}/enable"), &[("csrf_token", &csrf)]).await;
    assert_eq!(token_request_status(&admin.app, &id, &new_secret).await.0, 400);

    // users, keys and audit pages
    let users = browser.get(&format!("{base}/admin/users?q=admin")).await.text().await.unwrap();
    assert!(users.contains(ADMIN_DID));
    let user = browser.get(&format!("{base}/admin/users/{ADMIN_DID}")).await.text().await.unwrap();
    assert!(user.contains("End all sessions"));
    let response = browser.post_form(&format!("{base}/admin/keys/rotate"), &[("csrf_token", &csrf)]).await;
    assert_eq!(location(&response), "/admin/keys?notice=key_rotated");
    assert_eq!(admin.get("/keys").await.1["total"], 4, "a new RS256 and ES256 pair beside the old");
    let keys_page = browser.get(&format!("{base}/admin/keys")).await.text().await.unwrap();
    assert!(keys_page.contains(r#"badge">published<"#) && keys_page.contains(r#"badge-ok">active<"#), "{keys_page}");
    let audit = browser.get(&format!("{base}/admin/audit")).await.text().await.unwrap();
    for action in ["client.create", "client.update", "client.rotate_secret", "client.disable", "client.enable", "keys.rotate"] {
        assert!(audit.contains(action), "{action}");
    }
    assert!(audit.contains(ADMIN_DID));

    let response = browser.post_form(&format!("{base}/admin/clients/{id}/delete"), &[("csrf_token", &csrf)]).await;
    assert_eq!(location(&response), "/admin?notice=deleted");
    assert!(admin.app.state.store.client(&id).await.unwrap().is_none());

    // ending the admin's own sessions signs this browser out of /admin
    let response = browser.post_form(&format!("{base}/admin/users/{ADMIN_DID}/end-sessions"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    let page = browser.get(&format!("{base}/admin")).await.text().await.unwrap();
    assert!(page.contains(r#"href="/login""#));
}
