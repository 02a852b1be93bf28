//! One interface over this crate's Noise and `snow`'s, so that every test can pair any two.

use chat_proto::noise::{HandshakeBuilder, HandshakeState, Keypair, Pattern, Role, Transport};
use rand_core::OsRng;

/// The largest Noise message, as a buffer size for `snow`.
const BUF_LEN: usize = 65535;

/// What each side starts a handshake with.
#[derive(Clone, Debug)]
pub struct Side {
    pub prologue: Vec<u8>,
    pub static_key: Option<Keypair>,
    pub psk: Option<[u8; 32]>,
    /// A fixed ephemeral key, for byte-for-byte comparisons; fresh from the OS otherwise.
    pub ephemeral: Option<Keypair>,
}

/// The initiator's and the responder's setup for `pattern`, with fresh keys and a shared psk.
pub fn sides(pattern: Pattern) -> (Side, Side) {
    let psk = (pattern == Pattern::XxPsk3).then_some([0x5a; 32]);
    let side = |has_static: bool| Side {
        prologue: b"chat-farm test prologue".to_vec(),
        static_key: has_static.then(|| Keypair::generate(&mut OsRng)),
        psk,
        ephemeral: None,
    };
    (side(pattern == Pattern::XxPsk3), side(true))
}

/// A handshake in progress, on either implementation.
pub trait Handshaker {
    fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, String>;
    fn read(&mut self, message: &[u8]) -> Result<Vec<u8>, String>;
    fn remote_static(&self) -> Option<[u8; 32]>;
    fn handshake_hash(&self) -> [u8; 32];
    fn into_session(self: Box<Self>) -> Box<dyn Session>;
}

/// Transport messages after a handshake, on either implementation.
pub trait Session {
    fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8>;
    fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, String>;
    fn rekey_outgoing(&mut self);
    fn rekey_incoming(&mut self);
}

/// This crate's side of a handshake.
pub fn ours(pattern: Pattern, role: Role, side: &Side) -> HandshakeState {
    let mut builder = HandshakeBuilder::new(pattern).prologue(&side.prologue);
    if let Some(keypair) = &side.static_key {
        builder = builder.local_static(keypair.clone());
    }
    if let Some(psk) = side.psk {
        builder = builder.psk(psk);
    }
    match (&side.ephemeral, role) {
        (Some(ephemeral), _) => builder.build(role, ephemeral.clone()),
        (None, Role::Initiator) => builder.build_initiator(&mut OsRng),
        (None, Role::Responder) => builder.build_responder(&mut OsRng),
    }
    .expect("our handshake builds")
}

/// `snow`'s side of a handshake.
pub fn snow(pattern: Pattern, role: Role, side: &Side) -> snow::HandshakeState {
    let params = pattern
        .protocol_name()
        .parse()
        .expect("snow knows the pattern");
    let secret = side
        .static_key
        .as_ref()
        .map(|keypair| keypair.secret_bytes());
    let ephemeral = side
        .ephemeral
        .as_ref()
        .map(|keypair| keypair.secret_bytes());
    let mut builder = snow::Builder::new(params).prologue(&side.prologue).unwrap();
    if let Some(secret) = &secret {
        builder = builder.local_private_key(secret.as_slice()).unwrap();
    }
    if let Some(psk) = &side.psk {
        builder = builder.psk(3, psk).unwrap();
    }
    if let Some(ephemeral) = &ephemeral {
        builder = builder.fixed_ephemeral_key_for_testing_only(ephemeral.as_slice());
    }
    match role {
        Role::Initiator => builder.build_initiator(),
        Role::Responder => builder.build_responder(),
    }
    .expect("snow's handshake builds")
}

impl Handshaker for HandshakeState {
    fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.write_message(payload).map_err(|err| err.to_string())
    }

    fn read(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.read_message(message).map_err(|err| err.to_string())
    }

    fn remote_static(&self) -> Option<[u8; 32]> {
        HandshakeState::remote_static(self)
    }

    fn handshake_hash(&self) -> [u8; 32] {
        HandshakeState::handshake_hash(self)
    }

    fn into_session(self: Box<Self>) -> Box<dyn Session> {
        Box::new(self.into_transport().expect("the handshake is finished"))
    }
}

