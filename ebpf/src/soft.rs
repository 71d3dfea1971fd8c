//! The steering program's decision in Rust, for ports no XDP program sees: a
//! DPDK port's worker classifies what it receives with [`classify`] and hands
//! the [`Action::Pass`] classes to the kernel through its exception (TAP) port.
//!
//! It must agree with `steer.bpf.c` frame for frame: the tests in
//! `tests/steer.rs` run every frame they build through both (and a few
//! thousand mutated ones), and compare the class.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Class, Role};

const ETH_HDR: usize = 14;
/// IPv6 extension headers walked before giving up (`STEER_MAX_EXT_HDRS`).
const MAX_EXT_HDRS: usize = 4;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;
const PROTO_UDP: u8 = 17;
const PROTO_ESP: u8 = 50;
const PROTO_ICMPV6: u8 = 58;

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

/// The class of Ethernet frame `frame` received on an interface of `role`,
/// `is_local` saying which addresses are the appliance's own: the class the
/// XDP program would count, and by its [`Class::action`] where it goes.
pub fn classify(frame: &[u8], role: Role, is_local: impl Fn(IpAddr) -> bool) -> Class {
    let Some(mut proto) = be16(frame, 12) else {
        return Class::PassMalformed;
    };
    let l2_group = frame[0] & 1 != 0;
    let mut l3 = ETH_HDR;
    if proto == 0x8100 || proto == 0x88a8 {
        let Some(inner) = be16(frame, l3 + 2) else {
            return Class::PassMalformed;
        };
        proto = inner;
        l3 += 4;
    }
    match proto {
        0x0806 => Class::PassArp,
        0x0800 => ipv4(frame, l3, role, l2_group, &is_local),
        0x86dd => ipv6(frame, l3, role, l2_group, &is_local),
        _ => Class::PassNonIp,
    }
}

fn transit(role: Role) -> Class {
    match role {
        Role::Inside => Class::RedirectTransit,
        Role::Outside => Class::PassTransitOutside,
    }
}

fn ipv4(
    f: &[u8],
    l3: usize,
    role: Role,
    l2_group: bool,
    is_local: &dyn Fn(IpAddr) -> bool,
) -> Class {
    let Some(h) = f.get(l3..l3 + 20) else {
        return Class::PassMalformed;
    };
    let ihl = usize::from(h[0] & 0x0f);
    if h[0] >> 4 != 4 || ihl < 5 {
        return Class::PassMalformed;
    }
    let hlen = ihl * 4;
    if usize::from(u16::from_be_bytes([h[2], h[3]])) < hlen {
        return Class::PassMalformed;
    }
    let l4 = l3 + hlen;
    if l4 > f.len() {
        return Class::PassMalformed;
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Class::PassFragment;
    }
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    if !is_local(IpAddr::V4(dst)) {
        let o = dst.octets();
        if l2_group
            || o[0] & 0xf0 == 0xe0
            || dst == Ipv4Addr::BROADCAST
            || (o[0] == 169 && o[1] == 254)
            || o[0] == 0
            || o[0] == 127
        {
            return Class::PassLinkScope;
        }
        return transit(role);
    }
    match h[9] {
        PROTO_ESP => Class::RedirectEsp,
        PROTO_UDP => udp(f, l4),
        _ => Class::PassLocalOther,
    }
}

fn ipv6(
    f: &[u8],
    l3: usize,
    role: Role,
    l2_group: bool,
    is_local: &dyn Fn(IpAddr) -> bool,
) -> Class {
    let Some(h) = f.get(l3..l3 + 40) else {
        return Class::PassMalformed;
    };
    if h[0] >> 4 != 6 {
        return Class::PassMalformed;
    }
    let ext = |n: u8| n == NEXTHDR_HOP || n == NEXTHDR_ROUTING || n == NEXTHDR_DEST;
    let mut next = h[6];
    let mut off = 40usize;
    for _ in 0..MAX_EXT_HDRS {
        if !ext(next) {
            break;
        }
        let (Some(&n), Some(&len8)) = (f.get(l3 + off), f.get(l3 + off + 1)) else {
            return Class::PassMalformed;
        };
        next = n;
        off = (off + (usize::from(len8) + 1) * 8) & 0x3fff;
    }
    if next == NEXTHDR_FRAGMENT {
        return Class::PassFragment;
    }
    if ext(next) {
        return Class::PassMalformed;
    }
    let l4 = l3 + off;
    if l4 > f.len() {
        return Class::PassMalformed;
    }
    if next == PROTO_ICMPV6 {
        let Some(&t) = f.get(l4) else {
            return Class::PassMalformed;
        };
        if (133..=137).contains(&t) {
            return Class::PassNd;
        }
    }
    let mut d = [0u8; 16];
    d.copy_from_slice(&h[24..40]);
    let dst = Ipv6Addr::from(d);
    if !is_local(IpAddr::V6(dst)) {
        if l2_group || d[0] == 0xff || (d[0] == 0xfe && d[1] & 0xc0 == 0x80) {
            return Class::PassLinkScope;
        }
        return transit(role);
    }
    match next {
        PROTO_ESP => Class::RedirectEsp,
        PROTO_UDP => udp(f, l4),
        _ => Class::PassLocalOther,
    }
}

/// UDP to the appliance at `l4`: IKE, a NAT-T keepalive or ESP-in-UDP
/// (RFC 3948), judged by the UDP length, not the frame's (short frames are
/// padded).
fn udp(f: &[u8], l4: usize) -> Class {
    let (Some(dport), Some(ulen)) = (be16(f, l4 + 2), be16(f, l4 + 4)) else {
        return Class::PassMalformed;
    };
    if l4 + 8 > f.len() {
        return Class::PassMalformed;
    }
    let Some(plen) = usize::from(ulen).checked_sub(8) else {
        return Class::PassMalformed;
    };
    if dport == 500 {
        return Class::PassIke;
    }
    if dport != 4500 {
        return Class::PassLocalOther;
    }
    let p = l4 + 8;
    if plen == 1 {
        return match f.get(p) {
            Some(0xff) => Class::PassNattKeepalive,
            _ => Class::PassMalformed,
        };
    }
    let Some(marker) = f.get(p..p + 4).filter(|_| plen >= 4) else {
        return Class::PassMalformed;
    };
    if marker == [0, 0, 0, 0] {
        return Class::PassIke;
    }
    if plen < 8 || p + 8 > f.len() {
        return Class::PassMalformed;
    }
    Class::RedirectEspUdp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_and_empty_frames_do_not_panic() {
        for n in 0..80 {
            let f = vec![0x86; n];
            let _ = classify(&f, Role::Inside, |_| true);
            let _ = classify(&f, Role::Outside, |_| false);
        }
        assert_eq!(classify(&[], Role::Inside, |_| true), Class::PassMalformed);
    }
}
