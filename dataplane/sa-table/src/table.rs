//! The mapping, the writer and the readers.

use crate::config::{addr_to_u128, Direction, FlowKey, Policy, SaConfig};
use crate::epoch;
use crate::layout::*;
use crate::policy;
use sluice_esp::DropReason;
use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the table could not be opened or changed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TableError {
    /// Creating, opening, locking or mapping the file failed.
    Io(PathBuf, std::io::Error),
    /// The file is not a Sluice SA table (bad magic).
    BadMagic {
        /// Magic found.
        found: u64,
    },
    /// Written by an incompatible version.
    AbiVersion {
        /// This build's ABI version.
        expected: u32,
        /// The file's.
        found: u32,
    },
    /// A record size differs from this build's.
    RecordSize {
        /// Which record.
        what: &'static str,
        /// This build's size.
        expected: u32,
        /// The file's.
        found: u32,
    },
    /// The file is shorter than its header says, or than a header.
    Truncated {
        /// Bytes the header requires.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Another live writer holds the table.
    WriterLocked(PathBuf),
    /// All SA slots are in use (or waiting for readers to move on).
    Full(&'static str),
    /// No such SA (deleted or replaced since).
    NoSuchSa,
    /// No such policy.
    NoSuchPolicy,
    /// The configuration cannot be stored.
    Invalid(String),
    /// All reader slots are taken.
    NoReaderSlot,
    /// Readers did not pass a quiescent point in time: the policy index could
    /// not be rewritten yet (retry).
    Busy,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            TableError::BadMagic { found } => {
                write!(f, "not a Sluice SA table: magic {found:#018x}, expected {MAGIC:#018x}")
            }
            TableError::AbiVersion { expected, found } => write!(
                f,
                "SA table ABI version {found}, this build speaks {expected}: restart both processes from one build"
            ),
            TableError::RecordSize { what, expected, found } => {
                write!(f, "SA table {what} record is {found} bytes, this build expects {expected}")
            }
            TableError::Truncated { expected, found } => {
                write!(f, "SA table file is {found} bytes, its header requires {expected}")
            }
            TableError::WriterLocked(p) => {
                write!(f, "{}: another writer (sluiced) holds the table", p.display())
            }
            TableError::Full(what) => write!(f, "SA table full: no free {what} slot"),
            TableError::NoSuchSa => f.write_str("no such SA (deleted or replaced)"),
            TableError::NoSuchPolicy => f.write_str("no such policy"),
            TableError::Invalid(m) => write!(f, "invalid SA: {m}"),
            TableError::NoReaderSlot => write!(f, "all {MAX_READERS} reader slots are in use"),
            TableError::Busy => f.write_str("readers have not passed a quiescent point yet"),
        }
    }
}

impl std::error::Error for TableError {}

/// Capacities chosen when the table is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// SA slots (each direction of a CHILD SA takes one).
    pub sas: u32,
    /// Policy slots.
    pub policies: u32,
}

/// An installed SA: slot and the generation it was published with. A handle
/// to a deleted or replaced SA no longer resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaHandle {
    /// Slot index.
    pub slot: u32,
    /// Generation of the slot's record at publication.
    pub generation: u64,
}

/// Identifier of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyId(pub u32);

/// Result of an outbound lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMatch {
    /// Protect with this SA.
    Protect(PolicyId, SaHandle),
    /// Protect, but no SA is bound (yet): trigger or drop.
    ProtectNoSa(PolicyId),
    /// Forward in the clear.
    Bypass(PolicyId),
    /// Drop.
    Drop(PolicyId),
}

/// A plain copy of counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Drops by [`DropReason`] index.
    pub drops: [u64; DropReason::COUNT],
}

