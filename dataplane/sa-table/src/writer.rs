//! The control plane's side: the only writer.

use crate::config::{Direction, Policy, SaConfig};
use crate::counters::{CounterSnapshot, WorkerSnapshot};
use crate::epoch;
use crate::error::TableError;
use crate::layout::*;
use crate::mapping::{my_pid, spi_hash, Mapping, PolicyId, SaHandle, TOMBSTONE};
use crate::policy;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zeroize::Zeroize;

/// Capacities chosen when the table is created (a re-attaching writer uses
/// the file's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// SA slots (each direction of a CHILD SA takes one).
    pub sas: u32,
    /// Policy slots.
    pub policies: u32,
}

/// How long `insert_sa` waits for readers to release retired slots when no
/// slot is free, and `commit` for them to leave the inactive index half.
const GRACE_WAIT: Duration = Duration::from_millis(500);

/// The control plane's handle on the table: the only writer (an `flock` on
/// the file keeps a second one out). Policy changes are batched and
/// published by [`Writer::commit`]; SA changes take effect at once.
pub struct Writer {
    m: Mapping,
    _lock: File,
    free: Vec<u32>,
    /// (slot, epoch it was retired at)
    retired: Vec<(u32, u64)>,
    /// Inbound SPI -> slot of the live SA.
    spi_slots: HashMap<u32, u32>,
    policies: Vec<Option<Policy>>,
    free_policies: Vec<u32>,
    /// SA slot -> policies bound to it.
    bound: HashMap<u32, Vec<u32>>,
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

fn binding_word(h: SaHandle) -> u64 {
    ((h.generation & 0xffff_ffff) << 32) | u64::from(h.slot + 1)
}

fn spi_entry(spi: u32, slot: u32) -> u64 {
    (u64::from(spi) << 32) | u64::from(slot + 1)
}

impl Writer {
    /// Creates the table at `path` (mode 0600, parent directories 0700), or
    /// re-attaches to an existing one after validating its header, and takes
    /// the writer lock ([`TableError::WriterLocked`] if another live writer
    /// holds it). On re-attach the private bookkeeping (free, retired and
    /// policy lists, bindings) is rebuilt by scanning the mapping; readers
    /// keep working throughout.
    pub fn create_or_attach(path: impl AsRef<Path>, cap: Capacity) -> Result<Writer, TableError> {
        let path = path.as_ref();
        let io = |e| TableError::Io(path.to_path_buf(), e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a file descriptor we own; the lock lives as long
        // as the descriptor (kept in the Writer), so it dies with the process.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(TableError::WriterLocked(path.to_path_buf()));
        }
        if !Self::initialised(path, &file)? {
            Self::initialise(path, &file, cap)?;
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
            bound: HashMap::new(),
            policy_dirty: false,
        };
        w.rebuild();
        Ok(w)
    }

    /// Whether the file carries a header (creation completed once).
    fn initialised(path: &Path, file: &File) -> Result<bool, TableError> {
        let len = file
            .metadata()
            .map_err(|e| TableError::Io(path.to_path_buf(), e))?
            .len();
        if len < HEADER_SIZE as u64 {
            return Ok(false);
        }
        let probe = Mapping::probe(path, file)?;
        Ok(probe.header().magic.load(Ordering::Acquire) != 0)
    }

