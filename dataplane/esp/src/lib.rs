//! Sluice's ESP engine: RFC 4303 tunnel mode with RFC 3948 UDP encapsulation,
//! sans-IO, batched and in place.
//!
//! The engine takes no socket, clock or random number generator. The data
//! plane hands it bursts of packets in its own buffers together with the SA
//! each packet belongs to; the engine rewrites them in place and says, per
//! packet, whether it is ready to send or must be dropped and why.
//!
//! # Algorithms
//! AES-GCM-128/256 with a 16-byte ICV (RFC 4106), ChaCha20-Poly1305 (RFC 7634),
//! AES-CBC-128/256 with HMAC-SHA-256-128 (RFC 3602, RFC 4868). AEAD IVs are the
//! 64-bit sequence number (RFC 4106 §3.1, unique per key); CBC IVs are the
//! SA's block cipher applied to (sequence number, SPI) (NIST SP 800-38A
//! Appendix C), unpredictable without a random number per packet. Each SA's
//! key schedule ([`Cipher`]) is built once; see [`crypto`] for the backends.
//!
//! # Buffer contract
//! A packet is a [`PacketBuf`]: a mutable byte slice (the buffer, e.g. an
//! AF_XDP frame or a DPDK mbuf's data room) with the packet at
//! `buf[head..head + len]`.
//!
//! - **Encapsulation** takes the inner IPv4/IPv6 packet and leaves the outer
//!   packet, starting at the outer IP header, in the same buffer: it grows
//!   towards the front by up to [`ENCAP_HEADROOM`] bytes (outer IPv6 40,
//!   UDP 8, ESP 8 and IV 16) and towards the back by up to [`ENCAP_TAILROOM`]
//!   bytes (padding up to 15, pad length and next header 2, ICV 16). The
//!   exact amounts for an SA are [`OutboundSa::headroom`] and
//!   [`OutboundSa::tailroom`]. Frames should reserve [`BUF_HEADROOM`] (128)
//!   in front of the received L2 header. A packet without the room is
//!   dropped with [`DropReason::NoHeadroom`] / [`DropReason::NoTailroom`];
//!   nothing is ever copied or allocated to make room.
//! - **Decapsulation** takes the outer packet, starting at the outer IP header,
//!   and leaves the inner IP packet where it was decrypted: `head` moves
//!   forward past the outer headers, `len` shrinks to the inner packet's own
//!   length (dropping ESP trailer, ICV and any TFC padding). Bytes outside
//!   the new range are garbage (plaintext padding is not scrubbed).
//! - The L2 header is the caller's: it lies before `head` and is rewritten by
//!   the data plane after the engine ran.
//!
//! # Sequence numbers and anti-replay
//! Outbound sequence numbers come from an `&AtomicU64` holding the last one
//! used, so the counter can live in shared memory and several workers may
//! encapsulate on one SA with unique numbers. With ESN off an SA stops at
//! 2^32 - 1, with ESN (RFC 4303 §2.2.1) at 2^64 - 1: the packet is dropped
//! with [`DropReason::SeqOverflow`], the number never wraps, and the control
//! plane must rekey well before. Inbound, [`replay::ReplayWindow`] (default
//! 4096 packets, up to 8128) is checked before decryption and updated only
//! after the ICV verified (RFC 4303 §3.4.3); ESN high bits are inferred as in
//! RFC 4303 Appendix A and confirmed by the ICV.
//!
//! # Batches
//! [`encap_burst`] and [`decap_burst`] process any number of packets of any
//! mix of SAs in two passes: first every packet is checked and prepared
//! (headers parsed or written, sequence numbers taken, replay checked), then
//! each survivor gets its crypto and is finished at once, while its cache
//! lines are still in L1 (a burst of 1500-byte packets does not fit there).
//! No allocation, lock or system call; per-burst counts are returned in
//! [`BurstStats`] for the caller to fold into its shared counters once per
//! burst.
//!
//! # Drops
//! Every failure has a [`DropReason`]; nothing is dropped silently except the
//! dummy packets of RFC 4303 §2.6 (next header 59), which are still counted
//! under [`DropReason::Dummy`].
#![deny(unsafe_code)]

pub mod crypto;
mod engine;
mod prefetch;
pub mod replay;
pub mod wire;

pub use crypto::{Algorithm, Backend, Cipher, KeyError, ICV_LEN, SALT_LEN};
pub use engine::{
    decap_burst, encap_burst, parse_esp, DecapItem, EncapItem, EspMeta, InboundSa, OutboundSa,
    Tunnel, UdpEncap,
};
pub use replay::ReplayWindow;

use core::fmt;

/// Headroom encapsulation may need in front of the inner packet.
pub const ENCAP_HEADROOM: usize = wire::IPV6_HDR + wire::UDP_HDR + wire::ESP_HDR + 16;
/// Tailroom encapsulation may need after the inner packet.
pub const ENCAP_TAILROOM: usize = 15 + 2 + ICV_LEN;
/// Recommended headroom in front of a received frame's L2 header.
pub const BUF_HEADROOM: usize = 128;