impl SaCounters {
    /// Adds one burst's figures (one atomic add per field, not per packet).
    pub fn add(&self, packets: u64, bytes: u64, drops: &[u64; DropReason::COUNT]) {
        if packets != 0 {
            self.packets.fetch_add(packets, Ordering::Relaxed);
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        for (c, d) in self.drops.iter().zip(drops) {
            if *d != 0 {
                c.fetch_add(*d, Ordering::Relaxed);
            }
        }
    }

    /// A copy.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            drops: std::array::from_fn(|i| self.drops[i].load(Ordering::Relaxed)),
        }
    }

    fn zero(&self) {
        self.packets.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        for d in &self.drops {
            d.store(0, Ordering::Relaxed);
        }
    }
}

impl WorkerCounters {
    /// Counts a drop.
    pub fn drop_packets(&self, r: DropReason, n: u64) {
        self.drops[r as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of packets (rx), bytes (rx) and drops.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets: self.rx_packets.load(Ordering::Relaxed),
            bytes: self.rx_bytes.load(Ordering::Relaxed),
            drops: std::array::from_fn(|i| self.drops[i].load(Ordering::Relaxed)),
        }
    }
}

/// The shared mapping, validated.
struct Mapping {
    map: memmap2::MmapRaw,
    off: Offsets,
    path: PathBuf,
}

