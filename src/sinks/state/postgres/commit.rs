//! The epoch transaction (progress row, counter deltas, the baseline's and the backtest
//! variants' ledger rows; statements prepared once per connection) and its retry loop, which settles a COMMIT whose answer was lost by
//! reading the epoch's progress row back once the lease is re-taken.

use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::client::{Queries, Transaction};
use super::connection::{is_connection_loss, Retry};
use super::store::{pg, Conn, Failure, PgStore};
use crate::error::StateError;
use crate::sinks::state::schema;
use crate::sinks::state::store::{
    check_variant_rows, merged_deltas, sql_i64, EpochCommit, LedgerRow, VariantRows,
};

/// Whether an epoch's progress row is in the store.
const SQL_EPOCH_PRESENT: &str = "SELECT EXISTS (SELECT 1 FROM epochs WHERE epoch = $1)";

/// The failure to simulate in one attempt: a [`super::store::Fault`] with the cargo feature
/// `fault-injection`, nothing otherwise.
#[cfg(feature = "fault-injection")]
type Injected = Option<super::store::Fault>;
#[cfg(not(feature = "fault-injection"))]
type Injected = NoFault;

/// Release builds simulate nothing.
#[cfg(not(feature = "fault-injection"))]
#[derive(Clone, Copy, Debug, Default)]
struct NoFault;

#[cfg(not(feature = "fault-injection"))]
impl PgStore {
    fn take_fault(&mut self) -> NoFault {
        NoFault
    }
}

/// Ledger rows as the array parameters of a batched insert, one array per column.
#[derive(Default)]
struct LedgerArrays<'a> {
    seqs: Vec<i64>,
    epochs: Vec<i64>,
    pattern_ids: Vec<&'a str>,
    action_types: Vec<&'a str>,
    customers: Vec<&'a str>,
    merchants: Vec<&'a str>,
    y_start_times: Vec<&'a str>,
    detection_times: Vec<&'a str>,
    file_seqs: Vec<Option<i64>>,
    evidence: Vec<Option<&'a str>>,
}

impl<'a> LedgerArrays<'a> {
    fn push(&mut self, r: &'a LedgerRow) -> Result<(), StateError> {
        self.seqs.push(sql_i64(r.seq, "sequence number")?);
        self.epochs.push(sql_i64(r.epoch, "epoch")?);
        self.pattern_ids.push(&r.pattern_id);
        self.action_types.push(&r.action_type);
        self.customers.push(&r.customer_name);
        self.merchants.push(&r.merchant_id);
        self.y_start_times.push(&r.y_start_time);
        self.detection_times.push(&r.detection_time);
        self.file_seqs
            .push(r.file_seq.map(|f| sql_i64(f, "file_seq")).transpose()?);
        self.evidence.push(r.evidence.as_deref());
        Ok(())
    }

    /// The insert's parameters after any leading ones, in the statements' column order.
    fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.seqs,
            &self.epochs,
            &self.pattern_ids,
            &self.action_types,
            &self.customers,
            &self.merchants,
            &self.y_start_times,
            &self.detection_times,
            &self.file_seqs,
            &self.evidence,
        ]
    }
}

/// One epoch's rows as the SQL parameters of the commit transaction.
struct CommitParams<'a> {
    epoch: i64,
    chunk_key: &'a str,
    rows_accepted: i64,
    rows_rejected: i64,
    committed_at: &'a str,
    chunk_digest: Option<&'a str>,
    merchants: Vec<&'a str>,
    deltas: Vec<i64>,
    detections: LedgerArrays<'a>,
    /// Every variant's rows in one batch: `variants[i]` names the variant of row `i`.
    variants: Vec<&'a str>,
    variant_detections: LedgerArrays<'a>,
}

