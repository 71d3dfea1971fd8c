//! The event loop: sockets, IKE SAs, the SA table.
//!
//! One thread polls non-blocking UDP sockets (500 and 4500 per local
//! address), feeds datagrams to the sans-IO IKE SAs, sends what they queue,
//! runs their timers and turns their events into SA-table changes.

mod control;

use crate::config::{File, Resolved, StartAction};
use ike_proto::{ChildSa, Event, IkeSa, Random, Role, Selector, State};
use ike_wire::{ExchangeType, Message};
use ring::rand::SecureRandom;
use sluice_api::model::{ManualSa, Source};
use sluice_sa_table::{
    Action, Capacity, Direction, Lifetimes, Policy, PolicyId, Prefix, SaConfig, SaHandle, Writer,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, error, info, info_span, warn};

struct OsRandom(ring::rand::SystemRandom);

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        if self.0.fill(buf).is_err() {
            error!("the OS random number generator failed; stopping");
            std::process::exit(1);
        }
    }
}

/// How far ahead of a soft volume limit a CHILD SA is rekeyed at its
/// current rate: the checks come every 100 ms, a late one and the
/// CREATE_CHILD_SA round trip must fit before the hard limit (10% later).
const VOLUME_LEAD: Duration = Duration::from_millis(300);

/// Whether a soft volume limit (`soft`; 0 = none) is reached by `used`, or
/// would be within [`VOLUME_LEAD`] at the rate since the last check (`prev`
/// then, `dt` ago).
fn soft_due(soft: u64, used: u64, prev: u64, dt: Duration) -> bool {
    if soft == 0 {
        return false;
    }
    if used >= soft {
        return true;
    }
    if dt.is_zero() {
        return false;
    }
    let ahead = used.saturating_sub(prev) as f64 * VOLUME_LEAD.as_secs_f64() / dt.as_secs_f64();
    used as f64 + ahead >= soft as f64
}

/// A CHILD SA written into the table.
struct Installed {
    spi_in: u32,
    spi_out: u32,
    h_in: SaHandle,
    h_out: SaHandle,
    policies: Vec<PolicyId>,
    /// When to rekey it (lifetime minus jitter), until a rekey is asked for.
    rekey_at: Option<Instant>,
    /// Hard lifetime: deleted then unless replaced.
    expire_at: Option<Instant>,
    /// Volume limits (bytes, packets; 0 = none): rekey at soft, delete at
    /// hard.
    soft: (u64, u64),
    hard: (u64, u64),
    /// The volume check before: when, and (bytes, packets) then.
    volume_seen: (Instant, u64, u64),
    /// A rekey of it was asked for.
    rekeying: bool,
    /// Rekeyed by the peer: the new outbound SA its policies move to once
    /// the peer deletes this CHILD SA.
    successor: Option<SaHandle>,
    /// Replaced by a rekey (its inbound SA lingers after the delete).
    replaced: bool,
    /// Its traffic selectors: a CHILD SA with the same ones in a new IKE
    /// SA of the connection (reauthentication) takes its policies over.
    ts: (Vec<ike_proto::Selector>, Vec<ike_proto::Selector>),
    /// When it was installed.
    installed: Instant,
    /// Its transform, as strongSwan names it.
    esp: String,
    /// UDP-encapsulated.
    udp_encap: bool,
}

/// What the IKE_SA_INIT defences turned away, logged every 10 s.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct DosStats {
    unknown_peer: u64,
    half_open_full: u64,
    per_source_full: u64,
    cookies_sent: u64,
    /// IKE_SA_INITs from a configured peer's address that did not parse.
    malformed: u64,
    cookies_valid: u64,
}

struct Entry {
    conn: usize,
    /// When it was created.
    created: Instant,
    /// Its state when last pumped (to name the exchange that failed).
    seen: State,
    sa: IkeSa,
    children: Vec<Installed>,
    next_dpd: Option<Instant>,
    /// A responder SA still waiting for IKE_AUTH is dropped at this time.
    half_open_until: Option<Instant>,
    /// When to rekey the IKE SA (its lifetime minus jitter).
    ike_rekey_at: Option<Instant>,
    /// When to reauthenticate it (RFC 7296 §2.8.3).
    reauth_at: Option<Instant>,
    /// This IKE SA reauthenticates that one: once it carries all of its
    /// CHILD SAs' traffic, that one is deleted.
    replaces: Option<u64>,
    /// Then at the latest (a CHILD SA that did not come over must not keep
    /// the old IKE SA forever).
    replaces_until: Option<Instant>,
    /// A rekey collision's redundant IKE SA: deleted by us at this time if
    /// the peer has not deleted it.
    redundant_until: Option<Instant>,
}

struct Daemon2 {
    conns: Vec<Resolved>,
    sockets: HashMap<SocketAddr, UdpSocket>,
    entries: HashMap<u64, Entry>,
    by_spi: HashMap<(u64, IpAddr), u64>,
    next_id: u64,
    writer: Writer,
    keylog: Option<std::path::PathBuf>,
    max_half_open: usize,
    max_half_open_per_source: usize,
    cookie_threshold: usize,
    cookies: ike_proto::cookie::CookieJar,
    dos: DosStats,
    dos_logged: Instant,
    volume_checked: Instant,
    half_open_timeout: Duration,
    /// Inbound SAs of rekeyed CHILD SAs, deleted at these times.
    lingering: Vec<(Instant, SaHandle)>,
    /// Trap policies (start_action = "trap"): connection of each, and the
    /// policy for a connection's selector pair. Unbound when no CHILD SA
    /// covers them, never removed.
    traps: HashMap<PolicyId, usize>,
    trap_by_sel: HashMap<(usize, Prefix, Prefix), PolicyId>,
    acquire: Option<std::os::unix::net::UnixDatagram>,
    delete_rekeyed_delay: Duration,
    /// Responder IKE SAs in InitAnswered (counted without a scan).
    half_open: HashSet<u64>,
    rng: OsRandom,
    next_sa_id: u64,
    /// Where each connection comes from, and whether it is still loaded
    /// (indices into `conns` never change; a deleted connection stays as
    /// a tombstone until its IKE SAs are gone).
    conn_source: Vec<Source>,
    conn_live: Vec<bool>,
    acquire_socket: String,
    /// Requests from the REST API.
    api: Option<std::sync::mpsc::Receiver<sluice_api::server::Request>>,
    state_dir: std::path::PathBuf,
    manual: std::collections::BTreeMap<String, control::Manual>,
    totals: control::Totals,
    /// The DoS counters of past log periods.
    dos_total: DosStats,
    /// Set during start-up: policy changes are published in one commit at
    /// its end (no moment with some policies missing).
    defer_commit: bool,
    /// Persisted connections and manual SAs that could not be loaded at
    /// start-up: kept in the state files, not lost by the next API change.
    unloaded_conns: Vec<sluice_api::model::Connection>,
    unloaded_manual: Vec<ManualSa>,
    per_sa: bool,
    started: Instant,
}

