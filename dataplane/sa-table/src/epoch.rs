//! Quiescent-state-based reclamation across processes.
//!
//! Every reader thread owns a slot with the last global epoch it observed at
//! a quiescent point (between bursts, holding no reference into the table),
//! or [`OFFLINE`] while idle. To reuse a record the writer first unlinks it,
//! then advances the global epoch to `E` and waits until every online reader
//! has announced an epoch `>= E`: such a reader has passed a quiescent point
//! after the unlink and can no longer hold the old record.
//!
//! ```text
//!  writer:  unlink X ; E = ++global ; fence ; wait until all readers >= E or offline ; reuse X
//!  reader:  ...lookup (may find X)... ; quiescent(): mine = global ; fence ; lookup (cannot find X)
//! ```
//!
//! `offline` uses a Release store; `safe` reads reader epochs after a SeqCst
//! fence, and `quiescent` fences after its store: with the two fences, a
//! reader coming back online either is seen by the writer (which then waits
//! for it) or sees the unlink in all its later loads.

use crate::sync::{fence, AtomicU64, Ordering};

/// Epoch value of a reader that holds nothing (idle or between runs).
pub const OFFLINE: u64 = 0;

/// Advances the global epoch; returns the new epoch a retired object waits
/// for.
pub fn advance(global: &AtomicU64) -> u64 {
    global.fetch_add(1, Ordering::SeqCst) + 1
}

/// Announces a quiescent point: the reader holds no references from before.
/// Also the way back online after [`offline`].
pub fn quiescent(global: &AtomicU64, mine: &AtomicU64) {
    let e = global.load(Ordering::SeqCst);
    mine.store(e, Ordering::SeqCst);
    // Pairs with the fence in `safe`: either the writer sees this epoch, or
    // every later load of this reader sees what the writer unlinked before
    // its fence (coming back online from OFFLINE needs this).
    fence(Ordering::SeqCst);
}

/// Marks the reader idle: it holds nothing until its next [`quiescent`].
pub fn offline(mine: &AtomicU64) {
    // Release: every read of the table by this thread happens before.
    mine.store(OFFLINE, Ordering::Release);
}

/// Whether the reader with announced epoch `r` may still hold objects
/// retired at `retired_at`.
pub fn holds(r: u64, retired_at: u64) -> bool {
    r != OFFLINE && r < retired_at
}

/// Whether nothing retired at `retired_at` can still be in use by the readers
/// whose epochs are given (readers of dead processes must be left out by the
/// caller).
pub fn safe<'a>(readers: impl IntoIterator<Item = &'a AtomicU64>, retired_at: u64) -> bool {
    // Pairs with the fence in `quiescent` (see there).
    fence(Ordering::SeqCst);
    readers
        .into_iter()
        .all(|r| !holds(r.load(Ordering::SeqCst), retired_at))
}
