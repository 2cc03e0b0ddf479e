//! The blocking client of `omium serve`: HTTP/1.1 with keep-alive over a unix socket or TCP,
//! a small pool of connections so that threads of one worker call at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::unb64;
use crate::error::{Error, Result};
use crate::{Checkpoint, Execution};

#[derive(Clone, Debug)]
enum Target {
    Unix(PathBuf),
    Tcp(String),
    /// `host:port`, and the TLS configuration that checks the daemon's certificate.
    Tls(String, Arc<rustls::ClientConfig>),
}

trait Stream: Read + Write + Send {}
impl<S: Read + Write + Send> Stream for S {}

struct Conn {
    /// Reads are buffered; requests are written through `get_mut()` (HTTP/1.1 takes turns).
    io: BufReader<Box<dyn Stream>>,
}

/// TLS that trusts the certificates of `ca_file` (PEM), or the public web's roots without one.
pub fn tls_client(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    crate::install_tls_provider();
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: String| Error::InvalidArgument {
                what: "CA file (OMIUM_CA_FILE)",
                detail: format!("{}: {e}; expected PEM certificates", path.display()),
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

struct Inner {
    target: Target,
    url: String,
    api_key: Option<String>,
    idle: Mutex<Vec<Conn>>,
    /// Spans waiting to be sent (in batches, by the calling thread when many are queued, else
    /// by a background thread every 200 ms).
    spans: Mutex<Vec<crate::trace::Span>>,
}

/// A connection to an `omium serve` daemon. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn unavailable(url: &str, detail: impl std::fmt::Display) -> Error {
    Error::ServerUnavailable {
        url: url.to_string(),
        detail: detail.to_string(),
    }
}

impl Client {
    /// `unix:///path/to/omium.sock` (or a bare path), `http://127.0.0.1:7700`, or
    /// `https://host:port` (the daemon's certificate checked against `$OMIUM_CA_FILE`, else the
    /// public web's roots). Checks that a daemon answers.
    pub fn connect(url: &str, api_key: Option<&str>) -> Result<Client> {
        let ca = std::env::var_os("OMIUM_CA_FILE").map(PathBuf::from);
        Client::connect_with(url, api_key, ca.as_deref())
    }

    /// [`Client::connect`] with the CA certificates (PEM) that an `https:` daemon's certificate
    /// must chain to.
    pub fn connect_with(
        url: &str,
        api_key: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client> {
        let target = if let Some(p) = url.strip_prefix("unix://") {
            Target::Unix(PathBuf::from(p))
        } else if let Some(a) = url.strip_prefix("http://") {
            Target::Tcp(a.trim_end_matches('/').to_string())
        } else if let Some(a) = url.strip_prefix("https://") {
            Target::Tls(a.trim_end_matches('/').to_string(), tls_client(ca_file)?)
        } else if url.starts_with('/') {
            Target::Unix(PathBuf::from(url))
        } else {
            return Err(Error::InvalidArgument {
                what: "url",
                detail: format!(
                    "{url:?}: expected unix:///path/to/omium.sock, http://host:port or \
                     https://host:port"
                ),
            });
        };
        let client = Client {
            inner: Arc::new(Inner {
                target,
                url: url.to_string(),
                api_key: api_key.map(str::to_string),
                idle: Mutex::new(Vec::new()),
                spans: Mutex::new(Vec::new()),
            }),
        };
        client.health()?;
        let weak = Arc::downgrade(&client.inner);
        let _ = std::thread::Builder::new()
            .name("omium-serve-spans".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let Some(inner) = weak.upgrade() else { return };
                let _ = Client { inner }.flush_spans();
            });
        Ok(client)
    }

    /// Queues a span for the daemon's store.
    pub fn record_span(&self, span: crate::trace::Span) {
        let full = {
            let mut q = self.inner.spans.lock();
            q.push(span);
            q.len() >= 256
        };
        if full {
            let _ = self.flush_spans();
        }
    }

    /// Sends the queued spans and waits until the daemon stored them.
    pub fn flush_spans(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.inner.spans.lock());
        if !batch.is_empty() {
            match self.call("record_spans", json!({ "spans": batch })) {
                // A key that may not write (a reader's) records no spans: they are dropped,
                // not an error of the calls they describe.
                Err(e) if e.code() == "forbidden" => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    fn open(&self) -> Result<Conn> {
        let url = &self.inner.url;
        let io: Box<dyn Stream> = match &self.inner.target {
            Target::Unix(p) => Box::new(UnixStream::connect(p).map_err(|e| unavailable(url, e))?),
            Target::Tcp(a) => {
                let s = TcpStream::connect(a).map_err(|e| unavailable(url, e))?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Target::Tls(a, config) => {
                let host = a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| unavailable(url, format!("{host:?} is no server name: {e}")))?;
                let tls = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| unavailable(url, e))?;
                let s = TcpStream::connect(a).map_err(|e| unavailable(url, e))?;
                let _ = s.set_nodelay(true);
                let mut stream = rustls::StreamOwned::new(tls, s);
                // The handshake now, so that a certificate the CA did not sign is named as such.
                while stream.conn.is_handshaking() {
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .map_err(|e| unavailable(url, format!("TLS: {e}")))?;
                }
                Box::new(stream)
            }
        };
        Ok(Conn {
            io: BufReader::new(io),
        })
    }

    fn roundtrip(
        &self,
        conn: &mut Conn,
        verb: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        // The daemon answers only to its own address in `Host` (DNS rebinding).
        let host = match &self.inner.target {
            Target::Tcp(a) | Target::Tls(a, _) => a.as_str(),
            Target::Unix(_) => "localhost",
        };
        let mut head = format!(
            "{verb} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(k) = &self.inner.api_key {
            head.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        head.push_str("\r\n");
        let w = conn.io.get_mut();
        w.write_all(head.as_bytes())?;
        w.write_all(body)?;
        w.flush()?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if conn.io.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("not an HTTP response"))?;
        let mut length = None;
        loop {
            line.clear();
            conn.io.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or_else(|| bad("a response without Content-Length"))?;
        let mut out = vec![0; length];
        conn.io.read_exact(&mut out)?;
        Ok((status, out))
    }

    fn request(&self, verb: &str, path: &str, body: &[u8]) -> Result<Vec<u8>> {
        let url = &self.inner.url;
        // A pooled connection may have been closed by the daemon since: one fresh retry. Every
        // method is safe to send twice only if the first attempt never reached the daemon, which
        // is the case when writing or reading the first byte fails on a stale connection.
        let pooled = self.inner.idle.lock().pop();
        let (mut conn, fresh) = match pooled {
            Some(c) => (c, false),
            None => (self.open()?, true),
        };
        let (status, bytes) = match self.roundtrip(&mut conn, verb, path, body) {
            Ok(r) => r,
            Err(e) if !fresh && is_stale(&e) => {
                conn = self.open()?;
                self.roundtrip(&mut conn, verb, path, body)
                    .map_err(|e| unavailable(url, e))?
            }
            Err(e) => return Err(unavailable(url, e)),
        };
        self.inner.idle.lock().push(conn);
        if status == 200 {
            return Ok(bytes);
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = v["code"].as_str().unwrap_or("server_error");
        let message = v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)));
        Err(Error::Remote {
            code: crate::error::known_code(code),
            message,
        })
    }

    /// Calls a method; the answer as JSON.
    pub fn call(&self, method: &str, args: Value) -> Result<Value> {
        let body = serde_json::to_vec(&args).expect("JSON values serialize");
        let bytes = self.request("POST", &format!("/v1/{method}"), &body)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            unavailable(
                &self.inner.url,
                format!("{method}: the answer is not JSON: {e}"),
            )
        })
    }

    /// Calls a method and decodes its answer into the core's struct.
    pub fn call_as<T: DeserializeOwned>(&self, method: &str, mut args: Value) -> Result<T> {
        // Executions and checkpoints come as their exact records, not their views (the daemon
        // answers views to everyone else); other methods ignore the argument.
        if let Value::Object(m) = &mut args {
            m.insert("form".into(), Value::String("record".into()));
        }
        let v = self.call(method, args)?;
        serde_json::from_value(v).map_err(|e| {
            unavailable(
                &self.inner.url,
                format!("{method}: unexpected answer ({e}); is the daemon the same omium version?"),
            )
        })
    }

    /// What the daemon serves: `store`, `durability`, `version`, `runs` (needs the key on
    /// TCP).
    pub fn status(&self) -> Result<Value> {
        let bytes = self.request("GET", "/v1/status", b"")?;
        serde_json::from_slice(&bytes).map_err(|e| unavailable(self.url(), e))
    }

    /// The durability of the daemon's store.
    pub fn durability(&self) -> Result<crate::Durability> {
        let status = self.status()?;
        let d = status["durability"].as_str().unwrap_or("");
        crate::Durability::parse(d).map_err(|_| {
            unavailable(
                self.url(),
                format!("the daemon reports durability {d:?}, not one this build knows"),
            )
        })
    }

    /// The daemon's health document (`{"status": "ok"}`: liveness only).
    pub fn health(&self) -> Result<Value> {
        let bytes = self.request("GET", "/v1/health", b"")?;
        serde_json::from_slice(&bytes).map_err(|e| unavailable(&self.inner.url, e))
    }

    /// Begins (or resumes) a run of an execution on the daemon; the lease is the daemon's.
    pub fn begin(&self, execution_id: &str, mut args: Value) -> Result<(RemoteRun, Execution)> {
        args["execution_id"] = json!(execution_id);
        in_pieces(&mut args, "input", |a| self.call("upload", a))?;
        #[derive(serde::Deserialize)]
        struct Begun {
            run: String,
            execution: Execution,
        }
        let b: Begun = self.call_as("begin", args)?;
        Ok((
            RemoteRun {
                client: self.clone(),
                id: b.run,
                execution_id: execution_id.to_string(),
                nested: crate::execution::Nested::default(),
            },
            b.execution,
        ))
    }

    /// Bytes a method answers as `{"data": base64 | null}`.
    pub fn bytes(&self, method: &str, args: Value) -> Result<Option<Vec<u8>>> {
        match self.call(method, args)?["data"].as_str() {
            Some(t) => unb64("data", t).map(Some),
            None => Ok(None),
        }
    }
}

