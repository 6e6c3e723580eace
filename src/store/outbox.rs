//! The outbox: work that must happen after a response (back-channel logout deliveries, upstream
//! grant revocations) as rows that any node claims and works through, so it survives restarts
//! and is not tied to the node that handled the request.
//!
//! A node claims due rows with a lease (`claimed_until`, `claimed_by`); on Postgres the claim
//! skips rows another node's claim is locking at that moment (`FOR UPDATE SKIP LOCKED`), so two
//! nodes never take the same row. A node that dies holding claims loses them when the lease runs
//! out. Each attempt's outcome clears the claim.
use std::sync::Arc;

use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait,
};
use tokio::sync::Notify;

use super::{
    entities::{client, grant_family, outbox_entry, sso_session, upstream_session},
    Store, StoreResult,
};
use crate::crypto::random_token;

pub use outbox_entry::Model as OutboxRow;

pub const BACKCHANNEL_LOGOUT: &str = "backchannel_logout";
pub const UPSTREAM_REVOKE: &str = "upstream_revoke";
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";
/// Every kind, for summaries.
pub const KINDS: [&str; 2] = [BACKCHANNEL_LOGOUT, UPSTREAM_REVOKE];

/// Delivered rows are kept this long (the admin sees what happened), failed ones longer.
const KEEP_DELIVERED_SECS: i64 = 24 * 3600;
const KEEP_FAILED_SECS: i64 = 7 * 24 * 3600;

impl OutboxRow {
    /// A back-channel logout token for `client_id` at `uri`, due now.
    pub fn backchannel(client_id: &str, uri: &str, sid: &str, did: &str, now: i64) -> Self {
        Self::new(BACKCHANNEL_LOGOUT, sid, did, Some(client_id.to_owned()), uri.to_owned(), None, now)
    }

    /// The revocation of an upstream grant (`tokens_sealed`) at `issuer`, due now.
    pub fn upstream_revoke(sid: &str, did: &str, issuer: String, tokens_sealed: String, now: i64) -> Self {
        Self::new(UPSTREAM_REVOKE, sid, did, None, issuer, Some(tokens_sealed), now)
    }

