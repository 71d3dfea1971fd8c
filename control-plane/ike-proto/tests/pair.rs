//! Two IKE peers in memory on a virtual clock: every exchange implemented so
//! far, with lost, duplicated and tampered datagrams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use ike_crypto::ke::DhGroup;
use ike_proto::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Pair {
    now: Instant,
    rng: Rng,
    i: IkeSa,
    r: Option<IkeSa>,
    r_cfg: Config,
    i_events: Vec<Event>,
    r_events: Vec<Event>,
    /// What the initiator's address looks like to the responder.
    i_seen_as: SocketAddr,
}

impl Pair {
    fn new(i_cfg: Config, r_cfg: Config) -> Pair {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let now = Instant::now();
        let i = IkeSa::initiate(
            i_cfg,
            I_ADDR.parse().unwrap(),
            R_ADDR.parse().unwrap(),
            now,
            &mut rng,
        )
        .unwrap();
        Pair {
            now,
            rng,
            i,
            r: None,
            r_cfg,
            i_events: vec![],
            r_events: vec![],
            i_seen_as: I_ADDR.parse().unwrap(),
        }
    }

    /// Delivers initiator -> responder datagrams; `keep` decides per datagram
    /// (index) whether it arrives (and how often).
    fn i_to_r(&mut self, copies: impl Fn(usize) -> usize) -> usize {
        let mut n = 0;
        while let Some(t) = self.i.poll_transmit() {
            for _ in 0..copies(n) {
                let from = SocketAddr::new(
                    self.i_seen_as.ip(),
                    if t.dst.port() == 4500 {
                        4500
                    } else {
                        self.i_seen_as.port()
                    },
                );
                match &mut self.r {
                    None => {
                        let sa = IkeSa::accept(
                            self.r_cfg.clone(),
                            R_ADDR.parse().unwrap(),
                            from,
                            self.now,
                            &t.data,
                            &mut self.rng,
                        )
                        .unwrap();
                        self.r = Some(sa);
                    }
                    Some(r) => r.handle(self.now, from, &t.data, &mut self.rng),
                }
            }
            n += 1;
        }
        self.drain();
        n
    }

    fn r_to_i(&mut self, copies: impl Fn(usize) -> usize) -> usize {
        let mut n = 0;
        let Some(r) = self.r.as_mut() else { return 0 };
        let mut out = Vec::new();
        while let Some(t) = r.poll_transmit() {
            out.push(t);
        }
        for t in out {
            for _ in 0..copies(n) {
                self.i
                    .handle(self.now, R_ADDR.parse().unwrap(), &t.data, &mut self.rng);
            }
            n += 1;
        }
        self.drain();
        n
    }

    fn drain(&mut self) {
        while let Some(e) = self.i.poll_event() {
            self.i_events.push(e);
        }
        if let Some(r) = self.r.as_mut() {
            while let Some(e) = r.poll_event() {
                self.r_events.push(e);
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.i.handle_timeout(self.now);
        self.drain();
    }

    fn children(events: &[Event]) -> Vec<&ChildSa> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ChildInstalled(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// IKE_SA_INIT and IKE_AUTH, each datagram delivered once, then the
    /// checks of [`Pair::assert_established`].
    fn establish(&mut self) {
        self.i_to_r(|_| 1);
        self.r_to_i(|_| 1);
        self.i_to_r(|_| 1);
        self.r_to_i(|_| 1);
        self.assert_established();
    }

    fn assert_established(&self) {
        self.assert_established_with(20);
    }

    fn assert_established_with(&self, encr_len: usize) {
        assert_eq!(
            self.i.state(),
            State::Established,
            "initiator: {:?}",
            self.i_events
        );
        let r = self.r.as_ref().unwrap();
        assert_eq!(
            r.state(),
            State::Established,
            "responder: {:?}",
            self.r_events
        );
        assert_eq!(self.i.spis(), r.spis());
        let ic = Self::children(&self.i_events);
        let rc = Self::children(&self.r_events);
        assert_eq!((ic.len(), rc.len()), (1, 1), "exactly one CHILD SA each");
        assert_eq!(ic[0].spi_in, rc[0].spi_out);
        assert_eq!(ic[0].spi_out, rc[0].spi_in);
        assert_eq!(*ic[0].encr_out, *rc[0].encr_in);
        assert_eq!(*ic[0].encr_in, *rc[0].encr_out);
        assert_ne!(*ic[0].encr_in, *ic[0].encr_out);
        assert_eq!(ic[0].encr_in.len(), encr_len);
        assert_eq!(ic[0].local_ts, rc[0].remote_ts);
    }
}

fn psk_pair() -> Pair {
    Pair::new(
        cfg(
            "a.psw.test",
            "b.psw.test",
            "sluice-psk-0123456789",
            vec![DhGroup::Curve25519],
        ),
        cfg(
            "b.psw.test",
            "a.psw.test",
            "sluice-psk-0123456789",
            vec![DhGroup::Curve25519],
        ),
    )
}

#[test]
fn psk_tunnel_comes_up() {
    let mut p = psk_pair();
    assert_eq!(p.i_to_r(|_| 1), 1);
    assert_eq!(p.r_to_i(|_| 1), 1);
    assert_eq!(p.i_to_r(|_| 1), 1, "IKE_AUTH request");
    assert_eq!(p.r_to_i(|_| 1), 1, "IKE_AUTH response");
    p.assert_established();
    assert!(!p.i.nat_detected());
    assert_eq!(p.i.poll_timeout(), None, "nothing left to retransmit");
}

#[test]
fn narrowing_picks_the_intersection() {
    let i_cfg = cfg(
        "a.psw.test",
        "b.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    let mut r_cfg = cfg(
        "b.psw.test",
        "a.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    r_cfg.children[0].local_ts = vec![Selector::subnet("198.19.2.128".parse().unwrap(), 25)];
    let mut p = Pair::new(i_cfg, r_cfg);
    p.establish();
    let ic = Pair::children(&p.i_events);
    assert_eq!(
        ic[0].remote_ts,
        vec![Selector::subnet("198.19.2.128".parse().unwrap(), 25)]
    );
}

#[test]
fn invalid_ke_payload_round() {
    // The initiator prefers Curve25519 but also offers ECP-256, which is all
    // the responder accepts (strongSwan asks for ECP-256 first, say).
    let i_cfg = cfg(
        "a.psw.test",
        "b.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519, DhGroup::Ecp256],
    );
    let r_cfg = cfg(
        "b.psw.test",
        "a.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Ecp256],
    );
    let mut p = Pair::new(i_cfg, r_cfg);
    p.i_to_r(|_| 1);
    assert!(
        matches!(p.r_events.last(), Some(Event::Failed { notify: Some(n), .. }) if *n == ike_wire::NotifyType::INVALID_KE_PAYLOAD)
    );
    p.r_to_i(|_| 1);
    // The initiator retries with ECP-256 towards a fresh responder (a real
    // daemon keeps no state for the refused request).
    p.r = None;
    p.r_events.clear();
    p.establish();
}

#[test]
fn lost_and_duplicated_messages() {
    let mut p = psk_pair();
    // The first IKE_SA_INIT request is lost: retransmitted after 1 s.
    assert_eq!(p.i_to_r(|_| 0), 1);
    assert!(p.r.is_none());
    p.advance(Duration::from_millis(999));
    assert_eq!(p.i_to_r(|_| 1), 0, "not before the timeout");
    p.advance(Duration::from_millis(1));
    assert_eq!(p.i_to_r(|_| 1), 1, "retransmitted");
    p.r_to_i(|_| 2); // duplicated response: the second is out of window
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Dropped(_))));
    // IKE_AUTH request duplicated; the response to the first is lost.
    p.i_to_r(|_| 2);
    assert_eq!(
        p.r_to_i(|i| usize::from(i == 1)),
        2,
        "two identical responses"
    );
    p.assert_established();
    assert_eq!(Pair::children(&p.r_events).len(), 1, "installed once");
}

#[test]
fn lost_auth_response_is_resent_from_cache() {
    let mut p = psk_pair();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.i_to_r(|_| 1);
    assert_eq!(p.r_to_i(|_| 0), 1, "response lost");
    p.advance(Duration::from_secs(1));
    assert_eq!(p.i_to_r(|_| 1), 1, "IKE_AUTH retransmitted");
    assert_eq!(p.r_to_i(|_| 1), 1, "cached response");
    p.assert_established();
}

#[test]
fn dead_peer_after_eight_tries_with_backoff() {
    let mut p = psk_pair();
    let start = p.now;
    let mut sent = p.i_to_r(|_| 0);
    let mut waited = Duration::ZERO;
    for _ in 0..20 {
        let Some(t) = p.i.poll_timeout() else { break };
        waited += t - p.now;
        p.advance(t - p.now);
        sent += p.i_to_r(|_| 0);
    }
    assert_eq!(sent, 8);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::PeerDead)));
    // 1 + 2 + 4 + 8 + 16 + 32 + 64 + 64 seconds.
    assert_eq!(waited, Duration::from_secs(191));
    assert_eq!(p.now - start, waited);
}

