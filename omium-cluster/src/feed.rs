//! The event feed as Server-Sent Events, for `omium serve` (`GET /v1/events/stream`) and
//! `omium node` (`GET /events/stream`): each event's `id` is its seq (a reconnecting client
//! sends it back as `Last-Event-ID` and goes on after it), its `event` the type, its `data` the
//! CloudEvent. A comment every 15 s keeps a quiet stream open through proxies. What a caller
//! may see of each event is the listener's to say ([`Shape`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::Store;
use omium_engine::events::EventFilter;
use omium_engine::prelude::*;

/// What a stream takes in its query.
#[derive(serde::Deserialize, Default)]
pub(crate) struct StreamQuery {
    pub since: Option<u64>,
    /// Types or families, comma-separated (`execution.*,failure.detected`).
    pub types: Option<String>,
    pub execution_id: Option<String>,
}

impl StreamQuery {
    /// The filter the query asks for (an unknown type is an error).
    pub(crate) fn filter(&self) -> Result<EventFilter> {
        let types = self
            .types
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        EventFilter::new(types, self.execution_id.clone())
    }

    /// Where the stream starts: after `Last-Event-ID`, else after `since`, else at the start.
    pub(crate) fn start(&self, headers: &HeaderMap) -> u64 {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or(self.since)
            .unwrap_or(0)
    }
}

/// What one page of a stream remembers of the executions it looked up.
#[derive(Default)]
pub(crate) struct PageCache {
    /// Whether an execution is the caller's.
    pub mine: HashMap<String, bool>,
    /// An execution's workflow and tenant ([`omium_engine::events::annotate`]).
    pub names: HashMap<String, Option<(String, String)>>,
}

/// An event's CloudEvent as the caller may see it, or None when it may not.
pub(crate) type Shape = Arc<dyn Fn(&Store, Value, &mut PageCache) -> Option<Value> + Send + Sync>;

/// The stream of `store`'s events that pass `filter`, after `start`, shaped by `shape`; read
/// a page at a time off the async threads.
pub(crate) fn sse(store: Store, filter: EventFilter, start: u64, shape: Shape) -> Response {
    let source = omium_engine::events::source(&store);
    let stream =
        futures_util::stream::unfold((start, VecDeque::new()), move |(mut cursor, mut queued)| {
            let (store, filter, shape, source) =
                (store.clone(), filter.clone(), shape.clone(), source.clone());
            async move {
                loop {
                    if let Some((seq, kind, ce)) = queued.pop_front() {
                        let (seq, kind, ce): (u64, String, Value) = (seq, kind, ce);
                        let sse = Sse::default()
                            .id(seq.to_string())
                            .event(kind)
                            .data(ce.to_string());
                        return Some((Ok::<_, std::convert::Infallible>(sse), (cursor, queued)));
                    }
                    let (store, filter, shape, source) =
                        (store.clone(), filter.clone(), shape.clone(), source.clone());
                    let page = tokio::task::spawn_blocking(move || {
                        let p =
                            store.follow_events(cursor, 1000, &filter, Duration::from_secs(2))?;
                        let mut cache = PageCache::default();
                        let events: Vec<(u64, String, Value)> = p
                            .events
                            .into_iter()
                            .filter_map(|e| {
                                let ce = shape(&store, e.cloud_event(&source), &mut cache)?;
                                Some((e.seq, e.kind, ce))
                            })
                            .collect();
                        Ok::<_, Error>((p.cursor, events))
                    })
                    .await;
                    match page {
                        Ok(Ok((next, events))) => {
                            cursor = next;
                            queued.extend(events);
                        }
                        // The store closed or failed: end the stream; the client reconnects.
                        _ => return None,
                    }
                }
            }
        });
    axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Removes `prefix` from every string of `v` (a tenant's scope from the ids it filed).
pub(crate) fn strip(v: &mut Value, prefix: &str) {
    match v {
        Value::String(s) if s.contains(prefix) => *s = s.replace(prefix, ""),
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, prefix)),
        Value::Object(m) => m.values_mut().for_each(|x| strip(x, prefix)),
        _ => {}
    }
}
