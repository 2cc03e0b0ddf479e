//! The durable DAG executor. A workflow run is an execution; each step's outputs are one
//! checkpoint of it, keyed by the step id (so parallel steps are matched by identity, not by
//! the order they finished in). Re-running the execution id replays the recorded steps and runs
//! the rest; a rollback moves the head back, and every step recorded after the target runs
//! again. Steps whose dependencies are met start at once, up to the concurrency limit, each on
//! its own thread; the calling thread schedules, records and handles failures through the
//! recovery policies.

// `Stop` (why a run stopped) carries an error or a recovery: it is returned once per run,
// never on a hot path, so it is not worth boxing everywhere.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use super::agents::{container_runtime, Agent, AgentCall, AgentError, ShellAgent};
use super::spec::{Spec, Step};
use crate::checkpoint::CheckpointKind;
use crate::error::{Error, Result};
use crate::execution::{BeginOptions, NewCheckpoint, Run, Status};
use crate::expr::Condition;
use crate::policy::{self, Compiled, Effective, Scope, Trigger};
use crate::prelude::*;
use crate::recovery::driver::{Analysis, Command, Driver, Event, Failed};
use crate::recovery::{roll_back_as_decided, FailureInput};
use crate::store::{now_ms, Durability, Store};
use crate::trace::{self, Span, SpanKind, StatusCode};

/// What a `consensus_required` step's outputs must pass before they flow on: agreement of the
/// agents that consume them. [`super::ConsensusAgreement`] (the default) goes through the
/// consensus coordinator; a caller may supply its own. `Ok` carries what is recorded about the agreement (the checkpoint's
/// `agreement` metadata); `Err` is a `consensus_violation` handled by the recovery policy.
pub trait Agreement: Send + Sync {
    fn agree(&self, request: &AgreementRequest) -> std::result::Result<String, AgentError>;
}

/// A hand-off that needs agreement.
#[derive(Clone, Debug, Serialize)]
pub struct AgreementRequest {
    pub execution_id: String,
    pub workflow: String,
    pub step: String,
    /// The agent that produced the outputs.
    pub agent: String,
    pub outputs: Map<String, Value>,
    /// The agents of the steps that consume the outputs (they must agree).
    pub consumers: Vec<String>,
}

/// Hooks a binding may give the executor for recovery actions.
pub trait Hooks: Send + Sync {
    /// A `notify` or `escalate` action: `payload` is the failure (as webhooks get it) plus
    /// `channels`. An `Err` is recorded on the action.
    fn notify(&self, _payload: &Value) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The agent a `fallback: {function: name}` action calls instead of the step's.
    fn fallback(&self, _name: &str) -> Option<Arc<dyn Agent>> {
        None
    }
    /// A `suggest_fix` action with `auto_apply`: the fixer `name` gets the failure and the
    /// step's inputs and returns the inputs to run the step with once more (`Err`: why it
    /// could not). None when there is no fixer of that name.
    fn fix(
        &self,
        _name: &str,
        _failure: &Value,
        _inputs: &Map<String, Value>,
    ) -> Option<std::result::Result<Map<String, Value>, String>> {
        None
    }
    /// An `inspect` action: what the analyzer says about the failure. None when there is none.
    fn analyze(&self, _failure: &Value) -> Option<std::result::Result<Analysis, String>> {
        None
    }
    /// Polled by the scheduling thread about every 100 ms (Python: a pending Ctrl-C). True
    /// stops the run like a crash: no step starts any more, nothing more is recorded, and the
    /// execution stays resumable.
    fn interrupted(&self) -> bool {
        false
    }
}

/// How to run a workflow.
#[derive(Default)]
pub struct RunOptions {
    /// The execution id; running an id again resumes it. Generated when absent.
    pub execution_id: Option<String>,
    /// Defaults to `default`.
    pub tenant: Option<String>,
    /// The workflow inputs (stored with the execution; a resumed execution keeps its own).
    pub inputs: Map<String, Value>,
    /// Agent id → how it runs; agents not bound here run their `command:` or `image:`.
    pub agents: HashMap<String, Arc<dyn Agent>>,
    /// Agreement for `consensus_required` steps. Required by this crate's [`run`] when the
    /// workflow has such steps; `omium_core::workflow::run` uses the store's embedded
    /// consensus group (`ConsensusAgreement`) when absent.
    pub agreement: Option<Arc<dyn Agreement>>,
    pub hooks: Option<Arc<dyn Hooks>>,
    pub durability: Option<Durability>,
    /// Where `command:` agents run (the workflow file's folder); the current one when absent.
    pub dir: Option<PathBuf>,
}

