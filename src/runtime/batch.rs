//! The epoch batch: everything the committer needs to commit one epoch, and nothing else.
//!
//! Worker 0 gathers the dataflow's outputs (detection changes, `N(m)` changes) and every
//! worker's share report by epoch ([`Gathered`]); once the dataflow has finished an epoch it
//! takes them out as one [`EpochBatch`] with the chunk's identity, and the batch says whether
//! every worker contributed its share ([`EpochBatch::is_complete`]). The committer takes only
//! batches.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::dataflow::{Epoch, ShareReport};
use crate::model::{DetectionKey, Name, Reject};
use crate::sources::landing::Chunk;

/// One epoch, ready to commit.
#[derive(Debug)]
pub struct EpochBatch {
    /// The epoch = the chunk's index.
    pub epoch: Epoch,
    /// The chunk's key, e.g. `chunk-000007.csv`.
    pub chunk_key: String,
    /// The BLAKE3 digest of the chunk's bytes (SPEC §6: append-only landing).
    pub chunk_digest: String,
    /// When the chunk became visible (its last-modified time), in ms since the epoch.
    pub visible_ms: i64,
    /// When a worker took up the chunk (for the epoch latency).
    pub taken_at: Instant,
    /// Worker 0: from taking up the chunk to this batch being ready (the epoch's compute time).
    pub computed_in: Option<Duration>,
    /// Detection → summed diff at this epoch (+1 = starts holding).
    pub detections: BTreeMap<DetectionKey, isize>,
    /// Merchant → change of `N(m)` (Σ value·diff over the count collection's updates).
    pub counter_deltas: BTreeMap<Name, i64>,
    /// One per worker that parsed its share of the chunk.
    pub reports: Vec<ShareReport>,
}

impl EpochBatch {
    /// An epoch of `chunk` with nothing gathered yet.
    pub fn new(chunk: &Chunk, taken_at: Instant) -> EpochBatch {
        EpochBatch {
            epoch: chunk.index,
            chunk_key: chunk.key.clone(),
            chunk_digest: chunk.digest.clone(),
            visible_ms: chunk.last_modified_ms,
            taken_at,
            computed_in: None,
            detections: BTreeMap::new(),
            counter_deltas: BTreeMap::new(),
            reports: Vec::new(),
        }
    }

    /// Whether all `workers` workers of the run contributed their share: only a complete
    /// epoch may be committed (never half an epoch).
    pub fn is_complete(&self, workers: usize) -> bool {
        self.reports.len() == workers
    }

    /// Rows accepted and rejected over every share.
    pub fn row_counts(&self) -> (u64, u64) {
        self.reports
            .iter()
            .fold((0, 0), |(a, r), s| (a + s.accepted, r + s.rejected))
    }

    /// The rejected rows of every share in line order. Records separated by a lone `\r`
    /// share a line number: those are ordered by text, so that the rejects file is the same
    /// for any number of workers and processes.
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        let mut rows: Vec<Reject> = self
            .reports
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.rejects))
            .collect();
        rows.sort_by(|a, b| (a.line, &a.raw, &a.reason).cmp(&(b.line, &b.raw, &b.reason)));
        rows
    }
}

/// The dataflow's outputs of one epoch, as they arrive on worker 0.
#[derive(Default)]
struct Outputs {
    detections: BTreeMap<DetectionKey, isize>,
    counter_deltas: BTreeMap<Name, i64>,
    reports: Vec<ShareReport>,
}

/// Outputs gathered on worker 0, by epoch, until their epoch is complete in the dataflow.
#[derive(Default)]
pub struct Gathered {
    epochs: BTreeMap<Epoch, Outputs>,
}

impl Gathered {
    pub fn add_detection(&mut self, epoch: Epoch, key: &DetectionKey, diff: isize) {
        let outputs = self.epochs.entry(epoch).or_default();
        *outputs.detections.entry(key.clone()).or_default() += diff;
    }

    pub fn add_count(&mut self, epoch: Epoch, merchant: &Name, change: i64) {
        let outputs = self.epochs.entry(epoch).or_default();
        *outputs.counter_deltas.entry(merchant.clone()).or_default() += change;
    }

    pub fn add_report(&mut self, epoch: Epoch, report: &ShareReport) {
        let outputs = self.epochs.entry(epoch).or_default();
        outputs.reports.push(report.clone());
    }

    /// Takes out everything gathered for epochs before `next` as `chunk`'s batch. Once the
    /// dataflow's frontier has passed the chunk's epoch only that epoch can be there; earlier
    /// ones are merged defensively.
    pub fn take_batch(&mut self, chunk: &Chunk, next: Epoch, taken_at: Instant) -> EpochBatch {
        let rest = self.epochs.split_off(&next);
        let done = std::mem::replace(&mut self.epochs, rest);
        let mut batch = EpochBatch::new(chunk, taken_at);
        for (_, outputs) in done {
            batch.detections.extend(outputs.detections);
            batch.counter_deltas.extend(outputs.counter_deltas);
            batch.reports.extend(outputs.reports);
        }
        batch
    }
}
