//! The state-store protocol, written once: migrations, the run identity, recovery, the backtest
//! variants, the epoch commit, the ledger and the inspection reads, over a small transaction
//! trait ([`Tx`]: query, execute, a batch of statements, the epoch's batched inserts). Each
//! database adapts it ([`Db`]: the single-writer guard and how a piece of work is run); the
//! one [`Store`] implements [`StateReader`] and [`StateWriter`] for both.

use std::collections::{BTreeMap, HashSet};

use super::identity::{record_identity, RunIdentity};
use super::rules::{
    check_readable_schema, check_schema_version, check_variant_rows, checkpoints_beyond,
    detection_key, merged_deltas, record_variants, sql_i64, sql_u64, unknown_variant,
    VariantLedgers,
};
use super::schema::{self, Dialect, LedgerSql, MIGRATIONS};
use super::store::{
    CheckpointRow, EpochCommit, EpochRow, FailureRow, LedgerId, LedgerRow, Recovered, StateReader,
    StateWriter, VariantRecovered, VariantRows, VariantSpec, FAILURES_KEPT,
};
use crate::error::StateError;
use crate::model::Pattern;

/// A statement's parameter, typed so that a NULL has a type too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

/// A value read back: both schemas hold only integers (`BIGINT`, booleans as 0/1) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// One row read back, its columns in the statement's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn mismatch(&self, i: usize, expected: &str) -> StateError {
        StateError::Inconsistent(format!(
            "column {i} of a state store row holds {:?}, expected {expected}",
            self.0.get(i)
        ))
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>, StateError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            Some(Value::Int(v)) => Ok(Some(*v)),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    fn int(&self, i: usize) -> Result<i64, StateError> {
        self.opt_int(i)?
            .ok_or_else(|| self.mismatch(i, "an integer"))
    }

    fn uint(&self, i: usize, what: &str) -> Result<u64, StateError> {
        sql_u64(self.int(i)?, what)
    }

    fn opt_text(&self, i: usize) -> Result<Option<&str>, StateError> {
        match self.0.get(i) {
            Some(Value::Null) => Ok(None),
            Some(Value::Text(v)) => Ok(Some(v)),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    fn text(&self, i: usize) -> Result<&str, StateError> {
        self.opt_text(i)?.ok_or_else(|| self.mismatch(i, "text"))
    }

    fn string(&self, i: usize) -> Result<String, StateError> {
        self.text(i).map(str::to_string)
    }
}

/// The statements of one database session, in a transaction or not: what the protocol needs
/// of a database.
pub trait Tx {
    /// Why a statement failed: the store's error, or (PostgreSQL) a failure its retry loop
    /// looks at.
    type Error: From<StateError>;

    /// The statements whose text differs between the dialects.
    const DIALECT: &'static Dialect;

    /// The rows `sql` returns.
    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, Self::Error>;

    /// Runs `sql`; the number of rows it changed.
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, Self::Error>;

    /// Runs statements without parameters (a migration).
    fn batch(&mut self, sql: &'static str) -> Result<(), Self::Error>;

    /// Applies an epoch's counter deltas (each merchant once) and inserts its ledger rows,
    /// the baseline's and the variants', in as few round trips as the database allows.
    fn insert_rows(
        &mut self,
        deltas: &[(&str, i64)],
        detections: &[LedgerRow],
        variants: &[VariantRows],
    ) -> Result<(), Self::Error>;
}

/// How a piece of work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Each statement on its own.
    Autocommit,
    /// A read-only transaction on one snapshot.
    Snapshot,
    /// A write transaction (SQLite: `BEGIN IMMEDIATE`).
    Transaction,
}

/// One database as a state store: its single-writer guard and how work runs on it.
pub trait Db: Send {
    type Error: From<StateError>;
    type Tx<'a>: Tx<Error = Self::Error>
    where
        Self: 'a;

    /// The store for messages: a path, a redacted URL.
    fn name(&self) -> &str;

    /// Opened for reading only: a run cannot begin.
    fn read_only(&self) -> bool;

    /// Takes the single-writer guard, if not held yet.
    fn lock(&mut self) -> Result<(), StateError>;

    /// Whether this store holds the single-writer guard.
    fn locked(&self) -> bool;

    /// Runs `work` (`what`, for messages) with `access`, committing a transaction at its end.
    /// PostgreSQL runs it again after a connection loss, so it must be idempotent.
    fn run<T>(
        &mut self,
        what: &'static str,
        access: Access,
        work: impl FnMut(&mut Self::Tx<'_>) -> Result<T, Self::Error>,
    ) -> Result<T, StateError>;

    /// Commits one epoch ([`commit_epoch`] in a write transaction). PostgreSQL settles a
    /// COMMIT whose answer was lost before it runs the transaction again.
    fn commit(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        self.run("committing an epoch", Access::Transaction, |tx| {
            commit_epoch(tx, commit)
        })
    }
}

/// A state store on one database: the protocol's state ([`StateReader`], [`StateWriter`]).
pub struct Store<D> {
    pub(super) db: D,
    /// The variants' names once `begin_variants` recorded or checked them (commits refuse
    /// rows of any other).
    variant_names: Option<Vec<String>>,
    /// The schema is this build's (migrated by `begin_run`, or checked by a reader).
    schema_checked: bool,
}

impl<D: Db> Store<D> {
    pub(super) fn new(db: D) -> Store<D> {
        Store {
            db,
            variant_names: None,
            schema_checked: false,
        }
    }

    /// Readers: refuses a store at another schema version than this build's (checked once).
    fn require_schema(&mut self) -> Result<(), StateError> {
        if !self.schema_checked {
            let what = "reading the schema version";
            let newest = self
                .db
                .run(what, Access::Autocommit, |tx| schema_version(tx))?;
            check_readable_schema(newest)?;
            self.schema_checked = true;
        }
        Ok(())
    }

    fn require_lock(&self, what: &str) -> Result<(), StateError> {
        if !self.db.locked() {
            return Err(StateError::Inconsistent(format!(
                "{what} before begin_run took the single-writer lock"
            )));
        }
        Ok(())
    }

    /// Rows of `ledger` from its statement `sql` with `args`.
    fn read_ledger(
        &mut self,
        ledger: LedgerId<'_>,
        sql: fn(&LedgerSql) -> &'static str,
        args: &[u64],
    ) -> Result<Vec<LedgerRow>, StateError> {
        self.require_schema()?;
        let sql = sql(schema::ledger_sql(ledger.variant().is_some()));
        self.db.run("reading the ledger", Access::Autocommit, |tx| {
            let params = ledger_params(tx, ledger, args)?;
            let rows = tx.query(sql, &params)?;
            Ok(rows.iter().map(ledger_row).collect::<Result<_, _>>()?)
        })
    }
}

impl<D: Db> StateReader for Store<D> {
    fn variants(&mut self) -> Result<Vec<VariantSpec>, StateError> {
        self.require_schema()?;
        self.db
            .run("reading the variants", Access::Autocommit, |tx| {
                read_variants(tx)
            })
    }

    fn ledger(&mut self, ledger: LedgerId<'_>) -> Result<Vec<LedgerRow>, StateError> {
        self.read_ledger(ledger, |s| s.all, &[])
    }

    fn ledger_range(
        &mut self,
        ledger: LedgerId<'_>,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<LedgerRow>, StateError> {
        self.read_ledger(ledger, |s| s.range, &[from_seq, to_seq])
    }

    fn first_unwritten_seq(&mut self, ledger: LedgerId<'_>) -> Result<Option<u64>, StateError> {
        self.require_schema()?;
        let sql = schema::ledger_sql(ledger.variant().is_some()).first_unwritten;
        let min = self
            .db
            .run("reading the ledger", Access::Autocommit, |tx| {
                let params = ledger_params(tx, ledger, &[])?;
                int_value(tx, sql, &params)
            })?;
        min.map(|s| sql_u64(s, "sequence number")).transpose()
    }

    fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>, StateError> {
        self.require_schema()?;
        self.db
            .run("reading the checkpoints", Access::Autocommit, |tx| {
                read_checkpoints(tx)
            })
    }

    fn merchant_counts(&mut self) -> Result<Vec<(String, i64)>, StateError> {
        self.require_schema()?;
        self.db
            .run("reading merchant counts", Access::Autocommit, |tx| {
                let rows = tx.query(schema::MERCHANT_COUNTS, &[])?;
                let counts = rows.iter().map(|r| Ok((r.string(0)?, r.int(1)?)));
                Ok(counts.collect::<Result<_, StateError>>()?)
            })
    }

    fn epoch_rows(&mut self) -> Result<Vec<EpochRow>, StateError> {
        self.require_schema()?;
        self.db
            .run("reading the progress table", Access::Autocommit, |tx| {
                let rows = tx.query(schema::EPOCH_ROWS, &[])?;
                Ok(rows.iter().map(epoch_row).collect::<Result<_, _>>()?)
            })
    }

    fn run_meta(&mut self) -> Result<BTreeMap<String, String>, StateError> {
        self.require_schema()?;
        self.db.run("reading run_meta", Access::Autocommit, |tx| {
            let rows = tx.query(schema::ALL_META, &[])?;
            let entries = rows.iter().map(|r| Ok((r.string(0)?, r.string(1)?)));
            Ok(entries.collect::<Result<_, StateError>>()?)
        })
    }

    fn last_failure(&mut self) -> Result<Option<FailureRow>, StateError> {
        self.require_schema()?;
        self.db
            .run("reading the last run failure", Access::Autocommit, |tx| {
                let rows = tx.query(schema::LAST_FAILURE, &[])?;
                Ok(rows.first().map(failure_row).transpose()?)
            })
    }
}

impl<D: Db> StateWriter for Store<D> {
    fn begin_run(&mut self, run: &RunIdentity) -> Result<Recovered, StateError> {
        if self.db.read_only() {
            return Err(StateError::Inconsistent(format!(
                "{} was opened read-only: a run cannot begin on it",
                self.db.name()
            )));
        }
        // The lock comes first, so concurrent starts never race on migrations.
        self.db.lock()?;
        let name = self.db.name().to_string();
        self.db
            .run("applying migrations", Access::Transaction, |tx| {
                migrate(tx, &name)
            })?;
        self.schema_checked = true;
        self.db
            .run("checking the run identity", Access::Transaction, |tx| {
                check_identity(tx, run)
            })?;
        self.db
            .run("reading the committed state", Access::Snapshot, |tx| {
                recovered(tx)
            })
    }

    fn begin_variants(
        &mut self,
        variants: &[VariantSpec],
    ) -> Result<Vec<VariantRecovered>, StateError> {
        self.require_lock("begin_variants")?;
        let what = "recording the variants";
        let recovered = self
            .db
            .run(what, Access::Transaction, |tx| check_variants(tx, variants))?;
        self.variant_names = Some(variants.iter().map(|v| v.name.clone()).collect());
        Ok(recovered)
    }

    fn commit_epoch(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        self.require_lock("commit_epoch")?;
        check_variant_rows(self.variant_names.as_deref(), &commit.variant_detections)?;
        self.db.commit(commit)
    }

    fn mark_written(
        &mut self,
        ledger: LedgerId<'_>,
        file_seq: u64,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<(), StateError> {
        self.require_lock("mark_written")?;
        sql_i64(file_seq, "file_seq")?;
        let sql = schema::ledger_sql(ledger.variant().is_some()).mark_written;
        let what = "recording written ledger rows";
        self.db.run(what, Access::Autocommit, |tx| {
            let params = ledger_params(tx, ledger, &[file_seq, from_seq, to_seq])?;
            tx.execute(sql, &params)
        })?;
        Ok(())
    }

    fn mark_finished(&mut self) -> Result<(), StateError> {
        self.require_lock("mark_finished")?;
        let what = "recording the end of the stream";
        self.db.run(what, Access::Autocommit, |tx| {
            tx.execute(schema::MARK_FINISHED, &[])
        })?;
        Ok(())
    }

    fn record_checkpoint(
        &mut self,
        row: &CheckpointRow,
        keep: usize,
    ) -> Result<Vec<CheckpointRow>, StateError> {
        self.require_lock("record_checkpoint")?;
        self.db
            .run("recording a checkpoint", Access::Transaction, |tx| {
                record_checkpoint(tx, row, keep)
            })
    }

    fn record_failure(&mut self, failure: &FailureRow) -> Result<(), StateError> {
        self.require_schema()?;
        self.db
            .run("recording a run failure", Access::Transaction, |tx| {
                record_failure(tx, failure)
            })
    }
}

/// The first column of the first row `sql` returns, if any and not NULL.
fn int_value<T: Tx>(
    tx: &mut T,
    sql: &'static str,
    params: &[Param<'_>],
) -> Result<Option<i64>, T::Error> {
    match tx.query(sql, params)?.first() {
        Some(row) => Ok(row.opt_int(0)?),
        None => Ok(None),
    }
}

/// Whether `sql` (an `EXISTS`) answers true.
fn exists<T: Tx>(tx: &mut T, sql: &'static str) -> Result<bool, T::Error> {
    Ok(int_value(tx, sql, &[])?.is_some_and(|v| v != 0))
}

/// The store's newest applied migration, `None` when it has none (a reader creates nothing).
fn schema_version<T: Tx>(tx: &mut T) -> Result<Option<i64>, T::Error> {
    if !exists(tx, T::DIALECT.has_migrations)? {
        return Ok(None);
    }
    int_value(tx, schema::NEWEST_MIGRATION, &[])
}

/// Applies every pending migration, in the caller's transaction: a store is at no version or
/// at this build's, never in between (a kill during the first start leaves nothing half done).
fn migrate<T: Tx>(tx: &mut T, store: &str) -> Result<(), T::Error> {
    tx.batch(schema::CREATE_SCHEMA_MIGRATIONS)?;
    let newest = int_value(tx, schema::NEWEST_MIGRATION, &[])?;
    check_schema_version(newest)?;
    for (version, migration) in MIGRATIONS {
        if newest.is_some_and(|n| *version <= n) {
            continue;
        }
        tx.batch(migration)?;
        tx.execute(T::DIALECT.record_migration, &[Param::from(*version)])?;
        tracing::info!(store, version, "applied state store migration");
    }
    Ok(())
}

/// Checks the run identity against the one recorded, or records it (a store without epochs).
fn check_identity<T: Tx>(tx: &mut T, requested: &RunIdentity) -> Result<(), T::Error> {
    let rows = tx.query(schema::SELECT_IDENTITY, &[])?;
    let stored = rows
        .iter()
        .map(|r| Ok((r.string(0)?, r.string(1)?)))
        .collect::<Result<BTreeMap<_, _>, StateError>>()?;
    let has_epochs = exists(tx, schema::ANY_EPOCH)?;
    if record_identity(&stored, requested, has_epochs)? {
        for (key, value) in requested.meta_entries() {
            tx.execute(schema::UPSERT_META, &[key.into(), value.as_str().into()])?;
        }
        tx.execute(schema::CLEAR_FINISHED, &[])?;
    }
    Ok(())
}

/// What earlier runs committed.
fn recovered<T: Tx>(tx: &mut T) -> Result<Recovered, T::Error> {
    let mut epochs = BTreeMap::new();
    for r in tx.query(schema::EPOCH_DIGESTS, &[])? {
        epochs.insert(r.uint(0, "epoch")?, r.opt_text(1)?.map(str::to_string));
    }
    let mut emitted = HashSet::new();
    for r in tx.query(schema::EMITTED, &[])? {
        emitted.insert(detection_key(r.text(0)?, r.text(1)?, r.text(2)?)?);
    }
    let next_seq = match int_value(tx, schema::MAX_SEQ, &[])? {
        Some(s) => sql_u64(s, "sequence number")? + 1,
        None => 0,
    };
    let finished = !tx.query(schema::IS_FINISHED, &[])?.is_empty();
    Ok(Recovered {
        last_epoch: epochs.keys().next_back().copied(),
        epochs,
        emitted,
        next_seq,
        finished,
    })
}

/// The recorded variants, in order.
fn read_variants<T: Tx>(tx: &mut T) -> Result<Vec<VariantSpec>, T::Error> {
    let rows = tx.query(schema::VARIANTS, &[])?;
    let variants = rows.iter().map(|r| {
        Ok(VariantSpec {
            name: r.string(0)?,
            thresholds: r.string(1)?,
        })
    });
    Ok(variants.collect::<Result<_, StateError>>()?)
}

/// `begin_variants` in one transaction: checks or records the variants, reads their ledgers.
fn check_variants<T: Tx>(
    tx: &mut T,
    requested: &[VariantSpec],
) -> Result<Vec<VariantRecovered>, T::Error> {
    let recorded = read_variants(tx)?;
    let has_epochs = exists(tx, schema::ANY_EPOCH)?;
    if record_variants(&recorded, requested, has_epochs)? {
        tx.execute(schema::DELETE_VARIANTS, &[])?;
        for (position, v) in requested.iter().enumerate() {
            let position = sql_i64(position as u64, "variant position")?;
            let params = [
                position.into(),
                v.name.as_str().into(),
                v.thresholds.as_str().into(),
            ];
            tx.execute(schema::INSERT_VARIANT, &params)?;
        }
    }
    let mut ledgers = VariantLedgers::default();
    for r in tx.query(schema::VARIANT_EMITTED, &[])? {
        ledgers.add(r.text(0)?, r.text(1)?, r.text(2)?, r.text(3)?)?;
    }
    let sizes = tx.query(schema::VARIANT_LEDGER_SIZES, &[])?;
    ledgers.sizes = sizes
        .iter()
        .map(|r| Ok((r.string(0)?, r.int(1)?, r.int(2)?)))
        .collect::<Result<_, StateError>>()?;
    Ok(ledgers.recovered(requested)?)
}

/// The epoch transaction's statements (the caller begins and commits it): the progress row,
/// refused at or below a committed epoch, then the counter deltas and the ledger rows.
pub(super) fn commit_epoch<T: Tx>(tx: &mut T, commit: &EpochCommit) -> Result<(), T::Error> {
    let deltas = merged_deltas(&commit.counter_deltas)?;
    let p = &commit.progress;
    let params = [
        sql_i64(p.epoch, "epoch")?.into(),
        p.chunk_key.as_str().into(),
        sql_i64(p.rows_accepted, "rows_accepted")?.into(),
        sql_i64(p.rows_rejected, "rows_rejected")?.into(),
        p.committed_at.as_str().into(),
        p.chunk_digest.as_deref().into(),
    ];
    if tx.execute(T::DIALECT.insert_epoch, &params)? == 0 {
        let last = int_value(tx, schema::MAX_EPOCH, &[])?;
        return Err(StateError::Inconsistent(format!(
            "asked to commit epoch {} but epoch {} is already committed",
            p.epoch,
            last.map_or_else(|| "?".to_string(), |e| e.to_string())
        ))
        .into());
    }
    tx.insert_rows(&deltas, &commit.detections, &commit.variant_detections)
}

/// The parameters of a statement of `ledger` (`schema::LedgerSql`): a variant's name first
/// (refused unless recorded), then `args`, clamped to the `BIGINT` range (`u64::MAX` means
/// "to the end").
fn ledger_params<'a, T: Tx>(
    tx: &mut T,
    ledger: LedgerId<'a>,
    args: &[u64],
) -> Result<Vec<Param<'a>>, T::Error> {
    let mut params = Vec::with_capacity(args.len() + 1);
    if let Some(variant) = ledger.variant() {
        if tx
            .query(schema::VARIANT_KNOWN, &[variant.into()])?
            .is_empty()
        {
            return Err(unknown_variant(variant).into());
        }
        params.push(variant.into());
    }
    params.extend(
        args.iter()
            .map(|&a| Param::from(a.min(i64::MAX as u64) as i64)),
    );
    Ok(params)
}

/// A ledger row from a statement selecting [`LedgerRow`]'s fields in order.
fn ledger_row(r: &Row) -> Result<LedgerRow, StateError> {
    Ok(LedgerRow {
        seq: r.uint(0, "sequence number")?,
        epoch: r.uint(1, "epoch")?,
        pattern: ledger_pattern(r.text(2)?, r.text(3)?)?,
        customer_name: r.string(4)?,
        merchant_id: r.string(5)?,
        y_start_time: r.string(6)?,
        detection_time: r.string(7)?,
        file_seq: r.opt_int(8)?.map(|f| sql_u64(f, "file_seq")).transpose()?,
        evidence: r.opt_text(9)?.map(str::to_string),
    })
}

/// A ledger row's pattern from its stored id and action, which must be the pattern's.
fn ledger_pattern(id: &str, action: &str) -> Result<Pattern, StateError> {
    match Pattern::from_id(id) {
        Some(pattern) if pattern.action() == action => Ok(pattern),
        _ => Err(StateError::Inconsistent(format!(
            "the ledger holds a detection with pattern id {id:?} and action {action:?}, not a \
             known pattern's"
        ))),
    }
}

/// A ledger row's columns as the insert statements take them, in [`LedgerRow`] order.
pub(crate) fn ledger_row_params(r: &LedgerRow) -> Result<[Param<'_>; 10], StateError> {
    Ok([
        sql_i64(r.seq, "sequence number")?.into(),
        sql_i64(r.epoch, "epoch")?.into(),
        r.pattern.id().into(),
        r.pattern.action().into(),
        r.customer_name.as_str().into(),
        r.merchant_id.as_str().into(),
        r.y_start_time.as_str().into(),
        r.detection_time.as_str().into(),
        Param::Int(r.file_seq.map(|f| sql_i64(f, "file_seq")).transpose()?),
        r.evidence.as_deref().into(),
    ])
}

fn epoch_row(r: &Row) -> Result<EpochRow, StateError> {
    Ok(EpochRow {
        epoch: r.uint(0, "epoch")?,
        chunk_key: r.string(1)?,
        rows_accepted: r.uint(2, "rows_accepted")?,
        rows_rejected: r.uint(3, "rows_rejected")?,
        committed_at: r.string(4)?,
        chunk_digest: r.opt_text(5)?.map(str::to_string),
    })
}

/// The recorded checkpoints, oldest first.
fn read_checkpoints<T: Tx>(tx: &mut T) -> Result<Vec<CheckpointRow>, T::Error> {
    let rows = tx.query(schema::CHECKPOINTS, &[])?;
    let checkpoints = rows.iter().map(|r| {
        Ok(CheckpointRow {
            epoch: r.uint(0, "epoch")?,
            location: r.string(1)?,
            bytes: r.uint(2, "checkpoint bytes")?,
            digest: r.string(3)?,
            format_version: u32::try_from(r.int(4)?).unwrap_or(u32::MAX),
            created_at: r.string(5)?,
        })
    });
    Ok(checkpoints.collect::<Result<_, StateError>>()?)
}

/// Records a checkpoint and forgets all but the newest `keep`; the rows forgotten.
fn record_checkpoint<T: Tx>(
    tx: &mut T,
    row: &CheckpointRow,
    keep: usize,
) -> Result<Vec<CheckpointRow>, T::Error> {
    let params = [
        sql_i64(row.epoch, "epoch")?.into(),
        row.location.as_str().into(),
        sql_i64(row.bytes, "checkpoint bytes")?.into(),
        row.digest.as_str().into(),
        i64::from(row.format_version).into(),
        row.created_at.as_str().into(),
    ];
    tx.execute(schema::UPSERT_CHECKPOINT, &params)?;
    let all = read_checkpoints(tx)?;
    let gone = checkpoints_beyond(all.iter().map(|c| c.epoch).collect(), keep);
    for epoch in &gone {
        tx.execute(
            schema::DELETE_CHECKPOINT,
            &[sql_i64(*epoch, "epoch")?.into()],
        )?;
    }
    Ok(all
        .into_iter()
        .filter(|c| gone.contains(&c.epoch))
        .collect())
}

/// Records a run failure and forgets all but the newest [`FAILURES_KEPT`].
fn record_failure<T: Tx>(tx: &mut T, f: &FailureRow) -> Result<(), T::Error> {
    let params = [
        f.at_ms.into(),
        f.at.as_str().into(),
        f.message.as_str().into(),
        f.domain.as_str().into(),
        i64::from(f.exit_code).into(),
    ];
    tx.execute(T::DIALECT.insert_failure, &params)?;
    let keep = sql_i64(FAILURES_KEPT, "failures kept")?;
    tx.execute(schema::PRUNE_FAILURES, &[keep.into()])?;
    Ok(())
}

/// A failure from [`schema::LAST_FAILURE`]'s columns.
fn failure_row(r: &Row) -> Result<FailureRow, StateError> {
    Ok(FailureRow {
        at_ms: r.int(0)?,
        at: r.string(1)?,
        message: r.string(2)?,
        domain: r.string(3)?,
        exit_code: u8::try_from(r.int(4)?).unwrap_or(u8::MAX),
    })
}
