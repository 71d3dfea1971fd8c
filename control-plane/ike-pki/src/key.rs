//! Private keys: RSA (2048-4096 bits) and ECDSA P-256/P-384, from PEM or
//! DER in PKCS#8, SEC1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").

use crate::der::{self, oid};
use crate::sig::{Hash, SignatureScheme};
use crate::{is_pem, read_file, PkiError};
use ring::rand::SystemRandom;
use ring::signature::{self as rs, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::path::Path;
use zeroize::Zeroizing;

/// What kind of key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this modulus size.
    Rsa {
        /// Modulus bits.
        bits: usize,
    },
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521 (RustCrypto's p521: ring has no P-521).
    EcdsaP521,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyKind::EcdsaP521 => f.write_str("ECDSA P-521"),
        }
    }
}

enum Inner {
    Rsa(Box<RsaKeyPair>),
    Ecdsa {
        /// For RFC 7427 (DER-encoded signature values).
        asn1: Box<EcdsaKeyPair>,
        /// For AUTH methods 9 and 10 (r || s, RFC 4754).
        fixed: Box<EcdsaKeyPair>,
    },
    P521 {
        key: Box<p521::ecdsa::SigningKey>,
        /// The uncompressed public point.
        public: Vec<u8>,
    },
}

/// A private key that signs AUTH payloads.
pub struct PrivateKey {
    kind: KeyKind,
    inner: Inner,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.kind)
    }
}

fn rejected(what: &str, e: ring::error::KeyRejected) -> PkiError {
    PkiError::Parse(format!("{what} key rejected: {e}"))
}

impl PrivateKey {
    /// Reads a key file, refusing one that group or others may read (as
    /// ssh does): a key is as secret as a pre-shared key.
    pub fn load(path: &Path) -> Result<PrivateKey, PkiError> {
        check_permissions(path)?;
        let bytes = Zeroizing::new(read_file(path)?);
        PrivateKey::from_bytes(&bytes)
            .map_err(|e| PkiError::Parse(format!("{}: {e}", path.display())))
    }

