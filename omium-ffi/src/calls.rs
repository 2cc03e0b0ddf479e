//! Operations on executions beyond the basics, for C as for the other bindings: fork at a
//! checkpoint or at a position, the step-by-step diff of two executions, recovery policies and
//! the tool allowlist, and recorded LLM and tool calls (the canonical request and its hash, and
//! `omium_replay`, which answers a replayed run's calls from a recording).

use std::ffi::c_char;
use std::sync::Mutex;

use omium_core::trace::calls::{self, Replay};
use omium_core::ForkOptions;
use serde_json::{json, Value};

use crate::buffer::omium_buffer;
use crate::error::{omium_status, Failure};
use crate::guard::{
    self, bytes_arg, guard, non_empty_str_arg, opt_out_arg, opt_str_arg, out_arg, str_arg, Handle,
    Opaque,
};
use crate::json;
use crate::store::{omium_store, with_store};
use omium_core::prelude::*;

/// Forks execution `execution_id` at checkpoint `at` (an id, or a step name: its latest
/// checkpoint) into a new execution, `new_execution_id` (NULL: a generated id). With `state`
/// (`state_len` bytes; NULL: keep it) the checkpoint forked at gets that state instead, so the
/// new execution resumes from it. The original is kept. Beginning the new execution re-runs
/// the steps after the fork point.
///
/// If `out_execution_json` is not NULL it receives the new execution as JSON (fields as in
/// `omium_store_execution`). Errors: `OMIUM_ERR_EXECUTION_NOT_FOUND`,
/// `OMIUM_ERR_CHECKPOINT_NOT_FOUND`, `OMIUM_ERR_WRONG_EXECUTION`, `OMIUM_ERR_INVALID_ARGUMENT`
/// (a new id that exists), `OMIUM_ERR_READ_ONLY`.
///
/// Ownership: the caller frees `*out_execution_json` with `omium_buffer_free`.
/// Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated; `state` is
/// NULL or points to `state_len` readable bytes; `out_execution_json` is NULL or valid for
/// writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_fork(
    store: *mut omium_store,
    execution_id: *const c_char,
    at: *const c_char,
    new_execution_id: *const c_char,
    state: *const u8,
    state_len: usize,
    out_execution_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_fork", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { opt_out_arg(out_execution_json, omium_buffer::EMPTY) };
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let at = unsafe { non_empty_str_arg(at, "at") }?;
        let new_id = unsafe { opt_str_arg(new_execution_id, "new_execution_id") }?;
        let state = if state.is_null() {
            None
        } else {
            Some(unsafe { bytes_arg(state, state_len, "state") }?.to_vec())
        };
        let options = ForkOptions {
            new_execution_id: new_id.map(str::to_string),
            state,
        };
        let e = unsafe { with_store(store, |s| Ok(s.fork(id, at, options)?)) }?;
        if let Some(out) = out {
            *out = json::buffer(&json::execution(&e));
        }
        Ok(())
    })
}

/// Forks execution `execution_id` before its top-level position `at_step` (the `seq` of its
/// history; 1 is the first step, one past the last forks after everything) into
/// `new_execution_id`: positions before `at_step` are kept, and beginning the new execution
/// runs from `at_step` on (a new execution with the same workflow, input and labels when
/// `at_step` is 1). The caller gives the step at `at_step` its changed input when it runs it.
///
/// If `out_execution_json` is not NULL it receives the new execution as JSON. Errors:
/// `OMIUM_ERR_INVALID_ARGUMENT` (a position out of range names the range),
/// `OMIUM_ERR_EXECUTION_NOT_FOUND`, `OMIUM_ERR_READ_ONLY`.
///
/// Ownership: the caller frees `*out_execution_json` with `omium_buffer_free`.
/// Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated;
/// `out_execution_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_fork_at_step(
    store: *mut omium_store,
    execution_id: *const c_char,
    at_step: u64,
    new_execution_id: *const c_char,
    out_execution_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_fork_at_step", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { opt_out_arg(out_execution_json, omium_buffer::EMPTY) };
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let new_id = unsafe { non_empty_str_arg(new_execution_id, "new_execution_id") }?;
        let e = unsafe { with_store(store, |s| Ok(s.fork_at_step(id, at_step, new_id)?)) }?;
        if let Some(out) = out {
            *out = json::buffer(&json::execution(&e));
        }
        Ok(())
    })
}

