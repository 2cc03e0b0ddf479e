//! The daemon: a store, its run sessions, and the HTTP API on a unix socket and on TCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::authz::{self, Authz, Caller, Target, Verdict};
use crate::browser::{closing, guard, Hosts};
use crate::error::{Error, Result};
use crate::execution::{hostname, pid_alive};
use crate::listen::{refused, Listener, Peer};
use crate::store::now_ms;
use crate::{BeginOptions, Durability, NewCheckpoint, Run, Store};
use omium_engine::keys;
use omium_engine::prelude::*;
use omium_engine::recovery::{FailureInput, Recovery};
use omium_engine::serve::{b64, checks_of, kind, Args, Metadata, OPENAPI};

/// Where and how the daemon listens.
#[derive(Clone, Debug, Default)]
pub struct ServeConfig {
    /// A unix socket path (created; an existing stale socket file is replaced).
    pub socket: Option<PathBuf>,
    /// A TCP address (`127.0.0.1:7700`). Any address that is not loopback needs API keys.
    pub http: Option<String>,
    /// Keys from the environment or a key file, accepted as `Authorization: Bearer <key>` with
    /// the admin role over every tenant (to bootstrap; `omium keys create` issues keys with a
    /// tenant and roles, kept hashed in the store). The unix socket trusts its peers (its file
    /// permissions chose them) unless they send a key.
    pub api_keys: Vec<String>,
    /// TLS on the TCP listener: a PEM certificate chain and its private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Cedar policies added to the built-in ones (docs/security.md).
    pub authorization: Option<PathBuf>,
    /// Connection caps and timeouts of every listener.
    pub limits: crate::listen::Limits,
    /// Requests per second a caller may send (a token bucket holding two seconds' worth);
    /// 0 for no limit.
    pub rate_limit: f64,
    /// The largest request body, in bytes (64 MiB when not given).
    pub body_limit: Option<usize>,
    /// Host names (`name` or `name:port`) that TCP requests may name in `Host`, besides IP
    /// addresses and, on loopback, `localhost`. Anything else is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// A group (name or number) that may use the unix socket too: the socket is then 0660 and
    /// owned by that group, else 0600.
    pub socket_group: Option<String>,
    /// Serve the web dashboard (`omium ui`) on the TCP listener, and take a read-only store
    /// (a secondary beside an application that writes it).
    pub ui: bool,
    /// Nodes of a Raft cluster (`omium node`) whose membership, leader, term and lag the
    /// `cluster` method reports (TLS from `OMIUM_CLUSTER_*`, as every cluster client).
    pub cluster: Vec<String>,
}

/// One run of an execution held for a worker.
struct Session {
    run: Run,
    /// States arriving in pieces (`run.upload`) until `run.record` names them.
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    pid: u32,
    host: String,
    ttl_ms: u64,
    last_seen_ms: AtomicU64,
}

impl Session {
    /// The worker is gone: its process died (same host), or it was silent past its lease.
    fn abandoned(&self, now: u64) -> bool {
        if self.host == hostname() && self.pid != 0 {
            return !pid_alive(self.pid);
        }
        now.saturating_sub(self.last_seen_ms.load(Ordering::Relaxed)) > self.ttl_ms
    }
}

/// The handling of one failure, driven by a worker (its recovery loop runs there).
struct Handling {
    execution_id: String,
    recovery: Mutex<Recovery>,
    last_seen_ms: AtomicU64,
}

/// What one run's unfinished uploads may hold at once.
const MAX_UPLOADS: u64 = 4 << 30;

/// A recovery nobody asked about for this long is dropped (its worker is gone; the failure is
/// recorded already).
const RECOVERY_IDLE_MS: u64 = 10 * 60 * 1000;

struct App {
    store: Store,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    recoveries: Mutex<HashMap<String, Arc<Handling>>>,
    authz: Authz,
    static_keys: Vec<String>,
    /// Whether TCP is bound to loopback only: without any key, loopback callers are trusted.
    loopback: bool,
    rate: f64,
    /// Token buckets per caller, and per address for failed authentications.
    buckets: Mutex<HashMap<String, Bucket>>,
    /// When a read-only store last caught up with its writer.
    refreshed: Mutex<Option<std::time::Instant>>,
    /// Inputs arriving in pieces (`upload`) before the `begin` that names them, by upload id.
    uploads: Mutex<HashMap<String, Upload>>,
    /// The cluster `cluster` reports on.
    cluster: Vec<String>,
}

/// An input uploaded in pieces, held for the caller that sent it.
struct Upload {
    owner: String,
    data: Vec<u8>,
    last_ms: u64,
}

/// How stale a read-only store (the dashboard beside an application) may be.
const REFRESH: Duration = Duration::from_millis(50);
/// Synced executions the `cluster` answer lists at most (newest first; `synced_total` counts all).
const SYNCED_SHOWN: usize = 200;

/// A token bucket: `rate` tokens a second, holding at most two seconds' worth.
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// How many bad keys an address may send a second before it only gets 429s (and the audit log
/// stops recording them).
const BAD_KEY_RATE: f64 = 5.0;

