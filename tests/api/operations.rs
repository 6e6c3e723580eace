//! The operator's view: /metrics (hidden unless configured), /readyz, request ids, JSON logs and
//! graceful shutdown of the real binary.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use atsso::config::Secret;

use super::{
    helpers::{eventually, spawn_app, spawn_app_with, Browser, TestApp},
    rp::Rp,
};

const METRICS_TOKEN: &str = "metrics-token-0123456789";

async fn get_metrics(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// One sample of the Prometheus text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse_exposition(text: &str) -> Vec<Sample> {
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let labels = label.captures_iter(body).map(|c| (c[1].to_owned(), c[2].to_owned())).collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.push((name, labels, value));
    }
    samples
}

/// The value of the series `name` whose labels include `labels` (summed over the others); 0
/// when absent.
fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let response = get_metrics(&app.url("/metrics"), Some(METRICS_TOKEN)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    parse_exposition(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_are_not_served_by_default() {
    let app = spawn_app().await;
    assert_eq!(get_metrics(&app.url("/metrics"), None).await.status(), 404);
    assert_eq!(get_metrics(&app.url("/metrics"), Some(METRICS_TOKEN)).await.status(), 404);
}

#[tokio::test]
async fn metrics_on_the_main_listener_need_the_token() {
    let app = spawn_app_with(|c| c.metrics_token = Some(Secret::new(METRICS_TOKEN))).await;
    assert_eq!(get_metrics(&app.url("/metrics"), None).await.status(), 404);
    assert_eq!(get_metrics(&app.url("/metrics"), Some("metrics-token-0123456780")).await.status(), 404);
    assert_eq!(get_metrics(&app.url("/metrics"), Some("metrics-token")).await.status(), 404);
    let samples = scrape(&app).await;
    assert!(value_of(&samples, "atsso_db_pool_max_connections", &[]) >= 1.0, "pool gauges are sampled at scrape");
    assert!(samples.iter().any(|(n, l, _)| n == "atsso_db_pool_connections" && l.get("state").map(String::as_str) == Some("idle")));
}

#[tokio::test]
async fn metrics_on_their_own_listener() {
    let app = spawn_app_with(|c| c.metrics_bind = Some("127.0.0.1:0".into())).await;
    let port = app.metrics_port.expect("a metrics listener");
    let response = get_metrics(&format!("http://127.0.0.1:{port}/metrics"), None).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("atsso_db_pool_max_connections"));
    assert_eq!(get_metrics(&format!("http://127.0.0.1:{port}/healthz"), None).await.status(), 404, "metrics only");
    assert_eq!(get_metrics(&app.url("/metrics"), None).await.status(), 404, "no token: not on the main listener");
}

#[tokio::test]
async fn a_token_request_shows_in_the_series() {
    let app = spawn_app_with(|c| c.metrics_token = Some(Secret::new(METRICS_TOKEN))).await;
    let before = scrape(&app).await;
    let code_grants = [("grant_type", "authorization_code")];
    let token_route = [("route", "/oauth2/token"), ("method", "POST"), ("status", "200")];

    let registered = app.register("metrics-app", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let browser = app.browser_with_session("did:plc:metricsuser0000000000000", "metrics.test").await;
    let pending = rp.start(&["openid"]);
    let code = rp.authorize(&app, &browser, &pending).await;
    rp.exchange(&code, pending.verifier).await.unwrap();
    assert_eq!(browser.get(&app.url("/no/such/page")).await.status(), 404);

    let after = scrape(&app).await;
    // The recorder is shared by every app of this test process: at least our requests count.
    assert!(
        value_of(&after, "atsso_tokens_issued_total", &code_grants) >= value_of(&before, "atsso_tokens_issued_total", &code_grants) + 1.0
    );
    assert!(
        value_of(&after, "atsso_http_requests_total", &token_route) >= value_of(&before, "atsso_http_requests_total", &token_route) + 1.0
    );
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert!(value_of(&after, "atsso_http_requests_total", &unmatched) >= 1.0, "unknown paths are one series");
    assert!(!after.iter().any(|(_, l, _)| l.get("route").is_some_and(|r| r.contains("no/such"))), "raw paths are never labels");
    let count = value_of(&after, "atsso_http_request_duration_seconds_count", &[("route", "/oauth2/token")]);
    assert!(count >= 1.0, "the latency histogram has the token request");
    assert!(after.iter().any(|(n, l, _)| n == "atsso_http_request_duration_seconds_bucket" && l.get("le").is_some()));
}

#[tokio::test]
async fn readyz_needs_the_database() {
    let app = spawn_app().await;
    let response = Browser::new().get(&app.url("/readyz")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), serde_json::json!({ "status": "ready" }));

    app.state.store.close().await.unwrap();
    let started = Instant::now();
    let response = Browser::new().get(&app.url("/readyz")).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "database unreachable");
    assert!(started.elapsed() < Duration::from_secs(5), "the readiness check is bounded");
    // Liveness is not readiness.
    assert_eq!(Browser::new().get(&app.url("/healthz")).await.status(), 200);
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers().get("x-request-id").expect("every response has X-Request-Id").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn request_ids_are_generated_and_not_taken_from_strangers() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let first = request_id(&http.get(app.url("/healthz")).send().await.unwrap());
    let second = request_id(&http.get(app.url("/healthz")).send().await.unwrap());
    assert_ne!(first, second);
    assert!(first.len() >= 16 && first.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // 127.0.0.1 is not a trusted proxy here: its header is ignored.
    let response = http.get(app.url("/healthz")).header("X-Request-Id", "from-a-stranger").send().await.unwrap();
    assert_ne!(request_id(&response), "from-a-stranger");
}

#[tokio::test]
async fn request_ids_from_trusted_proxies_are_kept_and_shown_on_error_pages() {
    let app = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let http = reqwest::Client::new();
    let response = http.get(app.url("/healthz")).header("X-Request-Id", "lb-4711.a_b").send().await.unwrap();
    assert_eq!(request_id(&response), "lb-4711.a_b");
    for insane in ["has space", "quote\"d", &"x".repeat(65)] {
        let response = http.get(app.url("/healthz")).header("X-Request-Id", insane).send().await.unwrap();
        assert_ne!(request_id(&response), insane, "{insane:?} is replaced");
    }
    let response = http.get(app.url("/no/such/page")).header("X-Request-Id", "lb-error-page").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(request_id(&response), "lb-error-page");
    assert!(response.text().await.unwrap().contains("Request id: <code>lb-error-page</code>"));
}

/// The built `atsso` binary on a temp data directory, its stderr collected line by line.
struct Binary {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Binary {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_atsso"));
        command
            .arg("serve")
            .env_clear()
            .env("ATSSO_BIND", "127.0.0.1:0")
            .env("ATSSO_DATA_DIR", dir.path())
            .env("ATSSO_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        Self { child, lines, _dir: dir }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The port from the "listening" log line (the binary binds port 0).
    async fn port(&self) -> u16 {
        eventually(Duration::from_secs(60), "the binary logs that it listens", || async {
            self.lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|line| (line["message"] == "atsso is listening").then(|| line["port"].as_u64().unwrap() as u16))
        })
        .await
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of our own child process and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the process to exit, at most `within`.
    async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the binary did not exit within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let mut binary = Binary::start(&[("ATSSO_LOG", "info,atsso=debug")]);
    let port = binary.port().await;
    let response = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();
    let id = request_id(&response);
    binary.signal(libc::SIGTERM);
    assert!(binary.exit_status(Duration::from_secs(30)).await.success());

    let lines = binary.lines();
    let objects: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect();
    assert!(objects.iter().all(|o| o["level"].is_string() && o["timestamp"].is_string()));
    let served = objects.iter().find(|o| o["message"] == "served").unwrap_or_else(|| panic!("no line for the request in {lines:#?}"));
    assert_eq!(served["spans"][0]["request_id"], id.as_str(), "the request's line carries its id");
}

/// SIGTERM while a request is in flight: the request completes, the process exits 0 in time.
#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let mut binary = Binary::start(&[]);
    let port = binary.port().await;
    // An in-flight request: headers sent, the body held back until after the signal. With
    // `Expect: 100-continue` the server says when the handler is waiting for the body.
    let body = "grant_type=authorization_code&code=nope&client_id=nobody";
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut continue_line = [0u8; 25];
    stream.read_exact(&mut continue_line).unwrap();
    assert!(continue_line.starts_with(b"HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&continue_line));

    binary.signal(libc::SIGTERM);
    // The server stops accepting: new connections are refused (or closed unanswered).
    eventually(Duration::from_secs(10), "the listener closes", || async {
        reqwest::Client::new().get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err().then_some(())
    })
    .await;
    assert!(binary.child.try_wait().unwrap().is_none(), "still finishing the in-flight request");
    // A slow client: the request stays in flight for a while after the listener has closed
    // (longer than a stop that does not wait would keep it).
    tokio::time::sleep(Duration::from_secs(3)).await;
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status_line = response.lines().find(|l| l.starts_with("HTTP/1.1 ") && !l.contains(" 100 ")).unwrap_or_default();
    assert!(status_line.contains(" 401 ") || status_line.contains(" 400 "), "the in-flight request was answered: {response:?}");

    let status = binary.exit_status(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(binary.lines().iter().any(|l| l.contains("queued writes committed")), "{:#?}", binary.lines());
}
