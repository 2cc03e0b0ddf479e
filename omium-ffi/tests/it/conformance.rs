//! The cross-binding conformance scenarios (`tests/conformance/README.md`) through the C API:
//! every scenario whose features the C API has (durable steps, SIGKILLs, rollbacks, forks) runs with
//! the exported `omium_*` functions only — exactly the calls a C program makes — each run in a
//! process of its own (this test binary again, as `conformance::worker`). The checks are the
//! engine runner's (omium-core's `tests/it/conformance/check.rs`), so the expectations are the
//! same as in Rust, Python and Node.

#[path = "../../../omium-core/tests/it/conformance/check.rs"]
mod check;

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::ptr;

use omium::*;
use serde_json::{json, Value};

use check::{emit, plan_of, run_all, step_body, worker_env};

const FEATURES: &[&str] = &["kill", "rollback", "fork"];

#[test]
fn scenarios_behave_the_same_through_the_c_api() {
    // Retries, conditions, recovery policies and resumes are the host's in C (not run here).
    run_all(FEATURES, "conformance::worker", 25);
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// The status's name (`non_determinism`, ...), as the scenarios name errors.
fn name_of(status: omium_status) -> String {
    // SAFETY: omium_status_name returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(omium_status_name(status)) }
        .to_string_lossy()
        .into_owned()
}

/// `Err(code)` unless the call succeeded.
fn ok(status: omium_status) -> Result<(), String> {
    if status == OMIUM_OK {
        Ok(())
    } else {
        Err(name_of(status))
    }
}

/// The bytes of a buffer the library returned, freeing it.
fn take(mut b: omium_buffer) -> Vec<u8> {
    let v = if b.data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the library returned `len` readable bytes at `data`.
        unsafe { std::slice::from_raw_parts(b.data, b.len) }.to_vec()
    };
    // SAFETY: a buffer the library filled, freed once.
    unsafe { omium_buffer_free(&mut b) };
    v
}

fn empty() -> omium_buffer {
    omium_buffer {
        data: ptr::null_mut(),
        len: 0,
    }
}

/// One run or operation of a scenario, through the C API, in the process the runner starts.
#[test]
#[ignore = "the worker process of the conformance scenarios"]
fn worker() {
    let Some((scenario, index, store_path)) = worker_env() else {
        return;
    };
    let store_path = c(&store_path);
    let mut store: *mut omium_store = ptr::null_mut();
    // SAFETY: valid C strings and an out pointer.
    ok(unsafe { omium_store_open(store_path.as_ptr(), ptr::null(), &mut store) }).unwrap();
    let item = &scenario["runs"][index];
    let execution = item["execution"].as_str().unwrap_or("e1").to_string();
    let result = match item["op"].as_str() {
        Some(op) => operate(store, op, item, &execution),
        None => run(store, &scenario, item, &execution),
    };
    emit(json!({ "result": result }));
    // SAFETY: the handle opened above, closed once.
    ok(unsafe { omium_store_close(store) }).unwrap();
}

fn operate(store: *mut omium_store, op: &str, item: &Value, execution: &str) -> Value {
    let id = c(execution);
    let (done, of) = match op {
        "rollback" => {
            let to = item["to"].as_str().map(c);
            // SAFETY: valid C strings or NULL; no marker id asked for.
            let done = ok(unsafe {
                omium_store_rollback(
                    store,
                    id.as_ptr(),
                    to.as_ref().map_or(ptr::null(), |t| t.as_ptr()),
                    ptr::null(),
                    ptr::null_mut(),
                    0,
                )
            });
            (done, execution.to_string())
        }
        "fork" => {
            let new_id = item["new_id"].as_str().unwrap().to_string();
            let (at, new) = (c(item["at"].as_str().unwrap()), c(&new_id));
            // The execution's states are JSON (the runner records them so).
            let state = item.get("state").map(|v| serde_json::to_vec(v).unwrap());
            let (ptr_, len) = state
                .as_ref()
                .map_or((ptr::null(), 0), |s| (s.as_ptr(), s.len()));
            // SAFETY: valid C strings, `len` readable bytes or NULL, no output asked for.
            let done = ok(unsafe {
                omium_store_fork(
                    store,
                    id.as_ptr(),
                    at.as_ptr(),
                    new.as_ptr(),
                    ptr_,
                    len,
                    ptr::null_mut(),
                )
            });
            (done, new_id)
        }
        other => panic!("the C API has no op {other:?}"),
    };
    match done {
        Ok(()) => json!({"outcome": "done", "status": status(store, &of)}),
        Err(code) => json!({"outcome": "error", "error": code}),
    }
}

