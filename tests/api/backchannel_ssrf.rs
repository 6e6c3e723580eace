//! Logout URIs chosen by a client are requests we make for it (issue 11, item 5): dynamic
//! registration refuses non-public targets, and back-channel deliveries go through the same
//! SSRF guard as every upstream fetch. Loopback stays allowed for clients an admin registered.
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{Map, Value};

use super::{
    admin::spawn_admin_app_with,
    helpers::{eventually, spawn_app, TestApp},
};
use atsso::{
    admin::auth::{create_token, TokenKind},
    oidc::clients::{register, register_dynamic, NewClient},
    store::outbox::OutboxRow,
};

/// Registration bodies that must be refused, per logout-URI field.
const NOT_PUBLIC: &[&str] = &[
    "http://127.0.0.1:9/logout",
    "https://127.0.0.1/logout",
    "https://127.1/logout",
    "https://2130706433/logout",
    "https://localhost/logout",
    "https://api.localhost./logout",
    "https://[::1]/logout",
    "https://[::ffff:127.0.0.1]/logout",
    "https://10.0.0.1/logout",
    "https://192.168.1.1/logout",
    "https://169.254.169.254/latest/meta-data",
    "https://[fd00::1]/logout",
    "http://rp.example/logout",
    "https://intranet/logout",
    "https://user:pw@rp.example/logout",
    "not a url",
];

#[tokio::test]
async fn dynamic_registration_refuses_non_public_logout_uris() {
    // Many registrations from one address: the registration rate limit (tested in security.rs)
    // is off here.
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
    let body = |field: &str, uri: &str| {
        let mut body = Map::new();
        body.insert("redirect_uris".into(), Value::from(vec!["https://rp.example/cb"]));
        body.insert(field.into(), uri.into());
        Value::Object(body)
    };
    for field in ["backchannel_logout_uri", "frontchannel_logout_uri"] {
        for uri in NOT_PUBLIC {
            let (status, answer) = register(body(field, uri)).await;
            assert_eq!(status, 400, "{field} = {uri}: {answer}");
            assert_eq!(answer["error"], "invalid_client_metadata", "{field} = {uri}");
            assert!(answer["error_description"].as_str().unwrap().contains(field), "{answer}");
        }
    }
    assert_eq!(on.app.state.store.list_clients().await.unwrap().len(), 0, "nothing was stored");

    // Public https targets are fine.
    let mut ok = body("backchannel_logout_uri", "https://rp.example/backchannel");
    ok["frontchannel_logout_uri"] = "https://rp.example/frontchannel".into();
    let (status, answer) = register(ok).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["backchannel_logout_uri"], "https://rp.example/backchannel");
}

/// A back-channel receiver on loopback that counts the logout tokens it is sent.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let counted = counted.clone();
        App::new().route(
            "/backchannel",
            web::post().to(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { HttpResponse::Ok().finish() }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/backchannel"), hits)
}

fn new_client(name: &str, backchannel: &str) -> NewClient {
    NewClient {
        name: name.into(),
        redirect_uris: vec![format!("https://{name}.example/cb")],
        backchannel_logout_uri: Some(backchannel.into()),
        ..Default::default()
    }
}

/// Queues the back-channel logout for one client and waits for the worker's outcome.
async fn deliver(app: &TestApp, client: &atsso::store::clients::Client, sid: &str) -> atsso::store::outbox::OutboxRow {
    let uri = client.backchannel_logout_uri.as_deref().unwrap();
    let row = OutboxRow::backchannel(&client.client_id, uri, sid, "did:plc:alice0000000000000000000", atsso::clock::now());
    app.state.store.insert_outbox_rows(std::slice::from_ref(&row)).await.unwrap();
    let (store, id) = (&app.state.store, row.id.as_str());
    eventually(Duration::from_secs(10), "the delivery's outcome recorded", || async move {
        store.outbox_for_sid(sid).await.unwrap().into_iter().find(|r| r.id == id && r.attempts > 0)
    })
    .await
}

#[tokio::test]
async fn deliveries_to_loopback_only_for_clients_an_admin_registered() {
    let app = spawn_app().await;
    let (uri, hits) = receiver().await;

    // An admin registered this client (CLI, API, UI): loopback is local development, delivered.
    let (by_admin, _) = register(&app.state.store, new_client("local-dev", &uri)).await.unwrap();
    let delivery = deliver(&app, &by_admin, "sid-admin").await;
    assert_eq!(delivery.status, "delivered", "{delivery:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The same URI on a dynamically registered client (say its host name was public when it
    // registered and points at loopback now): the guard refuses it, nothing reaches the receiver.
    let (dynamic, _) = register_dynamic(&app.state.store, new_client("dyn", &uri)).await.unwrap();
    assert!(dynamic.dynamically_registered);
    let delivery = deliver(&app, &dynamic, "sid-dynamic").await;
    assert_eq!(delivery.status, "failed", "{delivery:?}");
    assert!(delivery.last_error.as_deref().unwrap_or_default().starts_with("refused"), "{delivery:?}");
    assert_eq!(delivery.attempts, 1, "a refused target is not retried");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no request reached loopback");
}

#[tokio::test]
async fn clients_registered_dynamically_before_the_flag_existed_are_recognised() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Database, Statement};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display())).await.unwrap();
    Migrator::up(&db, Some(4)).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO clients (client_id, name, redirect_uris, post_logout_redirect_uris, first_party, allowed_scopes, enabled, \
         created_at, updated_at) VALUES ('dyn', 'd', '[]', '[]', false, 'openid', true, 0, 0), \
         ('adm', 'a', '[]', '[]', false, 'openid', true, 0, 0)",
    )
    .await
    .unwrap();
    db.execute_unprepared(
        "INSERT INTO audit_log (at, actor, action, target) VALUES (0, 'token:dcr', 'client.register_dynamic', 'dyn'), \
         (0, 'cli', 'client.create', 'adm'), (0, 'token:dcr', 'client.register_dynamic', NULL)",
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    let rows = db
        .query_all(Statement::from_string(db.get_database_backend(), "SELECT client_id FROM clients WHERE dynamically_registered"))
        .await
        .unwrap();
    let dynamic: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "client_id").unwrap()).collect();
    assert_eq!(dynamic, ["dyn"]);
}
