//! The DPDK backend on virtual devices: net_ring (a loopback: what is sent
//! on a port is received on it) and net_null (receives generated packets,
//! swallows sent ones). One EAL per process: every test shares it, each
//! with its own pool and port.
#![cfg(feature = "dpdk")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sluice_io::dpdk::{self, DpdkIo, Pool, Port};
use sluice_io::{Desc, PacketIo, MIN_HEADROOM, MIN_TAILROOM};

fn eal() {
    dpdk::init(&[
        format!("--file-prefix=sluice-io-test-{}", std::process::id()),
        "--no-huge".into(),
        "-m".into(),
        "256".into(),
        "--no-pci".into(),
        "--no-telemetry".into(),
        "--log-level=lib.eal:error".into(),
        "--vdev=net_ring0".into(),
        "--vdev=net_ring1".into(),
        "--vdev=net_ring2".into(),
        "--vdev=net_ring3".into(),
        "--vdev=net_ring4".into(),
        "--vdev=net_null0,size=1400".into(),
    ])
    .expect("EAL");
}

/// Up to 32 packets from port 0, polling until `want` have come (or 100
/// polls).
fn receive(io: &mut DpdkIo, want: usize) -> Vec<Desc> {
    let mut got = vec![Desc::default(); 32];
    let mut n = 0;
    for _ in 0..100 {
        n += io.rx_burst(0, &mut got[n..]);
        if n >= want {
            break;
        }
    }
    got.truncate(n);
    got
}

#[test]
fn ring_loopback_ownership_and_no_leak() {
    eal();
    let pool = Pool::new("t-ring", 1023, -1).unwrap();
    let port = Port::start("net_ring0", 1, &pool).unwrap();
    let mut io = DpdkIo::new(&pool, &[&port], 0).unwrap();
    let avail0 = pool.available();

    // Build 10 frames in allocated chunks, send, receive them back.
    let mut sent = Vec::new();
    for i in 0..10u8 {
        let mut d = io.alloc().unwrap();
        assert_eq!(d.off as usize, MIN_HEADROOM);
        let c = io.chunk_mut(d);
        assert!(
            c.len() >= MIN_HEADROOM + 1518 + MIN_TAILROOM,
            "chunk {}",
            c.len()
        );
        let frame: Vec<u8> = (0..100 + u32::from(i)).map(|b| (b as u8) ^ i).collect();
        c[MIN_HEADROOM..MIN_HEADROOM + frame.len()].copy_from_slice(&frame);
        d.len = frame.len() as u32;
        sent.push((d, frame));
    }
    // One with 200 bytes prepended: it starts inside the extra headroom and
    // is moved to the buffer's start before it goes.
    let mut d = io.alloc().unwrap();
    let frame = vec![0xabu8; 300];
    d.off = (MIN_HEADROOM - 200) as u32;
    io.chunk_mut(d)[d.off as usize..d.off as usize + 300].copy_from_slice(&frame);
    d.len = 300;
    sent.push((d, frame));

    let descs: Vec<Desc> = sent.iter().map(|(d, _)| *d).collect();
    assert_eq!(io.tx_burst(0, &descs), descs.len());
    // Sent: no longer ours to touch, free or send again.
    assert!(io.chunk_mut(descs[0]).is_empty());
    assert_eq!(io.tx_burst(0, &descs[..1]), 0);
    io.free(&descs); // ignored: not ours any more

    let got = receive(&mut io, descs.len());
    let n = got.len();
    assert_eq!(n, descs.len());
    for (g, (_, frame)) in got[..n].iter().zip(&sent) {
        assert!(g.off as usize >= MIN_HEADROOM, "received at {}", g.off);
        let c = io.chunk_mut(*g);
        assert_eq!(&c[g.off as usize..(g.off + g.len) as usize], &frame[..]);
    }
    // A forged descriptor names nothing; a double free is ignored.
    assert!(io
        .chunk_mut(Desc {
            addr: 5_000_000,
            off: 0,
            len: 1
        })
        .is_empty());
    io.free(&got[..1]);
    io.free(&got[..1]);
    assert!(io.chunk_mut(got[0]).is_empty());
    // Dropping the io returns what it still holds: nothing leaks.
    let held = got[1..n].to_vec();
    assert_eq!(held.len(), n - 1);
    drop(io);
    assert_eq!(pool.available(), avail0);
}

