//! Loader of the XDP program (`ebpf/xdhcpd-ebpf`): attach it to an interface, register AF_XDP
//! sockets per RX queue, maintain the failover partner set, read its counters.
//!
//! The program steers DHCPv4/DHCPv6 to the AF_XDP socket of the frame's RX queue, guards the
//! failover TCP port (partners pass, anyone else is dropped) and passes everything else; see
//! the crate docs of `xdhcpd-ebpf` for the exact rules.
//!
//! Object lookup order: an explicit path, else the object embedded at build time
//! (`cargo xtask build` sets `XDHCPD_EBPF_OBJECT`, see `build.rs`), else
//! `target/bpfel-unknown-none/release/xdhcpd-ebpf` in the repository or the current directory.

mod counters;
mod error;
mod reader;

use std::{
    borrow::Cow,
    collections::HashSet,
    ffi::CString,
    fmt,
    net::IpAddr,
    os::fd::RawFd,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, XskMap},
    programs::{xdp::XdpLinkId, ProgramError, Xdp, XdpFlags},
    Ebpf,
};
use xdhcpd_common::{
    counter_index, known_mac_key, PartnerKey, RateLimitConfig, XdpConfig, COUNTER_COUNT,
    COUNTER_ENTRIES, COUNTER_QUEUES, MAP_CONFIG, MAP_COUNTERS, MAP_KNOWN_MACS, MAP_PARTNERS,
    MAP_RATE_LIMITS, MAP_UNKNOWN_FILTER, MAP_XSKS,
};

pub use counters::Counters;
pub use error::XdpError;
pub use reader::CounterReader;

/// Name of the XDP program (the function) in the object.
pub const PROGRAM_NAME: &str = "xdhcpd";

/// Where `cargo xtask build-ebpf` leaves the object, relative to the repository root.
pub const DEFAULT_OBJECT_PATH: &str = "target/bpfel-unknown-none/release/xdhcpd-ebpf";

/// Value stored for each key of the partner map (the program only tests presence).
const PARTNER_PRESENT: u32 = 1;

#[cfg(embedded_ebpf)]
static EMBEDDED_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdhcpd-ebpf.o"));
#[cfg(not(embedded_ebpf))]
static EMBEDDED_OBJECT: &[u8] = &[];

/// How to attach the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) mode if the driver supports it, else SKB (generic) mode.
    Auto,
    /// Native XDP in the driver; fails when the driver has no XDP support.
    Driver,
    /// Generic XDP after SKB allocation: works everywhere, slower, AF_XDP in copy mode only.
    Skb,
}

