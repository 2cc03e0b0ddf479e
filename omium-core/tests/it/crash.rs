//! Crash safety with real processes: a child process writes checkpoints in `sync` mode from
//! several threads (and collects garbage meanwhile) and is killed with SIGKILL at a random
//! moment. After each kill the store must open, `verify` must pass, every checkpoint the
//! child reported as committed must be there with its exact bytes, and the next child must
//! resume every execution where it stopped, with replayed steps returning what was recorded.
//!
//! `OMIUM_CRASH_KILLS` sets the number of kills (default 20; `make crash` runs 60).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use omium_core::{BeginOptions, Error, Store};
use rand::{Rng, SeedableRng};

const THREADS: usize = 3;

/// The state a step `i` of writer `t` records: a per-writer base (chunked, shared between
/// steps) plus one appended message per step, and every 7th step a small inline state.
fn state(t: usize, i: usize) -> Vec<u8> {
    if i % 7 == 3 {
        return format!("small state {t}/{i}").into_bytes();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
    let mut s: Vec<u8> = (0..20_000).map(|_| rng.gen()).collect();
    for j in 0..i {
        s.extend_from_slice(
            format!("message {j} of writer {t}: some conversation text that grows\n").as_bytes(),
        );
    }
    s
}

#[test]
#[ignore = "the child process of crash_kills_leave_a_consistent_store"]
fn crash_child() {
    let dir = std::env::var("OMIUM_CRASH_DIR").expect("OMIUM_CRASH_DIR");
    let store = Store::open(&dir).unwrap();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let store = store.clone();
        handles.push(std::thread::spawn(move || {
            let run = store
                .begin(&format!("w{t}"), BeginOptions::default())
                .unwrap();
            for i in 0.. {
                let expected = state(t, i);
                let mut ran = false;
                let got = run
                    .step(&format!("s{i}"), || {
                        ran = true;
                        Ok::<_, Error>(expected.clone())
                    })
                    .unwrap();
                assert_eq!(
                    got, expected,
                    "replayed step s{i} of w{t} returned other bytes"
                );
                if ran {
                    let c = store.history(&format!("w{t}")).unwrap().pop().unwrap();
                    // stdout is line-buffered: each report reaches the pipe as one write, so
                    // a kill never leaves half a report.
                    println!(
                        "COMMITTED w{t} {} {}",
                        c.id,
                        omium_core::hex(blake3::hash(&expected).as_bytes())
                    );
                }
            }
        }));
    }
    loop {
        std::thread::sleep(Duration::from_millis(30));
        store.gc().unwrap();
    }
}

#[test]
fn crash_kills_leave_a_consistent_store() {
    let kills: usize = std::env::var("OMIUM_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("OMIUM_CRASH_SEED")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test: {kills} kills, OMIUM_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut committed: Vec<(String, String, String)> = Vec::new();
    for kill in 0..kills {
        let (lines, ran_for) =
            run_child_and_kill(dir.path(), Duration::from_millis(rng.gen_range(150..700)));
        let new = lines.len();
        committed.extend(lines);
        check(dir.path(), &committed, kill);
        eprintln!(
            "kill {kill}: after {ran_for:?}, {new} new checkpoints reported; {} in all verified",
            committed.len()
        );
    }
    assert!(
        committed.len() > kills,
        "the children made too little progress to test anything"
    );
}

fn run_child_and_kill(dir: &Path, after: Duration) -> (Vec<(String, String, String)>, Duration) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OMIUM_CRASH_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .split(b'\n')
            .map_while(Result::ok)
            .filter_map(|l| {
                let l = String::from_utf8(l).ok()?;
                let mut p = l.strip_prefix("COMMITTED ")?.split(' ');
                Some((
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                ))
            })
            .collect::<Vec<_>>()
    });
    let start = Instant::now();
    while start.elapsed() < after {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("the child exited by itself ({status}) before it was killed:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    (reader.join().unwrap(), start.elapsed())
}

fn check(dir: &Path, committed: &[(String, String, String)], kill: usize) {
    let store = Store::open(dir)
        .unwrap_or_else(|e| panic!("after kill {kill} the store does not open: {e}"));
    let report = store.verify(None).unwrap();
    assert!(report.ok(), "after kill {kill} verify failed: {report:#?}");
    for (exec, id, hash) in committed {
        let c = store.checkpoint(id).unwrap_or_else(|e| {
            panic!("after kill {kill}, committed checkpoint {id} of {exec} is lost: {e}")
        });
        assert_eq!(&c.execution_id, exec);
        let bytes = store.read_state(&c).unwrap();
        assert_eq!(
            &omium_core::hex(blake3::hash(&bytes).as_bytes()),
            hash,
            "after kill {kill}, checkpoint {id} has other bytes"
        );
    }
    // No partial checkpoint: every live branch is a gap-free run of steps s0, s1, ...
    for e in store.executions().unwrap() {
        let names: Vec<String> = store
            .history(&e.id)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        let expected: Vec<String> = (0..names.len()).map(|i| format!("s{i}")).collect();
        assert_eq!(
            names, expected,
            "after kill {kill}, execution {} has a gap",
            e.id
        );
    }
}

/// The child of `a_crash_during_none_steps_leaves_an_audit_chain_that_verifies`: steps of an
/// execution in `none` durability (no WAL) alternate with steps of one in `buffered`, so logged
/// writes follow unlogged ones; it prints `STEP i` after each pair and runs until killed.
#[test]
#[ignore = "the child process of a_crash_during_none_steps_leaves_an_audit_chain_that_verifies"]
fn none_child() {
    let dir = std::env::var("OMIUM_CRASH_DIR").expect("OMIUM_CRASH_DIR");
    let store = Store::open(&dir).unwrap();
    let round = std::env::var("OMIUM_CRASH_ROUND").unwrap();
    let begin = |id: &str, d: omium_core::Durability| {
        let options = BeginOptions {
            durability: Some(d),
            ..BeginOptions::default()
        };
        store.begin(&format!("{id}-{round}"), options).unwrap()
    };
    let unlogged = begin("none", omium_core::Durability::None);
    let logged = begin("buffered", omium_core::Durability::Buffered);
    for i in 0.. {
        unlogged
            .step(&format!("s{i}"), || Ok::<_, Error>(vec![1; 100]))
            .unwrap();
        logged
            .step(&format!("s{i}"), || Ok::<_, Error>(vec![2; 100]))
            .unwrap();
        println!("STEP {i}");
    }
}

/// `none` skips the WAL; its audit entries must not: a crash would cut them out of the middle
/// of the chain (later logged entries survive) and `verify` would fail forever.
#[test]
fn a_crash_during_none_steps_leaves_an_audit_chain_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::none_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OMIUM_CRASH_DIR", dir.path())
            .env("OMIUM_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let pairs = lines
            .map_while(Result::ok)
            .filter(|l| l.contains("STEP "))
            .take(50)
            .count();
        assert_eq!(pairs, 50, "round {round}: the child stopped early");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let report = store.verify(None).unwrap();
        assert!(report.ok(), "round {round}: {report:#?}");
        let audit = store.verify_audit().unwrap();
        assert!(audit.problems.is_empty(), "round {round}: {audit:#?}");
        // Everything the logged execution recorded survived.
        assert!(store.history(&format!("buffered-{round}")).unwrap().len() >= 50);
    }
}