/// The execution's status, from `omium_store_execution`.
fn status(store: *mut omium_store, execution: &str) -> Value {
    let id = c(execution);
    let mut out = empty();
    // SAFETY: valid C string and out buffer.
    ok(unsafe { omium_store_execution(store, id.as_ptr(), &mut out) }).unwrap();
    let v: Value = serde_json::from_slice(&take(out)).unwrap();
    v["status"].clone()
}

fn run(store: *mut omium_store, scenario: &Value, item: &Value, execution: &str) -> Value {
    let id = c(execution);
    let mut exists = empty();
    // SAFETY: valid C string and out buffer.
    if unsafe { omium_store_execution(store, id.as_ptr(), &mut exists) } == OMIUM_OK {
        take(exists);
        if status(store, execution) == "completed" {
            let (mut found, mut out) = (false, empty());
            // SAFETY: valid C string, out bool and out buffer.
            ok(unsafe { omium_store_execution_output(store, id.as_ptr(), &mut found, &mut out) })
                .unwrap();
            let output: Value = serde_json::from_slice(&take(out)).unwrap();
            assert!(found);
            return json!({"outcome": "completed", "output": output});
        }
    }
    let (specs, flow, mut x) = plan_of(scenario, item);
    let workflow = c("conformance");
    let mut run: *mut omium_run = ptr::null_mut();
    // SAFETY: valid C strings and out pointer.
    if let Err(code) =
        ok(unsafe { omium_store_begin(store, id.as_ptr(), workflow.as_ptr(), &mut run) })
    {
        return json!({"outcome": "error", "error": code});
    }
    // States are JSON, and say so: omium show and every binding decode them.
    let metadata = c(r#"{"omium.codec": "json"}"#);
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let result = (|| {
        for name in &flow {
            let name = name.as_str().unwrap();
            let cname = c(name);
            let (mut seq, mut found, mut state) = (0u64, false, empty());
            // SAFETY: the run handle, a valid C string and out pointers.
            unsafe {
                ok(omium_run_reserve(run, &mut seq))?;
                ok(omium_run_recorded(
                    run,
                    seq,
                    cname.as_ptr(),
                    &mut found,
                    &mut state,
                ))?;
            }
            if found {
                x = serde_json::from_slice(&take(state)).unwrap();
                continue;
            }
            let n = calls.entry(name.to_string()).or_default();
            *n += 1;
            x = match step_body(name, &specs[name], item, &x, *n) {
                Ok(v) => v,
                Err(class) => {
                    let message = c(&format!("{class}: {name} failed (attempt {n})"));
                    // SAFETY: the run handle and a valid C string.
                    ok(unsafe { omium_run_fail(run, message.as_ptr()) })?;
                    return Err(class);
                }
            };
            let bytes = serde_json::to_vec(&x).unwrap();
            // SAFETY: the run handle, valid C strings and `bytes.len()` readable bytes.
            ok(unsafe {
                omium_run_record_with_metadata(
                    run,
                    seq,
                    cname.as_ptr(),
                    bytes.as_ptr(),
                    bytes.len(),
                    metadata.as_ptr(),
                    ptr::null_mut::<c_char>(),
                    0,
                )
            })?;
        }
        let bytes = serde_json::to_vec(&x).unwrap();
        // SAFETY: the run handle and `bytes.len()` readable bytes.
        ok(unsafe { omium_run_complete(run, bytes.as_ptr(), bytes.len()) })?;
        Ok(x.clone())
    })();
    // SAFETY: the run handle begun above, freed once.
    ok(unsafe { omium_run_free(run) }).unwrap();
    match result {
        Ok(output) => json!({"outcome": "completed", "output": output}),
        Err(code) => json!({"outcome": "error", "error": code}),
    }
}
