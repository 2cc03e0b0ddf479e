//! The consensus state machine, in the `consensus` column family:
//!
//! | key | value |
//! |---|---|
//! | `m ‖ exec_key(16) ‖ seq(u64 BE)` | record `Message` (with its acknowledgements and status) |
//! | `i ‖ message id` | `exec_key(16) ‖ seq(u64 BE)` |
//! | `s ‖ exec_key(16)` | the execution's last `seq` (`u64` BE) |
//! | `X …`, `C …`, `B …` | executions, checkpoints and chunks pushed by stores (`crate::sync`) |
//!
//! Its applied position, membership and current snapshot are in `raft_meta` (`sm_applied`,
//! `sm_membership`, `snapshot`). One `apply` call is one atomic WriteBatch: the messages, the
//! counters and the applied position move together, so a crash never leaves a message applied
//! without the position that says so (openraft re-applies from that position on restart).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::{ColumnFamily, IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use super::{corrupt, io_err, Ack, Command, Message, MessageStatus, NewMessage, Reply, TypeConfig};
use super::{TypeConfig as C, Violation};
use crate::codec;
use crate::store::{exec_key, Cf, ExecKey, Store};

const APPLIED: &[u8] = b"sm_applied";
const MEMBERSHIP: &[u8] = b"sm_membership";
const SNAPSHOT: &[u8] = b"snapshot";

/// The state machine over a [`Store`]. Clones share the store and the applied-index watch.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    /// The store, to write the events of decided messages through its committer (audit
    /// chain); weak, so that the state machine does not keep the store open.
    store: crate::store::WeakStore,
    applied: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Reads messages from a store (the state machine's, or a read-only open of it).
#[derive(Clone)]
pub struct Reader {
    db: Arc<DB>,
}

fn message_key(ek: &ExecKey, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(b'm');
    k.extend_from_slice(ek);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn index_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(b'i');
    k.extend_from_slice(id.as_bytes());
    k
}

fn counter_key(ek: &ExecKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b's');
    k.extend_from_slice(ek);
    k
}

fn cf(db: &DB, cf: Cf) -> &ColumnFamily {
    db.cf_handle(cf.name())
        .expect("writers create every column family at open")
}

impl Reader {
    pub fn new(store: &Store) -> Reader {
        Reader {
            db: store.db().clone(),
        }
    }

    fn cf(&self) -> Option<&ColumnFamily> {
        // A read-only open of a store that never ran consensus has no such family.
        self.db.cf_handle(Cf::Consensus.name())
    }

    /// The message with this id, if the state machine applied it.
    pub fn message(&self, id: &str) -> io::Result<Option<Message>> {
        let Some(cf) = self.cf() else { return Ok(None) };
        let ik = index_key(id);
        let Some(place) = self
            .db
            .get_cf(cf, &ik)
            .map_err(|e| io_err("reading consensus", e))?
        else {
            return Ok(None);
        };
        if place.len() != 24 {
            return Err(corrupt("consensus", &ik, "index entry is not 24 bytes"));
        }
        let mk = [&[b'm'][..], &place].concat();
        let bytes = self
            .db
            .get_cf(cf, &mk)
            .map_err(|e| io_err("reading consensus", e))?
            .ok_or_else(|| corrupt("consensus", &ik, "index points to a missing message"))?;
        decode_message(&mk, &bytes).map(Some)
    }

    /// The messages of an execution, in their agreed order.
    pub fn messages(&self, execution_id: &str) -> io::Result<Vec<Message>> {
        let Some(cf) = self.cf() else {
            return Ok(Vec::new());
        };
        let ek = exec_key(execution_id);
        let prefix = [&[b'm'][..], &ek].concat();
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&prefix, rocksdb::Direction::Forward))
        {
            let (k, v) = item.map_err(|e| io_err("reading consensus", e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let m = decode_message(&k, &v)?;
            // exec_key is a truncated hash: compare the full id (see execution-keys.md).
            if m.execution_id == execution_id {
                out.push(m);
            }
        }
        Ok(out)
    }
}

fn decode_message(key: &[u8], bytes: &[u8]) -> io::Result<Message> {
    codec::decode("consensus message", &|| crate::hex(key), bytes)
        .map_err(|e| corrupt("consensus", key, e))
}

