//! Burst packet I/O for the data plane's workers.
//!
//! One [`PacketIo`] instance belongs to one worker thread and serves that
//! worker's queue on each of its ports (interfaces: outside, inside, ...).
//! Packets live in buffer memory owned by the backend (an AF_XDP UMEM, or
//! plain memory for tests); the worker handles them as [`Desc`]riptors and
//! edits them in place through [`PacketIo::chunk_mut`], so a packet can be
//! received on one port, encrypted in place and sent on another without a
//! copy. Nothing here allocates, locks or makes a system call per packet:
//! `rx_burst`/`tx_burst` move descriptors between rings, and
//! [`PacketIo::service`] does the per-loop housekeeping (TX completions, RX
//! refill, a wake-up syscall only when the kernel asks for one).
//!
//! Buffer contract (what the ESP engine needs, see `sluice_esp::BUF_HEADROOM`):
//! every chunk is [`PacketIo::chunk_size`] bytes and a received packet starts
//! at least [`MIN_HEADROOM`] bytes into its chunk, leaving room in front for
//! an outer IP, UDP and ESP header, and at least [`MIN_TAILROOM`] bytes after
//! an MTU-sized frame for the ESP trailer and ICV.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod mem;

/// Room guaranteed in front of a received packet (its Ethernet header).
pub const MIN_HEADROOM: usize = 256;
/// Room guaranteed after a received packet of up to [`MAX_FRAME`] bytes.
pub const MIN_TAILROOM: usize = 128;
/// Largest frame (Ethernet header included) the backends receive.
pub const MAX_FRAME: usize = 1514 + 4;

/// A packet in the backend's buffer memory: the chunk at `addr`, the packet
/// at `chunk[off..off + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Desc {
    /// Chunk address (backend-defined; the UMEM offset for AF_XDP).
    pub addr: u64,
    /// Offset of the packet's first byte (its Ethernet header) in the chunk.
    pub off: u32,
    /// Packet length in bytes.
    pub len: u32,
}

/// Per-port counters kept by a backend (plain numbers; the data plane
/// publishes them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets handed to the kernel / wire for transmission.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets the TX ring had no room for (returned to the caller).
    pub tx_ring_full: u64,
    /// RX refills that found no free chunk (the pool ran dry).
    pub rx_no_buffer: u64,
    /// Wake-up system calls made (need_wakeup set by the kernel).
    pub wakeups: u64,
}

/// Drops below the data plane on one port (the kernel's or the NIC's),
/// cumulative since the port was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoDrops {
    /// Frames dropped on receive for other reasons than the two below.
    pub rx_dropped: u64,
    /// Frames dropped because the receive ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_empty: u64,
    /// Invalid descriptors found on the TX ring.
    pub tx_invalid: u64,
}

/// Burst I/O over one worker's queues.
pub trait PacketIo {
    /// Number of ports this instance serves (indices `0..ports()`).
    fn ports(&self) -> usize;

    /// Size of every chunk in bytes.
    fn chunk_size(&self) -> usize;

    /// Receives up to `out.len()` packets from `port` into `out`; returns
    /// how many. The caller owns them until it sends or frees them.
    fn rx_burst(&mut self, port: usize, out: &mut [Desc]) -> usize;

    /// Queues `pkts` for transmission on `port`; returns how many were
    /// taken (a prefix of `pkts`). Those not taken stay the caller's.
    fn tx_burst(&mut self, port: usize, pkts: &[Desc]) -> usize;

    /// Gives packets' chunks back to the pool (dropped packets).
    fn free(&mut self, pkts: &[Desc]);

    /// A free chunk for a packet the worker builds itself (an ICMP error,
    /// say), with the packet offset at [`MIN_HEADROOM`] and length 0.
    fn alloc(&mut self) -> Option<Desc>;

    /// The whole chunk of `d` (headroom, packet and tailroom), to read or
    /// edit the packet in place. Empty if `d` names no chunk of this pool.
    fn chunk_mut(&mut self, d: Desc) -> &mut [u8];

    /// Mutable views of several packets' chunks at once, for a burst:
    /// `out[i]` becomes the chunk of `ds[i]` (as [`PacketIo::chunk_mut`]),
    /// or stays `None` when `ds[i]` names no chunk of this pool or the same
    /// chunk as an earlier entry. Extra `out` slots are left alone; entries
    /// of `ds` beyond `out.len()` are ignored.
    fn chunks_mut<'a>(&'a mut self, ds: &[Desc], out: &mut [Option<&'a mut [u8]>]);

    /// Housekeeping, once per poll loop: reaps TX completions into the
    /// pool, refills the RX rings, and makes the wake-up system calls the
    /// kernel asked for (need_wakeup). Cheap when there is nothing to do.
    fn service(&mut self);

    /// A port's counters.
    fn stats(&self, port: usize) -> PortStats;

    /// Drops the data plane cannot see itself (kernel, NIC), cumulative.
    /// A system call for AF_XDP: call it now and then, not per burst.
    fn io_drops(&self, _port: usize) -> IoDrops {
        IoDrops::default()
    }
}
