//! omium-core's integration tests, one test binary (each binary links RocksDB: one link instead
//! of ten). Every file is a module; `cargo test -p omium-core --test it crash::` runs one.

mod analytics;
mod common;
mod conformance;
mod consensus;
mod consensus_storage;
mod control;
mod crash;
mod driver;
mod engine;
mod events;
mod fixture;
mod format;
mod model;
mod policy;
mod sync;
mod threads;
mod trace;
mod workflow;
