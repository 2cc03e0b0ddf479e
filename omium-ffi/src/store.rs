//! `omium_store`: opening and closing a store, connecting to an `omium serve` daemon, and what
//! a store handle can do — begin a run, read checkpoints and their state, history, rollback,
//! verify. A handle holds the core's `StoreHandle`: the same calls, with the same results, on a
//! store opened in this process or on a daemon's.

use std::ffi::c_char;

use omium_core::serve::{Client, StoreHandle};
use omium_core::{AuditHead, BeginOptions, Durability, OpenOptions, RollbackTarget, Store};

use crate::buffer::omium_buffer;
use crate::error::{omium_status, Failure};
use crate::guard::{
    self, bytes_arg, guard, non_empty_str_arg, opt_out_arg, opt_str_arg, out_arg, text_out_arg,
    write_text, Handle, Opaque,
};
use crate::json;
use crate::run::omium_run;

/// A checkpoint id is a 26-character ULID; buffers that receive one need this many bytes,
/// the NUL included.
pub const OMIUM_CHECKPOINT_ID_SIZE: usize = 27;

/// An open store (opaque). Made by `omium_store_open` or `omium_store_open_read_only` (a store
/// in this process) or `omium_store_connect` (the store an `omium serve` daemon owns),
/// released by `omium_store_close`. Every function taking an `omium_store` works on either.
///
/// Thread-safety: any number of threads may call functions on one store handle at the same
/// time (writes of concurrent threads share fsyncs). Closing it while another thread is inside
/// a call on it fails with `OMIUM_ERR_BUSY` and closes nothing.
pub struct omium_store(Handle<StoreHandle>);

impl Opaque for omium_store {
    type Value = StoreHandle;
    const KIND: &'static str = "store";
    const TAG: u64 = u64::from_le_bytes(*b"omSTORE\x01");
    const MADE_BY: &'static str = "omium_store_open";
    fn wrap(handle: Handle<StoreHandle>) -> Self {
        omium_store(handle)
    }
    fn handle(&self) -> &Handle<StoreHandle> {
        &self.0
    }
}

/// Runs `f` with the store behind argument `store`.
///
/// # Safety
/// `ptr` is NULL or a store handle that was not closed.
pub(crate) unsafe fn with_store<R>(
    ptr: *const omium_store,
    f: impl FnOnce(&StoreHandle) -> Result<R, Failure>,
) -> Result<R, Failure> {
    // SAFETY: forwarded promise.
    unsafe { guard::with(ptr, "store", f) }
}

/// Opens the store in directory `path` for writing, creating it if it does not exist.
///
/// `durability` is "sync" (the default when NULL: each write is fsynced before the call
/// returns; concurrent writers share fsyncs), "buffered" (survives a crash of the process, not
/// of the machine) or "none" (for tests). On success `*out_store` is the new handle; on error
/// it is NULL.
///
/// Only one handle, in one process, can write a store: a second open fails with
/// `OMIUM_ERR_STORE_LOCKED` (open it read-only instead).
///
/// Ownership: the caller owns the handle and releases it with `omium_store_close`.
/// Thread-safety: any thread.
///
/// # Safety
/// `path` and `durability` are NULL or NUL-terminated strings; `out_store` is NULL or valid
/// for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn omium_store_open(
    path: *const c_char,
    durability: *const c_char,
    out_store: *mut *mut omium_store,
) -> omium_status {
    guard("omium_store_open", || {
        // SAFETY (all argument reads below): the caller's promises above.
        let out = unsafe { out_arg(out_store, "out_store", std::ptr::null_mut()) }?;
        let path = unsafe { non_empty_str_arg(path, "path") }?;
        let durability = match unsafe { opt_str_arg(durability, "durability") }? {
            None => Durability::Sync,
            Some(d) => Durability::parse(d).map_err(|_| {
                Failure::argument(
                    "durability",
                    format!(
                        "is {d:?}; expected \"sync\", \"buffered\" or \"none\" (NULL: \"sync\")"
                    ),
                )
            })?,
        };
        let store = Store::open_with(
            path,
            OpenOptions {
                durability,
                ..OpenOptions::default()
            },
        )?;
        *out = <omium_store as Opaque>::into_raw(StoreHandle::Local(store));
        Ok(())
    })
}

