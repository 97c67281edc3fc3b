//! AF_XDP sockets over `libc`: one UMEM per socket, four rings, batched.
//!
//! # Frame ownership
//!
//! The UMEM is `frame_count` frames of `frame_size` bytes. Frame *i* starts
//! at UMEM address `i * frame_size`. The frames are split once, at open, into
//! two pools by index:
//!
//! * the **rx pool** `[0, frame_count - tx_frames)`: these feed the fill ring;
//! * the **tx pool** `[frame_count - tx_frames, frame_count)`: handed out by
//!   [`XskSocket::alloc_tx_frame`] for packets we originate.
//!
//! Every frame is at every moment in exactly one of these places
//! ([`FrameState`]):
//!
//! | state      | where                                                     |
//! |------------|-----------------------------------------------------------|
//! | `FreeRx`   | our stash of rx-pool frames waiting to go to the fill ring |
//! | `KernelRx` | fill ring, inside the kernel, or rx ring not yet read      |
//! | `Caller`   | returned by `recv` / `alloc_tx_frame`, owned by the caller |
//! | `KernelTx` | tx ring, in flight, or completion ring not yet reaped      |
//! | `FreeTx`   | free list of tx-pool frames                                |
//!
//! Transitions: `FreeRx -> KernelRx` (flush refills the fill ring),
//! `KernelRx -> Caller` (recv), `FreeTx -> Caller` (alloc_tx_frame),
//! `Caller -> KernelTx` (tx_push), `Caller -> Free*` (recycle),
//! `KernelTx -> Free*` (completion reaped in flush). `Free*` is the frame's
//! home pool, by index, so a received frame reflected as a reply goes back to
//! the fill ring after its completion and a tx-pool frame back to the free
//! list. A per-frame state byte enforces this: a frame the caller does not own
//! cannot be pushed, recycled, or accessed through `frame`/`frame_mut`, and an
//! rx or completion descriptor for a frame not in the kernel is counted and
//! ignored instead of duplicating it. [`XskSocket::verify_accounting`]
//! checks the counters against the state table (tests use it).
//!
//! The fill ring is kept as full as the rx pool allows: every flush moves the
//! whole `FreeRx` stash into it. Each ring's producer or consumer index is
//! stored once per batch.

mod error;
mod ring;
mod umem;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use error::{XskError, XskOp};
use ring::{ConsRing, ProdRing, RingMap};
use umem::UmemArea;

use crate::sys;

/// How to bind: driver zero-copy, kernel copy, or try zero-copy first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// Try zero-copy; if the driver refuses, bind in copy mode (logged).
    Auto,
    Copy,
    ZeroCopy,
}

/// What to open.
#[derive(Clone, Debug)]
pub struct XskConfig {
    pub ifname: String,
    pub queue: u32,
    /// 2048 or 4096.
    pub frame_size: u32,
    /// Total UMEM frames (rx pool + tx pool).
    pub frame_count: u32,
    /// Frames reserved for [`XskSocket::alloc_tx_frame`] (0 for a server that
    /// only replies in place). Must leave at least one rx-pool frame.
    pub tx_frames: u32,
    /// Size of each of the four rings; a power of two.
    pub ring_size: u32,
    pub mode: BindMode,
    /// Set SO_PREFER_BUSY_POLL / SO_BUSY_POLL and drive rx with a syscall on
    /// every flush (for a dedicated, spinning worker core).
    pub busy_poll: bool,
    /// Back the UMEM with 2 MiB huge pages if any are reserved.
    pub hugepages: bool,
}

