//! `omium.Span` and `omium.trace`, native: a user span (and the spans of rollbacks, recovery
//! actions, replayed calls and framework runs) is built, entered, ended and recorded here, so a
//! `with omium.trace(...)` block costs a few native calls instead of two Python objects whose
//! end parses fifteen arguments. The Python side keeps what is Python's: its context variables
//! (the current span, a remote parent, the running step), the configuration
//! (`_runtime._config`), the tracing switch and the decorator's wrapper, which `omium._trace`
//! hands over once at import (`span_context`).

use std::sync::{Arc, RwLock};

use omium_core::trace::{self, SpanKind, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::convert::err;
use crate::store::Store;
use crate::trace::{attributes, events, id, new_trace_id, status};

/// What the native span reads of Python's tracing state. The context variables' methods are
/// bound once: a span calls them without looking them up.
struct Context {
    /// `_trace._current.get/set/reset`: the span whose body runs, `(trace_id, span_id,
    /// execution_id)`.
    current_get: Py<PyAny>,
    current_set: Py<PyAny>,
    current_reset: Py<PyAny>,
    /// `_trace._remote.get`: a parent extracted from a `traceparent`, `(trace_id, span_id)`.
    remote_get: Py<PyAny>,
    /// `_runtime.current.get`: the running step's context (its `execution_id`).
    step_get: Py<PyAny>,
    /// The `_runtime` module (its `_config` holds the store; None before `init`).
    runtime: Py<PyAny>,
    /// `_trace._state` (its `"enabled"` is the tracing switch).
    state: Py<PyDict>,
    /// `_trace._decorate(opts, fn)`: the wrapper `@omium.trace` puts around a function.
    decorate: Py<PyAny>,
}

static CONTEXT: RwLock<Option<Arc<Context>>> = RwLock::new(None);

fn context() -> PyResult<Arc<Context>> {
    CONTEXT
        .read()
        .map_err(|_| PyRuntimeError::new_err("omium span context lock poisoned by a panic"))?
        .clone()
        .ok_or_else(|| PyRuntimeError::new_err("omium._trace has not handed over its context"))
}

/// Called once by `omium._trace` at import (again if it is reloaded): its context variables
/// (the current span, the remote parent), the step's (`_runtime.current`), the `_runtime`
/// module, the tracing state and the decorator.
#[pyfunction]
pub fn span_context(
    current: &Bound<'_, PyAny>,
    remote: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    runtime: Py<PyAny>,
    state: Py<PyDict>,
    decorate: Py<PyAny>,
) -> PyResult<()> {
    let py = current.py();
    let method = |v: &Bound<'_, PyAny>, name: &str| -> PyResult<Py<PyAny>> {
        Ok(v.getattr(PyString::new(py, name))?.unbind())
    };
    let ctx = Context {
        current_get: method(current, "get")?,
        current_set: method(current, "set")?,
        current_reset: method(current, "reset")?,
        remote_get: method(remote, "get")?,
        step_get: method(step, "get")?,
        runtime,
        state,
        decorate,
    };
    *CONTEXT
        .write()
        .map_err(|_| PyRuntimeError::new_err("omium span context lock poisoned by a panic"))? =
        Some(Arc::new(ctx));
    Ok(())
}

/// `bytes` of exactly `N` bytes (an id), or a type error naming the field.
fn id_bytes<'py, const N: usize>(
    v: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let b = v.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!("{what} must be {N} bytes, not {}", type_name(v)))
    })?;
    id::<N>(b.as_bytes(), what)?;
    Ok(b.clone())
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn status_name(s: StatusCode) -> &'static str {
    match s {
        StatusCode::Unset => "unset",
        StatusCode::Ok => "ok",
        StatusCode::Error => "error",
    }
}

