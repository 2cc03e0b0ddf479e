//! The cross-binding conformance scenarios (`tests/conformance/README.md`) on the engine itself:
//! every scenario runs through `Store`/`Run`, each run in a process of its own (this test binary
//! again, as `conformance::worker`), with the same expectations pytest and `node --test` check.
//! The worker is a host as a binding is: it calls the step bodies, checks their CEL conditions,
//! and on a failure drives the core's recovery driver (retries, policies, fallbacks, fixes,
//! rollbacks, pauses, escalations) exactly as Python and Node do.

pub mod check;

use std::collections::BTreeMap;

use omium_core::expr::Condition;
use omium_core::policy::{Scope, Trigger};
use omium_core::recovery::driver::{Command as Do, Driver, Event, Failed};
use omium_core::recovery::{roll_back_as_decided, step_retry};
use omium_core::value::{encode_state, CODEC_KEY};
use omium_core::{
    BeginOptions, FailureInput, ForkOptions, NewCheckpoint, RollbackTarget, Run, Status, Store,
};
use serde_json::{json, Value};

use check::{emit, expand, plan_of, run_all, step_body, worker_env};

const FEATURES: &[&str] = &[
    "kill",
    "retries",
    "conditions",
    "rollback",
    "fork",
    "resume",
    "policy",
    "recovery",
];

