//! Recovery policies: a typed document in YAML or JSON, validated with messages that name the
//! file, line, column, bad value and valid choices; mapped to one canonical form (ordered rules
//! of trigger + optional CEL matcher → ordered actions); compiled to a decision table; stored
//! as versions per (tenant, scope) with the most specific scope winning.
//!
//! ```
//! use omium_spec::policy::{self, Failure, Trigger};
//! let p = policy::parse(r#"
//! policies:
//!   - trigger: "timeout_error"
//!     action: "auto_retry"
//!     max_retries: 3
//!     backoff: exponential
//! "#, Some("ops.yaml")).unwrap();
//! let table = policy::Compiled::new(&p).unwrap();
//! let f = Failure::new(Trigger::TimeoutError);
//! assert_eq!(table.decide(&f).unwrap().unwrap().actions[0].name(), "retry");
//!
//! let err = policy::parse("policies:\n  - trigger: timeout_eror\n    action: auto_retry\n", Some("ops.yaml")).unwrap_err();
//! assert_eq!((err.at.line, err.at.column), (2, 14));
//! assert_eq!(err.suggestion.as_deref(), Some("timeout_error"));
//! ```

// A validation error is rich (file, line, column, value, choices) and serde needs it unboxed;
// parsing a policy is not a hot path.
#![allow(clippy::result_large_err)]

mod document;
mod scope;
mod types;
pub mod yaml;

use std::sync::Arc;

use serde::Deserialize;

pub(crate) use document::dotted;
pub use document::{
    Document, ExecutionConfig, LegacyAction, LegacyPolicy, RecoverySection, Retries, Timeouts, Word,
};
pub use scope::{Scope, VersionDiff};
pub use types::*;
pub use yaml::{did_you_mean, Location, Problem};

use crate::expr::Condition;

/// Parses and validates a policy document (YAML or JSON) into its canonical form. `file` names
/// the source in messages.
pub fn parse(text: &str, file: Option<&str>) -> Result<Policy, Problem> {
    let with_file = |mut p: Problem| {
        p.file = file.map(str::to_string);
        p
    };
    let root = yaml::parse(text).map_err(with_file)?;
    let doc = Document::deserialize(yaml::De::new(&root)).map_err(with_file)?;
    document::canonicalize(doc, &root).map_err(with_file)
}

/// Validates a policy embedded in another document (a workflow step's `policy:`): `node` is
/// where it sits, so problems name their line and column in that document.
pub(crate) fn parse_node(node: &yaml::Node) -> Result<Policy, Problem> {
    let doc = Document::deserialize(yaml::De::new(node))?;
    document::canonicalize(doc, node)
}

/// The canonical policy as pretty JSON (also a valid policy document).
pub fn to_json(p: &Policy) -> String {
    serde_json::to_string_pretty(p).expect("policies serialize")
}

/// The JSON Schema of policy documents, generated from the types, for editors.
pub fn json_schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Document)).expect("schema serializes");
    // An action may also be written as its bare name (`- pause`): say so to editors.
    if let Some(action) = schema.pointer_mut("/$defs/Action") {
        let object_form = action.take();
        *action = serde_json::json!({
            "description": object_form.get("description").cloned().unwrap_or_default(),
            "anyOf": [{"type": "string", "enum": Action::NAMES}, object_form],
        });
    }
    schema
}

/// What the policy sees of a failure.
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: Trigger,
    pub error_class: String,
    pub message: String,
    pub step: String,
    pub workflow: String,
    pub agent: String,
    /// 1 for the first failure of this step in this recovery.
    pub attempt: u32,
}

impl Failure {
    pub fn new(kind: Trigger) -> Failure {
        Failure {
            kind,
            error_class: String::new(),
            message: String::new(),
            step: String::new(),
            workflow: String::new(),
            agent: String::new(),
            attempt: 1,
        }
    }

