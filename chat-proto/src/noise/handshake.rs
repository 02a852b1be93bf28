//! The specification's `HandshakeState`: writes and reads the handshake messages in order.

use super::pattern::Token;
use super::{
    CipherState, Keypair, NoiseError, Pattern, Role, SymmetricState, Transport, HASH_LEN, KEY_LEN,
    MAX_MESSAGE_LEN, PSK_LEN, TAG_LEN,
};
use std::fmt;
use zeroize::Zeroizing;

/// A handshake in progress: call [`HandshakeState::write_message`] and
/// [`HandshakeState::read_message`] in the pattern's order, then
/// [`HandshakeState::into_transport`].
///
/// Each handshake message must fit in [`MAX_MESSAGE_LEN`] bytes. Any error but a call out of
/// turn or a message of the wrong size ends the handshake for good.
pub struct HandshakeState {
    pattern: Pattern,
    role: Role,
    symmetric: SymmetricState,
    local_static: Option<Keypair>,
    local_ephemeral: Keypair,
    remote_static: Option<[u8; KEY_LEN]>,
    remote_ephemeral: Option<[u8; KEY_LEN]>,
    psk: Option<Zeroizing<[u8; PSK_LEN]>>,
    /// The index of the next message pattern to write or read.
    next_message: usize,
    progress: Progress,
}

enum Progress {
    Running,
    /// The last message is done; the cipher states of `Split()`, initiator's first.
    Finished(CipherState, CipherState),
    Failed,
}

impl HandshakeState {
    /// `Initialize(...)`: `InitializeSymmetric(protocol_name)`, then `MixHash(prologue)`.
    /// Neither pattern has pre-messages, so nothing else is hashed before the first message.
    pub(super) fn new(
        pattern: Pattern,
        role: Role,
        prologue: &[u8],
        local_static: Option<Keypair>,
        local_ephemeral: Keypair,
        psk: Option<Zeroizing<[u8; PSK_LEN]>>,
    ) -> HandshakeState {
        let mut symmetric = SymmetricState::new(pattern.protocol_name());
        symmetric.mix_hash(prologue);
        HandshakeState {
            pattern,
            role,
            symmetric,
            local_static,
            local_ephemeral,
            remote_static: None,
            remote_ephemeral: None,
            psk,
            next_message: 0,
            progress: Progress::Running,
        }
    }

