//! The XDP steering program and its loader.
//!
//! `src/steer.bpf.c` (C, built by `build.rs` with `clang -target bpf -O2 -g` and embedded
//! here) looks at every frame a NIC queue receives and either passes it to the kernel
//! (IKE, NAT-T keepalives, ARP/ND, IP fragments, other local traffic, non-IP, malformed)
//! or redirects it to the AF_XDP socket of that queue (ESP and ESP-in-UDP addressed to
//! the appliance; on inside interfaces, transit traffic to protect). See `README.md`
//! for the full table of classes.
//!
//! [`Steering`] loads one instance of the program with its own maps for one interface:
//!
//! ```no_run
//! use sluice_ebpf::{AttachMode, Role, Steering};
//! # fn main() -> Result<(), sluice_ebpf::Error> {
//! let mut steering = Steering::load(Role::Outside)?;
//! steering.add_local_addr("198.18.0.1".parse().expect("address"))?;
//! steering.attach("eth0", AttachMode::Auto)?;
//! # let xsk_fd = 3;
//! steering.set_xsk(0, xsk_fd)?; // the AF_XDP socket bound to eth0 queue 0
//! for (class, packets) in sluice_ebpf::Class::ALL.iter().zip(steering.counters()?) {
//!     println!("{} {packets}", class.name());
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, XskMap};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{include_bytes_aligned, Ebpf, EbpfError, EbpfLoader};

pub mod soft;
pub use soft::classify;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/steer_classes.rs"));
}

/// The BPF object built from `src/steer.bpf.c`.
static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

const PROGRAM: &str = "sluice_steer";
const MAP_XSKS: &str = "xsks";
const MAP_LOCAL_V4: &str = "local_v4";
const MAP_LOCAL_V6: &str = "local_v6";
const MAP_CONFIG: &str = "steer_cfg";
const MAP_STATS: &str = "steer_stats";

/// Number of rx queues the XSKMAP has slots for (`STEER_MAX_QUEUES` in `steer.h`).
pub const MAX_QUEUES: u32 = 64;
/// Capacity of each local-address map, IPv4 and IPv6 (`STEER_MAX_LOCAL_ADDRS`).
pub const MAX_LOCAL_ADDRS: u32 = 256;

/// Which side of the gateway an interface is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Faces the peers: only ESP / ESP-in-UDP addressed to the appliance goes to the data
    /// plane; transit traffic is passed to the kernel (`pass_transit_outside`).
    Outside,
    /// Faces the protected networks: transit traffic (not addressed to the appliance) goes
    /// to the data plane to be encrypted (`redirect_transit`).
    Inside,
}

impl Role {
    const fn raw(self) -> u32 {
        match self {
            Self::Outside => 0,
            Self::Inside => 1,
        }
    }
}

/// How to attach the program to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// Driver (native) XDP. On veth this needs MTU <= 3506 (the program is not built as
    /// `xdp.frags`).
    Native,
    /// Generic (skb) XDP, in the kernel's receive path; works on any interface.
    Generic,
    /// Native, falling back to generic if the driver refuses.
    Auto,
}

/// What the program returned for a frame (`enum xdp_action`), as seen by
/// [`Steering::test_run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `XDP_ABORTED` (0).
    Aborted,
    /// `XDP_DROP` (1).
    Drop,
    /// `XDP_PASS` (2): the kernel's network stack gets the frame.
    Pass,
    /// `XDP_TX` (3).
    Tx,
    /// `XDP_REDIRECT` (4): the frame went to an AF_XDP socket.
    Redirect,
    /// Any other value.
    Other(u32),
}

impl Verdict {
    /// Maps a raw `enum xdp_action` value.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            other => Self::Other(other),
        }
    }
}

/// Where the program sends a class of packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `XDP_PASS` to the kernel.
    Pass,
    /// `XDP_REDIRECT` to the AF_XDP socket of the receiving queue (or `XDP_PASS`, counted
    /// as [`Class::NoSocketPass`] as well, when no socket is bound there).
    Redirect,
}

