//! Published test vectors through the engine's crypto paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sluice_esp::{Algorithm, Backend, Cipher};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

/// draft-mcgrew-gcm-test-01, the AES-128 case with SPI 0x00004321 and the
/// 64-bit extended sequence number 0x87654321_00000000 (key 4c80cdef...,
/// salt 2e443b68, IV 4956ed7e3b244cfe): AAD is SPI || seq_hi || seq_lo, as
/// RFC 4106 §5 builds it with ESN.
#[test]
fn mcgrew_gcm_test_aes128_spi_4321() {
    let key = h("4c80cdefbb5d10da906ac73c3613a634 2e443b68");
    let iv: [u8; 8] = h("4956ed7e3b244cfe").try_into().unwrap();
    let aad = h("00004321 87654321 00000000");
    let pt = h(
        "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000
                00000000045f736970045f756470037369700963796265726369747902646b00
                0021000101020201",
    );
    let ct_tag = h(
        "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34
                    cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce
                    61bc17d768fd9732459018148f6cbe722fd04796562dfdb4",
    );
    for backend in Backend::ALL {
        let c = Cipher::new(Algorithm::AesGcm128, backend, &key, &[]).unwrap();
        let mut buf = pt.clone();
        let tag = c.seal(&iv, &aad, &mut buf);
        assert_eq!(buf, ct_tag[..72], "{backend:?} ciphertext");
        assert_eq!(tag[..], ct_tag[72..], "{backend:?} tag");
        let mut back = buf.clone();
        c.open(&iv, &aad, &mut back, &tag).unwrap();
        assert_eq!(back, pt);
        let mut bad = tag;
        bad[15] ^= 1;
        assert!(c.open(&iv, &aad, &mut buf.clone(), &bad).is_err());
    }
}

/// RFC 7539 §2.8.2 (RFC 7634 builds its ESP nonce the same way: the 4-byte
/// salt from the key material, then the 8-byte IV).
#[test]
fn rfc7539_chacha20_poly1305_aead() {
    let key = h("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f 07000000");
    let iv: [u8; 8] = h("4041424344454647").try_into().unwrap();
    let aad = h("50515253c0c1c2c3c4c5c6c7");
    let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
    let ct = h(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
                3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
                92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
                3ff4def08e4b7a9de576d26586cec64b6116",
    );
    let tag = h("1ae10b594f09e26a7e902ecbd0600691");
    for backend in Backend::ALL {
        let c = Cipher::new(Algorithm::ChaCha20Poly1305, backend, &key, &[]).unwrap();
        let mut buf = pt.clone();
        let t = c.seal(&iv, &aad, &mut buf);
        assert_eq!(buf, ct, "{backend:?}");
        assert_eq!(t[..], tag[..], "{backend:?}");
        c.open(&iv, &aad, &mut buf, &t).unwrap();
        assert_eq!(buf, pt);
    }
}

/// RFC 4868 §2.7.2.1 test case AUTH256-1 (32-byte key of 0x0b, "Hi There"),
/// truncated to 128 bits as HMAC-SHA-256-128 sends it.
#[test]
fn rfc4868_hmac_sha256_128() {
    let c = Cipher::new(
        Algorithm::AesCbc128HmacSha256,
        Backend::Ring,
        &[0u8; 16],
        &[0x0b; 32],
    )
    .unwrap();
    let icv = c.mac(&[b"Hi ", b"There"]);
    assert_eq!(icv[..], h("198a607eb44bfbc69903a0f1cf2bbdc5")[..]);
    assert!(c.verify_mac(&[b"Hi There"], &icv).is_ok());
    let mut bad = icv;
    bad[0] ^= 0x80;
    assert!(c.verify_mac(&[b"Hi There"], &bad).is_err());
}

/// RFC 4868 §2.7.2.1 test case AUTH256-2 ("Jefe" repeated to 32 bytes).
#[test]
fn rfc4868_hmac_sha256_128_case2() {
    let c = Cipher::new(
        Algorithm::AesCbc256HmacSha256,
        Backend::Ring,
        &[0u8; 32],
        b"JefeJefeJefeJefeJefeJefeJefeJefe",
    )
    .unwrap();
    let icv = c.mac(&[b"what do ya want for nothing?"]);
    assert_eq!(icv[..], h("167f928588c5cc2eef8e3093caa0e87c")[..]);
}

/// RFC 3602 §4 case #1: AES-128-CBC, one block.
#[test]
fn rfc3602_aes_cbc_case1() {
    let key = h("06a9214036b8a15b512e03d534120006");
    let iv: [u8; 16] = h("3dafba429d9eb430b422da802c9fac41").try_into().unwrap();
    let c = Cipher::new(
        Algorithm::AesCbc128HmacSha256,
        Backend::Ring,
        &key,
        &[0u8; 32],
    )
    .unwrap();
    let mut buf = b"Single block msg".to_vec();
    c.cbc_encrypt(&iv, &mut buf);
    assert_eq!(buf, h("e353779c1079aeb82708942dbe77181a"));
    c.cbc_decrypt(&iv, &mut buf);
    assert_eq!(&buf, b"Single block msg");
}

#[test]
fn key_length_errors_say_what_was_expected() {
    let e = Cipher::new(Algorithm::AesGcm256, Backend::Ring, &[0; 20], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "aes-gcm-256: encryption key must be 36 bytes, got 20"
    );
    let e = Cipher::new(
        Algorithm::AesCbc128HmacSha256,
        Backend::Ring,
        &[0; 16],
        &[0; 20],
    )
    .unwrap_err();
    assert!(e.to_string().contains("integrity key must be 32 bytes"));
}
