//! `omium sync --node N push|pull|status`: a store's executions and an Omium cluster
//! (`omium_core::sync`).

use std::io::Write;
use std::time::Duration;

use clap::Subcommand;
use omium_core::sync::{RemoteDurability, SyncConfig};
use omium_core::{Error, Store};

use crate::view;
use omium_core::prelude::*;

#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// Push every execution of --store the cluster lacks (or has older), and wait for it.
    Push {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
    },
    /// Fetch an execution into --store (created if missing) and take it over, so that running
    /// it there resumes it.
    Pull { execution: String },
    /// List the executions the cluster holds: owner store, lease, head.
    Status,
}

fn attach(store: &Store, nodes: &[String]) -> Result<omium_core::sync::Syncer, Error> {
    store.attach_sync(SyncConfig {
        nodes: nodes.to_vec(),
        durability: RemoteDurability::Background,
        ..SyncConfig::default()
    })
}

pub fn run(
    out: &mut impl Write,
    json: bool,
    open: impl Fn(bool) -> Result<Store, Error>,
    nodes: &[String],
    command: &SyncCommand,
) -> Result<(), Error> {
    if nodes.is_empty() {
        return Err(Error::InvalidArgument {
            what: "--node",
            detail: "missing; give the address (host:port) of a cluster node".into(),
        });
    }
    match command {
        SyncCommand::Push { timeout } => {
            let store = open(false)?;
            let s = attach(&store, nodes)?;
            s.flush(None, Duration::from_secs_f64(timeout.max(0.0)))?;
            let r = s.report();
            if json {
                view::json(out, &r);
            } else {
                let _ = writeln!(
                    out,
                    "pushed {} execution(s), {} checkpoint(s): {} chunk(s) sent ({} B), {} not \
                     sent (the cluster had them)",
                    r.executions_pushed,
                    r.checkpoints_pushed,
                    r.chunks_sent,
                    r.chunk_bytes_sent,
                    r.chunks_skipped
                );
            }
            if let Some((id, e)) = r.conflicts.iter().next() {
                return Err(Error::SyncConflict {
                    execution: id.clone(),
                    detail: format!("{e} ({} execution(s) refused)", r.conflicts.len()),
                });
            }
        }
        SyncCommand::Pull { execution } => {
            let store = open(true)?;
            let e = attach(&store, nodes)?.pull(execution)?;
            view::executions(out, json, std::slice::from_ref(&e));
        }
        SyncCommand::Status => {
            let list = omium_core::sync::remote::cluster_executions(nodes)?;
            if json {
                view::json(out, &list);
                return Ok(());
            }
            let rows = list
                .iter()
                .map(|s| {
                    vec![
                        s.execution.id.clone(),
                        s.execution.status.to_string(),
                        s.execution.checkpoint_count.to_string(),
                        format!("{} ({})", s.meta.owner, s.meta.owner_host),
                        match s.lease_left_ms {
                            0 => "-".into(),
                            left => format!("{:.1} s (epoch {})", left as f64 / 1000.0, s.epoch),
                        },
                        view::time(s.meta.updated_at_ms),
                    ]
                })
                .collect();
            view::table(
                out,
                &[
                    "EXECUTION",
                    "STATUS",
                    "CHECKPOINTS",
                    "OWNER",
                    "LEASE",
                    "SYNCED",
                ],
                rows,
            );
        }
    }
    Ok(())
}
