//! ATProto OAuth client against a mock PDS/AS (tests/support/mock_pds.rs).

#[path = "support/mock_pds.rs"]
mod mock_pds;

use atsso::atproto::{AtprotoClient, AtprotoClientConfig, AtprotoError, CallbackParams, ClientMode, ClientSigningKey, PendingLogin};
use mock_pds::*;
use url::Url;

const SCOPE: &str = "atproto transition:generic transition:email";

fn config(mock: &MockPds, mode: ClientMode) -> AtprotoClientConfig {
    let public = match mode {
        ClientMode::Confidential => "https://sso.example.com",
        ClientMode::Loopback => "http://localhost:8080",
    };
    let mut cfg = AtprotoClientConfig::new(Url::parse(public).unwrap()).unwrap();
    cfg.mode = mode;
    cfg.scope = SCOPE.to_string();
    cfg.plc_directory_url = Url::parse(&format!("{}/plc", mock.base)).unwrap();
    cfg.handle_resolver_url = Some(Url::parse(&mock.base).unwrap());
    cfg.allow_insecure_loopback = true;
    cfg
}

/// A confidential client whose JWKS the mock trusts.
fn confidential(mock: &MockPds) -> AtprotoClient {
    let key = ClientSigningKey::generate("key-1").unwrap();
    let client = AtprotoClient::new(config(mock, ClientMode::Confidential), Some(key)).unwrap();
    let jwks = client.client_jwks();
    mock.configure(|c| c.client_jwks = Some(jwks));
    client
}

fn loopback(mock: &MockPds) -> AtprotoClient {
    mock.configure(|c| c.client_jwks = None);
    AtprotoClient::new(config(mock, ClientMode::Loopback), None).unwrap()
}

/// The user at the authorization page: follow the authorization URL, read the redirect.
async fn authorize(pending: &PendingLogin) -> CallbackParams {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http.get(&pending.authorization_url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "authorize answered {}", resp.status());
    let loc = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(format!("{}{}", loc.origin().ascii_serialization(), loc.path()), pending.redirect_uri);
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    CallbackParams {
        state: q.get("state").cloned(),
        code: q.get("code").cloned(),
        iss: q.get("iss").cloned(),
        error: q.get("error").cloned(),
        error_description: q.get("error_description").cloned(),
    }
}

/// Round-trip through JSON, as the caller stores it.
fn stored(p: &PendingLogin) -> PendingLogin {
    serde_json::from_str(&serde_json::to_string(p).unwrap()).unwrap()
}