    /// `failure` for matchers, built straight in CEL's value model, with only the fields the
    /// policy's matchers mention (each field costs a conversion inside CEL).
    fn cel_vars(&self, fields: u8) -> [(&'static str, cel::Value); 1] {
        let s = |v: &str| cel::Value::String(Arc::new(v.to_string()));
        let mut map = std::collections::HashMap::new();
        for (i, name) in FAILURE_FIELDS.iter().enumerate() {
            if fields & (1 << i) == 0 {
                continue;
            }
            let v = match i {
                0 => s(self.kind.as_str()),
                1 => s(&self.error_class),
                2 => s(&self.message),
                3 => s(&self.step),
                4 => s(&self.workflow),
                5 => s(&self.agent),
                _ => cel::Value::Int(i64::from(self.attempt)),
            };
            map.insert(*name, v);
        }
        [("failure", map.into())]
    }
}

/// The fields of `failure` a matcher can read, in the order of [`Failure::cel_vars`]' mask.
const FAILURE_FIELDS: [&str; 7] = [
    "type",
    "error_class",
    "message",
    "step",
    "workflow",
    "agent",
    "attempt",
];

/// Which fields a matcher mentions (all of them when it uses `failure` otherwise).
fn fields_of(source: &str) -> u8 {
    let mut mask = 0u8;
    for (i, f) in FAILURE_FIELDS.iter().enumerate() {
        if source.contains(f) {
            mask |= 1 << i;
        }
    }
    if mask == 0 {
        0x7f
    } else {
        mask
    }
}

/// A policy compiled to a decision table: for each failure type, the rules that can apply, in
/// order, with their matchers compiled once.
#[derive(Clone)]
pub struct Compiled {
    policy: Arc<Policy>,
    table: Vec<Vec<(usize, Option<Arc<Condition>>)>>,
    /// The `failure` fields any matcher reads.
    fields: u8,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("rules", &self.policy.rules.len())
            .finish()
    }
}

impl Compiled {
    pub fn new(policy: &Policy) -> crate::Result<Compiled> {
        let mut matchers = Vec::with_capacity(policy.rules.len());
        let mut fields = 0;
        for r in &policy.rules {
            matchers.push(match &r.when {
                Some(w) => {
                    fields |= fields_of(w);
                    Some(Arc::new(Condition::compile(w)?))
                }
                None => None,
            });
        }
        let table = Trigger::ALL
            .iter()
            .map(|t| {
                policy
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.trigger == *t || r.trigger == Trigger::Any)
                    .map(|(i, _)| (i, matchers[i].clone()))
                    .collect()
            })
            .collect();
        Ok(Compiled {
            policy: Arc::new(policy.clone()),
            table,
            fields,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The first rule that applies to `f`, if any. Rules without `when` cost a table lookup;
    /// a matcher is evaluated only when the rules before it did not apply.
    pub fn decide(&self, f: &Failure) -> crate::Result<Option<&Rule>> {
        let mut vars = None;
        for (i, m) in &self.table[f.kind.index()] {
            let applies = match m {
                None => true,
                Some(c) => c.evaluate_cel(vars.get_or_insert_with(|| f.cel_vars(self.fields)))?,
            };
            if applies {
                return Ok(Some(&self.policy.rules[*i]));
            }
        }
        Ok(None)
    }
}

/// The policies in force for one step: the most specific scope first.
#[derive(Clone, Debug, Default)]
pub struct Effective {
    /// (scope, version, compiled policy), most specific first.
    pub layers: Vec<(Scope, u32, Compiled)>,
}

impl Effective {
    /// The first applicable rule, looking at the most specific scope first, with its scope.
    pub fn decide(&self, f: &Failure) -> crate::Result<Option<(&Scope, &Rule)>> {
        for (scope, _, c) in &self.layers {
            if let Some(r) = c.decide(f)? {
                return Ok(Some((scope, r)));
            }
        }
        Ok(None)
    }

    /// Defaults merged field by field, the most specific scope winning.
    pub fn defaults(&self) -> Defaults {
        let mut d = Defaults::default();
        for (_, _, c) in self.layers.iter().rev() {
            let s = &c.policy().defaults;
            macro_rules! take {
                ($($f:ident),*) => {$( if s.$f.is_some() { d.$f = s.$f.clone(); } )*};
            }
            take!(
                step_timeout,
                consensus_timeout,
                rollback_timeout,
                retry,
                memory_limit,
                model_selection,
                sandboxing,
                tool_allowlist
            );
        }
        d
    }

    /// Exception class → failure type, the most specific scope winning.
    pub fn classify(&self, class: &str) -> Option<Trigger> {
        self.layers
            .iter()
            .find_map(|(_, _, c)| c.policy().classify.get(class).copied())
    }

    /// The channel definition of `name`, the most specific scope winning.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.layers
            .iter()
            .find_map(|(_, _, c)| c.policy().channels.get(name))
    }

    /// Every channel name defined in any layer.
    pub fn channel_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .layers
            .iter()
            .flat_map(|(_, _, c)| c.policy().channels.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
