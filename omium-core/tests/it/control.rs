//! Operator controls over a real store: a pause and a cancel reach a run at its next step
//! boundary, resume and retry make an execution resumable, delete erases it (with its spans and
//! failure records) and its unshared chunks, refusals name the status, and a read-only handle's request goes through the
//! writer's mailbox.

use omium_core::control::{Action, Request};
use omium_core::events::{EventFilter, EventStore};
use omium_core::prelude::*;
use omium_core::store::Cf;
use omium_core::trace::{now_ns, Span, Value};
use omium_core::{BeginOptions, Error, FailureInput, Status, Store};

fn req(action: Action, execution: &str) -> Request {
    Request::new(
        action,
        execution,
        Some("because".into()),
        Some("ops@test".into()),
    )
}

fn step(run: &omium_core::Run, name: &str, state: &[u8]) -> omium_core::Result<Vec<u8>> {
    let s = state.to_vec();
    run.step(name, move || Ok::<_, Error>(s))
}

fn kinds(store: &Store, execution: &str) -> Vec<String> {
    let f = EventFilter::new(vec![], Some(execution.into())).unwrap();
    store
        .events(0, 1000, &f)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[test]
fn a_pause_reaches_the_run_at_its_next_step_and_resume_lets_it_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = store.begin("p1", BeginOptions::default()).unwrap();
    step(&run, "a", b"1").unwrap();
    let reply = store.control(&req(Action::Pause, "p1")).unwrap();
    assert_eq!(
        (reply.result.as_str(), reply.status.as_deref()),
        ("requested", Some("running"))
    );
    let err = step(&run, "b", b"2").unwrap_err();
    assert_eq!(err.code(), "paused", "{err}");
    assert!(err.to_string().contains("because"), "{err}");
    drop(run);
    let e = store.execution("p1").unwrap();
    assert_eq!(e.status, Status::Paused);
    assert_eq!(store.history("p1").unwrap().len(), 1, "b did not run");

    let err = store.control(&req(Action::Pause, "p1")).unwrap_err();
    assert_eq!(err.code(), "invalid_state");
    let reply = store.control(&req(Action::Resume, "p1")).unwrap();
    assert_eq!(
        (reply.result.as_str(), reply.status.as_deref()),
        ("applied", Some("pending"))
    );
    assert!(store.resumable().unwrap().iter().any(|e| e.id == "p1"));
    let run = store.begin("p1", BeginOptions::default()).unwrap();
    assert_eq!(step(&run, "a", b"other").unwrap(), b"1", "a is replayed");
    step(&run, "b", b"2").unwrap();
    run.complete(None).unwrap();
    assert_eq!(
        kinds(&store, "p1"),
        [
            "execution.started",
            "checkpoint.created",
            "control.pause_requested",
            "execution.paused",
            "execution.released",
            "execution.resumed",
            "checkpoint.created",
            "execution.completed"
        ]
    );
}

#[test]
fn a_cancel_stops_the_run_for_good_until_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = store.begin("c1", BeginOptions::default()).unwrap();
    step(&run, "a", b"1").unwrap();
    store.control(&req(Action::Cancel, "c1")).unwrap();
    let err = step(&run, "b", b"2").unwrap_err();
    assert_eq!(err.code(), "cancelled", "{err}");
    drop(run);
    assert_eq!(store.execution("c1").unwrap().status, Status::Cancelled);
    assert!(!store.resumable().unwrap().iter().any(|e| e.id == "c1"));
    assert_eq!(
        store
            .control(&req(Action::Cancel, "c1"))
            .unwrap_err()
            .code(),
        "invalid_state"
    );
    assert_eq!(
        store
            .control(&req(Action::Resume, "c1"))
            .unwrap_err()
            .code(),
        "invalid_state"
    );

    let reply = store.control(&req(Action::Retry, "c1")).unwrap();
    assert_eq!(reply.status.as_deref(), Some("pending"));
    let run = store.begin("c1", BeginOptions::default()).unwrap();
    step(&run, "a", b"x").unwrap();
    step(&run, "b", b"2").unwrap();
    run.complete(None).unwrap();
    assert_eq!(store.history("c1").unwrap().len(), 2);
    // Nothing to retry or cancel once completed.
    assert_eq!(
        store.control(&req(Action::Retry, "c1")).unwrap_err().code(),
        "invalid_state"
    );
    assert_eq!(
        store
            .control(&req(Action::Cancel, "c1"))
            .unwrap_err()
            .code(),
        "invalid_state"
    );
}

#[test]
fn an_execution_nobody_runs_is_paused_or_cancelled_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = store.begin("idle", BeginOptions::default()).unwrap();
    step(&run, "a", b"1").unwrap();
    run.suspend().unwrap();
    drop(run);
    let reply = store.control(&req(Action::Cancel, "idle")).unwrap();
    assert_eq!(
        (reply.result.as_str(), reply.status.as_deref()),
        ("applied", Some("cancelled"))
    );
    let e = store.execution("idle").unwrap();
    assert_eq!(e.error.as_deref(), Some("because"));
    let err = store.control(&req(Action::Pause, "nope")).unwrap_err();
    assert_eq!(err.code(), "execution_not_found");
}

