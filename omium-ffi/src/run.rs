//! `omium_run`: a run of an execution — durable steps (reserve, recorded, record) and the end
//! of the run (complete, fail, free). It holds the core's `RunHandle`: a run in this process, or
//! one an `omium serve` daemon holds for it.

use std::ffi::c_char;

use omium_core::serve::RunHandle;
use omium_core::NewCheckpoint;

use crate::buffer::omium_buffer;
use crate::error::{omium_status, Failure};
use crate::guard::{
    self, bytes_arg, guard, non_empty_str_arg, opt_out_arg, opt_str_arg, out_arg, str_arg,
    text_out_arg, write_text, Handle, Opaque,
};
use crate::store::OMIUM_CHECKPOINT_ID_SIZE;

/// A run of an execution (opaque), made by `omium_store_begin`, released by `omium_run_free`.
/// It holds the execution: while it exists, no other run of the same store handle can begin
/// the execution, and it cannot be rolled back.
///
/// A durable step is three calls: `omium_run_reserve` gives the step its position;
/// `omium_run_recorded` says whether a previous run recorded that step (then use its state
/// and do not run the step again); otherwise run the step and `omium_run_record` its result.
///
/// Thread-safety: any number of threads may call functions on one run at the same time
/// (concurrent steps keep the order in which they reserved their positions). Freeing it while
/// another thread is inside a call on it fails with `OMIUM_ERR_BUSY` and frees nothing.
pub struct omium_run(Handle<HeldRun>);

/// A run as a handle holds it: freeing the handle releases a daemon's run on the daemon at once
/// (not when its lease expires), as dropping a run of this process releases it.
pub(crate) struct HeldRun(Option<RunHandle>);

impl std::ops::Deref for HeldRun {
    type Target = RunHandle;
    fn deref(&self) -> &RunHandle {
        self.0
            .as_ref()
            .expect("a run is held until the handle is freed")
    }
}

impl Drop for HeldRun {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.close();
        }
    }
}

impl Opaque for omium_run {
    type Value = HeldRun;
    const KIND: &'static str = "run";
    const TAG: u64 = u64::from_le_bytes(*b"omRUN\x00\x00\x01");
    const MADE_BY: &'static str = "omium_store_begin";
    fn wrap(handle: Handle<HeldRun>) -> Self {
        omium_run(handle)
    }
    fn handle(&self) -> &Handle<HeldRun> {
        &self.0
    }
}

/// Runs `f` with the run behind argument `run`.
///
/// # Safety
/// `ptr` is NULL or a run handle that was not freed.
unsafe fn with_run<R>(
    ptr: *const omium_run,
    f: impl FnOnce(&RunHandle) -> Result<R, Failure>,
) -> Result<R, Failure> {
    // SAFETY: forwarded promise.
    unsafe { guard::with(ptr, "run", |held: &HeldRun| f(held)) }
}

impl HeldRun {
    pub(crate) fn new(run: RunHandle) -> Self {
        HeldRun(Some(run))
    }
}

/// A position: a seq, or 0 with a key (a nested step's).
fn position_arg(seq: u64, key: Option<&str>) -> Result<u64, Failure> {
    match key {
        Some("") => Err(Failure::argument("key", "is empty; pass NULL for no key")),
        Some(_) => Ok(seq),
        None => seq_arg(seq),
    }
}

fn seq_arg(seq: u64) -> Result<u64, Failure> {
    if seq == 0 {
        return Err(Failure::argument(
            "seq",
            "is 0, which is no position; pass the value omium_run_reserve gave",
        ));
    }
    Ok(seq)
}

/// Takes the next position (`seq`, from 1) of the run's live branch for a step, into
/// `*out_seq`. Call it when the step is called, before `omium_run_recorded`; a resumed run
/// starts again at 1, so the same code reaches the same positions.
///
/// Thread-safety: any thread, concurrently with other calls on the run.
///
/// # Safety
/// `run` is NULL or a run handle not freed; `out_seq` is NULL or valid for writing.
#[no_mangle]
pub unsafe extern "C" fn omium_run_reserve(run: *mut omium_run, out_seq: *mut u64) -> omium_status {
    guard("omium_run_reserve", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_seq, "out_seq", 0) }?;
        *out = unsafe { with_run(run, |r| Ok(r.reserve()?)) }?;
        Ok(())
    })
}

