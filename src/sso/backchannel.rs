//! OpenID Connect Back-Channel Logout 1.0: a signed logout token POSTed to each client of an
//! ended session. Each delivery is an outbox row (`sso::outbox` claims and retries it); this
//! module makes one attempt. A back-channel URI is a request we make to a host a client chose,
//! so it goes through the SSRF-guarded client (`atproto::http::SafeHttp`): public https
//! targets, and loopback only for clients an admin registered (local development), never for
//! dynamically registered ones.
use std::time::Duration;

use serde_json::{json, Map};

use crate::{
    atproto::http::HttpError,
    clock::now,
    crypto::random_token,
    state::AppState,
    store::{
        clients::Client,
        outbox::{OutboxRow, Outcome},
    },
};

pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens are short-lived: each attempt signs a new one.
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;
/// The most one attempt may take (the guarded client's own timeout is shorter).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The logout token for one client (no nonce, by the spec).
pub fn logout_token(state: &AppState, client_id: &str, did: &str, sid: &str) -> Result<String, crate::crypto::signing::SigningError> {
    let issued_at = now();
    let mut claims = Map::new();
    claims.insert("iss".into(), state.config.issuer().into());
    claims.insert("aud".into(), client_id.into());
    claims.insert("iat".into(), issued_at.into());
    claims.insert("exp".into(), (issued_at + LOGOUT_TOKEN_TTL_SECS).into());
    claims.insert("jti".into(), random_token(16).into());
    claims.insert("sub".into(), did.into());
    claims.insert("sid".into(), sid.into());
    claims.insert("events".into(), json!({ BACKCHANNEL_EVENT: {} }));
    state.keys.current().sign(crate::crypto::signing::Alg::Rs256, "logout+jwt", claims)
}

/// One attempt at a back-channel logout row: a fresh logout token POSTed to the URI recorded
/// at logout. The client is read now: a deleted or disabled one is told nothing.
pub(super) async fn deliver(state: &AppState, row: &OutboxRow) -> Outcome {
    let Some(client_id) = row.client_id.as_deref() else {
        return Outcome::Failed("no client recorded".into());
    };
    let client = match state.store.client(client_id).await {
        Ok(Some(client)) if client.enabled => client,
        Ok(Some(_)) => return Outcome::Failed("client disabled".into()),
        Ok(None) => return Outcome::Failed("client deleted".into()),
        Err(error) => {
            tracing::error!(%error, "loading a client for back-channel logout failed");
            return Outcome::Retry("database unavailable".into());
        }
    };
    let Ok(url) = url::Url::parse(&row.target) else {
        return Outcome::Failed("refused: not a URL".into());
    };
    let token = match logout_token(state, client_id, &row.did, &row.sid) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, client_id, "signing a logout token failed");
            return Outcome::Retry("signing the logout token failed".into());
        }
    };
    post(state, &client, &url, token).await
}

async fn post(state: &AppState, client: &Client, url: &url::Url, token: String) -> Outcome {
    let headers = [("cache-control", "no-store".to_string())];
    let form = [("logout_token", token)];
    // Loopback is local development by an admin; a dynamically registered client's host
    // name may point at loopback long after it was checked at registration.
    let allow_loopback = !client.dynamically_registered;
    let sent = tokio::time::timeout(ATTEMPT_TIMEOUT, state.atproto.http().post_form_to(url, &headers, &form, allow_loopback)).await;
    match sent {
        // The spec: 200 (or 204) means the RP logged the session out.
        Ok(Ok(status)) if (200..300).contains(&status) => Outcome::Delivered,
        // Overloaded, rate limited or in trouble: later may work.
        Ok(Ok(status)) if status == 408 || status == 429 || status >= 500 => Outcome::Retry(format!("HTTP {status}")),
        Ok(Ok(status)) => Outcome::Failed(format!("HTTP {status}")),
        // Refused by the SSRF guard: asking again will not change the answer.
        Ok(Err(HttpError::Forbidden(reason))) => Outcome::Failed(format!("refused: {reason}")),
        Ok(Err(HttpError::Timeout)) | Err(_) => Outcome::Retry("timed out".into()),
        Ok(Err(HttpError::TooLarge | HttpError::Transport(_))) => Outcome::Retry("unreachable".into()),
    }
}

/// Front-channel logout URLs (`iss` + `sid` appended) for the logged-out page's iframes.
pub fn frontchannel_urls(state: &AppState, clients: &[Client], sid: &str) -> Vec<String> {
    clients
        .iter()
        .filter_map(|c| c.frontchannel_logout_uri.as_deref())
        .filter_map(|uri| url::Url::parse(uri).ok())
        .map(|mut url| {
            url.query_pairs_mut().append_pair("iss", &state.config.issuer()).append_pair("sid", sid);
            url.to_string()
        })
        .collect()
}
