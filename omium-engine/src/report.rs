//! The operations and compliance report of a period (`omium report --period 2026-11`):
//! executions, success rate, latency, incidents and their recoveries, MTTR, LLM spend and cost
//! saved, policy changes, who did what (the audit log), and the result of `verify` — as JSON,
//! CSV, a self-contained HTML page, or a PDF.
//!
//! The figures are the analytics' ([`crate::analytics`]); incidents are the failure records
//! detected in the period; the audit section counts the entries of the period by actor and
//! action. The PDF is written here (PDF 1.4, the standard Helvetica font, text only), so no
//! renderer or font file is needed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::analytics::{AnalyticsStore, Figures, GroupBy, MetricsQuery};
use crate::policy::versions::PolicyStore;
use crate::trace::view::esc;
use omium_storage::error::{Error, Result};
use omium_storage::rollup::DAY_MS;
use omium_storage::{rfc3339_ms, Store};

/// A calendar period in UTC: a month (`2026-11`), a day (`2026-11-03`) or a range of days
/// (`2026-11-01..2026-11-15`, the end excluded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Period {
    pub label: String,
    pub since_ms: u64,
    pub until_ms: u64,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period> {
        let bad = || Error::InvalidArgument {
            what: "report period",
            detail: format!(
                "{s:?} is not a period; expected a month (2026-11), a day (2026-11-03) or a \
                 range of days (2026-11-01..2026-11-15)"
            ),
        };
        let day = |d: &str| -> Result<u64> {
            if d.len() != 10 {
                return Err(bad());
            }
            crate::analytics::parse_time("report period", d, 0).map_err(|_| bad())
        };
        let s = s.trim();
        let (since_ms, until_ms) = if let Some((a, b)) = s.split_once("..") {
            (day(a)?, day(b)?)
        } else if s.len() == 7 {
            let since = day(&format!("{s}-01"))?;
            let (y, m) = (
                s[..4].parse::<u32>().map_err(|_| bad())?,
                s[5..7].parse::<u32>().map_err(|_| bad())?,
            );
            let next = if m == 12 {
                format!("{}-01-01", y + 1)
            } else {
                format!("{y:04}-{:02}-01", m + 1)
            };
            (since, day(&next)?)
        } else {
            let d = day(s)?;
            (d, d + DAY_MS)
        };
        if since_ms >= until_ms {
            return Err(bad());
        }
        Ok(Period {
            label: s.to_string(),
            since_ms,
            until_ms,
        })
    }
}

/// A failure detected in the period and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub id: String,
    pub execution: String,
    pub workflow: String,
    pub step: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub outcome: String,
    pub detected_at: String,
    pub resolved_at: Option<String>,
    pub time_to_recover_ms: Option<u64>,
    pub actions: Vec<String>,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyChange {
    pub at: String,
    pub tenant: String,
    pub scope: String,
    pub version: u32,
    pub author: String,
    pub digest: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub checkpoints: u64,
    pub audit_entries: u64,
    pub audit_head: Option<String>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub title: String,
    pub period: Period,
    pub since: String,
    pub until: String,
    pub generated_at: String,
    pub totals: Figures,
    pub by_workflow: Vec<(String, Figures)>,
    pub by_day: Vec<(String, Figures)>,
    pub incidents: Vec<Incident>,
    pub policy_changes: Vec<PolicyChange>,
    /// Audit entries of the period, by actor and action.
    pub audit: BTreeMap<String, BTreeMap<String, u64>>,
    pub audit_entries: u64,
    pub verify: Verification,
}