/// Connects to the `omium serve` daemon at `url` — `"unix:///path/to/omium.sock"` (or a bare
/// absolute socket path) or `"http://127.0.0.1:7700"` — and makes a store handle on the store it
/// owns. Several processes share that store this way (a store directory has one writer: the
/// daemon); an execution still runs in one run at a time, whichever process holds it. Every
/// function taking an `omium_store` works on the handle, with the same results as on a store
/// opened in this process.
///
/// `api_key` (NULL: none) is sent as a bearer token; a daemon listening on an address other than
/// loopback requires one of its keys (`omium serve --api-key`).
///
/// Errors: `OMIUM_ERR_INVALID_ARGUMENT` for a URL of another scheme or an empty `api_key`;
/// `OMIUM_ERR_SERVER_UNAVAILABLE` when no daemon answers at `url` (the message names it).
/// A wrong or missing key is found by the first call that needs one
/// (`OMIUM_ERR_UNAUTHORIZED`). On success `*out_store` is the new handle; on error it is NULL.
///
/// Ownership: the caller owns the handle and releases it with `omium_store_close` (which
/// closes the connections, not the daemon's store). Thread-safety: any thread.
///
/// # Safety
/// `url` and `api_key` are NULL or NUL-terminated strings; `out_store` is NULL or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn omium_store_connect(
    url: *const c_char,
    api_key: *const c_char,
    out_store: *mut *mut omium_store,
) -> omium_status {
    guard("omium_store_connect", || {
        // SAFETY (all argument reads below): the caller's promises above.
        let out = unsafe { out_arg(out_store, "out_store", std::ptr::null_mut()) }?;
        let url = unsafe { non_empty_str_arg(url, "url") }?;
        let api_key = match unsafe { opt_str_arg(api_key, "api_key") }? {
            Some("") => {
                return Err(Failure::argument(
                    "api_key",
                    "is an empty string; pass the daemon's key, or NULL for none",
                ))
            }
            k => k,
        };
        let client = Client::connect(url, api_key)?;
        *out = <omium_store as Opaque>::into_raw(StoreHandle::Remote(client));
        Ok(())
    })
}

/// Opens an existing store read-only (a RocksDB secondary): works while another process
/// writes the store; `omium_store_refresh` catches up with that writer. Calls that write
/// return `OMIUM_ERR_READ_ONLY`. A missing store is `OMIUM_ERR_STORE_NOT_FOUND`; nothing is
/// created.
///
/// Ownership and thread-safety as for `omium_store_open`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out_store` is NULL or valid for writing a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn omium_store_open_read_only(
    path: *const c_char,
    out_store: *mut *mut omium_store,
) -> omium_status {
    guard("omium_store_open_read_only", || {
        // SAFETY: the caller's promises.
        let out = unsafe { out_arg(out_store, "out_store", std::ptr::null_mut()) }?;
        let path = unsafe { non_empty_str_arg(path, "path") }?;
        *out = <omium_store as Opaque>::into_raw(StoreHandle::Local(Store::open_read_only(path)?));
        Ok(())
    })
}

/// Closes a store handle. NULL is a no-op (`OMIUM_OK`).
///
/// Runs begun on this store stay usable and keep the database open until they are freed; the
/// store is fully closed (and can be opened again) when the handle and all its runs are gone.
/// For a handle from `omium_store_connect` this closes the connections (runs keep theirs);
/// the daemon and its store go on.
/// If another thread is inside a call on this handle, nothing is closed and the result is
/// `OMIUM_ERR_BUSY`: close it after that call returns. After `OMIUM_OK` the pointer is
/// dangling: using or closing it again is undefined behaviour (Omium detects many such
/// mistakes as `OMIUM_ERR_INVALID_ARGUMENT`, but cannot detect all).
///
/// # Safety
/// `store` is NULL or a handle from `omium_store_open*` or `omium_store_connect` that was not
/// closed.
#[no_mangle]
pub unsafe extern "C" fn omium_store_close(store: *mut omium_store) -> omium_status {
    guard("omium_store_close", || {
        // SAFETY: the caller's promise; `omium_store` is a newtype of its handle.
        unsafe { guard::free(store, "store") }
    })
}

