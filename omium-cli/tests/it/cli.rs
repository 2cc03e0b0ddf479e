//! The `omium` command as a user runs it: the real binary against real stores made with
//! `omium_core`, in table and `--json` form; while another process holds the store for
//! writing; with bad input; and on a store with a corrupt chunk.
//!
//! Every run gets its own `TMPDIR` and checks that the command left nothing there (read
//! commands open the store as a RocksDB secondary in a temporary directory).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use omium_core::{BeginOptions, Error, NewCheckpoint, Store};
use serde_json::Value;

use crate::common;

use common::{keys, set, Ctx};

/// A state large enough to be cut into chunks (the engine inlines up to 4 KiB).
fn big_state() -> Vec<u8> {
    (0..100_000u32)
        .flat_map(|i| {
            format!("message {i}: the customer asked about offer {}\n", i % 97).into_bytes()
        })
        .take(100_000)
        .collect()
}

/// Ids of the checkpoints the fixture made.
struct Fixture {
    ctx: Ctx,
    kyc: String,
    credit: String,
    offer: String,
    /// The one checkpoint of `cust-7`.
    other_kyc: String,
}

fn step(run: &omium_core::Run, name: &str, agent: &str, state: &[u8]) -> String {
    run.record(
        run.reserve(),
        NewCheckpoint {
            name,
            agent: Some(agent),
            state,
            ..Default::default()
        },
    )
    .unwrap()
    .id
    .to_string()
}

/// A store with four executions, created in this order (so listed the other way round):
/// - `cust-42` completed: kyc_doc_validated, credit_score, offer (a chunked state);
/// - `cust-7` crashed after kyc_doc_validated (running, its lease expired);
/// - `cust-9` failed; `cust-8` paused.
fn fixture() -> Fixture {
    let ctx = Ctx::new();
    let store = Store::open(&ctx.store).unwrap();
    let begin = |id: &str, ttl: Duration| {
        std::thread::sleep(Duration::from_millis(3)); // distinct creation times
        store
            .begin(
                id,
                BeginOptions {
                    workflow: "onboarding".into(),
                    lease_ttl: ttl,
                    ..Default::default()
                },
            )
            .unwrap()
    };
    let run = begin("cust-42", Duration::from_secs(30));
    let kyc = step(&run, "kyc_doc_validated", "kyc_agent", b"verified");
    let credit = step(&run, "credit_score", "credit_agent", b"712");
    let offer = step(&run, "offer", "offer_agent", &big_state());
    run.complete(Some(b"approved")).unwrap();
    drop(run);

    let run = begin("cust-7", Duration::from_millis(1));
    let other_kyc = step(&run, "kyc_doc_validated", "kyc_agent", b"pending review");
    drop(run); // the process "dies": no complete()

    let run = begin("cust-9", Duration::from_secs(30));
    step(&run, "kyc_doc_validated", "kyc_agent", b"verified");
    run.fail("credit bureau timeout").unwrap();
    drop(run);

    let run = begin("cust-8", Duration::from_secs(30));
    run.pause("waiting for a human").unwrap();
    drop(run);
    drop(store);
    std::thread::sleep(Duration::from_millis(5)); // cust-7's lease is over
    Fixture {
        ctx,
        kyc,
        credit,
        offer,
        other_kyc,
    }
}

/// What a failed command must leave as it was: every execution (status, head, checkpoint
/// count) and the audit log (length and last hash).
#[derive(Debug, PartialEq)]
struct Snapshot {
    executions: Vec<(String, String, Option<String>, u64)>,
    audit_entries: usize,
    audit_head: Option<String>,
}

fn snapshot(store: &Path) -> Snapshot {
    let s = Store::open_read_only(store).unwrap();
    let audit = s.audit_entries(1, usize::MAX).unwrap();
    Snapshot {
        executions: s
            .executions()
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.id,
                    e.status.to_string(),
                    e.head.map(|h| h.to_string()),
                    e.checkpoint_count,
                )
            })
            .collect(),
        audit_entries: audit.len(),
        audit_head: audit.last().map(|e| omium_core::hex(&e.hash)),
    }
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

/// Rows of a table, split into cells: cells are separated by at
/// least two spaces and no cell in these tests holds two spaces in a row.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

const EXECUTION_FIELDS: &[&str] = &[
    "id",
    "workflow",
    "tenant",
    "status",
    "head",
    "error",
    "attempts",
    "lease_owner",
    "lease_expires_at",
    "lease_expires_at_ms",
    "lease",
    "labels",
    "checkpoints",
    "checkpoint_count",
    "has_input",
    "has_output",
    "created_at",
    "updated_at",
    "created_at_ms",
    "updated_at_ms",
];

const CHECKPOINT_FIELDS: &[&str] = &[
    "id",
    "execution_id",
    "agent",
    "name",
    "kind",
    "parent",
    "seq",
    "global_seq",
    "key",
    "checksum",
    "raw_size",
    "stored_size",
    "storage",
    "chunks",
    "chunker",
    "checks_passed",
    "checks",
    "metadata",
    "created_at",
    "created_at_ms",
];

fn is_utc_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}

#[test]
fn executions_lists_every_execution_newest_first_and_filters_by_status() {
    let f = fixture();
    let out = f.ctx.run(&["executions"]).ok().text();
    let r = rows(&out);
    assert_eq!(
        r[0],
        [
            "EXECUTION",
            "WORKFLOW",
            "STATUS",
            "CHECKPOINTS",
            "ATTEMPTS",
            "UPDATED"
        ],
        "{out}"
    );
    let body: Vec<_> = r[1..].iter().map(|r| r[..5].join(" ")).collect();
    assert_eq!(
        body,
        [
            "cust-8 onboarding paused 0 1",
            "cust-9 onboarding failed 1 1",
            "cust-7 onboarding running 1 1",
            "cust-42 onboarding completed 3 1",
        ],
        "{out}"
    );

    let v = f.ctx.json(&["executions"]).ok().json();
    assert_eq!(ids(&v), ["cust-8", "cust-9", "cust-7", "cust-42"]);
    for e in v.as_array().unwrap() {
        assert_eq!(keys(e), set(EXECUTION_FIELDS), "{e}");
        assert!(
            is_utc_time(&e["created_at"]) && is_utc_time(&e["updated_at"]),
            "{e}"
        );
    }
    let c42 = &v[3];
    assert_eq!(c42["status"], "completed");
    assert_eq!(c42["workflow"], "onboarding");
    assert_eq!(c42["tenant"], "default");
    assert_eq!(c42["head"], f.offer.as_str());
    assert_eq!(c42["checkpoints"], 3);
    assert_eq!(c42["attempts"], 1);
    assert_eq!(c42["error"], Value::Null);
    assert_eq!(v[1]["error"], "credit bureau timeout");

    for (status, expected) in [
        ("failed", vec!["cust-9"]),
        ("running", vec!["cust-7"]),
        ("completed", vec!["cust-42"]),
        ("cancelled", vec![]),
    ] {
        let v = f.ctx.json(&["executions", "--status", status]).ok().json();
        assert_eq!(ids(&v), expected, "--status {status}");
    }
    let out = f.ctx.run(&["executions", "--status", "paused"]).ok().text();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("cust-8 "), "{out}");

    // A status that does not exist is an error, not an empty list.
    let out = f.ctx.run(&["executions", "--status", "done"]);
    assert_eq!(
        out.failed(),
        "invalid --status: \"done\"; expected one of pending, running, paused, completed, failed, cancelled"
    );
    let (code, msg) = f.ctx.json(&["executions", "--status", "done"]).json_error();
    assert_eq!(code, "invalid_argument");
    assert!(msg.starts_with("invalid --status: \"done\""), "{msg}");
}