/// A packet in a caller-owned buffer: bytes `buf[head..head + len]`.
#[derive(Debug)]
pub struct PacketBuf<'a> {
    /// The whole buffer, with head- and tailroom around the packet.
    pub buf: &'a mut [u8],
    /// Offset of the packet's first byte.
    pub head: usize,
    /// Packet length.
    pub len: usize,
}

impl<'a> PacketBuf<'a> {
    /// A packet at `buf[head..head + len]`.
    pub fn new(buf: &'a mut [u8], head: usize, len: usize) -> Self {
        PacketBuf { buf, head, len }
    }

    /// The packet bytes (empty if `head`/`len` lie outside the buffer).
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buf
            .get(self.head..self.head.saturating_add(self.len))
            .unwrap_or(&[])
    }

    /// Room before the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head.min(self.buf.len())
    }

    /// Room after the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf
            .len()
            .saturating_sub(self.head.saturating_add(self.len))
    }
}

/// Why a packet was dropped. Counters are indexed by `reason as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum DropReason {
    /// Headers inconsistent or too short (outer IP, UDP, ESP, or the
    /// decrypted inner packet's length fields).
    Malformed = 0,
    /// An IP fragment: reassembly is the kernel's job, not the engine's.
    Fragment = 1,
    /// Not ESP: IKE with the non-ESP marker, a NAT-T keepalive, another
    /// protocol or port. The caller passes it on rather than dropping it.
    NotEsp = 2,
    /// No SA for the SPI (or no policy/SA for an outbound flow): set by the
    /// caller's lookup.
    NoSa = 3,
    /// The packet's SPI is not the SA's (caller looked up the wrong SA).
    SpiMismatch = 4,
    /// Sequence number already received (RFC 4303 §3.4.3).
    Replay = 5,
    /// Sequence number left of the replay window.
    ReplayStale = 6,
    /// ICV did not verify (RFC 4303 §3.4.4).
    IcvFailure = 7,
    /// Pad length too long or padding bytes not 1, 2, 3, ... (RFC 4303 §2.4).
    BadPadding = 8,
    /// Next header neither IPv4 (4) nor IPv6 (41), or not matching the inner
    /// header's version.
    BadNextHeader = 9,
    /// Dummy packet (next header 59, RFC 4303 §2.6): dropped silently.
    Dummy = 10,
    /// The SA's sequence numbers are exhausted (RFC 4303 §3.3.3): rekey.
    SeqOverflow = 11,
    /// Not enough room in front of the packet for the outer headers.
    NoHeadroom = 12,
    /// Not enough room after the packet for trailer and ICV.
    NoTailroom = 13,
    /// The packet to encapsulate is not an IPv4 or IPv6 packet.
    InnerNotIp = 14,
    /// A policy said drop: set by the caller.
    PolicyDrop = 15,
}

impl DropReason {
    /// Number of reasons (size of a counter array).
    pub const COUNT: usize = 16;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::NotEsp,
        DropReason::NoSa,
        DropReason::SpiMismatch,
        DropReason::Replay,
        DropReason::ReplayStale,
        DropReason::IcvFailure,
        DropReason::BadPadding,
        DropReason::BadNextHeader,
        DropReason::Dummy,
        DropReason::SeqOverflow,
        DropReason::NoHeadroom,
        DropReason::NoTailroom,
        DropReason::InnerNotIp,
        DropReason::PolicyDrop,
    ];

    /// Label for logs and metrics (`reason="icv_failure"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Fragment => "fragment",
            DropReason::NotEsp => "not_esp",
            DropReason::NoSa => "no_sa",
            DropReason::SpiMismatch => "spi_mismatch",
            DropReason::Replay => "replay",
            DropReason::ReplayStale => "replay_stale",
            DropReason::IcvFailure => "icv_failure",
            DropReason::BadPadding => "bad_padding",
            DropReason::BadNextHeader => "bad_next_header",
            DropReason::Dummy => "dummy",
            DropReason::SeqOverflow => "seq_overflow",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::NoTailroom => "no_tailroom",
            DropReason::InnerNotIp => "inner_not_ip",
            DropReason::PolicyDrop => "policy_drop",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one burst did: the caller adds these to its (shared) counters once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BurstStats {
    /// Packets processed successfully.
    pub packets: u64,
    /// Inner bytes of those packets (plaintext IP packet lengths).
    pub bytes: u64,
    /// Drops by [`DropReason`] index.
    pub drops: [u64; DropReason::COUNT],
}

impl BurstStats {
    /// Total drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Drops for one reason.
    pub fn drops_for(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    fn count(&mut self, r: Result<usize, DropReason>) {
        match r {
            Ok(bytes) => {
                self.packets += 1;
                self.bytes += bytes as u64;
            }
            Err(d) => self.drops[d as usize] += 1,
        }
    }
}
