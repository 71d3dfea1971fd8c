//! The `#[repr(C)]` ABI of the shared mapping. Everything a second process
//! touches is made of atomics, so concurrent access is defined behaviour.
//!
//! ```text
//! offset 0       Header (4096 B): magic, ABI version, record sizes,
//!                capacities, section offsets, global epoch, policy flip
//! readers        [ReaderSlot; MAX_READERS]        64 B each
//! workers        [WorkerCounters; MAX_WORKERS]    320 B each
//! sa_cold        [SaCold; sa_capacity]            384 B each (seqlock)
//! sa_hot         [SaHot; sa_capacity]             1152 B each
//! sa_counters    [SaCounters; sa_capacity]        192 B each
//! spi_index      [AtomicU64; spi_buckets]         (spi << 32) | (slot + 1)
//! policy_records [[AtomicU64; 8]; policy_capacity] the writer's source
//! policy_binding [AtomicU64; policy_capacity]     (gen32 << 32) | (slot + 1)
//! policy_index   2 x [AtomicU64; index_words]     compiled, double-buffered
//! ```

use crate::seqlock::SeqRecord;
use sluice_esp::replay::ReplayWindow;
use sluice_esp::DropReason;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// "SLUICESA" in ASCII.
pub const MAGIC: u64 = u64::from_be_bytes(*b"SLUICESA");
/// Bumped on any incompatible change of this file's types.
pub const ABI_VERSION: u32 = 4;
/// Size of the header region.
pub const HEADER_SIZE: usize = 4096;
/// Reader thread slots (data-plane workers and tools).
pub const MAX_READERS: usize = 128;
/// Per-worker counter blocks.
pub const MAX_WORKERS: usize = 64;
/// Words in a cold SA record (after its generation word): 16 of
/// configuration, 8 of encryption key (and salt), 8 of integrity key and
/// [`COLD_RESERVED_WORDS`] reserved for what comes (IPv6 flow label and DSCP
/// policy, MOBIKE address updates).
pub const COLD_WORDS: usize = 47;
/// Reserved words at the end of a cold record, zero in this ABI version.
pub const COLD_RESERVED_WORDS: usize = COLD_WORDS - 32;
/// Number of record sizes stored in the header (see [`RECORD_NAMES`]).
pub const RECORD_KINDS: usize = 8;
/// Names of the records whose sizes the header stores, in order.
pub const RECORD_NAMES: [&str; RECORD_KINDS] = [
    "cold SA",
    "hot SA",
    "SA counters",
    "worker counters",
    "reader slot",
    "policy record",
    "SPI index entry",
    "policy binding",
];
/// Number of section offsets stored in the header (see [`SECTION_NAMES`]).
pub const SECTIONS: usize = 10;
/// Names of the sections whose offsets the header stores, in order.
pub const SECTION_NAMES: [&str; SECTIONS] = [
    "readers",
    "workers",
    "cold SA",
    "hot SA",
    "SA counters",
    "SPI index",
    "policy records",
    "policy bindings",
    "policy index 0",
    "policy index 1",
];
/// Words in a policy source record.
pub const POLICY_WORDS: usize = 8;
/// Distinct (family, source length, destination length) classes.
pub const MAX_POLICY_CLASSES: usize = 512;

/// The mapping's header.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`], stored last at creation (Release) so a reader never sees a
    /// half-initialised header as valid.
    pub magic: AtomicU64,
    /// [`ABI_VERSION`].
    pub abi_version: AtomicU32,
    /// `size_of::<Header>()` region size, [`HEADER_SIZE`].
    pub header_size: AtomicU32,
    /// Record sizes, in the order of [`RECORD_NAMES`].
    pub record_sizes: [AtomicU32; RECORD_KINDS],
    /// SA slots.
    pub sa_capacity: AtomicU32,
    /// SPI index buckets (power of two).
    pub spi_buckets: AtomicU32,
    /// Policy slots.
    pub policy_capacity: AtomicU32,
    /// Words of one compiled policy index half.
    pub index_words: AtomicU32,
    /// Total mapping size in bytes.
    pub total_size: AtomicU64,
    /// Global reclamation epoch (starts at 1).
    pub epoch: AtomicU64,
    /// Policy index generation; the active half is `generation & 1`.
    pub policy_generation: AtomicU64,
    /// Epoch at which the last flip happened (the other half is reusable once
    /// every reader passed it).
    pub policy_flip_epoch: AtomicU64,
    /// PID of the writer holding the lock (informational).
    pub writer_pid: AtomicU64,
    /// Byte offsets of the sections, in the order of [`SECTION_NAMES`].
    pub sections: [AtomicU64; SECTIONS],
}

