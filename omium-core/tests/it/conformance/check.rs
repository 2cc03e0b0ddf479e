//! The checks of the conformance scenarios, shared by the engine's runner (omium-core) and the
//! C API's (omium-ffi): every run or operation of a scenario in a process of its own (the test
//! binary again, running its worker test), then its outcome, the step bodies it ran, and the
//! final status, history, failures and `verify` of the store.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use omium_core::prelude::*;
use omium_core::Store;
use serde_json::{json, Value};

/// The scenario files, in order.
pub fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

pub fn load(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `{"$repeat": [text, n]}` expanded.
pub fn expand(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("$repeat") => {
            let r = &m["$repeat"];
            Value::String(
                r[0].as_str()
                    .unwrap()
                    .repeat(r[1].as_u64().unwrap() as usize),
            )
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), expand(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(expand).collect()),
        other => other.clone(),
    }
}

/// The features a scenario requires.
pub fn requires(scenario: &Value) -> Vec<&str> {
    scenario["requires"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// Runs every scenario whose requirements are within `features` (each item through the test
/// `worker` of this binary); at least `min` of them must qualify.
pub fn run_all(features: &[&str], worker: &str, min: usize) {
    let mut ran = 0;
    for path in scenario_files() {
        let scenario = load(&path);
        if !requires(&scenario).iter().all(|f| features.contains(f)) {
            continue;
        }
        run_scenario(&path, &scenario, worker);
        ran += 1;
    }
    assert!(
        ran >= min,
        "only {ran} scenarios need no more than {features:?}"
    );
}

/// In a worker process: the scenario, the index of the item to run and the store's path, as
/// [`run_scenario`] passed them; None when the worker test runs on its own.
pub fn worker_env() -> Option<(Value, usize, String)> {
    let path = std::env::var("OMIUM_SCENARIO").ok()?;
    let index = std::env::var("OMIUM_SCENARIO_INDEX").ok()?.parse().ok()?;
    let store = std::env::var("OMIUM_SCENARIO_STORE").ok()?;
    Some((load(Path::new(&path)), index, store))
}

/// Runs every item of the scenario in a new process running the test `worker` of this binary,
/// and checks what the scenario expects.
pub fn run_scenario(path: &Path, scenario: &Value, worker: &str) {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for (i, item) in scenario["runs"].as_array().unwrap().iter().enumerate() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                worker,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OMIUM_SCENARIO", path)
            .env("OMIUM_SCENARIO_INDEX", i.to_string())
            .env("OMIUM_SCENARIO_STORE", &store)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        // libtest may print its own text before ours on a line: read from the first `{"`.
        let mut bodies = Vec::new();
        let mut result = None;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(at) = line.find("{\"") else { continue };
            let msg: Value = serde_json::from_str(&line[at..]).unwrap();
            if let Some(r) = msg.get("ran") {
                bodies.push(r.clone());
            } else if let Some(r) = msg.get("result") {
                result = Some(r.clone());
            }
        }
        let killed = std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9);
        let at = format!("{name} item {i} ({item})");
        if item.get("op").is_some() {
            let r = result.clone().unwrap_or_else(|| panic!("{at}: no result"));
            assert_eq!(
                r["outcome"],
                item.get("outcome").cloned().unwrap_or(json!("done")),
                "{at}: {r}"
            );
            if let Some(s) = item.get("status") {
                assert_eq!(&r["status"], s, "{at}: {r}");
            }
            for (k, n) in item["erased"].as_object().into_iter().flatten() {
                assert_eq!(&r["erased"][k], n, "{at}: erased {k}: {r}");
            }
        } else if item["outcome"] == "killed" {
            assert!(
                killed && result.is_none(),
                "{at}: expected a SIGKILL, got {:?} and {result:?}",
                out.status
            );
        } else {
            let r = result
                .clone()
                .unwrap_or_else(|| panic!("{at}: no result ({:?})", out.status));
            assert_eq!(r["outcome"], item["outcome"], "{at}: {r}");
        }
        // Runs, replays and forks at a position say what they returned.
        if let Some(r) = &result {
            if let Some(o) = item.get("output") {
                assert_eq!(r["output"], expand(o), "{at}");
            }
            if let Some(e) = item.get("error") {
                assert_eq!(&r["error"], e, "{at}");
            }
        }
        if let Some(expected) = item.get("ran") {
            assert_eq!(&Value::Array(bodies), expected, "{at}");
        }
    }
    let s = Store::open(&store).unwrap();
    let final_ = &scenario["final"];
    for (id, status) in final_["status"].as_object().into_iter().flatten() {
        assert_eq!(
            s.execution(id).unwrap().status.to_string(),
            status.as_str().unwrap(),
            "{name}: {id}"
        );
    }
    for id in final_["erased"].as_array().into_iter().flatten() {
        let id = id.as_str().unwrap();
        let code = s.execution(id).map(|_| ()).map_err(|e| e.code());
        assert_eq!(code, Err("execution_not_found"), "{name}: {id} erased");
        assert!(
            s.failures(Some(id)).unwrap().is_empty(),
            "{name}: failures of {id}"
        );
        assert!(s.spans(id).unwrap().is_empty(), "{name}: spans of {id}");
    }
    for (id, expected) in final_["history"].as_object().into_iter().flatten() {
        let got: Vec<Value> = s
            .history(id)
            .unwrap()
            .iter()
            .map(|c| {
                let state = match c.kind.as_str() {
                    "step" | "snapshot" => s.state_value(c).unwrap(),
                    _ => Value::Null,
                };
                json!([c.name, c.kind.as_str(), state])
            })
            .collect();
        let want: Vec<Value> = expected
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, e)| match (&e[2], got.get(i)) {
                (Value::String(star), Some(g)) if star == "*" => json!([e[0], e[1], g[2]]),
                (state, _) => json!([e[0], e[1], expand(state)]),
            })
            .collect();
        assert_eq!(got, want, "{name}: history of {id}");
    }
    for (id, expected) in final_["failures"].as_object().into_iter().flatten() {
        let got: Vec<Value> = s
            .failures(Some(id))
            .unwrap()
            .iter()
            .map(|f| {
                let actions: Vec<Value> = f
                    .actions
                    .iter()
                    .map(|a| json!([a.action, a.outcome]))
                    .collect();
                json!([f.kind.as_str(), f.outcome.as_str(), actions])
            })
            .collect();
        assert_eq!(&Value::Array(got), expected, "{name}: failures of {id}");
    }
    for (id, expected) in final_["consensus"].as_object().into_iter().flatten() {
        let c = omium_core::consensus::Coordinator::open(
            Some(&s),
            omium_core::consensus::CoordinatorConfig::Embedded,
        )
        .unwrap();
        let got: Vec<Value> = c
            .status(id)
            .unwrap()
            .iter()
            .map(|m| m.to_json()["status"]["state"].clone())
            .collect();
        assert_eq!(&Value::Array(got), expected, "{name}: consensus of {id}");
    }
    for (id, expected) in final_["events"].as_object().into_iter().flatten() {
        let filter = omium_core::events::EventFilter::new(vec![], Some(id.clone())).unwrap();
        let got: Vec<Value> = s
            .events(0, 100_000, &filter)
            .unwrap()
            .events
            .iter()
            .map(|e| json!(e.kind))
            .collect();
        assert_eq!(&Value::Array(got), expected, "{name}: events of {id}");
    }
    if let Some(expected) = final_["metrics"].as_object() {
        use omium_core::analytics::{AnalyticsStore, MetricsQuery};
        let totals =
            serde_json::to_value(s.metrics(&MetricsQuery::last(3_600_000)).unwrap().totals)
                .unwrap();
        for (k, v) in expected {
            assert_eq!(&totals[k], v, "{name}: metrics {k} in {totals}");
        }
    }
    if let Some(a) = final_.get("alerts") {
        let rules = omium_core::alerts::parse(a["rules"].as_str().unwrap(), None).unwrap();
        for (i, expected) in a["evaluations"].as_array().unwrap().iter().enumerate() {
            let got =
                omium_core::alerts::evaluate(&s, &rules, omium_core::store::now_ms()).unwrap();
            assert_eq!(
                &serde_json::to_value(&got).unwrap(),
                expected,
                "{name}: evaluation {i}"
            );
        }
    }
    for d in final_["diff"].as_array().into_iter().flatten() {
        let (a, b) = (d[0].as_str().unwrap(), d[1].as_str().unwrap());
        let got: Vec<Value> = s
            .diff_executions(a, b)
            .unwrap()
            .iter()
            .map(|r| json!([r.position, r.differs()]))
            .collect();
        assert_eq!(&Value::Array(got), &d[2], "{name}: diff of {a} and {b}");
    }
    assert!(s.verify(None).unwrap().ok(), "{name}: verify");
}

