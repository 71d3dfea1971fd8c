//! Tunnel-mode encapsulation and decapsulation over bursts (RFC 4303 §3).

use crate::crypto::{Cipher, ICV_LEN};
use crate::prefetch;
use crate::replay::{ReplayError, ReplayWindow};
use crate::wire::{self, be16, be32, field, put16, put32};
use crate::{BurstStats, DropReason, PacketBuf};
use core::sync::atomic::{AtomicU64, Ordering};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Outer addresses of a tunnel-mode SA (RFC 4303 §3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    /// IPv4 outer header.
    V4 {
        /// Local tunnel endpoint.
        src: Ipv4Addr,
        /// Remote tunnel endpoint.
        dst: Ipv4Addr,
    },
    /// IPv6 outer header.
    V6 {
        /// Local tunnel endpoint.
        src: Ipv6Addr,
        /// Remote tunnel endpoint.
        dst: Ipv6Addr,
    },
}

impl Tunnel {
    /// Tunnel between two addresses of the same family.
    pub fn new(src: IpAddr, dst: IpAddr) -> Option<Tunnel> {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(Tunnel::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(Tunnel::V6 { src, dst }),
            _ => None,
        }
    }

    fn header_len(&self) -> usize {
        match self {
            Tunnel::V4 { .. } => wire::IPV4_HDR,
            Tunnel::V6 { .. } => wire::IPV6_HDR,
        }
    }
}

/// UDP encapsulation ports (RFC 3948 §2.1): usually 4500 both ways, the
/// peer's port as seen after NAT otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEncap {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpEncap {
    /// Port 4500 both ways.
    pub const NAT_T: UdpEncap = UdpEncap {
        src_port: wire::NAT_T_PORT,
        dst_port: wire::NAT_T_PORT,
    };
}

/// An outbound SA as the engine sees it: immutable after installation; the
/// sequence counter lives outside (shared memory) and is passed per packet.
#[derive(Debug)]
pub struct OutboundSa {
    /// SPI the peer chose (RFC 4303 §2.1).
    pub spi: u32,
    /// Extended sequence numbers negotiated (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Outer addresses.
    pub tunnel: Tunnel,
    /// ESP-in-UDP ports, if NAT traversal is on (RFC 3948).
    pub encap: Option<UdpEncap>,
    /// Outer TTL / hop limit (default 64).
    pub ttl: u8,
    cipher: Cipher,
}

impl OutboundSa {
    /// An outbound SA. `cipher` is the key schedule of the
    /// initiator-to-responder or responder-to-initiator keys, as appropriate.
    pub fn new(
        spi: u32,
        cipher: Cipher,
        esn: bool,
        tunnel: Tunnel,
        encap: Option<UdpEncap>,
    ) -> Self {
        OutboundSa {
            spi,
            esn,
            tunnel,
            encap,
            ttl: 64,
            cipher,
        }
    }

    /// The key schedule.
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// Headroom this SA's encapsulation needs in front of the inner packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.tunnel.header_len()
            + if self.encap.is_some() {
                wire::UDP_HDR
            } else {
                0
            }
            + wire::ESP_HDR
            + self.cipher.algorithm().iv_len()
    }

    /// Tailroom this SA's encapsulation needs after the inner packet, at most.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.cipher.algorithm().pad_align() - 1 + 2 + ICV_LEN
    }

    /// Highest sequence number the SA may use.
    fn seq_limit(&self) -> u64 {
        if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }
}

/// An inbound SA as the engine sees it; its replay window lives outside.
#[derive(Debug)]
pub struct InboundSa {
    /// SPI this side chose.
    pub spi: u32,
    /// Extended sequence numbers negotiated.
    pub esn: bool,
    cipher: Cipher,
}

impl InboundSa {
    /// An inbound SA.
    pub fn new(spi: u32, cipher: Cipher, esn: bool) -> Self {
        InboundSa { spi, esn, cipher }
    }

    /// The key schedule.
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }
}

