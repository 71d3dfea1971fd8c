//! sluice-perf: benchmarks that report ratios against a roof measured in the
//! same run (see perf/README.md).

use arrayvec::ArrayVec;
use sluice_esp::{
    decap_burst, encap_burst, Algorithm, Backend, Cipher, DecapItem, EncapItem, InboundSa,
    OutboundSa, PacketBuf, ReplayWindow, Tunnel, UdpEncap, BUF_HEADROOM, ICV_LEN,
};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

const BURST: usize = 32;
const BUF: usize = 2048;

mod dpdk;
mod e2e;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("esp") => esp(&args[1..]),
        Some("dpdk") => dpdk::run(&args[1..]),
        Some("gen") => e2e::gen(&args[1..]),
        Some("install") => e2e::install(&args[1..]),
        _ => {
            eprintln!("usage: sluice-perf esp [--quick] [--backend B] [--alg A] [--size N]");
            eprintln!("       sluice-perf dpdk [--quick] [--size N]");
            eprintln!("       sluice-perf gen|install ... (used by perf/e2e.sh)");
            ExitCode::from(2)
        }
    }
}

fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// What [`measure_pair`] found: nanoseconds per packet of each side (the
/// median round of each) and the figure, `b`'s speed over `a`'s.
struct Pair {
    ns: f64,
    roof_ns: f64,
    /// The median over rounds of `roof_ns / ns`, each round of `a` against
    /// the round of `b` right after it: drift in the machine's speed (a
    /// neighbour starting, the clock changing) moves both sides of a pair
    /// together and cancels out, where a ratio of separate medians would
    /// keep it.
    ratio: f64,
}

/// Nanoseconds per packet of `a` and `b` (each processes one burst per
/// call), measured in alternating rounds so both see the same machine
/// conditions.
fn measure_pair(
    rounds: usize,
    round_time: Duration,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> Pair {
    fn round(f: &mut impl FnMut(), t: Duration) -> f64 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < t {
            for _ in 0..16 {
                f();
            }
            n += 16;
        }
        start.elapsed().as_nanos() as f64 / (n as f64 * BURST as f64)
    }
    for _ in 0..64 {
        a();
        b();
    }
    let (mut ra, mut rb) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        ra.push(round(&mut a, round_time));
        rb.push(round(&mut b, round_time));
    }
    let mut ratios: Vec<f64> = ra.iter().zip(&rb).map(|(a, b)| b / a).collect();
    ra.sort_by(f64::total_cmp);
    rb.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    Pair {
        ns: ra[ra.len() / 2],
        roof_ns: rb[rb.len() / 2],
        ratio: ratios[ratios.len() / 2],
    }
}

fn inner_packet(size: usize, buf: &mut [u8]) {
    // IPv4 header + payload of `size` bytes total (size >= 20).
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    buf[8] = 64;
    buf[9] = 17;
    buf[12..16].copy_from_slice(&[198, 19, 1, 1]);
    buf[16..20].copy_from_slice(&[198, 19, 2, 1]);
}

fn esp(args: &[String]) -> ExitCode {
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, round_time) = if quick {
        (3, Duration::from_millis(15))
    } else {
        (9, Duration::from_millis(35))
    };
    let backends: Vec<Backend> = match opt(args, "--backend") {
        Some(b) => Backend::from_name(b).into_iter().collect(),
        None => Backend::ALL.to_vec(),
    };
    let algs: Vec<Algorithm> = match opt(args, "--alg") {
        Some(a) => Algorithm::from_name(a).into_iter().collect(),
        None => Algorithm::ALL
            .iter()
            .copied()
            .filter(|a| *a != Algorithm::AesCbc256HmacSha256)
            .collect(),
    };
    let sizes: Vec<usize> = match opt(args, "--size") {
        Some(s) => s.parse().into_iter().collect(),
        None => vec![64, 512, 1420],
    };
    if backends.is_empty() || algs.is_empty() || sizes.is_empty() {
        eprintln!("sluice-perf: unknown --backend, --alg or --size");
        return ExitCode::from(2);
    }
    for &backend in &backends {
        for &alg in &algs {
            if !alg.is_aead() && backend != Backend::Ring {
                continue; // CBC+HMAC runs on RustCrypto whatever the backend
            }
            for &size in &sizes {
                bench_one(backend, alg, size.max(20), rounds, round_time);
            }
        }
    }
    ExitCode::SUCCESS
}

