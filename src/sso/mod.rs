//! The SSO browser session: the one seam through which an authenticated person becomes a
//! session (`establish_session`), the session cookie, and CSRF tokens for our forms.
//! The ATProto login calls `establish_session` after a verified upstream login; integration
//! tests call it directly. There is no HTTP route that creates a session without a login.
pub mod logout;
pub mod upstream;

use actix_web::{
    cookie::{time::Duration as CookieDuration, Cookie, SameSite},
    HttpRequest,
};

use crate::{
    config::Config,
    crypto::{constant_time_eq, random_token, sha256_b64},
    state::{now, AppState},
    store::{sessions::SsoSession, users::UserProfile, StoreResult},
};

pub const SESSION_COOKIE: &str = "atsso_session";
pub const CSRF_COOKIE: &str = "atsso_csrf";

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

/// The live session named by the request's cookie, if any, whose upstream ATProto grant is
/// usable now (refreshed here when it has expired). A grant the user's authorization server
/// refused ends the session everywhere (single logout); one that cannot be confirmed now (the
/// PDS is unreachable) means no session for this request, and nothing ends.
pub async fn current_session(state: &AppState, req: &HttpRequest) -> StoreResult<Option<SsoSession>> {
    let Some(session) = cookie_session(state, req).await? else {
        return Ok(None);
    };
    Ok((upstream::upstream_grant(state, &session.sid).await? == upstream::UpstreamGrant::Usable).then_some(session))
}

/// The live session named by the cookie, without looking at the upstream grant (logout).
pub async fn cookie_session(state: &AppState, req: &HttpRequest) -> StoreResult<Option<SsoSession>> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    session_from_cookie_value(state, cookie.value()).await
}

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

pub fn session_cookie(config: &Config, value: &str) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value.to_owned())
        .path("/")
        .http_only(true)
        .secure(config.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(config.session_ttl_secs))
        .finish()
}

pub fn clear_session_cookie(config: &Config) -> Cookie<'static> {
    let mut cookie = session_cookie(config, "");
    cookie.make_removal();
    cookie
}

/// CSRF: a double-submit token. The cookie (HttpOnly, SameSite=Lax) and the hidden form field
/// must carry the same random value. Returns the token and a cookie to set when it is new.
pub fn csrf_token(config: &Config, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    if let Some(existing) = req.cookie(CSRF_COOKIE) {
        let value = existing.value();
        if value.len() == 43 {
            return (value.to_owned(), None);
        }
    }
    let token = random_token(32);
    let cookie = Cookie::build(CSRF_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .secure(config.secure_cookies())
        .same_site(SameSite::Lax)
        .finish();
    (token, Some(cookie))
}

/// True when the form's token matches the CSRF cookie.
pub fn csrf_valid(req: &HttpRequest, form_token: Option<&str>) -> bool {
    match (req.cookie(CSRF_COOKIE), form_token) {
        (Some(cookie), Some(token)) => cookie.value().len() == 43 && constant_time_eq(cookie.value().as_bytes(), token.as_bytes()),
        _ => false,
    }
}
