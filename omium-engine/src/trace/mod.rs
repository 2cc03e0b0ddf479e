//! Tracing: spans in the OpenTelemetry model (16-byte trace id, 8-byte span id, parent, kind,
//! start and end in ns, status, attributes, events), one trace per execution, recorded without
//! blocking the caller, stored in the local store (indexed by execution, agent and time, kept
//! for as long as retention says) and exported over OTLP in the background.
//!
//! ```
//! use omium_engine::trace::{Span, SpanKind};
//! use omium_engine::TraceStore;
//! let dir = tempfile::tempdir().unwrap();
//! let store = omium_storage::Store::open(dir.path()).unwrap();
//! let mut span = Span::new("cust-42", "chat gpt-4o", "llm");
//! span.kind = SpanKind::Client;
//! span.set("gen_ai.request.model", "gpt-4o");
//! span.set("gen_ai.usage.input_tokens", 812i64);
//! span.finish_ok();
//! store.record_span(span);
//! store.flush_spans().unwrap();
//! assert_eq!(store.spans("cust-42").unwrap()[0].name, "chat gpt-4o");
//! ```

pub mod calls;
mod otlp;
mod pipe;
pub mod view;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::store::{exec_key, Cf, Store};
use omium_storage::spans::{agent_index_key, span_key_of, time_index_key};

pub use otlp::{ExportConfig, ExportStats};

/// What a span measures, as OpenTelemetry's SpanKind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    #[default]
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    pub fn parse(s: &str) -> Result<SpanKind> {
        Ok(match s {
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => {
                return Err(Error::InvalidArgument {
                    what: "span kind",
                    detail: format!(
                        "{s:?}; expected internal, server, client, producer or consumer"
                    ),
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

/// An attribute value, as OpenTelemetry allows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    StrList(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::StrList(l) => write!(f, "{}", l.join(",")),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Float(x)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl Value {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => s.clone().into(),
            Value::Int(i) => (*i).into(),
            Value::Float(x) => {
                serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Bool(b) => (*b).into(),
            Value::StrList(l) => l.clone().into(),
        }
    }
}

/// Something that happened at a point in a span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    pub time_ns: u64,
    pub attributes: Vec<(String, Value)>,
}

/// A span. `span_type` is Omium's category (`workflow`, `step`, `checkpoint`, `rollback`,
/// `recovery`, `llm`, `tool`, `agent`, `chain`, `function`, ...); exporters map it to the
/// OpenInference span kind that observability tools group by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub span_type: String,
    pub execution_id: String,
    pub agent: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status: StatusCode,
    pub status_message: String,
    pub attributes: Vec<(String, Value)>,
    pub events: Vec<Event>,
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64
}

/// The trace id of an execution: the same for every run of it (resumes, replays of the same
/// id), so one execution is one trace.
pub fn trace_id_of(execution_id: &str) -> [u8; 16] {
    let h = blake3::hash(format!("omium-trace\0{execution_id}").as_bytes());
    let mut t = [0u8; 16];
    t.copy_from_slice(&h.as_bytes()[..16]);
    t
}

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new({
        let seed = blake3::hash(format!("{:?}{}{:?}", std::thread::current().id(), now_ns(), std::process::id()).as_bytes());
        u64::from_le_bytes(seed.as_bytes()[..8].try_into().expect("8 bytes")) | 1
    });
}

/// A random, non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    RNG.with(|r| {
        // xorshift64*: unique ids within a trace, not secrets.
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D).max(1).to_be_bytes()
    })
}

impl Span {
    /// A span of an execution's trace, started now.
    pub fn new(execution_id: &str, name: &str, span_type: &str) -> Span {
        Span {
            trace_id: trace_id_of(execution_id),
            span_id: new_span_id(),
            parent: None,
            name: name.into(),
            kind: SpanKind::Internal,
            span_type: span_type.into(),
            execution_id: execution_id.into(),
            agent: String::new(),
            start_ns: now_ns(),
            end_ns: 0,
            status: StatusCode::Unset,
            status_message: String::new(),
            attributes: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.attributes.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key.into(), value)),
        }
    }

    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn finish_ok(&mut self) {
        self.end_ns = now_ns();
        self.status = StatusCode::Ok;
    }

    pub fn finish_error(&mut self, message: &str) {
        self.end_ns = now_ns();
        self.status = StatusCode::Error;
        self.status_message = message.into();
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// W3C `traceparent` of this span: `00-<trace id>-<span id>-01`.
    pub fn traceparent(&self) -> String {
        traceparent(&self.trace_id, &self.span_id)
    }
}

