//! The coordinator: `broadcast`, `acknowledge`, `await_agreement`, `status`.
//!
//! [`Engine`] is the coordinator over a Raft group this process runs (async; used by cluster
//! nodes). [`Coordinator`] is the blocking API the bindings and the CLI use: over an embedded
//! one-voter group in the local store (no network), or over a cluster through any of its
//! nodes' HTTP API — the same calls either way; only [`CoordinatorConfig`] differs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;

use super::network::{NoNetwork, RemoteClient};
use super::sm::Reader;
use super::{Command, LogStore, Message, MessageStatus, NewMessage, Raft, Reply, StateMachine};
use crate::error::{Error, Result};
use crate::policy::Trigger;
use crate::recovery::FailureInput;
use crate::store::{now_ms, Store};
use omium_engine::prelude::*;
use parking_lot::Mutex;

/// What a broadcast carries.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct BroadcastRequest {
    pub execution_id: String,
    pub sender: String,
    pub targets: Vec<String>,
    pub message: serde_json::Value,
    /// A JSON Schema the message must satisfy; an invalid message is refused, not appended.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// How many targets must acknowledge (or vote the same value); default: a majority.
    #[serde(default)]
    pub quorum: Option<u32>,
    /// The message id; chosen by the coordinator when absent. A retry with the same id is
    /// applied once.
    #[serde(default)]
    pub id: Option<String>,
}

/// Where a broadcast message landed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Broadcasted {
    pub id: String,
    pub execution_id: String,
    /// 1-based position in the execution's total order.
    pub seq: u64,
    pub log_index: u64,
}

/// An acknowledgement (a vote when `vote` is given).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AckRequest {
    pub message_id: String,
    pub agent: String,
    #[serde(default)]
    pub vote: Option<serde_json::Value>,
}