/// Builds the report of `period` (verifying every checkpoint and the audit chain).
pub fn build(store: &Store, period: &Period) -> Result<Report> {
    let q = |by: Vec<GroupBy>| MetricsQuery {
        since_ms: period.since_ms,
        until_ms: period.until_ms,
        by,
        ..MetricsQuery::default()
    };
    let pairs = |r: crate::analytics::MetricsReport| -> Vec<(String, Figures)> {
        r.groups
            .into_iter()
            .map(|gr| (gr.key.into_values().next().unwrap_or_default(), gr.figures))
            .collect()
    };
    // A grouped answer carries the window's totals too.
    let workflows = store.metrics(&q(vec![GroupBy::Workflow]))?;
    let totals = workflows.totals.clone();
    let within = |t: u64| (period.since_ms..period.until_ms).contains(&t);
    let incidents = store
        .failures(None)?
        .into_iter()
        .filter(|f| within(f.created_at_ms))
        .map(|f| Incident {
            time_to_recover_ms: (f.outcome == omium_storage::Outcome::Recovered)
                .then(|| f.resolved_at_ms.map(|r| r.saturating_sub(f.created_at_ms)))
                .flatten(),
            id: f.id,
            execution: f.execution_id,
            workflow: f.workflow,
            step: f.step,
            kind: f.kind.as_str().into(),
            outcome: f.outcome.as_str().into(),
            detected_at: rfc3339_ms(f.created_at_ms as i64),
            resolved_at: f.resolved_at_ms.map(|r| rfc3339_ms(r as i64)),
            actions: f.actions.into_iter().map(|a| a.action).collect(),
            message: f.message,
        })
        .collect();
    let policy_changes = store
        .all_policy_versions()?
        .into_iter()
        .filter(|v| within(v.created_at_ms))
        .map(|v| PolicyChange {
            at: rfc3339_ms(v.created_at_ms as i64),
            tenant: v.tenant,
            scope: v.scope,
            version: v.version,
            author: v.author,
            digest: v.digest,
        })
        .collect();
    let mut audit: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut audit_entries = 0;
    let mut from = 1;
    'scan: loop {
        let page = store.audit_entries(from, 10_000)?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for e in page {
            if e.at_ms >= period.until_ms {
                break 'scan;
            }
            if e.at_ms >= period.since_ms {
                audit_entries += 1;
                *audit
                    .entry(e.actor)
                    .or_default()
                    .entry(e.action)
                    .or_default() += 1;
            }
        }
    }
    let v = store.verify(None)?;
    let verify = Verification {
        ok: v.ok(),
        checkpoints: v.checkpoints,
        audit_entries: v.audit.entries,
        audit_head: v.audit.head.as_ref().map(|h| h.to_string()),
        problems: v
            .problems
            .iter()
            .map(|p| {
                format!(
                    "execution {} checkpoint {}: {}",
                    p.execution,
                    p.checkpoint.as_deref().unwrap_or("-"),
                    p.error
                )
            })
            .chain(v.audit.problems.iter().cloned())
            .collect(),
    };
    Ok(Report {
        title: format!("Omium operations and compliance report, {}", period.label),
        since: rfc3339_ms(period.since_ms as i64),
        until: rfc3339_ms(period.until_ms as i64),
        generated_at: rfc3339_ms(omium_storage::store::now_ms() as i64),
        totals,
        by_workflow: pairs(workflows),
        by_day: pairs(store.metrics(&q(vec![GroupBy::Day]))?),
        period: period.clone(),
        incidents,
        policy_changes,
        audit,
        audit_entries,
        verify,
    })
}

