//! Policies and recovery for Python: parsing and validation (errors become `PolicyError` with
//! file, line, column, path, value, choices and suggestion), and `Recovery`, the handle a step
//! drives while it handles a failure. Records cross as JSON text; Python decodes them.

use std::sync::Mutex;

use omium_core::policy::{self, Problem, Trigger};
use omium_core::recovery::driver::{Analysis, Driver, Event};
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

/// The handling of one failed step: Python reports what it did (`advance`) and gets the next
/// command of the core's recovery driver (`omium_core::recovery::driver`).
#[pyclass(module = "omium._omium")]
pub struct Recovery {
    inner: Mutex<Driver>,
}

impl Recovery {
    pub fn new(d: Driver) -> Self {
        Recovery {
            inner: Mutex::new(d),
        }
    }

    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Driver) -> omium_core::Result<T> + Send,
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
    /// Reports an event (`start`, `called`, `fixed`, `analyzed`, `notified`, `missing`) and
    /// returns the next command as `(name, params)`: retry {attempt, delay}, call, fallback
    /// {function}, fix {fix, failure}, analyze {failure}, notify {event, failure, channels},
    /// return, reraise, raise {code, message, execution_id, step, failure, reason|to|channels}.
    #[pyo3(signature = (event, ok=true, note=None, recoverable=true, root_cause=None, suggested_fix=None))]
    #[allow(clippy::too_many_arguments)]
    fn advance<'py>(
        &self,
        py: Python<'py>,
        event: &str,
        ok: bool,
        note: Option<String>,
        recoverable: bool,
        root_cause: Option<String>,
        suggested_fix: Option<String>,
    ) -> PyResult<(&'static str, Bound<'py, PyAny>)> {
        let analysis = Analysis {
            root_cause,
            suggested_fix,
        };
        let event = Event::from_parts(event, ok, note, recoverable, analysis).map_err(err)?;
        let command = self.with(py, |d| d.advance(event))?;
        let params = py
            .import("json")?
            .call_method1("loads", (command.params().to_string(),))?;
        Ok((command.name(), params))
    }

    /// Settles the failure as failed without acting on it (a denied tool outside a step).
    fn failed(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |d| d.give_up())
    }

    /// The failure record as notifications carry it, as JSON text.
    fn failure(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |d| d.failure().map(|v| v.to_string()))
    }
}
