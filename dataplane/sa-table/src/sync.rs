//! Atomics: std normally, loom's under `--cfg loom` so the publication
//! protocol (seqlock and epochs) is model-checked as written.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, Ordering};
