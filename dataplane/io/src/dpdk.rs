//! The DPDK backend: [`PacketIo`] over DPDK ethdev queues, packets in mbufs.
//!
//! - [`init`] starts the EAL once per process from configuration
//!   (`--no-huge` when no hugepages are mounted, virtual devices for tests).
//! - [`Pool`] is a packet mempool on one NUMA socket. Every mbuf gets an
//!   index (kept in its private area) when the pool is made: a [`Desc`]'s
//!   `addr` is that index, never a pointer, so a forged or stale
//!   descriptor cannot make safe code touch memory outside the pool.
//! - [`Port`] configures and starts an ethdev with one RX and one TX queue
//!   per worker.
//! - [`DpdkIo`] serves one worker's queue on each port. It tracks which
//!   mbufs it has handed out: only those can be edited, sent or freed, and
//!   only once, so safe code cannot double-free an mbuf or write to one the
//!   NIC owns; what is still handed out when it is dropped goes back to the
//!   pool.
//!
//! Buffer layout, to meet the [`crate::MIN_HEADROOM`] contract although the
//! PMDs put a received packet `RTE_PKTMBUF_HEADROOM` (128) bytes into the
//! mbuf's buffer: each mbuf has a 136-byte private area in front of its
//! buffer, 8 bytes of index and 128 bytes the chunk exposes as extra
//! headroom. A chunk is those 128 bytes followed by the buffer, so a
//! received packet starts 256 bytes into its chunk. A packet sent with more
//! than 128 bytes prepended (it starts inside the private area) is moved to
//! the buffer's start first; the ESP engine prepends at most 72.

use crate::{Desc, IoDrops, PacketIo, PortStats, MAX_FRAME, MIN_HEADROOM, MIN_TAILROOM};
use sluice_dpdk_sys as sys;
use std::ffi::CString;
use std::sync::{Arc, OnceLock};

/// Bytes of the private area used for the mbuf's index.
const INDEX: usize = 8;
/// Headroom the PMDs leave (`RTE_PKTMBUF_HEADROOM` in Debian's build).
const PMD_HEADROOM: usize = 128;
/// Extra headroom in the private area, in front of the buffer.
const EXTRA: usize = MIN_HEADROOM - PMD_HEADROOM;
/// The buffer: PMD headroom, then room for a frame and its tailroom, at
/// least DPDK's default 2048 bytes (`RTE_MBUF_DEFAULT_DATAROOM`: drivers
/// size their receive buffers by it, net_af_packet's 2048-byte ring frames
/// need it).
const DATA_ROOM: usize = PMD_HEADROOM + max(2048, (MAX_FRAME + MIN_TAILROOM + 63) & !63);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}
/// `RTE_ETH_RSS_*` flow types hashed with several queues: IPv4 and IPv6,
/// fragments, TCP, UDP and other (bits 2-5, 7-11, 13 of rte_ethdev.h;
/// bindgen does not see through its RTE_BIT64 macros).
const RSS_IP_UDP_TCP: u64 = (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 13);
/// Largest burst one call moves.
const BURST: usize = 64;

static EAL: OnceLock<Result<(), String>> = OnceLock::new();

/// Starts DPDK's EAL with these arguments (as on a DPDK command line,
/// without the program name), once per process: later calls return the
/// first call's result. Example for tests: `--in-memory --no-huge -m 256
/// --no-pci --vdev=net_ring0`.
pub fn init(args: &[String]) -> Result<(), String> {
    EAL.get_or_init(|| {
        let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("sluice-dp").map_err(|e| e.to_string())?);
        for a in args {
            owned.push(CString::new(a.as_str()).map_err(|e| format!("EAL argument {a:?}: {e}"))?);
        }
        let mut argv: Vec<*mut std::os::raw::c_char> =
            owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len()).map_err(|e| e.to_string())?;
        // SAFETY: argv points at NUL-terminated strings that outlive the
        // call (`owned`); the EAL may permute argv's pointers, not the
        // strings. Called once per process (OnceLock).
        let r = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if r < 0 {
            return Err(format!(
                "rte_eal_init({}): {}",
                args.join(" "),
                last_error()
            ));
        }
        Ok(())
    })
    .clone()
}

