//! Content-addressed state. A state larger than `inline_max` is cut by FastCDC into chunks,
//! each addressed by the blake3 of its bytes and stored LZ4-compressed once; the checkpoint
//! keeps a manifest (chunking parameters + chunk list). A state that grows by appending
//! shares every chunk but the last few with its parent, so it costs O(new bytes).
//!
//! Every read recomputes the chunk hashes and the whole-state checksum; a mismatch is an
//! `Error::Integrity` naming the checkpoint, never silently wrong bytes.

use std::cell::RefCell;
use std::collections::HashSet;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::audit::AuditDraft;
use crate::checkpoint::Checkpoint;
use crate::codec;
use crate::error::{Error, Result};
use crate::store::{Cf, Store};

/// The chunker, pinned: `fastcdc = "=5.0.0"`, module `v2020`. The name is stored in every
/// manifest, so a later change of chunker is a new name, never a silent re-cut.
pub const CHUNKER: &str = "fastcdc-v2020@5.0.0";

/// The codec byte every stored chunk begins with (`docs/format.md`): raw bytes, a zstd frame
/// (written until format 2, read still) or an LZ4 block (format 3).
const CHUNK_RAW: u8 = 0;
const CHUNK_ZSTD: u8 = 1;
const CHUNK_LZ4: u8 = 2;

/// Chunking parameters, stored in each manifest. Sizes are powers of two.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    pub chunker: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// FastCDC normalization level.
    pub normalization: u8,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            chunker: CHUNKER.into(),
            min_size: 2048,
            avg_size: 8192,
            max_size: 65536,
            normalization: 1,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BlobParams {
    /// States up to this many bytes are stored inside the checkpoint record.
    pub inline_max: usize,
    pub chunking: ChunkParams,
    /// New chunks are stored raw and compressed afterwards on a background thread
    /// ([`crate::deferred`]); off, a step compresses them itself.
    pub defer_compression: bool,
}

impl Default for BlobParams {
    fn default() -> Self {
        BlobParams {
            inline_max: 4096,
            chunking: ChunkParams::default(),
            defer_compression: true,
        }
    }
}

/// Where a checkpoint's state bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateRef {
    /// Small states live in the checkpoint record itself.
    Inline(#[serde(with = "crate::codec::bytes")] Vec<u8>),
    /// Larger states are a list of chunks.
    Chunked(Manifest),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub params: ChunkParams,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// blake3 of the uncompressed chunk: its address.
    pub hash: [u8; 32],
    pub len: u32,
}

impl StateRef {
    /// Addresses of the chunks this state uses (none when inline).
    pub fn chunk_hashes(&self) -> impl Iterator<Item = &[u8; 32]> {
        let chunks: &[ChunkRef] = match self {
            StateRef::Inline(_) => &[],
            StateRef::Chunked(m) => &m.chunks,
        };
        chunks.iter().map(|c| &c.hash)
    }
}

/// What a GC pass found and removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub chunks_scanned: u64,
    pub chunks_live: u64,
    pub chunks_removed: u64,
    pub bytes_removed: u64,
}

/// Space used by a store.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreStats {
    pub executions: u64,
    pub checkpoints: u64,
    /// Sum of the checkpoints' state sizes, as the application handed them over.
    pub raw_state_bytes: u64,
    /// State bytes stored inline in checkpoint records.
    pub inline_bytes: u64,
    pub chunks: u64,
    /// Stored (compressed) bytes of all chunks.
    pub chunk_bytes: u64,
    /// Size of the store directory on disk.
    pub disk_bytes: u64,
}

