//! Policies and recovery for Python: parsing and validation (errors become `PolicyError` with
//! file, line, column, path, value, choices and suggestion), and `Recovery`, the handle a step
//! drives while it handles a failure. Records cross as JSON text; Python decodes them.

use std::sync::Mutex;

use omium_core::policy::{self, Problem, Trigger};
use omium_core::serve::RemoteRecovery;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::json;

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
/// A recovery driven in this process, or one held by an `omium serve` daemon.
pub enum Backend {
    Local(Box<omium_core::Recovery>),
    Remote(RemoteRecovery),
}

#[pyclass(module = "omium._omium")]
pub struct Recovery {
    inner: Mutex<Backend>,
}

impl Recovery {
    pub fn new(r: Backend) -> Self {
        Recovery {
            inner: Mutex::new(r),
        }
    }

    /// Runs `local` on a local recovery, or calls `method` with `args` on the daemon.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        local: impl FnOnce(&mut omium_core::Recovery) -> omium_core::Result<T> + Send,
        method: &str,
        args: serde_json::Value,
        remote: impl FnOnce(serde_json::Value) -> T + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut g = self
                .inner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("recovery lock poisoned by a panic"))?;
            match &mut *g {
                Backend::Local(r) => local(r).map_err(core_err),
                Backend::Remote(r) => r.call(method, args).map(remote).map_err(core_err),
            }
        })
    }

    fn step(
        &self,
        py: Python<'_>,
        local: impl FnOnce(&mut omium_core::Recovery) -> omium_core::Result<()> + Send,
        method: &str,
    ) -> PyResult<()> {
        self.with(py, local, method, json!({}), drop)
    }
}

fn text(v: serde_json::Value) -> String {
    v.to_string()
}

#[pymethods]
impl Recovery {
    /// `(name, params)`: retry {attempt, delay}, rollback {to}, pause {reason}, notify /
    /// escalate {channels}, fallback {function}, suggest_fix {fix, auto_apply}, inspect, fail.
    fn next_directive<'py>(&self, py: Python<'py>) -> PyResult<(String, Bound<'py, PyAny>)> {
        let (name, params) = self.with(
            py,
            |r| {
                let d = r.next_directive()?;
                Ok((d.name().to_string(), d.params()))
            },
            "next_directive",
            json!({}),
            |v| {
                (
                    v["name"].as_str().unwrap_or("fail").to_string(),
                    v["params"].clone(),
                )
            },
        )?;
        let params = py
            .import("json")?
            .call_method1("loads", (params.to_string(),))?;
        Ok((name, params))
    }

    #[pyo3(signature = (ok, note=None))]
    fn done(&self, py: Python<'_>, ok: bool, note: Option<String>) -> PyResult<()> {
        let args = json!({"ok": ok, "note": note});
        self.with(py, |r| r.done(ok, note.as_deref()), "done", args, drop)
    }

    #[pyo3(signature = (root_cause=None, suggested_fix=None))]
    fn set_analysis(
        &self,
        py: Python<'_>,
        root_cause: Option<String>,
        suggested_fix: Option<String>,
    ) -> PyResult<()> {
        let args = json!({"root_cause": root_cause, "suggested_fix": suggested_fix});
        self.with(
            py,
            |r| r.set_analysis(root_cause, suggested_fix),
            "set_analysis",
            args,
            drop,
        )
    }

    fn recovered(&self, py: Python<'_>) -> PyResult<()> {
        self.step(py, |r| r.recovered(), "recovered")
    }

    fn failed(&self, py: Python<'_>) -> PyResult<()> {
        self.step(py, |r| r.failed(), "failed")
    }

    fn escalated(&self, py: Python<'_>) -> PyResult<()> {
        self.step(py, |r| r.escalated(), "escalated")
    }

    fn paused(&self, py: Python<'_>) -> PyResult<()> {
        self.step(py, |r| r.paused(), "paused")
    }

    fn rolled_back(&self, py: Python<'_>) -> PyResult<()> {
        self.step(py, |r| r.rolled_back(), "rolled_back")
    }

    /// Sends the channels' webhooks; returns `[(channel, error or None)]`.
    fn send_webhooks(
        &self,
        py: Python<'_>,
        channels: Vec<String>,
        event: &str,
    ) -> PyResult<Vec<(String, Option<String>)>> {
        let args = json!({"channels": channels, "event": event});
        self.with(
            py,
            |r| {
                let sent = r.notify(&channels, event);
                Ok(sent.into_iter().map(|(c, r)| (c, r.err())).collect())
            },
            "send_webhooks",
            args,
            |v| serde_json::from_value(v).unwrap_or_default(),
        )
    }

    /// The notification body, as JSON text.
    fn payload(&self, py: Python<'_>, event: &str) -> PyResult<String> {
        let args = json!({ "event": event });
        self.with(
            py,
            |r| Ok(r.payload(event).to_string()),
            "payload",
            args,
            text,
        )
    }

    /// The failure record, as JSON text.
    fn record(&self, py: Python<'_>) -> PyResult<String> {
        self.with(
            py,
            |r| Ok(serde_json::to_string(r.record()).expect("records serialize")),
            "record",
            json!({}),
            text,
        )
    }
}