    fn new(kind: &str, sid: &str, did: &str, client_id: Option<String>, target: String, payload: Option<String>, now: i64) -> Self {
        Self {
            id: random_token(12),
            kind: kind.to_owned(),
            sid: sid.to_owned(),
            did: did.to_owned(),
            client_id,
            target,
            payload_sealed: payload,
            status: PENDING.to_owned(),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            claimed_by: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// What one attempt came to, before the retry policy (`sso::outbox`) is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// May work later (timeout, transport error, 5xx, 408, 429). The text never holds a secret.
    Retry(String),
    /// Will not work (refused target, other 4xx, client gone).
    Failed(String),
}

/// What one attempt at a row came to, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    Delivered,
    /// Try again at `at` (unix seconds).
    RetryAt {
        at: i64,
        error: String,
    },
    Failed {
        error: String,
    },
}

/// Names the display target of an upstream grant from its sealed tokens (the store cannot open them).
pub type UpstreamTarget<'a> = &'a (dyn Fn(&str) -> String + Sync);

impl Store {
    /// Ends the session `sid` of `did` and records what others must be told, in one transaction:
    /// the session ends, every token issued under it is revoked, a back-channel logout row is
    /// queued for every client that received tokens under it and has a back-channel URI, and
    /// the upstream grant moves from `upstream_sessions` into an `upstream_revoke` row. None
    /// when the session had already ended (nothing is changed then).
    pub async fn end_session_with_outbox(
        &self,
        sid: &str,
        did: &str,
        now: i64,
        upstream_target: UpstreamTarget<'_>,
    ) -> StoreResult<Option<Vec<OutboxRow>>> {
        let txn = self.writer.begin().await?;
        let ended = sso_session::Entity::update_many()
            .col_expr(sso_session::Column::EndedAt, Expr::value(now))
            .filter(sso_session::Column::Sid.eq(sid))
            .filter(sso_session::Column::EndedAt.is_null())
            .exec(&txn)
            .await?;
        if ended.rows_affected != 1 {
            txn.rollback().await?;
            self.cache.forget_session(sid);
            return Ok(None);
        }
        super::tokens::revoke_in(&txn, grant_family::Column::Sid.eq(sid), now).await?;
        let client_ids = super::logout::session_client_ids_in(&txn, sid).await?;
        let mut rows: Vec<OutboxRow> = Vec::new();
        if !client_ids.is_empty() {
            let told: Vec<(String, Option<String>)> = client::Entity::find()
                .select_only()
                .column(client::Column::ClientId)
                .column(client::Column::BackchannelLogoutUri)
                .filter(client::Column::ClientId.is_in(client_ids))
                .filter(client::Column::BackchannelLogoutUri.is_not_null())
                .order_by_asc(client::Column::ClientId)
                .into_tuple()
                .all(&txn)
                .await?;
            rows.extend(told.into_iter().filter_map(|(id, uri)| Some(OutboxRow::backchannel(&id, &uri?, sid, did, now))));
        }
        // Locked (on Postgres) so a refresh in flight cannot store new tokens we would not revoke.
        if let Some(grant) = upstream_session::Entity::find_by_id(sid.to_owned()).lock_exclusive().one(&txn).await? {
            upstream_session::Entity::delete_by_id(sid.to_owned()).exec(&txn).await?;
            rows.push(OutboxRow::upstream_revoke(sid, did, upstream_target(&grant.tokens_sealed), grant.tokens_sealed, now));
        }
        if !rows.is_empty() {
            outbox_entry::Entity::insert_many(rows.iter().cloned().map(outbox_entry::ActiveModel::from))
                .exec_without_returning(&txn)
                .await?;
        }
        // Every node forgets the session and the revoked tokens (LISTEN/NOTIFY on Postgres).
        self.commit_and_forget(txn, &[super::invalidation::Change::Session(sid.to_owned()), super::invalidation::Change::Tokens]).await?;
        self.wake_outbox(rows.len());
        Ok(Some(rows))
    }

    /// Queues the revocation of the upstream grant the session `sid` holds now (it is about to be
    /// replaced by a new sign-in, which bumps its version). False when it holds none.
    pub async fn enqueue_upstream_revoke(&self, sid: &str, now: i64, upstream_target: UpstreamTarget<'_>) -> StoreResult<bool> {
        let Some(grant) = upstream_session::Entity::find_by_id(sid.to_owned()).one(&self.writer).await? else {
            return Ok(false);
        };
        let target = upstream_target(&grant.tokens_sealed);
        self.insert_outbox_rows(&[OutboxRow::upstream_revoke(sid, &grant.did, target, grant.tokens_sealed, now)]).await?;
        Ok(true)
    }

