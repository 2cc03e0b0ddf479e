//! The audit log: one entry per mutating operation, written in the same WriteBatch as the
//! operation, each entry hash-chained (blake3) to the one before, so that removing, reordering
//! or editing an entry breaks the chain at a point `verify_audit` names.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::store::{Cf, Store};

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    pub at_ms: u64,
    /// Who: the store handle's actor (`user@pidN` unless set in `OpenOptions`), or the caller a
    /// daemon acted for (`key:NAME`, see [`acting_as`]).
    pub actor: String,
    /// What: `execution.create`, `execution.resume`, `checkpoint.create`, `execution.complete`,
    /// `execution.fail`, `execution.pause`, `execution.delete`, `rollback`, `fork`, `gc`.
    pub action: String,
    /// Which resource: `execution/<id>`, `checkpoint/<id>`, `store`.
    pub resource: String,
    /// Free-form detail, JSON by convention.
    pub detail: String,
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

/// An entry before the committer gives it its place in the chain.
#[derive(Clone, Debug)]
pub struct AuditDraft {
    pub action: &'static str,
    pub resource: String,
    pub detail: String,
    /// What the event adds to the analytics cells (`rollup.rs`), written with it.
    pub rollup: Vec<crate::rollup::Delta>,
    /// Who, when not the store handle's actor: the caller a daemon acts for ([`acting_as`]).
    pub actor: Option<std::sync::Arc<str>>,
}

thread_local! {
    static ACTING_AS: std::cell::RefCell<Option<std::sync::Arc<str>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with every audit entry it makes on this thread recorded as done by `actor` (a
/// daemon serving a request names its caller, `key:alice`), not by the store handle's actor.
/// Nested calls restore the outer actor when they return.
pub fn acting_as<T>(actor: &str, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<std::sync::Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTING_AS.with(|a| *a.borrow_mut() = self.0.take());
        }
    }
    let outer = ACTING_AS.with(|a| a.borrow_mut().replace(std::sync::Arc::from(actor)));
    let _restore = Restore(outer);
    f()
}

/// The caller [`acting_as`] names on this thread, if any.
pub fn acting() -> Option<String> {
    ACTING_AS.with(|a| a.borrow().as_deref().map(str::to_string))
}

impl AuditDraft {
    pub fn new(
        action: &'static str,
        resource: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        AuditDraft {
            action,
            resource: resource.into(),
            detail: detail.into(),
            rollup: Vec::new(),
            actor: ACTING_AS.with(|a| a.borrow().clone()),
        }
    }

    /// Adds an analytics delta to the event.
    pub fn counting(mut self, dims: crate::rollup::Dims, cell: crate::rollup::Cell) -> Self {
        self.rollup.push(crate::rollup::Delta { dims, cell });
        self
    }
}

impl AuditEntry {
    pub fn seal(
        seq: u64,
        at_ms: u64,
        actor: &str,
        draft: AuditDraft,
        prev_hash: [u8; 32],
    ) -> AuditEntry {
        let mut e = AuditEntry {
            seq,
            at_ms,
            actor: draft.actor.as_deref().unwrap_or(actor).to_string(),
            action: draft.action.to_string(),
            resource: draft.resource,
            detail: draft.detail,
            prev_hash,
            hash: [0; 32],
        };
        e.hash = e.compute_hash();
        e
    }

    /// The hash this entry should carry, recomputed from its fields.
    pub fn compute_hash(&self) -> [u8; 32] {
        let body = (
            self.seq,
            self.at_ms,
            &self.actor,
            &self.action,
            &self.resource,
            &self.detail,
            self.prev_hash,
        );
        let mut h = blake3::Hasher::new();
        h.update(b"omium/audit/v1\0");
        h.update(&postcard::to_allocvec(&body).expect("postcard encodes into a Vec"));
        *h.finalize().as_bytes()
    }

    pub fn key(seq: u64) -> [u8; 8] {
        seq.to_be_bytes()
    }
}