/// Compares executions `a` and `b` position by position along their live branches and writes
/// a JSON array into `*out_json`: per position `{"seq", "position", "name_a", "name_b",
/// "output_differs", "input_differs", "duration_ns_a", "duration_ns_b", "tokens_a", "tokens_b",
/// "cost_a", "cost_b", "differs"}` (a position is a step's key when it has one, such as `2/0`
/// for a call nested in the step at 2, else its seq). Embedded stores only
/// (`OMIUM_ERR_INVALID_STATE` for a store from `omium_store_connect`).
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated; `out_json`
/// is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_diff(
    store: *mut omium_store,
    a: *const c_char,
    b: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_diff", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let a = unsafe { non_empty_str_arg(a, "a") }?;
        let b = unsafe { non_empty_str_arg(b, "b") }?;
        let rows = unsafe {
            with_store(store, |s| {
                Ok(s.local("omium_store_diff")?.diff_executions(a, b)?)
            })
        }?;
        *out = json::buffer(&omium_core::json::step_diffs(&rows));
        Ok(())
    })
}

/// Stores `policy` (YAML or JSON text) as the next version of the recovery policy of `tenant`
/// (NULL: "default") at `scope` (NULL: "global"; or "workflow:NAME", "step:NAME",
/// "workflow:NAME/step:NAME"); it applies from the next failure on. An invalid policy is
/// `OMIUM_ERR_INVALID_POLICY` with the line, column and what was expected in the message, and
/// nothing is stored.
///
/// If `out_version_json` is not NULL it receives the stored version as JSON.
/// Ownership: the caller frees `*out_version_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated;
/// `out_version_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_apply_policy(
    store: *mut omium_store,
    tenant: *const c_char,
    scope: *const c_char,
    policy: *const c_char,
    out_version_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_apply_policy", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { opt_out_arg(out_version_json, omium_buffer::EMPTY) };
        let tenant = unsafe { opt_str_arg(tenant, "tenant") }?.unwrap_or("default");
        let scope = unsafe { opt_str_arg(scope, "scope") }?.unwrap_or("global");
        let text = unsafe { non_empty_str_arg(policy, "policy") }?;
        let v = unsafe {
            with_store(store, |s| {
                Ok(s.apply_policy(tenant, scope, text, None, None)?)
            })
        }?;
        if let Some(out) = out {
            *out = json::buffer(&v);
        }
        Ok(())
    })
}

/// Checks a call of tool `tool` by a step `step` (NULL: outside a step) of execution
/// `execution_id` (workflow `workflow`, NULL: none; tenant `tenant`, NULL: "default") against
/// the policy's tool allowlist: `OMIUM_OK` when it may be called, `OMIUM_ERR_TOOL_DENIED` (the
/// message names the tool, the step and what is allowed) when not — then do not call it. A
/// denial outside a step is recorded as a failure here; inside one, record it with the step's
/// failure.
///
/// Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn omium_store_check_tool(
    store: *mut omium_store,
    execution_id: *const c_char,
    tenant: *const c_char,
    workflow: *const c_char,
    step: *const c_char,
    tool: *const c_char,
) -> omium_status {
    guard("omium_store_check_tool", || {
        // SAFETY (argument reads): the caller's promises.
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let tenant = unsafe { opt_str_arg(tenant, "tenant") }?.unwrap_or("default");
        let workflow = unsafe { opt_str_arg(workflow, "workflow") }?;
        let step = unsafe { opt_str_arg(step, "step") }?;
        let tool = unsafe { non_empty_str_arg(tool, "tool") }?;
        unsafe {
            with_store(store, |s| {
                Ok(s.check_tool(id, tenant, workflow, step, "main", tool)?)
            })
        }
    })
}

