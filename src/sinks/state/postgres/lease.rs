//! The single-writer lease: a session-level advisory lock ([`LOCK_KEY`]) taken before
//! anything else and re-taken on every reconnect; a half-open previous session of ours that
//! still holds it is terminated.

use tokio_postgres::Row;

use super::client::Queries;
use super::store::{pg, Conn, Failure, Session};

/// The advisory lock key of the single-writer lease ("txflow" in ASCII).
pub const LOCK_KEY: i64 = 0x7478_666c_6f77;

const SQL_LOCK_HOLDER: &str = "SELECT l.pid, COALESCE(a.backend_start::text, ''), \
     COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), 'local socket') \
     FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND ((l.classid::int8 << 32) | l.objid::int8) = $1";

/// Takes the lease on the current connection (`begin_run`), or names who holds it.
pub(super) fn take(c: &mut Conn) -> Result<Session, Failure> {
    if try_lock(c)? {
        return Ok(c.session.clone());
    }
    let holders = c
        .client
        .query(SQL_LOCK_HOLDER, &[&LOCK_KEY])
        .map_err(pg("looking up the lock holder"))?;
    Err(Failure::Held(describe_holders(&holders)))
}

/// Takes the lease on a fresh connection after a loss. If the holder is our own previous
/// session (the server has not noticed it is gone), terminates it and reports the lock as
/// held, so the caller retries shortly.
pub(super) fn relock(conn: &mut Conn, old: &Session) -> Result<(), Failure> {
    if try_lock(conn)? {
        return Ok(());
    }
    let holders = conn
        .client
        .query(SQL_LOCK_HOLDER, &[&LOCK_KEY])
        .map_err(pg("looking up the lock holder"))?;
    for row in &holders {
        let holder = Session {
            pid: row.get(0),
            started: row.get(1),
        };
        if &holder == old {
            tracing::warn!(
                pid = holder.pid,
                "our previous PostgreSQL session still holds the single-writer lock; terminating it"
            );
            conn.client
                .execute("SELECT pg_terminate_backend($1)", &[&holder.pid])
                .map_err(pg("terminating our previous session"))?;
        }
    }
    Err(Failure::Held(describe_holders(&holders)))
}

/// `pg_try_advisory_lock` on the single-writer key.
pub(super) fn try_lock(conn: &mut Conn) -> Result<bool, Failure> {
    conn.client
        .query_value("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .map_err(pg("taking the single-writer lock"))
}

fn describe_holders(rows: &[Row]) -> String {
    let holders: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "session pid {} (application {:?}, client {}, connected since {})",
                r.get::<_, i32>(0),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                r.get::<_, String>(1),
            )
        })
        .collect();
    if holders.is_empty() {
        format!("advisory lock {LOCK_KEY:#x} is held by another session")
    } else {
        format!(
            "advisory lock {LOCK_KEY:#x} is held by {}",
            holders.join(", ")
        )
    }
}
