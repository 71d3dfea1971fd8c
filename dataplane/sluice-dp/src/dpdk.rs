//! `--io dpdk`: the workers on DPDK ports.
//!
//! Each DPDK port (outside, inside) gets a TAP made by DPDK's `net_tap`
//! driver, with the port's MAC address: the kernel's side of it. Addresses,
//! routes and neighbours live on the TAPs, so sluiced, the kernel's ARP/ND
//! and the forwarding table work as on AF_XDP. A worker polls its queue of
//! all four ports: it steers what it receives on a DPDK port in software
//! (what the XDP program would pass to the kernel goes to the TAP) and
//! sends what the kernel writes to a TAP out of its port as it is.

use sluice_dp::worker::{Port as WorkerPort, PortRole};
use sluice_io::dpdk::{self, DpdkIo, Pool, Port};
use std::sync::Arc;

/// vdev names of the two TAPs (`net_tap` matches the driver by prefix).
const TAP_VDEVS: [&str; 2] = ["net_tap_sluice_out", "net_tap_sluice_in"];
/// Descriptors per RX and TX ring (as `Port::start` sets them up).
const RING: u32 = 1024;

/// The started ports: outside, inside, and their TAPs.
pub(crate) struct Dpdk {
    pool: Arc<Pool>,
    ports: [Port; 4],
    /// Kernel interface names of the TAPs (outside, inside).
    pub(crate) taps: [String; 2],
    /// DPDK port names (outside, inside).
    pub(crate) names: [String; 2],
}

/// EAL arguments: the operator's, `--no-huge -m 512` when there are no
/// hugepages (and no memory option was given), a file prefix of its own
/// unless one was given, and the two TAPs.
pub(crate) fn eal_args(eal: &[String], taps: &[String; 2]) -> Vec<String> {
    let mut args: Vec<String> = eal.to_vec();
    let given = |opt: &str| {
        eal.iter()
            .any(|a| a == opt || a.starts_with(&format!("{opt}=")))
    };
    if !given("--no-huge") && !dpdk::hugepages_available() {
        args.push("--no-huge".into());
        if !given("-m") && !given("--socket-mem") {
            args.extend(["-m".into(), "512".into()]);
        }
    }
    if !given("--file-prefix") {
        args.push("--file-prefix=sluice-dp".into());
    }
    for (vdev, tap) in TAP_VDEVS.iter().zip(taps) {
        args.push(format!("--vdev={vdev},iface={tap}"));
    }
    args
}

/// Starts the EAL, the DPDK ports `names` (outside, inside) with `workers`
/// queues each, and their TAPs `taps`.
pub(crate) fn start(
    names: [String; 2],
    taps: [String; 2],
    eal: &[String],
    workers: u16,
) -> Result<Dpdk, String> {
    for t in &taps {
        if t.is_empty() || t.len() > 15 || t.contains(['/', ' ', ',', '=']) {
            return Err(format!(
                "TAP name {t:?}: 1 to 15 characters, no '/', ' ', ',' or '='"
            ));
        }
    }
    let args = eal_args(eal, &taps);
    // The EAL pins the calling thread to its main lcore; the control thread
    // keeps the CPUs it had (workers are pinned one by one).
    // SAFETY: cpu_set_t is plain data; the calls read and write only `set`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: as above.
    let saved = unsafe { libc::sched_getaffinity(0, size, &mut set) } == 0;
    dpdk::init(&args)?;
    if saved {
        // SAFETY: as above; failure leaves the EAL's pinning, which is harmless.
        unsafe { libc::sched_setaffinity(0, size, &set) };
    }
    // Per worker and port: a full RX ring, a full TX ring and a burst in hand.
    let n = u32::from(workers) * 4 * (2 * RING + 64) + 1024;
    // A mempool on each NUMA socket the two ports sit on: each port
    // receives into local memory (the TAPs take the first).
    let sockets = pool_sockets([dpdk::port_socket(&names[0])?, dpdk::port_socket(&names[1])?]);
    let pool = Pool::per_socket("sluice-dp", n, &sockets)?;
    let outside = Port::start(&names[0], workers, &pool)?;
    let inside = Port::start(&names[1], workers, &pool)?;
    let tap_out = Port::start_with_mac(TAP_VDEVS[0], workers, &pool, Some(outside.mac()))
        .map_err(|e| format!("TAP {}: {e}", taps[0]))?;
    let tap_in = Port::start_with_mac(TAP_VDEVS[1], workers, &pool, Some(inside.mac()))
        .map_err(|e| format!("TAP {}: {e}", taps[1]))?;
    Ok(Dpdk {
        pool,
        ports: [outside, inside, tap_out, tap_in],
        taps,
        names,
    })
}

