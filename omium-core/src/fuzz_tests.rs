//! Structured fuzzing, on the stable toolchain, of every decoder that reads data from outside
//! the process: records and chunks (from disk, a peer, a daemon client), YAML policy and
//! workflow documents, CEL conditions, and `omium serve` request bodies. proptest feeds each
//! arbitrary and mutated input; the property is that the decoder answers (a value or a named
//! error) and never panics, aborts or allocates without bound.
//!
//! `make test` runs a short pass (each test's own number of cases); `make fuzz` runs the same
//! tests long (`PROPTEST_CASES`). Every failure proptest finds is shrunk to a minimal input and
//! becomes a plain regression test at the bottom of this file. Numbers: `docs/testing.md`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use ulid::Ulid;

use crate::blob::{decode_chunk, ChunkRef, Manifest, MAX_CHUNK_BYTES};
use crate::sync::{check_records, Bundle, Chunk, Pulled, SyncBatch, Synced};
use crate::{AuditEntry, Checkpoint, ChunkParams, Execution, StateRef, Status, Store};
use omium_storage::codec;

/// Runs `test` over `strategy`: `short` cases, or `PROPTEST_CASES` when set (`make fuzz`).
/// Prints how many cases ran, for `docs/testing.md`.
fn fuzz<S: Strategy>(
    name: &str,
    short: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(short);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    if let Err(e) = runner.run(&strategy, test) {
        panic!("fuzz {name}: {e}");
    }
    eprintln!(
        "fuzz {name}: {cases} cases, no failure, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// `base` with some bytes overwritten, inserted or removed, and maybe cut short.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = base.len().max(1);
    (
        proptest::collection::vec((0..n, any::<u8>(), 0..3u8), 1..6),
        proptest::option::of(0..n + 1),
    )
        .prop_map(move |(edits, cut)| {
            let mut b = base.clone();
            for (at, byte, how) in edits {
                let at = at.min(b.len());
                match how {
                    0 if at < b.len() => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ if at < b.len() => {
                        b.remove(at);
                    }
                    _ => b.push(byte),
                }
            }
            if let Some(c) = cut {
                b.truncate(c);
            }
            b
        })
}

fn sample_execution() -> Execution {
    Execution {
        id: "cust-42".into(),
        workflow: "onboarding".into(),
        tenant: "default".into(),
        status: Status::Running,
        head: None,
        error: Some("credit bureau timeout".into()),
        attempts: 2,
        lease: None,
        labels: BTreeMap::from([("team".into(), "risk".into())]),
        created_at_ms: 1_795_754_658_123,
        updated_at_ms: 1_795_754_659_000,
        next_global_seq: 4,
        checkpoint_count: 3,
        has_input: true,
        has_output: false,
    }
}

fn sample_checkpoint(parent: Option<Ulid>, state: StateRef, raw: &[u8]) -> Checkpoint {
    Checkpoint {
        id: Ulid::new(),
        execution_id: "cust-42".into(),
        agent: "kyc_agent".into(),
        name: "kyc_doc_validated".into(),
        kind: Default::default(),
        parent,
        seq: 1,
        global_seq: 2,
        key: Some("k".into()),
        state,
        checksum: *blake3::hash(raw).as_bytes(),
        raw_size: raw.len() as u64,
        stored_size: raw.len() as u64,
        checks: Default::default(),
        metadata: BTreeMap::from([("model".into(), "gpt".into())]),
        created_at_ms: 1_795_754_658_123,
    }
}

fn sample_records() -> (Execution, Vec<Checkpoint>) {
    let a = sample_checkpoint(None, StateRef::Inline(b"verified".to_vec()), b"verified");
    let chunked = StateRef::Chunked(Manifest {
        params: ChunkParams::default(),
        chunks: vec![
            ChunkRef {
                hash: [3; 32],
                len: 5000,
            },
            ChunkRef {
                hash: [4; 32],
                len: 3000,
            },
        ],
    });
    let mut b = sample_checkpoint(Some(a.id), chunked, &[0; 8000]);
    b.raw_size = 8000;
    let mut e = sample_execution();
    e.head = Some(b.id);
    (e, vec![a, b])
}

/// Decodes `bytes` as every record type a store reads from disk or a peer: none may panic, and
/// whatever decodes re-encodes to a record that decodes to the same value.
fn decode_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    fn one<T>(bytes: &[u8]) -> Result<(), TestCaseError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if let Ok(v) = codec::decode::<T>("fuzzed record", &|| "k".into(), bytes) {
            let again: T = codec::decode("re-encoded record", &|| "k".into(), &codec::encode(&v))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, v);
        }
        Ok(())
    }
    one::<Checkpoint>(bytes)?;
    one::<Execution>(bytes)?;
    one::<AuditEntry>(bytes)?;
    one::<SyncBatch>(bytes)?;
    one::<Synced>(bytes)?;
    one::<Vec<Checkpoint>>(bytes)?;
    // A pull's answer: what decodes is then checked as the pulling store checks it.
    if let Ok(p) = codec::decode::<Pulled>("fuzzed pull", &|| "k".into(), bytes) {
        let _ = check_records(
            &p.synced.execution,
            &p.checkpoints,
            true,
            "pulled checkpoint",
        );
    }
    if let Ok(b) = codec::decode::<SyncBatch>("fuzzed push", &|| "k".into(), bytes) {
        let _ = crate::sync::verify_chunks(&b.chunks);
        for bundle in &b.bundles {
            let _ = check_records(&bundle.execution, &bundle.checkpoints, false, "pushed");
        }
    }
    Ok(())
}