/// The canonical request of an LLM or tool call, as every binding records it: `kind` is "llm"
/// or "tool"; `args_json` the positional arguments (a JSON array; NULL: none), `params_json`
/// the keyword parameters (a JSON object; NULL: none: `messages`, `tools` and the rest; headers,
/// ids, timeouts and other volatile parameters are left out). `*out_request_json` receives
/// `{"request": ..., "hash": "<64 hex digits>"}`; record the call as a step named
/// `llm:<span name>` / `tool:execute_tool <name>` whose metadata holds `omium.call`,
/// `omium.request_hash` and `omium.side_effect`, so that replays and diffs find it.
///
/// Ownership: the caller frees `*out_request_json` with `omium_buffer_free`. Any thread.
///
/// # Safety
/// The strings are NULL or NUL-terminated; `out_request_json` is NULL or valid for writing an
/// `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_canonical_request(
    kind: *const c_char,
    name: *const c_char,
    provider: *const c_char,
    model: *const c_char,
    args_json: *const c_char,
    params_json: *const c_char,
    out_request_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_canonical_request", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_request_json, "out_request_json", omium_buffer::EMPTY) }?;
        let kind = unsafe { str_arg(kind, "kind") }?;
        let name = unsafe { opt_str_arg(name, "name") }?.unwrap_or("");
        let provider = unsafe { opt_str_arg(provider, "provider") }?.unwrap_or("");
        let model = unsafe { opt_str_arg(model, "model") }?.unwrap_or("");
        let args = match args_json.is_null() {
            true => Vec::new(),
            false => match unsafe { json::arg(args_json, "args_json") }? {
                Value::Array(a) => a,
                other => {
                    return Err(Failure::argument(
                        "args_json",
                        format!("must be a JSON array, not {other}"),
                    ))
                }
            },
        };
        let params = match params_json.is_null() {
            true => serde_json::Map::new(),
            false => match unsafe { json::arg(params_json, "params_json") }? {
                Value::Object(m) => m,
                other => {
                    return Err(Failure::argument(
                        "params_json",
                        format!("must be a JSON object, not {other}"),
                    ))
                }
            },
        };
        let (request, hash) = calls::canonical_request(kind, name, provider, model, args, params)?;
        *out = json::buffer(&json!({"request": request, "hash": hash}));
        Ok(())
    })
}

/// The recorded LLM and tool calls of an execution (opaque), made by `omium_store_open_replay`,
/// released by `omium_replay_free`. Replaying a run: for each call the run makes, in order, ask
/// `omium_replay_answer` for the recorded answer instead of calling; at the end,
/// `omium_replay_finish` says whether the run made every recorded call.
///
/// Thread-safety: calls on one replay are serialized (a replay answers in order). Freeing it
/// while another thread is inside a call on it fails with `OMIUM_ERR_BUSY` and frees nothing.
pub struct omium_replay(Handle<Mutex<Replay>>);

impl Opaque for omium_replay {
    type Value = Mutex<Replay>;
    const KIND: &'static str = "replay";
    const TAG: u64 = u64::from_le_bytes(*b"omREPLY\x01");
    const MADE_BY: &'static str = "omium_store_open_replay";
    fn wrap(handle: Handle<Mutex<Replay>>) -> Self {
        omium_replay(handle)
    }
    fn handle(&self) -> &Handle<Mutex<Replay>> {
        &self.0
    }
}

