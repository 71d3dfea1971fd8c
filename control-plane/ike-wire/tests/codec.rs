//! Round trips against messages captured from strongSwan 5.9.8, every payload
//! type, the payload rules, and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ike_wire::message::{FLAG_INITIATOR, FLAG_RESPONSE};
use ike_wire::rules::{check, check_outer, RuleViolation};
use ike_wire::*;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let text = match name {
        "init_req" => include_str!("data/strongswan-ike_sa_init_request.hex"),
        "init_resp" => include_str!("data/strongswan-ike_sa_init_response.hex"),
        "auth_req" => include_str!("data/strongswan-ike_auth_request.hex"),
        "auth_resp" => include_str!("data/strongswan-ike_auth_response.hex"),
        _ => unreachable!(),
    };
    hex::decode(text.trim()).unwrap()
}

fn notify_types(m: &Message) -> Vec<NotifyType> {
    m.payloads
        .iter()
        .filter_map(|p| match &p.body {
            Body::Notify { ntype, .. } => Some(*ntype),
            _ => None,
        })
        .collect()
}

#[test]
fn strongswan_ike_sa_init_request() {
    let bytes = fixture("init_req");
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(m.header.message_id, 0);
    assert_eq!(m.header.flags, FLAG_INITIATOR);
    assert_eq!(Message::summary(&m.payloads),
        "[ SA KE No N(NAT_DETECTION_SOURCE_IP) N(NAT_DETECTION_DESTINATION_IP) N(IKEV2_FRAGMENTATION_SUPPORTED) N(SIGNATURE_HASH_ALGORITHMS) N(REDIRECT_SUPPORTED) ]");
    let Body::Sa(props) = &m.payloads[0].body else {
        panic!()
    };
    assert_eq!(
        props.len(),
        2,
        "strongSwan's default IKE proposals: CBC/HMAC and AEAD"
    );
    let first = &props[0];
    assert_eq!(first.protocol, ProtocolId::IKE);
    let encr: Vec<_> = first
        .transforms
        .iter()
        .filter(|t| t.ttype == TransformType::ENCR)
        .collect();
    assert_eq!(EncrId(encr[0].id), EncrId::AES_CBC);
    assert_eq!(encr[0].key_len(), Some(128));
    assert!(first
        .transforms
        .iter()
        .any(|t| t.ttype == TransformType::DH && DhGroup(t.id) == DhGroup::CURVE_25519));
    let Body::Ke { group, data } = &m.payloads[1].body else {
        panic!()
    };
    assert_eq!((*group, data.len()), (DhGroup::CURVE_25519, 32));
    rules::check(ExchangeType::IKE_SA_INIT, true, &m.payloads).unwrap();
    assert_eq!(m.emit(), bytes, "byte-for-byte round trip");
}

#[test]
fn strongswan_ike_sa_init_response() {
    let bytes = fixture("init_resp");
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.header.flags, FLAG_RESPONSE);
    assert_ne!(m.header.spi_r, 0);
    let Body::Sa(props) = &m.payloads[0].body else {
        panic!()
    };
    assert_eq!(props.len(), 1, "the responder picks one proposal");
    assert_eq!(props[0].transforms.len(), 4);
    assert!(notify_types(&m).contains(&NotifyType::NAT_DETECTION_DESTINATION_IP));
    assert!(notify_types(&m).contains(&NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
    check(ExchangeType::IKE_SA_INIT, false, &m.payloads).unwrap();
    assert_eq!(m.emit(), bytes);
}

#[test]
fn strongswan_ike_auth_outer() {
    for (name, response) in [("auth_req", false), ("auth_resp", true)] {
        let bytes = fixture(name);
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.header.exchange, ExchangeType::IKE_AUTH);
        assert_eq!(m.header.message_id, 1);
        assert_eq!(m.header.is_response(), response);
        assert_eq!(m.payloads.len(), 1);
        let Body::Sk { first_inner, data } = &m.payloads[0].body else {
            panic!()
        };
        assert_eq!(
            *first_inner,
            if response {
                PayloadType::IDR
            } else {
                PayloadType::IDI
            }
        );
        // AES-CBC-128 + HMAC-SHA2-256-128: 16-byte IV, whole blocks, 16-byte ICV.
        assert_eq!((data.len() - 16 - 16) % 16, 0);
        check_outer(ExchangeType::IKE_AUTH, &m.payloads).unwrap();
        assert_eq!(m.emit(), bytes);
    }
}

