//! `Run`: one run of an execution (holds its lease), in this process or held by an `omium serve`
//! daemon for it (the core's `RunHandle`). `reserve` is synchronous, so a step takes its
//! position when it is called, before any await: a counter for an embedded store, a call to the
//! daemon for a served one. Store writes are async.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::serve::RunHandle;
use omium_core::{CheckResult, CheckpointKind, Checks, NewCheckpoint};
use serde_json::Value;

use crate::convert::{self, blocking, coded};

#[napi]
pub struct Run {
    inner: Arc<RwLock<Option<Arc<Held>>>>,
    execution_id: String,
}

/// A run handle that releases a served run on the daemon when the last call holding it is done
/// (after `close()`, or when JS collects the `Run`): the daemon's session ends at once instead of
/// when its lease expires. An embedded run releases its lease when dropped.
pub struct Held(Option<RunHandle>);

impl std::ops::Deref for Held {
    type Target = RunHandle;
    fn deref(&self) -> &RunHandle {
        self.0.as_ref().expect("a run handle is held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.close();
        }
    }
}

#[napi(object)]
pub struct RecordOptions {
    pub key: Option<String>,
    pub agent: Option<String>,
    /// "step" (default) or "snapshot".
    pub kind: Option<String>,
    /// `[expression, passed]` pairs.
    pub preconditions: Option<Vec<(String, bool)>>,
    pub postconditions: Option<Vec<(String, bool)>>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// The running step's span: the checkpoint's span is recorded with the checkpoint, and
    /// the step's own too when `endStep` (it ends then).
    pub span: Option<StepSpan>,
}

#[napi(object)]
pub struct StepSpan {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The step span's parent (16 hex digits), when it is recorded now.
    pub parent: Option<String>,
    /// Unix nanoseconds, decimal.
    pub start_ns: String,
    pub end_step: bool,
    /// The step span's key (`omium.key`), when it has one.
    pub key: Option<String>,
    /// The spans' clock (`nowNs()` of the TypeScript layer) at the call, Unix nanoseconds,
    /// decimal: the checkpoint's span starts then and both spans end the write's duration
    /// later, on the same clock as the step's start and its enclosing spans.
    pub now_ns: String,
}

#[napi(object)]
pub struct Recorded {
    pub checkpoint: Value,
    pub state: Buffer,
}

fn checks(list: Option<Vec<(String, bool)>>) -> Vec<CheckResult> {
    list.unwrap_or_default()
        .into_iter()
        .map(|(expression, passed)| CheckResult { expression, passed })
        .collect()
}

/// A journal position from JavaScript.
fn seq_arg(seq: i64) -> Result<u64> {
    u64::try_from(seq)
        .map_err(|_| coded("invalid_argument", format!("seq must be >= 0, not {seq}")))
}

/// Whether a step is recorded at `seq` (or `key`): for an embedded store, a lookup in the run's
/// in-memory journal (no state is read); for a daemon, a call to it.
fn is_recorded(run: &RunHandle, seq: u64, name: &str, key: Option<&str>) -> Result<bool> {
    let found = match run {
        RunHandle::Local(r) => r.recorded(seq, name, key).map(|c| c.is_some()),
        remote => remote.recorded(seq, name, key).map(|c| c.is_some()),
    };
    found.map_err(crate::convert::err)
}

/// `record`'s arguments: the position, the kind, and the options with the codec's name in their
/// metadata (`omium.codec`).
fn record_args(
    seq: i64,
    options: Option<RecordOptions>,
    codec: Option<String>,
) -> Result<(u64, CheckpointKind, RecordOptions)> {
    let seq = seq_arg(seq)?;
    let mut o = options.unwrap_or(RecordOptions {
        key: None,
        agent: None,
        kind: None,
        preconditions: None,
        postconditions: None,
        metadata: None,
        span: None,
    });
    let kind = match o.kind.as_deref().unwrap_or("step") {
        "step" => CheckpointKind::Step,
        "snapshot" => CheckpointKind::Snapshot,
        other => {
            return Err(coded(
                "invalid_argument",
                format!("kind must be \"step\" or \"snapshot\", not {other:?}"),
            ))
        }
    };
    if let Some(codec) = codec {
        o.metadata
            .get_or_insert_with(BTreeMap::new)
            .insert(omium_core::value::CODEC_KEY.to_string(), codec);
    }
    Ok((seq, kind, o))
}

