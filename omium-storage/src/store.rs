//! The RocksDB store: opening (writer or secondary), column families, key encoding and
//! durability modes. Writes go through [`crate::commit`], which keeps the audit chain in order
//! and shares fsyncs between concurrent writers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, ReadOptions, WriteBatch, DB,
};
use serde::{Deserialize, Serialize};

use crate::audit::AuditDraft;
use crate::blob::BlobParams;
use crate::commit::Committer;
use crate::error::{Error, OpenError, Result};
use crate::execution::ExecCell;

/// The on-disk format version this build writes and the newest it can read.
///
/// Format 2 records a step as its checkpoint record and audit entry alone: the execution
/// record and the checkpoint index entries of a running execution are written at begin,
/// finish, rollback, fork and lease renewal, and its head and counters are derived from the
/// checkpoints recorded since (`docs/format.md`). Format 3 (this one) compresses chunks with
/// LZ4 (codec byte 2) where format 2 used zstd, which it still reads. Each older format is a
/// valid newer one; a writer that opens an older store marks it with this version, so that
/// older builds refuse it rather than miss the steps its records do not count (format 1) or
/// fail on chunks they cannot decode (format 2).
pub const FORMAT_VERSION: u32 = 3;

const META_FORMAT: &[u8] = b"format_version";
const META_CREATED: &[u8] = b"created_at_ms";
const STORE_ID: &[u8] = b"store_id";

/// Column families, one per concern. Hot small metadata (executions, checkpoints, indexes)
/// lives apart from chunk bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cf {
    /// Store-wide markers: format version, creation time.
    Meta,
    /// `exec_key(16)` → `Execution`.
    Executions,
    /// `exec_key(16) ‖ checkpoint_id(16)` → `Checkpoint`.
    Checkpoints,
    /// `checkpoint_id(16)` → `exec_key(16)`: find a checkpoint by id alone.
    CheckpointIndex,
    /// `blake3(32)` → chunk (codec byte ‖ bytes).
    Chunks,
    /// `seq(u64 BE)` → `AuditEntry`.
    Audit,
    /// `tenant ‖ 0 ‖ scope ‖ 0 ‖ version(u32 BE)` → `PolicyVersion`.
    Policies,
    /// `exec_key(16) ‖ failure_id(16)` → `FailureRecord`.
    Failures,
    /// `exec_key(16) ‖ start_ns(8) ‖ span_id(8)` → `Span`.
    Spans,
    /// `t ‖ start_ns ‖ span_id` and `a ‖ agent ‖ 0 ‖ start_ns ‖ span_id` → `exec_key`.
    SpanIndex,
    /// Framework checkpoints, their channel values and pending writes (`threads.rs`). Added
    /// after format 1 shipped: stores without them still open (writers create them, readers
    /// see them as empty).
    ThreadCheckpoints,
    ThreadValues,
    ThreadWrites,
    /// The Raft log of the consensus module: `index(u64 BE)` → entry (`consensus/log.rs`).
    /// Added after format 1 shipped, like the three above.
    RaftLog,
    /// Raft's own small records: vote, last purged and committed log ids, the state
    /// machine's applied position and membership, the current snapshot.
    RaftMeta,
    /// The consensus state machine: messages, their acknowledgements and outcomes.
    Consensus,
    /// Analytics cells per hour and day (`rollup.rs`). Added after format 1 shipped.
    Rollups,
}

impl Cf {
    pub const ALL: [Cf; 17] = [
        Cf::Meta,
        Cf::Executions,
        Cf::Checkpoints,
        Cf::CheckpointIndex,
        Cf::Chunks,
        Cf::Audit,
        Cf::Policies,
        Cf::Failures,
        Cf::Spans,
        Cf::SpanIndex,
        Cf::ThreadCheckpoints,
        Cf::ThreadValues,
        Cf::ThreadWrites,
        Cf::RaftLog,
        Cf::RaftMeta,
        Cf::Consensus,
        Cf::Rollups,
    ];

