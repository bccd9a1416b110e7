//! Taking results out of the dataflow: the state store (per-epoch counters, progress and the
//! detection ledger), detection files (50 per file) and reject files.
//!
//! | file | owns |
//! |---|---|
//! | `state/` | the [`state::StateWriter`] / [`state::StateReader`] seam, the records it stores and its SQL (file table in `state/mod.rs`) |
//! | `state/sqlite.rs` | the embedded store (default) |
//! | `state/postgres/` | the production store, with unknown-COMMIT handling and a lease |
//! | `ledger.rs` | one detection ledger (the baseline's or a variant's): emit-once, sequence numbers, its files |
//! | `detection_files.rs` | `detections-<i:06>.csv`, written from the ledger |
//! | `rejects.rs` | `rejects/<chunk>.csv` |
//! | `checkpoint/` | checkpoints of the dataflow's state: their bytes, writing and checked reading |

pub mod checkpoint;
pub mod detection_files;
pub mod ledger;
pub mod rejects;
pub mod state;
