//! Feeds arbitrary bytes to the frame decoder as every kind of frame a peer can send first or
//! later: a client's `Hello` and `ClientFrame`s, a server's `LinkHello` and `PeerFrame`s.
//!
//! Decoding must never panic, and whatever decodes must encode and decode back to itself.

#![no_main]

use bytes::BytesMut;
use chat_proto::{
    ClientFrame, FrameCodec, Hello, LinkHello, PeerFrame, MAX_CLIENT_FRAME_LEN, MAX_FRAME_LEN,
};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    decode_all::<Hello>(data, MAX_CLIENT_FRAME_LEN);
    decode_all::<ClientFrame>(data, MAX_CLIENT_FRAME_LEN);
    decode_all::<LinkHello>(data, MAX_FRAME_LEN);
    decode_all::<PeerFrame>(data, MAX_FRAME_LEN);
});

/// Decodes frames of type `T` from `data` until it runs out or fails.
fn decode_all<T>(data: &[u8], max_len: usize)
where
    T: DeserializeOwned + Serialize + Clone + PartialEq + Debug,
{
    let mut buf = BytesMut::from(data);
    let mut codec = FrameCodec::<T, T>::new(max_len);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let mut again = BytesMut::new();
        let mut writer = FrameCodec::<T, T>::new(MAX_FRAME_LEN);
        writer
            .encode(frame.clone(), &mut again)
            .expect("a decoded frame encodes");
        let decoded = writer
            .decode(&mut again)
            .expect("a re-encoded frame decodes");
        assert_eq!(decoded, Some(frame));
    }
}
