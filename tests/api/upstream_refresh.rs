//! The upstream ATProto grant behind an SSO session: one refresh at a time however many requests
//! need it (the PDS's refresh token is single use), and tenant tokens that end with the grant.
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use openidconnect::OAuth2TokenResponse;
use serde_json::Value;

use super::{
    atproto_login::{app_with_mock, sign_in},
    helpers::{eventually, location, query_param, receiver, spawn_app_with, Browser, RegisteredClient, TestApp},
    mock_pds::MockPds,
    rp::Rp,
};

/// A confidential first-party tenant app with a back-channel logout URI.
async fn tenant(app: &TestApp, backchannel: &str) -> RegisteredClient {
    let redirect_uri = "http://127.0.0.1:9/tenant/callback".to_owned();
    let (client, secret) = atsso::oidc::clients::register(
        &app.state.store,
        atsso::oidc::clients::NewClient {
            name: "tenant".into(),
            redirect_uris: vec![redirect_uri.clone()],
            backchannel_logout_uri: Some(backchannel.into()),
            first_party: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    RegisteredClient { client, secret, redirect_uri }
}

/// Signs in through the mock PDS with an upstream access token that already needs a refresh
/// (it expires within the refresh margin); later tokens from the PDS live an hour.
async fn sign_in_needing_refresh(
    app: &TestApp,
    mock: &MockPds,
    rp: &Rp,
    browser: &Browser,
) -> (openidconnect::core::CoreTokenResponse, String) {
    mock.configure(|c| c.expires_in = 30);
    let signed_in = sign_in(app, rp, browser).await;
    mock.configure(|c| c.expires_in = 3600);
    signed_in
}

/// A tenant refresh-token grant sent as is: the status and the JSON body.
async fn tenant_refresh(app: &TestApp, registered: &RegisteredClient, refresh_token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&registered.client.client_id, registered.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> u16 {
    reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(access_token).send().await.unwrap().status().as_u16()
}

async fn session_live(app: &TestApp, sid: &str) -> bool {
    app.state.store.live_session(sid, atsso::clock::now()).await.unwrap().is_some()
}

#[tokio::test]
async fn concurrent_authorizations_share_one_upstream_refresh() {
    let (app, mock) = app_with_mock().await;
    let client = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &client).await;
    let browser = Browser::new();
    let (_tokens, sid) = sign_in_needing_refresh(&app, &mock, &rp, &browser).await;
    let version = app.state.store.upstream_session(&sid).await.unwrap().unwrap().version;
    // A slow refresh, so every request arrives while it is in flight.
    mock.refresh_behaviour(|b| b.delay = Duration::from_millis(300));

    // Ten silent authorizations at once (tabs, several apps' silent checks) in one browser session.
    let urls: Vec<String> = (0..10).map(|_| format!("{}&prompt=none", rp.start(&[]).url)).collect();
    let responses = join_all(urls.iter().map(|url| browser.get(url))).await;
    for response in &responses {
        let next = location(response);
        assert!(query_param(&next, "code").is_some(), "every authorization succeeds: {next}");
    }
    assert_eq!(mock.refresh_grants(), 1, "one refresh at the PDS: {:?}", mock.log_for("/oauth/token"));
    let row = app.state.store.upstream_session(&sid).await.unwrap().unwrap();
    assert!(!row.dead, "the session is still live upstream");
    assert_eq!(row.version, version + 1, "the winner's tokens were stored once");
    assert!(row.refresh_lease_owner.is_none() && row.refresh_lease_until.is_none(), "the lease was released");
    assert!(session_live(&app, &sid).await);

    // The stored tokens are the fresh ones: the next authorization needs no refresh.
    let response = browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert!(query_param(&location(&response), "code").is_some());
    assert_eq!(mock.refresh_grants(), 1);
}

#[tokio::test]
async fn two_nodes_sharing_the_database_refresh_once() {
    let (node_a, mock) = app_with_mock().await;
    // A second node on the same database with the same master key (a cluster).
    let master_key = std::fs::read_to_string(node_a._dir.path().join("master.key")).unwrap();
    let shared = node_a.state.config.clone();
    let node_b = spawn_app_with(|c| {
        c.database_url = shared.database_url.clone();
        c.master_key = Some(atsso::config::Secret::new(master_key.trim()));
        c.plc_directory_url = shared.plc_directory_url.clone();
        c.handle_resolver_url = shared.handle_resolver_url.clone();
        c.allow_insecure_loopback_upstream = true;
    })
    .await;
    let client = node_a.register("app", false, true).await;
    let rp = Rp::discover(&node_a, &client).await;
    let browser = Browser::new();
    let (_tokens, sid) = sign_in_needing_refresh(&node_a, &mock, &rp, &browser).await;
    mock.refresh_behaviour(|b| b.delay = Duration::from_millis(300));

    // The browser's requests land on both nodes at once (the cookie is the host's, not the port's).
    let urls: Vec<String> = (0..10)
        .map(|i| {
            let url = format!("{}&prompt=none", rp.start(&[]).url);
            if i % 2 == 0 {
                url
            } else {
                url.replace(&node_a.base, &node_b.base)
            }
        })
        .collect();
    assert!(urls.iter().any(|u| u.starts_with(&node_b.base)));
    let responses = join_all(urls.iter().map(|url| browser.get(url))).await;
    for response in &responses {
        let next = location(response);
        assert!(query_param(&next, "code").is_some(), "every authorization succeeds on either node: {next}");
    }
    assert_eq!(mock.refresh_grants(), 1, "one refresh at the PDS across both nodes");
    assert!(session_live(&node_a, &sid).await);
    assert!(!node_b.state.store.upstream_session(&sid).await.unwrap().unwrap().dead);
}

#[tokio::test]
async fn refused_upstream_refresh_ends_the_session_with_single_logout() {
    let (app, mock) = app_with_mock().await;
    let receiver = receiver(200, false).await;
    let registered = tenant(&app, &receiver.uri).await;
    let rp = Rp::discover(&app, &registered).await;
    let browser = Browser::new();
    let (tokens, sid) = sign_in_needing_refresh(&app, &mock, &rp, &browser).await;
    let access_token = tokens.access_token().secret().clone();
    assert_eq!(userinfo_status(&app, &access_token).await, 200);

    // The user revokes atsso at their PDS: its authorization server refuses the refresh token.
    mock.state.refresh_tokens_clear();
    let (status, body) = tenant_refresh(&app, &registered, tokens.refresh_token().unwrap().secret()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(mock.refresh_grants(), 1, "the upstream grant was refreshed first");

    // Single logout: the session ended, the tenant's tokens are dead, a logout token was sent.
    assert!(!session_live(&app, &sid).await, "the SSO session ended");
    assert_eq!(userinfo_status(&app, &access_token).await, 401, "the tenant's access token stopped working");
    let received = &receiver.tokens;
    let logout_token = eventually(Duration::from_secs(10), "a back-channel logout token delivered", || async move {
        received.lock().unwrap().first().cloned()
    })
    .await;
    let payload = logout_token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap()).unwrap();
    assert_eq!(claims["sid"], sid.as_str());
    let queued = app.state.store.outbox_for_sid(&sid).await.unwrap();
    let kinds: Vec<&str> = queued.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["backchannel_logout", "upstream_revoke"], "{queued:?}");
    assert!(app.state.store.upstream_session(&sid).await.unwrap().is_none(), "the upstream grant is forgotten");

    // The browser is signed out too.
    let response = browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert_eq!(query_param(&location(&response), "error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn transient_upstream_failure_keeps_the_session() {
    let (app, mock) = app_with_mock().await;
    let receiver = receiver(200, false).await;
    let registered = tenant(&app, &receiver.uri).await;
    let rp = Rp::discover(&app, &registered).await;
    let browser = Browser::new();
    let (tokens, sid) = sign_in_needing_refresh(&app, &mock, &rp, &browser).await;
    let refresh_token = tokens.refresh_token().unwrap().secret().clone();
    let version = app.state.store.upstream_session(&sid).await.unwrap().unwrap().version;

    // The PDS's authorization server is in trouble (503): try again later, nothing ends.
    mock.refresh_behaviour(|b| b.fail_status = Some(503));
    let (status, body) = tenant_refresh(&app, &registered, &refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert_eq!(mock.refresh_grants(), 1);
    assert!(session_live(&app, &sid).await, "the SSO session is kept");
    assert_eq!(userinfo_status(&app, tokens.access_token().secret()).await, 200, "the tenant's access token still works");
    let row = app.state.store.upstream_session(&sid).await.unwrap().unwrap();
    assert!(!row.dead && row.version == version, "the upstream grant is neither dead nor changed");
    assert!(row.refresh_lease_owner.is_none(), "the lease was released");
    // An authorization meanwhile does not end the session either.
    browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert!(session_live(&app, &sid).await);
    assert!(!app.state.store.upstream_session(&sid).await.unwrap().unwrap().dead);
    assert!(app.state.store.outbox_for_sid(&sid).await.unwrap().is_empty(), "no logout was sent");

    // Once the PDS is back, the same tenant refresh token works (it was not spent) and the
    // upstream grant is refreshed.
    mock.refresh_behaviour(|b| b.fail_status = None);
    let (status, body) = tenant_refresh(&app, &registered, &refresh_token).await;
    assert_eq!(status, 200, "{body}");
    let row = app.state.store.upstream_session(&sid).await.unwrap().unwrap();
    assert_eq!(row.version, version + 1);
    assert!(receiver.tokens.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_slow_refresh_makes_the_others_wait_then_give_up_softly() {
    let (app, mock) = app_with_mock().await;
    let receiver = receiver(200, false).await;
    let registered = tenant(&app, &receiver.uri).await;
    let rp = Rp::discover(&app, &registered).await;
    let browser = Browser::new();
    let (first, sid) = sign_in(&app, &rp, &browser).await;
    let second = {
        let pending = rp.start(&[]);
        let code = query_param(&location(&browser.get(&pending.url).await), "code").unwrap();
        rp.exchange(&code, pending.verifier).await.unwrap()
    };
    // The upstream access token expires; its refresh at the PDS takes longer than others wait.
    let row = app.state.store.upstream_session(&sid).await.unwrap().unwrap();
    assert!(app.state.store.swap_upstream_tokens(&sid, row.version, &row.tokens_sealed, Some(1), 1).await.unwrap());
    mock.refresh_behaviour(|b| b.delay = Duration::from_secs(4));

    let slow = {
        let (base, client_id, secret) = (app.base.clone(), registered.client.client_id.clone(), registered.secret.clone());
        let refresh_token = first.refresh_token().unwrap().secret().clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/oauth2/token"))
                .basic_auth(client_id, secret)
                .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let pds = &mock;
    eventually(Duration::from_secs(5), "the first refresh reached the PDS", || async move { (pds.refresh_grants() > 0).then_some(()) })
        .await;
    // Another app's refresh meanwhile waits for the first, then gives up: try again later.
    let started = Instant::now();
    let (status, body) = tenant_refresh(&app, &registered, second.refresh_token().unwrap().secret()).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    assert!(started.elapsed() >= Duration::from_secs(3), "it waited for the first refresh: {:?}", started.elapsed());
    assert!(!app.state.store.upstream_session(&sid).await.unwrap().unwrap().dead, "giving up marks nothing dead");

    // The first refresh completes; the waiter's next try uses its tokens.
    assert_eq!(slow.await.unwrap(), 200);
    let (status, body) = tenant_refresh(&app, &registered, second.refresh_token().unwrap().secret()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.refresh_grants(), 1, "one refresh at the PDS");
    assert!(session_live(&app, &sid).await);
}

#[tokio::test]
async fn requests_waiting_on_a_failed_refresh_do_not_retry_it_one_after_another() {
    let (app, mock) = app_with_mock().await;
    let client = app.register("app", false, true).await;
    let rp = Rp::discover(&app, &client).await;
    let browser = Browser::new();
    let (_tokens, sid) = sign_in_needing_refresh(&app, &mock, &rp, &browser).await;
    // The PDS's authorization server is slow and then fails.
    mock.refresh_behaviour(|b| {
        b.delay = Duration::from_millis(300);
        b.fail_status = Some(503);
    });
    let urls: Vec<String> = (0..10).map(|_| format!("{}&prompt=none", rp.start(&[]).url)).collect();
    let responses = join_all(urls.iter().map(|url| browser.get(url))).await;
    for response in &responses {
        assert_eq!(query_param(&location(response), "error").as_deref(), Some("login_required"), "not signed in for now");
    }
    assert_eq!(mock.refresh_grants(), 1, "the others took the failure as theirs instead of calling the PDS in turn");
    assert!(session_live(&app, &sid).await, "nothing ended");
    let row = app.state.store.upstream_session(&sid).await.unwrap().unwrap();
    assert!(!row.dead && row.refresh_lease_owner.is_none());

    // Back to normal: the next authorization refreshes and succeeds.
    mock.refresh_behaviour(|b| b.fail_status = None);
    let response = browser.get(&format!("{}&prompt=none", rp.start(&[]).url)).await;
    assert!(query_param(&location(&response), "code").is_some());
    assert_eq!(mock.refresh_grants(), 2);
}
