//! Benchmarks of omium-core, each beside its baseline in the same run on the same machine
//! (design §5): checkpoint create and read against raw RocksDB puts and gets, resume of a
//! 1,000-step execution, and bytes on disk of a 1,000-step conversation against full snapshots.
//!
//! ```sh
//! cargo bench -p omium-core                      # every section (about 5 minutes)
//! cargo bench -p omium-core -- write read        # some sections: write read resume disk parts
//! OMIUM_BENCH_QUICK=1 cargo bench -p omium-core  # a smoke run: budgets / 8, not figures
//! OMIUM_BENCH_DIR=/mnt/ssd cargo bench ...       # where the temporary stores go
//! OMIUM_BENCH_SIZES=1,100 cargo bench ...        # only these state sizes (KiB) in `write`
//! ```
//!
//! A custom harness (a `main` that times loops with `Instant`) rather than criterion: the
//! figures wanted are p50 latency, throughput of 16 threads and ratios to a baseline measured
//! in the same process, which criterion does not give.
//!
//! Every round opens a fresh store (or a fresh plain RocksDB) in a new temporary directory,
//! warms it up, then runs for a fixed time budget. Omium and raw rounds alternate, seven of
//! each; the tables give the median round. The load average is printed before each section:
//! other processes on the machine move the figures.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use omium_core::{BeginOptions, Checkpoint, Durability, NewCheckpoint, OpenOptions, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rocksdb::{Options, WriteOptions, DB};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// States up to this size are stored inline in the checkpoint record (`BlobParams::inline_max`).
const INLINE_MAX: usize = 4096;
const ROUNDS: usize = 7;

/// The figures `OMIUM_BENCH_JSON=FILE` writes (`scripts/bench-all` gathers them).
static SUMMARY: std::sync::Mutex<Vec<(String, serde_json::Value)>> =
    std::sync::Mutex::new(Vec::new());

fn note(key: String, value: serde_json::Value) {
    SUMMARY.lock().expect("summary").push((key, value));
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| filters.is_empty() || filters.iter().any(|f| s.contains(f.as_str()));
    let env = Env::new();
    env.print_machine();
    let t0 = Instant::now();
    if want("write") {
        bench_write(&env);
    }
    if want("read") {
        bench_read(&env);
    }
    if want("resume") {
        bench_resume(&env);
    }
    if want("disk") {
        bench_disk(&env);
    }
    if want("parts") {
        bench_parts(&env);
    }
    println!("\ntotal bench time: {:.0} s", t0.elapsed().as_secs_f64());
    if let Some(path) = std::env::var_os("OMIUM_BENCH_JSON") {
        let figures: serde_json::Map<String, serde_json::Value> =
            SUMMARY.lock().expect("summary").drain(..).collect();
        let doc = serde_json::json!({"quick": env.quick, "figures": figures});
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json"))
            .expect("write OMIUM_BENCH_JSON");
    }
}

// ---------------------------------------------------------------------------------------------
// Environment

struct Env {
    quick: bool,
    base: PathBuf,
    /// `OMIUM_BENCH_SIZES=1,100` (KiB): only these state sizes in the write section.
    sizes: Option<Vec<usize>>,
    /// `OMIUM_BENCH_WRITERS=1` and `OMIUM_BENCH_DURABILITY=buffered`: only these rows of the
    /// write section (to profile one of them).
    writers: Option<Vec<usize>>,
    durabilities: Option<Vec<String>>,
}

impl Env {
    fn new() -> Env {
        let base = std::env::var_os("OMIUM_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).expect("bench directory");
        Env {
            quick: std::env::var_os("OMIUM_BENCH_QUICK").is_some_and(|v| v != "0"),
            base,
            sizes: std::env::var("OMIUM_BENCH_SIZES").ok().map(|v| {
                v.split(',')
                    .filter_map(|k| k.trim().parse::<usize>().ok())
                    .map(|k| k * KIB)
                    .collect()
            }),
            writers: list("OMIUM_BENCH_WRITERS"),
            durabilities: list("OMIUM_BENCH_DURABILITY"),
        }
    }

    fn wants<T: PartialEq + ?Sized, U: std::borrow::Borrow<T>>(
        &self,
        list: &Option<Vec<U>>,
        x: &T,
    ) -> bool {
        list.as_ref()
            .is_none_or(|l| l.iter().any(|v| v.borrow() == x))
    }

    fn wants_size(&self, size: usize) -> bool {
        self.sizes.as_ref().is_none_or(|s| s.contains(&size))
    }

    fn budget(&self, d: Duration) -> Duration {
        if self.quick {
            d / 8
        } else {
            d
        }
    }

    fn tempdir(&self) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("omium-bench-")
            .tempdir_in(&self.base)
            .expect("temporary directory")
    }

    fn print_machine(&self) {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or("unknown", str::trim);
        let (fs, dev) = filesystem_of(&self.base);
        println!("# omium-core benchmarks");
        println!(
            "machine: {cpus} CPUs ({model}); stores in {} on {fs} ({dev}){}",
            self.base.display(),
            if self.quick {
                "; QUICK run: budgets / 8, not figures"
            } else {
                ""
            }
        );
    }
}

