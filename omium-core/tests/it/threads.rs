//! Framework checkpoints (`Store::threads`): what a LangGraph-style checkpointer relies on —
//! latest and by-id reads, list filters, pending-write rules, delete / copy / prune, values
//! stored once through the blob store, GC that keeps what threads reference, and stores
//! written before the thread column families existed.

use omium_core::threads::{ListQuery, NewValue, NewWrite, PutCheckpoint, Threads};
use omium_core::{Durability, OpenOptions, Store};

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

/// Puts checkpoint `id` whose state is `values` (each channel at version `v<id>`), with
/// metadata fields `step` and `run_id`.
fn put(
    t: &Threads,
    thread: &str,
    ns: &str,
    id: &str,
    parent: Option<&str>,
    run: &str,
    values: &[(&str, &[u8])],
) {
    let version = format!("v{id}");
    let channels = values
        .iter()
        .map(|(c, _)| (c.to_string(), version.clone()))
        .collect();
    let fields = vec![
        ("step".to_string(), id.to_string()),
        ("run_id".to_string(), format!("\"{run}\"")),
    ];
    t.put(&PutCheckpoint {
        thread_id: thread,
        ns,
        checkpoint_id: id,
        parent_id: parent,
        checkpoint_type: "raw",
        checkpoint: format!("checkpoint {id}").as_bytes(),
        metadata_type: "raw",
        metadata: format!("meta {id}").as_bytes(),
        fields,
        run_id: Some(run),
        channels,
        values: values
            .iter()
            .map(|(c, v)| NewValue {
                channel: c,
                version: &version,
                value_type: "bytes",
                value: v,
            })
            .collect(),
    })
    .unwrap();
}

fn ids(list: &[omium_core::ThreadTuple]) -> Vec<String> {
    list.iter()
        .map(|t| t.checkpoint.checkpoint_id.clone())
        .collect()
}

#[test]
fn get_returns_the_newest_or_the_named_checkpoint_with_its_values() {
    let (_d, s) = store();
    let t = s.threads();
    assert!(t.get("t1", "", None).unwrap().is_none());
    put(&t, "t1", "", "0001", None, "r1", &[("a", b"one")]);
    put(
        &t,
        "t1",
        "",
        "0003",
        Some("0001"),
        "r1",
        &[("a", b"three"), ("b", b"bee")],
    );
    put(&t, "t1", "", "0002", Some("0001"), "r1", &[("a", b"two")]);
    put(&t, "t1", "sub:1", "0009", None, "r1", &[("a", b"sub")]);

    // Newest by id, whatever the insertion order; namespaces apart.
    let latest = t.get("t1", "", None).unwrap().unwrap();
    assert_eq!(latest.checkpoint.checkpoint_id, "0003");
    assert_eq!(latest.checkpoint.parent_id.as_deref(), Some("0001"));
    assert_eq!(latest.checkpoint.checkpoint, b"checkpoint 0003");
    let values: Vec<_> = latest
        .values
        .iter()
        .map(|v| (v.channel.as_str(), v.value.as_slice()))
        .collect();
    assert_eq!(values, vec![("a", &b"three"[..]), ("b", &b"bee"[..])]);
    assert_eq!(
        t.get("t1", "sub:1", None)
            .unwrap()
            .unwrap()
            .checkpoint
            .checkpoint_id,
        "0009"
    );

    let named = t.get("t1", "", Some("0001")).unwrap().unwrap();
    assert_eq!(named.values[0].value, b"one");
    assert!(t.get("t1", "", Some("0004")).unwrap().is_none());
    assert!(t.get("t2", "", None).unwrap().is_none());
}

#[test]
fn a_channel_whose_version_is_not_stored_is_absent_not_an_error() {
    let (_d, s) = store();
    let t = s.threads();
    t.put(&PutCheckpoint {
        thread_id: "t",
        checkpoint_id: "1",
        channels: vec![("never-written".into(), "v9".into())],
        ..Default::default()
    })
    .unwrap();
    assert!(t.get("t", "", None).unwrap().unwrap().values.is_empty());
}