/// Catches a read-only store up with the writer's latest changes; does nothing for a writer or
/// a store from `omium_store_connect` (the daemon is the writer: its answers are always
/// current).
///
/// Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle.
#[no_mangle]
pub unsafe extern "C" fn omium_store_refresh(store: *mut omium_store) -> omium_status {
    guard("omium_store_refresh", || unsafe {
        // SAFETY: the caller's promise.
        with_store(store, |s| match s {
            StoreHandle::Local(s) => Ok(s.refresh()?),
            StoreHandle::Remote(_) => Ok(()),
        })
    })
}

/// Begins a run of execution `execution_id` (any non-empty UTF-8 id you choose, such as
/// "cust-42"), or resumes it: the first begin creates the execution; a later begin with the
/// same id replays the steps recorded on its live branch (`omium_run_recorded` finds them) and
/// continues after them. `workflow` (NULL: "") names the workflow on first begin.
///
/// One run per execution at a time in a store handle: beginning an execution that a run not
/// yet freed holds is `OMIUM_ERR_EXECUTION_LEASED`; on a store from `omium_store_connect`, a
/// run of any process connected to the daemon counts (a run of a process that died is dropped
/// by the daemon, so its execution can be begun again). A read-only store gives
/// `OMIUM_ERR_READ_ONLY`.
///
/// Ownership: `*out_run` (NULL on error) is owned by the caller; release it with
/// `omium_run_free`. Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `execution_id` and `workflow` are NULL or
/// NUL-terminated strings; `out_run` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn omium_store_begin(
    store: *mut omium_store,
    execution_id: *const c_char,
    workflow: *const c_char,
    out_run: *mut *mut omium_run,
) -> omium_status {
    guard("omium_store_begin", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_run, "out_run", std::ptr::null_mut()) }?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let workflow = unsafe { opt_str_arg(workflow, "workflow") }?.unwrap_or("");
        let run = unsafe {
            with_store(store, |s| {
                Ok(s.begin(
                    id,
                    BeginOptions {
                        workflow: workflow.into(),
                        ..BeginOptions::default()
                    },
                )?)
            })
        }?;
        *out = <omium_run as Opaque>::into_raw(crate::run::HeldRun::new(run));
        Ok(())
    })
}

/// `omium_store_begin` with options: `options_json` (NULL: none) is an object of `"workflow"`,
/// `"tenant"` (default "default"), `"agent"` (recorded on checkpoints that name none, default
/// "main"), `"labels"` (an object of strings; `{"omium.codec": "json"}` tells every binding and
/// `omium show` how the states decode), `"durability"` ("sync", "buffered" or "none": this run's
/// writes) and `"lease_ttl_ms"`. `input` (`input_len` bytes; NULL with 0: none) is stored as the
/// execution's input on first begin (a resumed execution keeps its original input; replays and
/// forks at a step read it).
///
/// Errors as `omium_store_begin`; a bad option is `OMIUM_ERR_INVALID_ARGUMENT` naming it.
/// Ownership and thread-safety as `omium_store_begin`.
///
/// # Safety
/// As `omium_store_begin`; `options_json` is NULL or a NUL-terminated string; `input` is NULL
/// or readable for `input_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn omium_store_begin_with(
    store: *mut omium_store,
    execution_id: *const c_char,
    options_json: *const c_char,
    input: *const u8,
    input_len: usize,
    out_run: *mut *mut omium_run,
) -> omium_status {
    guard("omium_store_begin_with", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_run, "out_run", std::ptr::null_mut()) }?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let text = unsafe { opt_str_arg(options_json, "options_json") }?.unwrap_or("{}");
        let mut options: BeginOptions = serde_json::from_str::<BeginJson>(text)
            .map_err(|e| {
                Failure::argument(
                    "options_json",
                    format!(
                        "is not begin options ({e}); expected {{\"workflow\", \"tenant\", \"agent\", \
                         \"labels\": {{...}}, \"durability\", \"lease_ttl_ms\"}}"
                    ),
                )
            })?
            .into_options()?;
        if !(input.is_null() && input_len == 0) {
            options.input = Some(unsafe { bytes_arg(input, input_len, "input") }?.to_vec());
        }
        let run = unsafe { with_store(store, |s| Ok(s.begin(id, options)?)) }?;
        *out = <omium_run as Opaque>::into_raw(crate::run::HeldRun::new(run));
        Ok(())
    })
}

