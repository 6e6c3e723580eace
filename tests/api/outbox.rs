//! The outbox: back-channel logouts and upstream revocations are rows any node claims, retried
//! with backoff, surviving a node that stops, swept when done, and visible to the admin.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::Value;

use super::{
    admin::spawn_admin_app,
    helpers::{eventually, spawn_app, spawn_app_with, TestApp},
};
use atsso::{
    oidc::clients::{register, NewClient},
    store::{outbox::OutboxRow, Store},
};

const ALICE: &str = "did:plc:alice0000000000000000000";

/// A back-channel receiver that answers with `statuses` in turn (the last one from then on),
/// recording when each request came and its logout token.
struct Scripted {
    uri: String,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
}

async fn scripted(statuses: Vec<u16>) -> Scripted {
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let recorded = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (recorded, statuses) = (recorded.clone(), statuses.clone());
        App::new().route(
            "/backchannel",
            web::post().to(move |form: web::Form<std::collections::HashMap<String, String>>| {
                let (recorded, statuses) = (recorded.clone(), statuses.clone());
                async move {
                    let mut seen = recorded.lock().unwrap();
                    let status = statuses[seen.len().min(statuses.len() - 1)];
                    seen.push((Instant::now(), form.get("logout_token").cloned().unwrap_or_default()));
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Scripted { uri: format!("http://127.0.0.1:{port}/backchannel"), seen }
}

async fn client_with_backchannel(app: &TestApp, name: &str, uri: &str) -> atsso::store::clients::Client {
    let new = NewClient {
        name: name.into(),
        redirect_uris: vec![format!("https://{name}.example/cb")],
        backchannel_logout_uri: Some(uri.into()),
        ..Default::default()
    };
    register(&app.state.store, new).await.unwrap().0
}

/// A session of ALICE in which `client` holds a refresh token (so its logout concerns it).
async fn session_with_client(app: &TestApp, client_id: &str) -> String {
    let profile = atsso::store::users::UserProfile {
        did: ALICE.into(),
        handle: Some("alice.test".into()),
        display_name: None,
        avatar: None,
        email: None,
        email_verified: None,
    };
    let sid = atsso::sso::establish_session(&app.state, &profile).await.unwrap().sid;
    let now = atsso::clock::now();
    let code = atsso::store::grants::AuthorizationCode {
        code_hash: format!("code-{sid}"),
        family_id: format!("family-{sid}"),
        client_id: client_id.into(),
        did: ALICE.into(),
        sid: sid.clone(),
        redirect_uri: "https://x.example/cb".into(),
        scope: "openid".into(),
        nonce: None,
        code_challenge: None,
        auth_time: now,
        created_at: now,
        expires_at: now + 60,
        used_at: None,
    };
    app.state.store.insert_code(&code).await.unwrap();
    let family = atsso::store::tokens::GrantFamily {
        family_id: code.family_id.clone(),
        client_id: client_id.into(),
        did: ALICE.into(),
        sid: sid.clone(),
        scope: "openid".into(),
        auth_time: now,
        created_at: now,
        generation: 1,
        retry_generation: None,
        rotated_at: None,
        expires_at: now + 3600,
        revoked_at: None,
    };
    let spend = atsso::store::tokens::Spend::Code { code_hash: code.code_hash.clone() };
    assert!(app.state.store.spend_and_store(spend, now, &family).await.unwrap());
    sid
}

async fn rows_of(store: &Store, sid: &str) -> Vec<OutboxRow> {
    store.outbox_for_sid(sid).await.unwrap()
}

/// The claims of a logout token, unverified (the logout tests verify signatures).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_receiver_in_trouble_is_retried_with_backoff_and_told_once() {
    let app = spawn_app().await;
    let receiver = scripted(vec![503, 500, 200]).await;
    let client = client_with_backchannel(&app, "flaky", &receiver.uri).await;
    let sid = session_with_client(&app, &client.client_id).await;

    atsso::sso::logout::end_session(&app.state, &sid).await.unwrap();
    let store = &app.state.store;
    let row = eventually(Duration::from_secs(20), "the delivery recorded as delivered", || async {
        rows_of(store, &sid).await.into_iter().find(|r| r.status == "delivered")
    })
    .await;
    assert_eq!((row.attempts, row.last_error.as_deref(), row.claimed_by.as_deref()), (3, None, None), "{row:?}");

    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two failures, then delivered once");
    // Waits of 1 s and 2 s (plus jitter), each at least its length.
    assert!(seen[1].0 - seen[0].0 >= Duration::from_millis(1000), "{:?}", seen[1].0 - seen[0].0);
    assert!(seen[2].0 - seen[1].0 >= Duration::from_millis(2000), "{:?}", seen[2].0 - seen[1].0);
    let jtis: Vec<Value> = seen.iter().map(|(_, token)| claims(token)["jti"].clone()).collect();
    assert!(jtis[0] != jtis[1] && jtis[1] != jtis[2], "each attempt signs a fresh logout token");
    assert!(seen.iter().all(|(_, token)| claims(token)["sid"] == sid.as_str()));

    // Nothing more arrives: the row is done (a second sweep of the queue finds nothing due).
    assert!(store.claim_outbox("probe", atsso::clock::now() + 7200, 0, 10).await.unwrap().is_empty());
    assert_eq!(receiver.seen.lock().unwrap().len(), 3);
}

/// A second node on `first`'s database, with its master key (the signing keys are sealed).
async fn second_node(first: &TestApp) -> TestApp {
    let master_key = std::fs::read_to_string(first._dir.path().join("master.key")).unwrap();
    let database_url = first.state.config.database_url.clone();
    spawn_app_with(|c| {
        c.database_url = database_url;
        c.master_key = Some(atsso::config::Secret::new(master_key.trim()));
    })
    .await
}

#[tokio::test]
async fn rows_left_by_a_node_that_stopped_are_delivered_by_another() {
    let node_a = spawn_app().await;
    // Node A's worker stops before the logout (a node going away right after answering).
    node_a.shutdown.cancel();
    let receiver = scripted(vec![200]).await;
    let client = client_with_backchannel(&node_a, "told", &receiver.uri).await;
    let sid = session_with_client(&node_a, &client.client_id).await;
    atsso::sso::logout::end_session(&node_a.state, &sid).await.unwrap();
    let rows = rows_of(&node_a.state.store, &sid).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("pending", 0), "nobody on node A delivers it");

    let node_b = second_node(&node_a).await;
    let store = &node_b.state.store;
    eventually(Duration::from_secs(10), "node B delivers node A's row", || async {
        rows_of(store, &sid).await.into_iter().find(|r| r.status == "delivered")
    })
    .await;
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(claims(&seen[0].1)["sid"], sid.as_str());
}

#[tokio::test]
async fn a_stopping_node_hands_its_claims_back_at_once() {
    let node_a = spawn_app().await;
    // The receiver never answers in time: node A's attempt is in flight when it stops.
    let hanging = super::helpers::receiver(200, true).await;
    let client = client_with_backchannel(&node_a, "slow", &hanging.uri).await;
    let sid = session_with_client(&node_a, &client.client_id).await;
    let node_b = second_node(&node_a).await;
    node_b.shutdown.cancel();
    atsso::sso::logout::end_session(&node_a.state, &sid).await.unwrap();
    let store = &node_a.state.store;
    let claimed = eventually(Duration::from_secs(5), "node A claims the row", || async {
        rows_of(store, &sid).await.into_iter().find(|r| r.claimed_by.is_some())
    })
    .await;
    assert!(claimed.claimed_until.unwrap() >= atsso::clock::now() + 50, "a lease of a minute");

    // Node A stops mid-attempt: it lets the attempt end (the request times out) and records it,
    // or, if that takes longer than its 5 s, gives the claim back. Either way it holds no claim
    // afterwards, so another node takes the row when it is due, not when the lease runs out.
    node_a.shutdown.cancel();
    let released = eventually(Duration::from_secs(10), "node A holds no claim on the row", || async {
        rows_of(store, &sid).await.into_iter().find(|r| r.claimed_by.is_none())
    })
    .await;
    assert_eq!(released.status, "pending", "{released:?}");
    if released.attempts == 1 {
        assert_eq!(released.last_error.as_deref(), Some("timed out"));
    }
    let _node_c = second_node(&node_a).await;
    let tokens = &hanging.tokens;
    eventually(Duration::from_secs(10), "another node attempts the row", || async { (tokens.lock().unwrap().len() >= 2).then_some(()) })
        .await;
}

#[tokio::test]
async fn two_workers_on_postgres_claim_disjoint_rows() {
    let app = spawn_app().await;
    if app.state.store.is_sqlite() {
        return; // one writer: claims cannot overlap; this is about Postgres
    }
    app.shutdown.cancel();
    let url = app.state.config.database_url.clone();
    let (one, two) = (Store::connect(&url, 4).await.unwrap(), Store::connect(&url, 4).await.unwrap());
    let now = atsso::clock::now();
    let rows: Vec<OutboxRow> =
        (0..120).map(|i| OutboxRow::backchannel("c", "https://rp.example/bc", &format!("sid-{i}"), ALICE, now)).collect();
    app.state.store.insert_outbox_rows(&rows).await.unwrap();
    let drain = |store: Store, node: &'static str| async move {
        let mut mine = Vec::new();
        // Bounded: a claim that hands out claimed rows again would never run dry.
        for _ in 0..100 {
            let batch = store.claim_outbox(node, now, now + 60, 3).await.unwrap();
            if batch.is_empty() {
                break;
            }
            mine.extend(batch.into_iter().map(|r| r.id));
        }
        mine
    };
    let (a, b) = tokio::join!(tokio::spawn(drain(one, "one")), tokio::spawn(drain(two, "two")));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<&String> = a.iter().chain(&b).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), a.len() + b.len(), "no row claimed twice");
    assert_eq!(all.len(), 120, "every row claimed");
    assert!(!a.is_empty() && !b.is_empty(), "both claimed some ({} / {})", a.len(), b.len());
}