#[test]
fn resumable_lists_crashed_and_rolled_back_executions() {
    let f = fixture();
    let out = f.ctx.run(&["resumable"]).ok().text();
    let r = rows(&out);
    assert_eq!(r[0][0], "EXECUTION", "{out}");
    assert_eq!(r.len(), 2, "{out}");
    assert_eq!(r[1][..3], ["cust-7", "onboarding", "running"], "{out}");
    assert_eq!(ids(&f.ctx.json(&["resumable"]).ok().json()), ["cust-7"]);

    f.ctx
        .run(&["rollback", "cust-42", "--to", "credit_score"])
        .ok();
    let v = f.ctx.json(&["resumable"]).ok().json();
    assert_eq!(ids(&v), ["cust-7", "cust-42"]);
    assert_eq!(v[1]["status"], "pending");
    for e in v.as_array().unwrap() {
        assert_eq!(keys(e), set(EXECUTION_FIELDS));
    }
}

#[test]
fn show_prints_an_execution_and_its_live_branch() {
    let f = fixture();
    let out = f.ctx.run(&["show", "cust-42"]).ok().text();
    for line in [
        "execution   cust-42",
        "workflow    onboarding",
        "tenant      default",
        "status      completed",
        &format!("head        {}", f.offer),
        "attempts    1",
        "checkpoints 3 (3 on the live branch)",
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
    for id in [&f.kyc, &f.credit, &f.offer] {
        assert!(out.contains(id.as_str()), "{id} missing in\n{out}");
    }
    let out = f.ctx.run(&["show", "cust-9"]).ok().text();
    assert!(
        out.lines()
            .any(|l| l == "error       credit bureau timeout"),
        "{out}"
    );

    let v = f.ctx.json(&["show", "cust-42"]).ok().json();
    let mut fields = set(EXECUTION_FIELDS);
    fields.insert("history".into());
    assert_eq!(keys(&v), fields, "{v}");
    assert_eq!(v["id"], "cust-42");
    assert_eq!(v["status"], "completed");
    assert_eq!(
        names(&v["history"]),
        ["kyc_doc_validated", "credit_score", "offer"]
    );
    assert_eq!(v["history"][0]["id"], f.kyc.as_str());
    for c in v["history"].as_array().unwrap() {
        assert_eq!(keys(c), set(CHECKPOINT_FIELDS), "{c}");
    }
}

#[test]
fn history_shows_the_live_branch_and_all_every_branch() {
    let f = fixture();
    let out = f.ctx.run(&["history", "cust-42"]).ok().text();
    let r = rows(&out);
    assert_eq!(
        r[0],
        [
            "SEQ",
            "CHECKPOINT",
            "NAME",
            "KIND",
            "AGENT",
            "RAW",
            "STORED",
            "CHECKS",
            "CREATED"
        ],
        "{out}"
    );
    assert_eq!(
        r[1][..6],
        ["1", &f.kyc, "kyc_doc_validated", "step", "kyc_agent", "8"]
    );
    assert_eq!(
        r[2][..6],
        ["2", &f.credit, "credit_score", "step", "credit_agent", "3"]
    );
    assert_eq!(
        r[3][..6],
        ["3", &f.offer, "offer", "step", "offer_agent", "100000"]
    );
    assert_eq!(r[3][7], "ok");
    assert_eq!(r.len(), 4);

    f.ctx
        .run(&["rollback", "cust-42", "--to", "kyc_doc_validated"])
        .ok();
    let live = f.ctx.json(&["history", "cust-42"]).ok().json();
    assert_eq!(
        names(&live),
        ["kyc_doc_validated", "rollback to kyc_doc_validated"]
    );
    assert_eq!(live[1]["kind"], "rollback");
    assert_eq!(live[1]["parent"], f.kyc.as_str());
    let all = f.ctx.json(&["history", "cust-42", "--all"]).ok().json();
    assert_eq!(
        names(&all),
        [
            "kyc_doc_validated",
            "credit_score",
            "offer",
            "rollback to kyc_doc_validated"
        ]
    );
    for c in all.as_array().unwrap() {
        assert_eq!(keys(c), set(CHECKPOINT_FIELDS), "{c}");
        assert_eq!(c["execution_id"], "cust-42");
    }
    let out = f.ctx.run(&["history", "cust-42", "--all"]).ok().text();
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.contains(&f.offer),
        "the old branch stays readable:\n{out}"
    );
}

#[test]
fn checkpoint_shows_metadata_and_state_writes_exactly_the_state_bytes() {
    let f = fixture();
    let out = f.ctx.run(&["checkpoint", &f.credit]).ok().text();
    for line in [
        format!("checkpoint  {}", f.credit),
        "execution   cust-42".into(),
        "name        credit_score".into(),
        "kind        step".into(),
        "agent       credit_agent".into(),
        format!("parent      {}", f.kyc),
        "seq         2".into(),
        "size        3 raw, 3 stored".into(),
        "storage     inline".into(),
        "checks      passed".into(),
        format!(
            "checksum    blake3:{}",
            recorded_checksum(&f.ctx.store, &f.credit)
        ),
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
    }
    let out = f.ctx.run(&["checkpoint", &f.offer]).ok().text();
    assert!(
        out.lines()
            .any(|l| l.starts_with("storage     ") && l.contains(" chunks (fastcdc")),
        "{out}"
    );

    let v = f.ctx.json(&["checkpoint", &f.offer]).ok().json();
    assert_eq!(keys(&v), set(CHECKPOINT_FIELDS), "{v}");
    assert_eq!(v["id"], f.offer.as_str());
    assert_eq!(v["execution_id"], "cust-42");
    assert_eq!(v["name"], "offer");
    assert_eq!(v["parent"], f.credit.as_str());
    assert_eq!(v["raw_size"], 100_000);
    // New chunks are written as they are (a codec byte each) and compressed afterwards.
    let chunks = v["chunks"].as_u64().unwrap();
    assert!(
        v["stored_size"].as_u64().unwrap() <= 100_000 + chunks,
        "{v}"
    );
    assert_eq!(v["checks_passed"], true);
    assert_eq!(v["checksum"], recorded_checksum(&f.ctx.store, &f.offer));
    assert!(is_utc_time(&v["created_at"]));

    // --state: the bytes, nothing else, for inline and chunked states (and with --json too).
    assert_eq!(
        f.ctx.run(&["checkpoint", &f.credit, "--state"]).ok().stdout,
        b"712"
    );
    assert_eq!(
        f.ctx.run(&["checkpoint", &f.offer, "--state"]).ok().stdout,
        big_state()
    );
    assert_eq!(
        f.ctx.json(&["checkpoint", &f.offer, "--state"]).ok().stdout,
        big_state()
    );
}

