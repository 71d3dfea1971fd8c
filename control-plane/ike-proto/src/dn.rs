//! Distinguished names for ID_DER_ASN1_DN identities (RFC 7296 §3.5): the
//! operator writes `C=CH, O=Sluice, CN=gw.example` as strongSwan does (RDNs in
//! DER order, left first); the ID payload carries the DER encoding of an X.501
//! Name (RFC 5280 §4.1.2.4). Two DNs are equal when they have the same
//! attributes in the same order with values equal ignoring ASCII case and the
//! string type (PrintableString, UTF8String, IA5String...), which is how
//! gateways compare them in practice.
//!
//! This is an encoding of a data structure, not cryptography.

/// Known attribute types: short name, OID arcs, whether values are
/// PrintableString-only (country).
const ATTRS: &[(&str, &[u64])] = &[
    ("CN", &[2, 5, 4, 3]),
    ("SN", &[2, 5, 4, 4]),
    ("serialNumber", &[2, 5, 4, 5]),
    ("C", &[2, 5, 4, 6]),
    ("L", &[2, 5, 4, 7]),
    ("ST", &[2, 5, 4, 8]),
    ("street", &[2, 5, 4, 9]),
    ("O", &[2, 5, 4, 10]),
    ("OU", &[2, 5, 4, 11]),
    ("title", &[2, 5, 4, 12]),
    ("GN", &[2, 5, 4, 42]),
    ("DC", &[0, 9, 2342, 19200300, 100, 1, 25]),
    ("E", &[1, 2, 840, 113549, 1, 9, 1]),
    ("UID", &[0, 9, 2342, 19200300, 100, 1, 1]),
];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;
const IA5: u8 = 0x16;

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    der_len(out, body.len());
    out.extend_from_slice(body);
}

fn oid_body(arcs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        _ => return out,
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    out
}

fn oid_arcs(body: &[u8]) -> Option<Vec<u64>> {
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for (i, b) in body.iter().enumerate() {
        if v > (u64::MAX >> 7) {
            return None;
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (a, b) = if v < 80 {
                    (v / 40, v % 40)
                } else {
                    (2, v - 80)
                };
                arcs.push(a);
                arcs.push(b);
            } else {
                arcs.push(v);
            }
            v = 0;
        } else if i + 1 == body.len() {
            return None;
        }
    }
    (!arcs.is_empty()).then_some(arcs)
}

fn printable(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&c))
}

/// DER of the Name written as `C=CH, O=Sluice, CN=gw.example` (RDNs left
/// to right in DER order, `,` or `/` separated; `\,` escapes a comma; an
/// attribute type is a short name from the table or a dotted OID).
pub fn encode(s: &str) -> Result<Vec<u8>, String> {
    let mut rdns = Vec::new();
    for part in split(s) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (ty, value) = part
            .split_once('=')
            .ok_or(format!("{part:?}: expected TYPE=value"))?;
        let (ty, value) = (ty.trim(), value.trim());
        let arcs: Vec<u64> = match ATTRS.iter().find(|(n, _)| n.eq_ignore_ascii_case(ty)) {
            Some((_, a)) => a.to_vec(),
            None => ty
                .split('.')
                .map(|x| x.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()
                .filter(|a| a.len() >= 2)
                .ok_or(format!("{ty:?}: unknown attribute type"))?,
        };
        let tag = if arcs == [1, 2, 840, 113549, 1, 9, 1] {
            IA5
        } else if printable(value) {
            PRINTABLE
        } else {
            UTF8
        };
        let mut atv = Vec::new();
        tlv(&mut atv, OID, &oid_body(&arcs));
        tlv(&mut atv, tag, value.as_bytes());
        let mut seq = Vec::new();
        tlv(&mut seq, SEQUENCE, &atv);
        let mut set = Vec::new();
        tlv(&mut set, SET, &seq);
        rdns.extend_from_slice(&set);
    }
    if rdns.is_empty() {
        return Err("empty distinguished name".into());
    }
    let mut out = Vec::new();
    tlv(&mut out, SEQUENCE, &rdns);
    Ok(out)
}

