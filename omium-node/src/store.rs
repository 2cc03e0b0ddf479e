//! `Store`: an open Omium store. Every call that touches RocksDB is async and runs on a worker
//! thread; closing is synchronous (RocksDB closes once no run of the handle is alive).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::policy::Scope;
use omium_core::recovery::FailureInput;
use omium_core::{BeginOptions, Durability, ForkOptions, OpenOptions, RollbackTarget};
use serde_json::Value;

use crate::convert::{self, blocking, coded, err, record};
use crate::run::Run;

#[napi(object)]
pub struct OpenStoreOptions {
    /// "sync" (default), "buffered" or "none".
    pub durability: Option<String>,
    pub read_only: Option<bool>,
    /// Create the store when missing (default true).
    pub create: Option<bool>,
}

#[napi(object)]
pub struct BeginRunOptions {
    pub workflow: Option<String>,
    pub tenant: Option<String>,
    /// Stored on the first run only.
    pub input: Option<Buffer>,
    pub labels: Option<BTreeMap<String, String>>,
    pub agent: Option<String>,
    /// Lease time to live in milliseconds (default 30 000).
    pub lease_ttl_ms: Option<f64>,
    pub durability: Option<String>,
    pub resume_paused: Option<bool>,
}

#[napi(object)]
pub struct RollbackOptions {
    /// A checkpoint id or name; with neither this nor `globalSeq`, the last consistent one.
    pub to: Option<String>,
    pub global_seq: Option<i64>,
    pub reason: Option<String>,
}

#[napi(object)]
pub struct ForkOptionsJs {
    pub new_execution_id: Option<String>,
    pub state: Option<Buffer>,
}

#[napi(object)]
pub struct FailureInputJs {
    pub execution_id: String,
    pub workflow: String,
    pub tenant: String,
    pub step: Option<String>,
    pub seq: Option<i64>,
    pub key: Option<String>,
    pub agent: String,
    /// A failure type (`timeout_error`, ...) when the caller knows it; else classified.
    pub kind: Option<String>,
    pub error_classes: Vec<String>,
    pub message: String,
    pub retries: Option<u32>,
    pub rollbacks_so_far: Option<u32>,
}

fn durability(d: Option<&str>) -> Result<Option<Durability>> {
    d.map(|s| Durability::parse(s).map_err(err)).transpose()
}

fn non_negative(v: Option<i64>, what: &str) -> Result<Option<u64>> {
    v.map(|n| {
        u64::try_from(n)
            .map_err(|_| coded("invalid_argument", format!("{what} must be >= 0, not {n}")))
    })
    .transpose()
}

/// Opens (or creates) the store at `path`.
#[napi]
pub async fn open_store(path: String, options: Option<OpenStoreOptions>) -> Result<Store> {
    let options = options.unwrap_or(OpenStoreOptions {
        durability: None,
        read_only: None,
        create: None,
    });
    let d = Durability::parse(options.durability.as_deref().unwrap_or("sync")).map_err(err)?;
    let read_only = options.read_only.unwrap_or(false);
    let create = options.create.unwrap_or(true);
    let p = path.clone();
    let store = blocking(move || {
        omium_core::Store::open_with(
            &p,
            OpenOptions {
                durability: d,
                create: create && !read_only,
                read_only,
                ..OpenOptions::default()
            },
        )
    })
    .await?;
    Ok(Store {
        inner: Arc::new(RwLock::new(Some(store))),
        path,
    })
}

#[napi]
pub struct Store {
    inner: Arc<RwLock<Option<omium_core::Store>>>,
    path: String,
}

impl Store {
    pub fn get(&self) -> Result<omium_core::Store> {
        let guard = self
            .inner
            .read()
            .map_err(|_| coded("internal", "omium store lock poisoned by a panic"))?;
        guard.clone().ok_or_else(|| {
            coded(
                "store_closed",
                format!(
                    "store {} is closed; open it again with omium.init()",
                    self.path
                ),
            )
        })
    }
}

