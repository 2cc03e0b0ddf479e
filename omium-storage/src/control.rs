//! Operator controls: pause, cancel, resume, retry or delete an execution from outside the
//! code that runs it.
//!
//! A store has one writer process (an application, or `omium serve`). A control made through
//! the writer is applied at once ([`Store::control`]). One made from another process — the
//! `omium` CLI beside an application that holds the store — is written to the store's mailbox,
//! the `control/` folder of the store directory, as one JSON file per request; the writer
//! polls the folder, claims each request by renaming it, applies it and writes the reply
//! beside it, which the requesting process reads ([`Store::request_control`]).
//!
//! A pause or a cancel of an execution that a run of the writer holds reaches that run at its
//! next step boundary: the step's `recorded` check pauses or cancels the execution (with an
//! audit entry and its event) and fails the run with `paused` or `cancelled`, before the
//! step's body runs. Everything else changes the stored execution at once. Every control is in
//! the audit log with who asked and why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::audit::AuditDraft;
use crate::error::{Error, Result};
use crate::execution::{Run, Status};
use crate::rollup::{Cell, Delta, Dims};
use crate::store::{now_ms, Store, WeakStore};

/// What an operator asks of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Stop at the next step boundary and wait for `resume` (status `paused`).
    Pause,
    /// Stop at the next step boundary for good (status `cancelled`).
    Cancel,
    /// A paused execution becomes resumable (status `pending`): the next run continues it.
    Resume,
    /// A failed or cancelled execution becomes resumable (status `pending`).
    Retry,
    /// Whatever stopped it — a run that died (status `running` with no live run), a failure,
    /// a cancel, a pause — the execution becomes resumable (status `pending`): the
    /// application's next `recover()` continues it from its last checkpoint.
    Recover,
    /// Erase the execution: its record, checkpoints, input and output, and the chunks no other
    /// checkpoint uses.
    Delete,
    /// Roll the execution back to the checkpoint `Request::to` names (an id, a name, or none
    /// for the last consistent one): the rollback of a process that cannot write (`omium ui`
    /// beside an application), carried out by the writer.
    Rollback,
    /// Hand the execution's open failure to people: it is settled as escalated (see
    /// [`Store::escalate_failure`]); the execution keeps its status.
    Escalate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Cancel => "cancel",
            Action::Resume => "resume",
            Action::Retry => "retry",
            Action::Recover => "recover",
            Action::Delete => "delete",
            Action::Rollback => "rollback",
            Action::Escalate => "escalate",
        }
    }

    /// Parses `pause`, `cancel`, `resume`, `retry`, `recover`, `delete` or `rollback`.
    pub fn parse(s: &str) -> Result<Action> {
        Ok(match s {
            "pause" => Action::Pause,
            "cancel" => Action::Cancel,
            "resume" => Action::Resume,
            "retry" => Action::Retry,
            "recover" => Action::Recover,
            "delete" => Action::Delete,
            "rollback" => Action::Rollback,
            "escalate" => Action::Escalate,
            other => {
                return Err(Error::InvalidArgument {
                    what: "control",
                    detail: format!(
                        "{other:?}; expected one of \"pause\", \"cancel\", \"resume\", \"retry\", \
                         \"recover\", \"delete\", \"rollback\", \"escalate\""
                    ),
                })
            }
        })
    }
}

/// A control as asked: by whom, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub action: Action,
    pub execution: String,
    /// Who asked (`user@host`, an API key's name).
    pub by: String,
    pub reason: Option<String>,
    pub at_ms: u64,
    /// Where a rollback goes: a checkpoint id or name (`None`: the last consistent one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A resume's corrected state for the step that paused the execution (see
    /// [`Store::resume_paused`]), in the execution's codec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Vec<u8>>,
}

/// What became of a control.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub action: Action,
    pub execution: String,
    /// `applied` (the execution changed), or `requested` (a run holds it: it stops at its
    /// next step boundary).
    pub result: String,
    /// The execution's status now (`None` once deleted).
    pub status: Option<String>,
    /// What a delete erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<ErasedReply>,
    /// The checkpoint a rollback wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The failure an escalation settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// An escalation's notices: per channel of the failure's policy, `delivered` or why not
    /// (sent by the engine, `omium_engine::recovery::escalate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<serde_json::Value>,
    /// The error, when the control was refused: `{"code", "message"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// What a delete erased: the execution's checkpoints, failure records and spans, and the chunks
