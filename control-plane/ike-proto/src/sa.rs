//! One IKE SA: IKE_SA_INIT and IKE_AUTH (shared key) with the first
//! CHILD_SA, as initiator or responder; retransmission and response
//! caching (RFC 7296 §1.2, §2.1-§2.2, §2.9, §2.14-§2.17, §2.23).

use crate::config::{Config, EspProposal, Identity, LocalAuth, RemoteAuth, Selector, SendCert};
use crate::{ChildSa, Error, Event, Random, Transmit};
use ike_crypto::ke::{DhGroup, KeyExchange};
use ike_crypto::keys::{
    auth_matches, child_keys, ike_keys, psk_auth, signed_octets, skeyseed, skeyseed_rekey,
    IkeKeyLengths, IkeKeys,
};
use ike_crypto::sk::{Integ, SkKeys, Suite};
use ike_wire::message::{FLAG_INITIATOR, FLAG_RESPONSE, HEADER_LEN};
use ike_wire::*;
use sha1::{Digest, Sha1};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Which end of the IKE SA we are (RFC 7296 §2.2: the original initiator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the first IKE_SA_INIT.
    Initiator,
    /// We answered it.
    Responder,
}

/// Where the SA is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Initiator: IKE_SA_INIT request sent.
    InitSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    InitAnswered,
    /// Initiator: IKE_AUTH request sent.
    AuthSent,
    /// Authenticated, first CHILD SA installed.
    Established,
    /// Rekeyed (RFC 7296 §2.18): its CHILD SAs moved to the new IKE SA;
    /// only the Delete of this one remains to be exchanged.
    Rekeyed,
    /// Failed or dead: the owner removes it.
    Closed,
}

/// A request of ours in the INFORMATIONAL exchange (RFC 7296 §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Delete the IKE SA (and with it every CHILD SA).
    DeleteIke,
    /// Delete the CHILD SA with this inbound SPI.
    DeleteChild(u32),
    /// Empty INFORMATIONAL: a liveness check (dead peer detection).
    Liveness,
    /// CREATE_CHILD_SA for an additional CHILD SA (index into `child_reqs`).
    CreateChild(usize),
    /// CREATE_CHILD_SA rekeying this IKE SA (RFC 7296 §2.18).
    RekeyIke,
}

/// Our half of an IKE SA rekey we started.
struct IkeRekey {
    spi: u64,
    nonce: Vec<u8>,
    ke: KeyExchange,
}

/// An additional CHILD SA we asked for.
struct ChildRequest {
    spi_in: u32,
    nonce: Vec<u8>,
    local_ts: Vec<Selector>,
    remote_ts: Vec<Selector>,
    /// Rekeying (RFC 7296 §2.8): the inbound SPI of the CHILD SA replaced.
    rekey: Option<u32>,
    /// Our key exchange when PFS is configured.
    ke: Option<KeyExchange>,
    /// The peer rekeyed the same CHILD SA while this request was out
    /// (RFC 7296 §2.8.1): the lower of that exchange's two nonces, to be
    /// compared with ours when our response arrives.
    collided: Option<Vec<u8>>,
    /// The peer deleted the CHILD SA this request rekeys while it was out
    /// (§2.25.1): a new SA it brings is deleted, not installed.
    orphaned: bool,
}

/// Most fragments one message may arrive in or be sent as (RFC 7383
/// leaves the bound to implementations).
const MAX_FRAGMENTS: u16 = 64;
/// Most plaintext bytes a reassembled message may have.
const MAX_REASSEMBLED: usize = 64 * 1024;
/// How long the fragments of one message may take to arrive.
const REASSEMBLY_TIME: Duration = Duration::from_secs(30);

/// A message arriving in fragments (RFC 7383 §2.6.2): each fragment is
/// authenticated and decrypted before it is kept.
struct Reassembly {
    msg_id: u32,
    total: u16,
    first_inner: PayloadType,
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
    started: Instant,
    /// SHA-256 of fragment 1: a retransmitted request is recognised by it
    /// (RFC 7383 §2.6.1: the response is resent on fragment 1 only).
    first_digest: Option<[u8; 32]>,
}

struct Pending {
    op: Option<Op>,
    msg_id: u32,
    /// The request's datagrams (several when fragmented).
    bytes: Vec<Vec<u8>>,
    dst: SocketAddr,
    tries: u32,
    deadline: Instant,
    timeout: Duration,
}

/// An IKE SA and its exchanges.
pub struct IkeSa {
    cfg: Config,
    role: Role,
    state: State,
    /// The key exchange group in use.
    dh: DhGroup,
    spi_i: u64,
    spi_r: u64,
    ni: Vec<u8>,
    nr: Vec<u8>,
    ke: Option<KeyExchange>,
    cookie: Option<Vec<u8>>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    keys: Option<IkeKeys>,
    sk_in: Option<SkKeys>,
    sk_out: Option<SkKeys>,
    child_spi_in: u32,
    /// Message ID the peer's next request must carry.
    next_msg_id: u32,
    /// Message ID of our next request.
    my_msg_id: u32,
    /// INFORMATIONAL requests waiting for the window (one outstanding).
    ops: VecDeque<Op>,
    /// Installed CHILD SAs: (our inbound SPI, our outbound SPI).
    children: Vec<(u32, u32)>,
    /// Selectors of each CHILD SA by inbound SPI (what a rekey asks for).
    child_ts: Vec<(u32, Vec<Selector>, Vec<Selector>)>,
    /// CREATE_CHILD_SA requests of ours (queued or outstanding).
    child_reqs: Vec<Option<ChildRequest>>,
    /// Inbound SPIs of CHILD SAs that a rekey (by either side) replaced:
    /// they only wait for their Delete.
    replaced: Vec<u32>,
    /// The peer's IKE SA rekey that collided with ours (§2.18): its new IKE
    /// SA, held until our own response decides which survives, and the
    /// lower of its exchange's nonces.
    ike_collision: Option<(Box<IkeSa>, Vec<u8>)>,
    pending: Option<Pending>,
    ike_rekey: Option<IkeRekey>,
    last_response: Option<(u32, Vec<Vec<u8>>)>,
    /// SHA-256 of the request `last_response` answered: only that exact
    /// datagram is a retransmission (a forged one with the same message ID
    /// gets nothing).
    last_request: Option<[u8; 32]>,
    local: SocketAddr,
    remote: SocketAddr,
    nat_detected: bool,
    /// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4); empty when it
    /// sent none.
    peer_hashes: Vec<u16>,
    /// The CA key hashes of the peer's CERTREQ payloads (RFC 7296 §3.7),
    /// `Some` once it sent any.
    peer_certreq: Option<Vec<u8>>,
    /// Both ends announced IKEV2_FRAGMENTATION_SUPPORTED.
    frag_ok: bool,
    /// Fragmented messages being reassembled: requests, responses.
    reasm: [Option<Reassembly>; 2],
    /// A reassembled request's fragment-1 digest, for the cache.
    reasm_digest: Option<[u8; 32]>,
    /// The time of the datagram being handled.
    clock: Instant,
    transmit: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSa")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .finish_non_exhaustive()
    }
}

fn random_vec(rng: &mut dyn Random, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

fn random_u64(rng: &mut dyn Random) -> u64 {
    let mut b = [0u8; 8];
    loop {
        rng.fill(&mut b);
        let v = u64::from_be_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

fn random_u32(rng: &mut dyn Random) -> u32 {
    let mut b = [0u8; 4];
    loop {
        rng.fill(&mut b);
        let v = u32::from_be_bytes(b);
        // SPIs 1-255 are reserved (RFC 4303 §2.1).
        if v > 255 {
            return v;
        }
    }
}

/// NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | port) (RFC 7296 §2.23).
pub fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().to_vec()
}

/// The message's own length from its header (parse checked it fits).
fn msg_len(datagram: &[u8]) -> usize {
    datagram
        .get(24..28)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .min(datagram.len())
}

fn notify(ntype: NotifyType, data: Vec<u8>) -> Payload {
    Payload::new(
        PayloadType::NOTIFY,
        Body::Notify {
            protocol: ProtocolId::NONE,
            spi: vec![],
            ntype,
            data,
        },
    )
}

/// An IKE_SA_INIT response holding one notify and no state: errors
/// (§1.2, §2.5) and COOKIE challenges (§2.6).
pub(crate) fn init_notify_response(spi_i: u64, t: NotifyType, data: Vec<u8>) -> Vec<u8> {
    Message {
        header: Header {
            spi_i,
            spi_r: 0,
            version: 0x20,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: FLAG_RESPONSE,
            message_id: 0,
        },
        payloads: vec![notify(t, data)],
    }
    .emit()
}

fn find_notify(payloads: &[Payload], t: NotifyType) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match &p.body {
        Body::Notify { ntype, data, .. } if *ntype == t => Some(data.as_slice()),
        _ => None,
    })
}

fn first_error_notify(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match &p.body {
        Body::Notify { ntype, .. } if ntype.is_error() => Some(*ntype),
        _ => None,
    })
}

/// Most CERTREQ bytes kept from a peer (64 CA key hashes).
const MAX_CERTREQ: usize = 20 * 64;

/// Our SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4): SHA2-256/384/512.
fn sig_hash_notify() -> Payload {
    let data = ike_pki::Hash::ALL
        .iter()
        .flat_map(|h| h.id().to_be_bytes())
        .collect();
    notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, data)
}

