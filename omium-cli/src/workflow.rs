//! `omium workflow validate|plan|run|templates|new`: workflow documents, their plan, runs of
//! workflows whose agents are shell commands or container images, and the shipped templates.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use omium_core::consensus::{Coordinator, CoordinatorConfig};
use omium_core::workflow::{self, templates, Plan, RunOptions, Spec};
use omium_core::{Error, OpenOptions, Store};
use serde_json::{Map, Value};

use crate::view::{json, table};

#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Check workflow files (YAML or JSON); print every problem as file:line:column.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the DAG and the order of execution (steps of one level run in parallel).
    Plan { file: PathBuf },
    /// Run a workflow (or resume it: the same --id again) whose agents are `command:`s or `image:`s.
    Run {
        file: PathBuf,
        /// Execution id; running the same id again resumes it (generated when absent).
        #[arg(long = "id")]
        execution_id: Option<String>,
        /// A workflow input: NAME=VALUE, where VALUE is JSON (`712`, `'{"a": 1}'`) or else text.
        #[arg(long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
        /// A JSON file holding an object of workflow inputs (--input entries override it).
        #[arg(long)]
        inputs_file: Option<PathBuf>,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Agree `consensus_required` hand-offs on this cluster (host:port; repeatable)
        /// instead of the store's embedded consensus group.
        #[arg(long = "consensus-node", value_name = "HOST:PORT")]
        consensus_nodes: Vec<String>,
        /// How long a hand-off waits for its targets' agreement.
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
        consensus_timeout: f64,
    },
    /// List the workflow templates shipped with Omium.
    Templates,
    /// Copy a template to a file to edit (default: ./<template>.yaml).
    New {
        template: String,
        dest: Option<PathBuf>,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument {
        what: "workflow file",
        detail: format!("cannot read {}: {e}", path.display()),
    })
}

fn load(path: &Path) -> Result<Spec, Error> {
    Ok(workflow::load(path)?)
}

