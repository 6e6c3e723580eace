//! End to end: the real atsso server (in-process, temp SQLite) and two tenant-app instances.
//! A browser with an atsso session (created through atsso's library seam, as atsso's own tests
//! do: there is no HTTP backdoor) signs in to app 1, gets into app 2 without logging in again,
//! signs out of app 1, and app 2 is signed out by back-channel logout.
use std::{
    net::TcpListener,
    sync::Arc,
    time::{Duration, Instant},
};

use atsso::{
    config::{Config, FileConfig},
    oidc::clients::{self, NewClient},
    store::users::UserProfile,
    Application,
};
use reqwest::{cookie::Jar, redirect::Policy, Response, Url};
use serde_json::{json, Map, Value};
use tenant_app::Settings;

const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const HANDLE: &str = "alice.test";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

struct Atsso {
    base: String,
    state: atsso::state::AppState,
    _dir: tempfile::TempDir,
}

async fn spawn_atsso() -> Atsso {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("atsso.db").display());
    let config = Config::from_sources(FileConfig::default(), |name| match name {
        "ATSSO_BIND" => Some(format!("127.0.0.1:{port}")),
        "ATSSO_DATA_DIR" => Some(data_dir.clone()),
        "ATSSO_DATABASE_URL" => Some(database_url.clone()),
        _ => None,
    })
    .unwrap();
    let app = Application::build_with_listener(config, listener).await.unwrap();
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    Atsso { base: format!("http://127.0.0.1:{port}"), state, _dir: dir }
}

struct TenantApp {
    base: String,
    client_id: String,
}

/// Registers an app the way the README's `atsso clients add` does, and starts it on a free port.
async fn spawn_tenant(atsso: &Atsso, name: &str) -> TenantApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (client, secret) = clients::register(
        &atsso.state.store,
        NewClient {
            name: name.into(),
            redirect_uris: vec![format!("{base}/callback")],
            post_logout_redirect_uris: vec![format!("{base}/")],
            backchannel_logout_uri: Some(format!("{base}/backchannel-logout")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let vars = [
        ("APP_NAME", name.to_owned()),
        ("APP_URL", base.clone()),
        ("ISSUER", atsso.base.clone()),
        ("CLIENT_ID", client.client_id.clone()),
        ("CLIENT_SECRET", secret.unwrap()),
    ];
    let settings = Settings::from_lookup(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.clone())).unwrap();
    tokio::spawn(tenant_app::start(settings, listener).unwrap());
    TenantApp { base, client_id: client.client_id }
}

/// A cookie-keeping browser that does not follow redirects (each hop is checked).
struct Browser {
    jar: Arc<Jar>,
    http: reqwest::Client,
}

impl Browser {
    fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).redirect(Policy::none()).build().unwrap();
        Browser { jar, http }
    }

    /// A browser already signed in at atsso (atsso's test seam instead of an ATProto login).
    async fn signed_in_at(atsso: &Atsso) -> Self {
        let profile = UserProfile {
            did: DID.into(),
            handle: Some(HANDLE.into()),
            display_name: Some("Alice".into()),
            avatar: Some("https://cdn.example/alice.jpg".into()),
            email: Some("alice@example.test".into()),
            email_verified: Some(true),
        };
        let established = atsso::sso::establish_session(&atsso.state, &profile).await.unwrap();
        let browser = Browser::new();
        browser.jar.add_cookie_str(
            &format!("{}={}; Path=/", atsso::sso::SESSION_COOKIE, established.cookie_value),
            &Url::parse(&atsso.base).unwrap(),
        );
        browser
    }

    async fn get(&self, url: &str) -> Response {
        self.http.get(url).send().await.unwrap()
    }

    async fn text(&self, url: &str) -> String {
        let response = self.get(url).await;
        assert_eq!(response.status(), 200, "GET {url}");
        response.text().await.unwrap()
    }
}

fn location(response: &Response, base: &str) -> String {
    let location = response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("expected a redirect, got {}", response.status()))
        .to_str()
        .unwrap();
    Url::parse(base).unwrap().join(location).unwrap().to_string()
}

