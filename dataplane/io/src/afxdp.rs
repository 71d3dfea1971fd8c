//! The AF_XDP backend of [`PacketIo`], over `libc` only.
//!
//! One [`AfXdp`] instance serves one worker: one AF_XDP socket per port (an
//! interface and one of its queues), all sharing ONE UMEM. The first socket
//! registers the UMEM; the others bind with `XDP_SHARED_UMEM`, each with its
//! own fill and completion ring (they sit on other netdevs or queues, which
//! Linux supports since 5.10). So a chunk received on port 0 can be put on
//! port 1's TX ring as it is: forwarding between the ports of a worker never
//! copies a packet in user space.
//!
//! Chunks are [`CHUNK_SIZE`] bytes ("aligned" UMEM mode). A [`Desc`] names a
//! chunk by its UMEM offset (`addr`, a multiple of [`CHUNK_SIZE`]) and the
//! packet by its offset in the chunk (`off`); the kernel's descriptors carry
//! the sum (see [`split_addr`]). The UMEM `headroom` is 0: the kernel puts a
//! received frame `XDP_PACKET_HEADROOM` (256) bytes into its chunk, which is
//! exactly [`MIN_HEADROOM`].
//!
//! Every chunk is in exactly one place: the instance's free stack, a fill
//! ring, the kernel (being received into or sent from), an RX ring, the
//! caller's hands, a TX ring or a completion ring. [`PacketIo::service`]
//! moves completed chunks back to the stack and tops the fill rings up from
//! it, to at most [`AfXdp::fill_target`] chunks per port, which leaves at
//! least half of the pool for packets in flight (held by the worker, queued
//! for TX) and for [`PacketIo::alloc`].
//!
//! Wake-ups: the sockets bind with `XDP_USE_NEED_WAKEUP`, and `service`
//! makes a system call only when the kernel sets the ring's need-wakeup flag:
//! `sendto` for a TX ring that got packets since its last kick, `recvfrom`
//! for a fill ring. In copy mode the kernel transmits only inside that
//! `sendto` (at most 32 frames per call; it answers `EAGAIN` when more are
//! left), so `service` repeats the call, reaping completions in between, a
//! bounded number of times.

use crate::{Desc, PacketIo, PortStats, MIN_HEADROOM};
use std::ffi::CString;
use std::fmt;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// Size of every UMEM chunk (and so of [`PacketIo::chunk_size`]).
pub const CHUNK_SIZE: usize = 4096;

/// `XDP_PACKET_HEADROOM`: where the kernel puts a received frame in a chunk
/// when the UMEM headroom is 0.
const XDP_PACKET_HEADROOM: usize = 256;

// The kernel's placement of received frames gives the headroom the buffer
// contract promises, and an MTU-sized frame still leaves the tailroom.
const _: () = assert!(XDP_PACKET_HEADROOM >= MIN_HEADROOM);
const _: () = assert!(CHUNK_SIZE - XDP_PACKET_HEADROOM >= crate::MAX_FRAME + crate::MIN_TAILROOM);
const _: () = assert!(CHUNK_SIZE.is_power_of_two());

/// Frames the kernel's copy-mode transmit path sends per `sendto` before it
/// answers `EAGAIN` (`TX_BATCH_SIZE` in `net/xdp/xsk.c`); sizes the bounded
/// kick loop in [`PacketIo::service`].
const COPY_TX_BATCH: u32 = 32;

/// Splits an address from a kernel descriptor (UMEM offset of the packet's
/// first byte) into the chunk's UMEM offset and the packet's offset in it.
pub const fn split_addr(addr: u64) -> (u64, u32) {
    let base = addr & !(CHUNK_SIZE as u64 - 1);
    // The remainder is below CHUNK_SIZE, so it fits a u32.
    (base, (addr - base) as u32)
}

/// One port of a worker: an interface and one of its queues.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// Interface name, in the calling thread's network namespace.
    pub ifname: String,
    /// Queue id on that interface.
    pub queue: u32,
}

impl PortSpec {
    /// Port `ifname` queue `queue`.
    pub fn new(ifname: impl Into<String>, queue: u32) -> PortSpec {
        PortSpec {
            ifname: ifname.into(),
            queue,
        }
    }
}

/// Which data path to ask the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BindMode {
    /// Zero-copy if every port's driver supports it, else copy mode.
    #[default]
    Auto,
    /// Copy mode (`XDP_COPY`): works on any interface, veth included.
    Copy,
    /// Zero-copy (`XDP_ZEROCOPY`): fails where the driver lacks support.
    ZeroCopy,
}

/// The data path the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The kernel copies frames between its buffers and the UMEM.
    Copy,
    /// The NIC reads and writes the UMEM directly.
    ZeroCopy,
}

