//! Anti-replay window (RFC 4303 §3.4.3, bitmap layout after RFC 6479).
//!
//! The window remembers which of the last `window` sequence numbers below the
//! highest one seen (`top`) have been accepted. It is a ring of
//! [`REPLAY_WORDS`] 64-bit words indexed by `seq / 64`, so advancing `top` only
//! clears the words it passes over: no shifting, O(1) per packet except for a
//! jump far ahead, which clears at most the whole ring once.
//!
//! ```text
//!            words (ring, REPLAY_WORDS x 64 bits)
//!   +--------+--------+--------+-- ... --+--------+
//!   | w[k-1] |  w[k]  | w[k+1] |         | w[k-2] |
//!   +--------+--------+--------+-- ... --+--------+
//!                 ^ top / 64 (mod REPLAY_WORDS)
//!   accepted range: top - window + 1 ..= top, plus anything above top
//! ```
//!
//! One spare word beyond the configured window is kept so that the word
//! holding `top - window + 1` is never the one being cleared for `top`:
//! the largest window is therefore `(REPLAY_WORDS - 1) * 64` = [`MAX_WINDOW`].
//!
//! # Check before decrypt, update after the ICV
//! [`ReplayWindow::check`] is cheap and read-only: the receiver calls it before
//! spending cycles on decryption. [`ReplayWindow::update`] is called only once
//! the ICV verified, and checks again, because two copies of the same packet
//! may both pass `check` inside one burst.
//!
//! # Shared memory
//! The type is `#[repr(C)]` and made only of atomics, so it can live in the
//! shared-memory SA table and be used through `&ReplayWindow` by the worker
//! that owns the SA. [`ReplayWindow::update`] must have one caller at a time
//! (the owner worker; the data plane hands an SA's inbound packets to it):
//! it uses plain loads and stores, not locked read-modify-writes, to stay
//! cheap per packet. Other cores may call `check` concurrently; they see
//! either the old or the new state of each word, never a torn one.
//!
//! # Extended sequence numbers
//! With ESN (RFC 4303 §2.2.1) only the low 32 bits travel in the packet;
//! [`ReplayWindow::infer_seq`] reconstructs the high half as in RFC 4303
//! Appendix A, and the ICV (which covers the high half) decides whether the
//! guess was right.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Number of 64-bit words in the bitmap ring (a power of two).
pub const REPLAY_WORDS: usize = 128;

/// Largest configurable window, in packets: `(REPLAY_WORDS - 1) * 64`.
pub const MAX_WINDOW: u32 = (REPLAY_WORDS as u32 - 1) * 64;

/// Default window, in packets (strongSwan and VPP default to much less; a
/// multi-queue 100 Gb/s receiver reorders thousands of packets).
pub const DEFAULT_WINDOW: u32 = 4096;

