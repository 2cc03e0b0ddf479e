//! The C interface called as C calls it: through the `extern "C"` functions, with raw
//! pointers, NULLs, bad UTF-8, too-small buffers, unknown ids, a locked store, a corrupt chunk,
//! handles in use by another thread, and a panic.

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr::{null, null_mut};

use serde_json::{json, Value};

use crate::error::Failure;
use crate::guard::{self, guard, Opaque};
use crate::*;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(omium_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn name_of(status: omium_status) -> &'static str {
    unsafe { CStr::from_ptr(omium_status_name(status)) }
        .to_str()
        .unwrap()
}

/// Asserts `status` is `OMIUM_OK`, showing the last error otherwise.
#[track_caller]
fn ok(status: omium_status) {
    assert_eq!(status, OMIUM_OK, "[{}] {}", name_of(status), last_error());
    assert_eq!(last_error(), "", "a successful call clears the last error");
}

/// Asserts `status` and that the last error starts with `prefix` and contains `parts`.
#[track_caller]
fn fails(status: omium_status, expected: omium_status, prefix: &str, parts: &[&str]) {
    let msg = last_error();
    assert_eq!(
        status,
        expected,
        "expected {}, got {} ({msg})",
        name_of(expected),
        name_of(status)
    );
    assert!(
        msg.starts_with(prefix),
        "{msg:?} should start with {prefix:?}"
    );
    for p in parts {
        assert!(msg.contains(p), "{msg:?} should contain {p:?}");
    }
}

/// Takes a JSON buffer: parses it, checks the trailing NUL, frees it.
fn take_json(b: &mut omium_buffer) -> Value {
    assert!(!b.data.is_null());
    let bytes = unsafe { b.as_slice() }.to_vec();
    assert_eq!(unsafe { *b.data.add(b.len) }, 0, "buffers end with a NUL");
    unsafe { omium_buffer_free(b) };
    assert!(b.data.is_null() && b.len == 0);
    serde_json::from_slice(&bytes).unwrap()
}

fn take_bytes(b: &mut omium_buffer) -> Vec<u8> {
    let v = unsafe { b.as_slice() }.to_vec();
    unsafe { omium_buffer_free(b) };
    v
}

fn open(dir: &Path) -> *mut omium_store {
    let mut s = null_mut();
    let path = cs(dir.to_str().unwrap());
    ok(unsafe { omium_store_open(path.as_ptr(), c"buffered".as_ptr(), &mut s) });
    assert!(!s.is_null());
    s
}

fn begin(store: *mut omium_store, id: &str) -> *mut omium_run {
    let mut r = null_mut();
    let id = cs(id);
    ok(unsafe { omium_store_begin(store, id.as_ptr(), c"onboarding".as_ptr(), &mut r) });
    r
}

/// One durable step as a C program writes it; returns the state and whether it was replayed.
fn step(run: *mut omium_run, name: &str, state: &[u8]) -> (Vec<u8>, bool) {
    let name = cs(name);
    let mut seq = 0;
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    let mut found = false;
    let mut buf = omium_buffer::EMPTY;
    ok(unsafe { omium_run_recorded(run, seq, name.as_ptr(), &mut found, &mut buf) });
    if found {
        return (take_bytes(&mut buf), true);
    }
    assert!(buf.data.is_null());
    ok(unsafe {
        omium_run_record(
            run,
            seq,
            name.as_ptr(),
            state.as_ptr(),
            state.len(),
            null_mut(),
            0,
        )
    });
    (state.to_vec(), false)
}

fn record(run: *mut omium_run, name: &str, state: &[u8]) -> String {
    let name = cs(name);
    let mut seq = 0;
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    let mut id = [0 as c_char; OMIUM_CHECKPOINT_ID_SIZE];
    ok(unsafe {
        omium_run_record(
            run,
            seq,
            name.as_ptr(),
            state.as_ptr(),
            state.len(),
            id.as_mut_ptr(),
            id.len(),
        )
    });
    unsafe { CStr::from_ptr(id.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn history(store: *mut omium_store, id: &str) -> Vec<Value> {
    let id = cs(id);
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_store_history(store, id.as_ptr(), &mut b) });
    take_json(&mut b).as_array().unwrap().clone()
}

fn names(h: &[Value]) -> Vec<String> {
    h.iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn execution(store: *mut omium_store, id: &str) -> Value {
    let id = cs(id);
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_store_execution(store, id.as_ptr(), &mut b) });
    take_json(&mut b)
}

