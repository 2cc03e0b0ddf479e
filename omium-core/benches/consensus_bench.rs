//! Consensus throughput and failover, in one run:
//!
//! - baseline: the embedded one-voter group (local store, no network);
//! - a 3-node cluster on 127.0.0.1 (three nodes in this process, each with its own store,
//!   HTTP/2 between them; the client speaks HTTP/2 to the leader);
//! - unbatched: each message is one broadcast and one acknowledgement (two log entries), from
//!   16 client threads; batched: 200 broadcasts per entry and 200 acknowledgements per entry,
//!   from 4 client threads;
//! - failover: while two client threads keep broadcasting, the leader node stops (server and
//!   Raft gone at once) → the next committed broadcast, through a client that knows every node;
//!   `OMIUM_BENCH_KILLS` fresh clusters (default 20), p50 and p99;
//! - the same cluster with mutual TLS (issue 17): TLS 1.3 between the nodes and to the client,
//!   certificates from `omium cluster certs`' code, identities checked on every request.
//!
//! A message counts once its acknowledgement reports it agreed (committed, quorum 1 of 1).
//! Every store is `sync`: each append is fsynced (group commit) before it counts.
//!
//! `cargo bench -p omium-core --bench consensus_bench` (`OMIUM_BENCH_SECS` per case, default 3;
//! `OMIUM_BENCH_JSON=FILE` also writes the figures there, for `scripts/bench-all`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use omium_core::consensus::{
    AckRequest, BroadcastRequest, ClusterStatus, Coordinator, CoordinatorConfig, MessageStatus,
    Node, NodeConfig,
};
use omium_core::Store;

const BATCH: usize = 200;

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("OMIUM_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    )
}

fn msg(exec: &str, n: u64) -> BroadcastRequest {
    BroadcastRequest {
        execution_id: exec.into(),
        sender: "bench".into(),
        targets: vec!["peer".into()],
        message: serde_json::json!({"n": n, "text": "hand-off payload of a typical size, about a hundred bytes long"}),
        quorum: Some(1),
        ..Default::default()
    }
}