    /// Lays out a new table. Only under the lock, on a file without magic
    /// (new, or a creation that died half-way): no reader accepted it.
    fn initialise(path: &Path, file: &File, cap: Capacity) -> Result<(), TableError> {
        let off = Offsets::new(cap.sas as usize, cap.policies as usize);
        let len = file
            .metadata()
            .map_err(|e| TableError::Io(path.to_path_buf(), e))?
            .len();
        // Only ever grow: a reader may have the file mapped while it checks
        // the magic, and shrinking would fault it.
        if len < off.total as u64 {
            file.set_len(off.total as u64)
                .map_err(|e| TableError::Io(path.to_path_buf(), e))?;
        }
        let m = Mapping::map_raw(path, file, off)?;
        if len != 0 {
            m.zero_all();
        }
        let h = m.header();
        h.abi_version.store(ABI_VERSION, Ordering::Relaxed);
        h.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
        for (slot, s) in h.record_sizes.iter().zip(record_sizes()) {
            slot.store(s, Ordering::Relaxed);
        }
        for (slot, s) in h.sections.iter().zip(off.sections()) {
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
        // Last, with Release: a reader that sees the magic sees the rest.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(())
    }

    /// Recovers the private state from the mapping (after a restart) and
    /// repairs what a writer that died mid-operation may have left.
    fn rebuild(&mut self) {
        let cap = self.m.sa_capacity();
        let retire_at = epoch::advance(&self.m.header().epoch);
        let mut buf = [0u64; COLD_WORDS];
        let mut live: HashMap<u32, (u64, u32, bool)> = HashMap::new(); // slot -> (gen, spi, inbound)
        for slot in (0..cap).rev() {
            let rec = &self.m.cold(slot).rec;
            match rec.read_into(&mut buf) {
                Some(g) if buf[1] >> 56 == crate::config::STATE_LIVE => {
                    let spi = buf[1] as u32;
                    let inbound = (buf[1] >> 32) & 1 == 0;
                    live.insert(slot, (g, spi, inbound));
                }
                other => {
                    // Free, deleted, or half-written by a writer that died:
                    // zeroize, and reuse only after readers moved on.
                    if other.is_none() || buf.iter().any(|w| *w != 0) {
                        rec.write(&[0; COLD_WORDS]);
                    }
                    self.retired.push((slot, retire_at));
                }
            }
        }
        buf.zeroize();
        // SPI index: drop entries that do not name a live inbound SA of
        // that SPI (or duplicate one), then link live SAs that are missing.
        let idx = self.m.spi_index();
        for e in idx {
            let v = e.load(Ordering::Relaxed);
            if v == 0 || v == TOMBSTONE {
                continue;
            }
            let (spi, slot) = ((v >> 32) as u32, (v as u32).wrapping_sub(1));
            let ok = live.get(&slot).is_some_and(|&(_, s, inb)| inb && s == spi)
                && !self.spi_slots.contains_key(&spi);
            if ok {
                self.spi_slots.insert(spi, slot);
            } else {
                e.store(TOMBSTONE, Ordering::Release);
            }
        }
        let mut missing: Vec<(u32, u32)> = live
            .iter()
            .filter(|(_, (_, spi, inb))| *inb && !self.spi_slots.contains_key(spi))
            .map(|(slot, (_, spi, _))| (*spi, *slot))
            .collect();
        missing.sort_unstable();
        for (spi, slot) in missing {
            if !self.spi_slots.contains_key(&spi) {
                self.link_spi(spi, slot);
                self.spi_slots.insert(spi, slot);
            }
        }
        // Policies and their bindings.
        let pcap = self.m.off.policy_capacity as u32;
        for i in 0..pcap {
            let rec = self.m.policy_record(i);
            let w: [u64; POLICY_WORDS] =
                std::array::from_fn(|k| rec.get(k).map_or(0, |x| x.load(Ordering::Acquire)));
            let p = Policy::from_words(&w);
            let b = self.m.binding(i);
            let bw = b.load(Ordering::Relaxed);
            let slot = (bw as u32).wrapping_sub(1);
            let bound_ok = p.is_some()
                && bw != 0
                && live
                    .get(&slot)
                    .is_some_and(|&(g, _, inb)| !inb && g as u32 == (bw >> 32) as u32);
            if bound_ok {
                self.bound.entry(slot).or_default().push(i);
            } else if bw != 0 {
                b.store(0, Ordering::Release);
            }
            self.policies.push(p);
        }
        self.free_policies = (0..pcap)
            .rev()
            .filter(|i| self.policies.get(*i as usize).is_some_and(|p| p.is_none()))
            .collect();
        // Changes the previous writer added but never committed.
        self.policy_dirty = self.policies.iter().any(Option::is_some);
    }

    /// Moves retired slots whose grace period passed to the free list.
    /// Returns how many were reclaimed. Call it regularly (e.g. once per
    /// control-plane tick); `insert_sa` also calls it when no slot is free.
    pub fn reclaim(&mut self) -> usize {
        if self.retired.is_empty() {
            return 0;
        }
        let before = self.free.len();
        // One look at the readers for the whole list: each look checks that
        // the reader processes live (a /proc read each), and a table
        // attached at start retires every free slot at once.
        let horizon = self.m.grace_horizon();
        let free = &mut self.free;
        self.retired.retain(|&(slot, at)| {
            let passed = at <= horizon;
            if passed {
                free.push(slot);
            }
            !passed
        });
        self.free.len() - before
    }

    fn take_slot(&mut self) -> Result<u32, TableError> {
        if self.free.is_empty() {
            self.reclaim();
        }
        // Slots waiting only for readers to pass a quiescent point (they do
        // once per burst): wait a little rather than fail.
        let deadline = Instant::now() + GRACE_WAIT;
        while self.free.is_empty() && !self.retired.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
            self.reclaim();
        }
        self.free.pop().ok_or(TableError::Full("SA"))
    }

