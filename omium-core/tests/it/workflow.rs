//! Workflows: the issue's document, the broken documents of `tests/workflows/broken/` with
//! their messages, plans, and the executor with Rust and shell agents (parallelism, `when:`,
//! resume, rollback, retries, timeouts, consensus).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use omium_core::prelude::*;
use omium_core::workflow::{
    self, Agent, AgentCall, AgentError, Agreement, AgreementRequest, Plan, RunOptions,
};
use omium_core::{RollbackTarget, Store};
use serde_json::{json, Map, Value};

fn workflows_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/workflows")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

type Calls = Arc<std::sync::Mutex<Vec<String>>>;

/// An agent that records its call, sleeps, and returns `f(inputs)`.
fn agent(
    calls: &Calls,
    sleep_ms: u64,
    f: impl Fn(&Map<String, Value>) -> Value + Send + Sync + 'static,
) -> Arc<dyn Agent> {
    let calls = calls.clone();
    Arc::new(move |c: &AgentCall| {
        calls.lock().unwrap().push(c.step.clone());
        std::thread::sleep(Duration::from_millis(sleep_ms));
        Ok(obj(f(&c.inputs)))
    })
}

fn options(id: &str, inputs: Value, agents: Vec<(&str, Arc<dyn Agent>)>) -> RunOptions {
    RunOptions {
        execution_id: Some(id.into()),
        inputs: obj(inputs),
        agents: agents
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
        ..RunOptions::default()
    }
}

#[test]
fn the_issue_document_parses_as_written() {
    let spec = workflow::load(&workflows_dir().join("customer_onboarding.yaml")).unwrap();
    assert_eq!(spec.name, "customer_onboarding");
    assert_eq!(spec.inputs, ["customer_data"]);
    let kyc = spec.agent("kyc_agent").unwrap();
    assert_eq!(kyc.framework.as_deref(), Some("crew_ai"));
    assert_eq!(kyc.image.as_deref(), Some("company/kyc:v1"));
    assert_eq!(kyc.resources.cpu.as_deref(), Some("500m"));
    assert_eq!(kyc.resources.memory.as_deref(), Some("1Gi"));
    let s2 = &spec.steps[1];
    assert!(s2.consensus_required);
    assert_eq!(s2.after.iter().copied().collect::<Vec<_>>(), [0]);
    assert_eq!(spec.steps[0].checkpoint, "kyc_doc_validated");
    let plan = Plan::of(&spec);
    assert_eq!(plan.levels, [vec!["1"], vec!["2"]]);
    assert_eq!(plan.order, ["1", "2"]);
    let text = plan.render();
    assert!(text.contains("step 2 (credit_agent) [after 1]: kyc_verified, kyc_score -> credit_score  [consensus required]"), "{text}");
    assert!(text.contains("  1. 1\n  2. 2\n"), "{text}");
}

#[test]
fn json_documents_are_accepted_too() {
    let spec = workflow::parse(
        r#"{"name": "w", "agents": [{"id": "a"}], "flow": [{"step": 1, "agent": "a", "outputs": ["x"]},
            {"step": 2, "agent": "a", "inputs": ["x"], "outputs": ["y"]}]}"#,
        None,
    )
    .unwrap();
    // Data flow alone orders the steps.
    assert_eq!(Plan::of(&spec).levels, [vec!["1"], vec!["2"]]);
}

#[test]
fn plans_put_independent_steps_on_one_level() {
    let spec = workflow::load(&workflows_dir().join("parallel.yaml")).unwrap();
    let plan = Plan::of(&spec);
    assert_eq!(plan.levels, [vec!["a", "b", "c"], vec!["join"]]);
}

