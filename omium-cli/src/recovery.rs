//! `omium policy ...`, `omium failures`, `omium recoveries`, `omium metrics`, `omium resume`:
//! recovery policies and what recovery did.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use omium_core::policy::{self, PolicyVersion, Scope, VersionDiff};
use omium_core::recovery::{FailureRecord, RecoveryMetrics};
use omium_core::{Error, Store};

use crate::view::{json, table, time};
use omium_core::prelude::*;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check policy files (YAML or JSON); print each problem as file:line:column.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Store a policy file as the next version of a scope.
    Apply {
        file: PathBuf,
        /// global, workflow:<name>, step:<name> or step:<workflow>/<name>.
        #[arg(long, default_value = "global")]
        scope: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Who applies it (default: this user on this host).
        #[arg(long)]
        author: Option<String>,
    },
    /// List stored policy versions.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Print a stored version's canonical form (or, with --source, the document as applied).
    Show {
        #[arg(long, default_value = "global")]
        scope: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Version number (default: the one in force).
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        source: bool,
    },
    /// Diff two policies: version numbers of --scope, or files.
    Diff {
        a: String,
        b: String,
        #[arg(long, default_value = "global")]
        scope: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Print the JSON Schema of policy documents (for editors).
    Schema,
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument {
        what: "policy file",
        detail: format!("cannot read {}: {e}", path.display()),
    })
}

fn parse_scope(s: &str) -> Result<Scope, Error> {
    Ok(Scope::parse(s)?)
}

