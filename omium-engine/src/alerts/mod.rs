//! Alert rules evaluated over the execution analytics: each rule's metric over its window,
//! compared with its threshold, for every group of its `by`. An alert is pending while the
//! condition holds for less than `for`, then fires once (a notice to every channel), repeats
//! every `repeat` while it still holds and nobody acknowledged it, and resolves (a notice)
//! when it stops holding. Rules are parsed by `omium_spec::alerts`.
//!
//! The alerts' state lives in the store (meta key `alerts/state`), written in the same atomic
//! commit as the audit entry of each transition (`alert.fire`, `alert.repeat`,
//! `alert.resolve`, `alert.ack`: events `alert.firing`, ...), so a restarted evaluator neither
//! fires again what already fired nor forgets to resolve it. A notice is sent before its
//! transition is committed: after a crash in between it is sent again (at least once;
//! PagerDuty deduplicates by the dedup key). A channel that failed (no answer, a 5xx) is tried
//! again at every evaluation until it answers, or [`MAX_ATTEMPTS`] times; a refusal (an address
//! the operator did not allow) is recorded and not retried.
//!
//! One evaluator runs per store in a process ([`Evaluator::start`]): `omium serve --alerts`
//! starts one, and a long-running program that embeds Omium starts its own.

pub mod channels;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use omium_storage::audit::AuditDraft;
use omium_storage::store::{now_ms, Cf};
use omium_storage::Store;
use parking_lot::{Condvar, Mutex};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

pub use channels::{Notice, Status};
pub use omium_spec::alerts::{load, parse, Channel, Rule, Rules, METRICS};

use crate::analytics::{AnalyticsStore, Figures, GroupBy, MetricsQuery};
use crate::error::{Error, Result};

/// Where the alerts' state is kept (column family `meta`).
pub const STATE_KEY: &[u8] = b"alerts/state";
/// How often an unreachable channel is tried for one notice before it is given up (recorded).
pub const MAX_ATTEMPTS: u32 = 20;

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The condition holds, not yet for `for`.
    Pending,
    Firing,
    /// Resolved, kept only while its resolve notice has channels left to reach.
    Resolved,
}

/// A notice still owed to a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owed {
    pub channel: String,
    pub status: Status,
    pub repeat: bool,
    pub attempts: u32,
}

/// One alert: a rule and one group of its `by`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub group: BTreeMap<String, String>,
    pub phase: Phase,
    /// Since when the condition holds.
    pub since_ms: u64,
    pub fired_ms: Option<u64>,
    pub resolved_ms: Option<u64>,
    pub last_sent_ms: u64,
    pub value: Option<f64>,
    pub acknowledged_by: Option<String>,
    pub dedup_key: String,
    pub channels: Vec<String>,
    #[serde(default)]
    pub owed: Vec<Owed>,
}

/// Every alert of a store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub alerts: BTreeMap<String, Alert>,
    /// When the rules were last evaluated.
    #[serde(default)]
    pub evaluated_ms: u64,
}

/// One transition of one evaluation, as its audit entry records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub rule: String,
    pub group: BTreeMap<String, String>,
    pub status: Status,
    pub repeat: bool,
    pub value: Option<f64>,
    /// Channel → `ok` or why not.
    pub delivered: BTreeMap<String, String>,
}

fn alert_key(rule: &str, group: &BTreeMap<String, String>) -> String {
    let mut k = rule.to_string();
    for (d, v) in group {
        k.push_str(&format!("\u{1f}{d}={v}"));
    }
    k
}

/// The alerts' state as stored (empty when nothing was ever evaluated).
pub fn state(store: &Store) -> Result<AlertState> {
    match store.get(Cf::Meta, STATE_KEY)? {
        None => Ok(AlertState::default()),
        Some(v) => serde_json::from_slice(&v).map_err(|e| Error::Decode {
            what: "alert state",
            key: String::from_utf8_lossy(STATE_KEY).into(),
            detail: e.to_string(),
        }),
    }
}

