//! The audit log: one JSON line per REST call, socket connect / refusal / disconnect, join and
//! admin change, apart from the debug log. It never holds message content.
//!
//! With `CHAT_AUDIT_LOG` the lines go to that file through a bounded queue and one writer task;
//! a full queue drops the line and counts it (`coursechat_audit_dropped_total`) rather than
//! slowing requests. Without it they go to stdout as `tracing` events of the `audit` target.

use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::model::time::Timestamp;

const QUEUE_BOUND: usize = 8192;

#[derive(Clone)]
pub struct Audit {
    node: std::sync::Arc<str>,
    file: Option<mpsc::Sender<String>>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: Timestamp,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
}

impl Audit {
    pub async fn open(node: &str, path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            None => None,
            Some(path) => {
                let mut out = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
                let (tx, mut rx) = mpsc::channel::<String>(QUEUE_BOUND);
                tokio::spawn(async move {
                    while let Some(line) = rx.recv().await {
                        let mut buf = line.into_bytes();
                        while let Ok(more) = rx.try_recv() {
                            buf.extend_from_slice(more.as_bytes());
                        }
                        if let Err(e) = out.write_all(&buf).await {
                            tracing::error!(error = %e, "audit log write failed");
                        }
                        let _ = out.flush().await;
                    }
                });
                Some(tx)
            }
        };
        Ok(Audit { node: node.into(), file })
    }

    /// Records one action. `result` is `ok`, an error code, or a status.
    pub fn record(
        &self,
        action: &str,
        user: Option<&str>,
        target: Option<&str>,
        result: &str,
        peer: Option<SocketAddr>,
    ) {
        let line = Line {
            time: Timestamp::now(),
            node: &self.node,
            user,
            action,
            target,
            result,
            peer: peer.map(|p| p.to_string()),
        };
        let Ok(mut json) = serde_json::to_string(&line) else {
            return;
        };
        match &self.file {
            None => tracing::info!(target: "audit", "{json}"),
            Some(tx) => {
                json.push('\n');
                if tx.try_send(json).is_err() {
                    metrics::counter!("coursechat_audit_dropped_total").increment(1);
                }
            }
        }
    }
}
