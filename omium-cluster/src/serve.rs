//! The daemon: a store, its run sessions, and the HTTP API on a unix socket and on TCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::execution::{hostname, pid_alive};
use crate::store::now_ms;
use crate::{BeginOptions, Durability, NewCheckpoint, Run, Store};
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
    /// Keys accepted as `Authorization: Bearer <key>` on TCP (the unix socket is guarded by
    /// its file permissions).
    pub api_keys: Vec<String>,
    /// Host names (`name` or `name:port`) that TCP requests may name in `Host`, besides IP
    /// addresses and, on loopback, `localhost`. Anything else is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// A group (name or number) that may use the unix socket too: the socket is then 0660 and
    /// owned by that group, else 0600.
    pub socket_group: Option<String>,
}

/// One run of an execution held for a worker.
struct Session {
    run: Run,
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
    recovery: Mutex<Recovery>,
    last_seen_ms: AtomicU64,
}

/// A recovery nobody asked about for this long is dropped (its worker is gone; the failure is
/// recorded already).
const RECOVERY_IDLE_MS: u64 = 10 * 60 * 1000;

struct App {
    store: Store,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    recoveries: Mutex<HashMap<String, Arc<Handling>>>,
}

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
        before - sessions.len()
    }

    fn start_recovery(&self, a: &Args<'_>) -> Result<Value> {
        let kind = a
            .opt_str("kind")?
            .map(|k| crate::policy::Trigger::parse(&k))
            .transpose()?;
        let input = FailureInput {
            execution_id: a.str("execution_id")?,
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
    fn begin(&self, a: &Args<'_>, peer: Peer) -> Result<Value> {
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
            input: a.opt_bytes("input")?,
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
            "run.record" => {
                let seq: u64 = a.req("seq", "an unsigned integer")?;
                let name = a.str("name")?;
                let state = a.opt_bytes("state")?.unwrap_or_default();
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
            "run.complete" => done(r.complete(a.opt_bytes("output")?.as_deref())),
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

    fn dispatch(&self, method: &str, body: Value, peer: Peer) -> Result<Value> {
        let args = Args::new(method, body)?;
        match method {
            "begin" => self.begin(&args, peer),
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
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (
        status,
        Json(json!({"code": e.code(), "message": e.to_string()})),
    )
        .into_response()
}

/// Who is at the other end of a connection. On the unix socket the kernel says which process
/// (`SO_PEERCRED`); on TCP nobody can.
#[derive(Clone, Copy, Debug, Default)]
struct Peer {
    pid: Option<u32>,
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::UnixListener>) -> Peer {
        let pid = stream
            .io()
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p != 0);
        Peer { pid }
    }
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(_: IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer::default()
    }
}

async fn call(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(method): Path<String>,
    body: axum::body::Bytes,
) -> Response {
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
    let res = tokio::task::spawn_blocking(move || app.dispatch(&method, body, peer)).await;
    match res {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": "internal", "message": format!("the call panicked: {e}")})),
        )
            .into_response(),
    }
}

/// What `GET /v1/events/stream` takes in its query.
#[derive(serde::Deserialize, Default)]
struct StreamQuery {
    since: Option<u64>,
    /// Types or families, comma-separated (`execution.*,failure.detected`).
    types: Option<String>,
    execution_id: Option<String>,
}

/// The event feed as Server-Sent Events: each event's `id` is its seq (a reconnecting client
/// sends it back as `Last-Event-ID` and goes on after it), its `event` the type, its `data` the
/// CloudEvent. A comment every 15 s keeps a quiet stream open through proxies.
async fn events_stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<StreamQuery>,
) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    let types: Vec<String> = q
        .types
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let filter = match omium_engine::events::EventFilter::new(types, q.execution_id) {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let start = last_id.or(q.since).unwrap_or(0);
    let source = omium_engine::events::source(&app.store);
    let stream = futures_util::stream::unfold(
        (app, filter, start, std::collections::VecDeque::new()),
        move |(app, filter, mut cursor, mut queued)| {
            let source = source.clone();
            async move {
                loop {
                    if let Some(e) = queued.pop_front() {
                        let e: omium_engine::events::Event = e;
                        let sse = Sse::default()
                            .id(e.seq.to_string())
                            .event(e.kind.clone())
                            .data(e.cloud_event(&source).to_string());
                        return Some((
                            Ok::<_, std::convert::Infallible>(sse),
                            (app, filter, cursor, queued),
                        ));
                    }
                    let (a, f) = (app.clone(), filter.clone());
                    let page = tokio::task::spawn_blocking(move || {
                        a.store
                            .follow_events(cursor, 1000, &f, Duration::from_secs(2))
                    })
                    .await;
                    match page {
                        Ok(Ok(p)) => {
                            cursor = p.cursor;
                            queued.extend(p.events);
                        }
                        // The store closed or failed: end the stream; the client reconnects.
                        _ => return None,
                    }
                }
            }
        },
    );
    axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Liveness, and nothing else: it needs no key.
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// What the daemon serves (behind the key on TCP).
async fn status(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "store": app.store.path().display().to_string(),
        "durability": app.store.durability().as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "runs": app.sessions.lock().len(),
    }))
}

/// The `Host` names a TCP listener answers to.
struct Hosts {
    port: u16,
    loopback: bool,
    /// Bound to every address: the machine's own name is fine too.
    any: bool,
    allowed: Vec<String>,
}

