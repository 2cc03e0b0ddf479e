//! Synced chunks in S3-compatible object storage instead of the Raft log.
//!
//! With `objects` configured, a push uploads the chunks the cluster lacks to
//! `<bucket>/<prefix>/chunks/<blake3 hex>` and proposes only their addresses; a pull downloads
//! them from there and verifies each against its address, as every read does. The cluster's
//! set difference still decides what to upload, so a chunk goes up once.
//!
//! Credentials and endpoint come from the config or the usual `AWS_*` variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};

/// Where synced chunks go.
#[derive(Clone, Debug, Default)]
pub struct ObjectConfig {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); default: AWS, or `AWS_ENDPOINT`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// An object store bucket holding chunks.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

fn unavailable(url: &str, e: impl std::fmt::Display) -> Error {
    Error::ServerUnavailable {
        url: url.into(),
        detail: e.to_string(),
    }
}

impl Objects {
    pub fn new(c: &ObjectConfig) -> Result<Objects> {
        let rest = c
            .url
            .strip_prefix("s3://")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::InvalidArgument {
                what: "object storage url",
                detail: format!("{:?} is not s3://bucket[/prefix]", c.url),
            })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        crate::install_tls_provider();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &c.region {
            b = b.with_region(r);
        }
        if let Some(k) = &c.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &c.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let store = b.build().map_err(|e| Error::InvalidArgument {
            what: "object storage",
            detail: format!("{}: {e}", c.url),
        })?;
        Ok(Objects {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            url: c.url.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, hash: &[u8; 32]) -> Path {
        let name = format!("chunks/{}", crate::hex(hash));
        match self.prefix.is_empty() {
            true => Path::from(name),
            false => Path::from(format!("{}/{name}", self.prefix)),
        }
    }

    /// Uploads a stored chunk under its address.
    pub async fn put(&self, hash: &[u8; 32], stored: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(hash), PutPayload::from(stored))
            .await
            .map(|_| ())
            .map_err(|e| {
                unavailable(
                    &self.url,
                    format!("uploading chunk {}: {e}", crate::hex(hash)),
                )
            })
    }

    /// Downloads a stored chunk.
    pub async fn get(&self, hash: &[u8; 32]) -> Result<Vec<u8>> {
        let r = self.store.get(&self.path(hash)).await.map_err(|e| {
            unavailable(
                &self.url,
                format!("fetching chunk {}: {e}", crate::hex(hash)),
            )
        })?;
        let bytes = r.bytes().await.map_err(|e| {
            unavailable(
                &self.url,
                format!("reading chunk {}: {e}", crate::hex(hash)),
            )
        })?;
        Ok(bytes.to_vec())
    }
}
