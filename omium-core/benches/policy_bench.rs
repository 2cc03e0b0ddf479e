//! Cost of one policy decision (design target: ≤ 1 µs), against a hand-written `match` on the
//! failure type in the same run (the cheapest decision code can make).
//!
//! cargo bench -p omium-core --bench policy_bench

use std::hint::black_box;
use std::time::Instant;

use omium_core::policy::{self, Compiled, Failure, Trigger};

const POLICY: &str = r#"
policies:
  - trigger: "hallucination_detected"
    action: "pause_and_notify"
    auto_fix: true
    suggested_fix: "update_prompt_with_constraint"
  - trigger: "timeout_error"
    action: "auto_retry"
    max_retries: 3
    backoff: exponential
  - trigger: "consensus_violation"
    action: "rollback_and_inspect"
    notify: ["devops_team"]
rules:
  - trigger: rate_limit_error
    when: "failure.attempt < 3 && failure.step != 'billing'"
    actions: [retry]
  - trigger: any
    actions: [notify, fail]
"#;

/// ns per call of `f`, median of 7 timed rounds of `n` calls.
fn time(n: u32, mut f: impl FnMut() -> usize) -> f64 {
    let mut rounds = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let mut acc = 0;
        for _ in 0..n {
            acc += f();
        }
        black_box(acc);
        rounds.push(t.elapsed());
    }
    rounds.sort();
    rounds[3].as_nanos() as f64 / n as f64
}

fn baseline(kind: Trigger) -> usize {
    match kind {
        Trigger::HallucinationDetected => 0,
        Trigger::TimeoutError => 1,
        Trigger::ConsensusViolation => 2,
        Trigger::RateLimitError => 3,
        _ => 4,
    }
}

fn main() {
    let p = policy::parse(POLICY, None).unwrap();
    let c = Compiled::new(&p).unwrap();
    let cases = [
        (
            "first rule, no matcher (timeout_error)",
            Trigger::TimeoutError,
            1_000_000,
        ),
        (
            "catch-all after the table (llm_error)",
            Trigger::LlmError,
            1_000_000,
        ),
        (
            "rule with a CEL matcher (rate_limit_error)",
            Trigger::RateLimitError,
            50_000,
        ),
    ];
    println!("| decision | Omium ns | baseline `match` ns | Omium − baseline ns | target |");
    println!("|---|---|---|---|---|");
    for (name, kind, n) in cases {
        let mut f = Failure::new(kind);
        f.step = "call_llm".into();
        f.workflow = "onboarding".into();
        let omium = time(n, || {
            c.decide(black_box(&f))
                .unwrap()
                .map_or(0, |r| r.actions.len())
        });
        let base = time(n, || baseline(black_box(kind)));
        let verdict = if omium <= 1000.0 {
            "met (≤ 1 µs)"
        } else {
            "missed (> 1 µs)"
        };
        println!(
            "| {name} | {omium:.1} | {base:.1} | {:.1} | {verdict} |",
            omium - base
        );
    }
}
