//! Reading a trace: a terminal waterfall, a self-contained HTML timeline with the agents'
//! dependency graph, and a step-by-step diff of two executions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use serde::Serialize;

use super::{Span, StatusCode, Value};
use crate::checkpoint::Checkpoint;

/// First start and last end of the spans (never an empty range).
fn time_range(spans: &[Span]) -> (u64, u64) {
    let t0 = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let t1 = spans
        .iter()
        .map(|s| s.end_ns.max(s.start_ns))
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    (t0, t1)
}

/// Spans in tree order (parents before children, siblings by start), with their depth.
pub fn tree(spans: &[Span]) -> Vec<(usize, &Span)> {
    let ids: BTreeSet<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<Option<[u8; 8]>, Vec<&Span>> = HashMap::new();
    for s in spans {
        // A parent outside this trace (an extracted traceparent) makes the span a root here.
        let p = s.parent.filter(|p| ids.contains(p));
        children.entry(p).or_default().push(s);
    }
    for v in children.values_mut() {
        v.sort_by_key(|s| (s.start_ns, s.end_ns));
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, &Span)> = children
        .get(&None)
        .map(|v| v.iter().rev().map(|s| (0, *s)).collect())
        .unwrap_or_default();
    while let Some((d, s)) = stack.pop() {
        out.push((d, s));
        if let Some(kids) = children.get(&Some(s.span_id)) {
            stack.extend(kids.iter().rev().map(|k| (d + 1, *k)));
        }
    }
    out
}

fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.2}ms")
    }
}

fn status(s: &Span) -> &'static str {
    match s.status {
        StatusCode::Ok => "ok",
        StatusCode::Error => "ERROR",
        StatusCode::Unset => "-",
    }
}