/// The options of `omium_store_begin_with`, as C writes them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BeginJson {
    #[serde(default)]
    workflow: String,
    tenant: Option<String>,
    agent: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    durability: Option<String>,
    lease_ttl_ms: Option<u64>,
}

impl BeginJson {
    fn into_options(self) -> Result<BeginOptions, Failure> {
        let mut o = BeginOptions {
            workflow: self.workflow,
            labels: self.labels,
            ..BeginOptions::default()
        };
        if let Some(t) = self.tenant {
            o.tenant = t;
        }
        if let Some(a) = self.agent {
            o.agent = a;
        }
        if let Some(d) = self.durability {
            o.durability = Some(Durability::parse(&d).map_err(|_| {
                Failure::argument(
                    "options_json",
                    format!(
                        "has \"durability\" = {d:?}; expected \"sync\", \"buffered\" or \"none\""
                    ),
                )
            })?);
        }
        if let Some(ms) = self.lease_ttl_ms {
            o.lease_ttl = std::time::Duration::from_millis(ms);
        }
        Ok(o)
    }
}

/// Writes the execution `execution_id` as a JSON object into `*out_json`: `id`, `workflow`,
/// `tenant`, `status` ("pending", "running", "paused", "completed", "failed", "cancelled"),
/// `head` (checkpoint id or null), `error`, `attempts`, `lease_owner`,
/// `lease_expires_at_ms`, `labels`, `checkpoint_count`, `has_input`, `has_output`,
/// `created_at_ms`, `updated_at_ms`. Unknown id: `OMIUM_ERR_EXECUTION_NOT_FOUND`.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free` (it is `{NULL, 0}` on
/// error). Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `execution_id` is NULL or a NUL-terminated
/// string; `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_execution(
    store: *mut omium_store,
    execution_id: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_execution", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let v = unsafe { with_store(store, |s| Ok(json::execution(&s.execution(id)?))) }?;
        *out = json::buffer(&v);
        Ok(())
    })
}

/// The output the execution was completed with (`omium_run_complete`): `*out_found` is true
/// and `*out_output` receives the bytes when it has one; `*out_found` is false and
/// `*out_output` is `{NULL, 0}` when it has none (not completed, or completed without output).
/// Unknown id: `OMIUM_ERR_EXECUTION_NOT_FOUND`.
///
/// Ownership: the caller frees `*out_output` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `execution_id` is NULL or a NUL-terminated
/// string; `out_found` is NULL or valid for writing a bool; `out_output` is NULL or valid for
/// writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_execution_output(
    store: *mut omium_store,
    execution_id: *const c_char,
    out_found: *mut bool,
    out_output: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_execution_output", || {
        // SAFETY (argument reads): the caller's promises.
        let found = unsafe { out_arg(out_found, "out_found", false) }?;
        let out = unsafe { out_arg(out_output, "out_output", omium_buffer::EMPTY) }?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let output = unsafe { with_store(store, |s| Ok(s.execution_output(id)?)) }?;
        if let Some(bytes) = output {
            *found = true;
            *out = omium_buffer::from_vec(bytes);
        }
        Ok(())
    })
}

/// Writes, as a JSON array of executions (fields as in `omium_store_execution`), the
/// executions a re-run would resume: left running by a process that died, or rolled back since
/// they last ran. Begin each with its id to resume it.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `out_json` is NULL or valid for writing an
/// `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_resumable(
    store: *mut omium_store,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_resumable", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let v = unsafe { with_store(store, |s| Ok(json::executions(&s.resumable()?))) }?;
        *out = json::buffer(&v);
        Ok(())
    })
}

/// Writes the metadata of checkpoint `checkpoint_id` (a 26-character ULID, of any execution)
/// as a JSON object into `*out_json`: `id`, `execution_id`, `agent`, `name`, `kind` ("step",
/// "snapshot", "fork", "rollback"), `parent`, `seq`, `global_seq`, `key`, `checksum` (blake3,
/// hex), `raw_size`, `stored_size`, `storage` ("inline" or "chunked"), `chunks`,
/// `checks_passed`, `checks`, `metadata`, `created_at_ms`. The state bytes are not included:
/// `omium_store_read_state` reads them.
///
/// Errors: `OMIUM_ERR_INVALID_ARGUMENT` for an id that is not a ULID,
/// `OMIUM_ERR_CHECKPOINT_NOT_FOUND` for an unknown one.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `checkpoint_id` is NULL or a NUL-terminated
/// string; `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_checkpoint(
    store: *mut omium_store,
    checkpoint_id: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_checkpoint", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let id = unsafe { non_empty_str_arg(checkpoint_id, "checkpoint_id") }?;
        let v = unsafe { with_store(store, |s| Ok(json::checkpoint(&s.checkpoint(id)?))) }?;
        *out = json::buffer(&v);
        Ok(())
    })
}