// SAFETY: the mapping is only accessed through atomics (see `at`), which are
// Sync; the raw pointer inside MmapRaw is what makes it !Send/!Sync by default.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// A reference to a `T` at byte offset `off`.
    fn at<T>(&self, off: usize) -> &T {
        assert!(off + core::mem::size_of::<T>() <= self.map.len());
        assert_eq!(off % core::mem::align_of::<T>(), 0);
        // SAFETY: in bounds and aligned (checked above; the mapping is page
        // aligned and offsets are multiples of the types' alignment); every
        // type placed in the mapping consists of atomics only, so shared
        // references from several threads and processes are sound, and the
        // mapping lives as long as `self`.
        unsafe { &*(self.base().add(off) as *const T) }
    }

    fn header(&self) -> &Header {
        self.at(0)
    }

    fn cold(&self, slot: u32) -> &SaCold {
        self.at(self.off.cold + slot as usize * core::mem::size_of::<SaCold>())
    }

    fn hot(&self, slot: u32) -> &SaHot {
        self.at(self.off.hot + slot as usize * core::mem::size_of::<SaHot>())
    }

    fn counters(&self, slot: u32) -> &SaCounters {
        self.at(self.off.counters + slot as usize * core::mem::size_of::<SaCounters>())
    }

    fn worker(&self, i: usize) -> &WorkerCounters {
        self.at(self.off.workers + (i % MAX_WORKERS) * core::mem::size_of::<WorkerCounters>())
    }

    fn reader(&self, i: usize) -> &ReaderSlot {
        self.at(self.off.readers + i * core::mem::size_of::<ReaderSlot>())
    }

    fn words(&self, off: usize, n: usize) -> &[AtomicU64] {
        assert!(off + n * 8 <= self.map.len());
        // SAFETY: in bounds (checked), 8-aligned (offsets are multiples of 64),
        // atomics only, lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.base().add(off) as *const AtomicU64, n) }
    }

    fn spi_index(&self) -> &[AtomicU64] {
        self.words(self.off.spi_index, self.off.spi_buckets)
    }

    fn policy_record(&self, i: u32) -> &[AtomicU64] {
        self.words(
            self.off.policy_records + i as usize * POLICY_WORDS * 8,
            POLICY_WORDS,
        )
    }

    fn binding(&self, i: u32) -> &AtomicU64 {
        self.at(self.off.policy_binding + i as usize * 8)
    }

    fn index_half(&self, half: usize) -> &[AtomicU64] {
        self.words(self.off.policy_index[half & 1], self.off.index_words)
    }

    fn open(path: &Path, file: &File) -> Result<Mapping, TableError> {
        let io = |e| TableError::Io(path.to_path_buf(), e);
        let len = file.metadata().map_err(io)?.len();
        if len < HEADER_SIZE as u64 {
            return Err(TableError::Truncated {
                expected: HEADER_SIZE as u64,
                found: len,
            });
        }
        let map = memmap2::MmapOptions::new().map_raw(file).map_err(io)?;
        let probe = Mapping {
            map,
            off: Offsets::new(0, 0),
            path: path.to_path_buf(),
        };
        let h = probe.header();
        let magic = h.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(TableError::BadMagic { found: magic });
        }
        let v = h.abi_version.load(Ordering::Relaxed);
        if v != ABI_VERSION {
            return Err(TableError::AbiVersion {
                expected: ABI_VERSION,
                found: v,
            });
        }
        let names = [
            "cold SA",
            "hot SA",
            "SA counters",
            "worker counters",
            "reader slot",
        ];
        for ((name, want), got) in names.iter().zip(record_sizes()).zip(&h.record_sizes) {
            let got = got.load(Ordering::Relaxed);
            if got != want {
                return Err(TableError::RecordSize {
                    what: name,
                    expected: want,
                    found: got,
                });
            }
        }
        let hs = h.header_size.load(Ordering::Relaxed);
        if hs as usize != HEADER_SIZE {
            return Err(TableError::RecordSize {
                what: "header",
                expected: HEADER_SIZE as u32,
                found: hs,
            });
        }
        let off = Offsets::new(
            h.sa_capacity.load(Ordering::Relaxed) as usize,
            h.policy_capacity.load(Ordering::Relaxed) as usize,
        );
        let total = h.total_size.load(Ordering::Relaxed);
        if off.total as u64 != total
            || h.spi_buckets.load(Ordering::Relaxed) as usize != off.spi_buckets
        {
            return Err(TableError::Invalid(format!(
                "header capacities imply {} bytes, header says {total}",
                off.total
            )));
        }
        if len < total {
            return Err(TableError::Truncated {
                expected: total,
                found: len,
            });
        }
        Ok(Mapping {
            map: probe.map,
            off,
            path: path.to_path_buf(),
        })
    }

    /// Resolves a handle: the record must still carry the generation.
    fn resolve(&self, h: SaHandle) -> bool {
        h.slot < self.off.sa_capacity as u32
            && self.cold(h.slot).rec.generation() == h.generation
            && h.generation & 1 == 0
    }

    fn config(&self, h: SaHandle) -> Option<SaConfig> {
        if h.slot >= self.off.sa_capacity as u32 {
            return None;
        }
        let (g, w) = self.cold(h.slot).rec.read()?;
        if g != h.generation {
            return None;
        }
        SaConfig::from_words(&w)
    }

    fn lookup_inbound(&self, spi: u32, dst: IpAddr) -> Option<SaHandle> {
        let idx = self.spi_index();
        let mask = idx.len() - 1;
        let (fam, d) = addr_to_u128(dst);
        let mut b = spi_hash(spi) & mask;
        for _ in 0..idx.len() {
            let e = idx[b].load(Ordering::Acquire);
            if e == 0 {
                return None;
            }
            if e != TOMBSTONE && (e >> 32) as u32 == spi {
                let slot = (e as u32).wrapping_sub(1);
                if slot < self.off.sa_capacity as u32 {
                    let rec = &self.cold(slot).rec;
                    let g = rec.generation();
                    // Destination and state checked against the same generation.
                    let w1 = rec.word_at(g, 1);
                    let w4 = rec.word_at(g, 4);
                    let w5 = rec.word_at(g, 5);
                    if let (Some(w1), Some(w4), Some(w5)) = (w1, w4, w5) {
                        let rd = u128::from(w4) | (u128::from(w5) << 64);
                        let live = w1 >> 56 == crate::config::STATE_LIVE;
                        if g & 1 == 0 && live && (w1 >> 40) as u8 == fam && rd == d {
                            return Some(SaHandle {
                                slot,
                                generation: g,
                            });
                        }
                    }
                }
            }
            b = (b + 1) & mask;
        }
        None
    }

    fn lookup_outbound(&self, f: &FlowKey) -> Option<PolicyMatch> {
        let gen = self.header().policy_generation.load(Ordering::Acquire);
        if gen == 0 {
            return None;
        }
        let half = self.index_half(gen as usize & 1);
        let (id, action) =
            policy::lookup(|i| half.get(i).map_or(0, |w| w.load(Ordering::Relaxed)), f)?;
        let pid = PolicyId(id);
        Some(match action {
            crate::config::Action::Bypass => PolicyMatch::Bypass(pid),
            crate::config::Action::Drop => PolicyMatch::Drop(pid),
            crate::config::Action::Protect => {
                if id >= self.off.policy_capacity as u32 {
                    return Some(PolicyMatch::ProtectNoSa(pid));
                }
                let b = self.binding(id).load(Ordering::Acquire);
                let slot = (b as u32).wrapping_sub(1);
                if b == 0 || slot >= self.off.sa_capacity as u32 {
                    return Some(PolicyMatch::ProtectNoSa(pid));
                }
                let g = self.cold(slot).rec.generation();
                if g & 1 == 1 || (g as u32) != (b >> 32) as u32 {
                    return Some(PolicyMatch::ProtectNoSa(pid));
                }
                PolicyMatch::Protect(
                    pid,
                    SaHandle {
                        slot,
                        generation: g,
                    },
                )
            }
        })
    }

    fn reader_epochs_alive(&self) -> impl Iterator<Item = &AtomicU64> + '_ {
        (0..MAX_READERS).filter_map(move |i| {
            let r = self.reader(i);
            let pid = r.pid.load(Ordering::SeqCst);
            (pid != 0 && pid_alive(pid)).then_some(&r.epoch)
        })
    }

    fn grace_passed(&self, retired_at: u64) -> bool {
        epoch::safe(self.reader_epochs_alive(), retired_at)
    }
}

