//! `sluice-perf dpdk`: per-core ESP encapsulation with DPDK I/O, against
//! the raw AEAD roof measured in the same run.
//!
//! One worker loop on one core: receive a burst from a `net_null` port
//! (DPDK's null PMD hands out mbufs without touching the wire or the
//! kernel), write the inner IPv4 header, encrypt in place with the ESP
//! engine (tunnel mode, UDP-encapsulated, as the data plane does), put the
//! Ethernet header back and send the burst to the port, which frees it.
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
    if let Err(e) = dpdk::init(&eal) {
        panic_free_exit(&e);
    }
    let pool = Pool::new("perf", 8191, -1).unwrap_or_else(|e| panic_free_exit(&e));
    for (i, &size) in sizes.iter().enumerate() {
        let port =
            Port::start(&format!("net_null{i}"), 1, &pool).unwrap_or_else(|e| panic_free_exit(&e));
        let mut io = DpdkIo::new(&pool, &[&port], 0).unwrap_or_else(|e| panic_free_exit(&e));
        for alg in [Algorithm::AesGcm128, Algorithm::AesGcm256] {
            bench(&mut io, alg, size.max(20), rounds, round_time, huge);
        }
    }
    ExitCode::SUCCESS
}

fn bench(
    io: &mut DpdkIo,
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
    let mut short = 0u64;
    let m = measure_pair(
        rounds,
        round_time,
        || {
            let mut ds = [Desc::default(); BURST];
            let n = io.rx_burst(0, &mut ds);
            if n < BURST {
                // net_null fills every burst; a short one means the pool
                // ran low: counted, not measured.
                short += 1;
                io.free(&ds[..n]);
                return;
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
                d.off = (it.pkt.head - ETH) as u32;
                d.len = (it.pkt.len + ETH) as u32;
            }
            drop(items);
            let sent = io.tx_burst(0, &ds);
            io.free(&ds[sent..]);
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
    if short > 0 {
        eprintln!("sluice-perf dpdk: {short} short bursts from net_null (the pool ran low?)");
    }
    let head = format!(
        "\"bench\":\"dpdk\",\"io\":\"net_null\",\"hugepages\":{huge},\"backend\":\"{}\",\"alg\":\"{}\",\"op\":\"encap\"",
        backend.name(),
        alg.name()
    );
    crate::report_line(&head, size, &m);
}