/// A waterfall for the terminal: one line per span (indented by nesting) with its type,
/// duration, status and a bar placed on the trace's time axis `width` characters wide.
pub fn waterfall(spans: &[Span], width: usize) -> String {
    let mut out = String::new();
    if spans.is_empty() {
        return out;
    }
    let (t0, t1) = time_range(spans);
    let rows = tree(spans);
    let label = |d: usize, s: &Span| format!("{}{} [{}]", "  ".repeat(d), s.name, s.span_type);
    let name_w = rows
        .iter()
        .map(|(d, s)| label(*d, s).chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    let _ = writeln!(
        out,
        "{:<name_w$}  {:>9}  {:<6}  timeline ({} total)",
        "SPAN",
        "DURATION",
        "STATUS",
        ms(t1 - t0)
    );
    for (d, s) in rows {
        let scale =
            |t: u64| ((t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * width as f64) as usize;
        let a = scale(s.start_ns).min(width.saturating_sub(1));
        let b = scale(s.end_ns.max(s.start_ns)).clamp(a + 1, width);
        let bar: String = (0..width)
            .map(|i| {
                if i >= a && i < b {
                    if s.status == StatusCode::Error {
                        '!'
                    } else {
                        '█'
                    }
                } else {
                    '·'
                }
            })
            .collect();
        let mut l = label(d, s);
        if l.chars().count() > name_w {
            l = l.chars().take(name_w - 1).collect::<String>() + "…";
        }
        let _ = writeln!(
            out,
            "{l:<name_w$}  {:>9}  {:<6}  {bar}",
            ms(s.duration_ns()),
            status(s)
        );
    }
    out
}

/// Text for HTML (element content and quoted attributes).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Agents and who handed work to whom: an edge A → B when a span of agent B is the child of a
/// span of agent A, or follows it in time as the next agent to start.
pub fn agent_graph(spans: &[Span]) -> (Vec<String>, BTreeMap<(String, String), u64>) {
    let by_id: HashMap<[u8; 8], &Span> = spans.iter().map(|s| (s.span_id, s)).collect();
    let agent = |s: &Span| {
        if s.agent.is_empty() {
            "main".to_string()
        } else {
            s.agent.clone()
        }
    };
    let mut first_seen: Vec<(u64, String)> = Vec::new();
    let mut edges: BTreeMap<(String, String), u64> = BTreeMap::new();
    for s in spans {
        let a = agent(s);
        if !first_seen.iter().any(|(_, n)| *n == a) {
            first_seen.push((s.start_ns, a.clone()));
        } else if let Some(e) = first_seen.iter_mut().find(|(_, n)| *n == a) {
            e.0 = e.0.min(s.start_ns);
        }
        if let Some(p) = s.parent.and_then(|p| by_id.get(&p)) {
            let pa = agent(p);
            if pa != a {
                *edges.entry((pa, a)).or_default() += 1;
            }
        }
    }
    first_seen.sort();
    let agents: Vec<String> = first_seen.into_iter().map(|(_, n)| n).collect();
    if edges.is_empty() {
        for w in agents.windows(2) {
            edges.insert((w[0].clone(), w[1].clone()), 1);
        }
    }
    (agents, edges)
}

/// One self-contained HTML page (no scripts or files from elsewhere): the timeline of every
/// span and the agents' dependency graph.
pub fn html(execution_id: &str, spans: &[Span]) -> String {
    let (t0, t1) = time_range(spans);
    let total = (t1 - t0) as f64;
    let mut rows = String::new();
    for (d, s) in tree(spans) {
        let left = (s.start_ns.saturating_sub(t0)) as f64 / total * 100.0;
        let w = ((s.duration_ns() as f64 / total) * 100.0).max(0.3);
        let attrs: String = s
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n");
        let class = match (s.status, s.span_type.as_str()) {
            (StatusCode::Error, _) => "err",
            (_, "llm") => "llm",
            (_, "tool") => "tool",
            (_, "workflow") => "wf",
            (_, "recovery" | "rollback") => "rec",
            _ => "step",
        };
        let _ = writeln!(
            rows,
            "<div class=\"row\"><div class=\"name\" style=\"padding-left:{}px\" title=\"{}\">{} <span class=\"t\">{}</span></div>\
             <div class=\"lane\"><div class=\"bar {class}\" style=\"left:{left:.3}%;width:{w:.3}%\" title=\"{}\"></div></div>\
             <div class=\"dur\">{}</div></div>",
            8 + d * 14,
            esc(&attrs),
            esc(&s.name),
            esc(&s.span_type),
            esc(&format!("{} {} {}", s.name, ms(s.duration_ns()), status(s))),
            ms(s.duration_ns()),
        );
    }
    let (agents, edges) = agent_graph(spans);
    let (w, h) = (760.0f64, 120.0 + 0.0 * agents.len() as f64);
    let step = if agents.len() > 1 {
        (w - 160.0) / (agents.len() - 1) as f64
    } else {
        0.0
    };
    let pos: HashMap<&str, (f64, f64)> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (
                a.as_str(),
                (
                    80.0 + step * i as f64,
                    h / 2.0 + if i % 2 == 0 { -15.0 } else { 15.0 },
                ),
            )
        })
        .collect();
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
        <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>");
    for ((a, b), n) in &edges {
        if let (Some(p), Some(q)) = (pos.get(a.as_str()), pos.get(b.as_str())) {
            let _ = write!(
                svg,
                "<line class=\"edge\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#555\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"><title>{} → {} ({n})</title></line>",
                p.0 + 42.0,
                p.1,
                q.0 - 42.0,
                q.1,
                esc(a),
                esc(b)
            );
        }
    }
    for a in &agents {
        let (x, y) = pos[a.as_str()];
        let _ = write!(
            svg,
            "<g class=\"agent\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"84\" height=\"28\" rx=\"6\" fill=\"#e8f0fe\" stroke=\"#3367d6\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\">{}</text></g>",
            x - 42.0,
            y - 14.0,
            y + 4.0,
            esc(a)
        );
    }
    svg.push_str("</svg>");
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Omium trace {id}</title><style>\
body{{font:13px system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:18px}}h2{{font-size:15px;margin-top:28px}}\
.row{{display:flex;align-items:center;height:22px;border-bottom:1px solid #f0f0f0}}\
.name{{width:300px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}}.t{{color:#888;font-size:11px}}\
.lane{{position:relative;flex:1;height:14px;background:#fafafa}}.bar{{position:absolute;top:0;height:14px;border-radius:2px}}\
.dur{{width:80px;text-align:right;color:#555}}.wf{{background:#9aa0a6}}.step{{background:#4285f4}}.llm{{background:#a142f4}}\
.tool{{background:#fa7b17}}.rec{{background:#f9ab00}}.err{{background:#d93025}}</style></head><body>\
<h1>Execution {id}</h1><p>{n} spans, {total} from first start to last end.</p>\
<h2>Timeline</h2><div id=\"timeline\">{rows}</div><h2>Agents</h2><div id=\"agents\">{svg}</div></body></html>\n",
        id = esc(execution_id),
        n = spans.len(),
        total = ms(t1 - t0),
    )
}

/// One position of two executions compared.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepDiff {
    pub seq: u64,
    /// The journal position: the seq, or the key of a nested or keyed step (`1/0`).
    pub position: String,
    pub name_a: Option<String>,
    pub name_b: Option<String>,
    /// The recorded outputs differ (by checksum).
    pub output_differs: bool,
    /// The recorded inputs differ (`input.value` of the step's span, or the request hash of an
    /// LLM or tool call).
    pub input_differs: bool,
    pub duration_ns_a: Option<u64>,
    pub duration_ns_b: Option<u64>,
    pub tokens_a: Option<i64>,
    pub tokens_b: Option<i64>,
    pub cost_a: Option<f64>,
    pub cost_b: Option<f64>,
}

impl StepDiff {
    pub fn differs(&self) -> bool {
        self.name_a != self.name_b
            || self.output_differs
            || self.input_differs
            || self.tokens_a != self.tokens_b
            || self.cost_a != self.cost_b
    }
}

fn tokens(s: &Span) -> Option<i64> {
    let get = |k: &str| match s.attr(k) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    };
    match (
        get("gen_ai.usage.input_tokens"),
        get("gen_ai.usage.output_tokens"),
    ) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

fn cost(s: &Span) -> Option<f64> {
    match s.attr("omium.cost_usd") {
        Some(Value::Float(x)) => Some(*x),
        Some(Value::Int(i)) => Some(*i as f64),
        _ => None,
    }
}

/// The span of a checkpoint's step: the span whose `omium.checkpoint_id` names it.
fn span_of<'a>(spans: &'a [Span], c: &Checkpoint) -> Option<&'a Span> {
    let id = c.id.to_string();
    spans
        .iter()
        .find(|s| matches!(s.attr("omium.checkpoint_id"), Some(Value::Str(v)) if *v == id))
}

fn input_of(c: &Checkpoint, s: Option<&Span>) -> Option<String> {
    c.metadata
        .get("omium.request_hash")
        .cloned()
        .or_else(|| s.and_then(|s| s.attr("input.value")).map(|v| v.to_string()))
}

/// Compares two executions position by position along their live branches.
pub fn diff(
    a: &[Checkpoint],
    a_spans: &[Span],
    b: &[Checkpoint],
    b_spans: &[Span],
) -> Vec<StepDiff> {
    // A position is a step's journal key when it has one (steps nested in steps, keyed
    // steps), else its seq; positions come in the order the first execution recorded them.
    let position = |c: &Checkpoint| c.key.clone().unwrap_or_else(|| c.seq.to_string());
    let steps = |h: &[Checkpoint]| -> Vec<(String, Checkpoint)> {
        h.iter()
            .filter(|c| c.kind.is_step())
            .map(|c| (position(c), c.clone()))
            .collect()
    };
    let (sa, sb) = (steps(a), steps(b));
    let mut order: Vec<String> = Vec::new();
    for (p, _) in sa.iter().chain(sb.iter()) {
        if !order.contains(p) {
            order.push(p.clone());
        }
    }
    let find = |v: &[(String, Checkpoint)], p: &str| {
        v.iter().rev().find(|(q, _)| q == p).map(|(_, c)| c.clone())
    };
    order
        .into_iter()
        .map(|pos| {
            let (ca, cb) = (find(&sa, &pos), find(&sb, &pos));
            let (pa, pb) = (
                ca.as_ref().and_then(|c| span_of(a_spans, c)),
                cb.as_ref().and_then(|c| span_of(b_spans, c)),
            );
            StepDiff {
                seq: ca.as_ref().or(cb.as_ref()).map_or(0, |c| c.seq),
                position: pos,
                name_a: ca.as_ref().map(|c| c.name.clone()),
                name_b: cb.as_ref().map(|c| c.name.clone()),
                output_differs: match (&ca, &cb) {
                    (Some(x), Some(y)) => x.checksum != y.checksum,
                    _ => true,
                },
                input_differs: match (&ca, &cb) {
                    (Some(x), Some(y)) => input_of(x, pa) != input_of(y, pb),
                    _ => true,
                },
                duration_ns_a: pa.map(Span::duration_ns),
                duration_ns_b: pb.map(Span::duration_ns),
                tokens_a: pa.and_then(tokens),
                tokens_b: pb.and_then(tokens),
                cost_a: pa.and_then(cost),
                cost_b: pb.and_then(cost),
            }
        })
        .collect()
}

/// The hash of an LLM or tool request in canonical form: the JSON of the fields that decide
/// the answer (provider, model, messages, tools, parameters — never headers, ids or
/// timestamps), with object keys sorted, hashed with blake3.
pub fn request_hash(request: &serde_json::Value) -> String {
    // serde_json's map keeps keys sorted, so this text is canonical.
    crate::hex(blake3::hash(request.to_string().as_bytes()).as_bytes())
}
