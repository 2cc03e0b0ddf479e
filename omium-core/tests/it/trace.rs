//! Spans: recorded without blocking, stored and indexed, read back as a tree, kept by age,
//! rendered as a waterfall and HTML, diffed; exported over OTLP/HTTP protobuf to a receiver on
//! 127.0.0.1 that decodes what it gets with the OpenTelemetry protocol's own message types.

use std::time::Duration;

use crate::common;

use omium_core::prelude::*;
use omium_core::spans::{agent_index_key, time_index_key};
use omium_core::store::Cf;
use omium_core::trace::{self, view, ExportConfig, Span, SpanKind, StatusCode, Value};
use omium_core::{BeginOptions, Store};
use prost::Message;

fn span(
    exec: &str,
    name: &str,
    ty: &str,
    parent: Option<&Span>,
    agent: &str,
    start: u64,
    dur: u64,
) -> Span {
    let mut s = Span::new(exec, name, ty);
    s.parent = parent.map(|p| p.span_id);
    s.agent = agent.into();
    s.start_ns = start;
    s.end_ns = start + dur;
    s.status = StatusCode::Ok;
    s
}

#[test]
fn spans_are_stored_indexed_and_read_back_as_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t0 = trace::now_ns() - 1_000_000_000; // a second ago: all of it is in the past
    let wf = span(
        "e1",
        "workflow onboard",
        "workflow",
        None,
        "",
        t0,
        5_000_000,
    );
    let kyc = span(
        "e1",
        "kyc",
        "step",
        Some(&wf),
        "kyc_agent",
        t0 + 100_000,
        2_000_000,
    );
    let mut llm = span(
        "e1",
        "chat gpt-4o",
        "llm",
        Some(&kyc),
        "kyc_agent",
        t0 + 200_000,
        1_000_000,
    );
    llm.kind = SpanKind::Client;
    llm.set("gen_ai.usage.input_tokens", 12i64);
    let credit = span(
        "e1",
        "credit",
        "step",
        Some(&wf),
        "credit_agent",
        t0 + 2_500_000,
        2_000_000,
    );
    let other = span("e2", "workflow other", "workflow", None, "", t0 + 10, 10);
    for s in [&credit, &llm, &wf, &kyc, &other] {
        store.record_span(s.clone());
    }
    store.flush_spans().unwrap();
    let got = store.spans("e1").unwrap();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|s| s.trace_id == trace::trace_id_of("e1")));
    let order: Vec<(usize, &str)> = view::tree(&got)
        .into_iter()
        .map(|(d, s)| (d, s.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (0, "workflow onboard"),
            (1, "kyc"),
            (2, "chat gpt-4o"),
            (1, "credit")
        ]
    );
    assert_eq!(
        got.iter()
            .find(|s| s.name == "chat gpt-4o")
            .unwrap()
            .attr("gen_ai.usage.input_tokens"),
        Some(&Value::Int(12))
    );

    let by_agent = store
        .spans_between(0, u64::MAX, Some("kyc_agent"), 100)
        .unwrap();
    assert_eq!(
        by_agent.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["kyc", "chat gpt-4o"]
    );
    let window = store.spans_between(t0, t0 + 150_000, None, 100).unwrap();
    assert_eq!(
        window.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["workflow onboard", "workflow other", "kyc"]
    );
    let stats = store.span_stats();
    assert_eq!((stats.recorded, stats.stored, stats.dropped), (5, 5, 0));

    let text = view::waterfall(&got, 40);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("SPAN"), "{text}");
    assert!(
        lines[1].starts_with("workflow onboard [workflow]")
            && lines[2].starts_with("  kyc [step]")
            && lines[3].starts_with("    chat gpt-4o [llm]"),
        "{text}"
    );
    let (agents, edges) = view::agent_graph(&got);
    assert_eq!(agents, ["main", "kyc_agent", "credit_agent"]);
    assert!(edges.contains_key(&("main".to_string(), "credit_agent".to_string())));
    let html = view::html("e1", &got);
    assert_eq!(html.matches("class=\"row\"").count(), 4);
    assert!(html.contains("credit_agent") && !html.contains("<script"));

    // Retention: everything older than an hour from now... nothing; older than 0 s: all.
    assert_eq!(
        store
            .delete_spans_older_than(Duration::from_secs(3600))
            .unwrap()
            .spans_deleted,
        0
    );
    assert_eq!(
        store
            .delete_spans_older_than(Duration::ZERO)
            .unwrap()
            .spans_deleted,
        5
    );
    assert!(store.spans("e1").unwrap().is_empty());
    assert!(store
        .spans_between(0, u64::MAX, Some("kyc_agent"), 10)
        .unwrap()
        .is_empty());
}

