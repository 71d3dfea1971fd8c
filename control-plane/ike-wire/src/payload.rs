//! Payload bodies (RFC 7296 §3.3-§3.16, RFC 7383 §2.5): owned
//! representations with `parse` (from a payload body, without its generic
//! header) and `emit` (appending the body).

use crate::registry::*;
use crate::Error;

/// Bounds on repeated structures, so hostile input cannot make us allocate
/// without limit (a message is at most 64 KiB anyway).
pub const MAX_PROPOSALS: usize = 64;
/// Transforms per proposal.
pub const MAX_TRANSFORMS: usize = 128;
/// Traffic selectors per TS payload.
pub const MAX_SELECTORS: usize = 64;

pub(crate) fn take<'a>(b: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], Error> {
    if b.len() < n {
        return Err(Error::Truncated {
            what,
            need: n,
            have: b.len(),
        });
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

pub(crate) fn u8_(b: &mut &[u8], what: &'static str) -> Result<u8, Error> {
    Ok(take(b, 1, what)?[0])
}

pub(crate) fn u16_(b: &mut &[u8], what: &'static str) -> Result<u16, Error> {
    let s = take(b, 2, what)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn u32_(b: &mut &[u8], what: &'static str) -> Result<u32, Error> {
    let s = take(b, 4, what)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A transform attribute (RFC 7296 §3.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// Type/Value form (AF bit set): e.g. Key Length (14).
    Tv {
        /// Attribute type without the AF bit.
        atype: u16,
        /// Value.
        value: u16,
    },
    /// Type/Length/Value form.
    Tlv {
        /// Attribute type.
        atype: u16,
        /// Value bytes.
        value: Vec<u8>,
    },
}

/// Attribute type of the key length (RFC 7296 §3.3.5).
pub const ATTR_KEY_LENGTH: u16 = 14;

/// A transform substructure (RFC 7296 §3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    /// Transform type.
    pub ttype: TransformType,
    /// Transform ID (meaning depends on the type).
    pub id: u16,
    /// Attributes.
    pub attrs: Vec<Attribute>,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ttype: TransformType, id: u16) -> Transform {
        Transform {
            ttype,
            id,
            attrs: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute.
    pub fn with_key_len(ttype: TransformType, id: u16, bits: u16) -> Transform {
        Transform {
            ttype,
            id,
            attrs: vec![Attribute::Tv {
                atype: ATTR_KEY_LENGTH,
                value: bits,
            }],
        }
    }

    /// The Key Length attribute, if present.
    pub fn key_len(&self) -> Option<u16> {
        self.attrs.iter().find_map(|a| match a {
            Attribute::Tv {
                atype: ATTR_KEY_LENGTH,
                value,
            } => Some(*value),
            _ => None,
        })
    }
}

/// A proposal substructure (RFC 7296 §3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number (1 for the first).
    pub num: u8,
    /// Protocol.
    pub protocol: ProtocolId,
    /// SPI (empty in IKE_SA_INIT, 8 bytes for IKE rekeys, 4 for ESP).
    pub spi: Vec<u8>,
    /// Transforms.
    pub transforms: Vec<Transform>,
}

/// A traffic selector (RFC 7296 §3.13.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSelector {
    /// IPv4 or IPv6 range.
    pub ts_type: TsType,
    /// IP protocol, 0 = any.
    pub ip_proto: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address (4 or 16 bytes).
    pub start_addr: Vec<u8>,
    /// Last address.
    pub end_addr: Vec<u8>,
}

/// A payload body, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Security Association (§3.3).
    Sa(Vec<Proposal>),
    /// Key Exchange (§3.4).
    Ke {
        /// DH group.
        group: DhGroup,
        /// Public value.
        data: Vec<u8>,
    },
    /// IDi or IDr (§3.5).
    Id {
        /// ID type.
        id_type: IdType,
        /// The three reserved bytes, kept for the AUTH computation.
        reserved: [u8; 3],
        /// Identification data.
        data: Vec<u8>,
    },
    /// Certificate (§3.6).
    Cert {
        /// Encoding.
        encoding: CertEncoding,
        /// Data.
        data: Vec<u8>,
    },
    /// Certificate Request (§3.7).
    CertReq {
        /// Encoding.
        encoding: CertEncoding,
        /// Certification authority data (concatenated SHA-1 key hashes).
        data: Vec<u8>,
    },
    /// Authentication (§3.8).
    Auth {
        /// Method.
        method: AuthMethod,
        /// Authentication data.
        data: Vec<u8>,
    },
    /// Nonce (§3.9).
    Nonce(Vec<u8>),
    /// Notify (§3.10).
    Notify {
        /// Protocol of the SA concerned (0 for the IKE SA).
        protocol: ProtocolId,
        /// SPI of that SA, or empty.
        spi: Vec<u8>,
        /// Type.
        ntype: NotifyType,
        /// Data.
        data: Vec<u8>,
    },
    /// Delete (§3.11).
    Delete {
        /// Protocol.
        protocol: ProtocolId,
        /// SPI size (0 for IKE, 4 for ESP).
        spi_size: u8,
        /// SPIs.
        spis: Vec<Vec<u8>>,
    },
    /// Vendor ID (§3.12).
    Vendor(Vec<u8>),
    /// TSi or TSr (§3.13).
    Ts(Vec<TrafficSelector>),
    /// Encrypted and Authenticated (§3.14): IV, ciphertext and ICV, opaque
    /// here; the generic header's Next Payload names the first inner payload.
    Sk {
        /// First inner payload type.
        first_inner: PayloadType,
        /// IV | ciphertext | ICV.
        data: Vec<u8>,
    },
    /// Encrypted and Authenticated Fragment (RFC 7383 §2.5).
    Skf {
        /// First inner payload type (only in fragment 1, else 0).
        first_inner: PayloadType,
        /// Fragment number, from 1.
        number: u16,
        /// Total fragments.
        total: u16,
        /// IV | ciphertext | ICV.
        data: Vec<u8>,
    },
    /// Configuration (§3.15).
    Cp {
        /// CFG type.
        cfg_type: CfgType,
        /// Attributes: (type without the reserved bit, value).
        attrs: Vec<(u16, Vec<u8>)>,
    },
    /// EAP (§3.16): the EAP message.
    Eap(Vec<u8>),
    /// A payload type this codec does not know: kept, skipped if not
    /// critical (§2.5).
    Unknown(Vec<u8>),
}