/// Checks a broadcast and turns it into the command that is appended. Everything a message can
/// be refused for is checked here, before the log sees it.
pub fn prepare(req: &BroadcastRequest) -> Result<NewMessage> {
    let invalid = |detail: String| Error::InvalidMessage {
        execution: req.execution_id.clone(),
        detail,
    };
    if req.execution_id.is_empty() {
        return Err(Error::InvalidArgument {
            what: "execution_id",
            detail: "empty; give the id of the execution the message belongs to".into(),
        });
    }
    if req.sender.is_empty() {
        return Err(invalid("the sender agent id is empty".into()));
    }
    if req.targets.is_empty() {
        return Err(invalid(
            "no target agents; a message needs at least one target to agree on it".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &req.targets {
        if t.is_empty() {
            return Err(invalid("a target agent id is empty".into()));
        }
        if !seen.insert(t) {
            return Err(invalid(format!("target {t:?} is listed twice")));
        }
    }
    let n = req.targets.len() as u32;
    let quorum = req.quorum.unwrap_or(n / 2 + 1);
    if quorum == 0 || quorum > n {
        return Err(invalid(format!(
            "quorum {quorum} is out of range: expected 1 to {n} (the number of targets)"
        )));
    }
    if let Some(schema) = &req.schema {
        let validator = jsonschema::validator_for(schema).map_err(|e| Error::InvalidArgument {
            what: "schema",
            detail: format!("not a valid JSON Schema: {e} (at {})", e.schema_path()),
        })?;
        let problems: Vec<String> = validator
            .iter_errors(&req.message)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("at {}: {e}", if at.is_empty() { "/" } else { &at })
            })
            .collect();
        if !problems.is_empty() {
            return Err(invalid(format!(
                "the message does not match its schema: {}",
                problems.join("; ")
            )));
        }
    }
    let id = match &req.id {
        Some(id) => {
            // A tenant's ids are `<tenant>␟<ULID>` (the node's API scopes client certificates).
            let own = id.rsplit('\u{1f}').next().unwrap_or(id);
            own.parse::<ulid::Ulid>()
                .map_err(|e| Error::InvalidArgument {
                    what: "message id",
                    detail: format!("{id:?} is not a ULID ({e})"),
                })?;
            id.clone()
        }
        None => crate::store::new_id().to_string(),
    };
    Ok(NewMessage {
        id,
        execution_id: req.execution_id.clone(),
        sender: req.sender.clone(),
        targets: req.targets.clone(),
        // serde_json's maps are ordered: this text is canonical, so equal votes compare equal.
        payload: req.message.to_string(),
        quorum,
        at_ms: now_ms(),
    })
}

/// Why a proposal did not go through on this node.
#[derive(Debug)]
pub enum ProposeError {
    /// This node is not the leader; the leader's address when known.
    NotLeader {
        leader: Option<(u64, String)>,
    },
    Failed(Error),
}

impl From<Error> for ProposeError {
    fn from(e: Error) -> Self {
        ProposeError::Failed(e)
    }
}

impl ProposeError {
    /// As an [`Error`] for callers that cannot follow the leader themselves.
    pub fn into_error(self) -> Error {
        match self {
            ProposeError::Failed(e) => e,
            ProposeError::NotLeader { leader } => Error::ConsensusUnavailable {
                detail: match leader {
                    Some((id, addr)) => {
                        format!("this node is not the leader; node {id} at {addr} is")
                    }
                    None => {
                        "no leader elected yet (a majority of the voters must be up); retry shortly"
                            .into()
                    }
                },
            },
        }
    }
}

pub type ProposeResult<T> = std::result::Result<T, ProposeError>;

/// The coordinator over a Raft group run by this process.
pub struct Engine {
    pub(crate) raft: Raft,
    sm: StateMachine,
    store: Store,
    node_id: u64,
}

/// Raft timing shared by nodes and the embedded group: heartbeats every 50 ms and an election
/// after 200–400 ms of silence, so a lost leader is replaced within half a second; Pre-Vote
/// keeps a node that was only slow from deposing a healthy leader with a needless election
/// (`docs/performance.md`, consensus, has the measurements behind the numbers).
pub fn raft_config(cluster: &str) -> Result<Arc<openraft::Config>> {
    let c = openraft::Config {
        cluster_name: cluster.into(),
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        enable_pre_vote: Some(true),
        max_payload_entries: 1000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    };
    c.validate()
        .map(Arc::new)
        .map_err(|e| Error::InvalidArgument {
            what: "raft configuration",
            detail: e.to_string(),
        })
}

/// The consensus group running on a store in this process, if any: one Raft node per store
/// (two would write the same log).
#[derive(Default)]
struct EngineSlot(Mutex<Option<std::sync::Weak<Engine>>>);

impl omium_storage::Extension for EngineSlot {}

/// The embedded coordinator over that group, shared by everything in this process that asks
/// for it (a binding's `omium.consensus`, the workflow executor).
#[derive(Default)]
struct CoordinatorSlot(Mutex<std::sync::Weak<Shared>>);

impl omium_storage::Extension for CoordinatorSlot {}

impl Engine {
    /// Starts the Raft group of `store` with `network`. Must run inside a tokio runtime.
    pub async fn start<N>(store: &Store, node_id: u64, network: N) -> Result<Arc<Engine>>
    where
        N: openraft::network::RaftNetworkFactory<super::TypeConfig>,
        N::Network: openraft::network::NetSnapshot<super::TypeConfig, SnapshotData = Vec<u8>>,
    {
        {
            let slot = store.extension_or_insert_with(EngineSlot::default);
            let mut guard = slot.0.lock();
            if guard.as_ref().is_some_and(|w| w.strong_count() > 0) {
                return Err(Error::InvalidState {
                    execution: String::new(),
                    status: "consensus running".into(),
                    detail: format!(
                        "store {} already runs a consensus group in this process; share its \
                         coordinator instead of opening a second one",
                        store.path().display()
                    ),
                });
            }
            *guard = None;
        }
        let log = LogStore::new(store)?;
        let sm = StateMachine::new(store)?;
        let raft = Raft::new(node_id, raft_config("omium")?, network, log, sm.clone())
            .await
            .map_err(|e| Error::ConsensusUnavailable {
                detail: format!("cannot start Raft node {node_id}: {e}"),
            })?;
        let engine = Arc::new(Engine {
            raft,
            sm,
            store: store.clone(),
            node_id,
        });
        *store.extension_or_insert_with(EngineSlot::default).0.lock() =
            Some(Arc::downgrade(&engine));
        Ok(engine)
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applied messages on this node (not necessarily the latest; see [`Engine::status`]).
    pub fn reader(&self) -> Reader {
        self.sm.reader()
    }

    /// Appends a command and waits for it to be committed and applied.
    pub async fn propose(&self, cmd: Command) -> ProposeResult<Reply> {
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(r.data),
            Err(e) => Err(map_write_error(e)),
        }
    }

    pub async fn broadcast(&self, req: &BroadcastRequest) -> ProposeResult<Broadcasted> {
        let m = prepare(req)?;
        let (id, execution_id) = (m.id.clone(), m.execution_id.clone());
        match self.propose(Command::Broadcast(m)).await? {
            Reply::Broadcast { seq, log_index } => Ok(Broadcasted {
                id,
                execution_id,
                seq,
                log_index,
            }),
            other => Err(unexpected(other).into()),
        }
    }

    /// Many broadcasts as one log entry (one append, one fsync, one replication round).
    pub async fn broadcast_many(
        &self,
        reqs: &[BroadcastRequest],
    ) -> ProposeResult<Vec<Broadcasted>> {
        let ms = reqs.iter().map(prepare).collect::<Result<Vec<_>>>()?;
        let keys: Vec<(String, String)> = ms
            .iter()
            .map(|m| (m.id.clone(), m.execution_id.clone()))
            .collect();
        let cmd = Command::Batch(ms.into_iter().map(Command::Broadcast).collect());
        match self.propose(cmd).await? {
            Reply::Batch(replies) => replies
                .into_iter()
                .zip(keys)
                .map(|(r, (id, execution_id))| match r {
                    Reply::Broadcast { seq, log_index } => Ok(Broadcasted {
                        id,
                        execution_id,
                        seq,
                        log_index,
                    }),
                    other => Err(unexpected(other).into()),
                })
                .collect(),
            other => Err(unexpected(other).into()),
        }
    }

    pub async fn acknowledge(&self, ack: &AckRequest) -> ProposeResult<MessageStatus> {
        let cmd = ack_command(ack)?;
        status_reply(self.propose(cmd).await?, &ack.message_id).map_err(Into::into)
    }

    /// Many acknowledgements as one log entry.
    pub async fn acknowledge_many(
        &self,
        acks: &[AckRequest],
    ) -> ProposeResult<Vec<Result<MessageStatus>>> {
        let cmds = acks.iter().map(ack_command).collect::<Result<Vec<_>>>()?;
        match self.propose(Command::Batch(cmds)).await? {
            Reply::Batch(rs) => Ok(rs
                .into_iter()
                .zip(acks)
                .map(|(r, a)| status_reply(r, &a.message_id))
                .collect()),
            other => Err(unexpected(other).into()),
        }
    }

    /// The messages of an execution in their agreed order, as of a linearizable read: every
    /// write acknowledged before this call is seen.
    pub async fn status(&self, execution_id: &str) -> ProposeResult<Vec<Message>> {
        self.linearize().await?;
        self.sm
            .reader()
            .messages(execution_id)
            .map_err(|e| storage_io("reading consensus messages", e).into())
    }

    /// One message, as of a linearizable read.
    pub async fn message(&self, id: &str) -> ProposeResult<Message> {
        self.linearize().await?;
        self.sm
            .reader()
            .message(id)
            .map_err(|e| storage_io("reading a consensus message", e))?
            .ok_or_else(|| Error::MessageNotFound { id: id.into() }.into())
    }

    pub(crate) async fn linearize(&self) -> ProposeResult<()> {
        match self
            .raft
            .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
            .await
        {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(
                f,
            ))) => Err(ProposeError::NotLeader {
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Waits until the message is agreed or violated, at most `timeout`. When time runs out a
    /// still-pending message is expired through the log (so every node agrees it timed out).
    /// A violation is recorded as a `consensus_violation` failure through
    /// [`Store::start_recovery`] when `record` is set (bindings that run their own recovery loop
    /// pass `false` and raise inside the step instead).
    pub async fn await_agreement(
        &self,
        message_id: &str,
        timeout: Duration,
        record: bool,
    ) -> ProposeResult<Message> {
        let m = self.await_outcome(message_id, timeout).await?;
        finish(&self.store, m, record).map_err(Into::into)
    }

    /// Waits as [`Engine::await_agreement`] does, and returns the message whatever its outcome.
    pub async fn await_outcome(
        &self,
        message_id: &str,
        timeout: Duration,
    ) -> ProposeResult<Message> {
        let deadline = Instant::now() + timeout;
        let mut applied = self.sm.watch();
        let reader = self.sm.reader();
        let m = loop {
            applied.borrow_and_update();
            if let Some(m) = reader
                .message(message_id)
                .map_err(|e| storage_io("reading a consensus message", e))?
            {
                if m.status.is_final() {
                    break m;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let cmd = Command::Expire {
                    message_id: message_id.into(),
                    timeout_ms: timeout.as_millis() as u64,
                    at_ms: now_ms(),
                };
                status_reply(self.propose(cmd).await?, message_id)?;
                break reader
                    .message(message_id)
                    .map_err(|e| storage_io("reading a consensus message", e))?
                    .ok_or_else(|| Error::MessageNotFound {
                        id: message_id.into(),
                    })?;
            }
            let _ = tokio::time::timeout(left, applied.changed()).await;
        };
        Ok(m)
    }
}

fn ack_command(a: &AckRequest) -> Result<Command> {
    if a.agent.is_empty() {
        return Err(Error::InvalidArgument {
            what: "agent",
            detail: "empty; give the id of the acknowledging agent".into(),
        });
    }
    let own = a
        .message_id
        .rsplit('\u{1f}')
        .next()
        .unwrap_or(&a.message_id);
    if own.parse::<ulid::Ulid>().is_err() {
        return Err(Error::MessageNotFound {
            id: a.message_id.clone(),
        });
    }
    Ok(Command::Ack {
        message_id: a.message_id.clone(),
        agent: a.agent.clone(),
        vote: a.vote.as_ref().map(|v| v.to_string()),
        at_ms: now_ms(),
    })
}

fn status_reply(r: Reply, message_id: &str) -> Result<MessageStatus> {
    match r {
        Reply::Status(s) => Ok(s),
        Reply::Rejected { code, detail } => Err(rejected(&code, detail, message_id)),
        other => Err(unexpected(other)),
    }
}

fn rejected(code: &str, detail: String, message_id: &str) -> Error {
    match code {
        "message_not_found" => Error::MessageNotFound {
            id: message_id.into(),
        },
        _ => Error::NotATarget { detail },
    }
}

pub(crate) fn unexpected(r: Reply) -> Error {
    Error::ConsensusUnavailable {
        detail: format!("unexpected reply from the state machine: {r:?}"),
    }
}

fn storage_io(context: &str, e: std::io::Error) -> Error {
    Error::ConsensusUnavailable {
        detail: format!("{context}: {e}"),
    }
}

fn unavailable(e: impl std::fmt::Display) -> ProposeError {
    ProposeError::Failed(Error::ConsensusUnavailable {
        detail: e.to_string(),
    })
}

fn map_write_error(
    e: RaftError<super::TypeConfig, ClientWriteError<super::TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n: BasicNode| n.addr)),
        },
        other => unavailable(other),
    }
}

