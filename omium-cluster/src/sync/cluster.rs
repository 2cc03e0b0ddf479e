//! The node side of sync: what `omium node` answers on `/sync/*` (postcard bodies).
//!
//! | route | body → reply | does |
//! |---|---|---|
//! | `POST /sync/missing` | `Vec<[u8; 32]>` → `Vec<[u8; 32]>` | which of these chunks the cluster lacks |
//! | `POST /sync/push` | [`SyncBatch`] → `Vec<SyncOutcome>` | verifies the chunks, appends the batch to the log |
//! | `POST /sync/pull` | [`PullRequest`] → [`Pulled`] | claims the execution (through the log), returns it |
//! | `POST /sync/chunks` | `Vec<[u8; 32]>` → `Vec<FetchedChunk>` | chunk bytes for a pull |
//! | `POST /sync/executions` | `()` → `Vec<SyncedSummary>` | every synced execution, for `recover()` |
//!
//! Reads are linearizable (a read index on the leader), so they see every acknowledged push.

use ulid::Ulid;

use super::{
    check_records, checkpoint_key, chunk_key, list_synced, read_epoch, read_synced, verify_chunks,
    FetchedChunk, Kv, PullRequest, Pulled, SyncBatch, SyncOutcome, SyncedSummary,
};
use crate::codec;
use crate::consensus::coordinator::{unexpected, Engine, ProposeResult};
use crate::consensus::{Command, Reply};
use crate::error::Error;
use crate::store::{exec_key, now_ms, Cf, Store};

/// Longest a pull may take an execution over for (a day): a client's `claim_ms` is capped to it.
pub const MAX_CLAIM_MS: u64 = 24 * 3600 * 1000;

/// Most chunks one `/sync/chunks` reply holds.
pub const MAX_FETCH_CHUNKS: usize = 4096;

/// A `/sync/chunks` reply stops adding chunks once it holds this many bytes (so it is at most
/// this plus one chunk).
pub const MAX_FETCH_REPLY_BYTES: usize = 32 << 20;

/// Reads of the committed state through the node's store.
struct Committed<'a>(&'a Store);

impl Kv for Committed<'_> {
    fn get(&self, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        self.0
            .get(Cf::Consensus, key)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn put(&mut self, _: Vec<u8>, _: Vec<u8>) {
        unreachable!("reads only")
    }
}

fn read_error(e: impl std::fmt::Display) -> Error {
    Error::ConsensusUnavailable {
        detail: format!("reading synced data: {e}"),
    }
}

/// The tenant of a synced execution, if the cluster holds it.
pub(crate) fn synced_tenant(engine: &Engine, execution_id: &str) -> crate::Result<Option<String>> {
    read_synced(&Committed(engine.store()), &exec_key(execution_id))
        .map(|s| s.map(|s| s.execution.tenant))
        .map_err(read_error)
}

/// Not a linearizable read (that would cost a heartbeat round per push): a node that lags
/// may call a chunk present that the log does not hold yet, and then the push is refused with
/// `sync_incomplete` when it is applied, and the store sends those chunks again.
pub(crate) async fn missing(
    engine: &Engine,
    hashes: Vec<[u8; 32]>,
) -> ProposeResult<Vec<[u8; 32]>> {
    let kv = Committed(engine.store());
    let mut out = Vec::new();
    for h in hashes {
        if kv.get(&chunk_key(&h)).map_err(read_error)?.is_none() {
            out.push(h);
        }
    }
    Ok(out)
}

pub(crate) async fn push(engine: &Engine, batch: SyncBatch) -> ProposeResult<Vec<SyncOutcome>> {
    // Decompressing and hashing up to `MAX_BATCH_BYTES` of chunks is CPU work: it runs off the
    // async threads, so that a large or hostile push cannot stall the node's other requests
    // (Raft heartbeats among them).
    let checked = tokio::task::spawn_blocking(move || -> crate::Result<SyncBatch> {
        verify_chunks(&batch.chunks)?;
        for b in &batch.bundles {
            check_records(&b.execution, &b.checkpoints, false, "pushed checkpoint")?;
        }
        Ok(batch)
    })
    .await;
    let mut batch = checked.map_err(|e| Error::Remote {
        code: "server_error",
        message: format!("checking a sync batch failed: {e}"),
    })??;
    batch.at_ms = now_ms();
    let n = batch.bundles.len();
    match engine.propose(Command::Push(batch)).await? {
        Reply::Sync(outcomes) if outcomes.len() == n => Ok(outcomes),
        other => Err(unexpected(other).into()),
    }
}

