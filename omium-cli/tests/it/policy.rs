//! `omium policy`, `failures`, `recoveries`, `metrics` and `resume`, run as a user runs them.

use crate::common;

use common::Ctx;
use omium_core::policy::Scope;
use omium_core::prelude::*;
use omium_core::recovery::FailureInput;
use omium_core::{BeginOptions, Store};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/policies");

fn example(name: &str) -> String {
    format!("{EXAMPLES}/{name}")
}

#[test]
fn validate_accepts_the_original_documents_and_names_problems() {
    let ctx = Ctx::new();
    let files = [
        "original-policies.yaml",
        "original-timeouts.yaml",
        "original-execution-config.yaml",
    ]
    .map(example);
    let out = ctx
        .run(&["policy", "validate", &files[0], &files[1], &files[2]])
        .ok()
        .text();
    assert!(
        out.contains("original-policies.yaml: ok (3 rules)"),
        "{out}"
    );
    assert!(
        out.contains("original-execution-config.yaml: ok (0 rules)"),
        "{out}"
    );

    let bad = ctx.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "policies:\n  - trigger: timeout_error\n    action: auto_retry\n    max_retrys: 3\n",
    )
    .unwrap();
    let o = ctx.run(&["policy", "validate", bad.to_str().unwrap(), &files[0]]);
    assert_eq!(o.code, 1);
    let text = o.text();
    assert!(
        text.contains(&format!("{}:4:5: policies[0].max_retrys: unknown field \"max_retrys\"; did you mean \"max_retries\"?", bad.display())),
        "{text}"
    );
    let v = ctx
        .json(&["policy", "validate", bad.to_str().unwrap()])
        .json();
    assert_eq!(v[0]["line"], 4);
    assert_eq!(v[0]["suggestion"], "max_retries");
}

#[test]
fn hostile_policy_and_workflow_documents_get_clear_errors_not_a_crash() {
    let ctx = Ctx::new();
    let broken = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../omium-py/tests/policies/broken"
    );
    let laughs = format!("{broken}/billion_laughs.yaml");
    let nested = format!("{broken}/nested.yaml");
    for (args, want) in [
        (["policy", "validate", &laughs], "more than 100000 nodes"),
        (
            ["policy", "validate", &nested],
            "nest deeper than 64 levels",
        ),
        (["workflow", "validate", &laughs], "more than 100000 nodes"),
        (
            ["workflow", "validate", &nested],
            "nest deeper than 64 levels",
        ),
    ] {
        let o = ctx.run(&args);
        assert_eq!(o.code, 1, "{args:?}: {}", o.text());
        assert!(o.text().contains(want), "{args:?}: {}", o.text());
    }
}

#[test]
fn apply_list_show_diff_and_schema() {
    let ctx = Ctx::new();
    Store::open(&ctx.store).unwrap();
    let p1 = ctx.dir.path().join("v1.yaml");
    let p2 = ctx.dir.path().join("v2.yaml");
    std::fs::write(&p1, "retries: {max_attempts: 2}\n").unwrap();
    std::fs::write(
        &p2,
        "retries: {max_attempts: 4}\nrecovery: {on_timeout: [retry, then_escalate]}\n",
    )
    .unwrap();
    let out = ctx
        .run(&[
            "policy",
            "apply",
            p1.to_str().unwrap(),
            "--scope",
            "workflow:onboarding",
            "--author",
            "alice",
        ])
        .ok()
        .text();
    assert_eq!(
        out.trim(),
        format!(
            "applied {} as workflow:onboarding v1 of tenant default (by alice)",
            p1.display()
        )
    );
    let v = ctx
        .json(&[
            "policy",
            "apply",
            p2.to_str().unwrap(),
            "--scope",
            "workflow:onboarding",
        ])
        .ok()
        .json();
    assert_eq!(v["version"], 2);
    assert_eq!(v["policy"]["rules"][0]["trigger"], "timeout_error");

    let list = ctx.run(&["policy", "list"]).ok().text();
    let rows: Vec<&str> = list.lines().collect();
    assert!(rows[0].starts_with("TENANT"), "{list}");
    assert!(
        rows[1].starts_with("default  workflow:onboarding  1        alice"),
        "{list}"
    );
    assert_eq!(rows.len(), 3);

    let shown = ctx
        .run(&[
            "policy",
            "show",
            "--scope",
            "workflow:onboarding",
            "--version",
            "1",
        ])
        .ok()
        .text();
    assert!(shown.contains("\"max_attempts\": 2"), "{shown}");
    let src = ctx
        .run(&[
            "policy",
            "show",
            "--scope",
            "workflow:onboarding",
            "--source",
        ])
        .ok()
        .text();
    assert!(src.starts_with("retries: {max_attempts: 4}"), "{src}");

    let d = ctx
        .run(&["policy", "diff", "1", "2", "--scope", "workflow:onboarding"])
        .ok()
        .text();
    assert!(
        d.contains("-      \"max_attempts\": 2") && d.contains("+      \"max_attempts\": 4"),
        "{d}"
    );
    assert!(d.contains("+      \"trigger\": \"timeout_error\""), "{d}");
    let same = ctx
        .run(&[
            "policy",
            "diff",
            "2",
            p2.to_str().unwrap(),
            "--scope",
            "workflow:onboarding",
        ])
        .ok()
        .text();
    assert!(same.contains("are the same policy"), "{same}");

    let schema = ctx.run(&["policy", "schema"]).ok().json();
    assert_eq!(schema["additionalProperties"], false);

    let e = ctx
        .run(&[
            "policy",
            "apply",
            p1.to_str().unwrap(),
            "--scope",
            "wrkflow:x",
        ])
        .failed();
    assert!(e.contains("did you mean \"workflow\"?"), "{e}");
    let e = ctx.run(&["policy", "show", "--scope", "global"]).failed();
    assert!(
        e.contains("no policy is applied to tenant \"default\" scope global"),
        "{e}"
    );
    let audit = ctx.json(&["audit"]).ok().json();
    let applies = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "policy.apply")
        .count();
    assert_eq!(applies, 2);
}

