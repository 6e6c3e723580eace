//! A read cache for the hottest lookups: access-token records by hash, user profiles by DID and
//! SSO sessions by sid (every token request and userinfo call), clients (every back-channel
//! request), and the unspent authorization codes and refresh tokens we just issued (the next
//! token request presents them).
//!
//! Tokens, profiles and sessions are cached only with SQLite, where this process is the only
//! writer of them: every revocation, profile update and session end goes through `Store` here and
//! clears what it changes, so answers are exactly as fresh as the database's. With Postgres
//! (several nodes) a change on another node could not be seen, so those lookups read the
//! database. One exception: `atsso clients disable` (another process) revokes the client's
//! tokens behind this process's back; a cached access-token record of it stays unrevoked here,
//! but `oidc::access` also refuses tokens of a disabled or deleted client, so such a token stops
//! working within `CLIENT_TTL`.
//!
//! Clients are also changed from outside the server (the `atsso clients ...` CLI, other nodes),
//! so a cached client is trusted for `CLIENT_TTL` only: a change made here takes effect at once,
//! a change made elsewhere within two seconds.
//!
//! A lookup that misses reads the database and then fills the cache; a change that lands between
//! that read and the fill must not leave the old row cached. Every invalidation therefore bumps a
//! generation counter before it removes entries, and a fill only stands if the generation is the
//! one seen before the read (`generation()` → read → `put_*(.., seen)`).
//!
//! Codes and refresh tokens are one-time credentials: an entry is put when one is issued (after
//! the write commits), removed when it is spent, and every revocation clears them all. A cached
//! entry only decides whether a request is worth signing for: spending it is a compare-and-set in
//! the database (`tokens::spend_in`), which refuses a spent or revoked credential whatever the
//! cache said. Spent ones are never cached, so replays are always judged from the database.
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering::SeqCst},
        Mutex,
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;

use super::{
    clients::Client,
    grants::AuthorizationCode,
    sessions::SsoSession,
    tokens::{AccessTokenRecord, RefreshTokenRecord, Spend},
    users::UserProfile,
};

/// How long a cached client row is used before it is read again.
pub const CLIENT_TTL: Duration = Duration::from_secs(2);

/// Beyond this many entries a map is emptied (a crude but safe bound on memory: a few MiB per
/// map; a miss costs one indexed read).
const MAX_ENTRIES: usize = 10_000;

/// Just-issued codes and refresh tokens kept; the oldest goes first (they are presented within
/// seconds of being issued, or not at all).
const RECENT_CREDENTIALS: usize = 4_096;

/// A map bounded by insertion order, for one-time credentials.
#[derive(Debug)]
struct Recent<V> {
    map: DashMap<String, V>,
    /// Keys in insertion order; may still name entries already removed (spent).
    order: Mutex<VecDeque<String>>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self { map: DashMap::new(), order: Mutex::new(VecDeque::with_capacity(RECENT_CREDENTIALS)) }
    }
}

impl<V: Clone> Recent<V> {
    fn get(&self, key: &str) -> Option<V> {
        self.map.get(key).map(|v| v.clone())
    }

    fn insert(&self, key: &str, value: V) {
        if let Ok(mut order) = self.order.lock() {
            while order.len() >= RECENT_CREDENTIALS {
                if let Some(oldest) = order.pop_front() {
                    self.map.remove(&oldest);
                }
            }
            order.push_back(key.to_owned());
            self.map.insert(key.to_owned(), value);
        }
    }

    fn remove(&self, key: &str) {
        self.map.remove(key);
    }

    fn clear(&self) {
        if let Ok(mut order) = self.order.lock() {
            order.clear();
        }
        self.map.clear();
    }

    fn retain(&self, keep: impl FnMut(&String, &mut V) -> bool) {
        self.map.retain(keep);
    }
}

#[derive(Debug, Default)]
pub struct ReadCache {
    enabled: bool,
    generation: AtomicU64,
    access_tokens: DashMap<String, AccessTokenRecord>,
    refresh_tokens: Recent<RefreshTokenRecord>,
    codes: Recent<AuthorizationCode>,
    users: DashMap<String, UserProfile>,
    sessions: DashMap<String, SsoSession>,
    clients: DashMap<String, (Client, Instant)>,
}

impl ReadCache {
    pub fn new(enabled: bool) -> Self {
        Self { enabled, ..Default::default() }
    }

