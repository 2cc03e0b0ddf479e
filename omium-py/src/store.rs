//! `omium._omium.Store`: a handle on a store, closable (`Store is closed` afterwards). The
//! store is opened in this process, or served by an `omium serve` daemon
//! (`Store.connect(url)`); either way the calls go through the core's `StoreHandle`, so both
//! give the same results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use omium_core::policy::Trigger;
use omium_core::recovery::FailureInput;
use omium_core::serve::{Client, StoreHandle};
use omium_core::{BeginOptions, Durability, ForkOptions, OpenOptions, RollbackTarget};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::convert::{self, err};
use crate::recovery;
use crate::run::Run;
use omium_core::prelude::*;

fn to_json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

#[pyclass(frozen, module = "omium._omium")]
pub struct Store {
    inner: RwLock<Option<StoreHandle>>,
    /// The directory, or the daemon's URL.
    path: PathBuf,
}

impl Store {
    pub fn handle(&self) -> PyResult<StoreHandle> {
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

    /// The store of this process, for the calls a daemon does not serve.
    pub fn get(&self) -> PyResult<omium_core::Store> {
        self.local("this call")
    }

    fn local(&self, what: &str) -> PyResult<omium_core::Store> {
        self.handle()?.local(what).cloned().map_err(err)
    }

    fn syncer(&self) -> PyResult<omium_core::sync::Syncer> {
        self.local("remote sync")?.require_syncer().map_err(err)
    }

    /// Runs `f` on the handle with the GIL released.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&StoreHandle) -> omium_core::Result<T> + Send,
    ) -> PyResult<T> {
        let h = self.handle()?;
        py.detach(|| f(&h)).map_err(err)
    }