/// The checksum the engine recorded for a checkpoint, in hex.
fn recorded_checksum(store: &Path, id: &str) -> String {
    let s = Store::open_read_only(store).unwrap();
    omium_core::hex(&s.checkpoint(id).unwrap().checksum)
}

#[test]
fn verify_reports_ok_in_both_forms() {
    let f = fixture();
    let out = f.ctx.run(&["verify"]).ok().text();
    assert!(
        out.starts_with("ok: 4 executions, 5 checkpoints, "),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with("audit entries verified; 0 problems"),
        "{out}"
    );
    let v = f.ctx.json(&["verify"]).ok().json();
    assert_eq!(
        keys(&v),
        set(&["ok", "executions", "checkpoints", "problems", "audit"])
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["executions"], 4);
    assert_eq!(v["checkpoints"], 5);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(keys(&v["audit"]), set(&["entries", "problems", "head"]));
    assert!(v["audit"]["entries"].as_u64().unwrap() >= 12, "{v}");
    assert_eq!(v["audit"]["head"]["seq"], v["audit"]["entries"]);

    let v = f.ctx.json(&["verify", "cust-42"]).ok().json();
    assert_eq!(v["executions"], 1);
    assert_eq!(v["checkpoints"], 3);
    let out = f.ctx.run(&["verify", "cust-42"]).ok().text();
    assert!(out.starts_with("ok: 1 executions, 3 checkpoints"), "{out}");
}

/// `omium audit head` prints what `omium verify --expect-head` checks later: more history
/// after it is fine, a log cut off before it or rewritten under it fails.
#[test]
fn a_recorded_audit_head_detects_a_cut_off_tail() {
    let f = fixture();
    let head = f.ctx.run(&["audit", "head"]).ok().text();
    let head = head.trim_end();
    let (seq, hash) = head.split_once(':').unwrap();
    let seq: u64 = seq.parse().unwrap();
    assert_eq!(hash.len(), 64, "{head}");
    let v = f.ctx.json(&["audit", "head"]).ok().json();
    assert_eq!(v, serde_json::json!({"seq": seq, "hash": hash}));
    let v = f.ctx.json(&["verify"]).ok().json();
    assert_eq!(
        v["audit"]["head"],
        serde_json::json!({"seq": seq, "hash": hash})
    );

    // Later history keeps the head.
    {
        let s = Store::open(&f.ctx.store).unwrap();
        s.delete_execution("cust-9").unwrap();
    }
    let out = f.ctx.run(&["verify", "--expect-head", head]).ok().text();
    assert!(out.trim_end().ends_with("; 0 problems"), "{out}");

    // Cut the log's tail off, from the head's entry on.
    {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, &f.ctx.store).unwrap();
        let db = rocksdb::DB::open_cf(&opts, &f.ctx.store, cfs).unwrap();
        let cf = db.cf_handle("audit").unwrap();
        for s in seq..seq + 100 {
            db.delete_cf(cf, s.to_be_bytes()).unwrap();
        }
    }
    f.ctx.run(&["verify"]).ok();
    let out = f.ctx.run(&["verify", "--expect-head", head]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.text().contains(&format!(
            "CORRUPT  audit head {head}: entry #{seq} is missing; the log ends at entry #{}: \
             the entries from #{seq} on were cut off\n",
            seq - 1
        )),
        "{}",
        out.text()
    );
    let v = f.ctx.json(&["verify", "--expect-head", head]).json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["audit"]["problems"].as_array().unwrap().len(), 1, "{v}");

    let out = f.ctx.run(&["verify", "--expect-head", "12:beef"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("invalid audit head: \"12:beef\" does not end in 64 hex digits"),
        "{}",
        out.stderr
    );
}

