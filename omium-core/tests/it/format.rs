//! Format 2: a step writes its checkpoint record and audit entry only; the execution record and
//! the checkpoint index catch up at begin, finish, rollback, fork and lease renewal, and every
//! reader derives what a running execution's record does not count yet.

use omium_core::store::Cf;
use omium_core::{exec_key, BeginOptions, Execution, NewCheckpoint, Status, Store};

fn record_on_disk(s: &Store, id: &str) -> Execution {
    let raw = s.get(Cf::Executions, &exec_key(id)).unwrap().unwrap();
    omium_storage::codec::decode("execution", &|| id.into(), &raw).unwrap()
}

fn step(run: &omium_core::Run, name: &str) -> omium_core::Checkpoint {
    let seq = run.reserve();
    assert!(run.recorded(seq, name, None).unwrap().is_none());
    run.record(
        seq,
        NewCheckpoint {
            name,
            state: format!("{{\"step\":\"{name}\"}}").as_bytes(),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn steps_leave_the_record_behind_and_every_reader_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let s = Store::open(&path).unwrap();
    let run = s.begin("e", BeginOptions::default()).unwrap();
    let names = ["plan", "llm_call", "tool_call", "reflect", "answer"];
    let ids: Vec<_> = names.iter().map(|n| step(&run, n).id).collect();

    // On disk: the record as begin wrote it, and no index entries.
    let stale = record_on_disk(&s, "e");
    assert_eq!((stale.checkpoint_count, stale.head), (0, None));
    for id in &ids {
        assert!(s
            .get(Cf::CheckpointIndex, &id.to_bytes())
            .unwrap()
            .is_none());
    }
    // Every reader sees the execution whole.
    let e = s.execution("e").unwrap();
    assert_eq!((e.checkpoint_count, e.next_global_seq), (5, 6));
    assert_eq!(e.head, Some(ids[4]));
    assert_eq!(run.execution(), e);
    let listed = s.executions().unwrap();
    assert_eq!(listed[0].checkpoint_count, 5);
    assert_eq!(s.checkpoint(&ids[2].to_string()).unwrap().name, "tool_call");
    let history: Vec<_> = s
        .history("e")
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(history, names);
    // A step recorded by this run and looked up again is read back from the store.
    let again = run.recorded(3, "tool_call", None).unwrap().unwrap();
    assert_eq!(s.read_state(&again).unwrap(), br#"{"step":"tool_call"}"#);
    assert!(s.verify(None).unwrap().ok());

    // The process dies (a dropped run writes nothing): another opener derives the same.
    drop(run);
    drop(s);
    {
        let r = Store::open_read_only(&path).unwrap();
        let e = r.execution("e").unwrap();
        assert_eq!((e.status, e.checkpoint_count), (Status::Running, 5));
        assert_eq!(e.head, Some(ids[4]));
        assert_eq!(r.checkpoint(&ids[0].to_string()).unwrap().name, "plan");
        assert_eq!(r.executions().unwrap()[0].checkpoint_count, 5);
    }
    let s = Store::open(&path).unwrap();
    let run = s.begin("e", BeginOptions::default()).unwrap();
    // Begin wrote the record and the index entries of the five steps.
    assert_eq!(record_on_disk(&s, "e").checkpoint_count, 5);
    for id in &ids {
        assert!(s
            .get(Cf::CheckpointIndex, &id.to_bytes())
            .unwrap()
            .is_some());
    }
    for n in names {
        let seq = run.reserve();
        assert!(run.recorded(seq, n, None).unwrap().is_some(), "{n} replays");
    }
    let last = step(&run, "finish");
    assert!(
        last.id > ids[4],
        "a new step's id is larger than every id before"
    );
    run.complete(None).unwrap();
    let on_disk = record_on_disk(&s, "e");
    assert_eq!(
        (on_disk.status, on_disk.checkpoint_count, on_disk.head),
        (Status::Completed, 6, Some(last.id))
    );
    assert!(s
        .get(Cf::CheckpointIndex, &last.id.to_bytes())
        .unwrap()
        .is_some());
    assert!(s.verify(None).unwrap().ok());
}

#[test]
fn a_rollback_and_a_new_run_after_it_derive_the_new_branch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("store")).unwrap();
    let run = s.begin("e", BeginOptions::default()).unwrap();
    for n in ["a", "b", "c"] {
        step(&run, n);
    }
    run.fail("boom").unwrap();
    drop(run);
    s.rollback("e", &omium_core::RollbackTarget::parse("a"), None)
        .unwrap();
    let run = s.begin("e", BeginOptions::default()).unwrap();
    let seq = run.reserve();
    assert!(run.recorded(seq, "a", None).unwrap().is_some());
    step(&run, "b2");
    drop(run); // killed after one new step
    let e = s.execution("e").unwrap();
    assert_eq!((e.checkpoint_count, e.next_global_seq), (5, 6));
    let names: Vec<_> = s
        .history("e")
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a", "rollback to a", "b2"]);
    assert_eq!(s.checkpoints("e").unwrap().len(), 5);
    assert!(s.verify(None).unwrap().ok());
}

/// A resumed run with many chunked states reads them ahead on a helper thread: every replayed
/// step still gets its own verified bytes, in replay order or not, and a corrupt chunk is still
/// an integrity error for the step that uses it.
#[test]
fn a_resumed_run_reads_chunked_states_ahead_and_still_verifies_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let state = |i: usize| -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|k| (k.wrapping_mul(2_654_435_761) ^ i as u32).to_le_bytes())
            .collect()
    };
    let n = 24;
    {
        let s = Store::open(&path).unwrap();
        let run = s.begin("big", BeginOptions::default()).unwrap();
        for i in 0..n {
            let out = run.step(&format!("s{i}"), || Ok::<_, omium_core::Error>(state(i)));
            assert_eq!(out.unwrap(), state(i));
        }
    }
    let s = Store::open(&path).unwrap();
    let run = s.begin("big", BeginOptions::default()).unwrap();
    // Out of order first: positions 10 and 3 (the helper reads in replay order).
    for i in [10usize, 3] {
        let c = run
            .recorded(i as u64 + 1, &format!("s{i}"), None)
            .unwrap()
            .unwrap();
        assert_eq!(run.read_state(&c).unwrap(), state(i), "step {i}");
    }
    for i in 0..n {
        let seq = run.reserve();
        let c = run.recorded(seq, &format!("s{i}"), None).unwrap().unwrap();
        assert_eq!(run.read_state(&c).unwrap(), state(i), "step {i}");
    }
    drop(run);

    // Two threads of one run replaying at once (a binding's thread pool): while one waits for
    // a state another thread reads, it reads the next one itself; each gets its own bytes.
    let run = s.begin("big", BeginOptions::default()).unwrap();
    let recorded: Vec<_> = (0..n)
        .map(|i| {
            let c = run.recorded(i as u64 + 1, &format!("s{i}"), None);
            c.unwrap().unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (run, recorded) = (&run, &recorded);
            scope.spawn(move || {
                for i in (0..n).map(|i| if t == 0 { i } else { n - 1 - i }) {
                    assert_eq!(run.read_state(&recorded[i]).unwrap(), state(i), "step {i}");
                }
            });
        }
    });
    drop(run);

    // Corrupt one chunk of step 5: its replay fails with an integrity error, the others read.
    let c5 = s.history("big").unwrap()[5].clone();
    let omium_core::StateRef::Chunked(m) = &c5.state else {
        panic!("a 80 KB state is chunked")
    };
    s.db()
        .put_cf(
            s.db().cf_handle("chunks").unwrap(),
            m.chunks[0].hash,
            [0u8, 1, 2, 3],
        )
        .unwrap();
    let run = s.begin("big", BeginOptions::default()).unwrap();
    for i in 0..n {
        let seq = run.reserve();
        let c = run.recorded(seq, &format!("s{i}"), None).unwrap().unwrap();
        match run.read_state(&c) {
            Ok(b) => assert!(i != 5 && b == state(i), "step {i}"),
            Err(e) => assert!(i == 5 && e.code() == "integrity", "step {i}: {e}"),
        }
    }
}

