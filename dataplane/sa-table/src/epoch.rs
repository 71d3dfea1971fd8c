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
//! `offline` uses a Release store; `horizon` (and `safe` through it) reads
//! reader epochs after a SeqCst fence, and `quiescent` fences after its
//! store: with the two fences, a reader coming back online either is seen by
//! the writer (which then waits for it) or sees the unlink in all its later
//! loads.

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
    // Pairs with the fence in `horizon`: either the writer sees this epoch, or
    // every later load of this reader sees what the writer unlinked before
    // its fence (coming back online from OFFLINE needs this).
    fence(Ordering::SeqCst);
}

/// Marks the reader idle: it holds nothing until its next [`quiescent`].
pub fn offline(mine: &AtomicU64) {
    // Release: every read of the table by this thread happens before.
    mine.store(OFFLINE, Ordering::Release);
}

/// Whether nothing retired at `retired_at` can still be in use by the readers
/// whose epochs are given (readers of dead processes must be left out by the
/// caller).
pub fn safe<'a>(readers: impl IntoIterator<Item = &'a AtomicU64>, retired_at: u64) -> bool {
    horizon(readers) >= retired_at
}

/// The epoch up to which everything retired is safe to reuse for the
/// readers whose epochs are given: the oldest epoch an online reader
/// announced (`u64::MAX` with none online). One pass over the readers
/// answers for any number of retired objects: an object retired at `e` is
/// safe iff `e <= horizon`.
pub fn horizon<'a>(readers: impl IntoIterator<Item = &'a AtomicU64>) -> u64 {
    // Pairs with the fence in `quiescent` (see there).
    fence(Ordering::SeqCst);
    readers
        .into_iter()
        .map(|r| r.load(Ordering::SeqCst))
        .filter(|&r| r != OFFLINE)
        .min()
        .unwrap_or(u64::MAX)
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_horizon_is_the_oldest_online_reader() {
        let global = AtomicU64::new(1);
        let (a, b, idle) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        quiescent(&global, &a); // a at 1
        let retired_at_2 = advance(&global);
        quiescent(&global, &b); // b at 2
        offline(&idle);
        let readers = [&a, &b, &idle];
        assert_eq!(horizon(readers), 1, "a has not moved on since epoch 1");
        assert!(safe(readers, 1));
        assert!(!safe(readers, retired_at_2));
        quiescent(&global, &a);
        assert_eq!(horizon(readers), 2);
        assert!(safe(readers, retired_at_2));
        let retired_at_3 = advance(&global);
        assert!(
            !safe(readers, retired_at_3),
            "neither passed a quiescent point since"
        );
        offline(&a);
        offline(&b);
        assert_eq!(
            horizon(readers),
            u64::MAX,
            "no reader online holds anything"
        );
        assert!(safe(readers, retired_at_3));
        assert_eq!(horizon([]), u64::MAX);
    }
}