#[test]
fn storage_reads_the_head_of_a_stored_span_as_the_tracing_layer_wrote_it() {
    // Erasure (in the storage crate) finds a span's by-agent index entry through this head.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let parent = span("exé", "workflow w", "workflow", None, "", 5, 10);
    let mut s = span("exé", "chat m", "llm", Some(&parent), "agent ✓", 6, 2);
    s.kind = SpanKind::Client;
    s.attributes.push(("k".into(), Value::Int(7)));
    store.record_span(s.clone());
    store.flush_spans().unwrap();
    let sources = store.span_sources().unwrap();
    let (k, v) = sources[0]
        .scan_prefix(Cf::Spans, b"")
        .next()
        .unwrap()
        .unwrap();
    let head = omium_core::spans::SpanHead::decode(&k, &v).unwrap();
    assert_eq!(
        (head.trace_id, head.span_id, head.parent),
        (s.trace_id, s.span_id, s.parent)
    );
    assert_eq!(
        (head.name.as_str(), head.kind),
        ("chat m", SpanKind::Client as u32)
    );
    assert_eq!(
        (
            head.span_type.as_str(),
            head.execution_id.as_str(),
            head.agent.as_str()
        ),
        ("llm", "exé", "agent ✓")
    );
}

#[test]
fn spans_survive_reopening_and_a_read_only_store_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..1000 {
            store.record_span(span("e", &format!("s{i}"), "step", None, "", 1 + i, 1));
        }
        // No flush: closing the store stores what is queued.
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.spans("e").unwrap().len(), 1000);
    drop(store);
    let ro = Store::open_read_only(dir.path()).unwrap();
    ro.record_span(span("e", "x", "step", None, "", 5, 1));
    assert_eq!(ro.span_stats().recorded, 0);
    assert_eq!(ro.spans("e").unwrap().len(), 1000);
}

#[test]
fn a_read_only_handle_reads_the_spans_a_live_writer_keeps_storing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ro = Store::open_read_only(dir.path()).unwrap();
    // Nothing traced yet: the spans' own instance does not exist.
    assert!(ro.spans("e").unwrap().is_empty());
    store.record_span(span("e", "a", "step", None, "", 1, 1));
    store.flush_spans().unwrap();
    assert_eq!(ro.spans("e").unwrap().len(), 1);
    store.record_span(span("e", "b", "step", None, "", 2, 1));
    store.flush_spans().unwrap();
    let names: Vec<String> = ro.spans("e").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn spans_stored_before_their_own_instance_existed_are_read_pruned_and_erased_with_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = store.begin("e", BeginOptions::default()).unwrap();
    run.complete(None).unwrap();
    // Spans as builds before the spans' own instance stored them: in the main instance.
    let legacy = |s: &Span| {
        let mut tail = s.start_ns.to_be_bytes().to_vec();
        tail.extend_from_slice(&s.span_id);
        let mut b = rocksdb::WriteBatch::default();
        let key = omium_core::spans::span_key_of(&omium_core::exec_key(&s.execution_id), &tail);
        let value = omium_core::codec::encode(s);
        b.put_cf(store.cf(Cf::Spans), key, value);
        let exec = &key[..16];
        b.put_cf(
            store.cf(Cf::SpanIndex),
            time_index_key(s.start_ns, &s.span_id),
            exec,
        );
        b.put_cf(
            store.cf(Cf::SpanIndex),
            agent_index_key(&s.agent, s.start_ns, &s.span_id),
            exec,
        );
        store.db().write(b).unwrap();
    };
    let now = trace::now_ns();
    legacy(&span("e", "old", "step", None, "kyc", now - 30, 1));
    legacy(&span("r", "old r", "step", None, "kyc", 10, 1));
    store.record_span(span("e", "new", "step", None, "kyc", now - 20, 1));
    store.record_span(span("r", "new r", "step", None, "kyc", 20, 1));
    store.flush_spans().unwrap();
    assert_eq!(store.span_sources().unwrap().len(), 2);
    let names = |spans: Vec<Span>| -> Vec<String> { spans.into_iter().map(|s| s.name).collect() };
    assert_eq!(names(store.spans("e").unwrap()), ["old", "new"]);
    // The first of both sources, merged by start time.
    let between = |agent, limit| names(store.spans_between(0, u64::MAX, agent, limit).unwrap());
    assert_eq!(between(Some("kyc"), 10), ["old r", "new r", "old", "new"]);
    assert_eq!(between(None, 3), ["old r", "new r", "old"]);
    // Retention reaches both ("r"'s spans are from 1970), erasure too.
    let pruned = store
        .delete_spans_older_than(Duration::from_secs(3600))
        .unwrap();
    assert_eq!(pruned.spans_deleted, 2);
    assert_eq!(between(None, 10), ["old", "new"]);
    store.delete_execution("e").unwrap();
    assert!(between(None, 10).is_empty());
    for source in store.span_sources().unwrap() {
        for cf in [Cf::Spans, Cf::SpanIndex] {
            assert_eq!(source.scan_prefix(cf, b"").count(), 0, "{}", cf.name());
        }
    }
}

