//! A read cache for the hottest lookups: validated access tokens by hash and grant families by id
//! (every userinfo, introspection and refresh), user profiles by DID and SSO sessions by sid
//! (every token request and userinfo call), clients (every back-channel request), and the unused
//! authorization codes we just issued (the next token request presents them).
//!
//! Every entry is only as good as the invalidation story of its store (DESIGN.md):
//! - SQLite: this process is the only server writing them; every revocation, profile update,
//!   session end and client change goes through `Store` here and clears what it changes, so
//!   answers are exactly as fresh as the database's. The `atsso clients ...` CLI is another
//!   process and cannot reach this cache, so a cached client is trusted for `CLIENT_TTL` only.
//!   (It also revokes the client's tokens behind this process's back; a cached access-token
//!   record of it stays unrevoked here, but `oidc::access` also refuses tokens of a disabled or
//!   deleted client, so such a token stops working within `CLIENT_TTL`.)
//! - Postgres (several nodes, and the CLI): every change that clears entries is also announced
//!   with `NOTIFY` (`invalidation`), and each server's listener applies what other nodes
//!   announce. The caches are trusted only while that listener is connected: until it first
//!   listens, and from a lost connection until it listens again, every lookup reads the
//!   database and nothing is filled (`distrust`/`trust` flush everything). A process without a
//!   listener (the CLI) never trusts them.
//!
//! A lookup that misses reads the database and then fills the cache; a change that lands between
//! that read and the fill must not leave the old row cached. Every invalidation therefore bumps a
//! generation counter before it removes entries, and a fill only stands if the generation is the
//! one seen before the read (`generation()` → read → `put_*(.., seen)`).
//!
//! Codes are one-time credentials: an entry is put when one is issued (after the write commits),
//! removed when it is spent, and every revocation clears them all. A grant family is put when it
//! is read and again after each rotation this node makes; on Postgres another node's rotation
//! leaves its generation behind (rotations are not announced, revocations are). Either entry only
//! decides whether a request is worth signing for: spending is a compare-and-set in the database
//! (`tokens::spend_and_store`), which refuses a spent code, an old generation or a revoked family
//! whatever the cache said, and a lost compare-and-set is judged from the database.
//!
//! Every map is a `moka` cache bounded in entries (10,000 looked-up rows, 4,096 just-issued
//! codes): when one is full, single entries leave (TinyLFU for looked-up rows,
//! least recently used first for credentials) rather than the whole map. `invalidate_all`
//! hides every entry inserted before it at once, which is what `forget_tokens` relies on.
use std::{
    fmt,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
    time::Duration,
};

use moka::{policy::EvictionPolicy, sync::Cache};

use super::{
    clients::Client,
    grants::AuthorizationCode,
    sessions::SsoSession,
    tokens::{AccessTokenRecord, GrantFamily},
    users::UserProfile,
};

/// How long a cached client row is used before it is read again, on SQLite (the CLI changes
/// clients without reaching this cache). On Postgres every change is announced instead.
pub const CLIENT_TTL: Duration = Duration::from_secs(2);

/// Entries kept per map of looked-up rows (a few MiB per map; a miss costs one indexed read).
const MAX_ENTRIES: u64 = 10_000;

/// Just-issued codes and refresh tokens kept; the least recently used goes first (they are
/// presented within seconds of being issued, or not at all).
const RECENT_CREDENTIALS: u64 = 4_096;

type Map<V> = Cache<String, V>;

fn lookups<V: Clone + Send + Sync + 'static>() -> Map<V> {
    Cache::builder().max_capacity(MAX_ENTRIES).build()
}

/// One-time credentials: a newly issued one must not be turned away for a frequent older one
/// (TinyLFU's admission would), so the oldest unused one leaves first.
fn recent<V: Clone + Send + Sync + 'static>() -> Map<V> {
    Cache::builder().max_capacity(RECENT_CREDENTIALS).eviction_policy(EvictionPolicy::lru()).build()
}

/// Removes the entries `keep` refuses (a sweep; the maps are small).
fn retain<V: Clone + Send + Sync + 'static>(map: &Map<V>, keep: impl Fn(&V) -> bool) {
    for (key, value) in map.iter() {
        if !keep(&value) {
            map.invalidate(key.as_str());
        }
    }
}

pub struct ReadCache {
    /// False while changes made elsewhere might not reach us (Postgres without a listening
    /// connection): lookups miss and fills are dropped.
    trusted: AtomicBool,
    generation: AtomicU64,
    /// Validated access tokens by the SHA-256 of the whole token.
    access_tokens: Map<AccessTokenRecord>,
    families: Map<GrantFamily>,
    codes: Map<AuthorizationCode>,
    users: Map<UserProfile>,
    sessions: Map<SsoSession>,
    /// Until when a session's upstream grant was seen usable (unix seconds; see `sso::upstream`).
    upstream_usable: Map<i64>,
    clients: Map<Client>,
}

