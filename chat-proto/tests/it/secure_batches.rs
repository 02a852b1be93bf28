//! Batches: several frames sealed in one transport message. Honest batches round trip with
//! pieces and rekeys around them; forged ones (empty, cut short, over-long lengths) are
//! refused before any of their frames is handed out, and never panic.

use crate::noise_transport::transports;
use bytes::{BufMut, BytesMut};
use chat_proto::noise::{Transport, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN};
use chat_proto::{Batch, FrameError, Hello, SecureCodec};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

type Texts = SecureCodec<String, String>;

/// A sending and a receiving codec of one direction, the receiver taking at most `max_len`.
fn codecs(max_len: usize) -> (Texts, Texts) {
    let (initiator, responder) = transports();
    (
        SecureCodec::new(initiator, max_len),
        SecureCodec::new(responder, max_len),
    )
}

/// Splits `wire` into its transport messages, checking each length prefix.
fn messages(wire: &[u8]) -> Vec<&[u8]> {
    let mut rest = wire;
    let mut found = Vec::new();
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        assert!(len <= MAX_MESSAGE_LEN);
        found.push(&rest[2..2 + len]);
        rest = &rest[2 + len..];
    }
    found
}

/// Every frame `codec` decodes from `wire`, or the first error.
fn decode_all(codec: &mut Texts, wire: &mut BytesMut) -> Result<Vec<String>, FrameError> {
    let mut got = Vec::new();
    while let Some(frame) = codec.decode(wire)? {
        got.push(frame);
    }
    Ok(got)
}

/// `plaintext` sealed by `sender` as one transport message, with its length.
fn forged(sender: &mut Transport, plaintext: &[u8]) -> BytesMut {
    let sealed = sender.encrypt(plaintext).unwrap();
    let mut wire = BytesMut::new();
    wire.put_u16(u16::try_from(sealed.len()).unwrap());
    wire.put_slice(&sealed);
    wire
}

/// The plaintext of a batch of these frames, each behind its 2-byte length.
fn batch_plaintext(frames: &[&[u8]]) -> Vec<u8> {
    let mut plaintext = vec![3];
    for frame in frames {
        plaintext.extend_from_slice(&u16::try_from(frame.len()).unwrap().to_be_bytes());
        plaintext.extend_from_slice(frame);
    }
    plaintext
}

/// A text as postcard writes it: its length (one byte below 128), then its bytes.
fn text(text: &str) -> Vec<u8> {
    postcard::to_stdvec(text).unwrap()
}

#[track_caller]
fn check_refused(plaintext: &[u8], max_len: usize, expected: &str) {
    let (initiator, responder) = transports();
    let mut sender = initiator;
    let mut receiver: Texts = SecureCodec::new(responder, max_len);
    let mut wire = forged(&mut sender, plaintext);
    let err = decode_all(&mut receiver, &mut wire).unwrap_err();
    assert_eq!(err.to_string(), expected);
}

#[test]
fn frames_sent_together_travel_in_one_message_and_arrive_in_order() {
    let (mut tx, mut rx) = codecs(1 << 20);
    let frames: Vec<String> = (0..50).map(|idx| format!("message {idx}")).collect();
    let mut wire = BytesMut::new();
    tx.encode(Batch(frames.clone()), &mut wire).unwrap();
    assert_eq!(messages(&wire).len(), 1);
    // Fed a byte at a time, each frame comes out once its whole message is in.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in wire {
        buf.put_u8(byte);
        got.extend(decode_all(&mut rx, &mut buf).unwrap());
    }
    assert_eq!(got, frames);
    assert!(buf.is_empty());
}

#[test]
fn a_batch_of_one_is_an_ordinary_message() {
    let (mut tx, _) = codecs(1 << 20);
    let (mut single, mut batched) = (BytesMut::new(), BytesMut::new());
    tx.encode("alone".to_string(), &mut single).unwrap();
    tx.encode(Batch(vec!["alone".to_string()]), &mut batched)
        .unwrap();
    assert_eq!(single.len(), batched.len());
}

#[test]
fn batches_fill_messages_up_to_the_noise_limit_and_go_around_pieces() {
    let (mut tx, mut rx) = codecs(1 << 20);
    let mut frames: Vec<String> = (0..3000).map(|idx| format!("{idx:0>40}")).collect();
    // A frame of 43 bytes with its length prefix: 1,500 of them fit in one message.
    const { assert!(1500 * 43 < MAX_PAYLOAD_LEN) };
    frames.insert(1500, "y".repeat(150_000));
    let mut wire = BytesMut::new();
    tx.encode(Batch(frames.clone()), &mut wire).unwrap();
    let sizes: Vec<usize> = messages(&wire)
        .iter()
        .map(|message| message.len())
        .collect();
    // Each 1,500 frames of 43 bytes fill one message, on either side of the long frame's
    // three pieces.
    assert_eq!(sizes.len(), 5, "{sizes:?}");
    assert!(sizes[0] > 1500 * 43 && sizes[4] > 1500 * 43, "{sizes:?}");
    assert!(
        sizes.iter().all(|&len| len <= MAX_PAYLOAD_LEN + 16),
        "{sizes:?}"
    );
    assert_eq!(decode_all(&mut rx, &mut wire).unwrap(), frames);
}

