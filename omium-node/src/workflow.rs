//! Workflow specs from Node: `load`/`parse` validate a spec (errors name line and column), and
//! `Store.runWorkflow` runs it with the core's durable parallel executor on a worker thread.
//! Agents bound to JS functions are called back on the JS thread through one dispatch function
//! (`(request JSON) => Promise<response JSON>`); the executor's thread waits for the answer.

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;
use omium_core::workflow::{self, Agent, AgentCall, AgentError, Plan, RunOptions};
use serde_json::{json, Map, Value};

use crate::convert::{coded, err, record};

/// `(request JSON) => Promise<response JSON>`: the TS layer's dispatcher of agent calls.
pub type Dispatch = ThreadsafeFunction<String, Promise<String>, String, Status, false>;

/// A validated workflow spec.
#[napi]
pub struct WorkflowSpec {
    inner: Arc<workflow::Spec>,
}

fn spec_err(e: workflow::SpecErrors) -> Error {
    err(omium_core::Error::Workflow(Box::new(e)))
}

#[napi]
impl WorkflowSpec {
    /// Parses and validates a spec (YAML or JSON text); `file` is named in error messages.
    #[napi(factory)]
    pub fn parse(text: String, file: Option<String>) -> Result<Self> {
        let spec = workflow::parse(&text, file.as_deref()).map_err(spec_err)?;
        Ok(WorkflowSpec {
            inner: Arc::new(spec),
        })
    }

    /// Reads and validates a spec file.
    #[napi(factory)]
    pub fn load(path: String) -> Result<Self> {
        let spec = workflow::load(std::path::Path::new(&path)).map_err(err)?;
        Ok(WorkflowSpec {
            inner: Arc::new(spec),
        })
    }

    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// The agent ids the spec names.
    #[napi(getter)]
    pub fn agents(&self) -> Vec<String> {
        self.inner.agents.iter().map(|a| a.id.clone()).collect()
    }

    /// The order of execution: levels of steps that can run at once.
    #[napi]
    pub fn plan(&self) -> Value {
        record(&Plan::of(&self.inner))
    }

    /// The plan as `omium workflow plan` prints it.
    #[napi]
    pub fn plan_text(&self) -> String {
        Plan::of(&self.inner).render()
    }
}

struct JsAgent {
    id: String,
    dispatch: Arc<Dispatch>,
}

impl Agent for JsAgent {
    fn call(&self, call: &AgentCall) -> std::result::Result<Map<String, Value>, AgentError> {
        let request = json!({
            "agent": self.id, "executionId": call.execution_id, "workflow": call.workflow,
            "step": call.step, "attempt": call.attempt, "inputs": call.inputs, "outputs": call.outputs,
        })
        .to_string();
        let dispatch = self.dispatch.clone();
        let answer = block_on(async move {
            let promise = dispatch.call_async_catch(request).await?;
            promise.await
        });
        let text = answer.map_err(|e| AgentError::new("Error", e.reason.clone()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            AgentError::new(
                "TypeError",
                format!("agent {:?} answered with bad JSON: {e}", self.id),
            )
        })?;
        if let Some(e) = v.get("error") {
            let classes: Vec<String> = e
                .get("classes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_else(|| vec!["Error".into()]);
            return Err(AgentError {
                classes,
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("failed")
                    .into(),
                kind: None,
            });
        }
        match v.get("outputs") {
            Some(Value::Object(m)) => Ok(m.clone()),
            other => Err(AgentError::new(
                "TypeError",
                format!(
                    "agent {:?} must return an object of outputs, not {}",
                    self.id,
                    other
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "nothing".into())
                ),
            )),
        }
    }
}

#[napi(object)]
pub struct WorkflowRunOptions {
    pub execution_id: Option<String>,
    pub tenant: Option<String>,
    /// Where `command:` agents run; the current folder when absent.
    pub dir: Option<String>,
    pub durability: Option<String>,
}

/// A run ready to start: the spec and its options with the JS agents bound.
pub struct Prepared {
    spec: Arc<workflow::Spec>,
    options: RunOptions,
}

impl Prepared {
    pub fn execute(self, store: &omium_core::Store) -> omium_core::Result<Value> {
        workflow::run(store, &self.spec, self.options).map(|r| record(&r))
    }
}

pub fn prepare(
    spec: &WorkflowSpec,
    inputs: Map<String, Value>,
    agents: Vec<String>,
    dispatch: Dispatch,
    options: Option<WorkflowRunOptions>,
) -> Result<Prepared> {
    let dispatch = Arc::new(dispatch);
    let o = options.unwrap_or(WorkflowRunOptions {
        execution_id: None,
        tenant: None,
        dir: None,
        durability: None,
    });
    let durability = o
        .durability
        .as_deref()
        .map(omium_core::Durability::parse)
        .transpose()
        .map_err(err)?;
    let known: Vec<&str> = spec.inner.agents.iter().map(|s| s.id.as_str()).collect();
    if let Some(a) = agents.iter().find(|a| !known.contains(&a.as_str())) {
        return Err(coded(
            "invalid_argument",
            format!(
                "bind: workflow {:?} has no agent {a:?} (its agents: {})",
                spec.inner.name,
                known.join(", ")
            ),
        ));
    }
    let options = RunOptions {
        execution_id: o.execution_id,
        tenant: o.tenant,
        inputs,
        agents: agents
            .into_iter()
            .map(|id| {
                let agent = JsAgent {
                    id: id.clone(),
                    dispatch: dispatch.clone(),
                };
                (id, Arc::new(agent) as Arc<dyn Agent>)
            })
            .collect(),
        agreement: None,
        hooks: None,
        durability,
        dir: o.dir.map(PathBuf::from),
    };
    Ok(Prepared {
        spec: spec.inner.clone(),
        options,
    })
}

/// `[name, description, text]` of the templates shipped with Omium.
#[napi]
pub fn workflow_templates() -> Vec<(String, String, String)> {
    workflow::templates::ALL
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.description.to_string(),
                t.text.to_string(),
            )
        })
        .collect()
}
