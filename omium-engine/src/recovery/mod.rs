//! Recovery: a failure is classified, recorded, and handled by the rule its policy gives,
//! action by action; every action and its outcome is recorded with timestamps, and the figures
//! ops teams judge recovery by (MTTR, success rate after recovery, failures by type, retries per
//! success) are derived from that history.
//!
//! The host language runs the user's code, so a binding drives a [`Recovery`]: it asks for the
//! next [`Directive`] (retry after a delay, roll back, pause, notify, escalate, fall back,
//! suggest a fix, inspect, fail), carries it out, and reports how it went. The decisions, the
//! backoff, the history, the webhooks and the metrics live here, once for every binding.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::policy::{self, Action, Effective, RetryAction, Rule, Trigger, WebhookFormat};
use crate::store::{now_ms, Store};

pub use omium_storage::failures::{ActionRecord, FailureRecord, Outcome};

pub mod driver;
pub use driver::{Command, Driver, Event, Handling};

/// The retry a step's own `retries` option asks for, used when no policy rule applies: up to
/// `retries` more attempts, exponential from 50 ms, capped at 2 s, no jitter.
pub fn step_retry(retries: u32) -> Option<crate::policy::RetryAction> {
    (retries > 0).then(|| crate::policy::RetryAction {
        max_attempts: retries + 1,
        initial_delay: crate::policy::Dur::millis(50),
        max_delay: crate::policy::Dur::millis(2000),
        jitter: crate::policy::Jitter::None,
        ..crate::policy::RetryAction::default()
    })
}

/// What a binding knows of a failure when it happens.
#[derive(Clone, Debug, Default)]
pub struct FailureInput {
    pub execution_id: String,
    pub workflow: String,
    pub tenant: String,
    pub step: Option<String>,
    pub seq: Option<u64>,
    pub key: Option<String>,
    pub agent: String,
    /// The failure type when the binding knows it (a timeout it enforced, a failed
    /// postcondition); otherwise it is classified from the exception classes and message.
    pub kind: Option<Trigger>,
    /// The exception's class and its bases, most derived first (qualified names).
    pub error_classes: Vec<String>,
    pub message: String,
    /// The step's own retry setting, used when no policy rule applies.
    pub step_retry: Option<RetryAction>,
    /// Rollbacks already made for this execution in this run (a rule rolls back at most
    /// `max_times`).
    pub rollbacks_so_far: u32,
}

/// Classifies an exception by its class names and message: the policy's `classify` map first
/// (qualified name, then bare name), then built-in rules.
pub fn classify(classes: &[String], message: &str, effective: &Effective) -> Trigger {
    for c in classes {
        let bare = c.rsplit(['.', ':']).next().unwrap_or(c);
        if let Some(t) = effective.classify(c).or_else(|| effective.classify(bare)) {
            return t;
        }
    }
    let bare: Vec<&str> = classes
        .iter()
        .map(|c| c.rsplit(['.', ':']).next().unwrap_or(c))
        .collect();
    let any = |f: &dyn Fn(&str) -> bool| bare.iter().any(|c| f(c));
    let lower = message.to_ascii_lowercase();
    if any(&|c| c == "HallucinationDetected") {
        Trigger::HallucinationDetected
    } else if any(&|c| c == "ConsensusViolation") {
        Trigger::ConsensusViolation
    } else if any(&|c| c == "ToolDeniedError") {
        Trigger::ToolDenied
    } else if any(&|c| c.contains("RateLimit"))
        || lower.contains("rate limit")
        || lower.contains("429 too many")
    {
        Trigger::RateLimitError
    } else if any(&|c| c.contains("Timeout") || c == "TimeoutError") || lower.contains("timed out")
    {
        Trigger::TimeoutError
    } else if any(&|c| c == "ValidationError") {
        Trigger::ValidationError
    } else if any(&|c| {
        c.contains("APIError") || c.contains("APIConnectionError") || c.contains("APIStatusError")
    }) {
        Trigger::LlmError
    } else {
        Trigger::Error
    }
}

/// A pause stops the step, so the notifications, suggestions and inspections listed right
/// after it (`[pause, notify, suggest_fix]`) are carried out before it takes effect.
fn pause_last(actions: Vec<Action>) -> Vec<Action> {
    let side_effect = |a: &Action| match a {
        Action::Notify(_) | Action::Inspect => true,
        Action::SuggestFix(s) => !s.auto_apply,
        _ => false,
    };
    let mut out: Vec<Action> = Vec::with_capacity(actions.len());
    let mut pending: Option<Action> = None;
    for a in actions {
        if pending.is_some() && !side_effect(&a) {
            out.extend(pending.take());
        }
        if matches!(a, Action::Pause(_)) {
            out.extend(pending.take());
            pending = Some(a);
        } else {
            out.push(a);
        }
    }
    out.extend(pending);
    out
}

/// Failures that may go away by themselves, so that retrying without a rule makes sense.
pub fn transient(kind: Trigger) -> bool {
    matches!(
        kind,
        Trigger::Error
            | Trigger::TimeoutError
            | Trigger::RateLimitError
            | Trigger::LlmError
            | Trigger::ToolError
    )
}

