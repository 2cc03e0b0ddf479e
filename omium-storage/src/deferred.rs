//! Compression off the step's critical path (`docs/decisions/deferred-compression.md`).
//!
//! A step that brings new chunks stores them raw (the codec byte `CHUNK_RAW` and the bytes),
//! and once its batch is written, one background thread per store compresses them and writes
//! them again under the same key. A chunk's key is the blake3 of its uncompressed bytes and
//! every reader decodes both forms, so readers never notice which one they got.
//!
//! - Only committed chunks are queued: `put_state` notes the chunks it stored raw in a
//!   thread-local list (with the store they are for), and the committer hands this store's
//!   entries over when this thread's batch was written (or drops them when the write failed).
//! - GC cannot interleave: the thread holds the store's GC lock shared from reading a chunk to
//!   writing it back, as every writer does, and rewrites only a chunk that is still there and
//!   still raw.
//! - The rewrite skips the WAL: if the process dies before RocksDB flushes it, the raw chunk
//!   the step wrote is what recovery finds, which reads the same. (A chunk whose rewrite is
//!   lost that way stays raw; nothing retries it.)
//! - Bounded: when [`MAX_PENDING`] bytes wait already, a step compresses its chunks itself as
//!   before, so a writer faster than the thread slows to its pace instead of growing raw data.
//! - Closing the store compresses what is queued (at most [`MAX_PENDING`] bytes), then stops
//!   the thread before RocksDB closes.

use std::cell::RefCell;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::store::Cf;

/// Raw bytes that may wait for compression at once, per store.
pub const MAX_PENDING: usize = 32 << 20;

thread_local! {
    /// Chunks this thread stored raw into a batch not yet written: (the store's compressor,
    /// address, raw length). A thread may write to several stores.
    static STORED_RAW: RefCell<Vec<(usize, [u8; 32], usize)>> = const { RefCell::new(Vec::new()) };
}

/// Entries of stores whose batch never came (a failed step on a store since dropped) are
/// dropped beyond this many: they only cost a missed compression.
const MAX_NOTED: usize = 1 << 16;

#[derive(Default)]
struct Queue {
    /// Raw bytes queued or being compressed.
    bytes: usize,
}

/// The background compressor of one store; started by the first chunk stored raw.
#[derive(Default)]
pub(crate) struct Deferred {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    worker: Mutex<Option<Worker>>,
}

struct Worker {
    tx: mpsc::Sender<Vec<([u8; 32], usize)>>,
    thread: JoinHandle<()>,
}

impl Deferred {
    fn id(&self) -> usize {
        self as *const Deferred as usize
    }

    /// Notes a chunk stored raw into the batch this thread is about to commit to this store.
    pub(crate) fn note_raw(&self, hash: [u8; 32], len: usize) {
        STORED_RAW.with(|l| {
            let mut l = l.borrow_mut();
            if l.len() >= MAX_NOTED {
                l.clear();
            }
            l.push((self.id(), hash, len));
        });
    }

    /// Whether a step may store `bytes` of new chunks raw now.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.queue.0.lock().bytes + bytes <= MAX_PENDING
    }

    /// Called by the committer when this thread's batch was written (`ok`) or not.
    pub(crate) fn committed(
        &self,
        ok: bool,
        db: &Arc<DB>,
        gc_lock: &Arc<RwLock<()>>,
        zstd_level: i32,
    ) {
        let me = self.id();
        let list: Vec<([u8; 32], usize)> = STORED_RAW.with(|l| {
            let mut l = l.borrow_mut();
            if l.is_empty() {
                return Vec::new();
            }
            let (mine, others): (Vec<_>, Vec<_>) = l.drain(..).partition(|(id, _, _)| *id == me);
            *l = others;
            mine.into_iter().map(|(_, h, n)| (h, n)).collect()
        });
        if list.is_empty() || !ok {
            return;
        }
        let bytes: usize = list.iter().map(|(_, n)| n).sum();
        self.queue.0.lock().bytes += bytes;
        let mut worker = self.worker.lock();
        let w = worker.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel();
            let (db, gc_lock, queue) = (db.clone(), gc_lock.clone(), self.queue.clone());
            let thread = std::thread::Builder::new()
                .name("omium-compress".into())
                .spawn(move || run(rx, &db, &gc_lock, &queue, zstd_level))
                .expect("spawning the chunk compressor");
            Worker { tx, thread }
        });
        if w.tx.send(list).is_err() {
            // The thread is gone (it only stops at close): the chunks stay raw.
            self.queue.0.lock().bytes -= bytes;
        }
    }

    /// Waits until every chunk queued so far is compressed.
    pub(crate) fn settle(&self) {
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock();
        while q.bytes > 0 {
            cv.wait(&mut q);
        }
    }

    /// Compresses what is queued and stops the thread (the store is closing).
    pub(crate) fn close(&self) {
        if let Some(w) = self.worker.lock().take() {
            drop(w.tx);
            let _ = w.thread.join();
        }
    }
}

fn run(
    rx: mpsc::Receiver<Vec<([u8; 32], usize)>>,
    db: &DB,
    gc_lock: &RwLock<()>,
    queue: &(Mutex<Queue>, Condvar),
    zstd_level: i32,
) {
    let cf = db.cf_handle(Cf::Chunks.name()).expect("chunks cf");
    let mut quiet = WriteOptions::default();
    quiet.disable_wal(true);
    while let Ok(list) = rx.recv() {
        {
            let _shared = gc_lock.read();
            let mut batch = WriteBatch::default();
            for (hash, _) in &list {
                // A chunk GC removed, or that another step's write already compressed, is left.
                let Ok(Some(stored)) = db.get_pinned_cf(cf, hash) else {
                    continue;
                };
                if let Some(raw) = crate::blob::raw_chunk(&stored) {
                    let encoded = crate::blob::encode_chunk(raw, zstd_level);
                    if encoded.len() < stored.len() {
                        batch.put_cf(cf, hash, encoded);
                    }
                }
            }
            // A failed rewrite leaves the raw chunk, which reads the same.
            let _ = db.write_opt(batch, &quiet);
        }
        let bytes: usize = list.iter().map(|(_, n)| n).sum();
        let (lock, cv) = queue;
        let mut q = lock.lock();
        q.bytes -= bytes;
        if q.bytes == 0 {
            cv.notify_all();
        }
    }
}
