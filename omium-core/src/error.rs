//! Errors. Every variant says what happened, which id or path it concerns, and what to do
//! next. `Error::code()` gives a stable snake_case kind that the bindings map to their own
//! exception classes, so callers can catch failures selectively.

use std::path::PathBuf;

/// Failures while opening a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(
        "store {path} is held by another process (its RocksDB LOCK is taken); only one process \
         can write a store: stop that process, or inspect the store read-only (the `omium` \
         command opens it as a secondary while the other process writes)"
    )]
    Locked { path: PathBuf },
    #[error(
        "no Omium store at {path}; check the path (--store / OMIUM_HOME), or create the store by \
         opening it for writing (Store::open in Rust, omium.init() in Python)"
    )]
    NotFound { path: PathBuf },
    #[error(
        "store {path} was written by a newer Omium (format version {found}; this build reads up \
         to {supported}); upgrade Omium to open it"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "store {path} was never fully created (the process creating it stopped first); open it \
         once for writing (omium.init, or any write) to finish creating it"
    )]
    Incomplete { path: PathBuf },
    #[error("{path} is a RocksDB directory but not an Omium store (no format marker); refusing to use it")]
    NotAStore { path: PathBuf },
    #[error("cannot open store {path}: {source}")]
    Storage {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("cannot prepare store directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything else the engine can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Open(#[from] OpenError),

    #[error("storage error while {context}: {source}")]
    Storage {
        context: String,
        source: rocksdb::Error,
    },

    #[error("unknown execution {id:?}; `omium executions` lists the executions of this store")]
    ExecutionNotFound { id: String },

    #[error("unknown checkpoint {id}; `omium history <execution>` lists checkpoints")]
    CheckpointNotFound { id: String },

    #[error(
        "execution {execution:?} has no checkpoint named {name:?}; `omium history {execution}` \
         lists its checkpoints"
    )]
    CheckpointNameNotFound { execution: String, name: String },

    #[error(
        "checkpoint {checkpoint} belongs to execution {belongs_to:?}, not {requested:?}; use a \
         checkpoint of {requested:?} (`omium history {requested}` lists them)"
    )]
    WrongExecution {
        checkpoint: String,
        belongs_to: String,
        requested: String,
    },

    #[error(
        "non-determinism in execution {execution:?} at step {seq}: the journal recorded \
         {recorded:?} there but the code now calls {requested:?}; the workflow code changed \
         since the run was recorded — fork the execution or start a new execution id"
    )]
    NonDeterminism {
        execution: String,
        seq: u64,
        recorded: String,
        requested: String,
    },

    #[error("integrity error in checkpoint {checkpoint} of execution {execution:?}: {detail}")]
    Integrity {
        checkpoint: String,
        execution: String,
        detail: String,
    },

    #[error(
        "execution {id:?} is being run by {owner} (lease valid for {remaining_ms} ms more); wait \
         for it to finish, or for its lease to expire"
    )]
    ExecutionLeased {
        id: String,
        owner: String,
        remaining_ms: u64,
    },

    #[error("cannot decode {what} {key}: {detail}")]
    Decode {
        what: &'static str,
        key: String,
        detail: String,
    },

    #[error(
        "{what} {key} was written by a newer Omium (record version {found}; this build reads up \
         to {supported}); upgrade Omium"
    )]
    NewerRecord {
        what: &'static str,
        key: String,
        found: u8,
        supported: u8,
    },

    #[error("store {path} is open read-only (secondary); {operation} needs the writer")]
    ReadOnly {
        path: PathBuf,
        operation: &'static str,
    },

    #[error("invalid {what}: {detail}")]
    InvalidArgument { what: &'static str, detail: String },

    #[error(
        "execution {execution:?} has no consistent checkpoint (none passed its checks and \
         verified); roll back to an explicit checkpoint id instead"
    )]
    NoConsistentCheckpoint { execution: String },

    #[error("execution {execution:?} is {status}; {detail}")]
    InvalidState {
        execution: String,
        status: String,
        detail: String,
    },

    #[error("invalid policy: {0}")]
    Policy(Box<crate::policy::Problem>),

    #[error("condition {expression:?} does not parse: {detail}")]
    ConditionSyntax { expression: String, detail: String },

    #[error("condition {expression:?} could not be evaluated: {detail}")]
    ConditionEval { expression: String, detail: String },

    #[error("invalid workflow: {0}")]
    Workflow(Box<crate::workflow::SpecErrors>),

    #[error("agent {agent:?} cannot run: {detail}")]
    AgentUnavailable { agent: String, detail: String },

    #[error(
        "{step} of execution {execution:?} failed and the recovery policy gave up: {message}; \
         `omium failures --execution {execution}` shows what was tried; re-running the \
         execution id resumes it at this step"
    )]
    StepFailed {
        execution: String,
        step: String,
        message: String,
    },

    #[error("{step} of execution {execution:?} failed and was escalated to {channels}: {message}")]
    Escalated {
        execution: String,
        step: String,
        channels: String,
        message: String,
    },

    #[error(
        "the run of execution {execution:?} was interrupted; it stays resumable: run it again \
         with the same execution id"
    )]
    Interrupted { execution: String },

    #[error(
        "execution {execution:?} is paused at {step}: {reason}; `omium resume {execution}` (or \
         omium.resume) and a re-run continue it"
    )]
    Paused {
        execution: String,
        step: String,
        reason: String,
    },

    #[error("invalid message for execution {execution:?}: {detail}; it was not appended")]
    InvalidMessage { execution: String, detail: String },

    #[error(
        "unknown message {id}; `omium consensus status <execution>` lists the messages of an \
         execution"
    )]
    MessageNotFound { id: String },

    #[error("{detail}")]
    NotATarget { detail: String },

    #[error(
        "consensus violation on message {message_id} of execution {execution:?} ({reason}): \
         {detail}{}",
        failure_id.as_deref().map(|f| format!(" (failure {f}; `omium failures` shows it)")).unwrap_or_default()
    )]
    ConsensusViolation {
        message_id: String,
        execution: String,
        reason: String,
        detail: String,
        failure_id: Option<String>,
    },

    #[error("consensus unavailable: {detail}")]
    ConsensusUnavailable { detail: String },

    /// The `omium serve` daemon could not be reached (or answered something unexpected).
    #[error("omium serve at {url} is unavailable: {detail}")]
    ServerUnavailable { url: String, detail: String },

    /// A push or pull met an execution that advanced on another store; nothing was merged.
    #[error("sync conflict on execution {execution:?}: {detail}")]
    SyncConflict { execution: String, detail: String },

    /// An error the `omium serve` daemon answered, with its code and message.
    #[error("{message}")]
    Remote { code: &'static str, message: String },
}

