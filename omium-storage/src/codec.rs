//! The versioned record codec: one version byte, then postcard.
//!
//! Every record type starts at version 1. A reader refuses a version it does not know with
//! `Error::NewerRecord` instead of guessing; when a record changes shape, the old decoder stays
//! here beside the new one so that stores written by older builds keep decoding.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// The record version this build writes.
pub const RECORD_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_VERSION);
    // Serialising our own plain structs into a Vec cannot fail.
    postcard::to_io(value, &mut out).expect("postcard encodes into a Vec");
    out
}

pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    key: &dyn Fn() -> String,
    bytes: &[u8],
) -> Result<T> {
    match bytes.first() {
        None => Err(Error::Decode {
            what,
            key: key(),
            detail: "empty record".into(),
        }),
        Some(&RECORD_VERSION) => postcard::from_bytes(&bytes[1..]).map_err(|e| Error::Decode {
            what,
            key: key(),
            detail: format!("{e} (record is corrupt)"),
        }),
        Some(&v) if v > RECORD_VERSION => Err(Error::NewerRecord {
            what,
            key: key(),
            found: v,
            supported: RECORD_VERSION,
        }),
        Some(&v) => Err(Error::Decode {
            what,
            key: key(),
            detail: format!("unknown record version {v}"),
        }),
    }
}

/// `#[serde(with = "crate::codec::bytes")]` for `Vec<u8>` fields: serde's default treats them
/// as a sequence of numbers, one at a time; as bytes they encode in one go. postcard writes both
/// the same way (length, then the bytes), so records written either way decode either way.
pub mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct R {
        a: u32,
        b: String,
    }

    #[test]
    fn bytes_fields_keep_the_wire_format_of_plain_vecs() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Plain(Vec<u8>);
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Fast(#[serde(with = "super::bytes")] Vec<u8>);
        let data = vec![0u8, 1, 255, 7, 128];
        let plain = postcard::to_allocvec(&Plain(data.clone())).unwrap();
        let fast = postcard::to_allocvec(&Fast(data.clone())).unwrap();
        assert_eq!(plain, fast);
        assert_eq!(postcard::from_bytes::<Fast>(&plain).unwrap().0, data);
    }

    #[test]
    fn round_trip_and_version_checks() {
        let r = R {
            a: 7,
            b: "x".into(),
        };
        let bytes = encode(&r);
        assert_eq!(bytes[0], RECORD_VERSION);
        let back: R = decode("test record", &|| "k".into(), &bytes).unwrap();
        assert_eq!(back, r);

        let mut newer = bytes.clone();
        newer[0] = 9;
        let err = decode::<R>("test record", &|| "k".into(), &newer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test record k was written by a newer Omium (record version 9; this build reads up to 1); upgrade Omium"
        );
        let err = decode::<R>("test record", &|| "k".into(), &[]).unwrap_err();
        assert_eq!(err.code(), "decode");
    }
}