/// Sizes only: the entries are credentials.
impl fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCache")
            .field("trusted", &self.trusted())
            .field("generation", &self.generation())
            .field("access_tokens", &self.access_tokens.entry_count())
            .field("families", &self.families.entry_count())
            .field("codes", &self.codes.entry_count())
            .field("users", &self.users.entry_count())
            .field("sessions", &self.sessions.entry_count())
            .field("clients", &self.clients.entry_count())
            .finish()
    }
}

impl ReadCache {
    /// SQLite: trusted from the start; clients for `CLIENT_TTL` (the CLI does not announce).
    pub fn exact() -> Self {
        Self::new(true, Some(CLIENT_TTL))
    }

    /// Postgres: every change is announced, so no entry needs a lifetime, but nothing is
    /// trusted until `trust` (the invalidation listener is connected).
    pub fn announced() -> Self {
        Self::new(false, None)
    }

    fn new(trusted: bool, client_ttl: Option<Duration>) -> Self {
        let mut clients = Cache::builder().max_capacity(MAX_ENTRIES);
        if let Some(ttl) = client_ttl {
            clients = clients.time_to_live(ttl);
        }
        Self {
            trusted: AtomicBool::new(trusted),
            generation: AtomicU64::new(0),
            access_tokens: lookups(),
            families: lookups(),
            codes: recent(),
            users: lookups(),
            sessions: lookups(),
            upstream_usable: lookups(),
            clients: clients.build(),
        }
    }

    pub fn trusted(&self) -> bool {
        self.trusted.load(SeqCst)
    }

    /// Changes may go unannounced from now on (the listen connection is lost or not yet up):
    /// bypass and empty every map.
    pub fn distrust(&self) {
        self.trusted.store(false, SeqCst);
        self.forget_all();
    }

    /// Listening again: what changed meanwhile was not announced, so empty every map (and
    /// void fills that read before now) before trusting entries again.
    pub fn trust(&self) {
        self.forget_all();
        self.trusted.store(true, SeqCst);
    }

    /// Forgets everything (a lost connection, or an announcement we cannot read).
    pub fn forget_all(&self) {
        self.bump();
        self.access_tokens.invalidate_all();
        self.families.invalidate_all();
        self.codes.invalidate_all();
        self.users.invalidate_all();
        self.sessions.invalidate_all();
        self.upstream_usable.invalidate_all();
        self.clients.invalidate_all();
    }

