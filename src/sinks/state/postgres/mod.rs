//! The production state store: PostgreSQL (RDS), TLS, unknown-COMMIT handling, single-writer lease.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | the `StateStore` impl of [`PgStore`]: migrations, run identity, recovery, ledger; the re-exports |
//! | `store.rs` | [`PgStore`], [`PgOptions`], a connection and its session, why an attempt failed, `Fault` (tests) |
//! | `client.rs` | the blocking client: tokio-postgres on a runtime of its own, a deadline on every call |
//! | `connection.rs` | connecting, reconnecting with backoff within a bound ([`PgOptions`]), host-name resolution |
//! | `tls.rs` | libpq's `sslmode`/`sslrootcert` URL options, the rustls connector |
//! | `lease.rs` | the single-writer lease: advisory lock [`LOCK_KEY`], re-locking, its holders |
//! | `commit.rs` | the epoch transaction and the unknown-COMMIT resolution |
//! | `fault.rs` | simulated connection losses for tests (`PgStore::inject_fault`): cargo feature `fault-injection` only |
//!
//! # Single writer
//! [`StateStore::begin_run`] takes a session-level advisory lock (`pg_try_advisory_lock`,
//! key [`LOCK_KEY`], per database) before touching anything; if another session holds it the
//! answer is [`StateError::Locked`] naming that session. The lock lives as long as the
//! session; every reconnect re-takes it before doing anything else. When the holder is our
//! own previous session that PostgreSQL has not noticed is gone yet (a network failure leaves
//! such "half-open" backends behind), it is terminated, so its transaction is finished one
//! way or the other before we look at the data.
//!
//! # Connection loss and the unknown COMMIT
//! Every method runs its work through a retry loop: a lost connection (I/O error, closed
//! socket, server shutdown or crash, "the database system is starting up"...) drops the
//! client, reconnects with exponential backoff (100 ms doubling to 2 s), re-takes the lock and
//! runs the work again, for at most [`PgOptions::reconnect_timeout`] after the first failure;
//! then [`StateError::Unavailable`]. At start, [`PgStore::connect`] is bounded by
//! [`PgOptions::connect_timeout`] instead (a refused connection, a host name that does not
//! resolve, no answer), then [`StateError::Unreachable`]: a misconfigured URL fails fast with
//! one line. Host names are resolved on a helper thread within the bound (tokio-postgres
//! bounds only the TCP connect). All methods are idempotent except
//! [`StateStore::commit_epoch`], whose COMMIT may have been applied even though its answer was
//! lost. So a commit lost *at* COMMIT is marked in doubt, and after reconnecting (and
//! re-locking: the lock is only free once the old session, and so its transaction, is over)
//! the epoch's row in `epochs` is the proof: present → it committed, done; absent → the whole
//! transaction is retried. A loss before COMMIT means the server rolled back: plain retry.
//! Any statement error inside the transaction ends the attempt before COMMIT is sent, so the
//! "COMMIT answered with ROLLBACK" trap cannot occur.
//!
//! # A frozen server
//! A server that stops answering without closing anything (`SIGSTOP`, a paused VM) looks
//! alive to TCP. So every call, COMMIT included, waits at most
//! [`PgOptions::statement_timeout`] for its answer; past it the connection counts as lost
//! (warned about, dropped without waiting for the server, reconnected within the bound above),
//! and a COMMIT without an answer is in doubt exactly like one whose connection was lost. A
//! connection attempt (TLS and authentication included) is bounded by the time left.
//!
//! # TLS
//! `sslmode=disable|prefer|require` in the URL (prefer is the default). rustls always
//! verifies the certificate chain and the host name, so `require` here is libpq's
//! `verify-full`; `sslmode=verify-ca` and `verify-full` are accepted as synonyms of
//! `require`. Trusted roots: [`PgOptions::ca_file`] (PEM, e.g. the RDS bundle), else libpq's
//! `sslrootcert=PATH` from the URL (stripped before the URL reaches tokio-postgres, which
//! rejects it; `sslrootcert=system` means the default), else the Mozilla roots
//! (`webpki-roots`). Client certificates (`sslcert`, `sslkey`) are not supported.

mod client;
mod commit;
mod connection;
#[cfg(feature = "fault-injection")]
mod fault;
mod lease;
mod store;
mod tls;

