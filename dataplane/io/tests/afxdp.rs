//! The AF_XDP backend on real sockets: veth pairs between private network
//! namespaces `sluice-io-<pid>-<tag>-{gen,dut,sink}`, deleted on drop (also
//! when a test fails). Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF);
//! without it every test prints a "skipped" line and returns.
//!
//! ```text
//!   gen  g0 198.18.1.2 ---- d0 198.18.1.1  dut  d1 198.19.2.1 ---- s0 198.19.2.2  sink
//!        route 198.19/16 via dut           XDP steering (inside)                  UDP sockets
//!                                          on d0 -> XSK port 0;
//!                                          port 1 = d1 (TX to sink)
//! ```
//!
//! Addresses only from 198.18.0.0/15 and 2001:db8::/32. Every loop is bounded
//! in packets and time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use sluice_ebpf::{AttachMode, Class, Role, Steering};
use sluice_io::afxdp::{AfXdp, AfXdpConfig, BindMode, Mode, PortSpec, CHUNK_SIZE};
use sluice_io::{Desc, PacketIo, PortStats, MIN_HEADROOM};

const MAC_G0: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const MAC_D0: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const MAC_D1: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const MAC_S0: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const GEN_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const DUT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const SINK_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 2);
const GEN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const SINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
const TEST_TIME: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- privileges

/// True when running as root with CAP_NET_ADMIN; prints why a test is
/// skipped otherwise.
fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    const CAP_NET_ADMIN: u32 = 12;
    let net_admin = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0);
    if !(root && net_admin) {
        eprintln!("skipped: needs root for AF_XDP sockets and network namespaces");
    }
    root && net_admin
}

// ---------------------------------------------------------------- namespaces

fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The three namespaces of one test, deleted (with their veths) on drop.
struct Topo {
    gen: String,
    dut: String,
    sink: String,
}

