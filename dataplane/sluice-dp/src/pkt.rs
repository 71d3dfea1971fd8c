//! Header work the workers do around the ESP engine: Ethernet framing, the
//! inner flow key for the policy lookup, TTL / hop limit, and the ICMP
//! errors for path MTU discovery (RFC 1191, RFC 8201).

use sluice_esp::wire::{checksum_add, checksum_finish};
use sluice_sa_table::FlowKey;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ethernet header length.
pub const ETH_HDR: usize = 14;
/// EtherType IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |x| u16::from_be_bytes([x[0], x[1]]))
}

/// The EtherType of a frame (no VLAN tags are expected on these ports).
pub fn ethertype(frame: &[u8]) -> u16 {
    be16(frame, 12)
}

/// Writes an Ethernet header at `buf[at..at + 14]`.
pub fn write_eth(buf: &mut [u8], at: usize, dst: [u8; 6], src: [u8; 6], ethertype: u16) -> bool {
    let Some(h) = buf.get_mut(at..at + ETH_HDR) else {
        return false;
    };
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(&src);
    h[12..].copy_from_slice(&ethertype.to_be_bytes());
    true
}

/// EtherType for an IP packet by its version nibble.
pub fn ethertype_of(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(6) => ETH_P_IPV6,
        _ => ETH_P_IP,
    }
}

/// What the workers need from an inner IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    /// Flow key for the policy lookup.
    pub flow: FlowKey,
    /// Total length from the IP header.
    pub len: usize,
    /// IPv4 Don't Fragment (always true for IPv6: routers never fragment).
    pub df: bool,
    /// TTL / hop limit.
    pub ttl: u8,
}

/// Parses an IPv4 or IPv6 packet's addresses, protocol and ports (ports
/// only for the first fragment of TCP, UDP and SCTP; ICMP type/code as
/// RFC 4301 §4.4.1.1 suggests are not used as ports here).
pub fn inner(ip: &[u8]) -> Option<Inner> {
    let v = ip.first()? >> 4;
    let (src, dst, proto, l4, len, df, ttl, first_frag) = match v {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl < 20 || ip.len() < ihl {
                return None;
            }
            let len = usize::from(be16(ip, 2));
            let frag = be16(ip, 6);
            (
                IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                ip[9],
                ihl,
                len,
                frag & 0x4000 != 0,
                ip[8],
                frag & 0x1fff == 0,
            )
        }
        6 => {
            if ip.len() < 40 {
                return None;
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                ip[6],
                40,
                40 + usize::from(be16(ip, 4)),
                true,
                ip[7],
                true,
            )
        }
        _ => return None,
    };
    if len > ip.len() || len < l4 {
        return None;
    }
    let (src_port, dst_port) = if first_frag && matches!(proto, 6 | 17 | 132) {
        (be16(ip, l4), be16(ip, l4 + 2))
    } else {
        (0, 0)
    };
    Some(Inner {
        flow: FlowKey {
            src,
            dst,
            proto,
            src_port,
            dst_port,
        },
        len,
        df,
        ttl,
    })
}

/// Decrements the TTL / hop limit of a forwarded packet (RFC 1812 §5.3.1,
/// with the RFC 1624 incremental checksum update); false if it expired.
pub fn decrement_ttl(ip: &mut [u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            if ip[8] <= 1 {
                return false;
            }
            ip[8] -= 1;
            // TTL is the high byte of its 16-bit word: checksum += 0x0100.
            let sum = u32::from(be16(ip, 10)) + 0x0100;
            let sum = (sum & 0xffff) + (sum >> 16);
            ip[10..12].copy_from_slice(&(sum as u16).to_be_bytes());
            true
        }
        Some(6) if ip.len() >= 40 => {
            if ip[7] <= 1 {
                return false;
            }
            ip[7] -= 1;
            true
        }
        _ => false,
    }
}

