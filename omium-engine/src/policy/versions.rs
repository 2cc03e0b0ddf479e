//! Policy versions in the store: applying a policy to a (tenant, scope) stores a new version
//! with its author and time and appends an audit entry; old versions stay readable and any two
//! can be diffed. At run time the policies in force for a step are the latest versions of its
//! scopes, the most specific first: `step:<workflow>/<step>`, `step:<step>`,
//! `workflow:<workflow>`, `global`.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::{Compiled, Effective, Policy, Scope};
use crate::audit::AuditDraft;
use crate::codec;
use crate::error::{Error, Result};
use crate::store::{now_ms, Cf, Store};

/// Policies in force per (tenant, workflow, step) of a store in this process; cleared when a
/// policy is applied.
#[derive(Default)]
struct PolicyCache(parking_lot::Mutex<std::collections::HashMap<String, Effective>>);

impl omium_storage::Extension for PolicyCache {}

/// One stored version of the policy of a (tenant, scope).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub tenant: String,
    pub scope: String,
    pub version: u32,
    pub author: String,
    pub created_at_ms: u64,
    /// The file it was applied from, if any.
    pub file: Option<String>,
    /// The document exactly as applied.
    pub source: String,
    /// The canonical form, as pretty JSON.
    pub canonical: String,
    /// blake3 of `canonical`, hex.
    pub digest: String,
}

impl PolicyVersion {
    pub fn policy(&self) -> Result<Policy> {
        serde_json::from_str(&self.canonical).map_err(|e| Error::Decode {
            what: "policy version",
            key: format!("{}/{} v{}", self.tenant, self.scope, self.version),
            detail: e.to_string(),
        })
    }
}

fn scope_prefix(tenant: &str, scope: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + scope.len() + 2);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k
}

fn check_tenant(tenant: &str) -> Result<()> {
    if tenant.is_empty() || tenant.contains('\0') {
        return Err(Error::InvalidArgument {
            what: "tenant",
            detail: format!("{tenant:?} is empty or contains NUL"),
        });
    }
    Ok(())
}

/// Policy versions kept in a store: apply, list, and the effective policy of a step
/// (`use omium_core::prelude::*` brings it into scope).
pub trait PolicyStore: AsRef<Store> {
    /// Validates `text` and stores it as the next version of the policy of (tenant, scope),
    /// with an audit entry. Returns the stored version.
    fn apply_policy(
        &self,
        tenant: &str,
        scope: &Scope,
        text: &str,
        file: Option<&str>,
        author: Option<&str>,
    ) -> Result<PolicyVersion> {
        let store: &Store = self.as_ref();
        store.require_writer("applying a policy")?;
        check_tenant(tenant)?;
        let policy = super::parse(text, file).map_err(|p| Error::Policy(Box::new(p)))?;
        Compiled::new(&policy)?;
        let canonical = super::to_json(&policy);
        let scope_s = scope.to_string();
        let latest = store.policy_versions(tenant, Some(scope))?.pop();
        let version = latest.as_ref().map_or(1, |v| v.version + 1);
        let author = author
            .map(str::to_string)
            .unwrap_or_else(|| store.actor().to_string());
        let v = PolicyVersion {
            tenant: tenant.into(),
            scope: scope_s.clone(),
            version,
            author: author.clone(),
            created_at_ms: now_ms(),
            file: file.map(str::to_string),
            source: text.into(),
            digest: crate::hex(blake3::hash(canonical.as_bytes()).as_bytes()),
            canonical,
        };
        let mut key = scope_prefix(tenant, &scope_s);
        key.extend_from_slice(&version.to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put_cf(store.cf(Cf::Policies), &key, codec::encode(&v));
        let detail = serde_json::json!({
            "version": version, "author": author, "digest": v.digest, "file": file,
            "previous": latest.map(|l| l.version),
        });
        store.commit(
            batch,
            vec![AuditDraft::new(
                "policy.apply",
                format!("policy/{tenant}/{scope_s}"),
                detail.to_string(),
            )],
            None,
        )?;
        store
            .extension_or_insert_with(PolicyCache::default)
            .0
            .lock()
            .clear();
        Ok(v)
    }

    /// Versions of one scope of a tenant (oldest first), or of every scope when `scope` is None.
    fn policy_versions(&self, tenant: &str, scope: Option<&Scope>) -> Result<Vec<PolicyVersion>> {
        let store: &Store = self.as_ref();
        let prefix = match scope {
            Some(s) => scope_prefix(tenant, &s.to_string()),
            None => {
                let mut p = tenant.as_bytes().to_vec();
                p.push(0);
                p
            }
        };
        store.versions_under(&prefix)
    }

    /// Every tenant's policy versions (for listing).
    fn all_policy_versions(&self) -> Result<Vec<PolicyVersion>> {
        let store: &Store = self.as_ref();
        store.versions_under(b"")
    }

    #[doc(hidden)]
    fn versions_under(&self, prefix: &[u8]) -> Result<Vec<PolicyVersion>> {
        let store: &Store = self.as_ref();
        store
            .scan_prefix(Cf::Policies, prefix)
            .map(|r| {
                let (k, bytes) = r?;
                codec::decode(
                    "policy version",
                    &|| String::from_utf8_lossy(&k).replace('\0', "/"),
                    &bytes,
                )
            })
            .collect()
    }

    /// One version (`None`: the latest) of the policy of (tenant, scope).
    fn policy_version(
        &self,
        tenant: &str,
        scope: &Scope,
        version: Option<u32>,
    ) -> Result<PolicyVersion> {
        let store: &Store = self.as_ref();
        let all = store.policy_versions(tenant, Some(scope))?;
        let found = match version {
            None => all.last().cloned(),
            Some(n) => all.iter().find(|v| v.version == n).cloned(),
        };
        found.ok_or_else(|| Error::InvalidArgument {
            what: "policy version",
            detail: match (version, all.last()) {
                (_, None) => format!("no policy is applied to tenant {tenant:?} scope {scope}; `omium policy list` shows what is"),
                (Some(n), Some(l)) => format!("{scope} of tenant {tenant:?} has versions 1 to {}, not {n}", l.version),
                (None, Some(_)) => unreachable!(),
            },
        })
    }

    /// The policies in force for a step of a workflow (either may be unknown), most specific
    /// scope first. Cached per step until a policy is applied.
    fn effective_policy(
        &self,
        tenant: &str,
        workflow: Option<&str>,
        step: Option<&str>,
    ) -> Result<Effective> {
        let store: &Store = self.as_ref();
        let cache_key = format!(
            "{tenant}\0{}\0{}",
            workflow.unwrap_or("\u{1}"),
            step.unwrap_or("\u{1}")
        );
        if !store.is_read_only() {
            if let Some(e) = store
                .extension_or_insert_with(PolicyCache::default)
                .0
                .lock()
                .get(&cache_key)
            {
                return Ok(e.clone());
            }
        }
        let mut layers = Vec::new();
        for scope in Scope::chain(workflow, step) {
            if let Some(v) = store.policy_versions(tenant, Some(&scope))?.pop() {
                layers.push((scope, v.version, Compiled::new(&v.policy()?)?));
            }
        }
        let e = Effective { layers };
        if !store.is_read_only() {
            store
                .extension_or_insert_with(PolicyCache::default)
                .0
                .lock()
                .insert(cache_key, e.clone());
        }
        Ok(e)
    }
}

impl PolicyStore for Store {}