/// Runs until SIGTERM or SIGINT.
pub(crate) fn run(file: File, conns: Vec<Resolved>) -> Result<(), String> {
    let cfg = &file.daemon;
    if let Some(dir) = cfg.sa_table.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let writer = Writer::create_or_attach(
        &cfg.sa_table,
        Capacity {
            sas: cfg.sa_capacity,
            policies: cfg.policy_capacity,
        },
    )
    .map_err(|e| e.to_string())?;
    let stale = writer.live_sas();
    info!(path = %cfg.sa_table.display(), stale = stale.len(), "SA table attached");
    let mut d = Daemon2 {
        sockets: HashMap::new(),
        entries: HashMap::new(),
        by_spi: HashMap::new(),
        next_id: 1,
        writer,
        keylog: cfg.keylog.clone(),
        max_half_open: cfg.max_half_open,
        max_half_open_per_source: cfg.max_half_open_per_source.max(1),
        cookie_threshold: cfg.cookie_threshold,
        cookies: {
            let mut rng = OsRandom(ring::rand::SystemRandom::new());
            ike_proto::cookie::CookieJar::new(
                Instant::now(),
                Duration::from_secs(cfg.cookie_rotate.max(1)),
                &mut rng,
            )
        },
        dos: DosStats::default(),
        dos_logged: Instant::now(),
        volume_checked: Instant::now(),
        half_open_timeout: Duration::from_secs(cfg.half_open_timeout.max(1)),
        lingering: Vec::new(),
        traps: HashMap::new(),
        trap_by_sel: HashMap::new(),
        acquire: None,
        delete_rekeyed_delay: Duration::from_secs(cfg.delete_rekeyed_delay),
        half_open: HashSet::new(),
        rng: OsRandom(ring::rand::SystemRandom::new()),
        next_sa_id: 1,
        conn_source: vec![Source::File; conns.len()],
        conn_live: vec![true; conns.len()],
        conns,
        acquire_socket: cfg.acquire_socket.clone(),
        api: None,
        state_dir: cfg.state_dir.clone(),
        manual: std::collections::BTreeMap::new(),
        totals: control::Totals::default(),
        dos_total: DosStats::default(),
        defer_commit: true,
        unloaded_conns: Vec::new(),
        unloaded_manual: Vec::new(),
        per_sa: file.metrics.as_ref().is_none_or(|m| m.per_sa),
        started: Instant::now(),
    };
    let api_wanted = file.api.is_some() || file.metrics.is_some();
    if api_wanted {
        control::state_dir(&d.state_dir)?;
    }
    // Connections created through the API by a previous run.
    let persisted: Vec<sluice_api::model::Connection> =
        control::load_persisted(&d.state_dir.join("connections.json"))?;
    let mut api_conns = Vec::new();
    for c in persisted {
        if d.conns.iter().any(|x| x.name == c.name) {
            error!(conn = %c.name, "connection from the API has the name of one in the configuration file: not loaded");
            d.unloaded_conns.push(c);
            continue;
        }
        match crate::config::resolve(&c) {
            Ok(r) => api_conns.push(r),
            Err(e) => {
                error!("connection from the API not loaded (kept in the state file): {e}");
                d.unloaded_conns.push(c);
            }
        }
    }
    // Manually keyed SAs: those still in the table are kept as they are
    // (sequence numbers, replay windows, counters), the others installed
    // again.
    let manual: Vec<ManualSa> = control::load_persisted(&d.state_dir.join("manual-sas.json"))?;
    let mut kept = HashSet::new();
    let mut reuse = Vec::new();
    for m in &manual {
        let find = |dir: Direction, spi: u32, dst: IpAddr| {
            stale
                .iter()
                .find(|(_, c)| c.direction == dir && c.spi == spi && c.dst == dst)
                .map(|(h, _)| *h)
        };
        let h = find(Direction::Inbound, m.spi_in, m.local_addr).zip(find(
            Direction::Outbound,
            m.spi_out,
            m.remote_addr,
        ));
        if let Some((a, b)) = h {
            kept.insert(a);
            kept.insert(b);
        }
        reuse.push(h);
    }
    let stale: Vec<_> = stale
        .into_iter()
        .filter(|(h, _)| !kept.contains(h))
        .collect();
    // SAs left by a previous run have no IKE SA any more: remove them (the
    // peers will renegotiate; keeping them would leave orphans).
    for (h, c) in stale {
        warn!(
            spi = format_args!("{:08x}", c.spi),
            "removing SA left by a previous run"
        );
        let _ = d.writer.delete_sa(h);
    }
    let pols: Vec<_> = d.writer.policies().into_iter().map(|(id, _)| id).collect();
    for id in pols {
        let _ = d.writer.remove_policy(id);
    }
    // Removing the old policies and installing the traps is one commit: no
    // moment without a trap for the data plane to forward in the clear.
    d.install_traps()?;
    for (m, h) in manual.iter().zip(reuse) {
        match d.install_manual(m, h) {
            Ok(x) => {
                info!(
                    name = %m.name,
                    kept = h.is_some(),
                    "manual SA pair {:08x}_i {:08x}_o restored",
                    m.spi_in,
                    m.spi_out
                );
                d.manual.insert(m.name.clone(), x);
            }
            Err(e) => {
                error!(name = %m.name, "manual SA pair not restored (kept in the state file): {}", e.message);
                if let Some((a, b)) = h {
                    let _ = d.delete_sa(a);
                    let _ = d.delete_sa(b);
                }
                d.unloaded_manual.push(m.clone());
            }
        }
    }
    let locals: Vec<IpAddr> = d.conns.iter().map(|c| c.local).collect();
    for a in locals {
        d.bind_sockets(a, true)?;
    }
    for r in api_conns {
        let name = r.name.clone();
        if let Err(e) = d.bind_sockets(r.local, true) {
            error!(conn = %name, "connection from the API not loaded (kept in the state file): {e}");
            d.unloaded_conns.push(r.spec);
            continue;
        }
        info!(conn = %name, "connection from the API loaded");
        d.load_connection(r, Source::Api, Instant::now());
    }
    // Old policies removed, traps, manual SAs' and API connections'
    // policies installed: published together.
    d.defer_commit = false;
    d.commit().map_err(|e| e.to_string())?;
    if api_wanted {
        let api = match &file.api {
            Some(a) => {
                let token_file = a
                    .token_file
                    .clone()
                    .unwrap_or_else(|| d.state_dir.join("api-token"));
                let tls = sluice_api::server::tls_config(&sluice_api::server::TlsFiles {
                    cert: a.tls_cert.clone(),
                    key: a.tls_key.clone(),
                    client_ca: a.client_ca.clone(),
                    state_dir: d.state_dir.clone(),
                    names: vec![a.listen.ip().to_string()],
                })?;
                Some(sluice_api::server::ApiSettings {
                    listen: a.listen,
                    token: sluice_api::server::load_or_create_token(&token_file)?,
                    tls,
                    max_body: a.max_body.max(1024),
                })
            }
            None => None,
        };
        d.api = Some(sluice_api::server::spawn(
            api,
            file.metrics.as_ref().map(|m| m.listen),
        )?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let now = Instant::now();
    for i in 0..d.conns.len() {
        if d.conn_source[i] == Source::File && d.conns[i].start == StartAction::Initiate {
            d.initiate(i, now);
        }
    }
    let mut buf = vec![0u8; 65536];
    let mut stopping: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) && stopping.is_none() {
            info!(ike_sas = d.entries.len(), "SIGTERM: deleting IKE SAs");
            stopping = Some(now);
            let ids: Vec<u64> = d.entries.keys().copied().collect();
            for id in ids {
                if let Some(e) = d.entries.get_mut(&id) {
                    let span = info_span!("conn", name = %d.conns[e.conn].name);
                    let _g = span.enter();
                    if e.sa.state() == State::Established {
                        let _ = e.sa.delete(now, &mut d.rng);
                    }
                    d.pump(id);
                }
            }
        }
        if let Some(t) = stopping {
            let busy = d
                .entries
                .values()
                .any(|e| e.sa.state() == State::Established);
            if !busy || now - t > Duration::from_secs(3) {
                let ids: Vec<u64> = d.entries.keys().copied().collect();
                for id in ids {
                    d.remove(id, "shutdown");
                }
                for (_, h) in std::mem::take(&mut d.lingering) {
                    let _ = d.writer.delete_sa(h);
                }
                d.log_dos(now);
                info!("stopped");
                return Ok(());
            }
        }
        let mut idle = true;
        let addrs: Vec<SocketAddr> = d.sockets.keys().copied().collect();
        for local in addrs {
            for _ in 0..64 {
                let Some(sock) = d.sockets.get(&local) else {
                    break;
                };
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    break;
                };
                idle = false;
                let mut data = &buf[..n];
                if local.port() == 4500 {
                    match data.get(..4) {
                        Some([0, 0, 0, 0]) => data = &data[4..],
                        // ESP and NAT-T keepalives are the data plane's.
                        _ => continue,
                    }
                }
                let data = data.to_vec();
                d.receive(now, local, from, &data);
            }
        }
        d.acquires(now);
        d.api_requests(now);
        d.timers(now);
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn describe(data: &[u8]) -> String {
    describe_parsed(&Message::parse(data))
}

/// As [`describe`], for a message already parsed.
fn describe_parsed(m: &Result<Message, ike_wire::Error>) -> String {
    match m {
        Ok(m) => {
            let h = m.header;
            format!(
                "{} {} {} {} SPIs {:016x}_i {:016x}_r",
                h.exchange,
                h.kind(),
                h.message_id,
                Message::summary(&m.payloads),
                h.spi_i,
                h.spi_r
            )
        }
        Err(e) => format!("unparsable ({e})"),
    }
}

fn prefix_of(s: &Selector) -> Option<Prefix> {
    let (a, b) = match (s.start, s.end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return None,
    };
    let width = if s.start.is_ipv4() { 32 } else { 128 };
    let host_bits = (a ^ b).count_ones();
    let size = b.checked_sub(a)?.checked_add(1);
    // A CIDR block: a is aligned and the range is a power of two.
    let ok = size.is_some_and(|n| n.is_power_of_two() && a & (n - 1) == 0)
        || (a == 0 && b == (u128::MAX >> (128 - width)));
    ok.then(|| Prefix {
        addr: s.start,
        len: (width - host_bits) as u8,
    })
}

impl Daemon2 {
    /// As the initiator, the first configured child came with IKE_AUTH; the
    /// others are requested now, one CREATE_CHILD_SA each (queued behind
    /// each other by the message-ID window).
    fn request_more_children(&mut self, id: u64, now: Instant) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.sa.role() != Role::Initiator {
            return;
        }
        let Some(conn) = self.conns.get(e.conn) else {
            return;
        };
        for ch in conn.ike.children.iter().skip(1) {
            info!(child = %ch.name, "requesting CHILD_SA (CREATE_CHILD_SA)");
            let r = e.sa.create_child(
                now,
                ch.local_ts.clone(),
                ch.remote_ts.clone(),
                &mut self.rng,
            );
            if let Err(err) = r {
                warn!(child = %ch.name, "CREATE_CHILD_SA not sent: {err}");
            }
        }
    }

    /// Trap policies for every connection with start_action = "trap", and
    /// the acquire socket the data plane reports their hits on.
    fn install_traps(&mut self) -> Result<(), String> {
        let mut any = false;
        for ci in 0..self.conns.len() {
            if self.conns[ci].start == StartAction::Trap {
                any = true;
                self.trap_connection(ci)?;
            }
        }
        self.commit().map_err(|e| e.to_string())?;
        if any {
            self.bind_acquire()?;
        }
        Ok(())
    }

    /// One connection's trap policies (the caller commits).
    fn trap_connection(&mut self, ci: usize) -> Result<(), String> {
        let c = &self.conns[ci];
        let mut pairs = Vec::new();
        for ch in &c.ike.children {
            for l in &ch.local_ts {
                for r in &ch.remote_ts {
                    if let (Some(lp), Some(rp)) = (prefix_of(l), prefix_of(r)) {
                        pairs.push((lp, rp));
                    }
                }
            }
        }
        let name = c.name.clone();
        for (lp, rp) in pairs {
            let p = self
                .writer
                .add_policy(Policy::between(lp, rp, Action::Protect))
                .map_err(|e| format!("trap policy: {e}"))?;
            self.traps.insert(p, ci);
            self.trap_by_sel.insert((ci, lp, rp), p);
        }
        info!(conn = %name, "trap policies installed: initiating on traffic");
        Ok(())
    }

    /// The acquire socket, once.
    fn bind_acquire(&mut self) -> Result<(), String> {
        if self.acquire.is_some() {
            return Ok(());
        }
        use std::os::linux::net::SocketAddrExt;
        let socket = &self.acquire_socket;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket.as_bytes())
            .map_err(|e| format!("acquire socket: {e}"))?;
        let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)
            .map_err(|e| format!("acquire socket @{socket}: {e}"))?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        info!(socket = %format!("@{socket}"), "listening for acquires from the data plane");
        self.acquire = Some(sock);
        Ok(())
    }

    /// Acquires from the data plane: traffic hit a trap policy; initiate
    /// its connection unless an IKE SA for it exists already.
    fn acquires(&mut self, now: Instant) {
        let mut buf = [0u8; 64];
        let mut want = Vec::new();
        if let Some(sock) = &self.acquire {
            while let Ok(n) = sock.recv(&mut buf) {
                let Some(id) = buf.get(..4).filter(|_| n >= 4) else {
                    continue;
                };
                let pid = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                if let Some(&conn) = self.traps.get(&PolicyId(pid)) {
                    want.push((conn, pid));
                }
            }
        }
        for (conn, pid) in want {
            if self.entries.values().any(|e| e.conn == conn) {
                continue;
            }
            if let Some(c) = self.conns.get(conn) {
                let span = info_span!("conn", name = %c.name);
                let _g = span.enter();
                info!("acquire: traffic on trap policy {pid}, initiating");
            }
            self.initiate(conn, now);
        }
    }

    /// Logs (and resets) what the IKE_SA_INIT defences turned away.
    fn log_dos(&mut self, now: Instant) {
        let since = now.duration_since(self.dos_logged).as_secs();
        self.dos_logged = now;
        let d = std::mem::take(&mut self.dos);
        let t = &mut self.dos_total;
        t.unknown_peer += d.unknown_peer;
        t.half_open_full += d.half_open_full;
        t.per_source_full += d.per_source_full;
        t.cookies_sent += d.cookies_sent;
        t.malformed += d.malformed;
        t.cookies_valid += d.cookies_valid;
        if d != DosStats::default() {
            warn!(
                unknown_peer = d.unknown_peer,
                half_open_full = d.half_open_full,
                per_source_full = d.per_source_full,
                cookies_sent = d.cookies_sent,
                malformed = d.malformed,
                cookies_valid = d.cookies_valid,
                half_open = self.half_open.len(),
                "IKE_SA_INIT defences in the last {since} s"
            );
        }
    }

    /// When an IKE SA of this entry's connection should be reauthenticated
    /// (up to 10% early).
    fn reauth_deadline(&mut self, id: u64) -> Option<Instant> {
        let conn = self.entries.get(&id)?.conn;
        let t = self.conns.get(conn)?.reauth_time?;
        Some(self.jittered(t))
    }

    /// Now + `t` less up to 10% (random), so two peers rarely act at once.
    fn jittered(&mut self, t: Duration) -> Instant {
        let mut r = [0u8; 2];
        self.rng.fill(&mut r);
        let jitter = t.mul_f64(f64::from(u16::from_le_bytes(r)) / 65535.0 / 10.0);
        Instant::now() + t - jitter
    }

    /// Starts reauthenticating `old`: a new IKE SA for its connection.
    fn reauthenticate(&mut self, old: u64, now: Instant) {
        let Some(conn) = self.entries.get(&old).map(|e| e.conn) else {
            return;
        };
        if !self.conn_live[conn] {
            return;
        }
        info!(
            conn = %self.conns[conn].name,
            "reauthenticating the IKE_SA (reauth_time): a new IKE SA takes over, then the old one is deleted"
        );
        if let Some(new) = self.initiate(conn, now) {
            if let Some(e) = self.entries.get_mut(&new) {
                e.replaces = Some(old);
                e.replaces_until = Some(now + Duration::from_secs(30));
            }
        } else if let Some(e) = self.entries.get_mut(&old) {
            e.reauth_at = Some(now + Duration::from_secs(60));
        }
    }

    /// Deletes the IKE SA a reauthentication replaces once none of its
    /// CHILD SAs still carries traffic.
    fn finish_reauth(&mut self, id: u64) {
        self.finish_reauth_by(id, None);
    }

    /// As [`Self::finish_reauth`]; at `now` past the deadline the old IKE
    /// SA is deleted even with CHILD SAs that did not come over.
    fn finish_reauth_by(&mut self, id: u64, now: Option<Instant>) {
        let Some(e) = self.entries.get(&id) else {
            return;
        };
        let Some(old) = e.replaces else {
            return;
        };
        let late = now.is_some_and(|n| e.replaces_until.is_some_and(|t| n >= t));
        let left: Vec<u32> = self.entries.get(&old).map_or_else(Vec::new, |o| {
            o.children
                .iter()
                .filter(|c| !c.replaced)
                .map(|c| c.spi_in)
                .collect()
        });
        if !left.is_empty() && !late {
            return;
        }
        if !left.is_empty() {
            warn!(
                "reauthentication: CHILD_SA(s) {:08x?} did not come over in time; deleting the old IKE SA anyway",
                left
            );
        }
        if let Some(e) = self.entries.get_mut(&id) {
            e.replaces = None;
        }
        if let Some(o) = self.entries.get_mut(&old) {
            let (spi_i, spi_r) = o.sa.spis();
            info!("reauthenticated: deleting the old IKE_SA {spi_i:016x}_i {spi_r:016x}_r");
            if let Err(err) = o.sa.delete(Instant::now(), &mut self.rng) {
                warn!("old IKE_SA not deleted: {err}");
            }
            self.pump(old);
        }
    }

    /// When an IKE SA of this entry's connection should be rekeyed.
    fn ike_rekey_deadline(&mut self, id: u64) -> Option<Instant> {
        let conn = self.entries.get(&id)?.conn;
        let t = self.conns.get(conn)?.ike_rekey_time?;
        Some(self.jittered(t))
    }

    /// The IKE SA `old` was rekeyed into `next` (RFC 7296 §2.18): a new
    /// entry takes its CHILD SAs (the SA table does not change); the old
    /// one stays until its Delete is exchanged.
    fn adopt(&mut self, old: u64, next: IkeSa) {
        let Some(e) = self.entries.get_mut(&old) else {
            return;
        };
        let conn = e.conn;
        let children = std::mem::take(&mut e.children);
        e.ike_rekey_at = None;
        e.next_dpd = None;
        // A rekey does not restart reauthentication's clock, nor forget
        // one in progress.
        let reauth_at = e.reauth_at.take();
        let replaces = e.replaces.take();
        let (spi_i, spi_r) = next.spis();
        info!("IKE_SA rekeyed: now SPIs {spi_i:016x}_i {spi_r:016x}_r");
        let id = self.add(conn, next);
        let at = self.ike_rekey_deadline(id);
        if let Some(n) = self.entries.get_mut(&id) {
            n.children = children;
            n.ike_rekey_at = at;
            n.reauth_at = reauth_at;
            n.replaces = replaces;
        }
        // Whoever waits for this IKE SA's reauthentication now waits for
        // the new one.
        for e in self.entries.values_mut() {
            if e.replaces == Some(old) {
                e.replaces = Some(id);
            }
        }
        self.half_open.remove(&id);
        if let Some(n) = self.entries.get(&id) {
            self.keylog_ike(&n.sa);
        }
        // Its connection was deleted while the rekey was under way: the
        // new IKE SA goes too.
        if !self.conn_live[conn] {
            if let Some(n) = self.entries.get_mut(&id) {
                info!("its connection was deleted: deleting the rekeyed IKE_SA");
                n.ike_rekey_at = None;
                n.reauth_at = None;
                let _ = n.sa.delete(Instant::now(), &mut self.rng);
            }
        }
        self.pump(id);
    }

    /// Removes a policy, or unbinds it if it is a trap (it stays).
    fn drop_policy(&mut self, p: PolicyId) {
        if self.traps.contains_key(&p) {
            let _ = self.writer.bind_policy(p, None);
        } else {
            let _ = self.writer.remove_policy(p);
        }
    }

    fn initiate(&mut self, conn: usize, now: Instant) -> Option<u64> {
        let c = &self.conns[conn];
        let span = info_span!("conn", name = %c.name);
        let _g = span.enter();
        match IkeSa::initiate(
            c.ike.clone(),
            SocketAddr::new(c.local, 500),
            SocketAddr::new(c.remote, 500),
            now,
            &mut self.rng,
        ) {
            Ok(sa) => {
                info!(peer = %c.remote, "initiating");
                let id = self.add(conn, sa);
                self.pump(id);
                Some(id)
            }
            Err(e) => {
                error!("cannot initiate: {e}");
                None
            }
        }
    }

    fn add(&mut self, conn: usize, sa: IkeSa) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let (spi_i, _) = sa.spis();
        self.by_spi.insert((spi_i, self.conns[conn].remote), id);
        let now = Instant::now();
        let next_dpd = self.conns[conn].dpd.map(|d| now + d);
        let half_open_until = (sa.role() == Role::Responder).then(|| {
            self.half_open.insert(id);
            now + self.half_open_timeout
        });
        self.entries.insert(
            id,
            Entry {
                conn,
                created: now,
                seen: sa.state(),
                sa,
                children: Vec::new(),
                next_dpd,
                half_open_until,
                ike_rekey_at: None,
                reauth_at: None,
                replaces: None,
                replaces_until: None,
                redundant_until: None,
            },
        );
        id
    }

    fn receive(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, data: &[u8]) {
        let Ok(m) = Message::parse(data) else {
            debug!(%from, "dropped an unparsable IKE datagram");
            return;
        };
        let h = m.header;
        self.totals.message(&h, "in");
        if let Some(&id) = self.by_spi.get(&(h.spi_i, from.ip())) {
            let Some(e) = self.entries.get_mut(&id) else {
                return;
            };
            let span = info_span!("conn", name = %self.conns[e.conn].name);
            let _g = span.enter();
            info!(%from, "received {}", describe(data));
            e.sa.handle(now, from, data, &mut self.rng);
            self.pump(id);
            return;
        }
        if h.exchange != ExchangeType::IKE_SA_INIT || h.is_response() || h.spi_r != 0 {
            debug!(%from, "no IKE SA for {}", describe(data));
            return;
        }
        let Some(conn) = (0..self.conns.len()).find(|&i| {
            self.conn_live[i]
                && self.conns[i].remote == from.ip()
                && self.conns[i].local == local.ip()
        }) else {
            // Per packet only at debug: a flood must not flood the log.
            debug!(%from, "IKE_SA_INIT from an unknown peer: dropped");
            self.dos.unknown_peer += 1;
            return;
        };
        let half_open = self.half_open.len();
        if half_open >= self.max_half_open {
            debug!(%from, half_open, "too many half-open IKE SAs: IKE_SA_INIT dropped");
            self.dos.half_open_full += 1;
            return;
        }
        let from_source = self
            .half_open
            .iter()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| e.sa.addresses().1.ip() == from.ip())
            .count();
        // Past the per-source limit an address must prove, with a COOKIE,
        // that it receives what is sent to it: a flood spoofing the peer's
        // address cannot lock the peer out. Twice the limit is the end.
        if from_source >= 2 * self.max_half_open_per_source {
            debug!(%from, from_source, "too many half-open IKE SAs from this address");
            self.dos.per_source_full += 1;
            return;
        }
        if half_open >= self.cookie_threshold || from_source >= self.max_half_open_per_source {
            // RFC 7296 §2.6: under load, only initiators that can receive
            // at their address get state.
            self.cookies.rotate_if_due(now, &mut self.rng);
            match ike_proto::cookie::check(&self.cookies, &m, from.ip()) {
                ike_proto::cookie::Check::Valid => self.dos.cookies_valid += 1,
                ike_proto::cookie::Check::Challenge(reply) => {
                    self.dos.cookies_sent += 1;
                    if let Some(sock) = self.sockets.get(&local) {
                        let mut bytes = Vec::with_capacity(reply.len() + 4);
                        if local.port() == 4500 {
                            bytes.extend_from_slice(&[0; 4]);
                        }
                        bytes.extend_from_slice(&reply);
                        let _ = sock.send_to(&bytes, from);
                    }
                    return;
                }
                ike_proto::cookie::Check::Invalid => return,
            }
        }
        let span = info_span!("conn", name = %self.conns[conn].name);
        let _g = span.enter();
        match IkeSa::accept(
            self.conns[conn].ike.clone(),
            local,
            from,
            now,
            data,
            &mut self.rng,
        ) {
            Ok(sa) => {
                info!(%from, "received {}", describe(data));
                let id = self.add(conn, sa);
                self.pump(id);
            }
            Err(e) => {
                // Counted, and logged once per summary period: a
                // misconfigured peer is seen, a flood does not flood the log.
                if self.dos.malformed == 0 {
                    info!(%from, "IKE_SA_INIT refused: {e} (further ones counted as malformed)");
                } else {
                    debug!(%from, "IKE_SA_INIT refused: {e}");
                }
                self.dos.malformed += 1;
            }
        }
    }

    fn timers(&mut self, now: Instant) {
        let volume_check = now.duration_since(self.volume_checked) >= Duration::from_millis(100);
        if volume_check {
            self.volume_checked = now;
        }
        if now.duration_since(self.dos_logged) >= Duration::from_secs(10) {
            self.log_dos(now);
        }

        if self.lingering.iter().any(|(t, _)| *t <= now) {
            let (due, keep): (Vec<_>, Vec<_>) =
                self.lingering.drain(..).partition(|(t, _)| *t <= now);
            self.lingering = keep;
            for (_, h) in due {
                let _ = self.delete_sa(h);
            }
        }
        let expired: Vec<u64> = self
            .half_open
            .iter()
            .copied()
            .filter(|id| {
                self.entries
                    .get(id)
                    .is_none_or(|e| e.half_open_until.is_some_and(|t| t <= now))
            })
            .collect();
        for id in expired {
            if let Some(e) = self.entries.get(&id) {
                let span = info_span!("conn", name = %self.conns[e.conn].name);
                let _g = span.enter();
                let (spi_i, spi_r) = e.sa.spis();
                info!("half-open IKE SA {spi_i:016x}_i {spi_r:016x}_r: no IKE_AUTH in time");
                self.totals.outcome("IKE_AUTH", "timeout");
                self.remove(id, "half-open timeout");
            }
            self.half_open.remove(&id);
        }
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        let mut reauth = Vec::new();
        for id in ids {
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            let span = info_span!("conn", name = %self.conns[e.conn].name);
            let _g = span.enter();
            if e.sa.poll_timeout().is_some_and(|t| t <= now) {
                e.sa.handle_timeout(now);
                // What it sends now is a retransmission (of one request,
                // however many fragments).
                let before = self.totals.messages.values().sum::<u64>();
                self.pump(id);
                if self.totals.messages.values().sum::<u64>() > before {
                    self.totals.retransmits += 1;
                }
                continue;
            }
            // Volume lifetimes, from the data plane's counters, every 100 ms.
            let check_volume = volume_check;
            let mut expired = Vec::new();
            for c in e.children.iter_mut().filter(|c| !c.replaced) {
                let used = if check_volume && (c.hard != (0, 0)) {
                    let a = self.writer.sa_counters(c.h_in).unwrap_or_default();
                    let b = self.writer.sa_counters(c.h_out).unwrap_or_default();
                    (a.bytes.max(b.bytes), a.packets.max(b.packets))
                } else {
                    (0, 0)
                };
                let over = |limit: u64, v: u64| limit > 0 && v >= limit;
                let (then, bytes_then, packets_then) = c.volume_seen;
                if check_volume {
                    c.volume_seen = (now, used.0, used.1);
                }
                let dt = now.saturating_duration_since(then);
                if c.expire_at.is_some_and(|t| t <= now)
                    || over(c.hard.0, used.0)
                    || over(c.hard.1, used.1)
                {
                    c.expire_at = None;
                    c.hard = (0, 0);
                    expired.push(c.spi_in);
                } else if !c.rekeying
                    && check_volume
                    && (soft_due(c.soft.0, used.0, bytes_then, dt)
                        || soft_due(c.soft.1, used.1, packets_then, dt))
                {
                    let mbps = used.0.saturating_sub(bytes_then) as f64
                        / dt.as_secs_f64().max(1e-3)
                        * 8e-6;
                    let verb = if over(c.soft.0, used.0) || over(c.soft.1, used.1) {
                        "reached"
                    } else {
                        "nears"
                    };
                    info!(
                        "CHILD_SA {:08x}_i {verb} its soft volume limit ({} bytes, {} packets, {mbps:.0} Mbit/s): rekeying",
                        c.spi_in, used.0, used.1
                    );
                    c.rekey_at = Some(now);
                }
            }
            if !expired.is_empty() && e.sa.state() == State::Established {
                for spi in expired {
                    warn!("CHILD_SA {spi:08x}_i reached its hard lifetime: deleting it");
                    let _ = e.sa.delete_child(now, spi, &mut self.rng);
                }
                self.pump(id);
                continue;
            }
            if e.redundant_until.is_some_and(|t| t <= now) && e.sa.state() == State::Established {
                e.redundant_until = None;
                info!("redundant IKE_SA not deleted by the peer in 30 s: deleting it");
                if let Err(err) = e.sa.delete(now, &mut self.rng) {
                    warn!("redundant IKE_SA not deleted: {err}");
                }
                self.pump(id);
                continue;
            }
            if e.replaces.is_some() && e.replaces_until.is_some_and(|t| t <= now) {
                self.finish_reauth_by(id, Some(now));
                continue;
            }
            if e.reauth_at.is_some_and(|t| t <= now) && e.sa.state() == State::Established {
                e.reauth_at = None;
                reauth.push(id);
                continue;
            }
            if e.ike_rekey_at.is_some_and(|t| t <= now) && e.sa.state() == State::Established {
                e.ike_rekey_at = None;
                info!("rekeying the IKE_SA (lifetime)");
                if let Err(err) = e.sa.rekey_ike(now, &mut self.rng) {
                    warn!("IKE_SA not rekeyed: {err}");
                }
                self.pump(id);
                continue;
            }
            // Only now: a CHILD SA marked due above would never be rekeyed.
            let due: Vec<u32> = e
                .children
                .iter_mut()
                .filter(|c| !c.rekeying && c.rekey_at.is_some_and(|t| t <= now))
                .map(|c| {
                    c.rekey_at = None;
                    c.rekeying = true;
                    c.spi_in
                })
                .collect();
            if !due.is_empty() && e.sa.state() == State::Established {
                for spi in due {
                    info!("rekeying CHILD_SA {spi:08x}_i (lifetime)");
                    if let Err(err) = e.sa.rekey_child(now, spi, &mut self.rng) {
                        warn!("CHILD_SA {spi:08x}_i not rekeyed: {err}");
                    }
                }
                self.pump(id);
                continue;
            }
            let dpd = self.conns[e.conn].dpd;
            if let (Some(t), Some(d)) = (e.next_dpd, dpd) {
                if now >= t && e.sa.state() == State::Established {
                    e.next_dpd = Some(now + d);
                    if e.sa.poll_timeout().is_none() {
                        let _ = e.sa.check_liveness(now, &mut self.rng);
                        self.pump(id);
                    }
                }
            }
        }
        for id in reauth {
            self.reauthenticate(id, now);
        }
    }

    /// Sends what the SA queued and acts on its events.
    fn pump(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        // Callers enter the connection's span.
        let (local, _) = e.sa.addresses();
        let seen = e.seen;
        e.seen = e.sa.state();
        // Log lines first (they describe what is about to be sent), then
        // the datagrams, then the other events.
        let mut events = Vec::new();
        while let Some(ev) = e.sa.poll_event() {
            match ev {
                Event::Log(l) => info!("{l}"),
                other => events.push(other),
            }
        }
        while let Some(t) = e.sa.poll_transmit() {
            let port = if t.dst.port() == 500 { 500 } else { 4500 };
            let Some(sock) = self.sockets.get(&SocketAddr::new(local.ip(), port)) else {
                error!("no socket for {}:{port}", local.ip());
                continue;
            };
            let parsed = Message::parse(&t.data);
            info!(to = %t.dst, "sending {}", describe_parsed(&parsed));
            if let Ok(m) = &parsed {
                self.totals.message(&m.header, "out");
            }
            let mut bytes = Vec::with_capacity(t.data.len() + 4);
            if port == 4500 {
                bytes.extend_from_slice(&[0; 4]);
            }
            bytes.extend_from_slice(&t.data);
            if let Err(err) = sock.send_to(&bytes, t.dst) {
                warn!(to = %t.dst, "send failed: {err}");
            }
        }
        let mut close = None;
        let mut more_children = false;
        for ev in events {
            match ev {
                Event::Established { spi_i, spi_r } => {
                    self.totals.outcome("IKE_AUTH", "ok");
                    info!("IKE_SA established, SPIs {spi_i:016x}_i {spi_r:016x}_r");
                    let at = self.ike_rekey_deadline(id);
                    let reauth = self.reauth_deadline(id);
                    if let Some(e) = self.entries.get_mut(&id) {
                        e.ike_rekey_at = at;
                        e.reauth_at = reauth;
                    }
                    if let Some(e) = self.entries.get(&id) {
                        self.keylog_ike(&e.sa);
                    }
                    more_children = true;
                }
                Event::IkeRekeyed(next) => {
                    self.totals.rekeys_ike += 1;
                    self.totals.outcome("CREATE_CHILD_SA", "ok");
                    self.adopt(id, *next);
                }
                Event::IkeRedundant(extra) => {
                    // A rekey collision's loser: kept only to exchange its
                    // Delete, then removed like any closed IKE SA; deleted
                    // by us after 30 s if the peer's Delete never comes.
                    let (spi_i, spi_r) = extra.spis();
                    info!("IKE_SA {spi_i:016x}_i {spi_r:016x}_r is redundant (rekey collision): deleting it");
                    if let Some(conn) = self.entries.get(&id).map(|e| e.conn) {
                        let nid = self.add(conn, *extra);
                        self.half_open.remove(&nid);
                        if let Some(n) = self.entries.get_mut(&nid) {
                            n.redundant_until = Some(Instant::now() + Duration::from_secs(30));
                            n.next_dpd = None;
                        }
                        self.pump(nid);
                    }
                }
                Event::RekeyFailed { child, notify } => {
                    self.totals.outcome("CREATE_CHILD_SA", "failed");
                    // Tried again in 10 s (RFC 7296 §2.25: wait, then retry).
                    let again = Instant::now() + Duration::from_secs(10);
                    if let Some(e) = self.entries.get_mut(&id) {
                        match child {
                            Some(spi) => {
                                warn!(%notify, "CHILD_SA {spi:08x}_i not rekeyed, trying again in 10 s");
                                if let Some(c) = e.children.iter_mut().find(|c| c.spi_in == spi) {
                                    c.rekeying = false;
                                    c.rekey_at = Some(again);
                                }
                            }
                            None => {
                                warn!(%notify, "IKE_SA not rekeyed, trying again in 10 s");
                                e.ike_rekey_at = Some(again);
                            }
                        }
                    }
                }
                Event::ChildInstalled(c) => {
                    if c.rekeys.is_some() {
                        self.totals.rekeys_child += 1;
                    }
                    if seen == State::Established {
                        self.totals.outcome("CREATE_CHILD_SA", "ok");
                    }
                    self.install(id, c);
                }
                Event::ChildDeleted { spi_in, spi_out } => self.uninstall(id, spi_in, spi_out),
                Event::Deleted => close = Some("deleted"),
                Event::PeerDead => {
                    self.totals
                        .outcome(control::exchange_of(seen, true), "timeout");
                    close = Some("peer dead (no answer to retransmissions)");
                }
                Event::Failed { reason, notify } => {
                    self.totals
                        .outcome(control::exchange_of(seen, false), "failed");
                    warn!(?notify, "{reason}");
                    if self
                        .entries
                        .get(&id)
                        .is_some_and(|e| e.sa.state() == State::Closed)
                    {
                        close = Some("failed");
                    }
                }
                Event::Alive => debug!("liveness check answered"),
                Event::LivenessAnswered => debug!("answered a liveness check"),
                Event::Dropped(why) => info!("dropped a datagram: {why}"),
                Event::Log(l) => info!("{l}"),
            }
        }
        if self
            .entries
            .get(&id)
            .is_some_and(|e| e.sa.state() != State::InitAnswered)
        {
            self.half_open.remove(&id);
        }
        if let Some(why) = close {
            self.remove(id, why);
        } else if more_children {
            self.request_more_children(id, Instant::now());
            self.pump(id);
        }
    }

    fn install(&mut self, id: u64, c: ChildSa) {
        let Some(e) = self.entries.get(&id) else {
            return;
        };
        let (local, remote) = e.sa.addresses();
        let now_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (encr_id, key_bits, integ_id) = c.esp.ids();
        let mk = |dir: Direction,
                  spi: u32,
                  src: SocketAddr,
                  dst: SocketAddr,
                  keys: (&[u8], &[u8]),
                  sa_id: u64| {
            SaConfig {
                sa_id,
                child_id: c.spi_in,
                direction: dir,
                spi,
                src: src.ip(),
                dst: dst.ip(),
                encap: c.nat_t.then_some((src.port(), dst.port())),
                encr_id,
                key_bits,
                integ_id,
                encr_key: keys.0.to_vec(),
                integ_key: keys.1.to_vec(),
                esn: false,
                replay_window: 4096,
                lifetimes: Lifetimes::default(),
                installed_at: now_s,
            }
        };
        let inbound = mk(
            Direction::Inbound,
            c.spi_in,
            remote,
            local,
            (&c.encr_in, &c.integ_in),
            self.next_sa_id,
        );
        let outbound = mk(
            Direction::Outbound,
            c.spi_out,
            local,
            remote,
            (&c.encr_out, &c.integ_out),
            self.next_sa_id + 1,
        );
        self.next_sa_id += 2;
        let h_in = match self.writer.insert_sa(&inbound) {
            Ok(h) => h,
            Err(err) => return error!("installing inbound SA {:08x}: {err}", c.spi_in),
        };
        let h_out = match self.writer.insert_sa(&outbound) {
            Ok(h) => h,
            Err(err) => {
                let _ = self.delete_sa(h_in);
                return error!("installing outbound SA {:08x}: {err}", c.spi_out);
            }
        };
        // A rekey moves the old CHILD SA's policies to the new outbound SA:
        // one atomic store per policy, so traffic switches without a gap;
        // the old SAs stay for packets in flight until the old CHILD SA is
        // deleted (RFC 7296 §2.8).
        // As the rekey's responder, keep sending on the old SA until the
        // initiator deletes it (then it surely has the new inbound SA).
        let moved = c.rekeys.and_then(|old| {
            let e = self.entries.get_mut(&id)?;
            let o = e.children.iter_mut().find(|x| x.spi_in == old)?;
            o.rekey_at = None;
            o.replaced = true;
            if c.initiator {
                Some((old, o.spi_out, std::mem::take(&mut o.policies)))
            } else {
                o.successor = Some(h_out);
                Some((old, o.spi_out, Vec::new()))
            }
        });
        // Reauthentication (RFC 7296 §2.8.3): a CHILD SA of a new IKE SA
        // with the selectors of one in another IKE SA of the connection
        // takes its traffic over as a rekey would: at once when we made
        // it, when the old IKE SA is deleted when the peer did.
        let moved = moved.or_else(|| {
            let conn = self.entries.get(&id)?.conn;
            let other = self.entries.iter_mut().find_map(|(oid, e)| {
                if *oid == id || e.conn != conn {
                    return None;
                }
                e.children
                    .iter_mut()
                    .find(|x| !x.replaced && x.ts.0 == c.local_ts && x.ts.1 == c.remote_ts)
            })?;
            let o = other;
            o.rekey_at = None;
            o.replaced = true;
            if c.initiator {
                Some((o.spi_in, o.spi_out, std::mem::take(&mut o.policies)))
            } else {
                o.successor = Some(h_out);
                Some((o.spi_in, o.spi_out, Vec::new()))
            }
        });
        let mut policies = Vec::new();
        if let Some((old_in, _, _)) = &moved {
            if c.rekeys.is_none() {
                info!(
                    "CHILD_SA {:08x}_i takes over from {old_in:08x}_i of the IKE SA it reauthenticates",
                    c.spi_in
                );
            }
        }
        if let Some((_, _, ps)) = &moved {
            for p in ps {
                if let Err(err) = self.writer.bind_policy(*p, Some(h_out)) {
                    error!("rebinding policy to the rekeyed SA: {err}");
                }
                policies.push(*p);
            }
        }
        for l in &c.local_ts {
            if moved.is_some() {
                break;
            }
            for r in &c.remote_ts {
                let (Some(lp), Some(rp)) = (prefix_of(l), prefix_of(r)) else {
                    warn!(
                        ?l,
                        ?r,
                        "selector range is not a prefix: no policy installed for it"
                    );
                    continue;
                };
                let conn = self.entries.get(&id).map_or(usize::MAX, |e| e.conn);
                if let Some(&p) = self.trap_by_sel.get(&(conn, lp, rp)) {
                    let _ = self.writer.bind_policy(p, Some(h_out));
                    policies.push(p);
                    continue;
                }
                match self.protect(lp, rp, h_out) {
                    Ok(p) => policies.push(p),
                    Err(err) => error!("policy {lp:?} -> {rp:?}: {err}"),
                }
            }
        }
        if let Err(err) = self.commit() {
            error!("publishing policies: {err}");
        }
        info!(
            "CHILD_SA installed with SPIs {:08x}_i {:08x}_o, TS {} === {}, {}",
            c.spi_in,
            c.spi_out,
            join(&c.local_ts),
            join(&c.remote_ts),
            if c.nat_t { "UDP-encapsulated" } else { "ESP" }
        );
        if let Some((old_in, old_out, _)) = &moved {
            info!(
                "CHILD_SA rekeyed: SPIs {old_in:08x}_i {old_out:08x}_o replaced by {:08x}_i {:08x}_o",
                c.spi_in, c.spi_out
            );
        }
        if let Some(dir) = &self.keylog {
            if let Err(err) = ike_proto::keylog::append(
                dir,
                "esp_sa",
                &c.wireshark_esp_sa_lines(local.ip(), remote.ip()),
            ) {
                warn!("key log: {err}");
            }
        }
        // Rekey ahead of the lifetime, up to 10% early so the two peers
        // rarely start together.
        let rekey_time = self
            .entries
            .get(&id)
            .and_then(|e| self.conns.get(e.conn))
            .and_then(|c| c.rekey_time);
        let rekey_at = rekey_time.map(|t| self.jittered(t));
        if let Some(e) = self.entries.get_mut(&id) {
            let life = self.conns.get(e.conn).map(|c| c.life).unwrap_or_default();
            let soft = |h: u64| h / 10 * 9;
            e.children.push(Installed {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                h_in,
                h_out,
                policies,
                rekey_at,
                expire_at: life.hard.map(|t| Instant::now() + t),
                soft: (soft(life.hard_bytes), soft(life.hard_packets)),
                hard: (life.hard_bytes, life.hard_packets),
                volume_seen: (Instant::now(), 0, 0),
                rekeying: false,
                successor: None,
                replaced: false,
                ts: (c.local_ts.clone(), c.remote_ts.clone()),
                installed: Instant::now(),
                esp: control::esp_name(encr_id, key_bits, integ_id),
                udp_encap: c.nat_t,
            });
        }
        self.finish_reauth(id);
    }

    /// Publishes policy changes (deferred until the end of start-up).
    fn commit(&mut self) -> Result<(), sluice_sa_table::TableError> {
        if self.defer_commit {
            return Ok(());
        }
        self.writer.commit()
    }

    /// Deletes an SA from the table, its counters added to the totals
    /// first (so the ESP totals never go backwards).
    fn delete_sa(&mut self, h: SaHandle) -> Result<(), sluice_sa_table::TableError> {
        if let (Some(c), Some(cfg)) = (self.writer.sa_counters(h), self.writer.sa_config(h)) {
            self.totals.retire(cfg.direction, &c);
        }
        self.writer.delete_sa(h)
    }

    /// A PROTECT policy from `lp` to `rp` bound to the outbound SA `h_out`
    /// (the caller commits).
    fn protect(
        &mut self,
        lp: Prefix,
        rp: Prefix,
        h_out: SaHandle,
    ) -> Result<PolicyId, sluice_sa_table::TableError> {
        let p = self
            .writer
            .add_policy(Policy::between(lp, rp, Action::Protect))?;
        let _ = self.writer.bind_policy(p, Some(h_out));
        Ok(p)
    }

    fn uninstall(&mut self, id: u64, spi_in: u32, spi_out: u32) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(pos) = e.children.iter().position(|c| c.spi_in == spi_in) else {
            return;
        };
        let mut c = e.children.remove(pos);
        if let Some(next) = c.successor {
            // The peer rekeyed this CHILD SA (or reauthenticated its IKE SA)
            // and now deletes it: its traffic moves to the new outbound SA,
            // which the peer can decrypt. The successor may belong to
            // another IKE SA (reauthentication).
            let ps = std::mem::take(&mut c.policies);
            for p in &ps {
                if let Err(err) = self.writer.bind_policy(*p, Some(next)) {
                    error!("rebinding policy to the rekeyed SA: {err}");
                }
            }
            if let Some(n) = self
                .entries
                .values_mut()
                .flat_map(|e| e.children.iter_mut())
                .find(|x| x.h_out == next)
            {
                n.policies.extend(ps);
            }
        }
        // Packets sent on a rekeyed SA may still be on their way: its
        // inbound half lingers (as strongSwan's delete_rekeyed_delay). So
        // does that of a CHILD SA whose traffic carries on in another with
        // the same selectors: the redundant SA of a rekey collision
        // (RFC 7296 §2.8.1), which the peer may have sent on until it
        // learnt that it lost.
        let conn = self.entries.get(&id).map(|e| e.conn);
        let sibling = || {
            self.entries.values().any(|e| {
                Some(e.conn) == conn && e.children.iter().any(|x| !x.replaced && x.ts == c.ts)
            })
        };
        if c.replaced || sibling() {
            for p in std::mem::take(&mut c.policies) {
                self.drop_policy(p);
            }
            let _ = self.delete_sa(c.h_out);
            if let Err(err) = self.commit() {
                error!("publishing policies: {err}");
            }
            self.lingering
                .push((Instant::now() + self.delete_rekeyed_delay, c.h_in));
        } else {
            self.remove_child(c);
        }
        info!("CHILD_SA deleted, SPIs {spi_in:08x}_i {spi_out:08x}_o");
    }

    fn remove_child(&mut self, c: Installed) {
        for p in c.policies {
            self.drop_policy(p);
        }
        let _ = self.delete_sa(c.h_out);
        let _ = self.delete_sa(c.h_in);
        if let Err(err) = self.commit() {
            error!("publishing policies: {err}");
        }
    }

    fn remove(&mut self, id: u64, why: &str) {
        self.half_open.remove(&id);
        // CHILD SAs taken over (rekey by the peer, reauthentication) hand
        // their policies to the successor rather than dropping them.
        let handed: Vec<(u32, u32)> = self.entries.get(&id).map_or_else(Vec::new, |e| {
            e.children
                .iter()
                .filter(|c| c.successor.is_some())
                .map(|c| (c.spi_in, c.spi_out))
                .collect()
        });
        for (i, o) in handed {
            self.uninstall(id, i, o);
        }
        // CHILD SAs elsewhere that were to hand over to this IKE SA's CHILD
        // SAs keep their traffic, and are rekeyed soon instead.
        let gone: Vec<SaHandle> = self
            .entries
            .get(&id)
            .map_or_else(Vec::new, |e| e.children.iter().map(|c| c.h_out).collect());
        let now = Instant::now();
        for (oid, e) in self.entries.iter_mut() {
            if *oid == id {
                continue;
            }
            for c in e.children.iter_mut() {
                if c.successor.is_some_and(|h| gone.contains(&h)) {
                    warn!(
                        "CHILD_SA {:08x}_i: its successor went away with its IKE SA; it stays and is rekeyed",
                        c.spi_in
                    );
                    c.successor = None;
                    c.replaced = false;
                    c.rekeying = false;
                    c.rekey_at = Some(now);
                }
            }
        }
        // A reauthentication that failed: the old IKE SA tries again later.
        if let Some(old) = self.entries.get(&id).and_then(|e| e.replaces) {
            if let Some(o) = self.entries.get_mut(&old) {
                warn!(
                    "reauthentication failed ({why}): the old IKE SA stays, trying again in 60 s"
                );
                o.reauth_at = Some(Instant::now() + Duration::from_secs(60));
            }
        }
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        let (spi_i, spi_r) = e.sa.spis();
        self.by_spi.retain(|_, v| *v != id);
        for c in e.children {
            info!(
                "CHILD_SA removed, SPIs {:08x}_i {:08x}_o ({why})",
                c.spi_in, c.spi_out
            );
            self.remove_child(c);
        }
        info!(conn = %self.conns[e.conn].name, "IKE_SA {spi_i:016x}_i {spi_r:016x}_r closed: {why}");
    }

    fn keylog_ike(&self, sa: &IkeSa) {
        if let (Some(dir), Some(line)) = (&self.keylog, sa.wireshark_ikev2_line()) {
            if let Err(err) = ike_proto::keylog::append(dir, "ikev2_decryption_table", &[line]) {
                warn!("key log: {err}");
            }
        }
    }
}