const TOMBSTONE: u64 = u64::MAX;

fn spi_hash(spi: u32) -> usize {
    (u64::from(spi).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) as usize
}

fn pid_alive(pid: u64) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn my_pid() -> u64 {
    u64::from(std::process::id())
}

/// The control plane's handle: the only writer.
pub struct Writer {
    m: Mapping,
    _lock: File,
    free: Vec<u32>,
    retired: Vec<(u32, u64)>,
    spi_slots: HashMap<u32, u32>,
    policies: Vec<Option<Policy>>,
    free_policies: Vec<u32>,
    policy_dirty: bool,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.m.path)
            .field("free", &self.free.len())
            .field("retired", &self.retired.len())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Creates the table at `path` (mode 0600), or re-attaches to an
    /// existing one after validating it, and takes the writer lock. On
    /// re-attach the private bookkeeping is rebuilt from the mapping; readers
    /// keep working throughout.
    pub fn create_or_attach(path: &Path, cap: Capacity) -> Result<Writer, TableError> {
        let io = |e| TableError::Io(path.to_path_buf(), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(TableError::WriterLocked(path.to_path_buf()));
        }
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            let off = Offsets::new(cap.sas as usize, cap.policies as usize);
            file.set_len(off.total as u64).map_err(io)?;
            let map = memmap2::MmapOptions::new().map_raw(&file).map_err(io)?;
            let m = Mapping {
                map,
                off,
                path: path.to_path_buf(),
            };
            let h = m.header();
            h.abi_version.store(ABI_VERSION, Ordering::Relaxed);
            h.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
            for (slot, s) in h.record_sizes.iter().zip(record_sizes()) {
                slot.store(s, Ordering::Relaxed);
            }
            h.sa_capacity.store(cap.sas, Ordering::Relaxed);
            h.spi_buckets
                .store(off.spi_buckets as u32, Ordering::Relaxed);
            h.policy_capacity.store(cap.policies, Ordering::Relaxed);
            h.index_words
                .store(off.index_words as u32, Ordering::Relaxed);
            h.total_size.store(off.total as u64, Ordering::Relaxed);
            h.epoch.store(1, Ordering::Relaxed);
            for s in 0..cap.sas {
                m.hot(s).replay.reset(sluice_esp::replay::DEFAULT_WINDOW);
            }
            h.magic.store(MAGIC, Ordering::Release);
        }
        let m = Mapping::open(path, &file)?;
        m.header().writer_pid.store(my_pid(), Ordering::Relaxed);
        let mut w = Writer {
            m,
            _lock: file,
            free: Vec::new(),
            retired: Vec::new(),
            spi_slots: HashMap::new(),
            policies: Vec::new(),
            free_policies: Vec::new(),
            policy_dirty: false,
        };
        w.rebuild();
        Ok(w)
    }

    /// Recovers the private state from the mapping (after a restart).
    fn rebuild(&mut self) {
        let cap = self.m.off.sa_capacity as u32;
        let retire_at = epoch::advance(&self.m.header().epoch);
        for slot in (0..cap).rev() {
            match self
                .m
                .cold(slot)
                .rec
                .read()
                .and_then(|(_, w)| SaConfig::from_words(&w))
            {
                Some(cfg) => {
                    self.spi_slots.insert(cfg.spi, slot);
                }
                // Free or retired: reuse only after readers moved on, in case
                // the previous writer died between unlink and reclaim.
                None => self.retired.push((slot, retire_at)),
            }
        }
        let pcap = self.m.off.policy_capacity as u32;
        for i in 0..pcap {
            let rec = self.m.policy_record(i);
            let w: [u64; POLICY_WORDS] = std::array::from_fn(|k| rec[k].load(Ordering::Relaxed));
            self.policies.push(Policy::from_words(&w));
        }
        self.free_policies = (0..pcap)
            .rev()
            .filter(|i| self.policies[*i as usize].is_none())
            .collect();
    }

    /// Moves retired slots whose grace period passed to the free list.
    /// Returns how many were reclaimed.
    pub fn reclaim(&mut self) -> usize {
        let before = self.free.len();
        let mut keep = Vec::new();
        for (slot, at) in std::mem::take(&mut self.retired) {
            if self.m.grace_passed(at) {
                self.free.push(slot);
            } else {
                keep.push((slot, at));
            }
        }
        self.retired = keep;
        self.free.len() - before
    }

    /// Installs an SA: writes its record into a free slot, then (inbound)
    /// links it into the SPI index. Returns its handle.
    pub fn insert_sa(&mut self, cfg: &SaConfig) -> Result<SaHandle, TableError> {
        cfg.validate().map_err(TableError::Invalid)?;
        if cfg.direction == Direction::Inbound && self.spi_slots.contains_key(&cfg.spi) {
            return Err(TableError::Invalid(format!(
                "inbound SPI {:08x} already installed",
                cfg.spi
            )));
        }
        if self.free.is_empty() {
            self.reclaim();
        }
        // Slots waiting only for readers to pass a quiescent point (they do
        // once per burst): wait a little rather than fail.
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.free.is_empty() && !self.retired.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
            self.reclaim();
        }
        let slot = self.free.pop().ok_or(TableError::Full("SA"))?;
        let hot = self.m.hot(slot);
        hot.seq.store(0, Ordering::Relaxed);
        hot.owner.store(0, Ordering::Relaxed);
        hot.replay.reset(cfg.replay_window);
        self.m.counters(slot).zero();
        let generation = self.m.cold(slot).rec.write(&cfg.to_words());
        if cfg.direction == Direction::Inbound {
            self.link_spi(cfg.spi, slot);
            self.spi_slots.insert(cfg.spi, slot);
        }
        Ok(SaHandle { slot, generation })
    }

    fn link_spi(&self, spi: u32, slot: u32) {
        let idx = self.m.spi_index();
        let mask = idx.len() - 1;
        let mut b = spi_hash(spi) & mask;
        loop {
            let e = idx[b].load(Ordering::Relaxed);
            if e == 0 || e == TOMBSTONE {
                idx[b].store(
                    (u64::from(spi) << 32) | u64::from(slot + 1),
                    Ordering::Release,
                );
                return;
            }
            b = (b + 1) & mask;
        }
    }

    fn unlink_spi(&self, spi: u32, slot: u32) {
        let idx = self.m.spi_index();
        let mask = idx.len() - 1;
        let want = (u64::from(spi) << 32) | u64::from(slot + 1);
        let mut b = spi_hash(spi) & mask;
        for _ in 0..idx.len() {
            let e = idx[b].load(Ordering::Relaxed);
            if e == 0 {
                return;
            }
            if e == want {
                idx[b].store(TOMBSTONE, Ordering::Release);
                return;
            }
            b = (b + 1) & mask;
        }
    }

    /// Deletes an SA: unlinks it, zeroizes its keys (a new generation, so
    /// readers' handles stop resolving) and retires the slot until every
    /// reader has passed a quiescent point.
    pub fn delete_sa(&mut self, h: SaHandle) -> Result<(), TableError> {
        let cfg = self.m.config(h).ok_or(TableError::NoSuchSa)?;
        if cfg.direction == Direction::Inbound {
            self.unlink_spi(cfg.spi, h.slot);
            self.spi_slots.remove(&cfg.spi);
        }
        for (i, p) in self.policies.iter().enumerate() {
            let b = self.m.binding(i as u32);
            if p.is_some() && (b.load(Ordering::Relaxed) as u32).wrapping_sub(1) == h.slot {
                b.store(0, Ordering::Release);
            }
        }
        self.m.cold(h.slot).rec.write(&[0; COLD_WORDS]);
        let at = epoch::advance(&self.m.header().epoch);
        self.retired.push((h.slot, at));
        Ok(())
    }

    /// Rekey: installs `new`, moves every policy bound to `old` onto it, then
    /// deletes `old`. Readers see the old SA or the new one, never a mix.
    pub fn replace_sa(&mut self, old: SaHandle, new: &SaConfig) -> Result<SaHandle, TableError> {
        if !self.m.resolve(old) {
            return Err(TableError::NoSuchSa);
        }
        let h = self.insert_sa(new)?;
        for i in 0..self.policies.len() as u32 {
            let b = self.m.binding(i);
            if (b.load(Ordering::Relaxed) as u32).wrapping_sub(1) == old.slot {
                b.store(binding_word(h), Ordering::Release);
            }
        }
        self.delete_sa(old)?;
        Ok(h)
    }

    /// Adds a policy; it takes effect at the next [`Writer::commit`].
    pub fn add_policy(&mut self, p: Policy) -> Result<PolicyId, TableError> {
        if p.src.addr.is_ipv4() != p.dst.addr.is_ipv4() {
            return Err(TableError::Invalid(
                "policy prefixes of different families".into(),
            ));
        }
        let id = self.free_policies.pop().ok_or(TableError::Full("policy"))?;
        let rec = self.m.policy_record(id);
        for (slot, w) in rec.iter().zip(p.to_words()) {
            slot.store(w, Ordering::Relaxed);
        }
        self.m.binding(id).store(0, Ordering::Release);
        self.policies[id as usize] = Some(p);
        self.policy_dirty = true;
        Ok(PolicyId(id))
    }

    /// Removes a policy (effective at the next commit).
    pub fn remove_policy(&mut self, id: PolicyId) -> Result<(), TableError> {
        let p = self
            .policies
            .get_mut(id.0 as usize)
            .ok_or(TableError::NoSuchPolicy)?;
        if p.take().is_none() {
            return Err(TableError::NoSuchPolicy);
        }
        for w in self.m.policy_record(id.0) {
            w.store(0, Ordering::Relaxed);
        }
        self.m.binding(id.0).store(0, Ordering::Release);
        self.free_policies.push(id.0);
        self.policy_dirty = true;
        Ok(())
    }

    /// Binds a PROTECT policy to an outbound SA (or unbinds it), effective
    /// immediately, without recompiling the index.
    pub fn bind_policy(&mut self, id: PolicyId, sa: Option<SaHandle>) -> Result<(), TableError> {
        if self.policies.get(id.0 as usize).is_none_or(|p| p.is_none()) {
            return Err(TableError::NoSuchPolicy);
        }
        let word = match sa {
            Some(h) if self.m.resolve(h) => binding_word(h),
            Some(_) => return Err(TableError::NoSuchSa),
            None => 0,
        };
        self.m.binding(id.0).store(word, Ordering::Release);
        Ok(())
    }

    /// Publishes policy changes: compiles the index into the inactive half
    /// (after readers left it, waiting at most 1 s) and flips to it.
    pub fn commit(&mut self) -> Result<(), TableError> {
        if !self.policy_dirty {
            return Ok(());
        }
        let h = self.m.header();
        let flip_epoch = h.policy_flip_epoch.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.m.grace_passed(flip_epoch) {
            if Instant::now() > deadline {
                return Err(TableError::Busy);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let list: Vec<(u32, Policy)> = self
            .policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (i as u32, p)))
            .collect();
        let words = policy::compile(&list, self.m.off.policy_capacity, self.m.off.index_words)
            .map_err(|e| TableError::Invalid(format!("policy index: {e:?}")))?;
        let gen = h.policy_generation.load(Ordering::Relaxed);
        let next = gen + 1;
        let half = self.m.index_half(next as usize & 1);
        for (slot, w) in half.iter().zip(&words) {
            slot.store(*w, Ordering::Relaxed);
        }
        h.policy_generation.store(next, Ordering::Release);
        let at = epoch::advance(&h.epoch);
        h.policy_flip_epoch.store(at, Ordering::Relaxed);
        self.policy_dirty = false;
        Ok(())
    }

    /// Every live SA with its handle (the control plane reconciles with this
    /// after a restart).
    pub fn live_sas(&self) -> Vec<(SaHandle, SaConfig)> {
        (0..self.m.off.sa_capacity as u32)
            .filter_map(|slot| {
                let (g, w) = self.m.cold(slot).rec.read()?;
                Some((
                    SaHandle {
                        slot,
                        generation: g,
                    },
                    SaConfig::from_words(&w)?,
                ))
            })
            .collect()
    }

    /// Live policies with their ids.
    pub fn policies(&self) -> Vec<(PolicyId, Policy)> {
        self.policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (PolicyId(i as u32), p)))
            .collect()
    }

    /// An SA's counters.
    pub fn sa_counters(&self, h: SaHandle) -> Option<CounterSnapshot> {
        self.m
            .resolve(h)
            .then(|| self.m.counters(h.slot).snapshot())
    }

    /// An SA's hot state (sequence number, replay window top).
    pub fn sa_hot(&self, h: SaHandle) -> Option<&SaHot> {
        self.m.resolve(h).then(|| self.m.hot(h.slot))
    }

    /// A worker's counters.
    pub fn worker_counters(&self, worker: usize) -> &WorkerCounters {
        self.m.worker(worker)
    }

    /// Slots waiting for readers before reuse.
    pub fn retired_slots(&self) -> usize {
        self.retired.len()
    }
}

