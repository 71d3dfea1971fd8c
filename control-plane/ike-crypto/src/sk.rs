//! Protection of the Encrypted (SK) payload (RFC 7296 §3.14) and of its
//! fragments (RFC 7383): AES-CBC with HMAC-SHA2 (RFC 3602, RFC 4868) and
//! AES-GCM with a 16-byte ICV (RFC 5282).
//!
//! ```text
//! Encrypted payload body:  IV | ciphertext( inner payloads | padding | pad length ) | ICV
//! CBC:  ICV = HMAC(SK_a, IKE header .. end of ciphertext), truncated
//! GCM:  nonce = salt(4, from SK_e) | IV(8), AAD = IKE header .. SK payload header
//! ```

use crate::CryptoError;
use aes_gcm::aead::{AeadInOut, KeyInit};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Integrity algorithm of a CBC suite (RFC 4868).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA2_256_128 (12).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512_256,
}

impl Integ {
    /// From the IANA transform ID.
    pub fn from_id(id: u16) -> Option<Integ> {
        match id {
            12 => Some(Integ::HmacSha256_128),
            13 => Some(Integ::HmacSha384_192),
            14 => Some(Integ::HmacSha512_256),
            _ => None,
        }
    }

    /// Key length (RFC 4868 §2.1.1).
    pub fn key_len(self) -> usize {
        match self {
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }

    /// Truncated ICV length.
    pub fn icv_len(self) -> usize {
        self.key_len() / 2
    }

    fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        let mut full = match self {
            Integ::HmacSha256_128 => run::<Hmac<Sha256>>(key, parts),
            Integ::HmacSha384_192 => run::<Hmac<Sha384>>(key, parts),
            Integ::HmacSha512_256 => run::<Hmac<Sha512>>(key, parts),
        };
        full.truncate(self.icv_len());
        full
    }
}

/// The negotiated SK protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// ENCR_AES_CBC (12) with `key_len` 16 or 32 and an HMAC-SHA2 integrity.
    AesCbc {
        /// AES key bytes.
        key_len: usize,
        /// Integrity transform.
        integ: Integ,
    },
    /// ENCR_AES_GCM_16 (20), `key_len` 16 or 32 (plus the 4-byte salt).
    AesGcm16 {
        /// AES key bytes, without the salt.
        key_len: usize,
    },
}

impl Suite {
    /// SK_e length (with the salt for GCM).
    pub fn encr_key_len(self) -> usize {
        match self {
            Suite::AesCbc { key_len, .. } => key_len,
            Suite::AesGcm16 { key_len } => key_len + 4,
        }
    }

    /// SK_a length (0 for GCM).
    pub fn integ_key_len(self) -> usize {
        match self {
            Suite::AesCbc { integ, .. } => integ.key_len(),
            Suite::AesGcm16 { .. } => 0,
        }
    }

    /// IV length in the payload.
    pub fn iv_len(self) -> usize {
        match self {
            Suite::AesCbc { .. } => 16,
            Suite::AesGcm16 { .. } => 8,
        }
    }

    /// ICV length.
    pub fn icv_len(self) -> usize {
        match self {
            Suite::AesCbc { integ, .. } => integ.icv_len(),
            Suite::AesGcm16 { .. } => 16,
        }
    }

    /// Length of the Encrypted payload body for `plaintext_len` bytes of
    /// inner payloads (so the IKE header's length can be set before sealing).
    pub fn body_len(self, plaintext_len: usize) -> usize {
        let padded = match self {
            Suite::AesCbc { .. } => (plaintext_len + 1).div_ceil(16) * 16,
            Suite::AesGcm16 { .. } => plaintext_len + 1,
        };
        self.iv_len() + padded + self.icv_len()
    }
}

