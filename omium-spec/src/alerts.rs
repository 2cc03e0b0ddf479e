//! Alert rules: a YAML or JSON document of threshold rules over the execution analytics and
//! the channels they notify (Slack, PagerDuty Events API v2, email over SMTP, signed
//! webhooks), validated like policies: every problem names the file, line, column and path,
//! the bad value, the valid choices and the nearest of them.
//!
//! ```
//! let rules = omium_spec::alerts::parse(r#"
//! channels:
//!   ops:
//!     slack: {webhook: "https://hooks.example.com/T0/B0/x"}
//! rules:
//!   - name: checkout-failing
//!     metric: success_rate
//!     where: {workflow: checkout}
//!     window: 15m
//!     op: "<"
//!     threshold: 0.95
//!     for: 5m
//!     channels: [ops]
//! "#, Some("alerts.yaml")).unwrap();
//! assert_eq!(rules.rules[0].window.as_millis(), 900_000);
//!
//! let err = omium_spec::alerts::parse("rules:\n  - name: x\n    metric: sucess_rate\n    threshold: 1\n", None).unwrap_err();
//! assert_eq!((err.at.line, err.at.column), (3, 13));
//! assert_eq!(err.suggestion.as_deref(), Some("success_rate"));
//! ```

// A validation error is rich (file, line, column, value, choices); parsing rules is not hot.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::yaml::{self, Node};
use crate::policy::{did_you_mean, Dur, Problem};

/// The metrics a rule can watch: the analytics figures of its window (`omium metrics`).
/// Rates are fractions (0.95), latencies milliseconds, costs US dollars.
pub const METRICS: &[(&str, &str)] = &[
    ("started", "executions started in the window"),
    ("completed", "runs that completed"),
    ("failed", "runs that failed"),
    ("cancelled", "runs an operator cancelled"),
    (
        "success_rate",
        "completed ÷ (completed + failed + cancelled)",
    ),
    ("failure_rate", "failed ÷ (completed + failed + cancelled)"),
    (
        "execution_p50_ms",
        "median execution latency, creation to end",
    ),
    ("execution_p95_ms", "95th percentile execution latency"),
    ("execution_p99_ms", "99th percentile execution latency"),
    ("step_p50_ms", "median step latency"),
    ("step_p95_ms", "95th percentile step latency"),
    ("step_p99_ms", "99th percentile step latency"),
    (
        "failures",
        "failures detected (every type, or `where: failure_type`)",
    ),
    ("recovered", "failures recovered"),
    ("mttr_ms", "mean time from a failure to its recovery"),
    ("retries", "retries taken"),
    ("rollbacks", "rollbacks"),
    ("llm_cost_usd", "recorded LLM spend"),
    ("cost_per_execution_usd", "LLM spend ÷ executions started"),
    ("tokens", "tokens in and out"),
];

/// The filters a rule's `where` may name (the dimensions of the analytics).
pub const FILTERS: &[&str] = &["workflow", "tenant", "agent", "step", "failure_type"];
/// What a rule's `by` may name: one alert per value.
pub const GROUPS: &[&str] = &["workflow", "tenant", "agent", "step", "failure_type"];
pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];
pub const OPS: &[&str] = &[">", ">=", "<", "<=", "==", "!="];

/// The default time between two evaluations.
pub const DEFAULT_EVERY_MS: u64 = 30_000;
/// The longest window a rule may look at (analytics windows are minute-resolved for two days).
pub const MAX_WINDOW_MS: u64 = 24 * 3_600_000;