#[test]
fn wrong_psk_fails_both_sides() {
    let mut p = Pair::new(
        cfg(
            "a.psw.test",
            "b.psw.test",
            "right-key-0123456789",
            vec![DhGroup::Curve25519],
        ),
        cfg(
            "b.psw.test",
            "a.psw.test",
            "wrong-key-0123456789",
            vec![DhGroup::Curve25519],
        ),
    );
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let failed = |ev: &[Event]| {
        ev.iter().any(|e| matches!(e, Event::Failed { notify: Some(n), .. } if *n == ike_wire::NotifyType::AUTHENTICATION_FAILED))
    };
    assert!(failed(&p.r_events), "{:?}", p.r_events);
    assert!(failed(&p.i_events), "{:?}", p.i_events);
    assert!(Pair::children(&p.i_events).is_empty() && Pair::children(&p.r_events).is_empty());
}

#[test]
fn tampered_auth_is_dropped_without_state_change() {
    let mut p = psk_pair();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let t = p.i.poll_transmit().unwrap();
    let mut bad = t.data.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let r = p.r.as_mut().unwrap();
    r.handle(p.now, I_ADDR.parse().unwrap(), &bad, &mut p.rng);
    r.handle(p.now, I_ADDR.parse().unwrap(), &bad[..40], &mut p.rng);
    assert_eq!(r.state(), State::InitAnswered);
    assert!(
        r.poll_transmit().is_none(),
        "no answer to unauthenticated input"
    );
    r.handle(p.now, I_ADDR.parse().unwrap(), &t.data, &mut p.rng);
    p.drain();
    p.r_to_i(|_| 1);
    p.assert_established();
}

#[test]
fn nat_is_detected_and_port_4500_used() {
    let mut p = psk_pair();
    p.i_seen_as = "198.18.7.7:40001".parse().unwrap(); // behind a NAT
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert!(p.i.nat_detected());
    let t = p.i.poll_transmit().unwrap();
    assert_eq!(t.dst.port(), 4500, "IKE_AUTH goes to port 4500");
    let r = p.r.as_mut().unwrap();
    r.handle(
        p.now,
        "198.18.7.7:4500".parse().unwrap(),
        &t.data,
        &mut p.rng,
    );
    p.drain();
    p.r_to_i(|_| 1);
    p.assert_established();
    assert!(Pair::children(&p.i_events)[0].nat_t);
}

fn established() -> Pair {
    let mut p = psk_pair();
    p.establish();
    p
}

fn child_deleted(ev: &[Event]) -> Vec<(u32, u32)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::ChildDeleted { spi_in, spi_out } => Some((*spi_in, *spi_out)),
            _ => None,
        })
        .collect()
}

#[test]
fn initiator_deletes_the_ike_sa() {
    let mut p = established();
    p.i.delete(p.now, &mut p.rng).unwrap();
    p.i_to_r(|_| 1);
    assert_eq!(p.r.as_ref().unwrap().state(), State::Closed);
    assert!(p.r_events.iter().any(|e| matches!(e, Event::Deleted)));
    p.r_to_i(|_| 1);
    assert_eq!(p.i.state(), State::Closed);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Deleted)));
    let (i, r) = (child_deleted(&p.i_events), child_deleted(&p.r_events));
    assert_eq!(
        (i.len(), r.len()),
        (1, 1),
        "the CHILD SA goes with the IKE SA"
    );
    assert_eq!((i[0].0, i[0].1), (r[0].1, r[0].0));
}

