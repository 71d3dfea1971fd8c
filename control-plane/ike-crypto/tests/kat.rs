//! Known answers: RFC 4231 for the PRFs, NIST's ACVP IKEv2 KDF vector, and a
//! full IKE SA / CHILD SA key derivation and PSK AUTH taken from a real
//! strongSwan's key log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ike_crypto::keys::{child_keys, ike_keys, psk_auth, skeyseed, skeyseed_rekey, IkeKeyLengths};
use ike_crypto::prf::Prf;
use std::collections::HashMap;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn fixture() -> HashMap<String, Vec<u8>> {
    include_str!("data/strongswan-psk-ikev2.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), h(v.trim()))
        })
        .collect()
}

/// RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?").
#[test]
fn rfc4231_case2_all_prfs() {
    let data: &[&[u8]] = &[b"what do ya ", b"want for nothing?"];
    assert_eq!(
        *Prf::HmacSha256.compute(b"Jefe", data),
        h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    assert_eq!(
        *Prf::HmacSha384.compute(b"Jefe", data),
        h("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649")
    );
    assert_eq!(
        *Prf::HmacSha512.compute(b"Jefe", data),
        h("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737")
    );
}

#[test]
fn prf_plus_is_the_rfc_7296_iteration() {
    let key = b"k";
    let seed: &[&[u8]] = &[b"se", b"ed"];
    let out = Prf::HmacSha256.plus(key, seed, 80).unwrap();
    let t1 = Prf::HmacSha256.compute(key, &[b"seed", &[1]]);
    let t2 = Prf::HmacSha256.compute(key, &[&t1, b"seed", &[2]]);
    let t3 = Prf::HmacSha256.compute(key, &[&t2, b"seed", &[3]]);
    assert_eq!(out[..32], t1[..]);
    assert_eq!(out[32..64], t2[..]);
    assert_eq!(out[64..], t3[..16]);
    assert!(Prf::HmacSha256.plus(key, seed, 255 * 32).is_some());
    assert!(
        Prf::HmacSha256.plus(key, seed, 255 * 32 + 1).is_none(),
        "at most 255 blocks"
    );
}

#[test]
fn strongswan_ike_sa_keys() {
    let f = fixture();
    let (ni, nr) = f["ni_nr"].split_at(32);
    let seed = skeyseed(Prf::HmacSha256, ni, nr, &f["g_ir"]);
    assert_eq!(*seed, f["skeyseed"]);
    let spi_i = u64::from_be_bytes(f["spi_i"].clone().try_into().unwrap());
    let spi_r = u64::from_be_bytes(f["spi_r"].clone().try_into().unwrap());
    // AES_CBC_128 / HMAC_SHA2_256_128 / PRF_HMAC_SHA2_256.
    let k = ike_keys(
        Prf::HmacSha256,
        &seed,
        ni,
        nr,
        spi_i,
        spi_r,
        IkeKeyLengths {
            integ: 32,
            encr: 16,
        },
    )
    .unwrap();
    assert_eq!(*k.sk_d, f["sk_d"]);
    assert_eq!(*k.sk_ai, f["sk_ai"]);
    assert_eq!(*k.sk_ar, f["sk_ar"]);
    assert_eq!(*k.sk_ei, f["sk_ei"]);
    assert_eq!(*k.sk_er, f["sk_er"]);
    assert_eq!(*k.sk_pi, f["sk_pi"]);
    assert_eq!(*k.sk_pr, f["sk_pr"]);
    assert_eq!(
        format!("{k:?}"),
        "IkeKeys { .. }",
        "secrets are never printed"
    );
}

#[test]
fn strongswan_child_sa_keys_aes_gcm_128() {
    let f = fixture();
    let (ni, nr) = f["ni_nr"].split_at(32);
    let c = child_keys(Prf::HmacSha256, &f["sk_d"], None, ni, nr, 20, 0).unwrap();
    assert_eq!(*c.encr_i, f["child_encr_i"]);
    assert_eq!(*c.encr_r, f["child_encr_r"]);
    assert!(c.integ_i.is_empty() && c.integ_r.is_empty());
}

#[test]
fn strongswan_psk_auth() {
    let f = fixture();
    let auth = psk_auth(
        Prf::HmacSha256,
        b"sluice-interop-psk-0123456789",
        &f["auth_octets_i"],
    );
    assert_eq!(*auth, f["auth_i"]);
    assert!(ike_crypto::keys::auth_matches(&auth, &f["auth_i"]));
    assert!(!ike_crypto::keys::auth_matches(&auth, &f["auth_i"][..31]));
    let wrong = psk_auth(
        Prf::HmacSha256,
        b"sluice-interop-psk-012345678",
        &f["auth_octets_i"],
    );
    assert!(!ike_crypto::keys::auth_matches(&wrong, &f["auth_i"]));
}

/// NIST ACVP IKEv2 KDF (SP 800-135 §4.1.2), HMAC-SHA2-256: SKEYSEED, the
/// IKE SA keying material, the CHILD SA keying material with and without a
/// fresh Diffie-Hellman value, and the rekeyed SKEYSEED, all through the
/// functions the daemon uses.
#[test]
fn nist_acvp_ikev2_kdf_sha256() {
    let v: HashMap<String, Vec<u8>> = include_str!("data/nist-acvp-ikev2-kdf-sha256.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
        .map(|l| {
            let (k, v) = l.split_once(" = ").unwrap();
            (k.trim().to_string(), h(v.trim()))
        })
        .collect();
    let g = |k: &str| v.get(k).unwrap_or_else(|| panic!("{k} missing")).clone();
    let (ni, nr, gir, gir_new) = (g("Ni"), g("Nr"), g("g^ir"), g("g^ir (new)"));
    let spi = |k: &str| u64::from_be_bytes(g(k).try_into().unwrap());
    let prf = Prf::HmacSha256;

    let seed = skeyseed(prf, &ni, &nr, &gir);
    assert_eq!(*seed, g("SKEYSEED"));

    // 3072 bits = SK_d, SK_pi, SK_pr (3 x 32 bytes) + 2 x 144 bytes.
    let dkm = g("DKM");
    assert_eq!(dkm.len(), 384);
    let k = ike_keys(
        prf,
        &seed,
        &ni,
        &nr,
        spi("SPIi"),
        spi("SPIr"),
        IkeKeyLengths {
            integ: 0,
            encr: 144,
        },
    )
    .unwrap();
    let all: Vec<u8> = [
        &k.sk_d, &k.sk_ai, &k.sk_ar, &k.sk_ei, &k.sk_er, &k.sk_pi, &k.sk_pr,
    ]
    .iter()
    .flat_map(|s| s.iter().copied())
    .collect();
    assert_eq!(all, dkm);
    assert_eq!(*k.sk_d, dkm[..32]);

    for (g_ir, name) in [
        (None, "DKM(Child SA)"),
        (Some(&gir_new[..]), "DKM(Child SA D-H)"),
    ] {
        let c = child_keys(prf, &k.sk_d, g_ir, &ni, &nr, 192, 0).unwrap();
        let km: Vec<u8> = [&c.encr_i, &c.integ_i, &c.encr_r, &c.integ_r]
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        assert_eq!(km, g(name), "{name}");
    }

    assert_eq!(
        *skeyseed_rekey(prf, &k.sk_d, &gir_new, &ni, &nr),
        g("SKEYSEED(Rekey)")
    );
}
