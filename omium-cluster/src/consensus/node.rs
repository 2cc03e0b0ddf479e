//! A cluster node: a Raft member with its store, serving Raft RPCs, the coordinator API and
//! the membership admin calls over HTTP/2 (h2c; axum on hyper accepts HTTP/1.1 too).
//!
//! | route | body | does |
//! |---|---|---|
//! | `POST /raft/append`, `/raft/vote`, `/raft/pre_vote`, `/raft/snapshot` | postcard | Raft RPCs between nodes |
//! | `POST /api/broadcast`, `/api/broadcast_many`, `/api/ack`, `/api/ack_many`, `/api/await`, `/api/status`, `/api/message` | JSON | the coordinator |
//! | `POST /cluster/init`, `/cluster/add`, `/cluster/remove`, `/cluster/status` | JSON | membership |
//! | `POST /sync/missing`, `/sync/push`, `/sync/pull`, `/sync/chunks`, `/sync/executions` | postcard | remote sync (`crate::sync::cluster`) |
//!
//! A follower answers coordinator and admin calls that need the leader with `421` and the
//! leader's address (`code: "not_leader"`); [`super::network::RemoteClient`] follows it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use super::coordinator::{record_violation, AckRequest, BroadcastRequest, Engine, ProposeError};
use super::network::{
    normalize_addr, AwaitReply, AwaitRequest, HttpNetworkFactory, RemoteClient, SnapshotChunk,
    SnapshotFinish, SnapshotTransfer, WireError,
};
use super::{MessageStatus, TypeConfig as C};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::sync;

/// How to start a node.
#[derive(Clone, Debug, Default)]
pub struct NodeConfig {
    /// This node's id in the cluster (any `u64` not used by another node).
    pub id: u64,
    /// Where to listen, `host:port` (port 0 picks a free port).
    pub listen: String,
    /// The address other nodes reach this one at; default: the bound listen address.
    pub advertise: Option<String>,
    /// A member of an existing cluster to join through (it adds this node as a voter).
    pub join: Option<String>,
    /// Mutual TLS: the cluster's CA and this node's certificate (`omium cluster certs`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Plain HTTP without TLS, allowed only on a loopback address (tests, one machine).
    pub insecure_loopback: bool,
}

/// A running node. Dropping it stops the server and the Raft node.
pub struct Node {
    engine: Arc<Engine>,
    addr: SocketAddr,
    advertise: String,
    server: tokio::task::JoinHandle<()>,
    /// The OTLP metrics export, when `OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT` is set.
    metrics: Option<omium_engine::otlp_metrics::MetricsExporter>,
}

struct App {
    engine: Arc<Engine>,
    advertise: String,
    /// A snapshot arriving in pieces: its transfer id, the announced size, what came so far.
    upload: parking_lot::Mutex<Option<(String, u64, Vec<u8>)>>,
}

/// The largest snapshot a node takes in pieces (the state machine holds it in memory).
const MAX_SNAPSHOT: u64 = 16 << 30;

type Shared = Arc<App>;

