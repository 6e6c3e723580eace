//! Issue 13, caches across nodes: two nodes on one Postgres database, each with its own read
//! cache. A revocation, logout or client change made on one node is honoured by the other as
//! soon as its `NOTIFY` arrives; a lost listen connection empties and bypasses the cache until
//! the node listens again. (Postgres only: with SQLite there is one server process.)
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    helpers::{eventually, location, query_param, spawn_app, spawn_second_node, Browser, RegisteredClient, TestApp},
    rp::Rp,
};

const ALICE: &str = "did:plc:alice0000000000000000000";

/// How long another node may take to honour a change (the NOTIFY arrives in milliseconds).
const BOUND: Duration = Duration::from_secs(2);

/// Two nodes on one database, both caching; None (the test is skipped) on SQLite.
async fn two_nodes() -> Option<(TestApp, TestApp)> {
    let a = spawn_app().await;
    if !a.on_postgres() {
        eprintln!("skipped: needs Postgres (ATSSO_TEST_DATABASE_URL)");
        return None;
    }
    let b = spawn_second_node(&a).await;
    a.wait_until_caching().await;
    b.wait_until_caching().await;
    Some((a, b))
}

async fn userinfo_status(node: &TestApp, access_token: &str) -> u16 {
    reqwest::Client::new().get(node.url("/oauth2/userinfo")).bearer_auth(access_token).send().await.unwrap().status().as_u16()
}

/// Tokens for `registered` from a full authorization on `node`.
async fn tokens_for(node: &TestApp, registered: &RegisteredClient) -> Value {
    let rp = Rp::discover(node, registered).await;
    let browser = node.browser_with_session(ALICE, "alice.test").await;
    let pending = rp.start(&["profile"]);
    let code = rp.authorize(node, &browser, &pending).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", registered.redirect_uri.as_str()),
        ("code_verifier", pending.verifier.secret().as_str()),
    ];
    let response = reqwest::Client::new()
        .post(node.url("/oauth2/token"))
        .basic_auth(&registered.client.client_id, registered.secret.as_ref())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls `check` on the other node (every few milliseconds, to measure the delay) until it
/// holds, failing after `BOUND`; returns how long that took.
async fn honoured_within<F>(what: &str, mut check: impl FnMut() -> F) -> Duration
where
    F: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            let delay = started.elapsed();
            eprintln!("{what}: honoured after {delay:?}");
            return delay;
        }
        assert!(started.elapsed() < BOUND, "not honoured within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_token_revoked_on_one_node_is_refused_by_the_other() {
    let Some((a, b)) = two_nodes().await else { return };
    let registered = a.register("app", false, true).await;
    let tokens = tokens_for(&a, &registered).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&b, access).await, 200, "valid on B (and now cached there)");
    assert_eq!(userinfo_status(&b, access).await, 200);

    let revoked = reqwest::Client::new()
        .post(a.url("/oauth2/revoke"))
        .basic_auth(&registered.client.client_id, registered.secret.as_ref())
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(userinfo_status(&a, access).await, 401, "refused at once where it was revoked");
    honoured_within("token revoked on A refused by B", || async { userinfo_status(&b, access).await == 401 }).await;
}

#[tokio::test]
async fn a_session_ended_on_one_node_is_refused_by_the_other() {
    let Some((a, b)) = two_nodes().await else { return };
    let registered = a.register("app", false, true).await;
    let profile = atsso::store::users::UserProfile { did: ALICE.into(), handle: Some("alice.test".into()), ..Default::default() };
    let established = atsso::sso::establish_session(&a.state, &profile).await.unwrap();
    let browser = Browser::new();
    // Cookies are per host, not per port: the browser presents the session to both nodes.
    browser.jar.add_cookie_str(
        &format!("{}={}; Path=/", atsso::sso::SESSION_COOKIE, established.cookie_value),
        &reqwest::Url::parse(&b.base).unwrap(),
    );
    let rp = Rp::discover(&a, &registered).await;
    let silent_on_b = || async {
        let url = format!("{}&prompt=none", rp.start(&[]).url).replace(&a.base, &b.base);
        let next = location(&browser.get(&url).await);
        assert!(next.starts_with(&registered.redirect_uri), "{next}");
        (query_param(&next, "code"), query_param(&next, "error"))
    };
    assert!(silent_on_b().await.0.is_some(), "the session is live on B (and now cached there)");
    assert!(silent_on_b().await.0.is_some());

    assert!(a.state.store.end_session(&established.sid, atsso::clock::now()).await.unwrap());
    honoured_within("session ended on A refused by B", || async { silent_on_b().await.1.as_deref() == Some("login_required") }).await;
}