/// An agreed message is returned; a violated one becomes `Error::ConsensusViolation`, recorded
/// once per message as a `consensus_violation` failure when `record` is set.
pub(crate) fn finish(store: &Store, m: Message, record: bool) -> Result<Message> {
    let MessageStatus::Violated { reason, detail } = &m.status else {
        return Ok(m);
    };
    let failure_id = if record && !store.is_read_only() {
        Some(record_violation(store, &m, detail)?)
    } else {
        None
    };
    Err(Error::ConsensusViolation {
        message_id: m.id.clone(),
        execution: m.execution_id.clone(),
        reason: reason.as_str().into(),
        detail: detail.clone(),
        failure_id,
    })
}

/// Hands the violation to the recovery entry point (once per message: a second waiter finds
/// the failure already recorded and names it).
pub fn record_violation(store: &Store, m: &Message, detail: &str) -> Result<String> {
    if let Some(f) = store
        .failures(Some(&m.execution_id))?
        .into_iter()
        .find(|f| f.kind == Trigger::ConsensusViolation && f.key.as_deref() == Some(m.id.as_str()))
    {
        return Ok(f.id);
    }
    let (workflow, tenant) = match store.execution(&m.execution_id) {
        Ok(e) => (e.workflow, e.tenant),
        Err(Error::ExecutionNotFound { .. }) => (String::new(), "default".to_string()),
        Err(e) => return Err(e),
    };
    let effective = store.effective_policy(
        &tenant,
        Some(&workflow)
            .filter(|w| !w.is_empty())
            .map(|w| w.as_str()),
        None,
    )?;
    let recovery = store.start_recovery(
        FailureInput {
            execution_id: m.execution_id.clone(),
            workflow,
            tenant,
            step: None,
            seq: Some(m.seq),
            key: Some(m.id.clone()),
            agent: m.sender.clone(),
            kind: Some(Trigger::ConsensusViolation),
            error_classes: vec!["omium.ConsensusViolation".into()],
            message: format!("message {} (seq {}): {detail}", m.id, m.seq),
            step_retry: None,
            rollbacks_so_far: 0,
        },
        effective,
    )?;
    Ok(recovery.record().id.clone())
}

