//! sluiced's configuration file (TOML). See docs/sluiced.md for every key.

use ike_crypto::ke::DhGroup;
use ike_crypto::prf::Prf;
use ike_crypto::sk::{Integ, Suite};
use ike_pki::{Credential, TrustStore};
use ike_proto::{
    EspProposal, Identity, IkeProposal, LocalAuth, RemoteAuth, Retransmit, Selector, SendCert,
};
use serde::Deserialize;
pub(crate) use sluice_api::model::{Connection, SendCertMode, StartAction};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The embedded default: the responder side of the demo and of the shared
/// strongSwan interop pair (site B, 198.18.0.2, protecting 198.19.2.0/24).
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    /// Daemon-wide settings.
    #[serde(default)]
    pub(crate) daemon: Daemon,
    /// IKE connections.
    #[serde(default, rename = "connection")]
    pub(crate) connections: Vec<Connection>,
    /// The REST API; absent = none.
    #[serde(default)]
    pub(crate) api: Option<Api>,
    /// The Prometheus exposition; absent = none.
    #[serde(default)]
    pub(crate) metrics: Option<Metrics>,
}

/// `[api]`: the REST API (HTTPS).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Api {
    /// Address and port (`127.0.0.1:7443`).
    pub(crate) listen: std::net::SocketAddr,
    /// Bearer token file; generated when missing. Default
    /// `<state_dir>/api-token`.
    #[serde(default)]
    pub(crate) token_file: Option<PathBuf>,
    /// Server certificate chain (PEM); without it a self-signed one is
    /// generated into the state directory.
    #[serde(default)]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Its key (PEM).
    #[serde(default)]
    pub(crate) tls_key: Option<PathBuf>,
    /// Clients with a certificate from this CA (PEM) need no token.
    #[serde(default)]
    pub(crate) client_ca: Option<PathBuf>,
    /// Largest request body in bytes.
    #[serde(default = "default_max_body")]
    pub(crate) max_body: usize,
}

fn default_max_body() -> usize {
    64 * 1024
}

/// `[metrics]`: Prometheus text exposition over plain HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Metrics {
    /// Address and port (`127.0.0.1:9469`); served at /metrics.
    pub(crate) listen: std::net::SocketAddr,
    /// Per-SA series (4 per SA plus drops); off for very large
    /// deployments, which chart the `sluice_esp_*` sums.
    #[serde(default = "default_true")]
    pub(crate) per_sa: bool,
}

fn default_true() -> bool {
    true
}

/// Daemon-wide settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Daemon {
    /// The shared-memory SA table sluice-dp reads.
    pub(crate) sa_table: PathBuf,
    /// SA slots when the table is created (two per CHILD SA).
    pub(crate) sa_capacity: u32,
    /// Policy slots when the table is created.
    pub(crate) policy_capacity: u32,
    /// Responder IKE SAs waiting for IKE_AUTH, at most (more are dropped).
    pub(crate) max_half_open: usize,
    /// Half-open IKE SAs from one address before its IKE_SA_INITs need a
    /// COOKIE; twice as many, and they are dropped.
    pub(crate) max_half_open_per_source: usize,
    /// Half-open IKE SAs from which IKE_SA_INIT gets a COOKIE challenge
    /// (RFC 7296 §2.6) before any state is kept; 0 = always.
    pub(crate) cookie_threshold: usize,
    /// Seconds between cookie secret rotations.
    pub(crate) cookie_rotate: u64,
    /// Seconds a half-open responder IKE SA may wait for IKE_AUTH before it
    /// is dropped (its slot freed).
    pub(crate) half_open_timeout: u64,
    /// Seconds the inbound SA of a rekeyed CHILD SA still accepts packets
    /// after the CHILD SA is deleted (packets in flight).
    pub(crate) delete_rekeyed_delay: u64,
    /// Abstract unix datagram socket (per network namespace) on which
    /// sluice-dp reports traffic hitting a trap policy.
    pub(crate) acquire_socket: String,
    /// Opt-in key log directory for Wireshark (ikev2_decryption_table and
    /// esp_sa, mode 0600). Secrets: leave unset in production.
    pub(crate) keylog: Option<PathBuf>,
    /// Connections and manually keyed SAs created through the API, and
    /// the API's generated certificate and token (mode 0700).
    pub(crate) state_dir: PathBuf,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            sa_table: PathBuf::from("/dev/shm/sluice/sa-table"),
            sa_capacity: 8192,
            policy_capacity: 4096,
            max_half_open: 1000,
            max_half_open_per_source: 20,
            cookie_threshold: 30,
            cookie_rotate: 120,
            half_open_timeout: 30,
            delete_rekeyed_delay: 5,
            acquire_socket: "sluice-acquire".into(),
            keylog: None,
            state_dir: PathBuf::from("/var/lib/sluice"),
        }
    }
}

