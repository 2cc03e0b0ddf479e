//! Behaviour a user of the engine relies on: durable steps, resume, rollback, fork, cuts,
//! leases, content-addressed state, GC, audit, and the errors for bad input.

use std::collections::BTreeMap;
use std::sync::Arc;

use omium_core::{
    AuditHead, BeginOptions, CheckResult, CheckpointKind, Checks, Durability, Error, ForkOptions,
    NewCheckpoint, OpenOptions, RollbackTarget, Status, Store,
};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(
        dir.path(),
        OpenOptions {
            durability: Durability::Buffered,
            ..Default::default()
        },
    )
    .unwrap();
    (dir, s)
}

fn ok(b: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(b.to_vec())
}

fn names(s: &Store, id: &str) -> Vec<String> {
    s.history(id).unwrap().into_iter().map(|c| c.name).collect()
}

#[test]
fn resume_replays_recorded_steps_and_runs_the_rest() {
    let (_d, s) = store();
    let mut ran = Vec::new();
    {
        let run = s.begin("cust-42", BeginOptions::default()).unwrap();
        run.step("kyc", || {
            ran.push("kyc");
            ok(b"kyc-ok")
        })
        .unwrap();
        run.step("score", || {
            ran.push("score");
            ok(b"712")
        })
        .unwrap();
        // The process "dies" here: no complete().
    }
    assert_eq!(
        s.resumable()
            .unwrap()
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["cust-42"]
    );
    let run = s.begin("cust-42", BeginOptions::default()).unwrap();
    let kyc = run.step("kyc", || {
        ran.push("kyc again");
        ok(b"other")
    });
    assert_eq!(kyc.unwrap(), b"kyc-ok");
    assert_eq!(run.step("score", || ok(b"999")).unwrap(), b"712");
    run.step("offer", || {
        ran.push("offer");
        ok(b"gold")
    })
    .unwrap();
    run.complete(Some(b"done")).unwrap();
    assert_eq!(ran, ["kyc", "score", "offer"]);
    let e = s.execution("cust-42").unwrap();
    assert_eq!(e.status, Status::Completed);
    assert_eq!(e.attempts, 2);
    assert_eq!(s.execution_output("cust-42").unwrap().unwrap(), b"done");
    assert!(s.resumable().unwrap().is_empty());
}

#[test]
fn a_different_step_at_a_recorded_position_is_non_determinism() {
    let (_d, s) = store();
    drop(
        s.begin("e", BeginOptions::default())
            .unwrap()
            .step("fetch", || ok(b"1"))
            .unwrap(),
    );
    let run = s.begin("e", BeginOptions::default()).unwrap();
    let err = run.step("summarise", || ok(b"2")).unwrap_err();
    assert_eq!(err.code(), "non_determinism");
    assert_eq!(
        err.to_string(),
        "non-determinism in execution \"e\" at step 1: the journal recorded \"fetch\" there but the code now calls \"summarise\"; \
         the workflow code changed since the run was recorded — fork the execution or start a new execution id"
    );
}

#[test]
fn keyed_steps_match_by_key_whatever_the_order() {
    let (_d, s) = store();
    {
        let run = s.begin("k", BeginOptions::default()).unwrap();
        for (name, key) in [("fetch", "url-a"), ("fetch", "url-b")] {
            let seq = run.reserve();
            run.record(
                seq,
                NewCheckpoint {
                    name,
                    key: Some(key),
                    state: key.as_bytes(),
                    ..Default::default()
                },
            )
            .unwrap();
        }
    }
    let run = s.begin("k", BeginOptions::default()).unwrap();
    // Scheduled the other way round this time.
    for key in ["url-b", "url-a"] {
        let seq = run.reserve();
        let c = run
            .recorded(seq, "fetch", Some(key))
            .unwrap()
            .expect("recorded");
        assert_eq!(s.read_state(&c).unwrap(), key.as_bytes());
    }
}