fn sample_payloads() -> Vec<Payload> {
    vec![
        Payload::new(
            PayloadType::IDI,
            Body::Id {
                id_type: IdType::FQDN,
                reserved: [0; 3],
                data: b"a.psw.test".to_vec(),
            },
        ),
        Payload::new(
            PayloadType::CERT,
            Body::Cert {
                encoding: CertEncoding::X509_SIGNATURE,
                data: vec![0x30, 0x82],
            },
        ),
        Payload::new(
            PayloadType::CERTREQ,
            Body::CertReq {
                encoding: CertEncoding::X509_SIGNATURE,
                data: vec![1; 20],
            },
        ),
        Payload::new(
            PayloadType::AUTH,
            Body::Auth {
                method: AuthMethod::PSK,
                data: vec![9; 32],
            },
        ),
        Payload::new(
            PayloadType::CP,
            Body::Cp {
                cfg_type: CfgType::REQUEST,
                attrs: vec![(1, vec![]), (8, vec![])],
            },
        ),
        Payload::new(
            PayloadType::NOTIFY,
            Body::Notify {
                protocol: ProtocolId::ESP,
                spi: vec![1, 2, 3, 4],
                ntype: NotifyType::REKEY_SA,
                data: vec![],
            },
        ),
        Payload::new(
            PayloadType::SA,
            Body::Sa(vec![Proposal {
                num: 1,
                protocol: ProtocolId::ESP,
                spi: vec![0xc0, 0xde, 0, 1],
                transforms: vec![
                    Transform::with_key_len(TransformType::ENCR, EncrId::AES_GCM_16.0, 256),
                    Transform::new(TransformType::ESN, 0),
                    Transform {
                        ttype: TransformType(250),
                        id: 999,
                        attrs: vec![Attribute::Tlv {
                            atype: 77,
                            value: vec![1, 2, 3],
                        }],
                    },
                ],
            }]),
        ),
        Payload::new(
            PayloadType::TSI,
            Body::Ts(vec![TrafficSelector {
                ts_type: TsType::IPV4_ADDR_RANGE,
                ip_proto: 0,
                start_port: 0,
                end_port: 65535,
                start_addr: vec![198, 19, 1, 0],
                end_addr: vec![198, 19, 1, 255],
            }]),
        ),
        Payload::new(
            PayloadType::TSR,
            Body::Ts(vec![TrafficSelector {
                ts_type: TsType::IPV6_ADDR_RANGE,
                ip_proto: 6,
                start_port: 443,
                end_port: 443,
                start_addr: vec![0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                end_addr: vec![
                    0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
            }]),
        ),
        Payload::new(PayloadType::EAP, Body::Eap(vec![1, 1, 0, 5, 1])),
        Payload::new(PayloadType::VENDOR, Body::Vendor(b"sluice".to_vec())),
        Payload::new(PayloadType(200), Body::Unknown(vec![5, 5])),
    ]
}

#[test]
fn every_payload_round_trips_inside_sk() {
    let inner = sample_payloads();
    let mut bytes = Vec::new();
    Message::emit_payloads(&inner, &mut bytes);
    let back = Message::parse_inner(PayloadType::IDI, &bytes).unwrap();
    assert_eq!(back, inner);
}

#[test]
fn delete_ke_nonce_skf_round_trip() {
    let m = Message {
        header: Header {
            spi_i: 1,
            spi_r: 2,
            version: 0x20,
            exchange: ExchangeType::INFORMATIONAL,
            flags: FLAG_INITIATOR,
            message_id: 7,
        },
        payloads: vec![Payload::new(
            PayloadType::SKF,
            Body::Skf {
                first_inner: PayloadType::DELETE,
                number: 1,
                total: 3,
                data: vec![0xaa; 48],
            },
        )],
    };
    let b = m.emit();
    assert_eq!(Message::parse(&b).unwrap(), m);
    let inner = vec![
        Payload::new(
            PayloadType::DELETE,
            Body::Delete {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
            },
        ),
        Payload::new(
            PayloadType::DELETE,
            Body::Delete {
                protocol: ProtocolId::IKE,
                spi_size: 0,
                spis: vec![],
            },
        ),
    ];
    let mut bytes = Vec::new();
    Message::emit_payloads(&inner, &mut bytes);
    assert_eq!(
        Message::parse_inner(PayloadType::DELETE, &bytes).unwrap(),
        inner
    );
    check(ExchangeType::INFORMATIONAL, true, &inner).unwrap();
    let child = vec![
        Payload::new(PayloadType::SA, Body::Sa(vec![])),
        Payload::new(PayloadType::NONCE, Body::Nonce(vec![3; 32])),
        Payload::new(
            PayloadType::KE,
            Body::Ke {
                group: DhGroup::ECP_256,
                data: vec![4; 64],
            },
        ),
    ];
    check(ExchangeType::CREATE_CHILD_SA, true, &child).unwrap();
    assert_eq!(
        check(ExchangeType::CREATE_CHILD_SA, true, &child[1..]),
        Err(RuleViolation::Missing(PayloadType::SA))
    );
}

#[test]
fn rules_and_critical_payloads() {
    let p = sample_payloads();
    // An IKE_AUTH request may carry every payload of the sample.
    check(ExchangeType::IKE_AUTH, true, &p).unwrap();
    assert_eq!(
        check(ExchangeType::INFORMATIONAL, true, &p),
        Err(RuleViolation::NotAllowed(PayloadType::IDI))
    );
    assert_eq!(
        Message::first_unsupported_critical(&p),
        None,
        "unknown but not critical"
    );
    let mut crit = p.clone();
    crit.last_mut().unwrap().critical = true;
    assert_eq!(
        Message::first_unsupported_critical(&crit),
        Some(PayloadType(200))
    );
    // Error responses may omit required payloads.
    let err = vec![Payload::new(
        PayloadType::NOTIFY,
        Body::Notify {
            protocol: ProtocolId::NONE,
            spi: vec![],
            ntype: NotifyType::INVALID_KE_PAYLOAD,
            data: vec![0, 19],
        },
    )];
    check(ExchangeType::IKE_SA_INIT, false, &err).unwrap();
    assert_eq!(
        check(ExchangeType::IKE_SA_INIT, true, &err),
        Err(RuleViolation::Missing(PayloadType::SA))
    );
    assert_eq!(
        check_outer(ExchangeType::IKE_AUTH, &p),
        Err(RuleViolation::NotEncrypted)
    );
}

#[test]
fn bad_headers() {
    let mut b = fixture("init_resp");
    b[17] = 0x30;
    assert_eq!(Message::parse(&b), Err(Error::UnsupportedVersion(0x30)));
    let b = fixture("init_resp");
    assert!(
        Message::parse(&b[..b.len() - 1]).is_err(),
        "length beyond the datagram"
    );
    let mut b2 = b.clone();
    b2.extend_from_slice(&[0; 5]);
    assert_eq!(
        Message::parse(&b2).unwrap().emit(),
        b,
        "trailing datagram bytes ignored"
    );
    assert!(Message::parse(&[]).is_err());
    assert_eq!(NotifyType(12345).to_string(), "NotifyType(12345)");
    assert_eq!(NotifyType::COOKIE.to_string(), "COOKIE");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_and_reparse(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = Message::parse(&bytes) {
            let again = Message::parse(&m.emit()).unwrap();
            prop_assert_eq!(again, m);
        }
        let _ = Message::parse_inner(PayloadType(bytes.first().copied().unwrap_or(0)), &bytes);
    }

    #[test]
    fn mutated_captures_never_panic(which in 0usize..4, at in any::<usize>(), v: u8, cut in any::<usize>()) {
        let mut b = fixture(["init_req", "init_resp", "auth_req", "auth_resp"][which]);
        let i = at % b.len();
        b[i] = v;
        let cut = cut % (b.len() + 1);
        if let Ok(m) = Message::parse(&b[..cut]) {
            let again = Message::parse(&m.emit()).unwrap();
            prop_assert_eq!(again, m);
        }
    }
}
