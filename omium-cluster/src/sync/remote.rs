//! The store side of sync: a [`Syncer`] attached to a store pushes the executions the store
//! changes to a cluster, and pulls executions from it.
//!
//! Every change of an execution marks it dirty (one set insert in [`Store::apply`]). A thread
//! pushes the dirty executions in rounds: what each lacks in the cluster ([`Store::outgoing`]),
//! one set-difference query for the chunks, then one push (one Raft log entry) for the whole
//! round. With [`RemoteDurability::Background`] steps never wait for it; with
//! [`RemoteDurability::Sync`] a step returns once the round holding it is committed in the
//! cluster, and concurrent steps share rounds (group commit over Raft).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use super::objects::{ObjectConfig, Objects};
use super::SyncRecords;
use super::{
    chunk_refs, cluster::outcome_error, Chunk, FetchedChunk, Outgoing, PullRequest, Pulled,
    SyncBatch, SyncOutcome, SyncedSummary, MAX_BATCH_BYTES,
};
use crate::consensus::network::RemoteClient;
use crate::error::{Error, Result};
use crate::execution::Status;
use crate::store::{exec_key, Store, WeakStore};

/// When a step's changes reach the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RemoteDurability {
    /// Pushed by a background thread within `interval`; a step never waits for the network.
    #[default]
    Background,
    /// A step returns once its checkpoint is committed in the cluster.
    Sync,
}

impl RemoteDurability {
    pub fn parse(s: &str) -> Result<RemoteDurability> {
        match s {
            "background" => Ok(RemoteDurability::Background),
            "sync" => Ok(RemoteDurability::Sync),
            other => Err(Error::InvalidArgument {
                what: "remote durability",
                detail: format!("{other:?} is not one of \"background\", \"sync\""),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RemoteDurability::Background => "background",
            RemoteDurability::Sync => "sync",
        }
    }
}

/// How a store syncs.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Cluster node addresses (`host:port`); any one that is up will do.
    pub nodes: Vec<String>,
    pub durability: RemoteDurability,
    /// How long a background round waits for more changes before it pushes.
    pub interval: Duration,
    /// How long a pull holds the execution for this store before another may take it.
    pub claim: Duration,
    /// Chunks go to object storage instead of the Raft log.
    pub objects: Option<ObjectConfig>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            nodes: Vec::new(),
            durability: RemoteDurability::Background,
            interval: Duration::from_millis(50),
            claim: Duration::from_secs(30),
            objects: None,
        }
    }
}

/// Counters of what a syncer sent and received since it started.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    pub rounds: u64,
    pub executions_pushed: u64,
    pub checkpoints_pushed: u64,
    /// Raw bytes of the pushed checkpoints' states.
    pub state_bytes: u64,
    /// Chunk references of the pushed checkpoints not sent, because the cluster had the chunk
    /// or the same push carried it once for several checkpoints (the dedup on the wire).
    pub chunks_skipped: u64,
    pub chunks_sent: u64,
    /// Stored (compressed) bytes of the chunks sent.
    pub chunk_bytes_sent: u64,
    /// Every request body sent, records included.
    pub bytes_sent: u64,
    pub executions_pulled: u64,
    pub chunks_fetched: u64,
    /// Executions whose push the cluster refused, with the error (`sync_conflict`,
    /// `execution_leased`), until a later push of them goes through.
    pub conflicts: BTreeMap<String, String>,
    /// The last round's error, when it failed as a whole (cluster unreachable).
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Queue {
    dirty: BTreeSet<String>,
    /// Executions whose next push goes out even when nothing changed (a fence renews them).
    renew: BTreeSet<String>,
    /// Generation of the last mark; a round takes everything marked up to a generation.
    marked: u64,
    /// Every mark up to this generation went through a finished round.
    done: u64,
    /// Recent failures: (first generation, last generation, execution or all, error).
    failures: VecDeque<(u64, u64, Option<String>, Error)>,
    closed: bool,
}