fn is_stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | BrokenPipe | ConnectionReset | ConnectionAborted
    )
}

/// States, inputs and outputs larger than this many bytes go to the daemon in pieces of this
/// size (`upload`, `run.upload`) before the call that uses them names them.
pub const UPLOAD_PIECE: usize = 8 << 20;

/// Moves the base64 bytes of `args[field]`, when larger than a piece, to the daemon in pieces
/// through `upload` (`method` of the daemon, called with `{"upload", "data"}`), and names the
/// upload in `args[<field>_upload]` instead: no request comes near the daemon's body limit.
fn in_pieces(
    args: &mut Value,
    field: &str,
    mut upload: impl FnMut(Value) -> Result<Value>,
) -> Result<()> {
    let piece = UPLOAD_PIECE / 3 * 4; // base64 characters of whole 3-byte groups
    if args[field].as_str().is_none_or(|s| s.len() <= piece) {
        return Ok(());
    }
    let data = args[field].take();
    let data = data.as_str().unwrap_or_default();
    let mut id = Value::Null;
    for part in data.as_bytes().chunks(piece) {
        let part = std::str::from_utf8(part).expect("base64 is ASCII");
        id = upload(json!({"upload": id, "data": part}))?["upload"].clone();
    }
    args[format!("{field}_upload")] = id;
    Ok(())
}