/// The built-in reading of a failure type: a likely root cause and a fix to try. A binding's
/// analyzer hook may replace both.
pub fn explain(kind: Trigger, message: &str) -> (String, String) {
    let (cause, fix) = match kind {
        Trigger::TimeoutError => (
            "the step did not finish within its timeout",
            "raise the step timeout, or make the slow call faster or cached",
        ),
        Trigger::RateLimitError => (
            "the provider refused the call for rate",
            "retry with exponential backoff, or lower concurrency",
        ),
        Trigger::LlmError => (
            "the LLM provider returned an error",
            "retry; check the model name, the API key and the provider's status",
        ),
        Trigger::ToolError => (
            "a tool call failed",
            "check the tool's inputs and availability",
        ),
        Trigger::ToolDenied => (
            "a tool outside the allowlist was called",
            "add the tool to tool_whitelist, or change the agent's plan",
        ),
        Trigger::HallucinationDetected => (
            "a validator flagged the output as unsupported by the inputs",
            "constrain the prompt, or have a human correct the output",
        ),
        Trigger::ConsensusViolation => (
            "agents did not agree on a hand-off in time",
            "roll back to the last consistent checkpoint and re-run the hand-off",
        ),
        Trigger::PreconditionFailed => (
            "the step's inputs broke its precondition",
            "fix the step that produced the inputs",
        ),
        Trigger::PostconditionFailed => (
            "the step's result broke its postcondition",
            "retry, or correct the step's output",
        ),
        Trigger::ValidationError => (
            "the output did not validate",
            "correct the output or the prompt",
        ),
        Trigger::ProcessCrashed => (
            "the process running the execution died",
            "resume the execution (omium recover)",
        ),
        Trigger::Error | Trigger::Any => ("the step raised an exception", "see the error message"),
    };
    let cause = if message.is_empty() {
        cause.to_string()
    } else {
        format!("{cause}: {message}")
    };
    (cause, fix.to_string())
}

/// What the binding should do next about a failure.
#[derive(Clone, Debug, PartialEq)]
pub enum Directive {
    /// Run the step again after `delay`; `attempt` counts the first run as 1.
    Retry { attempt: u32, delay: Duration },
    /// Roll the execution back to `to` (`last_consistent` or a checkpoint name) and run it
    /// again.
    Rollback { to: String },
    /// Pause the execution until a human resumes it.
    Pause { reason: String },
    /// Notify these channels (the binding's callbacks; webhooks are sent by [`Recovery::notify`]).
    Notify { channels: Vec<String> },
    /// Notify, then fail with an escalation.
    Escalate { channels: Vec<String> },
    /// Call the registered function `function` instead of the step.
    Fallback { function: String },
    /// Record the fix; with `auto_apply`, run the registered fixer and retry once.
    SuggestFix {
        fix: Option<String>,
        auto_apply: bool,
    },
    /// Run the analyzer hook and record its root cause.
    Inspect,
    /// Give up: re-raise the failure.
    Fail,
}

impl Directive {
    pub fn name(&self) -> &'static str {
        match self {
            Directive::Retry { .. } => "retry",
            Directive::Rollback { .. } => "rollback",
            Directive::Pause { .. } => "pause",
            Directive::Notify { .. } => "notify",
            Directive::Escalate { .. } => "escalate",
            Directive::Fallback { .. } => "fallback",
            Directive::SuggestFix { .. } => "suggest_fix",
            Directive::Inspect => "inspect",
            Directive::Fail => "fail",
        }
    }

    /// The directive of a name and its [`Directive::params`] (as a daemon sends them).
    pub fn parse(name: &str, p: &serde_json::Value) -> Result<Directive> {
        let text = |k: &str| p[k].as_str().map(str::to_string);
        let channels =
            || -> Vec<String> { serde_json::from_value(p["channels"].clone()).unwrap_or_default() };
        Ok(match name {
            "retry" => Directive::Retry {
                attempt: p["attempt"].as_u64().unwrap_or(2) as u32,
                delay: Duration::from_secs_f64(p["delay"].as_f64().unwrap_or(0.0).max(0.0)),
            },
            "rollback" => Directive::Rollback {
                to: text("to").unwrap_or_else(|| "last_consistent".into()),
            },
            "pause" => Directive::Pause {
                reason: text("reason").unwrap_or_default(),
            },
            "notify" => Directive::Notify {
                channels: channels(),
            },
            "escalate" => Directive::Escalate {
                channels: channels(),
            },
            "fallback" => Directive::Fallback {
                function: text("function").unwrap_or_default(),
            },
            "suggest_fix" => Directive::SuggestFix {
                fix: text("fix"),
                auto_apply: p["auto_apply"].as_bool().unwrap_or(false),
            },
            "inspect" => Directive::Inspect,
            "fail" => Directive::Fail,
            other => {
                return Err(Error::InvalidArgument {
                    what: "recovery directive",
                    detail: format!(
                        "{other:?}; expected retry, rollback, pause, notify, escalate, \
                         fallback, suggest_fix, inspect or fail"
                    ),
                })
            }
        })
    }

    /// The directive's parameters as the bindings get them (`delay` in seconds).
    pub fn params(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Directive::Retry { attempt, delay } => {
                json!({"attempt": attempt, "delay": delay.as_secs_f64()})
            }
            Directive::Rollback { to } => json!({ "to": to }),
            Directive::Pause { reason } => json!({ "reason": reason }),
            Directive::Notify { channels } | Directive::Escalate { channels } => {
                json!({ "channels": channels })
            }
            Directive::Fallback { function } => json!({ "function": function }),
            Directive::SuggestFix { fix, auto_apply } => {
                json!({"fix": fix, "auto_apply": auto_apply})
            }
            Directive::Inspect | Directive::Fail => json!({}),
        }
    }
}

