//! The seam between the runner and its state store: the [`StateWriter`] and [`StateReader`]
//! traits and the rows they store and read back.

use std::collections::{BTreeMap, HashSet};

use super::identity::RunIdentity;
use crate::error::StateError;
use crate::model::{DetectionKey, Pattern};

/// One row of the detection ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    pub seq: u64,
    pub epoch: u64,
    /// Stored as its id (`pattern_id`) and its action (`action_type`).
    pub pattern: Pattern,
    pub customer_name: String,
    pub merchant_id: String,
    pub y_start_time: String,
    pub detection_time: String,
    /// The output file holding this row; `None` until written.
    pub file_seq: Option<u64>,
    /// Why it fired: the values that made it hold at its first epoch, as a JSON object
    /// (`model::Evidence`); `None` for rows written before schema version 3.
    pub evidence: Option<String>,
}

/// Which ledger a call reads or marks: the baseline's (`detections`) or a recorded backtest
/// variant's (`variant_detections`). Both have the same rows and the same operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerId<'a> {
    Baseline,
    Variant(&'a str),
}

impl<'a> LedgerId<'a> {
    /// The variant's name; `None` for the baseline.
    pub fn variant(self) -> Option<&'a str> {
        match self {
            LedgerId::Baseline => None,
            LedgerId::Variant(name) => Some(name),
        }
    }
}

/// One row of the progress table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochRow {
    pub epoch: u64,
    pub chunk_key: String,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    pub committed_at: String,
    /// The digest of the chunk the epoch was computed from (`Chunk::digest`); `None` for
    /// epochs committed before schema version 2.
    pub chunk_digest: Option<String>,
}

/// A recorded checkpoint (`checkpoints` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub epoch: u64,
    /// Where its manifest is: the checkpoint store's root and the manifest's key.
    pub location: String,
    /// Its size: shards and manifest.
    pub bytes: u64,
    /// BLAKE3 (hex) of the manifest's bytes.
    pub digest: String,
    pub format_version: u32,
    pub created_at: String,
}

/// A failed run as the store records it (`run_failures`): history for the next run, the
/// console and `txflow-report`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureRow {
    /// When it failed: milliseconds since the Unix epoch, and as IST RFC 3339.
    pub at_ms: i64,
    pub at: String,
    /// The error's one line.
    pub message: String,
    /// `input`, `configuration`, `external service` or `internal`.
    pub domain: String,
    pub exit_code: u8,
}

/// How many recorded failures a store keeps (the oldest go first).
pub const FAILURES_KEPT: u64 = 20;

/// Everything one epoch commits, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochCommit {
    pub progress: EpochRow,
    /// `(merchant_id, delta of N(m))`, each merchant at most once.
    pub counter_deltas: Vec<(String, i64)>,
    /// New ledger rows, `file_seq` = None, sequence numbers continuing the ledger.
    pub detections: Vec<LedgerRow>,
    /// Backtest variants: each variant's new ledger rows (its own sequence numbers), in the
    /// order of [`StateWriter::begin_variants`]. Committed in the same transaction.
    pub variant_detections: Vec<VariantRows>,
}

/// One backtest variant's new ledger rows of an epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantRows {
    pub variant: String,
    pub rows: Vec<LedgerRow>,
}

/// A backtest variant as the state store records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantSpec {
    /// A valid [`crate::thresholds::VariantName`]; names its ledger and its output folder `variants/<name>/`.
    pub name: String,
    /// The variant's thresholds as canonical JSON (`Thresholds::to_json`).
    pub thresholds: String,
}

/// What a starting run finds in one variant's ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VariantRecovered {
    pub emitted: HashSet<DetectionKey>,
    /// The next sequence number to assign (the variant ledger's length).
    pub next_seq: u64,
}

/// What a starting run finds in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last committed epoch, if any.
    pub last_epoch: Option<u64>,
    /// Every committed epoch with its chunk's digest (`None` for epochs committed before
    /// schema version 2), ascending.
    pub epochs: BTreeMap<u64, Option<String>>,
    /// The ledger's detections (each row's pattern, merchant and customer).
    pub emitted: HashSet<DetectionKey>,
    /// The next sequence number to assign (ledger length).
    pub next_seq: u64,
    /// Whether the stream was ended (the last short file written).
    pub finished: bool,
}