#[test]
fn rollback_by_name_by_id_and_to_the_last_consistent_checkpoint() {
    let f = fixture();
    let out = f
        .ctx
        .run(&[
            "rollback",
            "cust-42",
            "--to",
            "credit_score",
            "--reason",
            "stale bureau data",
        ])
        .ok()
        .text();
    assert_eq!(
        out,
        format!(
            "rolled back cust-42 to {} (credit_score); it is pending and resumes from there\n",
            f.credit
        )
    );
    let h = f.ctx.json(&["history", "cust-42"]).ok().json();
    assert_eq!(
        names(&h),
        [
            "kyc_doc_validated",
            "credit_score",
            "rollback to credit_score"
        ]
    );
    assert_eq!(h[2]["metadata"]["reason"], "stale bureau data");
    assert_eq!(h[2]["metadata"]["target"], f.credit.as_str());
    let e = f.ctx.json(&["show", "cust-42"]).ok().json();
    assert_eq!(e["status"], "pending");
    assert_eq!(e["head"], h[2]["id"]);
    let audit = f.ctx.json(&["audit"]).ok().json();
    let last = audit.as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["resource"], "execution/cust-42");
    let detail: Value = serde_json::from_str(last["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["reason"], "stale bureau data");
    assert_eq!(detail["to"], f.credit.as_str());

    // By id, with --json.
    let v = f
        .ctx
        .json(&["rollback", "cust-42", "--to", &f.kyc])
        .ok()
        .json();
    assert_eq!(keys(&v), set(&["execution", "rolled_back_to", "marker"]));
    assert_eq!(v["execution"], "cust-42");
    assert_eq!(v["rolled_back_to"], f.kyc.as_str());
    let h = f.ctx.json(&["history", "cust-42"]).ok().json();
    assert_eq!(h[1]["id"], v["marker"]);
    assert_eq!(h.as_array().unwrap().len(), 2);

    // The old branch is still there: roll forward to the offer by its id.
    f.ctx.run(&["rollback", "cust-42", "--to", &f.offer]).ok();
    assert_eq!(
        names(&f.ctx.json(&["history", "cust-42"]).ok().json()),
        [
            "kyc_doc_validated",
            "credit_score",
            "offer",
            "rollback to offer"
        ]
    );

    // last-consistent: the latest step of the live branch that passed and verifies.
    let v = f
        .ctx
        .json(&["rollback", "cust-7", "--to", "last-consistent"])
        .ok()
        .json();
    assert_eq!(v["rolled_back_to"], f.other_kyc.as_str());
    let out = f
        .ctx
        .run(&["rollback", "cust-9", "--to", "last-consistent"])
        .ok()
        .text();
    assert!(out.starts_with("rolled back cust-9 to "), "{out}");
    assert!(out.contains("(kyc_doc_validated)"), "{out}");
    assert!(f.ctx.run(&["verify"]).ok().text().starts_with("ok: "));
}

#[test]
fn fork_makes_a_new_execution_optionally_with_an_edited_state() {
    let f = fixture();
    let before = f.ctx.json(&["history", "cust-42"]).ok().json();

    let out = f
        .ctx
        .run(&[
            "fork",
            "cust-42",
            "--at",
            "credit_score",
            "--id",
            "cust-42-b",
        ])
        .ok()
        .text();
    assert_eq!(out, "forked cust-42 at credit_score into cust-42-b\n");
    let h = f.ctx.json(&["history", "cust-42-b"]).ok().json();
    assert_eq!(
        names(&h),
        [
            "kyc_doc_validated",
            "credit_score",
            "fork of cust-42 at credit_score"
        ]
    );
    assert_eq!(h[0]["metadata"]["copied_from"], f.kyc.as_str());
    assert_eq!(h[2]["kind"], "fork");
    let e = f.ctx.json(&["show", "cust-42-b"]).ok().json();
    assert_eq!(e["status"], "pending");
    assert_eq!(
        e["labels"]["forked_from"],
        format!("cust-42@{}", f.credit).as_str()
    );
    // The copies are made within one millisecond; --all still lists them oldest first.
    assert_eq!(
        names(&f.ctx.json(&["history", "cust-42-b", "--all"]).ok().json()),
        names(&h)
    );
    // The source is unchanged.
    assert_eq!(f.ctx.json(&["history", "cust-42"]).ok().json(), before);

    // --state-file replaces the state of the checkpoint forked at; --json prints the execution.
    let edited = f.ctx.dir.path().join("score.json");
    std::fs::write(&edited, b"{\"score\": 640}\n").unwrap();
    let v = f
        .ctx
        .json(&[
            "fork",
            "cust-42",
            "--at",
            &f.credit,
            "--id",
            "cust-42-edited",
            "--state-file",
            edited.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(keys(&v), set(EXECUTION_FIELDS), "{v}");
    assert_eq!(v["id"], "cust-42-edited");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["checkpoints"], 3);
    let h = f.ctx.json(&["history", "cust-42-edited"]).ok().json();
    assert_eq!(h[1]["metadata"]["edited"], "true");
    for c in [&h[1], &h[2]] {
        let state = f
            .ctx
            .run(&["checkpoint", c["id"].as_str().unwrap(), "--state"])
            .ok()
            .stdout;
        assert_eq!(state, b"{\"score\": 640}\n");
    }

    // At the last consistent checkpoint, as rollback --to accepts it.
    let v = f
        .ctx
        .json(&[
            "fork",
            "cust-42",
            "--at",
            "last-consistent",
            "--id",
            "cust-42-c",
        ])
        .ok()
        .json();
    assert_eq!(
        v["labels"]["forked_from"],
        format!("cust-42@{}", f.offer).as_str()
    );

    // Without --id the new id is generated and printed.
    let v = f
        .ctx
        .json(&["fork", "cust-42", "--at", "kyc_doc_validated"])
        .ok()
        .json();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("cust-42-fork-"), "{id}");
    let out = f.ctx.run(&["fork", "cust-42", "--at", "offer"]).ok().text();
    let new = out
        .strip_prefix("forked cust-42 at offer into ")
        .unwrap_or_else(|| panic!("{out}"))
        .trim_end();
    f.ctx.run(&["show", new]).ok();
    let all = f.ctx.json(&["history", new, "--all"]).ok().json();
    assert_eq!(
        names(&all),
        [
            "kyc_doc_validated",
            "credit_score",
            "offer",
            "fork of cust-42 at offer"
        ]
    );
    assert!(f
        .ctx
        .run(&["verify"])
        .ok()
        .text()
        .starts_with("ok: 9 executions"));
}

#[test]
fn gc_prune_stats_and_audit() {
    let f = fixture();
    let s = f.ctx.json(&["stats"]).ok().json();
    assert_eq!(
        keys(&s),
        set(&[
            "executions",
            "checkpoints",
            "raw_state_bytes",
            "inline_bytes",
            "chunks",
            "chunk_bytes",
            "disk_bytes"
        ])
    );
    assert_eq!(s["executions"], 4);
    assert_eq!(s["checkpoints"], 5);
    let raw = 8 + 3 + 100_000 + 14 + 8;
    assert_eq!(s["raw_state_bytes"], raw);
    assert_eq!(s["inline_bytes"], 8 + 3 + 14 + 8);
    let chunks = s["chunks"].as_u64().unwrap();
    assert!(chunks >= 2, "{s}");
    assert!(s["disk_bytes"].as_u64().unwrap() > 0);
    let out = f.ctx.run(&["stats"]).ok().text();
    assert!(out.contains("executions      4\n"), "{out}");
    assert!(out.contains("checkpoints     5\n"), "{out}");
    assert!(
        out.contains(&format!("raw state       {raw} bytes\n")),
        "{out}"
    );
    assert!(out.contains(&format!(" in {chunks} chunks); ")), "{out}");

    // Nothing to collect yet.
    let out = f.ctx.run(&["gc"]).ok().text();
    assert_eq!(
        out,
        format!("scanned {chunks} chunks, {chunks} live, removed 0 (0 bytes)\n")
    );
    let g = f.ctx.json(&["gc"]).ok().json();
    assert_eq!(
        keys(&g),
        set(&[
            "chunks_scanned",
            "chunks_live",
            "chunks_removed",
            "bytes_removed"
        ])
    );
    assert_eq!(g["chunks_removed"], 0);

    // Nothing is a day old.
    let out = f.ctx.run(&["prune", "--older-than", "1d"]).ok().text();
    assert_eq!(
        out,
        "deleted 0 executions (0 checkpoints) and 0 spans; removed 0 chunks (0 bytes)\n"
    );
    assert_eq!(
        f.ctx
            .json(&["executions"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // The audit log: every operation, oldest first, paged with --from/--limit.
    let all = f.ctx.json(&["audit"]).ok().json();
    let all = all.as_array().unwrap();
    let n = all.len();
    assert!(n >= 14, "{n}");
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            keys(e),
            set(&[
                "seq",
                "at_ms",
                "actor",
                "action",
                "resource",
                "detail",
                "prev_hash",
                "hash"
            ])
        );
        assert_eq!(e["seq"], i as u64 + 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], all[i - 1]["hash"]);
        }
    }
    assert_eq!(all[0]["action"], "execution.create");
    assert_eq!(all[0]["resource"], "execution/cust-42");
    assert_eq!(all[1]["action"], "checkpoint.create");
    assert_eq!(all[1]["resource"], format!("checkpoint/{}", f.kyc).as_str());
    let actions: Vec<_> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in [
        "execution.complete",
        "execution.fail",
        "execution.pause",
        "gc",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    let page = f
        .ctx
        .json(&["audit", "--from", "2", "--limit", "3"])
        .ok()
        .json();
    let seqs: Vec<_> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4]);

    let out = f.ctx.run(&["audit"]).ok().text();
    let r = rows(&out);
    assert_eq!(r[0], ["SEQ", "AT", "ACTOR", "ACTION", "RESOURCE", "DETAIL"]);
    assert_eq!(r.len(), n + 1);
    assert_eq!(r[1][0], "1");
    assert_eq!(r[1][3], "execution.create");
    // A page that is not the last says where the next one starts.
    let out = f.ctx.run(&["audit", "--limit", "2"]);
    assert_eq!(out.code, 0);
    assert_eq!(out.text().lines().count(), 3);
    assert_eq!(out.stderr, "(more entries follow: omium audit --from 3)\n");
    let out = f.ctx.run(&["audit", "--from", &n.to_string()]).ok();
    assert_eq!(out.text().lines().count(), 2);

    // Everything is older than 0 seconds: prune deletes every execution, gc frees the chunks.
    let v = f.ctx.json(&["prune", "--older-than", "0s"]).ok().json();
    assert_eq!(
        keys(&v),
        set(&[
            "executions_deleted",
            "checkpoints_deleted",
            "gc",
            "spans_deleted"
        ])
    );
    assert_eq!(v["executions_deleted"], 4);
    assert_eq!(v["checkpoints_deleted"], 5);
    assert_eq!(v["gc"]["chunks_removed"], chunks);
    let out = f.ctx.run(&["executions"]).ok().text();
    assert_eq!(out.lines().count(), 1, "{out}");
    let s = f.ctx.json(&["stats"]).ok().json();
    assert_eq!(s["chunks"], 0);
    assert_eq!(s["checkpoints"], 0);
    assert!(f
        .ctx
        .run(&["verify"])
        .ok()
        .text()
        .starts_with("ok: 0 executions"));
}

