//! The data plane's side: lock-free readers.

use crate::config::{FlowKey, Policy, SaConfig, SaKeys};
use crate::counters::CounterSnapshot;
use crate::epoch;
use crate::error::TableError;
use crate::layout::*;
use crate::mapping::{my_pid, process_start_time, Mapping, PolicyId, PolicyMatch, SaHandle};
use std::fmt;
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zeroize::Zeroize;

/// Seqlock-validated copy of a live SA's configuration.
pub(crate) fn read_config(m: &Mapping, h: SaHandle) -> Option<SaConfig> {
    read_with(m, h, SaConfig::from_words)
}

/// Copies the cold record of `h` into a stack buffer under the seqlock,
/// decodes it and zeroizes the buffer. One attempt decides: the writer only
/// ever rewrites a record to delete it (or reuse the slot), so a changed or
/// odd generation means `h` is gone.
fn read_with<T>(
    m: &Mapping,
    h: SaHandle,
    f: impl FnOnce(&[u64; COLD_WORDS]) -> Option<T>,
) -> Option<T> {
    if h.slot >= m.sa_capacity() {
        return None;
    }
    let mut buf = [0u64; COLD_WORDS];
    let g = m.cold(h.slot).rec.read_into(&mut buf);
    let out = if g == Some(h.generation) {
        f(&buf)
    } else {
        None
    };
    buf.zeroize();
    out
}

/// A data-plane process's view of the table. Cheap to clone; share it
/// between the worker threads, each of which registers itself.
#[derive(Clone)]
pub struct Reader {
    m: Arc<Mapping>,
    start_time: u64,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.m.path)
            .finish()
    }
}

impl Reader {
    /// Attaches to an existing table, validating its header; a mismatched
    /// file is refused with the specific [`TableError`] (bad magic, ABI
    /// version, record size, section offset, truncated).
    pub fn attach(path: impl AsRef<Path>) -> Result<Reader, TableError> {
        let path = path.as_ref();
        // Read-write: readers write hot state, counters and their epoch.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| TableError::Io(path.to_path_buf(), e))?;
        Ok(Reader {
            m: Arc::new(Mapping::open(path, &file)?),
            start_time: process_start_time(my_pid()).unwrap_or(0),
        })
    }

    /// Registers the calling thread as a reader: takes a reader slot (a free
    /// one, or one of a dead process) and announces a first quiescent point.
    pub fn register_thread(&self) -> Result<ReaderThread, TableError> {
        let me = my_pid();
        for i in 0..MAX_READERS {
            let r = self.m.reader(i);
            let cur = r.pid.load(Ordering::Acquire);
            let free = cur == 0 || !crate::mapping::reader_alive(r);
            if free
                && r.pid
                    .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                r.start_time.store(self.start_time, Ordering::Release);
                // SAFETY: gettid has no preconditions and cannot fail.
                let tid = unsafe { libc::gettid() };
                r.thread_tag.store(tid as u64, Ordering::Relaxed);
                let mut t = ReaderThread {
                    m: self.m.clone(),
                    slot: i,
                };
                t.quiescent();
                return Ok(t);
            }
        }
        Err(TableError::NoReaderSlot)
    }

    /// A worker's counters (`None` past [`MAX_WORKERS`]); the worker adds
    /// to them once per burst.
    pub fn worker_counters(&self, worker: usize) -> Option<&WorkerCounters> {
        self.m.worker(worker)
    }
}