impl AttachMode {
    fn name(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Driver => "driver",
            AttachMode::Skb => "skb",
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether an eBPF object was embedded into this binary at build time.
pub fn has_embedded_object() -> bool {
    !EMBEDDED_OBJECT.is_empty()
}

/// The XDP program attached to one interface, with its maps. Dropping it detaches the program.
pub struct XdpSteering {
    ifname: String,
    mode: AttachMode,
    link: Option<XdpLinkId>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    config: Array<MapData, XdpConfig>,
    /// What `config` holds now.
    current: XdpConfig,
    partners: HashMap<MapData, PartnerKey, u32>,
    /// max_entries of `partners`, if the kernel told us.
    partners_capacity: Option<u32>,
    /// The rate-limit settings (`ratelimit.rs` in the program).
    rate_limits: Array<MapData, RateLimitConfig>,
    /// The unknown-client drop's maps, until the daemon takes them (`take_known_macs`).
    known: Option<KnownMacMap>,
    ebpf: Ebpf,
}

/// The XDP program's map of known hardware addresses and the switch of the unknown-client
/// drop (`known.rs` in the program). Written off the packet path (start, registration
/// changes); every call is one `bpf` syscall.
pub struct KnownMacMap {
    macs: HashMap<MapData, u64, u8>,
    filter: Array<MapData, u32>,
    capacity: u32,
}

impl fmt::Debug for KnownMacMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnownMacMap")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl KnownMacMap {
    /// Entries the map holds at most.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Adds Ethernet address `mac` (an error when the map is full).
    pub fn insert(&mut self, mac: [u8; 6]) -> Result<(), aya::maps::MapError> {
        self.macs.insert(known_mac_key(mac), 1, 0)
    }

    /// Removes `mac` (absent: nothing to do).
    pub fn remove(&mut self, mac: [u8; 6]) -> Result<(), aya::maps::MapError> {
        match self.macs.remove(&known_mac_key(mac)) {
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            r => r,
        }
    }

    /// Whether `mac` is in the map.
    pub fn contains(&self, mac: [u8; 6]) -> bool {
        self.macs.get(&known_mac_key(mac), 0).is_ok()
    }

    /// Switches the drop of unknown chaddrs on or off (next frame).
    pub fn set_filter(&mut self, on: bool) -> Result<(), aya::maps::MapError> {
        self.filter.set(0, u32::from(on), 0)
    }
}

impl fmt::Debug for XdpSteering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpSteering")
            .field("ifname", &self.ifname)
            .field("mode", &self.mode)
            .field("attached", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl XdpSteering {
    /// Loads the program, writes `cfg`, and attaches it to `ifname` (in the calling thread's
    /// network namespace).
    ///
    /// `object`: explicit path, else the embedded object, else [`DEFAULT_OBJECT_PATH`].
    pub fn attach(
        ifname: &str,
        mode: AttachMode,
        object: Option<&Path>,
        cfg: XdpConfig,
    ) -> Result<Self, XdpError> {
        Self::attach_sized(ifname, mode, object, cfg, None)
    }

    /// [`attach`](Self::attach) with the map of known hardware addresses sized to
    /// `known_macs` entries (None: the object's size).
    pub fn attach_sized(
        ifname: &str,
        mode: AttachMode,
        object: Option<&Path>,
        cfg: XdpConfig,
        known_macs: Option<u32>,
    ) -> Result<Self, XdpError> {
        let ifindex = ifindex(ifname)?;
        let (bytes, origin) = locate_object(object)?;
        let mut loader = aya::EbpfLoader::new();
        if let Some(n) = known_macs {
            loader.set_max_entries(MAP_KNOWN_MACS, n.max(1));
        }
        let mut ebpf = loader
            .load(&bytes)
            .map_err(|source| XdpError::ParseObject {
                ifname: ifname.to_owned(),
                origin: origin.clone(),
                cause: Box::new(source),
            })?;

        let xsks: XskMap<MapData> = take_map(&mut ebpf, &origin, MAP_XSKS)?;
        let counters: PerCpuArray<MapData, u64> = take_map(&mut ebpf, &origin, MAP_COUNTERS)?;
        let mut config: Array<MapData, XdpConfig> = take_map(&mut ebpf, &origin, MAP_CONFIG)?;
        let partners_map = ebpf.take_map(MAP_PARTNERS);
        // Read the capacity now: the typed HashMap does not expose its MapData.
        let partners_capacity = match &partners_map {
            Some(aya::maps::Map::HashMap(data)) => data.info().ok().map(|i| i.max_entries()),
            _ => None,
        };
        let partners: HashMap<MapData, PartnerKey, u32> =
            typed_map(partners_map, &origin, MAP_PARTNERS)?;
        let rate_limits: Array<MapData, RateLimitConfig> =
            take_map(&mut ebpf, &origin, MAP_RATE_LIMITS)?;
        // Optional: an object built before the unknown-client drop has neither map.
        let known = match (
            ebpf.take_map(MAP_KNOWN_MACS),
            ebpf.take_map(MAP_UNKNOWN_FILTER),
        ) {
            (Some(m), Some(f)) => {
                let capacity = match &m {
                    aya::maps::Map::HashMap(data) => {
                        data.info().ok().map(|i| i.max_entries()).unwrap_or(0)
                    }
                    _ => 0,
                };
                Some(KnownMacMap {
                    macs: typed_map(Some(m), &origin, MAP_KNOWN_MACS)?,
                    filter: typed_map(Some(f), &origin, MAP_UNKNOWN_FILTER)?,
                    capacity,
                })
            }
            _ => None,
        };
        if counters.len() < COUNTER_ENTRIES {
            return Err(XdpError::MapType {
                origin,
                map: MAP_COUNTERS,
                cause: Box::new(aya::maps::MapError::OutOfBounds {
                    index: COUNTER_ENTRIES - 1,
                    max_entries: counters.len(),
                }),
            });
        }
        // Configure before attaching so the first frame already sees the intended settings.
        config.set(0, cfg, 0).map_err(|source| XdpError::Map {
            ifname: ifname.to_owned(),
            map: MAP_CONFIG,
            op: "writing the configuration",
            cause: Box::new(source),
        })?;

        let program = xdp_program(&mut ebpf, &origin)?;
        program.load().map_err(|source| XdpError::ProgramLoad {
            ifname: ifname.to_owned(),
            cause: Box::new(source),
        })?;
        let (link, mode) = attach_with_mode(program, ifname, ifindex, mode)?;
        tracing::info!(ifname, %mode, object = %origin, "XDP program attached");

        Ok(XdpSteering {
            ifname: ifname.to_owned(),
            mode,
            link: Some(link),
            xsks,
            counters,
            config,
            current: cfg,
            partners,
            partners_capacity,
            rate_limits,
            known,
            ebpf,
        })
    }

    /// Registers the AF_XDP socket bound to RX queue `queue`: DHCP frames arriving on that
    /// queue are redirected to it from now on. Replaces any socket registered before.
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        let slots = self.xsks.len();
        if queue >= slots {
            return Err(XdpError::QueueOutOfRange {
                ifname: self.ifname.clone(),
                queue,
                slots,
            });
        }
        self.xsks
            .set(queue, fd, 0)
            .map_err(|source| self.map_error(MAP_XSKS, "registering an AF_XDP socket", source))
    }

    /// Makes `addrs` the exact set of failover partners allowed to reach the failover port
    /// (IPv4 addresses are stored as `::ffff:a.b.c.d`). Addresses no longer listed are removed.
    pub fn set_partners(&mut self, addrs: &[IpAddr]) -> Result<(), XdpError> {
        let wanted: HashSet<PartnerKey> = addrs.iter().map(|a| partner_key(*a)).collect();
        if let Some(max) = self.partners_capacity {
            if wanted.len() > max as usize {
                return Err(XdpError::TooManyPartners {
                    ifname: self.ifname.clone(),
                    count: wanted.len(),
                    max,
                });
            }
        }
        let present: Vec<PartnerKey> = self
            .partners
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|source| self.map_error(MAP_PARTNERS, "listing partners", source))?;
        for key in present.iter().filter(|k| !wanted.contains(k)) {
            if let Err(source) = self.partners.remove(key) {
                return Err(self.map_error(MAP_PARTNERS, "removing a partner", source));
            }
        }
        for key in &wanted {
            if let Err(source) = self.partners.insert(key, PARTNER_PRESENT, 0) {
                return Err(self.map_error(MAP_PARTNERS, "adding a partner", source));
            }
        }
        tracing::debug!(ifname = %self.ifname, partners = wanted.len(), "failover partners set");
        Ok(())
    }

