//! `omium`: look inside an Omium store, verify it, roll back and fork executions.
//!
//! Read commands open the store as a RocksDB secondary, so they work while an application
//! holds it for writing. Commands that change the store need the writer lock.

mod view;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use omium_core::{Error, ForkOptions, RollbackTarget, Store};

#[derive(Parser)]
#[command(
    name = "omium",
    version,
    about = "Inspect, verify, roll back and fork Omium stores"
)]
struct Cli {
    /// Store directory.
    #[arg(long, global = true, env = "OMIUM_HOME", default_value = ".omium")]
    store: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List executions, newest first.
    Executions {
        /// Only executions with this status (pending, running, paused, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
    },
    /// List executions that a re-run would resume (their process died, or they were rolled back).
    Resumable,
    /// Show one execution.
    Show { execution: String },
    /// The live branch of an execution, first checkpoint to head.
    History {
        execution: String,
        /// Every checkpoint of every branch, oldest first.
        #[arg(long)]
        all: bool,
    },
    /// Show one checkpoint's metadata.
    Checkpoint {
        id: String,
        /// Write the checkpoint's state bytes (verified) to stdout instead.
        #[arg(long)]
        state: bool,
    },
    /// Recompute every checksum and the audit chain; exit 1 and name what is corrupt.
    Verify { execution: Option<String> },
    /// Roll an execution back to a checkpoint (id, name, or `last-consistent`).
    Rollback {
        execution: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Fork an execution at a checkpoint into a new execution.
    Fork {
        execution: String,
        /// Checkpoint id or name to fork at.
        #[arg(long)]
        at: String,
        /// Id of the new execution (generated when absent).
        #[arg(long = "id")]
        new_id: Option<String>,
        /// File whose bytes replace the state of the checkpoint forked at.
        #[arg(long)]
        state_file: Option<PathBuf>,
    },
    /// Delete chunks no checkpoint references.
    Gc,
    /// Delete executions not updated for a while (e.g. 30d, 12h, 90m), then collect garbage.
    Prune {
        #[arg(long)]
        older_than: String,
    },
    /// Space used: raw state bytes against stored bytes.
    Stats,
    /// Show the audit log.
    Audit {
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            if cli.json {
                let v = serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}});
                println!("{v}");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn open_reader(cli: &Cli) -> Result<Store, Error> {
    Store::open_read_only(&cli.store)
}

fn open_writer(cli: &Cli) -> Result<Store, Error> {
    Store::open_with(
        &cli.store,
        omium_core::OpenOptions {
            create: false,
            ..Default::default()
        },
    )
}

fn run(cli: &Cli) -> Result<ExitCode, Error> {
    let out = &mut std::io::stdout().lock();
    match &cli.command {
        Command::Executions { status } => {
            let store = open_reader(cli)?;
            let mut list = store.executions()?;
            if let Some(s) = status {
                list.retain(|e| e.status.as_str() == s);
            }
            view::executions(out, cli.json, &list);
        }
        Command::Resumable => {
            let store = open_reader(cli)?;
            view::executions(out, cli.json, &store.resumable()?);
        }
        Command::Show { execution } => {
            let store = open_reader(cli)?;
            let e = store.execution(execution)?;
            let history = store.history(execution)?;
            view::execution(out, cli.json, &e, &history);
        }
        Command::History { execution, all } => {
            let store = open_reader(cli)?;
            let list = if *all {
                store.checkpoints(execution)?
            } else {
                store.history(execution)?
            };
            view::checkpoints(out, cli.json, &list);
        }
        Command::Checkpoint { id, state } => {
            let store = open_reader(cli)?;
            let c = store.checkpoint(id)?;
            if *state {
                let bytes = store.read_state(&c)?;
                let _ = out.write_all(&bytes);
            } else {
                view::checkpoint(out, cli.json, &c);
            }
        }
        Command::Verify { execution } => {
            let store = open_reader(cli)?;
            let report = store.verify(execution.as_deref())?;
            view::verify(out, cli.json, &report);
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Rollback {
            execution,
            to,
            reason,
        } => {
            let store = open_writer(cli)?;
            let target = if to == "last-consistent" {
                RollbackTarget::LastConsistent
            } else {
                RollbackTarget::parse(to)
            };
            let marker = store.rollback(execution, &target, reason.as_deref())?;
            let target_id = marker.parent.map(|p| p.to_string()).unwrap_or_default();
            if cli.json {
                view::json(
                    out,
                    &serde_json::json!({"execution": execution, "rolled_back_to": target_id, "marker": marker.id.to_string()}),
                );
            } else {
                let _ = writeln!(out, "rolled back {execution} to {target_id} ({}); it is pending and resumes from there", marker.name.trim_start_matches("rollback to "));
            }
        }
        Command::Fork {
            execution,
            at,
            new_id,
            state_file,
        } => {
            let state = match state_file {
                Some(p) => Some(std::fs::read(p).map_err(|e| Error::InvalidArgument {
                    what: "--state-file",
                    detail: format!("cannot read {}: {e}", p.display()),
                })?),
                None => None,
            };
            let store = open_writer(cli)?;
            let e = store.fork(
                execution,
                &RollbackTarget::parse(at),
                ForkOptions {
                    new_execution_id: new_id.clone(),
                    state,
                },
            )?;
            if cli.json {
                view::json(out, &view::ExecutionView::from(&e));
            } else {
                let _ = writeln!(out, "forked {execution} at {at} into {}", e.id);
            }
        }
        Command::Gc => {
            let store = open_writer(cli)?;
            let r = store.gc()?;
            if cli.json {
                view::json(out, &r);
            } else {
                let _ = writeln!(
                    out,
                    "scanned {} chunks, {} live, removed {} ({} bytes)",
                    r.chunks_scanned, r.chunks_live, r.chunks_removed, r.bytes_removed
                );
            }
        }
        Command::Prune { older_than } => {
            let age = parse_age(older_than)?;
            let store = open_writer(cli)?;
            let r = store.delete_older_than(age)?;
            if cli.json {
                view::json(out, &r);
            } else {
                let _ = writeln!(
                    out,
                    "deleted {} executions ({} checkpoints); removed {} chunks ({} bytes)",
                    r.executions_deleted,
                    r.checkpoints_deleted,
                    r.gc.chunks_removed,
                    r.gc.bytes_removed
                );
            }
        }
        Command::Stats => {
            let store = open_reader(cli)?;
            view::stats(out, cli.json, &store.stats()?);
        }
        Command::Audit { from, limit } => {
            let store = open_reader(cli)?;
            view::audit(out, cli.json, &store.audit_entries(*from, *limit)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `30d`, `12h`, `90m`, `45s`.
fn parse_age(s: &str) -> Result<Duration, Error> {
    let bad = || Error::InvalidArgument {
        what: "--older-than",
        detail: format!("{s:?}; expected a number followed by d, h, m or s (e.g. 30d)"),
    };
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}