/// Runs `omium policy ...`; `reader`/`writer` open the store when the command needs it.
pub fn policy(
    out: &mut impl Write,
    as_json: bool,
    cmd: &PolicyCommand,
    reader: impl Fn() -> Result<Store, Error>,
    writer: impl Fn() -> Result<Store, Error>,
) -> Result<ExitCode, Error> {
    match cmd {
        PolicyCommand::Validate { files } => {
            let mut results = Vec::new();
            for f in files {
                let name = f.display().to_string();
                let r = read(f).and_then(|text| {
                    policy::parse(&text, Some(&name)).map_err(|p| Error::Policy(Box::new(p)))
                });
                results.push((name, r));
            }
            let bad = results.iter().filter(|(_, r)| r.is_err()).count();
            if as_json {
                let v: Vec<_> = results
                    .iter()
                    .map(|(f, r)| match r {
                        Ok(p) => serde_json::json!({"file": f, "ok": true, "rules": p.rules.len()}),
                        Err(Error::Policy(p)) => serde_json::json!({
                            "file": f, "ok": false, "error": p.to_string(), "line": p.at.line, "column": p.at.column,
                            "path": p.path, "value": p.value, "expected": p.expected, "suggestion": p.suggestion,
                        }),
                        Err(e) => serde_json::json!({"file": f, "ok": false, "error": e.to_string()}),
                    })
                    .collect();
                json(out, &v);
            } else {
                for (f, r) in &results {
                    match r {
                        Ok(p) => {
                            let _ = writeln!(out, "{f}: ok ({} rules)", p.rules.len());
                        }
                        Err(Error::Policy(p)) => {
                            let _ = writeln!(out, "{p}");
                        }
                        Err(e) => {
                            let _ = writeln!(out, "{f}: {e}");
                        }
                    }
                }
            }
            return Ok(if bad > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        PolicyCommand::Apply {
            file,
            scope,
            tenant,
            author,
        } => {
            let scope = parse_scope(scope)?;
            let text = read(file)?;
            let store = writer()?;
            let v = store.apply_policy(
                tenant,
                &scope,
                &text,
                Some(&file.display().to_string()),
                author.as_deref(),
            )?;
            if as_json {
                json(out, &version_json(&v));
            } else {
                let _ = writeln!(
                    out,
                    "applied {} as {} v{} of tenant {} (by {})",
                    file.display(),
                    v.scope,
                    v.version,
                    v.tenant,
                    v.author
                );
            }
        }
        PolicyCommand::List { tenant } => {
            let store = reader()?;
            let mut list = store.all_policy_versions()?;
            if let Some(t) = tenant {
                list.retain(|v| &v.tenant == t);
            }
            if as_json {
                json(out, &list.iter().map(version_json).collect::<Vec<_>>());
            } else {
                let rows = list
                    .iter()
                    .map(|v| {
                        vec![
                            v.tenant.clone(),
                            v.scope.clone(),
                            v.version.to_string(),
                            v.author.clone(),
                            time(v.created_at_ms),
                            v.file.clone().unwrap_or_else(|| "-".into()),
                            v.digest[..12].to_string(),
                        ]
                    })
                    .collect();
                table(
                    out,
                    &[
                        "TENANT", "SCOPE", "VERSION", "AUTHOR", "APPLIED", "FILE", "DIGEST",
                    ],
                    rows,
                );
            }
        }
        PolicyCommand::Show {
            scope,
            tenant,
            version,
            source,
        } => {
            let store = reader()?;
            let v = store.policy_version(tenant, &parse_scope(scope)?, *version)?;
            if as_json {
                json(out, &version_json(&v));
            } else if *source {
                let _ = write!(out, "{}", v.source);
            } else {
                let _ = writeln!(
                    out,
                    "# {} v{} of tenant {}, applied by {} at {}",
                    v.scope,
                    v.version,
                    v.tenant,
                    v.author,
                    time(v.created_at_ms)
                );
                let _ = writeln!(out, "{}", v.canonical);
            }
        }
        PolicyCommand::Diff {
            a,
            b,
            scope,
            tenant,
        } => {
            let scope = parse_scope(scope)?;
            let side = |s: &str| -> Result<(String, String), Error> {
                match s.parse::<u32>() {
                    Ok(n) => {
                        let store = reader()?;
                        let v = store.policy_version(tenant, &scope, Some(n))?;
                        Ok((format!("{scope} v{n}"), v.canonical))
                    }
                    Err(_) => {
                        let p = policy::parse(&read(Path::new(s))?, Some(s))
                            .map_err(|p| Error::Policy(Box::new(p)))?;
                        Ok((s.to_string(), policy::to_json(&p)))
                    }
                }
            };
            let (la, ca) = side(a)?;
            let (lb, cb) = side(b)?;
            let d = VersionDiff::of(&la, &ca, &lb, &cb);
            if as_json {
                json(
                    out,
                    &serde_json::json!({"from": d.from, "to": d.to, "equal": d.unified.is_empty(), "diff": d.unified}),
                );
            } else if d.unified.is_empty() {
                let _ = writeln!(out, "{la} and {lb} are the same policy");
            } else {
                let _ = write!(out, "{}", d.unified);
            }
        }
        PolicyCommand::Schema => json(out, &policy::json_schema()),
    }
    Ok(ExitCode::SUCCESS)
}

fn version_json(v: &PolicyVersion) -> serde_json::Value {
    serde_json::json!({
        "tenant": v.tenant, "scope": v.scope, "version": v.version, "author": v.author,
        "created_at": time(v.created_at_ms), "file": v.file, "digest": v.digest,
        "policy": serde_json::from_str::<serde_json::Value>(&v.canonical).unwrap_or_default(),
        "source": v.source,
    })
}

pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{:.1}m", ms as f64 / 60_000.0)
    }
}

