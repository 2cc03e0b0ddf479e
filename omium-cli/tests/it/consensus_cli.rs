//! `omium consensus …` on the embedded group of a store, and the errors of `omium cluster` /
//! `omium node` for bad input.

use crate::common;

use common::Ctx;

#[test]
fn broadcast_ack_await_and_status_on_the_embedded_group() {
    let ctx = Ctx::new();
    let run = |args: &[&str]| {
        let o = ctx
            .command()
            .arg("--store")
            .arg(&ctx.store)
            .args(args)
            .output()
            .unwrap();
        common::Out {
            code: o.status.code().unwrap_or(-1),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let b = run(&[
        "--json",
        "consensus",
        "broadcast",
        "run-7",
        "--sender",
        "planner",
        "--to",
        "a,b",
        "--message",
        r#"{"plan":"ship"}"#,
    ])
    .ok()
    .json();
    assert_eq!(b["seq"], 1);
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(
        run(&[
            "--json",
            "consensus",
            "ack",
            &id,
            "--agent",
            "a",
            "--vote",
            "\"yes\""
        ])
        .ok()
        .json()["state"],
        "pending"
    );
    assert_eq!(
        run(&[
            "--json",
            "consensus",
            "ack",
            &id,
            "--agent",
            "b",
            "--vote",
            "\"yes\""
        ])
        .ok()
        .json()["state"],
        "agreed"
    );
    let m = run(&["--json", "consensus", "await", &id, "--timeout", "1"])
        .ok()
        .json();
    assert_eq!(m["status"]["value"], "yes");
    let list = run(&["--json", "consensus", "status", "run-7"]).ok().json();
    assert_eq!(list[0]["message"]["plan"], "ship");
    let table = run(&["consensus", "status", "run-7"]).ok().text();
    assert!(
        table.contains("agreed") && table.contains("planner"),
        "{table}"
    );

    // A message that fails its schema: the error names the path; nothing is appended.
    let schema = ctx.dir.path().join("schema.json");
    std::fs::write(&schema, r#"{"type":"object","required":["plan"]}"#).unwrap();
    let e = run(&[
        "consensus",
        "broadcast",
        "run-7",
        "--sender",
        "p",
        "--to",
        "a",
        "--message",
        "{}",
        "--schema",
        schema.to_str().unwrap(),
    ])
    .failed();
    assert!(
        e.contains("does not match its schema") && e.contains("\"plan\""),
        "{e}"
    );
    let e = run(&[
        "consensus",
        "broadcast",
        "run-7",
        "--sender",
        "p",
        "--to",
        "a",
        "--message",
        "{oops",
    ])
    .failed();
    assert!(
        e.contains("--message") && e.contains("line 1, column 2"),
        "{e}"
    );
    assert_eq!(
        run(&["--json", "consensus", "status", "run-7"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Nobody acknowledges: a timeout is a consensus violation (exit 1), recorded as a failure.
    let b = run(&[
        "--json",
        "consensus",
        "broadcast",
        "run-7",
        "--sender",
        "p",
        "--to",
        "a",
        "--message",
        "1",
    ])
    .ok()
    .json();
    let (code, msg) = run(&[
        "--json",
        "consensus",
        "await",
        b["id"].as_str().unwrap(),
        "--timeout",
        "0.2",
    ])
    .json_error();
    assert_eq!(code, "consensus_violation");
    assert!(msg.contains("timeout"), "{msg}");
    let failures = run(&["--json", "failures"]).ok().json();
    assert!(
        failures.to_string().contains("consensus_violation"),
        "{failures}"
    );
}

#[test]
fn bad_addresses_and_unreachable_nodes_are_named() {
    let ctx = Ctx::new();
    let run = |args: &[&str]| {
        let o = ctx.command().args(args).output().unwrap();
        common::Out {
            code: o.status.code().unwrap_or(-1),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let e = run(&["cluster", "--node", "localhost", "status"]).failed();
    assert!(
        e.contains("\"localhost\"") && e.contains("has no port"),
        "{e}"
    );
    let e = run(&[
        "--store",
        ctx.store.to_str().unwrap(),
        "node",
        "--id",
        "1",
        "--insecure-loopback",
        "--listen",
        "nowhere",
    ])
    .failed();
    assert!(e.contains("listen address") && e.contains("nowhere"), "{e}");
    let e = run(&[
        "cluster",
        "--node",
        "127.0.0.1:9",
        "add",
        "--id",
        "2",
        "--addr",
        "x",
    ])
    .failed();
    assert!(e.contains("\"x\"") && e.contains("has no port"), "{e}");
}
