#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Every packet class of the XDP steering program, IPv4 and IPv6, run through
//! `BPF_PROG_TEST_RUN`: the verdict and exactly which counters moved.
//!
//! No AF_XDP socket is bound in these runs (except in `real_xsk_*` at the end), so ESP,
//! ESP-in-UDP and inside transit come back as `XDP_PASS` with both their `redirect_*`
//! counter and `no_socket_pass` moved.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN); skips with a message otherwise. Network
//! namespaces are named `sluice-ebpf-test-<pid>-<tag>` and deleted on drop; addresses
//! come from 198.18.0.0/15 and 2001:db8::/32 only.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::xsk::{send_raw, Xsk};
use common::*;
use sluice_ebpf::{Action, AttachMode, Class, Role, Verdict};

const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const TRANSIT4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const TRANSIT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);

const ESP_PAYLOAD: [u8; 24] = [
    0x00, 0x00, 0x10, 0x01, // SPI
    0x00, 0x00, 0x00, 0x01, // sequence number
    0xaa, 0xaa, 0xaa, 0xaa, 0xbb, 0xbb, 0xbb, 0xbb, 0xcc, 0xcc, 0xcc, 0xcc, 0xdd, 0xdd, 0xdd, 0xdd,
];
/// An IKE header's first bytes (SPIi), enough for the classifier.
const IKE_PAYLOAD: [u8; 28] = [0x11; 28];

#[derive(Clone, Copy, Debug)]
enum Fam {
    V4,
    V6,
}

const BOTH: [Fam; 2] = [Fam::V4, Fam::V6];

impl Fam {
    fn local(self) -> IpAddr {
        match self {
            Fam::V4 => LOCAL4.into(),
            Fam::V6 => LOCAL6.into(),
        }
    }
    fn transit(self) -> IpAddr {
        match self {
            Fam::V4 => TRANSIT4.into(),
            Fam::V6 => TRANSIT6.into(),
        }
    }
    /// IPv4 protocol / IPv6 next header of an echo request.
    fn icmp(self) -> (u8, [u8; 8]) {
        match self {
            Fam::V4 => (1, [8, 0, 0, 0, 0, 1, 0, 1]),
            Fam::V6 => (58, [128, 0, 0, 0, 0, 1, 0, 1]),
        }
    }
}

/// An IP packet from the peer to `dst` in an Ethernet frame to our unicast MAC.
fn ip(dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match dst {
        IpAddr::V4(d) => eth(ETH_UNICAST, 0x0800, &ipv4(PEER4, d, proto, 0, l4)),
        IpAddr::V6(d) => eth(ETH_UNICAST, 0x86dd, &ipv6(PEER6, d, proto, l4)),
    }
}

fn loaded(role: Role) -> Option<sluice_ebpf::Steering> {
    let mut steering = load(role)?;
    steering.add_local_addr(LOCAL4.into()).unwrap();
    steering.add_local_addr(LOCAL6.into()).unwrap();
    Some(steering)
}

/// No socket is bound: a redirect class comes back as PASS plus `no_socket_pass`.
fn expect_redirect_unbound(s: &sluice_ebpf::Steering, what: &str, frame: &[u8], class: Class) {
    assert_eq!(class.action(), Action::Redirect);
    expect(s, what, frame, Verdict::Pass, &[class, Class::NoSocketPass]);
}

fn expect_pass(s: &sluice_ebpf::Steering, what: &str, frame: &[u8], class: Class) {
    assert_eq!(class.action(), Action::Pass);
    expect(s, what, frame, Verdict::Pass, &[class]);
}

#[test]
fn counters_start_at_zero_and_match_the_c_enum() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    assert_eq!(s.counters().unwrap(), [0; Class::COUNT]);
    assert_eq!(Class::COUNT, 14);
    let mut names: Vec<_> = Class::ALL.iter().map(|c| c.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Class::COUNT);
}

#[test]
fn ike_udp_500() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    for fam in BOTH {
        let frame = ip(fam.local(), 17, &udp(500, 500, &IKE_PAYLOAD));
        expect_pass(&s, &format!("{fam:?} IKE 500"), &frame, Class::PassIke);
    }
}

