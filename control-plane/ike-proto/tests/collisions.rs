//! Exchange collisions (RFC 7296 §2.8.1, §2.18, §2.25): two established
//! peers each start an operation on the same SA (rekey, delete, of a CHILD
//! SA or the IKE SA) and every order of the first moves (who acts, which
//! datagram arrives) is played out, each direction FIFO as on one path.
//! After each run the peers must agree: the same IKE SA (or none), mirrored
//! CHILD SAs with the same keys, nothing half-deleted or orphaned, and
//! message IDs in step (a liveness check each way is answered).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use ike_crypto::ke::DhGroup;
use ike_proto::*;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    RekeyChild,
    RekeyIke,
    DeleteChild,
    DeleteIke,
    /// A CHILD SA rekey and, queued behind it, an IKE SA rekey.
    RekeyChildThenIke,
}

/// A CHILD SA as one side sees it: (spi_in, spi_out, encr_in, encr_out).
type Child = (u32, u32, Vec<u8>, Vec<u8>);

struct Side {
    sas: Vec<IkeSa>,
    children: Vec<Child>,
    log: Vec<String>,
    alive: usize,
}

struct World {
    now: Instant,
    rng: Rng,
    a: Side,
    b: Side,
    /// Datagrams in flight a -> b and b -> a.
    ab: VecDeque<Vec<u8>>,
    ba: VecDeque<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    ActA,
    ActB,
    DeliverAb,
    DeliverBa,
}

impl Side {
    fn new() -> Side {
        Side {
            sas: Vec::new(),
            children: Vec::new(),
            log: Vec::new(),
            alive: 0,
        }
    }

    /// The SA that holds the tunnel: the newest established one.
    fn current(&mut self) -> Option<&mut IkeSa> {
        self.sas
            .iter_mut()
            .rev()
            .find(|s| s.state() == State::Established)
    }

    /// Moves datagrams to the wire and applies events, including those of
    /// IKE SAs that rekeys create.
    fn collect(&mut self, wire: &mut VecDeque<Vec<u8>>) {
        let mut i = 0;
        while i < self.sas.len() {
            while let Some(t) = self.sas[i].poll_transmit() {
                wire.push_back(t.data);
            }
            while let Some(e) = self.sas[i].poll_event() {
                match e {
                    Event::ChildInstalled(c) => self.children.push((
                        c.spi_in,
                        c.spi_out,
                        c.encr_in.to_vec(),
                        c.encr_out.to_vec(),
                    )),
                    Event::ChildDeleted { spi_in, .. } => {
                        self.children.retain(|c| c.0 != spi_in);
                    }
                    Event::IkeRekeyed(n) | Event::IkeRedundant(n) => self.sas.push(*n),
                    Event::Alive => self.alive += 1,
                    Event::Log(l) => self.log.push(l),
                    Event::Failed { reason, .. } => self.log.push(format!("FAILED {reason}")),
                    Event::RekeyFailed { child, notify } => {
                        self.log
                            .push(format!("rekey of {child:?} failed: {notify}"));
                    }
                    Event::Dropped(d) => self.log.push(format!("dropped: {d}")),
                    _ => {}
                }
            }
            i += 1;
        }
        self.sas.retain(|s| s.state() != State::Closed);
    }

    fn deliver(&mut self, now: Instant, from: SocketAddr, d: &[u8], rng: &mut Rng) {
        let spi_i = u64::from_be_bytes(d[..8].try_into().unwrap());
        let spi_r = u64::from_be_bytes(d[8..16].try_into().unwrap());
        // The IKE_SA_INIT response names the responder's SPI we lack yet.
        let pos = self
            .sas
            .iter()
            .position(|s| s.spis() == (spi_i, spi_r))
            .or_else(|| self.sas.iter().position(|s| s.spis() == (spi_i, 0)));
        match pos.map(|p| &mut self.sas[p]) {
            Some(sa) => sa.handle(now, from, d, rng),
            None => self
                .log
                .push(format!("no IKE SA {spi_i:016x}_i {spi_r:016x}_r")),
        }
    }

