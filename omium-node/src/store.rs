//! `Store`: an open Omium store, or a handle on an `omium serve` daemon (`connectStore(url)`).
//! Either way the calls go through the core's `StoreHandle`, so both give the same results; the
//! few calls only an embedded store has answer a remote handle with an `invalid_state` error
//! that names the call. Every call that touches RocksDB or the daemon is async and runs on a
//! worker thread; closing is synchronous (RocksDB closes once no run of the handle is alive).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::policy::Scope;
use omium_core::recovery::FailureInput;
use omium_core::serve::{Client, StoreHandle};
use omium_core::{BeginOptions, Durability, ForkOptions, OpenOptions, RollbackTarget};
use serde_json::Value;

use crate::convert::{self, blocking, coded, err, record};
use crate::run::Run;
use omium_core::prelude::*;

#[napi(object)]
pub struct OpenStoreOptions {
    /// "sync" (default), "buffered" or "none".
    pub durability: Option<String>,
    pub read_only: Option<bool>,
    /// Create the store when missing (default true).
    pub create: Option<bool>,
}

#[napi(object)]
pub struct ConnectOptions {
    /// The daemon's API key (required by a daemon listening on TCP with keys).
    pub api_key: Option<String>,
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
        inner: Arc::new(RwLock::new(Some(StoreHandle::Local(store)))),
        path,
    })
}

/// A handle on an `omium serve` daemon: `unix:///path/omium.sock` (or a bare absolute path) or
/// `http://host:port`. Fails with `server_unavailable` when no daemon answers there, and with
/// `unauthorized` when the daemon needs another API key.
#[napi]
pub async fn connect_store(url: String, options: Option<ConnectOptions>) -> Result<Store> {
    let api_key = options.and_then(|o| o.api_key);
    if api_key.as_deref() == Some("") {
        return Err(coded(
            "invalid_argument",
            format!("connect({url:?}): apiKey is an empty string; give the daemon's key or leave it out"),
        ));
    }
    let u = url.clone();
    let client = blocking(move || Client::connect(&u, api_key.as_deref())).await?;
    Ok(Store {
        inner: Arc::new(RwLock::new(Some(StoreHandle::Remote(client)))),
        path: url,
    })
}

#[napi]
pub struct Store {
    inner: Arc<RwLock<Option<StoreHandle>>>,
    /// The directory, or the daemon's URL.
    path: String,
}

impl Store {
    /// The handle (embedded store or daemon client), unless closed.
    pub fn handle(&self) -> Result<StoreHandle> {
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

    /// The store of this process, for the calls a daemon does not serve; `what` names the call
    /// in the error a handle on a daemon answers.
    pub fn local(&self, what: &str) -> Result<omium_core::Store> {
        self.handle()?.local(what).cloned().map_err(err)
    }
}

#[napi]
impl Store {
    /// The store's directory, or the daemon's URL.
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.path.clone()
    }

    /// The daemon's URL for a handle on `omium serve`, else null.
    #[napi(getter)]
    pub fn url(&self) -> Option<String> {
        match self.handle() {
            Ok(StoreHandle::Remote(c)) => Some(c.url().to_string()),
            _ => None,
        }
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.handle().is_err()
    }

    #[napi(getter)]
    pub fn read_only(&self) -> Result<bool> {
        Ok(match self.handle()? {
            StoreHandle::Local(s) => s.is_read_only(),
            StoreHandle::Remote(_) => false,
        })
    }

    #[napi(getter)]
    pub fn durability(&self) -> Result<String> {
        Ok(match self.handle()? {
            StoreHandle::Local(s) => s.durability().as_str().into(),
            StoreHandle::Remote(c) => c.durability().map_err(err)?.as_str().into(),
        })
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
        let store = self.handle()?;
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
        if begin.resume_paused {
            store.local("begin({ resumePaused: true })").map_err(err)?;
        }
        let run = blocking(move || store.begin(&execution_id, begin)).await?;
        Ok(Run::new(run))
    }

