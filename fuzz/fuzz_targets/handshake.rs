//! Feeds arbitrary bytes to the Noise handshakes and transport: as the first message to NX and
//! XXpsk3 responders, as the second message to an NX initiator, as the third message to an
//! XXpsk3 responder, and as transport messages.
//!
//! Nothing may panic; an authenticated message must never be accepted; and a message that fails
//! to decrypt must not disturb the honest stream.

#![no_main]

use chat_proto::noise::{HandshakeBuilder, HandshakeState, Keypair, Pattern, Role, Transport};
use libfuzzer_sys::fuzz_target;

const PROLOGUE: &[u8] = b"chat fuzz";
const PSK: [u8; 32] = [0x70; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => first_message(Pattern::Nx, input),
        1 => first_message(Pattern::XxPsk3, input),
        2 => xxpsk3_third_message(input),
        3 => nx_second_message(input),
        _ => transport(input),
    }
});

/// A side of `pattern` with fixed keys: fuzzing must be repeatable.
fn side(pattern: Pattern, role: Role) -> HandshakeState {
    let mut builder = HandshakeBuilder::new(pattern).prologue(PROLOGUE);
    if pattern == Pattern::XxPsk3 || role == Role::Responder {
        let seed = if role == Role::Initiator { 1 } else { 2 };
        builder = builder.local_static(Keypair::from_secret_bytes([seed; 32]));
    }
    if pattern == Pattern::XxPsk3 {
        builder = builder.psk(PSK);
    }
    let ephemeral_seed = if role == Role::Initiator { 3 } else { 4 };
    builder
        .build(role, Keypair::from_secret_bytes([ephemeral_seed; 32]))
        .expect("the fuzzing setup is valid")
}

/// A responder reads `input` as the first message, then writes its reply.
fn first_message(pattern: Pattern, input: &[u8]) {
    let mut responder = side(pattern, Role::Responder);
    if responder.read_message(input).is_ok() {
        // In XXpsk3 the first payload is encrypted under the psk: garbage cannot pass.
        assert_eq!(
            pattern,
            Pattern::Nx,
            "garbage passed XXpsk3's first message"
        );
        let reply = responder.write_message(b"reply");
        assert!(reply.is_ok(), "the reply failed: {reply:?}");
    }
}

/// An NX initiator reads `input` as the server's reply, which is authenticated.
fn nx_second_message(input: &[u8]) {
    let mut initiator = side(Pattern::Nx, Role::Initiator);
    initiator.write_message(b"").expect("the first message");
    assert!(initiator.read_message(input).is_err(), "garbage passed NX");
}

/// An XXpsk3 responder, after an honest start, reads `input` as the third message.
fn xxpsk3_third_message(input: &[u8]) {
    let mut initiator = side(Pattern::XxPsk3, Role::Initiator);
    let mut responder = side(Pattern::XxPsk3, Role::Responder);
    let first = initiator.write_message(b"").expect("the first message");
    responder
        .read_message(&first)
        .expect("an honest first message");
    responder.write_message(b"").expect("the second message");
    assert!(
        responder.read_message(input).is_err(),
        "garbage passed XXpsk3"
    );
}

/// Transports after an honest NX handshake: each chunk of `input` (a length byte, then that
/// many bytes) goes to the server's `decrypt`, and an honest message must still decrypt after
/// every failure.
fn transport(mut input: &[u8]) {
    let (mut client, mut server) = honest_transports();
    while let Some((&len, rest)) = input.split_first() {
        let len = usize::from(len).min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        input = tail;
        let nonce = server.receiving_nonce();
        assert!(server.decrypt(chunk).is_err(), "garbage decrypted");
        assert_eq!(
            server.receiving_nonce(),
            nonce,
            "a failure moved the counter"
        );
        let honest = client.encrypt(chunk).expect("an honest message");
        assert_eq!(server.decrypt(&honest).expect("the honest stream"), chunk);
    }
}

fn honest_transports() -> (Transport, Transport) {
    let mut client = side(Pattern::Nx, Role::Initiator);
    let mut server = side(Pattern::Nx, Role::Responder);
    let first = client.write_message(b"").expect("the first message");
    server
        .read_message(&first)
        .expect("an honest first message");
    let second = server.write_message(b"").expect("the second message");
    client
        .read_message(&second)
        .expect("an honest second message");
    (
        client.into_transport().expect("finished"),
        server.into_transport().expect("finished"),
    )
}
