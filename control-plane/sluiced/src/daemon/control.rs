//! What the REST API asks of the daemon, answered on the event loop's
//! thread: connections created, replaced and deleted at run time (and
//! persisted), manually keyed SAs, SA listings, actions, statistics and
//! the Prometheus exposition.

use super::{prefix_of, Daemon2, Installed};
use crate::config::{self, Resolved, StartAction};
use ike_proto::State;
use sluice_api::metrics::{Exposition, Kind};
use sluice_api::model::{
    ChildSaInfo, Connection, ConnectionInfo, Counters, Done, IkeSaInfo, ManualSa, ManualSaInfo,
    Source, Stats, WorkerStats,
};
use sluice_api::server::{Answer, ApiError, Command, Reply};
use sluice_sa_table::{
    CounterSnapshot, Direction, DpEvent, DropReason, Lifetimes, PolicyId, SaConfig, SaHandle,
    MAX_WORKERS,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Instant, SystemTime};
use tracing::{error, info, info_span, warn};
use zeroize::Zeroizing;

/// A manually keyed SA pair in the table.
pub(super) struct Manual {
    pub(super) spec: ManualSa,
    pub(super) h_in: SaHandle,
    pub(super) h_out: SaHandle,
    pub(super) policies: Vec<PolicyId>,
}

/// Running totals for /v1/stats and /metrics.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) rekeys_ike: u64,
    pub(super) rekeys_child: u64,
    pub(super) retransmits: u64,
    /// (exchange, in|out, request|response) -> messages.
    pub(super) messages: BTreeMap<(String, &'static str, &'static str), u64>,
    /// (exchange, ok|failed|timeout) -> outcomes.
    pub(super) outcomes: BTreeMap<(&'static str, &'static str), u64>,
    /// Counters of SAs deleted from the table, by direction (in, out).
    retired: [CounterSnapshot; 2],
}

impl Totals {
    /// Keeps a deleted SA's final counters in the totals.
    pub(super) fn retire(&mut self, dir: Direction, c: &CounterSnapshot) {
        let t = &mut self.retired[usize::from(dir == Direction::Outbound)];
        t.packets += c.packets;
        t.bytes += c.bytes;
        for (a, b) in t.drops.iter_mut().zip(c.drops.iter()) {
            *a += b;
        }
    }

    pub(super) fn outcome(&mut self, exchange: &'static str, outcome: &'static str) {
        *self.outcomes.entry((exchange, outcome)).or_default() += 1;
    }

    /// Counts an IKE message by its header.
    pub(super) fn message(&mut self, h: &ike_wire::Header, dir: &'static str) {
        let kind = if h.is_response() {
            "response"
        } else {
            "request"
        };
        *self
            .messages
            .entry((h.exchange.to_string(), dir, kind))
            .or_default() += 1;
    }
}

/// The exchange a failure in this state belongs to (best effort: an
/// established IKE SA fails in CREATE_CHILD_SA or INFORMATIONAL).
pub(super) fn exchange_of(state: State, timeout: bool) -> &'static str {
    match state {
        State::InitSent => "IKE_SA_INIT",
        State::InitAnswered | State::AuthSent => "IKE_AUTH",
        _ if timeout => "INFORMATIONAL",
        _ => "CREATE_CHILD_SA",
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::InitSent | State::AuthSent => "connecting",
        State::InitAnswered => "half_open",
        State::Established => "established",
        State::Rekeyed => "rekeyed",
        State::Closed => "closed",
    }
}

const STATES: [&str; 5] = [
    "half_open",
    "connecting",
    "established",
    "rekeyed",
    "closed",
];

/// `AES_GCM_16-128` and so on, as strongSwan names transforms.
pub(super) fn esp_name(encr: u16, bits: u16, integ: u16) -> String {
    let e = match encr {
        20 => format!("AES_GCM_16-{bits}"),
        12 => format!("AES_CBC-{bits}"),
        28 => "CHACHA20_POLY1305".to_string(),
        n => format!("ENCR_{n}"),
    };
    match integ {
        0 => e,
        12 => format!("{e}/HMAC_SHA2_256_128"),
        n => format!("{e}/INTEG_{n}"),
    }
}

fn counters(c: Option<CounterSnapshot>) -> Counters {
    let c = c.unwrap_or_default();
    Counters {
        packets: c.packets,
        bytes: c.bytes,
        drops: DropReason::ALL
            .iter()
            .filter(|r| c.dropped(**r) > 0)
            .map(|r| (r.as_str().to_string(), c.dropped(*r)))
            .collect(),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

fn secs_until(t: Option<Instant>, now: Instant) -> Option<u64> {
    t.map(|t| t.saturating_duration_since(now).as_secs())
}

/// Writes `data` to `path` atomically with mode 0600 (secrets inside).
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Creates the state directory, mode 0700.
pub(super) fn state_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Reads a JSON array persisted in the state directory (none: empty).
pub(super) fn load_persisted<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Vec<T>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&Zeroizing::new(b))
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn hex_key(s: &str, what: &str, len: usize) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let s = s.trim_start_matches("0x");
    if s.len() != 2 * len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{what}: {len} bytes in hex expected ({} hex digits)",
            2 * len
        )));
    }
    let v = (0..len)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    Ok(Zeroizing::new(v))
}

impl Daemon2 {
    /// Answers what the API queued (bounded per loop turn).
    pub(super) fn api_requests(&mut self, now: Instant) {
        for _ in 0..32 {
            let Some(rx) = &self.api else {
                return;
            };
            let Ok(req) = rx.try_recv() else {
                return;
            };
            let r = self.command(&req.command, now);
            req.answer(r);
        }
    }