/// The value of a rule's metric in figures; `None` when there is nothing to judge (a rate over
/// fewer run endings than `min_executions`, a latency without samples).
pub fn metric_value(rule: &Rule, f: &Figures) -> Option<f64> {
    let ended = f.completed + f.failed + f.cancelled;
    if rule.is_rate() && (ended == 0 || ended < rule.min_executions) {
        return None;
    }
    let n = |v: u64| Some(v as f64);
    match rule.metric.as_str() {
        "started" => n(f.started),
        "completed" => n(f.completed),
        "failed" => n(f.failed),
        "cancelled" => n(f.cancelled),
        "success_rate" => f.success_rate,
        "failure_rate" => Some(f.failed as f64 / ended as f64),
        "execution_p50_ms" => f.execution_p50_ms,
        "execution_p95_ms" => f.execution_p95_ms,
        "execution_p99_ms" => f.execution_p99_ms,
        "step_p50_ms" => f.step_p50_ms,
        "step_p95_ms" => f.step_p95_ms,
        "step_p99_ms" => f.step_p99_ms,
        "failures" => n(f.failures),
        "recovered" => n(f.recovered),
        "mttr_ms" => f.mttr_ms,
        "retries" => n(f.retries),
        "rollbacks" => n(f.rollbacks),
        "llm_cost_usd" => Some(f.llm_cost_usd),
        "cost_per_execution_usd" => f.cost_per_execution_usd,
        "tokens" => n(f.tokens_in + f.tokens_out),
        _ => None,
    }
}

/// A group's dimension values (`by:`) and the rule's metric for it.
type Measured = (BTreeMap<String, String>, Option<f64>);

/// The rule's value per group now.
fn measure(store: &Store, rule: &Rule, now: u64) -> Result<Vec<Measured>> {
    let f = |k: &str| rule.filter.get(k).cloned();
    let q = MetricsQuery {
        since_ms: now.saturating_sub(rule.window.as_millis()),
        until_ms: now.max(1),
        by: rule
            .by
            .iter()
            .map(|g| GroupBy::parse(g))
            .collect::<Result<_>>()?,
        workflow: f("workflow"),
        tenant: f("tenant"),
        agent: f("agent"),
        step: f("step"),
        failure_type: f("failure_type"),
    };
    let report = store.metrics(&q)?;
    if rule.by.is_empty() {
        return Ok(vec![(BTreeMap::new(), metric_value(rule, &report.totals))]);
    }
    Ok(report
        .groups
        .iter()
        .map(|g| (g.key.clone(), metric_value(rule, &g.figures)))
        .collect())
}

/// Serializes evaluations and acknowledgements of one store in this process.
fn store_lock(store: &Store) -> Arc<Mutex<()>> {
    static LOCKS: Mutex<Option<HashMap<PathBuf, Arc<Mutex<()>>>>> = Mutex::new(None);
    LOCKS
        .lock()
        .get_or_insert_with(HashMap::new)
        .entry(store.path().to_path_buf())
        .or_default()
        .clone()
}

fn dedup_key(store_id: &str, key: &str, fired_ms: u64) -> String {
    // One key per firing episode, at most PagerDuty's 255 characters.
    let k = format!("omium/{store_id}/{key}/{fired_ms}").replace('\u{1f}', ",");
    if k.len() <= 255 {
        k
    } else {
        format!(
            "omium/{}",
            crate::hex(blake3::hash(k.as_bytes()).as_bytes())
        )
    }
}

fn notice_of(
    a: &Alert,
    rule: Option<&Rule>,
    status: Status,
    repeat: bool,
    store_id: &str,
    now: u64,
) -> Notice {
    let mut n = match rule {
        Some(r) => Notice::new(r, status, repeat),
        None => {
            // The rule was removed while its alert fired: say what is known.
            let r = Rule {
                name: a.rule.clone(),
                metric: "removed rule".into(),
                filter: BTreeMap::new(),
                by: Vec::new(),
                window: omium_spec::policy::Dur::millis(60_000),
                op: omium_spec::alerts::Op::Gt,
                threshold: 0.0,
                for_: Default::default(),
                repeat: Default::default(),
                min_executions: 1,
                severity: Default::default(),
                labels: BTreeMap::new(),
                summary: Some("the rule was removed from the alert document".into()),
                channels: a.channels.clone(),
            };
            Notice::new(&r, status, repeat)
        }
    };
    n.value = a.value;
    n.group = a.group.clone();
    n.dedup_key = a.dedup_key.clone();
    n.started_at = omium_storage::rfc3339_ms(a.fired_ms.unwrap_or(a.since_ms) as i64);
    n.resolved_at = a.resolved_ms.map(|t| omium_storage::rfc3339_ms(t as i64));
    n.at = omium_storage::rfc3339_ms(now as i64);
    n.store = store_id.to_string();
    n.by = a.acknowledged_by.clone();
    n
}