fn parse_proposals(mut b: &[u8]) -> Result<Vec<Proposal>, Error> {
    let mut out = Vec::new();
    loop {
        if out.len() >= MAX_PROPOSALS {
            return Err(Error::TooMany("proposals"));
        }
        let last = u8_(&mut b, "proposal")?;
        take(&mut b, 1, "proposal")?;
        let len = usize::from(u16_(&mut b, "proposal length")?);
        if len < 8 {
            return Err(Error::BadLength {
                what: "proposal",
                len,
            });
        }
        let mut p = take(&mut b, len - 4, "proposal body")?;
        let num = u8_(&mut p, "proposal number")?;
        let protocol = ProtocolId(u8_(&mut p, "protocol")?);
        let spi_size = usize::from(u8_(&mut p, "SPI size")?);
        let ntrans = usize::from(u8_(&mut p, "transform count")?);
        let spi = take(&mut p, spi_size, "SPI")?.to_vec();
        let mut transforms = Vec::with_capacity(ntrans.min(MAX_TRANSFORMS));
        for _ in 0..ntrans {
            if transforms.len() >= MAX_TRANSFORMS {
                return Err(Error::TooMany("transforms"));
            }
            take(&mut p, 2, "transform")?;
            let tlen = usize::from(u16_(&mut p, "transform length")?);
            if tlen < 8 {
                return Err(Error::BadLength {
                    what: "transform",
                    len: tlen,
                });
            }
            let mut t = take(&mut p, tlen - 4, "transform body")?;
            let ttype = TransformType(u8_(&mut t, "transform type")?);
            take(&mut t, 1, "transform")?;
            let id = u16_(&mut t, "transform id")?;
            let mut attrs = Vec::new();
            while !t.is_empty() {
                if attrs.len() >= 16 {
                    return Err(Error::TooMany("attributes"));
                }
                let at = u16_(&mut t, "attribute type")?;
                let v = u16_(&mut t, "attribute value")?;
                if at & 0x8000 != 0 {
                    attrs.push(Attribute::Tv {
                        atype: at & 0x7fff,
                        value: v,
                    });
                } else {
                    let value = take(&mut t, usize::from(v), "attribute value")?.to_vec();
                    attrs.push(Attribute::Tlv { atype: at, value });
                }
            }
            transforms.push(Transform { ttype, id, attrs });
        }
        if !p.is_empty() {
            return Err(Error::BadLength {
                what: "proposal (trailing bytes)",
                len,
            });
        }
        out.push(Proposal {
            num,
            protocol,
            spi,
            transforms,
        });
        match last {
            0 => break,
            2 => {}
            v => {
                return Err(Error::BadValue {
                    what: "proposal last/more",
                    value: u32::from(v),
                })
            }
        }
    }
    if !b.is_empty() {
        return Err(Error::BadLength {
            what: "SA (trailing bytes)",
            len: b.len(),
        });
    }
    Ok(out)
}

