//! The crate's error type.

use crate::layout::{MAGIC, MAX_READERS};
use std::fmt;
use std::path::PathBuf;

/// Why the table could not be opened or changed. Attach errors say what this
/// build expected and what the file holds.
#[derive(Debug)]
#[non_exhaustive]
pub enum TableError {
    /// Creating, opening, locking or mapping the file failed.
    Io(PathBuf, std::io::Error),
    /// The file is not a Sluice SA table (or its creation never completed).
    BadMagic {
        /// Magic found.
        found: u64,
    },
    /// Written by a build with another ABI version.
    AbiVersion {
        /// This build's ABI version.
        expected: u32,
        /// The file's.
        found: u32,
    },
    /// A record's size differs from this build's.
    RecordSize {
        /// Which record.
        what: &'static str,
        /// This build's size.
        expected: u32,
        /// The file's.
        found: u32,
    },
    /// A section offset differs from what the capacities imply in this build.
    SectionOffset {
        /// Which section.
        what: &'static str,
        /// Offset this build computes.
        expected: u64,
        /// Offset in the header.
        found: u64,
    },
    /// The file is shorter than its header says, or than a header.
    Truncated {
        /// Bytes required.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Another live writer holds the table.
    WriterLocked(PathBuf),
    /// All slots of a kind are in use (or waiting for readers to move on).
    Full(&'static str),
    /// No such SA (deleted or replaced since).
    NoSuchSa,
    /// No such policy.
    NoSuchPolicy,
    /// The configuration cannot be stored.
    Invalid(String),
    /// All reader slots are taken.
    NoReaderSlot,
    /// Readers did not pass a quiescent point in time: the policy index could
    /// not be rewritten yet (retry).
    Busy,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            TableError::BadMagic { found } => write!(
                f,
                "not a Sluice SA table: magic {found:#018x}, expected {MAGIC:#018x}"
            ),
            TableError::AbiVersion { expected, found } => write!(
                f,
                "SA table ABI version {found}, expected {expected}: run writer and readers from one build"
            ),
            TableError::RecordSize {
                what,
                expected,
                found,
            } => write!(
                f,
                "SA table {what} record is {found} bytes, expected {expected}"
            ),
            TableError::SectionOffset {
                what,
                expected,
                found,
            } => write!(
                f,
                "SA table {what} section at offset {found}, expected {expected}"
            ),
            TableError::Truncated { expected, found } => write!(
                f,
                "SA table file is {found} bytes, expected at least {expected}"
            ),
            TableError::WriterLocked(p) => write!(
                f,
                "{}: another writer (sluiced) holds the table",
                p.display()
            ),
            TableError::Full(what) => write!(f, "SA table full: no free {what} slot"),
            TableError::NoSuchSa => f.write_str("no such SA (deleted or replaced)"),
            TableError::NoSuchPolicy => f.write_str("no such policy"),
            TableError::Invalid(m) => write!(f, "invalid: {m}"),
            TableError::NoReaderSlot => write!(f, "all {MAX_READERS} reader slots are in use"),
            TableError::Busy => f.write_str("readers have not passed a quiescent point yet"),
        }
    }
}

impl std::error::Error for TableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TableError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}
