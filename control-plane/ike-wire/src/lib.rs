//! IKEv2 message codec (RFC 7296 §3, RFC 7383 §2.5).
//!
//! - [`registry`]: IANA registries as open newtypes (unknown values survive a
//!   round trip and print as numbers);
//! - [`payload`]: every payload body as an owned representation with
//!   `parse`/`emit`, repeated structures bounded;
//! - [`message`]: header and payload chains; an unknown payload with the
//!   critical bit is reported ([`message::Message::first_unsupported_critical`])
//!   so the protocol answers UNSUPPORTED_CRITICAL_PAYLOAD (§2.5);
//! - [`rules`]: which payloads each exchange carries, and whether inside SK,
//!   checked before any state changes.
//!
//! Every byte is hostile: parsing never panics and never allocates more than
//! a bounded multiple of its input.
#![forbid(unsafe_code)]

pub mod message;
pub mod payload;
pub mod registry;
pub mod rules;

pub use message::{Header, Message, Payload};
pub use payload::{Attribute, Body, Proposal, TrafficSelector, Transform};
pub use registry::*;

use core::fmt;

/// Why a message could not be parsed (answer INVALID_SYNTAX, or drop if
/// unauthenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than a structure needs.
    Truncated {
        /// The structure.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A length field inconsistent with the data.
    BadLength {
        /// The structure.
        what: &'static str,
        /// The length found.
        len: usize,
    },
    /// A field value the RFC forbids.
    BadValue {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// More repetitions than this implementation accepts.
    TooMany(&'static str),
    /// Major version other than 2 (answer INVALID_MAJOR_VERSION).
    UnsupportedVersion(u8),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, need, have } => {
                write!(f, "{what}: needs {need} bytes, {have} left")
            }
            Error::BadLength { what, len } => write!(f, "{what}: inconsistent length {len}"),
            Error::BadValue { what, value } => write!(f, "{what}: invalid value {value}"),
            Error::TooMany(what) => write!(f, "too many {what}"),
            Error::UnsupportedVersion(v) => {
                write!(f, "IKE version {}.{}, expected 2.x", v >> 4, v & 0xf)
            }
        }
    }
}

impl std::error::Error for Error {}
