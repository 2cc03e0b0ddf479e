//! Delivering an alert notice: Slack incoming webhooks, PagerDuty Events API v2, email over
//! SMTP (STARTTLS or implicit TLS; plain only to loopback), and Omium's own JSON to signed
//! webhooks. Every destination host passes the same check as policy webhooks (public
//! addresses only unless the operator allows the host: `OMIUM_WEBHOOK_ALLOW`).

use std::collections::BTreeMap;
use std::time::Duration;

use omium_spec::alerts::{Channel, EmailChannel, Rule, SmtpSecurity};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::recovery::{allowed_hosts, host_target, post_signed, WEBHOOK_SECRET_ENV};

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
    Acknowledged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
            Status::Acknowledged => "acknowledged",
        }
    }
}

/// One notification of one alert (a rule and, with `by`, one group).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    /// Always `omium.alert`: receivers can tell our bodies apart.
    pub kind: &'static str,
    pub status: Status,
    /// A firing alert's reminder (`repeat:`), not its first notice.
    pub repeat: bool,
    pub rule: String,
    pub summary: String,
    pub metric: String,
    pub op: &'static str,
    pub threshold: f64,
    /// The metric's value at the last evaluation (null when there was nothing to compute).
    pub value: Option<f64>,
    pub window: String,
    pub severity: &'static str,
    /// The group's dimension values (`by:`); empty for an alert over the whole rule.
    pub group: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The same for every notice of one alert episode's alert: PagerDuty's dedup key.
    pub dedup_key: String,
    /// When the alert started firing, and when it resolved.
    pub started_at: String,
    pub resolved_at: Option<String>,
    /// When this notice was made.
    pub at: String,
    /// The store whose executions the alert is about.
    pub store: String,
    /// Who acknowledged it, for an acknowledgement.
    pub by: Option<String>,
}

impl Notice {
    pub fn new(rule: &Rule, status: Status, repeat: bool) -> Notice {
        Notice {
            kind: "omium.alert",
            status,
            repeat,
            rule: rule.name.clone(),
            summary: rule.summary.clone().unwrap_or_else(|| rule.describe()),
            metric: rule.metric.clone(),
            op: rule.op.as_str(),
            threshold: rule.threshold,
            value: None,
            window: rule.window.to_string(),
            severity: rule.severity.as_str(),
            group: BTreeMap::new(),
            labels: rule.labels.clone(),
            dedup_key: String::new(),
            started_at: String::new(),
            resolved_at: None,
            at: String::new(),
            store: String::new(),
            by: None,
        }
    }

    /// One line for people: `[FIRING critical] checkout-success: success_rate < 0.95 over 15m
    /// (workflow=checkout) — value 0.5`.
    pub fn headline(&self) -> String {
        let mut s = format!(
            "[{}{} {}] {}",
            self.status.as_str().to_uppercase(),
            if self.repeat { " again" } else { "" },
            self.severity,
            self.rule
        );
        if !self.group.is_empty() {
            let g: Vec<String> = self.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!(" [{}]", g.join(", ")));
        }
        s.push_str(&format!(": {}", self.summary));
        if let Some(v) = self.value {
            s.push_str(&format!(" (value {})", round(v)));
        }
        s
    }

    /// The notice as text: the headline and every field, for email and Slack.
    pub fn text(&self) -> String {
        let mut lines = vec![self.headline(), String::new()];
        let mut field = |k: &str, v: String| lines.push(format!("{k}: {v}"));
        field(
            "condition",
            format!(
                "{} {} {} over {}",
                self.metric, self.op, self.threshold, self.window
            ),
        );
        field(
            "value",
            self.value
                .map_or("no data".into(), |v| round(v).to_string()),
        );
        field("started", self.started_at.clone());
        if let Some(r) = &self.resolved_at {
            field("resolved", r.clone());
        }
        if let Some(b) = &self.by {
            field("acknowledged by", b.clone());
        }
        for (k, v) in &self.labels {
            field(k, v.clone());
        }
        field("store", self.store.clone());
        field("dedup key", self.dedup_key.clone());
        lines.join("\n")
    }
}

fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// A Slack incoming-webhook message: `text` (the fallback and notification line) and blocks.
pub fn slack_body(n: &Notice) -> Value {
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Condition*\n{} {} {} over {}", n.metric, n.op, n.threshold, n.window)}),
        json!({"type": "mrkdwn", "text": format!("*Value*\n{}", n.value.map_or("no data".into(), |v| round(v).to_string()))}),
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", n.severity)}),
        json!({"type": "mrkdwn", "text": format!("*Since*\n{}", n.started_at)}),
    ];
    for (k, v) in n.group.iter().chain(&n.labels) {
        if fields.len() < 10 {
            fields.push(json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}));
        }
    }
    json!({
        "text": n.headline(),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", n.headline())}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("omium store {} · {}", n.store, n.dedup_key)}]},
        ],
    })
}

/// A PagerDuty Events API v2 event: `trigger` with a payload, `acknowledge` and `resolve` with
/// the dedup key alone.
pub fn pagerduty_body(n: &Notice, routing_key: &str) -> Value {
    let action = match n.status {
        Status::Firing => "trigger",
        Status::Acknowledged => "acknowledge",
        Status::Resolved => "resolve",
    };
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": n.dedup_key,
    });
    if n.status == Status::Firing {
        let summary: String = n.headline().chars().take(1024).collect();
        body["payload"] = json!({
            "summary": summary,
            "source": format!("omium:{}", n.store),
            "severity": n.severity,
            "timestamp": n.at,
            "component": n.group.get("workflow").cloned().unwrap_or_else(|| "omium".into()),
            "group": n.rule,
            "class": n.metric,
            "custom_details": {
                "condition": format!("{} {} {} over {}", n.metric, n.op, n.threshold, n.window),
                "value": n.value,
                "group": n.group,
                "labels": n.labels,
                "started_at": n.started_at,
                "repeat": n.repeat,
            },
        });
        body["client"] = json!("Omium");
    }
    body
}

