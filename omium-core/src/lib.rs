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
//! Modules, one concern each: [`store`] (RocksDB, column families, durability), [`blob`]
//! (FastCDC chunks, blake3, zstd, GC), [`execution`] (executions, the journal, leases),
//! [`checkpoint`] (the tree, rollback, fork, cut, verify), [`audit`] (the hash chain),
//! [`policy`] (recovery policies: parse, validate, compile, versions), [`recovery`] (failures,
//! the actions taken on them, MTTR), [`trace`] (spans, OTLP export, timeline, diff),
//! [`threads`] (framework checkpoints: LangGraph-style threads), [`workflow`] (YAML workflow
//! specs, the durable parallel DAG executor, templates).

pub mod audit;
pub mod blob;
pub mod checkpoint;
mod codec;
mod commit;
pub mod consensus;
pub mod error;
pub mod execution;
pub mod expr;
pub mod json;
pub mod policy;
pub mod recovery;
pub mod serve;
pub mod store;
pub mod sync;
pub mod threads;
pub mod trace;
pub mod value;
pub mod workflow;

#[cfg(test)]
mod fuzz_tests;

pub use audit::{AuditEntry, AuditHead, AuditReport};
pub use blob::{ChunkParams, GcReport, StateRef, StoreStats};
pub use checkpoint::{
    CheckResult, Checkpoint, CheckpointKind, Checks, Cut, ForkOptions, Problem, RollbackTarget,
    VerifyReport,
};
pub use error::{Error, ErrorCode, OpenError, Result};
pub use execution::{BeginOptions, Execution, Lease, NewCheckpoint, RetentionReport, Run, Status};
pub use recovery::{Directive, FailureInput, FailureRecord, Outcome, Recovery, RecoveryMetrics};
pub use store::{exec_key, Durability, OpenOptions, Store, FORMAT_VERSION};
pub use threads::{ListQuery, PutCheckpoint, ThreadCheckpoint, ThreadTuple, Threads};

/// reqwest is built with rustls and no default crypto provider (aws-lc-rs would add a C
/// build): every HTTP client is made after this installs ring, which ureq already uses.
pub(crate) fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `2026-11-27T04:44:18.123Z` from Unix milliseconds (before 1970 too).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Lower-case hex of bytes (ids of chunks and hashes in messages).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