/// Reads the recorded calls of execution `execution_id` (their states are read now) into a new
/// replay, `*out_replay` (NULL on error). An execution with no recorded calls gives a replay
/// that answers nothing. Errors: `OMIUM_ERR_EXECUTION_NOT_FOUND`, `OMIUM_ERR_INTEGRITY`,
/// `OMIUM_ERR_DECODE` (a recorded call's state in a codec the core cannot read).
///
/// Ownership: the caller frees `*out_replay` with `omium_replay_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `execution_id` is NULL or NUL-terminated;
/// `out_replay` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn omium_store_open_replay(
    store: *mut omium_store,
    execution_id: *const c_char,
    out_replay: *mut *mut omium_replay,
) -> omium_status {
    guard("omium_store_open_replay", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_replay, "out_replay", std::ptr::null_mut()) }?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let replay = unsafe { with_store(store, |s| Ok(s.open_replay(id)?)) }?;
        *out = <omium_replay as Opaque>::into_raw(Mutex::new(replay));
        Ok(())
    })
}

/// The recorded answer to the next call of the replayed run, whose canonical request and hash
/// are `request_json` (the `"request"` of `omium_canonical_request`) and `hash`: `*out_state`
/// receives the recorded state (`{"request", "response"}` in the recording's codec) and, if
/// `out_metadata_json` is not NULL, `*out_metadata_json` the recorded checkpoint's metadata
/// (its `omium.codec` names the codec). `OMIUM_ERR_REPLAY_DIVERGENCE` when the request differs
/// from the recording or the recording has no further call (the message shows both requests).
///
/// Ownership: the caller frees both buffers with `omium_buffer_free`. Thread-safety: any thread.
///
/// # Safety
/// `replay` is NULL or a live replay handle; the strings are NULL or NUL-terminated; the out
/// pointers are NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_replay_answer(
    replay: *mut omium_replay,
    request_json: *const c_char,
    hash: *const c_char,
    out_state: *mut omium_buffer,
    out_metadata_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_replay_answer", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_state, "out_state", omium_buffer::EMPTY) }?;
        let meta = unsafe { opt_out_arg(out_metadata_json, omium_buffer::EMPTY) };
        let request = unsafe { json::arg(request_json, "request_json") }?;
        let hash = unsafe { non_empty_str_arg(hash, "hash") }?;
        let (state, metadata) = unsafe {
            guard::with(replay, "replay", |r: &Mutex<Replay>| {
                let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
                let rec = r.answer(&request, hash)?;
                Ok((rec.state.clone(), json!(rec.checkpoint.metadata)))
            })
        }?;
        *out = omium_buffer::from_vec(state);
        if let Some(meta) = meta {
            *meta = json::buffer(&metadata);
        }
        Ok(())
    })
}

/// Checks, once the replayed run ended, that it made every recorded call:
/// `OMIUM_ERR_REPLAY_DIVERGENCE` names the first call it did not make.
///
/// # Safety
/// `replay` is NULL or a live replay handle.
#[no_mangle]
pub unsafe extern "C" fn omium_replay_finish(replay: *mut omium_replay) -> omium_status {
    guard("omium_replay_finish", || {
        // SAFETY: the caller's promise.
        unsafe {
            guard::with(replay, "replay", |r: &Mutex<Replay>| {
                Ok(r.lock().unwrap_or_else(|p| p.into_inner()).finish()?)
            })
        }
    })
}

/// Frees a replay; NULL is a no-op. If another thread is inside a call on it, nothing is freed
/// and the result is `OMIUM_ERR_BUSY`.
///
/// # Safety
/// `replay` is NULL or a handle from `omium_store_open_replay` that was not freed.
#[no_mangle]
pub unsafe extern "C" fn omium_replay_free(replay: *mut omium_replay) -> omium_status {
    guard("omium_replay_free", || {
        // SAFETY: the caller's promise; `omium_replay` is a newtype of its handle.
        unsafe { guard::free(replay, "replay") }
    })
}