/// A comparison of a metric's value with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// How urgent an alert is (PagerDuty's four severities).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    #[default]
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One threshold rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the document; names the alert in every message.
    pub name: String,
    /// One of [`METRICS`].
    pub metric: String,
    /// Only executions (or steps, failures) with these dimension values count.
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
    /// One alert per value of these dimensions (empty: one alert for the whole rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<String>,
    /// The window the metric is computed over, ending now. Default 5m.
    #[serde(default = "default_window")]
    pub window: Dur,
    #[serde(default = "default_op")]
    pub op: Op,
    pub threshold: f64,
    /// How long the condition must hold before the alert fires (0: at once).
    #[serde(default, rename = "for")]
    pub for_: Dur,
    /// While firing, notify again this often (0: never again until it resolves).
    #[serde(default)]
    pub repeat: Dur,
    /// A rate is judged only over at least this many run endings in the window (default 1).
    #[serde(default = "one")]
    pub min_executions: u64,
    #[serde(default)]
    pub severity: Severity,
    /// Free labels sent with every notification (team, runbook, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A sentence for people; default: the rule restated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Names from the document's `channels`.
    #[serde(default)]
    pub channels: Vec<String>,
}

fn default_window() -> Dur {
    Dur::millis(5 * 60_000)
}
fn default_op() -> Op {
    Op::Gt
}
fn one() -> u64 {
    1
}

impl Rule {
    /// The rule restated for people: `success_rate < 0.95 over 15m (workflow=checkout)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} {} over {}",
            self.metric,
            self.op.as_str(),
            self.threshold,
            self.window
        );
        if !self.filter.is_empty() {
            let f: Vec<String> = self
                .filter
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!(" ({})", f.join(", ")));
        }
        s
    }

    /// Whether the metric is a rate over run endings (judged only with `min_executions`).
    pub fn is_rate(&self) -> bool {
        matches!(self.metric.as_str(), "success_rate" | "failure_rate")
    }
}

/// A Slack incoming webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    pub webhook: String,
}

/// PagerDuty Events API v2: trigger, acknowledge and resolve with a dedup key per alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyChannel {
    /// The integration's routing key, or the environment variable that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_env: Option<String>,
    /// The Events API endpoint; default PagerDuty's own.
    #[serde(default = "pagerduty_url")]
    pub url: String,
}

/// PagerDuty's Events API v2 endpoint.
pub fn pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

/// How an SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS; refused when the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a loopback server (a local relay).
    None,
}

/// Email over SMTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// `host:port` of the SMTP server (port default 587).
    pub smtp: String,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub from: String,
    pub to: Vec<String>,
    /// Environment variables holding the login, when the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// A PEM file of certificate authorities to trust besides the system's (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// A webhook receiving Omium's own alert JSON, signed with HMAC-SHA256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    pub url: String,
    /// The environment variable holding the signing key (default `OMIUM_WEBHOOK_SECRET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

/// One channel: exactly one of the kinds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDutyChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        if self.slack.is_some() {
            "slack"
        } else if self.pagerduty.is_some() {
            "pagerduty"
        } else if self.email.is_some() {
            "email"
        } else {
            "webhook"
        }
    }
}

/// An alert document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// How often the rules are evaluated (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate_every: Option<Dur>,
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Rules {
    pub fn every_ms(&self) -> u64 {
        self.evaluate_every
            .map_or(DEFAULT_EVERY_MS, |d| d.as_millis().max(100))
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// Parses and validates an alert document (YAML or JSON). `file` names the source in messages.
pub fn parse(text: &str, file: Option<&str>) -> Result<Rules, Problem> {
    let with_file = |mut p: Problem| {
        p.file = Some(file.unwrap_or("<alerts>").to_string());
        p
    };
    let root = yaml::parse(text).map_err(with_file)?;
    let rules = Rules::deserialize(yaml::De::new(&root)).map_err(with_file)?;
    check(&rules, &root).map_err(with_file)?;
    Ok(rules)
}

/// Reads and validates an alert file.
pub fn load(path: &std::path::Path) -> crate::Result<Rules> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::InvalidArgument {
        what: "alert rules file",
        detail: format!("cannot read {}: {e}", path.display()),
    })?;
    parse(&text, Some(&path.display().to_string())).map_err(|p| crate::Error::InvalidArgument {
        what: "alert rules",
        detail: p.to_string(),
    })
}

