//! Policies: the three documents of the original design, the canonical form, validation
//! messages, versions per scope, and the recovery driver with a real webhook receiver.

use std::time::Duration;

use crate::common;

use omium_core::policy::{self, Action, BackoffKind, Compiled, Failure, Scope, Trigger};
use omium_core::prelude::*;
use omium_core::recovery::{Directive, FailureInput, Outcome};
use omium_core::{BeginOptions, Store};

fn example(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/policies/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

fn names(actions: &[Action]) -> Vec<&'static str> {
    actions.iter().map(Action::name).collect()
}

#[test]
fn the_three_original_documents_parse_to_canonical_rules() {
    let p = policy::parse(
        &example("original-policies.yaml"),
        Some("original-policies.yaml"),
    )
    .unwrap();
    let t: Vec<_> = p
        .rules
        .iter()
        .map(|r| (r.trigger, names(&r.actions)))
        .collect();
    assert_eq!(
        t,
        [
            (
                Trigger::HallucinationDetected,
                vec!["suggest_fix", "notify", "pause"]
            ),
            (Trigger::TimeoutError, vec!["retry"]),
            (
                Trigger::ConsensusViolation,
                vec!["inspect", "notify", "rollback"]
            ),
        ]
    );
    let Action::Retry(r) = &p.rules[1].actions[0] else {
        panic!()
    };
    assert_eq!(
        (r.max_attempts, r.backoff),
        (4, BackoffKind::Exponential),
        "max_retries 3 = 4 attempts in all"
    );
    let Action::SuggestFix(s) = &p.rules[0].actions[0] else {
        panic!()
    };
    assert_eq!(
        (s.fix.as_deref(), s.auto_apply),
        (Some("update_prompt_with_constraint"), true)
    );

    let p = policy::parse(&example("original-timeouts.yaml"), None).unwrap();
    assert_eq!(p.defaults.step_timeout.unwrap().as_millis(), 30_000);
    assert_eq!(p.defaults.consensus_timeout.unwrap().as_millis(), 5_000);
    assert_eq!(p.defaults.rollback_timeout.unwrap().as_millis(), 2_000);
    assert_eq!(p.defaults.retry.as_ref().unwrap().max_attempts, 3);
    let t: Vec<_> = p
        .rules
        .iter()
        .map(|r| (r.trigger, names(&r.actions)))
        .collect();
    assert_eq!(
        t,
        [
            (
                Trigger::HallucinationDetected,
                vec!["pause", "notify", "suggest_fix"]
            ),
            (Trigger::TimeoutError, vec!["retry", "escalate"]),
            (Trigger::ConsensusViolation, vec!["rollback", "inspect"]),
        ]
    );

    let p = policy::parse(&example("original-execution-config.yaml"), None).unwrap();
    let d = &p.defaults;
    assert_eq!(d.step_timeout.unwrap().as_millis(), 30_000);
    assert_eq!(d.retry.as_ref().unwrap().max_attempts, 4);
    assert_eq!(d.memory_limit.unwrap().0, 2_000_000_000);
    assert_eq!(d.model_selection.as_deref(), Some("auto"));
    assert_eq!(
        d.tool_allowlist.as_deref().unwrap(),
        ["email", "database", "api_call"]
    );
    assert!(p.rules.is_empty());
}

#[test]
fn the_canonical_form_parses_back_to_itself_and_json_is_accepted() {
    for f in [
        "original-policies.yaml",
        "original-timeouts.yaml",
        "original-execution-config.yaml",
    ] {
        let p = policy::parse(&example(f), None).unwrap();
        let json = policy::to_json(&p);
        assert_eq!(policy::parse(&json, None).unwrap(), p, "{f}");
    }
    let p = policy::parse(
        r#"{"rules": [{"trigger": "rate_limit_error", "actions": [{"retry": {"max_attempts": 5, "backoff": "linear"}}, "fail"]}]}"#,
        None,
    )
    .unwrap();
    assert_eq!(names(&p.rules[0].actions), ["retry", "fail"]);
}

