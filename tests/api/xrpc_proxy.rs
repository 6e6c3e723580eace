//! The permissioned XRPC proxy (`/xrpc/{nsid}`): tenant apps act at the user's PDS through
//! atsso, within the atproto permissions their access token carries.
use openidconnect::OAuth2TokenResponse;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

use super::{
    atproto_login::{app_with_mock_and, approve_at_pds, submit_login},
    helpers::{eventually, location, query_param, Browser, RegisteredClient, TestApp},
    mock_pds::{MockPds, ALICE_DID, ALICE_HANDLE},
    rp::Rp,
};

/// A user signed in through the mock PDS (so an upstream session exists) at a tenant app that
/// asked for `scopes` (e.g. `atproto:repo:com.example.note`) in its authorization request, the
/// admin having allowed them; the mock PDS grants what it is asked for.
struct Tenant {
    access_token: String,
    client_id: String,
    sid: String,
}

async fn tenant_with(app: &TestApp, scopes: &[&str]) -> Tenant {
    let redirect_uri = "http://127.0.0.1:9/proxy-app/callback".to_owned();
    let (client, secret) = atsso::oidc::clients::register(
        &app.state.store,
        atsso::oidc::clients::NewClient {
            name: "proxy-app".into(),
            redirect_uris: vec![redirect_uri.clone()],
            first_party: true,
            atproto_scopes: scopes.iter().map(|s| s.trim_start_matches("atproto:").to_owned()).collect(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let rp = Rp::discover(app, &RegisteredClient { client, secret, redirect_uri }).await;
    let browser = Browser::new();
    let pending = rp.start(scopes);
    let login_path = location(&browser.get(&pending.url).await);
    let response = submit_login(app, &browser, &login_path, ALICE_HANDLE).await;
    let back = location(&browser.get(&approve_at_pds(&location(&response)).await).await);
    let tokens = rp.exchange(&query_param(&back, "code").expect("a code"), pending.verifier).await.unwrap();
    let sid = rp.verify_id_token(&tokens, None)["sid"].as_str().unwrap().to_owned();
    let access_token = tokens.access_token().secret().clone();
    let record = atsso::oidc::access::validate_access_token(&app.state, &access_token).await.unwrap().unwrap();
    for scope in scopes {
        let canonical = atsso::atproto::permission::from_tenant_scope(scope).unwrap().unwrap().to_tenant_scope();
        assert!(record.scope.split(' ').any(|s| s == canonical), "granted {scope}: {}", record.scope);
    }
    Tenant { access_token, client_id: record.client_id, sid }
}

async fn app_and_mock() -> (TestApp, MockPds) {
    let (app, mock) = app_with_mock_and(|_, _| {}).await;
    mock.configure(|c| c.grant_as_requested = true);
    (app, mock)
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).unwrap_or_default()
    }
}

async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
    let client = reqwest::Client::new();
    let mut request = match method {
        "GET" => client.get(app.url(path)),
        _ => client.post(app.url(path)),
    };
    request = request.bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request.send().await.unwrap()).await
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

async fn post(app: &TestApp, token: &str, nsid: &str, body: Value) -> Answer {
    call(app, token, "POST", &format!("/xrpc/{nsid}"), Some(body), &[]).await
}

fn assert_insufficient(answer: &Answer, permission: &str) {
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "insufficient_scope", "{:?}", answer.body);
    assert!(answer.body["message"].as_str().unwrap().contains(permission), "{:?}", answer.body);
    let challenge = answer.header("www-authenticate");
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains(&format!("scope=\"{permission}\"")), "{challenge}");
}