/// Parses a strongSwan-style IKE proposal.
pub(crate) fn parse_ike_proposal(s: &str) -> Result<IkeProposal, String> {
    let mut suite = None;
    let mut integ = None;
    let mut prf = None;
    let mut groups = Vec::new();
    for t in s.split('-') {
        match t {
            "aes128" => suite = Some((16, false)),
            "aes256" => suite = Some((32, false)),
            "aes128gcm16" => suite = Some((16, true)),
            "aes256gcm16" => suite = Some((32, true)),
            "sha256" => integ = Some(Integ::HmacSha256_128),
            "sha384" => integ = Some(Integ::HmacSha384_192),
            "sha512" => integ = Some(Integ::HmacSha512_256),
            "prfsha256" => prf = Some(Prf::HmacSha256),
            "prfsha384" => prf = Some(Prf::HmacSha384),
            "prfsha512" => prf = Some(Prf::HmacSha512),
            "x25519" | "curve25519" => groups.push(DhGroup::Curve25519),
            "ecp256" => groups.push(DhGroup::Ecp256),
            "ecp384" => groups.push(DhGroup::Ecp384),
            "modp2048" => groups.push(DhGroup::Modp2048),
            "modp3072" => groups.push(DhGroup::Modp3072),
            other => {
                return Err(format!(
                    "IKE proposal {s:?}: unknown or unsupported algorithm {other:?}"
                ))
            }
        }
    }
    let (key_len, gcm) =
        suite.ok_or_else(|| format!("IKE proposal {s:?}: no encryption algorithm"))?;
    if groups.is_empty() {
        return Err(format!("IKE proposal {s:?}: no key exchange group"));
    }
    let suite = if gcm {
        Suite::AesGcm16 { key_len }
    } else {
        Suite::AesCbc {
            key_len,
            integ: integ.ok_or_else(|| {
                format!("IKE proposal {s:?}: AES-CBC needs an integrity algorithm")
            })?,
        }
    };
    // As in strongSwan: without a prf token the PRF follows the integrity
    // algorithm (and defaults to SHA-256 for AEAD).
    let prf = prf.unwrap_or(match integ {
        Some(Integ::HmacSha384_192) => Prf::HmacSha384,
        Some(Integ::HmacSha512_256) => Prf::HmacSha512,
        _ => Prf::HmacSha256,
    });
    Ok(IkeProposal { suite, prf, groups })
}

/// Parses ESP proposals, strongSwan syntax, comma-separated, preferred
/// first: `aes128gcm16`, `aes256gcm16`, `aes128-sha256`, `aes256-sha256`,
/// `chacha20poly1305` (an optional `-noesn` suffix is accepted).
/// DH group tokens as strongSwan writes them.
fn dh_group(t: &str) -> Option<DhGroup> {
    match t {
        "x25519" | "curve25519" => Some(DhGroup::Curve25519),
        "ecp256" => Some(DhGroup::Ecp256),
        "ecp384" => Some(DhGroup::Ecp384),
        "modp2048" => Some(DhGroup::Modp2048),
        "modp3072" => Some(DhGroup::Modp3072),
        _ => None,
    }
}

/// The ESP proposal without a trailing DH group token (PFS).
fn strip_dh(p: &str) -> &str {
    let p = p.trim().trim_end_matches("-noesn");
    match p.rsplit_once('-') {
        Some((head, g)) if dh_group(g).is_some() => head,
        _ => p,
    }
}

