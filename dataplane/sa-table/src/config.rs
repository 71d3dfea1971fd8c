//! What the control plane installs: SA configurations and policies, and
//! their encoding into the shared words.

use crate::layout::{COLD_RESERVED_WORDS, COLD_WORDS, POLICY_WORDS};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Direction of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Decrypts traffic from the peer; found by SPI and destination.
    Inbound,
    /// Encrypts traffic to the peer; found through a policy.
    Outbound,
}

/// Lifetimes of an SA (RFC 7296 §2.8; 0 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifetimes {
    /// Soft limit in bytes (rekey).
    pub soft_bytes: u64,
    /// Hard limit in bytes (expire).
    pub hard_bytes: u64,
    /// Soft limit in packets.
    pub soft_packets: u64,
    /// Hard limit in packets.
    pub hard_packets: u64,
    /// Soft limit in seconds after installation.
    pub soft_seconds: u64,
    /// Hard limit in seconds after installation.
    pub hard_seconds: u64,
}

/// One ESP SA as the control plane installs it. Keys are bytes as derived by
/// IKE (RFC 7296 §2.17): for AEAD transforms the encryption key is followed
/// by its salt (RFC 4106 §8.1, RFC 7634 §2), so key and salt are always
/// stored, published and copied out together.
///
/// Keys are zeroized when the value is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SaConfig {
    /// Control-plane identifier, unique per SA.
    pub sa_id: u64,
    /// CHILD SA / reqid the SA belongs to.
    pub child_id: u32,
    /// Direction.
    pub direction: Direction,
    /// SPI (RFC 4303 §2.1).
    pub spi: u32,
    /// Outer source (local for outbound, peer for inbound).
    pub src: IpAddr,
    /// Outer destination (same address family as `src`).
    pub dst: IpAddr,
    /// UDP encapsulation ports (source, destination), `None` for raw ESP
    /// (RFC 3948).
    pub encap: Option<(u16, u16)>,
    /// IKEv2 encryption transform ID (RFC 7296 §3.3.2, IANA "Transform Type 1").
    pub encr_id: u16,
    /// Encryption key size in bits (without salt), the Key Length attribute.
    pub key_bits: u16,
    /// IKEv2 integrity transform ID (IANA "Transform Type 3"; 0 = none, AEAD).
    pub integ_id: u16,
    /// Encryption key followed by its salt, at most [`MAX_KEY_BYTES`] bytes.
    pub encr_key: Vec<u8>,
    /// Integrity key, at most [`MAX_KEY_BYTES`] bytes.
    pub integ_key: Vec<u8>,
    /// Extended sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Replay window in packets (inbound; 0 = anti-replay off).
    pub replay_window: u32,
    /// Lifetimes.
    pub lifetimes: Lifetimes,
    /// Installation time, seconds since the Unix epoch.
    pub installed_at: u64,
}

/// Largest key (encryption key plus salt, or integrity key) in bytes.
pub const MAX_KEY_BYTES: usize = 64;

impl std::fmt::Debug for SaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: never printed.
        f.debug_struct("SaConfig")
            .field("sa_id", &self.sa_id)
            .field("child_id", &self.child_id)
            .field("direction", &self.direction)
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("encap", &self.encap)
            .field("encr_id", &self.encr_id)
            .field("key_bits", &self.key_bits)
            .field("integ_id", &self.integ_id)
            .field("esn", &self.esn)
            .field("replay_window", &self.replay_window)
            .finish_non_exhaustive()
    }
}

impl Drop for SaConfig {
    fn drop(&mut self) {
        self.encr_key.zeroize();
        self.integ_key.zeroize();
    }
}

/// The keys of an SA and their algorithms, copied out of the table under the
/// seqlock (so key and salt always come from the same SA) into a buffer that
/// is zeroized on drop. The data plane builds its key schedule from it once
/// per (slot, generation) and drops it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SaKeys {
    /// IKEv2 encryption transform ID.
    #[zeroize(skip)]
    pub encr_id: u16,
    /// Encryption key size in bits (without salt).
    #[zeroize(skip)]
    pub key_bits: u16,
    /// IKEv2 integrity transform ID (0 for AEAD).
    #[zeroize(skip)]
    pub integ_id: u16,
    encr: [u8; MAX_KEY_BYTES],
    encr_len: u8,
    integ: [u8; MAX_KEY_BYTES],
    integ_len: u8,
}

impl std::fmt::Debug for SaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaKeys")
            .field("encr_id", &self.encr_id)
            .field("key_bits", &self.key_bits)
            .field("integ_id", &self.integ_id)
            .field("encr_len", &self.encr_len)
            .field("integ_len", &self.integ_len)
            .finish_non_exhaustive()
    }
}