#[test]
fn a_second_run_of_a_running_execution_is_refused() {
    let (_d, s) = store();
    let _run = s.begin("busy", BeginOptions::default()).unwrap();
    let err = s.begin("busy", BeginOptions::default()).err().unwrap();
    assert_eq!(err.code(), "execution_leased");
    assert!(
        err.to_string()
            .starts_with("execution \"busy\" is being run by "),
        "{err}"
    );
    assert!(
        s.resumable().unwrap().is_empty(),
        "a live run is not resumable"
    );
}

/// A finished run that is dropped after the next run of its execution began must leave that
/// run's hold alone (`omium serve` drops a session's run after its worker's next begin can
/// already have started).
#[test]
fn dropping_a_finished_run_keeps_the_next_runs_lease() {
    let (_d, s) = store();
    let first = s.begin("handoff", BeginOptions::default()).unwrap();
    first.complete(None).unwrap();
    let second = s.begin("handoff", BeginOptions::default()).unwrap();
    drop(first);
    assert_eq!(second.execution().status, Status::Running);
    let err = s.begin("handoff", BeginOptions::default()).err().unwrap();
    assert_eq!(err.code(), "execution_leased", "{err}");
    // A run dropped without finishing still releases its execution.
    drop(second);
    let third = s.begin("handoff", BeginOptions::default()).unwrap();
    assert_eq!(third.execution().attempts, 3);
}

#[test]
fn a_reopened_store_treats_old_leases_as_dead() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        let run = s.begin("orphan", BeginOptions::default()).unwrap();
        run.step("a", || ok(b"x")).unwrap();
        // The process dies holding the lease: no complete(), and the lease stays on disk.
        drop(run);
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.resumable().unwrap().len(), 1);
    let run = s.begin("orphan", BeginOptions::default()).unwrap();
    assert_eq!(run.step("a", || ok(b"y")).unwrap(), b"x");
}

#[test]
fn rollback_by_name_id_and_last_consistent_keeps_the_old_branch() {
    let (_d, s) = store();
    let run = s.begin("r", BeginOptions::default()).unwrap();
    let a = run
        .record(
            run.reserve(),
            NewCheckpoint {
                name: "a",
                state: b"A",
                ..Default::default()
            },
        )
        .unwrap();
    run.step("b", || ok(b"B")).unwrap();
    let bad = Checks {
        preconditions: vec![],
        postconditions: vec![CheckResult {
            expression: "result.ok".into(),
            passed: false,
        }],
    };
    run.record(
        run.reserve(),
        NewCheckpoint {
            name: "c",
            state: b"C",
            checks: bad,
            ..Default::default()
        },
    )
    .unwrap();
    run.complete(None).unwrap();
    drop(run);

    let m = s
        .rollback(
            "r",
            &RollbackTarget::LastConsistent,
            Some("c failed its check"),
        )
        .unwrap();
    assert_eq!(m.kind, CheckpointKind::Rollback);
    assert_eq!(names(&s, "r"), ["a", "b", "rollback to b"]);
    assert_eq!(s.execution("r").unwrap().status, Status::Pending);
    assert_eq!(s.resumable().unwrap()[0].id, "r");

    s.rollback("r", &RollbackTarget::Id(a.id.to_string()), None)
        .unwrap();
    assert_eq!(names(&s, "r"), ["a", "rollback to a"]);
    // Every checkpoint is still readable.
    assert_eq!(s.checkpoints("r").unwrap().len(), 5);

    // Steps after the target run again, on a new branch.
    let run = s.begin("r", BeginOptions::default()).unwrap();
    assert_eq!(run.step("a", || ok(b"never")).unwrap(), b"A");
    assert_eq!(run.step("b", || ok(b"B2")).unwrap(), b"B2");
    run.complete(None).unwrap();
    assert_eq!(names(&s, "r"), ["a", "rollback to a", "b"]);

    s.rollback("r", &RollbackTarget::Name("a".into()), None)
        .unwrap();
    assert_eq!(names(&s, "r").last().unwrap(), "rollback to a");
    // The abandoned branch is still there, checkpoint by checkpoint.
    let all = s.checkpoints("r").unwrap();
    let old_tip = all.iter().find(|c| c.name == "c").unwrap();
    let old: Vec<String> = s
        .branch(&old_tip.id.to_string())
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(old, ["a", "b", "c"]);
    assert!(s.verify(Some("r")).unwrap().ok());
}