#[test]
fn delete_erases_the_execution_and_the_chunks_no_other_uses_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    for id in ["keep", "erase"] {
        let run = store.begin(id, BeginOptions::default()).unwrap();
        step(&run, "shared", &big).unwrap();
        step(
            &run,
            "own",
            format!("{id}-{}", "x".repeat(100_000)).as_bytes(),
        )
        .unwrap();
        run.complete(None).unwrap();
    }
    let reply = store.control(&req(Action::Delete, "erase")).unwrap();
    let erased = reply.erased.unwrap();
    assert_eq!(erased.checkpoints, 2);
    assert!(erased.chunks >= 1, "{erased:?}");
    assert_eq!(
        store.execution("erase").unwrap_err().code(),
        "execution_not_found"
    );
    // The execution that shared a state with it is whole.
    for c in store.history("keep").unwrap() {
        store.read_state(&c).unwrap();
    }
    assert!(store.verify(None).unwrap().ok());
    let deleted = store
        .events(
            0,
            1000,
            &EventFilter::new(vec!["execution.deleted".into()], None).unwrap(),
        )
        .unwrap();
    let data = &deleted.events[0].data;
    assert_eq!(
        (data["by"].as_str(), data["reason"].as_str()),
        (Some("ops@test"), Some("because"))
    );
    assert_eq!(data["checkpoints"], 2);
}

#[test]
fn delete_erases_the_executions_spans_and_failure_records_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for id in ["keep", "erase"] {
        let run = store.begin(id, BeginOptions::default()).unwrap();
        step(&run, "charge", b"{}").unwrap();
        let mut s = Span::new(id, "chat m", "llm");
        s.agent = "kyc".into();
        s.start_ns = now_ns();
        s.end_ns = s.start_ns + 1;
        let prompt = format!("{id}: the card of alice@example.com");
        s.attributes
            .push(("gen_ai.input.messages".into(), Value::Str(prompt.clone())));
        // Not flushed: the erase must find the spans still queued for the writer too.
        store.record_span(s);
        let eff = store
            .effective_policy("default", None, Some("charge"))
            .unwrap();
        let input = FailureInput {
            execution_id: id.into(),
            tenant: "default".into(),
            step: Some("charge".into()),
            agent: "kyc".into(),
            error_classes: vec!["ValueError".into()],
            message: prompt,
            ..Default::default()
        };
        store.start_recovery(input, eff).unwrap();
        run.fail("declined").unwrap();
    }
    let reply = store.control(&req(Action::Delete, "erase")).unwrap();
    let erased = reply.erased.unwrap();
    assert_eq!((erased.spans, erased.failures), (1, 1));
    assert!(store.spans("erase").unwrap().is_empty());
    assert!(store.failures(Some("erase")).unwrap().is_empty());
    let left = |agent: Option<&str>| -> Vec<String> {
        let spans = store.spans_between(0, u64::MAX, agent, 10).unwrap();
        spans.into_iter().map(|s| s.execution_id).collect()
    };
    assert_eq!(left(None), ["keep"]);
    assert_eq!(left(Some("kyc")), ["keep"]);
    // Nothing of the erased execution is left in the families, index entries included.
    assert_eq!(store.scan_prefix(Cf::Failures, b"").count(), 1);
    for cf in [Cf::Spans, Cf::SpanIndex] {
        let sources = store.span_sources().unwrap();
        let n: usize = sources.iter().map(|s| s.scan_prefix(cf, b"").count()).sum();
        assert_eq!(n, if cf == Cf::SpanIndex { 2 } else { 1 }, "{}", cf.name());
    }
    assert_eq!(store.spans("keep").unwrap().len(), 1);
    assert_eq!(store.failures(Some("keep")).unwrap().len(), 1);
    let f = EventFilter::new(vec!["execution.deleted".into()], None).unwrap();
    let data = &store.events(0, 1000, &f).unwrap().events[0].data;
    assert_eq!((&data["spans"], &data["failures"]), (&1.into(), &1.into()));
}

#[test]
fn a_read_only_handle_asks_the_writer_through_the_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    let run = writer.begin("m1", BeginOptions::default()).unwrap();
    step(&run, "a", b"1").unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    // The writer's poller takes the request; the reader waits for its reply.
    let reply = reader.request_control(&req(Action::Cancel, "m1")).unwrap();
    assert_eq!(reply.result, "requested");
    assert_eq!(step(&run, "b", b"2").unwrap_err().code(), "cancelled");
    drop(run);
    // A refusal comes back as the writer's error.
    let err = reader
        .request_control(&req(Action::Resume, "m1"))
        .unwrap_err();
    assert_eq!(err.code(), "invalid_state", "{err}");
    assert!(
        err.to_string().contains("only a paused execution resumes"),
        "{err}"
    );
    // The mailbox is left empty.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("control"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_store_nobody_holds_is_controlled_from_a_read_only_handle_directly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let run = store.begin("d1", BeginOptions::default()).unwrap();
        step(&run, "a", b"1").unwrap();
        run.fail("boom").unwrap();
    }
    let reader = Store::open_read_only(dir.path()).unwrap();
    let reply = reader.request_control(&req(Action::Retry, "d1")).unwrap();
    assert_eq!(reply.status.as_deref(), Some("pending"));
}
