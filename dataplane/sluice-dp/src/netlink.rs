//! The kernel's interfaces, addresses, routes and neighbours, read with
//! rtnetlink dumps (RFC 3549) over a raw NETLINK_ROUTE socket.
//!
//! The data plane forwards with the namespace's own routing and neighbour
//! tables: a control thread dumps them when the kernel announces a change
//! (a [`Watch`] on the link, address, route and neighbour groups; a
//! neighbour the data plane asked for is usable a tick after the kernel
//! resolved it) and once a second in any case, and publishes a
//! [`crate::fib::Fib`] snapshot that workers read without locks. A dump of
//! a small table costs a few tens of microseconds.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const RTM_GETADDR: u16 = 22;
const RTM_NEWADDR: u16 = 20;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWNEIGH: u16 = 28;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;
/// Neighbour states with a usable link-layer address.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// An interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MAC address (zero for interfaces without one).
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: u32,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// Interface index.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

/// A unicast route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpAddr,
    /// Prefix length.
    pub len: u8,
    /// Output interface.
    pub oif: u32,
    /// Gateway, `None` for a directly connected prefix.
    pub gateway: Option<IpAddr>,
    /// Metric (lower wins among equal prefixes).
    pub metric: u32,
}

/// A resolved neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface index.
    pub index: u32,
    /// IP address.
    pub addr: IpAddr,
    /// Its MAC address.
    pub mac: [u8; 6],
}

/// Everything a dump returned.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Interfaces.
    pub links: Vec<Link>,
    /// Addresses.
    pub addrs: Vec<Addr>,
    /// Routes (main table, unicast).
    pub routes: Vec<Route>,
    /// Neighbours in a usable state.
    pub neighbours: Vec<Neighbour>,
}

