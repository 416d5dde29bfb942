//! The daemon's background work, in one place: every task that outlives the request that
//! started it (transcript fetches, RocketChat answers posted after the reply budget, the start-up
//! checks) is spawned through [`Workers`], so it is tracked, can be cancelled, and is awaited —
//! with a bound — at shutdown, before the engine closes. A bare `tokio::spawn` would let the
//! runtime drop such a task half-way, or keep a reference to the engine after the daemon wants
//! to close it.
//!
//! One file per kind of work: `transcripts.rs` (Aircall transcripts, fetched after the webhook is
//! acknowledged and resumed at start), `rocketchat_replies.rs` (answers posted through the REST
//! API when they missed the webhook's reply budget).

pub mod oidc_keys;
pub mod rocketchat_replies;
pub mod transcripts;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tracks the daemon's background tasks and stops them at shutdown.
#[derive(Debug, Clone, Default)]
pub struct Workers {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Workers {
    /// Starts `work`, tracked. Once shutdown's grace has passed it is dropped at its next await
    /// point; blocking work inside it should watch [`Workers::cancelled_token`].
    pub fn spawn<F>(&self, name: &'static str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.cancel.is_cancelled() {
            tracing::warn!(worker = name, "not started: the daemon is shutting down");
            return;
        }
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = work => {}
                () = cancel.cancelled() => tracing::info!(worker = name, "cancelled at shutdown"),
            }
        });
    }

    /// Runs blocking work (an HTTP call through `ureq`, an engine call) on the blocking pool,
    /// tracked too. `None` when the task panicked (logged).
    pub async fn blocking<T, F>(&self, name: &'static str, work: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.tracker.spawn_blocking(work).await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(worker = name, error = %e, "a blocking task failed");
                None
            }
        }
    }

    /// A token that is cancelled when shutdown begins (for waits inside blocking work).
    pub fn cancelled_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Shutdown: lets running tasks finish for up to `grace`, then cancels them and waits up to
    /// `grace` again for the cancelled ones (blocking work cannot be interrupted, only awaited).
    /// True when every task ended.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            self.cancel.cancel();
            return true;
        }
        tracing::warn!(
            running = self.tracker.len(),
            "background work still running after {grace:?}; cancelling it"
        );
        self.cancel.cancel();
        let ended = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            tracing::error!(
                running = self.tracker.len(),
                "background work did not stop; closing anyway"
            );
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_running_work_within_the_grace() {
        let workers = Workers::default();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        workers.spawn("test", async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(workers.shutdown(Duration::from_secs(5)).await);
        assert!(done.load(Ordering::SeqCst), "the task ran to its end");
    }

    #[tokio::test]
    async fn shutdown_cancels_work_that_outlives_the_grace() {
        let workers = Workers::default();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        workers.spawn("test", async move {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            flag.store(true, Ordering::SeqCst);
        });
        let started = std::time::Instant::now();
        assert!(workers.shutdown(Duration::from_millis(100)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            !done.load(Ordering::SeqCst),
            "the task was cancelled, not finished"
        );
        workers.spawn("late", async {});
        assert!(workers.tracker.is_empty(), "nothing starts after shutdown");
    }
}
