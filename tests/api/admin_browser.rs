//! The admin UI in headless Chromium (tests/browser/admin.mjs via playwright-core): an admin
//! signs in (test session seam), creates a client, sees the secret once, edits its redirect URIs,
//! rotates the secret and disables it; the disabled client's token request is then refused.
//! Screenshots go to $ATSSO_SCREENSHOT_DIR (docs/screenshots to refresh the README's) or
//! target/screenshots. Skipped, with a message, when Chromium or playwright-core is missing.
use std::path::Path;

use serde_json::Value;

use super::admin::{spawn_admin_app, token_request_status, ADMIN_DID};

#[tokio::test]
async fn admin_ui_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !Path::new("/usr/bin/chromium").exists() {
        eprintln!("SKIPPED admin_ui_in_headless_chromium: /usr/bin/chromium is not installed (apt-get install chromium)");
        return;
    }
    if !root.join("e2e/node_modules/playwright-core").exists() {
        eprintln!("SKIPPED admin_ui_in_headless_chromium: e2e/node_modules/playwright-core is missing (run e2e/install.sh)");
        return;
    }
    let admin = spawn_admin_app().await;
    let profile = atsso::store::users::UserProfile { did: ADMIN_DID.into(), handle: Some("admin.test".into()), ..Default::default() };
    let session = atsso::sso::establish_session(&admin.app.state, &profile).await.unwrap();
    // someone to show on the users pages
    admin.app.browser_with_session(super::mock_pds::ALICE_DID, "alice.test").await;

    let shots = std::env::var("ATSSO_SCREENSHOT_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| root.join("target/screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(root.join("tests/browser/admin.mjs"))
            .env("ATSSO_BASE", &admin.app.base)
            .env("ATSSO_SESSION_COOKIE", &session.cookie_value)
            .env("ATSSO_SHOT_DIR", &shots)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finishes within 90 s")
    .expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| panic!("{stdout}\n{stderr}"));
    let client_id = result["client_id"].as_str().unwrap();
    let secret = result["client_secret"].as_str().unwrap();

    // What the browser did is what the server holds.
    let client = admin.app.state.store.client(client_id).await.unwrap().unwrap();
    assert!(!client.enabled);
    assert_eq!(client.redirect_uris, ["https://notes.example/callback", "https://notes.example/auth/callback"]);
    // The disabled client's token request is refused...
    assert_eq!(token_request_status(&admin.app, client_id, secret).await, (401, "invalid_client".into()));
    // ...because it is disabled: the rotated secret is right.
    atsso::oidc::clients::set_enabled(&admin.app.state.store, Some(&admin.app.state.secrets), client_id, true).await.unwrap();
    assert_eq!(token_request_status(&admin.app, client_id, secret).await, (400, "invalid_grant".into()));
    for name in [
        "signin",
        "clients",
        "client-new",
        "client-secret",
        "client",
        "client-error",
        "confirm",
        "client-disabled",
        "users",
        "user",
        "keys",
        "audit",
        "clients-phone",
        "client-phone",
        "client-dark",
    ] {
        assert!(shots.join(format!("admin-{name}.png")).exists(), "screenshot {name}");
    }
}
