//! Conversions between core values and Python objects, and the one place where core errors
//! become Python exceptions (classes of `omium.errors`, chosen by `Error::code`).

use omium_core::{Checkpoint, Execution, VerifyReport};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The Python exception for a core error: `omium.errors.from_code(code, message, details)`
/// (the error's details as JSON text, if it has any).
pub fn err(e: impl Into<omium_core::Error>) -> PyErr {
    let e: omium_core::Error = e.into();
    with_details(e.code(), e.to_string(), e.details().map(|d| d.to_string()))
}

/// The `omium.errors` exception for an error code (falls back to RuntimeError if the Python
/// package is not importable, e.g. when the native module is used on its own).
pub fn coded(code: &str, message: String) -> PyErr {
    with_details(code, message, None)
}

fn with_details(code: &str, message: String, details: Option<String>) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("omium.errors")
            .and_then(|m| m.getattr("from_code"))
            .and_then(|f| f.call1((code, &message, details)));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            Err(_) => PyRuntimeError::new_err(format!("[{code}] {message}")),
        }
    })
}

/// A JSON-like value from a Python object (for CEL conditions).
pub fn to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Ok(Value::from(obj.extract::<f64>()?));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(serde_json::Number::from_f64(obj.extract()?)
            .map(Value::Number)
            .unwrap_or(Value::Null));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_string()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::String(
            String::from_utf8_lossy(b.as_bytes()).into_owned(),
        ));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = serde_json::Map::new();
        for (k, v) in d.iter() {
            m.insert(k.str()?.to_str()?.to_string(), to_json(&v, what)?);
        }
        return Ok(Value::Object(m));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l
            .iter()
            .map(|v| to_json(&v, what))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t
            .iter()
            .map(|v| to_json(&v, what))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    Err(PyTypeError::new_err(format!(
        "{what}: cannot use a value of type {} in a condition (expected None, bool, int, float, str, bytes, list, tuple or dict)",
        obj.get_type().name()?
    )))
}

pub fn checkpoint<'py>(py: Python<'py>, c: &Checkpoint) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", c.id.to_string())?;
    d.set_item("execution_id", &c.execution_id)?;
    d.set_item("agent", &c.agent)?;
    d.set_item("name", &c.name)?;
    d.set_item("kind", c.kind.as_str())?;
    d.set_item("parent", c.parent.map(|p| p.to_string()))?;
    d.set_item("seq", c.seq)?;
    d.set_item("global_seq", c.global_seq)?;
    d.set_item("key", c.key.as_deref())?;
    d.set_item("checksum", omium_core::hex(&c.checksum))?;
    d.set_item("raw_size", c.raw_size)?;
    d.set_item("stored_size", c.stored_size)?;
    d.set_item("checks_passed", c.checks.passed())?;
    let checks = |list: &[omium_core::CheckResult]| -> Vec<(String, bool)> {
        list.iter()
            .map(|r| (r.expression.clone(), r.passed))
            .collect()
    };
    d.set_item("preconditions", checks(&c.checks.preconditions))?;
    d.set_item("postconditions", checks(&c.checks.postconditions))?;
    d.set_item("metadata", c.metadata.clone())?;
    d.set_item("created_at_ms", c.created_at_ms)?;
    Ok(d)
}

pub fn checkpoints<'py>(py: Python<'py>, list: &[Checkpoint]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        list.iter()
            .map(|c| checkpoint(py, c))
            .collect::<PyResult<Vec<_>>>()?,
    )
}

pub fn executions<'py>(py: Python<'py>, list: &[Execution]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        list.iter()
            .map(|e| execution(py, e))
            .collect::<PyResult<Vec<_>>>()?,
    )
}

pub fn execution<'py>(py: Python<'py>, e: &Execution) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", &e.id)?;
    d.set_item("workflow", &e.workflow)?;
    d.set_item("tenant", &e.tenant)?;
    d.set_item("status", e.status.as_str())?;
    d.set_item("head", e.head.map(|h| h.to_string()))?;
    d.set_item("error", e.error.as_deref())?;
    d.set_item("attempts", e.attempts)?;
    d.set_item("lease_owner", e.lease.as_ref().map(|l| l.owner.clone()))?;
    d.set_item(
        "lease_expires_at_ms",
        e.lease.as_ref().map(|l| l.expires_at_ms),
    )?;
    d.set_item("labels", e.labels.clone())?;
    d.set_item("checkpoint_count", e.checkpoint_count)?;
    d.set_item("created_at_ms", e.created_at_ms)?;
    d.set_item("updated_at_ms", e.updated_at_ms)?;
    Ok(d)
}

pub fn verify_report<'py>(py: Python<'py>, r: &VerifyReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("ok", r.ok())?;
    d.set_item("executions", r.executions)?;
    d.set_item("checkpoints", r.checkpoints)?;
    d.set_item("audit_entries", r.audit.entries)?;
    d.set_item("audit_head", r.audit.head.map(|h| h.to_string()))?;
    let problems: Vec<String> = r
        .problems
        .iter()
        .map(|p| {
            format!(
                "execution {:?} checkpoint {}: {}",
                p.execution,
                p.checkpoint.as_deref().unwrap_or("-"),
                p.error
            )
        })
        .chain(r.audit.problems.iter().cloned())
        .collect();
    d.set_item("problems", problems)?;
    Ok(d)
}