    /// Writes `cfg` into a free slot (hot state and counters reset first)
    /// without linking it anywhere.
    fn publish(&mut self, cfg: &SaConfig) -> Result<SaHandle, TableError> {
        cfg.validate().map_err(TableError::Invalid)?;
        let slot = self.take_slot()?;
        // No reader can reach the slot (grace period passed): reset in place.
        let hot = self.m.hot(slot);
        hot.seq.store(0, Ordering::Relaxed);
        hot.owner.store(NO_OWNER, Ordering::Relaxed);
        hot.replay.reset(cfg.replay_window);
        self.m.counters(slot).zero();
        let mut words = [0u64; COLD_WORDS];
        cfg.to_words(&mut words);
        // The seqlock write's Release publishes the resets above too.
        let generation = self.m.cold(slot).rec.write(&words);
        words.zeroize();
        Ok(SaHandle { slot, generation })
    }

    /// Installs an SA: writes its record into a free slot, then (inbound)
    /// links it into the SPI index. Returns its handle. Outbound SAs are
    /// reached through [`Writer::bind_policy`].
    pub fn insert_sa(&mut self, cfg: &SaConfig) -> Result<SaHandle, TableError> {
        if cfg.direction == Direction::Inbound && self.spi_slots.contains_key(&cfg.spi) {
            return Err(TableError::Invalid(format!(
                "inbound SPI {:08x} already installed",
                cfg.spi
            )));
        }
        let h = self.publish(cfg)?;
        if cfg.direction == Direction::Inbound {
            self.link_spi(cfg.spi, h.slot);
            self.spi_slots.insert(cfg.spi, h.slot);
        }
        Ok(h)
    }

    fn link_spi(&self, spi: u32, slot: u32) {
        let idx = self.m.spi_index();
        let mask = idx.len() - 1;
        let mut b = spi_hash(spi) & mask;
        // Never full: at most `sa_capacity` live entries in 2x buckets.
        for _ in 0..idx.len() {
            if let Some(e) = idx.get(b) {
                let v = e.load(Ordering::Relaxed);
                if v == 0 || v == TOMBSTONE {
                    e.store(spi_entry(spi, slot), Ordering::Release);
                    return;
                }
            }
            b = (b + 1) & mask;
        }
    }

    /// Rewrites the index entry of `spi` from `from` to `to` (or to a
    /// tombstone when `to` is `None`) with one atomic store.
    fn repoint_spi(&self, spi: u32, from: u32, to: Option<u32>) {
        let idx = self.m.spi_index();
        let mask = idx.len() - 1;
        let want = spi_entry(spi, from);
        let mut b = spi_hash(spi) & mask;
        for _ in 0..idx.len() {
            let Some(e) = idx.get(b) else { return };
            let v = e.load(Ordering::Relaxed);
            if v == 0 {
                return;
            }
            if v == want {
                e.store(
                    to.map_or(TOMBSTONE, |s| spi_entry(spi, s)),
                    Ordering::Release,
                );
                return;
            }
            b = (b + 1) & mask;
        }
    }

    /// Zeroizes the record (keys gone; new generation, so handles stop
    /// resolving), unlinks it, and retires the slot with a new epoch.
    fn retire(&mut self, h: SaHandle, cfg: &SaConfig, unlink: bool) {
        // Zero first: a writer dying after this leaves an index entry to a
        // dead record (repaired on restart), never a deleted SA that comes
        // back to life.
        self.m.cold(h.slot).rec.write(&[0; COLD_WORDS]);
        if cfg.direction == Direction::Inbound && unlink {
            self.repoint_spi(cfg.spi, h.slot, None);
            self.spi_slots.remove(&cfg.spi);
        }
        for p in self.bound.remove(&h.slot).unwrap_or_default() {
            self.m.binding(p).store(0, Ordering::Release);
        }
        let at = epoch::advance(&self.m.header().epoch);
        self.retired.push((h.slot, at));
    }

    /// Deletes an SA: zeroizes its keys, unlinks it (SPI index, policy
    /// bindings) and retires the slot until every reader has passed a
    /// quiescent point.
    pub fn delete_sa(&mut self, h: SaHandle) -> Result<(), TableError> {
        let cfg = self.sa_config(h).ok_or(TableError::NoSuchSa)?;
        self.retire(h, &cfg, true);
        Ok(())
    }

