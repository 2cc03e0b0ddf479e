//! Recovery policies: the documents, their canonical form and decision table come from
//! `omium-spec` (re-exported here); this module stores them as versions per (tenant, scope),
//! the most specific scope winning ([`Store::apply_policy`](crate::Store::apply_policy),
//! [`Store::effective_policy`](crate::Store::effective_policy)).

pub use omium_spec::policy::*;

pub mod versions;
pub use versions::PolicyVersion;
