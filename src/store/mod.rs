//! The only module that speaks SQL (through sea-orm). SQLite by default, Postgres for several nodes.
pub mod admin;
pub mod cache;
pub mod clients;
pub mod entities;
pub mod grants;
pub mod invalidation;
pub mod keys;
pub mod logout;
pub mod outbox;
pub mod sessions;
pub mod startup_lock;
pub mod tokens;
pub mod upstream;
pub mod users;
pub mod writer;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(DbErr),
    /// The database cannot be reached (down, restarting, no connection within the acquire
    /// timeout): the request may succeed when retried, so callers answer 503 with Retry-After.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("already exists")]
    Conflict,
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            StoreError::Unavailable(err)
        } else {
            StoreError::Db(err)
        }
    }
}

/// Errors that say the database is out of reach rather than that the statement failed: no
/// connection from the pool in time, a connection refused or reset, or a server shutting down
/// or starting up (SQLSTATE class 08 and 57P01–57P03).
fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::{sqlx::Error as Sqlx, RuntimeErr};
    let runtime = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed | Sqlx::Tls(_)) => true,
        RuntimeErr::SqlxError(Sqlx::Database(db)) => {
            db.code().is_some_and(|code| code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads.
    pub(crate) db: DatabaseConnection,
    /// Writes. With SQLite, one connection: SQLite has a single writer anyway, and queueing
    /// writers in-process is far cheaper than letting them collide on the file lock and sleep
    /// in the busy handler. With Postgres, the same pool as reads.
    pub(crate) writer: DatabaseConnection,
    /// The hot writes (codes, token rotation, token records): group commit on SQLite.
    pub(crate) write_queue: writer::Writer,
    pub(crate) cache: std::sync::Arc<cache::ReadCache>,
    /// Announcing changes to other nodes and hearing theirs (`invalidation`).
    pub(crate) invalidation: std::sync::Arc<invalidation::Invalidation>,
    /// Wakes this process's outbox worker when this handle queues work.
    pub(crate) outbox_wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Store {
    /// Connects and runs pending migrations (under the startup lock: nodes take turns). On
    /// Postgres the read cache stays bypassed until `start_invalidation_listener` listens (a
    /// process without it, like the CLI, reads the database every time).
    pub async fn connect(database_url: &str, max_connections: u32) -> StoreResult<Self> {
        let db = Database::connect(connect_options(database_url, max_connections, READER_CACHE_KIB)).await?;
        let writer = if database_url.starts_with("sqlite:") {
            Database::connect(connect_options(database_url, 1, WRITER_CACHE_KIB)).await?
        } else {
            db.clone()
        };
        let sqlite = database_url.starts_with("sqlite:");
        let write_queue = if sqlite { writer::Writer::batched(writer.clone()) } else { writer::Writer::direct(writer.clone()) };
        let (cache, listen_url) =
            if sqlite { (cache::ReadCache::exact(), None) } else { (cache::ReadCache::announced(), Some(database_url.to_owned())) };
        let invalidation = std::sync::Arc::new(invalidation::Invalidation::new(listen_url));
        let store = Self { db, writer, write_queue, cache: std::sync::Arc::new(cache), invalidation, outbox_wake: Default::default() };
        let lock = store.startup_lock().await?;
        Migrator::up(&store.db, None).await?;
        lock.release().await?;
        Ok(store)
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.db.get_database_backend(), sea_orm::DatabaseBackend::Sqlite)
    }

    /// Connections of the pools (readers and, with SQLite, the writer), for `/metrics`.
    pub fn pool_usage(&self) -> PoolUsage {
        let mut usage = PoolUsage::default();
        let mut add = |connection: &DatabaseConnection| match connection.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => {
                let pool = connection.get_sqlite_connection_pool();
                usage.add(pool.size(), pool.num_idle(), pool.options().get_max_connections());
            }
            _ => {
                let pool = connection.get_postgres_connection_pool();
                usage.add(pool.size(), pool.num_idle(), pool.options().get_max_connections());
            }
        };
        add(&self.db);
        if self.is_sqlite() {
            add(&self.writer);
        }
        usage
    }

    /// A `SELECT 1` within `timeout` (readiness).
    pub async fn ping(&self, timeout: Duration) -> StoreResult<()> {
        match tokio::time::timeout(timeout, self.db.execute_unprepared("SELECT 1")).await {
            Ok(result) => result.map(|_| ()).map_err(StoreError::Db),
            Err(_) => Err(StoreError::Db(DbErr::Custom(format!("no answer within {} ms", timeout.as_millis())))),
        }
    }

    /// Commits every write queued so far, then closes the pools (at shutdown). Later writes fail.
    pub async fn close(&self) -> StoreResult<()> {
        self.write_queue.flush().await?;
        self.writer.close_by_ref().await?;
        self.db.close_by_ref().await?;
        Ok(())
    }

    /// Deletes rows that can no longer matter. Returns how many rows were removed.
    pub async fn sweep_expired(&self, now: i64) -> StoreResult<u64> {
        let mut removed = 0;
        removed += grants::sweep(&self.writer, now).await?;
        removed += tokens::sweep(&self.writer, now).await?;
        removed += sessions::sweep(&self.writer, now).await?;
        removed += upstream::sweep(&self.writer, now).await?;
        removed += outbox::sweep(&self.writer, now).await?;
        self.cache.forget_expired(now);
        Ok(removed)
    }
}

