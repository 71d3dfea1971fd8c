//! ABI refusal, lookups, rekey, reclamation and counters in one process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sluice_sa_table::*;
use std::net::IpAddr;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sluice-sat-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

pub fn sa(id: u64, dir: Direction, spi: u32) -> SaConfig {
    SaConfig {
        sa_id: id,
        child_id: id as u32,
        direction: dir,
        spi,
        src: "198.18.0.1".parse().unwrap(),
        dst: "198.18.0.2".parse().unwrap(),
        encap: Some((4500, 4500)),
        encr_id: 20,
        key_bits: 128,
        integ_id: 0,
        encr_key: (0..20).map(|i| (id as u8).wrapping_add(i)).collect(),
        integ_key: vec![],
        esn: true,
        replay_window: 4096,
        lifetimes: Lifetimes {
            hard_seconds: 3600,
            ..Lifetimes::default()
        },
        installed_at: 1_700_000_000,
    }
}

const CAP: Capacity = Capacity {
    sas: 64,
    policies: 64,
};

#[test]
fn abi_mismatches_are_refused_with_the_reason() {
    let p = tmp("abi");
    drop(Writer::create_or_attach(&p, CAP).unwrap());
    let good = std::fs::read(&p).unwrap();
    assert!(Reader::attach(&p).is_ok());

    let mut bad = good.clone();
    bad[0] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();
    let e = Reader::attach(&p).unwrap_err();
    assert!(matches!(e, TableError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("not a Sluice SA table"));

    let mut bad = good.clone();
    bad[8] = 99; // abi_version (little endian u32 after the magic)
    std::fs::write(&p, &bad).unwrap();
    let e = Reader::attach(&p).unwrap_err();
    assert!(
        matches!(
            e,
            TableError::AbiVersion {
                expected: 1,
                found: 99
            }
        ),
        "{e}"
    );

    let mut bad = good.clone();
    bad[16] = bad[16].wrapping_add(64); // cold record size
    std::fs::write(&p, &bad).unwrap();
    let e = Reader::attach(&p).unwrap_err();
    assert!(
        matches!(
            e,
            TableError::RecordSize {
                what: "cold SA",
                ..
            }
        ),
        "{e}"
    );

    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = Reader::attach(&p).unwrap_err();
    assert!(matches!(e, TableError::Truncated { .. }), "{e}");
    std::fs::write(&p, &good[..100]).unwrap();
    assert!(matches!(
        Reader::attach(&p).unwrap_err(),
        TableError::Truncated { .. }
    ));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn one_writer_at_a_time_and_reattach() {
    let p = tmp("lock");
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    let e = Writer::create_or_attach(&p, CAP).unwrap_err();
    assert!(matches!(e, TableError::WriterLocked(_)), "{e}");
    let h = w.insert_sa(&sa(1, Direction::Inbound, 0x100)).unwrap();
    drop(w);
    let w = Writer::create_or_attach(&p, CAP).unwrap();
    let live = w.live_sas();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].0, h);
    assert_eq!(live[0].1, sa(1, Direction::Inbound, 0x100));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn inbound_lookup_delete_and_reuse_after_grace() {
    let p = tmp("inb");
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    let r = Reader::attach(&p).unwrap();
    let t = r.register_thread().unwrap();
    let dst: IpAddr = "198.18.0.2".parse().unwrap();
    let h = w.insert_sa(&sa(7, Direction::Inbound, 0xabc)).unwrap();
    assert_eq!(t.lookup_inbound(0xabc, dst), Some(h));
    assert_eq!(t.lookup_inbound(0xabc, "198.18.0.9".parse().unwrap()), None);
    assert_eq!(t.lookup_inbound(0xabd, dst), None);
    let cfg = t.config(h).unwrap();
    assert_eq!(cfg.encr_key, sa(7, Direction::Inbound, 0).encr_key);
    assert!(
        w.insert_sa(&sa(8, Direction::Inbound, 0xabc)).is_err(),
        "duplicate SPI"
    );

    w.delete_sa(h).unwrap();
    assert_eq!(t.lookup_inbound(0xabc, dst), None);
    assert!(t.config(h).is_none() && !t.is_current(h));
    // The reader has not passed a quiescent point: the slot is not reusable.
    assert_eq!(w.reclaim(), 0);
    t.quiescent();
    assert_eq!(w.reclaim(), 1);
    // Offline readers do not hold anything back.
    let h2 = w.insert_sa(&sa(9, Direction::Inbound, 0xdef)).unwrap();
    w.delete_sa(h2).unwrap();
    t.offline();
    assert_eq!(w.reclaim(), 1);
    let _ = std::fs::remove_file(&p);
}

#[test]
fn capacity_is_bounded() {
    let p = tmp("full");
    let mut w = Writer::create_or_attach(
        &p,
        Capacity {
            sas: 4,
            policies: 4,
        },
    )
    .unwrap();
    for i in 0..4 {
        w.insert_sa(&sa(i, Direction::Outbound, i as u32)).unwrap();
    }
    assert!(matches!(
        w.insert_sa(&sa(9, Direction::Outbound, 9)),
        Err(TableError::Full("SA"))
    ));
    let mut big = sa(10, Direction::Outbound, 10);
    big.encr_key = vec![0; 65];
    assert!(matches!(w.insert_sa(&big), Err(TableError::Invalid(_))));
    let _ = std::fs::remove_file(&p);
}

fn pfx(s: &str, len: u8) -> Prefix {
    Prefix::new(s.parse().unwrap(), len).unwrap()
}

fn flow(src: &str, dst: &str, proto: u8, sp: u16, dp: u16) -> FlowKey {
    FlowKey {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto,
        src_port: sp,
        dst_port: dp,
    }
}

#[test]
fn most_specific_policy_wins_and_rekey_rebinds() {
    let p = tmp("pol");
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    let r = Reader::attach(&p).unwrap();
    let t = r.register_thread().unwrap();
    let any4 = w
        .add_policy(Policy::between(
            pfx("0.0.0.0", 0),
            pfx("0.0.0.0", 0),
            Action::Bypass,
        ))
        .unwrap();
    let net = w
        .add_policy(Policy::between(
            pfx("198.19.1.0", 24),
            pfx("198.19.2.0", 24),
            Action::Protect,
        ))
        .unwrap();
    let host = w
        .add_policy(Policy::between(
            pfx("198.19.1.0", 24),
            pfx("198.19.2.7", 32),
            Action::Drop,
        ))
        .unwrap();
    let mut web = Policy::between(pfx("198.19.1.0", 24), pfx("198.19.2.0", 24), Action::Bypass);
    web.proto = Some(6);
    web.dst_ports = (443, 443);
    let web = w.add_policy(web).unwrap();
    let v6 = w
        .add_policy(Policy::between(
            pfx("2001:db8:1::", 48),
            pfx("2001:db8:2::", 48),
            Action::Protect,
        ))
        .unwrap();
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.1", 1, 0, 0)),
        None,
        "not committed"
    );
    w.commit().unwrap();
    t.quiescent();
    let out = w.insert_sa(&sa(1, Direction::Outbound, 0x11)).unwrap();
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.1", 1, 0, 0)),
        Some(PolicyMatch::ProtectNoSa(net))
    );
    w.bind_policy(net, Some(out)).unwrap();
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.1", 17, 5, 53)),
        Some(PolicyMatch::Protect(net, out))
    );
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.7", 1, 0, 0)),
        Some(PolicyMatch::Drop(host))
    );
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.1", 6, 999, 443)),
        Some(PolicyMatch::Bypass(web))
    );
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.1", 6, 999, 444)),
        Some(PolicyMatch::Protect(net, out))
    );
    assert_eq!(
        t.lookup_outbound(&flow("10.1.1.1", "10.2.2.2", 6, 1, 2)),
        Some(PolicyMatch::Bypass(any4))
    );
    assert_eq!(
        t.lookup_outbound(&flow("2001:db8:1::5", "2001:db8:2::9", 58, 0, 0)),
        Some(PolicyMatch::ProtectNoSa(v6))
    );
    assert_eq!(
        t.lookup_outbound(&flow("2001:db8:9::5", "2001:db8:2::9", 58, 0, 0)),
        None
    );

    // CHILD SA rekey: the policy follows the new SA without a recompile.
    let new = w
        .replace_sa(out, &sa(2, Direction::Outbound, 0x22))
        .unwrap();
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.1", 1, 0, 0)),
        Some(PolicyMatch::Protect(net, new))
    );
    assert!(!t.is_current(out));
    w.remove_policy(host).unwrap();
    t.quiescent();
    w.commit().unwrap();
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.7", 1, 0, 0)),
        Some(PolicyMatch::Protect(net, new))
    );
    // A restarted writer gets its policies back.
    drop(w);
    let w = Writer::create_or_attach(&p, CAP).unwrap();
    assert_eq!(w.policies().len(), 4);
    let _ = std::fs::remove_file(&p);
}