/// A span being recorded: `set_attribute(s)`, `add_event`, `record_exception`; it ends when
/// its `with` block or decorated call does (or `end()`). Its fields can be read and set. The
/// ids and texts are kept as the Python objects they came as (reading one is a reference, not
/// a copy); ending the span converts them once.
#[pyclass(module = "omium._omium", name = "Span")]
pub struct PySpan {
    /// 16 bytes.
    trace_id: Py<PyBytes>,
    /// 8 bytes.
    span_id: Py<PyBytes>,
    /// 8 bytes, None for a root span.
    parent: Option<Py<PyBytes>>,
    #[pyo3(get, set)]
    execution_id: Py<PyString>,
    #[pyo3(get, set)]
    name: Py<PyString>,
    #[pyo3(get, set)]
    span_type: Py<PyString>,
    kind: SpanKind,
    #[pyo3(get, set)]
    agent: Py<PyString>,
    #[pyo3(get)]
    attributes: Py<PyDict>,
    #[pyo3(get, set)]
    events: Py<PyList>,
    status: StatusCode,
    #[pyo3(get, set)]
    status_message: Py<PyString>,
    #[pyo3(get, set)]
    start_ns: u64,
    #[pyo3(get, set)]
    ended: bool,
    /// The context variable's token while the span is entered.
    token: Option<Py<PyAny>>,
}

impl PySpan {
    /// A span starting now (see `Span(...)`).
    fn start(
        py: Python<'_>,
        name: Py<PyString>,
        span_type: Py<PyString>,
        kind: SpanKind,
        attributes: Option<&Bound<'_, PyAny>>,
        agent: Py<PyString>,
        execution_id: Option<Bound<'_, PyString>>,
    ) -> PyResult<Self> {
        let ctx = context()?;
        let current = match execution_id {
            None => ctx.current_get.bind(py).call0()?,
            Some(_) => py.None().into_bound(py),
        };
        let (trace_id, parent, execution_id) = if !current.is_none() {
            let (t, p, e): (Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyString>) =
                current.extract()?;
            (
                id_bytes::<16>(&t, "trace_id")?,
                Some(id_bytes::<8>(&p, "span_id")?.unbind()),
                e,
            )
        } else {
            let execution_id = match execution_id {
                Some(e) => e,
                None => {
                    let step = ctx.step_get.bind(py).call0()?;
                    if step.is_none() {
                        intern!(py, "").clone()
                    } else {
                        step.getattr(intern!(py, "execution_id"))?.cast_into()?
                    }
                }
            };
            let remote = ctx.remote_get.bind(py).call0()?;
            if !remote.is_none() {
                let (t, p): (Bound<'_, PyAny>, Bound<'_, PyAny>) = remote.extract()?;
                (
                    id_bytes::<16>(&t, "trace_id")?,
                    Some(id_bytes::<8>(&p, "span_id")?.unbind()),
                    execution_id,
                )
            } else {
                let e = execution_id.to_str()?;
                let t = if e.is_empty() {
                    new_trace_id()
                } else {
                    trace::trace_id_of(e)
                };
                (PyBytes::new(py, &t), None, execution_id)
            }
        };
        let attributes = match attributes {
            None => PyDict::new(py),
            Some(a) => match a.cast::<PyDict>() {
                Ok(d) => d.copy()?,
                Err(_) => py.get_type::<PyDict>().call1((a,))?.cast_into::<PyDict>()?,
            },
        };
        Ok(PySpan {
            trace_id: trace_id.unbind(),
            span_id: PyBytes::new(py, &trace::new_span_id()).unbind(),
            parent,
            execution_id: execution_id.unbind(),
            name,
            span_type,
            kind,
            agent,
            attributes: attributes.unbind(),
            events: PyList::empty(py).unbind(),
            status: StatusCode::Unset,
            status_message: intern!(py, "").clone().unbind(),
            start_ns: trace::now_ns(),
            ended: false,
            token: None,
        })
    }

    /// Makes this span the current one (its children's parent) until `exit`.
    fn enter(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let value = {
            let s = slf.borrow();
            PyTuple::new(
                py,
                [
                    s.trace_id.clone_ref(py).into_any(),
                    s.span_id.clone_ref(py).into_any(),
                    s.execution_id.clone_ref(py).into_any(),
                ],
            )?
        };
        let token = context()?.current_set.bind(py).call1((value,))?;
        slf.borrow_mut().token = Some(token.unbind());
        Ok(())
    }

