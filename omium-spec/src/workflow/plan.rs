//! The plan of a validated workflow: its steps in levels (a step's level is one more than the
//! deepest step it waits for, so the steps of one level can run at once), a topological order,
//! and the text `omium workflow plan` prints.

use std::fmt::Write;

use serde::Serialize;

use super::spec::Spec;

/// Levels and order of a workflow's steps.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub workflow: String,
    pub inputs: Vec<String>,
    pub concurrency: usize,
    /// Step ids per level, in document order within a level.
    pub levels: Vec<Vec<String>>,
    /// Every step id in an order that respects the dependencies (level by level).
    pub order: Vec<String>,
    pub steps: Vec<PlanStep>,
}

/// One step as the plan shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PlanStep {
    pub id: String,
    pub agent: String,
    pub checkpoint: String,
    pub level: usize,
    /// The steps it waits for.
    pub after: Vec<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub consensus_required: bool,
}

impl Plan {
    /// The plan of a validated spec (which has no cycles).
    pub fn of(spec: &Spec) -> Plan {
        let n = spec.steps.len();
        let mut level = vec![usize::MAX; n];
        // Repeated relaxation is enough: the graph is acyclic and small.
        let mut changed = true;
        while changed {
            changed = false;
            for (i, s) in spec.steps.iter().enumerate() {
                if level[i] != usize::MAX {
                    continue;
                }
                if s.after.iter().all(|&d| level[d] != usize::MAX) {
                    level[i] = s.after.iter().map(|&d| level[d] + 1).max().unwrap_or(0);
                    changed = true;
                }
            }
        }
        let depth = level.iter().copied().filter(|&l| l != usize::MAX).max();
        let mut levels = vec![Vec::new(); depth.map_or(0, |d| d + 1)];
        for (i, l) in level.iter().enumerate() {
            if *l != usize::MAX {
                levels[*l].push(spec.steps[i].id.clone());
            }
        }
        let order = levels.iter().flatten().cloned().collect();
        let steps = spec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| PlanStep {
                id: s.id.clone(),
                agent: s.agent.clone(),
                checkpoint: s.checkpoint.clone(),
                level: level[i].saturating_add(1),
                after: s.after.iter().map(|&d| spec.steps[d].id.clone()).collect(),
                inputs: s.inputs.clone(),
                outputs: s.outputs.clone(),
                when: s.when.clone(),
                consensus_required: s.consensus_required,
            })
            .collect();
        Plan {
            workflow: spec.name.clone(),
            inputs: spec.inputs.clone(),
            concurrency: spec.concurrency,
            levels,
            order,
            steps,
        }
    }

    /// The DAG and the order of execution, for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "workflow {}: {} steps in {} levels, at most {} at once",
            self.workflow,
            self.steps.len(),
            self.levels.len(),
            self.concurrency
        );
        let inputs = if self.inputs.is_empty() {
            "(none)".to_string()
        } else {
            self.inputs.join(", ")
        };
        let _ = writeln!(out, "inputs: {inputs}\n\nDAG");
        for s in &self.steps {
            let after = if s.after.is_empty() {
                "start".to_string()
            } else {
                format!("after {}", s.after.join(", "))
            };
            let _ = writeln!(
                out,
                "  step {} ({}) [{after}]: {} -> {}{}{}",
                s.id,
                s.agent,
                list(&s.inputs),
                list(&s.outputs),
                s.when
                    .as_ref()
                    .map(|w| format!("  when {w}"))
                    .unwrap_or_default(),
                if s.consensus_required {
                    "  [consensus required]"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            out,
            "\norder of execution (the steps of one level run in parallel)"
        );
        for (i, l) in self.levels.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, l.join(", "));
        }
        out
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "()".into()
    } else {
        v.join(", ")
    }
}
