//! AUTH payload signatures: RFC 7296 §3.8 methods and RFC 7427 digital
//! signatures with their AlgorithmIdentifiers.

use crate::der::{self, oid};
use crate::key::KeyKind;
use crate::PkiError;
use ring::signature::{self as rs, UnparsedPublicKey};
use x509_parser::prelude::FromDer;
use x509_parser::signature_algorithm::SignatureAlgorithm;
use x509_parser::x509::AlgorithmIdentifier;

/// AUTH methods (RFC 7296 §3.8, RFC 4754, RFC 7427) this crate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthMethod;

impl AuthMethod {
    /// RSA Digital Signature: PKCS#1 v1.5 with SHA-1 (verified, never sent).
    pub const RSA_SIG: u8 = 1;
    /// ECDSA with SHA-256 on the P-256 curve (RFC 4754).
    pub const ECDSA_256: u8 = 9;
    /// ECDSA with SHA-384 on the P-384 curve (RFC 4754).
    pub const ECDSA_384: u8 = 10;
    /// ECDSA with SHA-512 on the P-521 curve (RFC 4754).
    pub const ECDSA_521: u8 = 11;
    /// Digital Signature (RFC 7427).
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// A hash of SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4, IANA "IKEv2 Hash
/// Algorithms"). SHA-1 is deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA2-256 (2).
    Sha256,
    /// SHA2-384 (3).
    Sha384,
    /// SHA2-512 (4).
    Sha512,
}

impl Hash {
    /// Every hash we announce, in the order we announce them.
    pub const ALL: [Hash; 3] = [Hash::Sha256, Hash::Sha384, Hash::Sha512];

    /// IANA number.
    pub fn id(self) -> u16 {
        match self {
            Hash::Sha256 => 2,
            Hash::Sha384 => 3,
            Hash::Sha512 => 4,
        }
    }

    /// From an IANA number.
    pub fn from_id(id: u16) -> Option<Hash> {
        Hash::ALL.into_iter().find(|h| h.id() == id)
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => oid::SHA256,
            Hash::Sha384 => oid::SHA384,
            Hash::Sha512 => oid::SHA512,
        }
    }

    fn len(self) -> u32 {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn bits(self) -> u32 {
        self.len() * 8
    }
}

/// A signature scheme of RFC 7427's AUTH payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(Hash),
    /// RSASSA-PSS, MGF1 with the same hash, salt as long as the hash.
    RsaPss(Hash),
    /// ECDSA, DER-encoded signature value.
    Ecdsa(Hash),
}

impl std::fmt::Display for SignatureScheme {
    /// strongSwan's names, so logs of both ends read alike.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureScheme::RsaPkcs1(h) => write!(f, "RSA_EMSA_PKCS1_SHA2_{}", h.bits()),
            SignatureScheme::RsaPss(h) => write!(f, "RSA_EMSA_PSS_SHA2_{}", h.bits()),
            SignatureScheme::Ecdsa(h) => write!(f, "ECDSA_WITH_SHA{}_DER", h.bits()),
        }
    }
}

impl SignatureScheme {
    /// The hash.
    pub fn hash(self) -> Hash {
        match self {
            SignatureScheme::RsaPkcs1(h)
            | SignatureScheme::RsaPss(h)
            | SignatureScheme::Ecdsa(h) => h,
        }
    }