impl Store {
    /// Adds the chunks of `bytes` that the store lacks to `batch`; returns the reference, the
    /// number of bytes this state adds to the store and the state's checksum (blake3 of
    /// `bytes`). The caller holds `gc_lock` shared until the batch is written.
    ///
    /// The chunks are cut, hashed and looked up first; when the ones the store lacks add up to
    /// [`PARALLEL_MIN`] bytes or more and the machine has two cores or more, two threads
    /// compress them: this one the first half, a scoped helper the second half and the
    /// whole-state checksum (`docs/decisions/large-states.md`). A state that is mostly chunks
    /// the store has (one that grew at its end) is done in this thread alone.
    pub fn put_state(
        &self,
        batch: &mut WriteBatch,
        bytes: &[u8],
    ) -> Result<(StateRef, u64, [u8; 32])> {
        let p = &self.inner.blob;
        if bytes.len() <= p.inline_max {
            let sum = *blake3::hash(bytes).as_bytes();
            return Ok((StateRef::Inline(bytes.to_vec()), bytes.len() as u64, sum));
        }
        let c = &p.chunking;
        let level = match c.normalization {
            0 => fastcdc::v2020::Normalization::Level0,
            1 => fastcdc::v2020::Normalization::Level1,
            2 => fastcdc::v2020::Normalization::Level2,
            _ => fastcdc::v2020::Normalization::Level3,
        };
        let cf = self.cf(Cf::Chunks);
        let mut seen = HashSet::new();
        let mut chunks = Vec::new();
        // The chunks to store: (hash, bytes), each once.
        let mut missing: Vec<([u8; 32], &[u8])> = Vec::new();
        for k in fastcdc::v2020::FastCDC::with_level(
            bytes,
            c.min_size as usize,
            c.avg_size as usize,
            c.max_size as usize,
            level,
        ) {
            let data = &bytes[k.offset..k.offset + k.length];
            let hash = *blake3::hash(data).as_bytes();
            chunks.push(ChunkRef {
                hash,
                len: k.length as u32,
            });
            if !seen.insert(hash) {
                continue;
            }
            let exists = self.inner.db.key_may_exist_cf(cf, hash)
                && self
                    .inner
                    .db
                    .get_pinned_cf(cf, hash)
                    .map_err(|e| Error::storage("reading chunks", e))?
                    .is_some();
            if !exists {
                missing.push((hash, data));
            }
        }
        let to_encode: usize = missing.iter().map(|(_, d)| d.len()).sum();
        if p.defer_compression && !missing.is_empty() && self.inner.deferred.has_room(to_encode) {
            // Raw now, compressed once the batch is written (`crate::deferred`).
            let mut stored = 0u64;
            for (hash, data) in &missing {
                let mut v = Vec::with_capacity(data.len() + 1);
                v.push(CHUNK_RAW);
                v.extend_from_slice(data);
                stored += v.len() as u64;
                batch.put_cf(cf, hash, v);
                self.inner.deferred.note_raw(*hash, data.len());
            }
            let sum = *blake3::hash(bytes).as_bytes();
            let manifest = Manifest {
                params: c.clone(),
                chunks,
            };
            return Ok((StateRef::Chunked(manifest), stored, sum));
        }
        let encode = |part: &[([u8; 32], &[u8])]| -> Vec<Vec<u8>> {
            part.iter().map(|(_, d)| encode_chunk(d)).collect()
        };
        let (sum, values) = if to_encode >= PARALLEL_MIN && cores() > 1 && missing.len() > 1 {
            // Split where half of the bytes to compress are behind.
            let mut acc = 0;
            let split = missing
                .iter()
                .position(|(_, d)| {
                    acc += d.len();
                    acc >= to_encode / 2
                })
                .map_or(1, |i| (i + 1).min(missing.len() - 1));
            let (first, second) = missing.split_at(split);
            std::thread::scope(|scope| {
                let helper = scope.spawn(|| (*blake3::hash(bytes).as_bytes(), encode(second)));
                let mut values = encode(first);
                let (sum, theirs) = helper.join().expect("chunk encoder panicked");
                values.extend(theirs);
                (sum, values)
            })
        } else {
            (*blake3::hash(bytes).as_bytes(), encode(&missing))
        };
        let mut stored = 0u64;
        for ((hash, _), v) in missing.iter().zip(values) {
            stored += v.len() as u64;
            batch.put_cf(cf, hash, v);
        }
        Ok((
            StateRef::Chunked(Manifest {
                params: c.clone(),
                chunks,
            }),
            stored,
            sum,
        ))
    }

    /// Reads a checkpoint's state and verifies it against the whole-state checksum (naming the
    /// chunk at fault when it does not match).
    pub fn read_state(&self, checkpoint: &Checkpoint) -> Result<Vec<u8>> {
        let integrity = |detail: String| Error::Integrity {
            checkpoint: checkpoint.id.to_string(),
            execution: checkpoint.execution_id.clone(),
            detail,
        };
        self.read_blob(
            &checkpoint.state,
            &checkpoint.checksum,
            checkpoint.raw_size,
            &integrity,
        )
    }

