//! Per-SA and per-worker counters: written by the data plane with relaxed
//! atomic adds, once per burst rather than per packet, read back by the
//! control plane as snapshots. Each block is cache-line aligned so workers
//! do not false-share.

use crate::layout::{DpEvent, SaCounters, WorkerCounters};
use sluice_esp::DropReason;
use std::sync::atomic::Ordering;

/// Number of drop reasons counted ([`DropReason::COUNT`]); a drop counter
/// array is indexed by `DropReason as usize`.
pub const DROP_REASONS: usize = DropReason::COUNT;

/// One burst's drops, by [`DropReason`], to add in one go.
pub type DropCounts = [u64; DROP_REASONS];

fn add_drops(to: &[std::sync::atomic::AtomicU64; DROP_REASONS], drops: &DropCounts) {
    for (c, d) in to.iter().zip(drops) {
        if *d != 0 {
            c.fetch_add(*d, Ordering::Relaxed);
        }
    }
}

fn load_drops(from: &[std::sync::atomic::AtomicU64; DROP_REASONS]) -> DropCounts {
    std::array::from_fn(|i| from.get(i).map_or(0, |c| c.load(Ordering::Relaxed)))
}

/// A plain copy of an SA's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Packets processed (encrypted or decrypted and accepted).
    pub packets: u64,
    /// Bytes of those packets (inner).
    pub bytes: u64,
    /// Drops by [`DropReason`] index.
    pub drops: DropCounts,
}

impl CounterSnapshot {
    /// Drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }
}

impl SaCounters {
    /// Adds one burst's figures (one relaxed add per non-zero field).
    pub fn add(&self, packets: u64, bytes: u64, drops: &DropCounts) {
        if packets != 0 {
            self.packets.fetch_add(packets, Ordering::Relaxed);
        }
        if bytes != 0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        add_drops(&self.drops, drops);
    }

    /// A copy (fields are read one by one: a snapshot taken while a worker
    /// adds may mix two bursts, never a torn value).
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            drops: load_drops(&self.drops),
        }
    }

    /// Zeroes the block (the writer does this when the SA slot is reused).
    pub(crate) fn zero(&self) {
        self.packets.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        for d in &self.drops {
            d.store(0, Ordering::Relaxed);
        }
    }
}

/// One burst's worth of a worker's figures, added with [`WorkerCounters::add`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bursts processed.
    pub bursts: u64,
    /// Polls that found work.
    pub busy_polls: u64,
    /// Polls that found nothing.
    pub idle_polls: u64,
    /// Inbound packets handed to the SA's owner worker.
    pub handoff: u64,
    /// Drops by [`DropReason`] index.
    pub drops: DropCounts,
    /// Data-plane events by [`DpEvent`] index.
    pub events: [u64; DpEvent::COUNT],
}

impl WorkerSnapshot {
    /// Drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }

    /// Count of one event.
    pub fn event(&self, e: DpEvent) -> u64 {
        self.events.get(e as usize).copied().unwrap_or(0)
    }
}

impl WorkerCounters {
    /// Adds one burst's (or poll loop's) figures.
    pub fn add(&self, d: &WorkerSnapshot) {
        let pairs = [
            (&self.rx_packets, d.rx_packets),
            (&self.rx_bytes, d.rx_bytes),
            (&self.tx_packets, d.tx_packets),
            (&self.tx_bytes, d.tx_bytes),
            (&self.bursts, d.bursts),
            (&self.busy_polls, d.busy_polls),
            (&self.idle_polls, d.idle_polls),
            (&self.handoff, d.handoff),
        ];
        for (c, v) in pairs {
            if v != 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        }
        add_drops(&self.drops, &d.drops);
        for (c, v) in self.events.iter().zip(d.events) {
            if v != 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    /// Counts `n` drops for one reason.
    pub fn add_drops(&self, r: DropReason, n: u64) {
        if let Some(c) = self.drops.get(r as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            bursts: self.bursts.load(Ordering::Relaxed),
            busy_polls: self.busy_polls.load(Ordering::Relaxed),
            idle_polls: self.idle_polls.load(Ordering::Relaxed),
            handoff: self.handoff.load(Ordering::Relaxed),
            drops: load_drops(&self.drops),
            events: std::array::from_fn(|i| {
                self.events.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
            }),
        }
    }
}
