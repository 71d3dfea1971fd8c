//! The validated shared mapping and the lookups on it.

use crate::config::{addr_to_u128, Action, FlowKey, STATE_LIVE};
use crate::epoch;
use crate::error::TableError;
use crate::layout::*;
use crate::policy;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An SPI index entry that was deleted. Never turned back into empty (0)
/// while the table lives; inserts reuse it.
pub(crate) const TOMBSTONE: u64 = u64::MAX;

/// An installed SA: slot and the (even) generation it was published with.
/// A handle to a deleted or replaced SA no longer resolves. The data plane
/// keys its process-local key-schedule cache by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaHandle {
    /// Slot index.
    pub slot: u32,
    /// Generation of the slot's record at publication.
    pub generation: u64,
}

/// Identifier of a policy (its slot in the policy records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub u32);

/// Result of an outbound lookup that found a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMatch {
    /// Protect with this outbound SA.
    Protect(PolicyId, SaHandle),
    /// Protect, but no SA is bound (yet): trigger an acquire, drop.
    ProtectNoSa(PolicyId),
    /// Forward in the clear.
    Bypass(PolicyId),
    /// Drop.
    Drop(PolicyId),
}

impl PolicyMatch {
    /// The matching policy.
    pub fn policy(&self) -> PolicyId {
        match *self {
            PolicyMatch::Protect(p, _)
            | PolicyMatch::ProtectNoSa(p)
            | PolicyMatch::Bypass(p)
            | PolicyMatch::Drop(p) => p,
        }
    }
}

/// The shared mapping, validated.
pub(crate) struct Mapping {
    map: memmap2::MmapRaw,
    pub(crate) off: Offsets,
    pub(crate) path: PathBuf,
}

