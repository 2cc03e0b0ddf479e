//! Spans from JS: a finished span crosses in one call, ids as hex, times as decimal strings of
//! Unix nanoseconds (they do not fit a JS number).

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::trace::{self, Event, Span, SpanKind, StatusCode, Value as AttrValue};
use serde_json::{json, Map, Value};

use crate::convert::{coded, err};

#[napi(object)]
pub struct SpanEventInput {
    pub name: String,
    pub time_ns: String,
    pub attributes: Option<Map<String, Value>>,
}

#[napi(object)]
pub struct SpanInput {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    pub parent: Option<String>,
    pub name: String,
    pub span_type: String,
    pub execution_id: String,
    pub agent: String,
    pub start_ns: String,
    pub end_ns: String,
    /// ok, error or unset.
    pub status: String,
    pub status_message: Option<String>,
    /// internal, client, server, producer or consumer.
    pub kind: Option<String>,
    pub attributes: Option<Map<String, Value>>,
    pub events: Option<Vec<SpanEventInput>>,
}

pub(crate) fn hex_id<const N: usize>(s: &str, what: &str) -> Result<[u8; N]> {
    let bad = || {
        coded(
            "invalid_argument",
            format!("span {what} must be {} hex digits, not {s:?}", N * 2),
        )
    };
    if s.len() != N * 2 {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

pub(crate) fn ns(s: &str, what: &str) -> Result<u64> {
    s.parse().map_err(|_| {
        coded(
            "invalid_argument",
            format!("span {what} must be a decimal string of Unix nanoseconds, not {s:?}"),
        )
    })
}

fn attributes(m: Option<Map<String, Value>>) -> Result<Vec<(String, AttrValue)>> {
    let mut out = Vec::new();
    for (k, v) in m.unwrap_or_default() {
        let v = match v {
            Value::Null => continue,
            Value::Bool(b) => AttrValue::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => AttrValue::Int(i),
                None => AttrValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => AttrValue::Str(s),
            Value::Array(items) => AttrValue::StrList(
                items
                    .into_iter()
                    .map(|i| match i {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            other @ Value::Object(_) => AttrValue::Str(other.to_string()),
        };
        out.push((k, v));
    }
    Ok(out)
}

pub fn span(s: SpanInput) -> Result<Span> {
    let status = match s.status.as_str() {
        "ok" => StatusCode::Ok,
        "error" => StatusCode::Error,
        "unset" => StatusCode::Unset,
        other => {
            return Err(coded(
                "invalid_argument",
                format!("span status must be ok, error or unset, not {other:?}"),
            ))
        }
    };
    let mut events = Vec::new();
    for e in s.events.unwrap_or_default() {
        events.push(Event {
            time_ns: ns(&e.time_ns, "event timeNs")?,
            name: e.name,
            attributes: attributes(e.attributes)?,
        });
    }
    Ok(Span {
        trace_id: hex_id(&s.trace_id, "traceId")?,
        span_id: hex_id(&s.span_id, "spanId")?,
        parent: s
            .parent
            .as_deref()
            .map(|p| hex_id(p, "parent"))
            .transpose()?,
        name: s.name,
        kind: SpanKind::parse(s.kind.as_deref().unwrap_or("internal")).map_err(err)?,
        span_type: s.span_type,
        execution_id: s.execution_id,
        agent: s.agent,
        start_ns: ns(&s.start_ns, "startNs")?,
        end_ns: ns(&s.end_ns, "endNs")?,
        status,
        status_message: s.status_message.unwrap_or_default(),
        attributes: attributes(s.attributes)?,
        events,
    })
}

fn attrs_json(a: &[(String, AttrValue)]) -> Map<String, Value> {
    a.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
}

pub fn span_json(s: &Span) -> Value {
    json!({
        "traceId": omium_core::hex(&s.trace_id),
        "spanId": omium_core::hex(&s.span_id),
        "parent": s.parent.map(|p| omium_core::hex(&p)),
        "name": s.name, "kind": s.kind.as_str(), "spanType": s.span_type,
        "executionId": s.execution_id, "agent": s.agent,
        "startNs": s.start_ns.to_string(), "endNs": s.end_ns.to_string(),
        "status": match s.status { StatusCode::Ok => "ok", StatusCode::Error => "error", StatusCode::Unset => "unset" },
        "statusMessage": s.status_message,
        "attributes": attrs_json(&s.attributes),
        "events": s.events.iter().map(|e| json!({
            "name": e.name, "timeNs": e.time_ns.to_string(), "attributes": attrs_json(&e.attributes),
        })).collect::<Vec<_>>(),
    })
}

/// Spans as a daemon serves them (`omium_core::json::span`: snake_case keys, nanoseconds as
/// numbers) in the shape of [`span_json`] (camelCase keys, nanoseconds as decimal strings).
pub fn served_spans(v: Value) -> Value {
    fn ns_text(v: &mut Value, key: &str) {
        if let Some(n) = v.get(key).and_then(Value::as_u64) {
            v[key] = Value::String(n.to_string());
        }
    }
    // Attribute maps are the user's: their keys stay as they are.
    fn camel_span(mut s: Value) -> Value {
        let attrs = s.get_mut("attributes").map(Value::take);
        let events: Vec<Value> = match s.get_mut("events").map(Value::take) {
            Some(Value::Array(list)) => list
                .into_iter()
                .map(|mut e| {
                    let a = e.get_mut("attributes").map(Value::take);
                    let mut e = crate::convert::camel(e);
                    ns_text(&mut e, "timeNs");
                    e["attributes"] = a.unwrap_or_else(|| json!({}));
                    e
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut s = crate::convert::camel(s);
        ns_text(&mut s, "startNs");
        ns_text(&mut s, "endNs");
        s["attributes"] = attrs.unwrap_or_else(|| json!({}));
        s["events"] = Value::Array(events);
        s
    }
    match v {
        Value::Array(list) => Value::Array(list.into_iter().map(camel_span).collect()),
        other => other,
    }
}

/// The trace id (hex) of an execution: the same on every run of it.
#[napi]
pub fn trace_id_of(execution_id: String) -> String {
    omium_core::hex(&trace::trace_id_of(&execution_id))
}

/// A new random span id (hex).
#[napi]
pub fn new_span_id() -> String {
    omium_core::hex(&trace::new_span_id())
}

/// A new random trace id (hex), for spans outside executions.
#[napi]
pub fn new_trace_id() -> String {
    let (a, b) = (trace::new_span_id(), trace::new_span_id());
    format!("{}{}", omium_core::hex(&a), omium_core::hex(&b))
}

/// `[traceId, spanId]` (hex) of a W3C `traceparent` header.
#[napi]
pub fn parse_traceparent(header: String) -> Result<(String, String)> {
    let (t, s) = trace::parse_traceparent(&header).map_err(err)?;
    Ok((omium_core::hex(&t), omium_core::hex(&s)))
}

/// Unix time in nanoseconds, as a decimal string.
#[napi]
pub fn now_ns() -> String {
    trace::now_ns().to_string()
}