/// A run of an execution held by the daemon for this process. Dropping it without
/// [`RemoteRun::close`] leaves the session to the daemon's reaper (the execution stays
/// resumable once this process is gone).
pub struct RemoteRun {
    client: Client,
    id: String,
    execution_id: String,
    nested: crate::execution::Nested,
}

impl RemoteRun {
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    fn call(&self, method: &str, mut args: Value) -> Result<Value> {
        args["run"] = json!(self.id);
        self.client.call(method, args)
    }

    /// [`crate::Run::position`]: top-level positions come from the daemon's run.
    pub fn position(
        &self,
        parent: Option<&str>,
        key: Option<&str>,
    ) -> Result<(u64, Option<String>)> {
        self.nested.position(parent, key, || self.reserve())
    }

    pub fn reserve(&self) -> Result<u64> {
        Ok(self.call("run.reserve", json!({}))?["seq"]
            .as_u64()
            .unwrap_or(0))
    }

    /// The recorded step at `seq` (or `key`) and its state bytes.
    pub fn recorded(
        &self,
        seq: u64,
        name: &str,
        key: Option<&str>,
    ) -> Result<Option<(Checkpoint, Vec<u8>)>> {
        let v = self.call(
            "run.recorded",
            json!({"seq": seq, "name": name, "key": key}),
        )?;
        if v["checkpoint"].is_null() {
            return Ok(None);
        }
        let c: Checkpoint = serde_json::from_value(v["checkpoint"].clone())
            .map_err(|e| unavailable(self.client.url(), e))?;
        let state = unb64("state", v["state"].as_str().unwrap_or_default())?;
        Ok(Some((c, state)))
    }