/// The handling of one failure, driven by a binding.
pub struct Recovery {
    store: Store,
    effective: Effective,
    record: FailureRecord,
    rule: Rule,
    pos: usize,
    attempts: u32,
    rollbacks_so_far: u32,
    rng: u64,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("failure", &self.record.id)
            .field("pos", &self.pos)
            .finish()
    }
}

/// Recovery over a store: record a failure and drive its handling, resume a paused
/// execution, record a crash, and the recovery figures (`use omium_core::prelude::*`).
pub trait RecoveryStore: AsRef<Store> {
    /// Records a failure and decides how to handle it, from the policies in force for its
    /// step (`effective`; [`Store::effective_policy`] gives them).
    fn start_recovery(&self, input: FailureInput, effective: Effective) -> Result<Recovery> {
        let store: &Store = self.as_ref();
        let kind = input
            .kind
            .unwrap_or_else(|| classify(&input.error_classes, &input.message, &effective));
        let facts = policy::Failure {
            kind,
            error_class: input.error_classes.first().cloned().unwrap_or_default(),
            message: input.message.clone(),
            step: input.step.clone().unwrap_or_default(),
            workflow: input.workflow.clone(),
            agent: input.agent.clone(),
            attempt: 1,
        };
        let decided = effective
            .decide(&facts)?
            .map(|(s, r)| (s.to_string(), r.clone()));
        let (scope, rule) = match decided {
            Some((s, r)) => (Some(s), r),
            None => {
                // No rule: a transient failure is retried with the step's own retries, else
                // with the policy's default retry; anything else fails.
                let (name, retry) = match (
                    transient(kind),
                    input.step_retry.clone(),
                    effective.defaults().retry,
                ) {
                    (true, Some(r), _) => ("step retries", Some(r)),
                    (true, None, Some(r)) => ("default retry", Some(r)),
                    _ => ("default: fail", None),
                };
                let rule = Rule {
                    name: Some(name.into()),
                    trigger: kind,
                    when: None,
                    actions: retry.map_or_else(|| vec![Action::Fail], |r| vec![Action::Retry(r)]),
                };
                (None, rule)
            }
        };
        let (root_cause, fix) = explain(kind, &input.message);
        let id = crate::store::new_id();
        let record = FailureRecord {
            id: id.to_string(),
            execution_id: input.execution_id,
            workflow: input.workflow,
            tenant: input.tenant,
            step: input.step,
            seq: input.seq,
            key: input.key,
            agent: input.agent,
            kind,
            error_class: facts.error_class,
            message: input.message,
            rule: rule.name.clone().or_else(|| Some(format!("{} rule", kind))),
            scope,
            root_cause: Some(root_cause),
            suggested_fix: Some(fix),
            actions: Vec::new(),
            outcome: Outcome::Open,
            created_at_ms: now_ms(),
            resolved_at_ms: None,
        };
        let mut rule = rule;
        rule.actions = pause_last(rule.actions);
        let r = Recovery {
            store: store.clone(),
            effective,
            rng: (id.random() as u64) | 1,
            record,
            rule,
            pos: 0,
            attempts: 1,
            rollbacks_so_far: input.rollbacks_so_far,
        };
        r.save("failure.record")?;
        Ok(r)
    }

    /// Records a crashed process's execution as a failure (`process_crashed`), resolved when
    /// the execution completes. Called by `recover()` before resuming it.
    fn record_crash(&self, execution_id: &str) -> Result<FailureRecord> {
        let store: &Store = self.as_ref();
        let exec = store.execution(execution_id)?;
        let owner = exec
            .lease
            .as_ref()
            .map(|l| format!("{} (pid {} on {})", l.owner, l.pid, l.host))
            .unwrap_or_else(|| "an earlier run".into());
        let input = FailureInput {
            execution_id: exec.id.clone(),
            workflow: exec.workflow.clone(),
            tenant: exec.tenant.clone(),
            kind: Some(Trigger::ProcessCrashed),
            message: format!(
                "the process running it ({owner}) stopped without finishing; its lease expired"
            ),
            ..FailureInput::default()
        };
        let mut r = store.start_recovery(input, Effective::default())?;
        // The last sign of life is the best estimate of when it failed.
        r.record.created_at_ms = exec.updated_at_ms;
        r.record.rule = Some("recover".into());
        r.record.outcome = Outcome::RolledBack;
        r.record.actions.push(ActionRecord::taken(
            "resume",
            serde_json::json!({}),
            now_ms(),
        ));
        r.save("failure.update")?;
        Ok(r.record)
    }

    /// Resumes a paused execution: with `state`, the step that paused it is recorded with that
    /// state (a human's corrected output), so it is not run again; without, it runs again.
    /// Returns the failure that had paused it, if one did.
    fn resume(
        &self,
        execution_id: &str,
        state: Option<&[u8]>,
        by: Option<&str>,
    ) -> Result<Option<FailureRecord>> {
        let store: &Store = self.as_ref();
        store.resume_paused(execution_id, state, by)
    }

