//! Errors and records: core values to the plain objects JS sees.

use napi::bindgen_prelude::*;
use omium_core::{json, Checkpoint, Execution, VerifyReport};
use serde_json::Value;

/// Marks the JSON details a policy error carries after its message.
pub const DETAILS: &str = "\n--omium-details--\n";

/// A JS error for a core error: `[code] message`, then the error's details as JSON, if any.
pub fn err(e: impl Into<omium_core::Error>) -> Error {
    let e: omium_core::Error = e.into();
    let mut message = format!("[{}] {e}", e.code());
    if let Some(details) = e.details() {
        message.push_str(DETAILS);
        message.push_str(&details.to_string());
    }
    Error::new(Status::GenericFailure, message)
}

/// A JS error with a code of our own (bad arguments found by this layer).
pub fn coded(code: &str, message: impl std::fmt::Display) -> Error {
    Error::new(Status::GenericFailure, format!("[{code}] {message}"))
}

/// Runs a store call on a worker thread of the blocking pool (never on the JS thread).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> omium_core::Result<T> + Send + 'static,
) -> Result<T> {
    spawn_blocking(f)
        .await
        .map_err(|e| coded("internal", format!("a worker thread failed: {e}")))?
        .map_err(err)
}

/// `snake_case` keys of a core document as JS's `camelCase`, recursively, except inside
/// user maps (`metadata`, `labels`), whose keys are the user's.
pub fn camel(v: Value) -> Value {
    camel_keeping(v, &["metadata", "labels"])
}

/// [`camel`], leaving the values under the keys `user` (the user's data) as they are.
pub fn camel_keeping(v: Value, user: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if user.contains(&k.as_str()) {
                        v
                    } else {
                        camel_keeping(v, user)
                    };
                    (camel_key(&k), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| camel_keeping(v, user)).collect()),
        other => other,
    }
}

pub fn camel_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut up = false;
    for ch in k.chars() {
        if ch == '_' {
            up = true;
        } else if up {
            out.extend(ch.to_uppercase());
            up = false;
        } else {
            out.push(ch);
        }
    }
    out
}

pub fn checkpoint(c: &Checkpoint) -> Value {
    camel(json::checkpoint(c))
}

pub fn checkpoints(list: &[Checkpoint]) -> Value {
    camel(json::checkpoints(list))
}

pub fn execution(e: &Execution) -> Value {
    camel(json::execution(e))
}

pub fn executions(list: &[Execution]) -> Value {
    camel(json::executions(list))
}

pub fn verify_report(r: &VerifyReport) -> Value {
    camel(json::verify_report(r))
}

/// Any serializable core record, as is (snake_case keys, as the CLI's `--json` prints them).
pub fn record<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("core records serialize")
}