fn binding_word(h: SaHandle) -> u64 {
    ((h.generation & 0xffff_ffff) << 32) | u64::from(h.slot + 1)
}

/// A data-plane process's view of the table.
#[derive(Clone)]
pub struct Reader {
    m: Arc<Mapping>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.m.path)
            .finish()
    }
}

impl Reader {
    /// Attaches to an existing table, refusing a mismatched one.
    pub fn attach(path: &Path) -> Result<Reader, TableError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| TableError::Io(path.to_path_buf(), e))?;
        Ok(Reader {
            m: Arc::new(Mapping::open(path, &file)?),
        })
    }

    /// Registers the calling thread as a reader (one slot per thread; slots
    /// of dead processes are taken over).
    pub fn register_thread(&self) -> Result<ReaderThread, TableError> {
        let me = my_pid();
        for i in 0..MAX_READERS {
            let r = self.m.reader(i);
            let cur = r.pid.load(Ordering::SeqCst);
            let free = cur == 0 || !pid_alive(cur);
            if free
                && r.pid
                    .compare_exchange(cur, me, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                let t = ReaderThread {
                    m: self.m.clone(),
                    slot: i,
                };
                t.quiescent();
                return Ok(t);
            }
        }
        Err(TableError::NoReaderSlot)
    }
}

