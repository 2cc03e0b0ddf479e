//! The cross-binding conformance scenarios (`tests/conformance/README.md`) through the C API:
//! every scenario whose features the C API has runs with the exported `omium_*` functions only —
//! exactly the calls a C program makes — each run in a process of its own (this test binary
//! again, as `conformance::worker`). The worker is a C host as the bindings are hosts: it calls
//! the step bodies, checks their conditions with `omium_condition_holds`, enforces the policy's
//! step timeout (`omium_store_policy_defaults`), and on a failure drives the core's recovery
//! driver (`omium_store_start_recovery` / `omium_recovery_advance`); consensus hand-offs go
//! through `omium_coordinator_*`. The checks are the engine runner's (omium-core's
//! `tests/it/conformance/check.rs`), so the expectations are the same as in Rust, Python and
//! Node.

#[path = "../../../omium-core/tests/it/conformance/check.rs"]
mod check;

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::ptr;
use std::time::Duration;

use omium::*;
use serde_json::{json, Value};

use check::{emit, expand, plan_of, run_all, timed, worker_env};

const FEATURES: &[&str] = &[
    "kill",
    "rollback",
    "fork",
    "retries",
    "conditions",
    "policy",
    "recovery",
    "timeouts",
    "resume",
    "consensus",
    "events",
    "metrics",
    "alerts",
    "delete",
];