    #[doc(hidden)]
    fn begin_paused(&self, execution_id: &str) -> Result<crate::Run> {
        let store: &Store = self.as_ref();
        store.begin_paused(execution_id)
    }

    /// Recovery figures over the recorded failures (of one workflow, or all).
    fn recovery_metrics(&self, workflow: Option<&str>) -> Result<RecoveryMetrics> {
        let store: &Store = self.as_ref();
        let failures: Vec<FailureRecord> = store
            .failures(None)?
            .into_iter()
            .filter(|f| workflow.is_none_or(|w| f.workflow == w))
            .collect();
        Ok(RecoveryMetrics::of(&failures))
    }
}

impl RecoveryStore for Store {}

/// Figures derived from recovery history.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RecoveryMetrics {
    pub failures: u64,
    pub recovered: u64,
    pub escalated: u64,
    pub failed: u64,
    /// Paused, rolled back or being handled: not settled yet.
    pub open: u64,
    /// Recovered over settled (recovered + escalated + failed); None when nothing settled.
    /// Not `success_rate`: in the analytics that is completed over ended executions.
    pub recovery_rate: Option<f64>,
    /// Mean time from failure to successful continuation, over recovered failures.
    pub mttr_ms: Option<f64>,
    pub mttr_p50_ms: Option<u64>,
    pub mttr_p95_ms: Option<u64>,
    /// Retries made per recovered failure.
    pub retries_per_success: Option<f64>,
    pub by_type: BTreeMap<String, u64>,
    pub by_outcome: BTreeMap<String, u64>,
    pub actions: BTreeMap<String, u64>,
}

impl RecoveryMetrics {
    pub fn of(failures: &[FailureRecord]) -> RecoveryMetrics {
        let mut m = RecoveryMetrics {
            failures: failures.len() as u64,
            ..Default::default()
        };
        let mut times = Vec::new();
        let mut retries = 0u64;
        for f in failures {
            *m.by_type.entry(f.kind.as_str().into()).or_default() += 1;
            *m.by_outcome.entry(f.outcome.as_str().into()).or_default() += 1;
            for a in &f.actions {
                *m.actions.entry(a.action.clone()).or_default() += 1;
            }
            match f.outcome {
                Outcome::Recovered => {
                    m.recovered += 1;
                    retries += f.actions.iter().filter(|a| a.action == "retry").count() as u64;
                    if let Some(r) = f.resolved_at_ms {
                        times.push(r.saturating_sub(f.created_at_ms));
                    }
                }
                Outcome::Escalated => m.escalated += 1,
                Outcome::Failed => m.failed += 1,
                _ => m.open += 1,
            }
        }
        let settled = m.recovered + m.escalated + m.failed;
        if settled > 0 {
            m.recovery_rate = Some(m.recovered as f64 / settled as f64);
        }
        if m.recovered > 0 {
            m.retries_per_success = Some(retries as f64 / m.recovered as f64);
        }
        if !times.is_empty() {
            times.sort_unstable();
            m.mttr_ms = Some(times.iter().sum::<u64>() as f64 / times.len() as f64);
            let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
            m.mttr_p50_ms = Some(pct(0.5));
            m.mttr_p95_ms = Some(pct(0.95));
        }
        m
    }
}

