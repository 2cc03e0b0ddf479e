//! The JSON documents C receives (`omium_core::json`, the Rust API's field names, as in the
//! CLI's `--json` views), as caller-owned buffers.

use serde_json::Value;

use crate::buffer::omium_buffer;

pub(crate) use omium_core::json::{checkpoint, checkpoints, execution, executions, verify_report};

pub(crate) fn buffer(v: &Value) -> omium_buffer {
    omium_buffer::from_vec(v.to_string().into_bytes())
}
