//! Several nodes started at the same moment on one empty Postgres database: one schema, one
//! first set of signing keys, one ATProto client key, and every node publishes the same JWKS
//! (the startup lock). Postgres only: SQLite is one node.
use std::net::TcpListener;

use atsso::{
    config::{Config, FileConfig},
    Application,
};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::fresh_database_url;

const NODES: usize = 3;
/// Base64 of 32 bytes: every node must share the master key to open the keys the others sealed.
const MASTER_KEY: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn nodes_started_together_on_an_empty_database_agree_on_schema_and_keys() {
    if !std::env::var("ATSSO_TEST_DATABASE_URL").is_ok_and(|url| url.starts_with("postgres")) {
        eprintln!("skipped: ATSSO_TEST_DATABASE_URL is not a Postgres server");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await;
    let mut starts = Vec::new();
    for node in 0..NODES {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data_dir = dir.path().join(format!("node{node}")).display().to_string();
        let database_url = database_url.clone();
        let config = Config::from_sources(FileConfig::default(), move |name| match name {
            "ATSSO_BIND" => Some(format!("127.0.0.1:{port}")),
            // Not loopback: the confidential ATProto client with its stored key.
            "ATSSO_PUBLIC_URL" => Some("https://sso.example.test".into()),
            "ATSSO_DATA_DIR" => Some(data_dir.clone()),
            "ATSSO_DATABASE_URL" => Some(database_url.clone()),
            "ATSSO_MASTER_KEY" => Some(MASTER_KEY.into()),
            _ => None,
        })
        .unwrap();
        starts.push(tokio::spawn(async move {
            let app = Application::build_with_listener(config, listener).await.unwrap();
            let port = app.port();
            tokio::spawn(app.run_until_stopped());
            port
        }));
    }
    let mut ports = Vec::new();
    for start in starts {
        ports.push(start.await.unwrap());
    }

    let db = Database::connect(&database_url).await.unwrap();
    let migrations = count(&db, "SELECT COUNT(*) FROM seaql_migrations").await;
    assert_eq!(migrations as usize, <migration::Migrator as migration::MigratorTrait>::migrations().len());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM signing_keys WHERE alg = 'RS256'").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM signing_keys WHERE alg = 'ES256'").await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM atproto_client_keys").await, 1);

    let http = reqwest::Client::new();
    for path in ["/.well-known/jwks.json", "/atproto/jwks.json"] {
        let mut bodies = Vec::new();
        for port in &ports {
            let response = http.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            bodies.push(response.json::<serde_json::Value>().await.unwrap());
        }
        assert!(!bodies[0]["keys"].as_array().unwrap().is_empty(), "{path}");
        assert!(bodies.iter().all(|b| b == &bodies[0]), "{path} differs between nodes: {bodies:?}");
    }
}
