//! Pseudorandom functions (RFC 7296 §2.13, RFC 4868) and prf+.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

/// An IKEv2 PRF transform (RFC 7296 §3.3.2, Transform Type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prf {
    /// PRF_HMAC_SHA2_256 (5), RFC 4868.
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7).
    HmacSha512,
}

impl Prf {
    /// From the IANA transform ID.
    pub fn from_id(id: u16) -> Option<Prf> {
        match id {
            5 => Some(Prf::HmacSha256),
            6 => Some(Prf::HmacSha384),
            7 => Some(Prf::HmacSha512),
            _ => None,
        }
    }

    /// The IANA transform ID.
    pub fn id(self) -> u16 {
        match self {
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }

    /// Output length, which is also the preferred key length (RFC 7296
    /// §2.13; RFC 4868 §2.2: SK_d, SK_pi and SK_pr have this length).
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// `prf(key, data...)`: the HMAC of the concatenated `data`.
    pub fn compute(self, key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[&[u8]]) -> Zeroizing<Vec<u8>> {
            // HMAC accepts keys of any length (RFC 2104 hashes long ones).
            let mut m = match <M as KeyInit>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => return Zeroizing::new(Vec::new()),
            };
            for d in data {
                m.update(d);
            }
            Zeroizing::new(m.finalize().into_bytes().to_vec())
        }
        match self {
            Prf::HmacSha256 => run::<Hmac<Sha256>>(key, data),
            Prf::HmacSha384 => run::<Hmac<Sha384>>(key, data),
            Prf::HmacSha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    /// `prf+(key, seed)` truncated to `len` bytes (RFC 7296 §2.13):
    /// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n). At most 255 blocks;
    /// `None` if more is asked for.
    pub fn plus(self, key: &[u8], seed: &[&[u8]], len: usize) -> Option<Zeroizing<Vec<u8>>> {
        let blocks = len.div_ceil(self.output_len());
        if blocks > 255 {
            return None;
        }
        let mut out = Zeroizing::new(Vec::with_capacity(blocks * self.output_len()));
        let mut prev = Zeroizing::new(Vec::new());
        for n in 1..=blocks as u8 {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
            parts.push(&prev);
            parts.extend_from_slice(seed);
            let counter = [n];
            parts.push(&counter);
            let t = self.compute(key, &parts);
            out.extend_from_slice(&t);
            prev = t;
        }
        out.truncate(len);
        Some(out)
    }
}
