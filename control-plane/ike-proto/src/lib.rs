//! Sans-IO IKEv2 (RFC 7296) for Sluice.
//!
//! Time and randomness go in, datagrams and events come out: the daemon
//! pumps [`IkeSa::handle`], [`IkeSa::handle_timeout`],
//! [`IkeSa::poll_transmit`], [`IkeSa::poll_event`] and
//! [`IkeSa::poll_timeout`]. Implemented so far: IKE_SA_INIT (proposal check,
//! INVALID_KE_PAYLOAD answered and retried, COOKIE retried, NAT detection
//! and the move to port 4500), IKE_AUTH with shared keys and the first
//! CHILD SA (AES-GCM-16 ESP, traffic selector narrowing), request
//! retransmission with exponential backoff and dead-peer declaration,
//! cached responses for retransmitted requests, out-of-window and
//! unauthenticated messages dropped without state change.
//! INFORMATIONAL: Delete of the IKE SA or of CHILD SAs (answered with the
//! reverse-direction SPIs) and liveness checks, in both directions, with one
//! request outstanding and the rest queued.
//! CREATE_CHILD_SA for additional CHILD SAs (no PFS yet), in both roles.
//! Not yet: rekeying (REKEY_SA, PFS), certificates, fragmentation, EAP.
#![forbid(unsafe_code)]

pub mod config;
pub mod keylog;
pub mod sa;

pub mod cookie;
pub mod dn;
pub use config::{
    ChildConfig, Config, EspProposal, Identity, IkeProposal, LocalAuth, RemoteAuth, Retransmit,
    Selector, SendCert,
};
pub use sa::{nat_hash, IkeSa, Role, State};

use core::fmt;
use ike_crypto::keys::Secret;
use ike_wire::NotifyType;
use std::net::SocketAddr;

/// A source of randomness (SPIs, nonces, IVs): the OS RNG in the daemon, a
/// seeded generator in tests.
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// A datagram to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Destination (the peer, port 500 or 4500).
    pub dst: SocketAddr,
    /// The IKE message (without the non-ESP marker).
    pub data: Vec<u8>,
}

/// A negotiated CHILD SA to install in the data plane.
pub struct ChildSa {
    /// SPI of our inbound SA (chosen by us).
    pub spi_in: u32,
    /// SPI of our outbound SA (chosen by the peer).
    pub spi_out: u32,
    /// Inbound key and salt.
    pub encr_in: Secret,
    /// Outbound key and salt.
    pub encr_out: Secret,
    /// Inbound integrity key (empty for AEAD).
    pub integ_in: Secret,
    /// Outbound integrity key (empty for AEAD).
    pub integ_out: Secret,
    /// Transform.
    pub esp: EspProposal,
    /// Our traffic selectors.
    pub local_ts: Vec<Selector>,
    /// The peer's.
    pub remote_ts: Vec<Selector>,
    /// UDP encapsulation (NAT detected).
    pub nat_t: bool,
    /// Set when this CHILD SA rekeys another (RFC 7296 §2.8): that SA's
    /// inbound SPI. The old one is deleted with an INFORMATIONAL exchange
    /// right after; its traffic should move to this one now.
    pub rekeys: Option<u32>,
    /// We sent the request that created it (IKE_AUTH or CREATE_CHILD_SA).
    /// On a rekey the responder should keep sending on the old SA until the
    /// initiator deletes it, which proves the initiator has the new one.
    pub initiator: bool,
}

impl ChildSa {
    /// The two rows of Wireshark's `esp_sa` table for this CHILD SA
    /// (outbound then inbound), for an operator's explicit, opt-in key log.
    pub fn wireshark_esp_sa_lines(
        &self,
        local: std::net::IpAddr,
        remote: std::net::IpAddr,
    ) -> [String; 2] {
        let fam = if local.is_ipv4() { "IPv4" } else { "IPv6" };
        let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let (encr, integ) = match self.esp {
            EspProposal::AesGcm16 { .. } => ("AES-GCM with 16 octet ICV [RFC4106]", "NULL"),
            EspProposal::AesCbcHmacSha256 { .. } => {
                ("AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]")
            }
            EspProposal::ChaCha20Poly1305 => ("ChaCha20 with Poly1305 [RFC7634]", "NULL"),
        };
        let row = |src: std::net::IpAddr,
                   dst: std::net::IpAddr,
                   spi: u32,
                   key: &[u8],
                   ik: &[u8]| {
            let ik = if ik.is_empty() {
                String::new()
            } else {
                format!("0x{}", h(ik))
            };
            format!(
                "\"{fam}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{encr}\",\"0x{}\",\"{integ}\",\"{ik}\"",
                h(key)
            )
        };
        [
            row(local, remote, self.spi_out, &self.encr_out, &self.integ_out),
            row(remote, local, self.spi_in, &self.encr_in, &self.integ_in),
        ]
    }
}

