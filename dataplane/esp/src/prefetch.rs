//! A cache prefetch hint: the one exception to the crate's no-`unsafe` rule.

/// Asks the CPU to start loading the cache line holding `buf[at]` (nothing if
/// `at` is outside `buf`). A hint only: it reads nothing into the program,
/// cannot fault and changes no memory.
#[inline(always)]
pub(crate) fn line(buf: &[u8], at: usize) {
    if let Some(b) = buf.get(at) {
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        // SAFETY: PREFETCHT0 is an SSE instruction (baseline on x86_64) and
        // a pure hint: no load result, no fault, no write; the address is
        // that of a live byte anyway.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                (b as *const u8).cast(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = b;
    }
}
