//! What the API reads and writes. A connection is the same object in the
//! configuration file (TOML) and in the API (JSON): one definition, so the
//! two cannot drift apart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use utoipa::ToSchema;

/// What to do with a connection when it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StartAction {
    /// Wait for the peer.
    #[default]
    None,
    /// Initiate at once.
    Initiate,
    /// Install the children's policies without SAs; the data plane reports
    /// traffic that hits them (an acquire) and sluiced initiates then.
    Trap,
}

/// When to send our certificate.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendCertMode {
    /// When the peer asked with a CERTREQ.
    #[default]
    IfAsked,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// One IKE peer: a `[[connection]]` of the configuration file, or a
/// connection created through the API. docs/sluiced.md describes each key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Name used in logs and in the API (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Our address (IPv4 or IPv6).
    #[schema(value_type = String, example = "198.18.0.2")]
    pub local_addr: IpAddr,
    /// The peer's address.
    #[schema(value_type = String, example = "198.18.0.1")]
    pub remote_addr: IpAddr,
    /// Our identity (FQDN, e-mail, IP address or DN `C=.., O=.., CN=..`);
    /// with a certificate, its subject DN when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
    /// The identity the peer must prove.
    pub remote_id: String,
    /// Pre-shared key, inline (at least 16 bytes). Never returned by the
    /// API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk: Option<String>,
    /// ...or read from this file on the appliance (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub psk_file: Option<PathBuf>,
    /// Our certificate (PEM chain or one DER certificate), a path on the
    /// appliance. Set: we authenticate with its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cert: Option<PathBuf>,
    /// The certificate's private key, a path on the appliance (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub key: Option<PathBuf>,
    /// CA certificates the peer's certificate must chain to. Set: the
    /// peer authenticates with a certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub ca_certs: Vec<PathBuf>,
    /// CRLs (PEM or DER) of those CAs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub crls: Vec<PathBuf>,
    /// `ifasked` (default), `always`, `never`.
    #[serde(default)]
    pub send_cert: SendCertMode,
    /// Sign with RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys).
    #[serde(default)]
    pub rsa_pss: bool,
    /// IKE proposal, strongSwan syntax (`aes128-sha256-x25519`).
    #[serde(default = "default_ike")]
    #[schema(example = "aes128-sha256-x25519-ecp256")]
    pub ike_proposal: String,
    /// ESP proposals, comma-separated, preferred first (`aes128gcm16`).
    #[serde(default = "default_esp")]
    #[schema(example = "aes128gcm16")]
    pub esp_proposal: String,
    /// `none`, `initiate` or `trap`.
    #[serde(default)]
    pub start_action: StartAction,
    /// Seconds between liveness checks of an idle IKE SA (0 = off).
    #[serde(default = "default_dpd")]
    pub dpd_delay: u64,
    /// First retransmission timeout, milliseconds.
    #[serde(default = "default_rt_initial")]
    pub retransmit_initial_ms: u64,
    /// Transmissions of a request before the peer is declared dead.
    #[serde(default = "default_rt_tries")]
    pub retransmit_tries: u32,
    /// Hard lifetime of a CHILD SA in seconds.
    #[serde(default = "default_lifetime")]
    pub lifetime: u64,
    /// Hard lifetime in bytes (either direction), 0 = none.
    #[serde(default)]
    pub lifetime_bytes: u64,
    /// Hard lifetime in packets (either direction), 0 = none.
    #[serde(default)]
    pub lifetime_packets: u64,
    /// Seconds after which a CHILD SA is rekeyed (less up to 10% jitter);
    /// unset: 9/10 of `lifetime`; 0 = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekey_time: Option<u64>,
    /// Seconds after which the IKE SA is rekeyed; 0 = never.
    #[serde(default = "default_ike_rekey_time")]
    pub ike_rekey_time: u64,
    /// Seconds after which the IKE SA is reauthenticated; 0 = never.
    #[serde(default)]
    pub reauth_time: u64,
    /// IKEv2 fragmentation (RFC 7383): largest IP datagram; 0 = off.
    #[serde(default = "default_fragment_size")]
    pub fragment_size: usize,
    /// CHILD SAs (traffic selectors).
    #[serde(rename = "child")]
    pub children: Vec<Child>,
}

/// A CHILD SA's traffic selectors.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Child {
    /// Name used in logs.
    pub name: String,
    /// Our side, CIDR (`198.19.2.0/24`).
    pub local_ts: Vec<String>,
    /// The peer's side.
    pub remote_ts: Vec<String>,
}