    /// Take this before reading the database for a later `put_*`.
    pub fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    fn fill<V: Clone + Send + Sync + 'static>(&self, map: &Map<V>, key: &str, value: V, seen: u64) {
        if !self.trusted() || self.generation() != seen {
            return;
        }
        map.insert(key.to_owned(), value);
        // An invalidation raced with this fill: it may have removed before we inserted.
        if self.generation() != seen {
            map.invalidate(key);
        }
    }

    /// Called after the database change is committed, before entries are removed.
    fn bump(&self) {
        self.generation.fetch_add(1, SeqCst);
    }

    fn lookup<V: Clone + Send + Sync + 'static>(&self, map: &Map<V>, key: &str) -> Option<V> {
        if self.trusted() {
            map.get(key)
        } else {
            None
        }
    }

    pub fn access_token(&self, token_hash: &str) -> Option<AccessTokenRecord> {
        self.lookup(&self.access_tokens, token_hash)
    }

    pub fn put_access_token(&self, token_hash: &str, record: &AccessTokenRecord, seen: u64) {
        self.fill(&self.access_tokens, token_hash, record.clone(), seen);
    }

    pub fn family(&self, family_id: &str) -> Option<GrantFamily> {
        self.lookup(&self.families, family_id)
    }

    /// A family as read, or as it stands after a rotation this node made (`seen` taken before).
    pub fn put_family(&self, family: &GrantFamily, seen: u64) {
        self.fill(&self.families, &family.family_id, family.clone(), seen);
    }

    /// An unused authorization code issued by this process.
    pub fn code(&self, code_hash: &str) -> Option<AuthorizationCode> {
        self.lookup(&self.codes, code_hash)
    }

    pub fn put_code(&self, code: &AuthorizationCode, seen: u64) {
        self.fill(&self.codes, &code.code_hash, code.clone(), seen);
    }

    /// A code was spent: from now on it is judged from the database. No generation bump: the
    /// spend itself was the database's compare-and-set.
    pub fn forget_code(&self, code_hash: &str) {
        self.codes.invalidate(code_hash);
    }

    /// Any revocation: forget every validated access token, grant family and code (revocations
    /// are rare; lookups refill).
    pub fn forget_tokens(&self) {
        self.bump();
        self.access_tokens.invalidate_all();
        self.families.invalidate_all();
        self.codes.invalidate_all();
    }

    /// Drops entries that can no longer be used (the sweeper deletes their rows). Clients
    /// expire by themselves after `CLIENT_TTL` on SQLite, and stay until changed on Postgres.
    pub fn forget_expired(&self, now: i64) {
        retain(&self.access_tokens, |record| record.expires_at > now);
        retain(&self.families, |family| family.expires_at > now);
        retain(&self.codes, |code| code.expires_at > now);
        retain(&self.sessions, |session| session.expires_at > now && session.ended_at.is_none());
        retain(&self.upstream_usable, |until| *until > now);
        // Frees what was invalidated, evicted or expired since the last write (moka does this
        // on writes; the sweep also covers a quiet process).
        self.access_tokens.run_pending_tasks();
        self.families.run_pending_tasks();
        self.codes.run_pending_tasks();
        self.users.run_pending_tasks();
        self.sessions.run_pending_tasks();
        self.clients.run_pending_tasks();
    }

    pub fn user(&self, did: &str) -> Option<UserProfile> {
        self.lookup(&self.users, did)
    }

    pub fn put_user(&self, user: &UserProfile, seen: u64) {
        self.fill(&self.users, &user.did, user.clone(), seen);
    }

    pub fn forget_user(&self, did: &str) {
        self.bump();
        self.users.invalidate(did);
    }

    pub fn session(&self, sid: &str) -> Option<SsoSession> {
        self.lookup(&self.sessions, sid)
    }

    pub fn put_session(&self, session: &SsoSession, seen: u64) {
        self.fill(&self.sessions, &session.sid, session.clone(), seen);
    }

    pub fn forget_session(&self, sid: &str) {
        self.bump();
        self.sessions.invalidate(sid);
        self.upstream_usable.invalidate(sid);
    }

    /// Until when the session's upstream grant was last seen usable, if this node knows.
    pub fn upstream_usable_until(&self, sid: &str) -> Option<i64> {
        self.lookup(&self.upstream_usable, sid)
    }

    pub fn put_upstream_usable_until(&self, sid: &str, until: i64, seen: u64) {
        self.fill(&self.upstream_usable, sid, until, seen);
    }

    /// This node changed the session's upstream grant: read it again next time.
    pub fn forget_upstream(&self, sid: &str) {
        self.bump();
        self.upstream_usable.invalidate(sid);
    }

    /// A cached client (on SQLite younger than `CLIENT_TTL`).
    pub fn client(&self, client_id: &str) -> Option<Client> {
        self.lookup(&self.clients, client_id)
    }

    pub fn put_client(&self, client: &Client, seen: u64) {
        self.fill(&self.clients, &client.client_id, client.clone(), seen);
    }

    pub fn forget_client(&self, client_id: &str) {
        self.bump();
        self.clients.invalidate(client_id);
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
        let cache = ReadCache::exact();
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

    fn family(id: &str) -> GrantFamily {
        GrantFamily {
            family_id: id.into(),
            client_id: "c".into(),
            did: "did:plc:a".into(),
            sid: "s".into(),
            scope: "openid".into(),
            auth_time: 1,
            created_at: 1,
            generation: 1,
            retry_generation: None,
            rotated_at: None,
            expires_at: 100,
            revoked_at: None,
        }
    }

    fn code(hash: &str) -> AuthorizationCode {
        AuthorizationCode {
            code_hash: hash.into(),
            family_id: "f".into(),
            client_id: "c".into(),
            did: "did:plc:a".into(),
            sid: "s".into(),
            redirect_uri: "https://app.example/cb".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: None,
            auth_time: 1,
            created_at: 1,
            expires_at: 100,
            used_at: None,
        }
    }

    #[test]
    fn families_leave_the_cache_when_revoked_or_expired() {
        let cache = ReadCache::exact();
        // Read before a revocation committed: the entry must not stand.
        let seen = cache.generation();
        cache.forget_tokens();
        cache.put_family(&family("raced"), seen);
        assert!(cache.family("raced").is_none());

        cache.put_family(&family("a"), cache.generation());
        assert_eq!(cache.family("a").map(|f| f.family_id), Some("a".to_owned()));
        cache.forget_expired(100);
        assert!(cache.family("a").is_none(), "expired");
        cache.put_family(&family("c"), cache.generation());
        cache.forget_tokens();
        assert!(cache.family("c").is_none(), "any revocation clears them");
    }

    #[test]
    fn recent_credentials_are_bounded_oldest_first() {
        let cache = ReadCache::exact();
        let extra = 10;
        for i in 0..RECENT_CREDENTIALS + extra {
            cache.put_code(&code(&format!("t{i}")), cache.generation());
        }
        cache.codes.run_pending_tasks();
        assert!(cache.code("t0").is_none(), "the oldest left first");
        assert!(cache.code(&format!("t{}", extra - 1)).is_none());
        assert!(cache.code(&format!("t{extra}")).is_some());
        assert!(cache.code(&format!("t{}", RECENT_CREDENTIALS + extra - 1)).is_some());
        assert_eq!(cache.codes.entry_count(), RECENT_CREDENTIALS);
        // Spent entries leave at once, and make room.
        cache.forget_code(&format!("t{extra}"));
        assert!(cache.code(&format!("t{extra}")).is_none());
        cache.put_code(&code("new"), cache.generation());
        cache.codes.run_pending_tasks();
        assert!(cache.code("new").is_some());
        assert!(cache.code(&format!("t{}", extra + 1)).is_some(), "nothing else had to leave");
        assert_eq!(cache.codes.entry_count(), RECENT_CREDENTIALS);
    }

    /// The maps of looked-up rows lose single entries when full, not everything at once.
    #[test]
    fn lookups_are_bounded_without_emptying_the_map() {
        let cache = ReadCache::exact();
        let first = session("first");
        cache.put_session(&first, cache.generation());
        // A hot entry: read often, so the admission policy keeps it.
        for _ in 0..10 {
            assert!(cache.session("first").is_some());
        }
        for i in 0..MAX_ENTRIES + 100 {
            cache.put_session(&session(&format!("s{i}")), cache.generation());
        }
        cache.sessions.run_pending_tasks();
        assert!(cache.sessions.entry_count() <= MAX_ENTRIES);
        assert!(cache.sessions.entry_count() > MAX_ENTRIES / 2, "the map was not emptied");
        assert!(cache.session("first").is_some(), "the hot entry stayed");
    }

    #[test]
    fn revocations_hide_every_token_entry_at_once() {
        let cache = ReadCache::exact();
        for i in 0..100 {
            cache.put_family(&family(&format!("r{i}")), cache.generation());
        }
        let record = AccessTokenRecord {
            jti: "f.1".into(),
            family_id: "f".into(),
            client_id: "c".into(),
            did: "did:plc:a".into(),
            sid: "s".into(),
            scope: "openid".into(),
            issued_at: 1,
            expires_at: i64::MAX,
        };
        let seen = cache.generation();
        cache.put_access_token("at", &record, seen);
        assert!(cache.access_token("at").is_some());
        cache.forget_tokens();
        assert!(cache.access_token("at").is_none());
        assert!((0..100).all(|i| cache.family(&format!("r{i}")).is_none()));
        // A fill that read the row before the revocation does not stand.
        cache.put_access_token("at", &record, seen);
        assert!(cache.access_token("at").is_none());
    }

    fn client(id: &str) -> Client {
        Client {
            client_id: id.into(),
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
            access_token_alg: None,
            atproto_scopes: Vec::new(),
        }
    }

    /// Postgres before the listener is up, or after its connection was lost: nothing is
    /// served or kept, and a fill that read before `trust` does not stand after it.
    #[test]
    fn an_untrusted_cache_serves_and_keeps_nothing() {
        let cache = ReadCache::announced();
        cache.put_session(&session("s1"), cache.generation());
        cache.put_client(&client("c"), cache.generation());
        assert!(cache.session("s1").is_none());
        assert!(cache.client("c").is_none());

        let read_while_untrusted = cache.generation();
        cache.trust();
        cache.put_session(&session("s1"), read_while_untrusted);
        assert!(cache.session("s1").is_none(), "read before the listener was up");
        cache.put_session(&session("s1"), cache.generation());
        cache.put_client(&client("c"), cache.generation());
        assert!(cache.session("s1").is_some());
        assert_eq!(cache.client("c"), Some(client("c")));

        let seen = cache.generation();
        cache.distrust();
        assert!(cache.session("s1").is_none() && cache.client("c").is_none(), "bypassed");
        cache.trust();
        assert!(cache.session("s1").is_none() && cache.client("c").is_none(), "flushed, not just hidden");
        cache.put_session(&session("s1"), seen);
        assert!(cache.session("s1").is_none(), "read before the connection was lost");
    }

    #[test]
    fn sqlite_trusts_from_the_start() {
        let cache = ReadCache::exact();
        cache.put_client(&client("c"), cache.generation());
        assert_eq!(cache.client("c"), Some(client("c")));
    }
}
