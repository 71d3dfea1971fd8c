//! Pieces of the end-to-end benchmark (perf/e2e.sh runs the topology):
//! `gen` floods one interface with UDP frames through AF_XDP; `install`
//! writes an outbound SA and a PROTECT policy into an SA table, as sluiced
//! would, so sluice-dp encrypts without an IKE peer.

use sluice_io::afxdp::{AfXdp, AfXdpConfig, BindMode, PortSpec};
use sluice_io::{Desc, PacketIo};
use sluice_sa_table::{Action, Capacity, Direction, Lifetimes, Policy, Prefix, SaConfig, Writer};
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn opt<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or(format!("{name} missing"))
}

fn mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad MAC {s}"))?;
    v.try_into().map_err(|_| format!("bad MAC {s}"))
}

/// Ethernet + IPv4 + UDP, `size` bytes of IP packet, checksums complete.
fn frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, size: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + size];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = sluice_esp::wire::checksum_finish(sluice_esp::wire::checksum_add(0, &ip[..20]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&9000u16.to_be_bytes());
    ip[22..24].copy_from_slice(&9u16.to_be_bytes());
    ip[24..26].copy_from_slice(&((size - 20) as u16).to_be_bytes());
    // UDP checksum 0: none (RFC 768), so no offload question arises.
    f
}

/// `gen --if IF --src-mac M --dst-mac M --src IP --dst IP --size N --seconds S`
pub(crate) fn gen(args: &[String]) -> ExitCode {
    match gen_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-perf gen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gen_inner(args: &[String]) -> Result<(), String> {
    let ifname = opt(args, "--if")?;
    let size: usize = opt(args, "--size")?.parse().map_err(|_| "--size")?;
    if !(28..=1500).contains(&size) {
        return Err("--size 28..=1500".into());
    }
    let secs: f64 = opt(args, "--seconds")?.parse().map_err(|_| "--seconds")?;
    let f = frame(
        mac(opt(args, "--src-mac")?)?,
        mac(opt(args, "--dst-mac")?)?,
        opt(args, "--src")?.parse().map_err(|_| "--src")?,
        opt(args, "--dst")?.parse().map_err(|_| "--dst")?,
        size,
    );
    let cfg = AfXdpConfig {
        bind: BindMode::Copy,
        ..AfXdpConfig::default()
    };
    let mut io = AfXdp::open(&[PortSpec::new(ifname, 0)], &cfg).map_err(|e| e.to_string())?;
    let mut batch: Vec<Desc> = Vec::with_capacity(64);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while Instant::now() < until {
        io.service();
        batch.clear();
        while batch.len() < 64 {
            let Some(mut d) = io.alloc() else { break };
            let at = d.off as usize;
            if let Some(b) = io.chunk_mut(d).get_mut(at..at + f.len()) {
                b.copy_from_slice(&f);
            }
            d.len = f.len() as u32;
            batch.push(d);
        }
        let n = io.tx_burst(0, &batch);
        io.free(&batch[n..]);
        sent += n as u64;
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} frames in {el:.2} s: {:.0} pps",
        sent as f64 / el
    );
    Ok(())
}

/// `install --sa-table PATH --src IP --peer IP --inner-src CIDR --inner-dst CIDR`:
/// an outbound AES-GCM-128 SA (raw ESP) bound to a PROTECT policy;
/// `install --sa-table PATH --empty`: only the table.
pub(crate) fn install(args: &[String]) -> ExitCode {
    match install_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-perf install: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prefix(s: &str) -> Result<Prefix, String> {
    let (a, l) = s.split_once('/').ok_or(format!("{s}: CIDR expected"))?;
    Prefix::new(
        a.parse().map_err(|_| format!("{s}: bad address"))?,
        l.parse().map_err(|_| format!("{s}: bad length"))?,
    )
    .ok_or(format!("{s}: bad prefix"))
}

fn install_inner(args: &[String]) -> Result<(), String> {
    let path = opt(args, "--sa-table")?;
    let mut w = Writer::create_or_attach(
        path,
        Capacity {
            sas: 64,
            policies: 64,
        },
    )
    .map_err(|e| e.to_string())?;
    if args.iter().any(|a| a == "--empty") {
        w.commit().map_err(|e| e.to_string())?;
        println!("empty SA table created");
        return Ok(());
    }
    let sa = SaConfig {
        sa_id: 1,
        child_id: 1,
        direction: Direction::Outbound,
        spi: 0x5100_0001,
        src: opt(args, "--src")?.parse().map_err(|_| "--src")?,
        dst: opt(args, "--peer")?.parse().map_err(|_| "--peer")?,
        encap: None,
        encr_id: 20,
        key_bits: 128,
        integ_id: 0,
        encr_key: (1..=20).collect(),
        integ_key: vec![],
        esn: true,
        replay_window: 0,
        lifetimes: Lifetimes::default(),
        installed_at: 0,
    };
    let h = w.insert_sa(&sa).map_err(|e| e.to_string())?;
    let p = w
        .add_policy(Policy::between(
            prefix(opt(args, "--inner-src")?)?,
            prefix(opt(args, "--inner-dst")?)?,
            Action::Protect,
        ))
        .map_err(|e| e.to_string())?;
    w.commit().map_err(|e| e.to_string())?;
    w.bind_policy(p, Some(h)).map_err(|e| e.to_string())?;
    println!("installed outbound SA {:08x} and its policy", sa.spi);
    Ok(())
}
