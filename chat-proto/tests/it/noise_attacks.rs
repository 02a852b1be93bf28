//! What an attacker or a confused caller gets: an error, never a session.

use crate::peers::{handshake, ours, sides, snow, Handshaker};
use chat_proto::noise::{HandshakeBuilder, Keypair, NoiseError, Pattern, Role, MAX_MESSAGE_LEN};
use rand_core::OsRng;

#[test]
fn wrong_psk_fails_the_third_message() {
    for (initiator_is_ours, responder_is_ours) in [(true, true), (true, false), (false, true)] {
        let (initiator_side, mut responder_side) = sides(Pattern::XxPsk3);
        responder_side.psk = Some([0x33; 32]);
        let mut initiator: Box<dyn Handshaker> = if initiator_is_ours {
            Box::new(ours(Pattern::XxPsk3, Role::Initiator, &initiator_side))
        } else {
            Box::new(snow(Pattern::XxPsk3, Role::Initiator, &initiator_side))
        };
        let mut responder: Box<dyn Handshaker> = if responder_is_ours {
            Box::new(ours(Pattern::XxPsk3, Role::Responder, &responder_side))
        } else {
            Box::new(snow(Pattern::XxPsk3, Role::Responder, &responder_side))
        };
        // The psk enters at the third message: the first two go through.
        responder.read(&initiator.write(b"one").unwrap()).unwrap();
        initiator.read(&responder.write(b"two").unwrap()).unwrap();
        let third = initiator.write(b"three").unwrap();
        let err = responder.read(&third).unwrap_err();
        if responder_is_ours {
            assert_eq!(err, NoiseError::Decrypt.to_string());
        }
    }
}

#[test]
fn a_wrong_prologue_fails_the_second_message() {
    let (initiator_side, mut responder_side) = sides(Pattern::Nx);
    responder_side.prologue = b"another version".to_vec();
    let mut client = ours(Pattern::Nx, Role::Initiator, &initiator_side);
    let mut server = ours(Pattern::Nx, Role::Responder, &responder_side);
    server
        .read_message(&client.write_message(b"").unwrap())
        .unwrap();
    let reply = server.write_message(b"").unwrap();
    assert_eq!(client.read_message(&reply), Err(NoiseError::Decrypt));
}

#[test]
fn every_flipped_bit_of_the_handshake_stops_it() {
    for pattern in [Pattern::Nx, Pattern::XxPsk3] {
        let n_messages = if pattern == Pattern::Nx { 2 } else { 3 };
        for tampered_idx in 0..n_messages {
            let message_len = honest_messages(pattern)[tampered_idx].len();
            for byte_idx in 0..message_len {
                let completed = run_tampered(pattern, tampered_idx, byte_idx);
                assert!(
                    !completed,
                    "{pattern}: flipping byte {byte_idx} of message {tampered_idx} went unnoticed"
                );
            }
            // Cutting the message short fails as well.
            assert!(!run_truncated(pattern, tampered_idx));
        }
    }
}

/// The messages of an honest handshake with small payloads.
fn honest_messages(pattern: Pattern) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    run_with(pattern, |_, message| messages.push(message.clone()));
    messages
}

fn run_tampered(pattern: Pattern, tampered_idx: usize, byte_idx: usize) -> bool {
    run_with(pattern, |idx, message| {
        if idx == tampered_idx {
            message[byte_idx] ^= 0x01;
        }
    })
}

fn run_truncated(pattern: Pattern, tampered_idx: usize) -> bool {
    run_with(pattern, |idx, message| {
        if idx == tampered_idx {
            message.pop();
        }
    })
}

