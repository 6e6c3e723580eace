//! The outbox worker every node runs: it claims due rows (`store::outbox`), makes one attempt at
//! each (a back-channel logout, an upstream revocation), and records the outcome. Transient
//! failures are retried with exponential backoff until the row is a day old; refusals fail at
//! once. Rows inserted on this node wake its worker at once; otherwise it looks every second.
use std::{sync::Arc, time::Duration};

use rand::Rng;
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::now,
    crypto::random_token,
    state::AppState,
    store::outbox::{self, Attempted, OutboxRow, Outcome},
};

/// How often an idle worker looks for due rows (the claim query uses an index).
const POLL: Duration = Duration::from_secs(1);
/// Attempts in flight at once per node.
const CONCURRENCY: usize = 16;
/// How long a claim holds; every attempt is bounded well below it.
const LEASE_SECS: i64 = 60;
/// A row that has failed for this long fails for good.
const GIVE_UP_AFTER_SECS: i64 = 24 * 3600;
const MAX_BACKOFF_SECS: u64 = 3600;
/// How long a stopping worker lets attempts in flight finish.
const DRAIN: Duration = Duration::from_secs(5);
/// The queue-depth gauge is refreshed at most this often.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// Runs this node's worker until `shutdown` is cancelled; then it stops claiming, lets the
/// attempts in flight finish for up to [`DRAIN`], and gives its remaining claims back.
pub fn spawn_worker(state: AppState, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { Worker::new(state).run(shutdown).await })
}

struct Worker {
    state: AppState,
    /// Who holds our claims: unique per worker (several can share a process in tests).
    node: String,
    slots: Arc<Semaphore>,
    in_flight: JoinSet<()>,
    gauge_at: Option<Instant>,
}

impl Worker {
    fn new(state: AppState) -> Self {
        let node = format!("{}-{}", std::process::id(), random_token(6));
        Self { state, node, slots: Arc::new(Semaphore::new(CONCURRENCY)), in_flight: JoinSet::new(), gauge_at: None }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let wake = self.state.store.outbox_wakeup();
        // Rows may be due from before we started (a restart): look at once.
        let mut look = true;
        loop {
            if !look {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    Some(_) = self.in_flight.join_next(), if !self.in_flight.is_empty() => continue,
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            self.refresh_gauge().await;
            look = self.claim_and_start().await;
            if look && self.slots.available_permits() == 0 {
                // More is due than we can take: wait for a slot (or the stop).
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(_) = self.in_flight.join_next() => {}
                }
            }
        }
        self.stop().await;
    }

    /// Claims as many due rows as there are free slots and starts an attempt at each. True when
    /// the claim was full (more may be due).
    async fn claim_and_start(&mut self) -> bool {
        let free = self.slots.available_permits();
        if free == 0 {
            return true;
        }
        let now = now();
        let rows = match self.state.store.claim_outbox(&self.node, now, now + LEASE_SECS, free as u64).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "claiming outbox rows failed");
                return false;
            }
        };
        let full = rows.len() == free;
        for row in rows {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                break; // cannot happen: we claimed no more than the free slots
            };
            let (state, node) = (self.state.clone(), self.node.clone());
            self.in_flight.spawn(async move {
                attempt(&state, &node, row).await;
                drop(slot);
            });
        }
        full
    }

    async fn refresh_gauge(&mut self) {
        if self.gauge_at.is_some_and(|at| at.elapsed() < GAUGE_EVERY) {
            return;
        }
        self.gauge_at = Some(Instant::now());
        match self.state.store.outbox_counts().await {
            Ok(counts) => {
                for kind in outbox::KINDS {
                    let pending = counts.iter().filter(|(k, s, _)| k == kind && s == outbox::PENDING).map(|(_, _, n)| *n).sum::<i64>();
                    metrics::gauge!("atsso_outbox_queue_depth", "kind" => kind).set(pending as f64);
                }
            }
            Err(error) => tracing::warn!(%error, "counting outbox rows failed"),
        }
    }

    async fn stop(mut self) {
        let drained = tokio::time::timeout(DRAIN, async { while self.in_flight.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(left = self.in_flight.len(), "outbox attempts still in flight at shutdown; handing their rows back");
            self.in_flight.shutdown().await;
        }
        match self.state.store.release_outbox_claims(&self.node).await {
            Ok(released) if released > 0 => tracing::info!(released, "outbox claims handed back for other nodes"),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "handing back outbox claims failed; they expire with their lease"),
        }
    }
}