impl Hosts {
    fn allows(&self, host: &str) -> bool {
        let (name, port) = split_host(host);
        if port.is_some_and(|p| p != self.port) {
            return false;
        }
        // An address is safe: a web page can only make a browser send one when the page itself
        // was loaded from that address. A name can be re-pointed at this machine (DNS rebinding).
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        let name = name.to_ascii_lowercase();
        (self.loopback && name == "localhost")
            || (self.any && name == hostname().to_ascii_lowercase())
            || self.allowed.iter().any(|a| {
                let (n, p) = split_host(a);
                n.eq_ignore_ascii_case(&name) && p.is_none_or(|p| p == self.port)
            })
    }
}

/// `name:port`, `[v6]:port`, `name` or `v6` into the name and the port.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match host.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') => (n, p.parse().ok()),
        _ => (host, None),
    }
}

fn refused(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// What a web page could send, refused on every listener: a request that carries an `Origin`
/// (browsers add it to cross-site requests; programs do not), a POST that is not JSON (an HTML
/// form can POST `text/plain` without asking), and on TCP a `Host` this daemon does not answer
/// to.
async fn guard(hosts: Option<Arc<Hosts>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        return refused(
            StatusCode::FORBIDDEN,
            "unauthorized",
            format!(
                "requests from web pages are refused (Origin: {}): omium serve is an API for \
                 programs; use `omium ui` for a browser",
                String::from_utf8_lossy(origin.as_bytes())
            ),
        );
    }
    if let Some(hosts) = hosts {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        if !hosts.allows(host) {
            return refused(
                StatusCode::FORBIDDEN,
                "unauthorized",
                format!(
                    "Host {host:?} is not a name this daemon answers to (its address, \
                     {}or a name given with --allow-host); a name that merely resolves here \
                     could be a web page's (DNS rebinding)",
                    if hosts.loopback { "localhost, " } else { "" }
                ),
            );
        }
    }
    if req.method() == axum::http::Method::POST {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            let given = headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "none".into());
            return refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_argument",
                format!(
                    "invalid Content-Type of {}: {given}; expected application/json",
                    req.uri().path()
                ),
            );
        }
    }
    next.run(req).await
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
async fn prometheus(State(app): State<Arc<App>>) -> Response {
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

/// Rejects TCP requests without a valid key (health and the document excepted).
async fn authorize(
    State(keys): State<Arc<Vec<String>>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if keys.is_empty() || path == "/v1/health" || path == "/openapi.yaml" {
        return next.run(req).await;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(k) if keys.iter().any(|key| constant_time_eq(key.as_bytes(), k.as_bytes())) => {
            next.run(req).await
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "code": "unauthorized",
                "message": "this omium serve needs an API key: send `Authorization: Bearer <key>` (omium.init(url=..., api_key=...))",
            })),
        )
            .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/openapi.yaml", get(openapi))
        .route("/metrics", get(prometheus))
        .route("/v1/events/stream", get(events_stream))
        .route("/v1/{method}", post(call))
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
        store.require_writer("omium serve")?;
        if config.socket.is_none() && config.http.is_none() {
            return Err(Error::InvalidArgument {
                what: "serve address",
                detail: "give a unix socket path, an HTTP address, or both".into(),
            });
        }
        let bad = |what: &'static str, detail: String| Error::InvalidArgument { what, detail };
        let app = Arc::new(App {
            store: store.clone(),
            sessions: Mutex::new(HashMap::new()),
            recoveries: Mutex::new(HashMap::new()),
        });
        let mut tasks = Vec::new();
        let mut http = None;
        if let Some(addr) = &config.http {
            let parsed: SocketAddr = addr.parse().map_err(|e| {
                bad(
                    "--http",
                    format!("{addr:?} is not host:port ({e}); expected e.g. 127.0.0.1:7700"),
                )
            })?;
            if !parsed.ip().is_loopback() && config.api_keys.is_empty() {
                return Err(bad(
                    "--http",
                    format!(
                        "{parsed} is reachable from other machines: give at least one API key \
                         (--api-key or OMIUM_API_KEYS), or listen on 127.0.0.1"
                    ),
                ));
            }
            let listener = tokio::net::TcpListener::bind(parsed)
                .await
                .map_err(|e| bad("--http", format!("cannot listen on {parsed}: {e}")))?;
            http = Some(
                listener
                    .local_addr()
                    .map_err(|e| bad("--http", e.to_string()))?,
            );
            let keys = Arc::new(config.api_keys.clone());
            let bound = http.expect("set above");
            let hosts = Arc::new(Hosts {
                port: bound.port(),
                loopback: bound.ip().is_loopback(),
                any: bound.ip().is_unspecified(),
                allowed: config.allowed_hosts.clone(),
            });
            let r = router(app.clone())
                .layer(middleware::from_fn_with_state(keys, authorize))
                .layer(middleware::from_fn(move |req, next| {
                    guard(Some(hosts.clone()), req, next)
                }))
                .into_make_service_with_connect_info::<Peer>();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, r).await;
            }));
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
            let r = router(app.clone())
                .layer(middleware::from_fn(|req, next| guard(None, req, next)))
                .into_make_service_with_connect_info::<Peer>();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, r).await;
            }));
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
