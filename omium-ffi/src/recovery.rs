//! `omium_recovery`: what a C host does when a step fails — the core's recovery driver
//! (`omium_core::recovery::driver`), the one Python, Node and the workflow executor drive. The
//! host reports what it did as a JSON event and gets the next command as JSON; the core
//! decides, records every action, sends the policy's webhooks, settles the failure and names
//! the error that ends the step. The host only calls its own functions (the step again, a
//! fallback, a fixer, an analyzer, notifiers) and sleeps. Also here: the policy defaults in
//! force for a step (its timeout) and CEL conditions.

use std::ffi::c_char;

use omium_core::expr::Condition;
use omium_core::recovery::driver::{Analysis, Driver, Event};
use omium_core::FailureInput;
use parking_lot::Mutex;
use serde_json::Value;

use crate::buffer::omium_buffer;
use crate::error::{omium_status, status_of_code, Failure};
use crate::guard::{
    self, guard, non_empty_str_arg, opt_str_arg, out_arg, text_out_arg, write_text, Handle, Opaque,
};
use crate::json;
use crate::store::{omium_store, with_store, OMIUM_CHECKPOINT_ID_SIZE};

/// The handling of one failed step (opaque). Made by `omium_store_start_recovery`, driven by
/// `omium_recovery_advance`, released by `omium_recovery_free`.
///
/// Thread-safety: calls on one recovery from several threads are serialized (it is one
/// sequence of events); freeing it while another thread is inside a call on it fails with
/// `OMIUM_ERR_BUSY` and frees nothing.
pub struct omium_recovery(Handle<Mutex<Driver>>);

impl Opaque for omium_recovery {
    type Value = Mutex<Driver>;
    const KIND: &'static str = "recovery";
    const TAG: u64 = u64::from_le_bytes(*b"omRECOV\x01");
    const MADE_BY: &'static str = "omium_store_start_recovery";
    fn wrap(handle: Handle<Mutex<Driver>>) -> Self {
        omium_recovery(handle)
    }
    fn handle(&self) -> &Handle<Mutex<Driver>> {
        &self.0
    }
}

/// The policy defaults in force for step `step` of workflow `workflow` of tenant `tenant`
/// (NULL tenant: "default"; NULL workflow or step: the broader scope), the most specific scope
/// winning, as JSON: `{"defaults": {"step_timeout": "1500ms", "step_timeout_ms": 1500,
/// "tool_allowlist": [...], ...}, "layers": ["global v1", ...]}` (a default no scope sets is
/// absent). A C host enforces `step_timeout` around the step call and
/// reports a step that overran as a failure of kind `timeout_error`.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated;
/// `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_policy_defaults(
    store: *mut omium_store,
    tenant: *const c_char,
    workflow: *const c_char,
    step: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_policy_defaults", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let tenant = unsafe { opt_str_arg(tenant, "tenant") }?.unwrap_or("default");
        let workflow = unsafe { opt_str_arg(workflow, "workflow") }?;
        let step = unsafe { opt_str_arg(step, "step") }?;
        let v = unsafe { with_store(store, |s| Ok(s.policy_defaults(tenant, workflow, step)?)) }?;
        *out = json::buffer(&v);
        Ok(())
    })
}

/// Records that a step failed and starts handling the failure as the policy in force says.
///
/// `failure_json` is an object: `"execution_id"` (required), `"message"` (required: how the
/// failure reads, such as `"TimeoutError: the API did not answer"`), `"workflow"`, `"tenant"`
/// (default "default"), `"step"` (NULL: a tool call outside a step), `"seq"`, `"key"`,
/// `"agent"` (default "main"), `"kind"` (the trigger when the host knows it: `timeout_error`,
/// `postcondition_failed`, `consensus_violation`, `tool_denied`, ...; otherwise it is classified
/// from `"error_classes"` and the message), `"error_classes"` (the error's class names, most
/// derived first), `"retries"` (the step's own retry count, used when no policy rule applies),
/// `"rollbacks_so_far"` (rollbacks the policy already made in this run).
///
/// Then call `omium_recovery_advance` with `{"event": "start"}` and follow the commands.
///
/// Ownership: the caller frees `*out_recovery` with `omium_recovery_free`. Thread-safety: any
/// thread.
///
/// # Safety
/// `store` is NULL or an open store handle; `failure_json` is NULL or a NUL-terminated string;
/// `out_recovery` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn omium_store_start_recovery(
    store: *mut omium_store,
    failure_json: *const c_char,
    out_recovery: *mut *mut omium_recovery,
) -> omium_status {
    guard("omium_store_start_recovery", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_recovery, "out_recovery", std::ptr::null_mut()) }?;
        const SHAPE: &str = "{\"execution_id\", \"message\", \"step\", \"kind\", ...}";
        let arg = "failure_json";
        let m = unsafe { json::object_arg(failure_json, arg, SHAPE) }?;
        let required = |key: &str| {
            json::field::<String>(&m, arg, key, "a string")?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Failure::argument(arg, format!("lacks {key:?}; expected {SHAPE}")))
        };
        let kind = json::field::<String>(&m, arg, "kind", "a string")?
            .map(|k| omium_core::policy::Trigger::parse(&k))
            .transpose()
            .map_err(omium_core::Error::from)?;
        let error_classes =
            json::field::<Vec<String>>(&m, arg, "error_classes", "an array of strings")?
                .unwrap_or_default();
        let retries = u32::try_from(
            json::field::<u64>(&m, arg, "retries", "a non-negative integer")?.unwrap_or(0),
        )
        .map_err(|_| Failure::argument(arg, "has a \"retries\" too large"))?;
        let rollbacks = u32::try_from(
            json::field::<u64>(&m, arg, "rollbacks_so_far", "a non-negative integer")?.unwrap_or(0),
        )
        .map_err(|_| Failure::argument(arg, "has a \"rollbacks_so_far\" too large"))?;
        let input = FailureInput {
            execution_id: required("execution_id")?,
            message: required("message")?,
            workflow: json::field::<String>(&m, arg, "workflow", "a string")?.unwrap_or_default(),
            tenant: json::field::<String>(&m, arg, "tenant", "a string")?
                .unwrap_or_else(|| "default".into()),
            step: json::field::<String>(&m, arg, "step", "a string")?,
            seq: json::field::<u64>(&m, arg, "seq", "a non-negative integer")?,
            key: json::field::<String>(&m, arg, "key", "a string")?,
            agent: json::field::<String>(&m, arg, "agent", "a string")?
                .unwrap_or_else(|| "main".into()),
            kind,
            error_classes,
            step_retry: omium_core::recovery::step_retry(retries),
            rollbacks_so_far: rollbacks,
        };
        let driver = unsafe { with_store(store, |s| Ok(s.drive_recovery(input, retries)?)) }?;
        *out = <omium_recovery as Opaque>::into_raw(Mutex::new(driver));
        Ok(())
    })
}