fn default_ike() -> String {
    "aes128-sha256-x25519-ecp256".into()
}
fn default_esp() -> String {
    "aes128gcm16".into()
}
fn default_ike_rekey_time() -> u64 {
    14400
}
fn default_lifetime() -> u64 {
    3960
}
fn default_fragment_size() -> usize {
    1280
}
fn default_dpd() -> u64 {
    30
}
fn default_rt_initial() -> u64 {
    1000
}
fn default_rt_tries() -> u32 {
    8
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The configuration file: read-only through the API.
    File,
    /// Created through the API, persisted in the state directory.
    Api,
}

/// A connection as the API shows it (its pre-shared key left out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionInfo {
    /// Where it is defined.
    pub source: Source,
    /// IKE SAs it has now.
    pub ike_sas: usize,
    /// Whether a pre-shared key is set (it is never returned).
    pub psk_set: bool,
    /// The definition.
    pub connection: Connection,
}

/// An ESP SA pair keyed by hand: installed straight into the data plane,
/// without IKE (peers without IKE, tests).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualSa {
    /// Name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Our tunnel address.
    #[schema(value_type = String, example = "198.18.0.1")]
    pub local_addr: IpAddr,
    /// The peer's tunnel address.
    #[schema(value_type = String, example = "198.18.0.2")]
    pub remote_addr: IpAddr,
    /// SPI of the inbound SA (the peer's outbound), not 0-255.
    pub spi_in: u32,
    /// SPI of the outbound SA.
    pub spi_out: u32,
    /// `aes128gcm16`, `aes256gcm16`, `aes128-sha256`, `aes256-sha256` or
    /// `chacha20poly1305`.
    #[schema(example = "aes128gcm16")]
    pub esp: String,
    /// Inbound encryption key, hex; for AES-GCM and ChaCha20-Poly1305 the
    /// key followed by the 4-byte salt (RFC 4106 §8.1).
    pub encr_key_in: String,
    /// Outbound encryption key, hex, likewise.
    pub encr_key_out: String,
    /// Inbound HMAC key, hex (AES-CBC with HMAC-SHA-256 only: 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integ_key_in: Option<String>,
    /// Outbound HMAC key, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integ_key_out: Option<String>,
    /// Our side's selectors, CIDR.
    pub local_ts: Vec<String>,
    /// The peer's side's selectors, CIDR.
    pub remote_ts: Vec<String>,
    /// UDP encapsulation (RFC 3948): our port and the peer's, both 4500
    /// usually; absent = plain ESP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_encap: Option<(u16, u16)>,
    /// Anti-replay window in packets (0 = off).
    #[serde(default = "default_replay_window")]
    pub replay_window: u32,
}

fn default_replay_window() -> u32 {
    4096
}

/// A manually keyed SA pair as the API shows it (keys left out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ManualSaInfo {
    /// Name.
    pub name: String,
    /// Our address.
    #[schema(value_type = String)]
    pub local_addr: IpAddr,
    /// The peer's.
    #[schema(value_type = String)]
    pub remote_addr: IpAddr,
    /// Inbound SPI, 8 hex digits.
    pub spi_in: String,
    /// Outbound SPI.
    pub spi_out: String,
    /// ESP transform.
    pub esp: String,
    /// Our selectors.
    pub local_ts: Vec<String>,
    /// The peer's.
    pub remote_ts: Vec<String>,
    /// Inbound counters.
    pub inbound: Counters,
    /// Outbound counters.
    pub outbound: Counters,
}

/// One SA's data-plane counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Counters {
    /// Packets processed (encrypted, or decrypted and accepted).
    pub packets: u64,
    /// Their inner bytes.
    pub bytes: u64,
    /// Drops by reason (only reasons with drops).
    pub drops: BTreeMap<String, u64>,
}

