//! Raw bindings to DPDK 22.11 as Debian ships it: bindgen output for the
//! functions and types sluice-io uses (an allowlist), and the C shim's
//! wrappers for the static-inline fast path (`rte_eth_rx_burst`,
//! `rte_eth_tx_burst`, mbuf alloc/free and fields). `rte_mbuf` and
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

extern "C" {
    /// `rte_eth_rx_burst`.
    pub fn sluice_rx_burst(port: u16, queue: u16, pkts: *mut *mut rte_mbuf, n: u16) -> u16;
    /// `rte_eth_tx_burst`.
    pub fn sluice_tx_burst(port: u16, queue: u16, pkts: *mut *mut rte_mbuf, n: u16) -> u16;
    /// `rte_pktmbuf_alloc`.
    pub fn sluice_pktmbuf_alloc(mp: *mut rte_mempool) -> *mut rte_mbuf;
    /// `rte_pktmbuf_free`.
    pub fn sluice_pktmbuf_free(m: *mut rte_mbuf);
    /// The buffer's start (`buf_addr`) and length (`buf_len`).
    pub fn sluice_mbuf_buf(m: *mut rte_mbuf, len: *mut u16) -> *mut ::std::os::raw::c_void;
    /// `data_off`, `data_len`, `nb_segs`.
    pub fn sluice_mbuf_pkt(m: *const rte_mbuf, off: *mut u16, len: *mut u16, segs: *mut u16);
    /// Makes `m` one segment of `len` bytes at `off` in its buffer.
    pub fn sluice_mbuf_reset_to(m: *mut rte_mbuf, off: u16, len: u16);
    /// `rte_mbuf_to_priv`.
    pub fn sluice_mbuf_priv(m: *mut rte_mbuf) -> *mut ::std::os::raw::c_void;
    /// `rte_errno`.
    pub fn sluice_errno() -> ::std::os::raw::c_int;
    /// `rte_socket_id`.
    pub fn sluice_socket_id() -> ::std::os::raw::c_uint;
}
