//! `omium events`: the store's event feed, from a cursor, optionally following it live.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use omium_core::events::{self, Event, EventFilter, EventStore};
use omium_core::{Error, Store};

/// What `omium events` was asked.
pub struct Args<'a> {
    pub since: u64,
    pub follow: bool,
    pub types: &'a [String],
    pub execution: Option<&'a str>,
    pub limit: usize,
    pub cursor_file: Option<&'a Path>,
    /// POST each batch here (CloudEvents batch JSON, signed) instead of printing it.
    pub webhook: Option<&'a str>,
}

/// Prints events after the cursor; with `follow`, keeps printing them as they are written
/// until stdout closes. With a cursor file, the cursor is read from it and written back after
/// each batch is flushed to stdout (a consumer that dies re-reads at most one batch: at least
/// once, in order).
pub fn run(store: &Store, out: &mut impl Write, as_json: bool, a: &Args<'_>) -> Result<(), Error> {
    let filter = EventFilter::new(a.types.to_vec(), a.execution.map(str::to_string))?;
    let mut since = match a.cursor_file {
        Some(p) => read_cursor(p)?.unwrap_or(a.since),
        None => a.since,
    };
    let source = events::source(store);
    let mut left = if a.follow { usize::MAX } else { a.limit };
    loop {
        let want = left.min(1000);
        let page = if a.follow {
            store.follow_events(since, want, &filter, Duration::from_secs(1))?
        } else {
            store.events(since, want, &filter)?
        };
        if let Some(url) = a.webhook {
            if !page.events.is_empty() {
                deliver(url, &page.events, &source)?;
            }
        }
        for e in page.events.iter().filter(|_| a.webhook.is_none()) {
            let line = if as_json {
                e.cloud_event(&source).to_string()
            } else {
                human(e)
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // the reader went away (a closed pipe)
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
        since = page.cursor;
        if let Some(p) = a.cursor_file {
            write_cursor(p, since)?;
        }
        left = left.saturating_sub(page.events.len());
        if !a.follow && (page.events.len() < want || left == 0) {
            return Ok(());
        }
    }
}

/// POSTs one batch until the receiver takes it (a 2xx): at least once, in order. Failures are
/// reported on stderr and retried with a backoff from 200 ms to 30 s; the cursor does not move
/// past a batch before it was delivered.
/// A refused target (a private address not allowed, a redirect) is an error at once.
fn deliver(url: &str, events: &[Event], source: &str) -> Result<(), Error> {
    let body = serde_json::Value::Array(events.iter().map(|e| e.cloud_event(source)).collect())
        .to_string();
    let mut wait = Duration::from_millis(200);
    loop {
        match omium_core::recovery::post_webhook_as(
            url,
            "application/cloudevents-batch+json",
            &body,
        ) {
            Ok(()) => return Ok(()),
            Err(why) if why.starts_with("refused") => {
                return Err(Error::InvalidArgument {
                    what: "--webhook",
                    detail: why,
                })
            }
            Err(why) => {
                eprintln!(
                    "omium events: events #{}..#{} not delivered to the webhook ({why}); retrying in {} ms",
                    events[0].seq,
                    events[events.len() - 1].seq,
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn human(e: &Event) -> String {
    format!(
        "#{:<6} {}  {:<24} {:<20} {}",
        e.seq,
        omium_core::rfc3339_ms(e.time_ms as i64),
        e.kind,
        e.subject.as_deref().unwrap_or("-"),
        e.data
    )
}

fn read_cursor(p: &Path) -> Result<Option<u64>, Error> {
    match std::fs::read_to_string(p) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::InvalidArgument {
                what: "cursor file",
                detail: format!(
                    "{} holds {:?}; expected the seq of the last event handled (a whole number)",
                    p.display(),
                    s.trim()
                ),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::InvalidArgument {
            what: "cursor file",
            detail: format!("cannot read {}: {e}", p.display()),
        }),
    }
}

/// Replaces the cursor file atomically (write beside it, fsync, rename).
fn write_cursor(p: &Path, seq: u64) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::InvalidArgument {
        what: "cursor file",
        detail: format!("cannot write {}: {e}", p.display()),
    };
    let mut tmp = PathBuf::from(p);
    tmp.as_mut_os_string().push(".tmp");
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    writeln!(f, "{seq}").map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, p).map_err(fail)
}