#[tokio::test]
async fn happy_path_confidential() {
    let mock = MockPds::spawn().await;
    // The operator trusts this authorization server to vouch for email addresses.
    let key = ClientSigningKey::generate("key-1").unwrap();
    let mut cfg = config(&mock, ClientMode::Confidential);
    cfg.email_trusted_issuers = vec![mock.base.clone()];
    let client = AtprotoClient::new(cfg, Some(key)).unwrap();
    mock.configure(|c| c.client_jwks = Some(client.client_jwks()));

    let pending = client.start_login("@Alice.Test", &[]).await.unwrap();
    assert_eq!(pending.issuer, mock.base);
    assert_eq!(pending.expected_did.as_deref(), Some(ALICE_DID));
    assert_eq!(pending.handle.as_deref(), Some(ALICE_HANDLE));
    assert_eq!(pending.pds_url.as_deref(), Some(mock.base.as_str()));
    let auth_url = Url::parse(&pending.authorization_url).unwrap();
    assert_eq!(auth_url.path(), "/oauth/authorize");
    let q: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
    assert_eq!(q[0], ("client_id".into(), client.client_id()));
    assert!(q[1].1.starts_with("urn:ietf:params:oauth:request_uri:"));

    // PAR: first without nonce → 400 use_dpop_nonce; retry carried the AS nonce and a fresh,
    // valid client assertion.
    let par = mock.log_for("/oauth/par");
    assert_eq!(par.len(), 2, "{par:?}");
    assert_eq!((par[0].dpop_nonce.as_deref(), par[0].status), (None, 400));
    assert_eq!((par[1].dpop_nonce.as_deref(), par[1].status), (Some(AS_NONCE), 201));
    assert_eq!(par[1].client_auth.as_deref(), Some("private_key_jwt"));
    let f = &par[1].form;
    assert_eq!(f["client_id"], "https://sso.example.com/atproto/client-metadata.json");
    assert_eq!(f["redirect_uri"], "https://sso.example.com/atproto/callback");
    assert_eq!(f["scope"], SCOPE);
    assert_eq!(f["login_hint"], ALICE_HANDLE);
    assert_eq!(f["state"], pending.state);
    assert_eq!(f["code_challenge_method"], "S256");

    let params = authorize(&pending).await;
    let result = client.complete_login(&stored(&pending), &params).await.unwrap();
    let id = &result.identity;
    assert_eq!(id.did, ALICE_DID);
    assert_eq!(id.handle.as_deref(), Some(ALICE_HANDLE));
    assert_eq!(id.pds_url, mock.base);
    assert_eq!(id.issuer, mock.base);
    assert_eq!(id.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(
        id.avatar.as_deref().unwrap(),
        format!("{}/xrpc/com.atproto.sync.getBlob?did=did%3Aplc%3Aaliceaaaaaaaaaaaaaaaaaaa&cid=bafkreialiceavatar", mock.base)
    );
    assert_eq!(id.email.as_deref(), Some("alice@example.com"));
    assert_eq!(id.email_verified, Some(true));

    let s = &result.session;
    assert_eq!(s.sub, ALICE_DID);
    assert!(s.access_token.starts_with("at-"));
    assert!(s.refresh_token.as_deref().unwrap().starts_with("rt-"));
    assert!(s.expires_at.unwrap() > 3000);
    assert_eq!(s.scope, SCOPE);
    assert_eq!(s.dpop_private_jwk, pending.dpop_private_jwk);
    assert_eq!(s.token_endpoint, format!("{}/oauth/token", mock.base));
    assert_eq!(s.revocation_endpoint.as_deref(), Some(format!("{}/oauth/revoke", mock.base).as_str()));
    let dbg = format!("{s:?} {pending:?}");
    assert!(!dbg.contains(&s.access_token) && !dbg.contains(&pending.pkce_verifier), "secret in Debug");

    // The token request reused the cached nonce: no challenge there.
    let tok = mock.log_for("/oauth/token");
    assert_eq!(tok.len(), 1);
    assert_eq!((tok[0].dpop_nonce.as_deref(), tok[0].status), (Some(AS_NONCE), 200));
    assert_eq!(tok[0].client_auth.as_deref(), Some("private_key_jwt"));
}

#[tokio::test]
async fn happy_path_loopback() {
    let mock = MockPds::spawn().await;
    let client = loopback(&mock);
    assert!(client.client_id().starts_with("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fatproto%2Fcallback&scope="));
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    assert_eq!(pending.redirect_uri, "http://127.0.0.1:8080/atproto/callback");
    let par = mock.log_for("/oauth/par");
    assert_eq!(par.last().unwrap().client_auth.as_deref(), Some("none"));
    assert!(!par.last().unwrap().form.contains_key("client_assertion"));

    let params = authorize(&pending).await;
    let result = client.complete_login(&pending, &params).await.unwrap();
    assert_eq!(result.identity.did, ALICE_DID);
    assert_eq!(result.identity.handle.as_deref(), Some(ALICE_HANDLE));
    assert_eq!(mock.log_for("/oauth/token").last().unwrap().client_auth.as_deref(), Some("none"));
}

#[tokio::test]
async fn login_from_server_url_learns_did_from_sub() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    let pending = client.start_login(&mock.base, &[]).await.unwrap();
    assert_eq!(pending.expected_did, None);
    assert_eq!(pending.handle, None);
    assert!(!mock.log_for("/oauth/par")[1].form.contains_key("login_hint"));
    let params = authorize(&pending).await;
    let result = client.complete_login(&pending, &params).await.unwrap();
    assert_eq!(result.identity.did, ALICE_DID);
    assert_eq!(result.identity.handle.as_deref(), Some(ALICE_HANDLE));
}

