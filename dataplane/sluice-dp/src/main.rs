//! sluice-dp: the data plane process (see docs/dataplane.md).
//!
//! ```text
//! sluice-dp --outside IF --inside IF [--sa-table PATH] [--workers N]
//!           [--xdp-mode auto|native|generic] [--bind auto|copy|zero-copy]
//!           [--no-policy forward|drop] [--backend ring|rustcrypto] [--stats SECONDS]
//!           [--metrics ADDR:PORT]
//! sluice-dp --io dpdk --outside PORT --inside PORT [--eal "ARGS"]
//!           [--outside-tap NAME] [--inside-tap NAME] [...]
//! sluice-dp show [--sa-table PATH]
//! ```

#[cfg(feature = "dpdk")]
mod dpdk;
mod metrics;

use sluice_dp::fib::Fib;
use sluice_dp::netlink::{Netlink, Watch};
use sluice_dp::worker::{NoPolicy, Port, PortRole, Shared, Worker};
use sluice_ebpf::{AttachMode, Class, Role, Steering};
use sluice_esp::{Backend, DropReason};
use sluice_io::afxdp::{AfXdp, AfXdpConfig, BindMode, PortSpec};
use sluice_io::PacketIo;
use sluice_sa_table::{DpEvent, Reader, MAX_WORKERS};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEFAULT_TABLE: &str = "/dev/shm/sluice/sa-table";

/// Packet I/O backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    AfXdp,
    Dpdk,
}