impl XskConfig {
    /// Defaults: 4096 frames of 2048 bytes, 1024 of them for tx, rings of
    /// 2048, auto mode, no busy poll, normal pages.
    pub fn new(ifname: impl Into<String>, queue: u32) -> Self {
        Self {
            ifname: ifname.into(),
            queue,
            frame_size: 2048,
            frame_count: 4096,
            tx_frames: 1024,
            ring_size: 2048,
            mode: BindMode::Auto,
            busy_poll: false,
            hugepages: false,
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> XskError {
        XskError::Config {
            ifname: self.ifname.clone(),
            queue: self.queue,
            reason: reason.into(),
        }
    }

    fn validate(&self) -> Result<(), XskError> {
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(self.invalid(format!(
                "frame_size {} must be 2048 or 4096",
                self.frame_size
            )));
        }
        if !self.ring_size.is_power_of_two() || !(64..=32768).contains(&self.ring_size) {
            return Err(self.invalid(format!(
                "ring_size {} must be a power of two in 64..=32768",
                self.ring_size
            )));
        }
        if self.frame_count == 0 || self.frame_count > (1 << 22) {
            return Err(self.invalid(format!(
                "frame_count {} must be in 1..=4194304",
                self.frame_count
            )));
        }
        if self.tx_frames >= self.frame_count {
            return Err(self.invalid(format!(
                "tx_frames {} leaves no frame for the fill ring (frame_count {})",
                self.tx_frames, self.frame_count
            )));
        }
        Ok(())
    }
}

/// One rx or tx descriptor: the UMEM address of the packet's first byte and
/// its length. Received packets start after the kernel's headroom inside
/// their frame (the address is not frame-aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
}

/// The kernel's XDP_STATISTICS for this socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Dropped for reasons other than an invalid descriptor (e.g. no frame).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Dropped because our rx ring was full (we did not read fast enough).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the tx ring empty when woken.
    pub tx_ring_empty_descs: u64,
}

/// Where a frame is; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameState {
    FreeRx,
    KernelRx,
    Caller,
    KernelTx,
    FreeTx,
}

/// Counts of frames per place. They always sum to `total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameAccounting {
    pub total: u32,
    pub free_rx: u32,
    pub kernel_rx: u32,
    pub caller: u32,
    pub kernel_tx: u32,
    pub free_tx: u32,
}

impl FrameAccounting {
    pub fn sum(&self) -> u32 {
        self.free_rx + self.kernel_rx + self.caller + self.kernel_tx + self.free_tx
    }
}

/// Misuse and anomalies, counted instead of panicking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskAnomalies {
    /// rx descriptors naming a frame that was not in the kernel, or with a
    /// length past the frame's end (frame recycled).
    pub rx_bad_desc: u64,
    /// Completions naming a frame that was not in flight.
    pub completion_bad_addr: u64,
    /// tx_push / recycle of a frame the caller does not own.
    pub caller_misuse: u64,
}

/// Why [`XskSocket::tx_push`] did not queue a frame. The caller still owns
/// the frame in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxPushError {
    #[error("tx ring full; flush and retry")]
    RingFull,
    #[error("frame is not owned by the caller")]
    NotOwned,
    #[error("empty packet or packet past the end of its frame")]
    BadLength,
}

/// An open, bound AF_XDP socket with its own UMEM.
///
/// `Send` (move it into its worker thread) but not `Sync`: every method that
/// touches a ring needs `&mut self`, and the rings are single-producer.
pub struct XskSocket {
    // Field order is drop order: rings are unmapped, then the socket closed,
    // then the UMEM unmapped.
    rx: ConsRing<libc::xdp_desc>,
    tx: ProdRing<libc::xdp_desc>,
    fill: ProdRing<u64>,
    comp: ConsRing<u64>,
    fd: OwnedFd,
    umem: UmemArea,

    ifname: String,
    queue: u32,
    ifindex: u32,
    mode: BindMode,
    busy_poll: bool,
    frame_shift: u32,
    frame_count: u32,
    /// Frames with index below this belong to the rx pool.
    rx_frames: u32,
    ring_size: u32,

    state: Vec<FrameState>,
    free_rx: Vec<u64>,
    free_tx: Vec<u64>,
    kernel_rx: u32,
    caller: u32,
    kernel_tx: u32,
    anomalies: XskAnomalies,
}