#[test]
fn responder_deletes_a_child_with_reverse_spis_and_a_lost_response() {
    let mut p = established();
    let rc = Pair::children(&p.r_events)[0].spi_in;
    let r = p.r.as_mut().unwrap();
    r.delete_child(p.now, rc, &mut p.rng).unwrap();
    assert!(
        r.delete_child(p.now, 0xdead, &mut p.rng).is_err(),
        "unknown SPI"
    );
    // The responder's request (message ID 0 in its own window) arrives
    // twice; the first answer is lost.
    let mut reqs = Vec::new();
    while let Some(t) = r.poll_transmit() {
        reqs.push(t);
    }
    assert_eq!(reqs.len(), 1);
    for _ in 0..2 {
        p.i.handle(p.now, R_ADDR.parse().unwrap(), &reqs[0].data, &mut p.rng);
    }
    let mut answers = Vec::new();
    while let Some(t) = p.i.poll_transmit() {
        answers.push(t);
    }
    assert_eq!(answers.len(), 2);
    assert_eq!(
        answers[0].data, answers[1].data,
        "the retransmission is answered from the cache"
    );
    p.r.as_mut()
        .unwrap()
        .handle(p.now, I_ADDR.parse().unwrap(), &answers[1].data, &mut p.rng);
    p.drain();
    let (i, r) = (child_deleted(&p.i_events), child_deleted(&p.r_events));
    assert_eq!(i.len(), 1, "deleted once: {:?}", p.i_events);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, rc);
    assert_eq!((i[0].0, i[0].1), (r[0].1, r[0].0));
    assert_eq!(p.i.state(), State::Established, "the IKE SA stays");
}

#[test]
fn liveness_checks_both_ways_then_a_dead_peer() {
    let mut p = established();
    p.i.check_liveness(p.now, &mut p.rng).unwrap();
    p.i_to_r(|_| 1);
    assert!(p
        .r_events
        .iter()
        .any(|e| matches!(e, Event::LivenessAnswered)));
    p.r_to_i(|_| 1);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Alive)));
    // Two requests queued: the second waits for the first's response.
    p.i.check_liveness(p.now, &mut p.rng).unwrap();
    p.i.check_liveness(p.now, &mut p.rng).unwrap();
    assert_eq!(p.i_to_r(|_| 1), 1, "one request outstanding (window 1)");
    assert_eq!(p.r_to_i(|_| 1), 1);
    assert_eq!(p.i_to_r(|_| 1), 1, "the queued one follows");
    p.r_to_i(|_| 1);
    assert_eq!(
        p.i_events
            .iter()
            .filter(|e| matches!(e, Event::Alive))
            .count(),
        3
    );
    // Now the peer is gone: DPD declares it dead after the retransmissions.
    p.i.check_liveness(p.now, &mut p.rng).unwrap();
    let mut sent = p.i_to_r(|_| 0);
    for _ in 0..20 {
        let Some(t) = p.i.poll_timeout() else { break };
        p.advance(t - p.now);
        sent += p.i_to_r(|_| 0);
    }
    assert_eq!(sent, 8);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::PeerDead)));
}

#[test]
fn additional_child_sas_both_ways() {
    let mut p = established();
    let net = |s: &str, l: u8| Selector::subnet(s.parse().unwrap(), l);
    // Initiator asks for a narrower pair; the responder accepts it.
    let spi =
        p.i.create_child(
            p.now,
            vec![net("198.19.1.0", 25)],
            vec![net("198.19.2.0", 25)],
            &mut p.rng,
        )
        .unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let (ic, rc) = (Pair::children(&p.i_events), Pair::children(&p.r_events));
    assert_eq!((ic.len(), rc.len()), (2, 2));
    assert_eq!(ic[1].spi_in, spi);
    assert_eq!((ic[1].spi_in, ic[1].spi_out), (rc[1].spi_out, rc[1].spi_in));
    assert_eq!(*ic[1].encr_out, *rc[1].encr_in);
    assert_eq!(*ic[1].encr_in, *rc[1].encr_out);
    assert_ne!(*ic[1].encr_out, *ic[0].encr_out, "fresh nonces, fresh keys");
    assert_eq!(ic[1].remote_ts, vec![net("198.19.2.0", 25)]);
    // The responder asks for one too: its own message-ID window starts at 0.
    let r = p.r.as_mut().unwrap();
    r.create_child(
        p.now,
        vec![net("198.19.2.0", 24)],
        vec![net("198.19.1.0", 24)],
        &mut p.rng,
    )
    .unwrap();
    let t = r.poll_transmit().unwrap();
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &t.data, &mut p.rng);
    let back = p.i.poll_transmit().unwrap();
    p.r.as_mut()
        .unwrap()
        .handle(p.now, I_ADDR.parse().unwrap(), &back.data, &mut p.rng);
    p.drain();
    let (ic, rc) = (Pair::children(&p.i_events), Pair::children(&p.r_events));
    assert_eq!((ic.len(), rc.len()), (3, 3));
    assert_eq!(
        *ic[2].encr_out, *rc[2].encr_in,
        "keys split by the exchange's initiator"
    );
    // Selectors outside the peer's policy are refused.
    p.i.create_child(
        p.now,
        vec![net("198.19.9.0", 24)],
        vec![net("198.19.2.0", 24)],
        &mut p.rng,
    )
    .unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Failed { notify: Some(n), .. } if *n == ike_wire::NotifyType::TS_UNACCEPTABLE)));
    assert_eq!(p.i.state(), State::Established);
}

