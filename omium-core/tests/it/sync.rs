//! Remote sync against a real 3-node cluster on 127.0.0.1 (nodes in this process, each with
//! its own store, talking HTTP/2): push, pull, conflicts by lease and by branch, the chunk set
//! difference, and a node stopped while a store pushes.

use std::time::{Duration, Instant};

use omium_core::consensus::{ClusterStatus, Node};
use omium_core::sync::{RemoteDurability, SyncConfig};
use omium_core::{BeginOptions, Error, Store};

use crate::common;
use omium_core::prelude::*;

struct Cluster {
    nodes: Vec<Option<Node>>,
    addrs: Vec<String>,
    inner: common::Nodes,
}

fn cluster() -> Cluster {
    let inner = common::Nodes::new(3);
    let nodes = inner.three();
    let addrs = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().addr().to_string())
        .collect();
    Cluster {
        nodes,
        addrs,
        inner,
    }
}

fn config(c: &Cluster, durability: RemoteDurability) -> SyncConfig {
    SyncConfig {
        nodes: c.addrs.clone(),
        durability,
        claim: Duration::from_secs(5),
        ..SyncConfig::default()
    }
}

fn begin(store: &Store, id: &str, lease: Duration) -> omium_core::Run {
    store
        .begin(
            id,
            BeginOptions {
                workflow: "sync-test".into(),
                input: Some(b"the input".to_vec()),
                lease_ttl: lease,
                ..BeginOptions::default()
            },
        )
        .unwrap()
}

/// A state large enough to be chunked (the inline limit is 4 KiB), different per `seed`.
fn big(seed: u8) -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect()
}

