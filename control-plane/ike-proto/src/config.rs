//! What an IKE SA is configured with.

use ike_crypto::ke::DhGroup;
use ike_crypto::prf::Prf;
use ike_crypto::sk::Suite;
use ike_pki::{CertInfo, Credential, TrustStore};
use ike_wire::{IdType, TrafficSelector, TsType};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// An IKE identity (RFC 7296 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// ID_FQDN.
    Fqdn(String),
    /// ID_RFC822_ADDR.
    Email(String),
    /// ID_IPV4_ADDR / ID_IPV6_ADDR.
    Addr(IpAddr),
    /// ID_DER_ASN1_DN (DER bytes).
    Dn(Vec<u8>),
}

impl Identity {
    /// Type and data for the ID payload.
    pub fn encode(&self) -> (IdType, Vec<u8>) {
        match self {
            Identity::Fqdn(s) => (IdType::FQDN, s.as_bytes().to_vec()),
            Identity::Email(s) => (IdType::RFC822_ADDR, s.as_bytes().to_vec()),
            Identity::Addr(IpAddr::V4(a)) => (IdType::IPV4_ADDR, a.octets().to_vec()),
            Identity::Addr(IpAddr::V6(a)) => (IdType::IPV6_ADDR, a.octets().to_vec()),
            Identity::Dn(d) => (IdType::DER_ASN1_DN, d.clone()),
        }
    }

    /// Whether a received ID payload names this identity: FQDNs and email
    /// addresses ignore ASCII case (DNS names do), DNs compare attribute by
    /// attribute (see [`crate::dn::equal`]), addresses byte for byte.
    pub fn matches(&self, id_type: IdType, data: &[u8]) -> bool {
        match self {
            Identity::Fqdn(s) => id_type == IdType::FQDN && s.as_bytes().eq_ignore_ascii_case(data),
            Identity::Email(s) => {
                id_type == IdType::RFC822_ADDR && s.as_bytes().eq_ignore_ascii_case(data)
            }
            Identity::Dn(d) => id_type == IdType::DER_ASN1_DN && crate::dn::equal(d, data),
            Identity::Addr(_) => {
                let (t, mine) = self.encode();
                t == id_type && mine == data
            }
        }
    }
}

impl Identity {
    /// Whether a certificate carries this identity (RFC 4945 §3.1): a DN
    /// as its subject, anything else in its subjectAltName.
    pub fn in_cert(&self, cert: &CertInfo) -> bool {
        match self {
            Identity::Dn(d) => crate::dn::equal(d, &cert.subject_der),
            Identity::Fqdn(s) => cert.dns.iter().any(|n| n.eq_ignore_ascii_case(s)),
            Identity::Email(s) => cert.emails.iter().any(|n| n.eq_ignore_ascii_case(s)),
            Identity::Addr(a) => cert.ips.contains(a),
        }
    }

    /// The identity an ID payload names, if it is a kind we know.
    pub fn from_payload(id_type: IdType, data: &[u8]) -> Option<Identity> {
        let text = || String::from_utf8(data.to_vec()).ok();
        match id_type {
            IdType::FQDN => text().map(Identity::Fqdn),
            IdType::RFC822_ADDR => text().map(Identity::Email),
            IdType::IPV4_ADDR => <[u8; 4]>::try_from(data)
                .ok()
                .map(|a| Identity::Addr(IpAddr::from(a))),
            IdType::IPV6_ADDR => <[u8; 16]>::try_from(data)
                .ok()
                .map(|a| Identity::Addr(IpAddr::from(a))),
            IdType::DER_ASN1_DN => Some(Identity::Dn(data.to_vec())),
            _ => None,
        }
    }
}

/// How we prove our identity (RFC 7296 §2.15).
#[derive(Clone)]
pub enum LocalAuth {
    /// A pre-shared key (AUTH method 2).
    Psk(Zeroizing<Vec<u8>>),
    /// A signature with our certificate's key (methods 9/10 or RFC 7427).
    PubKey(Arc<Credential>),
}

/// How the peer must prove its identity.
#[derive(Clone)]
pub enum RemoteAuth {
    /// The same pre-shared key.
    Psk(Zeroizing<Vec<u8>>),
    /// A signature by a certificate that validates to these CAs and
    /// carries the peer's identity.
    PubKey(Arc<TrustStore>),
}

