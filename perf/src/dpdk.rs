//! `sluice-perf dpdk`: per-core ESP encapsulation with DPDK I/O, against
//! the raw AEAD roof measured in the same run.
//!
//! One worker loop on one core: receive a burst from a DPDK virtual port,
//! write the inner IPv4 header, encrypt in place with the ESP engine
//! (tunnel mode, UDP-encapsulated, as the data plane does) and send the
//! burst to the port. Two ports, neither touching a wire or the kernel:
//! - `net_null`: the null PMD allocates an mbuf for every packet received
//!   and frees every packet sent, one at a time (a NIC's PMD refills and
//!   frees in bulk): its own cost is part of the figure;
//! - `net_ring`: a ring PMD whose transmit queue feeds its receive queue,
//!   so one burst of mbufs goes round without the mempool; what the ring
//!   costs is two bulk ring operations per burst, so the figure is the
//!   data plane's own cost (`sluice_io::dpdk` and the engine). A packet is
//!   sent laid out as it was received (the ring hands an mbuf back as it
//!   was sent, which a NIC never does).
//!
//! The roof seals the same number of bytes per packet with the same cipher,
//! at the same offset in a buffer as the engine's payload (alignment matters
//! to the AES-GCM code), and nothing else. Both run in alternating rounds; the ratio is the
//! figure. Without hugepages the EAL runs with `--no-huge`.

use crate::{measure_pair, panic_free_exit, BURST};
use arrayvec::ArrayVec;
use sluice_esp::{
    encap_burst, Algorithm, Backend, EncapItem, OutboundSa, PacketBuf, Tunnel, UdpEncap,
};
use sluice_io::dpdk::{self, DpdkIo, Pool, Port};
use sluice_io::{Desc, PacketIo};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

const ETH: usize = 14;

/// The virtual port the loop runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Vdev {
    Null,
    Ring,
}

impl Vdev {
    fn name(self) -> &'static str {
        match self {
            Vdev::Null => "net_null",
            Vdev::Ring => "net_ring",
        }
    }
}

/// Where `net_null` puts a frame in the chunk (the mbuf headroom after the
/// chunk's extra headroom): the ring loop's frames sit there too.
const RX_OFF: u32 = 256;