#[test]
fn bad_documents_name_file_line_column_value_and_choices() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        ("policies:\n  - trigger: timeout_eror\n    action: auto_retry\n", (2, 14), "policies[0].trigger: unknown value \"timeout_eror\"; did you mean \"timeout_error\"?"),
        ("policies:\n  - trigger: timeout_error\n    action: auto_retyr\n", (3, 13), "did you mean \"auto_retry\"?"),
        ("policies:\n  - trigger: timeout_error\n    action: auto_retry\n    max_retry: 3\n", (4, 5), "unknown field \"max_retry\"; did you mean \"max_retries\"?"),
        ("timeouts:\n  agent_execution: 30 seconds\n", (2, 20), "unknown duration unit \"seconds\""),
        ("retries:\n  max_attempts: three\n", (2, 17), "expected a non-negative integer, found \"three\""),
        ("recovery:\n  on_timeout: [retry, then_escalte]\n", (2, 23), "did you mean \"then_escalate\"?"),
        ("recovery:\n  on_timeouts: [retry]\n", (2, 3), "did you mean \"on_timeout\"?"),
        ("execution_config:\n  sandboxing: on\n", (2, 15), "valid: enabled, disabled"),
        ("execution_config:\n  memory_limit: 2 bananas\n", (2, 17), "unknown size unit"),
        ("rules:\n  - trigger: any\n    actions: []\n", (3, 14), "expected at least one action"),
        ("rules:\n  - trigger: any\n    when: \"failure.attempt >\"\n    actions: [fail]\n", (3, 11), "does not parse"),
        ("rules:\n  - trigger: any\n    actions:\n      - retry: {max_attempts: 0}\n", (4, 31), "max_attempts must be at least 1"),
        ("policies:\n  - trigger: timeout_error\n    action: pause\n    max_retries: 2\n", (4, 18), "max_retries does not apply to action pause"),
        ("retries: {max_attempts: 3}\nexecution_config: {max_retries: 5}\n", (2, 33), "give the retry count once"),
        ("policies: [\n", (2, 1), "not valid YAML or JSON"),
        ("version: 2\n", (1, 10), "unsupported policy version 2"),
        ("channels:\n  ops: {webhook: \"ftp://x\"}\n", (2, 18), "webhook must be an http:// or https:// URL"),
        ("channels:\n  ops: {webhook: \"http://x\"}\nrules:\n  - trigger: any\n    actions: [{notify: {channels: [opz]}}]\n", (5, 15), "did you mean \"ops\"?"),
        ("policies:\n  trigger: timeout_error\n", (2, 3), "expected a list, found a mapping"),
    ];
    for (text, (line, col), want) in cases {
        let e = policy::parse(text, Some("bad.yaml")).expect_err(text);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("bad.yaml:{line}:{col}: ")),
            "{text:?}\n  gave {msg}"
        );
        assert!(
            msg.contains(want),
            "{text:?}\n  gave {msg}\n  wanted {want}"
        );
    }
}

#[test]
fn the_json_schema_describes_every_section() {
    let s = policy::json_schema();
    let props = s["properties"].as_object().unwrap();
    for k in [
        "rules",
        "policies",
        "timeouts",
        "retries",
        "recovery",
        "execution_config",
        "defaults",
        "classify",
        "channels",
    ] {
        assert!(props.contains_key(k), "{k}");
    }
    assert_eq!(s["additionalProperties"], false);
    assert!(s.pointer("/$defs/Action/anyOf/0/enum").is_some());
}

#[test]
fn decisions_follow_rule_order_matchers_and_catch_alls() {
    let p = policy::parse(
        r#"
rules:
  - trigger: timeout_error
    when: "failure.attempt > 1 || failure.step == 'slow'"
    actions: [escalate]
  - trigger: timeout_error
    actions: [retry]
  - trigger: any
    actions: [notify, fail]
"#,
        None,
    )
    .unwrap();
    let c = Compiled::new(&p).unwrap();
    let mut f = Failure::new(Trigger::TimeoutError);
    assert_eq!(c.decide(&f).unwrap().unwrap().actions[0].name(), "retry");
    f.step = "slow".into();
    assert_eq!(c.decide(&f).unwrap().unwrap().actions[0].name(), "escalate");
    let f = Failure::new(Trigger::LlmError);
    assert_eq!(
        names(&c.decide(&f).unwrap().unwrap().actions),
        ["notify", "fail"]
    );
}

