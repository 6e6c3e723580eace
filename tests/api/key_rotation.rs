//! Key rotation with an activation delay: the new keys are in the JWKS at once, sign only after
//! the delay, and what they sign verifies against the JWKS a relying party fetches then.
use std::time::Duration;

use openidconnect::{core::CoreTokenResponse, OAuth2TokenResponse, TokenResponse};
use serde_json::Value;

use super::{
    helpers::{eventually, query_param, spawn_app_with, Browser, RegisteredClient, TestApp},
    rp::Rp,
};

const ALICE: &str = "did:plc:alice0000000000000000000";
const DELAY_SECS: i64 = 3;

fn header_kid(jwt: &str) -> String {
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

/// A first-party client whose access tokens are ES256.
async fn register_es256(app: &TestApp, name: &str) -> RegisteredClient {
    let redirect_uri = format!("http://127.0.0.1:9/{name}/callback");
    let new = atsso::oidc::clients::NewClient {
        name: name.into(),
        redirect_uris: vec![redirect_uri.clone()],
        first_party: true,
        access_token_alg: Some("ES256".into()),
        ..Default::default()
    };
    let (client, secret) = atsso::oidc::clients::register(&app.state.store, new).await.unwrap();
    RegisteredClient { client, secret, redirect_uri }
}

/// A fresh relying party (discovery fetches the JWKS now) signs Alice in; returns the tokens,
/// verified against that JWKS, and the kids of the ID and access tokens.
async fn sign_in(app: &TestApp, registered: &RegisteredClient, browser: &Browser) -> (CoreTokenResponse, String, String) {
    let rp = Rp::discover(app, registered).await;
    let pending = rp.start(&["profile"]);
    let response = browser.get(&pending.url).await;
    let code = query_param(&super::helpers::location(&response), "code").expect("first-party: a code at once");
    let tokens = rp.exchange(&code, pending.verifier).await.unwrap();
    rp.verify_id_token(&tokens, Some(&pending.nonce));
    let id_kid = header_kid(&tokens.id_token().unwrap().to_string());
    let access_kid = header_kid(tokens.access_token().secret());
    (tokens, id_kid, access_kid)
}

async fn jwks_kids(app: &TestApp) -> (Vec<String>, String) {
    let response = reqwest::get(app.url("/.well-known/jwks.json")).await.unwrap();
    let cache_control = response.headers()["cache-control"].to_str().unwrap().to_owned();
    let jwks: Value = response.json().await.unwrap();
    (jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect(), cache_control)
}

#[tokio::test]
async fn rotated_keys_are_published_first_and_sign_after_the_activation_delay() {
    let app = spawn_app_with(|config| config.key_activation_delay_secs = DELAY_SECS).await;
    let registered = app.register("rotating", false, true).await;
    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let (_, old_id_kid, old_access_kid) = sign_in(&app, &registered, &browser).await;
    let (_, cache_control) = jwks_kids(&app).await;
    assert_eq!(cache_control, "public, max-age=1", "JWKS cached at most half the delay");

    let rotation = atsso::admin::rotate_signing_key(&app.state, &atsso::audit::Actor::new(atsso::audit::CLI_ACTOR, None)).await.unwrap();
    let (kids, _) = jwks_kids(&app).await;
    assert!(kids.contains(&rotation.rs256_kid) && kids.contains(&rotation.es256_kid), "published at once: {kids:?}");
    assert!(kids.contains(&old_id_kid) && kids.contains(&old_access_kid));
    // Before the activation the old keys still sign.
    assert!(atsso::clock::now() < rotation.activates_at);
    let (_, id_kid, access_kid) = sign_in(&app, &registered, &browser).await;
    assert!(atsso::clock::now() < rotation.activates_at, "the token must have been issued before the activation");
    assert_eq!((id_kid, access_kid), (old_id_kid.clone(), old_access_kid.clone()));

    // After it the new keys sign (no reload needed), and a relying party fetching the JWKS
    // then verifies their tokens (sign_in verifies).
    let (id_kid, access_kid) = eventually(Duration::from_secs(DELAY_SECS as u64 + 5), "the new keys sign", || async {
        let (_, id_kid, access_kid) = sign_in(&app, &registered, &browser).await;
        (id_kid != old_id_kid).then_some((id_kid, access_kid))
    })
    .await;
    assert!(atsso::clock::now() >= rotation.activates_at);
    assert_eq!((id_kid, access_kid), (rotation.rs256_kid.clone(), rotation.rs256_kid.clone()), "RS256 access tokens by default");
    // A client opted into ES256 gets its access tokens from the new ES256 key.
    let es256 = register_es256(&app, "rotating-es256").await;
    let (_, id_kid, access_kid) = sign_in(&app, &es256, &browser).await;
    assert_eq!((id_kid, access_kid), (rotation.rs256_kid.clone(), rotation.es256_kid.clone()));
    let (kids, _) = jwks_kids(&app).await;
    assert!(kids.contains(&old_id_kid), "the retired key stays published while its tokens live");

    let keys = atsso::keys::list(&app.state.store, &app.state.config).await.unwrap();
    let state_of = |kid: &str| keys.iter().find(|k| k.kid == kid).unwrap().state;
    assert_eq!(state_of(&rotation.rs256_kid), "active");
    assert_eq!(state_of(&old_id_kid), "retired");
}

#[tokio::test]
async fn keys_made_before_the_states_existed_were_active_from_their_creation() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Database, Statement};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display())).await.unwrap();
    // Every migration before the one that adds the key states.
    let before = Migrator::migrations().iter().position(|m| m.name().ends_with("_signing_key_states")).unwrap() as u32;
    Migrator::up(&db, Some(before)).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO signing_keys (kid, alg, private_key_sealed, created_at, retired_at) VALUES ('old', 'RS256', 'x', 100, 200), \
         ('cur', 'RS256', 'x', 200, NULL)",
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    let rows = db
        .query_all(Statement::from_string(db.get_database_backend(), "SELECT kid, activates_at FROM signing_keys ORDER BY kid"))
        .await
        .unwrap();
    let keys: Vec<(String, i64)> =
        rows.iter().map(|r| (r.try_get::<String>("", "kid").unwrap(), r.try_get::<i64>("", "activates_at").unwrap())).collect();
    assert_eq!(keys, [("cur".to_owned(), 200), ("old".to_owned(), 100)]);
}
