//! Multi-agent consensus: agent messages made agreed on a Raft log (openraft).
//!
//! A message an agent broadcasts to target agents is validated (JSON Schema, when given),
//! appended to the Raft log, and *agreed* once its entry is committed and a quorum of the targets
//! acknowledged it (or voted the same value). A timeout or a split vote is a
//! `consensus_violation`, handed to the recovery policy. Messages of one execution are totally
//! ordered: the state machine gives each the next sequence number of its execution as it
//! applies the log.
//!
//! - [`log`]: the Raft log in Omium's RocksDB (`raft_log`, `raft_meta`), group-committed fsyncs;
//! - [`sm`]: the state machine (`consensus`): messages, acknowledgements, outcomes, snapshots;
//! - [`coordinator`]: broadcast / acknowledge / await_agreement / status over a local Raft
//!   group (embedded: one voter, no network) or a cluster node;
//! - [`network`]: Raft RPCs and the coordinator API over HTTP/2 (axum server, reqwest client);
//! - [`node`]: a cluster node (Raft + HTTP server) and the cluster admin calls.

pub mod coordinator;
pub mod log;
pub mod network;
pub mod node;
pub mod sm;

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

pub use crate::tls::{self, TlsFiles};
pub use coordinator::{
    AckRequest, BroadcastRequest, Broadcasted, Coordinator, CoordinatorConfig, Engine,
};
pub use log::LogStore;
pub use node::{ClusterStatus, Node, NodeConfig};
pub use sm::StateMachine;

openraft::declare_raft_types!(
    /// Omium's Raft types: node ids are `u64`, a node is known by its HTTP address.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// The Raft handle of an Omium consensus group.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// A command in the Raft log. Each is applied by [`sm::StateMachine`] in log order on every
/// node, so every node reaches the same messages, acknowledgements and outcomes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A new message. Re-proposing the same `id` (a client retry after a leader change) is
    /// applied once: the second application returns the first one's sequence number.
    Broadcast(NewMessage),
    /// An acknowledgement or vote of one target agent.
    Ack {
        message_id: String,
        agent: String,
        /// Canonical JSON of the vote, or none for a plain acknowledgement.
        vote: Option<String>,
        at_ms: u64,
    },
    /// The waiting side gave up: a message still pending becomes a timeout violation.
    Expire {
        message_id: String,
        timeout_ms: u64,
        at_ms: u64,
    },
    /// Several commands proposed as one log entry (batched broadcasts).
    Batch(Vec<Command>),
    /// A push as logs written before fencing epochs hold it (decoded and applied as a
    /// [`Command::Push`] that presents no epoch; never proposed now).
    Sync(crate::sync::legacy::SyncBatchV1),
    /// A store takes a synced execution over (a pull) until `lease_until_ms`.
    Claim {
        execution_id: String,
        store_id: String,
        host: String,
        lease_until_ms: u64,
        at_ms: u64,
    },
    /// Executions, checkpoints and chunks pushed by a store ([`crate::sync`]).
    Push(crate::sync::SyncBatch),
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Broadcast(m) => write!(f, "broadcast {} in {:?}", m.id, m.execution_id),
            Command::Ack {
                message_id, agent, ..
            } => write!(f, "ack {message_id} by {agent:?}"),
            Command::Expire { message_id, .. } => write!(f, "expire {message_id}"),
            Command::Batch(c) => write!(f, "batch of {}", c.len()),
            Command::Sync(b) => write!(f, "sync of {} execution(s), older format", b.bundles.len()),
            Command::Push(b) => write!(
                f,
                "sync of {} execution(s), {} chunk(s)",
                b.bundles.len(),
                b.chunks.len()
            ),
            Command::Claim {
                execution_id,
                store_id,
                ..
            } => write!(f, "claim of {execution_id:?} by store {store_id}"),
        }
    }
}

/// A message as proposed, before the state machine gives it its place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// A ULID chosen by the client, so that a retried proposal is recognised.
    pub id: String,
    pub execution_id: String,
    pub sender: String,
    pub targets: Vec<String>,
    /// Canonical JSON text of the message.
    pub payload: String,
    pub quorum: u32,
    pub at_ms: u64,
}

/// What applying a command returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Reply {
    /// Blank and membership entries.
    #[default]
    None,
    /// The message's place in its execution's order (1-based) and its log index.
    Broadcast { seq: u64, log_index: u64 },
    /// The message's status after the command.
    Status(MessageStatus),
    /// The command was refused (unknown message, agent not a target); nothing changed.
    Rejected { code: String, detail: String },
    /// One reply per command of a [`Command::Batch`].
    Batch(Vec<Reply>),
    /// One outcome per execution of a [`Command::Push`], or the outcome of a
    /// [`Command::Claim`].
    Sync(Vec<crate::sync::SyncOutcome>),
}