fn pct(v: Option<f64>) -> String {
    v.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|m| format!("{m:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

/// The report as lines of text (the PDF's body, and a check that HTML and PDF say the same).
fn sections(r: &Report) -> Vec<(String, Vec<String>)> {
    let t = &r.totals;
    let summary = vec![
        format!("Period: {} to {} (UTC)", r.since, r.until),
        format!(
            "Executions started: {}; completed: {}; failed: {}; cancelled: {}",
            t.started, t.completed, t.failed, t.cancelled
        ),
        format!("Success rate: {}", pct(t.success_rate)),
        format!(
            "Execution latency p50 / p95 / p99: {} / {} / {}",
            ms(t.execution_p50_ms),
            ms(t.execution_p95_ms),
            ms(t.execution_p99_ms)
        ),
        format!(
            "Failures: {}; recovered: {}; MTTR: {}",
            t.failures,
            t.recovered,
            ms(t.mttr_ms)
        ),
        format!(
            "Retries: {}; rollbacks: {}; forks: {}",
            t.retries, t.rollbacks, t.forks
        ),
        format!(
            "LLM spend: ${:.4} ({} tokens in, {} out); cost saved: ${:.4}",
            t.llm_cost_usd, t.tokens_in, t.tokens_out, t.cost_saved_usd
        ),
    ];
    let workflows = r
        .by_workflow
        .iter()
        .map(|(w, f)| {
            format!(
                "{w}: {} started, {} completed, {} failed, success {}, p95 {}, cost ${:.4}, saved ${:.4}",
                f.started,
                f.completed,
                f.failed,
                pct(f.success_rate),
                ms(f.execution_p95_ms),
                f.llm_cost_usd,
                f.cost_saved_usd
            )
        })
        .collect();
    let incidents = r
        .incidents
        .iter()
        .map(|i| {
            format!(
                "{} {} {} step {}: {} -> {} ({}){}",
                i.detected_at,
                i.execution,
                i.kind,
                i.step.as_deref().unwrap_or("-"),
                i.message,
                i.outcome,
                if i.actions.is_empty() {
                    "no actions".to_string()
                } else {
                    i.actions.join(", ")
                },
                i.time_to_recover_ms
                    .map(|t| format!(", recovered in {t} ms"))
                    .unwrap_or_default()
            )
        })
        .collect();
    let policies = r
        .policy_changes
        .iter()
        .map(|p| {
            format!(
                "{} {} {} v{} by {} ({})",
                p.at,
                p.tenant,
                p.scope,
                p.version,
                p.author,
                &p.digest[..p.digest.len().min(12)]
            )
        })
        .collect();
    let audit = r
        .audit
        .iter()
        .map(|(actor, actions)| {
            let list: Vec<String> = actions.iter().map(|(a, n)| format!("{a} {n}")).collect();
            format!("{actor}: {}", list.join(", "))
        })
        .collect();
    let mut verify = vec![format!(
        "verify: {} ({} checkpoints, {} audit entries, audit head {})",
        if r.verify.ok { "ok" } else { "PROBLEMS FOUND" },
        r.verify.checkpoints,
        r.verify.audit_entries,
        r.verify.audit_head.as_deref().unwrap_or("-")
    )];
    verify.extend(r.verify.problems.iter().cloned());
    let none = |v: Vec<String>, what: &str| {
        if v.is_empty() {
            vec![format!("No {what} in this period.")]
        } else {
            v
        }
    };
    vec![
        ("Summary".into(), summary),
        ("Workflows".into(), none(workflows, "executions")),
        (
            "Incidents and recoveries".into(),
            none(incidents, "incidents"),
        ),
        ("Policy changes".into(), none(policies, "policy changes")),
        (
            format!("Who did what ({} audit entries)", r.audit_entries),
            none(audit, "audit entries"),
        ),
        ("Integrity".into(), verify),
    ]
}

pub fn to_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("reports serialize")
}

/// CSV: one row per figure, `section,name,value` (spreadsheets and auditors' tools read it).
pub fn to_csv(r: &Report) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from("section,name,value\n");
    let mut row = |section: &str, name: &str, value: String| {
        let _ = writeln!(out, "{},{},{}", field(section), field(name), field(&value));
    };
    row("period", "since", r.since.clone());
    row("period", "until", r.until.clone());
    let figures = |f: &Figures| match serde_json::to_value(f).expect("figures serialize") {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("figures are an object"),
    };
    for (k, v) in figures(&r.totals) {
        row("totals", &k, v.to_string().trim_matches('"').to_string());
    }
    for (w, f) in &r.by_workflow {
        for (k, v) in figures(f) {
            row(&format!("workflow {w}"), &k, v.to_string());
        }
    }
    for i in &r.incidents {
        row(
            "incident",
            &i.id,
            format!(
                "{} {} {} {} {}",
                i.detected_at, i.execution, i.kind, i.outcome, i.message
            ),
        );
    }
    for p in &r.policy_changes {
        row(
            "policy change",
            &format!("{} {} v{}", p.tenant, p.scope, p.version),
            format!("{} by {}", p.at, p.author),
        );
    }
    for (actor, actions) in &r.audit {
        for (a, n) in actions {
            row("audit", &format!("{actor} {a}"), n.to_string());
        }
    }
    row("verify", "ok", r.verify.ok.to_string());
    row(
        "verify",
        "audit_head",
        r.verify.audit_head.clone().unwrap_or_default(),
    );
    out
}

