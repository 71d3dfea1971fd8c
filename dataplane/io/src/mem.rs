//! An in-memory [`PacketIo`] for tests: frames are injected into a port's
//! receive queue and transmitted frames collected, with the same buffer
//! contract (chunk size, headroom, tailroom) as the AF_XDP backend.

use crate::{Desc, PacketIo, PortStats, MIN_HEADROOM};
use std::collections::VecDeque;

/// Chunk size of the in-memory pool (as the AF_XDP UMEM's).
pub const CHUNK: usize = 4096;

/// In-memory ports over a fixed pool of chunks.
#[derive(Debug)]
pub struct MemIo {
    pool: Vec<u8>,
    free: Vec<u64>,
    rx: Vec<VecDeque<Desc>>,
    tx: Vec<Vec<Desc>>,
    stats: Vec<PortStats>,
    /// Packets per `tx_burst` call the "TX ring" takes, to test partial sends.
    pub tx_room: usize,
}

impl MemIo {
    /// `ports` ports sharing a pool of `chunks` chunks.
    pub fn new(ports: usize, chunks: usize) -> MemIo {
        MemIo {
            pool: vec![0; chunks * CHUNK],
            free: (0..chunks as u64).rev().map(|i| i * CHUNK as u64).collect(),
            rx: vec![VecDeque::new(); ports],
            tx: vec![Vec::new(); ports],
            stats: vec![PortStats::default(); ports],
            tx_room: usize::MAX,
        }
    }

    /// Queues `frame` for reception on `port`; false if the pool is empty,
    /// the frame too large or the port unknown.
    pub fn inject(&mut self, port: usize, frame: &[u8]) -> bool {
        if port >= self.rx.len() || frame.len() > CHUNK - MIN_HEADROOM - crate::MIN_TAILROOM {
            return false;
        }
        let Some(addr) = self.free.pop() else {
            return false;
        };
        let d = Desc {
            addr,
            off: MIN_HEADROOM as u32,
            len: frame.len() as u32,
        };
        let start = addr as usize + MIN_HEADROOM;
        self.pool[start..start + frame.len()].copy_from_slice(frame);
        self.rx[port].push_back(d);
        true
    }

    /// The frames transmitted on `port` since the last call; their chunks
    /// go back to the pool.
    pub fn take_tx(&mut self, port: usize) -> Vec<Vec<u8>> {
        let Some(tx) = self.tx.get_mut(port) else {
            return Vec::new();
        };
        let descs = std::mem::take(tx);
        let out = descs
            .iter()
            .map(|d| {
                let s = d.addr as usize + d.off as usize;
                self.pool[s..s + d.len as usize].to_vec()
            })
            .collect();
        self.free.extend(descs.iter().map(|d| d.addr));
        out
    }

    /// Free chunks in the pool (a leak check for tests).
    pub fn free_chunks(&self) -> usize {
        self.free.len()
    }
}

impl PacketIo for MemIo {
    fn ports(&self) -> usize {
        self.rx.len()
    }

    fn chunk_size(&self) -> usize {
        CHUNK
    }

    fn rx_burst(&mut self, port: usize, out: &mut [Desc]) -> usize {
        let Some(q) = self.rx.get_mut(port) else {
            return 0;
        };
        let mut n = 0;
        for slot in out.iter_mut() {
            let Some(d) = q.pop_front() else { break };
            *slot = d;
            n += 1;
        }
        if let Some(s) = self.stats.get_mut(port) {
            s.rx_packets += n as u64;
            s.rx_bytes += out[..n].iter().map(|d| u64::from(d.len)).sum::<u64>();
        }
        n
    }

    fn tx_burst(&mut self, port: usize, pkts: &[Desc]) -> usize {
        let Some(q) = self.tx.get_mut(port) else {
            return 0;
        };
        let n = pkts.len().min(self.tx_room);
        q.extend_from_slice(&pkts[..n]);
        if let Some(s) = self.stats.get_mut(port) {
            s.tx_packets += n as u64;
            s.tx_bytes += pkts[..n].iter().map(|d| u64::from(d.len)).sum::<u64>();
            s.tx_ring_full += (pkts.len() - n) as u64;
        }
        n
    }

