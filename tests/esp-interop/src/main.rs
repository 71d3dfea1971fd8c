//! esp-interop: proves Sluice's ESP engine against other implementations.
//!
//! - `esp-interop write --out DIR` encrypts ICMP echoes with every algorithm
//!   Wireshark can decrypt, IPv4/IPv6 outer and inner, raw ESP and ESP-in-UDP,
//!   into `DIR/esp.pcap`, with Wireshark's `DIR/esp_sa` table and
//!   `DIR/expected.txt` (what each frame must decode to).
//! - `esp-interop decrypt --pcap F --esp-sa F [--min N] [--inner A,B] [--verbose]`
//!   decrypts every ESP packet of a capture with the engine, using the keys of
//!   an `esp_sa` table (e.g. built from strongSwan's key log), and checks the
//!   inner packets.

mod esp_sa;
mod pcap;

use esp_sa::{Encr, Integ, Row};
use sluice_esp::{
    decap_burst, encap_burst, parse_esp, Algorithm, Backend, Cipher, DecapItem, DropReason,
    EncapItem, InboundSa, OutboundSa, PacketBuf, ReplayWindow, Tunnel, UdpEncap, BUF_HEADROOM,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("write") => write(&args[1..]),
        Some("decrypt") => decrypt(&args[1..]),
        _ => Err("usage: esp-interop write --out DIR | decrypt --pcap F --esp-sa F [--min N] [--inner A,B] [--verbose]".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esp-interop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn ipv4_icmp(src: [u8; 4], dst: [u8; 4], seq: u16, payload: usize) -> Vec<u8> {
    let total = 28 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&seq.to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = sluice_esp::wire::ipv4_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8;
    p[24..26].copy_from_slice(&0x51u16.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = sluice_esp::wire::checksum_finish(sluice_esp::wire::checksum_add(0, &p[20..]));
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

fn ipv6_icmp(src: [u8; 16], dst: [u8; 16], seq: u16, payload: usize) -> Vec<u8> {
    let plen = 8 + payload;
    let mut p = vec![0u8; 40 + plen];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    p[6] = 58;
    p[7] = 64;
    p[8..24].copy_from_slice(&src);
    p[24..40].copy_from_slice(&dst);
    p[40] = 128;
    p[44..46].copy_from_slice(&0x51u16.to_be_bytes());
    p[46..48].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[48..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1).
    let mut sum = sluice_esp::wire::checksum_add(0, &p[8..40]);
    sum += plen as u32 + 58;
    sum = sluice_esp::wire::checksum_add(sum, &p[40..]);
    let c = sluice_esp::wire::checksum_finish(sum);
    p[42..44].copy_from_slice(&c.to_be_bytes());
    p
}

fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    f.extend_from_slice(if ip.first().map(|b| b >> 4) == Some(6) {
        &[0x86, 0xdd]
    } else {
        &[0x08, 0x00]
    });
    f.extend_from_slice(ip);
    f
}

fn key(seed: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| (seed * 41 + i * 13 + 7) as u8).collect()
}

fn write(args: &[String]) -> Result<(), String> {
    let out = PathBuf::from(opt(args, "--out").ok_or("write needs --out DIR")?);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let algs = [
        Algorithm::AesGcm128,
        Algorithm::AesGcm256,
        Algorithm::AesCbc128HmacSha256,
        Algorithm::AesCbc256HmacSha256,
    ];
    let (mut frames, mut rows, mut expected) = (Vec::new(), Vec::new(), String::new());
    expected.push_str("# frame alg spi inner_src inner_dst icmp_seq icv\n");
    let mut n = 0usize;
    for (ai, alg) in algs.iter().enumerate() {
        for (ci, (v6_outer, udp)) in [(false, true), (false, false), (true, true), (true, false)]
            .iter()
            .enumerate()
        {
            let case = ai * 4 + ci;
            let spi = 0x5100_0000 | case as u32;
            let (src, dst): (IpAddr, IpAddr) = if *v6_outer {
                (
                    "2001:db8::1".parse().map_err(|_| "addr")?,
                    "2001:db8::2".parse().map_err(|_| "addr")?,
                )
            } else {
                (
                    "198.18.0.1".parse().map_err(|_| "addr")?,
                    "198.18.0.2".parse().map_err(|_| "addr")?,
                )
            };
            let ek = key(case, alg.encr_key_len());
            let ik = key(case + 100, alg.integ_key_len());
            let backend = if case % 2 == 0 {
                Backend::Ring
            } else {
                Backend::RustCrypto
            };
            let cipher = Cipher::new(*alg, backend, &ek, &ik).map_err(|e| e.to_string())?;
            let tunnel = Tunnel::new(src, dst).ok_or("tunnel")?;
            let sa = OutboundSa::new(spi, cipher, false, tunnel, udp.then_some(UdpEncap::NAT_T));
            let seq = AtomicU64::new(0);
            rows.push(Row {
                src,
                dst,
                spi,
                encr: if alg.is_aead() {
                    Encr::AesGcm16
                } else {
                    Encr::AesCbc
                },
                encr_key: ek,
                integ: if alg.is_aead() {
                    Integ::Null
                } else {
                    Integ::HmacSha256_128
                },
                integ_key: ik,
            });
            for k in 0..2u16 {
                let icmp_seq = (case as u16) * 10 + k;
                let v6_inner = k == 1;
                let (inner, isrc, idst) = if v6_inner {
                    let a: std::net::Ipv6Addr = "2001:db8:1::1".parse().map_err(|_| "addr")?;
                    let b: std::net::Ipv6Addr = "2001:db8:2::1".parse().map_err(|_| "addr")?;
                    (
                        ipv6_icmp(a.octets(), b.octets(), icmp_seq, 56),
                        a.to_string(),
                        b.to_string(),
                    )
                } else {
                    (
                        ipv4_icmp([198, 19, 1, 1], [198, 19, 2, 1], icmp_seq, 56),
                        "198.19.1.1".into(),
                        "198.19.2.1".into(),
                    )
                };
                let mut buf = vec![0u8; BUF_HEADROOM + inner.len() + 64];
                buf[BUF_HEADROOM..BUF_HEADROOM + inner.len()].copy_from_slice(&inner);
                let mut it = [EncapItem::new(
                    &sa,
                    &seq,
                    PacketBuf::new(&mut buf, BUF_HEADROOM, inner.len()),
                )];
                encap_burst(&mut it);
                it[0].result.map_err(|r| format!("encap {alg}: {r}"))?;
                frames.push(ethernet(it[0].pkt.data()));
                n += 1;
                // Wireshark 4.0 verifies HMAC ICVs; for AES-GCM a correct
                // decryption of the inner packet is the proof.
                let icv = if alg.is_aead() { "decrypt" } else { "checked" };
                expected.push_str(&format!(
                    "{n} {alg} {spi:#010x} {isrc} {idst} {icmp_seq} {icv}\n"
                ));
            }
        }
    }
    let mut f = std::fs::File::create(out.join("esp.pcap")).map_err(|e| e.to_string())?;
    pcap::write(&mut f, &frames).map_err(|e| e.to_string())?;
    std::fs::write(out.join("esp_sa"), esp_sa::format(&rows)).map_err(|e| e.to_string())?;
    std::fs::write(out.join("expected.txt"), expected).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ESP frames for {} SAs to {}",
        frames.len(),
        rows.len(),
        out.display()
    );
    Ok(())
}

fn inbound_of(row: &Row) -> Result<InboundSa, String> {
    let alg = match (row.encr, row.integ, row.encr_key.len()) {
        (Encr::AesGcm16, Integ::Null, 20) => Algorithm::AesGcm128,
        (Encr::AesGcm16, Integ::Null, 36) => Algorithm::AesGcm256,
        (Encr::ChaCha20Poly1305, Integ::Null, 36) => Algorithm::ChaCha20Poly1305,
        (Encr::AesCbc, Integ::HmacSha256_128, 16) => Algorithm::AesCbc128HmacSha256,
        (Encr::AesCbc, Integ::HmacSha256_128, 32) => Algorithm::AesCbc256HmacSha256,
        other => return Err(format!("SPI {:08x}: unsupported {other:?}", row.spi)),
    };
    let c = Cipher::new(alg, Backend::default(), &row.encr_key, &row.integ_key)
        .map_err(|e| e.to_string())?;
    Ok(InboundSa::new(row.spi, c, false))
}

fn decrypt(args: &[String]) -> Result<(), String> {
    let pcap_path = opt(args, "--pcap").ok_or("decrypt needs --pcap")?;
    let sa_path = opt(args, "--esp-sa").ok_or("decrypt needs --esp-sa")?;
    let min: usize = opt(args, "--min")
        .map(str::parse)
        .transpose()
        .map_err(|e| format!("--min: {e}"))?
        .unwrap_or(1);
    let inner_ok: Vec<IpAddr> = opt(args, "--inner")
        .map(|s| {
            s.split(',')
                .map(|a| a.parse::<IpAddr>().map_err(|e| format!("--inner {a}: {e}")))
                .collect()
        })
        .transpose()?
        .unwrap_or_default();
    let verbose = args.iter().any(|a| a == "--verbose");
    let bytes = std::fs::read(pcap_path).map_err(|e| format!("{pcap_path}: {e}"))?;
    let frames = pcap::parse(&bytes)?;
    let text = std::fs::read_to_string(sa_path).map_err(|e| format!("{sa_path}: {e}"))?;
    let rows = esp_sa::parse(&text)?;
    if rows.is_empty() {
        return Err(format!("{sa_path}: no SAs"));
    }
    let mut sas: HashMap<(u32, IpAddr), (InboundSa, ReplayWindow)> = HashMap::new();
    for r in &rows {
        sas.insert((r.spi, r.dst), (inbound_of(r)?, ReplayWindow::new(4096)));
    }
    let (mut ok, mut bad, mut not_esp) = (0usize, 0usize, 0usize);
    let mut per_spi: HashMap<u32, (u64, u64)> = HashMap::new();
    for f in &frames {
        let Some(ip_off) = l3_offset(&f.data) else {
            continue;
        };
        let ip = &f.data[ip_off..];
        let meta = match parse_esp(ip) {
            Ok(m) => m,
            Err(DropReason::NotEsp) => {
                not_esp += 1;
                continue;
            }
            Err(r) => {
                println!("frame {}: not parsed: {r}", f.number);
                bad += 1;
                continue;
            }
        };
        let Some((sa, win)) = sas.get(&(meta.spi, meta.dst)) else {
            println!(
                "frame {}: no SA for SPI {:08x} to {}",
                f.number, meta.spi, meta.dst
            );
            bad += 1;
            continue;
        };
        let mut buf = vec![0u8; 64 + ip.len()];
        buf[64..].copy_from_slice(ip);
        let mut it = [DecapItem::new(
            sa,
            win,
            PacketBuf::new(&mut buf, 64, ip.len()),
        )];
        decap_burst(&mut it);
        match it[0].result {
            Ok(len) => {
                let inner = it[0].pkt.data();
                let (isrc, idst, proto) = inner_addrs(inner);
                let in_set =
                    inner_ok.is_empty() || (inner_ok.contains(&isrc) && inner_ok.contains(&idst));
                let e = per_spi.entry(meta.spi).or_default();
                e.0 += 1;
                e.1 += len as u64;
                if verbose || !in_set {
                    println!(
                        "frame {:>3}: SPI {:08x} seq {:>3} {} > {}  ->  inner {} > {} proto {} ({} bytes){}",
                        f.number, meta.spi, meta.seq_lo, meta.src, meta.dst, isrc, idst, proto, len,
                        if in_set { "" } else { "  UNEXPECTED inner addresses" }
                    );
                }
                if in_set {
                    ok += 1;
                } else {
                    bad += 1;
                }
            }
            Err(r) => {
                println!(
                    "frame {}: SPI {:08x} seq {}: dropped: {r}",
                    f.number, meta.spi, meta.seq_lo
                );
                bad += 1;
            }
        }
    }
    let mut spis: Vec<_> = per_spi.into_iter().collect();
    spis.sort();
    for (spi, (p, b)) in spis {
        println!("SA {spi:08x}: {p} packets, {b} inner bytes decrypted");
    }
    println!("esp-interop: {ok} ESP packets decrypted and checked, {bad} failed, {not_esp} not ESP (IKE, keepalives)");
    if bad > 0 || ok < min {
        return Err(format!(
            "{ok} decrypted (wanted at least {min}), {bad} failed"
        ));
    }
    Ok(())
}

fn l3_offset(frame: &[u8]) -> Option<usize> {
    let mut off = 12;
    loop {
        let et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        match et {
            0x8100 | 0x88a8 => off += 4,
            0x0800 | 0x86dd => return Some(off + 2),
            _ => return None,
        }
    }
}

fn inner_addrs(p: &[u8]) -> (IpAddr, IpAddr, u8) {
    let unspecified = IpAddr::from([0u8, 0, 0, 0]);
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => (
            IpAddr::from([p[12], p[13], p[14], p[15]]),
            IpAddr::from([p[16], p[17], p[18], p[19]]),
            p[9],
        ),
        Some(6) if p.len() >= 40 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&p[8..24]);
            d.copy_from_slice(&p[24..40]);
            (IpAddr::from(s), IpAddr::from(d), p[6])
        }
        _ => (unspecified, unspecified, 0),
    }
}
