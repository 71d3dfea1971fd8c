//! One poll-mode worker: it owns one queue on each port (the outside
//! interface and the inside one) through a [`PacketIo`], and per burst
//! classifies, looks SAs up in the shared table, runs the ESP engine over
//! the burst, rewrites the Ethernet header and transmits.
//!
//! Several queues, one SA (see docs/dataplane.md):
//! - Outbound sequence numbers come from the SA's shared counter with an
//!   atomic update (the engine's `fetch_update`), so any worker may
//!   encapsulate on any SA and every number is used once.
//! - An inbound SA's replay window has one owner: the first worker to
//!   receive for it claims it (compare-and-swap on the SA's `owner` word).
//!   Another worker receiving for that SA copies the frame into a buffer
//!   from a shared pool and pushes it onto the owner's lock-free queue
//!   (crossbeam `ArrayQueue`); the owner decrypts it with its own packets.
//!   No locks, no allocation per packet.

use crate::fib::{Fib, NextHop};
use crate::pkt::{self, ETH_HDR};
use arc_swap::ArcSwap;
use arrayvec::ArrayVec;
use crossbeam_queue::ArrayQueue;
use sluice_ebpf::{Action, Class, Role};
use sluice_esp::wire::{checksum_add, checksum_finish};
use sluice_esp::{
    decap_burst, encap_burst, parse_esp, Algorithm, Backend, Cipher, DecapItem, DropReason,
    EncapItem, InboundSa, OutboundSa, PacketBuf, Tunnel, UdpEncap,
};
use sluice_io::{Desc, IoDrops, PacketIo, MIN_HEADROOM};
use sluice_sa_table::{
    Direction, DpEvent, PolicyMatch, ReaderThread, SaConfig, SaHandle, WorkerSnapshot, NO_OWNER,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packets per receive burst.
pub const BURST: usize = 64;
/// Ports per worker (outside and inside queues), at most.
pub const MAX_PORTS: usize = 4;
/// Packets of an outbound burst after fragmentation, at most.
pub const PLAN: usize = 2 * BURST;
/// Largest frame a handoff buffer holds.
pub const HANDOFF_FRAME: usize = 2048;

/// What a port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// Towards the peers: ESP arrives here, encrypted traffic leaves here.
    Outside,
    /// Towards the protected networks: traffic to protect arrives here.
    Inside,
    /// The kernel's side of the port at this index (a TAP): what the kernel
    /// sends here (IKE, ARP, ND, its own traffic) leaves by that port as it
    /// is. Used where no XDP program splits the traffic (DPDK ports).
    Exception(usize),
}

/// One of the worker's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// Role.
    pub role: PortRole,
    /// Kernel interface index (to match routes' output interfaces); for a
    /// DPDK port, that of its TAP, where the kernel routes to it.
    pub ifindex: u32,
    /// Software steering: set on ports no XDP program sees (DPDK), to the
    /// index of their [`PortRole::Exception`] port. Received frames are
    /// classified as the XDP program would ([`sluice_ebpf::classify`]) and
    /// those it passes to the kernel go there.
    pub exception: Option<usize>,
}

impl Port {
    /// A port that an XDP program steers (AF_XDP).
    pub fn new(role: PortRole, ifindex: u32) -> Port {
        Port {
            role,
            ifindex,
            exception: None,
        }
    }

    /// Whether routes can point at it (not an exception port).
    fn routable(&self, ifindex: u32) -> bool {
        self.ifindex == ifindex && !matches!(self.role, PortRole::Exception(_))
    }
}

/// Traffic on an inside port that matches no policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPolicy {
    /// Routed in the clear (counted).
    Forward,
    /// Dropped (counted).
    Drop,
}

/// A frame passed to the worker owning its SA.
#[derive(Debug)]
pub struct Handoff {
    len: usize,
    data: [u8; HANDOFF_FRAME],
}

/// What all workers share with each other and the control thread.
#[derive(Debug)]
pub struct Shared {
    /// Set to stop the workers.
    pub stop: AtomicBool,
    /// Current forwarding state.
    pub fib: ArcSwap<Fib>,
    /// Next hops whose MAC a worker missed: the control thread asks the
    /// kernel to resolve them.
    pub resolve: ArrayQueue<IpAddr>,
    /// Policies hit by traffic while no SA is bound (trap policies): the
    /// control thread tells sluiced, which initiates (an acquire).
    pub acquire: ArrayQueue<u32>,
    /// Per worker, frames handed to it as the owner of their SA.
    pub handoff: Vec<ArrayQueue<Box<Handoff>>>,
    /// Free handoff buffers.
    pub pool: ArrayQueue<Box<Handoff>>,
    /// Policy for unmatched inside traffic.
    pub no_policy: NoPolicy,
    /// Oversize IPv4 packets without DF are fragmented before encryption
    /// (RFC 4459 §5.1); otherwise dropped. DF and IPv6 always get ICMP.
    pub fragment: bool,
    /// Crypto backend for the key schedules.
    pub backend: Backend,
    /// Set by a worker that could not start (with [`Shared::stop`]): the
    /// process then exits with an error.
    pub failed: AtomicBool,
    /// Software steering's packets per class ([`Class::index`]), outside
    /// ports then inside ports: the XDP program's counters for DPDK ports.
    pub steered: [[AtomicU64; Class::COUNT]; 2],
}