/// Sends `n` through `ch`, saying why not when it could not.
pub fn send(ch: &Channel, n: &Notice) -> Result<(), String> {
    if let Some(s) = &ch.slack {
        return post_signed(
            &s.webhook,
            "application/json",
            &slack_body(n).to_string(),
            None,
        );
    }
    if let Some(pd) = &ch.pagerduty {
        let key = match (&pd.routing_key, &pd.routing_key_env) {
            (Some(k), _) => k.clone(),
            (None, Some(var)) => std::env::var(var)
                .ok()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    format!("failed: the environment variable {var} (the routing key) is not set")
                })?,
            (None, None) => return Err("failed: no routing key".into()),
        };
        return post_signed(
            &pd.url,
            "application/json",
            &pagerduty_body(n, &key).to_string(),
            None,
        );
    }
    if let Some(w) = &ch.webhook {
        let var = w.secret_env.as_deref().unwrap_or(WEBHOOK_SECRET_ENV);
        let secret = std::env::var(var).ok().filter(|s| !s.is_empty());
        let body = serde_json::to_string(n).expect("notices serialize");
        return post_signed(&w.url, "application/json", &body, secret.as_deref());
    }
    if let Some(e) = &ch.email {
        return send_email(e, n);
    }
    Err("failed: the channel has no destination".into())
}

/// The host and port of `smtp` (`host`, `host:port`, `[v6]:port`).
fn host_port(smtp: &str, security: SmtpSecurity) -> Result<(String, u16), String> {
    let default = if security == SmtpSecurity::Tls {
        465
    } else {
        587
    };
    let s = smtp.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| format!("refused: {smtp:?} is not host:port"))?;
        let port = match p.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| format!("refused: bad port in {smtp:?}"))?,
            None => default,
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((
            h.to_string(),
            p.parse()
                .map_err(|_| format!("refused: bad port in {smtp:?}"))?,
        )),
        _ => Ok((s.to_string(), default)),
    }
}

fn send_email(e: &EmailChannel, n: &Notice) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};

    let (host, port) = host_port(&e.smtp, e.security)?;
    host_target(&host, port, &allowed_hosts())?;
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let tls = if e.security == SmtpSecurity::None {
        if !loopback {
            return Err(format!(
                "refused: security: none sends mail in clear text; only to a loopback server, not {host}"
            ));
        }
        Tls::None
    } else {
        crate::install_tls_provider();
        let mut b = TlsParameters::builder(host.clone());
        if let Some(path) = &e.ca_file {
            let pem = std::fs::read(path)
                .map_err(|err| format!("failed: cannot read ca_file {path}: {err}"))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|err| format!("failed: ca_file {path} is not a PEM certificate: {err}"))?;
            b = b.add_root_certificate(cert);
        }
        let params = b
            .build_rustls()
            .map_err(|err| format!("failed: TLS settings: {err}"))?;
        match e.security {
            SmtpSecurity::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        }
    };
    let mut builder = lettre::message::Message::builder()
        .from(
            e.from
                .parse()
                .map_err(|err| format!("failed: from {:?}: {err}", e.from))?,
        )
        .subject(n.headline())
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        builder = builder.to(to
            .parse()
            .map_err(|err| format!("failed: to {to:?}: {err}"))?);
    }
    let msg: Message = builder
        .body(n.text())
        .map_err(|err| format!("failed: building the message: {err}"))?;
    let mut transport = SmtpTransport::builder_dangerous(host.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)));
    if let (Some(u), Some(p)) = (&e.username_env, &e.password_env) {
        let user = std::env::var(u).map_err(|_| format!("failed: {u} is not set"))?;
        let pass = std::env::var(p).map_err(|_| format!("failed: {p} is not set"))?;
        transport = transport.credentials(Credentials::new(user, pass));
    }
    transport
        .build()
        .send(&msg)
        .map(|_| ())
        .map_err(|err| {
            // Say what kind of failure, not the server's words (they could leak what answers
            // behind the address to whoever reads the history).
            if err.is_permanent() {
                "failed: the SMTP server refused the message".to_string()
            } else if err.is_transient() {
                "failed: the SMTP server deferred the message".to_string()
            } else if err.to_string().to_ascii_lowercase().contains("tls") {
                "failed: TLS with the SMTP server failed (STARTTLS not offered, or the certificate is not trusted)".to_string()
            } else {
                "failed: no answer from the SMTP server".to_string()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_addresses() {
        let st = SmtpSecurity::Starttls;
        assert_eq!(
            host_port("mail.example.com", st).unwrap(),
            ("mail.example.com".into(), 587)
        );
        assert_eq!(
            host_port("127.0.0.1:2525", st).unwrap(),
            ("127.0.0.1".into(), 2525)
        );
        assert_eq!(host_port("[::1]:25", st).unwrap(), ("::1".into(), 25));
        assert_eq!(
            host_port("m.example.com", SmtpSecurity::Tls).unwrap().1,
            465
        );
        assert!(host_port("m:x", st).is_err());
    }
}