#[test]
fn ike_udp_4500_with_non_esp_marker() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    let mut payload = vec![0, 0, 0, 0];
    payload.extend_from_slice(&IKE_PAYLOAD);
    for fam in BOTH {
        let frame = ip(fam.local(), 17, &udp(4500, 4500, &payload));
        expect_pass(&s, &format!("{fam:?} IKE 4500"), &frame, Class::PassIke);
        // The bare marker (a zero-length IKE message) is still not ESP.
        let frame = ip(fam.local(), 17, &udp(4500, 4500, &[0, 0, 0, 0]));
        expect_pass(&s, &format!("{fam:?} marker only"), &frame, Class::PassIke);
    }
}

#[test]
fn natt_keepalive() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    for fam in BOTH {
        let frame = ip(fam.local(), 17, &udp(4500, 4500, &[0xff]));
        expect_pass(
            &s,
            &format!("{fam:?} keepalive"),
            &frame,
            Class::PassNattKeepalive,
        );
        // On the wire a short frame carries Ethernet padding: the UDP length decides.
        let frame = pad(frame, 60);
        expect_pass(
            &s,
            &format!("{fam:?} padded keepalive"),
            &frame,
            Class::PassNattKeepalive,
        );
    }
}

#[test]
fn arp_plain_and_vlan_tagged() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    let arp = [0u8; 28];
    expect_pass(&s, "ARP", &eth(ETH_BROADCAST, 0x0806, &arp), Class::PassArp);
    let frame = eth(ETH_BROADCAST, 0x8100, &vlan(7, 0x0806, &arp));
    expect_pass(&s, "802.1Q ARP", &frame, Class::PassArp);
}

#[test]
fn neighbour_discovery_whatever_the_destination() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    let solicited: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    for icmp_type in 133u8..=137 {
        let nd = [
            icmp_type, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        for dst in [IpAddr::from(solicited), Fam::V6.local(), Fam::V6.transit()] {
            let mac = if dst == IpAddr::from(solicited) {
                [0x33, 0x33, 0xff, 0, 0, 1]
            } else {
                ETH_UNICAST
            };
            let IpAddr::V6(d) = dst else { unreachable!() };
            let frame = eth(mac, 0x86dd, &ipv6(PEER6, d, 58, &nd));
            expect_pass(
                &s,
                &format!("ND type {icmp_type} to {dst}"),
                &frame,
                Class::PassNd,
            );
        }
    }
    // ND behind a hop-by-hop header is still ND.
    let nd = [
        135u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let frame = eth(
        ETH_UNICAST,
        0x86dd,
        &ipv6(PEER6, LOCAL6, 0, &ext(58, 0, &nd)),
    );
    expect_pass(&s, "ND after hop-by-hop", &frame, Class::PassNd);
    // Other ICMPv6 to the appliance is local traffic.
    let (proto, echo) = Fam::V6.icmp();
    expect_pass(
        &s,
        "echo",
        &ip(Fam::V6.local(), proto, &echo),
        Class::PassLocalOther,
    );
    // Types either side of the ND range are not ND.
    for icmp_type in [132u8, 138] {
        let msg = [icmp_type, 0, 0, 0, 0, 0, 0, 0];
        expect_pass(
            &s,
            &format!("ICMPv6 {icmp_type}"),
            &ip(Fam::V6.local(), 58, &msg),
            Class::PassLocalOther,
        );
    }
}

#[test]
fn ipv4_fragments() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    const MF: u16 = 0x2000;
    let first = udp(500, 500, &IKE_PAYLOAD);
    for (what, dst, proto, frag, l4) in [
        ("first fragment of IKE", LOCAL4, 17, MF, &first[..]),
        ("non-first fragment", LOCAL4, 17, 185, &IKE_PAYLOAD[..]),
        ("last fragment of ESP", LOCAL4, 50, 100, &ESP_PAYLOAD[..]),
        ("first fragment of ESP", LOCAL4, 50, MF, &ESP_PAYLOAD[..]),
        (
            "transit fragment on inside",
            TRANSIT4,
            6,
            MF | 3,
            &IKE_PAYLOAD[..],
        ),
    ] {
        let frame = eth(ETH_UNICAST, 0x0800, &ipv4(PEER4, dst, proto, frag, l4));
        expect_pass(&s, what, &frame, Class::PassFragment);
    }
    // DF alone is not a fragment.
    let frame = eth(
        ETH_UNICAST,
        0x0800,
        &ipv4(PEER4, LOCAL4, 50, 0x4000, &ESP_PAYLOAD),
    );
    expect_redirect_unbound(&s, "DF ESP", &frame, Class::RedirectEsp);
}