/// One direction's SK keys.
pub struct SkKeys {
    suite: Suite,
    encr: Zeroizing<Vec<u8>>,
    integ: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for SkKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SkKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SkKeys {
    /// Keys for one direction (SK_ei/SK_ai or SK_er/SK_ar).
    pub fn new(suite: Suite, encr: &[u8], integ: &[u8]) -> Result<SkKeys, CryptoError> {
        if encr.len() != suite.encr_key_len() || integ.len() != suite.integ_key_len() {
            return Err(CryptoError::KeyLength);
        }
        if !matches!(
            suite,
            Suite::AesCbc {
                key_len: 16 | 32,
                ..
            } | Suite::AesGcm16 { key_len: 16 | 32 }
        ) {
            return Err(CryptoError::KeyLength);
        }
        Ok(SkKeys {
            suite,
            encr: Zeroizing::new(encr.to_vec()),
            integ: Zeroizing::new(integ.to_vec()),
        })
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Seals `plaintext` (the inner payloads). `header` is the message from
    /// its first byte through the Encrypted payload's generic header, with
    /// every length already final (see [`Suite::body_len`]); `iv` is fresh
    /// randomness of [`Suite::iv_len`] bytes (GCM: must never repeat under
    /// a key). Returns the Encrypted payload body.
    pub fn seal(&self, header: &[u8], plaintext: &[u8], iv: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let s = self.suite;
        if iv.len() != s.iv_len() {
            return Err(CryptoError::IvLength);
        }
        let body_len = s.body_len(plaintext.len());
        let ct_len = body_len - s.iv_len() - s.icv_len();
        let mut body = Vec::with_capacity(body_len);
        body.extend_from_slice(iv);
        body.extend_from_slice(plaintext);
        let pad = ct_len - plaintext.len() - 1;
        body.extend(std::iter::repeat_n(0u8, pad));
        body.push(pad as u8);
        let ivl = s.iv_len();
        match s {
            Suite::AesCbc { integ, .. } => {
                let mut ivb = [0u8; 16];
                ivb.copy_from_slice(iv);
                cbc_encrypt(&self.encr, &ivb, &mut body[ivl..])?;
                let icv = integ.mac(&self.integ, &[header, &body]);
                body.extend_from_slice(&icv);
            }
            Suite::AesGcm16 { key_len } => {
                let (key, salt) = self.encr.split_at(key_len);
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(salt);
                nonce[4..].copy_from_slice(iv);
                let tag = gcm_seal(key, &nonce, header, &mut body[ivl..])?;
                body.extend_from_slice(&tag);
            }
        }
        Ok(body)
    }

    /// Verifies and decrypts an Encrypted payload body; returns the inner
    /// payloads with padding removed. Nothing is decrypted unless the ICV
    /// verifies.
    pub fn open(&self, header: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let s = self.suite;
        let (ivl, icvl) = (s.iv_len(), s.icv_len());
        if body.len() < ivl + icvl + 1 {
            return Err(CryptoError::Truncated);
        }
        let (rest, icv) = body.split_at(body.len() - icvl);
        let (iv, ct) = rest.split_at(ivl);
        let mut pt = Zeroizing::new(ct.to_vec());
        match s {
            Suite::AesCbc { integ, .. } => {
                if ct.len() % 16 != 0 || ct.is_empty() {
                    return Err(CryptoError::Truncated);
                }
                let mac = integ.mac(&self.integ, &[header, rest]);
                if !bool::from(mac.ct_eq(icv)) {
                    return Err(CryptoError::IntegrityCheck);
                }
                let mut ivb = [0u8; 16];
                ivb.copy_from_slice(iv);
                cbc_decrypt(&self.encr, &ivb, &mut pt)?;
            }
            Suite::AesGcm16 { key_len } => {
                let (key, salt) = self.encr.split_at(key_len);
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(salt);
                nonce[4..].copy_from_slice(iv);
                gcm_open(key, &nonce, header, &mut pt, icv)?;
            }
        }
        let pad = usize::from(*pt.last().ok_or(CryptoError::Truncated)?);
        let inner_len = pt.len().checked_sub(pad + 1).ok_or(CryptoError::Padding)?;
        Ok(pt[..inner_len].to_vec())
    }
}

fn cbc_encrypt(key: &[u8], iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
    let (blocks, _) = aes::Block::slice_as_chunks_mut(data);
    match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::KeyLength)?
            .encrypt_blocks(blocks),
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::KeyLength)?
            .encrypt_blocks(blocks),
    }
    Ok(())
}

fn cbc_decrypt(key: &[u8], iv: &[u8; 16], data: &mut [u8]) -> Result<(), CryptoError> {
    let (blocks, _) = aes::Block::slice_as_chunks_mut(data);
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::KeyLength)?
            .decrypt_blocks(blocks),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::KeyLength)?
            .decrypt_blocks(blocks),
    }
    Ok(())
}

fn gcm_seal(
    key: &[u8],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> Result<Vec<u8>, CryptoError> {
    fn run<A: AeadInOut + KeyInit>(
        key: &[u8],
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let c = A::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?;
        let n =
            aes_gcm::aead::Nonce::<A>::try_from(&nonce[..]).map_err(|_| CryptoError::IvLength)?;
        let t = c
            .encrypt_inout_detached(&n, aad, data.into())
            .map_err(|_| CryptoError::Truncated)?;
        Ok(t.to_vec())
    }
    match key.len() {
        16 => run::<aes_gcm::Aes128Gcm>(key, nonce, aad, data),
        _ => run::<aes_gcm::Aes256Gcm>(key, nonce, aad, data),
    }
}

fn gcm_open(
    key: &[u8],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    fn run<A: AeadInOut + KeyInit>(
        key: &[u8],
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let c = A::new_from_slice(key).map_err(|_| CryptoError::KeyLength)?;
        let n =
            aes_gcm::aead::Nonce::<A>::try_from(&nonce[..]).map_err(|_| CryptoError::IvLength)?;
        let t = aes_gcm::aead::Tag::<A>::try_from(tag).map_err(|_| CryptoError::Truncated)?;
        c.decrypt_inout_detached(&n, aad, data.into(), &t)
            .map_err(|_| CryptoError::IntegrityCheck)
    }
    match key.len() {
        16 => run::<aes_gcm::Aes128Gcm>(key, nonce, aad, data, tag),
        _ => run::<aes_gcm::Aes256Gcm>(key, nonce, aad, data, tag),
    }
}
