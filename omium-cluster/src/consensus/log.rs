//! The Raft log in Omium's RocksDB: entries in `raft_log` (key: index as `u64` big-endian,
//! value: version byte + postcard entry), vote / last purged / committed in `raft_meta`.
//!
//! Durability: an append writes its batch to RocksDB (readable at once), then hands openraft's
//! callback to the flusher thread. The flusher takes every callback queued so far, syncs the
//! write-ahead log once and only then reports them flushed: concurrent appends share one fsync
//! (group commit), and none is reported durable before its fsync. The vote is synced before
//! `save_vote` returns: a node must never forget whom it voted for.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{corrupt, io_err, TypeConfig};
use crate::codec;
use crate::store::{Cf, Store};

const VOTE: &[u8] = b"vote";
const LAST_PURGED: &[u8] = b"last_purged_log_id";
const COMMITTED: &[u8] = b"committed";

/// Raft log storage over a [`Store`]. Clones share the store and the flusher.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    flusher: Arc<Flusher>,
}

/// The group-commit thread: syncs the WAL once for every batch of queued callbacks.
struct Flusher {
    tx: parking_lot::Mutex<Option<mpsc::Sender<IOFlushed<TypeConfig>>>>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has flushed what is queued.
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl LogStore {
    /// The log store of `store` (which must be opened for writing).
    pub fn new(store: &Store) -> crate::Result<LogStore> {
        store.require_writer("consensus log")?;
        let db = store.db().clone();
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let flush_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("omium-raft-fsync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    group.extend(rx.try_iter());
                    let res = flush_db.flush_wal(true);
                    for cb in group {
                        cb.io_completed(
                            res.as_ref()
                                .map(|_| ())
                                .map_err(|e| io_err("syncing the Raft log", e)),
                        );
                    }
                }
            })
            .map_err(|e| crate::Error::InvalidState {
                execution: String::new(),
                status: "consensus".into(),
                detail: format!("cannot start the Raft log flusher thread: {e}"),
            })?;
        Ok(LogStore {
            db,
            flusher: Arc::new(Flusher {
                tx: parking_lot::Mutex::new(Some(tx)),
                thread: parking_lot::Mutex::new(Some(thread)),
            }),
        })
    }

    fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("writers create every column family at open")
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        let Some(bytes) = self
            .db
            .get_cf(self.cf(Cf::RaftMeta), key)
            .map_err(|e| io_err("reading raft_meta", e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt("raft_meta", key, e))
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| io_err("encoding raft_meta", e))?;
        self.db
            .put_cf(self.cf(Cf::RaftMeta), key, bytes)
            .map_err(|e| io_err("writing raft_meta", e))
    }

    fn decode_entry(key: &[u8], value: &[u8]) -> io::Result<EntryOf<TypeConfig>> {
        let index = index_of(key)?;
        let entry: EntryOf<TypeConfig> =
            codec::decode("raft log entry", &|| index.to_string(), value)
                .map_err(|e| corrupt("raft_log", key, e))?;
        if entry.index() != index {
            return Err(corrupt(
                "raft_log",
                key,
                format!("entry says index {}, its key {index}", entry.index()),
            ));
        }
        Ok(entry)
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> io::Result<u64> {
    let b: [u8; 8] = key
        .try_into()
        .map_err(|_| corrupt("raft_log", key, "key is not an 8-byte index"))?;
    Ok(u64::from_be_bytes(b))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(Cf::RaftLog),
            IteratorMode::From(&index_key(start), Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| io_err("reading raft_log", e))?;
            if !range.contains(&index_of(&k)?) {
                break;
            }
            out.push(Self::decode_entry(&k, &v)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.get_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last = match self
            .db
            .iterator_cf(self.cf(Cf::RaftLog), IteratorMode::End)
            .next()
        {
            None => None,
            Some(item) => {
                let (k, v) = item.map_err(|e| io_err("reading raft_log", e))?;
                Some(Self::decode_entry(&k, &v)?.log_id())
            }
        };
        let last_purged_log_id: Option<LogIdOf<TypeConfig>> = self.get_meta(LAST_PURGED)?;
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        self.put_meta(VOTE, vote)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush_wal(true))
            .await
            .map_err(|e| io_err("syncing the vote", e))?
            .map_err(|e| io_err("syncing the vote", e))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        // Not synced on its own: it rides on the next append's fsync. Losing it only means
        // re-applying entries already applied, which the state machine skips by log index.
        match committed {
            Some(c) => self.put_meta(COMMITTED, &c),
            None => self
                .db
                .delete_cf(self.cf(Cf::RaftMeta), COMMITTED)
                .map_err(|e| io_err("writing raft_meta", e)),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        self.get_meta(COMMITTED)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.cf(Cf::RaftLog);
        for entry in entries {
            batch.put_cf(cf, index_key(entry.index()), codec::encode(&entry));
        }
        // Written here (readable as soon as this returns, as openraft requires), made durable
        // by the flusher, which reports the callback only after its fsync.
        self.db
            .write(batch)
            .map_err(|e| io_err("appending to raft_log", e))?;
        let tx = self.flusher.tx.lock();
        match tx.as_ref() {
            Some(tx) => tx
                .send(callback)
                .map_err(|_| io_err("appending to raft_log", "the flusher thread stopped")),
            None => Err(io_err("appending to raft_log", "the log store is closing")),
        }
    }

    async fn truncate_after(
        &mut self,
        last_log_id: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        // Not synced: truncated entries that come back after a crash are uncommitted and get
        // truncated again by the leader; the next append's fsync covers the delete anyway.
        self.db
            .delete_range_cf(self.cf(Cf::RaftLog), index_key(from), index_key(u64::MAX))
            .map_err(|e| io_err("truncating raft_log", e))?;
        // delete_range's end is exclusive: u64::MAX itself.
        self.db
            .delete_cf(self.cf(Cf::RaftLog), index_key(u64::MAX))
            .map_err(|e| io_err("truncating raft_log", e))
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        // The purge mark goes first: entries at or below it are ignored even if the delete is
        // lost in a crash.
        self.put_meta(LAST_PURGED, &log_id)?;
        self.db
            .delete_range_cf(
                self.cf(Cf::RaftLog),
                index_key(0),
                index_key(log_id.index() + 1),
            )
            .map_err(|e| io_err("purging raft_log", e))
    }
}