pub(crate) fn run(args: &[String]) -> ExitCode {
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, round_time) = if quick {
        (3, Duration::from_millis(20))
    } else {
        (15, Duration::from_millis(40))
    };
    let sizes: Vec<usize> = match crate::opt(args, "--size") {
        Some(s) => s.parse().into_iter().collect(),
        None => vec![64, 512, 1420],
    };
    let vdevs = match crate::opt(args, "--io") {
        None => vec![Vdev::Null, Vdev::Ring],
        Some("null" | "net_null") => vec![Vdev::Null],
        Some("ring" | "net_ring") => vec![Vdev::Ring],
        Some(other) => panic_free_exit(&format!("--io {other}: null or ring")),
    };
    let huge = dpdk::hugepages_available();
    let mut eal: Vec<String> = vec![
        format!("--file-prefix=sluice-perf-{}", std::process::id()),
        "--no-pci".into(),
        "--no-telemetry".into(),
        "--log-level=lib.eal:error".into(),
    ];
    if !huge {
        eal.extend(["--no-huge".into(), "-m".into(), "512".into()]);
    }
    for (i, s) in sizes.iter().enumerate() {
        eal.push(format!("--vdev=net_null{i},size={}", s + ETH));
    }
    eal.push("--vdev=net_ring0".into());
    if let Err(e) = dpdk::init(&eal) {
        panic_free_exit(&e);
    }
    let pool = Pool::new("perf", 8191, -1).unwrap_or_else(|e| panic_free_exit(&e));
    let ring = Port::start("net_ring0", 1, &pool).unwrap_or_else(|e| panic_free_exit(&e));
    for vdev in vdevs {
        for (i, &size) in sizes.iter().enumerate() {
            let null;
            let port = match vdev {
                Vdev::Null => {
                    null = Port::start(&format!("net_null{i}"), 1, &pool)
                        .unwrap_or_else(|e| panic_free_exit(&e));
                    &null
                }
                Vdev::Ring => &ring,
            };
            let mut io = DpdkIo::new(&pool, &[port], 0).unwrap_or_else(|e| panic_free_exit(&e));
            if vdev == Vdev::Ring {
                prime_ring(&mut io, size);
            }
            for alg in [Algorithm::AesGcm128, Algorithm::AesGcm256] {
                bench(&mut io, vdev, alg, size.max(20), rounds, round_time, huge);
            }
            if vdev == Vdev::Ring {
                let mut ds = [Desc::default(); BURST];
                let n = io.rx_burst(0, &mut ds);
                io.free(&ds[..n]);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Sends a burst of packets of `size` into the ring port, for the loop to
/// receive.
fn prime_ring(io: &mut DpdkIo, size: usize) {
    let mut ds = [Desc::default(); BURST];
    for d in &mut ds {
        let a = io
            .alloc()
            .unwrap_or_else(|| panic_free_exit("mempool empty"));
        *d = Desc {
            off: RX_OFF,
            len: (size + ETH) as u32,
            ..a
        };
    }
    if io.tx_burst(0, &ds) < BURST {
        panic_free_exit("the ring refused the packets to go round");
    }
}

fn bench(
    io: &mut DpdkIo,
    vdev: Vdev,
    alg: Algorithm,
    size: usize,
    rounds: usize,
    round_time: Duration,
    huge: bool,
) {
    let backend = Backend::Ring;
    let tunnel = Tunnel::V4 {
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
    };
    let out = OutboundSa::new(
        0x1001,
        crate::make_cipher(alg, backend),
        true,
        tunnel,
        Some(UdpEncap::NAT_T),
    );
    let seq = AtomicU64::new(0);
    let mut inner = [0u8; 20];
    crate::inner_packet(size, &mut inner);
    let align = alg.pad_align();
    let enc_len = (size + 2).div_ceil(align) * align;
    let cipher = out.cipher();
    let mut roof = vec![[0u8; 2048]; BURST];
    let mut iv = 0u64;
    let m = measure_pair(
        rounds,
        round_time,
        || {
            let mut ds = [Desc::default(); BURST];
            let n = io.rx_burst(0, &mut ds);
            if n < BURST {
                // Both ports fill every burst (net_null from the pool, the
                // ring with the burst that went round), and every call is
                // counted as a full burst: a short one would make the
                // figure wrong, so it ends the run.
                panic_free_exit(&format!("{}: a short burst ({n})", vdev.name()));
            }
            let mut chunks: [Option<&mut [u8]>; BURST] = [const { None }; BURST];
            io.chunks_mut(&ds, &mut chunks);
            // As the worker does: items pushed into a stack vector.
            let mut items: ArrayVec<EncapItem<'_>, BURST> = ArrayVec::new();
            for (c, d) in chunks.iter_mut().zip(&ds) {
                let c = c.take().unwrap_or_else(|| panic_free_exit("chunk"));
                let head = d.off as usize + ETH;
                if let Some(h) = c.get_mut(head..head + 20) {
                    h.copy_from_slice(&inner);
                }
                items.push(EncapItem::new(&out, &seq, PacketBuf::new(c, head, size)));
            }
            black_box(encap_burst(&mut items));
            // The chunks' borrow of io ends with the last use of items.
            for (d, it) in ds.iter_mut().zip(&items) {
                (d.off, d.len) = match vdev {
                    Vdev::Null => ((it.pkt.head - ETH) as u32, (it.pkt.len + ETH) as u32),
                    // Round again as received (see the module's doc).
                    Vdev::Ring => (RX_OFF, (size + ETH) as u32),
                };
            }
            drop(items);
            if io.tx_burst(0, &ds) < BURST {
                panic_free_exit(&format!("{}: a burst not taken whole", vdev.name()));
            }
        },
        || {
            for b in roof.iter_mut() {
                iv += 1;
                // Same buffer position as the engine's payload: where the
                // PMD put the frame (RTE_PKTMBUF_HEADROOM into the buffer,
                // 256 into the chunk), after its Ethernet header.
                let at = 256 + ETH;
                black_box(cipher.seal(&iv.to_be_bytes(), &[0u8; 12], &mut b[at..at + enc_len]));
            }
        },
    );
    let head = format!(
        "\"bench\":\"dpdk\",\"io\":\"{}\",\"hugepages\":{huge},\"backend\":\"{}\",\"alg\":\"{}\",\"op\":\"encap\"",
        vdev.name(),
        backend.name(),
        alg.name()
    );
    crate::report_line(&head, size, &m);
}
