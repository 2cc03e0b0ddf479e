//! Framework checkpoints: the storage behind agent-framework checkpointers (LangGraph's
//! `BaseCheckpointSaver` in Python, later LangGraph.js), kept here so every binding shares one
//! implementation.
//!
//! A framework keys its checkpoints by thread, namespace and a checkpoint id it chooses, and
//! serializes them itself: the records here hold its bytes opaquely, tagged with the
//! serializer's type name. Channel values are stored apart from the checkpoint, one record per
//! (thread, namespace, channel, version), through the content-addressed blob store: a value
//! that did not change is not written again, and a value that grew by appending (a message
//! list) shares all its chunks but the last few with the previous version.
//!
//! Keys (all column families are prefixed by `thread_key(16) ‖ ns_key(16)`, so one thread is
//! one contiguous range):
//! - `thread_checkpoints`: `… ‖ checkpoint_id` → [`ThreadCheckpoint`]; ids sort as the
//!   framework's strings do, so the newest checkpoint is the last key of its namespace;
//! - `thread_writes`: `… ‖ blake3(checkpoint_id)[..16] ‖ task_id ‖ 0 ‖ idx` → a pending write;
//! - `thread_values`: `… ‖ channel ‖ 0 ‖ version` → a channel value.
//!
//! Every logical operation is one WriteBatch with its audit entry, committed with the
//! handle's durability.

use std::collections::{BTreeMap, HashSet};

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::audit::AuditDraft;
use crate::blob::StateRef;
use crate::codec;
use crate::error::{Error, Result};
use crate::store::{now_ms, Cf, Durability, KeyValue, Store};

type Key16 = [u8; 16];

fn key16(domain: &[u8], s: &str) -> Key16 {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    h.update(s.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

fn thread_key(thread_id: &str) -> Key16 {
    key16(b"omium/thread\0", thread_id)
}

fn ns_key(ns: &str) -> Key16 {
    key16(b"omium/ns\0", ns)
}

fn checkpoint_key16(checkpoint_id: &str) -> Key16 {
    key16(b"omium/thread-checkpoint\0", checkpoint_id)
}

fn prefix(thread_id: &str, ns: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(&thread_key(thread_id));
    k.extend_from_slice(&ns_key(ns));
    k
}

fn checkpoint_row_key(thread_id: &str, ns: &str, checkpoint_id: &str) -> Vec<u8> {
    let mut k = prefix(thread_id, ns);
    k.extend_from_slice(checkpoint_id.as_bytes());
    k
}

fn writes_prefix(thread_id: &str, ns: &str, checkpoint_id: &str) -> Vec<u8> {
    let mut k = prefix(thread_id, ns);
    k.extend_from_slice(&checkpoint_key16(checkpoint_id));
    k
}

fn write_row_key(
    thread_id: &str,
    ns: &str,
    checkpoint_id: &str,
    task_id: &str,
    idx: i64,
) -> Vec<u8> {
    let mut k = writes_prefix(thread_id, ns, checkpoint_id);
    k.extend_from_slice(task_id.as_bytes());
    k.push(0);
    // Sign bit flipped: negative indexes (the frameworks' special writes) sort first.
    k.extend_from_slice(&((idx as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn value_row_key(thread_id: &str, ns: &str, channel: &str, version: &str) -> Vec<u8> {
    let mut k = prefix(thread_id, ns);
    k.extend_from_slice(channel.as_bytes());
    k.push(0);
    k.extend_from_slice(version.as_bytes());
    k
}

/// Replaces the 16-byte thread key at the front of `key` (used by `copy_thread`).
fn rekey(key: &[u8], target: &Key16) -> Vec<u8> {
    let mut k = key.to_vec();
    k[..16].copy_from_slice(target);
    k
}

/// A framework checkpoint as stored (channel values apart, see [`ChannelValue`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCheckpoint {
    pub thread_id: String,
    /// The framework's namespace (LangGraph's `checkpoint_ns`; "" at the root graph).
    pub ns: String,
    pub checkpoint_id: String,
    pub parent_id: Option<String>,
    /// The serializer's type tag of `checkpoint` (e.g. "msgpack").
    pub checkpoint_type: String,
    #[serde(with = "crate::codec::bytes")]
    pub checkpoint: Vec<u8>,
    pub metadata_type: String,
    #[serde(with = "crate::codec::bytes")]
    pub metadata: Vec<u8>,
    /// Top-level metadata fields that `list` can filter on: name → canonical JSON of the value.
    pub fields: Vec<(String, String)>,
    /// The run that wrote this checkpoint, for `delete_for_runs`.
    pub run_id: Option<String>,
    /// The (channel, version) pairs whose values make up this checkpoint's state.
    pub channels: Vec<(String, String)>,
    pub created_at_ms: u64,
}

/// A channel value at one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelValue {
    pub channel: String,
    pub version: String,
    pub value_type: String,
    pub value: Vec<u8>,
}

/// A write a task made before the next checkpoint (LangGraph's pending writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWrite {
    pub task_id: String,
    pub task_path: String,
    pub idx: i64,
    pub channel: String,
    pub value_type: String,
    pub value: Vec<u8>,
}

/// A checkpoint with its channel values and pending writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadTuple {
    pub checkpoint: ThreadCheckpoint,
    /// Values of `checkpoint.channels` that are stored, in that order.
    pub values: Vec<ChannelValue>,
    /// Ordered by task path, task id, then index (the order a framework applies them in).
    pub writes: Vec<PendingWrite>,
}

/// A stored blob reference with its checksum: a channel value or a pending write's value.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BlobRecord {
    value_type: String,
    state: StateRef,
    checksum: [u8; 32],
    len: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WriteRecord {
    task_id: String,
    task_path: String,
    idx: i64,
    channel: String,
    blob: BlobRecord,
}

/// What `list` selects. Unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub thread_id: Option<String>,
    pub ns: Option<String>,
    pub checkpoint_id: Option<String>,
    /// Only checkpoints whose id sorts before this one.
    pub before: Option<String>,
    /// Every pair must be among the checkpoint's `fields`.
    pub filter: Vec<(String, String)>,
    pub limit: Option<usize>,
}

/// A checkpoint to store; `values` are the channel values new in it (unchanged channels keep
/// the version, and so the value, an earlier checkpoint stored).
#[derive(Clone, Debug, Default)]
pub struct PutCheckpoint<'a> {
    pub thread_id: &'a str,
    pub ns: &'a str,
    pub checkpoint_id: &'a str,
    pub parent_id: Option<&'a str>,
    pub checkpoint_type: &'a str,
    pub checkpoint: &'a [u8],
    pub metadata_type: &'a str,
    pub metadata: &'a [u8],
    pub fields: Vec<(String, String)>,
    pub run_id: Option<&'a str>,
    pub channels: Vec<(String, String)>,
    pub values: Vec<NewValue<'a>>,
}

