//! The epoch runtime of Mechanism Y: how chunks become epochs and epochs become commits.
//!
//! | module | owns |
//! |---|---|
//! | [`options`] | what a run is given ([`YOptions`]) |
//! | [`summary`] | what a run reports ([`RunSummary`]) |
//! | [`config`] | `-w`/`-n`/`-p`/`-h`, their bounds, and timely's configuration |
//! | [`startup`] | opening and checking the landing, importance file, output and state store |
//! | [`identity`] | the run identity (SPEC §6) and the option fingerprints of a cluster |
//! | [`worker`] | the worker loop: feed → parse a share → dataflow → hand the epoch over |
//! | [`batch`] | [`EpochBatch`]: one epoch's outputs and share reports; its completeness |
//! | [`writer`] | the single committing writer: emit-once, sequence numbers, one transaction per epoch |
//! | [`committer`] | the committing thread: batches in, rejects/ledger/files out |
//! | [`checkpointer`] | the checkpointing thread: shards in, checkpoints out; what a restart starts from |
//! | [`landing_edge`] | live runs with `--http`: the landing's edge, listed every 2 s, for the lag |
//! | [`cluster`] | starting and joining the workers, bounded, with typed failures |
//! | [`connections`] | a cluster's TCP connections: timely's handshake, logged through `tracing` |
//! | [`events`] | what a run tells its observers (telemetry, progress): one event per fact |
//! | [`watchdog`] | the stall watchdog: fails the run when no epoch commits while chunks wait |
//!
//! An epoch's path: the [`ChunkFeed`](crate::sources::landing::ChunkFeed) fetches chunk k;
//! every worker parses its share and feeds it at time k (a worker may feed up to five epochs
//! before the oldest completes, so that no epoch boundary is a barrier); the dataflow's outputs
//! and the share reports are exchanged to worker 0, which takes them out as one [`EpochBatch`]
//! once the dataflow's frontier passes k, checks that every worker contributed, and queues it
//! to the [`committer`] (bounded, in order) while the workers go on with later chunks. The committer
//! skips epochs an earlier run committed (after checking their chunk digest), and commits the
//! others: rejects file, one state-store transaction, detection files.

pub mod batch;
pub mod checkpointer;
pub mod cluster;
pub mod committer;
pub mod config;
pub mod connections;
pub mod control;
pub mod events;
pub mod identity;
pub mod landing_edge;
pub mod options;
pub mod startup;
pub mod summary;
pub mod watchdog;
pub mod worker;
pub mod writer;

pub use batch::EpochBatch;
pub use config::{
    TimelyOptions, DEFAULT_CONNECT_TIMEOUT, MAX_PROCESSES, MAX_TOTAL_WORKERS, MAX_WORKERS,
};
pub use control::RunControl;
pub use options::{
    default_poll_interval, Mode, ReplayRange, YOptions, DEFAULT_GAP_WARN,
    DEFAULT_LINGER_ON_FAILURE, DEFAULT_SETTLE, DEFAULT_STALL_TIMEOUT, MIN_POLL_INTERVAL,
};
pub use summary::RunSummary;