/// Runs a handshake of ours with `meddle` between each write and read; true when both sides
/// finish.
fn run_with(pattern: Pattern, mut meddle: impl FnMut(usize, &mut Vec<u8>)) -> bool {
    let (initiator_side, responder_side) = sides(pattern);
    let mut initiator = ours(pattern, Role::Initiator, &initiator_side);
    let mut responder = ours(pattern, Role::Responder, &responder_side);
    let n_messages = if pattern == Pattern::Nx { 2 } else { 3 };
    for idx in 0..n_messages {
        let (writer, reader) = if idx % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let Ok(mut message) = writer.write_message(b"payload") else {
            return false;
        };
        meddle(idx, &mut message);
        if reader.read_message(&message).is_err() {
            return false;
        }
    }
    initiator.is_finished() && responder.is_finished()
}

#[test]
fn a_failed_handshake_stays_failed() {
    let (initiator_side, responder_side) = sides(Pattern::Nx);
    let mut client = ours(Pattern::Nx, Role::Initiator, &initiator_side);
    let mut server = ours(Pattern::Nx, Role::Responder, &responder_side);
    server
        .read_message(&client.write_message(b"").unwrap())
        .unwrap();
    let mut reply = server.write_message(b"").unwrap();
    reply[40] ^= 0x80;
    assert_eq!(client.read_message(&reply), Err(NoiseError::Decrypt));
    reply[40] ^= 0x80;
    assert_eq!(
        client.read_message(&reply),
        Err(NoiseError::HandshakeFailed)
    );
    assert!(!client.is_finished() && !client.is_my_turn());
    assert_eq!(
        client.into_transport().unwrap_err(),
        NoiseError::HandshakeFailed
    );
}

#[test]
fn calls_out_of_turn_are_refused_without_harm() {
    let (initiator_side, responder_side) = sides(Pattern::Nx);
    let mut client = ours(Pattern::Nx, Role::Initiator, &initiator_side);
    let mut server = ours(Pattern::Nx, Role::Responder, &responder_side);
    assert_eq!(
        client.read_message(&[0; 96]),
        Err(NoiseError::ReadOutOfTurn)
    );
    assert_eq!(server.write_message(b""), Err(NoiseError::WriteOutOfTurn));
    assert!(client.is_my_turn() && !server.is_my_turn());
    let first = client.write_message(b"").unwrap();
    assert_eq!(client.write_message(b""), Err(NoiseError::WriteOutOfTurn));
    assert_eq!(
        server.read_message(&first[..31]),
        Err(NoiseError::MessageTooShort { len: 31, min: 32 })
    );
    server.read_message(&first).unwrap();
    assert_eq!(
        server.into_transport().unwrap_err(),
        NoiseError::HandshakeNotFinished
    );
}

#[test]
fn a_finished_handshake_refuses_more_messages() {
    let (initiator_side, responder_side) = sides(Pattern::Nx);
    let mut client = ours(Pattern::Nx, Role::Initiator, &initiator_side);
    let mut server = ours(Pattern::Nx, Role::Responder, &responder_side);
    server
        .read_message(&client.write_message(b"").unwrap())
        .unwrap();
    client
        .read_message(&server.write_message(b"").unwrap())
        .unwrap();
    assert!(client.is_finished() && server.is_finished());
    assert_eq!(
        client.write_message(b""),
        Err(NoiseError::HandshakeFinished)
    );
    assert_eq!(
        server.read_message(&[0; 64]),
        Err(NoiseError::HandshakeFinished)
    );
}

#[test]
fn handshake_sizes_are_enforced() {
    let (initiator_side, responder_side) = sides(Pattern::XxPsk3);
    let mut initiator = ours(Pattern::XxPsk3, Role::Initiator, &initiator_side);
    let mut responder = ours(Pattern::XxPsk3, Role::Responder, &responder_side);
    // XXpsk3's first message has e, and in PSK mode e sets a key, so the payload has a tag.
    let max = MAX_MESSAGE_LEN - 32 - 16;
    assert_eq!(
        initiator.write_message(&vec![0; max + 1]),
        Err(NoiseError::PayloadTooLong { len: max + 1, max })
    );
    assert!(
        initiator.is_my_turn(),
        "a refused payload does not end the handshake"
    );
    assert_eq!(
        responder.read_message(&[0; 47]),
        Err(NoiseError::MessageTooShort { len: 47, min: 48 })
    );
    assert!(matches!(
        responder.read_message(&vec![0; MAX_MESSAGE_LEN + 1]),
        Err(NoiseError::MessageTooLong { .. })
    ));
    let first = initiator.write_message(&vec![1; max]).unwrap();
    assert_eq!(first.len(), MAX_MESSAGE_LEN);
    assert_eq!(responder.read_message(&first).unwrap().len(), max);
}

