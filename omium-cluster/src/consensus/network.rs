//! Networking: Raft RPCs between nodes and the coordinator API for clients, both over HTTP/2
//! with prior knowledge (h2c; the server is axum/hyper in [`super::node`], the client reqwest).
//!
//! Raft RPC bodies are postcard (`POST /raft/append`, `/raft/vote`, `/raft/snapshot`); every
//! call carries the deadline openraft gives it (`RPCOption::hard_ttl`), and openraft retries
//! replication with backoff. Client API bodies are JSON (`POST /api/…`); [`RemoteClient`]
//! follows the leader (a follower answers `421` naming it), and retries across nodes with
//! backoff until its deadline, which is safe because every request is idempotent (a broadcast
//! carries its id; an agent's first acknowledgement is the one that counts).

use std::future::Future;
use std::time::{Duration, Instant};

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::coordinator::{AckRequest, BroadcastRequest, Broadcasted};
use super::{Message, MessageStatus, TypeConfig as C};
use crate::error::{Error, Result};

/// The network of the embedded one-voter group: there is nobody to talk to. openraft never
/// calls it while the group has one voter; if it did, the call fails plainly.
pub struct NoNetwork;

impl RaftNetworkFactory<C> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoNetwork {
        NoNetwork
    }
}

fn embedded_only<E: From<Unreachable<C>>>() -> E {
    E::from(Unreachable::from_string(
        "embedded consensus has no network; run `omium node` processes for a cluster",
    ))
}

impl RaftNetworkV2<C> for NoNetwork {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(embedded_only())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> std::result::Result<VoteResponse<C>, RPCError<C>> {
        Err(embedded_only())
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<C>,
        _snapshot: SnapshotOf<C, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> std::result::Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(embedded_only())
    }
}

/// `host:port`, `http://host:port` or `https://host:port` → the URL this process reaches it
/// at: `https://` when it speaks mutual TLS to its cluster ([`crate::tls::current`]), else
/// `http://`. Checked.
pub fn normalize_addr(addr: &str) -> Result<String> {
    let secure = crate::tls::current()?.is_some();
    let bare = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr)
        .trim_end_matches('/');
    let bad = |why: &str| Error::InvalidArgument {
        what: "node address",
        detail: format!("{addr:?} {why}; expected host:port, e.g. 127.0.0.1:7001"),
    };
    if addr.starts_with("https://") && !secure {
        return Err(bad(
            "uses https, but this process has no cluster certificate (OMIUM_CLUSTER_CA, \
             OMIUM_CLUSTER_CERT, OMIUM_CLUSTER_KEY)",
        ));
    }
    if addr.starts_with("http://") && secure {
        return Err(bad(
            "uses plain http, but this process speaks mutual TLS to its cluster",
        ));
    }
    let (host, port) = bare.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(bad("has no valid host"));
    }
    port.parse::<u16>()
        .map_err(|_| bad("has no valid port (1-65535)"))?;
    Ok(format!(
        "{}://{bare}",
        if secure { "https" } else { "http" }
    ))
}

/// The TLS error somewhere in `e`'s chain of causes, if any: ours (the node's certificate is
/// not of our CA), or the node's alert (ours is not of its CA).
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                // The alert of the other side arrives as text (after the handshake, in TLS 1.3).
                let text = inner.to_string();
                if text.starts_with("received fatal alert") {
                    return Some(text);
                }
                // An io::Error's `source()` skips the error it wraps.
                cause = Some(inner);
                continue;
            }
        }
        cause = err.source();
    }
    None
}

fn http_client() -> Result<reqwest::Client> {
    crate::install_tls_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(files) = crate::tls::current()? {
        builder = builder.use_preconfigured_tls(crate::tls::client_config(&files)?);
    }
    builder
        .http2_prior_knowledge()
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::ConsensusUnavailable {
            detail: format!("cannot build the HTTP/2 client: {e}"),
        })
}

/// Connects a node to its peers.
#[derive(Clone)]
pub struct HttpNetworkFactory {
    client: reqwest::Client,
}

impl HttpNetworkFactory {
    pub fn new() -> Result<Self> {
        Ok(HttpNetworkFactory {
            client: http_client()?,
        })
    }
}