    #[napi]
    pub async fn execution(&self, execution_id: String) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.execution(&execution_id).map(|e| convert::execution(&e))).await
    }

    #[napi]
    pub async fn executions(&self) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.executions().map(|e| convert::executions(&e))).await
    }

    /// Executions whose process died mid-run, and executions rolled back since they ran.
    #[napi]
    pub async fn resumable(&self) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.resumable().map(|e| convert::executions(&e))).await
    }

    #[napi]
    pub async fn execution_input(&self, execution_id: String) -> Result<Option<Buffer>> {
        let s = self.handle()?;
        let v = blocking(move || s.execution_input(&execution_id)).await?;
        Ok(v.map(Buffer::from))
    }

    #[napi]
    pub async fn execution_output(&self, execution_id: String) -> Result<Option<Buffer>> {
        let s = self.handle()?;
        let v = blocking(move || s.execution_output(&execution_id)).await?;
        Ok(v.map(Buffer::from))
    }

    /// The live branch of an execution, first checkpoint first.
    #[napi]
    pub async fn history(&self, execution_id: String) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.history(&execution_id).map(|c| convert::checkpoints(&c))).await
    }

    /// Every checkpoint of an execution, on every branch.
    #[napi]
    pub async fn checkpoints(&self, execution_id: String) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || {
            s.checkpoints(&execution_id)
                .map(|c| convert::checkpoints(&c))
        })
        .await
    }

    /// The branch that ends at a checkpoint.
    #[napi]
    pub async fn branch(&self, checkpoint_id: String) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.branch(&checkpoint_id).map(|c| convert::checkpoints(&c))).await
    }

    #[napi]
    pub async fn checkpoint(&self, checkpoint_id: String) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || {
            s.checkpoint(&checkpoint_id)
                .map(|c| convert::checkpoint(&c))
        })
        .await
    }

    /// The state of a checkpoint, verified against its checksum.
    #[napi]
    pub async fn read_state(&self, checkpoint_id: String) -> Result<Buffer> {
        let s = self.handle()?;
        let v = blocking(move || s.read_state(&checkpoint_id)).await?;
        Ok(Buffer::from(v))
    }

    /// Rolls back; returns the rollback marker.
    #[napi]
    pub async fn rollback(
        &self,
        execution_id: String,
        options: Option<RollbackOptions>,
    ) -> Result<Value> {
        let s = self.handle()?;
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

    /// Carries out a rollback a recovery policy decided (`to` and `failure` as the `raise`
    /// command gave them): the marker, or null when the execution runs again from its start
    /// (nothing consistent was recorded yet).
    #[napi]
    pub async fn rollback_as_decided(
        &self,
        execution_id: String,
        to: String,
        failure: Value,
    ) -> Result<Option<Value>> {
        let s = self.handle()?;
        blocking(move || {
            s.rollback_as_decided(&execution_id, &to, &failure)
                .map(|c| c.as_ref().map(convert::checkpoint))
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
        let s = self.handle()?;
        let fork = match options {
            Some(o) => ForkOptions {
                new_execution_id: o.new_execution_id,
                state: o.state.map(|b| b.to_vec()),
            },
            None => ForkOptions::default(),
        };
        blocking(move || {
            s.fork(&execution_id, &at, fork)
                .map(|e| convert::execution(&e))
        })
        .await
    }

    /// Recomputes every checksum of one execution (or all) and the audit chain; with
    /// `expect_head` ("SEQ:HASH", from `audit_head`), also that the chain still holds that head.
    #[napi]
    pub async fn verify(
        &self,
        execution_id: Option<String>,
        expect_head: Option<String>,
    ) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || {
            let head = expect_head
                .map(|h| h.parse::<omium_core::AuditHead>())
                .transpose()?;
            s.verify(execution_id.as_deref(), head.as_ref())
                .map(|r| convert::verify_report(&r))
        })
        .await
    }

    /// The audit chain's last entry as "SEQ:HASH", or null when nothing was audited yet.
    #[napi]
    pub async fn audit_head(&self) -> Result<Option<String>> {
        let s = self.handle()?;
        blocking(move || s.audit_head().map(|h| h.map(|h| h.to_string()))).await
    }

    /// An operator control (`pause`, `cancel`, `resume`, `retry`, `delete`) of an execution.
    #[napi]
    pub async fn control(
        &self,
        action: String,
        execution_id: String,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<Value> {
        let s = self.handle()?;
        let action = omium_core::control::Action::parse(&action).map_err(err)?;
        let request = omium_core::control::Request::new(action, &execution_id, reason, by);
        blocking(move || {
            s.control(&request)
                .map(|r| serde_json::to_value(r).expect("replies serialize"))
        })
        .await
    }

    /// The event feed after `since`: `{ events: [CloudEvent], cursor }`, waiting up to
    /// `waitMs` for a first event when none is there yet.
    #[napi]
    pub async fn events(
        &self,
        since: i64,
        limit: u32,
        types: Vec<String>,
        execution_id: Option<String>,
        wait_ms: u32,
    ) -> Result<Value> {
        let s = self.handle()?;
        let filter = omium_core::events::EventFilter::new(types, execution_id).map_err(err)?;
        let since = u64::try_from(since).unwrap_or(0);
        blocking(move || {
            s.events(
                since,
                limit as usize,
                &filter,
                std::time::Duration::from_millis(u64::from(wait_ms)),
            )
        })
        .await
    }

    /// Removes chunks no checkpoint references.
    #[napi]
    pub async fn gc(&self) -> Result<Value> {
        let s = self.local("gc")?;
        blocking(move || s.gc().map(|r| record(&r))).await
    }

    #[napi]
    pub async fn stats(&self) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.stats()).await
    }

    /// Deletes an execution with its checkpoints; returns how many were deleted.
    #[napi]
    pub async fn delete_execution(&self, execution_id: String) -> Result<f64> {
        let s = self.handle()?;
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
        let s = self.handle()?;
        // Checked here too, so a bad scope fails the same way before any trip to a daemon.
        Scope::parse(&scope).map_err(err)?;
        blocking(move || s.apply_policy(&tenant, &scope, &text, file.as_deref(), author.as_deref()))
            .await
    }

    /// Policy versions: of one scope, of a tenant, or (no tenant) of every tenant.
    #[napi]
    pub async fn policy_versions(
        &self,
        tenant: Option<String>,
        scope: Option<String>,
    ) -> Result<Value> {
        let s = self.handle()?;
        scope
            .as_deref()
            .map(Scope::parse)
            .transpose()
            .map_err(err)?;
        blocking(move || s.policy_versions(tenant.as_deref(), scope.as_deref())).await
    }

    /// The defaults in force for a step, the most specific scope winning.
    #[napi]
    pub async fn policy_defaults(
        &self,
        tenant: String,
        workflow: Option<String>,
        step: Option<String>,
    ) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.policy_defaults(&tenant, workflow.as_deref(), step.as_deref())).await
    }

    /// Records a failure and returns the handle that decides how to handle it.
    #[napi]
    pub async fn start_recovery(
        &self,
        failure: FailureInputJs,
    ) -> Result<crate::recovery::Recovery> {
        let s = self.handle()?;
        let kind = failure
            .kind
            .as_deref()
            .map(omium_core::policy::Trigger::parse)
            .transpose()
            .map_err(err)?;
        let retries = failure.retries.unwrap_or(0);
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
            step_retry: omium_core::recovery::step_retry(retries),
            rollbacks_so_far: failure.rollbacks_so_far.unwrap_or(0),
        };
        let r = blocking(move || s.drive_recovery(input, retries)).await?;
        Ok(crate::recovery::Recovery::new(r))
    }

    /// Checks a tool call against the policy's `tool_whitelist` (`tool_denied` when it is not
    /// allowed; outside a step the denial is recorded as a failure).
    #[napi]
    pub async fn check_tool(
        &self,
        execution_id: String,
        tenant: String,
        workflow: Option<String>,
        step: Option<String>,
        agent: String,
        tool: String,
    ) -> Result<()> {
        let s = self.handle()?;
        blocking(move || {
            s.check_tool(
                &execution_id,
                &tenant,
                workflow.as_deref(),
                step.as_deref(),
                &agent,
                &tool,
            )
        })
        .await
    }

    /// Failure records, of one execution or all.
    #[napi]
    pub async fn failures(&self, execution_id: Option<String>) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.failures(execution_id.as_deref())).await
    }

    /// Execution analytics for a query object (`omium.metrics()`).
    #[napi]
    pub async fn metrics(&self, query: Option<Value>) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.metrics(&query.unwrap_or(Value::Null))).await
    }

    /// Starts evaluating alert rules (YAML or JSON text) in a thread of this process.
    #[napi]
    pub fn start_alerts(&self, text: String, file: Option<String>) -> Result<AlertEvaluator> {
        let e = self
            .handle()?
            .start_alerts(&text, file.as_deref())
            .map_err(crate::convert::err)?;
        Ok(AlertEvaluator {
            inner: std::sync::Mutex::new(Some(e)),
        })
    }

    /// Evaluates alert rules once now; returns the transitions.
    #[napi]
    pub async fn evaluate_alerts(&self, text: String, file: Option<String>) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.evaluate_alerts(&text, file.as_deref())).await
    }

    /// The alerts pending or firing.
    #[napi]
    pub async fn alerts(&self) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.alerts()).await
    }

    /// Acknowledges the firing alerts of a rule; returns the transitions.
    #[napi]
    pub async fn acknowledge_alert(
        &self,
        rule: String,
        group: Option<std::collections::HashMap<String, String>>,
        by: Option<String>,
    ) -> Result<Value> {
        let s = self.handle()?;
        let group = group.unwrap_or_default().into_iter().collect();
        blocking(move || s.acknowledge_alert(&rule, &group, by.as_deref())).await
    }

    /// Recovery metrics (MTTR, recovery rate, ...), of one workflow or all.
    #[napi]
    pub async fn recovery_metrics(&self, workflow: Option<String>) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.recovery_metrics(workflow.as_deref())).await
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
        let s = self.handle()?;
        let state = state.map(|b| b.to_vec());
        blocking(move || {
            s.resume(&execution_id, state.as_deref(), by.as_deref())
                .map(|f| f.unwrap_or(Value::Null))
        })
        .await
    }

    /// Records the crash of the process that ran an execution (before recovering it).
    #[napi]
    pub async fn record_crash(&self, execution_id: String) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || s.record_crash(&execution_id)).await
    }

    // ---- traces ----

    /// Queues a finished span (never blocks: the store's writer thread stores it).
    #[napi]
    pub fn record_span(&self, span: crate::trace::SpanInput) -> Result<()> {
        let span = crate::trace::span(span)?;
        self.handle()?.record_span(span);
        Ok(())
    }

    /// Spans of an execution, after storing what is queued.
    #[napi]
    pub async fn spans(&self, execution_id: String) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || match &s {
            StoreHandle::Local(s) => {
                s.flush_spans()?;
                Ok(Value::Array(
                    s.spans(&execution_id)?
                        .iter()
                        .map(crate::trace::span_json)
                        .collect(),
                ))
            }
            StoreHandle::Remote(_) => s.spans(&execution_id).map(crate::trace::served_spans),
        })
        .await
    }

    /// Waits until every queued span is stored.
    #[napi]
    pub async fn flush_spans(&self) -> Result<()> {
        let s = self.handle()?;
        blocking(move || s.flush_spans()).await
    }

    /// Waits at most `timeoutMs` for the OTLP exporter to send what it has.
    #[napi]
    /// A handle on a daemon only hands its spans over (the daemon exports them itself).
    pub async fn flush_export(&self, timeout_ms: f64) -> Result<bool> {
        let s = self.handle()?;
        let timeout = Duration::from_secs_f64(timeout_ms.max(0.0) / 1000.0);
        blocking(move || match &s {
            StoreHandle::Local(s) => s.flush_export(timeout),
            StoreHandle::Remote(_) => s.flush_spans().map(|_| true),
        })
        .await
    }

    /// Starts exporting spans over OTLP/HTTP protobuf (`OTEL_EXPORTER_OTLP_*` apply), and the
    /// store's analytics to a metrics endpoint when one is given or named by the variables.
    #[napi]
    pub fn enable_otlp_export(
        &self,
        endpoint: Option<String>,
        service_name: Option<String>,
        metrics_endpoint: Option<String>,
        metrics_interval_ms: Option<u32>,
    ) -> Result<()> {
        let config = omium_core::trace::ExportConfig {
            endpoint,
            service_name,
            metrics_endpoint,
            metrics_interval: metrics_interval_ms.map(|ms| Duration::from_millis(ms.into())),
            ..omium_core::trace::ExportConfig::default()
        };
        self.local("enableOtlpExport")?
            .enable_otlp_export(config)
            .map_err(err)
    }

    /// The terminal waterfall of an execution's trace.
    #[napi]
    pub async fn trace_text(&self, execution_id: String, width: Option<u32>) -> Result<String> {
        let s = self.local("traceText")?;
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
        let s = self.local("traceHtml")?;
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
        let s = self.local("diffExecutions")?;
        blocking(move || {
            let rows = s.diff_executions(&a, &b)?;
            Ok(convert::camel(omium_core::json::step_diffs(&rows)))
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
        let store = self.local("runWorkflow (a workflow spec)")?;
        let run = crate::workflow::prepare(spec, inputs, agents, dispatch, options)?;
        env.spawn_future(async move { blocking(move || run.execute(&store)).await })
    }

    /// Framework checkpoints (threads) of this store, for the LangGraph.js checkpointer.
    #[napi]
    pub fn threads(&self, durability: Option<String>) -> Result<crate::threads::Threads> {
        let mut t = self
            .local("threads (the LangGraph.js checkpointer)")?
            .threads();
        if let Some(d) = self::durability(durability.as_deref())? {
            t = t.with_durability(d);
        }
        Ok(crate::threads::Threads::new(t))
    }
}

/// A thread of this process evaluating alert rules (`omium.startAlerts`).
#[napi]
pub struct AlertEvaluator {
    inner: std::sync::Mutex<Option<omium_core::alerts::Evaluator>>,
}

#[napi]
impl AlertEvaluator {
    /// Stops evaluating (after the evaluation under way); idempotent.
    #[napi]
    pub async fn stop(&self) -> Result<()> {
        let e = self.inner.lock().ok().and_then(|mut g| g.take());
        if let Some(e) = e {
            blocking(move || {
                e.stop();
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Whether it still evaluates.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.inner.lock().is_ok_and(|g| g.is_some())
    }

    /// The last evaluation's error, if it failed.
    #[napi(getter)]
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.as_ref().and_then(|e| e.last_error()))
    }
}
