//! The cross-binding conformance scenarios (`tests/conformance/README.md`) on the engine itself:
//! every scenario runs through `Store`/`Run`, each run in a process of its own (this test binary
//! again, as `conformance::worker`), with the same expectations pytest and `node --test` check.
//! The worker is a host as a binding is: it calls the step bodies, checks their CEL conditions,
//! and on a failure drives the core's recovery driver (retries, policies, fallbacks, fixes,
//! rollbacks, pauses, escalations) exactly as Python and Node do.

pub mod check;

use std::collections::BTreeMap;

use omium_core::consensus::{BroadcastRequest, Coordinator, CoordinatorConfig};
use omium_core::expr::Condition;
use omium_core::policy::{Scope, Trigger};
use omium_core::recovery::driver::{Command as Do, Driver, Event, Failed};
use omium_core::recovery::{roll_back_as_decided, step_retry};
use omium_core::serve::StoreHandle;
use omium_core::trace::calls::{self, Replay};
use omium_core::value::{encode_state, CODEC_KEY};
use omium_core::{
    BeginOptions, FailureInput, ForkOptions, NewCheckpoint, RollbackTarget, Run, Status, Store,
};
use serde_json::{json, Value};

use check::{emit, expand, plan_of, run_all, timed, worker_env};
use omium_core::prelude::*;

const FEATURES: &[&str] = &[
    "kill",
    "retries",
    "conditions",
    "rollback",
    "fork",
    "resume",
    "policy",
    "recovery",
    "calls",
    "consensus",
    "timeouts",
    "events",
    "metrics",
    "alerts",
    "delete",
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
        operate(&store, &scenario, op, item, &execution)
    } else {
        let input = plan_of(&scenario, item).2;
        run(
            &store,
            &scenario,
            item,
            &execution,
            &mut Host::with_hooks(&store, &scenario),
            input,
        )
    };
    emit(json!({ "result": result }));
}

/// What a run of the workflow carries besides the store and the run: the step bodies' call
/// counts, a replay's recording, a fork's changed input, the consensus group and answers.
struct Host {
    handle: StoreHandle,
    calls: BTreeMap<String, u64>,
    replay: Option<Replay>,
    mutation: Option<(u64, Value)>,
    /// The store's consensus group (opened at the first hand-off) and the agents' answers left.
    coordinator: Option<Coordinator>,
    answers: BTreeMap<String, Vec<Value>>,
}

impl Host {
    fn new(store: &Store) -> Host {
        Host {
            handle: StoreHandle::Local(store.clone()),
            calls: BTreeMap::new(),
            replay: None,
            mutation: None,
            coordinator: None,
            answers: BTreeMap::new(),
        }
    }

    fn with_hooks(store: &Store, scenario: &Value) -> Host {
        let mut host = Host::new(store);
        for (agent, list) in scenario["hooks"]["answers"]
            .as_object()
            .into_iter()
            .flatten()
        {
            host.answers
                .insert(agent.clone(), list.as_array().unwrap().clone());
        }
        host
    }
}