/// Whether hugepages are available (a hugetlbfs mount and free pages):
/// without them the EAL is started with `--no-huge`.
pub fn hugepages_available() -> bool {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    let free = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Free:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    mounted && free > 0
}

fn last_error() -> String {
    // SAFETY: rte_errno is thread-local; rte_strerror returns a pointer to
    // a static or thread-local string valid until the next call.
    unsafe {
        let e = sys::sluice_errno();
        let s = sys::rte_strerror(e);
        if s.is_null() {
            format!("DPDK error {e}")
        } else {
            std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned()
        }
    }
}

/// Makes the calling thread an EAL thread (mempool caches work per lcore);
/// harmless when it is one already.
pub fn register_thread() {
    // SAFETY: no preconditions; registering twice is a no-op.
    unsafe {
        sys::rte_thread_register();
    }
}

/// Packet mempools with indexed mbufs: one per NUMA socket served, indexed
/// as one pool, so that an mbuf of any of them may be received on one port
/// and sent or freed on another (it goes back to its own mempool).
pub struct Pool {
    /// (NUMA socket, mempool), the first serving any socket not listed.
    mps: Vec<(i32, *mut sys::rte_mempool)>,
    /// Every mbuf of every mempool, by index (the one in its private area),
    /// with its chunk (start of the extra headroom, length): fixed for the
    /// pool's life, so the fast path reads them here, not through FFI.
    slots: Vec<Slot>,
    /// Offset of the private area (the index) from the mbuf's address.
    priv_off: usize,
}

// SAFETY: a DPDK mempool is made for concurrent use from several threads
// (lock-free rings, per-lcore caches); the index table is never written
// after construction.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

unsafe extern "C" fn index_mbuf(
    _mp: *mut sys::rte_mempool,
    opaque: *mut std::os::raw::c_void,
    obj: *mut std::os::raw::c_void,
    idx: std::os::raw::c_uint,
) {
    // SAFETY: called by rte_mempool_obj_iter for each object of a packet
    // mempool (an rte_mbuf with a private area of at least INDEX bytes);
    // `opaque` is the Indexing that Pool::per_socket passed, alive during
    // the call.
    unsafe {
        let ix = &mut *opaque.cast::<Indexing>();
        let m = obj.cast::<sys::rte_mbuf>();
        let i = ix.base + idx as usize;
        let priv_ = sys::sluice_mbuf_priv(m).cast::<u64>();
        priv_.write_unaligned(i as u64);
        if let Some(slot) = ix.table.get_mut(i) {
            *slot = m;
        }
    }
}

/// One mbuf of a pool and its chunk (the extra headroom, then the buffer).
#[derive(Clone, Copy)]
struct Slot {
    mbuf: *mut sys::rte_mbuf,
    chunk: *mut u8,
    chunk_len: usize,
}

/// What index_mbuf fills in: the whole table, from `base` for this mempool.
struct Indexing {
    table: Vec<*mut sys::rte_mbuf>,
    base: usize,
}

impl Pool {
    /// `n` mbufs on NUMA socket `socket` (-1: any), with a per-lcore cache.
    pub fn new(name: &str, n: u32, socket: i32) -> Result<Arc<Pool>, String> {
        Pool::per_socket(name, n, &[socket])
    }