impl Node {
    /// Starts a node on `store` (opened for writing; one node per store). Must run inside a
    /// tokio runtime.
    pub async fn start(store: &Store, config: NodeConfig) -> Result<Node> {
        let listen: SocketAddr = config.listen.parse().map_err(|e| Error::InvalidArgument {
            what: "listen address",
            detail: format!(
                "{:?} is not host:port ({e}); expected e.g. 127.0.0.1:7001",
                config.listen
            ),
        })?;
        let tls = match (&config.tls, config.insecure_loopback) {
            (Some(files), _) => {
                let f = files.clone();
                Some(crate::listen::TlsSource::new(
                    vec![f.ca.clone(), f.cert.clone(), f.key.clone()],
                    move || crate::tls::server_config(&f),
                )?)
            }
            (None, true) if listen.ip().is_loopback() => None,
            (None, true) => {
                return Err(Error::InvalidArgument {
                    what: "--insecure-loopback",
                    detail: format!(
                        "{listen} is not a loopback address: a node reachable from other \
                         machines needs mutual TLS (--tls-ca, --tls-cert, --tls-key; `omium \
                         cluster certs` makes them)"
                    ),
                })
            }
            (None, false) => {
                return Err(Error::InvalidArgument {
                    what: "node TLS",
                    detail: "give the cluster's CA and this node's certificate (--tls-ca, \
                             --tls-cert, --tls-key; `omium cluster certs` makes them), or \
                             --insecure-loopback to speak plain HTTP on 127.0.0.1"
                        .into(),
                })
            }
        };
        crate::tls::configure(config.tls.clone());
        let listener =
            tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| Error::InvalidArgument {
                    what: "listen address",
                    detail: format!("cannot listen on {listen}: {e}"),
                })?;
        let addr = listener.local_addr().map_err(|e| Error::InvalidArgument {
            what: "listen address",
            detail: e.to_string(),
        })?;
        let advertise = match &config.advertise {
            Some(a) => normalize_addr(a)?,
            None => normalize_addr(&addr.to_string())?,
        };
        let engine = Engine::start(store, config.id, HttpNetworkFactory::new()?).await?;
        let app = Arc::new(App {
            engine: engine.clone(),
            advertise: advertise.clone(),
            upload: parking_lot::Mutex::new(None),
        });
        let router = Router::new()
            .route("/raft/append", post(raft_append))
            .route("/raft/vote", post(raft_vote))
            .route("/raft/pre_vote", post(raft_pre_vote))
            .route("/raft/snapshot", post(raft_snapshot))
            .route("/raft/snapshot/chunk", post(raft_snapshot_chunk))
            .route("/raft/snapshot/finish", post(raft_snapshot_finish))
            .route("/api/broadcast", post(api_broadcast))
            .route("/api/broadcast_many", post(api_broadcast_many))
            .route("/api/ack", post(api_ack))
            .route("/api/ack_many", post(api_ack_many))
            .route("/api/await", post(api_await))
            .route("/api/status", post(api_status))
            .route("/api/message", post(api_message))
            .route("/cluster/init", post(cluster_init))
            .route("/cluster/add", post(cluster_add))
            .route("/cluster/remove", post(cluster_remove))
            .route("/cluster/status", post(cluster_status))
            .route("/sync/missing", post(sync_missing))
            .route("/sync/push", post(sync_push))
            .route("/sync/pull", post(sync_pull))
            .route("/sync/chunks", post(sync_chunks))
            .route("/sync/executions", post(sync_executions))
            .route("/events/stream", axum::routing::get(events_stream))
            .route("/metrics", axum::routing::get(prometheus))
            .route("/healthz", axum::routing::get(healthz))
            .route("/readyz", axum::routing::get(readyz))
            // Raft appends and sync pushes carry chunks (a push is at most
            // `sync::MAX_BATCH_BYTES` of them, plus its records).
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .route_layer(axum::middleware::from_fn_with_state(tls.is_some(), guard))
            .with_state(app);
        let server = crate::listen::serve(
            crate::listen::Listener::Tcp(listener),
            tls,
            router,
            crate::listen::Limits::default(),
        );
        let metrics = match omium_engine::otlp_metrics::MetricsConfig::env_endpoint() {
            Some(_) => {
                let weak = Arc::downgrade(&engine);
                Some(omium_engine::otlp_metrics::MetricsExporter::start(
                    Default::default(),
                    Box::new(move || weak.upgrade().map(|e| node_families(&e))),
                )?)
            }
            None => None,
        };
        let node = Node {
            engine,
            addr,
            advertise,
            server,
            metrics,
        };
        if let Some(join) = &config.join {
            node.join(join).await?;
        }
        Ok(node)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn advertise(&self) -> &str {
        &self.advertise
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Asks the cluster at `via` to add this node as a voter (unless it already is one).
    async fn join(&self, via: &str) -> Result<()> {
        let client = RemoteClient::new(&[via.to_string()])?;
        let status: ClusterStatus = serde_json::from_value(
            client
                .admin(
                    "/cluster/status",
                    &serde_json::json!({}),
                    Duration::from_secs(5),
                )
                .await?,
        )
        .map_err(|e| Error::ConsensusUnavailable {
            detail: format!("{via} sent a cluster status that does not decode: {e}"),
        })?;
        if status.voters.contains(&self.engine.node_id()) {
            return Ok(());
        }
        client
            .admin(
                "/cluster/add",
                &serde_json::json!({"id": self.engine.node_id(), "addr": self.advertise}),
                Duration::from_secs(30),
            )
            .await?;
        Ok(())
    }

    /// Stops serving and shuts the Raft node down.
    pub async fn shutdown(self) {
        if let Some(m) = &self.metrics {
            m.stop();
        }
        self.server.abort();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.engine.raft.shutdown()).await;
    }
}