    /// [`Store::call`] for answers the Python layer decodes from JSON text.
    fn text(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&StoreHandle) -> omium_core::Result<serde_json::Value> + Send,
    ) -> PyResult<String> {
        self.call(py, f).map(|v| v.to_string())
    }
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
            inner: RwLock::new(Some(StoreHandle::Local(store))),
            path,
        })
    }

    /// A handle on an `omium serve` daemon: `unix:///path/omium.sock` or `http://host:port`.
    #[staticmethod]
    #[pyo3(signature = (url, api_key=None))]
    fn connect(py: Python<'_>, url: &str, api_key: Option<&str>) -> PyResult<Self> {
        let client = py.detach(|| Client::connect(url, api_key)).map_err(err)?;
        Ok(Store {
            inner: RwLock::new(Some(StoreHandle::Remote(client))),
            path: PathBuf::from(url),
        })
    }

    /// The daemon's URL for a handle on `omium serve`, else None.
    #[getter]
    fn url(&self) -> Option<String> {
        match self.handle() {
            Ok(StoreHandle::Remote(c)) => Some(c.url().to_string()),
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
        Ok(match self.handle()? {
            StoreHandle::Local(s) => s.is_read_only(),
            StoreHandle::Remote(_) => false,
        })
    }

    /// The store's durability (of a daemon's store: asked from the daemon, with the key).
    #[getter]
    fn durability(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(match self.handle()? {
            StoreHandle::Local(s) => s.durability().as_str(),
            StoreHandle::Remote(c) => py.detach(|| c.durability()).map_err(err)?.as_str(),
        })
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
        let run = self.call(py, |h| h.begin(execution_id, options))?;
        Ok(Run::new(run))
    }

    fn execution<'py>(&self, py: Python<'py>, execution_id: &str) -> PyResult<Bound<'py, PyDict>> {
        convert::execution(py, &self.call(py, |h| h.execution(execution_id))?)
    }

    fn executions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        convert::executions(py, &self.call(py, |h| h.executions())?)
    }

    fn resumable<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        convert::executions(py, &self.call(py, |h| h.resumable())?)
    }

    fn execution_input<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let b = self.call(py, |h| h.execution_input(execution_id))?;
        Ok(b.map(|b| PyBytes::new(py, &b)))
    }

    fn execution_output<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let b = self.call(py, |h| h.execution_output(execution_id))?;
        Ok(b.map(|b| PyBytes::new(py, &b)))
    }

    fn history<'py>(&self, py: Python<'py>, execution_id: &str) -> PyResult<Bound<'py, PyList>> {
        convert::checkpoints(py, &self.call(py, |h| h.history(execution_id))?)
    }

    fn checkpoints<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        convert::checkpoints(py, &self.call(py, |h| h.checkpoints(execution_id))?)
    }

    /// The branch ending at a checkpoint (an abandoned one too), first checkpoint first.
    fn branch<'py>(&self, py: Python<'py>, checkpoint_id: &str) -> PyResult<Bound<'py, PyList>> {
        convert::checkpoints(py, &self.call(py, |h| h.branch(checkpoint_id))?)
    }

    fn checkpoint<'py>(
        &self,
        py: Python<'py>,
        checkpoint_id: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        convert::checkpoint(py, &self.call(py, |h| h.checkpoint(checkpoint_id))?)
    }

    /// The verified state bytes of a checkpoint.
    fn read_state<'py>(
        &self,
        py: Python<'py>,
        checkpoint_id: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let b = self.call(py, |h| h.read_state(checkpoint_id))?;
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
        let target = match (to, global_seq) {
            (Some(t), _) => RollbackTarget::parse(t),
            (None, Some(g)) => RollbackTarget::GlobalSeq(g),
            (None, None) => RollbackTarget::LastConsistent,
        };
        let marker = self.call(py, |h| h.rollback(execution_id, &target, reason))?;
        convert::checkpoint(py, &marker)
    }

    /// Carries out a rollback a recovery policy decided (`to` and `failure` as the `raise`
    /// command gave them, `failure` as JSON text): the marker, or None when the execution runs
    /// again from its start (nothing consistent was recorded yet).
    fn rollback_as_decided<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
        to: &str,
        failure: &str,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let failure: serde_json::Value = serde_json::from_str(failure).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("failure: not JSON: {e}"))
        })?;
        match self.call(py, |h| h.rollback_as_decided(execution_id, to, &failure))? {
            Some(marker) => convert::checkpoint(py, &marker).map(Some),
            None => Ok(None),
        }
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
        let options = ForkOptions {
            new_execution_id,
            state: state.map(<[u8]>::to_vec),
        };
        convert::execution(py, &self.call(py, |h| h.fork(execution_id, at, options))?)
    }

    /// A replay of an execution's recorded calls (their states read now).
    fn open_replay(&self, py: Python<'_>, execution_id: &str) -> PyResult<crate::trace::Replay> {
        self.call(py, |h| h.open_replay(execution_id))
            .map(crate::trace::Replay::new)
    }

    /// Forks before a top-level position (1 is the first step) into `new_execution_id`.
    fn fork_at_step<'py>(
        &self,
        py: Python<'py>,
        execution_id: &str,
        at_step: u64,
        new_execution_id: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let e = self.call(py, |h| {
            h.fork_at_step(execution_id, at_step, new_execution_id)
        })?;
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

    #[pyo3(signature = (execution_id=None, expect_head=None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        execution_id: Option<&str>,
        expect_head: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let head = expect_head
            .map(|h| h.parse::<omium_core::AuditHead>())
            .transpose()
            .map_err(err)?;
        convert::verify_report(
            py,
            &self.call(py, |h| h.verify(execution_id, head.as_ref()))?,
        )
    }

    /// The audit chain's last entry as "SEQ:HASH", or None when nothing was audited yet.
    fn audit_head(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.call(py, |h| h.audit_head())?.map(|h| h.to_string()))
    }

    /// Starts pushing this store's executions to a cluster (`omium.init(remote=...)`).
    #[pyo3(signature = (nodes, durability="background", interval=0.05, claim=30.0, objects=None, objects_endpoint=None))]
    #[allow(clippy::too_many_arguments)]
    fn attach_sync(
        &self,
        py: Python<'_>,
        nodes: Vec<String>,
        durability: &str,
        interval: f64,
        claim: f64,
        objects: Option<String>,
        objects_endpoint: Option<String>,
    ) -> PyResult<()> {
        for (name, v) in [("interval", interval), ("claim", claim)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "attach_sync({name}=...) must be a positive number of seconds, not {v}"
                )));
            }
        }
        let store = self.local("remote sync")?;
        let config = omium_core::sync::SyncConfig {
            nodes,
            durability: omium_core::sync::RemoteDurability::parse(durability).map_err(err)?,
            interval: Duration::from_secs_f64(interval),
            claim: Duration::from_secs_f64(claim),
            objects: objects.map(|url| omium_core::sync::objects::ObjectConfig {
                url,
                endpoint: objects_endpoint,
                ..Default::default()
            }),
        };
        py.detach(|| store.attach_sync(config))
            .map(|_| ())
            .map_err(err)
    }

    /// Fetches an execution from the cluster and takes it over; the execution as a dict.
    fn pull<'py>(&self, py: Python<'py>, execution_id: &str) -> PyResult<Bound<'py, PyDict>> {
        let s = self.syncer()?;
        let e = py.detach(|| s.pull(execution_id)).map_err(err)?;
        convert::execution(py, &e)
    }

    /// Waits until every change so far is in the cluster.
    #[pyo3(signature = (timeout=30.0))]
    fn sync_flush(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let s = self.syncer()?;
        let t = Duration::from_secs_f64(timeout.max(0.0));
        py.detach(|| s.flush(None, t)).map_err(err)
    }

    /// What was pushed and pulled so far, as JSON text.
    fn sync_report(&self) -> PyResult<String> {
        Ok(serde_json::to_string(&self.syncer()?.report()).expect("reports serialize"))
    }

    /// Pulls the executions another store left unfinished in the cluster and no longer holds:
    /// `(pulled ids, [(skipped id, why)])`.
    #[allow(clippy::type_complexity)]
    fn pull_abandoned(&self, py: Python<'_>) -> PyResult<(Vec<String>, Vec<(String, String)>)> {
        let s = self.syncer()?;
        let r = py.detach(|| s.pull_abandoned()).map_err(err)?;
        Ok((r.pulled, r.skipped))
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
        self.call(py, |h| h.delete_execution(execution_id))
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
        let h = self.handle()?;
        py.detach(|| h.apply_policy(tenant, scope, text, file, author))
            .map(|v| v.to_string())
            .map_err(recovery::core_err)
    }

    /// Policy versions (JSON text of a list): of one scope, of a tenant, or of every tenant.
    #[pyo3(signature = (tenant=None, scope=None))]
    fn policy_versions(
        &self,
        py: Python<'_>,
        tenant: Option<&str>,
        scope: Option<&str>,
    ) -> PyResult<String> {
        self.text(py, |h| h.policy_versions(tenant, scope))
    }

    #[pyo3(signature = (tenant, scope, version=None))]
    fn policy_version(
        &self,
        py: Python<'_>,
        tenant: &str,
        scope: &str,
        version: Option<u32>,
    ) -> PyResult<String> {
        self.text(py, |h| h.policy_version(tenant, scope, version))
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
        self.text(py, |h| h.policy_defaults(tenant, workflow, step))
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
        let h = self.handle()?;
        let r = py
            .detach(|| h.drive_recovery(input, retries))
            .map_err(recovery::core_err)?;
        Ok(recovery::Recovery::new(r))
    }

    /// Checks a tool call against the policy's `tool_whitelist` (`ToolDeniedError` when it is
    /// not allowed; outside a step the denial is recorded as a failure).
    #[pyo3(signature = (execution_id, tenant, workflow, step, agent, tool))]
    #[allow(clippy::too_many_arguments)]
    fn check_tool(
        &self,
        py: Python<'_>,
        execution_id: &str,
        tenant: &str,
        workflow: Option<&str>,
        step: Option<&str>,
        agent: &str,
        tool: &str,
    ) -> PyResult<()> {
        self.call(py, |h| {
            h.check_tool(execution_id, tenant, workflow, step, agent, tool)
        })
    }

    /// Failure records (JSON text of a list), of one execution or all.
    #[pyo3(signature = (execution_id=None))]
    fn failures(&self, py: Python<'_>, execution_id: Option<&str>) -> PyResult<String> {
        self.text(py, |h| h.failures(execution_id))
    }

    /// Execution analytics (JSON text) for a query given as JSON text (`omium.metrics`).
    fn metrics(&self, py: Python<'_>, query: &str) -> PyResult<String> {
        let q: serde_json::Value = serde_json::from_str(query).map_err(|e| {
            crate::convert::err(omium_core::Error::InvalidArgument {
                what: "metrics query",
                detail: format!("it is not JSON: {e}"),
            })
        })?;
        self.text(py, move |h| h.metrics(&q))
    }

    /// Starts evaluating alert rules (YAML or JSON text) in a thread of this process.
    #[pyo3(signature = (text, file=None))]
    fn start_alerts(
        &self,
        py: Python<'_>,
        text: &str,
        file: Option<&str>,
    ) -> PyResult<AlertEvaluator> {
        let e = self.call(py, |h| h.start_alerts(text, file))?;
        Ok(AlertEvaluator {
            inner: std::sync::Mutex::new(Some(e)),
        })
    }

    /// Evaluates alert rules once now; the transitions as JSON text.
    #[pyo3(signature = (text, file=None))]
    fn evaluate_alerts(&self, py: Python<'_>, text: &str, file: Option<&str>) -> PyResult<String> {
        self.text(py, |h| h.evaluate_alerts(text, file))
    }

    /// The alerts pending or firing (JSON text).
    fn alerts(&self, py: Python<'_>) -> PyResult<String> {
        self.text(py, |h| h.alerts())
    }

    /// Acknowledges the firing alerts of a rule; the transitions as JSON text.
    #[pyo3(signature = (rule, group=None, by=None))]
    fn acknowledge_alert(
        &self,
        py: Python<'_>,
        rule: &str,
        group: Option<std::collections::BTreeMap<String, String>>,
        by: Option<&str>,
    ) -> PyResult<String> {
        let group = group.unwrap_or_default();
        self.text(py, |h| h.acknowledge_alert(rule, &group, by))
    }

    /// Recovery metrics (JSON text), of one workflow or all.
    #[pyo3(signature = (workflow=None))]
    fn recovery_metrics(&self, py: Python<'_>, workflow: Option<&str>) -> PyResult<String> {
        self.text(py, |h| h.recovery_metrics(workflow))
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
        let f = self.call(py, |h| h.resume(execution_id, state, by))?;
        Ok(f.map(|f| f.to_string()))
    }

    /// An operator control (`pause`, `cancel`, `resume`, `retry`, `delete`) of an execution;
    /// the reply as JSON text.
    #[pyo3(signature = (action, execution_id, reason=None, by=None))]
    fn control(
        &self,
        py: Python<'_>,
        action: &str,
        execution_id: &str,
        reason: Option<String>,
        by: Option<String>,
    ) -> PyResult<String> {
        let action = omium_core::control::Action::parse(action).map_err(err)?;
        let request = omium_core::control::Request::new(action, execution_id, reason, by);
        self.text(py, |h| {
            h.control(&request)
                .map(|r| serde_json::to_value(r).expect("replies serialize"))
        })
    }

    /// Records the crash of the process that ran an execution (before recovering it).
    fn record_crash(&self, py: Python<'_>, execution_id: &str) -> PyResult<String> {
        self.text(py, |h| h.record_crash(execution_id))
    }

    /// Spans of an execution (JSON text of a list).
    fn spans(&self, py: Python<'_>, execution_id: &str) -> PyResult<String> {
        self.text(py, |h| h.spans(execution_id))
    }

    /// The event feed after `since` (JSON text of `{"events": [CloudEvent], "cursor"}`),
    /// waiting up to `wait` seconds for a first event when none is there yet.
    #[pyo3(signature = (since, limit, types, execution_id, wait))]
    fn events(
        &self,
        py: Python<'_>,
        since: u64,
        limit: usize,
        types: Vec<String>,
        execution_id: Option<String>,
        wait: f64,
    ) -> PyResult<String> {
        let filter = omium_core::events::EventFilter::new(types, execution_id).map_err(err)?;
        let wait = Duration::from_secs_f64(wait.max(0.0));
        self.text(py, |h| h.events(since, limit, &filter, wait))
    }

    /// Waits until every recorded span is stored.
    fn flush_spans(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, |h| h.flush_spans())
    }

    /// Waits at most `timeout` seconds for the OTLP exporter to send what it has (a daemon
    /// exports itself: this process only hands its spans over).
    fn flush_export(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        self.call(py, |h| match h {
            StoreHandle::Local(s) => s.flush_export(Duration::from_secs_f64(timeout.max(0.0))),
            StoreHandle::Remote(_) => h.flush_spans().map(|_| true),
        })
    }

    /// Span pipeline counters (JSON text).
    fn span_stats(&self) -> PyResult<String> {
        Ok(to_json_text(&self.get()?.span_stats()))
    }

    /// Starts exporting spans (and the analytics, with a metrics endpoint) over OTLP/HTTP.
    #[pyo3(signature = (endpoint=None, service_name=None, queue_capacity=8192, batch_size=512, attempts=3, timeout=None, metrics_endpoint=None, metrics_interval=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn enable_otlp_export(
        &self,
        endpoint: Option<String>,
        service_name: Option<String>,
        queue_capacity: usize,
        batch_size: usize,
        attempts: u32,
        timeout: Option<f64>,
        metrics_endpoint: Option<String>,
        metrics_interval: Option<f64>,
    ) -> PyResult<()> {
        let config = omium_core::trace::ExportConfig {
            endpoint,
            service_name,
            queue_capacity,
            batch_size,
            attempts,
            timeout: timeout.map(|t| Duration::from_secs_f64(t.max(0.001))),
            metrics_endpoint,
            metrics_interval: metrics_interval.map(|t| Duration::from_secs_f64(t.max(0.05))),
        };
        self.get()?.enable_otlp_export(config).map_err(err)
    }

    /// Step-by-step comparison of two executions (JSON text of a list).
    fn diff_executions(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<String> {
        let store = self.get()?;
        let rows = py.detach(|| store.diff_executions(a, b)).map_err(err)?;
        Ok(omium_core::json::step_diffs(&rows).to_string())
    }

    /// The terminal waterfall of an execution's trace.
    #[pyo3(signature = (execution_id, width=60))]
    fn trace_text(&self, py: Python<'_>, execution_id: &str, width: usize) -> PyResult<String> {
        let store = self.get()?;
        py.detach(|| {
            store.flush_spans()?;
            Ok::<_, omium_core::Error>(omium_core::trace::view::waterfall(
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
            Ok::<_, omium_core::Error>(omium_core::trace::view::html(
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

/// A thread of this process evaluating alert rules (`omium.start_alerts`).
#[pyclass(module = "omium._omium")]
pub struct AlertEvaluator {
    inner: std::sync::Mutex<Option<omium_core::alerts::Evaluator>>,
}

#[pymethods]
impl AlertEvaluator {
    /// Stops evaluating (after the evaluation under way); idempotent.
    fn stop(&self, py: Python<'_>) {
        let e = self.inner.lock().ok().and_then(|mut g| g.take());
        if let Some(e) = e {
            py.detach(|| e.stop());
        }
    }

    /// Whether it still evaluates.
    #[getter]
    fn running(&self) -> bool {
        self.inner.lock().is_ok_and(|g| g.is_some())
    }

    /// The last evaluation's error, if it failed.
    #[getter]
    fn last_error(&self) -> Option<String> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.as_ref().and_then(|e| e.last_error()))
    }
}