/// What this process knows of its hold on one execution in the cluster.
#[derive(Clone, Debug, Default)]
struct Hold {
    /// The fencing epoch of this store's last accepted push or pull (0: none yet).
    epoch: u64,
    /// Until when the cluster holds it for this store, on this process's monotonic clock:
    /// when the request went out plus the lease the cluster granted. The cluster's deadline
    /// counts from when it applied the request, which is later, so this is never past it.
    until: Option<Instant>,
    /// Why the cluster refused this store's last push of it (code, detail), when another
    /// store holds it.
    lost: Option<(String, String)>,
}

/// Refusals that mean another store holds the execution.
const TAKEN_OVER: [&str; 3] = ["lease_lost", "execution_leased", "sync_conflict"];

struct Shared {
    store: WeakStore,
    store_id: String,
    host: String,
    config: SyncConfig,
    client: RemoteClient,
    objects: Option<Objects>,
    rt: tokio::runtime::Runtime,
    queue: Mutex<Queue>,
    changed: Condvar,
    report: Mutex<SyncReport>,
    bytes_sent: AtomicU64,
    holds: Mutex<HashMap<String, Hold>>,
}

/// Pushes a store's executions to a cluster and pulls them from it. Attach one with
/// [`Store::attach_sync`]; the store keeps it until it closes. Call [`Syncer::flush`] before
/// closing the store: what is still queued when it closes is pushed by the next syncer attached
/// to it (the store remembers what the cluster has), not by this one.
#[derive(Clone)]
pub struct Syncer {
    shared: Arc<Shared>,
}

const REQUEST: Duration = Duration::from_secs(30);
/// Chunks asked for in one `/sync/chunks` call.
const FETCH_GROUP: usize = 256;
/// How often a pull fetches chunks that a concurrent gc swept before it gives up.
const PULL_ROUNDS: usize = 3;

fn error_clone(e: &Error) -> Error {
    Error::Remote {
        code: e.code(),
        message: e.to_string(),
    }
}

/// The runtime a syncer's HTTP calls run on (one I/O thread; callers block on it).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("omium-sync-io")
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument {
            what: "sync",
            detail: format!("cannot start its runtime: {e}"),
        })
}

