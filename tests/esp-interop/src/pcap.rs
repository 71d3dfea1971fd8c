//! Minimal classic pcap (libpcap 2.4) reader and writer, Ethernet link type.
//!
//! Enough for tcpdump's captures and for writing frames tshark reads; pcapng
//! is not supported (tcpdump writes classic pcap unless told otherwise).

use std::io::{self, Write};

/// Link type of Ethernet frames (LINKTYPE_ETHERNET).
pub(crate) const LINKTYPE_ETHERNET: u32 = 1;

/// One captured frame.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// 1-based position in the file, as tshark numbers frames.
    pub(crate) number: usize,
    /// The captured bytes (starting at the Ethernet header).
    pub(crate) data: Vec<u8>,
}

/// Parses a classic pcap file (either byte order, micro- or nanosecond
/// timestamps). Refuses other link types and truncated records.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Frame>, String> {
    let hdr = bytes
        .get(..24)
        .ok_or("pcap: shorter than its global header")?;
    let magic = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => {
            return Err(format!(
                "pcap: bad magic {m:#010x} (pcapng is not supported)"
            ))
        }
    };
    let rd = |b: &[u8]| -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = rd(&hdr[20..24]);
    if linktype != LINKTYPE_ETHERNET {
        return Err(format!("pcap: link type {linktype}, expected Ethernet (1)"));
    }
    let mut frames = Vec::new();
    let mut off = 24;
    while off < bytes.len() {
        let rec = bytes
            .get(off..off + 16)
            .ok_or_else(|| format!("pcap: truncated record header at {off}"))?;
        let incl = rd(&rec[8..12]) as usize;
        let data = bytes
            .get(off + 16..off + 16 + incl)
            .ok_or_else(|| format!("pcap: truncated record at {off}"))?;
        frames.push(Frame {
            number: frames.len() + 1,
            data: data.to_vec(),
        });
        off += 16 + incl;
    }
    Ok(frames)
}

/// Writes Ethernet frames as a classic little-endian pcap, one per
/// millisecond from t = 0.
pub(crate) fn write(out: &mut impl Write, frames: &[Vec<u8>]) -> io::Result<()> {
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65_535u32.to_le_bytes())?;
    out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.len()).map_err(|_| io::Error::other("frame too long"))?;
        let usec = u32::try_from(i * 1000 % 1_000_000).unwrap_or(0);
        let sec = u32::try_from(i / 1000).unwrap_or(u32::MAX);
        out.write_all(&sec.to_le_bytes())?;
        out.write_all(&usec.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frames = vec![vec![1u8; 60], vec![2u8; 1514], vec![]];
        let mut buf = Vec::new();
        write(&mut buf, &frames).unwrap();
        let back = parse(&buf).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in frames.iter().zip(&back) {
            assert_eq!(a, &b.data);
        }
        assert_eq!(back[2].number, 3);
        assert!(parse(&buf[..buf.len() - 1]).is_err());
        assert!(parse(&buf[..10]).is_err());
    }
}