#[tokio::test]
async fn nonce_challenge_at_pds_is_retried_with_nonce_and_ath() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let params = authorize(&pending).await;
    client.complete_login(&pending, &params).await.unwrap();
    // The PDS wants its own nonce: the first getRecord carried the AS nonce → 401 challenge
    // (WWW-Authenticate), the retry carried the PDS nonce (and a valid ath, checked by the mock).
    let rec = mock.log_for("/xrpc/com.atproto.repo.getRecord");
    assert_eq!(rec.len(), 2, "{rec:?}");
    assert_eq!((rec[0].dpop_nonce.as_deref(), rec[0].status), (Some(AS_NONCE), 401));
    assert_eq!((rec[1].dpop_nonce.as_deref(), rec[1].status), (Some(PDS_NONCE), 200));
    // getSession (email scope granted) reused the PDS nonce.
    let sess = mock.log_for("/xrpc/com.atproto.server.getSession");
    assert_eq!(sess.len(), 1);
    assert_eq!((sess[0].dpop_nonce.as_deref(), sess[0].status), (Some(PDS_NONCE), 200));
}

#[tokio::test]
async fn nonce_retry_happens_only_once() {
    // An AS that challenges every request: one retry, then the error is reported.
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    mock.configure(|c| c.always_challenge = true);
    let err = client.start_login(ALICE_HANDLE, &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::UpstreamError { status: 400, ref error, .. } if error == "use_dpop_nonce"), "{err:?}");
    let par = mock.log_for("/oauth/par");
    assert_eq!(par.len(), 2, "exactly one retry: {par:?}");
    assert_eq!(par[0].dpop_nonce, None);
    assert!(par[1].dpop_nonce.as_deref().unwrap().starts_with("rotating-"), "retry carried the new nonce");
}

#[tokio::test]
async fn token_endpoint_nonce_challenge_is_retried() {
    // A second client (empty nonce cache) completes the login: the token request is challenged
    // and retried with the nonce, and with a fresh client assertion (the mock refuses jti reuse).
    let mock = MockPds::spawn().await;
    let first = confidential(&mock);
    let pending = first.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let second = confidential_without_registering(&mock);
    mock.configure(|c| c.client_jwks = Some(second.client_jwks()));
    let params = authorize(&pending).await;
    second.complete_login(&pending, &params).await.unwrap();
    let tok = mock.log_for("/oauth/token");
    assert_eq!(tok.len(), 2, "{tok:?}");
    assert_eq!((tok[0].dpop_nonce.as_deref(), tok[0].status), (None, 400));
    assert_eq!((tok[1].dpop_nonce.as_deref(), tok[1].status), (Some(AS_NONCE), 200));
    assert_ne!(tok[0].form["client_assertion"], tok[1].form["client_assertion"]);
}

fn confidential_without_registering(mock: &MockPds) -> AtprotoClient {
    let key = ClientSigningKey::generate("key-2").unwrap();
    AtprotoClient::new(config(mock, ClientMode::Confidential), Some(key)).unwrap()
}

#[tokio::test]
async fn client_assertion_is_verified_by_the_mock() {
    // Sanity check of the mock: a key it does not know is refused at PAR.
    let mock = MockPds::spawn().await;
    let _registered = confidential(&mock);
    let stranger = confidential_without_registering(&mock);
    let err = stranger.start_login(ALICE_HANDLE, &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::UpstreamError { ref error, .. } if error == "invalid_client"), "{err:?}");
}

#[tokio::test]
async fn state_mismatch_refused() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let mut params = authorize(&pending).await;
    params.state = Some("not-the-state".into());
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    assert!(matches!(err, AtprotoError::StateMismatch), "{err:?}");
    params.state = None;
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    assert!(matches!(err, AtprotoError::StateMismatch), "{err:?}");
    assert!(mock.log_for("/oauth/token").is_empty(), "no code exchange on state mismatch");
}

#[tokio::test]
async fn iss_mismatch_refused() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    mock.configure(|c| c.wrong_iss = true);
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let params = authorize(&pending).await;
    assert_eq!(params.iss.as_deref(), Some("https://evil.example.com"));
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    assert!(matches!(err, AtprotoError::IssuerMismatch { .. }), "{err:?}");

    mock.configure(|c| {
        c.wrong_iss = false;
        c.omit_iss = true;
    });
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let params = authorize(&pending).await;
    assert_eq!(params.iss, None);
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    assert!(matches!(err, AtprotoError::IssuerMismatch { got: None, .. }), "{err:?}");
    assert!(mock.log_for("/oauth/token").is_empty());
}

