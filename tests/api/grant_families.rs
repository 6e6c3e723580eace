//! Issue 14: one row per grant. A refresh moves its family's generation; refresh tokens carry
//! family and generation under a MAC; access tokens have no row and are checked by signature and
//! family; tokens issued before the upgrade keep working.
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{json, Value};

use super::{
    helpers::{spawn_app, spawn_second_node, RegisteredClient, TestApp},
    token_hardening::{str_of, token_as, tokens_for, userinfo_status},
};

async fn database(app: &TestApp) -> DatabaseConnection {
    Database::connect(&app.state.config.database_url).await.unwrap()
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn refresh(app: &TestApp, registered: &RegisteredClient, refresh_token: &str) -> (u16, Value) {
    token_as(app, registered, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

/// The token with its generation replaced (the MAC left as it was).
fn with_generation(refresh_token: &str, generation: i64) -> String {
    let parts: Vec<&str> = refresh_token.split('.').collect();
    assert_eq!(parts.len(), 3, "family.generation.mac: {refresh_token}");
    format!("{}.{generation}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn a_grant_is_one_row_whatever_the_number_of_refreshes() {
    let app = spawn_app().await;
    let registered = app.register("one-row", false, true).await;
    let mut tokens = tokens_for(&app, &registered, &["offline_access"]).await;
    for _ in 0..3 {
        let (status, next) = refresh(&app, &registered, str_of(&tokens, "refresh_token")).await;
        assert_eq!(status, 200, "{next}");
        tokens = next;
    }
    assert_eq!(userinfo_status(&app, str_of(&tokens, "access_token")).await.0, 200);
    let db = database(&app).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM grant_families").await, 1);
    assert_eq!(count(&db, "SELECT MAX(generation) FROM grant_families").await, 4, "the code's generation and three refreshes");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM refresh_tokens").await, 0, "no row per refresh token");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM access_tokens").await, 0, "no row per access token");
}

#[tokio::test]
async fn a_refresh_token_with_a_forged_generation_is_refused_and_revokes_nothing() {
    let app = spawn_app().await;
    let registered = app.register("forged", false, true).await;
    let tokens = tokens_for(&app, &registered, &["offline_access"]).await;
    let held = str_of(&tokens, "refresh_token");
    for forged in [with_generation(held, 0), with_generation(held, 2), format!("{held}x")] {
        let (status, body) = refresh(&app, &registered, &forged).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{forged}: {body}");
    }
    assert_eq!(userinfo_status(&app, str_of(&tokens, "access_token")).await.0, 200, "the grant was not revoked");
    let (status, body) = refresh(&app, &registered, held).await;
    assert_eq!(status, 200, "the real token still works: {body}");
}

#[tokio::test]
async fn an_older_generation_is_a_reuse_that_ends_the_grant_and_its_access_tokens() {
    let app = spawn_app().await;
    let registered = app.register("reuse", false, true).await;
    let first = tokens_for(&app, &registered, &["offline_access"]).await;
    let (_, second) = refresh(&app, &registered, str_of(&first, "refresh_token")).await;
    let (_, third) = refresh(&app, &registered, str_of(&second, "refresh_token")).await;
    assert_eq!(userinfo_status(&app, str_of(&first, "access_token")).await.0, 200, "an older access token lives with its grant");
    let (status, body) = refresh(&app, &registered, str_of(&first, "refresh_token")).await;
    assert_eq!((status, body["error_description"].as_str()), (400, Some("refresh token has already been used")));
    for tokens in [&first, &second, &third] {
        assert_eq!(userinfo_status(&app, str_of(tokens, "access_token")).await.0, 401, "every access token of the grant ends");
    }
    assert_eq!(refresh(&app, &registered, str_of(&third, "refresh_token")).await.0, 400, "and its current refresh token");
}

#[tokio::test]
async fn an_access_token_whose_claims_were_changed_is_refused() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let app = spawn_app().await;
    let registered = app.register("tampered", false, true).await;
    let tokens = tokens_for(&app, &registered, &[]).await;
    let access = str_of(&tokens, "access_token");
    let parts: Vec<&str> = access.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("did:plc:mallory000000000000000");
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    assert_eq!(userinfo_status(&app, &tampered).await.0, 401);
    assert_eq!(userinfo_status(&app, access).await.0, 200);
}

/// A database with live tokens from the schema before grant families, upgraded: the unrotated
/// refresh token of a family refreshes (into the new format), a rotated one is a reuse, and an
/// access token keeps working until its grant ends.
#[tokio::test]
async fn tokens_issued_before_the_upgrade_keep_working() {
    use atsso::crypto::{random_token, sha256_b64, signing::Alg};
    use migration::{Migrator, MigratorTrait};

    let app = spawn_app().await;
    let registered = app.register("upgrade", false, true).await;
    // A real session (its sid) and a real user, from an ordinary sign-in.
    let tokens = tokens_for(&app, &registered, &["offline_access"]).await;
    let claims = app.state.keys.current().verify(str_of(&tokens, "access_token"), None).unwrap();
    let (did, sid, client_id) = (claims["sub"].as_str().unwrap(), claims["sid"].as_str().unwrap(), registered.client.client_id.as_str());

    // Back to the schema before grant families, with the rows it would have held.
    let db = database(&app).await;
    // (Later migrations are rolled back too: the ones after grant families, then it.)
    let migrations = Migrator::migrations();
    let at = migrations.iter().position(|m| m.name() == "m20261205_000005_grant_families").expect("the grant-families migration");
    Migrator::down(&db, Some((migrations.len() - at) as u32)).await.unwrap();
    let now = atsso::clock::now();
    let (rotated, live, other_rotated, other_live) = (random_token(32), random_token(32), random_token(32), random_token(32));
    let refresh_row = |token: &str, family: &str, rotated_at: &str| {
        format!(
            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, did, sid, scope, auth_time, created_at, expires_at, rotated_at, \
             revoked_at) VALUES ('{}', '{family}', '{client_id}', '{did}', '{sid}', 'openid offline_access', {now}, {now}, {}, {rotated_at}, NULL)",
            sha256_b64(token),
            now + 86400
        )
    };
    for sql in [
        refresh_row(&rotated, "old-family", &(now - 5).to_string()),
        refresh_row(&live, "old-family", "NULL"),
        refresh_row(&other_rotated, "other-family", &(now - 5).to_string()),
        refresh_row(&other_live, "other-family", "NULL"),
    ] {
        db.execute_unprepared(&sql).await.unwrap();
    }
    let legacy_jti = random_token(16);
    let mut access_claims = serde_json::Map::new();
    for (name, value) in [
        ("iss", json!(app.state.config.issuer())),
        ("sub", json!(did)),
        ("aud", json!(client_id)),
        ("client_id", json!(client_id)),
        ("iat", json!(now)),
        ("exp", json!(now + 600)),
        ("jti", json!(legacy_jti)),
        ("scope", json!("openid offline_access")),
        ("sid", json!(sid)),
        ("auth_time", json!(now)),
    ] {
        access_claims.insert(name.into(), value);
    }
    let legacy_access = app.state.keys.current().sign(Alg::Rs256, "at+jwt", access_claims).unwrap();
    db.execute_unprepared(&format!(
        "INSERT INTO access_tokens (jti, token_hash, issued_at, family_id, client_id, did, sid, scope, expires_at, revoked_at) \
         VALUES ('{legacy_jti}', '{}', {now}, 'old-family', '{client_id}', '{did}', '{sid}', 'openid offline_access', {}, NULL)",
        sha256_b64(&legacy_access),
        now + 600
    ))
    .await
    .unwrap();

    // The upgrade, then a node that starts on the upgraded database.
    Migrator::up(&db, None).await.unwrap();
    let node = spawn_second_node(&app).await;
    assert_eq!(userinfo_status(&node, &legacy_access).await.0, 200, "an access token from before the upgrade");
    let (status, renewed) = refresh(&node, &registered, &live).await;
    assert_eq!(status, 200, "the unrotated refresh token from before the upgrade: {renewed}");
    assert_eq!(str_of(&renewed, "refresh_token").split('.').count(), 3, "renewed into the new format");
    let (status, next) = refresh(&node, &registered, str_of(&renewed, "refresh_token")).await;
    assert_eq!(status, 200, "{next}");

    // Presenting the old token again is a reuse: the grant ends, with the old access token.
    let (status, body) = refresh(&node, &registered, &live).await;
    assert_eq!((status, body["error_description"].as_str()), (400, Some("refresh token has already been used")));
    assert_eq!(userinfo_status(&node, &legacy_access).await.0, 401, "the old access token ended with its grant");
    assert_eq!(refresh(&node, &registered, str_of(&next, "refresh_token")).await.0, 400);

    // Another grant was untouched by that; a token it had rotated before the upgrade is a reuse.
    let (status, other) = refresh(&node, &registered, &other_live).await;
    assert_eq!(status, 200, "another family's token from before the upgrade: {other}");
    let (status, body) = refresh(&node, &registered, &other_rotated).await;
    assert_eq!((status, body["error_description"].as_str()), (400, Some("refresh token has already been used")), "{body}");
    assert_eq!(refresh(&node, &registered, str_of(&other, "refresh_token")).await.0, 400, "its grant ended");
    assert_eq!(refresh(&node, &registered, &rotated).await.0, 400, "a rotated token of an ended grant");
}
