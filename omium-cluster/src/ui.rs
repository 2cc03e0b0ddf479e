//! `omium ui`: the web dashboard. Its files (`omium-cluster/ui/`) are embedded in the binary
//! and served beside the JSON API they call, so the dashboard reads and changes nothing the
//! API does not: over a store (`omium serve`'s router on a read-only handle, controls through
//! the writer's mailbox) or in front of a daemon (a proxy that passes the caller's key on).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::error::{Error, Result};
use crate::listen::{refused, Listener};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

/// What a page may load and where it may connect: this origin only. Inline styles are allowed
/// (the pages set widths and colours of charts); scripts are not.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, x)| x) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A file of the dashboard: from `$OMIUM_UI_DIR` when set (to work on the pages without
/// rebuilding), else the embedded copy.
fn asset(name: &str) -> Option<Vec<u8>> {
    if name.contains('/') || name.contains("..") || name.starts_with('.') {
        return None;
    }
    if let Some(dir) = std::env::var_os("OMIUM_UI_DIR") {
        return std::fs::read(std::path::Path::new(&dir).join(name)).ok();
    }
    embedded::ASSETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| b.to_vec())
}

fn file(name: &str) -> Response {
    match asset(name) {
        Some(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => refused(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the dashboard has no file {name:?}"),
        ),
    }
}

/// The dashboard's pages: `/` and `/ui/<file>`. They hold no data (the API calls carry the
/// key), so they need none.
pub fn pages<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

/// The dashboard in front of a daemon: pages here, `/v1/*` passed to `upstream` with the
/// caller's own key (the daemon authenticates and authorizes every call).
pub struct Proxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

struct Upstream {
    base: String,
    client: reqwest::Client,
}

impl Proxy {
    /// Serves the dashboard on `listen` for the daemon at `url` (`http://` or `https://`, its
    /// certificate checked against `$OMIUM_CA_FILE`). Must run inside a tokio runtime.
    pub async fn start(url: &str, listen: &str, allowed_hosts: Vec<String>) -> Result<Proxy> {
        let bad = |what: &'static str, detail: String| Error::InvalidArgument { what, detail };
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(bad(
                "--url",
                format!(
                    "{url:?}: omium ui reaches a daemon over HTTP; expected http://HOST:PORT or \
                     https://HOST:PORT (a daemon on a unix socket only: give omium ui --store)"
                ),
            ));
        }
        omium_engine::install_tls_provider();
        let ca = std::env::var_os("OMIUM_CA_FILE").map(std::path::PathBuf::from);
        let tls = omium_engine::serve::client::tls_client(ca.as_deref())?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .build()
            .map_err(|e| bad("--url", format!("cannot build the HTTP client: {e}")))?;
        let addr: SocketAddr = listen.parse().map_err(|e| {
            bad(
                "--listen",
                format!("{listen:?} is not host:port ({e}); expected e.g. 127.0.0.1:7800"),
            )
        })?;
        let (listener, bound) = crate::listen::bind_tcp(addr, "--listen").await?;
        let hosts = Arc::new(crate::browser::Hosts::new(bound, allowed_hosts));
        let upstream = Arc::new(Upstream { base, client });
        let router = pages::<Arc<Upstream>>()
            .route("/v1/{*rest}", any(forward))
            .route("/openapi.yaml", get(forward))
            .with_state(upstream)
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                crate::browser::guard(Some(hosts.clone()), true, req, next)
            }));
        let task = crate::listen::serve(
            Listener::Tcp(listener),
            None,
            router,
            crate::listen::Limits::default(),
        );
        Ok(Proxy { addr: bound, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers a call carries on to the daemon, and those of its answer carried back.
const FORWARDED: [&str; 4] = ["authorization", "content-type", "accept", "last-event-id"];
const RETURNED: [&str; 4] = [
    "content-type",
    "content-disposition",
    "retry-after",
    "cache-control",
];

/// One call passed to the daemon; its answer (an event stream too) streamed back.
async fn forward(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    let headers: HeaderMap = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_argument",
                format!("the body of {path} could not be read: {e}"),
            )
        }
    };
    let mut call = up
        .client
        .request(method, format!("{}{path}", up.base))
        .body(body);
    for h in FORWARDED {
        if let Some(v) = headers.get(h) {
            call = call.header(h, v);
        }
    }
    match call.send().await {
        Ok(answer) => {
            let mut r = Response::builder().status(answer.status());
            for h in RETURNED {
                if let Some(v) = answer.headers().get(h) {
                    r = r.header(h, v);
                }
            }
            r.body(Body::from_stream(answer.bytes_stream()))
                .unwrap_or_else(|e| {
                    refused(
                        StatusCode::BAD_GATEWAY,
                        "server_unavailable",
                        format!("{e}"),
                    )
                })
        }
        Err(e) => refused(
            StatusCode::BAD_GATEWAY,
            "server_unavailable",
            format!("the daemon at {} did not answer: {e}", up.base),
        ),
    }
    .into_response()
}
