//! The default agreement of `consensus_required` steps: the hand-off goes through the consensus
//! coordinator. The producing agent broadcasts the step's outputs to the agents that consume
//! them (the message is appended to the Raft log, in the execution's total order); each target
//! answers — acknowledges, votes a value, or stays silent — and the outputs flow on once a
//! majority of the targets agreed. A split vote or no quorum within the timeout is a
//! `consensus_violation`, which the step's recovery policy handles.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::consensus::{AckRequest, BroadcastRequest, Coordinator};
use crate::error::Error;
use omium_engine::workflow::agents::AgentError;
use omium_engine::workflow::{Agreement, AgreementRequest};

/// How a target agent answers a hand-off broadcast to it.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Received and accepted.
    Ack,
    /// A vote for this value; the quorum must vote the same value.
    Vote(Value),
    /// No answer (the agent does not agree; the hand-off times out unless a quorum answers).
    Silent,
}

/// Lets a binding answer for the target agents (Python: `omium.consensus.subscribe` handlers).
pub trait Respond: Send + Sync {
    /// `message` is the broadcast (id, execution_id, seq, log_index, sender, targets, message:
    /// the step's workflow, step and outputs). An `Err` is the
    /// agent's failure to answer, reported as the violation's cause.
    fn answer(&self, agent: &str, message: &Value) -> std::result::Result<Answer, String>;
}

/// The agreement through a consensus [`Coordinator`] (embedded in the store, or a cluster).
pub struct ConsensusAgreement {
    coordinator: Coordinator,
    timeout: Duration,
    respond: Option<Arc<dyn Respond>>,
}

/// How long a hand-off waits for its quorum unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl ConsensusAgreement {
    /// Targets without a responder acknowledge when the hand-off is delivered to them.
    pub fn new(coordinator: Coordinator) -> ConsensusAgreement {
        ConsensusAgreement {
            coordinator,
            timeout: DEFAULT_TIMEOUT,
            respond: None,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> ConsensusAgreement {
        self.timeout = timeout;
        self
    }

    pub fn respond(mut self, respond: Arc<dyn Respond>) -> ConsensusAgreement {
        self.respond = Some(respond);
        self
    }

    /// Hands the message to its targets and appends their answers.
    fn deliver(
        &self,
        id: &str,
        targets: &[String],
        shown: &Value,
    ) -> std::result::Result<(), AgentError> {
        let mut acks = Vec::with_capacity(targets.len());
        for agent in targets {
            let answer = match &self.respond {
                None => Answer::Ack,
                Some(r) => r.answer(agent, shown).map_err(|e| {
                    AgentError::new(
                        "omium.ConsensusViolation",
                        format!("agent {agent:?} failed to answer message {id}: {e}"),
                    )
                })?,
            };
            let vote = match answer {
                Answer::Ack => None,
                Answer::Vote(v) => Some(v),
                Answer::Silent => continue,
            };
            acks.push(AckRequest {
                message_id: id.into(),
                agent: agent.clone(),
                vote,
            });
        }
        if acks.is_empty() {
            return Ok(());
        }
        // One log entry for every answer.
        for r in self
            .coordinator
            .acknowledge_many(&acks)
            .map_err(unavailable)?
        {
            r.map_err(unavailable)?;
        }
        Ok(())
    }
}

/// The agents that must agree: the consumers, each once, in order; a step nobody consumes
/// hands off to its own agent (which confirms its outputs on the log).
pub fn targets(request: &AgreementRequest) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &request.consumers {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    if out.is_empty() {
        out.push(request.agent.clone());
    }
    out
}

fn unavailable(e: Error) -> AgentError {
    AgentError::new("omium.ConsensusUnavailable", e.to_string())
}

impl Agreement for ConsensusAgreement {
    fn agree(&self, request: &AgreementRequest) -> std::result::Result<String, AgentError> {
        let broadcast = BroadcastRequest {
            execution_id: request.execution_id.clone(),
            sender: request.agent.clone(),
            targets: targets(request),
            message: json!({
                "workflow": request.workflow,
                "step": request.step,
                "outputs": request.outputs,
            }),
            ..Default::default()
        };
        let placed = self
            .coordinator
            .broadcast(&broadcast)
            .map_err(unavailable)?;
        // The message as the targets see it (as Python's `omium.consensus.subscribe` handlers
        // get every message).
        let shown = json!({
            "id": placed.id,
            "execution_id": placed.execution_id,
            "seq": placed.seq,
            "log_index": placed.log_index,
            "sender": broadcast.sender,
            "targets": broadcast.targets,
            "message": broadcast.message,
        });
        self.deliver(&placed.id, &broadcast.targets, &shown)?;
        // The executor runs the recovery policy; the coordinator records nothing itself.
        match self
            .coordinator
            .await_agreement_with(&placed.id, self.timeout, false)
        {
            Ok(m) => Ok(json!({
                "message_id": m.id,
                "seq": m.seq,
                "log_index": m.log_index,
                "targets": m.targets,
                "quorum": m.quorum,
                "acks": m.acks.iter().map(|a| json!({
                    "agent": a.agent,
                    "vote": a.vote.as_deref().map(|v| serde_json::from_str(v).unwrap_or(Value::Null)),
                })).collect::<Vec<_>>(),
            })
            .to_string()),
            Err(Error::ConsensusViolation {
                message_id,
                reason,
                detail,
                ..
            }) => Err(AgentError::new(
                "omium.ConsensusViolation",
                format!("message {message_id} ({reason}): {detail}"),
            )),
            Err(e) => Err(unavailable(e)),
        }
    }
}