#[test]
fn null_device_bursts() {
    eal();
    let pool = Pool::new("t-null", 2047, -1).unwrap();
    let port = Port::start("net_null0", 1, &pool).unwrap();
    let mut io = DpdkIo::new(&pool, &[&port], 0).unwrap();
    let mut got = vec![Desc::default(); 32];
    let n = io.rx_burst(0, &mut got);
    assert_eq!(n, 32, "net_null fills every burst");
    assert!(got
        .iter()
        .all(|d| d.len == 1400 && d.off as usize >= MIN_HEADROOM));
    // chunks_mut lends each mbuf once per call: a descriptor given twice
    // gets nothing the second time, a forged one nothing at all; the next
    // call lends them again.
    for _ in 0..2 {
        let forged = Desc {
            addr: 1 << 40,
            off: 0,
            len: 1,
        };
        let probe = [got[0], got[1], got[0], forged, got[31]];
        let mut views: [Option<&mut [u8]>; 5] = Default::default();
        io.chunks_mut(&probe, &mut views);
        let lent: Vec<bool> = views.iter().map(Option::is_some).collect();
        assert_eq!(lent, [true, true, false, false, true]);
    }
    // Sent ones are swallowed (and their mbufs freed by the PMD).
    assert_eq!(io.tx_burst(0, &got[..16]), 16);
    io.free(&got[16..]);
    assert_eq!(io.stats(0).rx_packets, 32);
    assert_eq!(io.stats(0).tx_packets, 16);
    assert_eq!(io.io_drops(0).rx_ring_full, 0);
}

#[test]
fn foreign_mbufs_are_dropped_counted_and_returned() {
    // A second loopback port: frames sent from pool A come back to an
    // instance over pool B, which cannot hand them out as its own: each is
    // counted as an I/O drop and goes back to pool A.
    eal();
    let pool_a = Pool::new("t-foreign-a", 511, -1).unwrap();
    let pool_b = Pool::new("t-foreign-b", 511, -1).unwrap();
    let port = Port::start("net_ring1", 1, &pool_a).unwrap();
    let mut io_a = DpdkIo::new(&pool_a, &[&port], 0).unwrap();
    let avail_a = pool_a.available();
    let mut descs = Vec::new();
    for _ in 0..5 {
        let mut d = io_a.alloc().unwrap();
        io_a.chunk_mut(d)[d.off as usize..d.off as usize + 60].fill(7);
        d.len = 60;
        descs.push(d);
    }
    assert_eq!(io_a.tx_burst(0, &descs), 5);
    drop(io_a);
    let mut io_b = DpdkIo::new(&pool_b, &[&port], 0).unwrap();
    let mut got = vec![Desc::default(); 32];
    let mut n = 0;
    for _ in 0..100 {
        n += io_b.rx_burst(0, &mut got[n..]);
        if io_b.io_drops(0).rx_dropped >= 5 {
            break;
        }
    }
    assert_eq!(n, 0, "nothing of pool A is handed out by B");
    assert_eq!(io_b.io_drops(0).rx_dropped, 5);
    assert_eq!(io_b.stats(0).rx_packets, 0);
    assert_eq!(pool_a.available(), avail_a, "freed back to pool A");
}