#[test]
fn scenarios_behave_the_same_through_the_c_api() {
    // Every scenario but the recorded LLM/tool calls ("calls"), which C positions by hand.
    run_all(FEATURES, "conformance::worker", 59);
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

/// The JSON a call wrote into a buffer.
fn take_json(b: omium_buffer) -> Value {
    serde_json::from_slice(&take(b)).unwrap()
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
    if let (0, Some(policy)) = (index, scenario["policy"].as_str()) {
        let policy = c(policy);
        // SAFETY: valid C strings; no version wanted.
        ok(unsafe {
            omium_store_apply_policy(
                store,
                ptr::null(),
                ptr::null(),
                policy.as_ptr(),
                ptr::null_mut(),
            )
        })
        .unwrap();
    }
    let item = &scenario["runs"][index];
    let execution = item["execution"].as_str().unwrap_or("e1").to_string();
    let mut host = Host::new(store, &scenario);
    let result = match item["op"].as_str() {
        Some(op) => operate(store, op, item, &execution),
        None => run(&mut host, &scenario, item, &execution),
    };
    drop(host);
    emit(json!({ "result": result }));
    // SAFETY: the handle opened above, closed once.
    ok(unsafe { omium_store_close(store) }).unwrap();
}

/// What a run carries besides the store: the step bodies' call counts, the consensus
/// coordinator (opened at the first hand-off) and the agents' answers left.
struct Host {
    store: *mut omium_store,
    /// The execution being run.
    execution: String,
    calls: BTreeMap<String, u64>,
    coordinator: *mut omium_coordinator,
    answers: BTreeMap<String, Vec<Value>>,
    hooks: Value,
}

impl Host {
    fn new(store: *mut omium_store, scenario: &Value) -> Host {
        let mut answers = BTreeMap::new();
        for (agent, list) in scenario["hooks"]["answers"]
            .as_object()
            .into_iter()
            .flatten()
        {
            answers.insert(agent.clone(), list.as_array().unwrap().clone());
        }
        Host {
            store,
            execution: String::new(),
            calls: BTreeMap::new(),
            coordinator: ptr::null_mut(),
            answers,
            hooks: scenario["hooks"].clone(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SAFETY: NULL or the coordinator this host opened, closed once.
        ok(unsafe { omium_coordinator_close(self.coordinator) }).unwrap();
    }
}

fn operate(store: *mut omium_store, op: &str, item: &Value, execution: &str) -> Value {
    let id = c(execution);
    let state = item.get("state").map(|v| serde_json::to_vec(v).unwrap());
    let (state_ptr, state_len) = state
        .as_ref()
        .map_or((ptr::null(), 0), |s| (s.as_ptr(), s.len()));
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
            // SAFETY: valid C strings, `state_len` readable bytes or NULL, no output asked for.
            let done = ok(unsafe {
                omium_store_fork(
                    store,
                    id.as_ptr(),
                    at.as_ptr(),
                    new.as_ptr(),
                    state_ptr,
                    state_len,
                    ptr::null_mut(),
                )
            });
            (done, new_id)
        }
        "resume" => {
            // SAFETY: valid C string, `state_len` readable bytes or NULL, no output asked for.
            let done = ok(unsafe {
                omium_store_resume(
                    store,
                    id.as_ptr(),
                    state_ptr,
                    state_len,
                    ptr::null(),
                    ptr::null_mut(),
                )
            });
            (done, execution.to_string())
        }
        "escalate" | "delete" => {
            let (action, reason) = (c(op), item["reason"].as_str().map(c));
            let mut reply = empty();
            // SAFETY: valid C strings or NULL, and an out buffer.
            let done = ok(unsafe {
                omium_store_control(
                    store,
                    action.as_ptr(),
                    id.as_ptr(),
                    reason.as_ref().map_or(ptr::null(), |r| r.as_ptr()),
                    ptr::null(),
                    &mut reply,
                )
            });
            let reply = done.is_ok().then(|| take_json(reply));
            if let (Some(reply), "delete") = (&reply, op) {
                // An erased execution has no status to report: what was erased instead.
                return json!({"outcome": "done", "erased": reply["erased"]});
            }
            (done, execution.to_string())
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
    take_json(out)["status"].clone()
}

/// How a run of the workflow ended early.
enum End {
    /// The policy rolled back: roll back as decided, then run the workflow again.
    RolledBack { to: String, failure: Value },
    /// The run ends with this error code (`paused`: the execution is paused).
    Error { code: String, message: String },
}

fn run(host: &mut Host, scenario: &Value, item: &Value, execution: &str) -> Value {
    let store = host.store;
    host.execution = execution.to_string();
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
            assert!(found);
            return json!({"outcome": "completed", "output": take_json(out)});
        }
    }
    let input = plan_of(scenario, item).2;
    let input_bytes = serde_json::to_vec(&input).unwrap();
    // States are JSON, and say so: omium show and every binding decode them.
    let options = c(r#"{"workflow": "conformance", "labels": {"omium.codec": "json"}}"#);
    let mut rollbacks = 0;
    loop {
        let mut run: *mut omium_run = ptr::null_mut();
        // SAFETY: valid C strings, `input_bytes` readable, an out pointer.
        if let Err(code) = ok(unsafe {
            omium_store_begin_with(
                store,
                id.as_ptr(),
                options.as_ptr(),
                input_bytes.as_ptr(),
                input_bytes.len(),
                &mut run,
            )
        }) {
            return json!({"outcome": "error", "error": code});
        }
        let result = steps(host, run, scenario, item, input.clone(), rollbacks);
        let end = match result {
            Ok(x) => {
                let bytes = serde_json::to_vec(&x).unwrap();
                // SAFETY: the run handle and `bytes.len()` readable bytes.
                ok(unsafe { omium_run_complete(run, bytes.as_ptr(), bytes.len()) }).unwrap();
                free_run(run);
                return json!({"outcome": "completed", "output": x});
            }
            Err(end) => end,
        };
        match end {
            End::RolledBack { to, failure } => {
                free_run(run);
                let (to, failure) = (c(&to), c(&failure.to_string()));
                // SAFETY: valid C strings; no marker id asked for.
                ok(unsafe {
                    omium_store_rollback_as_decided(
                        store,
                        id.as_ptr(),
                        to.as_ptr(),
                        failure.as_ptr(),
                        ptr::null_mut(),
                        0,
                    )
                })
                .unwrap();
                rollbacks += 1;
            }
            End::Error { code, message } => {
                let message = c(&message);
                // SAFETY: the run handle and a valid C string.
                ok(unsafe {
                    if code == "paused" {
                        omium_run_pause(run, message.as_ptr())
                    } else {
                        omium_run_fail(run, message.as_ptr())
                    }
                })
                .unwrap();
                free_run(run);
                return json!({"outcome": "error", "error": code});
            }
        }
    }
}

fn free_run(run: *mut omium_run) {
    // SAFETY: a run handle begun by the worker, freed once.
    ok(unsafe { omium_run_free(run) }).unwrap();
}

/// A failed attempt: the error code a run reports, and what the recovery gets (`kind`: the
/// trigger when the host knows it; `fatal`: an error of Omium's that no policy handles).
struct Failure {
    code: String,
    message: String,
    kind: Option<&'static str>,
    fatal: bool,
}

impl Failure {
    /// An Omium error of a call (the last error's message).
    fn omium(code: String, kind: Option<&'static str>) -> Failure {
        Failure {
            message: last_error(),
            fatal: kind.is_none(),
            code,
            kind,
        }
    }
}

fn last_error() -> String {
    // SAFETY: omium_last_error returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(omium_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// The workflow's steps in this run: replayed when recorded, else called and recorded.
fn steps(
    host: &mut Host,
    run: *mut omium_run,
    scenario: &Value,
    item: &Value,
    mut x: Value,
    rollbacks: u32,
) -> Result<Value, End> {
    let (specs, flow, _) = plan_of(scenario, item);
    let error = |code: String| End::Error {
        message: last_error(),
        code,
    };
    for name in &flow {
        let name = name.as_str().unwrap();
        let cname = c(name);
        let (mut seq, mut found, mut state) = (0u64, false, empty());
        // SAFETY: the run handle, a valid C string and out pointers.
        unsafe {
            ok(omium_run_reserve(run, &mut seq)).map_err(error)?;
            ok(omium_run_recorded(
                run,
                seq,
                cname.as_ptr(),
                &mut found,
                &mut state,
            ))
            .map_err(error)?;
        }
        if found {
            x = take_json(state);
            continue;
        }
        let spec = &specs[name];
        if !holds(spec, "pre", &x, None) {
            return Err(End::Error {
                code: "condition_failed".into(),
                message: format!("step {name:?}: a precondition does not hold"),
            });
        }
        x = match attempt(host, name, spec, item, &x) {
            Ok(v) => v,
            Err(f) if f.fatal => {
                return Err(End::Error {
                    code: f.code,
                    message: f.message,
                })
            }
            Err(f) => recover(host, item, name, spec, &x, f, rollbacks, seq)?,
        };
        // What the body reported spending, and the codec of the state.
        let mut metadata = json!({"omium.codec": "json"});
        if let Some(usd) = spec["spend_usd"].as_f64() {
            metadata["omium.cost_usd"] = json!(usd.to_string());
        }
        let (metadata, bytes) = (c(&metadata.to_string()), serde_json::to_vec(&x).unwrap());
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
        })
        .unwrap();
    }
    Ok(x)
}

/// Calls a step body (with its time limit) and checks its postconditions and its consensus
/// hand-off, as a binding's step wrapper does.
fn attempt(
    host: &mut Host,
    name: &str,
    spec: &Value,
    item: &Value,
    x: &Value,
) -> Result<Value, Failure> {
    let limit = step_timeout(host.store, name, spec);
    let n = host.calls.entry(name.to_string()).or_default();
    *n += 1;
    let n = *n;
    let result = timed(name, spec, item, x, n, limit)
        .map_err(|message| Failure {
            code: "step_timeout".into(),
            message,
            kind: Some("timeout_error"),
            fatal: false,
        })?
        .map_err(|class| Failure {
            message: format!("{class}: {name} failed (attempt {n})"),
            code: class,
            kind: None,
            fatal: false,
        })?;
    if !holds(spec, "post", x, Some(&result)) {
        return Err(Failure {
            code: "condition_failed".into(),
            message: format!("step {name:?}: a postcondition does not hold"),
            kind: Some("postcondition_failed"),
            fatal: false,
        });
    }
    if let Some(handoff) = spec.get("consensus") {
        hand_off(host, name, handoff, &result)?;
    }
    Ok(result)
}

/// The step's own `timeout_ms`, else the one its policy gives (`omium_store_policy_defaults`).
fn step_timeout(store: *mut omium_store, name: &str, spec: &Value) -> Option<Duration> {
    if let Some(ms) = spec["timeout_ms"].as_u64() {
        return Some(Duration::from_millis(ms));
    }
    let (step, mut out) = (c(name), empty());
    // SAFETY: valid C strings and out buffer.
    ok(unsafe {
        omium_store_policy_defaults(
            store,
            ptr::null(),
            c"conformance".as_ptr(),
            step.as_ptr(),
            &mut out,
        )
    })
    .unwrap();
    take_json(out)["defaults"]["step_timeout_ms"]
        .as_u64()
        .map(Duration::from_millis)
}

/// A step's consensus hand-off through `omium_coordinator_*`: the result broadcast to the
/// targets, each answering as the scenario's `answers` say (`false`: silent, `true`:
/// acknowledge, another value: a vote), then the wait; a violation is the step's failure.
fn hand_off(host: &mut Host, step: &str, handoff: &Value, result: &Value) -> Result<(), Failure> {
    if host.coordinator.is_null() {
        // SAFETY: the open store, no nodes (the embedded group), an out pointer.
        ok(unsafe { omium_coordinator_open(host.store, ptr::null(), &mut host.coordinator) })
            .unwrap();
    }
    let coordinator = host.coordinator;
    let execution_id = host.execution.clone();
    let targets: Vec<String> = handoff["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let request = c(
        &json!({"execution_id": execution_id, "sender": step, "targets": targets,
                            "message": result})
        .to_string(),
    );
    let mut out = empty();
    // SAFETY: the coordinator, a valid C string and an out buffer.
    ok(unsafe { omium_coordinator_broadcast(coordinator, request.as_ptr(), &mut out) })
        .map_err(|code| Failure::omium(code, None))?;
    let message_id = c(take_json(out)["id"].as_str().unwrap());
    for agent in &targets {
        let answers = host.answers.entry(agent.clone()).or_default();
        let answer = if answers.is_empty() {
            json!(true)
        } else {
            answers.remove(0)
        };
        let vote = match answer {
            Value::Bool(false) => continue,
            Value::Bool(true) | Value::Null => None,
            other => Some(c(&other.to_string())),
        };
        let (agent, mut out) = (c(agent), empty());
        // SAFETY: the coordinator, valid C strings or NULL, an out buffer.
        ok(unsafe {
            omium_coordinator_acknowledge(
                coordinator,
                message_id.as_ptr(),
                agent.as_ptr(),
                vote.as_ref().map_or(ptr::null(), |v| v.as_ptr()),
                &mut out,
            )
        })
        .map_err(|code| Failure::omium(code, None))?;
        take(out);
    }
    let timeout = handoff["timeout_ms"].as_u64().unwrap_or(5000);
    let mut out = empty();
    // SAFETY: the coordinator, a valid C string and an out buffer.
    ok(unsafe {
        omium_coordinator_await(coordinator, message_id.as_ptr(), timeout, false, &mut out)
    })
    .map_err(|code| Failure::omium(code, Some("consensus_violation")))?;
    take(out);
    Ok(())
}

/// Whether the step's `pre` or `post` conditions hold (`omium_condition_holds` over `args` and
/// `result`).
fn holds(spec: &Value, which: &str, x: &Value, result: Option<&Value>) -> bool {
    spec[which].as_array().into_iter().flatten().all(|cond| {
        let mut vars = json!({"args": [x]});
        if let Some(r) = result {
            vars["result"] = r.clone();
        }
        let (cond, vars, mut holds) = (c(cond.as_str().unwrap()), c(&vars.to_string()), false);
        // SAFETY: valid C strings and an out bool.
        ok(unsafe { omium_condition_holds(cond.as_ptr(), vars.as_ptr(), &mut holds) }).unwrap();
        holds
    })
}

/// Reports `event` to the recovery and returns the next command.
fn advance(recovery: *mut omium_recovery, event: Value) -> Value {
    let (event, mut out) = (c(&event.to_string()), empty());
    // SAFETY: the recovery, a valid C string and an out buffer.
    ok(unsafe { omium_recovery_advance(recovery, event.as_ptr(), &mut out) }).unwrap();
    take_json(out)
}

/// A failed step, handled as the policy says: the core's driver (through the C API) decides and
/// records; this calls the body again, the scenario's fallbacks and fixers, and waits the
/// backoffs.
#[allow(clippy::too_many_arguments)]
fn recover(
    host: &mut Host,
    item: &Value,
    name: &str,
    spec: &Value,
    x: &Value,
    first: Failure,
    rollbacks: u32,
    seq: u64,
) -> Result<Value, End> {
    let execution_id = host.execution.clone();
    let failure = c(&json!({
        "execution_id": execution_id, "workflow": "conformance", "step": name, "seq": seq,
        "kind": first.kind, "error_classes": [first.code], "message": first.message,
        "retries": spec["retries"].as_u64().unwrap_or(0), "rollbacks_so_far": rollbacks,
    })
    .to_string());
    let mut recovery: *mut omium_recovery = ptr::null_mut();
    // SAFETY: the store, a valid C string and an out pointer.
    ok(unsafe { omium_store_start_recovery(host.store, failure.as_ptr(), &mut recovery) }).unwrap();
    let hooks = host.hooks.clone();
    let (mut last, mut fixed, mut value) = (first, x.clone(), Value::Null);
    let mut event = json!({"event": "start"});
    let end = loop {
        let mut call = |host: &mut Host, arg: &Value, last: &mut Failure| match attempt(
            host, name, spec, item, arg,
        ) {
            Ok(v) => {
                value = v;
                json!({"event": "called"})
            }
            Err(f) => {
                let e = json!({"event": "called", "ok": false, "note": f.message, "recoverable": !f.fatal});
                *last = f;
                e
            }
        };
        let command = advance(recovery, event);
        let params = &command["params"];
        event = match command["name"].as_str().unwrap() {
            "retry" => {
                std::thread::sleep(Duration::from_millis(params["delay_ms"].as_u64().unwrap()));
                call(host, x, &mut last)
            }
            "call" => call(host, &fixed.clone(), &mut last),
            "fallback" => match hooks["fallbacks"].get(params["function"].as_str().unwrap()) {
                Some(v) => {
                    value = expand(v);
                    json!({"event": "called"})
                }
                None => json!({"event": "missing"}),
            },
            "fix" => match hooks["fixers"].get(params["fix"].as_str().unwrap()) {
                Some(v) => {
                    fixed = expand(v);
                    json!({"event": "fixed"})
                }
                None => json!({"event": "missing"}),
            },
            "analyze" => json!({"event": "missing"}),
            "notify" => json!({"event": "notified"}),
            "return" => break Ok(value),
            "reraise" => {
                break Err(End::Error {
                    code: last.code,
                    message: last.message,
                })
            }
            "raise" => {
                let code = params["code"].as_str().unwrap().to_string();
                break Err(match code.as_str() {
                    "rolled_back" => End::RolledBack {
                        to: params["to"].as_str().unwrap().to_string(),
                        failure: params["failure"].clone(),
                    },
                    "paused" => End::Error {
                        code,
                        message: params["reason"].as_str().unwrap().to_string(),
                    },
                    _ => End::Error {
                        code,
                        message: params["message"].as_str().unwrap().to_string(),
                    },
                });
            }
            other => panic!("the recovery driver gave an unknown command {other:?}"),
        };
    };
    // SAFETY: the recovery started above, freed once.
    ok(unsafe { omium_recovery_free(recovery) }).unwrap();
    end
}
