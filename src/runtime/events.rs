//! What the runtime tells whoever watches a run: one [`Event`] per fact, emitted once to the
//! run's [`Observers`] (the telemetry behind `/metrics` and `/api/status`, the progress on
//! stderr). The runtime defines the events; the operating layer implements [`RunObserver`],
//! so that the runtime never depends on it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::summary::RunSummary;
use crate::sinks::ledger::PER_EPOCH_TARGET;
use crate::sinks::state::{LedgerRow, VariantRows};
use crate::sources::landing::FeedObserver;

/// One committed epoch: everything the log line, the run summary, the metrics, the status
/// history and the progress say of it.
#[derive(Clone, Debug, Default)]
pub struct EpochCommitted {
    pub epoch: u64,
    pub chunk: String,
    /// Rows accepted and rejected.
    pub rows: u64,
    pub rejected: u64,
    /// Worker 0: chunk taken → batch ready.
    pub compute: Option<Duration>,
    /// The commit itself (rejects, transaction, files).
    pub commit: Duration,
    /// From the committer taking up the chunk's epoch to its commit.
    pub latency: Duration,
    /// When the chunk became visible (its last-modified time) and when its epoch was
    /// committed, in ms since the Unix epoch.
    pub visible_ms: i64,
    pub committed_at_ms: i64,
    /// As stored (IST RFC 3339).
    pub committed_at: String,
    /// The epoch's new ledger rows.
    pub detections: Vec<LedgerRow>,
    /// Each variant's new ledger rows (a backtest's or a live run's shadow variants).
    pub variant_detections: Vec<VariantRows>,
    /// Detections in the ledger after this epoch.
    pub detections_total: u64,
    /// Rejected rows by reason kind ([`reason_kind`](crate::sinks::rejects::reason_kind)).
    pub rejects_by_reason: BTreeMap<String, u64>,
}

impl EpochCommitted {
    /// Milliseconds from the chunk becoming visible to its epoch's commit.
    pub fn visible_to_commit_ms(&self) -> i64 {
        self.committed_at_ms - self.visible_ms
    }

    /// The one report of a committed epoch: the run's summary, its log line and every
    /// observer.
    pub(crate) fn emit(&self, summary: &mut RunSummary, observers: &Observers) {
        summary.epochs_committed += 1;
        summary.rows_accepted += self.rows;
        summary.rows_rejected += self.rejected;
        summary.epoch_latencies.push(self.latency);
        summary
            .visible_to_commit_ms
            .push(self.visible_to_commit_ms());
        tracing::info!(
            target: PER_EPOCH_TARGET,
            epoch = self.epoch,
            chunk = %self.chunk,
            accepted = self.rows,
            rejected = self.rejected,
            new_detections = self.detections.len() as u64,
            total_detections = self.detections_total,
            "epoch committed"
        );
        observers.emit(&Event::EpochCommitted(self));
    }
}

/// One epoch an earlier run committed, replayed only to rebuild the state.
#[derive(Clone, Copy, Debug, Default)]
pub struct EpochReplayed {
    pub epoch: u64,
    /// Rows of its chunk (accepted and rejected).
    pub rows: u64,
    pub visible_ms: i64,
    pub detections_total: u64,
}

impl EpochReplayed {
    /// The one report of a replayed epoch: the run's summary and every observer.
    pub(crate) fn emit(&self, summary: &mut RunSummary, observers: &Observers) {
        summary.epochs_recovered += 1;
        observers.emit(&Event::EpochReplayed(self));
    }
}