/// The sockets to make mempools on for ports on `of`: each real socket
/// once; "unknown" (-1, a virtual device) only if no port says, since the
/// first pool serves it anyway (a second full pool would double the
/// memory for nothing).
fn pool_sockets(of: [i32; 2]) -> Vec<i32> {
    let mut v: Vec<i32> = Vec::new();
    for s in of.into_iter().filter(|&s| s >= 0) {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    if v.is_empty() {
        v.push(-1);
    }
    v
}

impl Dpdk {
    /// Queue `queue` of the four ports, for the calling worker thread.
    pub(crate) fn io(&self, queue: u16) -> Result<DpdkIo, String> {
        let [a, b, c, d] = &self.ports;
        DpdkIo::new(&self.pool, &[a, b, c, d], queue)
    }

    /// The worker's view of the ports, in [`Dpdk::io`]'s order: the DPDK
    /// ports routed to through their TAPs' interface indexes `tap_index`,
    /// steered in software towards the TAPs.
    pub(crate) fn worker_ports(tap_index: [u32; 2]) -> Vec<WorkerPort> {
        vec![
            WorkerPort {
                exception: Some(2),
                ..WorkerPort::new(PortRole::Outside, tap_index[0])
            },
            WorkerPort {
                exception: Some(3),
                ..WorkerPort::new(PortRole::Inside, tap_index[1])
            },
            WorkerPort::new(PortRole::Exception(0), 0),
            WorkerPort::new(PortRole::Exception(1), 0),
        ]
    }

    /// One line for the log: ports, TAPs and MAC addresses.
    pub(crate) fn describe(&self) -> String {
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let sockets: Vec<String> = self
            .pool
            .sockets()
            .iter()
            .map(|&s| if s < 0 { "any".into() } else { s.to_string() })
            .collect();
        format!(
            "outside DPDK {} ({}) with TAP {}, inside DPDK {} ({}) with TAP {}; \
             {} mbufs on NUMA socket(s) {}",
            self.names[0],
            mac(self.ports[0].mac()),
            self.taps[0],
            self.names[1],
            mac(self.ports[1].mac()),
            self.taps[1],
            self.pool.size(),
            sockets.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_per_real_socket_and_unknown_only_alone() {
        assert_eq!(pool_sockets([-1, -1]), [-1]);
        assert_eq!(pool_sockets([0, -1]), [0]);
        assert_eq!(pool_sockets([-1, 1]), [1]);
        assert_eq!(pool_sockets([1, 1]), [1]);
        assert_eq!(pool_sockets([1, 0]), [1, 0]);
    }

    #[test]
    fn eal_arguments_keep_the_operators_and_add_the_taps() {
        let taps = ["o0".to_string(), "i0".to_string()];
        let given: Vec<String> = [
            "--no-huge",
            "-m",
            "128",
            "--file-prefix=x",
            "--vdev=net_null0",
        ]
        .map(String::from)
        .to_vec();
        let a = eal_args(&given, &taps);
        assert_eq!(&a[..5], &given[..]);
        assert_eq!(
            &a[5..],
            &[
                "--vdev=net_tap_sluice_out,iface=o0".to_string(),
                "--vdev=net_tap_sluice_in,iface=i0".to_string()
            ]
        );
        let a = eal_args(&[], &taps);
        assert!(a.contains(&"--file-prefix=sluice-dp".to_string()));
        if !dpdk::hugepages_available() {
            assert_eq!(&a[..3], &["--no-huge", "-m", "512"]);
        }
    }
}