pub fn command(
    out: &mut impl Write,
    as_json: bool,
    store_path: &Path,
    cmd: &WorkflowCommand,
) -> Result<ExitCode, Error> {
    match cmd {
        WorkflowCommand::Validate { files } => {
            let mut bad = 0;
            let mut report = Vec::new();
            for f in files {
                let name = f.display().to_string();
                let r = read(f).and_then(|text| {
                    workflow::parse(&text, Some(&name)).map_err(|e| Error::Workflow(Box::new(e)))
                });
                if r.is_err() {
                    bad += 1;
                }
                if as_json {
                    report.push(match &r {
                        Ok(s) => serde_json::json!({"file": name, "ok": true, "steps": s.steps.len()}),
                        Err(Error::Workflow(e)) => serde_json::json!({
                            "file": name, "ok": false,
                            "problems": e.problems.iter().map(|p| serde_json::json!({
                                "error": p.to_string(), "line": p.at.line, "column": p.at.column,
                                "path": p.path, "message": p.message, "value": p.value,
                                "suggestion": p.suggestion,
                            })).collect::<Vec<_>>(),
                        }),
                        Err(e) => serde_json::json!({"file": name, "ok": false, "problems": [{"error": e.to_string()}]}),
                    });
                    continue;
                }
                match r {
                    Ok(s) => {
                        let _ = writeln!(
                            out,
                            "{name}: ok (workflow {}, {} steps, {} agents)",
                            s.name,
                            s.steps.len(),
                            s.agents.len()
                        );
                    }
                    Err(Error::Workflow(e)) => {
                        let _ = writeln!(out, "{e}");
                    }
                    Err(e) => {
                        let _ = writeln!(out, "{name}: {e}");
                    }
                }
            }
            if as_json {
                json(out, &report);
            }
            Ok(if bad > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        WorkflowCommand::Plan { file } => {
            let plan = Plan::of(&load(file)?);
            if as_json {
                json(out, &plan);
            } else {
                let _ = write!(out, "{}", plan.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Run {
            file,
            execution_id,
            inputs,
            inputs_file,
            tenant,
            consensus_nodes,
            consensus_timeout,
        } => {
            let spec = load(file)?;
            let timeout = std::time::Duration::try_from_secs_f64(*consensus_timeout)
                .ok()
                .filter(|t| !t.is_zero())
                .ok_or_else(|| Error::InvalidArgument {
                    what: "--consensus-timeout",
                    detail: format!("{consensus_timeout}; expected a positive number of seconds"),
                })?;
            let mut given = match inputs_file {
                Some(f) => match serde_json::from_str(&read(f)?) {
                    Ok(Value::Object(m)) => m,
                    _ => {
                        return Err(Error::InvalidArgument {
                            what: "--inputs-file",
                            detail: format!("{} does not hold one JSON object", f.display()),
                        })
                    }
                },
                None => Map::new(),
            };
            for i in inputs {
                let Some((k, v)) = i.split_once('=') else {
                    return Err(Error::InvalidArgument {
                        what: "--input",
                        detail: format!("{i:?}; expected NAME=VALUE"),
                    });
                };
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                given.insert(k.to_string(), v);
            }
            let store = Store::open_with(store_path, OpenOptions::default())?;
            let dir = std::path::absolute(file)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf));
            let agreement = if spec.steps.iter().any(|s| s.consensus_required) {
                let coordinator = if consensus_nodes.is_empty() {
                    Coordinator::embedded(&store)?
                } else {
                    Coordinator::open(
                        Some(&store),
                        CoordinatorConfig::Cluster {
                            nodes: consensus_nodes.clone(),
                        },
                    )?
                };
                let a = workflow::ConsensusAgreement::new(coordinator).timeout(timeout);
                Some(Arc::new(a) as Arc<dyn workflow::Agreement>)
            } else {
                None
            };
            let report = workflow::run(
                &store,
                &spec,
                RunOptions {
                    execution_id: execution_id.clone(),
                    tenant: Some(tenant.clone()),
                    inputs: given,
                    dir,
                    agreement,
                    ..RunOptions::default()
                },
            )?;
            if as_json {
                json(out, &report);
            } else {
                let _ = writeln!(
                    out,
                    "execution {} of workflow {}: completed",
                    report.execution_id, report.workflow
                );
                let rows = report
                    .steps
                    .iter()
                    .map(|s| {
                        let took = match (s.started_at_ms, s.ended_at_ms) {
                            (Some(a), Some(b)) => format!("{} ms", b.saturating_sub(a)),
                            _ => "-".into(),
                        };
                        vec![
                            s.id.clone(),
                            s.agent.clone(),
                            s.outcome.clone(),
                            s.attempts.to_string(),
                            took,
                            s.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(
                    out,
                    &["STEP", "AGENT", "OUTCOME", "ATTEMPTS", "TOOK", "NOTE"],
                    rows,
                );
                let _ = writeln!(
                    out,
                    "data: {}",
                    serde_json::to_string(&report.data).expect("JSON")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Templates => {
            if as_json {
                let v: Vec<_> = templates::ALL
                    .iter()
                    .map(|t| serde_json::json!({"name": t.name, "description": t.description}))
                    .collect();
                json(out, &v);
            } else {
                table(
                    out,
                    &["TEMPLATE", "WHAT IT DOES"],
                    templates::ALL
                        .iter()
                        .map(|t| vec![t.name.to_string(), t.description.to_string()])
                        .collect(),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::New {
            template,
            dest,
            force,
        } => {
            let t = templates::get(template)?;
            let dest = dest
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", t.name)));
            if dest.exists() && !force {
                return Err(Error::InvalidArgument {
                    what: "destination",
                    detail: format!(
                        "{} exists; choose another file or pass --force to overwrite it",
                        dest.display()
                    ),
                });
            }
            std::fs::write(&dest, t.text).map_err(|e| Error::InvalidArgument {
                what: "destination",
                detail: format!("cannot write {}: {e}", dest.display()),
            })?;
            if as_json {
                json(
                    out,
                    &serde_json::json!({"template": t.name, "file": dest.display().to_string()}),
                );
            } else {
                let _ = writeln!(
                    out,
                    "wrote {} (template {}); edit its agents, then `omium workflow plan {}`",
                    dest.display(),
                    t.name,
                    dest.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