/// The chain's last entry: its position and hash. Recorded somewhere the store's owner cannot
/// rewrite (a ticket, a log system, another cluster), it lets a later
/// [`Store::verify_expecting`] prove that nothing up to that entry was cut off or rewritten:
/// the chain links every entry to the one before, so an intact chain that still holds this
/// hash at this position holds every entry before it unchanged.
///
/// Written and parsed as `SEQ:HASH` (`42:` and 64 hex digits), as `omium audit head` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

impl std::fmt::Display for AuditHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, crate::hex(&self.hash))
    }
}

impl std::str::FromStr for AuditHead {
    type Err = Error;

    fn from_str(s: &str) -> Result<AuditHead> {
        let bad = |why: &str| Error::InvalidArgument {
            what: "audit head",
            detail: format!(
                "{s:?} {why} (expected SEQ:HASH, an entry number from 1 and 64 hex digits, \
                 as `omium audit head` prints it)"
            ),
        };
        let (seq, hash) = s.trim().split_once(':').ok_or_else(|| bad("has no ':'"))?;
        let seq: u64 = seq
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| bad("does not start with an entry number"))?;
        let hash = crate::unhex32(hash).ok_or_else(|| bad("does not end in 64 hex digits"))?;
        Ok(AuditHead { seq, hash })
    }
}

impl From<&AuditEntry> for AuditHead {
    fn from(e: &AuditEntry) -> AuditHead {
        AuditHead {
            seq: e.seq,
            hash: e.hash,
        }
    }
}

/// The outcome of checking the whole chain.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct AuditReport {
    pub entries: u64,
    /// Every break found, each naming the entry; empty when the chain is intact.
    pub problems: Vec<String>,
    /// The last entry checked (none when the log is empty): record it elsewhere to detect later
    /// that the log's tail was cut off.
    #[serde(default)]
    pub head: Option<AuditHead>,
}

impl Store {
    /// Audit entries with `seq >= from`, at most `limit` of them, in order.
    pub fn audit_entries(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        for item in self.scan_from(Cf::Audit, &AuditEntry::key(from.max(1))) {
            let (k, v) = item?;
            if out.len() >= limit {
                break;
            }
            out.push(codec::decode(
                "audit entry",
                &|| format!("#{}", key_seq(&k)),
                &v,
            )?);
        }
        Ok(out)
    }

    /// One page of the log, newest first: entries before `before` (the whole log when `None`)
    /// that `keep` accepts, at most `limit`, looking at no more than `budget` entries; with the
    /// `before` of the next page when older entries remain.
    pub fn audit_page(
        &self,
        before: Option<u64>,
        limit: usize,
        budget: usize,
        keep: impl Fn(&AuditEntry) -> bool,
    ) -> Result<(Vec<AuditEntry>, Option<u64>)> {
        let top = match before {
            Some(b) => b.saturating_sub(1).min(self.audit_seq()?),
            None => self.audit_seq()?,
        };
        let (mut out, mut seq) = (Vec::new(), top);
        while seq >= 1 && out.len() < limit && top - seq < budget as u64 {
            if let Some(v) = self.get(Cf::Audit, &AuditEntry::key(seq))? {
                let e: AuditEntry = codec::decode("audit entry", &|| format!("#{seq}"), &v)?;
                if keep(&e) {
                    out.push(e);
                }
            }
            seq -= 1;
        }
        Ok((out, (seq >= 1).then_some(seq + 1)))
    }

    /// Waits until the audit log has an entry past `after` (a change of any kind was
    /// written), or until `timeout` passes; returns the seq of the last entry then (`after` or
    /// less when nothing came). A writer is woken by its own commits; a read-only store (a
    /// secondary beside another process's writer) catches up with the writer every
    /// `poll` until then, because RocksDB tells a secondary nothing.
    pub fn wait_for_audit(&self, after: u64, timeout: Duration, poll: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        if !self.is_read_only() {
            return Ok(self.inner.committer.wait_past(after, deadline));
        }
        loop {
            self.refresh()?;
            let head = self.audit_head()?.map_or(0, |h| h.seq);
            let now = Instant::now();
            if head > after || now >= deadline {
                return Ok(head);
            }
            std::thread::sleep(poll.min(deadline - now));
        }
    }

