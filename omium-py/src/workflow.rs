//! `omium._omium.WorkflowSpec`: a validated workflow document, its plan, and runs of it with
//! Python agents. Values cross as JSON text (the Python layer `omium.workflows` adapts
//! callables, CrewAI and LangGraph objects to one call shape); the executor runs in the core
//! with the GIL released, and each agent call takes the GIL on its worker thread only while
//! Python code runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use omium_core::recovery::driver::Analysis;
use omium_core::workflow::{
    self, Agent, AgentCall, AgentError, Agreement, AgreementRequest, Answer, ConsensusAgreement,
    Hooks, Plan, Respond, RunOptions, Spec, SpecErrors,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::{Map, Value};

use crate::consensus::Coordinator;
use crate::convert::err;
use crate::store::Store;

/// `omium.errors.WorkflowError` with every problem as a dict.
fn spec_err(e: &SpecErrors) -> PyErr {
    Python::attach(|py| {
        let made = (|| -> PyResult<PyErr> {
            let problems = PyList::empty(py);
            for p in &e.problems {
                let d = PyDict::new(py);
                d.set_item("file", p.file.as_deref())?;
                d.set_item("line", p.at.line)?;
                d.set_item("column", p.at.column)?;
                d.set_item("path", &p.path)?;
                d.set_item("problem", &p.message)?;
                d.set_item("value", p.value.as_deref())?;
                d.set_item("suggestion", p.suggestion.as_deref())?;
                d.set_item("message", p.to_string())?;
                problems.append(d)?;
            }
            let exc = py
                .import("omium.errors")?
                .getattr("WorkflowError")?
                .call1((e.to_string(), problems))?;
            Ok(PyErr::from_value(exc))
        })();
        made.unwrap_or_else(|e| e)
    })
}

/// The class names of an exception, most derived first (`module.Qualname`, bare for builtins).
fn classes(py: Python<'_>, e: &PyErr) -> Vec<String> {
    let mro = e.get_type(py).getattr("__mro__");
    let Ok(mro) = mro else { return Vec::new() };
    let mut out = Vec::new();
    if let Ok(it) = mro.try_iter() {
        for c in it.flatten() {
            let name: String = c
                .getattr("__qualname__")
                .and_then(|n| n.extract())
                .unwrap_or_default();
            if name == "object" || name == "BaseException" {
                continue;
            }
            let module: String = c
                .getattr("__module__")
                .and_then(|m| m.extract())
                .unwrap_or_default();
            out.push(if module == "builtins" || module.is_empty() {
                name
            } else {
                format!("{module}.{name}")
            });
        }
    }
    out
}

fn agent_error(py: Python<'_>, e: PyErr) -> AgentError {
    let kind = e
        .value(py)
        .getattr("omium_failure_type")
        .ok()
        .and_then(|k| k.extract::<String>().ok())
        .and_then(|k| omium_core::policy::Trigger::parse(&k).ok());
    let type_name = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    AgentError {
        classes: classes(py, &e),
        message: format!("{type_name}: {}", e.value(py)),
        kind,
    }
}

/// A Python adapter `fn(inputs_json, context) -> outputs_json` (see `omium.workflows`).
struct PyAgent(Py<PyAny>);

impl Agent for PyAgent {
    fn call(&self, call: &AgentCall) -> Result<Map<String, Value>, AgentError> {
        Python::attach(|py| {
            let run = || -> PyResult<String> {
                let ctx = PyDict::new(py);
                ctx.set_item("execution_id", &call.execution_id)?;
                ctx.set_item("workflow", &call.workflow)?;
                ctx.set_item("step", &call.step)?;
                ctx.set_item("agent", &call.agent)?;
                ctx.set_item("attempt", call.attempt)?;
                ctx.set_item("outputs", call.outputs.clone())?;
                let inputs = Value::Object(call.inputs.clone()).to_string();
                self.0.bind(py).call1((inputs, ctx))?.extract()
            };
            let text = run().map_err(|e| agent_error(py, e))?;
            match serde_json::from_str(&text) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(AgentError::new(
                    "ValidationError",
                    format!("agent {:?} did not return an object of outputs", call.agent),
                )),
            }
        })
    }
}

/// A Python agreement function adapter: `fn(request_json) -> str` (the recorded detail).
struct PyAgreement(Py<PyAny>);

