//! The Next.js example apps end to end, in headless Chromium, beside atsso and a REAL PDS:
//! examples/nextjs-sso (app A: a public client doing PKCE by hand, tokens in cookies) and
//! examples/nextjs-authjs (app B: Auth.js v5, a confidential client), each built with
//! `next build` (scripts/build-examples.sh) and run with `next start`. tests/browser/nextjs.mjs
//! drives the browser: sign-in at app A through the PDS, SSO at app B, refreshes, refused logout
//! tokens, single logout from app A reaching app B by back-channel, refused refreshes, and the
//! handle asked again; app A also writes a record to the user's repository through atsso's XRPC
//! proxy. This side checks what atsso recorded.
//!
//! Runs when ATSSO_E2E=1 (scripts/test.sh sets it after installing the harnesses).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "support/real_pds.rs"]
mod real_pds;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use atsso::oidc::clients::{self, NewClient};
use real_pds::{configure, enabled, free_port, repo, start_network};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A `next start` process group, killed on drop; its output goes to a log file.
struct NextApp {
    child: Child,
    /// Where it listens (127.0.0.1).
    server: String,
    log: PathBuf,
}

impl Drop for NextApp {
    fn drop(&mut self) {
        // `next start` may fork workers: end the whole process group.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

impl NextApp {
    fn start(dir: &Path, port: u16, env: &[(&str, String)], logs: &Path) -> NextApp {
        use std::os::unix::process::CommandExt;
        assert!(
            dir.join(".next/BUILD_ID").exists(),
            "{} is not built: run scripts/build-examples.sh (scripts/test.sh does)",
            dir.display()
        );
        let log = logs.join(format!("{}.log", dir.file_name().unwrap().to_string_lossy()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(dir.join("node_modules/.bin/next"))
            .args(["start", "-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start next");
        NextApp { child, server: format!("http://127.0.0.1:{port}"), log }
    }

    /// Waits (bounded) until the app answers HTTP.
    async fn wait_until_up(&self) {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let url = format!("{}/api/auth/backchannel-logout", self.server);
        let log = self.log.clone();
        helpers::eventually(Duration::from_secs(60), &format!("{} answering ({})", self.server, log.display()), || {
            let request = http.get(&url).send();
            async move { request.await.ok().map(|_| ()) }
        })
        .await;
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `app` is the origin the browser uses; `server` the one atsso delivers back-channel logouts to.
fn client(name: &str, app: &str, server: &str, redirect_path: &str, public: bool) -> NewClient {
    NewClient {
        name: name.into(),
        redirect_uris: vec![format!("{app}{redirect_path}")],
        post_logout_redirect_uris: vec![format!("{app}/")],
        backchannel_logout_uri: Some(format!("{server}/api/auth/backchannel-logout")),
        public,
        first_party: true, // no consent page at atsso: the PDS's consent is the one shown
        // app A's "Write a note" (through the XRPC proxy) needs this one
        atproto_scopes: vec!["repo:com.example.note?action=create".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn nextjs_examples_sign_in_sso_refresh_and_single_logout_in_chromium() {
    if !enabled() {
        return;
    }
    let network = start_network(None);
    let app = helpers::spawn_app_on(TcpListener::bind("127.0.0.1:0").unwrap(), |c| configure(c, &network)).await;
    let issuer = app.state.config.issuer();
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, server_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    // Auth.js builds its callback URL from what Next.js reports, and Next.js reports a loopback
    // IP as `localhost`: app B is `localhost` to the browser (its README says so).
    let base_b = format!("http://localhost:{port_b}");
    let (client_a, _) = clients::register(&app.state.store, client("Notes", &base_a, &base_a, "/api/auth/callback", true)).await.unwrap();
    let (client_b, secret_b) =
        clients::register(&app.state.store, client("Photos", &base_b, &server_b, "/api/auth/callback/atsso", false)).await.unwrap();
    let secret_b = secret_b.unwrap();
    let auth_secret = atsso::crypto::random_token(32);

    let logs = tempfile::tempdir().unwrap();
    let examples = repo().join("examples");
    let next_a = NextApp::start(
        &examples.join("nextjs-sso"),
        port_a,
        &[
            ("ATSSO_ISSUER", issuer.clone()),
            ("ATSSO_CLIENT_ID", client_a.client_id.clone()),
            ("APP_URL", base_a.clone()),
            ("ATSSO_ATPROTO_SCOPES", "atproto:repo:com.example.note?action=create".into()),
        ],
        logs.path(),
    );
    let next_b = NextApp::start(
        &examples.join("nextjs-authjs"),
        port_b,
        &[
            ("AUTH_SECRET", auth_secret.clone()),
            ("AUTH_URL", base_b.clone()),
            ("AUTH_ATSSO_ISSUER", issuer.clone()),
            ("AUTH_ATSSO_ID", client_b.client_id.clone()),
            ("AUTH_ATSSO_SECRET", secret_b.clone()),
        ],
        logs.path(),
    );
    next_a.wait_until_up().await;
    next_b.wait_until_up().await;

    let shots = std::env::var("ATSSO_SCREENSHOT_DIR").map(PathBuf::from).unwrap_or_else(|_| repo().join("target/screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = tokio::process::Command::new("node")
        .arg(repo().join("tests/browser/nextjs.mjs"))
        .envs([
            ("APP_A", base_a.as_str()),
            ("APP_B", base_b.as_str()),
            ("APP_B_SERVER", server_b.as_str()),
            ("ATSSO_BASE", issuer.as_str()),
            ("PDS_URL", network.pds_url.as_str()),
            ("HANDLE", network.handle.as_str()),
            ("PASSWORD", "alice-pass"),
            ("DID", network.did.as_str()),
            ("APP_B_CLIENT_ID", client_b.client_id.as_str()),
            ("APP_B_CLIENT_SECRET", secret_b.as_str()),
            ("APP_B_AUTH_SECRET", auth_secret.as_str()),
        ])
        .env("SHOT_DIR", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = Some(browser.stdin.take().unwrap());
    let mut stdout = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut stderr = browser.stderr.take().unwrap();
    let stderr_text = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    // The browser's story, answering its one question: logout tokens atsso signed, for the test.
    let story = async {
        let mut sid = None;
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(session) = line.strip_prefix("SID ") {
                let state = &app.state;
                let tokens = json!({
                    // genuine, for a session nobody holds: accepted once, then a replay
                    "replayable": atsso::sso::backchannel::logout_token(state, &client_b.client_id, &network.did, "no-such-session").unwrap(),
                    // genuine and for the real session, but addressed to app A
                    "foreign": atsso::sso::backchannel::logout_token(state, &client_a.client_id, &network.did, session).unwrap(),
                });
                let mut pipe = stdin.take().expect("one question");
                pipe.write_all(format!("{tokens}\n").as_bytes()).await.unwrap();
                drop(pipe); // nothing more to say: the script sees EOF
                sid = Some(session.to_owned());
            } else if let Some(done) = line.strip_prefix("DONE ") {
                return Some((sid, serde_json::from_str::<Value>(done).unwrap()));
            }
        }
        None
    };
    let outcome = tokio::time::timeout(Duration::from_secs(240), story).await;
    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait()).await;
    if status.is_err() {
        let _ = browser.kill().await; // so that its stderr ends
    }
    let stderr = stderr_text.await.unwrap_or_default();
    let diagnostics = || format!("browser:\n{stderr}\n--- app A:\n{}\n--- app B:\n{}", next_a.output(), next_b.output());
    let Ok(Some((Some(sid), done))) = outcome else { panic!("the browser story did not finish: {outcome:?}\n{}", diagnostics()) };
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "browser exit {status:?}\n{}", diagnostics());
    eprintln!("{stderr}");
    eprintln!("browser: {done}");

    // What atsso recorded: the session is gone, both apps were told by back-channel, the
    // upstream grant was revoked at the PDS.
    assert!(app.state.store.live_session(&sid, atsso::clock::now()).await.unwrap().is_none(), "the atsso session ended");
    let store = &app.state.store;
    let (sid_ref, id_a, id_b) = (sid.as_str(), client_a.client_id.as_str(), client_b.client_id.as_str());
    let rows = helpers::eventually(Duration::from_secs(15), "back-channel deliveries and the upstream revocation", || async move {
        let rows = store.outbox_for_sid(sid_ref).await.unwrap();
        let delivered = |kind: &str, client: Option<&str>| {
            rows.iter().any(|r| r.kind == kind && r.client_id.as_deref() == client && r.status == "delivered")
        };
        (delivered("backchannel_logout", Some(id_a)) && delivered("backchannel_logout", Some(id_b)) && delivered("upstream_revoke", None))
            .then_some(rows)
    })
    .await;
    eprintln!("outbox for {sid}: {:?}", rows.iter().map(|r| (&r.kind, &r.client_id, &r.status)).collect::<Vec<_>>());
}