    /// A mempool of `n` mbufs on each NUMA socket of `sockets` (-1: any;
    /// repeats ignored), each with a per-lcore cache. A port receives into
    /// the mempool of its own socket, so packets land in local memory; a
    /// port on a socket not listed uses the first. A socket without memory
    /// for its mempool gets one anywhere.
    pub fn per_socket(name: &str, n: u32, sockets: &[i32]) -> Result<Arc<Pool>, String> {
        init_done()?;
        let mut wanted: Vec<i32> = Vec::new();
        for &s in sockets {
            if !wanted.contains(&s) {
                wanted.push(s);
            }
        }
        if wanted.is_empty() {
            wanted.push(-1);
        }
        let mut pool = Pool {
            mps: Vec::new(),
            slots: Vec::new(),
            priv_off: 0,
        };
        let mut ix = Indexing {
            table: vec![std::ptr::null_mut(); n as usize * wanted.len()],
            base: 0,
        };
        for &socket in &wanted {
            let full = if wanted.len() == 1 {
                name.to_string()
            } else if socket < 0 {
                format!("{name}-any")
            } else {
                format!("{name}-s{socket}")
            };
            let cname = CString::new(full.as_str()).map_err(|e| e.to_string())?;
            let create = |on: i32| {
                // SAFETY: the EAL is initialised; the arguments are plain
                // values and a NUL-terminated name.
                unsafe {
                    sys::rte_pktmbuf_pool_create(
                        cname.as_ptr(),
                        n,
                        256.min(n / 4),
                        (INDEX + EXTRA) as u16,
                        DATA_ROOM as u16,
                        on,
                    )
                }
            };
            let mut mp = create(socket);
            if mp.is_null() && socket >= 0 {
                // No memory on that socket (--no-huge keeps it all on
                // socket 0; --socket-mem may leave a node out): anywhere
                // rather than not at all.
                mp = create(-1);
            }
            if mp.is_null() {
                return Err(format!(
                    "mempool {full} ({n} mbufs, socket {socket}): {}",
                    last_error()
                ));
            }
            // Owned from here: dropping `pool` on an error frees it.
            pool.mps.push((socket, mp));
            // SAFETY: mp is a packet mempool just created (no mbuf handed
            // out yet); the callback writes each mbuf's private area and its
            // slot of the table, from ix.base.
            let seen = unsafe {
                sys::rte_mempool_obj_iter(mp, Some(index_mbuf), (&mut ix as *mut Indexing).cast())
            };
            if seen != n {
                return Err(format!("mempool {full}: indexed {seen} of {n} mbufs"));
            }
            ix.base += n as usize;
        }
        if ix.table.iter().any(|m| m.is_null()) {
            return Err(format!("mempool {name}: not every mbuf indexed"));
        }
        pool.slots = ix
            .table
            .iter()
            .map(|&mbuf| {
                let mut len = 0u16;
                // SAFETY: mbuf is one of a new pool; buf_addr and buf_len
                // never change for a direct mbuf of our own.
                let buf = unsafe { sys::sluice_mbuf_buf(mbuf, &mut len) }.cast::<u8>();
                Slot {
                    mbuf,
                    chunk: buf.wrapping_sub(EXTRA),
                    chunk_len: EXTRA + usize::from(len),
                }
            })
            .collect();
        let first = ix.table[0];
        // SAFETY: as above; the private area's place is the same in every
        // mbuf of these pools (same private size).
        pool.priv_off = unsafe { sys::sluice_mbuf_priv(first) } as usize - first as usize;
        Ok(Arc::new(pool))
    }

    /// Mbufs in the pool (not handed out), caches included.
    pub fn available(&self) -> u32 {
        self.mps
            .iter()
            // SAFETY: each mp is a live mempool.
            .map(|&(_, mp)| unsafe { sys::rte_mempool_avail_count(mp) })
            .fold(0u32, u32::saturating_add)
    }

    /// Mbufs in all.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The NUMA sockets with a mempool of their own (-1: any).
    pub fn sockets(&self) -> Vec<i32> {
        self.mps.iter().map(|&(s, _)| s).collect()
    }

    /// The mempool for `socket`: its own, else the first.
    fn mempool_for(&self, socket: i32) -> *mut sys::rte_mempool {
        self.mps
            .iter()
            .find(|&&(s, _)| s == socket)
            .or(self.mps.first())
            .map_or(std::ptr::null_mut(), |&(_, mp)| mp)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for &(_, mp) in &self.mps {
            // SAFETY: no DpdkIo holds the pool any more (they hold an Arc)
            // and ports using it must be stopped by their owner first; a
            // pool of a port still running is leaked rather than freed (see
            // Port).
            unsafe { sys::rte_mempool_free(mp) };
        }
    }
}