    fn command(&mut self, cmd: &Command, now: Instant) -> Reply {
        match cmd {
            Command::Health => Ok(Answer::Ok(serde_json::json!({"status": "ok"}))),
            Command::ListConnections => {
                let v: Vec<ConnectionInfo> = (0..self.conns.len())
                    .filter(|&i| self.conn_live[i])
                    .map(|i| self.conn_info(i))
                    .collect();
                Ok(Answer::Ok(json(&v)?))
            }
            Command::GetConnection(name) => {
                let i = self.live_conn(name)?;
                Ok(Answer::Ok(json(&self.conn_info(i))?))
            }
            Command::CreateConnection(c) => self.create_connection(c, now),
            Command::ReplaceConnection(name, c) => self.replace_connection(name, c, now),
            Command::DeleteConnection(name) => {
                let i = self.api_conn(name)?;
                let rest: Vec<Connection> = self.api_specs(Some(i));
                self.persist_connections(&rest)?;
                self.close_connection(i, "connection deleted through the API");
                info!(conn = %name, "connection deleted through the API");
                Ok(Answer::NoContent)
            }
            Command::Initiate(name) => {
                let i = self.live_conn(name)?;
                match self.initiate(i, now) {
                    Some(id) => Ok(Answer::Accepted(json(&Done {
                        message: format!("initiating {name}"),
                        ike_sa: Some(id),
                    })?)),
                    None => Err(ApiError::internal(format!(
                        "{name}: could not initiate (see the log)"
                    ))),
                }
            }
            Command::ListIkeSas => {
                let mut ids: Vec<u64> = self.entries.keys().copied().collect();
                ids.sort_unstable();
                let v: Vec<IkeSaInfo> = ids
                    .iter()
                    .filter_map(|id| self.ike_info(*id, now))
                    .collect();
                Ok(Answer::Ok(json(&v)?))
            }
            Command::GetIkeSa(id) => match self.ike_info(*id, now) {
                Some(v) => Ok(Answer::Ok(json(&v)?)),
                None => Err(ApiError::not_found(format!("no IKE SA {id}"))),
            },
            Command::RekeyIkeSa(id) => self.ike_action(*id, true, now),
            Command::TerminateIkeSa(id) => self.ike_action(*id, false, now),
            Command::ListChildSas => {
                let mut ids: Vec<u64> = self.entries.keys().copied().collect();
                ids.sort_unstable();
                let v: Vec<ChildSaInfo> = ids
                    .iter()
                    .filter_map(|id| self.ike_info(*id, now))
                    .flat_map(|i| i.children)
                    .collect();
                Ok(Answer::Ok(json(&v)?))
            }
            Command::RekeyChildSa(spi) => self.child_action(*spi, true, now),
            Command::TerminateChildSa(spi) => self.child_action(*spi, false, now),
            Command::ListManualSas => {
                let v: Vec<ManualSaInfo> =
                    self.manual.values().map(|m| self.manual_info(m)).collect();
                Ok(Answer::Ok(json(&v)?))
            }
            Command::GetManualSa(name) => match self.manual.get(name) {
                Some(m) => Ok(Answer::Ok(json(&self.manual_info(m))?)),
                None => Err(ApiError::not_found(format!("no manual SA {name:?}"))),
            },
            Command::CreateManualSa(m) => self.create_manual(m),
            Command::DeleteManualSa(name) => {
                if !self.manual.contains_key(name) {
                    return Err(ApiError::not_found(format!("no manual SA {name:?}")));
                }
                let rest: Vec<ManualSa> = self
                    .manual
                    .values()
                    .filter(|m| &m.spec.name != name)
                    .map(|m| m.spec.clone())
                    .collect();
                self.persist_manual(&rest)?;
                if let Some(m) = self.manual.remove(name) {
                    self.remove_manual(m);
                }
                info!(name = %name, "manual SA pair removed through the API");
                Ok(Answer::NoContent)
            }
            Command::Stats => Ok(Answer::Ok(json(&self.stats(now))?)),
            Command::Metrics => Ok(Answer::Metrics(self.metrics(now))),
        }
    }

    // --- connections ----------------------------------------------------

    fn conn_info(&self, i: usize) -> ConnectionInfo {
        let c = &self.conns[i].spec;
        let mut shown = c.clone();
        shown.psk = None;
        ConnectionInfo {
            source: self.conn_source[i],
            ike_sas: self.entries.values().filter(|e| e.conn == i).count(),
            psk_set: c.psk.is_some() || c.psk_file.is_some(),
            connection: shown,
        }
    }

    fn live_conn(&self, name: &str) -> Result<usize, ApiError> {
        (0..self.conns.len())
            .find(|&i| self.conn_live[i] && self.conns[i].name == name)
            .ok_or_else(|| ApiError::not_found(format!("no connection {name:?}")))
    }

    /// A live connection of the API (those of the file are read-only).
    fn api_conn(&self, name: &str) -> Result<usize, ApiError> {
        let i = self.live_conn(name)?;
        if self.conn_source[i] == Source::File {
            return Err(ApiError::conflict(format!(
                "connection {name:?} is defined in the configuration file: change it there"
            )));
        }
        Ok(i)
    }

    /// The API's connections, leaving out `except`.
    /// The API's connections, leaving out `except`, with those persisted
    /// but not loaded at start-up (kept until replaced or deleted).
    fn api_specs(&self, except: Option<usize>) -> Vec<Connection> {
        (0..self.conns.len())
            .filter(|&i| {
                self.conn_live[i] && self.conn_source[i] == Source::Api && Some(i) != except
            })
            .map(|i| self.conns[i].spec.clone())
            .chain(self.unloaded_conns.iter().cloned())
            .collect()
    }

