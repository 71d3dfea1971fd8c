//! The worker over the in-memory backend and a real shared SA table:
//! traffic encrypted on the way out, decrypted on the way back, replays, bad
//! ICVs, unknown SPIs, unmatched traffic, path MTU, unresolved neighbours
//! and the handoff of an SA's frames to its owner worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sluice_dp::fib::Fib;
use sluice_dp::netlink::{Addr, Link, Neighbour, Route, Tables};
use sluice_dp::worker::{NoPolicy, Port, PortRole, Shared, Worker};
use sluice_ebpf::Class;
use sluice_esp::wire::{checksum_add, checksum_finish};
use sluice_esp::{Backend, DropReason};
use sluice_io::mem::MemIo;
use sluice_sa_table::{
    Action, Capacity, Direction, DpEvent, Lifetimes, Policy, Prefix, Reader, SaConfig, Writer,
};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const OUT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const IN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x01];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x02];
const FAR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x03];
const SPI: u32 = 0xc0de_0001;

struct Table {
    path: PathBuf,
}
impl Drop for Table {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sa(dir: Direction, spi: u32, dst: &str) -> SaConfig {
    SaConfig {
        sa_id: u64::from(spi) + dir as u64,
        child_id: 1,
        direction: dir,
        spi,
        src: "198.18.0.2".parse().unwrap(),
        dst: dst.parse().unwrap(),
        encap: None,
        encr_id: 20,
        key_bits: 128,
        integ_id: 0,
        encr_key: (0..20).collect(),
        integ_key: vec![],
        esn: true,
        replay_window: 1024,
        lifetimes: Lifetimes::default(),
        installed_at: 1,
    }
}

/// A table with an outbound SA to 198.18.0.1 protecting 198.19.2.0/24 ->
/// 198.19.1.0/24, and an inbound SA with the same SPI and key for our own
/// ESP (so what goes out can come back in).
fn table(name: &str) -> (Table, Writer) {
    let path = std::env::temp_dir().join(format!("sluice-dp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut w = Writer::create_or_attach(
        &path,
        Capacity {
            sas: 16,
            policies: 16,
        },
    )
    .unwrap();
    let out = w
        .insert_sa(&sa(Direction::Outbound, SPI, "198.18.0.1"))
        .unwrap();
    let mut inb = sa(Direction::Inbound, SPI, "198.18.0.1");
    inb.src = "198.18.0.2".parse().unwrap();
    w.insert_sa(&inb).unwrap();
    let p = w
        .add_policy(Policy::between(
            Prefix::new("198.19.2.0".parse().unwrap(), 24).unwrap(),
            Prefix::new("198.19.1.0".parse().unwrap(), 24).unwrap(),
            Action::Protect,
        ))
        .unwrap();
    w.commit().unwrap();
    w.bind_policy(p, Some(out)).unwrap();
    (Table { path }, w)
}

fn fib(mtu: u32) -> Fib {
    let l = |index, name: &str, mac| Link {
        index,
        name: name.into(),
        mac,
        mtu,
    };
    let r = |dst: &str, len, oif| Route {
        dst: dst.parse().unwrap(),
        len,
        oif,
        gateway: None,
        metric: 0,
    };
    let n = |index, a: &str, mac| Neighbour {
        index,
        addr: a.parse().unwrap(),
        mac,
    };
    Fib::new(&Tables {
        links: vec![l(2, "out0", OUT_MAC), l(3, "in0", IN_MAC)],
        addrs: vec![
            Addr {
                index: 2,
                addr: "198.18.0.2".parse().unwrap(),
                len: 24,
            },
            Addr {
                index: 3,
                addr: "198.19.2.1".parse().unwrap(),
                len: 24,
            },
        ],
        routes: vec![
            r("198.18.0.0", 24, 2),
            r("198.19.2.0", 24, 3),
            r("198.19.1.0", 24, 3),
            r("198.19.7.0", 24, 3),
        ],
        neighbours: vec![
            n(2, "198.18.0.1", PEER_MAC),
            n(3, "198.19.2.2", HOST_MAC),
            n(3, "198.19.1.5", FAR_MAC),
        ],
    })
}

fn worker(t: &Table, shared: &Arc<Shared>, id: usize, workers: usize) -> (Worker<MemIo>, Reader) {
    let r = Reader::attach(&t.path).unwrap();
    let th = r.register_thread().unwrap();
    let ports = vec![
        Port::new(PortRole::Outside, 2),
        Port::new(PortRole::Inside, 3),
    ];
    (
        Worker::new(id, workers, MemIo::new(2, 64), ports, th, shared.clone()),
        r,
    )
}

fn shared(workers: usize, mtu: u32, no_policy: NoPolicy) -> Arc<Shared> {
    Arc::new(Shared::new(workers, fib(mtu), no_policy, Backend::Ring))
}

/// Ethernet + IPv4 + UDP from 198.19.2.2 to `dst`, `len` bytes of IP.
fn frame(dst: &str, len: usize, df: bool) -> Vec<u8> {
    let mut f = vec![0u8; 14 + len];
    f[..6].copy_from_slice(&IN_MAC);
    f[6..12].copy_from_slice(&HOST_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    if df {
        ip[6] = 0x40;
    }
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 19, 2, 2]);
    let d: std::net::Ipv4Addr = dst.parse().unwrap();
    ip[16..20].copy_from_slice(&d.octets());
    let c = checksum_finish(checksum_add(0, &ip[..20]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&4000u16.to_be_bytes());
    ip[22..24].copy_from_slice(&5000u16.to_be_bytes());
    ip[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    for (i, b) in ip[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

fn drops(r: &Reader, w: usize, why: DropReason) -> u64 {
    r.worker_counters(w).unwrap().snapshot().dropped(why)
}

fn event(r: &Reader, w: usize, e: DpEvent) -> u64 {
    r.worker_counters(w).unwrap().snapshot().event(e)
}

#[test]
fn out_encrypted_back_decrypted_and_every_drop_counted() {
    let (t, _w) = table("roundtrip");
    let sh = shared(1, 1500, NoPolicy::Drop);
    let (mut wk, r) = worker(&t, &sh, 0, 1);
    let free0 = wk.io_mut().free_chunks();

    // Out: plain on the inside port, ESP on the outside port.
    let plain = frame("198.19.1.5", 200, true);
    assert!(wk.io_mut().inject(1, &plain));
    assert!(wk.poll());
    let esp = wk.io_mut().take_tx(0);
    assert_eq!(esp.len(), 1, "one ESP frame out");
    let e = &esp[0];
    assert_eq!(&e[..6], &PEER_MAC);
    assert_eq!(&e[6..12], &OUT_MAC);
    assert_eq!(e[14 + 9], 50, "IP protocol ESP");
    assert_eq!(&e[14 + 16..14 + 20], &[198, 18, 0, 1]);
    assert_eq!(&e[34..38], &SPI.to_be_bytes());
    assert_eq!(&e[38..42], &1u32.to_be_bytes(), "sequence number 1");

    // Back: the same ESP frame in on the outside port decrypts.
    assert!(wk.io_mut().inject(0, e));
    wk.poll();
    let back = wk.io_mut().take_tx(1);
    assert_eq!(back.len(), 1);
    let b = &back[0];
    assert_eq!(&b[..6], &FAR_MAC);
    assert_eq!(&b[6..12], &IN_MAC);
    assert_eq!(b.len(), plain.len());
    assert_eq!(b[14 + 8], 62, "TTL decremented once each way");
    assert_eq!(
        &b[14 + 12..],
        &plain[14 + 12..],
        "addresses and payload intact"
    );

    // Replayed, tampered, unknown SPI.
    assert!(wk.io_mut().inject(0, e));
    let mut bad = e.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    bad[38..42].copy_from_slice(&2u32.to_be_bytes());
    assert!(wk.io_mut().inject(0, &bad));
    let mut unknown = e.clone();
    unknown[34..38].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    assert!(wk.io_mut().inject(0, &unknown));
    wk.poll();
    assert!(wk.io_mut().take_tx(1).is_empty());
    assert_eq!(drops(&r, 0, DropReason::Replay), 1);
    assert_eq!(drops(&r, 0, DropReason::IcvFailure), 1);
    assert_eq!(drops(&r, 0, DropReason::NoSa), 1);

    // No policy (dropped by configuration), unresolved neighbour, too big.
    assert!(wk.io_mut().inject(1, &frame("198.19.9.9", 100, true)));
    wk.poll();
    assert_eq!(event(&r, 0, DpEvent::NoPolicy), 1);
    assert_eq!(drops(&r, 0, DropReason::PolicyDrop), 1);
    assert!(wk.io_mut().inject(1, &frame("198.19.1.5", 1480, true)));
    wk.poll();
    let icmp = wk.io_mut().take_tx(1);
    assert_eq!(
        icmp.len(),
        1,
        "ICMP fragmentation needed back to the sender"
    );
    let i = &icmp[0];
    assert_eq!(&i[..6], &HOST_MAC);
    assert_eq!((i[14 + 9], i[34], i[35]), (1, 3, 4), "ICMP type 3 code 4");
    let mtu = u16::from_be_bytes([i[40], i[41]]);
    assert!((1400..1450).contains(&mtu), "next-hop MTU {mtu}");
    assert_eq!(event(&r, 0, DpEvent::IcmpTooBig), 1);
    assert!(wk.io_mut().take_tx(0).is_empty());

    // SA counters: 1 packet out (200 bytes), 1 in; drops on the inbound SA.
    let sas = r.register_thread().unwrap().live_sas();
    for (_, c, n) in &sas {
        assert_eq!((n.packets, n.bytes), (1, 200), "{:?}", c.direction);
    }
    // Every chunk is back in the pool.
    assert_eq!(wk.io_mut().free_chunks(), free0);
}

#[test]
fn unmatched_traffic_forwarded_and_unresolved_next_hops_requested() {
    let (t, mut w) = table("forward");
    // A trap: PROTECT with no SA bound.
    let trap = w
        .add_policy(Policy::between(
            Prefix::new("198.19.2.0".parse().unwrap(), 24).unwrap(),
            Prefix::new("198.19.8.0".parse().unwrap(), 24).unwrap(),
            Action::Protect,
        ))
        .unwrap();
    w.commit().unwrap();
    let sh = shared(1, 1500, NoPolicy::Forward);
    let (mut wk, r) = worker(&t, &sh, 0, 1);
    assert!(wk.io_mut().inject(1, &frame("198.19.1.5", 100, false)));
    let f = frame("198.19.7.7", 100, false);
    assert!(wk.io_mut().inject(1, &frame("198.19.2.2", 100, false)));
    assert!(wk.io_mut().inject(1, &f));
    wk.poll();
    // 198.19.1.5 is protected (ESP out); 198.19.2.2 goes in the clear.
    assert_eq!(wk.io_mut().take_tx(0).len(), 1);
    let clear = wk.io_mut().take_tx(1);
    assert_eq!(clear.len(), 1);
    assert_eq!(&clear[0][..6], &HOST_MAC);
    assert_eq!(event(&r, 0, DpEvent::NoPolicy), 2);
    // 198.19.7.7 has a route but no neighbour entry: asked for, counted.
    assert_eq!(event(&r, 0, DpEvent::NeighUnresolved), 1);
    assert_eq!(
        sh.resolve.pop(),
        Some("198.19.7.7".parse::<IpAddr>().unwrap())
    );
    // Traffic on the trap is dropped and reported for an acquire.
    assert!(wk.io_mut().inject(1, &frame("198.19.8.8", 100, false)));
    wk.poll();
    assert!(wk.io_mut().take_tx(0).is_empty() && wk.io_mut().take_tx(1).is_empty());
    assert_eq!(drops(&r, 0, DropReason::NoSa), 1);
    assert_eq!(sh.acquire.pop(), Some(trap.0));
}

#[test]
fn frames_for_an_sa_owned_by_another_worker_are_handed_over() {
    let (t, _w) = table("handoff");
    let sh = shared(2, 1500, NoPolicy::Drop);
    let (mut w0, r) = worker(&t, &sh, 0, 2);
    let (mut w1, _r1) = worker(&t, &sh, 1, 2);
    // Worker 0 encrypts two packets.
    for _ in 0..2 {
        assert!(w0.io_mut().inject(1, &frame("198.19.1.5", 300, false)));
    }
    w0.poll();
    let esp = w0.io_mut().take_tx(0);
    assert_eq!(esp.len(), 2);
    // Worker 0 receives the first: it now owns the inbound SA's window.
    assert!(w0.io_mut().inject(0, &esp[0]));
    w0.poll();
    assert_eq!(w0.io_mut().take_tx(1).len(), 1);
    // Worker 1 receives the second (another queue): handed to worker 0.
    assert!(w1.io_mut().inject(0, &esp[1]));
    w1.poll();
    assert!(w1.io_mut().take_tx(1).is_empty());
    assert_eq!(r.worker_counters(1).unwrap().snapshot().handoff, 1);
    w0.poll();
    assert_eq!(w0.io_mut().take_tx(1).len(), 1, "the owner decrypted it");
    // A replay through worker 1 reaches the owner's window and is refused.
    assert!(w1.io_mut().inject(0, &esp[1]));
    w1.poll();
    w0.poll();
    assert!(w0.io_mut().take_tx(1).is_empty());
    assert_eq!(drops(&r, 0, DropReason::Replay), 1);
}

/// An oversize IPv4 packet without DF is fragmented before encryption
/// (RFC 4459 §5.1): two ESP packets that each fit the link, which decrypt
/// to two fragments carrying the original payload.
#[test]
fn oversize_without_df_is_fragmented_before_encryption() {
    let (t, _w) = table("frag");
    let sh = shared(1, 1500, NoPolicy::Drop);
    let (mut wk, r) = worker(&t, &sh, 0, 1);
    let free0 = wk.io_mut().free_chunks();
    let big = frame("198.19.1.5", 1480, false);
    assert!(wk.io_mut().inject(1, &big));
    wk.poll();
    let esp = wk.io_mut().take_tx(0);
    assert_eq!(esp.len(), 2, "two ESP packets");
    for e in &esp {
        assert!(e.len() - 14 <= 1500, "each fits the MTU: {}", e.len() - 14);
    }
    for e in &esp {
        assert!(wk.io_mut().inject(0, e));
    }
    wk.poll();
    let frags = wk.io_mut().take_tx(1);
    assert_eq!(frags.len(), 2);
    let field = |f: &Vec<u8>| u16::from_be_bytes([f[14 + 6], f[14 + 7]]);
    assert_eq!(field(&frags[0]) & 0x2000, 0x2000, "first has MF");
    assert_eq!(field(&frags[0]) & 0x1fff, 0);
    assert_eq!(field(&frags[1]) & 0x2000, 0, "last has no MF");
    let off = usize::from(field(&frags[1]) & 0x1fff) * 8;
    assert_eq!(off, frags[0].len() - 14 - 20);
    let mut payload = frags[0][34..].to_vec();
    payload.extend_from_slice(&frags[1][34..]);
    assert_eq!(payload, big[34..], "payload reassembles");
    for f in &frags {
        assert_eq!(
            checksum_finish(checksum_add(0, &f[14..34])),
            0,
            "header checksum"
        );
    }
    assert_eq!(drops(&r, 0, DropReason::NoTailroom), 0);
    assert_eq!(wk.io_mut().free_chunks(), free0);
}

/// DPDK ports: no XDP program, so the worker steers. What the program would
/// pass to the kernel (ARP, IKE, local traffic) goes to the port's exception
/// (TAP) port unchanged, the rest is processed; what the kernel sends on a
/// TAP leaves by its port unchanged; the classes are counted.
#[test]
fn software_steering_sends_kernel_traffic_through_the_exception_ports() {
    let (t, _w) = table("steer");
    let sh = shared(1, 1500, NoPolicy::Drop);
    let r = Reader::attach(&t.path).unwrap();
    let th = r.register_thread().unwrap();
    let ports = vec![
        Port {
            exception: Some(2),
            ..Port::new(PortRole::Outside, 2)
        },
        Port {
            exception: Some(3),
            ..Port::new(PortRole::Inside, 3)
        },
        Port::new(PortRole::Exception(0), 0),
        Port::new(PortRole::Exception(1), 0),
    ];
    let mut wk = Worker::new(0, 1, MemIo::new(4, 64), ports, th, sh.clone());
    let free0 = wk.io_mut().free_chunks();

    // Outside: ARP and IKE to the kernel, ESP to us processed (unknown SPI).
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    let mut ike = frame("198.18.0.2", 100, false);
    ike[..6].copy_from_slice(&OUT_MAC);
    ike[14 + 22..14 + 24].copy_from_slice(&500u16.to_be_bytes());
    let mut esp = frame("198.18.0.2", 100, false);
    esp[..6].copy_from_slice(&OUT_MAC);
    esp[14 + 9] = 50;
    esp[14 + 10..14 + 12].fill(0);
    let c = checksum_finish(checksum_add(0, &esp[14..34]));
    esp[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    esp[14 + 20..14 + 24].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    for f in [&arp, &ike, &esp] {
        assert!(wk.io_mut().inject(0, f));
    }
    assert!(wk.poll());
    assert_eq!(wk.io_mut().take_tx(2), vec![arp.clone(), ike.clone()]);
    assert_eq!(drops(&r, 0, DropReason::NoSa), 1, "ESP went to the engine");

    // Unicast for another MAC (a promiscuous port): dropped, as a NIC would.
    let mut other = esp.clone();
    other[..6].copy_from_slice(&FAR_MAC);
    assert!(wk.io_mut().inject(0, &other));
    wk.poll();
    assert!(wk.io_mut().take_tx(2).is_empty());
    assert_eq!(event(&r, 0, DpEvent::NotForUs), 1);
    assert_eq!(drops(&r, 0, DropReason::NoSa), 1);

    // Inside: transit is protected, a ping to the gateway goes to the kernel.
    let transit = frame("198.19.1.5", 200, true);
    let mut to_gw = frame("198.19.2.1", 84, true);
    to_gw[14 + 9] = 1;
    assert!(wk.io_mut().inject(1, &transit));
    assert!(wk.io_mut().inject(1, &to_gw));
    wk.poll();
    let out = wk.io_mut().take_tx(0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0][14 + 9], 50, "transit left as ESP");
    assert_eq!(wk.io_mut().take_tx(3), vec![to_gw.clone()]);

    // From the kernel: out by the TAP's port, as it is.
    assert!(wk.io_mut().inject(2, &ike));
    assert!(wk.io_mut().inject(3, &arp));
    wk.poll();
    assert_eq!(wk.io_mut().take_tx(0), vec![ike.clone()]);
    assert_eq!(wk.io_mut().take_tx(1), vec![arp.clone()]);

    let n = |role: usize, c: Class| sh.steered[role][c.index()].load(Ordering::Relaxed);
    assert_eq!(n(0, Class::PassArp), 1);
    assert_eq!(n(0, Class::PassIke), 1);
    assert_eq!(n(0, Class::RedirectEsp), 1);
    assert_eq!(n(1, Class::RedirectTransit), 1);
    assert_eq!(n(1, Class::PassLocalOther), 1);
    let total: u64 = (0..2).flat_map(|r| Class::ALL.map(|c| n(r, c))).sum();
    assert_eq!(total, 5, "the exception ports' traffic is not classified");
    assert_eq!(wk.io_mut().free_chunks(), free0, "no chunk leaked");
}
