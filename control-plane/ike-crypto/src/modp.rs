//! MODP Diffie-Hellman groups 14 and 15 (RFC 3526, 2048 and 3072 bits).
//!
//! Arithmetic comes from `num-bigint`, a maintained library; its modular
//! exponentiation is not constant-time, which matters little for ephemeral
//! exponents used once but is why the elliptic-curve groups (ring) are
//! preferred in the defaults.

use num_bigint::BigUint;
use zeroize::Zeroizing;

/// RFC 3526 §3, the 2048-bit MODP group (14); generator 2.
const P2048: [&str; 8] = [
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
];

/// RFC 3526 §4, the 3072-bit MODP group (15); generator 2.
const P3072: [&str; 12] = [
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
];

fn prime(bits: usize) -> BigUint {
    let hex: String = if bits == 2048 {
        P2048.concat()
    } else {
        P3072.concat()
    };
    // The constants are valid hex (checked by the tests).
    BigUint::parse_bytes(hex.as_bytes(), 16).unwrap_or_default()
}

/// Big-endian, left-padded to the prime's length (RFC 7296 §3.4).
fn to_fixed(v: &BigUint, len: usize) -> Vec<u8> {
    let b = v.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

/// Our half of a MODP exchange.
pub(crate) struct Modp {
    bits: usize,
    /// The private exponent's bytes (zeroized; the BigUint copies made
    /// during exponentiation are not).
    x: Zeroizing<Vec<u8>>,
}

impl Modp {
    /// A key pair from `random` (64 bytes: a 512-bit exponent, well above
    /// the 2 x 128-bit strength of these groups).
    pub(crate) fn new(bits: usize, random: [u8; 64]) -> (Modp, Vec<u8>) {
        let p = prime(bits);
        let x = Zeroizing::new(random.to_vec());
        let y = BigUint::from(2u32).modpow(&BigUint::from_bytes_be(&x), &p);
        (Modp { bits, x }, to_fixed(&y, bits / 8))
    }

    /// g^xy mod p after checking 1 < y < p-1 (RFC 6989 §2.1: enough for
    /// safe-prime groups).
    pub(crate) fn agree(&self, peer: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let p = prime(self.bits);
        if peer.len() != self.bits / 8 {
            return None;
        }
        let y = BigUint::from_bytes_be(peer);
        let one = BigUint::from(1u32);
        if y <= one || y >= &p - &one {
            return None;
        }
        let z = y.modpow(&BigUint::from_bytes_be(&self.x), &p);
        Some(Zeroizing::new(to_fixed(&z, self.bits / 8)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_rfc_3526() {
        for bits in [2048, 3072] {
            let p = prime(bits);
            assert_eq!(p.bits(), bits as u64);
            let b = p.to_bytes_be();
            // Both start with 64 one bits and C90FDAA2 (pi) and end with 64 one bits.
            assert_eq!(
                &b[..12],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x0f, 0xda, 0xa2]
            );
            assert_eq!(&b[b.len() - 8..], &[0xff; 8]);
            // Fermat check with base 3: 3^(p-1) = 1 (mod p).
            let one = BigUint::from(1u32);
            assert_eq!(BigUint::from(3u32).modpow(&(&p - &one), &p), one);
        }
    }

    #[test]
    fn edge_values_are_refused_and_both_sides_agree() {
        let (a, pa) = Modp::new(2048, [7u8; 64]);
        let (b, pb) = Modp::new(2048, [9u8; 64]);
        assert_eq!(pa.len(), 256);
        assert_eq!(*a.agree(&pb).unwrap(), *b.agree(&pa).unwrap());
        let p = prime(2048);
        let one = BigUint::from(1u32);
        for bad in [&p - &one, p.clone(), one.clone(), BigUint::default()] {
            assert!(a.agree(&to_fixed(&bad, 256)).is_none(), "{bad:x} accepted");
        }
        assert!(
            a.agree(&to_fixed(&(&p - &one - &one), 256)).is_some(),
            "p-2 is a valid value"
        );
    }
}