use std::collections::{BTreeMap, HashSet};

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::identity::{record_identity, RunIdentity};
use super::schema::{self, MIGRATIONS};
use super::store::{
    check_readable_schema, check_schema_version, checkpoints_beyond, detection_key,
    record_variants, sql_i64, sql_u64, unknown_variant, CheckpointRow, EpochCommit, EpochRow,
    LedgerId, LedgerRow, Recovered, StateStore, VariantLedgers, VariantRecovered, VariantSpec,
};
use crate::error::StateError;
use client::Queries;
pub use lease::LOCK_KEY;
#[cfg(feature = "fault-injection")]
pub use store::Fault;
use store::{pg, Conn, Failure};
pub use store::{PgOptions, PgStore, DEFAULT_STATEMENT_TIMEOUT};

impl PgStore {
    /// Readers: refuses a store at another schema version than this build's (checked once).
    fn require_schema(&mut self) -> Result<(), StateError> {
        if !self.schema_checked {
            let newest = self.run("reading the schema version", schema_version)?;
            check_readable_schema(newest)?;
            self.schema_checked = true;
        }
        Ok(())
    }

    fn require_lease(&self, what: &str) -> Result<(), StateError> {
        if self.lease.is_none() {
            return Err(StateError::Inconsistent(format!(
                "{what} before begin_run took the single-writer lock"
            )));
        }
        Ok(())
    }

    /// Rows of `ledger` from `query` with `args`.
    fn ledger_query(
        &mut self,
        ledger: LedgerId<'_>,
        query: &'static str,
        args: &[u64],
    ) -> Result<Vec<LedgerRow>, StateError> {
        self.require_schema()?;
        let what = "reading the ledger";
        self.with_ledger_params(what, ledger, args, |c, params| {
            let st = c.prepare(query).map_err(pg(what))?;
            let rows = c.client.query(&st, params).map_err(pg(what))?;
            rows.iter().map(ledger_row).collect()
        })
    }

    /// Runs `body` with the parameters of a statement of `ledger` (`schema::LedgerSql`): a
    /// variant's name first (refused unless recorded), then `args`.
    fn with_ledger_params<T>(
        &mut self,
        what: &'static str,
        ledger: LedgerId<'_>,
        args: &[u64],
        body: impl Fn(&mut Conn, &[&(dyn ToSql + Sync)]) -> Result<T, Failure>,
    ) -> Result<T, StateError> {
        let args = args
            .iter()
            .map(|&a| sql_i64(a.min(i64::MAX as u64), "sequence number"))
            .collect::<Result<Vec<i64>, _>>()?;
        let variant = ledger.variant();
        self.run(what, |c| {
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(variant) = &variant {
                require_variant(c, variant)?;
                params.push(variant);
            }
            params.extend(args.iter().map(|a| a as &(dyn ToSql + Sync)));
            body(c, &params)
        })
    }
}

/// Refuses a variant the store does not record.
fn require_variant(c: &mut Conn, variant: &str) -> Result<(), Failure> {
    let what = "reading the variants";
    let st = c.prepare(schema::VARIANT_KNOWN).map_err(pg(what))?;
    match c.client.query_opt(&st, &[&variant]).map_err(pg(what))? {
        Some(_) => Ok(()),
        None => Err(Failure::State(unknown_variant(variant))),
    }
}

/// The recorded variants, in order.
fn read_variants(client: &mut impl Queries) -> Result<Vec<VariantSpec>, Failure> {
    let what = "reading the variants";
    client
        .query(schema::VARIANTS, &[])
        .map_err(pg(what))?
        .iter()
        .map(|r| {
            Ok(VariantSpec {
                name: r.try_get(0).map_err(pg(what))?,
                thresholds: r.try_get(1).map_err(pg(what))?,
            })
        })
        .collect()
}