/// What a run item calls: the step specs (the scenario's, with the item's changes), the flow,
/// and the workflow's input.
pub fn plan_of(
    scenario: &Value,
    item: &Value,
) -> (serde_json::Map<String, Value>, Vec<Value>, Value) {
    let mut specs = scenario["steps"].as_object().unwrap().clone();
    if let Some(over) = item["steps"].as_object() {
        specs.extend(over.clone());
    }
    let flow = item
        .get("flow")
        .unwrap_or(&scenario["flow"])
        .as_array()
        .unwrap()
        .clone();
    let input = item.get("input").unwrap_or(&scenario["input"]).clone();
    (specs, flow, input)
}

/// A step body as the README describes it, on its `n`th call in this run: announces itself,
/// SIGKILLs the process where the item says, then fails (`Err`: the error class) or returns.
pub fn step_body(
    name: &str,
    spec: &Value,
    item: &Value,
    x: &Value,
    n: u64,
) -> Result<Value, String> {
    emit(json!({ "ran": name }));
    if item["kill_before"] == name {
        Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    let below = spec["fail_below"]
        .as_i64()
        .is_some_and(|b| x.as_i64() < Some(b));
    if spec["fail_always"] == true || n <= spec["fail_first"].as_u64().unwrap_or(0) || below {
        return Err(spec["error"].as_str().unwrap_or("StepError").to_string());
    }
    let first = spec["sleep_first_ms"].as_u64().filter(|_| n == 1);
    if let Some(ms) = spec["sleep_ms"].as_u64().or(first) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    Ok(if let Some(r) = spec.get("returns") {
        expand(r)
    } else if let Some(add) = spec.get("add") {
        json!(x.as_i64().unwrap() + add.as_i64().unwrap())
    } else {
        x.clone()
    })
}

/// One JSON line on stdout, as the runner reads them.
pub fn emit(v: Value) {
    println!("{v}");
}

/// The step body, on a thread of its own when it has a time limit: `Err(message)` of the
/// step's `step_timeout` when it took longer (it is left to finish on its own; nothing is
/// recorded).
pub fn timed(
    name: &str,
    spec: &Value,
    item: &Value,
    x: &Value,
    n: u64,
    limit: Option<std::time::Duration>,
) -> Result<Result<Value, String>, String> {
    let Some(limit) = limit else {
        return Ok(step_body(name, spec, item, x, n));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let message = format!(
        "step {name:?} did not finish within {} ms",
        limit.as_millis()
    );
    let (name, spec, item, x) = (name.to_string(), spec.clone(), item.clone(), x.clone());
    std::thread::spawn(move || tx.send(step_body(&name, &spec, &item, &x, n)));
    rx.recv_timeout(limit).map_err(|_| message)
}