/// What [`parse_esp`] found in an outer packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspMeta {
    /// SPI (RFC 4303 §2.1): the inbound lookup key with `dst`.
    pub spi: u32,
    /// Low 32 bits of the sequence number.
    pub seq_lo: u32,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
    /// UDP ports if ESP-in-UDP (as in the packet: source, destination).
    pub udp: Option<UdpEncap>,
    /// Offset of the ESP header from the packet start.
    pub esp_offset: usize,
    /// Length of ESP header to ICV end.
    pub esp_len: usize,
    /// Outer ECN field (RFC 3168), for propagation to the inner header.
    pub ecn: u8,
}

/// Parses the outer IPv4/IPv6 (and UDP) header of a received packet far
/// enough to look the SA up. Refuses fragments, bad lengths and IPv4 header
/// checksums; says [`DropReason::NotEsp`] for IKE on port 4500 (non-ESP marker),
/// NAT-T keepalives and everything else that is not ESP.
pub fn parse_esp(pkt: &[u8]) -> Result<EspMeta, DropReason> {
    let first = *pkt.first().ok_or(DropReason::Malformed)?;
    let (proto, l4, end, src, dst, ecn) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < wire::IPV4_HDR || pkt.len() < ihl {
                return Err(DropReason::Malformed);
            }
            let total = usize::from(be16(pkt, field::V4_LEN));
            if total < ihl || total > pkt.len() {
                return Err(DropReason::Malformed);
            }
            if wire::ipv4_checksum(&pkt[..ihl]) != 0 {
                return Err(DropReason::Malformed);
            }
            if be16(pkt, field::V4_FRAG) & 0x3fff != 0 {
                return Err(DropReason::Fragment);
            }
            let src = Ipv4Addr::from(be32(pkt, field::V4_SRC));
            let dst = Ipv4Addr::from(be32(pkt, field::V4_DST));
            let ecn = pkt[field::V4_TOS] & 3;
            (
                pkt[field::V4_PROTO],
                ihl,
                total,
                IpAddr::V4(src),
                IpAddr::V4(dst),
                ecn,
            )
        }
        6 => {
            if pkt.len() < wire::IPV6_HDR {
                return Err(DropReason::Malformed);
            }
            let end = wire::IPV6_HDR + usize::from(be16(pkt, field::V6_PLEN));
            if end > pkt.len() {
                return Err(DropReason::Malformed);
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&pkt[field::V6_SRC..field::V6_SRC + 16]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&pkt[field::V6_DST..field::V6_DST + 16]);
            let dst = Ipv6Addr::from(a);
            let ecn = (be16(pkt, 0) >> 4) as u8 & 3;
            let nh = pkt[field::V6_NH];
            if nh == 44 {
                return Err(DropReason::Fragment);
            }
            (
                nh,
                wire::IPV6_HDR,
                end,
                IpAddr::V6(src),
                IpAddr::V6(dst),
                ecn,
            )
        }
        _ => return Err(DropReason::Malformed),
    };
    let (esp_offset, udp) = match proto {
        wire::IPPROTO_ESP => (l4, None),
        wire::IPPROTO_UDP => {
            if end < l4 + wire::UDP_HDR {
                return Err(DropReason::Malformed);
            }
            let sport = be16(pkt, l4);
            let dport = be16(pkt, l4 + 2);
            // Whatever NAT sits between, ESP-in-UDP arrives at port 4500
            // (RFC 3948 §2.1): the peer's port is free, ours is not.
            if dport != wire::NAT_T_PORT {
                return Err(DropReason::NotEsp);
            }
            let ulen = usize::from(be16(pkt, l4 + 4));
            if ulen < wire::UDP_HDR || l4 + ulen > end {
                return Err(DropReason::Malformed);
            }
            let payload = &pkt[l4 + wire::UDP_HDR..l4 + ulen];
            // RFC 3948 §2.2 keepalive (0xFF) and §2.3 non-ESP marker (IKE).
            if payload == [0xff] || payload.get(..4).is_some_and(|m| m == [0; 4]) {
                return Err(DropReason::NotEsp);
            }
            (
                l4 + wire::UDP_HDR,
                Some(UdpEncap {
                    src_port: sport,
                    dst_port: dport,
                }),
            )
        }
        _ => return Err(DropReason::NotEsp),
    };
    let end = match udp {
        Some(_) => l4 + usize::from(be16(pkt, l4 + 4)),
        None => end,
    };
    if end < esp_offset + wire::ESP_HDR {
        return Err(DropReason::Malformed);
    }
    Ok(EspMeta {
        spi: be32(pkt, esp_offset),
        seq_lo: be32(pkt, esp_offset + 4),
        src,
        dst,
        udp,
        esp_offset,
        esp_len: end - esp_offset,
        ecn,
    })
}

