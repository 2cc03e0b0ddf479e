//! # omium-core
//!
//! The engine of Omium, the reliability layer for AI agents: durable checkpoints on a local
//! RocksDB store, durable steps that make a crashed run resume where it stopped, rollback and
//! fork over a checkpoint tree, content-addressed state, and a hash-chained audit log.
//!
//! ```
//! use omium_core::{BeginOptions, RollbackTarget, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//!
//! // A run of execution "cust-42": each step is recorded once it returns.
//! let run = store.begin("cust-42", BeginOptions { workflow: "onboarding".into(), ..Default::default() }).unwrap();
//! let kyc = run.step("kyc_doc_validated", || Ok::<_, omium_core::Error>(b"verified".to_vec())).unwrap();
//! let score = run.step("credit_score", || Ok::<_, omium_core::Error>(b"712".to_vec())).unwrap();
//! run.complete(Some(&score)).unwrap();
//! drop(run);
//!
//! // Go back to the KYC step; the steps after it will run again.
//! store.rollback("cust-42", &RollbackTarget::Name("kyc_doc_validated".into()), Some("bad score")).unwrap();
//! assert_eq!(store.resumable().unwrap()[0].id, "cust-42");
//! assert!(store.verify(None).unwrap().ok());
//! # let _ = kyc;
//! ```
//!
//! This crate is the facade over the layers, each a crate of its own (`docs/architecture.md`):
//! `omium-spec` (documents: conditions, policies, workflow specs), `omium-storage` (the
//! store and every record on disk), `omium-engine` (recovery, tracing, the workflow executor,
//! the serve client) and `omium-cluster` (consensus, sync, the serve daemon). Their modules
//! keep their paths here (`omium_core::store`, `omium_core::recovery`, ...). Operations that
//! the upper layers add to [`Store`] are extension traits: `use omium_core::prelude::*`.
//!
//! Modules, one concern each: [`store`] (RocksDB, column families, durability), [`blob`]
//! (FastCDC chunks, blake3, LZ4, GC), [`execution`] (executions, the journal, leases),
//! [`checkpoint`] (the tree, rollback, fork, cut, verify), [`audit`] (the hash chain),
//! [`policy`] (recovery policies: parse, validate, compile, versions), [`recovery`] (failures,
//! the actions taken on them, MTTR), [`trace`] (spans, OTLP export, timeline, diff),
//! [`threads`] (framework checkpoints: LangGraph-style threads), [`workflow`] (YAML workflow
//! specs, the durable parallel DAG executor, templates).

#[cfg(feature = "cluster")]
pub use omium_cluster::{agreement, consensus, sync};
pub use omium_engine::{
    alerts, analytics, events, expr, json, keys, otlp_metrics, policy, prometheus, recovery,
    report, trace,
};
pub use omium_storage::{
    audit, blob, checkpoint, codec, control, error, execution, ext, failures, rollup, spans, store,
    threads, value,
};

/// Workflows (`omium_engine::workflow`), with [`run`](workflow::run) agreeing on
/// `consensus_required` hand-offs through the store's consensus group by default.
pub mod workflow {
    #[cfg(feature = "cluster")]
    pub use omium_cluster::agreement::{Answer, ConsensusAgreement, Respond};
    #[cfg(feature = "cluster")]
    pub use omium_cluster::workflow::run;
    #[cfg(not(feature = "cluster"))]
    pub use omium_engine::workflow::run;
    pub use omium_engine::workflow::{
        agents, container_runtime, executor, load, parse, plan, spec, step_retry, templates, Agent,
        AgentCall, AgentError, Agreement, AgreementRequest, Hooks, Plan, PlanStep, Report,
        RunOptions, ShellAgent, Spec, SpecErrors, Step, StepReport,
    };
}

/// `omium serve`: the API, its client and handle (`omium_engine::serve`) and the daemon
/// (`omium_cluster::serve`).
pub mod serve {
    #[cfg(feature = "cluster")]
    pub use omium_cluster::serve as server;
    #[cfg(feature = "cluster")]
    pub use omium_cluster::serve::{Daemon, ServeConfig};
    #[cfg(feature = "cluster")]
    pub use omium_cluster::{authz, listen::Limits, ui};
    pub use omium_engine::serve::*;
}

/// The extension traits that add the upper layers' operations to [`Store`].
pub mod prelude {
    #[cfg(feature = "cluster")]
    pub use omium_cluster::prelude::*;
    pub use omium_engine::prelude::*;
}

#[cfg(all(test, feature = "cluster"))]
mod fuzz_tests;

#[cfg(feature = "cluster")]
pub use omium_cluster::SyncStore;
pub use omium_engine::recovery::{Directive, FailureInput, Recovery, RecoveryMetrics};
pub use omium_engine::{AnalyticsStore, EventStore, PolicyStore, RecoveryStore, TraceStore};
pub use omium_storage::{
    exec_key, hex, rfc3339_ms, ActionRecord, AuditEntry, AuditHead, AuditReport, BeginOptions,
    CheckResult, Checkpoint, CheckpointKind, Checks, ChunkParams, Cut, Durability, Error,
    ErrorCode, Execution, Extension, FailureRecord, ForkOptions, GcReport, Lease, ListQuery,
    NewCheckpoint, OpenError, OpenOptions, Outcome, Problem, PutCheckpoint, Result,
    RetentionReport, RollbackTarget, Run, StateRef, Status, Store, StoreStats, ThreadCheckpoint,
    ThreadTuple, Threads, VerifyReport, FORMAT_VERSION,
};