/// Every file of `tests/workflows/broken/` ends with `# expect: <message>` lines (at the end, so
/// they do not move the lines the messages name); each is a
/// problem reported for it (without the file name).
#[test]
fn broken_documents_are_rejected_with_their_messages() {
    let dir = workflows_dir().join("broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{} broken documents", files.len());
    let mut wrong = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        let err = workflow::parse(&text, Some("doc.yaml"))
            .expect_err(&format!("{} should be rejected", f.display()));
        let got: Vec<String> = err
            .problems
            .iter()
            .map(|p| p.to_string().trim_start_matches("doc.yaml:").to_string())
            .collect();
        if got != expected {
            wrong.push(format!(
                "{} expects:\n{}\nbut reports:\n{}",
                f.display(),
                expected.join("\n"),
                got.iter()
                    .map(|g| format!("# expect: {g}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn independent_steps_run_at_once_and_the_join_waits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let spec = workflow::load(&workflows_dir().join("parallel.yaml")).unwrap();
    let calls: Calls = Default::default();
    let opts = options(
        "p1",
        json!({"n": 1}),
        vec![
            (
                "worker",
                agent(&calls, 300, |i| json!({"a": i["n"], "b": 2, "c": 3})),
            ),
            ("joiner", agent(&calls, 0, |i| json!({"total": i.len()}))),
        ],
    );
    // Each worker returns all three names; only the step's own outputs are kept.
    let report = workflow::run(&store, &spec, opts).unwrap();
    let span = |id: &str| {
        let s = report.steps.iter().find(|s| s.id == id).unwrap();
        (s.started_at_ms.unwrap(), s.ended_at_ms.unwrap())
    };
    let (a, b, c, j) = (span("a"), span("b"), span("c"), span("join"));
    for (x, y) in [(a, b), (a, c), (b, c)] {
        assert!(x.0 < y.1 && y.0 < x.1, "spans overlap: {x:?} {y:?}");
    }
    assert!(j.0 >= a.1.max(b.1).max(c.1), "join after the branches");
    assert_eq!(report.data["total"], 3);
    // The checkpoints carry the same spans; the trace has one span per step.
    let h = store.history("p1").unwrap();
    assert_eq!(h.len(), 4);
    store.flush_spans().unwrap();
    assert_eq!(store.spans("p1").unwrap().len(), 4);
}

#[test]
fn concurrency_limit_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let text = std::fs::read_to_string(workflows_dir().join("parallel.yaml")).unwrap();
    let spec = workflow::parse(&text.replace("concurrency: 3", "concurrency: 1"), None).unwrap();
    let calls: Calls = Default::default();
    let report = workflow::run(
        &store,
        &spec,
        options(
            "p2",
            json!({"n": 1}),
            vec![
                (
                    "worker",
                    agent(&calls, 100, |_| json!({"a": 1, "b": 2, "c": 3})),
                ),
                ("joiner", agent(&calls, 0, |_| json!({"total": 0}))),
            ],
        ),
    )
    .unwrap();
    let mut spans: Vec<(u64, u64)> = report
        .steps
        .iter()
        .map(|s| (s.started_at_ms.unwrap(), s.ended_at_ms.unwrap()))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "one at a time: {spans:?}");
    }
}

const BRANCHES: &str = r#"
name: branches
agents:
  - id: a
flow:
  - step: check
    agent: a
    inputs: [amount]
    outputs: [big]
  - step: review
    agent: a
    inputs: [amount]
    outputs: [review]
    depends_on: [check]
    when: "big"
  - step: after_review
    agent: a
    inputs: [review]
    outputs: [letter]
  - step: notify
    agent: a
    inputs: [amount]
    outputs: [sent]
    depends_on: [check]
    when: "!big && inputs.amount < 100"
"#;

#[test]
fn a_false_condition_skips_its_branch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let spec = workflow::parse(BRANCHES, None).unwrap();
    let calls: Calls = Default::default();
    let a = agent(
        &calls,
        0,
        |i| json!({"big": i["amount"].as_i64().unwrap_or(0) > 1000, "review": "r", "letter": "l", "sent": true}),
    );
    let report = workflow::run(
        &store,
        &spec,
        options("b1", json!({"amount": 50}), vec![("a", a)]),
    )
    .unwrap();
    let outcome: Vec<(&str, &str)> = report
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.outcome.as_str()))
        .collect();
    assert_eq!(
        outcome,
        [
            ("check", "ran"),
            ("review", "skipped"),
            ("after_review", "skipped"),
            ("notify", "ran")
        ]
    );
    assert_eq!(
        report.steps[1].reason.as_deref(),
        Some("its condition `big` is false")
    );
    assert_eq!(
        report.steps[2].reason.as_deref(),
        Some("its input \"review\" comes from step review, which was skipped")
    );
    assert_eq!(*calls.lock().unwrap(), ["check", "notify"]);
    assert!(!report.data.contains_key("letter"));
}