    /// Sets the per-client and per-relay token buckets (takes effect for the next frame;
    /// all zero = no limit, the state after attach).
    pub fn set_rate_limits(&mut self, limits: RateLimitConfig) -> Result<(), XdpError> {
        self.rate_limits
            .set(0, limits, 0)
            .map_err(|source| self.map_error(MAP_RATE_LIMITS, "writing the rate limits", source))
    }

    /// Hands over the map of known hardware addresses and the unknown-client switch (once;
    /// None when taken already or the object has none).
    pub fn take_known_macs(&mut self) -> Option<KnownMacMap> {
        self.known.take()
    }

    /// Replaces the program's configuration (takes effect for the next frame).
    pub fn set_config(&mut self, cfg: XdpConfig) -> Result<(), XdpError> {
        self.config
            .set(0, cfg, 0)
            .map_err(|source| self.map_error(MAP_CONFIG, "writing the configuration", source))?;
        self.current = cfg;
        Ok(())
    }

    /// Switches the failover standby filter (`CFG_DHCPV4_STANDBY`, dropping only requests
    /// with `secs <= max_secs`, all when 0); `Ok(true)` when that changed the configuration.
    pub fn set_standby(&mut self, on: bool, max_secs: u16) -> Result<bool, XdpError> {
        let mut cfg = self.current;
        let flag = xdhcpd_common::CFG_DHCPV4_STANDBY;
        cfg.flags = if on {
            cfg.flags | flag
        } else {
            cfg.flags & !flag
        };
        if on {
            cfg.standby_max_secs = max_secs;
        }
        if cfg == self.current {
            return Ok(false);
        }
        self.set_config(cfg)?;
        Ok(true)
    }

    /// The program's counters, summed over all CPUs and RX queues.
    pub fn counters(&self) -> Result<Counters, XdpError> {
        let mut totals = [0u64; COUNTER_COUNT as usize];
        for q in 0..counted_queues(&self.ifname) {
            for (c, total) in (0u32..).zip(totals.iter_mut()) {
                let per_cpu = self
                    .counters
                    .get(&counter_index(q, c), 0)
                    .map_err(|source| self.map_error(MAP_COUNTERS, "reading counters", source))?;
                *total = per_cpu.iter().fold(*total, |acc, v| acc.wrapping_add(*v));
            }
        }
        Ok(Counters::from_totals(&totals))
    }