#[test]
fn ipv6_fragments() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    let first = udp(500, 500, &IKE_PAYLOAD);
    for (what, dst, frag_hdr) in [
        ("first fragment of IKE", LOCAL6, frag6(17, 0, true, &first)),
        (
            "non-first fragment",
            LOCAL6,
            frag6(17, 1480, false, &IKE_PAYLOAD),
        ),
        ("ESP fragment", LOCAL6, frag6(50, 0, true, &ESP_PAYLOAD)),
        ("atomic fragment", LOCAL6, frag6(50, 0, false, &ESP_PAYLOAD)),
        (
            "transit fragment on inside",
            TRANSIT6,
            frag6(6, 8, true, &IKE_PAYLOAD),
        ),
    ] {
        let frame = eth(ETH_UNICAST, 0x86dd, &ipv6(PEER6, dst, 44, &frag_hdr));
        expect_pass(&s, what, &frame, Class::PassFragment);
    }
    let inner = frag6(17, 0, true, &first);
    let frame = eth(
        ETH_UNICAST,
        0x86dd,
        &ipv6(PEER6, LOCAL6, 60, &ext(44, 0, &inner)),
    );
    expect_pass(
        &s,
        "fragment after destination options",
        &frame,
        Class::PassFragment,
    );
}

#[test]
fn esp_to_the_appliance() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    for fam in BOTH {
        let frame = ip(fam.local(), 50, &ESP_PAYLOAD);
        expect_redirect_unbound(&s, &format!("{fam:?} ESP"), &frame, Class::RedirectEsp);
    }
    // Role does not matter for traffic to the appliance.
    let mut s = s;
    s.set_role(Role::Inside).unwrap();
    for fam in BOTH {
        let frame = ip(fam.local(), 50, &ESP_PAYLOAD);
        expect_redirect_unbound(
            &s,
            &format!("{fam:?} ESP inside"),
            &frame,
            Class::RedirectEsp,
        );
    }
}

#[test]
fn esp_in_udp_to_the_appliance() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    for fam in BOTH {
        let frame = ip(fam.local(), 17, &udp(4500, 4500, &ESP_PAYLOAD));
        expect_redirect_unbound(
            &s,
            &format!("{fam:?} ESP-in-UDP"),
            &frame,
            Class::RedirectEspUdp,
        );
        // Exactly the 8-byte ESP header is enough; NAT may change the source port.
        let frame = ip(fam.local(), 17, &udp(31000, 4500, &ESP_PAYLOAD[..8]));
        expect_redirect_unbound(
            &s,
            &format!("{fam:?} 8 bytes"),
            &frame,
            Class::RedirectEspUdp,
        );
    }
}

#[test]
fn udp_4500_that_is_neither_esp_ike_nor_keepalive_is_malformed() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    for fam in BOTH {
        for (what, payload) in [
            ("empty", &[][..]),
            ("one byte not 0xff", &[0x00][..]),
            ("three bytes", &[0xff, 0xff, 0xff][..]),
            ("SPI without sequence number", &ESP_PAYLOAD[..7]),
        ] {
            let frame = ip(fam.local(), 17, &udp(4500, 4500, payload));
            expect_pass(&s, &format!("{fam:?} {what}"), &frame, Class::PassMalformed);
        }
    }
}

#[test]
fn other_local_traffic() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    let tcp_syn = [
        0x9c, 0x40, 0x00, 0x16, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];
    for fam in BOTH {
        let (icmp, echo) = fam.icmp();
        for (what, frame) in [
            ("SSH", ip(fam.local(), 6, &tcp_syn)),
            ("echo", ip(fam.local(), icmp, &echo)),
            ("DNS", ip(fam.local(), 17, &udp(5353, 53, &[0; 12]))),
            (
                "UDP 4500 -> 4501",
                ip(fam.local(), 17, &udp(4500, 4501, &[1; 12])),
            ),
            ("AH", ip(fam.local(), 51, &ESP_PAYLOAD)),
        ] {
            expect_pass(
                &s,
                &format!("{fam:?} {what}"),
                &frame,
                Class::PassLocalOther,
            );
        }
    }
}