/// The codes an error can have (`Error::code`), so an error that crossed a wire keeps its code.
const CODES: &[&str] = &[
    "store_locked",
    "store_not_found",
    "newer_format",
    "not_a_store",
    "open_failed",
    "storage",
    "execution_not_found",
    "checkpoint_not_found",
    "wrong_execution",
    "non_determinism",
    "integrity",
    "execution_leased",
    "decode",
    "read_only",
    "invalid_argument",
    "no_consistent_checkpoint",
    "invalid_state",
    "condition_syntax",
    "invalid_policy",
    "condition_error",
    "invalid_workflow",
    "agent_unavailable",
    "step_failed",
    "escalated",
    "paused",
    "interrupted",
    "invalid_message",
    "message_not_found",
    "not_a_target",
    "consensus_violation",
    "consensus_unavailable",
    "server_unavailable",
    "unauthorized",
    "sync_conflict",
    "sync_incomplete",
];

/// `code` as one of [`CODES`] (`server_error` when unknown).
pub fn known_code(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("server_error")
}

impl Error {
    /// A stable snake_case name of the error kind, for bindings and `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Open(OpenError::Locked { .. }) => "store_locked",
            Error::Open(OpenError::NotFound { .. } | OpenError::Incomplete { .. }) => {
                "store_not_found"
            }
            Error::Open(OpenError::NewerFormat { .. }) => "newer_format",
            Error::Open(OpenError::NotAStore { .. }) => "not_a_store",
            Error::Open(_) => "open_failed",
            Error::Storage { .. } => "storage",
            Error::ExecutionNotFound { .. } => "execution_not_found",
            Error::CheckpointNotFound { .. } | Error::CheckpointNameNotFound { .. } => {
                "checkpoint_not_found"
            }
            Error::WrongExecution { .. } => "wrong_execution",
            Error::NonDeterminism { .. } => "non_determinism",
            Error::Integrity { .. } => "integrity",
            Error::ExecutionLeased { .. } => "execution_leased",
            Error::Decode { .. } => "decode",
            Error::NewerRecord { .. } => "newer_format",
            Error::ReadOnly { .. } => "read_only",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::NoConsistentCheckpoint { .. } => "no_consistent_checkpoint",
            Error::InvalidState { .. } => "invalid_state",
            Error::ConditionSyntax { .. } => "condition_syntax",
            Error::Policy(_) => "invalid_policy",
            Error::ConditionEval { .. } => "condition_error",
            Error::Workflow(_) => "invalid_workflow",
            Error::AgentUnavailable { .. } => "agent_unavailable",
            Error::StepFailed { .. } => "step_failed",
            Error::Escalated { .. } => "escalated",
            Error::Paused { .. } => "paused",
            Error::Interrupted { .. } => "interrupted",
            Error::InvalidMessage { .. } => "invalid_message",
            Error::MessageNotFound { .. } => "message_not_found",
            Error::NotATarget { .. } => "not_a_target",
            Error::ConsensusViolation { .. } => "consensus_violation",
            Error::ConsensusUnavailable { .. } => "consensus_unavailable",
            Error::ServerUnavailable { .. } => "server_unavailable",
            Error::SyncConflict { .. } => "sync_conflict",
            Error::Remote { code, .. } => code,
        }
    }

    pub(crate) fn storage(context: impl Into<String>, source: rocksdb::Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
