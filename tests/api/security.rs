//! What an attacker tries, refused: a leaked token as a logout hint, planted CSRF cookies,
//! spoofed forwarded addresses, an argon2 flood, floods of expensive requests; and the
//! security headers of every page.
use openidconnect::OAuth2TokenResponse;
use serde_json::Value;

use super::{
    helpers::{hidden_input, location, spawn_app, spawn_app_with, Browser, RegisteredClient, TestApp},
    rp::Rp,
};

const ALICE: &str = "did:plc:alice0000000000000000000";
const MALLORY: &str = "did:plc:mallory00000000000000000";

struct SignedIn {
    rp: Rp,
    tokens: openidconnect::core::CoreTokenResponse,
    id_token: String,
}

async fn sign_in(app: &TestApp, browser: &Browser, registered: &RegisteredClient) -> SignedIn {
    let rp = Rp::discover(app, registered).await;
    let pending = rp.start(&["profile"]);
    let code = rp.authorize(app, browser, &pending).await;
    let tokens = rp.exchange(&code, pending.verifier).await.unwrap();
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap().to_string();
    SignedIn { rp, tokens, id_token }
}

fn urlenc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Item 2: a leaked ID token lets an attacker's browser end only its own session, never the
/// victim's; access and logout tokens are not hints at all.
#[tokio::test]
async fn a_leaked_token_never_ends_the_victims_session() {
    let app = spawn_app().await; // RS256 access tokens: the default
    let registered = app.register("notes", false, true).await;
    let victim = app.browser_with_session(ALICE, "alice.test").await;
    let alice = sign_in(&app, &victim, &registered).await;

    for attacker in [Browser::new(), app.browser_with_session(MALLORY, "mallory.test").await] {
        let page = attacker.get(&format!("{}?id_token_hint={}", app.url("/oauth2/end_session"), alice.id_token)).await;
        assert_eq!(page.status(), 200, "a confirmation page");
        let html = page.text().await.unwrap();
        let request_id = hidden_input(&html, "logout_request_id").unwrap();
        let csrf = hidden_input(&html, "csrf_token").unwrap();
        let confirmed = attacker
            .post_form(&app.url("/logout"), &[("logout_request_id", &request_id), ("csrf_token", &csrf), ("decision", "logout")])
            .await;
        assert!(confirmed.status() == 200 || confirmed.status() == 302, "{}", confirmed.status());
        assert!(alice.rp.userinfo(alice.tokens.access_token()).await.is_ok(), "the victim's session survives");
    }
    assert!(alice.rp.refresh(alice.tokens.refresh_token().unwrap()).await.is_ok(), "and so do its grants");

    // An access token (an RS256 JWT signed by us, seen by every resource server) is no hint.
    let access_token = alice.tokens.access_token().secret().clone();
    let response = Browser::new().get(&format!("{}?id_token_hint={access_token}", app.url("/oauth2/end_session"))).await;
    assert_eq!(response.status(), 400);
    // Nor is a logout token.
    let logout_token = atsso::sso::backchannel::logout_token(&app.state, &registered.client.client_id, ALICE, "sid").unwrap();
    let response = Browser::new().get(&format!("{}?id_token_hint={logout_token}", app.url("/oauth2/end_session"))).await;
    assert_eq!(response.status(), 400);

    // The victim's own browser with the hint still signs out at once.
    let url = format!(
        "{}?id_token_hint={}&post_logout_redirect_uri={}",
        app.url("/oauth2/end_session"),
        alice.id_token,
        urlenc("http://127.0.0.1:9/notes/logged-out")
    );
    assert_eq!(victim.get(&url).await.status(), 302);
    assert!(alice.rp.userinfo(alice.tokens.access_token()).await.is_err());
}