impl Shared {
    /// State for `workers` workers, with `handoff_buffers` frames of
    /// handoff capacity.
    pub fn new(workers: usize, fib: Fib, no_policy: NoPolicy, backend: Backend) -> Shared {
        let buffers = 1024;
        let pool = ArrayQueue::new(buffers);
        for _ in 0..buffers {
            let _ = pool.push(Box::new(Handoff {
                len: 0,
                data: [0; HANDOFF_FRAME],
            }));
        }
        Shared {
            stop: AtomicBool::new(false),
            fib: ArcSwap::from_pointee(fib),
            resolve: ArrayQueue::new(256),
            acquire: ArrayQueue::new(256),
            handoff: (0..workers).map(|_| ArrayQueue::new(buffers)).collect(),
            pool,
            no_policy,
            backend,
            fragment: true,
            failed: AtomicBool::new(false),
            steered: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

/// Outcome of classifying an inside frame.
enum Out {
    /// Encrypt with this SA; the IP packet's own length (without the
    /// frame's padding).
    Protect(SaHandle, u32),
    Clear,
    TooBig(u32),
    /// Encrypt as IPv4 fragments of at most this many bytes each.
    Fragment(SaHandle, u32),
    Drop(DropReason),
    NotForUs,
}

/// Per-burst bookkeeping of packets leaving a worker: what to transmit on
/// which port and what was lost on the way, settled once per burst.
struct Leaving<const N: usize> {
    out: [ArrayVec<Desc, N>; MAX_PORTS],
    lost: ArrayVec<Desc, N>,
    drops: ArrayVec<(Desc, DropReason), N>,
    resolve: ArrayVec<IpAddr, N>,
    ev: [u64; DpEvent::COUNT],
}

impl<const N: usize> Leaving<N> {
    fn new() -> Self {
        Leaving {
            out: std::array::from_fn(|_| ArrayVec::new()),
            lost: ArrayVec::new(),
            drops: ArrayVec::new(),
            resolve: ArrayVec::new(),
            ev: [0; DpEvent::COUNT],
        }
    }

    /// Frames the IP packet at `buf[head..head + len]` (of chunk `d`) for
    /// the next hop towards `dst` and queues it on that port; true if
    /// queued, else it is counted (no route, unresolved neighbour, no
    /// headroom) and its chunk set aside.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        ports: &[Port],
        fib: &Fib,
        dst: IpAddr,
        d: Desc,
        buf: &mut [u8],
        head: usize,
        len: usize,
    ) -> bool {
        let Some(hop) = fib.route(dst) else {
            self.ev[DpEvent::NoRoute as usize] += 1;
            let _ = self.lost.try_push(d);
            return false;
        };
        let Some(port) = ports.iter().position(|p| p.routable(hop.oif)) else {
            self.ev[DpEvent::NoRoute as usize] += 1;
            let _ = self.lost.try_push(d);
            return false;
        };
        let Some(mac) = hop.mac else {
            self.ev[DpEvent::NeighUnresolved as usize] += 1;
            let _ = self.resolve.try_push(hop.via);
            let _ = self.lost.try_push(d);
            return false;
        };
        let et = pkt::ethertype_of(buf.get(head..).unwrap_or(&[]));
        if head < ETH_HDR || !pkt::write_eth(buf, head - ETH_HDR, mac, hop.src_mac, et) {
            let _ = self.drops.try_push((d, DropReason::NoHeadroom));
            return false;
        }
        match self.out.get_mut(port) {
            Some(list) if !list.is_full() => {
                list.push(Desc {
                    addr: d.addr,
                    off: (head - ETH_HDR) as u32,
                    len: (len + ETH_HDR) as u32,
                });
                true
            }
            _ => {
                let _ = self.lost.try_push(d);
                false
            }
        }
    }
}

fn peer_of(sa: &OutboundSa) -> IpAddr {
    match sa.tunnel {
        Tunnel::V4 { dst, .. } => IpAddr::V4(dst),
        Tunnel::V6 { dst, .. } => IpAddr::V6(dst),
    }
}

/// A worker.
pub struct Worker<I: PacketIo> {
    id: usize,
    workers: usize,
    io: I,
    ports: Vec<Port>,
    t: ReaderThread,
    shared: Arc<Shared>,
    inbound: HashMap<SaHandle, InboundSa>,
    outbound: HashMap<SaHandle, OutboundSa>,
    snap: WorkerSnapshot,
    loops: u64,
    /// Last cumulative I/O drops read per port (to add the differences).
    io_seen: Vec<IoDrops>,
    io_read: Instant,
    /// Software steering's counts not yet added to [`Shared::steered`].
    steered: [[u64; Class::COUNT]; 2],
}

/// Per-SA totals of one burst.
#[derive(Default)]
struct SaTally {
    list: ArrayVec<(SaHandle, u64, u64, [u64; DropReason::COUNT]), 16>,
}

impl SaTally {
    fn add(&mut self, t: &ReaderThread, h: SaHandle, r: Result<usize, DropReason>) {
        let (p, b) = match r {
            Ok(n) => (1, n as u64),
            Err(_) => (0, 0),
        };
        let pos = match self.list.iter().position(|e| e.0 == h) {
            Some(i) => i,
            None => {
                if self.list.is_full() {
                    self.flush(t);
                }
                self.list.push((h, 0, 0, [0; DropReason::COUNT]));
                self.list.len() - 1
            }
        };
        if let Some(e) = self.list.get_mut(pos) {
            e.1 += p;
            e.2 += b;
            if let Err(d) = r {
                if let Some(c) = e.3.get_mut(d as usize) {
                    *c += 1;
                }
            }
        }
    }

    fn flush(&mut self, t: &ReaderThread) {
        for (h, p, b, d) in self.list.drain(..) {
            if let Some(sa) = t.sa(h) {
                sa.counters().add(p, b, &d);
            }
        }
    }
}

fn cipher_of(c: &SaConfig, backend: Backend) -> Option<Cipher> {
    let alg = Algorithm::from_ids(c.encr_id, c.key_bits, c.integ_id)?;
    Cipher::new(alg, backend, &c.encr_key, &c.integ_key).ok()
}

/// The engine's view of an outbound SA from its table record.
pub fn outbound_sa(c: &SaConfig, backend: Backend) -> Option<OutboundSa> {
    let tunnel = Tunnel::new(c.src, c.dst)?;
    let encap = c.encap.map(|(s, d)| UdpEncap {
        src_port: s,
        dst_port: d,
    });
    Some(OutboundSa::new(
        c.spi,
        cipher_of(c, backend)?,
        c.esn,
        tunnel,
        encap,
    ))
}

/// The engine's view of an inbound SA from its table record.
pub fn inbound_sa(c: &SaConfig, backend: Backend) -> Option<InboundSa> {
    Some(InboundSa::new(c.spi, cipher_of(c, backend)?, c.esn))
}

impl<I: PacketIo> Worker<I> {
    /// Worker `id` of `workers`, over `io` whose ports are `ports` (in the
    /// backend's port order; at most [`MAX_PORTS`], further ports are not
    /// polled).
    pub fn new(
        id: usize,
        workers: usize,
        io: I,
        mut ports: Vec<Port>,
        t: ReaderThread,
        shared: Arc<Shared>,
    ) -> Worker<I> {
        ports.truncate(MAX_PORTS);
        Worker {
            id,
            workers,
            io,
            ports,
            t,
            shared,
            inbound: HashMap::new(),
            outbound: HashMap::new(),
            snap: WorkerSnapshot::default(),
            loops: 0,
            io_seen: vec![IoDrops::default(); MAX_PORTS],
            io_read: Instant::now(),
            steered: [[0; Class::COUNT]; 2],
        }
    }

    /// The backend (for tests).
    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// Polls until [`Shared::stop`] is set: busy while there is traffic,
    /// backing off (up to 1 ms sleeps) when idle.
    pub fn run(&mut self) {
        let mut idle = 0u32;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if self.poll() {
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
                if idle > 64 {
                    let us = 1u64 << (idle - 64).min(10);
                    std::thread::sleep(Duration::from_micros(us.min(1000)));
                }
            }
        }
        // The last figures, so a stopped data plane's counters are complete.
        self.read_io_drops();
        self.flush_steered();
        if let Some(c) = self.t.worker_counters(self.id) {
            c.add(&self.snap);
        }
        self.snap = WorkerSnapshot::default();
        self.t.offline();
    }

    /// One poll loop over every port; true if any packet was handled.
    pub fn poll(&mut self) -> bool {
        self.io.service();
        let fib = self.shared.fib.load_full();
        let mut busy = false;
        let mut descs = [Desc::default(); BURST];
        // Frames other workers handed over: this worker owns their SAs.
        let mut n = 0;
        if let Some(q) = self.shared.handoff.get(self.id) {
            while n < BURST {
                let Some(h) = q.pop() else { break };
                if let Some(mut d) = self.io.alloc() {
                    let chunk = self.io.chunk_mut(d);
                    let at = d.off as usize;
                    if let Some(dst) = chunk.get_mut(at..at + h.len) {
                        dst.copy_from_slice(&h.data[..h.len]);
                        d.len = h.len as u32;
                        descs[n] = d;
                        n += 1;
                    } else {
                        self.io.free(&[d]);
                    }
                }
                let _ = self.shared.pool.push(h);
            }
        }
        if n > 0 {
            busy = true;
            self.inbound(&descs[..n], &fib);
        }
        for p in 0..self.ports.len() {
            let n = self.io.rx_burst(p, &mut descs);
            if n == 0 {
                continue;
            }
            busy = true;
            self.snap.rx_packets += n as u64;
            self.snap.rx_bytes += descs[..n].iter().map(|d| u64::from(d.len)).sum::<u64>();
            let Some(port) = self.ports.get(p).copied() else {
                self.io.free(&descs[..n]);
                continue;
            };
            let n = match port.exception {
                Some(to) => self.steer(port, to, &mut descs[..n], &fib),
                None => n,
            };
            match port.role {
                PortRole::Outside => self.inbound(&descs[..n], &fib),
                PortRole::Inside => self.outbound(&descs[..n], &fib),
                PortRole::Exception(to) => self.send_as_is(to, &descs[..n]),
            }
        }
        if busy {
            self.flush_steered();
        }
        if busy {
            self.snap.bursts += 1;
            self.snap.busy_polls += 1;
        } else {
            self.snap.idle_polls += 1;
        }
        self.loops += 1;
        if busy || self.loops.is_multiple_of(256) {
            if let Some(c) = self.t.worker_counters(self.id) {
                c.add(&self.snap);
            }
            self.snap = WorkerSnapshot::default();
        }
        if self.loops.is_multiple_of(4096) {
            self.forget_stale();
        }
        if self.loops.is_multiple_of(64) && self.io_read.elapsed() >= Duration::from_millis(250) {
            self.io_read = Instant::now();
            self.read_io_drops();
        }
        self.t.quiescent();
        busy
    }

    /// Software steering of a burst received on `port`: what the XDP
    /// program would pass to the kernel is sent to exception port `to`; the
    /// rest is moved to the front of `descs`, and its length returned.
    /// Unicast frames for another MAC address (a promiscuous port on a
    /// shared segment) are dropped, as a NIC's filter would, and counted as
    /// `not_for_us`.
    fn steer(&mut self, port: Port, to: usize, descs: &mut [Desc], fib: &Fib) -> usize {
        let (xrole, tally) = match port.role {
            PortRole::Outside => (Role::Outside, 0),
            PortRole::Inside => (Role::Inside, 1),
            PortRole::Exception(_) => return descs.len(),
        };
        let mac = fib.link(port.ifindex).map(|l| l.mac);
        let mut kernel: ArrayVec<Desc, BURST> = ArrayVec::new();
        let mut keep = 0;
        for i in 0..descs.len() {
            let d = descs[i];
            let (at, len) = (d.off as usize, d.len as usize);
            let class = match self.io.chunk_mut(d).get(at..at + len) {
                Some(frame) => {
                    let dst = frame.get(..6);
                    if let (Some(dst), Some(mac)) = (dst, mac) {
                        if dst[0] & 1 == 0 && dst != mac {
                            self.event(DpEvent::NotForUs, 1);
                            self.io.free(&[d]);
                            continue;
                        }
                    }
                    sluice_ebpf::classify(frame, xrole, |a| fib.is_local(a))
                }
                None => Class::PassMalformed,
            };
            if let Some(c) = self.steered[tally].get_mut(class.index()) {
                *c += 1;
            }
            if class.action() == Action::Redirect {
                descs[keep] = d;
                keep += 1;
            } else if kernel.try_push(d).is_err() {
                self.io.free(&[d]);
            }
        }
        self.send_as_is(to, &kernel);
        keep
    }

    /// Sends frames unchanged on `port` (the exception path), freeing what
    /// the ring did not take.
    fn send_as_is(&mut self, port: usize, descs: &[Desc]) {
        if descs.is_empty() {
            return;
        }
        let sent = self.io.tx_burst(port, descs);
        self.snap.tx_packets += sent as u64;
        self.snap.tx_bytes += descs[..sent].iter().map(|d| u64::from(d.len)).sum::<u64>();
        if sent < descs.len() {
            self.event(DpEvent::TxFull, (descs.len() - sent) as u64);
            self.io.free(&descs[sent..]);
        }
    }

    fn flush_steered(&mut self) {
        for (mine, shared) in self.steered.iter_mut().zip(self.shared.steered.iter()) {
            for (n, total) in mine.iter_mut().zip(shared.iter()) {
                if *n > 0 {
                    total.fetch_add(*n, Ordering::Relaxed);
                    *n = 0;
                }
            }
        }
    }

    /// Adds what the kernel dropped below us since the last read.
    fn read_io_drops(&mut self) {
        for p in 0..self.ports.len() {
            let now = self.io.io_drops(p);
            let Some(seen) = self.io_seen.get_mut(p) else {
                continue;
            };
            let d = [
                (
                    DpEvent::IoRxDropped,
                    now.rx_dropped.saturating_sub(seen.rx_dropped),
                ),
                (
                    DpEvent::IoRxRingFull,
                    now.rx_ring_full.saturating_sub(seen.rx_ring_full),
                ),
                (
                    DpEvent::IoFillEmpty,
                    now.rx_fill_empty.saturating_sub(seen.rx_fill_empty),
                ),
                (
                    DpEvent::IoTxInvalid,
                    now.tx_invalid.saturating_sub(seen.tx_invalid),
                ),
            ];
            *seen = now;
            for (e, n) in d {
                if n > 0 {
                    self.event(e, n);
                }
            }
        }
    }

    /// Drops key schedules of SAs that are gone.
    fn forget_stale(&mut self) {
        let t = &self.t;
        self.inbound.retain(|h, _| t.sa(*h).is_some());
        self.outbound.retain(|h, _| t.sa(*h).is_some());
    }

    fn event(&mut self, e: DpEvent, n: u64) {
        if let Some(c) = self.snap.events.get_mut(e as usize) {
            *c += n;
        }
    }

    fn drop_pkt(&mut self, d: Desc, r: DropReason) {
        if let Some(c) = self.snap.drops.get_mut(r as usize) {
            *c += 1;
        }
        self.io.free(&[d]);
    }

    fn port_of(&self, ifindex: u32) -> Option<usize> {
        self.ports.iter().position(|p| p.routable(ifindex))
    }

    /// Asks for `via` to be resolved (once the queue has room).
    fn unresolved(&mut self, via: IpAddr) {
        let _ = self.shared.resolve.push(via);
        self.event(DpEvent::NeighUnresolved, 1);
    }

    /// The next hop for `dst` if it is one of our ports and resolved;
    /// counts and requests resolution otherwise.
    fn next_hop(&mut self, fib: &Fib, dst: IpAddr) -> Option<(usize, NextHop, [u8; 6])> {
        let Some(h) = fib.route(dst) else {
            self.event(DpEvent::NoRoute, 1);
            return None;
        };
        let Some(port) = self.port_of(h.oif) else {
            self.event(DpEvent::NoRoute, 1);
            return None;
        };
        let Some(mac) = h.mac else {
            self.unresolved(h.via);
            return None;
        };
        Some((port, h, mac))
    }

    /// Sends `out` (per port) and frees what the rings did not take.
    fn transmit<const N: usize>(&mut self, out: &mut [ArrayVec<Desc, N>]) {
        for (port, list) in out.iter_mut().enumerate() {
            if list.is_empty() {
                continue;
            }
            let sent = self.io.tx_burst(port, list);
            self.snap.tx_packets += sent as u64;
            self.snap.tx_bytes += list[..sent].iter().map(|d| u64::from(d.len)).sum::<u64>();
            if sent < list.len() {
                let rest = list.len() - sent;
                self.event(DpEvent::TxFull, rest as u64);
                self.io.free(&list[sent..]);
            }
            list.clear();
        }
    }

    /// Looks an outside frame's SA up: `Ok(Some(sa))` to decrypt here,
    /// `Ok(None)` when it was handed to the SA's owner, `Err(Some(reason))`
    /// to drop, `Err(None)` when it is not ESP.
    fn classify_inbound(&mut self, d: Desc) -> Result<Option<SaHandle>, Option<DropReason>> {
        let (at, len) = (d.off as usize, d.len as usize);
        let meta = {
            let frame = self
                .io
                .chunk_mut(d)
                .get(at..at + len)
                .ok_or(Some(DropReason::Malformed))?;
            let et = pkt::ethertype(frame);
            if et != pkt::ETH_P_IP && et != pkt::ETH_P_IPV6 {
                return Err(None);
            }
            match parse_esp(frame.get(ETH_HDR..).unwrap_or(&[])) {
                Ok(m) => m,
                Err(DropReason::NotEsp) => return Err(None),
                Err(r) => return Err(Some(r)),
            }
        };
        let (h, owner_now) = {
            let sa = self
                .t
                .lookup_inbound(meta.spi, meta.dst)
                .ok_or(Some(DropReason::NoSa))?;
            // The replay window's owner: us, or hand the frame over.
            let owner = &sa.hot().owner;
            let me = self.id as u64;
            let cur = owner.load(Ordering::Acquire);
            let stale = cur == NO_OWNER || cur >= self.workers as u64;
            let now = if cur == me {
                me
            } else if stale {
                match owner.compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => me,
                    Err(other) => other,
                }
            } else {
                cur
            };
            if now == me && !self.inbound.contains_key(&sa.handle()) {
                let isa = sa
                    .config()
                    .filter(|c| c.direction == Direction::Inbound)
                    .and_then(|c| inbound_sa(&c, self.shared.backend))
                    .ok_or(Some(DropReason::NoSa))?;
                self.inbound.insert(sa.handle(), isa);
            }
            (sa.handle(), now)
        };
        if owner_now == self.id as u64 {
            return Ok(Some(h));
        }
        // Another worker owns the window: copy the frame to it.
        let frame = self.io.chunk_mut(d).get(at..at + len).unwrap_or(&[]);
        let queue = usize::try_from(owner_now)
            .ok()
            .and_then(|o| self.shared.handoff.get(o));
        let handed = match (queue, self.shared.pool.pop()) {
            (Some(q), Some(mut b)) if frame.len() <= HANDOFF_FRAME => {
                b.data[..frame.len()].copy_from_slice(frame);
                b.len = frame.len();
                match q.push(b) {
                    Ok(()) => true,
                    Err(b) => {
                        let _ = self.shared.pool.push(b);
                        false
                    }
                }
            }
            (_, Some(b)) => {
                let _ = self.shared.pool.push(b);
                false
            }
            _ => false,
        };
        if handed {
            self.snap.handoff += 1;
        } else {
            self.event(DpEvent::HandoffFull, 1);
        }
        self.io.free(&[d]);
        Ok(None)
    }

