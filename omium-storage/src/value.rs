//! Stored states as JSON, for people and tools: `omium checkpoint ID --value`, `omium show`.
//!
//! Every binding records the name of the codec a state was encoded with: in the checkpoint's
//! metadata and, for an execution's input and output, in its labels (both under
//! [`CODEC_KEY`]). msgpack is the default in every binding, so a state written from Python
//! decodes in Node and here, and the other way round. This module reads the two built-in
//! wire formats into a JSON view; it never runs anything the data names. Values JSON lacks are
//! shown the way the Python JSON codec writes them: `{"__omium__": tag, "v": payload}` (Python's
//! tagged types, `bytes` in base64, msgpack timestamps as `datetime`).

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};
use crate::{Checkpoint, Execution, Store};

/// The metadata key (checkpoints) and label (executions' input and output) naming the codec.
pub const CODEC_KEY: &str = "omium.codec";

/// Deepest nesting of a state this view decodes (the bindings' own decoders bound theirs).
const MAX_DEPTH: usize = 256;
/// The Python package's extension type for tagged values: msgpack of `[tag, payload]`.
const EXT_TAGGED: i8 = 1;
/// msgpack's timestamp extension (Node writes Dates with it).
const EXT_TIMESTAMP: i8 = -1;

/// The codec recorded with a checkpoint's state, if the binding that wrote it recorded one.
pub fn checkpoint_codec(c: &Checkpoint) -> Option<&str> {
    c.metadata.get(CODEC_KEY).map(String::as_str)
}

/// The codec recorded for an execution's input and output.
pub fn execution_codec(e: &Execution) -> Option<&str> {
    e.labels.get(CODEC_KEY).map(String::as_str)
}

/// Decodes `bytes` written with `codec` into JSON. `what` names the state in errors.
pub fn state_json(codec: Option<&str>, bytes: &[u8], what: &str) -> Result<Value> {
    let decode_error = |detail: String| Error::Decode {
        what: "state",
        key: what.to_string(),
        detail,
    };
    let Some(codec) = codec else {
        return Err(decode_error(
            "its codec is not recorded (written before codecs were recorded, or by a program \
             that did not say); read the raw bytes with `omium checkpoint ID --state`"
                .into(),
        ));
    };
    // Zero bytes are a step that returned nothing (`undefined` in Node).
    if bytes.is_empty() && codec != "pickle" {
        return Ok(Value::Null);
    }
    match codec {
        "msgpack" => {
            let mut rd = bytes;
            let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
                .map_err(|e| decode_error(format!("not msgpack: {e}")))?;
            if !rd.is_empty() {
                return Err(decode_error(format!(
                    "not msgpack: {} byte(s) after the value",
                    rd.len()
                )));
            }
            to_json(v, 0).map_err(decode_error)
        }
        "json" => serde_json::from_slice(bytes).map_err(|e| decode_error(format!("not JSON: {e}"))),
        "pickle" => Err(decode_error(
            "pickle states are Python objects; load them in Python (CheckpointInfo.load())".into(),
        )),
        other => Err(decode_error(format!(
            "it was recorded with the codec {other:?}, which only the program that wrote it \
             knows; the built-in codecs are \"msgpack\" and \"json\""
        ))),
    }
}

/// The bytes of a state a person wrote as JSON (`omium fork --state-file`, `omium resume
/// --state-file`), in `codec`, the execution's: msgpack gets the value (with the tagged form of
/// [`state_json`] turned back into the bytes and tagged values the bindings read), json gets the
/// text as it is (once it parses). With no codec recorded the text is stored as it is.
pub fn encode_state(codec: Option<&str>, text: &[u8], what: &str) -> Result<Vec<u8>> {
    let invalid = |detail: String| Error::InvalidArgument {
        what: "state",
        detail: format!("{what}: {detail}"),
    };
    let parse = || {
        serde_json::from_slice::<Value>(text).map_err(|e| {
            invalid(format!(
                "the execution's states are {}, so the new state must be JSON: {e}",
                codec.unwrap_or("json")
            ))
        })
    };
    match codec {
        None => Ok(text.to_vec()),
        Some("json") => parse().map(|_| text.to_vec()),
        Some("msgpack") => {
            let v = from_json(parse()?, 0).map_err(invalid)?;
            let mut out = Vec::with_capacity(text.len());
            rmpv::encode::write_value(&mut out, &v).expect("msgpack encodes into a Vec");
            Ok(out)
        }
        Some(other) => Err(invalid(format!(
            "the execution's states are in the codec {other:?}, which only the program that \
             wrote them knows; edit the state from that program"
        ))),
    }
}

