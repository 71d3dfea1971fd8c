//! Certificates made with rcgen in the test, keys from tests/data (made
//! once with openssl; test-only keys): chains, revocation, EKU and key
//! usage, every signature scheme, key formats and file permissions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cloned_ref_to_slice_refs,
    missing_docs
)]

use ike_pki::{AuthMethod, Credential, KeyKind, PkiError, PrivateKey, TrustStore};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use std::time::SystemTime;

const RSA_PKCS8: &str = include_str!("data/rsa2048.pkcs8.pem");
const RSA_PKCS1: &str = include_str!("data/rsa2048.pkcs1.pem");
const P256_PKCS8: &str = include_str!("data/p256.pkcs8.pem");
const P256_SEC1: &str = include_str!("data/p256.sec1.pem");
const P384_PKCS8: &str = include_str!("data/p384.pkcs8.pem");
const P384_SEC1: &str = include_str!("data/p384.sec1.pem");
const P521_PKCS8: &str = include_str!("data/p521.pkcs8.pem");
const P521_SEC1: &str = include_str!("data/p521.sec1.pem");
// rcgen (on ring) cannot certify a P-521 key: a fixture made with openssl,
// valid until 2126, under its own P-256 CA.
const P521_CERT: &str = include_str!("data/p521.cert.pem");
const P521_CA: &str = include_str!("data/p521-ca.cert.pem");

const OCTETS: &[u8] = b"InitiatorSignedOctets: message | nonce | prf(SK_pi, IDi')";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
}

fn ca(cn: &str, key: KeyPair, parent: Option<&Ca>) -> Ca {
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = match parent {
        None => p.self_signed(&key).unwrap(),
        Some(parent) => p.signed_by(&key, &parent.issuer).unwrap(),
    };
    Ca {
        issuer: Issuer::new(p, key),
        der: cert.der().to_vec(),
    }
}

fn ecdsa_ca(cn: &str) -> Ca {
    ca(
        cn,
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        None,
    )
}

