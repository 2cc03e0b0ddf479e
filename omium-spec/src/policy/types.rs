//! The canonical policy: ordered rules (a trigger, an optional CEL matcher, ordered actions),
//! defaults for steps, the exception-class classification, and notification channels. Every
//! accepted document maps to this; it serializes back to a document that parses to itself.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The kind of failure a rule reacts to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A step ran past its timeout.
    TimeoutError,
    /// A provider refused for rate (HTTP 429 and the like).
    RateLimitError,
    /// An LLM call failed (provider error, bad response).
    LlmError,
    /// A tool call failed.
    ToolError,
    /// A tool outside the allowlist was called.
    ToolDenied,
    /// A validator flagged the output as hallucinated.
    HallucinationDetected,
    /// Agents did not agree on a hand-off (timeout or split vote).
    ConsensusViolation,
    PreconditionFailed,
    PostconditionFailed,
    /// Output rejected by a validator for another reason.
    ValidationError,
    /// The process running the execution died (its lease expired).
    ProcessCrashed,
    /// Any other exception.
    Error,
    /// Every failure (a catch-all rule).
    Any,
}

impl Trigger {
    pub const ALL: [Trigger; 13] = [
        Trigger::TimeoutError,
        Trigger::RateLimitError,
        Trigger::LlmError,
        Trigger::ToolError,
        Trigger::ToolDenied,
        Trigger::HallucinationDetected,
        Trigger::ConsensusViolation,
        Trigger::PreconditionFailed,
        Trigger::PostconditionFailed,
        Trigger::ValidationError,
        Trigger::ProcessCrashed,
        Trigger::Error,
        Trigger::Any,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::TimeoutError => "timeout_error",
            Trigger::RateLimitError => "rate_limit_error",
            Trigger::LlmError => "llm_error",
            Trigger::ToolError => "tool_error",
            Trigger::ToolDenied => "tool_denied",
            Trigger::HallucinationDetected => "hallucination_detected",
            Trigger::ConsensusViolation => "consensus_violation",
            Trigger::PreconditionFailed => "precondition_failed",
            Trigger::PostconditionFailed => "postcondition_failed",
            Trigger::ValidationError => "validation_error",
            Trigger::ProcessCrashed => "process_crashed",
            Trigger::Error => "error",
            Trigger::Any => "any",
        }
    }

    /// Parses a failure type name; an unknown one is an error listing the valid names.
    pub fn parse(s: &str) -> crate::Result<Trigger> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
                let hint = super::yaml::did_you_mean(s, &names)
                    .map(|m| format!("did you mean {m:?}? "))
                    .unwrap_or_default();
                crate::Error::InvalidArgument {
                    what: "failure type",
                    detail: format!("{s:?} is not one; {hint}valid: {}", names.join(", ")),
                }
            })
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A duration written `250ms`, `30s`, `5m`, `1h` (or a number of seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub std::time::Duration);

impl Dur {
    pub fn millis(ms: u64) -> Dur {
        Dur(std::time::Duration::from_millis(ms))
    }

    pub fn parse(s: &str) -> Result<Dur, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| {
            format!("expected a duration such as 250ms, 30s, 5m or 1h, found {s:?}")
        })?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "" | "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            u => {
                return Err(format!(
                    "unknown duration unit {u:?} in {s:?} (valid: ms, s, m, h)"
                ))
            }
        };
        if !(secs.is_finite() && secs >= 0.0) || secs > 1e9 {
            return Err(format!("duration {s:?} is out of range"));
        }
        Ok(Dur(std::time::Duration::from_secs_f64(secs)))
    }

    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 3_600_000 == 0 && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 250ms, 30s, 5m or 1h")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                Dur::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Ok(Dur(std::time::Duration::from_secs(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                u64::try_from(n)
                    .map(|n| Dur(std::time::Duration::from_secs(n)))
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({n})")))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Dur::parse(&n.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: 250ms, 30s, 5m, 1h, or a number of seconds",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|h)?\\s*$"},
                {"type": "number", "minimum": 0}
            ]
        })
    }
}