/// What `omium cluster status` shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub id: u64,
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub voters: BTreeSet<u64>,
    pub nodes: BTreeMap<u64, String>,
}

impl ClusterStatus {
    pub fn of(engine: &Engine) -> ClusterStatus {
        let m = engine.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        ClusterStatus {
            id: m.id,
            state: format!("{:?}", m.state).to_lowercase(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed: m.local_committed.as_ref().map(|l| l.index()),
            last_applied: m.last_applied.as_ref().map(|l| l.index()),
            snapshot: m.snapshot.as_ref().map(|l| l.index()),
            voters: membership.voter_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
        }
    }
}

/// With mutual TLS, what a peer may call depends on what its certificate says it is (a node,
/// an admin tool, a client): see [`crate::tls::allows`].
async fn guard(
    State(secure): State<bool>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::listen::Peer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if !secure || crate::tls::allows(peer.identity.as_deref(), path) {
        return next.run(req).await;
    }
    let who = peer
        .identity
        .as_deref()
        .map(|i| format!("a certificate of {i}"))
        .unwrap_or_else(|| "no certificate".into());
    let needs = if path.starts_with("/raft/") {
        "a node's certificate"
    } else if path.starts_with("/cluster/") {
        "a node's or an admin's certificate"
    } else {
        "a certificate of the cluster's CA"
    };
    crate::listen::refused(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{path} needs {needs}; this connection presented {who}"),
    )
}

fn error_response(e: &Error) -> Response {
    let status = match e.code() {
        "invalid_message" | "invalid_argument" | "not_a_target" => StatusCode::BAD_REQUEST,
        "message_not_found" | "execution_not_found" => StatusCode::NOT_FOUND,
        "consensus_violation" | "execution_leased" | "sync_conflict" | "lease_lost" => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(WireError::from_error(e))).into_response()
}

fn propose_response(e: ProposeError) -> Response {
    match e {
        ProposeError::Failed(e) => error_response(&e),
        ProposeError::NotLeader { leader } => {
            let message = match &leader {
                Some((id, addr)) => format!("not the leader; node {id} at {addr} is"),
                None => "not the leader, and no leader is known yet".into(),
            };
            let w = WireError {
                code: "not_leader".into(),
                message,
                execution: None,
                message_id: None,
                reason: None,
                detail: None,
                failure_id: None,
                leader: leader.map(|(_, a)| a),
            };
            (StatusCode::MISDIRECTED_REQUEST, Json(w)).into_response()
        }
    }
}

fn reply<T: Serialize>(r: std::result::Result<T, ProposeError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => propose_response(e),
    }
}

