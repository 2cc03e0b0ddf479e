//! The recovery driver: what happens after a step failed, as a sans-IO state machine.
//!
//! The policy decides ([`Recovery::next_directive`]); the driver carries the decision out the
//! same way for every host — Python (sync and async), Node, the workflow executor, the daemon's
//! clients. It records every action, sends webhooks, writes the notes ("no fallback is
//! registered as …", "suggested: …"), settles the failure record and builds the error that ends
//! the step. The host does only what the core cannot: call the user's functions (the step again,
//! a fallback, a fixer, the analyzer, the notifiers), sleep, await, and raise in its own
//! language. It reports each result as an [`Event`] and gets the next [`Command`]:
//!
//! ```text
//! host: step raised E ──► start recovery ──► advance(Start) ──► Command
//!   Retry{delay}     sleep, call the step again   ──► advance(Called(ok or failure))
//!   Fallback{name}   call the fallback            ──► advance(Called(..)) or advance(Missing)
//!   Fix{name}        call the fixer               ──► advance(Fixed(..)) or advance(Missing)
//!   CallFixed        call the step with the fixed arguments ──► advance(Called(..))
//!   Analyze          call the analyzer            ──► advance(Analyzed(..)) or advance(Missing)
//!   Notify{payload}  call the notifiers           ──► advance(Notified(problems))
//!   Return           the last call's value is the step's result
//!   Reraise          raise the last failure as it is
//!   Raise(error)     raise this error (escalated, paused, rolled back), caused by the last failure
//! ```

use std::time::Duration;

use serde_json::{json, Value};

use super::{Directive, Outcome, Recovery};
use crate::error::{Error, Result};

/// What the driver needs of the handling of one failure: in this process ([`Recovery`]) or held
/// by a daemon (the serve client's handle).
pub trait Handling: Send {
    fn next_directive(&mut self) -> Result<Directive>;
    /// Closes the current action (see [`Recovery::done`]).
    fn done(&mut self, ok: bool, note: Option<&str>) -> Result<()>;
    fn set_analysis(
        &mut self,
        root_cause: Option<String>,
        suggested_fix: Option<String>,
    ) -> Result<()>;
    /// Settles the failure (or, for `Paused` and `RolledBack`, marks where it stands).
    fn finish(&mut self, outcome: Outcome) -> Result<()>;
    /// The JSON a notification carries (`{"event", "failure"}`).
    fn payload(&mut self, event: &str) -> Result<Value>;
    /// Sends the webhooks of `channels`: `(channel, error)` for each one that has a webhook.
    fn webhooks(
        &mut self,
        channels: &[String],
        event: &str,
    ) -> Result<Vec<(String, Option<String>)>>;
}

impl Handling for Recovery {
    fn next_directive(&mut self) -> Result<Directive> {
        Recovery::next_directive(self)
    }
    fn done(&mut self, ok: bool, note: Option<&str>) -> Result<()> {
        Recovery::done(self, ok, note)
    }
    fn set_analysis(&mut self, root_cause: Option<String>, fix: Option<String>) -> Result<()> {
        Recovery::set_analysis(self, root_cause, fix)
    }
    fn finish(&mut self, outcome: Outcome) -> Result<()> {
        match outcome {
            Outcome::Recovered => self.recovered(),
            Outcome::Escalated => self.escalated(),
            Outcome::Paused => self.paused(),
            Outcome::RolledBack => self.rolled_back(),
            _ => self.failed(),
        }
    }
    fn payload(&mut self, event: &str) -> Result<Value> {
        Ok(Recovery::payload(self, event))
    }
    fn webhooks(
        &mut self,
        channels: &[String],
        event: &str,
    ) -> Result<Vec<(String, Option<String>)>> {
        Ok(self
            .notify(channels, event)
            .into_iter()
            .map(|(c, r)| (c, r.err()))
            .collect())
    }
}

/// A failed call the host reports: what to record, and whether a policy may handle it (the
/// step's own errors, its timeout, failed conditions, flagged results, denied tools: yes;
/// Omium's own errors and recovery outcomes: no).
#[derive(Clone, Debug)]
pub struct Failed {
    /// How the failure reads (`ValueError: boom`).
    pub message: String,
    pub recoverable: bool,
}

/// What an analyzer said.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub root_cause: Option<String>,
    pub suggested_fix: Option<String>,
}