/// The NUMA socket of the DPDK port `name` (-1 if the device does not say).
pub fn port_socket(name: &str) -> Result<i32, String> {
    Ok(socket_of(port_id(name)?))
}

fn socket_of(id: u16) -> i32 {
    // SAFETY: plain query on a probed port id.
    unsafe { sys::rte_eth_dev_socket_id(id) }
}

fn port_id(name: &str) -> Result<u16, String> {
    init_done()?;
    let cname = CString::new(name).map_err(|e| e.to_string())?;
    let mut id = 0u16;
    // SAFETY: EAL initialised; cname is NUL-terminated; id is writable.
    if unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } != 0 {
        return Err(format!(
            "no DPDK port {name:?} (is its --vdev or PCI device given?)"
        ));
    }
    Ok(id)
}

fn init_done() -> Result<(), String> {
    match EAL.get() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(e.clone()),
        None => Err("the DPDK EAL is not initialised (sluice_io::dpdk::init)".into()),
    }
}

/// A started ethdev port.
pub struct Port {
    id: u16,
    name: String,
    queues: u16,
    // Received packets land in this pool: it lives as long as the port.
    _pool: Arc<Pool>,
}

impl Port {
    /// The port named `name` (a vdev such as `net_ring0`, or a PCI
    /// address), with `queues` RX and TX queues receiving into `pool`,
    /// promiscuous, started.
    pub fn start(name: &str, queues: u16, pool: &Arc<Pool>) -> Result<Port, String> {
        Port::start_with_mac(name, queues, pool, None)
    }

    /// Like [`Port::start`], giving the port MAC address `mac` first (a
    /// TAP takes its DPDK port's address, so the kernel answers ARP and ND
    /// with the address the wire sees).
    pub fn start_with_mac(
        name: &str,
        queues: u16,
        pool: &Arc<Pool>,
        mac: Option<[u8; 6]>,
    ) -> Result<Port, String> {
        let id = port_id(name)?;
        let mut conf = sys::rte_eth_conf::default();
        if queues > 1 {
            // Several queues: spread flows over them with RSS, on the IP
            // addresses and UDP/TCP ports, as far as the device hashes them.
            let mut info = sys::rte_eth_dev_info::default();
            // SAFETY: id names a probed port; info is writable.
            if unsafe { sys::rte_eth_dev_info_get(id, &mut info) } == 0 {
                let hf = RSS_IP_UDP_TCP & info.flow_type_rss_offloads;
                if hf != 0 {
                    conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                    conf.rx_adv_conf.rss_conf.rss_hf = hf;
                }
            }
        }
        // SAFETY: id names a probed port; conf is a zeroed (default)
        // configuration, RSS aside, that outlives the call.
        let r = unsafe { sys::rte_eth_dev_configure(id, queues, queues, &conf) };
        if r != 0 {
            return Err(format!("{name}: configure {queues} queue(s): error {r}"));
        }
        let numa = socket_of(id);
        // Received packets land in the mempool of the port's own socket.
        let mp = pool.mempool_for(numa);
        let socket = u32::try_from(numa).unwrap_or(0);
        for q in 0..queues {
            // SAFETY: the port is configured with `queues` queues; null
            // queue configurations select the driver's defaults; the pool
            // outlives the port (the Port holds it).
            let r =
                unsafe { sys::rte_eth_rx_queue_setup(id, q, 1024, socket, std::ptr::null(), mp) };
            if r != 0 {
                return Err(format!("{name}: RX queue {q}: error {r}"));
            }
            // SAFETY: as above.
            let r = unsafe { sys::rte_eth_tx_queue_setup(id, q, 1024, socket, std::ptr::null()) };
            if r != 0 {
                return Err(format!("{name}: TX queue {q}: error {r}"));
            }
        }
        if let Some(mac) = mac {
            let mut a = sys::rte_ether_addr { addr_bytes: mac };
            // SAFETY: configured port; a outlives the call.
            let r = unsafe { sys::rte_eth_dev_default_mac_addr_set(id, &mut a) };
            if r != 0 {
                return Err(format!("{name}: set MAC address: error {r}"));
            }
        }
        // SAFETY: configured port.
        let r = unsafe { sys::rte_eth_dev_start(id) };
        if r != 0 {
            return Err(format!("{name}: start: error {r}"));
        }
        // SAFETY: started port; failure (unsupported) is harmless.
        unsafe { sys::rte_eth_promiscuous_enable(id) };
        Ok(Port {
            id,
            name: name.to_string(),
            queues,
            _pool: pool.clone(),
        })
    }