struct Opts {
    io: Io,
    /// DPDK EAL arguments (`--io dpdk`).
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    eal: Vec<String>,
    /// Kernel interfaces (TAPs) of the DPDK ports (`--io dpdk`).
    taps: [String; 2],
    outside: String,
    inside: String,
    table: PathBuf,
    workers: Option<usize>,
    xdp: AttachMode,
    bind: BindMode,
    no_policy: NoPolicy,
    backend: Backend,
    stats: Option<Duration>,
    acquire: String,
    fragment: bool,
    metrics: Option<SocketAddr>,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn opts(args: &[String]) -> Result<Opts, String> {
    let known = [
        "--outside",
        "--inside",
        "--sa-table",
        "--workers",
        "--xdp-mode",
        "--bind",
        "--no-policy",
        "--backend",
        "--stats",
        "--acquire-socket",
        "--fragment",
        "--metrics",
        "--io",
        "--eal",
        "--outside-tap",
        "--inside-tap",
    ];
    let mut i = 0;
    while i < args.len() {
        if !known.contains(&args[i].as_str()) {
            return Err(format!("unknown argument {:?}", args[i]));
        }
        i += 2;
    }
    let io = match arg(args, "--io").as_deref() {
        None | Some("afxdp") => Io::AfXdp,
        Some("dpdk") if cfg!(feature = "dpdk") => Io::Dpdk,
        Some("dpdk") => {
            return Err("--io dpdk: this sluice-dp was built without DPDK support \
                 (build it with the `dpdk` feature, which needs libdpdk-dev)"
                .into())
        }
        Some(x) => return Err(format!("--io {x}: afxdp or dpdk")),
    };
    let (only, not_for): (&[&str], &str) = match io {
        Io::AfXdp => (&["--eal", "--outside-tap", "--inside-tap"], "--io afxdp"),
        Io::Dpdk => (&["--xdp-mode", "--bind"], "--io dpdk"),
    };
    if let Some(o) = only.iter().find(|o| args.iter().any(|a| a == *o)) {
        return Err(format!("{o} does not apply to {not_for}"));
    }
    Ok(Opts {
        io,
        eal: arg(args, "--eal")
            .map(|e| e.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        taps: [
            arg(args, "--outside-tap").unwrap_or_else(|| "sluice-out".into()),
            arg(args, "--inside-tap").unwrap_or_else(|| "sluice-in".into()),
        ],
        outside: arg(args, "--outside").ok_or("--outside IF is required")?,
        inside: arg(args, "--inside").ok_or("--inside IF is required")?,
        table: arg(args, "--sa-table").map_or_else(|| PathBuf::from(DEFAULT_TABLE), PathBuf::from),
        workers: match arg(args, "--workers") {
            Some(w) => Some(
                w.parse()
                    .ok()
                    .filter(|n| (1..=MAX_WORKERS).contains(n))
                    .ok_or(format!("--workers: 1..={MAX_WORKERS}"))?,
            ),
            None => None,
        },
        xdp: match arg(args, "--xdp-mode").as_deref() {
            None | Some("auto") => AttachMode::Auto,
            Some("native") => AttachMode::Native,
            Some("generic") => AttachMode::Generic,
            Some(x) => return Err(format!("--xdp-mode {x}: auto, native or generic")),
        },
        bind: match arg(args, "--bind").as_deref() {
            None | Some("auto") => BindMode::Auto,
            Some("copy") => BindMode::Copy,
            Some("zero-copy") => BindMode::ZeroCopy,
            Some(x) => return Err(format!("--bind {x}: auto, copy or zero-copy")),
        },
        no_policy: match arg(args, "--no-policy").as_deref() {
            None | Some("forward") => NoPolicy::Forward,
            Some("drop") => NoPolicy::Drop,
            Some(x) => return Err(format!("--no-policy {x}: forward or drop")),
        },
        backend: match arg(args, "--backend") {
            None => Backend::Ring,
            Some(b) => {
                Backend::from_name(&b).ok_or(format!("--backend {b}: ring or rustcrypto"))?
            }
        },
        acquire: arg(args, "--acquire-socket").unwrap_or_else(|| "sluice-acquire".into()),
        fragment: match arg(args, "--fragment").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(x) => return Err(format!("--fragment {x}: on or off")),
        },
        metrics: match arg(args, "--metrics") {
            Some(a) => Some(
                a.parse()
                    .map_err(|e| format!("--metrics {a}: {e} (ADDRESS:PORT)"))?,
            ),
            None => None,
        },
        stats: match arg(args, "--stats") {
            Some(s) => Some(Duration::from_secs_f64(
                s.parse::<f64>()
                    .ok()
                    .filter(|x| *x > 0.0)
                    .ok_or("--stats SECONDS")?,
            )),
            None => None,
        },
    })
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("sluice-dp: {msg}");
}

/// Receive queues of an interface (from sysfs).
fn rx_queues(ifname: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = if args.first().map(String::as_str) == Some("show") {
        show(&args[1..])
    } else if args.iter().any(|a| a == "-h" || a == "--help") || args.is_empty() {
        println!("{}", include_str!("usage.txt"));
        Ok(())
    } else {
        opts(&args).and_then(run)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// `show`: the data plane's counters from the shared table.
fn show(args: &[String]) -> Result<(), String> {
    let path = arg(args, "--sa-table").map_or_else(|| PathBuf::from(DEFAULT_TABLE), PathBuf::from);
    let r = Reader::attach(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("workers of {}", path.display());
    for w in 0..MAX_WORKERS {
        let Some(c) = r.worker_counters(w) else { break };
        let s = c.snapshot();
        if s.rx_packets == 0 && s.tx_packets == 0 && s.idle_polls == 0 {
            continue;
        }
        println!(
            "  worker {w}: rx {} pkts {} B, tx {} pkts {} B, bursts {}, handoff {}",
            s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes, s.bursts, s.handoff
        );
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|d| s.dropped(**d) > 0)
            .map(|d| format!("{}={}", d.as_str(), s.dropped(*d)))
            .collect();
        let events: Vec<String> = DpEvent::ALL
            .iter()
            .filter(|e| s.event(**e) > 0)
            .map(|e| format!("{}={}", e.name(), s.event(*e)))
            .collect();
        if !drops.is_empty() {
            println!("    drops: {}", drops.join(" "));
        }
        if !events.is_empty() {
            println!("    events: {}", events.join(" "));
        }
    }
    Ok(())
}

/// How frames are split between the kernel and the workers.
enum Steer {
    /// The XDP program on each interface (AF_XDP), outside then inside.
    Xdp(Box<[Steering; 2]>),
    /// The workers themselves (DPDK), counting in [`Shared::steered`].
    Soft,
}

impl Steer {
    /// Packets per class, outside then inside.
    fn counters(&self, shared: &Shared) -> [Option<[u64; Class::COUNT]>; 2] {
        match self {
            Steer::Xdp(s) => [s[0].counters().ok(), s[1].counters().ok()],
            Steer::Soft => std::array::from_fn(|r| {
                Some(
                    shared.steered[r]
                        .each_ref()
                        .map(|c| c.load(Ordering::Relaxed)),
                )
            }),
        }
    }
}

/// Starts worker `w` on a thread of its own, pinned to `core`, over the
/// backend `make_io` opens there.
#[allow(clippy::too_many_arguments)]
fn spawn_worker<I: PacketIo + 'static>(
    w: usize,
    workers: usize,
    core: Option<core_affinity::CoreId>,
    reader: Arc<Reader>,
    shared: Arc<Shared>,
    ports: Vec<Port>,
    make_io: impl FnOnce() -> Result<I, String> + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(format!("sluice-dp-w{w}"))
        .spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            let io = match make_io() {
                Ok(io) => io,
                Err(e) => {
                    log(format!("worker {w}: {e}"));
                    shared.failed.store(true, Ordering::Relaxed);
                    shared.stop.store(true, Ordering::Relaxed);
                    return;
                }
            };
            match reader.register_thread() {
                Ok(t) => Worker::new(w, workers, io, ports, t, shared).run(),
                Err(e) => {
                    log(format!("worker {w}: SA table: {e}"));
                    shared.failed.store(true, Ordering::Relaxed);
                    shared.stop.store(true, Ordering::Relaxed);
                }
            }
        })
        .map_err(|e| e.to_string())
}