    /// The mode the program was actually attached in (`Driver` or `Skb`, never `Auto`).
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Kernel id of the loaded program (as shown by `bpftool prog show`), if it can be read.
    pub fn program_id(&self) -> Option<u32> {
        let program: &Xdp = self.ebpf.program(PROGRAM_NAME)?.try_into().ok()?;
        program.info().ok().map(|info| info.id())
    }

    /// Runs the loaded program `repeat` times on `frame` inside the kernel
    /// (`BPF_PROG_TEST_RUN`; no interface involved, maps and configuration as they are):
    /// returns the XDP action of the last run and the kernel's mean time per run. For cost
    /// measurements (`benches/RESULTS.md`).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> std::io::Result<(u32, Duration)> {
        use std::os::fd::{AsFd, AsRawFd};
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| std::io::Error::other("program not loaded"))?;
        let fd = program
            .fd()
            .map_err(std::io::Error::other)?
            .as_fd()
            .as_raw_fd();
        let size_in = u32::try_from(frame.len()).map_err(std::io::Error::other)?;
        // `union bpf_attr`'s `test` member: prog_fd, retval, data_size_in, data_size_out,
        // data_in, data_out, repeat, duration, then fields left zero.
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
        attr[8..12].copy_from_slice(&size_in.to_ne_bytes());
        attr[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
        attr[32..36].copy_from_slice(&repeat.to_ne_bytes());
        const BPF_PROG_TEST_RUN: libc::c_long = 10;
        // SAFETY: attr is a zeroed bpf_attr prefix of the given size whose data_in points to
        // `frame` (alive for the call, size_in bytes); data_out is null, so the kernel writes
        // only into attr (retval, duration, data_size_out).
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                attr.as_mut_ptr(),
                attr.len() as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let word =
            |at: usize| u32::from_ne_bytes([attr[at], attr[at + 1], attr[at + 2], attr[at + 3]]);
        Ok((word(4), Duration::from_nanos(u64::from(word(36)))))
    }

    fn map_error(
        &self,
        map: &'static str,
        op: &'static str,
        source: aya::maps::MapError,
    ) -> XdpError {
        XdpError::Map {
            ifname: self.ifname.clone(),
            map,
            op,
            cause: Box::new(source),
        }
    }
}

impl Drop for XdpSteering {
    fn drop(&mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        // Detach explicitly (rather than relying on the link fd closing) so a failure is logged.
        let detached = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(ProgramError::NotAttached)
            .and_then(<&mut Xdp>::try_from)
            .and_then(|p| p.detach(link));
        match detached {
            Ok(()) => tracing::info!(ifname = %self.ifname, "XDP program detached"),
            Err(e) => tracing::warn!(ifname = %self.ifname, error = %e, "detaching XDP program"),
        }
    }
}

/// The partner-map key of an address (IPv4 as `::ffff:a.b.c.d`, IPv4-mapped IPv6 unchanged).
pub fn partner_key(addr: IpAddr) -> PartnerKey {
    match addr {
        IpAddr::V4(v4) => PartnerKey::v4(v4.octets()),
        IpAddr::V6(v6) => PartnerKey::v6(v6.octets()),
    }
}

fn ifindex(ifname: &str) -> Result<u32, XdpError> {
    let invalid = || XdpError::InvalidInterfaceName {
        ifname: ifname.to_owned(),
    };
    if ifname.is_empty() || ifname.len() >= libc::IF_NAMESIZE {
        return Err(invalid());
    }
    let c_name = CString::new(ifname).map_err(|_| invalid())?;
    // SAFETY: c_name is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(XdpError::InterfaceNotFound {
            ifname: ifname.to_owned(),
        });
    }
    Ok(index)
}

/// The object bytes and a description of where they came from (for messages).
fn locate_object(explicit: Option<&Path>) -> Result<(Cow<'static, [u8]>, String), XdpError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map(|bytes| (Cow::Owned(bytes), path.display().to_string()))
            .map_err(|cause| XdpError::ReadObject {
                path: path.to_owned(),
                cause,
            })
    };
    if let Some(path) = explicit {
        return read(path);
    }
    if has_embedded_object() {
        return Ok((
            Cow::Borrowed(EMBEDDED_OBJECT),
            "the embedded object".to_owned(),
        ));
    }
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(DEFAULT_OBJECT_PATH),
        PathBuf::from(DEFAULT_OBJECT_PATH),
    ];
    match candidates.iter().find(|p| p.is_file()) {
        Some(path) => read(path),
        None => Err(XdpError::NoObject {
            searched: candidates.to_vec(),
        }),
    }
}