#[test]
fn unknown_critical_payload_in_ike_sa_init_is_refused() {
    let mut rng = Rng(7);
    let cfg_i = cfg(
        "a.psw.test",
        "b.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    let mut i = IkeSa::initiate(
        cfg_i,
        I_ADDR.parse().unwrap(),
        R_ADDR.parse().unwrap(),
        Instant::now(),
        &mut rng,
    )
    .unwrap();
    let t = i.poll_transmit().unwrap();
    let mut m = ike_wire::Message::parse(&t.data).unwrap();
    m.payloads.push(ike_wire::Payload {
        ptype: ike_wire::PayloadType(200),
        critical: true,
        body: ike_wire::Body::Unknown(vec![1, 2]),
    });
    let r_cfg = cfg(
        "b.psw.test",
        "a.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    let mut r = IkeSa::accept(
        r_cfg.clone(),
        R_ADDR.parse().unwrap(),
        I_ADDR.parse().unwrap(),
        Instant::now(),
        &m.emit(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(r.state(), State::Closed);
    let reply = ike_wire::Message::parse(&r.poll_transmit().unwrap().data).unwrap();
    assert!(
        matches!(&reply.payloads[0].body, ike_wire::Body::Notify { ntype, data, .. }
        if *ntype == ike_wire::NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD && data == &[200])
    );
    // The same payload without the critical bit is skipped (RFC 7296 §2.5).
    m.payloads.last_mut().unwrap().critical = false;
    let r = IkeSa::accept(
        r_cfg,
        R_ADDR.parse().unwrap(),
        I_ADDR.parse().unwrap(),
        Instant::now(),
        &m.emit(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(r.state(), State::InitAnswered);
}

#[test]
fn protected_messages_and_the_proposal_are_logged() {
    let p = established();
    let logs: Vec<&String> = p
        .r_events
        .iter()
        .filter_map(|e| match e {
            Event::Log(l) => Some(l),
            _ => None,
        })
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with(
            "selected proposal: IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519"
        )),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("parsed IKE_AUTH request 1 [ IDi AUTH SA TSi TSr ]")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("generating IKE_AUTH response 1 [ IDr AUTH SA TSi TSr ]")),
        "{logs:?}"
    );
}

#[test]
fn selectors_display_as_operators_write_them() {
    let s = Selector::subnet("198.19.2.0".parse().unwrap(), 24);
    assert_eq!(s.to_string(), "198.19.2.0/24");
    assert_eq!(
        Selector::subnet("0.0.0.0".parse().unwrap(), 0).to_string(),
        "0.0.0.0/0"
    );
    assert_eq!(
        Selector::subnet("::".parse().unwrap(), 0).to_string(),
        "::/0"
    );
    assert_eq!(
        Selector::subnet("2001:db8::".parse().unwrap(), 48).to_string(),
        "2001:db8::/48"
    );
    let odd = Selector {
        start: "198.19.2.1".parse().unwrap(),
        end: "198.19.2.6".parse().unwrap(),
        proto: 6,
        ports: (443, 443),
    };
    assert_eq!(odd.to_string(), "198.19.2.1-198.19.2.6[6/443-443]");
}

#[test]
fn esp_transform_negotiation() {
    // The initiator prefers ChaCha20 but also offers AES-CBC + HMAC-SHA-256;
    // the responder only does AES-CBC: that is chosen, with integrity keys.
    let mut i_cfg = cfg(
        "a.psw.test",
        "b.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    i_cfg.esp = vec![
        EspProposal::ChaCha20Poly1305,
        EspProposal::AesCbcHmacSha256 { bits: 256 },
    ];
    let mut r_cfg = cfg(
        "b.psw.test",
        "a.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    r_cfg.esp = vec![
        EspProposal::AesGcm16 { bits: 128 },
        EspProposal::AesCbcHmacSha256 { bits: 256 },
    ];
    let mut p = Pair::new(i_cfg.clone(), r_cfg);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.assert_established_with(32);
    let ic = Pair::children(&p.i_events);
    let rc = Pair::children(&p.r_events);
    assert_eq!(ic[0].esp, EspProposal::AesCbcHmacSha256 { bits: 256 });
    assert_eq!(ic[0].integ_out.len(), 32);
    assert_eq!(*ic[0].integ_out, *rc[0].integ_in);
    assert_eq!(*ic[0].integ_in, *rc[0].integ_out);
    // ChaCha20 on both sides.
    let mut r2 = cfg(
        "b.psw.test",
        "a.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    r2.esp = vec![EspProposal::ChaCha20Poly1305];
    let mut p = Pair::new(i_cfg.clone(), r2);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.assert_established_with(36);
    assert_eq!(
        Pair::children(&p.i_events)[0].esp,
        EspProposal::ChaCha20Poly1305
    );
    // Nothing in common: the IKE SA comes up, the CHILD SA is refused.
    let mut r3 = cfg(
        "b.psw.test",
        "a.psw.test",
        "k0123456789abcdef",
        vec![DhGroup::Curve25519],
    );
    r3.esp = vec![EspProposal::AesGcm16 { bits: 256 }];
    let mut p = Pair::new(i_cfg, r3);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert_eq!(p.i.state(), State::Established);
    assert!(Pair::children(&p.i_events).is_empty());
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Failed { notify: Some(n), .. } if *n == ike_wire::NotifyType::NO_PROPOSAL_CHOSEN)));
}

/// Every protected message that fails its ICV, is cut short, carries a
/// rewritten header or an old message ID is dropped by an established SA
/// without an answer, an event or a state change; the retransmitted last
/// request gets the cached response, byte for byte.
#[test]
fn established_sa_drops_forged_truncated_and_out_of_window_messages() {
    let mut p = psk_pair();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let auth = p.i.poll_transmit().unwrap();
    let from: SocketAddr = I_ADDR.parse().unwrap();
    p.r.as_mut()
        .unwrap()
        .handle(p.now, from, &auth.data, &mut p.rng);
    p.drain();
    p.r_to_i(|_| 1);
    p.assert_established();

    // A liveness check (message ID 2) answered normally.
    p.i.check_liveness(p.now, &mut p.rng).unwrap();
    let dpd = p.i.poll_transmit().unwrap();
    let r = p.r.as_mut().unwrap();
    r.handle(p.now, from, &dpd.data, &mut p.rng);
    let answer = r.poll_transmit().unwrap();
    p.drain();
    let events_before = p.r_events.len();

    let mut forged = Vec::new();
    // Each byte class of the message: header fields, payload header, IV,
    // ciphertext and ICV.
    for at in [17usize, 19, 23, 27, 30, 40, dpd.data.len() - 1] {
        let mut m = dpd.data.clone();
        m[at] ^= 0x01;
        forged.push(m);
    }
    forged.push(dpd.data[..dpd.data.len() - 1].to_vec());
    forged.push(dpd.data[..28].to_vec());
    let mut longer = dpd.data.clone();
    longer.push(0);
    forged.push(longer);
    forged.push(auth.data.clone()); // message ID 1: out of the window now
    let r = p.r.as_mut().unwrap();
    for (n, m) in forged.iter().enumerate() {
        r.handle(p.now, from, m, &mut p.rng);
        assert!(r.poll_transmit().is_none(), "forged message {n} answered");
        while let Some(e) = r.poll_event() {
            // Only the reason it was dropped, for the log.
            assert!(
                matches!(e, Event::Dropped(_)),
                "forged message {n} raised {e:?}"
            );
        }
        assert_eq!(r.state(), State::Established);
    }
    assert_eq!(p.r_events.len(), events_before);

    // The last request again: the cached response, not a new one.
    r.handle(p.now, from, &dpd.data, &mut p.rng);
    assert_eq!(r.poll_transmit().unwrap().data, answer.data);

    // The initiator drops a tampered response and keeps retransmitting.
    let mut bad = answer.data.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &bad, &mut p.rng);
    p.drain();
    assert!(!p.i_events.iter().any(|e| matches!(e, Event::Alive)));
    let t = p.i.poll_timeout().unwrap();
    p.advance(t - p.now);
    let resent = p.i.poll_transmit().unwrap();
    assert_eq!(resent.data, dpd.data, "retransmission is the same request");
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &answer.data, &mut p.rng);
    p.drain();
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Alive)));
    assert_eq!(p.i.state(), State::Established);
}