/// A NETLINK_ROUTE socket for dumps.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn ip(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (family as i32, b.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        (libc::AF_INET6, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// The attributes (type, payload) after a fixed header of `fixed` bytes.
fn attrs(body: &[u8], fixed: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = body.get(fixed..).unwrap_or(&[]);
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let payload = &rest[4..len];
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

fn u32_of(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

/// A NETLINK_ROUTE socket (in the calling thread's network namespace),
/// with `flags` (e.g. `SOCK_NONBLOCK`) besides close-on-exec.
fn route_socket(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// recv(2) into `buf`: the bytes read, or a negative value (errno set).
fn recv(fd: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> isize {
    // SAFETY: recv into a buffer we borrow mutably, of its length.
    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) }
}

impl Netlink {
    /// Opens the socket (in the calling thread's network namespace).
    pub fn open() -> io::Result<Netlink> {
        Ok(Netlink {
            fd: route_socket(0)?,
            seq: 1,
            buf: vec![0; 1 << 16],
        })
    }

    /// Dumps one table; `handle` gets (message type, body) of each reply.
    fn dump(
        &mut self,
        ty: u16,
        family: u8,
        fixed: usize,
        mut handle: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDR + fixed;
        let mut req = vec![0u8; len];
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&ty.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        req[NLMSG_HDR] = family;
        // SAFETY: req is a valid buffer of len bytes; the kernel address is
        // the zeroed sockaddr_nl default (pid 0 = kernel).
        let sent = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let n = recv(&self.fd, &mut self.buf, 0);
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut msgs = &self.buf[..n as usize];
            while msgs.len() >= NLMSG_HDR {
                let mlen = u32_of(msgs).unwrap_or(0) as usize;
                let mty = u16::from_ne_bytes([msgs[4], msgs[5]]);
                let mseq = u32_of(&msgs[8..]).unwrap_or(0);
                if mlen < NLMSG_HDR || mlen > msgs.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "netlink: bad length",
                    ));
                }
                if mseq == self.seq {
                    match mty {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let code = msgs
                                .get(NLMSG_HDR..NLMSG_HDR + 4)
                                .and_then(|b| b.try_into().ok())
                                .map_or(0, i32::from_ne_bytes);
                            if code != 0 {
                                return Err(io::Error::from_raw_os_error(-code));
                            }
                            return Ok(());
                        }
                        _ => handle(mty, &msgs[NLMSG_HDR..mlen]),
                    }
                }
                msgs = msgs.get((mlen + 3) & !3..).unwrap_or(&[]);
            }
        }
    }

    /// Dumps interfaces, addresses, main-table unicast routes and usable
    /// neighbours.
    pub fn tables(&mut self) -> io::Result<Tables> {
        let mut t = Tables::default();
        self.dump(RTM_GETLINK, libc::AF_UNSPEC as u8, 16, |ty, b| {
            if ty != RTM_NEWLINK || b.len() < 16 {
                return;
            }
            let index = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as u32;
            let mut l = Link {
                index,
                name: String::new(),
                mac: [0; 6],
                mtu: 1500,
            };
            for (a, p) in attrs(b, 16) {
                match a {
                    IFLA_IFNAME => {
                        l.name = String::from_utf8_lossy(p.split(|c| *c == 0).next().unwrap_or(&[]))
                            .into_owned()
                    }
                    IFLA_ADDRESS if p.len() == 6 => l.mac.copy_from_slice(p),
                    IFLA_MTU => l.mtu = u32_of(p).unwrap_or(1500),
                    _ => {}
                }
            }
            t.links.push(l);
        })?;
        self.dump(RTM_GETADDR, libc::AF_UNSPEC as u8, 8, |ty, b| {
            if ty != RTM_NEWADDR || b.len() < 8 {
                return;
            }
            let (family, len) = (b[0], b[1]);
            let index = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            let mut local = None;
            let mut address = None;
            for (a, p) in attrs(b, 8) {
                match a {
                    IFA_LOCAL => local = ip(family, p),
                    IFA_ADDRESS => address = ip(family, p),
                    _ => {}
                }
            }
            if let Some(addr) = local.or(address) {
                t.addrs.push(Addr { index, addr, len });
            }
        })?;
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            self.dump(RTM_GETROUTE, family, 12, |ty, b| {
                if ty != RTM_NEWROUTE || b.len() < 12 || b[7] != RTN_UNICAST {
                    return;
                }
                let (fam, len) = (b[0], b[1]);
                let mut table = u32::from(b[4]);
                let mut r = Route {
                    dst: if fam as i32 == libc::AF_INET {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    },
                    len,
                    oif: 0,
                    gateway: None,
                    metric: 0,
                };
                for (a, p) in attrs(b, 12) {
                    match a {
                        RTA_DST => {
                            if let Some(d) = ip(fam, p) {
                                r.dst = d;
                            }
                        }
                        RTA_OIF => r.oif = u32_of(p).unwrap_or(0),
                        RTA_GATEWAY => r.gateway = ip(fam, p),
                        RTA_PRIORITY => r.metric = u32_of(p).unwrap_or(0),
                        RTA_TABLE => table = u32_of(p).unwrap_or(table),
                        _ => {}
                    }
                }
                if table == RT_TABLE_MAIN && r.oif != 0 {
                    t.routes.push(r);
                }
            })?;
        }
        self.dump(RTM_GETNEIGH, libc::AF_UNSPEC as u8, 12, |ty, b| {
            if ty != RTM_NEWNEIGH || b.len() < 12 {
                return;
            }
            let family = b[0];
            let index = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as u32;
            let state = u16::from_ne_bytes([b[8], b[9]]);
            if state & NUD_USABLE == 0 {
                return;
            }
            let mut addr = None;
            let mut mac = None;
            for (a, p) in attrs(b, 12) {
                match a {
                    NDA_DST => addr = ip(family, p),
                    NDA_LLADDR if p.len() == 6 => {
                        let mut m = [0u8; 6];
                        m.copy_from_slice(p);
                        mac = Some(m);
                    }
                    _ => {}
                }
            }
            if let (Some(addr), Some(mac)) = (addr, mac) {
                t.neighbours.push(Neighbour { index, addr, mac });
            }
        })?;
        Ok(t)
    }
}