/// Reads the store's event feed (`docs/operations.md`): the changes written after the cursor
/// `since` (0: from the first), oldest first, at most `limit` (0: 1000), and writes
/// `{"events": [CloudEvent, ...], "cursor": N}` into `*out_json`. `types_json` (NULL: every
/// type) is a JSON array of types or families (`["execution.failed", "failure.*"]`);
/// `execution_id` (NULL: all) keeps one execution's events. With `wait_ms` > 0 the call waits
/// up to that long for a first matching event when there is none yet (a follower's long poll;
/// at most 30000 through `omium_store_connect`). Store `cursor` and pass it as the next
/// `since`: nothing is lost and nothing before it comes again. An unknown type is
/// `OMIUM_ERR_INVALID_ARGUMENT` naming the known ones.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store (a waiting call blocks only its thread).
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated; `out_json`
/// is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_events(
    store: *mut omium_store,
    since: u64,
    limit: u32,
    types_json: *const c_char,
    execution_id: *const c_char,
    wait_ms: u32,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_events", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let types: Vec<String> = if types_json.is_null() {
            Vec::new()
        } else {
            let v = unsafe { json::arg(types_json, "types_json") }?;
            serde_json::from_value(v).map_err(|_| {
                Failure::argument("types_json", "is not a JSON array of strings".to_string())
            })?
        };
        let execution = unsafe { opt_str_arg(execution_id, "execution_id") }?.map(str::to_string);
        let filter = omium_core::events::EventFilter::new(types, execution)?;
        let limit = if limit == 0 { 1000 } else { limit as usize };
        let wait = std::time::Duration::from_millis(u64::from(wait_ms));
        let page = unsafe { with_store(store, |s| Ok(s.events(since, limit, &filter, wait)?)) }?;
        *out = json::buffer(&page);
        Ok(())
    })
}

/// An operator control of execution `execution_id`: `action` is `"pause"` or `"cancel"` (a run
/// that holds it stops at its next step boundary with `OMIUM_ERR_PAUSED` / `OMIUM_ERR_CANCELLED`;
/// otherwise at once), `"resume"` (a paused execution becomes resumable), `"retry"` (a failed
/// or cancelled one does) or `"delete"` (its data and the chunks no other checkpoint uses).
/// `reason` and `by` (NULL: `user@host`) go into the audit log. A store opened read-only asks
/// the process that holds the store to apply it (`docs/operations.md`). If `out_json` is not
/// NULL it receives `{"action", "execution", "result": "applied"|"requested", "status",
/// "erased"}`. A status that does not allow the control is `OMIUM_ERR_INVALID_STATE`.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated; `out_json`
/// is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_control(
    store: *mut omium_store,
    action: *const c_char,
    execution_id: *const c_char,
    reason: *const c_char,
    by: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_control", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { opt_out_arg(out_json, omium_buffer::EMPTY) };
        let action = unsafe { non_empty_str_arg(action, "action") }?;
        let action = omium_core::control::Action::parse(action)?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let reason = unsafe { opt_str_arg(reason, "reason") }?.map(str::to_string);
        let by = unsafe { opt_str_arg(by, "by") }?.map(str::to_string);
        let request = omium_core::control::Request::new(action, id, reason, by);
        let reply = unsafe { with_store(store, |s| Ok(s.control(&request)?)) }?;
        if let Some(out) = out {
            *out = json::buffer(&serde_json::to_value(&reply).expect("replies serialize"));
        }
        Ok(())
    })
}

