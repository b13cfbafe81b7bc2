//! Supervised background work. Every loop of the service (the retry worker, the Events API poll,
//! the cache fill and listener, retention, the webhook pipeline's stages, metrics upkeep, session
//! clean-up) runs here, under one name each:
//!
//! - a loop that panics, or returns although nobody asked it to stop, is logged, counted
//!   (`msr_task_restarts_total{task}`) and started again after a back-off (100 ms, doubling, at
//!   most 30 s);
//! - a loop restarted [`FAILING_AFTER`] times without then running [`HEALTHY_AFTER`] is failing:
//!   `/readyz` answers 503 with its name until it has run that long again;
//! - [`Supervisor::shutdown`] stops every loop at its next await point (a database transaction
//!   there rolls back) and waits for them, for a bounded time. The server calls it once its
//!   connections are drained, so no request is waiting on a loop by then.
//!
//! Nothing here knows what the loops do: it is the bottom layer, beside `telemetry`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Restarts in a row (each one after less than [`HEALTHY_AFTER`] of running) that make a loop failing.
pub const FAILING_AFTER: u32 = 3;
/// How long a restarted loop must run before its failures are forgotten.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone)]
struct Health {
    restarts: u64,
    /// Restarts since the loop last ran [`HEALTHY_AFTER`].
    in_a_row: u32,
    /// Restarted since the last [`Supervisor::settle`].
    lately: bool,
    last_error: String,
}

/// The supervisor: cheap to clone, one per process.
#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    tracker: TaskTracker,
    cancel: CancellationToken,
    health: Arc<Mutex<BTreeMap<&'static str, Health>>>,
}

/// A loop that is failing, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// The loop's name.
    pub task: &'static str,
    /// Restarts since it was last healthy.
    pub restarts: u32,
    /// Why it last stopped.
    pub last_error: String,
}

impl Supervisor {
    /// A supervisor with no loops.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the loop `make` builds under `name`, building it again whenever it panics or ends.
    pub fn spawn<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.lock().entry(name).or_default();
        let this = self.clone();
        self.tracker.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let started = Instant::now();
                let mut run = tokio::spawn(make());
                let ended = tokio::select! {
                    ended = &mut run => ended,
                    () = this.cancel.cancelled() => {
                        run.abort();
                        let _ = run.await;
                        return;
                    }
                };
                let why = match ended {
                    Ok(()) => "it returned".to_owned(),
                    Err(e) if e.is_panic() => format!("it panicked: {}", panic_text(e.into_panic())),
                    Err(e) => format!("it was stopped: {e}"),
                };
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff = FIRST_BACKOFF;
                }
                this.restarted(name, &why, started.elapsed() >= HEALTHY_AFTER);
                tracing::error!(task = name, reason = %why, backoff_ms = backoff.as_millis() as u64, "background task stopped; restarting it");
                metrics::counter!("msr_task_restarts_total", "task" => name).increment(1);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = this.cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        self.tracker.spawn({
            // Forget a loop's failures once it has run long enough after its last restart.
            let this = self.clone();
            async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(HEALTHY_AFTER) => {}
                        () = this.cancel.cancelled() => return,
                    }
                    this.settle(name);
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Health>> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn restarted(&self, name: &'static str, why: &str, ran_long: bool) {
        let mut health = self.lock();
        let entry = health.entry(name).or_default();
        entry.restarts += 1;
        entry.in_a_row = if ran_long { 1 } else { entry.in_a_row + 1 };
        entry.lately = true;
        why.clone_into(&mut entry.last_error);
    }

    /// Called every [`HEALTHY_AFTER`]: a loop that was not restarted since the last call is healthy.
    fn settle(&self, name: &'static str) {
        let mut health = self.lock();
        if let Some(entry) = health.get_mut(name)
            && !std::mem::take(&mut entry.lately)
        {
            entry.in_a_row = 0;
        }
    }

    /// The loops failing now, by name.
    pub fn failing(&self) -> Vec<Failing> {
        self.lock()
            .iter()
            .filter(|(_, h)| h.in_a_row >= FAILING_AFTER)
            .map(|(task, h)| Failing {
                task,
                restarts: h.in_a_row,
                last_error: h.last_error.clone(),
            })
            .collect()
    }

    /// Every loop's name and how often it was restarted since the start.
    pub fn restarts(&self) -> Vec<(&'static str, u64)> {
        self.lock().iter().map(|(t, h)| (*t, h.restarts)).collect()
    }

    /// Cancels every loop and waits for them, at most `limit`; false when some did not stop.
    pub async fn shutdown(&self, limit: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_restarted_and_failing_after_three_restarts_in_a_row() {
        let tasks = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        tasks.spawn("boom", move || {
            let runs = counted.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                panic!("boom");
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(tasks.failing().is_empty(), "one panic is not failing yet");
        // 100 + 200 + 400 ms of back-off: three restarts.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(runs.load(Ordering::SeqCst) >= 4);
        let failing = tasks.failing();
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].task, "boom");
        assert!(
            failing[0].last_error.contains("panicked: boom"),
            "{failing:?}"
        );
        assert!(tasks.shutdown(Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_recovers_is_healthy_again_and_shutdown_stops_it() {
        let tasks = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        tasks.spawn("flaky", move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 3 {
                    panic!("not yet");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(tasks.failing().len(), 1, "three panics in a row");
        tokio::time::sleep(HEALTHY_AFTER * 3).await;
        assert!(tasks.failing().is_empty(), "it has run long enough since");
        assert_eq!(tasks.restarts(), vec![("flaky", 3)]);
        assert!(tasks.shutdown(Duration::from_secs(1)).await);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            4,
            "not restarted by the shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_returns_by_itself_is_restarted_too() {
        let tasks = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        tasks.spawn("quits", move || {
            let runs = counted.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(runs.load(Ordering::SeqCst) >= 3);
        assert!(tasks.shutdown(Duration::from_secs(1)).await);
    }
}