    /// Take this before reading the database for a later `put_*`.
    pub fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    fn fill<V>(&self, map: &DashMap<String, V>, key: &str, value: V, seen: u64) {
        if self.generation() != seen {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.to_owned(), value);
        // An invalidation raced with this fill: it may have removed before we inserted.
        if self.generation() != seen {
            map.remove(key);
        }
    }

    /// `fill` for the bounded maps of just-issued credentials.
    fn fill_recent<V: Clone>(&self, recent: &Recent<V>, key: &str, value: V, seen: u64) {
        if !self.enabled || self.generation() != seen {
            return;
        }
        recent.insert(key, value);
        // A revocation raced with this insert: it may have cleared before we inserted.
        if self.generation() != seen {
            recent.remove(key);
        }
    }

    /// Called after the database change is committed, before entries are removed.
    fn bump(&self) {
        self.generation.fetch_add(1, SeqCst);
    }

    pub fn access_token(&self, token_hash: &str) -> Option<AccessTokenRecord> {
        self.enabled.then(|| self.access_tokens.get(token_hash).map(|r| r.clone())).flatten()
    }

    pub fn put_access_token(&self, record: &AccessTokenRecord, seen: u64) {
        if self.enabled {
            self.fill(&self.access_tokens, &record.token_hash, record.clone(), seen);
        }
    }

    /// An unspent refresh token issued by this process.
    pub fn refresh_token(&self, token_hash: &str) -> Option<RefreshTokenRecord> {
        self.enabled.then(|| self.refresh_tokens.get(token_hash)).flatten()
    }

    /// Called once the write that stored `record` has committed; `seen` taken before the write.
    pub fn put_refresh_token(&self, record: &RefreshTokenRecord, seen: u64) {
        self.fill_recent(&self.refresh_tokens, &record.token_hash, record.clone(), seen);
    }

    /// An unused authorization code issued by this process.
    pub fn code(&self, code_hash: &str) -> Option<AuthorizationCode> {
        self.enabled.then(|| self.codes.get(code_hash)).flatten()
    }

    pub fn put_code(&self, code: &AuthorizationCode, seen: u64) {
        self.fill_recent(&self.codes, &code.code_hash, code.clone(), seen);
    }

    /// A code or refresh token was spent: from now on it is judged from the database. No
    /// generation bump: the spend itself was the database's compare-and-set.
    pub fn forget_spent(&self, spent: &Spend) {
        match spent {
            Spend::Code { code_hash } => {
                self.codes.remove(code_hash);
            }
            Spend::RefreshToken { token_hash } => {
                self.refresh_tokens.remove(token_hash);
            }
        }
    }

    /// Any revocation: forget every cached token record, code and refresh token (revocations
    /// are rare; lookups refill).
    pub fn forget_tokens(&self) {
        self.bump();
        self.access_tokens.clear();
        self.refresh_tokens.clear();
        self.codes.clear();
    }

    /// Drops entries that can no longer be used (the sweeper deletes their rows).
    pub fn forget_expired(&self, now: i64) {
        self.access_tokens.retain(|_, record| record.expires_at > now);
        self.refresh_tokens.retain(|_, record| record.expires_at > now);
        self.codes.retain(|_, code| code.expires_at > now);
        self.sessions.retain(|_, session| session.expires_at > now && session.ended_at.is_none());
        self.clients.retain(|_, entry| entry.1.elapsed() < CLIENT_TTL);
    }

    pub fn user(&self, did: &str) -> Option<UserProfile> {
        self.enabled.then(|| self.users.get(did).map(|u| u.clone())).flatten()
    }

    pub fn put_user(&self, user: &UserProfile, seen: u64) {
        if self.enabled {
            self.fill(&self.users, &user.did, user.clone(), seen);
        }
    }

    pub fn forget_user(&self, did: &str) {
        self.bump();
        self.users.remove(did);
    }

    pub fn session(&self, sid: &str) -> Option<SsoSession> {
        self.enabled.then(|| self.sessions.get(sid).map(|s| s.clone())).flatten()
    }

    pub fn put_session(&self, session: &SsoSession, seen: u64) {
        if self.enabled {
            self.fill(&self.sessions, &session.sid, session.clone(), seen);
        }
    }

    pub fn forget_session(&self, sid: &str) {
        self.bump();
        self.sessions.remove(sid);
    }

    /// A cached client younger than `CLIENT_TTL` (with any database).
    pub fn client(&self, client_id: &str) -> Option<Client> {
        self.clients.get(client_id).filter(|entry| entry.1.elapsed() < CLIENT_TTL).map(|entry| entry.0.clone())
    }