    fn act(&mut self, act: Act, now: Instant, rng: &mut Rng) {
        let child = self.children.first().map(|c| c.0);
        let Some(sa) = self.current() else { return };
        let r = match (act, child) {
            (Act::RekeyChild, Some(c)) => sa.rekey_child(now, c, rng).map(|_| ()),
            (Act::DeleteChild, Some(c)) => sa.delete_child(now, c, rng),
            (Act::RekeyIke, _) => sa.rekey_ike(now, rng),
            (Act::DeleteIke, _) => sa.delete(now, rng),
            (Act::RekeyChildThenIke, Some(c)) => sa
                .rekey_child(now, c, rng)
                .map(|_| ())
                .and_then(|()| sa.rekey_ike(now, rng)),
            (_, None) => Ok(()),
        };
        if let Err(e) = r {
            self.log.push(format!("{act:?} not started: {e}"));
        }
    }
}

impl World {
    /// Two peers with one IKE SA and one CHILD SA.
    fn established() -> World {
        let mut rng = Rng(0x5eed_0123_4567_89ab);
        let now = Instant::now();
        let dh = vec![DhGroup::Curve25519];
        let i = IkeSa::initiate(
            cfg(
                "a.psw.test",
                "b.psw.test",
                "sluice-psk-0123456789",
                dh.clone(),
            ),
            I_ADDR.parse().unwrap(),
            R_ADDR.parse().unwrap(),
            now,
            &mut rng,
        )
        .unwrap();
        let mut w = World {
            now,
            rng,
            a: Side::new(),
            b: Side::new(),
            ab: VecDeque::new(),
            ba: VecDeque::new(),
        };
        w.a.sas.push(i);
        w.a.collect(&mut w.ab);
        let init = w.ab.pop_front().unwrap();
        let r = IkeSa::accept(
            cfg("b.psw.test", "a.psw.test", "sluice-psk-0123456789", dh),
            R_ADDR.parse().unwrap(),
            I_ADDR.parse().unwrap(),
            now,
            &init,
            &mut w.rng,
        )
        .unwrap();
        w.b.sas.push(r);
        w.settle();
        assert_eq!(w.a.children.len(), 1);
        w
    }

    fn step(&mut self, m: Move, acts: (Act, Act)) -> bool {
        let a_addr: SocketAddr = I_ADDR.parse().unwrap();
        let b_addr: SocketAddr = R_ADDR.parse().unwrap();
        match m {
            Move::ActA => self.a.act(acts.0, self.now, &mut self.rng),
            Move::ActB => self.b.act(acts.1, self.now, &mut self.rng),
            Move::DeliverAb => {
                let Some(d) = self.ab.pop_front() else {
                    return false;
                };
                self.b.deliver(self.now, a_addr, &d, &mut self.rng);
            }
            Move::DeliverBa => {
                let Some(d) = self.ba.pop_front() else {
                    return false;
                };
                self.a.deliver(self.now, b_addr, &d, &mut self.rng);
            }
        }
        self.a.collect(&mut self.ab);
        self.b.collect(&mut self.ba);
        true
    }

    /// Delivers everything in flight, in turns, and lets timers run until
    /// nothing is pending.
    fn settle(&mut self) {
        let noop = (Act::RekeyChild, Act::RekeyChild);
        for _ in 0..200 {
            self.a.collect(&mut self.ab);
            self.b.collect(&mut self.ba);
            let moved = self.step(Move::DeliverAb, noop) | self.step(Move::DeliverBa, noop);
            if moved {
                continue;
            }
            let pending = self
                .a
                .sas
                .iter()
                .chain(self.b.sas.iter())
                .any(|s| s.poll_timeout().is_some());
            if !pending {
                return;
            }
            self.now += Duration::from_secs(2);
            for s in self.a.sas.iter_mut().chain(self.b.sas.iter_mut()) {
                s.handle_timeout(self.now);
            }
        }
        panic!("no quiescence");
    }

