//! The stores' retry counters of one run: the run gives each store it opens a
//! [`Retries`] handle counting into these families, so that two runs in one process count
//! apart. Retries are rare, so counting one takes a lock, and each is also a recent event.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::retry_count::{Retries, RetryObserver};
use crate::telemetry::recent::{Level, Recent};

/// A metric's label set: one label and its value.
pub(crate) type Label = [(&'static str, String); 1];

/// Retries of one kind of store, by operation; each retry is also recorded in the run's
/// recent events, when given them.
#[derive(Clone, Debug, Default)]
pub struct RetryCounts(Family<Label, Counter>, Option<(Recent, &'static str)>);

impl RetryCounts {
    /// Counters of `ops` at 0 (other operations are counted as they happen), each retry
    /// recorded in `recent` as a retry of `store`.
    pub(crate) fn new(ops: &[&str], recent: Recent, store: &'static str) -> RetryCounts {
        let counts = RetryCounts(Family::default(), Some((recent, store)));
        for op in ops {
            let _ = counts.0.get_or_create(&[("op", op.to_string())]);
        }
        counts
    }

    /// The family the metrics encode.
    pub fn family(&self) -> &Family<Label, Counter> {
        &self.0
    }

    /// A store's handle counting into these counters.
    pub fn handle(&self) -> Retries {
        Retries::to(Arc::new(self.clone()))
    }

    /// Retries of `op` counted so far.
    pub fn of(&self, op: &str) -> u64 {
        self.0.get(&[("op", op.to_string())]).map_or(0, |c| c.get())
    }
}

impl RetryObserver for RetryCounts {
    fn retried(&self, op: &str) {
        self.0.get_or_create(&[("op", op.to_string())]).inc();
        if let Some((recent, store)) = &self.1 {
            let message = format!("{store}: {op} retried after a transient failure");
            recent.record(Level::Warn, "retry", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_runs_count_apart() {
        let (first, second) = (RetryCounts::default(), RetryCounts::default());
        first.handle().retried("get");
        first.handle().retried("get");
        second.handle().retried("put");
        assert_eq!((first.of("get"), first.of("put")), (2, 0));
        assert_eq!((second.of("get"), second.of("put")), (0, 1));
    }

    #[test]
    fn named_operations_start_at_zero_and_a_retry_is_a_recent_event() {
        let recent = Recent::default();
        let counts = RetryCounts::new(&["get", "put"], recent.clone(), "S3");
        assert!(counts.0.get(&[("op", "put".to_string())]).is_some());
        assert_eq!(counts.of("put"), 0);
        counts.handle().retried("get");
        assert_eq!(counts.of("get"), 1);
        let events = recent.newest_first();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind, events[0].message.as_str()),
            ("retry", "S3: get retried after a transient failure")
        );
    }
}
