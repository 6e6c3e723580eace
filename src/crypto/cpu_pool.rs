//! Where CPU-bound crypto (RSA signatures) runs: one thread per core.
//!
//! Under load, tokio's blocking pool would run one thread per concurrent request, each signing
//! at once; the database and HTTP threads then wait behind dozens of runnable signing threads,
//! and every hand-off between them (there are several per token request) costs a scheduler
//! slice. A fixed pool of one thread per core keeps the cores busy with signatures while the
//! queue, not the scheduler, absorbs the burst.
//!
//! The threads run at the default priority. They ran at nice 10 until issue 14, to let the short
//! I/O steps of other requests go first; measured side by side (renicing the running server's
//! signing threads between runs, BENCHMARKS.md), nice 0 gave 9 % more ES256-access-token
//! refreshes per second with a lower p99, and the same with RS256: a niced signing thread is
//! preempted mid-signature so often that its RSA arithmetic runs measurably slower.
//!
//! The pool is a tokio runtime of its own that runs nothing but these closures, so its workers
//! may block on a signature: tokio provides the queue, the wake-ups and the panic isolation.
//! Measured against the hand-rolled mpsc pool it replaced and a rayon pool: the same signatures
//! per CPU second, throughput within 2 %, inside the noise (BENCHMARKS.md, "The signing pool and
//! the read cache").
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

#[derive(Debug, thiserror::Error)]
#[error("the signing threads have stopped")]
pub struct PoolStopped;

fn pool() -> Result<&'static Runtime, PoolStopped> {
    static POOL: OnceLock<Option<Runtime>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("atsso-sign")
            .build()
            .map_err(|error| tracing::error!(%error, "could not start the signing threads"))
            .ok()
    })
    .as_ref()
    .ok_or(PoolStopped)
}

/// Runs `work` on a signing thread and waits for its result without blocking the executor.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolStopped> {
    // A panic in `work` ends its task only: the caller sees PoolStopped, the threads live on.
    pool()?.spawn(async move { work() }).await.map_err(|_| PoolStopped)
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

    /// RS256 signatures through the pool, driven like the token endpoint (32 requests in flight on
    /// a 2-worker runtime), against the same signatures on one plain thread per core. Prints both
    /// rates and signatures per CPU second of the process (the figure a loaded machine disturbs
    /// least). `cargo test --release --lib cpu_pool -- --ignored --nocapture`; ATSSO_BENCH_SECS.
    #[cfg(target_os = "linux")]
    #[test]
    #[ignore = "benchmark, run by hand"]
    fn signing_throughput_through_the_pool() {
        use std::{
            sync::{
                atomic::{AtomicU64, Ordering},
                Arc,
            },
            time::{Duration, Instant},
        };

        use crate::crypto::signing::{generate_key, Alg, KeySet, StoredKey};

        let seconds: f64 = std::env::var("ATSSO_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
        let keys: Vec<StoredKey> = [Alg::Rs256, Alg::Es256]
            .into_iter()
            .map(|alg| {
                let key = generate_key(alg).unwrap();
                StoredKey { kid: key.kid, alg, private_pem: key.private_pem, created_at: 1, activates_at: 1, retired_at: None }
            })
            .collect();
        let keys = Arc::new(KeySet::new(keys).unwrap());
        let claims = || {
            let mut claims = serde_json::Map::new();
            claims.insert("iss".into(), "http://127.0.0.1:8080".into());
            claims.insert("sub".into(), "did:plc:benchuser00000000000000".into());
            claims.insert("aud".into(), "client".into());
            claims.insert("iat".into(), 1_700_000_000.into());
            claims
        };
        let cpu_seconds = || {
            // SAFETY: getrusage writes into the zeroed struct we pass.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            seconds(usage.ru_utime) + seconds(usage.ru_stime)
        };
        let measure = |through_pool: bool| {
            let (cpu, started) = (cpu_seconds(), Instant::now());
            let deadline = started + Duration::from_secs_f64(seconds);
            let count = Arc::new(AtomicU64::new(0));
            if through_pool {
                let driver = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
                driver.block_on(futures_util::future::join_all((0..32).map(|_| {
                    let (keys, count) = (keys.clone(), count.clone());
                    async move {
                        while Instant::now() < deadline {
                            let keys = keys.clone();
                            super::run(move || keys.sign(Alg::Rs256, "JWT", claims()).unwrap()).await.unwrap();
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })));
            } else {
                let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
                std::thread::scope(|scope| {
                    for _ in 0..threads {
                        scope.spawn(|| {
                            while Instant::now() < deadline {
                                keys.sign(Alg::Rs256, "JWT", claims()).unwrap();
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                });
            }
            let signed = count.load(Ordering::Relaxed) as f64;
            (signed / started.elapsed().as_secs_f64(), signed / (cpu_seconds() - cpu))
        };
        let _ = measure(true); // start the pool
        for round in 0..3 {
            let (direct, direct_cpu) = measure(false);
            let (pooled, pooled_cpu) = measure(true);
            println!(
                "round {round}: direct {direct:.0}/s ({direct_cpu:.0} per CPU-s), pool {pooled:.0}/s ({pooled_cpu:.0} per CPU-s): \
                 throughput {:.3}x, per CPU-s {:.3}x",
                pooled / direct,
                pooled_cpu / direct_cpu
            );
        }
    }
}
