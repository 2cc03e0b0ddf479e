//! `omium-node`: the native layer of the `omium` npm package (napi-rs). Thin, like the Python
//! one: it converts types and errors, runs every store call that can block (RocksDB reads,
//! fsyncs) on a worker thread so the JS main thread never waits on disk, and leaves every
//! decision to `omium-core`. The public API is the TypeScript layer in `omium-node/ts`.
//!
//! Records cross as plain objects with camelCase keys (`serde_json::Value`); nanosecond times
//! cross as decimal strings (they do not fit a JS number). Errors are JS `Error`s whose
//! message starts with `[code] `, the stable code of `omium_core::Error::code`; the TS layer
//! turns them into `OmiumError` subclasses.

pub mod calls;
#[cfg(feature = "cluster")]
pub mod consensus;
pub mod convert;
pub mod recovery;
pub mod run;
pub mod store;
#[cfg(feature = "cluster")]
pub mod sync;
pub mod threads;
pub mod trace;
pub mod workflow;

use napi::bindgen_prelude::*;
use napi_derive::napi;

pub use convert::{blocking, err};

/// The version of the native layer (the crate's).
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

/// Whether this addon was built with the cluster (consensus and remote sync): the `cluster`
/// feature, on by default.
#[napi]
pub fn has_cluster() -> bool {
    cfg!(feature = "cluster")
}

/// Runs the `omium` command line (`args`: the program name first) and ends the process with its
/// exit code: the package's `omium` bin (`npx omium`). Blocks the calling thread until the
/// command ends.
#[cfg(feature = "cluster")]
#[napi]
pub fn cli_main(args: Vec<String>) {
    omium_cli::exit_from(args.into_iter().map(Into::into).collect())
}

/// The store format version this build writes.
#[napi]
pub fn format_version() -> u32 {
    omium_core::FORMAT_VERSION
}

/// Every code a core error can have: `errors.ts` maps each to a class of its own.
#[napi]
pub fn error_codes() -> Vec<String> {
    omium_core::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect()
}

/// Validates a durability name ("sync", "buffered", "none") and returns its canonical form.
#[napi]
pub fn check_durability(durability: String) -> Result<String> {
    omium_core::Durability::parse(&durability)
        .map(|d| d.as_str().to_string())
        .map_err(err)
}

/// A CEL condition compiled once, evaluated over JSON values.
#[napi]
pub struct Condition {
    inner: omium_core::expr::Condition,
}

#[napi]
impl Condition {
    #[napi(constructor)]
    pub fn new(expression: String) -> Result<Self> {
        Ok(Condition {
            inner: omium_core::expr::Condition::compile(&expression).map_err(err)?,
        })
    }

    #[napi(getter)]
    pub fn source(&self) -> String {
        self.inner.source().to_string()
    }

    /// Evaluates with the variables of `context` (an object of JSON values).
    #[napi]
    pub fn evaluate(&self, context: serde_json::Map<String, serde_json::Value>) -> Result<bool> {
        let vars: Vec<(String, serde_json::Value)> = context.into_iter().collect();
        self.inner.evaluate(&vars).map_err(err)
    }
}