/// Reports what the host did and writes the next command into `*out_command_json`.
///
/// `event_json` is `{"event": NAME, ...}`: `"start"` (first); `"called"` with `"ok": true`, or
/// `"ok": false`, `"note"` (how the call failed) and `"recoverable"` (false for an error a
/// policy must not handle, default true); `"fixed"` (`"ok"`, or `"note"`: why not);
/// `"analyzed"` (`"ok"` with `"root_cause"` and `"suggested_fix"`, or `"note"`); `"notified"`
/// (`"note"`: what failed, if anything); `"missing"` (no fallback, fixer or analyzer of the name
/// the last command gave).
///
/// The command is `{"name": NAME, "params": {...}}`: `"retry"` (`attempt`, `delay_ms`: sleep,
/// then call the step again and report `called`); `"call"` (call the step with the arguments the
/// fixer returned); `"fallback"` (`function`: call it, report `called` or `missing`); `"fix"`
/// (`fix`, `failure`: report `fixed` or `missing`); `"analyze"` (`failure`); `"notify"` (`event`,
/// `failure`, `channels`: call the host's notifiers; the core sends the webhooks itself);
/// `"return"` (the last call's value is the step's result: record it); `"reraise"` (the policy
/// gave up: fail with the last failure); `"raise"` (`code`, `status` — its `OMIUM_ERR_*` value
/// —, `message`, `failure`, and `reason` for `paused`, `to` for `rolled_back`, `channels` for
/// `escalated`: end the step with this error; for `rolled_back` call
/// `omium_store_rollback_as_decided` after freeing the run, then begin the execution again; for
/// `paused` call `omium_run_pause`). After `return`, `reraise` or `raise` the recovery has ended.
///
/// An event the recovery does not wait for is `OMIUM_ERR_INVALID_ARGUMENT` and changes nothing.
///
/// Ownership: the caller frees `*out_command_json` with `omium_buffer_free`. Thread-safety: any
/// thread (calls on one recovery are serialized).
///
/// # Safety
/// `recovery` is NULL or a recovery handle not freed; `event_json` is NULL or a NUL-terminated
/// string; `out_command_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_recovery_advance(
    recovery: *mut omium_recovery,
    event_json: *const c_char,
    out_command_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_recovery_advance", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_command_json, "out_command_json", omium_buffer::EMPTY) }?;
        let arg = "event_json";
        let m = unsafe {
            json::object_arg(event_json, arg, "{\"event\": \"start\" | \"called\" | ...}")
        }?;
        let name = json::field::<String>(&m, arg, "event", "a string")?.ok_or_else(|| {
            Failure::argument(
                arg,
                "lacks \"event\"; expected start, called, fixed, analyzed, notified or missing",
            )
        })?;
        let event = Event::from_parts(
            &name,
            json::field::<bool>(&m, arg, "ok", "true or false")?.unwrap_or(true),
            json::field::<String>(&m, arg, "note", "a string")?,
            json::field::<bool>(&m, arg, "recoverable", "true or false")?.unwrap_or(true),
            Analysis {
                root_cause: json::field::<String>(&m, arg, "root_cause", "a string")?,
                suggested_fix: json::field::<String>(&m, arg, "suggested_fix", "a string")?,
            },
        )?;
        let command = unsafe {
            guard::with(recovery, "recovery", |d: &Mutex<Driver>| {
                Ok(d.lock().advance(event)?)
            })
        }?;
        let mut params = command.params();
        if let Value::Object(p) = &mut params {
            p.remove("delay");
            if let Some(code) = p.get("code").and_then(Value::as_str) {
                let status = status_of_code(code);
                p.insert("status".into(), status.into());
            }
        }
        *out = json::buffer(&serde_json::json!({"name": command.name(), "params": params}));
        Ok(())
    })
}