/// What the host reports to [`Driver::advance`].
#[derive(Clone, Debug)]
pub enum Event {
    /// The step failed (the failure the driver was made with): begin.
    Start,
    /// The step (a retry, or with fixed arguments) or a fallback was called.
    Called(std::result::Result<(), Failed>),
    /// The fixer returned the step's new arguments (`Ok`), or raised or returned something
    /// that is not arguments (`Err`: why).
    Fixed(std::result::Result<(), String>),
    /// The analyzer answered, or raised (`Err`: how it failed).
    Analyzed(std::result::Result<Analysis, String>),
    /// The notifiers were called: what went wrong, one entry per failed notifier.
    Notified(Vec<String>),
    /// The host has no fallback, fixer or analyzer by the name the last command gave.
    Missing,
}

impl Event {
    /// The event a binding reports by name: `start`; `called` (`ok`, or failed with `note` and
    /// `recoverable`); `fixed` (`ok`, or `note` says why not); `analyzed` (`ok` with `analysis`,
    /// or `note`: how the analyzer failed); `notified` (`note`: the failed notifiers, if any);
    /// `missing`.
    pub fn from_parts(
        name: &str,
        ok: bool,
        note: Option<String>,
        recoverable: bool,
        analysis: Analysis,
    ) -> Result<Event> {
        let why = || note.clone().unwrap_or_else(|| "it failed".into());
        Ok(match name {
            "start" => Event::Start,
            "called" if ok => Event::Called(Ok(())),
            "called" => Event::Called(Err(Failed {
                message: why(),
                recoverable,
            })),
            "fixed" if ok => Event::Fixed(Ok(())),
            "fixed" => Event::Fixed(Err(why())),
            "analyzed" if ok => Event::Analyzed(Ok(analysis)),
            "analyzed" => Event::Analyzed(Err(why())),
            "notified" => Event::Notified(note.into_iter().collect()),
            "missing" => Event::Missing,
            other => {
                return Err(Error::InvalidArgument {
                    what: "recovery event",
                    detail: format!(
                        "{other:?}; expected start, called, fixed, analyzed, notified or missing"
                    ),
                })
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Called(_) => "called",
            Event::Fixed(_) => "fixed",
            Event::Analyzed(_) => "analyzed",
            Event::Notified(_) => "notified",
            Event::Missing => "missing",
        }
    }
}

/// What the host does next.
#[derive(Debug)]
pub enum Command {
    /// Wait `delay`, then call the step again with its current arguments; report `Called`.
    Retry { attempt: u32, delay: Duration },
    /// Call the step with the arguments the fixer returned; report `Called`.
    CallFixed,
    /// Call the fallback registered as `function` with the step's arguments; report `Called`
    /// (its result becomes the step's), or `Missing`.
    Fallback { function: String },
    /// Call the fixer registered as `fix` with `failure` and the step's arguments; report
    /// `Fixed`, or `Missing`.
    Fix { fix: String, failure: Value },
    /// Call the analyzer with `failure`; report `Analyzed`, or `Missing` when there is none.
    Analyze { failure: Value },
    /// Call the notifiers with `payload` (`event`, `failure`, `channels`); report `Notified`.
    /// The driver sends the channels' webhooks itself.
    Notify { payload: Value },
    /// The step recovered: the last call's value is its result.
    Return,
    /// The policy gave up: raise the last failure as it is.
    Reraise,
    /// Raise `error` (escalated, paused, rolled back), caused by the last failure; `failure`
    /// is the recorded failure, for the exception's `failure` attribute.
    Raise { error: Error, failure: Value },
}

impl Command {
    /// The command's name, as the bindings get it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Retry { .. } => "retry",
            Command::CallFixed => "call",
            Command::Fallback { .. } => "fallback",
            Command::Fix { .. } => "fix",
            Command::Analyze { .. } => "analyze",
            Command::Notify { .. } => "notify",
            Command::Return => "return",
            Command::Reraise => "reraise",
            Command::Raise { .. } => "raise",
        }
    }

    /// The command's parameters as the bindings get them. `raise` carries `code`, `message`,
    /// `execution_id`, `step`, `failure`, and `reason` (paused), `to` (rolled back) or
    /// `channels` (escalated).
    pub fn params(&self) -> Value {
        match self {
            Command::Retry { attempt, delay } => json!({
                "attempt": attempt,
                "delay": delay.as_secs_f64(),
                "delay_ms": delay.as_millis() as u64,
            }),
            Command::Fallback { function } => json!({ "function": function }),
            Command::Fix { fix, failure } => json!({ "fix": fix, "failure": failure }),
            Command::Analyze { failure } => json!({ "failure": failure }),
            Command::Notify { payload } => payload.clone(),
            Command::Raise { error, failure } => {
                let mut p = json!({
                    "code": error.code(),
                    "message": error.to_string(),
                    "failure": failure,
                });
                match error {
                    Error::Escalated {
                        execution,
                        step,
                        channels,
                        ..
                    } => {
                        p["execution_id"] = json!(execution);
                        p["step"] = json!(step);
                        p["channels"] = json!(channels);
                    }
                    Error::Paused {
                        execution,
                        step,
                        reason,
                    } => {
                        p["execution_id"] = json!(execution);
                        p["step"] = json!(step);
                        p["reason"] = json!(reason);
                    }
                    Error::RolledBack {
                        execution,
                        step,
                        to,
                        ..
                    } => {
                        p["execution_id"] = json!(execution);
                        p["step"] = json!(step);
                        p["to"] = json!(to);
                    }
                    _ => {}
                }
                p
            }
            Command::CallFixed | Command::Return | Command::Reraise => json!({}),
        }
    }
}