    /// ESP from the outside: decrypt, route the inner packet, send.
    fn inbound(&mut self, descs: &[Desc], fib: &Fib) {
        // Pass 1: classify, look up, claim or hand off.
        let mut plan: ArrayVec<(Desc, SaHandle), BURST> = ArrayVec::new();
        for &d in descs {
            match self.classify_inbound(d) {
                Ok(Some(h)) => plan.push((d, h)),
                Ok(None) => {}
                Err(Some(r)) => self.drop_pkt(d, r),
                Err(None) => {
                    self.event(DpEvent::NotForUs, 1);
                    self.io.free(&[d]);
                }
            }
        }
        if plan.is_empty() {
            return;
        }

        // Pass 2: the engine over the burst, in place.
        let pd: ArrayVec<Desc, BURST> = plan.iter().map(|p| p.0).collect();
        let mut chunks: [Option<&mut [u8]>; BURST] = [const { None }; BURST];
        self.io.chunks_mut(&pd, &mut chunks);
        let mut items: ArrayVec<DecapItem<'_>, BURST> = ArrayVec::new();
        let mut kept: ArrayVec<(Desc, SaHandle), BURST> = ArrayVec::new();
        let mut lost: ArrayVec<Desc, BURST> = ArrayVec::new();
        for ((d, h), c) in plan.iter().zip(chunks.iter_mut()) {
            let (Some(chunk), Some(sa), Some(isa)) = (c.take(), self.t.sa(*h), self.inbound.get(h))
            else {
                lost.push(*d);
                continue;
            };
            let l3 = d.off as usize + ETH_HDR;
            let len = (d.len as usize).saturating_sub(ETH_HDR);
            items.push(DecapItem::new(
                isa,
                &sa.hot().replay,
                PacketBuf::new(chunk, l3, len),
            ));
            kept.push((*d, *h));
        }
        decap_burst(&mut items);

        // Pass 3: route the inner packets, frame them for their port.
        let mut leave: Leaving<BURST> = Leaving::new();
        let mut tally = SaTally::default();
        for (it, (d, h)) in items.iter_mut().zip(kept.iter()) {
            tally.add(&self.t, *h, it.result);
            let Ok(inner_len) = it.result else {
                let _ = leave
                    .drops
                    .try_push((*d, it.result.err().unwrap_or(DropReason::Malformed)));
                continue;
            };
            let head = it.pkt.head;
            let buf = &mut *it.pkt.buf;
            let Some(ip) = buf.get_mut(head..head + inner_len) else {
                let _ = leave.drops.try_push((*d, DropReason::Malformed));
                continue;
            };
            let Some(info) = pkt::inner(ip) else {
                let _ = leave.drops.try_push((*d, DropReason::Malformed));
                continue;
            };
            if !pkt::decrement_ttl(ip) {
                leave.ev[DpEvent::TtlExpired as usize] += 1;
                let _ = leave.lost.try_push(*d);
                continue;
            }
            leave.frame(&self.ports, fib, info.flow.dst, *d, buf, head, inner_len);
        }
        drop(items);
        tally.flush(&self.t);
        for d in lost {
            let _ = leave.lost.try_push(d);
        }
        self.settle(leave);
    }