#[tokio::test]
async fn create_record_within_permission_reaches_the_pds_as_the_user() {
    let (app, mock) = app_and_mock().await;
    let tenant = tenant_with(&app, &["atproto:repo:com.example.note?action=create"]).await;
    // The app names another repo: atsso writes to the signed-in user's own.
    let created = post(
        &app,
        &tenant.access_token,
        "com.atproto.repo.createRecord",
        json!({"repo": "did:plc:bobbbbbbbbbbbbbbbbbbbbbb", "collection": "com.example.note", "rkey": "n1", "record": {"text": "hello"}}),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(created.body["uri"], format!("at://{ALICE_DID}/com.example.note/n1"));
    let received = mock.xrpc_received("com.atproto.repo.createRecord");
    assert_eq!(received.len(), 1, "one call (after the nonce challenge) reached the PDS");
    assert_eq!(received[0].json()["repo"], ALICE_DID, "repo forced to the user's DID");
    assert_eq!(received[0].json()["record"], json!({"text": "hello"}));

    // Read back: getRecord needs no permission (the PDS serves it to any atproto token).
    let query = format!("/xrpc/com.atproto.repo.getRecord?repo={ALICE_DID}&collection=com.example.note&rkey=n1");
    let read = call(&app, &tenant.access_token, "GET", &query, None, &[]).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["value"], json!({"text": "hello"}));
}

#[tokio::test]
async fn writes_outside_the_permission_are_refused_before_the_pds() {
    let (app, mock) = app_and_mock().await;
    let tenant = tenant_with(&app, &["atproto:repo:com.example.note?action=create"]).await;
    let token = &tenant.access_token;
    let other = post(&app, token, "com.atproto.repo.createRecord", json!({"collection": "com.example.other", "record": {}})).await;
    assert_insufficient(&other, "atproto:repo:com.example.other?action=create");
    let put = post(&app, token, "com.atproto.repo.putRecord", json!({"collection": "com.example.note", "rkey": "a", "record": {}})).await;
    assert_insufficient(&put, "atproto:repo:com.example.note?action=update");
    let delete = post(&app, token, "com.atproto.repo.deleteRecord", json!({"collection": "com.example.note", "rkey": "a"})).await;
    assert_insufficient(&delete, "atproto:repo:com.example.note?action=delete");
    assert!(mock.xrpc_received_all().is_empty(), "nothing reached the PDS: {:?}", mock.xrpc_received_all());
}

#[tokio::test]
async fn apply_writes_needs_a_permission_for_every_write() {
    let (app, mock) = app_and_mock().await;
    let tenant = tenant_with(&app, &["atproto:repo:com.example.note", "atproto:repo:com.example.tag?action=create"]).await;
    let write = |kind: &str, collection: &str, rkey: &str| json!({"$type": format!("com.atproto.repo.applyWrites#{kind}"), "collection": collection, "rkey": rkey, "value": {"n": rkey}});
    let allowed = json!({"writes": [write("create", "com.example.note", "a"), write("update", "com.example.note", "a"), write("create", "com.example.tag", "t")]});
    let applied = post(&app, &tenant.access_token, "com.atproto.repo.applyWrites", allowed).await;
    assert_eq!(applied.status, 200, "{:?}", applied.body);
    assert_eq!(mock.xrpc_received("com.atproto.repo.applyWrites")[0].json()["repo"], ALICE_DID);

    let mixed = json!({"writes": [write("create", "com.example.note", "b"), write("delete", "com.example.tag", "t")]});
    let refused = post(&app, &tenant.access_token, "com.atproto.repo.applyWrites", mixed).await;
    assert_insufficient(&refused, "atproto:repo:com.example.tag?action=delete");
    assert_eq!(mock.xrpc_received("com.atproto.repo.applyWrites").len(), 1, "the refused batch never reached the PDS");
}