fn take_map<M>(ebpf: &mut Ebpf, origin: &str, name: &'static str) -> Result<M, XdpError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    typed_map(ebpf.take_map(name), origin, name)
}

fn typed_map<M>(
    map: Option<aya::maps::Map>,
    origin: &str,
    name: &'static str,
) -> Result<M, XdpError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = map.ok_or_else(|| XdpError::MapMissing {
        origin: origin.to_owned(),
        map: name,
    })?;
    M::try_from(map).map_err(|source| XdpError::MapType {
        origin: origin.to_owned(),
        map: name,
        cause: Box::new(source),
    })
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, origin: &str) -> Result<&'a mut Xdp, XdpError> {
    let missing = || XdpError::ProgramMissing {
        origin: origin.to_owned(),
        program: PROGRAM_NAME,
    };
    let program = ebpf.program_mut(PROGRAM_NAME).ok_or_else(missing)?;
    program.try_into().map_err(|_| missing())
}

fn attach_with_mode(
    program: &mut Xdp,
    ifname: &str,
    ifindex: u32,
    mode: AttachMode,
) -> Result<(XdpLinkId, AttachMode), XdpError> {
    let attach_error = |mode: AttachMode, source| XdpError::Attach {
        ifname: ifname.to_owned(),
        mode: mode.name(),
        cause: Box::new(source),
    };
    match mode {
        AttachMode::Driver => program
            .attach_to_if_index(ifindex, XdpFlags::DRV_MODE)
            .map(|link| (link, AttachMode::Driver))
            .map_err(|e| attach_error(AttachMode::Driver, e)),
        AttachMode::Skb => program
            .attach_to_if_index(ifindex, XdpFlags::SKB_MODE)
            .map(|link| (link, AttachMode::Skb))
            .map_err(|e| attach_error(AttachMode::Skb, e)),
        AttachMode::Auto => match program.attach_to_if_index(ifindex, XdpFlags::DRV_MODE) {
            Ok(link) => Ok((link, AttachMode::Driver)),
            Err(driver) => {
                tracing::warn!(
                    ifname,
                    error = %error::chain(&driver),
                    "driver-mode XDP attach failed; falling back to SKB (generic) mode"
                );
                match program.attach_to_if_index(ifindex, XdpFlags::SKB_MODE) {
                    Ok(link) => Ok((link, AttachMode::Skb)),
                    Err(skb) => Err(XdpError::AttachAuto {
                        ifname: ifname.to_owned(),
                        driver: Box::new(driver),
                        skb: Box::new(skb),
                    }),
                }
            }
        },
    }
}

/// RX queues whose counters are read: the interface's RX queues now (sysfs; a queue beyond
/// [`COUNTER_QUEUES`] counts in the last one), all of them when sysfs cannot say.
pub(crate) fn counted_queues(ifname: &str) -> u32 {
    let n = std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(0);
    if n == 0 {
        COUNTER_QUEUES
    } else {
        n.min(COUNTER_QUEUES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_partner_key_is_v4_mapped_v6() {
        let key = partner_key("10.88.0.2".parse().unwrap());
        let mapped: std::net::Ipv6Addr = "::ffff:10.88.0.2".parse().unwrap();
        assert_eq!(key.addr, mapped.octets());
    }

    #[test]
    fn interface_names_are_validated_before_lookup() {
        assert!(matches!(
            ifindex(""),
            Err(XdpError::InvalidInterfaceName { .. })
        ));
        assert!(matches!(
            ifindex("a\0b"),
            Err(XdpError::InvalidInterfaceName { .. })
        ));
        assert!(matches!(
            ifindex("0123456789abcdefXYZ"),
            Err(XdpError::InvalidInterfaceName { .. })
        ));
        let err = ifindex("xdhcpd-nonexist").unwrap_err();
        assert_eq!(
            err.to_string(),
            "interface xdhcpd-nonexist not found (in the current network namespace)"
        );
    }

    #[test]
    fn missing_object_error_tells_how_to_get_one() {
        let err = locate_object(Some(Path::new("/nonexistent/xdhcpd-ebpf.o"))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/xdhcpd-ebpf.o"),
            "{err}"
        );
        let err = XdpError::NoObject {
            searched: vec![PathBuf::from("a"), PathBuf::from("b")],
        };
        assert_eq!(
            err.to_string(),
            "no eBPF object: run `cargo xtask build-ebpf` or pass --ebpf-object (looked for a, b)"
        );
    }
}
