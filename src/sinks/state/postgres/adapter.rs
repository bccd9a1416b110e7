//! The protocol's transaction trait on a PostgreSQL connection ([`PgTx`]: statements
//! prepared once per connection, the epoch's rows inserted as arrays) and [`PgDb`] as the
//! protocol's database: every piece of work runs through the retry loop, so a connection
//! loss reconnects (re-taking the lease) and runs it again.

use std::collections::HashMap;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Statement;

use super::client::{Client, Queries, Transaction};
use super::lease;
use super::store::{pg, Conn, Failure, PgDb};
use crate::error::StateError;
use crate::sinks::state::protocol::{Access, Db, Param, Row, Tx, Value};
use crate::sinks::state::rules::sql_i64;
use crate::sinks::state::schema::{self, Dialect};
use crate::sinks::state::store::{EpochCommit, LedgerRow, VariantRows};

/// Where a [`PgTx`]'s statements go.
enum Session<'a> {
    Autocommit(&'a mut Client),
    Transaction(Transaction<'a>),
}

/// The statements of one connection, in a transaction or not (`what` names the work in
/// messages).
pub struct PgTx<'a> {
    session: Session<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
    what: &'static str,
}

impl<'a> PgTx<'a> {
    pub(super) fn in_transaction(
        tx: Transaction<'a>,
        statements: &'a mut HashMap<&'static str, Statement>,
        what: &'static str,
    ) -> PgTx<'a> {
        PgTx {
            session: Session::Transaction(tx),
            statements,
            what,
        }
    }

    /// The transaction, for the caller to commit.
    pub(super) fn into_transaction(self) -> Result<Transaction<'a>, Failure> {
        match self.session {
            Session::Transaction(tx) => Ok(tx),
            Session::Autocommit(_) => Err(Failure::State(StateError::Inconsistent(format!(
                "{} outside a transaction",
                self.what
            )))),
        }
    }

    fn commit(self) -> Result<(), Failure> {
        match self.session {
            Session::Transaction(tx) => tx.commit().map_err(pg(self.what)),
            Session::Autocommit(_) => Ok(()),
        }
    }

    /// The connection's prepared statement of `sql` (prepared on first use).
    fn prepare(&mut self, sql: &'static str) -> Result<Statement, Failure> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = match &mut self.session {
            Session::Autocommit(c) => c.prepare(sql),
            Session::Transaction(t) => t.prepare(sql),
        }
        .map_err(pg(self.what))?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }

    fn run_query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        let st = self.prepare(sql)?;
        match &mut self.session {
            Session::Autocommit(c) => c.query(&st, params),
            Session::Transaction(t) => t.query(&st, params),
        }
        .map_err(pg(self.what))
    }

    fn run_execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Failure> {
        let st = self.prepare(sql)?;
        match &mut self.session {
            Session::Autocommit(c) => c.execute(&st, params),
            Session::Transaction(t) => t.execute(&st, params),
        }
        .map_err(pg(self.what))
    }
}

/// The protocol's parameters as tokio-postgres's (a NULL keeps its type).
fn pg_params<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Int(v) => v as &(dyn ToSql + Sync),
            Param::Text(v) => v as &(dyn ToSql + Sync),
        })
        .collect()
}

/// A row's columns as the protocol's values (booleans as 0/1).
fn row_values(r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(i64::from)
        } else if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(i64::from)
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(i64::from)
        } else {
            values.push(
                r.try_get::<_, Option<String>>(i)?
                    .map_or(Value::Null, Value::Text),
            );
            continue;
        };
        values.push(value.map_or(Value::Null, Value::Int));
    }
    Ok(Row(values))
}

impl Tx for PgTx<'_> {
    type Error = Failure;
    const DIALECT: &'static Dialect = &schema::PG_DIALECT;

    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, Failure> {
        let rows = self.run_query(sql, &pg_params(params))?;
        let what = self.what;
        rows.iter()
            .map(|r| row_values(r).map_err(pg(what)))
            .collect()
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, Failure> {
        self.run_execute(sql, &pg_params(params))
    }

    fn batch(&mut self, sql: &'static str) -> Result<(), Failure> {
        match &mut self.session {
            Session::Autocommit(c) => c.batch_execute(sql),
            Session::Transaction(t) => t.batch_execute(sql),
        }
        .map_err(pg(self.what))
    }

    /// One statement each for the counters, the baseline's rows and every variant's rows
    /// (arrays through `UNNEST`), skipped when empty.
    fn insert_rows(
        &mut self,
        deltas: &[(&str, i64)],
        detections: &[LedgerRow],
        variants: &[VariantRows],
    ) -> Result<(), Failure> {
        if !deltas.is_empty() {
            let (merchants, counts): (Vec<&str>, Vec<i64>) = deltas.iter().copied().unzip();
            self.run_execute(schema::PG_UPSERT_COUNTS, &[&merchants, &counts])?;
        }
        if !detections.is_empty() {
            let mut rows = LedgerArrays::default();
            for r in detections {
                rows.push(r)?;
            }
            self.run_execute(schema::PG_INSERT_DETECTIONS, &rows.params())?;
        }
        let (mut names, mut rows) = (Vec::new(), LedgerArrays::default());
        for VariantRows { variant, rows: of } in variants {
            for r in of {
                names.push(variant.as_str());
                rows.push(r)?;
            }
        }
        if !names.is_empty() {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&names];
            params.extend(rows.params());
            self.run_execute(schema::PG_INSERT_VARIANT_DETECTIONS, &params)?;
        }
        Ok(())
    }
}

/// Runs `work` on a connection with `access`, committing a transaction at its end.
fn with_access<T>(
    c: &mut Conn,
    what: &'static str,
    access: Access,
    work: &mut impl FnMut(&mut PgTx<'_>) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let Conn {
        client, statements, ..
    } = c;
    let tx = match access {
        Access::Autocommit => {
            let session = Session::Autocommit(client);
            return work(&mut PgTx {
                session,
                statements,
                what,
            });
        }
        Access::Snapshot => client.snapshot(),
        Access::Transaction => client.transaction(),
    }
    .map_err(pg(what))?;
    let mut tx = PgTx::in_transaction(tx, statements, what);
    let value = work(&mut tx)?;
    tx.commit()?;
    Ok(value)
}

impl Db for PgDb {
    type Error = Failure;
    type Tx<'a> = PgTx<'a>;

    fn name(&self) -> &str {
        &self.url
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn lock(&mut self) -> Result<(), StateError> {
        if self.lease.is_none() {
            let session = self.retrying("taking the single-writer lock", lease::take)?;
            self.lease = Some(session);
        }
        Ok(())
    }

    fn locked(&self) -> bool {
        self.lease.is_some()
    }

    fn run<T>(
        &mut self,
        what: &'static str,
        access: Access,
        mut work: impl FnMut(&mut PgTx<'_>) -> Result<T, Failure>,
    ) -> Result<T, StateError> {
        self.retrying(what, |c| with_access(c, what, access, &mut work))
    }

    fn commit(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        self.commit_settled(commit)
    }
}

/// Ledger rows as the array parameters of a batched insert, one array per column.
#[derive(Default)]
struct LedgerArrays<'a> {
    seqs: Vec<i64>,
    epochs: Vec<i64>,
    pattern_ids: Vec<&'static str>,
    action_types: Vec<&'static str>,
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
        self.pattern_ids.push(r.pattern.id());
        self.action_types.push(r.pattern.action());
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