/// Messages changed by the commands of one `apply` call, on top of what is stored.
struct Pending<'a> {
    db: &'a DB,
    messages: HashMap<Vec<u8>, Message>,
    counters: HashMap<ExecKey, u64>,
    index: HashMap<String, Vec<u8>>,
    /// Synced records written by this `apply` call (`crate::sync`).
    puts: HashMap<Vec<u8>, Vec<u8>>,
    /// Messages that were decided already when this call loaded them (not decided by it).
    decided_before: std::collections::HashSet<Vec<u8>>,
}

impl crate::sync::Kv for Pending<'_> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        if let Some(v) = self.puts.get(key) {
            return Ok(Some(v.clone()));
        }
        self.db
            .get_cf(cf(self.db, Cf::Consensus), key)
            .map_err(|e| io_err("reading consensus", e))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.puts.insert(key, value);
    }
}

impl Pending<'_> {
    fn place(&self, id: &str) -> io::Result<Option<Vec<u8>>> {
        if let Some(k) = self.index.get(id) {
            return Ok(Some(k.clone()));
        }
        let ik = index_key(id);
        match self
            .db
            .get_cf(cf(self.db, Cf::Consensus), &ik)
            .map_err(|e| io_err("reading consensus", e))?
        {
            Some(p) if p.len() == 24 => Ok(Some([&[b'm'][..], &p].concat())),
            Some(_) => Err(corrupt("consensus", &ik, "index entry is not 24 bytes")),
            None => Ok(None),
        }
    }

    fn load(&mut self, key: &[u8]) -> io::Result<&mut Message> {
        if !self.messages.contains_key(key) {
            let bytes = self
                .db
                .get_cf(cf(self.db, Cf::Consensus), key)
                .map_err(|e| io_err("reading consensus", e))?
                .ok_or_else(|| corrupt("consensus", key, "index points to a missing message"))?;
            let m = decode_message(key, &bytes)?;
            if m.status.is_final() {
                self.decided_before.insert(key.to_vec());
            }
            self.messages.insert(key.to_vec(), m);
        }
        Ok(self.messages.get_mut(key).expect("inserted above"))
    }

    fn next_seq(&mut self, ek: &ExecKey) -> io::Result<u64> {
        let last = match self.counters.get(ek) {
            Some(n) => *n,
            None => {
                let ck = counter_key(ek);
                match self
                    .db
                    .get_cf(cf(self.db, Cf::Consensus), &ck)
                    .map_err(|e| io_err("reading consensus", e))?
                {
                    None => 0,
                    Some(b) => u64::from_be_bytes(
                        b.as_slice()
                            .try_into()
                            .map_err(|_| corrupt("consensus", &ck, "counter is not 8 bytes"))?,
                    ),
                }
            }
        };
        self.counters.insert(*ek, last + 1);
        Ok(last + 1)
    }

    fn apply(&mut self, cmd: &Command, index: u64) -> io::Result<Reply> {
        Ok(match cmd {
            Command::Broadcast(m) => self.broadcast(m, index)?,
            Command::Ack {
                message_id,
                agent,
                vote,
                at_ms,
            } => {
                let Some(key) = self.place(message_id)? else {
                    return Ok(unknown(message_id));
                };
                let m = self.load(&key)?;
                if !m.targets.iter().any(|t| t == agent) {
                    return Ok(Reply::Rejected {
                        code: "not_a_target".into(),
                        detail: format!(
                            "agent {agent:?} is not a target of message {message_id} (targets: {})",
                            m.targets.join(", ")
                        ),
                    });
                }
                // The first acknowledgement of an agent counts; repeats (client retries) and
                // acknowledgements after the outcome change nothing.
                if !m.status.is_final() && !m.acks.iter().any(|a| &a.agent == agent) {
                    m.acks.push(Ack {
                        agent: agent.clone(),
                        vote: vote.clone(),
                        at_ms: *at_ms,
                        log_index: index,
                    });
                    m.status = m.decide(index);
                }
                Reply::Status(m.status.clone())
            }
            Command::Expire {
                message_id,
                timeout_ms,
                ..
            } => {
                let Some(key) = self.place(message_id)? else {
                    return Ok(unknown(message_id));
                };
                let m = self.load(&key)?;
                if !m.status.is_final() {
                    m.status = MessageStatus::Violated {
                        reason: Violation::Timeout,
                        detail: format!(
                            "timeout: {} of the {} acknowledgements needed arrived within {timeout_ms} ms ({})",
                            m.acks.len(),
                            m.quorum,
                            if m.acks.is_empty() {
                                "none".to_string()
                            } else {
                                m.acks.iter().map(|a| a.agent.as_str()).collect::<Vec<_>>().join(", ")
                            }
                        ),
                    };
                }
                Reply::Status(m.status.clone())
            }
            Command::Batch(cmds) => Reply::Batch(
                cmds.iter()
                    .map(|c| self.apply(c, index))
                    .collect::<io::Result<_>>()?,
            ),
            Command::Sync(old) => {
                Reply::Sync(crate::sync::apply_batch(self, &old.upgrade(), index)?)
            }
            Command::Push(batch) => Reply::Sync(crate::sync::apply_batch(self, batch, index)?),
            Command::Claim {
                execution_id,
                store_id,
                host,
                lease_until_ms,
                at_ms,
            } => Reply::Sync(vec![crate::sync::apply_claim(
                self,
                execution_id,
                store_id,
                host,
                *lease_until_ms,
                *at_ms,
                index,
            )?]),
        })
    }

    fn broadcast(&mut self, m: &NewMessage, index: u64) -> io::Result<Reply> {
        if let Some(key) = self.place(&m.id)? {
            // A retried proposal: the message already has its place.
            let existing = self.load(&key)?;
            return Ok(Reply::Broadcast {
                seq: existing.seq,
                log_index: existing.log_index,
            });
        }
        let ek = exec_key(&m.execution_id);
        let seq = self.next_seq(&ek)?;
        let key = message_key(&ek, seq);
        let msg = Message {
            id: m.id.clone(),
            execution_id: m.execution_id.clone(),
            seq,
            sender: m.sender.clone(),
            targets: m.targets.clone(),
            payload: m.payload.clone(),
            quorum: m.quorum,
            log_index: index,
            created_at_ms: m.at_ms,
            acks: Vec::new(),
            status: MessageStatus::Pending,
        };
        self.index.insert(m.id.clone(), key.clone());
        self.messages.insert(key, msg);
        Ok(Reply::Broadcast {
            seq,
            log_index: index,
        })
    }
}