fn record(
    run: &RunHandle,
    seq: u64,
    name: &str,
    state: &[u8],
    kind: CheckpointKind,
    o: RecordOptions,
) -> omium_core::Result<String> {
    let new = NewCheckpoint {
        name,
        agent: o.agent.as_deref(),
        kind,
        key: o.key.as_deref(),
        state,
        checks: Checks {
            preconditions: checks(o.preconditions),
            postconditions: checks(o.postconditions),
        },
        metadata: o.metadata.unwrap_or_default(),
    };
    let Some(s) = o.span else {
        return run.record(seq, new);
    };
    let invalid = |e: napi::Error| omium_core::Error::InvalidArgument {
        what: "span",
        detail: e.reason.clone(),
    };
    let step = omium_core::serve::TracedStep {
        trace_id: crate::trace::hex_id(&s.trace_id, "traceId").map_err(invalid)?,
        span_id: crate::trace::hex_id(&s.span_id, "spanId").map_err(invalid)?,
        parent: s
            .parent
            .as_deref()
            .map(|p| crate::trace::hex_id(p, "parent"))
            .transpose()
            .map_err(invalid)?,
        start_ns: crate::trace::ns(&s.start_ns, "startNs").map_err(invalid)?,
        end_step: s.end_step,
        step_attributes: [("omium.step", Some(name)), ("omium.key", s.key.as_deref())]
            .into_iter()
            .filter_map(|(k, v)| {
                Some((k.to_string(), omium_core::trace::Value::Str(v?.to_string())))
            })
            .collect(),
        now_ns: Some(crate::trace::ns(&s.now_ns, "nowNs").map_err(invalid)?),
    };
    run.record_traced(seq, new, Some(step))
}

impl Run {
    pub fn new(run: RunHandle) -> Run {
        let execution_id = run.execution_id().to_string();
        Run {
            inner: Arc::new(RwLock::new(Some(Arc::new(Held(Some(run)))))),
            execution_id,
        }
    }

    fn get(&self) -> Result<Arc<Held>> {
        let guard = self
            .inner
            .read()
            .map_err(|_| coded("internal", "omium run lock poisoned by a panic"))?;
        guard.clone().ok_or_else(|| {
            coded(
                "invalid_state",
                format!("the run of execution {:?} is closed", self.execution_id),
            )
        })
    }
}

#[napi]
impl Run {
    #[napi(getter)]
    pub fn execution_id(&self) -> String {
        self.execution_id.clone()
    }

    /// Takes the next position of the live branch (at call time).
    #[napi]
    pub fn reserve(&self) -> Result<i64> {
        let seq = self.get()?.reserve().map_err(crate::convert::err)?;
        Ok(seq as i64)
    }

    /// `[seq, key]`: the journal position of a step called now, top-level (`parent` undefined)
    /// or nested in the step at position `parent` (the core's positions, as in every binding).
    #[napi(ts_return_type = "[number, string | undefined]")]
    pub fn position(&self, parent: Option<String>, key: Option<String>) -> Result<Vec<Value>> {
        let (seq, key) = self
            .get()?
            .position(parent.as_deref(), key.as_deref())
            .map_err(crate::convert::err)?;
        Ok(vec![Value::from(seq), key.map_or(Value::Null, Value::from)])
    }

    /// `[seq, key, recorded]`: `position(parent, key)` and `isRecorded(seq, name, key)` in one
    /// call, the start of a step of an embedded store (a daemon's journal is asked off-thread).
    #[napi(ts_return_type = "[number, string | null, boolean]")]
    pub fn begin_step(
        &self,
        name: String,
        parent: Option<String>,
        key: Option<String>,
    ) -> Result<(i64, Option<String>, bool)> {
        let run = self.get()?;
        let (seq, key) = run
            .position(parent.as_deref(), key.as_deref())
            .map_err(crate::convert::err)?;
        let found = is_recorded(&run, seq, &name, key.as_deref())?;
        Ok((seq as i64, key, found))
    }