fn join(ts: &[Selector]) -> String {
    ts.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_volume_limit_is_due_ahead_at_the_rate_seen() {
        let ms = Duration::from_millis;
        // No limit, or far from it at a slow rate: not due.
        assert!(!soft_due(0, 1 << 40, 0, ms(100)));
        assert!(!soft_due(1000, 500, 490, ms(100)));
        // Reached: due, whatever the rate.
        assert!(soft_due(1000, 1000, 1000, ms(100)));
        assert!(soft_due(1000, 1500, 0, Duration::ZERO));
        // 900 now, 100 more every 100 ms: 1000 in 100 ms, within the lead.
        assert!(soft_due(1000, 900, 800, ms(100)));
        // 50 per 100 ms: 1000 only in 200 ms... still within 300 ms.
        assert!(soft_due(1000, 900, 850, ms(100)));
        // 20 per 100 ms: 960 in 300 ms, not yet.
        assert!(!soft_due(1000, 900, 880, ms(100)));
        // No time since the last check: only the count decides.
        assert!(!soft_due(1000, 999, 0, Duration::ZERO));
    }

    #[test]
    fn prefixes_from_ranges() {
        let s = Selector::subnet("198.19.2.0".parse().unwrap(), 24);
        assert_eq!(
            prefix_of(&s),
            Some(Prefix {
                addr: s.start,
                len: 24
            })
        );
        let all = Selector::subnet("0.0.0.0".parse().unwrap(), 0);
        assert_eq!(prefix_of(&all).map(|p| p.len), Some(0));
        let v6 = Selector::subnet("2001:db8::".parse().unwrap(), 48);
        assert_eq!(prefix_of(&v6).map(|p| p.len), Some(48));
        let odd = Selector {
            start: "198.19.2.1".parse().unwrap(),
            end: "198.19.2.6".parse().unwrap(),
            proto: 0,
            ports: (0, 65535),
        };
        assert_eq!(prefix_of(&odd), None);
    }
}