#[test]
fn a_small_order_ephemeral_key_is_handled_as_snow_does() {
    // The specification's 25519 gives all zeros for such keys, without an error: our reply to
    // an all-zero ephemeral key must be snow's, byte for byte, with the same keys.
    for pattern in [Pattern::Nx, Pattern::XxPsk3] {
        let (_, mut responder_side) = sides(pattern);
        responder_side.ephemeral = Some(Keypair::generate(&mut OsRng));
        let mut our_responder = ours(pattern, Role::Responder, &responder_side);
        let mut snow_responder = snow(pattern, Role::Responder, &responder_side);
        let first = vec![0u8; if pattern == Pattern::Nx { 32 } else { 48 }];
        let ours_read = our_responder.read(&first);
        let snows_read = snow_responder.read(&first);
        assert_eq!(ours_read.is_ok(), snows_read.is_ok(), "{pattern}");
        if ours_read.is_ok() {
            assert_eq!(
                our_responder.write(b"").unwrap(),
                snow_responder.write(b"").unwrap()
            );
        }
    }
}

#[test]
fn builders_check_the_keys_against_the_pattern() {
    let key = || Keypair::generate(&mut OsRng);
    let cases = [
        (
            HandshakeBuilder::new(Pattern::Nx).local_static(key()),
            Role::Initiator,
            NoiseError::UnusedStaticKey {
                pattern: Pattern::Nx,
                role: Role::Initiator,
            },
        ),
        (
            HandshakeBuilder::new(Pattern::Nx),
            Role::Responder,
            NoiseError::MissingStaticKey {
                pattern: Pattern::Nx,
                role: Role::Responder,
            },
        ),
        (
            HandshakeBuilder::new(Pattern::Nx)
                .local_static(key())
                .psk([1; 32]),
            Role::Responder,
            NoiseError::UnusedPsk {
                pattern: Pattern::Nx,
            },
        ),
        (
            HandshakeBuilder::new(Pattern::XxPsk3).local_static(key()),
            Role::Initiator,
            NoiseError::MissingPsk {
                pattern: Pattern::XxPsk3,
            },
        ),
        (
            HandshakeBuilder::new(Pattern::XxPsk3).psk([1; 32]),
            Role::Responder,
            NoiseError::MissingStaticKey {
                pattern: Pattern::XxPsk3,
                role: Role::Responder,
            },
        ),
    ];
    for (builder, role, expected) in cases {
        assert_eq!(builder.build(role, key()).unwrap_err(), expected);
    }
    assert_eq!(
        NoiseError::MissingStaticKey {
            pattern: Pattern::Nx,
            role: Role::Responder
        }
        .to_string(),
        "the responder of NX needs a static key"
    );
}

#[test]
fn the_client_sees_which_server_key_it_got() {
    // NX authenticates nothing by itself: the client must compare the key it learned with the
    // one it pinned. An impostor's handshake completes, with the impostor's key.
    let (initiator_side, mut responder_side) = sides(Pattern::Nx);
    let pinned = responder_side.static_key.clone().unwrap().public_key();
    responder_side.static_key = Some(Keypair::generate(&mut OsRng));
    let done = handshake(
        Pattern::Nx,
        Box::new(ours(Pattern::Nx, Role::Initiator, &initiator_side)),
        Box::new(ours(Pattern::Nx, Role::Responder, &responder_side)),
    );
    assert_ne!(done.initiator_learned, Some(pinned));
    assert_eq!(done.responder_learned, None);
}
