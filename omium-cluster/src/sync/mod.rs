//! Remote sync: a local store pushes its executions to an Omium cluster, and another store
//! pulls them from there to resume them.
//!
//! What travels is what the local store already holds: execution records, checkpoint records
//! (the journal), the input and output, and the chunks of the states. Chunks are content
//! addressed, so a push first asks the cluster which of the new checkpoints' chunks it lacks and
//! sends only those (a set difference, as git does). A push is one [`SyncBatch`]: one Raft log
//! entry, applied by every node into its `consensus` column family (so Raft snapshots carry the
//! synced data too):
//!
//! | key | value |
//! |---|---|
//! | `X ‖ exec_key(16)` | [`Synced`]: the execution, its input and output, and [`SyncMeta`] |
//! | `C ‖ exec_key(16) ‖ checkpoint id(16)` | the `Checkpoint` record |
//! | `B ‖ blake3(32)` | the stored chunk (codec byte ‖ bytes); empty when it is in object storage |
//!
//! | `F ‖ exec_key(16)` | the execution's fencing epoch (u64, big-endian; absent: 0) |
//!
//! Conflicts are decided when the log entry is applied, so every node decides the same way:
//! - **by lease**: the store that pushed last owns the execution until its lease expires. A
//!   push or pull asks for a duration (what is left of the local run's lease, or the claim of a
//!   pull) and the cluster sets the deadline on its own clock: `at_ms` of the log entry, taken
//!   by the leader that proposed it, plus the duration (at most [`cluster::MAX_CLAIM_MS`]).
//!   Stores' clocks are never compared with each other's or the cluster's. Another store's
//!   push or pull before the deadline is refused with `execution_leased`;
//! - **by epoch** (fencing): every change of owner adds one to the execution's epoch, and the
//!   owner presents the epoch it was given on every push. A push that presents an older epoch
//!   comes from a store that was taken over, and is refused with `lease_lost` even when the new
//!   owner's lease has expired since: that store must pull before it runs the execution again.
//!   A running store checks its hold before each step body ([`remote::Syncer::fence`]), so it
//!   stops before the body, not after;
//! - **by branch**: a push from a store that is not the last owner must start from the head
//!   the cluster holds (its `base`, the head it last pushed or pulled). If the execution moved on
//!   elsewhere since, the push is refused with `sync_conflict`, naming both heads. Nothing is
//!   merged: the refused store keeps its checkpoints, and a human decides (pull to take the
//!   cluster's branch after moving the local one aside, or fork).
//!
//! [`remote::Syncer`] runs the pushes (in the background, or before a step returns) and pulls.

pub mod cluster;
pub mod objects;
pub mod remote;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::audit::AuditDraft;
use crate::checkpoint::Checkpoint;
use crate::codec;
use crate::error::{Error, Result};
use crate::execution::{io_key, Execution, INPUT_SUFFIX, OUTPUT_SUFFIX};
use crate::store::{exec_key, Cf, ExecKey, Store};

pub use remote::{AbandonedPull, RemoteDurability, SyncConfig, SyncReport, Syncer};

/// Longest a push's chunk bytes get before the rest goes in another log entry.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// A chunk as stored (codec byte ‖ bytes), with its address and raw length so that a node can
/// verify it before it enters the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub hash: [u8; 32],
    pub len: u32,
    #[serde(with = "crate::codec::bytes")]
    pub stored: Vec<u8>,
}

/// What a store pushes of one execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The pushing store's id (`Store::store_id`).
    pub store_id: String,
    pub host: String,
    /// The cluster's head of this execution as this store last knew it (after its last push
    /// or pull); `None` when it never synced this execution.
    pub base: Option<Ulid>,
    pub execution: Execution,
    pub input: Option<Vec<u8>>,
    pub output: Option<Vec<u8>>,
    /// Checkpoints the cluster does not have from this store yet.
    pub checkpoints: Vec<Checkpoint>,
    /// How long this store asks to hold the execution, from when the cluster applies the push
    /// (what is left of its run's lease; 0 when nobody runs it).
    pub lease_ms: u64,
    /// The fencing epoch this store was given by its last accepted push or pull of the
    /// execution in this process (0: none).
    pub epoch: u64,
}

/// One push: chunks first, then the executions that use them. One Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncBatch {
    pub chunks: Vec<Chunk>,
    /// Chunks uploaded to object storage (their addresses only).
    pub external: Vec<[u8; 32]>,
    pub bundles: Vec<Bundle>,
    pub at_ms: u64,
}