#[test]
fn a_rerun_resumes_without_running_finished_steps_and_a_rollback_reruns_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let text = std::fs::read_to_string(workflows_dir().join("customer_onboarding.yaml")).unwrap();
    let spec = workflow::parse(
        &text.replace("consensus_required: true", "retries: 0"),
        None,
    )
    .unwrap();
    let calls: Calls = Default::default();
    let fail_credit = Arc::new(AtomicU32::new(1));
    let kyc = agent(
        &calls,
        0,
        |_| json!({"kyc_verified": true, "kyc_score": 91}),
    );
    let credit: Arc<dyn Agent> = {
        let calls = calls.clone();
        let fail = fail_credit.clone();
        Arc::new(move |c: &AgentCall| {
            calls.lock().unwrap().push(c.step.clone());
            if fail.load(Ordering::SeqCst) > 0 {
                return Err(AgentError::new("ValueError", "bureau down"));
            }
            Ok(obj(
                json!({"credit_score": c.inputs["kyc_score"].as_i64().unwrap() * 8}),
            ))
        })
    };
    let run = |store: &Store| {
        workflow::run(
            store,
            &spec,
            options(
                "cust-42",
                json!({"customer_data": {"name": "Ada"}}),
                vec![("kyc_agent", kyc.clone()), ("credit_agent", credit.clone())],
            ),
        )
    };
    let err = run(&store).unwrap_err();
    assert_eq!(err.code(), "step_failed");
    assert!(err.to_string().starts_with("step 2 (credit_agent) of execution \"cust-42\" failed and the recovery policy gave up: bureau down"), "{err}");
    assert_eq!(
        store.execution("cust-42").unwrap().status.as_str(),
        "failed"
    );
    fail_credit.store(0, Ordering::SeqCst);
    let report = run(&store).unwrap();
    assert_eq!(*calls.lock().unwrap(), ["1", "2", "2"], "step 1 ran once");
    assert_eq!(report.steps[0].outcome, "replayed");
    assert_eq!(report.data["credit_score"], 728);
    // Completed: running it again returns the recorded result.
    assert_eq!(run(&store).unwrap().data["credit_score"], 728);
    assert_eq!(calls.lock().unwrap().len(), 3);
    // Roll back to the KYC step: step 2 runs again, step 1 does not.
    store
        .rollback(
            "cust-42",
            &RollbackTarget::Name("kyc_doc_validated".into()),
            None,
        )
        .unwrap();
    run(&store).unwrap();
    assert_eq!(*calls.lock().unwrap(), ["1", "2", "2", "2"]);
}

#[test]
fn retries_and_timeouts_go_through_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let spec = workflow::parse(
        r#"
name: flaky
agents:
  - id: flaky
  - id: slow
    command: "sleep 5; echo '{\"late\": 1}'"
flow:
  - step: 1
    agent: flaky
    outputs: [x]
    retries: 2
  - step: 2
    agent: slow
    outputs: [late]
    depends_on: [^1]
    timeout: 200ms
    policy:
      policies:
        - trigger: timeout_error
          action: escalate
"#,
        None,
    )
    .unwrap();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let flaky: Arc<dyn Agent> = Arc::new(move |_: &AgentCall| {
        if t.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(AgentError::new("ConnectionError", "reset by peer"))
        } else {
            Ok(obj(json!({"x": 1})))
        }
    });
    let started = std::time::Instant::now();
    let err = workflow::run(
        &store,
        &spec,
        options("f1", json!({}), vec![("flaky", flaky)]),
    )
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the sleeping command was killed"
    );
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert_eq!(err.code(), "escalated", "{err}");
    let failures = store.failures(Some("f1")).unwrap();
    let kinds: Vec<&str> = failures.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["error", "timeout_error"]);
    assert_eq!(failures[0].outcome.as_str(), "recovered");
    assert_eq!(failures[1].outcome.as_str(), "escalated");
}