    /// Whether a step is recorded at `seq` (or `key`): for an embedded store, a lookup in the
    /// run's in-memory journal, so a live step pays no trip to a worker thread; for a daemon, a
    /// call to it. A different step name there is a `non_determinism` error naming both.
    #[napi]
    pub fn is_recorded(&self, seq: i64, name: String, key: Option<String>) -> Result<bool> {
        let run = self.get()?;
        is_recorded(&run, seq_arg(seq)?, &name, key.as_deref())
    }

    /// The recorded step at `seq` (or `key`) with its state, else null. A different step name
    /// there is a `non_determinism` error naming both.
    #[napi]
    pub async fn recorded(
        &self,
        seq: i64,
        name: String,
        key: Option<String>,
    ) -> Result<Option<Recorded>> {
        let run = self.get()?;
        let seq = seq_arg(seq)?;
        let found = blocking(move || {
            Ok(run
                .recorded(seq, &name, key.as_deref())?
                .map(|(c, state)| (convert::checkpoint(&c), state)))
        })
        .await?;
        Ok(found.map(|(checkpoint, state)| Recorded {
            checkpoint,
            state: Buffer::from(state),
        }))
    }

    /// Records a step's result at `seq` on a worker thread; returns the checkpoint id. `codec`,
    /// the name of the codec that encoded `state`, is recorded as the checkpoint's `omium.codec`
    /// metadata.
    #[napi]
    pub async fn record(
        &self,
        seq: i64,
        name: String,
        state: Buffer,
        options: Option<RecordOptions>,
        codec: Option<String>,
    ) -> Result<String> {
        let run = self.get()?;
        let (seq, kind, o) = record_args(seq, options, codec)?;
        let state = state.to_vec();
        blocking(move || record(&run, seq, &name, &state, kind, o)).await
    }

    /// `record` on the calling thread: for `buffered` and `none` durability, where the write does
    /// not wait for an fsync and costs less than the trip to a worker thread. A plain step leaves
    /// `options` out (converting an options object is a tenth of a step's cost).
    #[napi]
    pub fn record_now(
        &self,
        seq: i64,
        name: String,
        state: Buffer,
        options: Option<RecordOptions>,
        codec: Option<String>,
    ) -> Result<String> {
        let run = self.get()?;
        let (seq, kind, o) = record_args(seq, options, codec)?;
        record(&run, seq, &name, &state, kind, o).map_err(crate::convert::err)
    }

    #[napi]
    pub async fn complete(&self, output: Option<Buffer>) -> Result<()> {
        let run = self.get()?;
        let output = output.map(|b| b.to_vec());
        blocking(move || run.complete(output.as_deref())).await
    }

    #[napi]
    pub async fn fail(&self, error: String) -> Result<()> {
        let run = self.get()?;
        blocking(move || run.fail(&error)).await
    }

    #[napi]
    pub async fn pause(&self, reason: String) -> Result<()> {
        let run = self.get()?;
        blocking(move || run.pause(&reason)).await
    }

    #[napi]
    pub async fn heartbeat(&self) -> Result<()> {
        let run = self.get()?;
        blocking(move || run.heartbeat()).await
    }

    /// Carries out a pause or cancel asked for while step `step` awaits (rejects with it).
    #[napi]
    pub async fn check_control(&self, step: String) -> Result<()> {
        let run = self.get()?;
        blocking(move || run.check_control(&step)).await
    }

    #[napi]
    pub fn execution(&self) -> Result<Value> {
        let e = self.get()?.execution().map_err(crate::convert::err)?;
        Ok(convert::execution(&e))
    }

    /// Releases the run; without complete()/fail() the execution stays resumable. Idempotent.
    #[napi]
    pub fn close(&self) -> Result<()> {
        let taken = self
            .inner
            .write()
            .map_err(|_| coded("internal", "omium run lock poisoned by a panic"))?
            .take();
        // Released here, or by the last call still running on it (`Held`).
        drop(taken);
        Ok(())
    }
}
