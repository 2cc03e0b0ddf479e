//! Status codes, the thread's last error message, and the one place where core errors become
//! statuses (chosen by `omium_core::Error::code`, so C sees the same kinds as Python and the
//! CLI's `--json`).

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// The result of a call: `OMIUM_OK` (0) or one of the negative `OMIUM_ERR_*` values. On an
/// error, `omium_last_error()` says what happened, to what, and what to do.
#[allow(non_camel_case_types)]
pub type omium_status = i32;

/// Success.
pub const OMIUM_OK: omium_status = 0;
/// An argument is NULL, not UTF-8, empty, malformed (a checkpoint id that is not a ULID, an
/// unknown durability) or too small (an output buffer); the message names the argument.
pub const OMIUM_ERR_INVALID_ARGUMENT: omium_status = -1;
/// Another process (or another open handle in this process) is writing the store. Only one
/// writer per store: stop it, or open the store read-only.
pub const OMIUM_ERR_STORE_LOCKED: omium_status = -2;
/// No Omium store at the path (read-only opens do not create one), or its creation never
/// finished.
pub const OMIUM_ERR_STORE_NOT_FOUND: omium_status = -3;
/// The store or one of its records was written by a newer Omium.
pub const OMIUM_ERR_NEWER_FORMAT: omium_status = -4;
/// The directory is a RocksDB database but not an Omium store.
pub const OMIUM_ERR_NOT_A_STORE: omium_status = -5;
/// The store could not be opened for another reason (permissions, I/O); see the message.
pub const OMIUM_ERR_OPEN_FAILED: omium_status = -6;
/// RocksDB failed while reading or writing.
pub const OMIUM_ERR_STORAGE: omium_status = -7;
/// No execution with that id.
pub const OMIUM_ERR_EXECUTION_NOT_FOUND: omium_status = -8;
/// No checkpoint with that id (or, for a rollback target, with that name).
pub const OMIUM_ERR_CHECKPOINT_NOT_FOUND: omium_status = -9;
/// The checkpoint belongs to another execution than the one named.
pub const OMIUM_ERR_WRONG_EXECUTION: omium_status = -10;
/// A resumed run calls a different step at a recorded position than the run that recorded
/// it; the message names both steps.
pub const OMIUM_ERR_NON_DETERMINISM: omium_status = -11;
/// Stored bytes do not match their hashes; the message names the checkpoint and execution.
pub const OMIUM_ERR_INTEGRITY: omium_status = -12;
/// The execution is being run by another run of this store handle.
pub const OMIUM_ERR_EXECUTION_LEASED: omium_status = -13;
/// A stored record cannot be decoded.
pub const OMIUM_ERR_DECODE: omium_status = -14;
/// The store was opened read-only and the call needs the writer.
pub const OMIUM_ERR_READ_ONLY: omium_status = -15;
/// No checkpoint of the execution passed its checks and verified.
pub const OMIUM_ERR_NO_CONSISTENT_CHECKPOINT: omium_status = -16;
/// The execution is in a state that does not allow the call (a finished run, a rollback of
/// an execution that a run holds).
pub const OMIUM_ERR_INVALID_STATE: omium_status = -17;
/// A condition expression does not parse.
pub const OMIUM_ERR_CONDITION_SYNTAX: omium_status = -18;
/// A condition expression could not be evaluated.
pub const OMIUM_ERR_CONDITION_ERROR: omium_status = -19;
/// The handle is in use by another thread: a close or free while a call on the same handle
/// has not returned, or a call while the handle is being closed. Nothing was done; the handle
/// is still valid.
pub const OMIUM_ERR_BUSY: omium_status = -20;
/// Omium panicked (a bug: please report it with the message). The call did nothing
/// durable; the handle it was made on refuses further calls and should be closed or freed.
pub const OMIUM_ERR_PANIC: omium_status = -21;
/// No `omium serve` daemon answers at the URL of a store from `omium_store_connect` (it is not
/// running, or went away mid-call); the message names the URL. Start the daemon, or check the
/// URL, and call again.
pub const OMIUM_ERR_SERVER_UNAVAILABLE: omium_status = -22;
/// The `omium serve` daemon refused the call: it needs an API key, and the one given to
/// `omium_store_connect` (if any) is not one of its keys.
pub const OMIUM_ERR_UNAUTHORIZED: omium_status = -23;
/// The policy's tool allowlist does not allow the tool (`omium_store_check_tool`): do not
/// call it.
pub const OMIUM_ERR_TOOL_DENIED: omium_status = -24;
/// A replayed run made a request that differs from the recording, or one more or one fewer
/// than it recorded (`omium_replay_answer`, `omium_replay_finish`); the message shows both.
pub const OMIUM_ERR_REPLAY_DIVERGENCE: omium_status = -25;
/// A recovery policy document is invalid (`omium_store_apply_policy`); the message names the
/// line, column and what was expected. Nothing was stored.
pub const OMIUM_ERR_INVALID_POLICY: omium_status = -26;
/// The execution is paused: an operator's pause (`omium_store_control`) reached its run at a
/// step boundary (`omium_run_recorded`), or a recovery policy paused it. Nothing ran;
/// `omium resume` makes it resumable.
pub const OMIUM_ERR_PAUSED: omium_status = -27;
/// An operator cancelled the execution; its run stopped at a step boundary
/// (`omium_run_recorded`) and the step did not run. `omium retry` makes it resumable.
pub const OMIUM_ERR_CANCELLED: omium_status = -28;
/// The `omium serve` daemon knows the key given to `omium_store_connect`, but its roles or the
/// daemon's authorization policies do not allow the call (a reader key that writes).
pub const OMIUM_ERR_FORBIDDEN: omium_status = -29;
/// The key sent more requests than the daemon's rate limit allows; the message says after how
/// many seconds to call again.
pub const OMIUM_ERR_RATE_LIMITED: omium_status = -30;
/// A workflow spec is invalid; the message names the place.
pub const OMIUM_ERR_INVALID_WORKFLOW: omium_status = -31;
/// A workflow agent cannot run.
pub const OMIUM_ERR_AGENT_UNAVAILABLE: omium_status = -32;
/// A workflow step failed and its policy gave up.
pub const OMIUM_ERR_STEP_FAILED: omium_status = -33;
/// The recovery policy escalated the failure to a human (`omium_recovery_advance` says so
/// with a `raise` command of this code).
pub const OMIUM_ERR_ESCALATED: omium_status = -34;
/// The recovery policy rolled the execution back: call `omium_store_rollback_as_decided`
/// and begin the execution again.
pub const OMIUM_ERR_ROLLED_BACK: omium_status = -35;
/// The run was interrupted.
pub const OMIUM_ERR_INTERRUPTED: omium_status = -36;
/// A consensus message is invalid (not JSON, does not match its schema, no targets).
pub const OMIUM_ERR_INVALID_MESSAGE: omium_status = -37;
/// No consensus message has that id.
pub const OMIUM_ERR_MESSAGE_NOT_FOUND: omium_status = -38;
/// The agent is not a target of the consensus message.
pub const OMIUM_ERR_NOT_A_TARGET: omium_status = -39;
/// A consensus round timed out or its votes split.
pub const OMIUM_ERR_CONSENSUS_VIOLATION: omium_status = -40;
/// No consensus cluster answers.
pub const OMIUM_ERR_CONSENSUS_UNAVAILABLE: omium_status = -41;
/// The cluster has another branch or holder of the execution.
pub const OMIUM_ERR_SYNC_CONFLICT: omium_status = -42;
/// The cluster lacks chunks a push referenced; they are sent again.
pub const OMIUM_ERR_SYNC_INCOMPLETE: omium_status = -43;
/// Another store took the execution over; this run stops before its next step.
pub const OMIUM_ERR_LEASE_LOST: omium_status = -44;
/// A daemon or node answered with an error kind this build does not know.
pub const OMIUM_ERR_SERVER_ERROR: omium_status = -45;
/// An error kind this build of the C interface does not know (a newer core); see the message.
pub const OMIUM_ERR_UNKNOWN: omium_status = -99;

