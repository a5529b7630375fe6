//! Prometheus metrics: the recorder behind the `metrics` macros used across the crates, and
//! the histogram buckets that suit SMTP latencies and commit batch sizes.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the global recorder once; `None` if one is already installed.
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("tern_spool_batch_messages".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
            )
        })
        .ok()?
        .install_recorder()
        .ok()
}