/// Pushes as Raft logs written before fencing epochs hold them (`Command::Sync`): a node that
/// replays such a log decodes them and applies them as pushes that present no epoch, with the
/// lease they named measured from the entry's time.
pub mod legacy {
    use super::{Bundle, Checkpoint, Chunk, Execution, SyncBatch, Ulid};
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct BundleV1 {
        pub store_id: String,
        pub host: String,
        pub base: Option<Ulid>,
        pub execution: Execution,
        pub input: Option<Vec<u8>>,
        pub output: Option<Vec<u8>>,
        pub checkpoints: Vec<Checkpoint>,
        /// A deadline on the pushing store's clock.
        pub lease_until_ms: u64,
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
    pub struct SyncBatchV1 {
        pub chunks: Vec<Chunk>,
        pub external: Vec<[u8; 32]>,
        pub bundles: Vec<BundleV1>,
        pub at_ms: u64,
    }

    impl SyncBatchV1 {
        pub fn upgrade(&self) -> SyncBatch {
            SyncBatch {
                chunks: self.chunks.clone(),
                external: self.external.clone(),
                bundles: self
                    .bundles
                    .iter()
                    .map(|b| Bundle {
                        store_id: b.store_id.clone(),
                        host: b.host.clone(),
                        base: b.base,
                        execution: b.execution.clone(),
                        input: b.input.clone(),
                        output: b.output.clone(),
                        checkpoints: b.checkpoints.clone(),
                        lease_ms: b.lease_until_ms.saturating_sub(self.at_ms),
                        epoch: 0,
                    })
                    .collect(),
                at_ms: self.at_ms,
            }
        }
    }
}

/// Who holds a synced execution in the cluster, and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMeta {
    /// The store that pushed or pulled it last.
    pub owner: String,
    pub owner_host: String,
    pub head: Option<Ulid>,
    /// The owner holds it until then; after that any store may pull it.
    pub lease_until_ms: u64,
    pub checkpoints: u64,
    pub updated_at_ms: u64,
    /// The log entry that changed it last.
    pub log_index: u64,
}

/// A synced execution as a node stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    pub meta: SyncMeta,
    pub execution: Execution,
    pub input: Option<Vec<u8>>,
    pub output: Option<Vec<u8>>,
}

/// What applying a push did to one execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncOutcome {
    Accepted {
        head: Option<Ulid>,
        checkpoints: u64,
        /// The execution's fencing epoch after the push or claim.
        epoch: u64,
        /// How long the store holds it from when the entry was applied (0: it does not).
        lease_ms: u64,
    },
    Rejected {
        code: String,
        detail: String,
    },
}

/// A pull's answer: the execution and every checkpoint the cluster holds of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pulled {
    pub synced: Synced,
    pub checkpoints: Vec<Checkpoint>,
    /// The fencing epoch the pulling store presents on its pushes of the execution.
    pub epoch: u64,
    /// How long the pulling store holds it from when its claim was applied (0: a read).
    pub lease_ms: u64,
}

/// `POST /sync/pull` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PullRequest {
    pub execution_id: String,
    pub store_id: String,
    pub host: String,
    /// Take the execution over for this long (0: read it without taking it over).
    pub claim_ms: u64,
}

/// A chunk a node sends back: its stored bytes, or `None` when it is in object storage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FetchedChunk {
    pub hash: [u8; 32],
    #[serde(with = "opt_bytes")]
    pub stored: Option<Vec<u8>>,
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct B(#[serde(with = "crate::codec::bytes")] Vec<u8>);

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|b| B(b.clone())).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<B>::deserialize(d)?.map(|b| b.0))
    }
}

pub(crate) fn synced_key(ek: &ExecKey) -> Vec<u8> {
    [&[b'X'][..], ek].concat()
}

pub(crate) fn checkpoint_key(ek: &ExecKey, id: Ulid) -> Vec<u8> {
    [&[b'C'][..], ek, &id.to_bytes()].concat()
}

pub(crate) fn chunk_key(hash: &[u8; 32]) -> Vec<u8> {
    [&[b'B'][..], hash].concat()
}

fn epoch_key(ek: &ExecKey) -> Vec<u8> {
    [&[b'F'][..], ek].concat()
}

/// The fencing epoch of an execution (0 before its first owner, and for executions synced
/// before epochs existed).
pub(crate) fn read_epoch(kv: &dyn Kv, ek: &ExecKey) -> std::io::Result<u64> {
    let key = epoch_key(ek);
    match kv.get(&key)? {
        None => Ok(0),
        Some(b) => b
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "fencing epoch at {}: {} bytes, expected 8",
                        crate::hex(&key),
                        b.len()
                    ),
                )
            }),
    }
}

/// Records `owner` as the holder: the epoch goes up by one when the owner changes.
fn take_epoch(
    kv: &mut dyn Kv,
    ek: &ExecKey,
    previous_owner: Option<&str>,
    owner: &str,
) -> std::io::Result<u64> {
    let epoch = read_epoch(kv, ek)?;
    let next = match previous_owner {
        Some(p) if p == owner => epoch.max(1),
        _ => epoch + 1,
    };
    if next != epoch {
        kv.put(epoch_key(ek), next.to_be_bytes().to_vec());
    }
    Ok(next)
}

/// The deadline of a lease of `lease_ms` asked for in an entry applied at `at_ms`.
fn deadline(at_ms: u64, lease_ms: u64) -> u64 {
    match lease_ms {
        0 => 0,
        ms => at_ms.saturating_add(ms.min(cluster::MAX_CLAIM_MS)),
    }
}

/// Reads and writes of the state machine while it applies one log entry.
pub(crate) trait Kv {
    fn get(&self, key: &[u8]) -> std::io::Result<Option<Vec<u8>>>;
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
}

fn io_decode(what: &'static str, key: &[u8], e: Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{what} at {}: {e}", crate::hex(key)),
    )
}

pub(crate) fn read_synced(kv: &dyn Kv, ek: &ExecKey) -> std::io::Result<Option<Synced>> {
    let key = synced_key(ek);
    kv.get(&key)?
        .map(|b| {
            codec::decode("synced execution", &|| crate::hex(&key), &b)
                .map_err(|e| io_decode("synced execution", &key, e))
        })
        .transpose()
}

