//! `omium._omium.Store`: a handle on a store, closable (`Store is closed` afterwards).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use omium_core::{BeginOptions, Durability, ForkOptions, OpenOptions, RollbackTarget};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::convert::{self, err};
use crate::recovery;
use crate::run::Run;
use omium_core::policy::{Scope, Trigger};
use omium_core::recovery::FailureInput;
use omium_core::serve::{b64, Client};
use serde::de::DeserializeOwned;
use serde_json::json;

fn to_json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

/// Where a store handle's calls go: a store opened in this process, or an `omium serve`
/// daemon (`omium.init(url=...)`).
#[derive(Clone)]
pub enum Backend {
    Local(omium_core::Store),
    Remote(Client),
}

#[pyclass(frozen, module = "omium._omium")]
pub struct Store {
    inner: RwLock<Option<Backend>>,
    /// The directory, or the daemon's URL.
    path: PathBuf,
    /// The daemon's durability (remote handles).
    remote_durability: &'static str,
}

impl Store {
    pub fn backend(&self) -> PyResult<Backend> {
        let guard = self
            .inner
            .read()
            .map_err(|_| PyRuntimeError::new_err("omium store lock poisoned by a panic"))?;
        guard.clone().ok_or_else(|| {
            convert::coded(
                "store_closed",
                format!(
                    "store {} is closed; call omium.init() to open it again",
                    self.path.display()
                ),
            )
        })
    }

    /// The store of this process; a handle on `omium serve` does not have one.
    pub fn get(&self) -> PyResult<omium_core::Store> {
        match self.backend()? {
            Backend::Local(s) => Ok(s),
            Backend::Remote(c) => Err(convert::coded(
                "invalid_state",
                format!(
                    "this needs the store opened in this process; it is not available through \
                     omium serve ({}) yet: use omium.init(path=...) for it, or run it in the \
                     daemon's machine with `omium --store <dir> ...` while the daemon is stopped",
                    c.url()
                ),
            )),
        }
    }
}

/// A call to the daemon with the GIL released, its answer decoded.
fn remote<T: DeserializeOwned + Send>(
    py: Python<'_>,
    c: &Client,
    method: &str,
    args: serde_json::Value,
) -> PyResult<T> {
    py.detach(|| c.call_as(method, args)).map_err(err)
}

/// A call whose answer the local path gives as JSON text.
fn remote_text(
    py: Python<'_>,
    c: &Client,
    method: &str,
    args: serde_json::Value,
) -> PyResult<String> {
    py.detach(|| c.call(method, args))
        .map(|v| v.to_string())
        .map_err(err)
}