#[test]
fn a_run_pushed_from_one_store_is_pulled_and_finished_on_another_and_conflicts_are_refused() {
    let c = cluster();
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = Store::open(a_dir.path()).unwrap();
    let b = Store::open(b_dir.path()).unwrap();
    let sa = a.attach_sync(config(&c, RemoteDurability::Sync)).unwrap();
    let sb = b
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    assert_ne!(sa.store_id(), sb.store_id());

    // Store A runs two steps; with remote durability "sync" each is in the cluster when the
    // step returns. Then A "dies": its run is dropped without finishing. Its lease is long
    // enough that B's first pull surely comes before it ends, even on a loaded machine.
    let run = begin(&a, "e1", Duration::from_secs(5));
    run.step("fetch", || Ok::<_, Error>(big(1))).unwrap();
    run.step("score", || Ok::<_, Error>(b"712".to_vec()))
        .unwrap();
    let after_two = sa.report();
    assert_eq!(after_two.checkpoints_pushed, 2, "{after_two:?}");
    assert!(after_two.chunks_sent > 5, "{after_two:?}");
    drop(run);

    // While A's lease lasts, B may not take it over.
    let e = sb.pull("e1").unwrap_err();
    assert_eq!(e.code(), "execution_leased", "{e}");
    assert!(e.to_string().contains(sa.store_id()), "{e}");

    // Then B pulls it (once A's lease has run out), and a run on B replays A's steps and
    // continues.
    let deadline = Instant::now() + Duration::from_secs(60);
    let pulled = loop {
        match sb.pull("e1") {
            Ok(pulled) => break pulled,
            Err(e) if e.code() == "execution_leased" && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("B could not take e1 over: {e}"),
        }
    };
    assert_eq!(pulled.checkpoint_count, 2);
    assert_eq!(b.execution_input("e1").unwrap().unwrap(), b"the input");
    assert!(b.verify(Some("e1")).unwrap().ok());
    assert!(b.resumable().unwrap().iter().any(|e| e.id == "e1"));
    let run = begin(&b, "e1", Duration::from_secs(30));
    let mut ran = Vec::new();
    let fetched = run
        .step("fetch", || {
            ran.push("fetch");
            Ok::<_, Error>(Vec::new())
        })
        .unwrap();
    assert_eq!(fetched, big(1));
    run.step("score", || {
        ran.push("score");
        Ok::<_, Error>(Vec::new())
    })
    .unwrap();
    run.step("offer", || {
        ran.push("offer");
        Ok::<_, Error>(b"yes".to_vec())
    })
    .unwrap();
    run.complete(Some(b"done")).unwrap();
    drop(run);
    assert_eq!(ran, vec!["offer"], "finished steps must not run twice");
    sb.flush(None, Duration::from_secs(10)).unwrap();

    // A comes back and continues: B took the execution over since A held it, so A's next
    // step body does not run (fenced by the epoch), and nothing is merged.
    let run = begin(&a, "e1", Duration::from_secs(30));
    run.step("fetch", || Ok::<_, Error>(Vec::new())).unwrap();
    run.step("score", || Ok::<_, Error>(Vec::new())).unwrap();
    let mut late_ran = false;
    let e = run
        .step("late", || {
            late_ran = true;
            Ok::<_, Error>(b"from A".to_vec())
        })
        .unwrap_err();
    assert_eq!(e.code(), "lease_lost", "{e}");
    assert!(!late_ran, "the body ran after the execution was taken over");
    assert!(e.to_string().contains(sb.store_id()), "{e}");
    assert!(sa.report().conflicts.contains_key("e1"));
    drop(run);
    let remote = sb
        .remote_executions()
        .unwrap()
        .into_iter()
        .find(|s| s.execution.id == "e1")
        .unwrap();
    assert_eq!(remote.execution.checkpoint_count, 3);
    assert_eq!(remote.meta.owner, sb.store_id());
    assert_eq!(remote.execution.status, omium_core::Status::Completed);

    // A third store sees B's result, output included.
    let d_dir = tempfile::tempdir().unwrap();
    let d = Store::open(d_dir.path()).unwrap();
    let sd = d
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    sd.pull("e1").unwrap();
    assert_eq!(d.execution_output("e1").unwrap().unwrap(), b"done");
    // The pull itself is not pushed back as a branch of D's own.
    sd.flush(None, Duration::from_secs(10)).unwrap();
    assert!(sd.report().conflicts.is_empty(), "{:?}", sd.report());
    assert_eq!(
        d.history("e1")
            .unwrap()
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        vec!["fetch", "score", "offer"]
    );
    // A store that continued the execution on a branch of its own, without syncing, is
    // refused by branch when it pushes; pulling into it is refused too (its unpushed
    // checkpoints would be lost).
    let f_dir = tempfile::tempdir().unwrap();
    let f = Store::open(f_dir.path()).unwrap();
    let run = begin(&f, "e1", Duration::from_secs(30));
    run.step("other", || Ok::<_, Error>(b"from F".to_vec()))
        .unwrap();
    drop(run);
    let sf = f
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    let e = sf.flush(Some("e1"), Duration::from_secs(30)).unwrap_err();
    assert_eq!(e.code(), "sync_conflict", "{e}");
    assert!(e.to_string().contains(sb.store_id()), "{e}");
    let e = sf.pull("e1").unwrap_err();
    assert_eq!(e.code(), "sync_conflict", "{e}");
    // And a run there stops before its next body: the cluster holds another branch.
    let run = begin(&f, "e1", Duration::from_secs(30));
    run.step("other", || Ok::<_, Error>(Vec::new())).unwrap();
    let e = run
        .step("more", || -> Result<Vec<u8>, Error> {
            panic!("a body ran on a refused branch")
        })
        .unwrap_err();
    assert_eq!(e.code(), "sync_conflict", "{e}");
    drop(run);

    // The same state in another execution sends no chunk again (content addresses).
    let before = sa.report();
    let run = begin(&a, "e2", Duration::from_secs(30));
    run.step("fetch", || Ok::<_, Error>(big(1))).unwrap();
    run.complete(None).unwrap();
    let after = sa.report();
    assert_eq!(after.chunks_sent, before.chunks_sent, "{after:?}");
    assert!(after.chunks_skipped >= after_two.chunks_sent, "{after:?}");
    drop(c);
}