impl App {
    fn session(&self, id: &str) -> Result<Arc<Session>> {
        let s = self
            .sessions
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::InvalidState {
                execution: String::new(),
                status: "closed".into(),
                detail: format!(
                    "run {id} is not open on this daemon (closed, or dropped because its worker \
                 went away); begin the execution again to resume it"
                ),
            })?;
        s.last_seen_ms.store(now_ms(), Ordering::Relaxed);
        Ok(s)
    }

    /// Drops the sessions of workers that are gone (all, or those of one execution); their
    /// executions become resumable. Called before every answer that depends on it, and by a
    /// background tick that only cleans up.
    fn reap(&self, execution_id: Option<&str>) -> usize {
        let now = now_ms();
        let mut sessions = self.sessions.lock();
        let before = sessions.len();
        sessions.retain(|_, s| {
            !(execution_id.is_none_or(|e| s.run.execution_id() == e) && s.abandoned(now))
        });
        self.recoveries.lock().retain(|_, h| {
            now.saturating_sub(h.last_seen_ms.load(Ordering::Relaxed)) < RECOVERY_IDLE_MS
        });
        // An upload nobody named for as long belongs to a worker that is gone.
        self.uploads
            .lock()
            .retain(|_, u| now.saturating_sub(u.last_ms) < RECOVERY_IDLE_MS);
        before - sessions.len()
    }

    fn start_recovery(&self, a: &Args<'_>) -> Result<Value> {
        let kind = a
            .opt_str("kind")?
            .map(|k| crate::policy::Trigger::parse(&k))
            .transpose()?;
        let execution_id = a.str("execution_id")?;
        let input = FailureInput {
            execution_id: execution_id.clone(),
            workflow: a.opt_str("workflow")?.unwrap_or_default(),
            tenant: a.opt_str("tenant")?.unwrap_or_else(|| "default".into()),
            step: a.opt_str("step")?,
            seq: a.opt("seq", "an unsigned integer")?,
            key: a.opt_str("key")?,
            agent: a.opt_str("agent")?.unwrap_or_default(),
            kind,
            error_classes: a
                .opt("error_classes", "a list of strings")?
                .unwrap_or_default(),
            message: a.opt_str("message")?.unwrap_or_default(),
            step_retry: crate::recovery::step_retry(
                a.opt("retries", "an unsigned integer")?.unwrap_or(0),
            ),
            rollbacks_so_far: a
                .opt("rollbacks_so_far", "an unsigned integer")?
                .unwrap_or(0),
        };
        let workflow = Some(input.workflow.as_str()).filter(|w| !w.is_empty());
        let effective =
            self.store
                .effective_policy(&input.tenant, workflow, input.step.as_deref())?;
        let recovery = self.store.start_recovery(input, effective)?;
        let record = serde_json::to_value(recovery.record()).expect("records serialize");
        let id = ulid::Ulid::new().to_string();
        self.recoveries.lock().insert(
            id.clone(),
            Arc::new(Handling {
                execution_id,
                recovery: Mutex::new(recovery),
                last_seen_ms: AtomicU64::new(now_ms()),
            }),
        );
        Ok(json!({"recovery": id, "record": record}))
    }

    fn recovery_call(&self, method: &str, a: &Args<'_>) -> Result<Value> {
        let id = a.str("recovery")?;
        if method == "recovery.close" {
            self.recoveries.lock().remove(&id);
            return Ok(json!({}));
        }
        let h = self
            .recoveries
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::InvalidState {
                execution: String::new(),
                status: "closed".into(),
                detail: format!("recovery {id} is not open on this daemon"),
            })?;
        h.last_seen_ms.store(now_ms(), Ordering::Relaxed);
        let mut r = h.recovery.lock();
        let done = |res: Result<()>| res.map(|_| json!({}));
        match method {
            "recovery.next_directive" => {
                let d = r.next_directive()?;
                Ok(json!({"name": d.name(), "params": d.params()}))
            }
            "recovery.done" => {
                let note = a.opt_str("note")?;
                done(r.done(a.req("ok", "a boolean")?, note.as_deref()))
            }
            "recovery.set_analysis" => {
                done(r.set_analysis(a.opt_str("root_cause")?, a.opt_str("suggested_fix")?))
            }
            "recovery.recovered" => done(r.recovered()),
            "recovery.failed" => done(r.failed()),
            "recovery.escalated" => done(r.escalated()),
            "recovery.paused" => done(r.paused()),
            "recovery.rolled_back" => done(r.rolled_back()),
            "recovery.send_webhooks" => {
                let channels: Vec<String> = a.req("channels", "a list of channel names")?;
                let sent = r.notify(&channels, &a.str("event")?);
                Ok(json!(sent
                    .into_iter()
                    .map(|(c, res)| json!([c, res.err()]))
                    .collect::<Vec<_>>()))
            }
            "recovery.payload" => Ok(r.payload(&a.str("event")?)),
            "recovery.record" => Ok(serde_json::to_value(r.record()).expect("records serialize")),
            other => Err(Error::InvalidArgument {
                what: "method",
                detail: format!("{other:?} is not a method of a recovery"),
            }),
        }
    }

    /// Begins a run for a worker. Its liveness rests on what the kernel says about the
    /// connection (the unix socket's peer process), never on a pid the client claims; over TCP,
    /// on its lease: calls and heartbeats within the lease keep it.
    fn begin(&self, a: &Args<'_>, input: Option<Vec<u8>>, peer: Peer) -> Result<Value> {
        let execution_id = a.str("execution_id")?;
        let lease_ttl: f64 = a.opt("lease_ttl", "seconds > 0")?.unwrap_or(30.0);
        if !(lease_ttl.is_finite() && lease_ttl > 0.0) {
            return Err(Error::InvalidArgument {
                what: "lease_ttl",
                detail: format!("{lease_ttl}; expected a positive number of seconds"),
            });
        }
        let options = BeginOptions {
            workflow: a.opt_str("workflow")?.unwrap_or_default(),
            tenant: a.opt_str("tenant")?.unwrap_or_else(|| "default".into()),
            input,
            labels: a
                .opt::<Metadata>("labels", "an object of strings")?
                .unwrap_or_default(),
            agent: a.opt_str("agent")?.unwrap_or_else(|| "main".into()),
            lease_ttl: Duration::from_secs_f64(lease_ttl),
            durability: a
                .opt_str("durability")?
                .map(|d| Durability::parse(&d))
                .transpose()?,
            resume_paused: false,
        };
        // The holder may be a worker that just died: its session goes before the lease is
        // checked.
        self.reap(Some(&execution_id));
        let run = self.store.begin(&execution_id, options)?;
        let execution = run.execution();
        let id = ulid::Ulid::new().to_string();
        let session = Session {
            run,
            uploads: Mutex::new(HashMap::new()),
            pid: peer.pid.unwrap_or(0),
            host: if peer.pid.is_some() {
                hostname()
            } else {
                String::new()
            },
            ttl_ms: (lease_ttl * 1000.0) as u64,
            last_seen_ms: AtomicU64::new(now_ms()),
        };
        self.sessions.lock().insert(id.clone(), Arc::new(session));
        Ok(json!({"run": id, "execution": execution}))
    }

    fn run_call(&self, method: &str, a: &Args<'_>) -> Result<Value> {
        let id = a.str("run")?;
        if method == "run.close" {
            self.sessions.lock().remove(&id);
            return Ok(json!({}));
        }
        let s = self.session(&id)?;
        let r = &s.run;
        let done = |res: Result<()>| res.map(|_| json!({}));
        match method {
            "run.reserve" => Ok(json!({"seq": r.reserve()})),
            "run.recorded" => {
                let seq: u64 = a.req("seq", "an unsigned integer")?;
                let key = a.opt_str("key")?;
                match r.recorded(seq, &a.str("name")?, key.as_deref())? {
                    Some(c) => {
                        let state = self.store.read_state(&c)?;
                        Ok(json!({"checkpoint": c, "state": b64(&state)}))
                    }
                    None => Ok(json!({"checkpoint": null})),
                }
            }
            "run.upload" => {
                let data = a.opt_bytes("data")?.unwrap_or_default();
                let mut uploads = s.uploads.lock();
                let held: usize = uploads.values().map(Vec::len).sum();
                let id = open_upload(
                    a.opt_str("upload")?,
                    held + data.len(),
                    |id| uploads.contains_key(id),
                    r.execution_id(),
                )?;
                let buf = uploads.entry(id.clone()).or_default();
                buf.extend_from_slice(&data);
                Ok(json!({"upload": id, "size": buf.len()}))
            }
            "run.record" => {
                let seq: u64 = a.req("seq", "an unsigned integer")?;
                let name = a.str("name")?;
                let state = uploaded(a, "state", r.execution_id(), |id| {
                    s.uploads.lock().remove(id)
                })?
                .unwrap_or_default();
                let (key, agent) = (a.opt_str("key")?, a.opt_str("agent")?);
                let kind = kind(&a.opt_str("kind")?.unwrap_or_else(|| "step".into()))?;
                let list = "a list of [expression, passed] pairs";
                let pre = a.opt("preconditions", list)?.unwrap_or_default();
                let post = a.opt("postconditions", list)?.unwrap_or_default();
                let c = r.record(
                    seq,
                    NewCheckpoint {
                        name: &name,
                        agent: agent.as_deref(),
                        kind,
                        key: key.as_deref(),
                        state: &state,
                        checks: checks_of(pre, post),
                        metadata: a
                            .opt::<Metadata>("metadata", "an object of strings")?
                            .unwrap_or_default(),
                    },
                )?;
                Ok(json!({"id": c.id.to_string()}))
            }
            "run.complete" => {
                let output = uploaded(a, "output", r.execution_id(), |id| {
                    s.uploads.lock().remove(id)
                })?;
                done(r.complete(output.as_deref()))
            }
            "run.fail" => done(r.fail(&a.str("error")?)),
            "run.pause" => done(r.pause(&a.str("reason")?)),
            "run.heartbeat" => done(r.heartbeat()),
            "run.check_control" => done(r.check_control(&a.str("step")?)),
            "run.execution" => Ok(json!(r.execution())),
            other => Err(Error::InvalidArgument {
                what: "method",
                detail: format!("{other:?} is not a method of a run"),
            }),
        }
    }

    /// Who calls: the key it sent (one of the static keys, or one issued into the store), or,
    /// without a key, a unix socket peer or a loopback caller while no key exists. `Err` is the
    /// answer to send instead.
    fn identify(
        &self,
        bearer: Option<&str>,
        peer: Peer,
    ) -> std::result::Result<Caller, Box<Response>> {
        let unauthorized =
            |message: String| Box::new(refused(StatusCode::UNAUTHORIZED, "unauthorized", message));
        if let Some(token) = bearer {
            if let Some(n) = self
                .static_keys
                .iter()
                .position(|k| keys::constant_time_eq(k.as_bytes(), token.as_bytes()))
            {
                let mut c = Caller::trusted(format!("key:static-{}", n + 1));
                c.id = format!("static-{}", n + 1);
                return Ok(c);
            }
            return match keys::authenticate(&self.store, token) {
                Ok(Some(k)) => Ok(Caller::of_key(&k)),
                Ok(None) => {
                    let who = peer
                        .addr
                        .map(|a| a.ip().to_string())
                        .unwrap_or("unix".into());
                    if self
                        .take_token(&format!("bad-key/{who}"), BAD_KEY_RATE)
                        .is_err()
                    {
                        return Err(Box::new(too_many(1)));
                    }
                    self.audit(
                        "api.unauthenticated",
                        "api",
                        json!({"from": who, "reason": "unknown or revoked key"}),
                    );
                    Err(unauthorized(
                        "the API key is not one of this daemon's, or it was revoked; `omium keys list` shows the keys"
                            .into(),
                    ))
                }
                Err(e) => Err(Box::new(error_response(&e))),
            };
        }
        if peer.addr.is_none() {
            return Ok(Caller::trusted(format!(
                "unix:{}",
                peer.uid
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "?".into())
            )));
        }
        let open = self.loopback
            && self.static_keys.is_empty()
            && !keys::any_active(&self.store).unwrap_or(true);
        if open {
            return Ok(Caller::trusted("loopback".into()));
        }
        Err(unauthorized(
            "this omium serve needs an API key: send `Authorization: Bearer <key>` (omium.init(url=..., api_key=...), or $OMIUM_API_KEY)"
                .into(),
        ))
    }

    /// Takes one token of `bucket`'s rate, or says after how many seconds one is there.
    fn take_token(&self, bucket: &str, rate: f64) -> std::result::Result<(), u64> {
        if rate <= 0.0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() > 100_000 {
            // Buckets idle long enough to be full again are the same as none.
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() * rate < 2.0 * rate);
        }
        let b = buckets.entry(bucket.to_string()).or_insert(Bucket {
            tokens: 2.0 * rate,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(2.0 * rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// Writes an audit entry of the daemon's own (a refusal); a failure to write it is not the
    /// caller's problem.
    fn audit(&self, action: &'static str, resource: &str, detail: Value) {
        let draft = omium_storage::audit::AuditDraft::new(action, resource, detail.to_string());
        let _ = self
            .store
            .commit(rocksdb::WriteBatch::default(), vec![draft], None);
    }

    /// The execution an id names, as an authorization target; an unknown one is the caller's
    /// own tenant (the call then answers "not found").
    fn execution_target(&self, caller: &Caller, id: &str) -> Result<Target> {
        match self.store.execution(id) {
            Ok(e) => Ok(Target::Execution {
                id: id.to_string(),
                tenant: e.tenant,
                workflow: e.workflow,
                labels: e.labels,
            }),
            Err(Error::ExecutionNotFound { .. }) => Ok(Target::Tenant(caller.tenant.clone())),
            Err(e) => Err(e),
        }
    }

    /// What a call touches.
    fn target(&self, caller: &Caller, method: &str, body: &Value) -> Result<Target> {
        let arg = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let own = || {
            if caller.all_tenants() {
                Target::Store
            } else {
                Target::Tenant(caller.tenant.clone())
            }
        };
        if method.starts_with("run.") {
            let run = arg("run").and_then(|id| self.sessions.lock().get(&id).cloned());
            return match run {
                Some(s) => self.execution_target(caller, s.run.execution_id()),
                None => Ok(own()),
            };
        }
        if method.starts_with("recovery.") {
            let h = arg("recovery").and_then(|id| self.recoveries.lock().get(&id).cloned());
            return match h {
                Some(h) => self.execution_target(caller, &h.execution_id),
                None => Ok(own()),
            };
        }
        if let Some(id) = arg("checkpoint_id") {
            return match self.store.checkpoint(&id) {
                Ok(c) => self.execution_target(caller, &c.execution_id),
                Err(_) => Ok(own()),
            };
        }
        match method {
            // An execution that exists is itself the target; a new one, its tenant.
            "begin" => {
                match self.execution_target(caller, &arg("execution_id").unwrap_or_default())? {
                    Target::Tenant(_) => Ok(Target::Tenant(
                        arg("tenant").unwrap_or_else(|| "default".into()),
                    )),
                    existing => Ok(existing),
                }
            }
            "apply_policy" | "policy_version" | "policy_defaults" | "policy_versions" => {
                Ok(arg("tenant").map(Target::Tenant).unwrap_or(Target::Store))
            }
            "executions" | "resumable" | "metrics" | "record_spans" | "flush_spans"
            | "executions.page" => Ok(own()),
            "status" | "whoami" | "policy.validate" | "cluster" | "upload" => Ok(own()),
            "audit" | "report" => Ok(Target::Store),
            "stats" | "audit_head" | "recovery_metrics" | "alerts" | "alerts.ack"
            | "prometheus" => Ok(Target::Store),
            m if m.starts_with("keys.") => Ok(Target::Store),
            _ => match arg("execution_id") {
                Some(id) => self.execution_target(caller, &id),
                None if matches!(method, "failures" | "events") => Ok(own()),
                None => Ok(Target::Store),
            },
        }
    }

    /// Authorizes a call, refusing it with an audit entry when the policies do not allow it.
    fn authorize(&self, caller: &Caller, method: &str, body: &Value) -> Result<()> {
        let target = self.target(caller, method, body)?;
        let action = match (method, body.get("action").and_then(Value::as_str)) {
            ("control", Some("delete")) => "control.delete",
            _ => authz::action_of(method),
        };
        if !authz::METHODS.iter().any(|(m, _)| *m == action) {
            return Err(Error::InvalidArgument {
                what: "method",
                detail: format!(
                    "{method:?} is not a method of this server (omium {}); see GET /openapi.yaml",
                    env!("CARGO_PKG_VERSION")
                ),
            });
        }
        let (hidden, why) = match self.authz.check(caller, action, &target) {
            Verdict::Allow => return Ok(()),
            Verdict::Hidden => (true, "another tenant's".to_string()),
            Verdict::Denied(why) => (false, why),
        };
        self.audit(
            "api.deny",
            &target.resource(),
            json!({"method": method, "caller": caller.actor, "tenant": caller.tenant, "reason": why}),
        );
        if hidden {
            // Exactly what an unknown id answers.
            let id = ["execution_id", "checkpoint_id", "run", "recovery"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str))
                .unwrap_or_default()
                .to_string();
            return Err(if body.get("checkpoint_id").is_some() {
                Error::CheckpointNotFound { id }
            } else {
                Error::ExecutionNotFound { id }
            });
        }
        Err(Error::Forbidden { detail: why })
    }

    /// A call from `caller`: authorized, made on its behalf (the audit log names it), its
    /// answer cut to the caller's tenant.
    fn handle(&self, caller: &Caller, method: &str, mut body: Value, peer: Peer) -> Result<Value> {
        if !caller.all_tenants() {
            if let Value::Object(m) = &mut body {
                // The key's tenant is the caller's default: a binding that sends no tenant,
                // or the default one, acts in the key's.
                let tenant_arg = matches!(
                    method,
                    "begin"
                        | "start_recovery"
                        | "apply_policy"
                        | "policy_version"
                        | "policy_defaults"
                );
                if tenant_arg
                    && m.get("tenant")
                        .is_none_or(|t| t.is_null() || t.as_str() == Some("default"))
                {
                    m.insert("tenant".into(), json!(caller.tenant));
                }
                if matches!(method, "metrics" | "executions.page") {
                    // A tenant's key sees its tenant's figures only.
                    m.insert("tenant".into(), json!(caller.tenant));
                }
            }
            if method == "record_spans" {
                self.spans_of_tenant(caller, &body)?;
            }
        }
        self.authorize(caller, method, &body)?;
        if self.store.is_read_only() {
            // The dashboard beside an application: see what the writer wrote up to now (at most
            // every REFRESH: catching up reads the writer's log, a few milliseconds; a control
            // this process asked for catches up at once when it is answered).
            let mut last = self.refreshed.lock();
            if last.is_none_or(|t| t.elapsed() >= REFRESH) {
                self.store.refresh()?;
                *last = Some(std::time::Instant::now());
            }
        }
        let answer = omium_storage::audit::acting_as(&caller.actor, || match method {
            m if m.starts_with("keys.") => self.keys_call(caller, m, body),
            "upload" => self.upload(caller, body),
            "begin" => {
                // An input sent in pieces is the caller's own upload.
                let args = Args::new(method, body)?;
                let input = uploaded(&args, "input", "", |id| {
                    let mut uploads = self.uploads.lock();
                    match uploads.get(id) {
                        Some(u) if u.owner == caller.id => uploads.remove(id).map(|u| u.data),
                        _ => None,
                    }
                })?;
                self.begin(&args, input, peer)
            }
            "whoami" => Ok(self.whoami(caller)),
            "cluster" => self.cluster_status(),
            _ => self.dispatch(method, body, peer),
        })?;
        Ok(if caller.all_tenants() {
            answer
        } else {
            self.only_tenant(caller, method, answer)
        })
    }

    /// Who the caller is and, for each method, whether it may call it (on its own tenant): what
    /// the dashboard shows and which of its buttons it enables.
    fn whoami(&self, caller: &Caller) -> Value {
        let target = if caller.all_tenants() {
            Target::Store
        } else {
            Target::Tenant(caller.tenant.clone())
        };
        let may: serde_json::Map<String, Value> = authz::METHODS
            .iter()
            .map(|(m, _)| {
                let ok = matches!(self.authz.check(caller, m, &target), Verdict::Allow);
                (m.to_string(), json!(ok))
            })
            .collect();
        json!({
            "identity": caller.actor,
            "tenant": caller.tenant,
            "roles": caller.roles,
            "read_only": self.store.is_read_only(),
            "store": if caller.all_tenants() { json!(self.store.path()) } else { Value::Null },
            "may": may,
        })
    }

    /// `cluster`: the Raft cluster of the nodes this daemon was given — leader, term, members,
    /// and how far each member's applied log lags the leader's commit (asked of each member,
    /// one attempt each: an unreachable member is shown as such, not waited for).
    /// `cluster`: the nodes given with `--node` and the sync state of the executions they hold.
    fn cluster_status(&self) -> Result<Value> {
        use crate::consensus::network::RemoteClient;
        use crate::consensus::node::ClusterStatus;
        if self.cluster.is_empty() {
            return Ok(json!({
                "configured": false,
                "detail": "no cluster given: `omium ui --node HOST:PORT` shows the cluster of \
                           those nodes (`omium cluster --node HOST:PORT status` too)",
            }));
        }
        let ask = |nodes: &[String], patience: Duration| -> Result<ClusterStatus> {
            let client = RemoteClient::new(nodes)?.with_patience(patience);
            let v: Value = tokio::runtime::Handle::current().block_on(client.admin(
                "/cluster/status",
                &json!({}),
                Duration::from_secs(2),
            ))?;
            serde_json::from_value(v).map_err(|e| Error::ConsensusUnavailable {
                detail: format!("a node sent a status that does not decode: {e}"),
            })
        };
        let s = ask(&self.cluster, Duration::from_secs(2))?;
        let nodes: Vec<Value> = s
            .nodes
            .iter()
            .map(|(id, addr)| {
                let own = ask(std::slice::from_ref(addr), Duration::ZERO);
                let role = if Some(*id) == s.leader {
                    "leader"
                } else if s.voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                let matched = own.as_ref().ok().and_then(|o| o.last_applied);
                json!({
                    "id": id,
                    "addr": addr,
                    "role": role,
                    "state": own.as_ref().map(|o| o.state.clone()).unwrap_or_else(|_| "unreachable".into()),
                    "term": own.as_ref().ok().map(|o| o.term),
                    "matched": matched,
                    "lag": s.committed.zip(matched).map(|(c, m)| c.saturating_sub(m)),
                    "error": own.err().map(|e| e.to_string()),
                })
            })
            .collect();
        // The sync state of executions: what the cluster holds (newest first), and whether this
        // store has the same head, more checkpoints (a push to come), fewer, or none of it.
        let synced: Result<Vec<crate::sync::SyncedSummary>> = tokio::runtime::Handle::current()
            .block_on(
                RemoteClient::new(&self.cluster)?
                    .with_patience(Duration::from_secs(2))
                    .call_postcard("/sync/executions", &(), Duration::from_secs(5)),
            );
        let (executions, sync_error) = match synced {
            Ok(mut all) => {
                all.sort_by_key(|x| std::cmp::Reverse(x.meta.updated_at_ms));
                let total = all.len();
                let list: Vec<Value> = all
                    .iter()
                    .take(SYNCED_SHOWN)
                    .map(|x| {
                        let here = match self.store.execution(&x.execution.id) {
                            Ok(e) if e.head == x.meta.head => "in_sync",
                            Ok(e) if e.checkpoint_count > x.meta.checkpoints => "ahead",
                            Ok(_) => "behind",
                            Err(_) => "not_here",
                        };
                        json!({
                            "id": x.execution.id, "tenant": x.execution.tenant,
                            "workflow": x.execution.workflow, "status": x.execution.status.as_str(),
                            "owner": x.meta.owner, "owner_host": x.meta.owner_host,
                            "head": x.meta.head.map(|h| h.to_string()),
                            "checkpoints": x.meta.checkpoints, "lease_left_ms": x.lease_left_ms,
                            "updated_at_ms": x.meta.updated_at_ms, "log_index": x.meta.log_index,
                            "here": here,
                        })
                    })
                    .collect();
                ((list, total), None)
            }
            Err(e) => ((Vec::new(), 0), Some(e.to_string())),
        };
        Ok(json!({
            "configured": true,
            "leader": s.leader,
            "term": s.term,
            "committed": s.committed,
            "nodes": nodes,
            "executions": executions.0,
            "synced_total": executions.1,
            "sync_error": sync_error,
        }))
    }

    /// `upload`: a piece of an input that a `begin` names next (`input_upload`).
    fn upload(&self, caller: &Caller, body: Value) -> Result<Value> {
        let a = Args::new("upload", body)?;
        let data = a.opt_bytes("data")?.unwrap_or_default();
        let mut uploads = self.uploads.lock();
        let held: usize = uploads.values().map(|u| u.data.len()).sum();
        let id = open_upload(
            a.opt_str("upload")?,
            held + data.len(),
            |id| uploads.get(id).is_some_and(|u| u.owner == caller.id),
            "",
        )?;
        let u = uploads.entry(id.clone()).or_insert_with(|| Upload {
            owner: caller.id.clone(),
            data: Vec::new(),
            last_ms: 0,
        });
        u.data.extend_from_slice(&data);
        u.last_ms = now_ms();
        Ok(json!({"upload": id, "size": u.data.len()}))
    }

    /// Spans may name executions of the caller's tenant only.
    fn spans_of_tenant(&self, caller: &Caller, body: &Value) -> Result<()> {
        let spans = body.get("spans").and_then(Value::as_array);
        for id in spans
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("execution_id"))
            .filter_map(Value::as_str)
        {
            if let Target::Execution { tenant, .. } = self.execution_target(caller, id)? {
                if tenant != caller.tenant {
                    return Err(Error::ExecutionNotFound { id: id.to_string() });
                }
            }
        }
        Ok(())
    }

    /// Drops from a list answer what belongs to other tenants.
    fn only_tenant(&self, caller: &Caller, method: &str, mut answer: Value) -> Value {
        match method {
            "executions" | "resumable" | "failures" | "executions.page" | "cluster" => {
                let items = match &mut answer {
                    Value::Object(m) => m.get_mut("executions"),
                    other => Some(other),
                };
                if let Some(Value::Array(items)) = items {
                    items.retain(|i| {
                        i.get("tenant").and_then(Value::as_str) == Some(&caller.tenant)
                    });
                }
            }
            "events" => {
                if let Some(Value::Array(events)) = answer.get_mut("events") {
                    let mut cache = HashMap::new();
                    events.retain(|e| {
                        let subject = e.get("subject").and_then(Value::as_str);
                        subject.is_some_and(|id| self.of_tenant(caller, id, &mut cache))
                    });
                }
            }
            _ => {}
        }
        answer
    }

    /// Whether execution `id` is of the caller's tenant (remembered in `cache`).
    fn of_tenant(&self, caller: &Caller, id: &str, cache: &mut HashMap<String, bool>) -> bool {
        *cache.entry(id.to_string()).or_insert_with(|| {
            self.store
                .execution(id)
                .is_ok_and(|e| e.tenant == caller.tenant)
        })
    }

    /// `keys.create`, `keys.list`, `keys.revoke`.
    fn keys_call(&self, caller: &Caller, method: &str, body: Value) -> Result<Value> {
        let a = Args::new(method, body)?;
        match method {
            "keys.create" => {
                let spec = keys::KeySpec {
                    name: a.str("name")?,
                    tenant: a.str("tenant")?,
                    roles: a.req("roles", "a list of roles")?,
                };
                let (key, secret) = keys::create(&self.store, &spec)?;
                Ok(json!({"key": key, "secret": secret}))
            }
            "keys.list" => Ok(json!(keys::list(&self.store)?)),
            "keys.revoke" => Ok(json!(keys::revoke(
                &self.store,
                &a.str("key")?,
                &caller.actor
            )?)),
            other => Err(Error::InvalidArgument {
                what: "method",
                detail: format!("{other:?} is not a method of keys (create, list, revoke)"),
            }),
        }
    }

    fn dispatch(&self, method: &str, body: Value, peer: Peer) -> Result<Value> {
        let args = Args::new(method, body)?;
        match method {
            "begin" => {
                let input = args.opt_bytes("input")?;
                self.begin(&args, input, peer)
            }
            "start_recovery" => self.start_recovery(&args),
            m if m.starts_with("run.") => self.run_call(m, &args),
            m if m.starts_with("recovery.") => self.recovery_call(m, &args),
            m => {
                // Whether a holder is alive is decided now, not at the reaper's last tick: a
                // supervisor calls `recover()` right after it saw a worker exit, and the
                // answer (resumable, status, rollback of a held execution) must already know.
                let id = args.opt_str("execution_id")?;
                if id.is_some() || matches!(m, "resumable" | "executions") {
                    self.reap(id.as_deref());
                }
                omium_engine::serve::call(&self.store, m, args)
            }
        }
    }
}