/// Item 3: CSRF tokens are ours and bound to the browser and its session.
#[tokio::test]
async fn csrf_tokens_chosen_by_the_client_are_refused() {
    let app = spawn_app_with(|c| c.admin_dids = vec![ALICE.into()]).await;
    let forged = "A".repeat(43);
    let planted = Browser::new();
    let base = url::Url::parse(&app.base).unwrap();
    for name in ["atsso_csrf", "atsso_browser"] {
        planted.jar.add_cookie_str(&format!("{name}={forged}; Path=/"), &base);
    }
    planted.jar.add_cookie_str(&format!("atsso_browser={}.{forged}; Path=/", "B".repeat(32)), &base);
    let response = planted.post_form(&app.url("/login"), &[("handle", "alice.test"), ("csrf_token", &forged)]).await;
    assert_eq!(response.status(), 400, "login CSRF refused");
    assert!(response.text().await.unwrap().contains("The form expired"));

    // An admin whose browser got a planted cookie: no client is created.
    let admin = app.browser_with_session(ALICE, "alice.test").await;
    admin.jar.add_cookie_str(&format!("atsso_csrf={forged}; Path=/"), &base);
    admin.jar.add_cookie_str(&format!("atsso_browser={}.{forged}; Path=/", "B".repeat(32)), &base);
    let response = admin
        .post_form(
            &app.url("/admin/clients"),
            &[
                ("name", "evil"),
                ("redirect_uris", "https://evil.example/cb"),
                ("scope", "openid"),
                ("first_party", "on"),
                ("csrf_token", &forged),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(app.state.store.list_clients().await.unwrap().iter().all(|c| c.name != "evil"), "nothing created");

    // A token we issued is bound to its session: after signing in as someone else it is void.
    let browser = Browser::new();
    let html = browser.get(&app.url("/login")).await.text().await.unwrap();
    let anonymous_token = hidden_input(&html, "csrf_token").unwrap();
    let established =
        atsso::sso::establish_session(&app.state, &atsso::store::users::UserProfile { did: MALLORY.into(), ..Default::default() })
            .await
            .unwrap();
    browser.jar.add_cookie_str(&format!("atsso_session={}; Path=/", established.cookie_value), &base);
    let response = browser.post_form(&app.url("/logout"), &[("csrf_token", &anonymous_token), ("decision", "logout")]).await;
    assert_eq!(response.status(), 400, "a token of another session");
    let html = browser.get(&app.url("/logout")).await.text().await.unwrap();
    let token = hidden_input(&html, "csrf_token").unwrap();
    let response = browser.post_form(&app.url("/logout"), &[("csrf_token", &token), ("decision", "logout")]).await;
    assert!(response.status().is_success() || response.status().is_redirection());
}

/// Item 3: on https every cookie is `__Host-` (Secure, Path=/, no Domain).
#[tokio::test]
async fn cookies_are_host_prefixed_on_https() {
    let app = spawn_app_with(|c| c.public_url = url::Url::parse("https://sso.example").unwrap()).await;
    let response = Browser::new().get(&app.url("/login")).await;
    let cookies: Vec<String> = response.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    assert!(!cookies.is_empty());
    for cookie in &cookies {
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        assert!(cookie.contains("Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"), "{cookie}");
    }
    assert_eq!(atsso::sso::session_cookie_name(&app.state.config), "__Host-atsso_session");
}

/// Item 8: `X-Forwarded-For` counts only from a trusted proxy.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    for (trusted, expected) in [(false, "127.0.0.1"), (true, "6.6.6.6")] {
        let admin = super::admin::spawn_admin_app_with(|c| {
            if trusted {
                c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            }
        })
        .await;
        let response = reqwest::Client::new()
            .post(admin.app.url("/api/admin/clients"))
            .bearer_auth(&admin.token)
            .header("x-forwarded-for", "6.6.6.6")
            .json(&serde_json::json!({ "name": "spoof", "redirect_uris": ["https://app.example/cb"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let audit: Value = reqwest::Client::new()
            .get(admin.app.url("/api/admin/audit"))
            .bearer_auth(&admin.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(audit["items"][0]["remote_addr"], expected, "trusted proxy: {trusted}");
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or_else(|| panic!("{name} missing on {}", response.url()))
}

/// Item 9: every HTML response carries the full set of security headers.
#[tokio::test]
async fn every_page_carries_the_security_headers() {
    for https in [false, true] {
        let app = if https {
            spawn_app_with(|c| c.public_url = url::Url::parse("https://sso.example").unwrap()).await
        } else {
            spawn_app().await
        };
        let registered = app.register("notes", false, false).await;
        // Built by hand: on https the issuer is not where the test server listens.
        let authorize = format!(
            "{}?response_type=code&scope=openid%20profile&client_id={}&redirect_uri={}&state=s&nonce=n&code_challenge={}&code_challenge_method=S256",
            app.url("/oauth2/authorize"),
            registered.client.client_id,
            urlenc(&registered.redirect_uri),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let anonymous = Browser::new();
        let login_path = location(&anonymous.get(&authorize).await);
        let signed_in = app.browser_with_session(ALICE, "alice.test").await;
        let consent_path = location(&signed_in.get(&authorize).await);
        let pages = [
            anonymous.get(&app.url(&login_path)).await,
            anonymous.get(&app.url("/login")).await,
            // (on https the test's session cookie is not sent over plain http: a login page)
            signed_in.get(&app.url(&consent_path)).await,
            signed_in.get(&app.url("/logout")).await,
            anonymous.get(&app.url("/oauth2/authorize?client_id=nope")).await,
            anonymous.get(&app.url("/admin")).await,
            anonymous.get(&app.url("/no-such-page")).await,
        ];
        for page in &pages {
            let csp = header(page, "content-security-policy");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            let form_action: Vec<&str> =
                csp.split(';').map(str::trim).find_map(|d| d.strip_prefix("form-action ")).unwrap().split(' ').collect();
            assert_eq!(form_action[0], "'self'", "{csp}");
            assert!(!form_action.contains(&"http:"), "no plain-http form targets: {csp}");
            // Only the login form may lead to any https origin (the user's own PDS).
            let is_login = page.url().path() == "/login";
            assert!(is_login || !form_action.contains(&"https:"), "{}: {csp}", page.url());
            assert_eq!(header(page, "x-content-type-options"), "nosniff");
            assert_eq!(header(page, "referrer-policy"), "no-referrer");
            assert_eq!(header(page, "cache-control"), "no-store");
            assert_eq!(header(page, "x-frame-options"), "DENY");
            assert_eq!(page.headers().get("strict-transport-security").is_some(), https, "{}", page.url());
        }
        if !https {
            // The consent page may post to us and lead back to the app's redirect URI, nowhere else.
            assert!(consent_path.starts_with("/consent"), "{consent_path}");
            let consent_csp = header(&pages[2], "content-security-policy");
            assert!(consent_csp.contains("form-action 'self' http://127.0.0.1:9"), "{consent_csp}");
        }
    }
}

/// Item 4: a flood of wrong secrets against one client is cut off and does not queue another
/// client's first correct request behind it.
#[tokio::test]
async fn an_argon2_flood_is_cut_off_and_other_clients_still_get_in() {
    let app = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let victim = app.register("victim", false, true).await;
    let other = app.register("other", false, true).await;
    let http = reqwest::Client::new();
    let token_url = app.url("/oauth2/token");
    let flood: Vec<_> = (0..150)
        .map(|i| {
            let http = http.clone();
            let url = token_url.clone();
            let client_id = victim.client.client_id.clone();
            tokio::spawn(async move {
                http.post(url)
                    .header("x-forwarded-for", "6.6.6.6")
                    .basic_auth(client_id, Some(format!("wrong-{}", i % 7)))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Another client's first correct request, from another address, during the flood.
    let response = http
        .post(&token_url)
        .header("x-forwarded-for", "198.51.100.7")
        .basic_auth(&other.client.client_id, other.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "unknown")])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "authenticated, then the grant is judged: {body}");

    let mut statuses = std::collections::BTreeMap::new();
    for request in flood {
        let response = request.await.unwrap();
        let status = response.status().as_u16();
        if status == 429 || status == 503 {
            let retry_after: u64 = response.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
            assert!(retry_after >= 1);
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].is_string());
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    let refused_early = statuses.get(&429).copied().unwrap_or(0) + statuses.get(&503).copied().unwrap_or(0);
    assert!(refused_early >= 100, "the flood is cut off: {statuses:?}");
    assert!(app.state.secrets.argon2_runs() <= 25, "argon2 ran {} times", app.state.secrets.argon2_runs());

    // Wrong secrets keep coming from the flooding address: it is refused within the limit...
    let mut limited = false;
    for _ in 0..20 {
        let response = http
            .post(&token_url)
            .header("x-forwarded-for", "6.6.6.6")
            .basic_auth(&victim.client.client_id, Some("wrong"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "failures from one address are limited");
    // ...for every client, even with a correct secret.
    let response = http
        .post(&token_url)
        .header("x-forwarded-for", "6.6.6.6")
        .basic_auth(&other.client.client_id, other.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

/// Abuse limits: expensive entry points answer 429 with Retry-After once over their limit;
/// successes at the token endpoint are never counted.
#[tokio::test]
async fn expensive_entry_points_are_rate_limited() {
    let app = spawn_app_with(|c| {
        c.rate_limits.login = 3;
        c.rate_limits.authorize = 4;
        c.rate_limits.client_auth_failures = 2;
    })
    .await;
    let browser = Browser::new();
    let html = browser.get(&app.url("/login")).await.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        // `invalid` fails at the syntax check, before any fetch: the limit counts the attempt.
        let response = browser.post_form(&app.url("/login"), &[("handle", "in valid"), ("csrf_token", &csrf)]).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().get("retry-after").is_some());
            assert!(response.text().await.unwrap().contains("Too many"));
        }
    }
    assert_eq!(statuses, [400, 400, 400, 429, 429]);

    let registered = app.register("notes", false, true).await;
    let rp = Rp::discover(&app, &registered).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(Browser::new().get(&rp.start(&["profile"]).url).await.status().as_u16());
    }
    assert_eq!(statuses, [302, 302, 302, 302, 429, 429]);

    // Many successful grants for one client: never limited.
    let signed_in = app.browser_with_session(ALICE, "alice.test").await;
    for _ in 0..6 {
        let pending = rp.start(&["profile"]);
        let code = rp.authorize(&app, &signed_in, &pending).await;
        rp.exchange(&code, pending.verifier).await.unwrap();
    }
}

/// Abuse limits: wrong admin tokens from one address are limited, then every token from there.
#[tokio::test]
async fn wrong_admin_tokens_are_limited_per_address() {
    let admin = super::admin::spawn_admin_app_with(|c| c.rate_limits.admin_auth_failures = 3).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = http.get(admin.app.url("/api/admin/clients")).bearer_auth("atsso_nope.wrong").send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429], "blocked after more than 3 failures");
    let response = http.get(admin.app.url("/api/admin/clients")).bearer_auth(&admin.token).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
}
