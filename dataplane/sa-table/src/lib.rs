//! Sluice's SA and policy tables in shared memory.
//!
//! The control plane (`sluiced`, one [`Writer`]) installs SAs and policies;
//! the data plane (`sluice-dp`, a [`Reader`] per process and a
//! [`ReaderThread`] per worker) looks them up on every packet without locks
//! or system calls. The table is a file-backed shared mapping (e.g.
//! `/dev/shm/sluice/sa-table`, mode 0600: it holds keys), so either process
//! can restart without the other losing state.
//!
//! ```text
//!  // control plane                         // each data-plane worker
//!  let mut w = Writer::create_or_attach(p, cap)?;   let mut t = Reader::attach(p)?.register_thread()?;
//!  let h_in  = w.insert_sa(&inbound)?;              loop {
//!  let h_out = w.insert_sa(&outbound)?;                 for pkt in burst {
//!  let pol = w.add_policy(policy)?;                         let sa = t.lookup_inbound(spi, dst)?;   // SaRef
//!  w.bind_policy(pol, Some(h_out))?;                        // key schedule cached per sa.handle()
//!  w.commit()?;               // policies                   // sa.hot().replay, sa.counters()
//!  let h2 = w.replace_sa(h_out, &rekeyed)?;             }
//!  w.delete_sa(h_in)?; w.reclaim();                     t.quiescent();   // once per burst
//!                                                   }
//! ```
//!
//! # Memory layout
//! A versioned `#[repr(C)]` [`layout::Header`] (magic `SLUICESA`, ABI
//! version, the size of every record type, capacities, every section's
//! offset, total size) is checked on attach; a mismatched build or file is
//! refused with a [`TableError`] saying what was expected and what was found
//! (`BadMagic`, `AbiVersion`, `RecordSize`, `SectionOffset`, `Truncated`).
//! Per SA slot there is a **cold** record (configuration, keys with their
//! salt, 120 reserved bytes; 384 B, seqlock-published), a **hot** record
//! (outbound sequence number "last used", owner worker, inbound
//! [`sluice_esp::replay::ReplayWindow`]; 1152 B) and a **counter** block
//! (192 B). Each kind is an array of its own, 64-byte aligned, so workers
//! touch only hot lines. Sizes are const-asserted; see [`layout`] for the map.
//! Everything a second process touches is an atomic: racing accesses are
//! defined behaviour, and `unsafe` is confined to mapping the file and
//! casting offsets to these types.
//!
//! # Publication: never torn, never freed under a reader
//! ```text
//!  time  writer (one process)                    reader thread (another process)
//!   |    insert: reset hot + counters of a free
//!   |      slot; cold.gen = odd; words; gen = even
//!   |      (Release); SPI index[b] = spi|slot+1   e = index[h(spi)]          (Acquire)
//!   |      (Release) / policy binding = gen|slot  g1 = cold.gen (even?) ; copy words ;
//!   |                                             fence ; g2 = cold.gen ; g1 == g2 ?
//!   |    delete: cold <- zeros (keys zeroized,      -> SaRef (slot, g1): keys copied into
//!   |      new gen: old handles stop resolving);       a zeroizing buffer, key schedule
//!   |      index[b] = TOMBSTONE; unbind policies;      cached per (slot, generation)
//!   |      E = ++epoch; retired.push(slot, E)       ... uses hot state, counters ...
//!   |    reclaim: slot free once every live         quiescent(): mine = epoch ; fence
//!   |      reader's epoch >= E or OFFLINE           (once per burst; offline() when idle)
//!   v    reuse: hot/counters reset, new record
//! ```
//! - **Seqlock per record** ([`seqlock`]): a reader keeps a copy only if the
//!   generation was the same even value before and after, so it never sees a
//!   half-written SA and never pairs the key of one SA with the salt of
//!   another (salt and key are one field). A handle is `(slot, generation)`:
//!   once a record is rewritten, old handles stop resolving.
//! - **Quiescent-state-based reclamation** ([`epoch`]): each reader thread
//!   owns a slot in the mapping (pid, process start time, thread tag,
//!   epoch). A deleted slot is unlinked and zeroized at once, but its hot
//!   state and counters are reset and the slot reused only after every live
//!   reader announced an epoch past its retirement; readers of dead processes
//!   (`kill(pid, 0)` plus the start time in `/proc/PID/stat` against PID
//!   reuse) are ignored. [`ReaderThread::quiescent`] takes `&mut self`, so the
//!   borrow checker ensures no [`SaRef`] survives a quiescent point.
//! - **Rekey** ([`Writer::replace_sa`]) publishes the new SA, re-points what
//!   pointed at the old one (policy bindings; the inbound index entry if the
//!   SPI is kept) with single atomic stores, then deletes the old one: a
//!   reader finds either, never a mix.
//!
//! The protocol is model-checked with loom (seqlock; publish, rekey, retire
//! and reuse against a reader, including one coming back online):
//! `RUSTFLAGS="--cfg loom" cargo test -p sluice-sa-table --release --test loom`
//! (a few seconds after the build).
//!
//! # Inbound lookup
//! An open-addressing hash over the SPI in shared memory (atomic u64 entries
//! `spi << 32 | slot + 1`, linear probing, at least 2x the SA capacity,
//! tombstones reused by inserts and never reset to empty while the table
//! lives); the record is then checked for SPI, direction, state and outer
//! destination under one generation. O(1). SPIs are unique per table (the
//! control plane allocates inbound SPIs).
//!
//! # Outbound lookup: the most specific policy
//! Specificity, from most to least significant: longer destination prefix,
//! longer source prefix, a specific protocol over any, a narrower
//! destination port range, a narrower source port range, higher explicit
//! priority ([`Policy::specificity`]). [`Writer::commit`] compiles the
//! policies into a tuple-space index ([`policy`]): classes by (family,
//! source length, destination length) from most to least specific, each a
//! hash of the masked (source, destination) pair to a short list sorted by
//! protocol/port specificity. The index lives in one of two halves of the
//! mapping; the writer builds the inactive half (once every reader left it)
//! and flips an atomic generation word. A lookup costs one hash probe per
//! class, independent of the number of policies (tested at 100,000 against a
//! brute-force reference). The policy -> SA binding is an atomic word per
//! policy (slot and generation), so a CHILD SA rekey rebinds without
//! recompiling.
//!
//! # Restarts
//! The writer holds an `flock` on the file; a second writer is refused with
//! [`TableError::WriterLocked`]. A restarted writer re-attaches (validating
//! the header) and rebuilds its private bookkeeping by scanning the mapping:
//! live SAs, free slots (retired again until readers pass a quiescent point,
//! in case the dead writer had just unlinked them), policies and bindings; it
//! zeroizes half-written records, drops index entries and bindings that name
//! no live SA and links live inbound SAs missing from the index.
//! [`Writer::live_sas`] lets the control plane reconcile. Readers keep
//! working throughout, since nothing they use moves. A restarted data plane
//! re-attaches and takes over its dead predecessor's reader slots.
//!
//! # Counters
//! Per-SA ([`SaCounters`]) and per-worker ([`WorkerCounters`]) counters are
//! relaxed atomics, added once per burst, each block on its own cache lines;
//! drops are counted by [`DropReason`] (the ESP engine's `#[repr(u8)]` enum,
//! [`DROP_REASONS`] of them). The control plane reads snapshots
//! ([`Writer::sa_counters`], [`Writer::worker_counters`]); an SA's counters are
//! zeroed when its slot is reused.
//!
//! # Tests
//! `cargo test -p sluice-sa-table --release` (ABI refusal, restart repair,
//! policy matching against a brute-force reference at 100,000 policies,
//! counters, and a two-process stress test in which the writer is killed and
//! restarted mid-run while a reader process's threads check every SA they
//! see) and the loom model above.

