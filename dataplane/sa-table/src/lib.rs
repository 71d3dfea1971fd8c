//! Sluice's SA and policy tables in shared memory.
//!
//! The control plane (`sluiced`, one [`Writer`]) installs SAs and policies;
//! the data plane (`sluice-dp`, a [`Reader`] per process and a
//! [`ReaderThread`] per worker) looks them up on every packet without locks
//! or system calls. The table is a file-backed shared mapping (e.g. under
//! `/dev/shm`, mode 0600: it holds keys), so either process can restart
//! without the other losing state.
//!
//! # Layout
//! A versioned `#[repr(C)]` header (magic `SLUICESA`, ABI version, every
//! record size, capacities, section offsets) is checked on attach; a
//! mismatched build is refused with a [`TableError`] that says what differs.
//! Per SA slot there is a **cold** record (configuration and keys, 320 B), a
//! **hot** record (outbound sequence number, owner worker, inbound
//! anti-replay window; 1152 B) and a **counter** block (192 B), all 64-byte
//! aligned and in separate arrays so workers touch only hot lines. See
//! [`layout`] for the map.
//!
//! # Publication: never torn, never freed under a reader
//! ```text
//!  writer                                   reader (per packet)
//!  insert: reset hot + counters             e = spi_index[h(spi)]   (Acquire)
//!          cold.gen = odd; words; gen = even g = cold.gen           (even, else skip)
//!          spi_index[b] = spi|slot (Release) words needed, fence, cold.gen == g ?
//!  delete: spi_index[b] = TOMBSTONE         -> handle (slot, g); key schedule
//!          cold words = 0 (keys zeroized),     cached per (slot, g)
//!            new generation                 ...
//!          E = ++epoch; retire (slot, E)    quiescent(): my_epoch = epoch
//!  reuse:  only once every live reader's
//!          epoch >= E (or offline / dead)
//! ```
//! - **Seqlock per record** ([`seqlock`]): a reader copies words between two
//!   loads of the generation and keeps them only if both are the same even
//!   value, so it can never combine the key of one SA with the salt of
//!   another, or see a half-written SA. Words are atomics: racing reads are
//!   defined behaviour.
//! - **Quiescent-state reclamation** ([`epoch`]): workers announce the global
//!   epoch once per burst (and go offline when idle). A deleted slot is
//!   unlinked, zeroized and only reused after every live reader announced an
//!   epoch past its retirement, so the hot state a worker is still using (a
//!   replay window, a sequence counter) cannot be reset under it. Readers of
//!   dead processes (checked with `kill(pid, 0)`) are ignored.
//! - **Rekey** ([`Writer::replace_sa`]) installs the new SA, re-points the
//!   policies bound to the old one (one atomic word each) and deletes the
//!   old one: a reader finds either, never a mix; inbound, old and new SPIs
//!   are both in the index until the old one is deleted.
//!
//! # Inbound lookup
//! An open-addressing hash over SPI (linear probing, 2x capacity, tombstones
//! reused by inserts and never reset to empty while the table lives), the
//! record checked for the destination address: O(1).
//!
//! # Outbound lookup: most specific policy
//! Specificity, from most to least significant: longer destination prefix,
//! longer source prefix, a specific protocol over any, a narrower destination
//! port range, a narrower source port range, higher priority. Policies are
//! compiled ([`Writer::commit`]) into a tuple-space index (see [`policy`]) in
//! the inactive of two halves, which is flipped in with one atomic store
//! once readers have left it; the lookup costs one hash probe per distinct
//! prefix-length pair, whatever the number of policies (100,000 and more).
//! The policy -> SA binding is a separate atomic word per policy, so a CHILD
//! SA rekey rebinds without recompiling.
//!
//! # Restarts
//! The writer holds an `flock` on the file; a second writer is refused. A
//! restarted writer re-attaches, validates the header and rebuilds its free,
//! retired and policy lists from the mapping; readers keep working meanwhile
//! because nothing they use moves. A restarted data plane re-attaches and
//! re-registers its threads; slots of its dead predecessor are reclaimed.
//!
//! # Counters
//! Per-SA ([`SaCounters`]) and per-worker ([`WorkerCounters`]) counters are
//! relaxed atomics added once per burst; the control plane snapshots them.
//!
//! # Tests
//! `cargo test -p sluice-sa-table` (ABI refusal, policy matching against a
//! brute-force reference at 100,000 policies, counters, and a two-process
//! stress test with a writer killed and restarted mid-run) and the loom model
//! of the seqlock and epoch protocol:
//! `RUSTFLAGS="--cfg loom" cargo test -p sluice-sa-table --release --test loom`.

#[cfg(not(loom))]
mod config;
pub mod epoch;
#[cfg(not(loom))]
pub mod layout;
#[cfg(not(loom))]
pub mod policy;
pub mod seqlock;
mod sync;
#[cfg(not(loom))]
mod table;

#[cfg(not(loom))]
pub use config::{Action, Direction, FlowKey, Lifetimes, Policy, Prefix, SaConfig};
#[cfg(not(loom))]
pub use layout::{SaCounters, SaHot, WorkerCounters};
#[cfg(not(loom))]
pub use table::{
    Capacity, CounterSnapshot, PolicyId, PolicyMatch, Reader, ReaderThread, SaHandle, TableError,
    Writer,
};

#[cfg(loom)]
pub use seqlock::SeqRecord;
