//! `kill -9` of a single node on SQLite (WAL, synchronous=NORMAL) during a refresh burst: a grant
//! is answered only after its COMMIT, and a committed transaction is in the WAL in the OS page
//! cache, so a process crash loses no token a client was given. The one request in flight per
//! family may have committed without its answer arriving; with the retry window the client
//! presents its token again and is answered as a retry.
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::Value;

use crate::{
    family_and_generation,
    flows::{self, App, Browser, Tokens},
    harness::{eventually, Node},
    master_key, mock_pds, step,
};

const FAMILIES: usize = 16;
/// Refreshes answered before the kill (a few hundred, so it lands mid-burst).
const KILL_AFTER_REFRESHES: usize = 320;
/// A family's loop ends here even if the kill never came (the test then fails on its bound).
const MAX_REFRESHES_PER_FAMILY: usize = 400;
/// ATSSO_REFRESH_RETRY_WINDOW_SECS (its maximum): a lost answer may be retried this long.
const RETRY_WINDOW_SECS: u64 = 60;

/// What the app holds of one family when the node died.
struct Held {
    tokens: Tokens,
    /// Access tokens from 200 answers before the kill: the code exchange's and the last refresh's.
    access_tokens: Vec<String>,
}

#[derive(Default)]
struct Burst {
    /// Requests that got no answer (the node died under them, or was already dead).
    unanswered: usize,
    /// Any answer other than 200 before the kill: the burst itself went wrong.
    unexpected: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_grants_survive_kill_9_of_the_server() {
    if !crate::cluster_enabled() {
        return;
    }
    let mock = mock_pds::MockPds::spawn().await;
    mock.configure(|c| c.granted_scope = "atproto".into());
    let logs = tempfile::Builder::new().prefix("atsso-crash").tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("ATSSO_MASTER_KEY", master_key()),
        ("ATSSO_PLC_DIRECTORY_URL", format!("{}/plc", mock.base)),
        ("ATSSO_HANDLE_RESOLVER_URL", mock.base.clone()),
        ("ATSSO_ALLOW_INSECURE_LOOPBACK_UPSTREAM", "true".into()),
        ("ATSSO_REFRESH_RETRY_WINDOW_SECS", RETRY_WINDOW_SECS.to_string()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut node = Node::new("sqlite", &env, logs.path());
    node.set_env("ATSSO_PUBLIC_URL", &node.url(""));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    node.spawn();
    wait_ready(&http, &node).await;

    let app = register(&node);
    let browser = Browser::new();
    let base = node.url("");
    let (code, verifier) = flows::sign_in(&browser, &base, &app).await;
    let mut families = vec![flows::redeem(&http, &base, &app, &code, &verifier).await];
    while families.len() < FAMILIES {
        let (code, verifier) = flows::authorize(&browser, &base, &app).await;
        families.push(flows::redeem(&http, &base, &app, &code, &verifier).await);
    }

    // The burst: every family refreshes in a loop and keeps what each 200 answer carried; the
    // node is killed once a few hundred refreshes have been answered.
    let answered = Arc::new(AtomicUsize::new(0));
    let burst = Arc::new(Mutex::new(Burst::default()));
    let mut workers = Vec::new();
    for tokens in families {
        let (http, base, app, answered, burst) = (http.clone(), base.clone(), app.clone(), answered.clone(), burst.clone());
        workers.push(tokio::spawn(async move {
            let mut held = Held { access_tokens: vec![tokens.access_token.clone()], tokens };
            for _ in 0..MAX_REFRESHES_PER_FAMILY {
                match flows::refresh(&http, &base, &app, &held.tokens.refresh_token).await {
                    Ok((200, body)) => {
                        held.tokens = tokens_of(&body);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((status, body)) => {
                        burst.lock().unwrap().unexpected.push(format!("{status} {body}"));
                        break;
                    }
                    Err(_) => {
                        burst.lock().unwrap().unanswered += 1;
                        break;
                    }
                }
            }
            held.access_tokens.push(held.tokens.access_token.clone());
            held
        }));
    }
    eventually(Duration::from_secs(120), "a few hundred refreshes answered before the kill", || async {
        (answered.load(Ordering::SeqCst) >= KILL_AFTER_REFRESHES).then_some(())
    })
    .await;
    node.kill();
    let killed_at = Instant::now();
    let mut held = Vec::new();
    for worker in workers {
        held.push(worker.await.unwrap());
    }
    let burst = std::mem::take(&mut *burst.lock().unwrap());
    assert!(burst.unexpected.is_empty(), "answers other than 200 during the burst: {:?}", burst.unexpected);
    let refreshes = answered.load(Ordering::SeqCst);
    assert!(
        burst.unanswered == FAMILIES,
        "every family's loop ended at the kill ({} of {FAMILIES}): the kill came mid-burst",
        burst.unanswered
    );

    // Restart on the same data dir. The database first, before any token is presented again.
    node.spawn();
    wait_ready(&http, &node).await;
    let db_url = format!("sqlite://{}", node.data_dir().join("atsso.db").display());
    let db = Database::connect(db_url).await.unwrap();
    let mut committed_in_flight = 0;
    for family in &held {
        let (family_id, generation) = family_and_generation(&family.tokens.refresh_token);
        let (current, revoked) = family_row(&db, &family_id).await;
        assert!(!revoked, "family {family_id} is not revoked after the restart");
        assert!(
            current == generation || current == generation + 1,
            "family {family_id}: the database has generation {current}; the app holds {generation} (answered before the kill)"
        );
        if current == generation + 1 {
            committed_in_flight += 1;
        }
    }

    // Every token the app holds still refreshes: at its own generation, or as a retry of the
    // refresh whose answer the kill swallowed. The token then given works too.
    let since_kill = killed_at.elapsed();
    for family in &held {
        let (status, body) = flows::refresh(&http, &base, &app, &family.tokens.refresh_token).await.unwrap();
        assert_eq!(
            status, 200,
            "the refresh token held at the kill still refreshes after the restart ({since_kill:.1?} after the kill, retry window {RETRY_WINDOW_SECS} s): {body}"
        );
        flows::refreshed(&http, &base, &app, &tokens_of(&body).refresh_token).await;
    }
    // Access tokens carry no row: the family in the database keeps them working.
    let mut access_tokens_checked = 0;
    for token in held.iter().flat_map(|family| &family.access_tokens) {
        assert_eq!(
            flows::userinfo_status(&http, &base, token).await,
            200,
            "an access token answered before the kill, at userinfo after it"
        );
        access_tokens_checked += 1;
    }
    for family in &held {
        let (family_id, _) = family_and_generation(&family.tokens.refresh_token);
        assert!(!family_row(&db, &family_id).await.1, "family {family_id} is not revoked after the retries");
    }
    step(&format!(
        "crash: SQLite, kill -9 during {refreshes} refreshes over {FAMILIES} families: every answered grant worked after the restart; \
         {committed_in_flight} of the {} in-flight refreshes had committed (answered as retries); {access_tokens_checked} access tokens \
         from before the kill accepted by userinfo",
        burst.unanswered
    ));
}

fn tokens_of(body: &Value) -> Tokens {
    let field = |name: &str| body[name].as_str().unwrap_or_else(|| panic!("no {name} in {body}")).to_owned();
    Tokens { access_token: field("access_token"), refresh_token: field("refresh_token"), id_token: field("id_token") }
}

fn register(node: &Node) -> App {
    let redirect_uri = "http://127.0.0.1:9/crash-app/callback".to_owned();
    let post_logout = "http://127.0.0.1:9/crash-app/logged-out".to_owned();
    let args = [
        "clients",
        "add",
        "--name",
        "crash-app",
        "--redirect-uri",
        &redirect_uri,
        "--post-logout-redirect-uri",
        &post_logout,
        "--first-party",
        "--json",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "offline_access",
    ];
    let printed: Value = serde_json::from_str(&node.cli(&args)).unwrap();
    App {
        client_id: printed["client_id"].as_str().unwrap().to_owned(),
        secret: printed["client_secret"].as_str().unwrap().to_owned(),
        redirect_uri,
        post_logout_redirect_uri: post_logout,
    }
}

async fn wait_ready(http: &reqwest::Client, node: &Node) {
    let started = Instant::now();
    while !matches!(http.get(node.url("/readyz")).send().await, Ok(r) if r.status() == 200) {
        assert!(started.elapsed() < Duration::from_secs(60), "the node is not ready after 60 s; its log:\n{}", node.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The family's generation and whether it is revoked, read from the SQLite file.
async fn family_row(db: &DatabaseConnection, family_id: &str) -> (i64, bool) {
    let statement = Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Sqlite,
        "SELECT generation, revoked_at IS NOT NULL FROM grant_families WHERE family_id = ?",
        [family_id.into()],
    );
    let row = db.query_one(statement).await.unwrap().unwrap_or_else(|| panic!("family {family_id} is in the database"));
    (row.try_get_by_index::<i64>(0).unwrap(), row.try_get_by_index::<i64>(1).unwrap() != 0)
}