/// The position of a step called now, as every binding positions steps: with `parent` NULL,
/// the next top-level position (`*out_seq`, as `omium_run_reserve`) and the step's own `key`
/// (NULL: none); with `parent` the position of the step whose body is running (its key, else
/// its seq in decimal), `*out_seq` is 0 and the key is `PARENT/N` — N counting that parent's
/// children in call order — or `PARENT/KEY` when `key` is given. If `out_key` is not NULL it
/// receives the key (NUL-terminated text; `{NULL, 0}` when there is none). Pass both to
/// `omium_run_recorded_at` and `omium_run_record_at`.
///
/// Ownership: the caller frees `*out_key` with `omium_buffer_free`. Thread-safety: any thread.
///
/// # Safety
/// `run` is NULL or a run handle not freed; the strings are NULL or NUL-terminated; `out_seq`
/// is NULL or valid for writing; `out_key` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_run_position(
    run: *mut omium_run,
    parent: *const c_char,
    key: *const c_char,
    out_seq: *mut u64,
    out_key: *mut omium_buffer,
) -> omium_status {
    guard("omium_run_position", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_seq, "out_seq", 0) }?;
        let key_out = unsafe { opt_out_arg(out_key, omium_buffer::EMPTY) };
        let parent = unsafe { opt_str_arg(parent, "parent") }?;
        let key = unsafe { opt_str_arg(key, "key") }?;
        let (seq, key) = unsafe { with_run(run, |r| Ok(r.position(parent, key)?)) }?;
        *out = seq;
        if let (Some(o), Some(k)) = (key_out, key) {
            *o = omium_buffer::from_vec(k.into_bytes());
        }
        Ok(())
    })
}

/// Looks up the step `name` at position `seq` in the journal of recorded steps. If a previous
/// run recorded it, `*out_found` is true and, when `out_state` is not NULL, `*out_state`
/// receives its state bytes (verified: corrupt bytes are `OMIUM_ERR_INTEGRITY` naming the
/// checkpoint); do not run the step again. Otherwise `*out_found` is false and `*out_state`
/// is `{NULL, 0}`: run the step, then `omium_run_record` it.
///
/// A different step name recorded at that position is `OMIUM_ERR_NON_DETERMINISM`, naming
/// both: the code changed since the run was recorded.
///
/// Ownership: the caller frees `*out_state` with `omium_buffer_free`. Thread-safety: any
/// thread, concurrently with other calls on the run.
///
/// # Safety
/// `run` is NULL or a run handle not freed; `name` is NULL or a NUL-terminated string;
/// `out_found` is NULL or valid for writing a bool; `out_state` is NULL or valid for writing
/// an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_run_recorded(
    run: *mut omium_run,
    seq: u64,
    name: *const c_char,
    out_found: *mut bool,
    out_state: *mut omium_buffer,
) -> omium_status {
    guard("omium_run_recorded", || unsafe {
        // SAFETY: the caller's promises, passed on.
        recorded(run, seq, std::ptr::null(), name, out_found, out_state)
    })
}

/// `omium_run_recorded` at a position with a key (from `omium_run_position`): a step nested in
/// another step (`seq` 0 and a key such as "3/0"), or a step with a key of its own. `key` NULL
/// is `omium_run_recorded`.
///
/// # Safety
/// As `omium_run_recorded`; `key` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn omium_run_recorded_at(
    run: *mut omium_run,
    seq: u64,
    key: *const c_char,
    name: *const c_char,
    out_found: *mut bool,
    out_state: *mut omium_buffer,
) -> omium_status {
    guard("omium_run_recorded_at", || unsafe {
        // SAFETY: the caller's promises, passed on.
        recorded(run, seq, key, name, out_found, out_state)
    })
}

/// The body of `omium_run_recorded` and `omium_run_recorded_at`.
///
/// # Safety
/// As `omium_run_recorded_at`.
unsafe fn recorded(
    run: *mut omium_run,
    seq: u64,
    key: *const c_char,
    name: *const c_char,
    out_found: *mut bool,
    out_state: *mut omium_buffer,
) -> Result<(), Failure> {
    // SAFETY (argument reads): the caller's promises.
    let found = unsafe { out_arg(out_found, "out_found", false) }?;
    let state_out = unsafe { opt_out_arg(out_state, omium_buffer::EMPTY) };
    let name = unsafe { non_empty_str_arg(name, "name") }?;
    let key = unsafe { opt_str_arg(key, "key") }?;
    let seq = position_arg(seq, key)?;
    let state = unsafe {
        with_run(run, |r| match r {
            // The journal lookup is in memory; the state is read only when asked for.
            RunHandle::Local(l) => match l.recorded(seq, name, key)? {
                None => Ok(None),
                Some(c) if state_out.is_some() => Ok(Some(Some(l.read_state(&c)?))),
                Some(_) => Ok(Some(None)),
            },
            // A daemon answers with the state in the same call.
            remote => Ok(remote
                .recorded(seq, name, key)?
                .map(|(_, state)| Some(state))),
        })
    }?;
    if let Some(state) = state {
        *found = true;
        if let (Some(out), Some(bytes)) = (state_out, state) {
            *out = omium_buffer::from_vec(bytes);
        }
    }
    Ok(())
}