#[test]
fn transit_on_outside_goes_to_the_kernel() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    for fam in BOTH {
        for (what, proto, l4) in [
            ("ESP", 50, ESP_PAYLOAD.to_vec()),
            ("IKE", 17, udp(500, 500, &IKE_PAYLOAD)),
            ("UDP", 17, udp(1000, 2000, &[0; 16])),
        ] {
            let frame = ip(fam.transit(), proto, &l4);
            expect_pass(
                &s,
                &format!("{fam:?} transit {what}"),
                &frame,
                Class::PassTransitOutside,
            );
        }
    }
}

#[test]
fn transit_on_inside_goes_to_the_data_plane() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    for fam in BOTH {
        let (icmp, echo) = fam.icmp();
        for (what, proto, l4) in [
            ("TCP", 6, vec![0u8; 20]),
            ("echo", icmp, echo.to_vec()),
            // IKE and ESP between other hosts are traffic to protect like any other.
            ("IKE", 17, udp(500, 500, &IKE_PAYLOAD)),
            ("ESP", 50, ESP_PAYLOAD.to_vec()),
        ] {
            let frame = ip(fam.transit(), proto, &l4);
            expect_redirect_unbound(
                &s,
                &format!("{fam:?} transit {what}"),
                &frame,
                Class::RedirectTransit,
            );
        }
    }
}

#[test]
fn role_and_local_addresses_change_at_run_time() {
    let Some(mut s) = loaded(Role::Outside) else {
        return;
    };
    for fam in BOTH {
        let frame = ip(fam.transit(), 6, &[0; 20]);
        s.set_role(Role::Outside).unwrap();
        expect_pass(&s, "outside", &frame, Class::PassTransitOutside);
        s.set_role(Role::Inside).unwrap();
        assert_eq!(s.role(), Role::Inside);
        expect_redirect_unbound(&s, "inside", &frame, Class::RedirectTransit);

        let esp = ip(fam.local(), 50, &ESP_PAYLOAD);
        s.remove_local_addr(fam.local()).unwrap();
        s.remove_local_addr(fam.local()).unwrap(); // absent: still Ok
        expect_redirect_unbound(&s, "no longer local", &esp, Class::RedirectTransit);
        s.set_role(Role::Outside).unwrap();
        expect_pass(&s, "no longer local", &esp, Class::PassTransitOutside);
        s.add_local_addr(fam.local()).unwrap();
        expect_redirect_unbound(&s, "local again", &esp, Class::RedirectEsp);
    }
}

#[test]
fn multicast_broadcast_and_link_local_are_never_transit() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    let l4 = udp(1000, 1000, &[0; 8]);
    for (what, mac, dst) in [
        (
            "OSPF multicast",
            [0x01, 0x00, 0x5e, 0, 0, 5],
            Ipv4Addr::new(224, 0, 0, 5),
        ),
        ("limited broadcast", ETH_BROADCAST, Ipv4Addr::BROADCAST),
        (
            "directed broadcast",
            ETH_BROADCAST,
            Ipv4Addr::new(198, 19, 0, 255),
        ),
        ("link-local", ETH_UNICAST, Ipv4Addr::new(169, 254, 1, 1)),
        ("this network", ETH_UNICAST, Ipv4Addr::new(0, 0, 0, 7)),
        ("loopback", ETH_UNICAST, Ipv4Addr::new(127, 0, 0, 1)),
    ] {
        let frame = eth(mac, 0x0800, &ipv4(PEER4, dst, 17, 0, &l4));
        expect_pass(&s, what, &frame, Class::PassLinkScope);
    }
    for (what, mac, dst) in [
        ("all nodes", [0x33, 0x33, 0, 0, 0, 1], "ff02::1"),
        ("MLDv2 reports", [0x33, 0x33, 0, 0, 0, 0x16], "ff02::16"),
        ("link-local", ETH_UNICAST, "fe80::1"),
        ("group MAC", [0x33, 0x33, 0, 0, 0, 1], "2001:db8:2::10"),
    ] {
        let frame = eth(mac, 0x86dd, &ipv6(PEER6, dst.parse().unwrap(), 17, &l4));
        expect_pass(&s, what, &frame, Class::PassLinkScope);
    }
}

