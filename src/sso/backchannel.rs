//! OpenID Connect Back-Channel Logout 1.0: signed logout tokens POSTed to each client of an
//! ended session. Deliveries run concurrently in the background, are time-bounded, retried with
//! backoff and recorded; they never hold up the user's redirect. A back-channel URI is a
//! request we make to a host a client chose, so it goes through the SSRF-guarded client
//! (`atproto::http::SafeHttp`): public https targets, and loopback only for clients an admin
//! registered (local development), never for dynamically registered ones.
use std::time::Duration;

use serde_json::{json, Map};

use crate::{
    atproto::http::{HttpError, SafeHttp},
    clock::now,
    crypto::random_token,
    state::AppState,
    store::{clients::Client, logout::LogoutDelivery},
};

pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const ATTEMPTS: i32 = 3;
/// Logout tokens are short-lived: they only need to survive delivery.
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;

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

/// Starts one background delivery per client with a back-channel URI; returns their handles
/// (tests await them; the logout flow does not).
pub async fn notify(state: &AppState, clients: &[Client], did: &str, sid: &str) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for client in clients {
        let Some(uri) = client.backchannel_logout_uri.clone() else {
            continue;
        };
        let token = match logout_token(state, &client.client_id, did, sid) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, client_id = %client.client_id, "signing a logout token failed");
                continue;
            }
        };
        let delivery = LogoutDelivery {
            id: random_token(12),
            sid: sid.to_owned(),
            client_id: client.client_id.clone(),
            uri: uri.clone(),
            status: "pending".into(),
            attempts: 0,
            last_error: None,
            created_at: now(),
            updated_at: now(),
        };
        if let Err(error) = state.store.insert_logout_delivery(&delivery).await {
            tracing::error!(%error, "recording a logout delivery failed");
        }
        let state = state.clone();
        // Loopback is local development by an admin; a dynamically registered client's host
        // name may point at loopback long after it was checked at registration.
        let allow_loopback = !client.dynamically_registered;
        handles.push(tokio::spawn(async move {
            deliver(&state, state.atproto.http(), &delivery, &uri, &token, allow_loopback).await;
        }));
    }
    handles
}

async fn deliver(state: &AppState, http: &SafeHttp, delivery: &LogoutDelivery, uri: &str, token: &str, allow_loopback: bool) {
    let Ok(url) = url::Url::parse(uri) else {
        tracing::warn!(client_id = %delivery.client_id, "back-channel logout URI is not a URL");
        record(state, delivery, "failed", 1, Some("refused: not a URL".into())).await;
        return;
    };
    let headers = [("cache-control", "no-store".to_string())];
    let form = [("logout_token", token.to_string())];
    let mut last_error = None;
    for attempt in 1..=ATTEMPTS {
        match http.post_form_to(&url, &headers, &form, allow_loopback).await {
            // The spec: 200 (or 204) means the RP logged the session out.
            Ok(status) if (200..300).contains(&status) => {
                record(state, delivery, "delivered", attempt, None).await;
                tracing::info!(client_id = %delivery.client_id, attempt, "back-channel logout delivered");
                return;
            }
            Ok(status) => last_error = Some(format!("HTTP {status}")),
            // Refused by the SSRF guard: asking again will not change the answer.
            Err(HttpError::Forbidden(reason)) => {
                tracing::warn!(client_id = %delivery.client_id, %reason, "back-channel logout refused by the SSRF guard");
                record(state, delivery, "failed", attempt, Some(format!("refused: {reason}"))).await;
                return;
            }
            Err(HttpError::Timeout) => last_error = Some("timed out".into()),
            Err(HttpError::TooLarge | HttpError::Transport(_)) => last_error = Some("unreachable".into()),
        }
        record(state, delivery, "pending", attempt, last_error.clone()).await;
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(250 * 4u64.pow(attempt as u32 - 1))).await;
        }
    }
    tracing::warn!(client_id = %delivery.client_id, error = ?last_error, "back-channel logout failed after retries");
    record(state, delivery, "failed", ATTEMPTS, last_error).await;
}

async fn record(state: &AppState, delivery: &LogoutDelivery, status: &str, attempts: i32, error: Option<String>) {
    if let Err(e) = state.store.update_logout_delivery(&delivery.id, status, attempts, error, now()).await {
        tracing::error!(error = %e, "updating a logout delivery failed");
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
