//! Execution analytics over a real store: the rollups kept as events are written give the
//! same figures as a count made from the executions and failure records themselves; cost
//! saved is the recorded cost of the steps a resumed run did not run again; windows, groups
//! and filters; a read-only handle reads them; bad queries name the field.

use std::collections::BTreeMap;

use omium_core::analytics::{scan_figures, AnalyticsStore, MetricsQuery};
use omium_core::control::{Action, Request};
use omium_core::policy::Trigger;
use omium_core::prelude::*;
use omium_core::recovery::FailureInput;
use omium_core::{BeginOptions, Error, NewCheckpoint, OpenOptions, RollbackTarget, Store};

fn begin(store: &Store, id: &str, workflow: &str, tenant: &str) -> omium_core::Run {
    store
        .begin(
            id,
            BeginOptions {
                workflow: workflow.into(),
                tenant: tenant.into(),
                ..BeginOptions::default()
            },
        )
        .unwrap()
}

fn step(run: &omium_core::Run, name: &str) {
    run.step(name, || Ok::<_, Error>(name.as_bytes().to_vec()))
        .unwrap();
}

/// An LLM step as the bindings record it: tokens and cost in the checkpoint's metadata.
fn llm_step(run: &omium_core::Run, name: &str, tokens: (u64, u64), cost: &str) -> bool {
    let seq = run.reserve();
    if run.recorded(seq, name, None).unwrap().is_some() {
        return false;
    }
    let metadata = BTreeMap::from([
        ("omium.tokens_in".to_string(), tokens.0.to_string()),
        ("omium.tokens_out".to_string(), tokens.1.to_string()),
        ("omium.cost_usd".to_string(), cost.to_string()),
    ]);
    run.record(
        seq,
        NewCheckpoint {
            name,
            state: b"answer",
            metadata,
            ..NewCheckpoint::default()
        },
    )
    .unwrap();
    true
}

fn last_hour() -> MetricsQuery {
    MetricsQuery::last(3_600_000)
}

fn query(v: serde_json::Value) -> MetricsQuery {
    MetricsQuery::from_json(&v).unwrap()
}

fn fail_with(store: &Store, run: &omium_core::Run, exec: (&str, &str, &str), kind: Trigger) {
    let input = FailureInput {
        execution_id: exec.0.into(),
        workflow: exec.1.into(),
        tenant: exec.2.into(),
        step: Some("work".into()),
        agent: "main".into(),
        kind: Some(kind),
        message: "it broke".into(),
        ..FailureInput::default()
    };
    store
        .start_recovery(input, Default::default())
        .unwrap()
        .failed()
        .unwrap();
    run.fail("it broke").unwrap();
}