    fn persist_connections(&self, conns: &[Connection]) -> Result<(), ApiError> {
        let data = Zeroizing::new(
            serde_json::to_vec_pretty(conns).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        write_private(&self.state_dir.join("connections.json"), &data).map_err(|e| {
            error!("persisting connections: {e}");
            ApiError::internal(format!("persisting: {e}"))
        })
    }

    fn persist_manual(&self, sas: &[ManualSa]) -> Result<(), ApiError> {
        let all: Vec<&ManualSa> = sas.iter().chain(&self.unloaded_manual).collect();
        let data = Zeroizing::new(
            serde_json::to_vec_pretty(&all).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        write_private(&self.state_dir.join("manual-sas.json"), &data).map_err(|e| {
            error!("persisting manual SAs: {e}");
            ApiError::internal(format!("persisting: {e}"))
        })
    }

    /// Validates a new definition: resolved (files read, proposals
    /// parsed) and its sockets bound, before anything changes.
    fn validate(&mut self, c: &Connection, replaces: Option<usize>) -> Result<Resolved, ApiError> {
        let r = config::resolve(c).map_err(ApiError::bad_request)?;
        // A responder finds the connection by the addresses an
        // IKE_SA_INIT comes from and to: two on one pair would be a guess.
        if let Some(o) = (0..self.conns.len()).find(|&i| {
            self.conn_live[i]
                && Some(i) != replaces
                && self.conns[i].local == r.local
                && self.conns[i].remote == r.remote
        }) {
            return Err(ApiError::conflict(format!(
                "connection {:?} already runs between {} and {}: one connection per address pair",
                self.conns[o].name, r.local, r.remote
            )));
        }
        self.bind_sockets(r.local, false)
            .map_err(|e| ApiError::bad_request(format!("local_addr {}: {e}", r.local)))?;
        Ok(r)
    }

    fn create_connection(&mut self, c: &Connection, now: Instant) -> Reply {
        if self.live_conn(&c.name).is_ok() {
            return Err(ApiError::conflict(format!(
                "connection {:?} exists (PUT /v1/connections/{} replaces it)",
                c.name, c.name
            )));
        }
        let r = self.validate(c, None)?;
        let mut all = self.api_specs(None);
        all.retain(|x| x.name != c.name);
        all.push(c.clone());
        self.persist_connections(&all)?;
        self.unloaded_conns.retain(|x| x.name != c.name);
        let i = self.load_connection(r, Source::Api, now);
        info!(conn = %c.name, "connection created through the API");
        Ok(Answer::Created(json(&self.conn_info(i))?))
    }

    fn replace_connection(&mut self, name: &str, c: &Connection, now: Instant) -> Reply {
        if c.name != name {
            return Err(ApiError::bad_request(format!(
                "the body names connection {:?}, the path {name:?}",
                c.name
            )));
        }
        let old = self.api_conn(name)?;
        let r = self.validate(c, Some(old))?;
        let mut all = self.api_specs(Some(old));
        all.push(c.clone());
        self.persist_connections(&all)?;
        self.close_connection(old, "connection replaced through the API");
        let i = self.load_connection(r, Source::Api, now);
        info!(conn = %name, "connection replaced through the API");
        Ok(Answer::Ok(json(&self.conn_info(i))?))
    }

    /// Adds a resolved connection: traps installed, initiated when asked.
    pub(super) fn load_connection(&mut self, r: Resolved, source: Source, now: Instant) -> usize {
        let start = r.start;
        // A deleted connection's slot that no IKE SA or trap refers to any
        // more is reused: replacing and deleting do not grow the table.
        let free = (0..self.conns.len()).find(|&i| {
            !self.conn_live[i]
                && !self.entries.values().any(|e| e.conn == i)
                && !self.traps.values().any(|c| *c == i)
        });
        let i = match free {
            Some(i) => {
                self.conns[i] = r;
                self.conn_source[i] = source;
                self.conn_live[i] = true;
                i
            }
            None => {
                self.conns.push(r);
                self.conn_source.push(source);
                self.conn_live.push(true);
                self.conns.len() - 1
            }
        };
        if start == StartAction::Trap {
            if let Err(e) = self.trap_connection(i).and_then(|()| self.bind_acquire()) {
                error!(conn = %self.conns[i].name, "trap policies: {e}");
            }
            if let Err(e) = self.commit() {
                error!("publishing policies: {e}");
            }
        }
        if start == StartAction::Initiate {
            self.initiate(i, now);
        }
        i
    }

    /// Takes a connection out: its IKE SAs deleted with the peer (or
    /// dropped when not established), its trap policies removed.
    fn close_connection(&mut self, i: usize, why: &str) {
        self.conn_live[i] = false;
        let ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.conn == i)
            .map(|(id, _)| *id)
            .collect();
        let now = Instant::now();
        for id in ids {
            let span = info_span!("conn", name = %self.conns[i].name);
            let _g = span.enter();
            let established = self
                .entries
                .get(&id)
                .is_some_and(|e| e.sa.state() == State::Established);
            if established {
                if let Some(e) = self.entries.get_mut(&id) {
                    let _ = e.sa.delete(now, &mut self.rng);
                    e.reauth_at = None;
                    e.ike_rekey_at = None;
                }
                self.pump(id);
            } else {
                self.remove(id, why);
            }
        }
        let traps: Vec<PolicyId> = self
            .traps
            .iter()
            .filter(|(_, c)| **c == i)
            .map(|(p, _)| *p)
            .collect();
        // A trap policy a CHILD SA still carries traffic on stays until that
        // CHILD SA goes (then it is removed, no longer being a trap): its id
        // must not be freed and reused while the CHILD SA holds it.
        let held: std::collections::HashSet<PolicyId> = self
            .entries
            .values()
            .flat_map(|e| e.children.iter().flat_map(|c| c.policies.iter().copied()))
            .collect();
        for p in traps {
            self.traps.remove(&p);
            if !held.contains(&p) {
                let _ = self.writer.remove_policy(p);
            }
        }
        self.trap_by_sel.retain(|(c, _, _), _| *c != i);
        if let Err(e) = self.commit() {
            error!("publishing policies: {e}");
        }
    }

    /// UDP 500 and 4500 on `addr`, unless bound already. With `early` (at
    /// start-up) an address no interface has yet is bound all the same,
    /// with a warning: on DPDK ports it lives on the data plane's TAP,
    /// which may come after sluiced. A connection created through the API
    /// gets an error instead (a mistyped address is refused at once).
    pub(super) fn bind_sockets(&mut self, addr: IpAddr, early: bool) -> Result<(), String> {
        for port in [500u16, 4500] {
            let a = SocketAddr::new(addr, port);
            if self.sockets.contains_key(&a) {
                continue;
            }
            let s = match std::net::UdpSocket::bind(a) {
                Ok(s) => {
                    info!(addr = %a, "listening");
                    s
                }
                Err(e) if early && e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                    // Not configured (yet): bind anyway (IP_FREEBIND); IKE
                    // arrives once the address exists.
                    let s = bind_free(a).map_err(|e| format!("bind {a}: {e}"))?;
                    warn!(addr = %a, "listening, but the address is not configured on any interface yet");
                    s
                }
                Err(e) => return Err(format!("bind {a}: {e}")),
            };
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            self.sockets.insert(a, s);
        }
        Ok(())
    }

