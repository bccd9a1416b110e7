//! The stores' retry counters of one run: the run gives each store it opens a
//! [`Retries`] handle counting into these families, so that two runs in one process count
//! apart. Retries are rare, so counting one takes a lock.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::retry_count::{Retries, RetryObserver};

/// A metric's label set: one label and its value.
pub(crate) type Label = [(&'static str, String); 1];

/// Retries of one kind of store, by operation.
#[derive(Clone, Debug, Default)]
pub struct RetryCounts(Family<Label, Counter>);

impl RetryCounts {
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
}