impl Topo {
    /// gen --g0/d0-- dut --d1/s0-- sink, addressed and routed as in the
    /// module docs, MACs fixed.
    fn new(tag: &str) -> Topo {
        let prefix = format!("sluice-io-{}-{tag}", std::process::id());
        let topo = Topo {
            gen: format!("{prefix}-gen"),
            dut: format!("{prefix}-dut"),
            sink: format!("{prefix}-sink"),
        };
        for ns in [&topo.gen, &topo.dut, &topo.sink] {
            // A leftover from a crashed run with the same pid would make `add` fail.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            run_ip(&["netns", "add", ns]);
        }
        let (g, d, s) = (&topo.gen, &topo.dut, &topo.sink);
        run_ip(&[
            "link", "add", "g0", "netns", g, "type", "veth", "peer", "name", "d0", "netns", d,
        ]);
        run_ip(&[
            "link", "add", "d1", "netns", d, "type", "veth", "peer", "name", "s0", "netns", s,
        ]);
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        for (ns, dev, m) in [
            (g, "g0", MAC_G0),
            (d, "d0", MAC_D0),
            (d, "d1", MAC_D1),
            (s, "s0", MAC_S0),
        ] {
            run_ip(&["-n", ns, "link", "set", dev, "address", &mac(m)]);
        }
        run_ip(&["-n", g, "addr", "add", "198.18.1.2/24", "dev", "g0"]);
        run_ip(&[
            "-n",
            g,
            "addr",
            "add",
            "2001:db8:1::2/64",
            "dev",
            "g0",
            "nodad",
        ]);
        run_ip(&["-n", d, "addr", "add", "198.18.1.1/24", "dev", "d0"]);
        run_ip(&["-n", d, "addr", "add", "198.19.2.1/24", "dev", "d1"]);
        run_ip(&["-n", s, "addr", "add", "198.19.2.2/24", "dev", "s0"]);
        run_ip(&[
            "-n",
            s,
            "addr",
            "add",
            "2001:db8:2::2/64",
            "dev",
            "s0",
            "nodad",
        ]);
        for (ns, dev) in [
            (g, "g0"),
            (d, "d0"),
            (d, "d1"),
            (s, "s0"),
            (g, "lo"),
            (s, "lo"),
        ] {
            run_ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        run_ip(&[
            "-n",
            g,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            "198.18.1.1",
        ]);
        run_ip(&[
            "-n",
            g,
            "neigh",
            "replace",
            "198.18.1.1",
            "lladdr",
            &mac(MAC_D0),
            "dev",
            "g0",
            "nud",
            "permanent",
        ]);
        // A route back, so reverse-path filtering accepts what dut sends.
        run_ip(&["-n", s, "route", "add", "default", "via", "198.19.2.1"]);
        topo
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in [&self.gen, &self.dut, &self.sink] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into network namespace `ns` for good (call it
/// on a thread made for the purpose).
fn enter(ns: &str) {
    let f = File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: `f` is an open namespace file; setns only changes this
    // thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// A start signal between test threads that cannot hang: a thread that
/// panics before opening it breaks it, and waiting gives up after 20 s.
struct Gate(AtomicU8);

const GATE_SHUT: u8 = 0;
const GATE_OPEN: u8 = 1;
const GATE_BROKEN: u8 = 2;

impl Gate {
    fn new() -> Gate {
        Gate(AtomicU8::new(GATE_SHUT))
    }

    /// Held by the thread that will open the gate: breaks it if that thread
    /// unwinds first.
    fn guard(&self) -> GateGuard<'_> {
        GateGuard(self)
    }

    fn open(&self) {
        let _ = self
            .0
            .compare_exchange(GATE_SHUT, GATE_OPEN, Ordering::AcqRel, Ordering::Acquire);
    }

    fn broken(&self) -> bool {
        self.0.load(Ordering::Acquire) == GATE_BROKEN
    }

    /// True once open; false if broken or still shut after 20 s.
    fn wait(&self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            match self.0.load(Ordering::Acquire) {
                GATE_OPEN => return true,
                GATE_BROKEN => return false,
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        false
    }
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let _ =
            self.0
                 .0
                .compare_exchange(GATE_SHUT, GATE_BROKEN, Ordering::AcqRel, Ordering::Acquire);
    }
}

// ---------------------------------------------------------------- packets

/// The UDP payload of packet `seq`: the sequence number then a pattern,
/// 16..=1415 bytes long.
fn payload(seq: u64) -> Vec<u8> {
    let len = 16 + (seq as usize * 37) % 1400;
    let mut p = seq.to_le_bytes().to_vec();
    p.extend((8..len).map(|j| (seq as usize + j) as u8));
    p
}

/// The sequence number of a payload if it is intact.
fn check_payload(p: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    (payload(seq) == p).then_some(seq)
}

fn checksum(bytes: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 + UDP (checksum 0) frame from gen to sink.
fn frame_v4(dport: u16, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_S0);
    f.extend_from_slice(&MAC_D1);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = u16::try_from(20 + 8 + data.len()).unwrap();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&GEN_V4.octets());
    ip.extend_from_slice(&SINK_V4.octets());
    let sum = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&u16::try_from(8 + data.len()).unwrap().to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(data);
    f
}

/// Ethernet + IPv6 + UDP (with its mandatory checksum) frame from gen to sink.
fn frame_v6(dport: u16, data: &[u8]) -> Vec<u8> {
    let ulen = u16::try_from(8 + data.len()).unwrap();
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&GEN_V6.octets());
    pseudo.extend_from_slice(&SINK_V6.octets());
    pseudo.extend_from_slice(&u32::from(ulen).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    pseudo.extend_from_slice(&udp);
    let sum = match checksum(&pseudo, 0) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_S0);
    f.extend_from_slice(&MAC_D1);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&GEN_V6.octets());
    f.extend_from_slice(&SINK_V6.octets());
    f.extend_from_slice(&udp);
    f
}

/// Copies `frame` into a freshly allocated chunk.
fn build(io: &mut AfXdp, frame: &[u8]) -> Desc {
    let mut d = io.alloc().expect("a free chunk");
    assert_eq!(d.off as usize, MIN_HEADROOM);
    let chunk = io.chunk_mut(d);
    assert_eq!(chunk.len(), CHUNK_SIZE);
    chunk[MIN_HEADROOM..MIN_HEADROOM + frame.len()].copy_from_slice(frame);
    d.len = u32::try_from(frame.len()).unwrap();
    d
}

/// Receives on `sock` until `want` datagrams came, `limit` passed or `abort`
/// broke; returns the intact payloads' sequence numbers and the number of
/// damaged ones.
fn receive(
    sock: &UdpSocket,
    want: usize,
    limit: Duration,
    count: &AtomicU64,
    abort: &Gate,
) -> Sunk {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let (mut seqs, mut damaged) = (Vec::new(), 0);
    let mut buf = [0u8; 2048];
    while seqs.len() + damaged < want && start.elapsed() < limit && !abort.broken() {
        if let Ok(n) = sock.recv(&mut buf) {
            match check_payload(&buf[..n]) {
                Some(seq) => seqs.push(seq),
                None => damaged += 1,
            }
            count.fetch_add(1, Ordering::Release);
        }
    }
    (seqs, damaged)
}

fn udp_bind(addr: SocketAddr) -> UdpSocket {
    let sock = UdpSocket::bind(addr).unwrap();
    // Room for every test burst, so the sink never drops.
    let size: libc::c_int = 4 << 20;
    // SAFETY: `size` is a live c_int of the size passed.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    sock
}

/// Sends `n` UDP datagrams from gen's kernel to the sink at `SINK_V4:port`
/// (routed through dut), at most `window` ahead of what the sink counted.
fn generate(n: u64, window: u64, port: u16, sunk: &AtomicU64) -> u64 {
    let sock = UdpSocket::bind((GEN_V4, 0)).unwrap();
    // UDP checksum 0 (RFC 768 allows it for IPv4): the frame then carries
    // no checksum for veth to leave to a "hardware" offload, which AF_XDP
    // would see unfinished.
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    sock.connect((SINK_V4, port)).unwrap();
    let start = Instant::now();
    let mut sent = 0;
    while sent < n && start.elapsed() < TEST_TIME {
        if sent - sunk.load(Ordering::Acquire) >= window {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        sock.send(&payload(sent)).unwrap();
        sent += 1;
    }
    sent
}

// ---------------------------------------------------------------- forwarding

/// What a forwarding run saw.
#[derive(Debug, Default)]
struct Forwarded {
    sent: u64,
    received: Vec<u64>,
    damaged: usize,
    forwarded: u64,
    not_ours: u64,
    rx_offsets: Vec<u32>,
    mode: Option<Mode>,
    free_at_open: usize,
    free_at_end: usize,
    fill_levels_at_end: Vec<u32>,
    fill_target: u32,
    chunks: usize,
    stats: Vec<PortStats>,
    kernel: Vec<sluice_io::afxdp::KernelStats>,
    redirect_transit: u64,
    no_socket_pass: u64,
    wire_bytes: u64,
}

/// gen sends `n` datagrams to the sink; dut receives them on port 0 (d0),
/// rewrites the MACs and transmits the same chunks on port 1 (d1).
fn forward(tag: &str, n: u64) -> Forwarded {
    let topo = Topo::new(tag);
    let dut_ready = Gate::new();
    let sink_ready = Gate::new();
    let stop = AtomicBool::new(false);
    let sunk = AtomicU64::new(0);
    let port = 9000;

    std::thread::scope(|s| {
        let dut = s.spawn(|| {
            let _guard = dut_ready.guard();
            enter(&topo.dut);
            let mut steering = Steering::load(Role::Inside).unwrap();
            steering.add_local_addr(DUT_V4.into()).unwrap();
            let ports = [PortSpec::new("d0", 0), PortSpec::new("d1", 0)];
            let mut io = AfXdp::open(&ports, &AfXdpConfig::default())
                .unwrap_or_else(|e| panic!("open: {e}"));
            steering.set_xsk(0, io.fd(0).unwrap()).unwrap();
            steering.attach("d0", AttachMode::Auto).unwrap();
            let mut out = Forwarded {
                mode: Some(io.mode()),
                free_at_open: io.free_chunks(),
                fill_target: io.fill_target(),
                chunks: io.chunks(),
                ..Forwarded::default()
            };
            dut_ready.open();

            let mut rx = [Desc::default(); 64];
            let mut fwd = Vec::with_capacity(64);
            let mut other = Vec::with_capacity(64);
            let start = Instant::now();
            while !stop.load(Ordering::Acquire) && start.elapsed() < TEST_TIME {
                io.service();
                let got = io.rx_burst(0, &mut rx);
                if got == 0 {
                    std::thread::sleep(Duration::from_micros(20));
                    continue;
                }
                fwd.clear();
                other.clear();
                for d in &rx[..got] {
                    if out.rx_offsets.len() < 4 || !out.rx_offsets.contains(&d.off) {
                        out.rx_offsets.push(d.off);
                    }
                    let (off, len) = (d.off as usize, d.len as usize);
                    let chunk = io.chunk_mut(*d);
                    let frame = &mut chunk[off..off + len];
                    if frame.len() >= 42
                        && frame[12..14] == [0x08, 0x00]
                        && frame[30..34] == SINK_V4.octets()
                    {
                        frame[0..6].copy_from_slice(&MAC_S0);
                        frame[6..12].copy_from_slice(&MAC_D1);
                        fwd.push(*d);
                    } else {
                        other.push(*d);
                    }
                }
                io.free(&other);
                out.not_ours += other.len() as u64;
                // Same chunks, other port: zero-copy inside the UMEM.
                let mut done = 0;
                for _ in 0..1000 {
                    done += io.tx_burst(1, &fwd[done..]);
                    if done == fwd.len() {
                        break;
                    }
                    io.service();
                }
                io.free(&fwd[done..]);
                out.forwarded += done as u64;
            }
            // Let the last transmissions complete and the fill rings top up.
            let settle = Instant::now();
            while settle.elapsed() < Duration::from_secs(5) {
                io.service();
                if io.free_chunks() == out.free_at_open {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            out.free_at_end = io.free_chunks();
            out.fill_levels_at_end = (0..2).map(|p| io.fill_level(p)).collect();
            out.stats = (0..2).map(|p| io.stats(p)).collect();
            out.kernel = (0..2).map(|p| io.kernel_stats(p).unwrap()).collect();
            let counters = steering.counters().unwrap();
            out.redirect_transit = counters[Class::RedirectTransit.index()];
            out.no_socket_pass = counters[Class::NoSocketPass.index()];
            out
        });
        let sink = s.spawn(|| {
            let _guard = sink_ready.guard();
            enter(&topo.sink);
            let sock = udp_bind((SINK_V4, port).into());
            sink_ready.open();
            let got = receive(&sock, n as usize, TEST_TIME, &sunk, &dut_ready);
            stop.store(true, Ordering::Release);
            got
        });
        let gen = s.spawn(|| {
            enter(&topo.gen);
            if !(dut_ready.wait() && sink_ready.wait()) {
                return 0;
            }
            generate(n, 64, port, &sunk)
        });
        let sent = gen.join().unwrap();
        let (received, damaged) = sink.join().unwrap();
        let mut out = dut.join().unwrap();
        out.sent = sent;
        out.wire_bytes = (0..sent).map(|i| 42 + payload(i).len() as u64).sum();
        out.received = received;
        out.damaged = damaged;
        out
    })
}

#[test]
fn forward_between_ports_in_place() {
    if !privileged() {
        return;
    }
    const N: u64 = 1000;
    let f = forward("fwd", N);
    eprintln!(
        "forward: mode {:?}, sent {}, forwarded {}, received {} ({} damaged), \
         rx offsets {:?}, free chunks {} -> {}, port stats {:?}, kernel {:?}",
        f.mode,
        f.sent,
        f.forwarded,
        f.received.len(),
        f.damaged,
        f.rx_offsets,
        f.free_at_open,
        f.free_at_end,
        f.stats,
        f.kernel
    );
    assert_eq!(f.mode, Some(Mode::Copy), "veth only does copy mode");
    assert_eq!(f.sent, N);
    // Strict: the sender stays at most 64 datagrams ahead of the sink, far
    // below every queue on the way (veth's 256-entry XDP ring, the 2048-entry
    // RX ring, 1024 chunks on the fill ring, the sink's 4 MiB socket buffer),
    // so nothing may be lost.
    assert_eq!(f.damaged, 0, "payloads intact");
    let mut seqs = f.received.clone();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), f.received.len(), "no duplicates");
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "every datagram arrived");
    assert_eq!(f.forwarded, N);
    // Frames land XDP_PACKET_HEADROOM into their chunk: the buffer contract.
    assert!(
        f.rx_offsets.iter().all(|&o| o as usize >= MIN_HEADROOM),
        "{:?}",
        f.rx_offsets
    );
    // No chunk leaked: all back on the free stack or the fill rings.
    assert_eq!(
        f.free_at_end, f.free_at_open,
        "free chunks back to the start"
    );
    assert_eq!(f.fill_levels_at_end, vec![f.fill_target; 2]);
    assert_eq!(f.free_at_open, f.chunks - 2 * f.fill_target as usize);
}

#[test]
fn port_stats_add_up() {
    if !privileged() {
        return;
    }
    const N: u64 = 300;
    let f = forward("stats", N);
    let (p0, p1) = (f.stats[0], f.stats[1]);
    eprintln!(
        "stats: port 0 {p0:?}, port 1 {p1:?}, kernel {:?}, redirect_transit {}",
        f.kernel, f.redirect_transit
    );
    assert_eq!(f.received.len() as u64, N);
    // Everything received on port 0 was ours and went out on port 1.
    assert_eq!(p0.rx_packets, N + f.not_ours);
    assert_eq!(f.not_ours, 0, "only the test's datagrams are transit");
    assert_eq!(p0.rx_bytes, f.wire_bytes);
    assert_eq!(p1.tx_packets, N);
    assert_eq!(p1.tx_bytes, p0.rx_bytes);
    assert_eq!(
        (p0.tx_packets, p0.tx_bytes, p1.rx_packets, p1.rx_bytes),
        (0, 0, 0, 0)
    );
    assert_eq!(p1.tx_ring_full, 0);
    assert_eq!((p0.rx_no_buffer, p1.rx_no_buffer), (0, 0));
    // Copy mode: the kernel transmits only inside sendto, so port 1 needed
    // kicks (at least one per 32 frames); port 0 never transmitted and a
    // copy-mode fill ring never asks for a wake-up.
    assert!(p1.wakeups >= N / 32, "{p1:?}");
    assert_eq!(p0.wakeups, 0);
    // The steering program redirected exactly what the socket received.
    assert_eq!(f.redirect_transit, p0.rx_packets);
    assert_eq!(f.no_socket_pass, 0);
    for k in &f.kernel {
        assert_eq!(
            k.rx_dropped + k.rx_ring_full + k.rx_invalid_descs + k.tx_invalid_descs,
            0,
            "{k:?}"
        );
    }
}

// ---------------------------------------------------------------- TX only

/// Intact payloads' sequence numbers and the number of damaged ones.
type Sunk = (Vec<u64>, usize);

/// Runs `f` on a thread in dut with the sink's UDP sockets (v4 and v6 on
/// `port`) counting on another; returns `f`'s result and what each got.
fn with_sink<T: Send>(
    topo: &Topo,
    port: u16,
    want_v4: usize,
    want_v6: usize,
    f: impl FnOnce() -> T + Send,
) -> (T, Sunk, Sunk) {
    let ready = Gate::new();
    let dut_done = Gate::new();
    let count = AtomicU64::new(0);
    std::thread::scope(|s| {
        let sink = s.spawn(|| {
            let _guard = ready.guard();
            enter(&topo.sink);
            let v4 = udp_bind((SINK_V4, port).into());
            let v6 = udp_bind((SINK_V6, port).into());
            ready.open();
            let limit = Duration::from_secs(10);
            let got4 = receive(&v4, want_v4, limit, &count, &dut_done);
            let got6 = receive(&v6, want_v6, limit, &count, &dut_done);
            (got4, got6)
        });
        let dut = s.spawn(|| {
            // Never opened: breaks when this thread unwinds, so the sink
            // stops waiting for datagrams that will not come.
            let _guard = dut_done.guard();
            enter(&topo.dut);
            assert!(ready.wait(), "sink sockets not ready");
            f()
        });
        let r = dut.join().unwrap();
        let (a, b) = sink.join().unwrap();
        (r, a, b)
    })
}

/// Services `io` until the free-chunk count is `target` (TX completions all
/// back) or 5 s passed.
fn settle(io: &mut AfXdp, target: usize) {
    let start = Instant::now();
    while io.free_chunks() != target && start.elapsed() < Duration::from_secs(5) {
        io.service();
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn alloc_build_and_transmit() {
    if !privileged() {
        return;
    }
    let topo = Topo::new("alloc");
    const V4: u64 = 200;
    const V6: u64 = 100;
    let port = 9001;
    let (report, got4, got6) = with_sink(&topo, port, V4 as usize, V6 as usize, || {
        let cfg = AfXdpConfig {
            bind: BindMode::Copy,
            ..AfXdpConfig::default()
        };
        let mut io = AfXdp::open(&[PortSpec::new("d1", 0)], &cfg).unwrap();
        let initial = io.free_chunks();
        let mut ds: Vec<Desc> = (0..V4)
            .map(|i| build(&mut io, &frame_v4(port, &payload(i))))
            .collect();
        ds.extend((0..V6).map(|i| build(&mut io, &frame_v6(port, &payload(i)))));
        assert_eq!(io.free_chunks(), initial - ds.len());
        // Several chunks at once: disjoint views, a repeated one left out.
        let probe = [ds[0], ds[1], ds[0]];
        let mut views = [None, None, None];
        io.chunks_mut(&probe, &mut views);
        assert!(views[0].is_some() && views[1].is_some() && views[2].is_none());
        assert_eq!(
            views[1].as_ref().unwrap()[MIN_HEADROOM..MIN_HEADROOM + 6],
            MAC_S0
        );
        let mut sent = 0;
        for _ in 0..10_000 {
            sent += io.tx_burst(0, &ds[sent..]);
            io.service();
            if sent == ds.len() {
                break;
            }
        }
        settle(&mut io, initial);
        (sent, io.free_chunks(), initial, io.stats(0), io.mode())
    });
    let (sent, free_end, free_start, stats, mode) = report;
    eprintln!(
        "alloc+tx: mode {mode:?}, sent {sent}, sink got v4 {} v6 {} (damaged {} {}), \
         free chunks {free_start} -> {free_end}, stats {stats:?}",
        got4.0.len(),
        got6.0.len(),
        got4.1,
        got6.1
    );
    assert_eq!(mode, Mode::Copy);
    assert_eq!(sent as u64, V4 + V6);
    assert_eq!((got4.1, got6.1), (0, 0), "payloads intact");
    let mut s4 = got4.0;
    s4.sort_unstable();
    assert_eq!(s4, (0..V4).collect::<Vec<_>>());
    let mut s6 = got6.0;
    s6.sort_unstable();
    assert_eq!(s6, (0..V6).collect::<Vec<_>>());
    assert_eq!(free_end, free_start, "every chunk back after completion");
    assert_eq!(stats.tx_packets, V4 + V6);
}

#[test]
fn ring_full_returns_a_prefix_and_free_restores_the_pool() {
    if !privileged() {
        return;
    }
    let topo = Topo::new("ring");
    const TX_RING: u32 = 64;
    const BURST: usize = 100;
    let port = 9002;
    let (report, got4, _) = with_sink(&topo, port, TX_RING as usize, 0, || {
        let cfg = AfXdpConfig {
            chunks: 512,
            rx_ring: 64,
            tx_ring: TX_RING,
            fill_ring: 64,
            completion_ring: 64,
            bind: BindMode::Auto,
        };
        let mut io = AfXdp::open(&[PortSpec::new("d1", 0)], &cfg).unwrap();
        let initial = io.free_chunks();
        assert_eq!(
            initial,
            512 - 64,
            "fill ring holds min(fill_ring, chunks / 2)"
        );

        let ds: Vec<Desc> = (0..BURST as u64)
            .map(|i| build(&mut io, &frame_v4(port, &payload(i))))
            .collect();
        // No service in between: the TX ring takes exactly its size.
        let taken = io.tx_burst(0, &ds);
        assert_eq!(taken, TX_RING as usize);
        assert_eq!(io.stats(0).tx_ring_full, (BURST - taken) as u64);
        assert_eq!(io.tx_burst(0, &ds[taken..]), 0, "still full");
        io.free(&ds[taken..]);
        // A double free and a foreign descriptor change nothing.
        let before = io.free_chunks();
        io.free(&ds[taken..taken + 1]);
        io.free(&[
            Desc {
                addr: 1 << 40,
                off: 0,
                len: 0,
            },
            Desc {
                addr: 100,
                off: 0,
                len: 0,
            },
        ]);
        assert_eq!(io.free_chunks(), before);
        // Invalid descriptors are never taken.
        let mut bad = io.alloc().unwrap();
        bad.len = (CHUNK_SIZE - MIN_HEADROOM + 1) as u32;
        settle(&mut io, initial - 1);
        assert_eq!(io.tx_burst(0, &[bad]), 0, "packet runs past its chunk");
        bad.len = 0;
        assert_eq!(io.tx_burst(0, &[bad]), 0, "empty packet");
        io.free(&[bad]);
        settle(&mut io, initial);

        // Drain the pool completely, then give it all back.
        let mut all = Vec::new();
        while let Some(d) = io.alloc() {
            all.push(d);
            assert!(all.len() <= 512);
        }
        let drained = all.len();
        io.free(&all);
        (
            taken,
            drained,
            initial,
            io.free_chunks(),
            io.stats(0),
            io.mode(),
        )
    });
    let (taken, drained, initial, free_end, stats, mode) = report;
    eprintln!(
        "ring full: mode {mode:?}, took {taken} of {BURST}, sink got {}, drained {drained}, \
         free {initial} -> {free_end}, stats {stats:?}",
        got4.0.len()
    );
    assert_eq!(mode, Mode::Copy, "Auto falls back to copy on veth");
    assert_eq!(drained, initial);
    assert_eq!(free_end, initial);
    let mut seqs = got4.0;
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..TX_RING as u64).collect::<Vec<_>>(),
        "the taken prefix arrived"
    );
    // 64 frames in copy mode: several sendto calls (the kernel sends a batch
    // per call and answers EAGAIN while more are left).
    assert!(stats.wakeups >= 2, "{stats:?}");
    assert_eq!(stats.tx_packets, TX_RING as u64);
}

#[test]
fn zero_copy_on_veth_is_refused_with_a_clear_error() {
    if !privileged() {
        return;
    }
    let topo = Topo::new("zc");
    let err = with_sink(&topo, 9003, 0, 0, || {
        let cfg = AfXdpConfig {
            bind: BindMode::ZeroCopy,
            ..AfXdpConfig::default()
        };
        AfXdp::open(&[PortSpec::new("d1", 0)], &cfg).err()
    })
    .0
    .expect("veth has no zero-copy AF_XDP");
    let text = err.to_string();
    eprintln!("zero-copy on veth: {text}");
    assert_eq!(err.errno(), Some(libc::EOPNOTSUPP));
    assert!(
        text.contains("bind(XDP_ZEROCOPY)") && text.contains("d1 queue 0"),
        "{text}"
    );
    let missing = with_sink(&topo, 9004, 0, 0, || {
        AfXdp::open(&[PortSpec::new("nosuch0", 0)], &AfXdpConfig::default()).err()
    })
    .0;
    assert!(matches!(
        missing,
        Some(sluice_io::afxdp::Error::UnknownInterface(_))
    ));
}
