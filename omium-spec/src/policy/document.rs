//! What a policy file may contain: the canonical sections (`rules`, `defaults`, `classify`,
//! `channels`) and the three shapes of the original design (`policies`; `timeouts` + `retries`
//! + `recovery`; `execution_config`), in any combination, mapped to one canonical [`Policy`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::*;
use super::yaml::{Node, Problem};

/// A policy file as written.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Schema version of the file (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub defaults: Option<Defaults>,
    #[serde(default)]
    pub classify: BTreeMap<String, Trigger>,
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    /// The original design's list of trigger → action policies.
    #[serde(default)]
    pub policies: Vec<LegacyPolicy>,
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
    #[serde(default)]
    pub retries: Option<Retries>,
    #[serde(default)]
    pub recovery: Option<RecoverySection>,
    #[serde(default)]
    pub execution_config: Option<ExecutionConfig>,
}

/// `policies:` entries: one trigger, one compound action.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyPolicy {
    pub trigger: Trigger,
    pub action: LegacyAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Retries (after the first attempt) for `auto_retry` / `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_fix: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_fix: Option<String>,
    /// Channels to notify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Function for `fallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Checkpoint name for `rollback` / `rollback_and_inspect` (default: the last consistent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegacyAction {
    PauseAndNotify,
    AutoRetry,
    RollbackAndInspect,
    Retry,
    Rollback,
    Pause,
    Notify,
    Escalate,
    Fallback,
    Fail,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Timeout of each agent step.
    #[serde(default)]
    pub agent_execution: Option<Dur>,
    #[serde(default)]
    pub consensus_acknowledgment: Option<Dur>,
    #[serde(default)]
    pub rollback_completion: Option<Dur>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Attempts in all, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub backoff_strategy: Option<BackoffKind>,
    #[serde(default)]
    pub backoff_multiplier: Option<f64>,
    #[serde(default)]
    pub initial_delay: Option<Dur>,
    #[serde(default)]
    pub max_delay: Option<Dur>,
    #[serde(default)]
    pub jitter: Option<Jitter>,
}

/// `recovery:` — failure kind → a list of action words.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverySection {
    #[serde(default)]
    pub on_hallucination: Option<Vec<Word>>,
    #[serde(default)]
    pub on_timeout: Option<Vec<Word>>,
    #[serde(default)]
    pub on_consensus_failure: Option<Vec<Word>>,
    #[serde(default)]
    pub on_rate_limit: Option<Vec<Word>>,
    #[serde(default)]
    pub on_llm_error: Option<Vec<Word>>,
    #[serde(default)]
    pub on_tool_error: Option<Vec<Word>>,
    #[serde(default)]
    pub on_tool_denied: Option<Vec<Word>>,
    #[serde(default)]
    pub on_precondition_failure: Option<Vec<Word>>,
    #[serde(default)]
    pub on_postcondition_failure: Option<Vec<Word>>,
    #[serde(default)]
    pub on_validation_failure: Option<Vec<Word>>,
    #[serde(default)]
    pub on_crash: Option<Vec<Word>>,
    #[serde(default)]
    pub on_error: Option<Vec<Word>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Word {
    Retry,
    Rollback,
    Pause,
    Notify,
    Escalate,
    ThenEscalate,
    SuggestFix,
    Inspect,
    Fail,
    ThenFail,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionConfig {
    #[serde(default)]
    pub timeout_per_agent: Option<Dur>,
    /// Retries after the first attempt.
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub memory_limit: Option<Size>,
    #[serde(default)]
    pub model_selection: Option<String>,
    #[serde(default)]
    pub sandboxing: Option<Toggle>,
    #[serde(default)]
    pub tool_whitelist: Option<Vec<String>>,
}

/// Maps a parsed document to the canonical policy; `root` locates problems.
pub(crate) fn canonicalize(doc: Document, root: &Node) -> Result<Policy, Problem> {
    let at = |path: &[&str], message: String| {
        let node = root.find(path).unwrap_or(root);
        Problem {
            at: node.at,
            path: dotted(path),
            message,
            ..Problem::default()
        }
    };
    if let Some(v) = doc.version {
        if v != 1 {
            return Err(at(
                &["version"],
                format!("unsupported policy version {v}; this Omium reads version 1"),
            ));
        }
    }
    let mut defaults = doc.defaults.unwrap_or_default();

    // Timeouts: one value may come from two sections; they must agree.
    let set_dur = |slot: &mut Option<Dur>,
                   v: Option<Dur>,
                   path: &[&str],
                   what: &str|
     -> Result<(), Problem> {
        if let Some(v) = v {
            match slot {
                Some(old) if *old != v => {
                    return Err(at(
                        path,
                        format!(
                            "{what} is {v} here but {old} elsewhere in this policy; give it once"
                        ),
                    ));
                }
                _ => *slot = Some(v),
            }
        }
        Ok(())
    };
    if let Some(t) = &doc.timeouts {
        set_dur(
            &mut defaults.step_timeout,
            t.agent_execution,
            &["timeouts", "agent_execution"],
            "the step timeout",
        )?;
        set_dur(
            &mut defaults.consensus_timeout,
            t.consensus_acknowledgment,
            &["timeouts", "consensus_acknowledgment"],
            "the consensus timeout",
        )?;
        set_dur(
            &mut defaults.rollback_timeout,
            t.rollback_completion,
            &["timeouts", "rollback_completion"],
            "the rollback timeout",
        )?;
    }
    if let Some(e) = &doc.execution_config {
        set_dur(
            &mut defaults.step_timeout,
            e.timeout_per_agent,
            &["execution_config", "timeout_per_agent"],
            "the step timeout",
        )?;
    }

    // Retry defaults from `retries:` and `execution_config.max_retries`.
    let mut retry_attempts: Option<(u32, Vec<&str>)> = defaults
        .retry
        .as_ref()
        .map(|r| (r.max_attempts, vec!["defaults", "retry", "max_attempts"]));
    let mut want_attempts = |n: u32, path: Vec<&'static str>| -> Result<(), Problem> {
        match &retry_attempts {
            Some((old, old_path)) if *old != n => Err(at(
                &path,
                format!(
                    "gives {n} attempts in all, but {} gives {old}; give the retry count once",
                    dotted(old_path)
                ),
            )),
            _ => {
                retry_attempts = Some((n, path));
                Ok(())
            }
        }
    };
    if let Some(r) = &doc.retries {
        if let Some(n) = r.max_attempts {
            want_attempts(n, vec!["retries", "max_attempts"])?;
        }
    }
    if let Some(n) = doc.execution_config.as_ref().and_then(|e| e.max_retries) {
        want_attempts(n.saturating_add(1), vec!["execution_config", "max_retries"])?;
    }
    if doc.retries.is_some() || retry_attempts.is_some() {
        let mut r = defaults.retry.clone().unwrap_or_default();
        if let Some((n, _)) = &retry_attempts {
            r.max_attempts = *n;
        }
        if let Some(s) = &doc.retries {
            if let Some(b) = s.backoff_strategy {
                r.backoff = b;
            }
            if let Some(m) = s.backoff_multiplier {
                r.multiplier = m;
            }
            if let Some(d) = s.initial_delay {
                r.initial_delay = d;
            }
            if let Some(d) = s.max_delay {
                r.max_delay = d;
            }
            if let Some(j) = s.jitter {
                r.jitter = j;
            }
        }
        defaults.retry = Some(r);
    }
    if let Some(e) = doc.execution_config {
        defaults.memory_limit = defaults.memory_limit.or(e.memory_limit);
        defaults.model_selection = defaults.model_selection.or(e.model_selection);
        defaults.sandboxing = defaults.sandboxing.or(e.sandboxing);
        if e.tool_whitelist.is_some() {
            defaults.tool_allowlist = e.tool_whitelist;
        }
    }
    let retry = defaults.retry.clone().unwrap_or_default();

    let mut rules = doc.rules;
    for (i, p) in doc.policies.into_iter().enumerate() {
        let here =
            |field: &'static str| vec!["policies".to_string(), i.to_string(), field.to_string()];
        let applies =
            |field: &'static str, set: bool, allowed: &[LegacyAction]| -> Result<(), Problem> {
                if set && !allowed.contains(&p.action) {
                    let path = here(field);
                    let path: Vec<&str> = path.iter().map(String::as_str).collect();
                    let names: Vec<String> = allowed
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .map(|s| snake(&s))
                        .collect();
                    return Err(at(
                        &path,
                        format!(
                            "{field} does not apply to action {}; it applies to {}",
                            snake(&format!("{:?}", p.action)),
                            names.join(", ")
                        ),
                    ));
                }
                Ok(())
            };
        use LegacyAction as L;
        applies(
            "max_retries",
            p.max_retries.is_some(),
            &[L::AutoRetry, L::Retry],
        )?;
        applies("backoff", p.backoff.is_some(), &[L::AutoRetry, L::Retry])?;
        applies("fallback", p.fallback.is_some(), &[L::Fallback])?;
        applies(
            "rollback_to",
            p.rollback_to.is_some(),
            &[L::Rollback, L::RollbackAndInspect],
        )?;
        let mut r = retry.clone();
        if let Some(n) = p.max_retries {
            r.max_attempts = n.saturating_add(1);
        }
        if let Some(b) = p.backoff {
            r.backoff = b;
        }
        let notify = NotifyAction {
            channels: p.notify.clone(),
        };
        let rollback = RollbackAction {
            to: p
                .rollback_to
                .clone()
                .unwrap_or_else(|| "last_consistent".into()),
            max_times: 1,
        };
        let mut actions = Vec::new();
        if p.suggested_fix.is_some() || p.auto_fix == Some(true) {
            actions.push(Action::SuggestFix(SuggestFixAction {
                fix: p.suggested_fix.clone(),
                auto_apply: p.auto_fix.unwrap_or(false),
            }));
        }
        match p.action {
            L::PauseAndNotify => {
                actions.push(Action::Notify(notify));
                actions.push(Action::Pause(PauseAction::default()));
            }
            L::AutoRetry | L::Retry => {
                actions.push(Action::Retry(r));
                if !p.notify.is_empty() {
                    actions.push(Action::Escalate(notify));
                }
            }
            L::RollbackAndInspect => {
                actions.push(Action::Inspect);
                if !p.notify.is_empty() {
                    actions.push(Action::Notify(notify));
                }
                actions.push(Action::Rollback(rollback));
            }
            L::Rollback => {
                if !p.notify.is_empty() {
                    actions.push(Action::Notify(notify));
                }
                actions.push(Action::Rollback(rollback));
            }
            L::Pause => {
                if !p.notify.is_empty() {
                    actions.push(Action::Notify(notify));
                }
                actions.push(Action::Pause(PauseAction::default()));
            }
            L::Notify => actions.push(Action::Notify(notify)),
            L::Escalate => actions.push(Action::Escalate(notify)),
            L::Fallback => {
                let Some(function) = p.fallback.clone() else {
                    let path = ["policies".to_string(), i.to_string(), "action".to_string()];
                    let path: Vec<&str> = path.iter().map(String::as_str).collect();
                    return Err(at(
                        &path,
                        "action fallback needs `fallback: <registered function name>`".into(),
                    ));
                };
                actions.push(Action::Fallback(FallbackAction { function }));
            }
            L::Fail => actions.push(Action::Fail),
        }
        rules.push(Rule {
            name: Some(format!("policies[{i}]")),
            trigger: p.trigger,
            when: p.when,
            actions,
        });
    }

    if let Some(rec) = doc.recovery {
        let sections = [
            (
                "on_hallucination",
                Trigger::HallucinationDetected,
                rec.on_hallucination,
            ),
            ("on_timeout", Trigger::TimeoutError, rec.on_timeout),
            (
                "on_consensus_failure",
                Trigger::ConsensusViolation,
                rec.on_consensus_failure,
            ),
            ("on_rate_limit", Trigger::RateLimitError, rec.on_rate_limit),
            ("on_llm_error", Trigger::LlmError, rec.on_llm_error),
            ("on_tool_error", Trigger::ToolError, rec.on_tool_error),
            ("on_tool_denied", Trigger::ToolDenied, rec.on_tool_denied),
            (
                "on_precondition_failure",
                Trigger::PreconditionFailed,
                rec.on_precondition_failure,
            ),
            (
                "on_postcondition_failure",
                Trigger::PostconditionFailed,
                rec.on_postcondition_failure,
            ),
            (
                "on_validation_failure",
                Trigger::ValidationError,
                rec.on_validation_failure,
            ),
            ("on_crash", Trigger::ProcessCrashed, rec.on_crash),
            ("on_error", Trigger::Error, rec.on_error),
        ];
        for (key, trigger, words) in sections {
            let Some(words) = words else { continue };
            if words.is_empty() {
                return Err(at(
                    &["recovery", key],
                    "expected at least one action".into(),
                ));
            }
            let actions = words
                .into_iter()
                .map(|w| match w {
                    Word::Retry => Action::Retry(retry.clone()),
                    Word::Rollback => Action::Rollback(RollbackAction::default()),
                    Word::Pause => Action::Pause(PauseAction::default()),
                    Word::Notify => Action::Notify(NotifyAction::default()),
                    Word::Escalate | Word::ThenEscalate => {
                        Action::Escalate(NotifyAction::default())
                    }
                    Word::SuggestFix => Action::SuggestFix(SuggestFixAction::default()),
                    Word::Inspect => Action::Inspect,
                    Word::Fail | Word::ThenFail => Action::Fail,
                })
                .collect();
            rules.push(Rule {
                name: Some(format!("recovery.{key}")),
                trigger,
                when: None,
                actions,
            });
        }
    }

    let policy = Policy {
        rules,
        defaults,
        classify: doc.classify,
        channels: doc.channels,
    };
    check(&policy, root)?;
    Ok(policy)
}