/// Per-packet scratch carried between the passes of a burst, 24 bytes
/// (offsets as u32). It lives in an array on the burst function's stack,
/// not in the items: a caller makes an item from its own values only, in
/// registers. (When the item carried it, every push of an item copied a
/// zeroed scratch through the stack, and that copy's wide load of bytes
/// just stored in pieces stalled: about 8 ns per packet.)
#[derive(Debug, Default, Clone, Copy)]
struct Work {
    seq: u64,
    /// Absolute offset of the ESP header in the buffer.
    esp: u32,
    /// Absolute offset of the encrypted payload (after the IV).
    payload: u32,
    /// Encrypted payload length (inner + padding + 2), without ICV.
    payload_len: u32,
    tos: u8,
    df: bool,
    ecn: u8,
    /// Next header of the trailer (outbound).
    nh: u8,
}

impl Work {
    fn esp(&self) -> usize {
        self.esp as usize
    }

    fn payload(&self) -> usize {
        self.payload as usize
    }

    fn payload_len(&self) -> usize {
        self.payload_len as usize
    }
}

/// One packet of an encapsulation burst.
#[derive(Debug)]
pub struct EncapItem<'a> {
    /// The SA the packet goes out on (from the policy lookup).
    pub sa: &'a OutboundSa,
    /// The SA's sequence counter: the last number used (0 = none yet).
    pub seq: &'a AtomicU64,
    /// Inner IP packet in; outer packet out.
    pub pkt: PacketBuf<'a>,
    /// After the burst: the inner packet length, or why it was dropped.
    pub result: Result<usize, DropReason>,
}

impl<'a> EncapItem<'a> {
    /// An item to encapsulate.
    pub fn new(sa: &'a OutboundSa, seq: &'a AtomicU64, pkt: PacketBuf<'a>) -> Self {
        EncapItem {
            sa,
            seq,
            pkt,
            result: Err(DropReason::Malformed),
        }
    }
}

/// One packet of a decapsulation burst.
#[derive(Debug)]
pub struct DecapItem<'a> {
    /// The SA found by SPI (and destination) lookup.
    pub sa: &'a InboundSa,
    /// That SA's replay window.
    pub replay: &'a ReplayWindow,
    /// Outer packet in (from the outer IP header); inner IP packet out.
    pub pkt: PacketBuf<'a>,
    /// After the burst: the inner packet length, or why it was dropped.
    pub result: Result<usize, DropReason>,
}

impl<'a> DecapItem<'a> {
    /// An item to decapsulate.
    pub fn new(sa: &'a InboundSa, replay: &'a ReplayWindow, pkt: PacketBuf<'a>) -> Self {
        DecapItem {
            sa,
            replay,
            pkt,
            result: Err(DropReason::Malformed),
        }
    }
}

