//! Key exchange agreement and validation; SK payload round trips and
//! tamper detection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ike_crypto::ke::{DhGroup, KeyExchange};
use ike_crypto::sk::{Integ, SkKeys, Suite};
use ike_crypto::CryptoError;

const GROUPS: [DhGroup; 5] = [
    DhGroup::Curve25519,
    DhGroup::Ecp256,
    DhGroup::Ecp384,
    DhGroup::Modp2048,
    DhGroup::Modp3072,
];

#[test]
fn both_sides_agree() {
    for g in GROUPS {
        let a = KeyExchange::new(g).unwrap();
        let b = KeyExchange::new(g).unwrap();
        assert_eq!(a.public().len(), g.public_len());
        let (pa, pb) = (a.public().to_vec(), b.public().to_vec());
        let ka = a.agree(&pb).unwrap();
        let kb = b.agree(&pa).unwrap();
        assert_eq!(*ka, *kb, "{g:?}");
        assert_eq!(DhGroup::from_id(g.id()), Some(g));
    }
}

#[test]
fn bad_peer_values_are_refused() {
    for g in GROUPS {
        let short = vec![1u8; g.public_len() - 1];
        assert!(matches!(
            KeyExchange::new(g).unwrap().agree(&short),
            Err(CryptoError::BadPeerPublic { .. })
        ));
    }
    // X25519: the all-zero point (low order) gives an all-zero secret.
    let e = KeyExchange::new(DhGroup::Curve25519)
        .unwrap()
        .agree(&[0u8; 32])
        .unwrap_err();
    assert!(e.to_string().contains("group 31"));
    // MODP: 0, 1 and values >= p are refused (RFC 6989 §2.1; p-1 in modp.rs).
    for g in [DhGroup::Modp2048, DhGroup::Modp3072] {
        let n = g.public_len();
        let one = {
            let mut v = vec![0u8; n];
            v[n - 1] = 1;
            v
        };
        for bad in [vec![0u8; n], one, vec![0xff; n]] {
            let e = KeyExchange::new(g).unwrap().agree(&bad).unwrap_err();
            assert!(e.to_string().contains(&format!("group {}", g.id())), "{e}");
        }
    }
    // ECP: coordinates that are not on the curve.
    for g in [DhGroup::Ecp256, DhGroup::Ecp384] {
        let off = vec![0x42u8; g.public_len()];
        assert!(KeyExchange::new(g).unwrap().agree(&off).is_err(), "{g:?}");
    }
}

fn suites() -> Vec<Suite> {
    vec![
        Suite::AesCbc {
            key_len: 16,
            integ: Integ::HmacSha256_128,
        },
        Suite::AesCbc {
            key_len: 32,
            integ: Integ::HmacSha384_192,
        },
        Suite::AesCbc {
            key_len: 32,
            integ: Integ::HmacSha512_256,
        },
        Suite::AesGcm16 { key_len: 16 },
        Suite::AesGcm16 { key_len: 32 },
    ]
}

fn keys(s: Suite) -> SkKeys {
    let e: Vec<u8> = (0..s.encr_key_len() as u8).collect();
    let i: Vec<u8> = (0..s.integ_key_len() as u8).map(|x| x ^ 0x5c).collect();
    SkKeys::new(s, &e, &i).unwrap()
}

#[test]
fn sk_round_trip_and_tamper_detection() {
    let header = [0x11u8; 32];
    for s in suites() {
        let k = keys(s);
        for len in [0usize, 1, 15, 16, 17, 100, 1000] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let iv = vec![7u8; s.iv_len()];
            let body = k.seal(&header, &pt, &iv).unwrap();
            assert_eq!(body.len(), s.body_len(len), "{s:?}");
            assert_eq!(k.open(&header, &body).unwrap(), pt, "{s:?} len {len}");
            for at in [0, body.len() / 2, body.len() - 1] {
                let mut bad = body.clone();
                bad[at] ^= 1;
                assert_eq!(
                    k.open(&header, &bad),
                    Err(CryptoError::IntegrityCheck),
                    "{s:?} at {at}"
                );
            }
            let mut h2 = header;
            h2[3] ^= 1;
            assert_eq!(
                k.open(&h2, &body),
                Err(CryptoError::IntegrityCheck),
                "header is authenticated"
            );
        }
        assert_eq!(k.open(&header, &[0u8; 3]), Err(CryptoError::Truncated));
        assert_eq!(k.seal(&header, b"x", &[0u8; 3]), Err(CryptoError::IvLength));
    }
    assert!(
        SkKeys::new(Suite::AesGcm16 { key_len: 16 }, &[0u8; 16], &[]).is_err(),
        "salt missing"
    );
}