/// One reader thread's reclamation slot.
#[repr(C, align(64))]
pub struct ReaderSlot {
    /// Owning process id, 0 = free.
    pub pid: AtomicU64,
    /// Last epoch announced at a quiescent point, 0 = offline.
    pub epoch: AtomicU64,
    /// Start time of the owning process (clock ticks since boot, field 22 of
    /// `/proc/PID/stat`), so a recycled PID is not taken for the owner.
    pub start_time: AtomicU64,
    /// Thread tag chosen by the owner (its Linux thread id), for diagnostics.
    pub thread_tag: AtomicU64,
}

/// Cold SA record: configuration and keys, seqlock-published.
#[repr(C, align(64))]
pub struct SaCold {
    /// The record; see [`crate::SaConfig`] for the word layout.
    pub rec: SeqRecord<COLD_WORDS>,
}

/// [`SaHot::owner`] of an SA no worker owns yet.
pub const NO_OWNER: u64 = u64::MAX;

/// Hot per-direction runtime of an SA, written by the data plane. The key
/// schedule itself is process-local (built once per (slot, generation) from
/// [`crate::SaRef::keys`]); salt and key stay together in the cold record.
#[repr(C, align(64))]
pub struct SaHot {
    /// Outbound: last sequence number used (RFC 4303 §3.3.3).
    pub seq: AtomicU64,
    /// Worker that owns the SA (the only one updating its replay window),
    /// [`NO_OWNER`] when installed; the data plane claims it.
    pub owner: AtomicU64,
    _reserved: [u64; 6],
    /// Inbound anti-replay window.
    pub replay: ReplayWindow,
}

/// Per-SA counters, added once per burst by the data plane.
#[repr(C, align(64))]
pub struct SaCounters {
    /// Packets processed (encrypted or decrypted).
    pub packets: AtomicU64,
    /// Inner bytes of those packets.
    pub bytes: AtomicU64,
    /// Drops by [`DropReason`] index.
    pub drops: [AtomicU64; DropReason::COUNT],
}

/// Per-worker counters, written by that worker only.
#[repr(C, align(64))]
pub struct WorkerCounters {
    /// Packets received.
    pub rx_packets: AtomicU64,
    /// Bytes received.
    pub rx_bytes: AtomicU64,
    /// Packets sent.
    pub tx_packets: AtomicU64,
    /// Bytes sent.
    pub tx_bytes: AtomicU64,
    /// Bursts processed.
    pub bursts: AtomicU64,
    /// Polls that found work.
    pub busy_polls: AtomicU64,
    /// Polls that found nothing.
    pub idle_polls: AtomicU64,
    /// Inbound packets handed to the worker owning their SA's replay window.
    pub handoff: AtomicU64,
    /// Drops by [`DropReason`] index.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Data-plane events beyond the ESP engine's, by [`DpEvent`] index.
    pub events: [AtomicU64; DpEvent::COUNT],
}

/// What the data plane counts around the ESP engine (per worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DpEvent {
    /// Inside traffic matching no policy (forwarded or dropped, by
    /// configuration).
    NoPolicy = 0,
    /// Forwarded in the clear by a BYPASS policy.
    Bypass = 1,
    /// No route to the destination.
    NoRoute = 2,
    /// Next hop's MAC unknown: the packet was dropped and the kernel asked
    /// to resolve it.
    NeighUnresolved = 3,
    /// TTL / hop limit expired.
    TtlExpired = 4,
    /// ICMP "fragmentation needed" / "packet too big" sent.
    IcmpTooBig = 5,
    /// Dropped because a TX ring was full.
    TxFull = 6,
    /// Received but not for the data plane (not ESP, wrong port).
    NotForUs = 7,
    /// Dropped below the data plane: the kernel's AF_XDP receive path
    /// (`XDP_STATISTICS` rx_dropped) or the NIC.
    IoRxDropped = 8,
    /// Dropped below the data plane because the receive ring was full (the
    /// worker did not keep up).
    IoRxRingFull = 9,
    /// Times the kernel found the fill ring empty (no buffer to receive
    /// into).
    IoFillEmpty = 10,
    /// Invalid descriptors the kernel found on the TX ring.
    IoTxInvalid = 11,
    /// An inbound frame for an SA owned by another worker was dropped: the
    /// owner's handoff queue (or the buffer pool) was full.
    HandoffFull = 12,
}

impl DpEvent {
    /// Number of events.
    pub const COUNT: usize = 13;
    /// Every event, in counter order.
    pub const ALL: [DpEvent; DpEvent::COUNT] = [
        DpEvent::NoPolicy,
        DpEvent::Bypass,
        DpEvent::NoRoute,
        DpEvent::NeighUnresolved,
        DpEvent::TtlExpired,
        DpEvent::IcmpTooBig,
        DpEvent::TxFull,
        DpEvent::NotForUs,
        DpEvent::IoRxDropped,
        DpEvent::IoRxRingFull,
        DpEvent::IoFillEmpty,
        DpEvent::IoTxInvalid,
        DpEvent::HandoffFull,
    ];

