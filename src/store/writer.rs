//! Group commit for the hot write paths (codes, token rotation, token records).
//!
//! SQLite has one writer. Letting every request take the write connection in turn costs a pool
//! hand-off, a liveness ping and a commit per request, and the connection sits idle while each
//! request's task waits to be scheduled between its statements. Instead one task owns the write
//! side: it takes every write queued since the last commit and runs them, in order, in one
//! transaction. Callers get their results only after that commit. If any write of a batch fails,
//! the batch is rolled back and each write is run again alone, so one bad write costs the others
//! nothing but time.
//!
//! With Postgres (concurrent writers are the database's job) each write simply runs in its own
//! transaction.
use futures_util::{future::BoxFuture, FutureExt};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

/// Most writes one transaction takes (bounds the time a batch holds the write lock).
const MAX_BATCH: usize = 128;
/// Writes that may wait for the writer before callers are held back.
const QUEUE_DEPTH: usize = 4096;

/// The future a write returns: statements on the given transaction.
pub type WriteFuture<'t, T> = BoxFuture<'t, Result<T, DbErr>>;

/// One queued write with its reply channel; the output is kept until the batch commits.
trait Job: Send {
    fn run<'a>(&'a mut self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, Result<(), DbErr>>;
    fn finish(self: Box<Self>, result: Result<(), DbErr>);
}

struct TypedJob<T, F> {
    work: F,
    output: Option<T>,
    reply: oneshot::Sender<Result<T, DbErr>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: for<'t> FnMut(&'t DatabaseTransaction) -> WriteFuture<'t, T> + Send,
{
    fn run<'a>(&'a mut self, txn: &'a DatabaseTransaction) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async move {
            self.output = None;
            self.output = Some((self.work)(txn).await?);
            Ok(())
        })
    }

    fn finish(self: Box<Self>, result: Result<(), DbErr>) {
        let TypedJob { output, reply, .. } = *self;
        let answer = result.and_then(|()| output.ok_or_else(|| DbErr::Custom("write produced no result".into())));
        // The caller may have gone (request cancelled); the write itself stands.
        let _ = reply.send(answer);
    }
}

#[derive(Clone, Debug)]
pub struct Writer {
    mode: Mode,
}

#[derive(Clone, Debug)]
enum Mode {
    Batched(mpsc::Sender<Box<dyn Job>>),
    Direct(DatabaseConnection),
}

impl Writer {
    /// Group commit over `connection` (SQLite's single write connection). Spawns the writer
    /// task on the current runtime; it ends when the last `Writer` clone is dropped.
    pub fn batched(connection: DatabaseConnection) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run_writer(connection, receiver));
        Self { mode: Mode::Batched(sender) }
    }

    /// One transaction per write (Postgres).
    pub fn direct(connection: DatabaseConnection) -> Self {
        Self { mode: Mode::Direct(connection) }
    }

    /// Whether writes are grouped into shared transactions (SQLite). When not, a single-statement
    /// write may skip the queue and its transaction altogether.
    pub fn is_batched(&self) -> bool {
        matches!(self.mode, Mode::Batched(_))
    }

    /// Runs `work` in a transaction and returns its result once committed. `work` may run more
    /// than once (a failed batch is retried write by write), so it must not move its captures
    /// out: clone them into the future.
    pub async fn write<T, F>(&self, mut work: F) -> Result<T, DbErr>
    where
        T: Send + 'static,
        F: for<'t> FnMut(&'t DatabaseTransaction) -> WriteFuture<'t, T> + Send + 'static,
    {
        match &self.mode {
            Mode::Direct(connection) => {
                let txn = connection.begin().await?;
                let output = work(&txn).await?;
                txn.commit().await?;
                Ok(output)
            }
            Mode::Batched(queue) => {
                let (reply, answer) = oneshot::channel();
                let job: Box<dyn Job> = Box::new(TypedJob { work, output: None, reply });
                let stopped = || DbErr::Custom("the database writer has stopped".into());
                queue.send(job).await.map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
        }
    }

    /// Returns once every write queued before this call is committed (or failed): the queue is
    /// first in, first out, so an empty write queued now is run after all of them.
    pub async fn flush(&self) -> Result<(), DbErr> {
        match &self.mode {
            Mode::Direct(_) => Ok(()),
            Mode::Batched(_) => self.write(|_txn| Box::pin(async { Ok(()) })).await,
        }
    }
}