/// `00-<trace id hex>-<span id hex>-01`.
pub fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8]) -> String {
    format!("00-{}-{}-01", crate::hex(trace_id), crate::hex(span_id))
}

/// Parses a W3C `traceparent` header into (trace id, parent span id).
pub fn parse_traceparent(header: &str) -> Result<([u8; 16], [u8; 8])> {
    let bad = |why: &str| Error::InvalidArgument {
        what: "traceparent",
        detail: format!(
            "{header:?} {why}; expected 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
        ),
    };
    let parts: Vec<&str> = header.trim().split('-').collect();
    if parts.len() < 4
        || parts[0].len() != 2
        || parts[1].len() != 32
        || parts[2].len() != 16
        || parts[3].len() != 2
    {
        return Err(bad("is malformed"));
    }
    if parts[0] == "ff" {
        return Err(bad("has the invalid version ff"));
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    for (i, b) in t.iter_mut().enumerate() {
        *b = u8::from_str_radix(&parts[1][2 * i..2 * i + 2], 16).map_err(|_| bad("is not hex"))?;
    }
    for (i, b) in s.iter_mut().enumerate() {
        *b = u8::from_str_radix(&parts[2][2 * i..2 * i + 2], 16).map_err(|_| bad("is not hex"))?;
    }
    if t == [0; 16] || s == [0; 8] {
        return Err(bad("has an all-zero id"));
    }
    Ok((t, s))
}

/// Keys: `spans`: exec_key ‖ start_ns ‖ span_id → Span; `span_index`: `t` ‖ start_ns ‖ span_id
/// → exec_key (by time) and `a` ‖ agent ‖ 0 ‖ start_ns ‖ span_id → exec_key (by agent).
pub(crate) fn span_key(s: &Span) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(&exec_key(&s.execution_id));
    k[16..24].copy_from_slice(&s.start_ns.to_be_bytes());
    k[24..].copy_from_slice(&s.span_id);
    k
}

/// What retention removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpanRetention {
    pub spans_deleted: u64,
}

/// The span pipeline of `store`, started on first use.
fn pipe_of(store: &Store) -> std::sync::Arc<pipe::SpanPipe> {
    store.extension_or_insert_with(|| pipe::SpanPipe::new(store.span_db().ok()))
}

/// Spans of a store: record, flush, export over OTLP, read and prune, and the step diff
/// of two executions (`use omium_core::prelude::*`).
pub trait TraceStore: AsRef<Store> {
    /// Records a finished span. Never blocks on storage or export: the span is queued for a
    /// background writer (and exporter); when the queue is full it is dropped and counted
    /// ([`Store::span_stats`]).
    fn record_span(&self, span: Span) {
        let store: &Store = self.as_ref();
        if store.is_read_only() {
            return;
        }
        pipe_of(store).send(span);
    }

    /// Waits (at most `timeout`) until the OTLP exporter sent what it was given; true when it
    /// did (or no exporter is enabled).
    fn flush_export(&self, timeout: Duration) -> Result<bool> {
        let store: &Store = self.as_ref();
        store.flush_spans()?;
        Ok(store
            .extension::<pipe::SpanPipe>()
            .is_none_or(|p| p.flush_export(timeout)))
    }

    /// Two executions compared position by position (see [`view::diff`]).
    fn diff_executions(&self, a: &str, b: &str) -> Result<Vec<view::StepDiff>> {
        let store: &Store = self.as_ref();
        store.flush_spans()?;
        let (ha, hb) = (store.history(a)?, store.history(b)?);
        let (sa, sb) = (store.spans(a)?, store.spans(b)?);
        Ok(view::diff(&ha, &sa, &hb, &sb))
    }

