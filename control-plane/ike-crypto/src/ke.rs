//! Key exchange (RFC 7296 §1.2, KE payload §3.4): Curve25519 (group 31,
//! RFC 8031) and ECP-256/384 (groups 19/20, RFC 5903) through ring, which
//! validates peer public values (points on the curve; X25519 outputs that
//! are all zero, i.e. low-order peer points, are refused); MODP-2048/3072
//! (groups 14/15, RFC 3526) through crypto-bigint (constant-time exponentiation), with 1 < y < p-1 checked.

use crate::CryptoError;
use ring::agreement;
use zeroize::Zeroizing;

/// A Diffie-Hellman group (RFC 7296 §3.3.2 Transform Type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DhGroup {
    /// 2048-bit MODP group (14), RFC 3526.
    Modp2048,
    /// 3072-bit MODP group (15), RFC 3526.
    Modp3072,
    /// 256-bit random ECP group (19), RFC 5903.
    Ecp256,
    /// 384-bit random ECP group (20), RFC 5903.
    Ecp384,
    /// Curve25519 (31), RFC 8031.
    Curve25519,
}

impl DhGroup {
    /// From the IANA group number.
    pub fn from_id(id: u16) -> Option<DhGroup> {
        match id {
            14 => Some(DhGroup::Modp2048),
            15 => Some(DhGroup::Modp3072),
            19 => Some(DhGroup::Ecp256),
            20 => Some(DhGroup::Ecp384),
            31 => Some(DhGroup::Curve25519),
            _ => None,
        }
    }

    /// The IANA group number.
    pub fn id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => 14,
            DhGroup::Modp3072 => 15,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Curve25519 => 31,
        }
    }

    /// Length of the KE payload's key exchange data.
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Modp3072 => 384,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Curve25519 => 32,
        }
    }

    fn alg(self) -> Option<&'static agreement::Algorithm> {
        match self {
            DhGroup::Ecp256 => Some(&agreement::ECDH_P256),
            DhGroup::Ecp384 => Some(&agreement::ECDH_P384),
            DhGroup::Curve25519 => Some(&agreement::X25519),
            DhGroup::Modp2048 | DhGroup::Modp3072 => None,
        }
    }
}

/// Our half of one key exchange.
pub struct KeyExchange {
    group: DhGroup,
    private: Private,
    public: Vec<u8>,
}

enum Private {
    Ring(agreement::EphemeralPrivateKey),
    Modp(crate::modp::Modp),
}

impl core::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KeyExchange {
    /// A fresh ephemeral key pair (from the operating system's RNG, through
    /// ring).
    pub fn new(group: DhGroup) -> Result<KeyExchange, CryptoError> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let Some(alg) = group.alg() else {
            let mut x = [0u8; 64];
            rng.fill(&mut x).map_err(|_| CryptoError::Rng)?;
            let bits = if group == DhGroup::Modp2048 {
                2048
            } else {
                3072
            };
            let (m, public) = crate::modp::Modp::new(bits, x);
            zeroize::Zeroize::zeroize(&mut x);
            return Ok(KeyExchange {
                group,
                private: Private::Modp(m),
                public,
            });
        };
        let private =
            agreement::EphemeralPrivateKey::generate(alg, &rng).map_err(|_| CryptoError::Rng)?;
        let pk = private.compute_public_key().map_err(|_| CryptoError::Rng)?;
        // ECP: the KE payload carries x | y without the 0x04 prefix (RFC 5903 §7).
        let public = match group {
            DhGroup::Curve25519 => pk.as_ref().to_vec(),
            _ => pk.as_ref().get(1..).unwrap_or_default().to_vec(),
        };
        Ok(KeyExchange {
            group,
            private: Private::Ring(private),
            public,
        })
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public value, as sent in the KE payload.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// g^ir from the peer's KE data; the peer value is validated (length,
    /// on the curve, not low order).
    pub fn agree(self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if peer.len() != self.group.public_len() {
            return Err(CryptoError::BadPeerPublic {
                group: self.group.id(),
                reason: "wrong length",
            });
        }
        let group = self.group.id();
        let private = match self.private {
            Private::Modp(m) => {
                return m.agree(peer).ok_or(CryptoError::BadPeerPublic {
                    group,
                    reason: "not in 1 < y < p-1",
                });
            }
            Private::Ring(k) => k,
        };
        let peer_bytes = match self.group {
            DhGroup::Curve25519 => peer.to_vec(),
            _ => {
                let mut v = Vec::with_capacity(peer.len() + 1);
                v.push(0x04);
                v.extend_from_slice(peer);
                v
            }
        };
        let alg = self.group.alg().ok_or(CryptoError::BadPeerPublic {
            group,
            reason: "unsupported group",
        })?;
        let peer_key = agreement::UnparsedPublicKey::new(alg, peer_bytes);
        agreement::agree_ephemeral(private, &peer_key, |k| Zeroizing::new(k.to_vec())).map_err(
            |_| CryptoError::BadPeerPublic {
                group,
                reason: "not a valid public value",
            },
        )
    }
}
