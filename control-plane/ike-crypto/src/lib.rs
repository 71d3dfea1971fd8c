//! IKEv2 cryptography for Sluice's control plane, over maintained
//! libraries (RustCrypto HMAC/SHA-2/AES/GCM, ring for key agreement):
//!
//! - [`prf`]: PRF_HMAC_SHA2_256/384/512 and prf+ (RFC 7296 §2.13);
//! - [`keys`]: SKEYSEED and SK_d/ai/ar/ei/er/pi/pr (§2.14), rekeyed SKEYSEED
//!   (§2.18), CHILD SA KEYMAT (§2.17), shared-key AUTH (§2.15);
//! - [`ke`]: Curve25519, ECP-256/384 and MODP-2048/3072 with peer value validation;
//! - [`sk`]: the Encrypted payload with AES-CBC + HMAC-SHA2 or AES-GCM-16.
//!
//! The protocol core stays sans-IO: IVs are passed in by the caller; only
//! ephemeral key generation draws from the OS RNG (through ring, whose RNG
//! trait cannot be implemented outside it).
//!
//! Secrets are `Zeroizing` buffers and never printed.
#![forbid(unsafe_code)]

pub mod ke;
pub mod keys;
mod modp;
pub mod prf;
pub mod sk;

use core::fmt;

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key of the wrong length for the negotiated transform.
    KeyLength,
    /// An IV of the wrong length.
    IvLength,
    /// The payload is shorter than IV, one byte and ICV, or not whole blocks.
    Truncated,
    /// The ICV did not verify: the message is dropped.
    IntegrityCheck,
    /// The pad length exceeds the decrypted data.
    Padding,
    /// The peer's public value was refused (RFC 7296 §2.12: answer
    /// INVALID_SYNTAX or drop).
    BadPeerPublic {
        /// The DH group.
        group: u16,
        /// What was wrong.
        reason: &'static str,
    },
    /// The random number generator failed.
    Rng,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::KeyLength => f.write_str("key length does not match the transform"),
            CryptoError::IvLength => f.write_str("IV length does not match the transform"),
            CryptoError::Truncated => {
                f.write_str("encrypted payload too short or not whole blocks")
            }
            CryptoError::IntegrityCheck => f.write_str("integrity check value did not verify"),
            CryptoError::Padding => f.write_str("pad length larger than the decrypted data"),
            CryptoError::BadPeerPublic { group, reason } => {
                write!(
                    f,
                    "peer's key exchange value for group {group} refused: {reason}"
                )
            }
            CryptoError::Rng => f.write_str("random number generator failed"),
        }
    }
}

impl std::error::Error for CryptoError {}