    /// Families a read-only open does not require (a store written before they existed has
    /// none; the code reading them treats a missing family as empty).
    pub fn optional(self) -> bool {
        matches!(
            self,
            Cf::Policies
                | Cf::Failures
                | Cf::Spans
                | Cf::SpanIndex
                | Cf::ThreadCheckpoints
                | Cf::ThreadValues
                | Cf::ThreadWrites
                | Cf::RaftLog
                | Cf::RaftMeta
                | Cf::Consensus
                | Cf::Rollups
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Executions => "executions",
            Cf::Checkpoints => "checkpoints",
            Cf::CheckpointIndex => "checkpoint_index",
            Cf::Chunks => "chunks",
            Cf::Audit => "audit",
            Cf::Policies => "policies",
            Cf::Failures => "failures",
            Cf::Spans => "spans",
            Cf::SpanIndex => "span_index",
            Cf::ThreadCheckpoints => "thread_checkpoints",
            Cf::ThreadValues => "thread_values",
            Cf::ThreadWrites => "thread_writes",
            Cf::RaftLog => "raft_log",
            Cf::RaftMeta => "raft_meta",
            Cf::Consensus => "consensus",
            Cf::Rollups => "rollups",
        }
    }

    pub(crate) fn options(self) -> Options {
        let mut o = Options::default();
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        if matches!(self, Cf::Chunks | Cf::CheckpointIndex | Cf::Executions) {
            // Point lookups ("does this chunk exist?", "which execution has this checkpoint?")
            // mostly miss or hit one key: a bloom filter answers the misses without a read.
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&table);
        }
        if self == Cf::Chunks {
            // Chunks are already compressed (LZ4) by the blob layer. They stay in SST files:
            // RocksDB 10.4's BlobDB crashes when a secondary (read-only) instance reads a blob
            // (docs/decisions/no-blobdb.md), and the CLI reads through a secondary.
            o.set_compression_type(rocksdb::DBCompressionType::None);
        }
        o
    }
}

/// How far a write has gone before the call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The write-ahead log is fsynced before returning: survives power loss. Concurrent
    /// writers share one fsync (group commit). The default: an agent step costs seconds and
    /// money, an fsync a millisecond (see `docs/decisions/durability-default.md`).
    #[default]
    Sync,
    /// Written to the write-ahead log in the OS page cache: survives a crash of the process,
    /// not of the machine.
    Buffered,
    /// No write-ahead log: lost on a crash until RocksDB flushes. For tests.
    None,
}

impl Durability {
    /// Parses `sync`, `buffered` or `none`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sync" => Ok(Durability::Sync),
            "buffered" => Ok(Durability::Buffered),
            "none" => Ok(Durability::None),
            other => Err(Error::InvalidArgument {
                what: "durability",
                detail: format!("{other:?}; expected one of \"sync\", \"buffered\", \"none\""),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Buffered => "buffered",
            Durability::None => "none",
        }
    }
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Default durability of writes; individual operations may override it.
    pub durability: Durability,
    /// Create the store when the directory holds none (writer only).
    pub create: bool,
    /// Open as a RocksDB secondary: read-only, works while another process writes.
    pub read_only: bool,
    /// Who the audit log names as the actor of this handle's writes.
    pub actor: String,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            durability: Durability::Sync,
            create: true,
            read_only: false,
            actor: default_actor(),
        }
    }
}

fn default_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user}@pid{}", std::process::id())
}

/// A handle to an Omium store. Cheap to clone; all clones share one RocksDB instance.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Shared with the span writer thread, which [`Inner`]'s drop joins before the last
    /// reference goes.
    pub(crate) db: Arc<DB>,
    pub(crate) path: PathBuf,
    pub(crate) read_only: bool,
    pub(crate) durability: Durability,
    pub(crate) actor: String,
    /// Identifies this open of the store in leases: a lease whose owner carries another token
    /// was taken by a handle that is gone, because RocksDB lets only one writer in.
    pub(crate) token: String,
    pub(crate) committer: Committer,
    /// Writers hold it shared from "does this chunk exist?" until their batch is written; GC
    /// holds it exclusively, so it never deletes a chunk a batch in flight relies on.
    pub(crate) gc_lock: Arc<RwLock<()>>,
    /// Chunks that work in flight will reference and GC must keep ([`crate::blob::ChunkPins`]).
    pub(crate) pins: crate::blob::Pins,
    /// In-memory state of executions being mutated, so that every mutation of one execution
    /// is applied and enqueued in order.
    pub(crate) cells: Mutex<HashMap<ExecKey, Arc<ExecCell>>>,
    pub(crate) blob: BlobParams,
    /// Compresses chunks that steps stored raw ([`crate::deferred`]).
    pub(crate) deferred: crate::deferred::Deferred,
    /// What the layers above attached to this store ([`crate::ext`]).
    pub(crate) extensions: crate::ext::Extensions,
    /// Pauses and cancels waiting for this handle's runs ([`crate::control`]).
    pub(crate) controls: crate::control::Pending,
    /// The spans' own RocksDB instance, opened on first use ([`crate::spans`]).
    pub(crate) spans: crate::spans::SpanDb,
    /// Declared after `db` and `spans`: fields drop in order, so RocksDB is closed (and done
    /// writing its LOG here) before the directory is removed.
    secondary_dir: Option<ScratchDir>,
}

