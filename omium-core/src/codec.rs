//! The versioned record codec: one version byte, then postcard.
//!
//! Every record type starts at version 1. A reader refuses a version it does not know with
//! `Error::NewerRecord` instead of guessing; when a record changes shape, the old decoder stays
//! here beside the new one so that stores written by older builds keep decoding.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// The record version this build writes.
pub(crate) const RECORD_VERSION: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_VERSION);
    // Serialising our own plain structs into a Vec cannot fail.
    postcard::to_io(value, &mut out).expect("postcard encodes into a Vec");
    out
}

pub(crate) fn decode<T: DeserializeOwned>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct R {
        a: u32,
        b: String,
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
