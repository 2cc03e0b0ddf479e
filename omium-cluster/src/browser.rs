//! What a web page could make a browser send, and what every HTTP listener of omium refuses of
//! it: requests carrying a foreign `Origin` (cross-site requests), POSTs that are not JSON (HTML
//! forms), and `Host` names the listener does not answer to (DNS rebinding). The dashboard's own
//! pages are the one origin let through, on the dashboard's listener only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::execution::hostname;
use crate::listen::refused;

/// The `Host` names a TCP listener answers to.
pub(crate) struct Hosts {
    port: u16,
    loopback: bool,
    /// Bound to every address: the machine's own name is fine too.
    any: bool,
    allowed: Vec<String>,
}

impl Hosts {
    /// The names a listener bound to `bound` answers to, with `allowed` besides.
    pub(crate) fn new(bound: SocketAddr, allowed: Vec<String>) -> Hosts {
        Hosts {
            port: bound.port(),
            loopback: bound.ip().is_loopback(),
            any: bound.ip().is_unspecified(),
            allowed,
        }
    }

    fn allows(&self, host: &str) -> bool {
        let (name, port) = split_host(host);
        if port.is_some_and(|p| p != self.port) {
            return false;
        }
        // An address is safe: a web page can only make a browser send one when the page itself
        // was loaded from that address. A name can be re-pointed at this machine (DNS rebinding).
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        let name = name.to_ascii_lowercase();
        (self.loopback && name == "localhost")
            || (self.any && name == hostname().to_ascii_lowercase())
            || self.allowed.iter().any(|a| {
                let (n, p) = split_host(a);
                n.eq_ignore_ascii_case(&name) && p.is_none_or(|p| p == self.port)
            })
    }
}

/// `name:port`, `[v6]:port`, `name` or `v6` into the name and the port.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match host.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') => (n, p.parse().ok()),
        _ => (host, None),
    }
}

/// What a web page could send, refused on every listener: a request that carries an `Origin`
/// (browsers add it to cross-site requests; programs do not), a POST that is not JSON (an HTML
/// form can POST `text/plain` without asking), and on TCP a `Host` this daemon does not answer
/// to. With the dashboard (`ui`), its own pages' calls (the `Origin` is this listener's own
/// host and port, which the `Host` check has accepted) are let through.
pub(crate) async fn guard(
    hosts: Option<Arc<Hosts>>,
    ui: bool,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let own_page = |origin: &[u8]| ui && hosts.is_some() && same_origin(origin, host);
    if let Some(origin) = headers
        .get(header::ORIGIN)
        .filter(|o| !own_page(o.as_bytes()))
    {
        return closing(refused(
            StatusCode::FORBIDDEN,
            "unauthorized",
            format!(
                "requests from web pages are refused (Origin: {}): omium serve is an API for \
                 programs; use `omium ui` for a browser",
                String::from_utf8_lossy(origin.as_bytes())
            ),
        ));
    }
    if let Some(hosts) = &hosts {
        if !hosts.allows(host) {
            return closing(refused(
                StatusCode::FORBIDDEN,
                "unauthorized",
                format!(
                    "Host {host:?} is not a name this daemon answers to (its address, \
                     {}or a name given with --allow-host); a name that merely resolves here \
                     could be a web page's (DNS rebinding)",
                    if hosts.loopback { "localhost, " } else { "" }
                ),
            ));
        }
    }
    if req.method() == axum::http::Method::POST {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            let given = headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "none".into());
            return closing(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_argument",
                format!(
                    "invalid Content-Type of {}: {given}; expected application/json",
                    req.uri().path()
                ),
            ));
        }
    }
    next.run(req).await
}

/// Whether a browser's `Origin` is the dashboard's own (the page was loaded from this host and
/// port): the only web page whose calls are let through. `host` has been checked already
/// against the names this listener answers to.
pub fn same_origin(origin: &[u8], host: &str) -> bool {
    let origin = String::from_utf8_lossy(origin);
    ["http://", "https://"].iter().any(|s| {
        origin
            .strip_prefix(s)
            .is_some_and(|o| o.eq_ignore_ascii_case(host))
    })
}

/// A refusal answered before the body was read: the connection closes rather than carry an
/// unread body into the next request.
pub(crate) fn closing(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}