#[test]
fn the_store_is_found_by_flag_by_omium_home_and_in_the_current_directory() {
    let f = fixture();
    // OMIUM_HOME.
    let mut c = f.ctx.command();
    c.env("OMIUM_HOME", &f.ctx.store)
        .args(["--json", "executions"]);
    assert_eq!(ids(&f.ctx.exec(c).ok().json()).len(), 4);
    // --store wins over OMIUM_HOME.
    let other = Ctx::new();
    Store::open(&other.store).unwrap();
    let mut c = f.ctx.command();
    c.env("OMIUM_HOME", &f.ctx.store)
        .arg("--store")
        .arg(&other.store)
        .args(["--json", "executions"]);
    assert_eq!(ids(&f.ctx.exec(c).ok().json()).len(), 0);
    // --store after the command, relative to the current directory.
    let mut c = f.ctx.command();
    c.args(["executions", "--json", "--store", "store"]);
    assert_eq!(ids(&f.ctx.exec(c).ok().json()).len(), 4);

    // Default: ./.omium
    let cwd = tempfile::tempdir().unwrap();
    {
        let s = Store::open(cwd.path().join(".omium")).unwrap();
        let run = s.begin("here", BeginOptions::default()).unwrap();
        run.step("a", || Ok::<_, Error>(b"1".to_vec())).unwrap();
        run.complete(None).unwrap();
    }
    let mut c = f.ctx.command();
    c.current_dir(cwd.path()).args(["--json", "executions"]);
    assert_eq!(ids(&f.ctx.exec(c).ok().json()), ["here"]);
    let mut c = f.ctx.command();
    c.current_dir(cwd.path()).args(["gc"]);
    f.ctx.exec(c).ok();

    // No ./.omium: the message names the full path it looked at.
    let empty = tempfile::tempdir().unwrap();
    let mut c = f.ctx.command();
    c.current_dir(empty.path()).arg("executions");
    let msg = f.ctx.exec(c).failed();
    // (The child's working directory is the temporary one with symlinks resolved.)
    let real = std::fs::canonicalize(empty.path()).unwrap().join(".omium");
    let given = empty.path().join(".omium");
    assert!(
        [&real, &given].iter().any(|p| msg
            == format!(
                "no Omium store at {}; check the path (--store / OMIUM_HOME), or create the \
                 store by opening it for writing (Store::open in Rust, omium.init() in Python)",
                p.display()
            )),
        "{msg}"
    );
    assert!(!given.exists());
}

/// A writer in another process: this test binary run as `writer_child`, which opens the
/// store, begins execution `live` and records a step for each `step NAME` line on its stdin.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Writer {
    fn start(store: &Path) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "cli::writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OMIUM_CLI_TEST_WRITER", store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the writer");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut w = Writer {
            child,
            stdin,
            stdout,
        };
        w.expect("READY");
        w
    }

    /// Reads lines until one holds `marker` (the test harness may print `test writer_child
    /// ... ` before it on the same line); returns what follows it.
    fn expect(&mut self, marker: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the writer exited before printing {marker}");
            if let Some(i) = line.find(marker) {
                return line[i + marker.len()..].trim().to_string();
            }
        }
    }

    /// Records a step in the writer; returns its checkpoint id once it is committed.
    fn step(&mut self, name: &str) -> String {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "step {name}").unwrap();
        stdin.flush().unwrap();
        self.expect("RECORDED ")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.stdin.take()); // end of input: the writer exits
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "the writer process of the tests that run omium against a held store"]
fn writer_child() {
    let Some(dir) = std::env::var_os("OMIUM_CLI_TEST_WRITER") else {
        return;
    };
    let store = Store::open(&dir).unwrap();
    let run = store
        .begin(
            "live",
            BeginOptions {
                workflow: "chat".into(),
                ..Default::default()
            },
        )
        .unwrap();
    println!("READY");
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let Some(name) = line.strip_prefix("step ") else {
            continue;
        };
        run.step(name, || {
            Ok::<_, Error>(format!("{name} result").into_bytes())
        })
        .unwrap();
        let head = store.history("live").unwrap().pop().unwrap();
        println!("RECORDED {}", head.id);
    }
    // The run is dropped without complete(): the execution stays resumable.
}