fn rejected(code: &str, detail: String) -> SyncOutcome {
    SyncOutcome::Rejected {
        code: code.into(),
        detail,
    }
}

fn head_str(h: Option<Ulid>) -> String {
    h.map(|h| h.to_string()).unwrap_or_else(|| "none".into())
}

/// Why `store` may not take `s` over at `at_ms`, if it may not.
fn leased_by_other(s: &Synced, store: &str, at_ms: u64) -> Option<SyncOutcome> {
    (s.meta.owner != store && s.meta.lease_until_ms > at_ms).then(|| {
        rejected(
            "execution_leased",
            format!(
                "execution {:?} is held by store {} on {} for {} ms more; it can be taken over \
                 once that run ends or its lease expires",
                s.execution.id,
                s.meta.owner,
                s.meta.owner_host,
                s.meta.lease_until_ms - at_ms
            ),
        )
    })
}

/// Applies a push (node side, inside the state machine).
pub(crate) fn apply_batch(
    kv: &mut dyn Kv,
    b: &SyncBatch,
    index: u64,
) -> std::io::Result<Vec<SyncOutcome>> {
    for c in &b.chunks {
        kv.put(chunk_key(&c.hash), c.stored.clone());
    }
    for h in &b.external {
        if kv.get(&chunk_key(h))?.is_none() {
            kv.put(chunk_key(h), Vec::new());
        }
    }
    let mut out = Vec::with_capacity(b.bundles.len());
    for bundle in &b.bundles {
        out.push(apply_bundle(kv, bundle, b.at_ms, index)?);
    }
    Ok(out)
}

fn apply_bundle(
    kv: &mut dyn Kv,
    b: &Bundle,
    at_ms: u64,
    index: u64,
) -> std::io::Result<SyncOutcome> {
    let id = &b.execution.id;
    let ek = exec_key(id);
    let existing = read_synced(kv, &ek)?;
    if let Some(s) = &existing {
        if &s.execution.id != id {
            return Ok(rejected(
                "invalid_argument",
                format!(
                    "execution {id:?} collides with synced execution {:?}",
                    s.execution.id
                ),
            ));
        }
        let epoch = read_epoch(kv, &ek)?;
        if b.epoch != 0 && b.epoch != epoch {
            return Ok(rejected(
                "lease_lost",
                format!(
                    "store {} on {} held execution {id:?} as epoch {}, and store {} on {} took \
                     it over since (epoch {epoch}); the push was refused. Pull it to run it \
                     here again",
                    b.store_id, b.host, b.epoch, s.meta.owner, s.meta.owner_host
                ),
            ));
        }
        if let Some(r) = leased_by_other(s, &b.store_id, at_ms) {
            return Ok(r);
        }
        if s.meta.owner != b.store_id && s.meta.head != b.base {
            return Ok(rejected(
                "sync_conflict",
                format!(
                    "execution {id:?} advanced elsewhere: the cluster's head is {} (pushed by \
                     store {} on {}), but store {} on {} continued from {}; nothing was merged. \
                     Keep one branch: pull the execution into a store without it, or fork this \
                     store's branch under a new execution id",
                    head_str(s.meta.head),
                    s.meta.owner,
                    s.meta.owner_host,
                    b.store_id,
                    b.host,
                    head_str(b.base),
                ),
            ));
        }
    }
    for c in &b.checkpoints {
        if c.execution_id != *id {
            return Ok(rejected(
                "invalid_argument",
                format!(
                    "checkpoint {} belongs to {:?}, not {id:?}",
                    c.id, c.execution_id
                ),
            ));
        }
        for h in c.state.chunk_hashes() {
            if kv.get(&chunk_key(h))?.is_none() {
                return Ok(rejected(
                    "sync_incomplete",
                    format!(
                        "checkpoint {} of {id:?} uses chunk {} that the cluster does not have; \
                         push the chunk with it",
                        c.id,
                        crate::hex(h)
                    ),
                ));
            }
        }
    }
    for c in &b.checkpoints {
        kv.put(checkpoint_key(&ek, c.id), codec::encode(c));
    }
    let previous_owner = existing.as_ref().map(|s| s.meta.owner.as_str());
    let epoch = take_epoch(kv, &ek, previous_owner, &b.store_id)?;
    let (input, output) = match existing {
        Some(s) => (b.input.clone().or(s.input), b.output.clone().or(s.output)),
        None => (b.input.clone(), b.output.clone()),
    };
    let lease_until_ms = deadline(at_ms, b.lease_ms);
    let meta = SyncMeta {
        owner: b.store_id.clone(),
        owner_host: b.host.clone(),
        head: b.execution.head,
        lease_until_ms,
        checkpoints: b.execution.checkpoint_count,
        updated_at_ms: at_ms,
        log_index: index,
    };
    let synced = Synced {
        meta,
        execution: b.execution.clone(),
        input,
        output,
    };
    kv.put(synced_key(&ek), codec::encode(&synced));
    Ok(SyncOutcome::Accepted {
        head: b.execution.head,
        checkpoints: b.execution.checkpoint_count,
        epoch,
        lease_ms: lease_until_ms.saturating_sub(at_ms),
    })
}