    /// Counts a burst's events and drops, frees what was lost and
    /// transmits the rest.
    fn settle<const N: usize>(&mut self, mut leave: Leaving<N>) {
        for (i, n) in leave.ev.iter().enumerate() {
            if let Some(c) = self.snap.events.get_mut(i) {
                *c += n;
            }
        }
        for via in leave.resolve {
            let _ = self.shared.resolve.push(via);
        }
        for (d, r) in leave.drops {
            self.drop_pkt(d, r);
        }
        self.io.free(&leave.lost);
        self.transmit(&mut leave.out);
    }

    /// What to do with an inside frame.
    fn classify_outbound(&mut self, d: Desc, fib: &Fib) -> Out {
        let (at, len) = (d.off as usize, d.len as usize);
        let info = {
            let Some(frame) = self.io.chunk_mut(d).get(at..at + len) else {
                return Out::Drop(DropReason::Malformed);
            };
            let et = pkt::ethertype(frame);
            if et != pkt::ETH_P_IP && et != pkt::ETH_P_IPV6 {
                return Out::NotForUs;
            }
            match pkt::inner(frame.get(ETH_HDR..).unwrap_or(&[])) {
                Some(i) => i,
                None => return Out::Drop(DropReason::InnerNotIp),
            }
        };
        match self.t.lookup_outbound(&info.flow) {
            Some(PolicyMatch::Protect(_, h)) => {
                if !self.outbound.contains_key(&h) {
                    let osa = self
                        .t
                        .sa(h)
                        .and_then(|sa| sa.config())
                        .filter(|c| c.direction == Direction::Outbound)
                        .and_then(|c| outbound_sa(&c, self.shared.backend));
                    match osa {
                        Some(s) => {
                            self.outbound.insert(h, s);
                        }
                        None => return Out::Drop(DropReason::NoSa),
                    }
                }
                let Some(osa) = self.outbound.get(&h) else {
                    return Out::Drop(DropReason::NoSa);
                };
                // Path MTU (RFC 4459): the outer packet must fit the
                // outside link; tell the sender otherwise.
                let overhead = osa.headroom() + osa.tailroom();
                let mtu = fib.route(peer_of(osa)).map_or(1500, |h| h.mtu) as usize;
                if info.len + overhead > mtu {
                    let room = mtu.saturating_sub(overhead) as u32;
                    if info.df {
                        return Out::TooBig(room);
                    }
                    if self.shared.fragment && info.flow.src.is_ipv4() {
                        return Out::Fragment(h, room);
                    }
                    return Out::Drop(DropReason::NoTailroom);
                }
                Out::Protect(h, info.len as u32)
            }
            Some(PolicyMatch::ProtectNoSa(p)) => {
                let _ = self.shared.acquire.push(p.0);
                Out::Drop(DropReason::NoSa)
            }
            Some(PolicyMatch::Drop(_)) => Out::Drop(DropReason::PolicyDrop),
            Some(PolicyMatch::Bypass(_)) => {
                self.event(DpEvent::Bypass, 1);
                Out::Clear
            }
            None => {
                self.event(DpEvent::NoPolicy, 1);
                match self.shared.no_policy {
                    NoPolicy::Forward => Out::Clear,
                    NoPolicy::Drop => Out::Drop(DropReason::PolicyDrop),
                }
            }
        }
    }

