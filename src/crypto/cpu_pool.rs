//! Where CPU-bound crypto (RSA signatures) runs: one thread per core, at lower priority.
//!
//! Under load, tokio's blocking pool would run one thread per concurrent request, each signing
//! at once; the database and HTTP threads then wait behind dozens of runnable signing threads,
//! and every hand-off between them (there are several per token request) costs a scheduler
//! slice. A fixed pool of one thread per core keeps the cores busy with signatures while the
//! queue, not the scheduler, absorbs the burst; the lower priority (nice 10, Linux) lets the
//! short I/O steps of other requests run first, so requests finish instead of all progressing
//! slowly together.
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

type Task = Box<dyn FnOnce() + Send>;

struct CpuPool {
    queue: mpsc::Sender<Task>,
}

#[derive(Debug, thiserror::Error)]
#[error("the signing threads have stopped")]
pub struct PoolStopped;

fn pool() -> &'static CpuPool {
    static POOL: OnceLock<CpuPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Task>();
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new().name(format!("atsso-sign-{index}")).spawn(move || {
                lower_priority();
                loop {
                    // The lock is held only while waiting for the next task, not while running it.
                    let task = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match task {
                        Ok(task) => task(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "could not start a signing thread");
            }
        }
        CpuPool { queue: sender }
    })
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority on the calling thread (tid from gettid) has no memory-safety
    // preconditions; failure only leaves the default priority.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Runs `work` on a signing thread and waits for its result without blocking the executor.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolStopped> {
    let (reply, answer) = oneshot::channel();
    let task: Task = Box::new(move || {
        // A panic in `work` drops `reply`: the caller sees PoolStopped, the thread lives on.
        if let Ok(output) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            let _ = reply.send(output);
        }
    });
    pool().queue.send(task).map_err(|_| PoolStopped)?;
    answer.await.map_err(|_| PoolStopped)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_work_and_survives_a_panic() {
        assert_eq!(super::run(|| 6 * 7).await.unwrap(), 42);
        assert!(super::run(|| -> u8 { panic!("boom") }).await.is_err());
        // The threads are still there after the panic.
        let results = futures_util::future::join_all((0..16).map(|i| super::run(move || i * 2))).await;
        assert_eq!(results.into_iter().map(Result::unwrap).sum::<i32>(), (0..16).map(|i| i * 2).sum::<i32>());
    }
}
