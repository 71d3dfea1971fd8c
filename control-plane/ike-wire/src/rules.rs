//! Which payloads each exchange may carry (RFC 7296 §1.2-§1.5, §2.6,
//! §3.14), checked before any state changes. One table, strongSwan
//! message.c style.

use crate::message::Payload;
use crate::payload::Body;
use crate::registry::{ExchangeType, NotifyType, PayloadType};
use core::fmt;

/// A rule a message broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleViolation {
    /// A payload type this exchange must not carry (here).
    NotAllowed(PayloadType),
    /// Too few of a payload.
    Missing(PayloadType),
    /// Too many of a payload.
    TooMany(PayloadType),
    /// Protected exchanges carry exactly one SK or SKF payload, last.
    NotEncrypted,
    /// An exchange type this codec has no rules for.
    UnknownExchange(ExchangeType),
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleViolation::NotAllowed(t) => write!(f, "payload {t} not allowed here"),
            RuleViolation::Missing(t) => write!(f, "required payload {t} missing"),
            RuleViolation::TooMany(t) => write!(f, "payload {t} appears too often"),
            RuleViolation::NotEncrypted => f.write_str("expected exactly one SK/SKF payload, last"),
            RuleViolation::UnknownExchange(x) => write!(f, "no rules for exchange {x}"),
        }
    }
}

const N: u8 = u8::MAX;

/// (payload, min, max) for one exchange direction.
type Rule = &'static [(PayloadType, u8, u8)];

fn rules(ex: ExchangeType, request: bool) -> Option<Rule> {
    use PayloadType as P;
    Some(match (ex, request) {
        (ExchangeType::IKE_SA_INIT, true) => &[
            (P::SA, 1, 1),
            (P::KE, 1, 1),
            (P::NONCE, 1, 1),
            (P::NOTIFY, 0, N),
            (P::VENDOR, 0, N),
            (P::CERTREQ, 0, N),
        ],
        (ExchangeType::IKE_SA_INIT, false) => &[
            (P::SA, 1, 1),
            (P::KE, 1, 1),
            (P::NONCE, 1, 1),
            (P::NOTIFY, 0, N),
            (P::VENDOR, 0, N),
            (P::CERTREQ, 0, N),
        ],
        (ExchangeType::IKE_AUTH, true) => &[
            (P::IDI, 1, 1),
            (P::CERT, 0, N),
            (P::CERTREQ, 0, N),
            (P::IDR, 0, 1),
            (P::AUTH, 0, 1),
            (P::CP, 0, 1),
            (P::NOTIFY, 0, N),
            (P::SA, 0, 1),
            (P::TSI, 0, 1),
            (P::TSR, 0, 1),
            (P::VENDOR, 0, N),
            (P::EAP, 0, 1),
        ],
        (ExchangeType::IKE_AUTH, false) => &[
            (P::IDR, 0, 1),
            (P::CERT, 0, N),
            (P::AUTH, 0, 1),
            (P::CP, 0, 1),
            (P::NOTIFY, 0, N),
            (P::SA, 0, 1),
            (P::TSI, 0, 1),
            (P::TSR, 0, 1),
            (P::VENDOR, 0, N),
            (P::EAP, 0, 1),
        ],
        (ExchangeType::CREATE_CHILD_SA, _) => &[
            (P::SA, 1, 1),
            (P::NONCE, 1, 1),
            (P::KE, 0, 1),
            (P::TSI, 0, 1),
            (P::TSR, 0, 1),
            (P::NOTIFY, 0, N),
            (P::VENDOR, 0, N),
        ],
        (ExchangeType::INFORMATIONAL, _) => &[
            (P::NOTIFY, 0, N),
            (P::DELETE, 0, N),
            (P::CP, 0, 1),
            (P::VENDOR, 0, N),
        ],
        (ExchangeType::IKE_INTERMEDIATE, _) => {
            &[(P::NOTIFY, 0, N), (P::KE, 0, 1), (P::VENDOR, 0, N)]
        }
        _ => return None,
    })
}

/// Whether the exchange's payloads travel inside SK (all but IKE_SA_INIT).
pub fn is_protected(ex: ExchangeType) -> bool {
    ex != ExchangeType::IKE_SA_INIT
}

/// Checks the outer payload list of a protected exchange: exactly one SK or
/// SKF payload, the last one (unknown non-critical payloads before it are
/// tolerated, §2.5).
pub fn check_outer(ex: ExchangeType, payloads: &[Payload]) -> Result<(), RuleViolation> {
    if !is_protected(ex) {
        return Ok(());
    }
    let sk = payloads
        .iter()
        .filter(|p| matches!(p.ptype, PayloadType::SK | PayloadType::SKF))
        .count();
    let last_is_sk = payloads
        .last()
        .is_some_and(|p| matches!(p.ptype, PayloadType::SK | PayloadType::SKF));
    if sk != 1 || !last_is_sk {
        return Err(RuleViolation::NotEncrypted);
    }
    match payloads.iter().find(|p| {
        !matches!(
            p.ptype,
            PayloadType::SK | PayloadType::SKF | PayloadType::VENDOR
        ) && !matches!(p.body, Body::Unknown(_))
    }) {
        Some(p) => Err(RuleViolation::NotAllowed(p.ptype)),
        None => Ok(()),
    }
}

/// Checks the payloads of a message (IKE_SA_INIT's plaintext list, or the
/// decrypted inner list of the others) against the table. A response that
/// carries an error Notify (or a request/response carrying COOKIE or
/// INVALID_KE_PAYLOAD) need not carry the otherwise required payloads.
/// Unknown non-critical payloads are ignored (§2.5).
pub fn check(ex: ExchangeType, request: bool, payloads: &[Payload]) -> Result<(), RuleViolation> {
    let table = rules(ex, request).ok_or(RuleViolation::UnknownExchange(ex))?;
    let notify_only = payloads.iter().any(|p| match &p.body {
        Body::Notify { ntype, .. } => {
            !request && (ntype.is_error() || *ntype == NotifyType::COOKIE)
        }
        _ => false,
    });
    for p in payloads {
        if matches!(p.body, Body::Unknown(_)) {
            continue;
        }
        if !table.iter().any(|(t, _, _)| *t == p.ptype) {
            return Err(RuleViolation::NotAllowed(p.ptype));
        }
    }
    for (t, min, max) in table {
        let n = payloads.iter().filter(|p| p.ptype == *t).count();
        if n > usize::from(*max) {
            return Err(RuleViolation::TooMany(*t));
        }
        if n < usize::from(*min) && !notify_only {
            return Err(RuleViolation::Missing(*t));
        }
    }
    Ok(())
}