    /// Name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DpEvent::NoPolicy => "no_policy",
            DpEvent::Bypass => "bypass",
            DpEvent::NoRoute => "no_route",
            DpEvent::NeighUnresolved => "neigh_unresolved",
            DpEvent::TtlExpired => "ttl_expired",
            DpEvent::IcmpTooBig => "icmp_too_big",
            DpEvent::TxFull => "tx_full",
            DpEvent::NotForUs => "not_for_us",
            DpEvent::IoRxDropped => "io_rx_dropped",
            DpEvent::IoRxRingFull => "io_rx_ring_full",
            DpEvent::IoFillEmpty => "io_fill_empty",
            DpEvent::IoTxInvalid => "io_tx_invalid",
            DpEvent::HandoffFull => "handoff_full",
        }
    }
}

const _: () = assert!(core::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(core::mem::size_of::<ReaderSlot>() == 64);
const _: () = assert!(core::mem::size_of::<SaCold>() == 384);
const _: () = assert!(core::mem::size_of::<SaHot>() == 64 + core::mem::size_of::<ReplayWindow>());
const _: () = assert!(core::mem::size_of::<SaHot>() % 64 == 0);
const _: () = assert!(core::mem::size_of::<SaCounters>() == 192);
const _: () = assert!(core::mem::size_of::<WorkerCounters>() == 320);

/// Sizes recorded in the header and checked on attach.
pub(crate) fn record_sizes() -> [u32; RECORD_KINDS] {
    [
        core::mem::size_of::<SaCold>() as u32,
        core::mem::size_of::<SaHot>() as u32,
        core::mem::size_of::<SaCounters>() as u32,
        core::mem::size_of::<WorkerCounters>() as u32,
        core::mem::size_of::<ReaderSlot>() as u32,
        (POLICY_WORDS * 8) as u32,
        core::mem::size_of::<AtomicU64>() as u32,
        core::mem::size_of::<AtomicU64>() as u32,
    ]
}

/// Section offsets for given capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offsets {
    pub(crate) readers: usize,
    pub(crate) workers: usize,
    pub(crate) cold: usize,
    pub(crate) hot: usize,
    pub(crate) counters: usize,
    pub(crate) spi_index: usize,
    pub(crate) policy_records: usize,
    pub(crate) policy_binding: usize,
    pub(crate) policy_index: [usize; 2],
    pub(crate) total: usize,
    pub(crate) sa_capacity: usize,
    pub(crate) spi_buckets: usize,
    pub(crate) policy_capacity: usize,
    pub(crate) index_words: usize,
}

fn align(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// Words of one compiled policy index half: header (8), classes, a hash
/// table of 6-word buckets, 3-word entries.
pub(crate) fn index_words(policy_capacity: usize) -> usize {
    8 + MAX_POLICY_CLASSES + 6 * table_size(policy_capacity) + 3 * policy_capacity
}

/// Hash table size of a compiled policy index (power of two, >= 2 x cap).
pub(crate) fn table_size(policy_capacity: usize) -> usize {
    (policy_capacity.max(1) * 2).next_power_of_two()
}

impl Offsets {
    /// The section offsets as stored in the header.
    pub(crate) fn sections(&self) -> [u64; SECTIONS] {
        [
            self.readers,
            self.workers,
            self.cold,
            self.hot,
            self.counters,
            self.spi_index,
            self.policy_records,
            self.policy_binding,
            self.policy_index[0],
            self.policy_index[1],
        ]
        .map(|o| o as u64)
    }

    pub(crate) fn new(sa_capacity: usize, policy_capacity: usize) -> Offsets {
        let spi_buckets = (sa_capacity.max(1) * 2).next_power_of_two();
        let iw = index_words(policy_capacity);
        let readers = HEADER_SIZE;
        let workers = readers + MAX_READERS * core::mem::size_of::<ReaderSlot>();
        let cold = align(
            workers + MAX_WORKERS * core::mem::size_of::<WorkerCounters>(),
            64,
        );
        let hot = align(cold + sa_capacity * core::mem::size_of::<SaCold>(), 64);
        let counters = align(hot + sa_capacity * core::mem::size_of::<SaHot>(), 64);
        let spi_index = align(
            counters + sa_capacity * core::mem::size_of::<SaCounters>(),
            64,
        );
        let policy_records = align(spi_index + spi_buckets * 8, 64);
        let policy_binding = align(policy_records + policy_capacity * POLICY_WORDS * 8, 64);
        let idx0 = align(policy_binding + policy_capacity * 8, 64);
        let idx1 = align(idx0 + iw * 8, 64);
        let total = align(idx1 + iw * 8, 4096);
        Offsets {
            readers,
            workers,
            cold,
            hot,
            counters,
            spi_index,
            policy_records,
            policy_binding,
            policy_index: [idx0, idx1],
            total,
            sa_capacity,
            spi_buckets,
            policy_capacity,
            index_words: iw,
        }
    }
}