impl Agreement for PyAgreement {
    fn agree(&self, request: &AgreementRequest) -> Result<String, AgentError> {
        let text = serde_json::to_string(request).expect("requests serialize");
        Python::attach(|py| {
            self.0
                .bind(py)
                .call1((text,))
                .and_then(|r| r.extract::<String>())
                .map_err(|e| agent_error(py, e))
        })
    }
}

/// `omium.consensus._answer(agent, message_json)`: `None`/`True` acknowledges, `False` stays
/// silent, a str is the JSON text of a vote.
struct PyRespond(Py<PyAny>);

impl Respond for PyRespond {
    fn answer(&self, agent: &str, message: &Value) -> Result<Answer, String> {
        Python::attach(|py| {
            let got = self
                .0
                .bind(py)
                .call1((agent, message.to_string()))
                .map_err(|e| e.to_string())?;
            if got.is_none() {
                return Ok(Answer::Ack);
            }
            if let Ok(b) = got.extract::<bool>() {
                return Ok(if b { Answer::Ack } else { Answer::Silent });
            }
            let text: String = got.extract().map_err(|e: PyErr| e.to_string())?;
            serde_json::from_str(&text)
                .map(Answer::Vote)
                .map_err(|e| format!("the vote is not JSON: {e}"))
        })
    }
}

struct PyHooks {
    notify: Option<Py<PyAny>>,
    fallbacks: HashMap<String, Arc<dyn Agent>>,
    /// `fix(name, failure_json, inputs_json)`: None (no such fixer) or the new inputs as JSON.
    fix: Option<Py<PyAny>>,
    /// `analyze(failure_json)`: None (no analyzer) or `{root_cause, suggested_fix}` as JSON.
    analyze: Option<Py<PyAny>>,
}

impl PyHooks {
    /// Calls a hook that answers None (nothing registered) or JSON text.
    fn json_hook(f: Option<&Py<PyAny>>, args: Vec<String>) -> Option<Result<Value, String>> {
        let f = f?;
        Python::attach(|py| {
            let args = match pyo3::types::PyTuple::new(py, args) {
                Ok(a) => a,
                Err(e) => return Some(Err(e.to_string())),
            };
            let got = match f.bind(py).call1(args) {
                Ok(got) => got,
                Err(e) => return Some(Err(e.to_string())),
            };
            if got.is_none() {
                return None;
            }
            Some(
                got.extract::<String>()
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())),
            )
        })
    }
}

