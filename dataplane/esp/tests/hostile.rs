//! Hostile input: random, truncated and bit-flipped packets never panic or
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! read out of bounds, and always end in a drop reason (or, for untouched
//! packets, success).

mod common;
use common::*;
use proptest::prelude::*;
use sluice_esp::{
    decap_burst, encap_burst, parse_esp, Algorithm, Backend, DecapItem, EncapItem, PacketBuf,
    ReplayWindow,
};
use std::sync::atomic::AtomicU64;

fn decap_once(p: &Pair, bytes: &[u8], head: usize) -> Result<usize, sluice_esp::DropReason> {
    let w = ReplayWindow::new(64);
    let mut buf = vec![0u8; head + bytes.len() + 8];
    buf[head..head + bytes.len()].copy_from_slice(bytes);
    let mut it = [DecapItem::new(
        &p.inb,
        &w,
        PacketBuf::new(&mut buf, head, bytes.len()),
    )];
    let st = decap_burst(&mut it);
    assert_eq!(st.packets + st.dropped(), 1);
    it[0].result
}

fn sealed(alg: Algorithm, esn: bool, v6: bool, udp: bool, size: usize) -> (Pair, Vec<u8>) {
    let p = pair(alg, Backend::Ring, Backend::Ring, esn, v6, udp);
    let seq = AtomicU64::new(0);
    let pkt = ipv4_icmp([198, 19, 1, 1], [198, 19, 2, 1], 1, size, 0);
    let (mut buf, h, l) = frame(&pkt);
    let mut it = [EncapItem::new(&p.out, &seq, PacketBuf::new(&mut buf, h, l))];
    encap_burst(&mut it);
    let o = it[0].pkt.data().to_vec();
    (p, o)
}

fn alg_strategy() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1600), head in 0usize..64) {
        let _ = parse_esp(&bytes);
        let p = pair(Algorithm::AesGcm128, Backend::Ring, Backend::Ring, false, false, true);
        prop_assert!(decap_once(&p, &bytes, head).is_err());
    }

    #[test]
    fn random_bytes_behind_a_valid_outer_header(
        alg in alg_strategy(),
        tail in prop::collection::vec(any::<u8>(), 0..600),
        esn: bool,
    ) {
        let (p, o) = sealed(alg, esn, false, true, 40);
        let mut pkt = o[..36].to_vec(); // IPv4 + UDP + ESP header kept
        pkt.extend_from_slice(&tail);
        let total = pkt.len() as u16;
        pkt[2..4].copy_from_slice(&total.to_be_bytes());
        pkt[10..12].copy_from_slice(&[0, 0]);
        let c = sluice_esp::wire::ipv4_checksum(&pkt[..20]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
        pkt[24..26].copy_from_slice(&(total - 20).to_be_bytes());
        prop_assert!(decap_once(&p, &pkt, 16).is_err());
    }

    #[test]
    fn truncated(alg in alg_strategy(), size in 0usize..400, cut in 0usize..2000, v6: bool, udp: bool) {
        let (p, o) = sealed(alg, true, v6, udp, size);
        let cut = cut % (o.len() + 1);
        let r = decap_once(&p, &o[..cut], 0);
        if cut < o.len() {
            prop_assert!(r.is_err());
        } else {
            prop_assert!(r.is_ok());
        }
    }

    #[test]
    fn bit_flipped(alg in alg_strategy(), size in 0usize..400, at: usize, bit in 0u8..8, v6: bool, udp: bool) {
        let (p, mut o) = sealed(alg, false, v6, udp, size);
        let at = at % o.len();
        o[at] ^= 1 << bit;
        // Fields nothing authenticates and the receiver need not trust: the
        // IPv6 traffic class, flow label, hop limit and source (no header checksum),
        // the UDP source port (NATs rewrite it) and UDP checksum (RFC 3948
        // §3.1.2). A flip anywhere else must get the packet refused.
        let r = decap_once(&p, &o, 8);
        let l4 = if v6 { 40 } else { 20 };
        // Outer addresses are not the engine's to check: the caller finds the
        // SA by SPI and destination, and NAT or MOBIKE move sources.
        let ipv6_unprotected =
            v6 && ((at == 0 && bit < 4) || (1..=3).contains(&at) || (7..40).contains(&at));
        let udp_unprotected = udp && [l4, l4 + 1, l4 + 6, l4 + 7].contains(&at);
        let harmless = ipv6_unprotected || udp_unprotected;
        if !harmless {
            prop_assert!(r.is_err(), "flip at {} bit {} accepted", at, bit);
        }
    }

    #[test]
    fn encap_of_arbitrary_inner_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1600), head in 0usize..200, tail in 0usize..64) {
        let p = pair(Algorithm::AesCbc128HmacSha256, Backend::Ring, Backend::Ring, false, true, true);
        let seq = AtomicU64::new(0);
        let mut buf = vec![0u8; head + bytes.len() + tail];
        buf[head..head + bytes.len()].copy_from_slice(&bytes);
        let mut it = [EncapItem::new(&p.out, &seq, PacketBuf::new(&mut buf, head, bytes.len()))];
        let st = encap_burst(&mut it);
        prop_assert_eq!(st.packets + st.dropped(), 1);
    }

    #[test]
    fn bogus_packet_bounds(len in 0usize..5000, head in 0usize..5000) {
        let p = pair(Algorithm::AesGcm128, Backend::Ring, Backend::Ring, false, false, true);
        let seq = AtomicU64::new(0);
        let w = ReplayWindow::new(64);
        let mut buf = vec![0x45u8; 1500];
        let mut it = [EncapItem::new(&p.out, &seq, PacketBuf::new(&mut buf, head, len))];
        encap_burst(&mut it);
        let mut buf = vec![0x45u8; 1500];
        let mut d = [DecapItem::new(&p.inb, &w, PacketBuf::new(&mut buf, head, len))];
        decap_burst(&mut d);
        prop_assert!(d[0].result.is_err());
    }
}