    /// Reads the bytes of a state reference and verifies them against `checksum`;
    /// `integrity` builds the error naming the record that holds the reference.
    ///
    /// Each byte is hashed once: bytes that match the state's checksum (blake3 of the whole
    /// state, taken when it was written) are the bytes written, whichever chunks they came
    /// from. Only when they do not match are the chunks hashed one by one, to name the one
    /// whose stored bytes are corrupt (or the manifest, when every chunk matches its hash).
    pub fn read_blob(
        &self,
        state: &StateRef,
        checksum: &[u8; 32],
        raw_size: u64,
        integrity: &dyn Fn(String) -> Error,
    ) -> Result<Vec<u8>> {
        let m = match state {
            StateRef::Inline(b) => {
                if blake3::hash(b).as_bytes() != checksum {
                    return Err(integrity("state does not match its blake3 checksum".into()));
                }
                return Ok(b.clone());
            }
            StateRef::Chunked(m) => m,
        };
        let mut out = Vec::with_capacity(raw_size.min(MAX_PREALLOC) as usize);
        for (i, c) in m.chunks.iter().enumerate() {
            let stored = self
                .inner
                .db
                .get_pinned_cf(self.cf(Cf::Chunks), c.hash)
                .map_err(|e| Error::storage("reading chunks", e))?
                .ok_or_else(|| {
                    integrity(format!(
                        "chunk {i} ({}) is missing from the store",
                        crate::hex(&c.hash)
                    ))
                })?;
            decode_chunk_into(&stored, c.len as usize, &mut out).map_err(|d| {
                integrity(format!(
                    "chunk {i} ({}) cannot be decoded: {d}",
                    crate::hex(&c.hash)
                ))
            })?;
        }
        if blake3::hash(&out).as_bytes() == checksum {
            return Ok(out);
        }
        let mut at = 0;
        for (i, c) in m.chunks.iter().enumerate() {
            let data = &out[at..at + c.len as usize];
            at += data.len();
            if blake3::hash(data).as_bytes() != &c.hash {
                return Err(integrity(format!(
                    "chunk {i} ({}) does not match its hash (stored bytes are corrupt)",
                    crate::hex(&c.hash)
                )));
            }
        }
        Err(integrity(
            "state does not match its blake3 checksum (every chunk matches its hash: the \
             manifest is wrong)"
                .into(),
        ))
    }

    /// Keeps `hashes` from GC until the guard is dropped, whether or not anything references
    /// them yet: a pull fetches chunks before the checkpoints that use them are imported.
    pub fn pin_chunks(&self, hashes: &[[u8; 32]]) -> ChunkPins<'_> {
        let mut pins = self.inner.pins.0.lock();
        for h in hashes {
            *pins.entry(*h).or_insert(0) += 1;
        }
        ChunkPins {
            pins: &self.inner.pins,
            hashes: hashes.to_vec(),
        }
    }

    /// Mark and sweep: deletes every chunk that no checkpoint references.
    pub fn gc(&self) -> Result<GcReport> {
        self.require_writer("gc")?;
        // Exclusive: no checkpoint write may be between "chunk exists, skip it" and its commit.
        let _exclusive = self.inner.gc_lock.write();
        let mut live: HashSet<[u8; 32]> = HashSet::new();
        for item in self.scan_prefix(Cf::Checkpoints, &[]) {
            let (k, v) = item?;
            let c: Checkpoint = codec::decode("checkpoint", &|| crate::hex(&k), &v)?;
            live.extend(c.state.chunk_hashes().copied());
        }
        // Channel values and pending writes of framework checkpoints hold chunks too.
        crate::threads::mark_live(self, &mut live)?;
        // And chunks pulls have fetched for checkpoints they have not imported yet.
        live.extend(self.inner.pins.0.lock().keys().copied());
        let mut report = GcReport {
            chunks_live: live.len() as u64,
            ..GcReport::default()
        };
        let mut batch = WriteBatch::default();
        let cf = self.cf(Cf::Chunks);
        for item in self.scan_prefix(Cf::Chunks, &[]) {
            let (k, v) = item?;
            report.chunks_scanned += 1;
            if !live.contains(k.as_ref()) {
                report.chunks_removed += 1;
                report.bytes_removed += v.len() as u64;
                batch.delete_cf(cf, &k);
            }
        }
        let detail = format!(
            "{{\"chunks_removed\":{},\"bytes_removed\":{}}}",
            report.chunks_removed, report.bytes_removed
        );
        self.commit(batch, vec![AuditDraft::new("gc", "store", detail)], None)?;
        Ok(report)
    }

    /// Waits until the chunks that steps stored raw so far are compressed
    /// ([`crate::deferred`]).
    pub fn settle_compression(&self) {
        self.inner.deferred.settle();
    }

    /// Counts executions, checkpoints, raw and stored bytes (once the chunks stored raw so far
    /// are compressed).
    pub fn stats(&self) -> Result<StoreStats> {
        self.settle_compression();
        let mut s = StoreStats::default();
        for item in self.scan_prefix(Cf::Executions, &[]) {
            let (k, _) = item?;
            if k.len() == 16 {
                s.executions += 1;
            }
        }
        for item in self.scan_prefix(Cf::Checkpoints, &[]) {
            let (k, v) = item?;
            let c: Checkpoint = codec::decode("checkpoint", &|| crate::hex(&k), &v)?;
            s.checkpoints += 1;
            s.raw_state_bytes += c.raw_size;
            if let StateRef::Inline(b) = &c.state {
                s.inline_bytes += b.len() as u64;
            }
        }
        for item in self.scan_prefix(Cf::Chunks, &[]) {
            let (_, v) = item?;
            s.chunks += 1;
            s.chunk_bytes += v.len() as u64;
        }
        s.disk_bytes = dir_size(self.path());
        Ok(s)
    }
}