    /// The peers agree; returns the number of CHILD SAs.
    fn check(&mut self, what: &str) -> usize {
        let logs = format!("{what}\n  a: {:#?}\n  b: {:#?}", self.a.log, self.b.log);
        let ctx = || logs.clone();
        let live = |s: &Side| -> Vec<(u64, u64, State)> {
            s.sas
                .iter()
                .map(|x| (x.spis().0, x.spis().1, x.state()))
                .collect()
        };
        let (la, lb) = (live(&self.a), live(&self.b));
        assert!(
            la.len() <= 1 && lb.len() <= 1,
            "IKE SAs left: {la:x?} / {lb:x?}: {}",
            ctx()
        );
        assert_eq!(la, lb, "IKE SAs differ: {}", ctx());
        assert!(
            la.iter().all(|x| x.2 == State::Established),
            "an IKE SA waits for nothing: {la:x?}: {}",
            ctx()
        );
        let mut mirror: Vec<Child> = self
            .b
            .children
            .iter()
            .map(|(i, o, ei, eo)| (*o, *i, eo.clone(), ei.clone()))
            .collect();
        mirror.sort();
        let mut ours = self.a.children.clone();
        ours.sort();
        assert_eq!(ours, mirror, "CHILD SAs do not mirror: {}", ctx());
        assert!(ours.len() <= 1, "redundant CHILD SAs left: {}", ctx());
        if la.is_empty() {
            assert!(ours.is_empty(), "CHILD SAs without an IKE SA: {}", ctx());
            return 0;
        }
        // Message IDs in step: a liveness check each way is answered.
        let (alive_a, alive_b) = (self.a.alive, self.b.alive);
        let now = self.now;
        self.a
            .current()
            .unwrap()
            .check_liveness(now, &mut self.rng)
            .unwrap();
        self.b
            .current()
            .unwrap()
            .check_liveness(now, &mut self.rng)
            .unwrap();
        self.settle();
        assert_eq!(
            (self.a.alive, self.b.alive),
            (alive_a + 1, alive_b + 1),
            "liveness not answered: {}",
            ctx()
        );
        ours.len()
    }
}

/// Every sequence of the first `depth` moves in which both sides act,
/// each played from a fresh pair and then settled. Returns how many runs
/// there were and the CHILD SA counts seen.
fn explore(acts: (Act, Act), depth: usize) -> (usize, Vec<usize>, Vec<String>) {
    fn go(
        prefix: &mut Vec<Move>,
        depth: usize,
        acts: (Act, Act),
        runs: &mut usize,
        counts: &mut Vec<usize>,
        seen: &mut Vec<String>,
    ) {
        let acted = |p: &[Move], m: Move| p.contains(&m);
        if prefix.len() == depth
            || (acted(prefix, Move::ActA) && acted(prefix, Move::ActB) && prefix.len() > 2)
        {
            if !(acted(prefix, Move::ActA) && acted(prefix, Move::ActB)) {
                return;
            }
            let mut w = World::established();
            for m in prefix.iter() {
                if !w.step(*m, acts) {
                    return; // nothing in flight: not a distinct order
                }
            }
            w.settle();
            for l in w.a.log.iter().chain(w.b.log.iter()) {
                for tag in TAGS {
                    if l.contains(tag) && !seen.iter().any(|t| t == tag) {
                        seen.push(tag.to_string());
                    }
                }
            }
            let n = w.check(&format!("{acts:?} after {prefix:?}"));
            *runs += 1;
            if !counts.contains(&n) {
                counts.push(n);
            }
            return;
        }
        for m in [Move::ActA, Move::ActB, Move::DeliverAb, Move::DeliverBa] {
            if matches!(m, Move::ActA | Move::ActB) && acted(prefix, m) {
                continue;
            }
            prefix.push(m);
            go(prefix, depth, acts, runs, counts, seen);
            prefix.pop();
        }
    }
    let mut runs = 0;
    let mut counts = Vec::new();
    let mut seen = Vec::new();
    go(
        &mut Vec::new(),
        depth,
        acts,
        &mut runs,
        &mut counts,
        &mut seen,
    );
    seen.sort();
    println!("{acts:?}: {runs} orders, CHILD SAs left {counts:?}, outcomes {seen:?}");
    (runs, counts, seen)
}