/// no other checkpoint used. A count a server did not send reads as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErasedReply {
    pub checkpoints: u64,
    pub chunks: u64,
    pub failures: u64,
    pub spans: u64,
}

impl Reply {
    /// The reply to a control the writer refused with `e`.
    fn refused(action: Action, execution: &str, e: &Error) -> Reply {
        Reply {
            action,
            execution: execution.into(),
            result: "refused".into(),
            status: None,
            erased: None,
            checkpoint: None,
            failure: None,
            notified: None,
            error: Some(serde_json::json!({"code": e.code(), "message": e.to_string()})),
        }
    }
}

/// Who a control names when the caller does not say: `user@host`.
pub fn default_by() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", crate::execution::hostname())
}

impl Request {
    /// A request made now by `by` (`None`: [`default_by`]).
    pub fn new(
        action: Action,
        execution: &str,
        reason: Option<String>,
        by: Option<String>,
    ) -> Request {
        Request {
            action,
            execution: execution.into(),
            by: by.unwrap_or_else(default_by),
            reason,
            at_ms: now_ms(),
            to: None,
            state: None,
        }
    }
}

/// Pauses and cancels waiting for the runs of this store handle, by execution.
#[derive(Default)]
pub(crate) struct Pending {
    any: AtomicBool,
    map: Mutex<HashMap<String, Request>>,
}

/// How often the writer looks into the mailbox.
const POLL: Duration = Duration::from_millis(100);
/// How long a requesting process waits for the writer's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

fn mailbox(store_path: &Path) -> PathBuf {
    store_path.join("control")
}