#[tokio::test]
async fn sub_mismatch_refused() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    mock.add_account(MALLORY_DID, "mallory.test", did_doc(MALLORY_DID, "mallory.test", &mock.base));
    mock.configure(|c| c.sub_override = Some(MALLORY_DID.into()));
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let params = authorize(&pending).await;
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    match err {
        AtprotoError::SubjectMismatch { expected, got } => {
            assert_eq!(expected, ALICE_DID);
            assert_eq!(got, MALLORY_DID);
        }
        other => panic!("expected SubjectMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn not_authoritative_issuer_refused() {
    // The user started at our mock AS (URL input, no DID known); the token names an account
    // whose PDS trusts a different authorization server: mix-up.
    let mock = MockPds::spawn().await;
    let other = MockPds::spawn().await;
    let client = confidential(&mock);
    mock.add_account(MALLORY_DID, "mallory.test", did_doc(MALLORY_DID, "mallory.test", &other.base));
    mock.configure(|c| c.sub_override = Some(MALLORY_DID.into()));
    let pending = client.start_login(&mock.base, &[]).await.unwrap();
    let params = authorize(&pending).await;
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    assert!(matches!(err, AtprotoError::NotAuthoritative(_)), "{err:?}");
    assert!(other.hits().contains(&"/.well-known/oauth-protected-resource".to_string()));
    assert!(mock.log_for("/xrpc/com.atproto.repo.getRecord").is_empty(), "no PDS call after refusal");

    // Same, with the account's own PDS naming another AS.
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    let pending = client.start_login(&mock.base, &[]).await.unwrap();
    mock.configure(|c| c.prm_as_override = Some(other.base.clone()));
    let params = authorize(&pending).await;
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    assert!(matches!(err, AtprotoError::NotAuthoritative(_)), "{err:?}");
}

#[tokio::test]
async fn access_denied_reported() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    mock.configure(|c| c.access_denied = true);
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let params = authorize(&pending).await;
    assert_eq!(params.error.as_deref(), Some("access_denied"));
    let err = client.complete_login(&pending, &params).await.unwrap_err();
    assert!(matches!(err, AtprotoError::AccessDenied(Some(ref d)) if d == "User refused"), "{err:?}");
    assert_eq!(err.user_message(), "Sign-in was cancelled or refused.");
}

async fn logged_in(_mock: &MockPds, client: &AtprotoClient) -> atsso::atproto::LoginResult {
    let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let params = authorize(&pending).await;
    client.complete_login(&pending, &params).await.unwrap()
}

#[tokio::test]
async fn refresh_rotates_tokens() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    let first = logged_in(&mock, &client).await.session;
    let second = client.refresh(&first).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.sub, ALICE_DID);
    assert_eq!(second.dpop_private_jwk, first.dpop_private_jwk);
    let last = mock.log_for("/oauth/token").last().unwrap().clone();
    assert_eq!(last.form["grant_type"], "refresh_token");
    assert_eq!(last.client_auth.as_deref(), Some("private_key_jwt"));
    // The old refresh token is spent.
    let err = client.refresh(&first).await.unwrap_err();
    assert!(matches!(err, AtprotoError::UpstreamError { status: 400, ref error, .. } if error == "invalid_grant"), "{err:?}");
    // The new one works.
    let third = client.refresh(&second).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
}

#[tokio::test]
async fn revoke_reaches_the_as() {
    let mock = MockPds::spawn().await;
    let client = loopback(&mock);
    let session = logged_in(&mock, &client).await.session;
    client.revoke(&session).await.unwrap();
    let revoked = mock.revoked();
    assert!(revoked.contains(session.refresh_token.as_ref().unwrap()));
    assert!(revoked.contains(&session.access_token));
    let err = client.refresh(&session).await.unwrap_err();
    assert!(matches!(err, AtprotoError::UpstreamError { .. }), "{err:?}");
}

#[tokio::test]
async fn hostile_metadata_refused() {
    for h in [
        Hostile::WrongIssuer,
        Hostile::NoPar,
        Hostile::NoS256,
        Hostile::NoEs256,
        Hostile::NoIssParameter,
        Hostile::NoTokenEndpoint,
        Hostile::NoAtprotoScope,
    ] {
        let mock = MockPds::spawn().await;
        let client = confidential(&mock);
        mock.configure(|c| c.hostile = Some(h));
        let err = client.start_login(ALICE_HANDLE, &[]).await.unwrap_err();
        assert!(matches!(err, AtprotoError::HostileMetadata(_)), "{h:?}: {err:?}");
        assert!(mock.log_for("/oauth/par").is_empty(), "{h:?}: PAR sent anyway");
    }
}

