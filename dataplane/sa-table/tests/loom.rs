//! Loom model of the publication protocol: a record published with the
//! seqlock, linked through an index word, unlinked, retired with an epoch and
//! reused only after the reader's quiescent point.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p sluice-sa-table --release --test loom`
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use sluice_sa_table::epoch;
use sluice_sa_table::SeqRecord;

/// Words of SA `id`: key and salt halves derived from the same id.
fn words(id: u64) -> [u64; 2] {
    [id * 1000 + 1, id * 1000 + 2]
}

struct Shared {
    rec: SeqRecord<2>,
    index: AtomicU64, // 0 = empty, else id
    global: AtomicU64,
    reader: AtomicU64,
}

#[test]
fn reader_never_sees_a_torn_or_reused_record() {
    loom::model(|| {
        let s = Arc::new(Shared {
            rec: SeqRecord::new_for_model(),
            index: AtomicU64::new(0),
            global: AtomicU64::new(1),
            reader: AtomicU64::new(1),
        });
        // SA 1 is published before the reader starts.
        s.rec.write_for_model(&words(1));
        s.index.store(1, Ordering::Release);

        let r = s.clone();
        let reader = thread::spawn(move || {
            // One lookup between two quiescent points.
            let id = r.index.load(Ordering::Acquire);
            if id != 0 {
                if let Some((_, w)) = r.rec.read() {
                    // Never a mix of two SAs, never the zeroized record
                    // paired with a live index entry's id.
                    assert_eq!(w[0] / 1000, w[1] / 1000, "torn read: {w:?}");
                    assert!(w[0] % 1000 == 1 && w[1] % 1000 == 2 || w == [0, 0]);
                    // Found through SA 1's index entry: never SA 2's record
                    // (the slot must not be reused under this reader).
                    assert!(
                        w == [0, 0] || w[0] / 1000 == id,
                        "use after reuse: {id} -> {w:?}"
                    );
                }
            }
            epoch::quiescent(&r.global, &r.reader);
        });

        // Writer: delete SA 1 (unlink, zeroize), retire, wait for grace,
        // reuse the slot for SA 2 and publish it.
        s.index.store(0, Ordering::Release);
        s.rec.write_for_model(&[0, 0]);
        let retired_at = epoch::advance(&s.global);
        // The writer reuses the slot only if the protocol says it is safe
        // (otherwise it would retry later: that branch needs no model).
        if epoch::safe([&s.reader], retired_at) {
            s.rec.write_for_model(&words(2));
            s.index.store(2, Ordering::Release);
        }
        reader.join().unwrap();
    });
}

/// Rekey: the index entry moves from slot A (SA 1) to slot B (SA 2), slot A
/// is zeroized, retired and reused for SA 3. The reader starts offline and
/// comes online (quiescent) right before its lookup, the case that needs the
/// fences in `epoch`. Whatever it finds through the index must be SA 1 or
/// SA 2 (or a dead record): never SA 3, never a mix.
#[test]
fn rekey_retire_reuse_against_a_reader_coming_online() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let slots = Arc::new([
            SeqRecord::<2>::new_for_model(),
            SeqRecord::<2>::new_for_model(),
        ]);
        let index = Arc::new(AtomicU64::new(0)); // slot + 1
        let global = Arc::new(AtomicU64::new(1));
        let reader = Arc::new(AtomicU64::new(epoch::OFFLINE));
        slots[0].write_for_model(&words(1));
        index.store(1, Ordering::Release);

        let (s2, i2, g2, r2) = (slots.clone(), index.clone(), global.clone(), reader.clone());
        let t = thread::spawn(move || {
            epoch::quiescent(&g2, &r2);
            let e = i2.load(Ordering::Acquire);
            if e != 0 {
                let slot = (e - 1) as usize;
                if let Some((_, w)) = s2[slot].read() {
                    assert_eq!(w[0] / 1000, w[1] / 1000, "torn read: {w:?}");
                    assert!(w[0] / 1000 != 3, "use after reuse: {w:?}");
                }
            }
            epoch::offline(&r2);
        });

        slots[1].write_for_model(&words(2));
        index.store(2, Ordering::Release);
        slots[0].write_for_model(&[0, 0]);
        let retired_at = epoch::advance(&global);
        if epoch::safe([&*reader], retired_at) {
            slots[0].write_for_model(&words(3));
        }
        t.join().unwrap();
    });
}

#[test]
fn seqlock_read_is_all_or_nothing() {
    loom::model(|| {
        let s = Arc::new(SeqRecord::<2>::new_for_model());
        s.write_for_model(&words(1));
        let r = s.clone();
        let t = thread::spawn(move || {
            if let Some((g, w)) = r.read() {
                assert_eq!(g % 2, 0);
                assert_eq!(w[0] / 1000, w[1] / 1000, "torn: {w:?}");
            }
        });
        s.write_for_model(&words(2));
        t.join().unwrap();
    });
}