impl Syncer {
    fn start(store: &Store, config: SyncConfig) -> Result<Syncer> {
        store.require_writer("syncing to a cluster")?;
        let client = RemoteClient::new(&config.nodes)?;
        let objects = config.objects.as_ref().map(Objects::new).transpose()?;
        let rt = runtime()?;
        let shared = Arc::new(Shared {
            store: store.downgrade(),
            store_id: store.store_id()?,
            host: crate::execution::hostname(),
            config,
            client,
            objects,
            rt,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            report: Mutex::new(SyncReport::default()),
            bytes_sent: AtomicU64::new(0),
            holds: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("omium-sync".into())
            .spawn(move || Syncer { shared: s }.run())
            .map_err(|e| Error::InvalidArgument {
                what: "sync",
                detail: format!("cannot start its thread: {e}"),
            })?;
        Ok(Syncer { shared })
    }

    pub fn config(&self) -> &SyncConfig {
        &self.shared.config
    }

    pub fn store_id(&self) -> &str {
        &self.shared.store_id
    }

    /// Marks an execution changed; the next round pushes it.
    pub(crate) fn mark(&self, execution_id: &str) {
        let mut q = self.shared.queue.lock();
        if !q.dirty.contains(execution_id) {
            q.dirty.insert(execution_id.to_string());
        }
        q.marked += 1;
        self.shared.changed.notify_all();
    }

    pub(crate) fn close(&self) {
        self.shared.queue.lock().closed = true;
        self.shared.changed.notify_all();
    }

    /// Waits until every change made so far is pushed (or `timeout` passes). The error of the
    /// round that held them, if it failed; for `execution`, only a refusal of that execution
    /// or a failure of the whole round counts.
    pub fn flush(&self, execution: Option<&str>, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.shared.queue.lock();
        let target = q.marked;
        while q.done < target {
            if self.shared.changed.wait_until(&mut q, deadline).timed_out() {
                return Err(Error::ServerUnavailable {
                    url: self.shared.config.nodes.join(","),
                    detail: format!(
                        "changes were not pushed within {timeout:?} ({} execution(s) waiting)",
                        q.dirty.len()
                    ),
                });
            }
        }
        let failed = q.failures.iter().rev().find(|(lo, hi, exec, _)| {
            *lo <= target
                && target <= *hi
                && match (exec, execution) {
                    (None, _) => true,
                    (Some(e), Some(x)) => e == x,
                    (Some(_), None) => true,
                }
        });
        match failed {
            Some((_, _, _, e)) => Err(error_clone(e)),
            None => Ok(()),
        }
    }

    /// With `remote_durability="sync"`: waits for the round holding this execution's changes.
    pub(crate) fn barrier(&self, execution_id: &str) -> Result<()> {
        if self.shared.config.durability != RemoteDurability::Sync {
            return Ok(());
        }
        self.flush(Some(execution_id), REQUEST * 2)
    }

    /// What was sent and received so far.
    pub fn report(&self) -> SyncReport {
        let mut r = self.shared.report.lock().clone();
        r.bytes_sent = self.shared.bytes_sent.load(Ordering::Relaxed);
        r
    }

    fn store(&self) -> Result<Store> {
        self.shared
            .store
            .upgrade()
            .ok_or_else(|| Error::InvalidState {
                execution: String::new(),
                status: "closed".into(),
                detail: "the store was closed".into(),
            })
    }

    fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let (ids, renew, hi) = {
                let mut q = self.shared.queue.lock();
                while q.dirty.is_empty() && !q.closed {
                    self.shared.changed.wait(&mut q);
                }
                if q.dirty.is_empty() {
                    return;
                }
                if self.shared.config.durability == RemoteDurability::Background && !q.closed {
                    // Let a burst of steps gather into one round.
                    let until = std::time::Instant::now() + self.shared.config.interval;
                    while !q.closed && !self.shared.changed.wait_until(&mut q, until).timed_out() {}
                }
                let renew = std::mem::take(&mut q.renew);
                (std::mem::take(&mut q.dirty), renew, q.marked)
            };
            let Ok(store) = self.store() else { return };
            let outcome = self.push_round(&store, &ids, &renew);
            drop(store);
            let mut q = self.shared.queue.lock();
            let lo = q.done + 1;
            match outcome {
                Ok(refused) => {
                    backoff = Duration::from_millis(100);
                    for (id, e) in refused {
                        q.failures.push_back((lo, hi, Some(id), e));
                    }
                    self.shared.report.lock().last_error = None;
                }
                Err(e) => {
                    self.shared.report.lock().last_error = Some(e.to_string());
                    q.dirty.extend(ids);
                    q.failures.push_back((lo, hi, None, e));
                }
            }
            while q.failures.len() > 256 {
                q.failures.pop_front();
            }
            let failed_whole = q
                .failures
                .back()
                .is_some_and(|f| f.1 == hi && f.2.is_none());
            q.done = hi;
            self.shared.changed.notify_all();
            if failed_whole && !q.closed {
                drop(q);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    fn post<Q: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Q,
    ) -> Result<R> {
        let size = postcard::experimental::serialized_size(body).unwrap_or(0) as u64;
        self.shared.bytes_sent.fetch_add(size, Ordering::Relaxed);
        self.shared
            .rt
            .block_on(self.shared.client.call_postcard(path, body, REQUEST))
    }

    /// Pushes these executions; the ones the cluster refused, with why. An execution refused
    /// as `sync_incomplete` (the node that answered which chunks it lacks was behind) is pushed
    /// again at once with all its chunks.
    fn push_round(
        &self,
        store: &Store,
        ids: &BTreeSet<String>,
        renew: &BTreeSet<String>,
    ) -> Result<Vec<(String, Error)>> {
        let refused = self.push_once(store, ids, renew, false)?;
        let (again, mut refused): (Vec<_>, Vec<_>) = refused
            .into_iter()
            .partition(|(_, e)| e.code() == "sync_incomplete");
        if !again.is_empty() {
            let ids = again.into_iter().map(|(id, _)| id).collect();
            refused.extend(self.push_once(store, &ids, renew, true)?);
        }
        Ok(refused)
    }

    fn push_once(
        &self,
        store: &Store,
        ids: &BTreeSet<String>,
        renew: &BTreeSet<String>,
        all_chunks: bool,
    ) -> Result<Vec<(String, Error)>> {
        let mut outs: Vec<Outgoing> = Vec::new();
        for id in ids {
            if let Some(o) = store.outgoing(id, &self.shared.store_id, renew.contains(id))? {
                outs.push(o);
            }
        }
        if outs.is_empty() {
            return Ok(Vec::new());
        }
        {
            let holds = self.shared.holds.lock();
            for o in &mut outs {
                o.bundle.epoch = holds.get(&o.bundle.execution.id).map_or(0, |h| h.epoch);
            }
        }
        let all: Vec<_> = outs
            .iter()
            .flat_map(|o| o.bundle.checkpoints.iter().cloned())
            .collect();
        let refs = chunk_refs(&all);
        let missing: BTreeSet<[u8; 32]> = if refs.is_empty() {
            BTreeSet::new()
        } else if all_chunks {
            refs.iter().map(|r| r.0).collect()
        } else {
            let hashes: Vec<[u8; 32]> = refs.iter().map(|r| r.0).collect();
            self.post::<_, Vec<[u8; 32]>>("/sync/missing", &hashes)?
                .into_iter()
                .collect()
        };
        let send: Vec<([u8; 32], u32)> = refs
            .iter()
            .filter(|r| missing.contains(&r.0))
            .copied()
            .collect();
        let stored = store.stored_chunks(&send.iter().map(|r| r.0).collect::<Vec<_>>())?;
        let mut chunks = Vec::with_capacity(send.len());
        for ((hash, len), s) in send.iter().zip(stored) {
            let stored = s.ok_or_else(|| Error::Integrity {
                checkpoint: String::new(),
                execution: String::new(),
                detail: format!("chunk {} is missing from the store", crate::hex(hash)),
            })?;
            chunks.push(Chunk {
                hash: *hash,
                len: *len,
                stored,
            });
        }
        let chunk_bytes: u64 = chunks.iter().map(|c| c.stored.len() as u64).sum();
        let n_chunks = chunks.len() as u64;
        let mut batch = SyncBatch::default();
        match &self.shared.objects {
            Some(objects) => {
                self.shared.rt.block_on(async {
                    for c in &chunks {
                        objects.put(&c.hash, c.stored.clone()).await?;
                    }
                    Ok::<_, Error>(())
                })?;
                self.shared
                    .bytes_sent
                    .fetch_add(chunk_bytes, Ordering::Relaxed);
                batch.external = chunks.iter().map(|c| c.hash).collect();
            }
            None => {
                // Chunks beyond one entry's worth go ahead in entries of their own.
                let mut size = 0;
                let mut group = Vec::new();
                for c in chunks {
                    size += c.stored.len();
                    group.push(c);
                    if size >= MAX_BATCH_BYTES {
                        let b = SyncBatch {
                            chunks: std::mem::take(&mut group),
                            ..SyncBatch::default()
                        };
                        self.post::<_, Vec<SyncOutcome>>("/sync/push", &b)?;
                        size = 0;
                    }
                }
                batch.chunks = group;
            }
        }
        batch.bundles = outs.iter().map(|o| o.bundle.clone()).collect();
        let sent = Instant::now();
        let outcomes: Vec<SyncOutcome> = self.post("/sync/push", &batch)?;
        let mut refused = Vec::new();
        let mut report = self.shared.report.lock();
        report.rounds += 1;
        report.chunks_sent += n_chunks;
        report.chunk_bytes_sent += chunk_bytes;
        let uses: usize = all.iter().map(|c| c.state.chunk_hashes().count()).sum();
        report.chunks_skipped += (uses - send.len()) as u64;
        for (o, outcome) in outs.iter().zip(outcomes) {
            let id = &o.bundle.execution.id;
            match outcome {
                SyncOutcome::Accepted {
                    epoch, lease_ms, ..
                } => {
                    if lease_ms == 0
                        && matches!(
                            o.bundle.execution.status,
                            Status::Completed | Status::Failed | Status::Cancelled
                        )
                    {
                        // Finished: nothing to fence, and the map stays as small as what runs.
                        self.shared.holds.lock().remove(id);
                    } else {
                        self.hold(id, epoch, sent, lease_ms);
                    }
                    store.put_sync_state(&exec_key(id), &o.state)?;
                    report.conflicts.remove(id);
                    report.executions_pushed += 1;
                    report.checkpoints_pushed += o.bundle.checkpoints.len() as u64;
                    report.state_bytes +=
                        o.bundle.checkpoints.iter().map(|c| c.raw_size).sum::<u64>();
                }
                SyncOutcome::Rejected { code, detail } => {
                    if TAKEN_OVER.contains(&code.as_str()) {
                        self.shared.holds.lock().entry(id.clone()).or_default().lost =
                            Some((code.clone(), detail.clone()));
                    }
                    let e = outcome_error(id, &code, detail);
                    report.conflicts.insert(id.clone(), e.to_string());
                    refused.push((id.clone(), e));
                }
            }
        }
        Ok(refused)
    }

    /// Fetches an execution from the cluster into this store and takes it over (for `claim`
    /// of the config), so that running it here resumes it. Refused while another store's
    /// lease on it lasts (`execution_leased`) or when this store has checkpoints of it the
    /// cluster does not (`sync_conflict`).
    pub fn pull(&self, execution_id: &str) -> Result<crate::Execution> {
        let store = self.store()?;
        store.require_writer("pulling an execution")?;
        let req = PullRequest {
            execution_id: execution_id.into(),
            store_id: self.shared.store_id.clone(),
            host: self.shared.host.clone(),
            claim_ms: self.shared.config.claim.as_millis() as u64,
        };
        let sent = Instant::now();
        let pulled: Pulled = self.post("/sync/pull", &req)?;
        let refs = chunk_refs(&pulled.checkpoints);
        let lens: BTreeMap<[u8; 32], u32> = refs.iter().copied().collect();
        // Nothing references these chunks until the import: keep a concurrent gc off them
        // (the ones fetched and the ones already here) from before the check until after it.
        let _pins = store.pin_chunks(&refs.iter().map(|r| r.0).collect::<Vec<_>>());
        let have = store.stored_chunks(&refs.iter().map(|r| r.0).collect::<Vec<_>>())?;
        let mut need: Vec<[u8; 32]> = refs
            .iter()
            .zip(have)
            .filter(|(_, h)| h.is_none())
            .map(|(r, _)| r.0)
            .collect();
        let mut fetched = 0u64;
        // The pins keep gc off the chunks; the import still checks, under gc's lock, that every
        // chunk is there, and fetches again what is not.
        for round in 0.. {
            fetched += self.fetch_chunks(&store, execution_id, &need, &lens)?;
            need = store.import_pulled(&pulled)?;
            if need.is_empty() {
                break;
            }
            if round == PULL_ROUNDS {
                return Err(Error::Integrity {
                    checkpoint: String::new(),
                    execution: execution_id.into(),
                    detail: format!(
                        "{} chunk(s) went missing after {PULL_ROUNDS} fetches (is something \
                         collecting garbage in a loop?); pull again",
                        need.len()
                    ),
                });
            }
        }
        self.hold(execution_id, pulled.epoch, sent, pulled.lease_ms);
        let mut r = self.shared.report.lock();
        r.executions_pulled += 1;
        r.chunks_fetched += fetched;
        drop(r);
        store.execution(execution_id)
    }

    /// Fetches chunks from the cluster (or its object storage), verifies and stores them.
    fn fetch_chunks(
        &self,
        store: &Store,
        execution_id: &str,
        need: &[[u8; 32]],
        lens: &BTreeMap<[u8; 32], u32>,
    ) -> Result<u64> {
        let mut fetched = 0u64;
        let mut rest = need;
        while !rest.is_empty() {
            let ask = &rest[..rest.len().min(FETCH_GROUP)];
            // A node answers a prefix of what was asked, in order: it stops at its reply limit.
            let got: Vec<FetchedChunk> = self.post("/sync/chunks", &ask.to_vec())?;
            if got.is_empty()
                || got.len() > ask.len()
                || got.iter().zip(ask).any(|(f, h)| f.hash != *h)
            {
                return Err(Error::Integrity {
                    checkpoint: String::new(),
                    execution: execution_id.into(),
                    detail: format!(
                        "asked the cluster for {} chunk(s), it answered {} that are not a prefix \
                         of them",
                        ask.len(),
                        got.len()
                    ),
                });
            }
            rest = &rest[got.len()..];
            let mut put = Vec::with_capacity(got.len());
            for f in got {
                let stored =
                    match f.stored {
                        Some(s) => s,
                        None => {
                            let objects = self.shared.objects.as_ref().ok_or_else(|| {
                                Error::InvalidArgument {
                                    what: "object storage",
                                    detail: format!(
                                    "chunk {} of {execution_id:?} is in object storage, and this \
                                     store has none configured (objects=s3://...)",
                                    crate::hex(&f.hash)
                                ),
                                }
                            })?;
                            self.shared.rt.block_on(objects.get(&f.hash))?
                        }
                    };
                let chunk = Chunk {
                    hash: f.hash,
                    len: lens.get(&f.hash).copied().unwrap_or(0),
                    stored,
                };
                super::verify_chunks(std::slice::from_ref(&chunk)).map_err(|e| {
                    Error::Integrity {
                        checkpoint: String::new(),
                        execution: execution_id.into(),
                        detail: format!("a pulled chunk is corrupt: {e}"),
                    }
                })?;
                put.push((chunk.hash, chunk.stored));
            }
            fetched += put.len() as u64;
            store.put_chunks(&put)?;
        }
        Ok(fetched)
    }

    /// Notes what the cluster granted: the hold of `execution_id` as `epoch`, for `lease_ms`
    /// from `sent`.
    fn hold(&self, execution_id: &str, epoch: u64, sent: Instant, lease_ms: u64) {
        self.shared.holds.lock().insert(
            execution_id.to_string(),
            Hold {
                epoch,
                until: Some(sent + Duration::from_millis(lease_ms)),
                lost: None,
            },
        );
    }

    /// Whether this store holds `execution_id` in the cluster for at least `margin` more:
    /// `Ok(true)`, `Ok(false)` when it does not know (never pushed it in this process, or the
    /// hold runs out within `margin`), the cluster's refusal when another store holds it.
    fn holds(&self, execution_id: &str, margin: Duration) -> Result<bool> {
        let holds = self.shared.holds.lock();
        let Some(h) = holds.get(execution_id) else {
            return Ok(false);
        };
        if let Some((code, detail)) = &h.lost {
            return Err(outcome_error(execution_id, code, detail.clone()));
        }
        Ok(h.until.is_some_and(|u| u > Instant::now() + margin))
    }

    /// Runs before each step body of `run` (from [`crate::Run::recorded`]): returns once this
    /// store holds the execution in the cluster for at least a quarter of the run's lease more,
    /// so that no other store can have taken it over when the body starts. Usually that is
    /// known from the last push; when the hold runs short (an idle run) or is not known yet (a
    /// run resumed in a new process), the run's lease is renewed and pushed at once, and the
    /// body waits for the cluster's answer. An execution this store never synced is not held
    /// by anyone else and runs without waiting.
    ///
    /// When the cluster refused this store's push or renewal, the refusal: `lease_lost` when
    /// another store took the execution over since this one held it, `execution_leased` when
    /// another store holds it, `sync_conflict` when it went on elsewhere. [`Error::LeaseLost`]
    /// too when the hold ran out and could not be renewed.
    pub fn fence(&self, run: &crate::Run) -> Result<()> {
        let id = run.execution_id();
        if self.holds(id, Duration::from_millis(run.lease_ttl_ms() / 4))? {
            return Ok(());
        }
        let known = self.shared.holds.lock().contains_key(id);
        if !known && !self.store()?.synced_before(id)? {
            return Ok(());
        }
        // The heartbeat extends the local lease, and the push carries what is left of it.
        run.heartbeat()?;
        self.shared.queue.lock().renew.insert(id.to_string());
        self.mark(id);
        let flushed = self.flush(Some(id), REQUEST * 2);
        if self.holds(id, Duration::ZERO)? {
            return Ok(());
        }
        Err(Error::LeaseLost {
            execution: id.into(),
            detail: match flushed {
                Err(e) => format!("this store could not confirm that it still holds it: {e}"),
                Ok(()) => "the cluster granted this store no lease on it".into(),
            },
        })
    }

    /// Every execution the cluster holds.
    pub fn remote_executions(&self) -> Result<Vec<SyncedSummary>> {
        self.post("/sync/executions", &())
    }

    /// Executions in the cluster that another store left unfinished and no longer holds:
    /// what `recover()` pulls before it resumes.
    pub fn abandoned(&self) -> Result<Vec<SyncedSummary>> {
        Ok(self
            .remote_executions()?
            .into_iter()
            .filter(|s| {
                matches!(s.execution.status, Status::Running | Status::Pending)
                    && s.meta.owner != self.shared.store_id
                    && s.lease_left_ms == 0
            })
            .collect())
    }
}

impl Syncer {
    /// Pulls every execution another store left unfinished in the cluster and no longer holds
    /// ([`Syncer::abandoned`]): what `recover()` does before it resumes. An execution another
    /// store took over first (`execution_leased`) or that this store has steps of the cluster
    /// lacks (`sync_conflict`) is skipped, with why; any other error stops it.
    pub fn pull_abandoned(&self) -> Result<AbandonedPull> {
        let mut out = AbandonedPull::default();
        for s in self.abandoned()? {
            let id = s.execution.id;
            match self.pull(&id) {
                Ok(_) => out.pulled.push(id),
                // Whether raised here or answered by a node.
                Err(e) if matches!(e.code(), "execution_leased" | "sync_conflict") => {
                    out.skipped.push((id, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// What [`Syncer::pull_abandoned`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AbandonedPull {
    /// The executions pulled and taken over.
    pub pulled: Vec<String>,
    /// Executions left alone, with why (taken over by another store first, or in conflict).
    pub skipped: Vec<(String, String)>,
}

/// Every execution a cluster holds, without a store (`omium sync status`).
pub fn cluster_executions(nodes: &[String]) -> Result<Vec<SyncedSummary>> {
    let client = RemoteClient::new(nodes)?;
    runtime()?.block_on(client.call_postcard("/sync/executions", &(), REQUEST))
}

/// A store's syncer is its extension: it fences each step that would run (the store must still
/// hold the execution in the cluster), pushes what changed, and holds a step or a finish until
/// the cluster has it when `remote_durability` says so.
impl omium_storage::Extension for Syncer {
    fn close(&self) {
        Syncer::close(self);
    }

    fn before_step(&self, run: &crate::Run) -> Result<()> {
        self.fence(run)
    }

    fn changed(&self, execution_id: &str) {
        self.mark(execution_id);
    }

    fn barrier(&self, execution_id: &str) -> Result<()> {
        Syncer::barrier(self, execution_id)
    }
}

/// Syncing a store to a cluster: attach a syncer and find it
/// (`use omium_core::prelude::*`).
pub trait SyncStore: AsRef<Store> {
    /// Starts syncing this store to a cluster. One syncer per store handle; a second call is
    /// refused.
    fn attach_sync(&self, config: SyncConfig) -> Result<Syncer> {
        let store: &Store = self.as_ref();
        let already = |s: &Syncer| Error::InvalidState {
            execution: String::new(),
            status: "syncing".into(),
            detail: format!(
                "this store already syncs to {}",
                s.shared.config.nodes.join(", ")
            ),
        };
        if let Some(s) = store.extension::<Syncer>() {
            return Err(already(&s));
        }
        let s = match store.attach_extension(Syncer::start(store, config)?) {
            Ok(s) => s,
            Err((mine, theirs)) => {
                mine.close();
                return Err(already(&theirs));
            }
        };
        // Everything changed before the syncer existed is pushed by its first round.
        for e in store.executions()? {
            s.mark(&e.id);
        }
        Ok((*s).clone())
    }

    /// The syncer of this store, if one is attached.
    fn syncer(&self) -> Option<Syncer> {
        self.as_ref().extension::<Syncer>().map(|s| (*s).clone())
    }

    /// The syncer, or `invalid_state` saying how to start one.
    fn require_syncer(&self) -> Result<Syncer> {
        self.syncer().ok_or_else(|| Error::InvalidState {
            execution: String::new(),
            status: "not syncing".into(),
            detail: "this store syncs to no cluster: open it with a remote (Python \
                     omium.init(..., remote=\"host:port,...\"), Node omium.init({ remote }), C \
                     omium_store_attach_sync)"
                .into(),
        })
    }
}

impl SyncStore for Store {}