    // --- SAs ------------------------------------------------------------

    fn ike_info(&self, id: u64, now: Instant) -> Option<IkeSaInfo> {
        let e = self.entries.get(&id)?;
        let conn = self.conns.get(e.conn).map_or("?", |c| c.name.as_str());
        let (spi_i, spi_r) = e.sa.spis();
        let (local, remote) = e.sa.addresses();
        let children = e
            .children
            .iter()
            .map(|c| self.child_info(id, conn, c, now))
            .collect();
        Some(IkeSaInfo {
            id,
            connection: conn.to_string(),
            state: state_name(e.sa.state()).to_string(),
            role: match e.sa.role() {
                ike_proto::Role::Initiator => "initiator",
                ike_proto::Role::Responder => "responder",
            }
            .to_string(),
            local: local.to_string(),
            remote: remote.to_string(),
            spi_i: format!("{spi_i:016x}"),
            spi_r: format!("{spi_r:016x}"),
            proposal: e.sa.proposal_name(),
            nat: e.sa.nat_detected(),
            age_seconds: now.duration_since(e.created).as_secs(),
            rekey_in_seconds: secs_until(e.reauth_at.or(e.ike_rekey_at), now),
            children,
        })
    }

    fn child_info(&self, id: u64, conn: &str, c: &Installed, now: Instant) -> ChildSaInfo {
        ChildSaInfo {
            ike_sa: id,
            connection: conn.to_string(),
            spi_in: format!("{:08x}", c.spi_in),
            spi_out: format!("{:08x}", c.spi_out),
            esp: c.esp.clone(),
            udp_encap: c.udp_encap,
            local_ts: c.ts.0.iter().map(ToString::to_string).collect(),
            remote_ts: c.ts.1.iter().map(ToString::to_string).collect(),
            age_seconds: now.duration_since(c.installed).as_secs(),
            rekey_in_seconds: secs_until(c.rekey_at, now),
            expires_in_seconds: secs_until(c.expire_at, now),
            replaced: c.replaced,
            inbound: counters(self.writer.sa_counters(c.h_in)),
            outbound: counters(self.writer.sa_counters(c.h_out)),
        }
    }

    fn ike_action(&mut self, id: u64, rekey: bool, now: Instant) -> Reply {
        let Some(e) = self.entries.get_mut(&id) else {
            return Err(ApiError::not_found(format!("no IKE SA {id}")));
        };
        let span = info_span!("conn", name = %self.conns[e.conn].name);
        let _g = span.enter();
        let (spi_i, spi_r) = e.sa.spis();
        let state = e.sa.state();
        let message = if rekey {
            if state != State::Established {
                return Err(ApiError::conflict(format!(
                    "IKE SA {id} is {}, not established",
                    state_name(state)
                )));
            }
            info!("rekeying the IKE_SA {spi_i:016x}_i {spi_r:016x}_r (API)");
            e.sa.rekey_ike(now, &mut self.rng)
                .map_err(|err| ApiError::conflict(format!("IKE SA {id}: {err}")))?;
            format!("rekeying IKE_SA {spi_i:016x}_i {spi_r:016x}_r")
        } else if state == State::Established {
            info!("deleting the IKE_SA {spi_i:016x}_i {spi_r:016x}_r (API)");
            e.reauth_at = None;
            e.ike_rekey_at = None;
            let _ = e.sa.delete(now, &mut self.rng);
            format!("deleting IKE_SA {spi_i:016x}_i {spi_r:016x}_r")
        } else {
            self.remove(id, "terminated through the API");
            return Ok(Answer::Accepted(json(&Done {
                message: format!("removed IKE_SA {spi_i:016x}_i {spi_r:016x}_r"),
                ike_sa: Some(id),
            })?));
        };
        self.pump(id);
        Ok(Answer::Accepted(json(&Done {
            message,
            ike_sa: Some(id),
        })?))
    }