/// What the driver waits for.
#[derive(Debug)]
enum Waiting {
    Start,
    /// The result of a call: a retry, a fallback (named, for `Missing`), the fixed arguments.
    Call {
        fallback: Option<String>,
    },
    Fix {
        fix: String,
    },
    Analyze,
    Notify {
        event: &'static str,
        channels: Vec<String>,
        escalate: bool,
    },
    /// Ended: nothing more to do.
    Ended,
}

/// Drives the handling of one failed step (see the module docs).
pub struct Driver {
    handling: Box<dyn Handling>,
    execution_id: String,
    /// How messages name the step (`step "charge"`).
    step: String,
    /// The last failure, as it reads.
    last_error: String,
    waiting: Waiting,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("execution_id", &self.execution_id)
            .field("step", &self.step)
            .field("waiting", &self.waiting)
            .finish()
    }
}

impl Driver {
    /// A driver for the failure `handling` records. `step` names the step in messages
    /// (`step "charge"`), `error` is how the failure reads.
    pub fn new(
        handling: Box<dyn Handling>,
        execution_id: impl Into<String>,
        step: impl Into<String>,
        error: impl Into<String>,
    ) -> Driver {
        Driver {
            handling,
            execution_id: execution_id.into(),
            step: step.into(),
            last_error: error.into(),
            waiting: Waiting::Start,
        }
    }

    /// The recorded failure (as notifications carry it).
    pub fn failure(&mut self) -> Result<Value> {
        Ok(self.handling.payload("omium.failure")?["failure"].take())
    }

    /// Settles the failure as failed without acting on it (a denied tool outside a step).
    pub fn give_up(&mut self) -> Result<()> {
        self.waiting = Waiting::Ended;
        self.handling.finish(Outcome::Failed)
    }

    /// True once the driver returned `Return`, `Reraise` or `Raise`.
    pub fn ended(&self) -> bool {
        matches!(self.waiting, Waiting::Ended)
    }

    /// Takes what the host did and says what it does next.
    pub fn advance(&mut self, event: Event) -> Result<Command> {
        let waiting = std::mem::replace(&mut self.waiting, Waiting::Ended);
        match (waiting, event) {
            (Waiting::Start, Event::Start) => self.next(),
            (Waiting::Call { .. }, Event::Called(Ok(()))) => {
                self.handling.done(true, None)?;
                self.handling.finish(Outcome::Recovered)?;
                Ok(Command::Return)
            }
            (Waiting::Call { .. }, Event::Called(Err(f))) => {
                self.handling.done(false, Some(&f.message))?;
                self.last_error = f.message;
                if !f.recoverable {
                    self.handling.finish(Outcome::Failed)?;
                    return Ok(Command::Reraise);
                }
                self.next()
            }
            (
                Waiting::Call {
                    fallback: Some(name),
                },
                Event::Missing,
            ) => {
                let note = format!("no fallback is registered as {name:?}");
                self.handling.done(false, Some(&note))?;
                self.next()
            }
            (Waiting::Fix { .. }, Event::Fixed(Ok(()))) => {
                self.waiting = Waiting::Call { fallback: None };
                Ok(Command::CallFixed)
            }
            (Waiting::Fix { .. }, Event::Fixed(Err(why))) => {
                self.handling.done(false, Some(&why))?;
                self.next()
            }
            (Waiting::Fix { fix }, Event::Missing) => {
                let note = format!("no fixer is registered as {fix:?}");
                self.handling.done(false, Some(&note))?;
                self.next()
            }
            (Waiting::Analyze, Event::Analyzed(Ok(a))) => {
                if a.root_cause.is_some() || a.suggested_fix.is_some() {
                    self.handling.set_analysis(a.root_cause, a.suggested_fix)?;
                }
                self.handling.done(true, None)?;
                self.next()
            }
            (Waiting::Analyze, Event::Analyzed(Err(why))) => {
                self.handling
                    .done(false, Some(&format!("analyzer failed: {why}")))?;
                self.next()
            }
            (Waiting::Analyze, Event::Missing) => {
                self.handling.done(true, Some("no analyzer is set"))?;
                self.next()
            }
            (
                Waiting::Notify {
                    event,
                    channels,
                    escalate,
                },
                Event::Notified(mut problems),
            ) => {
                for (channel, e) in self.handling.webhooks(&channels, event)? {
                    if let Some(e) = e {
                        problems.push(format!("webhook of {channel:?}: {e}"));
                    }
                }
                let note = (!problems.is_empty()).then(|| problems.join("; "));
                self.handling.done(note.is_none(), note.as_deref())?;
                if !escalate {
                    return self.next();
                }
                self.handling.finish(Outcome::Escalated)?;
                let error = Error::Escalated {
                    execution: self.execution_id.clone(),
                    step: self.step.clone(),
                    channels: if channels.is_empty() {
                        "the notifiers".into()
                    } else {
                        channels.join(", ")
                    },
                    message: self.last_error.clone(),
                };
                self.raise(error)
            }
            (waiting, event) => {
                let expected = match &waiting {
                    Waiting::Start => "start",
                    Waiting::Call { fallback: None } => "called",
                    Waiting::Call { fallback: Some(_) } => "called or missing",
                    Waiting::Fix { .. } => "fixed or missing",
                    Waiting::Analyze => "analyzed or missing",
                    Waiting::Notify { .. } => "notified",
                    Waiting::Ended => "nothing (the recovery has ended)",
                };
                let ended = matches!(waiting, Waiting::Ended);
                self.waiting = waiting;
                Err(Error::InvalidArgument {
                    what: "recovery event",
                    detail: format!(
                        "got the event {:?}, expected {expected}{}",
                        event.name(),
                        if ended {
                            ""
                        } else {
                            "; the recovery is unchanged"
                        }
                    ),
                })
            }
        }
    }

