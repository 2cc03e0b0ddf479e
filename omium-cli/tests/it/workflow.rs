//! `omium workflow validate|plan|run|templates|new`, run as a user runs them.

use crate::common;

use common::Ctx;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/workflows");

fn doc(name: &str) -> String {
    format!("{DOCS}/{name}")
}

#[test]
fn validate_accepts_the_issue_document_and_names_every_problem() {
    let ctx = Ctx::new();
    let good = doc("customer_onboarding.yaml");
    let out = ctx.run(&["workflow", "validate", &good]).ok().text();
    assert_eq!(
        out,
        format!("{good}: ok (workflow customer_onboarding, 2 steps, 2 agents)\n")
    );
    let bad = doc("broken/input_nobody_produces.yaml");
    let out = ctx.run(&["workflow", "validate", &good, &bad]);
    assert_eq!(out.code, 1);
    let text = out.text();
    assert!(
        text.contains(&format!("{bad}:12:14: flow[1].inputs[0]: input \"kyc_scor\" of step 2 is produced by no step and is not a workflow input")),
        "{text}"
    );
    assert!(text.contains("did you mean \"kyc_score\"?"), "{text}");
    let v = ctx.json(&["workflow", "validate", &bad]).json();
    assert_eq!(v[0]["ok"], false);
    assert_eq!(v[0]["problems"][0]["line"], 12);
    assert_eq!(v[0]["problems"][0]["column"], 14);
    assert_eq!(v[0]["problems"][0]["suggestion"], "kyc_score");
}

#[test]
fn plan_prints_the_dag_and_the_order_of_execution() {
    let ctx = Ctx::new();
    let text = ctx
        .run(&["workflow", "plan", &doc("parallel.yaml")])
        .ok()
        .text();
    assert_eq!(
        text,
        "workflow parallel: 4 steps in 2 levels, at most 3 at once\n\
         inputs: n\n\nDAG\n\
         \x20 step a (worker) [start]: n -> a\n\
         \x20 step b (worker) [start]: n -> b\n\
         \x20 step c (worker) [start]: n -> c\n\
         \x20 step join (joiner) [after a, b, c]: a, b, c -> total\n\n\
         order of execution (the steps of one level run in parallel)\n\
         \x20 1. a, b, c\n\
         \x20 2. join\n"
    );
    let v = ctx
        .json(&["workflow", "plan", &doc("customer_onboarding.yaml")])
        .json();
    assert_eq!(v["order"], serde_json::json!(["1", "2"]));
    assert_eq!(v["steps"][1]["consensus_required"], true);
    let err = ctx
        .run(&["workflow", "plan", &doc("broken/cycle.yaml")])
        .failed();
    assert!(
        err.starts_with("invalid workflow: ") && err.contains("steps 1 → 2 → 3 → 1 form a cycle"),
        "{err}"
    );
}

#[test]
fn templates_are_listed_cloned_and_run() {
    let ctx = Ctx::new();
    let text = ctx.run(&["workflow", "templates"]).ok().text();
    for name in ["kyc", "credit_scoring", "offer_generation"] {
        assert!(text.contains(name), "{text}");
    }
    let dest = ctx.dir.path().join("my_kyc.yaml");
    let dest_s = dest.display().to_string();
    ctx.run(&["workflow", "new", "kyc", &dest_s]).ok();
    let err = ctx.run(&["workflow", "new", "kyc", &dest_s]).failed();
    assert!(
        err.contains("exists; choose another file or pass --force"),
        "{err}"
    );
    let err = ctx.run(&["workflow", "new", "kyx"]).failed();
    assert!(err.contains("did you mean \"kyc\"?"), "{err}");

    // The clone runs as it is: its agents are commands.
    let run = ctx
        .json(&[
            "workflow",
            "run",
            &dest_s,
            "--id",
            "cust-1",
            "--input",
            r#"customer={"name": "Ada", "country": "GB", "document": "P123"}"#,
        ])
        .ok()
        .json();
    assert_eq!(run["data"]["kyc_verified"], true);
    assert_eq!(run["data"]["kyc_score"], 100);
    let outcomes: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ran", "ran", "ran", "skipped"]);
    // Again: the recorded result, nothing runs.
    let again = ctx
        .json(&["workflow", "run", &dest_s, "--id", "cust-1"])
        .ok()
        .json();
    assert_eq!(again["data"], run["data"]);
    let history = ctx.json(&["history", "cust-1"]).ok().json();
    let names: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert_eq!(names[2], "kyc_doc_validated");

    // A sanctioned customer is not verified: the review branch runs.
    let run = ctx
        .run(&[
            "workflow",
            "run",
            &dest_s,
            "--id",
            "cust-2",
            "--input",
            r#"customer={"name": "X", "country": "KP", "document": "P9"}"#,
        ])
        .ok()
        .text();
    assert!(
        run.starts_with("execution cust-2 of workflow kyc: completed\n"),
        "{run}"
    );
    assert!(run.contains("\"review_ticket\":\"REVIEW-60\""), "{run}");
}