/// Sizes and mode of an [`AfXdp`] instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// Number of [`CHUNK_SIZE`] chunks in the UMEM (shared by all ports).
    pub chunks: u32,
    /// RX ring entries per port (a power of two).
    pub rx_ring: u32,
    /// TX ring entries per port (a power of two).
    pub tx_ring: u32,
    /// Fill ring entries per port (a power of two).
    pub fill_ring: u32,
    /// Completion ring entries per port (a power of two).
    pub completion_ring: u32,
    /// Copy, zero-copy, or zero-copy with a fall-back to copy.
    pub bind: BindMode,
}

impl Default for AfXdpConfig {
    /// 4096 chunks (16 MiB), rings of 2048, [`BindMode::Auto`].
    fn default() -> AfXdpConfig {
        AfXdpConfig {
            chunks: 4096,
            rx_ring: 2048,
            tx_ring: 2048,
            fill_ring: 2048,
            completion_ring: 2048,
            bind: BindMode::Auto,
        }
    }
}

/// Counters the kernel keeps per socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames dropped for reasons other than a full RX ring or an empty fill ring.
    pub rx_dropped: u64,
    /// Invalid descriptors found on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors found on the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty_descs: u64,
}

/// Errors from setting up AF_XDP sockets.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    Syscall {
        /// The call, with the option or flag concerned (`bind(XDP_COPY)`).
        call: &'static str,
        /// The interface of the port being set up.
        ifname: String,
        /// Its queue.
        queue: u32,
        /// `errno`.
        errno: i32,
    },
    /// No interface with this name in the calling thread's network namespace.
    UnknownInterface(String),
    /// The same interface and queue twice in one instance.
    DuplicatePort {
        /// Interface name.
        ifname: String,
        /// Queue id.
        queue: u32,
    },
    /// The configuration cannot work; says which field and why.
    InvalidConfig(&'static str),
}