    /// Traffic from the inside: policy lookup, then encrypt, forward in the
    /// clear or drop.
    fn outbound(&mut self, descs: &[Desc], fib: &Fib) {
        let mut plan: ArrayVec<(Desc, SaHandle), PLAN> = ArrayVec::new();
        let mut clear: ArrayVec<Desc, BURST> = ArrayVec::new();
        for &d in descs {
            match self.classify_outbound(d, fib) {
                Out::Protect(h, ip_len) => {
                    // From here on the frame is exactly Ethernet + the IP
                    // packet (no padding of short frames).
                    let d = Desc {
                        len: ETH_HDR as u32 + ip_len,
                        ..d
                    };
                    if plan.try_push((d, h)).is_err() {
                        self.drop_pkt(d, DropReason::NoHeadroom);
                    }
                }
                Out::Fragment(h, room) => {
                    let frags = self.fragment(d, room);
                    if frags.is_empty() {
                        self.drop_pkt(d, DropReason::Malformed);
                    }
                    for f in frags {
                        if plan.try_push((f, h)).is_err() {
                            self.drop_pkt(f, DropReason::NoHeadroom);
                        }
                    }
                }
                Out::Clear => clear.push(d),
                Out::TooBig(mtu) => self.too_big(d, mtu, fib),
                Out::Drop(r) => self.drop_pkt(d, r),
                Out::NotForUs => {
                    self.event(DpEvent::NotForUs, 1);
                    self.io.free(&[d]);
                }
            }
        }
        let mut out: [ArrayVec<Desc, PLAN>; MAX_PORTS] = Default::default();
        for d in clear {
            self.forward_clear(d, fib, &mut out);
        }
        if plan.is_empty() {
            self.transmit(&mut out);
            return;
        }

        let pd: ArrayVec<Desc, PLAN> = plan.iter().map(|p| p.0).collect();
        let mut chunks: [Option<&mut [u8]>; PLAN] = [const { None }; PLAN];
        self.io.chunks_mut(&pd, &mut chunks);
        let mut items: ArrayVec<EncapItem<'_>, PLAN> = ArrayVec::new();
        let mut kept: ArrayVec<(Desc, SaHandle), PLAN> = ArrayVec::new();
        let mut lost: ArrayVec<Desc, PLAN> = ArrayVec::new();
        let mut ev = [0u64; DpEvent::COUNT];
        for ((d, h), c) in plan.iter().zip(chunks.iter_mut()) {
            let (Some(chunk), Some(sa), Some(osa)) =
                (c.take(), self.t.sa(*h), self.outbound.get(h))
            else {
                lost.push(*d);
                continue;
            };
            let l3 = d.off as usize + ETH_HDR;
            let len = (d.len as usize).saturating_sub(ETH_HDR);
            // A router forwarding into the tunnel decrements the TTL.
            let expired = chunk
                .get_mut(l3..l3 + len)
                .is_none_or(|ip| !pkt::decrement_ttl(ip));
            if expired {
                ev[DpEvent::TtlExpired as usize] += 1;
                lost.push(*d);
                continue;
            }
            items.push(EncapItem::new(
                osa,
                &sa.hot().seq,
                PacketBuf::new(chunk, l3, len),
            ));
            kept.push((*d, *h));
        }
        encap_burst(&mut items);

        let mut leave: Leaving<PLAN> = Leaving::new();
        leave.ev = ev;
        for d in lost {
            let _ = leave.lost.try_push(d);
        }
        let mut tally = SaTally::default();
        for (it, (d, h)) in items.iter_mut().zip(kept.iter()) {
            if let Err(r) = it.result {
                tally.add(&self.t, *h, it.result);
                let _ = leave.drops.try_push((*d, r));
                continue;
            }
            let (head, len) = (it.pkt.head, it.pkt.len);
            // Counted on the SA once it is on its way out: an ESP packet
            // that never left (no route, no neighbour) is not in the SA's
            // packets, so its counters match what the peer can receive.
            if leave.frame(&self.ports, fib, peer_of(it.sa), *d, it.pkt.buf, head, len) {
                tally.add(&self.t, *h, it.result);
            }
        }
        drop(items);
        tally.flush(&self.t);
        for (port, list) in out.iter().enumerate() {
            if let Some(l) = leave.out.get_mut(port) {
                for d in list {
                    if l.try_push(*d).is_err() {
                        let _ = leave.lost.try_push(*d);
                    }
                }
            }
        }
        self.settle(leave);
    }