#[tokio::test]
async fn missing_profile_and_no_email_scope_are_fine() {
    let mock = MockPds::spawn().await;
    mock.configure(|c| {
        c.profile = None;
        c.granted_scope = "atproto transition:generic".into();
    });
    let client = confidential(&mock);
    let r = logged_in(&mock, &client).await;
    assert_eq!(r.identity.display_name, None);
    assert_eq!(r.identity.avatar, None);
    assert_eq!(r.identity.email, None);
    assert!(mock.log_for("/xrpc/com.atproto.server.getSession").is_empty());
}

#[tokio::test]
async fn handle_not_claimed_by_did_document_refused() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    // bob.test → Alice's DID, whose document does not claim bob.test.
    mock.state.handles.lock().unwrap().insert("bob.test".into(), ALICE_DID.into());
    let err = client.start_login("bob.test", &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::HandleMismatch { .. }), "{err:?}");
    let err = client.start_login("nobody.test", &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::HandleNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn invalid_handle_refused_before_any_fetch() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    for input in ["alice", "alice..test", "-alice.test", "alice.local", "al ice.test", "", "javascript:alert(1)"] {
        let err = client.start_login(input, &[]).await.unwrap_err();
        assert!(matches!(err, AtprotoError::InvalidHandle(_)), "{input:?}: {err:?}");
    }
    let err = client.start_login("did:plc:UPPER", &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::InvalidDid(_)), "{err:?}");
    assert!(mock.hits().is_empty(), "fetched: {:?}", mock.hits());
}

#[tokio::test]
async fn ssrf_targets_refused_without_insecure_loopback() {
    let mock = MockPds::spawn().await;
    let mut cfg = config(&mock, ClientMode::Confidential);
    cfg.allow_insecure_loopback = false;
    let client = AtprotoClient::new(cfg, Some(ClientSigningKey::generate("k").unwrap())).unwrap();
    let port = Url::parse(&mock.base).unwrap().port().unwrap();
    let inputs = [
        mock.base.clone(),
        format!("https://127.0.0.1:{port}/"),
        format!("https://localhost:{port}/"),
        format!("https://2130706433:{port}/"),
        format!("https://0x7f.1:{port}/"),
        format!("https://0177.0.0.1:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://[::1]:{port}/"),
        "https://10.0.0.1/".to_string(),
        "https://192.168.1.1/".to_string(),
        "https://169.254.169.254/".to_string(),
        "https://[fd00::1]/".to_string(),
        "https://100.64.0.1/".to_string(),
    ];
    for input in &inputs {
        let err = client.start_login(input, &[]).await.unwrap_err();
        assert!(matches!(err, AtprotoError::Forbidden(_)), "{input}: {err:?}");
        assert_eq!(err.user_message(), "That server address is not allowed.");
    }
    // The configured handle resolver is on loopback too: refused, not fetched.
    let err = client.start_login(ALICE_HANDLE, &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::Forbidden(_)), "{err:?}");
    assert!(mock.hits().is_empty(), "fetched: {:?}", mock.hits());
}

#[tokio::test]
async fn did_document_pointing_at_private_pds_refused() {
    // Even with loopback allowed (test mode), a PDS on a private address is refused.
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    mock.add_account(MALLORY_DID, "mallory.test", did_doc(MALLORY_DID, "mallory.test", "https://10.1.2.3"));
    let err = client.start_login("mallory.test", &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::Forbidden(_)), "{err:?}");
    mock.add_account(MALLORY_DID, "mallory.test", did_doc(MALLORY_DID, "mallory.test", "http://example.com"));
    let err = client.start_login("mallory.test", &[]).await.unwrap_err();
    assert!(matches!(err, AtprotoError::Forbidden(_)), "{err:?}");
}

#[tokio::test]
async fn pending_login_is_single_login_bound() {
    // A callback for one login cannot complete another (different state and PKCE/DPoP keys).
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    let a = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    let b = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
    assert_ne!(a.state, b.state);
    assert_ne!(a.pkce_verifier, b.pkce_verifier);
    assert_ne!(a.dpop_private_jwk, b.dpop_private_jwk);
    let params_a = authorize(&a).await;
    let err = client.complete_login(&b, &params_a).await.unwrap_err();
    assert!(matches!(err, AtprotoError::StateMismatch), "{err:?}");
    // With b's state forged onto a's code, the AS refuses (PKCE and DPoP key differ).
    let mut forged = params_a.clone();
    forged.state = Some(b.state.clone());
    let err = client.complete_login(&b, &forged).await.unwrap_err();
    assert!(matches!(err, AtprotoError::UpstreamError { ref error, .. } if error == "invalid_grant"), "{err:?}");
}

