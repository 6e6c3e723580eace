//! Telling every node what changed, so each can keep its read cache (`cache`) on Postgres.
//!
//! Every `Store` change that makes cached entries stale commits through `commit_and_forget`:
//! on Postgres the change is announced with `pg_notify('atsso_invalidate', '<kind>[:<key>]')`
//! inside the same transaction (Postgres delivers it at commit, so never for a rolled-back
//! change, never before the change is visible), then this process forgets the entries.
//! Payloads: `client:<id>`, `session:<sid>`, `user:<did>`, `tokens` (every token entry),
//! `keys` (signing keys changed) and `all`.
//!
//! Each server process runs one listener (`start_invalidation_listener`): a `LISTEN`
//! connection that applies what arrives. Notifications sent while it is not connected are lost
//! for good, so while it is not listening (start-up, a lost connection, reconnecting) the cache
//! is distrusted: emptied and bypassed until the listener is back, then emptied once more.
//! A connection that dies silently (no FIN/RST: a cut network, a frozen server) would only be
//! noticed after the kernel's TCP keepalive (hours by default); a `SELECT 1` on the listen
//! connection every `LIVENESS_INTERVAL`, answered within `LIVENESS_TIMEOUT`, bounds that.
use std::{
    str::FromStr,
    sync::{Arc, Weak},
    time::Duration,
};

use sea_orm::{
    sqlx::{
        self,
        postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    },
    ConnectionTrait, DatabaseTransaction, DbBackend, Statement,
};
use tokio::sync::watch;

use super::{cache::ReadCache, Store, StoreResult};

/// The `LISTEN`/`NOTIFY` channel.
pub const CHANNEL: &str = "atsso_invalidate";

/// `application_name` of the listen connection (operators and tests find its backend by it).
pub const APPLICATION_NAME: &str = "atsso-invalidation";

/// How often the listen connection is checked, and how long its answer may take: a silently
/// dead connection is noticed within the sum (4 s).
pub const LIVENESS_INTERVAL: Duration = Duration::from_secs(2);
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnect backoff: the first retry comes quickly, then doubles up to the cap.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Postgres refuses payloads of 8,000 bytes or more; a longer key is announced as `all`.
const MAX_PAYLOAD: usize = 7_000;

/// What a change made stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Client(String),
    Session(String),
    User(String),
    /// Every access-token record, unspent refresh token and code (revocations are rare).
    Tokens,
    /// The signing keys (the key ring reloads).
    Keys,
    /// Everything: what we send for a key too long to announce, and what an announcement we
    /// cannot read means.
    All,
}

impl Change {
    pub fn payload(&self) -> String {
        let payload = match self {
            Change::Client(id) => format!("client:{id}"),
            Change::Session(sid) => format!("session:{sid}"),
            Change::User(did) => format!("user:{did}"),
            Change::Tokens => "tokens".into(),
            Change::Keys => "keys".into(),
            Change::All => "all".into(),
        };
        if payload.len() > MAX_PAYLOAD {
            "all".into()
        } else {
            payload
        }
    }

    /// Reads a payload; anything unexpected (another version's kind, an empty key) is `All`,
    /// so the worst a bad payload does is empty the cache.
    pub fn parse(payload: &str) -> Self {
        let keyed = |key: &str, make: fn(String) -> Change| if key.is_empty() { Change::All } else { make(key.to_owned()) };
        match payload.split_once(':') {
            Some(("client", id)) => keyed(id, Change::Client),
            Some(("session", sid)) => keyed(sid, Change::Session),
            Some(("user", did)) => keyed(did, Change::User),
            Some(_) => Change::All,
            None => match payload {
                "tokens" => Change::Tokens,
                "keys" => Change::Keys,
                _ => Change::All,
            },
        }
    }
}

/// The per-process side of invalidation: where to listen, and who wants to hear of new keys.
#[derive(Debug)]
pub(crate) struct Invalidation {
    /// Postgres URL for the listen connection; None with SQLite (nothing to listen to).
    listen_url: Option<String>,
    /// Bumped on every change of signing keys, here or announced (and after a reconnect: one
    /// may have been missed).
    keys_changed: watch::Sender<u64>,
    started: std::sync::atomic::AtomicBool,
}

