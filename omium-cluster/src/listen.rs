//! Serving a router on a listener with the limits every listener needs: a cap on connections
//! (in all and per address), TLS when configured, a deadline for a request's headers, for a
//! whole request, and for a connection that does nothing, and who is at the other end.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, Result};

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Open connections from one address at once.
    pub max_connections_per_ip: usize,
    /// The TLS handshake and a request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed.
    pub idle_timeout: Duration,
    /// A request must be read and answered within this (long polls answer within 30 s).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Who is at the other end of a connection. On the unix socket the kernel says which process
/// and user (`SO_PEERCRED`); on TCP, the address, and with mutual TLS the `omium://` identity
/// its certificate names.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub addr: Option<SocketAddr>,
    pub identity: Option<Arc<str>>,
}

/// An error answer as every API of ours gives it: `{code, message}`.
pub fn refused(
    status: axum::http::StatusCode,
    code: &str,
    message: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        axum::Json(serde_json::json!({"code": code, "message": message})),
    )
        .into_response()
}

/// The server side of TLS 1.3 without client certificates (`omium serve`), from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    omium_engine::install_tls_provider();
    let config = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_no_client_auth()
        .with_single_cert(
            crate::tls::certs(cert, "--tls-cert")?,
            crate::tls::key(key)?,
        )
        .map_err(|e| Error::InvalidArgument {
            what: "--tls-cert",
            detail: format!(
                "{} does not fit the key {}: {e}",
                cert.display(),
                key.display()
            ),
        })?;
    Ok(Arc::new(config))
}

/// Counts open connections in all and per address.
struct Slots {
    limits: Limits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One taken slot, given back when the connection ends.
struct Slot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

impl Slots {
    fn take(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<Slot> {
        let mut open = self.open.lock();
        if open.0 >= self.limits.max_connections {
            return None;
        }
        if let Some(ip) = ip {
            let n = open.1.entry(ip).or_insert(0);
            if *n >= self.limits.max_connections_per_ip {
                return None;
            }
            *n += 1;
        }
        open.0 += 1;
        Some(Slot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock();
        open.0 -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = open.1.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(&ip);
                }
            }
        }
    }
}

/// A TLS server configuration built from files and built again when one of them changes (a
/// certificate renewed by cert-manager, or replaced by hand): new connections get the new one,
/// open ones keep theirs, nothing restarts. Files that do not read or fit any more keep the
/// last good configuration in use (said once on stderr) until they do.
pub struct TlsSource {
    files: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<Arc<rustls::ServerConfig>> + Send + Sync>,
    state: Mutex<TlsState>,
}

struct TlsState {
    config: Arc<rustls::ServerConfig>,
    stamps: Vec<Option<std::time::SystemTime>>,
    checked: std::time::Instant,
    failed: bool,
}

/// How often the files of a [`TlsSource`] are looked at (a `stat` each).
const TLS_CHECK: Duration = Duration::from_secs(1);

fn stamps(files: &[PathBuf]) -> Vec<Option<std::time::SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

impl TlsSource {
    /// Builds the configuration now (an error is the caller's: the files are wrong at start).
    pub fn new(
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<Arc<rustls::ServerConfig>> + Send + Sync + 'static,
    ) -> Result<Arc<TlsSource>> {
        let config = build()?;
        Ok(Arc::new(TlsSource {
            state: Mutex::new(TlsState {
                config,
                stamps: stamps(&files),
                checked: std::time::Instant::now(),
                failed: false,
            }),
            files,
            build: Box::new(build),
        }))
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        let mut st = self.state.lock();
        if st.checked.elapsed() >= TLS_CHECK {
            st.checked = std::time::Instant::now();
            let now = stamps(&self.files);
            if now != st.stamps {
                match (self.build)() {
                    Ok(config) => {
                        st.config = config;
                        st.stamps = now;
                        st.failed = false;
                    }
                    Err(e) => {
                        if !st.failed {
                            eprintln!(
                                "omium: the TLS files changed but cannot be used ({e}); the \
                                 previous certificate stays in use until they can"
                            );
                        }
                        st.failed = true;
                    }
                }
            }
        }
        st.config.clone()
    }
}

/// Listens on `addr` (port 0: any free one); the listener and the address it is bound to.
/// `what` names the flag the address came from in the error.
pub async fn bind_tcp(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let bad = |detail: String| Error::InvalidArgument { what, detail };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| bad(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| bad(e.to_string()))?;
    Ok((listener, bound))
}

/// A listener of connections.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Serves `router` on `listener` until the returned task is aborted.
pub fn serve(
    listener: Listener,
    tls: Option<Arc<TlsSource>>,
    router: Router,
    limits: Limits,
) -> tokio::task::JoinHandle<()> {
    let slots = Arc::new(Slots {
        limits: limits.clone(),
        open: Mutex::new((0, HashMap::new())),
    });
    tokio::spawn(async move {
        loop {
            let accepted = match &listener {
                Listener::Tcp(l) => l.accept().await.map(|(s, addr)| {
                    let _ = s.set_nodelay(true);
                    (
                        Conn::Tcp(s),
                        Peer {
                            addr: Some(addr),
                            ..Peer::default()
                        },
                    )
                }),
                Listener::Unix(l) => l.accept().await.map(|(s, _)| {
                    let cred = s.peer_cred().ok();
                    let peer = Peer {
                        pid: cred
                            .and_then(|c| c.pid())
                            .and_then(|p| u32::try_from(p).ok())
                            .filter(|&p| p != 0),
                        uid: cred.map(|c| c.uid()),
                        ..Peer::default()
                    };
                    (Conn::Unix(s), peer)
                }),
            };
            let (conn, peer) = match accepted {
                Ok(c) => c,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over the cap: closed at once (dropped).
            let Some(slot) = slots.take(peer.addr.map(|a| a.ip())) else {
                continue;
            };
            let acceptor = tls
                .as_ref()
                .map(|t| tokio_rustls::TlsAcceptor::from(t.current()));
            let (router, limits) = (router.clone(), limits.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match (conn, acceptor) {
                    (Conn::Tcp(s), Some(acceptor)) => {
                        let handshake =
                            tokio::time::timeout(limits.header_timeout, acceptor.accept(s)).await;
                        if let Ok(Ok(tls)) = handshake {
                            let mut peer = peer;
                            peer.identity = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| crate::tls::identity_of(c))
                                .map(Arc::from);
                            connection(tls, peer, router, &limits).await;
                        }
                    }
                    (Conn::Tcp(s), None) => connection(s, peer, router, &limits).await,
                    (Conn::Unix(s), _) => connection(s, peer, router, &limits).await,
                }
            });
        }
    })
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn connection<S>(io: S, peer: Peer, router: Router, limits: &Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request_timeout = limits.request_timeout;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            let mut router = router.clone();
            async move {
                use tower_service::Service;
                let answer = tokio::time::timeout(request_timeout, router.call(req)).await;
                Ok::<_, std::convert::Infallible>(match answer {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => refused(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "timeout",
                        format!(
                            "the request was not read and answered within {} s",
                            request_timeout.as_secs()
                        ),
                    ),
                })
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let io = TokioIo::new(Idle::new(io, limits.idle_timeout));
    let _ = builder.serve_connection(io, service).await;
}

/// A connection that fails once nothing was read or written on it for `limit`.
struct Idle<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Idle<S> {
    fn new(inner: S, limit: Duration) -> Idle<S> {
        Idle {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn progressed(&mut self) {
        let at = tokio::time::Instant::now() + self.limit;
        self.deadline.as_mut().reset(at);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "the connection was idle")
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.progressed();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