const WORD_MASK: u64 = REPLAY_WORDS as u64 - 1;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// The sequence number was already accepted (RFC 4303 §3.4.3: duplicate).
    Duplicate,
    /// The sequence number is left of the window (or is 0, which no sender uses).
    Stale,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Duplicate => f.write_str("sequence number already received"),
            ReplayError::Stale => f.write_str("sequence number left of the replay window"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Anti-replay state of one inbound SA (RFC 4303 §3.4.3).
///
/// `window == 0` disables the check (RFC 4303 §3.4.3 lets a receiver do so,
/// e.g. for manually keyed SAs); sequence numbers are then still tracked in
/// `top` for ESN inference.
#[repr(C, align(64))]
pub struct ReplayWindow {
    /// Highest sequence number accepted so far (full 64 bits); 0 = none yet.
    top: AtomicU64,
    /// Window size in packets, `0..=MAX_WINDOW`.
    window: AtomicU32,
    _reserved: [u32; 13],
    /// Bit `seq % 64` of word `(seq / 64) % REPLAY_WORDS` is set when `seq`
    /// was accepted.
    bits: [AtomicU64; REPLAY_WORDS],
}

const _: () = assert!(REPLAY_WORDS.is_power_of_two());
const _: () = assert!(core::mem::size_of::<ReplayWindow>() == 64 + REPLAY_WORDS * 8);
const _: () = assert!(core::mem::align_of::<ReplayWindow>() == 64);

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top())
            .field("window", &self.window())
            .finish_non_exhaustive()
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl ReplayWindow {
    /// A fresh window of `window` packets (clamped to [`MAX_WINDOW`]).
    pub const fn new(window: u32) -> Self {
        let window = if window > MAX_WINDOW {
            MAX_WINDOW
        } else {
            window
        };
        ReplayWindow {
            top: AtomicU64::new(0),
            window: AtomicU32::new(window),
            _reserved: [0; 13],
            bits: [const { AtomicU64::new(0) }; REPLAY_WORDS],
        }
    }

    /// Resets the window in place (e.g. when a shared-memory slot is reused
    /// for a new SA). Only the writer that owns the slot may call this while no
    /// worker uses it.
    pub fn reset(&self, window: u32) {
        for w in &self.bits {
            w.store(0, Ordering::Relaxed);
        }
        self.window.store(window.min(MAX_WINDOW), Ordering::Relaxed);
        self.top.store(0, Ordering::Release);
    }

    /// Highest sequence number accepted so far (0 if none).
    pub fn top(&self) -> u64 {
        self.top.load(Ordering::Acquire)
    }

    /// Configured window size in packets (0 = anti-replay disabled).
    pub fn window(&self) -> u32 {
        self.window.load(Ordering::Relaxed)
    }

    /// Full 64-bit sequence number for the low half `seq_lo` of an ESN SA,
    /// as in RFC 4303 Appendix A.2.2: the candidate closest to the window.
    /// Returns 0 (always refused) when the only candidate would lie below 1.
    pub fn infer_seq(&self, seq_lo: u32) -> u64 {
        let top = self.top();
        // Appendix A works with the window's bottom edge; with the check off,
        // a window of one keeps the inference meaningful.
        let w = u64::from(self.window().max(1));
        let tl = top as u32;
        let th = top >> 32;
        let bottom = tl.wrapping_sub((w - 1) as u32);
        let seq_hi = if u64::from(tl) >= w - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_lo >= bottom {
                th
            } else {
                th + 1
            }
        } else {
            // Case B: the window spans two subspaces.
            if seq_lo >= bottom {
                match th.checked_sub(1) {
                    Some(h) => h,
                    None => return 0,
                }
            } else {
                th
            }
        };
        (seq_hi << 32) | u64::from(seq_lo)
    }

    /// Read-only check of `seq` (RFC 4303 §3.4.3), done before decryption.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::Stale);
        }
        let window = u64::from(self.window());
        if window == 0 {
            return Ok(());
        }
        let top = self.top();
        if seq > top {
            return Ok(());
        }
        if top - seq >= window {
            return Err(ReplayError::Stale);
        }
        let (word, bit) = Self::position(seq);
        if self.bits[word].load(Ordering::Acquire) & bit != 0 {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }

    /// Marks `seq` as received, after its ICV verified. Checks again, so the
    /// second of two identical packets in one burst is refused here.
    pub fn update(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::Stale);
        }
        let window = u64::from(self.window());
        let top = self.top();
        if seq > top {
            // Slide: clear the words passed over (at most the whole ring).
            let old_word = top / 64;
            let new_word = seq / 64;
            let advance = (new_word - old_word).min(REPLAY_WORDS as u64);
            for i in 1..=advance {
                let idx = ((old_word + i) & WORD_MASK) as usize;
                self.bits[idx].store(0, Ordering::Relaxed);
            }
            let (word, bit) = Self::position(seq);
            // The word of `seq` was just cleared (or is top's own word). One
            // updater at a time (the owner worker): load and store suffice,
            // no locked read-modify-write on the per-packet path.
            let w = self.bits[word].load(Ordering::Relaxed);
            self.bits[word].store(w | bit, Ordering::Release);
            self.top.store(seq, Ordering::Release);
            return Ok(());
        }
        if window != 0 && top - seq >= window {
            return Err(ReplayError::Stale);
        }
        let (word, bit) = Self::position(seq);
        let prev = self.bits[word].load(Ordering::Relaxed);
        if window != 0 && prev & bit != 0 {
            return Err(ReplayError::Duplicate);
        }
        self.bits[word].store(prev | bit, Ordering::Release);
        Ok(())
    }

    fn position(seq: u64) -> (usize, u64) {
        (((seq / 64) & WORD_MASK) as usize, 1u64 << (seq % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &ReplayWindow, seq: u64) -> Result<(), ReplayError> {
        w.check(seq)?;
        w.update(seq)
    }

    #[test]
    fn in_order_and_duplicates() {
        let w = ReplayWindow::new(64);
        for s in 1..=200 {
            assert_eq!(accept(&w, s), Ok(()), "seq {s}");
            assert_eq!(accept(&w, s), Err(ReplayError::Duplicate), "dup {s}");
        }
        assert_eq!(w.top(), 200);
        assert_eq!(w.check(0), Err(ReplayError::Stale));
    }

    #[test]
    fn window_edges() {
        let w = ReplayWindow::new(4096);
        assert_eq!(accept(&w, 5000), Ok(()));
        // top - seq == window - 1 is the last position inside.
        assert_eq!(accept(&w, 5000 - 4095), Ok(()));
        assert_eq!(w.check(5000 - 4096), Err(ReplayError::Stale));
        assert_eq!(accept(&w, 5000 - 4095), Err(ReplayError::Duplicate));
        // Reordered packets inside the window are accepted once.
        for s in (4000..5000).rev() {
            assert_eq!(accept(&w, s), Ok(()), "seq {s}");
        }
        for s in 4000..5000 {
            assert_eq!(w.check(s), Err(ReplayError::Duplicate));
        }
    }

    #[test]
    fn slide_clears_old_bits() {
        let w = ReplayWindow::new(128);
        for s in 1..=128 {
            accept(&w, s).unwrap();
        }
        // Move one whole ring ahead plus a bit: nothing old may linger.
        let far = 128 + (REPLAY_WORDS as u64) * 64 + 7;
        accept(&w, far).unwrap();
        for s in far - 127..far {
            assert_eq!(w.check(s), Ok(()), "seq {s} must be fresh after the jump");
        }
        assert_eq!(w.check(far - 128), Err(ReplayError::Stale));
    }

    #[test]
    fn far_ahead_jump_then_fill() {
        let w = ReplayWindow::new(MAX_WINDOW);
        accept(&w, 1).unwrap();
        accept(&w, 1_000_000).unwrap();
        assert_eq!(w.check(1), Err(ReplayError::Stale));
        let low = 1_000_000 - u64::from(MAX_WINDOW) + 1;
        assert_eq!(accept(&w, low), Ok(()));
        assert_eq!(w.check(low - 1), Err(ReplayError::Stale));
    }

    #[test]
    fn update_rechecks_a_race_inside_a_burst() {
        let w = ReplayWindow::new(64);
        accept(&w, 10).unwrap();
        // Two copies of seq 9 both pass check before either is updated.
        assert!(w.check(9).is_ok());
        assert!(w.check(9).is_ok());
        assert_eq!(w.update(9), Ok(()));
        assert_eq!(w.update(9), Err(ReplayError::Duplicate));
        // Same for a seq above top.
        assert!(w.check(11).is_ok() && w.check(11).is_ok());
        assert_eq!(w.update(11), Ok(()));
        assert_eq!(w.update(11), Err(ReplayError::Duplicate));
    }

    #[test]
    fn disabled_window_accepts_everything_but_zero() {
        let w = ReplayWindow::new(0);
        for s in [5, 5, 1, 3, 5] {
            assert_eq!(accept(&w, s), Ok(()));
        }
        assert_eq!(w.top(), 5);
        assert_eq!(accept(&w, 0), Err(ReplayError::Stale));
    }

    #[test]
    fn clamps_and_resets() {
        let w = ReplayWindow::new(u32::MAX);
        assert_eq!(w.window(), MAX_WINDOW);
        accept(&w, 77).unwrap();
        w.reset(256);
        assert_eq!((w.top(), w.window()), (0, 256));
        assert_eq!(accept(&w, 77), Ok(()));
    }

    #[test]
    fn esn_inference_case_a() {
        let w = ReplayWindow::new(64);
        let top = (3u64 << 32) | 1000;
        accept(&w, top).unwrap();
        // Inside the window and just above: same epoch.
        assert_eq!(w.infer_seq(1000 - 63), (3 << 32) | (1000 - 63));
        assert_eq!(w.infer_seq(5000), (3 << 32) | 5000);
        // Below the window's bottom: must be the next epoch (wrapped).
        assert_eq!(w.infer_seq(10), (4 << 32) | 10);
    }

    #[test]
    fn esn_inference_case_b_across_the_epoch() {
        let w = ReplayWindow::new(64);
        let top = (5u64 << 32) | 10; // window spans epochs 4 and 5
        accept(&w, top).unwrap();
        assert_eq!(
            w.infer_seq(u32::MAX - 20),
            (4 << 32) | u64::from(u32::MAX - 20)
        );
        assert_eq!(w.infer_seq(3), (5 << 32) | 3);
        assert_eq!(w.infer_seq(1000), (5 << 32) | 1000);
        // A packet from the end of epoch 4 inside the window is accepted.
        let s = w.infer_seq(u32::MAX - 20);
        assert_eq!(accept(&w, s), Ok(()));
    }

    #[test]
    fn esn_inference_at_start_refuses_previous_epoch() {
        let w = ReplayWindow::new(4096);
        assert_eq!(w.infer_seq(u32::MAX), 0);
        assert_eq!(w.infer_seq(1), 1);
        accept(&w, 1).unwrap();
        assert_eq!(w.infer_seq(2), 2);
    }

    #[test]
    fn esn_crossing_2_pow_32_keeps_the_window() {
        let w = ReplayWindow::new(4096);
        let base = (1u64 << 32) - 100;
        // The SA carried traffic up to here already.
        w.update(base - 1).unwrap();
        for s in base..base + 200 {
            let got = w.infer_seq(s as u32);
            assert_eq!(got, s, "inferred {got:#x} for {s:#x}");
            accept(&w, got).unwrap();
        }
        // Late duplicates from before the boundary are still caught.
        let old = w.infer_seq((base + 5) as u32);
        assert_eq!(old, base + 5);
        assert_eq!(w.check(old), Err(ReplayError::Duplicate));
    }
}