impl Store {
    /// Applies a control through this handle, which must be the writer; the audit entry names
    /// `by`. A pause or cancel of an execution a run of this handle holds is `requested`: the
    /// run stops at its next step boundary.
    pub fn control(&self, request: &Request) -> Result<Reply> {
        self.require_writer("controlling an execution")?;
        let (execution, action) = (&request.execution, request.action);
        let detail = serde_json::json!({"by": request.by, "reason": request.reason}).to_string();
        let status_of = |s: Status| Some(s.as_str().to_string());
        // Applied at once: the reply with the execution's status now.
        let applied = |checkpoint: Option<String>| -> Result<Reply> {
            Ok(Reply {
                action,
                execution: execution.clone(),
                result: "applied".into(),
                status: status_of(self.execution(execution)?.status),
                erased: None,
                checkpoint,
                failure: None,
                notified: None,
                error: None,
            })
        };
        if action == Action::Escalate {
            let f = self.escalate_failure(execution, &request.by, request.reason.as_deref())?;
            return applied(None).map(|r| Reply {
                failure: Some(f.id),
                ..r
            });
        }
        if let (Action::Resume, Some(state)) = (action, &request.state) {
            self.resume_paused(execution, Some(state), Some(&request.by))?;
            return applied(None);
        }
        if action == Action::Rollback {
            let target = match &request.to {
                Some(t) => crate::checkpoint::RollbackTarget::parse(t),
                None => crate::checkpoint::RollbackTarget::LastConsistent,
            };
            let reason = request
                .reason
                .clone()
                .unwrap_or_else(|| format!("rollback asked by {}", request.by));
            let c = self.rollback(execution, &target, Some(&reason))?;
            return applied(Some(c.id.to_string()));
        }
        if action == Action::Delete {
            let (erased, chunks) = self.erase_execution(execution, &detail)?;
            return Ok(Reply {
                action,
                execution: execution.clone(),
                result: "applied".into(),
                status: None,
                erased: Some(ErasedReply {
                    checkpoints: erased.checkpoints,
                    chunks,
                    failures: erased.failures,
                    spans: erased.spans,
                }),
                checkpoint: None,
                failure: None,
                notified: None,
                error: None,
            });
        }
        let requested = self.apply(
            execution,
            WriteBatch::default(),
            None,
            |st, batch, audit| {
                let e = st.exec.as_mut().ok_or_else(|| Error::ExecutionNotFound {
                    id: execution.clone(),
                })?;
                let refuse = |why: &str| Error::InvalidState {
                    execution: execution.clone(),
                    status: e.status.as_str().into(),
                    detail: format!("cannot {} it: {why}", action.as_str()),
                };
                let (new, audit_action) = match (action, e.status) {
                    (
                        Action::Pause | Action::Cancel,
                        Status::Completed | Status::Failed | Status::Cancelled,
                    ) => return Err(refuse("it has finished")),
                    (Action::Pause, Status::Paused) => return Err(refuse("it is paused already")),
                    (Action::Pause | Action::Cancel, _) if st.running => {
                        audit.push(AuditDraft::new(
                            if action == Action::Pause {
                                "control.pause"
                            } else {
                                "control.cancel"
                            },
                            format!("execution/{execution}"),
                            detail.clone(),
                        ));
                        return Ok(true);
                    }
                    (Action::Pause, _) => (Status::Paused, "execution.pause"),
                    (Action::Cancel, _) => (Status::Cancelled, "execution.cancel"),
                    (Action::Resume, Status::Paused) => (Status::Pending, "execution.release"),
                    (Action::Resume, _) => return Err(refuse("only a paused execution resumes")),
                    (Action::Retry, Status::Failed | Status::Cancelled) => {
                        (Status::Pending, "execution.retry")
                    }
                    (Action::Retry, _) => {
                        return Err(refuse("only a failed or cancelled execution is retried"))
                    }
                    (Action::Recover, Status::Completed) => return Err(refuse("it has completed")),
                    (Action::Recover, Status::Pending) => {
                        return Err(refuse(
                            "it is resumable already; the application's recover() continues it",
                        ))
                    }
                    (Action::Recover, Status::Running) if st.running => {
                        return Err(refuse("a live run holds it; pause or cancel it first"))
                    }
                    (Action::Recover, _) => (Status::Pending, "execution.recover"),
                    (Action::Delete | Action::Rollback | Action::Escalate, _) => {
                        unreachable!("handled above")
                    }
                };
                if action == Action::Resume
                    || (action == Action::Recover && e.status == Status::Paused)
                {
                    if let Some(f) = self.resumed_failure(execution, &request.by, false)? {
                        self.put_failure_in(batch, &f)?;
                    }
                }
                let mut counts = Vec::new();
                if new == Status::Cancelled {
                    counts = self.settle_failures(batch, execution, Status::Cancelled)?;
                }
                if matches!(new, Status::Cancelled | Status::Paused) {
                    counts.push(Delta {
                        dims: Dims::execution(&e.tenant, &e.workflow),
                        cell: Cell::ended(new),
                    });
                }
                e.status = new;
                e.lease = None;
                e.updated_at_ms = now_ms();
                if let Some(r) = &request.reason {
                    e.error = Some(r.clone());
                }
                let mut draft = AuditDraft::new(
                    audit_action,
                    format!("execution/{execution}"),
                    detail.clone(),
                );
                draft.rollup = counts;
                audit.push(draft);
                Ok(false)
            },
        )?;
        if requested {
            let p = &self.inner.controls;
            p.map.lock().insert(execution.clone(), request.clone());
            p.any.store(true, Ordering::Release);
        }
        Ok(Reply {
            action,
            execution: execution.clone(),
            result: if requested { "requested" } else { "applied" }.into(),
            status: if requested {
                status_of(Status::Running)
            } else {
                status_of(self.execution(execution)?.status)
            },
            erased: None,
            checkpoint: None,
            failure: None,
            notified: None,
            error: None,
        })
    }