impl Error {
    /// The `errno` of a failed system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Syscall { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syscall {
                call,
                ifname,
                queue,
                errno,
            } => write!(
                f,
                "AF_XDP {call} failed on {ifname} queue {queue}: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            Self::UnknownInterface(name) => write!(f, "no network interface named `{name}`"),
            Self::DuplicatePort { ifname, queue } => write!(
                f,
                "{ifname} queue {queue} given twice: one socket per interface queue"
            ),
            Self::InvalidConfig(why) => write!(f, "invalid AF_XDP configuration: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// An anonymous private mapping (the UMEM), or a shared mapping of a
    /// socket's ring at `offset`.
    fn new(fd: Option<RawFd>, len: usize, offset: i64) -> io::Result<Mmap> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: asks for a fresh mapping at an address the kernel chooses;
        // no existing memory is touched. We own it until Drop unmaps it.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(addr.cast::<u8>())
            .map(|ptr| Mmap { ptr, len })
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and every
        // pointer into the mapping lives in a struct that owns this Mmap and
        // is being dropped with it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One of a socket's four rings, mapped from the kernel: a producer index, a
/// consumer index, a flags word and `size` descriptors of type `T` (`u64`
/// UMEM addresses for fill/completion, `xdp_desc` for RX/TX).
///
/// For the rings user space produces into (fill, TX) `cached_prod` is our
/// producer index and `cached_cons` the last kernel consumer index we read;
/// for the rings the kernel produces into (RX, completion) it is the other
/// way round.
#[derive(Debug)]
struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
    // Last: the pointers above point into it.
    _map: Mmap,
}

impl<T: Copy> Ring<T> {
    /// Maps the ring at page offset `pgoff` of socket `fd`, `size` entries,
    /// laid out as the kernel's `off` says.
    fn map(fd: RawFd, pgoff: i64, off: &libc::xdp_ring_offset, size: u32) -> io::Result<Ring<T>> {
        let desc_bytes = (size as usize)
            .checked_mul(size_of::<T>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let len = (off.desc as usize)
            .checked_add(desc_bytes)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let map = Mmap::new(Some(fd), len, pgoff)?;
        let word = |o: u64| -> io::Result<NonNull<AtomicU32>> {
            if o as usize + size_of::<u32>() > len || o % 4 != 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            // SAFETY: `o` + 4 is inside the mapping (checked above), so the
            // result stays inside the same allocation.
            Ok(unsafe { map.ptr.add(o as usize) }.cast())
        };
        let producer = word(off.producer)?;
        let consumer = word(off.consumer)?;
        let flags = word(off.flags)?;
        if off.desc as usize % std::mem::align_of::<T>() != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `desc` + size * sizeof(T) is the mapping's length, so the
        // descriptor array lies inside it.
        let descs = unsafe { map.ptr.add(off.desc as usize) }.cast::<T>();
        let mut ring = Ring {
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _map: map,
        };
        ring.cached_prod = ring.producer().load(Ordering::Acquire);
        ring.cached_cons = ring.consumer().load(Ordering::Acquire);
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points at a 4-byte aligned u32 inside the mapping (checked
        // in `map`), which lives as long as `self`; the kernel accesses it
        // atomically as well.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    /// Whether the kernel asks for a wake-up system call on this ring.
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // --- rings we produce into (fill, TX) ---

    /// Free slots, up to `want`; re-reads the kernel's consumer index only
    /// when the cached one shows too few.
    fn prod_free(&mut self, want: u32) -> u32 {
        let mut free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free < want {
            // Acquire: the kernel is done with the slots it released.
            self.cached_cons = self.consumer().load(Ordering::Acquire);
            free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        }
        free.min(want)
    }

    /// Entries produced that the kernel has not consumed yet.
    fn prod_outstanding(&mut self) -> u32 {
        self.cached_cons = self.consumer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes entry `i` past the producer index (`i` < a `prod_free` result).
    fn prod_write(&mut self, i: u32, value: T) {
        let index = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: index <= mask < size, inside the descriptor array; the slot
        // is free (callers stay below `prod_free`), so the kernel is not
        // reading it.
        unsafe { self.descs.as_ptr().add(index).write(value) };
    }

    /// Publishes `n` written entries to the kernel.
    fn prod_submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Release: the descriptors are written before the kernel sees them.
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    // --- rings the kernel produces into (RX, completion) ---

    /// Entries ready, up to `want`; re-reads the kernel's producer index
    /// only when the cached one shows too few.
    fn cons_ready(&mut self, want: u32) -> u32 {
        let mut ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready < want {
            // Acquire: the kernel wrote the entries before publishing them.
            self.cached_prod = self.producer().load(Ordering::Acquire);
            ready = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        ready.min(want)
    }

    /// Reads entry `i` past the consumer index (`i` < a `cons_ready` result).
    fn cons_read(&self, i: u32) -> T {
        let index = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: index <= mask < size, inside the descriptor array; the
        // kernel published the entry (Acquire in `cons_ready`) and does not
        // write it again until we release it.
        unsafe { self.descs.as_ptr().add(index).read() }
    }

    /// Hands `n` read entries back to the kernel.
    fn cons_release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: we are done reading the entries before the kernel reuses them.
        self.consumer().store(self.cached_cons, Ordering::Release);
    }
}

/// One socket and its rings. Field order is drop order: the rings are
/// unmapped before the socket closes.
#[derive(Debug)]
struct Port {
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    /// Packets went on the TX ring since the last kick.
    tx_queued: bool,
    stats: PortStats,
    spec: PortSpec,
    fd: OwnedFd,
}

/// The AF_XDP backend: one UMEM shared by one socket per port. See the
/// module documentation.
#[derive(Debug)]
pub struct AfXdp {
    // Sockets (and their ring mappings) go before the UMEM mapping.
    ports: Vec<Port>,
    /// Free chunks, as UMEM offsets.
    free: Vec<u64>,
    /// One bit per chunk: set while the chunk is on `free` (catches double
    /// frees, which would hand one chunk out twice).
    on_free: Vec<u64>,
    /// Scratch bits for `chunks_mut` (one per chunk; all clear between calls).
    lent: Vec<u64>,
    fill_target: u32,
    /// Where the next refill starts, so no port always goes first.
    refill_start: usize,
    mode: Mode,
    umem: Mmap,
}

// SAFETY: the raw pointers in an AfXdp point only into mappings this value
// owns (its UMEM and its sockets' rings), which the kernel shares with the
// sockets, not with a thread. Moving the whole instance to another thread
// moves sole access with it; AfXdp is not Sync, so `&AfXdp` never crosses.
unsafe impl Send for AfXdp {}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live T of the size passed; setsockopt only
    // reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt<T: Copy>(fd: RawFd, name: libc::c_int, value: &mut T) -> io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable T and `len` its size; the kernel
    // writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            name,
            ptr::from_mut(value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ifindex(ifname: &str) -> Result<u32, Error> {
    let name = CString::new(ifname).map_err(|_| Error::UnknownInterface(ifname.to_owned()))?;
    // SAFETY: `name` is a NUL-terminated string alive for the call, which
    // only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(Error::UnknownInterface(ifname.to_owned()))
    } else {
        Ok(index)
    }
}

fn check_ring(size: u32, what: &'static str) -> Result<(), Error> {
    if size.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::InvalidConfig(what))
    }
}

/// Puts chunk `addr` (a chunk base) on the free stack, unless it is no
/// chunk of a pool of `chunks` chunks or is there already.
fn push_free(free: &mut Vec<u64>, on_free: &mut [u64], chunks: usize, addr: u64) {
    let Ok(index) = usize::try_from(addr / CHUNK_SIZE as u64) else {
        return;
    };
    if index >= chunks {
        return;
    }
    if let Some(w) = on_free.get_mut(index / 64) {
        let bit = 1u64 << (index % 64);
        if *w & bit == 0 {
            *w |= bit;
            free.push(addr);
        }
    }
}

/// Whether a failed open in [`BindMode::Auto`] is worth retrying in copy mode.
fn bind_failed(e: &Error) -> bool {
    matches!(e, Error::Syscall { call, .. } if call.starts_with("bind"))
}

impl AfXdp {
    /// Opens one socket per port, sharing one UMEM, in the calling thread's
    /// network namespace, and fills the fill rings. Needs CAP_NET_RAW (and
    /// CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK for the UMEM) — root.
    ///
    /// Nothing is received until the caller puts each socket ([`AfXdp::fd`])
    /// into the XDP program's XSKMAP at its queue.
    pub fn open(ports: &[PortSpec], cfg: &AfXdpConfig) -> Result<AfXdp, Error> {
        match cfg.bind {
            BindMode::Copy => AfXdp::open_mode(ports, cfg, Mode::Copy),
            BindMode::ZeroCopy => AfXdp::open_mode(ports, cfg, Mode::ZeroCopy),
            BindMode::Auto => match AfXdp::open_mode(ports, cfg, Mode::ZeroCopy) {
                Err(e) if bind_failed(&e) => AfXdp::open_mode(ports, cfg, Mode::Copy),
                other => other,
            },
        }
    }

    fn open_mode(specs: &[PortSpec], cfg: &AfXdpConfig, mode: Mode) -> Result<AfXdp, Error> {
        if specs.is_empty() {
            return Err(Error::InvalidConfig("no ports"));
        }
        check_ring(cfg.rx_ring, "rx_ring must be a power of two")?;
        check_ring(cfg.tx_ring, "tx_ring must be a power of two")?;
        check_ring(cfg.fill_ring, "fill_ring must be a power of two")?;
        check_ring(
            cfg.completion_ring,
            "completion_ring must be a power of two",
        )?;
        if cfg.completion_ring < cfg.tx_ring {
            // Otherwise a full TX ring cannot complete without reaping mid-kick.
            return Err(Error::InvalidConfig(
                "completion_ring must be at least tx_ring",
            ));
        }
        for (i, s) in specs.iter().enumerate() {
            if specs[..i].contains(s) {
                return Err(Error::DuplicatePort {
                    ifname: s.ifname.clone(),
                    queue: s.queue,
                });
            }
        }
        let n_ports =
            u32::try_from(specs.len()).map_err(|_| Error::InvalidConfig("too many ports"))?;
        // Half the pool for the fill rings, half for packets in flight.
        let fill_target = (cfg.chunks / (2 * n_ports)).min(cfg.fill_ring);
        if fill_target == 0 {
            return Err(Error::InvalidConfig(
                "chunks must be at least twice the number of ports",
            ));
        }
        let umem_len = (cfg.chunks as usize)
            .checked_mul(CHUNK_SIZE)
            .ok_or(Error::InvalidConfig("chunks too large"))?;

        let first = &specs[0];
        let sys = |call: &'static str, spec: &PortSpec, e: io::Error| Error::Syscall {
            call,
            ifname: spec.ifname.clone(),
            queue: spec.queue,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        };
        let umem = Mmap::new(None, umem_len, 0).map_err(|e| sys("mmap(UMEM)", first, e))?;

        let mut ports: Vec<Port> = Vec::with_capacity(specs.len());
        for spec in specs {
            let index = ifindex(&spec.ifname)?;
            let port = open_socket(spec, index, cfg, &umem, ports.first(), mode)
                .map_err(|(call, e)| sys(call, spec, e))?;
            ports.push(port);
        }

        // What the kernel granted (a shared socket inherits the first's mode).
        let mut granted = Mode::Copy;
        if let Some(p) = ports.first() {
            let mut opts = libc::xdp_options { flags: 0 };
            getsockopt(p.fd.as_raw_fd(), libc::XDP_OPTIONS, &mut opts)
                .map_err(|e| sys("getsockopt(XDP_OPTIONS)", first, e))?;
            if opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
                granted = Mode::ZeroCopy;
            }
        }

        let chunks = cfg.chunks as usize;
        let mut io = AfXdp {
            ports,
            // Popped from the end: low addresses first.
            free: (0..cfg.chunks)
                .rev()
                .map(|i| u64::from(i) * CHUNK_SIZE as u64)
                .collect(),
            on_free: vec![u64::MAX; chunks.div_ceil(64)],
            lent: vec![0; chunks.div_ceil(64)],
            fill_target,
            refill_start: 0,
            mode: granted,
            umem,
        };
        // Bits past the last chunk stay clear.
        if chunks % 64 != 0 {
            if let Some(last) = io.on_free.last_mut() {
                *last = (1u64 << (chunks % 64)) - 1;
            }
        }
        io.refill();
        Ok(io)
    }

    /// The data path the kernel granted (for all ports: shared sockets
    /// inherit the first socket's).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The socket of `port`, to put into the XDP program's XSKMAP at the
    /// port's queue (`sluice_ebpf::Steering::set_xsk(queue, fd)`).
    pub fn fd(&self, port: usize) -> Option<BorrowedFd<'_>> {
        self.ports.get(port).map(|p| p.fd.as_fd())
    }

    /// The interface and queue of `port`.
    pub fn port_spec(&self, port: usize) -> Option<&PortSpec> {
        self.ports.get(port).map(|p| &p.spec)
    }

    /// Chunks in the UMEM.
    pub fn chunks(&self) -> usize {
        self.umem.len / CHUNK_SIZE
    }

    /// Chunks on the free stack (neither in a ring, nor in the kernel, nor
    /// held by the caller). With nothing in flight and the fill rings
    /// topped up this is `chunks() - ports() * fill_target()`: a leak check.
    pub fn free_chunks(&self) -> usize {
        self.free.len()
    }

    /// Chunks `service` keeps on each port's fill ring.
    pub fn fill_target(&self) -> u32 {
        self.fill_target
    }

    /// Chunks on `port`'s fill ring that the kernel has not taken yet.
    pub fn fill_level(&mut self, port: usize) -> u32 {
        self.ports
            .get_mut(port)
            .map_or(0, |p| p.fill.prod_outstanding())
    }

    /// The kernel's counters for `port`'s socket (`XDP_STATISTICS`).
    pub fn kernel_stats(&self, port: usize) -> Result<KernelStats, Error> {
        let p = self
            .ports
            .get(port)
            .ok_or(Error::InvalidConfig("no such port"))?;
        let mut s = libc::xdp_statistics {
            rx_dropped: 0,
            rx_invalid_descs: 0,
            tx_invalid_descs: 0,
            rx_ring_full: 0,
            rx_fill_ring_empty_descs: 0,
            tx_ring_empty_descs: 0,
        };
        getsockopt(p.fd.as_raw_fd(), libc::XDP_STATISTICS, &mut s).map_err(|e| Error::Syscall {
            call: "getsockopt(XDP_STATISTICS)",
            ifname: p.spec.ifname.clone(),
            queue: p.spec.queue,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })?;
        Ok(KernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Chunk index of `addr` if it is a chunk of this UMEM.
    fn chunk_index(&self, addr: u64) -> Option<usize> {
        let index = usize::try_from(addr / CHUNK_SIZE as u64).ok()?;
        (addr % CHUNK_SIZE as u64 == 0 && index < self.chunks()).then_some(index)
    }

    /// Moves `port`'s completed TX chunks to the free stack.
    fn reap(&mut self, port: usize) {
        let chunks = self.chunks();
        let Some(p) = self.ports.get_mut(port) else {
            return;
        };
        let n = p.completion.cons_ready(p.completion.size);
        for i in 0..n {
            let (base, _) = split_addr(p.completion.cons_read(i));
            push_free(&mut self.free, &mut self.on_free, chunks, base);
        }
        p.completion.cons_release(n);
    }

    /// Tops every fill ring up to `fill_target` from the free stack, and
    /// wakes the kernel where it asks for it.
    fn refill(&mut self) {
        let n_ports = self.ports.len();
        for k in 0..n_ports {
            let port = (self.refill_start + k) % n_ports;
            let Some(p) = self.ports.get_mut(port) else {
                continue;
            };
            let level = p.fill.prod_outstanding();
            let want = self.fill_target.saturating_sub(level);
            let room = p.fill.prod_free(want);
            let give = room.min(u32::try_from(self.free.len()).unwrap_or(u32::MAX));
            for i in 0..give {
                let Some(addr) = self.free.pop() else { break };
                let index = (addr / CHUNK_SIZE as u64) as usize;
                if let Some(w) = self.on_free.get_mut(index / 64) {
                    *w &= !(1u64 << (index % 64));
                }
                p.fill.prod_write(i, addr);
            }
            if give > 0 {
                p.fill.prod_submit(give);
            }
            if give < want {
                p.stats.rx_no_buffer += 1;
            }
            // The producer store above must be visible before the flag is read.
            fence(Ordering::SeqCst);
            if level + give > 0 && p.fill.needs_wakeup() {
                // SAFETY: a zero-length, non-blocking recvfrom on our own
                // socket with no buffers: it only wakes the driver.
                unsafe {
                    libc::recvfrom(
                        p.fd.as_raw_fd(),
                        ptr::null_mut(),
                        0,
                        libc::MSG_DONTWAIT,
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                };
                p.stats.wakeups += 1;
            }
        }
        self.refill_start = (self.refill_start + 1) % n_ports.max(1);
    }

    /// Kicks `port`'s TX ring if the kernel wants a kick and packets were
    /// queued since the last one.
    fn kick(&mut self, port: usize) {
        let Some(p) = self.ports.get_mut(port) else {
            return;
        };
        if !p.tx_queued {
            return;
        }
        fence(Ordering::SeqCst);
        if !p.tx.needs_wakeup() {
            // The driver is polling on its own (zero-copy).
            p.tx_queued = false;
            return;
        }
        let fd = p.fd.as_raw_fd();
        let max_kicks = p.tx.size / COPY_TX_BATCH + 2;
        let mut drained = false;
        for _ in 0..max_kicks {
            // SAFETY: a zero-length, non-blocking sendto on our own socket
            // with no buffer or address: it only makes the kernel process
            // the TX ring.
            let rc =
                unsafe { libc::sendto(fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
            if let Some(p) = self.ports.get_mut(port) {
                p.stats.wakeups += 1;
            }
            if rc >= 0 {
                drained = true;
                break;
            }
            let errno = io::Error::last_os_error().raw_os_error();
            if errno != Some(libc::EAGAIN) {
                // EBUSY, ENOBUFS, ENETDOWN...: try again next service.
                break;
            }
            // More left (copy mode sends a batch per call), or the
            // completion ring is full: make room and go on.
            self.reap(port);
            let Some(p) = self.ports.get_mut(port) else {
                return;
            };
            if p.tx.prod_outstanding() == 0 {
                drained = true;
                break;
            }
        }
        if let Some(p) = self.ports.get_mut(port) {
            p.tx_queued = !drained;
        }
    }
}

/// Creates, configures and binds one socket. `first` is the socket that
/// registered the UMEM (None for the first port itself). On failure returns
/// the call that failed and its error.
fn open_socket(
    spec: &PortSpec,
    ifindex: u32,
    cfg: &AfXdpConfig,
    umem: &Mmap,
    first: Option<&Port>,
    mode: Mode,
) -> Result<Port, (&'static str, io::Error)> {
    // SAFETY: plain socket(2) call; no memory is passed.
    let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(("socket(AF_XDP)", io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    if first.is_none() {
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem.len as u64,
            chunk_size: CHUNK_SIZE as u32,
            // Frames then land XDP_PACKET_HEADROOM (= MIN_HEADROOM) into a chunk.
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(|e| ("setsockopt(XDP_UMEM_REG)", e))?;
    }
    // Every socket on its own netdev/queue has its own fill and completion ring.
    setsockopt(raw, libc::XDP_UMEM_FILL_RING, &cfg.fill_ring)
        .map_err(|e| ("setsockopt(XDP_UMEM_FILL_RING)", e))?;
    setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &cfg.completion_ring)
        .map_err(|e| ("setsockopt(XDP_UMEM_COMPLETION_RING)", e))?;
    setsockopt(raw, libc::XDP_RX_RING, &cfg.rx_ring).map_err(|e| ("setsockopt(XDP_RX_RING)", e))?;
    setsockopt(raw, libc::XDP_TX_RING, &cfg.tx_ring).map_err(|e| ("setsockopt(XDP_TX_RING)", e))?;

    let zero = libc::xdp_ring_offset {
        producer: 0,
        consumer: 0,
        desc: 0,
        flags: 0,
    };
    let mut off = libc::xdp_mmap_offsets {
        rx: zero,
        tx: zero,
        fr: zero,
        cr: zero,
    };
    getsockopt(raw, libc::XDP_MMAP_OFFSETS, &mut off)
        .map_err(|e| ("getsockopt(XDP_MMAP_OFFSETS)", e))?;

    let rx = Ring::map(raw, libc::XDP_PGOFF_RX_RING, &off.rx, cfg.rx_ring)
        .map_err(|e| ("mmap(RX ring)", e))?;
    let tx = Ring::map(raw, libc::XDP_PGOFF_TX_RING, &off.tx, cfg.tx_ring)
        .map_err(|e| ("mmap(TX ring)", e))?;
    let fill = Ring::map(
        raw,
        libc::XDP_UMEM_PGOFF_FILL_RING as i64,
        &off.fr,
        cfg.fill_ring,
    )
    .map_err(|e| ("mmap(fill ring)", e))?;
    let completion = Ring::map(
        raw,
        libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
        &off.cr,
        cfg.completion_ring,
    )
    .map_err(|e| ("mmap(completion ring)", e))?;

    let mut addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: 0,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: spec.queue,
        sxdp_shared_umem_fd: 0,
    };
    let call = match (first, mode) {
        (Some(first), _) => {
            // Mode and need_wakeup come from the first socket; the kernel
            // refuses them here.
            addr.sxdp_flags = libc::XDP_SHARED_UMEM;
            addr.sxdp_shared_umem_fd = first.fd.as_raw_fd() as u32;
            "bind(XDP_SHARED_UMEM)"
        }
        (None, Mode::Copy) => {
            addr.sxdp_flags = libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP;
            "bind(XDP_COPY)"
        }
        (None, Mode::ZeroCopy) => {
            addr.sxdp_flags = libc::XDP_ZEROCOPY | libc::XDP_USE_NEED_WAKEUP;
            "bind(XDP_ZEROCOPY)"
        }
    };
    // SAFETY: `addr` is a live sockaddr_xdp of the size passed; bind only reads it.
    let rc = unsafe {
        libc::bind(
            raw,
            ptr::from_ref(&addr).cast(),
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err((call, io::Error::last_os_error()));
    }
    Ok(Port {
        rx,
        tx,
        fill,
        completion,
        tx_queued: false,
        stats: PortStats::default(),
        spec: spec.clone(),
        fd,
    })
}

impl PacketIo for AfXdp {
    fn ports(&self) -> usize {
        self.ports.len()
    }

    fn chunk_size(&self) -> usize {
        CHUNK_SIZE
    }

    fn rx_burst(&mut self, port: usize, out: &mut [Desc]) -> usize {
        let Some(p) = self.ports.get_mut(port) else {
            return 0;
        };
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let n = p.rx.cons_ready(want);
        let mut bytes = 0u64;
        for (i, slot) in (0..n).zip(out.iter_mut()) {
            let d = p.rx.cons_read(i);
            let (addr, off) = split_addr(d.addr);
            *slot = Desc {
                addr,
                off,
                len: d.len,
            };
            bytes += u64::from(d.len);
        }
        p.rx.cons_release(n);
        p.stats.rx_packets += u64::from(n);
        p.stats.rx_bytes += bytes;
        n as usize
    }

    /// Takes the longest prefix of `pkts` that fits the TX ring and names
    /// valid packets: a descriptor whose `addr` is no chunk of this UMEM, or
    /// whose packet is empty or runs past its chunk, ends the prefix (and
    /// stays the caller's).
    fn tx_burst(&mut self, port: usize, pkts: &[Desc]) -> usize {
        let chunks = self.chunks() as u64;
        let Some(p) = self.ports.get_mut(port) else {
            return 0;
        };
        let want = u32::try_from(pkts.len()).unwrap_or(u32::MAX);
        let room = p.tx.prod_free(want);
        let mut taken = 0u32;
        let mut bytes = 0u64;
        for d in pkts.iter().take(room as usize) {
            let valid = d.addr % CHUNK_SIZE as u64 == 0
                && d.addr / (CHUNK_SIZE as u64) < chunks
                && d.len > 0
                && (d.off as usize).saturating_add(d.len as usize) <= CHUNK_SIZE;
            if !valid {
                break;
            }
            p.tx.prod_write(
                taken,
                libc::xdp_desc {
                    addr: d.addr + u64::from(d.off),
                    len: d.len,
                    options: 0,
                },
            );
            taken += 1;
            bytes += u64::from(d.len);
        }
        if taken > 0 {
            p.tx.prod_submit(taken);
            p.tx_queued = true;
        }
        if taken == room {
            p.stats.tx_ring_full += u64::from(want - room);
        }
        p.stats.tx_packets += u64::from(taken);
        p.stats.tx_bytes += bytes;
        taken as usize
    }

    /// Descriptors naming no chunk of this UMEM, and chunks already free,
    /// are ignored.
    fn free(&mut self, pkts: &[Desc]) {
        let chunks = self.chunks();
        for d in pkts {
            if d.addr % CHUNK_SIZE as u64 == 0 {
                push_free(&mut self.free, &mut self.on_free, chunks, d.addr);
            }
        }
    }

    fn alloc(&mut self) -> Option<Desc> {
        let addr = self.free.pop()?;
        let index = (addr / CHUNK_SIZE as u64) as usize;
        if let Some(w) = self.on_free.get_mut(index / 64) {
            *w &= !(1u64 << (index % 64));
        }
        Some(Desc {
            addr,
            off: MIN_HEADROOM as u32,
            len: 0,
        })
    }

    /// The slice stays valid for the borrow; the caller must own the chunk
    /// (received, allocated, not yet sent or freed). A chunk the kernel
    /// owns can change under the slice.
    fn chunk_mut(&mut self, d: Desc) -> &mut [u8] {
        let Some(index) = self.chunk_index(d.addr) else {
            return &mut [];
        };
        // SAFETY: chunk `index` lies inside the UMEM mapping, which lives as
        // long as `self`; `&mut self` keeps any other slice from this API
        // alive meanwhile. The kernel writes a chunk only while it owns it
        // (fill ring to RX ring) and reads it only while it is on a TX ring,
        // neither of which is the case for a chunk the caller holds; if the
        // caller breaks that, it sees changing bytes, which any u8 value
        // tolerates.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.umem.ptr.as_ptr().add(index * CHUNK_SIZE),
                CHUNK_SIZE,
            )
        }
    }

    fn chunks_mut<'a>(&'a mut self, ds: &[Desc], out: &mut [Option<&'a mut [u8]>]) {
        let base = self.umem.ptr.as_ptr();
        for (d, slot) in ds.iter().zip(out.iter_mut()) {
            let Some(index) = self.chunk_index(d.addr) else {
                continue;
            };
            let Some(w) = self.lent.get_mut(index / 64) else {
                continue;
            };
            let bit = 1u64 << (index % 64);
            if *w & bit != 0 {
                continue;
            }
            *w |= bit;
            // SAFETY: chunk `index` lies inside the UMEM mapping, which
            // outlives the `'a` borrow of `self`; the `lent` bits make every
            // slice handed out here a different chunk, so they are disjoint,
            // and `&'a mut self` keeps `chunk_mut` from making another. What
            // the kernel may do to a chunk is as for `chunk_mut`.
            *slot = Some(unsafe {
                std::slice::from_raw_parts_mut(base.add(index * CHUNK_SIZE), CHUNK_SIZE)
            });
        }
        // Clear exactly the bits set above.
        for d in ds.iter().take(out.len()) {
            if let Some(index) = self.chunk_index(d.addr) {
                if let Some(w) = self.lent.get_mut(index / 64) {
                    *w &= !(1u64 << (index % 64));
                }
            }
        }
    }

    fn service(&mut self) {
        for port in 0..self.ports.len() {
            self.reap(port);
            self.kick(port);
        }
        self.refill();
    }

    fn stats(&self, port: usize) -> PortStats {
        self.ports.get(port).map(|p| p.stats).unwrap_or_default()
    }

    fn io_drops(&self, port: usize) -> crate::IoDrops {
        self.kernel_stats(port)
            .map(|k| crate::IoDrops {
                rx_dropped: k.rx_dropped,
                rx_ring_full: k.rx_ring_full,
                rx_fill_empty: k.rx_fill_ring_empty_descs,
                tx_invalid: k.tx_invalid_descs,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_math() {
        assert_eq!(split_addr(0), (0, 0));
        assert_eq!(split_addr(256), (0, 256));
        assert_eq!(split_addr(4096 + 256), (4096, 256));
        assert_eq!(split_addr(7 * 4096 + 4095), (7 * 4096, 4095));
        assert_eq!(split_addr(1 << 40), (1 << 40, 0));
        // A received frame starts where the buffer contract wants it.
        let (base, off) = split_addr(12 * 4096 + XDP_PACKET_HEADROOM as u64);
        assert_eq!(base, 12 * 4096);
        assert!(off as usize >= MIN_HEADROOM);
        // TX descriptors carry base + off; the completion gives it back.
        let d = Desc {
            addr: 3 * 4096,
            off: 300,
            len: 60,
        };
        assert_eq!(split_addr(d.addr + u64::from(d.off)), (d.addr, d.off));
    }

    #[test]
    fn config_checks_need_no_socket() {
        let ports = [PortSpec::new("lo", 0)];
        let bad = AfXdpConfig {
            rx_ring: 1000,
            ..AfXdpConfig::default()
        };
        assert!(matches!(
            AfXdp::open(&ports, &bad),
            Err(Error::InvalidConfig(_))
        ));
        let tiny = AfXdpConfig {
            chunks: 1,
            ..AfXdpConfig::default()
        };
        assert!(matches!(
            AfXdp::open(&ports, &tiny),
            Err(Error::InvalidConfig(_))
        ));
        let dup = [PortSpec::new("lo", 0), PortSpec::new("lo", 0)];
        assert!(matches!(
            AfXdp::open(&dup, &AfXdpConfig::default()),
            Err(Error::DuplicatePort { .. })
        ));
        assert!(matches!(
            AfXdp::open(&[], &AfXdpConfig::default()),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn error_display_names_call_interface_queue_errno() {
        let e = Error::Syscall {
            call: "bind(XDP_ZEROCOPY)",
            ifname: "eth1".into(),
            queue: 3,
            errno: libc::EOPNOTSUPP,
        };
        let s = e.to_string();
        assert!(s.contains("bind(XDP_ZEROCOPY)"), "{s}");
        assert!(s.contains("eth1 queue 3"), "{s}");
        assert!(s.contains(&format!("os error {}", libc::EOPNOTSUPP)), "{s}");
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
    }
}
