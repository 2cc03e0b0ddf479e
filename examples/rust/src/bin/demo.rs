//! The main demo: a customer-onboarding run is started in a child process, killed with
//! SIGKILL half-way, resumed (the finished steps are not run again), rolled back to
//! `kyc_doc_validated` and re-run from there. The history is printed at each stage.
//!
//! `cargo run -p omium-examples --bin demo [-- STORE_DIR]`

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use omium_core::{BeginOptions, Error, RollbackTarget, Store};

const EXECUTION: &str = "cust-42";
const STEPS: [(&str, &str, u64); 4] = [
    ("kyc_doc_validated", "kyc_agent", 400),
    ("credit_score", "credit_agent", 400),
    ("offer", "offer_agent", 400),
    ("notify_customer", "offer_agent", 200),
];

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--child") => child(Path::new(&args.next().expect("store dir"))),
        Some(dir) => {
            // A directory the user names is theirs: never delete it, and do not mix the demo
            // into an existing store.
            let dir = PathBuf::from(dir);
            if dir.exists()
                && std::fs::read_dir(&dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                eprintln!(
                    "demo: {} is not empty; pass a new or empty directory",
                    dir.display()
                );
                std::process::exit(2);
            }
            parent(&dir)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("omium-demo-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let r = parent(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            r
        }
    }
}

/// The workflow: each step "calls an LLM" (sleeps) unless the journal already has its result.
fn child(dir: &Path) -> Result<(), Error> {
    let store = Store::open(dir)?;
    let run = store.begin(
        EXECUTION,
        BeginOptions {
            workflow: "customer_onboarding".into(),
            ..Default::default()
        },
    )?;
    let mut last = Vec::new();
    for (name, agent, ms) in STEPS {
        let seq = run.reserve();
        if let Some(c) = run.recorded(seq, name, None)? {
            last = store.read_state(&c)?;
            println!(
                "  [child {}] {name:<18} replayed from the journal (not re-run)",
                std::process::id()
            );
            continue;
        }
        std::thread::sleep(Duration::from_millis(ms)); // the LLM call
        let result = format!("{name} done by {agent} after {ms} ms").into_bytes();
        run.record(
            seq,
            omium_core::NewCheckpoint {
                name,
                agent: Some(agent),
                state: &result,
                ..Default::default()
            },
        )?;
        println!(
            "  [child {}] {name:<18} ran ({ms} ms, ${:.3})",
            std::process::id(),
            ms as f64 / 10_000.0
        );
        last = result;
    }
    run.complete(Some(&last))?;
    Ok(())
}

fn spawn(dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .arg("--child")
        .arg(dir)
        .spawn()
        .expect("spawn the child")
}

fn print_history(dir: &Path, title: &str) -> Result<(), Error> {
    let store = Store::open_read_only(dir)?;
    let e = store.execution(EXECUTION)?;
    println!(
        "\n== {title}: {EXECUTION} is {} (attempt {})",
        e.status, e.attempts
    );
    for c in store.history(EXECUTION)? {
        println!(
            "   seq {:<2} {:<28} {:<9} {:<13} {}",
            c.seq,
            c.name,
            c.kind.as_str(),
            c.agent,
            c.id
        );
    }
    Ok(())
}

fn parent(dir: &Path) -> Result<(), Error> {
    println!(
        "Omium demo: durable customer onboarding (store {})\n",
        dir.display()
    );
    println!("1. start the run in a child process, and SIGKILL it after two steps");
    let mut child = spawn(dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let done = Store::open_read_only(dir)
            .and_then(|s| s.history(EXECUTION))
            .map(|h| h.len())
            .unwrap_or(0);
        if done >= 2 || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    println!("  [parent] killed child {} with SIGKILL", child.id());
    print_history(dir, "after the crash")?;

    println!("\n2. run it again with the same execution id: it resumes");
    let status = spawn(dir).wait().expect("wait for the child");
    assert!(status.success(), "resumed child failed");
    print_history(dir, "after the resume")?;

    println!("\n3. roll back to kyc_doc_validated (the old branch stays readable)");
    {
        let store = Store::open(dir)?;
        store.rollback(
            EXECUTION,
            &RollbackTarget::Name("kyc_doc_validated".into()),
            Some("credit bureau data was stale"),
        )?;
    }
    print_history(dir, "after the rollback")?;

    println!("\n4. re-run from there: only the steps after the target run again");
    let status = spawn(dir).wait().expect("wait for the child");
    assert!(status.success(), "re-run child failed");
    print_history(dir, "final")?;

    let store = Store::open_read_only(dir)?;
    let report = store.verify(None)?;
    println!(
        "\nverify: {} ({} checkpoints, {} audit entries, {} problems)",
        if report.ok() { "ok" } else { "FAILED" },
        report.checkpoints,
        report.audit.entries,
        report.problems.len() + report.audit.problems.len()
    );
    Ok(())
}