macro_rules! classes {
    ($($(#[doc = $doc:literal])* $variant:ident = $index:literal, $name:literal, $c_name:literal, $action:ident;)+) => {
        /// A packet class: one per-CPU counter in the `steer_stats` map, mirroring
        /// `enum steer_class` in `src/steer.h` (checked at compile time).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum Class {
            $($(#[doc = $doc])* $variant = $index,)+
        }

        impl Class {
            /// Every class, in counter-index order.
            pub const ALL: [Class; Class::COUNT] = [$(Class::$variant,)+];
            /// Number of classes (entries of the counter map).
            pub const COUNT: usize = [$($index,)+].len();

            /// Counter-map index.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// Snake-case name for metrics export, e.g. `pass_ike`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Class::$variant => $name,)+
                }
            }

            /// The enumerator's name in `steer.h`, e.g. `STEER_PASS_IKE`.
            pub const fn c_name(self) -> &'static str {
                match self {
                    $(Class::$variant => $c_name,)+
                }
            }

            /// What the program does with packets of this class.
            pub const fn action(self) -> Action {
                match self {
                    $(Class::$variant => Action::$action,)+
                }
            }
        }
    };
}

classes! {
    /// UDP 500, or UDP 4500 starting with the zero non-ESP marker (RFC 3948 §2.2).
    PassIke = 0, "pass_ike", "STEER_PASS_IKE", Pass;
    /// NAT-T keepalive: UDP 4500 with exactly one payload byte 0xff (RFC 3948 §2.3).
    PassNattKeepalive = 1, "pass_natt_keepalive", "STEER_PASS_NATT_KEEPALIVE", Pass;
    /// ARP.
    PassArp = 2, "pass_arp", "STEER_PASS_ARP", Pass;
    /// IPv6 neighbour discovery, ICMPv6 types 133-137 (RFC 4861), whatever the destination.
    PassNd = 3, "pass_nd", "STEER_PASS_ND", Pass;
    /// IPv4 with MF set or a non-zero offset; IPv6 with a fragment header.
    PassFragment = 4, "pass_fragment", "STEER_PASS_FRAGMENT", Pass;
    /// Addressed to the appliance, neither ESP, ESP-in-UDP nor IKE (ICMP, SSH, API...).
    PassLocalOther = 5, "pass_local_other", "STEER_PASS_LOCAL_OTHER", Pass;
    /// Not a local address, but multicast, broadcast (IP or Ethernet group address) or
    /// link-scoped (169.254/16, fe80::/10, 0/8, 127/8): never transit.
    PassLinkScope = 6, "pass_link_scope", "STEER_PASS_LINK_SCOPE", Pass;
    /// Neither IPv4, IPv6 nor ARP (LLDP, a second VLAN tag, ...).
    PassNonIp = 7, "pass_non_ip", "STEER_PASS_NON_IP", Pass;
    /// Truncated or inconsistent headers, or an IPv6 extension-header chain longer than
    /// the program walks.
    PassMalformed = 8, "pass_malformed", "STEER_PASS_MALFORMED", Pass;
    /// Transit traffic on an [`Role::Outside`] interface.
    PassTransitOutside = 9, "pass_transit_outside", "STEER_PASS_TRANSIT_OUTSIDE", Pass;
    /// ESP, IP protocol 50, addressed to the appliance (RFC 4303).
    RedirectEsp = 10, "redirect_esp", "STEER_REDIRECT_ESP", Redirect;
    /// ESP-in-UDP: UDP 4500, at least 8 payload bytes, non-zero SPI (RFC 3948 §2.1).
    RedirectEspUdp = 11, "redirect_esp_udp", "STEER_REDIRECT_ESP_UDP", Redirect;
    /// Transit traffic on an [`Role::Inside`] interface: to be protected.
    RedirectTransit = 12, "redirect_transit", "STEER_REDIRECT_TRANSIT", Redirect;
    /// A `redirect_*` packet passed to the kernel because no AF_XDP socket is bound to its
    /// queue; counted in addition to its class.
    NoSocketPass = 13, "no_socket_pass", "STEER_NO_SOCKET_PASS", Pass;
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// The Rust mirror and `enum steer_class` (parsed from steer.h by build.rs) agree on the
// count, the order and the names.
const _: () = {
    assert!(generated::C_CLASS_NAMES.len() == Class::COUNT);
    let mut i = 0;
    while i < Class::COUNT {
        assert!(Class::ALL[i].index() == i);
        assert!(str_eq(Class::ALL[i].c_name(), generated::C_CLASS_NAMES[i]));
        i += 1;
    }
};

/// Errors from loading, attaching or configuring the steering program.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused the object's maps or BTF.
    Load(EbpfError),
    /// The kernel refused the program (verifier log inside), or attaching/detaching it.
    Program(ProgramError),
    /// A map operation failed.
    Map(MapError),
    /// The embedded object lacks a map or program this loader expects.
    Missing(&'static str),
    /// The loaded object disagrees with this crate about a size.
    AbiMismatch {
        /// What was checked.
        what: &'static str,
        /// What this crate expects.
        expected: u64,
        /// What the object has.
        found: u64,
    },
    /// No interface with this name.
    UnknownInterface(String),
    /// This instance is already attached (one interface per [`Steering`]: the XSKMAP is
    /// keyed by that interface's queue numbers).
    AlreadyAttached {
        /// Interface index it is attached to.
        ifindex: u32,
    },
    /// A queue number beyond the XSKMAP.
    QueueOutOfRange {
        /// The queue asked for.
        queue: u32,
        /// Number of slots ([`MAX_QUEUES`]).
        max: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load(e) => write!(f, "loading the XDP steering object: {e}"),
            Self::Program(e) => write!(f, "XDP steering program: {e}"),
            Self::Map(e) => write!(f, "XDP steering map: {e}"),
            Self::Missing(name) => write!(f, "XDP steering object has no `{name}`"),
            Self::AbiMismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "XDP steering object: {what} is {found}, expected {expected} (stale build?)"
            ),
            Self::UnknownInterface(name) => write!(f, "no network interface named `{name}`"),
            Self::AlreadyAttached { ifindex } => write!(
                f,
                "XDP steering program already attached to ifindex {ifindex}; load one \
                 instance per interface"
            ),
            Self::QueueOutOfRange { queue, max } => {
                write!(f, "queue {queue} out of range: the XSKMAP has {max} slots")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Load(e) => Some(e),
            Self::Program(e) => Some(e),
            Self::Map(e) => Some(e),
            _ => None,
        }
    }
}

