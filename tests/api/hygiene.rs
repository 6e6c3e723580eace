//! Logs never carry tokens, codes, secrets or cookie values; expired rows are swept.
use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use openidconnect::OAuth2TokenResponse;

use super::{
    helpers::{location, query_param, spawn_app},
    rp::Rp,
};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of the test process, at the most verbose level our crate has.
fn captured_logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace,sqlx=warn,sea_orm=warn,h2=info,hyper=info,rustls=info,reqwest=info"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

#[tokio::test]
async fn no_secret_reaches_a_log_line() {
    let logs = captured_logs();
    let app = spawn_app().await;
    let registered = app.register("logged", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let browser = app.browser_with_session("did:plc:logcheck00000000000000", "log.test").await;
    let cookie = reqwest::cookie::CookieStore::cookies(&*browser.jar, &app.base.parse().unwrap()).unwrap().to_str().unwrap().to_owned();

    let pending = rp.start(&["profile"]);
    let response = browser.get(&pending.url).await;
    let code = query_param(&location(&response), "code").unwrap();
    let tokens = rp.exchange(&code, pending.verifier).await.unwrap();
    let refreshed = rp.refresh(tokens.refresh_token().unwrap()).await.unwrap();
    rp.userinfo(refreshed.access_token()).await.unwrap();
    // Failures log too: a wrong secret and a replayed code.
    let _ = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&registered.client.client_id, Some("wrong-secret-value"))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str())])
        .send()
        .await;
    let _ = rp.refresh(tokens.refresh_token().unwrap()).await; // reuse → family revoked (logged)
    let id_token = openidconnect::TokenResponse::id_token(&refreshed).unwrap().to_string();
    browser.get(&format!("{}?id_token_hint={id_token}", app.url("/oauth2/end_session"))).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("served"), "request spans are logged");
    assert!(text.contains("refresh token reused"), "security events are logged");
    let cookie_value = cookie.split_once('=').unwrap().1.split(';').next().unwrap().to_owned();
    let secrets = [
        ("client secret", registered.secret.clone().unwrap()),
        ("wrong secret", "wrong-secret-value".to_owned()),
        ("code", code),
        ("access token", tokens.access_token().secret().clone()),
        ("refresh token", tokens.refresh_token().unwrap().secret().clone()),
        ("rotated refresh token", refreshed.refresh_token().unwrap().secret().clone()),
        ("id token", id_token.clone()),
        ("session cookie", cookie_value.clone()),
        ("session secret", cookie_value.split_once('.').unwrap().1.to_owned()),
    ];
    for (what, secret) in secrets {
        assert!(!text.contains(&secret), "the {what} appears in the logs");
    }
}

#[tokio::test]
async fn sweeper_removes_expired_rows_only() {
    let app = spawn_app().await;
    let registered = app.register("sweep", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let browser = app.browser_with_session("did:plc:sweep0000000000000000000", "sweep.test").await;
    let pending = rp.start(&[]);
    let code = query_param(&location(&browser.get(&pending.url).await), "code").unwrap();
    let tokens = rp.exchange(&code, pending.verifier).await.unwrap();

    let now = atsso::clock::now();
    assert_eq!(app.state.store.sweep_expired(now).await.unwrap(), 0, "nothing is expired yet");
    rp.refresh(tokens.refresh_token().unwrap()).await.expect("still valid after a sweep");
    // A year from now everything has expired: codes, tokens, the session.
    let removed = app.state.store.sweep_expired(now + 365 * 86400).await.unwrap();
    assert!(removed >= 3, "code, grant family, session: {removed}");
    let presented = atsso::oidc::grant_token::parse_refresh_token(&app.state.sealer, tokens.refresh_token().unwrap().secret());
    let atsso::oidc::grant_token::Presented::Family { family_id, .. } = presented else { panic!("a family token: {presented:?}") };
    assert!(app.state.store.grant_family_in_db(&family_id).await.unwrap().is_none(), "the family is gone");
}