/// The id of the upload a piece goes to: `given` when it is open (`open`), a new one when none
/// is given; refused when the uploads would hold more than [`MAX_UPLOADS`] bytes.
fn open_upload(
    given: Option<String>,
    would_hold: usize,
    open: impl Fn(&str) -> bool,
    execution: &str,
) -> Result<String> {
    if would_hold as u64 > MAX_UPLOADS {
        return Err(Error::InvalidArgument {
            what: "upload",
            detail: format!(
                "the uploads would hold more than {MAX_UPLOADS} bytes; use what was uploaded \
                 first"
            ),
        });
    }
    match given {
        Some(id) if open(&id) => Ok(id),
        Some(id) => Err(Error::InvalidState {
            execution: execution.to_string(),
            status: "upload".into(),
            detail: format!(
                "upload {id} is not open (used already, expired, or never started); start a \
                 new upload without an id"
            ),
        }),
        None => Ok(ulid::Ulid::new().to_string()),
    }
}

/// The bytes of argument `field`: inline (base64), or the upload `<field>_upload` names, which
/// `take` removes from where it was held.
fn uploaded(
    a: &Args<'_>,
    field: &'static str,
    execution: &str,
    take: impl FnOnce(&str) -> Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>> {
    match a.opt_str(&format!("{field}_upload"))? {
        Some(id) => take(&id).map(Some).ok_or_else(|| Error::InvalidState {
            execution: execution.to_string(),
            status: "upload".into(),
            detail: format!("upload {id} is not open; upload the {field} again"),
        }),
        None => match a.opt_str(field)? {
            Some(t) => omium_engine::serve::unb64(field, &t).map(Some),
            None => Ok(None),
        },
    }
}

/// An error as the API answers it.
fn error_response(e: &Error) -> Response {
    let status = match e.code() {
        "execution_not_found" | "checkpoint_not_found" | "message_not_found" => {
            StatusCode::NOT_FOUND
        }
        "execution_leased" | "invalid_state" | "non_determinism" | "paused" | "cancelled"
        | "lease_lost" => StatusCode::CONFLICT,
        "invalid_argument" | "invalid_policy" | "condition_syntax" | "wrong_execution"
        | "read_only" => StatusCode::BAD_REQUEST,
        "integrity" | "storage" | "decode" => StatusCode::INTERNAL_SERVER_ERROR,
        "forbidden" => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (
        status,
        Json(json!({"code": e.code(), "message": e.to_string()})),
    )
        .into_response()
}

async fn call(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(method): Path<String>,
    body: std::result::Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return closing(refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_argument",
                format!(
                    "the body of {method} is larger than this daemon takes (--max-body); the \
                     bindings send large states in pieces (run.upload)"
                ),
            ))
        }
        Err(e) => {
            return closing(refused(
                e.status(),
                "invalid_argument",
                format!("the body of {method} could not be read: {e}"),
            ))
        }
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error_response(&Error::InvalidArgument {
                    what: "request body",
                    detail: format!("{method}: not JSON: {e}"),
                })
            }
        }
    };
    // Store calls block (RocksDB, fsync): off the async threads.
    let report = method == "report";
    let res = tokio::task::spawn_blocking(move || app.handle(&caller, &method, body, peer)).await;
    match res {
        // A report as a file (HTML, CSV, PDF): its bytes, to download.
        Ok(Ok(v)) if report && v.get("content_type").is_some() => file_response(&v),
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": "internal", "message": format!("the call panicked: {e}")})),
        )
            .into_response(),
    }
}

