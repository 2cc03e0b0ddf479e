//! `omium_coordinator`: multi-agent consensus from C — the core's coordinator over the store's
//! embedded one-voter Raft group, or a client of a cluster of `omium node`s. Requests and
//! answers are JSON, with the Rust API's field names (as Python's records have them).
//!
//! A library built without the `cluster` feature (`--no-default-features`) has these functions
//! too; they fail with `OMIUM_ERR_CONSENSUS_UNAVAILABLE` saying so.

use std::ffi::c_char;
use std::time::Duration;

use serde_json::Value;

use crate::buffer::omium_buffer;
use crate::error::{omium_status, Failure};
use crate::guard::{self, guard, non_empty_str_arg, opt_str_arg, out_arg, str_arg, Handle, Opaque};
use crate::json;
use crate::store::{omium_store, with_store};

#[cfg(feature = "cluster")]
mod imp {
    use std::time::Duration;

    use omium_core::consensus::{status_json, BroadcastRequest, Coordinator, CoordinatorConfig};
    use omium_core::serve::StoreHandle;
    use serde_json::Value;

    use crate::error::Failure;

    pub(crate) struct Core(Coordinator);

    impl Core {
        pub(crate) fn open(
            store: Option<&StoreHandle>,
            nodes: Option<Vec<String>>,
        ) -> Result<Core, Failure> {
            let store = store
                .map(|s| s.local("omium_coordinator_open"))
                .transpose()?;
            let config = match nodes {
                Some(nodes) => CoordinatorConfig::Cluster { nodes },
                None => CoordinatorConfig::Embedded,
            };
            Ok(Core(Coordinator::open(store, config)?))
        }

        pub(crate) fn broadcast(&self, request: Value) -> Result<Value, Failure> {
            let req: BroadcastRequest = serde_json::from_value(request).map_err(|e| {
                Failure::argument(
                    "request_json",
                    format!(
                        "is not a broadcast ({e}); expected {{\"execution_id\", \"sender\", \
                         \"targets\": [...], \"message\", \"schema\"?, \"quorum\"?}}"
                    ),
                )
            })?;
            let b = self.0.broadcast(&req)?;
            Ok(serde_json::to_value(b).expect("records serialize"))
        }

        pub(crate) fn acknowledge(
            &self,
            id: &str,
            agent: &str,
            vote: Option<Value>,
        ) -> Result<Value, Failure> {
            Ok(status_json(&self.0.acknowledge(id, agent, vote)?))
        }

        pub(crate) fn await_agreement(
            &self,
            id: &str,
            timeout: Duration,
            record: bool,
        ) -> Result<Value, Failure> {
            Ok(self.0.await_agreement_with(id, timeout, record)?.to_json())
        }

        pub(crate) fn status(&self, execution_id: &str) -> Result<Value, Failure> {
            let list = self.0.status(execution_id)?;
            Ok(Value::Array(list.iter().map(|m| m.to_json()).collect()))
        }

        pub(crate) fn message(&self, id: &str) -> Result<Value, Failure> {
            Ok(self.0.message(id)?.to_json())
        }
    }
}

#[cfg(not(feature = "cluster"))]
mod imp {
    use std::time::Duration;

    use omium_core::serve::StoreHandle;
    use serde_json::Value;

    use crate::error::{Failure, OMIUM_ERR_CONSENSUS_UNAVAILABLE};

    /// No coordinator can be made in a build without the cluster.
    pub(crate) enum Core {}

    impl Core {
        pub(crate) fn open(
            _: Option<&StoreHandle>,
            _: Option<Vec<String>>,
        ) -> Result<Core, Failure> {
            Err(Failure::new(
                OMIUM_ERR_CONSENSUS_UNAVAILABLE,
                "this libomium was built without the `cluster` feature (consensus and remote \
                 sync); build omium-ffi with its default features to use omium_coordinator_*",
            ))
        }
        pub(crate) fn broadcast(&self, _: Value) -> Result<Value, Failure> {
            match *self {}
        }
        pub(crate) fn acknowledge(
            &self,
            _: &str,
            _: &str,
            _: Option<Value>,
        ) -> Result<Value, Failure> {
            match *self {}
        }
        pub(crate) fn await_agreement(
            &self,
            _: &str,
            _: Duration,
            _: bool,
        ) -> Result<Value, Failure> {
            match *self {}
        }
        pub(crate) fn status(&self, _: &str) -> Result<Value, Failure> {
            match *self {}
        }
        pub(crate) fn message(&self, _: &str) -> Result<Value, Failure> {
            match *self {}
        }
    }
}

