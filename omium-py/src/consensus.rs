//! `omium._omium.Coordinator`: the consensus coordinator (embedded in the store, or a client of
//! a cluster). Values cross as JSON text; `omium.consensus` turns them into Python objects.

use std::sync::RwLock;
use std::time::Duration;

use omium_core::consensus::{
    status_json, BroadcastRequest, Coordinator as Core, CoordinatorConfig,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::convert::{self, err};
use crate::store::Store;

#[pyclass(frozen, module = "omium._omium")]
pub struct Coordinator {
    inner: RwLock<Option<Core>>,
}

fn parse(what: &str, text: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("{what}: not JSON: {e}")))
}

impl Coordinator {
    pub(crate) fn get(&self) -> PyResult<Core> {
        let guard = self
            .inner
            .read()
            .map_err(|_| PyRuntimeError::new_err("omium coordinator lock poisoned by a panic"))?;
        guard.clone().ok_or_else(|| {
            convert::coded(
                "store_closed",
                "the consensus coordinator is closed; call omium.init() (or omium.consensus.connect()) again".into(),
            )
        })
    }
}

#[pymethods]
impl Coordinator {
    /// The embedded group of `store`, or a cluster client when `nodes` is given (violations
    /// are then recorded in `store` when one is given).
    #[new]
    #[pyo3(signature = (store=None, nodes=None))]
    fn new(py: Python<'_>, store: Option<&Store>, nodes: Option<Vec<String>>) -> PyResult<Self> {
        let store = store.map(|s| s.get()).transpose()?;
        let config = match nodes {
            Some(nodes) => CoordinatorConfig::Cluster { nodes },
            None => CoordinatorConfig::Embedded,
        };
        let core = py
            .detach(|| Core::open(store.as_ref(), config))
            .map_err(err)?;
        Ok(Coordinator {
            inner: RwLock::new(Some(core)),
        })
    }

    /// Stops the embedded Raft group (or drops the cluster client).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .inner
            .write()
            .map_err(|_| PyRuntimeError::new_err("omium coordinator lock poisoned by a panic"))?
            .take();
        py.detach(move || drop(taken));
        Ok(())
    }

    #[getter]
    fn embedded(&self) -> PyResult<bool> {
        Ok(self.get()?.is_embedded())
    }

    // The Python signature is the issue's: one argument per field of the message.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (execution_id, sender, targets, message, schema=None, quorum=None))]
    fn broadcast(
        &self,
        py: Python<'_>,
        execution_id: String,
        sender: String,
        targets: Vec<String>,
        message: &str,
        schema: Option<&str>,
        quorum: Option<u32>,
    ) -> PyResult<String> {
        let req = BroadcastRequest {
            execution_id,
            sender,
            targets,
            message: parse("message", message)?,
            schema: schema.map(|s| parse("schema", s)).transpose()?,
            quorum,
            id: None,
        };
        let c = self.get()?;
        let b = py.detach(|| c.broadcast(&req)).map_err(err)?;
        Ok(serde_json::to_string(&b).expect("records serialize"))
    }

    #[pyo3(signature = (message_id, agent, vote=None))]
    fn acknowledge(
        &self,
        py: Python<'_>,
        message_id: &str,
        agent: &str,
        vote: Option<&str>,
    ) -> PyResult<String> {
        let vote = vote.map(|v| parse("vote", v)).transpose()?;
        let c = self.get()?;
        let s = py
            .detach(|| c.acknowledge(message_id, agent, vote))
            .map_err(err)?;
        Ok(status_json(&s).to_string())
    }

    #[pyo3(signature = (message_id, timeout, record=true))]
    fn await_agreement(
        &self,
        py: Python<'_>,
        message_id: &str,
        timeout: f64,
        record: bool,
    ) -> PyResult<String> {
        if !(timeout.is_finite() && timeout >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "await_agreement(timeout={timeout}): expected a number of seconds >= 0"
            )));
        }
        let c = self.get()?;
        let m = py
            .detach(|| c.await_agreement_with(message_id, Duration::from_secs_f64(timeout), record))
            .map_err(err)?;
        Ok(m.to_json().to_string())
    }

    fn status(&self, py: Python<'_>, execution_id: &str) -> PyResult<String> {
        let c = self.get()?;
        let list = py.detach(|| c.status(execution_id)).map_err(err)?;
        Ok(serde_json::Value::Array(list.iter().map(|m| m.to_json()).collect()).to_string())
    }

    fn message(&self, py: Python<'_>, message_id: &str) -> PyResult<String> {
        let c = self.get()?;
        let m = py.detach(|| c.message(message_id)).map_err(err)?;
        Ok(m.to_json().to_string())
    }
}