#[test]
fn consensus_steps_agree_through_the_coordinator_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let spec = workflow::load(&workflows_dir().join("customer_onboarding.yaml")).unwrap();
    let calls: Calls = Default::default();
    let agents = || {
        vec![
            (
                "kyc_agent",
                agent(
                    &calls,
                    0,
                    |_| json!({"kyc_verified": true, "kyc_score": 90}),
                ),
            ),
            (
                "credit_agent",
                agent(&calls, 0, |_| json!({"credit_score": 700})),
            ),
        ]
    };
    // No agreement given: the hand-off goes through the store's embedded consensus group.
    workflow::run(
        &store,
        &spec,
        options("c1", json!({"customer_data": 1}), agents()),
    )
    .unwrap();
    let head = store.history("c1").unwrap().pop().unwrap();
    let agreement: serde_json::Value = serde_json::from_str(&head.metadata["agreement"]).unwrap();
    // Step 2's outputs have no consumer: its own agent confirms them on the log.
    assert_eq!(agreement["targets"], json!(["credit_agent"]), "{agreement}");
    assert_eq!(
        agreement["acks"],
        json!([{"agent": "credit_agent", "vote": null}])
    );
    let coordinator = omium_core::consensus::Coordinator::embedded(&store).unwrap();
    let messages = coordinator.status("c1").unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, agreement["message_id"].as_str().unwrap());
    assert_eq!(messages[0].status.name(), "agreed");
    assert_eq!(messages[0].sender, "credit_agent");
    let sent: serde_json::Value = serde_json::from_str(&messages[0].payload).unwrap();
    assert_eq!(
        sent,
        json!({"workflow": "customer_onboarding", "step": "2", "outputs": {"credit_score": 700}})
    );

    // Targets that answer: a split vote and a silent quorum are consensus violations.
    struct Answers(workflow::Answer);
    impl workflow::Respond for Answers {
        fn answer(&self, _: &str, m: &serde_json::Value) -> Result<workflow::Answer, String> {
            assert_eq!(m["message"]["step"], "2");
            Ok(self.0.clone())
        }
    }
    let agreement = |a: workflow::Answer| {
        Arc::new(
            workflow::ConsensusAgreement::new(coordinator.clone())
                .timeout(std::time::Duration::from_millis(300))
                .respond(Arc::new(Answers(a))),
        )
    };
    let mut o = options("c-vote", json!({"customer_data": 1}), agents());
    o.agreement = Some(agreement(workflow::Answer::Vote(json!("approve"))));
    workflow::run(&store, &spec, o).unwrap();
    let head = store.history("c-vote").unwrap().pop().unwrap();
    let agreed: serde_json::Value = serde_json::from_str(&head.metadata["agreement"]).unwrap();
    assert_eq!(
        agreed["acks"],
        json!([{"agent": "credit_agent", "vote": "approve"}])
    );

    let mut o = options("c-silent", json!({"customer_data": 1}), agents());
    o.agreement = Some(agreement(workflow::Answer::Silent));
    let err = workflow::run(&store, &spec, o).unwrap_err();
    assert_eq!(err.code(), "step_failed", "{err}");
    assert!(
        err.to_string()
            .contains("the outputs of step 2 (credit_agent) were not agreed: message ")
            && err.to_string().contains("(timeout)"),
        "{err}"
    );
    assert_eq!(
        store.failures(Some("c-silent")).unwrap()[0].kind.as_str(),
        "consensus_violation"
    );
    assert_eq!(store.history("c-silent").unwrap().len(), 1);
    assert_eq!(
        coordinator.status("c-silent").unwrap()[0].status.name(),
        "violated"
    );

    // A read-only store cannot run the consensus group: named before any step runs.
    drop(coordinator);
    drop(store);
    let ro = Store::open_read_only(dir.path()).unwrap();
    calls.lock().unwrap().clear();
    let err = workflow::run(
        &ro,
        &spec,
        options("c-ro", json!({"customer_data": 1}), agents()),
    )
    .unwrap_err();
    assert_eq!(err.code(), "consensus_unavailable", "{err}");
    assert!(
        err.to_string().contains(
            "has consensus_required steps (2) and the store's consensus group cannot start"
        ),
        "{err}"
    );
    assert!(calls.lock().unwrap().is_empty(), "nothing ran");
    drop(ro);
    let store = Store::open(dir.path()).unwrap();

    struct Quorum(bool);
    impl Agreement for Quorum {
        fn agree(&self, r: &AgreementRequest) -> Result<String, AgentError> {
            assert_eq!(r.step, "2");
            assert_eq!(r.outputs["credit_score"], 700);
            if self.0 {
                Ok("approved by risk_team".into())
            } else {
                Err(AgentError::new("Rejected", "risk_team voted no"))
            }
        }
    }
    let mut o = options("c2", json!({"customer_data": 1}), agents());
    o.agreement = Some(Arc::new(Quorum(true)));
    workflow::run(&store, &spec, o).unwrap();
    let head = store.history("c2").unwrap().pop().unwrap();
    assert_eq!(head.metadata["agreement"], "approved by risk_team");

    let mut o = options("c3", json!({"customer_data": 1}), agents());
    o.agreement = Some(Arc::new(Quorum(false)));
    let err = workflow::run(&store, &spec, o).unwrap_err();
    assert_eq!(err.code(), "step_failed");
    assert!(
        err.to_string()
            .contains("the outputs of step 2 (credit_agent) were not agreed: risk_team voted no"),
        "{err}"
    );
    assert_eq!(
        store.failures(Some("c3")).unwrap()[0].kind.as_str(),
        "consensus_violation"
    );
    assert_eq!(
        store.history("c3").unwrap().len(),
        1,
        "the disagreed outputs were not recorded"
    );
}

