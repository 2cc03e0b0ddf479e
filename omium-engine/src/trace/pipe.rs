//! The span pipeline: `record_span` hands a span to a bounded channel (a few tens of ns, never
//! blocking: a full channel drops the span and counts it); one background thread writes spans
//! to the spans' own RocksDB instance (`Store::span_db`) in batches and offers them to the OTLP
//! exporter, if one is enabled.
//!
//! The writer is not woken per span: while spans keep coming it looks at the channel every
//! [`LINGER`] (a producer pays no futex wake-up and no context switch, which cost more than
//! the span itself on a two-core machine); after about a second without spans it blocks on
//! the channel, and the next span wakes it. A flush or a stop wakes it at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::Serialize;

use super::otlp::{ExportConfig, ExportStats, Exporter};
use omium_storage::spans::{agent_index_key, time_index_key};

use super::{span_key, Span};
use crate::codec;
use crate::error::{Error, Result};
use crate::store::Cf;

/// Spans the channel holds before `record_span` starts dropping.
const CAPACITY: usize = 65_536;
/// Spans written per RocksDB batch at most.
const BATCH: usize = 1024;
/// How often a busy writer looks for spans.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);
/// Empty looks before the writer blocks on the channel instead (about a second).
const IDLE_LOOKS: u32 = 100;

enum Msg {
    Span(Box<Span>),
    Flush(SyncSender<()>),
    /// Store what came before, then stop.
    Stop,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    stored: AtomicU64,
    dropped: AtomicU64,
    store_errors: AtomicU64,
}

/// What the pipeline did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PipeStats {
    pub recorded: u64,
    pub stored: u64,
    /// Dropped because the queue to the writer was full.
    pub dropped: u64,
    /// Spans lost to a storage error.
    pub store_errors: u64,
    pub export: Option<ExportStats>,
}

/// A store's span pipeline: an extension of the store, started by its first span and stopped
/// (after storing what is queued) when the store closes.
pub(crate) struct SpanPipe {
    /// The spans' own RocksDB instance (`Store::span_db`); `None` when it could not be opened:
    /// every span is then counted as a storage error.
    db: Option<Arc<DB>>,
    tx: OnceLock<SyncSender<Msg>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    exporter: Arc<OnceLock<Arc<Exporter>>>,
}

impl omium_storage::Extension for SpanPipe {
    fn close(&self) {
        SpanPipe::close(self);
    }

    fn before_erase(&self, _execution_id: &str) -> omium_storage::Result<()> {
        self.flush()
    }
}

impl SpanPipe {
    pub(crate) fn new(db: Option<Arc<DB>>) -> SpanPipe {
        SpanPipe {
            db,
            tx: OnceLock::new(),
            worker: Mutex::new(None),
            counters: Default::default(),
            exporter: Default::default(),
        }
    }

    pub(crate) fn send(&self, span: Span) {
        self.counters.recorded.fetch_add(1, Ordering::Relaxed);
        let Some(db) = &self.db else {
            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let tx = self.tx.get_or_init(|| self.start(db.clone()));
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            tx.try_send(Msg::Span(Box::new(span)))
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn start(&self, db: Arc<DB>) -> SyncSender<Msg> {
        let (tx, rx) = sync_channel(CAPACITY);
        let counters = self.counters.clone();
        let exporter = self.exporter.clone();
        let handle = std::thread::Builder::new()
            .name("omium-spans".into())
            .spawn(move || write_loop(&db, &rx, &counters, &exporter))
            .expect("spawn the span writer");
        *self.worker.lock() = Some(handle);
        tx
    }

    pub(crate) fn flush(&self) -> Result<()> {
        let Some(tx) = self.tx.get() else {
            return Ok(());
        };
        let (ack, done) = sync_channel(1);
        tx.send(Msg::Flush(ack))
            .map_err(|_| Error::InvalidArgument {
                what: "span pipeline",
                detail: "its writer stopped".into(),
            })?;
        self.wake();
        let _ = done.recv();
        Ok(())
    }

    /// Wakes the writer if it waits out its linger.
    fn wake(&self) {
        if let Some(h) = self.worker.lock().as_ref() {
            h.thread().unpark();
        }
    }

    pub(crate) fn stats(&self) -> PipeStats {
        let c = &self.counters;
        PipeStats {
            recorded: c.recorded.load(Ordering::Relaxed),
            stored: c.stored.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            export: self.exporter.get().map(|e| e.stats()),
        }
    }

    pub(crate) fn enable_export(&self, config: ExportConfig) -> Result<()> {
        let e = Exporter::start(config)?;
        self.exporter.set(e).map_err(|_| Error::InvalidArgument {
            what: "OTLP export",
            detail: "it is already enabled for this store".into(),
        })
    }

    /// Waits until the exporter's queue is empty (or `timeout` passes); true when drained.
    pub(crate) fn flush_export(&self, timeout: std::time::Duration) -> bool {
        match self.exporter.get() {
            Some(e) => e.drain(timeout),
            None => true,
        }
    }

    /// Stops the writer after it stored everything queued (called when the store closes).
    pub(crate) fn close(&self) {
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(Msg::Stop);
            self.wake();
        }
        if let Some(h) = self.worker.lock().take() {
            let _ = h.join();
        }
        if let Some(e) = self.exporter.get() {
            e.shutdown();
        }
    }
}

fn write_loop(
    db: &DB,
    rx: &Receiver<Msg>,
    counters: &Counters,
    exporter: &OnceLock<Arc<Exporter>>,
) {
    let (Some(spans_cf), Some(index_cf)) = (
        db.cf_handle(Cf::Spans.name()),
        db.cf_handle(Cf::SpanIndex.name()),
    ) else {
        return;
    };
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    let mut idle = 0;
    loop {
        let first = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) if idle < IDLE_LOOKS => {
                idle += 1;
                std::thread::park_timeout(LINGER);
                continue;
            }
            Err(TryRecvError::Empty) => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        idle = 0;
        let mut spans = Vec::new();
        let mut acks = Vec::new();
        let mut stop = false;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Span(s) => spans.push(*s),
                Msg::Flush(a) => acks.push(a),
                Msg::Stop => {
                    stop = true;
                    break;
                }
            }
            if spans.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !spans.is_empty() {
            let mut batch = WriteBatch::default();
            for s in &spans {
                let k = span_key(s);
                batch.put_cf(spans_cf, k, codec::encode(s));
                batch.put_cf(index_cf, time_index_key(s.start_ns, &s.span_id), &k[..16]);
                batch.put_cf(
                    index_cf,
                    agent_index_key(&s.agent, s.start_ns, &s.span_id),
                    &k[..16],
                );
            }
            match db.write_opt(batch, &wo) {
                Ok(()) => counters
                    .stored
                    .fetch_add(spans.len() as u64, Ordering::Relaxed),
                Err(_) => counters
                    .store_errors
                    .fetch_add(spans.len() as u64, Ordering::Relaxed),
            };
            if let Some(e) = exporter.get() {
                e.offer(spans);
            }
        }
        for a in acks {
            let _ = a.send(());
        }
        if stop {
            return;
        }
    }
}