async fn run_writer(connection: DatabaseConnection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match run_batch(&connection, &mut batch).await {
            Ok(()) => batch.drain(..).for_each(|job| job.finish(Ok(()))),
            Err(error) if batch.len() == 1 => {
                if let Some(job) = batch.pop() {
                    job.finish(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(%error, writes = batch.len(), "write batch failed; running its writes one by one");
                for mut job in batch.drain(..) {
                    let result = run_batch(&connection, std::slice::from_mut(&mut job)).await;
                    job.finish(result);
                }
            }
        }
    }
}

/// Runs the jobs in one transaction and commits; a panic in a job fails the batch instead of
/// killing the writer.
async fn run_batch(connection: &DatabaseConnection, jobs: &mut [Box<dyn Job>]) -> Result<(), DbErr> {
    let txn = connection.begin().await?;
    for job in jobs.iter_mut() {
        match std::panic::AssertUnwindSafe(job.run(&txn)).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                txn.rollback().await?;
                return Err(error);
            }
            Err(_) => {
                txn.rollback().await?;
                return Err(DbErr::Custom("a database write panicked".into()));
            }
        }
    }
    txn.commit().await
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;

    use crate::store::{
        grants::{AuthorizationCode, CodeRedemption},
        Store, StoreError,
    };

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        (dir, store)
    }

    fn code(hash: &str) -> AuthorizationCode {
        AuthorizationCode {
            code_hash: hash.into(),
            family_id: format!("family-{hash}"),
            client_id: "client".into(),
            did: "did:plc:alice".into(),
            sid: "sid".into(),
            redirect_uri: "https://app.example/cb".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: None,
            auth_time: 1,
            created_at: 1,
            expires_at: i64::MAX,
            used_at: None,
        }
    }

    #[tokio::test]
    async fn a_failing_write_does_not_take_its_batch_down() {
        let (_dir, store) = store().await;
        store.insert_code(&code("taken")).await.unwrap();
        // Queued together (current-thread runtime: all are sent before the writer runs), so they
        // share a batch; the duplicate fails, the batch is retried write by write.
        let hashes: Vec<String> = (0..40).map(|i| if i == 17 { "taken".into() } else { format!("code-{i}") }).collect();
        let codes: Vec<AuthorizationCode> = hashes.iter().map(|h| code(h)).collect();
        let results = join_all(codes.iter().map(|c| store.insert_code(c))).await;
        for (hash, result) in hashes.iter().zip(&results) {
            match (hash.as_str(), result) {
                ("taken", Err(StoreError::Db(_))) => {}
                ("taken", other) => panic!("duplicate insert should fail, got {other:?}"),
                (_, Ok(())) => {}
                (_, Err(e)) => panic!("{hash} should have been stored: {e}"),
            }
        }
        for hash in hashes.iter().filter(|h| *h != "taken") {
            assert!(matches!(store.redeem_code(hash, 5).await.unwrap(), CodeRedemption::Redeemed(_)), "{hash} missing");
        }
    }

    #[tokio::test]
    async fn concurrent_redemptions_of_one_code_have_one_winner() {
        let (_dir, store) = store().await;
        store.insert_code(&code("once")).await.unwrap();
        let outcomes = join_all((0..20).map(|_| store.redeem_code("once", 5))).await;
        let redeemed = outcomes.iter().filter(|o| matches!(o, Ok(CodeRedemption::Redeemed(_)))).count();
        let replayed = outcomes.iter().filter(|o| matches!(o, Ok(CodeRedemption::Replayed(_)))).count();
        assert_eq!((redeemed, replayed), (1, 19));
        assert!(matches!(store.redeem_code("unknown", 5).await.unwrap(), CodeRedemption::Unknown));
    }

    /// Shutdown: writes queued before `close` are committed before the pools close.
    #[tokio::test]
    async fn close_commits_what_is_queued() {
        let (dir, store) = store().await;
        let codes: Vec<AuthorizationCode> = (0..50).map(|i| code(&format!("queued-{i}"))).collect();
        // join! polls the inserts first: all fifty are queued before close() queues its flush.
        let (results, closed) = tokio::join!(join_all(codes.iter().map(|c| store.insert_code(c))), store.close());
        closed.unwrap();
        assert!(results.iter().all(Result::is_ok));
        assert!(store.insert_code(&code("late")).await.is_err(), "a closed store takes no more writes");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let reopened = Store::connect(&url, 2).await.unwrap();
        for c in &codes {
            assert!(matches!(reopened.redeem_code(&c.code_hash, 5).await.unwrap(), CodeRedemption::Redeemed(_)), "{} lost", c.code_hash);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_writers_all_land() {
        let (_dir, store) = store().await;
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.insert_code(&code(&format!("c{i}"))).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        for i in (0..300).step_by(37) {
            assert!(matches!(store.redeem_code(&format!("c{i}"), 5).await.unwrap(), CodeRedemption::Redeemed(_)));
        }
    }
}