impl Recovery {
    pub fn record(&self) -> &FailureRecord {
        &self.record
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The defaults in force (timeouts, allowlist) for the failed step.
    pub fn effective(&self) -> &Effective {
        &self.effective
    }

    fn save(&self, action: &'static str) -> Result<()> {
        self.store.put_failure(&self.record, action)
    }

    fn unit(&mut self) -> f64 {
        // xorshift64*: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next thing to do. Each call opens an action record that [`Recovery::done`] closes.
    pub fn next_directive(&mut self) -> Result<Directive> {
        loop {
            let Some(action) = self.rule.actions.get(self.pos).cloned() else {
                return self.begin(Directive::Fail, "{}".into());
            };
            let d = match action {
                Action::Retry(r) => {
                    if self.attempts < r.max_attempts {
                        self.attempts += 1;
                        let delay = r.delay(self.attempts - 1, self.unit());
                        let detail = serde_json::json!({"attempt": self.attempts, "of": r.max_attempts, "delay_ms": delay.as_millis() as u64});
                        return self.begin(
                            Directive::Retry {
                                attempt: self.attempts,
                                delay,
                            },
                            detail.to_string(),
                        );
                    }
                    self.pos += 1;
                    continue;
                }
                Action::Rollback(r) => {
                    self.pos += 1;
                    if self.rollbacks_so_far >= r.max_times {
                        continue;
                    }
                    Directive::Rollback { to: r.to }
                }
                Action::Pause(p) => {
                    self.pos += 1;
                    Directive::Pause {
                        reason: p.reason.unwrap_or_else(|| {
                            format!(
                                "{} in step {:?}: waiting for a human",
                                self.record.kind,
                                self.record.step.as_deref().unwrap_or("")
                            )
                        }),
                    }
                }
                Action::Notify(n) => {
                    self.pos += 1;
                    Directive::Notify {
                        channels: self.channels(&n.channels),
                    }
                }
                Action::Escalate(n) => {
                    self.pos += 1;
                    Directive::Escalate {
                        channels: self.channels(&n.channels),
                    }
                }
                Action::Fallback(f) => {
                    self.pos += 1;
                    Directive::Fallback {
                        function: f.function,
                    }
                }
                Action::SuggestFix(s) => {
                    self.pos += 1;
                    if let Some(fix) = &s.fix {
                        self.record.suggested_fix = Some(fix.clone());
                    }
                    Directive::SuggestFix {
                        fix: s.fix,
                        auto_apply: s.auto_apply,
                    }
                }
                Action::Inspect => {
                    self.pos += 1;
                    Directive::Inspect
                }
                Action::Fail => {
                    self.pos = self.rule.actions.len();
                    Directive::Fail
                }
            };
            let detail = match &d {
                Directive::Rollback { to } => serde_json::json!({ "to": to }),
                Directive::Pause { reason } => serde_json::json!({ "reason": reason }),
                Directive::Notify { channels } | Directive::Escalate { channels } => {
                    serde_json::json!({ "channels": channels })
                }
                Directive::Fallback { function } => serde_json::json!({ "function": function }),
                Directive::SuggestFix { fix, auto_apply } => {
                    serde_json::json!({ "fix": fix, "auto_apply": auto_apply })
                }
                _ => serde_json::json!({}),
            };
            return self.begin(d, detail.to_string());
        }
    }

    fn channels(&self, named: &[String]) -> Vec<String> {
        if named.is_empty() {
            self.effective.channel_names()
        } else {
            named.to_vec()
        }
    }

    fn begin(&mut self, d: Directive, detail: String) -> Result<Directive> {
        self.record.actions.push(ActionRecord {
            action: d.name().into(),
            detail,
            outcome: "pending".into(),
            started_at_ms: now_ms(),
            ended_at_ms: None,
        });
        match d {
            Directive::Fail => self.finish(Outcome::Failed)?,
            Directive::Escalate { .. } | Directive::Pause { .. } | Directive::Rollback { .. } => {}
            _ => self.save("failure.update")?,
        }
        Ok(d)
    }

    /// Closes the current action: `ok` or not, with an optional note (what a callback said, the
    /// retry's error, ...). A failed retry keeps the recovery going with the next directive.
    pub fn done(&mut self, ok: bool, note: Option<&str>) -> Result<()> {
        if let Some(a) = self.record.actions.last_mut() {
            a.outcome = if ok { "ok" } else { "failed" }.into();
            a.ended_at_ms = Some(now_ms());
            if let Some(n) = note {
                let mut d: serde_json::Value =
                    serde_json::from_str(&a.detail).unwrap_or_else(|_| serde_json::json!({}));
                d["note"] = n.into();
                a.detail = d.to_string();
            }
        }
        self.save("failure.update")
    }

    /// Records what an analyzer said about the failure.
    pub fn set_analysis(
        &mut self,
        root_cause: Option<String>,
        suggested_fix: Option<String>,
    ) -> Result<()> {
        if root_cause.is_some() {
            self.record.root_cause = root_cause;
        }
        if suggested_fix.is_some() {
            self.record.suggested_fix = suggested_fix;
        }
        self.save("failure.update")
    }

    /// The step went on successfully (a retry, a fallback or a fix worked).
    pub fn recovered(&mut self) -> Result<()> {
        self.finish(Outcome::Recovered)
    }

    /// The failure is settled as failed without acting on it (a denied tool outside a step).
    pub fn failed(&mut self) -> Result<()> {
        self.finish(Outcome::Failed)
    }

    /// The failure is settled as escalated (after the escalation's notifications).
    pub fn escalated(&mut self) -> Result<()> {
        self.finish(Outcome::Escalated)
    }

    /// The execution is being paused (the binding pauses its run next).
    pub fn paused(&mut self) -> Result<()> {
        self.set_outcome(Outcome::Paused)
    }

    /// The execution was rolled back and will run again.
    pub fn rolled_back(&mut self) -> Result<()> {
        self.set_outcome(Outcome::RolledBack)
    }

    fn set_outcome(&mut self, o: Outcome) -> Result<()> {
        self.record.outcome = o;
        if let Some(a) = self.record.actions.last_mut() {
            if a.outcome == "pending" && o != Outcome::Paused {
                a.outcome = "ok".into();
                a.ended_at_ms = Some(now_ms());
            }
        }
        self.save("failure.update")
    }

    fn finish(&mut self, o: Outcome) -> Result<()> {
        let now = now_ms();
        if let Some(a) = self.record.actions.last_mut() {
            if a.outcome == "pending" {
                a.outcome =
                    if o == Outcome::Recovered || o == Outcome::Escalated || a.action == "fail" {
                        "ok"
                    } else {
                        "failed"
                    }
                    .into();
                a.ended_at_ms = Some(now);
            }
        }
        self.record.outcome = o;
        self.record.resolved_at_ms = Some(now);
        self.save("failure.update")
    }

    /// The JSON a notification carries.
    pub fn payload(&self, event: &str) -> serde_json::Value {
        failure_payload(&self.record, self.attempts, event)
    }

    /// Sends the webhooks of `channels` (those that have one), returning per channel whether
    /// it was delivered or why not. Never fails the recovery: a dead webhook is recorded.
    pub fn notify(
        &self,
        channels: &[String],
        event: &str,
    ) -> Vec<(String, std::result::Result<(), String>)> {
        send_notices(&self.effective, channels, &self.payload(event))
    }
}

/// The JSON a notification about failure `f` carries (`attempts` made so far).
pub fn failure_payload(f: &FailureRecord, attempts: u32, event: &str) -> serde_json::Value {
    serde_json::json!({
        "event": event,
        "failure": {
            "id": f.id, "execution_id": f.execution_id, "workflow": f.workflow, "tenant": f.tenant,
            "step": f.step, "agent": f.agent, "type": f.kind.as_str(), "error_class": f.error_class,
            "message": f.message, "rule": f.rule, "scope": f.scope, "root_cause": f.root_cause,
            "suggested_fix": f.suggested_fix, "attempts": attempts, "outcome": f.outcome.as_str(),
            "created_at_ms": f.created_at_ms,
        },
    })
}

/// Sends `payload` to the webhooks of `channels` of `effective` (those that have one),
/// returning per channel whether it was delivered or why not.
pub fn send_notices(
    effective: &Effective,
    channels: &[String],
    payload: &serde_json::Value,
) -> Vec<(String, std::result::Result<(), String>)> {
    channels
        .iter()
        .filter_map(|c| {
            let ch = effective.channel(c)?;
            let url = ch.webhook.as_ref()?;
            let body = match ch.format {
                WebhookFormat::Json => payload.to_string(),
                WebhookFormat::Slack => slack_body(payload).to_string(),
            };
            Some((c.clone(), post_webhook(url, &body)))
        })
        .collect()
}

/// Applies an operator control through whichever process can (`Store::request_control`) and
/// reads what it wrote; an escalation also tells the failure's channels ([`escalate`]). The
/// CLI, `omium serve` and every binding's embedded store control executions through here.
pub fn control(store: &Store, request: &crate::control::Request) -> Result<crate::control::Reply> {
    if request.action == crate::control::Action::Escalate {
        return escalate(store, request);
    }
    let reply = store.request_control(request)?;
    store.refresh()?;
    Ok(reply)
}

/// An operator's escalation of `request.execution`'s open failure ([`Store::escalate_failure`],
/// carried out by the store's writer, through the control mailbox when another process holds
/// the store), then the notices ([`notify_escalation`]). The reply names the failure and
/// carries what each channel made of its notice (`notified`).
pub fn escalate(store: &Store, request: &crate::control::Request) -> Result<crate::control::Reply> {
    let mut reply = store.request_control(request)?;
    store.refresh()?;
    let failure = store
        .failures(Some(&request.execution))?
        .into_iter()
        .find(|f| Some(&f.id) == reply.failure.as_ref())
        .ok_or_else(|| Error::InvalidState {
            execution: request.execution.clone(),
            status: reply.status.clone().unwrap_or_default(),
            detail: "the escalated failure is not in the store any more".into(),
        })?;
    reply.notified = Some(notify_escalation(
        store,
        &failure,
        &request.by,
        request.reason.as_deref(),
    )?);
    Ok(reply)
}

/// Tells the channels of the policies in force for failure `f` (settled as escalated by an
/// operator, [`Store::escalate_failure`]) that `by` escalated it: the event
/// `omium.failure.escalation`, as a policy's `escalate` action sends it, plus `escalated_by`
/// and `reason`. Answers `{channel: "delivered" | why not}`; a dead webhook fails nothing.
pub fn notify_escalation(
    store: &Store,
    f: &FailureRecord,
    by: &str,
    reason: Option<&str>,
) -> Result<serde_json::Value> {
    use crate::PolicyStore as _;
    let effective = store.effective_policy(&f.tenant, Some(&f.workflow), f.step.as_deref())?;
    let attempts = 1 + f.actions.iter().filter(|a| a.action == "retry").count() as u32;
    let mut payload = failure_payload(f, attempts, "omium.failure.escalation");
    payload["escalated_by"] = serde_json::json!(by);
    payload["reason"] = serde_json::json!(reason);
    let channels = effective.channel_names();
    payload["channels"] = serde_json::json!(channels);
    let sent = send_notices(&effective, &channels, &payload);
    Ok(serde_json::Value::Object(
        sent.into_iter()
            .map(|(c, r)| {
                (
                    c,
                    serde_json::json!(r.err().unwrap_or_else(|| "delivered".into())),
                )
            })
            .collect(),
    ))
}

/// The target of a rollback a policy decided (`last_consistent`, a checkpoint id or name).
pub fn policy_rollback_target(to: &str) -> crate::RollbackTarget {
    if to == "last_consistent" || to == "last-consistent" {
        crate::RollbackTarget::LastConsistent
    } else {
        crate::RollbackTarget::parse(to)
    }
}

/// Why a policy rolled an execution back, as the rollback marker records it (`failure` as
/// [`Command::Raise`] carries it).
pub fn policy_rollback_reason(failure: &serde_json::Value) -> String {
    format!(
        "recovery policy: {} in step {:?} ({})",
        failure["type"].as_str().unwrap_or("failure"),
        failure["step"].as_str().unwrap_or(""),
        failure["rule"].as_str().unwrap_or("rule"),
    )
}

/// Carries out a rollback a recovery policy decided, given the store's `rollback` and whether
/// the execution has any checkpoint. When nothing consistent was recorded yet (the first step
/// failed), running again from the start is the rollback: `Ok(None)`.
pub fn roll_back_as_decided<C>(
    to: &str,
    failure: &serde_json::Value,
    rollback: impl FnOnce(&crate::RollbackTarget, &str) -> Result<C>,
    has_history: impl FnOnce() -> Result<bool>,
) -> Result<Option<C>> {
    match rollback(
        &policy_rollback_target(to),
        &policy_rollback_reason(failure),
    ) {
        Ok(c) => Ok(Some(c)),
        Err(Error::NoConsistentCheckpoint { .. }) if !has_history()? => Ok(None),
        Err(e) => Err(e),
    }
}

/// A Slack incoming-webhook body for a failure payload.
pub fn slack_body(payload: &serde_json::Value) -> serde_json::Value {
    let f = &payload["failure"];
    let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
    let text = format!(
        ":rotating_light: *{}* — {} in step `{}` of `{}` (execution `{}`)\n>{}\nRoot cause: {}\nSuggested fix: {}",
        payload["event"].as_str().unwrap_or("omium.failure"),
        s("type"),
        s("step"),
        s("workflow"),
        s("execution_id"),
        s("message"),
        s("root_cause"),
        s("suggested_fix"),
    );
    serde_json::json!({ "text": text })
}

/// Hosts (names or addresses, comma-separated) that webhooks may reach although they are, or
/// resolve to, loopback, private, link-local or other non-public addresses. Set by the operator
/// of the process (`OMIUM_WEBHOOK_ALLOW=127.0.0.1,hooks.internal`), never by a policy document.
pub const WEBHOOK_ALLOW_ENV: &str = "OMIUM_WEBHOOK_ALLOW";

/// Hosts allowed as with [`WEBHOOK_ALLOW_ENV`], given by a program that embeds Omium.
static ALLOWED_WEBHOOK_HOSTS: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());

/// Lets webhooks of this process reach these hosts (names or addresses) although they are not
/// public, as [`WEBHOOK_ALLOW_ENV`] does.
pub fn allow_webhook_hosts<S: AsRef<str>>(hosts: &[S]) {
    ALLOWED_WEBHOOK_HOSTS
        .lock()
        .extend(hosts.iter().map(|h| h.as_ref().trim().to_string()));
}

/// The key webhook bodies are signed with, when set: header
/// `Omium-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const WEBHOOK_SECRET_ENV: &str = "OMIUM_WEBHOOK_SECRET";

/// Whether a webhook may reach `ip` without the operator naming it: public unicast only.
fn public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local() // 169.254/16, cloud metadata among them
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o0 == 0
                || (o0 == 100 && (o1 & 0xc0) == 64) // shared address space, 100.64/10
                || (o0 == 198 && (o1 & 0xfe) == 18)) // benchmarking, 198.18/15
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            if let Some(v4) = a.to_ipv4_mapped() {
                return public(IpAddr::V4(v4));
            }
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 is a metadata address)
                || (s0 & 0xffc0) == 0xfe80) // link-local
        }
    }
}

