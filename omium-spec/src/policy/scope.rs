//! Where a policy applies, and how two versions of one differ.

use std::fmt;

use crate::error::{Error, Result};

/// Where a policy applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Workflow(String),
    /// A step of any workflow, by name.
    Step(String),
    /// One step of one workflow.
    WorkflowStep(String, String),
}

impl Scope {
    /// Parses `global`, `workflow:<name>`, `step:<name>` or `step:<workflow>/<name>`.
    pub fn parse(s: &str) -> Result<Scope> {
        let bad = |detail: String| Error::InvalidArgument {
            what: "policy scope",
            detail,
        };
        let nonempty = |v: &str, what: &str| {
            if v.is_empty() || v.contains('\0') {
                Err(bad(format!("{s:?} has an empty or invalid {what}")))
            } else {
                Ok(v.to_string())
            }
        };
        if s == "global" {
            return Ok(Scope::Global);
        }
        if let Some(w) = s.strip_prefix("workflow:") {
            return Ok(Scope::Workflow(nonempty(w, "workflow name")?));
        }
        if let Some(rest) = s.strip_prefix("step:") {
            return Ok(match rest.split_once('/') {
                Some((w, st)) => {
                    Scope::WorkflowStep(nonempty(w, "workflow name")?, nonempty(st, "step name")?)
                }
                None => Scope::Step(nonempty(rest, "step name")?),
            });
        }
        let hint = super::did_you_mean(
            s.split(':').next().unwrap_or(s),
            &["global", "workflow", "step"],
        )
        .map(|m| format!(" (did you mean {m:?}?)"))
        .unwrap_or_default();
        Err(bad(format!(
            "{s:?} is not one{hint}; expected global, workflow:<name>, step:<name> or step:<workflow>/<name>"
        )))
    }

    /// The scopes that apply to a step, most specific first.
    pub fn chain(workflow: Option<&str>, step: Option<&str>) -> Vec<Scope> {
        let mut v = Vec::with_capacity(4);
        if let (Some(w), Some(s)) = (workflow, step) {
            v.push(Scope::WorkflowStep(w.into(), s.into()));
        }
        if let Some(s) = step {
            v.push(Scope::Step(s.into()));
        }
        if let Some(w) = workflow {
            v.push(Scope::Workflow(w.into()));
        }
        v.push(Scope::Global);
        v
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Workflow(w) => write!(f, "workflow:{w}"),
            Scope::Step(s) => write!(f, "step:{s}"),
            Scope::WorkflowStep(w, s) => write!(f, "step:{w}/{s}"),
        }
    }
}

/// Two versions compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionDiff {
    pub from: String,
    pub to: String,
    /// A unified diff of the canonical forms; empty when they are equal.
    pub unified: String,
}

impl VersionDiff {
    /// Diffs two canonical JSON texts, labelled `from` and `to`.
    pub fn of(from: &str, a: &str, to: &str, b: &str) -> VersionDiff {
        let unified = if a == b {
            String::new()
        } else {
            similar::TextDiff::from_lines(a, b)
                .unified_diff()
                .context_radius(3)
                .header(from, to)
                .to_string()
        };
        VersionDiff {
            from: from.into(),
            to: to.into(),
            unified,
        }
    }
}