    /// Restores the current span, records `exc` (unless an error was recorded already) and
    /// ends the span.
    fn exit(&mut self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        if let Some(token) = self.token.take() {
            context()?.current_reset.bind(py).call1((token,))?;
        }
        if let Some(e) = exc.filter(|e| !e.is_none()) {
            if self.status != StatusCode::Error {
                self.record_exception(e)?;
            }
        }
        self.end(py, None)
    }
}

#[pymethods]
impl PySpan {
    /// A span starting now: a child of the current span, else the root of its execution's
    /// trace (or of the remote parent's, inside `omium.extract`). An explicit `execution_id`
    /// makes it a root span of that execution's trace.
    #[new]
    #[pyo3(signature = (name, span_type=None, *, kind="internal", attributes=None, agent=None, execution_id=None))]
    fn new(
        py: Python<'_>,
        name: Py<PyString>,
        span_type: Option<Py<PyString>>,
        kind: &str,
        attributes: Option<&Bound<'_, PyAny>>,
        agent: Option<Py<PyString>>,
        execution_id: Option<Bound<'_, PyString>>,
    ) -> PyResult<Self> {
        PySpan::start(
            py,
            name,
            span_type.unwrap_or_else(|| intern!(py, "function").clone().unbind()),
            SpanKind::parse(kind).map_err(err)?,
            attributes,
            agent.unwrap_or_else(|| intern!(py, "").clone().unbind()),
            execution_id,
        )
    }

    #[getter]
    fn trace_id(&self, py: Python<'_>) -> Py<PyBytes> {
        self.trace_id.clone_ref(py)
    }

    #[setter]
    fn set_trace_id(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.trace_id = id_bytes::<16>(value, "Span.trace_id")?.unbind();
        Ok(())
    }

    #[getter]
    fn span_id(&self, py: Python<'_>) -> Py<PyBytes> {
        self.span_id.clone_ref(py)
    }

    #[setter]
    fn set_span_id(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.span_id = id_bytes::<8>(value, "Span.span_id")?.unbind();
        Ok(())
    }

    /// The parent span's id (None for a root span).
    #[getter]
    fn parent(&self, py: Python<'_>) -> Option<Py<PyBytes>> {
        self.parent.as_ref().map(|p| p.clone_ref(py))
    }

    #[setter]
    fn set_parent(&mut self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.parent = match value.filter(|v| !v.is_none()) {
            Some(v) => Some(id_bytes::<8>(v, "Span.parent")?.unbind()),
            None => None,
        };
        Ok(())
    }

    /// `internal`, `server`, `client`, `producer` or `consumer`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    #[setter]
    fn set_kind(&mut self, value: &str) -> PyResult<()> {
        self.kind = SpanKind::parse(value).map_err(err)?;
        Ok(())
    }

