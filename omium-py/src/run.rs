//! `omium._omium.Run`: one run of an execution (holds its lease).

use std::collections::BTreeMap;
use std::sync::RwLock;

use omium_core::serve::{b64, RemoteRun};
use omium_core::{CheckResult, CheckpointKind, Checks, NewCheckpoint};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::json;

use crate::convert::{self, err};

/// A run in this process, or one held by an `omium serve` daemon for it.
enum Backend {
    Local(omium_core::Run),
    Remote(RemoteRun),
}

#[pyclass(frozen, module = "omium._omium")]
pub struct Run {
    // Read-locked by every call (so steps of one execution on several threads run at once),
    // write-locked only by close().
    inner: RwLock<Option<Backend>>,
    execution_id: String,
}

impl Run {
    pub fn new(run: omium_core::Run) -> Run {
        let execution_id = run.execution_id().to_string();
        Run {
            inner: RwLock::new(Some(Backend::Local(run))),
            execution_id,
        }
    }

    pub fn remote(run: RemoteRun) -> Run {
        let execution_id = run.execution_id().to_string();
        Run {
            inner: RwLock::new(Some(Backend::Remote(run))),
            execution_id,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&Backend) -> PyResult<R>) -> PyResult<R> {
        let guard = self
            .inner
            .read()
            .map_err(|_| PyRuntimeError::new_err("omium run lock poisoned by a panic"))?;
        match guard.as_ref() {
            Some(r) => f(r),
            None => Err(PyRuntimeError::new_err(format!(
                "the run of execution {:?} is closed",
                self.execution_id
            ))),
        }
    }
}

fn checks(list: Vec<(String, bool)>) -> Vec<CheckResult> {
    list.into_iter()
        .map(|(expression, passed)| CheckResult { expression, passed })
        .collect()
}

#[pymethods]
impl Run {
    #[getter]
    fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// Takes the next position of the live branch (at call time).
    fn reserve(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(|r| match r {
            Backend::Local(r) => Ok(r.reserve()),
            Backend::Remote(r) => py.detach(|| r.reserve()).map_err(err),
        })
    }

    /// `(checkpoint, state bytes)` of the recorded step at `seq` (or `key`), else None.
    #[pyo3(signature = (seq, name, key=None))]
    fn recorded<'py>(
        &self,
        py: Python<'py>,
        seq: u64,
        name: &str,
        key: Option<&str>,
    ) -> PyResult<Option<(Bound<'py, PyDict>, Bound<'py, PyBytes>)>> {
        self.with(|r| {
            let found = py
                .detach(|| -> omium_core::Result<_> {
                    match r {
                        Backend::Remote(r) => r.recorded(seq, name, key),
                        Backend::Local(r) => match r.recorded(seq, name, key)? {
                            Some(c) => {
                                let state = r.store().read_state(&c)?;
                                Ok(Some((c, state)))
                            }
                            None => Ok(None),
                        },
                    }
                })
                .map_err(err)?;
            match found {
                Some((c, state)) => Ok(Some((
                    convert::checkpoint(py, &c)?,
                    PyBytes::new(py, &state),
                ))),
                None => Ok(None),
            }
        })
    }

    #[pyo3(signature = (seq, name, state, key=None, agent=None, kind="step", preconditions=Vec::new(), postconditions=Vec::new(), metadata=None))]
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        py: Python<'_>,
        seq: u64,
        name: &str,
        state: &[u8],
        key: Option<&str>,
        agent: Option<&str>,
        kind: &str,
        preconditions: Vec<(String, bool)>,
        postconditions: Vec<(String, bool)>,
        metadata: Option<BTreeMap<String, String>>,
    ) -> PyResult<String> {
        let kind = match kind {
            "step" => CheckpointKind::Step,
            "snapshot" => CheckpointKind::Snapshot,
            other => {
                return Err(PyValueError::new_err(format!(
                    "kind must be 'step' or 'snapshot', not {other:?}"
                )))
            }
        };
        let metadata = metadata.unwrap_or_default();
        self.with(|r| {
            let r = match r {
                Backend::Local(r) => r,
                Backend::Remote(r) => {
                    let args = json!({
                        "name": name, "state": b64(state), "key": key, "agent": agent,
                        "kind": kind.as_str(), "preconditions": preconditions,
                        "postconditions": postconditions, "metadata": metadata,
                    });
                    return py.detach(|| r.record(seq, args)).map_err(err);
                }
            };
            let new = NewCheckpoint {
                name,
                agent,
                kind,
                key,
                state,
                checks: Checks {
                    preconditions: checks(preconditions),
                    postconditions: checks(postconditions),
                },
                metadata,
            };
            // Only the id goes back: building the full dict would cost more than the step's
            // own bookkeeping, and callers that want it ask `Store.checkpoint(id)`.
            let c = py.detach(|| r.record(seq, new)).map_err(err)?;
            Ok(c.id.to_string())
        })
    }

    #[pyo3(signature = (output=None))]
    fn complete(&self, py: Python<'_>, output: Option<&[u8]>) -> PyResult<()> {
        self.with(|r| match r {
            Backend::Local(r) => py.detach(|| r.complete(output)).map_err(err),
            Backend::Remote(r) => py.detach(|| r.complete(output)).map_err(err),
        })
    }

    fn fail(&self, py: Python<'_>, error: &str) -> PyResult<()> {
        self.with(|r| match r {
            Backend::Local(r) => py.detach(|| r.fail(error)).map_err(err),
            Backend::Remote(r) => py.detach(|| r.fail(error)).map_err(err),
        })
    }

    fn pause(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        self.with(|r| match r {
            Backend::Local(r) => py.detach(|| r.pause(reason)).map_err(err),
            Backend::Remote(r) => py.detach(|| r.pause(reason)).map_err(err),
        })
    }

    fn heartbeat(&self, py: Python<'_>) -> PyResult<()> {
        self.with(|r| match r {
            Backend::Local(r) => py.detach(|| r.heartbeat()).map_err(err),
            Backend::Remote(r) => py.detach(|| r.heartbeat()).map_err(err),
        })
    }

    fn execution<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.with(|r| {
            let e = match r {
                Backend::Local(r) => r.execution(),
                Backend::Remote(r) => py.detach(|| r.execution()).map_err(err)?,
            };
            convert::execution(py, &e)
        })
    }

    /// Releases the run; without complete()/fail() the execution stays resumable.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self
            .inner
            .write()
            .map_err(|_| PyRuntimeError::new_err("omium run lock poisoned by a panic"))?;
        if let Some(Backend::Remote(r)) = guard.take() {
            // A daemon that is gone has dropped the run already.
            let _ = py.detach(|| r.close());
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("Run({:?})", self.execution_id)
    }
}