impl Hooks for PyHooks {
    fn notify(&self, payload: &Value) -> Result<(), String> {
        let Some(f) = &self.notify else {
            return Ok(());
        };
        Python::attach(|py| {
            f.bind(py)
                .call1((payload.to_string(),))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn fallback(&self, name: &str) -> Option<Arc<dyn Agent>> {
        self.fallbacks.get(name).cloned()
    }

    fn fix(
        &self,
        name: &str,
        failure: &Value,
        inputs: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, String>> {
        let inputs = Value::Object(inputs.clone()).to_string();
        let got = Self::json_hook(
            self.fix.as_ref(),
            vec![name.to_string(), failure.to_string(), inputs],
        )?;
        Some(got.and_then(|v| match v {
            Value::Object(m) => Ok(m),
            other => Err(format!(
                "the fixer must return the step's inputs as a dict, not {other}"
            )),
        }))
    }

    fn analyze(&self, failure: &Value) -> Option<Result<Analysis, String>> {
        let got = Self::json_hook(self.analyze.as_ref(), vec![failure.to_string()])?;
        Some(got.map(|v| Analysis {
            root_cause: v["root_cause"].as_str().map(str::to_string),
            suggested_fix: v["suggested_fix"].as_str().map(str::to_string),
        }))
    }

    /// A Ctrl-C (or another signal handler raising) in the main thread; `run` raises
    /// KeyboardInterrupt for it. Elsewhere Python runs no signal handlers, so nothing is seen.
    fn interrupted(&self) -> bool {
        Python::attach(|py| py.check_signals().is_err())
    }
}

#[pyclass(frozen, module = "omium._omium")]
pub struct WorkflowSpec {
    inner: Arc<Spec>,
}

#[pymethods]
impl WorkflowSpec {
    /// Parses and validates a document; `WorkflowError` lists every problem.
    #[staticmethod]
    #[pyo3(signature = (text, file=None))]
    fn parse(text: &str, file: Option<&str>) -> PyResult<Self> {
        let spec = workflow::parse(text, file).map_err(|e| spec_err(&e))?;
        Ok(WorkflowSpec {
            inner: Arc::new(spec),
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn inputs(&self) -> Vec<String> {
        self.inner.inputs.clone()
    }

    #[getter]
    fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// `[(id, framework, image, has_command)]`.
    #[getter]
    fn agents(&self) -> Vec<(String, Option<String>, Option<String>, bool)> {
        self.inner
            .agents
            .iter()
            .map(|a| {
                (
                    a.id.clone(),
                    a.framework.clone(),
                    a.image.clone(),
                    a.command.is_some(),
                )
            })
            .collect()
    }

    /// The plan as JSON (levels, order, steps).
    fn plan_json(&self) -> String {
        serde_json::to_string(&Plan::of(&self.inner)).expect("plans serialize")
    }

    /// The plan as `omium workflow plan` prints it.
    fn plan_text(&self) -> String {
        Plan::of(&self.inner).render()
    }

    /// The ids of the `consensus_required` steps.
    #[getter]
    fn consensus_steps(&self) -> Vec<String> {
        self.inner
            .steps
            .iter()
            .filter(|s| s.consensus_required)
            .map(|s| s.id.clone())
            .collect()
    }

    /// Runs the workflow; returns the report as JSON. `agents` maps agent ids to adapters,
    /// `fallbacks` names to adapters; `agree` and `notify` are adapters too. Without `agree`,
    /// `consensus_required` hand-offs go through `coordinator` (the store's embedded group when
    /// absent), its targets answered by `respond` (else they acknowledge), waiting at most
    /// `consensus_timeout` seconds.
    #[pyo3(signature = (store, inputs, agents, execution_id=None, tenant=None, agree=None, notify=None, fallbacks=None, dir=None, durability=None, coordinator=None, respond=None, consensus_timeout=None, fix=None, analyze=None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        store: &Store,
        inputs: &str,
        agents: HashMap<String, Py<PyAny>>,
        execution_id: Option<String>,
        tenant: Option<String>,
        agree: Option<Py<PyAny>>,
        notify: Option<Py<PyAny>>,
        fallbacks: Option<HashMap<String, Py<PyAny>>>,
        dir: Option<PathBuf>,
        durability: Option<&str>,
        coordinator: Option<&Coordinator>,
        respond: Option<Py<PyAny>>,
        consensus_timeout: Option<f64>,
        fix: Option<Py<PyAny>>,
        analyze: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let store = store.get()?;
        let agreement = match (agree, coordinator) {
            (Some(a), _) => Some(Arc::new(PyAgreement(a)) as Arc<dyn Agreement>),
            (None, Some(c)) => {
                let mut a = ConsensusAgreement::new(c.get()?);
                if let Some(t) = consensus_timeout {
                    a = a.timeout(std::time::Duration::try_from_secs_f64(t).map_err(|_| {
                        pyo3::exceptions::PyValueError::new_err(format!(
                            "consensus_timeout: expected seconds >= 0, not {t}"
                        ))
                    })?);
                }
                if let Some(r) = respond {
                    a = a.respond(Arc::new(PyRespond(r)));
                }
                Some(Arc::new(a) as Arc<dyn Agreement>)
            }
            (None, None) => None,
        };
        let inputs = match serde_json::from_str(inputs) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "inputs: expected a JSON object",
                ))
            }
        };
        let durability = durability
            .map(omium_core::Durability::parse)
            .transpose()
            .map_err(err)?;
        let options = RunOptions {
            execution_id,
            tenant,
            inputs,
            agents: agents
                .into_iter()
                .map(|(k, v)| (k, Arc::new(PyAgent(v)) as Arc<dyn Agent>))
                .collect(),
            agreement,
            hooks: Some(Arc::new(PyHooks {
                notify,
                fallbacks: fallbacks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, Arc::new(PyAgent(v)) as Arc<dyn Agent>))
                    .collect(),
                fix,
                analyze,
            })),
            durability,
            dir,
        };
        let spec = self.inner.clone();
        let report = py
            .detach(move || workflow::run(&store, &spec, options))
            .map_err(err)?;
        Ok(serde_json::to_string(&report).expect("reports serialize"))
    }
}

/// `[(name, description, text)]` of the templates shipped with Omium.
#[pyfunction]
pub fn workflow_templates() -> Vec<(&'static str, &'static str, &'static str)> {
    workflow::templates::ALL
        .iter()
        .map(|t| (t.name, t.description, t.text))
        .collect()
}