    /// The seq of the last audit entry this handle knows (0 when the log is empty).
    pub fn audit_seq(&self) -> Result<u64> {
        if self.is_read_only() {
            return Ok(self.audit_head()?.map_or(0, |h| h.seq));
        }
        Ok(self.inner.committer.head_seq())
    }

    /// The chain's last entry, or `None` when nothing was audited yet.
    pub fn audit_head(&self) -> Result<Option<AuditHead>> {
        let Some((k, v)) = self.last(Cf::Audit)? else {
            return Ok(None);
        };
        let e: AuditEntry = codec::decode("audit entry", &|| format!("#{}", key_seq(&k)), &v)?;
        Ok(Some(AuditHead::from(&e)))
    }

    /// Recomputes every hash of the audit chain and checks the links and the numbering.
    pub fn verify_audit(&self) -> Result<AuditReport> {
        self.verify_audit_expecting(None)
    }

    /// [`Store::verify_audit`], and (with `expect`) that the chain still holds the head recorded
    /// earlier: an entry missing at its position means the tail was cut off, another hash there
    /// means the log was rewritten.
    pub fn verify_audit_expecting(&self, expect: Option<&AuditHead>) -> Result<AuditReport> {
        let mut report = AuditReport::default();
        let mut prev = [0u8; 32];
        let mut expected_seq = 1u64;
        for item in self.scan_prefix(Cf::Audit, &[]) {
            let (k, v) = item?;
            report.entries += 1;
            let seq = key_seq(&k);
            let e: AuditEntry = match codec::decode("audit entry", &|| format!("#{seq}"), &v) {
                Ok(e) => e,
                Err(err) => {
                    report.problems.push(format!("audit entry #{seq}: {err}"));
                    expected_seq = seq + 1;
                    continue;
                }
            };
            if seq != expected_seq || e.seq != seq {
                report.problems.push(format!("audit entry #{seq}: expected entry #{expected_seq} (entries missing or renumbered)"));
            }
            if e.prev_hash != prev {
                report.problems.push(format!("audit entry #{seq}: previous-hash link broken (an entry before it was changed or removed)"));
            }
            if e.compute_hash() != e.hash {
                report.problems.push(format!(
                    "audit entry #{seq}: hash mismatch (the entry was modified)"
                ));
            }
            prev = e.hash;
            expected_seq = seq + 1;
            report.head = Some(AuditHead::from(&e));
        }
        if let Some(x) = expect {
            let last = report.head.map_or(0, |h| h.seq);
            match self.get(Cf::Audit, &AuditEntry::key(x.seq))? {
                None => report.problems.push(format!(
                    "audit head {x}: entry #{} is missing; the log ends at entry #{last}: \
                     the entries from #{} on were cut off",
                    x.seq,
                    last + 1,
                )),
                Some(v) => {
                    match codec::decode::<AuditEntry>("audit entry", &|| format!("#{}", x.seq), &v)
                    {
                        Err(err) => report.problems.push(format!(
                        "audit head {x}: entry #{} cannot be read ({err}); the log was damaged \
                         at or before it",
                        x.seq
                    )),
                        Ok(e) if e.hash != x.hash => report.problems.push(format!(
                            "audit head {x}: entry #{} has hash {}; the log was rewritten at or \
                         before entry #{}",
                            x.seq,
                            crate::hex(&e.hash),
                            x.seq
                        )),
                        Ok(_) => {}
                    }
                }
            }
        }
        Ok(report)
    }
}

fn key_seq(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&crate::hex(v))
        } else {
            serde::Serialize::serialize(v, s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            crate::unhex32(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
        } else {
            <[u8; 32]>::deserialize(d)
        }
    }
}