/// A channel value to store.
#[derive(Clone, Debug, Default)]
pub struct NewValue<'a> {
    pub channel: &'a str,
    pub version: &'a str,
    pub value_type: &'a str,
    pub value: &'a [u8],
}

/// A pending write to store.
#[derive(Clone, Debug, Default)]
pub struct NewWrite<'a> {
    pub idx: i64,
    pub channel: &'a str,
    pub value_type: &'a str,
    pub value: &'a [u8],
}

/// Framework checkpoints of a store, written with one durability (the store's unless set).
#[derive(Clone)]
pub struct Threads {
    store: Store,
    durability: Option<Durability>,
}

impl Store {
    /// Framework checkpoints (threads) of this store.
    pub fn threads(&self) -> Threads {
        Threads {
            store: self.clone(),
            durability: None,
        }
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn check_id(what: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::InvalidArgument {
            what,
            detail: format!("{value:?} contains a NUL character; ids must not"),
        });
    }
    Ok(())
}

impl Threads {
    /// Writes with `durability` instead of the store's default.
    pub fn with_durability(mut self, durability: Durability) -> Threads {
        self.durability = Some(durability);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `None` on a read-only handle of a store written before these column families existed.
    fn cf(&self, cf: Cf) -> Option<&rocksdb::ColumnFamily> {
        self.store.inner.db.cf_handle(cf.name())
    }

    /// Every key and value of `cf` under `prefix`, in key order (read before a batch that
    /// rewrites them is built).
    fn scan(&self, cf: Cf, prefix: &[u8]) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        self.for_each(cf, prefix, false, None, |k, v| {
            out.push((k.into(), v.into()));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Calls `f` on each key and value of `cf` under `prefix` (below `upper` when given), in
    /// key order or reversed, until `f` returns false: `list` stops reading at its limit.
    fn for_each(
        &self,
        cf: Cf,
        prefix: &[u8],
        reverse: bool,
        upper: Option<Vec<u8>>,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let Some(handle) = self.cf(cf) else {
            return Ok(());
        };
        let mut ro = ReadOptions::default();
        if !prefix.is_empty() {
            ro.set_iterate_lower_bound(prefix.to_vec());
        }
        if let Some(u) = upper.or_else(|| prefix_upper_bound(prefix)) {
            ro.set_iterate_upper_bound(u);
        }
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::From(prefix, Direction::Forward)
        };
        for item in self.store.inner.db.iterator_cf_opt(handle, ro, mode) {
            let (k, v) = item.map_err(|e| Error::storage(format!("scanning {}", cf.name()), e))?;
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn commit(&self, batch: WriteBatch, audit: Vec<AuditDraft>) -> Result<()> {
        self.store.commit(batch, audit, self.durability)
    }

    fn blob(&self, batch: &mut WriteBatch, value_type: &str, bytes: &[u8]) -> Result<BlobRecord> {
        let (state, _, checksum) = self.store.put_state(batch, bytes)?;
        Ok(BlobRecord {
            value_type: value_type.to_string(),
            state,
            checksum,
            len: bytes.len() as u64,
        })
    }

    fn read_blob(
        &self,
        rec: &BlobRecord,
        thread_id: &str,
        checkpoint: &str,
        what: &str,
    ) -> Result<Vec<u8>> {
        self.store
            .read_blob(&rec.state, &rec.checksum, rec.len, &|detail| {
                Error::Integrity {
                    checkpoint: checkpoint.to_string(),
                    execution: format!("thread {thread_id}"),
                    detail: format!("{what}: {detail}"),
                }
            })
    }

    /// Stores a checkpoint and its new channel values, atomically.
    pub fn put(&self, put: &PutCheckpoint<'_>) -> Result<()> {
        self.store.require_writer("storing a thread checkpoint")?;
        check_id("thread_id", put.thread_id)?;
        check_id("checkpoint_id", put.checkpoint_id)?;
        if put.checkpoint_id.is_empty() {
            return Err(Error::InvalidArgument {
                what: "checkpoint_id",
                detail: "empty; a checkpoint needs an id".into(),
            });
        }
        for v in &put.values {
            check_id("channel", v.channel)?;
        }
        let _shared = self.store.inner.gc_lock.read();
        let mut batch = WriteBatch::default();
        let values_cf = self.store.cf(Cf::ThreadValues);
        for v in &put.values {
            let rec = self.blob(&mut batch, v.value_type, v.value)?;
            batch.put_cf(
                values_cf,
                value_row_key(put.thread_id, put.ns, v.channel, v.version),
                codec::encode(&rec),
            );
        }
        let record = ThreadCheckpoint {
            thread_id: put.thread_id.to_string(),
            ns: put.ns.to_string(),
            checkpoint_id: put.checkpoint_id.to_string(),
            parent_id: put.parent_id.map(str::to_string),
            checkpoint_type: put.checkpoint_type.to_string(),
            checkpoint: put.checkpoint.to_vec(),
            metadata_type: put.metadata_type.to_string(),
            metadata: put.metadata.to_vec(),
            fields: put.fields.clone(),
            run_id: put.run_id.map(str::to_string),
            channels: put.channels.clone(),
            created_at_ms: now_ms(),
        };
        batch.put_cf(
            self.store.cf(Cf::ThreadCheckpoints),
            checkpoint_row_key(put.thread_id, put.ns, put.checkpoint_id),
            codec::encode(&record),
        );
        let audit = AuditDraft::new(
            "thread.checkpoint",
            format!("thread/{}", put.thread_id),
            format!(
                "{{\"ns\":{},\"checkpoint\":{},\"values\":{}}}",
                json(put.ns),
                json(put.checkpoint_id),
                put.values.len()
            ),
        );
        self.commit(batch, vec![audit])
    }

    /// Stores the pending writes of one task against a checkpoint, atomically. A write at an
    /// index that is already stored is kept when the index is non-negative (a task re-run
    /// after a crash writes the same thing again) and replaced when it is negative (the
    /// frameworks' special writes: errors, interrupts, resume values, which change).
    pub fn put_writes(
        &self,
        thread_id: &str,
        ns: &str,
        checkpoint_id: &str,
        task_id: &str,
        task_path: &str,
        writes: &[NewWrite<'_>],
    ) -> Result<()> {
        self.store.require_writer("storing pending writes")?;
        check_id("thread_id", thread_id)?;
        check_id("task_id", task_id)?;
        let _shared = self.store.inner.gc_lock.read();
        let cf = self.store.cf(Cf::ThreadWrites);
        let mut batch = WriteBatch::default();
        let mut n = 0usize;
        for w in writes {
            let key = write_row_key(thread_id, ns, checkpoint_id, task_id, w.idx);
            if w.idx >= 0
                && self
                    .store
                    .inner
                    .db
                    .get_pinned_cf(cf, &key)
                    .map_err(|e| Error::storage("reading thread_writes", e))?
                    .is_some()
            {
                continue;
            }
            let rec = WriteRecord {
                task_id: task_id.to_string(),
                task_path: task_path.to_string(),
                idx: w.idx,
                channel: w.channel.to_string(),
                blob: self.blob(&mut batch, w.value_type, w.value)?,
            };
            batch.put_cf(cf, key, codec::encode(&rec));
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        let audit = AuditDraft::new(
            "thread.writes",
            format!("thread/{thread_id}"),
            format!(
                "{{\"ns\":{},\"checkpoint\":{},\"task\":{},\"writes\":{n}}}",
                json(ns),
                json(checkpoint_id),
                json(task_id)
            ),
        );
        self.commit(batch, vec![audit])
    }

    fn decode_checkpoint(&self, k: &[u8], v: &[u8]) -> Result<ThreadCheckpoint> {
        codec::decode("thread checkpoint", &|| crate::hex(k), v)
    }

    /// A checkpoint of a thread: the given one, or the newest of the namespace.
    pub fn get(
        &self,
        thread_id: &str,
        ns: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<ThreadTuple>> {
        let record = match checkpoint_id {
            Some(id) => {
                let Some(cf) = self.cf(Cf::ThreadCheckpoints) else {
                    return Ok(None);
                };
                let key = checkpoint_row_key(thread_id, ns, id);
                match self
                    .store
                    .inner
                    .db
                    .get_pinned_cf(cf, &key)
                    .map_err(|e| Error::storage("reading thread_checkpoints", e))?
                {
                    Some(v) => Some(self.decode_checkpoint(&key, &v)?),
                    None => None,
                }
            }
            None => {
                let mut found = None;
                self.for_each(
                    Cf::ThreadCheckpoints,
                    &prefix(thread_id, ns),
                    true,
                    None,
                    |k, v| {
                        found = Some(self.decode_checkpoint(k, v)?);
                        Ok(false)
                    },
                )?;
                found
            }
        };
        match record {
            Some(r) if r.thread_id == thread_id && r.ns == ns => Ok(Some(self.load(r)?)),
            Some(r) => Err(Error::Integrity {
                checkpoint: r.checkpoint_id.clone(),
                execution: format!("thread {thread_id}"),
                detail: format!(
                    "the record under this key belongs to thread {:?} namespace {:?} (key collision)",
                    r.thread_id, r.ns
                ),
            }),
            None => Ok(None),
        }
    }

    /// Adds the channel values and pending writes of a checkpoint.
    fn load(&self, checkpoint: ThreadCheckpoint) -> Result<ThreadTuple> {
        let (t, ns, id) = (
            &checkpoint.thread_id,
            &checkpoint.ns,
            &checkpoint.checkpoint_id,
        );
        let mut values = Vec::with_capacity(checkpoint.channels.len());
        if let Some(cf) = self.cf(Cf::ThreadValues) {
            let keys: Vec<Vec<u8>> = checkpoint
                .channels
                .iter()
                .map(|(c, v)| value_row_key(t, ns, c, v))
                .collect();
            let got = self.store.inner.db.batched_multi_get_cf(cf, &keys, false);
            for ((channel, version), (key, r)) in
                checkpoint.channels.iter().zip(keys.iter().zip(got))
            {
                let Some(v) = r.map_err(|e| Error::storage("reading thread_values", e))? else {
                    continue;
                };
                let rec: BlobRecord = codec::decode("channel value", &|| crate::hex(key), &v)?;
                let value = self.read_blob(
                    &rec,
                    t,
                    id,
                    &format!("channel {channel:?} version {version:?}"),
                )?;
                values.push(ChannelValue {
                    channel: channel.clone(),
                    version: version.clone(),
                    value_type: rec.value_type,
                    value,
                });
            }
        }
        let mut writes = Vec::new();
        self.for_each(
            Cf::ThreadWrites,
            &writes_prefix(t, ns, id),
            false,
            None,
            |k, v| {
                let rec: WriteRecord = codec::decode("pending write", &|| crate::hex(k), v)?;
                let value = self.read_blob(
                    &rec.blob,
                    t,
                    id,
                    &format!("pending write {} of task {:?}", rec.idx, rec.task_id),
                )?;
                writes.push(PendingWrite {
                    task_id: rec.task_id,
                    task_path: rec.task_path,
                    idx: rec.idx,
                    channel: rec.channel,
                    value_type: rec.blob.value_type,
                    value,
                });
                Ok(true)
            },
        )?;
        writes.sort_by(|a, b| {
            (&a.task_path, &a.task_id, a.idx).cmp(&(&b.task_path, &b.task_id, b.idx))
        });
        Ok(ThreadTuple {
            checkpoint,
            values,
            writes,
        })
    }

    fn matches(q: &ListQuery, r: &ThreadCheckpoint) -> bool {
        q.thread_id.as_ref().is_none_or(|t| *t == r.thread_id)
            && q.ns.as_ref().is_none_or(|n| *n == r.ns)
            && q.checkpoint_id
                .as_ref()
                .is_none_or(|c| *c == r.checkpoint_id)
            && q.before
                .as_ref()
                .is_none_or(|b| r.checkpoint_id.as_str() < b.as_str())
            && q.filter.iter().all(|f| r.fields.contains(f))
    }

    /// Checkpoints matching `query`, newest id first.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<ThreadTuple>> {
        let limit = query.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut found: Vec<ThreadCheckpoint> = Vec::new();
        match (&query.thread_id, &query.ns) {
            (Some(t), Some(ns)) => {
                // One namespace is one key range in id order: read it backwards, stop at limit.
                let p = prefix(t, ns);
                let upper = query.before.as_ref().map(|b| {
                    let mut u = p.clone();
                    u.extend_from_slice(b.as_bytes());
                    u
                });
                self.for_each(Cf::ThreadCheckpoints, &p, true, upper, |k, v| {
                    let r = self.decode_checkpoint(k, v)?;
                    if Self::matches(query, &r) {
                        found.push(r);
                    }
                    Ok(found.len() < limit)
                })?;
            }
            _ => {
                let p = query
                    .thread_id
                    .as_deref()
                    .map(|t| thread_key(t).to_vec())
                    .unwrap_or_default();
                self.for_each(Cf::ThreadCheckpoints, &p, false, None, |k, v| {
                    let r = self.decode_checkpoint(k, v)?;
                    if Self::matches(query, &r) {
                        found.push(r);
                    }
                    Ok(true)
                })?;
                found.sort_by(|a, b| {
                    b.checkpoint_id
                        .cmp(&a.checkpoint_id)
                        .then_with(|| a.thread_id.cmp(&b.thread_id))
                        .then_with(|| a.ns.cmp(&b.ns))
                });
                found.truncate(limit);
            }
        }
        found.into_iter().map(|r| self.load(r)).collect()
    }

    /// Deletes a thread: its checkpoints, values and writes in every namespace.
    pub fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.store.require_writer("deleting a thread")?;
        let tk = thread_key(thread_id);
        let upper = prefix_upper_bound(&tk).expect("a blake3 prefix is not all 0xff");
        let mut batch = WriteBatch::default();
        for cf in [Cf::ThreadCheckpoints, Cf::ThreadWrites, Cf::ThreadValues] {
            // A range delete: also covers what a concurrent writer adds before this commits.
            batch.delete_range_cf(self.store.cf(cf), &tk[..], &upper[..]);
        }
        let audit = AuditDraft::new("thread.delete", format!("thread/{thread_id}"), "{}");
        self.commit(batch, vec![audit])
    }

    /// Deletes `checkpoints`, their pending writes, and the values no remaining checkpoint of
    /// their namespaces uses, into `batch`.
    fn delete_checkpoints(
        &self,
        batch: &mut WriteBatch,
        checkpoints: &[ThreadCheckpoint],
    ) -> Result<()> {
        let mut namespaces: BTreeMap<(String, String), ()> = BTreeMap::new();
        let gone: HashSet<(&str, &str, &str)> = checkpoints
            .iter()
            .map(|c| {
                (
                    c.thread_id.as_str(),
                    c.ns.as_str(),
                    c.checkpoint_id.as_str(),
                )
            })
            .collect();
        for c in checkpoints {
            batch.delete_cf(
                self.store.cf(Cf::ThreadCheckpoints),
                checkpoint_row_key(&c.thread_id, &c.ns, &c.checkpoint_id),
            );
            for (k, _) in self.scan(
                Cf::ThreadWrites,
                &writes_prefix(&c.thread_id, &c.ns, &c.checkpoint_id),
            )? {
                batch.delete_cf(self.store.cf(Cf::ThreadWrites), k);
            }
            namespaces.insert((c.thread_id.clone(), c.ns.clone()), ());
        }
        for (thread_id, ns) in namespaces.keys() {
            let p = prefix(thread_id, ns);
            let mut used: HashSet<Vec<u8>> = HashSet::new();
            for (k, v) in self.scan(Cf::ThreadCheckpoints, &p)? {
                let r = self.decode_checkpoint(&k, &v)?;
                if gone.contains(&(
                    r.thread_id.as_str(),
                    r.ns.as_str(),
                    r.checkpoint_id.as_str(),
                )) {
                    continue;
                }
                for (c, ver) in &r.channels {
                    used.insert(value_row_key(thread_id, ns, c, ver));
                }
            }
            for (k, _) in self.scan(Cf::ThreadValues, &p)? {
                if !used.contains(k.as_ref()) {
                    batch.delete_cf(self.store.cf(Cf::ThreadValues), k);
                }
            }
        }
        Ok(())
    }

    /// Deletes every checkpoint written by one of `run_ids` (with its writes and the values
    /// only it used). Returns how many checkpoints went.
    pub fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        self.store
            .require_writer("deleting the checkpoints of runs")?;
        let runs: HashSet<&str> = run_ids.iter().map(String::as_str).collect();
        let mut doomed = Vec::new();
        if !runs.is_empty() {
            self.for_each(Cf::ThreadCheckpoints, &[], false, None, |k, v| {
                let r = self.decode_checkpoint(k, v)?;
                if r.run_id.as_deref().is_some_and(|id| runs.contains(id)) {
                    doomed.push(r);
                }
                Ok(true)
            })?;
        }
        let mut batch = WriteBatch::default();
        self.delete_checkpoints(&mut batch, &doomed)?;
        let n = doomed.len() as u64;
        let runs_json: Vec<String> = run_ids.iter().map(|r| json(r)).collect();
        let audit = AuditDraft::new(
            "thread.delete_runs",
            "store",
            format!("{{\"runs\":[{}],\"checkpoints\":{n}}}", runs_json.join(",")),
        );
        self.commit(batch, vec![audit])?;
        Ok(n)
    }

    /// Copies every checkpoint, value and write of `source` to `target` (whose own checkpoints
    /// are kept; ids that exist in both are replaced). Chunks are shared, not copied. Returns
    /// how many checkpoints were copied.
    pub fn copy_thread(&self, source: &str, target: &str) -> Result<u64> {
        self.store.require_writer("copying a thread")?;
        check_id("thread_id", target)?;
        let (sk, tk) = (thread_key(source), thread_key(target));
        let _shared = self.store.inner.gc_lock.read();
        let mut batch = WriteBatch::default();
        let mut n = 0u64;
        for (k, v) in self.scan(Cf::ThreadCheckpoints, &sk)? {
            let mut r = self.decode_checkpoint(&k, &v)?;
            if r.thread_id != source {
                continue;
            }
            r.thread_id = target.to_string();
            batch.put_cf(
                self.store.cf(Cf::ThreadCheckpoints),
                rekey(&k, &tk),
                codec::encode(&r),
            );
            n += 1;
        }
        for cf in [Cf::ThreadWrites, Cf::ThreadValues] {
            for (k, v) in self.scan(cf, &sk)? {
                batch.put_cf(self.store.cf(cf), rekey(&k, &tk), v);
            }
        }
        let audit = AuditDraft::new(
            "thread.copy",
            format!("thread/{target}"),
            format!("{{\"source\":{},\"checkpoints\":{n}}}", json(source)),
        );
        self.commit(batch, vec![audit])?;
        Ok(n)
    }

    /// Prunes threads: with `keep_latest`, every namespace keeps only its newest checkpoint
    /// (with its writes and values); otherwise the threads are deleted. Returns how many
    /// checkpoints went.
    pub fn prune(&self, thread_ids: &[String], keep_latest: bool) -> Result<u64> {
        self.store.require_writer("pruning threads")?;
        let mut batch = WriteBatch::default();
        let mut n = 0u64;
        for t in thread_ids {
            let mut by_ns: BTreeMap<String, Vec<ThreadCheckpoint>> = BTreeMap::new();
            for (k, v) in self.scan(Cf::ThreadCheckpoints, &thread_key(t))? {
                let r = self.decode_checkpoint(&k, &v)?;
                if r.thread_id == *t {
                    by_ns.entry(r.ns.clone()).or_default().push(r);
                }
            }
            let mut doomed = Vec::new();
            for (_, mut list) in by_ns {
                if keep_latest {
                    // Keys are in id order: the last one is the newest.
                    list.pop();
                }
                doomed.extend(list);
            }
            n += doomed.len() as u64;
            if keep_latest {
                self.delete_checkpoints(&mut batch, &doomed)?;
            } else {
                let tk = thread_key(t);
                let upper = prefix_upper_bound(&tk).expect("a blake3 prefix is not all 0xff");
                for cf in [Cf::ThreadCheckpoints, Cf::ThreadWrites, Cf::ThreadValues] {
                    batch.delete_range_cf(self.store.cf(cf), &tk[..], &upper[..]);
                }
            }
        }
        let threads_json: Vec<String> = thread_ids.iter().map(|t| json(t)).collect();
        let audit = AuditDraft::new(
            "thread.prune",
            "store",
            format!(
                "{{\"threads\":[{}],\"keep_latest\":{keep_latest},\"checkpoints\":{n}}}",
                threads_json.join(",")
            ),
        );
        self.commit(batch, vec![audit])?;
        Ok(n)
    }
}

/// `Store::verify` over threads: reads every thread checkpoint with its channel values and
/// pending writes (which re-hashes their chunks) and reports each failure, named by thread and
/// checkpoint, into `report`.
pub fn verify_into(store: &Store, report: &mut crate::checkpoint::VerifyReport) -> Result<()> {
    let threads = store.threads();
    let mut records = Vec::new();
    threads.for_each(Cf::ThreadCheckpoints, &[], false, None, |k, v| {
        records.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    for (k, v) in records {
        report.checkpoints += 1;
        let problem = |execution: String, checkpoint: Option<String>, error: String| {
            crate::checkpoint::Problem {
                execution,
                checkpoint,
                error,
            }
        };
        match threads.decode_checkpoint(&k, &v) {
            Err(e) => report
                .problems
                .push(problem("(thread)".into(), None, e.to_string())),
            Ok(r) => {
                let (thread, id) = (format!("thread {}", r.thread_id), r.checkpoint_id.clone());
                if let Err(e) = threads.load(r) {
                    report
                        .problems
                        .push(problem(thread, Some(id), e.to_string()));
                }
            }
        }
    }
    Ok(())
}

/// Adds the chunks that thread records reference to `live` (GC's mark phase).
pub fn mark_live(store: &Store, live: &mut HashSet<[u8; 32]>) -> Result<()> {
    let threads = store.threads();
    threads.for_each(Cf::ThreadValues, &[], false, None, |k, v| {
        let rec: BlobRecord = codec::decode("channel value", &|| crate::hex(k), v)?;
        live.extend(rec.state.chunk_hashes().copied());
        Ok(true)
    })?;
    threads.for_each(Cf::ThreadWrites, &[], false, None, |k, v| {
        let rec: WriteRecord = codec::decode("pending write", &|| crate::hex(k), v)?;
        live.extend(rec.blob.state.chunk_hashes().copied());
        Ok(true)
    })
}

fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}