impl Inner {
    /// The private directory of a read-only handle (RocksDB secondaries keep their info logs
    /// there).
    pub(crate) fn secondary_dir(&self) -> Option<&Path> {
        self.secondary_dir.as_ref().map(|d| d.0.as_path())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The layers above store what is queued and stop their threads before RocksDB closes.
        self.extensions.close();
        self.deferred.close();
    }
}

/// The private directory a RocksDB secondary keeps its info log in; removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create() -> Result<ScratchDir, OpenError> {
        let dir = std::env::temp_dir().join(format!(
            "omium-secondary-{}-{}",
            std::process::id(),
            ulid::Ulid::new()
        ));
        std::fs::create_dir_all(&dir).map_err(|source| OpenError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fixed-length internal key of an execution: user ids are arbitrary strings
/// (`cust-42`), and a fixed prefix keeps the checkpoint scans of one execution contiguous.
pub type ExecKey = [u8; 16];

/// Maps a user-chosen execution id to its 16-byte key (blake3, truncated). The record keeps the
/// full id and readers compare it, so a collision would be detected, not silently merged.
pub fn exec_key(execution_id: &str) -> ExecKey {
    let mut h = blake3::Hasher::new();
    h.update(b"omium/execution\0");
    h.update(execution_id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
    k
}

/// A new checkpoint id. Ids are ULIDs from one monotonic generator, so the ids a process makes
/// sort in creation order even within one millisecond (checkpoint keys, and therefore every
/// listing of an execution's checkpoints, are in id order).
pub fn new_id() -> ulid::Ulid {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut g = GENERATOR.lock();
    g.get_or_insert_with(ulid::Generator::new)
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
}

/// A key and its value, as RocksDB iterators yield them.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

pub fn now_ms() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    real.saturating_add_signed(CLOCK_SHIFT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

static CLOCK_SHIFT_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Moves this process's store clock by `ms` (negative: into the past), for benchmarks and
/// tests that need history spread over days. Not for production use.
#[doc(hidden)]
pub fn shift_clock_ms(ms: i64) {
    CLOCK_SHIFT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// A store handle that does not keep the store open ([`Store::downgrade`]): for background
/// threads of the layers above, which must not outlive the store.
#[derive(Clone)]
pub struct WeakStore(std::sync::Weak<Inner>);

impl WeakStore {
    /// The store, if it is still open.
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

/// Lets the extension traits of the layers above take a store (`trait X: AsRef<Store>`).
impl AsRef<Store> for Store {
    fn as_ref(&self) -> &Store {
        self
    }
}

impl Store {
    /// Opens (creating if needed) a store for writing with default options: `sync` durability.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = omium_storage::Store::open(dir.path()).unwrap();
    /// assert!(!store.is_read_only());
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, OpenOptions::default())
    }

    /// Opens an existing store read-only, as a RocksDB secondary: works while another process
    /// holds the store for writing; call [`Store::refresh`] to catch up with it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(
            path,
            OpenOptions {
                read_only: true,
                create: false,
                ..OpenOptions::default()
            },
        )
    }

    /// Opens a store with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let exists = path.join("CURRENT").exists();
        if !exists && (options.read_only || !options.create) {
            return Err(OpenError::NotFound { path }.into());
        }
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        // Keep every column family the directory already has (a newer build may have added
        // some); RocksDB refuses to open with a subset.
        let existing = if exists {
            DB::list_cf(&db_opts, &path).map_err(|source| OpenError::Storage {
                path: path.clone(),
                source,
            })?
        } else {
            Vec::new()
        };
        // A secondary cannot create families: it opens the optional ones only if present.
        let mut names: Vec<String> = Cf::ALL
            .iter()
            .filter(|c| {
                !(options.read_only && c.optional()) || existing.iter().any(|n| n == c.name())
            })
            .map(|c| c.name().to_string())
            .collect();
        for n in &existing {
            if n != "default" && !names.contains(n) {
                names.push(n.clone());
            }
        }
        let descriptors = names.iter().map(|n| {
            let opts = Cf::ALL
                .iter()
                .find(|c| c.name() == n)
                .map(|c| c.options())
                .unwrap_or_default();
            ColumnFamilyDescriptor::new(n.clone(), opts)
        });

        if options.read_only
            && !Cf::ALL
                .iter()
                .all(|c| c.optional() || existing.iter().any(|n| n == c.name()))
        {
            // A writer killed between creating the directory and its column families: a
            // reader cannot create them, the next writer will.
            return Err(OpenError::Incomplete { path }.into());
        }
        // Declared before `db`, so that on any failure below RocksDB closes before it goes.
        let scratch = if options.read_only {
            Some(ScratchDir::create()?)
        } else {
            None
        };
        let db = if let Some(dir) = &scratch {
            db_opts.set_max_open_files(-1);
            let db = DB::open_cf_descriptors_as_secondary(&db_opts, &path, &dir.0, descriptors)
                .map_err(|source| OpenError::Storage {
                    path: path.clone(),
                    source,
                })?;
            db.try_catch_up_with_primary()
                .map_err(|source| OpenError::Storage {
                    path: path.clone(),
                    source,
                })?;
            db
        } else {
            std::fs::create_dir_all(&path).map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
            DB::open_cf_descriptors(&db_opts, &path, descriptors).map_err(|source| {
                let msg = source.to_string();
                if msg.contains("LOCK") && (msg.contains("unavailable") || msg.contains("lock")) {
                    OpenError::Locked { path: path.clone() }
                } else {
                    OpenError::Storage {
                        path: path.clone(),
                        source,
                    }
                }
            })?
        };

        check_format(&db, &path, exists, options.read_only)?;
        let committer = Committer::open(&db)?;
        let store = Store {
            inner: Arc::new(Inner {
                db: Arc::new(db),
                path,
                read_only: options.read_only,
                durability: options.durability,
                actor: options.actor,
                token: ulid::Ulid::new().to_string(),
                committer,
                gc_lock: Default::default(),
                pins: Default::default(),
                cells: Mutex::new(HashMap::new()),
                blob: BlobParams::default(),
                deferred: Default::default(),
                extensions: Default::default(),
                controls: Default::default(),
                spans: Default::default(),
                secondary_dir: scratch,
            }),
        };
        if !options.read_only {
            store.start_mailbox();
        }
        Ok(store)
    }

    /// This store's stable id (a ULID made on first use), naming it in a cluster.
    pub fn store_id(&self) -> Result<String> {
        if let Some(b) = self.get(Cf::Meta, STORE_ID)? {
            return Ok(String::from_utf8_lossy(&b).into_owned());
        }
        self.require_writer("naming the store for sync")?;
        let id = ulid::Ulid::new().to_string();
        self.inner
            .db
            .put_cf(self.cf(Cf::Meta), STORE_ID, id.as_bytes())
            .map_err(|e| Error::storage("writing meta", e))?;
        Ok(id)
    }

    /// The directory of this store.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Who this handle acts as in leases and audit entries.
    pub fn actor(&self) -> &str {
        &self.inner.actor
    }

    /// True when opened as a read-only secondary.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// The default durability of this handle's writes.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Catches a read-only handle up with the writer's latest changes; a no-op for writers.
    pub fn refresh(&self) -> Result<()> {
        if self.inner.read_only {
            self.inner
                .db
                .try_catch_up_with_primary()
                .map_err(|e| Error::storage("catching up with the writer", e))?;
            self.inner.spans.refresh();
        }
        Ok(())
    }

    /// Flushes memtables and syncs the write-ahead log, e.g. before copying the directory.
    pub fn flush(&self) -> Result<()> {
        self.require_writer("flush")?;
        self.inner
            .db
            .flush_wal(true)
            .map_err(|e| Error::storage("syncing the write-ahead log", e))?;
        for cf in Cf::ALL {
            self.inner
                .db
                .flush_cf(self.cf(cf))
                .map_err(|e| Error::storage("flushing memtables", e))?;
        }
        self.inner.spans.flush()
    }

    /// The RocksDB instance, for layers that keep records of their own in their families
    /// (the Raft log and state machine).
    pub fn db(&self) -> &Arc<DB> {
        &self.inner.db
    }

    /// A handle that does not keep the store open.
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// Holds GC off while the guard lives: a chunk found present now is not swept before the
    /// caller's batch that references it is written (every checkpoint write holds it).
    pub fn gc_shared(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.inner.gc_lock.read()
    }

    pub fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.inner
            .db
            .cf_handle(cf.name())
            .expect("column families are created at open")
    }

    pub fn require_writer(&self, operation: &'static str) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::ReadOnly {
                path: self.inner.path.clone(),
                operation,
            });
        }
        Ok(())
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get_in(&self.inner.db, cf, key)
    }

    /// Iterates the keys and values of `cf` that start with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        prefix_iter_in(&self.inner.db, cf, prefix, rocksdb::Direction::Forward)
    }

    /// Iterates the keys and values of `cf` that start with `prefix`, last key first.
    pub fn scan_prefix_rev(
        &self,
        cf: Cf,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        prefix_iter_in(&self.inner.db, cf, prefix, rocksdb::Direction::Reverse)
    }

    /// Iterates the keys and values of `cf` in `[start, end)`, in key order.
    pub fn scan_range(
        &self,
        cf: Cf,
        start: &[u8],
        end: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let handle = self.inner.db.cf_handle(cf.name());
        handle
            .map(|h| {
                self.inner.db.iterator_cf_opt(
                    h,
                    ro,
                    IteratorMode::From(start, rocksdb::Direction::Forward),
                )
            })
            .into_iter()
            .flatten()
            .map(move |r| r.map_err(|e| Error::storage(format!("scanning {}", cf.name()), e)))
    }

    /// The last key and value of `cf`, in key order.
    pub fn last(&self, cf: Cf) -> Result<Option<KeyValue>> {
        let Some(h) = self.inner.db.cf_handle(cf.name()) else {
            return Ok(None);
        };
        self.inner
            .db
            .iterator_cf(h, IteratorMode::End)
            .next()
            .transpose()
            .map_err(|e| Error::storage(format!("reading the last entry of {}", cf.name()), e))
    }

    /// Iterates `cf` from `start` (inclusive) to its end, in key order.
    pub fn scan_from(&self, cf: Cf, start: &[u8]) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        scan_from_in(&self.inner.db, cf, start)
    }

    /// Writes one logical operation atomically, with its audit entries chained in.
    pub fn commit(
        &self,
        batch: WriteBatch,
        audit: Vec<AuditDraft>,
        durability: Option<Durability>,
    ) -> Result<()> {
        self.require_writer("writing")?;
        let d = durability.unwrap_or(self.inner.durability);
        self.inner
            .committer
            .wait(self, self.inner.committer.submit(batch, audit, d))
    }
}