    /// The ethdev port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues configured.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: a is writable; the port exists.
        unsafe { sys::rte_eth_macaddr_get(self.id, &mut a) };
        a.addr_bytes
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the port was started by us; stopping it returns the mbufs
        // its queues hold to the pool before the pool can go.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
        }
    }
}

/// One worker's queue on each of its ports.
pub struct DpdkIo {
    pool: Arc<Pool>,
    /// The mempool `alloc` takes from: the worker's NUMA socket's.
    mp: *mut sys::rte_mempool,
    /// (port id, queue) per port index.
    ports: Vec<(u16, u16)>,
    /// Per mbuf index: handed out by this instance (the caller's).
    owned: Vec<bool>,
    /// Per mbuf index, a bit: lent by the current chunks_mut call (clear
    /// between calls). Catches a descriptor given twice in one call.
    lent: Vec<u64>,
    stats: Vec<PortStats>,
    /// Per port: frames received that could not be used (chained across
    /// buffers, or not from our pool), dropped.
    unusable: Vec<u64>,
    scratch: [*mut sys::rte_mbuf; BURST],
    info: [sys::sluice_pkt; BURST],
    tx_off: [u16; BURST],
    tx_len: [u16; BURST],
}

impl DpdkIo {
    /// Queue `queue` of each port, mbufs from `pool`. Call it on the worker
    /// thread (it registers the thread with the EAL; a DpdkIo is not Send).
    /// Mbufs it allocates come from the mempool of the thread's NUMA
    /// socket.
    pub fn new(pool: &Arc<Pool>, ports: &[&Port], queue: u16) -> Result<DpdkIo, String> {
        init_done()?;
        register_thread();
        // SAFETY: plain query, for the thread just registered.
        let socket = unsafe { sys::sluice_socket_id() };
        DpdkIo::on_socket(pool, ports, queue, i32::try_from(socket).unwrap_or(-1))
    }

    /// Like [`DpdkIo::new`], allocating from the mempool of NUMA socket
    /// `socket` (-1: any; the pool's first if it has none there).
    pub fn on_socket(
        pool: &Arc<Pool>,
        ports: &[&Port],
        queue: u16,
        socket: i32,
    ) -> Result<DpdkIo, String> {
        init_done()?;
        if let Some(p) = ports.iter().find(|p| queue >= p.queues) {
            return Err(format!("{}: no queue {queue}", p.name));
        }
        register_thread();
        Ok(DpdkIo {
            pool: pool.clone(),
            mp: pool.mempool_for(socket),
            ports: ports.iter().map(|p| (p.id, queue)).collect(),
            owned: vec![false; pool.size()],
            lent: vec![0; pool.size().div_ceil(64)],
            stats: vec![PortStats::default(); ports.len()],
            unusable: vec![0; ports.len()],
            scratch: [std::ptr::null_mut(); BURST],
            info: [sys::sluice_pkt::default(); BURST],
            tx_off: [0; BURST],
            tx_len: [0; BURST],
        })
    }

    /// The mbuf of `d` if the caller owns it.
    fn mbuf(&self, d: Desc) -> Option<*mut sys::rte_mbuf> {
        self.owned_slot(d).map(|s| s.mbuf)
    }

    /// The slot of `d`'s mbuf if the caller owns it.
    fn owned_slot(&self, d: Desc) -> Option<Slot> {
        let i = usize::try_from(d.addr).ok()?;
        if *self.owned.get(i)? {
            self.pool.slots.get(i).copied()
        } else {
            None
        }
    }

