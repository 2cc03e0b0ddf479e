//! Conversions between core values and Python objects — records are the core's one view of them
//! (`omium_core::json`, as C and Node get them) — and the one place where core errors become
//! Python exceptions (classes of `omium.errors`, chosen by `Error::code`).

use omium_core::{json, Checkpoint, Execution, VerifyReport};
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

/// A JSON value as Python objects (dict, list, str, int, float, bool, None).
pub fn from_json<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => PyList::new(
            py,
            a.iter()
                .map(|x| from_json(py, x))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, from_json(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// A record view of the core (`omium_core::json`, the one C and Node get) as a Python dict.
fn view<'py>(py: Python<'py>, v: serde_json::Value) -> PyResult<Bound<'py, PyDict>> {
    Ok(from_json(py, &v)?.cast_into::<PyDict>()?)
}

/// A record view list as a Python list of dicts.
fn views<'py>(py: Python<'py>, v: serde_json::Value) -> PyResult<Bound<'py, PyList>> {
    Ok(from_json(py, &v)?.cast_into::<PyList>()?)
}

pub fn checkpoint<'py>(py: Python<'py>, c: &Checkpoint) -> PyResult<Bound<'py, PyDict>> {
    view(py, json::checkpoint(c))
}

pub fn checkpoints<'py>(py: Python<'py>, list: &[Checkpoint]) -> PyResult<Bound<'py, PyList>> {
    views(py, json::checkpoints(list))
}

pub fn executions<'py>(py: Python<'py>, list: &[Execution]) -> PyResult<Bound<'py, PyList>> {
    views(py, json::executions(list))
}

pub fn execution<'py>(py: Python<'py>, e: &Execution) -> PyResult<Bound<'py, PyDict>> {
    view(py, json::execution(e))
}

pub fn verify_report<'py>(py: Python<'py>, r: &VerifyReport) -> PyResult<Bound<'py, PyDict>> {
    view(py, json::verify_report(r))
}
