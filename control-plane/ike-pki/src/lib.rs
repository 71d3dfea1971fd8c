//! Public-key authentication for IKE: what a certificate-authenticated
//! tunnel needs beyond the key exchange.
//!
//! - [`PrivateKey`]: RSA and ECDSA (P-256, P-384, P-521) keys from PEM or DER
//!   files in PKCS#8, SEC1 or PKCS#1 form, refused when the file is readable
//!   by anyone but its owner.
//! - [`Credential`]: our certificate chain and its key; signs AUTH payloads
//!   (RFC 7296 §3.8 methods 9, 10 and 11, RFC 7427 digital signatures with
//!   RSA PKCS#1 v1.5, RSA-PSS or ECDSA over SHA-256/384/512).
//! - [`TrustStore`]: CA certificates and CRLs; validates a peer's chain
//!   (rustls-webpki: signatures, validity, basic constraints, path length,
//!   extended key usage, revocation) and yields a [`PeerCert`] whose
//!   identities and key verify the peer's AUTH payload.
//!
//! Parsing is x509-parser's, signatures ring's (P-521: RustCrypto's p521,
//! which ring lacks); nothing here
//! implements a primitive. Every input is treated as hostile: errors, not
//! panics.

mod der;
mod key;
mod sig;
mod trust;

pub use key::{KeyKind, PrivateKey};
pub use sig::{AuthMethod, Hash, SignatureScheme};
pub use trust::{load_certs, CertInfo, Credential, PeerCert, TrustStore, MAX_CHAIN};

/// Why a certificate, key or signature was not accepted. The message is
/// for an operator's log: it names the file or certificate and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PkiError {
    /// A file could not be read, or is unsafe to use (permissions).
    File(String),
    /// Malformed PEM/DER, key or certificate.
    Parse(String),
    /// The peer's chain does not validate (webpki's reason inside).
    Untrusted(String),
    /// A CRL revokes a certificate of the chain.
    Revoked(String),
    /// The certificate does not carry the identity.
    IdentityMismatch(String),
    /// The AUTH payload's signature is wrong or its method unacceptable.
    BadSignature(String),
    /// Not implemented: RSA with SHA-1 signing, EdDSA.
    Unsupported(String),
}

impl std::fmt::Display for PkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, m) = match self {
            PkiError::File(m) => ("file", m),
            PkiError::Parse(m) => ("malformed", m),
            PkiError::Untrusted(m) => ("untrusted", m),
            PkiError::Revoked(m) => ("revoked", m),
            PkiError::IdentityMismatch(m) => ("identity mismatch", m),
            PkiError::BadSignature(m) => ("bad signature", m),
            PkiError::Unsupported(m) => ("unsupported", m),
        };
        write!(f, "{what}: {m}")
    }
}

impl std::error::Error for PkiError {}

/// Reads a file whose contents may be PEM (any number of blocks) or a
/// single DER object.
fn read_file(path: &std::path::Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|e| PkiError::File(format!("{}: {e}", path.display())))
}

/// Whether bytes look like PEM rather than DER.
fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}