    /// `unset` until the span ends (then `ok`), or `error`.
    #[getter]
    fn status(&self) -> &'static str {
        status_name(self.status)
    }

    #[setter]
    fn set_status(&mut self, value: &str) -> PyResult<()> {
        self.status = status(value)?;
        Ok(())
    }

    #[getter(_token)]
    fn token(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.token.as_ref().map(|t| t.clone_ref(py))
    }

    #[setter(_token)]
    fn set_token(&mut self, py: Python<'_>, value: Option<Py<PyAny>>) {
        self.token = value.filter(|t| !t.is_none(py));
    }

    /// The W3C `traceparent` of this span.
    #[getter]
    fn traceparent(&self, py: Python<'_>) -> PyResult<String> {
        Ok(trace::traceparent(
            &id(self.trace_id.as_bytes(py), "trace_id")?,
            &id(self.span_id.as_bytes(py), "span_id")?,
        ))
    }

    fn set_attribute(&self, py: Python<'_>, key: Py<PyAny>, value: Py<PyAny>) -> PyResult<()> {
        self.attributes.bind(py).set_item(key, value)
    }

    #[pyo3(signature = (name, attributes=None))]
    fn add_event(
        &self,
        py: Python<'_>,
        name: Py<PyAny>,
        attributes: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let event = (
            name,
            trace::now_ns(),
            attributes.unwrap_or_else(|| py.None()),
        );
        self.events.bind(py).append(event)
    }

    /// Adds an `exception` event and sets the status to error with the exception's text.
    fn record_exception(&mut self, e: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = e.py();
        let ty = e.get_type();
        let text = e.str()?;
        let attrs = PyDict::new(py);
        attrs.set_item("exception.type", ty.qualname()?)?;
        attrs.set_item("exception.message", &text)?;
        self.events
            .bind(py)
            .append(("exception", trace::now_ns(), attrs))?;
        self.status = StatusCode::Error;
        self.status_message = PyString::new(py, &format!("{}: {text}", ty.name()?)).unbind();
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        PySpan::enter(&slf)?;
        Ok(slf)
    }

    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = (exc_type, tb);
        self.exit(py, exc)
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Ready> {
        PySpan::enter(&slf)?;
        Ok(Ready::of(slf.into_any().unbind()))
    }

    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __aexit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Ready> {
        let _ = (exc_type, tb);
        self.exit(py, exc)?;
        Ok(Ready::of(py.None()))
    }

    fn set_attributes(&self, py: Python<'_>, attributes: &Bound<'_, PyAny>) -> PyResult<()> {
        self.attributes
            .bind(py)
            .call_method1(intern!(py, "update"), (attributes,))
            .map(drop)
    }

    /// Ends the span now, or at `end_ns` (Unix nanoseconds) when the end was observed earlier,
    /// and records it (when Omium is initialized and tracing is on). Ending twice does nothing.
    #[pyo3(signature = (end_ns=None))]
    fn end(&mut self, py: Python<'_>, end_ns: Option<u64>) -> PyResult<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        if self.status == StatusCode::Unset {
            self.status = StatusCode::Ok;
        }
        let ctx = context()?;
        let config = ctx.runtime.bind(py).getattr(intern!(py, "_config"))?;
        if config.is_none() {
            return Ok(());
        }
        let enabled = match ctx.state.bind(py).get_item(intern!(py, "enabled"))? {
            Some(v) => v.is_truthy()?,
            None => true,
        };
        if !enabled {
            return Ok(());
        }
        let store = config.getattr(intern!(py, "store"))?;
        let text = |s: &Py<PyString>| -> PyResult<String> { Ok(s.bind(py).to_str()?.to_owned()) };
        let span = trace::Span {
            trace_id: id(self.trace_id.as_bytes(py), "trace_id")?,
            span_id: id(self.span_id.as_bytes(py), "span_id")?,
            parent: match &self.parent {
                Some(p) => Some(id(p.as_bytes(py), "parent")?),
                None => None,
            },
            name: text(&self.name)?,
            kind: self.kind,
            span_type: text(&self.span_type)?,
            execution_id: text(&self.execution_id)?,
            agent: text(&self.agent)?,
            start_ns: self.start_ns,
            end_ns: end_ns.unwrap_or_else(trace::now_ns),
            status: self.status,
            status_message: text(&self.status_message)?,
            attributes: attributes(Some(self.attributes.bind(py)))?,
            events: events(Some(self.events.bind(py)))?,
        };
        store.cast::<Store>()?.get().handle()?.record_span(span);
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Span({:?}, {:?}, traceparent={:?})",
            self.name.bind(py).to_str()?,
            self.span_type.bind(py).to_str()?,
            self.traceparent(py)?
        ))
    }
}

/// An awaitable that is ready at once with `value`: what a span's `__aenter__` and `__aexit__`
/// return (their work is done when they are called, as `async with` awaits them at once).
#[pyclass(module = "omium._omium")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    fn of(value: Py<PyAny>) -> Ready {
        Ready { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}