#[test]
fn non_ip_goes_to_the_kernel() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    let lldp = [0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1];
    let lldp_mac = [0x01, 0x80, 0xc2, 0, 0, 0x0e];
    expect_pass(&s, "LLDP", &eth(lldp_mac, 0x88cc, &lldp), Class::PassNonIp);
    expect_pass(
        &s,
        "MPLS",
        &eth(ETH_UNICAST, 0x8847, &[0; 40]),
        Class::PassNonIp,
    );
    // A second VLAN tag is not looked into.
    let inner = vlan(20, 0x0800, &ipv4(PEER4, LOCAL4, 50, 0, &ESP_PAYLOAD));
    let frame = eth(ETH_UNICAST, 0x88a8, &vlan(10, 0x8100, &inner));
    expect_pass(&s, "QinQ", &frame, Class::PassNonIp);
}

#[test]
fn vlan_tagged_traffic_is_classified_by_its_payload() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    for tpid in [0x8100u16, 0x88a8] {
        let esp4 = ipv4(PEER4, LOCAL4, 50, 0, &ESP_PAYLOAD);
        let frame = eth(ETH_UNICAST, tpid, &vlan(100, 0x0800, &esp4));
        expect_redirect_unbound(&s, "tagged ESP v4", &frame, Class::RedirectEsp);
        let ike6 = ipv6(PEER6, LOCAL6, 17, &udp(500, 500, &IKE_PAYLOAD));
        let frame = eth(ETH_UNICAST, tpid, &vlan(100, 0x86dd, &ike6));
        expect_pass(&s, "tagged IKE v6", &frame, Class::PassIke);
        let transit = ipv6(PEER6, TRANSIT6, 6, &[0; 20]);
        let frame = eth(ETH_UNICAST, tpid, &vlan(100, 0x86dd, &transit));
        expect_pass(&s, "tagged transit v6", &frame, Class::PassTransitOutside);
    }
}

#[test]
fn ipv4_options_and_ipv6_extension_headers_are_skipped() {
    let Some(s) = loaded(Role::Outside) else {
        return;
    };
    // IHL 6: one 4-byte option (NOP NOP NOP EOL).
    let mut packet = ipv4(PEER4, LOCAL4, 17, 0, &udp(4500, 4500, &ESP_PAYLOAD));
    packet[0] = 0x46;
    packet.splice(20..20, [1, 1, 1, 0]);
    let total = u16::try_from(packet.len()).unwrap();
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    let frame = eth(ETH_UNICAST, 0x0800, &packet);
    expect_redirect_unbound(
        &s,
        "ESP-in-UDP with IPv4 options",
        &frame,
        Class::RedirectEspUdp,
    );

    let esp_after_dest = ext(50, 0, &ESP_PAYLOAD);
    let frame = eth(
        ETH_UNICAST,
        0x86dd,
        &ipv6(PEER6, LOCAL6, 60, &esp_after_dest),
    );
    expect_redirect_unbound(
        &s,
        "ESP after destination options",
        &frame,
        Class::RedirectEsp,
    );

    // hop-by-hop (16 bytes) -> routing -> destination options -> UDP 4500 ESP
    let chain = ext(
        43,
        1,
        &ext(60, 0, &ext(17, 0, &udp(4500, 4500, &ESP_PAYLOAD))),
    );
    let frame = eth(ETH_UNICAST, 0x86dd, &ipv6(PEER6, LOCAL6, 0, &chain));
    expect_redirect_unbound(&s, "three extension headers", &frame, Class::RedirectEspUdp);

    let chain = ext(
        60,
        0,
        &ext(
            60,
            0,
            &ext(60, 0, &ext(17, 0, &udp(500, 500, &IKE_PAYLOAD))),
        ),
    );
    let frame = eth(ETH_UNICAST, 0x86dd, &ipv6(PEER6, LOCAL6, 60, &chain));
    expect_pass(&s, "four extension headers", &frame, Class::PassIke);

    // One more than the program walks: the kernel gets it as "malformed".
    let chain = ext(
        60,
        0,
        &ext(60, 0, &ext(60, 0, &ext(60, 0, &ext(50, 0, &ESP_PAYLOAD)))),
    );
    let frame = eth(ETH_UNICAST, 0x86dd, &ipv6(PEER6, LOCAL6, 60, &chain));
    expect_pass(&s, "five extension headers", &frame, Class::PassMalformed);
}