fn unknown(id: &str) -> Reply {
    Reply::Rejected {
        code: "message_not_found".into(),
        detail: format!("unknown message {id}; `omium consensus status <execution>` lists the messages of an execution"),
    }
}

/// The key-value pairs of the `consensus` family, as a snapshot carries them.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The bytes of a snapshot: a version byte, postcard of [`SnapshotBody`], blake3 of the rest.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    /// JSON of the snapshot's `SnapshotMeta` (its serde form is not postcard-friendly).
    meta: String,
    entries: Pairs,
}

fn encode_snapshot(meta: &SnapshotMetaOf<C>, entries: Pairs) -> io::Result<Vec<u8>> {
    let body = SnapshotBody {
        meta: serde_json::to_string(meta).map_err(|e| io_err("encoding snapshot", e))?,
        entries,
    };
    let mut out = codec::encode(&body);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<(SnapshotMetaOf<C>, Pairs)> {
    let bad = |d: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt consensus snapshot: {d}"),
        )
    };
    if bytes.len() < 33 {
        return Err(bad(format!("{} bytes is too short", bytes.len())));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(bad("checksum mismatch".into()));
    }
    let body: SnapshotBody = codec::decode("consensus snapshot", &|| "snapshot".into(), body)
        .map_err(|e| bad(e.to_string()))?;
    let meta = serde_json::from_str(&body.meta).map_err(|e| bad(e.to_string()))?;
    Ok((meta, body.entries))
}