#[test]
fn shell_agents_speak_json_and_bad_output_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let spec = workflow::parse(
        r#"
name: shell
agents:
  - id: upper
    command: ["python3", "-c", "import json,sys; i=json.load(sys.stdin); print(json.dumps({'up': i['word'].upper()}))"]
  - id: liar
    command: "echo not-json"
flow:
  - step: 1
    agent: upper
    inputs: [word]
    outputs: [up]
  - step: 2
    agent: liar
    inputs: [up]
    outputs: [done]
"#,
        None,
    )
    .unwrap();
    let err = workflow::run(
        &store,
        &spec,
        options("s1", json!({"word": "omium"}), vec![]),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("agent \"liar\" (command \"echo not-json\") did not print JSON on stdout"),
        "{err}"
    );
    let h = store.history("s1").unwrap();
    let out: Value = serde_json::from_slice(&store.read_state(&h[0]).unwrap()).unwrap();
    assert_eq!(out, json!({"up": "OMIUM"}));
    let missing = workflow::run(&store, &spec, options("s2", json!({}), vec![])).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "invalid workflow inputs: workflow \"shell\" needs word; pass it"
    );
}

#[test]
fn templates_are_valid_and_named() {
    for t in workflow::templates::ALL {
        let spec = workflow::parse(t.text, Some(t.name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.name, t.name);
    }
    let err = workflow::templates::get("kyx").unwrap_err();
    assert!(err.to_string().contains("did you mean \"kyc\"?"), "{err}");
}

#[test]
fn rollback_and_pause_actions_restart_and_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let doc = |action: &str| {
        format!(
            r#"
name: actions
agents: [{{id: kyc}}, {{id: credit}}]
flow:
  - step: 1
    agent: kyc
    inputs: [customer]
    outputs: [score]
    checkpoints: [kyc_done]
  - step: 2
    agent: credit
    inputs: [score]
    outputs: [credit]
    policy:
      policies:
        - trigger: error
          action: {action}
"#
        )
    };
    let calls: Calls = Default::default();
    let failures_left = Arc::new(AtomicU32::new(1));
    let kyc = agent(&calls, 0, |_| json!({"score": 7}));
    let credit: Arc<dyn Agent> = {
        let (calls, left) = (calls.clone(), failures_left.clone());
        Arc::new(move |c: &AgentCall| {
            calls.lock().unwrap().push(c.step.clone());
            if left.load(Ordering::SeqCst) > 0 {
                left.fetch_sub(1, Ordering::SeqCst);
                return Err(AgentError::new("ValueError", "stale score"));
            }
            Ok(obj(json!({"credit": 70})))
        })
    };
    let agents = || vec![("kyc", kyc.clone()), ("credit", credit.clone())];

    // rollback: the run goes back to step 1's checkpoint and runs step 2 again.
    let spec = workflow::parse(&doc("rollback\n          rollback_to: kyc_done"), None).unwrap();
    let report = workflow::run(
        &store,
        &spec,
        options("r1", json!({"customer": 1}), agents()),
    )
    .unwrap();
    assert_eq!(report.data["credit"], 70);
    assert_eq!(*calls.lock().unwrap(), ["1", "2", "2"]);
    let names: Vec<String> = store
        .history("r1")
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["kyc_done", "rollback to kyc_done", "step 2"]);
    assert_eq!(
        store.failures(Some("r1")).unwrap()[0].outcome.as_str(),
        "recovered"
    );

    // pause: the execution waits for a human; after `resume` a re-run continues.
    calls.lock().unwrap().clear();
    failures_left.store(1, Ordering::SeqCst);
    let spec = workflow::parse(&doc("pause"), None).unwrap();
    let err = workflow::run(
        &store,
        &spec,
        options("p1", json!({"customer": 1}), agents()),
    )
    .unwrap_err();
    assert_eq!(err.code(), "paused", "{err}");
    assert_eq!(store.execution("p1").unwrap().status.as_str(), "paused");
    store.resume("p1", None, Some("ops")).unwrap();
    let report = workflow::run(&store, &spec, options("p1", json!({}), agents())).unwrap();
    assert_eq!(report.data["credit"], 70);
    assert_eq!(*calls.lock().unwrap(), ["1", "2", "2"]);
}