#[cfg(not(loom))]
mod config;
#[cfg(not(loom))]
mod counters;
pub mod epoch;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
pub mod layout;
#[cfg(not(loom))]
mod mapping;
#[cfg(not(loom))]
pub mod policy;
#[cfg(not(loom))]
mod reader;
pub mod seqlock;
mod sync;
#[cfg(not(loom))]
mod writer;

#[cfg(not(loom))]
pub use config::{
    Action, Direction, FlowKey, Lifetimes, Policy, Prefix, SaConfig, SaKeys, MAX_KEY_BYTES,
};
#[cfg(not(loom))]
pub use counters::{CounterSnapshot, DropCounts, WorkerSnapshot, DROP_REASONS};
#[cfg(not(loom))]
pub use error::TableError;
#[cfg(not(loom))]
pub use layout::{DpEvent, SaCounters, SaHot, WorkerCounters, ABI_VERSION, MAX_WORKERS, NO_OWNER};
#[cfg(not(loom))]
pub use mapping::{PolicyId, PolicyMatch, SaHandle};
#[cfg(not(loom))]
pub use reader::{Reader, ReaderThread, SaRef};
#[cfg(not(loom))]
pub use sluice_esp::DropReason;
#[cfg(not(loom))]
pub use writer::{Capacity, Writer};

#[cfg(loom)]
pub use seqlock::SeqRecord;