/// Policy-based children: the responder accepts each configured subnet
/// pair, narrowed, and refuses a pairing that mixes two children's subnets.
#[test]
fn several_children_are_never_mixed() {
    let net = |s: &str, l: u8| Selector::subnet(s.parse().unwrap(), l);
    let mut p = psk_pair();
    p.r_cfg.children.push(ChildConfig {
        name: "voice".into(),
        local_ts: vec![net("198.19.4.0", 24)],
        remote_ts: vec![net("198.19.3.0", 24)],
    });
    p.establish();
    // The second child's pair, as the initiator wants a part of it.
    p.i.create_child(
        p.now,
        vec![net("198.19.3.0", 25)],
        vec![net("198.19.4.0", 23)],
        &mut p.rng,
    )
    .unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let ic = Pair::children(&p.i_events);
    assert_eq!(ic.len(), 2);
    assert_eq!(ic[1].local_ts, vec![net("198.19.3.0", 25)]);
    assert_eq!(ic[1].remote_ts, vec![net("198.19.4.0", 24)], "narrowed");
    // First child's local subnet with the second child's remote one.
    p.i.create_child(
        p.now,
        vec![net("198.19.1.0", 24)],
        vec![net("198.19.4.0", 24)],
        &mut p.rng,
    )
    .unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert_eq!(Pair::children(&p.i_events).len(), 2);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Failed { notify: Some(n), .. } if *n == ike_wire::NotifyType::TS_UNACCEPTABLE)));
}

/// CHILD SA rekeying (RFC 7296 §2.8) from either side: the new CHILD SA
/// names the one it replaces, gets fresh SPIs and keys, and the old one is
/// deleted on both sides; an unknown SPI is refused with
/// CHILD_SA_NOT_FOUND.
#[test]
fn child_sa_rekeyed_from_both_sides() {
    let mut p = established();
    let old_i = Pair::children(&p.i_events)[0].spi_in;
    let old_r = Pair::children(&p.r_events)[0].spi_in;

    // The initiator rekeys.
    let new_i = p.i.rekey_child(p.now, old_i, &mut p.rng).unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let (ic, rc) = (Pair::children(&p.i_events), Pair::children(&p.r_events));
    assert_eq!((ic.len(), rc.len()), (2, 2));
    assert_eq!((ic[1].spi_in, ic[1].rekeys), (new_i, Some(old_i)));
    assert_eq!(
        rc[1].rekeys,
        Some(old_r),
        "the responder knows what it replaces"
    );
    assert_eq!((ic[1].spi_in, ic[1].spi_out), (rc[1].spi_out, rc[1].spi_in));
    assert_eq!(*ic[1].encr_out, *rc[1].encr_in);
    assert_ne!(*ic[1].encr_out, *ic[0].encr_out, "fresh keys");
    assert_eq!(ic[1].local_ts, ic[0].local_ts, "same selectors");
    let (old_i_out, old_r_out, cur_r) = (ic[0].spi_out, rc[0].spi_out, rc[1].spi_in);
    // The old CHILD SA is deleted by the rekey's initiator.
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert_eq!(child_deleted(&p.i_events), vec![(old_i, old_i_out)]);
    assert_eq!(child_deleted(&p.r_events), vec![(old_r, old_r_out)]);

    // The responder rekeys the new one.
    let r = p.r.as_mut().unwrap();
    r.rekey_child(p.now, cur_r, &mut p.rng).unwrap();
    let t = r.poll_transmit().unwrap();
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &t.data, &mut p.rng);
    let back = p.i.poll_transmit().unwrap();
    let r = p.r.as_mut().unwrap();
    r.handle(p.now, I_ADDR.parse().unwrap(), &back.data, &mut p.rng);
    // Its delete of the old one, answered.
    let del = r.poll_transmit().unwrap();
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &del.data, &mut p.rng);
    let ack = p.i.poll_transmit().unwrap();
    p.r.as_mut()
        .unwrap()
        .handle(p.now, I_ADDR.parse().unwrap(), &ack.data, &mut p.rng);
    p.drain();
    let (ic, rc) = (Pair::children(&p.i_events), Pair::children(&p.r_events));
    assert_eq!((ic.len(), rc.len()), (3, 3));
    assert_eq!(rc[2].rekeys, Some(cur_r));
    assert_eq!(ic[2].rekeys, Some(new_i));
    assert_eq!(child_deleted(&p.i_events).len(), 2);
    assert_eq!(child_deleted(&p.r_events).len(), 2);

    // Rekeying a CHILD SA that does not exist: refused locally...
    assert!(p.i.rekey_child(p.now, 0xdead_beef, &mut p.rng).is_err());
    assert!(
        p.i.rekey_child(p.now, old_i, &mut p.rng).is_err(),
        "already deleted"
    );
    assert_eq!(p.i.state(), State::Established);
}

/// A responder under load answers IKE_SA_INIT with a stateless COOKIE
/// (RFC 7296 §2.6); the initiator comes back with it, first payload, and
/// the exchange completes. A forged or replayed-from-elsewhere cookie gets
/// another challenge.
#[test]
fn cookie_challenge_then_the_exchange_completes() {
    use ike_proto::cookie::{check, Check, CookieJar};
    let mut p = psk_pair();
    let jar = CookieJar::new(p.now, Duration::from_secs(60), &mut p.rng);
    let from: SocketAddr = I_ADDR.parse().unwrap();
    let first = p.i.poll_transmit().unwrap();
    let m = ike_wire::Message::parse(&first.data).unwrap();
    let Check::Challenge(reply) = check(&jar, &m, from.ip()) else {
        panic!("no challenge for a request without a cookie");
    };
    // The same request from another address is challenged, not accepted.
    assert!(matches!(
        check(&jar, &m, "198.18.9.9".parse().unwrap()),
        Check::Challenge(_)
    ));
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &reply, &mut p.rng);
    let retry = p.i.poll_transmit().unwrap();
    let rm = ike_wire::Message::parse(&retry.data).unwrap();
    assert!(
        matches!(&rm.payloads[0].body, ike_wire::Body::Notify { ntype, .. } if *ntype == ike_wire::NotifyType::COOKIE),
        "COOKIE is the first payload"
    );
    assert_eq!(check(&jar, &rm, from.ip()), Check::Valid);
    assert!(
        matches!(
            check(&jar, &rm, "198.18.9.9".parse().unwrap()),
            Check::Challenge(_)
        ),
        "a cookie is bound to the address it was sent to"
    );
    // Now the responder accepts it and the pair completes.
    let sa = IkeSa::accept(
        p.r_cfg.clone(),
        R_ADDR.parse().unwrap(),
        from,
        p.now,
        &retry.data,
        &mut p.rng,
    )
    .unwrap();
    p.r = Some(sa);
    p.drain();
    p.r_to_i(|_| 1);
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    p.assert_established();
}