/// Applies a pull's claim: `store` holds the execution until `lease_until_ms` (a completed or
/// cancelled execution is only read: nobody needs to hold it).
pub(crate) fn apply_claim(
    kv: &mut dyn Kv,
    execution_id: &str,
    store: &str,
    host: &str,
    lease_until_ms: u64,
    at_ms: u64,
    index: u64,
) -> std::io::Result<SyncOutcome> {
    let ek = exec_key(execution_id);
    let Some(mut s) = read_synced(kv, &ek)?.filter(|s| s.execution.id == execution_id) else {
        return Ok(rejected(
            "execution_not_found",
            format!("execution {execution_id:?} was never pushed to this cluster"),
        ));
    };
    if matches!(
        s.execution.status,
        crate::Status::Completed | crate::Status::Cancelled
    ) {
        // Nothing left to run: reading it takes nothing over.
        return Ok(SyncOutcome::Accepted {
            head: s.meta.head,
            checkpoints: s.meta.checkpoints,
            epoch: read_epoch(kv, &ek)?,
            lease_ms: 0,
        });
    }
    if let Some(r) = leased_by_other(&s, store, at_ms) {
        return Ok(r);
    }
    let epoch = take_epoch(kv, &ek, Some(&s.meta.owner), store)?;
    s.meta.owner = store.into();
    s.meta.owner_host = host.into();
    s.meta.lease_until_ms = lease_until_ms;
    s.meta.updated_at_ms = at_ms;
    s.meta.log_index = index;
    kv.put(synced_key(&ek), codec::encode(&s));
    Ok(SyncOutcome::Accepted {
        head: s.meta.head,
        checkpoints: s.meta.checkpoints,
        epoch,
        lease_ms: lease_until_ms.saturating_sub(at_ms),
    })
}

/// Checks checkpoint records that came from a peer (a pushing store, or the cluster a pull
/// asked) before anything is stored or allocated from them: each belongs to `execution`, ids are
/// unique, an inline state is its recorded size and checksum, a chunked state's chunks are each
/// within [`crate::blob::MAX_CHUNK_BYTES`] and add up to its recorded size. With `whole` (a
/// pull: every checkpoint of the execution), every parent and the execution's head are among
/// them. `what` names the records in the error (`"pushed checkpoint"`, `"pulled checkpoint"`).
pub fn check_records(
    execution: &Execution,
    checkpoints: &[Checkpoint],
    whole: bool,
    what: &'static str,
) -> Result<()> {
    let id = &execution.id;
    let bad = |c: &Checkpoint, detail: String| Error::InvalidArgument {
        what,
        detail: format!("checkpoint {} of execution {id:?}: {detail}", c.id),
    };
    let mut ids = HashSet::with_capacity(checkpoints.len());
    for c in checkpoints {
        if c.execution_id != *id {
            return Err(bad(c, format!("it belongs to {:?}", c.execution_id)));
        }
        if !ids.insert(c.id) {
            return Err(bad(c, "it comes twice".into()));
        }
        match &c.state {
            crate::StateRef::Inline(b) => {
                if b.len() as u64 != c.raw_size {
                    return Err(bad(
                        c,
                        format!(
                            "its inline state holds {} bytes, its recorded size is {}",
                            b.len(),
                            c.raw_size
                        ),
                    ));
                }
                if blake3::hash(b).as_bytes() != &c.checksum {
                    return Err(bad(
                        c,
                        "its inline state does not match its checksum".into(),
                    ));
                }
            }
            crate::StateRef::Chunked(m) => {
                let mut total = 0u64;
                for (i, r) in m.chunks.iter().enumerate() {
                    if r.len as usize > crate::blob::MAX_CHUNK_BYTES {
                        return Err(bad(
                            c,
                            format!(
                                "chunk {i} is {} bytes, over the limit of {} bytes",
                                r.len,
                                crate::blob::MAX_CHUNK_BYTES
                            ),
                        ));
                    }
                    total += u64::from(r.len);
                }
                if total != c.raw_size {
                    return Err(bad(
                        c,
                        format!(
                            "its chunks hold {total} bytes, its recorded size is {}",
                            c.raw_size
                        ),
                    ));
                }
            }
        }
    }
    if whole {
        for c in checkpoints {
            if let Some(p) = c.parent.filter(|p| !ids.contains(p)) {
                return Err(bad(c, format!("its parent {p} is not among them")));
            }
        }
        if let Some(h) = execution.head.filter(|h| !ids.contains(h)) {
            return Err(Error::InvalidArgument {
                what,
                detail: format!("execution {id:?}: its head {h} is not among its checkpoints"),
            });
        }
    }
    Ok(())
}

/// Verifies pushed chunks before they are proposed: each must decode to its length and hash.
pub fn verify_chunks(chunks: &[Chunk]) -> Result<()> {
    for c in chunks {
        let data = crate::blob::decode_chunk(&c.stored, c.len as usize).map_err(|d| {
            Error::InvalidArgument {
                what: "pushed chunk",
                detail: format!("chunk {} cannot be decoded: {d}", crate::hex(&c.hash)),
            }
        })?;
        if blake3::hash(&data).as_bytes() != &c.hash {
            return Err(Error::InvalidArgument {
                what: "pushed chunk",
                detail: format!(
                    "chunk {} does not match its address (corrupt in transit or at the sender)",
                    crate::hex(&c.hash)
                ),
            });
        }
    }
    Ok(())
}

