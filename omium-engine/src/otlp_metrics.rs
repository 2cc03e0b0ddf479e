//! The analytics instruments over OTLP/HTTP (protobuf): the same metric families as the
//! Prometheus `/metrics` route ([`crate::prometheus`]), pushed to an OTLP receiver's
//! `/v1/metrics` on an interval by a background thread.
//!
//! Counters go out as cumulative monotonic sums named without Prometheus's `_total` suffix
//! (an OTLP-to-Prometheus bridge adds it back), gauges as gauges, histograms as cumulative
//! explicit-bucket histograms with the same bounds. Endpoint, headers, timeout and interval
//! follow the standard `OTEL_EXPORTER_OTLP_*` and `OTEL_METRIC_EXPORT_INTERVAL` variables
//! unless set in [`MetricsConfig`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parking_lot::{Condvar, Mutex};
use prost::Message;
use serde::Serialize;

use omium_storage::Store;

use crate::error::{Error, Result};
use crate::prometheus::{Family, Kind, Point};

/// Where and how often to export. Every `None` falls back to the standard variables.
#[derive(Clone, Debug, Default)]
pub struct MetricsConfig {
    /// The full metrics URL (`http://127.0.0.1:4318/v1/metrics`); None:
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/metrics`.
    pub endpoint: Option<String>,
    /// `service.name` of the resource (default: `OTEL_SERVICE_NAME`, else `omium`).
    pub service_name: Option<String>,
    /// Between exports (default: `OTEL_METRIC_EXPORT_INTERVAL` in ms, else 60 s).
    pub interval: Option<Duration>,
    /// Per request (default: `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT` / `_TIMEOUT` in ms, else 10 s).
    pub timeout: Option<Duration>,
}

impl MetricsConfig {
    /// The URL to export to: the configured one, else the variables'. An error names what
    /// is missing or not an http(s) URL.
    pub fn url(&self) -> Result<String> {
        let bad = |detail: String| Error::InvalidArgument {
            what: "OTLP metrics export",
            detail,
        };
        let url = self
            .endpoint
            .clone()
            .or_else(Self::env_endpoint)
            .ok_or_else(|| {
                bad(
                    "no endpoint: pass one, or set OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or \
                 OTEL_EXPORTER_OTLP_ENDPOINT"
                        .into(),
                )
            })?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(format!(
                "endpoint {url:?} is not an http:// or https:// URL"
            )));
        }
        Ok(url)
    }

    /// The metrics URL the variables name, if any.
    pub fn env_endpoint() -> Option<String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").or_else(|| {
            var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| format!("{}/v1/metrics", base.trim_end_matches('/')))
        })
    }
}

/// What the exporter did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsStats {
    /// Requests the receiver accepted.
    pub exported: u64,
    /// Requests that failed (the next interval sends current values again).
    pub failed: u64,
    pub last_error: Option<String>,
}

/// Where the families come from; `None` when the source is gone (its store closed).
pub type Source = Box<dyn Fn() -> Option<Result<Vec<Family>>> + Send>;

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    exported: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A running export: every interval, and once more when stopped.
pub struct MetricsExporter {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Target {
    url: String,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
    service: String,
    start_ns: u64,
}

impl MetricsExporter {
    /// Starts exporting what `source` gives. Fails when no endpoint is configured or named by
    /// the variables, or the endpoint is not an http(s) URL.
    pub fn start(config: MetricsConfig, source: Source) -> Result<MetricsExporter> {
        let url = config.url()?;
        let bad = |detail: String| Error::InvalidArgument {
            what: "OTLP metrics export",
            detail,
        };
        let ms = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let interval = config
            .interval
            .or_else(|| ms("OTEL_METRIC_EXPORT_INTERVAL"))
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_millis(50));
        let timeout = config
            .timeout
            .or_else(|| ms("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"))
            .or_else(|| ms("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .unwrap_or(Duration::from_secs(10));
        let mut headers =
            parse_headers(&std::env::var("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default());
        headers.extend(parse_headers(
            &std::env::var("OTEL_EXPORTER_OTLP_METRICS_HEADERS").unwrap_or_default(),
        ));
        crate::install_tls_provider();
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| url.starts_with(p));
        let mut cfg = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false);
        if loopback {
            cfg = cfg.proxy(None);
        }
        let target = Target {
            url,
            headers,
            agent: cfg.build().into(),
            service: config
                .service_name
                .clone()
                .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
                .unwrap_or_else(|| "omium".into()),
            start_ns: now_ns(),
        };
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let me = shared.clone();
        let thread = std::thread::Builder::new()
            .name("omium-otlp-metrics".into())
            .spawn(move || me.run(&target, &source, interval))
            .map_err(|e| bad(format!("cannot start the export thread: {e}")))?;
        Ok(MetricsExporter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn stats(&self) -> MetricsStats {
        MetricsStats {
            exported: self.shared.exported.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            last_error: self.shared.last_error.lock().clone(),
        }
    }

    /// Exports once more (when the source is still there) and stops.
    pub fn stop(&self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        let mut thread = self.thread.lock();
        // The export thread may hold the last handle of a store that closes this exporter:
        // it must not wait for itself (it ends after the export it is in).
        if thread
            .as_ref()
            .is_some_and(|t| t.thread().id() != std::thread::current().id())
        {
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for MetricsExporter {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn run(&self, target: &Target, source: &Source, interval: Duration) {
        loop {
            let stopping = {
                let mut stop = self.stop.lock();
                if !*stop {
                    self.wake.wait_for(&mut stop, interval);
                }
                *stop
            };
            let Some(families) = source() else { return };
            let outcome = families
                .map_err(|e| format!("reading the store's analytics: {e}"))
                .and_then(|f| target.send(&f));
            match outcome {
                Ok(()) => {
                    self.exported.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    *self.last_error.lock() = Some(e);
                }
            }
            if stopping {
                return;
            }
        }
    }
}

impl Target {
    /// One request; an error names the receiver and what it answered (kept in the stats).
    fn send(&self, families: &[Family]) -> std::result::Result<(), String> {
        let body = request(families, &self.service, self.start_ns, now_ns()).encode_to_vec();
        let mut req = self
            .agent
            .post(&self.url)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send(&body[..]) {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!(
                "{} answered HTTP {}",
                self.url,
                resp.status().as_u16()
            )),
            Err(e) => Err(format!("{} could not be reached: {e}", self.url)),
        }
    }
}

/// A store's own export ([`export_store`]), stopped when the store closes.
struct StoreExport(MetricsExporter);

impl omium_storage::Extension for StoreExport {
    fn close(&self) {
        self.0.stop();
    }
}

/// Exports `store`'s analytics ([`crate::prometheus::families`]) until it closes. Once per
/// store: a second call leaves the first export running.
pub fn export_store(store: &Store, config: MetricsConfig) -> Result<()> {
    if store.extension::<StoreExport>().is_some() {
        return Ok(());
    }
    let exporter = MetricsExporter::start(config, store_source(store))?;
    let _ = store.attach_extension(StoreExport(exporter));
    Ok(())
}

/// `store`'s analytics while it is open (the exporter does not keep it open).
pub fn store_source(store: &Store) -> Source {
    let weak = store.downgrade();
    Box::new(move || {
        let store = weak.upgrade()?;
        Some(crate::prometheus::families(&store))
    })
}

/// `k1=v1,k2=v2` with percent-encoded values (the OTLP exporter specification).
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// The OTLP request carrying `families`, cumulative since `start_ns`, observed at `now_ns`.
pub fn request(
    families: &[Family],
    service: &str,
    start_ns: u64,
    now_ns: u64,
) -> ExportMetricsServiceRequest {
    let metrics = families
        .iter()
        .filter(|f| !f.samples.is_empty())
        .map(|f| to_metric(f, start_ns, now_ns))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "omium".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn to_metric(f: &Family, start_ns: u64, now_ns: u64) -> Metric {
    let attributes = |l: &[(String, String)]| l.iter().map(|(k, v)| string(k, v)).collect();
    let numbers = || {
        f.samples
            .iter()
            .filter_map(|(l, p)| match p {
                Point::Value(v) => Some(NumberDataPoint {
                    attributes: attributes(l),
                    start_time_unix_nano: start_ns,
                    time_unix_nano: now_ns,
                    value: Some(number_data_point::Value::AsDouble(*v)),
                    ..Default::default()
                }),
                Point::Histogram { .. } => None,
            })
            .collect()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match f.kind {
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: numbers(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: numbers(),
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: f
                .samples
                .iter()
                .filter_map(|(l, p)| match p {
                    Point::Histogram {
                        bounds,
                        cumulative,
                        count,
                        sum,
                    } => {
                        // OTLP counts each bucket on its own: (previous bound, bound], and
                        // one more above the last bound.
                        let mut counts = Vec::with_capacity(bounds.len() + 1);
                        let mut below = 0;
                        for n in cumulative.iter().chain(std::iter::once(count)) {
                            counts.push(n.saturating_sub(below));
                            below = below.max(*n);
                        }
                        Some(HistogramDataPoint {
                            attributes: attributes(l),
                            start_time_unix_nano: start_ns,
                            time_unix_nano: now_ns,
                            count: *count,
                            sum: Some(*sum),
                            bucket_counts: counts,
                            explicit_bounds: bounds.to_vec(),
                            ..Default::default()
                        })
                    }
                    Point::Value(_) => None,
                })
                .collect(),
            aggregation_temporality: cumulative,
        }),
    };
    let (name, unit) = otlp_name(f.name);
    Metric {
        name: name.into(),
        description: f.help.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// The OTLP name and unit of a Prometheus family name: counters lose `_total`, and a
/// `_seconds` family has the unit `s` (a bridge back to Prometheus gives the same names).
fn otlp_name(prometheus: &str) -> (&str, &str) {
    let name = prometheus.strip_suffix("_total").unwrap_or(prometheus);
    let unit = if name.ends_with("_seconds") { "s" } else { "" };
    (name, unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_each_bucket_on_its_own() {
        let mut f = Family::new("x_seconds", Kind::Histogram, "x");
        f.samples.push((
            vec![("workflow".into(), "w".into())],
            Point::Histogram {
                bounds: &[0.1, 1.0, 5.0],
                cumulative: vec![1, 2, 3],
                count: 4,
                sum: 9.45,
            },
        ));
        let m = to_metric(&f, 1, 2);
        assert_eq!(m.name, "x_seconds");
        assert_eq!(m.unit, "s");
        let Some(metric::Data::Histogram(h)) = m.data else {
            panic!("not a histogram: {m:?}")
        };
        let p = &h.data_points[0];
        assert_eq!(p.bucket_counts, [1, 1, 1, 1]);
        assert_eq!(p.explicit_bounds, [0.1, 1.0, 5.0]);
        assert_eq!((p.count, p.sum), (4, Some(9.45)));
        assert_eq!(p.attributes, [string("workflow", "w")]);
    }

    #[test]
    fn counters_are_cumulative_monotonic_sums_without_total() {
        let mut f = Family::new("omium_steps_total", Kind::Counter, "Steps.");
        f.value(&[("agent", "a")], 3.0);
        let m = to_metric(&f, 5, 9);
        assert_eq!(m.name, "omium_steps");
        let Some(metric::Data::Sum(s)) = m.data else {
            panic!("not a sum: {m:?}")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(s.data_points[0].start_time_unix_nano, 5);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(3.0))
        );
    }

    #[test]
    fn headers_are_pairs_with_percent_encoded_values() {
        assert_eq!(
            parse_headers("authorization=Bearer%20abc, x-tenant = acme,bad,=x"),
            [
                ("authorization".to_string(), "Bearer abc".to_string()),
                ("x-tenant".to_string(), "acme".to_string())
            ]
        );
    }
}