#[test]
fn traceparent_round_trips_and_bad_headers_are_named() {
    let s = Span::new("e", "x", "step");
    let (t, p) = trace::parse_traceparent(&s.traceparent()).unwrap();
    assert_eq!((t, p), (s.trace_id, s.span_id));
    for bad in [
        "",
        "00-abc-def-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",
    ] {
        let e = trace::parse_traceparent(bad).unwrap_err();
        assert!(e.to_string().contains("traceparent"), "{e}");
    }
}

#[test]
fn diff_compares_outputs_requests_timing_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (exec, answer, tokens) in [("a", "712", 30i64), ("b", "650", 45)] {
        let run = store.begin(exec, BeginOptions::default()).unwrap();
        run.step("kyc", || Ok::<_, omium_core::Error>(b"ok".to_vec()))
            .unwrap();
        let c = run
            .record(
                run.reserve(),
                omium_core::NewCheckpoint {
                    name: "llm:chat m",
                    agent: None,
                    kind: omium_core::CheckpointKind::Step,
                    key: None,
                    state: answer.as_bytes(),
                    checks: Default::default(),
                    metadata: [("omium.request_hash".to_string(), format!("h-{exec}"))].into(),
                },
            )
            .unwrap();
        let mut s = span(exec, "chat m", "llm", None, "", 10, 1_000_000);
        s.set("omium.checkpoint_id", c.id.to_string());
        s.set("gen_ai.usage.input_tokens", tokens);
        store.record_span(s);
        run.complete(None).unwrap();
    }
    let d = store.diff_executions("a", "b").unwrap();
    assert_eq!(d.len(), 2);
    assert!(!d[0].differs(), "{:?}", d[0]);
    assert!(d[1].output_differs && d[1].input_differs);
    assert_eq!((d[1].tokens_a, d[1].tokens_b), (Some(30), Some(45)));
    assert_eq!(d[1].duration_ns_a, Some(1_000_000));
}

