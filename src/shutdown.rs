//! The node's stop signals: a flag that turns true once (drain, or a background task's stop) and
//! the one way to wait for it.
//!
//! Every long-lived task (socket sessions, HTTP connections, the write-behind writer) selects on
//! [`flagged`] beside its own work, so one `send_replace(true)` reaches them all.

use tokio::sync::watch;

/// Resolves once the flag turns true (drain, stop). The guard `wait_for` returns is dropped here,
/// so callers can await across it.
pub async fn flagged(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}