/// Settles the failure as failed without acting on it (a denied tool call outside any step,
/// which no policy handles). The recovery has ended.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `recovery` is NULL or a recovery handle not freed.
#[no_mangle]
pub unsafe extern "C" fn omium_recovery_give_up(recovery: *mut omium_recovery) -> omium_status {
    guard("omium_recovery_give_up", || {
        // SAFETY: the caller's promise.
        unsafe {
            guard::with(recovery, "recovery", |d: &Mutex<Driver>| {
                Ok(d.lock().give_up()?)
            })
        }
    })
}

/// Frees a recovery. NULL is a no-op. A recovery freed before it ended leaves its failure open
/// (`omium recoveries` lists it; an operator can escalate it).
///
/// Thread-safety: any thread; `OMIUM_ERR_BUSY` while another thread is inside a call on it.
///
/// # Safety
/// `recovery` is NULL or a recovery handle not freed yet.
#[no_mangle]
pub unsafe extern "C" fn omium_recovery_free(recovery: *mut omium_recovery) -> omium_status {
    guard("omium_recovery_free", || {
        // SAFETY: the caller's promise.
        unsafe { guard::free(recovery, "recovery") }
    })
}

/// Carries out the rollback a recovery decided (a `raise` command with code `rolled_back`):
/// rolls execution `execution_id` back to `to` (the command's `to`: a checkpoint id, a step
/// name or "last_consistent"), the reason taken from `failure_json` (the command's `failure`).
/// When nothing consistent was recorded yet and the execution has no checkpoint, nothing is
/// rolled back and the execution simply runs again from its start: `*out_marker_id` is then
/// empty. Free the run first (a run of this store handle holds the execution).
///
/// `out_marker_id` (NULL: not wanted) needs room for `OMIUM_CHECKPOINT_ID_SIZE` bytes.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated;
/// `out_marker_id` is NULL or valid for writing `out_marker_id_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn omium_store_rollback_as_decided(
    store: *mut omium_store,
    execution_id: *const c_char,
    to: *const c_char,
    failure_json: *const c_char,
    out_marker_id: *mut c_char,
    out_marker_id_size: usize,
) -> omium_status {
    guard("omium_store_rollback_as_decided", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe {
            text_out_arg(
                out_marker_id,
                out_marker_id_size,
                "out_marker_id",
                OMIUM_CHECKPOINT_ID_SIZE,
                "OMIUM_CHECKPOINT_ID_SIZE",
            )
        }?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let to = unsafe { non_empty_str_arg(to, "to") }?;
        let failure = Value::Object(unsafe {
            json::object_arg(
                failure_json,
                "failure_json",
                "(the `failure` of the raise command)",
            )
        }?);
        let marker =
            unsafe { with_store(store, |s| Ok(s.rollback_as_decided(id, to, &failure)?)) }?;
        write_text(out, &marker.map(|m| m.id.to_string()).unwrap_or_default());
        Ok(())
    })
}

/// Evaluates the CEL condition `expression` (as `preconditions` and `postconditions` are
/// written in every binding: `args[0].amount > 0`, `result.verified == true`) over the
/// variables of `variables_json`, an object (`{"args": [...], "kwargs": {...}, "result": ...}`).
/// `*out_holds` is whether it holds. A condition that does not parse is
/// `OMIUM_ERR_CONDITION_SYNTAX`; one that cannot be evaluated (a missing field, a type error)
/// `OMIUM_ERR_CONDITION_ERROR`; one that is not true or false, `OMIUM_ERR_CONDITION_ERROR`.
/// Evaluation is bounded (expression size and depth) and runs nothing but CEL.
///
/// Thread-safety: any thread.
///
/// # Safety
/// The strings are NULL or NUL-terminated; `out_holds` is NULL or valid for writing a bool.
#[no_mangle]
pub unsafe extern "C" fn omium_condition_holds(
    expression: *const c_char,
    variables_json: *const c_char,
    out_holds: *mut bool,
) -> omium_status {
    guard("omium_condition_holds", || {
        // SAFETY (argument reads): the caller's promises.
        let holds = unsafe { out_arg(out_holds, "out_holds", false) }?;
        let expression = unsafe { non_empty_str_arg(expression, "expression") }?;
        let vars = unsafe { json::object_arg(variables_json, "variables_json", "of variables") }?;
        let vars: Vec<(String, Value)> = vars.into_iter().collect();
        let spec = |e| Failure::from(omium_core::Error::from(e));
        *holds = Condition::compile(expression)
            .and_then(|c| c.evaluate(&vars))
            .map_err(spec)?;
        Ok(())
    })
}