#[test]
fn versions_per_scope_most_specific_wins_and_changes_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let global = "rules: [{trigger: any, actions: [fail]}]\ndefaults: {step_timeout: 10s}\n";
    let wf = "rules: [{trigger: timeout_error, actions: [retry]}]\n";
    let step_v1 = "defaults: {step_timeout: 1s}\n";
    let step_v2 = "defaults: {step_timeout: 2s, tool_allowlist: [search]}\n";
    store
        .apply_policy(
            "default",
            &Scope::Global,
            global,
            Some("global.yaml"),
            Some("alice"),
        )
        .unwrap();
    store
        .apply_policy(
            "default",
            &Scope::parse("workflow:onboard").unwrap(),
            wf,
            None,
            Some("bob"),
        )
        .unwrap();
    let s = Scope::parse("step:onboard/kyc").unwrap();
    store
        .apply_policy("default", &s, step_v1, None, None)
        .unwrap();
    let v2 = store
        .apply_policy("default", &s, step_v2, None, Some("carol"))
        .unwrap();
    assert_eq!((v2.version, v2.author.as_str()), (2, "carol"));

    let e = store
        .effective_policy("default", Some("onboard"), Some("kyc"))
        .unwrap();
    let scopes: Vec<String> = e
        .layers
        .iter()
        .map(|(s, v, _)| format!("{s} v{v}"))
        .collect();
    assert_eq!(
        scopes,
        ["step:onboard/kyc v2", "workflow:onboard v1", "global v1"]
    );
    assert_eq!(e.defaults().step_timeout.unwrap().as_millis(), 2000);
    let (scope, rule) = e
        .decide(&Failure::new(Trigger::TimeoutError))
        .unwrap()
        .unwrap();
    assert_eq!(
        (scope.to_string(), rule.actions[0].name()),
        ("workflow:onboard".into(), "retry")
    );
    let (scope, _) = e.decide(&Failure::new(Trigger::LlmError)).unwrap().unwrap();
    assert_eq!(scope.to_string(), "global");
    // Another workflow sees only the global policy.
    let other = store
        .effective_policy("default", Some("billing"), Some("kyc"))
        .unwrap();
    assert_eq!(other.layers.len(), 1);
    assert_eq!(other.defaults().step_timeout.unwrap().as_millis(), 10_000);

    let v1 = store.policy_version("default", &s, Some(1)).unwrap();
    assert_eq!(v1.source, step_v1);
    let d = policy::VersionDiff::of("v1", &v1.canonical, "v2", &v2.canonical);
    assert!(
        d.unified.contains("-    \"step_timeout\": \"1s\"")
            && d.unified.contains("+    \"step_timeout\": \"2s\""),
        "{}",
        d.unified
    );
    let audit = store.audit_entries(0, 100).unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.action == "policy.apply").count(),
        4
    );
    assert!(store.verify_audit().unwrap().problems.is_empty());

    let bad = store.apply_policy(
        "default",
        &Scope::Global,
        "rules: [{trigger: nope, actions: [fail]}]",
        Some("x.yaml"),
        None,
    );
    assert_eq!(bad.unwrap_err().code(), "invalid_policy");
    assert_eq!(
        store
            .policy_versions("default", Some(&Scope::Global))
            .unwrap()
            .len(),
        1,
        "a bad policy stores nothing"
    );
    assert!(Scope::parse("stepp:x")
        .unwrap_err()
        .to_string()
        .contains("did you mean \"step\""));
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let r = policy::RetryAction {
        max_attempts: 10,
        initial_delay: policy::Dur::millis(100),
        multiplier: 2.0,
        max_delay: policy::Dur::millis(1000),
        jitter: policy::Jitter::None,
        backoff: BackoffKind::Exponential,
    };
    let ms: Vec<u128> = (1..=6).map(|n| r.delay(n, 0.5).as_millis()).collect();
    assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    let lin = policy::RetryAction {
        backoff: BackoffKind::Linear,
        ..r.clone()
    };
    assert_eq!(
        (1..=3)
            .map(|n| lin.delay(n, 0.0).as_millis())
            .collect::<Vec<_>>(),
        [100, 300, 500]
    );
    let jit = policy::RetryAction {
        jitter: policy::Jitter::Full,
        ..r
    };
    assert_eq!(jit.delay(3, 0.25).as_millis(), 100);
}

