//! `omium sync --node N push|pull|status` against a real one-node cluster (`omium node`
//! process): a store's executions pushed, listed, and pulled into another store.

use crate::common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use omium_core::{BeginOptions, Error, Store};

fn omium(args: &[&str]) -> common::Out {
    let o = Command::new(common::BIN)
        .env_remove("OMIUM_HOME")
        .args(args)
        .output()
        .unwrap();
    common::Out {
        code: o.status.code().unwrap_or(-1),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn push_status_and_pull_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let node_store = dir.path().join("node");
    let mut node = Command::new(common::BIN)
        .args([
            "--store",
            node_store.to_str().unwrap(),
            "node",
            "--id",
            "1",
            "--insecure-loopback",
            "--listen",
            &addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    omium(&["cluster", "--node", &addr, "init"]).ok();

    // A store with one finished and one unfinished execution.
    let a = dir.path().join("a");
    {
        let store = Store::open(&a).unwrap();
        let run = store.begin("done-1", BeginOptions::default()).unwrap();
        run.step("one", || Ok::<_, Error>(vec![7; 10_000])).unwrap();
        run.complete(Some(b"out")).unwrap();
        let run = store
            .begin(
                "half-1",
                BeginOptions {
                    lease_ttl: std::time::Duration::from_millis(1),
                    ..BeginOptions::default()
                },
            )
            .unwrap();
        run.step("one", || Ok::<_, Error>(b"x".to_vec())).unwrap();
    }
    let a = a.to_str().unwrap();
    let pushed = omium(&["--store", a, "--json", "sync", "--node", &addr, "push"])
        .ok()
        .json();
    assert_eq!(pushed["executions_pushed"], 2, "{pushed}");
    assert_eq!(pushed["checkpoints_pushed"], 2, "{pushed}");
    assert!(pushed["chunks_sent"].as_u64().unwrap() >= 1, "{pushed}");
    // Nothing new: a second push sends nothing.
    let again = omium(&["--store", a, "--json", "sync", "--node", &addr, "push"])
        .ok()
        .json();
    assert_eq!(again["executions_pushed"], 0, "{again}");

    let table = omium(&["sync", "--node", &addr, "status"]).ok().text();
    assert!(
        table.contains("done-1") && table.contains("completed"),
        "{table}"
    );
    assert!(
        table.contains("half-1") && table.contains("running"),
        "{table}"
    );

    // Another store (created by the pull) takes the unfinished one over.
    let b = dir.path().join("b");
    let b = b.to_str().unwrap();
    let pulled = omium(&[
        "--store", b, "--json", "sync", "--node", &addr, "pull", "half-1",
    ])
    .ok()
    .json();
    assert_eq!(pulled[0]["id"], "half-1");
    let resumable = omium(&["--store", b, "--json", "resumable"]).ok().json();
    assert_eq!(resumable[0]["id"], "half-1");
    omium(&["--store", b, "sync", "--node", &addr, "pull", "done-1"]).ok();
    assert!(omium(&["--store", b, "verify"]).ok().text().contains("ok"));

    let e = omium(&["--store", b, "sync", "--node", &addr, "pull", "nope"]).failed();
    assert!(e.contains("nope"), "{e}");
    let e = omium(&["sync", "--node", "localhost", "status"]).failed();
    assert!(e.contains("has no port"), "{e}");
    let e = omium(&["sync", "status"]).failed();
    assert!(e.contains("--node"), "{e}");
    node.kill().unwrap();
    node.wait().unwrap();
}