/// Records the result of step `name` at position `seq` (from `omium_run_reserve`): its state
/// is the `state_len` bytes at `state` (`state` may be NULL only when `state_len` is 0). The
/// checkpoint, its content-addressed chunks, the execution's new head and an audit entry are
/// written atomically; with "sync" durability they are on disk when the call returns.
///
/// If `out_checkpoint_id` is not NULL it receives the new checkpoint's id (NUL-terminated); it
/// must have room for `OMIUM_CHECKPOINT_ID_SIZE` bytes (`out_checkpoint_id_size`), or the call
/// fails with `OMIUM_ERR_INVALID_ARGUMENT` before recording anything.
///
/// Errors: `OMIUM_ERR_INVALID_STATE` after `omium_run_complete` or `omium_run_fail`.
/// Thread-safety: any thread, concurrently with other calls on the run.
///
/// # Safety
/// `run` is NULL or a run handle not freed; `name` is NULL or a NUL-terminated string;
/// `state` is NULL or points to `state_len` readable bytes; `out_checkpoint_id` is NULL or
/// valid for writing `out_checkpoint_id_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn omium_run_record(
    run: *mut omium_run,
    seq: u64,
    name: *const c_char,
    state: *const u8,
    state_len: usize,
    out_checkpoint_id: *mut c_char,
    out_checkpoint_id_size: usize,
) -> omium_status {
    guard("omium_run_record", || unsafe {
        // SAFETY: the caller's promises, passed on.
        record(
            run,
            seq,
            std::ptr::null(),
            name,
            state,
            state_len,
            std::ptr::null(),
            out_checkpoint_id,
            out_checkpoint_id_size,
        )
    })
}

/// `omium_run_record` with metadata: `metadata_json` (NULL: none) is a JSON object of string
/// values kept with the checkpoint — for example `{"omium.codec": "json"}`, which names the
/// encoding of the state so that `omium show`, `omium checkpoint --value` and every binding
/// decode it (`json` or `msgpack`). Anything else than an object of strings is
/// `OMIUM_ERR_INVALID_ARGUMENT` naming the key, before anything is recorded.
///
/// Errors, ownership and thread-safety as `omium_run_record`.
///
/// # Safety
/// As `omium_run_record`; `metadata_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn omium_run_record_with_metadata(
    run: *mut omium_run,
    seq: u64,
    name: *const c_char,
    state: *const u8,
    state_len: usize,
    metadata_json: *const c_char,
    out_checkpoint_id: *mut c_char,
    out_checkpoint_id_size: usize,
) -> omium_status {
    guard("omium_run_record_with_metadata", || unsafe {
        // SAFETY: the caller's promises, passed on.
        record(
            run,
            seq,
            std::ptr::null(),
            name,
            state,
            state_len,
            metadata_json,
            out_checkpoint_id,
            out_checkpoint_id_size,
        )
    })
}

/// `omium_run_record_with_metadata` at a position with a key (from `omium_run_position`): a
/// step nested in another (`seq` 0, key "3/0"), or a step with a key of its own. `key` NULL is
/// `omium_run_record_with_metadata`.
///
/// # Safety
/// As `omium_run_record_with_metadata`; `key` is NULL or a NUL-terminated string.
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn omium_run_record_at(
    run: *mut omium_run,
    seq: u64,
    key: *const c_char,
    name: *const c_char,
    state: *const u8,
    state_len: usize,
    metadata_json: *const c_char,
    out_checkpoint_id: *mut c_char,
    out_checkpoint_id_size: usize,
) -> omium_status {
    guard("omium_run_record_at", || unsafe {
        // SAFETY: the caller's promises, passed on.
        record(
            run,
            seq,
            key,
            name,
            state,
            state_len,
            metadata_json,
            out_checkpoint_id,
            out_checkpoint_id_size,
        )
    })
}

/// The body of `omium_run_record`, `omium_run_record_with_metadata` and `omium_run_record_at`.
///
/// # Safety
/// As `omium_run_record_at`.
#[allow(clippy::too_many_arguments)]
unsafe fn record(
    run: *mut omium_run,
    seq: u64,
    key: *const c_char,
    name: *const c_char,
    state: *const u8,
    state_len: usize,
    metadata_json: *const c_char,
    out_checkpoint_id: *mut c_char,
    out_checkpoint_id_size: usize,
) -> Result<(), Failure> {
    // SAFETY (argument reads): the caller's promises.
    let out = unsafe {
        text_out_arg(
            out_checkpoint_id,
            out_checkpoint_id_size,
            "out_checkpoint_id",
            OMIUM_CHECKPOINT_ID_SIZE,
            "OMIUM_CHECKPOINT_ID_SIZE",
        )
    }?;
    let name = unsafe { non_empty_str_arg(name, "name") }?;
    let state = unsafe { bytes_arg(state, state_len, "state") }?;
    let metadata = match unsafe { opt_str_arg(metadata_json, "metadata_json") }? {
        None => Default::default(),
        Some(text) => metadata_arg(text)?,
    };
    let key = unsafe { opt_str_arg(key, "key") }?;
    let seq = position_arg(seq, key)?;
    let c = unsafe {
        with_run(run, |r| {
            Ok(r.record(
                seq,
                NewCheckpoint {
                    name,
                    key,
                    state,
                    metadata,
                    ..NewCheckpoint::default()
                },
            )?)
        })
    }?;
    write_text(out, &c);
    Ok(())
}

