//! The workflow document as written (YAML or JSON), and its validation into a [`Spec`]: every
//! reference resolved, the data flow turned into edges, the DAG checked for cycles. Problems
//! name the file, line and column of the node they are about, and the nearest valid name when
//! one is a likely typo; all semantic problems of a document are reported together.

// A problem is rich (file, line, column, value, suggestion) and serde needs it unboxed;
// validating a document is not a hot path.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{de, Deserialize};

use crate::expr::Condition;
use crate::policy::yaml::{self, Kind, Node};
use crate::policy::{self, did_you_mean, Dur, Policy, Problem};

/// The frameworks an agent may declare. The value documents what the agent is; how it runs
/// comes from its binding (a function, a shell `command:`, or a container `image:`).
pub const FRAMEWORKS: &[&str] = &[
    "crew_ai",
    "crewai",
    "langgraph",
    "python",
    "node",
    "shell",
    "container",
    "custom",
];

/// Steps that may run at once when the document sets no `concurrency:`.
pub const DEFAULT_CONCURRENCY: usize = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)] // documentation only
    description: Option<String>,
    /// The workflow's inputs; when absent, the inputs of the first steps that no step produces.
    #[serde(default)]
    inputs: Option<Vec<String>>,
    #[serde(default)]
    concurrency: Option<u64>,
    /// A recovery policy for every step (inline document, as in `omium policy`).
    #[serde(default)]
    #[allow(dead_code)] // validated from its node (Validator::inline_policy)
    policy: Option<de::IgnoredAny>,
    #[serde(default)]
    agents: Vec<AgentDoc>,
    #[serde(default)]
    flow: Vec<StepDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentDoc {
    id: String,
    #[serde(default)]
    framework: Option<Framework>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    command: Option<Command>,
    #[serde(default)]
    resources: Option<Resources>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)] // documentation only
    description: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Framework {
    CrewAi,
    Crewai,
    Langgraph,
    Python,
    Node,
    Shell,
    Container,
    Custom,
}

/// A shell command: one string (run by `sh -c`) or a list (program and arguments).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

/// Container limits, in Kubernetes notation (`cpu: "500m"`, `memory: "1Gi"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    step: StepId,
    #[serde(default)]
    name: Option<String>,
    agent: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    checkpoints: Vec<String>,
    #[serde(default)]
    depends_on: Vec<StepId>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    timeout: Option<Dur>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)] // validated from its node (Validator::inline_policy)
    policy: Option<de::IgnoredAny>,
    #[serde(default)]
    consensus_required: bool,
    #[serde(default)]
    #[allow(dead_code)] // documentation only
    description: Option<String>,
}

/// A step id as written: `step: 1` or `step: kyc`; in `depends_on`, `^1` also means step 1.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StepId(String);

