//! Remote sync from C: a store opened in this process syncs its executions to a cluster of
//! `omium node`s (as Python's `omium.init(remote=...)` and Node's `omium.init({ remote })` do),
//! pulls an execution another store left behind, and waits until its changes are in the
//! cluster. Answers are JSON with the Rust API's field names.
//!
//! A library built without the `cluster` feature has these functions too; they fail with
//! `OMIUM_ERR_INVALID_STATE` saying so.

use std::ffi::c_char;
use std::time::Duration;

use serde_json::Value;

use crate::buffer::omium_buffer;
use crate::error::{omium_status, Failure};
use crate::guard::{guard, non_empty_str_arg, opt_str_arg, out_arg};
use crate::json;
use crate::store::{omium_store, with_store};

#[cfg(feature = "cluster")]
mod imp {
    use std::time::Duration;

    use omium_core::prelude::*;
    use omium_core::serve::StoreHandle;
    use omium_core::sync::{RemoteDurability, SyncConfig};
    use serde_json::Value;

    use crate::error::Failure;

    pub(crate) fn attach(
        s: &StoreHandle,
        nodes: Vec<String>,
        durability: &str,
    ) -> Result<(), Failure> {
        let config = SyncConfig {
            nodes,
            durability: RemoteDurability::parse(durability)?,
            ..SyncConfig::default()
        };
        s.local("remote sync")?.attach_sync(config)?;
        Ok(())
    }

    pub(crate) fn pull(s: &StoreHandle, id: &str) -> Result<Value, Failure> {
        let e = s.local("remote sync")?.require_syncer()?.pull(id)?;
        Ok(crate::json::execution(&e))
    }

    pub(crate) fn flush(s: &StoreHandle, timeout: Duration) -> Result<(), Failure> {
        Ok(s.local("remote sync")?
            .require_syncer()?
            .flush(None, timeout)?)
    }

    pub(crate) fn report(s: &StoreHandle) -> Result<Value, Failure> {
        let r = s.local("remote sync")?.require_syncer()?.report();
        Ok(serde_json::to_value(r).expect("records serialize"))
    }

    pub(crate) fn pull_abandoned(s: &StoreHandle) -> Result<Value, Failure> {
        let r = s.local("remote sync")?.require_syncer()?.pull_abandoned()?;
        Ok(serde_json::to_value(r).expect("records serialize"))
    }
}

#[cfg(not(feature = "cluster"))]
mod imp {
    use std::time::Duration;

    use omium_core::serve::StoreHandle;
    use serde_json::Value;

    use crate::error::{Failure, OMIUM_ERR_INVALID_STATE};

    fn no_cluster() -> Failure {
        Failure::new(
            OMIUM_ERR_INVALID_STATE,
            "this libomium was built without the `cluster` feature (consensus and remote sync); \
             build omium-ffi with its default features to sync a store",
        )
    }
    pub(crate) fn attach(_: &StoreHandle, _: Vec<String>, _: &str) -> Result<(), Failure> {
        Err(no_cluster())
    }
    pub(crate) fn pull(_: &StoreHandle, _: &str) -> Result<Value, Failure> {
        Err(no_cluster())
    }
    pub(crate) fn flush(_: &StoreHandle, _: Duration) -> Result<(), Failure> {
        Err(no_cluster())
    }
    pub(crate) fn report(_: &StoreHandle) -> Result<Value, Failure> {
        Err(no_cluster())
    }
    pub(crate) fn pull_abandoned(_: &StoreHandle) -> Result<Value, Failure> {
        Err(no_cluster())
    }
}

/// Writes `f`'s JSON answer on the store into `out`.
///
/// # Safety
/// `store` is NULL or an open store handle; `out` is NULL or valid for writing a buffer.
unsafe fn answer(
    store: *mut omium_store,
    out: *mut omium_buffer,
    f: impl FnOnce(&omium_core::serve::StoreHandle) -> Result<Value, Failure>,
) -> Result<(), Failure> {
    // SAFETY: forwarded promises.
    let out = unsafe { out_arg(out, "out_json", omium_buffer::EMPTY) }?;
    let v = unsafe { with_store(store, f) }?;
    *out = json::buffer(&v);
    Ok(())
}

