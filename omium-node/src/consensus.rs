//! `Coordinator`: multi-agent consensus for JS (the core's coordinator: the store's embedded Raft
//! group, or a client of a cluster of `omium node`s). Every call runs off the JS thread.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::consensus::{
    status_json, BroadcastRequest, Coordinator as Core, CoordinatorConfig,
};
use serde_json::Value;

use crate::convert::{blocking, camel_keeping, coded};
use crate::store::Store;

/// A consensus record with camelCase keys; messages and votes are the agents' data.
fn camel(v: Value) -> Value {
    camel_keeping(v, &["message", "vote", "value"])
}

#[napi]
pub struct Coordinator {
    inner: Arc<RwLock<Option<Core>>>,
}

impl Coordinator {
    fn get(&self) -> Result<Core> {
        let guard = self
            .inner
            .read()
            .map_err(|_| coded("internal", "omium coordinator lock poisoned by a panic"))?;
        guard.clone().ok_or_else(|| {
            coded(
                "store_closed",
                "the consensus coordinator is closed; call omium.init() (or omium.consensus.connect()) again",
            )
        })
    }
}

#[napi(object)]
pub struct BroadcastOptions {
    /// A JSON Schema the message must match.
    pub schema: Option<Value>,
    /// Acknowledgements (or equal votes) needed; default a majority of the targets.
    pub quorum: Option<u32>,
}

/// The embedded Raft group of `store`, or a client of the cluster at `nodes` (violations are
/// then recorded in `store` when one is given).
#[napi]
pub async fn open_coordinator(
    store: Option<&Store>,
    nodes: Option<Vec<String>>,
) -> Result<Coordinator> {
    let store = store.map(|s| s.local("omium.consensus")).transpose()?;
    let config = match nodes {
        Some(nodes) => CoordinatorConfig::Cluster { nodes },
        None => CoordinatorConfig::Embedded,
    };
    let core = blocking(move || Core::open(store.as_ref(), config)).await?;
    Ok(Coordinator {
        inner: Arc::new(RwLock::new(Some(core))),
    })
}

#[napi]
impl Coordinator {
    /// Stops the embedded Raft group (or drops the cluster client).
    #[napi]
    pub async fn close(&self) -> Result<()> {
        let taken = self
            .inner
            .write()
            .map_err(|_| coded("internal", "omium coordinator lock poisoned by a panic"))?
            .take();
        blocking(move || {
            drop(taken);
            Ok(())
        })
        .await
    }

    #[napi(getter)]
    pub fn embedded(&self) -> Result<bool> {
        Ok(self.get()?.is_embedded())
    }

    /// Appends a message to the execution's log: `{ id, executionId, seq, index }`.
    #[napi]
    pub async fn broadcast(
        &self,
        execution_id: String,
        sender: String,
        targets: Vec<String>,
        message: Value,
        options: Option<BroadcastOptions>,
    ) -> Result<Value> {
        let c = self.get()?;
        let (schema, quorum) = options.map_or((None, None), |o| (o.schema, o.quorum));
        let req = BroadcastRequest {
            execution_id,
            sender,
            targets,
            message,
            schema,
            quorum,
            id: None,
        };
        blocking(move || {
            c.broadcast(&req)
                .map(|b| camel(serde_json::to_value(&b).expect("records serialize")))
        })
        .await
    }

    /// Records an agent's acknowledgement, or its vote; the message's status.
    #[napi]
    pub async fn acknowledge(
        &self,
        message_id: String,
        agent: String,
        vote: Option<Value>,
    ) -> Result<Value> {
        let c = self.get()?;
        blocking(move || {
            c.acknowledge(&message_id, &agent, vote)
                .map(|s| camel(status_json(&s)))
        })
        .await
    }

    /// Waits (at most `timeoutMs`) until the message is agreed; `consensus_violation` (recorded
    /// as a failure when `record`) on a timeout or a split vote.
    #[napi]
    pub async fn await_agreement(
        &self,
        message_id: String,
        timeout_ms: f64,
        record: bool,
    ) -> Result<Value> {
        if !(timeout_ms.is_finite() && timeout_ms >= 0.0) {
            return Err(coded(
                "invalid_argument",
                format!("awaitAgreement(timeoutMs: {timeout_ms}): expected a number of milliseconds >= 0"),
            ));
        }
        let c = self.get()?;
        blocking(move || {
            c.await_agreement_with(
                &message_id,
                Duration::from_secs_f64(timeout_ms / 1000.0),
                record,
            )
            .map(|m| camel(m.to_json()))
        })
        .await
    }

    /// The messages of an execution in their agreed order.
    #[napi]
    pub async fn status(&self, execution_id: String) -> Result<Value> {
        let c = self.get()?;
        blocking(move || {
            c.status(&execution_id)
                .map(|list| camel(Value::Array(list.iter().map(|m| m.to_json()).collect())))
        })
        .await
    }

    /// One message, with its acknowledgements and status.
    #[napi]
    pub async fn message(&self, message_id: String) -> Result<Value> {
        let c = self.get()?;
        blocking(move || c.message(&message_id).map(|m| camel(m.to_json()))).await
    }
}
