//! The IKE header (RFC 7296 §3.1), the generic payload header (§3.2) and
//! whole messages.
//!
//! ```text
//!                      1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Generic payload header:
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! ```

use crate::payload::{take, u16_, u32_, u8_, Body};
use crate::registry::{ExchangeType, PayloadType};
use crate::Error;

/// Length of the IKE header.
pub const HEADER_LEN: usize = 28;
/// Payloads in one message, at most (bounds work on hostile input).
pub const MAX_PAYLOADS: usize = 64;

/// Flag: sent by the original initiator of the IKE SA.
pub const FLAG_INITIATOR: u8 = 0x08;
/// Flag: the sender can speak a higher major version.
pub const FLAG_VERSION: u8 = 0x10;
/// Flag: this message is a response.
pub const FLAG_RESPONSE: u8 = 0x20;

/// The IKE header (RFC 7296 §3.1); `length` is computed on emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// IKE SA initiator's SPI.
    pub spi_i: u64,
    /// IKE SA responder's SPI (0 in the first message).
    pub spi_r: u64,
    /// Version byte (0x20 for IKEv2.0).
    pub version: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags ([`FLAG_INITIATOR`], [`FLAG_RESPONSE`], [`FLAG_VERSION`]).
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
}

impl Header {
    /// Whether the message is a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// "request" or "response", for logs.
    pub fn kind(&self) -> &'static str {
        if self.is_response() {
            "response"
        } else {
            "request"
        }
    }

    /// Whether the sender is the IKE SA's original initiator.
    pub fn from_initiator(&self) -> bool {
        self.flags & FLAG_INITIATOR != 0
    }
}

/// One payload: type, critical bit, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Payload type.
    pub ptype: PayloadType,
    /// Critical bit (RFC 7296 §2.5).
    pub critical: bool,
    /// Body.
    pub body: Body,
}

impl Payload {
    /// A non-critical payload.
    pub fn new(ptype: PayloadType, body: Body) -> Payload {
        Payload {
            ptype,
            critical: false,
            body,
        }
    }
}

/// A parsed IKE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Header.
    pub header: Header,
    /// Payloads in order; an SK or SKF payload is always the last.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram (after the non-ESP marker, on port 4500). The
    /// header's length must not exceed the datagram; trailing bytes beyond it
    /// are ignored. Only major version 2 is accepted
    /// ([`Error::UnsupportedVersion`]: answer INVALID_MAJOR_VERSION).
    pub fn parse(bytes: &[u8]) -> Result<Message, Error> {
        let mut b = bytes;
        let spi_i =
            u64::from_be_bytes(take(&mut b, 8, "IKE header")?.try_into().map_err(|_| {
                Error::Truncated {
                    what: "IKE header",
                    need: 8,
                    have: 0,
                }
            })?);
        let spi_r =
            u64::from_be_bytes(take(&mut b, 8, "IKE header")?.try_into().map_err(|_| {
                Error::Truncated {
                    what: "IKE header",
                    need: 8,
                    have: 0,
                }
            })?);
        let next = PayloadType(u8_(&mut b, "IKE header")?);
        let version = u8_(&mut b, "IKE header")?;
        if version >> 4 != 2 {
            return Err(Error::UnsupportedVersion(version));
        }
        let exchange = ExchangeType(u8_(&mut b, "IKE header")?);
        let flags = u8_(&mut b, "IKE header")?;
        let message_id = u32_(&mut b, "IKE header")?;
        let length = u32_(&mut b, "IKE header")? as usize;
        if length < HEADER_LEN || length > bytes.len() {
            return Err(Error::BadLength {
                what: "IKE message",
                len: length,
            });
        }
        let payloads = parse_chain(next, &bytes[HEADER_LEN..length], true)?;
        Ok(Message {
            header: Header {
                spi_i,
                spi_r,
                version,
                exchange,
                flags,
                message_id,
            },
            payloads,
        })
    }

    /// Parses the decrypted content of an SK payload: a payload chain that
    /// starts with `first` and fills `bytes` exactly.
    pub fn parse_inner(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, Error> {
        parse_chain(first, bytes, false)
    }

    /// Serialises a payload chain (inner payloads of an SK payload, or the
    /// payloads of a plaintext message).
    pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) {
        for (i, p) in payloads.iter().enumerate() {
            let next = match (&p.body, payloads.get(i + 1)) {
                (Body::Sk { first_inner, .. } | Body::Skf { first_inner, .. }, _) => first_inner.0,
                (_, Some(n)) => n.ptype.0,
                (_, None) => 0,
            };
            let start = out.len();
            out.extend_from_slice(&[next, if p.critical { 0x80 } else { 0 }, 0, 0]);
            p.body.emit(out);
            let len = (out.len() - start) as u16;
            out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Serialises the message, computing every length.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let h = &self.header;
        out.extend_from_slice(&h.spi_i.to_be_bytes());
        out.extend_from_slice(&h.spi_r.to_be_bytes());
        out.push(self.payloads.first().map_or(0, |p| p.ptype.0));
        out.extend_from_slice(&[h.version, h.exchange.0, h.flags]);
        out.extend_from_slice(&h.message_id.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        Self::emit_payloads(&self.payloads, &mut out);
        let len = out.len() as u32;
        out[24..28].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// The first payload of an unknown type with the critical bit set: the
    /// responder answers UNSUPPORTED_CRITICAL_PAYLOAD with its type
    /// (RFC 7296 §2.5).
    pub fn first_unsupported_critical(payloads: &[Payload]) -> Option<PayloadType> {
        payloads
            .iter()
            .find(|p| p.critical && matches!(p.body, Body::Unknown(_)))
            .map(|p| p.ptype)
    }

    /// Payload types in order, for logs (`[ SA KE No N(NAT_DETECTION_SOURCE_IP) ]`).
    pub fn summary(payloads: &[Payload]) -> String {
        let mut s = String::from("[");
        for p in payloads {
            s.push(' ');
            match &p.body {
                Body::Notify { ntype, .. } => s.push_str(&format!("N({ntype})")),
                _ => s.push_str(&p.ptype.to_string()),
            }
        }
        s.push_str(" ]");
        s
    }
}

/// Parses a payload chain starting with `first` that fills `b` exactly. In an
/// outer message (`outer`) an SK or SKF payload ends the chain (its Next
/// Payload names the first inner payload, §3.14); inside SK it is an error.
fn parse_chain(first: PayloadType, mut b: &[u8], outer: bool) -> Result<Vec<Payload>, Error> {
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        if out.len() >= MAX_PAYLOADS {
            return Err(Error::TooMany("payloads"));
        }
        let ptype = next;
        next = PayloadType(u8_(&mut b, "payload header")?);
        let critical = u8_(&mut b, "payload header")? & 0x80 != 0;
        let len = usize::from(u16_(&mut b, "payload header")?);
        if len < 4 {
            return Err(Error::BadLength {
                what: "payload",
                len,
            });
        }
        let body = take(&mut b, len - 4, "payload body")?;
        let encrypted = matches!(ptype, PayloadType::SK | PayloadType::SKF);
        if encrypted && !outer {
            return Err(Error::BadValue {
                what: "SK inside SK",
                value: u32::from(ptype.0),
            });
        }
        out.push(Payload {
            ptype,
            critical,
            body: Body::parse(ptype, next, body)?,
        });
        if encrypted {
            next = PayloadType::NONE;
        }
    }
    if !b.is_empty() {
        return Err(Error::BadLength {
            what: "bytes after the last payload",
            len: b.len(),
        });
    }
    Ok(out)
}