    fn free(&mut self, pkts: &[Desc]) {
        self.free.extend(pkts.iter().map(|d| d.addr));
    }

    fn alloc(&mut self) -> Option<Desc> {
        self.free.pop().map(|addr| Desc {
            addr,
            off: MIN_HEADROOM as u32,
            len: 0,
        })
    }

    fn chunk_mut(&mut self, d: Desc) -> &mut [u8] {
        let s = d.addr as usize;
        self.pool.get_mut(s..s + CHUNK).unwrap_or(&mut [])
    }

    fn chunks_mut<'a>(&'a mut self, ds: &[Desc], out: &mut [Option<&'a mut [u8]>]) {
        // Hand out disjoint chunks in address order, then put each back at
        // its descriptor's position.
        let n = ds.len().min(out.len());
        let mut order = [0usize; 256];
        let n = n.min(order.len());
        for (i, o) in order.iter_mut().enumerate().take(n) {
            *o = i;
        }
        order[..n].sort_unstable_by_key(|&i| ds[i].addr);
        let mut rest: &'a mut [u8] = &mut self.pool;
        let mut at = 0usize;
        let mut last = None;
        for &i in &order[..n] {
            let addr = ds[i].addr as usize;
            if addr % CHUNK != 0 || last == Some(addr) || addr < at {
                continue;
            }
            let tail = std::mem::take(&mut rest);
            if tail.len() < addr - at + CHUNK {
                rest = tail;
                continue;
            }
            let (_, from) = tail.split_at_mut(addr - at);
            let (chunk, after) = from.split_at_mut(CHUNK);
            out[i] = Some(chunk);
            rest = after;
            at = addr + CHUNK;
            last = Some(addr);
        }
    }

    fn service(&mut self) {}

    fn stats(&self, port: usize) -> PortStats {
        self.stats.get(port).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_round_and_chunks_come_back() {
        let mut io = MemIo::new(2, 8);
        assert!(io.inject(0, &[1, 2, 3]));
        let mut d = [Desc::default(); 4];
        assert_eq!(io.rx_burst(0, &mut d), 1);
        let c = io.chunk_mut(d[0]);
        assert_eq!(&c[MIN_HEADROOM..MIN_HEADROOM + 3], &[1, 2, 3]);
        c[MIN_HEADROOM] = 9;
        assert_eq!(io.tx_burst(1, &d[..1]), 1);
        assert_eq!(io.take_tx(1), vec![vec![9, 2, 3]]);
        assert_eq!(io.free_chunks(), 8);
        io.tx_room = 0;
        let a = io.alloc().unwrap();
        assert_eq!(io.tx_burst(1, &[a]), 0, "ring full: the caller keeps it");
        io.free(&[a]);
        assert_eq!(io.free_chunks(), 8);
        assert_eq!(io.stats(1).tx_ring_full, 1);
    }

    #[test]
    fn chunks_for_a_burst_are_disjoint_and_in_place() {
        let mut io = MemIo::new(1, 8);
        for b in [5u8, 6, 7] {
            assert!(io.inject(0, &[b]));
        }
        let mut d = [Desc::default(); 4];
        assert_eq!(io.rx_burst(0, &mut d), 3);
        // Out of address order, a duplicate, and a bogus descriptor.
        let ds = [
            d[2],
            d[0],
            d[2],
            Desc {
                addr: 3,
                off: 0,
                len: 0,
            },
            d[1],
        ];
        let mut out: [Option<&mut [u8]>; 5] = [None, None, None, None, None];
        io.chunks_mut(&ds, &mut out);
        let firsts: Vec<Option<u8>> = out
            .iter()
            .map(|c| c.as_ref().map(|c| c[MIN_HEADROOM]))
            .collect();
        assert_eq!(firsts, vec![Some(7), Some(5), None, None, Some(6)]);
        if let Some(c) = out[4].as_mut() {
            c[MIN_HEADROOM] = 60;
        }
        assert_eq!(io.chunk_mut(d[1])[MIN_HEADROOM], 60);
    }
}