impl SaKeys {
    /// Encryption key followed by its salt (AEAD).
    pub fn encr_key(&self) -> &[u8] {
        self.encr.get(..usize::from(self.encr_len)).unwrap_or(&[])
    }

    /// The last `n` bytes of the encryption key (the salt of an AEAD key:
    /// 4 for AES-GCM and ChaCha20-Poly1305).
    pub fn salt(&self, n: usize) -> &[u8] {
        let k = self.encr_key();
        k.get(k.len().saturating_sub(n)..).unwrap_or(&[])
    }

    /// Integrity key (empty for AEAD).
    pub fn integ_key(&self) -> &[u8] {
        self.integ.get(..usize::from(self.integ_len)).unwrap_or(&[])
    }

    pub(crate) fn from_words(w: &[u64; COLD_WORDS]) -> Option<SaKeys> {
        if w[1] >> 56 != STATE_LIVE {
            return None;
        }
        let mut k = SaKeys {
            encr_id: (w[6] >> 32) as u16,
            key_bits: (w[6] >> 48) as u16,
            integ_id: w[7] as u16,
            encr: [0; MAX_KEY_BYTES],
            encr_len: ((w[7] >> 16) as u8).min(MAX_KEY_BYTES as u8),
            integ: [0; MAX_KEY_BYTES],
            integ_len: ((w[7] >> 24) as u8).min(MAX_KEY_BYTES as u8),
        };
        words_to_bytes(&w[W_ENCR..W_INTEG], &mut k.encr);
        words_to_bytes(&w[W_INTEG..W_RESERVED], &mut k.integ);
        Some(k)
    }
}

pub(crate) fn addr_to_u128(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (6, u128::from(v6)),
    }
}

pub(crate) fn u128_to_addr(family: u8, v: u128) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

fn bytes_to_words(bytes: &[u8], out: &mut [u64]) {
    for (i, w) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = bytes.get(i * 8 + j).copied().unwrap_or(0);
        }
        *w = u64::from_le_bytes(b);
        b.zeroize();
    }
}

fn words_to_bytes(words: &[u64], out: &mut [u8]) {
    for (chunk, w) in out.chunks_mut(8).zip(words) {
        let mut b = w.to_le_bytes();
        chunk.copy_from_slice(b.get(..chunk.len()).unwrap_or(&[]));
        b.zeroize();
    }
}

fn key_vec(words: &[u64], len: usize) -> Vec<u8> {
    let mut buf = [0u8; MAX_KEY_BYTES];
    words_to_bytes(words, &mut buf);
    // Exact capacity: no secret bytes left behind in spare capacity.
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(buf.get(..len.min(MAX_KEY_BYTES)).unwrap_or(&[]));
    buf.zeroize();
    v
}

/// Word layout of a cold record (after the generation; `COLD_WORDS` = 47):
///
/// ```text
///  0 sa_id
///  1 spi | outbound << 32 | family << 40 | esn << 48 | udp encap << 49 | state << 56
///  2-3 outer src (16 bytes, IPv4 in the low 32 bits)   4-5 outer dst
///  6 encap src port | dst port << 16 | encr_id << 32 | key_bits << 48
///  7 integ_id | encr key len << 16 | integ key len << 24 | replay window << 32
///  8 child_id | flags << 32 (ESN and UDP encapsulation live in word 1; the
///    flags half is reserved for data-plane options such as DSCP copy and DF,
///    zero in this version)
///  9-14 lifetimes (soft/hard bytes, packets, seconds)   15 installed_at
/// 16-23 encryption key and salt   24-31 integrity key   32-46 reserved (0)
/// ```
pub(crate) const STATE_LIVE: u64 = 1;
const W_ENCR: usize = 16;
const W_INTEG: usize = 24;
const W_RESERVED: usize = 32;
const _: () = assert!(W_RESERVED + COLD_RESERVED_WORDS == COLD_WORDS);
const _: () = assert!((W_INTEG - W_ENCR) * 8 == MAX_KEY_BYTES);
const _: () = assert!((W_RESERVED - W_INTEG) * 8 == MAX_KEY_BYTES);

