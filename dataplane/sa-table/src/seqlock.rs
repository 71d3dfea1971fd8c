//! A record of `W` words published with a sequence lock (one writer).
//!
//! The generation `gen` is odd while the writer changes the words and even
//! when they are stable; each completed write adds 2. A reader copies the
//! words between two loads of `gen` and keeps the copy only if both loads
//! saw the same even value: it can never keep words from two different
//! writes (e.g. the key of one SA with the salt of another). The words are
//! atomics read and written `Relaxed`, so a racing read is well defined, and
//! the fences order them against `gen`.

use crate::sync::{fence, AtomicU64, Ordering};

/// A seqlock-protected record of `W` 64-bit words.
#[repr(C)]
pub struct SeqRecord<const W: usize> {
    gen: AtomicU64,
    words: [AtomicU64; W],
}

impl<const W: usize> SeqRecord<W> {
    /// An all-zero record (generation 0), for the loom model.
    #[cfg(loom)]
    pub fn new_for_model() -> Self {
        SeqRecord {
            gen: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// [`SeqRecord::write`] for the loom model.
    #[cfg(loom)]
    pub fn write_for_model(&self, words: &[u64; W]) -> u64 {
        self.write(words)
    }

    /// Current generation (even = stable).
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// Replaces the words; the caller is the only writer. Returns the new
    /// (even) generation.
    pub(crate) fn write(&self, words: &[u64; W]) -> u64 {
        let g = self.gen.load(Ordering::Relaxed);
        let odd = g | 1;
        self.gen.store(odd, Ordering::Relaxed);
        // The odd generation must be visible before any new word.
        fence(Ordering::Release);
        for (slot, w) in self.words.iter().zip(words) {
            slot.store(*w, Ordering::Relaxed);
        }
        let even = odd + 1;
        self.gen.store(even, Ordering::Release);
        even
    }

    /// A consistent copy of the words and their generation, or `None` if a
    /// write was in progress or completed meanwhile (the caller retries or
    /// treats the record as gone).
    pub fn read(&self) -> Option<(u64, [u64; W])> {
        let mut out = [0u64; W];
        let g = self.read_into(&mut out)?;
        Some((g, out))
    }

    /// Like [`SeqRecord::read`], into a buffer of the caller's (which can
    /// be zeroized afterwards when the words are secret). On `None` the
    /// buffer holds garbage.
    pub fn read_into(&self, out: &mut [u64; W]) -> Option<u64> {
        let g1 = self.gen.load(Ordering::Acquire);
        if g1 & 1 == 1 {
            return None;
        }
        for (o, w) in out.iter_mut().zip(&self.words) {
            *o = w.load(Ordering::Relaxed);
        }
        // The word loads must complete before the second generation load.
        fence(Ordering::Acquire);
        let g2 = self.gen.load(Ordering::Relaxed);
        (g1 == g2).then_some(g1)
    }

    /// One word, validated against generation `gen` (for per-packet reads of
    /// a single field without copying the record).
    pub fn word_at(&self, gen: u64, i: usize) -> Option<u64> {
        let v = self.words.get(i)?.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.gen.load(Ordering::Relaxed) == gen).then_some(v)
    }
}