/// The PFS group of an ESP proposal string (`aes128gcm16-ecp256`): the
/// group named by its first proposal that names one (RFC 7296 §1.3.1).
pub(crate) fn parse_pfs(s: &str) -> Result<Option<DhGroup>, String> {
    Ok(s.split(',').find_map(|p| {
        let p = p.trim().trim_end_matches("-noesn");
        p.rsplit_once('-').and_then(|(_, g)| dh_group(g))
    }))
}

pub(crate) fn parse_esp_proposal(s: &str) -> Result<Vec<EspProposal>, String> {
    s.split(',')
        .map(|p| match strip_dh(p) {
            "aes128gcm16" => Ok(EspProposal::AesGcm16 { bits: 128 }),
            "aes256gcm16" => Ok(EspProposal::AesGcm16 { bits: 256 }),
            "aes128-sha256" => Ok(EspProposal::AesCbcHmacSha256 { bits: 128 }),
            "aes256-sha256" => Ok(EspProposal::AesCbcHmacSha256 { bits: 256 }),
            "chacha20poly1305" => Ok(EspProposal::ChaCha20Poly1305),
            other => Err(format!(
                "ESP proposal {other:?}: supported are aes128gcm16, aes256gcm16, aes128-sha256, aes256-sha256, chacha20poly1305, each optionally followed by a PFS group (-x25519, -ecp256, -ecp384, -modp2048, -modp3072)"
            )),
        })
        .collect()
}

/// Parses `ADDR/LEN`.
pub(crate) fn parse_cidr(s: &str) -> Result<Selector, String> {
    let (a, l) = s
        .split_once('/')
        .unwrap_or((s, if s.contains(':') { "128" } else { "32" }));
    let addr: IpAddr = a.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let len: u8 = l.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("{s:?}: prefix longer than {max}"));
    }
    Ok(Selector::subnet(addr, len))
}

/// An identity as strongSwan reads one: an IP address, a DN when it
/// contains `=` (`C=CH, O=Sluice, CN=gw`), an email address when it
/// contains `@`, else an FQDN.
fn identity(s: &str) -> Result<Identity, String> {
    if let Ok(a) = s.parse::<IpAddr>() {
        Ok(Identity::Addr(a))
    } else if s.contains('=') {
        ike_proto::dn::encode(s)
            .map(Identity::Dn)
            .map_err(|e| format!("identity {s:?}: {e}"))
    } else if s.contains('@') {
        Ok(Identity::Email(s.to_string()))
    } else {
        Ok(Identity::Fqdn(s.to_string()))
    }
}

/// Longest time any lifetime or interval may be (ten years): larger values
/// would overflow the clock arithmetic.
const MAX_SECONDS: u64 = 10 * 365 * 86400;

/// Numbers the daemon adds to clocks or multiplies: bounded.
fn check_bounds(c: &Connection) -> Result<(), String> {
    let secs = [
        ("dpd_delay", c.dpd_delay),
        ("lifetime", c.lifetime),
        ("rekey_time", c.rekey_time.unwrap_or(0)),
        ("ike_rekey_time", c.ike_rekey_time),
        ("reauth_time", c.reauth_time),
    ];
    for (k, v) in secs {
        if v > MAX_SECONDS {
            return Err(format!(
                "{k} = {v}: at most {MAX_SECONDS} seconds (ten years)"
            ));
        }
    }
    if c.retransmit_initial_ms > 60_000 {
        return Err("retransmit_initial_ms: at most 60000".into());
    }
    if c.retransmit_tries > 100 {
        return Err("retransmit_tries: at most 100".into());
    }
    if c.fragment_size > 65_535 {
        return Err("fragment_size: at most 65535".into());
    }
    if c.children.len() > 64
        || c.children
            .iter()
            .any(|ch| ch.local_ts.len() * ch.remote_ts.len() > 256)
    {
        return Err("at most 64 children of at most 256 selector pairs each".into());
    }
    Ok(())
}

