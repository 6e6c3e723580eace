//! Our pages render what people need. With ATSSO_SCREENSHOT_DIR set, each page is also saved as
//! a PNG (headless Chromium), light and dark, desktop and phone: `scripts/screenshots.sh`.
use super::helpers::{location, spawn_app, Browser};

const ALICE: &str = "did:plc:alice0000000000000000000";

#[tokio::test]
async fn login_consent_and_error_pages_render() {
    let app = spawn_app().await;
    let registered = app.register("Example Notes", false, false).await;
    let rp = super::rp::Rp::discover(&app, &registered).await;

    let anonymous = Browser::new();
    let next = location(&anonymous.get(&rp.start(&["profile", "email"]).url).await);
    let login = anonymous.get(&app.url(&next)).await;
    assert_eq!(login.status(), 200);
    assert!(login.headers().get_all("set-cookie").iter().any(|c| {
        let c = c.to_str().unwrap();
        c.starts_with("atsso_browser=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")
    }));
    let login_html = login.text().await.unwrap();
    assert!(login_html.contains("Example Notes"));
    assert!(login_html.contains(r#"name="handle""#) && login_html.contains("<label"));

    let browser = app.browser_with_session(ALICE, "alice.test").await;
    let next = location(&browser.get(&rp.start(&["profile", "email"]).url).await);
    let consent_html = browser.get(&app.url(&next)).await.text().await.unwrap();
    assert!(consent_html.contains(r#"<span class="app-name">Example Notes</span> wants to sign you in"#));
    assert!(consent_html.contains("@alice.test"));
    assert!(consent_html.contains("marked as verified only when your account's provider is one this service trusts"));

    let error = anonymous.get(&app.url("/oauth2/authorize?client_id=nope")).await;
    assert_eq!(error.status(), 400);
    let error_html = error.text().await.unwrap();
    assert!(error_html.contains("Unknown app"));

    if let Ok(dir) = std::env::var("ATSSO_SCREENSHOT_DIR") {
        let css = reqwest::get(app.url("/assets/style.css")).await.unwrap().text().await.unwrap();
        for (name, html) in [("login", &login_html), ("consent", &consent_html), ("error", &error_html)] {
            screenshot(&dir, name, html, &css);
        }
    }
}

fn screenshot(dir: &str, name: &str, html: &str, css: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let work = tempfile::tempdir().unwrap();
    let inline = html.replace(r#"<link rel="stylesheet" href="/assets/style.css">"#, &format!("<style>{css}</style>"));
    let page = work.path().join(format!("{name}.html"));
    std::fs::write(&page, inline).unwrap();
    for (suffix, size, dark) in [("", "1280,800", false), ("-phone", "390,844", false), ("-dark", "1280,800", true)] {
        let out = format!("{dir}/{name}{suffix}.png");
        let profile = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new("/usr/bin/chromium");
        command.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ]);
        command.arg(format!("--user-data-dir={}", profile.path().display()));
        command.arg(format!("--window-size={size}"));
        command.arg(format!("--screenshot={out}"));
        if dark {
            command.args(["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]);
        }
        command.arg(format!("file://{}", page.display()));
        let status = command.output().unwrap();
        assert!(std::path::Path::new(&out).exists(), "chromium failed: {}", String::from_utf8_lossy(&status.stderr));
    }
}