impl fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSa")
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("rekeys", &self.rekeys)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

/// What happened.
#[derive(Debug)]
pub enum Event {
    /// The IKE SA is authenticated.
    Established {
        /// Initiator SPI.
        spi_i: u64,
        /// Responder SPI.
        spi_r: u64,
    },
    /// A CHILD SA to install.
    ChildInstalled(ChildSa),
    /// The IKE SA (or its CHILD) failed.
    Failed {
        /// Why.
        reason: String,
        /// The Notify involved.
        notify: Option<NotifyType>,
    },
    /// No answer after the configured retransmissions.
    PeerDead,
    /// A CHILD SA was deleted (by us or the peer): remove both SAs.
    ChildDeleted {
        /// Our inbound SPI.
        spi_in: u32,
        /// Our outbound SPI.
        spi_out: u32,
    },
    /// The IKE SA was deleted (by us or the peer).
    Deleted,
    /// The peer answered our liveness check.
    Alive,
    /// We answered the peer's liveness check.
    LivenessAnswered,
    /// Something worth a log line: the chosen proposal, the payloads of a
    /// protected message parsed or generated (the daemon logs these).
    Log(String),
    /// A datagram was dropped without changing state (malformed,
    /// unauthenticated, out of window).
    Dropped(String),
    /// This IKE SA was rekeyed (RFC 7296 §2.18): the new one, holding the
    /// CHILD SAs, takes over (its SPIs route the peer's messages); this one
    /// only exchanges its own Delete before reporting [`Event::Deleted`].
    IkeRekeyed(Box<IkeSa>),
    /// A simultaneous IKE SA rekey (RFC 7296 §2.18, §2.25.2) made a second
    /// new IKE SA, which the nonces say must go: it holds no CHILD SAs and
    /// exchanges only its Delete (sent by it, or awaited from the peer),
    /// then reports [`Event::Deleted`]. The owner routes its messages.
    IkeRedundant(Box<IkeSa>),
    /// A rekey we asked for did not happen and may be tried again later
    /// (the peer answered TEMPORARY_FAILURE or another error): the CHILD SA
    /// with this inbound SPI, or the IKE SA when `None`.
    RekeyFailed {
        /// Our inbound SPI of the CHILD SA, or `None` for the IKE SA.
        child: Option<u32>,
        /// The peer's reason.
        notify: NotifyType,
    },
}

/// Why processing failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Malformed message.
    Wire(ike_wire::Error),
    /// Payload rules broken.
    Rules(ike_wire::rules::RuleViolation),
    /// Cryptographic failure (bad ICV, bad KE value).
    Crypto(ike_crypto::CryptoError),
    /// An authenticated request refused with this Notify (and its data),
    /// which was sent back.
    Rejected(NotifyType, Vec<u8>),
    /// A message that does not fit the exchange.
    Unexpected(&'static str),
    /// Internal state missing.
    State(&'static str),
    /// We cannot produce our AUTH payload (key, peer's hash algorithms).
    Auth(String),
    /// A fragment (number, total) was kept; the message is not complete.
    Fragment(u16, u16),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Wire(e) => write!(f, "malformed: {e}"),
            Error::Rules(e) => write!(f, "payload rules: {e}"),
            Error::Crypto(e) => write!(f, "crypto: {e}"),
            Error::Rejected(n, _) => write!(f, "request refused with {n}"),
            Error::Unexpected(m) => write!(f, "unexpected: {m}"),
            Error::State(m) => write!(f, "state: {m}"),
            Error::Auth(m) => write!(f, "authentication: {m}"),
            Error::Fragment(n, t) => write!(f, "fragment {n} of {t} kept"),
        }
    }
}

impl std::error::Error for Error {}
