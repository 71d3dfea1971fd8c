//! Encapsulate then decapsulate across algorithms, backends, families,
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! UDP encapsulation and ESN; check every header the engine writes.

mod common;
use common::*;
use sluice_esp::wire::ipv4_checksum;
use sluice_esp::{
    decap_burst, encap_burst, parse_esp, Algorithm, Backend, DecapItem, DropReason, EncapItem,
    PacketBuf, ReplayWindow,
};
use std::sync::atomic::{AtomicU64, Ordering};

fn inner(v6: bool, size: usize, seq: u16) -> Vec<u8> {
    if v6 {
        ipv6_icmp(seq, size, 0xb8)
    } else {
        ipv4_icmp([198, 19, 1, 1], [198, 19, 2, 1], seq, size, 0xb8)
    }
}

/// One packet through encap and decap; returns the outer packet.
fn round_trip(p: &Pair, seq: &AtomicU64, win: &ReplayWindow, pkt: &[u8]) -> Vec<u8> {
    let (mut buf, head, len) = frame(pkt);
    let mut items = [EncapItem::new(
        &p.out,
        seq,
        PacketBuf::new(&mut buf, head, len),
    )];
    let st = encap_burst(&mut items);
    assert_eq!(items[0].result, Ok(pkt.len()), "encap");
    assert_eq!((st.packets, st.bytes), (1, pkt.len() as u64));
    let (h, l) = (items[0].pkt.head, items[0].pkt.len);
    let outer = buf[h..h + l].to_vec();
    let meta = parse_esp(&outer).expect("parse_esp");
    assert_eq!(meta.spi, p.out.spi);
    assert_eq!(meta.seq_lo, seq.load(Ordering::Relaxed) as u32);
    assert_eq!(meta.udp.is_some(), p.out.encap.is_some());
    let mut d = [DecapItem::new(&p.inb, win, PacketBuf::new(&mut buf, h, l))];
    let st = decap_burst(&mut d);
    assert_eq!(d[0].result, Ok(pkt.len()), "decap");
    assert_eq!(st.packets, 1);
    assert_eq!(d[0].pkt.data(), pkt, "inner packet restored");
    outer
}

