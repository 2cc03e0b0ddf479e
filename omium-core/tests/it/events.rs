//! The event feed over a real store: types and subjects, the cursor, filters, a follower woken
//! by a write in another thread, and a read-only follower of a writer.

use std::time::{Duration, Instant};

use omium_core::events::{EventFilter, EventStore};
use omium_core::{BeginOptions, RollbackTarget, Store};

fn run_two_steps(store: &Store, id: &str) {
    let run = store.begin(id, BeginOptions::default()).unwrap();
    run.step("a", || Ok::<_, omium_core::Error>(b"1".to_vec()))
        .unwrap();
    run.step("b", || Ok::<_, omium_core::Error>(b"2".to_vec()))
        .unwrap();
    run.complete(Some(b"done")).unwrap();
}

fn kinds(store: &Store, since: u64, filter: &EventFilter) -> Vec<String> {
    let page = store.events(since, 1000, filter).unwrap();
    page.events.into_iter().map(|e| e.kind).collect()
}

#[test]
fn every_change_is_an_event_in_order_with_its_subject_and_a_gap_free_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    run_two_steps(&store, "e1");
    store
        .rollback("e1", &RollbackTarget::Name("a".into()), Some("bad b"))
        .unwrap();
    let all = store.events(0, 1000, &EventFilter::default()).unwrap();
    let got: Vec<(&str, Option<&str>)> = all
        .events
        .iter()
        .map(|e| (e.kind.as_str(), e.subject.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("execution.started", Some("e1")),
            ("checkpoint.created", Some("e1")),
            ("checkpoint.created", Some("e1")),
            ("execution.completed", Some("e1")),
            ("execution.rolled_back", Some("e1")),
        ]
    );
    let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(all.cursor, 5);
    assert_eq!(all.events[1].data["name"], "a");
    assert_eq!(all.events[4].data["reason"], "bad b");

    // The cursor: nothing before it comes again; a limit stops early with the cursor on the
    // last event given.
    assert_eq!(
        kinds(&store, 3, &EventFilter::default()),
        ["execution.completed", "execution.rolled_back"]
    );
    let first_two = store.events(0, 2, &EventFilter::default()).unwrap();
    assert_eq!((first_two.events.len(), first_two.cursor), (2, 2));

    let ce = all.events[0].cloud_event("urn:omium:store:test");
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["type"], "io.omium.execution.started");
    assert_eq!(ce["id"], "1");
    assert_eq!(ce["subject"], "e1");
    assert_eq!(ce["omiumseq"], 1);
    assert!(ce["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn filters_keep_types_families_and_one_execution_and_refuse_unknown_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    run_two_steps(&store, "e1");
    run_two_steps(&store, "e2");
    let f = EventFilter::new(vec!["execution.*".into()], Some("e2".into())).unwrap();
    assert_eq!(
        kinds(&store, 0, &f),
        ["execution.started", "execution.completed"]
    );
    let f = EventFilter::new(vec!["checkpoint.created".into()], None).unwrap();
    assert_eq!(kinds(&store, 0, &f).len(), 4);
    // Filtered-out entries advance the cursor too: a follower does not scan them again.
    let page = store.events(0, 1000, &f).unwrap();
    assert_eq!(page.cursor, 8);
    let err = EventFilter::new(vec!["execution.exploded".into()], None).unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("execution.started"), "{err}");
}

#[test]
fn a_follower_wakes_when_another_thread_writes_and_times_out_when_nobody_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    run_two_steps(&store, "e1");
    let cursor = store.audit_seq().unwrap();
    let quiet = store
        .follow_events(
            cursor,
            10,
            &EventFilter::default(),
            Duration::from_millis(50),
        )
        .unwrap();
    assert!(quiet.events.is_empty());
    assert_eq!(quiet.cursor, cursor);

    let writer = store.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let follower = std::thread::spawn(move || {
        tx.send(()).unwrap();
        let started = Instant::now();
        let page = store
            .follow_events(cursor, 10, &EventFilter::default(), Duration::from_secs(30))
            .unwrap();
        (page, started.elapsed())
    });
    rx.recv().unwrap();
    run_two_steps(&writer, "e2");
    let (page, waited) = follower.join().unwrap();
    assert_eq!(page.events[0].kind, "execution.started");
    assert_eq!(page.events[0].subject.as_deref(), Some("e2"));
    assert!(
        waited < Duration::from_secs(30),
        "woken by the write, not the timeout"
    );
}

#[test]
fn a_read_only_follower_sees_what_the_writer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    run_two_steps(&writer, "e1");
    let reader = Store::open_read_only(dir.path()).unwrap();
    let start = reader.audit_seq().unwrap();
    assert_eq!(start, 4);
    let w = writer.clone();
    let t = std::thread::spawn(move || run_two_steps(&w, "e2"));
    let mut got = Vec::new();
    let mut cursor = start;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 4 {
        assert!(Instant::now() < deadline, "the follower saw {got:?}");
        let page = reader
            .follow_events(cursor, 10, &EventFilter::default(), Duration::from_secs(5))
            .unwrap();
        cursor = page.cursor;
        got.extend(page.events.into_iter().map(|e| (e.seq, e.kind)));
    }
    t.join().unwrap();
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [5, 6, 7, 8]);
}