    /// Waits until every span recorded so far is stored (and handed to the exporter); a
    /// read-only store records none, so there it returns at once.
    fn flush_spans(&self) -> Result<()> {
        let store: &Store = self.as_ref();
        match store.extension::<pipe::SpanPipe>() {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }

    /// Spans recorded, stored, dropped, and the exporter's figures.
    fn span_stats(&self) -> pipe::PipeStats {
        let store: &Store = self.as_ref();
        pipe_of(store).stats()
    }

    /// Starts exporting spans over OTLP/HTTP (protobuf) in the background, and the store's
    /// analytics too when a metrics endpoint is given or named by the variables.
    fn enable_otlp_export(&self, config: ExportConfig) -> Result<()> {
        let store: &Store = self.as_ref();
        let metrics = crate::otlp_metrics::MetricsConfig {
            endpoint: config
                .metrics_endpoint
                .clone()
                .or_else(crate::otlp_metrics::MetricsConfig::env_endpoint),
            service_name: config.service_name.clone(),
            interval: config.metrics_interval,
            timeout: config.timeout,
        };
        if metrics.endpoint.is_some() {
            metrics.url()?; // refused before anything starts
        }
        pipe_of(store).enable_export(config)?;
        if metrics.endpoint.is_some() {
            crate::otlp_metrics::export_store(store, metrics)?;
        }
        Ok(())
    }

    /// The spans of an execution's trace, by start time.
    fn spans(&self, execution_id: &str) -> Result<Vec<Span>> {
        let store: &Store = self.as_ref();
        let key = exec_key(execution_id);
        let mut out: Vec<Span> = Vec::new();
        for source in store.span_sources()? {
            for r in source.scan_prefix(Cf::Spans, &key) {
                let (k, v) = r?;
                out.push(codec::decode("span", &|| crate::hex(&k), &v)?);
            }
        }
        out.retain(|s| s.execution_id == execution_id);
        out.sort_by_key(|s| (s.start_ns, s.span_id));
        Ok(out)
    }

    /// Spans that started in `[from_ns, to_ns)`, of one agent when given, by start time.
    fn spans_between(
        &self,
        from_ns: u64,
        to_ns: u64,
        agent: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Span>> {
        let store: &Store = self.as_ref();
        let start: Vec<u8> = match agent {
            Some(a) => agent_index_key(a, from_ns, &[0; 8]),
            None => time_index_key(from_ns, &[0; 8]).to_vec(),
        };
        let prefix_len = match agent {
            Some(a) => a.len() + 2,
            None => 1,
        };
        // The first `limit` of each source, merged: the first `limit` of them all.
        let mut out = Vec::new();
        for source in store.span_sources()? {
            let mut n = 0;
            for r in source.scan_from(Cf::SpanIndex, &start) {
                let (k, exec) = r?;
                if k[..prefix_len] != start[..prefix_len] || n >= limit {
                    break;
                }
                let ts =
                    u64::from_be_bytes(k[prefix_len..prefix_len + 8].try_into().expect("8 bytes"));
                if ts >= to_ns {
                    break;
                }
                let sk = span_key_of(&exec, &k[prefix_len..]);
                if let Some(v) = source.get(Cf::Spans, &sk)? {
                    out.push(codec::decode::<Span>("span", &|| crate::hex(&sk), &v)?);
                    n += 1;
                }
            }
        }
        out.sort_by_key(|s| (s.start_ns, s.span_id));
        out.truncate(limit);
        Ok(out)
    }

    /// Deletes spans that started more than `age` ago.
    fn delete_spans_older_than(&self, age: Duration) -> Result<SpanRetention> {
        let store: &Store = self.as_ref();
        store.require_writer("deleting spans")?;
        store.flush_spans()?;
        let cutoff = now_ns().saturating_sub(age.as_nanos() as u64);
        let mut report = SpanRetention::default();
        for source in store.span_sources()? {
            loop {
                let mut batch = rocksdb::WriteBatch::default();
                let mut n = 0;
                for r in source.scan_from(Cf::SpanIndex, b"t") {
                    let (k, exec) = r?;
                    if k[0] != b't' || n >= 10_000 {
                        break;
                    }
                    let ts = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes"));
                    if ts >= cutoff {
                        break;
                    }
                    let sk = span_key_of(&exec, &k[1..]);
                    if let Some(v) = source.get(Cf::Spans, &sk)? {
                        let s: Span = codec::decode("span", &|| crate::hex(&sk), &v)?;
                        batch.delete_cf(
                            source.cf(Cf::SpanIndex),
                            agent_index_key(&s.agent, s.start_ns, &s.span_id),
                        );
                    }
                    batch.delete_cf(source.cf(Cf::Spans), sk);
                    batch.delete_cf(source.cf(Cf::SpanIndex), &k);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                report.spans_deleted += n;
                source.write(batch, "deleting old spans")?;
            }
        }
        Ok(report)
    }
}

impl TraceStore for Store {}
