//! API keys of `omium serve`: issued, listed and revoked in the store itself, each bound to a
//! name, a tenant and roles. A key is shown once, when it is made; the store keeps only the
//! SHA-256 of its secret (a key is 256 random bits, so a fast hash is enough: nothing can be
//! guessed), and a daemon reads the record at every request, so a revocation takes effect at
//! the next request without a restart.
//!
//! A key reads `omk_<id>_<secret>`: the id (16 hex digits) finds the record, the secret (43
//! base64url characters) proves it.

use std::collections::BTreeSet;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use omium_storage::audit::AuditDraft;
use omium_storage::error::{Error, Result};
use omium_storage::store::{now_ms, Cf, Store};

const PREFIX: &[u8] = b"keys/";

/// What a key may do, from least to most. Each role includes the ones before it except that a
/// worker and an operator are siblings: a worker runs executions, an operator acts on them.
pub const ROLES: [&str; 4] = ["reader", "worker", "operator", "admin"];

/// The tenant of a key that may touch every tenant's executions and the store as a whole.
pub const ALL_TENANTS: &str = "*";

/// A key as the API and the CLI show it (never its secret or hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The tenant whose executions it may touch, or `*` for all (and the store itself).
    pub tenant: String,
    pub roles: Vec<String>,
    pub created_ms: u64,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// The stored record: the key and the hash of its secret.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    key: ApiKey,
    /// Hex SHA-256 of the secret.
    sha256: String,
}

/// What a new key is for.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub name: String,
    pub tenant: String,
    pub roles: Vec<String>,
}

fn bad(what: &'static str, detail: String) -> Error {
    Error::InvalidArgument { what, detail }
}

impl KeySpec {
    fn validate(&self) -> Result<()> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
        };
        if !name_ok(&self.name) {
            return Err(bad(
                "key name",
                format!(
                    "{:?}; expected 1 to 64 letters, digits, '.', '_', '@' or '-'",
                    self.name
                ),
            ));
        }
        if self.tenant != ALL_TENANTS && !name_ok(&self.tenant) {
            return Err(bad(
                "tenant",
                format!(
                    "{:?}; expected a tenant name (1 to 64 letters, digits, '.', '_', '@' or \
                     '-') or {ALL_TENANTS:?} for every tenant",
                    self.tenant
                ),
            ));
        }
        if self.roles.is_empty() {
            return Err(bad(
                "roles",
                format!("none given; expected one or more of {}", ROLES.join(", ")),
            ));
        }
        if let Some(r) = self.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
            return Err(bad(
                "role",
                format!("{r:?}; expected one of {}", ROLES.join(", ")),
            ));
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| bad("key", format!("no randomness from the OS: {e}")))?;
    Ok(b)
}

fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn record_key(id: &str) -> Vec<u8> {
    [PREFIX, id.as_bytes()].concat()
}

fn read(store: &Store, id: &str) -> Result<Option<Stored>> {
    store
        .get(Cf::Meta, &record_key(id))?
        .map(|v| {
            serde_json::from_slice(&v).map_err(|e| Error::Decode {
                what: "API key",
                key: id.to_string(),
                detail: e.to_string(),
            })
        })
        .transpose()
}

fn write(store: &Store, stored: &Stored, draft: AuditDraft) -> Result<()> {
    let mut batch = WriteBatch::default();
    batch.put_cf(
        store.cf(Cf::Meta),
        record_key(&stored.key.id),
        serde_json::to_vec(stored).expect("keys serialize"),
    );
    store.commit(batch, vec![draft], None)
}

/// Every key, revoked ones included, oldest first.
pub fn list(store: &Store) -> Result<Vec<ApiKey>> {
    let mut keys = Vec::new();
    for kv in store.scan_prefix(Cf::Meta, PREFIX) {
        let (k, v) = kv?;
        let s: Stored = serde_json::from_slice(&v).map_err(|e| Error::Decode {
            what: "API key",
            key: String::from_utf8_lossy(&k).into_owned(),
            detail: e.to_string(),
        })?;
        keys.push(s.key);
    }
    keys.sort_by_key(|k| k.created_ms);
    Ok(keys)
}

/// Whether the store has any key that is not revoked: a daemon then asks every TCP caller for
/// one.
pub fn any_active(store: &Store) -> Result<bool> {
    Ok(list(store)?.iter().any(|k| k.revoked_ms.is_none()))
}