/// How a completed run went.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub execution_id: String,
    pub workflow: String,
    /// The workflow inputs and every output produced, by name.
    pub data: Map<String, Value>,
    pub steps: Vec<StepReport>,
}

/// One step of a run.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub agent: String,
    /// `ran` (in this run), `replayed` (recorded by an earlier run) or `skipped`.
    pub outcome: String,
    /// Attempts in this run (0 when it did not run).
    pub attempts: u32,
    /// When its agent ran (from its checkpoint, for replayed steps).
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `retries: N` on a step: the same retry as `@omium.checkpoint(retries=N)`.
pub use crate::recovery::step_retry;

/// The ids of the steps whose hand-offs need agreement (`consensus_required`).
pub fn consensus_steps(spec: &Spec) -> Vec<&str> {
    spec.steps
        .iter()
        .filter(|s| s.consensus_required)
        .map(|s| s.id.as_str())
        .collect()
}

/// Runs (or resumes) a workflow as execution `options.execution_id`.
pub fn run(store: &Store, spec: &Spec, options: RunOptions) -> Result<Report> {
    let agents = resolve_agents(spec, &options)?;
    let consensus = consensus_steps(spec);
    if !consensus.is_empty() && options.agreement.is_none() {
        // `omium_core::workflow::run` (the cluster crate's) supplies the store's embedded
        // consensus group; the engine alone has no agreement of its own.
        return Err(Error::ConsensusUnavailable {
            detail: format!(
                "workflow {:?} has consensus_required steps ({}) and no agreement was given \
                 (RunOptions::agreement); omium_core::workflow::run uses the store's \
                 consensus group",
                spec.name,
                consensus.join(", ")
            ),
        });
    }
    let id = options
        .execution_id
        .clone()
        .unwrap_or_else(|| crate::store::new_id().to_string());
    let tenant = options.tenant.clone().unwrap_or_else(|| "default".into());
    let existing = match store.execution(&id) {
        Ok(e) => Some(e),
        Err(Error::ExecutionNotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut inputs = options.inputs.clone();
    if let Some(e) = &existing {
        if e.workflow != spec.name {
            return Err(Error::InvalidArgument {
                what: "execution id",
                detail: format!(
                    "execution {id:?} belongs to workflow {:?}, not {:?}; use another id",
                    e.workflow, spec.name
                ),
            });
        }
        if e.status == Status::Completed {
            return completed_report(store, spec, &id);
        }
        if let Some(stored) = store.execution_input(&id)? {
            if let Ok(Value::Object(m)) = serde_json::from_slice(&stored) {
                inputs = m;
            }
        }
    }
    let missing: Vec<&str> = spec
        .inputs
        .iter()
        .filter(|i| !inputs.contains_key(*i))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Error::InvalidArgument {
            what: "workflow inputs",
            detail: format!(
                "workflow {:?} needs {}; pass {}",
                spec.name,
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            ),
        });
    }
    let input_bytes = Value::Object(inputs.clone()).to_string().into_bytes();
    let mut rollbacks = 0u32;
    loop {
        let run = store.begin(
            &id,
            BeginOptions {
                workflow: spec.name.clone(),
                tenant: tenant.clone(),
                input: Some(input_bytes.clone()),
                agent: "workflow".into(),
                durability: options.durability,
                labels: BTreeMap::from([(crate::value::CODEC_KEY.to_string(), "json".to_string())]),
                ..BeginOptions::default()
            },
        )?;
        let mut s = Scheduler {
            store,
            spec,
            run: &run,
            options: &options,
            agents: &agents,
            tenant: &tenant,
            data: inputs.clone(),
            steps: spec.steps.iter().map(|_| StepRun::default()).collect(),
            stop: None,
            next_token: 0,
            rollbacks,
        };
        match s.drive() {
            Ok(()) => {
                let report = s.report();
                run.complete(Some(
                    Value::Object(report.data.clone()).to_string().as_bytes(),
                ))?;
                return Ok(report);
            }
            Err(Stop::Failed(e)) => {
                run.fail(&e.to_string())?;
                return Err(e);
            }
            Err(Stop::Paused(reason, e)) => {
                run.pause(&reason)?;
                return Err(e);
            }
            Err(Stop::Rollback(to, failure)) => {
                drop(s);
                drop(run);
                roll_back_as_decided(
                    &to,
                    &failure,
                    |t, reason| store.rollback(&id, t, Some(reason)),
                    || Ok(!store.history(&id)?.is_empty()),
                )?;
                rollbacks += 1;
            }
            // The store failed under us: leave the execution resumable.
            Err(Stop::Internal(e)) => return Err(e),
        }
    }
}

