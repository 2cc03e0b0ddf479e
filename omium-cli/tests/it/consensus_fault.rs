//! Fault test with real processes: three `omium node` processes on 127.0.0.1 under a steady
//! stream of broadcasts; SIGKILL the leader, restart it; SIGKILL a follower, restart it. Then:
//! no agreed message is lost, duplicated or reordered, every node holds the same log, and the
//! client history (broadcasts returning their place, reads returning the count) is
//! linearizable (stateright's `LinearizabilityTester`).
//!
//! `OMIUM_FAULT_ROUNDS` (default 1) repeats the leader-then-follower kills; `make fault` runs
//! more rounds. Network partitions are not tested: they need network namespaces (root and
//! `CAP_SYS_ADMIN`), which this machine's sandbox does not give (docs/consensus.md).

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omium_core::consensus::network::RemoteClient;
use omium_core::consensus::{BroadcastRequest, ClusterStatus, Coordinator, CoordinatorConfig};
use serde_json::json;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

const EXEC: &str = "fault-run";

/// The reference object: the execution's message log, seen through what clients observe.
#[derive(Clone, Debug, Default)]
struct Log {
    len: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Broadcast(String),
    Count,
}

#[derive(Clone, Debug, PartialEq)]
enum Ret {
    /// The message's place (seq) in the execution's order.
    Seq(u64),
    /// How many messages the execution has.
    Count(u64),
}

impl SequentialSpec for Log {
    type Op = Op;
    type Ret = Ret;
    fn invoke(&mut self, op: &Op) -> Ret {
        match op {
            Op::Broadcast(_) => {
                self.len += 1;
                Ret::Seq(self.len)
            }
            Op::Count => Ret::Count(self.len),
        }
    }
}