#[test]
fn read_commands_work_while_another_process_writes_and_see_what_it_committed() {
    let ctx = Ctx::new();
    let mut w = Writer::start(&ctx.store);
    let s1 = w.step("fetch");
    let s2 = w.step("summarise");

    let h = ctx.json(&["history", "live"]).ok().json();
    assert_eq!(names(&h), ["fetch", "summarise"]);
    assert_eq!(h[1]["id"], s2.as_str());
    let out = ctx.run(&["history", "live"]).ok().text();
    assert!(out.contains(&s1) && out.contains(&s2), "{out}");
    let e = ctx.json(&["show", "live"]).ok().json();
    assert_eq!(e["status"], "running");
    assert_eq!(e["head"], s2.as_str());
    assert!(e["lease_owner"].as_str().unwrap().contains("@pid"), "{e}");
    let out = ctx.run(&["show", "live"]).ok().text();
    assert!(out.lines().any(|l| l.starts_with("lease       ")), "{out}");
    // Its writer is alive: not resumable.
    assert_eq!(ids(&ctx.json(&["resumable"]).ok().json()).len(), 0);
    assert_eq!(ids(&ctx.json(&["executions"]).ok().json()), ["live"]);
    assert_eq!(
        ctx.run(&["checkpoint", &s1, "--state"]).ok().stdout,
        b"fetch result"
    );
    assert_eq!(
        ctx.json(&["checkpoint", &s2]).ok().json()["name"],
        "summarise"
    );
    assert!(ctx
        .run(&["verify"])
        .ok()
        .text()
        .starts_with("ok: 1 executions, 2 checkpoints"));
    ctx.run(&["stats"]).ok();
    ctx.run(&["audit"]).ok();

    // The writer goes on; a new command sees the new step at once.
    let s3 = w.step("answer");
    let h = ctx.json(&["history", "live", "--all"]).ok().json();
    assert_eq!(names(&h), ["fetch", "summarise", "answer"]);
    assert_eq!(h[2]["id"], s3.as_str());
    assert_eq!(
        ctx.json(&["checkpoint", &s3]).ok().json()["parent"],
        s2.as_str()
    );

    // Once the writer is gone, its execution is resumable.
    drop(w);
    assert_eq!(ids(&ctx.json(&["resumable"]).ok().json()), ["live"]);
}

#[test]
fn mutating_commands_on_a_store_held_by_a_writer_fail_clearly_and_change_nothing() {
    let ctx = Ctx::new();
    let mut w = Writer::start(&ctx.store);
    let s1 = w.step("fetch");
    w.step("summarise");
    let before = snapshot(&ctx.store);
    let file = ctx.dir.path().join("state.json");
    std::fs::write(&file, b"{}").unwrap();
    let commands: [&[&str]; 6] = [
        &["rollback", "live", "--to", "fetch"],
        &["rollback", "live", "--to", &s1, "--reason", "x"],
        &["fork", "live", "--at", "fetch", "--id", "copy"],
        &[
            "fork",
            "live",
            "--at",
            "fetch",
            "--state-file",
            file.to_str().unwrap(),
        ],
        &["gc"],
        &["prune", "--older-than", "0s"],
    ];
    let expected = format!(
        "store {0} is held by another process (its RocksDB LOCK is taken); only one process can \
         write a store: stop that process, or inspect the store read-only (the `omium` command \
         opens it as a secondary while the other process writes)",
        ctx.store_display()
    );
    for args in commands {
        let msg = ctx.run(args).failed();
        assert!(msg.starts_with(&expected), "{args:?}: {msg}");
        let (code, msg) = ctx.json(args).json_error();
        assert_eq!(code, "store_locked", "{args:?}");
        assert!(msg.starts_with(&expected), "{args:?}: {msg}");
    }
    assert_eq!(snapshot(&ctx.store), before);
    // The writer was not disturbed.
    w.step("answer");
    assert_eq!(
        names(&ctx.json(&["history", "live"]).ok().json()),
        ["fetch", "summarise", "answer"]
    );
}

