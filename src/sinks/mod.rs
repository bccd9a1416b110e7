//! Taking results out of the dataflow: the state store (per-epoch counters, progress and the
//! detection ledger), detection files (50 per file) and reject files.
//!
//! | file | owns |
//! |---|---|
//! | `state/mod.rs` | the [`state::StateStore`] seam and the records it stores |
//! | `state/sqlite.rs` | the embedded store (default) |
//! | `state/postgres.rs` | the production store, with unknown-COMMIT handling and a lease |
//! | `detection_files.rs` | `detections-<i:06>.csv`, written from the ledger |
//! | `rejects.rs` | `rejects/<chunk>.csv` |
//! | `writer.rs` | the single committing writer: emit-once, sequence numbers, one transaction per epoch |

pub mod detection_files;
pub mod rejects;
pub mod state;
pub mod writer;