impl Invalidation {
    pub(crate) fn new(listen_url: Option<String>) -> Self {
        Self { listen_url, keys_changed: watch::Sender::new(0), started: Default::default() }
    }

    fn keys_changed(&self) {
        self.keys_changed.send_modify(|generation| *generation += 1);
    }
}

/// Applies one change to this process's cache.
fn forget(cache: &ReadCache, invalidation: &Invalidation, change: &Change) {
    match change {
        Change::Client(id) => cache.forget_client(id),
        Change::Session(sid) => cache.forget_session(sid),
        Change::User(did) => cache.forget_user(did),
        Change::Tokens => cache.forget_tokens(),
        Change::Keys => invalidation.keys_changed(),
        Change::All => {
            cache.forget_all();
            invalidation.keys_changed();
        }
    }
}

fn notify_statement(change: &Change) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, "SELECT pg_notify($1, $2)", [CHANNEL.into(), change.payload().into()])
}

impl Store {
    /// Commits `txn` with `changes` announced to every node (on Postgres, in the transaction),
    /// then forgets them in this process's cache. Every write that makes cached entries stale
    /// ends here.
    pub(crate) async fn commit_and_forget(&self, txn: DatabaseTransaction, changes: &[Change]) -> StoreResult<()> {
        if !self.is_sqlite() {
            for change in changes {
                txn.execute(notify_statement(change)).await?;
            }
        }
        txn.commit().await?;
        for change in changes {
            forget(&self.cache, &self.invalidation, change);
        }
        Ok(())
    }

    /// Tells every node (and this one) that the signing keys changed; called after the change
    /// is committed.
    pub async fn announce_keys_changed(&self) -> StoreResult<()> {
        if !self.is_sqlite() {
            self.writer.execute(notify_statement(&Change::Keys)).await?;
        }
        self.invalidation.keys_changed();
        Ok(())
    }

    /// Changes when the signing keys may have changed (announced by any node, or rotated here).
    pub fn key_changes(&self) -> watch::Receiver<u64> {
        self.invalidation.keys_changed.subscribe()
    }

    /// True when cached entries are used: always with SQLite; with Postgres while the
    /// invalidation listener is connected.
    pub fn cache_trusted(&self) -> bool {
        self.cache.trusted()
    }

    /// The read cache's generation, taken before a read whose result a caller outside the store
    /// remembers (`remember_access_token`, `remember_upstream_usable_until`): a change that
    /// lands in between voids the fill.
    pub fn cache_generation(&self) -> u64 {
        self.cache.generation()
    }

    /// Starts this process's invalidation listener (Postgres; nothing to do on SQLite). Until
    /// it listens, lookups read the database. It stops once every clone of this `Store` is gone
    /// (or with the runtime). Calling it again does nothing.
    pub fn start_invalidation_listener(&self) {
        let Some(url) = self.invalidation.listen_url.clone() else {
            return;
        };
        if self.invalidation.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tokio::spawn(listen_forever(url, Arc::downgrade(&self.cache), Arc::downgrade(&self.invalidation)));
    }
}

/// Why a listen connection stopped being used.
enum Ended {
    StoreGone,
    Lost(String),
}