/// A file a connection names: a regular file of at most 1 MiB.
fn check_file(f: &std::path::Path) -> Result<(), String> {
    let m = std::fs::metadata(f).map_err(|e| format!("{}: {e}", f.display()))?;
    if !m.is_file() {
        return Err(format!("{}: not a regular file", f.display()));
    }
    if m.len() > 1 << 20 {
        return Err(format!("{}: larger than 1 MiB", f.display()));
    }
    Ok(())
}

/// CHILD SA lifetimes beyond the rekey time (RFC 4301 §4.4.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChildLife {
    /// Deleted this long after installation unless rekeyed.
    pub(crate) hard: Option<Duration>,
    /// Bytes (either direction) at which it is deleted; rekeyed at 9/10.
    pub(crate) hard_bytes: u64,
    /// Packets likewise.
    pub(crate) hard_packets: u64,
}

/// A connection ready for ike-proto.
pub(crate) struct Resolved {
    /// The definition it was resolved from.
    pub(crate) spec: Connection,
    /// Name.
    pub(crate) name: String,
    /// Our address.
    pub(crate) local: IpAddr,
    /// The peer's.
    pub(crate) remote: IpAddr,
    /// Start action.
    pub(crate) start: StartAction,
    /// DPD interval.
    pub(crate) dpd: Option<Duration>,
    /// CHILD SA rekey interval (soft lifetime in time).
    pub(crate) rekey_time: Option<Duration>,
    /// CHILD SA lifetimes: hard seconds, and soft/hard bytes and packets
    /// (0 = none; soft = 9/10 of hard).
    pub(crate) life: ChildLife,
    /// IKE SA rekey interval.
    pub(crate) ike_rekey_time: Option<Duration>,
    /// IKE SA reauthentication interval (replaces the rekey when set).
    pub(crate) reauth_time: Option<Duration>,
    /// The protocol configuration.
    pub(crate) ike: ike_proto::Config,
}

impl File {
    /// Parses and checks a configuration.
    pub(crate) fn parse(text: &str) -> Result<File, String> {
        toml::from_str(text).map_err(|e| format!("configuration: {e}"))
    }

    /// Every connection, validated and resolved.
    pub(crate) fn resolve(&self) -> Result<Vec<Resolved>, String> {
        let mut out: Vec<Resolved> = Vec::new();
        for c in &self.connections {
            if out.iter().any(|r| r.name == c.name) {
                return Err(format!("connection {:?} is defined twice", c.name));
            }
            out.push(resolve(c)?);
        }
        Ok(out)
    }
}