/// What this store has pushed of one execution (`meta` family, `sync/‖exec_key`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SyncState {
    /// The cluster's head after this store's last push or pull.
    pub base: Option<Ulid>,
    /// Checkpoints the cluster has (pushed from here or pulled).
    pub pushed: BTreeSet<Ulid>,
    /// blake3 of the execution record last pushed.
    pub record: [u8; 32],
    pub input_sent: bool,
    pub output_sent: bool,
}

fn state_key(ek: &ExecKey) -> Vec<u8> {
    [&b"sync/"[..], ek].concat()
}

/// A push of one execution being assembled.
pub(crate) struct Outgoing {
    pub bundle: Bundle,
    pub state: SyncState,
}

/// The sync bookkeeping of a store: what was pushed, what to push, chunks and imports.
pub(crate) trait SyncRecords: AsRef<Store> {
    fn sync_state(&self, ek: &ExecKey) -> Result<SyncState> {
        let store: &Store = self.as_ref();
        let key = state_key(ek);
        Ok(match store.get(Cf::Meta, &key)? {
            Some(b) => codec::decode("sync state", &|| crate::hex(&key), &b)?,
            None => SyncState::default(),
        })
    }

    /// Not fsynced: a state lost in a crash only makes the next push resend checkpoints the
    /// cluster has (applied again, unchanged), and the cluster accepts them from the store that
    /// pushed last whatever base it names.
    fn put_sync_state(&self, ek: &ExecKey, s: &SyncState) -> Result<()> {
        let store: &Store = self.as_ref();
        store
            .db()
            .put_cf(store.cf(Cf::Meta), state_key(ek), codec::encode(s))
            .map_err(|e| Error::storage("writing sync state", e))
    }

    /// Whether this store ever pushed or pulled `execution_id` (the cluster may hold it).
    fn synced_before(&self, execution_id: &str) -> Result<bool> {
        let store: &Store = self.as_ref();
        let s = store.sync_state(&exec_key(execution_id))?;
        Ok(s.base.is_some() || !s.pushed.is_empty() || s.record != [0; 32])
    }

    /// What of `execution_id` the cluster lacks, or `None` when it has everything (with
    /// `renew`, the execution record even then: the push renews the lease).
    fn outgoing(
        &self,
        execution_id: &str,
        store_id: &str,
        renew: bool,
    ) -> Result<Option<Outgoing>> {
        let store: &Store = self.as_ref();
        let ek = exec_key(execution_id);
        // The execution as it is now (a running one's record on disk lags its steps).
        let execution = match store.execution(execution_id) {
            Err(Error::ExecutionNotFound { .. }) => return Ok(None), // deleted since it was marked
            e => e?,
        };
        let state = store.sync_state(&ek)?;
        let record = *blake3::hash(&codec::encode(&execution)).as_bytes();
        let mut checkpoints = Vec::new();
        for item in store.scan_prefix(Cf::Checkpoints, &ek) {
            let (k, v) = item?;
            let id = Ulid::from_bytes(k[16..32].try_into().expect("checkpoint keys are 32 bytes"));
            if !state.pushed.contains(&id) {
                checkpoints.push(codec::decode("checkpoint", &|| crate::hex(&k), &v)?);
            }
        }
        if checkpoints.is_empty() && record == state.record && !renew {
            return Ok(None);
        }
        let input = match execution.has_input && !state.input_sent {
            true => store.get(Cf::Executions, &io_key(execution_id, INPUT_SUFFIX))?,
            false => None,
        };
        let output = match execution.has_output && !state.output_sent {
            true => store.get(Cf::Executions, &io_key(execution_id, OUTPUT_SUFFIX))?,
            false => None,
        };
        // A duration, not a deadline: the cluster sets the deadline on its own clock.
        let now = crate::store::now_ms();
        let lease_ms = execution
            .lease
            .as_ref()
            .map(|l| l.expires_at_ms.saturating_sub(now))
            .unwrap_or(0);
        let mut next = state.clone();
        next.base = execution.head;
        next.pushed
            .extend(checkpoints.iter().map(|c: &Checkpoint| c.id));
        next.record = record;
        next.input_sent |= input.is_some();
        next.output_sent |= output.is_some();
        Ok(Some(Outgoing {
            bundle: Bundle {
                store_id: store_id.into(),
                host: crate::execution::hostname(),
                base: state.base,
                execution,
                input,
                output,
                checkpoints,
                lease_ms,
                epoch: 0,
            },
            state: next,
        }))
    }

    /// Which of these chunks the store holds, as stored.
    fn stored_chunks(&self, hashes: &[[u8; 32]]) -> Result<Vec<Option<Vec<u8>>>> {
        let store: &Store = self.as_ref();
        hashes.iter().map(|h| store.get(Cf::Chunks, h)).collect()
    }

    /// Puts pulled chunks (already verified) into the store.
    fn put_chunks(&self, chunks: &[([u8; 32], Vec<u8>)]) -> Result<()> {
        let store: &Store = self.as_ref();
        let mut batch = WriteBatch::default();
        for (h, stored) in chunks {
            batch.put_cf(store.cf(Cf::Chunks), h, stored);
        }
        store
            .db()
            .write(batch)
            .map_err(|e| Error::storage("writing pulled chunks", e))
    }