/// `begin_variants` in one transaction: check or record the variants, read their ledgers.
fn check_variants(
    c: &mut Conn,
    requested: &[VariantSpec],
) -> Result<Vec<VariantRecovered>, Failure> {
    let what = "recording the backtest variants";
    let mut tx = c.client.transaction().map_err(pg(what))?;
    let recorded = read_variants(&mut tx)?;
    let has_epochs: bool = tx.query_value(schema::ANY_EPOCH, &[]).map_err(pg(what))?;
    if record_variants(&recorded, requested, has_epochs)? {
        tx.execute(schema::DELETE_VARIANTS, &[]).map_err(pg(what))?;
        for (position, v) in requested.iter().enumerate() {
            let position = sql_i64(position as u64, "variant position")?;
            tx.execute(schema::INSERT_VARIANT, &[&position, &v.name, &v.thresholds])
                .map_err(pg(what))?;
        }
    }
    let mut ledgers = VariantLedgers::default();
    for r in tx.query(schema::VARIANT_EMITTED, &[]).map_err(pg(what))? {
        let text = |i: usize| r.try_get::<_, &str>(i).map_err(pg(what));
        ledgers.add(text(0)?, text(1)?, text(2)?, text(3)?)?;
    }
    ledgers.sizes = tx
        .query(schema::VARIANT_LEDGER_SIZES, &[])
        .map_err(pg(what))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(pg(what))?;
    let recovered = ledgers.recovered(requested)?;
    tx.commit().map_err(pg(what))?;
    Ok(recovered)
}

fn ledger_row(r: &Row) -> Result<LedgerRow, Failure> {
    let get_i64 = |i: usize| r.try_get::<_, i64>(i).map_err(pg("reading the ledger"));
    let get_str = |i: usize| r.try_get::<_, String>(i).map_err(pg("reading the ledger"));
    Ok(LedgerRow {
        seq: sql_u64(get_i64(0)?, "sequence number")?,
        epoch: sql_u64(get_i64(1)?, "epoch")?,
        pattern_id: get_str(2)?,
        action_type: get_str(3)?,
        customer_name: get_str(4)?,
        merchant_id: get_str(5)?,
        y_start_time: get_str(6)?,
        detection_time: get_str(7)?,
        file_seq: r
            .try_get::<_, Option<i64>>(8)
            .map_err(pg("reading the ledger"))?
            .map(|f| sql_u64(f, "file_seq"))
            .transpose()?,
        evidence: r
            .try_get::<_, Option<String>>(9)
            .map_err(pg("reading the ledger"))?,
    })
}

/// Applies every pending migration in one transaction: a store is at no version or at this
/// build's, never in between (a kill during the first start leaves nothing half done).
fn migrate(c: &mut Conn) -> Result<(), Failure> {
    let what = "applying migrations";
    let mut tx = c.client.transaction().map_err(pg(what))?;
    tx.batch_execute(schema::CREATE_SCHEMA_MIGRATIONS)
        .map_err(pg(what))?;
    let newest: Option<i64> = tx
        .query_value(schema::NEWEST_MIGRATION, &[])
        .map_err(pg(what))?;
    check_schema_version(newest)?;
    for (version, sql) in MIGRATIONS {
        if newest.is_some_and(|n| *version <= n) {
            continue;
        }
        tx.batch_execute(sql).map_err(pg(what))?;
        tx.execute(schema::PG_RECORD_MIGRATION, &[version])
            .map_err(pg(what))?;
        tracing::info!(version, "applied state store migration");
    }
    tx.commit().map_err(pg(what))
}

/// The store's newest applied migration, `None` when it has none (readers create nothing).
fn schema_version(c: &mut Conn) -> Result<Option<i64>, Failure> {
    let what = "reading the schema version";
    let exists: bool = c
        .client
        .query_value(schema::PG_HAS_MIGRATIONS, &[])
        .map_err(pg(what))?;
    if !exists {
        return Ok(None);
    }
    c.client
        .query_value(schema::NEWEST_MIGRATION, &[])
        .map_err(pg(what))
}

fn check_identity(c: &mut Conn, requested: &RunIdentity) -> Result<(), Failure> {
    let what = "checking the run identity";
    let mut tx = c.client.transaction().map_err(pg(what))?;
    let stored = tx
        .query(schema::SELECT_IDENTITY, &[])
        .map_err(pg(what))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<BTreeMap<String, String>, tokio_postgres::Error>>()
        .map_err(pg(what))?;
    let has_epochs: bool = tx.query_value(schema::ANY_EPOCH, &[]).map_err(pg(what))?;
    if record_identity(&stored, requested, has_epochs)? {
        for (key, value) in requested.meta_entries() {
            tx.execute(schema::UPSERT_META, &[&key, &value])
                .map_err(pg(what))?;
        }
        tx.execute(schema::CLEAR_FINISHED, &[]).map_err(pg(what))?;
    }
    tx.commit().map_err(pg(what))
}