/// When we send our certificate (strongSwan's `send_cert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendCert {
    /// When the peer sent a CERTREQ (RFC 7296 §3.7 allows it anyway).
    #[default]
    IfAsked,
    /// Always.
    Always,
    /// Never: the peer must have it already.
    Never,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Fqdn(s) | Identity::Email(s) => f.write_str(s),
            Identity::Addr(a) => write!(f, "{a}"),
            Identity::Dn(d) => match crate::dn::to_string(d) {
                Some(s) => write!(f, "\"{s}\""),
                None => write!(f, "DN({} bytes, not a Name)", d.len()),
            },
        }
    }
}

/// One IKE proposal: encryption (+ integrity), PRF, DH groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    /// SK payload protection.
    pub suite: Suite,
    /// PRF.
    pub prf: Prf,
    /// Acceptable key exchange groups, preferred first: all are offered,
    /// the first is guessed in the initiator's KE payload, and a responder
    /// picks the first of its own that the initiator offers.
    pub groups: Vec<DhGroup>,
}

/// An ESP transform for CHILD SAs (RFC 7296 §3.3.2); ESN off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspProposal {
    /// ENCR_AES_GCM_16 (RFC 4106), 128 or 256-bit key.
    AesGcm16 {
        /// Key bits.
        bits: u16,
    },
    /// ENCR_AES_CBC with AUTH_HMAC_SHA2_256_128 (RFC 3602, RFC 4868).
    AesCbcHmacSha256 {
        /// Key bits.
        bits: u16,
    },
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    ChaCha20Poly1305,
}

impl EspProposal {
    /// KEYMAT bytes of the encryption key per direction (with the 4-byte
    /// salt of AEAD transforms, RFC 7296 §2.17).
    pub fn encr_len(self) -> usize {
        match self {
            EspProposal::AesGcm16 { bits } => usize::from(bits / 8) + 4,
            EspProposal::AesCbcHmacSha256 { bits } => usize::from(bits / 8),
            EspProposal::ChaCha20Poly1305 => 36,
        }
    }

    /// KEYMAT bytes of the integrity key per direction.
    pub fn integ_len(self) -> usize {
        match self {
            EspProposal::AesCbcHmacSha256 { .. } => 32,
            _ => 0,
        }
    }

    /// IANA (encryption ID, key bits, integrity ID).
    pub fn ids(self) -> (u16, u16, u16) {
        match self {
            EspProposal::AesGcm16 { bits } => (20, bits, 0),
            EspProposal::AesCbcHmacSha256 { bits } => (12, bits, 12),
            EspProposal::ChaCha20Poly1305 => (28, 256, 0),
        }
    }

    pub(crate) fn transforms(self) -> Vec<ike_wire::Transform> {
        use ike_wire::{Transform, TransformType};
        let (e, bits, i) = self.ids();
        let mut t = vec![match self {
            EspProposal::ChaCha20Poly1305 => Transform::new(TransformType::ENCR, e),
            _ => Transform::with_key_len(TransformType::ENCR, e, bits),
        }];
        if i != 0 {
            t.push(Transform::new(TransformType::INTEG, i));
        }
        t.push(Transform::new(TransformType::ESN, 0));
        t
    }

    /// Whether an ESP proposal offers this transform (and ESN off).
    pub(crate) fn offered_by(self, p: &ike_wire::Proposal) -> bool {
        use ike_wire::TransformType;
        let (e, bits, i) = self.ids();
        let encr = p.transforms.iter().any(|t| {
            t.ttype == TransformType::ENCR
                && t.id == e
                && (matches!(self, EspProposal::ChaCha20Poly1305) || t.key_len() == Some(bits))
        });
        let integ = i == 0
            || p.transforms
                .iter()
                .any(|t| t.ttype == TransformType::INTEG && t.id == i);
        let no_esn = p
            .transforms
            .iter()
            .any(|t| t.ttype == TransformType::ESN && t.id == 0)
            || !p.transforms.iter().any(|t| t.ttype == TransformType::ESN);
        p.protocol == ike_wire::ProtocolId::ESP && p.spi.len() == 4 && encr && integ && no_esn
    }

    /// strongSwan-style name, for logs.
    pub fn name(self) -> String {
        match self {
            EspProposal::AesGcm16 { bits } => format!("ESP:AES_GCM_16_{bits}/NO_EXT_SEQ"),
            EspProposal::AesCbcHmacSha256 { bits } => {
                format!("ESP:AES_CBC_{bits}/HMAC_SHA2_256_128/NO_EXT_SEQ")
            }
            EspProposal::ChaCha20Poly1305 => "ESP:CHACHA20_POLY1305/NO_EXT_SEQ".into(),
        }
    }
}

