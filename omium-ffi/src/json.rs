//! The JSON documents C receives (`omium_core::json`, the Rust API's field names, as in the
//! CLI's `--json` views), as caller-owned buffers.

use std::ffi::c_char;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::buffer::omium_buffer;
use crate::error::Failure;
use crate::guard::str_arg;

pub(crate) use omium_core::json::{checkpoint, checkpoints, execution, executions, verify_report};

pub(crate) fn buffer(v: &Value) -> omium_buffer {
    omium_buffer::from_vec(v.to_string().into_bytes())
}

/// A JSON argument (`name` names it in errors).
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string.
pub(crate) unsafe fn arg(ptr: *const c_char, name: &str) -> Result<Value, Failure> {
    // SAFETY: forwarded promise.
    let text = unsafe { str_arg(ptr, name) }?;
    serde_json::from_str(text).map_err(|e| Failure::argument(name, format!("is not JSON: {e}")))
}

/// A JSON object argument; `expected` describes it in errors.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string.
pub(crate) unsafe fn object_arg(
    ptr: *const c_char,
    name: &str,
    expected: &str,
) -> Result<Map<String, Value>, Failure> {
    // SAFETY: forwarded promise.
    match unsafe { arg(ptr, name) } {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(Failure::argument(
            name,
            format!("is JSON {}; expected an object {expected}", kind_of(&other)),
        )),
        Err(e) => Err(Failure::new(
            e.status,
            format!("{}; expected an object {expected}", e.message),
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Field `key` of the object argument `arg`, absent or null: `None`; of another type than
/// `expected`: an error naming the argument, the field and its value.
pub(crate) fn field<T: DeserializeOwned>(
    m: &Map<String, Value>,
    arg: &str,
    key: &str,
    expected: &str,
) -> Result<Option<T>, Failure> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|_| Failure::argument(arg, format!("has {key:?} = {v}; expected {expected}"))),
    }
}