/// The checks serde cannot make: names, references, ranges, one kind per channel.
fn check(doc: &Rules, root: &Node) -> Result<(), Problem> {
    let at = |path: &[&str], message: String| {
        let node = root.find(path).unwrap_or(root);
        Problem {
            at: node.at,
            path: crate::policy::dotted(path),
            message,
            ..Problem::default()
        }
    };
    let key_at = |path: &[&str], key: &str, message: String| {
        // The location of a mapping key (the filter's name), not of its value.
        let node = root
            .find(path)
            .and_then(|m| match &m.kind {
                yaml::Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| matches!(&k.kind, yaml::Kind::Scalar(s, _) if s == key))
                    .map(|(k, _)| k),
                _ => None,
            })
            .unwrap_or(root);
        let mut p = path.to_vec();
        p.push(key);
        Problem {
            at: node.at,
            path: crate::policy::dotted(&p),
            message,
            ..Problem::default()
        }
    };
    let choice = |p: Problem, value: &str, choices: &[&str]| Problem {
        value: Some(value.to_string()),
        expected: choices.iter().map(|s| s.to_string()).collect(),
        suggestion: did_you_mean(value, choices),
        ..p
    };
    let metric_names: Vec<&str> = METRICS.iter().map(|(m, _)| *m).collect();
    let channel_names: Vec<&str> = doc.channels.keys().map(String::as_str).collect();

    for (name, ch) in &doc.channels {
        let path = ["channels", name.as_str()];
        let kinds = [
            ch.slack.is_some(),
            ch.pagerduty.is_some(),
            ch.email.is_some(),
            ch.webhook.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            return Err(at(
                &path,
                format!(
                    "a channel is exactly one of slack, pagerduty, email, webhook; this one has {kinds}"
                ),
            ));
        }
        let url = |u: &str, field: &[&str]| -> Result<(), Problem> {
            if u.starts_with("https://") || u.starts_with("http://") {
                Ok(())
            } else {
                let mut p = path.to_vec();
                p.extend_from_slice(field);
                Err(at(
                    &p,
                    format!("expected an http:// or https:// URL, found {u:?}"),
                ))
            }
        };
        if let Some(s) = &ch.slack {
            url(&s.webhook, &["slack", "webhook"])?;
        }
        if let Some(w) = &ch.webhook {
            url(&w.url, &["webhook", "url"])?;
        }
        if let Some(pd) = &ch.pagerduty {
            url(&pd.url, &["pagerduty", "url"])?;
            if pd.routing_key.is_some() == pd.routing_key_env.is_some() {
                return Err(at(
                    &["channels", name, "pagerduty"],
                    "give the integration's key as exactly one of routing_key or routing_key_env"
                        .into(),
                ));
            }
        }
        if let Some(e) = &ch.email {
            let p = |f: &'static str| ["channels", name.as_str(), "email", f];
            if e.smtp.trim().is_empty() || e.smtp.contains('/') {
                return Err(at(
                    &p("smtp"),
                    format!(
                        "expected host or host:port of an SMTP server, found {:?}",
                        e.smtp
                    ),
                ));
            }
            for (i, addr) in std::iter::once(&e.from).chain(&e.to).enumerate() {
                if !address(addr) {
                    let idx = (i - 1).to_string();
                    let path: Vec<&str> = if i == 0 {
                        p("from").to_vec()
                    } else {
                        vec!["channels", name, "email", "to", idx.as_str()]
                    };
                    return Err(at(
                        &path,
                        format!("expected an email address (name@domain), found {addr:?}"),
                    ));
                }
            }
            if e.to.is_empty() {
                return Err(at(&p("to"), "name at least one recipient".into()));
            }
        }
    }

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in doc.rules.iter().enumerate() {
        let idx = i.to_string();
        let p = |f: &'static str| -> Vec<&str> { vec!["rules", idx.as_str(), f] };
        if r.name.trim().is_empty() {
            return Err(at(&p("name"), "a rule needs a name".into()));
        }
        if let Some(first) = seen.insert(&r.name, i) {
            return Err(at(
                &p("name"),
                format!("rule name {:?} is already used by rules[{first}]", r.name),
            ));
        }
        if !metric_names.contains(&r.metric.as_str()) {
            return Err(choice(
                at(&p("metric"), format!("unknown metric {:?}", r.metric)),
                &r.metric,
                &metric_names,
            ));
        }
        for k in r.filter.keys() {
            if !FILTERS.contains(&k.as_str()) {
                return Err(choice(
                    key_at(&p("where"), k, format!("unknown filter {k:?}")),
                    k,
                    FILTERS,
                ));
            }
        }
        for (j, g) in r.by.iter().enumerate() {
            if !GROUPS.contains(&g.as_str()) {
                let j = j.to_string();
                return Err(choice(
                    at(&["rules", &idx, "by", &j], format!("unknown group {g:?}")),
                    g,
                    GROUPS,
                ));
            }
        }
        if !r.threshold.is_finite() {
            return Err(at(&p("threshold"), "expected a finite number".into()));
        }
        if r.is_rate() && !(0.0..=1.0).contains(&r.threshold) {
            return Err(at(
                &p("threshold"),
                format!(
                    "{} is a fraction between 0 and 1 (0.95 for 95%), found {}",
                    r.metric, r.threshold
                ),
            ));
        }
        let window = r.window.as_millis();
        if !(60_000..=MAX_WINDOW_MS).contains(&window) {
            return Err(at(
                &p("window"),
                format!(
                    "a window is 1m to 24h (analytics resolve to the minute), found {}",
                    r.window
                ),
            ));
        }
        if r.channels.is_empty() {
            return Err(at(
                &p("channels"),
                "a rule notifies at least one channel".into(),
            ));
        }
        for (j, c) in r.channels.iter().enumerate() {
            if !doc.channels.contains_key(c) {
                let j = j.to_string();
                let mut prob = choice(
                    at(
                        &["rules", &idx, "channels", &j],
                        format!("unknown channel {c:?}; channels are declared under `channels:`"),
                    ),
                    c,
                    &channel_names,
                );
                if channel_names.is_empty() {
                    prob.expected.clear();
                }
                return Err(prob);
            }
        }
    }
    Ok(())
}

