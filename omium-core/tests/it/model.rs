//! A model-based test of the store: proptest generates sequences of operations (runs that
//! record, replay, diverge, fail, pause or stop mid-way; rollback, fork, delete, retention, gc,
//! verify, closing and reopening the store) and applies each both to a real store and to a plain
//! in-memory model of what the store promises. After every operation the two must agree on
//! every execution's status and live branch (step names and state bytes, read back through
//! the store's verified read path), the store must verify, and replayed steps must return their
//! recorded bytes without running.
//!
//! `cargo test` runs a short pass; `make fuzz` runs it long (`PROPTEST_CASES`). A failure is
//! shrunk to a minimal sequence of operations, printed, and becomes a regression case below.
//! (Killing the process mid-write is the crash tests' job, in `tests/crash.rs`, with real
//! SIGKILLs; here "stop mid-way" drops the run, as a process that dies between steps does.)

use std::collections::BTreeMap;
use std::time::Duration;

use omium_core::{
    BeginOptions, Durability, Error, ForkOptions, OpenOptions, RollbackTarget, Status, Store,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const NAMES: [&str; 3] = ["plan", "act", "check"];
const IDS: [&str; 3] = ["e0", "e1", "e2"];

/// A state: small (stored inline) or large (chunked), from a seed, so equal seeds share chunks.
fn state(seed: u8, large: bool) -> Vec<u8> {
    let n = if large {
        6000 + seed as usize * 97
    } else {
        1 + seed as usize % 40
    };
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8 ^ seed)
        .collect()
}

#[derive(Clone, Debug)]
enum End {
    Complete,
    Fail,
    Pause,
    /// The run is dropped between steps, as if its process died there.
    Stop,
}

#[derive(Clone, Debug)]
enum Op {
    /// Runs execution `exec` (an index into the model's executions, or a fresh id): first the
    /// steps its journal holds when `faithful` (they replay), then `steps` (recorded, or
    /// replayed, or a non-determinism error where the journal holds another name).
    Run {
        exec: usize,
        faithful: bool,
        steps: Vec<(usize, u8, bool)>,
        end: End,
    },
    Rollback {
        exec: usize,
        to: usize,
    },
    Fork {
        exec: usize,
        at: usize,
        edit: Option<u8>,
    },
    Delete {
        exec: usize,
    },
    /// Deletes every execution older than now that no run in progress holds, then collects
    /// garbage.
    Retention,
    Gc,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let end = prop_oneof![
        4 => Just(End::Complete),
        2 => Just(End::Stop),
        1 => Just(End::Fail),
        1 => Just(End::Pause),
    ];
    let steps = proptest::collection::vec((0..NAMES.len(), any::<u8>(), any::<bool>()), 0..4);
    prop_oneof![
        8 => (0..6usize, any::<bool>(), steps, end).prop_map(|(exec, faithful, steps, end)| {
            Op::Run { exec, faithful, steps, end }
        }),
        3 => (0..6usize, 0..6usize).prop_map(|(exec, to)| Op::Rollback { exec, to }),
        2 => (0..6usize, 0..6usize, proptest::option::of(any::<u8>()))
            .prop_map(|(exec, at, edit)| Op::Fork { exec, at, edit }),
        1 => (0..6usize).prop_map(|exec| Op::Delete { exec }),
        1 => Just(Op::Retention),
        1 => Just(Op::Gc),
        1 => Just(Op::Reopen),
    ]
}

/// What the store promises about one execution.
#[derive(Clone, Debug)]
struct Model {
    status: Status,
    /// The live branch's steps, in order: name, state, and the checkpoint id the store gave it.
    steps: Vec<(String, Vec<u8>, String)>,
}

