//! What crosses a TCP connection: length-delimited frames (a 4-byte
//! big-endian length, then the payload), each payload one [`Frame`] in the
//! versioned wire encoding of `agora_core::wire`.
//!
//! A connection opens with `Hello { from }`; everything after is `Msg`. A
//! frame longer than the configured maximum, a payload that does not decode,
//! or a second `Hello` closes the connection: it is counted and logged with
//! the peer, and the node carries on.

use agora_core::{wire, Message, NodeId};
use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Frame<M> {
    /// First frame of a connection: who is dialling.
    Hello {
        from: NodeId,
    },
    Msg(M),
}

/// Why a frame was refused; also the `reason` label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame longer than the maximum")]
    Oversized,
    #[error("payload does not decode")]
    Malformed,
    #[error("unexpected Hello after the handshake")]
    UnexpectedHello,
    #[error("a message for service tag {0}, which this node does not host")]
    UnknownService(u32),
}

impl FrameError {
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::Oversized => "oversized",
            FrameError::Malformed => "malformed",
            FrameError::UnexpectedHello => "unexpected_hello",
            FrameError::UnknownService(_) => "unknown_service",
        }
    }
}

/// The length-delimited codec with the node's frame size limit.
pub fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(max_frame_bytes).new_codec()
}

/// Encodes one frame's payload.
pub fn encode<M: Serialize>(frame: &Frame<M>) -> Bytes {
    Bytes::from(wire::encode(frame).expect("frames of serde types encode"))
}

/// Decodes one frame's payload.
pub fn decode<M: DeserializeOwned + Message>(payload: &[u8]) -> Result<Frame<M>, FrameError> {
    wire::decode(payload).map_err(|_| match unknown_service::<M>(payload) {
        Some(tag) => FrameError::UnknownService(tag),
        None => FrameError::Malformed,
    })
}

/// For a composed node's messages, whose first field is the service tag
/// (postcard: the version byte, `Frame::Msg`'s variant index 1, then the
/// tag, each a varint): the tag, if it names no service here.
fn unknown_service<M: Message>(payload: &[u8]) -> Option<u32> {
    let services = M::services();
    if services.is_empty() {
        return None;
    }
    let (version, rest) = postcard::take_from_bytes::<u8>(payload).ok()?;
    let (variant, rest) = postcard::take_from_bytes::<u32>(rest).ok()?;
    let (tag, _) = postcard::take_from_bytes::<u32>(rest).ok()?;
    (version == wire::WIRE_VERSION && variant == 1 && tag as usize >= services.len()).then_some(tag)
}

/// Decodes a whole byte stream as a connection would see it, stopping at the
/// first bad frame: the fuzz target's and property tests' entry point.
pub fn decode_stream<M: DeserializeOwned + Message>(
    bytes: &[u8],
    max_frame_bytes: usize,
) -> Vec<Result<Frame<M>, FrameError>> {
    let mut codec = codec(max_frame_bytes);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(payload)) => {
                let f = decode(&payload);
                let bad = f.is_err();
                out.push(f);
                if bad {
                    return out;
                }
            }
            Ok(None) => return out,
            Err(_) => {
                out.push(Err(FrameError::Oversized));
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type F = Frame<agora_broadcast::Msg>;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn good_frames_decode_and_bad_ones_are_named() {
        let hello: F = Frame::Hello { from: NodeId(3) };
        let msg: F = Frame::Msg(agora_broadcast::Msg::Data { origin: NodeId(0), seq: 1, value: 9 });
        let mut stream = framed(&encode(&hello));
        stream.extend(framed(&encode(&msg)));
        assert_eq!(decode_stream::<agora_broadcast::Msg>(&stream, 1024), vec![Ok(hello), Ok(msg)]);

        let huge = (1_000_000u32).to_be_bytes();
        assert_eq!(decode_stream::<agora_broadcast::Msg>(&huge, 1024), vec![Err(FrameError::Oversized)]);
        let garbage = framed(&[1, 0xff, 0xff, 0xff]);
        assert_eq!(decode_stream::<agora_broadcast::Msg>(&garbage, 1024), vec![Err(FrameError::Malformed)]);
        let wrong_version = framed(&[7, 0]);
        assert_eq!(decode_stream::<agora_broadcast::Msg>(&wrong_version, 1024), vec![Err(FrameError::Malformed)]);
    }

    #[test]
    fn a_message_for_a_service_the_node_does_not_host_is_named() {
        use agora_broadcast::monitored::node::Msg as Composed;
        let beat: Frame<Composed> = Frame::Msg(Composed::Heartbeat(agora_broadcast::heartbeat::Msg::Beat));
        let mut payload = encode(&beat).to_vec();
        assert_eq!(decode::<Composed>(&payload), Ok(beat));
        // [version, Frame::Msg = 1, service tag, …]: tag 1 is heartbeat; 7 is nobody.
        assert_eq!(payload[2], 1);
        payload[2] = 7;
        assert_eq!(decode::<Composed>(&payload), Err(FrameError::UnknownService(7)));
        assert_eq!(FrameError::UnknownService(7).reason(), "unknown_service");
        // A protocol that runs alone has no tags: garbage stays "malformed".
        assert_eq!(decode::<agora_broadcast::Msg>(&[1, 1, 9]), Err(FrameError::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_stream::<agora_broadcast::Msg>(&bytes, 64);
        }

        #[test]
        fn arbitrary_payloads_in_valid_frames_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let out = decode_stream::<agora_broadcast::Msg>(&framed(&payload), 1024);
            prop_assert_eq!(out.len(), 1);
        }
    }
}
