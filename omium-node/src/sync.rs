//! Remote sync of an embedded store (`omium.init({ remote })`, `omium.pull`, `omium.flush`,
//! `omium.syncStatus`, `omium.recover`): in the `cluster` feature only. An addon built without
//! it has no such methods; the TS layer then says the build has no cluster.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::prelude::*;
use serde_json::Value;

use crate::convert::{self, blocking, err, record};
use crate::store::Store;

#[napi]
impl Store {
    /// Starts pushing this store's executions to a cluster (`omium.init({ remote })`).
    #[napi]
    pub async fn attach_sync(&self, nodes: Vec<String>, durability: String) -> Result<()> {
        let store = self.local("remote sync")?;
        let config = omium_core::sync::SyncConfig {
            nodes,
            durability: omium_core::sync::RemoteDurability::parse(&durability).map_err(err)?,
            ..omium_core::sync::SyncConfig::default()
        };
        blocking(move || store.attach_sync(config).map(drop)).await
    }

    /// Fetches an execution from the cluster and takes it over; the execution.
    #[napi]
    pub async fn pull(&self, execution_id: String) -> Result<Value> {
        let s = self.local("remote sync")?.require_syncer().map_err(err)?;
        blocking(move || s.pull(&execution_id).map(|e| convert::execution(&e))).await
    }

    /// Waits (at most `timeout_ms`) until every change so far is in the cluster.
    #[napi]
    pub async fn sync_flush(&self, timeout_ms: f64) -> Result<()> {
        let s = self.local("remote sync")?.require_syncer().map_err(err)?;
        let t = std::time::Duration::from_secs_f64(timeout_ms.max(0.0) / 1000.0);
        blocking(move || s.flush(None, t)).await
    }

    /// What was pushed and pulled so far.
    #[napi]
    pub fn sync_report(&self) -> Result<Value> {
        let s = self.local("remote sync")?.require_syncer().map_err(err)?;
        Ok(record(&s.report()))
    }

    /// Pulls the executions another store left unfinished in the cluster and no longer holds.
    #[napi]
    pub async fn pull_abandoned(&self) -> Result<Value> {
        let s = self.local("remote sync")?.require_syncer().map_err(err)?;
        blocking(move || s.pull_abandoned().map(|r| record(&r))).await
    }
}
