//! The recovery driver (`omium_core::recovery::driver`): every command of a policy's actions,
//! driven as a host drives it, against a real store, with the recorded failure checked after.

use std::time::Duration;

use omium_core::policy::Scope;
use omium_core::prelude::*;
use omium_core::recovery::driver::{Analysis, Command, Driver, Event, Failed};
use omium_core::{BeginOptions, Error, FailureInput, Outcome, Store};

fn driver(store: &Store, execution: &str, policy: &str) -> Driver {
    store
        .apply_policy("default", &Scope::Global, policy, None, None)
        .unwrap();
    store
        .begin(
            execution,
            BeginOptions {
                workflow: "wf".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let eff = store
        .effective_policy("default", Some("wf"), Some("charge"))
        .unwrap();
    let input = FailureInput {
        execution_id: execution.into(),
        workflow: "wf".into(),
        tenant: "default".into(),
        step: Some("charge".into()),
        seq: Some(0),
        agent: "main".into(),
        error_classes: vec!["ValueError".into()],
        message: "ValueError: card declined".into(),
        ..Default::default()
    };
    let rec = store.start_recovery(input, eff).unwrap();
    Driver::new(
        Box::new(rec),
        execution,
        "step \"charge\"",
        "ValueError: card declined",
    )
}

fn failed(message: &str) -> Event {
    Event::Called(Err(Failed {
        message: message.into(),
        recoverable: true,
    }))
}

fn actions(store: &Store, execution: &str) -> (Outcome, Vec<(String, String, String)>) {
    let f = store.failures(Some(execution)).unwrap().pop().unwrap();
    let acts = f
        .actions
        .iter()
        .map(|a| {
            let d: serde_json::Value = serde_json::from_str(&a.detail).unwrap();
            let note = d["note"].as_str().unwrap_or("").to_string();
            (a.action.clone(), a.outcome.clone(), note)
        })
        .collect();
    (f.outcome, acts)
}

fn own(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn missing_hooks_are_noted_then_a_fix_is_applied_and_the_fixed_call_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let policy = "rules:\n  - trigger: any\n    actions:\n      - fallback: {function: cached}\n      - inspect\n      - suggest_fix: {fix: lower_amount, auto_apply: true}\n      - fail\n";
    let mut d = driver(&store, "e1", policy);
    let Command::Fallback { function } = d.advance(Event::Start).unwrap() else {
        panic!()
    };
    assert_eq!(function, "cached");
    // The host has no fallback of that name.
    let Command::Analyze { failure } = d.advance(Event::Missing).unwrap() else {
        panic!()
    };
    assert_eq!(failure["step"], "charge");
    let analysis = Analysis {
        root_cause: Some("amount over the limit".into()),
        suggested_fix: None,
    };
    let Command::Fix { fix, failure } = d.advance(Event::Analyzed(Ok(analysis))).unwrap() else {
        panic!()
    };
    assert_eq!(
        (fix.as_str(), failure["root_cause"].as_str()),
        ("lower_amount", Some("amount over the limit"))
    );
    assert!(matches!(
        d.advance(Event::Fixed(Ok(()))).unwrap(),
        Command::CallFixed
    ));
    assert!(matches!(
        d.advance(Event::Called(Ok(()))).unwrap(),
        Command::Return
    ));
    assert!(d.ended());
    let (outcome, acts) = actions(&store, "e1");
    assert_eq!(outcome, Outcome::Recovered);
    assert_eq!(
        acts,
        own(&[
            (
                "fallback",
                "failed",
                "no fallback is registered as \"cached\""
            ),
            ("inspect", "ok", ""),
            ("suggest_fix", "ok", ""),
        ])
    );
    // An event the driver does not wait for is refused and changes nothing.
    let e = d.advance(Event::Start).unwrap_err();
    assert!(
        e.to_string()
            .contains("got the event \"start\", expected nothing"),
        "{e}"
    );
}

#[test]
fn retries_then_a_failed_fix_then_escalation_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let policy = "rules:\n  - trigger: any\n    actions:\n      - retry: {max_attempts: 2, initial_delay: 5ms, jitter: none}\n      - suggest_fix: {fix: shrink, auto_apply: true}\n      - suggest_fix: {fix: check the card}\n      - escalate: {channels: []}\n";
    let mut d = driver(&store, "e2", policy);
    let Command::Retry { attempt, delay } = d.advance(Event::Start).unwrap() else {
        panic!()
    };
    assert_eq!((attempt, delay), (2, Duration::from_millis(5)));
    // An event out of turn is refused; the driver still waits for the call's result.
    assert!(d.advance(Event::Fixed(Ok(()))).is_err());
    let Command::Fix { .. } = d.advance(failed("ValueError: declined again")).unwrap() else {
        panic!()
    };
    // The fixer raised: noted; the suggestion without auto_apply is recorded; then escalate.
    let Command::Notify { payload } = d
        .advance(Event::Fixed(Err("KeyError: 'amount'".into())))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(payload["event"], "omium.failure.escalation");
    assert_eq!(payload["failure"]["suggested_fix"], "check the card");
    let Command::Raise { error, failure } = d
        .advance(Event::Notified(vec!["notifier page raised boom".into()]))
        .unwrap()
    else {
        panic!()
    };
    assert!(matches!(error, Error::Escalated { .. }));
    assert_eq!(
        error.to_string(),
        "step \"charge\" of execution \"e2\" failed and was escalated to the notifiers: ValueError: declined again"
    );
    assert_eq!(failure["outcome"], "escalated");
    let (outcome, acts) = actions(&store, "e2");
    assert_eq!(outcome, Outcome::Escalated);
    assert_eq!(
        acts,
        own(&[
            ("retry", "failed", "ValueError: declined again"),
            ("suggest_fix", "failed", "KeyError: 'amount'"),
            ("suggest_fix", "ok", "suggested: check the card"),
            ("escalate", "failed", "notifier page raised boom"),
        ])
    );
}

#[test]
fn pause_and_rollback_end_with_the_core_errors_and_an_unrecoverable_retry_reraises() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut d = driver(
        &store,
        "e3",
        "rules:\n  - trigger: any\n    actions: [pause]\n",
    );
    let Command::Raise { error, .. } = d.advance(Event::Start).unwrap() else {
        panic!()
    };
    assert_eq!(error.code(), "paused");
    assert_eq!(actions(&store, "e3").0, Outcome::Paused);

    let mut d = driver(
        &store,
        "e4",
        "rules:\n  - trigger: any\n    actions: [{rollback: {to: last_consistent}}]\n",
    );
    let Command::Raise { error, failure } = d.advance(Event::Start).unwrap() else {
        panic!()
    };
    assert_eq!(error.code(), "rolled_back");
    let params = Command::Raise {
        error,
        failure: failure.clone(),
    }
    .params();
    assert_eq!(
        (params["to"].as_str(), params["execution_id"].as_str()),
        (Some("last_consistent"), Some("e4"))
    );
    // Nothing consistent was recorded: the execution runs again from its start.
    let rolled = omium_core::recovery::roll_back_as_decided(
        "last_consistent",
        &failure,
        |t, reason| store.rollback("e4", t, Some(reason)),
        || Ok(!store.history("e4").unwrap().is_empty()),
    );
    assert!(rolled.unwrap().is_none());

    let mut d = driver(
        &store,
        "e5",
        "rules:\n  - trigger: any\n    actions: [{retry: {max_attempts: 3, initial_delay: 1ms}}]\n",
    );
    assert!(matches!(
        d.advance(Event::Start).unwrap(),
        Command::Retry { .. }
    ));
    let out = d
        .advance(Event::Called(Err(Failed {
            message: "store closed".into(),
            recoverable: false,
        })))
        .unwrap();
    assert!(matches!(out, Command::Reraise));
    assert_eq!(actions(&store, "e5").0, Outcome::Failed);
}