#[tokio::test]
async fn blob_uploads_are_checked_by_mime_type() {
    let (app, mock) = app_and_mock().await;
    let tenant = tenant_with(&app, &["atproto:blob:image/*"]).await;
    let upload = |mime: &'static str| {
        reqwest::Client::new()
            .post(app.url("/xrpc/com.atproto.repo.uploadBlob"))
            .bearer_auth(&tenant.access_token)
            .header("content-type", mime)
            .body(vec![7u8; 100])
            .send()
    };
    let image = answer(upload("image/png").await.unwrap()).await;
    assert_eq!(image.status, 200, "{:?}", image.body);
    assert_eq!(image.body["blob"]["size"], 100);
    let received = mock.xrpc_received("com.atproto.repo.uploadBlob");
    assert_eq!((received[0].content_type.as_deref(), received[0].body.len()), (Some("image/png"), 100));
    let video = answer(upload("video/mp4").await.unwrap()).await;
    assert_insufficient(&video, "atproto:blob:video/mp4");
    assert_eq!(mock.xrpc_received("com.atproto.repo.uploadBlob").len(), 1);
}

#[tokio::test]
async fn rpc_calls_need_the_method_at_the_named_service() {
    let (app, mock) = app_and_mock().await;
    let service = "did:web:feeds.example.com#feed";
    let tenant = tenant_with(&app, &[&format!("atproto:rpc:com.example.query?aud={service}")]).await;
    let token = &tenant.access_token;
    let with_aud = call(&app, token, "GET", "/xrpc/com.example.query?limit=5", None, &[("atproto-proxy", service)]).await;
    assert_eq!(with_aud.status, 200, "{:?}", with_aud.body);
    assert_eq!(with_aud.body["query"], "limit=5");
    let received = mock.xrpc_received("com.example.query");
    assert_eq!(received[0].atproto_proxy.as_deref(), Some(service));

    let without = call(&app, token, "GET", "/xrpc/com.example.query", None, &[]).await;
    assert_insufficient(&without, "atproto:rpc:com.example.query?aud=*");
    let elsewhere = call(&app, token, "GET", "/xrpc/com.example.query", None, &[("atproto-proxy", "did:web:other.example.com#x")]).await;
    assert_insufficient(&elsewhere, "atproto:rpc:com.example.query?aud=did:web:other.example.com%23x");
    let procedure = post(&app, token, "com.example.echo", json!({"a": 1})).await;
    assert_insufficient(&procedure, "atproto:rpc:com.example.echo?aud=*");
    assert_eq!(mock.xrpc_received_all().len(), 1);
}

#[tokio::test]
async fn bad_tokens_and_bad_requests_are_refused() {
    let (app, mock) = app_and_mock().await;
    let tenant = tenant_with(&app, &["atproto:repo:*"]).await;
    for token in ["", "not-a-token", &format!("{}x", tenant.access_token)] {
        let refused = post(&app, token, "com.atproto.repo.createRecord", json!({"collection": "com.example.note", "record": {}})).await;
        assert_eq!(refused.status, 401, "{token}: {:?}", refused.body);
        assert!(refused.header("www-authenticate").contains("error=\"invalid_token\""), "{:?}", refused.headers);
        assert_eq!(refused.body["error"], "invalid_token");
    }
    let bad_nsid = call(&app, &tenant.access_token, "GET", "/xrpc/not-an-nsid", None, &[]).await;
    assert_eq!((bad_nsid.status, bad_nsid.body["error"].as_str()), (400, Some("InvalidRequest")), "{:?}", bad_nsid.body);
    let bad_body = post(&app, &tenant.access_token, "com.atproto.repo.createRecord", json!(["x"])).await;
    assert_eq!(bad_body.status, 400, "{:?}", bad_body.body);
    assert!(mock.xrpc_received_all().is_empty());

    // After single logout the token is dead.
    atsso::sso::logout::end_session(&app.state, &tenant.sid).await.unwrap();
    let after =
        post(&app, &tenant.access_token, "com.atproto.repo.createRecord", json!({"collection": "com.example.note", "record": {}})).await;
    assert_eq!(after.status, 401, "{:?}", after.body);
}

