//! Waiting for something to happen, always bounded: the one polling loop of the tests.

use std::time::{Duration, Instant};

/// How often a condition is polled: far below the timings the tests allow, far above what
/// would keep a core busy.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `probe` until it gives a value, for at most `timeout` (probed once more at the end);
/// `None` if it never did.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep((deadline - now).min(POLL_INTERVAL));
    }
}

/// Polls `condition` until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    if poll(timeout, || condition().then_some(())).is_none() {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}