/// A checkpoint's metadata from JSON text: an object of strings.
fn metadata_arg(text: &str) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    let bad = |detail: String| Failure::argument("metadata_json", &detail);
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("is not JSON: {e}")))?;
    let serde_json::Value::Object(m) = v else {
        return Err(bad(format!("must be a JSON object of strings, not {v}")));
    };
    m.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            other => Err(bad(format!(
                "has {other} for {k:?}; values must be strings"
            ))),
        })
        .collect()
}

/// Marks the execution completed, with the `output_len` bytes at `output` as its output
/// (`output` NULL and `output_len` 0: no output), and releases it. The run handle must still
/// be freed with `omium_run_free`; it records nothing more.
///
/// Thread-safety: any thread, concurrently with other calls on the run.
///
/// # Safety
/// `run` is NULL or a run handle not freed; `output` is NULL or points to `output_len`
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn omium_run_complete(
    run: *mut omium_run,
    output: *const u8,
    output_len: usize,
) -> omium_status {
    guard("omium_run_complete", || {
        // SAFETY (argument reads): the caller's promises.
        let output = if output.is_null() && output_len == 0 {
            None
        } else {
            Some(unsafe { bytes_arg(output, output_len, "output") }?)
        };
        unsafe { with_run(run, |r| Ok(r.complete(output)?)) }
    })
}

/// Marks the execution failed with the message `error` and releases it. Beginning the
/// execution again resumes it after its last recorded step. The run handle must still be freed
/// with `omium_run_free`.
///
/// Thread-safety: any thread, concurrently with other calls on the run.
///
/// # Safety
/// `run` is NULL or a run handle not freed; `error` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn omium_run_fail(run: *mut omium_run, error: *const c_char) -> omium_status {
    guard("omium_run_fail", || {
        // SAFETY (argument reads): the caller's promises.
        let error = unsafe { str_arg(error, "error") }?;
        unsafe { with_run(run, |r| Ok(r.fail(error)?)) }
    })
}

/// Marks the execution paused with `reason` and releases it: it waits for a human
/// (`omium resume`, or `omium_store_control(store, "resume", ...)`) before it can be begun again
/// (`OMIUM_ERR_INVALID_STATE` until then). A recovery policy's `pause` reaches the host as a `raise`
/// command of code `paused` (`omium_recovery_advance`); the host ends the step with this call.
/// The run handle must still be freed with `omium_run_free`.
///
/// Thread-safety: any thread, concurrently with other calls on the run.
///
/// # Safety
/// `run` is NULL or a run handle not freed; `reason` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn omium_run_pause(
    run: *mut omium_run,
    reason: *const c_char,
) -> omium_status {
    guard("omium_run_pause", || {
        // SAFETY (argument reads): the caller's promises.
        let reason = unsafe { str_arg(reason, "reason") }?;
        unsafe { with_run(run, |r| Ok(r.pause(reason)?)) }
    })
}

/// Frees a run handle. NULL is a no-op (`OMIUM_OK`). A run freed without
/// `omium_run_complete` or `omium_run_fail` leaves its execution resumable, exactly as if the
/// process had died there: beginning it again replays the recorded steps. A run of a store from
/// `omium_store_connect` is released on the daemon here (if the daemon is gone, there is nothing
/// to release and the result is still `OMIUM_OK`).
///
/// If another thread is inside a call on this run, nothing is freed and the result is
/// `OMIUM_ERR_BUSY`. After `OMIUM_OK` the pointer is dangling: using or freeing it again is
/// undefined behaviour (often, not always, detected as `OMIUM_ERR_INVALID_ARGUMENT`).
///
/// # Safety
/// `run` is NULL or a handle from `omium_store_begin` that was not freed.
#[no_mangle]
pub unsafe extern "C" fn omium_run_free(run: *mut omium_run) -> omium_status {
    guard("omium_run_free", || {
        // SAFETY: the caller's promise; `omium_run` is a newtype of its handle.
        unsafe { guard::free(run, "run") }
    })
}