    fn child_action(&mut self, spi: u32, rekey: bool, now: Instant) -> Reply {
        let Some((&id, e)) = self
            .entries
            .iter_mut()
            .find(|(_, e)| e.children.iter().any(|c| c.spi_in == spi))
        else {
            return Err(ApiError::not_found(format!(
                "no CHILD SA with inbound SPI {spi:08x}"
            )));
        };
        let span = info_span!("conn", name = %self.conns[e.conn].name);
        let _g = span.enter();
        if e.sa.state() != State::Established {
            return Err(ApiError::conflict(format!(
                "its IKE SA is {}, not established",
                state_name(e.sa.state())
            )));
        }
        let Some(c) = e.children.iter_mut().find(|c| c.spi_in == spi) else {
            return Err(ApiError::not_found(format!("no CHILD SA {spi:08x}")));
        };
        if c.replaced {
            return Err(ApiError::conflict(format!(
                "CHILD SA {spi:08x} was rekeyed already"
            )));
        }
        let message = if rekey {
            if c.rekeying {
                return Err(ApiError::conflict(format!(
                    "CHILD SA {spi:08x} is being rekeyed"
                )));
            }
            c.rekeying = true;
            c.rekey_at = None;
            info!("rekeying CHILD_SA {spi:08x}_i (API)");
            e.sa.rekey_child(now, spi, &mut self.rng)
                .map_err(|err| ApiError::conflict(format!("CHILD SA {spi:08x}: {err}")))?;
            format!("rekeying CHILD_SA {spi:08x}_i")
        } else {
            info!("deleting CHILD_SA {spi:08x}_i (API)");
            e.sa.delete_child(now, spi, &mut self.rng)
                .map_err(|err| ApiError::conflict(format!("CHILD SA {spi:08x}: {err}")))?;
            format!("deleting CHILD_SA {spi:08x}_i")
        };
        self.pump(id);
        Ok(Answer::Accepted(json(&Done {
            message,
            ike_sa: Some(id),
        })?))
    }

    // --- manually keyed SAs ---------------------------------------------

    fn manual_info(&self, m: &Manual) -> ManualSaInfo {
        let s = &m.spec;
        ManualSaInfo {
            name: s.name.clone(),
            local_addr: s.local_addr,
            remote_addr: s.remote_addr,
            spi_in: format!("{:08x}", s.spi_in),
            spi_out: format!("{:08x}", s.spi_out),
            esp: s.esp.clone(),
            local_ts: s.local_ts.clone(),
            remote_ts: s.remote_ts.clone(),
            inbound: counters(self.writer.sa_counters(m.h_in)),
            outbound: counters(self.writer.sa_counters(m.h_out)),
        }
    }

    fn create_manual(&mut self, m: &ManualSa) -> Reply {
        if self.manual.contains_key(&m.name) {
            return Err(ApiError::conflict(format!(
                "manual SA {:?} exists (delete it first)",
                m.name
            )));
        }
        let taken = self.writer.live_sas().into_iter().any(|(_, c)| {
            (c.direction == Direction::Inbound && c.spi == m.spi_in && c.dst == m.local_addr)
                || (c.direction == Direction::Outbound
                    && c.spi == m.spi_out
                    && c.dst == m.remote_addr)
        });
        if taken {
            return Err(ApiError::conflict(
                "an SA with that SPI and destination is installed already",
            ));
        }
        let installed = self.install_manual(m, None)?;
        self.unloaded_manual.retain(|x| x.name != m.name);
        let mut all: Vec<ManualSa> = self.manual.values().map(|x| x.spec.clone()).collect();
        all.push(m.clone());
        if let Err(e) = self.persist_manual(&all) {
            self.remove_manual(installed);
            return Err(e);
        }
        info!(
            name = %m.name,
            "manual SA pair installed: SPIs {:08x}_i {:08x}_o, {} === {}",
            m.spi_in,
            m.spi_out,
            m.local_ts.join(" "),
            m.remote_ts.join(" ")
        );
        let info = self.manual_info(&installed);
        self.manual.insert(m.name.clone(), installed);
        Ok(Answer::Created(json(&info)?))
    }