/// One connection, validated and resolved (files it names are read).
pub(crate) fn resolve(c: &Connection) -> Result<Resolved, String> {
    {
        {
            let ctx = |e: String| format!("connection {:?}: {e}", c.name);
            check_bounds(c).map_err(ctx)?;
            // Files it names must be regular and small: the API can name
            // any path, and reading /dev/zero or a FIFO must not be possible.
            let files = c.psk_file.iter().chain(&c.cert).chain(&c.key);
            for f in files.chain(&c.ca_certs).chain(&c.crls) {
                check_file(f).map_err(ctx)?;
            }
            let psk = match (&c.psk, &c.psk_file) {
                (Some(p), None) => Some(p.clone().into_bytes()),
                (None, Some(f)) => Some(
                    std::fs::read(f)
                        .map(|mut v| {
                            while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
                                v.pop();
                            }
                            v
                        })
                        .map_err(|e| ctx(format!("psk_file {}: {e}", f.display())))?,
                ),
                (None, None) => None,
                _ => return Err(ctx("psk and psk_file are exclusive".into())),
            }
            .map(zeroize::Zeroizing::new);
            if psk.as_ref().is_some_and(|p| p.len() < 16) {
                return Err(ctx("pre-shared key shorter than 16 bytes".into()));
            }
            let need_psk = || {
                psk.clone().ok_or_else(|| {
                    ctx(
                        "a pre-shared key (psk or psk_file) is required unless both \
                         cert/key and ca_certs are set"
                            .into(),
                    )
                })
            };
            let credential = match (&c.cert, &c.key) {
                (Some(cert), Some(key)) => Some(Arc::new(
                    Credential::load(cert, key)
                        .map_err(|e| ctx(e.to_string()))?
                        .with_rsa_pss(c.rsa_pss),
                )),
                (None, None) => None,
                _ => return Err(ctx("cert and key go together".into())),
            };
            let local_id = match (&c.local_id, &credential) {
                (Some(id), _) => identity(id).map_err(ctx)?,
                (None, Some(cred)) => Identity::Dn(cred.leaf().subject_der.clone()),
                (None, None) => return Err(ctx("local_id is required".into())),
            };
            let local_auth = match &credential {
                Some(cred) => {
                    if !local_id.in_cert(cred.leaf()) {
                        return Err(ctx(format!(
                            "local_id '{local_id}' is not in the certificate \"{}\" \
                             (subjectAltName {:?} {:?} {:?}); use its subject or a SAN",
                            cred.leaf().subject,
                            cred.leaf().dns,
                            cred.leaf().emails,
                            cred.leaf().ips
                        )));
                    }
                    LocalAuth::PubKey(cred.clone())
                }
                None => LocalAuth::Psk(need_psk()?),
            };
            let remote_auth = if c.ca_certs.is_empty() {
                if !c.crls.is_empty() {
                    return Err(ctx("crls need ca_certs".into()));
                }
                RemoteAuth::Psk(need_psk()?)
            } else {
                let cas: Vec<&std::path::Path> = c.ca_certs.iter().map(|p| p.as_path()).collect();
                let crls: Vec<&std::path::Path> = c.crls.iter().map(|p| p.as_path()).collect();
                RemoteAuth::PubKey(Arc::new(
                    TrustStore::load(&cas, &crls).map_err(|e| ctx(e.to_string()))?,
                ))
            };
            if c.local_addr.is_ipv4() != c.remote_addr.is_ipv4() {
                return Err(ctx(
                    "local_addr and remote_addr of different families".into()
                ));
            }
            if c.children.is_empty() {
                return Err(ctx("at least one [[connection.child]] is required".into()));
            }
            let mut children = Vec::new();
            for ch in &c.children {
                let cctx = |e: String| ctx(format!("child {:?}: {e}", ch.name));
                if ch.local_ts.is_empty() || ch.remote_ts.is_empty() {
                    return Err(cctx("local_ts and remote_ts must not be empty".into()));
                }
                let mut local_ts = Vec::new();
                for t in &ch.local_ts {
                    local_ts.push(parse_cidr(t).map_err(cctx)?);
                }
                let mut remote_ts = Vec::new();
                for t in &ch.remote_ts {
                    remote_ts.push(parse_cidr(t).map_err(cctx)?);
                }
                children.push(ike_proto::ChildConfig {
                    name: ch.name.clone(),
                    local_ts,
                    remote_ts,
                });
            }
            if !sluice_api::model::valid_name(&c.name) {
                return Err(ctx("a name is 1-64 letters, digits, '-', '_' or '.'".into()));
            }
            Ok(Resolved {
                spec: c.clone(),
                name: c.name.clone(),
                local: c.local_addr,
                remote: c.remote_addr,
                start: c.start_action,
                dpd: (c.dpd_delay > 0).then(|| Duration::from_secs(c.dpd_delay)),
                rekey_time: match c.rekey_time {
                    Some(0) => None,
                    Some(t) => Some(Duration::from_secs(t)),
                    None => (c.lifetime > 0).then(|| Duration::from_secs(c.lifetime * 9 / 10)),
                },
                life: ChildLife {
                    hard: (c.lifetime > 0).then(|| Duration::from_secs(c.lifetime)),
                    hard_bytes: c.lifetime_bytes,
                    hard_packets: c.lifetime_packets,
                },
                ike_rekey_time: (c.ike_rekey_time > 0 && c.reauth_time == 0)
                    .then(|| Duration::from_secs(c.ike_rekey_time)),
                reauth_time: (c.reauth_time > 0).then(|| Duration::from_secs(c.reauth_time)),
                ike: ike_proto::Config {
                    local_id,
                    remote_id: identity(&c.remote_id).map_err(ctx)?,
                    local_auth,
                    remote_auth,
                    send_cert: match c.send_cert {
                        SendCertMode::IfAsked => SendCert::IfAsked,
                        SendCertMode::Always => SendCert::Always,
                        SendCertMode::Never => SendCert::Never,
                    },
                    ike: parse_ike_proposal(&c.ike_proposal).map_err(ctx)?,
                    esp: parse_esp_proposal(&c.esp_proposal).map_err(ctx)?,
                    children,
                    pfs: parse_pfs(&c.esp_proposal).map_err(ctx)?,
                    retransmit: Retransmit {
                        initial: Duration::from_millis(c.retransmit_initial_ms.max(10)),
                        max: Duration::from_secs(64),
                        tries: c.retransmit_tries.max(1),
                    },
                    fragment_size: match c.fragment_size {
                        0 => None,
                        n if n < 576 => {
                            return Err(ctx(format!(
                                "fragment_size {n} is below 576 (the IPv4 minimum MTU); 0 turns fragmentation off"
                            )))
                        }
                        n => Some(n),
                    },
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_proposals_with_a_pfs_group() {
        let v = parse_esp_proposal("aes128gcm16-ecp256, aes256-sha256-noesn").unwrap();
        assert_eq!(
            v,
            vec![
                EspProposal::AesGcm16 { bits: 128 },
                EspProposal::AesCbcHmacSha256 { bits: 256 }
            ]
        );
        assert_eq!(
            parse_pfs("aes128gcm16-ecp256, aes256-sha256").unwrap(),
            Some(DhGroup::Ecp256)
        );
        assert_eq!(parse_pfs("aes128gcm16").unwrap(), None);
        assert_eq!(
            parse_pfs("aes256gcm16-modp3072").unwrap(),
            Some(DhGroup::Modp3072)
        );
        assert!(parse_esp_proposal("aes128gcm16-ecp999").is_err());
    }

    #[test]
    fn default_config_is_valid() {
        let f = File::parse(DEFAULT_CONFIG).unwrap();
        let r = f.resolve().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].ike.ike.groups,
            vec![DhGroup::Curve25519, DhGroup::Ecp256]
        );
    }

    #[test]
    fn proposals() {
        let p = parse_ike_proposal("aes256gcm16-prfsha384-ecp384").unwrap();
        assert_eq!(p.suite, Suite::AesGcm16 { key_len: 32 });
        assert_eq!(p.prf, Prf::HmacSha384);
        let p = parse_ike_proposal("aes128-sha256-modp3072-modp2048").unwrap();
        assert_eq!(p.groups, vec![DhGroup::Modp3072, DhGroup::Modp2048]);
        let p = parse_ike_proposal("aes128-sha512-x25519").unwrap();
        assert_eq!(p.prf, Prf::HmacSha512);
        assert!(parse_ike_proposal("aes128-x25519")
            .unwrap_err()
            .contains("integrity"));
        assert!(parse_ike_proposal("des-sha1-modp768")
            .unwrap_err()
            .contains("\"des\""));
        assert!(parse_esp_proposal("3des").is_err());
        assert!(parse_cidr("198.19.0.0/33").is_err());
        assert_eq!(
            parse_cidr("2001:db8::1").unwrap().start,
            parse_cidr("2001:db8::1/128").unwrap().end
        );
    }

    /// deploy/sluiced.toml uses only keys that exist (its files are
    /// the operator's, so it is parsed, not resolved).
    #[test]
    fn the_deploy_example_parses() {
        let f = File::parse(include_str!("../../../deploy/sluiced.toml")).unwrap();
        assert_eq!(f.connections.len(), 2);
        assert!(f.api.is_some() && f.metrics.is_some());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(File::parse("[[connection]]\nname = 1")
            .unwrap_err()
            .contains("configuration"));
        let f = File::parse(
            &DEFAULT_CONFIG.replace("psk = \"sluice-interop-psk-0123456789\"", "psk = \"short\""),
        )
        .unwrap();
        assert!(f.resolve().err().unwrap().contains("shorter than 16"));
        assert!(
            File::parse("[daemon]\nbogus = 1").is_err(),
            "unknown keys are refused"
        );
    }
}