/// `{"content_type", "filename", "data": base64}` as the file itself.
fn file_response(v: &Value) -> Response {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let data = omium_engine::serve::unb64("data", s("data")).unwrap_or_default();
    let filename: String = s("filename")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    (
        [
            (header::CONTENT_TYPE, s("content_type").to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        data,
    )
        .into_response()
}

/// The event feed as Server-Sent Events ([`crate::feed`]): the caller's tenant's events,
/// each named with its execution's workflow and tenant.
async fn events_stream(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<crate::feed::StreamQuery>,
) -> Response {
    let body = json!({ "execution_id": q.execution_id });
    if let Some(no) = allowed(&app, &caller, "events", body).await {
        return no;
    }
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let a = app.clone();
    let shape: crate::feed::Shape = Arc::new(move |store, mut ce, cache| {
        let subject = ce.get("subject").and_then(Value::as_str);
        let mine = caller.all_tenants()
            || subject.is_some_and(|id| a.of_tenant(&caller, id, &mut cache.mine));
        if !mine {
            return None;
        }
        omium_engine::events::annotate(store, &mut ce, &mut cache.names);
        Some(ce)
    });
    crate::feed::sse(app.store.clone(), filter, q.start(&headers), shape)
}

/// Liveness, and nothing else: it needs no key.
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// What the daemon serves (behind the key on TCP).
async fn status(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    if let Some(no) = allowed(&app, &caller, "status", Value::Null).await {
        return no;
    }
    // Where the store lives is the operator's business, not a tenant's.
    let store = caller
        .all_tenants()
        .then(|| app.store.path().display().to_string());
    Json(json!({
        "store": store,
        "durability": app.store.durability().as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "runs": app.sessions.lock().len(),
        "caller": {"actor": caller.actor, "tenant": caller.tenant, "roles": caller.roles},
    }))
    .into_response()
}

/// Binds the unix socket with its final permissions: at a temporary name, restricted, then
/// renamed into place, so that there is no moment when others may connect.
fn bind_socket(path: &std::path::Path, group: Option<&str>) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |detail: String| Error::InvalidArgument {
        what: "--socket",
        detail,
    };
    let gid = group.map(group_id).transpose()?;
    if path.file_name().is_none() {
        return Err(bad(format!("{}: not a file path", path.display())));
    }
    // Short, so that a socket path near the kernel's limit (108 bytes) still fits; unique in
    // this process, and a leftover of a dead process with the same pid is replaced.
    static SOCKETS: AtomicU64 = AtomicU64::new(0);
    let n = SOCKETS.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".omium-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(&tmp)
        .map_err(|e| bad(format!("cannot listen on {}: {e}", path.display())))?;
    let placed = (|| {
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(format!(
            "cannot set up {}{}: {e}",
            path.display(),
            group.map(|g| format!(" for group {g}")).unwrap_or_default()
        )));
    }
    Ok(listener)
}

/// A group's id, from its number or its name in /etc/group.
fn group_id(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| Error::InvalidArgument {
            what: "--socket-group",
            detail: format!("{group:?}: no such group in /etc/group; give a group name or id"),
        })
}

