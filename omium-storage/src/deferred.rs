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
    tx: mpsc::Sender<Batch>,
    thread: JoinHandle<()>,
}

/// Chunks of one written batch, queued; their bytes leave the queue's count when it is dropped
/// (compressed, or dropped unsent or unprocessed), so `settle` never waits for bytes nobody
/// will compress.
struct Batch {
    chunks: Vec<([u8; 32], usize)>,
    bytes: usize,
    queue: Arc<(Mutex<Queue>, Condvar)>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock();
        q.bytes -= self.bytes;
        if q.bytes == 0 {
            cv.notify_all();
        }
    }
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
    pub(crate) fn committed(&self, ok: bool, db: &Arc<DB>, gc_lock: &Arc<RwLock<()>>) {
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
        let batch = Batch {
            chunks: list,
            bytes,
            queue: self.queue.clone(),
        };
        let mut worker = self.worker.lock();
        if worker.is_none() {
            let (tx, rx) = mpsc::channel();
            let (db, gc_lock) = (db.clone(), gc_lock.clone());
            // A thread that cannot be started leaves the chunks raw (they read the same).
            if let Ok(thread) = std::thread::Builder::new()
                .name("omium-compress".into())
                .spawn(move || run(rx, &db, &gc_lock))
            {
                *worker = Some(Worker { tx, thread });
            }
        }
        if let Some(w) = worker.as_ref() {
            // Unsent (the thread is gone), the batch is dropped here and its chunks stay raw.
            let _ = w.tx.send(batch);
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

fn run(rx: mpsc::Receiver<Batch>, db: &DB, gc_lock: &RwLock<()>) {
    let cf = db.cf_handle(Cf::Chunks.name()).expect("chunks cf");
    let mut quiet = WriteOptions::default();
    quiet.disable_wal(true);
    while let Ok(queued) = rx.recv() {
        {
            let _shared = gc_lock.read();
            let mut batch = WriteBatch::default();
            for (hash, _) in &queued.chunks {
                // A chunk GC removed, or that another step's write already compressed, is left.
                let Ok(Some(stored)) = db.get_pinned_cf(cf, hash) else {
                    continue;
                };
                if let Some(raw) = crate::blob::raw_chunk(&stored) {
                    let encoded = crate::blob::encode_chunk(raw);
                    if encoded.len() < stored.len() {
                        batch.put_cf(cf, hash, encoded);
                    }
                }
            }
            // A failed rewrite leaves the raw chunk, which reads the same.
            let _ = db.write_opt(batch, &quiet);
        }
    }
}
