//! Interoperation with `snow`: each of our roles against snow's other role, for both patterns.

use crate::peers::{chat, handshake, handshake_payload, ours, sides, snow, Handshaker, Side};
use chat_proto::noise::{Keypair, Pattern, Role, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN};
use rand_core::OsRng;

#[test]
fn nx_our_initiator_with_snows_responder() {
    check_interop(Pattern::Nx, Role::Initiator);
}

#[test]
fn nx_snows_initiator_with_our_responder() {
    check_interop(Pattern::Nx, Role::Responder);
}

#[test]
fn xxpsk3_our_initiator_with_snows_responder() {
    check_interop(Pattern::XxPsk3, Role::Initiator);
}

#[test]
fn xxpsk3_snows_initiator_with_our_responder() {
    check_interop(Pattern::XxPsk3, Role::Responder);
}

#[test]
fn nx_same_keys_give_snows_bytes() {
    check_same_bytes(Pattern::Nx);
}

#[test]
fn xxpsk3_same_keys_give_snows_bytes() {
    check_same_bytes(Pattern::XxPsk3);
}

/// Our side plays `our_role` and snow the other: a handshake with payloads, transport messages
/// both ways, a rekey of each direction on both sides, and more messages.
#[track_caller]
fn check_interop(pattern: Pattern, our_role: Role) {
    let (initiator_side, responder_side) = sides(pattern);
    let (initiator, responder): (Box<dyn Handshaker>, Box<dyn Handshaker>) = match our_role {
        Role::Initiator => (
            Box::new(ours(pattern, Role::Initiator, &initiator_side)),
            Box::new(snow(pattern, Role::Responder, &responder_side)),
        ),
        Role::Responder => (
            Box::new(snow(pattern, Role::Initiator, &initiator_side)),
            Box::new(ours(pattern, Role::Responder, &responder_side)),
        ),
    };
    let mut done = handshake(pattern, initiator, responder);
    let public = |side: &Side| side.static_key.as_ref().map(Keypair::public_key);
    assert_eq!(done.initiator_learned, public(&responder_side));
    assert_eq!(done.responder_learned, public(&initiator_side));
    let (initiator, responder) = (&mut *done.initiator, &mut *done.responder);
    chat(initiator, responder, 3, "before rekeying");

    initiator.rekey_outgoing();
    responder.rekey_incoming();
    chat(initiator, responder, 2, "after the initiator's rekey");
    responder.rekey_outgoing();
    initiator.rekey_incoming();
    chat(initiator, responder, 3, "after both rekeys");

    // A rekey really changes the key: until the receiver follows, the message does not decrypt,
    // and the failure does not move the receiver's counter.
    initiator.rekey_outgoing();
    let sealed = initiator.encrypt(b"after a one-sided rekey");
    assert!(responder.decrypt(&sealed).is_err(), "old key opened it");
    responder.rekey_incoming();
    assert_eq!(
        responder.decrypt(&sealed).unwrap(),
        b"after a one-sided rekey"
    );

    // The largest transport message goes through both ways.
    let largest = vec![0xab; MAX_PAYLOAD_LEN];
    let sealed = initiator.encrypt(&largest);
    assert_eq!(sealed.len(), MAX_MESSAGE_LEN);
    assert_eq!(responder.decrypt(&sealed).unwrap(), largest);
    let sealed = responder.encrypt(&largest);
    assert_eq!(initiator.decrypt(&sealed).unwrap(), largest);
    chat(initiator, responder, 2, "at the end");
}

/// With the same static, ephemeral and pre-shared keys, our messages are snow's, byte for byte,
/// in the handshake and in transport, before and after rekeying.
#[track_caller]
fn check_same_bytes(pattern: Pattern) {
    let (mut initiator_side, mut responder_side) = sides(pattern);
    initiator_side.ephemeral = Some(Keypair::generate(&mut OsRng));
    responder_side.ephemeral = Some(Keypair::generate(&mut OsRng));
    let mut our_initiator = ours(pattern, Role::Initiator, &initiator_side);
    let mut our_responder = ours(pattern, Role::Responder, &responder_side);
    let mut snow_initiator = snow(pattern, Role::Initiator, &initiator_side);
    let mut snow_responder = snow(pattern, Role::Responder, &responder_side);
    let n_messages = if pattern == Pattern::Nx { 2 } else { 3 };
    for idx in 0..n_messages {
        let payload = handshake_payload(idx);
        let (ours_out, snows_out) = if idx % 2 == 0 {
            let ours_out = our_initiator.write(&payload).unwrap();
            let snows_out = snow_initiator.write(&payload).unwrap();
            our_responder.read(&ours_out).unwrap();
            snow_responder.read(&snows_out).unwrap();
            (ours_out, snows_out)
        } else {
            let ours_out = our_responder.write(&payload).unwrap();
            let snows_out = snow_responder.write(&payload).unwrap();
            our_initiator.read(&ours_out).unwrap();
            snow_initiator.read(&snows_out).unwrap();
            (ours_out, snows_out)
        };
        assert_eq!(ours_out, snows_out, "handshake message {idx}");
    }
    assert_eq!(
        Handshaker::handshake_hash(&our_initiator),
        Handshaker::handshake_hash(&snow_initiator)
    );
    let mut ours_both = [
        Box::new(our_initiator).into_session(),
        Box::new(our_responder).into_session(),
    ];
    let mut snows_both = [
        Box::new(snow_initiator).into_session(),
        Box::new(snow_responder).into_session(),
    ];
    for round in 0..3 {
        for side in 0..2 {
            let text = format!("round {round} from side {side}").into_bytes();
            let ours_out = ours_both[side].encrypt(&text);
            assert_eq!(ours_out, snows_both[side].encrypt(&text), "round {round}");
            assert_eq!(ours_both[1 - side].decrypt(&ours_out).unwrap(), text);
            ours_both[side].rekey_outgoing();
            snows_both[side].rekey_outgoing();
            ours_both[1 - side].rekey_incoming();
        }
    }
}

#[test]
fn largest_handshake_payload_goes_through_snow() {
    // NX's second message holds e (32), s with its tag (48) and the payload's tag (16).
    let (initiator_side, responder_side) = sides(Pattern::Nx);
    let mut client = snow(Pattern::Nx, Role::Initiator, &initiator_side);
    let mut server = ours(Pattern::Nx, Role::Responder, &responder_side);
    server.read(&client.write(b"").unwrap()).unwrap();
    let largest = vec![7u8; MAX_MESSAGE_LEN - 96];
    let message = server.write(&largest).unwrap();
    assert_eq!(message.len(), MAX_MESSAGE_LEN);
    assert_eq!(client.read(&message).unwrap(), largest);
}