impl<'a> CommitParams<'a> {
    fn new(c: &'a EpochCommit) -> Result<CommitParams<'a>, StateError> {
        let p = &c.progress;
        let (merchants, deltas) = merged_deltas(&c.counter_deltas)?.into_iter().unzip();
        let mut detections = LedgerArrays::default();
        for r in &c.detections {
            detections.push(r)?;
        }
        let (mut variants, mut variant_detections) = (Vec::new(), LedgerArrays::default());
        for VariantRows { variant, rows } in &c.variant_detections {
            for r in rows {
                variants.push(variant.as_str());
                variant_detections.push(r)?;
            }
        }
        Ok(CommitParams {
            epoch: sql_i64(p.epoch, "epoch")?,
            chunk_key: &p.chunk_key,
            rows_accepted: sql_i64(p.rows_accepted, "rows_accepted")?,
            rows_rejected: sql_i64(p.rows_rejected, "rows_rejected")?,
            committed_at: &p.committed_at,
            chunk_digest: p.chunk_digest.as_deref(),
            merchants,
            deltas,
            detections,
            variants,
            variant_detections,
        })
    }
}

impl PgStore {
    /// Commits one epoch (`StateStore::commit_epoch`): retries the transaction after a
    /// connection loss; after a loss at COMMIT, first reads the progress row back.
    pub(super) fn commit(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        self.require_lease("commit_epoch")?;
        check_variant_rows(self.variant_names.as_deref(), &commit.variant_detections)?;
        let params = CommitParams::new(commit)?;
        let mut fault = self.take_fault();
        let mut retry = Retry::new(self.options.reconnect_timeout, &self.options.retries);
        // Whether an earlier attempt's COMMIT may have been applied.
        let mut in_doubt = false;
        loop {
            if self.conn.is_none() {
                self.reconnect(&mut retry, "committing an epoch")?;
            }
            let conn = self.conn.as_mut().expect("connected");
            // In doubt: we hold the lock again, so the old session is gone and its
            // transaction settled: the progress row says whether it committed.
            let attempt = match in_doubt.then(|| epoch_present(conn, &params, &self.url)) {
                Some(Ok(true)) => return Ok(()),
                Some(Err(f)) => Err(f),
                Some(Ok(false)) | None => {
                    in_doubt = false;
                    try_commit(conn, &params, std::mem::take(&mut fault))
                }
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(failure) => {
                    in_doubt |= lost_at_commit(&failure);
                    self.retry_or_fail(failure, &mut retry, "committing an epoch")?;
                }
            }
        }
    }
}

/// Whether a failed attempt may have committed: the connection was lost at COMMIT.
fn lost_at_commit(failure: &Failure) -> bool {
    match failure {
        Failure::Pg {
            error, at_commit, ..
        } => *at_commit && is_connection_loss(error),
        // No answer to COMMIT in time: it may have been applied, as with a lost connection.
        Failure::TimedOut { at_commit, .. } => *at_commit,
        #[cfg(feature = "fault-injection")]
        Failure::Simulated { at_commit } => *at_commit,
        _ => false,
    }
}

/// After a COMMIT whose answer was lost: whether the epoch's progress row is in the store.
fn epoch_present(conn: &mut Conn, params: &CommitParams<'_>, url: &str) -> Result<bool, Failure> {
    let what = "checking whether the epoch committed";
    let st = conn.prepare(SQL_EPOCH_PRESENT).map_err(pg(what))?;
    let present: bool = conn
        .client
        .query_value(&st, &[&params.epoch])
        .map_err(pg(what))?;
    if present {
        tracing::warn!(url, epoch = params.epoch, "the COMMIT's outcome was unknown; the epoch's progress row is in the store, so it committed");
    } else {
        tracing::warn!(url, epoch = params.epoch, "the COMMIT's outcome was unknown; the epoch is not in the store, so it rolled back: retrying");
    }
    Ok(present)
}

/// One attempt at the epoch transaction: 5 round trips (BEGIN, progress row, counters,
/// ledger, COMMIT) and one more for the variants' ledgers, the statements prepared once per
/// connection. Everything is inserted before the fault point, so an injected loss covers all.
fn try_commit(c: &mut Conn, p: &CommitParams<'_>, fault: Injected) -> Result<(), Failure> {
    let what = "committing an epoch";
    let insert_epoch = c.prepare(schema::PG_INSERT_EPOCH).map_err(pg(what))?;
    let upsert_counts = c.prepare(schema::PG_UPSERT_COUNTS).map_err(pg(what))?;
    let insert_detections = c.prepare(schema::PG_INSERT_DETECTIONS).map_err(pg(what))?;
    let insert_variant_detections = c
        .prepare(schema::PG_INSERT_VARIANT_DETECTIONS)
        .map_err(pg(what))?;
    let mut tx = c.client.transaction().map_err(pg(what))?;
    insert_progress(&mut tx, &insert_epoch, p)?;
    insert_rows(&mut tx, &upsert_counts, &insert_detections, p)?;
    if !p.variants.is_empty() {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&p.variants];
        params.extend(p.variant_detections.params());
        tx.execute(&insert_variant_detections, &params)
            .map_err(pg("inserting variant ledger rows"))?;
    }
    #[cfg(feature = "fault-injection")]
    let tx = super::fault::before_commit(tx, fault)?;
    tx.commit().map_err(|e| pg("COMMIT")(e).at_commit())?;
    #[cfg(feature = "fault-injection")]
    super::fault::after_commit(&mut c.client, fault)?;
    #[cfg(not(feature = "fault-injection"))]
    let NoFault = fault;
    Ok(())
}

/// Inserts the progress row, refusing an epoch at or below a committed one.
fn insert_progress(
    tx: &mut Transaction<'_>,
    insert_epoch: &Statement,
    p: &CommitParams<'_>,
) -> Result<(), Failure> {
    let inserted = tx
        .execute(
            insert_epoch,
            &[
                &p.epoch,
                &p.chunk_key,
                &p.rows_accepted,
                &p.rows_rejected,
                &p.committed_at,
                &p.chunk_digest,
            ],
        )
        .map_err(pg("inserting the progress row"))?;
    if inserted == 0 {
        let last: Option<i64> = tx
            .query_value(schema::MAX_EPOCH, &[])
            .map_err(pg("committing an epoch"))?;
        return Err(Failure::State(StateError::Inconsistent(format!(
            "asked to commit epoch {} but epoch {} is already committed",
            p.epoch,
            last.map_or_else(|| "?".to_string(), |e| e.to_string())
        ))));
    }
    Ok(())
}

/// Applies the counter deltas and inserts the ledger rows (one statement each, arrays).
fn insert_rows(
    tx: &mut Transaction<'_>,
    upsert_counts: &Statement,
    insert_detections: &Statement,
    p: &CommitParams<'_>,
) -> Result<(), Failure> {
    if !p.merchants.is_empty() {
        tx.execute(upsert_counts, &[&p.merchants, &p.deltas])
            .map_err(pg("applying counter deltas"))?;
    }
    if !p.detections.seqs.is_empty() {
        tx.execute(insert_detections, &p.detections.params())
            .map_err(pg("inserting ledger rows"))?;
    }
    Ok(())
}