#[test]
fn statuses_mirror_the_core_error_codes() {
    // Every code of the core's error table has its own status (a new code fails here).
    for code in omium_core::ErrorCode::ALL.iter().map(|c| c.as_str()) {
        let s = crate::error::status_of_code(code);
        assert!(s < 0 && s != OMIUM_ERR_UNKNOWN, "{code}");
        assert_eq!(name_of(s), code);
    }
    let mut seen = std::collections::HashSet::new();
    for (s, _) in crate::error::STATUS_NAMES {
        assert!(seen.insert(s), "status {s} twice");
    }
    assert_eq!(name_of(OMIUM_OK), "ok");
    assert_eq!(name_of(OMIUM_ERR_BUSY), "busy");
    assert_eq!(name_of(12345), "unknown");
    assert_eq!(
        crate::error::status_of_code("from_the_future"),
        OMIUM_ERR_UNKNOWN
    );
    let v = unsafe { CStr::from_ptr(omium_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_run_records_steps_and_a_resumed_run_replays_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = begin(store, "cust-42");
    let kyc = record(run, "kyc_doc_validated", b"verified");
    assert_eq!(kyc.len(), 26);
    assert_eq!(step(run, "credit_score", b"712"), (b"712".to_vec(), false));
    // Dropped without complete: as if the process died here.
    ok(unsafe { omium_run_free(run) });
    assert_eq!(execution(store, "cust-42")["status"], "running");

    let run = begin(store, "cust-42");
    assert_eq!(
        step(run, "kyc_doc_validated", b"other"),
        (b"verified".to_vec(), true)
    );
    assert_eq!(step(run, "credit_score", b"other"), (b"712".to_vec(), true));
    assert_eq!(step(run, "offer", b""), (vec![], false), "an empty state");
    ok(unsafe { omium_run_complete(run, b"done".as_ptr(), 4) });
    ok(unsafe { omium_run_free(run) });

    let e = execution(store, "cust-42");
    assert_eq!(e["status"], "completed");
    assert_eq!(e["attempts"], 2);
    assert_eq!(e["workflow"], "onboarding");
    assert_eq!(e["has_output"], true);
    let h = history(store, "cust-42");
    assert_eq!(names(&h), ["kyc_doc_validated", "credit_score", "offer"]);
    assert_eq!(h[0]["id"], kyc.as_str());
    assert_eq!(h[1]["parent"], kyc.as_str());
    assert_eq!(h[1]["seq"], 2);
    assert_eq!(h[1]["kind"], "step");

    // One checkpoint: its metadata and its state.
    let id = cs(&kyc);
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_store_checkpoint(store, id.as_ptr(), &mut b) });
    let c = take_json(&mut b);
    assert_eq!(c["name"], "kyc_doc_validated");
    assert_eq!(c["execution_id"], "cust-42");
    assert_eq!(c["raw_size"], 8);
    assert_eq!(c["storage"], "inline");
    assert_eq!(c["checksum"].as_str().unwrap().len(), 64);
    ok(unsafe { omium_store_read_state(store, id.as_ptr(), &mut b) });
    assert_eq!(take_bytes(&mut b), b"verified");

    let mut verified = false;
    ok(unsafe { omium_store_verify(store, null(), &mut verified, &mut b) });
    assert!(verified);
    let report = take_json(&mut b);
    assert_eq!(report["ok"], true);
    assert_eq!(report["checkpoints"], 3);
    assert!(report["audit"]["entries"].as_u64().unwrap() >= 5);

    // Roll back to the KYC step by name: the later steps run again on the next begin.
    let mut marker = [0 as c_char; OMIUM_CHECKPOINT_ID_SIZE];
    ok(unsafe {
        omium_store_rollback(
            store,
            c"cust-42".as_ptr(),
            c"kyc_doc_validated".as_ptr(),
            c"bad score".as_ptr(),
            marker.as_mut_ptr(),
            marker.len(),
        )
    });
    let marker = unsafe { CStr::from_ptr(marker.as_ptr()) }.to_str().unwrap();
    let h = history(store, "cust-42");
    assert_eq!(
        names(&h),
        ["kyc_doc_validated", "rollback to kyc_doc_validated"]
    );
    assert_eq!(h[1]["id"], marker);
    assert_eq!(h[1]["metadata"]["reason"], "bad score");
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_store_resumable(store, &mut b) });
    let resumable = take_json(&mut b);
    assert_eq!(resumable[0]["id"], "cust-42");
    assert_eq!(resumable[0]["status"], "pending");

    let run = begin(store, "cust-42");
    assert!(step(run, "kyc_doc_validated", b"x").1, "replayed");
    assert!(
        !step(run, "credit_score", b"640").1,
        "runs again after the rollback"
    );
    ok(unsafe { omium_run_fail(run, c"credit bureau down".as_ptr()) });
    ok(unsafe { omium_run_free(run) });
    let e = execution(store, "cust-42");
    assert_eq!(e["status"], "failed");
    assert_eq!(e["error"], "credit bureau down");

    // Rolling back to an id works as well as to a name.
    ok(unsafe {
        omium_store_rollback(
            store,
            c"cust-42".as_ptr(),
            id.as_ptr(),
            null(),
            null_mut(),
            0,
        )
    });
    let h = history(store, "cust-42");
    assert_eq!(h.last().unwrap()["parent"], kyc.as_str());
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn null_pointers_are_invalid_arguments_naming_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let path = cs(dir.path().join("s").to_str().unwrap());
    let mut s = null_mut();
    let bad = OMIUM_ERR_INVALID_ARGUMENT;
    fails(
        unsafe { omium_store_open(null(), null(), &mut s) },
        bad,
        "omium_store_open: argument `path` is NULL",
        &["NUL-terminated UTF-8 string"],
    );
    assert!(s.is_null());
    fails(
        unsafe { omium_store_open(path.as_ptr(), null(), null_mut()) },
        bad,
        "omium_store_open: argument `out_store` is NULL",
        &[],
    );
    assert!(!dir.path().join("s").exists(), "nothing was created");
    fails(
        unsafe { omium_store_open_read_only(null(), &mut s) },
        bad,
        "omium_store_open_read_only: argument `path` is NULL",
        &[],
    );

    // Calls on a NULL handle.
    let mut b = omium_buffer::EMPTY;
    fails(
        unsafe { omium_store_history(null_mut(), c"x".as_ptr(), &mut b) },
        bad,
        "omium_store_history: argument `store` is NULL; pass a store handle from omium_store_open",
        &[],
    );
    let mut r = null_mut();
    fails(
        unsafe { omium_store_begin(null_mut(), c"x".as_ptr(), null(), &mut r) },
        bad,
        "omium_store_begin: argument `store` is NULL",
        &[],
    );
    let mut seq = 7;
    fails(
        unsafe { omium_run_reserve(null_mut(), &mut seq) },
        bad,
        "omium_run_reserve: argument `run` is NULL; pass a run handle from omium_store_begin",
        &[],
    );
    assert_eq!(seq, 0, "outputs are reset even when the call fails");
    let mut found = true;
    fails(
        unsafe { omium_run_recorded(null_mut(), 1, c"a".as_ptr(), &mut found, &mut b) },
        bad,
        "omium_run_recorded: argument `run` is NULL",
        &[],
    );
    assert!(!found);
    fails(
        unsafe { omium_run_record(null_mut(), 1, c"a".as_ptr(), null(), 0, null_mut(), 0) },
        bad,
        "omium_run_record: argument `run` is NULL",
        &[],
    );
    fails(
        unsafe { omium_run_complete(null_mut(), null(), 0) },
        bad,
        "omium_run_complete: argument `run` is NULL",
        &[],
    );
    fails(
        unsafe { omium_run_fail(null_mut(), c"e".as_ptr()) },
        bad,
        "omium_run_fail: argument `run` is NULL",
        &[],
    );
    fails(
        unsafe { omium_store_verify(null_mut(), null(), null_mut(), null_mut()) },
        bad,
        "omium_store_verify: argument `out_ok` is NULL",
        &[],
    );

    // Frees and closes accept NULL.
    ok(unsafe { omium_store_close(null_mut()) });
    ok(unsafe { omium_run_free(null_mut()) });
    unsafe { omium_buffer_free(null_mut()) };
    let mut empty = omium_buffer::EMPTY;
    unsafe { omium_buffer_free(&mut empty) };

    // NULL arguments on a live store and run.
    let store = open(&dir.path().join("live"));
    fails(
        unsafe { omium_store_begin(store, null(), null(), &mut r) },
        bad,
        "omium_store_begin: argument `execution_id` is NULL",
        &[],
    );
    fails(
        unsafe { omium_store_begin(store, c"".as_ptr(), null(), &mut r) },
        bad,
        "omium_store_begin: argument `execution_id` is an empty string",
        &[],
    );
    fails(
        unsafe { omium_store_checkpoint(store, null(), &mut b) },
        bad,
        "omium_store_checkpoint: argument `checkpoint_id` is NULL",
        &[],
    );
    fails(
        unsafe {
            omium_store_read_state(store, c"01J9Z3W4K5M6N7P8Q9R0S1T2V3".as_ptr(), null_mut())
        },
        bad,
        "omium_store_read_state: argument `out_state` is NULL",
        &[],
    );
    let run = begin(store, "e");
    fails(
        unsafe { omium_run_recorded(run, 1, null(), &mut found, null_mut()) },
        bad,
        "omium_run_recorded: argument `name` is NULL",
        &[],
    );
    fails(
        unsafe { omium_run_record(run, 1, c"a".as_ptr(), null(), 3, null_mut(), 0) },
        bad,
        "omium_run_record: argument `state` is NULL with a length of 3",
        &[],
    );
    fails(
        unsafe { omium_run_record(run, 0, c"a".as_ptr(), null(), 0, null_mut(), 0) },
        bad,
        "omium_run_record: argument `seq` is 0",
        &["omium_run_reserve"],
    );
    fails(
        unsafe { omium_run_complete(run, null(), 5) },
        bad,
        "omium_run_complete: argument `output` is NULL with a length of 5",
        &[],
    );
    fails(
        unsafe { omium_run_fail(run, null()) },
        bad,
        "omium_run_fail: argument `error` is NULL",
        &[],
    );
    assert!(history(store, "e").is_empty(), "nothing was recorded");
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn bad_utf8_and_bad_values_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let bad_utf8 = CString::new(vec![b'c', b'u', 0xff, b'x']).unwrap();
    let mut s = null_mut();
    fails(
        unsafe { omium_store_open(bad_utf8.as_ptr(), null(), &mut s) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_open: argument `path` is not valid UTF-8 (invalid byte at offset 2)",
        &[],
    );
    let path = cs(dir.path().to_str().unwrap());
    fails(
        unsafe { omium_store_open(path.as_ptr(), c"fast".as_ptr(), &mut s) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_open: argument `durability` is \"fast\"; expected \"sync\", \"buffered\" or \"none\"",
        &[],
    );
    assert!(s.is_null());
    fails(
        unsafe { omium_store_open(c"".as_ptr(), null(), &mut s) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_open: argument `path` is an empty string",
        &[],
    );

    let store = open(dir.path());
    let mut r = null_mut();
    fails(
        unsafe { omium_store_begin(store, bad_utf8.as_ptr(), null(), &mut r) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_begin: argument `execution_id` is not valid UTF-8",
        &[],
    );
    fails(
        unsafe { omium_store_begin(store, c"e".as_ptr(), bad_utf8.as_ptr(), &mut r) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_begin: argument `workflow` is not valid UTF-8",
        &[],
    );
    let mut b = omium_buffer::EMPTY;
    fails(
        unsafe { omium_store_execution(store, c"e".as_ptr(), &mut b) },
        OMIUM_ERR_EXECUTION_NOT_FOUND,
        "omium_store_execution: unknown execution \"e\"",
        &[],
    );
    let run = begin(store, "e");
    let mut seq = 0;
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    assert_eq!(seq, 1);
    fails(
        unsafe { omium_run_record(run, seq, bad_utf8.as_ptr(), null(), 0, null_mut(), 0) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_run_record: argument `name` is not valid UTF-8",
        &[],
    );

    // A too-small id buffer: an error before anything is recorded, and the buffer is "".
    let mut small = [b'x' as c_char; 10];
    fails(
        unsafe {
            omium_run_record(
                run,
                seq,
                c"kyc".as_ptr(),
                b"v".as_ptr(),
                1,
                small.as_mut_ptr(),
                small.len(),
            )
        },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_run_record: argument `out_checkpoint_id` has 10 bytes, too small: it needs \
         OMIUM_CHECKPOINT_ID_SIZE (27) bytes",
        &["nothing was done"],
    );
    assert_eq!(small[0], 0);
    assert!(history(store, "e").is_empty());
    fails(
        unsafe {
            omium_store_rollback(
                store,
                c"e".as_ptr(),
                c"kyc".as_ptr(),
                null(),
                small.as_mut_ptr(),
                26,
            )
        },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_rollback: argument `out_marker_id` has 26 bytes, too small",
        &[],
    );
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn unknown_ids_and_wrong_states_have_their_own_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = omium_buffer::EMPTY;
    fails(
        unsafe { omium_store_checkpoint(store, c"not-an-id".as_ptr(), &mut b) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_checkpoint: invalid checkpoint id: \"not-an-id\" is not a checkpoint id",
        &[],
    );
    assert!(b.data.is_null());
    fails(
        unsafe { omium_store_read_state(store, c"01J9Z3W4K5M6N7P8Q9R0S1T2V3".as_ptr(), &mut b) },
        OMIUM_ERR_CHECKPOINT_NOT_FOUND,
        "omium_store_read_state: unknown checkpoint 01J9Z3W4K5M6N7P8Q9R0S1T2V3",
        &[],
    );
    fails(
        unsafe { omium_store_history(store, c"nobody".as_ptr(), &mut b) },
        OMIUM_ERR_EXECUTION_NOT_FOUND,
        "omium_store_history: unknown execution \"nobody\"",
        &[],
    );
    let mut verified = true;
    fails(
        unsafe { omium_store_verify(store, c"nobody".as_ptr(), &mut verified, &mut b) },
        OMIUM_ERR_EXECUTION_NOT_FOUND,
        "omium_store_verify: unknown execution",
        &[],
    );
    assert!(!verified);

    let run = begin(store, "cust-1");
    record(run, "kyc", b"ok");
    // A second run of an execution that a run holds.
    let mut r2 = null_mut();
    fails(
        unsafe { omium_store_begin(store, c"cust-1".as_ptr(), null(), &mut r2) },
        OMIUM_ERR_EXECUTION_LEASED,
        "omium_store_begin: execution \"cust-1\" is being run by",
        &[],
    );
    assert!(r2.is_null());
    fails(
        unsafe {
            omium_store_rollback(
                store,
                c"cust-1".as_ptr(),
                c"kyc".as_ptr(),
                null(),
                null_mut(),
                0,
            )
        },
        OMIUM_ERR_INVALID_STATE,
        "omium_store_rollback: execution \"cust-1\" is running",
        &[],
    );
    ok(unsafe { omium_run_complete(run, null(), 0) });
    let mut seq = 0;
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    fails(
        unsafe { omium_run_record(run, seq, c"late".as_ptr(), null(), 0, null_mut(), 0) },
        OMIUM_ERR_INVALID_STATE,
        "omium_run_record: execution \"cust-1\" is completed; this run already finished",
        &[],
    );
    ok(unsafe { omium_run_free(run) });
    fails(
        unsafe {
            omium_store_rollback(
                store,
                c"cust-1".as_ptr(),
                c"nope".as_ptr(),
                null(),
                null_mut(),
                0,
            )
        },
        OMIUM_ERR_CHECKPOINT_NOT_FOUND,
        "omium_store_rollback: execution \"cust-1\" has no checkpoint named \"nope\"",
        &[],
    );

    // The code changed: another step at a recorded position.
    let run = begin(store, "cust-1");
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    let mut found = true;
    fails(
        unsafe { omium_run_recorded(run, seq, c"credit".as_ptr(), &mut found, &mut b) },
        OMIUM_ERR_NON_DETERMINISM,
        "omium_run_recorded: non-determinism in execution \"cust-1\" at step 1",
        &["\"kyc\"", "\"credit\""],
    );
    assert!(!found && b.data.is_null());
    // A checkpoint of another execution as a rollback target.
    let other = begin(store, "cust-2");
    let foreign = cs(&record(other, "kyc", b"x"));
    ok(unsafe { omium_run_free(other) });
    ok(unsafe { omium_run_free(run) });
    fails(
        unsafe {
            omium_store_rollback(
                store,
                c"cust-1".as_ptr(),
                foreign.as_ptr(),
                null(),
                null_mut(),
                0,
            )
        },
        OMIUM_ERR_WRONG_EXECUTION,
        "omium_store_rollback: checkpoint",
        &["belongs to execution \"cust-2\", not \"cust-1\""],
    );
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn a_second_writer_is_told_the_store_is_locked_and_readers_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = begin(store, "cust-42");
    record(run, "kyc", b"verified");
    let path = cs(dir.path().to_str().unwrap());
    let mut second = null_mut();
    fails(
        unsafe { omium_store_open(path.as_ptr(), null(), &mut second) },
        OMIUM_ERR_STORE_LOCKED,
        &format!(
            "omium_store_open: store {} is held by another process",
            dir.path().display()
        ),
        &["inspect the store read-only"],
    );
    assert!(second.is_null());

    // A read-only handle reads while the writer writes, and refuses to write.
    let mut reader = null_mut();
    ok(unsafe { omium_store_open_read_only(path.as_ptr(), &mut reader) });
    assert_eq!(names(&history(reader, "cust-42")), ["kyc"]);
    record(run, "credit", b"712");
    ok(unsafe { omium_store_refresh(reader) });
    assert_eq!(names(&history(reader, "cust-42")), ["kyc", "credit"]);
    let mut r = null_mut();
    fails(
        unsafe { omium_store_begin(reader, c"cust-42".as_ptr(), null(), &mut r) },
        OMIUM_ERR_READ_ONLY,
        "omium_store_begin: store",
        &["is open read-only"],
    );
    ok(unsafe { omium_store_close(reader) });

    let missing = cs(dir.path().join("missing").to_str().unwrap());
    fails(
        unsafe { omium_store_open_read_only(missing.as_ptr(), &mut reader) },
        OMIUM_ERR_STORE_NOT_FOUND,
        "omium_store_open_read_only: no Omium store at",
        &[],
    );

    // The run keeps the database open after the store handle is closed; the store can be
    // opened again once both are gone.
    ok(unsafe { omium_store_close(store) });
    record(run, "offer", b"gold");
    ok(unsafe { omium_run_complete(run, null(), 0) });
    fails(
        unsafe { omium_store_open(path.as_ptr(), null(), &mut second) },
        OMIUM_ERR_STORE_LOCKED,
        "omium_store_open: store",
        &[],
    );
    ok(unsafe { omium_run_free(run) });
    let store = open(dir.path());
    assert_eq!(
        names(&history(store, "cust-42")),
        ["kyc", "credit", "offer"]
    );
    ok(unsafe { omium_store_close(store) });
}

/// Flips one bit of the first stored chunk, opening the RocksDB directory directly.
fn corrupt_a_chunk(store: &Path) {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, store).unwrap();
    let db = rocksdb::DB::open_cf(&opts, store, cfs).unwrap();
    let cf = db.cf_handle("chunks").unwrap();
    let (k, v) = db
        .iterator_cf(cf, rocksdb::IteratorMode::Start)
        .next()
        .expect("the store has chunks")
        .unwrap();
    let mut v = v.to_vec();
    let last = v.len() - 1;
    v[last] ^= 0x40;
    db.put_cf(cf, &k, &v).unwrap();
}

/// The audit head, as C reads it: text to keep elsewhere, checked again after the log's tail
/// was cut off behind the library's back.
#[test]
fn a_recorded_audit_head_detects_a_cut_off_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_store_audit_head(store, &mut b) });
    assert_eq!(take_bytes(&mut b), b"", "nothing audited yet");
    let run = begin(store, "cust-42");
    record(run, "kyc", b"verified");
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_audit_head(store, &mut b) });
    let head = String::from_utf8(take_bytes(&mut b)).unwrap();
    let (seq, hash) = head.split_once(':').unwrap();
    let seq: u64 = seq.parse().unwrap();
    assert_eq!(hash.len(), 64);
    let chead = cs(&head);
    let mut verified = false;
    ok(unsafe { omium_store_verify_head(store, null(), chead.as_ptr(), &mut verified, &mut b) });
    assert!(verified);
    assert_eq!(take_json(&mut b)["audit"]["head"]["seq"], seq);
    fails(
        unsafe {
            omium_store_verify_head(store, null(), c"12".as_ptr(), &mut verified, null_mut())
        },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_verify_head: invalid audit head: \"12\" has no ':'",
        &[],
    );
    ok(unsafe { omium_store_close(store) });
    {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&opts, dir.path(), cfs).unwrap();
        let cf = db.cf_handle("audit").unwrap();
        db.delete_cf(cf, seq.to_be_bytes()).unwrap();
    }
    let store = open(dir.path());
    ok(unsafe { omium_store_verify(store, null(), &mut verified, null_mut()) });
    assert!(verified, "alone, the cut log verifies");
    ok(unsafe { omium_store_verify_head(store, null(), chead.as_ptr(), &mut verified, &mut b) });
    assert!(!verified);
    let report = take_json(&mut b);
    let problem = report["audit"]["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with(&format!("audit head {head}: entry #{seq} is missing")),
        "{problem}"
    );
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn a_corrupt_chunk_is_an_integrity_error_naming_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = begin(store, "cust-42");
    // Large enough to be cut into chunks rather than stored inline.
    let big: Vec<u8> = (0..40_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let id = record(run, "conversation", &big);
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_close(store) });
    corrupt_a_chunk(dir.path());

    let store = open(dir.path());
    let cid = cs(&id);
    let mut b = omium_buffer::EMPTY;
    let prefix = format!(
        "omium_store_read_state: integrity error in checkpoint {id} of execution \"cust-42\": chunk "
    );
    fails(
        unsafe { omium_store_read_state(store, cid.as_ptr(), &mut b) },
        OMIUM_ERR_INTEGRITY,
        &prefix,
        &[],
    );
    assert!(b.data.is_null());
    // The metadata is still readable; only the state bytes are refused.
    ok(unsafe { omium_store_checkpoint(store, cid.as_ptr(), &mut b) });
    assert_eq!(take_json(&mut b)["storage"], "chunked");

    // A resumed run that replays the step is refused the corrupt state too.
    let run = begin(store, "cust-42");
    let mut seq = 0;
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    let mut found = true;
    fails(
        unsafe { omium_run_recorded(run, seq, c"conversation".as_ptr(), &mut found, &mut b) },
        OMIUM_ERR_INTEGRITY,
        &format!("omium_run_recorded: integrity error in checkpoint {id}"),
        &[],
    );
    assert!(!found);
    ok(unsafe { omium_run_free(run) });

    // verify reports it (the call itself succeeds).
    let mut verified = true;
    ok(unsafe { omium_store_verify(store, null(), &mut verified, &mut b) });
    assert!(!verified);
    let report = take_json(&mut b);
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["checkpoint"], id.as_str());
    assert_eq!(problems[0]["execution"], "cust-42");
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn freeing_a_handle_another_thread_is_using_is_busy_not_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = begin(store, "cust-42");
    std::thread::scope(|scope| {
        // Another thread is inside a call on the store (holds its lock) while this one closes.
        let held = unsafe { &*store }.handle().lock_for_test();
        let (tx, rx) = std::sync::mpsc::channel();
        let store_addr = store as usize;
        scope.spawn(move || {
            let s = store_addr as *mut omium_store;
            let status = unsafe { omium_store_close(s) };
            tx.send((status, last_error())).unwrap();
        });
        let (status, msg) = rx.recv().unwrap();
        assert_eq!(status, OMIUM_ERR_BUSY, "{msg}");
        assert!(
            msg.starts_with(
                "omium_store_close: the store handle `store` is in use by another thread"
            ),
            "{msg}"
        );
        drop(held);
    });
    // Nothing was closed.
    assert!(history(store, "cust-42").is_empty());

    let held = unsafe { &*run }.handle().lock_for_test();
    fails(
        unsafe { omium_run_free(run) },
        OMIUM_ERR_BUSY,
        "omium_run_free: the run handle `run` is in use by another thread",
        &["nothing was freed"],
    );
    drop(held);
    record(run, "kyc", b"ok");
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn threads_share_a_store_and_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let shared_run = begin(store, "shared") as usize;
    let store_addr = store as usize;
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                let store = store_addr as *mut omium_store;
                let run = begin(store, &format!("exec-{t}"));
                for i in 0..5 {
                    record(run, &format!("step-{i}"), format!("{t}/{i}").as_bytes());
                    record(shared_run as *mut omium_run, &format!("t{t}-{i}"), b"s");
                }
                ok(unsafe { omium_run_complete(run, null(), 0) });
                ok(unsafe { omium_run_free(run) });
            });
        }
    });
    for t in 0..4 {
        assert_eq!(history(store, &format!("exec-{t}")).len(), 5);
    }
    let h = history(store, "shared");
    assert_eq!(h.len(), 20);
    let mut seqs: Vec<u64> = h.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "every step its own position"
    );
    ok(unsafe { omium_run_free(shared_run as *mut omium_run) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn a_panic_becomes_a_status_and_poisons_only_its_handle() {
    let status = guard("omium_test", || panic!("boom"));
    assert_eq!(status, OMIUM_ERR_PANIC);
    let msg = last_error();
    assert!(
        msg.starts_with("omium_test: internal error (panic: boom); this is a bug in Omium"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = begin(store, "cust-42");
    let status = guard("omium_test", || unsafe {
        guard::with(run, "run", |_| -> Result<(), Failure> {
            panic!("in a step")
        })
    });
    assert_eq!(status, OMIUM_ERR_PANIC);
    let mut seq = 0;
    fails(
        unsafe { omium_run_reserve(run, &mut seq) },
        OMIUM_ERR_PANIC,
        "omium_run_reserve: an earlier call on this run handle panicked",
        &[],
    );
    // The store is not affected, and the poisoned run can still be freed.
    assert!(history(store, "cust-42").is_empty());
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn buffers_free_once_and_keep_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_store_resumable(store, &mut b) });
    assert_eq!(unsafe { b.as_slice() }, b"[]");
    // A failing call, then frees: the message stays readable.
    let mut other = omium_buffer::EMPTY;
    let status = unsafe { omium_store_history(store, c"nobody".as_ptr(), &mut other) };
    assert_eq!(status, OMIUM_ERR_EXECUTION_NOT_FOUND);
    unsafe { omium_buffer_free(&mut b) };
    unsafe { omium_buffer_free(&mut b) }; // zeroed by the first free: harmless
    unsafe { omium_buffer_free(&mut other) };
    assert!(last_error().starts_with("omium_store_history: unknown execution"));
    ok(unsafe { omium_store_close(store) });
}

// ---- a store served by a real `omium serve` daemon process ----

/// The `omium` binary: `OMIUM_BIN`, else the one cargo built next to this test
/// (`cargo test --workspace` and `make cli` build it).
fn omium_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("OMIUM_BIN") {
        return p.into();
    }
    // This test is target/<profile>/deps/omium-<hash>; the binary is target/<profile>/omium.
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("omium");
    assert!(
        bin.exists(),
        "the omium binary is not built at {}: run `cargo build -p omium-cli` (or `make cli`), \
         or set OMIUM_BIN",
        bin.display()
    );
    bin
}

/// `omium --store <dir>/store serve ARGS...`, stopped (SIGKILL) when dropped.
struct Daemon {
    child: std::process::Child,
    /// The JSON line it printed once listening.
    info: Value,
}

impl Daemon {
    fn start(dir: &Path, args: &[&str]) -> Daemon {
        use std::io::BufRead;
        // Keys never go on the command line: `--api-key K` here becomes OMIUM_API_KEYS.
        let mut args = args.to_vec();
        let mut keys = Vec::new();
        while let Some(i) = args.iter().position(|a| *a == "--api-key") {
            keys.push(args[i + 1]);
            args.drain(i..i + 2);
        }
        let mut child = std::process::Command::new(omium_bin())
            .arg("--store")
            .arg(dir.join("store"))
            .arg("serve")
            .args(&args)
            .env("OMIUM_API_KEYS", keys.join(","))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            !line.is_empty(),
            "omium serve exited before listening: {:?}",
            child.wait()
        );
        Daemon {
            child,
            info: serde_json::from_str(&line).unwrap(),
        }
    }

    fn unix_url(&self) -> String {
        format!("unix://{}", self.info["socket"].as_str().unwrap())
    }

    fn http_url(&self) -> String {
        format!("http://{}", self.info["http"].as_str().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn connect(url: &str, api_key: Option<&str>) -> *mut omium_store {
    let mut s = null_mut();
    let url = cs(url);
    let key = api_key.map(cs);
    ok(unsafe {
        omium_store_connect(
            url.as_ptr(),
            key.as_ref().map_or(null(), |k| k.as_ptr()),
            &mut s,
        )
    });
    assert!(!s.is_null());
    s
}

/// The status of `omium_store_execution` (its buffer freed).
fn execution_status(store: *mut omium_store, id: &str) -> omium_status {
    let id = cs(id);
    let mut b = omium_buffer::EMPTY;
    let status = unsafe { omium_store_execution(store, id.as_ptr(), &mut b) };
    unsafe { omium_buffer_free(&mut b) };
    status
}

#[test]
fn connect_checks_its_arguments_and_says_when_no_daemon_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = std::ptr::dangling_mut::<omium_store>();
    fails(
        unsafe { omium_store_connect(null(), null(), &mut s) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_connect: argument `url` is NULL",
        &[],
    );
    assert!(s.is_null(), "out_store is NULL after an error");
    fails(
        unsafe { omium_store_connect(c"ftp://example.com".as_ptr(), null(), &mut s) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_connect: ",
        &["ftp://example.com", "unix://", "http://"],
    );
    fails(
        unsafe { omium_store_connect(c"unix:///x.sock".as_ptr(), c"".as_ptr(), &mut s) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_connect: argument `api_key` is an empty string",
        &[],
    );
    fails(
        unsafe { omium_store_connect(c"unix:///x.sock".as_ptr(), null(), null_mut()) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_connect: argument `out_store` is NULL",
        &[],
    );
    let missing = format!("unix://{}", dir.path().join("nobody.sock").display());
    let url = cs(&missing);
    fails(
        unsafe { omium_store_connect(url.as_ptr(), null(), &mut s) },
        OMIUM_ERR_SERVER_UNAVAILABLE,
        "omium_store_connect: ",
        &["nobody.sock"],
    );
    assert!(s.is_null());
    assert_eq!(name_of(OMIUM_ERR_SERVER_UNAVAILABLE), "server_unavailable");
    assert_eq!(name_of(OMIUM_ERR_UNAUTHORIZED), "unauthorized");
}

#[test]
fn every_store_and_run_call_works_on_a_daemons_store() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("omium.sock");
    let mut daemon = Daemon::start(dir.path(), &["--socket", sock.to_str().unwrap()]);
    let url = daemon.unix_url();
    let store = connect(&url, None);

    // A first run records two steps and stops without finishing (as if its process died).
    let run = begin(store, "served-1");
    assert_eq!(step(run, "fetch", b"one"), (b"one".to_vec(), false));
    let parse_id = record(run, "parse", b"two");
    assert_eq!(parse_id.len(), OMIUM_CHECKPOINT_ID_SIZE - 1);
    // The daemon holds the execution for this run: another handle cannot begin it.
    let other = connect(&url, None);
    let mut r2 = null_mut();
    fails(
        unsafe { omium_store_begin(other, c"served-1".as_ptr(), null(), &mut r2) },
        OMIUM_ERR_EXECUTION_LEASED,
        "omium_store_begin: execution \"served-1\" is being run by ",
        &[],
    );
    assert!(r2.is_null());
    ok(unsafe { omium_run_free(run) });

    // The next run, from the other handle: the recorded steps replay, the rest runs.
    let run = begin(other, "served-1");
    assert_eq!(step(run, "fetch", b"changed"), (b"one".to_vec(), true));
    let mut seq = 0;
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    assert_eq!(seq, 2);
    let mut found = false;
    ok(unsafe { omium_run_recorded(run, seq, c"parse".as_ptr(), &mut found, null_mut()) });
    assert!(found, "found without asking for the state");
    fails(
        unsafe { omium_run_recorded(run, seq, c"other".as_ptr(), &mut found, null_mut()) },
        OMIUM_ERR_NON_DETERMINISM,
        "omium_run_recorded: ",
        &["parse", "other"],
    );
    assert_eq!(step(run, "answer", b"three"), (b"three".to_vec(), false));
    ok(unsafe { omium_run_complete(run, b"out".as_ptr(), 3) });
    fails(
        unsafe { omium_run_record(run, 4, c"late".as_ptr(), b"x".as_ptr(), 1, null_mut(), 0) },
        OMIUM_ERR_INVALID_STATE,
        "omium_run_record: ",
        &["finished"],
    );
    ok(unsafe { omium_run_free(run) });

    // What the runs recorded, read back through the daemon from the first handle.
    let e = execution(store, "served-1");
    assert_eq!(e["status"], "completed");
    assert_eq!(e["workflow"], "onboarding");
    assert_eq!(e["attempts"], 2);
    let h = history(store, "served-1");
    assert_eq!(names(&h), ["fetch", "parse", "answer"]);
    let mut b = omium_buffer::EMPTY;
    let id = cs(&parse_id);
    ok(unsafe { omium_store_checkpoint(store, id.as_ptr(), &mut b) });
    let c = take_json(&mut b);
    assert_eq!(c["name"], "parse");
    assert_eq!(c["execution_id"], "served-1");
    ok(unsafe { omium_store_read_state(store, id.as_ptr(), &mut b) });
    assert_eq!(take_bytes(&mut b), b"two");
    fails(
        unsafe { omium_store_checkpoint(store, c"01ARZ3NDEKTSV4RRFFQ69G5FAV".as_ptr(), &mut b) },
        OMIUM_ERR_CHECKPOINT_NOT_FOUND,
        "omium_store_checkpoint: ",
        &["01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    );
    assert_eq!(
        execution_status(store, "nobody"),
        OMIUM_ERR_EXECUTION_NOT_FOUND
    );
    ok(unsafe { omium_store_resumable(store, &mut b) });
    assert_eq!(take_json(&mut b), serde_json::json!([]));

    // Rollback, verify and refresh.
    let mut marker = [0 as c_char; OMIUM_CHECKPOINT_ID_SIZE];
    ok(unsafe {
        omium_store_rollback(
            store,
            c"served-1".as_ptr(),
            c"fetch".as_ptr(),
            c"test".as_ptr(),
            marker.as_mut_ptr(),
            marker.len(),
        )
    });
    let marker = unsafe { CStr::from_ptr(marker.as_ptr()) }.to_str().unwrap();
    let h = history(store, "served-1");
    assert_eq!(names(&h), ["fetch", "rollback to fetch"]);
    assert_eq!(h[1]["id"], marker);
    assert_eq!(execution(store, "served-1")["status"], "pending");
    let mut verified = false;
    ok(unsafe { omium_store_verify(store, null(), &mut verified, &mut b) });
    assert!(verified);
    assert_eq!(take_json(&mut b)["ok"], true);
    ok(unsafe { omium_store_refresh(store) });

    // A daemon that went away: every call says so, naming the URL; handles still free.
    let held = begin(store, "served-2");
    daemon.kill();
    let status = execution_status(store, "served-1");
    let msg = last_error();
    assert_eq!(status, OMIUM_ERR_SERVER_UNAVAILABLE, "{msg}");
    assert!(msg.starts_with("omium_store_execution: "), "{msg}");
    assert!(msg.contains(&url), "{msg} names {url}");
    let mut seq = 0;
    fails(
        unsafe { omium_run_reserve(held, &mut seq) },
        OMIUM_ERR_SERVER_UNAVAILABLE,
        "omium_run_reserve: ",
        &[url.as_str()],
    );
    ok(unsafe { omium_run_free(held) });
    ok(unsafe { omium_store_close(other) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn a_daemon_with_api_keys_refuses_handles_without_one() {
    const KEY: &str = "k3y-0123456789abcdef-ffi-test";
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["--http", "127.0.0.1:0", "--api-key", KEY]);
    let url = daemon.http_url();
    // Connecting checks that a daemon answers (its health needs no key); calls need one.
    let anonymous = connect(&url, None);
    let status = execution_status(anonymous, "x");
    assert_eq!(status, OMIUM_ERR_UNAUTHORIZED, "{}", last_error());
    assert!(last_error().contains("API key"), "{}", last_error());
    let wrong = connect(&url, Some("not-the-key-0123456789"));
    assert_eq!(execution_status(wrong, "x"), OMIUM_ERR_UNAUTHORIZED);
    let keyed = connect(&url, Some(KEY));
    assert_eq!(
        execution_status(keyed, "x"),
        OMIUM_ERR_EXECUTION_NOT_FOUND,
        "{}",
        last_error()
    );
    let run = begin(keyed, "keyed-1");
    assert_eq!(step(run, "only", b"1"), (b"1".to_vec(), false));
    ok(unsafe { omium_run_complete(run, null(), 0) });
    ok(unsafe { omium_run_free(run) });
    assert_eq!(execution(keyed, "keyed-1")["status"], "completed");
    for s in [anonymous, wrong, keyed] {
        ok(unsafe { omium_store_close(s) });
    }
}

#[test]
fn metadata_names_the_codec_outputs_are_read_and_a_null_target_is_the_last_consistent_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = begin(store, "m1");
    let mut seq = 0;
    ok(unsafe { omium_run_reserve(run, &mut seq) });
    let name = cs("kyc");
    let state = br#"{"score": 7}"#;
    let record = |meta: &str| unsafe {
        let meta = cs(meta);
        omium_run_record_with_metadata(
            run,
            seq,
            name.as_ptr(),
            state.as_ptr(),
            state.len(),
            meta.as_ptr(),
            null_mut(),
            0,
        )
    };
    // Bad metadata is refused before anything is recorded, naming what is wrong.
    fails(
        record("[1]"),
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_run_record_with_metadata: argument `metadata_json` must be a JSON object of strings",
        &[],
    );
    fails(
        record(r#"{"omium.codec": 1}"#),
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_run_record_with_metadata: argument `metadata_json` has 1 for \"omium.codec\"",
        &[],
    );
    fails(
        record("{"),
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_run_record_with_metadata: argument `metadata_json` is not JSON",
        &[],
    );
    ok(record(r#"{"omium.codec": "json"}"#));
    let h = history(store, "m1");
    assert_eq!(h[0]["metadata"]["omium.codec"], "json", "{h:?}");

    // No output until the execution completes with one.
    let id = cs("m1");
    let (mut found, mut out) = (true, omium_buffer::EMPTY);
    ok(unsafe { omium_store_execution_output(store, id.as_ptr(), &mut found, &mut out) });
    assert!(!found && out.data.is_null());
    ok(unsafe { omium_run_complete(run, b"42".as_ptr(), 2) });
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_execution_output(store, id.as_ptr(), &mut found, &mut out) });
    assert!(found);
    assert_eq!(take_bytes(&mut out), b"42");
    let unknown = cs("nope");
    fails(
        unsafe { omium_store_execution_output(store, unknown.as_ptr(), &mut found, &mut out) },
        OMIUM_ERR_EXECUTION_NOT_FOUND,
        "",
        &["nope"],
    );

    // A NULL target rolls back to the last consistent checkpoint; an empty one is refused.
    ok(unsafe { omium_store_rollback(store, id.as_ptr(), null(), null(), null_mut(), 0) });
    assert_eq!(names(&history(store, "m1")), ["kyc", "rollback to kyc"]);
    fails(
        unsafe { omium_store_rollback(store, id.as_ptr(), c"".as_ptr(), null(), null_mut(), 0) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_rollback: argument `target` is empty",
        &[],
    );
    ok(unsafe { omium_store_close(store) });
}

/// Records a step at a position (with a key for a nested one), as a C host does.
fn record_at(
    run: *mut omium_run,
    seq: u64,
    key: Option<&str>,
    name: &str,
    state: &[u8],
    meta: &str,
) {
    let (name, meta) = (cs(name), cs(meta));
    let key = key.map(cs);
    ok(unsafe {
        omium_run_record_at(
            run,
            seq,
            key.as_ref().map_or(null(), |k| k.as_ptr()),
            name.as_ptr(),
            state.as_ptr(),
            state.len(),
            meta.as_ptr(),
            null_mut(),
            0,
        )
    });
}

fn position(run: *mut omium_run, parent: Option<&str>) -> (u64, Option<String>) {
    let parent = parent.map(cs);
    let (mut seq, mut key) = (u64::MAX, omium_buffer::EMPTY);
    ok(unsafe {
        omium_run_position(
            run,
            parent.as_ref().map_or(null(), |p| p.as_ptr()),
            null(),
            &mut seq,
            &mut key,
        )
    });
    let key = (!key.data.is_null()).then(|| String::from_utf8(take_bytes(&mut key)).unwrap());
    (seq, key)
}

#[test]
fn recorded_calls_replay_fork_at_a_position_diff_and_the_tool_allowlist() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let json = r#"{"omium.codec": "json"}"#;
    // A workflow of two steps; the second calls a tool (a call nested in the step at 2).
    let run = begin(store, "c1");
    assert_eq!(position(run, None), (1, None));
    record_at(run, 1, None, "a", b"1", json);
    assert_eq!(position(run, None), (2, None));
    assert_eq!(position(run, Some("2")), (0, Some("2/0".to_string())));
    let mut buf = omium_buffer::EMPTY;
    ok(unsafe {
        omium_canonical_request(
            c"tool".as_ptr(),
            c"search".as_ptr(),
            null(),
            null(),
            c"[1]".as_ptr(),
            c"{\"timeout\": 3}".as_ptr(),
            &mut buf,
        )
    });
    let req = take_json(&mut buf);
    let (request, hash) = (
        req["request"].clone(),
        req["hash"].as_str().unwrap().to_string(),
    );
    assert_eq!(request["args"], serde_json::json!([1]));
    assert_eq!(
        request["params"],
        serde_json::json!({}),
        "volatile parameters are left out"
    );
    assert_eq!(hash.len(), 64);
    let state = serde_json::json!({"request": request, "response": 5}).to_string();
    let meta = serde_json::json!({"omium.codec": "json", "omium.call": "tool", "omium.request_hash": hash, "omium.side_effect": "false"}).to_string();
    record_at(
        run,
        0,
        Some("2/0"),
        "tool:execute_tool search",
        state.as_bytes(),
        &meta,
    );
    // The process dies before step b is recorded; the next run finds a and the nested call.
    ok(unsafe { omium_run_free(run) });
    let run = begin(store, "c1");
    assert_eq!(position(run, None), (1, None));
    assert_eq!(position(run, None), (2, None));
    assert_eq!(position(run, Some("2")), (0, Some("2/0".to_string())));
    let (mut found, mut out) = (false, omium_buffer::EMPTY);
    ok(unsafe {
        omium_run_recorded_at(
            run,
            0,
            c"2/0".as_ptr(),
            c"tool:execute_tool search".as_ptr(),
            &mut found,
            &mut out,
        )
    });
    assert!(found);
    let recorded: Value = serde_json::from_slice(&take_bytes(&mut out)).unwrap();
    assert_eq!(recorded["response"], 5);
    fails(
        unsafe { omium_run_recorded_at(run, 0, c"".as_ptr(), c"x".as_ptr(), &mut found, &mut out) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_run_recorded_at: argument `key` is empty",
        &[],
    );
    record_at(run, 2, None, "b", b"5", json);
    ok(unsafe { omium_run_complete(run, b"5".as_ptr(), 1) });
    ok(unsafe { omium_run_free(run) });
    assert_eq!(
        names(&history(store, "c1")),
        ["a", "tool:execute_tool search", "b"]
    );

    // A replay answers the recorded call, then reports what diverges.
    let mut replay = null_mut();
    ok(unsafe { omium_store_open_replay(store, c"c1".as_ptr(), &mut replay) });
    let (request_text, hash_c) = (cs(&request.to_string()), cs(&hash));
    let (mut state_out, mut meta_out) = (omium_buffer::EMPTY, omium_buffer::EMPTY);
    ok(unsafe {
        omium_replay_answer(
            replay,
            request_text.as_ptr(),
            hash_c.as_ptr(),
            &mut state_out,
            &mut meta_out,
        )
    });
    let answered: Value = serde_json::from_slice(&take_bytes(&mut state_out)).unwrap();
    assert_eq!(answered["response"], 5);
    assert_eq!(take_json(&mut meta_out)["omium.codec"], "json");
    fails(
        unsafe {
            omium_replay_answer(
                replay,
                request_text.as_ptr(),
                hash_c.as_ptr(),
                &mut state_out,
                null_mut(),
            )
        },
        OMIUM_ERR_REPLAY_DIVERGENCE,
        "omium_replay_answer: replay of \"c1\" diverged at call 1",
        &["the recording does not have"],
    );
    ok(unsafe { omium_replay_free(replay) });
    ok(unsafe { omium_store_open_replay(store, c"c1".as_ptr(), &mut replay) });
    fails(
        unsafe { omium_replay_finish(replay) },
        OMIUM_ERR_REPLAY_DIVERGENCE,
        "",
        &["ended without making the recorded request tool:execute_tool search"],
    );
    ok(unsafe { omium_replay_free(replay) });

    // Forks: at a position, and at a checkpoint with a new state.
    let mut e = omium_buffer::EMPTY;
    ok(unsafe { omium_store_fork_at_step(store, c"c1".as_ptr(), 2, c"c2".as_ptr(), &mut e) });
    assert_eq!(take_json(&mut e)["id"], "c2");
    assert_eq!(names(&history(store, "c2")), ["a", "fork of c1 at a"]);
    fails(
        unsafe { omium_store_fork_at_step(store, c"c1".as_ptr(), 9, c"c9".as_ptr(), null_mut()) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "",
        &["positions 1 to 2, not 9"],
    );
    ok(unsafe {
        omium_store_fork(
            store,
            c"c1".as_ptr(),
            c"a".as_ptr(),
            c"c3".as_ptr(),
            b"9".as_ptr(),
            1,
            null_mut(),
        )
    });
    let h = history(store, "c3");
    let mut st = omium_buffer::EMPTY;
    let id = cs(h[0]["id"].as_str().unwrap());
    ok(unsafe { omium_store_read_state(store, id.as_ptr(), &mut st) });
    assert_eq!(take_bytes(&mut st), b"9");

    // The diff of an execution with its fork at a position.
    let mut d = omium_buffer::EMPTY;
    ok(unsafe { omium_store_diff(store, c"c1".as_ptr(), c"c2".as_ptr(), &mut d) });
    let rows = take_json(&mut d);
    let got: Vec<(String, bool)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["position"].as_str().unwrap().to_string(),
                r["differs"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1".to_string(), false),
            ("2/0".to_string(), true),
            ("2".to_string(), true)
        ]
    );

    // The tool allowlist of a policy.
    ok(unsafe {
        omium_store_apply_policy(
            store,
            null(),
            null(),
            c"defaults:\n  tool_allowlist: [search]\n".as_ptr(),
            null_mut(),
        )
    });
    ok(unsafe {
        omium_store_check_tool(
            store,
            c"c1".as_ptr(),
            null(),
            null(),
            c"b".as_ptr(),
            c"search".as_ptr(),
        )
    });
    fails(
        unsafe {
            omium_store_check_tool(
                store,
                c"c1".as_ptr(),
                null(),
                null(),
                c"b".as_ptr(),
                c"shell".as_ptr(),
            )
        },
        OMIUM_ERR_TOOL_DENIED,
        "omium_store_check_tool: tool \"shell\" is not allowed in step \"b\"",
        &["search"],
    );
    fails(
        unsafe {
            omium_store_apply_policy(
                store,
                null(),
                null(),
                c"rules: [{trigger: nope}]".as_ptr(),
                null_mut(),
            )
        },
        OMIUM_ERR_INVALID_POLICY,
        "",
        &["nope"],
    );
    fails(
        unsafe {
            omium_canonical_request(
                c"x".as_ptr(),
                null(),
                null(),
                null(),
                null(),
                null(),
                &mut buf,
            )
        },
        OMIUM_ERR_INVALID_ARGUMENT,
        "",
        &["\"llm\" or \"tool\""],
    );
    fails(
        unsafe {
            omium_canonical_request(
                c"llm".as_ptr(),
                null(),
                null(),
                null(),
                c"{}".as_ptr(),
                null(),
                &mut buf,
            )
        },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_canonical_request: argument `args_json` must be a JSON array",
        &[],
    );
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn the_event_feed_reads_from_a_cursor_filters_and_waits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = begin(store, "ev-1");
    step(run, "a", b"1");
    ok(unsafe { omium_run_complete(run, b"done".as_ptr(), 4) });
    ok(unsafe { omium_run_free(run) });

    let mut out = omium_buffer::EMPTY;
    ok(unsafe { omium_store_events(store, 0, 0, null(), null(), 0, &mut out) });
    let page = take_json(&mut out);
    let types: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "io.omium.execution.started",
            "io.omium.checkpoint.created",
            "io.omium.execution.completed"
        ]
    );
    assert_eq!(page["cursor"], 3);
    assert_eq!(page["events"][1]["subject"], "ev-1");

    ok(unsafe {
        omium_store_events(
            store,
            1,
            0,
            c"[\"execution.*\"]".as_ptr(),
            c"ev-1".as_ptr(),
            0,
            &mut out,
        )
    });
    let page = take_json(&mut out);
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["omiumseq"], 3);

    // Nothing after the cursor: a short wait answers an empty page with the same cursor.
    ok(unsafe { omium_store_events(store, 3, 0, null(), null(), 20, &mut out) });
    let page = take_json(&mut out);
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["cursor"], 3);

    fails(
        unsafe { omium_store_events(store, 0, 0, c"[\"nope\"]".as_ptr(), null(), 0, &mut out) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_events: ",
        &["\"nope\" is no event type"],
    );
    fails(
        unsafe { omium_store_events(store, 0, 0, c"{}".as_ptr(), null(), 0, &mut out) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "",
        &["types_json"],
    );
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn metrics_answer_the_analytics_of_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (id, complete) in [("m-1", true), ("m-2", false)] {
        let run = begin(store, id);
        step(run, "a", b"1");
        if complete {
            ok(unsafe { omium_run_complete(run, b"done".as_ptr(), 4) });
        } else {
            ok(unsafe { omium_run_fail(run, c"broke".as_ptr()) });
        }
        ok(unsafe { omium_run_free(run) });
    }
    let mut out = omium_buffer::EMPTY;
    ok(unsafe { omium_store_metrics(store, null(), &mut out) });
    let m = take_json(&mut out);
    assert_eq!(
        (
            &m["totals"]["started"],
            &m["totals"]["completed"],
            &m["totals"]["failed"]
        ),
        (&json!(2), &json!(1), &json!(1)),
        "{m}"
    );
    assert_eq!(m["totals"]["success_rate"], 0.5);
    assert_eq!(m["totals"]["steps"], 2);

    ok(unsafe {
        omium_store_metrics(
            store,
            c"{\"since\": \"1h\", \"by\": \"step\"}".as_ptr(),
            &mut out,
        )
    });
    let m = take_json(&mut out);
    assert_eq!(m["groups"][0]["key"]["step"], "a", "{m}");
    assert_eq!(m["groups"][0]["figures"]["steps"], 2, "{m}");

    // Alert rules evaluated by the C program on its own schedule: the failure fires once; the
    // webhook to a loopback address the operator did not allow is refused, not retried.
    let rules = c"channels: {hook: {webhook: {url: 'http://127.0.0.1:9/x'}}}\nrules: [{name: c-failing, metric: failed, threshold: 0, channels: [hook]}]";
    ok(unsafe { omium_store_evaluate_alerts(store, rules.as_ptr(), &mut out) });
    let t = take_json(&mut out);
    assert_eq!(
        (&t[0]["rule"], &t[0]["status"]),
        (&json!("c-failing"), &json!("firing")),
        "{t}"
    );
    assert!(
        t[0]["delivered"]["hook"]
            .as_str()
            .unwrap()
            .starts_with("refused: 127.0.0.1 is a loopback"),
        "{t}"
    );
    ok(unsafe { omium_store_evaluate_alerts(store, rules.as_ptr(), &mut out) });
    assert_eq!(take_json(&mut out), json!([]), "a breach fires once");
    ok(unsafe { omium_store_alerts(store, &mut out) });
    assert_eq!(
        take_json(&mut out)["state"]["alerts"]["c-failing"]["phase"],
        "firing"
    );
    fails(
        unsafe {
            omium_store_evaluate_alerts(
                store,
                c"rules: [{name: x, metric: nope, threshold: 1}]".as_ptr(),
                &mut out,
            )
        },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_evaluate_alerts: ",
        &["<alerts>:1:", "unknown metric \"nope\""],
    );
    fails(
        unsafe { omium_store_metrics(store, c"{\"since\": \"soon\"}".as_ptr(), &mut out) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_metrics: ",
        &["\"soon\" is not a time"],
    );
    fails(
        unsafe { omium_store_metrics(store, c"[1]".as_ptr(), &mut out) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "",
        &["expected a JSON object"],
    );
    ok(unsafe { omium_store_close(store) });
}

/// Applies a global policy document to tenant "default".
fn apply_policy(store: *mut omium_store, text: &str) {
    let text = cs(text);
    ok(unsafe { omium_store_apply_policy(store, null(), null(), text.as_ptr(), null_mut()) });
}

/// Starts the recovery of a failed step `step` of execution `id`.
fn start_recovery(store: *mut omium_store, failure: Value) -> *mut omium_recovery {
    let failure = cs(&failure.to_string());
    let mut r = null_mut();
    ok(unsafe { omium_store_start_recovery(store, failure.as_ptr(), &mut r) });
    assert!(!r.is_null());
    r
}

/// Reports `event` and returns the next command.
fn advance(r: *mut omium_recovery, event: Value) -> Value {
    let event = cs(&event.to_string());
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_recovery_advance(r, event.as_ptr(), &mut b) });
    take_json(&mut b)
}

#[test]
fn the_recovery_driver_retries_pauses_and_rolls_back_as_the_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    apply_policy(
        store,
        "rules:\n  - trigger: timeout_error\n    actions:\n      - retry: {max_attempts: 3, backoff: fixed, initial_delay: 10ms, jitter: none}\n  - trigger: validation_error\n    actions: [{pause: {}}]\n",
    );
    // A timeout is retried after the policy's backoff; the second call succeeds.
    let run = begin(store, "r1");
    step(run, "a", b"1");
    let failure = json!({"execution_id": "r1", "workflow": "onboarding", "step": "b", "seq": 2,
                         "error_classes": ["TimeoutError"], "message": "TimeoutError: slow"});
    let r = start_recovery(store, failure.clone());
    let c = advance(r, json!({"event": "start"}));
    assert_eq!(c["name"], "retry", "{c}");
    assert_eq!(c["params"]["delay_ms"], 10, "{c}");
    assert_eq!(c["params"]["attempt"], 2, "{c}");
    // An event the driver does not wait for is refused and changes nothing.
    let bad = cs(r#"{"event": "fixed"}"#);
    let mut b = omium_buffer::EMPTY;
    fails(
        unsafe { omium_recovery_advance(r, bad.as_ptr(), &mut b) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "",
        &["fixed"],
    );
    let c = advance(
        r,
        json!({"event": "called", "ok": false, "note": "TimeoutError: slow again"}),
    );
    assert_eq!(c["name"], "retry", "{c}");
    let c = advance(r, json!({"event": "called"}));
    assert_eq!(c["name"], "return", "{c}");
    ok(unsafe { omium_recovery_free(r) });
    step(run, "b", b"2");
    ok(unsafe { omium_run_complete(run, null(), 0) });
    ok(unsafe { omium_run_free(run) });
    assert_eq!(execution(store, "r1")["status"], "completed");

    // A validation error pauses: the host pauses the run; beginning again is refused.
    let run = begin(store, "r2");
    let r = start_recovery(
        store,
        json!({"execution_id": "r2", "workflow": "onboarding", "step": "a", "seq": 1,
               "error_classes": ["ValidationError"], "message": "ValidationError: no name"}),
    );
    let c = advance(r, json!({"event": "start"}));
    assert_eq!(c["name"], "raise", "{c}");
    assert_eq!(c["params"]["code"], "paused", "{c}");
    assert_eq!(c["params"]["status"], OMIUM_ERR_PAUSED, "{c}");
    assert_eq!(c["params"]["failure"]["step"], "a", "{c}");
    ok(unsafe { omium_recovery_free(r) });
    let reason = cs(c["params"]["reason"].as_str().unwrap());
    ok(unsafe { omium_run_pause(run, reason.as_ptr()) });
    ok(unsafe { omium_run_free(run) });
    assert_eq!(execution(store, "r2")["status"], "paused");
    let mut again = null_mut();
    fails(
        unsafe { omium_store_begin(store, c"r2".as_ptr(), c"onboarding".as_ptr(), &mut again) },
        OMIUM_ERR_INVALID_STATE,
        "",
        &["r2", "is paused"],
    );

    // A rollback decided before anything was recorded runs the execution again from its start.
    apply_policy(store, "rules:\n  - trigger: validation_error\n    actions:\n      - rollback: {to: last_consistent}\n");
    let run = begin(store, "r3");
    let r = start_recovery(
        store,
        json!({"execution_id": "r3", "workflow": "onboarding", "step": "a", "seq": 1,
               "error_classes": ["ValidationError"], "message": "ValidationError: bad"}),
    );
    let c = advance(r, json!({"event": "start"}));
    assert_eq!(c["params"]["code"], "rolled_back", "{c}");
    assert_eq!(c["params"]["status"], OMIUM_ERR_ROLLED_BACK, "{c}");
    ok(unsafe { omium_recovery_free(r) });
    ok(unsafe { omium_run_free(run) });
    let to = cs(c["params"]["to"].as_str().unwrap());
    let failure = cs(&c["params"]["failure"].to_string());
    let mut marker = [1 as c_char; OMIUM_CHECKPOINT_ID_SIZE];
    ok(unsafe {
        omium_store_rollback_as_decided(
            store,
            c"r3".as_ptr(),
            to.as_ptr(),
            failure.as_ptr(),
            marker.as_mut_ptr(),
            marker.len(),
        )
    });
    assert_eq!(marker[0], 0, "nothing to roll back to: no marker");
    let run = begin(store, "r3");
    ok(unsafe { omium_run_free(run) });

    // The recoveries are recorded as every binding records them.
    let mut b = omium_buffer::EMPTY;
    ok(unsafe { omium_store_events(store, 0, 100, null(), null(), 0, &mut b) });
    let events = take_json(&mut b);
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let count = |t: &str| types.iter().filter(|x| **x == t).count();
    assert_eq!(count("io.omium.failure.detected"), 3, "{types:?}");
    assert!(count("io.omium.recovery.action_taken") >= 3, "{types:?}");
    assert_eq!(count("io.omium.execution.paused"), 1, "{types:?}");
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn recovery_arguments_are_checked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (mut r, mut b) = (null_mut(), omium_buffer::EMPTY);
    for (text, parts) in [
        ("not json", vec!["failure_json", "not JSON"]),
        ("[1]", vec!["failure_json", "array"]),
        (r#"{"message": "x"}"#, vec!["failure_json", "execution_id"]),
        (
            r#"{"execution_id": "e", "message": "x", "seq": -1}"#,
            vec!["seq", "non-negative"],
        ),
        (
            r#"{"execution_id": "e", "message": "x", "kind": "nope"}"#,
            vec!["nope"],
        ),
        (
            r#"{"execution_id": "e", "message": "x", "error_classes": [1]}"#,
            vec!["error_classes"],
        ),
    ] {
        let t = cs(text);
        let status = unsafe { omium_store_start_recovery(store, t.as_ptr(), &mut r) };
        assert_ne!(status, OMIUM_OK, "{text}");
        assert!(r.is_null());
        let msg = last_error();
        for p in parts {
            assert!(msg.contains(p), "{text}: {msg:?} should contain {p:?}");
        }
    }
    fails(
        unsafe { omium_recovery_advance(null_mut(), c"{\"event\": \"start\"}".as_ptr(), &mut b) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_recovery_advance: argument `recovery` is NULL",
        &["omium_store_start_recovery"],
    );
    ok(unsafe { omium_recovery_free(null_mut()) });
    let r = start_recovery(store, json!({"execution_id": "e", "message": "boom"}));
    fails(
        unsafe { omium_recovery_advance(r, c"{\"event\": \"later\"}".as_ptr(), &mut b) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "",
        &["later", "expected start"],
    );
    ok(unsafe { omium_recovery_give_up(r) });
    ok(unsafe { omium_recovery_free(r) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
fn conditions_and_policy_defaults_are_the_cores() {
    let mut holds = false;
    let vars = cs(r#"{"args": [{"amount": 5}], "result": {"verified": true}}"#);
    ok(unsafe {
        omium_condition_holds(
            c"args[0].amount > 1 && result.verified".as_ptr(),
            vars.as_ptr(),
            &mut holds,
        )
    });
    assert!(holds);
    ok(unsafe {
        omium_condition_holds(
            c"args[0].amount + 1 > 10".as_ptr(),
            vars.as_ptr(),
            &mut holds,
        )
    });
    assert!(!holds);
    fails(
        unsafe { omium_condition_holds(c"args[0].amount >".as_ptr(), vars.as_ptr(), &mut holds) },
        OMIUM_ERR_CONDITION_SYNTAX,
        "",
        &["args[0].amount >"],
    );
    fails(
        unsafe {
            omium_condition_holds(c"result.missing == 1".as_ptr(), vars.as_ptr(), &mut holds)
        },
        OMIUM_ERR_CONDITION_ERROR,
        "",
        &["result.missing"],
    );
    fails(
        unsafe { omium_condition_holds(c"true".as_ptr(), c"[]".as_ptr(), &mut holds) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_condition_holds: argument `variables_json`",
        &["object"],
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    apply_policy(store, "defaults:\n  step_timeout: 1500ms\n");
    let mut b = omium_buffer::EMPTY;
    ok(unsafe {
        omium_store_policy_defaults(store, null(), c"onboarding".as_ptr(), c"a".as_ptr(), &mut b)
    });
    let d = take_json(&mut b);
    assert_eq!(d["defaults"]["step_timeout_ms"], 1500, "{d}");
    ok(unsafe { omium_store_close(store) });
}

#[test]
#[cfg(feature = "cluster")]
fn consensus_from_c_agrees_votes_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut c = null_mut();
    fails(
        unsafe { omium_coordinator_open(null_mut(), null(), &mut c) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_coordinator_open: argument `store` is NULL",
        &["embedded"],
    );
    ok(unsafe { omium_coordinator_open(store, null(), &mut c) });
    let mut b = omium_buffer::EMPTY;
    let req = cs(
        &json!({"execution_id": "x1", "sender": "planner", "targets": ["a", "b", "c"],
                         "message": {"plan": 1}})
        .to_string(),
    );
    ok(unsafe { omium_coordinator_broadcast(c, req.as_ptr(), &mut b) });
    let placed = take_json(&mut b);
    assert_eq!(placed["seq"], 1, "{placed}");
    let id = cs(placed["id"].as_str().unwrap());
    ok(unsafe { omium_coordinator_acknowledge(c, id.as_ptr(), c"a".as_ptr(), null(), &mut b) });
    assert_eq!(take_json(&mut b)["state"], "pending");
    ok(unsafe { omium_coordinator_acknowledge(c, id.as_ptr(), c"b".as_ptr(), null(), &mut b) });
    assert_eq!(take_json(&mut b)["state"], "agreed");
    ok(unsafe { omium_coordinator_await(c, id.as_ptr(), 5000, true, &mut b) });
    let m = take_json(&mut b);
    assert_eq!(m["message"], json!({"plan": 1}), "{m}");
    assert_eq!(m["acks"].as_array().unwrap().len(), 2, "{m}");
    fails(
        unsafe { omium_coordinator_acknowledge(c, id.as_ptr(), c"zed".as_ptr(), null(), &mut b) },
        OMIUM_ERR_NOT_A_TARGET,
        "",
        &["zed"],
    );
    fails(
        unsafe { omium_coordinator_message(c, c"nope".as_ptr(), &mut b) },
        OMIUM_ERR_MESSAGE_NOT_FOUND,
        "",
        &["nope"],
    );
    // Nobody answers the second message: a violation, recorded as the execution's failure.
    let req = cs(
        &json!({"execution_id": "x1", "sender": "planner", "targets": ["a"], "message": 2})
            .to_string(),
    );
    ok(unsafe { omium_coordinator_broadcast(c, req.as_ptr(), &mut b) });
    let placed = take_json(&mut b);
    let id2 = cs(placed["id"].as_str().unwrap());
    fails(
        unsafe { omium_coordinator_await(c, id2.as_ptr(), 50, true, &mut b) },
        OMIUM_ERR_CONSENSUS_VIOLATION,
        "",
        &[],
    );
    ok(unsafe { omium_coordinator_status(c, c"x1".as_ptr(), &mut b) });
    let list = take_json(&mut b);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let vote = cs("\"yes\"");
    fails(
        unsafe {
            omium_coordinator_acknowledge(c, id.as_ptr(), c"c".as_ptr(), c"{nope".as_ptr(), &mut b)
        },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_coordinator_acknowledge: argument `vote_json`",
        &["JSON"],
    );
    ok(unsafe {
        omium_coordinator_acknowledge(c, id.as_ptr(), c"c".as_ptr(), vote.as_ptr(), &mut b)
    });
    take_json(&mut b);
    ok(unsafe { omium_coordinator_close(c) });
    ok(unsafe { omium_coordinator_close(null_mut()) });
    ok(unsafe { omium_store_close(store) });
}

#[test]
#[cfg(feature = "cluster")]
fn remote_sync_pushes_to_a_real_node_and_another_store_pulls() {
    // A one-node cluster in this process, on 127.0.0.1, with its own store.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let node_store = omium_core::Store::open(node_dir.path()).unwrap();
    let node = rt
        .block_on(omium_core::consensus::Node::start(
            &node_store,
            omium_core::consensus::NodeConfig {
                id: 1,
                listen: "127.0.0.1:0".into(),
                advertise: None,
                join: None,
                insecure_loopback: true,
                tls: None,
            },
        ))
        .unwrap();
    let addr = node.addr().to_string();
    rt.block_on(
        omium_core::consensus::network::RemoteClient::new(std::slice::from_ref(&addr))
            .unwrap()
            .admin(
                "/cluster/init",
                &json!({}),
                std::time::Duration::from_secs(30),
            ),
    )
    .unwrap();
    let nodes = cs(&addr);

    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (open(d1.path()), open(d2.path()));
    let mut b = omium_buffer::EMPTY;
    fails(
        unsafe { omium_store_pull(s1, c"p1".as_ptr(), &mut b) },
        OMIUM_ERR_INVALID_STATE,
        "",
        &["omium_store_attach_sync"],
    );
    fails(
        unsafe { omium_store_attach_sync(s1, c" , ".as_ptr(), null()) },
        OMIUM_ERR_INVALID_ARGUMENT,
        "omium_store_attach_sync: argument `nodes`",
        &["host:port"],
    );
    ok(unsafe { omium_store_attach_sync(s1, nodes.as_ptr(), c"sync".as_ptr()) });
    fails(
        unsafe { omium_store_attach_sync(s1, nodes.as_ptr(), null()) },
        OMIUM_ERR_INVALID_STATE,
        "",
        &["already syncs"],
    );
    let run = begin(s1, "p1");
    step(run, "a", b"one");
    step(run, "b", b"two");
    ok(unsafe { omium_run_fail(run, c"the worker stopped".as_ptr()) });
    ok(unsafe { omium_run_free(run) });
    ok(unsafe { omium_store_sync_flush(s1, 30_000) });
    ok(unsafe { omium_store_sync_status(s1, &mut b) });
    let report = take_json(&mut b);
    assert!(
        report["checkpoints_pushed"].as_u64().unwrap() >= 2,
        "{report}"
    );
    // The first store is gone; a second one pulls the execution and resumes it after step b.
    ok(unsafe { omium_store_close(s1) });
    ok(unsafe { omium_store_attach_sync(s2, nodes.as_ptr(), c"sync".as_ptr()) });
    ok(unsafe { omium_store_pull(s2, c"p1".as_ptr(), &mut b) });
    let pulled = take_json(&mut b);
    assert_eq!(pulled["id"], "p1", "{pulled}");
    let run = begin(s2, "p1");
    assert_eq!(step(run, "a", b"other"), (b"one".to_vec(), true));
    assert_eq!(step(run, "b", b"other"), (b"two".to_vec(), true));
    assert_eq!(step(run, "c", b"three"), (b"three".to_vec(), false));
    ok(unsafe { omium_run_complete(run, null(), 0) });
    ok(unsafe { omium_run_free(run) });
    fails(
        unsafe { omium_store_pull(s2, c"nobody".as_ptr(), &mut b) },
        OMIUM_ERR_EXECUTION_NOT_FOUND,
        "",
        &["nobody"],
    );
    ok(unsafe { omium_store_pull_abandoned(s2, &mut b) });
    take_json(&mut b);
    ok(unsafe { omium_store_close(s2) });
    drop(node);
}

#[test]
#[cfg(not(feature = "cluster"))]
fn a_library_without_the_cluster_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut c = null_mut();
    fails(
        unsafe { omium_coordinator_open(store, null(), &mut c) },
        OMIUM_ERR_CONSENSUS_UNAVAILABLE,
        "omium_coordinator_open: this libomium was built without the `cluster` feature",
        &["default features"],
    );
    assert!(c.is_null());
    fails(
        unsafe { omium_store_attach_sync(store, c"127.0.0.1:7001".as_ptr(), null()) },
        OMIUM_ERR_INVALID_STATE,
        "omium_store_attach_sync: this libomium was built without the `cluster` feature",
        &[],
    );
    ok(unsafe { omium_store_close(store) });
}
