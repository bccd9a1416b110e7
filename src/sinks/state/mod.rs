//! The state-store seam (SPEC §6). Both implementations run the same SQL schema from `sql/`
//! and give the same answers; the runner only talks to a [`StateWriter`], opened from a
//! [`StateConfig`] by [`open`]; reports and inspection to a [`StateReader`]
//! ([`open_read_only`]). The protocol is written once (`protocol.rs`) over a small
//! transaction trait that each database adapts.
//!
//! Exactly-once contract: [`StateWriter::commit_epoch`] applies one epoch's counter deltas,
//! new ledger rows (the baseline's and, in a backtest with variants, every variant's) and
//! progress row in one transaction, and is never asked to commit an epoch
//! at or below the last committed one. An implementation whose COMMIT outcome can be unknown
//! (a lost connection) must find out by re-reading the progress row before retrying.
//!
//! Nothing mixed (SPEC §6): [`StateWriter::begin_run`] records the run's identity
//! ([`RunIdentity`]: mode, landing, resolved replay range, thresholds, the importance file's
//! digest) in `run_meta`, one key per component, and refuses a store holding epochs of
//! another run with [`StateError::DifferentRun`](crate::error::StateError::DifferentRun) naming each difference (a store recorded by
//! a version without these keys is another run too). Each epoch's progress row records its
//! chunk's digest, so that a recovery can refuse a chunk whose bytes changed.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | the module declarations and re-exports, nothing else |
//! | `config.rs` | [`StateConfig`] (which store, its URL redacted), [`open`], [`open_existing`], [`open_read_only`] |
//! | `store.rs` | the [`StateWriter`] and [`StateReader`] traits and the rows they store |
//! | `protocol.rs` | the protocol written once: the transaction trait (`Tx`), the database trait (`Db`), the one `Store` implementing both traits |
//! | `rules.rs` | the SQL-free rules both stores follow: detection keys, `BIGINT` conversions, schema versions, variant decisions |
//! | `identity.rs` | [`RunIdentity`]: its `run_meta` entries and the "different run" decision |
//! | `schema.rs` | the SQL both stores run: migrations (`sql/*.sql`) and every statement |
//! | `sqlite.rs` | the embedded store's database: SQLite, WAL, `flock` single-writer lock, its transaction adapter |
//! | `postgres/mod.rs` | the PostgreSQL store's declarations and re-exports |
//! | `postgres/adapter.rs` | the transaction adapter on a connection; `PgDb` as the protocol's database |
//! | `postgres/store.rs` | [`postgres::PgStore`], `PgDb`, [`postgres::PgOptions`], the connection and session types, attempt failures |
//! | `postgres/client.rs` | the blocking client: a deadline on every call, dropped without waiting for the server |
//! | `postgres/connection.rs` | connecting, bounded reconnection with backoff, host-name resolution within the bound |
//! | `postgres/tls.rs` | libpq's `sslmode`/`sslrootcert` URL options and the rustls connector |
//! | `postgres/lease.rs` | the single-writer lease: the advisory lock, re-locking after a loss, its holders |
//! | `postgres/commit.rs` | the epoch transaction's retry loop and the unknown-COMMIT resolution |
//! | `postgres/fault.rs` | simulated connection losses for tests (cargo feature `fault-injection` only) |

mod config;
mod identity;
pub mod postgres;
mod protocol;
mod rules;
pub mod schema;
pub mod sqlite;
pub mod store;

pub use config::{open, open_existing, open_read_only, StateConfig};
pub use identity::{RunIdentity, RunMode};
pub use postgres::PgOptions;
pub use schema::MIGRATIONS;
pub use store::{
    CheckpointRow, EpochCommit, EpochRow, FailureRow, LedgerId, LedgerRow, Recovered, StateReader,
    StateWriter, VariantRecovered, VariantRows, VariantSpec, FAILURES_KEPT,
};