/// A plausible address: one `@` with something on both sides and no spaces or brackets.
fn address(s: &str) -> bool {
    let mut parts = s.split('@');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(l), Some(d), None)
            if !l.is_empty()
                && d.contains('.')
                && !s.chars().any(|c| c.is_whitespace() || "<>,;\"\r\n".contains(c))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
evaluate_every: 10s
channels:
  ops-slack:
    slack: {webhook: "https://hooks.example.com/services/T0/B0/x"}
  pager:
    pagerduty: {routing_key_env: OMIUM_PD_KEY}
  mail:
    email:
      smtp: "smtp.example.com:587"
      from: omium@example.com
      to: [oncall@example.com]
  hook:
    webhook: {url: "https://hooks.example.com/omium"}
rules:
  - name: checkout-success
    metric: success_rate
    where: {workflow: checkout}
    by: [tenant]
    window: 15m
    op: "<"
    threshold: 0.95
    for: 5m
    repeat: 1h
    min_executions: 20
    severity: critical
    labels: {team: payments}
    channels: [ops-slack, pager, mail, hook]
"#;

    #[test]
    fn a_full_document_parses_with_defaults() {
        let r = parse(GOOD, Some("a.yaml")).unwrap();
        assert_eq!(r.every_ms(), 10_000);
        let rule = &r.rules[0];
        assert_eq!(rule.op, Op::Lt);
        assert_eq!(rule.for_.as_millis(), 300_000);
        assert_eq!(rule.severity, Severity::Critical);
        assert_eq!(r.channels["pager"].kind(), "pagerduty");
        assert_eq!(
            r.channels["pager"].pagerduty.as_ref().unwrap().url,
            pagerduty_url()
        );
        assert_eq!(
            r.channels["mail"].email.as_ref().unwrap().security,
            SmtpSecurity::Starttls
        );
        assert_eq!(
            rule.describe(),
            "success_rate < 0.95 over 15m (workflow=checkout)"
        );
        let minimal = parse(
            "channels: {h: {webhook: {url: 'http://127.0.0.1:9/'}}}\nrules: [{name: n, metric: failed, threshold: 0, channels: [h]}]",
            None,
        )
        .unwrap();
        assert_eq!(minimal.rules[0].window.as_millis(), 300_000);
        assert_eq!(minimal.rules[0].op, Op::Gt);
        assert_eq!(minimal.every_ms(), DEFAULT_EVERY_MS);
    }

    #[test]
    fn problems_name_line_column_value_and_choices() {
        let bad = |from: &str, to: &str| {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from}");
            parse(&text, Some("a.yaml")).unwrap_err()
        };
        let e = bad("metric: success_rate", "metric: sucess_rate");
        assert_eq!((e.at.line, e.at.column), (17, 13));
        assert_eq!(e.suggestion.as_deref(), Some("success_rate"));
        assert!(
            e.to_string()
                .starts_with("a.yaml:17:13: rules[0].metric: unknown metric"),
            "{e}"
        );

        let e = bad("channels: [ops-slack,", "channels: [ops-slak,");
        assert_eq!(e.suggestion.as_deref(), Some("ops-slack"));
        assert_eq!(e.path, "rules[0].channels[0]");

        let e = bad("{workflow: checkout}", "{workflw: checkout}");
        assert_eq!(e.path, "rules[0].where.workflw");
        assert_eq!(e.suggestion.as_deref(), Some("workflow"));
        assert_eq!((e.at.line, e.at.column), (18, 13));

        let e = bad("op: \"<\"", "op: \"=<\"");
        assert!(e.to_string().contains("valid: >, >=, <, <=, ==, !="), "{e}");

        let e = bad("threshold: 0.95", "threshold: 95");
        assert!(e.message.contains("fraction"), "{e}");

        let e = bad("window: 15m", "window: 30s");
        assert!(e.message.contains("1m to 24h"), "{e}");

        let e = bad("for: 5m", "for: 5 minutes");
        assert!(e.message.contains("unknown duration unit"), "{e}");
        assert_eq!(e.path, "rules[0].for");

        let e = bad(
            "routing_key_env: OMIUM_PD_KEY",
            "routing_key_env: K, routing_key: k",
        );
        assert!(e.message.contains("exactly one of routing_key"), "{e}");

        let e = bad("to: [oncall@example.com]", "to: [oncall]");
        assert_eq!(e.path, "channels.mail.email.to[0]");

        let e = bad("severity: critical", "severity: urgent");
        assert!(
            e.to_string()
                .contains("valid: critical, error, warning, info"),
            "{e}"
        );

        let e = bad("    slack: {webhook:", "    slak: {webhook:");
        assert_eq!(e.suggestion.as_deref(), Some("slack"));

        let e = bad(
            "  - name: checkout-success\n",
            "  - name: checkout-success\n    colour: red\n",
        );
        assert_eq!(e.value.as_deref(), Some("colour"));

        let twice = format!(
            "{GOOD}  - name: checkout-success\n    metric: failed\n    threshold: 1\n    channels: [hook]\n"
        );
        let e = parse(&twice, None).unwrap_err();
        assert!(e.message.contains("already used by rules[0]"), "{e}");
        assert!(e.to_string().starts_with("<alerts>:"), "{e}");
    }

    #[test]
    fn comparisons() {
        assert!(Op::Lt.holds(0.5, 0.95));
        assert!(!Op::Lt.holds(0.95, 0.95));
        assert!(Op::Ge.holds(3.0, 3.0));
        assert!(Op::Ne.holds(1.0, 2.0));
    }
}