struct Cluster {
    root: tempfile::TempDir,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

/// Polls `done` every 50 ms until it holds; fails naming `what` after a minute (the nodes are
/// processes: on a loaded machine an election or a catch-up can take seconds).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    fn store(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("node{}", i + 1))
    }

    fn spawn(&mut self, i: usize, join: Option<String>) {
        let log =
            std::fs::File::create(self.root.path().join(format!("node{}.log", i + 1))).unwrap();
        let mut c = Command::new(common::BIN);
        c.env_remove("OMIUM_HOME")
            .arg("--store")
            .arg(self.store(i))
            .args([
                "node",
                "--id",
                &(i + 1).to_string(),
                "--insecure-loopback",
                "--listen",
                &self.addr(i),
            ])
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(j) = join {
            c.args(["--join", &j]);
        }
        let mut child = c.spawn().expect("spawn omium node");
        // The node prints one JSON line once it listens (and has joined).
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.contains("listening"),
            "node {} did not start: {line:?} (log in {})",
            i + 1,
            self.root.path().display()
        );
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        let mut c = self.children[i].take().expect("node running");
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    fn status(&self, i: usize, rt: &tokio::runtime::Runtime) -> Option<ClusterStatus> {
        let addr = self.addr(i);
        let v = rt.block_on(async move {
            let client = RemoteClient::new(&[addr]).ok()?;
            tokio::time::timeout(
                Duration::from_secs(2),
                client.admin("/cluster/status", &json!({}), Duration::from_secs(1)),
            )
            .await
            .ok()?
            .ok()
        })?;
        serde_json::from_value(v).ok()
    }

    /// The leader, as a majority of the running nodes sees it.
    fn leader(&self, rt: &tokio::runtime::Runtime) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
            for i in 0..3 {
                if self.children[i].is_some() {
                    if let Some(l) = self.status(i, rt).and_then(|s| s.leader) {
                        *votes.entry(l).or_default() += 1;
                    }
                }
            }
            if let Some((l, _)) = votes.iter().find(|(_, n)| **n >= 2) {
                return *l as usize - 1;
            }
            assert!(Instant::now() < deadline, "no leader agreed on: {votes:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `i` knows a leader and has applied everything the leader had applied
    /// when this was called.
    fn await_caught_up(&self, i: usize, rt: &tokio::runtime::Runtime) {
        let leader = self.leader(rt);
        let mut target = None;
        wait_for(&format!("node {} (leader) to answer", leader + 1), || {
            target = self.status(leader, rt).and_then(|s| s.last_applied);
            target.is_some()
        });
        wait_for(&format!("node {} to catch up", i + 1), || {
            self.status(i, rt)
                .is_some_and(|s| s.leader.is_some() && s.last_applied >= target)
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Default)]
struct Outcomes {
    /// id → (client, n, seq) of every broadcast that returned.
    placed: BTreeMap<String, (usize, u64, u64)>,
    /// ids whose await_agreement returned agreed.
    agreed: HashSet<String>,
    history: Vec<(usize, Op, Option<Ret>)>,
}

#[test]
fn leader_and_follower_sigkills_lose_duplicate_or_reorder_nothing() {
    let rounds: usize = std::env::var("OMIUM_FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = Cluster {
        root: tempfile::tempdir().unwrap(),
        ports: (0..3).map(|_| free_port()).collect(),
        children: vec![None, None, None],
    };
    cluster.spawn(0, None);
    let first = cluster.addr(0);
    rt.block_on(async move {
        RemoteClient::new(&[first])
            .unwrap()
            .admin("/cluster/init", &json!({}), Duration::from_secs(10))
            .await
    })
    .unwrap();
    cluster.spawn(1, Some(cluster.addr(0)));
    cluster.spawn(2, Some(cluster.addr(0)));
    let nodes: Vec<String> = (0..3).map(|i| cluster.addr(i)).collect();
    scrape_raft_health(&nodes);

    // The workload: 3 writers (broadcast, ack, await) and 1 reader, each sequential.
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let tester = Arc::new(Mutex::new(LinearizabilityTester::<usize, Log>::new(
        Log::default(),
    )));
    let mut threads = Vec::new();
    for client in 0..4usize {
        let (stop, out, tester, nodes) = (stop.clone(), out.clone(), tester.clone(), nodes.clone());
        threads.push(std::thread::spawn(move || {
            let c = Coordinator::open(None, CoordinatorConfig::Cluster { nodes }).unwrap();
            // A thread id per attempt stream: an operation with an unknown outcome stays in
            // flight for the tester, and the client goes on under a fresh id.
            let mut tid = client * 1_000_000;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if client == 3 {
                    tester.lock().unwrap().on_invoke(tid, Op::Count).unwrap();
                    match c.status(EXEC) {
                        Ok(list) => {
                            let ret = Ret::Count(list.len() as u64);
                            tester.lock().unwrap().on_return(tid, ret.clone()).unwrap();
                            out.lock()
                                .unwrap()
                                .history
                                .push((tid, Op::Count, Some(ret)));
                        }
                        Err(_) => tid += 1,
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                n += 1;
                let id = ulid::Ulid::new().to_string();
                let op = Op::Broadcast(id.clone());
                tester.lock().unwrap().on_invoke(tid, op.clone()).unwrap();
                let r = c.broadcast(&BroadcastRequest {
                    execution_id: EXEC.into(),
                    sender: format!("client-{client}"),
                    targets: vec!["reviewer".into()],
                    message: json!({"client": client, "n": n}),
                    quorum: Some(1),
                    id: Some(id.clone()),
                    ..Default::default()
                });
                let b = match r {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("client {client}: broadcast {n} outcome unknown: {e}");
                        out.lock().unwrap().history.push((tid, op, None));
                        tid += 1;
                        continue;
                    }
                };
                let ret = Ret::Seq(b.seq);
                tester.lock().unwrap().on_return(tid, ret.clone()).unwrap();
                {
                    let mut o = out.lock().unwrap();
                    o.history.push((tid, op, Some(ret)));
                    o.placed.insert(id.clone(), (client, n, b.seq));
                }
                if c.acknowledge(&id, "reviewer", None).is_ok()
                    && c.await_agreement(&id, Duration::from_secs(10)).is_ok()
                {
                    out.lock().unwrap().agreed.insert(id);
                }
            }
        }));
    }

    // Each phase lasts until the workload made progress in it (and a restarted node caught
    // up), not for a fixed time.
    let placed = |out: &Arc<Mutex<Outcomes>>| out.lock().unwrap().placed.len();
    let progress = |what: &str| {
        let before = placed(&out);
        wait_for(&format!("progress {what} ({before} placed before)"), || {
            placed(&out) > before
        });
    };
    wait_for("the first broadcasts", || placed(&out) > 0);
    for round in 0..rounds {
        let leader = cluster.leader(&rt);
        eprintln!(
            "round {round}: SIGKILL leader node {} ({} placed so far)",
            leader + 1,
            placed(&out)
        );
        cluster.kill(leader);
        progress("with the leader gone");
        cluster.spawn(leader, None);
        cluster.await_caught_up(leader, &rt);
        progress("with the old leader back");
        let new_leader = cluster.leader(&rt);
        let follower = (0..3).find(|i| *i != new_leader).unwrap();
        eprintln!("round {round}: SIGKILL follower node {}", follower + 1);
        cluster.kill(follower);
        progress("with a follower gone");
        cluster.spawn(follower, None);
        cluster.await_caught_up(follower, &rt);
        progress("with the follower back");
    }
    wait_for("20 agreed messages", || {
        out.lock().unwrap().agreed.len() >= 20
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    // The final log, read linearizably through the cluster.
    let c = Coordinator::open(
        None,
        CoordinatorConfig::Cluster {
            nodes: nodes.clone(),
        },
    )
    .unwrap();
    let list = c.status(EXEC).unwrap();
    let out = out.lock().unwrap();
    eprintln!(
        "{} messages in the log, {} placed, {} agreed, {} operations in the history",
        list.len(),
        out.placed.len(),
        out.agreed.len(),
        out.history.len()
    );
    assert!(
        out.agreed.len() >= 20,
        "too little got through: {}",
        out.agreed.len()
    );

    // Not duplicated, not reordered: seqs are 1..=n, ids unique, each client's messages in
    // the order it sent them, each at the place it was told.
    let mut ids = HashSet::new();
    let mut last_n: BTreeMap<usize, u64> = BTreeMap::new();
    for (i, m) in list.iter().enumerate() {
        assert_eq!(m.seq, i as u64 + 1, "seqs are contiguous");
        assert!(ids.insert(m.id.clone()), "message {} appears twice", m.id);
        let v: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        let (client, n) = (
            v["client"].as_u64().unwrap() as usize,
            v["n"].as_u64().unwrap(),
        );
        let prev = last_n.insert(client, n).unwrap_or(0);
        assert!(n > prev, "client {client}: message {n} after {prev}");
        if let Some((_, placed_n, seq)) = out.placed.get(&m.id) {
            assert_eq!((*placed_n, *seq), (n, m.seq), "message {} moved", m.id);
        }
    }
    // Not lost: everything a client saw placed or agreed is in the log, agreed ones as agreed.
    for id in out.placed.keys() {
        assert!(ids.contains(id), "placed message {id} is lost");
    }
    for m in &list {
        if out.agreed.contains(&m.id) {
            assert_eq!(
                m.status.name(),
                "agreed",
                "message {} lost its agreement",
                m.id
            );
        }
    }

    // Every node holds the same messages once it has caught up.
    for i in 0..3 {
        cluster.await_caught_up(i, &rt);
    }
    let logs: Vec<Vec<String>> = (0..3).map(|i| local_log(&mut cluster, i)).collect();
    for (i, l) in logs.iter().enumerate() {
        assert_eq!(
            l,
            &list.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            "node {} holds a different log",
            i + 1
        );
    }

    // Linearizability of the recorded history (in a thread with room for the search).
    let t = tester.lock().unwrap().clone();
    let ok = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || t.serialized_history().is_some())
        .unwrap()
        .join()
        .unwrap();
    assert!(
        ok,
        "the client history is not linearizable: {:?}",
        out.history
    );
}

/// The message ids a node's own store holds, in order (the node is stopped first).
/// `GET /metrics` of every node: Raft health in the Prometheus text format, which `promtool`
/// accepts (Debian's prometheus package; `make test` installs it). Waits until the three nodes
/// are voters and agree that exactly one of them leads.
fn scrape_raft_health(nodes: &[String]) {
    use std::io::{Read, Write};
    let scrape = |addr: &String| {
        let host = addr.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        body.to_string()
    };
    let value = |body: &str, name: &str| {
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
            .to_string()
    };
    let mut bodies = Vec::new();
    wait_for("one leader in the nodes' metrics", || {
        bodies = nodes.iter().map(scrape).collect();
        let leaders = bodies
            .iter()
            .filter(|b| value(b, "omium_raft_is_leader") == "1")
            .count();
        leaders == 1
            && bodies.iter().all(|b| {
                value(b, "omium_raft_has_leader") == "1" && value(b, "omium_raft_voters") == "3"
            })
    });
    for body in &bodies {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus package; `make test` installs it)");
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn local_log(cluster: &mut Cluster, i: usize) -> Vec<String> {
    cluster.kill(i);
    let store = omium_core::Store::open_read_only(cluster.store(i)).unwrap();
    let list = omium_core::consensus::sm::Reader::new(&store)
        .messages(EXEC)
        .unwrap();
    list.into_iter().map(|m| m.id).collect()
}