    /// Rekey: installs `new`, moves what pointed at `old` onto it, then
    /// deletes `old`. Outbound, every policy bound to `old` is rebound (one
    /// atomic word each, no recompile). Inbound with the same SPI, the index
    /// entry is re-pointed in one store; with a new SPI, both are found until
    /// `old` is deleted here. A reader finds the old SA or the new one,
    /// never a mix.
    pub fn replace_sa(&mut self, old: SaHandle, new: &SaConfig) -> Result<SaHandle, TableError> {
        let old_cfg = self.sa_config(old).ok_or(TableError::NoSuchSa)?;
        if old_cfg.direction != new.direction {
            return Err(TableError::Invalid(
                "a rekey keeps the SA's direction".into(),
            ));
        }
        let same_spi = new.direction == Direction::Inbound && new.spi == old_cfg.spi;
        if !same_spi && new.direction == Direction::Inbound && self.spi_slots.contains_key(&new.spi)
        {
            return Err(TableError::Invalid(format!(
                "inbound SPI {:08x} already installed",
                new.spi
            )));
        }
        let h = self.publish(new)?;
        if new.direction == Direction::Inbound {
            if same_spi {
                self.repoint_spi(new.spi, old.slot, Some(h.slot));
                self.spi_slots.insert(new.spi, h.slot);
            } else {
                self.link_spi(new.spi, h.slot);
                self.spi_slots.insert(new.spi, h.slot);
            }
        }
        let moved = self.bound.remove(&old.slot).unwrap_or_default();
        for p in &moved {
            self.m.binding(*p).store(binding_word(h), Ordering::Release);
        }
        if !moved.is_empty() {
            self.bound.insert(h.slot, moved);
        }
        self.retire(old, &old_cfg, !same_spi);
        Ok(h)
    }

    /// Adds a policy; it takes effect at the next [`Writer::commit`].
    pub fn add_policy(&mut self, p: Policy) -> Result<PolicyId, TableError> {
        if p.src.addr.is_ipv4() != p.dst.addr.is_ipv4() {
            return Err(TableError::Invalid(
                "policy prefixes of different families".into(),
            ));
        }
        if p.src_ports.0 > p.src_ports.1 || p.dst_ports.0 > p.dst_ports.1 {
            return Err(TableError::Invalid("empty port range".into()));
        }
        let id = self.free_policies.pop().ok_or(TableError::Full("policy"))?;
        let rec = self.m.policy_record(id);
        let words = p.to_words();
        // Word 4 carries the "live" mark: store it last, so a writer dying
        // half-way leaves no half policy behind.
        for (i, (slot, w)) in rec.iter().zip(words).enumerate() {
            if i != crate::config::POLICY_LIVE_WORD {
                slot.store(w, Ordering::Relaxed);
            }
        }
        if let (Some(slot), Some(w)) = (
            rec.get(crate::config::POLICY_LIVE_WORD),
            words.get(crate::config::POLICY_LIVE_WORD),
        ) {
            slot.store(*w, Ordering::Release);
        }
        self.m.binding(id).store(0, Ordering::Release);
        if let Some(e) = self.policies.get_mut(id as usize) {
            *e = Some(p);
        }
        self.policy_dirty = true;
        Ok(PolicyId(id))
    }

    fn unbind(&mut self, id: u32) {
        let b = self.m.binding(id);
        let slot = (b.load(Ordering::Relaxed) as u32).wrapping_sub(1);
        if let Some(list) = self.bound.get_mut(&slot) {
            list.retain(|p| *p != id);
            if list.is_empty() {
                self.bound.remove(&slot);
            }
        }
        b.store(0, Ordering::Release);
    }

    /// Removes a policy (effective at the next commit; until then lookups
    /// may still return it, as [`PolicyMatch::ProtectNoSa`](crate::PolicyMatch) if it
    /// protected).
    pub fn remove_policy(&mut self, id: PolicyId) -> Result<(), TableError> {
        let p = self
            .policies
            .get_mut(id.0 as usize)
            .ok_or(TableError::NoSuchPolicy)?;
        if p.take().is_none() {
            return Err(TableError::NoSuchPolicy);
        }
        let rec = self.m.policy_record(id.0);
        if let Some(w) = rec.get(crate::config::POLICY_LIVE_WORD) {
            w.store(0, Ordering::Release);
        }
        for w in rec {
            w.store(0, Ordering::Relaxed);
        }
        self.unbind(id.0);
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
        if let Some(h) = sa {
            let cfg = self.sa_config(h).ok_or(TableError::NoSuchSa)?;
            if cfg.direction != Direction::Outbound {
                return Err(TableError::Invalid(
                    "policies bind outbound SAs only".into(),
                ));
            }
        }
        self.unbind(id.0);
        if let Some(h) = sa {
            self.m
                .binding(id.0)
                .store(binding_word(h), Ordering::Release);
            self.bound.entry(h.slot).or_default().push(id.0);
        }
        Ok(())
    }

