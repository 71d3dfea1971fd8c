//! What the two-peer tests share: a deterministic RNG, the peers'
//! addresses and a PSK configuration.
#![allow(dead_code, unreachable_pub)]

use ike_crypto::ke::DhGroup;
use ike_crypto::prf::Prf;
use ike_crypto::sk::{Integ, Suite};
use ike_proto::*;
use zeroize::Zeroizing;

pub struct Rng(pub u64);
impl Random for Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0 >> 24) as u8;
        }
    }
}

pub const I_ADDR: &str = "198.18.0.1:500";
pub const R_ADDR: &str = "198.18.0.2:500";

pub fn cfg(local: &str, remote: &str, psk: &str, dh: Vec<DhGroup>) -> Config {
    let net = |s: &str| Selector::subnet(s.parse().unwrap(), 24);
    let (lts, rts) = if local == "a.psw.test" {
        (net("198.19.1.0"), net("198.19.2.0"))
    } else {
        (net("198.19.2.0"), net("198.19.1.0"))
    };
    Config {
        local_id: Identity::Fqdn(local.into()),
        remote_id: Identity::Fqdn(remote.into()),
        local_auth: LocalAuth::Psk(Zeroizing::new(psk.as_bytes().to_vec())),
        remote_auth: RemoteAuth::Psk(Zeroizing::new(psk.as_bytes().to_vec())),
        send_cert: SendCert::IfAsked,
        ike: IkeProposal {
            suite: Suite::AesCbc {
                key_len: 16,
                integ: Integ::HmacSha256_128,
            },
            prf: Prf::HmacSha256,
            groups: dh,
        },
        esp: vec![EspProposal::AesGcm16 { bits: 128 }],
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![lts],
            remote_ts: vec![rts],
        }],
        pfs: None,
        retransmit: Retransmit::default(),
        fragment_size: Some(1280),
    }
}
