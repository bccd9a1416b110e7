//! The epoch transaction's retry loop: the protocol's epoch transaction on the adapter, and
//! a COMMIT whose answer was lost settled by reading the epoch's progress row back once the
//! lease is re-taken.

use super::adapter::PgTx;
use super::client::Queries;
use super::connection::{is_connection_loss, Retry};
use super::store::{pg, Conn, Failure, PgDb};
use crate::error::StateError;
use crate::sinks::state::protocol::commit_epoch;
use crate::sinks::state::rules::sql_i64;
use crate::sinks::state::store::EpochCommit;

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
impl PgDb {
    fn take_fault(&mut self) -> NoFault {
        NoFault
    }
}

impl PgDb {
    /// Commits one epoch (`StateWriter::commit_epoch`): retries the transaction after a
    /// connection loss; after a loss at COMMIT, first reads the progress row back.
    pub(super) fn commit_settled(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        let epoch = sql_i64(commit.progress.epoch, "epoch")?;
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
            let attempt = match in_doubt.then(|| epoch_present(conn, epoch, &self.url)) {
                Some(Ok(true)) => return Ok(()),
                Some(Err(f)) => Err(f),
                Some(Ok(false)) | None => {
                    in_doubt = false;
                    try_commit(conn, commit, std::mem::take(&mut fault))
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
fn epoch_present(conn: &mut Conn, epoch: i64, url: &str) -> Result<bool, Failure> {
    let what = "checking whether the epoch committed";
    let st = conn.prepare(SQL_EPOCH_PRESENT).map_err(pg(what))?;
    let present: bool = conn.client.query_value(&st, &[&epoch]).map_err(pg(what))?;
    if present {
        tracing::warn!(url, epoch, "the COMMIT's outcome was unknown; the epoch's progress row is in the store, so it committed");
    } else {
        tracing::warn!(url, epoch, "the COMMIT's outcome was unknown; the epoch is not in the store, so it rolled back: retrying");
    }
    Ok(present)
}

/// One attempt at the epoch transaction: 5 round trips (BEGIN, progress row, counters,
/// ledger, COMMIT) and one more for the variants' ledgers, the statements prepared once per
/// connection. Everything is inserted before the fault point, so an injected loss covers all.
fn try_commit(c: &mut Conn, commit: &EpochCommit, fault: Injected) -> Result<(), Failure> {
    let what = "committing an epoch";
    let Conn {
        client, statements, ..
    } = c;
    let tx = client.transaction().map_err(pg(what))?;
    let mut tx = PgTx::in_transaction(tx, statements, what);
    commit_epoch(&mut tx, commit)?;
    let tx = tx.into_transaction()?;
    #[cfg(feature = "fault-injection")]
    let tx = super::fault::before_commit(tx, fault)?;
    tx.commit().map_err(|e| pg("COMMIT")(e).at_commit())?;
    #[cfg(feature = "fault-injection")]
    super::fault::after_commit(client, fault)?;
    #[cfg(not(feature = "fault-injection"))]
    let NoFault = fault;
    Ok(())
}
