//! Shared helpers for the ESP engine's tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use sluice_esp::wire;
use sluice_esp::{
    Algorithm, Backend, Cipher, InboundSa, OutboundSa, Tunnel, UdpEncap, BUF_HEADROOM,
};
use std::net::IpAddr;

/// A deterministic key of `n` bytes derived from `seed`.
pub fn key(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7 + 1))
        .collect()
}

/// ICMP echo request inner IPv4 packet with `payload` bytes of ICMP data.
pub fn ipv4_icmp(src: [u8; 4], dst: [u8; 4], seq: u16, payload: usize, tos: u8) -> Vec<u8> {
    let total = 20 + 8 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[1] = tos;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&seq.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = wire::ipv4_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..26].copy_from_slice(&0x5eedu16.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (i as u8) ^ (seq as u8);
    }
    let c = wire::checksum_finish(wire::checksum_add(0, &p[20..]));
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// ICMPv6 echo request inner IPv6 packet (checksum not computed: the engine
/// does not look past the IPv6 header).
pub fn ipv6_icmp(seq: u16, payload: usize, tclass: u8) -> Vec<u8> {
    let plen = 8 + payload;
    let mut p = vec![0u8; 40 + plen];
    p[0] = 0x60 | (tclass >> 4);
    p[1] = tclass << 4;
    p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    p[6] = 58;
    p[7] = 64;
    p[8..24].copy_from_slice(
        &"2001:db8:1::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p[24..40].copy_from_slice(
        &"2001:db8:2::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p[40] = 128;
    p[46..48].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[48..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(seq as u8);
    }
    p
}

/// A buffer with the packet at `BUF_HEADROOM` and 64 bytes of tailroom.
pub fn frame(pkt: &[u8]) -> (Vec<u8>, usize, usize) {
    let mut buf = vec![0u8; BUF_HEADROOM + pkt.len() + 64];
    buf[BUF_HEADROOM..BUF_HEADROOM + pkt.len()].copy_from_slice(pkt);
    (buf, BUF_HEADROOM, pkt.len())
}

/// Keys for one direction of an SA of `alg`.
pub fn keys(alg: Algorithm, seed: u8) -> (Vec<u8>, Vec<u8>) {
    (
        key(seed, alg.encr_key_len()),
        key(seed ^ 0x5a, alg.integ_key_len()),
    )
}

/// Tunnel endpoints in the test ranges.
pub fn tunnel(v6: bool, reverse: bool) -> Tunnel {
    let (a, b): (IpAddr, IpAddr) = if v6 {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    } else {
        ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
    };
    if reverse {
        Tunnel::new(b, a).unwrap()
    } else {
        Tunnel::new(a, b).unwrap()
    }
}

/// A matching outbound/inbound pair.
pub struct Pair {
    pub out: OutboundSa,
    pub inb: InboundSa,
}

pub fn pair(
    alg: Algorithm,
    enc_backend: Backend,
    dec_backend: Backend,
    esn: bool,
    v6_outer: bool,
    udp: bool,
) -> Pair {
    let (ek, ik) = keys(alg, 7);
    let spi = 0xc0de_0001;
    let out = OutboundSa::new(
        spi,
        Cipher::new(alg, enc_backend, &ek, &ik).unwrap(),
        esn,
        tunnel(v6_outer, false),
        udp.then_some(UdpEncap::NAT_T),
    );
    let inb = InboundSa::new(spi, Cipher::new(alg, dec_backend, &ek, &ik).unwrap(), esn);
    Pair { out, inb }
}

/// An inbound SA with the keys of [`pair`] for `alg` but another SPI / ESN.
pub fn inbound_like(alg: Algorithm, spi: u32, esn: bool) -> InboundSa {
    let (ek, ik) = keys(alg, 7);
    InboundSa::new(spi, Cipher::new(alg, Backend::Ring, &ek, &ik).unwrap(), esn)
}
