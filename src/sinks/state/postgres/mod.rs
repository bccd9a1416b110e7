//! The production state store: PostgreSQL (RDS), TLS, unknown-COMMIT handling, single-writer lease.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | the module declarations and re-exports |
//! | `store.rs` | [`PgStore`] (the protocol's store on a [`PgDb`]), [`PgOptions`], a connection and its session, why an attempt failed, `Fault` (tests) |
//! | `adapter.rs` | the protocol's transaction trait on a connection ([`PgDb`] as its database): prepared statements, array inserts, every call through the retry loop |
//! | `client.rs` | the blocking client: tokio-postgres on a runtime of its own, a deadline on every call |
//! | `connection.rs` | connecting, reconnecting with backoff within a bound ([`PgOptions`]), host-name resolution |
//! | `tls.rs` | libpq's `sslmode`/`sslrootcert` URL options, the rustls connector |
//! | `lease.rs` | the single-writer lease: advisory lock [`LOCK_KEY`], re-locking, its holders |
//! | `commit.rs` | the epoch transaction and the unknown-COMMIT resolution |
//! | `fault.rs` | simulated connection losses for tests (`PgStore::inject_fault`): cargo feature `fault-injection` only |
//!
//! # Single writer
//! `StateWriter::begin_run` takes a session-level advisory lock (`pg_try_advisory_lock`,
//! key [`LOCK_KEY`], per database) before touching anything; if another session holds it the
//! answer is [`StateError::Locked`](crate::error::StateError::Locked) naming that session. The lock lives as long as the
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
//! then [`StateError::Unavailable`](crate::error::StateError::Unavailable). At start, [`PgStore::connect`] is bounded by
//! [`PgOptions::connect_timeout`] instead (a refused connection, a host name that does not
//! resolve, no answer), then [`StateError::Unreachable`](crate::error::StateError::Unreachable): a misconfigured URL fails fast with
//! one line. Host names are resolved on a helper thread within the bound (tokio-postgres
//! bounds only the TCP connect). All methods are idempotent except
//! `StateWriter::commit_epoch`, whose COMMIT may have been applied even though its answer was
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

mod adapter;
mod client;
mod commit;
mod connection;
#[cfg(feature = "fault-injection")]
mod fault;
mod lease;
mod store;
mod tls;

pub use lease::LOCK_KEY;
#[cfg(feature = "fault-injection")]
pub use store::Fault;
pub use store::{PgDb, PgOptions, PgStore, DEFAULT_STATEMENT_TIMEOUT};