fn run(o: Opts) -> Result<(), String> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    // The cores to pin workers to, before the EAL pins this thread.
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    // DPDK first: its TAPs are the interfaces the kernel (and sluiced)
    // use, and they must exist before addresses can be put on them.
    #[cfg(feature = "dpdk")]
    let dpdk = match o.io {
        Io::Dpdk => {
            let workers = o.workers.unwrap_or(1);
            let d = dpdk::start(
                [o.outside.clone(), o.inside.clone()],
                o.taps.clone(),
                &o.eal,
                u16::try_from(workers).map_err(|e| e.to_string())?,
            )?;
            log(d.describe());
            Some(Arc::new(d))
        }
        Io::AfXdp => None,
    };
    // The kernel interfaces: the AF_XDP ones, or the DPDK ports' TAPs.
    let ifnames = match o.io {
        Io::AfXdp => [o.outside.clone(), o.inside.clone()],
        Io::Dpdk => o.taps.clone(),
    };
    let [out_name, in_name] = &ifnames;
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    // Subscribed before the first dump, so no change falls between the two.
    let mut watch = match Watch::open() {
        Ok(w) => Some(w),
        Err(e) => {
            log(format!(
                "netlink announcements: {e}; routes and neighbours are read once a second"
            ));
            None
        }
    };
    let tables = nl.tables().map_err(|e| format!("netlink dump: {e}"))?;
    let fib = Fib::new(&tables);
    let out_if = fib
        .link_by_name(out_name)
        .ok_or(format!("no interface {out_name}"))?
        .clone();
    let in_if = fib
        .link_by_name(in_name)
        .ok_or(format!("no interface {in_name}"))?
        .clone();
    let workers = match o.io {
        Io::AfXdp => {
            let queues = rx_queues(&o.outside).min(rx_queues(&o.inside));
            o.workers.unwrap_or(queues).min(queues).min(MAX_WORKERS)
        }
        Io::Dpdk => o.workers.unwrap_or(1),
    };

    // The SA table: sluiced creates it; wait for it.
    let mut waited = false;
    let reader = loop {
        match Reader::attach(&o.table) {
            Ok(r) => break Arc::new(r),
            Err(e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if !waited {
                    log(format!(
                        "waiting for the SA table {}: {e}",
                        o.table.display()
                    ));
                    waited = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    log(format!("SA table {} attached", o.table.display()));
    // Addresses may have come while we waited (on DPDK they are put on the
    // TAPs after those appear): start from the current state.
    let fib = match nl.tables() {
        Ok(t) => Fib::new(&t),
        Err(_) => fib,
    };

    let mut shared = Shared::new(workers, fib, o.no_policy, o.backend);
    shared.fragment = o.fragment;
    let shared = Arc::new(shared);
    let core = |w: usize| (!cores.is_empty()).then(|| cores[w % cores.len()]);
    let mut handles = Vec::new();
    let mut local: HashSet<IpAddr> = shared.fib.load().local_addrs().copied().collect();
    let mut steer = match o.io {
        Io::AfXdp => {
            let mut steer_out =
                Steering::load(Role::Outside).map_err(|e| format!("XDP load: {e}"))?;
            let mut steer_in =
                Steering::load(Role::Inside).map_err(|e| format!("XDP load: {e}"))?;
            for a in &local {
                for s in [&mut steer_out, &mut steer_in] {
                    s.add_local_addr(*a)
                        .map_err(|e| format!("XDP local address {a}: {e}"))?;
                }
            }
            let cfg = AfXdpConfig {
                bind: o.bind,
                ..AfXdpConfig::default()
            };
            let mut ios = Vec::new();
            for q in 0..workers as u32 {
                let io = AfXdp::open(
                    &[
                        PortSpec::new(o.outside.clone(), q),
                        PortSpec::new(o.inside.clone(), q),
                    ],
                    &cfg,
                )
                .map_err(|e| format!("AF_XDP queue {q}: {e}"))?;
                for (port, s) in [(0, &mut steer_out), (1, &mut steer_in)] {
                    let fd = io.fd(port).ok_or("AF_XDP socket missing")?;
                    s.set_xsk(q, fd)
                        .map_err(|e| format!("XSKMAP queue {q}: {e}"))?;
                }
                ios.push(io);
            }
            let mode_out = steer_out
                .attach(&o.outside, o.xdp)
                .map_err(|e| format!("XDP attach {}: {e}", o.outside))?;
            let mode_in = steer_in
                .attach(&o.inside, o.xdp)
                .map_err(|e| format!("XDP attach {}: {e}", o.inside))?;
            log(format!(
                "outside {} (XDP {mode_out:?}), inside {} (XDP {mode_in:?}), {workers} worker(s), AF_XDP {:?}",
                o.outside,
                o.inside,
                ios.first().map(|i| i.mode())
            ));
            for (w, io) in ios.into_iter().enumerate() {
                let ports = vec![
                    Port::new(PortRole::Outside, out_if.index),
                    Port::new(PortRole::Inside, in_if.index),
                ];
                handles.push(spawn_worker(
                    w,
                    workers,
                    core(w),
                    reader.clone(),
                    shared.clone(),
                    ports,
                    move || Ok(io),
                )?);
            }
            Steer::Xdp(Box::new([steer_out, steer_in]))
        }
        Io::Dpdk => {
            #[cfg(feature = "dpdk")]
            if let Some(d) = &dpdk {
                for w in 0..workers {
                    let d = d.clone();
                    let q = u16::try_from(w).map_err(|e| e.to_string())?;
                    handles.push(spawn_worker(
                        w,
                        workers,
                        core(w),
                        reader.clone(),
                        shared.clone(),
                        dpdk::Dpdk::worker_ports([out_if.index, in_if.index]),
                        move || d.io(q),
                    )?);
                }
                log(format!(
                    "{} DPDK port(s) started, {workers} worker(s), steering in software",
                    d.names.len()
                ));
            }
            Steer::Soft
        }
    };
    // Control loop: forwarding state, neighbour resolution, statistics.
    let probe = UdpSocket::bind("0.0.0.0:0").ok();
    // Acquires go to sluiced's abstract socket in this network namespace.
    let acquire_sock = std::os::unix::net::UnixDatagram::unbound().ok();
    let acquire_addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(o.acquire.as_bytes()).ok()
    };
    let mut acquired: HashMap<u32, Instant> = HashMap::new();
    let probe6 = UdpSocket::bind("[::]:0").ok();
    let mut asked: HashMap<IpAddr, Instant> = HashMap::new();
    let mut last_stats = Instant::now();
    let mut last_dump = Instant::now();
    // An announced change not dumped yet, and how long to leave between
    // dumps for announced changes.
    let (mut changed, mut dump_gap) = (false, Duration::from_millis(20));
    let latest: metrics::Latest = Default::default();
    if let Some(addr) = o.metrics {
        metrics::serve(addr, latest.clone())?;
        log(format!("metrics on http://{addr}/metrics"));
    }
    let mut last_metrics = Instant::now() - Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        while let Some(via) = shared.resolve.pop() {
            if asked
                .get(&via)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(500))
            {
                continue;
            }
            asked.insert(via, now);
            // Any datagram to the next hop makes the kernel resolve it.
            let sock = if via.is_ipv4() { &probe } else { &probe6 };
            if let Some(s) = sock {
                let _ = s.send_to(&[], SocketAddr::new(via, 9));
            }
        }
        while let Some(pid) = shared.acquire.pop() {
            if acquired
                .get(&pid)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
            {
                continue;
            }
            acquired.insert(pid, now);
            log(format!("acquire: traffic on policy {pid} without an SA"));
            if let (Some(s), Some(a)) = (&acquire_sock, &acquire_addr) {
                let _ = s.send_to_addr(&pid.to_le_bytes(), a);
            }
        }
        // Announced changes are picked up within a tick, but a dump at most
        // every ten times as long as the last one took (a big table under
        // churn costs this thread at most a tenth of a core); the periodic
        // dump is the backstop (a watch that failed to open, a missed change).
        changed |= watch.as_mut().is_some_and(Watch::changed);
        let since = now.duration_since(last_dump);
        if (changed && since >= dump_gap) || since >= Duration::from_secs(1) {
            last_dump = now;
            changed = false;
            let took = Instant::now();
            match nl.tables() {
                Ok(t) => {
                    let fib = Fib::new(&t);
                    let now_local: HashSet<IpAddr> = fib.local_addrs().copied().collect();
                    if let Steer::Xdp(s) = &mut steer {
                        for a in now_local.difference(&local) {
                            for s in s.iter_mut() {
                                let _ = s.add_local_addr(*a);
                            }
                        }
                        for a in local.difference(&now_local) {
                            for s in s.iter_mut() {
                                let _ = s.remove_local_addr(*a);
                            }
                        }
                    }
                    local = now_local;
                    shared.fib.store(Arc::new(fib));
                }
                Err(e) => log(format!("netlink dump: {e}")),
            }
            dump_gap = (took.elapsed() * 10).max(Duration::from_millis(20));
            asked.retain(|_, t| now.duration_since(*t) < Duration::from_secs(5));
            acquired.retain(|_, t| now.duration_since(*t) < Duration::from_secs(5));
        }
        if o.metrics.is_some() && now.duration_since(last_metrics) >= Duration::from_secs(1) {
            last_metrics = now;
            let mut samples = Vec::new();
            let counters = steer.counters(&shared);
            for ((ifname, role), c) in ifnames.iter().zip(["outside", "inside"]).zip(counters) {
                if let Some(c) = c {
                    for k in Class::ALL {
                        let action = match k.action() {
                            sluice_ebpf::Action::Pass => "pass",
                            sluice_ebpf::Action::Redirect => "redirect",
                        };
                        samples.push((ifname.as_str(), role, k.name(), action, c[k.index()]));
                    }
                }
            }
            let text = metrics::render(&samples);
            if let Ok(mut l) = latest.lock() {
                *l = text;
            }
        }
        if let Some(every) = o.stats {
            if now.duration_since(last_stats) >= every {
                last_stats = now;
                print_stats(&reader, workers, steer.counters(&shared));
            }
        }
    }
    log("stopping");
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    print_stats(&reader, workers, steer.counters(&shared));
    match &mut steer {
        Steer::Xdp(s) => {
            for s in s.iter_mut() {
                let _ = s.detach();
            }
            log("XDP detached, sockets closed");
        }
        Steer::Soft => log("DPDK ports stopped"),
    }
    if shared.failed.load(Ordering::Relaxed) {
        return Err("a worker could not start (above)".into());
    }
    Ok(())
}

fn print_stats(reader: &Reader, workers: usize, steered: [Option<[u64; Class::COUNT]>; 2]) {
    let mut line = String::new();
    for w in 0..workers {
        if let Some(c) = reader.worker_counters(w) {
            let s = c.snapshot();
            let drops: u64 = s.drops.iter().sum();
            line.push_str(&format!(
                " w{w}: rx {} tx {} drop {drop} handoff {};",
                s.rx_packets,
                s.tx_packets,
                s.handoff,
                drop = drops
            ));
        }
    }
    for (name, c) in ["outside", "inside"].into_iter().zip(steered) {
        if let Some(c) = c {
            let parts: Vec<String> = Class::ALL
                .iter()
                .filter(|k| c[k.index()] > 0)
                .map(|k| format!("{}={}", k.name(), c[k.index()]))
                .collect();
            line.push_str(&format!(" xdp {name}: {};", parts.join(" ")));
        }
    }
    log(format!("stats:{line}"));
}