    /// Marks mbuf `i` lent for the current call: false if it already was
    /// (the same descriptor twice) or names no mbuf.
    fn lend(&mut self, i: usize) -> bool {
        let Some(w) = self.lent.get_mut(i / 64) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        let fresh = *w & bit == 0;
        *w |= bit;
        fresh
    }

    /// Ends a call's lending: clears the bitmap words of `ds`, which hold
    /// every bit set during the call (so it is all clear between calls).
    fn end_lending(&mut self, ds: &[Desc]) {
        for d in ds {
            if let Some(w) = usize::try_from(d.addr)
                .ok()
                .and_then(|i| self.lent.get_mut(i / 64))
            {
                *w = 0;
            }
        }
    }

    fn index_of(&self, m: *mut sys::rte_mbuf) -> usize {
        // SAFETY: m is an mbuf of a pool made by Pool::new, whose private
        // area (at priv_off) starts with the index.
        unsafe {
            m.cast::<u8>()
                .add(self.pool.priv_off)
                .cast::<u64>()
                .read_unaligned() as usize
        }
    }

    /// The chunk of the mbuf with index `i`: the extra headroom, then the
    /// buffer.
    ///
    /// # Safety
    /// `i` names one of this pool's mbufs, owned by the caller of this
    /// instance (not in the NIC's or another worker's hands), and no other
    /// reference to its chunk exists.
    unsafe fn chunk_of<'a>(&self, i: usize) -> &'a mut [u8] {
        match self.pool.slots.get(i).map(|s| (s.chunk, s.chunk_len)) {
            // SAFETY: per the function's contract; the chunk lies in the
            // pool's memory, alive as long as self holds the pool.
            Some((p, len)) => unsafe { std::slice::from_raw_parts_mut(p, len) },
            None => &mut [],
        }
    }
}

impl PacketIo for DpdkIo {
    fn ports(&self) -> usize {
        self.ports.len()
    }

    fn chunk_size(&self) -> usize {
        EXTRA + DATA_ROOM
    }

    fn rx_burst(&mut self, port: usize, out: &mut [Desc]) -> usize {
        let Some(&(id, q)) = self.ports.get(port) else {
            return 0;
        };
        let want = out.len().min(BURST) as u16;
        // SAFETY: scratch and info have room for BURST entries; the port
        // and queue were set up by Port::start.
        let n = unsafe {
            sys::sluice_rx_burst_pkts(
                id,
                q,
                self.scratch.as_mut_ptr(),
                self.info.as_mut_ptr(),
                want,
            )
        };
        let n = usize::from(n);
        let (mut k, mut bytes, mut unusable) = (0usize, 0u64, 0u64);
        for j in 0..n {
            let (m, p) = (self.scratch[j], self.info[j]);
            let i = p.index as usize;
            let len = p.len;
            if p.segs != 1
                || i >= self.owned.len()
                || self.pool.slots.get(i).map(|s| s.mbuf) != Some(m)
            {
                // Chained (a frame larger than one buffer) or not from our
                // pool: dropped, counted.
                // SAFETY: just received: ours to free.
                unsafe { sys::sluice_pktmbuf_free(m) };
                unusable += 1;
                continue;
            }
            let mut off = usize::from(p.off);
            if off < PMD_HEADROOM {
                // Less headroom than the contract promises (a loopback PMD
                // hands back the mbuf as it was sent): move the packet up.
                // SAFETY: m (index i) is ours: just received, not yet
                // handed out.
                let c = unsafe { self.chunk_of(i) };
                let to = EXTRA + PMD_HEADROOM;
                if to + usize::from(len) + MIN_TAILROOM > c.len() {
                    // SAFETY: ours to free.
                    unsafe { sys::sluice_pktmbuf_free(m) };
                    unusable += 1;
                    continue;
                }
                c.copy_within(EXTRA + off..EXTRA + off + usize::from(len), to);
                // SAFETY: ours; the packet now sits at PMD_HEADROOM.
                unsafe { sys::sluice_mbuf_reset_to(m, PMD_HEADROOM as u16, len) };
                off = PMD_HEADROOM;
            }
            let Some(o) = out.get_mut(k) else {
                // Cannot happen (n <= out.len()); never leak the mbuf.
                // SAFETY: ours to free.
                unsafe { sys::sluice_pktmbuf_free(m) };
                continue;
            };
            *o = Desc {
                addr: i as u64,
                off: (EXTRA + off) as u32,
                len: u32::from(len),
            };
            k += 1;
            self.owned[i] = true;
            bytes += u64::from(len);
        }
        if let Some(s) = self.stats.get_mut(port) {
            s.rx_packets += k as u64;
            s.rx_bytes += bytes;
        }
        if let Some(u) = self.unusable.get_mut(port) {
            *u += unusable;
        }
        k
    }