/// Where the coordinator's Raft group is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorConfig {
    /// A one-voter Raft group in the local store; no network.
    Embedded,
    /// A cluster, reached through the HTTP API of any of these nodes (`127.0.0.1:7001` or
    /// `http://…`); requests follow the leader and are retried across nodes.
    Cluster { nodes: Vec<String> },
}

enum Backend {
    Local(Arc<Engine>),
    Remote(RemoteClient),
}

/// The blocking coordinator API (bindings, CLI). Cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Shared>,
}

/// A coordinator's backend and runtime (shared by its clones).
pub struct Shared {
    backend: Backend,
    /// The store violations are recorded in (the embedded group's; a cluster client's own).
    store: Option<Store>,
    /// Declared last: dropped after the engine, so Raft's tasks stop with it.
    rt: tokio::runtime::Runtime,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Backend::Local(e) = &self.backend {
            let raft = e.raft.clone();
            let _ = self.rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(5), raft.shutdown()).await
            });
        }
    }
}

impl Coordinator {
    /// Opens the coordinator. `store` is where an embedded group lives, and where violations
    /// are recorded (optional for a cluster client). The embedded coordinator of a store is
    /// one per process: opening it again while it runs returns the running one.
    pub fn open(store: Option<&Store>, config: CoordinatorConfig) -> Result<Coordinator> {
        if let (Some(store), CoordinatorConfig::Embedded) = (store, &config) {
            // Held while starting, so two threads asking at once start one group.
            let slot = store.extension_or_insert_with(CoordinatorSlot::default);
            let mut shared = slot.0.lock();
            if let Some(inner) = shared.upgrade() {
                return Ok(Coordinator { inner });
            }
            let c = Coordinator::start(Some(store), &config)?;
            *shared = Arc::downgrade(&c.inner);
            return Ok(c);
        }
        Coordinator::start(store, &config)
    }