/// Pool connections by state, summed over our pools.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolUsage {
    fn add(&mut self, size: u32, idle: usize, max: u32) {
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        self.in_use += size - idle;
        self.idle += idle;
        self.max += max;
    }
}

/// SQLite page cache per connection. The hot rows are in the server's own read cache, so the
/// readers need little; the writer keeps the upper levels of the code and grant-family indexes it
/// writes to (a million grants: about 1 MiB of interior pages; leaves come from the OS page cache).
const READER_CACHE_KIB: u32 = 2_000;
/// How long a request waits for a database connection before it is answered 503.
pub const DATABASE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
const WRITER_CACHE_KIB: u32 = 4_000;

fn connect_options(database_url: &str, max_connections: u32, cache_kib: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(database_url.to_owned());
    // A request waits at most DATABASE_ACQUIRE_TIMEOUT for a connection: while the database is
    // down, requests fail fast (503) instead of piling up.
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(DATABASE_ACQUIRE_TIMEOUT)
        .acquire_timeout(DATABASE_ACQUIRE_TIMEOUT)
        .sqlx_logging(false);
    if database_url.starts_with("sqlite:") {
        // A local file cannot have "gone away": skip sqlx's liveness ping before every use
        // (one more round trip to the connection's thread per statement).
        options.test_before_acquire(false);
        options.map_sqlx_sqlite_opts(move |opts| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL lets readers run beside the single writer; NORMAL sync is durable in WAL
            // mode except for the last transactions on power loss.
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                // A negative cache_size is in KiB.
                .pragma("cache_size", format!("-{cache_kib}"))
                .pragma("temp_store", "memory")
                // Checkpoint every 256 WAL pages (1 MiB) instead of SQLite's 1,000: the copy
                // back and its fsync run inside a commit and hold up every write queued behind
                // it; shorter, more frequent stalls cut token/refresh p99 by half at low load
                // (BENCHMARKS.md) at no cost in throughput.
                .pragma("wal_autocheckpoint", "256")
        });
    }
    options
}

/// Encodes a list as the JSON text stored in a column.
pub(crate) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn from_json_list(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Maps a unique-constraint violation to `Conflict`.
pub(crate) fn conflict_or(err: DbErr) -> StoreError {
    let text = err.to_string().to_ascii_lowercase();
    if text.contains("unique") || text.contains("duplicate") {
        StoreError::Conflict
    } else {
        StoreError::Db(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_unavailable_and_a_failed_statement_is_not() {
        use sea_orm::{sqlx, ConnAcquireErr, RuntimeErr};
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        for err in [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::Conn(RuntimeErr::SqlxError(sqlx::Error::Io(refused))),
            DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::PoolTimedOut)),
        ] {
            assert!(matches!(StoreError::from(err), StoreError::Unavailable(_)));
        }
        for err in [DbErr::RecordNotFound("x".into()), DbErr::Query(RuntimeErr::Internal("syntax".into()))] {
            assert!(matches!(StoreError::from(err), StoreError::Db(_)));
        }
    }
}