fn from_json(v: Value, depth: usize) -> std::result::Result<rmpv::Value, String> {
    use rmpv::Value as M;
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match v {
        Value::Null => M::Nil,
        Value::Bool(b) => M::Boolean(b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => M::from(u),
            (None, Some(i), _) => M::from(i),
            (None, None, Some(f)) => M::F64(f),
            _ => return Err(format!("the number {n} is out of range")),
        },
        Value::String(s) => M::from(s),
        Value::Array(items) => M::Array(
            items
                .into_iter()
                .map(|i| from_json(i, depth + 1))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Value::Object(mut m) => {
            let tag = match (m.len(), m.get("__omium__")) {
                (2, Some(Value::String(t))) if m.contains_key("v") => Some(t.clone()),
                _ => None,
            };
            match tag {
                Some(tag) if tag == "bytes" => {
                    let b64 = m.remove("v").and_then(|v| v.as_str().map(str::to_string));
                    let bytes = b64
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .ok_or_else(|| "a \"bytes\" value that is not base64".to_string())?;
                    M::Binary(bytes)
                }
                Some(tag) => {
                    let payload = from_json(m.remove("v").expect("checked"), depth + 1)?;
                    let mut inner = Vec::new();
                    rmpv::encode::write_value(&mut inner, &M::Array(vec![M::from(tag), payload]))
                        .expect("msgpack encodes into a Vec");
                    M::Ext(EXT_TAGGED, inner)
                }
                None => M::Map(
                    m.into_iter()
                        .map(|(k, v)| Ok((M::from(k), from_json(v, depth + 1)?)))
                        .collect::<std::result::Result<_, String>>()?,
                ),
            }
        }
    })
}

impl Store {
    /// A checkpoint's state, verified and decoded by its recorded codec, as JSON.
    pub fn state_value(&self, c: &Checkpoint) -> Result<Value> {
        let bytes = self.read_state(c)?;
        state_json(
            checkpoint_codec(c),
            &bytes,
            &format!("checkpoint {} of {:?}", c.id, c.execution_id),
        )
    }
}

fn tagged(tag: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert("__omium__".into(), Value::String(tag.into()));
    m.insert("v".into(), v);
    Value::Object(m)
}

fn bytes_value(b: &[u8]) -> Value {
    tagged(
        "bytes",
        Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    )
}

fn to_json(v: rmpv::Value, depth: usize) -> std::result::Result<Value, String> {
    use rmpv::Value as M;
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::Number(u.into()),
            (None, Some(s)) => Value::Number(s.into()),
            (None, None) => return Err("an integer out of range".into()),
        },
        M::F32(f) => float(f64::from(f)),
        M::F64(f) => float(f),
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => return Err("a string that is not UTF-8".into()),
        },
        M::Binary(b) => bytes_value(&b),
        M::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| to_json(i, depth + 1))
                .collect::<std::result::Result<_, _>>()?,
        ),
        M::Map(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let key = match k {
                    M::String(s) => s
                        .into_str()
                        .ok_or_else(|| "a map key that is not UTF-8".to_string())?,
                    other => to_json(other, depth + 1)?.to_string(),
                };
                m.insert(key, to_json(v, depth + 1)?);
            }
            Value::Object(m)
        }
        M::Ext(EXT_TAGGED, data) => {
            let mut rd = &data[..];
            let inner = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH - depth)
                .map_err(|e| format!("a tagged value that is not msgpack: {e}"))?;
            match to_json(inner, depth + 1)? {
                Value::Array(mut a) if a.len() == 2 && a[0].is_string() => {
                    let payload = a.pop().expect("two items");
                    let tag = a.pop().expect("two items");
                    tagged(tag.as_str().expect("checked"), payload)
                }
                _ => return Err("a malformed tagged value (expected [tag, payload])".into()),
            }
        }
        M::Ext(EXT_TIMESTAMP, data) => tagged("datetime", Value::String(timestamp(&data)?)),
        M::Ext(t, data) => tagged(
            "ext",
            Value::Array(vec![Value::from(t), bytes_value(&data)]),
        ),
    })
}

fn float(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| tagged("float", Value::String(f.to_string())))
}

