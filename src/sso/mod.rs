//! The SSO browser session: the one seam through which an authenticated person becomes a
//! session (`establish_session`), what a session cookie's value names, and CSRF tokens for our
//! forms. The cookies themselves are HTTP and live in `web::session`.
//! The ATProto login calls `establish_session` after a verified upstream login; integration
//! tests call it directly. There is no HTTP route that creates a session without a login.
pub mod backchannel;
pub mod csrf;
mod grant;
pub mod logout;
pub mod outbox;
pub mod upstream;

use crate::{
    clock::now,
    config::Config,
    crypto::{constant_time_eq, random_token, sha256_b64},
    state::AppState,
    store::{sessions::SsoSession, users::UserProfile, StoreResult},
};

/// The session cookie's name on plain http (development); on https it is `__Host-atsso_session`.
pub const SESSION_COOKIE: &str = "atsso_session";

/// Cookie names get the `__Host-` prefix when we are served over https: browsers then refuse the
/// cookie unless it is Secure, host-only and for `/`, so a sibling subdomain cannot plant it.
pub fn cookie_name(config: &Config, base: &'static str) -> String {
    if config.secure_cookies() {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

pub fn session_cookie_name(config: &Config) -> String {
    cookie_name(config, SESSION_COOKIE)
}

/// A new session: `cookie_value` goes into the browser, `sid` into ID tokens.
pub struct EstablishedSession {
    pub sid: String,
    pub cookie_value: String,
    pub session: SsoSession,
}

/// Records the user's profile and opens an SSO session for them.
pub async fn establish_session(state: &AppState, profile: &UserProfile) -> StoreResult<EstablishedSession> {
    let now = now();
    state.store.upsert_user(profile, now).await?;
    let sid = random_token(18);
    let secret = random_token(32);
    let session = SsoSession {
        sid: sid.clone(),
        secret_hash: sha256_b64(&secret),
        did: profile.did.clone(),
        auth_time: now,
        created_at: now,
        expires_at: now + state.config.session_ttl_secs,
        ended_at: None,
    };
    state.store.insert_session(&session).await?;
    Ok(EstablishedSession { cookie_value: format!("{sid}.{secret}"), sid, session })
}

/// What we know of a user (recorded at each sign-in).
pub async fn user_profile(state: &AppState, did: &str) -> StoreResult<Option<UserProfile>> {
    state.store.user(did).await
}

/// `session` if its upstream ATProto grant is usable now (refreshed here when it has expired).
/// A grant the user's authorization server refused ends the session everywhere (single
/// logout); one that cannot be confirmed now (the PDS is unreachable) means no session for this
/// request, and nothing ends.
pub async fn usable_session(state: &AppState, session: SsoSession) -> StoreResult<Option<SsoSession>> {
    Ok((upstream::upstream_grant(state, &session.sid).await? == upstream::UpstreamGrant::Usable).then_some(session))
}

/// The live session a session-cookie value (`sid.secret`) names, if the secret matches.
pub async fn session_from_cookie_value(state: &AppState, value: &str) -> StoreResult<Option<SsoSession>> {
    let Some((sid, secret)) = value.split_once('.') else {
        return Ok(None);
    };
    if sid.len() > 64 || secret.len() > 64 {
        return Ok(None);
    }
    let Some(session) = state.store.live_session(sid, now()).await? else {
        return Ok(None);
    };
    let presented = sha256_b64(secret);
    Ok(constant_time_eq(presented.as_bytes(), session.secret_hash.as_bytes()).then_some(session))
}

/// The CSRF token for a browser id we issued and the session cookie's value (if any); see `csrf`.
pub fn csrf_token(state: &AppState, browser_id: &str, session_cookie_value: Option<&str>) -> String {
    csrf::token_for(state, browser_id, session_cookie_value.and_then(cookie_sid))
}

/// True when `form_token` is the token we issued to this browser (and its current session).
pub fn csrf_valid(state: &AppState, browser_id: Option<&str>, session_cookie_value: Option<&str>, form_token: Option<&str>) -> bool {
    let (Some(browser_id), Some(presented)) = (browser_id, form_token) else {
        return false;
    };
    constant_time_eq(csrf_token(state, browser_id, session_cookie_value).as_bytes(), presented.as_bytes())
}

/// The session id part of a session-cookie value (unverified: it only binds tokens to the cookie).
fn cookie_sid(value: &str) -> Option<&str> {
    value.split_once('.').map(|(sid, _)| sid).filter(|sid| !sid.is_empty() && sid.len() <= 64)
}