/// The worker that held an execution stalls (a long pause, a partition) past its lease; another
/// store takes the execution over and goes on. When the first worker wakes up, its next step
/// body must not run: every step body runs once in all.
#[test]
fn a_worker_whose_execution_was_taken_over_stops_before_its_next_step_body() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let c = cluster();
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = Store::open(a_dir.path()).unwrap();
    let b = Store::open(b_dir.path()).unwrap();
    let sa = a
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    let sb = b
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    let bodies: std::collections::BTreeMap<&str, AtomicU32> = ["plan", "check", "charge", "ship"]
        .into_iter()
        .map(|n| (n, AtomicU32::new(0)))
        .collect();
    let step = |run: &omium_core::Run, name: &str| {
        run.step(name, || {
            bodies[name].fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(name.as_bytes().to_vec())
        })
    };
    let abandoned = |s: &omium_core::sync::Syncer| {
        s.abandoned()
            .unwrap()
            .iter()
            .any(|e| e.execution.id == "job")
    };
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let run_a = begin(&a, "job", Duration::from_millis(1500));
    step(&run_a, "plan").unwrap();
    sa.flush(None, Duration::from_secs(30)).unwrap();

    // A idles past its lease; nobody takes the job over: A's next body renews its hold (with
    // the epoch it was given) and runs.
    wait_for("A's lease to run out in the cluster", &|| abandoned(&sb));
    step(&run_a, "check").unwrap();
    assert_eq!(bodies["check"].load(Ordering::SeqCst), 1);
    sa.flush(None, Duration::from_secs(30)).unwrap();
    let held = sb.remote_executions().unwrap();
    let job = held.iter().find(|e| e.execution.id == "job").unwrap();
    assert_eq!(job.meta.owner, sa.store_id());
    assert_eq!(job.epoch, 1);

    // A stalls again; this time B takes the job over and goes on.
    wait_for("A's lease to run out again", &|| abandoned(&sb));
    sb.pull("job").unwrap();
    let run_b = begin(&b, "job", Duration::from_secs(30));
    step(&run_b, "plan").unwrap();
    step(&run_b, "check").unwrap();
    step(&run_b, "charge").unwrap();
    sb.flush(None, Duration::from_secs(30)).unwrap();

    // A wakes up: its next bodies do not run.
    for name in ["charge", "ship"] {
        let e = step(&run_a, name).unwrap_err();
        assert_eq!(e.code(), "lease_lost", "{e}");
        assert!(e.to_string().contains(sb.store_id()), "{e}");
        assert!(e.to_string().contains("epoch 2"), "{e}");
    }
    drop(run_a);
    step(&run_b, "ship").unwrap();
    run_b.complete(None).unwrap();
    sb.flush(None, Duration::from_secs(30)).unwrap();
    for (name, n) in &bodies {
        assert_eq!(
            n.load(Ordering::SeqCst),
            1,
            "the body of {name:?} ran {n:?} times"
        );
    }
    let job = sb
        .remote_executions()
        .unwrap()
        .into_iter()
        .find(|e| e.execution.id == "job")
        .unwrap();
    assert_eq!(job.meta.owner, sb.store_id());
    assert_eq!(job.execution.checkpoint_count, 4);
    assert_eq!(job.epoch, 2);
}