fn make_cipher(alg: Algorithm, backend: Backend) -> Cipher {
    let ek: Vec<u8> = (0..alg.encr_key_len()).map(|i| i as u8).collect();
    let ik: Vec<u8> = (0..alg.integ_key_len()).map(|i| 0x80 | i as u8).collect();
    match Cipher::new(alg, backend, &ek, &ik) {
        Ok(c) => c,
        Err(e) => panic_free_exit(&e.to_string()),
    }
}

fn panic_free_exit(msg: &str) -> ! {
    eprintln!("sluice-perf: {msg}");
    std::process::exit(1)
}

fn bench_one(backend: Backend, alg: Algorithm, size: usize, rounds: usize, round_time: Duration) {
    let tunnel = Tunnel::V4 {
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
    };
    let out = OutboundSa::new(
        0x1001,
        make_cipher(alg, backend),
        true,
        tunnel,
        Some(UdpEncap::NAT_T),
    );
    let inb = InboundSa::new(0x1001, make_cipher(alg, backend), true);
    let seq = AtomicU64::new(0);
    // Bytes the engine encrypts: inner + padding + 2, as in the ESP trailer.
    let align = alg.pad_align();
    let enc_len = (size + 2).div_ceil(align) * align;

    // --- encap and its roof (raw seal of the same bytes) ---
    let mut bufs = vec![[0u8; BUF]; BURST];
    for b in bufs.iter_mut() {
        inner_packet(size, &mut b[BUF_HEADROOM..]);
    }
    let hdr: [u8; 20] = bufs[0][BUF_HEADROOM..BUF_HEADROOM + 20]
        .try_into()
        .unwrap_or([0; 20]);
    let mut roof_bufs = vec![[0u8; BUF]; BURST];
    let mut iv_ctr = 0u64;
    let cipher = out.cipher();
    let m = measure_pair(
        rounds,
        round_time,
        || {
            // Items pushed into a stack vector, as the worker does.
            let mut items: ArrayVec<EncapItem<'_>, BURST> = ArrayVec::new();
            for b in bufs.iter_mut() {
                b[BUF_HEADROOM..BUF_HEADROOM + 20].copy_from_slice(&hdr);
                items.push(EncapItem::new(
                    &out,
                    &seq,
                    PacketBuf::new(b, BUF_HEADROOM, size),
                ));
            }
            black_box(encap_burst(&mut items));
        },
        || {
            for b in roof_bufs.iter_mut() {
                iv_ctr += 1;
                let ivb = iv_ctr.to_be_bytes();
                // Same buffer position as the engine's payload.
                let data = &mut b[BUF_HEADROOM..BUF_HEADROOM + enc_len];
                if alg.is_aead() {
                    black_box(cipher.seal(&ivb, &[0u8; 12], data));
                } else {
                    let iv = [0x5au8; 16];
                    cipher.cbc_encrypt(&iv, data);
                    black_box(cipher.mac(&[&[0u8; 8], &iv, data]));
                }
            }
        },
    );
    report(backend, alg, "encap", size, &m);

    // --- decap and its roof (copy from the pool + raw open of the same bytes) ---
    // Bursts of distinct sequence numbers; small enough (128 packets) for the
    // pool to stay in L2 like the roof's.
    const POOL: usize = 4;
    let seq_pool = AtomicU64::new(0);
    let mut pool: Vec<(Vec<u8>, usize)> = Vec::with_capacity(POOL * BURST);
    for _ in 0..POOL * BURST {
        let mut b = [0u8; BUF];
        inner_packet(size, &mut b[BUF_HEADROOM..]);
        let mut it = [EncapItem::new(
            &out,
            &seq_pool,
            PacketBuf::new(&mut b, BUF_HEADROOM, size),
        )];
        encap_burst(&mut it);
        let (h, l) = (it[0].pkt.head, it[0].pkt.len);
        pool.push((b[h..h + l].to_vec(), l));
    }
    // Pool packets for the roof: (ciphertext, tag) sealed with the raw API.
    let mut roof_pool: Vec<(Vec<u8>, [u8; ICV_LEN], [u8; 8])> = Vec::with_capacity(POOL * BURST);
    for i in 0..POOL * BURST {
        let mut data = vec![7u8; enc_len];
        let ivb = (i as u64 + 1).to_be_bytes();
        let tag = if alg.is_aead() {
            cipher.seal(&ivb, &[0u8; 12], &mut data)
        } else {
            let iv = [0x5au8; 16];
            cipher.cbc_encrypt(&iv, &mut data);
            cipher.mac(&[&[0u8; 8], &iv, &data])
        };
        roof_pool.push((data, tag, ivb));
    }
    let window = ReplayWindow::new(4096);
    let mut next = 0usize;
    let mut dbufs = vec![[0u8; BUF]; BURST];
    let mut failures = 0u64;
    let mut rnext = 0usize;
    let mut rbufs = vec![[0u8; BUF]; BURST];
    let m = measure_pair(
        rounds,
        round_time,
        || {
            if next == POOL {
                next = 0;
                window.reset(4096);
            }
            let base = next * BURST;
            next += 1;
            let mut items: ArrayVec<DecapItem<'_>, BURST> = ArrayVec::new();
            for (k, b) in dbufs.iter_mut().enumerate() {
                let (pkt, l) = &pool[base + k];
                b[64..64 + l].copy_from_slice(pkt);
                items.push(DecapItem::new(&inb, &window, PacketBuf::new(b, 64, *l)));
            }
            let st = decap_burst(&mut items);
            failures += st.dropped();
            black_box(st);
        },
        || {
            for b in rbufs.iter_mut() {
                let (data, tag, ivb) = &roof_pool[rnext % (POOL * BURST)];
                rnext += 1;
                // Same position as the ciphertext in the engine's buffers:
                // after outer IPv4, UDP, ESP header and IV.
                let at = 64 + 20 + 8 + 8 + alg.iv_len();
                b[at..at + data.len()].copy_from_slice(data);
                let d = &mut b[at..at + data.len()];
                if alg.is_aead() {
                    black_box(cipher.open(ivb, &[0u8; 12], d, tag).is_ok());
                } else {
                    let iv = [0x5au8; 16];
                    black_box(cipher.verify_mac(&[&[0u8; 8], &iv, d], tag).is_ok());
                    cipher.cbc_decrypt(&iv, d);
                }
            }
        },
    );
    if failures != 0 {
        eprintln!("sluice-perf: {failures} decap failures in the benchmark (bug)");
    }
    report(backend, alg, "decap", size, &m);
}

fn report(backend: Backend, alg: Algorithm, op: &str, size: usize, m: &Pair) {
    let head = format!(
        "\"bench\":\"esp\",\"backend\":\"{}\",\"alg\":\"{}\",\"op\":\"{op}\"",
        backend.name(),
        alg.name()
    );
    report_line(&head, size, m);
}

/// One JSON line: `head` (the benchmark's own fields), then the figures
/// for `size`-byte packets at `ns` per packet against a roof of `roof_ns`.
fn report_line(head: &str, size: usize, m: &Pair) {
    let (ns, roof_ns) = (m.ns, m.roof_ns);
    let gbps = size as f64 * 8.0 / ns;
    let roof_gbps = size as f64 * 8.0 / roof_ns;
    println!(
        "{{{head},\"size\":{size},\"burst\":{BURST},\"gbps\":{gbps:.3},\"mpps\":{:.3},\"ns_per_pkt\":{ns:.1},\"roof_gbps\":{roof_gbps:.3},\"roof_mpps\":{:.3},\"roof_ns_per_pkt\":{roof_ns:.1},\"ratio\":{:.3}}}",
        1e3 / ns,
        1e3 / roof_ns,
        m.ratio
    );
}
