//! A snapshot of the namespace's forwarding state, as workers read it: the
//! next hop (interface, gateway, MAC) for a destination by longest prefix
//! match over the main table, and the appliance's own addresses. Built by
//! the control thread from netlink dumps and swapped in whole; workers
//! never wait for it.

use crate::netlink::{Link, Tables};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// Where a packet to some destination goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Output interface index.
    pub oif: u32,
    /// The address whose MAC is needed: the gateway, or the destination
    /// itself on a connected prefix.
    pub via: IpAddr,
    /// `via`'s MAC, if the kernel has resolved it.
    pub mac: Option<[u8; 6]>,
    /// The output interface's own MAC.
    pub src_mac: [u8; 6],
    /// The output interface's MTU.
    pub mtu: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    net: u128,
    mask: u128,
    len: u8,
    metric: u32,
    oif: u32,
    gateway: Option<IpAddr>,
}

/// Forwarding state at one moment.
#[derive(Debug, Default)]
pub struct Fib {
    links: HashMap<u32, Link>,
    v4: Vec<Entry>,
    v6: Vec<Entry>,
    neigh: HashMap<(u32, IpAddr), [u8; 6]>,
    local: HashSet<IpAddr>,
    /// First address of each family per interface (ICMP error sources).
    if_addr: HashMap<(u32, bool), IpAddr>,
}

fn key(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v) => (true, u128::from(u32::from(v))),
        IpAddr::V6(v) => (false, u128::from(v)),
    }
}

fn mask(v4: bool, len: u8) -> u128 {
    let bits: u32 = if v4 { 32 } else { 128 };
    let ones = if v4 { u128::from(u32::MAX) } else { u128::MAX };
    let len = u32::from(len).min(bits);
    ones & !ones.checked_shr(len).unwrap_or(0)
}

impl Fib {
    /// Builds the snapshot from a dump.
    pub fn new(t: &Tables) -> Fib {
        let mut f = Fib::default();
        for l in &t.links {
            f.links.insert(l.index, l.clone());
        }
        for r in &t.routes {
            let (v4, net) = key(r.dst);
            let m = mask(v4, r.len);
            let e = Entry {
                net: net & m,
                mask: m,
                len: r.len,
                metric: r.metric,
                oif: r.oif,
                gateway: r.gateway,
            };
            if v4 {
                f.v4.push(e);
            } else {
                f.v6.push(e);
            }
        }
        for v in [&mut f.v4, &mut f.v6] {
            v.sort_by(|a, b| b.len.cmp(&a.len).then(a.metric.cmp(&b.metric)));
        }
        for n in &t.neighbours {
            f.neigh.insert((n.index, n.addr), n.mac);
        }
        for a in &t.addrs {
            f.local.insert(a.addr);
            f.if_addr
                .entry((a.index, a.addr.is_ipv4()))
                .or_insert(a.addr);
        }
        f
    }

    /// The next hop towards `dst` (longest prefix, then lowest metric).
    pub fn route(&self, dst: IpAddr) -> Option<NextHop> {
        let (v4, k) = key(dst);
        let table = if v4 { &self.v4 } else { &self.v6 };
        let e = table.iter().find(|e| k & e.mask == e.net)?;
        let link = self.links.get(&e.oif)?;
        let via = e.gateway.unwrap_or(dst);
        Some(NextHop {
            oif: e.oif,
            via,
            mac: self.neigh.get(&(e.oif, via)).copied(),
            src_mac: link.mac,
            mtu: link.mtu,
        })
    }

    /// Whether `a` is one of the appliance's addresses.
    pub fn is_local(&self, a: IpAddr) -> bool {
        self.local.contains(&a)
    }

    /// An address of the interface in `a`'s family (for ICMP errors).
    pub fn if_addr(&self, index: u32, v4: bool) -> Option<IpAddr> {
        self.if_addr.get(&(index, v4)).copied()
    }

    /// The interface with index `index`.
    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.get(&index)
    }

    /// The interface called `name`.
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|l| l.name == name)
    }

    /// The appliance's addresses on one interface.
    pub fn addrs_of(&self, index: u32) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .if_addr
            .iter()
            .filter(|((i, _), _)| *i == index)
            .map(|(_, a)| *a)
            .collect();
        v.sort();
        v
    }

    /// All of the appliance's addresses.
    pub fn local_addrs(&self) -> impl Iterator<Item = &IpAddr> {
        self.local.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Addr, Neighbour, Route};

    fn tables() -> Tables {
        let l = |index, name: &str, mac| Link {
            index,
            name: name.into(),
            mac,
            mtu: 1500,
        };
        let r = |dst: &str, len, oif, gw: Option<&str>, metric| Route {
            dst: dst.parse().unwrap(),
            len,
            oif,
            gateway: gw.map(|g| g.parse().unwrap()),
            metric,
        };
        Tables {
            links: vec![
                l(2, "out0", [2, 0, 0, 0, 0, 2]),
                l(3, "in0", [2, 0, 0, 0, 0, 3]),
            ],
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
                Addr {
                    index: 3,
                    addr: "2001:db8:2::1".parse().unwrap(),
                    len: 64,
                },
            ],
            routes: vec![
                r("0.0.0.0", 0, 2, Some("198.18.0.1"), 0),
                r("198.18.0.0", 24, 2, None, 0),
                r("198.19.2.0", 24, 3, None, 0),
                r("198.19.0.0", 16, 2, Some("198.18.0.9"), 0),
                r("198.19.0.0", 16, 3, Some("198.19.2.9"), 10),
                r("2001:db8:2::", 64, 3, None, 256),
                r("::", 0, 2, Some("2001:db8::1"), 1024),
            ],
            neighbours: vec![
                Neighbour {
                    index: 2,
                    addr: "198.18.0.1".parse().unwrap(),
                    mac: [0xa; 6],
                },
                Neighbour {
                    index: 3,
                    addr: "198.19.2.2".parse().unwrap(),
                    mac: [0xb; 6],
                },
            ],
        }
    }

    #[test]
    fn longest_prefix_then_metric_and_neighbours() {
        let f = Fib::new(&tables());
        let h = f.route("198.19.2.2".parse().unwrap()).unwrap();
        assert_eq!((h.oif, h.mac, h.src_mac[5]), (3, Some([0xb; 6]), 3));
        let h = f.route("198.19.7.7".parse().unwrap()).unwrap();
        assert_eq!(
            (h.oif, h.via),
            (2, "198.18.0.9".parse().unwrap()),
            "metric 0 wins"
        );
        assert_eq!(h.mac, None, "gateway not resolved");
        let h = f.route("203.0.113.1".parse().unwrap()).unwrap();
        assert_eq!((h.oif, h.mac), (2, Some([0xa; 6])), "default route");
        let h = f.route("2001:db8:2::5".parse().unwrap()).unwrap();
        assert_eq!(h.oif, 3);
        let h = f.route("2001:db8:9::5".parse().unwrap()).unwrap();
        assert_eq!(h.via, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert!(f.is_local("198.18.0.2".parse().unwrap()));
        assert_eq!(f.if_addr(3, false), Some("2001:db8:2::1".parse().unwrap()));
        assert_eq!(mask(true, 24), 0xffff_ff00);
        assert_eq!(mask(false, 0), 0);
        assert_eq!(mask(false, 128), u128::MAX);
        assert_eq!(mask(true, 32), 0xffff_ffff);
    }
}