impl From<EbpfError> for Error {
    fn from(e: EbpfError) -> Self {
        Self::Load(e)
    }
}

impl From<ProgramError> for Error {
    fn from(e: ProgramError) -> Self {
        Self::Program(e)
    }
}

impl From<MapError> for Error {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

/// The current attachment of a [`Steering`] instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface index.
    pub ifindex: u32,
    /// The mode the kernel accepted ([`AttachMode::Native`] or [`AttachMode::Generic`]).
    pub mode: AttachMode,
}

/// One loaded instance of the steering program and its maps, for one interface.
///
/// Dropping it detaches the program and frees the maps.
#[derive(Debug)]
pub struct Steering {
    ebpf: Ebpf,
    role: Role,
    link: Option<(XdpLinkId, Attachment)>,
}

impl Steering {
    /// Loads the program and its maps into the kernel (needs CAP_BPF + CAP_NET_ADMIN,
    /// or root). Nothing is attached yet.
    pub fn load(role: Role) -> Result<Self, Error> {
        let ebpf = EbpfLoader::new().load(OBJECT)?;
        let mut steering = Self {
            ebpf,
            role,
            link: None,
        };
        steering.xdp_mut()?.load()?;
        steering.check_abi()?;
        steering.set_role(role)?;
        Ok(steering)
    }

