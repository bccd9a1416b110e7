//! Shared test support. Each integration test file includes it with `mod common;` and uses
//! what it needs (hence the `dead_code` allowance).
#![allow(dead_code)]

pub mod browser;
pub mod outputs;
pub mod pg;
pub mod process;
pub mod reference;
pub mod s3;
pub mod streams;