/// Multicast groups (`RTMGRP_*`, linux/rtnetlink.h) whose announcements
/// change what [`Netlink::tables`] returns: links, IPv4 and IPv6
/// addresses and routes, neighbours.
const WATCHED_GROUPS: u32 = 0x1 | 0x4 | 0x10 | 0x40 | 0x100 | 0x400;

/// A non-blocking rtnetlink socket subscribed to the kernel's change
/// announcements: tells the control thread when a dump is worth taking.
#[derive(Debug)]
pub struct Watch {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Watch {
    /// Subscribes (in the calling thread's network namespace).
    pub fn open() -> io::Result<Watch> {
        let fd = route_socket(libc::SOCK_NONBLOCK)?;
        // SAFETY: a zeroed sockaddr_nl is valid; bind reads exactly its size.
        let rc = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            sa.nl_groups = WATCHED_GROUPS;
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Watch {
            fd,
            buf: vec![0; 1 << 16],
        })
    }

    /// Whether the kernel announced a change since the last call (all
    /// pending announcements are read). A socket that overflowed (the
    /// kernel dropped announcements) counts as a change too.
    pub fn changed(&mut self) -> bool {
        let mut any = false;
        loop {
            let n = recv(&self.fd, &mut self.buf, libc::MSG_DONTWAIT);
            if n > 0 {
                any = true;
                continue;
            }
            if n == 0 {
                return any;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => any = true,
                _ => return any,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_walk_stops_at_garbage() {
        // Two attributes (4-byte aligned), then a truncated one.
        let mut b = vec![0u8; 4];
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&4u16.to_ne_bytes());
        b.extend_from_slice(&1500u32.to_ne_bytes());
        b.extend_from_slice(&5u16.to_ne_bytes());
        b.extend_from_slice(&3u16.to_ne_bytes());
        b.extend_from_slice(&[b'x', 0, 0, 0]);
        b.extend_from_slice(&200u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        let got: Vec<(u16, Vec<u8>)> = attrs(&b, 4).map(|(t, p)| (t, p.to_vec())).collect();
        assert_eq!(
            got,
            vec![(4, 1500u32.to_ne_bytes().to_vec()), (3, vec![b'x'])]
        );
    }

    #[test]
    fn the_loopback_interface_is_in_every_dump() {
        let Ok(mut nl) = Netlink::open() else {
            eprintln!("skipped: no netlink socket here");
            return;
        };
        let t = nl.tables().unwrap();
        let lo = t.links.iter().find(|l| l.name == "lo").unwrap();
        assert!(t
            .addrs
            .iter()
            .any(|a| a.index == lo.index && a.addr == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    /// The watch sees a neighbour the kernel learns, and nothing while
    /// nothing changes. Runs in a network namespace of its own.
    #[test]
    fn a_watch_sees_a_new_neighbour() {
        use std::os::fd::AsRawFd as _;
        use std::process::Command;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (creates a network namespace)");
            return;
        }
        struct Ns(String);
        impl Drop for Ns {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let ns = Ns(format!("sl-nlw{}-", std::process::id()));
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .arg("-n")
                .arg(&ns.0)
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {args:?}");
        };
        assert!(Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .is_ok_and(|s| s.success()));
        ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        ip(&["link", "set", "d0", "up"]);
        // The watch is opened in the namespace from a thread that moved
        // there (namespaces are per thread); the socket stays in it.
        let path = format!("/run/netns/{}", ns.0);
        let mut w = std::thread::spawn(move || {
            let f = std::fs::File::open(path).unwrap();
            // SAFETY: an open namespace file; only this thread moves.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
            Watch::open().unwrap()
        })
        .join()
        .unwrap();
        assert!(!w.changed(), "nothing changed since it opened");
        ip(&[
            "neigh",
            "add",
            "198.18.7.9",
            "lladdr",
            "02:00:00:00:07:09",
            "dev",
            "d0",
        ]);
        let mut seen = false;
        for _ in 0..100 {
            if w.changed() {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(seen, "no announcement of the new neighbour within 1 s");
        assert!(!w.changed(), "one change is reported once");
    }
}