fn hidden_input(html: &str, name: &str) -> String {
    let at = html.find(&format!(r#"name="{name}""#)).unwrap_or_else(|| panic!("no {name} input"));
    let tag_start = html[..at].rfind('<').unwrap();
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').unwrap()];
    let value = &tag[tag.find(r#"value=""#).unwrap() + 7..];
    value[..value.find('"').unwrap()].to_owned()
}

/// `/login` on the app → atsso authorize (→ consent, approved) → the app's `/callback` → `/`.
async fn sign_in(browser: &Browser, atsso: &Atsso, app: &TenantApp) {
    let response = browser.get(&format!("{}/login", app.base)).await;
    assert_eq!(response.status(), 302);
    let authorize = location(&response, &app.base);
    assert!(authorize.starts_with(&format!("{}/oauth2/authorize?", atsso.base)), "{authorize}");
    for param in ["code_challenge_method=S256", "state=", "nonce=", "scope=openid+profile+email"] {
        assert!(authorize.contains(param), "{param} missing from {authorize}");
    }
    let response = browser.get(&authorize).await;
    assert_eq!(response.status(), 302, "a signed-in browser is not asked to log in");
    let mut next = location(&response, &atsso.base);
    if next.starts_with(&format!("{}/consent", atsso.base)) {
        let html = browser.text(&next).await;
        let form = [
            ("request_id", hidden_input(&html, "request_id")),
            ("csrf_token", hidden_input(&html, "csrf_token")),
            ("decision", "allow".to_owned()),
        ];
        let response = browser.http.post(format!("{}/consent", atsso.base)).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 302);
        next = location(&response, &atsso.base);
    }
    assert!(next.starts_with(&format!("{}/callback?", app.base)), "{next}");
    let response = browser.get(&next).await;
    assert_eq!(response.status(), 302, "callback: {}", response.text().await.unwrap_or_default());
    assert_eq!(location(&response, &app.base), format!("{}/", app.base));
}

fn is_signed_in(html: &str) -> bool {
    html.contains("Signed in as") && !html.contains(r#"href="/login""#)
}

#[tokio::test]
async fn login_sso_and_single_logout_across_two_apps() {
    let atsso = spawn_atsso().await;
    let notes = spawn_tenant(&atsso, "Notes").await;
    let photos = spawn_tenant(&atsso, "Photos").await;
    let browser = Browser::signed_in_at(&atsso).await;

    // Signed out at first.
    let home = browser.text(&format!("{}/", notes.base)).await;
    assert!(home.contains(r#"href="/login""#) && home.contains("<h1>Notes</h1>"));

    // App 1: sign in; the ID token's claims are on the page.
    sign_in(&browser, &atsso, &notes).await;
    let home = browser.text(&format!("{}/", notes.base)).await;
    assert!(is_signed_in(&home), "{home}");
    for expected in [DID, HANDLE, "Alice", "https://cdn.example/alice.jpg", "alice@example.test"] {
        assert!(home.contains(expected), "{expected} missing from the claims table");
    }
    let info = browser.text(&format!("{}/userinfo", notes.base)).await;
    assert!(info.contains("<h2>userinfo</h2>") && info.contains(&format!("&quot;sub&quot;: &quot;{DID}&quot;")), "{info}");

    // App 2: single sign-on, no login at atsso.
    sign_in(&browser, &atsso, &photos).await;
    let home = browser.text(&format!("{}/", photos.base)).await;
    assert!(is_signed_in(&home) && home.contains(DID) && home.contains("<h1>Photos</h1>"));

    // Sign out of app 1: the browser goes through atsso's end-session endpoint and back.
    let response = browser.http.post(format!("{}/logout", notes.base)).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let end_session = location(&response, &notes.base);
    assert!(end_session.starts_with(&format!("{}/oauth2/end_session?", atsso.base)), "{end_session}");
    assert!(end_session.contains("id_token_hint=") && end_session.contains("state="));
    let response = browser.get(&end_session).await;
    assert_eq!(response.status(), 302, "end-session: {}", response.text().await.unwrap_or_default());
    let back = location(&response, &atsso.base);
    assert!(back.starts_with(&format!("{}/?state=", notes.base)), "{back}");
    let home = browser.text(&back).await;
    assert!(home.contains("signed out of every app") && !is_signed_in(&home), "{home}");

    // App 2 was told over the back channel (atsso delivers in the background).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let home = browser.text(&format!("{}/", photos.base)).await;
        if !is_signed_in(&home) {
            assert!(home.contains(r#"href="/login""#));
            break;
        }
        assert!(Instant::now() < deadline, "Photos is still signed in 15 s after logout");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And the atsso session is over: signing in again means logging in at atsso.
    let response = browser.get(&format!("{}/login", photos.base)).await;
    let response = browser.get(&location(&response, &photos.base)).await;
    assert_eq!(response.status(), 302);
    assert!(location(&response, &atsso.base).starts_with(&format!("{}/login", atsso.base)));
}

/// A logout token for `aud`, signed with atsso's real key; `change` edits the claims.
fn logout_token(atsso: &Atsso, aud: &str, typ: &str, change: impl FnOnce(&mut Map<String, Value>)) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut claims = json!({
        "iss": atsso.base, "aud": aud, "iat": now, "exp": now + 120, "jti": format!("j{now}"),
        "sub": DID, "sid": "some-session", "events": { EVENT: {} },
    })
    .as_object()
    .unwrap()
    .clone();
    change(&mut claims);
    atsso.state.keys.current().sign(atsso::crypto::signing::Alg::Rs256, typ, claims).unwrap()
}

#[tokio::test]
async fn backchannel_logout_refuses_bad_tokens() {
    let atsso = spawn_atsso().await;
    let app = spawn_tenant(&atsso, "Notes").await;
    let other = spawn_tenant(&atsso, "Photos").await;
    let url = format!("{}/backchannel-logout", app.base);
    let http = reqwest::Client::new();
    let post = |form: Vec<(&'static str, String)>| {
        let request = http.post(&url).form(&form);
        async move { request.send().await.unwrap() }
    };

    // The real thing from atsso's own signer, and a well-formed one: 200 (no session to end is fine).
    let real = atsso::oidc::backchannel::logout_token(&atsso.state, &app.client_id, DID, "unknown-sid").unwrap();
    assert_eq!(post(vec![("logout_token", real)]).await.status(), 200);
    assert_eq!(post(vec![("logout_token", logout_token(&atsso, &app.client_id, "logout+jwt", |_| {}))]).await.status(), 200);

    let bad: Vec<(&str, String)> = vec![
        ("not a JWT", "garbage".into()),
        ("another app's token", logout_token(&atsso, &other.client_id, "logout+jwt", |_| {})),
        ("typed as an ID token", logout_token(&atsso, &app.client_id, "JWT", |_| {})),
        ("with a nonce", logout_token(&atsso, &app.client_id, "logout+jwt", |c| {
            c.insert("nonce".into(), "n".into());
        })),
        ("without the event", logout_token(&atsso, &app.client_id, "logout+jwt", |c| {
            c.insert("events".into(), json!({}));
        })),
        ("from another issuer", logout_token(&atsso, &app.client_id, "logout+jwt", |c| {
            c.insert("iss".into(), "http://127.0.0.1:1".into());
        })),
        ("expired", logout_token(&atsso, &app.client_id, "logout+jwt", |c| {
            c.insert("exp".into(), 1_000_000.into());
        })),
    ];
    for (what, token) in bad {
        let response = post(vec![("logout_token", token)]).await;
        assert_eq!(response.status(), 400, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{what}");
    }
    // A tampered signature.
    let mut token = logout_token(&atsso, &app.client_id, "logout+jwt", |_| {});
    token.pop();
    token.push('A');
    assert_eq!(post(vec![("logout_token", token)]).await.status(), 400, "tampered");
    assert_eq!(post(vec![("something_else", "x".into())]).await.status(), 400, "no logout_token");
}

#[tokio::test]
async fn callback_without_a_matching_login_shows_an_error_page() {
    let atsso = spawn_atsso().await;
    let app = spawn_tenant(&atsso, "Notes").await;
    let browser = Browser::new();
    let response = browser.get(&format!("{}/callback?code=x&state=y", app.base)).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("No sign-in in progress"));

    let response = browser.get(&format!("{}/login", app.base)).await;
    assert_eq!(response.status(), 302);
    let response = browser.get(&format!("{}/callback?code=x&state=wrong", app.base)).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("state parameter does not match"));
    // Signing out when not signed in just goes home.
    let response = browser.http.post(format!("{}/logout", app.base)).send().await.unwrap();
    assert_eq!(location(&response, &app.base), format!("{}/", app.base));
}