    pub fn put_client(&self, client: &Client, seen: u64) {
        self.fill(&self.clients, &client.client_id, (client.clone(), Instant::now()), seen);
    }

    pub fn forget_client(&self, client_id: &str) {
        self.bump();
        self.clients.remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(sid: &str) -> SsoSession {
        SsoSession {
            sid: sid.into(),
            secret_hash: "h".into(),
            did: "did:plc:a".into(),
            auth_time: 1,
            created_at: 1,
            expires_at: i64::MAX,
            ended_at: None,
        }
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_does_not_stand() {
        let cache = ReadCache::new(true);
        // Filler reads the row (live), then the session is ended and invalidated, then the fill.
        let seen = cache.generation();
        cache.forget_session("s1");
        cache.put_session(&session("s1"), seen);
        assert!(cache.session("s1").is_none());
        // A fill with a current generation stands; the next invalidation removes it.
        cache.put_session(&session("s1"), cache.generation());
        assert!(cache.session("s1").is_some());
        cache.forget_session("s1");
        assert!(cache.session("s1").is_none());
    }

    fn refresh_token(hash: &str) -> RefreshTokenRecord {
        RefreshTokenRecord {
            token_hash: hash.into(),
            family_id: "f".into(),
            client_id: "c".into(),
            did: "did:plc:a".into(),
            sid: "s".into(),
            scope: "openid".into(),
            auth_time: 1,
            created_at: 1,
            expires_at: 100,
            rotated_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn issued_refresh_tokens_leave_the_cache_when_spent_revoked_or_expired() {
        let cache = ReadCache::new(true);
        // Issued after a revocation committed during the write: the entry must not stand.
        let seen = cache.generation();
        cache.forget_tokens();
        cache.put_refresh_token(&refresh_token("raced"), seen);
        assert!(cache.refresh_token("raced").is_none());

        cache.put_refresh_token(&refresh_token("a"), cache.generation());
        cache.put_refresh_token(&refresh_token("b"), cache.generation());
        assert_eq!(cache.refresh_token("a").map(|r| r.token_hash), Some("a".to_owned()));
        cache.forget_spent(&Spend::RefreshToken { token_hash: "a".into() });
        assert!(cache.refresh_token("a").is_none(), "a spent token is judged from the database");
        assert!(cache.refresh_token("b").is_some());
        cache.forget_expired(100);
        assert!(cache.refresh_token("b").is_none(), "expired");
        cache.put_refresh_token(&refresh_token("c"), cache.generation());
        cache.forget_tokens();
        assert!(cache.refresh_token("c").is_none(), "any revocation clears them");
    }

    #[test]
    fn recent_credentials_are_bounded_oldest_first() {
        let cache = ReadCache::new(true);
        for i in 0..RECENT_CREDENTIALS + 10 {
            cache.put_refresh_token(&refresh_token(&format!("t{i}")), cache.generation());
        }
        assert!(cache.refresh_token("t0").is_none(), "the oldest left first");
        assert!(cache.refresh_token("t9").is_none());
        assert!(cache.refresh_token("t10").is_some());
        assert!(cache.refresh_token(&format!("t{}", RECENT_CREDENTIALS + 9)).is_some());
        assert_eq!(cache.refresh_tokens.map.len(), RECENT_CREDENTIALS);
        // Spent entries leave the map at once; their slots in the order are reused later.
        cache.forget_spent(&Spend::RefreshToken { token_hash: "t10".into() });
        assert!(cache.refresh_token("t10").is_none());
        cache.put_refresh_token(&refresh_token("new"), cache.generation());
        assert!(cache.refresh_token("new").is_some());
        assert!(cache.refresh_tokens.order.lock().unwrap().len() <= RECENT_CREDENTIALS);
    }

    #[test]
    fn disabled_cache_keeps_tokens_sessions_and_users_out_but_clients_in() {
        let cache = ReadCache::new(false);
        cache.put_session(&session("s1"), cache.generation());
        assert!(cache.session("s1").is_none());
        let client = Client {
            client_id: "c".into(),
            name: "n".into(),
            secret_hash: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            frontchannel_logout_uri: None,
            first_party: false,
            allowed_scopes: vec![],
            enabled: true,
            created_at: 0,
            dynamically_registered: false,
            allow_no_pkce: false,
        };
        cache.put_client(&client, cache.generation());
        assert_eq!(cache.client("c"), Some(client));
    }
}