    /// Records a step; `args` holds `name`, `state` (base64) and the optional fields of
    /// `run.record`. Returns the checkpoint id.
    pub fn record(&self, seq: u64, mut args: Value) -> Result<String> {
        args["seq"] = json!(seq);
        in_pieces(&mut args, "state", |a| self.call("run.upload", a))?;
        Ok(self.call("run.record", args)?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Queues a span for the daemon (sent in batches, as [`Client::record_span`] does).
    pub fn record_span(&self, span: crate::trace::Span) {
        self.client.record_span(span)
    }

    pub fn complete(&self, output: Option<&[u8]>) -> Result<()> {
        let mut args = json!({"output": output.map(super::b64)});
        in_pieces(&mut args, "output", |a| self.call("run.upload", a))?;
        self.call("run.complete", args).map(drop)
    }

    pub fn fail(&self, error: &str) -> Result<()> {
        self.call("run.fail", json!({"error": error})).map(drop)
    }

    pub fn pause(&self, reason: &str) -> Result<()> {
        self.call("run.pause", json!({"reason": reason})).map(drop)
    }

    pub fn heartbeat(&self) -> Result<()> {
        self.call("run.heartbeat", json!({})).map(drop)
    }

    /// A pause or cancel asked for while step `step` awaits, carried out by the daemon.
    pub fn check_control(&self, step: &str) -> Result<()> {
        self.call("run.check_control", json!({"step": step}))
            .map(drop)
    }

    pub fn execution(&self) -> Result<Execution> {
        let v = self.call("run.execution", json!({}))?;
        serde_json::from_value(v).map_err(|e| unavailable(self.client.url(), e))
    }

    /// Releases the run; without complete/fail the execution stays resumable.
    pub fn close(&self) -> Result<()> {
        self.call("run.close", json!({})).map(drop)
    }
}

/// The handling of a failure, held by the daemon; this process runs its recovery loop.
pub struct RemoteRecovery {
    client: Client,
    id: String,
    /// The failure record as recorded when the failure was reported.
    pub record: Value,
}

impl Client {
    /// Records a failure on the daemon and opens its handling (`args`: the fields of
    /// `start_recovery`).
    pub fn start_recovery(&self, args: Value) -> Result<RemoteRecovery> {
        let v = self.call("start_recovery", args)?;
        Ok(RemoteRecovery {
            client: self.clone(),
            id: v["recovery"].as_str().unwrap_or_default().to_string(),
            record: v["record"].clone(),
        })
    }
}

impl RemoteRecovery {
    /// Calls `recovery.<method>` on this handling.
    pub fn call(&self, method: &str, mut args: Value) -> Result<Value> {
        args["recovery"] = json!(self.id);
        self.client.call(&format!("recovery.{method}"), args)
    }
}

impl Drop for RemoteRecovery {
    fn drop(&mut self) {
        let _ = self.call("close", json!({}));
    }
}