fn durability(d: Option<&str>) -> PyResult<Option<Durability>> {
    d.map(|s| Durability::parse(s).map_err(err)).transpose()
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (path, durability="sync", read_only=false, create=true))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        read_only: bool,
        create: bool,
    ) -> PyResult<Self> {
        let d = Durability::parse(durability).map_err(err)?;
        let p = path.clone();
        let store = py
            .detach(move || {
                if read_only {
                    omium_core::Store::open_read_only(&p)
                } else {
                    omium_core::Store::open_with(
                        &p,
                        OpenOptions {
                            durability: d,
                            create,
                            ..OpenOptions::default()
                        },
                    )
                }
            })
            .map_err(err)?;
        Ok(Store {
            inner: RwLock::new(Some(Backend::Local(store))),
            path,
            remote_durability: "sync",
        })
    }

    /// A handle on an `omium serve` daemon: `unix:///path/omium.sock` or `http://host:port`.
    #[staticmethod]
    #[pyo3(signature = (url, api_key=None))]
    fn connect(py: Python<'_>, url: &str, api_key: Option<&str>) -> PyResult<Self> {
        let client = py.detach(|| Client::connect(url, api_key)).map_err(err)?;
        let health = py.detach(|| client.health()).map_err(err)?;
        let remote_durability = match health["durability"].as_str() {
            Some("buffered") => "buffered",
            Some("none") => "none",
            _ => "sync",
        };
        Ok(Store {
            inner: RwLock::new(Some(Backend::Remote(client))),
            path: PathBuf::from(url),
            remote_durability,
        })
    }

    /// The daemon's URL for a handle on `omium serve`, else None.
    #[getter]
    fn url(&self) -> Option<String> {
        match self.backend() {
            Ok(Backend::Remote(c)) => Some(c.url().to_string()),
            _ => None,
        }
    }

    /// Closes the handle; RocksDB is closed once no run of it is alive.
    fn close(&self) -> PyResult<()> {
        let mut guard = self
            .inner
            .write()
            .map_err(|_| PyRuntimeError::new_err("omium store lock poisoned by a panic"))?;
        *guard = None;
        Ok(())
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.read().map(|g| g.is_none()).unwrap_or(true)
    }

    #[getter]
    fn read_only(&self) -> PyResult<bool> {
        match self.backend()? {
            Backend::Local(s) => Ok(s.is_read_only()),
            Backend::Remote(_) => Ok(false),
        }
    }

    #[getter]
    fn durability(&self) -> PyResult<&'static str> {
        match self.backend()? {
            Backend::Local(s) => Ok(s.durability().as_str()),
            Backend::Remote(_) => Ok(self.remote_durability),
        }
    }

    #[pyo3(signature = (execution_id, workflow="", tenant="default", input=None, labels=None, agent="main", lease_ttl=30.0, durability=None))]
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &self,
        py: Python<'_>,
        execution_id: &str,
        workflow: &str,
        tenant: &str,
        input: Option<&[u8]>,
        labels: Option<BTreeMap<String, String>>,
        agent: &str,
        lease_ttl: f64,
        durability: Option<&str>,
    ) -> PyResult<Run> {
        if !(lease_ttl.is_finite() && lease_ttl > 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "lease_ttl must be a positive number of seconds, not {lease_ttl}"
            )));
        }
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({
                    "workflow": workflow, "tenant": tenant, "input": input.map(b64),
                    "labels": labels, "agent": agent, "lease_ttl": lease_ttl,
                    "durability": durability,
                });
                let (run, _) = py.detach(|| c.begin(execution_id, args)).map_err(err)?;
                return Ok(Run::remote(run));
            }
        };
        let options = BeginOptions {
            workflow: workflow.into(),
            tenant: tenant.into(),
            input: input.map(<[u8]>::to_vec),
            labels: labels.unwrap_or_default(),
            agent: agent.into(),
            lease_ttl: Duration::from_secs_f64(lease_ttl),
            durability: self::durability(durability)?,
            ..BeginOptions::default()
        };
        let run = py
            .detach(|| store.begin(execution_id, options))
            .map_err(err)?;
        Ok(Run::new(run))
    }

    fn execution<'py>(&self, py: Python<'py>, execution_id: &str) -> PyResult<Bound<'py, PyDict>> {
        let e = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.execution(execution_id)).map_err(err)?,
            Backend::Remote(c) => {
                remote(py, &c, "execution", json!({"execution_id": execution_id}))?
            }
        };
        convert::execution(py, &e)
    }

    fn executions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.executions()).map_err(err)?,
            Backend::Remote(c) => remote(py, &c, "executions", json!({}))?,
        };
        convert::executions(py, &list)
    }

    fn resumable<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.resumable()).map_err(err)?,
            Backend::Remote(c) => remote(py, &c, "resumable", json!({}))?,
        };
        convert::executions(py, &list)
    }

    fn execution_input<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let b = match self.backend()? {
            Backend::Local(store) => py
                .detach(|| store.execution_input(execution_id))
                .map_err(err)?,
            Backend::Remote(c) => py
                .detach(|| c.bytes("execution_input", json!({"execution_id": execution_id})))
                .map_err(err)?,
        };
        Ok(b.map(|b| PyBytes::new(py, &b)))
    }

    fn execution_output<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let b = match self.backend()? {
            Backend::Local(store) => py
                .detach(|| store.execution_output(execution_id))
                .map_err(err)?,
            Backend::Remote(c) => py
                .detach(|| c.bytes("execution_output", json!({"execution_id": execution_id})))
                .map_err(err)?,
        };
        Ok(b.map(|b| PyBytes::new(py, &b)))
    }

    fn history<'py>(&self, py: Python<'py>, execution_id: &str) -> PyResult<Bound<'py, PyList>> {
        let list = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.history(execution_id)).map_err(err)?,
            Backend::Remote(c) => remote(py, &c, "history", json!({"execution_id": execution_id}))?,
        };
        convert::checkpoints(py, &list)
    }

    fn checkpoints<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.checkpoints(execution_id)).map_err(err)?,
            Backend::Remote(c) => {
                remote(py, &c, "checkpoints", json!({"execution_id": execution_id}))?
            }
        };
        convert::checkpoints(py, &list)
    }

    /// The branch ending at a checkpoint (an abandoned one too), first checkpoint first.
    fn branch<'py>(&self, py: Python<'py>, checkpoint_id: &str) -> PyResult<Bound<'py, PyList>> {
        let list = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.branch(checkpoint_id)).map_err(err)?,
            Backend::Remote(c) => {
                remote(py, &c, "branch", json!({"checkpoint_id": checkpoint_id}))?
            }
        };
        convert::checkpoints(py, &list)
    }

    fn checkpoint<'py>(
        &self,
        py: Python<'py>,
        checkpoint_id: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let c = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.checkpoint(checkpoint_id)).map_err(err)?,
            Backend::Remote(c) => remote(
                py,
                &c,
                "checkpoint",
                json!({"checkpoint_id": checkpoint_id}),
            )?,
        };
        convert::checkpoint(py, &c)
    }

    /// The verified state bytes of a checkpoint.
    fn read_state<'py>(
        &self,
        py: Python<'py>,
        checkpoint_id: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let b = match self.backend()? {
            Backend::Local(store) => py
                .detach(|| {
                    store
                        .checkpoint(checkpoint_id)
                        .and_then(|c| store.read_state(&c))
                })
                .map_err(err)?,
            Backend::Remote(c) => py
                .detach(|| c.bytes("read_state", json!({"checkpoint_id": checkpoint_id})))
                .map_err(err)?
                .unwrap_or_default(),
        };
        Ok(PyBytes::new(py, &b))
    }

    /// `to`: a checkpoint id or name; None with `global_seq`: that consistent cut; None alone:
    /// the last consistent checkpoint.
    #[pyo3(signature = (execution_id, to=None, global_seq=None, reason=None))]
    fn rollback<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
        to: Option<&str>,
        global_seq: Option<u64>,
        reason: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({"execution_id": execution_id, "to": to, "global_seq": global_seq, "reason": reason});
                let marker: omium_core::Checkpoint = remote(py, &c, "rollback", args)?;
                return convert::checkpoint(py, &marker);
            }
        };
        let target = match (to, global_seq) {
            (Some(t), _) => RollbackTarget::parse(t),
            (None, Some(g)) => RollbackTarget::GlobalSeq(g),
            (None, None) => RollbackTarget::LastConsistent,
        };
        let marker = py
            .detach(|| store.rollback(execution_id, &target, reason))
            .map_err(err)?;
        convert::checkpoint(py, &marker)
    }

    #[pyo3(signature = (execution_id, at, new_execution_id=None, state=None))]
    fn fork<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
        at: &str,
        new_execution_id: Option<String>,
        state: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({"execution_id": execution_id, "at": at, "new_execution_id": new_execution_id, "state": state.map(b64)});
                let e: omium_core::Execution = remote(py, &c, "fork", args)?;
                return convert::execution(py, &e);
            }
        };
        let options = ForkOptions {
            new_execution_id,
            state: state.map(<[u8]>::to_vec),
        };
        let e = py
            .detach(|| store.fork(execution_id, &RollbackTarget::parse(at), options))
            .map_err(err)?;
        convert::execution(py, &e)
    }

    #[pyo3(signature = (execution_id, global_seq=None))]
    fn consistent_cut<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
        global_seq: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let store = self.get()?;
        let cut = py
            .detach(|| store.consistent_cut(execution_id, global_seq))
            .map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("global_seq", cut.global_seq)?;
        let agents = PyDict::new(py);
        for (a, c) in &cut.agents {
            agents.set_item(a, convert::checkpoint(py, c)?)?;
        }
        d.set_item("agents", agents)?;
        Ok(d)
    }

    #[pyo3(signature = (execution_id=None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        execution_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = match self.backend()? {
            Backend::Local(store) => py.detach(|| store.verify(execution_id)).map_err(err)?,
            Backend::Remote(c) => remote(py, &c, "verify", json!({"execution_id": execution_id}))?,
        };
        convert::verify_report(py, &r)
    }

    fn gc<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let store = self.get()?;
        let r = py.detach(|| store.gc()).map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("chunks_scanned", r.chunks_scanned)?;
        d.set_item("chunks_live", r.chunks_live)?;
        d.set_item("chunks_removed", r.chunks_removed)?;
        d.set_item("bytes_removed", r.bytes_removed)?;
        Ok(d)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let store = self.get()?;
        let s = py.detach(|| store.stats()).map_err(err)?;
        let d = PyDict::new(py);
        d.set_item("executions", s.executions)?;
        d.set_item("checkpoints", s.checkpoints)?;
        d.set_item("raw_state_bytes", s.raw_state_bytes)?;
        d.set_item("inline_bytes", s.inline_bytes)?;
        d.set_item("chunks", s.chunks)?;
        d.set_item("chunk_bytes", s.chunk_bytes)?;
        d.set_item("disk_bytes", s.disk_bytes)?;
        Ok(d)
    }

    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.get()?;
        py.detach(|| store.refresh()).map_err(err)
    }

    fn delete_execution(&self, py: Python<'_>, execution_id: &str) -> PyResult<u64> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let v: serde_json::Value = remote(
                    py,
                    &c,
                    "delete_execution",
                    json!({"execution_id": execution_id}),
                )?;
                return Ok(v["deleted"].as_u64().unwrap_or(0));
            }
        };
        py.detach(|| store.delete_execution(execution_id))
            .map_err(err)
    }

    /// Validates and stores a policy version; returns it as JSON text.
    #[pyo3(signature = (tenant, scope, text, file=None, author=None))]
    fn apply_policy(
        &self,
        py: Python<'_>,
        tenant: &str,
        scope: &str,
        text: &str,
        file: Option<&str>,
        author: Option<&str>,
    ) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({"tenant": tenant, "scope": scope, "text": text, "file": file, "author": author});
                return remote_text(py, &c, "apply_policy", args);
            }
        };
        let scope = Scope::parse(scope).map_err(err)?;
        let v = py
            .detach(|| store.apply_policy(tenant, &scope, text, file, author))
            .map_err(recovery::core_err)?;
        Ok(to_json_text(&v))
    }

    /// Policy versions (JSON text of a list): of one scope, of a tenant, or of every tenant.
    #[pyo3(signature = (tenant=None, scope=None))]
    fn policy_versions(
        &self,
        py: Python<'_>,
        tenant: Option<&str>,
        scope: Option<&str>,
    ) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                return remote_text(
                    py,
                    &c,
                    "policy_versions",
                    json!({"tenant": tenant, "scope": scope}),
                )
            }
        };
        let scope = scope.map(Scope::parse).transpose().map_err(err)?;
        let v = py
            .detach(|| match tenant {
                Some(t) => store.policy_versions(t, scope.as_ref()),
                None => store.all_policy_versions(),
            })
            .map_err(err)?;
        Ok(to_json_text(&v))
    }

    #[pyo3(signature = (tenant, scope, version=None))]
    fn policy_version(
        &self,
        py: Python<'_>,
        tenant: &str,
        scope: &str,
        version: Option<u32>,
    ) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({"tenant": tenant, "scope": scope, "version": version});
                return remote_text(py, &c, "policy_version", args);
            }
        };
        let scope = Scope::parse(scope).map_err(err)?;
        let v = py
            .detach(|| store.policy_version(tenant, &scope, version))
            .map_err(err)?;
        Ok(to_json_text(&v))
    }

    /// The defaults in force for a step (JSON text), the most specific scope winning.
    #[pyo3(signature = (tenant, workflow=None, step=None))]
    fn policy_defaults(
        &self,
        py: Python<'_>,
        tenant: &str,
        workflow: Option<&str>,
        step: Option<&str>,
    ) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({"tenant": tenant, "workflow": workflow, "step": step});
                return remote_text(py, &c, "policy_defaults", args);
            }
        };
        let e = py
            .detach(|| store.effective_policy(tenant, workflow, step))
            .map_err(err)?;
        Ok(omium_core::json::policy_defaults(&e).to_string())
    }

    /// Records a failure and decides how to handle it.
    #[pyo3(signature = (execution_id, workflow, tenant, step, seq, key, agent, kind, error_classes, message, retries=0, rollbacks_so_far=0))]
    #[allow(clippy::too_many_arguments)]
    fn start_recovery(
        &self,
        py: Python<'_>,
        execution_id: String,
        workflow: String,
        tenant: String,
        step: Option<String>,
        seq: Option<u64>,
        key: Option<String>,
        agent: String,
        kind: Option<&str>,
        error_classes: Vec<String>,
        message: String,
        retries: u32,
        rollbacks_so_far: u32,
    ) -> PyResult<recovery::Recovery> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({
                    "execution_id": execution_id, "workflow": workflow, "tenant": tenant,
                    "step": step, "seq": seq, "key": key, "agent": agent, "kind": kind,
                    "error_classes": error_classes, "message": message, "retries": retries,
                    "rollbacks_so_far": rollbacks_so_far,
                });
                let r = py
                    .detach(|| c.start_recovery(args))
                    .map_err(recovery::core_err)?;
                return Ok(recovery::Recovery::new(recovery::Backend::Remote(r)));
            }
        };
        let kind = kind.map(Trigger::parse).transpose().map_err(err)?;
        let input = FailureInput {
            execution_id,
            workflow,
            tenant,
            step,
            seq,
            key,
            agent,
            kind,
            error_classes,
            message,
            step_retry: omium_core::recovery::step_retry(retries),
            rollbacks_so_far,
        };
        let r = py
            .detach(|| {
                let e = store.effective_policy(
                    &input.tenant,
                    Some(&input.workflow)
                        .filter(|w| !w.is_empty())
                        .map(|s| s.as_str()),
                    input.step.as_deref(),
                )?;
                store.start_recovery(input, e)
            })
            .map_err(recovery::core_err)?;
        Ok(recovery::Recovery::new(recovery::Backend::Local(Box::new(
            r,
        ))))
    }

    /// Failure records (JSON text of a list), of one execution or all.
    #[pyo3(signature = (execution_id=None))]
    fn failures(&self, py: Python<'_>, execution_id: Option<&str>) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                return remote_text(py, &c, "failures", json!({"execution_id": execution_id}))
            }
        };
        let v = py.detach(|| store.failures(execution_id)).map_err(err)?;
        Ok(to_json_text(&v))
    }

    /// Recovery metrics (JSON text), of one workflow or all.
    #[pyo3(signature = (workflow=None))]
    fn recovery_metrics(&self, py: Python<'_>, workflow: Option<&str>) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                return remote_text(py, &c, "recovery_metrics", json!({"workflow": workflow}))
            }
        };
        let m = py
            .detach(|| store.recovery_metrics(workflow))
            .map_err(err)?;
        Ok(to_json_text(&m))
    }

    /// Resumes a paused execution, optionally recording `state` for the step that paused it.
    /// Returns the failure that had paused it (JSON text) or None.
    #[pyo3(signature = (execution_id, state=None, by=None))]
    fn resume(
        &self,
        py: Python<'_>,
        execution_id: &str,
        state: Option<&[u8]>,
        by: Option<&str>,
    ) -> PyResult<Option<String>> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                let args = json!({"execution_id": execution_id, "state": state.map(b64), "by": by});
                let v: serde_json::Value = remote(py, &c, "resume", args)?;
                return Ok((!v.is_null()).then(|| v.to_string()));
            }
        };
        let f = py
            .detach(|| store.resume(execution_id, state, by))
            .map_err(err)?;
        Ok(f.map(|f| to_json_text(&f)))
    }

    /// Records the crash of the process that ran an execution (before recovering it).
    fn record_crash(&self, py: Python<'_>, execution_id: &str) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                return remote_text(
                    py,
                    &c,
                    "record_crash",
                    json!({"execution_id": execution_id}),
                )
            }
        };
        let f = py
            .detach(|| store.record_crash(execution_id))
            .map_err(err)?;
        Ok(to_json_text(&f))
    }

    /// Spans of an execution (JSON text of a list).
    fn spans(&self, py: Python<'_>, execution_id: &str) -> PyResult<String> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            Backend::Remote(c) => {
                py.detach(|| c.flush_spans()).map_err(err)?;
                return remote_text(py, &c, "spans", json!({"execution_id": execution_id}));
            }
        };
        py.detach(|| crate::trace::spans_json(&store, execution_id))
            .map_err(err)
    }

    /// Waits until every recorded span is stored.
    fn flush_spans(&self, py: Python<'_>) -> PyResult<()> {
        match self.backend()? {
            Backend::Local(store) => py.detach(|| store.flush_spans()).map_err(err),
            Backend::Remote(c) => py
                .detach(|| {
                    c.flush_spans()
                        .and_then(|_| c.call("flush_spans", json!({})))
                })
                .map(drop)
                .map_err(err),
        }
    }

    /// Waits at most `timeout` seconds for the OTLP exporter to send what it has.
    fn flush_export(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let store = match self.backend()? {
            Backend::Local(s) => s,
            // The daemon exports; this process only hands its spans over.
            Backend::Remote(c) => return py.detach(|| c.flush_spans()).map(|_| true).map_err(err),
        };
        py.detach(|| store.flush_export(Duration::from_secs_f64(timeout.max(0.0))))
            .map_err(err)
    }

    /// Span pipeline counters (JSON text).
    fn span_stats(&self) -> PyResult<String> {
        Ok(to_json_text(&self.get()?.span_stats()))
    }

    /// Starts exporting spans over OTLP/HTTP protobuf.
    #[pyo3(signature = (endpoint=None, service_name=None, queue_capacity=8192, batch_size=512, attempts=3, timeout=None))]
    fn enable_otlp_export(
        &self,
        endpoint: Option<String>,
        service_name: Option<String>,
        queue_capacity: usize,
        batch_size: usize,
        attempts: u32,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let config = omium_core::trace::ExportConfig {
            endpoint,
            service_name,
            queue_capacity,
            batch_size,
            attempts,
            timeout: timeout.map(|t| Duration::from_secs_f64(t.max(0.001))),
        };
        self.get()?.enable_otlp_export(config).map_err(err)
    }

    /// Step-by-step comparison of two executions (JSON text of a list).
    fn diff_executions(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<String> {
        let store = self.get()?;
        let rows = py.detach(|| store.diff_executions(a, b)).map_err(err)?;
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut j = serde_json::to_value(r).expect("diffs serialize");
                j["differs"] = r.differs().into();
                j
            })
            .collect();
        Ok(serde_json::Value::Array(v).to_string())
    }

    /// The terminal waterfall of an execution's trace.
    #[pyo3(signature = (execution_id, width=60))]
    fn trace_text(&self, py: Python<'_>, execution_id: &str, width: usize) -> PyResult<String> {
        let store = self.get()?;
        py.detach(|| {
            store.flush_spans()?;
            Ok(omium_core::trace::view::waterfall(
                &store.spans(execution_id)?,
                width.clamp(10, 400),
            ))
        })
        .map_err(err)
    }

    /// One self-contained HTML page of an execution's trace.
    fn trace_html(&self, py: Python<'_>, execution_id: &str) -> PyResult<String> {
        let store = self.get()?;
        py.detach(|| {
            store.flush_spans()?;
            Ok(omium_core::trace::view::html(
                execution_id,
                &store.spans(execution_id)?,
            ))
        })
        .map_err(err)
    }

    fn __repr__(&self) -> String {
        format!(
            "Store({:?}{})",
            self.path.display().to_string(),
            if self.closed() { ", closed" } else { "" }
        )
    }
}