#[test]
fn rollups_agree_with_a_count_made_from_the_executions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A seeded mix: three workflows, two tenants, completions, failures of two types,
    // cancellations by an operator, and executions still running.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut running = Vec::new();
    for i in 0..60 {
        let workflow = ["ingest", "answer", "review"][(next() % 3) as usize];
        let tenant = ["acme", "globex"][(next() % 2) as usize];
        let id = format!("e{i}");
        let run = begin(&store, &id, workflow, tenant);
        for s in 0..(1 + next() % 3) {
            step(&run, &format!("s{s}"));
        }
        match next() % 5 {
            0 | 1 => run.complete(None).unwrap(),
            2 => fail_with(&store, &run, (&id, workflow, tenant), Trigger::TimeoutError),
            3 => fail_with(&store, &run, (&id, workflow, tenant), Trigger::ToolError),
            _ => running.push(run),
        }
    }
    // An operator cancels some of the running ones (at their next step boundary).
    for run in running.iter().step_by(2) {
        let id = run.execution_id().to_string();
        store
            .control(&Request::new(Action::Cancel, &id, None, None))
            .unwrap();
        let e = run.step("after", || Ok::<_, Error>(vec![])).unwrap_err();
        assert_eq!(e.code(), "cancelled", "{e}");
    }

    let q = last_hour();
    let rolled = store.metrics(&q).unwrap().totals;
    let counted = scan_figures(&store, &q).unwrap();
    assert_eq!(rolled.started, 60);
    for (name, a, b) in [
        ("started", rolled.started, counted.started),
        ("completed", rolled.completed, counted.completed),
        ("failed", rolled.failed, counted.failed),
        ("cancelled", rolled.cancelled, counted.cancelled),
        ("failures", rolled.failures, counted.failures),
    ] {
        assert_eq!(a, b, "{name}: rollups {a}, executions {b}");
    }
    assert!(rolled.completed > 0 && rolled.failed > 0 && rolled.cancelled > 0);
    assert_eq!(rolled.success_rate, counted.success_rate);
    assert_eq!(rolled.execution_p95_ms, counted.execution_p95_ms);
    assert_eq!(rolled.failures_by_type, counted.failures_by_type);
    assert_eq!(rolled.failure_rate_by_type, counted.failure_rate_by_type);
    assert!(rolled.steps >= 60, "{}", rolled.steps);
    assert!(rolled.step_p50_ms.is_some());

    // Grouped and filtered, the same agreement per workflow and per tenant.
    let by = store
        .metrics(&MetricsQuery {
            by: vec![omium_core::analytics::GroupBy::Workflow],
            ..q.clone()
        })
        .unwrap();
    assert_eq!(by.groups.len(), 3);
    for g in &by.groups {
        let w = g.key["workflow"].clone();
        let only = MetricsQuery {
            workflow: Some(w.clone()),
            ..q.clone()
        };
        let counted = scan_figures(&store, &only).unwrap();
        assert_eq!(
            (g.figures.started, g.figures.completed, g.figures.failed),
            (counted.started, counted.completed, counted.failed),
            "{w}"
        );
        assert_eq!(store.metrics(&only).unwrap().totals, g.figures, "{w}");
    }
    let tenants = store
        .metrics(&query(serde_json::json!({"since": "1h", "by": "tenant"})))
        .unwrap();
    assert_eq!(
        tenants
            .groups
            .iter()
            .map(|g| g.figures.started)
            .sum::<u64>(),
        60
    );
    // By failure type: only failures, split by their type.
    let types = store
        .metrics(&query(
            serde_json::json!({"since": "1h", "by": ["failure_type"]}),
        ))
        .unwrap();
    let names: Vec<_> = types
        .groups
        .iter()
        .map(|g| g.key["failure_type"].clone())
        .collect();
    assert_eq!(names, ["timeout_error", "tool_error"]);

    // A read-only handle (as the CLI opens a store an application writes) reads the same.
    let reader = Store::open_with(
        dir.path(),
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        reader.metrics(&q).unwrap().totals,
        store.metrics(&q).unwrap().totals
    );
    drop(running);
}

#[test]
fn cost_saved_is_the_recorded_cost_of_steps_a_resumed_run_did_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    {
        // The first run records two LLM calls and dies (dropped without finishing).
        let run = begin(&store, "c1", "agent", "default");
        assert!(llm_step(&run, "plan", (1000, 200), "0.012"));
        assert!(llm_step(&run, "draft", (3000, 500), "0.0405"));
    }
    let run = begin(&store, "c1", "agent", "default");
    assert!(!llm_step(&run, "plan", (1000, 200), "0.012"));
    assert!(!llm_step(&run, "draft", (3000, 500), "0.0405"));
    assert!(llm_step(&run, "final", (500, 100), "0.006"));
    run.complete(None).unwrap();

    let f = store.metrics(&last_hour()).unwrap().totals;
    assert_eq!((f.started, f.retries, f.completed), (1, 1, 1));
    assert_eq!(f.steps, 3, "each step is counted once, when it is recorded");
    assert_eq!(f.replayed_steps, 2);
    assert!((f.llm_cost_usd - 0.0585).abs() < 1e-9, "{}", f.llm_cost_usd);
    assert!(
        (f.cost_saved_usd - 0.0525).abs() < 1e-9,
        "{}",
        f.cost_saved_usd
    );
    assert_eq!(f.tokens_saved, 4700);
    assert_eq!((f.tokens_in, f.tokens_out), (4500, 800));
    assert_eq!(f.cost_per_execution_usd, Some(0.0585));

    // By agent and step: the steps' own figures; the execution-level ones are not per step.
    let steps = store
        .metrics(&query(serde_json::json!({"since": "1h", "by": "step"})))
        .unwrap();
    let saved: BTreeMap<_, _> = steps
        .groups
        .iter()
        .map(|g| (g.key["step"].as_str(), g.figures.cost_saved_usd))
        .collect();
    assert_eq!(
        saved,
        BTreeMap::from([("draft", 0.0405), ("final", 0.0), ("plan", 0.012)])
    );
    assert!(steps.groups.iter().all(|g| g.figures.started == 0));
}