#[test]
fn malformed_and_truncated_frames_go_to_the_kernel() {
    let Some(s) = loaded(Role::Inside) else {
        return;
    };
    let esp4 = ipv4(PEER4, LOCAL4, 50, 0, &ESP_PAYLOAD);
    let udp4 = ipv4(PEER4, LOCAL4, 17, 0, &udp(4500, 4500, &ESP_PAYLOAD));
    let esp6 = ipv6(PEER6, LOCAL6, 50, &ESP_PAYLOAD);
    let udp6 = ipv6(PEER6, LOCAL6, 17, &udp(4500, 4500, &ESP_PAYLOAD));

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("IPv4 header cut", eth(ETH_UNICAST, 0x0800, &esp4[..12])),
        ("IPv6 header cut", eth(ETH_UNICAST, 0x86dd, &esp6[..30])),
        ("no VLAN header", eth(ETH_UNICAST, 0x8100, &[0, 1])),
        ("UDP header cut v4", eth(ETH_UNICAST, 0x0800, &udp4[..24])),
        ("UDP header cut v6", eth(ETH_UNICAST, 0x86dd, &udp6[..44])),
        (
            "ESP-in-UDP payload cut v4",
            eth(ETH_UNICAST, 0x0800, &udp4[..32]),
        ),
        (
            "ESP-in-UDP payload cut v6",
            eth(ETH_UNICAST, 0x86dd, &udp6[..52]),
        ),
        ("IPv6 in an IPv4 EtherType", eth(ETH_UNICAST, 0x0800, &esp6)),
        (
            "IPv4 in an IPv6 EtherType",
            eth(ETH_UNICAST, 0x86dd, &pad(esp4.clone(), 60)),
        ),
    ];
    let mut bad = esp4.clone();
    bad[0] = 0x44; // IHL 4
    cases.push(("IHL below 5", eth(ETH_UNICAST, 0x0800, &bad)));
    let mut bad = esp4.clone();
    bad[0] = 0x4f; // IHL 15: options run past the frame
    cases.push(("IHL past the frame", eth(ETH_UNICAST, 0x0800, &bad[..40])));
    let mut bad = esp4.clone();
    bad[2..4].copy_from_slice(&19u16.to_be_bytes());
    cases.push((
        "total length below the header",
        eth(ETH_UNICAST, 0x0800, &bad),
    ));
    for (fam_ip, off) in [(&udp4, 24), (&udp6, 44)] {
        let mut bad = fam_ip.clone();
        bad[off..off + 2].copy_from_slice(&7u16.to_be_bytes());
        let ethertype = if off == 24 { 0x0800 } else { 0x86dd };
        cases.push(("UDP length below 8", eth(ETH_UNICAST, ethertype, &bad)));
    }
    let cut_ext = ipv6(PEER6, LOCAL6, 60, &[]);
    cases.push(("extension header cut", eth(ETH_UNICAST, 0x86dd, &cut_ext)));
    let long_ext = ipv6(PEER6, LOCAL6, 60, &[50, 4, 0, 0, 0, 0, 0, 0]);
    cases.push((
        "extension header past the frame",
        eth(ETH_UNICAST, 0x86dd, &long_ext),
    ));

    for (what, frame) in cases {
        expect_pass(&s, what, &frame, Class::PassMalformed);
    }
}

