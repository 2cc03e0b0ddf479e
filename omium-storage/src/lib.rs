//! # omium-storage
//!
//! The storage layer of Omium: the RocksDB store and its column families, the state codec,
//! content-addressed chunks (FastCDC, blake3, LZ4) and their GC, group commit, the
//! hash-chained audit log, executions and their journal and leases, the checkpoint tree
//! (rollback, fork, cut, verify), failure records and framework threads. It owns every record
//! on disk and its lifecycle; the decisions about them (recovery, tracing, policies, sync)
//! live in the crates above, which attach to a store through [`ext`].
//!
//! Most users depend on `omium-core`, which re-exports this crate with the layers above it.

pub mod audit;
pub mod blob;
pub mod checkpoint;
#[doc(hidden)]
pub mod codec;
mod commit;
pub mod control;
pub mod deferred;
pub mod error;
pub mod execution;
pub mod ext;
pub mod failures;
pub mod rollup;
pub mod spans;
pub mod store;
pub mod threads;
pub mod value;

pub use audit::{AuditEntry, AuditHead, AuditReport};
pub use blob::{ChunkParams, GcReport, StateRef, StoreStats};
pub use checkpoint::{
    CheckResult, Checkpoint, CheckpointKind, Checks, Cut, ForkOptions, Problem, RollbackTarget,
    VerifyReport,
};
pub use error::{Error, ErrorCode, OpenError, Result};
pub use execution::{
    BeginOptions, Erased, Execution, Lease, NewCheckpoint, RetentionReport, Run, Status,
};
pub use ext::Extension;
pub use failures::{ActionRecord, FailureRecord, Outcome};
pub use store::{exec_key, Durability, OpenOptions, Store, FORMAT_VERSION};
pub use threads::{ListQuery, PutCheckpoint, ThreadCheckpoint, ThreadTuple, Threads};

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

#[doc(hidden)]
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