#[tokio::test]
async fn a_client_disabled_on_one_node_is_refused_by_the_other() {
    let Some((a, b)) = two_nodes().await else { return };
    let registered = a.register("app", false, true).await;
    let rp = Rp::discover(&a, &registered).await;
    let anonymous = Browser::new();
    let authorize_on_b = || async { anonymous.get(&rp.start(&[]).url.replace(&a.base, &b.base)).await.status().as_u16() };
    assert_eq!(authorize_on_b().await, 302, "on to the login page (the client is now cached on B)");

    let actor = atsso::admin::Actor::new("test", None);
    atsso::admin::set_client_enabled(&a.state, &actor, &registered.client.client_id, false).await.unwrap();
    let id = &registered.client.client_id;
    // The bare propagation (NOTIFY, then B's cache), then what a browser sees.
    honoured_within("client disabled on A: B's store sees it", || async {
        b.state.store.client(id).await.unwrap().is_some_and(|client| !client.enabled)
    })
    .await;
    honoured_within("client disabled on A refused by B", || async { authorize_on_b().await == 400 }).await;
}

/// The listen connection's backends on `node`'s database.
async fn listener_pids(db: &sea_orm::DatabaseConnection) -> Vec<i32> {
    use sea_orm::{ConnectionTrait, Statement};
    let sql = format!(
        "SELECT pid FROM pg_stat_activity WHERE application_name = '{}' AND datname = current_database()",
        atsso::store::invalidation::APPLICATION_NAME
    );
    let rows = db.query_all(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get::<i32>("", "pid").unwrap()).collect()
}

#[tokio::test]
async fn a_lost_listen_connection_empties_the_cache_and_the_node_listens_again() {
    use sea_orm::ConnectionTrait;
    let node = spawn_app().await;
    if !node.on_postgres() {
        eprintln!("skipped: needs Postgres (ATSSO_TEST_DATABASE_URL)");
        return;
    }
    node.wait_until_caching().await;
    let registered = node.register("app", false, true).await;
    let tokens = tokens_for(&node, &registered).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&node, access).await, 200, "valid (and now cached)");

    // A change nobody announces (straight into the database) is not seen while listening...
    let db = sea_orm::Database::connect(&node.state.config.database_url).await.unwrap();
    db.execute_unprepared("UPDATE grant_families SET revoked_at = 1").await.unwrap();
    assert_eq!(userinfo_status(&node, access).await, 200, "served from the cache: nothing was announced");

    // ...but once the listen connection is lost, the node empties its cache and reads again.
    let before = listener_pids(&db).await;
    assert_eq!(before.len(), 1, "one listen connection per node");
    db.execute_unprepared(&format!("SELECT pg_terminate_backend({})", before[0])).await.unwrap();
    honoured_within("a change made while unannounced is seen after the listen connection is lost", || async {
        userinfo_status(&node, access).await == 401
    })
    .await;

    // It listens again (a new backend), and announcements work once more.
    eventually(Duration::from_secs(5), "the node listens again", || async {
        let now = listener_pids(&db).await;
        (now.len() == 1 && now != before && node.state.store.cache_trusted()).then_some(())
    })
    .await;
    let tokens = tokens_for(&node, &registered).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&node, access).await, 200, "cached again");
    let outside = atsso::store::Store::connect(&node.state.config.database_url, 1).await.unwrap();
    assert!(outside.set_client_enabled(&registered.client.client_id, false, atsso::clock::now()).await.unwrap());
    honoured_within("a change announced by another process after the reconnect", || async { userinfo_status(&node, access).await == 401 })
        .await;
}

#[tokio::test]
async fn a_key_change_announced_on_one_node_reaches_the_other() {
    let Some((a, b)) = two_nodes().await else { return };
    let mut on_b = b.state.store.key_changes();
    let on_a = a.state.store.key_changes();
    a.state.store.announce_keys_changed().await.unwrap();
    assert!(on_a.has_changed().unwrap(), "the announcing node hears it at once");
    let started = Instant::now();
    tokio::time::timeout(BOUND, on_b.changed()).await.expect("B hears of new keys within the bound").unwrap();
    eprintln!("keys changed on A: heard by B after {:?}", started.elapsed());
}
