//! The one wire encoding: a version byte followed by the postcard encoding of
//! the value. Both the TCP runtime's frames and the simulator's trace hash use
//! it, so a message that cannot cross the wire fails in the simulator too.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version byte every encoded value starts with.
pub const WIRE_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty payload (no version byte)")]
    Empty,
    #[error("unsupported wire version {found} (this build speaks version {WIRE_VERSION})")]
    Version { found: u8 },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("{0} trailing byte(s) after the value")]
    Trailing(usize),
    #[error("cannot encode value: {0}")]
    Encode(String),
}

/// Encode `value` as version byte + postcard, appending to `buf`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), WireError> {
    buf.push(WIRE_VERSION);
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(value, taken).map_err(|e| WireError::Encode(e.to_string()))?;
    Ok(())
}

/// Encode `value` as version byte + postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::with_capacity(32);
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Decode a value produced by [`encode`]. Rejects a wrong version, a
/// truncated or malformed payload, and trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version { found: version });
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Ping { seq: u64 },
        Data { origin: u32, payload: Vec<u8> },
    }

    #[test]
    fn round_trip_and_version() {
        let m = Sample::Data { origin: 3, payload: vec![1, 2, 3] };
        let bytes = encode(&m).unwrap();
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), m);
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert_eq!(decode::<Sample>(&wrong), Err(WireError::Version { found: 9 }));
        assert_eq!(decode::<Sample>(&[]), Err(WireError::Empty));
        let mut long = bytes;
        long.push(0);
        assert_eq!(decode::<Sample>(&long), Err(WireError::Trailing(1)));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn every_message_round_trips(seq in any::<u64>(), origin in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            for m in [Sample::Ping { seq }, Sample::Data { origin, payload: payload.clone() }] {
                prop_assert_eq!(decode::<Sample>(&encode(&m).unwrap()).unwrap(), m);
            }
        }
    }
}
