//! Certificates: ours (a [`Credential`]), the CAs and CRLs we trust (a
//! [`TrustStore`]) and a peer's, once its chain validated (a [`PeerCert`]).

use crate::der::oid;
use crate::key::{KeyKind, PrivateKey};
use crate::sig::{AuthMethod, Hash, PublicKey, SignatureScheme};
use crate::{is_pem, read_file, PkiError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;
use webpki::{
    CertRevocationList, ExpirationPolicy, ExtendedKeyUsageValidator, KeyPurposeId,
    KeyPurposeIdIter, OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder,
    UnknownStatusPolicy,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as ParsedKey;

/// Most certificates one chain may hold (peers send their chain in CERT
/// payloads; anything longer is refused before any signature is checked).
pub const MAX_CHAIN: usize = 8;

/// What a certificate says, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// The subject Name (DER), compared with ID_DER_ASN1_DN identities.
    pub subject_der: Vec<u8>,
    /// The subject, for logs (`C=XX, O=..., CN=...`).
    pub subject: String,
    /// The issuer, for logs.
    pub issuer: String,
    /// Serial number, hex with colons.
    pub serial: String,
    /// End of validity, for logs.
    pub not_after: String,
    /// subjectAltName dNSName entries.
    pub dns: Vec<String>,
    /// subjectAltName rfc822Name entries.
    pub emails: Vec<String>,
    /// subjectAltName iPAddress entries.
    pub ips: Vec<IpAddr>,
    /// False when a keyUsage extension allows neither digitalSignature nor
    /// nonRepudiation.
    pub signing_allowed: bool,
    /// SHA-1 of the SubjectPublicKeyInfo: what CERTREQ names a CA by
    /// (RFC 7296 §3.7).
    pub spki_sha1: [u8; 20],
    key: PublicKey,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, PkiError> {
        let bad = |m: String| PkiError::Parse(format!("certificate: {m}"));
        let (rest, c) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes".into()));
        }
        let (mut dns, mut emails, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        let san = c
            .subject_alternative_name()
            .map_err(|e| bad(format!("subjectAltName: {e}")))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(s) => dns.push(s.to_string()),
                GeneralName::RFC822Name(s) => emails.push(s.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.extend(<[u8; 4]>::try_from(*b).ok().map(IpAddr::from)),
                    16 => ips.extend(<[u8; 16]>::try_from(*b).ok().map(IpAddr::from)),
                    _ => {}
                },
                _ => {}
            }
        }
        let signing_allowed = match c.key_usage().map_err(|e| bad(format!("keyUsage: {e}")))? {
            Some(ku) => ku.value.digital_signature() || ku.value.non_repudiation(),
            None => true,
        };
        let spki = c.public_key();
        let alg = spki.algorithm.algorithm.as_bytes();
        let kind = if alg == oid::RSA_ENCRYPTION {
            match spki.parsed() {
                Ok(ParsedKey::RSA(k)) => KeyKind::Rsa { bits: k.key_size() },
                _ => return Err(bad("malformed RSA public key".into())),
            }
        } else if alg == oid::EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve.as_ref().map(|o| o.as_bytes()) {
                Some(o) if o == oid::P256 => KeyKind::EcdsaP256,
                Some(o) if o == oid::P384 => KeyKind::EcdsaP384,
                Some(o) if o == oid::P521 => KeyKind::EcdsaP521,
                _ => return Err(bad("EC key on an unsupported curve".into())),
            }
        } else {
            return Err(bad(format!(
                "unsupported public key algorithm {}",
                spki.algorithm.algorithm
            )));
        };
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, spki.raw);
        let mut spki_sha1 = [0; 20];
        spki_sha1.copy_from_slice(sha1.as_ref());
        Ok(CertInfo {
            der: der.to_vec(),
            subject_der: c.subject().as_raw().to_vec(),
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            serial: c.raw_serial_as_string(),
            not_after: c.validity().not_after.to_string(),
            dns,
            emails,
            ips,
            signing_allowed,
            spki_sha1,
            key: PublicKey {
                kind,
                bytes: spki.subject_public_key.data.to_vec(),
            },
        })
    }

    /// The certified key's kind.
    pub fn key_kind(&self) -> KeyKind {
        self.key.kind
    }
}