fn raft_reply<T: Serialize, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Response {
    match r {
        Ok(v) => postcard::to_allocvec(&v)
            .expect("postcard encodes Raft messages")
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A postcard reply of a `/sync/*` call.
fn sync_reply<T: Serialize>(r: std::result::Result<T, ProposeError>) -> Response {
    match r {
        Ok(v) => postcard::to_allocvec(&v)
            .expect("postcard encodes sync replies")
            .into_response(),
        Err(e) => propose_response(e),
    }
}

/// Decodes a `/sync/*` body, runs `f` on it, and encodes its reply.
async fn sync_call<Q, R, F>(what: &str, body: &[u8], f: impl FnOnce(Q) -> F) -> Response
where
    Q: serde::de::DeserializeOwned,
    R: Serialize,
    F: std::future::Future<Output = std::result::Result<R, ProposeError>>,
{
    match postcard::from_bytes(body) {
        Ok(q) => sync_reply(f(q).await),
        Err(e) => error_response(&Error::InvalidArgument {
            what: "sync request",
            detail: format!("cannot decode {what}: {e}"),
        }),
    }
}

async fn sync_missing(State(app): State<Shared>, body: Bytes) -> Response {
    sync_call("a list of chunk addresses", &body, |h| {
        sync::cluster::missing(&app.engine, h)
    })
    .await
}

/// Whether execution `id` is out of reach of a client limited to `tenant`: it names another
/// tenant, or the cluster holds it under another. Such an execution answers exactly as an
/// unknown one does.
fn foreign(app: &App, tenant: Option<&str>, id: &str, claimed: Option<&str>) -> Result<bool> {
    let Some(tenant) = tenant else {
        return Ok(false);
    };
    let theirs = sync::cluster::synced_tenant(&app.engine, id)?;
    Ok(claimed.is_some_and(|c| c != tenant) || theirs.is_some_and(|t| t != tenant))
}

async fn sync_push(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::listen::Peer>,
    body: Bytes,
) -> Response {
    let tenant = crate::tls::client_tenant(peer.identity.as_deref()).map(str::to_string);
    sync_call("a sync batch", &body, |b: sync::SyncBatch| async {
        for bundle in &b.bundles {
            let e = &bundle.execution;
            if foreign(&app, tenant.as_deref(), &e.id, Some(&e.tenant))? {
                return Err(Error::ExecutionNotFound { id: e.id.clone() }.into());
            }
        }
        sync::cluster::push(&app.engine, b).await
    })
    .await
}

async fn sync_pull(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::listen::Peer>,
    body: Bytes,
) -> Response {
    let tenant = crate::tls::client_tenant(peer.identity.as_deref()).map(str::to_string);
    sync_call("a pull request", &body, |r: sync::PullRequest| async {
        if foreign(&app, tenant.as_deref(), &r.execution_id, None)? {
            return Err(Error::ExecutionNotFound {
                id: r.execution_id.clone(),
            }
            .into());
        }
        sync::cluster::pull(&app.engine, r).await
    })
    .await
}

async fn sync_chunks(State(app): State<Shared>, body: Bytes) -> Response {
    sync_call("a list of chunk addresses", &body, |h| {
        sync::cluster::chunks(&app.engine, h)
    })
    .await
}

async fn sync_executions(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<crate::listen::Peer>,
) -> Response {
    let tenant = crate::tls::client_tenant(peer.identity.as_deref());
    let listed = sync::cluster::executions(&app.engine).await.map(|mut all| {
        if let Some(t) = tenant {
            all.retain(|s| s.execution.tenant == t);
        }
        all
    });
    sync_reply(listed)
}

fn bad_rpc(what: &str, e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("cannot decode {what}: {e}"),
    )
        .into_response()
}

async fn raft_append(State(app): State<Shared>, body: Bytes) -> Response {
    match postcard::from_bytes(&body) {
        Ok(req) => raft_reply(app.engine.raft.append_entries(req).await),
        Err(e) => bad_rpc("an append-entries request", e),
    }
}

async fn raft_vote(State(app): State<Shared>, body: Bytes) -> Response {
    match postcard::from_bytes(&body) {
        Ok(req) => raft_reply(app.engine.raft.vote(req).await),
        Err(e) => bad_rpc("a vote request", e),
    }
}

async fn raft_pre_vote(State(app): State<Shared>, body: Bytes) -> Response {
    match postcard::from_bytes(&body) {
        Ok(req) => raft_reply(app.engine.raft.pre_vote(req).await),
        Err(e) => bad_rpc("a pre-vote request", e),
    }
}

async fn raft_snapshot(State(app): State<Shared>, body: Bytes) -> Response {
    let t: SnapshotTransfer = match postcard::from_bytes(&body) {
        Ok(t) => t,
        Err(e) => return bad_rpc("a snapshot", e),
    };
    install(&app, &t.vote, &t.meta, t.data).await
}

/// Installs a snapshot whose vote and metadata came as JSON.
async fn install(app: &App, vote: &str, meta: &str, data: Vec<u8>) -> Response {
    let vote = match serde_json::from_str(vote) {
        Ok(v) => v,
        Err(e) => return bad_rpc("a snapshot's vote", e),
    };
    let meta = match serde_json::from_str(meta) {
        Ok(m) => m,
        Err(e) => return bad_rpc("a snapshot's metadata", e),
    };
    let snapshot = openraft::type_config::alias::SnapshotOf::<C, Vec<u8>> {
        meta,
        snapshot: data,
    };
    raft_reply(app.engine.raft.install_full_snapshot(vote, snapshot).await)
}

/// One piece of a snapshot in transfer: appended in order, or refused (the sender starts over).
async fn raft_snapshot_chunk(State(app): State<Shared>, body: Bytes) -> Response {
    let c: SnapshotChunk = match postcard::from_bytes(&body) {
        Ok(c) => c,
        Err(e) => return bad_rpc("a snapshot piece", e),
    };
    if c.total > MAX_SNAPSHOT {
        return bad_rpc(
            "a snapshot piece",
            format!(
                "the snapshot's {} bytes exceed the {MAX_SNAPSHOT} a node takes",
                c.total
            ),
        );
    }
    let mut upload = app.upload.lock();
    if c.offset == 0 {
        *upload = Some((c.transfer.clone(), c.total, Vec::new()));
    }
    match upload.as_mut() {
        Some((id, total, buf))
            if *id == c.transfer
                && *total == c.total
                && buf.len() as u64 == c.offset
                && c.offset + c.data.len() as u64 <= c.total =>
        {
            buf.extend_from_slice(&c.data);
            Json(serde_json::json!({"received": buf.len()})).into_response()
        }
        _ => bad_rpc(
            "a snapshot piece",
            format!(
                "piece at {} of transfer {} does not follow what this node received; send the \
                 snapshot again from its start",
                c.offset, c.transfer
            ),
        ),
    }
}

/// The end of a transfer in pieces: checks the size and hash, then installs it.
async fn raft_snapshot_finish(State(app): State<Shared>, body: Bytes) -> Response {
    let f: SnapshotFinish = match postcard::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return bad_rpc("a snapshot's end", e),
    };
    let taken = app.upload.lock().take();
    let data = match taken {
        Some((id, total, buf))
            if id == f.transfer && total == f.total && buf.len() as u64 == total =>
        {
            buf
        }
        _ => {
            return bad_rpc(
                "a snapshot's end",
                format!(
                    "transfer {} is not complete on this node; send the snapshot again",
                    f.transfer
                ),
            )
        }
    };
    if *blake3::hash(&data).as_bytes() != f.blake3 {
        return bad_rpc(
            "a snapshot",
            "its pieces do not add up to the hash the sender announced",
        );
    }
    install(&app, &f.vote, &f.meta, data).await
}