fn resolve_agents(spec: &Spec, options: &RunOptions) -> Result<HashMap<String, Arc<dyn Agent>>> {
    for id in options.agents.keys() {
        if spec.agent(id).is_none() {
            let ids: Vec<&str> = spec.agents.iter().map(|a| a.id.as_str()).collect();
            let hint = policy::did_you_mean(id, &ids)
                .map(|s| format!("did you mean {s:?}? "))
                .unwrap_or_default();
            return Err(Error::InvalidArgument {
                what: "agent binding",
                detail: format!(
                    "workflow {:?} has no agent {id:?}; {hint}its agents: {}",
                    spec.name,
                    ids.join(", ")
                ),
            });
        }
    }
    let mut out: HashMap<String, Arc<dyn Agent>> = HashMap::new();
    for step in &spec.steps {
        if out.contains_key(&step.agent) {
            continue;
        }
        let a = spec.agent(&step.agent).expect("validated");
        let agent: Arc<dyn Agent> = if let Some(bound) = options.agents.get(&a.id) {
            bound.clone()
        } else if let Some(cmd) = &a.command {
            let env = a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Arc::new(ShellAgent::new(cmd, env, options.dir.as_deref()))
        } else if let Some(image) = &a.image {
            let runtime = container_runtime().ok_or_else(|| Error::AgentUnavailable {
                agent: a.id.clone(),
                detail: format!(
                    "it runs image {image:?}, but no container runtime is installed (neither docker nor podman is on PATH, and OMIUM_CONTAINER_RUNTIME is not set); install one, or bind {:?} to a function (Python: .bind({}=fn))",
                    a.id, a.id
                ),
            })?;
            Arc::new(ShellAgent::container(&runtime, a))
        } else {
            return Err(Error::AgentUnavailable {
                agent: a.id.clone(),
                detail: format!(
                    "it has no binding, no `command:` and no `image:`; bind it (Python: .bind({}=fn)) or give it a command",
                    a.id
                ),
            });
        };
        out.insert(a.id.clone(), agent);
    }
    Ok(out)
}

/// The report of an execution that completed earlier: every step as recorded.
fn completed_report(store: &Store, spec: &Spec, id: &str) -> Result<Report> {
    let data = match store.execution_output(id)? {
        Some(b) => match serde_json::from_slice(&b) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        },
        None => Map::new(),
    };
    let history = store.history(id)?;
    let steps = spec
        .steps
        .iter()
        .map(|s| {
            let key = s.key();
            let c = history
                .iter()
                .rev()
                .find(|c| c.kind.is_step() && c.key.as_deref() == Some(key.as_str()));
            let ms = |k: &str| c.and_then(|c| c.metadata.get(k)?.parse().ok());
            StepReport {
                id: s.id.clone(),
                agent: s.agent.clone(),
                outcome: if c.is_some() { "replayed" } else { "skipped" }.into(),
                attempts: 0,
                started_at_ms: ms("started_at_ms"),
                ended_at_ms: ms("ended_at_ms"),
                reason: None,
            }
        })
        .collect();
    Ok(Report {
        execution_id: id.into(),
        workflow: spec.name.clone(),
        data,
        steps,
    })
}

