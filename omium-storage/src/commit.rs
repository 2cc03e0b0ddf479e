//! Group commit. Every logical operation is one WriteBatch; its audit entries get their place
//! in the hash chain here, in the order batches were submitted.
//!
//! Writers queue their batch; whoever finds no leader becomes the leader, takes the whole queue,
//! chains the audit entries, writes the batches and fsyncs once for all of them. A lone writer
//! leads itself with no thread hand-off; under load one fsync covers many writers, which is
//! where the `sync` throughput with 16 writers comes from.

use std::collections::{HashMap, VecDeque};

use parking_lot::{Condvar, Mutex, MutexGuard};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use crate::audit::{AuditDraft, AuditEntry};
use crate::codec;
use crate::error::{Error, Result};
use crate::rollup::CellCache;
use crate::store::{now_ms, Cf, Durability, Store};

pub(crate) struct Committer {
    state: Mutex<State>,
    cv: Condvar,
    /// Analytics cells; only the leader uses it.
    cells: Mutex<CellCache>,
}

struct State {
    queue: VecDeque<Pending>,
    leader: bool,
    next_ticket: u64,
    done: HashMap<u64, Result<(), rocksdb::Error>>,
    /// Last audit entry on disk: its seq and hash. Only the leader changes it.
    head_seq: u64,
    head_hash: [u8; 32],
}

struct Pending {
    ticket: u64,
    batch: WriteBatch,
    audit: Vec<AuditDraft>,
    durability: Durability,
}

/// A submitted batch; `Committer::wait` returns once it is written.
pub(crate) struct Ticket(u64);

impl Committer {
    pub(crate) fn open(db: &DB) -> Result<Committer> {
        let cf = db.cf_handle(Cf::Audit.name()).expect("audit cf");
        let (head_seq, head_hash) = match db.iterator_cf(cf, IteratorMode::End).next() {
            None => (0, [0u8; 32]),
            Some(item) => {
                let (k, v) = item.map_err(|e| Error::storage("reading the audit head", e))?;
                let e: AuditEntry = codec::decode("audit entry", &|| format!("{k:?}"), &v)?;
                (e.seq, e.hash)
            }
        };
        Ok(Committer {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                leader: false,
                next_ticket: 0,
                done: HashMap::new(),
                head_seq,
                head_hash,
            }),
            cv: Condvar::new(),
            cells: Mutex::new(CellCache::default()),
        })
    }

    /// Queues a batch. Batches are written in the order of `submit` calls, so callers that
    /// must order their writes submit under their own lock and wait outside it.
    pub(crate) fn submit(
        &self,
        batch: WriteBatch,
        audit: Vec<AuditDraft>,
        durability: Durability,
    ) -> Ticket {
        let mut st = self.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back(Pending {
            ticket,
            batch,
            audit,
            durability,
        });
        Ticket(ticket)
    }

    pub(crate) fn wait(&self, store: &Store, ticket: Ticket) -> Result<()> {
        let mut st = self.state.lock();
        loop {
            if let Some(r) = st.done.remove(&ticket.0) {
                drop(st);
                let i = &store.inner;
                i.deferred.committed(r.is_ok(), &i.db, &i.gc_lock);
                return r.map_err(|e| Error::storage("committing a write batch", e));
            }
            if !st.leader && !st.queue.is_empty() {
                self.lead(store, &mut st);
                continue;
            }
            self.cv.wait(&mut st);
        }
    }

    /// The seq of the last audit entry written.
    pub(crate) fn head_seq(&self) -> u64 {
        self.state.lock().head_seq
    }

    /// Waits until an audit entry past `after` is written or `deadline` passes; returns the
    /// head's seq then. Woken by every group the leader writes.
    pub(crate) fn wait_past(&self, after: u64, deadline: std::time::Instant) -> u64 {
        let mut st = self.state.lock();
        while st.head_seq <= after {
            if self.cv.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.head_seq
    }

    fn lead(&self, store: &Store, st: &mut MutexGuard<'_, State>) {
        st.leader = true;
        let group: Vec<Pending> = st.queue.drain(..).collect();
        let (mut seq, mut hash) = (st.head_seq, st.head_hash);
        let results = MutexGuard::unlocked(st, || {
            let db = &store.inner.db;
            let audit_cf = store.cf(Cf::Audit);
            let any_sync = group.iter().any(|p| p.durability == Durability::Sync);
            // The one fsync goes on the last write that uses the WAL; syncing the WAL makes
            // every earlier write of the group durable too.
            let sync_at = if any_sync {
                group.iter().rposition(|p| p.durability != Durability::None)
            } else {
                None
            };
            let mut results = Vec::with_capacity(group.len());
            let mut cells = self.cells.lock();
            let mut failed: Option<rocksdb::Error> = None;
            for (i, mut p) in group.into_iter().enumerate() {
                if let Some(e) = &failed {
                    results.push((p.ticket, Err(e.clone())));
                    continue;
                }
                let (seq0, hash0) = (seq, hash);
                let at = now_ms();
                let unlogged = p.durability == Durability::None;
                // Audit entries always go through the WAL: a `none` write is lost in a crash,
                // and if its entries went with it while a later logged write survived, the
                // chain would have a hole and never verify again. So a `none` write's entries
                // are a logged write of their own, after its data (a crash between the two
                // loses both, or only the data, which `none` allows; the chain stays whole).
                let mut entries = WriteBatch::default();
                for mut draft in p.audit.drain(..) {
                    if !draft.rollup.is_empty() {
                        let deltas = std::mem::take(&mut draft.rollup);
                        cells.apply(store, &mut p.batch, at, &deltas);
                    }
                    seq += 1;
                    let entry = AuditEntry::seal(seq, at, &store.inner.actor, draft, hash);
                    hash = entry.hash;
                    let target = if unlogged { &mut entries } else { &mut p.batch };
                    target.put_cf(audit_cf, AuditEntry::key(seq), codec::encode(&entry));
                }
                let mut wo = WriteOptions::default();
                wo.set_sync(sync_at == Some(i));
                wo.disable_wal(unlogged);
                let written = db.write_opt(p.batch, &wo).and_then(|()| {
                    if entries.is_empty() {
                        Ok(())
                    } else {
                        db.write_opt(entries, &WriteOptions::default())
                    }
                });
                match written {
                    Ok(()) => results.push((p.ticket, Ok(()))),
                    Err(e) => {
                        seq = seq0;
                        hash = hash0;
                        cells.forget();
                        // Earlier members counted on this write's fsync: give it to them now.
                        let earlier_ok = db.flush_wal(true);
                        for r in results.iter_mut() {
                            if let (Err(fe), Ok(())) = (&earlier_ok, &r.1) {
                                r.1 = Err(fe.clone());
                            }
                        }
                        results.push((p.ticket, Err(e.clone())));
                        failed = Some(e);
                    }
                }
            }
            results
        });
        st.head_seq = seq;
        st.head_hash = hash;
        st.done.extend(results);
        st.leader = false;
        self.cv.notify_all();
    }
}
