//! Where spans are kept: their own RocksDB instance in the store's `spans/` directory (and, for
//! spans written before it existed, the main instance's `spans` and `span_index` families), the
//! keys of those families, and the erasure of an execution's spans with the execution. The span
//! record belongs to the tracing layer (`omium_engine::trace::Span`, which writes, reads and
//! prunes spans); storage reads only the head of a record, the fields erasure needs
//! (`docs/format.md`).
//!
//! Why an instance of their own: RocksDB lets one write group into the memtables at a time, so a
//! step's write that arrived while the span writer's batch (up to a thousand spans) was being
//! inserted waited for all of it — one traced step in a thousand waited 2–3 ms. With their own
//! write queue and WAL, span batches never hold a step's write
//! (`docs/decisions/spans-own-instance.md`).

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, DB};
use serde::Deserialize;

use crate::codec;
use crate::error::{Error, Result};
use crate::store::{exec_key, get_in, prefix_iter_in, scan_from_in, Cf, KeyValue, Store};

/// The directory of the spans' instance, inside the store's.
pub const SPANS_DIR: &str = "spans";

/// The spans' RocksDB instance of an open store: opened on first use (created by the writer's
/// first span), as a secondary in a read-only handle.
#[derive(Default)]
pub(crate) struct SpanDb {
    db: Mutex<Option<Arc<DB>>>,
}

impl SpanDb {
    /// Catches a secondary up with the writer (read-only handles only call it). A secondary
    /// that cannot catch up is closed, and the next span read opens a fresh one: the main
    /// instance's refresh (the dashboard's view of the runs) never fails because of spans.
    pub(crate) fn refresh(&self) {
        let mut slot = self.db.lock();
        if slot
            .as_ref()
            .is_some_and(|db| db.try_catch_up_with_primary().is_err())
        {
            *slot = None;
        }
    }

    /// Syncs the WAL and flushes the memtables (before the directory is copied).
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(db) = &*self.db.lock() {
            db.flush_wal(true)
                .map_err(|e| Error::storage("syncing the spans' write-ahead log", e))?;
            for cf in [Cf::Spans, Cf::SpanIndex] {
                let h = db.cf_handle(cf.name()).expect("span families exist");
                db.flush_cf(h)
                    .map_err(|e| Error::storage("flushing the spans' memtables", e))?;
            }
        }
        Ok(())
    }
}

fn open_error(path: &Path, e: rocksdb::Error) -> Error {
    Error::storage(format!("opening the span store {}", path.display()), e)
}

/// One place spans are kept: the spans' own instance, or the main one (spans written before
/// the own instance existed). Reads and retention go through every source of
/// [`Store::span_sources`].
#[derive(Clone)]
pub struct SpanSource {
    db: Arc<DB>,
}

impl SpanSource {
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get_in(&self.db, cf, key)
    }

    /// The keys and values of `cf` that start with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        prefix_iter_in(&self.db, cf, prefix, rocksdb::Direction::Forward)
    }

    /// `cf` from `start` (inclusive) to its end, in key order.
    pub fn scan_from(&self, cf: Cf, start: &[u8]) -> impl Iterator<Item = Result<KeyValue>> + '_ {
        scan_from_in(&self.db, cf, start)
    }

    /// The handle of `cf` (`spans` or `span_index`) for a batch of this source.
    pub fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("a span source has both span families")
    }

    /// Writes a batch of span changes (WAL, no fsync: spans are observability records).
    pub fn write(&self, batch: WriteBatch, what: &str) -> Result<()> {
        self.db.write(batch).map_err(|e| Error::storage(what, e))
    }
}

/// The `spans` key of a span: its execution key ‖ the `start_ns ‖ span_id` tail of an index
/// entry (`u64` BE, 8 bytes).
pub fn span_key_of(exec: &[u8], start_and_id: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(exec);
    k[16..].copy_from_slice(start_and_id);
    k
}

/// The by-time `span_index` key: `t` ‖ start_ns ‖ span_id.
pub fn time_index_key(start_ns: u64, span_id: &[u8; 8]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b't';
    k[1..9].copy_from_slice(&start_ns.to_be_bytes());
    k[9..].copy_from_slice(span_id);
    k
}