fn emit_proposals(ps: &[Proposal], out: &mut Vec<u8>) {
    for (i, p) in ps.iter().enumerate() {
        let start = out.len();
        out.extend_from_slice(&[if i + 1 == ps.len() { 0 } else { 2 }, 0, 0, 0]);
        out.extend_from_slice(&[
            p.num,
            p.protocol.0,
            p.spi.len() as u8,
            p.transforms.len() as u8,
        ]);
        out.extend_from_slice(&p.spi);
        for (j, t) in p.transforms.iter().enumerate() {
            let ts = out.len();
            out.extend_from_slice(&[if j + 1 == p.transforms.len() { 0 } else { 3 }, 0, 0, 0]);
            out.push(t.ttype.0);
            out.push(0);
            out.extend_from_slice(&t.id.to_be_bytes());
            for a in &t.attrs {
                match a {
                    Attribute::Tv { atype, value } => {
                        out.extend_from_slice(&(atype | 0x8000).to_be_bytes());
                        out.extend_from_slice(&value.to_be_bytes());
                    }
                    Attribute::Tlv { atype, value } => {
                        out.extend_from_slice(&(atype & 0x7fff).to_be_bytes());
                        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
                        out.extend_from_slice(value);
                    }
                }
            }
            let tl = (out.len() - ts) as u16;
            out[ts + 2..ts + 4].copy_from_slice(&tl.to_be_bytes());
        }
        let pl = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&pl.to_be_bytes());
    }
}

impl Body {
    /// Parses the body of a payload of type `ptype` whose generic header's
    /// Next Payload field was `next` (needed for SK/SKF).
    pub fn parse(ptype: PayloadType, next: PayloadType, mut b: &[u8]) -> Result<Body, Error> {
        let body = match ptype {
            PayloadType::SA => Body::Sa(parse_proposals(b)?),
            PayloadType::KE => {
                let group = DhGroup(u16_(&mut b, "KE group")?);
                take(&mut b, 2, "KE reserved")?;
                Body::Ke {
                    group,
                    data: b.to_vec(),
                }
            }
            PayloadType::IDI | PayloadType::IDR => {
                let id_type = IdType(u8_(&mut b, "ID type")?);
                let r = take(&mut b, 3, "ID reserved")?;
                Body::Id {
                    id_type,
                    reserved: [r[0], r[1], r[2]],
                    data: b.to_vec(),
                }
            }
            PayloadType::CERT => Body::Cert {
                encoding: CertEncoding(u8_(&mut b, "cert encoding")?),
                data: b.to_vec(),
            },
            PayloadType::CERTREQ => Body::CertReq {
                encoding: CertEncoding(u8_(&mut b, "certreq encoding")?),
                data: b.to_vec(),
            },
            PayloadType::AUTH => {
                let method = AuthMethod(u8_(&mut b, "auth method")?);
                take(&mut b, 3, "auth reserved")?;
                Body::Auth {
                    method,
                    data: b.to_vec(),
                }
            }
            PayloadType::NONCE => {
                // RFC 7296 §3.9: 16 to 256 bytes.
                if !(16..=256).contains(&b.len()) {
                    return Err(Error::BadLength {
                        what: "nonce",
                        len: b.len(),
                    });
                }
                Body::Nonce(b.to_vec())
            }
            PayloadType::NOTIFY => {
                let protocol = ProtocolId(u8_(&mut b, "notify protocol")?);
                let spi_size = usize::from(u8_(&mut b, "notify SPI size")?);
                let ntype = NotifyType(u16_(&mut b, "notify type")?);
                let spi = take(&mut b, spi_size, "notify SPI")?.to_vec();
                Body::Notify {
                    protocol,
                    spi,
                    ntype,
                    data: b.to_vec(),
                }
            }
            PayloadType::DELETE => {
                let protocol = ProtocolId(u8_(&mut b, "delete protocol")?);
                let spi_size = u8_(&mut b, "delete SPI size")?;
                let n = usize::from(u16_(&mut b, "delete SPI count")?);
                if spi_size == 0 && n != 0 || n * usize::from(spi_size) != b.len() {
                    return Err(Error::BadLength {
                        what: "delete SPIs",
                        len: b.len(),
                    });
                }
                let spis = b
                    .chunks(usize::from(spi_size).max(1))
                    .take(n)
                    .map(<[u8]>::to_vec)
                    .collect();
                Body::Delete {
                    protocol,
                    spi_size,
                    spis,
                }
            }
            PayloadType::VENDOR => Body::Vendor(b.to_vec()),
            PayloadType::TSI | PayloadType::TSR => {
                let n = usize::from(u8_(&mut b, "TS count")?);
                take(&mut b, 3, "TS reserved")?;
                if n > MAX_SELECTORS {
                    return Err(Error::TooMany("traffic selectors"));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let ts_type = TsType(u8_(&mut b, "TS type")?);
                    let ip_proto = u8_(&mut b, "TS protocol")?;
                    let len = usize::from(u16_(&mut b, "TS length")?);
                    let alen = match ts_type {
                        TsType::IPV4_ADDR_RANGE => 4,
                        TsType::IPV6_ADDR_RANGE => 16,
                        t => {
                            return Err(Error::BadValue {
                                what: "TS type",
                                value: u32::from(t.0),
                            })
                        }
                    };
                    if len != 8 + 2 * alen {
                        return Err(Error::BadLength {
                            what: "traffic selector",
                            len,
                        });
                    }
                    let start_port = u16_(&mut b, "TS start port")?;
                    let end_port = u16_(&mut b, "TS end port")?;
                    let start_addr = take(&mut b, alen, "TS start address")?.to_vec();
                    let end_addr = take(&mut b, alen, "TS end address")?.to_vec();
                    v.push(TrafficSelector {
                        ts_type,
                        ip_proto,
                        start_port,
                        end_port,
                        start_addr,
                        end_addr,
                    });
                }
                if !b.is_empty() {
                    return Err(Error::BadLength {
                        what: "TS (trailing bytes)",
                        len: b.len(),
                    });
                }
                Body::Ts(v)
            }
            PayloadType::SK => Body::Sk {
                first_inner: next,
                data: b.to_vec(),
            },
            PayloadType::SKF => {
                let number = u16_(&mut b, "fragment number")?;
                let total = u16_(&mut b, "total fragments")?;
                if number == 0 || number > total {
                    return Err(Error::BadValue {
                        what: "fragment number",
                        value: u32::from(number),
                    });
                }
                Body::Skf {
                    first_inner: next,
                    number,
                    total,
                    data: b.to_vec(),
                }
            }
            PayloadType::CP => {
                let cfg_type = CfgType(u8_(&mut b, "CFG type")?);
                take(&mut b, 3, "CP reserved")?;
                let mut attrs = Vec::new();
                while !b.is_empty() {
                    if attrs.len() >= 64 {
                        return Err(Error::TooMany("configuration attributes"));
                    }
                    let t = u16_(&mut b, "CP attribute type")? & 0x7fff;
                    let l = usize::from(u16_(&mut b, "CP attribute length")?);
                    attrs.push((t, take(&mut b, l, "CP attribute value")?.to_vec()));
                }
                Body::Cp { cfg_type, attrs }
            }
            PayloadType::EAP => Body::Eap(b.to_vec()),
            _ => Body::Unknown(b.to_vec()),
        };
        Ok(body)
    }