#[test]
fn rollback_errors_name_what_is_wrong_and_change_nothing() {
    let (_d, s) = store();
    let run = s.begin("x", BeginOptions::default()).unwrap();
    run.step("a", || ok(b"1")).unwrap();
    run.complete(None).unwrap();
    let other = s.begin("y", BeginOptions::default()).unwrap();
    let foreign = other
        .record(
            other.reserve(),
            NewCheckpoint {
                name: "z",
                state: b"2",
                ..Default::default()
            },
        )
        .unwrap();
    let audit_before = s.audit_entries(1, 1000).unwrap().len();
    let head_before = s.execution("x").unwrap().head;

    let err = s
        .rollback("x", &RollbackTarget::Id(foreign.id.to_string()), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("checkpoint {} belongs to execution \"y\", not \"x\"; use a checkpoint of \"x\" (`omium history x` lists them)", foreign.id)
    );
    let err = s
        .rollback("x", &RollbackTarget::Name("nope".into()), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "execution \"x\" has no checkpoint named \"nope\"; `omium history x` lists its checkpoints"
    );
    let err = s
        .rollback("ghost", &RollbackTarget::Name("a".into()), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown execution \"ghost\"; `omium executions` lists the executions of this store"
    );
    let err = s
        .rollback(
            "x",
            &RollbackTarget::Id("01J9Z3W4K5M6N7P8Q9R0S1T2V3".into()),
            None,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown checkpoint 01J9Z3W4K5M6N7P8Q9R0S1T2V3; `omium history <execution>` lists checkpoints");
    let err = s.checkpoint("not-an-id").unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert!(
        err.to_string()
            .contains("\"not-an-id\" is not a checkpoint id"),
        "{err}"
    );
    let err = s
        .rollback("y", &RollbackTarget::Name("z".into()), None)
        .unwrap_err();
    assert_eq!(
        err.code(),
        "invalid_state",
        "a running execution cannot be rolled back: {err}"
    );

    assert_eq!(s.audit_entries(1, 1000).unwrap().len(), audit_before);
    assert_eq!(s.execution("x").unwrap().head, head_before);
}

#[test]
fn fork_with_edited_state_reruns_from_there_and_keeps_the_source() {
    let (_d, s) = store();
    let run = s
        .begin(
            "src",
            BeginOptions {
                input: Some(b"in".to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    run.step("plan", || ok(b"plan-v1")).unwrap();
    run.step("act", || ok(b"act-v1")).unwrap();
    run.complete(None).unwrap();
    drop(run);

    let f = s
        .fork(
            "src",
            &RollbackTarget::Name("plan".into()),
            ForkOptions {
                new_execution_id: Some("try2".into()),
                state: Some(b"plan-v2".to_vec()),
            },
        )
        .unwrap();
    assert_eq!(f.status, Status::Pending);
    assert_eq!(f.labels["forked_from"].split('@').next().unwrap(), "src");
    assert_eq!(s.execution_input("try2").unwrap().unwrap(), b"in");
    let run = s.begin("try2", BeginOptions::default()).unwrap();
    assert_eq!(run.step("plan", || ok(b"never")).unwrap(), b"plan-v2");
    assert_eq!(run.step("act", || ok(b"act-v2")).unwrap(), b"act-v2");
    run.complete(None).unwrap();
    assert_eq!(names(&s, "src"), ["plan", "act"]);
    assert_eq!(names(&s, "try2"), ["plan", "fork of src at plan", "act"]);

    let err = s
        .fork(
            "src",
            &RollbackTarget::Name("plan".into()),
            ForkOptions {
                new_execution_id: Some("try2".into()),
                state: None,
            },
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("execution \"try2\" already exists"),
        "{err}"
    );
    assert!(s.verify(None).unwrap().ok());
}

#[test]
fn consistent_cut_rolls_every_agent_back_together() {
    let (_d, s) = store();
    let run = s.begin("multi", BeginOptions::default()).unwrap();
    let rec = |agent: &str, name: &str| {
        run.record(
            run.reserve(),
            NewCheckpoint {
                name,
                agent: Some(agent),
                state: name.as_bytes(),
                ..Default::default()
            },
        )
        .unwrap()
    };
    rec("kyc", "kyc1");
    rec("credit", "credit1");
    let mid = rec("kyc", "kyc2");
    rec("credit", "credit2");
    rec("offer", "offer1");
    run.complete(None).unwrap();
    drop(run);

    let cut = s.consistent_cut("multi", Some(mid.global_seq)).unwrap();
    let at: BTreeMap<_, _> = cut
        .agents
        .iter()
        .map(|(a, c)| (a.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(at, BTreeMap::from([("credit", "credit1"), ("kyc", "kyc2")]));

    s.rollback("multi", &RollbackTarget::GlobalSeq(mid.global_seq), None)
        .unwrap();
    let now = s.consistent_cut("multi", None).unwrap();
    let at: BTreeMap<_, _> = now
        .agents
        .iter()
        .map(|(a, c)| (a.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(at, BTreeMap::from([("credit", "credit1"), ("kyc", "kyc2")]));
}

#[test]
fn appending_state_costs_new_bytes_and_shared_chunks_are_stored_once() {
    let (_d, s) = store();
    let run = s.begin("chat", BeginOptions::default()).unwrap();
    let mut convo = Vec::new();
    let (mut added, mut chunk_bytes_at_100) = (0, 0);
    for i in 0..200 {
        convo.extend_from_slice(
            format!(
                "message {i}: {}\n",
                "the quick brown fox jumps over the lazy dog ".repeat(11)
            )
            .as_bytes(),
        );
        let c = record(&run, "turn", &convo);
        assert_eq!(s.read_state(&c).unwrap(), convo);
        if i > 100 {
            added += c.stored_size;
        }
        if i == 100 {
            chunk_bytes_at_100 = s.stats().unwrap().chunk_bytes;
        }
    }
    // ~500 raw bytes per turn, plus the rewritten tail chunk (stored raw by the step, 8 KiB
    // on average): far from the ~100 KB a full snapshot would cost per turn.
    let per_turn = added / 99;
    assert!(
        per_turn < 16 * 1024,
        "each appended turn wrote {per_turn} bytes"
    );
    // Once the background compressor is done, the store keeps less than that per turn.
    let stats = s.stats().unwrap();
    let kept = (stats.chunk_bytes - chunk_bytes_at_100) / 99;
    assert!(kept < 8 * 1024, "each appended turn kept {kept} bytes");
    assert!(
        stats.raw_state_bytes > 20 * (stats.chunk_bytes + stats.inline_bytes),
        "{stats:?}"
    );
}

/// A compressible state of `kib` KiB, different for every `seed`.
fn text_state(seed: u32, kib: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(kib * 1024);
    let mut i = seed;
    while out.len() < kib * 1024 {
        out.extend_from_slice(
            format!("turn {i}: the agent called the tool and got {}\n", i * 7).as_bytes(),
        );
        i += 1;
    }
    out
}

/// Records `state` as the run's next step `name`.
fn record(run: &omium_core::Run, name: &str, state: &[u8]) -> omium_core::Checkpoint {
    run.record(
        run.reserve(),
        NewCheckpoint {
            name,
            state,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn new_chunks_are_written_raw_and_compressed_after_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let run = s.begin("big", BeginOptions::default()).unwrap();
    let state = text_state(0, 200);
    let c = record(&run, "s", &state);
    // The step wrote its new chunks as they are (one codec byte each) ...
    assert!(c.stored_size > state.len() as u64, "{}", c.stored_size);
    // ... and reads them back, whether the compressor got to them yet or not.
    assert_eq!(s.read_state(&c).unwrap(), state);
    // The compressor rewrites them (stats waits for it); they read the same.
    let stats = s.stats().unwrap();
    assert!(
        stats.chunk_bytes * 3 < state.len() as u64,
        "text compresses: {stats:?}"
    );
    assert_eq!(s.read_state(&c).unwrap(), state);
    assert!(s.verify(None).unwrap().ok());
    // Closing compresses what is queued: a state recorded right before close is compressed
    // when the store opens again.
    let second = text_state(1_000_000, 200);
    let c2 = record(&run, "s2", &second);
    drop(run);
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    let before = s.stats().unwrap().chunk_bytes;
    assert!(before * 3 < 2 * state.len() as u64, "{before}");
    assert_eq!(s.read_state(&c2).unwrap(), second);
    assert!(s.verify(None).unwrap().ok());
}

#[test]
fn gc_racing_the_compressor_never_brings_a_chunk_back() {
    let (_d, s) = store();
    for round in 0..20u32 {
        let id = format!("gone-{round}");
        let run = s.begin(&id, BeginOptions::default()).unwrap();
        let state = text_state(round * 100_000, 150);
        record(&run, "s", &state);
        run.complete(None).unwrap();
        drop(run);
        // GC right away: before, during or after the compressor's rewrite of these chunks.
        s.delete_execution(&id).unwrap();
        s.gc().unwrap();
        s.settle_compression();
        let stats = s.stats().unwrap();
        assert_eq!(stats.chunks, 0, "round {round}: {stats:?}");
    }
}

#[test]
fn gc_removes_only_unreferenced_chunks() {
    let (_d, s) = store();
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    for id in ["keep", "drop"] {
        let run = s.begin(id, BeginOptions::default()).unwrap();
        let mut state = big.clone();
        state.extend_from_slice(id.as_bytes());
        record(&run, "s", &state);
        run.complete(None).unwrap();
    }
    assert_eq!(s.gc().unwrap().chunks_removed, 0);
    s.delete_execution("drop").unwrap();
    let r = s.gc().unwrap();
    assert!(r.chunks_removed >= 1, "{r:?}");
    assert!(r.chunks_live >= 5, "300 KB at most 64 KiB per chunk: {r:?}");
    let c = s.history("keep").unwrap().pop().unwrap();
    assert_eq!(&s.read_state(&c).unwrap()[..big.len()], &big[..]);
    assert!(s.verify(None).unwrap().ok());
}

#[test]
fn retention_deletes_old_executions_then_collects() {
    let (_d, s) = store();
    let run = s.begin("old", BeginOptions::default()).unwrap();
    run.record(
        run.reserve(),
        NewCheckpoint {
            name: "s",
            state: &vec![7u8; 50_000],
            ..Default::default()
        },
    )
    .unwrap();
    run.complete(None).unwrap();
    drop(run);
    let live = s.begin("live", BeginOptions::default()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = s
        .delete_older_than(std::time::Duration::from_millis(5))
        .unwrap();
    assert_eq!(
        r.executions_deleted, 1,
        "the running execution is kept: {r:?}"
    );
    assert!(r.gc.chunks_removed >= 1);
    assert_eq!(
        s.execution("old").unwrap_err().code(),
        "execution_not_found"
    );
    drop(live);
}

#[test]
fn many_writers_commit_together_and_the_audit_chain_holds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap(); // sync: exercises group commit
    let s = Arc::new(s);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let run = s.begin(&format!("w{t}"), BeginOptions::default()).unwrap();
                for i in 0..25 {
                    run.step(&format!("s{i}"), || ok(format!("{t}/{i}").as_bytes()))
                        .unwrap();
                }
                run.complete(None).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = s.verify(None).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checkpoints, 200);
    // begin + 25 checkpoints + complete per writer.
    assert_eq!(report.audit.entries, 8 * 27);
}

#[test]
fn secondary_sees_the_writers_progress_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let w = Store::open(dir.path()).unwrap();
    let run = w.begin("live", BeginOptions::default()).unwrap();
    run.step("a", || ok(b"1")).unwrap();
    let r = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(r.history("live").unwrap().len(), 1);
    run.step("b", || ok(b"2")).unwrap();
    r.refresh().unwrap();
    assert_eq!(r.history("live").unwrap().len(), 2);
    let err = r
        .rollback("live", &RollbackTarget::Name("a".into()), None)
        .unwrap_err();
    assert_eq!(err.code(), "read_only");
    assert!(
        r.resumable().unwrap().is_empty(),
        "the writer's process is alive and its lease valid"
    );
}

#[test]
fn audit_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        let run = s.begin("a", BeginOptions::default()).unwrap();
        run.step("x", || ok(b"1")).unwrap();
        run.complete(None).unwrap();
        assert!(s.verify_audit().unwrap().problems.is_empty());
    }
    // Edit entry #2 behind Omium's back.
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("audit").unwrap();
        let mut v = db.get_cf(cf, 2u64.to_be_bytes()).unwrap().unwrap();
        let pos = v
            .windows(17)
            .position(|w| w == b"checkpoint.create")
            .unwrap();
        v[pos] = b'C';
        db.put_cf(cf, 2u64.to_be_bytes(), v).unwrap();
    }
    let s = Store::open_read_only(dir.path()).unwrap();
    let report = s.verify(None).unwrap();
    assert!(!report.ok());
    assert_eq!(
        report.audit.problems,
        ["audit entry #2: hash mismatch (the entry was modified)"]
    );
}

/// An intact chain says nothing about entries cut off its end; a head recorded elsewhere does.
#[test]
fn a_cut_off_audit_tail_is_detected_against_a_recorded_head() {
    let dir = tempfile::tempdir().unwrap();
    let work = |s: &Store, id: &str| {
        let run = s.begin(id, BeginOptions::default()).unwrap();
        run.step("x", || ok(b"1")).unwrap();
        run.complete(None).unwrap();
    };
    let head = {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.audit_head().unwrap(), None);
        work(&s, "a");
        let head = s.audit_head().unwrap().unwrap();
        assert_eq!(head.seq, s.audit_entries(1, 1000).unwrap().len() as u64);
        assert_eq!(s.verify(None).unwrap().audit.head, Some(head));
        assert_eq!(head.to_string().parse::<AuditHead>().unwrap(), head);
        // Entries after the head are history that came later, not a problem.
        work(&s, "b");
        let r = s.verify_expecting(None, Some(&head)).unwrap();
        assert!(r.ok(), "{r:#?}");
        head
    };
    // Cut the log off just before the recorded head, behind Omium's back: what remains is a
    // chain that verifies on its own.
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("audit").unwrap();
        let last = db
            .iterator_cf(cf, rocksdb::IteratorMode::End)
            .next()
            .unwrap()
            .unwrap();
        let last = u64::from_be_bytes(last.0.as_ref().try_into().unwrap());
        for seq in head.seq - 1..=last {
            db.delete_cf(cf, seq.to_be_bytes()).unwrap();
        }
    }
    let cut = head.seq - 2;
    {
        let s = Store::open_read_only(dir.path()).unwrap();
        assert!(s.verify(None).unwrap().ok(), "alone, a cut chain verifies");
        let r = s.verify_expecting(None, Some(&head)).unwrap();
        assert!(!r.ok());
        assert_eq!(
            r.audit.problems,
            [format!(
                "audit head {head}: entry #{} is missing; the log ends at entry #{cut}: the \
                 entries from #{} on were cut off",
                head.seq,
                cut + 1,
            )]
        );
    }
    // New entries chained onto the cut log fill the head's position with another hash.
    let s = Store::open(dir.path()).unwrap();
    work(&s, "c");
    let r = s.verify_expecting(Some("c"), Some(&head)).unwrap();
    assert_eq!(r.audit.problems.len(), 1, "{r:#?}");
    let p = &r.audit.problems[0];
    assert!(
        p.starts_with(&format!("audit head {head}: entry #{} has hash ", head.seq))
            && p.ends_with(&format!(
                "; the log was rewritten at or before entry #{}",
                head.seq
            )),
        "{p}"
    );
    for bad in ["", "7", "0:00", "x:ab", &format!("3:{}", "g".repeat(64))] {
        let err = bad.parse::<AuditHead>().unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(
            err.to_string().starts_with("invalid audit head: ")
                && err.to_string().contains("expected SEQ:HASH"),
            "{err}"
        );
    }
    // An unreadable entry where the head was is a problem of the report, not an error.
    drop(s);
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("audit").unwrap();
        db.put_cf(cf, head.seq.to_be_bytes(), b"\x01garbage")
            .unwrap();
    }
    let s = Store::open_read_only(dir.path()).unwrap();
    let r = s.verify_expecting(None, Some(&head)).unwrap();
    assert!(
        r.audit.problems.iter().any(|p| p.starts_with(&format!(
            "audit head {head}: entry #{} cannot be read (",
            head.seq
        )) && p.ends_with("the log was damaged at or before it")),
        "{r:#?}"
    );
}

#[test]
fn a_flipped_chunk_byte_is_an_integrity_error_naming_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let id = {
        let s = Store::open(dir.path()).unwrap();
        let run = s.begin("c", BeginOptions::default()).unwrap();
        let c = run
            .record(
                run.reserve(),
                NewCheckpoint {
                    name: "big",
                    state: &big,
                    ..Default::default()
                },
            )
            .unwrap();
        run.complete(None).unwrap();
        c.id
    };
    {
        let db = raw_db(dir.path());
        let cf = db.cf_handle("chunks").unwrap();
        let (k, mut v) = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .next()
            .unwrap()
            .unwrap();
        let v2: &mut [u8] = &mut v;
        let last = v2.len() - 1;
        v2[last] ^= 0x40;
        db.put_cf(cf, &k, &v).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let c = s.checkpoint(&id.to_string()).unwrap();
    let err = s.read_state(&c).unwrap_err();
    assert_eq!(err.code(), "integrity");
    assert!(
        err.to_string().starts_with(&format!(
            "integrity error in checkpoint {id} of execution \"c\": chunk "
        )),
        "{err}"
    );
    let report = s.verify(None).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        report.problems[0].checkpoint.as_deref(),
        Some(id.to_string().as_str())
    );
}

fn raw_db(path: &std::path::Path) -> rocksdb::DB {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, path).unwrap();
    rocksdb::DB::open_cf(&opts, path, cfs).unwrap()
}