/// Reads the state bytes of checkpoint `checkpoint_id` into `*out_state`, verifying every
/// chunk hash and the whole-state checksum: corrupt or missing bytes are
/// `OMIUM_ERR_INTEGRITY` with a message naming the checkpoint and its execution, never wrong
/// bytes.
///
/// Ownership: the caller frees `*out_state` with `omium_buffer_free` (it is `{NULL, 0}` on
/// error). Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `checkpoint_id` is NULL or a NUL-terminated
/// string; `out_state` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_read_state(
    store: *mut omium_store,
    checkpoint_id: *const c_char,
    out_state: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_read_state", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_state, "out_state", omium_buffer::EMPTY) }?;
        let id = unsafe { non_empty_str_arg(checkpoint_id, "checkpoint_id") }?;
        let bytes = unsafe { with_store(store, |s| Ok(s.read_state(id)?)) }?;
        *out = omium_buffer::from_vec(bytes);
        Ok(())
    })
}

/// Writes the live branch of execution `execution_id` — its checkpoints from the first to the
/// head, rollback markers included — as a JSON array of checkpoints (fields as in
/// `omium_store_checkpoint`) into `*out_json`. Unknown id: `OMIUM_ERR_EXECUTION_NOT_FOUND`.
///
/// Ownership: the caller frees `*out_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `execution_id` is NULL or a NUL-terminated
/// string; `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_history(
    store: *mut omium_store,
    execution_id: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_history", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_json, "out_json", omium_buffer::EMPTY) }?;
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        let v = unsafe { with_store(store, |s| Ok(json::checkpoints(&s.history(id)?))) }?;
        *out = json::buffer(&v);
        Ok(())
    })
}

/// Rolls execution `execution_id` back to `target`: a checkpoint id (a ULID) or a step name
/// (the latest checkpoint with that name, on the live branch if it has one); NULL: the last
/// consistent checkpoint (the latest that passed its checks and verifies;
/// `OMIUM_ERR_NO_CONSISTENT_CHECKPOINT` when there is none). The head moves
/// back through a new rollback marker, the execution becomes "pending", and the steps after
/// the target run again when it is next begun; the abandoned branch stays readable by id.
/// `reason` (NULL: none) is kept in the marker's metadata.
///
/// If `out_marker_id` is not NULL it receives the marker's checkpoint id; it must have room for
/// `OMIUM_CHECKPOINT_ID_SIZE` bytes (`out_marker_id_size`), or the call fails with
/// `OMIUM_ERR_INVALID_ARGUMENT` before doing anything.
///
/// Errors: `OMIUM_ERR_CHECKPOINT_NOT_FOUND` (no such id or name),
/// `OMIUM_ERR_WRONG_EXECUTION` (the id is another execution's), `OMIUM_ERR_INVALID_STATE`
/// (a run of this store handle holds the execution: free it first), `OMIUM_ERR_READ_ONLY`.
///
/// Thread-safety: any thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated;
/// `out_marker_id` is NULL or valid for writing `out_marker_id_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn omium_store_rollback(
    store: *mut omium_store,
    execution_id: *const c_char,
    target: *const c_char,
    reason: *const c_char,
    out_marker_id: *mut c_char,
    out_marker_id_size: usize,
) -> omium_status {
    guard("omium_store_rollback", || {
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
        let target = match unsafe { opt_str_arg(target, "target") }? {
            None => RollbackTarget::LastConsistent,
            Some("") => {
                return Err(Failure::argument(
                    "target",
                    "is empty; pass a checkpoint id or name, or NULL for the last consistent checkpoint",
                ))
            }
            Some(t) => RollbackTarget::parse(t),
        };
        let reason = unsafe { opt_str_arg(reason, "reason") }?;
        let marker = unsafe { with_store(store, |s| Ok(s.rollback(id, &target, reason)?)) }?;
        write_text(out, &marker.id.to_string());
        Ok(())
    })
}

