//! The Noise test vectors published with cacophony (the Haskell implementation), as `snow`
//! ships them: fixed keys, so every handshake and transport message must match to the byte.

use crate::{unhex, unhex32};
use chat_proto::noise::{HandshakeBuilder, HandshakeState, Keypair, Pattern, Role, Transport};

/// One vector: keys as secret key bytes, messages as (payload, ciphertext), all hexadecimal.
/// Messages alternate from the initiator; those after the handshake are transport messages.
struct Vector {
    pattern: Pattern,
    prologue: &'static str,
    psk: Option<&'static str>,
    init_static: Option<&'static str>,
    init_ephemeral: &'static str,
    resp_static: &'static str,
    resp_ephemeral: &'static str,
    handshake_hash: &'static str,
    messages: &'static [(&'static str, &'static str)],
}

#[test]
fn nx_cacophony_vector() {
    check(&NX);
}

#[test]
fn xxpsk3_cacophony_vector() {
    check(&XXPSK3);
}

#[test]
fn a_wrong_prologue_does_not_reproduce_the_vector() {
    // The check above can fail: with another prologue the responder's first reply differs.
    let vector = Vector {
        prologue: "00",
        ..NX
    };
    let (mut initiator, mut responder) = build(&vector);
    responder
        .read_message(&initiator.write_message(b"").unwrap())
        .unwrap();
    let reply = responder.write_message(&unhex(NX.messages[1].0)).unwrap();
    assert_ne!(reply, unhex(NX.messages[1].1));
}

#[track_caller]
fn check(vector: &Vector) {
    let (mut initiator, mut responder) = build(vector);
    let n_handshake = if vector.pattern == Pattern::Nx { 2 } else { 3 };
    for (idx, (payload, ciphertext)) in vector.messages[..n_handshake].iter().enumerate() {
        let (writer, reader) = if idx % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let message = writer.write_message(&unhex(payload)).unwrap();
        assert_eq!(message, unhex(ciphertext), "handshake message {idx}");
        assert_eq!(reader.read_message(&message).unwrap(), unhex(payload));
    }
    let hash = unhex32(vector.handshake_hash);
    assert_eq!(initiator.handshake_hash(), hash);
    assert_eq!(responder.handshake_hash(), hash);
    let public = |secret: &str| Keypair::from_secret_bytes(unhex32(secret)).public_key();
    assert_eq!(initiator.remote_static(), Some(public(vector.resp_static)));
    assert_eq!(responder.remote_static(), vector.init_static.map(public));

    let mut initiator: Transport = initiator.into_transport().unwrap();
    let mut responder: Transport = responder.into_transport().unwrap();
    assert_eq!(initiator.handshake_hash(), hash);
    for (idx, (payload, ciphertext)) in vector.messages.iter().enumerate().skip(n_handshake) {
        let (writer, reader) = if idx % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let message = writer.encrypt(&unhex(payload)).unwrap();
        assert_eq!(message, unhex(ciphertext), "transport message {idx}");
        assert_eq!(reader.decrypt(&message).unwrap(), unhex(payload));
    }
}

fn build(vector: &Vector) -> (HandshakeState, HandshakeState) {
    let side = |static_key: Option<&str>| {
        let mut builder = HandshakeBuilder::new(vector.pattern).prologue(&unhex(vector.prologue));
        if let Some(secret) = static_key {
            builder = builder.local_static(Keypair::from_secret_bytes(unhex32(secret)));
        }
        if let Some(psk) = vector.psk {
            builder = builder.psk(unhex32(psk));
        }
        builder
    };
    let ephemeral = |secret: &str| Keypair::from_secret_bytes(unhex32(secret));
    let initiator = side(vector.init_static)
        .build(Role::Initiator, ephemeral(vector.init_ephemeral))
        .unwrap();
    let responder = side(Some(vector.resp_static))
        .build(Role::Responder, ephemeral(vector.resp_ephemeral))
        .unwrap();
    (initiator, responder)
}

const NX: Vector = Vector {
    pattern: Pattern::Nx,
    prologue: "4a6f686e2047616c74",
    psk: None,
    init_static: None,
    init_ephemeral: "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    resp_static: "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    resp_ephemeral: "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    handshake_hash: "6959d38aed4b70824a50c722b47c07e00e88eb3eb14f351c11cbee4f56dac33b",
    messages: &[
        (
            "4c756477696720766f6e204d69736573",
            concat!(
                "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944",
                "4c756477696720766f6e204d69736573",
            ),
        ),
        (
            "4d757272617920526f746862617264",
            concat!(
                "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843",
                "0da8899553a0e2d18bb3bcdf632634e25dd60e400ecc50c371de2cd83257c763",
                "6c5913e463b6bd3f3efe3eb1c9e92f10dde5d45c312e42ff98cfadd9f9e92b01",
                "ec7604e5d2150eef5db0aed53ab203",
            ),
        ),
        (
            "462e20412e20486179656b",
            "deefd230bea16077f1ceecaad5e4284c3bf2c564e20f694a61b9d4",
        ),
        (
            "4361726c204d656e676572",
            "6bfa60de93cf432f460dcc86cf66716c22ffb502125832433808c0",
        ),
        (
            "4a65616e2d426170746973746520536179",
            concat!(
                "9c9608d8fc3ef689ae393775e8bb60c16f28ab12ff5c94015961e54addb3d649",
                "83",
            ),
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            concat!(
                "2490983755cc8a904f08a5876acb67db6821de003421b2f72f9f2389b21105ed",
                "4d43c4c799",
            ),
        ),
    ],
};

const XXPSK3: Vector = Vector {
    pattern: Pattern::XxPsk3,
    prologue: "4a6f686e2047616c74",
    psk: Some("54686973206973206d7920417573747269616e20706572737065637469766521"),
    init_static: Some("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"),
    init_ephemeral: "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    resp_static: "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    resp_ephemeral: "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    handshake_hash: "a477edf6a131bbdb54707f6ea30eab6cd935d9b560f0e5fd1f053a95a99669fb",
    messages: &[
        (
            "4c756477696720766f6e204d69736573",
            concat!(
                "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944",
                "c9f5ff0e8079630cb7e270c20bbf480821b77a384a645c71a2fd9b3db1c16a5f",
            ),
        ),
        (
            "4d757272617920526f746862617264",
            concat!(
                "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843",
                "b123def17f71e6ae8e57e0e1dec5949c5f7415c6f33517398747d821a06dc23a",
                "d430aa1fd7381d46195c378a819fd574425462cbb2d4ca339e738a0b7001dc91",
                "423fbf55a99af0c6f1df21012ceb2f",
            ),
        ),
        (
            "462e20412e20486179656b",
            concat!(
                "52187316111b118d4c060364f7b975dc0809b2590779aff2d63113c564f11744",
                "493384db7bf32d5ae6686df6ab06d508d2e07caaf1d6afc010b978735fc78900",
                "e71ae1d314130d042e729a",
            ),
        ),
        (
            "4361726c204d656e676572",
            "eaedc672d4c21e0e2955758756fb98f194c4e90d5deb5b6cf30b27",
        ),
        (
            "4a65616e2d426170746973746520536179",
            concat!(
                "522d543c5fe799d09a3d9da7ff54d0dc03c8af1dc7751d2ff708339d2290943e",
                "98",
            ),
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            concat!(
                "7d4e2c3873eef6a213b04e72f9df60a91666072d3544c5d96c34a09e2329b503",
                "0bee796741",
            ),
        ),
    ],
};