/// A comma-separated list from the environment variable `var`, if set.
fn list<T: std::str::FromStr>(var: &str) -> Option<Vec<T>> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
}

/// The filesystem type and device of the mount that holds `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> (String, String) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || !path.starts_with(f[1]) {
            continue;
        }
        if best.as_ref().is_none_or(|b| f[1].len() > b.0) {
            best = Some((f[1].len(), f[2].to_string(), f[0].to_string()));
        }
    }
    best.map_or(("unknown".into(), "unknown".into()), |b| (b.1, b.2))
}

// ---------------------------------------------------------------------------------------------
// Realistic state bytes: JSON-ish agent messages, words with a skewed distribution, numbers,
// ids and tool names, so zstd and FastCDC behave as on real conversations.

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "an",
    "not",
    "have",
    "has",
    "but",
    "they",
    "you",
    "we",
    "will",
    "can",
    "if",
    "their",
    "there",
    "would",
    "should",
    "been",
    "customer",
    "account",
    "balance",
    "payment",
    "invoice",
    "order",
    "shipping",
    "refund",
    "policy",
    "document",
    "verified",
    "identity",
    "address",
    "credit",
    "score",
    "risk",
    "limit",
    "approved",
    "declined",
    "pending",
    "review",
    "agent",
    "tool",
    "search",
    "result",
    "query",
    "database",
    "record",
    "field",
    "value",
    "error",
    "retry",
    "timeout",
    "request",
    "response",
    "summary",
    "analysis",
    "report",
    "quarter",
    "revenue",
    "growth",
    "margin",
    "forecast",
    "contract",
    "clause",
    "liability",
    "termination",
    "renewal",
    "notice",
    "days",
    "months",
    "transaction",
    "merchant",
    "card",
    "fraud",
    "alert",
    "threshold",
    "exceeded",
    "flagged",
    "please",
    "thanks",
    "could",
    "check",
    "confirm",
    "update",
    "status",
    "ticket",
    "escalate",
    "support",
    "team",
    "manager",
    "approval",
    "required",
    "next",
    "step",
    "plan",
    "because",
    "however",
    "therefore",
    "additionally",
    "based",
    "on",
    "previous",
    "message",
    "context",
    "user",
    "asked",
    "about",
    "whether",
    "their",
    "latest",
    "statement",
    "includes",
    "fees",
    "interest",
    "rate",
    "annual",
    "percentage",
    "calculated",
    "daily",
    "compounded",
    "monthly",
    "London",
    "Berlin",
    "Singapore",
    "Toronto",
    "EUR",
    "USD",
    "GBP",
    "JSON",
    "API",
    "SQL",
    "function",
    "called",
    "returned",
    "rows",
    "matching",
    "criteria",
    "filter",
    "date",
    "range",
    "between",
    "and",
    "including",
    "excluding",
    "weekends",
    "holidays",
    "business",
    "hours",
    "latency",
    "p99",
    "service",
    "deployment",
    "rollback",
    "incident",
    "postmortem",
    "root",
    "cause",
    "mitigation",
    "owner",
    "deadline",
    "priority",
    "high",
    "medium",
    "low",
    "critical",
];
const ROLES: &[&str] = &["user", "assistant", "tool", "assistant"];
const TOOLS: &[&str] = &[
    "search_kb",
    "get_account",
    "sql_query",
    "send_email",
    "fetch_url",
    "calc",
];

/// One message of about `target` bytes.
fn message(rng: &mut StdRng, turn: usize, target: usize) -> String {
    let role = ROLES[rng.gen_range(0..ROLES.len())];
    let mut s = String::with_capacity(target + 64);
    let _ = write!(
        s,
        "{{\"role\":\"{role}\",\"turn\":{turn},\"id\":\"msg_{:012x}\",",
        rng.gen::<u64>() >> 16
    );
    if role == "tool" {
        let _ = write!(s, "\"tool\":\"{}\",", TOOLS[rng.gen_range(0..TOOLS.len())]);
    }
    s.push_str("\"content\":\"");
    let mut capital = true;
    while s.len() + 24 < target {
        let r = rng.gen_range(0..100);
        if r < 5 {
            let _ = write!(s, "{} ", rng.gen_range(0..100_000u32));
        } else if r < 7 {
            let _ = write!(s, "#{:08x} ", rng.gen::<u32>());
        } else {
            // Skewed towards the front of the list, as word frequencies are.
            let x: f64 = rng.gen();
            let w = WORDS[((x * x) * WORDS.len() as f64) as usize];
            if capital {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    s.extend(f.to_uppercase());
                    s.push_str(c.as_str());
                }
            } else {
                s.push_str(w);
            }
            capital = rng.gen_range(0..12) == 0;
            s.push_str(if capital { ". " } else { " " });
        }
    }
    let _ = write!(s, "\",\"tokens\":{}}}", rng.gen_range(20..900));
    s
}

/// A state of exactly `size` bytes: `{"step":"0000000000","messages":[...]}`, truncated.
fn document(rng: &mut StdRng, size: usize) -> Vec<u8> {
    let mut s = String::with_capacity(size + 1024);
    s.push_str("{\"step\":\"0000000000\",\"messages\":[");
    let mut turn = 0;
    while s.len() < size {
        if turn > 0 {
            s.push(',');
        }
        let target = rng.gen_range(200..1200);
        s.push_str(&message(rng, turn, target));
        turn += 1;
    }
    let mut b = s.into_bytes();
    b.truncate(size.saturating_sub(2));
    b.extend_from_slice(b"]}");
    b
}

