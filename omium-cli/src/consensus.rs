//! `omium node`, `omium cluster …` and `omium consensus …`: run a Raft node, manage the
//! cluster's membership, and broadcast / acknowledge / await / list agent messages — against
//! a cluster (`--node host:port`, repeatable) or, without `--node`, the embedded one-voter group
//! of `--store`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use omium_core::consensus::network::RemoteClient;
use omium_core::consensus::{
    status_json, BroadcastRequest, ClusterStatus, Coordinator, CoordinatorConfig, Message, Node,
    NodeConfig,
};
use omium_core::{Error, Store};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Make the node at --node the first voter of a new cluster.
    Init,
    /// Add a node (started with `omium node`) as a voter.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// The new node's address (host:port).
        #[arg(long)]
        addr: String,
    },
    /// Remove a node from the voters.
    Remove {
        #[arg(long)]
        id: u64,
    },
    /// Leader, term, log positions and members, as the node at --node sees them.
    Status,
    /// Make a new cluster CA and the certificates of its nodes, an admin and clients, for
    /// mutual TLS (docs/security.md).
    Certs {
        /// An empty directory to write them into.
        #[arg(long)]
        out: std::path::PathBuf,
        /// The node ids to issue certificates for (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<u64>,
        /// A host name or address the nodes are reached at, besides localhost and 127.0.0.1
        /// (repeatable; `*.omium-peers.default.svc.cluster.local` for a StatefulSet).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// A client certificate as TENANT/NAME (repeatable): stores that sync, agents that
        /// broadcast.
        #[arg(long = "client")]
        clients: Vec<String>,
        /// Days the node and client certificates are valid (the CA: twice as long).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(Subcommand)]
pub enum ConsensusCommand {
    /// Validate and append a message; prints its id and its place in the execution's order.
    Broadcast {
        execution: String,
        /// The sending agent.
        #[arg(long)]
        sender: String,
        /// A target agent (repeat, or comma-separated).
        #[arg(long = "to", required = true, value_delimiter = ',')]
        targets: Vec<String>,
        /// The message, as JSON text.
        #[arg(long)]
        message: String,
        /// A JSON Schema file the message must satisfy.
        #[arg(long)]
        schema: Option<std::path::PathBuf>,
        /// Acknowledgements needed (default: a majority of the targets).
        #[arg(long)]
        quorum: Option<u32>,
    },
    /// Acknowledge a message as a target agent, or vote a value (--vote JSON).
    Ack {
        message_id: String,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        vote: Option<String>,
    },
    /// Wait until a message is agreed; a timeout or split vote exits 1 (consensus_violation).
    Await {
        message_id: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// The messages of an execution in their agreed order, with their acknowledgements.
    Status { execution: String },
}

fn nodes_client(nodes: &[String]) -> Result<RemoteClient, Error> {
    if nodes.is_empty() {
        return Err(Error::InvalidArgument {
            what: "--node",
            detail: "missing; give the address (host:port) of a cluster node".into(),
        });
    }
    RemoteClient::new(nodes)
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::ConsensusUnavailable {
            detail: format!("cannot start the async runtime: {e}"),
        })
}

/// `omium node`: runs until killed. Prints one JSON line once it listens.
pub fn node(store_path: &Path, config: NodeConfig) -> Result<(), Error> {
    let store = Store::open(store_path)?;
    let rt = runtime()?;
    rt.block_on(async {
        let node = Node::start(&store, config).await?;
        let line = serde_json::json!({
            "node": node.engine().node_id(),
            "listening": node.addr().to_string(),
            "advertise": node.advertise(),
            "store": store.path(),
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        drop(out);
        // Serve until the process is stopped: the log and state machine are durable at every
        // step, so SIGTERM / SIGKILL lose nothing that was acknowledged.
        std::future::pending::<()>().await;
        Ok::<(), Error>(())
    })
}

pub fn cluster(
    out: &mut impl Write,
    json: bool,
    nodes: &[String],
    cmd: &ClusterCommand,
) -> Result<(), Error> {
    if let ClusterCommand::Certs {
        out: dir,
        nodes: ids,
        hosts,
        clients,
        days,
    } = cmd
    {
        let clients = clients
            .iter()
            .map(|c| match c.split_once('/') {
                Some((t, n)) if !t.is_empty() && !n.is_empty() && !n.contains('/') => {
                    Ok((t.to_string(), n.to_string()))
                }
                _ => Err(Error::InvalidArgument {
                    what: "--client",
                    detail: format!("{c:?}; expected TENANT/NAME, e.g. acme/billing-store"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let issued = omium_core::consensus::tls::issue(dir, ids, hosts, &clients, *days)?;
        if json {
            let _ = writeln!(out, "{}", serde_json::json!({"files": issued.files}));
        } else {
            for f in &issued.files {
                let _ = writeln!(out, "{}", f.display());
            }
            let _ = writeln!(
                out,
                "\nKeep ca-key.pem offline: whoever holds it can make nodes of this cluster."
            );
        }
        return Ok(());
    }
    if nodes.is_empty() {
        return Err(Error::InvalidArgument {
            what: "--node",
            detail: "give a node of the cluster (host:port)".into(),
        });
    }
    let client = nodes_client(nodes)?;
    let rt = runtime()?;
    let (path, body) = match cmd {
        ClusterCommand::Init => ("/cluster/init", serde_json::json!({})),
        ClusterCommand::Add { id, addr } => {
            omium_core::consensus::network::normalize_addr(addr)?;
            ("/cluster/add", serde_json::json!({"id": id, "addr": addr}))
        }
        ClusterCommand::Remove { id } => ("/cluster/remove", serde_json::json!({"id": id})),
        ClusterCommand::Status => ("/cluster/status", serde_json::json!({})),
        ClusterCommand::Certs { .. } => unreachable!("handled above"),
    };
    let v = rt.block_on(client.admin(path, &body, Duration::from_secs(30)))?;
    if json {
        let _ = writeln!(out, "{v}");
        return Ok(());
    }
    let s: ClusterStatus = serde_json::from_value(v).map_err(|e| Error::ConsensusUnavailable {
        detail: format!("the node sent a status that does not decode: {e}"),
    })?;
    let opt = |o: Option<u64>| o.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "node {} ({}), leader {}, term {}, log {}, committed {}, applied {}, snapshot {}",
        s.id,
        s.state,
        opt(s.leader),
        s.term,
        opt(s.last_log_index),
        opt(s.committed),
        opt(s.last_applied),
        opt(s.snapshot)
    );
    for (id, addr) in &s.nodes {
        let role = if s.voters.contains(id) {
            "voter"
        } else {
            "learner"
        };
        let lead = if Some(*id) == s.leader {
            " (leader)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {id:>4}  {addr:<28} {role}{lead}");
    }
    Ok(())
}

fn parse_json(what: &'static str, text: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text).map_err(|e| Error::InvalidArgument {
        what,
        detail: format!(
            "not JSON: {e} (line {}, column {}); quote strings, e.g. '\"yes\"'",
            e.line(),
            e.column()
        ),
    })
}

pub fn consensus(
    out: &mut impl Write,
    json: bool,
    store_path: &Path,
    nodes: &[String],
    cmd: &ConsensusCommand,
) -> Result<std::process::ExitCode, Error> {
    let coordinator = if nodes.is_empty() {
        let store = Store::open(store_path)?;
        Coordinator::embedded(&store)?
    } else {
        Coordinator::open(
            None,
            CoordinatorConfig::Cluster {
                nodes: nodes.to_vec(),
            },
        )?
    };
    match cmd {
        ConsensusCommand::Broadcast {
            execution,
            sender,
            targets,
            message,
            schema,
            quorum,
        } => {
            let schema = match schema {
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|e| Error::InvalidArgument {
                        what: "--schema",
                        detail: format!("cannot read {}: {e}", p.display()),
                    })?;
                    Some(parse_json("--schema", &text)?)
                }
                None => None,
            };
            let b = coordinator.broadcast(&BroadcastRequest {
                execution_id: execution.clone(),
                sender: sender.clone(),
                targets: targets.clone(),
                message: parse_json("--message", message)?,
                schema,
                quorum: *quorum,
                id: None,
            })?;
            if json {
                let _ = writeln!(out, "{}", serde_json::to_value(&b).unwrap_or_default());
            } else {
                let _ = writeln!(
                    out,
                    "{} (execution {}, seq {}, log index {})",
                    b.id, b.execution_id, b.seq, b.log_index
                );
            }
        }
        ConsensusCommand::Ack {
            message_id,
            agent,
            vote,
        } => {
            let vote = vote
                .as_deref()
                .map(|v| parse_json("--vote", v))
                .transpose()?;
            let s = coordinator.acknowledge(message_id, agent, vote)?;
            if json {
                let _ = writeln!(out, "{}", status_json(&s));
            } else {
                let _ = writeln!(out, "{message_id}: {}", s.name());
            }
        }
        ConsensusCommand::Await {
            message_id,
            timeout,
        } => {
            if !(timeout.is_finite() && *timeout >= 0.0) {
                return Err(Error::InvalidArgument {
                    what: "--timeout",
                    detail: format!("{timeout}; expected a number of seconds ≥ 0"),
                });
            }
            let m = coordinator.await_agreement(message_id, Duration::from_secs_f64(*timeout))?;
            if json {
                let _ = writeln!(out, "{}", m.to_json());
            } else {
                let _ = writeln!(out, "{}: agreed ({} acknowledgements)", m.id, m.acks.len());
            }
        }
        ConsensusCommand::Status { execution } => {
            let list = coordinator.status(execution)?;
            print_messages(out, json, &list);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_messages(out: &mut impl Write, json: bool, list: &[Message]) {
    if json {
        let v: Vec<_> = list.iter().map(Message::to_json).collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(v));
        return;
    }
    if list.is_empty() {
        let _ = writeln!(out, "no messages");
        return;
    }
    let _ = writeln!(
        out,
        "{:>4}  {:<26}  {:<12}  {:<9}  {:<7}  message",
        "seq", "id", "sender", "status", "acks"
    );
    for m in list {
        let mut text = m.payload.clone();
        if text.chars().count() > 40 {
            text = text.chars().take(39).collect::<String>() + "…";
        }
        let _ = writeln!(
            out,
            "{:>4}  {:<26}  {:<12}  {:<9}  {:<7}  {text}",
            m.seq,
            m.id,
            m.sender,
            m.status.name(),
            format!("{}/{}", m.acks.len(), m.quorum),
        );
    }
}
