//! Arbitrary bytes as a peer connection's byte stream: the frame decoder
//! must return frames or an error, never panic, whatever arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = agora_net::frame::decode_stream::<agora_broadcast::Msg>(data, 4096);
});
