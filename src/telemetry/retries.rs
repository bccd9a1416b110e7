//! Retry counters of the stores, process-wide: a retry happens deep inside a store, which
//! does not know the run it serves. Retries are rare, so counting one takes a lock.

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// A metric's label set: one label and its value.
pub type Label = [(&'static str, String); 1];

static STATE_STORE: LazyLock<Family<Label, Counter>> = LazyLock::new(Family::default);
static S3: LazyLock<Family<Label, Counter>> = LazyLock::new(Family::default);

/// State-store retries by operation (`txflow_state_store_retries_total{op}`).
pub fn state_store() -> &'static Family<Label, Counter> {
    &STATE_STORE
}

/// S3 retries by operation (`txflow_s3_retries_total{op}`).
pub fn s3() -> &'static Family<Label, Counter> {
    &S3
}

/// Counts one retry of a state-store operation (e.g. "committing an epoch").
pub fn state_store_retry(op: &str) {
    STATE_STORE.get_or_create(&[("op", op.to_string())]).inc();
}

/// Counts one retry of an S3 request (e.g. "get").
pub fn s3_retry(op: &str) {
    S3.get_or_create(&[("op", op.to_string())]).inc();
}