#[test]
fn hundred_thousand_policies_match_a_brute_force_reference() {
    let p = tmp("100k");
    let n = 100_000u32;
    let mut w = Writer::create_or_attach(
        &p,
        Capacity {
            sas: 16,
            policies: n,
        },
    )
    .unwrap();
    let r = Reader::attach(&p).unwrap();
    let t = r.register_thread().unwrap();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut all = Vec::new();
    for i in 0..n {
        // Site-to-site shapes: 198.18.0.0/15 space, /16../32 prefixes, a few
        // with protocol and port restrictions.
        let a = 0xc612_0000u32 | (rng.next_u32() & 0x1ffff);
        let b = 0xc612_0000u32 | (rng.next_u32() & 0x1ffff);
        let sl = [16u8, 24, 28, 32][(rng.next_u32() % 4) as usize];
        let dl = [16u8, 20, 24, 30, 32][(rng.next_u32() % 5) as usize];
        let mut pol = Policy::between(
            Prefix::new(IpAddr::V4(a.into()), sl).unwrap(),
            Prefix::new(IpAddr::V4(b.into()), dl).unwrap(),
            [Action::Protect, Action::Bypass, Action::Drop][(i % 3) as usize],
        );
        if i % 7 == 0 {
            pol.proto = Some([6, 17][(i % 2) as usize]);
            let lo = (rng.next_u32() % 60000) as u16;
            pol.dst_ports = (lo, lo + (rng.next_u32() % 100) as u16);
        }
        pol.priority = rng.next_u32() % 4;
        let id = w.add_policy(pol).unwrap();
        all.push((id, pol));
    }
    let t0 = std::time::Instant::now();
    w.commit().unwrap();
    eprintln!("compiled {n} policies in {:?}", t0.elapsed());
    let mut checked = 0;
    let mut hits = 0;
    let mut total = std::time::Duration::ZERO;
    for k in 0..5_000u32 {
        // Half the probes aimed inside a known policy, half random.
        let (src, dst) = if k % 2 == 0 {
            let (_, pol) = all[(rng.next_u32() % n) as usize];
            let IpAddr::V4(s) = pol.src.addr else {
                unreachable!()
            };
            let IpAddr::V4(d) = pol.dst.addr else {
                unreachable!()
            };
            (
                u32::from(s) ^ (rng.next_u32() & 0xff),
                u32::from(d) ^ (rng.next_u32() & 0x3),
            )
        } else {
            (
                0xc612_0000 | (rng.next_u32() & 0x1ffff),
                0xc612_0000 | (rng.next_u32() & 0x1ffff),
            )
        };
        let f = FlowKey {
            src: IpAddr::V4(src.into()),
            dst: IpAddr::V4(dst.into()),
            proto: [1, 6, 17][(k % 3) as usize],
            src_port: (rng.next_u32() % 65536) as u16,
            dst_port: (rng.next_u32() % 65536) as u16,
        };
        let t1 = std::time::Instant::now();
        let got = t.lookup_outbound(&f);
        total += t1.elapsed();
        let best = all
            .iter()
            .filter(|(_, p)| p.matches(&f))
            .max_by_key(|(_, p)| p.specificity())
            .map(|(_, p)| p.specificity());
        let got_spec = got.map(|m| {
            let id = match m {
                PolicyMatch::Protect(id, _)
                | PolicyMatch::ProtectNoSa(id)
                | PolicyMatch::Bypass(id)
                | PolicyMatch::Drop(id) => id,
            };
            let (_, pol) = all.iter().find(|(i, _)| *i == id).unwrap();
            assert!(pol.matches(&f), "returned policy does not match");
            pol.specificity()
        });
        assert_eq!(got_spec, best, "flow {f:?}");
        hits += usize::from(got.is_some());
        checked += 1;
    }
    assert!(hits > 1000, "probes should hit policies ({hits})");
    eprintln!(
        "{checked} lookups, {hits} hits, {:.0} ns per lookup (info only)",
        total.as_nanos() as f64 / f64::from(checked)
    );
    let _ = std::fs::remove_file(&p);
}