// SAFETY: the raw pointers in the rings point into mappings owned by this
// value; moving it to another thread moves their only user. Not Sync.
unsafe impl Send for XskSocket {}

/// sendto() budget of the kernel's copy-mode transmit per call.
const COPY_TX_BATCH: u32 = 32;

impl XskSocket {
    /// Opens a socket on `cfg.ifname` queue `cfg.queue` in the calling
    /// thread's network namespace.
    pub fn open(cfg: &XskConfig) -> Result<Self, XskError> {
        cfg.validate()?;
        let name = sys::ifname_cstring(&cfg.ifname).map_err(|r| cfg.invalid(r))?;
        let ifindex = sys::ifindex_of(&name).map_err(|errno| XskError::Os {
            op: XskOp::LookupInterface,
            ifname: cfg.ifname.clone(),
            queue: cfg.queue,
            errno,
        })?;
        match cfg.mode {
            BindMode::Copy | BindMode::ZeroCopy => Self::open_mode(cfg, ifindex, cfg.mode),
            BindMode::Auto => match Self::open_mode(cfg, ifindex, BindMode::ZeroCopy) {
                Ok(s) => Ok(s),
                Err(e) if matches!(e.op(), Some(XskOp::Bind(_))) => {
                    tracing::info!("AF_XDP zero-copy unavailable, using copy mode: {e}");
                    Self::open_mode(cfg, ifindex, BindMode::Copy)
                }
                Err(e) => Err(e),
            },
        }
    }

    fn open_mode(cfg: &XskConfig, ifindex: u32, mode: BindMode) -> Result<Self, XskError> {
        let os = |op: XskOp| {
            move |errno: i32| XskError::Os {
                op,
                ifname: cfg.ifname.clone(),
                queue: cfg.queue,
                errno,
            }
        };
        let frame_size = cfg.frame_size as usize;
        let area_len = frame_size
            .checked_mul(cfg.frame_count as usize)
            .ok_or_else(|| cfg.invalid("frame_size * frame_count overflows"))?;
        let umem = UmemArea::new(area_len, cfg.hugepages).map_err(os(XskOp::MapUmem))?;

        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os(XskOp::CreateSocket)(sys::last_errno()));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let rawfd = fd.as_raw_fd();

        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: area_len as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        if let Err(e) = sys::setsockopt(rawfd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg) {
            // Kernels before 6.8 only know the shorter v1 struct.
            let v1 = libc::xdp_umem_reg_v1 {
                addr: reg.addr,
                len: reg.len,
                chunk_size: reg.chunk_size,
                headroom: 0,
            };
            if e != libc::EINVAL
                || sys::setsockopt(rawfd, libc::SOL_XDP, libc::XDP_UMEM_REG, &v1).is_err()
            {
                return Err(os(XskOp::RegisterUmem)(e));
            }
        }
        let rs = cfg.ring_size;
        for (opt, name) in [
            (libc::XDP_UMEM_FILL_RING, "fill"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion"),
            (libc::XDP_RX_RING, "rx"),
            (libc::XDP_TX_RING, "tx"),
        ] {
            sys::setsockopt(rawfd, libc::SOL_XDP, opt, &rs)
                .map_err(os(XskOp::SetRingSize(name)))?;
        }
        let off = mmap_offsets(rawfd).map_err(os(XskOp::GetMmapOffsets))?;

        let desc_len = std::mem::size_of::<libc::xdp_desc>();
        let addr_len = std::mem::size_of::<u64>();
        let map = |o: &libc::xdp_ring_offset, elem: usize, pgoff: u64, name: &'static str| {
            RingMap::map(rawfd, o.desc as usize + rs as usize * elem, pgoff)
                .map_err(os(XskOp::MapRing(name)))
        };
        let rx_map = map(&off.rx, desc_len, libc::XDP_PGOFF_RX_RING as u64, "rx")?;
        let tx_map = map(&off.tx, desc_len, libc::XDP_PGOFF_TX_RING as u64, "tx")?;
        let fill_map = map(&off.fr, addr_len, libc::XDP_UMEM_PGOFF_FILL_RING, "fill")?;
        let comp_map = map(
            &off.cr,
            addr_len,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "completion",
        )?;
        // SAFETY: each map was sized from the same offsets and ring size.
        let (rx, tx, fill, comp) = unsafe {
            (
                ConsRing::new(rx_map, &off.rx, rs),
                ProdRing::new(tx_map, &off.tx, rs),
                ProdRing::new(fill_map, &off.fr, rs),
                ConsRing::new(comp_map, &off.cr, rs),
            )
        };