/// A self-contained HTML page (no script, no external resource).
pub fn to_html(r: &Report) -> String {
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>body{{font:14px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
         padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}h2{{font-size:1.1rem;margin-top:1.6rem;\
         border-bottom:1px solid #ddd}}li{{margin:.2rem 0}}.meta{{color:#666}}</style></head><body>\
         <h1>{}</h1><p class=\"meta\">Generated {}</p>",
        esc(&r.title),
        esc(&r.title),
        esc(&r.generated_at)
    );
    for (title, lines) in sections(r) {
        let _ = write!(out, "<h2>{}</h2><ul>", esc(&title));
        for l in lines {
            let _ = write!(out, "<li>{}</li>", esc(&l));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>\n");
    out
}

/// A PDF 1.4 document: the report's sections as text on A4 pages in Helvetica.
pub fn to_pdf(r: &Report) -> Vec<u8> {
    // Lines wrapped to the page width (Helvetica 10 pt averages ~5 pt per character).
    let mut lines: Vec<(f32, String)> = vec![
        (14.0, r.title.clone()),
        (9.0, format!("Generated {}", r.generated_at)),
    ];
    for (title, body) in sections(r) {
        lines.push((10.0, String::new()));
        lines.push((12.0, title));
        for l in body {
            let mut rest = l.as_str();
            while !rest.is_empty() {
                let cut = if rest.chars().count() <= 95 {
                    rest.len()
                } else {
                    let byte = rest
                        .char_indices()
                        .nth(95)
                        .map(|(i, _)| i)
                        .unwrap_or(rest.len());
                    rest[..byte].rfind(' ').filter(|&i| i > 40).unwrap_or(byte)
                };
                lines.push((10.0, rest[..cut].to_string()));
                rest = rest[cut..].trim_start();
            }
        }
    }
    // Pages: A4 (595 x 842 pt), 50 pt margins.
    let mut pages: Vec<String> = Vec::new();
    let mut content = String::new();
    let mut y = 792.0f32;
    for (size, text) in lines {
        let step = size * 1.45;
        if y - step < 50.0 {
            pages.push(std::mem::take(&mut content));
            y = 792.0;
        }
        y -= step;
        let _ = writeln!(
            content,
            "BT /F1 {size} Tf 50 {y:.1} Td ({}) Tj ET",
            pdf_text(&text)
        );
    }
    pages.push(content);

    // Objects: 1 catalog, 2 pages, 3 font, then per page its page object and content stream.
    let n = pages.len();
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {n} >>",
            (0..n)
                .map(|i| format!("{} 0 R", 4 + 2 * i))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    ];
    for (i, c) in pages.iter().enumerate() {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
             /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{c}endstream", c.len()));
    }
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    let mut tail = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in offsets {
        let _ = writeln!(tail, "{o:010} 00000 n ");
    }
    let _ = write!(
        tail,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.extend_from_slice(tail.as_bytes());
    out
}

/// Text for a PDF string literal in WinAnsi: escapes `\ ( )`, keeps Latin-1, and writes `?`
/// for what the standard font cannot show.
fn pdf_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            '\u{a0}'..='\u{ff}' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            '—' | '–' => out.push('-'),
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_months_days_and_ranges() {
        let m = Period::parse("2026-11").unwrap();
        assert_eq!(rfc3339_ms(m.since_ms as i64), "2026-11-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(m.until_ms as i64), "2026-12-01T00:00:00.000Z");
        let d = Period::parse("2026-12").unwrap();
        assert_eq!(rfc3339_ms(d.until_ms as i64), "2027-01-01T00:00:00.000Z");
        let day = Period::parse("2026-11-03").unwrap();
        assert_eq!(day.until_ms - day.since_ms, DAY_MS);
        let r = Period::parse("2026-11-01..2026-11-15").unwrap();
        assert_eq!(r.until_ms - r.since_ms, 14 * DAY_MS);
        for bad in ["november", "2026-13", "2026-11-15..2026-11-01", "2026"] {
            let e = Period::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("2026-11-01..2026-11-15"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn pdf_strings_escape_and_fall_back() {
        assert_eq!(pdf_text("a (b) \\ c"), "a \\(b\\) \\\\ c");
        assert_eq!(pdf_text("£5 — ok ✓"), "\\2435 - ok ?");
    }
}