    /// Checks and installs a manually keyed SA pair and its outbound
    /// policies (one commit); `reuse` keeps SAs a previous run left in the
    /// table (their sequence numbers, replay windows and counters).
    /// Nothing stays behind on failure.
    pub(super) fn install_manual(
        &mut self,
        m: &ManualSa,
        reuse: Option<(SaHandle, SaHandle)>,
    ) -> Result<Manual, ApiError> {
        let bad = |m: String| ApiError::bad_request(m);
        if !sluice_api::model::valid_name(&m.name) {
            return Err(bad("name: 1-64 letters, digits, '-', '_' or '.'".into()));
        }
        if m.spi_in < 256 || m.spi_out < 256 {
            return Err(bad("SPIs 0-255 are reserved (RFC 4303 §2.1)".into()));
        }
        if m.local_addr.is_ipv4() != m.remote_addr.is_ipv4() {
            return Err(bad(
                "local_addr and remote_addr of different families".into()
            ));
        }
        let props = config::parse_esp_proposal(&m.esp).map_err(bad)?;
        let [esp] = props.as_slice() else {
            return Err(bad("esp: exactly one transform".into()));
        };
        if config::parse_pfs(&m.esp).ok().flatten().is_some() {
            return Err(bad("esp: no DH group for a manual SA".into()));
        }
        let (encr_id, key_bits, integ_id) = esp.ids();
        let encr_len = usize::from(key_bits / 8) + if integ_id == 0 { 4 } else { 0 };
        let ein = hex_key(&m.encr_key_in, "encr_key_in", encr_len)?;
        let eout = hex_key(&m.encr_key_out, "encr_key_out", encr_len)?;
        let (iin, iout) = if integ_id == 0 {
            if m.integ_key_in.is_some() || m.integ_key_out.is_some() {
                return Err(bad(
                    "integ_key_*: an AEAD transform has no separate integrity key".into(),
                ));
            }
            (Zeroizing::new(Vec::new()), Zeroizing::new(Vec::new()))
        } else {
            let need = |k: &Option<String>, what: &str| {
                k.as_deref()
                    .ok_or_else(|| bad(format!("{what} is required with {}", m.esp)))
                    .and_then(|k| hex_key(k, what, 32))
            };
            (
                need(&m.integ_key_in, "integ_key_in")?,
                need(&m.integ_key_out, "integ_key_out")?,
            )
        };
        if m.local_ts.is_empty() || m.remote_ts.is_empty() {
            return Err(bad("local_ts and remote_ts must not be empty".into()));
        }
        // Bounded before the pairs are built: a body's lists could
        // otherwise multiply into millions.
        if m.local_ts.len() * m.remote_ts.len() > 256 {
            return Err(bad("at most 256 local_ts x remote_ts combinations".into()));
        }
        let mut pairs = Vec::new();
        for l in &m.local_ts {
            for r in &m.remote_ts {
                let sel = |s: &str| {
                    config::parse_cidr(s)
                        .ok()
                        .and_then(|x| prefix_of(&x))
                        .ok_or_else(|| bad(format!("{s:?} is not a CIDR prefix")))
                };
                let (lp, rp) = (sel(l)?, sel(r)?);
                // IPv4 and IPv6 selectors mix in one list, as in IKE:
                // each family pairs with its own.
                if lp.addr.is_ipv4() == rp.addr.is_ipv4() {
                    pairs.push((lp, rp));
                }
            }
        }
        if pairs.is_empty() {
            return Err(bad("no local_ts and remote_ts of the same family".into()));
        }
        if pairs.len() > 64 {
            return Err(bad("at most 64 selector pairs".into()));
        }
        if let Some((a, b)) = m.udp_encap {
            if a == 0 || b == 0 {
                return Err(bad("udp_encap ports must not be 0".into()));
            }
        }
        let now_s = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mk =
            |dir: Direction, spi: u32, src: IpAddr, dst: IpAddr, e: &[u8], i: &[u8], id: u64| {
                SaConfig {
                    sa_id: id,
                    child_id: m.spi_in,
                    direction: dir,
                    spi,
                    src,
                    dst,
                    encap: m.udp_encap.map(|(l, r)| match dir {
                        Direction::Inbound => (r, l),
                        Direction::Outbound => (l, r),
                    }),
                    encr_id,
                    key_bits,
                    integ_id,
                    encr_key: e.to_vec(),
                    integ_key: i.to_vec(),
                    esn: false,
                    replay_window: m.replay_window,
                    lifetimes: Lifetimes::default(),
                    installed_at: now_s,
                }
            };
        let (h_in, h_out) = match reuse {
            Some(h) => h,
            None => {
                let cin = mk(
                    Direction::Inbound,
                    m.spi_in,
                    m.remote_addr,
                    m.local_addr,
                    &ein,
                    &iin,
                    self.next_sa_id,
                );
                let cout = mk(
                    Direction::Outbound,
                    m.spi_out,
                    m.local_addr,
                    m.remote_addr,
                    &eout,
                    &iout,
                    self.next_sa_id + 1,
                );
                self.next_sa_id += 2;
                let h_in = self
                    .writer
                    .insert_sa(&cin)
                    .map_err(|e| bad(format!("inbound SA: {e}")))?;
                let h_out = match self.writer.insert_sa(&cout) {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = self.delete_sa(h_in);
                        return Err(bad(format!("outbound SA: {e}")));
                    }
                };
                (h_in, h_out)
            }
        };
        let mut policies = Vec::new();
        for (lp, rp) in pairs {
            match self.protect(lp, rp, h_out) {
                Ok(p) => policies.push(p),
                Err(e) => {
                    for p in policies {
                        let _ = self.writer.remove_policy(p);
                    }
                    let _ = self.delete_sa(h_in);
                    let _ = self.delete_sa(h_out);
                    let _ = self.commit();
                    return Err(ApiError::conflict(format!("policy: {e}")));
                }
            }
        }
        if let Err(e) = self.commit() {
            error!("publishing policies: {e}");
        }
        Ok(Manual {
            spec: m.clone(),
            h_in,
            h_out,
            policies,
        })
    }

    pub(super) fn remove_manual(&mut self, m: Manual) {
        for p in m.policies {
            let _ = self.writer.remove_policy(p);
        }
        let _ = self.delete_sa(m.h_out);
        let _ = self.delete_sa(m.h_in);
        if let Err(e) = self.commit() {
            error!("publishing policies: {e}");
        }
    }

    // --- statistics and metrics -----------------------------------------

    fn states(&self) -> BTreeMap<String, u64> {
        let mut m: BTreeMap<String, u64> = STATES.iter().map(|s| (s.to_string(), 0)).collect();
        for e in self.entries.values() {
            *m.entry(state_name(e.sa.state()).to_string()).or_default() += 1;
        }
        m
    }

    fn refused(&self) -> BTreeMap<String, u64> {
        let t = &self.dos_total;
        let d = &self.dos;
        [
            ("unknown_peer", t.unknown_peer + d.unknown_peer),
            ("half_open_full", t.half_open_full + d.half_open_full),
            ("per_source_full", t.per_source_full + d.per_source_full),
            ("malformed", t.malformed + d.malformed),
            ("cookie_sent", t.cookies_sent + d.cookies_sent),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Every SA in the table with its counters, summed by direction and
    /// drop reason.
    fn esp_totals(
        &self,
    ) -> (
        BTreeMap<String, u64>,
        BTreeMap<String, u64>,
        BTreeMap<String, u64>,
    ) {
        let (mut p, mut b, mut d) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (k, r) in ["in", "out"].iter().zip(&self.totals.retired) {
            p.insert(k.to_string(), r.packets);
            b.insert(k.to_string(), r.bytes);
            for reason in DropReason::ALL {
                if r.dropped(reason) > 0 {
                    *d.entry(reason.as_str().to_string()).or_default() += r.dropped(reason);
                }
            }
        }
        for (h, c) in self.writer.live_sas() {
            let k = match c.direction {
                Direction::Inbound => "in",
                Direction::Outbound => "out",
            };
            let n = self.writer.sa_counters(h).unwrap_or_default();
            *p.entry(k.to_string()).or_default() += n.packets;
            *b.entry(k.to_string()).or_default() += n.bytes;
            for r in DropReason::ALL {
                if n.dropped(r) > 0 {
                    *d.entry(r.as_str().to_string()).or_default() += n.dropped(r);
                }
            }
        }
        (p, b, d)
    }

    fn workers(&self) -> Vec<(usize, sluice_sa_table::WorkerSnapshot)> {
        (0..MAX_WORKERS)
            .filter_map(|w| self.writer.worker_counters(w).map(|s| (w, s)))
            .filter(|(_, s)| s.rx_packets + s.tx_packets + s.idle_polls + s.busy_polls > 0)
            .collect()
    }

    fn stats(&self, now: Instant) -> Stats {
        let (esp_packets, esp_bytes, esp_drops) = self.esp_totals();
        Stats {
            uptime_seconds: now.duration_since(self.started).as_secs(),
            connections: self.conn_live.iter().filter(|l| **l).count(),
            ike_sas: self.states(),
            child_sas: self.entries.values().map(|e| e.children.len()).sum(),
            manual_sas: self.manual.len(),
            rekeys: [
                ("ike".to_string(), self.totals.rekeys_ike),
                ("child".to_string(), self.totals.rekeys_child),
            ]
            .into_iter()
            .collect(),
            retransmits: self.totals.retransmits,
            init_refused: self.refused(),
            esp_packets,
            esp_bytes,
            esp_drops,
            workers: self
                .workers()
                .into_iter()
                .map(|(w, s)| WorkerStats {
                    worker: w,
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    bursts: s.bursts,
                    busy_polls: s.busy_polls,
                    idle_polls: s.idle_polls,
                    drops: DropReason::ALL
                        .iter()
                        .filter(|r| s.dropped(**r) > 0)
                        .map(|r| (r.as_str().to_string(), s.dropped(*r)))
                        .collect(),
                })
                .collect(),
        }
    }

    /// The Prometheus exposition (docs/metrics.md lists every family).
    fn metrics(&self, now: Instant) -> String {
        let mut x = Exposition::new();
        x.family("sluice_build_info", Kind::Gauge, "sluiced's version.");
        x.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        x.single(
            "sluice_connections",
            Kind::Gauge,
            "Connections loaded (file and API).",
            self.conn_live.iter().filter(|l| **l).count() as f64,
        );
        x.family("sluice_ike_sas", Kind::Gauge, "IKE SAs by state.");
        for (s, n) in self.states() {
            x.sample(&[("state", &s)], n as f64);
        }
        x.single(
            "sluice_ike_half_open_sas",
            Kind::Gauge,
            "Responder IKE SAs waiting for IKE_AUTH.",
            self.half_open.len() as f64,
        );
        let child_sas: usize = self.entries.values().map(|e| e.children.len()).sum();
        x.single(
            "sluice_child_sas",
            Kind::Gauge,
            "CHILD SAs installed (IKE).",
            child_sas as f64,
        );
        x.single(
            "sluice_manual_sas",
            Kind::Gauge,
            "Manually keyed SA pairs installed.",
            self.manual.len() as f64,
        );
        x.family(
            "sluice_ike_rekeys_total",
            Kind::Counter,
            "IKE SAs and CHILD SAs rekeyed.",
        );
        x.sample(&[("sa", "ike")], self.totals.rekeys_ike as f64);
        x.sample(&[("sa", "child")], self.totals.rekeys_child as f64);
        x.single(
            "sluice_ike_retransmits_total",
            Kind::Counter,
            "IKE requests retransmitted.",
            self.totals.retransmits as f64,
        );
        x.family(
            "sluice_ike_messages_total",
            Kind::Counter,
            "IKE messages by exchange, direction and kind.",
        );
        for ((ex, dir, kind), n) in &self.totals.messages {
            x.sample(
                &[("exchange", ex), ("direction", dir), ("kind", kind)],
                *n as f64,
            );
        }
        x.family(
            "sluice_ike_exchange_outcomes_total",
            Kind::Counter,
            "IKE exchanges completed (ok), refused or failed (failed), unanswered (timeout).",
        );
        for ((ex, out), n) in &self.totals.outcomes {
            x.sample(&[("exchange", ex), ("outcome", out)], *n as f64);
        }
        x.family(
            "sluice_ike_init_refused_total",
            Kind::Counter,
            "IKE_SA_INITs turned away, by reason.",
        );
        for (r, n) in self.refused() {
            x.sample(&[("reason", &r)], n as f64);
        }
        let (p, b, d) = self.esp_totals();
        x.family(
            "sluice_esp_packets_total",
            Kind::Counter,
            "ESP packets over every SA.",
        );
        for (k, n) in &p {
            x.sample(&[("direction", k)], *n as f64);
        }
        x.family(
            "sluice_esp_bytes_total",
            Kind::Counter,
            "Inner bytes over every SA.",
        );
        for (k, n) in &b {
            x.sample(&[("direction", k)], *n as f64);
        }
        x.family(
            "sluice_esp_drops_total",
            Kind::Counter,
            "ESP packets dropped on SAs, by reason.",
        );
        for (k, n) in &d {
            x.sample(&[("reason", k)], *n as f64);
        }
        if self.per_sa {
            self.per_sa_metrics(&mut x, now);
        }
        let workers = self.workers();
        let ws: Vec<(String, &sluice_sa_table::WorkerSnapshot)> =
            workers.iter().map(|(w, s)| (w.to_string(), s)).collect();
        x.family(
            "sluice_dp_worker_packets_total",
            Kind::Counter,
            "Packets a data-plane worker received and sent.",
        );
        for (w, s) in &ws {
            x.sample(&[("worker", w), ("direction", "rx")], s.rx_packets as f64);
            x.sample(&[("worker", w), ("direction", "tx")], s.tx_packets as f64);
        }
        x.family(
            "sluice_dp_worker_bytes_total",
            Kind::Counter,
            "Bytes a data-plane worker received and sent.",
        );
        for (w, s) in &ws {
            x.sample(&[("worker", w), ("direction", "rx")], s.rx_bytes as f64);
            x.sample(&[("worker", w), ("direction", "tx")], s.tx_bytes as f64);
        }
        x.family(
            "sluice_dp_worker_bursts_total",
            Kind::Counter,
            "Bursts processed (packets per burst = rx packets / bursts).",
        );
        for (w, s) in &ws {
            x.sample(&[("worker", w)], s.bursts as f64);
        }
        x.family(
            "sluice_dp_worker_polls_total",
            Kind::Counter,
            "Polls that found work (busy) or none (idle).",
        );
        for (w, s) in &ws {
            x.sample(&[("worker", w), ("result", "busy")], s.busy_polls as f64);
            x.sample(&[("worker", w), ("result", "idle")], s.idle_polls as f64);
        }
        x.family(
            "sluice_dp_worker_drops_total",
            Kind::Counter,
            "Packets a worker dropped, by reason.",
        );
        for (w, s) in &ws {
            for r in DropReason::ALL {
                if s.dropped(r) > 0 {
                    x.sample(
                        &[("worker", w), ("reason", r.as_str())],
                        s.dropped(r) as f64,
                    );
                }
            }
        }
        x.family(
            "sluice_dp_worker_events_total",
            Kind::Counter,
            "Data-plane events around ESP (no policy, no route, ring full...).",
        );
        for (w, s) in &ws {
            for ev in DpEvent::ALL {
                if s.event(ev) > 0 {
                    x.sample(&[("worker", w), ("event", ev.name())], s.event(ev) as f64);
                }
            }
        }
        x.finish()
    }

    fn per_sa_metrics(&self, x: &mut Exposition, now: Instant) {
        struct Series {
            conn: String,
            spi: String,
            dir: &'static str,
            c: CounterSnapshot,
            installed: Option<Instant>,
        }
        let mut sas = Vec::new();
        let mut add = |conn: &str, spi: u32, dir, h, installed| {
            sas.push(Series {
                conn: conn.to_string(),
                spi: format!("{spi:08x}"),
                dir,
                c: self.writer.sa_counters(h).unwrap_or_default(),
                installed,
            });
        };
        for e in self.entries.values() {
            let conn = self.conns.get(e.conn).map_or("?", |c| c.name.as_str());
            for c in &e.children {
                add(conn, c.spi_in, "in", c.h_in, Some(c.installed));
                add(conn, c.spi_out, "out", c.h_out, Some(c.installed));
            }
        }
        for m in self.manual.values() {
            add(&m.spec.name, m.spec.spi_in, "in", m.h_in, None);
            add(&m.spec.name, m.spec.spi_out, "out", m.h_out, None);
        }
        fn labels(s: &Series) -> [(&'static str, &str); 3] {
            [
                ("conn", s.conn.as_str()),
                ("spi", s.spi.as_str()),
                ("direction", s.dir),
            ]
        }
        x.family(
            "sluice_sa_packets_total",
            Kind::Counter,
            "Packets on an SA (encrypted, or decrypted and accepted).",
        );
        for s in &sas {
            x.sample(&labels(s), s.c.packets as f64);
        }
        x.family(
            "sluice_sa_bytes_total",
            Kind::Counter,
            "Inner bytes on an SA.",
        );
        for s in &sas {
            x.sample(&labels(s), s.c.bytes as f64);
        }
        x.family(
            "sluice_sa_drops_total",
            Kind::Counter,
            "Packets dropped on an SA, by reason (reasons seen only).",
        );
        for s in &sas {
            for r in DropReason::ALL {
                if s.c.dropped(r) > 0 {
                    let [a, b, c] = labels(s);
                    x.sample(&[a, b, c, ("reason", r.as_str())], s.c.dropped(r) as f64);
                }
            }
        }
        x.family(
            "sluice_sa_age_seconds",
            Kind::Gauge,
            "Seconds since the SA was installed (CHILD SAs of IKE SAs).",
        );
        for s in &sas {
            if let Some(at) = s.installed {
                x.sample(&labels(s), now.duration_since(at).as_secs() as f64);
            }
        }
    }
}

/// A UDP socket bound to `a` whether or not the address exists (IP_FREEBIND).
fn bind_free(a: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(a), Type::DGRAM, Some(Protocol::UDP))?;
    if a.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_only_v6(true)?;
        s.set_freebind_v6(true)?;
    }
    s.bind(&a.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn sockets_bind_to_addresses_not_configured_yet() {
        for a in ["198.18.255.254:0", "[2001:db8:ffff::fe]:0"] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            // A plain bind refuses an address no interface has...
            assert!(
                std::net::UdpSocket::bind(a).is_err(),
                "{a} is configured here"
            );
            // ...a free bind takes it.
            let s = super::bind_free(a).unwrap();
            assert_eq!(s.local_addr().unwrap().ip(), a.ip());
        }
    }
}
