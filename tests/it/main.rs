#![allow(unreachable_pub)] // the kit's items are public to the binary's modules, not an API
//! The integration tests, one module per area, built as one binary over one shared kit
//! ([`common`]): the kit and the library are compiled and linked once, and a helper exists
//! once.
//!
//! Plain `cargo test` is hermetic: it needs no PostgreSQL server, no S3 server and no
//! browser. What needs them is compiled only with a cargo feature (`scripts/test.sh` enables
//! `test-all`):
//! - `test-services`: a throwaway PostgreSQL cluster (`common::pg`) or the in-process S3
//!   server (`common::s3`);
//! - `test-browser`: headless Chromium (`common::browser`).
//!
//! Whole modules are gated here; modules that mix gate single tests.
//!
//! Run one area with `cargo test --test it <module>::`, e.g.
//! `cargo test --test it --features test-services crash_recovery::`.

mod common;

#[cfg(feature = "test-browser")]
mod backtest_report;
mod backtest_variants;
mod cli;
mod cluster;
#[cfg(feature = "test-services")]
mod crash_recovery;
mod e2e_local;
mod hostile_framing;
mod hostile_input;
mod hostile_landing;
mod hostile_resume;
mod hostile_startup;
mod object_store_conformance;
#[cfg(feature = "test-browser")]
mod operating_browser;
mod operating_http;
mod operating_logs;
mod operating_states;
mod ops_docs;
mod options;
mod reference_props;
#[cfg(feature = "test-services")]
mod s3_pipeline;
#[cfg(feature = "test-services")]
mod s3_store;
mod shadow_variants;
mod state_store;