pub(crate) async fn pull(engine: &Engine, req: PullRequest) -> ProposeResult<Pulled> {
    let mut held = None;
    if req.claim_ms > 0 {
        let at_ms = now_ms();
        let cmd = Command::Claim {
            execution_id: req.execution_id.clone(),
            store_id: req.store_id.clone(),
            host: req.host.clone(),
            lease_until_ms: at_ms.saturating_add(req.claim_ms.min(MAX_CLAIM_MS)),
            at_ms,
        };
        match engine.propose(cmd).await? {
            Reply::Sync(mut o) if o.len() == 1 => match o.remove(0) {
                SyncOutcome::Rejected { code, detail } => {
                    return Err(outcome_error(&req.execution_id, &code, detail).into());
                }
                SyncOutcome::Accepted {
                    epoch, lease_ms, ..
                } => held = Some((epoch, lease_ms)),
            },
            other => return Err(unexpected(other).into()),
        }
    } else {
        engine.linearize().await?;
    }
    let store = engine.store();
    let ek = exec_key(&req.execution_id);
    let (epoch, lease_ms) = match held {
        Some(h) => h,
        None => (read_epoch(&Committed(store), &ek).map_err(read_error)?, 0),
    };
    let synced = read_synced(&Committed(store), &ek)
        .map_err(read_error)?
        .filter(|s| s.execution.id == req.execution_id)
        .ok_or_else(|| Error::ExecutionNotFound {
            id: req.execution_id.clone(),
        })?;
    let prefix = checkpoint_key(&ek, Ulid::nil());
    let mut checkpoints = Vec::new();
    for item in store.scan_prefix(Cf::Consensus, &prefix[..17]) {
        let (k, v) = item?;
        checkpoints.push(codec::decode("synced checkpoint", &|| crate::hex(&k), &v)?);
    }
    Ok(Pulled {
        synced,
        checkpoints,
        epoch,
        lease_ms,
    })
}

pub(crate) async fn chunks(
    engine: &Engine,
    hashes: Vec<[u8; 32]>,
) -> ProposeResult<Vec<FetchedChunk>> {
    engine.linearize().await?;
    let kv = Committed(engine.store());
    let mut out = Vec::new();
    let mut bytes = 0usize;
    // A prefix of what was asked, in order, up to a reply size (the client asks again for the
    // rest): however many addresses a request names, the reply stays bounded.
    for hash in hashes.into_iter().take(MAX_FETCH_CHUNKS) {
        if bytes >= MAX_FETCH_REPLY_BYTES {
            break;
        }
        let stored = kv
            .get(&chunk_key(&hash))
            .map_err(read_error)?
            .ok_or_else(|| Error::InvalidArgument {
                what: "chunk",
                detail: format!("the cluster has no chunk {}", crate::hex(&hash)),
            })?;
        bytes += stored.len();
        out.push(FetchedChunk {
            hash,
            stored: (!stored.is_empty()).then_some(stored),
        });
    }
    Ok(out)
}

pub(crate) async fn executions(engine: &Engine) -> ProposeResult<Vec<SyncedSummary>> {
    engine.linearize().await?;
    let store = engine.store();
    let iter = store.scan_prefix(Cf::Consensus, b"X").map(|r| {
        r.map(|(k, v)| (k.to_vec(), v.to_vec()))
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    let mut list = list_synced(iter).map_err(read_error)?;
    // Lease time left on this node's clock: a store compares it with nothing of its own.
    let now = now_ms();
    for s in &mut list {
        s.epoch = read_epoch(&Committed(store), &exec_key(&s.execution.id)).map_err(read_error)?;
        s.lease_left_ms = s.meta.lease_until_ms.saturating_sub(now);
    }
    Ok(list)
}

/// The error a refused push or claim is reported as.
pub fn outcome_error(execution: &str, code: &str, detail: String) -> Error {
    match code {
        "sync_conflict" => Error::SyncConflict {
            execution: execution.into(),
            detail,
        },
        "lease_lost" => Error::LeaseLost {
            execution: execution.into(),
            detail,
        },
        "execution_not_found" => Error::ExecutionNotFound {
            id: execution.into(),
        },
        other => Error::Remote {
            code: crate::error::known_code(other),
            message: detail,
        },
    }
}
