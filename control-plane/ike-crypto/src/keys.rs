//! IKE SA and CHILD SA keying material (RFC 7296 §2.13-§2.18) and the
//! shared-key AUTH value (§2.15).

use crate::prf::Prf;
use core::fmt;
use zeroize::Zeroizing;

/// Secret bytes: zeroized on drop, never printed.
pub type Secret = Zeroizing<Vec<u8>>;

/// Lengths of the IKE SA keys, from the negotiated transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeKeyLengths {
    /// SK_ai / SK_ar: the integrity algorithm's key length (0 for AEAD).
    pub integ: usize,
    /// SK_ei / SK_er: encryption key length, including the salt of AEAD
    /// transforms (RFC 5282 §7.1: 4 bytes for AES-GCM).
    pub encr: usize,
}

/// The seven IKE SA keys (RFC 7296 §2.14).
pub struct IkeKeys {
    /// Derives CHILD SA keys and rekeyed IKE SAs.
    pub sk_d: Secret,
    /// Integrity, initiator to responder.
    pub sk_ai: Secret,
    /// Integrity, responder to initiator.
    pub sk_ar: Secret,
    /// Encryption, initiator to responder.
    pub sk_ei: Secret,
    /// Encryption, responder to initiator.
    pub sk_er: Secret,
    /// AUTH payload computation, initiator.
    pub sk_pi: Secret,
    /// AUTH payload computation, responder.
    pub sk_pr: Secret,
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IkeKeys { .. }")
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Secret {
    let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    prf.compute(&key, &[g_ir])
}

/// SKEYSEED of a rekeyed IKE SA: prf(SK_d (old), g^ir (new) | Ni | Nr)
/// (RFC 7296 §2.18), with the old SA's PRF.
pub fn skeyseed_rekey(prf_old: Prf, sk_d_old: &[u8], g_ir: &[u8], ni: &[u8], nr: &[u8]) -> Secret {
    prf_old.compute(sk_d_old, &[g_ir, ni, nr])
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
/// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (RFC 7296 §2.14).
pub fn ike_keys(
    prf: Prf,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    len: IkeKeyLengths,
) -> Option<IkeKeys> {
    let p = prf.output_len();
    let total = 3 * p + 2 * len.integ + 2 * len.encr;
    let km = prf.plus(
        skeyseed,
        &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
        total,
    )?;
    let mut at = 0;
    let mut take = |n: usize| {
        let s = Zeroizing::new(km[at..at + n].to_vec());
        at += n;
        s
    };
    Some(IkeKeys {
        sk_d: take(p),
        sk_ai: take(len.integ),
        sk_ar: take(len.integ),
        sk_ei: take(len.encr),
        sk_er: take(len.encr),
        sk_pi: take(p),
        sk_pr: take(p),
    })
}

/// Keys of one CHILD SA (RFC 7296 §2.17): the initiator-to-responder SA's
/// keys come first.
pub struct ChildKeys {
    /// Encryption key (with salt for AEAD), initiator to responder.
    pub encr_i: Secret,
    /// Integrity key, initiator to responder (empty for AEAD).
    pub integ_i: Secret,
    /// Encryption key, responder to initiator.
    pub encr_r: Secret,
    /// Integrity key, responder to initiator.
    pub integ_r: Secret,
}

impl fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChildKeys { .. }")
    }
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), split as encryption then
/// integrity key for each direction, initiator's first (RFC 7296 §2.17).
pub fn child_keys(
    prf: Prf,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    encr_len: usize,
    integ_len: usize,
) -> Option<ChildKeys> {
    let total = 2 * (encr_len + integ_len);
    let km = match g_ir {
        Some(g) => prf.plus(sk_d, &[g, ni, nr], total)?,
        None => prf.plus(sk_d, &[ni, nr], total)?,
    };
    let mut at = 0;
    let mut take = |n: usize| {
        let s = Zeroizing::new(km[at..at + n].to_vec());
        at += n;
        s
    };
    Some(ChildKeys {
        encr_i: take(encr_len),
        integ_i: take(integ_len),
        encr_r: take(encr_len),
        integ_r: take(integ_len),
    })
}

/// The pad RFC 7296 §2.15 mixes into shared-key authentication.
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The signed octets (RFC 7296 §2.15): the sender's first message (its
/// IKE_SA_INIT), the peer's nonce, and prf(SK_px, ID payload body).
pub fn signed_octets(
    prf: Prf,
    first_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let mac = prf.compute(sk_p, &[id_body]);
    let mut v = Vec::with_capacity(first_message.len() + peer_nonce.len() + mac.len());
    v.extend_from_slice(first_message);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(&mac);
    v
}

/// AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <signed octets>)
/// (RFC 7296 §2.15).
pub fn psk_auth(prf: Prf, psk: &[u8], octets: &[u8]) -> Secret {
    let k = prf.compute(psk, &[KEY_PAD]);
    prf.compute(&k, &[octets])
}

/// Constant-time comparison of a received AUTH value.
pub fn auth_matches(expected: &[u8], received: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == received.len() && bool::from(expected.ct_eq(received))
}
