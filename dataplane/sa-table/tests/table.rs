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
                expected: sluice_sa_table::ABI_VERSION,
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

    let mut bad = good.clone();
    bad[20] = bad[20].wrapping_add(64); // hot record size
    std::fs::write(&p, &bad).unwrap();
    let e = Reader::attach(&p).unwrap_err();
    assert!(
        matches!(e, TableError::RecordSize { what: "hot SA", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("expected"), "{e}");

    // Section offsets start at byte 104; the third is the cold SA array.
    let mut bad = good.clone();
    bad[104 + 16] = bad[104 + 16].wrapping_add(64);
    std::fs::write(&p, &bad).unwrap();
    let e = Reader::attach(&p).unwrap_err();
    assert!(
        matches!(
            e,
            TableError::SectionOffset {
                what: "cold SA",
                ..
            }
        ),
        "{e}"
    );

    // The Display of a version mismatch says what was expected and found.
    let mut bad = good.clone();
    bad[8] = 7;
    std::fs::write(&p, &bad).unwrap();
    let msg = Reader::attach(&p).unwrap_err().to_string();
    assert!(
        msg.contains("version 7")
            && msg.contains(&format!("expected {}", sluice_sa_table::ABI_VERSION)),
        "{msg}"
    );
    // A writer refuses a mismatched file too (rather than re-initialising it).
    assert!(matches!(
        Writer::create_or_attach(&p, CAP).unwrap_err(),
        TableError::AbiVersion { .. }
    ));

    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = Reader::attach(&p).unwrap_err();
    assert!(matches!(e, TableError::Truncated { .. }), "{e}");
    std::fs::write(&p, &good[..100]).unwrap();
    assert!(matches!(
        Reader::attach(&p).unwrap_err(),
        TableError::Truncated { .. }
    ));
    // The original is accepted again.
    std::fs::write(&p, &good).unwrap();
    assert!(Reader::attach(&p).is_ok());
    let _ = std::fs::remove_file(&p);
}

#[test]
fn a_creation_that_died_before_the_magic_is_redone() {
    let p = tmp("nomagic");
    std::fs::write(&p, vec![0u8; 8192]).unwrap();
    assert!(matches!(
        Reader::attach(&p).unwrap_err(),
        TableError::BadMagic { found: 0 }
    ));
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    w.insert_sa(&sa(1, Direction::Inbound, 1)).unwrap();
    assert!(Reader::attach(&p).is_ok());
    let _ = std::fs::remove_file(&p);
}

#[test]
fn created_with_mode_0600_in_a_new_directory() {
    let dir = tmp("dir");
    let p = dir.join("sluice").join("sa-table");
    let _ = std::fs::remove_dir_all(&dir);
    drop(Writer::create_or_attach(&p, CAP).unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}: the table holds keys");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inbound_rekey_with_the_same_spi_repoints_one_entry() {
    let p = tmp("samespi");
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    let r = Reader::attach(&p).unwrap();
    let t = r.register_thread().unwrap();
    let dst: IpAddr = "198.18.0.2".parse().unwrap();
    let old = w.insert_sa(&sa(1, Direction::Inbound, 0x77)).unwrap();
    let new = w.replace_sa(old, &sa(2, Direction::Inbound, 0x77)).unwrap();
    assert_ne!(old.slot, new.slot);
    let s = t.lookup_inbound(0x77, dst).unwrap();
    assert_eq!(s.handle(), new);
    assert_eq!(s.config().unwrap().sa_id, 2);
    // Rekey to another SPI: the old one disappears, the new one is found.
    let third = w.replace_sa(new, &sa(3, Direction::Inbound, 0x78)).unwrap();
    assert!(t.lookup_inbound(0x77, dst).is_none());
    assert_eq!(t.lookup_inbound(0x78, dst).unwrap().handle(), third);
    assert!(matches!(
        w.replace_sa(new, &sa(4, Direction::Inbound, 0x79)),
        Err(TableError::NoSuchSa)
    ));
    assert!(matches!(
        w.replace_sa(third, &sa(4, Direction::Outbound, 0x79)),
        Err(TableError::Invalid(_))
    ));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn restarted_writer_repairs_and_keeps_what_readers_use() {
    let p = tmp("repair");
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    let r = Reader::attach(&p).unwrap();
    let mut t = r.register_thread().unwrap();
    let dst: IpAddr = "198.18.0.2".parse().unwrap();
    let keep = w.insert_sa(&sa(1, Direction::Inbound, 0x10)).unwrap();
    let gone = w.insert_sa(&sa(2, Direction::Inbound, 0x20)).unwrap();
    let out = w.insert_sa(&sa(3, Direction::Outbound, 0x30)).unwrap();
    let pol = w
        .add_policy(Policy::between(
            pfx("10.0.0.0", 8),
            pfx("10.1.0.0", 16),
            Action::Protect,
        ))
        .unwrap();
    w.bind_policy(pol, Some(out)).unwrap();
    w.commit().unwrap();
    w.delete_sa(gone).unwrap();
    drop(w);
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    assert_eq!(t.lookup_inbound(0x10, dst).unwrap().handle(), keep);
    assert!(t.lookup_inbound(0x20, dst).is_none());
    assert_eq!(w.binding(pol), Some(out));
    let f = FlowKey {
        src: "10.9.9.9".parse().unwrap(),
        dst: "10.1.2.3".parse().unwrap(),
        proto: 6,
        src_port: 1,
        dst_port: 2,
    };
    assert_eq!(t.lookup_outbound(&f), Some(PolicyMatch::Protect(pol, out)));
    // Free slots are held back until the reader passes a quiescent point
    // (it may still hold what the previous writer retired).
    let before = w.retired_slots();
    assert_eq!(before, CAP.sas as usize - 2);
    assert_eq!(w.reclaim(), 0);
    t.quiescent();
    assert_eq!(w.reclaim(), before);
    // The restarted writer goes on: a duplicate SPI is still refused.
    assert!(w.insert_sa(&sa(5, Direction::Inbound, 0x10)).is_err());
    w.insert_sa(&sa(5, Direction::Inbound, 0x20)).unwrap();
    assert_eq!(
        t.lookup_inbound(0x20, dst).unwrap().config().unwrap().sa_id,
        5
    );
    let _ = std::fs::remove_file(&p);
}

#[test]
fn a_reader_of_a_dead_process_does_not_block_reclamation() {
    let p = tmp("dead");
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let r = Reader::attach(&p).unwrap();
    let t = r.register_thread().unwrap();
    let h = w.insert_sa(&sa(1, Direction::Inbound, 1)).unwrap();
    w.delete_sa(h).unwrap();
    // A live reader that has not passed a quiescent point holds it back...
    assert_eq!(w.reclaim(), 0);
    // ...a dead one does not: make the slot's owner the exited child
    // (reader slot 0 starts at byte 4096 with the pid).
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&u64::from(dead_pid).to_le_bytes(), 4096)
        .unwrap();
    assert_eq!(w.reclaim(), 1, "a dead reader must be ignored");
    // Its slot is taken over by the next registration.
    let t2 = r.register_thread().unwrap();
    assert_eq!(format!("{t2:?}"), format!("{t:?}"));
    std::mem::forget(t);
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
    let mut t = r.register_thread().unwrap();
    let dst: IpAddr = "198.18.0.2".parse().unwrap();
    let h = w.insert_sa(&sa(7, Direction::Inbound, 0xabc)).unwrap();
    let found = t.lookup_inbound(0xabc, dst).unwrap();
    assert_eq!(found.handle(), h);
    assert!(t
        .lookup_inbound(0xabc, "198.18.0.9".parse().unwrap())
        .is_none());
    assert!(t.lookup_inbound(0xabd, dst).is_none());
    let cfg = found.config().unwrap();
    assert_eq!(cfg, sa(7, Direction::Inbound, 0xabc));
    let keys = found.keys().unwrap();
    assert_eq!(keys.encr_key(), &sa(7, Direction::Inbound, 0).encr_key[..]);
    assert_eq!(keys.salt(4), &sa(7, Direction::Inbound, 0).encr_key[16..]);
    assert_eq!((keys.encr_id, keys.key_bits, keys.integ_id), (20, 128, 0));
    assert!(keys.integ_key().is_empty());
    assert!(
        w.insert_sa(&sa(8, Direction::Inbound, 0xabc)).is_err(),
        "duplicate SPI"
    );

    w.delete_sa(h).unwrap();
    assert!(t.lookup_inbound(0xabc, dst).is_none());
    assert!(t.sa(h).is_none());
    assert!(w.sa_config(h).is_none());
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
    let mut t = r.register_thread().unwrap();
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
    assert!(t.sa(out).is_none());
    assert_eq!(w.binding(net), Some(new));
    w.remove_policy(host).unwrap();
    t.quiescent();
    w.commit().unwrap();
    assert_eq!(
        t.lookup_outbound(&flow("198.19.1.1", "198.19.2.7", 1, 0, 0)),
        Some(PolicyMatch::Protect(net, new))
    );
    // A reader lists the policies and their bindings, as `show` prints them.
    let listed = t.policies();
    assert_eq!(listed.len(), 4);
    let bound: Vec<_> = listed
        .iter()
        .filter_map(|(id, _, sa)| sa.map(|h| (*id, h)))
        .collect();
    assert_eq!(bound, vec![(net, new)]);
    assert!(listed
        .iter()
        .any(|(id, p, _)| *id == v6 && p.src == pfx("2001:db8:1::", 48)));
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
    let mut t = r.register_thread().unwrap();
    let h = w.insert_sa(&sa(1, Direction::Inbound, 5)).unwrap();
    let dst: IpAddr = "198.18.0.2".parse().unwrap();
    {
        let s = t.lookup_inbound(5, dst).unwrap();
        let mut drops = [0u64; DROP_REASONS];
        drops[DropReason::Replay as usize] = 3;
        drops[DropReason::IcvFailure as usize] = 1;
        s.counters().add(32, 32 * 1400, &drops);
        s.counters().add(1, 100, &[0; DROP_REASONS]);
        s.hot().replay.update(77).unwrap();
        s.hot()
            .seq
            .fetch_add(9, std::sync::atomic::Ordering::Relaxed);
    }
    let s = w.sa_counters(h).unwrap();
    assert_eq!((s.packets, s.bytes), (33, 32 * 1400 + 100));
    assert_eq!(s.dropped(DropReason::Replay), 3);
    assert_eq!(s.dropped(DropReason::IcvFailure), 1);
    assert_eq!(s.dropped(DropReason::NoSa), 0);
    // Per-worker counters, on separate cache lines.
    let burst = WorkerSnapshot {
        rx_packets: 10,
        rx_bytes: 15_000,
        tx_packets: 9,
        bursts: 1,
        busy_polls: 1,
        ..WorkerSnapshot::default()
    };
    let wc = r.worker_counters(3).unwrap();
    wc.add(&burst);
    wc.add(&burst);
    wc.add_drops(DropReason::NoSa, 2);
    r.worker_counters(4).unwrap().add(&WorkerSnapshot {
        idle_polls: 5,
        ..WorkerSnapshot::default()
    });
    let ws = w.worker_counters(3).unwrap();
    assert_eq!(
        (ws.rx_packets, ws.rx_bytes, ws.tx_packets),
        (20, 30_000, 18)
    );
    assert_eq!((ws.bursts, ws.busy_polls, ws.idle_polls), (2, 2, 0));
    assert_eq!(ws.dropped(DropReason::NoSa), 2);
    assert_eq!(w.worker_counters(4).unwrap().idle_polls, 5);
    assert!(w.worker_counters(10_000).is_none());
    let a = r.worker_counters(3).unwrap() as *const WorkerCounters as usize;
    let b = r.worker_counters(4).unwrap() as *const WorkerCounters as usize;
    assert!(
        b - a >= 64 && a % 64 == 0,
        "workers must not share a cache line"
    );

    w.delete_sa(h).unwrap();
    t.quiescent();
    let h2 = w.insert_sa(&sa(2, Direction::Inbound, 6)).unwrap();
    assert_eq!(h2.slot, h.slot, "the only slot was reused");
    assert_eq!(w.sa_counters(h2).unwrap(), CounterSnapshot::default());
    let hot = w.sa_hot(h2).unwrap();
    assert_eq!(hot.replay.top(), 0, "replay window reset on reuse");
    assert_eq!(hot.seq.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(
        hot.owner.load(std::sync::atomic::Ordering::Relaxed),
        NO_OWNER
    );
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

#[test]
fn one_reclaim_frees_what_readers_left_and_keeps_the_rest() {
    // Two slots retired on either side of a reader's quiescent point: one
    // reclaim frees the first and keeps the second until the reader moves
    // on again.
    let p = tmp("partial");
    let mut w = Writer::create_or_attach(&p, CAP).unwrap();
    let r = Reader::attach(&p).unwrap();
    let mut t = r.register_thread().unwrap();
    t.quiescent();
    w.reclaim(); // the free slots retired at attach
    let a = w.insert_sa(&sa(1, Direction::Inbound, 0x1)).unwrap();
    let b = w.insert_sa(&sa(2, Direction::Inbound, 0x2)).unwrap();
    let retired = w.retired_slots();
    w.delete_sa(a).unwrap();
    t.quiescent();
    w.delete_sa(b).unwrap();
    assert_eq!(w.retired_slots(), retired + 2);
    assert_eq!(
        w.reclaim(),
        1,
        "only the slot retired before the quiescent point"
    );
    assert_eq!(w.retired_slots(), retired + 1);
    assert_eq!(w.reclaim(), 0);
    t.quiescent();
    assert_eq!(w.reclaim(), 1);
    assert_eq!(w.retired_slots(), retired);
    let _ = std::fs::remove_file(&p);
}