/// What reports, inspection and status read of a state store; a store opened read-only
/// ([`super::open_read_only`]) is only this. Every method reads one store at this build's
/// schema version (another version is [`StateError::Schema`]); a variant the store does not
/// record is an error, in every method taking a [`LedgerId`].
pub trait StateReader: Send {
    /// The recorded variants, in order (inspection and the backtest report).
    fn variants(&mut self) -> Result<Vec<VariantSpec>, StateError>;

    /// The whole of `ledger`, ascending (inspection, tests and the backtest report).
    fn ledger(&mut self, ledger: LedgerId<'_>) -> Result<Vec<LedgerRow>, StateError>;

    /// Rows of `ledger` with `seq` in `[from_seq, to_seq)`, ascending.
    fn ledger_range(
        &mut self,
        ledger: LedgerId<'_>,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<LedgerRow>, StateError>;

    /// The smallest `seq` of `ledger` whose `file_seq` is NULL, if any.
    fn first_unwritten_seq(&mut self, ledger: LedgerId<'_>) -> Result<Option<u64>, StateError>;

    /// The recorded checkpoints, oldest first.
    fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>, StateError>;

    /// `merchant_transaction_counts`, by merchant (inspection and tests).
    fn merchant_counts(&mut self) -> Result<Vec<(String, i64)>, StateError>;

    /// The progress table, ascending (inspection and tests).
    fn epoch_rows(&mut self) -> Result<Vec<EpochRow>, StateError>;

    /// Every `run_meta` entry, by key (inspection: the run identity's `run.*` components, and
    /// `finished` once the stream ended).
    fn run_meta(&mut self) -> Result<BTreeMap<String, String>, StateError>;

    /// The newest recorded run failure, if any.
    fn last_failure(&mut self) -> Result<Option<FailureRow>, StateError>;
}

/// The runner's state store: everything a [`StateReader`] reads, and the writes of one run.
/// Every write needs the single-writer guard [`begin_run`](Self::begin_run) takes.
pub trait StateWriter: StateReader {
    /// Applies pending migrations, takes the single-writer guard, checks (or records) the run
    /// identity, and reports what earlier runs committed.
    fn begin_run(&mut self, run: &RunIdentity) -> Result<Recovered, StateError>;

    /// Records the run's backtest variants (the first run of the store) or checks them against
    /// those recorded: a restart must name the same variants, in the same order, with the same
    /// thresholds, and a store whose epochs were committed without variants takes none (and
    /// the other way round). Returns each variant's ledger state, in `variants`' order. Called
    /// after [`begin_run`](Self::begin_run), also with no variants.
    fn begin_variants(
        &mut self,
        variants: &[VariantSpec],
    ) -> Result<Vec<VariantRecovered>, StateError>;

    /// Commits one epoch atomically.
    fn commit_epoch(&mut self, commit: &EpochCommit) -> Result<(), StateError>;

    /// Records that rows `[from_seq, to_seq)` of `ledger` are in its output file `file_seq`.
    fn mark_written(
        &mut self,
        ledger: LedgerId<'_>,
        file_seq: u64,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<(), StateError>;

    /// Records that the stream ended (every ledger row is in a file).
    fn mark_finished(&mut self) -> Result<(), StateError>;

    /// Records a whole checkpoint and forgets all but the newest `keep`; returns the rows
    /// forgotten (their objects are the caller's to remove, after this returned).
    fn record_checkpoint(
        &mut self,
        row: &CheckpointRow,
        keep: usize,
    ) -> Result<Vec<CheckpointRow>, StateError>;

    /// Records that a run failed, keeping only the newest [`FAILURES_KEPT`]. Needs neither
    /// `begin_run` nor its guard (the failing run may never have taken it), only a store at
    /// this build's schema: the record is best-effort history, never part of a commit.
    fn record_failure(&mut self, failure: &FailureRow) -> Result<(), StateError>;
}
