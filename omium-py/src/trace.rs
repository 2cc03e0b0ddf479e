//! Spans from Python: `record_span` takes a finished span's fields in one call (the GIL is not
//! released: queuing a span is cheaper than releasing it); trace ids, traceparent parsing,
//! the waterfall, the HTML timeline, run diffs and request hashes come from the core.

use omium_core::trace::{self, Event, Span, SpanKind, StatusCode, Value};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::convert::err;
use crate::store::Store;

fn value(v: &Bound<'_, PyAny>, key: &str) -> PyResult<Value> {
    if v.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(v.extract()?));
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(v
            .extract::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Str(v.to_string())));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(Value::Float(v.extract()?));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::Str(s.to_str()?.to_string()));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in v.try_iter()? {
            out.push(item?.str()?.to_str()?.to_string());
        }
        return Ok(Value::StrList(out));
    }
    if v.is_none() {
        return Err(PyTypeError::new_err(format!(
            "span attribute {key:?} is None; leave it out instead"
        )));
    }
    Ok(Value::Str(v.str()?.to_str()?.to_string()))
}

pub(crate) fn attributes(d: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, Value)>> {
    let Some(d) = d else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        if v.is_none() {
            continue;
        }
        let k: String = k
            .extract()
            .map_err(|_| PyTypeError::new_err("span attribute names must be str"))?;
        let v = value(&v, &k)?;
        out.push((k, v));
    }
    Ok(out)
}

pub(crate) fn id<const N: usize>(b: &[u8], what: &str) -> PyResult<[u8; N]> {
    b.try_into()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be {N} bytes, not {}", b.len())))
}

/// A span status from its name.
pub(crate) fn status(s: &str) -> PyResult<StatusCode> {
    match s {
        "ok" => Ok(StatusCode::Ok),
        "error" => Ok(StatusCode::Error),
        "unset" => Ok(StatusCode::Unset),
        s => Err(PyTypeError::new_err(format!(
            "span status must be ok, error or unset, not {s:?}"
        ))),
    }
}

/// Span events from a list of `(name, time_ns, attributes or None)`.
pub(crate) fn events(list: Option<&Bound<'_, PyList>>) -> PyResult<Vec<Event>> {
    let mut out = Vec::new();
    for e in list.into_iter().flat_map(|l| l.iter()) {
        let (name, time_ns, attrs): (String, u64, Option<Bound<'_, PyDict>>) = e.extract()?;
        out.push(Event {
            name,
            time_ns,
            attributes: attributes(attrs.as_ref())?,
        });
    }
    Ok(out)
}

/// Records a finished span (see `omium.trace`).
#[pyfunction]
#[pyo3(signature = (store, trace_id, span_id, parent, name, span_type, execution_id, agent, start_ns, end_ns, status, status_message="", kind="internal", attributes=None, events=None))]
#[allow(clippy::too_many_arguments)]
pub fn record_span(
    store: &Store,
    trace_id: &[u8],
    span_id: &[u8],
    parent: Option<&[u8]>,
    name: String,
    span_type: String,
    execution_id: String,
    agent: String,
    start_ns: u64,
    end_ns: u64,
    status: &str,
    status_message: &str,
    kind: &str,
    attributes: Option<&Bound<'_, PyDict>>,
    events: Option<&Bound<'_, PyList>>,
) -> PyResult<()> {
    let span = Span {
        trace_id: id(trace_id, "trace_id")?,
        span_id: id(span_id, "span_id")?,
        parent: parent.map(|p| id(p, "parent")).transpose()?,
        name,
        kind: SpanKind::parse(kind).map_err(err)?,
        span_type,
        execution_id,
        agent,
        start_ns,
        end_ns,
        status: self::status(status)?,
        status_message: status_message.to_string(),
        attributes: self::attributes(attributes)?,
        events: self::events(events)?,
    };
    store.handle()?.record_span(span);
    Ok(())
}

/// The trace id of an execution (the same on every run of it).
#[pyfunction]
pub fn trace_id_of(execution_id: &str) -> [u8; 16] {
    trace::trace_id_of(execution_id)
}

/// A new random trace id (for spans outside executions).
#[pyfunction]
pub fn new_trace_id() -> [u8; 16] {
    let (a, b) = (trace::new_span_id(), trace::new_span_id());
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&a);
    t[8..].copy_from_slice(&b);
    t
}

/// A new random span id.
#[pyfunction]
pub fn new_span_id() -> [u8; 8] {
    trace::new_span_id()
}

/// `(trace_id, span_id)` of a W3C `traceparent` header.
#[pyfunction]
pub fn parse_traceparent(header: &str) -> PyResult<([u8; 16], [u8; 8])> {
    trace::parse_traceparent(header).map_err(err)
}

/// The canonical request of an LLM or tool call and its hash: `(request JSON text, hash)`.
/// `args` (a list) and `params` (an object) come as JSON text.
#[pyfunction]
pub fn canonical_request(
    kind: &str,
    name: &str,
    provider: &str,
    model: &str,
    args_json: &str,
    params_json: &str,
) -> PyResult<(String, String)> {
    let args: Vec<serde_json::Value> = serde_json::from_str(args_json)
        .map_err(|e| PyTypeError::new_err(format!("call args are not a JSON list: {e}")))?;
    let params: serde_json::Map<String, serde_json::Value> = serde_json::from_str(params_json)
        .map_err(|e| PyTypeError::new_err(format!("call params are not a JSON object: {e}")))?;
    let (request, hash) =
        trace::calls::canonical_request(kind, name, provider, model, args, params).map_err(err)?;
    Ok((request.to_string(), hash))
}

/// The span name of a call (`chat gpt-4o`, `execute_tool search`); its step is `KIND:NAME`.
#[pyfunction]
pub fn call_span_name(kind: &str, name: &str, model: &str, operation: &str) -> String {
    trace::calls::span_name(kind, name, model, operation)
}

/// The recorded calls of an execution, answering a replayed run's calls in order.
#[pyclass(module = "omium._omium")]
pub struct Replay {
    inner: std::sync::Mutex<trace::calls::Replay>,
}

#[pymethods]
impl Replay {
    /// `(step name, codec name or None, state bytes)` of the recorded call that answers a
    /// request (JSON text) with this hash; `ReplayDivergence` when it differs or the recording
    /// has no further call.
    fn answer(
        &self,
        request_json: &str,
        hash: &str,
    ) -> PyResult<(String, Option<String>, Vec<u8>)> {
        let request: serde_json::Value = serde_json::from_str(request_json)
            .map_err(|e| PyTypeError::new_err(format!("request is not JSON: {e}")))?;
        let mut r = self.inner.lock().expect("replay lock");
        let rec = r.answer(&request, hash).map_err(err)?;
        Ok((
            rec.name.clone(),
            omium_core::value::checkpoint_codec(&rec.checkpoint).map(str::to_string),
            rec.state.clone(),
        ))
    }

    /// `ReplayDivergence` when the run ended before making every recorded call.
    fn finish(&self) -> PyResult<()> {
        self.inner
            .lock()
            .expect("replay lock")
            .finish()
            .map_err(err)
    }
}

impl Replay {
    pub fn new(inner: trace::calls::Replay) -> Replay {
        Replay {
            inner: std::sync::Mutex::new(inner),
        }
    }
}
