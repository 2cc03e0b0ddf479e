//! The `omium` command's integration tests, one test binary (each binary links RocksDB).
//! Every file is a module; `cargo test -p omium-cli --test it consensus_fault::` runs one.

mod cli;
mod common;
mod consensus_cli;
mod consensus_fault;
mod events_cli;
mod policy;
mod report;
mod sync_cli;
mod workflow;
