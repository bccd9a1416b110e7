//! How a store reports its retries: to whoever opened it, through a [`Retries`] handle given
//! at construction (the run's telemetry counts them per run; a store opened without one, by a
//! tool or a test, counts nothing). A leaf module, so that the stores need not know who
//! listens.

use std::fmt;
use std::sync::Arc;

/// Told of every retry of a store operation.
pub trait RetryObserver: Send + Sync {
    /// One retry of `op` (e.g. "get", "committing an epoch").
    fn retried(&self, op: &str);
}

/// A store's handle to its [`RetryObserver`], if it was given one.
#[derive(Clone, Default)]
pub struct Retries(Option<Arc<dyn RetryObserver>>);

impl Retries {
    /// Retries reported to `observer`.
    pub fn to(observer: Arc<dyn RetryObserver>) -> Retries {
        Retries(Some(observer))
    }

    /// Reports one retry of `op`.
    pub fn retried(&self, op: &str) {
        if let Some(observer) = &self.0 {
            observer.retried(op);
        }
    }
}

impl fmt::Debug for Retries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "Retries(observed)",
            None => "Retries(none)",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    struct Count(AtomicU64);

    impl RetryObserver for Count {
        fn retried(&self, _op: &str) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn retries_reach_the_observer_given_and_no_other() {
        let first = Arc::new(Count(AtomicU64::new(0)));
        let second = Arc::new(Count(AtomicU64::new(0)));
        let (a, b) = (Retries::to(first.clone()), Retries::to(second.clone()));
        a.retried("get");
        a.clone().retried("put");
        b.retried("get");
        Retries::default().retried("get");
        assert_eq!(first.0.load(Ordering::SeqCst), 2);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
