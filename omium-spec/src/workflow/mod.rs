//! Workflow documents: a YAML or JSON document says which agent runs when, what data flows
//! between them, where the checkpoints are and which hand-offs need agreement.
//!
//! - [`spec`]: the document and its validation ([`parse`]): cycles, unknown agents, inputs
//!   nobody produces, duplicate steps and bad references, each naming line and column;
//! - [`plan`]: levels and the order of execution ([`Plan`]);
//! - [`templates`]: the workflows shipped with Omium (KYC, credit scoring, offer generation).
//!
//! `omium_core::workflow` re-exports all of it next to the executor that runs a spec.

pub mod plan;
pub mod spec;

pub use plan::{Plan, PlanStep};
pub use spec::{parse, Spec, SpecErrors, Step};

use crate::error::{Error, Result};

/// Reads and validates a workflow file (problems name the file).
pub fn load(path: &std::path::Path) -> Result<Spec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument {
        what: "workflow file",
        detail: format!("cannot read {}: {e}", path.display()),
    })?;
    parse(&text, Some(&path.display().to_string())).map_err(|e| Error::Workflow(Box::new(e)))
}

/// The workflows shipped with Omium, to clone and edit.
pub mod templates {
    /// A template: its name, what it does, and its YAML.
    #[derive(Clone, Copy, Debug)]
    pub struct Template {
        pub name: &'static str,
        pub description: &'static str,
        pub text: &'static str,
    }

    pub const ALL: &[Template] = &[
        Template {
            name: "kyc",
            description: "identity document check and sanctions screening in parallel, a decision, a manual review when not verified",
            text: include_str!("templates/kyc.yaml"),
        },
        Template {
            name: "credit_scoring",
            description: "bureau report and affordability in parallel, then a score and a risk band",
            text: include_str!("templates/credit_scoring.yaml"),
        },
        Template {
            name: "offer_generation",
            description: "price an offer, check it against lending policy, draft the letter when approved",
            text: include_str!("templates/offer_generation.yaml"),
        },
    ];

    /// The template with this name (`kyc`, `credit_scoring`, `offer_generation`).
    pub fn get(name: &str) -> crate::Result<&'static Template> {
        let names: Vec<&str> = ALL.iter().map(|t| t.name).collect();
        ALL.iter()
            .find(|t| t.name == name || t.name.replace('_', "-") == name)
            .ok_or_else(|| crate::Error::InvalidArgument {
                what: "workflow template",
                detail: format!(
                    "no template named {name:?}; {}templates: {}",
                    crate::policy::did_you_mean(name, &names)
                        .map(|s| format!("did you mean {s:?}? "))
                        .unwrap_or_default(),
                    names.join(", ")
                ),
            })
    }
}
