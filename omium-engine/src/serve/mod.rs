//! `omium serve`: one daemon owns a store and serves its API to the worker processes of one
//! machine (a RocksDB directory has one writer; the daemon is that writer).
//!
//! The API is a set of named methods, each `POST /v1/<method>` with a JSON object of arguments,
//! answering a JSON value (`docs/openapi.yaml` describes every one). Errors answer with an HTTP
//! status and `{"code", "message"}`, the codes of [`Error::code`]. Bytes (states, inputs,
//! outputs) travel base64-encoded. A run of an execution is a session on the daemon
//! (`begin` → `run.*` → `run.close`): the daemon's store holds the execution's lease, so two
//! workers cannot run one execution at once; a session whose worker process died (same host:
//! its pid is gone) or went silent past its lease is dropped, which leaves the execution
//! resumable, as a crash of an embedded process does.
//!
//! - [`server`]: the daemon ([`Daemon`], [`ServeConfig`]): a unix socket and HTTP on
//!   loopback (API keys required for any other address);
//! - [`client`]: the blocking client ([`Client`], [`RemoteRun`], [`RemoteRecovery`]);
//! - [`handle`]: what the bindings hold — one API over an embedded store or a daemon
//!   ([`StoreHandle`], [`RunHandle`], [`RecoveryHandle`]).

pub mod client;
pub mod handle;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

pub use client::{Client, RemoteRecovery, RemoteRun};
pub use handle::{RecoveryHandle, RunHandle, StoreHandle, TracedStep};

use crate::error::{Error, Result};
use crate::policy::Scope;
use crate::prelude::*;
use crate::{CheckResult, CheckpointKind, Checks, ForkOptions, RollbackTarget, Store};

/// The OpenAPI document of the HTTP API (also served at `GET /openapi.yaml`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

/// How many records one page of `executions.page` or `audit` looks at, at most: a filter that
/// matches little answers with a short page and a cursor instead of reading the whole store.
pub const PAGE_BUDGET: usize = 20_000;

/// Protocol version in paths (`/v1/...`).
pub const VERSION: &str = "v1";

/// Bytes as the API carries them (standard base64).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(what: &'static str, text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Error::InvalidArgument {
            what,
            detail: format!("not base64: {e}"),
        })
}

/// The arguments of a method call, with errors that name the method and the argument.
pub struct Args<'a> {
    method: &'a str,
    map: serde_json::Map<String, Value>,
}

impl<'a> Args<'a> {
    pub fn new(method: &'a str, v: Value) -> Result<Args<'a>> {
        match v {
            Value::Object(map) => Ok(Args { method, map }),
            Value::Null => Ok(Args {
                method,
                map: Default::default(),
            }),
            other => Err(Error::InvalidArgument {
                what: "request body",
                detail: format!("{method}: expected a JSON object of arguments, not {other}"),
            }),
        }
    }

    fn bad(&self, name: &str, expected: &str, got: &Value) -> Error {
        Error::InvalidArgument {
            what: "argument",
            detail: format!(
                "{}: argument {name:?} must be {expected}, not {got}",
                self.method
            ),
        }
    }

    pub fn opt<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|_| self.bad(name, expected, v)),
        }
    }

    pub fn req<T: for<'de> Deserialize<'de>>(&self, name: &str, expected: &str) -> Result<T> {
        self.opt(name, expected)?
            .ok_or_else(|| Error::InvalidArgument {
                what: "argument",
                detail: format!("{}: argument {name:?} ({expected}) is missing", self.method),
            })
    }

    pub fn str(&self, name: &str) -> Result<String> {
        self.req(name, "a string")
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<String>> {
        self.opt(name, "a string")
    }

    pub fn opt_bytes(&self, name: &'static str) -> Result<Option<Vec<u8>>> {
        self.opt_str(name)?.map(|t| unb64(name, &t)).transpose()
    }
}

/// Checks as the bindings give them: `[[expression, passed], ...]`.
pub fn checks(list: Vec<(String, bool)>) -> Vec<CheckResult> {
    list.into_iter()
        .map(|(expression, passed)| CheckResult { expression, passed })
        .collect()
}

pub fn kind(s: &str) -> Result<CheckpointKind> {
    match s {
        "step" => Ok(CheckpointKind::Step),
        "snapshot" => Ok(CheckpointKind::Snapshot),
        other => Err(Error::InvalidArgument {
            what: "checkpoint kind",
            detail: format!("{other:?}; expected \"step\" or \"snapshot\""),
        }),
    }
}

pub fn to_value<T: serde::Serialize + ?Sized>(v: &T) -> Value {
    serde_json::to_value(v).expect("records serialize")
}

