//! # omium-engine
//!
//! The engine of Omium, above its storage: recovery policies stored as versions and the
//! recovery driver every binding runs ([`policy`], [`recovery`]), spans, OTLP export,
//! recorded LLM and tool calls and their replay ([`trace`]), the durable workflow executor
//! ([`workflow`]), the JSON views of records that every binding and the HTTP API share
//! ([`json`]), and the client of `omium serve` with the handle that makes a daemon and an
//! embedded store one API ([`serve`]).
//!
//! It attaches to a store through storage's extensions and adds its operations to `Store`
//! as extension traits ([`PolicyStore`], [`RecoveryStore`], [`TraceStore`]). Most users
//! depend on `omium-core`, which re-exports it.

// Storage's modules and types under the paths this crate has always used (`crate::store`, ...).
#[allow(unused_imports)]
use omium_storage::*;
use recovery::{FailureInput, Recovery};

pub mod alerts;
pub mod analytics;
pub mod events;
pub mod expr;
pub mod json;
pub mod keys;
pub mod otlp_metrics;
pub mod policy;
pub mod prometheus;
pub mod recovery;
pub mod report;
pub mod serve;
pub mod trace;
pub mod workflow;

pub use analytics::AnalyticsStore;
pub use events::EventStore;
pub use policy::versions::PolicyStore;
pub use recovery::RecoveryStore;
pub use trace::TraceStore;

/// The extension traits of this crate, to `use` with a glob.
pub mod prelude {
    pub use crate::{AnalyticsStore, EventStore, PolicyStore, RecoveryStore, TraceStore};
}

/// reqwest is built with rustls and no default crypto provider (aws-lc-rs would add a C
/// build): every HTTP client is made after this installs ring, which ureq already uses.
#[doc(hidden)]
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