    /// Appends the body's bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Body::Sa(ps) => emit_proposals(ps, out),
            Body::Ke { group, data } => {
                out.extend_from_slice(&group.0.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(data);
            }
            Body::Id {
                id_type,
                reserved,
                data,
            } => {
                out.push(id_type.0);
                out.extend_from_slice(reserved);
                out.extend_from_slice(data);
            }
            Body::Cert { encoding, data } | Body::CertReq { encoding, data } => {
                out.push(encoding.0);
                out.extend_from_slice(data);
            }
            Body::Auth { method, data } => {
                out.extend_from_slice(&[method.0, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Body::Nonce(d) | Body::Vendor(d) | Body::Eap(d) | Body::Unknown(d) => {
                out.extend_from_slice(d)
            }
            Body::Notify {
                protocol,
                spi,
                ntype,
                data,
            } => {
                out.extend_from_slice(&[protocol.0, spi.len() as u8]);
                out.extend_from_slice(&ntype.0.to_be_bytes());
                out.extend_from_slice(spi);
                out.extend_from_slice(data);
            }
            Body::Delete {
                protocol,
                spi_size,
                spis,
            } => {
                out.extend_from_slice(&[protocol.0, *spi_size]);
                out.extend_from_slice(&(spis.len() as u16).to_be_bytes());
                for s in spis {
                    out.extend_from_slice(s);
                }
            }
            Body::Ts(v) => {
                out.extend_from_slice(&[v.len() as u8, 0, 0, 0]);
                for t in v {
                    out.extend_from_slice(&[t.ts_type.0, t.ip_proto]);
                    out.extend_from_slice(
                        &((8 + t.start_addr.len() + t.end_addr.len()) as u16).to_be_bytes(),
                    );
                    out.extend_from_slice(&t.start_port.to_be_bytes());
                    out.extend_from_slice(&t.end_port.to_be_bytes());
                    out.extend_from_slice(&t.start_addr);
                    out.extend_from_slice(&t.end_addr);
                }
            }
            Body::Sk { data, .. } => out.extend_from_slice(data),
            Body::Skf {
                number,
                total,
                data,
                ..
            } => {
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(data);
            }
            Body::Cp { cfg_type, attrs } => {
                out.extend_from_slice(&[cfg_type.0, 0, 0, 0]);
                for (t, v) in attrs {
                    out.extend_from_slice(&(t & 0x7fff).to_be_bytes());
                    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }
}
