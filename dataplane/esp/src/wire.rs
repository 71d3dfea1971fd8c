//! The few header fields the ESP engine reads and writes: IPv4 (RFC 791),
//! IPv6 (RFC 8200), UDP (RFC 768) and the ESP header (RFC 4303 §2).
//!
//! ```text
//! ESP packet (RFC 4303 §2.1), tunnel mode, optionally after a UDP header
//! (RFC 3948 §2.1, destination port 4500):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |               Security Parameters Index (SPI)                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Sequence Number                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  IV (8 bytes AEAD, 16 bytes CBC)              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Inner IP packet (encrypted) ...                          |
//! +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |               |     Padding (0-255 bytes: 1, 2, 3, ...)       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |  Pad Length   | Next Header   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Integrity Check Value (16 bytes)                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

/// IP protocol number of ESP (RFC 4303).
pub const IPPROTO_ESP: u8 = 50;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// ESP next header: IPv4 in tunnel mode.
pub const NH_IPV4: u8 = 4;
/// ESP next header: IPv6 in tunnel mode.
pub const NH_IPV6: u8 = 41;
/// ESP next header of a dummy packet (RFC 4303 §2.6).
pub const NH_NO_NEXT: u8 = 59;
/// UDP port of IKE and ESP-in-UDP after NAT detection (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;
/// Length of the IPv4 header this engine writes (no options).
pub const IPV4_HDR: usize = 20;
/// Length of the IPv6 header.
pub const IPV6_HDR: usize = 40;
/// Length of the UDP header.
pub const UDP_HDR: usize = 8;
/// Length of the ESP header (SPI and sequence number).
pub const ESP_HDR: usize = 8;

/// Field offsets (RFC 791 / RFC 8200 / RFC 768).
pub(crate) mod field {
    pub(crate) const V4_TOS: usize = 1;
    pub(crate) const V4_LEN: usize = 2;
    pub(crate) const V4_ID: usize = 4;
    pub(crate) const V4_FRAG: usize = 6;
    pub(crate) const V4_TTL: usize = 8;
    pub(crate) const V4_PROTO: usize = 9;
    pub(crate) const V4_CSUM: usize = 10;
    pub(crate) const V4_SRC: usize = 12;
    pub(crate) const V4_DST: usize = 16;
    pub(crate) const V6_PLEN: usize = 4;
    pub(crate) const V6_NH: usize = 6;
    pub(crate) const V6_HLIM: usize = 7;
    pub(crate) const V6_SRC: usize = 8;
    pub(crate) const V6_DST: usize = 24;
}

/// Internet checksum (RFC 1071) of `data`, folded, not complemented, added to
/// `sum`.
pub fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [b] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    sum
}

/// Folds and complements a checksum sum.
#[inline]
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header checksum of a 20..60-byte header whose checksum field is zero
/// (or verification: 0 means correct).
pub fn ipv4_checksum(hdr: &[u8]) -> u16 {
    checksum_finish(checksum_add(0, hdr))
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example bytes: 00 01 f2 03 f4 f5 f6 f7 -> sum ddf2
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum_finish(checksum_add(0, &d)), !0xddf2);
        // An odd length pads with a zero byte.
        assert_eq!(checksum_add(0, &[0x12]), 0x1200);
    }
}