/// What happened in a run.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A chunk of the landing was seen (fetched by the feed, or listed at the landing's
    /// edge), last modified at `last_modified_ms`.
    ChunkSeen {
        index: u64,
        last_modified_ms: i64,
    },
    /// The committing thread took an epoch out of its queue; `waiting` are left.
    QueueDepth {
        waiting: usize,
    },
    EpochCommitted(&'a EpochCommitted),
    EpochReplayed(&'a EpochReplayed),
    /// A checkpoint of `epoch` was written: `bytes` in all, in `took`.
    CheckpointWritten {
        epoch: u64,
        bytes: u64,
        took: Duration,
    },
    /// A checkpoint could not be written or recorded (the previous one still stands).
    CheckpointFailed,
    /// No epoch went through the committer for too long: the run fails with `reason`.
    Stalled {
        reason: &'a str,
    },
    /// An epoch entered a stage: the feed fetches its chunk, the workers compute it, the
    /// committing thread commits it.
    EpochStage {
        epoch: u64,
        stage: Stage,
    },
    /// The landing was listed: `missing` is why it is not there or could not be listed,
    /// `None` when the listing succeeded.
    LandingListed {
        missing: Option<&'a str>,
    },
    /// The feed has waited `waited` for `chunk`, which must exist (`why`).
    ChunkWaited {
        chunk: &'a str,
        waited: Duration,
        why: &'a str,
    },
}

/// Where an epoch is on its way to being committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Fetching,
    Computing,
    Committing,
}

impl Stage {
    /// As `/api/status` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetching => "fetching",
            Stage::Computing => "computing",
            Stage::Committing => "committing",
        }
    }
}

/// Told of every event of a run; called from the run's threads, so it must be cheap.
pub trait RunObserver: Send + Sync {
    fn observe(&self, event: &Event<'_>);
}

/// The observers of one run.
#[derive(Clone, Default)]
pub struct Observers(Vec<Arc<dyn RunObserver>>);

impl Observers {
    pub fn new(observers: Vec<Arc<dyn RunObserver>>) -> Observers {
        Observers(observers)
    }

    /// Tells every observer, in order.
    pub(crate) fn emit(&self, event: &Event<'_>) {
        for observer in &self.0 {
            observer.observe(event);
        }
    }
}

impl FeedObserver for Observers {
    fn chunk_fetched(&self, index: u64, last_modified_ms: i64) {
        self.emit(&Event::ChunkSeen {
            index,
            last_modified_ms,
        });
    }

    fn fetching(&self, index: u64) {
        self.emit(&Event::EpochStage {
            epoch: index,
            stage: Stage::Fetching,
        });
    }

    fn computing(&self, index: u64) {
        self.emit(&Event::EpochStage {
            epoch: index,
            stage: Stage::Computing,
        });
    }

    fn landing_listed(&self, missing: Option<&str>) {
        self.emit(&Event::LandingListed { missing });
    }

    fn chunk_waited(&self, chunk: &str, waited: Duration, why: &str) {
        self.emit(&Event::ChunkWaited { chunk, waited, why });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl RunObserver for Seen {
        fn observe(&self, event: &Event<'_>) {
            let line = match event {
                Event::EpochCommitted(e) => format!("committed {}", e.epoch),
                Event::EpochReplayed(e) => format!("replayed {}", e.epoch),
                other => format!("{other:?}"),
            };
            self.0.lock().unwrap().push(line);
        }
    }

    #[test]
    fn one_emit_reaches_the_summary_and_every_observer_once() {
        let (first, second) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let observers = Observers::new(vec![first.clone(), second.clone()]);
        let mut summary = RunSummary::default();
        EpochReplayed {
            epoch: 0,
            ..EpochReplayed::default()
        }
        .emit(&mut summary, &observers);
        let committed = EpochCommitted {
            epoch: 1,
            rows: 7,
            rejected: 2,
            visible_ms: 1_000,
            committed_at_ms: 1_250,
            ..EpochCommitted::default()
        };
        committed.emit(&mut summary, &observers);
        for seen in [first, second] {
            assert_eq!(*seen.0.lock().unwrap(), ["replayed 0", "committed 1"]);
        }
        assert_eq!((summary.epochs_recovered, summary.epochs_committed), (1, 1));
        assert_eq!((summary.rows_accepted, summary.rows_rejected), (7, 2));
        assert_eq!(summary.visible_to_commit_ms, [250]);
    }
}