fn aad(spi: u32, seq: u64, esn: bool, out: &mut [u8; 12]) -> usize {
    out[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        out[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
        out[8..].copy_from_slice(&(seq as u32).to_be_bytes());
        12
    } else {
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

/// Encapsulates a burst in place (RFC 4303 §3.1.2 tunnel mode, §3.3 outbound
/// processing; RFC 3948 when the SA has UDP ports). Each item's `result` says
/// what happened; the returned stats sum it up.
pub fn encap_burst(items: &mut [EncapItem<'_>]) -> BurstStats {
    let mut stats = BurstStats::default();
    let mut work = [Work::default(); PASS];
    for items in items.chunks_mut(PASS) {
        let work = &mut work[..items.len()];
        for (it, w) in items.iter_mut().zip(work.iter_mut()) {
            it.result = encap_check(it, w);
        }
        take_seqs(items, work);
        // Headers, crypto and outer headers per packet: a burst of 1500-byte
        // packets does not fit in L1, so finishing a packet right after its
        // crypto keeps its lines hot instead of fetching them again.
        for k in 0..items.len() {
            // While this packet is sealed, the next one's header and trailer
            // lines come in (the inner header is warm from the checks).
            if let (Some(next), Some(w)) = (items.get(k + 1), work.get(k + 1)) {
                if next.result.is_ok() {
                    let buf = &*next.pkt.buf;
                    // Outer headers (one or two lines), trailer and ICV.
                    prefetch::line(buf, w.payload().saturating_sub(next.sa.headroom()));
                    prefetch::line(buf, w.payload().saturating_sub(1));
                    prefetch::line(buf, next.pkt.head + next.pkt.len);
                    prefetch::line(buf, w.payload() + w.payload_len() + ICV_LEN - 1);
                }
            }
            let (Some(it), Some(w)) = (items.get_mut(k), work.get(k)) else {
                break;
            };
            if it.result.is_ok() {
                encap_esp_header(it, w);
                encap_crypto(it, w);
                encap_finish(it, w);
            }
            stats.count(it.result);
        }
    }
    stats
}

/// Packets a burst function works on at a time (their scratch is on its
/// stack); longer bursts are taken in passes of this many.
const PASS: usize = 64;

/// What can refuse a packet before it costs a sequence number: inner
/// header, head- and tailroom. Fills in the work item but its `seq`.
fn encap_check(it: &mut EncapItem<'_>, work: &mut Work) -> Result<usize, DropReason> {
    let sa = it.sa;
    let alg = sa.cipher.algorithm();
    let len = it.pkt.len;
    let inner = it.pkt.data();
    if inner.len() != len {
        return Err(DropReason::Malformed);
    }
    let (nh, tos, df) = match inner.first().map(|b| b >> 4) {
        Some(4) if len >= wire::IPV4_HDR => (
            wire::NH_IPV4,
            inner[field::V4_TOS],
            be16(inner, field::V4_FRAG) & 0x4000 != 0,
        ),
        Some(6) if len >= wire::IPV6_HDR => (wire::NH_IPV6, (be16(inner, 0) >> 4) as u8, true),
        _ => return Err(DropReason::InnerNotIp),
    };
    let align = alg.pad_align();
    let pad = (align - (len + 2) % align) % align;
    if it.pkt.headroom() < sa.headroom() {
        return Err(DropReason::NoHeadroom);
    }
    if it.pkt.tailroom() < pad + 2 + ICV_LEN {
        return Err(DropReason::NoTailroom);
    }
    // Offsets in a buffer past 4 GiB: not a packet buffer.
    let (Ok(payload), Ok(payload_len)) = (u32::try_from(it.pkt.head), u32::try_from(len + pad + 2))
    else {
        return Err(DropReason::Malformed);
    };
    *work = Work {
        seq: 0,
        esp: payload - (alg.iv_len() + wire::ESP_HDR) as u32,
        payload,
        payload_len,
        tos,
        df,
        ecn: 0,
        nh,
    };
    Ok(len)
}

/// Gives each packet that passed its checks the next sequence number of its
/// SA: one atomic update per run of packets on the same counter (a burst
/// usually is one run), not one locked instruction per packet. RFC 4303
/// §3.3.3: the counter never cycles; packets past the last usable number
/// are dropped as [`DropReason::SeqOverflow`].
fn take_seqs(items: &mut [EncapItem<'_>], work: &mut [Work]) {
    let mut i = 0;
    while i < items.len() {
        let (counter, sa) = (items[i].seq, items[i].sa);
        let mut end = i;
        let mut want = 0u64;
        while let Some(it) = items.get(end) {
            if !core::ptr::eq(it.seq, counter) || !core::ptr::eq(it.sa, sa) {
                break;
            }
            want += u64::from(it.result.is_ok());
            end += 1;
        }
        let limit = sa.seq_limit();
        let (mut next, mut left) = match want {
            0 => (0, 0),
            _ => match counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s < limit).then(|| s + want.min(limit - s))
            }) {
                Ok(prev) => (prev + 1, want.min(limit - prev)),
                Err(_) => (0, 0),
            },
        };
        let run = items[i..end].iter_mut().zip(work[i..end].iter_mut());
        for (it, w) in run.filter(|(it, _)| it.result.is_ok()) {
            if left == 0 {
                it.result = Err(DropReason::SeqOverflow);
            } else {
                w.seq = next;
                // Wraps only past the last number, which `left` never hands out.
                next = next.wrapping_add(1);
                left -= 1;
            }
        }
        i = end;
    }
}

/// Trailer (padding, pad length, next header), ESP header and IV.
fn encap_esp_header(it: &mut EncapItem<'_>, w: &Work) {
    let sa = it.sa;
    let buf = &mut *it.pkt.buf;
    let tail = w.payload() + it.pkt.len;
    let pad = w.payload_len() - it.pkt.len - 2;
    for (i, b) in buf[tail..tail + pad].iter_mut().enumerate() {
        *b = (i + 1) as u8;
    }
    buf[tail + pad] = pad as u8;
    buf[tail + pad + 1] = w.nh;
    put32(buf, w.esp(), sa.spi);
    put32(buf, w.esp() + 4, w.seq as u32);
    if sa.cipher.algorithm().is_aead() {
        buf[w.esp() + 8..w.esp() + 16].copy_from_slice(&w.seq.to_be_bytes());
    } else {
        let iv = sa.cipher.cbc_iv(sa.spi, w.seq);
        buf[w.esp() + 8..w.esp() + 24].copy_from_slice(&iv);
    }
}

fn encap_crypto(it: &mut EncapItem<'_>, w: &Work) {
    let sa = it.sa;
    let buf = &mut *it.pkt.buf;
    let end = w.payload() + w.payload_len();
    let icv = if sa.cipher.algorithm().is_aead() {
        let mut a = [0u8; 12];
        let n = aad(sa.spi, w.seq, sa.esn, &mut a);
        sa.cipher
            .seal(&w.seq.to_be_bytes(), &a[..n], &mut buf[w.payload()..end])
    } else {
        let iv = cbc_iv_at(buf, w.esp());
        sa.cipher.cbc_encrypt(&iv, &mut buf[w.payload()..end]);
        let hi = ((w.seq >> 32) as u32).to_be_bytes();
        let esn: &[u8] = if sa.esn { &hi } else { &[] };
        sa.cipher.mac(&[&buf[w.esp()..end], esn])
    };
    buf[end..end + ICV_LEN].copy_from_slice(&icv);
}

fn encap_finish(it: &mut EncapItem<'_>, w: &Work) {
    let sa = it.sa;
    let esp_len = w.payload() + w.payload_len() + ICV_LEN - w.esp();
    let mut start = w.esp();
    let buf = &mut *it.pkt.buf;
    let l4_proto = if let Some(u) = sa.encap {
        start -= wire::UDP_HDR;
        put16(buf, start, u.src_port);
        put16(buf, start + 2, u.dst_port);
        put16(buf, start + 4, (esp_len + wire::UDP_HDR) as u16);
        put16(buf, start + 6, 0);
        wire::IPPROTO_UDP
    } else {
        wire::IPPROTO_ESP
    };
    let l4_len = w.payload() + w.payload_len() + ICV_LEN - start;
    match sa.tunnel {
        Tunnel::V4 { src, dst } => {
            let ip = start - wire::IPV4_HDR;
            let h = &mut buf[ip..start];
            h[0] = 0x45;
            // DSCP and ECN copied from the inner header (RFC 4303 §5.1.2.1,
            // RFC 6040 normal mode).
            h[field::V4_TOS] = w.tos;
            put16(h, field::V4_LEN, (l4_len + wire::IPV4_HDR) as u16);
            put16(h, field::V4_ID, w.seq as u16);
            put16(h, field::V4_FRAG, if w.df { 0x4000 } else { 0 });
            h[field::V4_TTL] = sa.ttl;
            h[field::V4_PROTO] = l4_proto;
            h[field::V4_SRC..field::V4_SRC + 4].copy_from_slice(&src.octets());
            h[field::V4_DST..field::V4_DST + 4].copy_from_slice(&dst.octets());
            // The checksum from the values, not by reading back the header
            // just written in pieces (a load spanning several stores waits
            // for them all: a store-forwarding stall per packet).
            let (s, d) = (u32::from(src), u32::from(dst));
            let sum = 0x4500
                + u32::from(w.tos)
                + u32::from((l4_len + wire::IPV4_HDR) as u16)
                + u32::from(w.seq as u16)
                + if w.df { 0x4000 } else { 0 }
                + (u32::from(sa.ttl) << 8 | u32::from(l4_proto))
                + (s >> 16)
                + (s & 0xffff)
                + (d >> 16)
                + (d & 0xffff);
            put16(h, field::V4_CSUM, wire::checksum_finish(sum));
            start = ip;
        }
        Tunnel::V6 { src, dst } => {
            let ip = start - wire::IPV6_HDR;
            let h = &mut buf[ip..start];
            put32(h, 0, 0x6000_0000 | (u32::from(w.tos) << 20));
            put16(h, field::V6_PLEN, l4_len as u16);
            h[field::V6_NH] = l4_proto;
            h[field::V6_HLIM] = sa.ttl;
            h[field::V6_SRC..field::V6_SRC + 16].copy_from_slice(&src.octets());
            h[field::V6_DST..field::V6_DST + 16].copy_from_slice(&dst.octets());
            if sa.encap.is_some() {
                // IPv6 UDP needs its checksum (RFC 8200 §8.1).
                let mut sum = wire::checksum_add(0, &h[field::V6_SRC..field::V6_SRC + 32]);
                sum = sum
                    .wrapping_add(l4_len as u32)
                    .wrapping_add(u32::from(wire::IPPROTO_UDP));
                let udp = ip + wire::IPV6_HDR;
                sum = wire::checksum_add(sum, &buf[udp..udp + l4_len]);
                let c = match wire::checksum_finish(sum) {
                    0 => 0xffff,
                    c => c,
                };
                put16(buf, udp + 6, c);
            }
            start = ip;
        }
    }
    it.pkt.head = start;
    it.pkt.len = w.payload() + w.payload_len() + ICV_LEN - start;
}

/// Decapsulates a burst in place (RFC 4303 §3.4 inbound processing): replay
/// check, ICV, decryption, window update, trailer and inner header checks.
pub fn decap_burst(items: &mut [DecapItem<'_>]) -> BurstStats {
    let mut stats = BurstStats::default();
    let mut work = [Work::default(); PASS];
    for items in items.chunks_mut(PASS) {
        let work = &mut work[..items.len()];
        for (it, w) in items.iter_mut().zip(work.iter_mut()) {
            it.result = decap_prepare(it, w);
        }
        // As in encap_burst: crypto and the checks after it per packet,
        // while the packet is in L1.
        for (it, w) in items.iter_mut().zip(work.iter()) {
            if it.result.is_ok() {
                it.result = decap_crypto(it, w).and_then(|_| decap_finish(it, w));
            }
            stats.count(it.result);
        }
    }
    stats
}

fn replay_drop(e: ReplayError) -> DropReason {
    match e {
        ReplayError::Duplicate => DropReason::Replay,
        _ => DropReason::ReplayStale,
    }
}

fn decap_prepare(it: &mut DecapItem<'_>, work: &mut Work) -> Result<usize, DropReason> {
    let sa = it.sa;
    let alg = sa.cipher.algorithm();
    let data = it.pkt.data();
    if data.len() != it.pkt.len {
        return Err(DropReason::Malformed);
    }
    let meta = parse_esp(data)?;
    if meta.spi != sa.spi {
        return Err(DropReason::SpiMismatch);
    }
    let iv_len = alg.iv_len();
    let overhead = wire::ESP_HDR + iv_len + ICV_LEN;
    let payload_len = meta
        .esp_len
        .checked_sub(overhead)
        .ok_or(DropReason::Malformed)?;
    if payload_len < 2 || (!alg.is_aead() && payload_len % 16 != 0) {
        return Err(DropReason::Malformed);
    }
    let seq = if sa.esn {
        it.replay.infer_seq(meta.seq_lo)
    } else {
        u64::from(meta.seq_lo)
    };
    it.replay.check(seq).map_err(replay_drop)?;
    let esp = it.pkt.head + meta.esp_offset;
    let payload = esp + wire::ESP_HDR + iv_len;
    let (Ok(esp), Ok(payload), Ok(payload_len)) = (
        u32::try_from(esp),
        u32::try_from(payload),
        u32::try_from(payload_len),
    ) else {
        return Err(DropReason::Malformed);
    };
    *work = Work {
        seq,
        esp,
        payload,
        payload_len,
        tos: 0,
        df: false,
        ecn: meta.ecn,
        nh: 0,
    };
    Ok(0)
}

/// The CBC IV after the ESP header at `esp` (it is not encrypted: read
/// where it lies rather than carried along per packet).
fn cbc_iv_at(buf: &[u8], esp: usize) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&buf[esp + wire::ESP_HDR..esp + wire::ESP_HDR + 16]);
    iv
}

fn decap_crypto(it: &mut DecapItem<'_>, w: &Work) -> Result<usize, DropReason> {
    let sa = it.sa;
    let buf = &mut *it.pkt.buf;
    let end = w.payload() + w.payload_len();
    let mut icv = [0u8; ICV_LEN];
    icv.copy_from_slice(&buf[end..end + ICV_LEN]);
    if sa.cipher.algorithm().is_aead() {
        let mut iv = [0u8; 8];
        iv.copy_from_slice(&buf[w.esp() + 8..w.esp() + 16]);
        let mut a = [0u8; 12];
        let n = aad(sa.spi, w.seq, sa.esn, &mut a);
        sa.cipher
            .open(&iv, &a[..n], &mut buf[w.payload()..end], &icv)
            .map_err(|_| DropReason::IcvFailure)?;
    } else {
        let hi = ((w.seq >> 32) as u32).to_be_bytes();
        let esn: &[u8] = if sa.esn { &hi } else { &[] };
        sa.cipher
            .verify_mac(&[&buf[w.esp()..end], esn], &icv)
            .map_err(|_| DropReason::IcvFailure)?;
        let iv = cbc_iv_at(buf, w.esp());
        sa.cipher.cbc_decrypt(&iv, &mut buf[w.payload()..end]);
    }
    Ok(0)
}

fn decap_finish(it: &mut DecapItem<'_>, w: &Work) -> Result<usize, DropReason> {
    // Authentic: now the window may move (RFC 4303 §3.4.3).
    it.replay.update(w.seq).map_err(replay_drop)?;
    let buf = &mut *it.pkt.buf;
    let p = &mut buf[w.payload()..w.payload() + w.payload_len()];
    let n = p.len();
    let nh = p[n - 1];
    let pad = usize::from(p[n - 2]);
    if pad + 2 > n {
        return Err(DropReason::BadPadding);
    }
    let avail = n - 2 - pad;
    if p[avail..avail + pad]
        .iter()
        .enumerate()
        .any(|(i, &b)| usize::from(b) != i + 1)
    {
        return Err(DropReason::BadPadding);
    }
    let inner = &mut p[..avail];
    let inner_len = match nh {
        wire::NH_NO_NEXT => return Err(DropReason::Dummy),
        wire::NH_IPV4 => {
            if avail < wire::IPV4_HDR || inner[0] >> 4 != 4 {
                return Err(DropReason::BadNextHeader);
            }
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            let total = usize::from(be16(inner, field::V4_LEN));
            if ihl < wire::IPV4_HDR || total < ihl || total > avail {
                return Err(DropReason::Malformed);
            }
            // RFC 6040 §4.2: outer CE marks an ECN-capable inner packet CE.
            if w.ecn == 3 && matches!(inner[field::V4_TOS] & 3, 1 | 2) {
                inner[field::V4_TOS] |= 3;
                put16(inner, field::V4_CSUM, 0);
                let c = wire::ipv4_checksum(&inner[..ihl]);
                put16(inner, field::V4_CSUM, c);
            }
            total
        }
        wire::NH_IPV6 => {
            if avail < wire::IPV6_HDR || inner[0] >> 4 != 6 {
                return Err(DropReason::BadNextHeader);
            }
            let total = wire::IPV6_HDR + usize::from(be16(inner, field::V6_PLEN));
            if total > avail {
                return Err(DropReason::Malformed);
            }
            let ecn = (inner[1] >> 4) & 3;
            if w.ecn == 3 && matches!(ecn, 1 | 2) {
                inner[1] |= 3 << 4;
            }
            total
        }
        _ => return Err(DropReason::BadNextHeader),
    };
    it.pkt.head = w.payload();
    it.pkt.len = inner_len;
    Ok(inner_len)
}