#[test]
fn a_recovery_retries_then_escalates_with_webhooks_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (url, bodies) = common::http_receiver(200, "/hook");
    // The receiver is on loopback, which webhooks reach only when the operator allows it.
    omium_core::recovery::allow_webhook_hosts(&["127.0.0.1"]);
    let doc = format!(
        "channels:\n  ops: {{webhook: \"{url}\"}}\n  slack: {{webhook: \"{url}\", format: slack}}\nrules:\n  - trigger: timeout_error\n    actions:\n      - retry: {{max_attempts: 3, initial_delay: 10ms, jitter: none}}\n      - escalate\n"
    );
    store
        .apply_policy("default", &Scope::Global, &doc, None, None)
        .unwrap();
    let run = store
        .begin(
            "e1",
            BeginOptions {
                workflow: "wf".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let eff = store
        .effective_policy("default", Some("wf"), Some("call_llm"))
        .unwrap();
    let mut rec = store
        .start_recovery(
            FailureInput {
                execution_id: "e1".into(),
                workflow: "wf".into(),
                tenant: "default".into(),
                step: Some("call_llm".into()),
                seq: Some(0),
                error_classes: vec![
                    "omium.errors.StepTimeoutError".into(),
                    "TimeoutError".into(),
                ],
                message: "step 'call_llm' did not finish within 1 s".into(),
                ..Default::default()
            },
            eff,
        )
        .unwrap();
    assert_eq!(rec.record().kind, Trigger::TimeoutError);
    assert_eq!(
        rec.next_directive().unwrap(),
        Directive::Retry {
            attempt: 2,
            delay: Duration::from_millis(10)
        }
    );
    rec.done(false, Some("timed out again")).unwrap();
    assert_eq!(
        rec.next_directive().unwrap(),
        Directive::Retry {
            attempt: 3,
            delay: Duration::from_millis(20)
        }
    );
    rec.done(false, None).unwrap();
    let Directive::Escalate { channels } = rec.next_directive().unwrap() else {
        panic!()
    };
    assert_eq!(channels, ["ops", "slack"]);
    let sent = rec.notify(&channels, "omium.escalation");
    assert!(sent.iter().all(|(_, r)| r.is_ok()), "{sent:?}");
    rec.escalated().unwrap();
    run.fail("escalated").unwrap();

    let json: serde_json::Value =
        serde_json::from_slice(&bodies.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
    assert_eq!(json["failure"]["type"], "timeout_error");
    assert_eq!(json["failure"]["step"], "call_llm");
    let slack: serde_json::Value =
        serde_json::from_slice(&bodies.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("timeout_error in step `call_llm`"),
        "{slack}"
    );

    let f = &store.failures(Some("e1")).unwrap()[0];
    assert_eq!(f.outcome, Outcome::Escalated);
    let acts: Vec<(&str, &str)> = f
        .actions
        .iter()
        .map(|a| (a.action.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        acts,
        [("retry", "failed"), ("retry", "failed"), ("escalate", "ok")]
    );
    let m = store.recovery_metrics(None).unwrap();
    assert_eq!(
        (m.failures, m.escalated, m.recovery_rate),
        (1, 1, Some(0.0))
    );
}

#[test]
fn pause_resume_with_edited_state_then_completion_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .apply_policy(
            "default",
            &Scope::Global,
            "recovery: {on_hallucination: [pause]}",
            None,
            None,
        )
        .unwrap();
    let run = store
        .begin(
            "e2",
            BeginOptions {
                workflow: "wf".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let seq = run.reserve();
    let eff = store
        .effective_policy("default", Some("wf"), Some("answer"))
        .unwrap();
    let input = FailureInput {
        execution_id: "e2".into(),
        workflow: "wf".into(),
        tenant: "default".into(),
        step: Some("answer".into()),
        seq: Some(seq),
        agent: "main".into(),
        error_classes: vec!["omium.errors.HallucinationDetected".into()],
        message: "cites a source that does not exist".into(),
        ..Default::default()
    };
    let mut rec = store.start_recovery(input, eff).unwrap();
    assert!(matches!(
        rec.next_directive().unwrap(),
        Directive::Pause { .. }
    ));
    rec.paused().unwrap();
    run.pause("hallucination").unwrap();
    drop(run);

    let err = store
        .begin("e2", BeginOptions::default())
        .err()
        .expect("a paused execution refuses to begin");
    assert!(err.to_string().contains("waits for a human"), "{err}");
    store
        .resume("e2", Some(b"corrected"), Some("reviewer"))
        .unwrap()
        .unwrap();
    assert_eq!(
        store.execution("e2").unwrap().status,
        omium_core::Status::Pending
    );
    let run = store.begin("e2", BeginOptions::default()).unwrap();
    let mut ran = false;
    let out = run
        .step("answer", || {
            ran = true;
            Ok::<_, omium_core::Error>(b"fresh".to_vec())
        })
        .unwrap();
    assert_eq!(
        (out.as_slice(), ran),
        (&b"corrected"[..], false),
        "the human's state replaces the step"
    );
    run.complete(None).unwrap();
    let f = &store.failures(Some("e2")).unwrap()[0];
    assert_eq!(f.outcome, Outcome::Recovered);
    assert!(f.resolved_at_ms.is_some());
    let m = store.recovery_metrics(Some("wf")).unwrap();
    assert_eq!((m.recovered, m.recovery_rate), (1, Some(1.0)));
    assert!(m.mttr_ms.is_some());
    assert_eq!(
        store.resume("e2", None, None).unwrap_err().code(),
        "invalid_state"
    );
}

/// Hostile documents: nested aliases that expand to billions of nodes, nesting deep enough to
/// overflow a recursive builder, an oversized file. Each is a clear problem with line and
/// column, found without expanding anything, for policies and workflow specs alike.
#[test]
fn hostile_documents_are_refused_by_the_limits_before_they_expand() {
    // Billion laughs: 9 levels of 9 aliases each (about 387 million nodes).
    let mut laughs = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    assert!(laughs.len() < 600);
    // About 20 KB of `- - - …`, and a JSON flow nested as deep.
    let dashes = format!("{}x\n", "- ".repeat(10_000));
    let brackets = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    // Aliases that deepen a little each time: few nodes, deep nesting.
    let mut deepening = String::from("d0: &d0 [x]\n");
    for i in 1..100 {
        deepening.push_str(&format!("d{i}: &d{i} [*d{}]\n", i - 1));
    }
    let huge = format!("description: \"{}\"\n", "x".repeat(2 << 20));
    let cases: [(&str, &str); 5] = [
        (
            &laughs,
            "more than 100000 nodes once its aliases are expanded",
        ),
        (&dashes, "nest deeper than 64 levels"),
        (&brackets, "nest deeper than 64 levels"),
        (&deepening, "nest deeper than 64 levels"),
        (&huge, "the limit is 1048576 (1 MiB)"),
    ];
    for (text, want) in cases {
        let e = policy::parse(text, Some("evil.yaml")).expect_err(want);
        let msg = e.to_string();
        assert!(msg.starts_with("evil.yaml:"), "{msg}");
        assert!(msg.contains(want), "{msg}\n  wanted {want}");
        let e = omium_core::workflow::parse(text, Some("evil.yaml")).expect_err(want);
        let msg = e.to_string();
        assert!(msg.contains(want), "{msg}\n  wanted {want}");
    }
    // Within the limits, aliases still work.
    let ok = "channels:\n  ops: &hook {webhook: \"http://127.0.0.1:9/x\"}\n  oncall: *hook\n";
    policy::parse(ok, None).unwrap();
}

/// A receiver cannot bounce a webhook elsewhere, and what the caller learns of a failure is a
/// status or "no answer", not the network error (which would tell what answers where).
#[test]
fn webhooks_follow_no_redirects_and_say_nothing_of_network_errors() {
    use omium_core::recovery::{allow_webhook_hosts, post_webhook};
    allow_webhook_hosts(&["127.0.0.1"]);
    let (url, bodies) = common::http_receiver(302, "/moved");
    assert_eq!(
        post_webhook(&url, "{}").unwrap_err(),
        "refused: the receiver redirected (HTTP 302); webhooks follow no redirects"
    );
    assert_eq!(bodies.recv_timeout(Duration::from_secs(10)).unwrap(), b"{}");
    let (url, _) = common::http_receiver(404, "/gone");
    assert_eq!(post_webhook(&url, "{}").unwrap_err(), "failed: HTTP 404");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        post_webhook(&format!("http://{closed}/x"), "{}").unwrap_err(),
        "failed: no answer"
    );
    // Without the operator's word, loopback is refused before anything is sent.
    let e = post_webhook("http://[::1]:9/x", "{}").unwrap_err();
    assert!(e.starts_with("refused: ::1 is a loopback"), "{e}");
}