/// A size in bytes written `512MB`, `2GB`, `1Gi`, `256KiB` (or a number of bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("expected a size such as 512MB, 2GB or 1Gi, found {s:?}"))?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" | "k" => 1e3,
            "mb" | "m" => 1e6,
            "gb" | "g" => 1e9,
            "tb" | "t" => 1e12,
            "ki" | "kib" => 1024.0,
            "mi" | "mib" => 1024.0 * 1024.0,
            "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "ti" | "tib" => 1024f64.powi(4),
            u => return Err(format!("unknown size unit {u:?} in {s:?} (valid: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, Ki, Mi, Gi, Ti)")),
        };
        let bytes = n * mult;
        if !(bytes.is_finite() && (0.0..1.8e19).contains(&bytes)) {
            return Err(format!("size {s:?} is out of range"));
        }
        Ok(Size(bytes as u64))
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 512MB, 2GB or 1Gi")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                Size::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n)
                    .map(Size)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({n})")))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: 512MB, 2GB, 1Gi, 256KiB, or a number of bytes",
            "anyOf": [
                {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([KMGT]i?B?|[kmgt]i?b?|B|b)?\\s*$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    #[default]
    Exponential,
    Linear,
    Fixed,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// A uniformly random delay between zero and the computed one ("full jitter").
    #[default]
    Full,
    None,
}

fn default_attempts() -> u32 {
    3
}
fn default_initial() -> Dur {
    Dur::millis(100)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max_delay() -> Dur {
    Dur::millis(30_000)
}
fn last_consistent() -> String {
    "last_consistent".into()
}
fn one() -> u32 {
    1
}

/// Run the failed step again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryAction {
    /// Attempts in all, the failed one included (3: the step runs at most three times).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff: BackoffKind,
    /// Delay before the first retry.
    #[serde(default = "default_initial")]
    pub initial_delay: Dur,
    /// Growth per retry: exponential multiplies by it, linear adds `initial_delay × multiplier`.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// No delay exceeds this.
    #[serde(default = "default_max_delay")]
    pub max_delay: Dur,
    #[serde(default)]
    pub jitter: Jitter,
}

impl Default for RetryAction {
    fn default() -> Self {
        RetryAction {
            max_attempts: default_attempts(),
            backoff: BackoffKind::Exponential,
            initial_delay: default_initial(),
            multiplier: default_multiplier(),
            max_delay: default_max_delay(),
            jitter: Jitter::Full,
        }
    }
}

impl RetryAction {
    /// The delay before retry number `retry` (1 for the first retry), before jitter.
    pub fn base_delay(&self, retry: u32) -> std::time::Duration {
        let initial = self.initial_delay.0.as_secs_f64();
        let n = retry.max(1) as f64;
        let secs = match self.backoff {
            BackoffKind::Exponential => initial * self.multiplier.powf(n - 1.0),
            BackoffKind::Linear => initial + initial * self.multiplier * (n - 1.0),
            BackoffKind::Fixed => initial,
        };
        let capped = secs.min(self.max_delay.0.as_secs_f64());
        std::time::Duration::from_secs_f64(if capped.is_finite() {
            capped.max(0.0)
        } else {
            0.0
        })
    }

    /// The delay before retry number `retry`, with jitter drawn from `unit` (a number in [0, 1)).
    pub fn delay(&self, retry: u32, unit: f64) -> std::time::Duration {
        let d = self.base_delay(retry);
        match self.jitter {
            Jitter::Full => d.mul_f64(unit.clamp(0.0, 1.0)),
            Jitter::None => d,
        }
    }
}

/// Roll the execution back, then run it again from there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackAction {
    /// `last_consistent` (the latest checkpoint whose checks passed and whose state verifies)
    /// or a checkpoint name.
    #[serde(default = "last_consistent")]
    pub to: String,
    /// How many rollbacks this rule may make for one execution before moving on.
    #[serde(default = "one")]
    pub max_times: u32,
}

impl Default for RollbackAction {
    fn default() -> Self {
        RollbackAction {
            to: last_consistent(),
            max_times: 1,
        }
    }
}

/// Stop and wait for a human: the execution becomes `paused` until resumed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Tell people: registered callbacks and the channels' webhooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyAction {
    /// Channel names; empty means every channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// Call a registered alternate function instead of the failed step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackAction {
    pub function: String,
}

/// Record a suggested fix; with `auto_apply`, run the registered fixer of that name and retry
/// the step once with what it returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestFixAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_apply: bool,
}

/// One thing to do about a failure. Written as a bare name (`- pause`) or as a mapping from
/// the name to its settings (`- retry: {max_attempts: 5}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Retry(RetryAction),
    Rollback(RollbackAction),
    Pause(PauseAction),
    Notify(NotifyAction),
    /// Notify, then fail the step with an escalation.
    Escalate(NotifyAction),
    Fallback(FallbackAction),
    SuggestFix(SuggestFixAction),
    /// Run the root-cause analysis and record what it says.
    Inspect,
    Fail,
}

impl Action {
    pub const NAMES: [&'static str; 9] = [
        "retry",
        "rollback",
        "pause",
        "notify",
        "escalate",
        "fallback",
        "suggest_fix",
        "inspect",
        "fail",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Action::Retry(_) => "retry",
            Action::Rollback(_) => "rollback",
            Action::Pause(_) => "pause",
            Action::Notify(_) => "notify",
            Action::Escalate(_) => "escalate",
            Action::Fallback(_) => "fallback",
            Action::SuggestFix(_) => "suggest_fix",
            Action::Inspect => "inspect",
            Action::Fail => "fail",
        }
    }
}

/// One rule: when a failure of `trigger` happens (and `when` holds), do `actions` in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for messages and history (default: where the rule came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub trigger: Trigger,
    /// A CEL expression over `failure` (`type`, `error_class`, `message`, `step`, `workflow`,
    /// `agent`, `attempt`) that must hold for the rule to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub actions: Vec<Action>,
}

/// Settings that apply to every step under the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Timeout of a step that sets none itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout: Option<Dur>,
    /// How long a consensus hand-off waits for acknowledgements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus_timeout: Option<Dur>,
    /// How long a rollback may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_timeout: Option<Dur>,
    /// The retry used by `retry` actions that give no settings of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_selection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxing: Option<Toggle>,
    /// Tools that may be called through Omium's tool wrapper; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_allowlist: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Toggle {
    Enabled,
    Disabled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"event": ..., "failure": {...}}`.
    #[default]
    Json,
    /// Slack's incoming-webhook body (`{"text": ...}`).
    Slack,
}

/// Where notifications to a channel go besides registered callbacks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// HTTP(S) URL that receives a POST with a JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default)]
    pub format: WebhookFormat,
}

/// The canonical form of a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub defaults: Defaults,
    /// Exception class (qualified or bare name) → failure type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classify: BTreeMap<String, Trigger>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, Channel>,
}

fn is_default(d: &Defaults) -> bool {
    *d == Defaults::default()
}