/// Where a message stands.
/// (Externally tagged in serde: records are postcard, which has no internal tags;
/// [`status_json`] gives the `{"state": …}` form users see.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageStatus {
    /// Committed; waiting for acknowledgements.
    Pending,
    /// A quorum of targets acknowledged (or voted `value`) at log index `at_index`.
    Agreed {
        value: Option<String>,
        at_index: u64,
    },
    /// No agreement: `reason` is `timeout` or `split_vote`.
    Violated { reason: Violation, detail: String },
}

impl MessageStatus {
    pub fn is_final(&self) -> bool {
        !matches!(self, MessageStatus::Pending)
    }

    pub fn name(&self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Agreed { .. } => "agreed",
            MessageStatus::Violated { .. } => "violated",
        }
    }
}

/// Why a message was not agreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    Timeout,
    SplitVote,
}

impl Violation {
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::Timeout => "timeout",
            Violation::SplitVote => "split_vote",
        }
    }
}

/// One target's acknowledgement, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub agent: String,
    pub vote: Option<String>,
    pub at_ms: u64,
    pub log_index: u64,
}

/// A message as the state machine holds it (record `ConsensusMessage`, `docs/format.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub execution_id: String,
    /// 1-based position in the execution's total order.
    pub seq: u64,
    pub sender: String,
    pub targets: Vec<String>,
    pub payload: String,
    pub quorum: u32,
    /// Index of the log entry that appended it.
    pub log_index: u64,
    pub created_at_ms: u64,
    pub acks: Vec<Ack>,
    pub status: MessageStatus,
}

impl Message {
    /// The message as JSON for the CLI, the bindings and the HTTP API.
    pub fn to_json(&self) -> serde_json::Value {
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "id": self.id,
            "execution_id": self.execution_id,
            "seq": self.seq,
            "sender": self.sender,
            "targets": self.targets,
            "message": parse(&self.payload),
            "quorum": self.quorum,
            "log_index": self.log_index,
            "created_at_ms": self.created_at_ms,
            "acks": self.acks.iter().map(|a| serde_json::json!({
                "agent": a.agent,
                "vote": a.vote.as_deref().map(parse),
                "at_ms": a.at_ms,
                "log_index": a.log_index,
            })).collect::<Vec<_>>(),
            "status": status_json(&self.status),
        })
    }

    /// Decides the status from the acknowledgements: agreed when one value (a plain
    /// acknowledgement counts as its own value) has `quorum` targets behind it; a split vote
    /// when no value can reach the quorum any more, even if every silent target joined it.
    pub(crate) fn decide(&self, at_index: u64) -> MessageStatus {
        let mut groups: BTreeMap<Option<&str>, u32> = BTreeMap::new();
        for a in &self.acks {
            *groups.entry(a.vote.as_deref()).or_default() += 1;
        }
        if let Some((value, _)) = groups.iter().find(|(_, n)| **n >= self.quorum) {
            return MessageStatus::Agreed {
                value: value.map(str::to_string),
                at_index,
            };
        }
        let silent = self.targets.len() as u32 - self.acks.len() as u32;
        let best = groups.values().copied().max().unwrap_or(0);
        if best + silent < self.quorum {
            let tally = groups
                .iter()
                .map(|(v, n)| format!("{}: {n}", v.unwrap_or("ack")))
                .collect::<Vec<_>>()
                .join(", ");
            return MessageStatus::Violated {
                reason: Violation::SplitVote,
                detail: format!(
                    "split vote: no value can reach the quorum of {} of {} targets ({tally})",
                    self.quorum,
                    self.targets.len()
                ),
            };
        }
        MessageStatus::Pending
    }
}

/// A status as JSON: `{"state": "agreed", "value": ..., "at_index": n}` and so on.
pub fn status_json(s: &MessageStatus) -> serde_json::Value {
    match s {
        MessageStatus::Pending => serde_json::json!({"state": "pending"}),
        MessageStatus::Agreed { value, at_index } => serde_json::json!({
            "state": "agreed",
            "value": value.as_deref().map(|v| serde_json::from_str::<serde_json::Value>(v).unwrap_or(serde_json::Value::Null)),
            "at_index": at_index,
        }),
        MessageStatus::Violated { reason, detail } => serde_json::json!({
            "state": "violated", "reason": reason.as_str(), "detail": detail,
        }),
    }
}

/// RocksDB errors as the `io::Error` openraft's storage traits return.
pub(crate) fn io_err(context: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{context}: {e}"))
}

/// A corrupt record in a consensus column family, naming the family and key.
pub(crate) fn corrupt(cf: &str, key: &[u8], e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "corrupt record in column family {cf:?} at key {}: {e}",
            crate::hex(key)
        ),
    )
}
