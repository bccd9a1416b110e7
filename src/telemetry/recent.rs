//! The run's recent events (`recent_events` of `/api/status`): a bounded ring of the last
//! [`RECENT_EVENTS`] things an operator should know of (rejects, retries, a chunk waited for,
//! a stall, the landing missing or back, a slow commit, recovery done, a failure), newest
//! first. The same event repeated back to back is kept once with its count, so that a burst
//! of retries does not push everything else out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::time::{format_ist, now_ms};

/// Events the ring keeps.
pub(crate) const RECENT_EVENTS: usize = 50;

/// How much an event matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One entry of `recent_events`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecentEvent {
    pub at_ms: i64,
    /// IST RFC 3339.
    pub at: String,
    pub level: &'static str,
    pub kind: &'static str,
    pub message: String,
    /// The message as recorded, before a repeat count was added.
    #[serde(skip)]
    first: String,
    #[serde(skip)]
    times: u64,
}

/// The ring, shared by the telemetry and its retry counters.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recent(Arc<Mutex<VecDeque<RecentEvent>>>);

impl Recent {
    /// Records an event now.
    pub(crate) fn record(&self, level: Level, kind: &'static str, message: String) {
        self.record_at(now_ms(), level, kind, message);
    }

    fn record_at(&self, at_ms: i64, level: Level, kind: &'static str, message: String) {
        let mut ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (level, at) = (level.as_str(), format_ist(at_ms));
        if let Some(newest) = ring.front_mut() {
            if (newest.kind, newest.level, newest.first.as_str()) == (kind, level, &message) {
                newest.times += 1;
                newest.message = format!("{message} (×{})", newest.times);
                (newest.at_ms, newest.at) = (at_ms, at);
                return;
            }
        }
        if ring.len() == RECENT_EVENTS {
            ring.pop_back();
        }
        ring.push_front(RecentEvent {
            at_ms,
            at,
            level,
            kind,
            first: message.clone(),
            message,
            times: 1,
        });
    }

    /// The events, newest first.
    pub(crate) fn newest_first(&self) -> Vec<RecentEvent> {
        let ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_fifty_newest_first() {
        let recent = Recent::default();
        for i in 0..(RECENT_EVENTS as i64 + 7) {
            recent.record_at(i, Level::Warn, "rejects", format!("event {i}"));
        }
        let events = recent.newest_first();
        assert_eq!(events.len(), RECENT_EVENTS);
        assert_eq!(events[0].message, format!("event {}", RECENT_EVENTS + 6));
        assert_eq!(events[RECENT_EVENTS - 1].message, "event 7");
        assert_eq!(events[0].level, "warn");
        let json = serde_json::to_value(&events[0]).unwrap();
        let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["at", "at_ms", "kind", "level", "message"]);
    }

    #[test]
    fn a_repeated_event_is_kept_once_with_its_count() {
        let recent = Recent::default();
        recent.record_at(1, Level::Info, "recovered", "recovery done".into());
        for at in 2..5 {
            recent.record_at(at, Level::Warn, "retry", "S3 get retried".into());
        }
        recent.record_at(5, Level::Warn, "retry", "S3 put retried".into());
        let messages: Vec<(String, i64)> = recent
            .newest_first()
            .into_iter()
            .map(|e| (e.message, e.at_ms))
            .collect();
        assert_eq!(
            messages,
            [
                ("S3 put retried".to_string(), 5),
                ("S3 get retried (×3)".to_string(), 4),
                ("recovery done".to_string(), 1)
            ]
        );
    }
}
