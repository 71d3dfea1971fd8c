//! Finds DPDK with pkg-config, compiles the C shim against it and generates
//! the bindings with bindgen (an allowlist of what sluice-io uses; rte_mbuf
//! and rte_mempool opaque: Rust reaches their fields through the shim).

// A build script reports failure by panicking, with the reason.
#![allow(clippy::panic, clippy::expect_used)]

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(l) => l,
        Err(e) => panic!(
            "DPDK not found ({e}). Install Debian's libdpdk-dev (scripts/setup.sh does), \
             or build sluice-dp without its default `dpdk` feature."
        ),
    };
    // The compile flags pkg-config gives besides -I (-include rte_config.h,
    // -march=...).
    let mut extra: Vec<String> = Vec::new();
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config --cflags libdpdk");
    let flags = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = flags.split_whitespace();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                extra.push("-include".into());
                extra.push(h.into());
            }
        } else if !f.starts_with("-I") {
            extra.push(f.into());
        }
    }
    let mut cc = cc::Build::new();
    cc.file("src/shim.c").warnings(false);
    for p in &dpdk.include_paths {
        cc.include(p);
    }
    for f in &extra {
        cc.flag(f);
    }
    cc.compile("sluice_dpdk_shim");

    let mut b = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            "#include <rte_eal.h>\n#include <rte_ethdev.h>\n#include <rte_mbuf.h>\n\
             #include <rte_mempool.h>\n#include <rte_lcore.h>\n#include <rte_bus_vdev.h>\n",
        )
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_thread_register")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_mempool_obj_iter")
        .allowlist_function("rte_mempool_avail_count")
        .allowlist_function("rte_eth_dev_count_avail")
        .allowlist_function("rte_eth_dev_get_port_by_name")
        .allowlist_function("rte_eth_dev_info_get")
        .allowlist_function("rte_eth_dev_configure")
        .allowlist_function("rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup")
        .allowlist_function("rte_eth_dev_start")
        .allowlist_function("rte_eth_dev_stop")
        .allowlist_function("rte_eth_dev_close")
        .allowlist_function("rte_eth_dev_socket_id")
        .allowlist_function("rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_dev_default_mac_addr_set")
        .allowlist_function("rte_eth_stats_get")
        .allowlist_function("rte_eth_dev_set_mtu")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_mbuf")
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false);
    for p in &dpdk.include_paths {
        b = b.clang_arg(format!("-I{}", p.display()));
    }
    for f in &extra {
        b = b.clang_arg(f);
    }
    let bindings = b.generate().expect("bindgen over DPDK's headers");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");
}