/// Chunks pinned by work in flight, with a count per pinning guard.
#[derive(Default)]
pub struct Pins(parking_lot::Mutex<std::collections::HashMap<[u8; 32], u32>>);

/// Unpins its chunks when dropped.
pub struct ChunkPins<'a> {
    pins: &'a Pins,
    hashes: Vec<[u8; 32]>,
}

impl Drop for ChunkPins<'_> {
    fn drop(&mut self) {
        let mut pins = self.pins.0.lock();
        for h in &self.hashes {
            if let std::collections::hash_map::Entry::Occupied(mut e) = pins.entry(*h) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }
}

/// New chunks of at least this many bytes in one state are compressed by two threads (see
/// [`Store::put_state`]): below it, starting a thread costs more than it saves.
pub const PARALLEL_MIN: usize = 64 * 1024;

fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

thread_local! {
    // zstd contexts are costly to set up (allocation and table zeroing); keep one per thread.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// The bytes of a chunk stored raw; None for a compressed one.
pub(crate) fn raw_chunk(stored: &[u8]) -> Option<&[u8]> {
    match stored.split_first() {
        Some((&CHUNK_RAW, rest)) => Some(rest),
        _ => None,
    }
}

/// A chunk as stored: LZ4 (`docs/decisions/lz4-chunks.md`: it decodes 3.4× faster than zstd
/// level 1 here, and a resume's replay waits on decoding), or raw when that is not smaller.
pub(crate) fn encode_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 1 + lz4::block::compress_bound(data.len()).unwrap_or(0)];
    match lz4::block::compress_to_buffer(data, None, false, &mut out[1..]) {
        Ok(n) if n < data.len() => {
            out[0] = CHUNK_LZ4;
            out.truncate(1 + n);
        }
        // Incompressible (or the encoder failed): store the bytes as they are.
        _ => {
            out.clear();
            out.reserve_exact(data.len() + 1);
            out.push(CHUNK_RAW);
            out.extend_from_slice(data);
        }
    }
    out
}

/// The largest chunk any store may hold (a chunker's `max_size` is far below it). A chunk's
/// length comes from a manifest, which may come from a peer: it is checked against this before
/// anything is allocated for it, and decompression stops at the recorded length.
pub const MAX_CHUNK_BYTES: usize = 16 << 20;

/// A state's bytes are collected into a buffer of its recorded size, up to this much ahead of
/// time (the recorded size may come from a peer; beyond it the buffer grows as chunks arrive).
const MAX_PREALLOC: u64 = 64 << 20;

pub fn decode_chunk(stored: &[u8], len: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    decode_chunk_into(stored, len, &mut out)?;
    Ok(out)
}

/// Decodes a stored chunk of `len` bytes onto the end of `out` (on an error `out` is as it was).
pub fn decode_chunk_into(
    stored: &[u8],
    len: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    if len > MAX_CHUNK_BYTES {
        return Err(format!(
            "its recorded length {len} is over the limit of {MAX_CHUNK_BYTES} bytes"
        ));
    }
    match stored.split_first() {
        Some((&CHUNK_RAW, rest)) if rest.len() != len => Err(format!(
            "it holds {} bytes; its recorded length is {len}",
            rest.len()
        )),
        Some((&CHUNK_RAW, rest)) => {
            out.extend_from_slice(rest);
            Ok(())
        }
        Some((&CHUNK_ZSTD, rest)) => DECOMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
            }
            let d = cell.as_mut().expect("set above");
            let start = out.len();
            out.reserve(len);
            // Decoded after the end, into the spare capacity (at least `len`; a frame that
            // holds more or less is an error below).
            let mut tail = std::io::Cursor::new(&mut *out);
            tail.set_position(start as u64);
            let n = match d.decompress_to_buffer(rest, &mut tail) {
                Ok(n) => n,
                Err(e) => {
                    out.truncate(start);
                    return Err(e.to_string());
                }
            };
            if n != len {
                out.truncate(start);
                return Err(format!(
                    "it decodes to {n} bytes; its recorded length is {len}"
                ));
            }
            Ok(())
        }),
        Some((&CHUNK_LZ4, rest)) => {
            // Into the tail of `out`, exactly `len` bytes long: the decoder writes no further,
            // and a block that holds more or less is an error.
            let start = out.len();
            out.resize(start + len, 0);
            match lz4::block::decompress_to_buffer(rest, Some(len as i32), &mut out[start..]) {
                Ok(n) if n == len => Ok(()),
                Ok(n) => {
                    out.truncate(start);
                    Err(format!(
                        "it decodes to {n} bytes; its recorded length is {len}"
                    ))
                }
                Err(e) => {
                    out.truncate(start);
                    Err(format!("it is not a valid LZ4 block of {len} bytes ({e})"))
                }
            }
        }
        Some((c, _)) => Err(format!("unknown chunk codec {c}")),
        None => Err("empty chunk".into()),
    }
}