/// A consensus coordinator (opaque). Made by `omium_coordinator_open`, released by
/// `omium_coordinator_close`.
///
/// Thread-safety: any number of threads may call functions on one coordinator at the same
/// time; closing it while another thread is inside a call on it fails with `OMIUM_ERR_BUSY`.
pub struct omium_coordinator(Handle<imp::Core>);

impl Opaque for omium_coordinator {
    type Value = imp::Core;
    const KIND: &'static str = "coordinator";
    const TAG: u64 = u64::from_le_bytes(*b"omCOORD\x01");
    const MADE_BY: &'static str = "omium_coordinator_open";
    fn wrap(handle: Handle<imp::Core>) -> Self {
        omium_coordinator(handle)
    }
    fn handle(&self) -> &Handle<imp::Core> {
        &self.0
    }
}

/// Runs `f` on the coordinator behind `ptr`, writing its JSON answer into `out`.
///
/// # Safety
/// `ptr` is NULL or a coordinator handle not closed; `out` is NULL or valid for writing a buffer.
unsafe fn answer(
    ptr: *mut omium_coordinator,
    out: *mut omium_buffer,
    f: impl FnOnce(&imp::Core) -> Result<Value, Failure>,
) -> Result<(), Failure> {
    // SAFETY: forwarded promises.
    let out = unsafe { out_arg(out, "out_json", omium_buffer::EMPTY) }?;
    let v = unsafe { guard::with(ptr, "coordinator", f) }?;
    *out = json::buffer(&v);
    Ok(())
}

/// Opens a consensus coordinator: with `nodes` NULL, the embedded one-voter Raft group inside
/// `store` (no network; `store` required and opened in this process); with `nodes` a
/// comma-separated list of `omium node` addresses (`"10.0.0.1:7001,10.0.0.2:7001"`), a client of
/// that cluster — `store` (NULL allowed) then records consensus violations as failures.
///
/// Errors: `OMIUM_ERR_INVALID_STATE` for a store of `omium_store_connect` with `nodes` NULL;
/// `OMIUM_ERR_CONSENSUS_UNAVAILABLE` in a library built without the cluster.
///
/// Ownership: the caller closes `*out_coordinator` with `omium_coordinator_close`.
/// Thread-safety: any thread.
///
/// # Safety
/// `store` is NULL or an open store handle; `nodes` is NULL or a NUL-terminated string;
/// `out_coordinator` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn omium_coordinator_open(
    store: *mut omium_store,
    nodes: *const c_char,
    out_coordinator: *mut *mut omium_coordinator,
) -> omium_status {
    guard("omium_coordinator_open", || {
        // SAFETY (argument reads): the caller's promises.
        let out = unsafe { out_arg(out_coordinator, "out_coordinator", std::ptr::null_mut()) }?;
        let nodes = unsafe { opt_str_arg(nodes, "nodes") }?.map(|n| {
            n.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        if nodes.as_ref().is_some_and(Vec::is_empty) {
            return Err(Failure::argument(
                "nodes",
                "names no address; expected \"host:port[,host:port...]\" or NULL for the embedded group",
            ));
        }
        let core = if store.is_null() {
            if nodes.is_none() {
                return Err(Failure::argument(
                    "store",
                    "is NULL; the embedded group (nodes NULL) lives in a store",
                ));
            }
            imp::Core::open(None, nodes)?
        } else {
            unsafe { with_store(store, |s| imp::Core::open(Some(s), nodes)) }?
        };
        *out = <omium_coordinator as Opaque>::into_raw(core);
        Ok(())
    })
}

/// Appends a message to an execution's consensus log. `request_json` is `{"execution_id",
/// "sender", "targets": [agents], "message": any JSON, "schema": a JSON Schema the message must
/// match (optional), "quorum": acknowledgements needed (optional, default a majority)}`.
/// `*out_json` receives `{"id", "execution_id", "seq", "log_index"}`.
///
/// Errors: `OMIUM_ERR_INVALID_MESSAGE` (no targets, schema mismatch), `OMIUM_ERR_CONSENSUS_UNAVAILABLE`.
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread.
///
/// # Safety
/// `coordinator` is NULL or an open coordinator; `request_json` is NULL or a NUL-terminated
/// string; `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_coordinator_broadcast(
    coordinator: *mut omium_coordinator,
    request_json: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_coordinator_broadcast", || {
        // SAFETY (argument reads): the caller's promises.
        let text = unsafe { str_arg(request_json, "request_json") }?;
        let request: Value = serde_json::from_str(text)
            .map_err(|e| Failure::argument("request_json", format!("is not JSON ({e})")))?;
        unsafe { answer(coordinator, out_json, |c| c.broadcast(request)) }
    })
}

