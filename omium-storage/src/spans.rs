//! Where spans are kept: the keys of the `spans` and `span_index` families, and the erasure of
//! an execution's spans with the execution. The span record belongs to the tracing layer
//! (`omium_engine::trace::Span`, which writes, reads and prunes spans); storage reads only the
//! head of a record, the fields erasure needs (`docs/format.md`).

use rocksdb::WriteBatch;
use serde::Deserialize;

use crate::codec;
use crate::error::Result;
use crate::store::{exec_key, Cf, Store};

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
    /// Adds to `batch` the deletion of `execution_id`'s spans and their index entries; returns
    /// how many. A record whose head does not decode is deleted with its by-time entry (its
    /// by-agent entry, which holds no content, cannot be found without it).
    pub(crate) fn erase_spans(&self, batch: &mut WriteBatch, execution_id: &str) -> Result<u64> {
        let mut n = 0;
        for r in self.scan_prefix(Cf::Spans, &exec_key(execution_id)) {
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
            batch.delete_cf(self.cf(Cf::Spans), &k);
            batch.delete_cf(self.cf(Cf::SpanIndex), time_index_key(start, &id));
            if let Some(h) = head {
                batch.delete_cf(
                    self.cf(Cf::SpanIndex),
                    agent_index_key(&h.agent, start, &id),
                );
            }
            n += 1;
        }
        Ok(n)
    }
}