/// One registered reader thread (a data-plane worker).
///
/// Lookups return [`SaRef`]s that borrow the thread; [`ReaderThread::quiescent`]
/// and [`ReaderThread::offline`] take `&mut self`, so the compiler checks
/// that no reference into the table survives a quiescent point. What may be
/// kept across is an [`SaHandle`] (a key for the process-local key-schedule
/// cache), re-validated by the next lookup.
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
    pub fn lookup_inbound(&self, spi: u32, dst: IpAddr) -> Option<SaRef<'_>> {
        let handle = self.m.lookup_inbound(spi, dst)?;
        Some(SaRef { m: &self.m, handle })
    }

    /// Most specific policy for an inner flow (see the crate docs for the
    /// order), and its bound SA if it protects; `None` if no policy matches.
    pub fn lookup_outbound(&self, f: &FlowKey) -> Option<PolicyMatch> {
        self.m.lookup_outbound(f)
    }

    /// The SA of a handle (e.g. from [`PolicyMatch::Protect`]) if it is
    /// still current.
    pub fn sa(&self, handle: SaHandle) -> Option<SaRef<'_>> {
        self.m
            .resolve(handle)
            .then_some(SaRef { m: &self.m, handle })
    }

    /// A worker's counters (`None` past [`MAX_WORKERS`]).
    pub fn worker_counters(&self, worker: usize) -> Option<&WorkerCounters> {
        self.m.worker(worker)
    }

    /// Every live SA with its handle and counters: a consistent copy per SA
    /// (for status tools such as `sluiced show`; not a per-packet path).
    pub fn live_sas(&self) -> Vec<(SaHandle, SaConfig, CounterSnapshot)> {
        let mut buf = [0u64; COLD_WORDS];
        let out = (0..self.m.sa_capacity())
            .filter_map(|slot| {
                let generation = self.m.cold(slot).rec.read_into(&mut buf)?;
                let cfg = SaConfig::from_words(&buf)?;
                Some((
                    SaHandle { slot, generation },
                    cfg,
                    self.m.counters(slot).snapshot(),
                ))
            })
            .collect();
        buf.zeroize();
        out
    }

    /// The live policies and the outbound SA each is bound to, for
    /// `show`-style status. A snapshot of the records: a policy replaced
    /// while it is read may be missing or shown with its old binding; read
    /// again for a settled view.
    pub fn policies(&self) -> Vec<(PolicyId, Policy, Option<SaHandle>)> {
        let cap = u32::try_from(self.m.off.policy_capacity).unwrap_or(u32::MAX);
        (0..cap)
            .filter_map(|i| {
                let rec = self.m.policy_record(i);
                let w: [u64; POLICY_WORDS] =
                    std::array::from_fn(|k| rec.get(k).map_or(0, |x| x.load(Ordering::Acquire)));
                let p = Policy::from_words(&w)?;
                Some((PolicyId(i), p, self.m.bound_sa(i)))
            })
            .collect()
    }

    /// Announces a quiescent point: call once per burst or poll loop, holding
    /// nothing from the table. Also brings the thread back after
    /// [`ReaderThread::offline`].
    pub fn quiescent(&mut self) {
        epoch::quiescent(&self.m.header().epoch, &self.m.reader(self.slot).epoch);
    }

    /// Goes offline (idle): the writer does not wait for this thread until
    /// its next [`ReaderThread::quiescent`].
    pub fn offline(&mut self) {
        epoch::offline(&self.m.reader(self.slot).epoch);
    }
}

impl Drop for ReaderThread {
    fn drop(&mut self) {
        let r = self.m.reader(self.slot);
        epoch::offline(&r.epoch);
        r.pid.store(0, Ordering::Release);
    }
}

/// A live SA found by a lookup, valid until the thread's next quiescent
/// point. Its configuration is copied out under the seqlock; its hot state
/// and counters are shared atomics.
#[derive(Clone, Copy)]
pub struct SaRef<'t> {
    m: &'t Mapping,
    handle: SaHandle,
}

impl fmt::Debug for SaRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaRef")
            .field("handle", &self.handle)
            .finish()
    }
}

impl PartialEq for SaRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.handle == other.handle
    }
}

impl<'t> SaRef<'t> {
    /// (slot, generation): the key of the process-local key-schedule cache.
    pub fn handle(&self) -> SaHandle {
        self.handle
    }

    /// Whether the SA is still installed (not deleted or replaced since the
    /// lookup; a replaced SA stays usable until the next quiescent point).
    pub fn is_current(&self) -> bool {
        self.m.resolve(self.handle)
    }

    /// A consistent copy of the configuration and keys, `None` if the SA was
    /// deleted or replaced meanwhile. Keys are zeroized when it is dropped.
    pub fn config(&self) -> Option<SaConfig> {
        read_config(self.m, self.handle)
    }

    /// Only the keys and algorithm ids (for the key-schedule build), copied
    /// under the seqlock into a buffer zeroized on drop.
    pub fn keys(&self) -> Option<SaKeys> {
        read_with(self.m, self.handle, SaKeys::from_words)
    }

    /// Hot runtime: outbound sequence number, owner worker, replay window.
    pub fn hot(&self) -> &'t SaHot {
        self.m.hot(self.handle.slot)
    }

    /// The SA's counters.
    pub fn counters(&self) -> &'t SaCounters {
        self.m.counters(self.handle.slot)
    }
}