fn operate(store: &Store, scenario: &Value, op: &str, item: &Value, execution: &str) -> Value {
    let state = item.get("state").map(json_bytes);
    // A replay and a fork at a position run the workflow again on the source's input.
    let stored_input = || -> Value {
        serde_json::from_slice(&store.execution_input(execution).unwrap().unwrap()).unwrap()
    };
    let new_id = item["new_id"].as_str().unwrap_or("").to_string();
    match op {
        "replay" => {
            let mut host = Host::with_hooks(store, scenario);
            host.replay = match host.handle.open_replay(execution) {
                Ok(r) => Some(r),
                Err(e) => return json!({"outcome": "error", "error": e.code()}),
            };
            let r = run(store, scenario, item, &new_id, &mut host, stored_input());
            return match host.replay.unwrap().finish() {
                Err(e) if r["outcome"] == "completed" => {
                    json!({"outcome": "error", "error": e.code()})
                }
                _ => r,
            };
        }
        "fork_at" => {
            let mut host = Host::with_hooks(store, scenario);
            let at = item["at_step"].as_u64().unwrap();
            if let Err(e) = host.handle.fork_at_step(execution, at, &new_id) {
                return json!({"outcome": "error", "error": e.code()});
            }
            host.mutation = item.get("input").map(|v| (at, v.clone()));
            return run(store, scenario, item, &new_id, &mut host, stored_input());
        }
        _ => {}
    }
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
        "escalate" | "delete" => {
            use omium_core::control::{Action, Request};
            let action = if op == "delete" {
                Action::Delete
            } else {
                Action::Escalate
            };
            let reason = item["reason"].as_str().map(str::to_string);
            let done = omium_core::recovery::control(
                store,
                &Request::new(action, execution, reason, None),
            );
            match done {
                // An erased execution has no status to report: what was erased instead.
                Ok(reply) if op == "delete" => {
                    return json!({"outcome": "done", "erased": reply.erased})
                }
                other => other.map(|_| execution.to_string()),
            }
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

fn run(
    store: &Store,
    scenario: &Value,
    item: &Value,
    execution: &str,
    host: &mut Host,
    input: Value,
) -> Value {
    if let Ok(e) = store.execution(execution) {
        if e.status == Status::Completed {
            let out = store.execution_output(execution).unwrap().unwrap();
            return json!({"outcome": "completed", "output": serde_json::from_slice::<Value>(&out).unwrap()});
        }
    }
    let codec = BTreeMap::from([(CODEC_KEY.to_string(), "json".to_string())]);
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
        match steps(store, &run, scenario, item, input.clone(), host, rollbacks) {
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

/// A failed attempt: the error code a run reports, and what the recovery gets (`fatal`: an
/// error of Omium's that no policy handles, such as a replay divergence).
struct Failure {
    code: String,
    message: String,
    kind: Option<Trigger>,
    fatal: bool,
}

impl Failure {
    fn of(e: omium_core::Error, kind: Option<Trigger>) -> Failure {
        Failure {
            code: e.code().into(),
            message: e.to_string(),
            fatal: kind.is_none(),
            kind,
        }
    }
}

/// Calls a step body (and checks its postconditions), as a binding's step wrapper does; a
/// body with a `tool` calls it as a recorded tool call nested in the step at `seq`.
#[allow(clippy::too_many_arguments)]
fn attempt(
    name: &str,
    spec: &Value,
    item: &Value,
    x: &Value,
    host: &mut Host,
    run: &Run,
    seq: u64,
) -> Result<Value, Failure> {
    let limit = step_timeout(host, name, spec);
    let n = host.calls.entry(name.to_string()).or_default();
    *n += 1;
    let mut result = timed(name, spec, item, x, *n, limit)
        .map_err(|message| Failure {
            code: "step_timeout".into(),
            message,
            kind: Some(Trigger::TimeoutError),
            fatal: false,
        })?
        .map_err(|class| Failure {
            message: format!("{class}: {name} failed (attempt {n})"),
            code: class,
            kind: None,
            fatal: false,
        })?;
    if let Some(tool) = spec["tool"].as_str() {
        result = tool_call(host, run, name, seq, tool, spec, x, result)?;
    }
    if !holds(spec, "post", x, Some(&result)) {
        return Err(Failure {
            code: "condition_failed".into(),
            message: format!("step {name:?}: a postcondition does not hold"),
            kind: Some(Trigger::PostconditionFailed),
            fatal: false,
        });
    }
    if let Some(handoff) = spec.get("consensus") {
        hand_off(host, run, name, handoff, &result)?;
    }
    Ok(result)
}

/// The step's own `timeout_ms`, else the one its policy gives.
fn step_timeout(host: &Host, name: &str, spec: &Value) -> Option<std::time::Duration> {
    if let Some(ms) = spec["timeout_ms"].as_u64() {
        return Some(std::time::Duration::from_millis(ms));
    }
    let store = host.handle.local("policy").unwrap();
    let effective = store
        .effective_policy("default", Some("conformance"), Some(name))
        .unwrap();
    effective.defaults().step_timeout.map(|d| d.0)
}

/// A step's consensus hand-off, as the bindings make it: the result broadcast to the targets
/// (sender: the step), each target answering as the scenario's `answers` say (`false`: silent,
/// `true`: acknowledge, another value: a vote; acknowledge when none are left), then the wait;
/// a violation is the step's failure (its recovery records it).
fn hand_off(
    host: &mut Host,
    run: &Run,
    step: &str,
    handoff: &Value,
    result: &Value,
) -> Result<(), Failure> {
    let store = host.handle.local("consensus").unwrap().clone();
    let coordinator = host.coordinator.get_or_insert_with(|| {
        Coordinator::open(Some(&store), CoordinatorConfig::Embedded).unwrap()
    });
    let targets: Vec<String> = handoff["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let placed = coordinator
        .broadcast(&BroadcastRequest {
            execution_id: run.execution_id().to_string(),
            sender: step.to_string(),
            targets: targets.clone(),
            message: result.clone(),
            schema: None,
            quorum: None,
            id: None,
        })
        .map_err(|e| Failure::of(e, None))?;
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
            other => Some(other),
        };
        coordinator
            .acknowledge(&placed.id, agent, vote)
            .map_err(|e| Failure::of(e, None))?;
    }
    let timeout = std::time::Duration::from_millis(handoff["timeout_ms"].as_u64().unwrap_or(5000));
    coordinator
        .await_agreement_with(&placed.id, timeout, false)
        .map(|_| ())
        .map_err(|e| Failure::of(e, Some(Trigger::ConsensusViolation)))
}

/// The tool `tool` called with the step's input, as the bindings' recorded tool calls are: the
/// allowlist checked, then the journal's answer, else the replay's, else the live call (which
/// announces itself and returns `result`), recorded under the step's position.
#[allow(clippy::too_many_arguments)]
fn tool_call(
    host: &mut Host,
    run: &Run,
    step: &str,
    seq: u64,
    tool: &str,
    spec: &Value,
    x: &Value,
    result: Value,
) -> Result<Value, Failure> {
    let exec = run.execution_id().to_string();
    host.handle
        .check_tool(
            &exec,
            "default",
            Some("conformance"),
            Some(step),
            "main",
            tool,
        )
        .map_err(|e| Failure::of(e, Some(Trigger::ToolDenied)))?;
    let (_, key) = run.position(Some(&seq.to_string()), None);
    let key = key.expect("a nested position has a key");
    let name = format!(
        "tool:{}",
        calls::span_name("tool", tool, "", "execute_tool")
    );
    let decoded = |state: &[u8]| serde_json::from_slice::<Value>(state).unwrap()["response"].take();
    if let Some(c) = run
        .recorded(0, &name, Some(&key))
        .map_err(|e| Failure::of(e, None))?
    {
        return Ok(decoded(&host.handle.read_state(&c.id.to_string()).unwrap()));
    }
    let (request, hash) =
        calls::canonical_request("tool", tool, "", "", vec![x.clone()], Default::default())
            .unwrap();
    let response = match &mut host.replay {
        Some(r) => decoded(
            &r.answer(&request, &hash)
                .map_err(|e| Failure::of(e, None))?
                .state,
        ),
        None => {
            emit(json!({ "ran": format!("tool:{tool}") }));
            result
        }
    };
    let side_effect = if spec["side_effect"] == true {
        "true"
    } else {
        "false"
    };
    let metadata = BTreeMap::from([
        (CODEC_KEY.to_string(), "json".to_string()),
        (calls::CALL_KEY.to_string(), "tool".to_string()),
        (calls::HASH_KEY.to_string(), hash),
        (calls::SIDE_EFFECT_KEY.to_string(), side_effect.to_string()),
    ]);
    let state = json_bytes(&json!({"request": request, "response": response}));
    run.record(
        0,
        NewCheckpoint {
            name: &name,
            key: Some(&key),
            state: &state,
            metadata,
            ..Default::default()
        },
    )
    .unwrap();
    Ok(response)
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
    host: &mut Host,
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
        // A fork at this position with a changed input (`fork_at` with `input`).
        if let Some((_, v)) = host.mutation.as_ref().filter(|(at, _)| *at == seq) {
            x = v.clone();
        }
        if !holds(spec, "pre", &x, None) {
            return Err(End::Error {
                code: "condition_failed".into(),
                message: format!("step {name:?}: a precondition does not hold"),
            });
        }
        x = match attempt(name, spec, item, &x, host, run, seq) {
            Ok(v) => v,
            Err(f) if f.fatal => {
                return Err(End::Error {
                    code: f.code,
                    message: f.message,
                })
            }
            Err(f) => recover(
                store, run, scenario, item, name, spec, &x, f, host, rollbacks, seq,
            )?,
        };
        // What the body reported spending (`record_spend` in the bindings).
        let mut metadata = codec.clone();
        if let Some(usd) = spec["spend_usd"].as_f64() {
            metadata.insert("omium.cost_usd".into(), usd.to_string());
        }
        run.record(
            seq,
            NewCheckpoint {
                name,
                state: &json_bytes(&x),
                metadata,
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
    host: &mut Host,
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
        let mut call = |arg: &Value, last: &mut Failure| match attempt(
            name, spec, item, arg, host, run, seq,
        ) {
            Ok(v) => {
                value = v;
                Event::Called(Ok(()))
            }
            Err(f) => {
                let failed = Failed {
                    message: f.message.clone(),
                    recoverable: !f.fatal,
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
