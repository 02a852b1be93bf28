//! Frames on the wire: a 4-byte big-endian length, then that many bytes of `postcard`.
//!
//! [`FrameCodec`] refuses any frame longer than its limit before reading it, so a peer cannot
//! make the other side buffer more than the limit. Decoding never panics: garbage becomes a
//! [`FrameError`], and the caller closes that one connection.

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use std::{io, marker::PhantomData};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

/// The largest frame a client may send: a message of 4096 bytes with room to spare.
pub const MAX_CLIENT_FRAME_LEN: usize = 64 * 1024;
/// The largest frame a server may send: a `readlog` batch of [`MAX_LOG_BATCH`] long messages.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;
/// The most messages one `readlog` reply carries.
pub const MAX_LOG_BATCH: u32 = 100;
/// The most names one page of a list (`who`, `groups`) carries: 1,000 names of at most 32
/// bytes stay far below [`MAX_FRAME_LEN`].
pub const MAX_PAGE: u32 = 1000;
/// The most ids one `ClientFrame::Ack` may carry; a larger one is a protocol error.
pub const MAX_ACK_IDS: usize = 1024;

/// True when `frame` encodes within `max_len` bytes, the limit an encoder enforces: a reply that
/// does not fit must be answered some other way, before it reaches the connection's writer.
pub fn fits_in_frame<T: Serialize + ?Sized>(frame: &T, max_len: usize) -> bool {
    postcard::serialize_with_flavor(frame, postcard::ser_flavors::Size::default())
        .is_ok_and(|len: usize| len <= max_len)
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame exceeds the limit of {max} bytes")]
    TooLarge { max: usize },
    #[error("frame is not valid: {0}")]
    Malformed(#[from] postcard::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("encrypted frame refused: {0}")]
    Noise(#[from] crate::noise::NoiseError),
    #[error("encrypted frame garbled: unknown piece kind")]
    Garbled,
    #[error("encrypted batch malformed: {0}")]
    BadBatch(&'static str),
}

/// Decodes frames of type `In` and encodes frames of type `Out`, each at most `max_len` bytes.
pub struct FrameCodec<In, Out> {
    frames: LengthDelimitedCodec,
    max_len: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    pub fn new(max_len: usize) -> Self {
        FrameCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_len)
                .new_codec(),
            max_len,
            _types: PhantomData,
        }
    }

    /// The same framing state, now reading `In2` and writing `Out2` (after the hello).
    pub fn retype<In2, Out2>(self) -> FrameCodec<In2, Out2> {
        FrameCodec {
            frames: self.frames,
            max_len: self.max_len,
            _types: PhantomData,
        }
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        match self.frames.decode(src) {
            Ok(Some(payload)) => Ok(Some(postcard::from_bytes(&payload)?)),
            Ok(None) => Ok(None),
            Err(err) => Err(self.classify(err)),
        }
    }
}

impl<In, Out> FrameCodec<In, Out> {
    /// Tells an over-long length prefix apart from a failing socket.
    fn classify(&self, err: io::Error) -> FrameError {
        let too_large = err
            .get_ref()
            .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
        if too_large {
            FrameError::TooLarge { max: self.max_len }
        } else {
            FrameError::Io(err)
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let payload = postcard::to_stdvec(&item)?;
        self.frames
            .encode(Bytes::from(payload), dst)
            .map_err(|err| self.classify(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ChatMessage, ClientFrame, Hello, LinkHello, MessageId, Recipient, Request, ServerFrame,
    };
    use proptest::prelude::*;

    type ServerSide = FrameCodec<ClientFrame, ServerFrame>;
    type ClientSide = FrameCodec<ServerFrame, ClientFrame>;

    fn send_frame(text: &str) -> ClientFrame {
        ClientFrame::Request {
            id: 7,
            body: Request::Send {
                id: MessageId::new(),
                to: Recipient::Group("ops".into()),
                text: text.into(),
            },
        }
    }

    fn encode(frame: ClientFrame) -> BytesMut {
        let mut buf = BytesMut::new();
        ClientSide::new(MAX_CLIENT_FRAME_LEN)
            .encode(frame, &mut buf)
            .unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        let frame = send_frame("hello, world");
        let mut buf = encode(frame.clone());
        let mut codec = ServerSide::new(MAX_CLIENT_FRAME_LEN);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
        assert!(buf.is_empty());
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn two_frames_in_one_read() {
        let (a, b) = (send_frame("a"), send_frame("b"));
        let mut buf = encode(a.clone());
        buf.extend_from_slice(&encode(b.clone()));
        let mut codec = ServerSide::new(MAX_CLIENT_FRAME_LEN);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(a));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(b));
    }

    #[test]
    fn truncated_input_waits_for_more() {
        let frame = send_frame("not yet");
        let whole = encode(frame.clone());
        let mut codec = ServerSide::new(MAX_CLIENT_FRAME_LEN);
        let mut buf = BytesMut::new();
        for (idx, byte) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let decoded = codec.decode(&mut buf).unwrap();
            if idx + 1 < whole.len() {
                assert_eq!(decoded, None, "decoded early, at byte {idx}");
            } else {
                assert_eq!(decoded, Some(frame.clone()));
            }
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut buf = BytesMut::from(&((MAX_CLIENT_FRAME_LEN as u32 + 1).to_be_bytes())[..]);
        let err = ServerSide::new(MAX_CLIENT_FRAME_LEN)
            .decode(&mut buf)
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    max: MAX_CLIENT_FRAME_LEN
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn oversized_frame_is_not_encoded() {
        let mut buf = BytesMut::new();
        let err = ClientSide::new(1024)
            .encode(send_frame(&"x".repeat(2000)), &mut buf)
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 1024 }), "{err}");
    }

    #[test]
    fn the_size_check_agrees_with_the_encoder() {
        let frame = |len: usize| ServerFrame::Reply {
            id: 1,
            result: Ok(crate::Response::Users {
                users: vec!["x".repeat(len)],
                more: false,
            }),
        };
        let mut buf = BytesMut::new();
        let mut codec = ServerSide::new(1024);
        for len in [0, 500, 1000, 1015, 1016, 1017, 1018, 1100] {
            let fits = fits_in_frame(&frame(len), 1024);
            let encoded = codec.encode(frame(len), &mut buf);
            assert_eq!(fits, encoded.is_ok(), "a name of {len} bytes");
        }
        assert!(fits_in_frame(&frame(1000), 1024));
        assert!(!fits_in_frame(&frame(1100), 1024));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
        let err = ServerSide::new(MAX_CLIENT_FRAME_LEN)
            .decode(&mut buf)
            .unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn hello_layout_is_stable() {
        // A hello from any version must decode, so that a version mismatch can be reported.
        let mut buf = BytesMut::new();
        FrameCodec::<Hello, Hello>::new(1024)
            .encode(Hello::new("s1"), &mut buf)
            .unwrap();
        // Magic, the version as a one-byte varint, the name with its length, an empty refusal.
        let version = u8::try_from(crate::PROTOCOL_VERSION).unwrap();
        assert!(version < 0x80);
        assert_eq!(
            &buf[4..],
            [b"CHAT".as_slice(), &[version, 2], b"s1", &[0]].concat()
        );
    }

    #[test]
    fn link_hello_layout_is_stable() {
        let mut buf = BytesMut::new();
        FrameCodec::<LinkHello, LinkHello>::new(1024)
            .encode(LinkHello::new("s1", 5), &mut buf)
            .unwrap();
        // As the client hello, with the start time (zigzag varint) before the refusal.
        let version = u8::try_from(crate::PROTOCOL_VERSION).unwrap();
        assert_eq!(
            &buf[4..],
            [b"LINK".as_slice(), &[version, 2], b"s1", &[10, 0]].concat()
        );
    }

    #[test]
    fn retype_keeps_buffered_bytes_meaning() {
        let codec = FrameCodec::<Hello, Hello>::new(MAX_CLIENT_FRAME_LEN);
        let mut next: ServerSide = codec.retype();
        let mut buf = encode(send_frame("after hello"));
        assert!(next.decode(&mut buf).unwrap().is_some());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut codec = ServerSide::new(MAX_CLIENT_FRAME_LEN);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }

        #[test]
        fn any_message_round_trips(from in "[a-z]{1,32}", text in "\\PC{0,300}", at in any::<i64>()) {
            let frame = ServerFrame::Deliver(crate::SharedMessage::new(ChatMessage {
                id: MessageId::new(),
                from,
                to: Recipient::User("bob".into()),
                text,
                sent_at_ms: at,
            }));
            let mut buf = BytesMut::new();
            ServerSide::new(MAX_FRAME_LEN).encode(frame.clone(), &mut buf).unwrap();
            prop_assert_eq!(ClientSide::new(MAX_FRAME_LEN).decode(&mut buf).unwrap(), Some(frame));
        }
    }
}