    /// A key from PEM (the first private key block) or DER bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<PrivateKey, PkiError> {
        if is_pem(bytes) {
            let key = PrivateKeyDer::from_pem_slice(bytes)
                .map_err(|e| PkiError::Parse(format!("no private key in PEM: {e:?}")))?;
            return match &key {
                PrivateKeyDer::Pkcs8(k) => PrivateKey::from_pkcs8(k.secret_pkcs8_der()),
                PrivateKeyDer::Pkcs1(k) => PrivateKey::from_pkcs1(k.secret_pkcs1_der()),
                PrivateKeyDer::Sec1(k) => PrivateKey::from_sec1(k.secret_sec1_der()),
                _ => Err(PkiError::Unsupported("private key format".into())),
            };
        }
        PrivateKey::from_pkcs8(bytes)
            .or_else(|_| PrivateKey::from_pkcs1(bytes))
            .or_else(|_| PrivateKey::from_sec1(bytes))
            .map_err(|_| {
                PkiError::Parse("not a PKCS#8, PKCS#1 or SEC1 RSA/ECDSA private key".into())
            })
    }

    /// PKCS#8 PrivateKeyInfo (RSA, ECDSA P-256 or P-384).
    pub fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, PkiError> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(PrivateKey::rsa(k));
        }
        let rng = SystemRandom::new();
        for (kind, asn1, fixed) in [
            (
                KeyKind::EcdsaP256,
                &rs::ECDSA_P256_SHA256_ASN1_SIGNING,
                &rs::ECDSA_P256_SHA256_FIXED_SIGNING,
            ),
            (
                KeyKind::EcdsaP384,
                &rs::ECDSA_P384_SHA384_ASN1_SIGNING,
                &rs::ECDSA_P384_SHA384_FIXED_SIGNING,
            ),
        ] {
            if let Ok(a) = EcdsaKeyPair::from_pkcs8(asn1, der, &rng) {
                let f =
                    EcdsaKeyPair::from_pkcs8(fixed, der, &rng).map_err(|e| rejected("EC", e))?;
                return Ok(PrivateKey {
                    kind,
                    inner: Inner::Ecdsa {
                        asn1: Box::new(a),
                        fixed: Box::new(f),
                    },
                });
            }
        }
        if let Ok(k) =
            <p521::ecdsa::SigningKey as p521::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
        {
            let public = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
            return Ok(PrivateKey {
                kind: KeyKind::EcdsaP521,
                inner: Inner::P521 {
                    key: Box::new(k),
                    public,
                },
            });
        }
        Err(PkiError::Parse(
            "PKCS#8 key is neither RSA nor ECDSA P-256/P-384/P-521 (EdDSA is not supported)".into(),
        ))
    }

    /// PKCS#1 RSAPrivateKey.
    pub fn from_pkcs1(der: &[u8]) -> Result<PrivateKey, PkiError> {
        RsaKeyPair::from_der(der)
            .map(PrivateKey::rsa)
            .map_err(|e| rejected("RSA", e))
    }

    /// SEC1 ECPrivateKey (with its public key, as OpenSSL and strongSwan's
    /// `pki` write it), re-wrapped as PKCS#8 for ring.
    pub fn from_sec1(der: &[u8]) -> Result<PrivateKey, PkiError> {
        for curve in [oid::P256, oid::P384, oid::P521] {
            let alg = der::seq(&[
                &der::tlv(der::OID, oid::EC_PUBLIC_KEY),
                &der::tlv(der::OID, curve),
            ]);
            let pkcs8 = Zeroizing::new(der::seq(&[
                &der::tlv(der::INTEGER, &[0]),
                &alg,
                &der::tlv(der::OCTET_STRING, der),
            ]));
            if let Ok(k) = PrivateKey::from_pkcs8(&pkcs8) {
                return Ok(k);
            }
        }
        Err(PkiError::Parse(
            "SEC1 key is not a P-256/P-384/P-521 key with its public key".into(),
        ))
    }

    fn rsa(k: RsaKeyPair) -> PrivateKey {
        PrivateKey {
            kind: KeyKind::Rsa {
                bits: k.public().modulus_len() * 8,
            },
            inner: Inner::Rsa(Box::new(k)),
        }
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The public key as a certificate's subjectPublicKey carries it: DER
    /// RSAPublicKey, or the uncompressed EC point.
    pub fn public_key(&self) -> &[u8] {
        match &self.inner {
            Inner::Rsa(k) => k.public().as_ref(),
            Inner::Ecdsa { asn1, .. } => asn1.public_key().as_ref(),
            Inner::P521 { public, .. } => public,
        }
    }

    /// Signs `msg`: `fixed` picks r || s for ECDSA (methods 9/10) instead
    /// of DER (RFC 7427).
    pub(crate) fn sign(
        &self,
        scheme: SignatureScheme,
        fixed: bool,
        msg: &[u8],
    ) -> Result<Vec<u8>, PkiError> {
        let rng = SystemRandom::new();
        let fail = |_| PkiError::BadSignature("signing failed".into());
        match (&self.inner, scheme) {
            (Inner::Rsa(k), SignatureScheme::RsaPkcs1(h) | SignatureScheme::RsaPss(h)) => {
                let pss = matches!(scheme, SignatureScheme::RsaPss(_));
                let pad: &'static dyn rs::RsaEncoding = match (pss, h) {
                    (false, Hash::Sha256) => &rs::RSA_PKCS1_SHA256,
                    (false, Hash::Sha384) => &rs::RSA_PKCS1_SHA384,
                    (false, Hash::Sha512) => &rs::RSA_PKCS1_SHA512,
                    (true, Hash::Sha256) => &rs::RSA_PSS_SHA256,
                    (true, Hash::Sha384) => &rs::RSA_PSS_SHA384,
                    (true, Hash::Sha512) => &rs::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(pad, &rng, msg, &mut sig).map_err(fail)?;
                Ok(sig)
            }
            (Inner::Ecdsa { asn1, fixed: f }, SignatureScheme::Ecdsa(h))
                if Some(h) == self.ecdsa_hash() =>
            {
                let k = if fixed { f } else { asn1 };
                Ok(k.sign(&rng, msg).map_err(fail)?.as_ref().to_vec())
            }
            (Inner::P521 { key, .. }, SignatureScheme::Ecdsa(Hash::Sha512)) => {
                use p521::ecdsa::signature::Signer;
                let sig: p521::ecdsa::Signature = key
                    .try_sign(msg)
                    .map_err(|_| PkiError::BadSignature("signing failed".into()))?;
                Ok(if fixed {
                    sig.to_bytes().to_vec()
                } else {
                    sig.to_der().to_bytes().to_vec()
                })
            }
            _ => Err(PkiError::Unsupported(format!(
                "{} cannot sign with {scheme}",
                self.kind
            ))),
        }
    }

    /// The one hash ring signs with on this curve.
    pub(crate) fn ecdsa_hash(&self) -> Option<Hash> {
        match self.kind {
            KeyKind::EcdsaP256 => Some(Hash::Sha256),
            KeyKind::EcdsaP384 => Some(Hash::Sha384),
            KeyKind::EcdsaP521 => Some(Hash::Sha512),
            KeyKind::Rsa { .. } => None,
        }
    }
}

/// Refuses a key file that group or others can read or write.
fn check_permissions(path: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| PkiError::File(format!("{}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::File(format!(
            "{}: mode {mode:04o} lets group or others read the private key; chmod 600 it",
            path.display()
        )));
    }
    Ok(())
}