#[test]
fn otlp_export_sends_protobuf_that_decodes_to_the_spans() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let (url, bodies) = common::http_receiver(200, "/v1/traces");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .enable_otlp_export(ExportConfig {
            endpoint: Some(url),
            service_name: Some("omium-test".into()),
            ..Default::default()
        })
        .unwrap();
    let wf = span(
        "e1",
        "workflow w",
        "workflow",
        None,
        "",
        trace::now_ns(),
        1000,
    );
    let mut tool = span(
        "e1",
        "execute_tool search",
        "tool",
        Some(&wf),
        "agent-1",
        trace::now_ns(),
        500,
    );
    tool.set("gen_ai.tool.name", "search");
    tool.status = StatusCode::Error;
    tool.status_message = "boom".into();
    store.record_span(wf.clone());
    store.record_span(tool.clone());
    assert!(store.flush_export(Duration::from_secs(20)).unwrap());
    let req = ExportTraceServiceRequest::decode(
        bodies
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let rs = &req.resource_spans[0];
    let service = rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .unwrap();
    assert!(format!("{:?}", service.value).contains("omium-test"));
    let spans: Vec<_> = rs.scope_spans.iter().flat_map(|s| s.spans.iter()).collect();
    assert_eq!(spans.len(), 2);
    let t = spans
        .iter()
        .find(|s| s.name == "execute_tool search")
        .unwrap();
    assert_eq!(t.parent_span_id, wf.span_id.to_vec());
    assert_eq!(t.trace_id, trace::trace_id_of("e1").to_vec());
    assert_eq!(t.status.as_ref().unwrap().message, "boom");
    let attr = |k: &str| {
        t.attributes
            .iter()
            .find(|kv| kv.key == k)
            .map(|kv| format!("{:?}", kv.value))
    };
    assert!(attr("openinference.span.kind").unwrap().contains("TOOL"));
    assert!(attr("gen_ai.tool.name").unwrap().contains("search"));
    assert!(attr("omium.agent").unwrap().contains("agent-1"));
    let st = store.span_stats().export.unwrap();
    assert_eq!((st.exported, st.failed, st.dropped), (2, 0, 0));
}

#[test]
fn a_failing_receiver_is_retried_then_counted_never_blocking_the_caller() {
    // The receiver answers nothing until the spans are recorded: recording that waited for
    // export would wait for the request's timeout (a minute), not a scheduler's whim.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .enable_otlp_export(ExportConfig {
            endpoint: Some(url),
            attempts: 2,
            queue_capacity: 3,
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        })
        .unwrap();
    let start = std::time::Instant::now();
    for i in 0..10 {
        store.record_span(span("e", &format!("s{i}"), "step", None, "", 1 + i, 1));
    }
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "recording does not wait for export"
    );
    // Now it answers every request with 503.
    let bodies = common::http_serve(listener, 503);
    store.flush_export(Duration::from_secs(20)).unwrap();
    let st = store.span_stats().export.unwrap();
    assert_eq!(st.exported, 0);
    assert!(st.retries >= 1, "{st:?}");
    assert_eq!(st.failed + st.dropped, 10, "{st:?}");
    assert!(st.last_error.is_some());
    assert!(bodies.recv_timeout(Duration::from_secs(5)).is_ok());
    assert_eq!(
        store.spans("e").unwrap().len(),
        10,
        "storage does not depend on export"
    );
}

#[test]
fn a_replay_answers_calls_recorded_without_a_codec_by_their_hash() {
    use omium_core::serve::StoreHandle;
    use omium_core::trace::calls;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (request, hash) =
        calls::canonical_request("tool", "search", "", "", vec![1.into()], Default::default())
            .unwrap();
    // A call recorded as Python recorded them before codecs were named: msgpack, no codec.
    let run = store.begin("old", BeginOptions::default()).unwrap();
    let meta = [
        (calls::CALL_KEY.to_string(), "tool".to_string()),
        (calls::HASH_KEY.to_string(), hash.clone()),
    ]
    .into();
    let state = b"\x82\xa7request\xc0\xa8response\x05";
    run.record(
        run.reserve(),
        omium_core::NewCheckpoint {
            name: "tool:execute_tool search",
            state,
            metadata: meta,
            ..Default::default()
        },
    )
    .unwrap();
    drop(run);
    let handle = StoreHandle::Local(store.clone());
    let mut replay = handle.open_replay("old").unwrap();
    assert_eq!(replay.progress(), (0, 1));
    let rec = replay.answer(&request, &hash).unwrap();
    assert_eq!(
        rec.state, state,
        "the binding decodes the answer with its own codec"
    );
    assert_eq!(
        rec.request,
        serde_json::Value::Null,
        "no codec: no request to show"
    );
    replay.finish().unwrap();
    // Another request diverges, showing what there is.
    let mut again = handle.open_replay("old").unwrap();
    let e = again
        .answer(&serde_json::json!({"other": 1}), "f00")
        .unwrap_err();
    assert_eq!(e.code(), "replay_divergence");
    assert_eq!(e.details().unwrap()["index"], 0);
    assert!(
        again.finish().is_ok(),
        "the diverging call was the recorded one"
    );
}