/// An execution or checkpoint answer: the record view (`crate::json`, the JSON C, Node, Python,
/// the CLI's `--json` and the dashboard read) — or, when the caller asks for `"form": "record"`
/// (the daemon's own Rust client, which rebuilds the core's structs), the record's exact serde
/// form.
fn record_or_view<T: serde::Serialize + ?Sized>(
    a: &Args<'_>,
    record: &T,
    view: impl FnOnce(&T) -> Value,
) -> Result<Value> {
    Ok(match a.opt_str("form")?.as_deref() {
        None | Some("view") => view(record),
        Some("record") => to_value(record),
        Some(other) => {
            return Err(Error::InvalidArgument {
                what: "argument",
                detail: format!(
                "{}: argument \"form\" is {other:?}; expected \"view\" (the default) or \"record\"",
                a.method
            ),
            })
        }
    })
}

/// The store-level methods (runs are the server's sessions). Executions and checkpoints are
/// answered as their record views ([`record_or_view`]); other answers are the records' serde
/// form, which is also how every binding shows them.
pub fn call(store: &Store, method: &str, args: Args<'_>) -> Result<Value> {
    use crate::json::{checkpoint as cp_view, checkpoints as cps_view};
    use crate::json::{execution as exec_view, executions as execs_view};
    let a = &args;
    Ok(match method {
        "execution" => record_or_view(a, &store.execution(&a.str("execution_id")?)?, exec_view)?,
        "executions" => record_or_view(a, store.executions()?.as_slice(), execs_view)?,
        "resumable" => record_or_view(a, store.resumable()?.as_slice(), execs_view)?,
        "execution_input" => {
            json!({"data": store.execution_input(&a.str("execution_id")?)?.map(|b| b64(&b))})
        }
        "execution_output" => {
            json!({"data": store.execution_output(&a.str("execution_id")?)?.map(|b| b64(&b))})
        }
        "history" => record_or_view(
            a,
            store.history(&a.str("execution_id")?)?.as_slice(),
            cps_view,
        )?,
        "checkpoints" => record_or_view(
            a,
            store.checkpoints(&a.str("execution_id")?)?.as_slice(),
            cps_view,
        )?,
        "branch" => record_or_view(
            a,
            store.branch(&a.str("checkpoint_id")?)?.as_slice(),
            cps_view,
        )?,
        "checkpoint" => record_or_view(a, &store.checkpoint(&a.str("checkpoint_id")?)?, cp_view)?,
        "read_state" => {
            let c = store.checkpoint(&a.str("checkpoint_id")?)?;
            let bytes = store.read_state(&c)?;
            let mut answer = json!({"data": b64(&bytes)});
            if a.opt::<bool>("view", "a boolean")?.unwrap_or(false) {
                // The state as JSON, decoded with the codec it was written with (null when
                // that codec is an application's own).
                let codec = omium_storage::value::checkpoint_codec(&c);
                answer["view"] =
                    omium_storage::value::state_json(codec, &bytes, "state").unwrap_or(Value::Null);
                answer["codec"] = json!(codec);
            }
            answer
        }
        "rollback" => {
            let to = a.opt_str("to")?;
            let global_seq: Option<u64> = a.opt("global_seq", "an unsigned integer")?;
            let target = match (to, global_seq) {
                (Some(t), _) => RollbackTarget::parse(&t),
                (None, Some(g)) => RollbackTarget::GlobalSeq(g),
                (None, None) => RollbackTarget::LastConsistent,
            };
            let reason = a.opt_str("reason")?;
            let marker = store.rollback(&a.str("execution_id")?, &target, reason.as_deref())?;
            record_or_view(a, &marker, cp_view)?
        }
        "fork" => {
            let options = ForkOptions {
                new_execution_id: a.opt_str("new_execution_id")?,
                state: a.opt_bytes("state")?,
            };
            let at = RollbackTarget::parse(&a.str("at")?);
            record_or_view(
                a,
                &store.fork(&a.str("execution_id")?, &at, options)?,
                exec_view,
            )?
        }
        "verify" => {
            let expect: Option<crate::AuditHead> =
                a.opt_str("expect_head")?.map(|h| h.parse()).transpose()?;
            crate::json::verify_report(
                &store.verify_expecting(a.opt_str("execution_id")?.as_deref(), expect.as_ref())?,
            )
        }
        "audit_head" => to_value(&store.audit_head()?),
        "delete_execution" => json!({"deleted": store.delete_execution(&a.str("execution_id")?)?}),
        "stats" => to_value(&store.stats()?),
        "failures" => to_value(&store.failures(a.opt_str("execution_id")?.as_deref())?),
        "recovery_metrics" => to_value(&store.recovery_metrics(a.opt_str("workflow")?.as_deref())?),
        "metrics" => {
            use crate::analytics::{AnalyticsStore, MetricsQuery};
            to_value(&store.metrics(&MetricsQuery::from_json(&Value::Object(a.map.clone()))?)?)
        }
        "resume" => {
            let state = match a.opt::<Value>("state_json", "a JSON value")? {
                // An edited state, encoded as the execution's codec writes it.
                Some(v) => {
                    let e = store.execution(&a.str("execution_id")?)?;
                    let text = serde_json::to_vec(&v).expect("values serialize");
                    let codec = omium_storage::value::execution_codec(&e);
                    Some(omium_storage::value::encode_state(
                        codec,
                        &text,
                        "state_json",
                    )?)
                }
                None => a.opt_bytes("state")?,
            };
            let id = a.str("execution_id")?;
            let by = a.opt_str("by")?.or_else(omium_storage::audit::acting);
            if store.is_read_only() {
                // Beside an application that holds the store: its writer resumes it.
                let mut request =
                    crate::control::Request::new(crate::control::Action::Resume, &id, None, by);
                request.state = state;
                store.request_control(&request)?;
                store.refresh()?;
                let resumed = store
                    .failures(Some(&id))?
                    .into_iter()
                    .rev()
                    .find(|f| f.outcome == crate::recovery::Outcome::Resumed);
                return Ok(to_value(&resumed));
            }
            to_value(&store.resume(&id, state.as_deref(), by.as_deref())?)
        }
        "record_crash" => to_value(&store.record_crash(&a.str("execution_id")?)?),
        "apply_policy" => {
            let scope = Scope::parse(&a.str("scope")?)?;
            let (file, author) = (a.opt_str("file")?, a.opt_str("author")?);
            to_value(&store.apply_policy(
                &a.str("tenant")?,
                &scope,
                &a.str("text")?,
                file.as_deref(),
                author.as_deref(),
            )?)
        }
        "policy_versions" => {
            let scope = a.opt_str("scope")?.map(|s| Scope::parse(&s)).transpose()?;
            match a.opt_str("tenant")? {
                Some(t) => to_value(&store.policy_versions(&t, scope.as_ref())?),
                None => to_value(&store.all_policy_versions()?),
            }
        }
        "policy_version" => {
            let scope = Scope::parse(&a.str("scope")?)?;
            let version: Option<u32> = a.opt("version", "an unsigned integer")?;
            to_value(&store.policy_version(&a.str("tenant")?, &scope, version)?)
        }
        "policy_defaults" => {
            let (workflow, step) = (a.opt_str("workflow")?, a.opt_str("step")?);
            crate::json::policy_defaults(&store.effective_policy(
                &a.str("tenant")?,
                workflow.as_deref(),
                step.as_deref(),
            )?)
        }
        "spans" => crate::json::spans(store, &a.str("execution_id")?)?,
        "agent_graph" => crate::json::agent_graph(store, &a.str("execution_id")?)?,
        "record_spans" => {
            let spans: Vec<crate::trace::Span> = a.req("spans", "a list of spans")?;
            let n = spans.len();
            for s in spans {
                store.record_span(s);
            }
            json!({"recorded": n})
        }
        "flush_spans" => {
            store.flush_spans()?;
            json!({})
        }
        "control" => {
            let mut request = crate::control::Request::new(
                crate::control::Action::parse(&a.str("action")?)?,
                &a.str("execution_id")?,
                a.opt_str("reason")?,
                // The caller the daemon authenticated, unless the call names someone.
                Some(a.opt_str("by")?.unwrap_or_else(|| {
                    omium_storage::audit::acting().unwrap_or_else(|| "omium serve client".into())
                })),
            );
            request.to = a.opt_str("to")?;
            // The writer applies it; a read-only handle (omium ui beside an application)
            // hands it to the writer's mailbox, then reads what the writer wrote.
            to_value(&crate::recovery::control(store, &request)?)
        }
        "executions.page" => {
            let limit: usize = a.opt("limit", "a whole number")?.unwrap_or(50);
            let (status, workflow, tenant) = (
                a.opt_str("status")?,
                a.opt_str("workflow")?,
                a.opt_str("tenant")?,
            );
            let status = status
                .map(|s| {
                    crate::Status::parse(&s).ok_or_else(|| Error::InvalidArgument {
                        what: "status",
                        detail: format!(
                            "{s:?}; expected pending, running, paused, completed, failed or \
                             cancelled"
                        ),
                    })
                })
                .transpose()?;
            let (page, next) = store.executions_page(
                a.opt_str("after")?.as_deref(),
                limit.clamp(1, 500),
                PAGE_BUDGET,
                |e| {
                    status.is_none_or(|s| e.status == s)
                        && workflow.as_ref().is_none_or(|w| &e.workflow == w)
                        && tenant.as_ref().is_none_or(|t| &e.tenant == t)
                },
            )?;
            json!({"executions": execs_view(&page), "next": next})
        }
        "audit" => {
            let limit: usize = a.opt("limit", "a whole number")?.unwrap_or(100);
            let before: Option<u64> = a.opt("before", "an audit seq (a whole number)")?;
            let (action, actor, resource) = (
                a.opt_str("action")?,
                a.opt_str("actor")?,
                a.opt_str("resource")?,
            );
            let (entries, next) =
                store.audit_page(before, limit.clamp(1, 1000), PAGE_BUDGET, |e| {
                    action
                        .as_ref()
                        .is_none_or(|p| e.action.starts_with(p.as_str()))
                        && actor.as_ref().is_none_or(|x| &e.actor == x)
                        && resource
                            .as_ref()
                            .is_none_or(|r| e.resource.contains(r.as_str()))
                })?;
            json!({"entries": entries, "next_before": next, "head": store.audit_head()?})
        }
        "report" => {
            let period = crate::report::Period::parse(&a.str("period")?)?;
            let r = crate::report::build(store, &period)?;
            let format = a.opt_str("format")?.unwrap_or_else(|| "json".into());
            let (content_type, data) = match format.as_str() {
                "json" => {
                    return Ok(serde_json::from_str(&crate::report::to_json(&r))
                        .expect("reports are JSON"))
                }
                "html" => (
                    "text/html; charset=utf-8",
                    crate::report::to_html(&r).into_bytes(),
                ),
                "csv" => (
                    "text/csv; charset=utf-8",
                    crate::report::to_csv(&r).into_bytes(),
                ),
                "pdf" => ("application/pdf", crate::report::to_pdf(&r)),
                other => {
                    return Err(Error::InvalidArgument {
                        what: "report format",
                        detail: format!("{other:?}; expected json, html, csv or pdf"),
                    })
                }
            };
            json!({
                "content_type": content_type,
                "filename": format!("omium-report-{}.{format}", period.label),
                "data": b64(&data),
            })
        }
        "policy.validate" => {
            let text = a.str("text")?;
            let errors = match crate::policy::parse(&text, None) {
                Ok(p) => match crate::policy::Compiled::new(&p) {
                    Ok(_) => vec![],
                    Err(e) => vec![json!({"line": null, "column": null, "message": e.to_string()})],
                },
                Err(p) => vec![json!({
                    "line": p.at.line, "column": p.at.column, "path": p.path,
                    "message": p.to_string(),
                })],
            };
            json!({"valid": errors.is_empty(), "errors": errors})
        }
        "events" => {
            let since: u64 = a.opt("since", "a seq (a whole number)")?.unwrap_or(0);
            let limit: usize = a.opt("limit", "a whole number")?.unwrap_or(1000);
            let wait_ms: u64 = a.opt("wait_ms", "milliseconds")?.unwrap_or(0);
            let filter = crate::events::EventFilter::new(
                a.opt("types", "a list of event types")?.unwrap_or_default(),
                a.opt_str("execution_id")?,
            )?;
            // Bounded, so that a long poll cannot hold a worker thread for long.
            let limit = limit.clamp(1, 10_000);
            let wait = std::time::Duration::from_millis(wait_ms.min(30_000));
            let page = store.follow_events(since, limit, &filter, wait)?;
            crate::events::page_json(store, &page)
        }
        "alerts" => json!({
            "state": crate::alerts::state(store)?,
            "rules": crate::alerts::running_rules(store).map(|r| crate::alerts::summary(&r)),
        }),
        "alerts.ack" => {
            let rules =
                crate::alerts::running_rules(store).ok_or_else(|| Error::InvalidArgument {
                    what: "alert",
                    detail:
                        "no alert rules are evaluated here; start omium serve with --alerts FILE"
                            .into(),
                })?;
            let group: BTreeMap<String, String> = a
                .opt("group", "an object of dimension names to values")?
                .unwrap_or_default();
            let by = a.opt_str("by")?.unwrap_or_else(|| "operator".into());
            to_value(&crate::alerts::acknowledge(
                store,
                &rules,
                &a.str("rule")?,
                &group,
                &by,
            )?)
        }
        other => {
            return Err(Error::InvalidArgument {
                what: "method",
                detail: format!(
                    "{other:?} is not a method of this server (omium {}); see GET /openapi.yaml",
                    env!("CARGO_PKG_VERSION")
                ),
            })
        }
    })
}

/// Metadata as the bindings give it.
pub type Metadata = BTreeMap<String, String>;

/// `Checks` from pre- and postcondition lists.
pub fn checks_of(pre: Vec<(String, bool)>, post: Vec<(String, bool)>) -> Checks {
    Checks {
        preconditions: checks(pre),
        postconditions: checks(post),
    }
}
