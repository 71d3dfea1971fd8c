//! A minimal AF_XDP socket for the tests: copy mode, one UMEM of a few 4 KiB frames,
//! fill and RX rings only (plus the completion ring the kernel insists on).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const FRAME: usize = 4096;
const FRAMES: usize = 16;
const RING: u32 = 16;

struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: Option<RawFd>, len: usize, offset: i64) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel; we own it until Drop unmaps it.
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
        Ok(Mapping {
            addr: addr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` are exactly what mmap returned; nothing uses them after.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// One ring: producer, consumer and descriptors inside a socket mapping.
struct Ring {
    map: Mapping,
    off: libc::xdp_ring_offset,
}

impl Ring {
    fn word(&self, offset: u64) -> &AtomicU32 {
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS and lie inside the mapping; the
        // kernel places 4-byte aligned u32 counters there, shared with it for the life
        // of the mapping, which outlives the returned reference.
        unsafe { &*self.map.addr.add(offset as usize).cast::<AtomicU32>() }
    }
    fn producer(&self) -> &AtomicU32 {
        self.word(self.off.producer)
    }
    fn consumer(&self) -> &AtomicU32 {
        self.word(self.off.consumer)
    }
    fn desc(&self) -> *mut u8 {
        // SAFETY: the descriptor array starts `desc` bytes into the mapping.
        unsafe { self.map.addr.add(self.off.desc as usize) }
    }
}

/// An AF_XDP socket bound (copy mode) to one queue of one interface.
pub struct Xsk {
    // Field order = drop order: rings and UMEM are unmapped before the socket closes.
    rx: Ring,
    _fill: Ring,
    umem: Mapping,
    fd: OwnedFd,
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Xsk {
    pub fn bind(ifindex: u32, queue: u32) -> io::Result<Xsk> {
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let umem = Mapping::new(None, FRAME * FRAMES, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.addr as u64,
            len: (FRAME * FRAMES) as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg)?;
        setsockopt(raw, libc::XDP_UMEM_FILL_RING, &RING)?;
        setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &RING)?;
        setsockopt(raw, libc::XDP_RX_RING, &RING)?;

        // SAFETY: an all-zero xdp_mmap_offsets is a valid value (plain integers).
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `len` are live and `len` is `off`'s size.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                ptr::from_mut(&mut off).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }

        let fill = Ring {
            map: Mapping::new(
                Some(raw),
                off.fr.desc as usize + RING as usize * 8,
                libc::XDP_UMEM_PGOFF_FILL_RING as i64,
            )?,
            off: off.fr,
        };
        let rx = Ring {
            map: Mapping::new(
                Some(raw),
                off.rx.desc as usize + RING as usize * std::mem::size_of::<libc::xdp_desc>(),
                libc::XDP_PGOFF_RX_RING,
            )?,
            off: off.rx,
        };

        // Hand the kernel every UMEM frame to receive into.
        let slots = fill.desc().cast::<u64>();
        for i in 0..FRAMES.min(RING as usize) {
            // SAFETY: i < RING, the number of u64 slots in the fill ring's descriptor area.
            unsafe { slots.add(i).write((i * FRAME) as u64) };
        }
        fill.producer()
            .store(FRAMES.min(RING as usize) as u32, Ordering::Release);

        // SAFETY: an all-zero sockaddr_xdp is valid; fields set below.
        let mut addr: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
        addr.sxdp_family = libc::AF_XDP as u16;
        addr.sxdp_flags = libc::XDP_COPY;
        addr.sxdp_ifindex = ifindex;
        addr.sxdp_queue_id = queue;
        // SAFETY: `addr` is a live sockaddr_xdp of the size passed.
        let rc = unsafe {
            libc::bind(
                raw,
                ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Xsk {
            rx,
            _fill: fill,
            umem,
            fd,
        })
    }

    /// The next received frame, or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let start = Instant::now();
        loop {
            let consumer = self.rx.consumer().load(Ordering::Relaxed);
            if self.rx.producer().load(Ordering::Acquire) != consumer {
                let index = (consumer % RING) as usize;
                // SAFETY: index < RING; the kernel published this descriptor (Acquire above).
                let desc = unsafe { self.rx.desc().cast::<libc::xdp_desc>().add(index).read() };
                let (addr, len) = (desc.addr as usize, desc.len as usize);
                assert!(addr + len <= self.umem.len, "descriptor outside the UMEM");
                // SAFETY: the range lies inside the UMEM (checked above) and the kernel
                // finished writing it before publishing the descriptor.
                let frame =
                    unsafe { std::slice::from_raw_parts(self.umem.addr.add(addr), len) }.to_vec();
                self.rx
                    .consumer()
                    .store(consumer.wrapping_add(1), Ordering::Release);
                return Some(frame);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl AsRawFd for Xsk {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sends one raw Ethernet frame out of `ifindex` through an AF_PACKET socket.
pub fn send_raw(ifindex: u32, frame: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket(2) call.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` and `addr` are live for the call, with the lengths passed.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