impl SaConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.encr_key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "encryption key of {} bytes, at most {MAX_KEY_BYTES}",
                self.encr_key.len()
            ));
        }
        if self.integ_key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "integrity key of {} bytes, at most {MAX_KEY_BYTES}",
                self.integ_key.len()
            ));
        }
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err("tunnel endpoints of different address families".into());
        }
        Ok(())
    }

    /// Encodes into `w` (the caller zeroizes it after use: it holds keys).
    pub(crate) fn to_words(&self, w: &mut [u64; COLD_WORDS]) {
        w.fill(0);
        let (fam, src) = addr_to_u128(self.src);
        let (_, dst) = addr_to_u128(self.dst);
        w[0] = self.sa_id;
        w[1] = u64::from(self.spi)
            | (u64::from(matches!(self.direction, Direction::Outbound)) << 32)
            | (u64::from(fam) << 40)
            | (u64::from(self.esn) << 48)
            | (u64::from(self.encap.is_some()) << 49)
            | (STATE_LIVE << 56);
        w[2] = src as u64;
        w[3] = (src >> 64) as u64;
        w[4] = dst as u64;
        w[5] = (dst >> 64) as u64;
        let (sp, dp) = self.encap.unwrap_or((0, 0));
        w[6] = u64::from(sp)
            | (u64::from(dp) << 16)
            | (u64::from(self.encr_id) << 32)
            | (u64::from(self.key_bits) << 48);
        w[7] = u64::from(self.integ_id)
            | ((self.encr_key.len() as u64) << 16)
            | ((self.integ_key.len() as u64) << 24)
            | (u64::from(self.replay_window) << 32);
        w[8] = u64::from(self.child_id);
        let l = &self.lifetimes;
        w[9..15].copy_from_slice(&[
            l.soft_bytes,
            l.hard_bytes,
            l.soft_packets,
            l.hard_packets,
            l.soft_seconds,
            l.hard_seconds,
        ]);
        w[15] = self.installed_at;
        bytes_to_words(&self.encr_key, &mut w[W_ENCR..W_INTEG]);
        bytes_to_words(&self.integ_key, &mut w[W_INTEG..W_RESERVED]);
    }

    /// Decodes a live record; `None` for a free or retired one.
    pub(crate) fn from_words(w: &[u64; COLD_WORDS]) -> Option<SaConfig> {
        if w[1] >> 56 != STATE_LIVE {
            return None;
        }
        let fam = (w[1] >> 40) as u8;
        let src = u128::from(w[2]) | (u128::from(w[3]) << 64);
        let dst = u128::from(w[4]) | (u128::from(w[5]) << 64);
        let ek = ((w[7] >> 16) & 0xff) as usize;
        let ik = ((w[7] >> 24) & 0xff) as usize;
        Some(SaConfig {
            sa_id: w[0],
            child_id: w[8] as u32,
            direction: if (w[1] >> 32) & 1 == 1 {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            spi: w[1] as u32,
            src: u128_to_addr(fam, src),
            dst: u128_to_addr(fam, dst),
            encap: ((w[1] >> 49) & 1 == 1).then_some((w[6] as u16, (w[6] >> 16) as u16)),
            encr_id: (w[6] >> 32) as u16,
            key_bits: (w[6] >> 48) as u16,
            integ_id: w[7] as u16,
            encr_key: key_vec(&w[W_ENCR..W_INTEG], ek),
            integ_key: key_vec(&w[W_INTEG..W_RESERVED], ik),
            esn: (w[1] >> 48) & 1 == 1,
            replay_window: (w[7] >> 32) as u32,
            lifetimes: Lifetimes {
                soft_bytes: w[9],
                hard_bytes: w[10],
                soft_packets: w[11],
                hard_packets: w[12],
                soft_seconds: w[13],
                hard_seconds: w[14],
            },
            installed_at: w[15],
        })
    }
}

/// What a policy does with matching traffic (RFC 4301 §4.4.1: PROTECT,
/// BYPASS, DISCARD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Encrypt with the outbound SA bound to the policy.
    Protect,
    /// Forward in the clear.
    Bypass,
    /// Drop.
    Drop,
}

/// An IP prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Network address (host bits are ignored).
    pub addr: IpAddr,
    /// Prefix length (0..=32 or 0..=128).
    pub len: u8,
}

impl Prefix {
    /// A prefix; `None` if the length exceeds the family's.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(Prefix { addr, len })
    }

    /// Whether `a` lies inside.
    pub fn contains(&self, a: IpAddr) -> bool {
        let (f1, p) = addr_to_u128(self.addr);
        let (f2, x) = addr_to_u128(a);
        f1 == f2 && mask(f1, self.len) & (p ^ x) == 0
    }
}