impl Session for Transport {
    fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        Transport::encrypt(self, plaintext).expect("we encrypt")
    }

    fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        Transport::decrypt(self, message).map_err(|err| err.to_string())
    }

    fn rekey_outgoing(&mut self) {
        Transport::rekey_outgoing(self);
    }

    fn rekey_incoming(&mut self) {
        Transport::rekey_incoming(self);
    }
}

impl Handshaker for snow::HandshakeState {
    fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; BUF_LEN];
        let len = self
            .write_message(payload, &mut buf)
            .map_err(|err| err.to_string())?;
        buf.truncate(len);
        Ok(buf)
    }

    fn read(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; BUF_LEN];
        let len = self
            .read_message(message, &mut buf)
            .map_err(|err| err.to_string())?;
        buf.truncate(len);
        Ok(buf)
    }

    fn remote_static(&self) -> Option<[u8; 32]> {
        self.get_remote_static()
            .map(|key| key.try_into().expect("32 bytes"))
    }

    fn handshake_hash(&self) -> [u8; 32] {
        self.get_handshake_hash().try_into().expect("32 bytes")
    }

    fn into_session(self: Box<Self>) -> Box<dyn Session> {
        Box::new(
            self.into_transport_mode()
                .expect("snow's handshake is finished"),
        )
    }
}

impl Session for snow::TransportState {
    fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; BUF_LEN];
        let len = self
            .write_message(plaintext, &mut buf)
            .expect("snow encrypts");
        buf.truncate(len);
        buf
    }

    fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; BUF_LEN];
        let len = self
            .read_message(message, &mut buf)
            .map_err(|err| err.to_string())?;
        buf.truncate(len);
        Ok(buf)
    }

    fn rekey_outgoing(&mut self) {
        snow::TransportState::rekey_outgoing(self);
    }

    fn rekey_incoming(&mut self) {
        snow::TransportState::rekey_incoming(self);
    }
}

/// The payload of handshake message `idx`; every message of both patterns may carry one.
pub fn handshake_payload(idx: usize) -> Vec<u8> {
    format!("handshake payload {idx}").into_bytes()
}

/// Runs the whole handshake, checking each payload and that both sides end with the same
/// handshake hash, and returns both sides' transports (initiator's first) with the static key
/// each side learned.
#[track_caller]
pub fn handshake(
    pattern: Pattern,
    initiator: Box<dyn Handshaker>,
    responder: Box<dyn Handshaker>,
) -> Finished {
    let (mut initiator, mut responder) = (initiator, responder);
    let n_messages = if pattern == Pattern::Nx { 2 } else { 3 };
    for idx in 0..n_messages {
        let (writer, reader) = if idx % 2 == 0 {
            (&mut initiator, &mut responder)
        } else {
            (&mut responder, &mut initiator)
        };
        let message = writer.write(&handshake_payload(idx)).expect("write");
        let payload = reader.read(&message).expect("read");
        assert_eq!(payload, handshake_payload(idx), "payload of message {idx}");
    }
    assert_eq!(initiator.handshake_hash(), responder.handshake_hash());
    Finished {
        initiator_learned: initiator.remote_static(),
        responder_learned: responder.remote_static(),
        initiator: initiator.into_session(),
        responder: responder.into_session(),
    }
}

/// Both ends of a finished handshake.
pub struct Finished {
    pub initiator: Box<dyn Session>,
    pub responder: Box<dyn Session>,
    pub initiator_learned: Option<[u8; 32]>,
    pub responder_learned: Option<[u8; 32]>,
}

/// Sends `count` transport messages each way, alternating, and checks each arrives intact.
#[track_caller]
pub fn chat(initiator: &mut dyn Session, responder: &mut dyn Session, count: usize, tag: &str) {
    for idx in 0..count {
        let there = format!("{tag}: initiator to responder {idx}").into_bytes();
        let sealed = initiator.encrypt(&there);
        assert_eq!(
            responder.decrypt(&sealed).expect("responder decrypts"),
            there
        );
        let back = format!("{tag}: responder to initiator {idx}").into_bytes();
        let sealed = responder.encrypt(&back);
        assert_eq!(
            initiator.decrypt(&sealed).expect("initiator decrypts"),
            back
        );
    }
}