/// The part of the cluster's messages a caller reaches. A client certificate of tenant `T`
/// (`omium://client/T/name`) names executions and messages inside `T`: the node files them
/// under `T␟<id>` (U+001F) and gives answers back without the prefix, so one tenant's agents
/// can neither read, acknowledge nor vote on another's messages, and ids cannot collide.
/// Nodes and admins see every id as it is stored.
struct Scope(Option<String>);

impl Scope {
    fn of(peer: &crate::listen::Peer) -> Scope {
        Scope(crate::tls::client_tenant(peer.identity.as_deref()).map(|t| format!("{t}\u{1f}")))
    }

    fn id(&self, id: &str) -> String {
        match &self.0 {
            Some(p) => format!("{p}{id}"),
            None => id.to_string(),
        }
    }

    fn broadcast(&self, mut req: BroadcastRequest) -> BroadcastRequest {
        if self.0.is_some() {
            req.execution_id = self.id(&req.execution_id);
            // Chosen here rather than by the coordinator, so that it is inside the scope too.
            let id = req
                .id
                .take()
                .unwrap_or_else(|| ulid::Ulid::new().to_string());
            req.id = Some(self.id(&id));
        }
        req
    }

    fn ack(&self, mut a: AckRequest) -> AckRequest {
        a.message_id = self.id(&a.message_id);
        a
    }

    /// An answer (an error too) as the caller knows its ids.
    async fn reply<T: Serialize>(&self, r: std::result::Result<T, ProposeError>) -> Response {
        let Some(prefix) = &self.0 else {
            return reply(r);
        };
        let answer = match r {
            Ok(v) => Ok(serde_json::to_value(v).expect("answers serialize")),
            Err(e) => Err(propose_response(e)),
        };
        match answer {
            Ok(mut v) => {
                crate::feed::strip(&mut v, prefix);
                Json(v).into_response()
            }
            Err(refusal) => {
                let (parts, body) = refusal.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(mut v) => {
                        crate::feed::strip(&mut v, prefix);
                        (parts.status, Json(v)).into_response()
                    }
                    Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
                }
            }
        }
    }
}

type Caller = axum::extract::ConnectInfo<crate::listen::Peer>;

async fn api_broadcast(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    Json(req): Json<BroadcastRequest>,
) -> Response {
    let scope = Scope::of(&peer);
    scope
        .reply(app.engine.broadcast(&scope.broadcast(req)).await)
        .await
}

async fn api_broadcast_many(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    Json(reqs): Json<Vec<BroadcastRequest>>,
) -> Response {
    let scope = Scope::of(&peer);
    let reqs: Vec<_> = reqs.into_iter().map(|r| scope.broadcast(r)).collect();
    scope.reply(app.engine.broadcast_many(&reqs).await).await
}

