//! Omium's documents, the bottom layer of the engine: CEL conditions ([`expr`]), recovery
//! policies ([`policy`]: parsing with located errors, the canonical form, the decision table,
//! scopes), workflow specs ([`workflow`]: validation, plans, templates) and alert rules
//! ([`alerts`]). Nothing here stores
//! anything or depends on RocksDB; `omium-core` re-exports every module under its old path
//! (`omium_core::policy`, `omium_core::expr`, `omium_core::workflow`).

pub mod alerts;
pub mod error;
pub mod expr;
pub mod policy;
pub mod workflow;

pub use error::{Error, Result};
