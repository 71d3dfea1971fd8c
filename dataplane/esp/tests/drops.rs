//! Every drop reason, and the replay window through the engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
use common::*;
use sluice_esp::{
    decap_burst, encap_burst, parse_esp, Algorithm, Backend, DecapItem, DropReason, EncapItem,
    InboundSa, PacketBuf, ReplayWindow,
};
use std::sync::atomic::AtomicU64;

fn v4(n: usize, seq: u16) -> Vec<u8> {
    ipv4_icmp([198, 19, 1, 1], [198, 19, 2, 1], seq, n, 0)
}

/// Encapsulates `pkt`, returning the outer packet bytes.
fn seal(p: &Pair, seq: &AtomicU64, pkt: &[u8]) -> Vec<u8> {
    let (mut buf, h, l) = frame(pkt);
    let mut it = [EncapItem::new(&p.out, seq, PacketBuf::new(&mut buf, h, l))];
    encap_burst(&mut it);
    assert!(it[0].result.is_ok(), "{:?}", it[0].result);
    it[0].pkt.data().to_vec()
}

fn open(sa: &InboundSa, w: &ReplayWindow, outer: &[u8]) -> Result<usize, DropReason> {
    let (mut buf, h, l) = frame(outer);
    let mut it = [DecapItem::new(sa, w, PacketBuf::new(&mut buf, h, l))];
    let st = decap_burst(&mut it);
    if let Err(r) = it[0].result {
        assert_eq!(st.drops_for(r), 1, "counted under {r}");
        assert_eq!(st.dropped(), 1);
    }
    it[0].result
}

fn gcm() -> Pair {
    pair(
        Algorithm::AesGcm128,
        Backend::Ring,
        Backend::Ring,
        false,
        false,
        true,
    )
}

#[test]
fn replay_duplicate_and_stale() {
    let p = gcm();
    let seq = AtomicU64::new(0);
    let w = ReplayWindow::new(64);
    let first = seal(&p, &seq, &v4(10, 1));
    assert!(open(&p.inb, &w, &first).is_ok());
    assert_eq!(open(&p.inb, &w, &first), Err(DropReason::Replay));
    for i in 0..100 {
        let o = seal(&p, &seq, &v4(10, i));
        assert!(open(&p.inb, &w, &o).is_ok());
    }
    assert_eq!(open(&p.inb, &w, &first), Err(DropReason::ReplayStale));
}

#[test]
fn replay_window_is_updated_only_after_the_icv() {
    let p = gcm();
    let seq = AtomicU64::new(0);
    let w = ReplayWindow::new(64);
    let good = seal(&p, &seq, &v4(10, 1));
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(open(&p.inb, &w, &forged), Err(DropReason::IcvFailure));
    assert_eq!(w.top(), 0, "a forged packet must not move the window");
    assert!(open(&p.inb, &w, &good).is_ok());
}

#[test]
fn duplicate_inside_one_burst_is_caught() {
    let p = gcm();
    let seq = AtomicU64::new(0);
    let w = ReplayWindow::new(64);
    let o = seal(&p, &seq, &v4(10, 1));
    let (mut b1, h, l) = frame(&o);
    let (mut b2, _, _) = frame(&o);
    let mut items = [
        DecapItem::new(&p.inb, &w, PacketBuf::new(&mut b1, h, l)),
        DecapItem::new(&p.inb, &w, PacketBuf::new(&mut b2, h, l)),
    ];
    let st = decap_burst(&mut items);
    assert_eq!(st.packets, 1);
    assert_eq!(items[1].result, Err(DropReason::Replay));
}

#[test]
fn icv_failure_for_every_algorithm_and_any_flipped_byte() {
    for alg in Algorithm::ALL {
        let p = pair(alg, Backend::Ring, Backend::Ring, true, false, false);
        let seq = AtomicU64::new(0);
        let o = seal(&p, &seq, &v4(50, 3));
        // Flip bytes after the SPI and sequence number (those give other reasons).
        for at in (28..o.len()).step_by(7) {
            let w = ReplayWindow::new(64);
            let mut bad = o.clone();
            bad[at] ^= 0x10;
            assert_eq!(
                open(&p.inb, &w, &bad),
                Err(DropReason::IcvFailure),
                "{alg} byte {at}"
            );
        }
    }
}

