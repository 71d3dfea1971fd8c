//! Frame builders, the root check and counter assertions shared by the test files.
#![allow(dead_code, unreachable_pub)]

pub mod xsk;

use std::net::{Ipv4Addr, Ipv6Addr};

use sluice_ebpf::{Class, Role, Steering, Verdict};

pub const ETH_UNICAST: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const ETH_PEER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const ETH_BROADCAST: [u8; 6] = [0xff; 6];

/// True when this process may load XDP programs; prints why a test is skipped otherwise.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        eprintln!("skipped: needs root (CAP_BPF) to load XDP programs");
    }
    euid == 0
}

/// Loads a program instance, or `None` (test skipped) when not root.
pub fn load(role: Role) -> Option<Steering> {
    if !privileged() {
        return None;
    }
    Some(Steering::load(role).unwrap_or_else(|e| panic!("load: {e:?}")))
}

/// Runs `frame`, asserts the verdict and that exactly the counters in `moved` went up by
/// one (and no other).
pub fn expect(s: &Steering, what: &str, frame: &[u8], verdict: Verdict, moved: &[Class]) {
    let before = s.counters().unwrap();
    let got = s
        .test_run(frame)
        .unwrap_or_else(|e| panic!("{what}: test run: {e:?}"));
    let after = s.counters().unwrap();
    assert_eq!(got, verdict, "{what}: verdict");
    // The software twin (DPDK ports) must decide the same.
    let class = moved.iter().find(|c| **c != Class::NoSocketPass);
    if let Some(class) = class {
        let soft = sluice_ebpf::classify(frame, s.role(), |a| s.is_local_addr(a));
        assert_eq!(soft, *class, "{what}: software classifier");
    }
    for class in Class::ALL {
        let want = u64::from(moved.contains(&class));
        let delta = after[class.index()] - before[class.index()];
        assert_eq!(
            delta,
            want,
            "{what}: counter {} moved by {delta}",
            class.name()
        );
    }
}

pub fn eth(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&ETH_PEER);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An 802.1Q/802.1ad tag (after the outer EtherType) followed by `payload`.
pub fn vlan(vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Pads a frame with zeros to `len` bytes, as a NIC does to reach the Ethernet minimum.
pub fn pad(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    if frame.len() < len {
        frame.resize(len, 0);
    }
    frame
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header (IHL 5, TTL 64) + `payload`. `frag` is the flags/fragment-offset field:
/// 0x4000 DF, 0x2000 MF, low 13 bits the offset in 8-byte units.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&0x1234u16.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// IPv6 header (hop limit 64) + `payload`, `next` the first next-header value.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap();
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// A generic IPv6 extension header (hop-by-hop, routing, destination options):
/// `(len8 + 1) * 8` bytes, padded with Pad1 options.
pub fn ext(next: u8, len8: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![next, len8];
    p.resize((usize::from(len8) + 1) * 8, 0);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 fragment header (RFC 8200 §4.5) + `payload`; `offset` in bytes (multiple of 8).
pub fn frag6(next: u8, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let field = (offset & !7) | u16::from(more);
    let mut p = vec![next, 0];
    p.extend_from_slice(&field.to_be_bytes());
    p.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// UDP header (checksum 0: the program does not look at it) + `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap();
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// A private network namespace `sluice-ebpf-test-<pid>-<tag>`, deleted (with its veths)
/// on drop, also when the test panics.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("sluice-ebpf-test-{}-{tag}", std::process::id());
        // A leftover from a crashed run with the same pid would make `add` fail.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        run_ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// `ip -n <ns> <args>`; panics on failure.
    pub fn ip(&self, args: &str) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args.split_whitespace());
        run_ip(&all)
    }

    /// Moves the calling thread into the namespace until the guard drops.
    pub fn enter(&self) -> Entered {
        let orig = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        let target = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
        setns(&target);
        Entered { orig }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The thread is in a test namespace; dropping returns it to where it was.
pub struct Entered {
    orig: std::fs::File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        setns(&self.orig);
    }
}

fn setns(ns: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `ns` is an open namespace file; setns only changes this thread's network
    // namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn run_ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