/// Builds, at `out[0..]`, the ICMP error telling `orig`'s sender that the
/// path MTU is `mtu`: IPv4 "fragmentation needed" (type 3 code 4, RFC 1191)
/// or ICMPv6 "packet too big" (type 2, RFC 4443 §3.2), from `src`, quoting
/// as much of `orig` as fits in 576 / 1280 bytes. Returns the IP packet's
/// length, 0 if it could not be built.
pub fn icmp_too_big(orig: &[u8], mtu: u32, src: IpAddr, out: &mut [u8]) -> usize {
    // `orig` may be cut short (the quote): only its source address is read.
    let sender = match orig.first().map(|b| b >> 4) {
        Some(4) if orig.len() >= 20 => {
            IpAddr::V4(Ipv4Addr::new(orig[12], orig[13], orig[14], orig[15]))
        }
        Some(6) if orig.len() >= 40 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&orig[8..24]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return 0,
    };
    match (src, sender) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let quote = orig.len().min(576 - 28);
            let total = 28 + quote;
            let Some(o) = out.get_mut(..total) else {
                return 0;
            };
            o[..20].fill(0);
            o[0] = 0x45;
            o[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            o[8] = 64;
            o[9] = 1;
            o[12..16].copy_from_slice(&s.octets());
            o[16..20].copy_from_slice(&d.octets());
            let c = checksum_finish(checksum_add(0, &o[..20]));
            o[10..12].copy_from_slice(&c.to_be_bytes());
            o[20] = 3;
            o[21] = 4;
            o[22..28].fill(0);
            o[26..28].copy_from_slice(&(mtu.min(0xffff) as u16).to_be_bytes());
            o[28..].copy_from_slice(&orig[..quote]);
            let c = checksum_finish(checksum_add(0, &o[20..]));
            o[22..24].copy_from_slice(&c.to_be_bytes());
            total
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let quote = orig.len().min(1280 - 48);
            let plen = 8 + quote;
            let total = 40 + plen;
            let Some(o) = out.get_mut(..total) else {
                return 0;
            };
            o[..40].fill(0);
            o[0] = 0x60;
            o[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
            o[6] = 58;
            o[7] = 64;
            o[8..24].copy_from_slice(&s.octets());
            o[24..40].copy_from_slice(&d.octets());
            o[40] = 2;
            o[41] = 0;
            o[42..44].fill(0);
            o[44..48].copy_from_slice(&mtu.to_be_bytes());
            o[48..].copy_from_slice(&orig[..quote]);
            // Pseudo-header (RFC 8200 §8.1): addresses, length, next header.
            let mut sum = checksum_add(0, &o[8..40]);
            sum = checksum_add(sum, &(plen as u32).to_be_bytes());
            sum = checksum_add(sum, &[0, 0, 0, 58]);
            sum = checksum_add(sum, &o[40..]);
            let c = checksum_finish(sum);
            o[42..44].copy_from_slice(&c.to_be_bytes());
            total
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_udp(len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        if df {
            p[6] = 0x40;
        }
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[198, 19, 1, 2]);
        p[16..20].copy_from_slice(&[198, 19, 2, 2]);
        let c = checksum_finish(checksum_add(0, &p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&5000u16.to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p
    }

    #[test]
    fn flow_key_ttl_and_checksum() {
        let mut p = v4_udp(100, true);
        let i = inner(&p).unwrap();
        assert_eq!(
            (i.flow.proto, i.flow.src_port, i.flow.dst_port, i.df),
            (17, 5000, 53, true)
        );
        assert!(decrement_ttl(&mut p));
        assert_eq!(p[8], 63);
        assert_eq!(
            checksum_finish(checksum_add(0, &p[..20])),
            0,
            "checksum still valid"
        );
        p[8] = 1;
        assert!(!decrement_ttl(&mut p));
        assert!(inner(&p[..19]).is_none());
        let mut short = v4_udp(100, false);
        short[2..4].copy_from_slice(&200u16.to_be_bytes());
        assert!(inner(&short).is_none(), "length beyond the buffer");
    }

    #[test]
    fn icmp_errors_verify() {
        let p = v4_udp(1400, true);
        let mut out = [0u8; 1500];
        let n = icmp_too_big(&p, 1358, "198.19.2.1".parse().unwrap(), &mut out);
        assert_eq!(n, 576);
        assert_eq!(checksum_finish(checksum_add(0, &out[..20])), 0);
        assert_eq!(checksum_finish(checksum_add(0, &out[20..n])), 0);
        assert_eq!(u16::from_be_bytes([out[26], out[27]]), 1358);
        assert_eq!(&out[16..20], &[198, 19, 1, 2], "back to the sender");

        let mut v6 = vec![0u8; 1400];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&1360u16.to_be_bytes());
        v6[6] = 17;
        v6[7] = 64;
        v6[8..24].copy_from_slice(&"2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets());
        v6[24..40].copy_from_slice(&"2001:db8:2::2".parse::<Ipv6Addr>().unwrap().octets());
        let n = icmp_too_big(&v6, 1280, "2001:db8:2::1".parse().unwrap(), &mut out);
        assert_eq!(n, 1280);
        let mut sum = checksum_add(0, &out[8..40]);
        sum = checksum_add(sum, &((n - 40) as u32).to_be_bytes());
        sum = checksum_add(sum, &[0, 0, 0, 58]);
        sum = checksum_add(sum, &out[40..n]);
        assert_eq!(checksum_finish(sum), 0);
        assert_eq!(out[40], 2);
    }
}