    /// Routes a packet in the clear (bypass / unmatched traffic).
    fn forward_clear<const N: usize>(&mut self, d: Desc, fib: &Fib, out: &mut [ArrayVec<Desc, N>]) {
        let chunk = self.io.chunk_mut(d);
        let l3 = d.off as usize + ETH_HDR;
        let len = (d.len as usize).saturating_sub(ETH_HDR);
        let Some(info) = chunk.get(l3..l3 + len).and_then(pkt::inner) else {
            self.drop_pkt(d, DropReason::Malformed);
            return;
        };
        let Some((port, hop, mac)) = self.next_hop(fib, info.flow.dst) else {
            self.io.free(&[d]);
            return;
        };
        let chunk = self.io.chunk_mut(d);
        let ok = chunk.get_mut(l3..l3 + len).is_some_and(pkt::decrement_ttl);
        if !ok {
            self.event(DpEvent::TtlExpired, 1);
            self.io.free(&[d]);
            return;
        }
        let et = pkt::ethertype_of(&chunk[l3..]);
        pkt::write_eth(chunk, d.off as usize, mac, hop.src_mac, et);
        match out.get_mut(port) {
            Some(list) if !list.is_full() => list.push(d),
            _ => self.io.free(&[d]),
        }
    }

    /// Splits an IPv4 packet without DF (in frame `d`) into fragments of at
    /// most `room` bytes (RFC 791): the first stays in `d`, the others get
    /// chunks of their own with a copy of the Ethernet and IP headers.
    /// Empty if it cannot be split (the caller drops it).
    fn fragment(&mut self, d: Desc, room: u32) -> ArrayVec<Desc, 8> {
        let mut out = ArrayVec::new();
        let l3 = d.off as usize + ETH_HDR;
        let mut hdr = [0u8; ETH_HDR + 60];
        let mut payload = [0u8; 4096];
        let (ihl, total, frag0) = {
            let chunk = self.io.chunk_mut(d);
            let Some(ip) = chunk.get(l3..) else {
                return out;
            };
            let Some(&b0) = ip.first() else { return out };
            let ihl = usize::from(b0 & 0x0f) * 4;
            let total = ip
                .get(2..4)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            if ihl < 20 || total <= ihl || total > ip.len() || total - ihl > payload.len() {
                return out;
            }
            let frag0 = u16::from_be_bytes([ip[6], ip[7]]);
            hdr[..ETH_HDR + ihl].copy_from_slice(&chunk[d.off as usize..l3 + ihl]);
            payload[..total - ihl].copy_from_slice(&chunk[l3 + ihl..l3 + total]);
            (ihl, total, frag0)
        };
        let per = (room as usize).saturating_sub(ihl) / 8 * 8;
        let data = total - ihl;
        if per == 0 || data.div_ceil(per) > out.capacity() {
            return out;
        }
        let base_off = usize::from(frag0 & 0x1fff) * 8;
        let last_mf = frag0 & 0x2000;
        let mut at = 0;
        while at < data {
            let n = per.min(data - at);
            let last = at + n == data;
            let f = if at == 0 { Some(d) } else { self.io.alloc() };
            let Some(mut f) = f else {
                // No chunk: give back what was built, drop the packet.
                let built: ArrayVec<Desc, 8> = out.drain(..).filter(|x| *x != d).collect();
                self.io.free(&built);
                return ArrayVec::new();
            };
            let chunk = self.io.chunk_mut(f);
            let o = f.off as usize;
            let Some(dst) = chunk.get_mut(o..o + ETH_HDR + ihl + n) else {
                break;
            };
            dst[..ETH_HDR + ihl].copy_from_slice(&hdr[..ETH_HDR + ihl]);
            dst[ETH_HDR + ihl..].copy_from_slice(&payload[at..at + n]);
            let ip = &mut dst[ETH_HDR..];
            ip[2..4].copy_from_slice(&((ihl + n) as u16).to_be_bytes());
            let off = ((base_off + at) / 8) as u16;
            let mf = if last { last_mf } else { 0x2000 };
            ip[6..8].copy_from_slice(&(off | mf | (frag0 & 0x4000)).to_be_bytes());
            ip[10..12].fill(0);
            let c = checksum_finish(checksum_add(0, &ip[..ihl]));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.len = (ETH_HDR + ihl + n) as u32;
            out.push(f);
            at += n;
        }
        out
    }