// SAFETY: the mapping is only accessed through atomics (see `at`), which are
// Sync; the raw pointer inside MmapRaw is what makes it !Send/!Sync by default.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `file` without validating (the writer initialises through this).
    pub(crate) fn map_raw(path: &Path, file: &File, off: Offsets) -> Result<Mapping, TableError> {
        Self::map_min(path, file, off, off.total.max(HEADER_SIZE))
    }

    /// Maps `file` to read its header only (every accessor checks bounds).
    pub(crate) fn probe(path: &Path, file: &File) -> Result<Mapping, TableError> {
        Self::map_min(path, file, Offsets::new(0, 0), HEADER_SIZE)
    }

    fn map_min(path: &Path, file: &File, off: Offsets, min: usize) -> Result<Mapping, TableError> {
        let map = memmap2::MmapOptions::new()
            .map_raw(file)
            .map_err(|e| TableError::Io(path.to_path_buf(), e))?;
        if map.len() < min {
            return Err(TableError::Truncated {
                expected: min as u64,
                found: map.len() as u64,
            });
        }
        Ok(Mapping {
            map,
            off,
            path: path.to_path_buf(),
        })
    }

    /// Zeroes the whole mapping (creation, before the magic is written).
    pub(crate) fn zero_all(&self) {
        // SAFETY: the pointer and length are those of the live mapping. It is
        // called only by the writer holding the lock on a file whose magic is
        // not (yet) valid, so no reader has accepted it and no reference into
        // it exists in this process.
        unsafe { std::ptr::write_bytes(self.map.as_mut_ptr(), 0, self.map.len()) }
    }

    /// A reference to a `T` at byte offset `off`.
    fn at<T>(&self, off: usize) -> &T {
        assert!(off + core::mem::size_of::<T>() <= self.map.len());
        assert_eq!(off % core::mem::align_of::<T>(), 0);
        // SAFETY: in bounds and aligned (checked above; the mapping is page
        // aligned and offsets are multiples of the types' alignment); every
        // type placed in the mapping consists of atomics only (or padding
        // and plain reserved words never written), so shared references
        // from several threads and processes are sound, and the mapping
        // lives as long as `self`.
        unsafe { &*(self.map.as_mut_ptr().add(off) as *const T) }
    }

    fn words(&self, off: usize, n: usize) -> &[AtomicU64] {
        assert!(off + n * 8 <= self.map.len());
        assert_eq!(off % 8, 0);
        // SAFETY: in bounds and 8-aligned (checked), atomics only, lives as
        // long as `self`.
        unsafe { std::slice::from_raw_parts(self.map.as_mut_ptr().add(off) as *const AtomicU64, n) }
    }

    pub(crate) fn header(&self) -> &Header {
        self.at(0)
    }

    pub(crate) fn cold(&self, slot: u32) -> &SaCold {
        self.at(self.off.cold + slot as usize * core::mem::size_of::<SaCold>())
    }

    pub(crate) fn hot(&self, slot: u32) -> &SaHot {
        self.at(self.off.hot + slot as usize * core::mem::size_of::<SaHot>())
    }

    pub(crate) fn counters(&self, slot: u32) -> &SaCounters {
        self.at(self.off.counters + slot as usize * core::mem::size_of::<SaCounters>())
    }

    pub(crate) fn worker(&self, i: usize) -> Option<&WorkerCounters> {
        (i < MAX_WORKERS)
            .then(|| self.at(self.off.workers + i * core::mem::size_of::<WorkerCounters>()))
    }

    pub(crate) fn reader(&self, i: usize) -> &ReaderSlot {
        self.at(self.off.readers + i * core::mem::size_of::<ReaderSlot>())
    }

    pub(crate) fn spi_index(&self) -> &[AtomicU64] {
        self.words(self.off.spi_index, self.off.spi_buckets)
    }

    pub(crate) fn policy_record(&self, i: u32) -> &[AtomicU64] {
        self.words(
            self.off.policy_records + i as usize * POLICY_WORDS * 8,
            POLICY_WORDS,
        )
    }

    pub(crate) fn binding(&self, i: u32) -> &AtomicU64 {
        self.at(self.off.policy_binding + i as usize * 8)
    }

    pub(crate) fn index_half(&self, half: usize) -> &[AtomicU64] {
        self.words(self.off.policy_index[half & 1], self.off.index_words)
    }

    pub(crate) fn sa_capacity(&self) -> u32 {
        self.off.sa_capacity as u32
    }

    /// Maps and validates an existing table.
    pub(crate) fn open(path: &Path, file: &File) -> Result<Mapping, TableError> {
        let io = |e| TableError::Io(path.to_path_buf(), e);
        let len = file.metadata().map_err(io)?.len();
        if len < HEADER_SIZE as u64 {
            return Err(TableError::Truncated {
                expected: HEADER_SIZE as u64,
                found: len,
            });
        }
        let probe = Mapping::probe(path, file)?;
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
        let hs = h.header_size.load(Ordering::Relaxed);
        if hs as usize != HEADER_SIZE {
            return Err(TableError::RecordSize {
                what: "header",
                expected: HEADER_SIZE as u32,
                found: hs,
            });
        }
        for ((what, expected), got) in RECORD_NAMES.iter().zip(record_sizes()).zip(&h.record_sizes)
        {
            let found = got.load(Ordering::Relaxed);
            if found != expected {
                return Err(TableError::RecordSize {
                    what,
                    expected,
                    found,
                });
            }
        }
        let off = Offsets::new(
            h.sa_capacity.load(Ordering::Relaxed) as usize,
            h.policy_capacity.load(Ordering::Relaxed) as usize,
        );
        for ((what, expected), got) in SECTION_NAMES.iter().zip(off.sections()).zip(&h.sections) {
            let found = got.load(Ordering::Relaxed);
            if found != expected {
                return Err(TableError::SectionOffset {
                    what,
                    expected,
                    found,
                });
            }
        }
        let checks = [
            (
                "SPI buckets",
                off.spi_buckets as u64,
                u64::from(h.spi_buckets.load(Ordering::Relaxed)),
            ),
            (
                "policy index words",
                off.index_words as u64,
                u64::from(h.index_words.load(Ordering::Relaxed)),
            ),
            (
                "total size",
                off.total as u64,
                h.total_size.load(Ordering::Relaxed),
            ),
        ];
        for (what, expected, found) in checks {
            if expected != found {
                return Err(TableError::Invalid(format!(
                    "header {what} is {found}, its capacities imply {expected}"
                )));
            }
        }
        if len < off.total as u64 {
            return Err(TableError::Truncated {
                expected: off.total as u64,
                found: len,
            });
        }
        drop(probe);
        Mapping::map_raw(path, file, off)
    }

    /// Whether `h` still names the live SA it was issued for.
    pub(crate) fn resolve(&self, h: SaHandle) -> bool {
        h.slot < self.sa_capacity()
            && h.generation & 1 == 0
            && self.cold(h.slot).rec.generation() == h.generation
            && self
                .cold(h.slot)
                .rec
                .word_at(h.generation, 1)
                .is_some_and(|w| w >> 56 == STATE_LIVE)
    }

    pub(crate) fn lookup_inbound(&self, spi: u32, dst: IpAddr) -> Option<SaHandle> {
        let idx = self.spi_index();
        let mask = idx.len() - 1;
        let (fam, d) = addr_to_u128(dst);
        let mut b = spi_hash(spi) & mask;
        for _ in 0..idx.len() {
            let e = idx.get(b)?.load(Ordering::Acquire);
            if e == 0 {
                return None;
            }
            if e != TOMBSTONE && (e >> 32) as u32 == spi {
                let slot = (e as u32).wrapping_sub(1);
                if slot < self.sa_capacity() {
                    let rec = &self.cold(slot).rec;
                    let g = rec.generation();
                    // SPI, state, family and destination, all checked
                    // against the same even generation.
                    let w1 = rec.word_at(g, 1);
                    let w4 = rec.word_at(g, 4);
                    let w5 = rec.word_at(g, 5);
                    if let (Some(w1), Some(w4), Some(w5)) = (w1, w4, w5) {
                        let rd = u128::from(w4) | (u128::from(w5) << 64);
                        if g & 1 == 0
                            && w1 >> 56 == STATE_LIVE
                            && w1 as u32 == spi
                            && (w1 >> 32) & 1 == 0
                            && (w1 >> 40) as u8 == fam
                            && rd == d
                        {
                            return Some(SaHandle {
                                slot,
                                generation: g,
                            });
                        }
                    }
                }
                // One SPI has at most one entry: a stale one means "gone".
                return None;
            }
            b = (b + 1) & mask;
        }
        None
    }

    pub(crate) fn lookup_outbound(&self, f: &FlowKey) -> Option<PolicyMatch> {
        let gen = self.header().policy_generation.load(Ordering::Acquire);
        if gen == 0 {
            return None;
        }
        let half = self.index_half(gen as usize & 1);
        let (id, action) =
            policy::lookup(|i| half.get(i).map_or(0, |w| w.load(Ordering::Relaxed)), f)?;
        let pid = PolicyId(id);
        Some(match action {
            Action::Bypass => PolicyMatch::Bypass(pid),
            Action::Drop => PolicyMatch::Drop(pid),
            Action::Protect => match self.bound_sa(id) {
                Some(h) => PolicyMatch::Protect(pid, h),
                None => PolicyMatch::ProtectNoSa(pid),
            },
        })
    }

    /// The SA a policy's binding word points at, if it is still the SA that
    /// was bound (same generation).
    pub(crate) fn bound_sa(&self, policy: u32) -> Option<SaHandle> {
        if policy >= self.off.policy_capacity as u32 {
            return None;
        }
        let b = self.binding(policy).load(Ordering::Acquire);
        let slot = (b as u32).wrapping_sub(1);
        if b == 0 || slot >= self.sa_capacity() {
            return None;
        }
        let g = self.cold(slot).rec.generation();
        (g & 1 == 0 && (g as u32) == (b >> 32) as u32).then_some(SaHandle {
            slot,
            generation: g,
        })
    }

    /// Epoch words of the reader slots whose process is alive.
    fn reader_epochs_alive(&self) -> impl Iterator<Item = &AtomicU64> + '_ {
        (0..MAX_READERS).filter_map(move |i| {
            let r = self.reader(i);
            (r.pid.load(Ordering::Acquire) != 0 && reader_alive(r)).then_some(&r.epoch)
        })
    }

    /// Whether every live reader passed a quiescent point since `retired_at`.
    pub(crate) fn grace_passed(&self, retired_at: u64) -> bool {
        retired_at <= self.grace_horizon()
    }

    /// Everything retired at or before this epoch is free of readers (see
    /// [`epoch::horizon`]). Costs a liveness check per reader slot in use,
    /// so a batch of retired slots is judged against one horizon.
    pub(crate) fn grace_horizon(&self) -> u64 {
        epoch::horizon(self.reader_epochs_alive())
    }
}

pub(crate) fn spi_hash(spi: u32) -> usize {
    (u64::from(spi).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) as usize
}

/// Whether the process owning a reader slot still runs.
pub(crate) fn reader_alive(r: &ReaderSlot) -> bool {
    process_alive(
        r.pid.load(Ordering::Acquire),
        r.start_time.load(Ordering::Acquire),
    )
}

/// Whether process `pid`, started at `start` (0 = unknown), still runs.
fn process_alive(pid: u64, start: u64) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the
    // process exists and may be signalled.
    let r = unsafe { libc::kill(p, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // A recycled PID belongs to a process started at another time.
    exists && (start == 0 || process_start_time(pid).is_none_or(|s| s == start))
}

/// Start time of a process in clock ticks since boot (`/proc/PID/stat`
/// field 22), to tell a recycled PID from the original process.
pub(crate) fn process_start_time(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub(crate) fn my_pid() -> u64 {
    u64::from(std::process::id())
}