async fn api_ack(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    Json(a): Json<AckRequest>,
) -> Response {
    let scope = Scope::of(&peer);
    scope
        .reply(app.engine.acknowledge(&scope.ack(a)).await)
        .await
}

async fn api_ack_many(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    Json(acks): Json<Vec<AckRequest>>,
) -> Response {
    let scope = Scope::of(&peer);
    let acks: Vec<_> = acks.into_iter().map(|a| scope.ack(a)).collect();
    scope
        .reply(app.engine.acknowledge_many(&acks).await.map(|rs| {
            rs.into_iter()
                .map(|r| r.map_err(|e| Box::new(WireError::from_error(&e))))
                .collect::<Vec<std::result::Result<MessageStatus, Box<WireError>>>>()
        }))
        .await
}

async fn api_await(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    Json(req): Json<AwaitRequest>,
) -> Response {
    let scope = Scope::of(&peer);
    let r = app
        .engine
        .await_outcome(
            &scope.id(&req.message_id),
            Duration::from_millis(req.timeout_ms),
        )
        .await;
    scope
        .reply(r.and_then(|m| {
            let failure_id = match (&m.status, req.record) {
                (MessageStatus::Violated { detail, .. }, true) => {
                    Some(record_violation(app.engine.store(), &m, &detail.clone())?)
                }
                _ => None,
            };
            Ok(AwaitReply {
                message: m,
                failure_id,
            })
        }))
        .await
}

#[derive(Deserialize)]
struct StatusRequest {
    execution_id: String,
}

async fn api_status(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    Json(req): Json<StatusRequest>,
) -> Response {
    let scope = Scope::of(&peer);
    scope
        .reply(app.engine.status(&scope.id(&req.execution_id)).await)
        .await
}

#[derive(Deserialize)]
struct MessageRequest {
    message_id: String,
}

async fn api_message(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    Json(req): Json<MessageRequest>,
) -> Response {
    let scope = Scope::of(&peer);
    scope
        .reply(app.engine.message(&scope.id(&req.message_id)).await)
        .await
}

fn membership_error(e: RaftError<C, ClientWriteError<C>>) -> Response {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            propose_response(ProposeError::NotLeader {
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            })
        }
        other => error_response(&Error::ConsensusUnavailable {
            detail: other.to_string(),
        }),
    }
}

/// Makes this node the first voter of a new cluster.
/// The node store's event feed (consensus decisions, sync) as Server-Sent Events
/// ([`crate::feed`]). A client certificate of tenant `T` sees the events of `T`'s executions,
/// with their ids as it knows them; nodes and admins see every event.
async fn events_stream(
    State(app): State<Shared>,
    axum::extract::ConnectInfo(peer): Caller,
    headers: axum::http::HeaderMap,
    axum::extract::Query(mut q): axum::extract::Query<crate::feed::StreamQuery>,
) -> Response {
    let scope = Scope::of(&peer);
    q.execution_id = q.execution_id.as_deref().map(|id| scope.id(id));
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let shape: crate::feed::Shape = match scope.0 {
        None => Arc::new(|_, ce, _| Some(ce)),
        Some(prefix) => Arc::new(move |_, mut ce, _| {
            let subject = ce.get("subject").and_then(serde_json::Value::as_str);
            if !subject.is_some_and(|s| s.starts_with(&prefix)) {
                return None;
            }
            crate::feed::strip(&mut ce, &prefix);
            Some(ce)
        }),
    };
    let start = q.start(&headers);
    crate::feed::sse(app.engine.store().clone(), filter, start, shape)
}

async fn cluster_init(State(app): State<Shared>) -> Response {
    let e = &app.engine;
    let members = BTreeMap::from([(
        e.node_id(),
        BasicNode {
            addr: app.advertise.clone(),
        },
    )]);
    match e.raft.initialize(members).await {
        Ok(()) => {
            let _ = e
                .raft
                .wait(Some(Duration::from_secs(5)))
                .current_leader(e.node_id(), "the first voter leads")
                .await;
            Json(ClusterStatus::of(e)).into_response()
        }
        Err(err) => error_response(&Error::InvalidState {
            execution: String::new(),
            status: "cluster".into(),
            detail: format!("cannot initialize node {}: {err}", e.node_id()),
        }),
    }
}

#[derive(Deserialize)]
struct AddRequest {
    id: u64,
    addr: String,
}

