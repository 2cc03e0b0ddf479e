//! Old stores open, verify, resume and record with today's code: stores written before codecs
//! were recorded (`tests/fixtures/pre-codec`, by the demo at the commit before the change) and
//! a format-1 store (`tests/fixtures/format-1`, where every step rewrote the execution record)
//! and a format-2 store (`tests/fixtures/format-2`, whose chunks are zstd-compressed).

use std::path::{Path, PathBuf};

use omium_core::{BeginOptions, NewCheckpoint, Run, Status, Store};

/// A copy of a fixture store (the committed files are never opened).
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    copy_from("pre-codec", name)
}

fn copy_from(fixture: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture)
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join(name);
    std::fs::create_dir(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    (dir, to)
}

fn names(s: &Store, id: &str) -> Vec<String> {
    s.history(id).unwrap().into_iter().map(|c| c.name).collect()
}

#[test]
fn a_killed_run_written_before_codecs_were_recorded_resumes_and_records() {
    let (_d, path) = copy_of("killed");
    let s = Store::open(&path).unwrap();
    assert!(s.verify(None).unwrap().ok());
    let resumable: Vec<String> = s.resumable().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(resumable, ["cust-42"]);
    assert_eq!(names(&s, "cust-42"), ["kyc_doc_validated", "credit_score"]);
    // Its states are readable bytes; no codec is named, so the JSON view says so.
    let first = &s.history("cust-42").unwrap()[0];
    assert!(!s.read_state(first).unwrap().is_empty());
    assert!(!first.metadata.contains_key("omium.codec"));
    let e = s.state_value(first).unwrap_err();
    assert_eq!(e.code(), "decode");
    assert!(e.to_string().contains("codec is not recorded"), "{e}");

    // The same code resumes it: the two recorded steps replay, the rest are recorded now.
    let run = s
        .begin(
            "cust-42",
            BeginOptions {
                workflow: "customer_onboarding".into(),
                ..Default::default()
            },
        )
        .unwrap();
    for name in ["kyc_doc_validated", "credit_score"] {
        let seq = run.reserve();
        assert!(
            run.recorded(seq, name, None).unwrap().is_some(),
            "{name} replays"
        );
    }
    for name in ["offer", "notify_customer"] {
        let seq = run.reserve();
        assert!(run.recorded(seq, name, None).unwrap().is_none());
        let state = format!(r#"{{"step": "{name}"}}"#);
        let meta = [("omium.codec".to_string(), "json".to_string())].into();
        run.record(
            seq,
            NewCheckpoint {
                name,
                state: state.as_bytes(),
                metadata: meta,
                ..Default::default()
            },
        )
        .unwrap();
    }
    run.complete(None).unwrap();
    drop(run);
    assert_eq!(s.execution("cust-42").unwrap().status, Status::Completed);
    assert_eq!(
        names(&s, "cust-42"),
        [
            "kyc_doc_validated",
            "credit_score",
            "offer",
            "notify_customer"
        ]
    );
    let last = s.history("cust-42").unwrap().pop().unwrap();
    assert_eq!(
        s.state_value(&last).unwrap()["step"],
        "notify_customer",
        "new steps name their codec"
    );
    assert!(s.verify(None).unwrap().ok());
}

#[test]
fn a_completed_execution_with_a_rollback_written_before_codecs_verifies_and_forks() {
    let (_d, path) = copy_of("completed");
    let s = Store::open(&path).unwrap();
    let report = s.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.checkpoints, report.audit.entries), (8, 13));
    let e = s.execution("cust-42").unwrap();
    assert_eq!(e.status, Status::Completed);
    assert_eq!(
        names(&s, "cust-42"),
        [
            "kyc_doc_validated",
            "rollback to kyc_doc_validated",
            "credit_score",
            "offer",
            "notify_customer"
        ]
    );
    // The abandoned branch stays readable, and today's operations work on the old records.
    assert_eq!(s.checkpoints("cust-42").unwrap().len(), 8);
    let forked = s
        .fork(
            "cust-42",
            &omium_core::RollbackTarget::parse("credit_score"),
            omium_core::ForkOptions {
                new_execution_id: Some("cust-42-b".into()),
                state: None,
            },
        )
        .unwrap();
    assert_eq!(forked.status, Status::Pending);
    assert!(s.verify(None).unwrap().ok());
}