    /// Applies a control through whichever process can: this handle when it is the writer, or
    /// else the store's writer process through the mailbox (waiting up to [`REPLY_TIMEOUT`] for
    /// its reply). A store no process holds is opened for writing for the time of the control.
    pub fn request_control(&self, request: &Request) -> Result<Reply> {
        if !self.is_read_only() {
            return self.control(request);
        }
        match Store::open_with(
            self.path(),
            crate::OpenOptions {
                create: false,
                actor: request.by.clone(),
                ..Default::default()
            },
        ) {
            Ok(writer) => return writer.control(request),
            Err(Error::Open(crate::OpenError::Locked { .. })) => {}
            Err(e) => return Err(e),
        }
        let dir = mailbox(self.path());
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_error("creating the control mailbox", &dir, e))?;
        let id = crate::store::new_id().to_string();
        let file = dir.join(format!("{id}.json"));
        let tmp = dir.join(format!("{id}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(request).expect("requests serialize"),
        )
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| io_error("writing a control request", &file, e))?;
        let reply = dir.join(format!("{id}.reply"));
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Ok(bytes) = std::fs::read(&reply) {
                let _ = std::fs::remove_file(&reply);
                let r: Reply = serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
                    what: "control reply",
                    key: reply.display().to_string(),
                    detail: e.to_string(),
                })?;
                return match &r.error {
                    Some(err) => Err(Error::Remote {
                        code: crate::ErrorCode::parse(err["code"].as_str().unwrap_or_default())
                            .map_or("server_error", |c| c.as_str()),
                        message: err["message"].as_str().unwrap_or_default().to_string(),
                    }),
                    None => Ok(r),
                };
            }
            // Withdrawn unless the writer claimed it already (renamed it to `.claimed`).
            if Instant::now() >= deadline && std::fs::remove_file(&file).is_ok() {
                return Err(Error::InvalidState {
                    execution: request.execution.clone(),
                    status: "unanswered".into(),
                    detail: format!(
                        "the process that holds store {} did not take the {} request within \
                         {} s (it polls {} while it runs); the request was withdrawn",
                        self.path().display(),
                        request.action.as_str(),
                        REPLY_TIMEOUT.as_secs(),
                        dir.display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies the mailbox's requests (called by the writer's poller).
    fn serve_mailbox(&self) {
        let dir = mailbox(self.path());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            let claimed = file.with_extension("claimed");
            if std::fs::rename(&file, &claimed).is_err() {
                continue; // withdrawn meanwhile
            }
            let reply = match std::fs::read(&claimed)
                .map_err(|e| io_error("reading a control request", &claimed, e))
                .and_then(|b| {
                    serde_json::from_slice::<Request>(&b).map_err(|e| Error::InvalidArgument {
                        what: "control request",
                        detail: format!("{}: {e}", claimed.display()),
                    })
                }) {
                Ok(req) => self
                    .control(&req)
                    .unwrap_or_else(|e| Reply::refused(req.action, &req.execution, &e)),
                Err(e) => Reply::refused(Action::Pause, "", &e),
            };
            let out = claimed.with_extension("reply");
            let tmp = claimed.with_extension("replying");
            let _ = std::fs::write(&tmp, serde_json::to_vec(&reply).expect("replies serialize"))
                .and_then(|()| std::fs::rename(&tmp, &out));
            let _ = std::fs::remove_file(&claimed);
        }
    }

    /// The pause or cancel waiting for `run` at this step boundary, if any: carried out here
    /// (the execution is paused or cancelled, with its audit entry) and returned as the error
    /// the run fails with.
    pub(crate) fn take_control(&self, run: &Run, step: &str) -> Result<()> {
        let p = &self.inner.controls;
        if !p.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(req) = p.map.lock().remove(run.execution_id()) else {
            return Ok(());
        };
        if p.map.lock().is_empty() {
            p.any.store(false, Ordering::Release);
        }
        let reason = req
            .reason
            .clone()
            .unwrap_or_else(|| format!("{} asked by {}", req.action.as_str(), req.by));
        match req.action {
            Action::Pause => {
                run.pause(&reason)?;
                Err(Error::Paused {
                    execution: run.execution_id().into(),
                    step: step.into(),
                    reason,
                })
            }
            _ => {
                run.cancel(&reason)?;
                Err(Error::Cancelled {
                    execution: run.execution_id().into(),
                    step: step.into(),
                    reason,
                })
            }
        }
    }

    /// Starts the writer's mailbox poller: a thread that ends when the store closes.
    pub(crate) fn start_mailbox(&self) {
        let weak: WeakStore = self.downgrade();
        let dir = mailbox(self.path());
        let _ = std::thread::Builder::new()
            .name("omium-control".into())
            .spawn(move || loop {
                std::thread::sleep(POLL);
                let Some(store) = weak.upgrade() else { return };
                if dir.exists() {
                    store.serve_mailbox();
                }
            });
    }

    /// Deletes an execution and collects the chunks it alone used; the audit entry says what
    /// was erased and who asked.
    fn erase_execution(
        &self,
        execution: &str,
        detail: &str,
    ) -> Result<(crate::execution::Erased, u64)> {
        self.execution(execution)?;
        let erased = self.delete_execution_by(execution, detail)?;
        let gc = self.gc()?;
        Ok((erased, gc.chunks_removed))
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::InvalidArgument {
        what: "control",
        detail: format!("{what} ({}): {e}", path.display()),
    }
}
