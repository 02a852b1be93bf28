//! Building a handshake: the pattern, the role, a prologue, and the keys the pattern needs.

use super::{HandshakeState, Keypair, NoiseError, Pattern, Role, PSK_LEN};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

/// Gathers what a handshake starts from: the pattern, a prologue, and the keys the pattern
/// needs.
///
/// ```
/// use chat_proto::noise::{HandshakeBuilder, Keypair, Pattern};
///
/// let mut rng = rand_core::OsRng;
/// let server_key = Keypair::generate(&mut rng);
/// let mut client = HandshakeBuilder::new(Pattern::Nx)
///     .prologue(b"chat 3")
///     .build_initiator(&mut rng)?;
/// let mut server = HandshakeBuilder::new(Pattern::Nx)
///     .prologue(b"chat 3")
///     .local_static(server_key.clone())
///     .build_responder(&mut rng)?;
/// server.read_message(&client.write_message(b"")?)?;
/// client.read_message(&server.write_message(b"")?)?;
/// assert_eq!(client.remote_static(), Some(server_key.public_key()));
/// let (mut client, mut server) = (client.into_transport()?, server.into_transport()?);
/// assert_eq!(server.decrypt(&client.encrypt(b"hi")?)?, b"hi");
/// # Ok::<(), chat_proto::noise::NoiseError>(())
/// ```
pub struct HandshakeBuilder {
    pattern: Pattern,
    prologue: Vec<u8>,
    local_static: Option<Keypair>,
    psk: Option<Zeroizing<[u8; PSK_LEN]>>,
}

impl HandshakeBuilder {
    /// A builder for `pattern`, with an empty prologue and no keys yet.
    pub fn new(pattern: Pattern) -> HandshakeBuilder {
        HandshakeBuilder {
            pattern,
            prologue: Vec::new(),
            local_static: None,
            psk: None,
        }
    }

    /// Data that both sides must agree on without sending it (a protocol version, say): it is
    /// mixed into the handshake hash, so a mismatch fails the handshake.
    pub fn prologue(mut self, prologue: &[u8]) -> HandshakeBuilder {
        self.prologue = prologue.to_vec();
        self
    }

    /// This side's static key pair, for the roles that have one (the NX responder, and both
    /// sides of XXpsk3).
    pub fn local_static(mut self, keypair: Keypair) -> HandshakeBuilder {
        self.local_static = Some(keypair);
        self
    }

    /// The pre-shared key, for XXpsk3.
    pub fn psk(mut self, psk: [u8; PSK_LEN]) -> HandshakeBuilder {
        self.psk = Some(Zeroizing::new(psk));
        self
    }

    /// The initiator, with an ephemeral key drawn from `rng`.
    pub fn build_initiator<R>(self, rng: &mut R) -> Result<HandshakeState, NoiseError>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        self.build(Role::Initiator, Keypair::generate(rng))
    }

    /// The responder, with an ephemeral key drawn from `rng`.
    pub fn build_responder<R>(self, rng: &mut R) -> Result<HandshakeState, NoiseError>
    where
        R: CryptoRng + RngCore + ?Sized,
    {
        self.build(Role::Responder, Keypair::generate(rng))
    }

    /// `Initialize(...)` for `role` with this `ephemeral` key pair, which must be fresh and used
    /// for this one handshake only (fixed ones are for tests and fuzzing).
    pub fn build(self, role: Role, ephemeral: Keypair) -> Result<HandshakeState, NoiseError> {
        let pattern = self.pattern;
        match (pattern.has_static(role), &self.local_static) {
            (true, None) => return Err(NoiseError::MissingStaticKey { pattern, role }),
            (false, Some(_)) => return Err(NoiseError::UnusedStaticKey { pattern, role }),
            _ => {}
        }
        match (pattern.uses_psk(), &self.psk) {
            (true, None) => return Err(NoiseError::MissingPsk { pattern }),
            (false, Some(_)) => return Err(NoiseError::UnusedPsk { pattern }),
            _ => {}
        }
        Ok(HandshakeState::new(
            pattern,
            role,
            &self.prologue,
            self.local_static,
            ephemeral,
            self.psk,
        ))
    }
}