#[test]
fn xsk_queue_bounds() {
    let Some(mut s) = loaded(Role::Outside) else {
        return;
    };
    let err = s.set_xsk(sluice_ebpf::MAX_QUEUES, 0).unwrap_err();
    assert!(
        matches!(err, sluice_ebpf::Error::QueueOutOfRange { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("out of range"));
    // A non-socket fd is refused by the kernel.
    assert!(s.set_xsk(0, std::io::stdin()).is_err());
    s.clear_xsk(0).unwrap();
    s.clear_xsk(sluice_ebpf::MAX_QUEUES - 1).unwrap();
}

/// Is an XDP program attached to `dev` in `ns`, and in which mode?
fn xdp_state(ns: &Netns, dev: &str) -> &'static str {
    let out = ns.ip(&format!("-d link show dev {dev}"));
    if out.contains("xdpgeneric") {
        "generic"
    } else if out.contains("prog/xdp") {
        "native"
    } else {
        "none"
    }
}

#[test]
fn attach_and_detach_on_veth() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("attach");
    ns.ip("link add sa0 type veth peer name sa1");
    ns.ip("link set sa0 up");
    ns.ip("link set sa1 up");
    let _inside = ns.enter();

    for (mode, expected, shown) in [
        (AttachMode::Generic, AttachMode::Generic, "generic"),
        (AttachMode::Native, AttachMode::Native, "native"),
        (AttachMode::Auto, AttachMode::Native, "native"),
    ] {
        let mut s = loaded(Role::Outside).unwrap();
        assert_eq!(s.attach("sa1", mode).unwrap(), expected, "{mode:?}");
        assert_eq!(xdp_state(&ns, "sa1"), shown, "{mode:?}");
        let attachment = s.attachment().unwrap();
        assert_eq!(attachment.mode, expected);
        assert_eq!(attachment.ifindex, sluice_ebpf::ifindex("sa1").unwrap());
        let err = s.attach("sa0", AttachMode::Generic).unwrap_err();
        assert!(
            matches!(err, sluice_ebpf::Error::AlreadyAttached { .. }),
            "{err}"
        );
        drop(s);
        assert_eq!(xdp_state(&ns, "sa1"), "none", "{mode:?}: detached on drop");
    }

    let mut s = loaded(Role::Outside).unwrap();
    s.attach("sa1", AttachMode::Generic).unwrap();
    s.detach().unwrap();
    assert_eq!(xdp_state(&ns, "sa1"), "none");
    assert!(s.attachment().is_none());
    s.detach().unwrap();

    let err = s.attach("no-such-if", AttachMode::Auto).unwrap_err();
    assert!(
        matches!(err, sluice_ebpf::Error::UnknownInterface(_)),
        "{err}"
    );

    // The veth caveat: without xdp.frags, native XDP refuses a peer MTU above 3506;
    // Auto then falls back to generic.
    ns.ip("link set sa0 mtu 9000");
    ns.ip("link set sa1 mtu 9000");
    assert!(s.attach("sa1", AttachMode::Native).is_err());
    assert_eq!(
        s.attach("sa1", AttachMode::Auto).unwrap(),
        AttachMode::Generic
    );
    assert_eq!(xdp_state(&ns, "sa1"), "generic");
}

/// With a real AF_XDP socket bound to the queue, the redirect classes really return
/// `XDP_REDIRECT` and `no_socket_pass` stays still; queues without a socket still pass.
#[test]
fn real_xsk_turns_redirect_classes_into_xdp_redirect() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("xsk");
    ns.ip("link add sx0 numtxqueues 2 numrxqueues 2 type veth peer name sx1 numtxqueues 2 numrxqueues 2");
    ns.ip("link set sx0 up");
    ns.ip("link set sx1 up");
    let _inside = ns.enter();
    let ifindex = sluice_ebpf::ifindex("sx1").unwrap();

    let mut s = loaded(Role::Outside).unwrap();
    let xsk = Xsk::bind(ifindex, 0).unwrap();
    s.set_xsk(0, xsk.as_raw_fd()).unwrap();

    for fam in BOTH {
        let esp = ip(fam.local(), 50, &ESP_PAYLOAD);
        expect(&s, "ESP", &esp, Verdict::Redirect, &[Class::RedirectEsp]);
        let esp_udp = ip(fam.local(), 17, &udp(4500, 4500, &ESP_PAYLOAD));
        expect(
            &s,
            "ESP-in-UDP",
            &esp_udp,
            Verdict::Redirect,
            &[Class::RedirectEspUdp],
        );
        let ike = ip(fam.local(), 17, &udp(500, 500, &IKE_PAYLOAD));
        expect(&s, "IKE", &ike, Verdict::Pass, &[Class::PassIke]);

        // Same frame on queue 1 of sx1, which has no socket.
        let before = s.counters().unwrap();
        assert_eq!(s.test_run_on(&esp, ifindex, 1).unwrap(), Verdict::Pass);
        let after = s.counters().unwrap();
        assert_eq!(
            after[Class::NoSocketPass.index()],
            before[Class::NoSocketPass.index()] + 1
        );
        assert_eq!(s.test_run_on(&esp, ifindex, 0).unwrap(), Verdict::Redirect);
    }
    s.set_role(Role::Inside).unwrap();
    let transit = ip(Fam::V6.transit(), 6, &[0; 20]);
    expect(
        &s,
        "inside transit",
        &transit,
        Verdict::Redirect,
        &[Class::RedirectTransit],
    );
    s.set_role(Role::Outside).unwrap();

    s.clear_xsk(0).unwrap();
    let esp = ip(Fam::V4.local(), 50, &ESP_PAYLOAD);
    expect_redirect_unbound(&s, "after clear_xsk", &esp, Class::RedirectEsp);
    s.set_xsk(0, xsk.as_raw_fd()).unwrap();

    // End to end: a frame sent into sx0 arrives on sx1, where the attached program hands
    // it to the socket (copy mode). Generic XDP runs on every rx queue, so both of sx1's
    // queues get a socket; the kernel picks the queue.
    let xsk1 = Xsk::bind(ifindex, 1).unwrap();
    s.set_xsk(1, xsk1.as_raw_fd()).unwrap();
    s.attach("sx1", AttachMode::Native).unwrap();
    let before = s.counters().unwrap();
    let esp = pad(ip(Fam::V4.local(), 50, &ESP_PAYLOAD), 60);
    send_raw(sluice_ebpf::ifindex("sx0").unwrap(), &esp).unwrap();
    let got = xsk
        .recv(Duration::from_millis(500))
        .or_else(|| xsk1.recv(Duration::from_secs(2)))
        .expect("ESP frame on the AF_XDP socket");
    assert_eq!(got, esp);
    let after = s.counters().unwrap();
    assert_eq!(
        after[Class::RedirectEsp.index()],
        before[Class::RedirectEsp.index()] + 1
    );
    assert_eq!(
        after[Class::NoSocketPass.index()],
        before[Class::NoSocketPass.index()]
    );
}

