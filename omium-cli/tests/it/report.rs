//! `omium report`: the period's report as JSON (figures checked against what was written), CSV,
//! HTML and a real PDF read back with `pdftotext`; bad periods and formats are named.

use std::process::Command;

use omium_core::policy::Scope;
use omium_core::prelude::*;
use omium_core::recovery::FailureInput;
use omium_core::{BeginOptions, Error, Store};

use crate::common::Ctx;

fn today() -> String {
    omium_core::rfc3339_ms(omium_core::store::now_ms() as i64)[..10].to_string()
}

fn write_history(ctx: &Ctx) {
    let store = Store::open(&ctx.store).unwrap();
    store
        .apply_policy(
            "default",
            &Scope::Global,
            "rules:\n  - trigger: tool_error\n    actions:\n      - retry: {max_attempts: 2}\n",
            None,
            Some("ops@example"),
        )
        .unwrap();
    for (id, ok) in [("r-1", true), ("r-2", false), ("r-3", true)] {
        let run = store
            .begin(
                id,
                BeginOptions {
                    workflow: "billing".into(),
                    ..BeginOptions::default()
                },
            )
            .unwrap();
        run.step("charge", || Ok::<_, Error>(b"ok".to_vec()))
            .unwrap();
        if ok {
            run.complete(None).unwrap();
        } else {
            let input = FailureInput {
                execution_id: id.into(),
                workflow: "billing".into(),
                tenant: "default".into(),
                step: Some("refund".into()),
                agent: "main".into(),
                kind: Some(omium_core::policy::Trigger::ToolError),
                message: "the payment API (refunds) answered 503".into(),
                ..FailureInput::default()
            };
            store
                .start_recovery(input, Default::default())
                .unwrap()
                .failed()
                .unwrap();
            run.fail("refund failed").unwrap();
        }
    }
}

#[test]
fn a_report_in_every_format_says_what_happened_in_the_period() {
    let ctx = Ctx::new();
    write_history(&ctx);
    let day = today();

    let json = ctx
        .run(&["report", "--period", &day, "--format", "json"])
        .ok()
        .json();
    let t = &json["totals"];
    assert_eq!(
        (&t["started"], &t["completed"], &t["failed"]),
        (&3.into(), &2.into(), &1.into()),
        "{json}"
    );
    assert_eq!(json["by_workflow"][0][0], "billing");
    assert_eq!(json["incidents"][0]["type"], "tool_error");
    assert_eq!(json["incidents"][0]["outcome"], "failed");
    assert_eq!(json["policy_changes"][0]["author"], "ops@example");
    assert_eq!(json["verify"]["ok"], true);
    let actors = json["audit"].as_object().unwrap();
    let counted: u64 = actors
        .values()
        .flat_map(|a| a.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counted, json["audit_entries"].as_u64().unwrap());
    assert!(actors.values().any(|a| a["execution.fail"] == 1), "{json}");

    let csv = ctx
        .run(&["report", "--period", &day, "--format", "csv"])
        .ok()
        .text();
    assert!(csv.starts_with("section,name,value\n"), "{csv}");
    assert!(csv.contains("totals,started,3\n"), "{csv}");
    assert!(
        csv.contains("tool_error failed the payment API (refunds) answered 503\n"),
        "{csv}"
    );

    let html = ctx.run(&["report", "--period", &day]).ok().text();
    assert!(
        html.starts_with("<!doctype html>") && html.contains("Success rate: 66.7%"),
        "{html}"
    );
    assert!(!html.contains("<script"), "no script in the report");

    let pdf = ctx.dir.path().join("report.pdf");
    ctx.run(&[
        "report",
        "--period",
        &day,
        "--format",
        "pdf",
        "--out",
        pdf.to_str().unwrap(),
    ])
    .ok();
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-1.4") && bytes.ends_with(b"%%EOF\n"));
    let text = Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext (Debian's poppler-utils; `make test` installs it)");
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8(text.stdout).unwrap();
    for needle in [
        "Omium operations and compliance report",
        "Executions started: 3; completed: 2; failed: 1",
        "Success rate: 66.7%",
        "tool_error",
        "the payment API (refunds) answered 503",
        "verify: ok",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} not in the PDF's text:\n{text}"
        );
    }
}

#[test]
fn an_empty_period_and_bad_arguments() {
    let ctx = Ctx::new();
    write_history(&ctx);
    let json = ctx
        .run(&["report", "--period", "2020-01", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json["totals"]["started"], 0);
    assert_eq!(json["incidents"], serde_json::json!([]));
    let e = ctx.run(&["report", "--period", "last month"]).failed();
    assert!(e.contains("2026-11-01..2026-11-15"), "{e}");
    let e = ctx
        .run(&["report", "--period", "2026-11", "--format", "docx"])
        .failed();
    assert!(e.contains("json, csv, html or pdf"), "{e}");
}