fn take_rekeyed(ev: &mut Vec<Event>) -> Option<Box<IkeSa>> {
    let i = ev.iter().position(|e| matches!(e, Event::IkeRekeyed(_)))?;
    match ev.remove(i) {
        Event::IkeRekeyed(n) => Some(n),
        _ => None,
    }
}

/// IKE SA rekeying (RFC 7296 §2.18) from either side: new SPIs and keys,
/// message IDs from 0, the CHILD SAs move to the new IKE SA (no
/// ChildDeleted when the old one is deleted), and the new pair works:
/// liveness checks, CHILD SA rekeys, another IKE SA rekey by the other side.
#[test]
fn ike_sa_rekeyed_and_children_carried_over() {
    let mut p = established();
    let old_spis = p.i.spis();
    let child_in = Pair::children(&p.i_events)[0].spi_in;
    p.i.rekey_ike(p.now, &mut p.rng).unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let new_i = take_rekeyed(&mut p.i_events).expect("initiator: new IKE SA");
    let new_r = take_rekeyed(&mut p.r_events).expect("responder: new IKE SA");
    assert_eq!(new_i.spis(), new_r.spis());
    assert_ne!(new_i.spis(), old_spis);
    assert_eq!(new_i.state(), State::Established);
    assert_eq!(p.i.state(), State::Rekeyed);
    // The old IKE SA is deleted; its CHILD SAs are not.
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert_eq!(p.i.state(), State::Closed);
    assert_eq!(p.r.as_ref().unwrap().state(), State::Closed);
    assert!(child_deleted(&p.i_events).is_empty() && child_deleted(&p.r_events).is_empty());

    // The new pair carries on.
    p.i = *new_i;
    p.r = Some(*new_r);
    p.i_events.clear();
    p.r_events.clear();
    p.i.check_liveness(p.now, &mut p.rng).unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Alive)));
    p.i.rekey_child(p.now, child_in, &mut p.rng).unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    let c = Pair::children(&p.i_events);
    assert_eq!(
        (c.len(), c[0].rekeys),
        (1, Some(child_in)),
        "child known to the new SA"
    );

    // The responder rekeys the new IKE SA in turn.
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1); // finish the CHILD SA delete
    let r = p.r.as_mut().unwrap();
    r.rekey_ike(p.now, &mut p.rng).unwrap();
    let t = r.poll_transmit().unwrap();
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &t.data, &mut p.rng);
    let back = p.i.poll_transmit().unwrap();
    p.r.as_mut()
        .unwrap()
        .handle(p.now, I_ADDR.parse().unwrap(), &back.data, &mut p.rng);
    p.drain();
    let third_i = take_rekeyed(&mut p.i_events).expect("initiator side of the second rekey");
    let third_r = take_rekeyed(&mut p.r_events).expect("responder side of the second rekey");
    assert_eq!(third_i.spis(), third_r.spis());
    assert_eq!(
        third_r.role(),
        Role::Initiator,
        "the rekey's initiator is the new initiator"
    );
}

/// PFS in CREATE_CHILD_SA (RFC 7296 §1.3.1): a new child and a rekey with
/// a key exchange; a responder that requires PFS refuses a request without
/// it, and names its group when the initiator's differs.
#[test]
fn pfs_for_new_and_rekeyed_children() {
    let net = |s: &str, l: u8| Selector::subnet(s.parse().unwrap(), l);
    let mut p = psk_pair();
    p.r_cfg.pfs = Some(DhGroup::Ecp256);
    p.establish();
    // The initiator has no PFS: the responder requires it.
    p.i.create_child(
        p.now,
        vec![net("198.19.1.0", 25)],
        vec![net("198.19.2.0", 25)],
        &mut p.rng,
    )
    .unwrap();
    p.i_to_r(|_| 1);
    p.r_to_i(|_| 1);
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Failed { notify: Some(n), .. } if *n == ike_wire::NotifyType::NO_PROPOSAL_CHOSEN)));
    // The responder starts one with PFS (ECP-256); the initiator accepts
    // the peer's key exchange although it requires none.
    let r = p.r.as_mut().unwrap();
    let old = Pair::children(&p.r_events)[0].spi_in;
    r.rekey_child(p.now, old, &mut p.rng).unwrap();
    let t = r.poll_transmit().unwrap();
    p.i.handle(p.now, R_ADDR.parse().unwrap(), &t.data, &mut p.rng);
    let back = p.i.poll_transmit().unwrap();
    let m = ike_wire::Message::parse(&back.data).unwrap();
    assert_eq!(m.payloads.len(), 1, "encrypted");
    p.r.as_mut()
        .unwrap()
        .handle(p.now, I_ADDR.parse().unwrap(), &back.data, &mut p.rng);
    p.drain();
    let (ic, rc) = (Pair::children(&p.i_events), Pair::children(&p.r_events));
    assert_eq!((ic.len(), rc.len()), (2, 2));
    assert_eq!(
        *ic[1].encr_out, *rc[1].encr_in,
        "the same PFS keys both sides"
    );
    assert_eq!(*ic[1].encr_in, *rc[1].encr_out);
    assert_ne!(*ic[1].encr_in, *ic[0].encr_in);
}

