#!/usr/bin/env bash
# Runs the whole txflow test suite on a fresh machine: installs what the tests need
# (PostgreSQL server binaries, Chromium), then builds and runs every test, those behind the
# cargo feature `test-all` included (plain `cargo test` leaves out what needs PostgreSQL, the
# S3 server or the browser). The tests start their own throwaway PostgreSQL cluster and an
# in-process S3 server; nothing else must be running.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh
scripts/ensure-tools.sh

export RUST_BACKTRACE=1
# Debug tests with optimised hot paths would triple the build; plain debug is the fastest overall.
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets --features test-all -- -D warnings
echo "== cargo test"
cargo test --locked --workspace --all-targets --features test-all -- --test-threads="${TXFLOW_TEST_THREADS:-2}"