        let rx_frames = cfg.frame_count - cfg.tx_frames;
        let mut state = vec![FrameState::FreeRx; cfg.frame_count as usize];
        let shift = cfg.frame_size.trailing_zeros();
        let mut free_rx = Vec::with_capacity(rx_frames as usize);
        // Reverse, so pops from the end hand out low frames first.
        free_rx.extend((0..rx_frames).rev().map(|i| u64::from(i) << shift));
        let mut free_tx = Vec::with_capacity(cfg.tx_frames as usize);
        for i in (rx_frames..cfg.frame_count).rev() {
            state[i as usize] = FrameState::FreeTx;
            free_tx.push(u64::from(i) << shift);
        }

        let mut s = Self {
            rx,
            tx,
            fill,
            comp,
            fd,
            umem,
            ifname: cfg.ifname.clone(),
            queue: cfg.queue,
            ifindex,
            mode,
            busy_poll: cfg.busy_poll,
            frame_shift: shift,
            frame_count: cfg.frame_count,
            rx_frames,
            ring_size: rs,
            state,
            free_rx,
            free_tx,
            kernel_rx: 0,
            caller: 0,
            kernel_tx: 0,
            anomalies: XskAnomalies::default(),
        };
        // Fill before bind so that the first packets find frames.
        s.refill();

        let mode_flag = match mode {
            BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
            BindMode::Copy => libc::XDP_COPY,
            BindMode::Auto => 0,
        };
        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP | mode_flag,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: cfg.queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: a valid sockaddr_xdp of the size given.
        let rc = unsafe {
            libc::bind(
                rawfd,
                (&sxdp as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os(XskOp::Bind(mode))(sys::last_errno()));
        }
        s.mode = match xdp_options(rawfd) {
            Ok(flags) if flags & libc::XDP_OPTIONS_ZEROCOPY != 0 => BindMode::ZeroCopy,
            Ok(_) => BindMode::Copy,
            Err(e) => return Err(os(XskOp::QueryOptions)(e)),
        };
        if cfg.busy_poll {
            // Best effort: without it we still work, only with more latency.
            let one: i32 = 1;
            let usecs: i32 = 20;
            let budget: i32 = 64;
            let r = sys::setsockopt(rawfd, libc::SOL_SOCKET, libc::SO_PREFER_BUSY_POLL, &one)
                .and_then(|_| sys::setsockopt(rawfd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &usecs))
                .and_then(|_| {
                    sys::setsockopt(rawfd, libc::SOL_SOCKET, libc::SO_BUSY_POLL_BUDGET, &budget)
                });
            if let Err(e) = r {
                tracing::warn!("{}", os(XskOp::SetBusyPoll)(e));
            }
        }
        tracing::info!(
            "AF_XDP socket on {} (ifindex {ifindex}) queue {} bound in {:?} mode: {} frames of {} \
             bytes ({} for tx){}, rings of {rs}",
            cfg.ifname,
            cfg.queue,
            s.mode,
            cfg.frame_count,
            cfg.frame_size,
            cfg.tx_frames,
            if s.umem.is_huge() { ", huge pages" } else { "" },
        );
        Ok(s)
    }