#[test]
fn records_of_arbitrary_bytes_decode_or_are_refused() {
    let versioned = (0..3u8, bytes(600)).prop_map(|(v, mut b)| {
        b.insert(0, v);
        b
    });
    fuzz("records/arbitrary", 3000, versioned, |b| decode_all(&b));
}

#[test]
fn mutated_records_decode_or_are_refused() {
    let (e, cs) = sample_records();
    let batch = SyncBatch {
        chunks: vec![Chunk {
            hash: [3; 32],
            len: 5000,
            stored: {
                let mut s = vec![1u8];
                s.extend(zstd::bulk::compress(&[7u8; 5000], 3).unwrap());
                s
            },
        }],
        external: vec![[4; 32]],
        bundles: vec![Bundle {
            store_id: "s1".into(),
            host: "h".into(),
            base: None,
            execution: e.clone(),
            input: Some(b"in".to_vec()),
            output: None,
            checkpoints: cs.clone(),
            lease_ms: 5,
            epoch: 2,
        }],
        at_ms: 9,
    };
    let samples = vec![
        codec::encode(&cs[0]),
        codec::encode(&cs[1]),
        codec::encode(&e),
        codec::encode(&batch),
        codec::encode(&cs),
    ];
    let strategy = proptest::sample::select(samples).prop_flat_map(mutated);
    fuzz("records/mutated", 3000, strategy, |b| decode_all(&b));
}

#[test]
fn chunks_decode_within_their_recorded_length() {
    let raw = bytes(3000);
    let strategy = (raw, 0..5u8, any::<u32>(), any::<bool>(), bytes(40)).prop_map(
        |(raw, codec_byte, len, honest, noise)| {
            let mut stored = vec![codec_byte];
            match codec_byte {
                1 => stored.extend(zstd::bulk::compress(&raw, 1).unwrap()),
                2 => stored.extend(lz4::block::compress(&raw, None, false).unwrap()),
                _ => stored.extend(&raw),
            }
            stored.extend(noise);
            let len = if honest { raw.len() } else { len as usize };
            (stored, len)
        },
    );
    fuzz("chunks", 2000, strategy, |(stored, len)| {
        if let Ok(data) = decode_chunk(&stored, len) {
            prop_assert_eq!(data.len(), len);
            prop_assert!(len <= MAX_CHUNK_BYTES);
        }
        Ok(())
    });
}

/// Pieces of YAML's grammar, so that generated documents reach past the first token.
fn yaml_document() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("- "),
        Just("["),
        Just("]"),
        Just("{"),
        Just("}"),
        Just(": "),
        Just(", "),
        Just("&a "),
        Just("*a"),
        Just("&b "),
        Just("*b"),
        Just("<<: "),
        Just("? "),
        Just("\n"),
        Just("\n  "),
        Just("  "),
        Just("rules"),
        Just("trigger"),
        Just("actions"),
        Just("retry"),
        Just("max_attempts"),
        Just("timeout_error"),
        Just("steps"),
        Just("agents"),
        Just("name"),
        Just("id"),
        Just("3"),
        Just("-1e309"),
        Just("'x'"),
        Just("\"\\u0000\""),
        Just("!!str "),
        Just("!!binary "),
        Just("|\n  "),
        Just("# c\n"),
        Just("---\n"),
        Just("..."),
        Just("%YAML 1.2\n"),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..120).prop_map(|p| p.concat()),
        ".{0,300}",
    ]
}