/// Resumes execution `execution_id` after a human looked at it: a paused execution (a policy's
/// `pause`, an operator's pause) or a failed one becomes resumable, and the next
/// `omium_store_begin` runs it after its last recorded step. `state` (NULL with `state_len` 0:
/// none) replaces the head's state first: the bytes a C host would have recorded for the head
/// step (in the execution's codec), kept as a new checkpoint so the history shows the edit. `by`
/// (NULL: none) names who resumed it in the audit log. If `out_failure_json` is not NULL it
/// receives the failure the resume settled (`null` when there was none).
///
/// Errors: `OMIUM_ERR_EXECUTION_NOT_FOUND`; `OMIUM_ERR_INVALID_STATE` for an execution that is
/// running or completed.
/// Ownership: the caller frees `*out_failure_json`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated; `state` is
/// NULL or readable for `state_len` bytes; `out_failure_json` is NULL or valid for writing an
/// `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_resume(
    store: *mut omium_store,
    execution_id: *const c_char,
    state: *const u8,
    state_len: usize,
    by: *const c_char,
    out_failure_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_resume", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { opt_out_arg(out_failure_json, omium_buffer::EMPTY) };
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let state = if state.is_null() && state_len == 0 {
            None
        } else {
            Some(unsafe { bytes_arg(state, state_len, "state") }?)
        };
        let by = unsafe { opt_str_arg(by, "by") }?;
        let failure = unsafe { with_store(store, |s| Ok(s.resume(id, state, by)?)) }?;
        if let Some(out) = out {
            *out = json::buffer(&failure.unwrap_or(serde_json::Value::Null));
        }
        Ok(())
    })
}

/// Evaluates alert rules once now (`docs/operations.md`, "Alert rules"): `rules` is the rules
/// document (YAML or JSON text). Sends the notices of what changed (Slack, PagerDuty, email,
/// signed webhooks) and writes the transitions into `*out_json` as a JSON array of `{"rule",
/// "group", "status", "repeat", "value", "delivered"}`. A C program calls it on its own
/// schedule (every `evaluate_every`); the alerts' state is kept in the store, so each breach
/// fires once. A document with a problem is `OMIUM_ERR_INVALID_ARGUMENT` naming its line and
/// column. Not through `omium_store_connect`: the daemon evaluates its own (`--alerts FILE`).
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread; evaluations of one store are serialized.
///
/// # Safety
/// `store` is NULL or an open store handle; `rules` is NULL or NUL-terminated; `out_json` is
/// NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_evaluate_alerts(
    store: *mut omium_store,
    rules: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_evaluate_alerts", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let text = unsafe { str_arg(rules, "rules") }?;
        let t = unsafe { with_store(store, |s| Ok(s.evaluate_alerts(text, None)?)) }?;
        *out = json::buffer(&t);
        Ok(())
    })
}

/// The alerts that are pending or firing: `{"state": {"alerts": {...}, "evaluated_ms"},
/// "rules"}` into `*out_json` (also through `omium_store_connect`: the daemon's alerts).
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; `out_json` is NULL or valid for writing an
/// `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_alerts(
    store: *mut omium_store,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_alerts", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let v = unsafe { with_store(store, |s| Ok(s.alerts()?)) }?;
        *out = json::buffer(&v);
        Ok(())
    })
}

/// Execution analytics (`docs/operations.md`): the figures of a window, optionally grouped,
/// written into `*out_json` as `{"since", "until", "by", "totals": {...}, "groups": [...]}`.
/// `query_json` (NULL: the last 24 hours) is a JSON object: `{"since": "7d" | "2026-11-01" |
/// ms, "until": ..., "by": ["workflow", "day"], "workflow": ..., "tenant": ..., "agent": ...,
/// "step": ...}`. A query that does not parse is `OMIUM_ERR_INVALID_ARGUMENT` naming the field.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `query_json` is NULL or NUL-terminated; `out_json`
/// is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_metrics(
    store: *mut omium_store,
    query_json: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_metrics", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let query = if query_json.is_null() {
            serde_json::Value::Null
        } else {
            unsafe { json::arg(query_json, "query_json") }?
        };
        let report = unsafe { with_store(store, |s| Ok(s.metrics(&query)?)) }?;
        *out = json::buffer(&report);
        Ok(())
    })
}
