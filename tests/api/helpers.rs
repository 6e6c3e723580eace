//! Test harness: the real server on a random port with a fresh database (SQLite by default,
//! Postgres when ATSSO_TEST_DATABASE_URL points at a server), and a browser-like HTTP client.
use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
};

use actix_web::{web, App, HttpResponse, HttpServer};

use atsso::{
    config::{Config, FileConfig},
    oidc::clients::{self, NewClient},
    state::AppState,
    store::{clients::Client, users::UserProfile},
    Application,
};
use reqwest::{cookie::Jar, redirect::Policy, Url};

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    /// The separate metrics listener's port (`metrics_bind` set).
    pub metrics_port: Option<u16>,
    pub _dir: tempfile::TempDir,
    /// Stops the app's outbox worker (a node going away; its HTTP server keeps running).
    pub shutdown: tokio_util::sync::CancellationToken,
}

pub struct RegisteredClient {
    pub client: Client,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

/// A fresh database URL: a temp SQLite file, or a new database on the test Postgres server.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var("ATSSO_TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            use sea_orm::{ConnectionTrait, Database};
            let name = format!("atsso_test_{}", atsso::crypto::random_token(9).to_lowercase().replace(['-', '_'], "x"));
            let admin = Database::connect(&base).await.unwrap();
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
            let mut url = Url::parse(&base).unwrap();
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("atsso.db").display()),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(TcpListener::bind("127.0.0.1:0").unwrap(), adjust).await
}

/// Starts the server on an already bound listener (for tests that must know the port first).
pub async fn spawn_app_on(listener: TcpListener, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let port = listener.local_addr().unwrap().port();
    let database_url = fresh_database_url(dir.path()).await;
    let data_dir = dir.path().display().to_string();
    let mut config = Config::from_sources(FileConfig::default(), |name| match name {
        "ATSSO_BIND" => Some(format!("127.0.0.1:{port}")),
        "ATSSO_DATA_DIR" => Some(data_dir.clone()),
        "ATSSO_DATABASE_URL" => Some(database_url.clone()),
        _ => None,
    })
    .unwrap();
    adjust(&mut config);
    let app = Application::build_with_listener(config, listener).await.unwrap();
    let (state, shutdown, metrics_port) = (app.state().clone(), app.shutdown_token(), app.metrics_port());
    tokio::spawn(app.run_until_stopped());
    TestApp { base: format!("http://127.0.0.1:{port}"), state, metrics_port, _dir: dir, shutdown }
}

/// A second node: another server process's worth of state (its own caches and listener) on the
/// SAME database, data directory (master key) and settings as `first`, on its own port.
pub async fn spawn_second_node(first: &TestApp) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = (*first.state.config).clone();
    config.bind = format!("127.0.0.1:{port}");
    let app = Application::build_with_listener(config, listener).await.unwrap();
    let (state, shutdown, metrics_port) = (app.state().clone(), app.shutdown_token(), app.metrics_port());
    tokio::spawn(app.run_until_stopped());
    TestApp { base: format!("http://127.0.0.1:{port}"), state, metrics_port, _dir: tempfile::tempdir().unwrap(), shutdown }
}

impl TestApp {
    pub fn on_postgres(&self) -> bool {
        !self.state.store.is_sqlite()
    }

    /// Waits until this node uses its read cache (on Postgres: its invalidation listener is up).
    pub async fn wait_until_caching(&self) {
        let store = &self.state.store;
        eventually(std::time::Duration::from_secs(5), "the invalidation listener is up", || async { store.cache_trusted().then_some(()) })
            .await;
    }

    pub async fn register(&self, name: &str, public: bool, first_party: bool) -> RegisteredClient {
        let redirect_uri = format!("http://127.0.0.1:9/{name}/callback");
        let (client, secret) = clients::register(
            &self.state.store,
            NewClient {
                name: name.into(),
                redirect_uris: vec![redirect_uri.clone()],
                post_logout_redirect_uris: vec![format!("http://127.0.0.1:9/{name}/logged-out")],
                public,
                first_party,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        RegisteredClient { client, secret, redirect_uri }
    }

    /// Signs a user in through the library seam and returns a browser holding the session cookie.
    pub async fn browser_with_session(&self, did: &str, handle: &str) -> Browser {
        let profile = UserProfile {
            did: did.into(),
            handle: Some(handle.into()),
            display_name: Some(format!("{handle} display")),
            avatar: Some("https://cdn.example/avatar.jpg".into()),
            email: Some(format!("{}@example.test", handle.split('.').next().unwrap())),
            email_verified: Some(true),
        };
        let established = atsso::sso::establish_session(&self.state, &profile).await.unwrap();
        let browser = Browser::new();
        browser.jar.add_cookie_str(
            &format!("{}={}; Path=/", atsso::sso::SESSION_COOKIE, established.cookie_value),
            &Url::parse(&self.base).unwrap(),
        );
        browser
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// A cookie-keeping HTTP client that does not follow redirects (tests inspect each hop).
pub struct Browser {
    pub jar: Arc<Jar>,
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).redirect(Policy::none()).build().unwrap();
        Self { jar, http }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.unwrap()
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location header; status {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value of query parameter `name` in an absolute or relative URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = Url::parse(url).or_else(|_| Url::parse(&format!("http://x{url}"))).unwrap();
    parsed.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The value of a hidden input in a page.
pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let pattern = format!(r#"name="{name}"[^>]*value="([^"]*)""#);
    let re = regex::Regex::new(&pattern).unwrap();
    if let Some(c) = re.captures(html) {
        return Some(c[1].to_owned());
    }
    let pattern = format!(r#"value="([^"]*)"[^>]*name="{name}""#);
    regex::Regex::new(&pattern).unwrap().captures(html).map(|c| c[1].to_owned())
}

/// An openidconnect-crate HTTP client that does not follow redirects (as the crate requires).
pub fn rp_http() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// A back-channel logout receiver: records every `logout_token`; answers with `status`, or
/// never answers when `hang` is set.
pub struct Receiver {
    pub uri: String,
    pub tokens: Arc<Mutex<Vec<String>>>,
}

pub async fn receiver(status: u16, hang: bool) -> Receiver {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let recorded = tokens.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let recorded = recorded.clone();
        App::new().route(
            "/backchannel",
            web::post().to(move |form: web::Form<std::collections::HashMap<String, String>>| {
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(form.get("logout_token").cloned().unwrap_or_default());
                    if hang {
                        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    }
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
    Receiver { uri: format!("http://127.0.0.1:{port}/backchannel"), tokens }
}

/// Polls `check` every 50 ms until it yields `Some`, failing the test after `within`: how a test
/// waits for what a background task writes (a bound, never luck).
pub async fn eventually<T, F>(within: std::time::Duration, what: &str, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting after {within:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
