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

    #[error(
        "execution {execution:?} was taken over by another store: {detail}; this run stops \
         before its next step"
    )]
    LeaseLost { execution: String, detail: String },

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
    Policy(Box<omium_spec::policy::Problem>),

    #[error("condition {expression:?} does not parse: {detail}")]
    ConditionSyntax { expression: String, detail: String },

    #[error("condition {expression:?} could not be evaluated: {detail}")]
    ConditionEval { expression: String, detail: String },

    #[error("invalid workflow: {0}")]
    Workflow(Box<omium_spec::workflow::SpecErrors>),

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

    #[error(
        "execution {execution:?} was cancelled before {step}: {reason}; it does not run again \
         (`omium retry {execution}` makes it resumable)"
    )]
    Cancelled {
        execution: String,
        step: String,
        reason: String,
    },

    #[error(
        "{step} of execution {execution:?} failed ({message}); the recovery policy rolls it \
         back to {to}, and it runs again from there"
    )]
    RolledBack {
        execution: String,
        step: String,
        to: String,
        message: String,
    },

    #[error(
        "tool {tool:?} is not allowed in {place}: the policy's tool_whitelist allows {allowed}; \
         nothing was called"
    )]
    ToolDenied {
        tool: String,
        place: String,
        allowed: String,
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

    /// The caller is known but its roles or the authorization policies do not allow the call.
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },

    /// A push or pull met an execution that advanced on another store; nothing was merged.
    #[error("sync conflict on execution {execution:?}: {detail}")]
    SyncConflict { execution: String, detail: String },

    /// A replayed run made a request that differs from the recording, or one more or one
    /// fewer than it recorded (`recorded` and `actual` are the two canonical requests).
    #[error(
        "replay of {execution:?} diverged at call {index}: {detail}\n(a replay needs the code \
         that made the recording; to run changed code live from a step, fork at that step)"
    )]
    ReplayDivergence {
        execution: String,
        index: usize,
        detail: String,
        recorded: Option<Box<serde_json::Value>>,
        actual: Option<Box<serde_json::Value>>,
    },

    /// An error the `omium serve` daemon answered, with its code and message.
    #[error("{message}")]
    Remote { code: &'static str, message: String },
}

/// Declares [`ErrorCode`] and its table from one list, so the codes the bindings map to their
/// exception classes cannot drift from the codes errors have.
macro_rules! error_codes {
    ($($variant:ident = $code:literal: $doc:literal,)*) => {
        /// The stable snake_case kind of an [`Error`] ([`Error::code`]): bindings map each to an
        /// exception class of its own, the CLI prints it with `--json`, and an error that
        /// crossed a wire keeps it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in a stable order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// What errors of this kind mean (one sentence).
            pub fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $doc,)*
                }
            }

            /// The code named `code`, if it is one.
            pub fn parse(code: &str) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    StoreLocked = "store_locked": "Another process holds the store for writing.",
    StoreNotFound = "store_not_found": "There is no store at the path.",
    NewerFormat = "newer_format": "The store or a record in it was written by a newer Omium.",
    NotAStore = "not_a_store": "The path holds something that is not an Omium store.",
    OpenFailed = "open_failed": "The store could not be opened (permissions, disk, RocksDB).",
    Storage = "storage": "A read or write of the store failed.",
    ExecutionNotFound = "execution_not_found": "No execution has that id.",
    CheckpointNotFound = "checkpoint_not_found": "No checkpoint has that id or name.",
    WrongExecution = "wrong_execution": "A checkpoint belongs to another execution.",
    NonDeterminism = "non_determinism": "The code called another step where the journal recorded one.",
    Integrity = "integrity": "Stored bytes do not match their hash.",
    ExecutionLeased = "execution_leased": "Another live process runs the execution.",
    Decode = "decode": "A stored record or state cannot be decoded.",
    ReadOnly = "read_only": "The store is open read-only.",
    InvalidArgument = "invalid_argument": "An argument is invalid.",
    NoConsistentCheckpoint = "no_consistent_checkpoint": "No checkpoint passed its checks and verifies.",
    InvalidState = "invalid_state": "The execution's status does not allow the operation.",
    ConditionSyntax = "condition_syntax": "A condition expression does not parse.",
    InvalidPolicy = "invalid_policy": "A policy document is invalid.",
    ConditionError = "condition_error": "A condition could not be evaluated.",
    InvalidWorkflow = "invalid_workflow": "A workflow spec is invalid.",
    AgentUnavailable = "agent_unavailable": "A workflow agent cannot run.",
    StepFailed = "step_failed": "A workflow step failed and its policy gave up.",
    Escalated = "escalated": "The recovery policy escalated a failure to a human.",
    Paused = "paused": "The execution is paused and waits for a human to resume it.",
    Cancelled = "cancelled": "An operator cancelled the execution; it stopped at a step boundary.",
    RolledBack = "rolled_back": "The recovery policy rolled the execution back; it runs again from the target.",
    ToolDenied = "tool_denied": "The policy's tool allowlist does not allow the tool; it was not called.",
    Interrupted = "interrupted": "The run was interrupted.",
    InvalidMessage = "invalid_message": "A consensus message is invalid.",
    MessageNotFound = "message_not_found": "No consensus message has that id.",
    NotATarget = "not_a_target": "The agent is not a target of the consensus message.",
    ConsensusViolation = "consensus_violation": "A consensus round timed out or split.",
    ConsensusUnavailable = "consensus_unavailable": "No consensus cluster answers.",
    ServerUnavailable = "server_unavailable": "The omium serve daemon or cluster does not answer.",
    Unauthorized = "unauthorized": "The daemon refused the credentials.",
    Forbidden = "forbidden": "The caller's roles or the authorization policies do not allow the call.",
    RateLimited = "rate_limited": "The caller sent more requests than its rate allows; retry after the time the answer names.",
    SyncConflict = "sync_conflict": "The cluster has another branch or holder of the execution.",
    SyncIncomplete = "sync_incomplete": "The cluster lacks chunks a push referenced; they are sent again.",
    LeaseLost = "lease_lost": "Another store took the execution over; this store's run stops before its next step.",
    ReplayDivergence = "replay_divergence": "A replayed run's request differs from the recording.",
    ServerError = "server_error": "A remote error of a kind this build does not know.",
}