fn read_recovered(c: &mut Conn) -> Result<Recovered, Failure> {
    let what = "reading the committed state";
    let mut tx = c.client.snapshot().map_err(pg(what))?;
    let epochs = tx
        .query(schema::EPOCH_DIGESTS, &[])
        .map_err(pg(what))?
        .iter()
        .map(|r| {
            Ok((
                sql_u64(r.try_get(0).map_err(pg(what))?, "epoch")?,
                r.try_get(1).map_err(pg(what))?,
            ))
        })
        .collect::<Result<BTreeMap<u64, Option<String>>, Failure>>()?;
    let mut emitted = HashSet::new();
    for r in tx.query(schema::EMITTED, &[]).map_err(pg(what))? {
        let text = |i: usize| r.try_get::<_, &str>(i).map_err(pg(what));
        emitted.insert(detection_key(text(0)?, text(1)?, text(2)?)?);
    }
    let max_seq: Option<i64> = tx.query_value(schema::MAX_SEQ, &[]).map_err(pg(what))?;
    let finished = tx
        .query_opt(schema::IS_FINISHED, &[])
        .map_err(pg(what))?
        .is_some();
    tx.commit().map_err(pg(what))?;
    Ok(Recovered {
        last_epoch: epochs.keys().next_back().copied(),
        epochs,
        emitted,
        next_seq: match max_seq {
            Some(s) => sql_u64(s, "sequence number")? + 1,
            None => 0,
        },
        finished,
    })
}

/// The recorded checkpoints, oldest first.
fn read_checkpoints(client: &mut impl Queries) -> Result<Vec<CheckpointRow>, Failure> {
    let what = "reading the checkpoints";
    let rows = client.query(schema::CHECKPOINTS, &[]).map_err(pg(what))?;
    rows.iter()
        .map(|r| {
            let int = |i: usize| -> Result<i64, Failure> { r.try_get(i).map_err(pg(what)) };
            let text = |i: usize| -> Result<String, Failure> { r.try_get(i).map_err(pg(what)) };
            Ok(CheckpointRow {
                epoch: sql_u64(int(0)?, "epoch")?,
                location: text(1)?,
                bytes: sql_u64(int(2)?, "checkpoint bytes")?,
                digest: text(3)?,
                format_version: u32::try_from(int(4)?).unwrap_or(u32::MAX),
                created_at: text(5)?,
            })
        })
        .collect()
}

impl StateStore for PgStore {
    fn begin_variants(
        &mut self,
        variants: &[VariantSpec],
    ) -> Result<Vec<VariantRecovered>, StateError> {
        self.require_lease("begin_variants")?;
        let recovered = self.run("recording the backtest variants", |c| {
            check_variants(c, variants)
        })?;
        self.variant_names = Some(variants.iter().map(|v| v.name.clone()).collect());
        Ok(recovered)
    }

    fn variants(&mut self) -> Result<Vec<VariantSpec>, StateError> {
        self.require_schema()?;
        self.run("reading the variants", |c| read_variants(&mut c.client))
    }

    fn begin_run(&mut self, run: &RunIdentity) -> Result<Recovered, StateError> {
        if self.read_only {
            return Err(StateError::Inconsistent(format!(
                "{} was opened read-only: a run cannot begin on it",
                self.url
            )));
        }
        if self.lease.is_none() {
            // The lock comes first, so concurrent starts never race on migrations.
            let session = self.run("taking the single-writer lock", lease::take)?;
            self.lease = Some(session);
        }
        self.run("applying migrations", migrate)?;
        self.schema_checked = true;
        self.run("checking the run identity", |c| check_identity(c, run))?;
        self.run("reading the committed state", read_recovered)
    }

    fn commit_epoch(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        self.commit(commit)
    }

    fn ledger_range_of(
        &mut self,
        ledger: LedgerId<'_>,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<LedgerRow>, StateError> {
        let query = schema::ledger_sql(ledger.variant().is_some()).range;
        self.ledger_query(ledger, query, &[from_seq, to_seq])
    }

    fn first_unwritten_seq_of(&mut self, ledger: LedgerId<'_>) -> Result<Option<u64>, StateError> {
        self.require_schema()?;
        let what = "reading the ledger";
        let query = schema::ledger_sql(ledger.variant().is_some()).first_unwritten;
        let min = self.with_ledger_params(what, ledger, &[], |c, params| {
            let st = c.prepare(query).map_err(pg(what))?;
            c.client
                .query_value::<_, Option<i64>>(&st, params)
                .map_err(pg(what))
        })?;
        min.map(|s| sql_u64(s, "sequence number")).transpose()
    }