#[derive(Default)]
enum State {
    #[default]
    Waiting,
    /// To be started at this instant (a retry after its backoff, a fallback).
    Delayed(Instant),
    Running {
        token: u64,
        deadline: Option<Instant>,
    },
    Done,
    Skipped,
}

#[derive(Default)]
struct StepRun {
    state: State,
    outcome: &'static str,
    attempts: u32,
    recovery: Option<Driver>,
    /// A fallback agent for the next attempt.
    instead: Option<Arc<dyn Agent>>,
    /// The inputs a fixer gave for the next attempt.
    fixed_inputs: Option<Map<String, Value>>,
    effective: Option<Effective>,
    started_at_ms: Option<u64>,
    ended_at_ms: Option<u64>,
    reason: Option<String>,
}

/// Why a run stopped before completing.
enum Stop {
    Failed(Error),
    Paused(String, Error),
    /// A policy's rollback: the target and the recorded failure.
    Rollback(String, Value),
    Internal(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Internal(e)
    }
}

/// What a worker thread reports.
struct Finished {
    idx: usize,
    token: u64,
    result: std::result::Result<(Map<String, Value>, Option<String>), AgentError>,
    started_at_ms: u64,
    ended_at_ms: u64,
    start_ns: u64,
    end_ns: u64,
}

struct Scheduler<'a> {
    store: &'a Store,
    spec: &'a Spec,
    run: &'a Run,
    options: &'a RunOptions,
    agents: &'a HashMap<String, Arc<dyn Agent>>,
    tenant: &'a str,
    data: Map<String, Value>,
    steps: Vec<StepRun>,
    stop: Option<Stop>,
    next_token: u64,
    rollbacks: u32,
}

