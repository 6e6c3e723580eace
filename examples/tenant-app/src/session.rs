//! The app's own sessions: a random cookie value → `Session`, in memory (restarting the app
//! signs everyone out of it, which is fine for a demo).
use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use openidconnect::{AccessToken, CsrfToken};

use crate::provider::{Claims, IdToken};

/// Sessions older than this are forgotten.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// A login must come back from atsso within this time.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Session {
    created: Instant,
    pub pending: Option<PendingLogin>,
    pub login: Option<Login>,
    /// The `state` sent with our end-session redirect; checked when atsso sends the browser back.
    pub logout_state: Option<String>,
}

/// What `/login` remembers for `/callback`.
#[derive(Clone)]
pub struct PendingLogin {
    pub started: Instant,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A signed-in user.
#[derive(Clone)]
pub struct Login {
    pub claims: Claims,
    pub id_token: IdToken,
    pub access_token: AccessToken,
}

impl Session {
    fn new() -> Self {
        Session { created: Instant::now(), pending: None, login: None, logout_state: None }
    }
}

#[derive(Default)]
pub struct SessionStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic elsewhere cannot leave a half-written map entry, so poisoning is harmless.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new session, filled in by `fill`; returns its id (the cookie value).
    pub fn create(&self, fill: impl FnOnce(&mut Session)) -> String {
        let id = CsrfToken::new_random_len(32).into_secret();
        let mut session = Session::new();
        fill(&mut session);
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        sessions.insert(id.clone(), session);
        id
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        self.lock().get(id).filter(|s| s.created.elapsed() < SESSION_TTL).cloned()
    }

    /// Changes a session in place; false when it no longer exists.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Session)) -> bool {
        match self.lock().get_mut(id) {
            Some(session) => {
                change(session);
                true
            }
            None => false,
        }
    }

    pub fn remove(&self, id: &str) -> Option<Session> {
        self.lock().remove(id)
    }

    /// Back-channel logout: removes every session signed in with atsso session `sid` (when the
    /// logout token names one) of user `sub` (when it names one). Returns how many went.
    pub fn remove_signed_in(&self, sid: Option<&str>, sub: Option<&str>) -> usize {
        if sid.is_none() && sub.is_none() {
            return 0;
        }
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, session| {
            let Some(login) = &session.login else { return true };
            let sid_matches = sid.is_none_or(|sid| login.claims.sid.as_deref() == Some(sid));
            let sub_matches = sub.is_none_or(|sub| login.claims.sub == sub);
            !(sid_matches && sub_matches)
        });
        before - sessions.len()
    }
}
