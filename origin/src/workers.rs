//! The bounded pool that runs image work (decode checks, filters, encoding) off the async runtime.
//!
//! A fixed number of OS threads take jobs from a bounded queue. When every thread is busy and the
//! queue is full, [`WorkerPool::run`] fails at once with [`PoolError::Busy`] (the handler answers
//! `503` + `Retry-After`) instead of letting work pile up: page views, media and likes never wait
//! behind a burst of filter requests, because none of that runs here.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::{Sender, TrySendError, bounded};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("every image worker is busy and the queue is full")]
    Busy,
    #[error("the image job panicked")]
    Panicked,
    #[error("the image worker pool has shut down")]
    Closed,
}

/// Cheap to clone; the threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct WorkerPool {
    tx: Sender<Job>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    threads: usize,
    running: AtomicUsize,
    rejected: AtomicUsize,
}

impl WorkerPool {
    /// Starts `threads` workers (at least one) behind a queue of `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = bounded::<Job>(queue);
        let stats = Arc::new(Stats {
            threads,
            ..Stats::default()
        });
        for i in 0..threads {
            let rx = rx.clone();
            let stats = Arc::clone(&stats);
            thread::Builder::new()
                .name(format!("image-worker-{i}"))
                .spawn(move || {
                    for job in rx {
                        stats.running.fetch_add(1, Ordering::Relaxed);
                        job();
                        stats.running.fetch_sub(1, Ordering::Relaxed);
                    }
                })?;
        }
        Ok(Self { tx, stats })
    }

    /// One worker per core: the work is CPU-bound, more threads would only contend.
    pub fn default_threads() -> usize {
        thread::available_parallelism().map_or(1, usize::from)
    }

    pub fn threads(&self) -> usize {
        self.stats.threads
    }

    /// Jobs currently executing.
    pub fn running(&self) -> usize {
        self.stats.running.load(Ordering::Relaxed)
    }

    /// Jobs turned away with [`PoolError::Busy`] since start.
    pub fn rejected(&self) -> usize {
        self.stats.rejected.load(Ordering::Relaxed)
    }

    /// Runs `f` on a worker and waits for its result without blocking the async runtime.
    ///
    /// If the caller stops waiting (the client went away) before a worker picks the job up, the
    /// job is skipped rather than burning a core for nobody.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if done_tx.is_closed() {
                return;
            }
            // A panic in image code must not take the worker thread down with it.
            let result = catch_unwind(AssertUnwindSafe(f)).map_err(|_| PoolError::Panicked);
            let _ = done_tx.send(result);
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(PoolError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Closed),
        }
        done_rx.await.map_err(|_| PoolError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Submits a job that blocks until `release` sends, returning its task.
    fn blocked_job(
        pool: &WorkerPool,
        release: &Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
    ) -> tokio::task::JoinHandle<Result<(), PoolError>> {
        let pool = pool.clone();
        let rx = Arc::clone(release);
        tokio::spawn(async move {
            pool.run(move || {
                let _ = rx.lock().map(|rx| rx.recv_timeout(Duration::from_secs(10)));
            })
            .await
        })
    }

    async fn wait_until(mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached in 5 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn runs_jobs_off_the_runtime_and_returns_results() {
        let pool = WorkerPool::new(2, 4).expect("pool");
        let name = pool
            .run(|| thread::current().name().map(str::to_owned))
            .await;
        assert!(
            name.expect("ran")
                .expect("named")
                .starts_with("image-worker-")
        );
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    #[tokio::test]
    async fn full_queue_is_rejected_at_once_and_recovers() {
        let pool = WorkerPool::new(1, 1).expect("pool");
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
        // One job running, one waiting: the pool is full.
        let running = blocked_job(&pool, &release_rx);
        wait_until(|| pool.running() == 1).await;
        let waiting = blocked_job(&pool, &release_rx);
        wait_until(|| pool.tx.is_full()).await;
        assert_eq!(pool.run(|| ()).await, Err(PoolError::Busy));
        assert_eq!(pool.rejected(), 1);
        for _ in 0..2 {
            release.send(()).expect("release");
        }
        assert_eq!(running.await.expect("task"), Ok(()));
        assert_eq!(waiting.await.expect("task"), Ok(()));
        assert_eq!(
            pool.run(|| 1).await,
            Ok(1),
            "the pool takes work again once drained"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_worker_survives() {
        let pool = WorkerPool::new(1, 1).expect("pool");
        let r: Result<(), _> = pool.run(|| panic!("bad image")).await;
        assert_eq!(r, Err(PoolError::Panicked));
        assert_eq!(pool.run(|| "still here").await, Ok("still here"));
    }
}