/// Checks where a webhook would go before anything is sent: an http(s) URL whose host is, and
/// resolves only to, public addresses, unless `allow` names the host or the address.
pub fn webhook_target(url: &str, allow: &[String]) -> std::result::Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| format!("refused: {url:?} is not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "refused: {url:?} is not an http:// or https:// URL"
            ))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("refused: {url:?} names no host"))?;
    host_target(
        host,
        uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        allow,
    )
}

/// Checks a host that a notification would reach (a webhook's, an SMTP server's): it is, and
/// resolves only to, public addresses, unless `allow` names the host or the address.
pub fn host_target(host: &str, port: u16, allow: &[String]) -> std::result::Result<(), String> {
    use std::net::{IpAddr, ToSocketAddrs};
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if allow.iter().any(|a| a.trim().eq_ignore_ascii_case(&host)) {
        return Ok(());
    }
    let (ips, literal): (Vec<IpAddr>, bool) = match host.parse::<IpAddr>() {
        Ok(ip) => (vec![ip], true),
        Err(_) => (
            (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|_| format!("failed: cannot resolve {host}"))?
                .map(|a| a.ip())
                .collect(),
            false,
        ),
    };
    let allowed = |ip: &IpAddr| {
        allow
            .iter()
            .any(|a| a.trim().parse::<IpAddr>().ok() == Some(*ip))
    };
    match ips.iter().find(|ip| !public(**ip) && !allowed(ip)) {
        None => Ok(()),
        Some(ip) => {
            Err(format!(
            "refused: {host} {} a loopback, private, link-local or other non-public address{}; \
             the operator can allow it with {WEBHOOK_ALLOW_ENV}={host}",
            if literal { "is" } else { "resolves to" },
            if literal { String::new() } else { format!(" ({ip})") },
        ))
        }
    }
}