/// What the runs are told apart by, from the peers' logs.
const TAGS: [&str; 8] = [
    "_i won",
    "_i lost",
    "IKE_SA rekey collision won",
    "IKE_SA rekey collision lost",
    "TEMPORARY_FAILURE",
    "our queued rekey is dropped",
    "was deleted by the peer during our rekey",
    "not started",
];

#[test]
fn child_sa_rekey_collisions_leave_one_child_sa() {
    let (runs, counts, seen) = explore((Act::RekeyChild, Act::RekeyChild), 6);
    assert!(runs >= 10, "{runs} runs");
    assert_eq!(counts, vec![1], "always exactly one CHILD SA");
    // Both ends of the nonce rule were exercised, and the rekey asked for
    // after the peer's had replaced the CHILD SA.
    for t in ["_i won", "_i lost", "not started"] {
        assert!(seen.iter().any(|s| s == t), "no run with {t:?}: {seen:?}");
    }
}

#[test]
fn ike_sa_rekey_collisions_leave_one_ike_sa_with_the_child() {
    let (runs, counts, seen) = explore((Act::RekeyIke, Act::RekeyIke), 6);
    assert!(runs >= 10, "{runs} runs");
    assert_eq!(counts, vec![1]);
    for t in ["IKE_SA rekey collision won", "IKE_SA rekey collision lost"] {
        assert!(seen.iter().any(|s| s == t), "no run with {t:?}: {seen:?}");
    }
}

#[test]
fn child_rekey_racing_a_delete() {
    let mut total = 0;
    for acts in [
        (Act::RekeyChild, Act::DeleteChild),
        (Act::DeleteChild, Act::RekeyChild),
    ] {
        let (runs, counts, _) = explore(acts, 6);
        total += runs;
        // Either the delete wins, or the rekey finished before the delete
        // was asked for and the new CHILD SA stays.
        assert!(counts.iter().all(|c| *c <= 1), "{acts:?}: {counts:?}");
        assert!(
            counts.contains(&0),
            "{acts:?}: the delete never won: {counts:?}"
        );
    }
    assert!(total >= 10, "{total} runs");
}

#[test]
fn ike_and_child_rekeys_colliding() {
    let mut total = 0;
    for acts in [
        (Act::RekeyIke, Act::RekeyChild),
        (Act::RekeyChild, Act::RekeyIke),
        // The old CHILD SA's Delete, queued behind the IKE SA rekey, moves
        // to the new IKE SA.
        (Act::RekeyChildThenIke, Act::RekeyChild),
        (Act::RekeyChildThenIke, Act::RekeyIke),
    ] {
        let (runs, counts, _) = explore(acts, 6);
        total += runs;
        assert_eq!(counts, vec![1], "{acts:?}");
    }
    assert!(total >= 10, "{total} runs");
}

#[test]
fn deletes_colliding_with_deletes_and_rekeys() {
    let mut total = 0;
    for acts in [
        (Act::DeleteChild, Act::DeleteChild),
        (Act::DeleteIke, Act::DeleteIke),
        (Act::RekeyIke, Act::DeleteIke),
        (Act::DeleteIke, Act::RekeyIke),
        (Act::DeleteIke, Act::RekeyChild),
    ] {
        let (runs, _, _) = explore(acts, 5);
        total += runs;
    }
    assert!(total >= 20, "{total} runs");
}