#[test]
fn nothing_is_lost_when_a_node_stops_while_a_store_pushes() {
    let mut c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    let run = begin(&store, "long", Duration::from_secs(30));
    let leader = ClusterStatus::of(c.nodes[0].as_ref().unwrap().engine())
        .leader
        .unwrap() as usize
        - 1;
    for i in 0..60u32 {
        run.step(&format!("step-{i}"), || Ok::<_, Error>(big(i as u8)))
            .unwrap();
        if i == 20 {
            // Stop the leader mid-stream: the others elect a new one and the pushes go on.
            let n = c.nodes[leader].take().unwrap();
            c.inner.rt.block_on(n.shutdown());
        }
    }
    run.complete(Some(b"ok")).unwrap();
    drop(run);
    s.flush(None, Duration::from_secs(30)).unwrap();

    let other = tempfile::tempdir().unwrap();
    let o = Store::open(other.path()).unwrap();
    let so = o
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    so.pull("long").unwrap();
    let history = o.history("long").unwrap();
    assert_eq!(history.len(), 60);
    for (i, cp) in history.iter().enumerate() {
        assert_eq!(o.read_state(cp).unwrap(), big(i as u8), "step {i}");
    }
    assert_eq!(o.execution_output("long").unwrap().unwrap(), b"ok");
    let r = s.report();
    assert_eq!(r.checkpoints_pushed, 60, "{r:?}");
}

#[test]
fn bad_sync_configs_and_corrupt_pushes_are_refused_with_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let e = store
        .attach_sync(SyncConfig {
            nodes: vec!["not an address".into()],
            ..SyncConfig::default()
        })
        .err()
        .unwrap();
    assert!(e.to_string().contains("not an address"), "{e}");
    let e = omium_core::sync::RemoteDurability::parse("eventually").unwrap_err();
    assert!(e.to_string().contains("\"sync\""), "{e}");
    let e = omium_core::sync::objects::Objects::new(&omium_core::sync::objects::ObjectConfig {
        url: "bucket-without-scheme".into(),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("s3://bucket"), "{e}");

    // A chunk whose bytes do not match its address never reaches the log.
    let chunk = omium_core::sync::Chunk {
        hash: [7; 32],
        len: 3,
        stored: vec![0, b'a', b'b', b'c'],
    };
    let e = omium_core::sync::verify_chunks(&[chunk]).unwrap_err();
    assert!(e.to_string().contains("does not match its address"), "{e}");
}

/// Pulled chunks are referenced by nothing until their checkpoints are imported: a `gc` running
/// meanwhile must not sweep them (it did: the pull path wrote chunks and checkpoints without
/// gc's shared lock, so pulls failed or left checkpoints whose chunks were gone).
#[test]
fn gc_running_while_executions_are_pulled_loses_no_chunk() {
    let c = cluster();
    let a_dir = tempfile::tempdir().unwrap();
    let a = Store::open(a_dir.path()).unwrap();
    let sa = a
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    const N: u8 = 24;
    for i in 0..N {
        let run = begin(&a, &format!("g{i}"), Duration::from_secs(30));
        run.step("big", || Ok::<_, Error>(big(i))).unwrap();
        run.complete(Some(b"ok")).unwrap();
    }
    sa.flush(None, Duration::from_secs(60)).unwrap();

    let b_dir = tempfile::tempdir().unwrap();
    let b = Store::open(b_dir.path()).unwrap();
    let sb = b
        .attach_sync(config(&c, RemoteDurability::Background))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut runs = 0u64;
            loop {
                b.gc().unwrap();
                runs += 1;
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return runs;
                }
            }
        })
    };
    for i in 0..N {
        sb.pull(&format!("g{i}")).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(collector.join().unwrap() > 0);
    b.gc().unwrap();
    assert!(b.verify(None).unwrap().ok());
    for i in 0..N {
        let h = b.history(&format!("g{i}")).unwrap();
        assert_eq!(b.read_state(&h[0]).unwrap(), big(i), "g{i}");
    }
}