/// Agreed messages per second from `threads` clients running `work` (which returns how many
/// messages it got agreed) until the time is up.
fn rate(c: &Coordinator, threads: usize, work: fn(&Coordinator, usize, u64) -> u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (c, stop, total) = (c.clone(), stop.clone(), total.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    total.fetch_add(work(&c, t, i), Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(secs());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn unbatched(c: &Coordinator, t: usize, i: u64) -> u64 {
    let b = c.broadcast(&msg(&format!("bench-{t}"), i)).unwrap();
    let s = c.acknowledge(&b.id, "peer", None).unwrap();
    u64::from(matches!(s, MessageStatus::Agreed { .. }))
}

fn batched(c: &Coordinator, t: usize, i: u64) -> u64 {
    let reqs: Vec<_> = (0..BATCH as u64)
        .map(|k| msg(&format!("bench-{t}"), i * BATCH as u64 + k))
        .collect();
    let placed = c.broadcast_many(&reqs).unwrap();
    let acks: Vec<_> = placed
        .iter()
        .map(|b| AckRequest {
            message_id: b.id.clone(),
            agent: "peer".into(),
            vote: None,
        })
        .collect();
    c.acknowledge_many(&acks)
        .unwrap()
        .into_iter()
        .filter(|s| matches!(s, Ok(MessageStatus::Agreed { .. })))
        .count() as u64
}

struct Cluster {
    rt: tokio::runtime::Runtime,
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Node>>,
}

impl Cluster {
    /// Three nodes; with `certs` (a directory `tls::issue` wrote), over mutual TLS.
    fn start(certs: Option<&std::path::Path>) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            let store = Store::open(d.path()).unwrap();
            let join = nodes
                .first()
                .map(|n: &Option<Node>| n.as_ref().unwrap().addr().to_string());
            let node = rt
                .block_on(Node::start(
                    &store,
                    NodeConfig {
                        id: i as u64 + 1,
                        listen: "127.0.0.1:0".into(),
                        advertise: None,
                        join,
                        insecure_loopback: certs.is_none(),
                        tls: certs.map(|d| omium_core::consensus::TlsFiles {
                            ca: d.join("ca.pem"),
                            cert: d.join(format!("node-{}.pem", i + 1)),
                            key: d.join(format!("node-{}-key.pem", i + 1)),
                        }),
                    },
                ))
                .unwrap();
            if i == 0 {
                rt.block_on(async {
                    omium_core::consensus::network::RemoteClient::new(&[node.addr().to_string()])
                        .unwrap()
                        .admin(
                            "/cluster/init",
                            &serde_json::json!({}),
                            Duration::from_secs(5),
                        )
                        .await
                })
                .unwrap();
            }
            nodes.push(Some(node));
        }
        let c = Cluster {
            rt,
            _dirs: dirs,
            nodes,
        };
        c.wait_voters();
        c
    }

    fn wait_voters(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if s.voters.len() == 3 && s.leader.is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "cluster did not form: {s:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn status(&self) -> ClusterStatus {
        ClusterStatus::of(self.nodes.iter().flatten().next().unwrap().engine())
    }

    fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.addr().to_string())
            .collect()
    }

    fn client(&self) -> Coordinator {
        // Leader first: the client's first try goes straight to it.
        let leader = self.status().leader.unwrap() as usize - 1;
        let first = self.nodes[leader].as_ref().unwrap().addr().to_string();
        let mut addrs = vec![first.clone()];
        addrs.extend(self.addrs().into_iter().filter(|a| *a != first));
        Coordinator::open(None, CoordinatorConfig::Cluster { nodes: addrs }).unwrap()
    }

    /// Stops the leader while two clients keep broadcasting; returns the time to the next
    /// committed broadcast.
    fn failover(&mut self) -> Duration {
        let c = self.client();
        c.broadcast(&msg("failover", 0)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let agreed = Arc::new(AtomicU64::new(0));
        let load: Vec<_> = (0..2)
            .map(|t| {
                let (c, stop, agreed) = (self.client(), stop.clone(), agreed.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // Errors are expected while the leader is gone: the load goes on.
                        if c.broadcast(&msg(&format!("load-{t}"), i)).is_ok() {
                            agreed.fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        while agreed.load(Ordering::Relaxed) < 20 {
            std::thread::yield_now();
        }
        let leader = self.status().leader.unwrap() as usize - 1;
        let node = self.nodes[leader].take().unwrap();
        let t0 = Instant::now();
        self.rt.block_on(node.shutdown());
        c.broadcast(&msg("failover", 1)).unwrap();
        let took = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        for h in load {
            h.join().unwrap();
        }
        took
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut().filter_map(Option::take) {
            self.rt.block_on(n.shutdown());
        }
    }
}

fn main() {
    println!(
        "consensus_bench: {:?} per case, every append fsynced",
        secs()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let embedded = Coordinator::embedded(&store).unwrap();
    let e_un = rate(&embedded, 16, unbatched);
    let e_b = rate(&embedded, 4, batched);
    drop(embedded);

    let cluster = Cluster::start(None);
    let c = cluster.client();
    let c_un = rate(&c, 16, unbatched);
    let c_b = rate(&c, 4, batched);
    drop(c);
    drop(cluster);

    let kills: usize = std::env::var("OMIUM_BENCH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut failovers = Vec::new();
    for _ in 0..kills.max(1) {
        let mut cluster = Cluster::start(None);
        failovers.push(cluster.failover());
    }
    failovers.sort();
    let pct = |p: f64| {
        failovers[((failovers.len() as f64 * p).ceil() as usize).clamp(1, failovers.len()) - 1]
    };
    let (fail_p50, fail_p99) = (pct(0.5), pct(0.99));

    let certs = tempfile::tempdir().unwrap();
    omium_core::consensus::tls::issue(&certs.path().join("c"), &[1, 2, 3], &[], &[], 1).unwrap();
    let cluster = Cluster::start(Some(&certs.path().join("c")));
    let c = cluster.client();
    let t_un = rate(&c, 16, unbatched);
    let t_b = rate(&c, 4, batched);
    drop(c);
    drop(cluster);
    omium_core::consensus::tls::configure(None);

    println!();
    println!("{:<44} {:>12} {:>10}", "case", "agreed/s", "vs embedded");
    println!(
        "{:<44} {:>12.0} {:>10}",
        "embedded (1 voter), unbatched, 16 clients", e_un, "1.00x"
    );
    println!(
        "{:<44} {:>12.0} {:>10}",
        format!("embedded (1 voter), batched x{BATCH}, 4 clients"),
        e_b,
        "1.00x"
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x",
        "3-node cluster, unbatched, 16 clients",
        c_un,
        c_un / e_un
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x",
        format!("3-node cluster, batched x{BATCH}, 4 clients"),
        c_b,
        c_b / e_b
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x  ({:.2}x plain)",
        "3-node cluster, mutual TLS, unbatched, 16 cl.",
        t_un,
        t_un / e_un,
        t_un / c_un
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x  ({:.2}x plain)",
        format!("3-node cluster, mutual TLS, batched x{BATCH}"),
        t_b,
        t_b / e_b,
        t_b / c_b
    );
    println!(
        "leader failover under load (leader stopped → next committed broadcast), {} kills: \
         p50 {} ms, p99 {} ms, max {} ms; target p99 ≤ 1 s: {}",
        failovers.len(),
        fail_p50.as_millis(),
        fail_p99.as_millis(),
        failovers.last().unwrap().as_millis(),
        if fail_p99 <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  every kill: {}",
        failovers
            .iter()
            .map(|d| format!("{} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "target ≥ 10,000 agreed/s batched on the cluster: {}",
        if c_b >= 10_000.0 { "met" } else { "NOT met" }
    );
    if let Some(path) = std::env::var_os("OMIUM_BENCH_JSON") {
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let doc = serde_json::json!({
            "secs_per_case": secs().as_secs_f64(),
            "figures": {
                "embedded_unbatched_per_s": e_un, "embedded_batched_per_s": e_b,
                "cluster_unbatched_per_s": c_un, "cluster_batched_per_s": c_b,
                "tls_unbatched_per_s": t_un, "tls_batched_per_s": t_b,
                "failover_kills": failovers.len(),
                "failover_p50_ms": ms(&fail_p50), "failover_p99_ms": ms(&fail_p99),
                "failover_ms": failovers.iter().map(ms).collect::<Vec<_>>(),
            }
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
}