#[test]
fn bad_input_fails_with_a_message_naming_what_and_what_to_do_and_changes_nothing() {
    let f = fixture();
    let missing_file = f.ctx.dir.path().join("no-such-file.json");
    let missing = missing_file.to_str().unwrap();
    let a_dir = f.ctx.dir.path().to_str().unwrap();
    let unknown_ckpt = "01J9Z3W4K5M6N7P8Q9R0S1T2V3";
    let unknown_exec =
        "unknown execution \"cust-0\"; `omium executions` lists the executions of this store";
    let cases: Vec<(Vec<&str>, &str, String)> = vec![
        (vec!["show", "cust-0"], "execution_not_found", unknown_exec.into()),
        (vec!["history", "cust-0"], "execution_not_found", unknown_exec.into()),
        (vec!["history", "cust-0", "--all"], "execution_not_found", unknown_exec.into()),
        (vec!["verify", "cust-0"], "execution_not_found", unknown_exec.into()),
        (
            vec!["rollback", "cust-0", "--to", "kyc_doc_validated"],
            "execution_not_found",
            unknown_exec.into(),
        ),
        (vec!["fork", "cust-0", "--at", "kyc_doc_validated"], "execution_not_found", unknown_exec.into()),
        (
            vec!["checkpoint", unknown_ckpt],
            "checkpoint_not_found",
            format!("unknown checkpoint {unknown_ckpt}; `omium history <execution>` lists checkpoints"),
        ),
        (
            vec!["checkpoint", unknown_ckpt, "--state"],
            "checkpoint_not_found",
            format!("unknown checkpoint {unknown_ckpt}; `omium history <execution>` lists checkpoints"),
        ),
        (
            vec!["rollback", "cust-42", "--to", unknown_ckpt],
            "checkpoint_not_found",
            format!("unknown checkpoint {unknown_ckpt}; `omium history <execution>` lists checkpoints"),
        ),
        (
            vec!["checkpoint", "kyc_doc_validated"],
            "invalid_argument",
            "invalid checkpoint id: \"kyc_doc_validated\" is not a checkpoint id (expected a \
             26-character ULID such as 01J9Z3W4K5M6N7P8Q9R0S1T2V3)"
                .into(),
        ),
        (
            vec!["checkpoint", "01J9Z3W4K5", "--state"],
            "invalid_argument",
            "invalid checkpoint id: \"01J9Z3W4K5\" is not a checkpoint id (expected a \
             26-character ULID such as 01J9Z3W4K5M6N7P8Q9R0S1T2V3)"
                .into(),
        ),
        (
            vec!["rollback", "cust-42", "--to", "no_such_step"],
            "checkpoint_not_found",
            "execution \"cust-42\" has no checkpoint named \"no_such_step\"; `omium history \
             cust-42` lists its checkpoints"
                .into(),
        ),
        (
            vec!["rollback", "cust-42", "--to", &f.other_kyc],
            "wrong_execution",
            format!(
                "checkpoint {} belongs to execution \"cust-7\", not \"cust-42\"; use a \
                 checkpoint of \"cust-42\" (`omium history cust-42` lists them)",
                f.other_kyc
            ),
        ),
        (
            vec!["fork", "cust-42", "--at", &f.other_kyc],
            "wrong_execution",
            format!(
                "checkpoint {} belongs to execution \"cust-7\", not \"cust-42\"; use a \
                 checkpoint of \"cust-42\" (`omium history cust-42` lists them)",
                f.other_kyc
            ),
        ),
        (
            vec!["fork", "cust-42", "--at", "offer", "--id", "cust-7"],
            "invalid_argument",
            "invalid fork target: execution \"cust-7\" already exists; choose another id for the fork".into(),
        ),
        (
            vec!["rollback", "cust-8", "--to", "last-consistent"],
            "no_consistent_checkpoint",
            "execution \"cust-8\" has no consistent checkpoint (none passed its checks and \
             verified); roll back to an explicit checkpoint id instead"
                .into(),
        ),
        (
            vec!["fork", "cust-42", "--at", "offer", "--state-file", missing],
            "invalid_argument",
            format!("invalid --state-file: cannot read {missing}: No such file or directory (os error 2)"),
        ),
        (
            vec!["fork", "cust-42", "--at", "offer", "--state-file", a_dir],
            "invalid_argument",
            format!("invalid --state-file: cannot read {a_dir}: Is a directory (os error 21)"),
        ),
        (
            vec!["executions", "--status", "Running"],
            "invalid_argument",
            "invalid --status: \"Running\"; expected one of pending, running, paused, completed, failed, cancelled".into(),
        ),
    ];
    let mut cases = cases;
    for bad in ["3w", "30", "d", "", "-1d", "1.5h", "30 d"] {
        cases.push((
            vec!["prune", "--older-than", bad],
            "invalid_argument",
            format!(
                "invalid --older-than: {bad:?}; expected a whole number followed by d, h, m or s (e.g. 30d)"
            ),
        ));
    }
    cases.push((
        vec!["prune", "--older-than", "99999999999999999d"],
        "invalid_argument",
        "invalid --older-than: \"99999999999999999d\" is too large; expected a whole number \
         followed by d, h, m or s (e.g. 30d)"
            .into(),
    ));

    let before = snapshot(&f.ctx.store);
    for (args, code, message) in &cases {
        assert_eq!(&f.ctx.run(args).failed(), message, "{args:?}");
        let (c, m) = f.ctx.json(args).json_error();
        assert_eq!((c.as_str(), &m), (*code, message), "{args:?} --json");
    }
    assert_eq!(
        snapshot(&f.ctx.store),
        before,
        "a failed command changed the store"
    );
    assert!(!missing_file.exists());
}

#[test]
fn a_missing_store_is_reported_and_not_created() {
    let ctx = Ctx::new();
    let commands: [&[&str]; 12] = [
        &["executions"],
        &["resumable"],
        &["show", "cust-42"],
        &["history", "cust-42"],
        &["checkpoint", "01J9Z3W4K5M6N7P8Q9R0S1T2V3"],
        &["verify"],
        &["stats"],
        &["audit"],
        &["rollback", "cust-42", "--to", "kyc"],
        &["fork", "cust-42", "--at", "kyc"],
        &["gc"],
        &["prune", "--older-than", "30d"],
    ];
    let expected = format!(
        "no Omium store at {}; check the path (--store / OMIUM_HOME), or create the store by \
         opening it for writing (Store::open in Rust, omium.init() in Python)",
        ctx.store_display()
    );
    for args in commands {
        assert_eq!(ctx.run(args).failed(), expected, "{args:?}");
        let (code, msg) = ctx.json(args).json_error();
        assert_eq!(code, "store_not_found");
        assert_eq!(msg, expected);
        assert!(!ctx.store.exists(), "{args:?} created the store directory");
    }
    // An existing directory that holds no store is not turned into one either.
    std::fs::create_dir(&ctx.store).unwrap();
    for args in commands {
        assert_eq!(ctx.run(args).failed(), expected, "{args:?}");
        assert_eq!(
            std::fs::read_dir(&ctx.store).unwrap().count(),
            0,
            "{args:?} wrote into the directory"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_give_a_json_error_with_json() {
    let ctx = Ctx::new();
    for args in [
        &["bogus"][..],
        &["show"],
        &["rollback", "cust-42"],
        &["executions", "--bogus"],
        &[],
    ] {
        let out = ctx.run(args);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stdout.is_empty());
        assert!(out.stderr.contains("Usage: omium"), "{}", out.stderr);
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let mut c = ctx.command();
        c.args(&with_json);
        let out = ctx.exec(c);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.is_empty(), "{}", out.stderr);
        let v = out.json();
        assert_eq!(v["error"]["code"], "usage", "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let mut c = ctx.command();
    c.args(["--json", "show"]);
    let v = ctx.exec(c).json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<EXECUTION>"),
        "{v}"
    );
    let out = ctx.run(&["--help"]).ok().text();
    for cmd in [
        "executions",
        "resumable",
        "show",
        "history",
        "checkpoint",
        "verify",
        "rollback",
        "fork",
        "gc",
        "prune",
        "stats",
        "audit",
    ] {
        assert!(
            out.contains(&format!("\n  {cmd} ")),
            "{cmd} in --help:\n{out}"
        );
    }
    assert!(ctx.run(&["--version"]).ok().text().starts_with("omium "));
}

/// Flips one bit of the first stored chunk, opening the RocksDB directory directly.
fn corrupt_a_chunk(store: &Path) {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, store).unwrap();
    let db = rocksdb::DB::open_cf(&opts, store, cfs).unwrap();
    let cf = db.cf_handle("chunks").unwrap();
    let (k, v) = db
        .iterator_cf(cf, rocksdb::IteratorMode::Start)
        .next()
        .expect("the store has chunks")
        .unwrap();
    let mut v = v.to_vec();
    let last = v.len() - 1;
    v[last] ^= 0x40;
    db.put_cf(cf, &k, &v).unwrap();
}

#[test]
fn a_corrupt_chunk_is_named_by_verify_and_refused_by_checkpoint_state() {
    let f = fixture();
    corrupt_a_chunk(&f.ctx.store);
    let prefix = format!(
        "integrity error in checkpoint {} of execution \"cust-42\": chunk ",
        f.offer
    );

    let out = f.ctx.run(&["verify"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let text = out.text();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "CORRUPT  execution \"cust-42\" checkpoint {}: {prefix}",
            f.offer
        )),
        "{text}"
    );
    assert!(
        lines[1].starts_with("FAILED: 4 executions, 5 checkpoints, ")
            && lines[1].ends_with("; 1 problems"),
        "{text}"
    );
    let out = f.ctx.json(&["verify", "cust-42"]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1);
    let p = &v["problems"][0];
    assert_eq!(keys(p), set(&["execution", "checkpoint", "error"]));
    assert_eq!(p["execution"], "cust-42");
    assert_eq!(p["checkpoint"], f.offer.as_str());
    assert!(p["error"].as_str().unwrap().starts_with(&prefix), "{p}");
    // Other executions still verify.
    f.ctx.run(&["verify", "cust-7"]).ok();

    // The state is refused, and no partial bytes reach stdout.
    let msg = f.ctx.run(&["checkpoint", &f.offer, "--state"]).failed();
    assert!(msg.starts_with(&prefix), "{msg}");
    assert!(
        msg.contains("does not match its hash") || msg.contains("cannot be decoded"),
        "{msg}"
    );
    let (code, msg) = f
        .ctx
        .json(&["checkpoint", &f.offer, "--state"])
        .json_error();
    assert_eq!(code, "integrity");
    assert!(msg.starts_with(&prefix), "{msg}");
    // The metadata and the other states are still readable.
    f.ctx.run(&["checkpoint", &f.offer]).ok();
    assert_eq!(
        f.ctx.run(&["checkpoint", &f.credit, "--state"]).ok().stdout,
        b"712"
    );
}

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_alone() {
    let f = fixture();
    let format_version = |put: Option<u32>| {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, &f.ctx.store).unwrap();
        let db = rocksdb::DB::open_cf(&opts, &f.ctx.store, cfs).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        if let Some(v) = put {
            db.put_cf(meta, b"format_version", v.to_le_bytes()).unwrap();
        }
        db.get_cf(meta, b"format_version").unwrap().unwrap()
    };
    format_version(Some(99));
    let expected = format!(
        "store {} was written by a newer Omium (format version 99; this build reads up to {}); \
         upgrade Omium to open it",
        f.ctx.store_display(),
        omium_core::FORMAT_VERSION
    );
    for args in [
        &["executions"][..],
        &["verify"],
        &["gc"],
        &["rollback", "cust-42", "--to", "kyc_doc_validated"],
    ] {
        assert_eq!(f.ctx.run(args).failed(), expected, "{args:?}");
        assert_eq!(
            f.ctx.json(args).json_error(),
            ("newer_format".into(), expected.clone())
        );
    }
    assert_eq!(format_version(None), 99u32.to_le_bytes());
}

