//! What the admin sees of the outbox: per session, each back-channel logout and upstream
//! revocation with its status; and the queue as a whole (pending and failed rows per kind).
use std::collections::BTreeMap;

use serde::Serialize;

use super::{AdminError, SessionView};
use crate::{
    state::AppState,
    store::outbox::{self, OutboxRow},
};

/// The most rows shown for one user (their latest logouts).
const MAX_ROWS_PER_USER: u64 = 200;

/// One delivery as the admin sees it (never the sealed payload).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// backchannel_logout | upstream_revoke
    pub kind: String,
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    /// The back-channel URI, or the upstream authorization server.
    pub target: String,
    /// pending | delivered | failed
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// When the next attempt is due (pending rows only).
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An ended session and its deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct EndedSessionView {
    pub sid: String,
    pub deliveries: Vec<DeliveryView>,
}

/// Rows per kind: pending (still to do) and failed (given up).
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueSummary {
    pub pending: BTreeMap<String, i64>,
    pub failed: BTreeMap<String, i64>,
}

/// Attaches the deliveries of `did`'s live sessions to them, and returns those of its ended
/// sessions (newest first).
pub(super) async fn sessions_deliveries(
    state: &AppState,
    did: &str,
    live: &mut [SessionView],
) -> Result<Vec<EndedSessionView>, AdminError> {
    let rows = state.store.outbox_for_did(did, MAX_ROWS_PER_USER).await?;
    let mut ended: Vec<EndedSessionView> = Vec::new();
    for row in rows {
        let view = delivery_view(state, &row).await?;
        if let Some(session) = live.iter_mut().find(|s| s.sid == row.sid) {
            session.deliveries.push(view);
        } else if let Some(session) = ended.iter_mut().find(|s| s.sid == row.sid) {
            session.deliveries.push(view);
        } else {
            ended.push(EndedSessionView { sid: row.sid, deliveries: vec![view] });
        }
    }
    Ok(ended)
}

async fn delivery_view(state: &AppState, row: &OutboxRow) -> Result<DeliveryView, AdminError> {
    let client_name = match &row.client_id {
        Some(id) => state.store.client(id).await?.map(|c| c.name),
        None => None,
    };
    Ok(DeliveryView {
        kind: row.kind.clone(),
        client_id: row.client_id.clone(),
        client_name,
        target: row.target.clone(),
        status: row.status.clone(),
        attempts: row.attempts,
        last_error: row.last_error.clone(),
        next_attempt_at: (row.status == outbox::PENDING).then_some(row.next_attempt_at),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Pending and failed rows per kind (every kind listed, zero included).
pub async fn queue_summary(state: &AppState) -> Result<QueueSummary, AdminError> {
    let mut summary = QueueSummary::default();
    for kind in outbox::KINDS {
        summary.pending.insert(kind.to_owned(), 0);
        summary.failed.insert(kind.to_owned(), 0);
    }
    for (kind, status, count) in state.store.outbox_counts().await? {
        let bucket = match status.as_str() {
            outbox::PENDING => &mut summary.pending,
            outbox::FAILED => &mut summary.failed,
            _ => continue,
        };
        *bucket.entry(kind).or_default() += count;
    }
    Ok(summary)
}
