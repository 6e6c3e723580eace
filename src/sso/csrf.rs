//! CSRF tokens that only we can issue, bound to the browser and its session.
//!
//! The browser carries a browser-id cookie (`atsso_browser`, `__Host-atsso_browser` on https)
//! whose value is a random id and our MAC over it, so a value nobody got from us is ignored. A
//! form's token is our MAC over that id and the session id of the session cookie: a cookie
//! planted by a sibling subdomain is not ours (and on https cannot be planted at all), and a token
//! seen in one browser or session is worthless in another. The browser id also binds a pending
//! upstream login to the browser that started it.
use crate::{
    crypto::{constant_time_eq, random_token},
    state::AppState,
};

pub const BROWSER_COOKIE: &str = "atsso_browser";

/// The browser id in a browser-cookie value, if it is one we issued.
pub fn browser_id(state: &AppState, cookie_value: &str) -> Option<String> {
    let (id, mac) = cookie_value.split_once('.')?;
    if id.len() != 32 || mac.len() != 43 {
        return None;
    }
    let expected = state.sealer.mac(&format!("browser:{id}"));
    constant_time_eq(expected.as_bytes(), mac.as_bytes()).then(|| id.to_owned())
}

/// A new browser id and the browser-cookie value that carries it.
pub fn new_browser_id(state: &AppState) -> (String, String) {
    let id = random_token(24);
    let value = format!("{id}.{}", state.sealer.mac(&format!("browser:{id}")));
    (id, value)
}

/// The token for a browser id and (when signed in) the session id.
pub fn token_for(state: &AppState, browser_id: &str, sid: Option<&str>) -> String {
    state.sealer.mac(&format!("csrf:{browser_id}:{}", sid.unwrap_or("")))
}