/// Reads every certificate of a PEM file (in order), or one DER certificate.
pub fn load_certs(path: &Path) -> Result<Vec<Vec<u8>>, PkiError> {
    let bytes = read_file(path)?;
    if !is_pem(&bytes) {
        return Ok(vec![bytes]);
    }
    let certs: Result<Vec<Vec<u8>>, _> = CertificateDer::pem_slice_iter(&bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect();
    let certs = certs.map_err(|e| PkiError::Parse(format!("{}: {e:?}", path.display())))?;
    if certs.is_empty() {
        return Err(PkiError::Parse(format!(
            "{}: no CERTIFICATE block",
            path.display()
        )));
    }
    Ok(certs)
}

/// Our certificate chain (leaf first) and the key it certifies.
pub struct Credential {
    key: PrivateKey,
    chain: Vec<CertInfo>,
    rsa_pss: bool,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("subject", &self.chain.first().map(|c| &c.subject))
            .field("key", &self.key)
            .finish()
    }
}

impl Credential {
    /// A key and its chain, leaf first; the leaf must certify the key.
    pub fn new(key: PrivateKey, chain: &[Vec<u8>]) -> Result<Credential, PkiError> {
        if chain.is_empty() || chain.len() > MAX_CHAIN {
            return Err(PkiError::Parse(format!(
                "a certificate chain of 1 to {MAX_CHAIN} certificates is required"
            )));
        }
        let chain = chain
            .iter()
            .map(|c| CertInfo::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        if chain[0].key.bytes != key.public_key() {
            return Err(PkiError::Parse(format!(
                "the private key does not belong to the certificate \"{}\"",
                chain[0].subject
            )));
        }
        Ok(Credential {
            key,
            chain,
            rsa_pss: false,
        })
    }

    /// Loads a certificate file (leaf first, then intermediates) and a key
    /// file (see [`PrivateKey::load`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Credential, PkiError> {
        let chain = load_certs(cert)?;
        Credential::new(PrivateKey::load(key)?, &chain)
            .map_err(|e| PkiError::Parse(format!("{} with {}: {e}", cert.display(), key.display())))
    }

    /// Signs with RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys, RFC 7427).
    pub fn with_rsa_pss(mut self, on: bool) -> Credential {
        self.rsa_pss = on;
        self
    }

    /// Our end-entity certificate.
    pub fn leaf(&self) -> &CertInfo {
        &self.chain[0]
    }

    /// The chain as configured, leaf first.
    pub fn chain(&self) -> &[CertInfo] {
        &self.chain
    }