    /// Makes a pulled execution this store's: its checkpoints, input and output, and the
    /// execution record with no lease, so that re-running it resumes it here. Refused when this
    /// store has checkpoints of it that the cluster does not (they would be lost), or runs it.
    ///
    /// Returns the chunks its checkpoints use that this store lacks (a concurrent `gc` swept
    /// them: nothing referenced them between their fetch and now); then nothing was imported
    /// and the caller fetches them again. The check and the write happen under gc's shared
    /// lock, as every local checkpoint write does, so no chunk can go between them.
    fn import_pulled(&self, p: &Pulled) -> Result<Vec<[u8; 32]>> {
        let store: &Store = self.as_ref();
        let exec = &p.synced.execution;
        check_records(exec, &p.checkpoints, true, "pulled checkpoint")?;
        let _shared = store.gc_shared();
        let id = exec.id.clone();
        let ek = exec_key(&id);
        let theirs: HashSet<Ulid> = p.checkpoints.iter().map(|c| c.id).collect();
        let mut state = store.sync_state(&ek)?;
        let mut mine = BTreeSet::new();
        for item in store.scan_prefix(Cf::Checkpoints, &ek) {
            let (k, _) = item?;
            mine.insert(Ulid::from_bytes(
                k[16..32].try_into().expect("32-byte keys"),
            ));
        }
        let unsynced: Vec<String> = mine
            .iter()
            .filter(|c| !theirs.contains(c))
            .map(|c| c.to_string())
            .collect();
        if !unsynced.is_empty() {
            return Err(Error::SyncConflict {
                execution: id.clone(),
                detail: format!(
                    "this store has {} checkpoint(s) of it the cluster does not ({}); pulling \
                     would abandon them. Push them, or delete or fork the local execution first",
                    unsynced.len(),
                    unsynced
                        .iter()
                        .take(3)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let missing: Vec<[u8; 32]> = {
            let mut seen = HashSet::new();
            p.checkpoints
                .iter()
                .flat_map(|c| c.state.chunk_hashes())
                .filter(|h| seen.insert(**h))
                .filter(|h| {
                    !store
                        .get(Cf::Chunks, &h[..])
                        .map(|v| v.is_some())
                        .unwrap_or(false)
                })
                .copied()
                .collect()
        };
        if !missing.is_empty() {
            return Ok(missing);
        }
        let mut batch = WriteBatch::default();
        for c in p.checkpoints.iter().filter(|c| !mine.contains(&c.id)) {
            store.put_checkpoint(&mut batch, &ek, c);
        }
        if let Some(i) = &p.synced.input {
            batch.put_cf(store.cf(Cf::Executions), io_key(&id, INPUT_SUFFIX), i);
        }
        if let Some(o) = &p.synced.output {
            batch.put_cf(store.cf(Cf::Executions), io_key(&id, OUTPUT_SUFFIX), o);
        }
        let mut record = exec.clone();
        record.lease = None;
        state.base = exec.head;
        state.pushed = theirs.into_iter().collect();
        state.record = *blake3::hash(&codec::encode(&record)).as_bytes();
        state.input_sent = p.synced.input.is_some() || state.input_sent;
        state.output_sent = p.synced.output.is_some() || state.output_sent;
        // In the same batch as the execution: the syncer, woken by this change, must find the
        // cluster's head as this store's base, or it would push the pulled execution back as
        // a branch of its own.
        batch.put_cf(store.cf(Cf::Meta), state_key(&ek), codec::encode(&state));
        let from = format!("{} on {}", p.synced.meta.owner, p.synced.meta.owner_host);
        store.apply(&id, batch, None, |st, _, audit| {
            if st.running {
                return Err(Error::InvalidState {
                    execution: id.clone(),
                    status: "running".into(),
                    detail: "this process runs it; finish that run before pulling".into(),
                });
            }
            st.exec = Some(record.clone());
            audit.push(AuditDraft::new(
                "execution.pull",
                format!("execution/{id}"),
                serde_json::json!({"from": from, "head": head_str(record.head),
                    "checkpoints": record.checkpoint_count})
                .to_string(),
            ));
            Ok(())
        })?;
        Ok(Vec::new())
    }
}

impl SyncRecords for Store {}

/// Summary of a synced execution (`/sync/executions`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncedSummary {
    pub execution: Execution,
    pub meta: SyncMeta,
    /// The execution's fencing epoch.
    pub epoch: u64,
    /// How long its owner still holds it, on the answering node's clock (0: nobody does).
    pub lease_left_ms: u64,
}

/// Every synced execution in a node's state machine (the caller fills in `epoch` and
/// `lease_left_ms`).
pub(crate) fn list_synced(
    iter: impl Iterator<Item = std::io::Result<(Vec<u8>, Vec<u8>)>>,
) -> std::io::Result<Vec<SyncedSummary>> {
    let mut out = Vec::new();
    for item in iter {
        let (k, v) = item?;
        let s: Synced = codec::decode("synced execution", &|| crate::hex(&k), &v)
            .map_err(|e| io_decode("synced execution", &k, e))?;
        out.push(SyncedSummary {
            execution: s.execution,
            meta: s.meta,
            epoch: 0,
            lease_left_ms: 0,
        });
    }
    Ok(out)
}

/// Keys of the chunks a set of checkpoints uses, each once, in order.
pub(crate) fn chunk_refs(checkpoints: &[Checkpoint]) -> Vec<([u8; 32], u32)> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for c in checkpoints {
        if let crate::StateRef::Chunked(m) = &c.state {
            for r in &m.chunks {
                if seen.insert(r.hash, ()).is_none() {
                    out.push((r.hash, r.len));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{ChunkRef, Manifest};
    use crate::{ChunkParams, StateRef, Status};

    fn execution(head: Option<Ulid>) -> Execution {
        Execution {
            id: "e".into(),
            workflow: "w".into(),
            tenant: "default".into(),
            status: Status::Pending,
            head,
            error: None,
            attempts: 1,
            lease: None,
            labels: BTreeMap::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            next_global_seq: 3,
            checkpoint_count: 2,
            has_input: false,
            has_output: false,
        }
    }

    fn checkpoint(parent: Option<Ulid>, state: &[u8]) -> Checkpoint {
        Checkpoint {
            id: Ulid::new(),
            execution_id: "e".into(),
            agent: "a".into(),
            name: "s".into(),
            kind: Default::default(),
            parent,
            seq: 0,
            global_seq: 1,
            key: None,
            state: StateRef::Inline(state.to_vec()),
            checksum: *blake3::hash(state).as_bytes(),
            raw_size: state.len() as u64,
            stored_size: state.len() as u64,
            checks: Default::default(),
            metadata: BTreeMap::new(),
            created_at_ms: 0,
        }
    }

    #[derive(Default)]
    struct Mem(BTreeMap<Vec<u8>, Vec<u8>>);

    impl Kv for Mem {
        fn get(&self, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
            Ok(self.0.get(key).cloned())
        }

        fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
            self.0.insert(key, value);
        }
    }

    fn push(store: &str, epoch: u64, lease_ms: u64, e: &Execution, cs: &[Checkpoint]) -> Bundle {
        Bundle {
            store_id: store.into(),
            host: format!("host-{store}"),
            base: e.head,
            execution: e.clone(),
            input: None,
            output: None,
            checkpoints: cs.to_vec(),
            lease_ms,
            epoch,
        }
    }

    fn accepted(epoch: u64, lease_ms: u64, e: &Execution) -> SyncOutcome {
        SyncOutcome::Accepted {
            head: e.head,
            checkpoints: e.checkpoint_count,
            epoch,
            lease_ms,
        }
    }

    fn refusal(o: SyncOutcome) -> (String, String) {
        match o {
            SyncOutcome::Rejected { code, detail } => (code, detail),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn the_cluster_sets_lease_deadlines_on_its_own_clock_and_fences_stale_owners() {
        let mut kv = Mem::default();
        let a = checkpoint(None, b"one");
        let mut e = execution(Some(a.id));
        e.checkpoint_count = 1;
        let ek = exec_key("e");
        let deadline_of = |kv: &Mem| read_synced(kv, &ek).unwrap().unwrap().meta.lease_until_ms;

        // The first push makes A the owner (epoch 1) until the entry's time plus what it asked.
        let first = push("A", 0, 1000, &e, std::slice::from_ref(&a));
        assert_eq!(
            apply_bundle(&mut kv, &first, 50_000, 1).unwrap(),
            accepted(1, 1000, &e)
        );
        assert_eq!(deadline_of(&kv), 51_000);
        // A lease asked for longer than a day gets a day; a deadline past the end of time
        // saturates instead of wrapping around.
        let greedy = push("A", 1, u64::MAX, &e, &[]);
        let day = cluster::MAX_CLAIM_MS;
        assert_eq!(
            apply_bundle(&mut kv, &greedy, 60_000, 2).unwrap(),
            accepted(1, day, &e)
        );
        assert_eq!(deadline_of(&kv), 60_000 + day);
        assert_eq!(
            apply_bundle(&mut kv, &greedy, u64::MAX - 5, 3).unwrap(),
            accepted(1, 5, &e)
        );
        assert_eq!(deadline_of(&kv), u64::MAX);
        assert_eq!(
            apply_bundle(&mut kv, &first, 70_000, 4).unwrap(),
            accepted(1, 1000, &e)
        );

        // While A's lease lasts nobody else takes it; once it ran out, B does (epoch 2).
        let claim = |kv: &mut Mem, store: &str, at: u64, index: u64| {
            apply_claim(kv, "e", store, "hb", at + 5000, at, index).unwrap()
        };
        assert_eq!(
            refusal(claim(&mut kv, "B", 70_500, 5)).0,
            "execution_leased"
        );
        assert_eq!(claim(&mut kv, "B", 71_000, 6), accepted(2, 5000, &e));
        // B's lease runs out and B changed nothing, but A held epoch 1: its push is refused
        // (it must pull before it runs the execution again), however late it comes.
        let stale = push("A", 1, 1000, &e, &[]);
        for at in [72_000, 1 << 40] {
            let (code, detail) = refusal(apply_bundle(&mut kv, &stale, at, 7).unwrap());
            assert_eq!(code, "lease_lost");
            assert!(
                detail.contains("as epoch 1") && detail.contains("(epoch 2)"),
                "{detail}"
            );
            assert!(detail.contains("store B on hb"), "{detail}");
        }
        // B's own pushes go on with its epoch; a re-claim by B keeps it.
        let b = push("B", 2, 3000, &e, &[]);
        assert_eq!(
            apply_bundle(&mut kv, &b, 80_000, 8).unwrap(),
            accepted(2, 3000, &e)
        );
        assert_eq!(claim(&mut kv, "B", 81_000, 9), accepted(2, 5000, &e));
        // A store that presents no epoch (a new process) is judged by lease and branch: after
        // B's lease it takes the execution back, which fences B (epoch 3).
        let fresh = push("A", 0, 1000, &e, &[]);
        assert_eq!(
            refusal(apply_bundle(&mut kv, &fresh, 85_000, 10).unwrap()).0,
            "execution_leased"
        );
        assert_eq!(
            apply_bundle(&mut kv, &fresh, 90_000, 11).unwrap(),
            accepted(3, 1000, &e)
        );
        assert_eq!(
            refusal(apply_bundle(&mut kv, &b, 99_000, 12).unwrap()).0,
            "lease_lost"
        );
        // Reading a finished execution takes nothing over.
        let mut done = e.clone();
        done.status = crate::Status::Completed;
        let finished = push("A", 3, 0, &done, &[]);
        assert_eq!(
            apply_bundle(&mut kv, &finished, 99_500, 13).unwrap(),
            accepted(3, 0, &done)
        );
        assert_eq!(claim(&mut kv, "C", 99_600, 14), accepted(3, 0, &done));
        assert_eq!(read_epoch(&kv, &ek).unwrap(), 3);
    }

    #[test]
    fn pushes_in_raft_logs_written_before_epochs_still_decode_and_apply() {
        use crate::consensus::Command;
        let a = checkpoint(None, b"one");
        let mut e = execution(Some(a.id));
        e.checkpoint_count = 1;
        // The shape the previous build wrote for `Command::Sync`: a deadline on the pushing
        // store's clock, no epoch.
        let old = Command::Sync(legacy::SyncBatchV1 {
            bundles: vec![legacy::BundleV1 {
                store_id: "A".into(),
                host: "ha".into(),
                base: None,
                execution: e.clone(),
                input: None,
                output: None,
                checkpoints: vec![a],
                lease_until_ms: 10_500,
            }],
            at_ms: 10_000,
            ..Default::default()
        });
        let decoded: Command =
            codec::decode("raft log entry", &|| "1".into(), &codec::encode(&old)).unwrap();
        assert_eq!(decoded, old);
        let Command::Sync(batch) = decoded else {
            unreachable!()
        };
        let mut kv = Mem::default();
        assert_eq!(
            apply_batch(&mut kv, &batch.upgrade(), 1).unwrap(),
            vec![accepted(1, 500, &e)]
        );
    }

    fn refused(e: &Execution, cs: &[Checkpoint], whole: bool) -> String {
        check_records(e, cs, whole, "pulled checkpoint")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn records_from_a_peer_are_checked_before_use() {
        let a = checkpoint(None, b"one");
        let b = checkpoint(Some(a.id), b"two");
        let e = execution(Some(b.id));
        check_records(&e, &[a.clone(), b.clone()], true, "pulled checkpoint").unwrap();

        // A push carries only what is new: parents may be in the cluster already.
        check_records(&e, std::slice::from_ref(&b), false, "pushed checkpoint").unwrap();
        assert!(
            refused(&e, std::slice::from_ref(&b), true).ends_with(&format!(
                "checkpoint {} of execution \"e\": its parent {} is not among them",
                b.id, a.id
            ))
        );
        assert!(
            refused(&e, std::slice::from_ref(&a), true).ends_with(&format!(
                "execution \"e\": its head {} is not among its checkpoints",
                b.id
            ))
        );
        assert!(refused(&e, &[a.clone(), a.clone()], false).ends_with("it comes twice"));

        let mut lying = a.clone();
        lying.checksum[0] ^= 1;
        assert!(
            refused(&e, &[lying], false).ends_with("its inline state does not match its checksum")
        );
        let mut lying = a.clone();
        lying.raw_size = 1 << 40;
        assert!(refused(&e, &[lying], false)
            .ends_with("its inline state holds 3 bytes, its recorded size is 1099511627776"));
        let mut chunked = a.clone();
        let refs = |lens: &[u32]| {
            StateRef::Chunked(Manifest {
                params: ChunkParams::default(),
                chunks: lens
                    .iter()
                    .map(|&len| ChunkRef { hash: [1; 32], len })
                    .collect(),
            })
        };
        chunked.state = refs(&[4096, 4096]);
        chunked.raw_size = 8192;
        check_records(&e, std::slice::from_ref(&chunked), false, "x").unwrap();
        chunked.raw_size = 8193;
        assert!(refused(&e, std::slice::from_ref(&chunked), false)
            .ends_with("its chunks hold 8192 bytes, its recorded size is 8193"));
        chunked.state = refs(&[u32::MAX, u32::MAX]);
        chunked.raw_size = 2 * u64::from(u32::MAX);
        assert!(refused(&e, &[chunked], false)
            .ends_with("chunk 0 is 4294967295 bytes, over the limit of 16777216 bytes"));
        let mut foreign = a;
        foreign.execution_id = "f".into();
        let msg = refused(&e, &[foreign], false);
        assert!(
            msg.starts_with("invalid pulled checkpoint: checkpoint "),
            "{msg}"
        );
        assert!(
            msg.ends_with("of execution \"e\": it belongs to \"f\""),
            "{msg}"
        );
    }
}