    /// `WriteMessage(payload)`: the next handshake message, carrying `payload` (encrypted once
    /// the pattern has a key, as it does in every message but NX's first).
    pub fn write_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let tokens = self.next_tokens()?;
        if !self.role.writes(self.next_message) {
            return Err(NoiseError::WriteOutOfTurn);
        }
        let overhead = self.overhead(tokens);
        if overhead + payload.len() > MAX_MESSAGE_LEN {
            return Err(NoiseError::PayloadTooLong {
                len: payload.len(),
                max: MAX_MESSAGE_LEN - overhead,
            });
        }
        let result = self.write_tokens(tokens, payload);
        self.settle(result)
    }

    /// `ReadMessage(message)`: checks the next handshake message and returns its payload.
    pub fn read_message(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let tokens = self.next_tokens()?;
        if self.role.writes(self.next_message) {
            return Err(NoiseError::ReadOutOfTurn);
        }
        if message.len() > MAX_MESSAGE_LEN {
            return Err(NoiseError::MessageTooLong {
                len: message.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let min = self.overhead(tokens);
        if message.len() < min {
            return Err(NoiseError::MessageTooShort {
                len: message.len(),
                min,
            });
        }
        let result = self.read_tokens(tokens, message);
        self.settle(result)
    }

    /// Whether the handshake is over and [`HandshakeState::into_transport`] may be called.
    pub fn is_finished(&self) -> bool {
        matches!(self.progress, Progress::Finished(..))
    }

    /// Whether the next call should be `write_message` (false once finished or failed).
    pub fn is_my_turn(&self) -> bool {
        matches!(self.progress, Progress::Running) && self.role.writes(self.next_message)
    }

    /// The pattern of this handshake.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The other side's static public key, once a message has carried it. The caller must check
    /// it (against a pinned key, or the farm's registry) before trusting the other side.
    pub fn remote_static(&self) -> Option<[u8; KEY_LEN]> {
        self.remote_static
    }

    /// `GetHandshakeHash()`: the handshake hash so far; once finished, it names the session.
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.symmetric.handshake_hash()
    }

    /// The transport for the rest of the session, once the handshake is finished.
    pub fn into_transport(self) -> Result<Transport, NoiseError> {
        let handshake_hash = self.handshake_hash();
        match self.progress {
            Progress::Finished(from_initiator, from_responder) => {
                let (sending, receiving) = match self.role {
                    Role::Initiator => (from_initiator, from_responder),
                    Role::Responder => (from_responder, from_initiator),
                };
                Ok(Transport::new(
                    self.role,
                    sending,
                    receiving,
                    handshake_hash,
                    self.remote_static,
                ))
            }
            Progress::Running => Err(NoiseError::HandshakeNotFinished),
            Progress::Failed => Err(NoiseError::HandshakeFailed),
        }
    }

    /// The tokens of the next message, or why there is none.
    fn next_tokens(&self) -> Result<&'static [Token], NoiseError> {
        match self.progress {
            Progress::Running => Ok(self.pattern.messages()[self.next_message]),
            Progress::Finished(..) => Err(NoiseError::HandshakeFinished),
            Progress::Failed => Err(NoiseError::HandshakeFailed),
        }
    }

    /// The length of the next message without its payload (so the shortest it can be): keys,
    /// their tags, and the payload's tag, which are there whenever a key is set at that point.
    fn overhead(&self, tokens: &[Token]) -> usize {
        let mut has_key = self.symmetric.has_key();
        let mut len = 0;
        for token in tokens {
            match token {
                Token::E => {
                    len += KEY_LEN;
                    has_key |= self.pattern.uses_psk();
                }
                Token::S => len += KEY_LEN + if has_key { TAG_LEN } else { 0 },
                Token::Ee | Token::Es | Token::Se | Token::Psk => has_key = true,
            }
        }
        len + if has_key { TAG_LEN } else { 0 }
    }

    fn write_tokens(&mut self, tokens: &[Token], payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut message = Vec::with_capacity(self.overhead(tokens) + payload.len());
        for &token in tokens {
            match token {
                Token::E => {
                    let public = self.local_ephemeral.public_key();
                    message.extend_from_slice(&public);
                    self.mix_ephemeral(&public);
                }
                Token::S => {
                    let public = self.local_static()?.public_key();
                    let sealed = self.symmetric.encrypt_and_hash(&public)?;
                    message.extend_from_slice(&sealed);
                }
                _ => self.mix_token(token)?,
            }
        }
        message.extend_from_slice(&self.symmetric.encrypt_and_hash(payload)?);
        Ok(message)
    }

    fn read_tokens(&mut self, tokens: &[Token], message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut rest = message;
        for &token in tokens {
            match token {
                Token::E => {
                    let public = take_key(&mut rest)?;
                    self.remote_ephemeral = Some(public);
                    self.mix_ephemeral(&public);
                }
                Token::S => {
                    let len = KEY_LEN + if self.symmetric.has_key() { TAG_LEN } else { 0 };
                    let sealed = take(&mut rest, len)?;
                    let public = self.symmetric.decrypt_and_hash(sealed)?;
                    let public = public.try_into().map_err(|_| NoiseError::HandshakeFailed)?;
                    self.remote_static = Some(public);
                }
                _ => self.mix_token(token)?,
            }
        }
        self.symmetric.decrypt_and_hash(rest)
    }

    /// The `e` token after the key is in the message: `MixHash`, and in PSK mode `MixKey` too.
    fn mix_ephemeral(&mut self, public: &[u8; KEY_LEN]) {
        self.symmetric.mix_hash(public);
        if self.pattern.uses_psk() {
            self.symmetric.mix_key(public);
        }
    }

    /// The `ee`, `es`, `se` and `psk` tokens, the same for writing and reading.
    fn mix_token(&mut self, token: Token) -> Result<(), NoiseError> {
        let initiator = self.role == Role::Initiator;
        let shared = match token {
            Token::Ee => self.local_ephemeral.dh(self.remote_ephemeral()?),
            Token::Es if initiator => self.local_ephemeral.dh(self.remote_static_key()?),
            Token::Es => self.local_static()?.dh(self.remote_ephemeral()?),
            Token::Se if initiator => self.local_static()?.dh(self.remote_ephemeral()?),
            Token::Se => self.local_ephemeral.dh(self.remote_static_key()?),
            Token::Psk => {
                let psk = self.psk.as_ref().ok_or(NoiseError::MissingPsk {
                    pattern: self.pattern,
                })?;
                self.symmetric.mix_key_and_hash(psk.as_slice());
                return Ok(());
            }
            Token::E | Token::S => unreachable!("key tokens are written and read by the caller"),
        };
        self.symmetric.mix_key(shared.as_slice());
        Ok(())
    }

    fn local_static(&self) -> Result<&Keypair, NoiseError> {
        self.local_static
            .as_ref()
            .ok_or(NoiseError::MissingStaticKey {
                pattern: self.pattern,
                role: self.role,
            })
    }

    // The patterns always send a key before using it, so these two cannot fail; they answer
    // with an error rather than a panic all the same.
    fn remote_ephemeral(&self) -> Result<&[u8; KEY_LEN], NoiseError> {
        self.remote_ephemeral
            .as_ref()
            .ok_or(NoiseError::HandshakeFailed)
    }

    fn remote_static_key(&self) -> Result<&[u8; KEY_LEN], NoiseError> {
        self.remote_static
            .as_ref()
            .ok_or(NoiseError::HandshakeFailed)
    }

    /// Moves on after a message: to the next one, to `Split()` after the last, or to failure.
    fn settle(&mut self, result: Result<Vec<u8>, NoiseError>) -> Result<Vec<u8>, NoiseError> {
        if result.is_err() {
            self.progress = Progress::Failed;
            return result;
        }
        self.next_message += 1;
        if self.next_message == self.pattern.messages().len() {
            let (from_initiator, from_responder) = self.symmetric.split();
            self.progress = Progress::Finished(from_initiator, from_responder);
        }
        result
    }
}

impl fmt::Debug for HandshakeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeState")
            .field("pattern", &self.pattern)
            .field("role", &self.role)
            .field("next_message", &self.next_message)
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// The next `len` bytes of a message. The length was checked up front, so running short means
/// a bug in that check; it still answers with an error.
fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], NoiseError> {
    if rest.len() < len {
        return Err(NoiseError::HandshakeFailed);
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

/// The next public key of a message.
fn take_key(rest: &mut &[u8]) -> Result<[u8; KEY_LEN], NoiseError> {
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(take(rest, KEY_LEN)?);
    Ok(key)
}