#[test]
fn pending_writes_keep_regular_indexes_and_replace_special_ones() {
    let (_d, s) = store();
    let t = s.threads();
    put(&t, "t", "", "1", None, "r", &[]);
    let w = |idx, v: &'static [u8]| NewWrite {
        idx,
        channel: "ch",
        value_type: "bytes",
        value: v,
    };
    t.put_writes(
        "t",
        "",
        "1",
        "task-b",
        "~path/1",
        &[w(0, b"b0"), w(1, b"b1")],
    )
    .unwrap();
    t.put_writes(
        "t",
        "",
        "1",
        "task-a",
        "~path/2",
        &[w(0, b"a0"), w(-3, b"interrupt-1")],
    )
    .unwrap();
    // A re-run task writes again: regular indexes keep the first write, special ones change.
    t.put_writes(
        "t",
        "",
        "1",
        "task-a",
        "~path/2",
        &[w(0, b"a0-again"), w(-3, b"interrupt-2")],
    )
    .unwrap();
    let got = t.get("t", "", None).unwrap().unwrap().writes;
    let seen: Vec<_> = got
        .iter()
        .map(|w| (w.task_id.as_str(), w.idx, w.value.as_slice()))
        .collect();
    // Ordered by task path, then task id, then index.
    assert_eq!(
        seen,
        vec![
            ("task-b", 0, &b"b0"[..]),
            ("task-b", 1, &b"b1"[..]),
            ("task-a", -3, &b"interrupt-2"[..]),
            ("task-a", 0, &b"a0"[..]),
        ]
    );
    assert_eq!(got[0].task_path, "~path/1");
}

#[test]
fn list_filters_by_namespace_before_limit_metadata_and_spans_threads() {
    let (_d, s) = store();
    let t = s.threads();
    for (i, id) in ["01", "02", "03", "04"].iter().enumerate() {
        put(
            &t,
            "t1",
            "",
            id,
            None,
            if i < 2 { "r1" } else { "r2" },
            &[("a", b"x")],
        );
    }
    put(&t, "t1", "child", "05", None, "r2", &[]);
    put(&t, "t2", "", "06", None, "r3", &[]);

    let q = |f: fn(&mut ListQuery)| {
        let mut q = ListQuery::default();
        f(&mut q);
        ids(&t.list(&q).unwrap())
    };
    assert_eq!(q(|_| {}), ["06", "05", "04", "03", "02", "01"]);
    assert_eq!(
        q(|q| q.thread_id = Some("t1".into())),
        ["05", "04", "03", "02", "01"]
    );
    assert_eq!(
        q(|q| {
            q.thread_id = Some("t1".into());
            q.ns = Some("".into());
            q.before = Some("04".into());
            q.limit = Some(2);
        }),
        ["03", "02"]
    );
    assert_eq!(
        q(|q| q.filter = vec![("run_id".into(), "\"r2\"".into())]),
        ["05", "04", "03"]
    );
    assert_eq!(
        q(|q| q.filter = vec![
            ("run_id".into(), "\"r2\"".into()),
            ("step".into(), "03".into())
        ]),
        ["03"]
    );
    assert_eq!(q(|q| q.checkpoint_id = Some("02".into())), ["02"]);
    assert!(q(|q| q.limit = Some(0)).is_empty());
    assert!(q(|q| q.thread_id = Some("nobody".into())).is_empty());
}