struct Harness {
    dir: tempfile::TempDir,
    store: Option<Store>,
    model: BTreeMap<String, Model>,
    forks: usize,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness {
            dir,
            store: None,
            model: BTreeMap::new(),
            forks: 0,
        };
        h.open();
        h
    }

    fn open(&mut self) {
        self.store = None;
        let options = OpenOptions {
            durability: Durability::Buffered,
            ..OpenOptions::default()
        };
        self.store = Some(Store::open_with(self.dir.path(), options).unwrap());
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    /// The execution at index `i`: an existing one, or (past them) one of the fixed ids.
    fn pick(&self, i: usize) -> String {
        let existing: Vec<&String> = self.model.keys().collect();
        if i < existing.len() {
            existing[i].clone()
        } else {
            IDS[i % IDS.len()].to_string()
        }
    }

    fn existing(&self, i: usize) -> Option<String> {
        let ids: Vec<&String> = self.model.keys().collect();
        (!ids.is_empty()).then(|| ids[i % ids.len()].clone())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Run {
                exec,
                faithful,
                steps,
                end,
            } => {
                let id = self.pick(*exec);
                self.run(&id, *faithful, steps, end)?
            }
            Op::Rollback { exec, to } => {
                let Some(id) = self.existing(*exec) else {
                    return Ok(());
                };
                let m = self.model.get_mut(&id).unwrap();
                if m.steps.is_empty() {
                    return Ok(());
                }
                let j = to % m.steps.len();
                let target = RollbackTarget::Id(m.steps[j].2.clone());
                self.store
                    .as_ref()
                    .unwrap()
                    .rollback(&id, &target, Some("model"))
                    .map_err(|e| fail(format!("rollback {id} to step {j}: {e}")))?;
                m.steps.truncate(j + 1);
                m.status = Status::Pending;
            }
            Op::Fork { exec, at, edit } => {
                let Some(id) = self.existing(*exec) else {
                    return Ok(());
                };
                let src = self.model[&id].clone();
                if src.steps.is_empty() {
                    return Ok(());
                }
                let j = at % src.steps.len();
                self.forks += 1;
                let new_id = format!("f{}", self.forks);
                let edited = edit.map(|s| state(s, s % 2 == 0));
                let options = ForkOptions {
                    new_execution_id: Some(new_id.clone()),
                    state: edited.clone(),
                };
                self.store()
                    .fork(&id, &RollbackTarget::Id(src.steps[j].2.clone()), options)
                    .map_err(|e| fail(format!("fork {id} at step {j}: {e}")))?;
                // The copies have ids of their own: read them back from the new branch.
                let copies: Vec<String> = self
                    .store()
                    .history(&new_id)
                    .unwrap()
                    .into_iter()
                    .filter(|c| c.kind.is_step())
                    .map(|c| c.id.to_string())
                    .collect();
                let mut steps: Vec<_> = src.steps[..=j].to_vec();
                if let Some(s) = edited {
                    steps[j].1 = s;
                }
                for (s, copy) in steps.iter_mut().zip(copies) {
                    s.2 = copy;
                }
                self.model.insert(
                    new_id,
                    Model {
                        status: Status::Pending,
                        steps,
                    },
                );
            }
            Op::Delete { exec } => {
                let Some(id) = self.existing(*exec) else {
                    return Ok(());
                };
                self.store()
                    .delete_execution(&id)
                    .map_err(|e| fail(format!("delete {id}: {e}")))?;
                self.model.remove(&id);
            }
            Op::Retention => {
                // Everything updated before now is old enough; wait for the clock to pass the
                // last update (a millisecond at most).
                let newest = self
                    .store()
                    .executions()
                    .unwrap()
                    .iter()
                    .map(|e| e.updated_at_ms)
                    .max()
                    .unwrap_or(0);
                while now_ms() <= newest {
                    std::thread::yield_now();
                }
                self.store()
                    .delete_older_than(Duration::ZERO)
                    .map_err(|e| fail(format!("retention: {e}")))?;
                // No run is in progress between operations, so nothing is held: a run stopped
                // mid-way is as old as a finished one.
                self.model.clear();
            }
            Op::Gc => {
                self.store().gc().map_err(|e| fail(format!("gc: {e}")))?;
            }
            Op::Reopen => self.open(),
        }
        Ok(())
    }

    fn run(
        &mut self,
        id: &str,
        faithful: bool,
        steps: &[(usize, u8, bool)],
        end: &End,
    ) -> Result<(), TestCaseError> {
        let store = self.store.clone().unwrap();
        let before = self.model.get(id).cloned();
        let run = match store.begin(id, BeginOptions::default()) {
            Ok(r) => r,
            Err(e) if before.as_ref().map(|m| m.status) == Some(Status::Paused) => {
                prop_assert_eq!(e.code(), "invalid_state");
                return Ok(());
            }
            Err(e) => return Err(fail(format!("begin {id}: {e}"))),
        };
        prop_assert!(
            before.as_ref().map(|m| m.status) != Some(Status::Paused),
            "begin of paused {} succeeded",
            id
        );
        let mut m = before.unwrap_or(Model {
            status: Status::Running,
            steps: Vec::new(),
        });
        m.status = Status::Running;
        let mut calls: Vec<(String, Vec<u8>)> = Vec::new();
        if faithful {
            calls.extend(m.steps.iter().map(|(n, s, _)| (n.clone(), s.clone())));
        }
        calls.extend(
            steps
                .iter()
                .map(|&(n, seed, large)| (NAMES[n].to_string(), state(seed, large))),
        );
        let mut diverged = false;
        for (pos, (name, fresh)) in calls.into_iter().enumerate() {
            let mut ran = false;
            let got = run.step(&name, || {
                ran = true;
                Ok::<_, Error>(fresh.clone())
            });
            match m.steps.get(pos) {
                Some((recorded, bytes, _)) if *recorded == name => {
                    let got = got.map_err(|e| fail(format!("replay {id} #{pos}: {e}")))?;
                    prop_assert!(!ran, "{} step {} ran again", id, pos);
                    prop_assert_eq!(&got, bytes, "replayed bytes of {} step {}", id, pos);
                }
                Some((recorded, _, _)) => {
                    let e = got.err().ok_or_else(|| {
                        fail(format!(
                            "{id} #{pos}: {name} where {recorded} was recorded ran"
                        ))
                    })?;
                    prop_assert_eq!(e.code(), "non_determinism");
                    diverged = true;
                    break;
                }
                None => {
                    let got = got.map_err(|e| fail(format!("record {id} #{pos}: {e}")))?;
                    prop_assert!(ran);
                    prop_assert_eq!(&got, &fresh);
                    let head = run.execution().head.unwrap().to_string();
                    m.steps.push((name, fresh, head));
                }
            }
        }
        if !diverged {
            match end {
                End::Complete => {
                    run.complete(None).unwrap();
                    m.status = Status::Completed;
                }
                End::Fail => {
                    run.fail("model failure").unwrap();
                    m.status = Status::Failed;
                }
                End::Pause => {
                    run.pause("model pause").unwrap();
                    m.status = Status::Paused;
                }
                End::Stop => {}
            }
        }
        drop(run);
        self.model.insert(id.to_string(), m);
        Ok(())
    }

    /// The store and the model agree, and the store verifies.
    fn check(&self, after: &Op) -> Result<(), TestCaseError> {
        let store = self.store();
        let listed: Vec<String> = store
            .executions()
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let modeled: Vec<String> = self.model.keys().cloned().collect();
        prop_assert_eq!(listed, modeled, "executions after {:?}", after);
        for (id, m) in &self.model {
            let e = store.execution(id).unwrap();
            prop_assert_eq!(e.status, m.status, "status of {} after {:?}", id, after);
            let live: Vec<_> = store
                .history(id)
                .unwrap()
                .into_iter()
                .filter(|c| c.kind.is_step())
                .collect();
            prop_assert_eq!(
                live.len(),
                m.steps.len(),
                "steps of {} after {:?}",
                id,
                after
            );
            for (c, (name, bytes, cid)) in live.iter().zip(&m.steps) {
                prop_assert_eq!(&c.name, name);
                prop_assert_eq!(&c.id.to_string(), cid);
                let read = store
                    .read_state(c)
                    .map_err(|e| fail(format!("state of {id}/{}: {e}", c.name)))?;
                prop_assert_eq!(&read, bytes, "state of {}/{} after {:?}", id, c.name, after);
            }
        }
        let report = store.verify(None).unwrap();
        prop_assert!(report.ok(), "verify after {:?}: {:#?}", after, report);
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn run_ops(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    for op in ops {
        h.apply(op)?;
        h.check(op)?;
    }
    // And once more from a fresh open: everything above was durable.
    h.open();
    h.check(&Op::Reopen)
}

#[test]
fn the_store_behaves_like_its_model() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let ops = proptest::collection::vec(op(), 1..30);
    if let Err(e) = runner.run(&ops, |ops| run_ops(&ops)) {
        panic!("the store and its model disagree: {e}");
    }
    eprintln!(
        "model: {cases} sequences of up to 29 operations, no disagreement, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
