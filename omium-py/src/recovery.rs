//! Policies and recovery for Python: parsing and validation (errors become `PolicyError` with
//! file, line, column, path, value, choices and suggestion), and `Recovery`, the handle a step
//! drives while it handles a failure. Records cross as JSON text; Python decodes them.

use std::sync::Mutex;

use omium_core::policy::{self, Problem, Trigger};
use omium_core::serve::RecoveryHandle;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::err;

/// The Python exception for a policy problem: `omium.errors.PolicyError` with its details.
pub fn policy_err(p: &Problem) -> PyErr {
    Python::attach(|py| {
        let made = (|| -> PyResult<PyErr> {
            let details = PyDict::new(py);
            details.set_item("file", p.file.as_deref())?;
            details.set_item("line", p.at.line)?;
            details.set_item("column", p.at.column)?;
            details.set_item("path", &p.path)?;
            details.set_item("problem", &p.message)?;
            details.set_item("value", p.value.as_deref())?;
            details.set_item("expected", p.expected.clone())?;
            details.set_item("suggestion", p.suggestion.as_deref())?;
            let exc = py
                .import("omium.errors")?
                .getattr("PolicyError")?
                .call1((p.to_string(), details))?;
            Ok(PyErr::from_value(exc))
        })();
        made.unwrap_or_else(|e| e)
    })
}

/// Maps a core error, giving policy problems their structured exception.
pub fn core_err(e: omium_core::Error) -> PyErr {
    match &e {
        omium_core::Error::Policy(p) => policy_err(p),
        _ => err(e),
    }
}

/// Parses and validates a policy document; returns its canonical form as JSON.
#[pyfunction]
#[pyo3(signature = (text, file=None))]
pub fn parse_policy(text: &str, file: Option<&str>) -> PyResult<String> {
    let p = policy::parse(text, file).map_err(|p| policy_err(&p))?;
    policy::Compiled::new(&p).map_err(err)?;
    Ok(policy::to_json(&p))
}

/// The JSON Schema of policy documents.
#[pyfunction]
pub fn policy_schema() -> String {
    serde_json::to_string_pretty(&policy::json_schema()).expect("schema serializes")
}

/// A unified diff of two canonical policies (empty when equal).
#[pyfunction]
pub fn policy_diff(from_label: &str, a: &str, to_label: &str, b: &str) -> String {
    policy::VersionDiff::of(from_label, a, to_label, b).unified
}

/// Checks a failure type name.
#[pyfunction]
pub fn check_failure_type(name: &str) -> PyResult<&'static str> {
    Trigger::parse(name).map(Trigger::as_str).map_err(err)
}

/// The step-level retry (`retries=N`): N retries after the first attempt, exponential from
/// 50 ms, doubling, capped at 2 s, no jitter.
/// The handling of one failure. Python asks `next_directive()`, carries it out and reports.
#[pyclass(module = "omium._omium")]
pub struct Recovery {
    inner: Mutex<RecoveryHandle>,
}

impl Recovery {
    pub fn new(r: RecoveryHandle) -> Self {
        Recovery {
            inner: Mutex::new(r),
        }
    }

    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut RecoveryHandle) -> omium_core::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut g = self
                .inner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("recovery lock poisoned by a panic"))?;
            f(&mut g).map_err(core_err)
        })
    }
}

#[pymethods]
impl Recovery {
    /// `(name, params)`: retry {attempt, delay}, rollback {to}, pause {reason}, notify /
    /// escalate {channels}, fallback {function}, suggest_fix {fix, auto_apply}, inspect, fail.
    fn next_directive<'py>(&self, py: Python<'py>) -> PyResult<(String, Bound<'py, PyAny>)> {
        let (name, params) = self.with(py, |r| r.next_directive())?;
        let params = py
            .import("json")?
            .call_method1("loads", (params.to_string(),))?;
        Ok((name, params))
    }

    #[pyo3(signature = (ok, note=None))]
    fn done(&self, py: Python<'_>, ok: bool, note: Option<String>) -> PyResult<()> {
        self.with(py, |r| r.done(ok, note.as_deref()))
    }

    #[pyo3(signature = (root_cause=None, suggested_fix=None))]
    fn set_analysis(
        &self,
        py: Python<'_>,
        root_cause: Option<String>,
        suggested_fix: Option<String>,
    ) -> PyResult<()> {
        self.with(py, |r| r.set_analysis(root_cause, suggested_fix))
    }

    fn recovered(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |r| r.finish("recovered"))
    }

    fn failed(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |r| r.finish("failed"))
    }

    fn escalated(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |r| r.finish("escalated"))
    }

    fn paused(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |r| r.finish("paused"))
    }

    fn rolled_back(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |r| r.finish("rolled_back"))
    }

    /// Sends the channels' webhooks; returns `[(channel, error or None)]`.
    fn send_webhooks(
        &self,
        py: Python<'_>,
        channels: Vec<String>,
        event: &str,
    ) -> PyResult<Vec<(String, Option<String>)>> {
        self.with(py, |r| r.notify(&channels, event))
    }

    /// The notification body, as JSON text.
    fn payload(&self, py: Python<'_>, event: &str) -> PyResult<String> {
        self.with(py, |r| r.payload(event).map(|v| v.to_string()))
    }

    /// The failure record, as JSON text.
    fn record(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |r| r.record().map(|v| v.to_string()))
    }
}
