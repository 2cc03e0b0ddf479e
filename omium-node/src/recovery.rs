//! `Recovery`: the handle a failed step drives. The TS layer asks `nextDirective()`, carries it
//! out (sleeps, calls the step again, calls hooks) and reports; decisions, backoff, history and
//! webhooks stay in the core: in this process, or in the `omium serve` daemon that recorded
//! the failure (the core's `RecoveryHandle`).

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::serve::RecoveryHandle;
use serde_json::{json, Value};

use crate::convert::coded;

#[napi(object)]
pub struct Directive {
    /// retry, rollback, pause, notify, escalate, fallback, suggest_fix, inspect or fail.
    pub name: String,
    /// retry {attempt, delayMs}, rollback {to}, pause {reason}, notify / escalate {channels},
    /// fallback {function}, suggest_fix {fix, autoApply}.
    pub params: Value,
}

#[napi]
pub struct Recovery {
    inner: Arc<Mutex<RecoveryHandle>>,
}

impl Recovery {
    pub fn new(r: RecoveryHandle) -> Recovery {
        Recovery {
            inner: Arc::new(Mutex::new(r)),
        }
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RecoveryHandle) -> omium_core::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let g = spawn_blocking(move || {
            let mut g = inner
                .lock()
                .map_err(|_| coded("internal", "recovery lock poisoned by a panic"))?;
            f(&mut g).map_err(crate::convert::err)
        })
        .await
        .map_err(|e| coded("internal", format!("a worker thread failed: {e}")))?;
        g
    }

    /// On the calling thread (a daemon's recovery answers from memory).
    fn now<T>(&self, f: impl FnOnce(&mut RecoveryHandle) -> omium_core::Result<T>) -> Result<T> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| coded("internal", "recovery lock poisoned by a panic"))?;
        f(&mut g).map_err(crate::convert::err)
    }
}

#[napi]
impl Recovery {
    #[napi]
    pub async fn next_directive(&self) -> Result<Directive> {
        let (name, params) = self.with(|r| r.next_directive()).await?;
        // The core's parameters, in JS's names and units (milliseconds).
        let mut params = crate::convert::camel(params);
        if let Some(delay) = params.get("delay").and_then(Value::as_f64) {
            params["delayMs"] = json!(delay * 1000.0);
            params.as_object_mut().map(|m| m.remove("delay"));
        }
        Ok(Directive { name, params })
    }

    /// Reports how the last directive went.
    #[napi]
    pub async fn done(&self, ok: bool, note: Option<String>) -> Result<()> {
        self.with(move |r| r.done(ok, note.as_deref())).await
    }

    #[napi]
    pub async fn set_analysis(
        &self,
        root_cause: Option<String>,
        suggested_fix: Option<String>,
    ) -> Result<()> {
        self.with(move |r| r.set_analysis(root_cause, suggested_fix))
            .await
    }

    /// Ends the handling with this outcome: recovered, failed, escalated, paused, rolled_back.
    #[napi]
    pub async fn finish(&self, outcome: String) -> Result<()> {
        let outcome = match outcome.as_str() {
            "recovered" | "failed" | "escalated" | "paused" | "rolled_back" => outcome,
            other => {
                return Err(coded(
                    "invalid_argument",
                    format!("outcome must be recovered, failed, escalated, paused or rolled_back, not {other:?}"),
                ))
            }
        };
        self.with(move |r| r.finish(&outcome)).await
    }

    /// Sends the channels' webhooks; returns `[channel, error or null]` pairs.
    #[napi]
    pub async fn send_webhooks(
        &self,
        channels: Vec<String>,
        event: String,
    ) -> Result<Vec<(String, Option<String>)>> {
        self.with(move |r| r.notify(&channels, &event)).await
    }

    /// The notification body for `event`.
    #[napi]
    pub fn payload(&self, event: String) -> Result<Value> {
        self.now(|r| r.payload(&event))
    }

    /// The failure record.
    #[napi]
    pub fn failure(&self) -> Result<Value> {
        self.now(|r| r.record())
    }
}