/// An end-entity certificate for `key_pem`, tweaked by `f`.
fn ee(key_pem: &str, issuer: &Ca, serial: u64, f: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    // rcgen reads PKCS#8 only; the PKCS#1 file holds the same key.
    let key = KeyPair::from_pem(if key_pem == RSA_PKCS1 {
        RSA_PKCS8
    } else {
        key_pem
    })
    .unwrap();
    let mut p = CertificateParams::new(vec!["gw.example.net".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CountryName, "XX");
    p.distinguished_name
        .push(DnType::OrganizationName, "Sluice Test");
    p.distinguished_name
        .push(DnType::CommonName, "gw.example.net");
    p.subject_alt_names
        .push(SanType::IpAddress("198.18.0.1".parse().unwrap()));
    p.subject_alt_names
        .push(SanType::Rfc822Name("ops@example.net".try_into().unwrap()));
    p.serial_number = Some(SerialNumber::from(serial));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    f(&mut p);
    p.signed_by(&key, &issuer.issuer).unwrap().der().to_vec()
}

fn cred(key_pem: &str, chain: &[Vec<u8>]) -> Credential {
    Credential::new(PrivateKey::from_bytes(key_pem.as_bytes()).unwrap(), chain).unwrap()
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn every_key_format_loads_and_matches_its_kind() {
    for (pem, kind) in [
        (RSA_PKCS8, KeyKind::Rsa { bits: 2048 }),
        (RSA_PKCS1, KeyKind::Rsa { bits: 2048 }),
        (P256_PKCS8, KeyKind::EcdsaP256),
        (P256_SEC1, KeyKind::EcdsaP256),
        (P384_PKCS8, KeyKind::EcdsaP384),
        (P384_SEC1, KeyKind::EcdsaP384),
        (P521_PKCS8, KeyKind::EcdsaP521),
        (P521_SEC1, KeyKind::EcdsaP521),
    ] {
        let k = PrivateKey::from_bytes(pem.as_bytes()).unwrap();
        assert_eq!(k.kind(), kind, "{}", &pem[..40]);
    }
    // The same key in two formats is the same key.
    let a = PrivateKey::from_bytes(P256_SEC1.as_bytes()).unwrap();
    let b = PrivateKey::from_bytes(P256_PKCS8.as_bytes()).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    for junk in [
        &b""[..],
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        &[0x30; 64],
    ] {
        assert!(PrivateKey::from_bytes(junk).is_err());
    }
}

#[test]
fn key_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("ike-pki-perm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("k.pem");
    std::fs::write(&f, P256_SEC1).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = PrivateKey::load(&f).unwrap_err();
    assert!(
        matches!(&e, PkiError::File(m) if m.contains("chmod 600")),
        "{e}"
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(PrivateKey::load(&f).unwrap().kind(), KeyKind::EcdsaP256);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_key_must_belong_to_its_certificate() {
    let ca = ecdsa_ca("CA");
    let cert = ee(P256_PKCS8, &ca, 1, |_| {});
    let other = PrivateKey::from_bytes(P384_PKCS8.as_bytes()).unwrap();
    assert!(Credential::new(other, &[cert.clone()]).is_err());
    assert!(Credential::new(
        PrivateKey::from_bytes(P256_SEC1.as_bytes()).unwrap(),
        &[cert]
    )
    .is_ok());
}

#[test]
fn every_scheme_signs_and_verifies() {
    let ca = ecdsa_ca("CA");
    let trust = TrustStore::new(&[ca.der.clone()], &[]).unwrap();
    let all = [2u16, 3, 4];
    let cases: &[(&str, bool, &[u16], u8, &str)] = &[
        (
            P256_PKCS8,
            false,
            &all,
            AuthMethod::DIGITAL_SIGNATURE,
            "ECDSA_WITH_SHA256_DER",
        ),
        (
            P384_PKCS8,
            false,
            &all,
            AuthMethod::DIGITAL_SIGNATURE,
            "ECDSA_WITH_SHA384_DER",
        ),
        (P256_PKCS8, false, &[], AuthMethod::ECDSA_256, "method 9"),
        (P384_PKCS8, false, &[], AuthMethod::ECDSA_384, "method 10"),
        (
            RSA_PKCS8,
            false,
            &all,
            AuthMethod::DIGITAL_SIGNATURE,
            "RSA_EMSA_PKCS1_SHA2_256",
        ),
        (
            RSA_PKCS8,
            false,
            &[4],
            AuthMethod::DIGITAL_SIGNATURE,
            "RSA_EMSA_PKCS1_SHA2_512",
        ),
        (
            RSA_PKCS8,
            true,
            &all,
            AuthMethod::DIGITAL_SIGNATURE,
            "RSA_EMSA_PSS_SHA2_256",
        ),
        (
            RSA_PKCS1,
            true,
            &[3],
            AuthMethod::DIGITAL_SIGNATURE,
            "RSA_EMSA_PSS_SHA2_384",
        ),
    ];
    for (i, (key, pss, hashes, method, name)) in cases.iter().enumerate() {
        let cert = ee(key, &ca, 10 + i as u64, |_| {});
        let c = cred(key, &[cert.clone()]).with_rsa_pss(*pss);
        let (m, data, desc) = c.sign_auth(OCTETS, hashes).unwrap();
        assert_eq!(m, *method, "{name}");
        assert!(desc.contains(name), "{desc} vs {name}");
        let peer = trust.verify(&cert, &[], now()).unwrap();
        let seen = peer.verify_auth(m, &data, OCTETS).unwrap();
        assert!(seen.contains(name), "{seen} vs {name}");
        // Other octets, a flipped bit, a truncation: all refused.
        assert!(matches!(
            peer.verify_auth(m, &data, b"other octets"),
            Err(PkiError::BadSignature(_))
        ));
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert!(peer.verify_auth(m, &bad, OCTETS).is_err());
        for cut in [0, 1, 5, n / 2, n - 1] {
            assert!(peer.verify_auth(m, &data[..cut], OCTETS).is_err());
        }
        // A method that does not fit the key.
        assert!(peer
            .verify_auth(AuthMethod::RSA_SIG + 1, &data, OCTETS)
            .is_err());
    }
    // RSA to a peer without RFC 7427 would need SHA-1: said so, not sent.
    let rsa = cred(RSA_PKCS8, &[ee(RSA_PKCS8, &ca, 99, |_| {})]);
    assert!(matches!(
        rsa.sign_auth(OCTETS, &[]),
        Err(PkiError::Unsupported(_))
    ));
    // A peer that only takes SHA-1 (1) gets nothing.
    assert!(rsa.sign_auth(OCTETS, &[1]).is_err());
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[test]
fn p521_signs_and_verifies_with_methods_11_and_14() {
    let (cert, ca) = (pem_der(P521_CERT), pem_der(P521_CA));
    let trust = TrustStore::new(&[ca], &[]).unwrap();
    let peer = trust.verify(&cert, &[], now()).unwrap();
    assert_eq!(peer.info().key_kind(), KeyKind::EcdsaP521);
    for key in [P521_PKCS8, P521_SEC1] {
        let c = cred(key, std::slice::from_ref(&cert));
        for (hashes, method, name) in [
            (&[][..], AuthMethod::ECDSA_521, "method 11"),
            (
                &[2, 3, 4][..],
                AuthMethod::DIGITAL_SIGNATURE,
                "ECDSA_WITH_SHA512_DER",
            ),
        ] {
            let (m, data, desc) = c.sign_auth(OCTETS, hashes).unwrap();
            assert_eq!(m, method);
            assert!(desc.contains(name), "{desc}");
            assert!(peer.verify_auth(m, &data, OCTETS).unwrap().contains(name));
            assert!(peer.verify_auth(m, &data, b"other").is_err());
            let mut bad = data.clone();
            let n = bad.len();
            bad[n - 2] ^= 1;
            assert!(peer.verify_auth(m, &bad, OCTETS).is_err());
            assert!(peer.verify_auth(m, &data[..n / 2], OCTETS).is_err());
        }
        // P-521 signs with SHA-512 only: a peer without it gets nothing.
        assert!(c.sign_auth(OCTETS, &[2, 3]).is_err());
    }
}

#[test]
fn chains_validate_through_intermediates_only_to_our_cas() {
    let root = ecdsa_ca("Root");
    let inter = ca(
        "Intermediate",
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        Some(&root),
    );
    let leaf = ee(P256_PKCS8, &inter, 7, |_| {});
    let trust = TrustStore::new(&[root.der.clone()], &[]).unwrap();
    let peer = trust.verify(&leaf, &[inter.der.clone()], now()).unwrap();
    assert_eq!(peer.anchor, "CN=Root");
    assert!(matches!(
        trust.verify(&leaf, &[], now()),
        Err(PkiError::Untrusted(_))
    ));
    let stranger = ecdsa_ca("Stranger");
    let other = TrustStore::new(&[stranger.der.clone()], &[]).unwrap();
    assert!(matches!(
        other.verify(&leaf, &[inter.der.clone()], now()),
        Err(PkiError::Untrusted(_))
    ));
    // CERTREQ names the root by its key hash, and a chain through it matches.
    let cr = trust.certreq();
    assert_eq!(cr.len(), 20);
    let c = cred(P256_PKCS8, &[leaf, inter.der.clone()]);
    assert!(!TrustStore::certreq_names(&cr, c.chain()));
    let with_root = cred(P256_PKCS8, &[c.leaf().der.clone(), inter.der, root.der]);
    assert!(TrustStore::certreq_names(&cr, with_root.chain()));
    assert!(!TrustStore::certreq_names(
        &other.certreq(),
        with_root.chain()
    ));
}

#[test]
fn validity_eku_and_key_usage_are_enforced() {
    let ca = ecdsa_ca("CA");
    let trust = TrustStore::new(&[ca.der.clone()], &[]).unwrap();
    let expired = ee(P256_PKCS8, &ca, 1, |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    let e = trust.verify(&expired, &[], now()).unwrap_err();
    assert!(
        matches!(&e, PkiError::Untrusted(m) if m.contains("Expired")),
        "{e}"
    );
    let future = ee(P256_PKCS8, &ca, 2, |p| {
        p.not_before = rcgen::date_time_ymd(2200, 1, 1);
        p.not_after = rcgen::date_time_ymd(2201, 1, 1);
    });
    assert!(trust.verify(&future, &[], now()).is_err());
    let code_signing = ee(P256_PKCS8, &ca, 3, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    });
    assert!(trust.verify(&code_signing, &[], now()).is_err());
    let no_eku = ee(P256_PKCS8, &ca, 4, |p| p.extended_key_usages.clear());
    assert!(trust.verify(&no_eku, &[], now()).is_ok());
    let encipher_only = ee(P256_PKCS8, &ca, 5, |p| {
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    });
    let e = trust.verify(&encipher_only, &[], now()).unwrap_err();
    assert!(
        matches!(&e, PkiError::Untrusted(m) if m.contains("keyUsage")),
        "{e}"
    );
    // An end entity is no CA: a certificate it signed does not validate.
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "not a CA");
    let key = KeyPair::from_pem(P256_PKCS8).unwrap();
    let leaf_der = p.signed_by(&key, &ca.issuer).unwrap().der().to_vec();
    let not_ca = Ca {
        issuer: Issuer::new(p, key),
        der: leaf_der.clone(),
    };
    assert!(trust.verify(&leaf_der, &[], now()).is_ok());
    let below = ee(P384_PKCS8, &not_ca, 6, |_| {});
    assert!(trust.verify(&below, &[leaf_der], now()).is_err());
}

#[test]
fn a_crl_revokes_exactly_what_it_lists() {
    let ca = ecdsa_ca("CA");
    let good = ee(P256_PKCS8, &ca, 100, |_| {});
    let bad = ee(P384_PKCS8, &ca, 101, |_| {});
    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        // Long expired: an expired CRL still revokes.
        next_update: rcgen::date_time_ymd(2021, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(101u64),
            revocation_time: rcgen::date_time_ymd(2020, 6, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer)
    .unwrap();
    let trust = TrustStore::new(&[ca.der.clone()], &[crl.der().to_vec()]).unwrap();
    assert_eq!(trust.crl_count(), 1);
    assert!(trust.verify(&good, &[], now()).is_ok());
    let e = trust.verify(&bad, &[], now()).unwrap_err();
    assert!(
        matches!(&e, PkiError::Revoked(m) if m.contains("101") || m.contains("65")),
        "{e}"
    );
    // Without the CRL the same certificate passes.
    let lax = TrustStore::new(&[ca.der], &[]).unwrap();
    assert!(lax.verify(&bad, &[], now()).is_ok());
}

#[test]
fn names_come_from_subject_and_subject_alt_name() {
    let ca = ecdsa_ca("CA");
    let cert = ee(P256_PKCS8, &ca, 1, |_| {});
    let trust = TrustStore::new(&[ca.der], &[]).unwrap();
    let info = trust.verify(&cert, &[], now()).unwrap().info().clone();
    for part in ["C=XX", "O=Sluice Test", "CN=gw.example.net"] {
        assert!(info.subject.contains(part), "{}", info.subject);
    }
    assert_eq!(info.dns, vec!["gw.example.net".to_string()]);
    assert_eq!(info.emails, vec!["ops@example.net".to_string()]);
    assert_eq!(
        info.ips,
        vec!["198.18.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(info.key_kind(), KeyKind::EcdsaP256);
}

#[test]
fn hostile_certificates_are_errors_not_panics() {
    let ca = ecdsa_ca("CA");
    let cert = ee(RSA_PKCS8, &ca, 1, |_| {});
    let trust = TrustStore::new(&[ca.der.clone()], &[]).unwrap();
    for cut in (0..cert.len()).step_by(7) {
        assert!(trust.verify(&cert[..cut], &[], now()).is_err());
    }
    let mut flipped = cert.clone();
    for i in (0..cert.len()).step_by(13) {
        flipped[i] ^= 0x5a;
        let _ = trust.verify(&flipped, &[cert.clone()], now());
        flipped[i] ^= 0x5a;
    }
    // A chain too long for any CERT payload sequence is refused up front.
    let many = vec![ca.der.clone(); 9];
    assert!(matches!(
        trust.verify(&cert, &many, now()),
        Err(PkiError::Untrusted(_))
    ));
    assert!(TrustStore::new(&[], &[]).is_err());
    assert!(TrustStore::new(&[vec![0x30, 0x03, 1, 2, 3]], &[]).is_err());
}
