//! Shared test support: the one place for a helper the test modules share. Each module uses
//! what it needs, and what only feature-gated modules use is unused without the feature
//! (hence the `dead_code` allowance).
#![allow(dead_code)]

pub mod browser;
pub mod http;
pub mod outputs;
pub mod paths;
pub mod pg;
pub mod process;
pub mod reference;
pub mod s3;
pub mod streams;
pub mod wait;