/// The store's analytics for Prometheus (text format 0.0.4); behind the API key like the rest.
async fn prometheus(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    if let Some(no) = allowed(&app, &caller, "prometheus", Value::Null).await {
        return no;
    }
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || omium_engine::prometheus::exposition(&store)).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => refused(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string()),
        Err(e) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the metrics task failed: {e}"),
        ),
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}

/// Knows the caller of every request (health and the API document excepted), and holds it to
/// its rate.
async fn authenticate(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == "/v1/health" || path == "/openapi.yaml" {
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_string());
    let a = app.clone();
    let caller = tokio::task::spawn_blocking(move || a.identify(bearer.as_deref(), peer)).await;
    let caller = match caller {
        Ok(Ok(c)) => c,
        Ok(Err(answer)) => return closing(*answer),
        Err(e) => {
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("authentication failed: {e}"),
            )
        }
    };
    if let Err(after) = app.take_token(&format!("caller/{}", caller.id), app.rate) {
        return too_many(after);
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// 429 with `Retry-After`.
fn too_many(after_secs: u64) -> Response {
    let mut r = refused(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this caller; retry after {after_secs} s"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(after_secs));
    closing(r)
}

/// Authorizes a GET route's call (its arguments in `body`) on the blocking pool.
async fn allowed(
    app: &Arc<App>,
    caller: &Caller,
    method: &'static str,
    body: Value,
) -> Option<Response> {
    let (a, c) = (app.clone(), caller.clone());
    match tokio::task::spawn_blocking(move || a.authorize(&c, method, &body)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(error_response(&e)),
        Err(e) => Some(refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("authorization failed: {e}"),
        )),
    }
}

fn router(app: Arc<App>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/openapi.yaml", get(openapi))
        .route("/metrics", get(prometheus))
        .route("/v1/events/stream", get(events_stream))
        .route("/v1/{method}", post(call))
        .layer(DefaultBodyLimit::max(body_limit))
        .route_layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .with_state(app)
}

/// A running daemon. Dropping it stops serving (sessions are dropped: their executions become
/// resumable).
pub struct Daemon {
    app: Arc<App>,
    http: Option<SocketAddr>,
    socket: Option<PathBuf>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Starts serving `store`. Must run inside a tokio runtime.
    pub async fn start(store: &Store, config: ServeConfig) -> Result<Daemon> {
        let ui = config.ui;
        if !ui {
            store.require_writer("omium serve")?;
        }
        if config.socket.is_none() && config.http.is_none() {
            return Err(Error::InvalidArgument {
                what: "serve address",
                detail: "give a unix socket path, an HTTP address, or both".into(),
            });
        }
        let bad = |what: &'static str, detail: String| Error::InvalidArgument { what, detail };
        let authz = match &config.authorization {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    bad(
                        "--authorization",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Authz::new(Some((&text, &path.display().to_string())))?
            }
            None => Authz::new(None)?,
        };
        let tls = config
            .tls
            .clone()
            .map(|(cert, key)| {
                crate::listen::TlsSource::new(vec![cert.clone(), key.clone()], move || {
                    crate::listen::tls_config(&cert, &key)
                })
            })
            .transpose()?;
        let parsed: Option<SocketAddr> = config
            .http
            .as_deref()
            .map(|addr| {
                addr.parse().map_err(|e| {
                    bad(
                        "--http",
                        format!("{addr:?} is not host:port ({e}); expected e.g. 127.0.0.1:7700"),
                    )
                })
            })
            .transpose()?;
        let loopback = parsed.is_none_or(|a| a.ip().is_loopback());
        if !loopback && config.api_keys.is_empty() && !keys::any_active(store)? {
            return Err(bad(
                "--http",
                format!(
                    "{} is reachable from other machines: create a key first (`omium keys \
                     create`), or give one in OMIUM_API_KEYS or --api-key-file; or listen on \
                     127.0.0.1",
                    parsed.expect("not loopback")
                ),
            ));
        }
        let app = Arc::new(App {
            store: store.clone(),
            sessions: Mutex::new(HashMap::new()),
            recoveries: Mutex::new(HashMap::new()),
            authz,
            static_keys: config.api_keys.clone(),
            loopback,
            rate: config.rate_limit,
            buckets: Mutex::new(HashMap::new()),
            refreshed: Mutex::new(None),
            uploads: Mutex::new(HashMap::new()),
            cluster: config.cluster.clone(),
        });
        let body_limit = config.body_limit.unwrap_or(64 << 20);
        let mut tasks = Vec::new();
        let mut http = None;
        if let Some(parsed) = parsed {
            let (listener, bound) = crate::listen::bind_tcp(parsed, "--http").await?;
            http = Some(bound);
            let hosts = Arc::new(Hosts::new(bound, config.allowed_hosts.clone()));
            let mut r = router(app.clone(), body_limit);
            if ui {
                r = r.merge(crate::ui::pages());
            }
            let r = r.layer(middleware::from_fn(move |req, next| {
                guard(Some(hosts.clone()), ui, req, next)
            }));
            tasks.push(crate::listen::serve(
                Listener::Tcp(listener),
                tls.clone(),
                r,
                config.limits.clone(),
            ));
        }
        if let Some(path) = &config.socket {
            if path.exists() {
                // A socket nobody answers on is a leftover of a daemon that died.
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(bad(
                        "--socket",
                        format!("{} is in use by a running daemon", path.display()),
                    ));
                }
                let _ = std::fs::remove_file(path);
            }
            let listener = bind_socket(path, config.socket_group.as_deref())?;
            let r = router(app.clone(), body_limit).layer(middleware::from_fn(|req, next| {
                guard(None, false, req, next)
            }));
            tasks.push(crate::listen::serve(
                Listener::Unix(listener),
                None,
                r,
                config.limits.clone(),
            ));
        }
        let reaper = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let app = reaper.clone();
                let _ = tokio::task::spawn_blocking(move || app.reap(None)).await;
            }
        }));
        Ok(Daemon {
            app,
            http,
            socket: config.socket,
            tasks,
        })
    }

    /// The bound TCP address, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    pub fn socket(&self) -> Option<&std::path::Path> {
        self.socket.as_deref()
    }

    /// Open run sessions.
    pub fn runs(&self) -> usize {
        self.app.sessions.lock().len()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.app.sessions.lock().clear();
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}
