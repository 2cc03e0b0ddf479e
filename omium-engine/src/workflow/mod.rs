//! Workflows: a YAML or JSON document says which agent runs when, what data flows between
//! them, where the checkpoints are and which hand-offs need agreement; the executor runs it
//! durably, in parallel where the DAG allows.
//!
//! - [`spec`], [`plan`], [`templates`] (from `omium-spec`): the document and its validation
//!   ([`parse`]), levels and the order of execution ([`Plan`]), the shipped workflows;
//! - [`executor`]: the durable parallel executor ([`run`]), recovery through the policies, the
//!   [`Agreement`] hook of `consensus_required` steps;
//! - [`agreement`]: the default agreement, through the consensus coordinator
//!   ([`ConsensusAgreement`]);
//! - [`agents`]: the [`Agent`] trait, shell `command:` agents and container `image:` agents;
//!
//! ```
//! use omium_engine::workflow;
//! let spec = workflow::parse(r#"
//! name: onboarding
//! agents:
//!   - id: kyc_agent
//!   - id: credit_agent
//! flow:
//!   - step: 1
//!     agent: kyc_agent
//!     inputs: [customer_data]
//!     outputs: [kyc_score]
//!   - step: 2
//!     agent: credit_agent
//!     inputs: [kyc_score]
//!     outputs: [credit_score]
//!     depends_on: [^1]
//! "#, Some("onboarding.yaml")).unwrap();
//! assert_eq!(spec.inputs, ["customer_data"]);
//! assert_eq!(workflow::Plan::of(&spec).levels, [vec!["1"], vec!["2"]]);
//!
//! let err = workflow::parse("name: w\nagents: [{id: a}]\nflow:\n  - step: 1\n    agent: b\n", None).unwrap_err();
//! assert_eq!((err.problems[0].at.line, err.problems[0].at.column), (5, 12));
//! ```

pub mod agents;

pub mod executor;

pub use agents::{container_runtime, Agent, AgentCall, AgentError, ShellAgent};

pub use executor::{
    run, step_retry, Agreement, AgreementRequest, Hooks, Report, RunOptions, StepReport,
};
pub use omium_spec::workflow::{
    load, parse, plan, spec, templates, Plan, PlanStep, Spec, SpecErrors, Step,
};