/// Verifies the store — or only execution `execution_id` when it is not NULL: recomputes
/// every checksum and checks the tree links and the audit chain, reporting every problem.
///
/// `*out_ok` is true when nothing is wrong. A corrupt store is not an error of the call: the
/// status is `OMIUM_OK` and `*out_ok` false. If `out_report_json` is not NULL it receives
/// `{"ok", "executions", "checkpoints", "problems": [{"execution", "checkpoint", "error"}],
/// "audit": {"entries", "problems": [...], "head": {"seq", "hash"} or null}}`; each problem
/// names its checkpoint.
///
/// Ownership: the caller frees `*out_report_json` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the store.
///
/// # Safety
/// `store` is NULL or an open store handle; `execution_id` is NULL or a NUL-terminated
/// string; `out_ok` is NULL or valid for writing a bool; `out_report_json` is NULL or valid
/// for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_verify(
    store: *mut omium_store,
    execution_id: *const c_char,
    out_ok: *mut bool,
    out_report_json: *mut omium_buffer,
) -> omium_status {
    // SAFETY: the caller's promises, forwarded.
    unsafe {
        verify(
            "omium_store_verify",
            store,
            execution_id,
            None,
            out_ok,
            out_report_json,
        )
    }
}

/// `omium_store_verify`, and that the audit chain still holds `expect_head`: a head
/// (`"SEQ:HASH"`) that `omium_store_audit_head` returned earlier and that was kept where this
/// store's owner cannot rewrite it. A tail cut off after that entry, or a chain rewritten at or
/// before it, makes `*out_ok` false with a problem that says which. A malformed `expect_head` is
/// `OMIUM_ERR_INVALID_ARGUMENT`.
///
/// Ownership and thread-safety as `omium_store_verify`.
///
/// # Safety
/// As `omium_store_verify`; `expect_head` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn omium_store_verify_head(
    store: *mut omium_store,
    execution_id: *const c_char,
    expect_head: *const c_char,
    out_ok: *mut bool,
    out_report_json: *mut omium_buffer,
) -> omium_status {
    // SAFETY: the caller's promises, forwarded.
    unsafe {
        verify(
            "omium_store_verify_head",
            store,
            execution_id,
            Some(expect_head),
            out_ok,
            out_report_json,
        )
    }
}

/// The body of `omium_store_verify` and (with `expect_head`) `omium_store_verify_head`.
///
/// # Safety
/// As `omium_store_verify_head`.
unsafe fn verify(
    name: &'static str,
    store: *mut omium_store,
    execution_id: *const c_char,
    expect_head: Option<*const c_char>,
    out_ok: *mut bool,
    out_report_json: *mut omium_buffer,
) -> omium_status {
    guard(name, || {
        // SAFETY (argument reads): the caller's promises.
        let ok = unsafe { out_arg(out_ok, "out_ok", false) }?;
        let report_out = unsafe { opt_out_arg(out_report_json, omium_buffer::EMPTY) };
        let id = unsafe { opt_str_arg(execution_id, "execution_id") }?;
        let head: Option<AuditHead> = match expect_head {
            Some(h) => Some(unsafe { non_empty_str_arg(h, "expect_head") }?.parse()?),
            None => None,
        };
        let report = unsafe { with_store(store, |s| Ok(s.verify(id, head.as_ref())?)) }?;
        *ok = report.ok();
        if let Some(out) = report_out {
            *out = json::buffer(&json::verify_report(&report));
        }
        Ok(())
    })
}

/// The audit chain's head, its last entry, as `"SEQ:HASH"` text (an empty buffer when nothing
/// was audited yet). Keep it outside the store (a ticket, a log system) and pass it to
/// `omium_store_verify_head` later to prove that nothing up to it was cut off or rewritten.
///
/// Ownership: the caller frees `*out_head` with `omium_buffer_free`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; `out_head` is NULL or valid for writing an
/// `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_audit_head(
    store: *mut omium_store,
    out_head: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_audit_head", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_head, "out_head", omium_buffer::EMPTY) }?;
        let head = unsafe { with_store(store, |s| Ok(s.audit_head()?)) }?;
        *out = omium_buffer::from_vec(head.map(|h| h.to_string()).unwrap_or_default().into_bytes());
        Ok(())
    })
}