/// Total size of the files under `path`.
pub fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_codec_round_trips_and_rejects_garbage() {
        let text = b"hello world ".repeat(1000);
        let enc = encode_chunk(&text);
        assert_eq!(enc[0], CHUNK_LZ4);
        assert!(enc.len() < text.len() / 10);
        assert_eq!(decode_chunk(&enc, text.len()).unwrap(), text);
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let enc = encode_chunk(&random);
        assert_eq!(decode_chunk(&enc, random.len()).unwrap(), random);
        assert!(decode_chunk(&[7, 1, 2], 2)
            .unwrap_err()
            .contains("unknown chunk codec 7"));
    }

    #[test]
    fn zstd_chunks_of_format_2_stores_still_decode() {
        let text = b"an older store's chunk ".repeat(400);
        let mut stored = vec![CHUNK_ZSTD];
        stored.extend_from_slice(&zstd::bulk::compress(&text, 1).unwrap());
        assert_eq!(decode_chunk(&stored, text.len()).unwrap(), text);
        // Decoded after what the buffer holds, as a chunked state's read does.
        let mut out = b"head".to_vec();
        decode_chunk_into(&stored, text.len(), &mut out).unwrap();
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..], &text[..]);
    }

    #[test]
    fn hostile_chunk_lengths_and_bombs_are_refused_before_allocating() {
        // A recorded length of a terabyte: refused, nothing allocated.
        let e = decode_chunk(&[CHUNK_RAW, 1, 2, 3], 1 << 40).unwrap_err();
        assert!(e.contains("over the limit"), "{e}");
        // 64 MiB of zeros compress to a few KiB; a chunk claiming 100 bytes stops there.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        let mut stored = vec![CHUNK_ZSTD];
        stored.extend_from_slice(&bomb);
        assert!(stored.len() < 64 << 10);
        assert!(decode_chunk(&stored, 100).is_err());
        let bomb = encode_chunk(&vec![0u8; 8 << 20]);
        assert_eq!(bomb[0], CHUNK_LZ4);
        assert!(bomb.len() < 64 << 10);
        let e = decode_chunk(&bomb, 100).unwrap_err();
        assert!(e.contains("not a valid LZ4 block of 100 bytes"), "{e}");
        // A raw chunk whose bytes are not its recorded length.
        assert!(decode_chunk(&[CHUNK_RAW, 1, 2, 3], 2)
            .unwrap_err()
            .contains("recorded length is 2"));
    }

    #[test]
    fn a_damaged_lz4_chunk_is_an_error_and_leaves_the_buffer_as_it_was() {
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(200);
        let enc = encode_chunk(&text);
        assert_eq!(enc[0], CHUNK_LZ4);
        let mut out = b"kept".to_vec();
        // Cut short, claiming more bytes than it holds, and claiming fewer.
        for (stored, len) in [
            (&enc[..enc.len() / 2], text.len()),
            (&enc[..], text.len() + 1),
            (&enc[..], text.len() - 1),
        ] {
            assert!(decode_chunk_into(stored, len, &mut out).is_err());
            assert_eq!(out, b"kept");
        }
        // Every byte flipped in turn: an error or some bytes of the right length (the state's
        // checksum then names the checkpoint), never a panic or a read out of bounds.
        for i in 1..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x5a;
            if let Ok(d) = decode_chunk(&bad, text.len()) {
                assert_eq!(d.len(), text.len());
            }
        }
    }

    #[test]
    fn default_sizes_are_powers_of_two() {
        let p = ChunkParams::default();
        for s in [p.min_size, p.avg_size, p.max_size] {
            assert!(s.is_power_of_two());
        }
    }
}