#[test]
fn yaml_policies_and_workflow_specs_parse_or_are_refused() {
    fuzz("yaml", 4000, yaml_document(), |text| {
        let _ = crate::policy::parse(&text, Some("fuzz.yaml"));
        let _ = crate::workflow::spec::parse(&text, Some("fuzz.yaml"));
        Ok(())
    });
}

fn cel_source() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("args"),
        Just("kwargs"),
        Just("result"),
        Just("."),
        Just("[0]"),
        Just("["),
        Just("]"),
        Just("("),
        Just(")"),
        Just("{"),
        Just("}"),
        Just(":"),
        Just(","),
        Just(" && "),
        Just(" || "),
        Just("!"),
        Just("-"),
        Just(" + "),
        Just(" * "),
        Just(" / "),
        Just(" % "),
        Just(" == "),
        Just(" < "),
        Just(" in "),
        Just(" ? "),
        Just("size("),
        Just("has("),
        Just("matches("),
        Just(".exists(x, "),
        Just(".map(x, "),
        Just("x"),
        Just("1"),
        Just("9223372036854775807"),
        Just("1.5"),
        Just("'a'"),
        Just("\"(a+)+$\""),
        Just("b'\\xff'"),
        Just("true"),
        Just("null"),
        Just("int("),
        Just("string("),
        Just("duration('1s')"),
        Just("timestamp('2026-01-01T00:00:00Z')"),
    ];
    prop_oneof![
        proptest::collection::vec(token, 0..40).prop_map(|t| t.concat()),
        ".{0,120}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn cel_conditions_compile_and_evaluate_or_are_refused() {
    let strategy = (cel_source(), json_value(), json_value());
    fuzz("cel", 3000, strategy, |(source, args, result)| {
        if let Ok(c) = crate::expr::Condition::compile(&source) {
            let _ = c.evaluate(&[
                ("args", json!([args])),
                ("kwargs", json!({})),
                ("result", result),
            ]);
        }
        Ok(())
    });
}

/// The store-level methods of `omium serve`, as a client would send them.
const METHODS: &[&str] = &[
    "execution",
    "executions",
    "resumable",
    "execution_input",
    "history",
    "checkpoints",
    "branch",
    "checkpoint",
    "read_state",
    "rollback",
    "fork",
    "verify",
    "audit_head",
    "delete_execution",
    "failures",
    "recovery_metrics",
    "resume",
    "apply_policy",
    "policy_versions",
    "policy_version",
    "policy_defaults",
    "spans",
    "record_spans",
];

#[test]
fn serve_request_bodies_are_answered_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = store
        .begin("cust-42", crate::BeginOptions::default())
        .unwrap();
    run.step("kyc", || Ok::<_, crate::Error>(b"verified".to_vec()))
        .unwrap();
    drop(run);
    let names = prop_oneof![
        Just(json!("execution_id")),
        Just(json!("checkpoint_id")),
        Just(json!("to")),
        Just(json!("at")),
        Just(json!("state")),
        Just(json!("text")),
        Just(json!("scope")),
        Just(json!("tenant")),
        Just(json!("expect_head")),
        Just(json!("spans")),
        Just(json!("global_seq")),
    ];
    let values = prop_oneof![
        Just(json!("cust-42")),
        Just(json!("kyc")),
        Just(json!("last-consistent")),
        Just(json!("global")),
        Just(json!("1:00")),
        Just(json!("rules: [")),
        json_value(),
    ];
    let body = prop_oneof![
        proptest::collection::vec((names, values), 0..5).prop_map(|kv| {
            Value::Object(
                kv.into_iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), v))
                    .collect(),
            )
        }),
        json_value(),
    ];
    let strategy = (proptest::sample::select(METHODS), body);
    fuzz("serve", 600, strategy, |(method, body)| {
        if let Ok(args) = crate::serve::Args::new(method, body) {
            let _ = crate::serve::call(&store, method, args);
        }
        Ok(())
    });
    assert!(store.verify(None).unwrap().ok());
}