/// `code` as one of the [`ErrorCode`]s (`server_error` when unknown).
pub fn known_code(code: &str) -> &'static str {
    ErrorCode::parse(code)
        .unwrap_or(ErrorCode::ServerError)
        .as_str()
}

impl Error {
    /// A stable snake_case name of the error kind, for bindings and `--json` output.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The kind of the error.
    pub fn kind(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            Error::Open(OpenError::Locked { .. }) => C::StoreLocked,
            Error::Open(OpenError::NotFound { .. } | OpenError::Incomplete { .. }) => {
                C::StoreNotFound
            }
            Error::Open(OpenError::NewerFormat { .. }) => C::NewerFormat,
            Error::Open(OpenError::NotAStore { .. }) => C::NotAStore,
            Error::Open(_) => C::OpenFailed,
            Error::Storage { .. } => C::Storage,
            Error::ExecutionNotFound { .. } => C::ExecutionNotFound,
            Error::CheckpointNotFound { .. } | Error::CheckpointNameNotFound { .. } => {
                C::CheckpointNotFound
            }
            Error::WrongExecution { .. } => C::WrongExecution,
            Error::NonDeterminism { .. } => C::NonDeterminism,
            Error::Integrity { .. } => C::Integrity,
            Error::ExecutionLeased { .. } => C::ExecutionLeased,
            Error::Decode { .. } => C::Decode,
            Error::NewerRecord { .. } => C::NewerFormat,
            Error::ReadOnly { .. } => C::ReadOnly,
            Error::InvalidArgument { .. } => C::InvalidArgument,
            Error::NoConsistentCheckpoint { .. } => C::NoConsistentCheckpoint,
            Error::InvalidState { .. } => C::InvalidState,
            Error::ConditionSyntax { .. } => C::ConditionSyntax,
            Error::Policy(_) => C::InvalidPolicy,
            Error::ConditionEval { .. } => C::ConditionError,
            Error::Workflow(_) => C::InvalidWorkflow,
            Error::AgentUnavailable { .. } => C::AgentUnavailable,
            Error::StepFailed { .. } => C::StepFailed,
            Error::Escalated { .. } => C::Escalated,
            Error::Paused { .. } => C::Paused,
            Error::Cancelled { .. } => C::Cancelled,
            Error::RolledBack { .. } => C::RolledBack,
            Error::ToolDenied { .. } => C::ToolDenied,
            Error::Interrupted { .. } => C::Interrupted,
            Error::InvalidMessage { .. } => C::InvalidMessage,
            Error::MessageNotFound { .. } => C::MessageNotFound,
            Error::NotATarget { .. } => C::NotATarget,
            Error::ConsensusViolation { .. } => C::ConsensusViolation,
            Error::ConsensusUnavailable { .. } => C::ConsensusUnavailable,
            Error::ServerUnavailable { .. } => C::ServerUnavailable,
            Error::Forbidden { .. } => C::Forbidden,
            Error::SyncConflict { .. } => C::SyncConflict,
            Error::LeaseLost { .. } => C::LeaseLost,
            Error::ReplayDivergence { .. } => C::ReplayDivergence,
            Error::Remote { code, .. } => ErrorCode::parse(code).unwrap_or(C::ServerError),
        }
    }

    /// What an error carries beyond its message, for a binding's exception attributes: a
    /// policy problem's place and expectation, a replay divergence's index and requests.
    pub fn details(&self) -> Option<serde_json::Value> {
        match self {
            Error::Policy(p) => Some(serde_json::json!({
                "file": p.file, "line": p.at.line, "column": p.at.column, "path": p.path,
                "problem": p.message, "value": p.value, "expected": p.expected,
                "suggestion": p.suggestion,
            })),
            Error::ReplayDivergence {
                index,
                recorded,
                actual,
                ..
            } => Some(serde_json::json!({"index": index, "recorded": recorded, "actual": actual})),
            _ => None,
        }
    }

    pub fn storage(context: impl Into<String>, source: rocksdb::Error) -> Self {
        Error::Storage {
            context: context.into(),
            source,
        }
    }
}

impl From<omium_spec::Error> for Error {
    /// The document layer's errors are the engine's variants of the same name.
    fn from(e: omium_spec::Error) -> Error {
        use omium_spec::Error as S;
        match e {
            S::InvalidArgument { what, detail } => Error::InvalidArgument { what, detail },
            S::Policy(p) => Error::Policy(p),
            S::ConditionSyntax { expression, detail } => {
                Error::ConditionSyntax { expression, detail }
            }
            S::ConditionEval { expression, detail } => Error::ConditionEval { expression, detail },
            S::Workflow(w) => Error::Workflow(w),
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