#[test]
fn delete_copy_prune_and_delete_for_runs() {
    let (_d, s) = store();
    let t = s.threads();
    let w = [NewWrite {
        idx: 0,
        channel: "ch",
        value_type: "bytes",
        value: b"w",
    }];
    for ns in ["", "child"] {
        put(&t, "src", ns, "1", None, "run-a", &[("a", b"one")]);
        put(&t, "src", ns, "2", Some("1"), "run-b", &[("a", b"two")]);
        t.put_writes("src", ns, "2", "task", "", &w).unwrap();
    }
    put(&t, "other", "", "1", None, "run-a", &[("a", b"x")]);

    // copy: every checkpoint, namespace, value and write; the source unchanged.
    assert_eq!(t.copy_thread("src", "dst").unwrap(), 4);
    for ns in ["", "child"] {
        let d = t.get("dst", ns, None).unwrap().unwrap();
        assert_eq!(d.checkpoint.thread_id, "dst");
        assert_eq!(d.values[0].value, b"two");
        assert_eq!(d.writes.len(), 1);
        assert_eq!(
            t.get("dst", ns, Some("1")).unwrap().unwrap().values[0].value,
            b"one"
        );
    }
    assert_eq!(
        t.list(&ListQuery {
            thread_id: Some("src".into()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        4
    );

    // prune keep_latest: one checkpoint per namespace, with its writes and values.
    assert_eq!(t.prune(&["dst".into()], true).unwrap(), 2);
    let left = t
        .list(&ListQuery {
            thread_id: Some("dst".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(&left), ["2", "2"]);
    assert!(left
        .iter()
        .all(|c| c.writes.len() == 1 && c.values[0].value == b"two"));

    // delete_for_runs: only that run's checkpoints, in every thread and namespace.
    assert_eq!(t.delete_for_runs(&["run-a".into()]).unwrap(), 3);
    assert!(t.get("src", "", Some("1")).unwrap().is_none());
    assert!(t.get("other", "", None).unwrap().is_none());
    assert_eq!(
        t.get("src", "", None).unwrap().unwrap().values[0].value,
        b"two"
    );
    assert_eq!(t.delete_for_runs(&[]).unwrap(), 0);

    // delete_thread: everything of the thread, nothing else.
    t.delete_thread("src").unwrap();
    assert!(t
        .list(&ListQuery {
            thread_id: Some("src".into()),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    assert_eq!(
        t.list(&ListQuery {
            thread_id: Some("dst".into()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        2
    );

    // prune "delete" removes the thread.
    assert_eq!(t.prune(&["dst".into(), "nobody".into()], false).unwrap(), 2);
    assert!(t.list(&ListQuery::default()).unwrap().is_empty());

    assert!(s.verify(None).unwrap().ok());
    // Every one of these operations is in the audit chain, which still verifies.
    let report = s.verify_audit().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let actions: Vec<String> = s
        .audit_entries(1, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "thread.checkpoint",
        "thread.writes",
        "thread.copy",
        "thread.prune",
        "thread.delete_runs",
        "thread.delete",
    ] {
        assert!(actions.iter().any(|x| x == a), "no {a} in {actions:?}");
    }
}

/// A conversation of `n` messages of ~150 bytes, as a growing serialized list.
fn conversation(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "{{\"role\":\"user\",\"content\":\"message {i}: {}\"}}",
                "lorem ipsum dolor ".repeat(6 + i % 5)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

#[test]
fn unchanged_and_repeated_values_are_stored_once_and_appends_cost_new_bytes() {
    let (_d, s) = store();
    let t = s.threads();
    let mut raw = 0u64;
    for step in 1..=300 {
        let state = conversation(step);
        raw += state.len() as u64;
        let id = format!("{step:05}");
        put(&t, "chat", "", &id, None, "r", &[("messages", &state)]);
    }
    let stats = s.stats().unwrap();
    // 300 versions of a list that reaches ~50 KB: storing each in full would be ~7.5 MB.
    assert!(raw > 7_000_000, "{raw}");
    assert!(
        stats.chunk_bytes * 20 < raw,
        "chunks {} bytes for {raw} raw bytes",
        stats.chunk_bytes
    );

    // The same value in another thread adds no chunk (content-addressed).
    let before = s.stats().unwrap().chunks;
    put(
        &t,
        "chat-copy",
        "",
        "1",
        None,
        "r",
        &[("messages", &conversation(300))],
    );
    assert_eq!(s.stats().unwrap().chunks, before);
    assert_eq!(
        t.get("chat-copy", "", None).unwrap().unwrap().values[0].value,
        conversation(300)
    );
}

#[test]
fn gc_keeps_chunks_threads_reference_and_collects_them_once_deleted() {
    let (_d, s) = store();
    let t = s.threads();
    let big = conversation(400);
    let write = conversation(300);
    put(&t, "keep", "", "1", None, "r", &[("m", &big)]);
    t.put_writes(
        "keep",
        "",
        "1",
        "task",
        "",
        &[NewWrite {
            idx: 0,
            channel: "m",
            value_type: "bytes",
            value: &write,
        }],
    )
    .unwrap();
    put(
        &t,
        "drop",
        "",
        "1",
        None,
        "r",
        &[("m", &conversation(10).repeat(40))],
    );

    let report = s.gc().unwrap();
    assert_eq!(report.chunks_removed, 0);
    let kept = t.get("keep", "", None).unwrap().unwrap();
    assert_eq!(kept.values[0].value, big);
    assert_eq!(kept.writes[0].value, write);

    t.delete_thread("drop").unwrap();
    let report = s.gc().unwrap();
    assert!(report.chunks_removed > 0, "{report:?}");
    let kept = t.get("keep", "", None).unwrap().unwrap();
    assert_eq!(kept.values[0].value, big);
    assert_eq!(kept.writes[0].value, write);
}

#[test]
fn a_corrupt_chunk_is_an_integrity_error_naming_the_thread_and_channel() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        put(
            &s.threads(),
            "t",
            "",
            "1",
            None,
            "r",
            &[("messages", &conversation(200))],
        );
    }
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let cfs = rocksdb::DB::list_cf(&opts, dir.path()).unwrap();
        let db = rocksdb::DB::open_cf(&opts, dir.path(), &cfs).unwrap();
        let cf = db.cf_handle("chunks").unwrap();
        let (k, v) = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .next()
            .unwrap()
            .unwrap();
        let mut v = v.to_vec();
        let last = v.len() - 1;
        v[last] ^= 0xff;
        db.put_cf(cf, k, v).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    // `verify` (what `omium verify` runs) finds it too, naming the thread and checkpoint.
    let report = s.verify(None).unwrap();
    assert!(!report.ok());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].execution, "thread t");
    assert_eq!(report.problems[0].checkpoint.as_deref(), Some("1"));
    let err = s.threads().get("t", "", None).unwrap_err();
    assert_eq!(err.code(), "integrity");
    let msg = err.to_string();
    assert!(
        msg.contains("checkpoint 1 of execution \"thread t\""),
        "{msg}"
    );
    assert!(msg.contains("channel \"messages\""), "{msg}");
}

#[test]
fn stores_written_before_thread_families_still_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        // What an older build left: the same store without the thread column families.
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, dir.path()).unwrap();
        let mut db = rocksdb::DB::open_cf(&opts, dir.path(), &cfs).unwrap();
        for cf in ["thread_checkpoints", "thread_values", "thread_writes"] {
            db.drop_cf(cf).unwrap();
        }
    }
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(reader.threads().get("t", "", None).unwrap().is_none());
    assert!(reader
        .threads()
        .list(&ListQuery::default())
        .unwrap()
        .is_empty());
    drop(reader);
    let writer = Store::open(dir.path()).unwrap();
    put(&writer.threads(), "t", "", "1", None, "r", &[("a", b"x")]);
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(
        reader.threads().get("t", "", None).unwrap().unwrap().values[0].value,
        b"x"
    );
    // A reader cannot write, and says so.
    let err = reader.threads().delete_thread("t").unwrap_err();
    assert_eq!(err.code(), "read_only");
}

#[test]
fn bad_ids_are_refused_with_what_and_why() {
    let (_d, s) = store();
    let err = s
        .threads()
        .put(&PutCheckpoint {
            thread_id: "t",
            checkpoint_id: "",
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid checkpoint_id: empty; a checkpoint needs an id"
    );
    let err = s
        .threads()
        .put(&PutCheckpoint {
            thread_id: "a\0b",
            checkpoint_id: "1",
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid thread_id: \"a\\0b\" contains a NUL character; ids must not"
    );
}

#[test]
fn sync_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        put(
            &s.threads().with_durability(Durability::Sync),
            "t",
            "",
            "1",
            None,
            "r",
            &[("a", b"v")],
        );
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(
        s.threads().get("t", "", None).unwrap().unwrap().values[0].value,
        b"v"
    );
}