/// Starts syncing `store` (opened in this process) to the cluster at `nodes`, a comma-separated
/// list of `omium node` addresses (`"10.0.0.1:7001,10.0.0.2:7001"`; any one that is up will
/// do). `durability` (NULL: "background") is "background" (changes are pushed within moments,
/// in the background) or "sync" (each recorded step is in the cluster before
/// `omium_run_record` returns). Every execution of the store is pushed; a run of an execution
/// holds it in the cluster too, so two stores never run one execution at once
/// (`OMIUM_ERR_SYNC_CONFLICT`).
///
/// Errors: `OMIUM_ERR_INVALID_STATE` when the store already syncs, for a store of
/// `omium_store_connect` (the daemon syncs its own), or in a build without the cluster.
/// Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn omium_store_attach_sync(
    store: *mut omium_store,
    nodes: *const c_char,
    durability: *const c_char,
) -> omium_status {
    guard("omium_store_attach_sync", || {
        // SAFETY (argument reads): the caller's promises.
        let nodes: Vec<String> = unsafe { non_empty_str_arg(nodes, "nodes") }?
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if nodes.is_empty() {
            return Err(Failure::argument(
                "nodes",
                "names no address; expected \"host:port[,host:port...]\"",
            ));
        }
        let durability = unsafe { opt_str_arg(durability, "durability") }?.unwrap_or("background");
        unsafe { with_store(store, |s| imp::attach(s, nodes, durability)) }
    })
}

/// Fetches execution `execution_id` from the cluster into `store` and takes it over (the store
/// that ran it before has died or released it): begin it afterwards to resume it after its last
/// step. `*out_json` receives the execution (as `omium_store_execution` gives it).
///
/// Errors: `OMIUM_ERR_EXECUTION_NOT_FOUND` (the cluster does not have it),
/// `OMIUM_ERR_SYNC_CONFLICT` (another live store holds it), `OMIUM_ERR_SERVER_UNAVAILABLE`,
/// `OMIUM_ERR_INVALID_STATE` (the store syncs to no cluster: `omium_store_attach_sync` first).
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; `execution_id` is NULL or a NUL-terminated string;
/// `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_pull(
    store: *mut omium_store,
    execution_id: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_pull", || {
        // SAFETY (argument reads): the caller's promises.
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        unsafe { answer(store, out_json, |s| imp::pull(s, id)) }
    })
}

/// Pulls every execution that another store left unfinished in the cluster and no longer holds
/// (its process died); `*out_json` receives `{"pulled": [ids], "skipped": [...]}`.
///
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; `out_json` is NULL or valid for writing an
/// `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_pull_abandoned(
    store: *mut omium_store,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_pull_abandoned", || {
        // SAFETY: the caller's promises.
        unsafe { answer(store, out_json, imp::pull_abandoned) }
    })
}

/// Waits at most `timeout_ms` milliseconds until every change recorded so far is in the
/// cluster (a push). `OMIUM_ERR_SERVER_UNAVAILABLE` when the time ran out first.
///
/// Thread-safety: any thread (the call blocks).
///
/// # Safety
/// `store` is NULL or an open store handle.
#[no_mangle]
pub unsafe extern "C" fn omium_store_sync_flush(
    store: *mut omium_store,
    timeout_ms: u64,
) -> omium_status {
    guard("omium_store_sync_flush", || {
        // SAFETY: the caller's promise.
        unsafe { with_store(store, |s| imp::flush(s, Duration::from_millis(timeout_ms))) }
    })
}

/// What the sync did so far, as JSON: pushed and pulled executions and checkpoints, bytes,
/// the last error (`omium.sync_status()` in Python).
///
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; `out_json` is NULL or valid for writing an
/// `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_store_sync_status(
    store: *mut omium_store,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_store_sync_status", || {
        // SAFETY: the caller's promises.
        unsafe { answer(store, out_json, imp::report) }
    })
}
