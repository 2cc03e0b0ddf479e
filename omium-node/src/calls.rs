//! Recorded LLM and tool calls for JS: the core's canonical request and hash, its replay of a
//! recording, and the fork at a position (`omium_core::trace::calls`).

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::trace::calls;
use serde_json::{json, Map, Value};

use crate::convert::{self, blocking, err};
use crate::store::Store;

/// `{ request, hash }`: the canonical request of a call and its hash.
#[napi]
pub fn canonical_request(
    kind: String,
    name: String,
    provider: String,
    model: String,
    args: Vec<Value>,
    params: Map<String, Value>,
) -> Result<Value> {
    let (request, hash) =
        calls::canonical_request(&kind, &name, &provider, &model, args, params).map_err(err)?;
    Ok(json!({ "request": request, "hash": hash }))
}

/// `"chat gpt-4o"` / `"execute_tool search"`: the span name (and, after `llm:`/`tool:`, the step name).
#[napi]
pub fn call_span_name(kind: String, name: String, model: String, operation: String) -> String {
    calls::span_name(&kind, &name, &model, &operation)
}

/// A recorded call that answers a replayed one.
#[napi(object)]
pub struct Answer {
    /// The step name (`llm:chat gpt-4o`).
    pub name: String,
    pub metadata: std::collections::HashMap<String, String>,
    pub state: Buffer,
}

/// The recorded calls of an execution, answering a replayed run's calls in order.
#[napi]
pub struct Replay {
    inner: std::sync::Mutex<calls::Replay>,
}

#[napi]
impl Replay {
    /// The recorded call answering a request with this hash (its state holds `{ request,
    /// response }` in the recording's codec); a `replay_divergence` error when the request
    /// differs or the recording has no further call.
    #[napi]
    pub fn answer(&self, request: Value, hash: String) -> Result<Answer> {
        let mut r = self.lock()?;
        let rec = r.answer(&request, &hash).map_err(err)?;
        Ok(Answer {
            name: rec.name.clone(),
            metadata: rec.checkpoint.metadata.clone().into_iter().collect(),
            state: rec.state.clone().into(),
        })
    }

    /// Fails with `replay_divergence` when the run ended before making every recorded call.
    #[napi]
    pub fn finish(&self) -> Result<()> {
        self.lock()?.finish().map_err(err)
    }
}

impl Replay {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, calls::Replay>> {
        self.inner
            .lock()
            .map_err(|_| convert::coded("internal", "replay lock poisoned by a panic"))
    }
}

#[napi]
impl Store {
    /// A replay of an execution's recorded calls (their states read now).
    #[napi]
    pub async fn open_replay(&self, execution_id: String) -> Result<Replay> {
        let s = self.handle()?;
        let inner = blocking(move || s.open_replay(&execution_id)).await?;
        Ok(Replay {
            inner: std::sync::Mutex::new(inner),
        })
    }

    /// Forks before a top-level position (1 is the first step) into `newExecutionId`.
    #[napi]
    pub async fn fork_at_step(
        &self,
        execution_id: String,
        at_step: u32,
        new_execution_id: String,
    ) -> Result<Value> {
        let s = self.handle()?;
        blocking(move || {
            s.fork_at_step(&execution_id, u64::from(at_step), &new_execution_id)
                .map(|e| convert::execution(&e))
        })
        .await
    }
}