/// The software classifier (DPDK ports) against the real program over
/// mutated frames: bytes overwritten, frames cut, for both roles; the class
/// must be the same every time.
#[test]
fn software_classifier_agrees_on_mutated_frames() {
    let Some(mut s) = loaded(Role::Outside) else {
        return;
    };
    let mut ike4500 = vec![0, 0, 0, 0];
    ike4500.extend_from_slice(&IKE_PAYLOAD);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for fam in BOTH {
        for dst in [fam.local(), fam.transit()] {
            corpus.push(ip(dst, 50, &ESP_PAYLOAD));
            corpus.push(ip(dst, 17, &udp(4500, 4500, &ESP_PAYLOAD)));
            corpus.push(ip(dst, 17, &udp(4500, 4500, &ike4500)));
            corpus.push(ip(dst, 17, &udp(4500, 4500, &[0xff])));
            corpus.push(ip(dst, 17, &udp(500, 500, &IKE_PAYLOAD)));
            let (proto, echo) = fam.icmp();
            corpus.push(ip(dst, proto, &echo));
        }
    }
    corpus.push(eth(
        ETH_UNICAST,
        0x86dd,
        &ipv6(PEER6, LOCAL6, 0, &ext(60, 1, &ext(50, 0, &ESP_PAYLOAD))),
    ));
    corpus.push(eth(
        ETH_UNICAST,
        0x86dd,
        &ipv6(PEER6, LOCAL6, 44, &frag6(50, 8, true, &ESP_PAYLOAD)),
    ));
    corpus.push(eth(ETH_BROADCAST, 0x0806, &[0; 28]));
    corpus.push(eth(
        ETH_UNICAST,
        0x8100,
        &vlan(7, 0x0800, &ipv4(PEER4, LOCAL4, 50, 0, &ESP_PAYLOAD)),
    ));
    // xorshift64*: reproducible, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut checked = 0;
    for round in 0..3000 {
        if round == 1500 {
            s.set_role(Role::Inside).unwrap();
        }
        let base = &corpus[(next() as usize) % corpus.len()];
        let mut frame = base.clone();
        for _ in 0..1 + next() % 3 {
            // Mostly the headers, where the decisions are.
            let at = (next() as usize) % frame.len().min(80);
            frame[at] = match next() % 4 {
                0 => 0,
                1 => 0xff,
                _ => next() as u8,
            };
        }
        if next() % 4 == 0 {
            let keep = 14 + (next() as usize) % (frame.len() - 13);
            frame.truncate(keep);
        }
        let before = s.counters().unwrap();
        s.test_run(&frame).unwrap();
        let after = s.counters().unwrap();
        let moved: Vec<Class> = Class::ALL
            .into_iter()
            .filter(|c| *c != Class::NoSocketPass && after[c.index()] != before[c.index()])
            .collect();
        assert_eq!(moved.len(), 1, "round {round}: {moved:?} for {frame:02x?}");
        let soft = sluice_ebpf::classify(&frame, s.role(), |a| s.is_local_addr(a));
        assert_eq!(
            soft, moved[0],
            "round {round}: software {soft:?}, XDP {:?} for {frame:02x?}",
            moved[0]
        );
        checked += 1;
    }
    assert_eq!(checked, 3000);
}