/// Sends the notice to each channel; returns channel → `ok` or why not, and what is still owed.
fn deliver(
    rules: &Rules,
    names: &[String],
    n: &Notice,
    attempts: u32,
) -> (BTreeMap<String, String>, Vec<Owed>) {
    let mut delivered = BTreeMap::new();
    let mut owed = Vec::new();
    for name in names {
        let result = match rules.channels.get(name) {
            Some(ch) => channels::send(ch, n),
            None => Err("failed: the channel is no longer in the alert document".into()),
        };
        match result {
            Ok(()) => {
                delivered.insert(name.clone(), "ok".into());
            }
            Err(why) => {
                // A refusal (an address the operator did not allow, a redirect) will not
                // change by trying again; a failure (no answer, a 5xx) may.
                let gone = !rules.channels.contains_key(name);
                if !gone && why.starts_with("failed:") && attempts + 1 < MAX_ATTEMPTS {
                    owed.push(Owed {
                        channel: name.clone(),
                        status: n.status,
                        repeat: n.repeat,
                        attempts: attempts + 1,
                    });
                }
                delivered.insert(name.clone(), why);
            }
        }
    }
    (delivered, owed)
}

/// Evaluates every rule once at `now`: sends the notices of the transitions and commits the
/// new state with one audit entry per transition. Returns the transitions.
pub fn evaluate(store: &Store, rules: &Rules, now: u64) -> Result<Vec<Transition>> {
    let lock = store_lock(store);
    let _held = lock.lock();
    let store_id = store.store_id()?;
    let mut st = state(store)?;
    let mut out = Vec::new();

    // Notices owed from earlier evaluations first.
    for a in st.alerts.values_mut() {
        let owed = std::mem::take(&mut a.owed);
        for o in owed {
            let n = notice_of(a, rules.rule(&a.rule), o.status, o.repeat, &store_id, now);
            let (delivered, again) =
                deliver(rules, std::slice::from_ref(&o.channel), &n, o.attempts);
            a.owed.extend(again);
            out.push(Transition {
                rule: a.rule.clone(),
                group: a.group.clone(),
                status: o.status,
                repeat: o.repeat,
                value: a.value,
                delivered,
            });
        }
    }
    st.alerts
        .retain(|_, a| a.phase != Phase::Resolved || !a.owed.is_empty());

    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for rule in &rules.rules {
        let groups = match measure(store, rule, now) {
            Ok(g) => g,
            Err(e) => {
                tracing_note(&format!("alert rule {}: {e}", rule.name));
                continue;
            }
        };
        for (group, value) in groups {
            let holds = value.is_some_and(|v| rule.op.holds(v, rule.threshold));
            let key = alert_key(&rule.name, &group);
            if !holds {
                continue;
            }
            seen.insert(key.clone());
            let a = st.alerts.entry(key.clone()).or_insert_with(|| Alert {
                rule: rule.name.clone(),
                group: group.clone(),
                phase: Phase::Pending,
                since_ms: now,
                fired_ms: None,
                resolved_ms: None,
                last_sent_ms: 0,
                value,
                acknowledged_by: None,
                dedup_key: String::new(),
                channels: rule.channels.clone(),
                owed: Vec::new(),
            });
            a.value = value;
            a.channels = rule.channels.clone();
            let notice = match a.phase {
                Phase::Resolved => {
                    // It holds again before its resolve notice reached everyone: a new episode.
                    a.phase = Phase::Pending;
                    a.since_ms = now;
                    a.fired_ms = None;
                    a.resolved_ms = None;
                    a.acknowledged_by = None;
                    a.owed.clear();
                    None
                }
                Phase::Pending if now.saturating_sub(a.since_ms) >= rule.for_.as_millis() => {
                    a.phase = Phase::Firing;
                    a.fired_ms = Some(now);
                    a.dedup_key = dedup_key(&store_id, &key, now);
                    Some(false)
                }
                Phase::Firing
                    if rule.repeat.as_millis() > 0
                        && a.acknowledged_by.is_none()
                        && now.saturating_sub(a.last_sent_ms) >= rule.repeat.as_millis() =>
                {
                    Some(true)
                }
                _ => None,
            };
            if let Some(repeat) = notice {
                a.last_sent_ms = now;
                let n = notice_of(a, Some(rule), Status::Firing, repeat, &store_id, now);
                let (delivered, owed) = deliver(rules, &rule.channels, &n, 0);
                a.owed.retain(|o| o.status != Status::Firing);
                a.owed.extend(owed);
                out.push(Transition {
                    rule: rule.name.clone(),
                    group,
                    status: Status::Firing,
                    repeat,
                    value,
                    delivered,
                });
            }
        }
    }

    // Alerts whose condition no longer holds (or whose rule is gone): pending ones are
    // forgotten, firing ones resolve.
    let stale: Vec<String> = st
        .alerts
        .iter()
        .filter(|(k, a)| a.phase != Phase::Resolved && !seen.contains(*k))
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        let a = st.alerts.get_mut(&k).expect("listed above");
        if a.phase == Phase::Pending {
            st.alerts.remove(&k);
            continue;
        }
        a.phase = Phase::Resolved;
        a.resolved_ms = Some(now);
        let rule = rules.rule(&a.rule);
        if let Some(r) = rule {
            // The value that resolved it, for the notice.
            if let Ok(groups) = measure(store, r, now) {
                a.value = groups
                    .into_iter()
                    .find(|(g, _)| *g == a.group)
                    .and_then(|(_, v)| v);
            }
        }
        let n = notice_of(a, rule, Status::Resolved, false, &store_id, now);
        let names = a.channels.clone();
        let (delivered, owed) = deliver(rules, &names, &n, 0);
        a.owed = owed;
        out.push(Transition {
            rule: a.rule.clone(),
            group: a.group.clone(),
            status: Status::Resolved,
            repeat: false,
            value: a.value,
            delivered,
        });
        if a.owed.is_empty() {
            st.alerts.remove(&k);
        }
    }
    st.evaluated_ms = now;
    commit(store, &st, &out)?;
    Ok(out)
}