    /// The AUTH payload (method, data) over `octets` (RFC 7296 §2.15),
    /// and a description for logs. `peer_hashes` are the hashes of the
    /// peer's SIGNATURE_HASH_ALGORITHMS: with any, RFC 7427's Digital
    /// Signature with the first hash suiting our key that the peer
    /// supports; without, ECDSA's classic methods 9/10.
    pub fn sign_auth(
        &self,
        octets: &[u8],
        peer_hashes: &[u16],
    ) -> Result<(u8, Vec<u8>, String), PkiError> {
        let kind = self.key.kind();
        if peer_hashes.is_empty() {
            let (method, scheme, name) = match kind {
                KeyKind::EcdsaP256 => (
                    AuthMethod::ECDSA_256,
                    SignatureScheme::Ecdsa(Hash::Sha256),
                    "ECDSA-256 signature (AUTH method 9)",
                ),
                KeyKind::EcdsaP384 => (
                    AuthMethod::ECDSA_384,
                    SignatureScheme::Ecdsa(Hash::Sha384),
                    "ECDSA-384 signature (AUTH method 10)",
                ),
                KeyKind::EcdsaP521 => (
                    AuthMethod::ECDSA_521,
                    SignatureScheme::Ecdsa(Hash::Sha512),
                    "ECDSA-521 signature (AUTH method 11)",
                ),
                KeyKind::Rsa { .. } => {
                    return Err(PkiError::Unsupported(format!(
                        "the peer does not support RFC 7427 signatures, and {kind} would need \
                         RSA with SHA-1 (AUTH method 1), which Sluice does not send"
                    )))
                }
            };
            let sig = self.key.sign(scheme, true, octets)?;
            return Ok((method, sig, name.into()));
        }
        let ecdsa = self.key.ecdsa_hash().map(|h| [h]);
        let prefs: &[Hash] = match &ecdsa {
            Some(h) => h,
            None => &[Hash::Sha256, Hash::Sha384, Hash::Sha512],
        };
        let hash = prefs
            .iter()
            .copied()
            .find(|h| peer_hashes.contains(&h.id()))
            .ok_or_else(|| {
                PkiError::Unsupported(format!(
                    "the peer's signature hashes {peer_hashes:?} include none {kind} signs with"
                ))
            })?;
        let scheme = match kind {
            KeyKind::Rsa { .. } if self.rsa_pss => SignatureScheme::RsaPss(hash),
            KeyKind::Rsa { .. } => SignatureScheme::RsaPkcs1(hash),
            _ => SignatureScheme::Ecdsa(hash),
        };
        let sig = self.key.sign(scheme, false, octets)?;
        let ai = scheme.algorithm_identifier();
        let mut data = Vec::with_capacity(1 + ai.len() + sig.len());
        data.push(ai.len() as u8);
        data.extend_from_slice(&ai);
        data.extend_from_slice(&sig);
        Ok((AuthMethod::DIGITAL_SIGNATURE, data, scheme.to_string()))
    }
}

/// A peer certificate whose chain validated.
#[derive(Debug, Clone)]
pub struct PeerCert {
    info: CertInfo,
    /// The CA the chain ends at (subject), for logs.
    pub anchor: String,
}

impl PeerCert {
    /// What the certificate says.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Verifies the peer's AUTH payload (method, data) over `octets`; on
    /// success says which signature scheme it used.
    pub fn verify_auth(&self, method: u8, data: &[u8], octets: &[u8]) -> Result<String, PkiError> {
        self.info.key.verify_auth(method, data, octets)
    }
}

/// Extended key usage acceptable for IKE (RFC 4945 §5.1.3.12): none, or
/// one of serverAuth, clientAuth, ipsecIKE, anyExtendedKeyUsage (as
/// strongSwan and most CAs issue them).
struct IkeEku;

impl ExtendedKeyUsageValidator for IkeEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let ok = [
            oid::KP_SERVER_AUTH,
            oid::KP_CLIENT_AUTH,
            oid::KP_IPSEC_IKE,
            oid::KP_ANY,
        ]
        .map(KeyPurposeId::new);
        let mut empty = true;
        for id in iter {
            empty = false;
            if ok.contains(&id?) {
                return Ok(());
            }
        }
        if empty {
            return Ok(());
        }
        #[allow(deprecated)]
        Err(webpki::Error::RequiredEkuNotFound)
    }
}

/// Signature algorithms accepted in certificates.
static CERT_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    webpki::ring::ED25519,
];