/// The connection to one peer.
pub struct HttpNetwork {
    client: reqwest::Client,
    target: u64,
    base: String,
}

impl RaftNetworkFactory<C> for HttpNetworkFactory {
    type Network = HttpNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> HttpNetwork {
        HttpNetwork {
            client: self.client.clone(),
            target,
            base: normalize_addr(&node.addr).unwrap_or_else(|_| node.addr.clone()),
        }
    }
}

/// The postcard body of a snapshot transfer in one request (`/raft/snapshot`).
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotTransfer {
    pub vote: String,
    pub meta: String,
    pub data: Vec<u8>,
}

/// A snapshot this large or larger travels in pieces (`/raft/snapshot/chunk`, then
/// `/raft/snapshot/finish`), so a follower of any size catches up through bodies far below
/// the request limit. Smaller ones go in one request, which nodes of earlier releases take.
pub const SNAPSHOT_CHUNK: usize = 8 << 20;

/// One piece of a snapshot in transfer.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotChunk {
    /// Names the transfer: a new one replaces any unfinished one on the receiver.
    pub transfer: String,
    pub offset: u64,
    /// The whole snapshot's size.
    pub total: u64,
    pub data: Vec<u8>,
}

/// The end of a transfer in pieces: what to install, and the hash the pieces must add up to.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFinish {
    pub transfer: String,
    pub vote: String,
    pub meta: String,
    pub total: u64,
    pub blake3: [u8; 32],
}

impl HttpNetwork {
    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        ttl: Duration,
    ) -> std::result::Result<Vec<u8>, RpcFailure> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .client
            .post(&url)
            .timeout(ttl)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    RpcFailure::Timeout
                } else {
                    RpcFailure::Unreachable(format!("node {} at {url}: {e}", self.target))
                }
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| {
            RpcFailure::Network(format!(
                "node {} at {url}: reading the reply: {e}",
                self.target
            ))
        })?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(RpcFailure::NoRoute);
        }
        if !status.is_success() {
            return Err(RpcFailure::Network(format!(
                "node {} at {url} answered {status}: {}",
                self.target,
                String::from_utf8_lossy(&bytes)
            )));
        }
        Ok(bytes.to_vec())
    }

    /// A vote or Pre-Vote RPC. A node of a build without Pre-Vote answers 404 to it: that
    /// counts as granting, as openraft does for a network without Pre-Vote (the election that
    /// follows is the ordinary one).
    async fn vote_rpc(
        &self,
        path: &str,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<C>, RPCError<C>> {
        let leader = rpc.vote.leader_id().node_id;
        let ttl = option.hard_ttl();
        match self.post(path, encode(&rpc), ttl).await {
            Ok(b) => Ok(decode("a vote reply", &b)?),
            Err(RpcFailure::NoRoute) if path == "/raft/pre_vote" => {
                Ok(VoteResponse::new(rpc.vote, None, true))
            }
            Err(f) => Err(f.rpc(self.target, ttl, openraft::network::RPCTypes::Vote, leader)),
        }
    }
}

enum RpcFailure {
    Timeout,
    Unreachable(String),
    Network(String),
    /// The node does not serve this path (an older build, during a rolling upgrade).
    NoRoute,
}

impl RpcFailure {
    fn rpc(
        self,
        target: u64,
        ttl: Duration,
        action: openraft::network::RPCTypes,
        leader: u64,
    ) -> RPCError<C> {
        match self {
            RpcFailure::Timeout => RPCError::Timeout(openraft::error::Timeout {
                action,
                id: leader,
                target,
                timeout: ttl,
            }),
            RpcFailure::Unreachable(s) => RPCError::Unreachable(Unreachable::from_string(s)),
            RpcFailure::Network(s) => RPCError::Network(NetworkError::from_string(s)),
            RpcFailure::NoRoute => RPCError::Network(NetworkError::from_string(format!(
                "node {target} does not serve this Raft RPC (an older Omium)"
            ))),
        }
    }
}

/// The entries one append request carries at most, in bytes (one larger entry goes alone): far
/// below the 64 MiB a node takes in one request, and small enough to be written within a
/// deadline of a few hundred milliseconds.
pub const APPEND_BUDGET: usize = 8 << 20;