/// [`Store::get`] on any RocksDB instance of the store (the main one, the spans').
pub(crate) fn get_in(db: &DB, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
    // A read-only open of a store written before an optional family existed lacks it.
    let Some(handle) = db.cf_handle(cf.name()) else {
        return Ok(None);
    };
    db.get_cf(handle, key)
        .map_err(|e| Error::storage(format!("reading {}", cf.name()), e))
}

/// [`Store::scan_prefix`] (forward) and [`Store::scan_prefix_rev`] on any RocksDB instance of
/// the store.
pub(crate) fn prefix_iter_in<'a>(
    db: &'a DB,
    cf: Cf,
    prefix: &[u8],
    direction: rocksdb::Direction,
) -> impl Iterator<Item = Result<KeyValue>> + 'a {
    let mut ro = ReadOptions::default();
    let upper = prefix_upper_bound(prefix);
    if let Some(u) = &upper {
        ro.set_iterate_upper_bound(u.clone());
    }
    let mode = match (direction, &upper) {
        (rocksdb::Direction::Forward, _) if prefix.is_empty() => IteratorMode::Start,
        (rocksdb::Direction::Forward, _) => IteratorMode::From(prefix, direction),
        (rocksdb::Direction::Reverse, Some(u)) => {
            ro.set_iterate_lower_bound(prefix.to_vec());
            IteratorMode::From(u.as_slice(), direction)
        }
        (rocksdb::Direction::Reverse, None) => {
            ro.set_iterate_lower_bound(prefix.to_vec());
            IteratorMode::End
        }
    };
    let handle = db.cf_handle(cf.name());
    handle
        .map(|h| db.iterator_cf_opt(h, ro, mode))
        .into_iter()
        .flatten()
        .map(move |r| r.map_err(|e| Error::storage(format!("scanning {}", cf.name()), e)))
}