/// A chunked state is read with one hash over its bytes (the state's checksum); when they do
/// not match, the error names the chunk whose stored bytes are corrupt, or says that the
/// manifest is wrong when every chunk matches its own hash.
#[test]
fn a_chunked_read_hashes_once_and_still_names_what_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("store")).unwrap();
    let state: Vec<u8> = (0..40_000u32)
        .flat_map(|k| k.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let run = s.begin("e", BeginOptions::default()).unwrap();
    let seq = run.reserve();
    let c = run
        .record(
            seq,
            NewCheckpoint {
                name: "big",
                state: &state,
                ..Default::default()
            },
        )
        .unwrap();
    s.settle_compression();
    assert_eq!(s.read_state(&c).unwrap(), state);
    let omium_core::StateRef::Chunked(m) = &c.state else {
        panic!("a 160 KB state is chunked")
    };
    assert!(m.chunks.len() >= 3, "{} chunks", m.chunks.len());
    let err = |r: omium_core::Result<Vec<u8>>| match r {
        Ok(_) => panic!("a corrupt state was read"),
        Err(e) => {
            assert_eq!(e.code(), "integrity", "{e}");
            e.to_string()
        }
    };

    // The manifest names the right chunks in the wrong order: each matches its hash.
    let mut swapped = m.clone();
    swapped.chunks.swap(0, 1);
    let wrong = omium_core::StateRef::Chunked(swapped);
    let msg = err(s.read_blob(&wrong, &c.checksum, c.raw_size, &|detail| {
        omium_core::Error::Integrity {
            checkpoint: c.id.to_string(),
            execution: "e".into(),
            detail,
        }
    }));
    assert!(msg.contains("the manifest is wrong"), "{msg}");

    // Chunk 1 stored raw with one byte flipped: same length, so it decodes.
    let i = 1;
    let start: usize = m.chunks[..i].iter().map(|c| c.len as usize).sum();
    let mut bad = vec![0u8]; // the raw codec byte
    bad.extend_from_slice(&state[start..start + m.chunks[i].len as usize]);
    bad[10] ^= 0xff;
    let chunks = s.db().cf_handle("chunks").unwrap();
    s.db().put_cf(chunks, m.chunks[i].hash, &bad).unwrap();
    let msg = err(s.read_state(&c));
    let hex: String = m.chunks[i]
        .hash
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        msg.contains(&format!("chunk 1 ({hex}) does not match its hash")),
        "{msg}"
    );

    // A chunk that decodes to a different length is named as it is decoded.
    s.db()
        .put_cf(chunks, m.chunks[i].hash, &bad[..100])
        .unwrap();
    let msg = err(s.read_state(&c));
    assert!(
        msg.contains(&format!("chunk 1 ({hex}) cannot be decoded")),
        "{msg}"
    );
}

/// However fast a run records, its record lags at most 256 steps: it goes with every 256th.
#[test]
fn the_record_is_written_with_every_256th_step() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("store")).unwrap();
    let run = s.begin("e", BeginOptions::default()).unwrap();
    for i in 0..300 {
        step(&run, &format!("s{i}"));
    }
    let on_disk = record_on_disk(&s, "e");
    assert_eq!(on_disk.checkpoint_count, 256);
    assert_eq!(s.execution("e").unwrap().checkpoint_count, 300);
    let history = s.history("e").unwrap();
    assert!(s
        .get(Cf::CheckpointIndex, &history[255].id.to_bytes())
        .unwrap()
        .is_some());
    assert!(s
        .get(Cf::CheckpointIndex, &history[256].id.to_bytes())
        .unwrap()
        .is_none());
}