    fn start(store: Option<&Store>, config: &CoordinatorConfig) -> Result<Coordinator> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("omium-consensus")
            .enable_all()
            .build()
            .map_err(|e| Error::ConsensusUnavailable {
                detail: format!("cannot start the consensus runtime: {e}"),
            })?;
        let backend = match config {
            CoordinatorConfig::Embedded => {
                let store = store.ok_or_else(|| Error::InvalidArgument {
                    what: "consensus configuration",
                    detail: "embedded consensus needs a store (open one first)".into(),
                })?;
                store.require_writer("embedded consensus")?;
                Backend::Local(rt.block_on(start_embedded(store))?)
            }
            CoordinatorConfig::Cluster { nodes } => Backend::Remote(RemoteClient::new(nodes)?),
        };
        Ok(Coordinator {
            inner: Arc::new(Shared {
                backend,
                store: store.cloned(),
                rt,
            }),
        })
    }

    /// The embedded coordinator of `store`.
    pub fn embedded(store: &Store) -> Result<Coordinator> {
        Coordinator::open(Some(store), CoordinatorConfig::Embedded)
    }

    fn run<T>(
        &self,
        local: impl AsyncFnOnce(&Engine) -> ProposeResult<T>,
        remote: impl AsyncFnOnce(&RemoteClient) -> Result<T>,
    ) -> Result<T> {
        let inner = &self.inner;
        match &inner.backend {
            Backend::Local(e) => inner
                .rt
                .block_on(local(e))
                .map_err(ProposeError::into_error),
            Backend::Remote(c) => inner.rt.block_on(remote(c)),
        }
    }

    /// Validates and appends a message; returns its id and its place in the execution's order.
    pub fn broadcast(&self, req: &BroadcastRequest) -> Result<Broadcasted> {
        self.run(
            async |e| e.broadcast(req).await,
            async |c| c.broadcast(req).await,
        )
    }

    /// Several messages as one log entry.
    pub fn broadcast_many(&self, reqs: &[BroadcastRequest]) -> Result<Vec<Broadcasted>> {
        self.run(
            async |e| e.broadcast_many(reqs).await,
            async |c| c.broadcast_many(reqs).await,
        )
    }

    /// Records a target agent's acknowledgement (a vote when `vote` is given).
    pub fn acknowledge(
        &self,
        message_id: &str,
        agent: &str,
        vote: Option<serde_json::Value>,
    ) -> Result<MessageStatus> {
        let a = AckRequest {
            message_id: message_id.into(),
            agent: agent.into(),
            vote,
        };
        self.run(
            async |e| e.acknowledge(&a).await,
            async |c| c.acknowledge(&a).await,
        )
    }

    /// Several acknowledgements as one log entry.
    pub fn acknowledge_many(&self, acks: &[AckRequest]) -> Result<Vec<Result<MessageStatus>>> {
        self.run(
            async |e| e.acknowledge_many(acks).await,
            async |c| c.acknowledge_many(acks).await,
        )
    }

    /// Waits for agreement; a timeout or a split vote is `Error::ConsensusViolation`, recorded
    /// as a `consensus_violation` failure.
    pub fn await_agreement(&self, message_id: &str, timeout: Duration) -> Result<Message> {
        self.await_agreement_with(message_id, timeout, true)
    }

    /// [`Coordinator::await_agreement`], recording the violation only when `record` is set.
    pub fn await_agreement_with(
        &self,
        message_id: &str,
        timeout: Duration,
        record: bool,
    ) -> Result<Message> {
        let store = self.inner.store.clone();
        self.run(
            async |e| e.await_agreement(message_id, timeout, record).await,
            async |c| match &store {
                // A cluster's violation is recorded in this client's store when it has one,
                // else in the store of the node that answered.
                Some(s) => finish(s, c.await_outcome(message_id, timeout).await?, record),
                None => {
                    let r = c.await_reply(message_id, timeout, record).await?;
                    finish_remote(r.message, r.failure_id)
                }
            },
        )
    }

    /// The messages of an execution in their agreed order.
    pub fn status(&self, execution_id: &str) -> Result<Vec<Message>> {
        self.run(
            async |e| e.status(execution_id).await,
            async |c| c.status(execution_id).await,
        )
    }

    /// One message by id.
    pub fn message(&self, id: &str) -> Result<Message> {
        self.run(async |e| e.message(id).await, async |c| c.message(id).await)
    }

    /// True for the embedded (one-voter, local) group.
    pub fn is_embedded(&self) -> bool {
        matches!(self.inner.backend, Backend::Local(_))
    }
}