#[test]
fn rollbacks_forks_recoveries_and_mttr_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = begin(&store, "r1", "wf", "default");
    step(&run, "a");
    step(&run, "b");
    let input = FailureInput {
        execution_id: "r1".into(),
        workflow: "wf".into(),
        tenant: "default".into(),
        step: Some("c".into()),
        agent: "main".into(),
        kind: Some(Trigger::ToolError),
        message: "boom".into(),
        ..FailureInput::default()
    };
    let mut rec = store.start_recovery(input, Default::default()).unwrap();
    rec.rolled_back().unwrap();
    // The run stops there (as a binding's run does when its policy rolls back); the failure
    // waits on the execution's outcome.
    drop(run);
    store
        .rollback(
            "r1",
            &RollbackTarget::Name("a".into()),
            Some("retry from a"),
        )
        .unwrap();
    let run = begin(&store, "r1", "wf", "default");
    step(&run, "a");
    step(&run, "b2");
    run.complete(None).unwrap();
    drop(run);
    store
        .fork("r1", &RollbackTarget::Name("a".into()), Default::default())
        .unwrap();

    let f = store.metrics(&last_hour()).unwrap().totals;
    assert_eq!((f.rollbacks, f.forks, f.retries), (1, 1, 1));
    assert_eq!((f.failures, f.recovered), (1, 1));
    assert!(f.mttr_ms.is_some());
    let counted = scan_figures(&store, &last_hour()).unwrap();
    assert_eq!(f.mttr_ms, counted.mttr_ms);
    assert_eq!(
        f.replayed_steps, 1,
        "step a was answered from its checkpoint"
    );
}

#[test]
fn windows_periods_and_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = begin(&store, "w1", "wf", "default");
    step(&run, "a");
    run.complete(None).unwrap();

    // A window that ended an hour ago sees nothing of it.
    let past = query(serde_json::json!({"since": "3d", "until": "2h"}));
    assert_eq!(store.metrics(&past).unwrap().totals.started, 0);
    // Recent windows resolve to the minute (alert rules rely on it): one that ended two
    // minutes ago sees nothing, the last minute sees it.
    let minutes_ago = query(serde_json::json!({"since": "1h", "until": "2m"}));
    assert_eq!(store.metrics(&minutes_ago).unwrap().totals.started, 0);
    let last_minute = query(serde_json::json!({"since": "1m"}));
    assert_eq!(store.metrics(&last_minute).unwrap().totals.completed, 1);
    // A 30-day window (day cells and hour cells together) sees it once.
    let month = query(serde_json::json!({"since": "30d"}));
    assert_eq!(store.metrics(&month).unwrap().totals.started, 1);
    for period in ["hour", "day", "week", "month"] {
        let r = store
            .metrics(&query(serde_json::json!({"since": "30d", "by": period})))
            .unwrap();
        assert_eq!(r.groups.len(), 1, "{period}");
        assert_eq!(r.groups[0].figures.started, 1, "{period}");
    }

    for (q, needle) in [
        (serde_json::json!({"since": "yesterday"}), "7d"),
        (serde_json::json!({"by": "colour"}), "workflow, agent"),
        (
            serde_json::json!({"sinse": "7d"}),
            "unknown field \"sinse\"",
        ),
        (
            serde_json::json!({"since": "1h", "until": "2h"}),
            "is not before",
        ),
        (serde_json::json!({"workflow": 3}), "expected a string"),
    ] {
        let e = MetricsQuery::from_json(&q).unwrap_err();
        assert_eq!(e.code(), "invalid_argument");
        assert!(e.to_string().contains(needle), "{q}: {e}");
    }
}

#[test]
fn steps_are_counted_once_across_tally_writes_a_dead_run_and_its_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    {
        // 300 steps: one tally write at 256 steps, 44 counted in memory when the run dies.
        let run = begin(&store, "t1", "long", "default");
        for i in 0..300 {
            step(&run, &format!("s{}", i % 3));
        }
        assert_eq!(store.metrics(&last_hour()).unwrap().totals.steps, 256);
    }
    let run = begin(&store, "t1", "long", "default");
    for i in 0..310 {
        step(&run, &format!("s{}", i % 3));
    }
    run.complete(None).unwrap();
    let f = store.metrics(&last_hour()).unwrap().totals;
    assert_eq!(
        f.steps, 310,
        "300 recorded by the dead run, 10 by the resumed one"
    );
    assert_eq!(f.replayed_steps, 300);
    assert_eq!((f.started, f.retries, f.completed), (1, 1, 1));
    // A fork does not count the steps it copies.
    let first = store.history("t1").unwrap()[0].id.to_string();
    store
        .fork("t1", &RollbackTarget::parse(&first), Default::default())
        .unwrap();
    let forked = store
        .executions()
        .unwrap()
        .into_iter()
        .find(|e| e.id != "t1")
        .unwrap();
    let run = begin(&store, &forked.id, "long", "default");
    step(&run, "s0");
    step(&run, "extra");
    run.complete(None).unwrap();
    let f = store.metrics(&last_hour()).unwrap().totals;
    assert_eq!(
        (f.steps, f.forks),
        (311, 1),
        "only the fork's own step: {f:?}"
    );
}