impl Scheduler<'_> {
    fn drive(&mut self) -> std::result::Result<(), Stop> {
        let (tx, rx) = mpsc::channel::<Finished>();
        let mut last_heartbeat = Instant::now();
        loop {
            if self.stop.is_none() {
                self.start_ready(&tx)?;
            }
            let running = self
                .steps
                .iter()
                .filter(|s| matches!(s.state, State::Running { .. }))
                .count();
            if running == 0 {
                if let Some(stop) = self.stop.take() {
                    return Err(stop);
                }
                let open = self
                    .steps
                    .iter()
                    .any(|s| matches!(s.state, State::Waiting | State::Delayed(_)));
                if !open {
                    return Ok(());
                }
            }
            // Sleep until a step finishes, a deadline passes or a delayed step is due (and look
            // for an interruption now and then).
            let now = Instant::now();
            let poll = if self.options.hooks.is_some() {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(5)
            };
            let mut wake = now + poll;
            for s in &self.steps {
                match s.state {
                    State::Running {
                        deadline: Some(d), ..
                    } => wake = wake.min(d),
                    State::Delayed(t) if self.stop.is_none() => wake = wake.min(t),
                    _ => {}
                }
            }
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(f) => self.finished(f)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            }
            if self.options.hooks.as_ref().is_some_and(|h| h.interrupted()) {
                return Err(Stop::Internal(Error::Interrupted {
                    execution: self.run.execution_id().into(),
                }));
            }
            self.expire()?;
            // The lease outlives long steps.
            if last_heartbeat.elapsed() > Duration::from_secs(10) {
                self.run.heartbeat()?;
                last_heartbeat = Instant::now();
            }
        }
    }

    /// Starts every step whose dependencies are met, up to the concurrency limit; replays
    /// recorded steps and skips those whose condition is false.
    fn start_ready(&mut self, tx: &mpsc::Sender<Finished>) -> std::result::Result<(), Stop> {
        let mut progress = true;
        while progress {
            progress = false;
            for idx in 0..self.steps.len() {
                if self.stop.is_some() {
                    return Ok(());
                }
                let running = self
                    .steps
                    .iter()
                    .filter(|s| matches!(s.state, State::Running { .. }))
                    .count();
                let due = match self.steps[idx].state {
                    State::Waiting => true,
                    State::Delayed(t) => t <= Instant::now(),
                    _ => false,
                };
                if !due {
                    continue;
                }
                let step = &self.spec.steps[idx];
                let met = step
                    .after
                    .iter()
                    .all(|&d| matches!(self.steps[d].state, State::Done | State::Skipped));
                if !met {
                    continue;
                }
                if matches!(self.steps[idx].state, State::Waiting)
                    && self.settle_without_running(idx)?
                {
                    progress = true;
                    continue;
                }
                if running >= self.spec.concurrency {
                    return Ok(());
                }
                self.dispatch(idx, tx)?;
                progress = true;
            }
        }
        Ok(())
    }

    /// Replays a recorded step, or skips one whose inputs come from a skipped step or whose
    /// condition is false. True when the step is settled.
    fn settle_without_running(&mut self, idx: usize) -> std::result::Result<bool, Stop> {
        let step = &self.spec.steps[idx];
        if let Some(c) = self.run.recorded(0, &step.checkpoint, Some(&step.key()))? {
            let bytes = self.store.read_state(&c)?;
            let outputs = match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(Stop::Internal(Error::Decode {
                        what: "workflow step outputs",
                        key: c.id.to_string(),
                        detail: format!("{} did not record a JSON object", step.label()),
                    }))
                }
            };
            self.data.extend(outputs);
            let s = &mut self.steps[idx];
            s.state = State::Done;
            s.outcome = "replayed";
            s.started_at_ms = c.metadata.get("started_at_ms").and_then(|v| v.parse().ok());
            s.ended_at_ms = c.metadata.get("ended_at_ms").and_then(|v| v.parse().ok());
            return Ok(true);
        }
        for (input, producer) in step.inputs.iter().zip(&step.producers) {
            if let Some(p) = producer {
                if matches!(self.steps[*p].state, State::Skipped) {
                    let reason = format!(
                        "its input {input:?} comes from step {}, which was skipped",
                        self.spec.steps[*p].id
                    );
                    self.skip(idx, reason);
                    return Ok(true);
                }
            }
        }
        if let Some(w) = &step.when {
            let cond = Condition::compile(w).map_err(|e| Stop::Failed(e.into()))?;
            let mut vars: Vec<(String, Value)> = self
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            vars.push(("inputs".into(), Value::Object(self.inputs_of(step))));
            vars.push(("data".into(), Value::Object(self.data.clone())));
            let holds = cond.evaluate(&vars).map_err(|e| {
                Stop::Failed(Error::InvalidArgument {
                    what: "workflow condition",
                    detail: format!("`when:` of {}: {e}", step.label()),
                })
            })?;
            if !holds {
                self.skip(idx, format!("its condition `{w}` is false"));
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn skip(&mut self, idx: usize, reason: String) {
        let s = &mut self.steps[idx];
        s.state = State::Skipped;
        s.outcome = "skipped";
        s.reason = Some(reason);
    }

    fn inputs_of(&self, step: &Step) -> Map<String, Value> {
        step.inputs
            .iter()
            .map(|i| (i.clone(), self.data.get(i).cloned().unwrap_or(Value::Null)))
            .collect()
    }

    fn effective(&mut self, idx: usize) -> Result<Effective> {
        if let Some(e) = &self.steps[idx].effective {
            return Ok(e.clone());
        }
        let step = &self.spec.steps[idx];
        let w = &self.spec.name;
        let mut layers = Vec::new();
        if let Some(p) = &step.policy {
            layers.push((
                Scope::WorkflowStep(w.clone(), step.checkpoint.clone()),
                0,
                Compiled::new(p)?,
            ));
        }
        if let Some(p) = &self.spec.policy {
            layers.push((Scope::Workflow(w.clone()), 0, Compiled::new(p)?));
        }
        layers.extend(
            self.store
                .effective_policy(self.tenant, Some(w), Some(&step.checkpoint))?
                .layers,
        );
        let e = Effective { layers };
        self.steps[idx].effective = Some(e.clone());
        Ok(e)
    }

    fn dispatch(&mut self, idx: usize, tx: &mpsc::Sender<Finished>) -> Result<()> {
        let step = &self.spec.steps[idx];
        let timeout = match step.timeout {
            Some(t) => Some(t),
            None => self.effective(idx)?.defaults().step_timeout.map(|d| d.0),
        };
        let s = &mut self.steps[idx];
        s.attempts += 1;
        let token = self.next_token;
        self.next_token += 1;
        s.state = State::Running {
            token,
            deadline: timeout.map(|t| Instant::now() + t),
        };
        let agent = s
            .instead
            .take()
            .unwrap_or_else(|| self.agents[&step.agent].clone());
        let fixed = s.fixed_inputs.take();
        let call = AgentCall {
            execution_id: self.run.execution_id().to_string(),
            workflow: self.spec.name.clone(),
            step: step.id.clone(),
            agent: step.agent.clone(),
            attempt: s.attempts,
            inputs: fixed.unwrap_or_else(|| self.inputs_of(step)),
            outputs: step.outputs.clone(),
            timeout,
        };
        let agreement = if step.consensus_required {
            self.options.agreement.clone()
        } else {
            None
        };
        let consumers: Vec<String> = self
            .spec
            .steps
            .iter()
            .filter(|c| c.producers.contains(&Some(idx)))
            .map(|c| c.agent.clone())
            .collect();
        let outputs = step.outputs.clone();
        let label = step.label();
        let tx = tx.clone();
        // Not a scoped thread: a step that overran its timeout is abandoned (a thread cannot be
        // killed; a process agent kills its own process), and its late result is ignored.
        std::thread::Builder::new()
            .name(format!("omium-step-{}", step.id))
            .spawn(move || {
                let (started_at_ms, start_ns) = (now_ms(), trace::now_ns());
                let result = agent.call(&call).and_then(|got| {
                    let out = declared(&label, &outputs, got)?;
                    match &agreement {
                        None => Ok((out, None)),
                        Some(a) => {
                            let req = AgreementRequest {
                                execution_id: call.execution_id.clone(),
                                workflow: call.workflow.clone(),
                                step: call.step.clone(),
                                agent: call.agent.clone(),
                                outputs: out.clone(),
                                consumers,
                            };
                            match a.agree(&req) {
                                Ok(detail) => Ok((out, Some(detail))),
                                Err(mut e) => {
                                    e.kind = Some(Trigger::ConsensusViolation);
                                    e.message = format!(
                                        "the outputs of {label} were not agreed: {}",
                                        e.message
                                    );
                                    Err(e)
                                }
                            }
                        }
                    }
                });
                let _ = tx.send(Finished {
                    idx,
                    token,
                    result,
                    started_at_ms,
                    ended_at_ms: now_ms(),
                    start_ns,
                    end_ns: trace::now_ns(),
                });
            })
            .map_err(|e| Error::InvalidState {
                execution: self.run.execution_id().into(),
                status: "running".into(),
                detail: format!("cannot start a thread for a step: {e}"),
            })?;
        Ok(())
    }

    fn finished(&mut self, f: Finished) -> std::result::Result<(), Stop> {
        let current =
            matches!(self.steps[f.idx].state, State::Running { token, .. } if token == f.token);
        if !current {
            return Ok(()); // abandoned after its timeout
        }
        let step = &self.spec.steps[f.idx];
        self.span(step, &f);
        match f.result {
            Ok((outputs, agreement)) => {
                let mut metadata = BTreeMap::from([
                    // The states are JSON: every binding and `omium checkpoint --value` read them.
                    (crate::value::CODEC_KEY.to_string(), "json".to_string()),
                    ("workflow".to_string(), self.spec.name.clone()),
                    ("workflow_step".to_string(), step.id.clone()),
                    ("started_at_ms".to_string(), f.started_at_ms.to_string()),
                    ("ended_at_ms".to_string(), f.ended_at_ms.to_string()),
                    (
                        "attempt".to_string(),
                        self.steps[f.idx].attempts.to_string(),
                    ),
                ]);
                if let Some(a) = agreement {
                    metadata.insert("agreement".into(), a);
                }
                let state = Value::Object(outputs.clone()).to_string().into_bytes();
                let seq = self.run.reserve();
                self.run.record(
                    seq,
                    NewCheckpoint {
                        name: &step.checkpoint,
                        agent: Some(&step.agent),
                        kind: CheckpointKind::Step,
                        key: Some(&step.key()),
                        state: &state,
                        metadata: metadata.clone(),
                        ..NewCheckpoint::default()
                    },
                )?;
                for alias in &step.aliases {
                    let seq = self.run.reserve();
                    self.run.record(
                        seq,
                        NewCheckpoint {
                            name: alias,
                            agent: Some(&step.agent),
                            kind: CheckpointKind::Snapshot,
                            state: &state,
                            metadata: metadata.clone(),
                            ..NewCheckpoint::default()
                        },
                    )?;
                }
                self.data.extend(outputs);
                let s = &mut self.steps[f.idx];
                s.state = State::Done;
                s.outcome = "ran";
                s.started_at_ms = Some(f.started_at_ms);
                s.ended_at_ms = Some(f.ended_at_ms);
                if let Some(mut driver) = s.recovery.take() {
                    driver.advance(Event::Called(Ok(())))?;
                }
                Ok(())
            }
            Err(e) => self.failed(f.idx, e),
        }
    }

    /// Steps past their deadline fail with a timeout (their thread is abandoned).
    fn expire(&mut self) -> std::result::Result<(), Stop> {
        let now = Instant::now();
        for idx in 0..self.steps.len() {
            if let State::Running {
                deadline: Some(d), ..
            } = self.steps[idx].state
            {
                if d <= now {
                    self.steps[idx].state = State::Waiting;
                    let step = &self.spec.steps[idx];
                    let timeout = step
                        .timeout
                        .or_else(|| {
                            self.steps[idx]
                                .effective
                                .as_ref()
                                .and_then(|e| e.defaults().step_timeout.map(|d| d.0))
                        })
                        .unwrap_or_default();
                    let e = AgentError {
                        classes: vec!["StepTimeoutError".into()],
                        message: format!(
                            "{} did not finish within its timeout of {timeout:?}",
                            step.label()
                        ),
                        kind: Some(Trigger::TimeoutError),
                    };
                    if self.stop.is_none() {
                        self.failed(idx, e)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A step failed: the recovery policy decides what happens next (the core's recovery
    /// driver; this carries out its commands with the hooks and the scheduler's own timers).
    fn failed(&mut self, idx: usize, e: AgentError) -> std::result::Result<(), Stop> {
        self.steps[idx].state = State::Waiting;
        if self.stop.is_some() {
            return Ok(()); // stopping anyway; the step runs again when the execution resumes
        }
        let step = &self.spec.steps[idx];
        let label = step.label();
        let failed = Event::Called(Err(Failed {
            message: e.message.clone(),
            recoverable: true,
        }));
        let (mut driver, event) = match self.steps[idx].recovery.take() {
            Some(driver) => (driver, failed),
            None => {
                let effective = self.effective(idx)?;
                let rec = self.store.start_recovery(
                    FailureInput {
                        execution_id: self.run.execution_id().into(),
                        workflow: self.spec.name.clone(),
                        tenant: self.tenant.into(),
                        step: Some(step.checkpoint.clone()),
                        seq: None,
                        key: Some(step.key()),
                        agent: step.agent.clone(),
                        kind: e.kind,
                        error_classes: e.classes.clone(),
                        message: e.message.clone(),
                        step_retry: step.retries.and_then(step_retry),
                        rollbacks_so_far: self.rollbacks,
                    },
                    effective,
                )?;
                let driver =
                    Driver::new(Box::new(rec), self.run.execution_id(), &label, &e.message);
                (driver, Event::Start)
            }
        };
        let hooks = self.options.hooks.as_deref();
        let mut command = driver.advance(event)?;
        loop {
            let event = match command {
                Command::Retry { delay, .. } => {
                    self.again(idx, driver, Instant::now() + delay);
                    return Ok(());
                }
                Command::CallFixed => {
                    self.again(idx, driver, Instant::now());
                    return Ok(());
                }
                Command::Fallback { function } => match hooks.and_then(|h| h.fallback(&function)) {
                    Some(agent) => {
                        self.steps[idx].instead = Some(agent);
                        self.again(idx, driver, Instant::now());
                        return Ok(());
                    }
                    None => Event::Missing,
                },
                Command::Fix { fix, failure } => {
                    let inputs = self.inputs_of(&self.spec.steps[idx]);
                    match hooks.and_then(|h| h.fix(&fix, &failure, &inputs)) {
                        None => Event::Missing,
                        Some(Ok(fixed)) => {
                            self.steps[idx].fixed_inputs = Some(fixed);
                            Event::Fixed(Ok(()))
                        }
                        Some(Err(why)) => Event::Fixed(Err(why)),
                    }
                }
                Command::Analyze { failure } => match hooks.and_then(|h| h.analyze(&failure)) {
                    None => Event::Missing,
                    Some(said) => Event::Analyzed(said),
                },
                Command::Notify { payload } => Event::Notified(
                    hooks
                        .and_then(|h| h.notify(&payload).err())
                        .map(|e| vec![format!("notifier: {e}")])
                        .unwrap_or_default(),
                ),
                Command::Return => return Ok(()),
                Command::Reraise => {
                    self.stop = Some(Stop::Failed(Error::StepFailed {
                        execution: self.run.execution_id().to_string(),
                        step: label,
                        message: e.message,
                    }));
                    return Ok(());
                }
                Command::Raise { error, failure } => {
                    self.stop = Some(match error {
                        Error::Paused { ref reason, .. } => Stop::Paused(reason.clone(), error),
                        Error::RolledBack { to, .. } => Stop::Rollback(to, failure),
                        other => Stop::Failed(other),
                    });
                    return Ok(());
                }
            };
            command = driver.advance(event)?;
        }
    }

    /// The step runs again at `at` (a retry after its backoff, a fallback, a fix).
    fn again(&mut self, idx: usize, driver: Driver, at: Instant) {
        let s = &mut self.steps[idx];
        s.state = State::Delayed(at);
        s.recovery = Some(driver);
    }

    fn span(&self, step: &Step, f: &Finished) {
        let execution = self.run.execution_id();
        let (status, message) = match &f.result {
            Ok(_) => (StatusCode::Ok, String::new()),
            Err(e) => (StatusCode::Error, e.message.clone()),
        };
        self.store.record_span(Span {
            trace_id: trace::trace_id_of(execution),
            span_id: trace::new_span_id(),
            parent: None,
            name: step.label(),
            kind: SpanKind::Internal,
            span_type: "agent".into(),
            execution_id: execution.into(),
            agent: step.agent.clone(),
            start_ns: f.start_ns,
            end_ns: f.end_ns,
            status,
            status_message: message,
            attributes: vec![
                (
                    "omium.workflow".into(),
                    trace::Value::Str(self.spec.name.clone()),
                ),
                (
                    "omium.workflow.step".into(),
                    trace::Value::Str(step.id.clone()),
                ),
                (
                    "omium.attempt".into(),
                    trace::Value::Int(i64::from(self.steps[f.idx].attempts)),
                ),
            ],
            events: Vec::new(),
        });
    }

    fn report(&self) -> Report {
        Report {
            execution_id: self.run.execution_id().into(),
            workflow: self.spec.name.clone(),
            data: self.data.clone(),
            steps: self
                .spec
                .steps
                .iter()
                .zip(&self.steps)
                .map(|(step, s)| StepReport {
                    id: step.id.clone(),
                    agent: step.agent.clone(),
                    outcome: s.outcome.into(),
                    attempts: s.attempts,
                    started_at_ms: s.started_at_ms,
                    ended_at_ms: s.ended_at_ms,
                    reason: s.reason.clone(),
                })
                .collect(),
        }
    }
}

/// The declared outputs of what an agent returned; a missing one is a validation failure.
fn declared(
    label: &str,
    outputs: &[String],
    mut got: Map<String, Value>,
) -> std::result::Result<Map<String, Value>, AgentError> {
    let missing: Vec<&str> = outputs
        .iter()
        .filter(|o| !got.contains_key(*o))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let returned: Vec<&str> = got.keys().map(String::as_str).collect();
        return Err(AgentError {
            classes: vec!["ValidationError".into()],
            message: format!(
                "{label} returned no {} (it returned: {}); an agent returns an object with every name of the step's `outputs:`",
                missing.join(", "),
                if returned.is_empty() { "nothing".to_string() } else { returned.join(", ") }
            ),
            kind: Some(Trigger::ValidationError),
        });
    }
    Ok(outputs
        .iter()
        .map(|o| (o.clone(), got.remove(o).expect("checked")))
        .collect())
}