fn finish_remote(m: Message, failure_id: Option<String>) -> Result<Message> {
    match &m.status {
        MessageStatus::Violated { reason, detail } => Err(Error::ConsensusViolation {
            message_id: m.id.clone(),
            execution: m.execution_id.clone(),
            reason: reason.as_str().into(),
            detail: detail.clone(),
            failure_id,
        }),
        _ => Ok(m),
    }
}

/// Node id of the embedded group's only voter.
pub const EMBEDDED_NODE: u64 = 1;

async fn start_embedded(store: &Store) -> Result<Arc<Engine>> {
    let engine = Engine::start(store, EMBEDDED_NODE, NoNetwork).await?;
    let raft = engine.raft.clone();
    let up = |e: &dyn std::fmt::Display| Error::ConsensusUnavailable {
        detail: format!("embedded consensus group did not start: {e}"),
    };
    if !raft.is_initialized().await.map_err(|e| up(&e))? {
        let members = std::collections::BTreeMap::from([(
            EMBEDDED_NODE,
            BasicNode {
                addr: "embedded".into(),
            },
        )]);
        raft.initialize(members).await.map_err(|e| up(&e))?;
    } else {
        // A restarted one-voter group elects itself at once instead of after a timeout.
        let _ = raft.trigger().elect(false).await;
    }
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(EMBEDDED_NODE, "embedded leader")
        .await
        .map_err(|e| up(&e))?;
    Ok(engine)
}
