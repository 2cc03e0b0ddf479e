//! The errors of the document layer. `omium_core::Error` converts each into its variant of the
//! same name, so codes and messages are the engine's.

/// What can go wrong reading a document or evaluating a condition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {what}: {detail}")]
    InvalidArgument { what: &'static str, detail: String },

    #[error("invalid policy: {0}")]
    Policy(Box<crate::policy::Problem>),

    #[error("condition {expression:?} does not parse: {detail}")]
    ConditionSyntax { expression: String, detail: String },

    #[error("condition {expression:?} could not be evaluated: {detail}")]
    ConditionEval { expression: String, detail: String },

    #[error("invalid workflow: {0}")]
    Workflow(Box<crate::workflow::SpecErrors>),
}

/// Result alias of the document layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