    /// DER AlgorithmIdentifier as RFC 7427 Appendix A writes it.
    pub fn algorithm_identifier(self) -> Vec<u8> {
        let null = der::tlv(der::NULL, &[]);
        match self {
            SignatureScheme::RsaPkcs1(h) => {
                let o = match h {
                    Hash::Sha256 => oid::SHA256_WITH_RSA,
                    Hash::Sha384 => oid::SHA384_WITH_RSA,
                    Hash::Sha512 => oid::SHA512_WITH_RSA,
                };
                der::seq(&[&der::tlv(der::OID, o), &null])
            }
            SignatureScheme::Ecdsa(h) => {
                let o = match h {
                    Hash::Sha256 => oid::ECDSA_SHA256,
                    Hash::Sha384 => oid::ECDSA_SHA384,
                    Hash::Sha512 => oid::ECDSA_SHA512,
                };
                der::seq(&[&der::tlv(der::OID, o)])
            }
            SignatureScheme::RsaPss(h) => {
                let hash_alg = der::seq(&[&der::tlv(der::OID, h.oid()), &null]);
                let mgf = der::seq(&[&der::tlv(der::OID, oid::MGF1), &hash_alg]);
                let salt = der::tlv(der::INTEGER, &[h.len() as u8]);
                let params = der::seq(&[
                    &der::tlv(0xa0, &hash_alg),
                    &der::tlv(0xa1, &mgf),
                    &der::tlv(0xa2, &salt),
                ]);
                der::seq(&[&der::tlv(der::OID, oid::RSASSA_PSS), &params])
            }
        }
    }

    /// Reads an AlgorithmIdentifier of an RFC 7427 AUTH payload.
    pub fn from_algorithm_identifier(bytes: &[u8]) -> Result<SignatureScheme, PkiError> {
        let bad = |m: &str| PkiError::BadSignature(m.to_string());
        let (rest, alg) = AlgorithmIdentifier::from_der(bytes)
            .map_err(|_| bad("malformed AlgorithmIdentifier"))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the AlgorithmIdentifier"));
        }
        let o = alg.algorithm.as_bytes();
        let hash_of = |b: &[u8]| Hash::ALL.into_iter().find(|h| h.oid() == b);
        let scheme = match o {
            _ if o == oid::SHA256_WITH_RSA => SignatureScheme::RsaPkcs1(Hash::Sha256),
            _ if o == oid::SHA384_WITH_RSA => SignatureScheme::RsaPkcs1(Hash::Sha384),
            _ if o == oid::SHA512_WITH_RSA => SignatureScheme::RsaPkcs1(Hash::Sha512),
            _ if o == oid::ECDSA_SHA256 => SignatureScheme::Ecdsa(Hash::Sha256),
            _ if o == oid::ECDSA_SHA384 => SignatureScheme::Ecdsa(Hash::Sha384),
            _ if o == oid::ECDSA_SHA512 => SignatureScheme::Ecdsa(Hash::Sha512),
            _ if o == oid::SHA1_WITH_RSA || o == oid::ECDSA_SHA1 => {
                return Err(bad("SHA-1 signatures are refused"))
            }
            _ if o == oid::RSASSA_PSS => {
                let Ok(SignatureAlgorithm::RSASSA_PSS(p)) = SignatureAlgorithm::try_from(&alg)
                else {
                    return Err(bad("malformed RSASSA-PSS parameters"));
                };
                let h = hash_of(p.hash_algorithm_oid().as_bytes())
                    .ok_or_else(|| bad("RSASSA-PSS with a hash other than SHA-256/384/512"))?;
                let mgf = p
                    .mask_gen_algorithm()
                    .map_err(|_| bad("malformed RSASSA-PSS mask generation"))?;
                if mgf.mgf.as_bytes() != oid::MGF1 || mgf.hash.as_bytes() != h.oid() {
                    return Err(bad(
                        "RSASSA-PSS mask generation is not MGF1 with the same hash",
                    ));
                }
                if p.salt_length() != h.len() {
                    return Err(bad("RSASSA-PSS salt length differs from the hash length"));
                }
                SignatureScheme::RsaPss(h)
            }
            _ => {
                return Err(bad(&format!(
                    "unknown signature algorithm {}",
                    alg.algorithm
                )))
            }
        };
        Ok(scheme)
    }
}

