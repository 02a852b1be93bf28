//! Property tests: random sizes, directions, rekeys and garbage.

use crate::peers::{handshake, ours, sides, snow, Handshaker};
use chat_proto::noise::{NoiseError, Pattern, Role, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN};
use proptest::prelude::*;

/// One step of a conversation: who sends, how much, and whether the sender rekeys first.
#[derive(Debug, Clone)]
struct Step {
    from_initiator: bool,
    len: usize,
    rekey_first: bool,
}

fn step() -> impl Strategy<Value = Step> {
    // Mostly small messages, with some up to the largest payload.
    let len = prop_oneof![4 => 0..64usize, 1 => 0..=MAX_PAYLOAD_LEN];
    (any::<bool>(), len, proptest::bool::weighted(0.2)).prop_map(
        |(from_initiator, len, rekey_first)| Step {
            from_initiator,
            len,
            rekey_first,
        },
    )
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![Just(Pattern::Nx), Just(Pattern::XxPsk3)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn transport_messages_round_trip_with_snow(
        pattern in pattern(),
        snow_initiates in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..8),
        seed in any::<u8>(),
    ) {
        let (initiator_side, responder_side) = sides(pattern);
        let (initiator, responder): (Box<dyn Handshaker>, Box<dyn Handshaker>) = if snow_initiates {
            (
                Box::new(snow(pattern, Role::Initiator, &initiator_side)),
                Box::new(ours(pattern, Role::Responder, &responder_side)),
            )
        } else {
            (
                Box::new(ours(pattern, Role::Initiator, &initiator_side)),
                Box::new(snow(pattern, Role::Responder, &responder_side)),
            )
        };
        let mut done = handshake(pattern, initiator, responder);
        for (idx, step) in steps.iter().enumerate() {
            let (sender, receiver) = if step.from_initiator {
                (&mut done.initiator, &mut done.responder)
            } else {
                (&mut done.responder, &mut done.initiator)
            };
            if step.rekey_first {
                sender.rekey_outgoing();
                receiver.rekey_incoming();
            }
            let plaintext: Vec<u8> = (0..step.len).map(|pos| (pos + idx) as u8 ^ seed).collect();
            let sealed = sender.encrypt(&plaintext);
            prop_assert_eq!(sealed.len(), plaintext.len() + 16);
            prop_assert_eq!(receiver.decrypt(&sealed).unwrap(), plaintext);
        }
    }

    #[test]
    fn handshake_payloads_round_trip(
        pattern in pattern(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 3),
    ) {
        let (initiator_side, responder_side) = sides(pattern);
        let mut initiator = ours(pattern, Role::Initiator, &initiator_side);
        let mut responder = ours(pattern, Role::Responder, &responder_side);
        let mut idx = 0;
        while !initiator.is_finished() {
            let (writer, reader) = if idx % 2 == 0 {
                (&mut initiator, &mut responder)
            } else {
                (&mut responder, &mut initiator)
            };
            let message = writer.write_message(&payloads[idx]).unwrap();
            prop_assert!(message.len() > payloads[idx].len());
            prop_assert_eq!(&reader.read_message(&message).unwrap(), &payloads[idx]);
            idx += 1;
        }
        prop_assert!(responder.is_finished());
    }

    #[test]
    fn garbage_never_panics_and_never_decrypts(
        pattern in pattern(),
        first in proptest::collection::vec(any::<u8>(), 0..200),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        // NX's first message is not authenticated, so garbage may pass there; nothing after it
        // does.
        let (initiator_side, responder_side) = sides(pattern);
        let mut responder = ours(pattern, Role::Responder, &responder_side);
        if responder.read_message(&first).is_ok() {
            let _ = responder.write_message(b"");
            prop_assert!(responder.read_message(&garbage).is_err());
        }
        let mut initiator = ours(pattern, Role::Initiator, &initiator_side);
        initiator.write_message(b"").unwrap();
        prop_assert!(initiator.read_message(&garbage).is_err());

        let (client_side, server_side) = sides(Pattern::Nx);
        let mut server = ours(Pattern::Nx, Role::Responder, &server_side);
        let mut client = ours(Pattern::Nx, Role::Initiator, &client_side);
        server.read_message(&client.write_message(b"").unwrap()).unwrap();
        client.read_message(&server.write_message(b"").unwrap()).unwrap();
        let mut transport = server.into_transport().unwrap();
        let result = transport.decrypt(&garbage);
        prop_assert!(result.is_err());
        if garbage.len() >= 16 && garbage.len() <= MAX_MESSAGE_LEN {
            prop_assert_eq!(result.unwrap_err(), NoiseError::Decrypt);
        }
        prop_assert_eq!(transport.receiving_nonce(), 0);
    }
}
