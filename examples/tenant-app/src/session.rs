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

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed (unverified) ID token; only its presence matters here.
    const ID_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwOi8veCIsImF1ZCI6ImMiLCJleHAiOjIsImlhdCI6MSwic3ViIjoiZGlkOnBsYzphIn0.c2ln";

    fn login(sub: &str, sid: &str) -> Login {
        Login {
            claims: Claims {
                sub: sub.into(),
                preferred_username: None,
                name: None,
                picture: None,
                email: None,
                email_verified: None,
                sid: Some(sid.into()),
                auth_time: None,
                expires_at: 0,
            },
            id_token: ID_TOKEN.parse().unwrap(),
            access_token: AccessToken::new("at".into()),
        }
    }

    #[test]
    fn sessions_have_distinct_random_ids() {
        let store = SessionStore::default();
        let a = store.create(|_| {});
        let b = store.create(|_| {});
        assert_ne!(a, b);
        assert!(a.len() >= 43);
        assert!(store.get(&a).is_some());
        assert!(store.remove(&a).is_some() && store.get(&a).is_none());
    }

    #[test]
    fn backchannel_removes_only_sessions_of_that_sid_and_sub() {
        let store = SessionStore::default();
        let one = store.create(|s| s.login = Some(login("did:plc:a", "sid-1")));
        let two = store.create(|s| s.login = Some(login("did:plc:a", "sid-1")));
        let other_sid = store.create(|s| s.login = Some(login("did:plc:a", "sid-2")));
        let other_user = store.create(|s| s.login = Some(login("did:plc:b", "sid-1")));
        let anonymous = store.create(|_| {});
        assert_eq!(store.remove_signed_in(None, None), 0);
        assert_eq!(store.remove_signed_in(Some("sid-1"), Some("did:plc:a")), 2);
        assert!(store.get(&one).is_none() && store.get(&two).is_none());
        assert!(store.get(&other_sid).is_some() && store.get(&other_user).is_some() && store.get(&anonymous).is_some());
        // sub only: every session of that user.
        assert_eq!(store.remove_signed_in(None, Some("did:plc:a")), 1);
        assert!(store.get(&other_sid).is_none());
    }
}
