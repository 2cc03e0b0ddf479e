//! How a step's agent is called. A binding implements [`Agent`] (Python callables, CrewAI,
//! LangGraph); the core runs the two kinds a document can describe by itself: a shell
//! `command:` and a container `image:`, both speaking JSON on stdin and stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::spec::{Agent as AgentSpec, Command};
use crate::policy::Trigger;

/// One call of an agent for one step.
#[derive(Clone, Debug)]
pub struct AgentCall {
    pub execution_id: String,
    pub workflow: String,
    pub step: String,
    pub agent: String,
    /// 1 for the first attempt of the step in this run.
    pub attempt: u32,
    /// The step's inputs by name.
    pub inputs: Map<String, Value>,
    /// The names the step's `outputs:` declare.
    pub outputs: Vec<String>,
    /// The step's timeout, for agents that can stop their work (a process is killed).
    pub timeout: Option<Duration>,
}

/// An agent failed. `classes` (most derived first) and `message` are classified by the
/// recovery policy unless `kind` says what it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentError {
    pub classes: Vec<String>,
    pub message: String,
    pub kind: Option<Trigger>,
}

impl AgentError {
    pub fn new(class: &str, message: impl Into<String>) -> AgentError {
        AgentError {
            classes: vec![class.to_string()],
            message: message.into(),
            kind: None,
        }
    }
}

/// Something that runs a step: gets its inputs, returns its outputs (a JSON object with the
/// step's `outputs:` names). Called from worker threads, several at once.
pub trait Agent: Send + Sync {
    fn call(&self, call: &AgentCall) -> Result<Map<String, Value>, AgentError>;
}

/// A Rust closure is an agent.
impl<F> Agent for F
where
    F: Fn(&AgentCall) -> Result<Map<String, Value>, AgentError> + Send + Sync,
{
    fn call(&self, call: &AgentCall) -> Result<Map<String, Value>, AgentError> {
        self(call)
    }
}

/// A shell command: inputs as one JSON object on stdin, outputs as one JSON object on stdout;
/// a non-zero exit is a failure whose message carries the end of stderr.
pub struct ShellAgent {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    dir: Option<PathBuf>,
    what: String,
}

impl ShellAgent {
    /// `dir` is where the command runs (the workflow file's folder).
    pub fn new(command: &Command, env: Vec<(String, String)>, dir: Option<&Path>) -> ShellAgent {
        let argv = match command {
            Command::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
            Command::Argv(v) => v.clone(),
        };
        let what = match command {
            Command::Shell(s) => format!("command {s:?}"),
            Command::Argv(v) => format!("command {:?}", v.join(" ")),
        };
        ShellAgent {
            argv,
            env,
            dir: dir.map(Path::to_path_buf),
            what,
        }
    }

    /// A container: `<runtime> run --rm -i [limits] [-e K=V] image`, same protocol.
    pub fn container(runtime: &Path, spec: &AgentSpec) -> ShellAgent {
        let image = spec.image.clone().unwrap_or_default();
        let mut argv = vec![
            runtime.display().to_string(),
            "run".into(),
            "--rm".into(),
            "-i".into(),
        ];
        if let Some(cpu) = spec.resources.cpu.as_deref().and_then(cpus) {
            argv.extend(["--cpus".into(), cpu]);
        }
        if let Some(mem) = spec.resources.memory.as_deref() {
            argv.extend(["--memory".into(), memory(mem)]);
        }
        for (k, v) in &spec.env {
            argv.extend(["-e".into(), format!("{k}={v}")]);
        }
        for k in ENV_NAMES {
            argv.extend(["-e".into(), k.to_string()]);
        }
        argv.push(image.clone());
        ShellAgent {
            argv,
            env: Vec::new(),
            dir: None,
            what: format!("image {image:?} (through {})", runtime.display()),
        }
    }
}

/// What a process agent learns about its call from its environment.
const ENV_NAMES: [&str; 4] = [
    "OMIUM_EXECUTION_ID",
    "OMIUM_WORKFLOW",
    "OMIUM_STEP",
    "OMIUM_ATTEMPT",
];