/// `omium failures`: one row per failure.
pub fn failures(out: &mut impl Write, as_json: bool, list: &[FailureRecord]) {
    if as_json {
        json(out, &list);
        return;
    }
    let rows = list
        .iter()
        .map(|f| {
            vec![
                f.id.clone(),
                f.execution_id.clone(),
                f.step.clone().unwrap_or_else(|| "-".into()),
                f.kind.to_string(),
                f.outcome.as_str().into(),
                time(f.created_at_ms),
                f.resolved_at_ms
                    .map(|r| duration(r.saturating_sub(f.created_at_ms)))
                    .unwrap_or_else(|| "-".into()),
                f.actions
                    .iter()
                    .map(|a| a.action.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                f.message.clone(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "ID",
            "EXECUTION",
            "STEP",
            "TYPE",
            "OUTCOME",
            "AT",
            "RESOLVED IN",
            "ACTIONS",
            "MESSAGE",
        ],
        rows,
    );
}

/// `omium recoveries`: one row per action taken.
pub fn recoveries(out: &mut impl Write, as_json: bool, list: &[FailureRecord]) {
    let rows: Vec<(&FailureRecord, &omium_core::recovery::ActionRecord)> = list
        .iter()
        .flat_map(|f| f.actions.iter().map(move |a| (f, a)))
        .collect();
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(f, a)| {
                serde_json::json!({
                    "failure": f.id, "execution": f.execution_id, "step": f.step, "type": f.kind.as_str(),
                    "action": a.action, "outcome": a.outcome, "started_at": time(a.started_at_ms),
                    "duration_ms": a.ended_at_ms.map(|e| e.saturating_sub(a.started_at_ms)),
                    "detail": serde_json::from_str::<serde_json::Value>(&a.detail).unwrap_or_default(),
                })
            })
            .collect();
        json(out, &v);
        return;
    }
    let rows = rows
        .iter()
        .map(|(f, a)| {
            vec![
                f.execution_id.clone(),
                f.step.clone().unwrap_or_else(|| "-".into()),
                f.kind.to_string(),
                a.action.clone(),
                a.outcome.clone(),
                time(a.started_at_ms),
                a.ended_at_ms
                    .map(|e| duration(e.saturating_sub(a.started_at_ms)))
                    .unwrap_or_else(|| "-".into()),
                a.detail.clone(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "EXECUTION",
            "STEP",
            "TYPE",
            "ACTION",
            "OUTCOME",
            "STARTED",
            "TOOK",
            "DETAIL",
        ],
        rows,
    );
}

/// `omium metrics`: recovery figures.
pub fn metrics(out: &mut impl Write, as_json: bool, m: &RecoveryMetrics) {
    if as_json {
        json(out, m);
        return;
    }
    let pct = |v: Option<f64>| {
        v.map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    let ms = |v: Option<u64>| v.map(duration).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "failures              {}", m.failures);
    let _ = writeln!(out, "recovered             {}", m.recovered);
    let _ = writeln!(out, "escalated             {}", m.escalated);
    let _ = writeln!(out, "failed                {}", m.failed);
    let _ = writeln!(out, "open                  {}", m.open);
    let _ = writeln!(out, "recovery rate         {}", pct(m.recovery_rate));
    let _ = writeln!(
        out,
        "MTTR (mean)           {}",
        ms(m.mttr_ms.map(|v| v.round() as u64))
    );
    let _ = writeln!(
        out,
        "MTTR p50 / p95        {} / {}",
        ms(m.mttr_p50_ms),
        ms(m.mttr_p95_ms)
    );
    let _ = writeln!(
        out,
        "retries per success   {}",
        m.retries_per_success
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into())
    );
    if !m.by_type.is_empty() {
        let _ = writeln!(out, "failures by type");
        for (k, v) in &m.by_type {
            let _ = writeln!(out, "  {k:<24}{v}");
        }
    }
}

/// `omium resume`: resumes a paused execution.
pub fn resume(
    out: &mut impl Write,
    as_json: bool,
    store: &Store,
    execution: &str,
    state: Option<&[u8]>,
    by: Option<&str>,
) -> Result<(), Error> {
    let f = store.resume(execution, state, by)?;
    if as_json {
        json(
            out,
            &serde_json::json!({"execution": execution, "status": "pending", "failure": f}),
        );
    } else {
        let step = f.as_ref().and_then(|f| f.step.clone()).unwrap_or_default();
        let what = if state.is_some() {
            format!("; step {step:?} recorded with the given state")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "resumed {execution}{what}; it is pending and continues when re-run (omium.recover())"
        );
    }
    Ok(())
}