/// One registered reader thread. Between [`ReaderThread::quiescent`] calls
/// it may hold handles and references; it must hold none when it calls it.
pub struct ReaderThread {
    m: Arc<Mapping>,
    slot: usize,
}

impl fmt::Debug for ReaderThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReaderThread")
            .field("slot", &self.slot)
            .finish()
    }
}

impl ReaderThread {
    /// Inbound SA for an SPI and outer destination (RFC 4301 §4.1), O(1).
    pub fn lookup_inbound(&self, spi: u32, dst: IpAddr) -> Option<SaHandle> {
        self.m.lookup_inbound(spi, dst)
    }

    /// Most specific policy for an inner flow, and its SA if protected.
    pub fn lookup_outbound(&self, f: &FlowKey) -> Option<PolicyMatch> {
        self.m.lookup_outbound(f)
    }

    /// A consistent copy of an SA's configuration and keys (to build the
    /// key schedule once per handle), or `None` if it is gone.
    pub fn config(&self, h: SaHandle) -> Option<SaConfig> {
        self.m.config(h)
    }

    /// Whether a handle still names a live SA.
    pub fn is_current(&self, h: SaHandle) -> bool {
        self.m.resolve(h)
    }

    /// The SA's hot runtime (sequence counter, replay window).
    pub fn hot(&self, h: SaHandle) -> &SaHot {
        self.m
            .hot(h.slot.min(self.m.off.sa_capacity.saturating_sub(1) as u32))
    }

