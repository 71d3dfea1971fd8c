//! The Sluice data plane: XDP steering, AF_XDP poll-mode workers pinned to
//! cores, batched ESP over the shared-memory SA table (see docs/dataplane.md).

pub mod fib;
pub mod netlink;
pub mod pkt;
pub mod worker;
