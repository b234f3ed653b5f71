//! The periodic loops of a role (purges, relays) all run through [`spawn_periodic`]: a named
//! task that runs a pass on a schedule until it is cancelled, and runs passes back to back
//! while they report more work waiting.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What one pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing more to do until the next tick.
    Done,
    /// A full batch: run again at once (unless the loop is cancelled).
    More,
}

/// When passes run.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub interval: Duration,
    /// Runs a pass early when notified.
    pub wake: Option<Arc<Notify>>,
    /// Runs the first pass at start instead of after the first interval.
    pub at_start: bool,
}

impl Schedule {
    /// A pass every `interval`, the first after one interval.
    pub fn every(interval: Duration) -> Schedule {
        Schedule { interval, wake: None, at_start: false }
    }
}

/// Spawns the loop `name`. It stops at the next tick once `cancel` fires; a pass under way
/// finishes first.
pub fn spawn_periodic<F, Fut>(
    name: &'static str,
    schedule: Schedule,
    cancel: CancellationToken,
    mut pass: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Pass> + Send,
{
    tracing::debug!(task = name, "background task started");
    tokio::spawn(async move {
        let mut wait = !schedule.at_start;
        loop {
            if wait {
                let woken = async {
                    match &schedule.wake {
                        Some(wake) => wake.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(schedule.interval) => {}
                    () = woken => {}
                }
            }
            wait = true;
            while pass().await == Pass::More && !cancel.is_cancelled() {}
            if cancel.is_cancelled() {
                return;
            }
        }
    })
}