/// msgpack's timestamp extension (32, 64 or 96 bits) as RFC 3339 in UTC.
fn timestamp(data: &[u8]) -> std::result::Result<String, String> {
    let (secs, nanos): (i64, u32) = match data.len() {
        4 => (
            i64::from(u32::from_be_bytes(data.try_into().expect("4"))),
            0,
        ),
        8 => {
            let x = u64::from_be_bytes(data.try_into().expect("8"));
            ((x & 0x3_ffff_ffff) as i64, (x >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..].try_into().expect("8")),
            u32::from_be_bytes(data[..4].try_into().expect("4")),
        ),
        n => return Err(format!("a timestamp of {n} bytes (expected 4, 8 or 12)")),
    };
    if nanos >= 1_000_000_000 {
        return Err("a timestamp with more than a second of nanoseconds".into());
    }
    let ms = secs
        .checked_mul(1000)
        .and_then(|s| s.checked_add(i64::from(nanos / 1_000_000)))
        .ok_or_else(|| "a timestamp out of range".to_string())?;
    Ok(crate::rfc3339_ms(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pack(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn msgpack_and_json_states_decode_to_the_same_view() {
        use rmpv::Value as M;
        let tagged_inner = pack(&M::Array(vec![M::from("decimal"), M::from("1.10")]));
        let v = M::Map(vec![
            (M::from("n"), M::from(3)),
            (M::from("big"), M::from(u64::MAX)),
            (M::from("neg"), M::from(-5)),
            (M::from("f"), M::F64(1.5)),
            (M::from("s"), M::from("é")),
            (M::from("b"), M::Binary(vec![0, 1, 2])),
            (M::from("l"), M::Array(vec![M::Nil, M::Boolean(true)])),
            (M::from(7), M::from("int key")),
            (M::from("d"), M::Ext(EXT_TAGGED, tagged_inner)),
            (
                M::from("t"),
                M::Ext(EXT_TIMESTAMP, 1_700_000_000u32.to_be_bytes().to_vec()),
            ),
        ]);
        let got = state_json(Some("msgpack"), &pack(&v), "test").unwrap();
        assert_eq!(
            got,
            json!({"n": 3, "big": u64::MAX, "neg": -5, "f": 1.5, "s": "é",
                "b": {"__omium__": "bytes", "v": "AAEC"}, "l": [null, true], "7": "int key",
                "d": {"__omium__": "decimal", "v": "1.10"},
                "t": {"__omium__": "datetime", "v": "2023-11-14T22:13:20.000Z"}})
        );
        assert_eq!(
            state_json(Some("json"), br#"{"a":[1,"x"]}"#, "test").unwrap(),
            json!({"a": [1, "x"]})
        );
        assert_eq!(
            state_json(Some("msgpack"), b"", "test").unwrap(),
            Value::Null
        );
    }

    #[test]
    fn bad_states_are_errors_that_say_why() {
        let err =
            |codec: Option<&str>, b: &[u8]| state_json(codec, b, "cp").unwrap_err().to_string();
        assert!(
            err(None, b"\x01").contains("codec is not recorded"),
            "{}",
            err(None, b"\x01")
        );
        assert!(err(Some("pickle"), b"\x80").contains("Python objects"));
        assert!(err(Some("mine"), b"x").contains("\"mine\""));
        // Truncated, trailing bytes, too deep, a malformed tagged value, bad timestamp.
        assert!(err(Some("msgpack"), b"\x92\x01").contains("not msgpack"));
        assert!(err(Some("msgpack"), b"\x01\x02").contains("after the value"));
        let deep = [vec![0x91u8; 100_000], vec![0xc0]].concat();
        assert!(
            err(Some("msgpack"), &deep).contains("msgpack"),
            "{}",
            err(Some("msgpack"), &deep)
        );
        let bad_tag = pack(&rmpv::Value::Ext(EXT_TAGGED, pack(&rmpv::Value::from(1))));
        assert!(err(Some("msgpack"), &bad_tag).contains("malformed tagged value"));
        let bad_ts = pack(&rmpv::Value::Ext(EXT_TIMESTAMP, vec![1, 2, 3]));
        assert!(err(Some("msgpack"), &bad_ts).contains("timestamp of 3 bytes"));
        assert!(err(Some("json"), b"{").contains("not JSON"));
    }

    #[test]
    fn a_state_written_as_json_is_encoded_in_the_executions_codec_and_reads_back() {
        let text = br#"{"score": 640, "raw": {"__omium__": "bytes", "v": "AAE="},
            "when": {"__omium__": "datetime", "v": "2026-12-03T10:00:00+00:00"}, "l": [1.5, -2, null]}"#;
        let packed = encode_state(Some("msgpack"), text, "fork").unwrap();
        assert_eq!(
            state_json(Some("msgpack"), &packed, "fork").unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
        // bytes are msgpack bin, other tags the tagged extension the bindings read.
        let v = rmpv::decode::read_value(&mut &packed[..]).unwrap();
        let field = |k: &str| {
            v.as_map()
                .unwrap()
                .iter()
                .find(|(n, _)| n.as_str() == Some(k))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(field("raw"), rmpv::Value::Binary(vec![0, 1]));
        assert!(matches!(field("when"), rmpv::Value::Ext(EXT_TAGGED, _)));
        assert_eq!(encode_state(Some("json"), b"[1]", "fork").unwrap(), b"[1]");
        assert_eq!(
            encode_state(None, b"raw \xff", "fork").unwrap(),
            b"raw \xff"
        );
        let err =
            |c: Option<&str>, t: &[u8]| encode_state(c, t, "omium fork").unwrap_err().to_string();
        assert!(err(Some("msgpack"), b"{").contains(
            "omium fork: the execution's states are msgpack, so the new state must be JSON"
        ));
        assert!(err(Some("json"), b"nope").contains("must be JSON"));
        assert!(err(Some("pickle"), b"{}").contains("edit the state from that program"));
        assert!(
            err(Some("msgpack"), br#"{"__omium__": "bytes", "v": "%%"}"#).contains("not base64")
        );
    }
}