/// Every status and its name. The names of core errors are `Error::code()` values.
pub(crate) const STATUS_NAMES: [(omium_status, &CStr); 47] = [
    (OMIUM_OK, c"ok"),
    (OMIUM_ERR_INVALID_ARGUMENT, c"invalid_argument"),
    (OMIUM_ERR_STORE_LOCKED, c"store_locked"),
    (OMIUM_ERR_STORE_NOT_FOUND, c"store_not_found"),
    (OMIUM_ERR_NEWER_FORMAT, c"newer_format"),
    (OMIUM_ERR_NOT_A_STORE, c"not_a_store"),
    (OMIUM_ERR_OPEN_FAILED, c"open_failed"),
    (OMIUM_ERR_STORAGE, c"storage"),
    (OMIUM_ERR_EXECUTION_NOT_FOUND, c"execution_not_found"),
    (OMIUM_ERR_CHECKPOINT_NOT_FOUND, c"checkpoint_not_found"),
    (OMIUM_ERR_WRONG_EXECUTION, c"wrong_execution"),
    (OMIUM_ERR_NON_DETERMINISM, c"non_determinism"),
    (OMIUM_ERR_INTEGRITY, c"integrity"),
    (OMIUM_ERR_EXECUTION_LEASED, c"execution_leased"),
    (OMIUM_ERR_DECODE, c"decode"),
    (OMIUM_ERR_READ_ONLY, c"read_only"),
    (
        OMIUM_ERR_NO_CONSISTENT_CHECKPOINT,
        c"no_consistent_checkpoint",
    ),
    (OMIUM_ERR_INVALID_STATE, c"invalid_state"),
    (OMIUM_ERR_CONDITION_SYNTAX, c"condition_syntax"),
    (OMIUM_ERR_CONDITION_ERROR, c"condition_error"),
    (OMIUM_ERR_BUSY, c"busy"),
    (OMIUM_ERR_PANIC, c"panic"),
    (OMIUM_ERR_SERVER_UNAVAILABLE, c"server_unavailable"),
    (OMIUM_ERR_UNAUTHORIZED, c"unauthorized"),
    (OMIUM_ERR_TOOL_DENIED, c"tool_denied"),
    (OMIUM_ERR_REPLAY_DIVERGENCE, c"replay_divergence"),
    (OMIUM_ERR_INVALID_POLICY, c"invalid_policy"),
    (OMIUM_ERR_PAUSED, c"paused"),
    (OMIUM_ERR_CANCELLED, c"cancelled"),
    (OMIUM_ERR_FORBIDDEN, c"forbidden"),
    (OMIUM_ERR_RATE_LIMITED, c"rate_limited"),
    (OMIUM_ERR_INVALID_WORKFLOW, c"invalid_workflow"),
    (OMIUM_ERR_AGENT_UNAVAILABLE, c"agent_unavailable"),
    (OMIUM_ERR_STEP_FAILED, c"step_failed"),
    (OMIUM_ERR_ESCALATED, c"escalated"),
    (OMIUM_ERR_ROLLED_BACK, c"rolled_back"),
    (OMIUM_ERR_INTERRUPTED, c"interrupted"),
    (OMIUM_ERR_INVALID_MESSAGE, c"invalid_message"),
    (OMIUM_ERR_MESSAGE_NOT_FOUND, c"message_not_found"),
    (OMIUM_ERR_NOT_A_TARGET, c"not_a_target"),
    (OMIUM_ERR_CONSENSUS_VIOLATION, c"consensus_violation"),
    (OMIUM_ERR_CONSENSUS_UNAVAILABLE, c"consensus_unavailable"),
    (OMIUM_ERR_SYNC_CONFLICT, c"sync_conflict"),
    (OMIUM_ERR_SYNC_INCOMPLETE, c"sync_incomplete"),
    (OMIUM_ERR_LEASE_LOST, c"lease_lost"),
    (OMIUM_ERR_SERVER_ERROR, c"server_error"),
    (OMIUM_ERR_UNKNOWN, c"unknown"),
];

