//! `Recovery`: the handling of one failed step. The TS layer reports what it did (`advance`)
//! and gets the next command of the core's recovery driver (`omium_core::recovery::driver`):
//! the core decides, records, sends webhooks and builds the error that ends the step; TS only
//! calls the user's functions, waits and throws.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::recovery::driver::{Analysis, Driver, Event};
use serde_json::Value;

use crate::convert::coded;

/// What the step did since the last command.
#[napi(object)]
pub struct RecoveryEvent {
    /// start, called, fixed, analyzed, notified or missing.
    pub event: String,
    /// Default true.
    pub ok: Option<bool>,
    /// How a call failed; what failed notifiers said.
    pub note: Option<String>,
    /// Whether a policy may handle the failure (default true).
    pub recoverable: Option<bool>,
    pub root_cause: Option<String>,
    pub suggested_fix: Option<String>,
}

/// What to do next.
#[napi(object)]
pub struct Command {
    /// retry, call, fallback, fix, analyze, notify, return, reraise or raise.
    pub name: String,
    /// retry {attempt, delayMs}, fallback {function}, fix {fix, failure}, analyze {failure},
    /// notify {event, failure, channels}, raise {code, message, executionId, step, failure,
    /// reason | to | channels}. Failure records keep the core's snake_case keys.
    pub params: Value,
}

#[napi]
pub struct Recovery {
    inner: Arc<Mutex<Driver>>,
}

impl Recovery {
    pub fn new(d: Driver) -> Recovery {
        Recovery {
            inner: Arc::new(Mutex::new(d)),
        }
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> omium_core::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        spawn_blocking(move || {
            let mut g = inner
                .lock()
                .map_err(|_| coded("internal", "recovery lock poisoned by a panic"))?;
            f(&mut g).map_err(crate::convert::err)
        })
        .await
        .map_err(|e| coded("internal", format!("a worker thread failed: {e}")))?
    }
}

#[napi]
impl Recovery {
    /// Reports an event and returns the next command.
    #[napi]
    pub async fn advance(&self, event: RecoveryEvent) -> Result<Command> {
        let analysis = Analysis {
            root_cause: event.root_cause,
            suggested_fix: event.suggested_fix,
        };
        let event = Event::from_parts(
            &event.event,
            event.ok.unwrap_or(true),
            event.note,
            event.recoverable.unwrap_or(true),
            analysis,
        )
        .map_err(crate::convert::err)?;
        let command = self.with(move |d| d.advance(event)).await?;
        // Top-level parameters in JS's names and units (milliseconds); records as recorded.
        let mut params = command.params();
        if let Value::Object(m) = &mut params {
            m.remove("delay");
            let camel = std::mem::take(m)
                .into_iter()
                .map(|(k, v)| (crate::convert::camel_key(&k), v))
                .collect();
            *m = camel;
        }
        Ok(Command {
            name: command.name().into(),
            params,
        })
    }

    /// Settles the failure as failed without acting on it (a denied tool outside a step).
    #[napi]
    pub async fn failed(&self) -> Result<()> {
        self.with(|d| d.give_up()).await
    }
}
