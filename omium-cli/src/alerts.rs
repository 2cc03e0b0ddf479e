//! `omium alerts check|run|status|ack`: alert rules over the execution analytics
//! (docs/operations.md, "Alert rules").

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use omium_core::alerts::{self, AlertState, Transition};
use omium_core::{Error, Store};

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Validate an alert rules file (problems name line and column) and list its rules.
    Check { file: PathBuf },
    /// Evaluate the rules of FILE on --store in the foreground until SIGTERM or Ctrl-C, as
    /// `omium serve --alerts FILE` does; --once evaluates once and prints the transitions.
    Run {
        file: PathBuf,
        #[arg(long)]
        once: bool,
    },
    /// The alerts that are pending or firing, from the store (also while a daemon holds it).
    Status,
    /// Acknowledge a firing alert through the daemon that evaluates it: no more repeats, and
    /// PagerDuty (and every other channel) hears `acknowledge`.
    Ack {
        rule: String,
        /// Only the alert of this group (`workflow=checkout`; repeatable).
        #[arg(long = "group")]
        group: Vec<String>,
        /// Who acknowledges (recorded in the audit log and the notices).
        #[arg(long)]
        by: Option<String>,
        /// The daemon: unix:///path/to/omium.sock or http://127.0.0.1:7700.
        #[arg(long)]
        url: String,
        /// A file holding its API key (else $OMIUM_API_KEY; keys never go on the command line).
        #[arg(long = "api-key-file")]
        api_key_file: Option<std::path::PathBuf>,
    },
}

pub fn run(
    out: &mut impl Write,
    as_json: bool,
    store_path: &std::path::Path,
    command: &AlertsCommand,
) -> Result<(), Error> {
    match command {
        AlertsCommand::Check { file } => {
            let rules = alerts::load(file)?;
            if as_json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&rules).expect("rules serialize")
                );
            } else {
                let _ = writeln!(
                    out,
                    "{}: {} rules, {} channels, evaluated every {} ms",
                    file.display(),
                    rules.rules.len(),
                    rules.channels.len(),
                    rules.every_ms()
                );
                for r in &rules.rules {
                    let _ = writeln!(
                        out,
                        "  {}: {} for {} → {}",
                        r.name,
                        r.describe(),
                        r.for_,
                        r.channels.join(", ")
                    );
                }
            }
        }
        AlertsCommand::Run { file, once } => {
            let rules = alerts::load(file)?;
            let store = Store::open_with(
                store_path,
                omium_core::OpenOptions {
                    create: false,
                    ..Default::default()
                },
            )?;
            if *once {
                let t = alerts::evaluate(&store, &rules, omium_core::store::now_ms())?;
                print_transitions(out, as_json, &t);
                return Ok(());
            }
            let evaluator = alerts::Evaluator::start(&store, rules)?;
            let _ = writeln!(
                out,
                "evaluating alert rules of {} on {}",
                file.display(),
                store_path.display()
            );
            let _ = out.flush();
            wait_for_signal()?;
            evaluator.stop();
        }
        AlertsCommand::Status => {
            let store = Store::open_read_only(store_path)?;
            print_state(out, as_json, &alerts::state(&store)?);
        }
        AlertsCommand::Ack {
            rule,
            group,
            by,
            url,
            api_key_file,
        } => {
            let mut g = BTreeMap::new();
            for kv in group {
                let (k, v) = kv.split_once('=').ok_or_else(|| Error::InvalidArgument {
                    what: "--group",
                    detail: format!("{kv:?} is not name=value (e.g. workflow=checkout)"),
                })?;
                g.insert(k.to_string(), v.to_string());
            }
            let client = omium_core::serve::Client::connect(
                url,
                crate::keys::client_key(api_key_file.as_deref())?.as_deref(),
            )?;
            let by = by.clone().unwrap_or_else(|| {
                std::env::var("USER")
                    .map_or("operator".into(), |u| format!("{u} (omium alerts ack)"))
            });
            let t: Vec<Transition> = serde_json::from_value(client.call(
                "alerts.ack",
                serde_json::json!({"rule": rule, "group": g, "by": by}),
            )?)
            .unwrap_or_default();
            print_transitions(out, as_json, &t);
        }
    }
    Ok(())
}

fn wait_for_signal() -> Result<(), Error> {
    crate::consensus::runtime()?.block_on(crate::serve::until_stopped())
}

fn print_transitions(out: &mut impl Write, as_json: bool, t: &[Transition]) {
    if as_json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(t).expect("transitions serialize")
        );
        return;
    }
    if t.is_empty() {
        let _ = writeln!(out, "no alert changed");
    }
    for t in t {
        let group: Vec<String> = t.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let sent: Vec<String> = t
            .delivered
            .iter()
            .map(|(c, r)| format!("{c}: {r}"))
            .collect();
        let _ = writeln!(
            out,
            "{}{} {}{} (value {}) → {}",
            t.status.as_str(),
            if t.repeat { " again" } else { "" },
            t.rule,
            if group.is_empty() {
                String::new()
            } else {
                format!(" [{}]", group.join(", "))
            },
            t.value.map_or("no data".into(), |v| v.to_string()),
            sent.join("; ")
        );
    }
}

fn print_state(out: &mut impl Write, as_json: bool, st: &AlertState) {
    if as_json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(st).expect("the state serializes")
        );
        return;
    }
    if st.evaluated_ms == 0 {
        let _ = writeln!(out, "no alert rules were evaluated on this store");
        return;
    }
    let _ = writeln!(
        out,
        "last evaluated {}",
        omium_core::rfc3339_ms(st.evaluated_ms as i64)
    );
    if st.alerts.is_empty() {
        let _ = writeln!(out, "no alert is pending or firing");
    }
    for a in st.alerts.values() {
        let group: Vec<String> = a.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "{:<9} {}{} since {} value {}{}",
            format!("{:?}", a.phase).to_lowercase(),
            a.rule,
            if group.is_empty() {
                String::new()
            } else {
                format!(" [{}]", group.join(", "))
            },
            omium_core::rfc3339_ms(a.fired_ms.unwrap_or(a.since_ms) as i64),
            a.value.map_or("no data".into(), |v| v.to_string()),
            a.acknowledged_by
                .as_deref()
                .map_or(String::new(), |b| format!(", acknowledged by {b}")),
        );
    }
}