/// The CA certificates a peer's chain must end at, and the CRLs that
/// revoke.
pub struct TrustStore {
    cas: Vec<CertInfo>,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field(
                "cas",
                &self.cas.iter().map(|c| &c.subject).collect::<Vec<_>>(),
            )
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl TrustStore {
    /// From DER CA certificates and DER CRLs.
    pub fn new(cas: &[Vec<u8>], crls: &[Vec<u8>]) -> Result<TrustStore, PkiError> {
        if cas.is_empty() {
            return Err(PkiError::Parse(
                "at least one CA certificate is required".into(),
            ));
        }
        let mut infos = Vec::new();
        let mut anchors = Vec::new();
        for der in cas {
            let info = CertInfo::parse(der)?;
            let cert = CertificateDer::from(der.as_slice());
            let a = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| PkiError::Parse(format!("CA \"{}\": {e:?}", info.subject)))?;
            anchors.push(a.to_owned());
            infos.push(info);
        }
        let crls = crls
            .iter()
            .map(|d| {
                OwnedCertRevocationList::from_der(d)
                    .map(CertRevocationList::from)
                    .map_err(|e| PkiError::Parse(format!("CRL: {e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustStore {
            cas: infos,
            anchors,
            crls,
        })
    }

    /// From CA certificate files and CRL files (PEM or DER).
    pub fn load(ca_files: &[&Path], crl_files: &[&Path]) -> Result<TrustStore, PkiError> {
        let mut cas = Vec::new();
        for f in ca_files {
            cas.extend(load_certs(f)?);
        }
        let mut crls = Vec::new();
        for f in crl_files {
            let bytes = read_file(f)?;
            if is_pem(&bytes) {
                for c in CertificateRevocationListDer::pem_slice_iter(&bytes) {
                    let c = c.map_err(|e| PkiError::Parse(format!("{}: {e:?}", f.display())))?;
                    crls.push(c.to_vec());
                }
            } else {
                crls.push(bytes);
            }
        }
        TrustStore::new(&cas, &crls)
    }

    /// The trusted CAs.
    pub fn cas(&self) -> &[CertInfo] {
        &self.cas
    }

    /// How many CRLs are loaded.
    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// CERTREQ data: the SHA-1 hashes of our CAs' public keys (§3.7).
    pub fn certreq(&self) -> Vec<u8> {
        self.cas.iter().flat_map(|c| c.spki_sha1).collect()
    }

    /// Whether a CERTREQ's data names one of `chain`'s issuers or the
    /// chain's own certificates (so the peer trusts what we send).
    pub fn certreq_names(certreq: &[u8], chain: &[CertInfo]) -> bool {
        certreq
            .chunks_exact(20)
            .any(|h| chain.iter().any(|c| c.spki_sha1 == h))
    }

    /// Validates a peer's end-entity certificate `ee` with `intermediates`
    /// at `now`: a path to one of our CAs, every signature, validity,
    /// basic constraints and EKU (webpki), revocation by our CRLs (an
    /// expired CRL still revokes; a CA without a CRL revokes nothing), and
    /// a keyUsage that allows signing.
    pub fn verify(
        &self,
        ee: &[u8],
        intermediates: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<PeerCert, PkiError> {
        if intermediates.len() >= MAX_CHAIN {
            return Err(PkiError::Untrusted(format!(
                "{} intermediate certificates (at most {})",
                intermediates.len(),
                MAX_CHAIN - 1
            )));
        }
        let info = CertInfo::parse(ee)?;
        let ee_der = CertificateDer::from(ee);
        let cert = webpki::EndEntityCert::try_from(&ee_der)
            .map_err(|e| PkiError::Parse(format!("\"{}\": {e:?}", info.subject)))?;
        let inters: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        let time = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        let path = cert
            .verify_for_usage(
                CERT_ALGS,
                &self.anchors,
                &inters,
                time,
                IkeEku,
                revocation,
                None,
            )
            .map_err(|e| match e {
                webpki::Error::CertRevoked => PkiError::Revoked(format!(
                    "\"{}\" (serial {}) or a CA above it is revoked by a CRL",
                    info.subject, info.serial
                )),
                e => PkiError::Untrusted(format!("\"{}\": {e:?}", info.subject)),
            })?;
        if !info.signing_allowed {
            return Err(PkiError::Untrusted(format!(
                "\"{}\": keyUsage allows no digital signatures",
                info.subject
            )));
        }
        let anchor_subject = path.anchor().subject.as_ref();
        let anchor = self
            .cas
            .iter()
            .find(|c| {
                // The anchor holds the Name's contents; ours has its header too.
                c.subject_der.ends_with(anchor_subject)
                    && c.subject_der.len() <= anchor_subject.len() + 4
            })
            .map_or_else(|| "?".to_string(), |c| c.subject.clone());
        Ok(PeerCert { info, anchor })
    }
}