/// The by-agent `span_index` key: `a` ‖ agent ‖ 0 ‖ start_ns ‖ span_id.
pub fn agent_index_key(agent: &str, start_ns: u64, span_id: &[u8; 8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(agent.len() + 18);
    k.push(b'a');
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k.extend_from_slice(&start_ns.to_be_bytes());
    k.extend_from_slice(span_id);
    k
}

/// The leading fields of a span record (version 1), in the tracing layer's order; postcard
/// ignores the rest. `omium-core/tests/it/trace.rs` decodes spans the tracing layer stored with
/// it.
#[derive(Deserialize)]
pub struct SpanHead {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    /// The span kind's variant index.
    pub kind: u32,
    pub span_type: String,
    pub execution_id: String,
    pub agent: String,
}

impl SpanHead {
    pub fn decode(key: &[u8], value: &[u8]) -> Result<SpanHead> {
        codec::decode("span", &|| crate::hex(key), value)
    }
}

impl Store {
    /// The spans' own instance for writing (the span writer), created on first use.
    pub fn span_db(&self) -> Result<Arc<DB>> {
        self.require_writer("recording spans")?;
        let mut slot = self.inner.spans.db.lock();
        if let Some(db) = &*slot {
            return Ok(db.clone());
        }
        let path = self.path().join(SPANS_DIR);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        let db = DB::open_cf_descriptors(&opts, &path, descriptors())
            .map_err(|e| open_error(&path, e))?;
        let db = Arc::new(db);
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Where this store keeps spans: the spans' own instance, when spans were written there,
    /// then the main instance (spans written before the own instance existed, when it has
    /// the families). A read-only handle opens the own instance as a secondary, caught up.
    pub fn span_sources(&self) -> Result<Vec<SpanSource>> {
        let mut out = Vec::with_capacity(2);
        if let Some(db) = self.span_db_to_read()? {
            out.push(SpanSource { db });
        }
        if self.inner.db.cf_handle(Cf::SpanIndex.name()).is_some() {
            out.push(SpanSource {
                db: self.inner.db.clone(),
            });
        }
        Ok(out)
    }

    fn span_db_to_read(&self) -> Result<Option<Arc<DB>>> {
        if !self.inner.read_only {
            let open = self.inner.spans.db.lock().is_some();
            return match open || self.path().join(SPANS_DIR).join("CURRENT").exists() {
                true => self.span_db().map(Some),
                false => Ok(None),
            };
        }
        self.inner.spans.refresh();
        let mut slot = self.inner.spans.db.lock();
        if let Some(db) = &*slot {
            return Ok(Some(db.clone()));
        }
        let path = self.path().join(SPANS_DIR);
        let Some(scratch) = self.inner.secondary_dir() else {
            return Ok(None);
        };
        let mut opts = Options::default();
        opts.set_max_open_files(-1);
        // A writer killed before it created both families left an instance without spans.
        match DB::list_cf(&opts, &path) {
            Ok(names)
                if [Cf::Spans, Cf::SpanIndex]
                    .iter()
                    .all(|c| names.iter().any(|n| n == c.name())) => {}
            _ => return Ok(None),
        }
        let db = DB::open_cf_descriptors_as_secondary(
            &opts,
            &path,
            // A fresh log directory per open: a secondary closed for failing to catch up may
            // still be read by a list in flight.
            &scratch.join(format!("{SPANS_DIR}-{}", ulid::Ulid::new())),
            descriptors(),
        )
        .map_err(|e| open_error(&path, e))?;
        db.try_catch_up_with_primary()
            .map_err(|e| open_error(&path, e))?;
        let db = Arc::new(db);
        *slot = Some(db.clone());
        Ok(Some(db))
    }

    /// Deletes `execution_id`'s spans and their index entries: those of the main instance in
    /// `batch` (the caller's erasure), those of the spans' own instance in a batch of its own,
    /// which [`SpanErasure::finish`] writes once the caller's erasure is written. A record whose
    /// head does not decode is deleted with its by-time entry (its by-agent entry, which holds
    /// no content, cannot be found without it).
    pub(crate) fn erase_spans(
        &self,
        batch: &mut WriteBatch,
        execution_id: &str,
    ) -> Result<SpanErasure> {
        let mut erasure = SpanErasure {
            count: 0,
            own: None,
        };
        for source in self.span_sources()? {
            let own = !Arc::ptr_eq(&source.db, &self.inner.db);
            let mut own_batch = WriteBatch::default();
            let b = if own { &mut own_batch } else { &mut *batch };
            for r in source.scan_prefix(Cf::Spans, &exec_key(execution_id)) {
                let (k, v) = r?;
                let head = SpanHead::decode(&k, &v).ok();
                if head
                    .as_ref()
                    .is_some_and(|h| h.execution_id != execution_id)
                {
                    continue; // another execution whose key shares the hash prefix
                }
                let Some(tail) = k.get(16..32) else { continue };
                let start = u64::from_be_bytes(tail[..8].try_into().expect("8 bytes"));
                let id: [u8; 8] = tail[8..].try_into().expect("8 bytes");
                b.delete_cf(source.cf(Cf::Spans), &k);
                b.delete_cf(source.cf(Cf::SpanIndex), time_index_key(start, &id));
                if let Some(h) = head {
                    b.delete_cf(
                        source.cf(Cf::SpanIndex),
                        agent_index_key(&h.agent, start, &id),
                    );
                }
                erasure.count += 1;
            }
            if own && !own_batch.is_empty() {
                erasure.own = Some((source, own_batch));
            }
        }
        Ok(erasure)
    }
}

/// An execution's spans to erase ([`Store::erase_spans`]).
pub(crate) struct SpanErasure {
    pub(crate) count: u64,
    own: Option<(SpanSource, WriteBatch)>,
}

impl SpanErasure {
    /// Deletes the spans kept in the spans' own instance. Called after the execution's erasure
    /// is written, so that a refused erasure keeps its spans; a crash in between leaves them
    /// for span retention (`docs/decisions/spans-own-instance.md`).
    pub(crate) fn finish(self) -> Result<()> {
        match self.own {
            Some((source, batch)) => source.write(batch, "erasing spans"),
            None => Ok(()),
        }
    }
}

/// The spans' instance's families, as the main instance's of the same names.
fn descriptors() -> Vec<ColumnFamilyDescriptor> {
    [Cf::Spans, Cf::SpanIndex]
        .iter()
        .map(|c| ColumnFamilyDescriptor::new(c.name(), c.options()))
        .collect()
}