#[test]
fn scenarios_behave_the_same_on_the_engine() {
    run_all(FEATURES, "conformance::worker", 50);
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// One run or operation of a scenario, in the process `scenarios_behave_the_same_on_the_engine`
/// starts. Steps are recorded as the bindings record them, with the `json` codec named.
#[test]
#[ignore = "the worker process of the conformance scenarios"]
fn worker() {
    let Some((scenario, index, store)) = worker_env() else {
        return;
    };
    let store = Store::open(store).unwrap();
    if let (0, Some(policy)) = (index, scenario["policy"].as_str()) {
        store
            .apply_policy("default", &Scope::Global, policy, None, None)
            .unwrap();
    }
    let item = &scenario["runs"][index];
    let execution = item["execution"].as_str().unwrap_or("e1").to_string();
    let result = if let Some(op) = item["op"].as_str() {
        operate(&store, op, item, &execution)
    } else {
        run(&store, &scenario, item, &execution)
    };
    emit(json!({ "result": result }));
}

fn operate(store: &Store, op: &str, item: &Value, execution: &str) -> Value {
    let state = item.get("state").map(json_bytes);
    let done = match op {
        "rollback" => {
            let to = item["to"]
                .as_str()
                .map(RollbackTarget::parse)
                .unwrap_or(RollbackTarget::LastConsistent);
            store
                .rollback(execution, &to, None)
                .map(|_| execution.to_string())
        }
        "fork" => {
            let new_id = item["new_id"].as_str().unwrap().to_string();
            let state = state.map(|s| encode_state(Some("json"), &s, "fork").unwrap());
            store
                .fork(
                    execution,
                    &RollbackTarget::parse(item["at"].as_str().unwrap()),
                    ForkOptions {
                        new_execution_id: Some(new_id.clone()),
                        state,
                    },
                )
                .map(|_| new_id)
        }
        "resume" => {
            let state = state.map(|s| encode_state(Some("json"), &s, "resume").unwrap());
            store
                .resume(execution, state.as_deref(), None)
                .map(|_| execution.to_string())
        }
        other => panic!("the Rust runner has no op {other:?}"),
    };
    match done {
        Ok(id) => {
            json!({"outcome": "done", "status": store.execution(&id).unwrap().status.to_string()})
        }
        Err(e) => json!({"outcome": "error", "error": e.code()}),
    }
}

/// How a run of the workflow ended early.
enum End {
    /// The policy rolled back: run the workflow again after the rollback.
    RolledBack { to: String, failure: Value },
    /// The run ends with this error code (`paused`: the execution is paused).
    Error { code: String, message: String },
}

fn run(store: &Store, scenario: &Value, item: &Value, execution: &str) -> Value {
    if let Ok(e) = store.execution(execution) {
        if e.status == Status::Completed {
            let out = store.execution_output(execution).unwrap().unwrap();
            return json!({"outcome": "completed", "output": serde_json::from_slice::<Value>(&out).unwrap()});
        }
    }
    let (_, _, input) = plan_of(scenario, item);
    let codec = BTreeMap::from([(CODEC_KEY.to_string(), "json".to_string())]);
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut rollbacks = 0;
    loop {
        let run = match store.begin(
            execution,
            BeginOptions {
                workflow: "conformance".into(),
                input: Some(json_bytes(&input)),
                labels: codec.clone(),
                ..Default::default()
            },
        ) {
            Ok(r) => r,
            Err(e) => return json!({"outcome": "error", "error": e.code()}),
        };
        match steps(
            store,
            &run,
            scenario,
            item,
            input.clone(),
            &mut calls,
            rollbacks,
        ) {
            Ok(x) => {
                run.complete(Some(&json_bytes(&x))).unwrap();
                return json!({"outcome": "completed", "output": x});
            }
            Err(End::RolledBack { to, failure }) => {
                drop(run);
                roll_back_as_decided(
                    &to,
                    &failure,
                    |t, reason| store.rollback(execution, t, Some(reason)),
                    || Ok(!store.history(execution)?.is_empty()),
                )
                .unwrap();
                rollbacks += 1;
            }
            Err(End::Error { code, message }) => {
                if code == "paused" {
                    run.pause(&message).unwrap();
                } else {
                    run.fail(&message).unwrap();
                }
                return json!({"outcome": "error", "error": code});
            }
        }
    }
}

/// A failed attempt: the error code a run reports, and what the recovery gets.
struct Failure {
    code: String,
    message: String,
    kind: Option<Trigger>,
}

/// Calls a step body (and checks its postconditions), as a binding's step wrapper does.
fn attempt(
    name: &str,
    spec: &Value,
    item: &Value,
    x: &Value,
    calls: &mut BTreeMap<String, u64>,
) -> Result<Value, Failure> {
    let n = calls.entry(name.to_string()).or_default();
    *n += 1;
    let result = step_body(name, spec, item, x, *n).map_err(|class| Failure {
        message: format!("{class}: {name} failed (attempt {n})"),
        code: class,
        kind: None,
    })?;
    if !holds(spec, "post", x, Some(&result)) {
        return Err(Failure {
            code: "condition_failed".into(),
            message: format!("step {name:?}: a postcondition does not hold"),
            kind: Some(Trigger::PostconditionFailed),
        });
    }
    Ok(result)
}

/// Whether the step's `pre` or `post` conditions hold (CEL over `args` and `result`).
fn holds(spec: &Value, which: &str, x: &Value, result: Option<&Value>) -> bool {
    spec[which].as_array().into_iter().flatten().all(|c| {
        let mut vars = vec![("args", json!([x]))];
        if let Some(r) = result {
            vars.push(("result", r.clone()));
        }
        Condition::compile(c.as_str().unwrap())
            .unwrap()
            .evaluate(&vars)
            .unwrap()
    })
}

/// The workflow's steps in this run: replayed when recorded, else called and recorded.
fn steps(
    store: &Store,
    run: &Run,
    scenario: &Value,
    item: &Value,
    mut x: Value,
    calls: &mut BTreeMap<String, u64>,
    rollbacks: u32,
) -> Result<Value, End> {
    let (specs, flow, _) = plan_of(scenario, item);
    let codec = BTreeMap::from([(CODEC_KEY.to_string(), "json".to_string())]);
    let error = |e: omium_core::Error| End::Error {
        code: e.code().into(),
        message: e.to_string(),
    };
    for name in &flow {
        let name = name.as_str().unwrap();
        let seq = run.reserve();
        if let Some(c) = run.recorded(seq, name, None).map_err(error)? {
            x = serde_json::from_slice(&store.read_state(&c).unwrap()).unwrap();
            continue;
        }
        let spec = &specs[name];
        if !holds(spec, "pre", &x, None) {
            return Err(End::Error {
                code: "condition_failed".into(),
                message: format!("step {name:?}: a precondition does not hold"),
            });
        }
        x = match attempt(name, spec, item, &x, calls) {
            Ok(v) => v,
            Err(f) => recover(
                store, run, scenario, item, name, spec, &x, f, calls, rollbacks, seq,
            )?,
        };
        run.record(
            seq,
            NewCheckpoint {
                name,
                state: &json_bytes(&x),
                metadata: codec.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    }
    Ok(x)
}

/// A failed step, handled as the policy says: the core's driver decides and records; this
/// calls the body again, the scenario's fallbacks and fixers, and waits the backoffs.
#[allow(clippy::too_many_arguments)]
fn recover(
    store: &Store,
    run: &Run,
    scenario: &Value,
    item: &Value,
    name: &str,
    spec: &Value,
    x: &Value,
    first: Failure,
    calls: &mut BTreeMap<String, u64>,
    rollbacks: u32,
    seq: u64,
) -> Result<Value, End> {
    let input = FailureInput {
        execution_id: run.execution_id().into(),
        workflow: "conformance".into(),
        tenant: "default".into(),
        step: Some(name.into()),
        seq: Some(seq),
        agent: "main".into(),
        kind: first.kind,
        error_classes: vec![first.code.clone()],
        message: first.message.clone(),
        step_retry: step_retry(spec["retries"].as_u64().unwrap_or(0) as u32),
        rollbacks_so_far: rollbacks,
        ..Default::default()
    };
    let effective = store
        .effective_policy("default", Some("conformance"), Some(name))
        .unwrap();
    let rec = store.start_recovery(input, effective).unwrap();
    let mut driver = Driver::new(
        Box::new(rec),
        run.execution_id(),
        format!("step {name:?}"),
        &first.message,
    );
    let hooks = &scenario["hooks"];
    let (mut last, mut fixed, mut value) = (first, x.clone(), Value::Null);
    let mut event = Event::Start;
    loop {
        let mut call = |arg: &Value, last: &mut Failure| match attempt(name, spec, item, arg, calls)
        {
            Ok(v) => {
                value = v;
                Event::Called(Ok(()))
            }
            Err(f) => {
                let failed = Failed {
                    message: f.message.clone(),
                    recoverable: true,
                };
                *last = f;
                Event::Called(Err(failed))
            }
        };
        event = match driver.advance(event).unwrap() {
            Do::Retry { delay, .. } => {
                std::thread::sleep(delay);
                call(x, &mut last)
            }
            Do::CallFixed => call(&fixed, &mut last),
            Do::Fallback { function } => match hooks["fallbacks"].get(&function) {
                Some(v) => {
                    value = expand(v);
                    Event::Called(Ok(()))
                }
                None => Event::Missing,
            },
            Do::Fix { fix, .. } => match hooks["fixers"].get(&fix) {
                Some(v) => {
                    fixed = expand(v);
                    Event::Fixed(Ok(()))
                }
                None => Event::Missing,
            },
            Do::Analyze { .. } => Event::Missing,
            Do::Notify { .. } => Event::Notified(Vec::new()),
            Do::Return => return Ok(value),
            Do::Reraise => {
                return Err(End::Error {
                    code: last.code,
                    message: last.message,
                })
            }
            Do::Raise { error, failure } => {
                return Err(match error {
                    omium_core::Error::RolledBack { to, .. } => End::RolledBack { to, failure },
                    omium_core::Error::Paused { reason, .. } => End::Error {
                        code: "paused".into(),
                        message: reason,
                    },
                    other => End::Error {
                        code: other.code().into(),
                        message: other.to_string(),
                    },
                })
            }
        };
    }
}