async fn listen_forever(url: String, cache: Weak<ReadCache>, invalidation: Weak<Invalidation>) {
    let mut retry = FIRST_RETRY;
    loop {
        // The cache is distrusted here: from `announced()` at start, below after a loss.
        match connect(&url).await {
            Ok(mut listener) => {
                let (Some(cache_now), Some(invalidation_now)) = (cache.upgrade(), invalidation.upgrade()) else {
                    return;
                };
                cache_now.trust();
                // A key change announced while we were not listening is lost: reload anyway.
                invalidation_now.keys_changed();
                drop((cache_now, invalidation_now));
                tracing::info!("listening for cache invalidations");
                retry = FIRST_RETRY;
                let reason = serve(&mut listener, &cache, &invalidation).await;
                let Some(cache_now) = cache.upgrade() else {
                    return;
                };
                cache_now.distrust();
                if let Ended::Lost(reason) = reason {
                    tracing::warn!(%reason, "cache invalidation connection lost; caches bypassed until it is back");
                }
            }
            Err(error) => {
                if cache.strong_count() == 0 {
                    return;
                }
                tracing::warn!(%error, "cannot listen for cache invalidations; caches bypassed, retrying")
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name(APPLICATION_NAME);
    // A pool of one, only to hand the listener its connection; reconnecting is ours.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection must surface as `Ok(None)`, never be replaced behind our back (the
    // notifications sent meanwhile are gone).
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Applies notifications until the connection is lost or the store is gone.
async fn serve(listener: &mut PgListener, cache: &Weak<ReadCache>, invalidation: &Weak<Invalidation>) -> Ended {
    let mut liveness = tokio::time::interval(LIVENESS_INTERVAL);
    liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    liveness.tick().await; // the first tick is immediate
    loop {
        // `try_recv` is cancel-safe (sqlx reads whole messages), so a tick may interrupt it.
        let received = tokio::select! {
            received = listener.try_recv() => Some(received),
            _ = liveness.tick() => None,
        };
        let (Some(cache), Some(invalidation)) = (cache.upgrade(), invalidation.upgrade()) else {
            return Ended::StoreGone;
        };
        match received {
            Some(Ok(Some(notification))) => forget(&cache, &invalidation, &Change::parse(notification.payload())),
            Some(Ok(None)) => return Ended::Lost("connection closed".into()),
            Some(Err(error)) => return Ended::Lost(error.to_string()),
            None => match tokio::time::timeout(LIVENESS_TIMEOUT, sqlx::query("SELECT 1").execute(&mut *listener)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Ended::Lost(error.to_string()),
                Err(_) => return Ended::Lost(format!("no answer to a liveness check within {LIVENESS_TIMEOUT:?}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for change in [
            Change::Client("c1".into()),
            Change::Session("s:with:colons".into()),
            Change::User("did:plc:abc".into()),
            Change::Tokens,
            Change::Keys,
            Change::All,
        ] {
            assert_eq!(Change::parse(&change.payload()), change);
        }
    }

    #[test]
    fn bad_payloads_mean_forget_everything() {
        for payload in ["", "client", "client:", "session:", "user:", "bogus", "bogus:key", ":x", "tokens:extra", "KEYS", "\0", "é:é"] {
            assert_eq!(Change::parse(payload), Change::All, "{payload:?}");
        }
    }

    #[test]
    fn a_key_too_long_for_notify_is_announced_as_all() {
        assert_eq!(Change::User("x".repeat(MAX_PAYLOAD)).payload(), "all");
        assert_eq!(Change::User("x".repeat(10)).payload(), "user:xxxxxxxxxx");
    }

    #[test]
    fn announcements_clear_the_cache() {
        use crate::store::sessions::SsoSession;
        let cache = ReadCache::exact();
        let invalidation = Invalidation::new(None);
        let keys = invalidation.keys_changed.subscribe();
        let session = SsoSession {
            sid: "s1".into(),
            secret_hash: "h".into(),
            did: "did:plc:a".into(),
            auth_time: 1,
            created_at: 1,
            expires_at: i64::MAX,
            ended_at: None,
        };
        cache.put_session(&session, cache.generation());
        forget(&cache, &invalidation, &Change::parse("session:other"));
        assert!(cache.session("s1").is_some());
        forget(&cache, &invalidation, &Change::parse("session:s1"));
        assert!(cache.session("s1").is_none());
        cache.put_session(&session, cache.generation());
        forget(&cache, &invalidation, &Change::parse("garbage"));
        assert!(cache.session("s1").is_none(), "an unreadable announcement empties the cache");
        assert_eq!(*keys.borrow(), 1, "and reloads keys");
        forget(&cache, &invalidation, &Change::parse("keys"));
        assert_eq!(*keys.borrow(), 2);
    }
}
