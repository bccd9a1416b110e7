//! Simulated connection losses for tests of the recovery paths: injecting a [`Fault`] (the
//! type is in `store.rs`, next to the `PgDb` field holding it) and acting on it around
//! COMMIT; and what a test may read of the session (its backend pid, a setting). Compiled only with the cargo feature `fault-injection` (tests/state_store.rs
//! enables it through a dev-dependency on this package); release builds do not contain it.

use super::client::{Client, Queries, Transaction};
use super::store::{pg, Failure, Fault, PgDb, PgStore};
use crate::error::StateError;

/// Terminates the session's own backend: a real connection loss.
const KILL_OWN_BACKEND: &str = "SELECT pg_terminate_backend(pg_backend_pid())";

impl PgStore {
    /// Makes the next `commit_epoch` lose its connection at the given point (tests).
    pub fn inject_fault(&mut self, fault: Fault) {
        self.db.fault = Some(fault);
    }

    /// The backend pid of the current connection, if connected (tests).
    pub fn backend_pid(&self) -> Option<i32> {
        self.db.conn.as_ref().map(|c| c.session.pid)
    }

    /// A setting of the current session (`SHOW name`), reconnecting if needed (tests).
    pub fn session_setting(&mut self, name: &str) -> Result<String, StateError> {
        let what = "reading a session setting";
        let statement = format!("SHOW {name}");
        self.db.retrying(what, |c| {
            let row = c.client.query_one(&statement, &[]).map_err(pg(what))?;
            Ok(row.get(0))
        })
    }
}

impl PgDb {
    /// The fault to simulate in the next commit attempt (at most one per `commit_epoch`).
    pub(super) fn take_fault(&mut self) -> Option<Fault> {
        self.fault.take()
    }
}

/// Before COMMIT: loses the connection if `fault` says so (the attempt fails; the server
/// rolls the transaction back), else hands the transaction back to be committed.
pub(super) fn before_commit(
    mut tx: Transaction<'_>,
    fault: Option<Fault>,
) -> Result<Transaction<'_>, Failure> {
    let at_commit = match fault {
        Some(Fault::LoseConnectionBeforeCommit) => false,
        Some(Fault::LoseConnectionDuringCommit) => true,
        Some(Fault::LoseConnectionAfterCommit) | None => return Ok(tx),
    };
    Err(match tx.batch_execute(KILL_OWN_BACKEND) {
        Err(error) if !at_commit => pg("committing an epoch")(error),
        // (Not dead yet: dropping the transaction rolls it back, the same outcome.)
        _ => Failure::Simulated { at_commit },
    })
}

/// After a successful COMMIT: loses the connection and reports the COMMIT's answer as lost,
/// if `fault` says so.
pub(super) fn after_commit(client: &mut Client, fault: Option<Fault>) -> Result<(), Failure> {
    if fault == Some(Fault::LoseConnectionAfterCommit) {
        let _ = client.batch_execute(KILL_OWN_BACKEND);
        return Err(Failure::Simulated { at_commit: true });
    }
    Ok(())
}