/// Checks what types alone cannot: ranges, CEL syntax, known channels.
fn check(p: &Policy, root: &Node) -> Result<(), Problem> {
    let fail = |path: Vec<String>, message: String| {
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let node = root.find(&parts).unwrap_or(root);
        Err(Problem {
            at: node.at,
            path: dotted(&parts),
            message,
            ..Problem::default()
        })
    };
    let check_retry = |r: &RetryAction, path: Vec<String>| -> Result<(), Problem> {
        if r.max_attempts == 0 {
            return fail(
                [path.clone(), vec!["max_attempts".into()]].concat(),
                "max_attempts must be at least 1 (the first attempt counts)".into(),
            );
        }
        if !(r.multiplier.is_finite() && r.multiplier > 0.0) {
            return fail(
                [path.clone(), vec!["multiplier".into()]].concat(),
                format!(
                    "multiplier must be a positive number, found {}",
                    r.multiplier
                ),
            );
        }
        if r.initial_delay > r.max_delay {
            return fail(
                path,
                format!(
                    "initial_delay {} is longer than max_delay {}",
                    r.initial_delay, r.max_delay
                ),
            );
        }
        Ok(())
    };
    if let Some(r) = &p.defaults.retry {
        check_retry(r, vec!["defaults".into(), "retry".into()])?;
    }
    for (i, rule) in p.rules.iter().enumerate() {
        let base = rule_path(rule, i);
        if rule.actions.is_empty() {
            return fail(
                [base, vec!["actions".into()]].concat(),
                "expected at least one action".into(),
            );
        }
        if let Some(w) = &rule.when {
            if let Err(e) = crate::expr::Condition::compile(w) {
                return fail([base.clone(), vec!["when".into()]].concat(), e.to_string());
            }
        }
        for (j, a) in rule.actions.iter().enumerate() {
            let apath = [base.clone(), vec!["actions".into(), j.to_string()]].concat();
            match a {
                Action::Retry(r) => check_retry(r, [apath, vec!["retry".into()]].concat())?,
                Action::Notify(n) | Action::Escalate(n) => {
                    for c in &n.channels {
                        if !p.channels.is_empty() && !p.channels.contains_key(c) {
                            let names: Vec<&str> = p.channels.keys().map(String::as_str).collect();
                            let mut e = Problem::choice(c, &names, "channel");
                            let node = root
                                .find(&apath.iter().map(String::as_str).collect::<Vec<_>>())
                                .unwrap_or(root);
                            e.at = node.at;
                            e.path = dotted(&apath.iter().map(String::as_str).collect::<Vec<_>>());
                            return Err(e);
                        }
                    }
                }
                Action::Fallback(f) if f.function.trim().is_empty() => {
                    return fail(
                        apath,
                        "fallback needs the name of a registered function".into(),
                    );
                }
                Action::Rollback(r) if r.max_times == 0 => {
                    return fail(apath, "max_times must be at least 1".into());
                }
                _ => {}
            }
        }
    }
    for (name, c) in &p.channels {
        if let Some(url) = &c.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return fail(
                    vec!["channels".into(), name.clone(), "webhook".into()],
                    format!("webhook must be an http:// or https:// URL, found {url:?}"),
                );
            }
        }
    }
    Ok(())
}

/// Where a rule is in the file (legacy rules keep the path of what they came from).
fn rule_path(rule: &Rule, i: usize) -> Vec<String> {
    match rule.name.as_deref() {
        Some(n) if n.starts_with("policies[") => {
            let idx = n.trim_start_matches("policies[").trim_end_matches(']');
            vec!["policies".into(), idx.into()]
        }
        Some(n) if n.starts_with("recovery.") => {
            vec!["recovery".into(), n["recovery.".len()..].into()]
        }
        _ => vec!["rules".into(), i.to_string()],
    }
}

pub(crate) fn dotted(path: &[&str]) -> String {
    let mut s = String::new();
    for p in path {
        if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() {
            s.push_str(&format!("[{p}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(p);
        }
    }
    s
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