#[test]
fn counters_add_snapshot_and_reset_on_reuse() {
    let p = tmp("cnt");
    let mut w = Writer::create_or_attach(
        &p,
        Capacity {
            sas: 1,
            policies: 1,
        },
    )
    .unwrap();
    let r = Reader::attach(&p).unwrap();
    let t = r.register_thread().unwrap();
    let h = w.insert_sa(&sa(1, Direction::Inbound, 5)).unwrap();
    let mut drops = [0u64; sluice_esp::DropReason::COUNT];
    drops[sluice_esp::DropReason::Replay as usize] = 3;
    t.counters(h).add(32, 32 * 1400, &drops);
    t.counters(h)
        .add(1, 100, &[0; sluice_esp::DropReason::COUNT]);
    let s = w.sa_counters(h).unwrap();
    assert_eq!((s.packets, s.bytes), (33, 32 * 1400 + 100));
    assert_eq!(s.drops[sluice_esp::DropReason::Replay as usize], 3);
    let wc = t.worker_counters(3);
    wc.rx_packets
        .fetch_add(10, std::sync::atomic::Ordering::Relaxed);
    wc.drop_packets(sluice_esp::DropReason::NoSa, 2);
    let ws = w.worker_counters(3).snapshot();
    assert_eq!(
        (ws.packets, ws.drops[sluice_esp::DropReason::NoSa as usize]),
        (10, 2)
    );
    t.hot(h).replay.update(77).unwrap();
    w.delete_sa(h).unwrap();
    t.quiescent();
    let h2 = w.insert_sa(&sa(2, Direction::Inbound, 6)).unwrap();
    assert_eq!(h2.slot, h.slot, "the only slot was reused");
    assert_eq!(w.sa_counters(h2).unwrap(), CounterSnapshot::default());
    assert_eq!(t.hot(h2).replay.top(), 0, "replay window reset on reuse");
    assert!(w.sa_counters(h).is_none());
    let _ = std::fs::remove_file(&p);
}

/// A small deterministic generator for reproducible probes.
struct XorShift(u64);

impl XorShift {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}