/// `omium.trace`: a span around a function (decorator) or a block (context manager), with the
/// published SDK's signature: `trace(name=None, span_type="function", capture_input=True,
/// capture_output=True, capture_errors=True, **attributes)`; a bare `@omium.trace` decorates
/// too. Inputs and outputs are captured (as `input.value` / `output.value`, through the
/// redaction hook) when content capture is on (`omium.configure_tracing(capture_content=True)`).
#[pyclass(module = "omium._omium", name = "trace")]
pub struct Trace {
    #[pyo3(get)]
    name: Option<Py<PyString>>,
    #[pyo3(get)]
    span_type: Py<PyString>,
    #[pyo3(get)]
    capture_input: bool,
    #[pyo3(get)]
    capture_output: bool,
    #[pyo3(get)]
    capture_errors: bool,
    #[pyo3(get)]
    attributes: Py<PyDict>,
    /// The span of the innermost `with` block of this object not yet left, and the spans of
    /// the blocks around it (one object used in nested blocks).
    open: Option<Py<PySpan>>,
    outer: Vec<Py<PySpan>>,
}

#[pymethods]
impl Trace {
    /// A bare `@omium.trace` returns the decorated function, not a `trace`.
    #[new]
    #[allow(clippy::new_ret_no_self)]
    #[pyo3(signature = (name=None, span_type=None, capture_input=true, capture_output=true, capture_errors=true, **attributes))]
    fn new(
        py: Python<'_>,
        name: Option<&Bound<'_, PyAny>>,
        span_type: Option<Py<PyString>>,
        capture_input: bool,
        capture_output: bool,
        capture_errors: bool,
        attributes: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let attributes = match attributes {
            Some(a) => a.clone(),
            None => PyDict::new(py),
        };
        let default_type = span_type.is_none();
        let mut t = Trace {
            name: None,
            span_type: span_type.unwrap_or_else(|| intern!(py, "function").clone().unbind()),
            capture_input,
            capture_output,
            capture_errors,
            attributes: attributes.unbind(),
            open: None,
            outer: Vec::new(),
        };
        let Some(name) = name.filter(|n| !n.is_none()) else {
            return Ok(Py::new(py, t)?.into_any());
        };
        if let Ok(s) = name.cast::<PyString>() {
            t.name = Some(s.clone().unbind());
            return Ok(Py::new(py, t)?.into_any());
        }
        let bare = name.is_callable()
            && default_type
            && capture_input
            && capture_output
            && capture_errors
            && t.attributes.bind(py).is_empty();
        if !bare {
            return Err(PyTypeError::new_err(format!(
                "omium.trace(name): expected a str, not {}",
                name.get_type().name()?
            )));
        }
        // A bare `@omium.trace`: the decorated function.
        let t = Py::new(py, t)?;
        Ok(context()?.decorate.bind(py).call1((t, name))?.unbind())
    }

    /// Decorates `fn` (a function or a coroutine function).
    fn __call__(slf: Bound<'_, Self>, r#fn: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        Ok(context()?.decorate.bind(py).call1((slf, r#fn))?.unbind())
    }

    fn __enter__(&mut self, py: Python<'_>) -> PyResult<Py<PySpan>> {
        let name = match &self.name {
            Some(n) => n.clone_ref(py),
            None => intern!(py, "block").clone().unbind(),
        };
        let span = PySpan::start(
            py,
            name,
            self.span_type.clone_ref(py),
            SpanKind::Internal,
            Some(self.attributes.bind(py)),
            intern!(py, "").clone().unbind(),
            None,
        )?;
        let span = Bound::new(py, span)?;
        PySpan::enter(&span)?;
        let span = span.unbind();
        if let Some(outer) = self.open.replace(span.clone_ref(py)) {
            self.outer.push(outer);
        }
        Ok(span)
    }

    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = (exc_type, tb);
        let Some(span) = self.open.take() else {
            return Ok(());
        };
        self.open = self.outer.pop();
        let mut span = span.bind(py).borrow_mut();
        let mut exc = exc.filter(|e| !e.is_none());
        if exc.is_some() && !self.capture_errors {
            span.status = StatusCode::Error;
            exc = None;
        }
        span.exit(py, exc)
    }

    fn __aenter__(&mut self, py: Python<'_>) -> PyResult<Ready> {
        Ok(Ready::of(self.__enter__(py)?.into_any()))
    }

    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __aexit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Ready> {
        self.__exit__(py, exc_type, exc, tb)?;
        Ok(Ready::of(py.None()))
    }
}
