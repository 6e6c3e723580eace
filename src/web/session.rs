//! The browser's cookies: the SSO session cookie and the browser-id cookie that CSRF tokens and
//! pending logins are bound to. What the values mean is `sso`'s; reading and writing them is HTTP.
use actix_web::{
    cookie::{time::Duration as CookieDuration, Cookie, SameSite},
    HttpRequest,
};

use crate::{
    config::Config,
    sso::{self, csrf::BROWSER_COOKIE},
    state::AppState,
    store::{sessions::SsoSession, StoreResult},
};

fn cookie(config: &Config, req: &HttpRequest, base: &'static str) -> Option<Cookie<'static>> {
    req.cookie(&sso::cookie_name(config, base))
}

/// The live session named by the session cookie, without looking at the upstream grant (logout).
pub(crate) async fn cookie_session(state: &AppState, req: &HttpRequest) -> StoreResult<Option<SsoSession>> {
    match cookie(&state.config, req, sso::SESSION_COOKIE) {
        Some(cookie) => sso::session_from_cookie_value(state, cookie.value()).await,
        None => Ok(None),
    }
}

/// The browser's live session whose upstream grant is usable now (see `sso::usable_session`).
pub(crate) async fn current_session(state: &AppState, req: &HttpRequest) -> StoreResult<Option<SsoSession>> {
    match cookie_session(state, req).await? {
        Some(session) => sso::usable_session(state, session).await,
        None => Ok(None),
    }
}

fn base_cookie(config: &Config, base: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(sso::cookie_name(config, base), value)
        .path("/")
        .http_only(true)
        .secure(config.secure_cookies())
        .same_site(SameSite::Lax)
        .finish()
}

pub(crate) fn session_cookie(config: &Config, value: &str) -> Cookie<'static> {
    let mut cookie = base_cookie(config, sso::SESSION_COOKIE, value.to_owned());
    cookie.set_max_age(CookieDuration::seconds(config.session_ttl_secs));
    cookie
}

pub(crate) fn clear_session_cookie(config: &Config) -> Cookie<'static> {
    let mut cookie = session_cookie(config, "");
    cookie.make_removal();
    cookie
}

/// The browser id of this request, if it carries one we issued.
pub(crate) fn browser_id(state: &AppState, req: &HttpRequest) -> Option<String> {
    cookie(&state.config, req, BROWSER_COOKIE).and_then(|c| sso::csrf::browser_id(state, c.value()))
}

fn session_cookie_value(state: &AppState, req: &HttpRequest) -> Option<String> {
    cookie(&state.config, req, sso::SESSION_COOKIE).map(|c| c.value().to_owned())
}

/// The CSRF token for this browser's forms, and the browser-id cookie to set when it has none.
pub(crate) fn csrf_token(state: &AppState, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    let (browser_id, cookie) = match browser_id(state, req) {
        Some(id) => (id, None),
        None => {
            let (id, value) = sso::csrf::new_browser_id(state);
            (id, Some(base_cookie(&state.config, BROWSER_COOKIE, value)))
        }
    };
    (sso::csrf_token(state, &browser_id, session_cookie_value(state, req).as_deref()), cookie)
}

/// True when the form's token is the one we issued to this browser and its session.
pub(crate) fn csrf_valid(state: &AppState, req: &HttpRequest, form_token: Option<&str>) -> bool {
    sso::csrf_valid(state, browser_id(state, req).as_deref(), session_cookie_value(state, req).as_deref(), form_token)
}