/// Records agent `agent`'s acknowledgement of message `message_id`, or its vote when
/// `vote_json` (any JSON) is not NULL. `*out_json` receives the message's status: `{"state":
/// "pending"}`, `{"state": "agreed", "value", "at_index"}` or `{"state": "violated", "reason",
/// "detail"}`.
///
/// Errors: `OMIUM_ERR_MESSAGE_NOT_FOUND`, `OMIUM_ERR_NOT_A_TARGET`.
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread.
///
/// # Safety
/// `coordinator` is NULL or an open coordinator; the strings are NULL or NUL-terminated;
/// `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_coordinator_acknowledge(
    coordinator: *mut omium_coordinator,
    message_id: *const c_char,
    agent: *const c_char,
    vote_json: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_coordinator_acknowledge", || {
        // SAFETY (argument reads): the caller's promises.
        let id = unsafe { non_empty_str_arg(message_id, "message_id") }?;
        let agent = unsafe { non_empty_str_arg(agent, "agent") }?;
        let vote = unsafe { opt_str_arg(vote_json, "vote_json") }?
            .map(|v| {
                serde_json::from_str::<Value>(v)
                    .map_err(|e| Failure::argument("vote_json", format!("is not JSON ({e})")))
            })
            .transpose()?;
        unsafe { answer(coordinator, out_json, |c| c.acknowledge(id, agent, vote)) }
    })
}

/// Waits at most `timeout_ms` milliseconds until message `message_id` is agreed; `*out_json`
/// receives the message (`{"id", "seq", "message", "status", "acks", ...}`). A timeout or a
/// split vote is `OMIUM_ERR_CONSENSUS_VIOLATION`, recorded as a `consensus_violation` failure of
/// the execution when `record` is true (so its recovery policy can act on it).
///
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread (the call blocks).
///
/// # Safety
/// `coordinator` is NULL or an open coordinator; `message_id` is NULL or a NUL-terminated
/// string; `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_coordinator_await(
    coordinator: *mut omium_coordinator,
    message_id: *const c_char,
    timeout_ms: u64,
    record: bool,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_coordinator_await", || {
        // SAFETY (argument reads): the caller's promises.
        let id = unsafe { non_empty_str_arg(message_id, "message_id") }?;
        let timeout = Duration::from_millis(timeout_ms);
        unsafe {
            answer(coordinator, out_json, |c| {
                c.await_agreement(id, timeout, record)
            })
        }
    })
}

/// The consensus messages of execution `execution_id` in their agreed order, as a JSON array
/// of messages (as `omium_coordinator_await` gives them).
///
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread.
///
/// # Safety
/// `coordinator` is NULL or an open coordinator; `execution_id` is NULL or a NUL-terminated
/// string; `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_coordinator_status(
    coordinator: *mut omium_coordinator,
    execution_id: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_coordinator_status", || {
        // SAFETY (argument reads): the caller's promises.
        let id = unsafe { non_empty_str_arg(execution_id, "execution_id") }?;
        unsafe { answer(coordinator, out_json, |c| c.status(id)) }
    })
}

/// One consensus message with its acknowledgements and status. Unknown id:
/// `OMIUM_ERR_MESSAGE_NOT_FOUND`.
///
/// Ownership: the caller frees `*out_json`. Thread-safety: any thread.
///
/// # Safety
/// `coordinator` is NULL or an open coordinator; `message_id` is NULL or a NUL-terminated
/// string; `out_json` is NULL or valid for writing an `omium_buffer`.
#[no_mangle]
pub unsafe extern "C" fn omium_coordinator_message(
    coordinator: *mut omium_coordinator,
    message_id: *const c_char,
    out_json: *mut omium_buffer,
) -> omium_status {
    guard("omium_coordinator_message", || {
        // SAFETY (argument reads): the caller's promises.
        let id = unsafe { non_empty_str_arg(message_id, "message_id") }?;
        unsafe { answer(coordinator, out_json, |c| c.message(id)) }
    })
}

/// Closes a coordinator (the embedded group stops when its store's last coordinator is
/// closed). NULL is a no-op.
///
/// Thread-safety: any thread; `OMIUM_ERR_BUSY` while another thread is inside a call on it.
///
/// # Safety
/// `coordinator` is NULL or a coordinator not closed yet.
#[no_mangle]
pub unsafe extern "C" fn omium_coordinator_close(
    coordinator: *mut omium_coordinator,
) -> omium_status {
    guard("omium_coordinator_close", || {
        // SAFETY: the caller's promise.
        unsafe { guard::free(coordinator, "coordinator") }
    })
}