/// Writes the state and one audit entry per transition, atomically.
fn commit(store: &Store, st: &AlertState, transitions: &[Transition]) -> Result<()> {
    let mut batch = WriteBatch::default();
    batch.put_cf(
        store.cf(Cf::Meta),
        STATE_KEY,
        serde_json::to_vec(st).expect("the alert state serializes"),
    );
    let drafts = transitions
        .iter()
        .map(|t| {
            let action = match (t.status, t.repeat) {
                (Status::Firing, false) => "alert.fire",
                (Status::Firing, true) => "alert.repeat",
                (Status::Resolved, _) => "alert.resolve",
                (Status::Acknowledged, _) => "alert.ack",
            };
            AuditDraft::new(
                action,
                format!("alert/{}", t.rule),
                serde_json::to_string(t).expect("transitions serialize"),
            )
        })
        .collect();
    store.commit(batch, drafts, None)
}

/// Acknowledges the firing alerts of `rule` (all its groups, or those whose group contains
/// `group`'s values): no more repeats, and an acknowledgement to each channel (PagerDuty's
/// `acknowledge`). Returns the transitions; none when nothing of the rule fires.
pub fn acknowledge(
    store: &Store,
    rules: &Rules,
    rule: &str,
    group: &BTreeMap<String, String>,
    by: &str,
) -> Result<Vec<Transition>> {
    let lock = store_lock(store);
    let _held = lock.lock();
    let store_id = store.store_id()?;
    let mut st = state(store)?;
    let now = now_ms();
    let mut out = Vec::new();
    for a in st.alerts.values_mut() {
        if a.rule != rule
            || a.phase != Phase::Firing
            || a.acknowledged_by.is_some()
            || group.iter().any(|(k, v)| a.group.get(k) != Some(v))
        {
            continue;
        }
        a.acknowledged_by = Some(by.to_string());
        let n = notice_of(
            a,
            rules.rule(rule),
            Status::Acknowledged,
            false,
            &store_id,
            now,
        );
        let (delivered, owed) = deliver(rules, &a.channels.clone(), &n, 0);
        a.owed.extend(owed);
        out.push(Transition {
            rule: a.rule.clone(),
            group: a.group.clone(),
            status: Status::Acknowledged,
            repeat: false,
            value: a.value,
            delivered,
        });
    }
    if out.is_empty() {
        let known = rules.rule(rule).is_some();
        return Err(Error::InvalidArgument {
            what: "alert",
            detail: if known {
                format!("nothing of rule {rule:?} is firing unacknowledged")
            } else {
                format!(
                    "no rule {rule:?}; the rules are {}",
                    rules
                        .rules
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        });
    }
    commit(store, &st, &out)?;
    Ok(out)
}

fn tracing_note(msg: &str) {
    eprintln!("omium alerts: {msg}");
}

/// What an [`Evaluator`] shares with its thread.
struct Shared {
    store: Store,
    rules: Mutex<Arc<Rules>>,
    stop: Mutex<bool>,
    wake: Condvar,
    last_error: Mutex<Option<String>>,
}

/// The evaluators running in this process, by store path (one each).
fn running() -> &'static Mutex<HashMap<PathBuf, Weak<Shared>>> {
    static RUNNING: std::sync::OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> =
        std::sync::OnceLock::new();
    RUNNING.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A thread that evaluates the rules every `evaluate_every` until stopped (or dropped).
pub struct Evaluator {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Evaluator {
    /// Starts evaluating `rules` on `store` (the first evaluation at once). One evaluator per
    /// store in a process: a second is refused.
    pub fn start(store: &Store, rules: Rules) -> Result<Evaluator> {
        store.require_writer("evaluating alert rules")?;
        let mut reg = running().lock();
        let path = store.path().to_path_buf();
        if reg.get(&path).and_then(Weak::upgrade).is_some() {
            return Err(Error::InvalidArgument {
                what: "alert evaluator",
                detail: format!(
                    "one already evaluates alert rules on {}; stop it first (or reload its rules)",
                    path.display()
                ),
            });
        }
        let shared = Arc::new(Shared {
            store: store.clone(),
            rules: Mutex::new(Arc::new(rules)),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            last_error: Mutex::new(None),
        });
        reg.insert(path, Arc::downgrade(&shared));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("omium-alerts".into())
            .spawn(move || loop {
                let rules = s.rules.lock().clone();
                let r = evaluate(&s.store, &rules, now_ms());
                let error = r.err().map(|e| e.to_string());
                let mut last = s.last_error.lock();
                if error.is_some() && *last != error {
                    // Said once per distinct problem, not at every evaluation.
                    tracing_note(&format!(
                        "evaluating failed: {}",
                        error.as_deref().unwrap_or("")
                    ));
                }
                *last = error;
                drop(last);
                let mut stop = s.stop.lock();
                if !*stop {
                    s.wake
                        .wait_for(&mut stop, Duration::from_millis(rules.every_ms()));
                }
                if *stop {
                    return;
                }
            })
            .map_err(|e| Error::InvalidArgument {
                what: "alert evaluator",
                detail: format!("cannot start its thread: {e}"),
            })?;
        Ok(Evaluator {
            shared,
            thread: Some(thread),
        })
    }

    /// Replaces the rules (they take effect at the next evaluation, which starts now).
    pub fn reload(&self, rules: Rules) {
        *self.shared.rules.lock() = Arc::new(rules);
        self.shared.wake.notify_all();
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.shared.rules.lock().clone()
    }

    /// The last evaluation's error, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().clone()
    }

    /// Stops the thread (after the evaluation under way) and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        running().lock().remove(self.shared.store.path());
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The rules as an API answers them: names, conditions, severities and channel kinds, without
/// the channels' URLs, keys and addresses (a Slack webhook URL is a secret).
pub fn summary(rules: &Rules) -> serde_json::Value {
    serde_json::json!({
        "evaluate_every_ms": rules.every_ms(),
        "channels": rules
            .channels
            .iter()
            .map(|(n, c)| (n.clone(), serde_json::json!(c.kind())))
            .collect::<serde_json::Map<_, _>>(),
        "rules": rules.rules.iter().map(|r| serde_json::json!({
            "name": r.name,
            "condition": r.describe(),
            "by": r.by,
            "for_ms": r.for_.as_millis(),
            "repeat_ms": r.repeat.as_millis(),
            "severity": r.severity.as_str(),
            "labels": r.labels,
            "channels": r.channels,
        })).collect::<Vec<_>>(),
    })
}

/// The rules of the evaluator running on `store` in this process, if one runs.
pub fn running_rules(store: &Store) -> Option<Arc<Rules>> {
    running()
        .lock()
        .get(store.path())
        .and_then(Weak::upgrade)
        .map(|s| s.rules.lock().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_are_bounded() {
        let k = dedup_key("s", &"x".repeat(300), 5);
        assert!(k.len() <= 255 && k.starts_with("omium/"));
        assert_eq!(
            dedup_key("s", "r\u{1f}workflow=a", 7),
            "omium/s/r,workflow=a/7"
        );
    }
}
