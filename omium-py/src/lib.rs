//! `omium._omium`: the native layer of the Python package. Thin: it converts types and errors,
//! releases the GIL around store I/O, and leaves every decision to `omium-core`. The public API
//! is the pure-Python package `omium` on top.

mod consensus;
mod convert;
mod recovery;
mod run;
mod span;
mod store;
mod threads;
mod trace;
mod workflow;

use pyo3::prelude::*;

/// CEL condition compiled once, evaluated over JSON-like values.
#[pyclass(frozen, module = "omium._omium")]
struct Condition {
    inner: omium_core::expr::Condition,
}

#[pymethods]
impl Condition {
    #[new]
    fn new(expression: &str) -> PyResult<Self> {
        Ok(Condition {
            inner: omium_core::expr::Condition::compile(expression).map_err(convert::err)?,
        })
    }

    #[getter]
    fn source(&self) -> &str {
        self.inner.source()
    }

    /// Evaluates with the variables of `context` (a dict of JSON-like values).
    fn evaluate(&self, context: &Bound<'_, pyo3::types::PyDict>) -> PyResult<bool> {
        let mut vars = Vec::with_capacity(context.len());
        for (k, v) in context.iter() {
            let name: String = k.extract()?;
            vars.push((name, convert::to_json(&v, "condition variable")?));
        }
        self.inner.evaluate(&vars).map_err(convert::err)
    }

    fn __repr__(&self) -> String {
        format!("Condition({:?})", self.inner.source())
    }
}

/// Validates a durability name ("sync", "buffered", "none") without opening anything.
#[pyfunction]
fn check_durability(durability: &str) -> PyResult<&'static str> {
    omium_core::Durability::parse(durability)
        .map(|d| d.as_str())
        .map_err(convert::err)
}

/// Runs the `omium` command line (`args`: the program name first) and ends the process with its
/// exit code: the `omium` console script of the package. The GIL is released while it runs.
#[pyfunction]
fn cli_main(py: Python<'_>, args: Vec<std::ffi::OsString>) -> PyResult<()> {
    py.detach(move || omium_cli::exit_from(args))
}

#[pymodule]
fn _omium(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_durability, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_class::<store::Store>()?;
    m.add_class::<store::AlertEvaluator>()?;
    m.add_class::<run::Run>()?;
    m.add_class::<Condition>()?;
    m.add_class::<recovery::Recovery>()?;
    m.add_function(wrap_pyfunction!(recovery::parse_policy, m)?)?;
    m.add_function(wrap_pyfunction!(recovery::policy_schema, m)?)?;
    m.add_function(wrap_pyfunction!(recovery::policy_diff, m)?)?;
    m.add_function(wrap_pyfunction!(recovery::check_failure_type, m)?)?;
    m.add_function(wrap_pyfunction!(trace::record_span, m)?)?;
    m.add_function(wrap_pyfunction!(span::span_context, m)?)?;
    m.add_class::<span::PySpan>()?;
    m.add_class::<span::Trace>()?;
    m.add_class::<span::Ready>()?;
    m.add_function(wrap_pyfunction!(trace::trace_id_of, m)?)?;
    m.add_function(wrap_pyfunction!(trace::new_span_id, m)?)?;
    m.add_function(wrap_pyfunction!(trace::new_trace_id, m)?)?;
    m.add_function(wrap_pyfunction!(trace::parse_traceparent, m)?)?;
    m.add_function(wrap_pyfunction!(trace::canonical_request, m)?)?;
    m.add_function(wrap_pyfunction!(trace::call_span_name, m)?)?;
    m.add_class::<trace::Replay>()?;
    m.add_class::<threads::Threads>()?;
    m.add_class::<workflow::WorkflowSpec>()?;
    m.add_function(wrap_pyfunction!(workflow::workflow_templates, m)?)?;
    m.add_class::<consensus::Coordinator>()?;
    m.add("FORMAT_VERSION", omium_core::FORMAT_VERSION)?;
    // Every code a core error can have: omium.errors maps each to a class of its own.
    let codes: Vec<&str> = omium_core::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    m.add("ERROR_CODES", codes)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