#[tokio::test]
async fn the_sweep_removes_what_is_done_and_keeps_what_matters() {
    let app = spawn_app().await;
    app.shutdown.cancel();
    let now = atsso::clock::now();
    let hour = 3600;
    let row = |name: &str, status: &str, age: i64| {
        let mut row = OutboxRow::backchannel("c", "https://rp.example/bc", &format!("sid-{name}"), ALICE, now - age);
        (row.status, row.updated_at, row.next_attempt_at) = (status.into(), now - age, now + 3600);
        row
    };
    let rows = [
        row("delivered-old", "delivered", 25 * hour),
        row("delivered-recent", "delivered", hour),
        row("failed-old", "failed", 8 * 24 * hour),
        row("failed-recent", "failed", 2 * 24 * hour),
        row("pending-old", "pending", 20 * hour),
    ];
    app.state.store.insert_outbox_rows(&rows).await.unwrap();
    app.state.store.sweep_expired(now).await.unwrap();
    let mut left = Vec::new();
    for row in &rows {
        if !rows_of(&app.state.store, &row.sid).await.is_empty() {
            left.push(row.sid.trim_start_matches("sid-").to_owned());
        }
    }
    assert_eq!(left, ["delivered-recent", "failed-recent", "pending-old"]);
}

#[tokio::test]
async fn the_admin_sees_each_sessions_deliveries_and_the_queue() {
    let admin = spawn_admin_app().await;
    let app = &admin.app;
    let told = scripted(vec![200]).await;
    let refusing = scripted(vec![404]).await;
    let good = client_with_backchannel(app, "good", &told.uri).await;
    let bad = client_with_backchannel(app, "bad", &refusing.uri).await;
    let sid = session_with_client(app, &good.client_id).await;
    let second = session_with_client(app, &bad.client_id).await;
    atsso::sso::logout::end_session(&app.state, &second).await.unwrap();
    atsso::sso::logout::end_session(&app.state, &sid).await.unwrap();
    let store = &app.state.store;
    eventually(Duration::from_secs(10), "both deliveries done", || async {
        let rows = [rows_of(store, &sid).await, rows_of(store, &second).await].concat();
        rows.iter().all(|r| r.status != "pending").then_some(())
    })
    .await;

    let http = reqwest::Client::new();
    let user: Value =
        http.get(app.url(&format!("/api/admin/users/{ALICE}"))).bearer_auth(&admin.token).send().await.unwrap().json().await.unwrap();
    let ended = user["ended_sessions"].as_array().unwrap_or_else(|| panic!("{user}"));
    let of = |sid: &str| ended.iter().find(|s| s["sid"] == sid).unwrap_or_else(|| panic!("{sid} in {user}"))["deliveries"].clone();
    let delivered = of(&sid);
    assert_eq!(delivered.as_array().unwrap().len(), 1, "{delivered}");
    assert_eq!(delivered[0]["kind"], "backchannel_logout");
    assert_eq!(delivered[0]["client_id"], good.client_id.as_str());
    assert_eq!(delivered[0]["client_name"], "good");
    assert_eq!(delivered[0]["target"], told.uri.as_str());
    assert_eq!((delivered[0]["status"].as_str(), delivered[0]["attempts"].as_i64()), (Some("delivered"), Some(1)));
    let failed = of(&second);
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(failed[0]["last_error"], "HTTP 404");
    assert!(failed[0].get("payload_sealed").is_none(), "nothing sealed is shown");

    let queue: Value = http.get(app.url("/api/admin/outbox")).bearer_auth(&admin.token).send().await.unwrap().json().await.unwrap();
    assert_eq!(queue["failed"]["backchannel_logout"], 1, "{queue}");
    assert_eq!(queue["pending"]["backchannel_logout"], 0, "{queue}");
    assert_eq!(queue["pending"]["upstream_revoke"], 0, "{queue}");
    let refused = http.get(app.url("/api/admin/outbox")).send().await.unwrap();
    assert_eq!(refused.status(), 401, "admins only");
}