/// The hash IDs of a peer's SIGNATURE_HASH_ALGORITHMS notify.
fn peer_hashes(payloads: &[Payload]) -> Vec<u16> {
    find_notify(payloads, NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .map(|d| {
            d.chunks_exact(2)
                .take(32)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect()
        })
        .unwrap_or_default()
}

fn integ_id(i: Integ) -> u16 {
    match i {
        Integ::HmacSha256_128 => IntegId::HMAC_SHA2_256_128.0,
        Integ::HmacSha384_192 => IntegId::HMAC_SHA2_384_192.0,
        Integ::HmacSha512_256 => IntegId::HMAC_SHA2_512_256.0,
    }
}

impl IkeSa {
    fn new(
        cfg: Config,
        role: Role,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: &mut dyn Random,
    ) -> IkeSa {
        IkeSa {
            dh: cfg
                .ike
                .groups
                .first()
                .copied()
                .unwrap_or(DhGroup::Curve25519),
            role,
            state: if role == Role::Initiator {
                State::InitSent
            } else {
                State::InitAnswered
            },
            spi_i: 0,
            spi_r: 0,
            ni: Vec::new(),
            nr: Vec::new(),
            ke: None,
            cookie: None,
            init_req: Vec::new(),
            init_resp: Vec::new(),
            keys: None,
            sk_in: None,
            sk_out: None,
            child_spi_in: random_u32(rng),
            next_msg_id: 0,
            my_msg_id: 0,
            ops: VecDeque::new(),
            children: Vec::new(),
            child_ts: Vec::new(),
            child_reqs: Vec::new(),
            replaced: Vec::new(),
            ike_collision: None,
            pending: None,
            ike_rekey: None,
            last_response: None,
            last_request: None,
            local,
            remote,
            nat_detected: false,
            peer_hashes: Vec::new(),
            peer_certreq: None,
            frag_ok: false,
            reasm: [None, None],
            reasm_digest: None,
            clock: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            cfg,
        }
    }

    /// Starts an IKE SA as initiator: queues the IKE_SA_INIT request.
    pub fn initiate(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: &mut dyn Random,
    ) -> Result<IkeSa, Error> {
        let mut sa = IkeSa::new(cfg, Role::Initiator, local, remote, now, rng);
        sa.spi_i = random_u64(rng);
        sa.ni = random_vec(rng, 32);
        sa.ke = Some(KeyExchange::new(sa.dh).map_err(Error::Crypto)?);
        sa.send_init(now)?;
        Ok(sa)
    }

    fn ike_sa_payload(&self, groups: &[DhGroup]) -> Payload {
        let p = &self.cfg.ike;
        let mut t = Vec::new();
        match p.suite {
            Suite::AesCbc { key_len, integ } => {
                t.push(Transform::with_key_len(
                    TransformType::ENCR,
                    EncrId::AES_CBC.0,
                    (key_len * 8) as u16,
                ));
                t.push(Transform::new(TransformType::PRF, p.prf.id()));
                t.push(Transform::new(TransformType::INTEG, integ_id(integ)));
            }
            Suite::AesGcm16 { key_len } => {
                t.push(Transform::with_key_len(
                    TransformType::ENCR,
                    EncrId::AES_GCM_16.0,
                    (key_len * 8) as u16,
                ));
                t.push(Transform::new(TransformType::PRF, p.prf.id()));
            }
        }
        for g in groups {
            t.push(Transform::new(TransformType::DH, g.id()));
        }
        Payload::new(
            PayloadType::SA,
            Body::Sa(vec![Proposal {
                num: 1,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: t,
            }]),
        )
    }

    /// An ESP SA payload offering `props` (one proposal each) with `spi`,
    /// each with the PFS group `dh` if there is one.
    fn esp_sa_payload_dh(spi: u32, props: &[EspProposal], dh: Option<DhGroup>) -> Payload {
        let mut p = Self::esp_sa_payload(spi, props);
        if let (Body::Sa(v), Some(g)) = (&mut p.body, dh) {
            for prop in v.iter_mut() {
                prop.transforms
                    .push(Transform::new(TransformType::DH, g.id()));
            }
        }
        p
    }

    /// The key exchange of a CREATE_CHILD_SA (PFS), if it carries one.
    fn ke_of(inner: &[Payload]) -> Option<(u16, Vec<u8>)> {
        inner.iter().find_map(|p| match &p.body {
            Body::Ke { group, data } => Some((group.0, data.clone())),
            _ => None,
        })
    }

    fn ke_payload(ke: &KeyExchange) -> Payload {
        Payload::new(
            PayloadType::KE,
            Body::Ke {
                group: ike_wire::DhGroup(ke.group().id()),
                data: ke.public().to_vec(),
            },
        )
    }

    /// An ESP SA payload offering `props` (one proposal each) with `spi`.
    fn esp_sa_payload(spi: u32, props: &[EspProposal]) -> Payload {
        Payload::new(
            PayloadType::SA,
            Body::Sa(
                props
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Proposal {
                        num: (i + 1) as u8,
                        protocol: ProtocolId::ESP,
                        spi: spi.to_be_bytes().to_vec(),
                        transforms: p.transforms(),
                    })
                    .collect(),
            ),
        )
    }

    /// If `proposal` offers our encryption, PRF and integrity and one of
    /// our DH groups: the first of ours it offers.
    fn ike_proposal_group(&self, proposal: &Proposal) -> Option<DhGroup> {
        let ours = match &self.ike_sa_payload(&[]).body {
            Body::Sa(v) => v.first().map(|p| p.transforms.clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        let base = proposal.protocol == ProtocolId::IKE
            && ours.iter().all(|t| {
                proposal
                    .transforms
                    .iter()
                    .any(|u| u.ttype == t.ttype && u.id == t.id && u.key_len() == t.key_len())
            });
        let offered = |g: &DhGroup| {
            proposal
                .transforms
                .iter()
                .any(|u| u.ttype == TransformType::DH && u.id == g.id())
        };
        if base {
            self.cfg.ike.groups.iter().copied().find(offered)
        } else {
            None
        }
    }

    fn send_init(&mut self, now: Instant) -> Result<(), Error> {
        let ke = self.ke.as_ref().ok_or(Error::State("no key exchange"))?;
        let mut payloads = Vec::new();
        if let Some(c) = &self.cookie {
            payloads.push(notify(NotifyType::COOKIE, c.clone()));
        }
        payloads.push(self.ike_sa_payload(&self.cfg.ike.groups));
        payloads.push(Payload::new(
            PayloadType::KE,
            Body::Ke {
                group: ike_wire::DhGroup(ke.group().id()),
                data: ke.public().to_vec(),
            },
        ));
        payloads.push(Payload::new(
            PayloadType::NONCE,
            Body::Nonce(self.ni.clone()),
        ));
        payloads.push(notify(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            nat_hash(self.spi_i, 0, self.local),
        ));
        payloads.push(notify(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_hash(self.spi_i, 0, self.remote),
        ));
        payloads.push(sig_hash_notify());
        if self.cfg.fragment_size.is_some() {
            payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        }
        let m = Message {
            header: Header {
                spi_i: self.spi_i,
                spi_r: 0,
                version: 0x20,
                exchange: ExchangeType::IKE_SA_INIT,
                flags: FLAG_INITIATOR,
                message_id: 0,
            },
            payloads,
        };
        let bytes = m.emit();
        self.init_req = bytes.clone();
        self.send_request(now, 0, vec![bytes]);
        Ok(())
    }

    fn send_request(&mut self, now: Instant, msg_id: u32, bytes: Vec<Vec<u8>>) {
        let dst = self.remote;
        let timeout = self.cfg.retransmit.initial;
        for b in &bytes {
            self.transmit.push_back(Transmit {
                dst,
                data: b.clone(),
            });
        }
        self.my_msg_id = msg_id.wrapping_add(1);
        self.pending = Some(Pending {
            op: None,
            msg_id,
            bytes,
            dst,
            tries: 1,
            deadline: now + timeout,
            timeout,
        });
    }

    fn send_response(&mut self, msg_id: u32, bytes: Vec<Vec<u8>>) {
        for b in &bytes {
            self.transmit.push_back(Transmit {
                dst: self.remote,
                data: b.clone(),
            });
        }
        self.last_response = Some((msg_id, bytes));
    }

    /// Creates a responder IKE SA from an IKE_SA_INIT request and queues the
    /// response (or an error notify, in which case the SA is closed).
    pub fn accept(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) -> Result<IkeSa, Error> {
        let m = Message::parse(datagram).map_err(Error::Wire)?;
        let h = m.header;
        if h.exchange != ExchangeType::IKE_SA_INIT
            || h.is_response()
            || h.message_id != 0
            || h.spi_r != 0
        {
            return Err(Error::Unexpected("not an IKE_SA_INIT request"));
        }
        let mut sa = IkeSa::new(cfg, Role::Responder, local, remote, now, rng);
        if let Some(t) = Message::first_unsupported_critical(&m.payloads) {
            // RFC 7296 §2.5: refuse the request, naming the payload type.
            sa.spi_i = h.spi_i;
            sa.transmit.push_back(Transmit {
                dst: remote,
                data: init_notify_response(
                    h.spi_i,
                    NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                    vec![t.0],
                ),
            });
            sa.state = State::Closed;
            sa.events.push_back(Event::Failed {
                reason: format!("unsupported critical payload {t} in IKE_SA_INIT"),
                notify: Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD),
            });
            return Ok(sa);
        }
        ike_wire::rules::check(ExchangeType::IKE_SA_INIT, true, &m.payloads)
            .map_err(Error::Rules)?;
        sa.spi_i = h.spi_i;
        sa.spi_r = random_u64(rng);
        sa.init_req = datagram[..msg_len(datagram)].to_vec();
        let _ = now;
        let mut chosen = None;
        let mut ke_data = None;
        for p in &m.payloads {
            match &p.body {
                Body::Sa(props) => chosen = props.iter().find_map(|pr| sa.ike_proposal_group(pr)),
                Body::Ke { group, data } => ke_data = Some((*group, data.clone())),
                Body::Nonce(n) => sa.ni = n.clone(),
                _ => {}
            }
        }
        let reply_error = |sa: &mut IkeSa, t: NotifyType, data: Vec<u8>| {
            sa.transmit.push_back(Transmit {
                dst: sa.remote,
                data: init_notify_response(sa.spi_i, t, data),
            });
            sa.state = State::Closed;
            sa.events.push_back(Event::Failed {
                reason: format!("answered IKE_SA_INIT with {t}"),
                notify: Some(t),
            });
        };
        let Some(want) = chosen else {
            reply_error(&mut sa, NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
            return Ok(sa);
        };
        sa.dh = want;
        sa.events.push_back(Event::Log(format!(
            "selected proposal: {}",
            sa.proposal_name()
        )));
        let (group, peer_pub) = ke_data.ok_or(Error::Unexpected("no KE"))?;
        if group.0 != want.id() {
            // RFC 7296 §1.2: tell the initiator which group we want.
            reply_error(
                &mut sa,
                NotifyType::INVALID_KE_PAYLOAD,
                want.id().to_be_bytes().to_vec(),
            );
            return Ok(sa);
        }
        sa.detect_nat(&m.payloads);
        sa.peer_hashes = peer_hashes(&m.payloads);
        sa.frag_ok = sa.cfg.fragment_size.is_some()
            && find_notify(&m.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        let ke = KeyExchange::new(want).map_err(Error::Crypto)?;
        let our_pub = ke.public().to_vec();
        let g_ir = ke.agree(&peer_pub).map_err(Error::Crypto)?;
        sa.nr = random_vec(rng, 32);
        sa.derive(&g_ir)?;
        let mut payloads = vec![
            sa.ike_sa_payload(&[want]),
            Payload::new(
                PayloadType::KE,
                Body::Ke {
                    group: ike_wire::DhGroup(want.id()),
                    data: our_pub,
                },
            ),
            Payload::new(PayloadType::NONCE, Body::Nonce(sa.nr.clone())),
            notify(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                nat_hash(sa.spi_i, sa.spi_r, sa.local),
            ),
            notify(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                nat_hash(sa.spi_i, sa.spi_r, sa.remote),
            ),
        ];
        payloads.extend(sa.certreq_payload());
        payloads.push(sig_hash_notify());
        if sa.frag_ok {
            payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        }
        let m = Message {
            header: Header {
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                version: 0x20,
                exchange: ExchangeType::IKE_SA_INIT,
                flags: FLAG_RESPONSE,
                message_id: 0,
            },
            payloads,
        };
        let bytes = m.emit();
        sa.init_resp = bytes.clone();
        sa.send_response(0, vec![bytes]);
        sa.next_msg_id = 1; // the next request we expect
        Ok(sa)
    }

    fn detect_nat(&mut self, payloads: &[Payload]) {
        let spi_r = if self.role == Role::Responder {
            0
        } else {
            self.spi_r
        };
        let src = find_notify(payloads, NotifyType::NAT_DETECTION_SOURCE_IP);
        let dst = find_notify(payloads, NotifyType::NAT_DETECTION_DESTINATION_IP);
        if let (Some(s), Some(d)) = (src, dst) {
            let peer_ok = s == nat_hash(self.spi_i, spi_r, self.remote).as_slice();
            let us_ok = d == nat_hash(self.spi_i, spi_r, self.local).as_slice();
            self.nat_detected = !(peer_ok && us_ok);
        }
    }

    fn derive(&mut self, g_ir: &[u8]) -> Result<(), Error> {
        let seed = skeyseed(self.cfg.ike.prf, &self.ni, &self.nr, g_ir);
        self.derive_from(&seed)
    }

    fn derive_from(&mut self, seed: &[u8]) -> Result<(), Error> {
        let p = &self.cfg.ike;
        let lens = IkeKeyLengths {
            integ: p.suite.integ_key_len(),
            encr: p.suite.encr_key_len(),
        };
        let k = ike_keys(
            p.prf, seed, &self.ni, &self.nr, self.spi_i, self.spi_r, lens,
        )
        .ok_or(Error::State("prf+ too long"))?;
        let (ine, ina, oute, outa) = match self.role {
            Role::Initiator => (&k.sk_er, &k.sk_ar, &k.sk_ei, &k.sk_ai),
            Role::Responder => (&k.sk_ei, &k.sk_ai, &k.sk_er, &k.sk_ar),
        };
        self.sk_in = Some(SkKeys::new(p.suite, ine, ina).map_err(Error::Crypto)?);
        self.sk_out = Some(SkKeys::new(p.suite, oute, outa).map_err(Error::Crypto)?);
        self.keys = Some(k);
        Ok(())
    }

    /// The negotiated IKE proposal in strongSwan's notation
    /// (`IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519`), for logs and
    /// status.
    pub fn proposal_name(&self) -> String {
        let p = &self.cfg.ike;
        let prf = match p.prf.id() {
            5 => "PRF_HMAC_SHA2_256",
            6 => "PRF_HMAC_SHA2_384",
            _ => "PRF_HMAC_SHA2_512",
        };
        let dh = ike_wire::DhGroup(self.dh.id());
        match p.suite {
            Suite::AesCbc { key_len, integ } => {
                format!(
                    "IKE:AES_CBC_{}/{}/{prf}/{dh}",
                    key_len * 8,
                    ike_wire::IntegId(integ_id(integ))
                )
            }
            Suite::AesGcm16 { key_len } => format!("IKE:AES_GCM_16_{}/{prf}/{dh}", key_len * 8),
        }
    }

    fn flags(&self, response: bool) -> u8 {
        (if self.role == Role::Initiator {
            FLAG_INITIATOR
        } else {
            0
        }) | if response { FLAG_RESPONSE } else { 0 }
    }

    /// Builds a protected message (RFC 7296 §3.14): one datagram, or its
    /// fragments (RFC 7383 §2.5) when fragmentation was negotiated and the
    /// message would not fit `fragment_size`.
    fn protect(
        &mut self,
        exchange: ExchangeType,
        response: bool,
        msg_id: u32,
        inner: &[Payload],
        rng: &mut dyn Random,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let mut plain = Vec::new();
        Message::emit_payloads(inner, &mut plain);
        let suite = self.sk_out.as_ref().ok_or(Error::State("no keys"))?.suite();
        let first = inner.first().map_or(PayloadType(0), |p| p.ptype);
        let limit = self.max_datagram();
        let whole = HEADER_LEN + 4 + suite.body_len(plain.len());
        let what = format!(
            "{exchange} {} {msg_id} {}",
            if response { "response" } else { "request" },
            Message::summary(inner)
        );
        let Some(limit) = limit.filter(|l| whole > *l) else {
            self.events
                .push_back(Event::Log(format!("generating {what}")));
            return Ok(vec![
                self.seal(exchange, response, msg_id, first, None, &plain, rng)?
            ]);
        };
        // The most plaintext one fragment carries (§2.5.1).
        let overhead = HEADER_LEN + 8;
        let mut chunk = limit.saturating_sub(overhead);
        while chunk > 0 && overhead + suite.body_len(chunk) > limit {
            chunk -= 1;
        }
        let total = plain.len().div_ceil(chunk.max(1));
        let total = u16::try_from(total)
            .ok()
            .filter(|t| *t <= MAX_FRAGMENTS && chunk > 0)
            .ok_or(Error::State("message too large to fragment"))?;
        self.events.push_back(Event::Log(format!(
            "generating {what}, split into {total} fragments of at most {limit} bytes"
        )));
        let mut out = Vec::with_capacity(usize::from(total));
        for (i, part) in plain.chunks(chunk).enumerate() {
            let number = i as u16 + 1;
            let next = if number == 1 { first } else { PayloadType(0) };
            out.push(self.seal(
                exchange,
                response,
                msg_id,
                next,
                Some((number, total)),
                part,
                rng,
            )?);
        }
        Ok(out)
    }

    /// The largest IKE datagram we send once fragmentation is on: the
    /// configured IP datagram size less the IP and UDP headers and the
    /// non-ESP marker on port 4500.
    fn max_datagram(&self) -> Option<usize> {
        let size = self.cfg.fragment_size.filter(|_| self.frag_ok)?;
        let ip = if self.remote.is_ipv4() { 20 } else { 40 };
        let marker = if self.local.port() == 4500 { 4 } else { 0 };
        Some(size.saturating_sub(ip + 8 + marker))
    }

    /// One SK message, or one SKF fragment `(number, total)`: the header
    /// and payload header (with the fragment fields) are the associated
    /// data.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        exchange: ExchangeType,
        response: bool,
        msg_id: u32,
        first: PayloadType,
        fragment: Option<(u16, u16)>,
        plain: &[u8],
        rng: &mut dyn Random,
    ) -> Result<Vec<u8>, Error> {
        let sk = self.sk_out.as_ref().ok_or(Error::State("no keys"))?;
        let body_len = sk.suite().body_len(plain.len());
        let (ptype, head) = match fragment {
            None => (PayloadType::SK, 4),
            Some(_) => (PayloadType::SKF, 8),
        };
        let total = HEADER_LEN + head + body_len;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.extend_from_slice(&[ptype.0, 0x20, exchange.0, self.flags(response)]);
        out.extend_from_slice(&msg_id.to_be_bytes());
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&[first.0, 0]);
        out.extend_from_slice(&((head + body_len) as u16).to_be_bytes());
        if let Some((number, of)) = fragment {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&of.to_be_bytes());
        }
        let iv = random_vec(rng, sk.suite().iv_len());
        let body = sk.seal(&out, plain, &iv).map_err(Error::Crypto)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Verifies and decrypts a protected message's inner payloads.
    fn unprotect(&mut self, datagram: &[u8], m: &Message) -> Result<Vec<Payload>, Error> {
        let inner = self.decrypt(datagram, m)?;
        let h = m.header;
        self.events.push_back(Event::Log(format!(
            "parsed {} {} {} {}",
            h.exchange,
            h.kind(),
            h.message_id,
            Message::summary(&inner)
        )));
        if !h.is_response() {
            // Authenticated requests we cannot process get an answer
            // (RFC 7296 §2.5, §2.21.2); unauthenticated ones never do.
            let reject = if let Some(t) = Message::first_unsupported_critical(&inner) {
                Some((NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0]))
            } else if ike_wire::rules::check(h.exchange, true, &inner).is_err() {
                Some((NotifyType::INVALID_SYNTAX, vec![]))
            } else {
                None
            };
            if let Some((n, data)) = reject {
                return Err(Error::Rejected(n, data));
            }
        }
        Ok(inner)
    }

    /// Verifies and decrypts a protected message's inner payloads; a
    /// fragment (RFC 7383 §2.6) is verified, decrypted and kept until its
    /// message is complete ([`Error::Fragment`] until then).
    fn decrypt(&mut self, datagram: &[u8], m: &Message) -> Result<Vec<Payload>, Error> {
        ike_wire::rules::check_outer(m.header.exchange, &m.payloads).map_err(Error::Rules)?;
        let (first_inner, data, fragment) = match m.payloads.last().map(|p| &p.body) {
            Some(Body::Sk { first_inner, data }) => (*first_inner, data, None),
            Some(Body::Skf {
                first_inner,
                number,
                total,
                data,
            }) => (*first_inner, data, Some((*number, *total))),
            _ => return Err(Error::Unexpected("no SK payload")),
        };
        let sk = self.sk_in.as_ref().ok_or(Error::State("no keys"))?;
        let start = msg_len(datagram)
            .checked_sub(data.len())
            .ok_or(Error::Unexpected("length"))?;
        let header = datagram.get(..start).ok_or(Error::Unexpected("length"))?;
        let Some((number, total)) = fragment else {
            let plain = sk.open(header, data).map_err(Error::Crypto)?;
            return Message::parse_inner(first_inner, &plain).map_err(Error::Wire);
        };
        if !self.frag_ok {
            return Err(Error::Unexpected(
                "fragment, but fragmentation was not negotiated",
            ));
        }
        if total > MAX_FRAGMENTS {
            return Err(Error::Unexpected("more fragments than we reassemble"));
        }
        let plain = sk.open(header, data).map_err(Error::Crypto)?;
        let h = m.header;
        let slot = &mut self.reasm[usize::from(h.is_response())];
        // A fragment of another message, or a retransmission fragmented
        // anew for a smaller MTU (§2.6.2: more fragments win), or an
        // expired attempt, starts over.
        let stale = match slot {
            Some(r) => {
                r.msg_id != h.message_id
                    || total > r.total
                    || self.clock.saturating_duration_since(r.started) > REASSEMBLY_TIME
            }
            None => true,
        };
        if stale {
            *slot = Some(Reassembly {
                msg_id: h.message_id,
                total,
                first_inner: PayloadType(0),
                parts: vec![None; usize::from(total)],
                bytes: 0,
                started: self.clock,
                first_digest: None,
            });
        }
        let r = slot.as_mut().ok_or(Error::State("reassembly"))?;
        if total < r.total {
            return Err(Error::Unexpected(
                "fragment of an older, larger fragmentation",
            ));
        }
        let i = usize::from(number - 1);
        if r.parts[i].is_none() {
            if r.bytes + plain.len() > MAX_REASSEMBLED {
                *slot = None;
                return Err(Error::Unexpected("reassembled message too large"));
            }
            r.bytes += plain.len();
            if number == 1 {
                r.first_inner = first_inner;
                r.first_digest = Some(sha2::Sha256::digest(datagram).into());
            }
            r.parts[i] = Some(plain);
        }
        if r.parts.iter().any(Option::is_none) {
            return Err(Error::Fragment(number, total));
        }
        let r = slot.take().ok_or(Error::State("reassembly"))?;
        let mut whole = Vec::with_capacity(r.bytes);
        for p in r.parts.into_iter().flatten() {
            whole.extend_from_slice(&p);
        }
        if !h.is_response() {
            self.reasm_digest = r.first_digest;
        }
        self.events.push_back(Event::Log(format!(
            "reassembled {} {} {} from {} fragments ({} bytes)",
            h.exchange,
            h.kind(),
            h.message_id,
            r.total,
            r.bytes
        )));
        Message::parse_inner(r.first_inner, &whole).map_err(Error::Wire)
    }

    fn id_payload(&self, ptype: PayloadType) -> (Payload, Vec<u8>) {
        let (t, data) = self.cfg.local_id.encode();
        let body = Body::Id {
            id_type: t,
            reserved: [0; 3],
            data,
        };
        let mut id_body = Vec::new();
        body.emit(&mut id_body);
        (Payload::new(ptype, body), id_body)
    }

    /// The octets an AUTH payload signs or MACs (RFC 7296 §2.15): ours
    /// when `ours`, else the peer's.
    fn signed_octets(&self, ours: bool, id_body: &[u8]) -> Result<Vec<u8>, Error> {
        let k = self.keys.as_ref().ok_or(Error::State("no keys"))?;
        let prf = self.cfg.ike.prf;
        let initiator_signs = ours == (self.role == Role::Initiator);
        Ok(if initiator_signs {
            signed_octets(prf, &self.init_req, &self.nr, &k.sk_pi, id_body)
        } else {
            signed_octets(prf, &self.init_resp, &self.ni, &k.sk_pr, id_body)
        })
    }

    fn our_auth(&mut self, id_body: &[u8]) -> Result<Payload, Error> {
        let octets = self.signed_octets(true, id_body)?;
        let (method, data) = match &self.cfg.local_auth {
            LocalAuth::Psk(psk) => (
                AuthMethod::PSK,
                psk_auth(self.cfg.ike.prf, psk, &octets).to_vec(),
            ),
            LocalAuth::PubKey(cred) => {
                let (method, data, scheme) = cred
                    .sign_auth(&octets, &self.peer_hashes)
                    .map_err(|e| Error::Auth(e.to_string()))?;
                self.events.push_back(Event::Log(format!(
                    "authentication of '{}' (myself) with {scheme}, certificate \"{}\"",
                    self.cfg.local_id,
                    cred.leaf().subject
                )));
                (AuthMethod(method), data)
            }
        };
        Ok(Payload::new(PayloadType::AUTH, Body::Auth { method, data }))
    }

    /// Our certificate chain, when we authenticate with one and
    /// `send_cert` says so.
    fn cert_payloads(&self) -> Vec<Payload> {
        let LocalAuth::PubKey(cred) = &self.cfg.local_auth else {
            return Vec::new();
        };
        let send = match self.cfg.send_cert {
            SendCert::Always => true,
            SendCert::Never => false,
            SendCert::IfAsked => self.peer_certreq.is_some(),
        };
        if !send {
            return Vec::new();
        }
        cred.chain()
            .iter()
            .map(|c| {
                Payload::new(
                    PayloadType::CERT,
                    Body::Cert {
                        encoding: CertEncoding::X509_SIGNATURE,
                        data: c.der.clone(),
                    },
                )
            })
            .collect()
    }

    /// A CERTREQ naming our CAs, when the peer must show a certificate.
    fn certreq_payload(&self) -> Option<Payload> {
        let RemoteAuth::PubKey(trust) = &self.cfg.remote_auth else {
            return None;
        };
        Some(Payload::new(
            PayloadType::CERTREQ,
            Body::CertReq {
                encoding: CertEncoding::X509_SIGNATURE,
                data: trust.certreq(),
            },
        ))
    }

    fn record_certreq(&mut self, payloads: &[Payload]) {
        for p in payloads {
            if let Body::CertReq { encoding, data } = &p.body {
                if *encoding == CertEncoding::X509_SIGNATURE {
                    let v = self.peer_certreq.get_or_insert_with(Vec::new);
                    let room = MAX_CERTREQ.saturating_sub(v.len());
                    v.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }

    /// Checks the peer's ID against the configuration and its AUTH (and,
    /// with certificates, its chain and that the certificate carries the
    /// ID). Every refusal is logged with its reason.
    fn verify_peer(&mut self, inner: &[Payload]) -> Result<(), NotifyType> {
        match self.check_peer(inner) {
            Ok(msg) => {
                self.events.push_back(Event::Log(msg));
                Ok(())
            }
            Err(why) => {
                self.events
                    .push_back(Event::Log(format!("peer authentication failed: {why}")));
                Err(NotifyType::AUTHENTICATION_FAILED)
            }
        }
    }

    fn check_peer(&self, inner: &[Payload]) -> Result<String, String> {
        let want_ptype = if self.role == Role::Initiator {
            PayloadType::IDR
        } else {
            PayloadType::IDI
        };
        let (id_body, id_type, id_data) = inner
            .iter()
            .find(|p| p.ptype == want_ptype)
            .and_then(|p| match &p.body {
                Body::Id { id_type, data, .. } => {
                    let mut b = Vec::new();
                    p.body.emit(&mut b);
                    Some((b, *id_type, data.as_slice()))
                }
                _ => None,
            })
            .ok_or("no identity payload")?;
        let peer_id = Identity::from_payload(id_type, id_data)
            .ok_or_else(|| format!("identity of type {id_type} not supported"))?;
        if !self.cfg.remote_id.matches(id_type, id_data) {
            return Err(format!(
                "peer is '{peer_id}', configured remote_id is '{}'",
                self.cfg.remote_id
            ));
        }
        let (method, auth) = inner
            .iter()
            .find_map(|p| match &p.body {
                Body::Auth { method, data } => Some((*method, data.as_slice())),
                _ => None,
            })
            .ok_or("no AUTH payload")?;
        let octets = self
            .signed_octets(false, &id_body)
            .map_err(|e| e.to_string())?;
        match &self.cfg.remote_auth {
            RemoteAuth::Psk(psk) => {
                if method != AuthMethod::PSK {
                    return Err(format!("peer used {method}, a pre-shared key is required"));
                }
                let expected = psk_auth(self.cfg.ike.prf, psk, &octets);
                if !auth_matches(&expected, auth) {
                    return Err("pre-shared key AUTH does not match".into());
                }
                Ok(format!(
                    "authentication of '{peer_id}' with pre-shared key successful"
                ))
            }
            RemoteAuth::PubKey(trust) => {
                if method == AuthMethod::PSK {
                    return Err("peer used a pre-shared key, a certificate is required".into());
                }
                let certs: Vec<Vec<u8>> = inner
                    .iter()
                    .filter_map(|p| match &p.body {
                        Body::Cert { encoding, data }
                            if *encoding == CertEncoding::X509_SIGNATURE =>
                        {
                            Some(data.clone())
                        }
                        _ => None,
                    })
                    .collect();
                let (ee, intermediates) = certs
                    .split_first()
                    .ok_or("peer sent no certificate (CERT payload)")?;
                let peer = trust
                    .verify(ee, intermediates, std::time::SystemTime::now())
                    .map_err(|e| format!("certificate: {e}"))?;
                let info = peer.info();
                if !peer_id.in_cert(info) {
                    return Err(format!(
                        "identity '{peer_id}' is not in certificate \"{}\" (subjectAltName: {:?} {:?} {:?})",
                        info.subject, info.dns, info.emails, info.ips
                    ));
                }
                if method == AuthMethod::RSA_SIG && !self.peer_hashes.is_empty() {
                    // A peer announcing RFC 7427 has no reason to sign with
                    // SHA-1: a downgrade.
                    return Err(
                        "RSA with SHA-1 (AUTH method 1) from a peer that announced RFC 7427 hashes: refused"
                            .into(),
                    );
                }
                let scheme = peer
                    .verify_auth(method.0, auth, &octets)
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "authentication of '{peer_id}' with {scheme} successful; certificate \"{}\" (serial {}, until {}) issued by \"{}\", trusted via CA \"{}\"",
                    info.subject, info.serial, info.not_after, info.issuer, peer.anchor
                ))
            }
        }
    }

    fn selectors(inner: &[Payload], t: PayloadType) -> Vec<Selector> {
        inner
            .iter()
            .filter(|p| p.ptype == t)
            .flat_map(|p| match &p.body {
                Body::Ts(v) => v.iter().filter_map(Selector::from_wire).collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn ts_payload(t: PayloadType, sel: &[Selector]) -> Payload {
        Payload::new(t, Body::Ts(sel.iter().map(Selector::to_wire).collect()))
    }

    /// The peer's ESP SPI and the transform: the first of ours that an
    /// offered proposal carries (as responder), or the one the responder
    /// chose (as initiator, which offered only ours).
    fn choose_esp(&self, inner: &[Payload]) -> Option<(u32, EspProposal)> {
        let props: Vec<&Proposal> = inner
            .iter()
            .flat_map(|p| match &p.body {
                Body::Sa(v) => v.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        self.cfg.esp.iter().find_map(|ours| {
            props.iter().find(|p| ours.offered_by(p)).and_then(|p| {
                let spi = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
                Some((spi, *ours))
            })
        })
    }

    /// Derives and reports a CHILD SA. `ni`/`nr` are the nonces of the
    /// exchange that created it and `we_initiated` says whether we initiated
    /// that exchange: KEYMAT's first keys protect traffic from the exchange's
    /// initiator (RFC 7296 §2.17).
    #[allow(clippy::too_many_arguments)]
    fn install_child(
        &mut self,
        spi_in: u32,
        spi_out: u32,
        ni: &[u8],
        nr: &[u8],
        we_initiated: bool,
        esp: EspProposal,
        local_ts: Vec<Selector>,
        remote_ts: Vec<Selector>,
        rekeys: Option<u32>,
        g_ir: Option<&[u8]>,
    ) -> Result<(), Error> {
        let k = self.keys.as_ref().ok_or(Error::State("no keys"))?;
        let c = child_keys(
            self.cfg.ike.prf,
            &k.sk_d,
            g_ir,
            ni,
            nr,
            esp.encr_len(),
            esp.integ_len(),
        )
        .ok_or(Error::State("prf+"))?;
        let (encr_in, integ_in, encr_out, integ_out) = if we_initiated {
            (c.encr_r, c.integ_r, c.encr_i, c.integ_i)
        } else {
            (c.encr_i, c.integ_i, c.encr_r, c.integ_r)
        };
        self.events
            .push_back(Event::Log(format!("selected proposal: {}", esp.name())));
        if let Some(old) = rekeys {
            if !self.replaced.contains(&old) {
                self.replaced.push(old);
            }
        }
        self.children.push((spi_in, spi_out));
        // Forget the selectors of CHILD SAs that are gone (bounded memory).
        let kids = &self.children;
        self.child_ts
            .retain(|(i, _, _)| kids.iter().any(|(c, _)| c == i));
        self.child_ts
            .push((spi_in, local_ts.clone(), remote_ts.clone()));
        self.events.push_back(Event::ChildInstalled(ChildSa {
            spi_in,
            spi_out,
            encr_in,
            encr_out,
            integ_in,
            integ_out,
            esp,
            local_ts,
            remote_ts,
            nat_t: self.nat_detected,
            rekeys,
            initiator: we_initiated,
        }));
        Ok(())
    }

    /// Processes a datagram from the peer.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) {
        match self.handle_inner(now, from, datagram, rng) {
            Ok(()) => {}
            Err(Error::Fragment(n, total)) => self.events.push_back(Event::Log(format!(
                "received fragment #{n} of {total}, waiting for the complete message"
            ))),
            Err(e) => {
                // Unauthenticated or malformed input changes nothing (§2.21).
                self.events.push_back(Event::Dropped(e.to_string()));
            }
        }
    }

    fn handle_inner(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        self.clock = now;
        let m = Message::parse(datagram).map_err(Error::Wire)?;
        let h = m.header;
        if h.spi_i != self.spi_i
            || (self.spi_r != 0
                && h.spi_r != self.spi_r
                && !(h.exchange == ExchangeType::IKE_SA_INIT && self.role == Role::Responder))
        {
            return Err(Error::Unexpected("SPIs do not match this IKE SA"));
        }
        if h.is_response() {
            let pending = self
                .pending
                .as_ref()
                .ok_or(Error::Unexpected("response without a request"))?;
            if pending.msg_id != h.message_id {
                return Err(Error::Unexpected("response outside the window"));
            }
            match (self.state, h.exchange) {
                (State::InitSent, ExchangeType::IKE_SA_INIT) => {
                    self.on_init_response(now, from, datagram, &m, rng)
                }
                (State::AuthSent, ExchangeType::IKE_AUTH) => self.on_auth_response(datagram, &m),
                (State::Established | State::Rekeyed, ExchangeType::INFORMATIONAL) => {
                    self.on_info_response(now, datagram, &m, rng)
                }
                (State::Established, ExchangeType::CREATE_CHILD_SA) => {
                    self.on_create_child_response(now, datagram, &m, rng)
                }
                _ => Err(Error::Unexpected("response in the wrong state")),
            }
        } else {
            // Requests: a retransmitted one gets the cached response (§2.1).
            let digest: [u8; 32] = sha2::Sha256::digest(datagram).into();
            if let Some((id, bytes)) = &self.last_response {
                if *id == h.message_id {
                    if self.last_request != Some(digest) {
                        // A retransmitted fragmented request is answered on
                        // its fragment 1 (RFC 7383 §2.6.1): the others are
                        // expected, not suspicious.
                        if matches!(
                            m.payloads.last().map(|p| &p.body),
                            Some(Body::Skf { number, .. }) if *number != 1
                        ) {
                            return Ok(());
                        }
                        return Err(Error::Unexpected(
                            "request reuses the answered message ID with other bytes",
                        ));
                    }
                    for b in bytes {
                        self.transmit.push_back(Transmit {
                            dst: from,
                            data: b.clone(),
                        });
                    }
                    return Ok(());
                }
            }
            if h.message_id != self.next_msg_id {
                return Err(Error::Unexpected("request outside the window"));
            }
            let r = match (self.state, h.exchange) {
                (State::InitAnswered, ExchangeType::IKE_AUTH) => {
                    self.on_auth_request(from, datagram, &m, rng)
                }
                (State::Established | State::Rekeyed, ExchangeType::INFORMATIONAL) => {
                    self.on_info_request(datagram, &m, rng)
                }
                (State::Established, ExchangeType::CREATE_CHILD_SA) => {
                    self.on_create_child_request(datagram, &m, rng)
                }
                (State::Rekeyed, ExchangeType::CREATE_CHILD_SA) => {
                    // This IKE SA was replaced: a colliding request gets
                    // TEMPORARY_FAILURE, never silence (§2.25.2).
                    self.unprotect(datagram, &m)?;
                    self.next_msg_id = h.message_id.wrapping_add(1);
                    self.temporary_failure(
                        ExchangeType::CREATE_CHILD_SA,
                        h.message_id,
                        "this IKE SA was rekeyed",
                        rng,
                    )
                }
                _ => Err(Error::Unexpected("request in the wrong state")),
            };
            if let Err(Error::Rejected(n, data)) = &r {
                let msg_id = h.message_id;
                self.next_msg_id = msg_id.wrapping_add(1);
                let reply = vec![notify(*n, data.clone())];
                let bytes = self.protect(h.exchange, true, msg_id, &reply, rng)?;
                self.send_response(msg_id, bytes);
            }
            let reassembled = self.reasm_digest.take();
            if matches!(&self.last_response, Some((id, _)) if *id == h.message_id) {
                self.last_request = Some(reassembled.unwrap_or(digest));
            }
            r
        }
    }

    fn on_init_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        m: &Message,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        // COOKIE (§2.6) and INVALID_KE_PAYLOAD (§1.2): try again.
        if let Some(c) = find_notify(&m.payloads, NotifyType::COOKIE) {
            self.events.push_back(Event::Log(format!(
                "peer demands a COOKIE (RFC 7296 §2.6, {} bytes): IKE_SA_INIT again with it",
                c.len()
            )));
            self.cookie = Some(c.to_vec());
            self.send_init(now)?;
            return Ok(());
        }
        if let Some(g) = find_notify(&m.payloads, NotifyType::INVALID_KE_PAYLOAD) {
            let group = g
                .get(..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .and_then(DhGroup::from_id);
            let Some(group) = group.filter(|g| *g != self.dh && self.cfg.ike.groups.contains(g))
            else {
                self.fail(
                    "peer asked for a DH group we do not support",
                    Some(NotifyType::INVALID_KE_PAYLOAD),
                );
                return Ok(());
            };
            self.dh = group;
            self.ke = Some(KeyExchange::new(group).map_err(Error::Crypto)?);
            self.send_init(now)?;
            return Ok(());
        }
        if let Some(n) = first_error_notify(&m.payloads) {
            self.fail(&format!("IKE_SA_INIT refused with {n}"), Some(n));
            return Ok(());
        }
        ike_wire::rules::check(ExchangeType::IKE_SA_INIT, false, &m.payloads)
            .map_err(Error::Rules)?;
        let mut ok = false;
        let mut peer_ke = None;
        for p in &m.payloads {
            match &p.body {
                Body::Sa(props) => {
                    ok = props.len() == 1
                        && self.ike_proposal_group(&props[0]) == Some(self.dh)
                        && props[0]
                            .transforms
                            .iter()
                            .filter(|t| t.ttype == TransformType::DH)
                            .count()
                            == 1
                }
                Body::Ke { group, data } if group.0 == self.dh.id() => peer_ke = Some(data.clone()),
                Body::Nonce(n) => self.nr = n.clone(),
                _ => {}
            }
        }
        let peer_ke = peer_ke.filter(|_| ok).ok_or(Error::Unexpected(
            "responder chose something we did not offer",
        ))?;
        self.spi_r = m.header.spi_r;
        self.events.push_back(Event::Log(format!(
            "selected proposal: {}",
            self.proposal_name()
        )));
        self.init_resp = datagram[..msg_len(datagram)].to_vec();
        self.detect_nat(&m.payloads);
        self.peer_hashes = peer_hashes(&m.payloads);
        self.record_certreq(&m.payloads);
        self.frag_ok = self.cfg.fragment_size.is_some()
            && find_notify(&m.payloads, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        let ke = self.ke.take().ok_or(Error::State("no key exchange"))?;
        let g_ir = ke.agree(&peer_ke).map_err(Error::Crypto)?;
        self.derive(&g_ir)?;
        if self.nat_detected {
            // RFC 7296 §2.23: continue on port 4500.
            self.remote.set_port(4500);
            self.local.set_port(4500);
        }
        let _ = from;
        let (idi, idi_body) = self.id_payload(PayloadType::IDI);
        let auth = match self.our_auth(&idi_body) {
            Ok(a) => a,
            Err(e) => {
                self.fail(&e.to_string(), None);
                return Ok(());
            }
        };
        let first = self
            .cfg
            .children
            .first()
            .ok_or(Error::State("no CHILD SA configured"))?;
        let mut inner = vec![idi];
        inner.extend(self.cert_payloads());
        inner.extend(self.certreq_payload());
        inner.extend([
            auth,
            Self::esp_sa_payload(self.child_spi_in, &self.cfg.esp),
            Self::ts_payload(PayloadType::TSI, &first.local_ts),
            Self::ts_payload(PayloadType::TSR, &first.remote_ts),
        ]);
        let bytes = self.protect(ExchangeType::IKE_AUTH, false, 1, &inner, rng)?;
        self.state = State::AuthSent;
        self.send_request(now, 1, bytes);
        Ok(())
    }

    fn on_auth_request(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        m: &Message,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let inner = self.unprotect(datagram, m)?;
        ike_wire::rules::check(ExchangeType::IKE_AUTH, true, &inner).map_err(Error::Rules)?;
        // Authenticated from here on: the peer moved to its NAT-T port, and
        // so did we (§2.23).
        self.remote = from;
        if self.nat_detected {
            self.local.set_port(4500);
        }
        let msg_id = m.header.message_id;
        self.next_msg_id = msg_id + 1;
        self.record_certreq(&inner);
        if let Err(n) = self.verify_peer(&inner) {
            let bytes = self.protect(
                ExchangeType::IKE_AUTH,
                true,
                msg_id,
                &[notify(n, vec![])],
                rng,
            )?;
            self.send_response(msg_id, bytes);
            self.fail("peer failed authentication", Some(n));
            return Ok(());
        }
        let (idr, idr_body) = self.id_payload(PayloadType::IDR);
        let auth = match self.our_auth(&idr_body) {
            Ok(a) => a,
            Err(e) => {
                let bytes = self.protect(
                    ExchangeType::IKE_AUTH,
                    true,
                    msg_id,
                    &[notify(NotifyType::AUTHENTICATION_FAILED, vec![])],
                    rng,
                )?;
                self.send_response(msg_id, bytes);
                self.fail(&e.to_string(), Some(NotifyType::AUTHENTICATION_FAILED));
                return Ok(());
            }
        };
        // First CHILD SA: proposal and narrowed selectors (§2.9).
        let chosen = self.choose_esp(&inner);
        let (tsi, tsr) = self
            .cfg
            .select_child(
                &Self::selectors(&inner, PayloadType::TSI),
                &Self::selectors(&inner, PayloadType::TSR),
            )
            .map(|(_, i, r)| (i, r))
            .unwrap_or_default();
        let mut out = vec![idr];
        out.extend(self.cert_payloads());
        out.push(auth);
        let child = match chosen {
            None => {
                out.push(notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![]));
                None
            }
            Some(_) if tsi.is_empty() || tsr.is_empty() => {
                out.push(notify(NotifyType::TS_UNACCEPTABLE, vec![]));
                None
            }
            Some((spi, esp)) => {
                out.push(Self::esp_sa_payload(self.child_spi_in, &[esp]));
                out.push(Self::ts_payload(PayloadType::TSI, &tsi));
                out.push(Self::ts_payload(PayloadType::TSR, &tsr));
                Some((spi, esp))
            }
        };
        let bytes = self.protect(ExchangeType::IKE_AUTH, true, msg_id, &out, rng)?;
        self.send_response(msg_id, bytes);
        self.state = State::Established;
        self.events.push_back(Event::Established {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
        });
        if let Some((spi, esp)) = child {
            let (ni, nr) = (self.ni.clone(), self.nr.clone());
            let spi_in = self.child_spi_in;
            self.install_child(spi_in, spi, &ni, &nr, false, esp, tsr, tsi, None, None)?;
        }
        Ok(())
    }

    fn on_auth_response(&mut self, datagram: &[u8], m: &Message) -> Result<(), Error> {
        let inner = self.unprotect(datagram, m)?;
        ike_wire::rules::check(ExchangeType::IKE_AUTH, false, &inner).map_err(Error::Rules)?;
        self.pending = None;
        if let Err(n) = self.verify_peer(&inner) {
            let reported = first_error_notify(&inner).unwrap_or(n);
            self.fail("IKE_AUTH failed", Some(reported));
            return Ok(());
        }
        self.state = State::Established;
        self.events.push_back(Event::Established {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
        });
        if let Some(n) = first_error_notify(&inner) {
            self.events.push_back(Event::Failed {
                reason: format!("no CHILD SA: {n}"),
                notify: Some(n),
            });
            return Ok(());
        }
        let (spi, esp) = self.choose_esp(&inner).ok_or(Error::Unexpected(
            "no acceptable ESP proposal in the response",
        ))?;
        let tsi = Self::selectors(&inner, PayloadType::TSI);
        let tsr = Self::selectors(&inner, PayloadType::TSR);
        let (ni, nr) = (self.ni.clone(), self.nr.clone());
        let spi_in = self.child_spi_in;
        self.install_child(spi_in, spi, &ni, &nr, true, esp, tsi, tsr, None, None)
    }

    /// Queues an INFORMATIONAL request; sent when the window is free.
    fn queue(&mut self, now: Instant, op: Op, rng: &mut dyn Random) -> Result<(), Error> {
        let rekeyed_delete = self.state == State::Rekeyed && op == Op::DeleteIke;
        if self.state != State::Established && !rekeyed_delete {
            return Err(Error::State("IKE SA not established"));
        }
        self.ops.push_back(op);
        self.start_next_op(now, rng)
    }

    fn start_next_op(&mut self, now: Instant, rng: &mut dyn Random) -> Result<(), Error> {
        if self.pending.is_some() || !matches!(self.state, State::Established | State::Rekeyed) {
            return Ok(());
        }
        if self.state == State::Rekeyed {
            // Only the delete of the old IKE SA goes out on it.
            self.ops.retain(|o| *o == Op::DeleteIke);
        }
        let Some(op) = self.ops.pop_front() else {
            return Ok(());
        };
        let inner = match op {
            Op::DeleteIke => vec![Payload::new(
                PayloadType::DELETE,
                Body::Delete {
                    protocol: ProtocolId::IKE,
                    spi_size: 0,
                    spis: vec![],
                },
            )],
            Op::DeleteChild(spi_in) => vec![Payload::new(
                PayloadType::DELETE,
                Body::Delete {
                    protocol: ProtocolId::ESP,
                    spi_size: 4,
                    spis: vec![spi_in.to_be_bytes().to_vec()],
                },
            )],
            Op::Liveness => vec![],
            Op::RekeyIke => {
                let ke = KeyExchange::new(self.dh).map_err(Error::Crypto)?;
                let spi = random_u64(rng);
                let nonce = random_vec(rng, 32);
                let v = self.ike_rekey_payloads(self.dh, spi, &nonce, ke.public());
                self.ike_rekey = Some(IkeRekey { spi, nonce, ke });
                v
            }
            Op::CreateChild(i) => {
                let Some(Some(r)) = self.child_reqs.get(i) else {
                    return Err(Error::State("no such CHILD SA request"));
                };
                let mut v = Vec::with_capacity(5);
                if let Some(old) = r.rekey {
                    v.push(Payload::new(
                        PayloadType::NOTIFY,
                        Body::Notify {
                            protocol: ProtocolId::ESP,
                            spi: old.to_be_bytes().to_vec(),
                            ntype: NotifyType::REKEY_SA,
                            data: vec![],
                        },
                    ));
                }
                v.extend([
                    Self::esp_sa_payload_dh(
                        r.spi_in,
                        &self.cfg.esp,
                        r.ke.as_ref().map(KeyExchange::group),
                    ),
                    Payload::new(PayloadType::NONCE, Body::Nonce(r.nonce.clone())),
                ]);
                if let Some(ke) = &r.ke {
                    v.push(Self::ke_payload(ke));
                }
                v.extend([
                    Self::ts_payload(PayloadType::TSI, &r.local_ts),
                    Self::ts_payload(PayloadType::TSR, &r.remote_ts),
                ]);
                v
            }
        };
        let id = self.my_msg_id;
        let exchange = if matches!(op, Op::CreateChild(_) | Op::RekeyIke) {
            ExchangeType::CREATE_CHILD_SA
        } else {
            ExchangeType::INFORMATIONAL
        };
        let bytes = self.protect(exchange, false, id, &inner, rng)?;
        self.send_request(now, id, bytes);
        if let Some(p) = self.pending.as_mut() {
            p.op = Some(op);
        }
        Ok(())
    }

    /// Deletes the IKE SA and its CHILD SAs (RFC 7296 §1.4.1).
    pub fn delete(&mut self, now: Instant, rng: &mut dyn Random) -> Result<(), Error> {
        self.queue(now, Op::DeleteIke, rng)
    }

    /// Deletes one CHILD SA, named by our inbound SPI; the peer answers with
    /// the SPI of its inbound SA (RFC 7296 §1.4.1).
    pub fn delete_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        if !self.children.iter().any(|(i, _)| *i == spi_in) {
            return Err(Error::State("no such CHILD SA"));
        }
        self.queue(now, Op::DeleteChild(spi_in), rng)
    }

    /// Negotiates an additional CHILD SA with these selectors (RFC 7296
    /// §1.3.1, without PFS). Returns our inbound SPI for it.
    pub fn create_child(
        &mut self,
        now: Instant,
        local_ts: Vec<Selector>,
        remote_ts: Vec<Selector>,
        rng: &mut dyn Random,
    ) -> Result<u32, Error> {
        let spi_in = random_u32(rng);
        let nonce = random_vec(rng, 32);
        self.child_reqs.push(Some(ChildRequest {
            spi_in,
            nonce,
            local_ts,
            remote_ts,
            rekey: None,
            ke: self.pfs_ke()?,
            collided: None,
            orphaned: false,
        }));
        self.queue(now, Op::CreateChild(self.child_reqs.len() - 1), rng)?;
        Ok(spi_in)
    }

    fn pfs_ke(&self) -> Result<Option<KeyExchange>, Error> {
        self.cfg
            .pfs
            .map(|g| KeyExchange::new(g).map_err(Error::Crypto))
            .transpose()
    }

    /// Rekeys the CHILD SA whose inbound SPI is `spi_in` (RFC 7296 §2.8,
    /// without PFS): a CREATE_CHILD_SA with REKEY_SA and the same
    /// selectors; when it is answered the new CHILD SA is reported with
    /// [`ChildSa::rekeys`] set and the old one is deleted. Returns the new
    /// inbound SPI.
    pub fn rekey_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        rng: &mut dyn Random,
    ) -> Result<u32, Error> {
        let (local_ts, remote_ts) = self
            .child_ts
            .iter()
            .find(|(i, _, _)| *i == spi_in)
            .filter(|_| self.children.iter().any(|(i, _)| *i == spi_in))
            .map(|(_, l, r)| (l.clone(), r.clone()))
            .ok_or(Error::State("no such CHILD SA"))?;
        if self.replaced.contains(&spi_in) || self.rekey_request_for(spi_in).is_some() {
            return Err(Error::State("CHILD SA already rekeyed or being rekeyed"));
        }
        if self.closing_child(spi_in) {
            return Err(Error::State("CHILD SA being deleted"));
        }
        let new = random_u32(rng);
        self.child_reqs.push(Some(ChildRequest {
            spi_in: new,
            nonce: random_vec(rng, 32),
            local_ts,
            remote_ts,
            rekey: Some(spi_in),
            ke: self.pfs_ke()?,
            collided: None,
            orphaned: false,
        }));
        self.queue(now, Op::CreateChild(self.child_reqs.len() - 1), rng)?;
        Ok(new)
    }

    /// Rekeys this IKE SA (RFC 7296 §2.18): a CREATE_CHILD_SA with a new
    /// SPI, nonce and key exchange. When answered, [`Event::IkeRekeyed`]
    /// carries the new IKE SA (with the CHILD SAs moved to it) and this one
    /// is deleted.
    pub fn rekey_ike(&mut self, now: Instant, rng: &mut dyn Random) -> Result<(), Error> {
        self.queue(now, Op::RekeyIke, rng)
    }

    /// The IKE SA that replaces this one after a rekey: same peer and
    /// configuration, new SPIs, nonces and keys from SKEYSEED = prf(SK_d
    /// (old), g^ir (new) | Ni | Nr), message IDs from 0, our CHILD SAs.
    #[allow(clippy::too_many_arguments)]
    fn successor(
        &mut self,
        role: Role,
        spi_i: u64,
        spi_r: u64,
        ni: Vec<u8>,
        nr: Vec<u8>,
        g_ir: &[u8],
        rng: &mut dyn Random,
    ) -> Result<IkeSa, Error> {
        let old = self.keys.as_ref().ok_or(Error::State("no keys"))?;
        let seed = skeyseed_rekey(self.cfg.ike.prf, &old.sk_d, g_ir, &ni, &nr);
        let mut n = IkeSa::new(
            self.cfg.clone(),
            role,
            self.local,
            self.remote,
            self.clock,
            rng,
        );
        n.state = State::Established;
        // Negotiated once per IKE SA chain (RFC 7383 §2.5, RFC 7427 §4).
        n.frag_ok = self.frag_ok;
        n.peer_hashes = self.peer_hashes.clone();
        n.dh = self.dh;
        n.spi_i = spi_i;
        n.spi_r = spi_r;
        n.ni = ni;
        n.nr = nr;
        n.nat_detected = self.nat_detected;
        n.derive_from(&seed)?;
        Ok(n)
    }

    /// Moves our CHILD SAs to the IKE SA that replaces this one; this one
    /// then only exchanges its Delete.
    /// Queued CHILD SA work (creations, rekeys, deletes) goes along and
    /// starts there: a rekey's pending Delete of the old CHILD SA must not
    /// be lost with the old IKE SA.
    fn hand_over(&mut self, n: &mut IkeSa, rng: &mut dyn Random) {
        n.children = std::mem::take(&mut self.children);
        n.child_ts = std::mem::take(&mut self.child_ts);
        n.replaced = std::mem::take(&mut self.replaced);
        let child_op = |o: &Op| matches!(o, Op::CreateChild(_) | Op::DeleteChild(_));
        n.ops.extend(self.ops.iter().copied().filter(child_op));
        self.ops.retain(|o| !child_op(o));
        n.child_reqs = std::mem::take(&mut self.child_reqs);
        self.state = State::Rekeyed;
        if let Err(e) = n.start_next_op(self.clock, rng) {
            n.events
                .push_back(Event::Log(format!("queued CHILD SA work not started: {e}")));
        }
        let (spi_i, spi_r) = n.spis();
        n.events.push_back(Event::Log(format!(
            "IKE_SA rekeyed: SPIs {:016x}_i {:016x}_r replaced by {spi_i:016x}_i {spi_r:016x}_r",
            self.spi_i, self.spi_r
        )));
    }

    /// SA (our proposal for `group`, carrying the new IKE SPI), Nonce and KE
    /// of an IKE SA rekey, request or response (RFC 7296 §1.3.2).
    fn ike_rekey_payloads(
        &self,
        group: DhGroup,
        spi: u64,
        nonce: &[u8],
        ke_pub: &[u8],
    ) -> Vec<Payload> {
        let mut sa = self.ike_sa_payload(&[group]);
        if let Body::Sa(props) = &mut sa.body {
            for p in props.iter_mut() {
                p.spi = spi.to_be_bytes().to_vec();
            }
        }
        vec![
            sa,
            Payload::new(PayloadType::NONCE, Body::Nonce(nonce.to_vec())),
            Payload::new(
                PayloadType::KE,
                Body::Ke {
                    group: ike_wire::DhGroup(group.id()),
                    data: ke_pub.to_vec(),
                },
            ),
        ]
    }

    /// Sends a liveness check (an empty INFORMATIONAL request, RFC 7296
    /// §2.4): answered, it reports [`Event::Alive`]; unanswered after the
    /// retransmissions, [`Event::PeerDead`].
    pub fn check_liveness(&mut self, now: Instant, rng: &mut dyn Random) -> Result<(), Error> {
        self.queue(now, Op::Liveness, rng)
    }

    /// Our CHILD SA request (queued or sent) that rekeys `spi_in`.
    fn rekey_request_for(&self, spi_in: u32) -> Option<usize> {
        self.child_reqs
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.rekey == Some(spi_in)))
    }

    /// The operation of our request in flight.
    fn pending_op(&self) -> Option<Op> {
        self.pending.as_ref().and_then(|p| p.op)
    }

    /// Whether we are deleting this CHILD SA (queued or sent).
    fn closing_child(&self, spi_in: u32) -> bool {
        self.pending_op() == Some(Op::DeleteChild(spi_in))
            || self.ops.contains(&Op::DeleteChild(spi_in))
    }

    /// Whether we are deleting this IKE SA (queued or sent).
    fn closing_ike(&self) -> bool {
        self.pending_op() == Some(Op::DeleteIke) || self.ops.contains(&Op::DeleteIke)
    }

    /// Answers a request with TEMPORARY_FAILURE (RFC 7296 §2.25): it
    /// collides with an exchange of ours; the peer retries later.
    fn temporary_failure(
        &mut self,
        exchange: ExchangeType,
        msg_id: u32,
        why: &str,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let bytes = self.protect(
            exchange,
            true,
            msg_id,
            &[notify(NotifyType::TEMPORARY_FAILURE, vec![])],
            rng,
        )?;
        self.send_response(msg_id, bytes);
        self.events.push_back(Event::Log(format!(
            "answered {exchange} request {msg_id} with TEMPORARY_FAILURE: {why}"
        )));
        Ok(())
    }

    fn remove_child_by_out(&mut self, spi_out: u32) -> Option<(u32, u32)> {
        let i = self.children.iter().position(|(_, o)| *o == spi_out)?;
        Some(self.children.remove(i))
    }

    fn on_info_response(
        &mut self,
        now: Instant,
        datagram: &[u8],
        m: &Message,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let inner = self.unprotect(datagram, m)?;
        ike_wire::rules::check(ExchangeType::INFORMATIONAL, false, &inner).map_err(Error::Rules)?;
        let op = self.pending.take().and_then(|p| p.op);
        match op {
            Some(Op::DeleteIke) => {
                for (i, o) in std::mem::take(&mut self.children) {
                    self.events.push_back(Event::ChildDeleted {
                        spi_in: i,
                        spi_out: o,
                    });
                }
                self.state = State::Closed;
                self.events.push_back(Event::Deleted);
            }
            Some(Op::DeleteChild(spi_in)) => {
                self.replaced.retain(|x| *x != spi_in);
                if let Some(pos) = self.children.iter().position(|(i, _)| *i == spi_in) {
                    let (i, o) = self.children.remove(pos);
                    self.events.push_back(Event::ChildDeleted {
                        spi_in: i,
                        spi_out: o,
                    });
                }
            }
            Some(Op::Liveness) => self.events.push_back(Event::Alive),
            Some(Op::CreateChild(_) | Op::RekeyIke) | None => {}
        }
        self.start_next_op(now, rng)
    }

    fn on_create_child_response(
        &mut self,
        now: Instant,
        datagram: &[u8],
        m: &Message,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let inner = self.unprotect(datagram, m)?;
        let op = self.pending.take().and_then(|p| p.op);
        if op == Some(Op::RekeyIke) {
            return self.on_ike_rekey_response(now, &inner, rng);
        }
        let Some(Op::CreateChild(i)) = op else {
            return Err(Error::Unexpected(
                "CREATE_CHILD_SA response to another request",
            ));
        };
        let req = self.child_reqs.get_mut(i).and_then(Option::take);
        let Some(req) = req else {
            return Err(Error::State("CHILD SA request gone"));
        };
        if let Some(n) = first_error_notify(&inner) {
            match req.rekey {
                // Refused because the peer replaced or deleted the CHILD SA
                // meanwhile (§2.25.1): nothing to do.
                Some(old)
                    if self.replaced.contains(&old)
                        || !self.children.iter().any(|(i, _)| *i == old) =>
                {
                    self.events.push_back(Event::Log(format!(
                        "rekey of CHILD_SA {old:08x}_i answered {n}: the peer replaced or deleted it meanwhile"
                    )));
                }
                Some(old) => {
                    self.events.push_back(Event::Log(format!(
                        "rekey of CHILD_SA {old:08x}_i refused: {n}"
                    )));
                    self.events.push_back(Event::RekeyFailed {
                        child: Some(old),
                        notify: n,
                    });
                }
                None => self.events.push_back(Event::Failed {
                    reason: format!("CREATE_CHILD_SA refused: {n}"),
                    notify: Some(n),
                }),
            }
            return self.start_next_op(now, rng);
        }
        ike_wire::rules::check(ExchangeType::CREATE_CHILD_SA, false, &inner)
            .map_err(Error::Rules)?;
        let nr = inner
            .iter()
            .find_map(|p| match &p.body {
                Body::Nonce(n) => Some(n.clone()),
                _ => None,
            })
            .ok_or(Error::Unexpected("no nonce"))?;
        let (spi_out, esp) = self
            .choose_esp(&inner)
            .ok_or(Error::Unexpected("no acceptable ESP proposal"))?;
        let tsi = Self::selectors(&inner, PayloadType::TSI);
        let tsr = Self::selectors(&inner, PayloadType::TSR);
        // PFS: the responder's public value in its KE payload.
        let g_ir = match (req.ke, Self::ke_of(&inner)) {
            (None, _) => None,
            (Some(ke), Some((g, peer))) if g == ke.group().id() => {
                Some(ke.agree(&peer).map_err(Error::Crypto)?)
            }
            (Some(_), _) => {
                self.events.push_back(Event::Failed {
                    reason: "CREATE_CHILD_SA answered without the PFS key exchange".into(),
                    notify: None,
                });
                return self.start_next_op(now, rng);
            }
        };
        if let (Some(old), true) = (req.rekey, req.orphaned) {
            // The peer deleted what we rekeyed while we asked (§2.25.1):
            // forget our rekey, and the SA it brought.
            self.events.push_back(Event::Log(format!(
                "CHILD_SA {old:08x}_i was deleted by the peer during our rekey: deleting the new {:08x}_i",
                req.spi_in
            )));
            self.ops.push_back(Op::DeleteChild(req.spi_in));
            return self.start_next_op(now, rng);
        }
        if let (Some(old), Some(peer_low)) = (req.rekey, &req.collided) {
            // Both rekeyed the same CHILD SA (§2.8.1): the SA made with the
            // lowest of the four nonces is closed by whoever made it; the
            // other side's initiator deletes the old one.
            let our_low = std::cmp::min(req.nonce.as_slice(), nr.as_slice());
            if our_low < peer_low.as_slice() {
                self.events.push_back(Event::Log(format!(
                    "CHILD_SA rekey collision for {old:08x}_i lost (lowest nonce ours): deleting our redundant {:08x}_i, the peer's rekey replaces it",
                    req.spi_in
                )));
                self.ops.push_back(Op::DeleteChild(req.spi_in));
                return self.start_next_op(now, rng);
            }
            self.events.push_back(Event::Log(format!(
                "CHILD_SA rekey collision for {old:08x}_i won: {:08x}_i replaces it, the peer deletes its redundant one",
                req.spi_in
            )));
        }
        self.install_child(
            req.spi_in,
            spi_out,
            &req.nonce,
            &nr,
            true,
            esp,
            tsi,
            tsr,
            req.rekey,
            g_ir.as_ref().map(|g| g.as_slice()),
        )?;
        // The rekey's initiator deletes the old CHILD SA once the new one
        // is up (RFC 7296 §2.8).
        if let Some(old) = req.rekey {
            if !self.closing_child(old) {
                self.ops.push_back(Op::DeleteChild(old));
            }
        }
        self.start_next_op(now, rng)
    }

    fn on_create_child_request(
        &mut self,
        datagram: &[u8],
        m: &Message,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let inner = self.unprotect(datagram, m)?;
        ike_wire::rules::check(ExchangeType::CREATE_CHILD_SA, true, &inner)
            .map_err(Error::Rules)?;
        let msg_id = m.header.message_id;
        self.next_msg_id = msg_id.wrapping_add(1);
        let refuse = |sa: &mut IkeSa, n: NotifyType, rng: &mut dyn Random| -> Result<(), Error> {
            let bytes = sa.protect(
                ExchangeType::CREATE_CHILD_SA,
                true,
                msg_id,
                &[notify(n, vec![])],
                rng,
            )?;
            sa.send_response(msg_id, bytes);
            sa.events.push_back(Event::Failed {
                reason: format!("refused CREATE_CHILD_SA with {n}"),
                notify: Some(n),
            });
            Ok(())
        };
        // An SA payload proposing protocol IKE rekeys this IKE SA (§2.18).
        let ike_rekey = inner.iter().any(|p| {
            matches!(&p.body, Body::Sa(props) if props.iter().any(|x| x.protocol == ProtocolId::IKE))
        });
        if self.ike_rekey.is_some() || self.pending_op() == Some(Op::RekeyIke) {
            // §2.25.2: nothing is created or rekeyed while we rekey the
            // IKE SA (a colliding IKE SA rekey is answered as usual).
            if !ike_rekey {
                return self.temporary_failure(
                    ExchangeType::CREATE_CHILD_SA,
                    msg_id,
                    "we are rekeying the IKE SA",
                    rng,
                );
            }
        }
        if ike_rekey {
            if self.closing_ike() {
                return self.temporary_failure(
                    ExchangeType::CREATE_CHILD_SA,
                    msg_id,
                    "we are deleting the IKE SA",
                    rng,
                );
            }
            if matches!(
                self.pending_op(),
                Some(Op::CreateChild(_) | Op::DeleteChild(_))
            ) {
                return self.temporary_failure(
                    ExchangeType::CREATE_CHILD_SA,
                    msg_id,
                    "a CHILD SA exchange of ours is in progress",
                    rng,
                );
            }
            // Ours, if still queued, is no longer needed.
            self.ops.retain(|o| *o != Op::RekeyIke);
            return self.on_ike_rekey_request(msg_id, &inner, rng);
        }
        // A rekey (RFC 7296 §2.8) names the CHILD SA by the SPI the
        // initiator receives on, our outbound SPI. PFS (a KE payload) is not
        // offered by us and refused for now.
        let rekey_spi = inner.iter().find_map(|p| match &p.body {
            Body::Notify {
                ntype,
                spi,
                protocol,
                ..
            } if *ntype == NotifyType::REKEY_SA && *protocol == ProtocolId::ESP => {
                <[u8; 4]>::try_from(spi.as_slice())
                    .ok()
                    .map(u32::from_be_bytes)
            }
            _ => None,
        });
        let rekeys = match rekey_spi {
            None => None,
            Some(out) => match self.children.iter().find(|(_, o)| *o == out) {
                Some((i, _)) => Some(*i),
                None => return refuse(self, NotifyType::CHILD_SA_NOT_FOUND, rng),
            },
        };
        // Collisions (§2.25.1): a CHILD SA we delete or already replaced is
        // not rekeyed again; one we are about to rekey ourselves is left to
        // the peer; one whose rekey we sent is answered, and the nonces
        // decide when our response arrives.
        let mut collided = None;
        if let Some(x) = rekeys {
            if self.closing_child(x) || self.replaced.contains(&x) {
                return self.temporary_failure(
                    ExchangeType::CREATE_CHILD_SA,
                    msg_id,
                    &format!("CHILD_SA {x:08x}_i is being deleted or was rekeyed"),
                    rng,
                );
            }
            if let Some(i) = self.rekey_request_for(x) {
                if self.pending_op() == Some(Op::CreateChild(i)) {
                    collided = Some(i);
                } else {
                    self.ops.retain(|o| *o != Op::CreateChild(i));
                    self.child_reqs[i] = None;
                    self.events.push_back(Event::Log(format!(
                        "the peer rekeys CHILD_SA {x:08x}_i: our queued rekey is dropped"
                    )));
                }
            }
        }
        // PFS: a KE of our group, or of any group we support when we
        // require none; without one when we require PFS: refused.
        let pfs = match (Self::ke_of(&inner), self.cfg.pfs) {
            (None, None) => None,
            (None, Some(_)) => return refuse(self, NotifyType::NO_PROPOSAL_CHOSEN, rng),
            (Some((g, peer)), want) => {
                let group = match (DhGroup::from_id(g), want) {
                    (Some(have), Some(w)) if have == w => have,
                    (Some(have), None) => have,
                    (_, Some(w)) => {
                        let bytes = self.protect(
                            ExchangeType::CREATE_CHILD_SA,
                            true,
                            msg_id,
                            &[notify(
                                NotifyType::INVALID_KE_PAYLOAD,
                                w.id().to_be_bytes().to_vec(),
                            )],
                            rng,
                        )?;
                        self.send_response(msg_id, bytes);
                        return Ok(());
                    }
                    (None, None) => return refuse(self, NotifyType::NO_PROPOSAL_CHOSEN, rng),
                };
                Some((group, peer))
            }
        };
        let ni = inner
            .iter()
            .find_map(|p| match &p.body {
                Body::Nonce(n) => Some(n.clone()),
                _ => None,
            })
            .ok_or(Error::Unexpected("no nonce"))?;
        let Some((spi_out, esp)) = self.choose_esp(&inner) else {
            return refuse(self, NotifyType::NO_PROPOSAL_CHOSEN, rng);
        };
        let Some((_, tsi, tsr)) = self.cfg.select_child(
            &Self::selectors(&inner, PayloadType::TSI),
            &Self::selectors(&inner, PayloadType::TSR),
        ) else {
            return refuse(self, NotifyType::TS_UNACCEPTABLE, rng);
        };
        let spi_in = random_u32(rng);
        let nr = random_vec(rng, 32);
        let (ke_out, g_ir) = match pfs {
            Some((group, peer)) => {
                let ke = KeyExchange::new(group).map_err(Error::Crypto)?;
                let payload = Self::ke_payload(&ke);
                let Ok(g_ir) = ke.agree(&peer) else {
                    return refuse(self, NotifyType::INVALID_SYNTAX, rng);
                };
                (Some((group, payload)), Some(g_ir))
            }
            None => (None, None),
        };
        let mut out = vec![
            Self::esp_sa_payload_dh(spi_in, &[esp], ke_out.as_ref().map(|(g, _)| *g)),
            Payload::new(PayloadType::NONCE, Body::Nonce(nr.clone())),
        ];
        if let Some((_, p)) = ke_out {
            out.push(p);
        }
        out.extend([
            Self::ts_payload(PayloadType::TSI, &tsi),
            Self::ts_payload(PayloadType::TSR, &tsr),
        ]);
        let bytes = self.protect(ExchangeType::CREATE_CHILD_SA, true, msg_id, &out, rng)?;
        self.send_response(msg_id, bytes);
        if let Some(i) = collided {
            let low = std::cmp::min(ni.as_slice(), nr.as_slice()).to_vec();
            if let Some(Some(r)) = self.child_reqs.get_mut(i) {
                r.collided = Some(low);
            }
            self.events.push_back(Event::Log(format!(
                "CHILD_SA rekey collision: the peer rekeys {:08x}_i too; the nonces decide when our response arrives",
                rekeys.unwrap_or_default()
            )));
        }
        self.install_child(
            spi_in,
            spi_out,
            &ni,
            &nr,
            false,
            esp,
            tsr,
            tsi,
            rekeys,
            g_ir.as_ref().map(|g| g.as_slice()),
        )
    }

    /// The peer rekeys this IKE SA: answer with our new SPI, nonce and KE
    /// (protected with the old keys), then hand the new IKE SA over.
    fn on_ike_rekey_request(
        &mut self,
        msg_id: u32,
        inner: &[Payload],
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let refuse = |sa: &mut IkeSa, n: NotifyType, data: Vec<u8>, rng: &mut dyn Random| {
            let bytes = sa.protect(
                ExchangeType::CREATE_CHILD_SA,
                true,
                msg_id,
                &[notify(n, data)],
                rng,
            )?;
            sa.send_response(msg_id, bytes);
            sa.events.push_back(Event::Failed {
                reason: format!("refused the IKE SA rekey with {n}"),
                notify: Some(n),
            });
            Ok(())
        };
        let mut chosen = None;
        let mut peer_ke = None;
        let mut ni = None;
        for p in inner {
            match &p.body {
                Body::Sa(props) => {
                    chosen = props.iter().find_map(|pr| {
                        let spi = <[u8; 8]>::try_from(pr.spi.as_slice()).ok()?;
                        Some((self.ike_proposal_group(pr)?, u64::from_be_bytes(spi)))
                    })
                }
                Body::Ke { group, data } => peer_ke = Some((group.0, data.clone())),
                Body::Nonce(n) => ni = Some(n.clone()),
                _ => {}
            }
        }
        let Some((group, spi_i)) = chosen else {
            return refuse(self, NotifyType::NO_PROPOSAL_CHOSEN, vec![], rng);
        };
        let (Some((g, peer_pub)), Some(ni)) = (peer_ke, ni) else {
            return refuse(self, NotifyType::INVALID_SYNTAX, vec![], rng);
        };
        if g != group.id() {
            return refuse(
                self,
                NotifyType::INVALID_KE_PAYLOAD,
                group.id().to_be_bytes().to_vec(),
                rng,
            );
        }
        let ke = KeyExchange::new(group).map_err(Error::Crypto)?;
        let our_pub = ke.public().to_vec();
        // A public value that fails validation is answered, not dropped:
        // the message ID is spent either way.
        let Ok(g_ir) = ke.agree(&peer_pub) else {
            return refuse(self, NotifyType::INVALID_SYNTAX, vec![], rng);
        };
        let spi_r = random_u64(rng);
        let nr = random_vec(rng, 32);
        let out = self.ike_rekey_payloads(group, spi_r, &nr, &our_pub);
        let bytes = self.protect(ExchangeType::CREATE_CHILD_SA, true, msg_id, &out, rng)?;
        self.send_response(msg_id, bytes);
        // The new IKE SA's initiator is the rekey's initiator (§2.18).
        let low = std::cmp::min(ni.as_slice(), nr.as_slice()).to_vec();
        let mut next = self.successor(Role::Responder, spi_i, spi_r, ni, nr, &g_ir, rng)?;
        next.dh = group;
        if self.ike_rekey.is_some() {
            // Both rekey the IKE SA (§2.25.2): hold the peer's new SA until
            // our response says which one survives.
            self.events.push_back(Event::Log(
                "IKE_SA rekey collision: the peer rekeys too; the nonces decide when our response arrives".into(),
            ));
            self.ike_collision = Some((Box::new(next), low));
        } else {
            self.hand_over(&mut next, rng);
            self.events.push_back(Event::IkeRekeyed(Box::new(next)));
        }
        Ok(())
    }

    fn on_ike_rekey_response(
        &mut self,
        now: Instant,
        inner: &[Payload],
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let ours = self
            .ike_rekey
            .take()
            .ok_or(Error::State("no IKE SA rekey outstanding"))?;
        if let Some(n) = first_error_notify(inner) {
            if let Some((mut p, _)) = self.ike_collision.take() {
                self.events.push_back(Event::Log(format!(
                    "our IKE_SA rekey answered {n}; the peer's colliding rekey stands"
                )));
                self.hand_over(&mut p, rng);
                self.events.push_back(Event::IkeRekeyed(p));
                return self.start_next_op(now, rng);
            }
            self.events
                .push_back(Event::Log(format!("IKE_SA rekey refused: {n}")));
            self.events.push_back(Event::RekeyFailed {
                child: None,
                notify: n,
            });
            return self.start_next_op(now, rng);
        }
        let mut spi_r = None;
        let mut peer_pub = None;
        let mut nr = None;
        for p in inner {
            match &p.body {
                Body::Sa(props) => {
                    spi_r = props.iter().find_map(|pr| {
                        self.ike_proposal_group(pr)?;
                        <[u8; 8]>::try_from(pr.spi.as_slice())
                            .ok()
                            .map(u64::from_be_bytes)
                    })
                }
                Body::Ke { group, data } if group.0 == self.dh.id() => {
                    peer_pub = Some(data.clone())
                }
                Body::Nonce(n) => nr = Some(n.clone()),
                _ => {}
            }
        }
        let (Some(spi_r), Some(peer_pub), Some(nr)) = (spi_r, peer_pub, nr) else {
            return Err(Error::Unexpected("IKE SA rekey response incomplete"));
        };
        let g_ir = ours.ke.agree(&peer_pub).map_err(Error::Crypto)?;
        let our_low = std::cmp::min(ours.nonce.as_slice(), nr.as_slice()).to_vec();
        let mut next =
            self.successor(Role::Initiator, ours.spi, spi_r, ours.nonce, nr, &g_ir, rng)?;
        if let Some((mut p, peer_low)) = self.ike_collision.take() {
            // §2.18: the new IKE SA made with the lowest of the four nonces
            // is closed by whoever made it; the survivor inherits the CHILD
            // SAs and its initiator deletes the old IKE SA.
            if our_low < peer_low {
                self.events.push_back(Event::Log(format!(
                    "IKE_SA rekey collision lost (lowest nonce ours): deleting our redundant {:016x}_i {:016x}_r",
                    next.spi_i, next.spi_r
                )));
                self.hand_over(&mut p, rng);
                next.queue(now, Op::DeleteIke, rng)?;
                self.events.push_back(Event::IkeRekeyed(p));
                self.events.push_back(Event::IkeRedundant(Box::new(next)));
                return self.start_next_op(now, rng);
            }
            self.events.push_back(Event::Log(format!(
                "IKE_SA rekey collision won: the peer deletes its redundant {:016x}_i {:016x}_r",
                p.spi_i, p.spi_r
            )));
            self.events.push_back(Event::IkeRedundant(p));
        }
        self.hand_over(&mut next, rng);
        self.events.push_back(Event::IkeRekeyed(Box::new(next)));
        // The rekey's initiator deletes the old IKE SA (§2.18).
        self.ops.retain(|o| *o == Op::DeleteIke);
        self.ops.push_back(Op::DeleteIke);
        self.start_next_op(now, rng)
    }

    fn on_info_request(
        &mut self,
        datagram: &[u8],
        m: &Message,
        rng: &mut dyn Random,
    ) -> Result<(), Error> {
        let inner = self.unprotect(datagram, m)?;
        ike_wire::rules::check(ExchangeType::INFORMATIONAL, true, &inner).map_err(Error::Rules)?;
        let msg_id = m.header.message_id;
        self.next_msg_id = msg_id.wrapping_add(1);
        let mut out = Vec::new();
        let mut delete_ike = false;
        let mut deleted = Vec::new();
        for p in &inner {
            match &p.body {
                Body::Delete {
                    protocol: ProtocolId::IKE,
                    ..
                } => delete_ike = true,
                Body::Delete {
                    protocol: ProtocolId::ESP,
                    spis,
                    ..
                } => {
                    // The peer names its inbound SPIs (= our outbound); we
                    // answer with ours for the same CHILD SAs (§1.4.1).
                    let mut ours = Vec::new();
                    for spi in spis {
                        let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                            continue;
                        };
                        if let Some((i, o)) = self.remove_child_by_out(u32::from_be_bytes(b)) {
                            // §2.25.1: deleting it ourselves, we answer
                            // without its SPI; rekeying it, we forget that.
                            if self.closing_child(i) {
                                self.ops.retain(|op| *op != Op::DeleteChild(i));
                            } else {
                                ours.push(i.to_be_bytes().to_vec());
                            }
                            if let Some(r) = self.rekey_request_for(i) {
                                if self.pending_op() == Some(Op::CreateChild(r)) {
                                    if let Some(Some(req)) = self.child_reqs.get_mut(r) {
                                        req.orphaned = true;
                                    }
                                } else {
                                    self.ops.retain(|op| *op != Op::CreateChild(r));
                                    self.child_reqs[r] = None;
                                }
                            }
                            self.replaced.retain(|x| *x != i);
                            deleted.push((i, o));
                        }
                    }
                    if !ours.is_empty() {
                        out.push(Payload::new(
                            PayloadType::DELETE,
                            Body::Delete {
                                protocol: ProtocolId::ESP,
                                spi_size: 4,
                                spis: ours,
                            },
                        ));
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            out.clear();
            if let Some((mut p, _)) = self.ike_collision.take() {
                // The peer deletes the old IKE SA: its colliding rekey won.
                self.hand_over(&mut p, rng);
                self.events.push_back(Event::IkeRekeyed(p));
            }
            deleted.extend(std::mem::take(&mut self.children));
        }
        let bytes = self.protect(ExchangeType::INFORMATIONAL, true, msg_id, &out, rng)?;
        self.send_response(msg_id, bytes);
        for (i, o) in deleted {
            self.events.push_back(Event::ChildDeleted {
                spi_in: i,
                spi_out: o,
            });
        }
        if delete_ike {
            self.state = State::Closed;
            self.pending = None;
            self.events.push_back(Event::Deleted);
        } else if inner.is_empty() {
            self.events.push_back(Event::LivenessAnswered);
        }
        Ok(())
    }

    fn fail(&mut self, reason: &str, notify: Option<NotifyType>) {
        self.state = State::Closed;
        self.pending = None;
        self.events.push_back(Event::Failed {
            reason: reason.to_string(),
            notify,
        });
    }

    /// Retransmits a request whose timer expired, or declares the peer
    /// dead after the configured tries (RFC 7296 §2.1, §2.4).
    pub fn handle_timeout(&mut self, now: Instant) {
        let max = self.cfg.retransmit.max;
        let tries = self.cfg.retransmit.tries;
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if now < p.deadline {
            return;
        }
        if p.tries >= tries {
            self.pending = None;
            self.state = State::Closed;
            self.events.push_back(Event::PeerDead);
            return;
        }
        p.tries += 1;
        p.timeout = (p.timeout * 2).min(max);
        p.deadline = now + p.timeout;
        for b in &p.bytes {
            self.transmit.push_back(Transmit {
                dst: p.dst,
                data: b.clone(),
            });
        }
    }

    /// When [`IkeSa::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// State.
    pub fn state(&self) -> State {
        self.state
    }

    /// Role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// (SPIi, SPIr).
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    /// This IKE SA's line for Wireshark's `ikev2_decryption_table` (SPIs,
    /// SK_ei, SK_er, SK_ai, SK_ar, algorithm names). Secrets: only for an
    /// operator's explicit, opt-in key log (file mode 0600).
    pub fn wireshark_ikev2_line(&self) -> Option<String> {
        let k = self.keys.as_ref()?;
        let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let (encr, integ) = match self.cfg.ike.suite {
            Suite::AesCbc { key_len, integ } => (
                format!("AES-CBC-{} [RFC3602]", key_len * 8),
                match integ {
                    Integ::HmacSha256_128 => "HMAC_SHA2_256_128 [RFC4868]",
                    Integ::HmacSha384_192 => "HMAC_SHA2_384_192 [RFC4868]",
                    Integ::HmacSha512_256 => "HMAC_SHA2_512_256 [RFC4868]",
                },
            ),
            Suite::AesGcm16 { key_len } => (
                format!("AES-GCM-{} with 16 octet ICV [RFC5282]", key_len * 8),
                "NONE [RFC4306]",
            ),
        };
        Some(format!(
            "{:016x},{:016x},{},{},\"{encr}\",{},{},\"{integ}\"",
            self.spi_i,
            self.spi_r,
            h(&k.sk_ei),
            h(&k.sk_er),
            h(&k.sk_ai),
            h(&k.sk_ar)
        ))
    }

    /// Local and remote address of the IKE SA (after any NAT-T port move).
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// Whether NAT was detected (and NAT-T used).
    pub fn nat_detected(&self) -> bool {
        self.nat_detected
    }
}
