//! Prometheus metrics: the recorder is installed once per process and rendered at `/metrics`.
//!
//! Names: `coursechat_connections` (gauge), `coursechat_events_in_total{event}`,
//! `coursechat_events_out_total{event}`, `coursechat_send_ack_seconds` (histogram),
//! `coursechat_writebehind_queue_depth` (gauge), `coursechat_errors_total{code}`,
//! `coursechat_store_batch_size`, `coursechat_store_write_seconds`,
//! `coursechat_group_commit_jobs{db}`, `coursechat_group_commit_seconds{db}`,
//! `coursechat_disconnects_total{reason}`, `coursechat_slow_consumer_disconnects_total`,
//! `coursechat_http_requests_total{status}`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (first call only) and returns the handle that renders it.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let latency = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            let sizes = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("coursechat_store_batch_size".into()), &sizes))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_jobs".into()), &sizes))
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}