/// RFC 7427 §3 AUTH data: a length octet, the AlgorithmIdentifier, the
/// signature value.
fn split_digital_signature(data: &[u8]) -> Result<(SignatureScheme, &[u8]), PkiError> {
    let bad = |m: &str| PkiError::BadSignature(m.to_string());
    let (&n, rest) = data.split_first().ok_or_else(|| bad("empty AUTH data"))?;
    let n = usize::from(n);
    let (Some(ai), Some(sig)) = (rest.get(..n), rest.get(n..)) else {
        return Err(bad("AlgorithmIdentifier longer than the AUTH data"));
    };
    Ok((SignatureScheme::from_algorithm_identifier(ai)?, sig))
}

/// A peer's public key as its certificate carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub(crate) kind: KeyKind,
    /// subjectPublicKey: DER RSAPublicKey or the EC point.
    pub(crate) bytes: Vec<u8>,
}

impl PublicKey {
    /// Verifies AUTH data of `method` over `octets`; says what was used.
    pub(crate) fn verify_auth(
        &self,
        method: u8,
        data: &[u8],
        octets: &[u8],
    ) -> Result<String, PkiError> {
        let bad = |m: String| PkiError::BadSignature(m);
        if self.kind == KeyKind::EcdsaP521 {
            return self.verify_p521(method, data, octets);
        }
        let (alg, sig, what): (&'static dyn rs::VerificationAlgorithm, &[u8], String) =
            match (method, self.kind) {
                (AuthMethod::DIGITAL_SIGNATURE, _) => {
                    let (scheme, sig) = split_digital_signature(data)?;
                    (self.ring_alg(scheme)?, sig, scheme.to_string())
                }
                (AuthMethod::RSA_SIG, KeyKind::Rsa { .. }) => (
                    &rs::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    data,
                    "RSA_EMSA_PKCS1_SHA1 (AUTH method 1)".into(),
                ),
                (AuthMethod::ECDSA_256, KeyKind::EcdsaP256) => (
                    &rs::ECDSA_P256_SHA256_FIXED,
                    data,
                    "ECDSA-256 signature (AUTH method 9)".into(),
                ),
                (AuthMethod::ECDSA_384, KeyKind::EcdsaP384) => (
                    &rs::ECDSA_P384_SHA384_FIXED,
                    data,
                    "ECDSA-384 signature (AUTH method 10)".into(),
                ),
                (m, k) => {
                    return Err(bad(format!(
                        "AUTH method {m} does not fit the certificate's {k} key"
                    )))
                }
            };
        UnparsedPublicKey::new(alg, &self.bytes)
            .verify(octets, sig)
            .map_err(|_| bad(format!("{what} signature does not verify")))?;
        Ok(what)
    }

    /// P-521 (RustCrypto's p521): method 11 (r || s) or RFC 7427 with
    /// ecdsa-with-SHA512 (DER).
    fn verify_p521(&self, method: u8, data: &[u8], octets: &[u8]) -> Result<String, PkiError> {
        use p521::ecdsa::signature::Verifier;
        let bad = |m: &str| PkiError::BadSignature(m.to_string());
        let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&self.bytes)
            .map_err(|_| bad("malformed P-521 public key"))?;
        let (sig, what) = match method {
            AuthMethod::ECDSA_521 => (
                p521::ecdsa::Signature::from_slice(data)
                    .map_err(|_| bad("malformed ECDSA-521 signature"))?,
                "ECDSA-521 signature (AUTH method 11)".to_string(),
            ),
            AuthMethod::DIGITAL_SIGNATURE => {
                let (scheme, sig) = split_digital_signature(data)?;
                if scheme != SignatureScheme::Ecdsa(Hash::Sha512) {
                    return Err(PkiError::BadSignature(format!(
                        "{scheme} is not available for the certificate's ECDSA P-521 key"
                    )));
                }
                (
                    p521::ecdsa::Signature::from_der(sig)
                        .map_err(|_| bad("malformed DER ECDSA signature"))?,
                    scheme.to_string(),
                )
            }
            m => {
                return Err(PkiError::BadSignature(format!(
                    "AUTH method {m} does not fit the certificate's ECDSA P-521 key"
                )))
            }
        };
        key.verify(octets, &sig)
            .map_err(|_| PkiError::BadSignature(format!("{what} signature does not verify")))?;
        Ok(what)
    }