/// A state whose codec is recorded (as the bindings record it): `checkpoint --value` and `show`
/// decode it, `fork --state-file` and `resume --state-file` take JSON and store it in the
/// execution's codec, and states that cannot be shown say why.
#[test]
fn states_with_a_recorded_codec_are_shown_decoded_and_edited_as_json() {
    let ctx = Ctx::new();
    let store = Store::open(&ctx.store).unwrap();
    let codec = |c: &str| BTreeMap::from([("omium.codec".to_string(), c.to_string())]);
    let run = store
        .begin(
            "mp",
            BeginOptions {
                workflow: "w".into(),
                labels: codec("msgpack"),
                ..Default::default()
            },
        )
        .unwrap();
    // msgpack of {"score": 712, "raw": b"\x00\x01"}, and the same step in pickle.
    let packed = b"\x82\xa5score\xcd\x02\xc8\xa3raw\xc4\x02\x00\x01";
    let record = |name: &str, state: &[u8], c: &str| {
        run.record(
            run.reserve(),
            NewCheckpoint {
                name,
                state,
                metadata: codec(c),
                ..Default::default()
            },
        )
        .unwrap()
        .id
        .to_string()
    };
    let pickled = record("pickled", b"\x80\x04K\x01.", "pickle");
    let scored = record("score", packed, "msgpack");
    run.pause("a human looks").unwrap();
    drop(run);
    drop(store);

    let v = ctx.run(&["checkpoint", &scored, "--value"]).ok().json();
    assert_eq!(
        v,
        serde_json::json!({"score": 712, "raw": {"__omium__": "bytes", "v": "AAE="}})
    );
    let out = ctx.run(&["show", "mp"]).ok().text();
    assert!(
        out.lines().any(|l| l.starts_with("state       {")
            && l.contains(r#""score":712"#)
            && l.contains(r#""raw":{"__omium__":"bytes","v":"AAE="}"#)),
        "{out}"
    );
    assert_eq!(
        ctx.json(&["show", "mp"]).ok().json()["head_state"]["score"],
        712
    );
    let err = ctx.run(&["checkpoint", &pickled, "--value"]).failed();
    assert!(err.contains("pickle states are Python objects"), "{err}");

    // A fork with a state written as JSON: stored as msgpack, shown as the JSON again.
    let edited = ctx.dir.path().join("edited.json");
    std::fs::write(&edited, br#"{"score": 640}"#).unwrap();
    ctx.run(&[
        "fork",
        "mp",
        "--at",
        &scored,
        "--id",
        "mp-b",
        "--state-file",
        edited.to_str().unwrap(),
    ])
    .ok();
    let h = ctx.json(&["history", "mp-b"]).ok().json();
    let copy = h[1]["id"].as_str().unwrap().to_string();
    assert_eq!(h[1]["metadata"]["omium.codec"], "msgpack");
    assert_eq!(
        ctx.run(&["checkpoint", &copy, "--state"]).ok().stdout,
        b"\x81\xa5score\xcd\x02\x80"
    );
    assert_eq!(
        ctx.run(&["checkpoint", &copy, "--value"]).ok().json(),
        serde_json::json!({"score": 640})
    );
    // Not JSON: refused, naming the file's role, and nothing is made.
    std::fs::write(&edited, b"score=640").unwrap();
    let err = ctx
        .run(&[
            "fork",
            "mp",
            "--at",
            &scored,
            "--id",
            "mp-c",
            "--state-file",
            edited.to_str().unwrap(),
        ])
        .failed();
    assert!(
        err.contains("omium fork --state-file: the execution's states are msgpack, so the new state must be JSON"),
        "{err}"
    );
    assert!(ctx
        .run(&["show", "mp-c"])
        .failed()
        .contains("unknown execution"));
}