    /// The SA's counters.
    pub fn counters(&self, h: SaHandle) -> &SaCounters {
        self.m
            .counters(h.slot.min(self.m.off.sa_capacity.saturating_sub(1) as u32))
    }

    /// A worker's counters.
    pub fn worker_counters(&self, worker: usize) -> &WorkerCounters {
        self.m.worker(worker)
    }

    /// Every live SA with its handle and counters: a consistent copy per SA
    /// (for status tools; not a per-packet path).
    pub fn live_sas(&self) -> Vec<(SaHandle, SaConfig, CounterSnapshot)> {
        (0..self.m.off.sa_capacity as u32)
            .filter_map(|slot| {
                let (g, w) = self.m.cold(slot).rec.read()?;
                let cfg = SaConfig::from_words(&w)?;
                Some((
                    SaHandle {
                        slot,
                        generation: g,
                    },
                    cfg,
                    self.m.counters(slot).snapshot(),
                ))
            })
            .collect()
    }

    /// Announces a quiescent point (once per burst loop).
    pub fn quiescent(&self) {
        let h = self.m.header();
        epoch::quiescent(&h.epoch, &self.m.reader(self.slot).epoch);
    }

    /// Goes offline (idle): the writer does not wait for this thread.
    pub fn offline(&self) {
        self.m
            .reader(self.slot)
            .epoch
            .store(epoch::OFFLINE, Ordering::SeqCst);
    }
}

impl Drop for ReaderThread {
    fn drop(&mut self) {
        let r = self.m.reader(self.slot);
        r.epoch.store(epoch::OFFLINE, Ordering::SeqCst);
        r.pid.store(0, Ordering::SeqCst);
    }
}