    fn tx_burst(&mut self, port: usize, pkts: &[Desc]) -> usize {
        let Some(&(id, q)) = self.ports.get(port) else {
            return 0;
        };
        let mut k = 0usize;
        let mut bytes = 0u64;
        // Packets moved out of the private area (bit per burst position).
        let mut moved = 0u64;
        for d in pkts.iter().take(BURST) {
            let Some(slot) = self.owned_slot(*d) else {
                break;
            };
            // The same mbuf twice in one burst would be sent (and freed by
            // the PMD) twice: the burst stops at the second.
            if !self.lend(d.addr as usize) {
                break;
            }
            let (off, len) = (d.off as usize, d.len as usize);
            if len == 0 || off + len > slot.chunk_len {
                break;
            }
            let data_off = if off >= EXTRA {
                off - EXTRA
            } else {
                // Starts in the private area: move it to the buffer's start.
                // SAFETY: m is owned by the caller; no other view exists
                // while &mut self is held.
                let c = unsafe { self.chunk_of(d.addr as usize) };
                if EXTRA + len > c.len() {
                    break;
                }
                c.copy_within(off..off + len, EXTRA);
                moved |= 1 << k;
                0
            };
            self.scratch[k] = slot.mbuf;
            // Both fit u16: the chunk (buffer) is smaller than 64 KiB.
            self.tx_off[k] = data_off as u16;
            self.tx_len[k] = len as u16;
            k += 1;
            bytes += len as u64;
        }
        // Every packet looked at, sent or not, is among the first k + 1.
        self.end_lending(&pkts[..pkts.len().min(k + 1)]);
        if k == 0 {
            return 0;
        }
        // SAFETY: scratch[..k] are mbufs the caller handed over, with
        // offsets and lengths that fit their buffers, each single-segment
        // (chained frames are dropped on receive, allocated ones are reset);
        // the PMD takes a prefix, freeing them when sent.
        let sent = usize::from(unsafe {
            sys::sluice_tx_burst_pkts(
                id,
                q,
                self.scratch.as_mut_ptr(),
                self.tx_off.as_ptr(),
                self.tx_len.as_ptr(),
                k as u16,
            )
        });
        for (d, _) in pkts.iter().zip(0..sent) {
            if let Some(o) = self.owned.get_mut(d.addr as usize) {
                *o = false;
            }
        }
        // What the queue did not take stays the caller's as described by
        // its descriptor: a packet moved above goes back where it was.
        for (j, d) in pkts.iter().enumerate().take(k).skip(sent) {
            if moved & (1 << j) != 0 {
                let (off, len) = (d.off as usize, d.len as usize);
                // SAFETY: not sent, so still the caller's mbuf; no other
                // view exists while &mut self is held.
                let c = unsafe { self.chunk_of(d.addr as usize) };
                c.copy_within(EXTRA..EXTRA + len, off);
            }
        }
        if let Some(s) = self.stats.get_mut(port) {
            s.tx_packets += sent as u64;
            if sent == k {
                s.tx_bytes += bytes;
            } else {
                s.tx_bytes += pkts
                    .iter()
                    .take(sent)
                    .map(|d| u64::from(d.len))
                    .sum::<u64>();
                s.tx_ring_full += (k - sent) as u64;
            }
        }
        sent
    }