impl StateMachine {
    /// The state machine of `store` (opened for writing).
    pub fn new(store: &Store) -> crate::Result<StateMachine> {
        store.require_writer("consensus state machine")?;
        let sm = StateMachine {
            db: store.db().clone(),
            store: store.downgrade(),
            applied: Arc::new(tokio::sync::watch::channel(0).0),
        };
        let applied = sm
            .read_meta::<LogIdOf<C>>(APPLIED)
            .map_err(|e| crate::Error::Decode {
                what: "consensus applied position",
                key: "raft_meta/sm_applied".into(),
                detail: e.to_string(),
            })?;
        sm.applied
            .send_replace(applied.map(|l| l.index()).unwrap_or(0));
        Ok(sm)
    }

    /// Reads applied messages.
    pub fn reader(&self) -> Reader {
        Reader {
            db: self.db.clone(),
        }
    }

    /// A receiver that changes whenever entries are applied (value: last applied index).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self
            .db
            .get_cf(cf(&self.db, Cf::RaftMeta), key)
            .map_err(|e| io_err("reading raft_meta", e))?
        {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| corrupt("raft_meta", key, e)),
        }
    }

    fn json<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
        serde_json::to_vec(v).map_err(|e| io_err("encoding raft_meta", e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            // One RocksDB snapshot for the data and the position: an `apply` is one batch, so
            // both are seen either before or after it.
            let snap = db.snapshot();
            let get = |key: &[u8]| -> io::Result<Option<Vec<u8>>> {
                snap.get_cf(cf(&db, Cf::RaftMeta), key)
                    .map_err(|e| io_err("reading raft_meta", e))
            };
            let last_log_id: Option<LogIdOf<C>> = get(APPLIED)?
                .map(|b| serde_json::from_slice(&b).map_err(|e| corrupt("raft_meta", APPLIED, e)))
                .transpose()?;
            let last_membership: StoredMembershipOf<C> = get(MEMBERSHIP)?
                .map(|b| {
                    serde_json::from_slice(&b).map_err(|e| corrupt("raft_meta", MEMBERSHIP, e))
                })
                .transpose()?
                .unwrap_or_default();
            let mut entries = Vec::new();
            for item in snap.iterator_cf(cf(&db, Cf::Consensus), IteratorMode::Start) {
                let (k, v) = item.map_err(|e| io_err("reading consensus", e))?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            let meta = SnapshotMetaOf::<C> {
                last_log_id,
                last_membership,
            };
            let bytes = encode_snapshot(&meta, entries)?;
            db.put_cf(cf(&db, Cf::RaftMeta), SNAPSHOT, &bytes)
                .map_err(|e| io_err("writing raft_meta", e))?;
            Ok(SnapshotOf::<C, Vec<u8>> {
                meta,
                snapshot: bytes,
            })
        })
        .await
        .map_err(|e| io_err("building a snapshot", e))?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((
            self.read_meta(APPLIED)?,
            self.read_meta(MEMBERSHIP)?.unwrap_or_default(),
        ))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let db = self.db.clone();
        let mut pending = Pending {
            db: &db,
            messages: HashMap::new(),
            counters: HashMap::new(),
            index: HashMap::new(),
            puts: HashMap::new(),
            decided_before: std::collections::HashSet::new(),
        };
        let mut last_applied = None;
        let mut membership = None;
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.index();
            let reply = match &entry.payload {
                EntryPayload::Blank => Reply::None,
                EntryPayload::Normal(cmd) => pending.apply(cmd, index)?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembershipOf::<C>::new(
                        Some(entry.log_id()),
                        m.clone(),
                    ));
                    Reply::None
                }
            };
            last_applied = Some(entry.log_id());
            if let Some(r) = responder {
                replies.push((r, reply));
            }
        }
        let Some(last) = last_applied else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        let data = cf(&db, Cf::Consensus);
        for (k, m) in &pending.messages {
            batch.put_cf(data, k, codec::encode(m));
        }
        for (id, k) in &pending.index {
            batch.put_cf(data, index_key(id), &k[1..]);
        }
        for (ek, n) in &pending.counters {
            batch.put_cf(data, counter_key(ek), n.to_be_bytes());
        }
        for (k, v) in &pending.puts {
            batch.put_cf(data, k, v);
        }
        let meta = cf(&db, Cf::RaftMeta);
        batch.put_cf(meta, APPLIED, Self::json(&last)?);
        if let Some(m) = &membership {
            batch.put_cf(meta, MEMBERSHIP, Self::json(m)?);
        }
        // A message decided by this call (agreed, or violated) is an event of the store's feed,
        // written in the same batch: a state lost in a crash is re-applied, and decides (and
        // tells) again, so each decision is told once.
        // One event per execution and outcome per call (a batch of 200 acknowledgements that
        // decides 200 messages of one execution is one event, not 200 audit entries).
        let mut decided: std::collections::BTreeMap<(&str, &'static str), Vec<serde_json::Value>> =
            std::collections::BTreeMap::new();
        for (k, m) in &pending.messages {
            if !m.status.is_final() || pending.decided_before.contains(k) {
                continue;
            }
            let (action, detail) = match &m.status {
                MessageStatus::Agreed { value, at_index } => (
                    "consensus.agree",
                    serde_json::json!({"message_id": m.id, "seq": m.seq, "sender": m.sender,
                        "acks": m.acks.len(), "quorum": m.quorum, "value": value, "at_index": at_index}),
                ),
                MessageStatus::Violated { reason, detail } => (
                    "consensus.violate",
                    serde_json::json!({"message_id": m.id, "seq": m.seq, "sender": m.sender,
                        "acks": m.acks.len(), "quorum": m.quorum, "reason": reason, "detail": detail}),
                ),
                _ => continue,
            };
            decided
                .entry((m.execution_id.as_str(), action))
                .or_default()
                .push(detail);
        }
        let drafts: Vec<_> = decided
            .into_iter()
            .map(|((execution, action), mut messages)| {
                messages.sort_by_key(|m| m["seq"].as_u64());
                crate::audit::AuditDraft::new(
                    action,
                    format!("execution/{execution}"),
                    serde_json::json!({ "messages": messages }).to_string(),
                )
            })
            .collect();
        match self.store.upgrade().filter(|_| !drafts.is_empty()) {
            // Not synced: the log entries are durable, and a state lost in a crash is
            // re-applied from `sm_applied`, which travels in this same batch.
            Some(store) => store
                .commit(batch, drafts, Some(crate::store::Durability::Buffered))
                .map_err(|e| io_err("writing the consensus state machine", e))?,
            None => db
                .write(batch)
                .map_err(|e| io_err("writing the consensus state machine", e))?,
        }
        for (r, reply) in replies {
            r.send(reply);
        }
        self.applied.send_replace(last.index());
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let (inner_meta, entries) = decode_snapshot(&snapshot)?;
        if &inner_meta != meta {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "consensus snapshot does not match its metadata: it holds up to {:?}, the \
                     sender announced {:?}",
                    inner_meta.last_log_id, meta.last_log_id
                ),
            ));
        }
        let db = self.db.clone();
        let meta = meta.clone();
        let index = meta.last_log_id.as_ref().map(|l| l.index()).unwrap_or(0);
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let data = cf(&db, Cf::Consensus);
            let mut batch = WriteBatch::default();
            for item in db.iterator_cf(data, IteratorMode::Start) {
                let (k, _) = item.map_err(|e| io_err("reading consensus", e))?;
                batch.delete_cf(data, k);
            }
            for (k, v) in entries {
                batch.put_cf(data, k, v);
            }
            let m = cf(&db, Cf::RaftMeta);
            match &meta.last_log_id {
                Some(l) => batch.put_cf(m, APPLIED, Self::json(l)?),
                None => batch.delete_cf(m, APPLIED),
            }
            batch.put_cf(m, MEMBERSHIP, Self::json(&meta.last_membership)?);
            batch.put_cf(m, SNAPSHOT, &snapshot);
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(batch, &wo)
                .map_err(|e| io_err("installing a consensus snapshot", e))
        })
        .await
        .map_err(|e| io_err("installing a snapshot", e))??;
        self.applied.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        let Some(bytes) = self
            .db
            .get_cf(cf(&self.db, Cf::RaftMeta), SNAPSHOT)
            .map_err(|e| io_err("reading raft_meta", e))?
        else {
            return Ok(None);
        };
        let (meta, _) = decode_snapshot(&bytes)?;
        Ok(Some(SnapshotOf::<C, Vec<u8>> {
            meta,
            snapshot: bytes,
        }))
    }
}