#[napi]
impl Store {
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.path.clone()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.get().is_err()
    }

    #[napi(getter)]
    pub fn read_only(&self) -> Result<bool> {
        Ok(self.get()?.is_read_only())
    }

    #[napi(getter)]
    pub fn durability(&self) -> Result<String> {
        Ok(self.get()?.durability().as_str().into())
    }

    /// Closes the handle; RocksDB closes once no run of it is alive. Idempotent.
    #[napi]
    pub fn close(&self) -> Result<()> {
        let mut guard = self
            .inner
            .write()
            .map_err(|_| coded("internal", "omium store lock poisoned by a panic"))?;
        *guard = None;
        Ok(())
    }

    /// Begins (or resumes) a run of an execution; it holds the execution's lease.
    #[napi]
    pub async fn begin(
        &self,
        execution_id: String,
        options: Option<BeginRunOptions>,
    ) -> Result<Run> {
        let store = self.get()?;
        let mut begin = BeginOptions::default();
        if let Some(o) = options {
            if let Some(ttl) = o.lease_ttl_ms {
                if !(ttl.is_finite() && ttl > 0.0) {
                    return Err(coded(
                        "invalid_argument",
                        format!("leaseTtlMs must be a positive number of milliseconds, not {ttl}"),
                    ));
                }
                begin.lease_ttl = Duration::from_secs_f64(ttl / 1000.0);
            }
            begin.workflow = o.workflow.unwrap_or_default();
            begin.tenant = o.tenant.unwrap_or_else(|| "default".into());
            begin.input = o.input.map(|b| b.to_vec());
            begin.labels = o.labels.unwrap_or_default();
            if let Some(a) = o.agent {
                begin.agent = a;
            }
            begin.durability = durability(o.durability.as_deref())?;
            begin.resume_paused = o.resume_paused.unwrap_or(false);
        }
        let run = blocking(move || store.begin(&execution_id, begin)).await?;
        Ok(Run::new(run))
    }

    #[napi]
    pub async fn execution(&self, execution_id: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.execution(&execution_id).map(|e| convert::execution(&e))).await
    }

    #[napi]
    pub async fn executions(&self) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.executions().map(|e| convert::executions(&e))).await
    }

    /// Executions whose process died mid-run, and executions rolled back since they ran.
    #[napi]
    pub async fn resumable(&self) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.resumable().map(|e| convert::executions(&e))).await
    }

    #[napi]
    pub async fn execution_input(&self, execution_id: String) -> Result<Option<Buffer>> {
        let s = self.get()?;
        let v = blocking(move || s.execution_input(&execution_id)).await?;
        Ok(v.map(Buffer::from))
    }

    #[napi]
    pub async fn execution_output(&self, execution_id: String) -> Result<Option<Buffer>> {
        let s = self.get()?;
        let v = blocking(move || s.execution_output(&execution_id)).await?;
        Ok(v.map(Buffer::from))
    }

    /// The live branch of an execution, first checkpoint first.
    #[napi]
    pub async fn history(&self, execution_id: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.history(&execution_id).map(|c| convert::checkpoints(&c))).await
    }

    /// Every checkpoint of an execution, on every branch.
    #[napi]
    pub async fn checkpoints(&self, execution_id: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || {
            s.checkpoints(&execution_id)
                .map(|c| convert::checkpoints(&c))
        })
        .await
    }

    /// The branch that ends at a checkpoint.
    #[napi]
    pub async fn branch(&self, checkpoint_id: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.branch(&checkpoint_id).map(|c| convert::checkpoints(&c))).await
    }

    #[napi]
    pub async fn checkpoint(&self, checkpoint_id: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || {
            s.checkpoint(&checkpoint_id)
                .map(|c| convert::checkpoint(&c))
        })
        .await
    }

    /// The state of a checkpoint, verified against its checksum.
    #[napi]
    pub async fn read_state(&self, checkpoint_id: String) -> Result<Buffer> {
        let s = self.get()?;
        let v = blocking(move || {
            let c = s.checkpoint(&checkpoint_id)?;
            s.read_state(&c)
        })
        .await?;
        Ok(Buffer::from(v))
    }

    /// Rolls back; returns the rollback marker.
    #[napi]
    pub async fn rollback(
        &self,
        execution_id: String,
        options: Option<RollbackOptions>,
    ) -> Result<Value> {
        let s = self.get()?;
        let (to, global_seq, reason) = match options {
            Some(o) => (o.to, non_negative(o.global_seq, "globalSeq")?, o.reason),
            None => (None, None, None),
        };
        let target = match (to, global_seq) {
            (Some(_), Some(_)) => {
                return Err(coded(
                    "invalid_argument",
                    "rollback: give either `to` or `globalSeq`, not both",
                ))
            }
            (Some(t), None) => RollbackTarget::parse(&t),
            (None, Some(g)) => RollbackTarget::GlobalSeq(g),
            (None, None) => RollbackTarget::LastConsistent,
        };
        blocking(move || {
            s.rollback(&execution_id, &target, reason.as_deref())
                .map(|c| convert::checkpoint(&c))
        })
        .await
    }

    /// Forks at a checkpoint (id or name) into a new execution; returns it.
    #[napi]
    pub async fn fork(
        &self,
        execution_id: String,
        at: String,
        options: Option<ForkOptionsJs>,
    ) -> Result<Value> {
        let s = self.get()?;
        let fork = match options {
            Some(o) => ForkOptions {
                new_execution_id: o.new_execution_id,
                state: o.state.map(|b| b.to_vec()),
            },
            None => ForkOptions::default(),
        };
        blocking(move || {
            s.fork(&execution_id, &RollbackTarget::parse(&at), fork)
                .map(|e| convert::execution(&e))
        })
        .await
    }

    /// Recomputes every checksum of one execution (or all) and the audit chain.
    #[napi]
    pub async fn verify(&self, execution_id: Option<String>) -> Result<Value> {
        let s = self.get()?;
        blocking(move || {
            s.verify(execution_id.as_deref())
                .map(|r| convert::verify_report(&r))
        })
        .await
    }

    /// Removes chunks no checkpoint references.
    #[napi]
    pub async fn gc(&self) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.gc().map(|r| record(&r))).await
    }

    #[napi]
    pub async fn stats(&self) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.stats().map(|r| record(&r))).await
    }

    /// Deletes an execution with its checkpoints; returns how many were deleted.
    #[napi]
    pub async fn delete_execution(&self, execution_id: String) -> Result<f64> {
        let s = self.get()?;
        blocking(move || s.delete_execution(&execution_id).map(|n| n as f64)).await
    }

    // ---- policies and recovery ----

    /// Validates and stores a policy version (YAML or JSON text); returns the version.
    #[napi]
    pub async fn apply_policy(
        &self,
        tenant: String,
        scope: String,
        text: String,
        file: Option<String>,
        author: Option<String>,
    ) -> Result<Value> {
        let s = self.get()?;
        let scope = Scope::parse(&scope).map_err(err)?;
        blocking(move || {
            s.apply_policy(&tenant, &scope, &text, file.as_deref(), author.as_deref())
                .map(|v| record(&v))
        })
        .await
    }

    /// Policy versions: of one scope, of a tenant, or (no tenant) of every tenant.
    #[napi]
    pub async fn policy_versions(
        &self,
        tenant: Option<String>,
        scope: Option<String>,
    ) -> Result<Value> {
        let s = self.get()?;
        let scope = scope
            .as_deref()
            .map(Scope::parse)
            .transpose()
            .map_err(err)?;
        blocking(move || {
            match tenant {
                Some(t) => s.policy_versions(&t, scope.as_ref()),
                None => s.all_policy_versions(),
            }
            .map(|v| record(&v))
        })
        .await
    }

    /// The defaults in force for a step, the most specific scope winning.
    #[napi]
    pub async fn policy_defaults(
        &self,
        tenant: String,
        workflow: Option<String>,
        step: Option<String>,
    ) -> Result<Value> {
        let s = self.get()?;
        blocking(move || {
            s.effective_policy(&tenant, workflow.as_deref(), step.as_deref())
                .map(|e| omium_core::json::policy_defaults(&e))
        })
        .await
    }

    /// Records a failure and returns the handle that decides how to handle it.
    #[napi]
    pub async fn start_recovery(
        &self,
        failure: FailureInputJs,
    ) -> Result<crate::recovery::Recovery> {
        let s = self.get()?;
        let kind = failure
            .kind
            .as_deref()
            .map(omium_core::policy::Trigger::parse)
            .transpose()
            .map_err(err)?;
        let input = FailureInput {
            execution_id: failure.execution_id,
            workflow: failure.workflow,
            tenant: failure.tenant,
            step: failure.step,
            seq: non_negative(failure.seq, "seq")?,
            key: failure.key,
            agent: failure.agent,
            kind,
            error_classes: failure.error_classes,
            message: failure.message,
            step_retry: omium_core::recovery::step_retry(failure.retries.unwrap_or(0)),
            rollbacks_so_far: failure.rollbacks_so_far.unwrap_or(0),
        };
        let r = blocking(move || {
            let workflow = Some(input.workflow.as_str()).filter(|w| !w.is_empty());
            let e = s.effective_policy(&input.tenant, workflow, input.step.as_deref())?;
            s.start_recovery(input, e)
        })
        .await?;
        Ok(crate::recovery::Recovery::new(r))
    }

    /// Failure records, of one execution or all.
    #[napi]
    pub async fn failures(&self, execution_id: Option<String>) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.failures(execution_id.as_deref()).map(|v| record(&v))).await
    }

    /// Recovery metrics (MTTR, success rate, ...), of one workflow or all.
    #[napi]
    pub async fn recovery_metrics(&self, workflow: Option<String>) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.recovery_metrics(workflow.as_deref()).map(|v| record(&v))).await
    }

    /// Resumes a paused execution, optionally recording `state` for the step that paused it;
    /// returns the failure that had paused it, or null.
    #[napi]
    pub async fn resume(
        &self,
        execution_id: String,
        state: Option<Buffer>,
        by: Option<String>,
    ) -> Result<Value> {
        let s = self.get()?;
        let state = state.map(|b| b.to_vec());
        blocking(move || {
            s.resume(&execution_id, state.as_deref(), by.as_deref())
                .map(|f| f.map(|f| record(&f)).unwrap_or(Value::Null))
        })
        .await
    }

    /// Records the crash of the process that ran an execution (before recovering it).
    #[napi]
    pub async fn record_crash(&self, execution_id: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || s.record_crash(&execution_id).map(|f| record(&f))).await
    }

    // ---- traces ----

    /// Queues a finished span (never blocks: the store's writer thread stores it).
    #[napi]
    pub fn record_span(&self, span: crate::trace::SpanInput) -> Result<()> {
        let span = crate::trace::span(span)?;
        self.get()?.record_span(span);
        Ok(())
    }

    /// Spans of an execution, after storing what is queued.
    #[napi]
    pub async fn spans(&self, execution_id: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || {
            s.flush_spans()?;
            Ok(Value::Array(
                s.spans(&execution_id)?
                    .iter()
                    .map(crate::trace::span_json)
                    .collect(),
            ))
        })
        .await
    }

    /// Waits until every queued span is stored.
    #[napi]
    pub async fn flush_spans(&self) -> Result<()> {
        let s = self.get()?;
        blocking(move || s.flush_spans()).await
    }

    /// Waits at most `timeoutMs` for the OTLP exporter to send what it has.
    #[napi]
    pub async fn flush_export(&self, timeout_ms: f64) -> Result<bool> {
        let s = self.get()?;
        blocking(move || s.flush_export(Duration::from_secs_f64(timeout_ms.max(0.0) / 1000.0)))
            .await
    }

    /// Starts exporting spans over OTLP/HTTP protobuf (`OTEL_EXPORTER_OTLP_*` apply).
    #[napi]
    pub fn enable_otlp_export(
        &self,
        endpoint: Option<String>,
        service_name: Option<String>,
    ) -> Result<()> {
        let config = omium_core::trace::ExportConfig {
            endpoint,
            service_name,
            ..omium_core::trace::ExportConfig::default()
        };
        self.get()?.enable_otlp_export(config).map_err(err)
    }

    /// The terminal waterfall of an execution's trace.
    #[napi]
    pub async fn trace_text(&self, execution_id: String, width: Option<u32>) -> Result<String> {
        let s = self.get()?;
        let width = width.unwrap_or(60).clamp(10, 400) as usize;
        blocking(move || {
            s.flush_spans()?;
            Ok(omium_core::trace::view::waterfall(
                &s.spans(&execution_id)?,
                width,
            ))
        })
        .await
    }

    /// One self-contained HTML page of an execution's trace.
    #[napi]
    pub async fn trace_html(&self, execution_id: String) -> Result<String> {
        let s = self.get()?;
        blocking(move || {
            s.flush_spans()?;
            Ok(omium_core::trace::view::html(
                &execution_id,
                &s.spans(&execution_id)?,
            ))
        })
        .await
    }

    /// Step-by-step comparison of two executions.
    #[napi]
    pub async fn diff_executions(&self, a: String, b: String) -> Result<Value> {
        let s = self.get()?;
        blocking(move || {
            let rows = s.diff_executions(&a, &b)?;
            Ok(Value::Array(
                rows.iter()
                    .map(|r| {
                        let mut j = record(r);
                        j["differs"] = r.differs().into();
                        j
                    })
                    .collect(),
            ))
        })
        .await
    }

    /// Runs a workflow spec durably (steps in parallel where the DAG allows); `agents` are the
    /// ids bound to JS functions, called through `dispatch`. Resolves to the run's report.
    #[napi(ts_return_type = "Promise<any>")]
    pub fn run_workflow<'env>(
        &self,
        env: &'env Env,
        spec: &crate::workflow::WorkflowSpec,
        inputs: serde_json::Map<String, Value>,
        agents: Vec<String>,
        dispatch: crate::workflow::Dispatch,
        options: Option<crate::workflow::WorkflowRunOptions>,
    ) -> Result<PromiseRaw<'env, Value>> {
        let store = self.get()?;
        let run = crate::workflow::prepare(spec, inputs, agents, dispatch, options)?;
        env.spawn_future(async move { blocking(move || run.execute(&store)).await })
    }

    /// Framework checkpoints (threads) of this store, for the LangGraph.js checkpointer.
    #[napi]
    pub fn threads(&self, durability: Option<String>) -> Result<crate::threads::Threads> {
        let mut t = self.get()?.threads();
        if let Some(d) = self::durability(durability.as_deref())? {
            t = t.with_durability(d);
        }
        Ok(crate::threads::Threads::new(t))
    }
}
