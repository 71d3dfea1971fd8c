//! MODP Diffie-Hellman groups 14 and 15 (RFC 3526, 2048 and 3072 bits).
//!
//! Arithmetic comes from `crypto-bigint`, a maintained library whose
//! Montgomery exponentiation runs in time independent of the exponent's
//! value (it depends only on its fixed 512-bit precision), so the private
//! exponent does not leak through timing.

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use zeroize::Zeroizing;

/// Bits of the private exponent (64 random bytes).
const EXP_BITS: u32 = 512;

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

/// The group's prime as big-endian bytes.
fn prime_bytes(bits: usize) -> Vec<u8> {
    let hex: String = if bits == 2048 {
        P2048.concat()
    } else {
        P3072.concat()
    };
    // The constants are valid hex (checked by the tests).
    hex::decode(hex).unwrap_or_default()
}

/// Decode big-endian `bytes` at `bits` precision (None if it does not fit).
fn uint(bytes: &[u8], bits: usize) -> Option<BoxedUint> {
    BoxedUint::from_be_slice(bytes, u32::try_from(bits).ok()?).ok()
}

/// Montgomery parameters for the group's prime.
fn params(bits: usize) -> Option<BoxedMontyParams> {
    let p = uint(&prime_bytes(bits), bits)?;
    Option::<Odd<BoxedUint>>::from(Odd::new(p)).map(BoxedMontyParams::new)
}

/// `base^exp mod p`, big-endian and left-padded to the prime's length
/// (RFC 7296 §3.4); constant-time in `exp`.
fn pow(bits: usize, base: BoxedUint, exp: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let params = params(bits)?;
    let exp = Zeroizing::new(BoxedUint::from_be_slice(exp, EXP_BITS).ok()?);
    let z = Zeroizing::new(BoxedMontyForm::new(base, params).pow(&exp).retrieve());
    let out = Zeroizing::new(z.to_be_bytes().to_vec());
    (out.len() == bits / 8).then_some(out)
}

/// Our half of a MODP exchange.
pub(crate) struct Modp {
    bits: usize,
    /// The private exponent's bytes (zeroized, as are its decoded copy and
    /// the shared secret; the library's Montgomery temporaries are not).
    x: Zeroizing<Vec<u8>>,
}

impl Modp {
    /// A key pair from `random` (64 bytes: a 512-bit exponent, well above
    /// the 2 x 128-bit strength of these groups).
    pub(crate) fn new(bits: usize, random: [u8; 64]) -> (Modp, Vec<u8>) {
        let x = Zeroizing::new(random.to_vec());
        let y = uint(&[2], bits)
            .and_then(|g| pow(bits, g, &x))
            .map(|y| y.to_vec())
            .unwrap_or_default();
        (Modp { bits, x }, y)
    }

    /// g^xy mod p after checking 1 < y < p-1 (RFC 6989 §2.1: enough for
    /// safe-prime groups). The public value is not secret: the range check
    /// may take variable time.
    pub(crate) fn agree(&self, peer: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if peer.len() != self.bits / 8 {
            return None;
        }
        let p = uint(&prime_bytes(self.bits), self.bits)?;
        let y = uint(peer, self.bits)?;
        let one = uint(&[1], self.bits)?;
        let p_minus_1 = p.wrapping_sub(&one);
        if y.cmp_vartime(&one).is_le() || y.cmp_vartime(&p_minus_1).is_ge() {
            return None;
        }
        pow(self.bits, y, &self.x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(bits: usize, v: &BoxedUint) -> Vec<u8> {
        let b = v.to_be_bytes().to_vec();
        assert_eq!(b.len(), bits / 8);
        b
    }

    #[test]
    fn primes_are_rfc_3526() {
        for bits in [2048, 3072] {
            let b = prime_bytes(bits);
            assert_eq!(b.len() * 8, bits);
            // Both start with 64 one bits and C90FDAA2 (pi) and end with 64 one bits.
            assert_eq!(
                &b[..12],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x0f, 0xda, 0xa2]
            );
            assert_eq!(&b[b.len() - 8..], &[0xff; 8]);
            // Fermat check with base 3: 3^(p-1) = 1 (mod p), exponent at full width.
            let p = uint(&b, bits).unwrap();
            let one = uint(&[1], bits).unwrap();
            let params = params(bits).unwrap();
            let three = uint(&[3], bits).unwrap();
            let r = BoxedMontyForm::new(three, params)
                .pow(&p.wrapping_sub(&one))
                .retrieve();
            assert_eq!(be(bits, &r), be(bits, &one));
        }
    }

    #[test]
    fn small_exponents_give_known_powers_of_two() {
        // x = 1 -> y = 2; x = 10 -> y = 1024; x = 2047 -> 2^2047 mod p = 2^2047
        // (smaller than p, whose top 64 bits are set).
        for (x, want) in [(1u16, 2u128), (10, 1024), (100, 1u128 << 100)] {
            let mut r = [0u8; 64];
            r[62..].copy_from_slice(&x.to_be_bytes());
            let (_, y) = Modp::new(2048, r);
            let mut expect = vec![0u8; 256];
            expect[240..].copy_from_slice(&want.to_be_bytes());
            assert_eq!(y, expect, "2^{x}");
        }
        let mut r = [0u8; 64];
        r[62..].copy_from_slice(&2047u16.to_be_bytes());
        let (_, y) = Modp::new(2048, r);
        let mut expect = vec![0u8; 256];
        expect[0] = 0x80;
        assert_eq!(y, expect, "2^2047");
    }

    #[test]
    fn edge_values_are_refused_and_both_sides_agree() {
        for bits in [2048, 3072] {
            let (a, pa) = Modp::new(bits, [7u8; 64]);
            let (b, pb) = Modp::new(bits, [9u8; 64]);
            assert_eq!(pa.len(), bits / 8);
            assert_ne!(pa, pb);
            assert_eq!(*a.agree(&pb).unwrap(), *b.agree(&pa).unwrap());
            let p = uint(&prime_bytes(bits), bits).unwrap();
            let one = uint(&[1], bits).unwrap();
            let zero = uint(&[0], bits).unwrap();
            let pm1 = p.wrapping_sub(&one);
            for bad in [&pm1, &p, &one, &zero] {
                assert!(a.agree(&be(bits, bad)).is_none(), "{bad:?} accepted");
            }
            assert!(
                a.agree(&be(bits, &pm1.wrapping_sub(&one))).is_some(),
                "p-2 is a valid value"
            );
            assert!(a.agree(&pb[1..]).is_none(), "short value accepted");
        }
    }
}