/// One attempt at a claimed row, and its outcome recorded.
async fn attempt(state: &AppState, node: &str, row: OutboxRow) {
    let outcome = match row.kind.as_str() {
        outbox::BACKCHANNEL_LOGOUT => super::backchannel::deliver(state, &row).await,
        outbox::UPSTREAM_REVOKE => super::grant::revoke_queued(state, &row).await,
        _ => Outcome::Failed("unknown kind".into()),
    };
    let attempts = row.attempts.saturating_add(1);
    let now_ms = now_millis();
    let next = next_step(outcome, attempts, row.created_at, now_ms);
    let label = match &next {
        Attempted::Delivered => "delivered",
        Attempted::RetryAt { .. } => "retry",
        Attempted::Failed { .. } => "failed",
    };
    metrics::counter!("atsso_outbox_deliveries_total", "kind" => row.kind.clone(), "outcome" => label).increment(1);
    let client_id = row.client_id.as_deref().unwrap_or("-");
    match &next {
        Attempted::Delivered => tracing::info!(kind = %row.kind, client_id, attempts, "outbox row delivered"),
        Attempted::RetryAt { at, error } => {
            tracing::info!(kind = %row.kind, client_id, attempts, %error, retry_at = at, "outbox row retried later")
        }
        Attempted::Failed { error } => tracing::warn!(kind = %row.kind, client_id, attempts, %error, "outbox row failed"),
    }
    match state.store.record_outbox_attempt(&row.id, node, attempts, &next, now_ms / 1000).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(kind = %row.kind, "our claim on an outbox row ran out before its outcome was recorded"),
        Err(error) => tracing::error!(%error, "recording an outbox attempt failed; the row is tried again when its claim runs out"),
    }
}

/// Applies the retry policy: a row retried until it is [`GIVE_UP_AFTER_SECS`] old, each wait
/// twice the last (1 s, 2 s, 4 s, … at most an hour) plus up to a quarter more at random, so
/// rows that failed together do not come back together.
fn next_step(outcome: Outcome, attempts: i32, created_at: i64, now_ms: i64) -> Attempted {
    match outcome {
        Outcome::Delivered => Attempted::Delivered,
        Outcome::Failed(error) => Attempted::Failed { error },
        Outcome::Retry(error) if now_ms / 1000 - created_at >= GIVE_UP_AFTER_SECS => {
            Attempted::Failed { error: format!("{error} (gave up after 24 h)") }
        }
        Outcome::Retry(error) => {
            let base_ms = backoff_secs(attempts) * 1000;
            let wait_ms = base_ms + rand::thread_rng().gen_range(0..=base_ms / 4);
            // Rounded up: never due before the wait is over.
            let at = (now_ms + wait_ms as i64 + 999) / 1000;
            Attempted::RetryAt { at, error }
        }
    }
}

/// The wait after attempt number `attempts` (1-based), without jitter.
fn backoff_secs(attempts: i32) -> u64 {
    let doublings = attempts.saturating_sub(1).clamp(0, 12) as u32;
    (1u64 << doublings).min(MAX_BACKOFF_SECS)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_an_hour() {
        let waits: Vec<u64> = (1..=14).map(backoff_secs).collect();
        assert_eq!(&waits[..6], &[1, 2, 4, 8, 16, 32]);
        assert_eq!(waits[11], 2048);
        assert_eq!(waits[12], 3600, "capped");
        assert_eq!(waits[13], 3600);
        assert_eq!(backoff_secs(0), 1);
        assert_eq!(backoff_secs(i32::MAX), 3600);
    }

    #[test]
    fn retries_are_due_after_their_wait_with_jitter_and_stop_after_a_day() {
        let created = 1_000_000;
        let now_ms = (created + 10) * 1000 + 400;
        for _ in 0..50 {
            let Attempted::RetryAt { at, error } = next_step(Outcome::Retry("HTTP 503".into()), 3, created, now_ms) else {
                panic!("a retry");
            };
            assert_eq!(error, "HTTP 503");
            // 4 s plus at most a quarter, rounded up to the second.
            assert!((created + 15..=created + 16).contains(&at), "{at}");
        }
        let late_ms = (created + GIVE_UP_AFTER_SECS) * 1000;
        assert!(matches!(next_step(Outcome::Retry("x".into()), 40, created, late_ms), Attempted::Failed { .. }));
        assert_eq!(next_step(Outcome::Delivered, 1, created, now_ms), Attempted::Delivered);
        assert_eq!(next_step(Outcome::Failed("HTTP 404".into()), 1, created, now_ms), Attempted::Failed { error: "HTTP 404".into() });
    }
}