    /// The socket descriptor, for the XDP program's XskMap.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The mode the kernel actually bound (never `Auto`).
    pub fn bound_mode(&self) -> BindMode {
        self.mode
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn frame_size(&self) -> u32 {
        1 << self.frame_shift
    }

    /// UMEM address of the start of the frame containing `addr`.
    pub fn frame_base(&self, addr: u64) -> u64 {
        addr & !((1u64 << self.frame_shift) - 1)
    }

    fn frame_index(&self, addr: u64) -> Option<usize> {
        let ix = addr >> self.frame_shift;
        (ix < u64::from(self.frame_count)).then_some(ix as usize)
    }

    fn home_is_rx(&self, ix: usize) -> bool {
        ix < self.rx_frames as usize
    }

    /// Takes up to `max` received packets (non-blocking), appending them to
    /// `out`; the caller owns their frames until `tx_push` or `recycle`.
    /// Returns how many were appended.
    pub fn recv(&mut self, out: &mut Vec<Desc>, max: usize) -> usize {
        let n = self.rx.available(max.min(u32::MAX as usize) as u32);
        let mut taken = 0;
        for i in 0..n {
            let d = self.rx.get(i);
            let Some(ix) = self.frame_index(d.addr) else {
                self.anomalies.rx_bad_desc += 1;
                continue;
            };
            if self.state[ix] != FrameState::KernelRx {
                self.anomalies.rx_bad_desc += 1;
                continue;
            }
            self.kernel_rx -= 1;
            let end = (ix as u64 + 1) << self.frame_shift;
            if d.len == 0 || d.addr + u64::from(d.len) > end {
                // Cannot happen with a sane kernel; keep the frame, drop the packet.
                self.anomalies.rx_bad_desc += 1;
                self.state[ix] = FrameState::FreeRx;
                self.free_rx.push(self.frame_base(d.addr));
                continue;
            }
            self.state[ix] = FrameState::Caller;
            self.caller += 1;
            out.push(Desc {
                addr: d.addr,
                len: d.len,
            });
            taken += 1;
        }
        self.rx.release(n);
        taken
    }

    /// Bytes from `addr` to the end of its frame: the whole frame
    /// (`frame_size` bytes) for a frame-aligned address such as one from
    /// `alloc_tx_frame`, or packet start onwards for an rx descriptor.
    /// Empty if the caller does not own the frame or `addr` is outside the
    /// UMEM.
    pub fn frame(&self, addr: u64) -> &[u8] {
        match self.owned_range(addr) {
            // SAFETY: in-bounds range of the UMEM; the caller owns the frame,
            // so the kernel neither reads nor writes it now.
            Some((start, len)) => unsafe {
                std::slice::from_raw_parts(self.umem.as_ptr().add(start), len)
            },
            None => &[],
        }
    }

    /// Mutable form of [`frame`](Self::frame), to write a reply in place.
    pub fn frame_mut(&mut self, addr: u64) -> &mut [u8] {
        match self.owned_range(addr) {
            // SAFETY: as in `frame`; `&mut self` excludes other borrows.
            Some((start, len)) => unsafe {
                std::slice::from_raw_parts_mut(self.umem.as_ptr().add(start), len)
            },
            None => &mut [],
        }
    }

    /// The packet bytes of a received descriptor (empty if not owned).
    pub fn packet(&self, d: &Desc) -> &[u8] {
        let f = self.frame(d.addr);
        &f[..(d.len as usize).min(f.len())]
    }

    fn owned_range(&self, addr: u64) -> Option<(usize, usize)> {
        let ix = self.frame_index(addr)?;
        if self.state[ix] != FrameState::Caller {
            return None;
        }
        let end = (ix + 1) << self.frame_shift;
        if end > self.umem.len() {
            return None;
        }
        Some((addr as usize, end - addr as usize))
    }

    /// Queues an owned frame for transmit (published at the next `flush`).
    /// After completion the frame returns to its home pool.
    pub fn tx_push(&mut self, d: Desc) -> Result<(), TxPushError> {
        let Some(ix) = self.frame_index(d.addr) else {
            self.anomalies.caller_misuse += 1;
            return Err(TxPushError::NotOwned);
        };
        if self.state[ix] != FrameState::Caller {
            self.anomalies.caller_misuse += 1;
            return Err(TxPushError::NotOwned);
        }
        let end = (ix as u64 + 1) << self.frame_shift;
        if d.len == 0 || d.addr + u64::from(d.len) > end {
            return Err(TxPushError::BadLength);
        }
        let desc = libc::xdp_desc {
            addr: d.addr,
            len: d.len,
            options: 0,
        };
        if !self.tx.push(desc) {
            return Err(TxPushError::RingFull);
        }
        self.state[ix] = FrameState::KernelTx;
        self.caller -= 1;
        self.kernel_tx += 1;
        Ok(())
    }

    /// Free tx slots (for sizing a batch before building packets).
    pub fn tx_free(&mut self) -> u32 {
        self.tx.free(self.ring_size)
    }

    /// Gives an owned frame back without sending it: rx-pool frames go to the
    /// fill ring at the next flush, tx-pool frames to the free list. Returns
    /// false (and counts misuse) if the caller did not own it.
    pub fn recycle(&mut self, addr: u64) -> bool {
        match self.frame_index(addr) {
            Some(ix) if self.state[ix] == FrameState::Caller => {
                self.caller -= 1;
                self.send_home(ix);
                true
            }
            _ => {
                self.anomalies.caller_misuse += 1;
                false
            }
        }
    }

    fn send_home(&mut self, ix: usize) {
        let base = (ix as u64) << self.frame_shift;
        if self.home_is_rx(ix) {
            self.state[ix] = FrameState::FreeRx;
            self.free_rx.push(base);
        } else {
            self.state[ix] = FrameState::FreeTx;
            self.free_tx.push(base);
        }
    }

    /// A free tx-pool frame (frame-aligned address) for a packet we
    /// originate, or None if all are in use.
    pub fn alloc_tx_frame(&mut self) -> Option<u64> {
        let addr = self.free_tx.pop()?;
        let ix = (addr >> self.frame_shift) as usize;
        self.state[ix] = FrameState::Caller;
        self.caller += 1;
        Some(addr)
    }

    /// Free tx-pool frames.
    pub fn free_tx_frames(&self) -> usize {
        self.free_tx.len()
    }

    /// Publishes queued tx descriptors and kicks the kernel if it asks to be
    /// woken (copy mode always does), reaps completions, refills the fill
    /// ring, and wakes rx if the driver asks (or always with busy polling).
    pub fn flush(&mut self) -> Result<(), XskError> {
        self.tx.submit();
        if self.tx.kernel_pending() > 0 && (self.tx.needs_wakeup() || self.mode == BindMode::Copy) {
            self.kick_tx()?;
        }
        self.reap_completions();
        self.refill();
        if self.busy_poll || self.fill.needs_wakeup() {
            self.wake_rx()?;
        }
        Ok(())
    }

    fn kick_tx(&mut self) -> Result<(), XskError> {
        // Copy mode sends at most COPY_TX_BATCH per call and answers EAGAIN
        // when more remain (or the completion ring is full): repeat, reaping
        // completions in between, but bounded so a stuck device cannot spin us.
        let mut rounds = self.tx.kernel_pending() / COPY_TX_BATCH + 2;
        loop {
            // SAFETY: sendto with no data only wakes the kernel's transmit.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            let errno = if rc < 0 { sys::last_errno() } else { 0 };
            match errno {
                0 if self.mode == BindMode::ZeroCopy => return Ok(()),
                0 | libc::EAGAIN => self.reap_completions(),
                // Device queue busy or out of buffers: try again next flush.
                libc::EBUSY | libc::ENOBUFS | libc::EINTR => return Ok(()),
                e => return Err(self.os_err(XskOp::Transmit, e)),
            }
            rounds -= 1;
            if rounds == 0 || self.tx.kernel_pending() == 0 {
                return Ok(());
            }
        }
    }

    fn wake_rx(&mut self) -> Result<(), XskError> {
        // SAFETY: a zero-length, non-blocking recvfrom only drives the kernel.
        let rc = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            match sys::last_errno() {
                libc::EAGAIN | libc::EBUSY | libc::EINTR | libc::ENOBUFS => {}
                e => return Err(self.os_err(XskOp::WakeRx, e)),
            }
        }
        Ok(())
    }

