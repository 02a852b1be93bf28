//! Tests of `chat-proto` through its public interface; one binary, one module per feature.
//!
//! The Noise tests check this crate against the specification's published test vectors and
//! against the `snow` crate, an independent implementation, in both roles.

mod noise_attacks;
mod noise_props;
mod noise_snow;
mod noise_transport;
mod noise_vectors;
mod peers;
mod secure_batches;

/// Bytes from hexadecimal, for keys and test vectors.
#[track_caller]
pub fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex: {text}");
    (0..text.len())
        .step_by(2)
        .map(|idx| u8::from_str_radix(&text[idx..idx + 2], 16).expect("hex digit"))
        .collect()
}

/// 32 bytes from hexadecimal.
#[track_caller]
pub fn unhex32(text: &str) -> [u8; 32] {
    unhex(text).try_into().expect("32 bytes")
}
