//! txflow — incremental, exactly-once detection of merchant/customer behaviour patterns
//! over a stream of bank transactions, on timely/differential dataflow.
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | the data types every stage shares (names, transactions, detections, thresholds) |
//! | [`objectstore`] | the object-store seam: local directories and S3 behind one trait |
//! | [`sources`] | bringing data in: record framing, CSV parsing, the importance file, landing-store chunk discovery |
//! | [`dataflow`] | the differential computation: aggregates and one file per pattern |
//! | [`sinks`] | taking results out: state stores (SQLite, PostgreSQL), detection and reject files |
//! | [`mechanism_x`] | the producer that cuts `transactions.csv` into landing chunks |
//! | [`mechanism_y`] | the detector, as the story of its runtime: feed → workers → committer |
//! | [`report`] | the console page and the run report: a run's status JSON rendered as HTML |
//! | [`runtime`] | the epoch runtime: worker loop, epoch batches, committing thread, cluster |
//! | [`telemetry`] | what a run tells its operators: metrics, status, readiness |
//! | [`http`] | the operating endpoint (`--http`): a bounded, read-only HTTP server |
//! | [`thresholds`] | the pattern thresholds' one schema (options, identity record, variant keys); backtest variants from `--variants`, `--variant`, `--sweep` |
//! | [`decimal`] | exact decimals: amounts, weights and fractions as integer millionths |
//! | [`name`] | `Name`: customer/merchant/category names as compact, word-compared values |
//! | [`error`] | the library's error: typed errors with a domain and a retry hint |
//! | [`time`] | IST (UTC+05:30) timestamps |
//! | [`cli`] | command-line options shared by the binaries, logging |
//! | [`progress`] | progress on stderr: a bar or status line on a terminal, log lines otherwise |
//! | [`retry_count`] | how a store reports its retries to the run that opened it |
//! | [`redact`] | the one redaction of URLs and locations shown anywhere (passwords, secret query parameters) |
//!
//! The layers these modules form, and the rule that imports point down them, are in
//! `docs/architecture.md` (checked by `tests/architecture.rs`).
//!
//! The BankSim-shaped synthetic data generator is not part of the library: it is the
//! workspace crate `txgen` (`tools/txgen/`), and the `txgen` binary is a thin CLI over it.

pub mod cli;
pub mod dataflow;
pub mod decimal;
pub mod error;
pub mod http;
pub mod mechanism_x;
pub mod mechanism_y;
pub mod model;
pub mod name;
pub mod objectstore;
pub mod progress;
pub mod redact;
pub mod report;
pub mod retry_count;
pub mod runtime;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod thresholds;
pub mod time;