    fn free(&mut self, pkts: &[Desc]) {
        for chunk in pkts.chunks(BURST) {
            let mut k = 0;
            for d in chunk {
                if let Some(m) = self.mbuf(*d) {
                    self.owned[d.addr as usize] = false;
                    self.scratch[k] = m;
                    k += 1;
                }
            }
            // SAFETY: scratch[..k] were owned by the caller until now, each
            // once (owned cleared as it was taken), and are not referenced
            // again.
            unsafe { sys::sluice_pktmbuf_free_bulk(self.scratch.as_mut_ptr(), k as u32) };
        }
    }

    fn alloc(&mut self) -> Option<Desc> {
        // SAFETY: the pool is live.
        let m = unsafe { sys::sluice_pktmbuf_alloc(self.mp) };
        if m.is_null() {
            for s in &mut self.stats {
                s.rx_no_buffer += 1;
            }
            return None;
        }
        let i = self.index_of(m);
        if self.pool.slots.get(i).map(|s| s.mbuf) != Some(m) {
            // SAFETY: allocated just now.
            unsafe { sys::sluice_pktmbuf_free(m) };
            return None;
        }
        self.owned[i] = true;
        Some(Desc {
            addr: i as u64,
            off: MIN_HEADROOM as u32,
            len: 0,
        })
    }

    fn chunk_mut(&mut self, d: Desc) -> &mut [u8] {
        match self.mbuf(d) {
            // SAFETY: owned by the caller; &mut self makes this the only
            // view handed out.
            Some(_) => unsafe { self.chunk_of(d.addr as usize) },
            None => &mut [],
        }
    }

    fn chunks_mut<'a>(&'a mut self, ds: &[Desc], out: &mut [Option<&'a mut [u8]>]) {
        for (d, o) in ds.iter().zip(out.iter_mut()) {
            *o = None;
            let Some(slot) = self.owned_slot(*d) else {
                continue;
            };
            if !self.lend(d.addr as usize) {
                continue;
            }
            // SAFETY: owned by the caller and distinct from every other
            // chunk handed out in this call (the lent bit); the chunk lies
            // in the pool's memory, alive while self holds the pool, and is
            // tied to the &'a mut self borrow.
            *o = Some(unsafe { std::slice::from_raw_parts_mut(slot.chunk, slot.chunk_len) });
        }
        self.end_lending(&ds[..ds.len().min(out.len())]);
    }

    fn service(&mut self) {
        // DPDK PMDs reap TX completions inside tx_burst and refill RX
        // inside rx_burst: nothing to do per loop.
    }

    fn stats(&self, port: usize) -> PortStats {
        self.stats.get(port).copied().unwrap_or_default()
    }

    fn io_drops(&self, port: usize) -> IoDrops {
        // This queue's own drops (unusable frames), plus the port's
        // counters, which are the port's, not the queue's: only queue 0's
        // worker reports those, so several workers do not add them up twice.
        let own = IoDrops {
            rx_dropped: self.unusable.get(port).copied().unwrap_or(0),
            ..IoDrops::default()
        };
        let Some(&(id, 0)) = self.ports.get(port) else {
            return own;
        };
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: s is writable; the port exists.
        if unsafe { sys::rte_eth_stats_get(id, &mut s) } != 0 {
            return own;
        }
        IoDrops {
            rx_dropped: own.rx_dropped + s.ierrors,
            rx_ring_full: s.imissed,
            rx_fill_empty: s.rx_nombuf,
            tx_invalid: s.oerrors,
        }
    }
}

impl Drop for DpdkIo {
    fn drop(&mut self) {
        for (i, o) in self.owned.iter_mut().enumerate() {
            if *o {
                *o = false;
                if let Some(m) = self.pool.slots.get(i).map(|s| s.mbuf) {
                    // SAFETY: handed out by us and never returned: ours to
                    // free, once.
                    unsafe { sys::sluice_pktmbuf_free(m) };
                }
            }
        }
    }
}