/// [`Store::scan_from`] on any RocksDB instance of the store.
pub(crate) fn scan_from_in<'a>(
    db: &'a DB,
    cf: Cf,
    start: &[u8],
) -> impl Iterator<Item = Result<KeyValue>> + 'a {
    let handle = db.cf_handle(cf.name());
    handle
        .map(|h| db.iterator_cf(h, IteratorMode::From(start, rocksdb::Direction::Forward)))
        .into_iter()
        .flatten()
        .map(move |r| r.map_err(|e| Error::storage(format!("scanning {}", cf.name()), e)))
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

fn check_format(db: &DB, path: &Path, existed: bool, read_only: bool) -> Result<()> {
    let meta = db.cf_handle(Cf::Meta.name()).expect("meta cf");
    let found = db
        .get_cf(meta, META_FORMAT)
        .map_err(|source| OpenError::Storage {
            path: path.to_path_buf(),
            source,
        })?;
    match found {
        Some(bytes) => {
            let v = u32::from_le_bytes(bytes.as_slice().try_into().map_err(|_| {
                OpenError::NotAStore {
                    path: path.to_path_buf(),
                }
            })?);
            if v > FORMAT_VERSION {
                return Err(OpenError::NewerFormat {
                    path: path.to_path_buf(),
                    found: v,
                    supported: FORMAT_VERSION,
                }
                .into());
            }
            if v < FORMAT_VERSION && !read_only {
                // Every older format is a valid newer one (see FORMAT_VERSION): only the mark
                // changes, so that builds that predate the change refuse the store.
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                db.put_cf_opt(meta, META_FORMAT, FORMAT_VERSION.to_le_bytes(), &wo)
                    .map_err(|source| OpenError::Storage {
                        path: path.to_path_buf(),
                        source,
                    })?;
            }
            Ok(())
        }
        None if existed && has_any_data(db) => Err(OpenError::NotAStore {
            path: path.to_path_buf(),
        }
        .into()),
        None if read_only => Ok(()),
        None => {
            let mut b = WriteBatch::default();
            b.put_cf(meta, META_FORMAT, FORMAT_VERSION.to_le_bytes());
            b.put_cf(meta, META_CREATED, now_ms().to_le_bytes());
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(b, &wo).map_err(|source| OpenError::Storage {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(())
        }
    }
}

fn has_any_data(db: &DB) -> bool {
    let default_has = db.iterator(IteratorMode::Start).next().is_some();
    default_has
        || Cf::ALL.iter().any(|c| {
            db.cf_handle(c.name())
                .map(|cf| db.iterator_cf(cf, IteratorMode::Start).next().is_some())
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert_eq!(err.code(), "store_locked");
        assert!(
            err.to_string().contains("is held by another process"),
            "{err}"
        );
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn missing_store_is_reported_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Store::open_read_only(&missing).err().unwrap();
        assert_eq!(err.code(), "store_not_found");
        assert!(
            err.to_string()
                .starts_with(&format!("no Omium store at {}", missing.display())),
            "{err}"
        );
        assert!(
            !missing.exists(),
            "a failed read-only open must not create the directory"
        );
    }

    #[test]
    fn newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.inner
                .db
                .put_cf(s.cf(Cf::Meta), META_FORMAT, 99u32.to_le_bytes())
                .unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap();
        assert_eq!(err.code(), "newer_format");
        assert!(
            err.to_string().contains(&format!(
                "format version 99; this build reads up to {FORMAT_VERSION}"
            )),
            "{err}"
        );
        let err = Store::open_read_only(dir.path()).err().unwrap();
        assert_eq!(err.code(), "newer_format");
    }

    #[test]
    fn a_half_created_store_is_finished_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        // What a writer killed right after creating the directory leaves: no column families.
        drop(DB::open_default(dir.path()).unwrap());
        let err = Store::open_read_only(dir.path()).err().unwrap();
        assert_eq!(err.code(), "store_not_found");
        assert!(err.to_string().contains("was never fully created"), "{err}");
        drop(Store::open(dir.path()).unwrap());
        assert!(Store::open_read_only(dir.path()).is_ok());
    }

    #[test]
    fn durability_parse_names_the_choices() {
        assert_eq!(Durability::parse("buffered").unwrap(), Durability::Buffered);
        let err = Durability::parse("fast").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid durability: \"fast\"; expected one of \"sync\", \"buffered\", \"none\""
        );
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_upper_bound(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xff]), None);
    }
}