/// The status of a core error code (`Error::code()`).
pub(crate) fn status_of_code(code: &str) -> omium_status {
    STATUS_NAMES
        .iter()
        .find(|(_, name)| name.to_bytes() == code.as_bytes())
        .map(|(status, _)| *status)
        .unwrap_or(OMIUM_ERR_UNKNOWN)
}

/// A failed call: its status and what to tell the caller.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: omium_status,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: omium_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// `OMIUM_ERR_INVALID_ARGUMENT` naming the argument.
    pub(crate) fn argument(name: &str, problem: impl std::fmt::Display) -> Self {
        Failure::new(
            OMIUM_ERR_INVALID_ARGUMENT,
            format!("argument `{name}` {problem}"),
        )
    }
}

impl From<omium_core::Error> for Failure {
    fn from(e: omium_core::Error) -> Self {
        Failure::new(status_of_code(e.code()), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Replaces this thread's last error message.
pub(crate) fn set_last_error(message: String) {
    // A message quotes user input, which cannot hold NUL (it came as C strings), but a
    // message must never be lost to that.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

pub(crate) fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if !slot.as_bytes().is_empty() {
            *slot = CString::default();
        }
    });
}

/// The message of the last call on this thread that returned an error, or "" when the last
/// call succeeded. Every function that returns an `omium_status` sets it.
///
/// Never NULL. The string belongs to Omium: do not free it. It stays valid until the next
/// call of an Omium function that returns an `omium_status` on the same thread (copy it to
/// keep it longer). Each thread has its own.
#[no_mangle]
pub extern "C" fn omium_last_error() -> *const c_char {
    std::panic::catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
    .unwrap_or(c"".as_ptr())
}

/// The name of a status ("ok", "store_locked", "integrity", ...), as Python's error codes and
/// the CLI's `--json` errors spell it; "unknown" for a value that is no status.
///
/// Never NULL; a static string (do not free it). Any thread.
#[no_mangle]
pub extern "C" fn omium_status_name(status: omium_status) -> *const c_char {
    std::panic::catch_unwind(|| {
        STATUS_NAMES
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, name)| name.as_ptr())
            .unwrap_or(c"unknown".as_ptr())
    })
    .unwrap_or(c"unknown".as_ptr())
}
