//! `omium._omium.Threads`: framework checkpoints (the storage behind
//! `omium.langgraph.OmiumSaver`). Values cross as `(type, bytes)` pairs produced by the
//! framework's serializer; the core stores them opaquely.

use omium_core::threads::{ListQuery, NewValue, NewWrite, PutCheckpoint, ThreadTuple};
use omium_core::Durability;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::convert::err;
use crate::store::Store;

#[pyclass(frozen, module = "omium._omium")]
pub struct Threads {
    store: Py<Store>,
    durability: Option<Durability>,
}

impl Threads {
    fn handle(&self) -> PyResult<omium_core::threads::Threads> {
        let t = self.store.get().get()?.threads();
        Ok(match self.durability {
            Some(d) => t.with_durability(d),
            None => t,
        })
    }
}

type Typed = (String, PyBackedBytes);

/// `(thread_id, ns, checkpoint_id, parent_id, (type, checkpoint), (type, metadata),
/// [(channel, version, type, value)], [(task_id, channel, type, value, task_path)])`
fn tuple<'py>(py: Python<'py>, t: &ThreadTuple) -> PyResult<Bound<'py, PyTuple>> {
    let c = &t.checkpoint;
    let values = PyList::empty(py);
    for v in &t.values {
        values.append((
            &v.channel,
            &v.version,
            &v.value_type,
            PyBytes::new(py, &v.value),
        ))?;
    }
    let writes = PyList::empty(py);
    for w in &t.writes {
        writes.append((
            &w.task_id,
            &w.channel,
            &w.value_type,
            PyBytes::new(py, &w.value),
            &w.task_path,
        ))?;
    }
    (
        &c.thread_id,
        &c.ns,
        &c.checkpoint_id,
        &c.parent_id,
        (&c.checkpoint_type, PyBytes::new(py, &c.checkpoint)),
        (&c.metadata_type, PyBytes::new(py, &c.metadata)),
        values,
        writes,
    )
        .into_pyobject(py)
}

#[pymethods]
impl Threads {
    /// Framework checkpoints of `store`, written with `durability` (the store's when None).
    #[new]
    #[pyo3(signature = (store, durability=None))]
    fn new(store: Py<Store>, durability: Option<&str>) -> PyResult<Self> {
        let durability = durability
            .map(|d| Durability::parse(d).map_err(err))
            .transpose()?;
        Ok(Threads { store, durability })
    }

    #[getter]
    fn store(&self, py: Python<'_>) -> Py<Store> {
        self.store.clone_ref(py)
    }

    /// Stores a checkpoint with its new channel values (one atomic write).
    #[pyo3(signature = (thread_id, ns, checkpoint_id, parent_id, checkpoint, metadata, fields, run_id, channels, values))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        thread_id: &str,
        ns: &str,
        checkpoint_id: &str,
        parent_id: Option<&str>,
        checkpoint: Typed,
        metadata: Typed,
        fields: Vec<(String, String)>,
        run_id: Option<&str>,
        channels: Vec<(String, String)>,
        values: Vec<(String, String, String, PyBackedBytes)>,
    ) -> PyResult<()> {
        let threads = self.handle()?;
        py.detach(|| {
            let put = PutCheckpoint {
                thread_id,
                ns,
                checkpoint_id,
                parent_id,
                checkpoint_type: &checkpoint.0,
                checkpoint: &checkpoint.1,
                metadata_type: &metadata.0,
                metadata: &metadata.1,
                fields,
                run_id,
                channels,
                values: values
                    .iter()
                    .map(|(channel, version, value_type, value)| NewValue {
                        channel,
                        version,
                        value_type,
                        value,
                    })
                    .collect(),
            };
            threads.put(&put)
        })
        .map_err(err)
    }

    /// Stores a task's writes `[(idx, channel, type, value)]` (one atomic write).
    #[allow(clippy::too_many_arguments)]
    fn put_writes(
        &self,
        py: Python<'_>,
        thread_id: &str,
        ns: &str,
        checkpoint_id: &str,
        task_id: &str,
        task_path: &str,
        writes: Vec<(i64, String, String, PyBackedBytes)>,
    ) -> PyResult<()> {
        let threads = self.handle()?;
        py.detach(|| {
            let writes: Vec<NewWrite<'_>> = writes
                .iter()
                .map(|(idx, channel, value_type, value)| NewWrite {
                    idx: *idx,
                    channel,
                    value_type,
                    value,
                })
                .collect();
            threads.put_writes(thread_id, ns, checkpoint_id, task_id, task_path, &writes)
        })
        .map_err(err)
    }

    /// The given checkpoint, or the newest of the namespace; None when there is none.
    #[pyo3(signature = (thread_id, ns, checkpoint_id=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        thread_id: &str,
        ns: &str,
        checkpoint_id: Option<&str>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let threads = self.handle()?;
        let found = py
            .detach(|| threads.get(thread_id, ns, checkpoint_id))
            .map_err(err)?;
        found.map(|t| tuple(py, &t)).transpose()
    }

    /// Checkpoints matching every given criterion, newest id first.
    #[pyo3(signature = (thread_id=None, ns=None, checkpoint_id=None, before=None, filter=Vec::new(), limit=None))]
    #[allow(clippy::too_many_arguments)]
    fn list<'py>(
        &self,
        py: Python<'py>,
        thread_id: Option<String>,
        ns: Option<String>,
        checkpoint_id: Option<String>,
        before: Option<String>,
        filter: Vec<(String, String)>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let threads = self.handle()?;
        let query = ListQuery {
            thread_id,
            ns,
            checkpoint_id,
            before,
            filter,
            limit,
        };
        let found = py.detach(|| threads.list(&query)).map_err(err)?;
        let out = PyList::empty(py);
        for t in &found {
            out.append(tuple(py, t)?)?;
        }
        Ok(out)
    }

    fn delete_thread(&self, py: Python<'_>, thread_id: &str) -> PyResult<()> {
        let threads = self.handle()?;
        py.detach(|| threads.delete_thread(thread_id)).map_err(err)
    }

    /// Returns how many checkpoints were deleted.
    fn delete_for_runs(&self, py: Python<'_>, run_ids: Vec<String>) -> PyResult<u64> {
        let threads = self.handle()?;
        py.detach(|| threads.delete_for_runs(&run_ids)).map_err(err)
    }

    /// Returns how many checkpoints were copied.
    fn copy_thread(&self, py: Python<'_>, source: &str, target: &str) -> PyResult<u64> {
        let threads = self.handle()?;
        py.detach(|| threads.copy_thread(source, target))
            .map_err(err)
    }

    /// Returns how many checkpoints were deleted.
    fn prune(&self, py: Python<'_>, thread_ids: Vec<String>, keep_latest: bool) -> PyResult<u64> {
        let threads = self.handle()?;
        py.detach(|| threads.prune(&thread_ids, keep_latest))
            .map_err(err)
    }
}
