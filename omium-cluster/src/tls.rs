//! Mutual TLS of a cluster: every node and client holds a certificate of the cluster's CA, and
//! says who it is in a URI subject alternative name:
//!
//! - `omium://node/<id>`: a node (may send Raft traffic, change membership, sync, broadcast);
//! - `omium://admin/<name>`: an operator's tool (may change membership; not Raft traffic);
//! - `omium://client/<tenant>/<name>`: a store that syncs or an agent that broadcasts.
//!
//! `omium cluster certs` makes a CA and such certificates (rcgen); operators may bring their own
//! (cert-manager's `uris` field). TLS is 1.3 with rustls and ring.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The PEM files of one member of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster's CA certificate(s): peers must chain to it.
    pub ca: PathBuf,
    /// This member's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// From `OMIUM_CLUSTER_CA`, `OMIUM_CLUSTER_CERT` and `OMIUM_CLUSTER_KEY`, when all are set.
    pub fn from_env() -> Result<Option<TlsFiles>> {
        let get = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        match (
            get("OMIUM_CLUSTER_CA"),
            get("OMIUM_CLUSTER_CERT"),
            get("OMIUM_CLUSTER_KEY"),
        ) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles { ca, cert, key })),
            (None, None, None) => Ok(None),
            _ => Err(Error::InvalidArgument {
                what: "OMIUM_CLUSTER_CA/CERT/KEY",
                detail: "only some are set; set all three (the cluster's CA, this client's \
                         certificate and its key) or none"
                    .into(),
            }),
        }
    }
}

fn bad(what: &'static str, path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        what,
        detail: format!("{}: {detail}", path.display()),
    }
}

pub(crate) fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<std::result::Result<_, _>>())
        .map_err(|e| bad(what, path, format!("{e}; expected PEM certificates")))?;
    if certs.is_empty() {
        return Err(bad(what, path, "no certificate in it; expected PEM"));
    }
    Ok(certs)
}

pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| bad("TLS key", path, format!("{e}; expected a PEM private key")))
}

fn roots(path: &Path) -> Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path, "cluster CA")? {
        roots.add(c).map_err(|e| {
            bad(
                "cluster CA",
                path,
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    Ok(Arc::new(roots))
}

fn misfit(files: &TlsFiles, e: rustls::Error) -> Error {
    bad(
        "TLS certificate",
        &files.cert,
        format!("does not fit its key {}: {e}", files.key.display()),
    )
}

/// The server side: TLS 1.3, a client certificate of the cluster's CA asked of every peer.
/// A peer without one is let in (health probes) and may reach only `/healthz` and `/readyz`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    omium_engine::install_tls_provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots(&files.ca)?)
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad("cluster CA", &files.ca, e))?;
    let mut config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&files.cert, "TLS certificate")?, key(&files.key)?)
            .map_err(|e| misfit(files, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: the cluster's CA for the server, this member's certificate for itself.
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig> {
    omium_engine::install_tls_provider();
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots(&files.ca)?)
            .with_client_auth_cert(certs(&files.cert, "TLS certificate")?, key(&files.key)?)
            .map_err(|e| misfit(files, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The `omium://…` identity a certificate names, if any.
pub fn identity_of(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("omium://") => Some(u.to_string()),
        _ => None,
    })
}

/// The tenant a client certificate limits its holder to (`omium://client/<tenant>/<name>`);
/// nodes and admins are not limited.
pub fn client_tenant(identity: Option<&str>) -> Option<&str> {
    identity?
        .strip_prefix("omium://client/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(tenant, _)| tenant)
}

/// What an identity may call on a node.
pub fn allows(identity: Option<&str>, path: &str) -> bool {
    let who = identity.unwrap_or("");
    let node = who.starts_with("omium://node/");
    match path {
        "/healthz" | "/readyz" => true,
        p if p.starts_with("/raft/") => node,
        p if p.starts_with("/cluster/") => node || who.starts_with("omium://admin/"),
        _ => node || who.starts_with("omium://admin/") || who.starts_with("omium://client/"),
    }
}

/// The TLS this process speaks to a cluster with: set by a node from its configuration, else
/// taken from the environment (read whenever a client is made, so a process may switch).
static CONFIGURED: RwLock<Option<TlsFiles>> = RwLock::new(None);

/// Makes `files` the TLS of this process's cluster connections.
pub fn configure(files: Option<TlsFiles>) {
    *CONFIGURED.write() = files;
}

/// The TLS of this process's cluster connections, if any.
pub fn current() -> Result<Option<TlsFiles>> {
    if let Some(f) = CONFIGURED.read().clone() {
        return Ok(Some(f));
    }
    TlsFiles::from_env()
}

/// What `omium cluster certs` writes.
pub struct Issued {
    pub files: Vec<PathBuf>,
}

/// Writes a new CA and certificates into `dir`: `ca.pem` (and `ca-key.pem`), `node-<id>.pem` /
/// `node-<id>-key.pem` for each node id (valid for `hosts`, `localhost` and `127.0.0.1`),
/// `admin.pem` / `admin-key.pem`, and `client-<name>.pem` / `-key.pem` for each
/// `(tenant, name)`. Keys are written 0600.
pub fn issue(
    dir: &Path,
    nodes: &[u64],
    hosts: &[String],
    clients: &[(String, String)],
    days: u32,
) -> Result<Issued> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let fail = |e: rcgen::Error| Error::InvalidArgument {
        what: "certificates",
        detail: format!("cannot make them: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(|e| bad("--out", dir, e))?;
    if dir.join("ca.pem").exists() {
        return Err(bad(
            "--out",
            dir,
            "already holds a ca.pem; choose an empty directory (a new CA would not be trusted by \
             the existing certificates)",
        ));
    }
    let now = time::OffsetDateTime::now_utc();
    let mut written = Vec::new();
    let mut write = |name: &str, text: &str, secret: bool| -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&path)
            .map_err(|e| bad("--out", &path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| bad("--out", &path, e))?;
        written.push(path);
        Ok(())
    };
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.distinguished_name
        .push(DnType::CommonName, "omium cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(i64::from(days) * 2);
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    write("ca.pem", &ca_cert.pem(), false)?;
    write("ca-key.pem", &ca_key.serialize_pem(), true)?;
    let mut leaf = |file: &str, cn: String, uri: String, names: &[String], server: bool| {
        let key = KeyPair::generate().map_err(fail)?;
        let mut p = CertificateParams::new(names.to_vec()).map_err(fail)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names
            .push(SanType::URI(uri.as_str().try_into().map_err(fail)?));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(i64::from(days));
        let cert = p.signed_by(&key, &issuer).map_err(fail)?;
        write(&format!("{file}.pem"), &cert.pem(), false)?;
        write(&format!("{file}-key.pem"), &key.serialize_pem(), true)
    };
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    names.extend(hosts.iter().cloned());
    for id in nodes {
        leaf(
            &format!("node-{id}"),
            format!("omium node {id}"),
            format!("omium://node/{id}"),
            &names,
            true,
        )?;
    }
    leaf(
        "admin",
        "omium admin".into(),
        "omium://admin/admin".into(),
        &[],
        false,
    )?;
    for (tenant, name) in clients {
        leaf(
            &format!("client-{name}"),
            format!("omium client {name} of {tenant}"),
            format!("omium://client/{tenant}/{name}"),
            &[],
            false,
        )?;
    }
    Ok(Issued { files: written })
}
