//! `omium`: look inside an Omium store, verify it, roll back and fork executions.
//!
//! Read commands open the store as a RocksDB secondary, so they work while an application
//! holds it for writing. Commands that change the store need the writer lock.
//!
//! Exit codes: 0 success; 1 an error (or `verify` found a problem); 2 the command line does not
//! parse. With `--json`, errors are printed to stdout as `{"error":{"code":..,"message":..}}`.
//! `docs/cli.md` documents every command.
//!
//! The command is a library too ([`main_from`]), so the Python and Node packages ship the same
//! CLI inside their native modules: `pip install omium` and `npm install omium` put `omium` on
//! the PATH without a second binary.

mod alerts;
mod analytics;
mod consensus;
mod control;
mod events;
mod keys;
mod recovery;
mod serve;
mod sync;
mod trace;
mod view;
mod workflow;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use omium_core::control::Action;
use omium_core::prelude::*;
use omium_core::{Error, ForkOptions, RollbackTarget, Store};

#[derive(Parser)]
#[command(
    name = "omium",
    version,
    about = "Inspect, verify, roll back and fork Omium stores; manage recovery policies"
)]
struct Cli {
    /// Store directory.
    #[arg(long, global = true, env = "OMIUM_HOME", default_value = ".omium")]
    store: PathBuf,
    /// Print JSON instead of tables; errors too, as {"error":{"code","message"}} on stdout.
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
    /// Show one checkpoint's metadata, its state decoded (--value) or its state bytes (--state).
    Checkpoint {
        /// Checkpoint id (a ULID, as `history` prints it).
        id: String,
        /// Write the checkpoint's state bytes (verified) to stdout instead.
        #[arg(long, conflicts_with = "value")]
        state: bool,
        /// Print the checkpoint's state (verified) as JSON, decoded by the codec it was
        /// recorded with (msgpack or json, from any binding).
        #[arg(long)]
        value: bool,
    },
    /// Recompute every checksum and the audit chain; exit 1 and name what is corrupt.
    Verify {
        /// Only this execution's checkpoints (the audit chain is always checked whole).
        execution: Option<String>,
        /// A head printed earlier by `omium audit head` and kept elsewhere: fail if the audit
        /// chain no longer holds it (its tail was cut off, or it was rewritten).
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<omium_core::AuditHead>,
    },
    /// Roll an execution back to a checkpoint (id, name, or `last-consistent`).
    Rollback {
        execution: String,
        /// Checkpoint id, step name (its latest checkpoint), or `last-consistent`.
        #[arg(long)]
        to: String,
        /// Why; recorded on the rollback marker and in the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Fork an execution at a checkpoint into a new execution.
    Fork {
        execution: String,
        /// Checkpoint id, step name (its latest checkpoint), or `last-consistent`.
        #[arg(long)]
        at: String,
        /// Id of the new execution (generated when absent).
        #[arg(long = "id")]
        new_id: Option<String>,
        /// File with the new state of the checkpoint forked at, as JSON (encoded in the
        /// execution's codec; stored as it is when the execution recorded none).
        #[arg(long)]
        state_file: Option<PathBuf>,
    },
    /// Delete chunks no checkpoint references.
    Gc,
    /// Delete executions not updated for a while (e.g. 30d, 12h, 90m), then collect garbage.
    Prune {
        /// Age: a whole number followed by d, h, m or s (30d, 12h, 90m, 45s).
        #[arg(long, allow_hyphen_values = true)]
        older_than: String,
    },
    /// Space used: raw state bytes against stored bytes.
    Stats,
    /// Recovery policies: validate, apply, list, show, diff, schema.
    Policy {
        #[command(subcommand)]
        command: recovery::PolicyCommand,
    },
    /// Workflows: validate, plan, run, templates, new.
    Workflow {
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
    },
    /// Failures recorded by recovery, oldest first.
    Failures {
        /// Only this execution's.
        #[arg(long)]
        execution: Option<String>,
        /// Only failures of this type (timeout_error, hallucination_detected, ...).
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Every recovery action taken (retry, rollback, pause, notify, ...), with its outcome.
    Recoveries {
        #[arg(long)]
        execution: Option<String>,
    },
    /// The operations and compliance report of a period: executions, success rate, latency,
    /// incidents and their recoveries, MTTR, LLM spend and cost saved, policy changes, who did
    /// what (the audit log) and the result of `verify`.
    Report {
        /// A month (2026-11), a day (2026-11-03) or a range of days (2026-11-01..2026-11-15), UTC.
        #[arg(long)]
        period: String,
        /// json, csv, html or pdf.
        #[arg(long, default_value = "html")]
        format: String,
        /// Write it to this file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Execution analytics over a window: executions, success rate, latency percentiles,
    /// failures by type, MTTR, retries, rollbacks, LLM cost and cost saved
    /// (docs/operations.md). `--recovery` prints the recovery figures instead.
    Metrics {
        /// Start of the window: a duration before now (30m, 24h, 7d), a date (2026-11-01), a
        /// UTC time (2026-11-01T12:00:00Z) or milliseconds since 1970. Default: 24h.
        #[arg(long)]
        since: Option<String>,
        /// End of the window (same forms). Default: now.
        #[arg(long)]
        until: Option<String>,
        /// Group by: workflow, agent, tenant, step, failure_type, hour, day, week, month
        /// (comma-separated).
        #[arg(long)]
        by: Option<String>,
        /// Only this workflow's executions.
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Only this agent's steps (execution-level figures are then empty).
        #[arg(long)]
        agent: Option<String>,
        /// Only this step's figures.
        #[arg(long)]
        step: Option<String>,
        /// Recovery figures (recovery rate = recovered over settled failures, MTTR
        /// percentiles, actions) instead, of all time.
        #[arg(long)]
        recovery: bool,
    },
    /// Pause an execution: its run stops at its next step boundary (status paused) until
    /// `omium resume`. Works while an application holds the store (it applies the request).
    Pause {
        execution: String,
        /// Why (recorded in the audit log and the execution).
        #[arg(long)]
        reason: Option<String>,
        /// Who asks (recorded); default: user@host.
        #[arg(long)]
        by: Option<String>,
    },
    /// Cancel an execution: its run stops at its next step boundary for good (status
    /// cancelled) until `omium retry`.
    Cancel {
        execution: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
    /// Make a failed or cancelled execution resumable: the application's next recover() or
    /// run of it continues it.
    Retry {
        execution: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
    /// Make an execution resumable again whatever stopped it — a run that died (still
    /// `running` with no live run), a failure, a cancel, a pause: the application's next
    /// recover() continues it from its last checkpoint.
    Recover {
        execution: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
    /// Hand an execution's open failure to people: it is settled as escalated, the channels
    /// of its policy are told (event `omium.failure.escalation`), and the execution keeps its
    /// status for whoever takes it over.
    Escalate {
        execution: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
    /// Erase an execution (data-subject requests): its record, checkpoints, input and
    /// output, and the chunks no other checkpoint uses; the audit log keeps who erased what.
    Delete {
        execution: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        by: Option<String>,
    },
    /// Resume an execution a recovery policy (or an operator) paused.
    Resume {
        execution: String,
        /// File with the result of the step that paused it, as JSON (encoded in the
        /// execution's codec; stored as it is when the execution recorded none).
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// Who resumes it (recorded).
        #[arg(long)]
        by: Option<String>,
    },
    /// The trace of an execution: a waterfall, or (--html) one self-contained HTML page.
    Trace {
        execution: String,
        /// Write the timeline and the agents' graph to this HTML file instead.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Width of the waterfall's time axis, in characters.
        #[arg(long, default_value_t = 60)]
        width: usize,
    },
    /// Compare two executions step by step: inputs, outputs, timing, tokens, cost.
    Diff { a: String, b: String },
    /// The recorded LLM and tool calls of an execution, which omium.replay() answers from.
    Replay { execution: String },
    /// Run a consensus node (Raft over HTTP/2) on --store until killed.
    Node {
        /// This node's id in the cluster.
        #[arg(long)]
        id: u64,
        /// Address to listen on (host:port).
        #[arg(long)]
        listen: String,
        /// A member of an existing cluster to join through.
        #[arg(long)]
        join: Option<String>,
        /// The address other nodes reach this one at (default: the listen address).
        #[arg(long)]
        advertise: Option<String>,
        /// Mutual TLS: the cluster's CA certificate (PEM; `omium cluster certs` makes it).
        #[arg(long = "tls-ca", requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<PathBuf>,
        /// Mutual TLS: this node's certificate (PEM).
        #[arg(long = "tls-cert", requires_all = ["tls_ca", "tls_key"])]
        tls_cert: Option<PathBuf>,
        /// Mutual TLS: this node's private key (PEM).
        #[arg(long = "tls-key", requires_all = ["tls_ca", "tls_cert"])]
        tls_key: Option<PathBuf>,
        /// Plain HTTP without TLS or peer authentication, on a loopback address only.
        #[arg(long = "insecure-loopback", conflicts_with = "tls_ca")]
        insecure_loopback: bool,
    },
    /// Serve --store to the worker processes of this machine (omium.init(url=...)) over a unix
    /// socket (default: <store>/omium.sock) and/or HTTP; runs until SIGTERM or Ctrl-C.
    Serve {
        /// Unix socket path.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// HTTP address (host:port); anything but loopback needs a key (`omium keys create`).
        #[arg(long)]
        http: Option<String>,
        /// A file of bootstrap API keys, one per line, each with the admin role over every
        /// tenant (also OMIUM_API_KEYS, comma-separated). Keys are never taken from argv.
        #[arg(long = "api-key-file")]
        api_key_file: Option<PathBuf>,
        /// TLS on HTTP: the PEM certificate chain (with --tls-key).
        #[arg(long = "tls-cert", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS on HTTP: the PEM private key of --tls-cert.
        #[arg(long = "tls-key", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Cedar policies added to the built-in roles and tenant wall (docs/security.md).
        #[arg(long)]
        authorization: Option<PathBuf>,
        /// Requests per second one caller may send (a bucket of two seconds' worth); 0: no
        /// limit. Over it: 429 with Retry-After.
        #[arg(long = "rate-limit", default_value_t = 2000.0)]
        rate_limit: f64,
        /// The largest request body in bytes.
        #[arg(long = "max-body", default_value_t = 64 << 20)]
        max_body: usize,
        /// Open connections at once (more are closed when accepted).
        #[arg(long = "max-connections", default_value_t = 1024)]
        max_connections: usize,
        /// Seconds within which a connection's TLS handshake and each request's headers must
        /// arrive (slow clients are dropped).
        #[arg(long = "header-timeout", default_value_t = 10.0)]
        header_timeout: f64,
        /// A host name HTTP requests may name in `Host` (repeatable; `name` or `name:port`).
        /// Addresses and, on loopback, localhost are always accepted; other names are refused.
        #[arg(long = "allow-host")]
        allowed_hosts: Vec<String>,
        /// A group whose members may use the unix socket too (0660); without it the socket is
        /// the daemon user's only (0600).
        #[arg(long = "socket-group")]
        socket_group: Option<String>,
        /// sync (fsync before a step returns), buffered (survives a crash of the daemon, not of
        /// the machine) or none.
        #[arg(long, default_value = "sync")]
        durability: String,
        /// Evaluate the alert rules of this file while serving (docs/operations.md).
        #[arg(long)]
        alerts: Option<PathBuf>,
    },
    /// The web dashboard: overview, live feed, executions, recovery, policies and alerts,
    /// compliance. Over --store (read-only beside the application that writes it; controls
    /// reach that application through the store's mailbox) or in front of a daemon (--url; the
    /// browser's key goes with every call). Runs until SIGTERM or Ctrl-C.
    Ui {
        /// A daemon to show instead of --store (http://HOST:PORT or https://HOST:PORT).
        #[arg(long)]
        url: Option<String>,
        /// Where the dashboard listens.
        #[arg(long, default_value = "127.0.0.1:7800")]
        listen: String,
        /// A file of API keys (one per line, admin over every tenant) for the dashboard over
        /// --store; also OMIUM_API_KEYS. Keys issued with `omium keys create` work too.
        #[arg(long = "api-key-file")]
        api_key_file: Option<PathBuf>,
        /// A host name the browser may use besides the address (repeatable).
        #[arg(long = "allow-host")]
        allowed_hosts: Vec<String>,
        /// A node of a Raft cluster (`omium node`) to show on the Cluster page (repeatable;
        /// TLS from OMIUM_CLUSTER_CA, _CERT, _KEY).
        #[arg(long = "node")]
        nodes: Vec<String>,
    },
    /// API keys of `omium serve`: issue (shown once), list, revoke. On --store directly, or
    /// through a running daemon with --url and an admin key.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Alert rules over the execution analytics: check a file, evaluate it, see what fires,
    /// acknowledge (Slack, PagerDuty, email, signed webhooks).
    Alerts {
        #[command(subcommand)]
        command: alerts::AlertsCommand,
    },
    /// Manage a cluster's membership through one of its nodes.
    Cluster {
        /// A node of the cluster (host:port); repeat for fallbacks. Not needed by `certs`.
        #[arg(long = "node")]
        nodes: Vec<String>,
        #[command(subcommand)]
        command: consensus::ClusterCommand,
    },
    /// Broadcast, acknowledge, await and list agent messages agreed on the Raft log.
    Consensus {
        /// A cluster node (host:port), repeatable; without it, the embedded group of --store.
        #[arg(long = "node", global = true)]
        nodes: Vec<String>,
        #[command(subcommand)]
        command: consensus::ConsensusCommand,
    },
    /// Sync this store with a cluster: push its executions, pull one, or list the cluster's.
    Sync {
        /// A cluster node (host:port); repeat for fallbacks.
        #[arg(long = "node", global = true)]
        nodes: Vec<String>,
        #[command(subcommand)]
        command: sync::SyncCommand,
    },
    /// The event feed: every change of the store as a typed event (CloudEvents with --json),
    /// from a cursor; --follow keeps printing events as they are written.
    Events {
        /// Print the events after this seq (0: from the first).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Keep following the feed until stdout closes.
        #[arg(long)]
        follow: bool,
        /// Only events of this type or family (execution.failed, execution.*); repeatable.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Only the events of this execution.
        #[arg(long)]
        execution: Option<String>,
        /// At most this many events (without --follow).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Read the cursor from this file and write it back after each batch printed, so a
        /// restarted consumer goes on where it stopped (overrides --since once it exists).
        #[arg(long, value_name = "FILE")]
        cursor_file: Option<PathBuf>,
        /// Deliver the events to this URL instead of printing them: each batch is POSTed as
        /// CloudEvents batch JSON, signed with OMIUM_WEBHOOK_SECRET (header Omium-Signature),
        /// and retried until the receiver answers 2xx (at least once, in order). Private and
        /// loopback addresses only when OMIUM_WEBHOOK_ALLOW names them.
        #[arg(long, value_name = "URL")]
        webhook: Option<String>,
    },
    /// Show the audit log, oldest first; `omium audit head` prints its last entry's SEQ:HASH.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// First entry to show (entries are numbered from 1).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the audit chain's head as SEQ:HASH. Keep it somewhere this store's owner cannot
    /// rewrite; `omium verify --expect-head SEQ:HASH` proves later that nothing up to it was cut
    /// off or rewritten.
    Head,
}

/// The statuses `executions --status` accepts.
const STATUSES: [&str; 6] = [
    "pending",
    "running",
    "paused",
    "completed",
    "failed",
    "cancelled",
];

/// Runs the command line `args` (the program name first) and ends the process with its exit
/// code, stdout and stderr flushed: the `omium` entry points of the Python and Node packages.
pub fn exit_from(args: Vec<std::ffi::OsString>) -> ! {
    let code = main_from(args);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // `ExitCode` does not expose its number on stable Rust; it compares, though.
    let status = (0..=255u8)
        .find(|&n| code == ExitCode::from(n))
        .unwrap_or(1);
    std::process::exit(i32::from(status))
}

/// Runs the command line `args` (the program name first, as `std::env::args_os` gives it) and
/// returns its exit code. What `omium` does; the Python and Node packages call it from their
/// `omium` entry points.
pub fn main_from(args: Vec<std::ffi::OsString>) -> ExitCode {
    let mut cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // Name the store by its full path in messages: "no Omium store at /srv/app/.omium".
    if let Ok(abs) = std::path::absolute(&cli.store) {
        cli.store = abs;
    }
    let result = run(&cli);
    match result {
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

/// A command line that does not parse: clap's message and exit code 2, or with `--json` the
/// same message as a JSON error object, so a script always gets JSON.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !wants_json() {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "no command given; `omium --help` lists the commands".to_string()
    } else {
        let text = e.render().to_string();
        let text = text.trim_start_matches("error: ");
        text.split("\n\n").next().unwrap_or(text).trim().to_string()
    };
    let v = serde_json::json!({"error": {"code": "usage", "message": message}});
    println!("{v}");
    ExitCode::from(2)
}

/// `--json` among the arguments (before a `--`), for errors found before they are parsed.
fn wants_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
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
    if let Command::Node {
        id,
        listen,
        join,
        advertise,
        tls_ca,
        tls_cert,
        tls_key,
        insecure_loopback,
    } = &cli.command
    {
        let tls = match (tls_ca, tls_cert, tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(omium_core::consensus::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        consensus::node(
            &cli.store,
            omium_core::consensus::NodeConfig {
                id: *id,
                listen: listen.clone(),
                advertise: advertise.clone(),
                join: join.clone(),
                tls,
                insecure_loopback: *insecure_loopback,
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Ui {
        url,
        listen,
        api_key_file,
        allowed_hosts,
        nodes,
    } = &cli.command
    {
        serve::ui(
            url.as_deref()
                .map_or(serve::UiSource::Store(&cli.store), serve::UiSource::Daemon),
            listen,
            serve::bootstrap_keys(api_key_file.as_deref())?,
            allowed_hosts.clone(),
            nodes.clone(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Serve {
        socket,
        http,
        api_key_file,
        tls_cert,
        tls_key,
        authorization,
        rate_limit,
        max_body,
        max_connections,
        header_timeout,
        allowed_hosts,
        socket_group,
        durability,
        alerts,
    } = &cli.command
    {
        let durability = omium_core::Durability::parse(durability)?;
        let config = omium_core::serve::ServeConfig {
            socket: socket.clone(),
            http: http.clone(),
            api_keys: serve::bootstrap_keys(api_key_file.as_deref())?,
            allowed_hosts: allowed_hosts.clone(),
            socket_group: socket_group.clone(),
            tls: tls_cert.clone().zip(tls_key.clone()),
            authorization: authorization.clone(),
            limits: omium_core::serve::Limits {
                max_connections: *max_connections,
                header_timeout: std::time::Duration::try_from_secs_f64(*header_timeout).map_err(
                    |e| omium_core::Error::InvalidArgument {
                        what: "--header-timeout",
                        detail: format!("{header_timeout}: {e}; expected seconds > 0"),
                    },
                )?,
                ..Default::default()
            },
            rate_limit: *rate_limit,
            body_limit: Some(*max_body),
            ui: false,
            cluster: Vec::new(),
        };
        let rules = alerts
            .as_deref()
            .map(omium_core::alerts::load)
            .transpose()?;
        serve::serve(&cli.store, config, durability, rules)?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = &mut std::io::stdout().lock();
    match &cli.command {
        Command::Node { .. } | Command::Serve { .. } | Command::Ui { .. } => {
            unreachable!("handled above")
        }
        Command::Cluster { nodes, command } => consensus::cluster(out, cli.json, nodes, command)?,
        Command::Alerts { command } => alerts::run(out, cli.json, &cli.store, command)?,
        Command::Keys { command } => keys::run(out, cli.json, &cli.store, command)?,
        Command::Sync { nodes, command } => {
            let open = |create: bool| {
                Store::open_with(
                    &cli.store,
                    omium_core::OpenOptions {
                        create,
                        ..Default::default()
                    },
                )
            };
            sync::run(out, cli.json, open, nodes, command)?
        }
        Command::Consensus { nodes, command } => {
            return consensus::consensus(out, cli.json, &cli.store, nodes, command);
        }
        Command::Executions { status } => {
            if let Some(s) = status {
                if !STATUSES.contains(&s.as_str()) {
                    return Err(Error::InvalidArgument {
                        what: "--status",
                        detail: format!("{s:?}; expected one of {}", STATUSES.join(", ")),
                    });
                }
            }
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
            // The head's state decoded, when its codec is recorded; what cannot be decoded is
            // said, not fatal.
            let head = history
                .last()
                .filter(|c| omium_core::value::checkpoint_codec(c).is_some())
                .map(|c| store.state_value(c).map_err(|e| e.to_string()));
            view::execution(out, cli.json, &e, &history, head);
        }
        Command::History { execution, all } => {
            let store = open_reader(cli)?;
            let list = if *all {
                let mut all = store.checkpoints(execution)?;
                // The store lists them by id, and ids made within one millisecond (the copies
                // a fork makes, fast steps) are not ordered; the execution-wide seq is.
                all.sort_by_key(|c| (c.global_seq, c.created_at_ms));
                all
            } else {
                store.history(execution)?
            };
            view::checkpoints(out, cli.json, &list);
        }
        Command::Checkpoint { id, state, value } => {
            let store = open_reader(cli)?;
            let c = store.checkpoint(id)?;
            if *state {
                let bytes = store.read_state(&c)?;
                let _ = out.write_all(&bytes);
            } else if *value {
                view::json(out, &store.state_value(&c)?);
            } else {
                view::checkpoint(out, cli.json, &c);
            }
        }
        Command::Verify {
            execution,
            expect_head,
        } => {
            let store = open_reader(cli)?;
            let report = store.verify_expecting(execution.as_deref(), expect_head.as_ref())?;
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
            let marker = store.rollback(execution, &target(to), reason.as_deref())?;
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
            let text = read_file(state_file.as_deref(), "--state-file")?;
            let store = open_writer(cli)?;
            let state = edited_state(&store, execution, text, "omium fork --state-file")?;
            let e = store.fork(
                execution,
                &target(at),
                ForkOptions {
                    new_execution_id: new_id.clone(),
                    state,
                },
            )?;
            if cli.json {
                view::json(out, &view::execution_json(&e));
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
            let spans = store.delete_spans_older_than(age)?;
            if cli.json {
                let mut v = serde_json::to_value(&r).expect("reports serialize");
                v["spans_deleted"] = spans.spans_deleted.into();
                view::json(out, &v);
            } else {
                let _ = writeln!(
                    out,
                    "deleted {} executions ({} checkpoints) and {} spans; removed {} chunks ({} bytes)",
                    r.executions_deleted,
                    r.checkpoints_deleted,
                    spans.spans_deleted,
                    r.gc.chunks_removed,
                    r.gc.bytes_removed
                );
            }
        }
        Command::Stats => {
            let store = open_reader(cli)?;
            view::stats(out, cli.json, &store.stats()?);
        }
        Command::Policy { command } => {
            return recovery::policy(
                out,
                cli.json,
                command,
                || open_reader(cli),
                || open_writer(cli),
            );
        }
        Command::Workflow { command } => {
            return workflow::command(out, cli.json, &cli.store, command);
        }
        Command::Failures { execution, kind } => {
            let kind = kind
                .as_deref()
                .map(omium_core::policy::Trigger::parse)
                .transpose()?;
            let store = open_reader(cli)?;
            let mut list = store.failures(execution.as_deref())?;
            if let Some(k) = kind {
                list.retain(|f| f.kind == k);
            }
            recovery::failures(out, cli.json, &list);
        }
        Command::Recoveries { execution } => {
            let store = open_reader(cli)?;
            recovery::recoveries(out, cli.json, &store.failures(execution.as_deref())?);
        }
        Command::Report {
            period,
            format,
            out: file,
        } => {
            use omium_core::report;
            let period = report::Period::parse(period)?;
            let render: fn(&report::Report) -> Vec<u8> = match format.as_str() {
                "json" => |r| report::to_json(r).into_bytes(),
                "csv" => |r| report::to_csv(r).into_bytes(),
                "html" => |r| report::to_html(r).into_bytes(),
                "pdf" => report::to_pdf,
                other => {
                    return Err(Error::InvalidArgument {
                        what: "--format",
                        detail: format!(
                            "{other:?} is not a report format; expected json, csv, html or pdf"
                        ),
                    })
                }
            };
            let store = open_reader(cli)?;
            let bytes = render(&report::build(&store, &period)?);
            match file {
                Some(path) => std::fs::write(path, &bytes).map_err(|e| Error::InvalidArgument {
                    what: "--out",
                    detail: format!("cannot write {}: {e}", path.display()),
                })?,
                None => {
                    let _ = out.write_all(&bytes);
                }
            }
        }
        Command::Metrics {
            since,
            until,
            by,
            workflow,
            tenant,
            agent,
            step,
            recovery,
        } => {
            if *recovery {
                if since.is_some()
                    || until.is_some()
                    || by.is_some()
                    || tenant.is_some()
                    || agent.is_some()
                    || step.is_some()
                {
                    return Err(Error::InvalidArgument {
                        what: "--recovery",
                        detail: "recovery figures take only --workflow".into(),
                    });
                }
                let store = open_reader(cli)?;
                recovery::metrics(out, cli.json, &store.recovery_metrics(workflow.as_deref())?);
            } else {
                let query = serde_json::json!({
                    "since": since, "until": until, "by": by, "workflow": workflow,
                    "tenant": tenant, "agent": agent, "step": step,
                });
                let query = omium_core::analytics::MetricsQuery::from_json(&query)?;
                let store = open_reader(cli)?;
                analytics::report(out, cli.json, &store.metrics(&query)?);
            }
        }
        Command::Pause {
            execution,
            reason,
            by,
        }
        | Command::Cancel {
            execution,
            reason,
            by,
        }
        | Command::Retry {
            execution,
            reason,
            by,
        }
        | Command::Recover {
            execution,
            reason,
            by,
        }
        | Command::Escalate {
            execution,
            reason,
            by,
        }
        | Command::Delete {
            execution,
            reason,
            by,
        } => {
            let action = match &cli.command {
                Command::Pause { .. } => Action::Pause,
                Command::Cancel { .. } => Action::Cancel,
                Command::Retry { .. } => Action::Retry,
                Command::Recover { .. } => Action::Recover,
                Command::Escalate { .. } => Action::Escalate,
                _ => Action::Delete,
            };
            let store = open_reader(cli)?;
            control::run(
                out,
                cli.json,
                &store,
                action,
                execution,
                reason.as_deref(),
                by.as_deref(),
            )?;
        }
        Command::Resume {
            execution,
            state_file: None,
            by,
        } if matches!(
            open_writer(cli),
            Err(Error::Open(omium_core::OpenError::Locked { .. }))
        ) =>
        {
            // The store is held: its writer applies the resume (without a state).
            let store = open_reader(cli)?;
            control::run(
                out,
                cli.json,
                &store,
                Action::Resume,
                execution,
                None,
                by.as_deref(),
            )?;
        }
        Command::Resume {
            execution,
            state_file,
            by,
        } => {
            let text = read_file(state_file.as_deref(), "--state-file")?;
            let store = open_writer(cli)?;
            let state = edited_state(&store, execution, text, "omium resume --state-file")?;
            recovery::resume(
                out,
                cli.json,
                &store,
                execution,
                state.as_deref(),
                by.as_deref(),
            )?;
        }
        Command::Trace {
            execution,
            html,
            width,
        } => {
            let store = open_reader(cli)?;
            trace::trace(
                out,
                cli.json,
                &store,
                execution,
                html.as_deref(),
                (*width).clamp(10, 400),
            )?;
        }
        Command::Diff { a, b } => {
            let store = open_reader(cli)?;
            trace::diff(out, cli.json, &store, a, b)?;
        }
        Command::Replay { execution } => {
            let store = open_reader(cli)?;
            trace::replay(out, cli.json, &store, execution)?;
        }
        Command::Audit {
            command: Some(AuditCommand::Head),
            ..
        } => {
            let store = open_reader(cli)?;
            let head = store.audit_head()?;
            view::audit_head(out, cli.json, head.as_ref());
        }
        Command::Events {
            since,
            follow,
            types,
            execution,
            limit,
            cursor_file,
            webhook,
        } => {
            let store = open_reader(cli)?;
            let args = events::Args {
                webhook: webhook.as_deref(),
                since: *since,
                follow: *follow,
                types,
                execution: execution.as_deref(),
                limit: *limit,
                cursor_file: cursor_file.as_deref(),
            };
            events::run(&store, out, cli.json, &args)?;
        }
        Command::Audit {
            command: None,
            from,
            limit,
        } => {
            let store = open_reader(cli)?;
            let mut entries = store.audit_entries(*from, limit.saturating_add(1))?;
            let more = entries.len() > *limit;
            entries.truncate(*limit);
            view::audit(out, cli.json, &entries);
            if more && !cli.json {
                let next = entries.last().map(|e| e.seq + 1).unwrap_or(*from);
                eprintln!("(more entries follow: omium audit --from {next})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The bytes of an optional file argument.
fn read_file(path: Option<&std::path::Path>, what: &'static str) -> Result<Option<Vec<u8>>, Error> {
    path.map(|p| {
        std::fs::read(p).map_err(|e| Error::InvalidArgument {
            what,
            detail: format!("cannot read {}: {e}", p.display()),
        })
    })
    .transpose()
}

/// A state a person wrote as JSON, in the codec `execution` recorded (as it is when none).
fn edited_state(
    store: &Store,
    execution: &str,
    text: Option<Vec<u8>>,
    what: &str,
) -> Result<Option<Vec<u8>>, Error> {
    let Some(text) = text else { return Ok(None) };
    let e = store.execution(execution)?;
    omium_core::value::encode_state(omium_core::value::execution_codec(&e), &text, what).map(Some)
}

/// What `--to` and `--at` name: `last-consistent`, a checkpoint id, or a step name.
fn target(s: &str) -> RollbackTarget {
    if s == "last-consistent" {
        RollbackTarget::LastConsistent
    } else {
        RollbackTarget::parse(s)
    }
}

/// `30d`, `12h`, `90m`, `45s`.
fn parse_age(s: &str) -> Result<Duration, Error> {
    let bad = |why: &str| Error::InvalidArgument {
        what: "--older-than",
        detail: format!("{s:?}{why}; expected a whole number followed by d, h, m or s (e.g. 30d)"),
    };
    let Some(unit) = s.chars().last() else {
        return Err(bad(""));
    };
    let num = &s[..s.len() - unit.len_utf8()];
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(""));
    }
    let n: u64 = num.parse().map_err(|_| bad(" is too large"))?;
    let per = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad("")),
    };
    let secs = n.checked_mul(per).ok_or_else(|| bad(" is too large"))?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::parse_age;
    use std::time::Duration;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("12h").unwrap(), Duration::from_secs(12 * 3_600));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(90 * 60));
        assert_eq!(parse_age("0s").unwrap(), Duration::ZERO);
        for bad in ["", "d", "3w", "-1d", "+1d", "1.5h", " 1d", "1dd", "é", "30"] {
            let e = parse_age(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{bad:?}");
            assert!(e.to_string().contains("e.g. 30d"), "{e}");
        }
        let e = parse_age("99999999999999999d").unwrap_err();
        assert!(e.to_string().contains("is too large"), "{e}");
        let e = parse_age("99999999999999999999999s").unwrap_err();
        assert!(e.to_string().contains("is too large"), "{e}");
    }
}