/// Issues a key. Returns it and its secret, which is shown once and never stored.
pub fn create(store: &Store, spec: &KeySpec) -> Result<(ApiKey, String)> {
    spec.validate()?;
    if list(store)?
        .iter()
        .any(|k| k.revoked_ms.is_none() && k.name == spec.name)
    {
        return Err(bad(
            "key name",
            format!(
                "{:?} is the name of a key that is not revoked; revoke it first, or choose \
                 another name",
                spec.name
            ),
        ));
    }
    let id = hex(&random::<8>()?);
    let secret = base64_url(&random::<32>()?);
    let roles: BTreeSet<&String> = spec.roles.iter().collect();
    let key = ApiKey {
        id: id.clone(),
        name: spec.name.clone(),
        tenant: spec.tenant.clone(),
        roles: roles.into_iter().cloned().collect(),
        created_ms: now_ms(),
        created_by: store.actor().to_string(),
        revoked_ms: None,
        revoked_by: None,
    };
    let detail = serde_json::json!({"name": key.name, "tenant": key.tenant, "roles": key.roles});
    let stored = Stored {
        key: key.clone(),
        sha256: digest(&secret),
    };
    write(
        store,
        &stored,
        AuditDraft::new("key.create", format!("key/{id}"), detail.to_string()),
    )?;
    Ok((key, format!("omk_{id}_{secret}")))
}

/// Revokes the key with this id or (unrevoked) name. It stops working at the next request.
pub fn revoke(store: &Store, id_or_name: &str, by: &str) -> Result<ApiKey> {
    let keys = list(store)?;
    let key = keys
        .iter()
        .find(|k| k.id == id_or_name)
        .or_else(|| {
            keys.iter()
                .find(|k| k.revoked_ms.is_none() && k.name == id_or_name)
        })
        .ok_or_else(|| {
            bad(
                "key",
                format!("{id_or_name:?} is neither the id nor the name of a key; `omium keys list` lists them"),
            )
        })?;
    let mut stored = read(store, &key.id)?.expect("listed just now");
    if stored.key.revoked_ms.is_some() {
        return Ok(stored.key);
    }
    stored.key.revoked_ms = Some(now_ms());
    stored.key.revoked_by = Some(by.to_string());
    let detail = serde_json::json!({"name": stored.key.name, "by": by});
    write(
        store,
        &stored,
        AuditDraft::new(
            "key.revoke",
            format!("key/{}", stored.key.id),
            detail.to_string(),
        ),
    )?;
    Ok(stored.key)
}

/// The key a caller presented, if it is one of this store's and not revoked. Compares the
/// secret's hash in constant time.
pub fn authenticate(store: &Store, token: &str) -> Result<Option<ApiKey>> {
    let Some((id, secret)) = token
        .strip_prefix("omk_")
        .and_then(|rest| rest.split_once('_'))
    else {
        return Ok(None);
    };
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(stored) = read(store, id)? else {
        return Ok(None);
    };
    let ok = constant_time_eq(digest(secret).as_bytes(), stored.sha256.as_bytes());
    Ok((ok && stored.key.revoked_ms.is_none()).then_some(stored.key))
}

/// Equality that takes as long for every pair of inputs of the same length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, tenant: &str, roles: &[&str]) -> KeySpec {
        KeySpec {
            name: name.into(),
            tenant: tenant.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_key_authenticates_until_it_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let (key, secret) = create(&store, &spec("ci", "acme", &["worker", "reader"])).unwrap();
        assert_eq!(key.roles, ["reader", "worker"]);
        assert_eq!(authenticate(&store, &secret).unwrap(), Some(key.clone()));
        // One character off, another id, garbage: nothing.
        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push(if secret.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(authenticate(&store, &wrong).unwrap(), None);
        assert_eq!(
            authenticate(&store, "omk_0000000000000000_x").unwrap(),
            None
        );
        assert_eq!(authenticate(&store, "Bearer nonsense").unwrap(), None);
        // The record holds no secret.
        let raw = store.get(Cf::Meta, &record_key(&key.id)).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(&secret[22..]));
        // A second live key of the same name is refused; after revoking, the name is free.
        let e = create(&store, &spec("ci", "acme", &["reader"])).unwrap_err();
        assert!(e.to_string().contains("revoke it first"), "{e}");
        let revoked = revoke(&store, "ci", "alice").unwrap();
        assert_eq!(revoked.revoked_by.as_deref(), Some("alice"));
        assert_eq!(authenticate(&store, &secret).unwrap(), None);
        create(&store, &spec("ci", "acme", &["reader"])).unwrap();
        let actions: Vec<String> = store
            .audit_entries(1, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["key.create", "key.revoke", "key.create"]);
    }

    #[test]
    fn bad_specs_say_what_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        for (s, want) in [
            (spec("", "a", &["reader"]), "key name"),
            (spec("x y", "a", &["reader"]), "key name"),
            (spec("x", "", &["reader"]), "every tenant"),
            (spec("x", "a", &[]), "one or more of reader"),
            (
                spec("x", "a", &["root"]),
                "\"root\"; expected one of reader",
            ),
        ] {
            let e = create(&store, &s).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should say {want}");
        }
        assert!(list(&store).unwrap().is_empty());
    }
}