    /// Publishes the policy changes made since the last commit: compiles the
    /// index into the inactive half (once every reader left it: waits up to
    /// 500 ms, else [`TableError::Busy`]) and flips to it with one store.
    pub fn commit(&mut self) -> Result<(), TableError> {
        if !self.policy_dirty {
            return Ok(());
        }
        let list: Vec<(u32, Policy)> = self
            .policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (i as u32, p)))
            .collect();
        let words = policy::compile(&list, self.m.off.policy_capacity, self.m.off.index_words)
            .map_err(|e| TableError::Invalid(format!("policy index: {e}")))?;
        let h = self.m.header();
        // The inactive half was active before the last flip: readers that
        // loaded it then must all have passed a quiescent point since.
        let flip_epoch = h.policy_flip_epoch.load(Ordering::Relaxed);
        let deadline = Instant::now() + GRACE_WAIT;
        while !self.m.grace_passed(flip_epoch) {
            if Instant::now() > deadline {
                return Err(TableError::Busy);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
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

    /// A consistent copy of a live SA's configuration (keys included,
    /// zeroized on drop).
    pub fn sa_config(&self, h: SaHandle) -> Option<SaConfig> {
        crate::reader::read_config(&self.m, h)
    }

    /// Every live SA with its handle (the control plane reconciles with this
    /// after a restart).
    pub fn live_sas(&self) -> Vec<(SaHandle, SaConfig)> {
        let mut buf = [0u64; COLD_WORDS];
        let out = (0..self.m.sa_capacity())
            .filter_map(|slot| {
                let g = self.m.cold(slot).rec.read_into(&mut buf)?;
                let cfg = SaConfig::from_words(&buf)?;
                Some((
                    SaHandle {
                        slot,
                        generation: g,
                    },
                    cfg,
                ))
            })
            .collect();
        buf.zeroize();
        out
    }

    /// Live policies with their ids (committed or not).
    pub fn policies(&self) -> Vec<(PolicyId, Policy)> {
        self.policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (PolicyId(i as u32), p)))
            .collect()
    }

    /// The SA bound to a policy, if any.
    pub fn binding(&self, id: PolicyId) -> Option<SaHandle> {
        self.bound
            .iter()
            .find(|(_, ps)| ps.contains(&id.0))
            .and_then(|(slot, _)| {
                let g = self.m.cold(*slot).rec.generation();
                let h = SaHandle {
                    slot: *slot,
                    generation: g,
                };
                self.m.resolve(h).then_some(h)
            })
    }

    /// An SA's counters.
    pub fn sa_counters(&self, h: SaHandle) -> Option<CounterSnapshot> {
        self.m
            .resolve(h)
            .then(|| self.m.counters(h.slot).snapshot())
    }

    /// An SA's hot state (sequence number, owner, replay window), for
    /// lifetime checks and diagnostics.
    pub fn sa_hot(&self, h: SaHandle) -> Option<&SaHot> {
        self.m.resolve(h).then(|| self.m.hot(h.slot))
    }

    /// A worker's counters (`None` past [`MAX_WORKERS`]).
    pub fn worker_counters(&self, worker: usize) -> Option<WorkerSnapshot> {
        self.m.worker(worker).map(WorkerCounters::snapshot)
    }

    /// Slots waiting for readers before reuse.
    pub fn retired_slots(&self) -> usize {
        self.retired.len()
    }

    /// The table's capacities (the file's, on re-attach).
    pub fn capacity(&self) -> Capacity {
        Capacity {
            sas: self.m.sa_capacity(),
            policies: self.m.off.policy_capacity as u32,
        }
    }

    /// Inbound SPIs in use (to allocate a fresh one, RFC 7296 §3.3.1).
    pub fn spis(&self) -> HashSet<u32> {
        self.spi_slots.keys().copied().collect()
    }
}