impl Agent for ShellAgent {
    fn call(&self, call: &AgentCall) -> Result<Map<String, Value>, AgentError> {
        let mut cmd = Process::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(ENV_NAMES[0], &call.execution_id)
            .env(ENV_NAMES[1], &call.workflow)
            .env(ENV_NAMES[2], &call.step)
            .env(ENV_NAMES[3], call.attempt.to_string());
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().map_err(|e| {
            AgentError::new(
                "AgentStartError",
                format!("agent {:?}: cannot start {}: {e}", call.agent, self.what),
            )
        })?;
        let input = Value::Object(call.inputs.clone()).to_string();
        let mut stdin = child.stdin.take().expect("piped");
        let writer = std::thread::spawn(move || {
            // A command that does not read its input closes the pipe early: not an error.
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = reader(child.stdout.take().expect("piped"));
        let err = reader(child.stderr.take().expect("piped"));
        let status = wait(&mut child, call.timeout);
        let _ = writer.join();
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let status = match status {
            Some(s) => s,
            None => {
                return Err(AgentError {
                    classes: vec!["TimeoutError".into()],
                    message: format!(
                        "agent {:?} ({}) did not finish within {:?} and was killed",
                        call.agent,
                        self.what,
                        call.timeout.unwrap_or_default()
                    ),
                    kind: Some(Trigger::TimeoutError),
                })
            }
        };
        if !status.success() {
            let tail = tail(&stderr);
            return Err(AgentError::new(
                "CommandFailed",
                format!(
                    "agent {:?} ({}) exited with {status}{}",
                    call.agent,
                    self.what,
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; stderr: {tail}")
                    }
                ),
            ));
        }
        match serde_json::from_slice::<Value>(&stdout) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(AgentError::new(
                "ValidationError",
                format!(
                    "agent {:?} ({}) printed {}, expected one JSON object of its outputs on stdout",
                    call.agent,
                    self.what,
                    kind_of(&other)
                ),
            )),
            Err(e) => Err(AgentError::new(
                "ValidationError",
                format!(
                    "agent {:?} ({}) did not print JSON on stdout ({e}): {:?}; it must print one JSON object of its outputs",
                    call.agent,
                    self.what,
                    tail(&stdout)
                ),
            )),
        }
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for the child; kills it at the deadline (None then).
fn wait(child: &mut Child, timeout: Option<Duration>) -> Option<std::process::ExitStatus> {
    let Some(t) = timeout else {
        return child.wait().ok();
    };
    let deadline = Instant::now() + t;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return None,
        }
    }
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let start = s.char_indices().rev().nth(400).map(|(i, _)| i).unwrap_or(0);
    s[start..].to_string()
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `500m` → `0.5`, `2` → `2`.
fn cpus(s: &str) -> Option<String> {
    match s.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok().map(|m| format!("{}", m / 1000.0)),
        None => s.parse::<f64>().ok().map(|c| c.to_string()),
    }
}

/// `1Gi` → `1g`, `512Mi` → `512m` (the container runtimes' units).
fn memory(s: &str) -> String {
    for (k8s, docker) in [("Ki", "k"), ("Mi", "m"), ("Gi", "g"), ("Ti", "t")] {
        if let Some(n) = s.strip_suffix(k8s) {
            return format!("{n}{docker}");
        }
    }
    s.to_string()
}

/// The container runtime to run `image:` agents with: `OMIUM_CONTAINER_RUNTIME`, else
/// `docker`, else `podman`, found on `PATH`.
pub fn container_runtime() -> Option<PathBuf> {
    if let Some(r) = std::env::var_os("OMIUM_CONTAINER_RUNTIME") {
        let p = PathBuf::from(&r);
        if p.components().count() > 1 {
            return p.is_file().then_some(p);
        }
        return which(&r.to_string_lossy());
    }
    which("docker").or_else(|| which("podman"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_limits_become_runtime_flags() {
        assert_eq!(cpus("500m").as_deref(), Some("0.5"));
        assert_eq!(cpus("2").as_deref(), Some("2"));
        assert_eq!(memory("1Gi"), "1g");
        assert_eq!(memory("512Mi"), "512m");
    }
}