/// The hosts the operator let notifications reach ([`WEBHOOK_ALLOW_ENV`] and
/// [`allow_webhook_hosts`]).
pub fn allowed_hosts() -> Vec<String> {
    let mut allow: Vec<String> = std::env::var(WEBHOOK_ALLOW_ENV)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    allow.extend(ALLOWED_WEBHOOK_HOSTS.lock().iter().cloned());
    allow
}

/// HMAC-SHA256 of `message` under `key`, hex.
pub fn webhook_signature(key: &[u8], message: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    crate::hex(&mac.finalize().into_bytes())
}

/// POSTs `body` (JSON) to `url`: only to the addresses [`webhook_target`] allows, without
/// following redirects, signed when [`WEBHOOK_SECRET_ENV`] is set; 5 s timeout, one retry on a
/// network error or a 5xx. What went wrong is said as `refused: …` (the URL or a redirect) or
/// `failed: …` (a status, or "no answer"): never the text of a network error, which would tell
/// the caller what answers behind the address.
pub fn post_webhook(url: &str, body: &str) -> std::result::Result<(), String> {
    post_webhook_as(url, "application/json", body)
}

/// [`post_webhook`] with another content type (`application/cloudevents-batch+json` for the
/// event feed's batches).
pub fn post_webhook_as(
    url: &str,
    content_type: &str,
    body: &str,
) -> std::result::Result<(), String> {
    let secret = std::env::var(WEBHOOK_SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty());
    post_signed(url, content_type, body, secret.as_deref())
}