impl<'de> Deserialize<'de> for StepId {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = StepId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a step number or name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StepId, E> {
                Ok(StepId(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StepId, E> {
                Ok(StepId(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StepId, E> {
                Ok(StepId(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An agent of a validated workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub framework: Option<String>,
    pub image: Option<String>,
    pub command: Option<Command>,
    pub resources: Resources,
    pub env: BTreeMap<String, String>,
}

/// A step of a validated workflow.
#[derive(Clone, Debug)]
pub struct Step {
    /// As written (`1`, `kyc`).
    pub id: String,
    /// The checkpoint its outputs are recorded as: its first `checkpoints:` name, else its
    /// `name:`, else `step <id>`.
    pub checkpoint: String,
    /// Further names from `checkpoints:`, recorded as snapshots of the same outputs.
    pub aliases: Vec<String>,
    pub agent: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Indexes of the steps it waits for: its `depends_on` and the producers of its inputs.
    pub after: BTreeSet<usize>,
    /// For each input, the step producing it (None: a workflow input).
    pub producers: Vec<Option<usize>>,
    pub when: Option<String>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub policy: Option<Policy>,
    pub consensus_required: bool,
    /// Where the step is written, for messages.
    pub line: usize,
}

impl Step {
    /// How the step is named to people: `step 2 (credit_agent)`.
    pub fn label(&self) -> String {
        format!("step {} ({})", self.id, self.agent)
    }

    /// The explicit journal key of the step's checkpoint: its identity does not depend on the
    /// order parallel steps finish in.
    pub fn key(&self) -> String {
        format!("workflow-step:{}", self.id)
    }
}

/// A validated workflow.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub file: Option<String>,
    pub inputs: Vec<String>,
    pub concurrency: usize,
    pub policy: Option<Policy>,
    pub agents: Vec<Agent>,
    pub steps: Vec<Step>,
}

impl Spec {
    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// Index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// All the problems of one document (at least one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct SpecErrors {
    pub problems: Vec<Problem>,
}

/// Parses and validates a workflow document. `file` names the source in messages.
pub fn parse(text: &str, file: Option<&str>) -> Result<Spec, SpecErrors> {
    let name = file.unwrap_or("<workflow>").to_string();
    let with_file = |mut p: Problem| {
        p.file = Some(name.clone());
        p
    };
    let one = |p: Problem| SpecErrors {
        problems: vec![with_file(p)],
    };
    let root = yaml::parse(text).map_err(one)?;
    let doc = Document::deserialize(yaml::De::new(&root)).map_err(one)?;
    let mut v = Validator {
        root: &root,
        problems: Vec::new(),
    };
    let spec = v.validate(doc, file);
    if v.problems.is_empty() {
        Ok(spec)
    } else {
        let mut problems: Vec<Problem> = v.problems.into_iter().map(with_file).collect();
        problems.sort_by_key(|p| (p.at.line, p.at.column));
        Err(SpecErrors { problems })
    }
}

struct Validator<'a> {
    root: &'a Node,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn node(&self, path: &[&str]) -> &Node {
        // The deepest node of the path that exists.
        (0..=path.len())
            .rev()
            .find_map(|n| self.root.find(&path[..n]))
            .unwrap_or(self.root)
    }

    fn problem(&mut self, path: &[&str], message: String) -> &mut Problem {
        let at = self.node(path).at;
        self.problems.push(Problem {
            at,
            path: dotted(path),
            message,
            ..Problem::default()
        });
        self.problems.last_mut().expect("just pushed")
    }

    fn choice(&mut self, path: &[&str], message: String, value: &str, choices: &[&str]) {
        // A number near another number is no hint (`^7` is not a typo of `^1`).
        let numeric = value.chars().all(|c| c.is_ascii_digit());
        let suggestion = (!numeric).then(|| did_you_mean(value, choices)).flatten();
        let p = self.problem(path, message);
        p.value = Some(value.to_string());
        p.suggestion = suggestion;
    }

    fn line_of(&self, path: &[&str]) -> usize {
        self.node(path).at.line
    }

    fn inline_policy(&mut self, path: &[&str]) -> Option<Policy> {
        let node = self.root.find(path)?.clone();
        if matches!(node.kind, Kind::Null) {
            return None;
        }
        match policy::parse_node(&node).and_then(|p| {
            policy::Compiled::new(&p).map_err(|e| Problem {
                at: node.at,
                message: e.to_string(),
                ..Problem::default()
            })?;
            Ok(p)
        }) {
            Ok(p) => Some(p),
            Err(mut p) => {
                let prefix = dotted(path);
                p.path = if p.path.is_empty() {
                    prefix
                } else if p.path.starts_with('[') {
                    format!("{prefix}{}", p.path)
                } else {
                    format!("{prefix}.{}", p.path)
                };
                if p.at.line == 0 {
                    p.at = node.at;
                }
                self.problems.push(p);
                None
            }
        }
    }

    fn validate(&mut self, doc: Document, file: Option<&str>) -> Spec {
        if let Some(v) = doc.version {
            if v != 1 {
                self.problem(
                    &["version"],
                    format!("unsupported workflow version {v}; this Omium reads version 1"),
                );
            }
        }
        if doc.name.trim().is_empty() {
            self.problem(
                &["name"],
                "the workflow name is empty; give it a name".into(),
            );
        }
        let concurrency = match doc.concurrency {
            Some(0) => {
                self.problem(
                    &["concurrency"],
                    "concurrency 0 would run no step; expected 1 or more".into(),
                );
                1
            }
            Some(n) => n.min(1024) as usize,
            None => DEFAULT_CONCURRENCY,
        };
        let workflow_policy = self.inline_policy(&["policy"]);

        // Agents.
        let mut agents: Vec<Agent> = Vec::new();
        let mut agent_line: HashMap<String, usize> = HashMap::new();
        for (i, a) in doc.agents.into_iter().enumerate() {
            let i_s = i.to_string();
            let path = ["agents", i_s.as_str(), "id"];
            if a.id.trim().is_empty() {
                self.problem(&path, "the agent id is empty".into());
                continue;
            }
            if let Some(first) = agent_line.get(&a.id) {
                let first = *first;
                self.problem(
                    &path,
                    format!(
                        "agent {:?} is defined twice (first at line {first}); give each agent its own id",
                        a.id
                    ),
                );
                continue;
            }
            if let (Some(_), Some(_)) = (&a.image, &a.command) {
                self.problem(
                    &["agents", i_s.as_str(), "command"],
                    format!(
                        "agent {:?} has both `image:` and `command:`; an agent runs one way: keep one",
                        a.id
                    ),
                );
            }
            if let Some(Command::Argv(v)) = &a.command {
                if v.is_empty() {
                    self.problem(
                        &["agents", i_s.as_str(), "command"],
                        "the command is an empty list; give the program and its arguments".into(),
                    );
                }
            }
            agent_line.insert(a.id.clone(), self.line_of(&path));
            agents.push(Agent {
                framework: a.framework.map(|f| FRAMEWORKS[f as usize].to_string()),
                id: a.id,
                image: a.image,
                command: a.command,
                resources: a.resources.unwrap_or_default(),
                env: a.env,
            });
        }
        let agent_ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();

        if doc.flow.is_empty() {
            self.problem(
                &["flow"],
                "the workflow has no steps; list them under `flow:`".into(),
            );
        }

        // Steps: ids, agents, outputs and checkpoint names first (references need them all).
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut producer: HashMap<String, usize> = HashMap::new();
        let mut checkpoint_names: HashMap<String, usize> = HashMap::new();
        let mut steps: Vec<Step> = Vec::new();
        let mut docs: Vec<(usize, StepDoc)> = Vec::new();
        for (i, s) in doc.flow.into_iter().enumerate() {
            let i_s = i.to_string();
            let line = self.line_of(&["flow", &i_s]);
            if s.step.0.trim().is_empty() || s.step.0.starts_with('^') {
                self.problem(
                    &["flow", &i_s, "step"],
                    format!(
                        "step id {:?} is not valid; use a number or a name (not starting with ^)",
                        s.step.0
                    ),
                );
                continue;
            }
            if let Some(first) = ids.get(&s.step.0) {
                let first_line = steps[*first].line;
                self.problem(
                    &["flow", &i_s, "step"],
                    format!(
                        "step {} is defined twice (first at line {first_line}); give each step its own id",
                        s.step.0
                    ),
                );
                continue;
            }
            if !agent_ids.contains(&s.agent.as_str()) {
                let known = if agent_ids.is_empty() {
                    "no agents are defined under `agents:`".to_string()
                } else {
                    format!("defined agents: {}", agent_ids.join(", "))
                };
                self.choice(
                    &["flow", &i_s, "agent"],
                    format!(
                        "step {} uses unknown agent {:?} ({known})",
                        s.step.0, s.agent
                    ),
                    &s.agent,
                    &agent_ids,
                );
            }
            let idx = steps.len();
            let mut seen_out = BTreeSet::new();
            for (j, o) in s.outputs.iter().enumerate() {
                let j_s = j.to_string();
                let path = ["flow", i_s.as_str(), "outputs", j_s.as_str()];
                if !seen_out.insert(o.clone()) {
                    self.problem(&path, format!("step {} lists output {o:?} twice", s.step.0));
                } else if let Some(p) = producer.get(o) {
                    let other = &steps[*p];
                    let (oid, oline) = (other.id.clone(), other.line);
                    self.problem(
                        &path,
                        format!(
                            "output {o:?} is also produced by step {oid} (line {oline}); each output name has one producer: rename one of them"
                        ),
                    );
                } else {
                    producer.insert(o.clone(), idx);
                }
            }
            for (j, c) in s.checkpoints.iter().enumerate() {
                let j_s = j.to_string();
                if let Some(p) = checkpoint_names.get(c) {
                    let oid = steps.get(*p).map(|s| s.id.clone()).unwrap_or_default();
                    self.problem(
                        &["flow", &i_s, "checkpoints", &j_s],
                        format!("checkpoint name {c:?} is also used by step {oid}; checkpoint names identify steps (rollback targets): make them unique"),
                    );
                } else {
                    checkpoint_names.insert(c.clone(), idx);
                }
            }
            let (checkpoint, aliases) = match s.checkpoints.split_first() {
                Some((first, rest)) => (first.clone(), rest.to_vec()),
                None => (
                    s.name
                        .clone()
                        .unwrap_or_else(|| format!("step {}", s.step.0)),
                    Vec::new(),
                ),
            };
            ids.insert(s.step.0.clone(), idx);
            steps.push(Step {
                id: s.step.0.clone(),
                checkpoint,
                aliases,
                agent: s.agent.clone(),
                inputs: s.inputs.clone(),
                outputs: s.outputs.clone(),
                after: BTreeSet::new(),
                producers: Vec::new(),
                when: s.when.clone(),
                timeout: s.timeout.map(|d| d.0),
                retries: s.retries,
                policy: None,
                consensus_required: s.consensus_required,
                line,
            });
            docs.push((i, s));
        }

        // Workflow inputs: declared, or the inputs of the first steps that no step produces.
        let declared = doc.inputs.is_some();
        let workflow_inputs: Vec<String> = match doc.inputs {
            Some(v) => v,
            None => {
                let mut v = Vec::new();
                for (_, s) in &docs {
                    if s.depends_on.is_empty() {
                        for i in &s.inputs {
                            if !producer.contains_key(i) && !v.contains(i) {
                                v.push(i.clone());
                            }
                        }
                    }
                }
                v
            }
        };
        for (j, name) in workflow_inputs.iter().enumerate() {
            if let Some(p) = producer.get(name) {
                let pid = steps[*p].id.clone();
                self.problem(
                    &["inputs", &j.to_string()],
                    format!("workflow input {name:?} is also an output of step {pid}; rename one of them"),
                );
            }
        }

        // References: depends_on, inputs, conditions, policies.
        let id_list: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        let id_refs: Vec<&str> = id_list.iter().map(String::as_str).collect();
        let mut names: Vec<&str> = producer.keys().map(String::as_str).collect();
        names.extend(workflow_inputs.iter().map(String::as_str));
        names.sort();
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        for (idx, (i, s)) in docs.iter().enumerate() {
            let i_s = i.to_string();
            for (j, d) in s.depends_on.iter().enumerate() {
                let j_s = j.to_string();
                let path = ["flow", i_s.as_str(), "depends_on", j_s.as_str()];
                let target = d.0.strip_prefix('^').unwrap_or(&d.0);
                match ids.get(target) {
                    Some(t) if *t == idx => {
                        self.problem(
                            &path,
                            format!("step {} depends on itself; remove {:?}", s.step.0, d.0),
                        );
                    }
                    Some(t) => {
                        steps[idx].after.insert(*t);
                    }
                    None => {
                        let message = format!(
                            "step {} depends on {:?}, but no step has id {target:?} (steps: {}); write `^N` or N for step N",
                            s.step.0,
                            d.0,
                            id_refs.join(", ")
                        );
                        self.choice(&path, message, target, &id_refs);
                    }
                }
            }
            let mut producers = Vec::new();
            for (j, input) in s.inputs.iter().enumerate() {
                let j_s = j.to_string();
                let path = ["flow", i_s.as_str(), "inputs", j_s.as_str()];
                match producer.get(input) {
                    Some(p) if *p == idx => {
                        self.problem(
                            &path,
                            format!("step {} consumes its own output {input:?}", s.step.0),
                        );
                        producers.push(None);
                    }
                    Some(p) => {
                        steps[idx].after.insert(*p);
                        producers.push(Some(*p));
                    }
                    None if workflow_inputs.contains(input) => producers.push(None),
                    None => {
                        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                        let hint = if declared {
                            "add it to the workflow's `inputs:` or to a step's `outputs:`"
                        } else {
                            "add it to a step's `outputs:`, or declare the workflow's `inputs:`"
                        };
                        self.choice(
                            &path,
                            format!(
                                "input {input:?} of step {} is produced by no step and is not a workflow input; {hint}",
                                s.step.0
                            ),
                            input,
                            &refs,
                        );
                        producers.push(None);
                    }
                }
            }
            steps[idx].producers = producers;
            if let Some(w) = &s.when {
                if let Err(e) = Condition::compile(w) {
                    let detail = match &e {
                        crate::Error::ConditionSyntax { detail, .. } => detail
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .trim_start_matches("ERROR: ")
                            .trim_start_matches("<input>:")
                            .to_string(),
                        other => other.to_string(),
                    };
                    let p = self.problem(
                        &["flow", &i_s, "when"],
                        format!(
                            "condition {w:?} of step {} does not parse (at {detail}); write a CEL expression over the names of the workflow's data, such as `kyc_score > 600`",
                            s.step.0
                        ),
                    );
                    p.value = Some(w.clone());
                }
            }
            if let Some(t) = &s.timeout {
                if t.0.is_zero() {
                    self.problem(
                        &["flow", &i_s, "timeout"],
                        "a timeout of 0 fails every run; give a positive duration such as 30s"
                            .into(),
                    );
                }
            }
            steps[idx].policy = self.inline_policy(&["flow", &i_s, "policy"]);
        }

        self.check_cycles(&steps, &docs);

        Spec {
            name: doc.name,
            file: file.map(str::to_string),
            inputs: workflow_inputs,
            concurrency,
            policy: workflow_policy,
            agents,
            steps,
        }
    }

    /// A cycle is reported once, at the step where it is first entered, with its path.
    fn check_cycles(&mut self, steps: &[Step], docs: &[(usize, StepDoc)]) {
        // 0 unvisited, 1 on the stack, 2 done.
        let mut state = vec![0u8; steps.len()];
        let mut stack: Vec<usize> = Vec::new();
        fn visit(
            n: usize,
            steps: &[Step],
            state: &mut [u8],
            stack: &mut Vec<usize>,
            found: &mut Vec<Vec<usize>>,
        ) {
            state[n] = 1;
            stack.push(n);
            for &m in &steps[n].after {
                match state[m] {
                    0 => visit(m, steps, state, stack, found),
                    1 => {
                        let from = stack.iter().position(|&x| x == m).expect("on the stack");
                        found.push(stack[from..].to_vec());
                    }
                    _ => {}
                }
            }
            stack.pop();
            state[n] = 2;
        }
        let mut found = Vec::new();
        for n in 0..steps.len() {
            if state[n] == 0 {
                visit(n, steps, &mut state, &mut stack, &mut found);
            }
        }
        for cycle in found {
            // `after` points from a step to what it waits for; print in the order things run.
            let mut order: Vec<usize> = cycle.into_iter().rev().collect();
            let start = *order.iter().min().expect("a cycle has a step");
            let pos = order.iter().position(|&x| x == start).expect("present");
            order.rotate_left(pos);
            let mut names: Vec<String> = order.iter().map(|&x| steps[x].id.clone()).collect();
            names.push(steps[start].id.clone());
            let i = docs[start].0.to_string();
            self.problem(
                &["flow", &i, "step"],
                format!(
                    "steps {} form a cycle (through depends_on and inputs); a workflow is a DAG: remove one of these dependencies",
                    names.join(" → ")
                ),
            );
        }
    }
}

fn dotted(path: &[&str]) -> String {
    let mut s = String::new();
    for p in path {
        if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) {
            s.push_str(&format!("[{p}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(p);
        }
    }
    s
}