    /// Answers an oversize packet with ICMP "fragmentation needed" /
    /// "packet too big" (the packet is dropped).
    fn too_big(&mut self, d: Desc, mtu: u32, fib: &Fib) {
        let Some(mut reply) = self.io.alloc() else {
            self.drop_pkt(d, DropReason::NoTailroom);
            return;
        };
        let l3 = d.off as usize + ETH_HDR;
        let len = (d.len as usize).saturating_sub(ETH_HDR);
        let mut quote = [0u8; 1280];
        let q = len.min(quote.len());
        let sender = {
            let chunk = self.io.chunk_mut(d);
            let orig = chunk.get(l3..l3 + q).unwrap_or(&[]);
            quote[..orig.len()].copy_from_slice(orig);
            pkt::inner(chunk.get(l3..l3 + len).unwrap_or(&[])).map(|i| i.flow.src)
        };
        // Not an ESP drop: counted as the ICMP error it causes.
        self.io.free(&[d]);
        let Some(sender) = sender else {
            self.io.free(&[reply]);
            return;
        };
        let Some((port, hop, mac)) = self.next_hop(fib, sender) else {
            self.io.free(&[reply]);
            return;
        };
        let Some(src) = fib.if_addr(hop.oif, sender.is_ipv4()) else {
            self.io.free(&[reply]);
            return;
        };
        let at = MIN_HEADROOM;
        let chunk = self.io.chunk_mut(reply);
        let n = match chunk.get_mut(at + ETH_HDR..) {
            Some(o) => pkt::icmp_too_big(&quote[..q], mtu, src, o),
            None => 0,
        };
        if n == 0 {
            self.io.free(&[reply]);
            return;
        }
        let et = pkt::ethertype_of(&chunk[at + ETH_HDR..]);
        pkt::write_eth(chunk, at, mac, hop.src_mac, et);
        reply.off = at as u32;
        reply.len = (n + ETH_HDR) as u32;
        self.event(DpEvent::IcmpTooBig, 1);
        let mut out: [ArrayVec<Desc, BURST>; MAX_PORTS] = Default::default();
        if let Some(list) = out.get_mut(port) {
            list.push(reply);
        }
        self.transmit(&mut out);
    }
}