#[test]
fn a_format_1_store_opens_resumes_and_is_marked_format_2() {
    let (_d, path) = copy_from("format-1", "store");
    // Read-only first: a format-1 store reads as it is, and is not marked.
    {
        let r = Store::open_read_only(&path).unwrap();
        assert_eq!(r.execution("killed").unwrap().checkpoint_count, 4);
    }
    let s = Store::open(&path).unwrap();
    let report = s.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 9);
    let done = s.execution("done").unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(
        names(&s, "done"),
        ["plan", "llm_call", "rollback to llm_call", "tool_call"]
    );
    assert_eq!(s.execution_output("done").unwrap().unwrap(), br#"{"ok":2}"#);

    let killed = s.execution("killed").unwrap();
    assert_eq!(killed.status, Status::Running);
    assert_eq!(killed.checkpoint_count, 4);
    assert_eq!(killed.next_global_seq, 5);
    let history = s.history("killed").unwrap();
    assert_eq!(killed.head, Some(history[3].id));
    assert_eq!(s.read_state(&history[1]).unwrap().len(), 13_790);
    // Found by id through the index format 1 wrote.
    assert_eq!(
        s.checkpoint(&history[2].id.to_string()).unwrap().name,
        "tool_call"
    );

    // Resume it: the four steps replay (the keyed one by its key), two more are recorded.
    let run = s.begin("killed", BeginOptions::default()).unwrap();
    for (name, key) in [
        ("plan", None),
        ("llm_call", None),
        ("tool_call", Some("tool:abc")),
        ("reflect", None),
    ] {
        let seq = run.reserve();
        let c = run.recorded(seq, name, key).unwrap();
        assert!(c.is_some(), "{name} replays");
    }
    record_new_steps_and_complete(
        &s,
        run,
        &[("summarize", b"summarize"), ("answer", b"answer")],
        6,
    );
    drop(s);

    // Marked with today's format: a build of format 1 would refuse it now.
    assert_eq!(format_mark(&path), omium_core::FORMAT_VERSION);
}

/// Records `steps` as new steps of the resumed run of "killed", completes it, and checks that it
/// is completed with `count` checkpoints and that the store verifies.
fn record_new_steps_and_complete(s: &Store, run: Run, steps: &[(&str, &[u8])], count: u64) {
    for &(name, state) in steps {
        let seq = run.reserve();
        assert!(run.recorded(seq, name, None).unwrap().is_none());
        run.record(
            seq,
            NewCheckpoint {
                name,
                state,
                ..Default::default()
            },
        )
        .unwrap();
    }
    run.complete(Some(b"done")).unwrap();
    drop(run);
    let e = s.execution("killed").unwrap();
    assert_eq!((e.status, e.checkpoint_count), (Status::Completed, count));
    assert!(s.verify(None).unwrap().ok());
}

fn read_only_db(path: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        path,
        rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap(),
        false,
    )
    .unwrap()
}

fn format_mark(path: &Path) -> u32 {
    let db = read_only_db(path);
    let meta = db.cf_handle("meta").unwrap();
    let v = db.get_cf(meta, b"format_version").unwrap().unwrap();
    u32::from_le_bytes(v.try_into().unwrap())
}

/// How many stored chunks begin with each codec byte (raw, zstd, LZ4).
fn codec_bytes(path: &Path) -> [usize; 3] {
    let db = read_only_db(path);
    let cf = db.cf_handle("chunks").unwrap();
    let mut n = [0; 3];
    for kv in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
        n[kv.unwrap().1[0] as usize] += 1;
    }
    n
}

#[test]
fn a_format_2_store_with_zstd_chunks_opens_resumes_and_is_marked_format_3() {
    let (_d, path) = copy_from("format-2", "store");
    assert_eq!(format_mark(&path), 2);
    let [_, zstd, lz4] = codec_bytes(&path);
    assert!(
        zstd > 0 && lz4 == 0,
        "the fixture holds zstd chunks: {zstd}, {lz4}"
    );
    {
        let r = Store::open_read_only(&path).unwrap();
        assert_eq!(r.execution("killed").unwrap().checkpoint_count, 3);
    }
    assert_eq!(format_mark(&path), 2, "a reader does not mark it");
    let s = Store::open(&path).unwrap();
    let report = s.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints, 6);
    assert_eq!(s.execution("done").unwrap().status, Status::Completed);
    assert_eq!(names(&s, "done"), ["plan", "llm_call", "tool_call"]);
    // The zstd-compressed state reads back whole (its checksum verified on the read).
    let done = s.history("done").unwrap();
    let state = s.read_state(&done[1]).unwrap();
    assert_eq!(state.len(), 17_790);
    assert!(state.starts_with(br#"[{"role": "assistant", "turn": 0, "content": "done lorem"#));

    // Resume the killed run: three steps replay (the keyed one by its key), two are recorded,
    // one of them a new chunked state (LZ4 chunks beside the zstd ones).
    let run = s.begin("killed", BeginOptions::default()).unwrap();
    for (name, key) in [
        ("plan", None),
        ("llm_call", None),
        ("tool_call", Some("tool:abc")),
    ] {
        let seq = run.reserve();
        let c = run.recorded(seq, name, key).unwrap();
        let c = c.unwrap_or_else(|| panic!("{name} replays"));
        if name == "llm_call" {
            assert_eq!(run.read_state(&c).unwrap().len(), 19_390);
        }
    }
    let grown = [state.as_slice(), &state].concat();
    record_new_steps_and_complete(&s, run, &[("summarize", b"{}"), ("answer", &grown)], 5);
    let answer = s.history("killed").unwrap().pop().unwrap();
    assert_eq!(s.read_state(&answer).unwrap(), grown);
    drop(s);

    // Closed, the new chunks are LZ4; the old ones are as they were; the store is format 3.
    let [_, zstd_after, lz4] = codec_bytes(&path);
    assert_eq!(zstd_after, zstd);
    assert!(lz4 > 0, "new chunks are LZ4");
    assert_eq!(format_mark(&path), 3);
    let s = Store::open_read_only(&path).unwrap();
    assert!(s.verify(None).unwrap().ok());
}
