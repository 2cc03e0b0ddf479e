//! Recorded LLM and tool calls, the same in every binding: the canonical request (the fields
//! that decide the answer) and its hash, the recordings of an execution, and the replay that
//! answers a new run's calls from them in order, failing with [`Error::ReplayDivergence`] at
//! the first request that differs.
//!
//! A binding records a call as a step named `llm:<span name>` or `tool:<span name>` whose
//! state is `{"request": …, "response": …}` and whose metadata carries [`CALL_KEY`] (`llm` or
//! `tool`), [`HASH_KEY`] and [`SIDE_EFFECT_KEY`]. Calling the user's function, encoding and
//! decoding the response stay in the binding.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::value::{checkpoint_codec, state_json};
use crate::Checkpoint;

/// Checkpoint metadata: `llm` or `tool`.
pub const CALL_KEY: &str = "omium.call";
/// Checkpoint metadata: the request's [`super::view::request_hash`].
pub const HASH_KEY: &str = "omium.request_hash";
/// Checkpoint metadata: `true` for a tool with side effects (never run again by a replay).
pub const SIDE_EFFECT_KEY: &str = "omium.side_effect";

/// Request parameters that never change the answer, left out of the canonical request.
const VOLATILE: &[&str] = &[
    "headers",
    "extra_headers",
    "request_id",
    "idempotency_key",
    "timeout",
    "timestamp",
    "user",
    "metadata",
    "stream",
];

/// The canonical request of a call: `kind` (`llm` or `tool`), its name, provider and model, the
/// positional `args`, and the keyword `params` split into `messages`, `tools` and the other
/// parameters (volatile ones dropped). Returns the request and its hash.
pub fn canonical_request(
    kind: &str,
    name: &str,
    provider: &str,
    model: &str,
    args: Vec<Value>,
    params: Map<String, Value>,
) -> Result<(Value, String)> {
    if kind != "llm" && kind != "tool" {
        return Err(Error::InvalidArgument {
            what: "call kind",
            detail: format!("expected \"llm\" or \"tool\", not {kind:?}"),
        });
    }
    let mut params = params;
    let messages = params.remove("messages").unwrap_or(Value::Null);
    let tools = params.remove("tools").unwrap_or(Value::Null);
    params.retain(|k, _| !VOLATILE.contains(&k.as_str()));
    let request = json!({
        "kind": kind, "name": name, "provider": provider, "model": model, "args": args,
        "messages": messages, "tools": tools, "params": params,
    });
    let hash = super::view::request_hash(&request);
    Ok((request, hash))
}

/// The step name of a call and the name of its span: `chat gpt-4o` / `execute_tool search`.
pub fn span_name(kind: &str, name: &str, model: &str, operation: &str) -> String {
    if kind == "llm" {
        format!("{operation} {model}").trim().to_string()
    } else {
        format!("execute_tool {name}")
    }
}

/// One recorded call of an execution.
#[derive(Clone, Debug)]
pub struct Recording {
    /// The step name (`llm:chat gpt-4o`).
    pub name: String,
    pub hash: String,
    /// The canonical request, as JSON (for divergence reports).
    pub request: Value,
    /// The checkpoint holding `{"request", "response"}` in the binding's codec.
    pub checkpoint: Checkpoint,
    /// Its state bytes (verified).
    pub state: Vec<u8>,
}