/// An IPv4/IPv6 range with protocol and ports (RFC 7296 §3.13.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
    /// IP protocol, 0 = any.
    pub proto: u8,
    /// Port range.
    pub ports: (u16, u16),
}

impl Selector {
    /// A whole subnet, any protocol and port.
    pub fn subnet(addr: IpAddr, prefix: u8) -> Selector {
        match addr {
            IpAddr::V4(a) => {
                let m = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(prefix.min(32)))
                };
                let s = u32::from(a) & m;
                Selector {
                    start: IpAddr::V4(s.into()),
                    end: IpAddr::V4((s | !m).into()),
                    proto: 0,
                    ports: (0, 65535),
                }
            }
            IpAddr::V6(a) => {
                let m = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(prefix.min(128)))
                };
                let s = u128::from(a) & m;
                Selector {
                    start: IpAddr::V6(s.into()),
                    end: IpAddr::V6((s | !m).into()),
                    proto: 0,
                    ports: (0, 65535),
                }
            }
        }
    }

    pub(crate) fn to_wire(&self) -> TrafficSelector {
        let (t, s, e) = match (self.start, self.end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => (
                TsType::IPV4_ADDR_RANGE,
                s.octets().to_vec(),
                e.octets().to_vec(),
            ),
            (IpAddr::V6(s), IpAddr::V6(e)) => (
                TsType::IPV6_ADDR_RANGE,
                s.octets().to_vec(),
                e.octets().to_vec(),
            ),
            (IpAddr::V4(s), _) => (
                TsType::IPV4_ADDR_RANGE,
                s.octets().to_vec(),
                s.octets().to_vec(),
            ),
            (IpAddr::V6(s), _) => (
                TsType::IPV6_ADDR_RANGE,
                s.octets().to_vec(),
                s.octets().to_vec(),
            ),
        };
        TrafficSelector {
            ts_type: t,
            ip_proto: self.proto,
            start_port: self.ports.0,
            end_port: self.ports.1,
            start_addr: s,
            end_addr: e,
        }
    }

    pub(crate) fn from_wire(t: &TrafficSelector) -> Option<Selector> {
        let addr = |b: &[u8]| -> Option<IpAddr> {
            match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
                _ => None,
            }
        };
        Some(Selector {
            start: addr(&t.start_addr)?,
            end: addr(&t.end_addr)?,
            proto: t.ip_proto,
            ports: (t.start_port, t.end_port),
        })
    }

    /// Narrows `offered` selectors to our policy `ours` (RFC 7296 §2.9): every
    /// non-empty intersection.
    pub fn narrow(offered: &[Selector], ours: &[Selector]) -> Vec<Selector> {
        offered
            .iter()
            .flat_map(|o| ours.iter().filter_map(|c| o.intersect(c)))
            .collect()
    }

    /// The intersection with `other` (RFC 7296 §2.9 narrowing), if any.
    pub fn intersect(&self, other: &Selector) -> Option<Selector> {
        let key = |a: IpAddr| match a {
            IpAddr::V4(v) => (4u8, u128::from(u32::from(v))),
            IpAddr::V6(v) => (6u8, u128::from(v)),
        };
        let (f1, s1) = key(self.start);
        let (_, e1) = key(self.end);
        let (f2, s2) = key(other.start);
        let (_, e2) = key(other.end);
        if f1 != f2 {
            return None;
        }
        let (s, e) = (s1.max(s2), e1.min(e2));
        let proto = match (self.proto, other.proto) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let ports = (
            self.ports.0.max(other.ports.0),
            self.ports.1.min(other.ports.1),
        );
        if s > e || ports.0 > ports.1 {
            return None;
        }
        let mk = |v: u128| {
            if f1 == 4 {
                IpAddr::V4((v as u32).into())
            } else {
                IpAddr::V6(v.into())
            }
        };
        Some(Selector {
            start: mk(s),
            end: mk(e),
            proto,
            ports,
        })
    }
}