/// Where `document` keeps its step counter.
const STAMP_AT: usize = 9;

/// Writes `n` as ten decimal digits at `at`.
fn stamp(buf: &mut [u8], at: usize, mut n: u64) {
    for i in (0..10).rev() {
        buf[at + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn pool(seed: u64, size: usize, count: usize) -> Vec<Vec<u8>> {
    // Two generator threads; the machine has two cores.
    let halves = [count / 2, count - count / 2];
    std::thread::scope(|s| {
        let hs: Vec<_> = halves
            .iter()
            .enumerate()
            .map(|(h, &n)| {
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed * 2 + h as u64);
                    (0..n).map(|_| document(&mut rng, size)).collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("generator"))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Stores under test

fn open_omium(dir: &Path, durability: Durability) -> Store {
    Store::open_with(
        dir,
        OpenOptions {
            durability,
            ..OpenOptions::default()
        },
    )
    .expect("open omium store")
}

/// The baseline: a plain RocksDB with default options.
fn open_raw(dir: &Path) -> DB {
    let mut o = Options::default();
    o.create_if_missing(true);
    DB::open(&o, dir).expect("open rocksdb")
}

fn raw_write_options(durability: Durability) -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(durability == Durability::Sync);
    wo
}

fn raw_key(thread: usize, i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(thread as u64).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Omium,
    Raw,
}

/// Order of the systems in round `r`: alternate who goes first.
fn order(r: usize) -> [System; 2] {
    if r % 2 == 0 {
        [System::Raw, System::Omium]
    } else {
        [System::Omium, System::Raw]
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

#[derive(Default)]
struct Round {
    ops: u64,
    wall: Duration,
    lat_ns: Vec<u64>,
}

impl Round {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64()
    }

    fn pct(&mut self, p: f64) -> f64 {
        percentile(&mut self.lat_ns, p) as f64 / 1000.0
    }
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median over rounds of throughput, p50 and p99 latency (µs).
struct Summary {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    ops: u64,
}

fn summarize(mut rounds: Vec<Round>) -> Summary {
    Summary {
        rate: median(rounds.iter().map(Round::rate).collect()),
        p50_us: median(rounds.iter_mut().map(|r| r.pct(0.5)).collect()),
        p99_us: median(rounds.iter_mut().map(|r| r.pct(0.99)).collect()),
        ops: rounds.iter().map(|r| r.ops).sum::<u64>() / rounds.len() as u64,
    }
}

/// How step states are made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// Every state is a different document: nothing to deduplicate (the worst case for Omium,
    /// which cuts, hashes and compresses all of it). Inline-sized states are pool documents
    /// stamped with the op number; chunked ones are distinct pool documents, each used once.
    Fresh,
    /// Each state is the previous one with a new counter in its last bytes, as a state that
    /// changes at its end: FastCDC finds every chunk but the last in the store.
    Tail,
}

struct Workload<'a> {
    size: usize,
    shape: Shape,
    docs: &'a [Vec<u8>],
}

impl Workload<'_> {
    /// How many ops a round may do: a chunked fresh document is used once per store.
    fn limit(&self) -> usize {
        if self.shape == Shape::Fresh && self.size > INLINE_MAX {
            self.docs.len()
        } else {
            usize::MAX
        }
    }

    /// The state of op `i` of thread `t`, built (outside the timed part) in `buf` if needed.
    fn state<'b>(&'b self, i: usize, t: usize, buf: &'b mut Vec<u8>) -> &'b [u8] {
        match self.shape {
            Shape::Fresh if self.size > INLINE_MAX => &self.docs[i],
            Shape::Fresh => {
                buf.clear();
                buf.extend_from_slice(&self.docs[i % self.docs.len()]);
                stamp(buf, STAMP_AT, i as u64);
                buf
            }
            Shape::Tail => {
                if buf.is_empty() {
                    buf.extend_from_slice(&self.docs[0]);
                }
                let at = buf.len() - 14;
                stamp(buf, at, (t as u64) << 32 | i as u64);
                buf
            }
        }
    }
}

/// One round of `threads` writers, each on its own execution (or its own key range), in a
/// fresh store: `warmup` ops in total first, then ops until `budget` has passed.
fn write_round(
    env: &Env,
    sys: System,
    durability: Durability,
    threads: usize,
    w: &Workload<'_>,
    warmup: usize,
    budget: Duration,
) -> Round {
    let dir = env.tempdir();
    let omium = (sys == System::Omium).then(|| open_omium(dir.path(), durability));
    let raw = (sys == System::Raw).then(|| open_raw(dir.path()));
    let next = AtomicUsize::new(0);
    let limit = w.limit();
    let barrier = Barrier::new(threads);
    let warm_each = warmup.div_ceil(threads);
    let results: Vec<(Instant, Instant, Vec<u64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (omium, raw, next, barrier) = (&omium, &raw, &next, &barrier);
                s.spawn(move || {
                    let mut buf = Vec::new();
                    let run = omium.as_ref().map(|st| {
                        st.begin(&format!("writer-{t}"), BeginOptions::default())
                            .expect("begin")
                    });
                    let wo = raw_write_options(durability);
                    let put = |i: usize, state: &[u8]| match (&run, raw) {
                        (Some(run), _) => {
                            let seq = run.reserve();
                            let found = run.recorded(seq, "step", None).expect("recorded");
                            assert!(found.is_none());
                            let c = run
                                .record(
                                    seq,
                                    NewCheckpoint {
                                        name: "step",
                                        state,
                                        ..NewCheckpoint::default()
                                    },
                                )
                                .expect("record");
                            black_box(c);
                        }
                        (None, Some(db)) => db
                            .put_opt(raw_key(t, i as u64), state, &wo)
                            .expect("raw put"),
                        _ => unreachable!(),
                    };
                    for _ in 0..warm_each {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= limit {
                            break;
                        }
                        let state = w.state(i, t, &mut buf);
                        put(i, state);
                    }
                    barrier.wait();
                    let start = Instant::now();
                    let deadline = start + budget;
                    let mut lat = Vec::with_capacity(1 << 16);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= limit {
                            break;
                        }
                        let state = w.state(i, t, &mut buf);
                        let t0 = Instant::now();
                        if t0 >= deadline {
                            break;
                        }
                        put(i, state);
                        lat.push(t0.elapsed().as_nanos() as u64);
                    }
                    (start, Instant::now(), lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    let start = results.iter().map(|r| r.0).min().expect("threads");
    let end = results.iter().map(|r| r.1).max().expect("threads");
    let lat_ns: Vec<u64> = results.into_iter().flat_map(|r| r.2).collect();
    drop(omium);
    drop(raw);
    Round {
        ops: lat_ns.len() as u64,
        wall: end - start,
        lat_ns,
    }
}

struct WriteRow {
    size: usize,
    shape: Shape,
    durability: Durability,
    threads: usize,
    raw: Summary,
    omium: Summary,
    /// Omium/raw rate of each pair of adjacent rounds: (median, min, max).
    pairs: (f64, f64, f64),
}

/// Omium/raw rate of each pair of rounds run one after the other: (median, min, max). Pairing
/// cancels most of the drift of a shared machine's background load.
fn paired(om: &[Round], raw: &[Round]) -> (f64, f64, f64) {
    let q: Vec<f64> = om
        .iter()
        .zip(raw)
        .map(|(o, r)| o.rate() / r.rate())
        .collect();
    let min = q.iter().copied().fold(f64::MAX, f64::min);
    let max = q.iter().copied().fold(0.0, f64::max);
    (median(q), min, max)
}

fn size_name(size: usize) -> String {
    if size >= MIB {
        format!("{} MiB", size / MIB)
    } else {
        format!("{} KiB", size / KIB)
    }
}

fn bench_write(env: &Env) {
    println!("\n## 1. Checkpoint create (Run::reserve + recorded + record) vs raw RocksDB put\n");
    load();
    let budget = env.budget(Duration::from_millis(700));
    // (size, pool documents, warm-up ops): chunked fresh states need one document per op.
    let sizes = [(KIB, 4096, 2000), (100 * KIB, 3000, 64), (MIB, 320, 16)];
    let mut rows = Vec::new();
    for &(size, count, warmup) in sizes.iter().filter(|s| env.wants_size(s.0)) {
        let t = Instant::now();
        let docs = pool(size as u64, size, if env.quick { count / 8 } else { count });
        let ratio = zstd_ratio(&docs[..docs.len().min(8)]);
        eprintln!(
            "generated {} documents of {} in {:.1} s (zstd -3 ratio of this text: {ratio:.2}x)",
            docs.len(),
            size_name(size),
            t.elapsed().as_secs_f64()
        );
        let shapes: &[Shape] = if size > INLINE_MAX {
            &[Shape::Fresh, Shape::Tail]
        } else {
            &[Shape::Fresh]
        };
        for &shape in shapes {
            let w = Workload {
                size,
                shape,
                docs: &docs,
            };
            for durability in [Durability::Buffered, Durability::Sync]
                .into_iter()
                .filter(|d| env.wants(&env.durabilities, d.as_str()))
            {
                for threads in [1, 16].into_iter().filter(|t| env.wants(&env.writers, t)) {
                    let mut raw = Vec::new();
                    let mut om = Vec::new();
                    for r in 0..ROUNDS {
                        for sys in order(r) {
                            let round =
                                write_round(env, sys, durability, threads, &w, warmup, budget);
                            match sys {
                                System::Raw => raw.push(round),
                                System::Omium => om.push(round),
                            }
                        }
                    }
                    let row = WriteRow {
                        size,
                        shape,
                        durability,
                        threads,
                        pairs: paired(&om, &raw),
                        raw: summarize(raw),
                        omium: summarize(om),
                    };
                    eprintln!(
                        "  {} {:?} {} x{}: omium {:.0}/s p50 {:.1} µs, raw {:.0}/s p50 {:.1} µs ({} ops)",
                        size_name(size),
                        shape,
                        durability.as_str(),
                        threads,
                        row.omium.rate,
                        row.omium.p50_us,
                        row.raw.rate,
                        row.raw.p50_us,
                        row.omium.ops
                    );
                    rows.push(row);
                }
            }
        }
    }
    println!(
        "| state | shape | durability | writers | Omium p50 µs | raw p50 µs | Omium p99 µs | raw p99 µs | Omium ops/s | raw ops/s | Omium/raw rate (range over {ROUNDS} round pairs) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} ({:.2}–{:.2}) |",
            size_name(r.size),
            match r.shape {
                Shape::Fresh => "fresh",
                Shape::Tail => "tail",
            },
            r.durability.as_str(),
            r.threads,
            r.omium.p50_us,
            r.raw.p50_us,
            r.omium.p99_us,
            r.raw.p99_us,
            r.omium.rate,
            r.raw.rate,
            r.pairs.0,
            r.pairs.1,
            r.pairs.2
        );
        note(
            format!(
                "write/{}/{}/{}/{}",
                size_name(r.size),
                match r.shape {
                    Shape::Fresh => "fresh",
                    Shape::Tail => "tail",
                },
                r.durability.as_str(),
                r.threads
            ),
            serde_json::json!({
                "omium_ops_per_s": r.omium.rate, "raw_ops_per_s": r.raw.rate,
                "omium_p50_us": r.omium.p50_us, "raw_p50_us": r.raw.p50_us,
                "omium_p99_us": r.omium.p99_us, "raw_p99_us": r.raw.p99_us,
                "ratio": r.pairs.0, "ratio_min": r.pairs.1, "ratio_max": r.pairs.2,
            }),
        );
    }
    println!("\nTargets (design §5):\n");
    let find = |size, shape, d, threads| {
        rows.iter().find(|r: &&WriteRow| {
            r.size == size && r.shape == shape && r.durability == d && r.threads == threads
        })
    };
    if let Some(r) = find(KIB, Shape::Fresh, Durability::Buffered, 1) {
        verdict(
            "1 KiB buffered, p50 <= 5 µs",
            format!("{:.2} µs", r.omium.p50_us),
            r.omium.p50_us <= 5.0,
        );
        let q = r.pairs.0;
        verdict(
            "1 KiB buffered, >= 50% of raw unsynced put rate",
            format!("{:.1}%", q * 100.0),
            q >= 0.5,
        );
    }
    for &(size, _, _) in &sizes {
        for shape in [Shape::Fresh, Shape::Tail] {
            if let Some(r) = find(size, shape, Durability::Sync, 1) {
                let q = r.pairs.0;
                verdict(
                    &format!(
                        "{} {shape:?} sync 1 writer, >= 90% of raw synced put rate",
                        size_name(size)
                    ),
                    format!(
                        "{:.1}% (pairs {:.0}–{:.0}%; p50 latency raw/Omium {:.0}%)",
                        q * 100.0,
                        r.pairs.1 * 100.0,
                        r.pairs.2 * 100.0,
                        r.raw.p50_us / r.omium.p50_us * 100.0
                    ),
                    q >= 0.9,
                );
            }
            if let (Some(one), Some(many)) = (
                find(size, shape, Durability::Sync, 1),
                find(size, shape, Durability::Sync, 16),
            ) {
                let q = many.omium.rate / one.omium.rate;
                verdict(
                    &format!(
                        "{} {shape:?} sync 16 writers, >= 4x the one-writer rate",
                        size_name(size)
                    ),
                    format!(
                        "{q:.1}x (raw RocksDB: {:.1}x)",
                        many.raw.rate / one.raw.rate
                    ),
                    q >= 4.0,
                );
            }
        }
    }
}

/// Prints the load average, so that a reader can tell a quiet machine from a busy one.
fn load() {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let l: Vec<&str> = l.split_whitespace().take(3).collect();
    println!("(load average before this section: {})\n", l.join(" "));
}

fn verdict(what: &str, got: String, met: bool) {
    println!("- {what}: {got} — {}", if met { "met" } else { "NOT met" });
}

fn zstd_ratio(docs: &[Vec<u8>]) -> f64 {
    let raw: usize = docs.iter().map(Vec::len).sum();
    let z: usize = docs
        .iter()
        .map(|d| zstd::bulk::compress(d, 3).expect("zstd").len())
        .sum();
    raw as f64 / z as f64
}

// ---------------------------------------------------------------------------------------------
// 2. Reads

fn bench_read(env: &Env) {
    println!(
        "\n## 2. Read a checkpoint's state (verified) vs raw RocksDB get\n\n`read_state`: `Store::read_state(&checkpoint)` with the `Checkpoint` in hand (an inline state\nis then already in memory); by id: `Store::checkpoint(id)` then `read_state`.\n"
    );
    load();
    let budget = env.budget(Duration::from_millis(500));
    println!(
        "| state | checkpoints | `read_state` p50 µs | by id p50 µs | raw get p50 µs | `read_state`/s | by id/s | raw gets/s | `read_state`/raw rate | by id/raw rate |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (size, count) in [(KIB, 4096), (100 * KIB, 512), (MIB, 64)] {
        let distinct = if size > INLINE_MAX { count } else { 256 };
        let docs = pool(1000 + size as u64, size, distinct);
        let states: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let mut d = docs[i % docs.len()].clone();
                stamp(&mut d, STAMP_AT, i as u64);
                d
            })
            .collect();
        drop(docs);
        let odir = env.tempdir();
        let rdir = env.tempdir();
        let store = open_omium(odir.path(), Durability::Buffered);
        let checkpoints: Vec<Checkpoint> = {
            let run = store
                .begin("reader", BeginOptions::default())
                .expect("begin");
            states
                .iter()
                .map(|s| {
                    run.record(
                        run.reserve(),
                        NewCheckpoint {
                            name: "step",
                            state: s,
                            ..NewCheckpoint::default()
                        },
                    )
                    .expect("record")
                })
                .collect()
        };
        store.flush().expect("flush");
        let db = open_raw(rdir.path());
        for (i, s) in states.iter().enumerate() {
            db.put(raw_key(0, i as u64), s).expect("put");
        }
        db.flush().expect("flush");
        assert_eq!(store.read_state(&checkpoints[7]).expect("read"), states[7]);
        assert_eq!(
            db.get(raw_key(0, 7)).expect("get").as_deref(),
            Some(&states[7][..])
        );
        let ids: Vec<String> = checkpoints.iter().map(|c| c.id.to_string()).collect();
        // One read of entry `i`: the verified state from a `Checkpoint` in hand, the same
        // after looking the checkpoint up by id, or a raw get.
        let read = |mode: usize, i: usize| -> usize {
            match mode {
                0 => db
                    .get(raw_key(0, i as u64))
                    .expect("get")
                    .map_or(0, |v| v.len()),
                1 => store.read_state(&checkpoints[i]).expect("read").len(),
                _ => {
                    let c = store.checkpoint(&ids[i]).expect("checkpoint");
                    store.read_state(&c).expect("read").len()
                }
            }
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut read_round = |mode: usize| {
            // Untimed warm-up pass over every entry, then random reads for the budget.
            for i in 0..count {
                assert_eq!(black_box(read(mode, i)), size);
            }
            let mut lat = Vec::new();
            let start = Instant::now();
            let deadline = start + budget;
            loop {
                let i = rng.gen_range(0..count);
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                let n = read(mode, i);
                lat.push(t0.elapsed().as_nanos() as u64);
                assert_eq!(black_box(n), size);
            }
            Round {
                ops: lat.len() as u64,
                wall: start.elapsed(),
                lat_ns: lat,
            }
        };
        let mut rounds: [Vec<Round>; 3] = Default::default();
        for r in 0..ROUNDS {
            for k in 0..3 {
                let mode = (r + k) % 3;
                rounds[mode].push(read_round(mode));
            }
        }
        let pairs = paired(&rounds[1], &rounds[0]);
        let pairs_id = paired(&rounds[2], &rounds[0]);
        let [raw, om, by_id] = rounds.map(summarize);
        println!(
            "| {} | {count} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
            size_name(size),
            om.p50_us,
            by_id.p50_us,
            raw.p50_us,
            om.rate,
            by_id.rate,
            raw.rate,
            pairs.0,
            pairs_id.0,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Resume

const STEP_NAMES: &[&str] = &["plan", "llm_call", "tool_call", "reflect"];

fn bench_resume(env: &Env) {
    println!("\n## 3. Resume an execution with 1,000 recorded steps (sync store, reopened before each run)\n");
    load();
    let runs = if env.quick { 3 } else { 15 };
    println!(
        "| step result | begin → first live step, p50 ms | min ms | max ms | begin p50 ms | replay p50 ms | per replayed step µs | `history()` ms | begin of a new execution ms | ≤ 20 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for size in [KIB, 16 * KIB] {
        let dir = env.tempdir();
        let results = pool(2000 + size as u64, size, 1000);
        {
            let store = open_omium(dir.path(), Durability::Sync);
            let run = store
                .begin(
                    "resume-me",
                    BeginOptions {
                        durability: Some(Durability::Buffered),
                        ..BeginOptions::default()
                    },
                )
                .expect("begin");
            for (i, r) in results.iter().enumerate() {
                let name = STEP_NAMES[i % STEP_NAMES.len()];
                run.step(name, || Ok::<_, omium_core::Error>(r.clone()))
                    .expect("step");
            }
            // Dropped without complete(): as if the process died after step 1,000.
        }
        let (mut begin_ms, mut replay_ms, mut total_ms, mut history_ms, mut fresh_ms) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in 0..runs + 2 {
            let store = open_omium(dir.path(), Durability::Sync);
            let t0 = Instant::now();
            let run = store
                .begin("resume-me", BeginOptions::default())
                .expect("begin");
            let t1 = Instant::now();
            for i in 0..1000 {
                let name = STEP_NAMES[i % STEP_NAMES.len()];
                let out = run
                    .step(name, || -> Result<Vec<u8>, omium_core::Error> {
                        panic!("step {i} ran again instead of replaying")
                    })
                    .expect("replay");
                black_box(out);
            }
            let seq = run.reserve();
            assert!(run.recorded(seq, "live", None).expect("recorded").is_none());
            let t2 = Instant::now();
            drop(run);
            // For the analysis: the checkpoint scan that begin does, and the begin of a new
            // execution (one synced write, nothing to load).
            let t3 = Instant::now();
            assert_eq!(store.history("resume-me").expect("history").len(), 1000);
            let t4 = Instant::now();
            let fresh = store
                .begin(&format!("fresh-{k}"), BeginOptions::default())
                .expect("begin");
            let t5 = Instant::now();
            drop(fresh);
            if k >= 2 {
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                begin_ms.push(ms(t1 - t0));
                replay_ms.push(ms(t2 - t1));
                total_ms.push(ms(t2 - t0));
                history_ms.push(ms(t4 - t3));
                fresh_ms.push(ms(t5 - t4));
            }
            drop(store);
        }
        let p50 = median(total_ms.clone());
        let min = total_ms.iter().copied().fold(f64::MAX, f64::min);
        let max = total_ms.iter().copied().fold(0.0, f64::max);
        let replay = median(replay_ms);
        println!(
            "| {} | {p50:.2} | {min:.2} | {max:.2} | {:.2} | {replay:.2} | {:.1} | {:.2} | {:.2} | {} |",
            size_name(size),
            median(begin_ms),
            replay * 1e3 / 1000.0,
            median(history_ms),
            median(fresh_ms),
            if p50 <= 20.0 { "met" } else { "NOT met" }
        );
        note(
            format!("resume/{}", size_name(size)),
            serde_json::json!({"p50_ms": p50, "min_ms": min, "max_ms": max, "replay_ms": replay}),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Bytes on disk

fn bench_disk(env: &Env) {
    println!("\n## 4. Bytes on disk: a 1,000-step conversation, one ~500-byte message appended per step\n");
    load();
    let dir = env.tempdir();
    let store = open_omium(dir.path(), Durability::Buffered);
    let run = store
        .begin("conversation", BeginOptions::default())
        .expect("begin");
    let mut rng = StdRng::seed_from_u64(42);
    let mut body = String::new();
    let (mut raw_total, mut zstd_total, mut last_len) = (0u64, 0u64, 0usize);
    let t = Instant::now();
    for step in 0..1000 {
        if step > 0 {
            body.push(',');
        }
        let target = rng.gen_range(350..650);
        body.push_str(&message(&mut rng, step, target));
        let state = format!("{{\"conversation\":\"conv-42\",\"messages\":[{body}]}}");
        raw_total += state.len() as u64;
        zstd_total += zstd::bulk::compress(state.as_bytes(), 3)
            .expect("zstd")
            .len() as u64;
        last_len = state.len();
        run.step(STEP_NAMES[step % STEP_NAMES.len()], || {
            Ok::<_, omium_core::Error>(state.into_bytes())
        })
        .expect("step");
    }
    let write_s = t.elapsed().as_secs_f64();
    drop(run);
    store.flush().expect("flush");
    let stats = store.stats().expect("stats");
    let dir_bytes = omium_core::blob::dir_size(store.path());
    let cas = stats.chunk_bytes + stats.inline_bytes;
    let mib = |b: u64| b as f64 / MIB as f64;
    println!(
        "final state {:.0} KiB; 1,000 steps recorded in {write_s:.1} s (buffered); {} chunks\n",
        last_len as f64 / KIB as f64,
        stats.chunks
    );
    println!("| storage | bytes | MiB | zstd full snapshots / this |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, b: u64| {
        println!(
            "| {name} | {b} | {:.2} | {:.1}x |",
            mib(b),
            zstd_total as f64 / b as f64
        );
    };
    row("raw full snapshots (sum of state sizes)", raw_total);
    row("zstd -3 full snapshots (sum)", zstd_total);
    row("Omium chunk + inline bytes (`Store::stats`)", cas);
    row("Omium store directory after `Store::flush`", dir_bytes);
    let q = zstd_total as f64 / cas as f64;
    let qd = zstd_total as f64 / dir_bytes as f64;
    println!();
    verdict(
        ">= 10x smaller than zstd full snapshots (chunk + inline bytes)",
        format!("{q:.1}x"),
        q >= 10.0,
    );
    verdict(
        ">= 10x smaller than zstd full snapshots (whole directory)",
        format!("{qd:.1}x"),
        qd >= 10.0,
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Where the time of a chunked state goes: the primitives of `blob.rs` on the same bytes.

fn bench_parts(env: &Env) {
    println!("\n## 5. Primitives of the chunked write and read path, per MiB of fresh state\n");
    load();
    let doc = pool(5000, MIB, 1).pop().expect("one document");
    let chunks: Vec<(usize, usize)> = fastcdc::v2020::FastCDC::with_level(
        &doc,
        2048,
        8192,
        65536,
        fastcdc::v2020::Normalization::Level1,
    )
    .map(|c| (c.offset, c.length))
    .collect();
    let pieces: Vec<&[u8]> = chunks.iter().map(|&(o, l)| &doc[o..o + l]).collect();
    let compressed: Vec<Vec<u8>> = pieces
        .iter()
        .map(|p| zstd::bulk::compress(p, 3).expect("zstd"))
        .collect();
    let reps = if env.quick { 3 } else { 20 };
    let time = |f: &mut dyn FnMut()| {
        f();
        let mut v: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut rows: Vec<(&str, f64)> = Vec::new();
    rows.push((
        "FastCDC cut (min 2 KiB, avg 8 KiB, max 64 KiB)",
        time(&mut || {
            black_box(
                fastcdc::v2020::FastCDC::with_level(
                    &doc,
                    2048,
                    8192,
                    65536,
                    fastcdc::v2020::Normalization::Level1,
                )
                .count(),
            );
        }),
    ));
    rows.push((
        "blake3 of every chunk",
        time(&mut || {
            for p in &pieces {
                black_box(blake3::hash(p));
            }
        }),
    ));
    rows.push((
        "blake3 of the whole state (the checkpoint checksum)",
        time(&mut || {
            black_box(blake3::hash(&doc));
        }),
    ));
    rows.push((
        "zstd -3, `stream::copy_encode` per chunk (as `blob.rs` did first)",
        time(&mut || {
            for p in &pieces {
                let mut out = Vec::with_capacity(p.len() / 2 + 16);
                zstd::stream::copy_encode(*p, &mut out, 3).expect("zstd");
                black_box(out);
            }
        }),
    ));
    rows.push((
        "zstd -3, `bulk::compress` per chunk (source size known)",
        time(&mut || {
            for p in &pieces {
                black_box(zstd::bulk::compress(p, 3).expect("zstd"));
            }
        }),
    ));
    let mut cctx = zstd::bulk::Compressor::new(3).expect("zstd");
    rows.push((
        "zstd -3, one reused `bulk::Compressor`",
        time(&mut || {
            for p in &pieces {
                black_box(cctx.compress(p).expect("zstd"));
            }
        }),
    ));
    rows.push((
        "zstd decompress, `bulk::decompress` per chunk (as `blob.rs` did first)",
        time(&mut || {
            for (c, p) in compressed.iter().zip(&pieces) {
                black_box(zstd::bulk::decompress(c, p.len()).expect("zstd"));
            }
        }),
    ));
    let mut dctx = zstd::bulk::Decompressor::new().expect("zstd");
    rows.push((
        "zstd decompress, one reused `bulk::Decompressor`",
        time(&mut || {
            for (c, p) in compressed.iter().zip(&pieces) {
                black_box(dctx.decompress(c, p.len()).expect("zstd"));
            }
        }),
    ));
    println!(
        "{} chunks; zstd -3 of the chunks one by one: ratio {:.2}x\n",
        pieces.len(),
        doc.len() as f64 / compressed.iter().map(Vec::len).sum::<usize>() as f64
    );
    println!("| operation on 1 MiB | µs (median of {reps}) | MB/s |");
    println!("|---|---:|---:|");
    for (name, us) in rows {
        println!("| {name} | {us:.0} | {:.0} |", MIB as f64 / us);
    }

    // The chunk codec is chosen from this table (zstd 1 until format 3, LZ4 since): the time per
    // MiB to compress and to decode against the bytes stored.
    println!(
        "\nChunk codecs, the chunks one by one (zstd: one reused `bulk::Compressor` per level):\n"
    );
    println!("| zstd level or LZ4 | compress µs per MiB | MB/s | ratio | decompress MB/s |");
    println!("|---:|---:|---:|---:|---:|");
    for level in [-5, -1, 1, 2, 3] {
        let mut cctx = zstd::bulk::Compressor::new(level).expect("zstd");
        let out: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| cctx.compress(p).expect("zstd"))
            .collect();
        let us = time(&mut || {
            for p in &pieces {
                black_box(cctx.compress(p).expect("zstd"));
            }
        });
        let dus = time(&mut || {
            for (c, p) in out.iter().zip(&pieces) {
                black_box(dctx.decompress(c, p.len()).expect("zstd"));
            }
        });
        let ratio = doc.len() as f64 / out.iter().map(Vec::len).sum::<usize>() as f64;
        println!(
            "| {level} | {us:.0} | {:.0} | {ratio:.2} | {:.0} |",
            MIB as f64 / us,
            MIB as f64 / dus
        );
    }

    // The chunk codec (`docs/decisions/lz4-chunks.md`): LZ4 against zstd -1 above, the same
    // chunks one by one, decoded into a buffer of the recorded length as `blob.rs` does; LZ4's
    // high-compression modes decode as fast and compress slower.
    let mut buf = vec![0u8; 1 << 16];
    let modes = [
        ("LZ4 (default, as `blob.rs` does)", None),
        (
            "LZ4 HC 3",
            Some(lz4::block::CompressionMode::HIGHCOMPRESSION(3)),
        ),
        (
            "LZ4 HC 9",
            Some(lz4::block::CompressionMode::HIGHCOMPRESSION(9)),
        ),
    ];
    for (name, mode) in modes {
        let out: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| lz4::block::compress(p, mode, false).expect("lz4"))
            .collect();
        let us = time(&mut || {
            for p in &pieces {
                black_box(lz4::block::compress(p, mode, false).expect("lz4"));
            }
        });
        let dus = time(&mut || {
            for (c, p) in out.iter().zip(&pieces) {
                let n =
                    lz4::block::decompress_to_buffer(c, Some(p.len() as i32), &mut buf[..p.len()]);
                black_box(n.expect("lz4"));
            }
        });
        let ratio = doc.len() as f64 / out.iter().map(Vec::len).sum::<usize>() as f64;
        println!(
            "| {name} | {us:.0} | {:.0} | {ratio:.2} | {:.0} |",
            MIB as f64 / us,
            MIB as f64 / dus
        );
    }
}