    /// Queues rows and wakes this node's worker.
    pub async fn insert_outbox_rows(&self, rows: &[OutboxRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        outbox_entry::Entity::insert_many(rows.iter().cloned().map(outbox_entry::ActiveModel::from))
            .exec_without_returning(&self.writer)
            .await?;
        self.wake_outbox(rows.len());
        Ok(())
    }

    fn wake_outbox(&self, inserted: usize) {
        if inserted > 0 {
            self.outbox_wake.notify_one();
        }
    }

    /// Woken whenever this handle queues outbox rows (the worker of this node waits on it).
    pub fn outbox_wakeup(&self) -> Arc<Notify> {
        self.outbox_wake.clone()
    }

    /// Claims up to `limit` due rows for `node` until `lease_until`: pending, due, and not
    /// claimed by anyone whose lease still holds. On Postgres the rows another node is claiming
    /// at the same moment are skipped, not waited for.
    pub async fn claim_outbox(&self, node: &str, now: i64, lease_until: i64, limit: u64) -> StoreResult<Vec<OutboxRow>> {
        let backend = self.writer.get_database_backend();
        let (sql, lock) = match backend {
            DatabaseBackend::Postgres => (CLAIM_POSTGRES, "FOR UPDATE SKIP LOCKED"),
            // One writer: nobody can claim between our read and our write.
            _ => (CLAIM_SQLITE, ""),
        };
        let sql = sql.replace("{lock}", lock);
        let values: Vec<sea_orm::Value> =
            vec![lease_until.into(), node.into(), now.into(), PENDING.into(), now.into(), now.into(), (limit as i64).into()];
        let statement = Statement::from_sql_and_values(backend, sql, values);
        Ok(outbox_entry::Entity::find().from_raw_sql(statement).all(&self.writer).await?)
    }

    /// Records the outcome of attempt number `attempts` at row `id` and clears the claim, if
    /// `node` still holds it (a node whose lease ran out and was taken over writes nothing).
    pub async fn record_outbox_attempt(&self, id: &str, node: &str, attempts: i32, outcome: &Attempted, now: i64) -> StoreResult<bool> {
        let (status, next_attempt_at, error) = match outcome {
            Attempted::Delivered => (DELIVERED, None, None),
            Attempted::RetryAt { at, error } => (PENDING, Some(*at), Some(error.clone())),
            Attempted::Failed { error } => (FAILED, None, Some(error.clone())),
        };
        let mut update = outbox_entry::Entity::update_many()
            .col_expr(outbox_entry::Column::Status, Expr::value(status))
            .col_expr(outbox_entry::Column::Attempts, Expr::value(attempts))
            .col_expr(outbox_entry::Column::LastError, Expr::value(error))
            .col_expr(outbox_entry::Column::ClaimedUntil, Expr::value(Option::<i64>::None))
            .col_expr(outbox_entry::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .col_expr(outbox_entry::Column::UpdatedAt, Expr::value(now));
        if let Some(at) = next_attempt_at {
            update = update.col_expr(outbox_entry::Column::NextAttemptAt, Expr::value(at));
        }
        let result = update
            .filter(outbox_entry::Column::Id.eq(id))
            .filter(outbox_entry::Column::ClaimedBy.eq(node))
            .filter(outbox_entry::Column::Status.eq(PENDING))
            .exec(&self.writer)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Gives back every claim `node` holds on rows still pending, so other nodes take them at once.
    pub async fn release_outbox_claims(&self, node: &str) -> StoreResult<u64> {
        let result = outbox_entry::Entity::update_many()
            .col_expr(outbox_entry::Column::ClaimedUntil, Expr::value(Option::<i64>::None))
            .col_expr(outbox_entry::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .filter(outbox_entry::Column::ClaimedBy.eq(node))
            .filter(outbox_entry::Column::Status.eq(PENDING))
            .exec(&self.writer)
            .await?;
        Ok(result.rows_affected)
    }

    /// The rows of one session, oldest first.
    pub async fn outbox_for_sid(&self, sid: &str) -> StoreResult<Vec<OutboxRow>> {
        Ok(outbox_entry::Entity::find()
            .filter(outbox_entry::Column::Sid.eq(sid))
            .order_by_asc(outbox_entry::Column::CreatedAt)
            .order_by_asc(outbox_entry::Column::Kind)
            .order_by_asc(outbox_entry::Column::ClientId)
            .all(&self.db)
            .await?)
    }

    /// The rows of every session of a user, newest first (at most `limit`).
    pub async fn outbox_for_did(&self, did: &str, limit: u64) -> StoreResult<Vec<OutboxRow>> {
        Ok(outbox_entry::Entity::find()
            .filter(outbox_entry::Column::Did.eq(did))
            .order_by_desc(outbox_entry::Column::CreatedAt)
            .order_by_asc(outbox_entry::Column::Sid)
            .order_by_asc(outbox_entry::Column::Kind)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// How many rows there are per (kind, status).
    pub async fn outbox_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        Ok(outbox_entry::Entity::find()
            .select_only()
            .column(outbox_entry::Column::Kind)
            .column(outbox_entry::Column::Status)
            .column_as(outbox_entry::Column::Id.count(), "count")
            .group_by(outbox_entry::Column::Kind)
            .group_by(outbox_entry::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?)
    }
}

/// `$1` lease_until, `$2` node, `$3` now (updated_at), `$4` 'pending', `$5`/`$6` now, `$7` limit.
const CLAIM_POSTGRES: &str = "UPDATE outbox SET claimed_until = $1, claimed_by = $2, updated_at = $3 WHERE id IN (\
     SELECT id FROM outbox WHERE status = $4 AND next_attempt_at <= $5 AND (claimed_until IS NULL OR claimed_until < $6) \
     ORDER BY next_attempt_at LIMIT $7 {lock}) RETURNING *";
const CLAIM_SQLITE: &str = "UPDATE outbox SET claimed_until = ?, claimed_by = ?, updated_at = ? WHERE id IN (\
     SELECT id FROM outbox WHERE status = ? AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) \
     ORDER BY next_attempt_at LIMIT ? {lock}) RETURNING *";

/// Delivered rows after a day, failed ones after a week.
pub(super) async fn sweep(db: &impl ConnectionTrait, now: i64) -> StoreResult<u64> {
    let delivered = outbox_entry::Entity::delete_many()
        .filter(outbox_entry::Column::Status.eq(DELIVERED))
        .filter(outbox_entry::Column::UpdatedAt.lte(now - KEEP_DELIVERED_SECS))
        .exec(db)
        .await?;
    let failed = outbox_entry::Entity::delete_many()
        .filter(outbox_entry::Column::Status.eq(FAILED))
        .filter(outbox_entry::Column::UpdatedAt.lte(now - KEEP_FAILED_SECS))
        .exec(db)
        .await?;
    Ok(delivered.rows_affected + failed.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::{Attempted, OutboxRow};
    use crate::store::Store;

    #[tokio::test]
    async fn a_claim_holds_until_released_or_recorded_by_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()), 2).await.unwrap();
        let row = OutboxRow::backchannel("c", "https://rp.example/bc", "sid", "did:plc:a", 100);
        store.insert_outbox_rows(std::slice::from_ref(&row)).await.unwrap();
        assert!(store.claim_outbox("a", 99, 160, 5).await.unwrap().is_empty(), "not due yet");
        assert_eq!(store.claim_outbox("a", 100, 160, 5).await.unwrap().len(), 1);
        assert!(store.claim_outbox("b", 120, 180, 5).await.unwrap().is_empty(), "a's lease holds");
        assert_eq!(store.release_outbox_claims("a").await.unwrap(), 1);
        let taken = store.claim_outbox("b", 121, 181, 5).await.unwrap();
        assert_eq!((taken[0].claimed_by.as_deref(), taken[0].claimed_until), (Some("b"), Some(181)));
        let retry = Attempted::RetryAt { at: 200, error: "HTTP 503".into() };
        assert!(!store.record_outbox_attempt(&row.id, "a", 1, &retry, 122).await.unwrap(), "a no longer holds it");
        assert!(store.record_outbox_attempt(&row.id, "b", 1, &retry, 122).await.unwrap());
        assert!(store.claim_outbox("c", 199, 259, 5).await.unwrap().is_empty(), "backing off");
        assert_eq!(store.claim_outbox("c", 200, 260, 5).await.unwrap()[0].attempts, 1);
        // A lease that ran out (its holder died) lets another node take the row.
        assert_eq!(store.claim_outbox("d", 261, 321, 5).await.unwrap().len(), 1);
        assert!(store.record_outbox_attempt(&row.id, "d", 2, &Attempted::Delivered, 262).await.unwrap());
        let done = store.outbox_for_sid("sid").await.unwrap();
        assert_eq!((done[0].status.as_str(), done[0].attempts, done[0].claimed_by.as_deref()), ("delivered", 2, None));
        assert!(store.claim_outbox("e", 10_000, 10_060, 5).await.unwrap().is_empty());
    }
}