    fn ring_alg(
        &self,
        scheme: SignatureScheme,
    ) -> Result<&'static dyn rs::VerificationAlgorithm, PkiError> {
        let alg: &'static dyn rs::VerificationAlgorithm = match (self.kind, scheme) {
            (KeyKind::Rsa { .. }, SignatureScheme::RsaPkcs1(h)) => match h {
                Hash::Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                Hash::Sha384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                Hash::Sha512 => &rs::RSA_PKCS1_2048_8192_SHA512,
            },
            (KeyKind::Rsa { .. }, SignatureScheme::RsaPss(h)) => match h {
                Hash::Sha256 => &rs::RSA_PSS_2048_8192_SHA256,
                Hash::Sha384 => &rs::RSA_PSS_2048_8192_SHA384,
                Hash::Sha512 => &rs::RSA_PSS_2048_8192_SHA512,
            },
            (KeyKind::EcdsaP256, SignatureScheme::Ecdsa(Hash::Sha256)) => {
                &rs::ECDSA_P256_SHA256_ASN1
            }
            (KeyKind::EcdsaP256, SignatureScheme::Ecdsa(Hash::Sha384)) => {
                &rs::ECDSA_P256_SHA384_ASN1
            }
            (KeyKind::EcdsaP384, SignatureScheme::Ecdsa(Hash::Sha256)) => {
                &rs::ECDSA_P384_SHA256_ASN1
            }
            (KeyKind::EcdsaP384, SignatureScheme::Ecdsa(Hash::Sha384)) => {
                &rs::ECDSA_P384_SHA384_ASN1
            }
            (k, s) => {
                return Err(PkiError::BadSignature(format!(
                    "{s} is not available for the certificate's {k} key"
                )))
            }
        };
        Ok(alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_identifiers_round_trip() {
        for h in Hash::ALL {
            for s in [
                SignatureScheme::RsaPkcs1(h),
                SignatureScheme::RsaPss(h),
                SignatureScheme::Ecdsa(h),
            ] {
                let ai = s.algorithm_identifier();
                assert_eq!(
                    SignatureScheme::from_algorithm_identifier(&ai),
                    Ok(s),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn rfc7427_appendix_a_encodings() {
        // RFC 7427 A.1.2 (sha256WithRSAEncryption) and A.3.1 (ecdsa-with-sha256).
        assert_eq!(
            hex(&SignatureScheme::RsaPkcs1(Hash::Sha256).algorithm_identifier()),
            "300d06092a864886f70d01010b0500"
        );
        assert_eq!(
            hex(&SignatureScheme::Ecdsa(Hash::Sha256).algorithm_identifier()),
            "300a06082a8648ce3d040302"
        );
    }

    #[test]
    fn hostile_algorithm_identifiers_are_errors() {
        let sha1 = der::seq(&[
            &der::tlv(der::OID, oid::SHA1_WITH_RSA),
            &der::tlv(der::NULL, &[]),
        ]);
        assert!(SignatureScheme::from_algorithm_identifier(&sha1).is_err());
        for junk in [
            &[][..],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0x02, 0x06, 0x00],
            &[0xff; 40],
        ] {
            assert!(SignatureScheme::from_algorithm_identifier(junk).is_err());
        }
        // PSS with a salt that ring would not check is refused up front.
        let mut ai = SignatureScheme::RsaPss(Hash::Sha256).algorithm_identifier();
        let n = ai.len();
        ai[n - 1] = 20;
        assert!(SignatureScheme::from_algorithm_identifier(&ai).is_err());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