#[test]
fn run_after_finish_is_refused_and_empty_ids_are_rejected() {
    let (_d, s) = store();
    let run = s.begin("f", BeginOptions::default()).unwrap();
    run.complete(None).unwrap();
    let err = run
        .record(
            run.reserve(),
            NewCheckpoint {
                name: "late",
                state: b"",
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), "invalid_state");
    let err = s.begin("", BeginOptions::default()).err().unwrap();
    assert_eq!(
        err.to_string(),
        "invalid execution id: it is empty; pass a non-empty string"
    );
}

/// The worker process of `a_worker_killed_under_serve_is_recoverable_at_once`: begins an
/// execution on the daemon with a long lease, records three steps, says READY and waits to be
/// killed.
#[test]
#[ignore = "the worker process of a_worker_killed_under_serve_is_recoverable_at_once"]
fn serve_worker_child() {
    use omium_core::serve::{b64, Client};
    let url = std::env::var("OMIUM_SERVE_URL").expect("OMIUM_SERVE_URL");
    let id = std::env::var("OMIUM_SERVE_EXECUTION").expect("OMIUM_SERVE_EXECUTION");
    let client = Client::connect(&url, None).unwrap();
    // Five minutes: only the death of this process can make the execution resumable in time.
    let (run, _) = client
        .begin(&id, serde_json::json!({"lease_ttl": 300.0}))
        .unwrap();
    for i in 0..3 {
        let seq = run.reserve().unwrap();
        run.record(
            seq,
            serde_json::json!({"name": format!("s{i}"), "state": b64(format!("state {i}").as_bytes())}),
        )
        .unwrap();
    }
    println!("READY");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// A supervisor calls `recover()` right after it saw a worker exit: the daemon must know at
/// once that the worker is gone (not at its reaper's next tick), 50 times in a row.
#[test]
fn a_worker_killed_under_serve_is_recoverable_at_once() {
    use omium_core::serve::{Client, Daemon, ServeConfig};
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sock = dir.path().join("omium.sock");
    let _daemon = rt
        .block_on(Daemon::start(
            &store,
            ServeConfig {
                socket: Some(sock.clone()),
                ..Default::default()
            },
        ))
        .unwrap();
    let url = format!("unix://{}", sock.display());
    let client = Client::connect(&url, None).unwrap();
    for round in 0..50 {
        let id = format!("killed-{round}");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "engine::serve_worker_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OMIUM_SERVE_URL", &url)
            .env("OMIUM_SERVE_EXECUTION", &id)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let ready = out
            .lines()
            .map_while(|l| l.ok())
            .any(|l| l.ends_with("READY"));
        assert!(ready, "round {round}: the worker ended before READY");
        child.kill().unwrap();
        child.wait().unwrap();

        let resumable: Vec<omium_core::Execution> =
            client.call_as("resumable", serde_json::json!({})).unwrap();
        assert!(
            resumable.iter().any(|e| e.id == id),
            "round {round}: {id} is not resumable right after its worker was killed"
        );
        let (run, execution) = client.begin(&id, serde_json::json!({})).unwrap();
        assert_eq!(execution.status, Status::Running);
        for i in 0..3 {
            let seq = run.reserve().unwrap();
            let (_, state) = run
                .recorded(seq, &format!("s{i}"), None)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: step s{i} was not replayed"));
            assert_eq!(state, format!("state {i}").as_bytes());
        }
        run.complete(None).unwrap();
        run.close().unwrap();
    }
}

#[test]
fn positions_of_nested_and_keyed_steps_are_the_cores() {
    let (_d, s) = store();
    let run = s.begin("nested", BeginOptions::default()).unwrap();
    assert_eq!(run.position(None, None), (1, None));
    assert_eq!(run.position(None, Some("k")), (2, Some("k".into())));
    // Children of a step count in call order; a keyed child keeps its key and is counted too.
    assert_eq!(run.position(Some("1"), None), (0, Some("1/0".into())));
    assert_eq!(run.position(Some("1"), Some("x")), (0, Some("1/x".into())));
    assert_eq!(run.position(Some("1"), None), (0, Some("1/2".into())));
    assert_eq!(run.position(Some("1/0"), None), (0, Some("1/0/0".into())));
    assert_eq!(run.position(Some("k"), None), (0, Some("k/0".into())));
    assert_eq!(run.position(None, None), (3, None));
    drop(run);
    // A new run of the execution counts from the top again, as its code re-runs from the top.
    let again = s.begin("nested", BeginOptions::default()).unwrap();
    assert_eq!(again.position(None, None), (1, None));
    assert_eq!(again.position(Some("1"), None), (0, Some("1/0".into())));
}