    fn check_abi(&self) -> Result<(), Error> {
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_STATS).ok_or(Error::Missing(MAP_STATS))?)?;
        check_size("counter map entries", Class::COUNT as u64, stats.len())?;
        let xsks: XskMap<&MapData> =
            XskMap::try_from(self.ebpf.map(MAP_XSKS).ok_or(Error::Missing(MAP_XSKS))?)?;
        check_size("XSKMAP entries", u64::from(MAX_QUEUES), xsks.len())
    }

    fn xdp_mut(&mut self) -> Result<&mut Xdp, Error> {
        let program = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(Error::Missing(PROGRAM))?;
        Ok(program.try_into()?)
    }

    fn xdp(&self) -> Result<&Xdp, Error> {
        let program = self.ebpf.program(PROGRAM).ok_or(Error::Missing(PROGRAM))?;
        Ok(program.try_into()?)
    }

    /// The interface role the program currently applies.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Changes the interface role; takes effect for the next frame.
    pub fn set_role(&mut self, role: Role) -> Result<(), Error> {
        let map = self
            .ebpf
            .map_mut(MAP_CONFIG)
            .ok_or(Error::Missing(MAP_CONFIG))?;
        let mut config: Array<&mut MapData, [u32; 2]> = Array::try_from(map)?;
        config.set(0, [role.raw(), 0], 0)?;
        self.role = role;
        Ok(())
    }

    /// Attaches to the interface named `ifname`. Returns the mode the kernel accepted.
    pub fn attach(&mut self, ifname: &str, mode: AttachMode) -> Result<AttachMode, Error> {
        let ifindex = ifindex(ifname)?;
        self.attach_index(ifindex, mode)
    }

    /// Attaches to the interface with index `ifindex`. Returns the mode the kernel accepted.
    pub fn attach_index(&mut self, ifindex: u32, mode: AttachMode) -> Result<AttachMode, Error> {
        if let Some((_, attachment)) = self.link {
            return Err(Error::AlreadyAttached {
                ifindex: attachment.ifindex,
            });
        }
        let program = self.xdp_mut()?;
        let (link, mode) = match mode {
            AttachMode::Native => (
                program.attach_to_if_index(ifindex, XdpMode::Driver)?,
                AttachMode::Native,
            ),
            AttachMode::Generic => (
                program.attach_to_if_index(ifindex, XdpMode::Skb)?,
                AttachMode::Generic,
            ),
            AttachMode::Auto => match program.attach_to_if_index(ifindex, XdpMode::Driver) {
                Ok(link) => (link, AttachMode::Native),
                Err(_) => (
                    program.attach_to_if_index(ifindex, XdpMode::Skb)?,
                    AttachMode::Generic,
                ),
            },
        };
        self.link = Some((link, Attachment { ifindex, mode }));
        Ok(mode)
    }

    /// Where the program is attached, if anywhere.
    pub fn attachment(&self) -> Option<Attachment> {
        self.link.as_ref().map(|(_, attachment)| *attachment)
    }

    /// Detaches from the interface (no-op when not attached). Also done on drop.
    pub fn detach(&mut self) -> Result<(), Error> {
        if let Some((link, _)) = self.link.take() {
            self.xdp_mut()?.detach(link)?;
        }
        Ok(())
    }

    /// Declares `addr` one of the appliance's own addresses: ESP, ESP-in-UDP and IKE to
    /// it are recognised, other traffic to it goes to the kernel (never "transit").
    pub fn add_local_addr(&mut self, addr: IpAddr) -> Result<(), Error> {
        match addr {
            IpAddr::V4(v4) => self.local_v4()?.insert(v4.octets(), 1, 0)?,
            IpAddr::V6(v6) => self.local_v6()?.insert(v6.octets(), 1, 0)?,
        }
        Ok(())
    }

    /// Whether `addr` is one of the local addresses (a map lookup).
    pub fn is_local_addr(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => self
                .ebpf
                .map(MAP_LOCAL_V4)
                .and_then(|m| HashMap::<&MapData, [u8; 4], u8>::try_from(m).ok())
                .is_some_and(|m| m.get(&v4.octets(), 0).is_ok()),
            IpAddr::V6(v6) => self
                .ebpf
                .map(MAP_LOCAL_V6)
                .and_then(|m| HashMap::<&MapData, [u8; 16], u8>::try_from(m).ok())
                .is_some_and(|m| m.get(&v6.octets(), 0).is_ok()),
        }
    }

    /// Removes `addr` from the local addresses; `Ok` also when it was not there.
    pub fn remove_local_addr(&mut self, addr: IpAddr) -> Result<(), Error> {
        let result = match addr {
            IpAddr::V4(v4) => self.local_v4()?.remove(&v4.octets()),
            IpAddr::V6(v6) => self.local_v6()?.remove(&v6.octets()),
        };
        ignore_absent(result)
    }

    fn local_v4(&mut self) -> Result<HashMap<&mut MapData, [u8; 4], u8>, Error> {
        let map = self
            .ebpf
            .map_mut(MAP_LOCAL_V4)
            .ok_or(Error::Missing(MAP_LOCAL_V4))?;
        Ok(HashMap::try_from(map)?)
    }

    fn local_v6(&mut self) -> Result<HashMap<&mut MapData, [u8; 16], u8>, Error> {
        let map = self
            .ebpf
            .map_mut(MAP_LOCAL_V6)
            .ok_or(Error::Missing(MAP_LOCAL_V6))?;
        Ok(HashMap::try_from(map)?)
    }

    /// Binds rx `queue` to the AF_XDP socket `fd` (an `AF_XDP` socket already bound to
    /// this interface and queue): ESP, ESP-in-UDP and inside transit received on that
    /// queue are redirected to it from the next frame on.
    pub fn set_xsk(&mut self, queue: u32, fd: impl AsRawFd) -> Result<(), Error> {
        let mut xsks = self.xsks(queue)?;
        xsks.set(queue, fd, 0)?;
        Ok(())
    }

    /// Unbinds rx `queue`: its traffic goes to the kernel again (`no_socket_pass`).
    pub fn clear_xsk(&mut self, queue: u32) -> Result<(), Error> {
        let mut xsks = self.xsks(queue)?;
        ignore_absent(xsks.unset(queue))
    }

    fn xsks(&mut self, queue: u32) -> Result<XskMap<&mut MapData>, Error> {
        if queue >= MAX_QUEUES {
            return Err(Error::QueueOutOfRange {
                queue,
                max: MAX_QUEUES,
            });
        }
        let map = self
            .ebpf
            .map_mut(MAP_XSKS)
            .ok_or(Error::Missing(MAP_XSKS))?;
        Ok(XskMap::try_from(map)?)
    }

    /// Packets per [`Class`], summed over CPUs, indexed by [`Class::index`].
    pub fn counters(&self) -> Result<[u64; Class::COUNT], Error> {
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_STATS).ok_or(Error::Missing(MAP_STATS))?)?;
        let mut totals = [0u64; Class::COUNT];
        for (index, total) in (0u32..).zip(totals.iter_mut()) {
            let per_cpu = stats.get(&index, 0)?;
            *total = per_cpu.iter().fold(0u64, |sum, n| sum.wrapping_add(*n));
        }
        Ok(totals)
    }

    /// Runs the program once over `frame` (an Ethernet frame of at least 14 bytes) with
    /// `BPF_PROG_TEST_RUN`, as if received on queue 0 of no particular interface.
    /// Counters move as for a real frame; nothing is delivered anywhere.
    pub fn test_run(&self, frame: &[u8]) -> Result<Verdict, Error> {
        let options = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        };
        let result = self.xdp()?.test_run(options)?;
        Ok(Verdict::from_raw(result.return_value))
    }

    /// Like [`Steering::test_run`], as if received on rx `queue` of interface `ifindex`
    /// (which must exist in the caller's network namespace and have more than `queue`
    /// rx queues).
    pub fn test_run_on(&self, frame: &[u8], ifindex: u32, queue: u32) -> Result<Verdict, Error> {
        let data_end = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex; the kernel wants data = data_meta = 0 and data_end = length.
        let mut ctx = [0u8; 24];
        for (slot, value) in ctx
            .chunks_exact_mut(4)
            .zip([0, data_end, 0, ifindex, queue, 0])
        {
            slot.copy_from_slice(&value.to_ne_bytes());
        }
        let options = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        };
        let result = self.xdp()?.test_run(options)?;
        Ok(Verdict::from_raw(result.return_value))
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        // Nothing to report to: the link would also go with the program's fd.
        let _ = self.detach();
    }
}

/// A delete of a key that is not there (`ENOENT`) is a success for idempotent removal.
fn ignore_absent(result: Result<(), MapError>) -> Result<(), Error> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn check_size(what: &'static str, expected: u64, found: u32) -> Result<(), Error> {
    if u64::from(found) == expected {
        Ok(())
    } else {
        Err(Error::AbiMismatch {
            what,
            expected,
            found: u64::from(found),
        })
    }
}

/// Interface index of `ifname` in the caller's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, Error> {
    let name =
        std::ffi::CString::new(ifname).map_err(|_| Error::UnknownInterface(ifname.to_owned()))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(Error::UnknownInterface(ifname.to_owned()))
    } else {
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_follow_c_names() {
        for class in Class::ALL {
            let expected = class
                .c_name()
                .strip_prefix("STEER_")
                .map(str::to_ascii_lowercase);
            assert_eq!(Some(class.name().to_owned()), expected);
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(Verdict::from_raw(2), Verdict::Pass);
        assert_eq!(Verdict::from_raw(4), Verdict::Redirect);
        assert_eq!(Verdict::from_raw(9), Verdict::Other(9));
    }
}