#[test]
fn every_combination_round_trips() {
    for alg in Algorithm::ALL {
        for (eb, db) in [
            (Backend::Ring, Backend::Ring),
            (Backend::RustCrypto, Backend::RustCrypto),
            (Backend::Ring, Backend::RustCrypto),
            (Backend::RustCrypto, Backend::Ring),
        ] {
            for esn in [false, true] {
                for v6_outer in [false, true] {
                    for udp in [false, true] {
                        let p = pair(alg, eb, db, esn, v6_outer, udp);
                        let seq = AtomicU64::new(0);
                        let win = ReplayWindow::new(4096);
                        for (i, size) in [0usize, 1, 2, 3, 13, 64, 511, 1372].iter().enumerate() {
                            for v6_inner in [false, true] {
                                let pkt = inner(v6_inner, *size, i as u16);
                                round_trip(&p, &seq, &win, &pkt);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_size_up_to_the_mtu() {
    for alg in Algorithm::ALL {
        let p = pair(
            alg,
            Backend::default(),
            Backend::default(),
            true,
            false,
            true,
        );
        let seq = AtomicU64::new(0);
        let win = ReplayWindow::new(4096);
        for size in 0..=1472usize {
            let pkt = inner(size % 2 == 0, size.saturating_sub(20), size as u16);
            round_trip(&p, &seq, &win, &pkt);
        }
    }
}

#[test]
fn outer_headers_are_well_formed() {
    let p = pair(
        Algorithm::AesGcm128,
        Backend::Ring,
        Backend::Ring,
        false,
        false,
        true,
    );
    let seq = AtomicU64::new(41);
    let win = ReplayWindow::new(64);
    let pkt = inner(false, 100, 1);
    let o = round_trip(&p, &seq, &win, &pkt);
    assert_eq!(o[0], 0x45);
    assert_eq!(o[1], 0xb8, "DSCP and ECN copied from the inner header");
    assert_eq!(u16::from_be_bytes([o[2], o[3]]) as usize, o.len());
    assert_eq!(o[6] & 0x40, 0x40, "DF copied from the inner IPv4 header");
    assert_eq!(o[8], 64);
    assert_eq!(o[9], 17);
    assert_eq!(ipv4_checksum(&o[..20]), 0);
    assert_eq!(&o[12..20], &[198, 18, 0, 1, 198, 18, 0, 2]);
    assert_eq!(u16::from_be_bytes([o[20], o[21]]), 4500);
    assert_eq!(u16::from_be_bytes([o[22], o[23]]), 4500);
    assert_eq!(u16::from_be_bytes([o[24], o[25]]) as usize, o.len() - 20);
    assert_eq!(&o[28..32], &0xc0de_0001u32.to_be_bytes());
    assert_eq!(&o[32..36], &42u32.to_be_bytes());
    assert_eq!(
        &o[36..44],
        &42u64.to_be_bytes(),
        "GCM IV is the sequence number"
    );
    // ESP payload + trailer is 4-byte aligned (RFC 4303 §2.4).
    assert_eq!((o.len() - 20 - 8 - 8 - 8 - 16) % 4, 0);
}

#[test]
fn ipv6_outer_udp_checksum_verifies() {
    let p = pair(
        Algorithm::ChaCha20Poly1305,
        Backend::Ring,
        Backend::Ring,
        false,
        true,
        true,
    );
    let seq = AtomicU64::new(0);
    let win = ReplayWindow::new(64);
    let o = round_trip(&p, &seq, &win, &inner(true, 333, 9));
    assert_eq!(o[0] >> 4, 6);
    assert_eq!(o[6], 17);
    let udp_len = o.len() - 40;
    let mut sum = sluice_esp::wire::checksum_add(0, &o[8..40]);
    sum += udp_len as u32 + 17;
    sum = sluice_esp::wire::checksum_add(sum, &o[40..]);
    assert_eq!(
        sluice_esp::wire::checksum_finish(sum),
        0,
        "UDP checksum over the pseudo-header"
    );
}

#[test]
fn cbc_ivs_are_unique_and_not_the_sequence_number() {
    let p = pair(
        Algorithm::AesCbc256HmacSha256,
        Backend::Ring,
        Backend::Ring,
        false,
        false,
        false,
    );
    let seq = AtomicU64::new(0);
    let win = ReplayWindow::new(64);
    let mut ivs = std::collections::HashSet::new();
    for i in 0..200 {
        let o = round_trip(&p, &seq, &win, &inner(false, 64, i));
        let iv = o[28..44].to_vec();
        assert_ne!(&iv[..8], &(u64::from(i) + 1).to_be_bytes());
        assert!(ivs.insert(iv), "IV repeated");
    }
}

#[test]
fn mixed_burst_of_several_sas() {
    let a = pair(
        Algorithm::AesGcm256,
        Backend::Ring,
        Backend::Ring,
        true,
        false,
        true,
    );
    let b = pair(
        Algorithm::AesCbc128HmacSha256,
        Backend::Ring,
        Backend::Ring,
        false,
        true,
        false,
    );
    let (sa, sb) = (AtomicU64::new(0), AtomicU64::new(0));
    let (wa, wb) = (ReplayWindow::new(4096), ReplayWindow::new(4096));
    let pkts: Vec<Vec<u8>> = (0..32)
        .map(|i| inner(i % 3 == 0, 40 + i * 37, i as u16))
        .collect();
    let mut frames: Vec<(Vec<u8>, usize, usize)> = pkts.iter().map(|p| frame(p)).collect();
    let mut items: Vec<EncapItem<'_>> = frames
        .iter_mut()
        .enumerate()
        .map(|(i, (buf, h, l))| {
            let (sa_, seq) = if i % 2 == 0 {
                (&a.out, &sa)
            } else {
                (&b.out, &sb)
            };
            EncapItem::new(sa_, seq, PacketBuf::new(buf, *h, *l))
        })
        .collect();
    let st = encap_burst(&mut items);
    assert_eq!(st.packets, 32);
    let spans: Vec<(usize, usize)> = items.iter().map(|it| (it.pkt.head, it.pkt.len)).collect();
    drop(items);
    let mut items: Vec<DecapItem<'_>> = frames
        .iter_mut()
        .zip(&spans)
        .enumerate()
        .map(|(i, ((buf, _, _), (h, l)))| {
            let (sa_, w) = if i % 2 == 0 {
                (&a.inb, &wa)
            } else {
                (&b.inb, &wb)
            };
            DecapItem::new(sa_, w, PacketBuf::new(buf, *h, *l))
        })
        .collect();
    let st = decap_burst(&mut items);
    assert_eq!(st.packets, 32, "{:?}", st);
    for (it, p) in items.iter().zip(&pkts) {
        assert_eq!(it.pkt.data(), &p[..]);
    }
    assert_eq!(
        (sa.load(Ordering::Relaxed), sb.load(Ordering::Relaxed)),
        (16, 16)
    );
    assert_eq!((wa.top(), wb.top()), (16, 16));
}

#[test]
fn sequence_numbers_stay_unique_across_threads() {
    let p = pair(
        Algorithm::AesGcm128,
        Backend::Ring,
        Backend::Ring,
        true,
        false,
        true,
    );
    let seq = AtomicU64::new(0);
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let (p, seq, seen) = (&p, &seq, &seen);
            s.spawn(move || {
                for i in 0..500u16 {
                    let pkt = inner(false, 32, t * 1000 + i);
                    let (mut buf, h, l) = frame(&pkt);
                    let mut it = [EncapItem::new(&p.out, seq, PacketBuf::new(&mut buf, h, l))];
                    encap_burst(&mut it);
                    let m = parse_esp(it[0].pkt.data()).unwrap();
                    assert!(seen.lock().unwrap().insert(m.seq_lo));
                }
            });
        }
    });
    assert_eq!(seen.lock().unwrap().len(), 2000);
    assert_eq!(seq.load(Ordering::Relaxed), 2000);
    let _ = DropReason::COUNT;
}