#[tokio::test]
async fn upstream_errors_pass_through() {
    let (app, _mock) = app_and_mock().await;
    let tenant = tenant_with(&app, &[]).await;
    let missing = format!("/xrpc/com.atproto.repo.getRecord?repo={ALICE_DID}&collection=com.example.note&rkey=none");
    let answer = call(&app, &tenant.access_token, "GET", &missing, None, &[]).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "RecordNotFound");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let (app, mock) = app_with_mock_and(|c, _| c.xrpc_max_body_bytes = 1024).await;
    mock.configure(|c| c.grant_as_requested = true);
    let tenant = tenant_with(&app, &["atproto:blob:*/*"]).await;
    let send = |size: usize| {
        reqwest::Client::new()
            .post(app.url("/xrpc/com.atproto.repo.uploadBlob"))
            .bearer_auth(&tenant.access_token)
            .header("content-type", "application/octet-stream")
            .body(vec![1u8; size])
            .send()
    };
    assert_eq!(answer(send(1024).await.unwrap()).await.status, 200);
    let too_large = answer(send(1025).await.unwrap()).await;
    assert_eq!((too_large.status, too_large.body["error"].as_str()), (413, Some("PayloadTooLarge")), "{:?}", too_large.body);
    assert_eq!(mock.xrpc_received("com.atproto.repo.uploadBlob").len(), 1);
}

#[tokio::test]
async fn calls_over_the_rate_limit_are_429() {
    let (app, mock) = app_with_mock_and(|c, _| c.rate_limits.xrpc = 2).await;
    mock.configure(|c| c.grant_as_requested = true);
    let tenant = tenant_with(&app, &[]).await;
    let session = || call(&app, &tenant.access_token, "GET", "/xrpc/com.atproto.server.getSession", None, &[]);
    assert_eq!(session().await.status, 200);
    assert_eq!(session().await.status, 200);
    let limited = session().await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert!(limited.header("retry-after").parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn a_refused_upstream_refresh_ends_the_session_and_answers_401() {
    let (app, mock) = app_and_mock().await;
    // The upstream token needs a refresh at the first proxied call; the PDS refuses it.
    mock.configure(|c| c.expires_in = 30);
    let tenant = tenant_with(&app, &["atproto:repo:com.example.note"]).await;
    mock.refresh_behaviour(|b| b.fail_status = Some(400));
    let answer =
        post(&app, &tenant.access_token, "com.atproto.repo.createRecord", json!({"collection": "com.example.note", "record": {}})).await;
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    assert!(answer.header("www-authenticate").contains("invalid_token"));
    assert!(app.state.store.live_session(&tenant.sid, atsso::clock::now()).await.unwrap().is_none(), "SSO session ended");
    assert!(mock.xrpc_received_all().is_empty());
}

#[tokio::test]
async fn proxied_writes_are_audited_without_content() {
    let (app, _mock) = app_and_mock().await;
    let tenant = tenant_with(&app, &["atproto:repo:com.example.note", "atproto:blob:image/*"]).await;
    let secret = "very private note text";
    let created = post(
        &app,
        &tenant.access_token,
        "com.atproto.repo.createRecord",
        json!({"collection": "com.example.note", "record": {"text": secret}}),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let filter = atsso::store::admin::AuditFilter { actor: Some(ALICE_DID.into()), action: Some("xrpc.write".into()), target: None };
    let entries = eventually(std::time::Duration::from_secs(5), "the audit row", || async {
        let (entries, _) = app.state.store.list_audit(&filter, 10, 0).await.unwrap();
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    let entry = &entries[0];
    assert_eq!(entry.target.as_deref(), Some(tenant.client_id.as_str()));
    let details = entry.details.clone().unwrap_or_default();
    assert!(details.contains("com.atproto.repo.createRecord") && details.contains("collections=com.example.note"), "{details}");
    assert!(!format!("{entry:?}").contains(secret), "no record content in the audit log: {entry:?}");
}