/// Certificate authentication (RFC 7296 §2.15, RFC 7427): a CA made here
/// with rcgen, the initiator on ECDSA P-256, the responder on RSA-2048.
mod certs {
    use super::*;
    use ike_pki::{Credential, PrivateKey, TrustStore};
    use ike_wire::NotifyType;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
    };
    use std::sync::Arc;

    const P256: &str = include_str!("../../ike-pki/tests/data/p256.pkcs8.pem");
    const RSA: &str = include_str!("../../ike-pki/tests/data/rsa2048.pkcs8.pem");

    struct Pki {
        ca: Issuer<'static, KeyPair>,
        ca_der: Vec<u8>,
    }

    impl Pki {
        fn new() -> Pki {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut p = CertificateParams::new(vec![]).unwrap();
            p.distinguished_name
                .push(DnType::CommonName, "Sluice Test CA");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let der = p.self_signed(&key).unwrap().der().to_vec();
            Pki {
                ca: Issuer::new(p, key),
                ca_der: der,
            }
        }

        fn cert(&self, key_pem: &str, name: &str, serial: u64) -> Vec<u8> {
            let key = KeyPair::from_pem(key_pem).unwrap();
            let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.subject_alt_names
                .push(SanType::IpAddress("198.18.0.9".parse().unwrap()));
            p.serial_number = Some(SerialNumber::from(serial));
            p.signed_by(&key, &self.ca).unwrap().der().to_vec()
        }

        fn trust(&self, revoked: &[u64]) -> Arc<TrustStore> {
            let crls = if revoked.is_empty() {
                vec![]
            } else {
                let crl = CertificateRevocationListParams {
                    this_update: rcgen::date_time_ymd(2020, 1, 1),
                    next_update: rcgen::date_time_ymd(2099, 1, 1),
                    crl_number: SerialNumber::from(1u64),
                    issuing_distribution_point: None,
                    revoked_certs: revoked
                        .iter()
                        .map(|s| RevokedCertParams {
                            serial_number: SerialNumber::from(*s),
                            revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                            reason_code: None,
                            invalidity_date: None,
                        })
                        .collect(),
                    key_identifier_method: KeyIdMethod::Sha256,
                }
                .signed_by(&self.ca)
                .unwrap();
                vec![crl.der().to_vec()]
            };
            Arc::new(TrustStore::new(std::slice::from_ref(&self.ca_der), &crls).unwrap())
        }
    }

    fn cert_cfg(
        base: Config,
        key_pem: &str,
        cert: Vec<u8>,
        trust: Arc<TrustStore>,
        send: SendCert,
    ) -> Config {
        let key = PrivateKey::from_bytes(key_pem.as_bytes()).unwrap();
        Config {
            local_auth: LocalAuth::PubKey(Arc::new(Credential::new(key, &[cert]).unwrap())),
            remote_auth: RemoteAuth::PubKey(trust),
            send_cert: send,
            ..base
        }
    }

    fn pair(i_serial: u64, r_name: &str, revoked: &[u64], i_send: SendCert) -> Pair {
        pair_with(i_serial, r_name, revoked, i_send, Some(1280), Some(1280))
    }

    fn pair_with(
        i_serial: u64,
        r_name: &str,
        revoked: &[u64],
        i_send: SendCert,
        i_frag: Option<usize>,
        r_frag: Option<usize>,
    ) -> Pair {
        let pki = Pki::new();
        let base = |l: &str, r: &str, frag: Option<usize>| Config {
            fragment_size: frag,
            ..cfg(l, r, "unused-psk-0123456789", vec![DhGroup::Curve25519])
        };
        Pair::new(
            cert_cfg(
                base("a.psw.test", "b.psw.test", i_frag),
                P256,
                pki.cert(P256, "a.psw.test", i_serial),
                pki.trust(&[]),
                i_send,
            ),
            cert_cfg(
                base("b.psw.test", "a.psw.test", r_frag),
                RSA,
                pki.cert(RSA, r_name, 2),
                pki.trust(revoked),
                SendCert::IfAsked,
            ),
        )
    }

    /// IKE_SA_INIT both ways, then the initiator's IKE_AUTH datagrams.
    fn auth_request(p: &mut Pair) -> Vec<Vec<u8>> {
        p.i_to_r(|_| 1);
        p.r_to_i(|_| 1);
        let mut out = Vec::new();
        while let Some(t) = p.i.poll_transmit() {
            out.push(t.data);
        }
        out
    }

    fn deliver_to_r(p: &mut Pair, d: &[u8]) {
        let from = SocketAddr::new(p.i_seen_as.ip(), 500);
        p.r.as_mut().unwrap().handle(p.now, from, d, &mut p.rng);
        p.drain();
    }

    fn r_datagrams(p: &mut Pair) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(t) = p.r.as_mut().unwrap().poll_transmit() {
            out.push(t.data);
        }
        out
    }

    fn deliver_to_i(p: &mut Pair, d: &[u8]) {
        p.i.handle(p.now, R_ADDR.parse().unwrap(), d, &mut p.rng);
        p.drain();
    }

    /// RFC 7383: with a 576-byte limit, both certificate-bearing IKE_AUTH
    /// messages go out in fragments (arriving out of order here), none
    /// larger than the limit, and the tunnel comes up.
    #[test]
    fn ike_auth_is_fragmented_both_ways_and_reassembled() {
        let mut p = pair_with(1, "b.psw.test", &[], SendCert::Always, Some(576), Some(576));
        let req = auth_request(&mut p);
        assert!(
            req.len() >= 2,
            "IKE_AUTH request in {} datagrams",
            req.len()
        );
        // IPv4 + UDP headers = 28.
        assert!(
            req.iter().all(|d| d.len() + 28 <= 576),
            "{:?}",
            req.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for d in req.iter().rev() {
            deliver_to_r(&mut p, d);
        }
        let resp = r_datagrams(&mut p);
        assert!(
            resp.len() >= 2,
            "RSA certificate response in {} datagrams",
            resp.len()
        );
        assert!(resp.iter().all(|d| d.len() + 28 <= 576));
        for d in &resp {
            deliver_to_i(&mut p, d);
        }
        p.assert_established();
        assert!(
            logs(&p.r_events).contains("reassembled IKE_AUTH request 1 from"),
            "{}",
            logs(&p.r_events)
        );
        assert!(logs(&p.i_events).contains("reassembled IKE_AUTH response 1 from"));
    }

    /// Lost fragment: nothing happens until the initiator retransmits all
    /// fragments; a retransmitted request after the answer gets the
    /// response again on fragment 1 only (RFC 7383 §2.6.1).
    #[test]
    fn a_lost_fragment_is_recovered_by_retransmission() {
        let mut p = pair_with(1, "b.psw.test", &[], SendCert::Always, Some(576), Some(576));
        let req = auth_request(&mut p);
        for d in req.iter().skip(1) {
            deliver_to_r(&mut p, d);
        }
        assert!(
            r_datagrams(&mut p).is_empty(),
            "incomplete request answered"
        );
        p.advance(Duration::from_secs(1));
        let again: Vec<Vec<u8>> =
            std::iter::from_fn(|| p.i.poll_transmit().map(|t| t.data)).collect();
        assert_eq!(again.len(), req.len(), "every fragment is retransmitted");
        for d in &again {
            deliver_to_r(&mut p, d);
        }
        let resp = r_datagrams(&mut p);
        assert!(!resp.is_empty());
        for d in &again {
            deliver_to_r(&mut p, d);
        }
        assert_eq!(
            r_datagrams(&mut p).len(),
            resp.len(),
            "the response once more, for fragment 1 only"
        );
        for d in &resp {
            deliver_to_i(&mut p, d);
        }
        p.assert_established();
    }

    /// A forged fragment is dropped before it is kept: the genuine ones
    /// still complete the message.
    #[test]
    fn a_tampered_fragment_is_not_kept() {
        let mut p = pair_with(1, "b.psw.test", &[], SendCert::Always, Some(576), Some(576));
        let req = auth_request(&mut p);
        let mut bad = req[1].clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        deliver_to_r(&mut p, &bad);
        assert!(p.r_events.iter().any(|e| matches!(e, Event::Dropped(_))));
        for d in &req {
            deliver_to_r(&mut p, d);
        }
        for d in r_datagrams(&mut p) {
            deliver_to_i(&mut p, &d);
        }
        p.assert_established();
    }

    /// Hostile fragments (bit flips, forged numbers and totals, truncated,
    /// duplicated, reordered, dropped) ahead of the genuine ones: nothing
    /// panics, nothing forged is kept, and the genuine fragments still
    /// complete the message.
    #[test]
    fn hostile_fragments_change_nothing() {
        let mut x = Rng(0xf7a9_0000_1234_5678);
        let mut next = |n: usize| -> usize {
            let mut b = [0u8; 4];
            x.fill(&mut b);
            u32::from_le_bytes(b) as usize % n.max(1)
        };
        for round in 0..40 {
            let mut p = pair_with(1, "b.psw.test", &[], SendCert::Always, Some(576), Some(576));
            let req = auth_request(&mut p);
            for _ in 0..12 {
                let mut d = req[next(req.len())].clone();
                match next(5) {
                    0 => {
                        let i = next(d.len());
                        d[i] ^= 1 << next(8);
                    }
                    // Fragment number / total (after the 28-byte header
                    // and the 4-byte SKF payload header).
                    1 => d[32 + next(4)] = next(256) as u8,
                    2 => d.truncate(next(d.len())),
                    3 => d.extend_from_slice(&[0; 16]),
                    _ => {}
                }
                deliver_to_r(&mut p, &d);
            }
            // Unmodified copies may have completed the request already.
            let mut resp = r_datagrams(&mut p);
            for d in &req {
                deliver_to_r(&mut p, d);
            }
            resp.extend(r_datagrams(&mut p));
            assert!(
                !resp.is_empty(),
                "round {round}: no response to the genuine fragments"
            );
            for d in &resp {
                deliver_to_i(&mut p, d);
            }
            p.assert_established();
        }
    }

    /// Fragmentation is used only when both announced it.
    #[test]
    fn no_fragments_unless_both_support_them() {
        let mut p = pair_with(1, "b.psw.test", &[], SendCert::Always, Some(576), None);
        let req = auth_request(&mut p);
        assert_eq!(req.len(), 1, "one whole IKE_AUTH request");
        assert!(req[0].len() + 28 > 576);
        deliver_to_r(&mut p, &req[0]);
        let resp = r_datagrams(&mut p);
        assert_eq!(resp.len(), 1);
        deliver_to_i(&mut p, &resp[0]);
        p.assert_established();
    }

    fn exchange(p: &mut Pair) {
        p.i_to_r(|_| 1);
        p.r_to_i(|_| 1);
        p.i_to_r(|_| 1);
        p.r_to_i(|_| 1);
    }

    fn logs(ev: &[Event]) -> String {
        ev.iter()
            .filter_map(|e| match e {
                Event::Log(m) => Some(m.as_str()),
                Event::Failed { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn auth_failed(ev: &[Event]) -> bool {
        ev.iter().any(|e| {
            matches!(e, Event::Failed { notify: Some(n), .. } if *n == NotifyType::AUTHENTICATION_FAILED)
        })
    }

    #[test]
    fn ecdsa_and_rsa_certificates_bring_the_tunnel_up() {
        let mut p = pair(1, "b.psw.test", &[], SendCert::IfAsked);
        exchange(&mut p);
        p.assert_established();
        let (i, r) = (logs(&p.i_events), logs(&p.r_events));
        assert!(
            r.contains("authentication of 'a.psw.test' with ECDSA_WITH_SHA256_DER successful"),
            "{r}"
        );
        assert!(
            i.contains("authentication of 'b.psw.test' with RSA_EMSA_PKCS1_SHA2_256 successful"),
            "{i}"
        );
        assert!(i.contains("trusted via CA \"CN=Sluice Test CA\""), "{i}");
    }

    #[test]
    fn a_certificate_without_the_peer_identity_is_refused() {
        let mut p = pair(1, "mallory.psw.test", &[], SendCert::IfAsked);
        exchange(&mut p);
        assert!(auth_failed(&p.i_events), "{}", logs(&p.i_events));
        let i = logs(&p.i_events);
        assert!(
            i.contains("identity 'b.psw.test' is not in certificate"),
            "{i}"
        );
        assert!(Pair::children(&p.i_events).is_empty());
    }

    #[test]
    fn a_revoked_certificate_is_refused() {
        let mut p = pair(77, "b.psw.test", &[77], SendCert::IfAsked);
        exchange(&mut p);
        assert!(auth_failed(&p.r_events), "{}", logs(&p.r_events));
        assert!(auth_failed(&p.i_events), "{}", logs(&p.i_events));
        assert!(
            logs(&p.r_events).contains("revoked"),
            "{}",
            logs(&p.r_events)
        );
        // The same certificate with another serial is fine.
        let mut ok = pair(78, "b.psw.test", &[77], SendCert::IfAsked);
        exchange(&mut ok);
        ok.assert_established();
    }

    #[test]
    fn a_peer_that_sends_no_certificate_is_refused() {
        let mut p = pair(1, "b.psw.test", &[], SendCert::Never);
        exchange(&mut p);
        assert!(auth_failed(&p.r_events));
        assert!(
            logs(&p.r_events).contains("peer sent no certificate"),
            "{}",
            logs(&p.r_events)
        );
    }

    #[test]
    fn a_psk_peer_cannot_pass_for_a_certificate_one() {
        let pki = Pki::new();
        let i = cfg(
            "a.psw.test",
            "b.psw.test",
            "sluice-psk-0123456789",
            vec![DhGroup::Curve25519],
        );
        let r = cert_cfg(
            cfg(
                "b.psw.test",
                "a.psw.test",
                "sluice-psk-0123456789",
                vec![DhGroup::Curve25519],
            ),
            RSA,
            pki.cert(RSA, "b.psw.test", 2),
            pki.trust(&[]),
            SendCert::Always,
        );
        let mut p = Pair::new(i, r);
        exchange(&mut p);
        assert!(auth_failed(&p.r_events));
        assert!(logs(&p.r_events).contains("a certificate is required"));
    }
}