/// Adds a node: as a learner until it has caught up, then as a voter.
async fn cluster_add(State(app): State<Shared>, Json(req): Json<AddRequest>) -> Response {
    let addr = match normalize_addr(&req.addr) {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let raft = &app.engine.raft;
    if let Err(e) = raft.add_learner(req.id, BasicNode { addr }, true).await {
        return membership_error(e);
    }
    match raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id])), false)
        .await
    {
        Ok(_) => Json(ClusterStatus::of(&app.engine)).into_response(),
        Err(e) => membership_error(e),
    }
}

#[derive(Deserialize)]
struct RemoveRequest {
    id: u64,
}

async fn cluster_remove(State(app): State<Shared>, Json(req): Json<RemoveRequest>) -> Response {
    let status = ClusterStatus::of(&app.engine);
    if !status.nodes.contains_key(&req.id) {
        return error_response(&Error::InvalidArgument {
            what: "node id",
            detail: format!(
                "node {} is not a member (members: {})",
                req.id,
                status
                    .nodes
                    .keys()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    match app
        .engine
        .raft
        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([req.id])), false)
        .await
    {
        Ok(_) => Json(ClusterStatus::of(&app.engine)).into_response(),
        Err(e) => membership_error(e),
    }
}

/// Raft health as metric families: the node's `/metrics` and its OTLP metrics export.
fn raft_families(s: &ClusterStatus) -> Vec<omium_engine::prometheus::Family> {
    use omium_engine::prometheus::{Family, Kind};
    let id = s.id.to_string();
    let node = [("node", id.as_str())];
    let gauge = |name, help, v: Option<u64>| {
        let mut f = Family::new(name, Kind::Gauge, help);
        if let Some(v) = v {
            f.value(&node, v as f64);
        }
        f
    };
    vec![
        gauge(
            "omium_raft_term",
            "The node's current Raft term.",
            Some(s.term),
        ),
        gauge(
            "omium_raft_is_leader",
            "1 when this node is the leader.",
            Some(u64::from(s.leader == Some(s.id))),
        ),
        gauge(
            "omium_raft_has_leader",
            "1 when this node knows a leader (it can take requests).",
            Some(u64::from(s.leader.is_some())),
        ),
        gauge(
            "omium_raft_last_log_index",
            "Index of the last entry in the node's log.",
            s.last_log_index,
        ),
        gauge(
            "omium_raft_committed_index",
            "Index of the last entry the node knows committed.",
            s.committed,
        ),
        gauge(
            "omium_raft_applied_index",
            "Index of the last entry applied to the node's state machine.",
            s.last_applied,
        ),
        gauge(
            "omium_raft_snapshot_index",
            "Index of the last entry in the node's snapshot.",
            s.snapshot,
        ),
        gauge(
            "omium_raft_voters",
            "Voters in the membership the node knows.",
            Some(s.voters.len() as u64),
        ),
        gauge(
            "omium_raft_apply_lag",
            "Committed entries not applied yet on this node (sync and consensus lag).",
            s.committed
                .map(|c| c.saturating_sub(s.last_applied.unwrap_or(0))),
        ),
    ]
}

/// Everything a node measures: Raft health, then the node store's analytics.
fn node_families(engine: &Engine) -> Result<Vec<omium_engine::prometheus::Family>> {
    let mut all = raft_families(&ClusterStatus::of(engine));
    all.extend(omium_engine::prometheus::families(engine.store())?);
    Ok(all)
}

/// Raft health in the Prometheus text format, then the node store's analytics.
async fn prometheus(State(app): State<Shared>) -> Response {
    let a = app.clone();
    match tokio::task::spawn_blocking(move || node_families(&a.engine)).await {
        Ok(Ok(families)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            omium_engine::prometheus::render(&families),
        )
            .into_response(),
        Ok(Err(e)) => error_response(&e),
        Err(e) => error_response(&Error::ConsensusUnavailable {
            detail: format!("the metrics task failed: {e}"),
        }),
    }
}

/// Liveness: the process serves HTTP.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: this node is a member that knows a leader (it can take requests).
async fn readyz(State(app): State<Shared>) -> Response {
    let s = ClusterStatus::of(&app.engine);
    let ready = s.leader.is_some() && s.voters.contains(&s.id);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(s)).into_response()
}

async fn cluster_status(State(app): State<Shared>) -> Response {
    Json(ClusterStatus::of(&app.engine)).into_response()
}
