//! Transport messages that were replayed, reordered, altered, cut or too long: never opened.

use crate::peers::{handshake, ours, sides, snow};
use chat_proto::noise::{NoiseError, Pattern, Role, Transport, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN};

/// Two of our transports, initiator's first, after an XXpsk3 handshake.
pub fn transports() -> (Transport, Transport) {
    let (initiator_side, responder_side) = sides(Pattern::XxPsk3);
    let mut initiator = ours(Pattern::XxPsk3, Role::Initiator, &initiator_side);
    let mut responder = ours(Pattern::XxPsk3, Role::Responder, &responder_side);
    for idx in 0..3 {
        let (writer, reader) = if idx % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        reader
            .read_message(&writer.write_message(b"").unwrap())
            .unwrap();
    }
    (
        initiator.into_transport().unwrap(),
        responder.into_transport().unwrap(),
    )
}

#[test]
fn a_replayed_transport_message_does_not_decrypt() {
    let (mut initiator, mut responder) = transports();
    let sealed = initiator.encrypt(b"transfer 10 coins").unwrap();
    assert_eq!(responder.decrypt(&sealed).unwrap(), b"transfer 10 coins");
    assert_eq!(responder.decrypt(&sealed), Err(NoiseError::Decrypt));
    // The replay did not disturb the stream.
    let next = initiator.encrypt(b"next").unwrap();
    assert_eq!(responder.decrypt(&next).unwrap(), b"next");

    // The same against snow's sender.
    let (initiator_side, responder_side) = sides(Pattern::Nx);
    let done = handshake(
        Pattern::Nx,
        Box::new(snow(Pattern::Nx, Role::Initiator, &initiator_side)),
        Box::new(ours(Pattern::Nx, Role::Responder, &responder_side)),
    );
    let (mut client, mut server) = (done.initiator, done.responder);
    let sealed = client.encrypt(b"from snow");
    assert_eq!(server.decrypt(&sealed).unwrap(), b"from snow");
    assert!(server.decrypt(&sealed).is_err());
}

#[test]
fn out_of_order_transport_messages_do_not_decrypt() {
    let (mut initiator, mut responder) = transports();
    let first = responder.encrypt(b"first").unwrap();
    let second = responder.encrypt(b"second").unwrap();
    assert_eq!(initiator.decrypt(&second), Err(NoiseError::Decrypt));
    assert_eq!(initiator.receiving_nonce(), 0);
    assert_eq!(initiator.decrypt(&first).unwrap(), b"first");
    assert_eq!(initiator.decrypt(&second).unwrap(), b"second");
    assert_eq!(initiator.receiving_nonce(), 2);
}

#[test]
fn tampered_and_cut_transport_messages_do_not_decrypt() {
    let (mut initiator, mut responder) = transports();
    let sealed = initiator.encrypt(b"hello there").unwrap();
    for idx in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[idx] ^= 0x20;
        assert_eq!(
            responder.decrypt(&tampered),
            Err(NoiseError::Decrypt),
            "{idx}"
        );
    }
    assert_eq!(
        responder.decrypt(&sealed[..sealed.len() - 1]),
        Err(NoiseError::Decrypt)
    );
    assert!(matches!(
        responder.decrypt(&sealed[..15]),
        Err(NoiseError::MessageTooShort { len: 15, min: 16 })
    ));
    // A message for the other direction does not open either.
    let wrong_way = responder.encrypt(b"hello there").unwrap();
    assert_eq!(responder.decrypt(&wrong_way), Err(NoiseError::Decrypt));
    assert_eq!(responder.decrypt(&sealed).unwrap(), b"hello there");
}

#[test]
fn transport_sizes_are_enforced() {
    let (mut initiator, mut responder) = transports();
    let too_long = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert_eq!(
        initiator.encrypt(&too_long),
        Err(NoiseError::PayloadTooLong {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        })
    );
    assert_eq!(initiator.sending_nonce(), 0, "a refusal uses no nonce");
    assert!(matches!(
        responder.decrypt(&vec![0u8; MAX_MESSAGE_LEN + 1]),
        Err(NoiseError::MessageTooLong { .. })
    ));
    let largest = initiator.encrypt(&too_long[1..]).unwrap();
    assert_eq!(largest.len(), MAX_MESSAGE_LEN);
    assert_eq!(responder.decrypt(&largest).unwrap().len(), MAX_PAYLOAD_LEN);
}
