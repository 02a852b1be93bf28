use super::*;
use crate::noise::{HandshakeBuilder, Keypair, Pattern};
use crate::{ChatMessage, MessageId, Recipient, ServerFrame};
use bytes::BufMut;
use proptest::prelude::*;
use rand_core::OsRng;

/// A client and a server transport after an NX handshake.
fn pair() -> (Transport, Transport) {
    let server_key = Keypair::generate(&mut OsRng);
    let mut client = HandshakeBuilder::new(Pattern::Nx)
        .build_initiator(&mut OsRng)
        .unwrap();
    let mut server = HandshakeBuilder::new(Pattern::Nx)
        .local_static(server_key)
        .build_responder(&mut OsRng)
        .unwrap();
    let first = client.write_message(&[]).unwrap();
    server.read_message(&first).unwrap();
    let second = server.write_message(&[]).unwrap();
    client.read_message(&second).unwrap();
    (
        client.into_transport().unwrap(),
        server.into_transport().unwrap(),
    )
}

type Sender = SecureCodec<ServerFrame, ServerFrame>;

fn message(text: String) -> ServerFrame {
    ServerFrame::Deliver(crate::SharedMessage::new(ChatMessage {
        id: MessageId::new(),
        from: "alice".into(),
        to: Recipient::User("bob".into()),
        text,
        sent_at_ms: 1,
    }))
}

fn codecs() -> (Sender, Sender) {
    let (client, server) = pair();
    (
        SecureCodec::new(server, 1 << 20),
        SecureCodec::new(client, 1 << 20),
    )
}

#[test]
fn keys_in_hex_round_trip_and_bad_text_is_refused() {
    let key: [u8; 32] = std::array::from_fn(|idx| idx as u8 * 7);
    let text = key_to_hex(&key);
    assert_eq!(text.len(), 64);
    assert_eq!(key_from_hex(&format!(" {text}\n")), Some(key));
    assert_eq!(key_from_hex(&text[1..]), None);
    assert_eq!(key_from_hex(&text.replace('0', "g")), None);
    assert_eq!(key_from_hex("é".repeat(32).as_str()), None);
}

#[test]
fn frames_longer_than_a_noise_message_cross_in_pieces() {
    let (mut tx, mut rx) = codecs();
    let big = message("x".repeat(200_000));
    let mut wire = BytesMut::new();
    tx.encode(big.clone(), &mut wire).unwrap();
    assert!(wire.len() > 3 * MAX_MESSAGE_LEN);
    // Fed a byte at a time, it still decodes once, at the end.
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for byte in wire {
        buf.put_u8(byte);
        if let Some(frame) = rx.decode(&mut buf).unwrap() {
            decoded.push(frame);
        }
    }
    assert_eq!(decoded, [big]);
}

#[test]
fn a_replayed_or_reordered_message_is_refused() {
    let (mut tx, mut rx) = codecs();
    let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
    tx.encode(message("one".into()), &mut first).unwrap();
    tx.encode(message("two".into()), &mut second).unwrap();
    let mut reordered = second.clone();
    assert!(matches!(
        rx.decode(&mut reordered),
        Err(FrameError::Noise(_))
    ));
    let mut in_order = first.clone();
    assert!(rx.decode(&mut in_order).unwrap().is_some());
    let mut replayed = first;
    assert!(matches!(
        rx.decode(&mut replayed),
        Err(FrameError::Noise(_))
    ));
}

#[test]
fn split_halves_speak_with_a_whole_codec() {
    let (tx, mut rx) = codecs();
    let (mut decoder, mut encoder) = tx.split();
    let [out, rekeyed, back] = ["out", "rekeyed", "back"].map(|text| message(text.into()));
    let mut wire = BytesMut::new();
    encoder.encode(out.clone(), &mut wire).unwrap();
    encoder.rekey_handle().request();
    encoder.encode(rekeyed.clone(), &mut wire).unwrap();
    assert_eq!(rx.decode(&mut wire).unwrap(), Some(out));
    assert_eq!(rx.decode(&mut wire).unwrap(), Some(rekeyed));
    rx.encode(back.clone(), &mut wire).unwrap();
    assert_eq!(decoder.decode(&mut wire).unwrap(), Some(back));
}

#[test]
fn a_requested_rekey_changes_the_keys_on_both_sides() {
    let (mut tx, mut rx) = codecs();
    let mut wire = BytesMut::new();
    tx.encode(message("before".into()), &mut wire).unwrap();
    tx.rekey_handle().request();
    tx.encode(message("after".into()), &mut wire).unwrap();
    let mut got = Vec::new();
    while let Some(frame) = rx.decode(&mut wire).unwrap() {
        got.push(frame);
    }
    assert_eq!(got.len(), 2);
    assert_eq!(tx.encoder.sent_since_rekey(), 1);
}

#[test]
fn a_flipped_bit_is_refused() {
    let (mut tx, mut rx) = codecs();
    let mut wire = BytesMut::new();
    tx.encode(message("secret".into()), &mut wire).unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    assert!(matches!(rx.decode(&mut wire), Err(FrameError::Noise(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn frames_round_trip(texts in prop::collection::vec(".{0,300}", 1..8)) {
        let (mut tx, mut rx) = codecs();
        let frames: Vec<ServerFrame> = texts.into_iter().map(message).collect();
        let mut wire = BytesMut::new();
        for frame in &frames {
            tx.encode(frame.clone(), &mut wire).unwrap();
        }
        let mut got = Vec::new();
        while let Some(frame) = rx.decode(&mut wire).unwrap() {
            got.push(frame);
        }
        prop_assert_eq!(got, frames);
    }
}