    fn reap_completions(&mut self) {
        let n = self.comp.available(self.ring_size);
        for i in 0..n {
            let addr = self.comp.get(i);
            match self.frame_index(addr) {
                Some(ix) if self.state[ix] == FrameState::KernelTx => {
                    self.kernel_tx -= 1;
                    self.send_home(ix);
                }
                _ => self.anomalies.completion_bad_addr += 1,
            }
        }
        self.comp.release(n);
    }

    /// Moves as much of the FreeRx stash into the fill ring as fits (one
    /// producer update).
    fn refill(&mut self) {
        if self.free_rx.is_empty() {
            return;
        }
        let n = self.fill.free(self.free_rx.len() as u32) as usize;
        let n = n.min(self.free_rx.len());
        for _ in 0..n {
            let Some(addr) = self.free_rx.pop() else {
                break;
            };
            if !self.fill.push(addr) {
                self.free_rx.push(addr);
                break;
            }
            let ix = (addr >> self.frame_shift) as usize;
            self.state[ix] = FrameState::KernelRx;
            self.kernel_rx += 1;
        }
        self.fill.submit();
    }

    /// Waits up to `timeout_ms` (-1: forever) for rx descriptors. `Ok(false)`
    /// on timeout or signal.
    pub fn wait_readable(&self, timeout_ms: i32) -> Result<bool, XskError> {
        sys::poll_readable(self.fd.as_raw_fd(), timeout_ms).map_err(|e| self.os_err(XskOp::Poll, e))
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> Result<XskStats, XskError> {
        let mut st: libc::xdp_statistics = zeroed_stats();
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: buffer and length match.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(self.os_err(XskOp::Statistics, sys::last_errno()));
        }
        // Older kernels fill only the first three fields; the rest stay 0.
        Ok(XskStats {
            rx_dropped: st.rx_dropped,
            rx_invalid_descs: st.rx_invalid_descs,
            tx_invalid_descs: st.tx_invalid_descs,
            rx_ring_full: st.rx_ring_full,
            rx_fill_ring_empty_descs: st.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: st.tx_ring_empty_descs,
        })
    }