/// [`post_webhook_as`] signed with `secret` (when given) instead of [`WEBHOOK_SECRET_ENV`].
pub fn post_signed(
    url: &str,
    content_type: &str,
    body: &str,
    secret: Option<&str>,
) -> std::result::Result<(), String> {
    webhook_target(url, &allowed_hosts())?;
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.starts_with(p));
    let mut cfg = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .max_redirects(0)
        .http_status_as_error(false);
    if loopback {
        cfg = cfg.proxy(None);
    }
    let agent: ureq::Agent = cfg.build().into();
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut req = agent.post(url).header("content-type", content_type);
        if let Some(key) = secret {
            let t = now_ms() / 1000;
            let sig = webhook_signature(key.as_bytes(), format!("{t}.{body}").as_bytes());
            req = req.header("omium-signature", format!("t={t},v1={sig}"));
        }
        match req.send(body) {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if resp.status().is_redirection() => {
                return Err(format!(
                    "refused: the receiver redirected (HTTP {}); webhooks follow no redirects",
                    resp.status().as_u16()
                ))
            }
            Ok(resp) if resp.status().is_server_error() => {
                last = format!("failed: HTTP {}", resp.status().as_u16())
            }
            Ok(resp) => return Err(format!("failed: HTTP {}", resp.status().as_u16())),
            Err(_) => last = "failed: no answer".into(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{NotifyAction, PauseAction, SuggestFixAction};

    #[test]
    fn webhooks_reach_only_public_addresses_unless_the_operator_allows_them() {
        let refused = |url: &str| webhook_target(url, &[]).unwrap_err();
        for (url, host) in [
            ("http://127.0.0.1:9/x", "127.0.0.1"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "169.254.169.254",
            ),
            ("http://[::1]:8080/", "::1"),
            ("http://10.1.2.3/hook", "10.1.2.3"),
            ("http://192.168.0.10/", "192.168.0.10"),
            ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
            ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
            ("http://100.64.0.1/", "100.64.0.1"),
            ("http://0.0.0.0:80/", "0.0.0.0"),
        ] {
            assert_eq!(
                refused(url),
                format!(
                    "refused: {host} is a loopback, private, link-local or other non-public \
                     address; the operator can allow it with OMIUM_WEBHOOK_ALLOW={host}"
                ),
                "{url}"
            );
        }
        let e = refused("http://localhost:8080/x");
        assert!(
            e.starts_with("refused: localhost resolves to a loopback") && e.contains("(127.0.0.1)")
                || e.contains("(::1)"),
            "{e}"
        );
        assert!(refused("ftp://example.com/x").contains("is not an http:// or https:// URL"));
        assert!(refused("not a url at all").starts_with("refused: "));
        // Public addresses need nothing; the operator may name private hosts or addresses.
        webhook_target("https://93.184.216.34/hook", &[]).unwrap();
        webhook_target("http://[2606:2800:220:1::1]/", &[]).unwrap();
        let allow = ["127.0.0.1".to_string(), "LOCALHOST".to_string()];
        webhook_target("http://127.0.0.1:9/x", &allow).unwrap();
        webhook_target("http://localhost:9/x", &allow).unwrap();
        assert!(webhook_target("http://169.254.169.254/", &allow).is_err());
    }

    #[test]
    fn webhook_signatures_are_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            webhook_signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn side_effects_listed_after_a_pause_run_before_it() {
        let names = |v: Vec<Action>| pause_last(v).iter().map(Action::name).collect::<Vec<_>>();
        let pause = || Action::Pause(PauseAction::default());
        let notify = || Action::Notify(NotifyAction::default());
        let fix = |auto_apply| {
            Action::SuggestFix(SuggestFixAction {
                fix: None,
                auto_apply,
            })
        };
        assert_eq!(
            names(vec![pause(), notify(), fix(false)]),
            ["notify", "suggest_fix", "pause"]
        );
        assert_eq!(
            names(vec![pause(), notify(), Action::Fail]),
            ["notify", "pause", "fail"]
        );
        assert_eq!(names(vec![notify(), pause()]), ["notify", "pause"]);
        assert_eq!(names(vec![pause(), fix(true)]), ["pause", "suggest_fix"]);
    }
}
