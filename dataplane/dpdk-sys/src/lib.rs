//! Raw bindings to DPDK 22.11 as Debian ships it: bindgen output for the
//! functions and types sluice-io uses (an allowlist), and the C shim's
//! wrappers for the static-inline fast path (`rte_eth_rx_burst` and
//! `rte_eth_tx_burst` with the per-packet mbuf field work of a burst in the
//! same call, mbuf alloc/free and fields). `rte_mbuf` and
//! `rte_mempool` are opaque here; their fields are reached through the shim.
//! Everything is `unsafe`: the safe layer is `sluice_io::dpdk`.
//!
//! The crates.io `dpdk-sys` does not build against this DPDK; this crate is
//! generated at build time against the system's headers (pkg-config
//! `libdpdk`), so a DPDK update cannot silently change a struct layout.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    dead_code
)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// What the fast path needs of a received mbuf (`struct sluice_pkt` in the
/// shim; the two must stay in step).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sluice_pkt {
    /// The first 8 bytes of the mbuf's private area.
    pub index: u64,
    /// `data_off`.
    pub off: u16,
    /// `data_len` (first segment).
    pub len: u16,
    /// `nb_segs`.
    pub segs: u16,
    pub pad: u16,
}

const _: () = assert!(std::mem::size_of::<sluice_pkt>() == 16);

extern "C" {
    /// `rte_eth_rx_burst`, then each packet's [`sluice_pkt`] in `info`.
    pub fn sluice_rx_burst_pkts(
        port: u16,
        queue: u16,
        pkts: *mut *mut rte_mbuf,
        info: *mut sluice_pkt,
        n: u16,
    ) -> u16;
    /// Sets each mbuf's data to `len[i]` bytes at `off[i]`, then
    /// `rte_eth_tx_burst`. The mbufs must be single-segment (`nb_segs` 1,
    /// `next` NULL): only their first cache line is written.
    pub fn sluice_tx_burst_pkts(
        port: u16,
        queue: u16,
        pkts: *mut *mut rte_mbuf,
        off: *const u16,
        len: *const u16,
        n: u16,
    ) -> u16;
    /// `rte_pktmbuf_free_bulk`.
    pub fn sluice_pktmbuf_free_bulk(pkts: *mut *mut rte_mbuf, n: ::std::os::raw::c_uint);
    /// `rte_pktmbuf_alloc`.
    pub fn sluice_pktmbuf_alloc(mp: *mut rte_mempool) -> *mut rte_mbuf;
    /// `rte_pktmbuf_free`.
    pub fn sluice_pktmbuf_free(m: *mut rte_mbuf);
    /// The buffer's start (`buf_addr`) and length (`buf_len`).
    pub fn sluice_mbuf_buf(m: *mut rte_mbuf, len: *mut u16) -> *mut ::std::os::raw::c_void;
    /// Makes `m` one segment of `len` bytes at `off` in its buffer.
    pub fn sluice_mbuf_reset_to(m: *mut rte_mbuf, off: u16, len: u16);
    /// `rte_mbuf_to_priv`.
    pub fn sluice_mbuf_priv(m: *mut rte_mbuf) -> *mut ::std::os::raw::c_void;
    /// `rte_errno`.
    pub fn sluice_errno() -> ::std::os::raw::c_int;
    /// `rte_socket_id`.
    pub fn sluice_socket_id() -> ::std::os::raw::c_uint;
}
