//! A read cache for the hottest lookups: access-token records by hash, user profiles by DID and
//! SSO sessions by sid (every token request and userinfo call), and clients (every back-channel
//! request).
//!
//! Tokens, profiles and sessions are cached only with SQLite, where this process is the only
//! writer of them: every revocation, profile update and session end goes through `Store` here and
//! clears what it changes, so answers are exactly as fresh as the database's. With Postgres
//! (several nodes) a change on another node could not be seen, so those lookups read the
//! database.
//!
//! Clients are also changed from outside the server (the `atsso clients ...` CLI, other nodes),
//! so a cached client is trusted for `CLIENT_TTL` only: a change made here takes effect at once,
//! a change made elsewhere within two seconds.
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::{clients::Client, sessions::SsoSession, tokens::AccessTokenRecord, users::UserProfile};

/// How long a cached client row is used before it is read again.
pub const CLIENT_TTL: Duration = Duration::from_secs(2);

/// Beyond this many entries a map is emptied (a crude but safe bound on memory).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub struct ReadCache {
    enabled: bool,
    access_tokens: DashMap<String, AccessTokenRecord>,
    users: DashMap<String, UserProfile>,
    sessions: DashMap<String, SsoSession>,
    clients: DashMap<String, (Client, Instant)>,
}

impl ReadCache {
    pub fn new(enabled: bool) -> Self {
        Self { enabled, ..Default::default() }
    }

    pub fn access_token(&self, token_hash: &str) -> Option<AccessTokenRecord> {
        self.enabled.then(|| self.access_tokens.get(token_hash).map(|r| r.clone())).flatten()
    }

    pub fn put_access_token(&self, record: &AccessTokenRecord) {
        if self.enabled {
            if self.access_tokens.len() >= MAX_ENTRIES {
                self.access_tokens.clear();
            }
            self.access_tokens.insert(record.token_hash.clone(), record.clone());
        }
    }

    /// Any revocation: forget every cached token record (revocations are rare; lookups refill).
    pub fn forget_access_tokens(&self) {
        self.access_tokens.clear();
    }

    /// Drops records that have expired (the sweeper deletes their rows).
    pub fn forget_expired(&self, now: i64) {
        self.access_tokens.retain(|_, record| record.expires_at > now);
        self.sessions.retain(|_, session| session.expires_at > now && session.ended_at.is_none());
        self.clients.retain(|_, entry| entry.1.elapsed() < CLIENT_TTL);
    }

    pub fn user(&self, did: &str) -> Option<UserProfile> {
        self.enabled.then(|| self.users.get(did).map(|u| u.clone())).flatten()
    }

    pub fn put_user(&self, user: &UserProfile) {
        if self.enabled {
            if self.users.len() >= MAX_ENTRIES {
                self.users.clear();
            }
            self.users.insert(user.did.clone(), user.clone());
        }
    }

    pub fn forget_user(&self, did: &str) {
        self.users.remove(did);
    }

    pub fn forget_users(&self) {
        self.users.clear();
    }

    pub fn session(&self, sid: &str) -> Option<SsoSession> {
        self.enabled.then(|| self.sessions.get(sid).map(|s| s.clone())).flatten()
    }

    pub fn put_session(&self, session: &SsoSession) {
        if self.enabled {
            if self.sessions.len() >= MAX_ENTRIES {
                self.sessions.clear();
            }
            self.sessions.insert(session.sid.clone(), session.clone());
        }
    }

    pub fn forget_session(&self, sid: &str) {
        self.sessions.remove(sid);
    }

    /// A cached client younger than `CLIENT_TTL` (with any database).
    pub fn client(&self, client_id: &str) -> Option<Client> {
        self.clients
            .get(client_id)
            .filter(|entry| entry.1.elapsed() < CLIENT_TTL)
            .map(|entry| entry.0.clone())
    }

    pub fn put_client(&self, client: &Client) {
        if self.clients.len() >= MAX_ENTRIES {
            self.clients.clear();
        }
        self.clients.insert(client.client_id.clone(), (client.clone(), Instant::now()));
    }

    pub fn forget_client(&self, client_id: &str) {
        self.clients.remove(client_id);
    }
}