#[test]
fn a_pool_per_socket_is_one_index_space() {
    // Mempools on two sockets (here "any" and 0, which this machine has),
    // indexed as one pool: an mbuf of the second, sent by one instance and
    // received by another that allocates from the first, is recognised,
    // handed out, and freed back to its own mempool.
    eal();
    let pool = Pool::per_socket("t-numa", 255, &[-1, 0, -1]).unwrap();
    assert_eq!(pool.sockets(), [-1, 0], "repeats ignored");
    assert_eq!(pool.size(), 510);
    let avail0 = pool.available();
    assert_eq!(avail0, 510);
    let port = Port::start("net_ring2", 1, &pool).unwrap();
    let mut tx = DpdkIo::on_socket(&pool, &[&port], 0, 0).unwrap();
    let mut descs = Vec::new();
    for i in 0..8u8 {
        let mut d = tx.alloc().unwrap();
        assert!(d.addr >= 255, "from the socket-0 mempool: index {}", d.addr);
        tx.chunk_mut(d)[d.off as usize..d.off as usize + 64].fill(i);
        d.len = 64;
        descs.push(d);
    }
    assert_eq!(tx.tx_burst(0, &descs), 8);
    drop(tx);
    let mut rx = DpdkIo::on_socket(&pool, &[&port], 0, -1).unwrap();
    assert!(rx.alloc().is_some_and(|d| {
        rx.free(&[d]);
        d.addr < 255
    }));
    let got = receive(&mut rx, 8);
    let n = got.len();
    assert_eq!(n, 8);
    for (i, g) in got[..n].iter().enumerate() {
        assert_eq!(g.addr, descs[i].addr);
        assert_eq!(rx.chunk_mut(*g)[g.off as usize], i as u8);
    }
    assert_eq!(rx.io_drops(0).rx_dropped, 0);
    rx.free(&got[..n]);
    assert_eq!(
        pool.available(),
        avail0,
        "each mbuf back in its own mempool"
    );
}

#[test]
fn an_mbuf_given_twice_in_one_burst_is_sent_once() {
    // Sent twice, the PMD would free it twice and corrupt the mempool: the
    // burst stops at the second copy, which is then no longer the caller's.
    eal();
    let pool = Pool::new("t-twice", 255, -1).unwrap();
    let port = Port::start("net_ring3", 1, &pool).unwrap();
    let mut io = DpdkIo::new(&pool, &[&port], 0).unwrap();
    let avail0 = pool.available();
    let mut a = io.alloc().unwrap();
    let mut b = io.alloc().unwrap();
    a.len = 60;
    b.len = 60;
    assert_eq!(io.tx_burst(0, &[a, a, b]), 1);
    io.free(&[a]); // ignored: sent
    assert_eq!(io.tx_burst(0, &[b]), 1, "the bitmap was cleared");
    let got = receive(&mut io, 2);
    let n = got.len();
    assert_eq!(n, 2);
    assert_ne!(got[0].addr, got[1].addr);
    io.free(&got[..n]);
    assert_eq!(pool.available(), avail0);
}

#[test]
fn a_packet_the_queue_refuses_is_left_as_it_was() {
    // A packet that starts in the extra headroom is moved to the buffer's
    // start to be sent; if the queue is full, it goes back where its
    // descriptor says, for the caller to retry or free.
    eal();
    let pool = Pool::new("t-refused", 4095, -1).unwrap();
    let port = Port::start("net_ring4", 1, &pool).unwrap();
    let mut io = DpdkIo::new(&pool, &[&port], 0).unwrap();
    let avail0 = pool.available();
    // Fill the loopback ring (nothing receives).
    let (mut queued, mut refused) = (0, 0);
    'fill: for _ in 0..100 {
        let mut burst = Vec::new();
        for _ in 0..32 {
            let mut d = io.alloc().unwrap();
            d.len = 60;
            burst.push(d);
        }
        let sent = io.tx_burst(0, &burst);
        queued += sent;
        if sent < burst.len() {
            refused = burst.len() - sent;
            io.free(&burst[sent..]);
            break 'fill;
        }
    }
    assert!(
        queued > 0 && queued < 3200,
        "the ring filled up after {queued}"
    );
    let mut d = io.alloc().unwrap();
    d.off = (MIN_HEADROOM - 200) as u32;
    d.len = 300;
    let frame: Vec<u8> = (0..300u32).map(|b| (b * 7) as u8).collect();
    io.chunk_mut(d)[d.off as usize..d.off as usize + 300].copy_from_slice(&frame);
    assert_eq!(io.tx_burst(0, &[d]), 0, "queue full");
    assert_eq!(
        &io.chunk_mut(d)[d.off as usize..d.off as usize + 300],
        &frame[..]
    );
    assert_eq!(io.stats(0).tx_ring_full, refused as u64 + 1);
    io.free(&[d]);
    // Drain what was queued: everything goes back.
    let mut got = [Desc::default(); 32];
    let mut n = 0;
    for _ in 0..1000 {
        let k = io.rx_burst(0, &mut got);
        io.free(&got[..k]);
        n += k;
        if n >= queued {
            break;
        }
    }
    assert_eq!(n, queued);
    assert_eq!(pool.available(), avail0);
}