impl std::fmt::Display for Selector {
    /// `198.19.2.0/24`, a range `a-b` when not a prefix, then `[proto/ports]`
    /// when not "any".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = |a: IpAddr| match a {
            IpAddr::V4(v) => (32u32, u128::from(u32::from(v))),
            IpAddr::V6(v) => (128u32, u128::from(v)),
        };
        let ((w, s), (_, e)) = (key(self.start), key(self.end));
        let size = e.wrapping_sub(s).wrapping_add(1);
        let full = w == 128 && s == 0 && e == u128::MAX;
        if full || (e >= s && size.is_power_of_two() && s & (size - 1) == 0) {
            let host = if full { 128 } else { size.trailing_zeros() };
            write!(f, "{}/{}", self.start, w - host)?;
        } else {
            write!(f, "{}-{}", self.start, self.end)?;
        }
        if self.proto != 0 || self.ports != (0, 65535) {
            write!(f, "[{}/{}-{}]", self.proto, self.ports.0, self.ports.1)?;
        }
        Ok(())
    }
}

/// Retransmission of requests (RFC 7296 §2.1): operators' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmit {
    /// First timeout.
    pub initial: Duration,
    /// Upper bound of the doubling timeout.
    pub max: Duration,
    /// Transmissions before the peer is declared dead.
    pub tries: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(64),
            tries: 8,
        }
    }
}

/// One connection's configuration.
#[derive(Clone)]
pub struct Config {
    /// Our identity.
    pub local_id: Identity,
    /// The identity the peer must prove.
    pub remote_id: Identity,
    /// How we authenticate.
    pub local_auth: LocalAuth,
    /// How the peer must.
    pub remote_auth: RemoteAuth,
    /// When our certificate chain goes into IKE_AUTH.
    pub send_cert: SendCert,
    /// IKE proposal.
    pub ike: IkeProposal,
    /// Acceptable ESP transforms for CHILD SAs, preferred first: all are
    /// offered; a responder picks the first of its own the peer offers.
    pub esp: Vec<EspProposal>,
    /// The CHILD SAs this connection allows, each with its own pair of
    /// selector sets (RFC 7296 §2.9): several for policy-based tunnels (one
    /// per subnet pair, as with an ACL), one `0.0.0.0/0` + `::/0` child for
    /// a route-based tunnel. The first is requested in IKE_AUTH.
    pub children: Vec<ChildConfig>,
    /// Perfect forward secrecy for CHILD SAs created or rekeyed with
    /// CREATE_CHILD_SA (RFC 7296 §1.3.1): this group's key exchange is
    /// required and offered; `None` offers none and still accepts a peer's.
    /// The first CHILD SA (in IKE_AUTH) never has one.
    pub pfs: Option<DhGroup>,
    /// Request retransmission.
    pub retransmit: Retransmit,
    /// IKEv2 fragmentation (RFC 7383): `Some(size)` announces support,
    /// and once both ends did, a protected message whose IP datagram would
    /// exceed `size` bytes goes out in fragments of at most that size.
    /// Fragments are accepted only when announced.
    pub fragment_size: Option<usize>,
}

/// One configured CHILD SA: what our side protects and what the peer's
/// side may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildConfig {
    /// Name used in logs (`net`, `voice`...).
    pub name: String,
    /// Our side's traffic selectors.
    pub local_ts: Vec<Selector>,
    /// The peer's side.
    pub remote_ts: Vec<Selector>,
}

impl ChildConfig {
    /// Narrows a peer's proposal (its TSi, TSr as the initiator sent them)
    /// to this child (RFC 7296 §2.9): `(tsi, tsr)`, both non-empty, or None
    /// when either side has nothing in common with it.
    pub fn narrow(
        &self,
        tsi: &[Selector],
        tsr: &[Selector],
    ) -> Option<(Vec<Selector>, Vec<Selector>)> {
        let i = Selector::narrow(tsi, &self.remote_ts);
        let r = Selector::narrow(tsr, &self.local_ts);
        (!i.is_empty() && !r.is_empty()).then_some((i, r))
    }
}

impl Config {
    /// The first configured child that accepts the peer's selectors, and the
    /// narrowed selectors: children are never mixed, so a peer cannot pair
    /// one child's local subnet with another's remote subnet.
    pub fn select_child(
        &self,
        tsi: &[Selector],
        tsr: &[Selector],
    ) -> Option<(&ChildConfig, Vec<Selector>, Vec<Selector>)> {
        self.children
            .iter()
            .find_map(|c| c.narrow(tsi, tsr).map(|(i, r)| (c, i, r)))
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("ike", &self.ike)
            .field("esp", &self.esp)
            .finish_non_exhaustive()
    }
}