/// Cuts `entries` to the longest prefix (at least one entry) of at most `budget` encoded bytes.
/// Returns the last kept entry's log id when it cut any.
fn within_budget(
    entries: &mut Vec<openraft::type_config::alias::EntryOf<C>>,
    budget: usize,
) -> Option<openraft::type_config::alias::LogIdOf<C>> {
    let mut total = 0usize;
    let keep = entries
        .iter()
        .position(|e| {
            total += postcard::experimental::serialized_size(e).unwrap_or(usize::MAX / 2);
            total > budget
        })?
        .max(1);
    if keep == entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
}

/// The deadline a request of `bytes` deserves at the very least: a second per 8 MiB, as the
/// receiver writes what it gets durably before it answers (a heartbeat keeps openraft's).
fn transfer_time(bytes: usize) -> Duration {
    Duration::from_micros(bytes as u64 / 8)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard encodes Raft messages")
}

fn decode<T: DeserializeOwned>(what: &str, b: &[u8]) -> std::result::Result<T, NetworkError<C>> {
    postcard::from_bytes(b)
        .map_err(|e| NetworkError::from_string(format!("cannot decode {what}: {e}")))
}

impl RaftNetworkV2<C> for HttpNetwork {
    type SnapshotData = Vec<u8>;

    /// Sends at most [`APPEND_BUDGET`] bytes of entries (always at least one): openraft hands
    /// over up to `max_payload_entries` entries whatever their size, and a follower far behind
    /// over large entries would otherwise be sent more than a node takes in one request, again
    /// and again. What was left out is acknowledged as a partial success, so openraft sends it
    /// next. A large request gets time in proportion to its size.
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<C>, RPCError<C>> {
        let leader = rpc.vote.leader_id().node_id;
        let kept = within_budget(&mut rpc.entries, APPEND_BUDGET);
        let body = encode(&rpc);
        let ttl = option.hard_ttl().max(transfer_time(body.len()));
        let b = self.post("/raft/append", body, ttl).await.map_err(|f| {
            f.rpc(
                self.target,
                ttl,
                openraft::network::RPCTypes::AppendEntries,
                leader,
            )
        })?;
        let reply: AppendEntriesResponse<C> = decode("an append-entries reply", &b)?;
        Ok(match (reply, kept) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (reply, _) => reply,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<C>, RPCError<C>> {
        self.vote_rpc("/raft/vote", rpc, option).await
    }

    /// Pre-Vote (`raft_config` enables it): a node that lost touch with the leader asks whether
    /// the others would vote for it before it raises its term, so a node that was only slow or
    /// cut off cannot depose a healthy leader when it comes back.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<C>, RPCError<C>> {
        self.vote_rpc("/raft/pre_vote", rpc, option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> std::result::Result<SnapshotResponse<C>, StreamingError<C>> {
        let leader = vote.leader_id().node_id;
        let vote = serde_json::to_string(&vote).expect("votes encode as JSON");
        let meta =
            serde_json::to_string(&snapshot.meta).expect("snapshot metadata encodes as JSON");
        // A snapshot is bigger than a heartbeat: give it at least ten seconds (per piece).
        let ttl = option.hard_ttl().max(Duration::from_secs(10));
        let data = snapshot.snapshot;
        let sent = if data.len() < SNAPSHOT_CHUNK {
            let body = SnapshotTransfer { vote, meta, data };
            self.post("/raft/snapshot", encode(&body), ttl).await
        } else {
            let transfer = ulid::Ulid::new().to_string();
            let total = data.len() as u64;
            let mut sent = Ok(Vec::new());
            for (i, piece) in data.chunks(SNAPSHOT_CHUNK).enumerate() {
                let chunk = SnapshotChunk {
                    transfer: transfer.clone(),
                    offset: (i * SNAPSHOT_CHUNK) as u64,
                    total,
                    data: piece.to_vec(),
                };
                sent = self.post("/raft/snapshot/chunk", encode(&chunk), ttl).await;
                if sent.is_err() {
                    break;
                }
            }
            match sent {
                Ok(_) => {
                    let finish = SnapshotFinish {
                        transfer,
                        vote,
                        meta,
                        total,
                        blake3: *blake3::hash(&data).as_bytes(),
                    };
                    self.post("/raft/snapshot/finish", encode(&finish), ttl)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        let b = sent.map_err(|f| {
            match f.rpc(
                self.target,
                ttl,
                openraft::network::RPCTypes::InstallSnapshot,
                leader,
            ) {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => {
                    StreamingError::Network(NetworkError::from_string(r.to_string()))
                }
            }
        })?;
        Ok(decode("a snapshot reply", &b)?)
    }
}

/// An error as the HTTP API sends it.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub execution: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub failure_id: Option<String>,
    /// For `not_leader`: the leader's address, when known.
    #[serde(default)]
    pub leader: Option<String>,
}

impl WireError {
    pub(crate) fn from_error(e: &Error) -> WireError {
        let mut w = WireError {
            code: e.code().into(),
            message: e.to_string(),
            execution: None,
            message_id: None,
            reason: None,
            detail: None,
            failure_id: None,
            leader: None,
        };
        match e {
            Error::InvalidMessage { execution, detail } => {
                w.execution = Some(execution.clone());
                w.detail = Some(detail.clone());
            }
            Error::MessageNotFound { id } => w.message_id = Some(id.clone()),
            Error::SyncConflict { execution, .. } => w.execution = Some(execution.clone()),
            Error::NotATarget { detail } => w.detail = Some(detail.clone()),
            Error::ConsensusViolation {
                message_id,
                execution,
                reason,
                detail,
                failure_id,
            } => {
                w.message_id = Some(message_id.clone());
                w.execution = Some(execution.clone());
                w.reason = Some(reason.clone());
                w.detail = Some(detail.clone());
                w.failure_id = failure_id.clone();
            }
            _ => {}
        }
        w
    }

    fn into_error(self) -> Error {
        let or = |o: Option<String>| o.unwrap_or_default();
        match self.code.as_str() {
            "invalid_message" => Error::InvalidMessage {
                execution: or(self.execution),
                detail: self.detail.unwrap_or(self.message),
            },
            "message_not_found" => Error::MessageNotFound {
                id: or(self.message_id),
            },
            "not_a_target" => Error::NotATarget {
                detail: self.detail.unwrap_or(self.message),
            },
            "consensus_violation" => Error::ConsensusViolation {
                message_id: or(self.message_id),
                execution: or(self.execution),
                reason: or(self.reason),
                detail: self.detail.unwrap_or(self.message),
                failure_id: self.failure_id,
            },
            "invalid_argument" => Error::InvalidArgument {
                what: "request",
                detail: self.message,
            },
            "sync_conflict" => Error::SyncConflict {
                execution: or(self.execution),
                detail: self.message,
            },
            code if crate::error::known_code(code) != "server_error"
                && code != "consensus_unavailable" =>
            {
                Error::Remote {
                    code: crate::error::known_code(code),
                    message: self.message,
                }
            }
            _ => Error::ConsensusUnavailable {
                detail: self.message,
            },
        }
    }
}

/// `POST /api/await` body and reply.
#[derive(Serialize, Deserialize)]
pub(crate) struct AwaitRequest {
    pub message_id: String,
    pub timeout_ms: u64,
    /// Record a violation in the node's store (the client has no store of its own).
    pub record: bool,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct AwaitReply {
    pub message: Message,
    pub failure_id: Option<String>,
}

/// A client of a cluster's coordinator API.
pub struct RemoteClient {
    client: reqwest::Client,
    nodes: Vec<String>,
    /// The node that answered last (most likely the leader).
    preferred: parking_lot::Mutex<String>,
    /// How long a call keeps retrying through elections and restarts.
    patience: Duration,
}

impl RemoteClient {
    pub fn new(nodes: &[String]) -> Result<RemoteClient> {
        if nodes.is_empty() {
            return Err(Error::InvalidArgument {
                what: "cluster nodes",
                detail: "no node address given; expected at least one host:port".into(),
            });
        }
        let nodes = nodes
            .iter()
            .map(|n| normalize_addr(n))
            .collect::<Result<Vec<_>>>()?;
        Ok(RemoteClient {
            client: http_client()?,
            preferred: parking_lot::Mutex::new(nodes[0].clone()),
            nodes,
            patience: Duration::from_secs(15),
        })
    }

    /// How long a call keeps retrying (15 s by default; zero: one attempt per node).
    pub fn with_patience(mut self, patience: Duration) -> RemoteClient {
        self.patience = patience;
        self
    }

    /// POSTs a JSON request, following the leader and retrying until `patience` runs out.
    pub(crate) async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &Q,
        request_timeout: Duration,
    ) -> Result<R> {
        let body = serde_json::to_vec(body).map_err(|e| Error::InvalidArgument {
            what: "request",
            detail: e.to_string(),
        })?;
        let (url, bytes) = self
            .call_raw(path, body, "application/json", request_timeout)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::ConsensusUnavailable {
            detail: format!("{url} sent a reply that does not decode: {e}"),
        })
    }

    /// POSTs a postcard request (the `/sync/*` calls), as [`RemoteClient::call`] does.
    pub(crate) async fn call_postcard<Q: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &Q,
        request_timeout: Duration,
    ) -> Result<R> {
        let body = postcard::to_allocvec(body).expect("postcard encodes requests");
        let (url, bytes) = self
            .call_raw(path, body, "application/octet-stream", request_timeout)
            .await?;
        postcard::from_bytes(&bytes).map_err(|e| Error::ConsensusUnavailable {
            detail: format!("{url} sent a reply that does not decode: {e}"),
        })
    }

    /// POSTs `body`, following the leader and retrying until `patience` runs out; the URL
    /// that answered and its reply.
    async fn call_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &'static str,
        request_timeout: Duration,
    ) -> Result<(String, axum::body::Bytes)> {
        let deadline = Instant::now() + self.patience + request_timeout;
        let mut target = self.preferred.lock().clone();
        let mut backoff = Duration::from_millis(20);
        let mut last_error;
        let mut next = 0usize;
        loop {
            let url = format!("{target}{path}");
            let sent = self
                .client
                .post(&url)
                .timeout(request_timeout)
                .header("content-type", content_type)
                .body(body.clone())
                .send()
                .await;
            let mut follow: Option<String> = None;
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp.bytes().await.unwrap_or_default();
                    if status.is_success() {
                        *self.preferred.lock() = target.clone();
                        return Ok((url, bytes));
                    }
                    let wire: Option<WireError> = serde_json::from_slice(&bytes).ok();
                    match wire {
                        Some(w) if w.code == "not_leader" => {
                            last_error = format!("{url}: {}", w.message);
                            follow = w.leader;
                        }
                        Some(w) if w.code == "consensus_unavailable" => {
                            last_error = format!("{url}: {}", w.message)
                        }
                        Some(w) => return Err(w.into_error()),
                        None => {
                            last_error = format!(
                                "{url} answered {status}: {}",
                                String::from_utf8_lossy(&bytes)
                            )
                        }
                    }
                }
                Err(e) => {
                    // A certificate the other side refuses is refused again: no retrying.
                    if let Some(tls) = tls_failure(&e) {
                        return Err(Error::ConsensusUnavailable {
                            detail: format!(
                                "{url}: TLS: {tls}; the node and this process must hold \
                                 certificates of the same cluster CA (OMIUM_CLUSTER_CA, \
                                 OMIUM_CLUSTER_CERT, OMIUM_CLUSTER_KEY)"
                            ),
                        });
                    }
                    last_error = format!("{url}: {e}")
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::ConsensusUnavailable {
                    detail: format!(
                        "no node of {} completed the request within {:?}; last error: {last_error}",
                        self.nodes.join(", "),
                        self.patience + request_timeout
                    ),
                });
            }
            target = match follow.and_then(|l| normalize_addr(&l).ok()) {
                Some(l) => l,
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                    next = (next + 1) % self.nodes.len();
                    self.nodes[next].clone()
                }
            };
        }
    }

    const SHORT: Duration = Duration::from_secs(5);

    pub async fn broadcast(&self, req: &BroadcastRequest) -> Result<Broadcasted> {
        // Fix the id before the first attempt, so that every retry is the same message.
        let mut req = req.clone();
        req.id
            .get_or_insert_with(|| crate::store::new_id().to_string());
        self.call("/api/broadcast", &req, Self::SHORT).await
    }

    pub async fn broadcast_many(&self, reqs: &[BroadcastRequest]) -> Result<Vec<Broadcasted>> {
        let reqs: Vec<BroadcastRequest> = reqs
            .iter()
            .cloned()
            .map(|mut r| {
                r.id.get_or_insert_with(|| crate::store::new_id().to_string());
                r
            })
            .collect();
        self.call("/api/broadcast_many", &reqs, Self::SHORT).await
    }

    pub async fn acknowledge(&self, a: &AckRequest) -> Result<MessageStatus> {
        self.call("/api/ack", a, Self::SHORT).await
    }

    pub async fn acknowledge_many(
        &self,
        acks: &[AckRequest],
    ) -> Result<Vec<Result<MessageStatus>>> {
        let rs: Vec<std::result::Result<MessageStatus, Box<WireError>>> =
            self.call("/api/ack_many", &acks, Self::SHORT).await?;
        Ok(rs
            .into_iter()
            .map(|r| r.map_err(|w| w.into_error()))
            .collect())
    }

    /// Waits on the leader for the outcome; the message whatever its status.
    pub async fn await_outcome(&self, message_id: &str, timeout: Duration) -> Result<Message> {
        Ok(self.await_reply(message_id, timeout, false).await?.message)
    }

    pub(crate) async fn await_reply(
        &self,
        message_id: &str,
        timeout: Duration,
        record: bool,
    ) -> Result<AwaitReply> {
        let req = AwaitRequest {
            message_id: message_id.into(),
            timeout_ms: timeout.as_millis() as u64,
            record,
        };
        self.call("/api/await", &req, timeout + Self::SHORT).await
    }

    pub async fn status(&self, execution_id: &str) -> Result<Vec<Message>> {
        self.call(
            "/api/status",
            &serde_json::json!({"execution_id": execution_id}),
            Self::SHORT,
        )
        .await
    }

    pub async fn message(&self, id: &str) -> Result<Message> {
        self.call(
            "/api/message",
            &serde_json::json!({"message_id": id}),
            Self::SHORT,
        )
        .await
    }

    /// Any admin call (`/cluster/…`) with a JSON reply.
    pub async fn admin(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        self.call(path, body, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;
    use openraft::type_config::alias::EntryOf;

    use super::*;

    /// An entry of about `bytes` encoded bytes at `index`.
    fn entry(index: u64, bytes: usize) -> EntryOf<C> {
        EntryOf::<C>::new_normal(
            log_id::<C>(1, 1, index),
            super::super::Command::Expire {
                message_id: "x".repeat(bytes),
                timeout_ms: 0,
                at_ms: 0,
            },
        )
    }

    #[test]
    fn an_append_carries_at_most_its_budget_and_names_the_last_entry_it_kept() {
        let mut entries: Vec<_> = (1..=5).map(|i| entry(i, 3 << 20)).collect();
        let kept = within_budget(&mut entries, APPEND_BUDGET);
        assert_eq!(
            entries.len(),
            2,
            "two 3 MiB entries fit in 8 MiB, three do not"
        );
        assert_eq!(kept, Some(log_id::<C>(1, 1, 2)));
        assert!(encode(&entries).len() <= APPEND_BUDGET);
    }

    #[test]
    fn an_entry_larger_than_the_budget_goes_alone_and_small_batches_go_whole() {
        let mut big: Vec<_> = (1..=3).map(|i| entry(i, 12 << 20)).collect();
        assert_eq!(
            within_budget(&mut big, APPEND_BUDGET),
            Some(log_id::<C>(1, 1, 1))
        );
        assert_eq!(big.len(), 1);

        let mut one = vec![entry(7, 12 << 20)];
        assert_eq!(within_budget(&mut one, APPEND_BUDGET), None);
        assert_eq!(one.len(), 1);

        let mut small: Vec<_> = (1..=1000).map(|i| entry(i, 100)).collect();
        assert_eq!(within_budget(&mut small, APPEND_BUDGET), None);
        assert_eq!(small.len(), 1000);

        let mut none: Vec<EntryOf<C>> = Vec::new();
        assert_eq!(within_budget(&mut none, APPEND_BUDGET), None);
    }

    #[test]
    fn a_large_request_gets_time_for_its_size() {
        assert!(transfer_time(8 << 20) >= Duration::from_secs(1));
        assert!(transfer_time(64 << 10) < Duration::from_millis(50));
    }
}
