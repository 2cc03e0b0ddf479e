//! `omium serve`: the daemon that owns a store and serves its API to the worker processes of
//! this machine (over a unix socket and HTTP on loopback).

use std::io::Write;
use std::path::Path;

use omium_core::serve::{Daemon, ServeConfig};
use omium_core::{Durability, Error, OpenOptions, Store};

/// The bootstrap keys: `OMIUM_API_KEYS` (comma-separated) and the lines of `file`.
pub fn bootstrap_keys(file: Option<&Path>) -> Result<Vec<String>, Error> {
    let mut keys: Vec<String> = std::env::var("OMIUM_API_KEYS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| Error::InvalidArgument {
            what: "--api-key-file",
            detail: format!("cannot read {}: {e}", file.display()),
        })?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    if keys.iter().any(|k| k.len() < 16) {
        return Err(Error::InvalidArgument {
            what: "API key",
            detail: "a key shorter than 16 characters is too easy to guess; use `omium keys \
                     create`, or e.g. `openssl rand -hex 24`"
                .into(),
        });
    }
    Ok(keys)
}

/// Runs until SIGTERM or SIGINT; prints one JSON line once it listens.
pub fn serve(
    store_path: &Path,
    mut config: ServeConfig,
    durability: Durability,
    alerts: Option<omium_core::alerts::Rules>,
) -> Result<(), Error> {
    if config.socket.is_none() && config.http.is_none() {
        config.socket = Some(store_path.join("omium.sock"));
    }
    let store = Store::open_with(
        store_path,
        OpenOptions {
            durability,
            ..OpenOptions::default()
        },
    )?;
    let rt = crate::consensus::runtime()?;
    rt.block_on(async {
        let daemon = Daemon::start(&store, config).await?;
        let evaluator = alerts
            .map(|rules| omium_core::alerts::Evaluator::start(&store, rules))
            .transpose()?;
        // The analytics over OTLP when the standard variables name an endpoint.
        let metrics = omium_core::otlp_metrics::MetricsConfig::env_endpoint()
            .map(|_| {
                omium_core::otlp_metrics::MetricsExporter::start(
                    Default::default(),
                    omium_core::otlp_metrics::store_source(&store),
                )
            })
            .transpose()?;
        let line = serde_json::json!({
            "serving": store.path(),
            "socket": daemon.socket(),
            "http": daemon.http_addr().map(|a| a.to_string()),
            "alerts": evaluator.as_ref().map(|e| e.rules().rules.len()),
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        drop(out);
        until_stopped().await?;
        // Open runs are dropped (their executions stay resumable); the socket file is removed.
        if let Some(e) = evaluator {
            e.stop();
        }
        if let Some(m) = metrics {
            m.stop(); // one last export, with what the daemon wrote last
        }
        drop(daemon);
        store.flush()?;
        Ok::<(), Error>(())
    })
}

/// What `omium ui` shows.
pub enum UiSource<'a> {
    /// A store, opened read-only beside whichever application writes it.
    Store(&'a Path),
    /// A daemon's URL.
    Daemon(&'a str),
}

/// Runs the dashboard until SIGTERM or SIGINT; prints one JSON line once it listens.
pub fn ui(
    source: UiSource<'_>,
    listen: &str,
    api_keys: Vec<String>,
    allowed_hosts: Vec<String>,
    cluster: Vec<String>,
) -> Result<(), Error> {
    let rt = crate::consensus::runtime()?;
    rt.block_on(async {
        let (addr, held): (std::net::SocketAddr, Box<dyn std::any::Any>) = match source {
            UiSource::Store(path) => {
                let store = Store::open_read_only(path)?;
                let config = ServeConfig {
                    http: Some(listen.to_string()),
                    api_keys,
                    allowed_hosts,
                    ui: true,
                    cluster,
                    ..ServeConfig::default()
                };
                let daemon = Daemon::start(&store, config).await?;
                let addr = daemon.http_addr().expect("the dashboard listens on TCP");
                (addr, Box::new((daemon, store)))
            }
            UiSource::Daemon(_) if !cluster.is_empty() => {
                return Err(Error::InvalidArgument {
                    what: "--node",
                    detail: "the Cluster page of `omium ui --url` is the daemon's; give --node \
                             with --store"
                        .into(),
                })
            }
            UiSource::Daemon(url) => {
                let proxy = omium_core::serve::ui::Proxy::start(url, listen, allowed_hosts).await?;
                (proxy.addr(), Box::new(proxy))
            }
        };
        let line = serde_json::json!({"ui": format!("http://{addr}/")});
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        drop(out);
        until_stopped().await?;
        drop(held);
        Ok::<(), Error>(())
    })
}

/// Waits for SIGTERM or Ctrl-C.
pub(crate) async fn until_stopped() -> Result<(), Error> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::InvalidState {
            execution: String::new(),
            status: "serving".into(),
            detail: format!("cannot watch for SIGTERM: {e}"),
        })?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
