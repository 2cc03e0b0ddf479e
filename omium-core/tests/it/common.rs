//! Helpers shared by the core's test suites.

#![allow(dead_code)] // each suite uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

/// A real HTTP server on 127.0.0.1, one request per connection: it answers every POST with
/// `status` and passes each body on. Returns the URL (with `path`) and the bodies.
pub fn http_receiver(status: u16, path: &str) -> (String, mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", l.local_addr().unwrap());
    (url, http_serve(l, status))
}

/// Serves `l` as [`http_receiver`] does, from now on: until this is called, a client's request
/// waits in the listen backlog without an answer.
pub fn http_serve(l: TcpListener, status: u16) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tx.send(body);
        }
    });
    rx
}

/// Cluster nodes in this process, each on its own store in a temporary directory, talking
/// HTTP/2 on 127.0.0.1.
pub struct Nodes {
    pub rt: tokio::runtime::Runtime,
    pub stores: Vec<omium_core::Store>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Nodes {
    /// Room for `stores` nodes; none started yet.
    pub fn new(stores: usize) -> Nodes {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dirs: Vec<_> = (0..stores).map(|_| tempfile::tempdir().unwrap()).collect();
        let stores = dirs
            .iter()
            .map(|d| omium_core::Store::open(d.path()).unwrap())
            .collect();
        Nodes {
            rt,
            stores,
            _dirs: dirs,
        }
    }

    /// Starts node `i + 1` on store `i`, joining through `join` when given.
    pub fn start(&self, i: usize, join: Option<String>) -> omium_core::consensus::Node {
        self.rt
            .block_on(omium_core::consensus::Node::start(
                &self.stores[i],
                omium_core::consensus::NodeConfig {
                    id: i as u64 + 1,
                    listen: "127.0.0.1:0".into(),
                    advertise: None,
                    join,
                    insecure_loopback: true,
                    tls: None,
                },
            ))
            .unwrap()
    }

    /// Nodes 1–3: node 1 initialises the cluster, 2 and 3 join it; returns once all three are
    /// voters and one leads.
    pub fn three(&self) -> Vec<Option<omium_core::consensus::Node>> {
        let n1 = self.start(0, None);
        let init = self
            .rt
            .block_on(
                omium_core::consensus::network::RemoteClient::new(&[n1.addr().to_string()])
                    .unwrap()
                    .admin(
                        "/cluster/init",
                        &serde_json::json!({}),
                        std::time::Duration::from_secs(30),
                    ),
            )
            .unwrap();
        assert_eq!(init["voters"].as_array().map(Vec::len), Some(1), "{init}");
        let n2 = self.start(1, Some(n1.addr().to_string()));
        let n3 = self.start(2, Some(n1.addr().to_string()));
        let nodes = vec![Some(n1), Some(n2), Some(n3)];
        // Generous: on a loaded machine an election can take seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let s = omium_core::consensus::ClusterStatus::of(nodes[0].as_ref().unwrap().engine());
            if s.voters.len() == 3 && s.leader.is_some() {
                return nodes;
            }
            assert!(std::time::Instant::now() < deadline, "{s:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