#[test]
fn spi_mismatch_and_not_esp() {
    let p = gcm();
    let other = inbound_like(Algorithm::AesGcm128, 0x1234, false);
    let seq = AtomicU64::new(0);
    let w = ReplayWindow::new(64);
    let o = seal(&p, &seq, &v4(10, 1));
    assert_eq!(open(&other, &w, &o), Err(DropReason::SpiMismatch));
    // IKE on 4500: non-ESP marker.
    let mut ike = o.clone();
    ike[28..32].copy_from_slice(&[0; 4]);
    assert_eq!(parse_esp(&ike), Err(DropReason::NotEsp));
    // NAT-T keepalive: one byte 0xff.
    let mut ka = o[..29].to_vec();
    ka[28] = 0xff;
    ka[2..4].copy_from_slice(&29u16.to_be_bytes());
    ka[24..26].copy_from_slice(&9u16.to_be_bytes());
    ka[10..12].copy_from_slice(&[0, 0]);
    let c = sluice_esp::wire::ipv4_checksum(&ka[..20]);
    ka[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(parse_esp(&ka), Err(DropReason::NotEsp));
    assert_eq!(open(&p.inb, &w, &ka), Err(DropReason::NotEsp));
}

#[test]
fn fragments_and_malformed_outer_headers() {
    let p = gcm();
    let seq = AtomicU64::new(0);
    let w = ReplayWindow::new(64);
    let o = seal(&p, &seq, &v4(10, 1));
    let mut frag = o.clone();
    frag[6] |= 0x20; // MF
    frag[10..12].copy_from_slice(&[0, 0]);
    let c = sluice_esp::wire::ipv4_checksum(&frag[..20]);
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(open(&p.inb, &w, &frag), Err(DropReason::Fragment));
    let mut csum = o.clone();
    csum[10] ^= 1;
    assert_eq!(open(&p.inb, &w, &csum), Err(DropReason::Malformed));
    assert_eq!(open(&p.inb, &w, &o[..30]), Err(DropReason::Malformed));
    assert_eq!(open(&p.inb, &w, &[]), Err(DropReason::Malformed));
}

/// Builds a packet whose plaintext trailer is chosen by the test, sealed with
/// the SA's real key, so the ICV verifies and the trailer checks are reached.
fn seal_raw_payload(p: &Pair, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut o = vec![0u8; 20 + 8 + 8 + 8 + plaintext.len() + 16];
    o[0] = 0x45;
    let total = o.len() as u16;
    o[2..4].copy_from_slice(&total.to_be_bytes());
    o[8] = 64;
    o[9] = 17;
    o[12..16].copy_from_slice(&[198, 18, 0, 1]);
    o[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let c = sluice_esp::wire::ipv4_checksum(&o[..20]);
    o[10..12].copy_from_slice(&c.to_be_bytes());
    o[20..22].copy_from_slice(&4500u16.to_be_bytes());
    o[22..24].copy_from_slice(&4500u16.to_be_bytes());
    o[24..26].copy_from_slice(&(total - 20).to_be_bytes());
    o[28..32].copy_from_slice(&p.out.spi.to_be_bytes());
    o[32..36].copy_from_slice(&(seq as u32).to_be_bytes());
    o[36..44].copy_from_slice(&seq.to_be_bytes());
    let mut aad = [0u8; 8];
    aad[..4].copy_from_slice(&p.out.spi.to_be_bytes());
    aad[4..].copy_from_slice(&(seq as u32).to_be_bytes());
    let end = 44 + plaintext.len();
    o[44..end].copy_from_slice(plaintext);
    let tag = p
        .out
        .cipher()
        .seal(&seq.to_be_bytes(), &aad, &mut o[44..end]);
    o[end..].copy_from_slice(&tag);
    o
}

#[test]
fn trailer_checks() {
    let p = gcm();
    let inner = v4(10, 1);
    let with = |pad: &[u8], padlen: u8, nh: u8| {
        let mut pt = inner.clone();
        pt.extend_from_slice(pad);
        pt.push(padlen);
        pt.push(nh);
        pt
    };
    let w = ReplayWindow::new(64);
    let ok = seal_raw_payload(&p, 1, &with(&[1, 2], 2, 4));
    assert_eq!(open(&p.inb, &w, &ok), Ok(inner.len()));
    let bad_pad = seal_raw_payload(&p, 2, &with(&[1, 3], 2, 4));
    assert_eq!(open(&p.inb, &w, &bad_pad), Err(DropReason::BadPadding));
    let long_pad = seal_raw_payload(&p, 3, &with(&[], 200, 4));
    assert_eq!(open(&p.inb, &w, &long_pad), Err(DropReason::BadPadding));
    let dummy = seal_raw_payload(&p, 4, &with(&[1, 2], 2, 59));
    assert_eq!(open(&p.inb, &w, &dummy), Err(DropReason::Dummy));
    let tcp = seal_raw_payload(&p, 5, &with(&[1, 2], 2, 6));
    assert_eq!(open(&p.inb, &w, &tcp), Err(DropReason::BadNextHeader));
    let v6_claim = seal_raw_payload(&p, 6, &with(&[1, 2], 2, 41));
    assert_eq!(open(&p.inb, &w, &v6_claim), Err(DropReason::BadNextHeader));
    // TFC padding (RFC 4303 §2.7): extra bytes after the inner packet are cut.
    let mut tfc = inner.clone();
    tfc.extend_from_slice(&[0xee; 6]);
    let tfc = seal_raw_payload(&p, 7, &{
        let mut pt = tfc;
        pt.extend_from_slice(&[0, 4]);
        pt
    });
    assert_eq!(open(&p.inb, &w, &tfc), Ok(inner.len()));
    // Inner total length larger than what was decrypted.
    let mut lie = inner.clone();
    lie[2..4].copy_from_slice(&1000u16.to_be_bytes());
    let lie = seal_raw_payload(&p, 8, &{
        let mut pt = lie;
        pt.extend_from_slice(&[1, 2, 2, 4]);
        pt
    });
    assert_eq!(open(&p.inb, &w, &lie), Err(DropReason::Malformed));
}

#[test]
fn encap_refusals() {
    let p = gcm();
    let seq = AtomicU64::new(0);
    let pkt = v4(100, 1);
    // No headroom.
    let mut buf = vec![0u8; pkt.len() + 64];
    buf[..pkt.len()].copy_from_slice(&pkt);
    let mut it = [EncapItem::new(
        &p.out,
        &seq,
        PacketBuf::new(&mut buf, 0, pkt.len()),
    )];
    let st = encap_burst(&mut it);
    assert_eq!(it[0].result, Err(DropReason::NoHeadroom));
    assert_eq!(st.drops_for(DropReason::NoHeadroom), 1);
    // No tailroom.
    let mut buf = vec![0u8; 128 + pkt.len() + 3];
    buf[128..128 + pkt.len()].copy_from_slice(&pkt);
    let mut it = [EncapItem::new(
        &p.out,
        &seq,
        PacketBuf::new(&mut buf, 128, pkt.len()),
    )];
    encap_burst(&mut it);
    assert_eq!(it[0].result, Err(DropReason::NoTailroom));
    // Not IP.
    let (mut buf, h, l) = frame(&[0x12; 40]);
    let mut it = [EncapItem::new(&p.out, &seq, PacketBuf::new(&mut buf, h, l))];
    encap_burst(&mut it);
    assert_eq!(it[0].result, Err(DropReason::InnerNotIp));
    // A refused packet consumes no sequence number.
    assert_eq!(seq.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn sequence_number_overflow_stops_the_sa() {
    let p = gcm(); // ESN off
    let seq = AtomicU64::new(u64::from(u32::MAX) - 1);
    let pkt = v4(10, 1);
    let o = seal(&p, &seq, &pkt);
    assert_eq!(parse_esp(&o).unwrap().seq_lo, u32::MAX);
    let (mut buf, h, l) = frame(&pkt);
    let mut it = [EncapItem::new(&p.out, &seq, PacketBuf::new(&mut buf, h, l))];
    encap_burst(&mut it);
    assert_eq!(it[0].result, Err(DropReason::SeqOverflow));
    assert_eq!(
        seq.load(std::sync::atomic::Ordering::Relaxed),
        u64::from(u32::MAX),
        "no wrap"
    );

    let q = pair(
        Algorithm::AesGcm128,
        Backend::Ring,
        Backend::Ring,
        true,
        false,
        true,
    );
    let seq = AtomicU64::new(u64::MAX - 1);
    seal(&q, &seq, &pkt);
    let (mut buf, h, l) = frame(&pkt);
    let mut it = [EncapItem::new(&q.out, &seq, PacketBuf::new(&mut buf, h, l))];
    encap_burst(&mut it);
    assert_eq!(it[0].result, Err(DropReason::SeqOverflow));
    assert_eq!(seq.load(std::sync::atomic::Ordering::Relaxed), u64::MAX);
}

#[test]
fn esn_epoch_change_is_decided_by_the_icv() {
    let p = pair(
        Algorithm::AesGcm256,
        Backend::Ring,
        Backend::Ring,
        true,
        false,
        true,
    );
    let start = (1u64 << 32) - 10;
    let seq = AtomicU64::new(start);
    let w = ReplayWindow::new(4096);
    // The receiver has seen the SA's traffic up to `start` already.
    w.update(start).unwrap();
    let mut outs = Vec::new();
    for i in 0..20 {
        outs.push(seal(&p, &seq, &v4(20, i)));
    }
    // Deliver the first before the epoch change, then the rest; then a
    // reordered old one from the previous epoch.
    assert!(open(&p.inb, &w, &outs[0]).is_ok());
    for o in &outs[10..] {
        assert!(open(&p.inb, &w, o).is_ok());
    }
    assert_eq!(w.top(), start + 20);
    assert!(
        open(&p.inb, &w, &outs[5]).is_ok(),
        "late packet from epoch 0 inside the window"
    );
    assert_eq!(open(&p.inb, &w, &outs[5]), Err(DropReason::Replay));
    // The same packet with ESN off at the receiver: the ICV (computed with the
    // high bits) cannot verify.
    let no_esn = inbound_like(Algorithm::AesGcm256, p.inb.spi, false);
    let w2 = ReplayWindow::new(4096);
    assert_eq!(open(&no_esn, &w2, &outs[15]), Err(DropReason::IcvFailure));
}

#[test]
fn reason_labels_are_unique() {
    let mut seen = std::collections::HashSet::new();
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
        assert!(seen.insert(r.as_str()));
    }
}

#[test]
fn sequence_numbers_are_taken_per_run_in_burst_order() {
    // Two SAs in one burst, a refused packet among them, and fewer numbers
    // left on the first SA than it has packets: numbers follow the burst's
    // order, the refused packet costs none, the packets past the last
    // number are dropped and the counter stops there.
    let a = gcm();
    let b = gcm();
    let seq_a = AtomicU64::new(u64::from(u32::MAX) - 3);
    let seq_b = AtomicU64::new(7);
    let good = v4(60, 1);
    let bad = [0x12u8; 40];
    let plan: [(&Pair, &AtomicU64, &[u8]); 7] = [
        (&a, &seq_a, &good),
        (&a, &seq_a, &bad),
        (&a, &seq_a, &good),
        (&b, &seq_b, &good),
        (&a, &seq_a, &good),
        (&a, &seq_a, &good),
        (&b, &seq_b, &good),
    ];
    let mut bufs: Vec<(Vec<u8>, usize, usize)> = plan.iter().map(|(_, _, p)| frame(p)).collect();
    let mut items: Vec<EncapItem> = plan
        .iter()
        .zip(bufs.iter_mut())
        .map(|((p, s, _), (buf, h, l))| EncapItem::new(&p.out, s, PacketBuf::new(buf, *h, *l)))
        .collect();
    let st = encap_burst(&mut items);
    let got: Vec<Result<u32, DropReason>> = items
        .iter()
        .map(|it| it.result.map(|_| parse_esp(it.pkt.data()).unwrap().seq_lo))
        .collect();
    let max = u32::MAX;
    assert_eq!(
        got,
        [
            Ok(max - 2),
            Err(DropReason::InnerNotIp),
            Ok(max - 1),
            Ok(8),
            Ok(max),
            Err(DropReason::SeqOverflow),
            Ok(9),
        ]
    );
    assert_eq!(st.drops_for(DropReason::SeqOverflow), 1);
    assert_eq!(st.drops_for(DropReason::InnerNotIp), 1);
    assert_eq!(
        seq_a.load(std::sync::atomic::Ordering::Relaxed),
        u64::from(max)
    );
    assert_eq!(seq_b.load(std::sync::atomic::Ordering::Relaxed), 9);
    // Every packet sent opens at the peer under its own SA.
    let (wa, wb) = (ReplayWindow::new(64), ReplayWindow::new(64));
    for (it, (p, s, _)) in items.iter().zip(plan.iter()) {
        if it.result.is_ok() {
            let (inb, w) = if std::ptr::eq(*s, &seq_a) {
                (&a.inb, &wa)
            } else {
                (&b.inb, &wb)
            };
            assert_eq!(
                open(inb, w, it.pkt.data()),
                Ok(good.len()),
                "{:?}",
                p.out.spi
            );
        }
    }
}

#[test]
fn a_burst_longer_than_a_pass_is_handled_whole_in_order() {
    // The engine works on bursts in passes (its per-packet scratch is on
    // its stack): 150 packets, one of them refused, both ways in one burst
    // each; every number taken once and in order, each packet opened with
    // its own length, across the passes' boundaries.
    let p = gcm();
    let seq = AtomicU64::new(0);
    let n = 150;
    let pkts: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            if i == 70 {
                vec![0x12; 40]
            } else {
                v4(40 + i, i as u16)
            }
        })
        .collect();
    let mut bufs: Vec<(Vec<u8>, usize, usize)> = pkts.iter().map(|x| frame(x)).collect();
    let mut items: Vec<EncapItem> = bufs
        .iter_mut()
        .map(|(b, h, l)| EncapItem::new(&p.out, &seq, PacketBuf::new(b, *h, *l)))
        .collect();
    let st = encap_burst(&mut items);
    assert_eq!(st.dropped(), 1);
    assert_eq!(items[70].result, Err(DropReason::InnerNotIp));
    let seqs: Vec<u32> = items
        .iter()
        .filter(|it| it.result.is_ok())
        .map(|it| parse_esp(it.pkt.data()).unwrap().seq_lo)
        .collect();
    assert_eq!(seqs, (1..n as u32).collect::<Vec<_>>());
    let outer: Vec<Vec<u8>> = items
        .iter()
        .filter(|it| it.result.is_ok())
        .map(|it| it.pkt.data().to_vec())
        .collect();
    drop(items);
    let w = ReplayWindow::new(4096);
    let mut bufs: Vec<(Vec<u8>, usize, usize)> = outer.iter().map(|x| frame(x)).collect();
    let mut items: Vec<DecapItem> = bufs
        .iter_mut()
        .map(|(b, h, l)| DecapItem::new(&p.inb, &w, PacketBuf::new(b, *h, *l)))
        .collect();
    let st = decap_burst(&mut items);
    assert_eq!(st.dropped(), 0);
    let sent = pkts.iter().enumerate().filter(|(i, _)| *i != 70);
    for (it, (_, inner)) in items.iter().zip(sent) {
        assert_eq!(it.result, Ok(inner.len()));
        assert_eq!(it.pkt.data(), &inner[..]);
    }
}
