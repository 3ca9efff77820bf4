//! The write-behind writer: drains the engine's durable queue into the store in batches.
//!
//! A batch is released from the queue only after the store confirmed it, so a crash between the
//! two re-delivers the batch, which the store recognises per (chat, seq): nothing is lost and
//! nothing is stored twice. While the store fails, the writer retries the same batch with
//! exponential backoff (100 ms up to 5 s) and reports the store as degraded; sends go on being
//! acked from the queue meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::engine::MessageLog;
use crate::store::Store;

/// Whether the last store write succeeded (`/readyz` reports `store:"degraded"` otherwise).
#[derive(Default)]
pub struct StoreHealth {
    degraded: AtomicBool,
}

impl StoreHealth {
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn set(&self, degraded: bool) {
        self.degraded.store(degraded, Ordering::Relaxed);
    }
}

pub struct Writer {
    pub log: Arc<dyn MessageLog>,
    pub store: Arc<dyn Store>,
    pub batch: usize,
    /// After a batch smaller than `batch`, how long to let the next one gather (0: write at once).
    pub flush_interval: Duration,
    pub health: Arc<StoreHealth>,
}

/// How long an idle writer waits for new messages before looking again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Writer {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if *stop.borrow() {
                return;
            }
            let step = tokio::select! {
                _ = crate::shutdown::flagged(&mut stop) => return,
                step = self.step(IDLE_WAIT) => step,
            };
            match step {
                Ok(n) => {
                    backoff = BACKOFF_MIN;
                    if n > 0 && n < self.batch && !self.flush_interval.is_zero() {
                        tokio::select! {
                            _ = crate::shutdown::flagged(&mut stop) => return,
                            _ = tokio::time::sleep(self.flush_interval) => {}
                        }
                    }
                }
                Err(()) => {
                    tokio::select! {
                        _ = crate::shutdown::flagged(&mut stop) => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Persists one batch; `Ok(n)` with the number stored (0 when the queue was empty).
    pub async fn step(&self, wait: Duration) -> Result<usize, ()> {
        let batch = match self.log.next_batch(self.batch.max(1), wait).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading the write-behind queue failed");
                return Err(());
            }
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let messages: Vec<_> = batch.iter().map(|q| q.message.clone()).collect();
        let started = Instant::now();
        if let Err(e) = self.store.persist_messages(&messages).await {
            if !self.health.is_degraded() {
                tracing::warn!(error = %e, backlog = batch.len(), "store write failed; messages stay queued");
            }
            self.health.set(true);
            return Err(());
        }
        metrics::histogram!("coursechat_store_batch_size").record(messages.len() as f64);
        metrics::histogram!("coursechat_store_write_seconds").record(started.elapsed().as_secs_f64());
        if self.health.is_degraded() {
            tracing::info!("store writes succeed again");
        }
        self.health.set(false);
        let tokens: Vec<String> = batch.into_iter().map(|q| q.token).collect();
        if let Err(e) = self.log.release(&tokens).await {
            // Stored but still queued: the next attempt stores nothing twice and releases them.
            tracing::warn!(error = %e, "releasing stored messages failed");
            return Err(());
        }
        Ok(tokens.len())
    }

    /// Drains the queue into the store until it is empty, the store fails, or `deadline`.
    pub async fn flush(&self, deadline: Instant) -> usize {
        let mut stored = 0;
        while Instant::now() < deadline {
            match self.step(Duration::ZERO).await {
                Ok(0) | Err(()) => break,
                Ok(n) => stored += n,
            }
        }
        stored
    }
}