// ---- issue 11: trust only what we asked for, and email only from trusted issuers ----

/// A confidential client that requests `scope`.
fn confidential_with_scope(mock: &MockPds, scope: &str) -> AtprotoClient {
    let key = ClientSigningKey::generate("key-1").unwrap();
    let mut cfg = config(mock, ClientMode::Confidential);
    cfg.scope = scope.to_string();
    let client = AtprotoClient::new(cfg, Some(key)).unwrap();
    mock.configure(|c| c.client_jwks = Some(client.client_jwks()));
    client
}

#[tokio::test]
async fn granted_scopes_we_did_not_request_are_ignored() {
    // We ask for `atproto` only; a hostile AS grants email too and its PDS vouches for an
    // address that is not the user's.
    let mock = MockPds::spawn().await;
    mock.configure(|c| {
        c.granted_scope = "atproto transition:email".into();
        c.email = Some("ceo@victim.example".into());
    });
    let client = confidential_with_scope(&mock, "atproto");
    let r = logged_in(&mock, &client).await;
    assert_eq!(r.identity.email, None);
    assert_eq!(r.identity.email_verified, None);
    assert_eq!(r.session.scope, "atproto", "the stored scope is what we asked for and were granted");
    assert!(mock.log_for("/xrpc/com.atproto.server.getSession").is_empty(), "email never fetched");
    // A refresh that grants more does not widen the stored scope either.
    let fresh = client.refresh(&r.session).await.unwrap();
    assert_eq!(fresh.scope, "atproto");
}

#[tokio::test]
async fn email_from_an_untrusted_issuer_is_passed_on_unverified() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock); // asks for transition:email; trusts only the default issuer list
    let r = logged_in(&mock, &client).await;
    assert_eq!(r.identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(r.identity.email_verified, Some(false), "the mock's AS is not a trusted issuer");
}

#[tokio::test]
async fn token_response_without_atproto_or_without_scope_is_refused() {
    for (label, setup) in [
        (
            "no atproto",
            Box::new(|c: &mut MockConfig| c.granted_scope = "transition:generic transition:email".into()) as Box<dyn Fn(&mut MockConfig)>,
        ),
        ("no scope", Box::new(|c: &mut MockConfig| c.omit_scope = true)),
    ] {
        let mock = MockPds::spawn().await;
        let client = confidential(&mock);
        mock.configure(|c| setup(c));
        let pending = client.start_login(ALICE_HANDLE, &[]).await.unwrap();
        let params = authorize(&pending).await;
        let err = client.complete_login(&pending, &params).await.unwrap_err();
        assert!(err.user_message().contains("did not grant"), "{label}: {err:?} / {}", err.user_message());
        assert!(mock.log_for("/xrpc/com.atproto.repo.getRecord").is_empty(), "{label}: nothing fetched with the token");
    }
}

#[tokio::test]
async fn refresh_without_scope_is_refused() {
    let mock = MockPds::spawn().await;
    let client = confidential(&mock);
    let session = logged_in(&mock, &client).await.session;
    mock.configure(|c| c.omit_scope = true);
    let err = client.refresh(&session).await.unwrap_err();
    assert!(err.user_message().contains("did not grant"), "{err:?}");
}

#[tokio::test]
async fn huge_expires_in_is_bounded() {
    for huge in [u64::MAX, i64::MAX as u64, u64::MAX / 2 + 12345] {
        let mock = MockPds::spawn().await;
        mock.configure(|c| c.expires_in = huge);
        let client = confidential(&mock);
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let r = logged_in(&mock, &client).await;
        let expires_at = r.session.expires_at.unwrap();
        assert!(expires_at > before && expires_at <= before + 366 * 86400, "{huge}: {expires_at}");
        assert!(i64::try_from(expires_at).is_ok());
        let fresh = client.refresh(&r.session).await.unwrap();
        assert!(fresh.expires_at.unwrap() <= before + 366 * 86400 + 60, "{huge} refresh");
    }
}