    fn mark_written_of(
        &mut self,
        ledger: LedgerId<'_>,
        file_seq: u64,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<(), StateError> {
        self.require_lease("mark_written")?;
        sql_i64(file_seq, "file_seq")?;
        let what = "recording written ledger rows";
        let query = schema::ledger_sql(ledger.variant().is_some()).mark_written;
        self.with_ledger_params(what, ledger, &[file_seq, from_seq, to_seq], |c, params| {
            let st = c.prepare(query).map_err(pg(what))?;
            c.client.execute(&st, params).map_err(pg(what))
        })?;
        Ok(())
    }

    fn mark_finished(&mut self) -> Result<(), StateError> {
        self.require_lease("mark_finished")?;
        let what = "recording the end of the stream";
        self.run(what, |c| {
            c.client
                .execute(schema::MARK_FINISHED, &[])
                .map_err(pg(what))
        })?;
        Ok(())
    }

    fn ledger_of(&mut self, ledger: LedgerId<'_>) -> Result<Vec<LedgerRow>, StateError> {
        self.ledger_query(
            ledger,
            schema::ledger_sql(ledger.variant().is_some()).all,
            &[],
        )
    }

    fn record_checkpoint(
        &mut self,
        row: &CheckpointRow,
        keep: usize,
    ) -> Result<Vec<CheckpointRow>, StateError> {
        self.require_lease("record_checkpoint")?;
        let params = (
            sql_i64(row.epoch, "epoch")?,
            sql_i64(row.bytes, "checkpoint bytes")?,
            i64::from(row.format_version),
        );
        let what = "recording a checkpoint";
        self.run(what, |c| {
            let mut tx = c.client.transaction().map_err(pg(what))?;
            tx.execute(
                schema::UPSERT_CHECKPOINT,
                &[
                    &params.0,
                    &row.location,
                    &params.1,
                    &row.digest,
                    &params.2,
                    &row.created_at,
                ],
            )
            .map_err(pg(what))?;
            let all = read_checkpoints(&mut tx)?;
            let gone = checkpoints_beyond(all.iter().map(|c| c.epoch).collect(), keep);
            for epoch in &gone {
                let epoch = sql_i64(*epoch, "epoch")?;
                tx.execute(schema::DELETE_CHECKPOINT, &[&epoch])
                    .map_err(pg(what))?;
            }
            tx.commit().map_err(pg(what))?;
            Ok(all
                .into_iter()
                .filter(|c| gone.contains(&c.epoch))
                .collect())
        })
    }

    fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>, StateError> {
        self.require_schema()?;
        self.run("reading the checkpoints", |c| {
            read_checkpoints(&mut c.client)
        })
    }

    fn merchant_counts(&mut self) -> Result<Vec<(String, i64)>, StateError> {
        self.require_schema()?;
        let what = "reading merchant counts";
        self.run(what, |c| {
            c.client
                .query(schema::MERCHANT_COUNTS, &[])
                .map_err(pg(what))?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(pg(what))
        })
    }

    fn epoch_rows(&mut self) -> Result<Vec<EpochRow>, StateError> {
        self.require_schema()?;
        let what = "reading the progress table";
        self.run(what, |c| {
            let rows = c.client.query(schema::EPOCH_ROWS, &[]).map_err(pg(what))?;
            rows.iter()
                .map(|r| {
                    let int = |i: usize| -> Result<i64, Failure> { r.try_get(i).map_err(pg(what)) };
                    Ok(EpochRow {
                        epoch: sql_u64(int(0)?, "epoch")?,
                        chunk_key: r.try_get(1).map_err(pg(what))?,
                        rows_accepted: sql_u64(int(2)?, "rows_accepted")?,
                        rows_rejected: sql_u64(int(3)?, "rows_rejected")?,
                        committed_at: r.try_get(4).map_err(pg(what))?,
                        chunk_digest: r.try_get(5).map_err(pg(what))?,
                    })
                })
                .collect()
        })
    }

    fn run_meta(&mut self) -> Result<BTreeMap<String, String>, StateError> {
        self.require_schema()?;
        let what = "reading run_meta";
        self.run(what, |c| {
            c.client
                .query(schema::ALL_META, &[])
                .map_err(pg(what))?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<BTreeMap<String, String>, tokio_postgres::Error>>()
                .map_err(pg(what))
        })
    }
}