#[test]
fn failures_recoveries_metrics_and_resume() {
    let ctx = Ctx::new();
    {
        let store = Store::open(&ctx.store).unwrap();
        store
            .apply_policy(
                "default",
                &Scope::Global,
                "recovery: {on_hallucination: [notify, pause]}",
                None,
                None,
            )
            .unwrap();
        let run = store
            .begin(
                "cust-1",
                BeginOptions {
                    workflow: "onboarding".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let seq = run.reserve();
        let input = FailureInput {
            execution_id: "cust-1".into(),
            workflow: "onboarding".into(),
            tenant: "default".into(),
            step: Some("draft_offer".into()),
            seq: Some(seq),
            agent: "main".into(),
            error_classes: vec!["omium.errors.HallucinationDetected".into()],
            message: "offer cites a rate that does not exist".into(),
            ..Default::default()
        };
        let eff = store
            .effective_policy("default", Some("onboarding"), Some("draft_offer"))
            .unwrap();
        let mut rec = store.start_recovery(input, eff).unwrap();
        rec.next_directive().unwrap();
        rec.done(true, None).unwrap();
        rec.next_directive().unwrap();
        rec.paused().unwrap();
        run.pause("hallucination").unwrap();
    }
    let out = ctx.run(&["failures"]).ok().text();
    let row = out.lines().nth(1).unwrap();
    assert!(
        row.contains("cust-1")
            && row.contains("draft_offer")
            && row.contains("hallucination_detected  paused"),
        "{out}"
    );
    assert!(row.contains("notify,pause"), "{out}");
    assert_eq!(
        ctx.json(&["failures", "--type", "timeout_error"])
            .ok()
            .json(),
        serde_json::json!([])
    );
    let e = ctx.run(&["failures", "--type", "timeout"]).failed();
    assert!(e.contains("did you mean \"timeout_error\"?"), "{e}");

    let rec = ctx
        .json(&["recoveries", "--execution", "cust-1"])
        .ok()
        .json();
    let actions: Vec<&str> = rec
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["notify", "pause"]);

    let state = ctx.dir.path().join("fixed.bin");
    std::fs::write(&state, b"corrected offer").unwrap();
    let out = ctx
        .run(&[
            "resume",
            "cust-1",
            "--state-file",
            state.to_str().unwrap(),
            "--by",
            "ops",
        ])
        .ok()
        .text();
    assert!(
        out.contains("resumed cust-1; step \"draft_offer\" recorded with the given state"),
        "{out}"
    );
    let e = ctx.run(&["resume", "cust-1"]).failed();
    assert!(e.contains("only a paused execution can be resumed"), "{e}");
    {
        let store = Store::open(&ctx.store).unwrap();
        let run = store.begin("cust-1", BeginOptions::default()).unwrap();
        let out = run
            .step("draft_offer", || {
                Ok::<_, omium_core::Error>(b"again".to_vec())
            })
            .unwrap();
        assert_eq!(out, b"corrected offer");
        run.complete(None).unwrap();
    }
    let m = ctx.json(&["metrics", "--recovery"]).ok().json();
    assert_eq!(
        (
            m["failures"].as_u64(),
            m["recovered"].as_u64(),
            m["recovery_rate"].as_f64()
        ),
        (Some(1), Some(1), Some(1.0))
    );
    assert_eq!(m["by_type"]["hallucination_detected"], 1);
    let text = ctx
        .run(&["metrics", "--recovery", "--workflow", "onboarding"])
        .ok()
        .text();
    assert!(text.contains("recovery rate         100.0%"), "{text}");
    assert!(
        text.contains("failures by type\n  hallucination_detected  1\n"),
        "{text}"
    );
    // The execution analytics of the same history: one failure detected and recovered, and
    // the run that recovered it completed.
    let a = ctx
        .json(&["metrics", "--since", "1h", "--by", "workflow"])
        .ok()
        .json();
    let t = &a["totals"];
    assert_eq!(
        (
            t["failures"].as_u64(),
            t["recovered"].as_u64(),
            t["completed"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{a}"
    );
    assert_eq!(t["failures_by_type"]["hallucination_detected"], 1, "{a}");
    assert_eq!(a["groups"][0]["key"]["workflow"], "onboarding", "{a}");
    let text = ctx.run(&["metrics", "--since", "1h"]).ok().text();
    assert!(text.contains("1 recovered, MTTR"), "{text}");
    let bad = ctx.run(&["metrics", "--since", "last week"]).failed();
    assert!(bad.contains("30m, 24h, 7d"), "{bad}");
}
