//! Stateless COOKIE challenge (RFC 7296 §2.6) against floods of IKE_SA_INIT
//! requests from spoofed addresses: above a threshold of half-open SAs the
//! responder answers an IKE_SA_INIT without a valid COOKIE with a COOKIE
//! notify and keeps no state; only an initiator that receives it at its
//! address can come back with it.
//!
//! `COOKIE = <version> | SHA-256(Ni | IPi | SPIi | <secret>)`, where the
//! secret is random, replaced every `rotate` interval and versioned; a
//! cookie made with the previous secret is still accepted, so a rotation
//! does not fail an initiator in the middle of its retry.

use crate::Random;
use ike_wire::{Body, ExchangeType, Message, NotifyType};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Length of a cookie: one version byte and a SHA-256.
pub const COOKIE_LEN: usize = 1 + 32;

/// The responder's cookie secrets.
pub struct CookieJar {
    current: (u8, Zeroizing<[u8; 32]>),
    previous: Option<(u8, Zeroizing<[u8; 32]>)>,
    rotated: Instant,
    every: Duration,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("version", &self.current.0)
            .finish_non_exhaustive()
    }
}

fn secret(rng: &mut dyn Random) -> Zeroizing<[u8; 32]> {
    let mut s = Zeroizing::new([0u8; 32]);
    rng.fill(&mut s[..]);
    s
}

fn digest(secret: &[u8; 32], version: u8, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(ni);
    match ip {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(spi_i.to_be_bytes());
    h.update(secret);
    let mut out = Vec::with_capacity(COOKIE_LEN);
    out.push(version);
    out.extend_from_slice(&h.finalize());
    out
}

impl CookieJar {
    /// A jar whose secret is replaced every `every`.
    pub fn new(now: Instant, every: Duration, rng: &mut dyn Random) -> CookieJar {
        CookieJar {
            current: (0, secret(rng)),
            previous: None,
            rotated: now,
            every,
        }
    }

    /// Replaces the secret if its time is up (the old one stays valid for
    /// one more period).
    pub fn rotate_if_due(&mut self, now: Instant, rng: &mut dyn Random) {
        if now.duration_since(self.rotated) < self.every {
            return;
        }
        let next = (self.current.0.wrapping_add(1), secret(rng));
        self.previous = Some(std::mem::replace(&mut self.current, next));
        self.rotated = now;
    }

    /// The cookie for this initiator.
    pub fn cookie(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        digest(&self.current.1, self.current.0, ni, ip, spi_i)
    }

    /// Whether `cookie` is one this jar made for this initiator (with the
    /// current or the previous secret), compared in constant time.
    pub fn verify(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        use subtle::ConstantTimeEq;
        let Some(&v) = cookie.first() else {
            return false;
        };
        let s = if v == self.current.0 {
            &self.current.1
        } else {
            match &self.previous {
                Some((pv, ps)) if *pv == v => ps,
                _ => return false,
            }
        };
        cookie.len() == COOKIE_LEN && bool::from(digest(s, v, ni, ip, spi_i).ct_eq(cookie))
    }
}

/// What an IKE_SA_INIT request says about its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It carries a cookie this jar made for it.
    Valid,
    /// No cookie, or a wrong one: answer with this datagram (a COOKIE
    /// challenge) and keep nothing.
    Challenge(Vec<u8>),
    /// Not an IKE_SA_INIT request with a nonce: drop.
    Invalid,
}

/// Checks an IKE_SA_INIT request from `ip` against the jar.
pub fn check(jar: &CookieJar, request: &Message, ip: IpAddr) -> Check {
    let h = request.header;
    if h.exchange != ExchangeType::IKE_SA_INIT || h.is_response() || h.spi_r != 0 {
        return Check::Invalid;
    }
    let Some(ni) = request.payloads.iter().find_map(|p| match &p.body {
        Body::Nonce(n) => Some(n.as_slice()),
        _ => None,
    }) else {
        return Check::Invalid;
    };
    let given = request.payloads.iter().find_map(|p| match &p.body {
        Body::Notify { ntype, data, .. } if *ntype == NotifyType::COOKIE => Some(data.as_slice()),
        _ => None,
    });
    if given.is_some_and(|c| jar.verify(c, ni, ip, h.spi_i)) {
        return Check::Valid;
    }
    Check::Challenge(crate::sa::init_notify_response(
        h.spi_i,
        NotifyType::COOKIE,
        jar.cookie(ni, ip, h.spi_i),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u8);
    impl Random for Counter {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    #[test]
    fn cookies_bind_nonce_address_and_spi_and_survive_one_rotation() {
        let mut rng = Counter(0);
        let t0 = Instant::now();
        let mut jar = CookieJar::new(t0, Duration::from_secs(60), &mut rng);
        let ip: IpAddr = "198.18.0.1".parse().unwrap_or(IpAddr::from([0u8; 4]));
        let c = jar.cookie(b"nonce", ip, 7);
        assert_eq!(c.len(), COOKIE_LEN);
        assert!(jar.verify(&c, b"nonce", ip, 7));
        assert!(!jar.verify(&c, b"other", ip, 7));
        assert!(!jar.verify(&c, b"nonce", IpAddr::from([198, 18, 0, 9]), 7));
        assert!(!jar.verify(&c, b"nonce", ip, 8));
        assert!(!jar.verify(&c[..10], b"nonce", ip, 7));
        jar.rotate_if_due(t0 + Duration::from_secs(10), &mut rng);
        assert!(jar.verify(&c, b"nonce", ip, 7), "not rotated yet");
        jar.rotate_if_due(t0 + Duration::from_secs(61), &mut rng);
        assert!(
            jar.verify(&c, b"nonce", ip, 7),
            "previous secret still valid"
        );
        assert_ne!(jar.cookie(b"nonce", ip, 7), c, "new secret, new cookie");
        jar.rotate_if_due(t0 + Duration::from_secs(122), &mut rng);
        assert!(
            !jar.verify(&c, b"nonce", ip, 7),
            "two rotations later: expired"
        );
    }
}
