//! # omium-cluster
//!
//! Omium beyond one process: multi-agent consensus on openraft ([`consensus`]: the Raft log
//! and state machine in the store, the embedded coordinator, `omium node`), syncing a store's
//! executions to a cluster of nodes with leases and fencing ([`sync`]), the `omium serve`
//! daemon ([`serve`]), and the consensus agreement of workflow hand-offs ([`agreement`],
//! [`workflow::run`]).
//!
//! It attaches to a store through storage's extensions (the consensus group, the syncer) and
//! adds its operations as the extension trait [`SyncStore`]. Most users depend on
//! `omium-core`, which re-exports it.

// The lower layers under the paths this crate has always used (`crate::store`, ...).
#[allow(unused_imports)]
use omium_engine::{install_tls_provider, json, policy, recovery, trace};
#[allow(unused_imports)]
use omium_storage::*;

pub mod agreement;
pub mod authz;
mod browser;
pub mod consensus;
mod feed;
pub mod listen;
pub mod serve;
pub mod sync;
pub mod tls;
pub mod ui;

pub use sync::remote::SyncStore;

/// The extension traits of this crate, to `use` with a glob.
pub mod prelude {
    pub use crate::SyncStore;
}

/// Workflows with the store's consensus group as the default agreement of their
/// `consensus_required` steps.
pub mod workflow {
    use std::sync::Arc;

    use omium_engine::workflow::{Report, RunOptions, Spec};

    use crate::agreement::ConsensusAgreement;
    use crate::error::{Error, Result};
    use crate::Store;

    /// Runs (or resumes) a workflow as `omium_engine::workflow::run` does; a workflow with
    /// `consensus_required` steps and no [`RunOptions::agreement`] agrees through the store's
    /// embedded consensus group (shared with the bindings' `omium.consensus` when they run it),
    /// started only for a workflow that needs it.
    pub fn run(store: &Store, spec: &Spec, mut options: RunOptions) -> Result<Report> {
        let consensus = omium_engine::workflow::executor::consensus_steps(spec);
        if !consensus.is_empty() && options.agreement.is_none() {
            let coordinator = crate::consensus::Coordinator::embedded(store).map_err(|e| {
                Error::ConsensusUnavailable {
                    detail: format!(
                        "workflow {:?} has consensus_required steps ({}) and the store's \
                         consensus group cannot start: {e}",
                        spec.name,
                        consensus.join(", ")
                    ),
                }
            })?;
            options.agreement = Some(Arc::new(ConsensusAgreement::new(coordinator)));
        }
        omium_engine::workflow::run(store, spec, options)
    }
}