/// Hooks with a fixer and an analyzer, as a binding gives them.
struct Fixing;

impl workflow::Hooks for Fixing {
    fn fix(
        &self,
        name: &str,
        failure: &Value,
        inputs: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, String>> {
        (name == "raise_score").then(|| {
            assert_eq!(failure["step"], "step 2");
            let mut fixed = inputs.clone();
            fixed.insert("score".into(), json!(12));
            Ok(fixed)
        })
    }

    fn analyze(
        &self,
        _failure: &Value,
    ) -> Option<Result<omium_core::recovery::driver::Analysis, String>> {
        Some(Ok(omium_core::recovery::driver::Analysis {
            root_cause: Some("the score is below the credit threshold".into()),
            suggested_fix: None,
        }))
    }
}

#[test]
fn the_executor_applies_a_fix_with_its_fixer_and_records_the_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let doc = r#"
name: fixes
agents: [{id: kyc}, {id: credit}]
flow:
  - step: 1
    agent: kyc
    inputs: [customer]
    outputs: [score]
  - step: 2
    agent: credit
    inputs: [score]
    outputs: [credit]
    policy:
      rules:
        - trigger: any
          actions: [inspect, {suggest_fix: {fix: raise_score, auto_apply: true}}, fail]
"#;
    let calls: Calls = Default::default();
    let kyc = agent(&calls, 0, |_| json!({"score": 7}));
    let credit: Arc<dyn Agent> = {
        let calls = calls.clone();
        Arc::new(move |c: &AgentCall| {
            calls
                .lock()
                .unwrap()
                .push(format!("{}:{}", c.step, c.inputs["score"]));
            if c.inputs["score"].as_i64() < Some(10) {
                return Err(AgentError::new("ValueError", "score too low"));
            }
            Ok(obj(json!({"credit": 70})))
        })
    };
    let spec = workflow::parse(doc, None).unwrap();
    let mut o = options(
        "f1",
        json!({"customer": 1}),
        vec![("kyc", kyc.clone()), ("credit", credit.clone())],
    );
    o.hooks = Some(Arc::new(Fixing));
    let report = workflow::run(&store, &spec, o).unwrap();
    assert_eq!(report.data["credit"], 70);
    assert_eq!(*calls.lock().unwrap(), ["1", "2:7", "2:12"]);
    let f = &store.failures(Some("f1")).unwrap()[0];
    assert_eq!(f.outcome.as_str(), "recovered");
    assert_eq!(
        f.root_cause.as_deref(),
        Some("the score is below the credit threshold")
    );
    let acts: Vec<(&str, &str)> = f
        .actions
        .iter()
        .map(|a| (a.action.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(acts, [("inspect", "ok"), ("suggest_fix", "ok")]);

    // Without a fixer of that name the action is noted as failed and the policy goes on (fail).
    calls.lock().unwrap().clear();
    let o = options(
        "f2",
        json!({"customer": 1}),
        vec![("kyc", kyc), ("credit", credit)],
    );
    let err = workflow::run(&store, &spec, o).unwrap_err();
    assert_eq!(err.code(), "step_failed", "{err}");
    let f = &store.failures(Some("f2")).unwrap()[0];
    assert!(
        f.actions[1]
            .detail
            .contains("no fixer is registered as \\\"raise_score\\\""),
        "{:?}",
        f.actions
    );
}
