//! The two handshake patterns the farm speaks, as the specification writes them.

use std::fmt;

/// A handshake pattern, with this crate's fixed suite `25519_ChaChaPoly_SHA256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `Noise_NX_25519_ChaChaPoly_SHA256`, for clients and servers:
    ///
    /// ```text
    /// -> e
    /// <- e, ee, s, es
    /// ```
    ///
    /// The initiator (the client) has no static key; it learns the responder's (the server's)
    /// and must check it against a pinned or remembered key.
    Nx,
    /// `Noise_XXpsk3_25519_ChaChaPoly_SHA256`, between servers:
    ///
    /// ```text
    /// -> e
    /// <- e, ee, s, es
    /// -> s, se, psk
    /// ```
    ///
    /// Both sides send their static keys, which each caller checks afterwards, and both mix in
    /// the farm's pre-shared cluster key: a side without it fails the third message.
    XxPsk3,
}

/// Which side of a handshake: the initiator writes the first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that writes the first message (the client, or the dialing server).
    Initiator,
    /// The side that reads the first message (the server, or the accepting server).
    Responder,
}

/// One token of a message pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    E,
    S,
    Ee,
    Es,
    Se,
    Psk,
}

impl Pattern {
    /// The full protocol name, which the handshake hash starts from.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Pattern::Nx => "Noise_NX_25519_ChaChaPoly_SHA256",
            Pattern::XxPsk3 => "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
        }
    }

    /// The message patterns in order; the initiator writes the even ones (counting from 0).
    pub(crate) fn messages(self) -> &'static [&'static [Token]] {
        use Token::*;
        match self {
            Pattern::Nx => &[&[E], &[E, Ee, S, Es]],
            Pattern::XxPsk3 => &[&[E], &[E, Ee, S, Es], &[S, Se, Psk]],
        }
    }

    /// Whether this pattern is in PSK mode: then every `e` token also calls `MixKey`.
    pub(crate) fn uses_psk(self) -> bool {
        self == Pattern::XxPsk3
    }

    /// Whether `role` has a static key in this pattern.
    pub(crate) fn has_static(self, role: Role) -> bool {
        match self {
            Pattern::Nx => role == Role::Responder,
            Pattern::XxPsk3 => true,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pattern::Nx => "NX",
            Pattern::XxPsk3 => "XXpsk3",
        })
    }
}

impl Role {
    /// Whether this role writes message `index` (counting from 0).
    pub(crate) fn writes(self, index: usize) -> bool {
        index.is_multiple_of(2) == (self == Role::Initiator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Initiator => "initiator",
            Role::Responder => "responder",
        })
    }
}