/// The recorded calls of an execution's live branch, in the order they were made.
/// `read_state` reads a checkpoint's verified state.
pub fn recordings(
    history: Vec<Checkpoint>,
    mut read_state: impl FnMut(&Checkpoint) -> Result<Vec<u8>>,
) -> Result<Vec<Recording>> {
    let mut calls: Vec<Checkpoint> = history
        .into_iter()
        .filter(|c| {
            c.kind.is_step()
                && matches!(
                    c.metadata.get(CALL_KEY).map(String::as_str),
                    Some("llm" | "tool")
                )
        })
        .collect();
    calls.sort_by_key(|c| c.global_seq);
    calls
        .into_iter()
        .map(|c| {
            let state = read_state(&c)?;
            // The request is for divergence reports only (the hash decides): a call recorded
            // before codecs were recorded, or in a codec only its binding reads, has none.
            let what = format!("recorded call {:?} ({})", c.name, c.id);
            let request = state_json(checkpoint_codec(&c), &state, &what)
                .ok()
                .and_then(|mut v| v.get_mut("request").map(Value::take))
                .unwrap_or(Value::Null);
            Ok(Recording {
                name: c.name.clone(),
                hash: c.metadata.get(HASH_KEY).cloned().unwrap_or_default(),
                request,
                checkpoint: c,
                state,
            })
        })
        .collect()
}

/// Answers a replayed run's calls from a recording, in order.
#[derive(Debug)]
pub struct Replay {
    source: String,
    calls: Vec<Recording>,
    next: usize,
}

impl Replay {
    /// A replay of `source`'s recorded `calls`.
    pub fn new(source: impl Into<String>, calls: Vec<Recording>) -> Replay {
        Replay {
            source: source.into(),
            calls,
            next: 0,
        }
    }

    /// How many calls were answered so far, and how many were recorded.
    pub fn progress(&self) -> (usize, usize) {
        (self.next, self.calls.len())
    }

    /// The recording that answers the next call, whose canonical request is `request` with
    /// hash `hash`; [`Error::ReplayDivergence`] when the recording has no further call or its
    /// next call's request differs.
    pub fn answer(&mut self, request: &Value, hash: &str) -> Result<&Recording> {
        let i = self.next;
        self.next += 1;
        let Some(rec) = self.calls.get(i) else {
            return Err(Error::ReplayDivergence {
                execution: self.source.clone(),
                index: i,
                detail: format!(
                    "the run made a request the recording does not have (it recorded {} \
                     calls); request: {request}",
                    self.calls.len()
                ),
                recorded: None,
                actual: Some(Box::new(request.clone())),
            });
        };
        if rec.hash != hash {
            return Err(Error::ReplayDivergence {
                execution: self.source.clone(),
                index: i,
                detail: format!(
                    "{}: the request differs from the recording\n  recorded: {}\n  actual:   \
                     {request}",
                    rec.name, rec.request
                ),
                recorded: Some(Box::new(rec.request.clone())),
                actual: Some(Box::new(request.clone())),
            });
        }
        Ok(&self.calls[i])
    }

    /// Checks, once the run ended, that it made every recorded call.
    pub fn finish(&self) -> Result<()> {
        match self.calls.get(self.next) {
            None => Ok(()),
            Some(rec) => Err(Error::ReplayDivergence {
                execution: self.source.clone(),
                index: self.next,
                detail: format!(
                    "the run ended without making the recorded request {}",
                    rec.name
                ),
                recorded: Some(Box::new(rec.request.clone())),
                actual: None,
            }),
        }
    }
}

/// Where a fork before position `at_step` of an execution's live branch forks: the last
/// top-level step before it, or `None` to fork before anything was recorded (`at_step` 1).
/// Positions are the `seq` of the history (1 is the first step, one past the last is allowed);
/// a step's nested calls belong to it.
pub fn fork_point(
    execution_id: &str,
    history: &[Checkpoint],
    at_step: u64,
) -> Result<Option<Checkpoint>> {
    let mut steps: Vec<&Checkpoint> = history
        .iter()
        .filter(|c| c.kind.is_step() && c.key.is_none())
        .collect();
    steps.sort_by_key(|c| c.seq);
    let last = steps.last().map_or(0, |c| c.seq);
    if at_step < 1 || at_step > last + 1 {
        return Err(Error::InvalidArgument {
            what: "fork position",
            detail: format!(
                "execution {execution_id:?} has positions 1 to {last}, not {at_step} (1 is the \
                 first step; {} forks after the last)",
                last + 1
            ),
        });
    }
    Ok(steps.into_iter().rfind(|c| c.seq < at_step).cloned())
}