/// The mask of a prefix length within a family's width, on u128 values.
pub(crate) fn mask(family: u8, len: u8) -> u128 {
    let width: u32 = if family == 4 { 32 } else { 128 };
    let len = u32::from(len).min(width);
    if len == 0 {
        0
    } else {
        let m = u128::MAX << (128 - len);
        m >> (128 - width)
    }
}

/// A traffic selector policy (RFC 4301 §4.4.1, RFC 7296 §2.9 TS pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Inner source prefix.
    pub src: Prefix,
    /// Inner destination prefix (same family).
    pub dst: Prefix,
    /// IP protocol, `None` for any.
    pub proto: Option<u8>,
    /// Inclusive source port range ((0, 65535) for any).
    pub src_ports: (u16, u16),
    /// Inclusive destination port range.
    pub dst_ports: (u16, u16),
    /// What to do.
    pub action: Action,
    /// Tie-break after specificity: higher wins.
    pub priority: u32,
}

impl Policy {
    /// A policy between two prefixes, any protocol and port.
    pub fn between(src: Prefix, dst: Prefix, action: Action) -> Policy {
        Policy {
            src,
            dst,
            proto: None,
            src_ports: (0, u16::MAX),
            dst_ports: (0, u16::MAX),
            action,
            priority: 0,
        }
    }

    /// Whether the flow matches.
    pub fn matches(&self, f: &FlowKey) -> bool {
        self.src.contains(f.src)
            && self.dst.contains(f.dst)
            && self.proto.is_none_or(|p| p == f.proto)
            && (self.src_ports.0..=self.src_ports.1).contains(&f.src_port)
            && (self.dst_ports.0..=self.dst_ports.1).contains(&f.dst_port)
    }

    /// Ordering key: larger is more specific (documented in the crate docs):
    /// destination length, source length, specific protocol, narrower
    /// destination then source port ranges, priority.
    pub fn specificity(&self) -> (u8, u8, bool, u32, u32, u32) {
        (
            self.dst.len,
            self.src.len,
            self.proto.is_some(),
            u32::MAX - (u32::from(self.dst_ports.1) - u32::from(self.dst_ports.0)),
            u32::MAX - (u32::from(self.src_ports.1) - u32::from(self.src_ports.0)),
            self.priority,
        )
    }

    pub(crate) fn to_words(self) -> [u64; POLICY_WORDS] {
        let (fam, s) = addr_to_u128(self.src.addr);
        let (_, d) = addr_to_u128(self.dst.addr);
        let action = match self.action {
            Action::Protect => 1u64,
            Action::Bypass => 2,
            Action::Drop => 3,
        };
        [
            s as u64,
            (s >> 64) as u64,
            d as u64,
            (d >> 64) as u64,
            u64::from(fam)
                | (u64::from(self.src.len) << 8)
                | (u64::from(self.dst.len) << 16)
                | (u64::from(self.proto.unwrap_or(0)) << 24)
                | (u64::from(self.proto.is_some()) << 32)
                | (action << 40)
                | (1 << 56),
            u64::from(self.src_ports.0)
                | (u64::from(self.src_ports.1) << 16)
                | (u64::from(self.dst_ports.0) << 32)
                | (u64::from(self.dst_ports.1) << 48),
            u64::from(self.priority),
            0,
        ]
    }

    pub(crate) fn from_words(w: &[u64; POLICY_WORDS]) -> Option<Policy> {
        if w[POLICY_LIVE_WORD] >> 56 != 1 {
            return None;
        }
        let fam = w[4] as u8;
        let s = u128::from(w[0]) | (u128::from(w[1]) << 64);
        let d = u128::from(w[2]) | (u128::from(w[3]) << 64);
        let action = match (w[4] >> 40) & 0xff {
            1 => Action::Protect,
            2 => Action::Bypass,
            _ => Action::Drop,
        };
        Some(Policy {
            src: Prefix {
                addr: u128_to_addr(fam, s),
                len: (w[4] >> 8) as u8,
            },
            dst: Prefix {
                addr: u128_to_addr(fam, d),
                len: (w[4] >> 16) as u8,
            },
            proto: ((w[4] >> 32) & 1 == 1).then_some((w[4] >> 24) as u8),
            src_ports: (w[5] as u16, (w[5] >> 16) as u16),
            dst_ports: ((w[5] >> 32) as u16, (w[5] >> 48) as u16),
            action,
            priority: w[6] as u32,
        })
    }
}

/// Word of a policy record holding its "live" mark (stored last).
pub(crate) const POLICY_LIVE_WORD: usize = 4;

/// The fields of an inner packet that policies select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Inner source address.
    pub src: IpAddr,
    /// Inner destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}
