//! `omium._omium.Run`: one run of an execution (holds its lease).

use std::collections::BTreeMap;
use std::sync::RwLock;

use omium_core::serve::{RunHandle, TracedStep};
use omium_core::{CheckResult, CheckpointKind, Checks, NewCheckpoint};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::convert::{self, err};

#[pyclass(frozen, module = "omium._omium")]
pub struct Run {
    // Read-locked by every call (so steps of one execution on several threads run at once),
    // write-locked only by close().
    inner: RwLock<Option<RunHandle>>,
    execution_id: String,
}

impl Run {
    pub fn new(run: RunHandle) -> Run {
        let execution_id = run.execution_id().to_string();
        Run {
            inner: RwLock::new(Some(run)),
            execution_id,
        }
    }

    /// Runs `f` on the run, keeping the GIL when the run is in this process: for calls that
    /// only look at the run's memory (a position), releasing and taking the GIL back costs
    /// more than the call. A daemon's run is asked with the GIL released.
    fn with_local<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&RunHandle) -> omium_core::Result<R> + Send,
    ) -> PyResult<R> {
        self.on_run(py, true, f)
    }

    /// Runs `f` on the run with the GIL released.
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&RunHandle) -> omium_core::Result<R> + Send,
    ) -> PyResult<R> {
        self.on_run(py, false, f)
    }

    fn on_run<R: Send>(
        &self,
        py: Python<'_>,
        keep_gil_if_local: bool,
        f: impl FnOnce(&RunHandle) -> omium_core::Result<R> + Send,
    ) -> PyResult<R> {
        let guard = self
            .inner
            .read()
            .map_err(|_| PyRuntimeError::new_err("omium run lock poisoned by a panic"))?;
        match guard.as_ref() {
            Some(r @ RunHandle::Local(_)) if keep_gil_if_local => f(r).map_err(err),
            Some(r) => py.detach(|| f(r)).map_err(err),
            None => Err(PyRuntimeError::new_err(format!(
                "the run of execution {:?} is closed",
                self.execution_id
            ))),
        }
    }
}

/// `Run.record(span=...)`: the running step's trace id, span id, the step span's parent, its
/// start (Unix ns) and whether to end and record it with the checkpoint.
type SpanArg = ([u8; 16], [u8; 8], Option<[u8; 8]>, u64, bool);

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
        self.with_local(py, |r| r.reserve())
    }

    /// `(seq, key)`: the journal position of a step called now, top-level (`parent` None) or
    /// nested in the step at position `parent` (the core's positions, the same in every binding).
    #[pyo3(signature = (parent=None, key=None))]
    fn position(
        &self,
        py: Python<'_>,
        parent: Option<&str>,
        key: Option<&str>,
    ) -> PyResult<(u64, Option<String>)> {
        self.with_local(py, |r| r.position(parent, key))
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
        match self.with(py, |r| r.recorded(seq, name, key))? {
            Some((c, state)) => Ok(Some((
                convert::checkpoint(py, &c)?,
                PyBytes::new(py, &state),
            ))),
            None => Ok(None),
        }
    }

    /// `(seq, key, recorded)`: [`Run::position`] and then [`Run::recorded`] at that position in
    /// one call, as a synchronous step begins.
    #[pyo3(signature = (name, parent=None, key=None))]
    #[allow(clippy::type_complexity)]
    fn begin_step<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        parent: Option<&str>,
        key: Option<&str>,
    ) -> PyResult<(
        u64,
        Option<String>,
        Option<(Bound<'py, PyDict>, Bound<'py, PyBytes>)>,
    )> {
        let (seq, key) = self.position(py, parent, key)?;
        let found = self.recorded(py, seq, name, key.as_deref())?;
        Ok((seq, key, found))
    }

    #[pyo3(signature = (seq, name, state, key=None, agent=None, kind="step", preconditions=Vec::new(), postconditions=Vec::new(), metadata=None, span=None))]
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
        span: Option<SpanArg>,
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
            metadata: metadata.unwrap_or_default(),
        };
        // Only the id goes back: building the full dict would cost more than the step's own
        // bookkeeping, and callers that want it ask `Store.checkpoint(id)`. With `span` (the
        // running step's trace id, span id, parent, start and whether to end it now) the
        // checkpoint's span is recorded too, and the step's own when asked.
        let span = span.map(
            |(trace_id, span_id, parent, start_ns, end_step)| TracedStep {
                trace_id,
                span_id,
                parent,
                start_ns,
                end_step,
                step_attributes: Vec::new(),
                // Python's spans use time.time_ns(): this process's wall clock.
                now_ns: None,
            },
        );
        self.with(py, |r| r.record_traced(seq, new, span))
    }

    #[pyo3(signature = (output=None))]
    fn complete(&self, py: Python<'_>, output: Option<&[u8]>) -> PyResult<()> {
        self.with(py, |r| r.complete(output))
    }

    fn fail(&self, py: Python<'_>, error: &str) -> PyResult<()> {
        self.with(py, |r| r.fail(error))
    }

    fn pause(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        self.with(py, |r| r.pause(reason))
    }

    fn heartbeat(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |r| r.heartbeat())
    }

    /// Carries out a pause or cancel asked for while step `step` awaits (raises it).
    fn check_control(&self, py: Python<'_>, step: &str) -> PyResult<()> {
        self.with(py, |r| r.check_control(step))
    }

    fn execution<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        convert::execution(py, &self.with(py, |r| r.execution())?)
    }

    /// Releases the run; without complete()/fail() the execution stays resumable.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .inner
            .write()
            .map_err(|_| PyRuntimeError::new_err("omium run lock poisoned by a panic"))?
            .take();
        if let Some(r) = taken {
            py.detach(|| r.close());
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("Run({:?})", self.execution_id)
    }
}
