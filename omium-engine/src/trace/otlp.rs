//! OTLP/HTTP (protobuf) export with the `opentelemetry-otlp` crate: a bounded queue that counts
//! what it drops, batches sent from one background thread, retries with backoff. Endpoint,
//! headers and timeout follow the standard `OTEL_EXPORTER_OTLP_*` variables unless set here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use super::{Span, SpanKind, StatusCode, Value};
use crate::error::{Error, Result};

/// How to export.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The full traces URL (`http://127.0.0.1:6006/v1/traces`); None: the
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` variables.
    pub endpoint: Option<String>,
    /// `service.name` of the resource (default: `OTEL_SERVICE_NAME`, else `omium`).
    pub service_name: Option<String>,
    /// Spans waiting for export at most; more are dropped and counted.
    pub queue_capacity: usize,
    /// Spans per request at most.
    pub batch_size: usize,
    /// Attempts per batch (the first included).
    pub attempts: u32,
    /// Per-request timeout (default: `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s).
    pub timeout: Option<Duration>,
    /// The full metrics URL: the store's analytics are exported there too
    /// ([`crate::otlp_metrics`]); None: the `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` /
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` variables, and no metrics when neither is set.
    pub metrics_endpoint: Option<String>,
    /// Between metrics exports (default: `OTEL_METRIC_EXPORT_INTERVAL`, else 60 s).
    pub metrics_interval: Option<Duration>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            endpoint: None,
            service_name: None,
            queue_capacity: 8192,
            batch_size: 512,
            attempts: 3,
            timeout: None,
            metrics_endpoint: None,
            metrics_interval: None,
        }
    }
}

/// What the exporter did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExportStats {
    pub exported: u64,
    /// Dropped because the export queue was full.
    pub dropped: u64,
    /// Lost after every attempt failed.
    pub failed: u64,
    pub retries: u64,
    pub queued: u64,
    pub last_error: Option<String>,
}

pub(crate) struct Exporter {
    queue: Mutex<VecDeque<Span>>,
    wake: Condvar,
    idle: Condvar,
    in_flight: AtomicBool,
    stop: AtomicBool,
    capacity: usize,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Exporter {
    pub(crate) fn start(config: ExportConfig) -> Result<Arc<Exporter>> {
        let bad = |detail: String| Error::InvalidArgument {
            what: "OTLP export",
            detail,
        };
        crate::install_tls_provider();
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(e) = &config.endpoint {
            b = b.with_endpoint(e.clone());
        }
        if let Some(t) = config.timeout {
            b = b.with_timeout(t);
        }
        let mut exporter = b
            .build()
            .map_err(|e| bad(format!("cannot build the exporter: {e}")))?;
        let service = config
            .service_name
            .clone()
            .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
            .unwrap_or_else(|| "omium".into());
        exporter.set_resource(
            &opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        );
        let e = Arc::new(Exporter {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            idle: Condvar::new(),
            in_flight: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            capacity: config.queue_capacity.max(1),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let me = e.clone();
        std::thread::Builder::new()
            .name("omium-otlp".into())
            .spawn(move || me.run(exporter, config))
            .map_err(|err| bad(format!("cannot start the export thread: {err}")))?;
        Ok(e)
    }

    /// Queues spans for export; what does not fit is dropped and counted.
    pub(crate) fn offer(&self, spans: Vec<Span>) {
        let mut q = self.queue.lock();
        for s in spans {
            if q.len() >= self.capacity {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                q.push_back(s);
            }
        }
        drop(q);
        self.wake.notify_one();
    }

    pub(crate) fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            queued: self.queue.lock().len() as u64,
            last_error: self.last_error.lock().clone(),
        }
    }

    pub(crate) fn drain(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.queue.lock();
        while !q.is_empty() || self.in_flight.load(Ordering::Acquire) {
            if self.idle.wait_until(&mut q, deadline).timed_out() {
                return false;
            }
        }
        true
    }

    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    fn run(&self, exporter: opentelemetry_otlp::SpanExporter, config: ExportConfig) {
        loop {
            let batch: Vec<Span> = {
                let mut q = self.queue.lock();
                while q.is_empty() {
                    self.idle.notify_all();
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    self.wake.wait_for(&mut q, Duration::from_millis(500));
                }
                self.in_flight.store(true, Ordering::Release);
                let n = q.len().min(config.batch_size.max(1));
                q.drain(..n).collect()
            };
            let n = batch.len() as u64;
            let data: Vec<SpanData> = batch.iter().map(to_span_data).collect();
            let mut ok = false;
            for attempt in 0..config.attempts.max(1) {
                if attempt > 0 {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100 * 4u64.pow(attempt - 1)));
                }
                match futures_executor::block_on(exporter.export(data.clone())) {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) => *self.last_error.lock() = Some(e.to_string()),
                }
            }
            if ok {
                self.exported.fetch_add(n, Ordering::Relaxed);
            } else {
                self.failed.fetch_add(n, Ordering::Relaxed);
            }
            self.in_flight.store(false, Ordering::Release);
            self.idle.notify_all();
        }
    }
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn kv(k: &str, v: &Value) -> KeyValue {
    let k = k.to_string();
    match v {
        Value::Str(s) => KeyValue::new(k, s.clone()),
        Value::Int(i) => KeyValue::new(k, *i),
        Value::Float(x) => KeyValue::new(k, *x),
        Value::Bool(b) => KeyValue::new(k, *b),
        Value::StrList(l) => KeyValue::new(
            k,
            opentelemetry::Value::Array(opentelemetry::Array::String(
                l.iter().map(|s| s.clone().into()).collect(),
            )),
        ),
    }
}

/// The OpenInference span kind observability tools (Phoenix, Arize) group spans by.
pub fn openinference_kind(span_type: &str) -> &'static str {
    match span_type {
        "llm" => "LLM",
        "tool" => "TOOL",
        "agent" => "AGENT",
        "retriever" => "RETRIEVER",
        "embedding" => "EMBEDDING",
        "workflow" | "step" | "chain" => "CHAIN",
        _ => "CHAIN",
    }
}

pub(crate) fn to_span_data(s: &Span) -> SpanData {
    let mut attributes: Vec<KeyValue> = s.attributes.iter().map(|(k, v)| kv(k, v)).collect();
    attributes.push(KeyValue::new("omium.execution_id", s.execution_id.clone()));
    attributes.push(KeyValue::new("omium.span_type", s.span_type.clone()));
    if !s.agent.is_empty() {
        attributes.push(KeyValue::new("omium.agent", s.agent.clone()));
    }
    if !s
        .attributes
        .iter()
        .any(|(k, _)| k == "openinference.span.kind")
    {
        attributes.push(KeyValue::new(
            "openinference.span.kind",
            openinference_kind(&s.span_type),
        ));
    }
    let events = s
        .events
        .iter()
        .map(|e| {
            opentelemetry::trace::Event::new(
                e.name.clone(),
                time(e.time_ns),
                e.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
                0,
            )
        })
        .collect();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.trace_id),
            SpanId::from_bytes(s.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: s.parent.map(SpanId::from_bytes).unwrap_or(SpanId::INVALID),
        parent_span_is_remote: false,
        span_kind: match s.kind {
            SpanKind::Internal => opentelemetry::trace::SpanKind::Internal,
            SpanKind::Server => opentelemetry::trace::SpanKind::Server,
            SpanKind::Client => opentelemetry::trace::SpanKind::Client,
            SpanKind::Producer => opentelemetry::trace::SpanKind::Producer,
            SpanKind::Consumer => opentelemetry::trace::SpanKind::Consumer,
        },
        name: s.name.clone().into(),
        start_time: time(s.start_ns),
        end_time: time(s.end_ns.max(s.start_ns)),
        attributes,
        dropped_attributes_count: 0,
        events: {
            let mut e = SpanEvents::default();
            e.events = events;
            e
        },
        links: SpanLinks::default(),
        status: match s.status {
            StatusCode::Unset => opentelemetry::trace::Status::Unset,
            StatusCode::Ok => opentelemetry::trace::Status::Ok,
            StatusCode::Error => opentelemetry::trace::Status::error(s.status_message.clone()),
        },
        instrumentation_scope: InstrumentationScope::builder("omium")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    }
}