#[test]
fn a_rekey_requested_between_batches_is_followed() {
    let (mut tx, mut rx) = codecs(1 << 20);
    let mut wire = BytesMut::new();
    tx.encode(Batch(vec!["a".into(), "b".into()]), &mut wire)
        .unwrap();
    tx.rekey_handle().request();
    tx.encode(Batch(vec!["c".into(), "d".into()]), &mut wire)
        .unwrap();
    // The two batches, and the rekey message between them.
    assert_eq!(messages(&wire).len(), 3);
    assert_eq!(
        decode_all(&mut rx, &mut wire).unwrap(),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn the_rest_of_a_batch_is_read_as_the_next_type_after_the_hello() {
    let (initiator, responder) = transports();
    let mut sender = initiator;
    let mut receiver: SecureCodec<Hello, Hello> = SecureCodec::new(responder, 1 << 20);
    let hello = postcard::to_stdvec(&Hello::new("")).unwrap();
    let mut wire = forged(&mut sender, &batch_plaintext(&[&hello, &text("after")]));
    assert_eq!(receiver.decode(&mut wire).unwrap(), Some(Hello::new("")));
    let mut next: Texts = receiver.retype();
    assert_eq!(next.decode(&mut wire).unwrap().as_deref(), Some("after"));
    assert!(wire.is_empty());
}

#[test]
fn an_empty_batch_is_refused() {
    check_refused(&[3], 1024, "encrypted batch malformed: no frames");
}

#[test]
fn a_batch_cut_within_a_length_is_refused() {
    let mut plaintext = batch_plaintext(&[&text("one")]);
    plaintext.push(0);
    check_refused(
        &plaintext,
        1024,
        "encrypted batch malformed: a length cut short",
    );
}

#[test]
fn a_batch_whose_last_frame_is_cut_short_is_refused() {
    let mut plaintext = batch_plaintext(&[&text("one"), &text("two")]);
    plaintext.pop();
    check_refused(
        &plaintext,
        1024,
        "encrypted batch malformed: a frame cut short",
    );
}

#[test]
fn an_inner_length_past_the_message_is_refused() {
    let mut plaintext = batch_plaintext(&[&text("one")]);
    plaintext.extend_from_slice(&[0xff, 0xff, 1, 2, 3]);
    check_refused(
        &plaintext,
        1 << 20,
        "encrypted batch malformed: a frame cut short",
    );
}

#[test]
fn an_inner_frame_over_the_limit_is_refused() {
    let long = text(&"x".repeat(100));
    check_refused(
        &batch_plaintext(&[&text("fine"), &long]),
        64,
        "frame exceeds the limit of 64 bytes",
    );
}

#[test]
fn an_empty_inner_frame_is_refused() {
    check_refused(
        &batch_plaintext(&[&text("one"), &[]]),
        1024,
        "encrypted batch malformed: an empty frame",
    );
}

#[test]
fn a_batch_within_the_pieces_of_a_frame_is_refused() {
    let mut piece = vec![1];
    piece.extend_from_slice(&text("half a frame"));
    let (initiator, responder) = transports();
    let mut sender = initiator;
    let mut receiver: Texts = SecureCodec::new(responder, 1024);
    let mut wire = forged(&mut sender, &piece);
    wire.extend_from_slice(&forged(&mut sender, &batch_plaintext(&[&text("inside")])));
    let err = decode_all(&mut receiver, &mut wire).unwrap_err();
    assert_eq!(
        err.to_string(),
        "encrypted batch malformed: within the pieces of a frame"
    );
}

#[test]
fn no_frame_of_a_bad_batch_is_handed_out() {
    let mut plaintext = batch_plaintext(&[&text("one"), &text("two")]);
    plaintext.push(7);
    let (initiator, responder) = transports();
    let mut sender = initiator;
    let mut receiver: Texts = SecureCodec::new(responder, 1024);
    let mut wire = forged(&mut sender, &plaintext);
    assert!(receiver.decode(&mut wire).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Frames of any size, fed with a seal and perhaps a rekey after any of them, arrive
    /// whole and in order, in messages that never pass the Noise limit.
    #[test]
    fn any_frames_round_trip_in_batches(
        steps in prop::collection::vec(
            (
                prop_oneof![8 => 0usize..200, 1 => 65_000usize..66_000, 1 => 100_000usize..140_000],
                any::<bool>(),
                any::<bool>(),
            ),
            1..40,
        ),
    ) {
        let (tx, mut rx) = codecs(1 << 20);
        let (_, mut encoder) = tx.split();
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for (idx, &(len, seal, rekey)) in steps.iter().enumerate() {
            let frame = format!("{idx}:{}", "z".repeat(len));
            encoder.feed(&frame, &mut wire).unwrap();
            sent.push(frame);
            if seal {
                encoder.seal(&mut wire).unwrap();
            }
            if rekey {
                encoder.rekey_handle().request();
            }
        }
        encoder.seal(&mut wire).unwrap();
        messages(&wire);
        prop_assert_eq!(decode_all(&mut rx, &mut wire).unwrap(), sent);
    }

    /// Whatever a batch's plaintext holds, decoding it ends in frames or an error, never in a
    /// panic.
    #[test]
    fn any_batch_plaintext_decodes_without_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let (initiator, responder) = transports();
        let mut sender = initiator;
        let mut receiver: Texts = SecureCodec::new(responder, 128);
        let mut plaintext = vec![3];
        plaintext.extend_from_slice(&body);
        let mut wire = forged(&mut sender, &plaintext);
        let _ = decode_all(&mut receiver, &mut wire);
    }
}