/// Hostile pushes are refused with a named error before anything is allocated or stored from
/// them, and the cluster keeps serving: a zstd bomb, a chunk and a checkpoint that claim sizes
/// far beyond what they hold.
#[test]
fn hostile_pushes_are_refused_and_the_cluster_keeps_serving() {
    use std::io::Read;

    use omium_core::blob::{ChunkRef, Manifest};
    use omium_core::sync::{Bundle, Chunk, SyncBatch};
    use omium_core::{ChunkParams, StateRef};

    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = begin(&store, "h1", Duration::from_secs(5));
    run.step("s", || Ok::<_, Error>(b"small".to_vec())).unwrap();
    drop(run);
    let execution = store.execution("h1").unwrap();
    let checkpoint = store.checkpoints("h1").unwrap().remove(0);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let push = |batch: &SyncBatch| -> (u16, String) {
        let body = postcard::to_allocvec(batch).unwrap();
        let mut r = agent
            .post(format!("http://{}/sync/push", c.addrs[0]))
            .header("content-type", "application/octet-stream")
            .send(&body[..])
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let refused = |batch: SyncBatch, expected: &str| {
        let (status, body) = push(&batch);
        assert_eq!(status, 400, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "invalid_argument", "{body}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    };

    // A zstd bomb: 1 GiB of zeros in a few dozen KB, declared as a 4 KiB chunk, then as 4 GiB.
    let mut bomb = vec![1u8]; // the codec byte: zstd
    bomb.extend(zstd::stream::encode_all(std::io::repeat(0).take(1 << 30), 3).unwrap());
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    for (len, expected) in [
        (4096, "cannot be decoded"),
        (
            u32::MAX,
            "its recorded length 4294967295 is over the limit of 16777216 bytes",
        ),
    ] {
        let batch = SyncBatch {
            chunks: vec![Chunk {
                hash: [7; 32],
                len,
                stored: bomb.clone(),
            }],
            ..SyncBatch::default()
        };
        refused(batch, expected);
    }

    // Checkpoint records that claim more than they hold.
    let bundle = |c: omium_core::Checkpoint| SyncBatch {
        bundles: vec![Bundle {
            store_id: "hostile".into(),
            host: "elsewhere".into(),
            base: None,
            execution: execution.clone(),
            input: None,
            output: None,
            checkpoints: vec![c],
            lease_ms: 0,
            epoch: 0,
        }],
        ..SyncBatch::default()
    };
    let mut huge = checkpoint.clone();
    huge.raw_size = u64::MAX;
    refused(
        bundle(huge),
        "its inline state holds 5 bytes, its recorded size is 18446744073709551615",
    );
    let mut chunked = checkpoint.clone();
    chunked.state = StateRef::Chunked(Manifest {
        params: ChunkParams::default(),
        chunks: vec![ChunkRef {
            hash: [9; 32],
            len: u32::MAX,
        }],
    });
    chunked.raw_size = u64::from(u32::MAX);
    refused(
        bundle(chunked),
        "chunk 0 is 4294967295 bytes, over the limit",
    );
    let mut foreign = checkpoint.clone();
    foreign.execution_id = "someone-else".into();
    refused(bundle(foreign), "it belongs to \"someone-else\"");

    // The cluster took none of it and still serves: a real push and a listing.
    let sync = store
        .attach_sync(config(&c, RemoteDurability::Sync))
        .unwrap();
    let run = begin(&store, "h2", Duration::from_secs(5));
    run.step("s", || Ok::<_, Error>(big(3))).unwrap();
    run.complete(None).unwrap();
    sync.flush(None, Duration::from_secs(60)).unwrap();
    let ids: Vec<String> = sync
        .remote_executions()
        .unwrap()
        .into_iter()
        .map(|s| s.execution.id)
        .collect();
    assert!(ids.contains(&"h2".to_string()), "{ids:?}");
}

/// `len` bytes that do not compress, different per `seed` (xorshift).
fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Bytes of the consensus state machine of a store (what a snapshot carries).
fn consensus_bytes(store: &Store) -> usize {
    store
        .scan_prefix(omium_core::store::Cf::Consensus, b"")
        .map(|kv| kv.map(|(k, v)| k.len() + v.len()).unwrap())
        .sum()
}

/// Compacts the log of `engine`'s node: builds a snapshot of everything applied and purges the
/// log up to it. Returns the snapshot's index.
fn compact(rt: &tokio::runtime::Runtime, engine: &omium_core::consensus::Engine) -> u64 {
    use openraft::async_runtime::watch::WatchReceiver;
    let raft = engine.raft().clone();
    rt.block_on(raft.trigger().snapshot()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let snapshot = loop {
        let s = ClusterStatus::of(engine);
        if let (Some(snap), Some(applied)) = (s.snapshot, s.last_applied) {
            if snap >= applied {
                break snap;
            }
        }
        assert!(Instant::now() < deadline, "no snapshot: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    rt.block_on(raft.trigger().purge_log(snapshot)).unwrap();
    while raft
        .metrics()
        .borrow_watched()
        .purged
        .is_none_or(|p| p.index() < snapshot)
    {
        assert!(Instant::now() < deadline, "the log was not purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    snapshot
}

/// Waits until `node` is a voter that has applied everything up to `index`.
fn caught_up(node: &Node, index: u64) -> ClusterStatus {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = ClusterStatus::of(node.engine());
        if s.voters.contains(&s.id) && s.last_applied.is_some_and(|a| a >= index) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "node {} did not catch up to {index}: {s:?}",
            s.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 17: nodes added to a cluster that holds more than the 64 MiB a node takes in one
/// request catch up: node 4 from the whole log (appends are cut to a budget: without the cut
/// its first append carried every entry and was refused for its size, forever), node 5, after
/// every node compacted its log, from a snapshot that travels in pieces.
#[test]
fn nodes_added_to_a_cluster_larger_than_a_request_catch_up_from_the_log_and_from_a_snapshot() {
    let inner = common::Nodes::new(5);
    let nodes = inner.three();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().addr().to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let sa = a
        .attach_sync(SyncConfig {
            nodes: addrs.clone(),
            durability: RemoteDurability::Sync,
            claim: Duration::from_secs(5),
            ..SyncConfig::default()
        })
        .unwrap();
    let run = begin(&a, "huge", Duration::from_secs(120));
    for i in 0..9u8 {
        run.step(&format!("part-{i}"), || Ok::<_, Error>(noise(i, 8 << 20)))
            .unwrap();
    }
    run.complete(None).unwrap();
    drop(run);
    drop(sa);
    let engine = |n: &Option<Node>| n.as_ref().unwrap().engine().clone();
    let first = engine(&nodes[0]);
    let written = ClusterStatus::of(&first).committed.unwrap();
    assert!(
        consensus_bytes(first.store()) > 64 << 20,
        "{} bytes",
        consensus_bytes(first.store())
    );

    // Node 4 joins through node 1 while every node still holds the whole log.
    let n4 = inner.start(3, Some(addrs[0].clone()));
    let s = caught_up(&n4, written);
    assert_eq!(s.snapshot, None, "node 4 came by the log: {s:?}");
    assert_eq!(
        consensus_bytes(&inner.stores[3]),
        consensus_bytes(first.store())
    );

    // Every node compacts its log: whoever leads, node 5 can only be caught up by a snapshot.
    let engines: Vec<_> = nodes
        .iter()
        .map(engine)
        .chain([n4.engine().clone()])
        .collect();
    let snapshot = engines.iter().map(|e| compact(&inner.rt, e)).min().unwrap();
    let n5 = inner.start(4, Some(addrs[0].clone()));
    let s = caught_up(&n5, snapshot);
    assert!(s.snapshot.is_some_and(|i| i >= snapshot), "{s:?}");
    assert_eq!(
        consensus_bytes(&inner.stores[4]),
        consensus_bytes(first.store())
    );
    drop(engines);
    drop(nodes);
    drop(n4);
    drop(n5);
}
