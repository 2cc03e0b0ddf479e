//! `omium pause|cancel|retry|recover|escalate|delete EXECUTION` (and `resume` of a store another process holds):
//! operator controls, applied by the store's writer — this process when nobody holds the store,
//! else the process that does, through the store's control mailbox.

use std::io::Write;

use omium_core::control::{Action, Reply, Request};
use omium_core::{Error, Store};

pub fn run(
    out: &mut impl Write,
    as_json: bool,
    store: &Store,
    action: Action,
    execution: &str,
    reason: Option<&str>,
    by: Option<&str>,
) -> Result<(), Error> {
    let request = Request::new(
        action,
        execution,
        reason.map(str::to_string),
        by.map(str::to_string),
    );
    let reply = omium_core::recovery::control(store, &request)?;
    print(out, as_json, &reply);
    Ok(())
}

fn print(out: &mut impl Write, as_json: bool, r: &Reply) {
    if as_json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(r).expect("replies serialize")
        );
        return;
    }
    let what = match (r.action, r.result.as_str()) {
        (Action::Pause, "requested") => "pause requested: its run stops at the next step".into(),
        (Action::Cancel, "requested") => "cancel requested: its run stops at the next step".into(),
        (Action::Delete, _) => {
            let e = r.erased.unwrap_or_default();
            format!(
                "deleted (checkpoints: {}, chunks no other checkpoint used: {}, failure records: {}, spans: {})",
                e.checkpoints, e.chunks, e.failures, e.spans,
            )
        }
        (a, _) => format!(
            "{}: now {}",
            match a {
                Action::Pause => "paused",
                Action::Cancel => "cancelled",
                Action::Resume => "resumed",
                Action::Retry => "retried",
                Action::Recover => "recovered",
                Action::Delete => "deleted",
                Action::Rollback => "rolled back",
                Action::Escalate => "escalated",
            },
            r.status.as_deref().unwrap_or("-")
        ),
    };
    let _ = writeln!(out, "{}: {what}", r.execution);
    for (channel, outcome) in r.notified.iter().filter_map(|n| n.as_object()).flatten() {
        let _ = writeln!(out, "  told {channel}: {}", outcome.as_str().unwrap_or("-"));
    }
}