/// An IKE SA.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IkeSaInfo {
    /// Its id in this daemon (for the actions).
    pub id: u64,
    /// Its connection.
    pub connection: String,
    /// `connecting`, `half_open`, `established`, `rekeyed` or `closed`.
    pub state: String,
    /// `initiator` or `responder`.
    pub role: String,
    /// Our address and port.
    pub local: String,
    /// The peer's.
    pub remote: String,
    /// Initiator's SPI, 16 hex digits.
    pub spi_i: String,
    /// Responder's SPI.
    pub spi_r: String,
    /// The negotiated proposal, strongSwan's notation
    /// (`IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519`).
    pub proposal: String,
    /// NAT detected between the peers (then ESP is UDP-encapsulated).
    pub nat: bool,
    /// Seconds since it was created.
    pub age_seconds: u64,
    /// Seconds until it is rekeyed (or reauthenticated), if scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rekey_in_seconds: Option<u64>,
    /// Its CHILD SAs.
    pub children: Vec<ChildSaInfo>,
}

/// A CHILD SA (an inbound and an outbound ESP SA).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChildSaInfo {
    /// The IKE SA it belongs to.
    pub ike_sa: u64,
    /// Its connection.
    pub connection: String,
    /// Inbound SPI, 8 hex digits (the CHILD SA's name in the actions).
    pub spi_in: String,
    /// Outbound SPI.
    pub spi_out: String,
    /// ESP transform (`AES_GCM_16-128`, ...).
    pub esp: String,
    /// UDP-encapsulated (NAT traversal).
    pub udp_encap: bool,
    /// Our selectors.
    pub local_ts: Vec<String>,
    /// The peer's.
    pub remote_ts: Vec<String>,
    /// Seconds since it was installed.
    pub age_seconds: u64,
    /// Seconds until it is rekeyed, if scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rekey_in_seconds: Option<u64>,
    /// Seconds until its hard lifetime ends, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
    /// Rekeyed: replaced by a newer CHILD SA, kept for packets in flight.
    pub replaced: bool,
    /// Inbound counters.
    pub inbound: Counters,
    /// Outbound counters.
    pub outbound: Counters,
}

/// Daemon-wide figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// Seconds since sluiced started.
    pub uptime_seconds: u64,
    /// Connections loaded.
    pub connections: usize,
    /// IKE SAs by state.
    pub ike_sas: BTreeMap<String, u64>,
    /// CHILD SAs.
    pub child_sas: usize,
    /// Manually keyed SA pairs.
    pub manual_sas: usize,
    /// IKE SAs and CHILD SAs rekeyed (`ike`, `child`).
    pub rekeys: BTreeMap<String, u64>,
    /// Requests retransmitted.
    pub retransmits: u64,
    /// IKE_SA_INITs refused, by reason.
    pub init_refused: BTreeMap<String, u64>,
    /// ESP packets and bytes over every SA: `in`, `out`.
    pub esp_packets: BTreeMap<String, u64>,
    /// ESP bytes over every SA.
    pub esp_bytes: BTreeMap<String, u64>,
    /// ESP drops over every SA, by reason.
    pub esp_drops: BTreeMap<String, u64>,
    /// The data plane's workers.
    pub workers: Vec<WorkerStats>,
}

/// One data-plane worker's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: usize,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bursts processed.
    pub bursts: u64,
    /// Polls that found work.
    pub busy_polls: u64,
    /// Polls that found nothing.
    pub idle_polls: u64,
    /// Drops by reason (only reasons with drops).
    pub drops: BTreeMap<String, u64>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` while the daemon's event loop answers.
    pub status: String,
}

/// `GET /v1/version`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Version {
    /// sluiced's version.
    pub version: String,
    /// API version (`v1`).
    pub api: String,
}

/// What an action did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// What happened, for people (`initiating`, `rekeying CHILD_SA ...`).
    pub message: String,
    /// The IKE SA concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ike_sa: Option<u64>,
}

/// Every error: a status and a message saying what was wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

/// Whether `s` is a usable name: 1-64 of letters, digits, `-`, `_`, `.`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("site-a_1.b"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn a_connection_reads_with_its_defaults_and_refuses_unknown_keys() {
        let c: Connection = serde_json::from_str(
            r#"{"name":"a","local_addr":"198.18.0.1","remote_addr":"198.18.0.2",
                "remote_id":"b","psk":"0123456789abcdef",
                "child":[{"name":"n","local_ts":["198.19.1.0/24"],"remote_ts":["198.19.2.0/24"]}]}"#,
        )
        .unwrap();
        assert_eq!(c.esp_proposal, "aes128gcm16");
        assert_eq!(c.dpd_delay, 30);
        let e = serde_json::from_str::<Connection>(
            r#"{"name":"a","local_addr":"198.18.0.1","remote_addr":"198.18.0.2",
                "remote_id":"b","child":[],"colour":"red"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