    /// Userspace anomaly counters (see [`XskAnomalies`]).
    pub fn anomalies(&self) -> XskAnomalies {
        self.anomalies
    }

    /// Frame counts per place, from the running counters.
    pub fn accounting(&self) -> FrameAccounting {
        FrameAccounting {
            total: self.frame_count,
            free_rx: self.free_rx.len() as u32,
            kernel_rx: self.kernel_rx,
            caller: self.caller,
            kernel_tx: self.kernel_tx,
            free_tx: self.free_tx.len() as u32,
        }
    }

    /// Recounts the per-frame state table and checks it against the running
    /// counters and the total. O(frame_count): for tests and diagnostics.
    pub fn verify_accounting(&self) -> Result<FrameAccounting, String> {
        let mut c = FrameAccounting {
            total: self.frame_count,
            ..Default::default()
        };
        for s in &self.state {
            match s {
                FrameState::FreeRx => c.free_rx += 1,
                FrameState::KernelRx => c.kernel_rx += 1,
                FrameState::Caller => c.caller += 1,
                FrameState::KernelTx => c.kernel_tx += 1,
                FrameState::FreeTx => c.free_tx += 1,
            }
        }
        let counters = self.accounting();
        if c != counters {
            return Err(format!(
                "frame state table {c:?} disagrees with counters {counters:?}"
            ));
        }
        if c.sum() != c.total {
            return Err(format!("frames sum to {} of {}: {c:?}", c.sum(), c.total));
        }
        // The fill ring must be as full as the rx pool allows.
        if c.free_rx > 0 && c.kernel_rx < self.ring_size {
            return Err(format!(
                "fill ring not full: {} frames stashed while only {} are with the kernel",
                c.free_rx, c.kernel_rx
            ));
        }
        Ok(c)
    }

