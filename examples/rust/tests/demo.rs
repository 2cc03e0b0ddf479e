//! `make demo` as a user sees it: the demo binary runs a customer onboarding in a child
//! process, SIGKILLs it, resumes it, rolls it back and re-runs it. Its output must show each
//! stage, with finished steps replayed from the journal rather than run again.

use std::process::Command;

const STEPS: [&str; 4] = [
    "kyc_doc_validated",
    "credit_score",
    "offer",
    "notify_customer",
];

/// The lines of the demo's output between the line starting with `from` and the next one
/// starting with `to`.
fn section<'a>(lines: &'a [&'a str], from: &str, to: &str) -> &'a [&'a str] {
    let start = lines
        .iter()
        .position(|l| l.starts_with(from))
        .unwrap_or_else(|| panic!("no line starting with {from:?}"));
    let len = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with(to))
        .unwrap_or_else(|| panic!("no line starting with {to:?} after {from:?}"));
    &lines[start + 1..start + 1 + len]
}

/// How each step fared in the child's lines of a section: "ran" or "replayed".
fn outcomes(lines: &[&str]) -> Vec<(String, &'static str)> {
    lines
        .iter()
        .filter(|l| l.trim_start().starts_with("[child "))
        .map(|l| {
            let rest = l.split_once("] ").expect("[child PID] step ...").1;
            let (name, what) = rest.split_once(' ').expect("step and outcome");
            let what = what.trim_start();
            let outcome = if what.starts_with("replayed from the journal (not re-run)") {
                "replayed"
            } else if what.starts_with("ran (") {
                "ran"
            } else {
                panic!("unexpected step line: {l}")
            };
            (name.to_string(), outcome)
        })
        .collect()
}

/// The names of the live branch printed after a `== title:` line.
fn history(lines: &[&str], title: &str) -> (String, Vec<String>) {
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("== {title}: ")))
        .unwrap_or_else(|| panic!("no history {title:?}"));
    let names = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim_start().starts_with("seq "))
        .map(|l| {
            let rest = l.trim_start().strip_prefix("seq ").unwrap().trim_start();
            let rest = rest.split_once(' ').unwrap().1.trim_start();
            // Names are single words except rollback markers ("rollback to <step>").
            match rest.strip_prefix("rollback to ") {
                Some(r) => format!("rollback to {}", r.split_whitespace().next().unwrap()),
                None => rest.split_whitespace().next().unwrap().to_string(),
            }
        })
        .collect();
    (lines[start].to_string(), names)
}

#[test]
fn the_demo_kills_resumes_rolls_back_and_reruns_only_the_later_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("demo-store");
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .arg(&store)
        .output()
        .expect("run the demo");
    let text = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{text}\n{stderr}");
    let lines: Vec<&str> = text.lines().collect();
    let fail = |what: &str| -> ! { panic!("{what}\n--- demo output ---\n{text}\n{stderr}") };

    // 1. The run is killed after some, not all, steps. (The history is the truth: the kill
    // may land between a step's commit and its line of output.)
    let first = outcomes(section(&lines, "1. ", "== after the crash"));
    if !lines
        .iter()
        .any(|l| l.starts_with("  [parent] killed child ") && l.ends_with(" with SIGKILL"))
    {
        fail("no SIGKILL line");
    }
    let (title, crashed) = history(&lines, "after the crash");
    if !title.contains("cust-42 is running (attempt 1)") {
        fail("after the crash the execution is left running");
    }
    if crashed.len() < 2 || crashed.len() >= STEPS.len() || crashed[..] != STEPS[..crashed.len()] {
        fail("the first run must record some steps and be killed before the last");
    }
    if first.len() > crashed.len() || first.iter().any(|(_, o)| *o != "ran") {
        fail("the first run ran the steps it recorded");
    }

    // 2. The resume replays what was recorded and runs only the rest.
    let second = outcomes(section(&lines, "2. ", "== after the resume"));
    let expected: Vec<(String, &str)> = STEPS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let o = if i < crashed.len() { "replayed" } else { "ran" };
            (s.to_string(), o)
        })
        .collect();
    if second != expected {
        fail(&format!("resume: {second:?}, expected {expected:?}"));
    }
    let (title, resumed) = history(&lines, "after the resume");
    if !title.contains("cust-42 is completed (attempt 2)") {
        fail("the resumed run completes");
    }
    assert_eq!(resumed, STEPS, "{text}");

    // 3. The rollback moves the head back to kyc_doc_validated through a marker.
    let (title, rolled) = history(&lines, "after the rollback");
    if !title.contains("cust-42 is pending") {
        fail("after the rollback the execution is pending");
    }
    assert_eq!(
        rolled,
        ["kyc_doc_validated", "rollback to kyc_doc_validated"],
        "{text}"
    );

    // 4. The re-run replays kyc_doc_validated and runs the later steps again.
    let fourth = outcomes(section(&lines, "4. ", "== final"));
    let expected: Vec<(String, &str)> = STEPS
        .iter()
        .map(|s| {
            let o = if *s == "kyc_doc_validated" {
                "replayed"
            } else {
                "ran"
            };
            (s.to_string(), o)
        })
        .collect();
    if fourth != expected {
        fail(&format!("re-run: {fourth:?}, expected {expected:?}"));
    }
    let (title, last) = history(&lines, "final");
    if !title.contains("cust-42 is completed (attempt 3)") {
        fail("the re-run completes");
    }
    assert_eq!(
        last,
        [
            "kyc_doc_validated",
            "rollback to kyc_doc_validated",
            "credit_score",
            "offer",
            "notify_customer"
        ],
        "{text}"
    );

    let verify = lines
        .iter()
        .find(|l| l.starts_with("verify: "))
        .unwrap_or_else(|| fail("no verify line"));
    if !verify.starts_with("verify: ok (") || !verify.ends_with(", 0 problems)") {
        fail("verify is not ok");
    }
}