#[test]
fn run_names_missing_inputs_unavailable_runtimes_and_failed_steps() {
    let ctx = Ctx::new();
    // A consensus_required hand-off is agreed on the store's embedded consensus group.
    let spec = ctx.dir.path().join("agreed.yaml");
    std::fs::write(
        &spec,
        "name: agreed\nagents:\n  - {id: scorer, command: \"cat >/dev/null; echo '{\\\"score\\\": 7}'\"}\n  - {id: checker, command: \"cat >/dev/null; echo '{\\\"ok\\\": true}'\"}\n\
         flow:\n  - {step: 1, agent: scorer, outputs: [score], consensus_required: true}\n  - {step: 2, agent: checker, inputs: [score], outputs: [ok]}\n",
    )
    .unwrap();
    let spec_s = spec.display().to_string();
    let run = ctx
        .run(&["workflow", "run", &spec_s, "--id", "agreed-1"])
        .ok()
        .text();
    assert!(
        run.starts_with("execution agreed-1 of workflow agreed: completed\n"),
        "{run}"
    );
    let messages = ctx.json(&["consensus", "status", "agreed-1"]).ok().json();
    assert_eq!(messages[0]["sender"], "scorer");
    assert_eq!(messages[0]["targets"], serde_json::json!(["checker"]));
    assert_eq!(messages[0]["status"]["state"], "agreed", "{messages}");
    assert_eq!(
        messages[0]["message"]["outputs"],
        serde_json::json!({"score": 7})
    );
    let (code, message) = ctx
        .json(&["workflow", "run", &spec_s, "--consensus-timeout", "0"])
        .json_error();
    assert_eq!(code, "invalid_argument");
    assert!(message.contains("--consensus-timeout"), "{message}");
    let spec = ctx.dir.path().join("img.yaml");
    std::fs::write(
        &spec,
        "name: img\nagents:\n  - id: scorer\n    image: company/credit:v2\nflow:\n  - {step: 1, agent: scorer, inputs: [x], outputs: [y]}\n",
    )
    .unwrap();
    let mut c = ctx.command();
    c.env("OMIUM_CONTAINER_RUNTIME", "/nonexistent/docker")
        .arg("--store")
        .arg(&ctx.store)
        .args([
            "workflow",
            "run",
            &spec.display().to_string(),
            "--input",
            "x=1",
        ]);
    let err = ctx.exec(c).failed();
    assert_eq!(
        err,
        "agent \"scorer\" cannot run: it runs image \"company/credit:v2\", but no container runtime is installed (neither docker nor podman is on PATH, and OMIUM_CONTAINER_RUNTIME is not set); install one, or bind \"scorer\" to a function (Python: .bind(scorer=fn))"
    );
    std::fs::write(
        &spec,
        "name: failing\nagents:\n  - id: a\n    command: \"echo boom >&2; exit 3\"\nflow:\n  - {step: 1, agent: a, outputs: [y]}\n",
    )
    .unwrap();
    let (code, message) = ctx
        .json(&["workflow", "run", &spec.display().to_string(), "--id", "f1"])
        .json_error();
    assert_eq!(code, "step_failed");
    assert!(
        message.starts_with("step 1 (a) of execution \"f1\" failed and the recovery policy gave up: agent \"a\" (command \"echo boom >&2; exit 3\") exited with exit status: 3; stderr: boom"),
        "{message}"
    );
    let failures = ctx.json(&["failures", "--execution", "f1"]).ok().json();
    assert_eq!(failures.as_array().unwrap().len(), 1);
}