fn split(s: &str) -> Vec<String> {
    let sep = if s.trim_start().starts_with('/') {
        '/'
    } else {
        ','
    };
    let mut parts = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), parts.last_mut()) {
                    last.push(next);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

/// One DER element: (tag, body, rest).
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, mut b) = b.split_first()?;
    let len = if l0 < 0x80 {
        usize::from(l0)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |a, x| (a << 8) | usize::from(*x));
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The attributes of a DER Name, in order: (OID arcs, value), or None if it
/// is not a well-formed Name.
fn decode(der: &[u8]) -> Option<Vec<(Vec<u64>, String)>> {
    let (tag, mut rdns, rest) = element(der)?;
    if tag != SEQUENCE || !rest.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (tag, mut set, next) = element(rdns)?;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (tag, atv, more) = element(set)?;
            let (t1, oid, after) = element(atv)?;
            let (_, value, end) = element(after)?;
            if tag != SEQUENCE || t1 != OID || !end.is_empty() {
                return None;
            }
            out.push((oid_arcs(oid)?, String::from_utf8_lossy(value).into_owned()));
            set = more;
        }
        rdns = next;
    }
    Some(out)
}

/// The DN as an operator writes it (`C=CH, O=Sluice, CN=gw.example`), or
/// None for bytes that are not a Name.
pub fn to_string(der: &[u8]) -> Option<String> {
    let attrs = decode(der)?;
    let parts: Vec<String> = attrs
        .iter()
        .map(|(arcs, v)| {
            let name = ATTRS
                .iter()
                .find(|(_, a)| *a == arcs.as_slice())
                .map(|(n, _)| (*n).to_string())
                .unwrap_or_else(|| {
                    arcs.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(".")
                });
            format!("{name}={}", v.replace(',', "\\,"))
        })
        .collect();
    Some(parts.join(", "))
}

/// Same attributes, same order, values equal ignoring ASCII case and the
/// string type.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    match (decode(a), decode(b)) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(&y)
                    .all(|((oa, va), (ob, vb))| oa == ob && va.eq_ignore_ascii_case(vb))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_der_a_ca_would() {
        // C=CH, CN=a: SEQUENCE { SET { SEQUENCE { 2.5.4.6, PrintableString "CH" } },
        //                        SET { SEQUENCE { 2.5.4.3, PrintableString "a" } } }
        let der = encode("C=CH, CN=a").unwrap();
        assert_eq!(
            der,
            [
                0x30, 0x19, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'C',
                b'H', 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x01, b'a'
            ]
        );
        assert_eq!(to_string(&der).unwrap(), "C=CH, CN=a");
    }

    #[test]
    fn round_trips_and_compares_loosely() {
        let s = "C=CH, O=Sluice Test\\, Inc., OU=VPN, CN=gw.example, E=ops@example.org, 1.2.3.4=x";
        let der = encode(s).unwrap();
        assert_eq!(to_string(&der).unwrap(), s);
        assert!(equal(
            &der,
            &encode(
                "c=ch, o=SLUICE TEST\\, INC., ou=vpn, cn=GW.example, e=ops@example.org, 1.2.3.4=X"
            )
            .unwrap()
        ));
        assert!(!equal(
            &der,
            &encode("C=CH, O=Sluice Test\\, Inc., OU=VPN, CN=gw.example").unwrap()
        ));
        assert!(!equal(
            &encode("CN=a, O=b").unwrap(),
            &encode("O=b, CN=a").unwrap()
        ));
        // UTF8String for what PrintableString cannot hold; same DN either way.
        let u = encode("CN=Zürich").unwrap();
        assert_eq!(u[u.len() - 9], UTF8);
        assert_eq!(to_string(&u).unwrap(), "CN=Zürich");
        // Long values use the long length form.
        let long = format!("CN={}", "x".repeat(300));
        assert_eq!(to_string(&encode(&long).unwrap()).unwrap(), long);
        // The OpenSSL slash form.
        assert!(equal(
            &encode("/C=CH/CN=a").unwrap(),
            &encode("C=CH, CN=a").unwrap()
        ));
    }

    #[test]
    fn refuses_what_is_not_a_dn() {
        assert!(encode("").is_err());
        assert!(encode("CN").is_err());
        assert!(encode("XX=1").is_err());
        for bad in [
            &b""[..],
            &[0x30],
            &[0x30, 0x05, 0x31],
            &[0x04, 0x00],
            &[0x30, 0x84, 0xff],
        ] {
            assert!(to_string(bad).is_none(), "{bad:?}");
            assert!(!equal(bad, bad));
        }
    }
}