    fn os_err(&self, op: XskOp, errno: i32) -> XskError {
        XskError::Os {
            op,
            ifname: self.ifname.clone(),
            queue: self.queue,
            errno,
        }
    }
}

fn zeroed_stats() -> libc::xdp_statistics {
    libc::xdp_statistics {
        rx_dropped: 0,
        rx_invalid_descs: 0,
        tx_invalid_descs: 0,
        rx_ring_full: 0,
        rx_fill_ring_empty_descs: 0,
        tx_ring_empty_descs: 0,
    }
}

/// XDP_MMAP_OFFSETS, accepting the pre-5.4 layout without `flags`.
fn mmap_offsets(fd: RawFd) -> Result<libc::xdp_mmap_offsets, i32> {
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
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: buffer and length match.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(sys::last_errno());
    }
    if len as usize == std::mem::size_of::<libc::xdp_mmap_offsets_v1>() {
        // The v1 layout is four {producer, consumer, desc}; re-read it as such
        // and place the flags word where those kernels keep it (after consumer).
        // SAFETY: the kernel wrote a v1 struct at the start of `off`, which is
        // larger; reading it back as v1 is in bounds.
        let v1: libc::xdp_mmap_offsets_v1 =
            unsafe { std::ptr::read((&off as *const libc::xdp_mmap_offsets).cast()) };
        let conv = |o: libc::xdp_ring_offset_v1| libc::xdp_ring_offset {
            producer: o.producer,
            consumer: o.consumer,
            desc: o.desc,
            flags: o.consumer + 4,
        };
        off = libc::xdp_mmap_offsets {
            rx: conv(v1.rx),
            tx: conv(v1.tx),
            fr: conv(v1.fr),
            cr: conv(v1.cr),
        };
    }
    Ok(off)
}

/// getsockopt XDP_OPTIONS: XDP_OPTIONS_ZEROCOPY when bound zero-copy.
fn xdp_options(fd: RawFd) -> Result<u32, i32> {
    let mut o = libc::xdp_options { flags: 0 };
    let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
    // SAFETY: buffer and length match.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            (&mut o as *mut libc::xdp_options).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(sys::last_errno());
    }
    Ok(o.flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        let mut c = XskConfig::new("lo", 0);
        assert!(c.validate().is_ok());
        c.frame_size = 3000;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("frame_size 3000"), "{e}");
        c.frame_size = 4096;
        c.ring_size = 1000;
        assert!(c.validate().unwrap_err().to_string().contains("ring_size"));
        c.ring_size = 256;
        c.tx_frames = c.frame_count;
        assert!(c.validate().unwrap_err().to_string().contains("tx_frames"));
    }

    #[test]
    fn open_unknown_interface_names_it() {
        let c = XskConfig::new("xdhcpd-nosuch0", 3);
        let e = match XskSocket::open(&c) {
            Ok(_) => panic!("opened a socket on a missing interface"),
            Err(e) => e,
        };
        assert_eq!(e.errno(), Some(libc::ENODEV));
        assert_eq!(
            e.to_string(),
            "look up interface xdhcpd-nosuch0 queue 3: ENODEV (no such interface in this network namespace)"
        );
    }
}