    /// The policy's next directive, as a command.
    fn next(&mut self) -> Result<Command> {
        loop {
            let d = self.handling.next_directive()?;
            return Ok(match d {
                Directive::Retry { attempt, delay } => {
                    self.waiting = Waiting::Call { fallback: None };
                    Command::Retry { attempt, delay }
                }
                Directive::Fallback { function } => {
                    self.waiting = Waiting::Call {
                        fallback: Some(function.clone()),
                    };
                    Command::Fallback { function }
                }
                Directive::SuggestFix { fix, auto_apply } => match (fix, auto_apply) {
                    (Some(fix), true) => {
                        self.waiting = Waiting::Fix { fix: fix.clone() };
                        Command::Fix {
                            fix,
                            failure: self.failure()?,
                        }
                    }
                    (None, true) => {
                        self.handling
                            .done(false, Some("auto_apply needs the name of a fix"))?;
                        continue;
                    }
                    (fix, false) => {
                        let fix = match fix {
                            Some(f) => f,
                            None => self.failure()?["suggested_fix"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        };
                        self.handling
                            .done(true, Some(&format!("suggested: {fix}")))?;
                        continue;
                    }
                },
                Directive::Inspect => {
                    self.waiting = Waiting::Analyze;
                    Command::Analyze {
                        failure: self.failure()?,
                    }
                }
                Directive::Notify { channels } => {
                    self.notify("omium.failure.notification", channels, false)?
                }
                Directive::Escalate { channels } => {
                    self.notify("omium.failure.escalation", channels, true)?
                }
                Directive::Pause { reason } => {
                    self.handling.finish(Outcome::Paused)?;
                    let error = Error::Paused {
                        execution: self.execution_id.clone(),
                        step: self.step.clone(),
                        reason,
                    };
                    return self.raise(error);
                }
                Directive::Rollback { to } => {
                    self.handling.finish(Outcome::RolledBack)?;
                    let error = Error::RolledBack {
                        execution: self.execution_id.clone(),
                        step: self.step.clone(),
                        to,
                        message: self.last_error.clone(),
                    };
                    return self.raise(error);
                }
                // `next_directive` settled the failure as failed.
                Directive::Fail => Command::Reraise,
            });
        }
    }

    fn notify(
        &mut self,
        event: &'static str,
        channels: Vec<String>,
        escalate: bool,
    ) -> Result<Command> {
        let mut payload = self.handling.payload(event)?;
        payload["channels"] = json!(channels);
        self.waiting = Waiting::Notify {
            event,
            channels,
            escalate,
        };
        Ok(Command::Notify { payload })
    }

    fn raise(&mut self, error: Error) -> Result<Command> {
        let failure = self.failure()?;
        Ok(Command::Raise { error, failure })
    }
}
