//! The startup lock: several nodes started at once on one Postgres database take turns at
//! migrating and at generating what exists once (the first signing keys, the ATProto client
//! key), so they all end up with the same schema and the same keys.
//!
//! A session-level advisory lock belongs to the connection that took it, so it is held on one
//! dedicated connection, detached from the pool: released explicitly, and released by Postgres
//! if this process dies (the connection closes). On SQLite (one node) it is a no-op.
use sea_orm::{sqlx, ConnectionTrait, DbErr, RuntimeErr};

use super::{Store, StoreResult};

/// The advisory lock key: "atsso" + a version byte, fixed forever (every node must agree).
const STARTUP_LOCK_KEY: i64 = 0x6174_7373_6f00_0001;

/// Held until `release` (or until dropped: the connection closes and Postgres releases it).
pub struct StartupLock {
    connection: Option<sqlx::PgConnection>,
}

fn db_error(e: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(e))
}

impl Store {
    /// Waits for the startup lock (Postgres); returns at once on SQLite.
    pub async fn startup_lock(&self) -> StoreResult<StartupLock> {
        if self.db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(StartupLock { connection: None });
        }
        // Detached: never handed back to the pool while it holds the lock.
        let mut connection = self.db.get_postgres_connection_pool().acquire().await.map_err(db_error)?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)").bind(STARTUP_LOCK_KEY).execute(&mut connection).await.map_err(db_error)?;
        Ok(StartupLock { connection: Some(connection) })
    }
}

impl StartupLock {
    pub async fn release(mut self) -> StoreResult<()> {
        if let Some(mut connection) = self.connection.take() {
            use sqlx::Connection;
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(STARTUP_LOCK_KEY).execute(&mut connection).await.map_err(db_error)?;
            connection.close().await.map_err(db_error)?;
        }
        Ok(())
    }
}
