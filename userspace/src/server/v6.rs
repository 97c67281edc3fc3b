//! The daemon's DHCPv6 side: the binding table (opened, its server DUID made
//! once and kept), the engine built from `[[subnet6]]`, the commit that "ack"
//! mode needs before a committed reply leaves (the table's write-ahead log,
//! `lease_store::v6::Log6`: every record write is staged under the table lock,
//! the committer thread appends and `fdatasync`s the log for the workers'
//! tickets without that lock, `commit.rs`; the v6 background thread checkpoints
//! the table), the kernel-UDP socket on
//! [::]:547 joined to ff02::1:2 (`--io udp`, and in XDP mode only to make the
//! NIC accept the multicast group), and the UDP worker.
//!
//! The v6 binding table has one writer at a time: workers take its lock for one
//! message (a known limitation next to the v4 table's per-record locks).

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use lease_store::v6::{default_log_bytes, BindingTable6, Log6};
use xdhcpd_config::{CommitMode, Config};
use xdhcpd_dhcpv6::config::encode;
use xdhcpd_dhcpv6::reconfigure::{Reconf6Keys, Reconf6Shared, Reconfigurer6};
use xdhcpd_dhcpv6::wire::opt;
use xdhcpd_dhcpv6::{
    duid_llt, AddrPool6, Class6, Config6, Decision6, Engine6, Link6, LinkAccess6, PrefixPool6,
    Reservation6, RxMeta6, Stats6,
};

use super::iface::Interface;
use crate::clock::unix_now;

/// The DHCPv6 multicast group of servers and relays on a link (RFC 8415 §7.1).
pub const ALL_SERVERS_AND_RELAYS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// Seconds between the Unix epoch and 2000-01-01 (DUID-LLT time base).
const Y2K: u32 = 946_684_800;

/// The DHCPv6 server state the workers share.
pub struct V6Server {
    engine: Engine6,
    table: SharedTable6,
    /// "ack" mode: committed replies wait for the table flush.
    pub ack: bool,
    /// Our link-local address (source of replies to link-local clients).
    pub link_local: Option<Ipv6Addr>,
    /// Our first global address (source of replies to relays).
    pub global: Option<Ipv6Addr>,
    /// Receiving interface index.
    pub ifindex: u32,
    /// Flushes that failed (their replies were dropped).
    pub flush_errors: AtomicU64,
    /// Reconfigure (RFC 8415 §18.3.11), when `[reconfigure]` is configured: the keys and
    /// the flagged-clients hint the engine and the driver share.
    pub reconf: Option<Arc<Reconf6Shared>>,
}

/// The engine's links and classes from the configuration (options encoded once).
pub fn engine_config(config: &Config, iface: &Interface) -> anyhow::Result<Config6> {
    let v6 = &config.v6;
    let mut classes = Vec::with_capacity(config.classes.len());
    for c in &config.classes {
        let mut vendor_options = Vec::new();
        for v in &c.vendor_options6 {
            vendor_options.push(
                encode::vendor_opts(v.enterprise, &v.options)
                    .map_err(|e| anyhow::anyhow!("class {}: vendor-option: {e}", c.name))?,
            );
        }
        classes.push(Class6 {
            id: c.id,
            name: c.name.clone(),
            matches: c.matches.clone(),
            vendor_options,
        });
    }
    let mut links = Vec::new();
    let only = v6.subnets.len() == 1;
    for s in &v6.subnets {
        let mut options = Vec::new();
        if !s.dns_servers.is_empty() {
            options.push((opt::DNS_SERVERS, encode::addresses(&s.dns_servers)));
        }
        if !s.domain_search.is_empty() {
            let d = encode::domain_list(&s.domain_search)
                .map_err(|e| anyhow::anyhow!("subnet6[{}].domain-search: {e}", s.index))?;
            options.push((opt::DOMAIN_LIST, d));
        }
        if !s.ntp_servers.is_empty() {
            options.push((opt::NTP_SERVER, encode::ntp_servers(&s.ntp_servers)));
        }
        for v in &s.vendor_options {
            let d = encode::vendor_opts(v.enterprise, &v.options)
                .map_err(|e| anyhow::anyhow!("subnet6[{}].vendor-option: {e}", s.index))?;
            options.push((opt::VENDOR_OPTS, d));
        }
        let direct = match &s.interface {
            Some(n) => n == &iface.name,
            None => only,
        };
        links.push(Link6 {
            name: format!("subnet6[{}] {}/{}", s.index, s.prefix, s.prefix_len),
            prefix: s.prefix,
            prefix_len: s.prefix_len,
            ifindexes: if direct { vec![iface.index] } else { vec![] },
            addr_pools: s
                .pools
                .iter()
                .map(|&(start, end)| AddrPool6 { start, end })
                .collect(),
            prefix_pools: s
                .pd_pools
                .iter()
                .map(|p| PrefixPool6 {
                    prefix: p.prefix,
                    prefix_len: p.prefix_len,
                    delegated_len: p.delegated_len,
                })
                .collect(),
            preferred: s.preferred,
            valid: s.valid,
            t1: s.t1,
            t2: s.t2,
            rapid_commit: s.rapid_commit,
            options,
            reservations: s
                .reservations
                .iter()
                .map(|r| Reservation6 {
                    duid: r.duid.clone(),
                    address: r.address,
                    prefix: r.prefix,
                })
                .collect(),
            access: LinkAccess6 {
                deny_unknown: s.deny_unknown,
                addr_pools: s.pool_access.clone(),
                prefix_pools: s.pd_pool_access.clone(),
            },
        });
    }
    Ok(Config6 {
        links,
        trusted_relays: v6.trusted_relays.clone(),
        decline_hold: v6.decline_hold,
        leasequery_allow: v6.leasequery_allow(),
        classes,
    })
}

/// The interface's IPv6 addresses: (link-local, first global), from /proc/net/if_inet6.
pub fn interface_ipv6(name: &str) -> (Option<Ipv6Addr>, Option<Ipv6Addr>) {
    let text = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let (mut ll, mut global) = (None, None);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != name || f[0].len() != 32 {
            continue;
        }
        let Ok(v) = u128::from_str_radix(f[0], 16) else {
            continue;
        };
        let a = Ipv6Addr::from(v);
        match f[3] {
            "20" if ll.is_none() => ll = Some(a),
            "00" if global.is_none() => global = Some(a),
            _ => {}
        }
    }
    (ll, global)
}

/// The v6 binding table as the daemon shares it: one lock for its single writer, and in
/// ack mode its write-ahead log, committed and checkpointed without that lock.
pub struct SharedTable6 {
    table: Mutex<BindingTable6>,
    /// The write-ahead log (ack mode).
    log: Option<Arc<Log6>>,
}

impl SharedTable6 {
    pub fn new(table: BindingTable6) -> Self {
        SharedTable6 {
            log: table.log(),
            table: Mutex::new(table),
        }
    }

    /// The table under its lock.
    pub fn lock(&self) -> MutexGuard<'_, BindingTable6> {
        // A worker that panicked mid-write left at worst one record torn; the CRC
        // catches that at the next open. Keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The write-ahead log (ack mode).
    pub fn log(&self) -> Option<&Arc<Log6>> {
        self.log.as_ref()
    }

    /// Puts every record written before this call on stable storage: one group commit of
    /// the log (append the staged images, `fdatasync`), without the table's lock, so
    /// workers go on answering meanwhile. After a storage error, first the recovery (under
    /// the lock: the whole table rewritten and flushed, the log restarted). Without a log,
    /// the dirty range's `msync` under the lock.
    pub fn make_durable(&self) -> std::io::Result<()> {
        let Some(log) = &self.log else {
            return self.lock().flush_dirty();
        };
        if log.failed() {
            self.lock().recover_log()?;
        }
        log.commit()
    }

    /// Ack mode's background write-back: commit, `msync` of the mapping, the log's start
    /// moved past what it covered (nothing without a log).
    pub fn checkpoint(&self) -> std::io::Result<()> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        if log.failed() {
            self.lock().recover_log()?;
        }
        log.checkpoint()
    }
}

impl V6Server {
    /// Opens the binding table and builds the engine; None when no `[[subnet6]]`. With
    /// `reconf_secret` (`[reconfigure]` on) the engine hands reconfigure keys to clients
    /// that send Reconfigure Accept, and a restart clears the reconfiguring flags unless
    /// `deferred-nak` keeps them.
    pub fn open(
        cfg: &Config,
        iface: &Interface,
        reconf_secret: Option<&[u8]>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let v6 = &cfg.v6;
        if v6.subnets.is_empty() {
            return Ok(None);
        }
        let ecfg = engine_config(cfg, iface)?;
        let ack = cfg.server.commit == CommitMode::Ack;
        // Ack mode: a write-ahead log `<file>.wal` (replayed here whatever the mode).
        let log_bytes = ack.then(|| default_log_bytes(v6.capacity));
        let (mut table, report) =
            BindingTable6::open_with(&v6.lease_file, v6.capacity, true, log_bytes)
                .with_context(|| format!("opening v6 binding file {}", v6.lease_file.display()))?;
        if let Some(r) = &report.replay {
            tracing::info!(
                "v6 write-ahead log replayed: {} entries, {} applied{}",
                r.entries,
                r.applied,
                r.discarded
                    .as_deref()
                    .map(|d| format!("; torn tail discarded ({d})"))
                    .unwrap_or_default()
            );
        }
        for (slot, why) in &report.quarantined {
            tracing::warn!("v6 binding record {slot} quarantined: {why}");
        }
        let duid = match (&v6.server_duid, table.server_duid().map(<[u8]>::to_vec)) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => d,
            (None, None) => {
                let d = duid_llt(unix_now().saturating_sub(Y2K), iface.mac);
                table
                    .set_server_duid(&d)
                    .context("storing the generated server DUID in the v6 binding file")?;
                tracing::info!("generated server DUID {}", hex(&d));
                d
            }
        };
        let (link_local, global) = interface_ipv6(&iface.name);
        if link_local.is_none() && global.is_none() {
            bail!(
                "interface {} has no IPv6 address; DHCPv6 ([[subnet6]] in {}) needs one",
                iface.name,
                cfg.source.display()
            );
        }
        tracing::info!(
            "DHCPv6: {} link(s), server DUID {}, {} binding(s) in {} ({})",
            ecfg.links.len(),
            hex(&duid),
            report.bindings,
            v6.lease_file.display(),
            if report.created {
                "created"
            } else {
                "existing"
            }
        );
        let mut engine = Engine6::new(ecfg, duid, Arc::new(Stats6::default()));
        let reconf = match reconf_secret {
            Some(secret) => {
                let deferred = cfg.reconfigure.as_ref().is_some_and(|r| r.deferred_nak);
                let (cleared, kept) = Reconfigurer6::clear_at_start(&mut table, deferred);
                if cleared > 0 {
                    tracing::info!(
                        "reconfigure: {cleared} DHCPv6 binding(s) no longer reconfiguring (restart)"
                    );
                }
                let shared = Arc::new(Reconf6Shared::new(Reconf6Keys::new(secret)));
                // Flags kept by deferred-nak: the engine must look those clients up.
                shared.flagged_add(kept as u64);
                engine = engine.with_reconfigure(shared.clone());
                Some(shared)
            }
            None => None,
        };
        let mut v6 = V6Server::new(engine, SharedTable6::new(table), ack, iface.index);
        v6.link_local = link_local;
        v6.global = global;
        v6.reconf = reconf;
        Ok(Some(Arc::new(v6)))
    }

    /// A server over `engine` and `table` on interface `ifindex` (no addresses of its own
    /// yet, no reconfigure): [`V6Server::open`] fills in the rest.
    pub fn new(engine: Engine6, table: SharedTable6, ack: bool, ifindex: u32) -> Self {
        V6Server {
            engine,
            table,
            ack,
            link_local: None,
            global: None,
            ifindex,
            flush_errors: AtomicU64::new(0),
            reconf: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BindingTable6> {
        self.table.lock()
    }

    /// The shared binding table (its log, for the committer, checkpointer and stats).
    pub fn table(&self) -> &SharedTable6 {
        &self.table
    }

    /// Runs `f` over the binding table under its lock (the reconfigure driver and the
    /// control API; never on the packet path).
    pub fn with_table<R>(&self, f: impl FnOnce(&mut BindingTable6) -> R) -> R {
        f(&mut self.lock())
    }

    /// The server DUID.
    pub fn server_duid(&self) -> &[u8] {
        self.engine.server_duid()
    }

    /// Answers one message into `out`.
    pub fn handle(&self, now: u32, meta: &RxMeta6, payload: &[u8], out: &mut [u8]) -> Decision6 {
        let mut t = self.lock();
        self.engine.handle(&mut t, now, meta, payload, out)
    }

    /// "ack" mode: puts the records written so far on stable storage (the log's group
    /// commit). Returns false when that failed (the replies that depend on it must not
    /// leave). The committer thread does this for the workers' tickets ([`V6Server::make_durable`]);
    /// this direct form is for a UDP worker without a committer.
    pub fn commit(&self) -> bool {
        match self.make_durable() {
            Ok(()) => true,
            Err(e) => {
                self.flush_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("flushing the v6 binding table failed: {e}");
                false
            }
        }
    }

    /// See [`SharedTable6::make_durable`].
    pub fn make_durable(&self) -> std::io::Result<()> {
        self.table.make_durable()
    }

    /// Record images the v6 log has taken so far (0 without a log).
    pub fn entries_logged(&self) -> u64 {
        self.table.log().map_or(0, |l| l.stats().entries)
    }

    /// Flushes the whole table (interval mode, shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.lock().flush() {
            self.flush_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("flushing the v6 binding table failed: {e}");
        }
    }

    /// Expires bindings past their valid lifetime; empties records dead for a day.
    /// Done in parts of 4,096 records, each under the lock for a short time.
    pub fn sweep(&self) {
        const PART: u32 = 4096;
        let cap = self.lock().capacity();
        let now = unix_now();
        let mut start = 0;
        while start < cap {
            let _ = self.lock().sweep_range(now, 86_400, start, start + PART);
            start += PART;
            std::thread::yield_now();
        }
    }

    /// Engine counters.
    pub fn stats(&self) -> &Arc<Stats6> {
        self.engine.stats()
    }

    /// Source address of a reply to `to`.
    pub fn source_for(&self, to: &Ipv6Addr) -> Ipv6Addr {
        let link_local = to.segments()[0] & 0xffc0 == 0xfe80;
        let pick = if link_local {
            self.link_local.or(self.global)
        } else {
            self.global.or(self.link_local)
        };
        pick.unwrap_or(Ipv6Addr::UNSPECIFIED)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A UDP socket on [::]:547 bound to the interface and joined to ff02::1:2 on it.
pub fn open_socket(iface: &Interface) -> anyhow::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 547, 0, 0))
        .context("binding UDP [::]:547")?;
    let fd = sock.as_raw_fd();
    let name = std::ffi::CString::new(iface.name.as_str()).context("interface name")?;
    let one: libc::c_int = 1;
    // SAFETY: valid descriptor; option values point to live locals of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.as_bytes_with_nul().len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_BINDTODEVICE");
    }
    // SAFETY: as above.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVPKTINFO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("IPV6_RECVPKTINFO");
    }
    sock.join_multicast_v6(&ALL_SERVERS_AND_RELAYS, iface.index)
        .context("joining ff02::1:2")?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .context("SO_RCVTIMEO")?;
    Ok(sock)
}

/// Receives one datagram with its destination address and interface (IPV6_PKTINFO).
fn recv_pktinfo(
    sock: &UdpSocket,
    buf: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<(usize, SocketAddrV6, Ipv6Addr, u32)> {
    // SAFETY: zeroed plain-data structs; all pointers below point to live locals.
    let mut src: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut cmsg = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_name = (&mut src as *mut libc::sockaddr_in6).cast();
    mh.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cmsg.as_mut_ptr().cast();
    mh.msg_controllen = std::mem::size_of_val(&cmsg);
    // SAFETY: mh points to valid buffers for the call's duration.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, flags) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (mut dst, mut ifindex) = (Ipv6Addr::UNSPECIFIED, 0);
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let pi = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                dst = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                ifindex = pi.ipi6_ifindex;
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    let from = SocketAddrV6::new(
        Ipv6Addr::from(src.sin6_addr.s6_addr),
        u16::from_be(src.sin6_port),
        0,
        src.sin6_scope_id,
    );
    Ok((n as usize, from, dst, ifindex))
}

/// Messages taken per batch by the UDP worker.
const UDP_BATCH: usize = 64;
/// Batches of replies the UDP worker holds for the committer (ack mode) before it stops
/// taking requests (back-pressure).
const UDP_HELD_BATCHES: usize = 8;

/// One batch's replies: (offset in its buffer, length, destination, committed, at once:
/// `Decision6::Reply::at_once`).
type Replies6 = Vec<(usize, usize, SocketAddrV6, bool, bool)>;

/// The `--io udp` DHCPv6 worker: one thread reading [::]:547 in batches (the first
/// receive waits up to 100 ms when nothing is held, the rest of the batch is what is
/// already queued). In ack mode a batch whose replies committed bindings takes a ticket
/// from the committer (`commit.rs`, as the v4 workers do) and its replies are held, in a
/// ring of [`UDP_HELD_BATCHES`] batch buffers, until the committer's log commit covering
/// them completed; the thread goes on with later batches meanwhile (later replies wait
/// behind earlier ones, keeping each client's order, except those that wrote nothing and
/// state nothing from the table, `Decision6::Reply::at_once`: an Advertise leaves at once). Without a committer (a table
/// without a log) each such batch is committed here.
pub fn spawn_udp_worker(
    v6: Arc<V6Server>,
    sock: UdpSocket,
    committer: Option<Arc<super::commit::Committer>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xdhcpd-udp6".into())
        .spawn(move || {
            super::sched::packet();
            let committer = committer.filter(|_| v6.ack);
            let waiter = committer.as_ref().and_then(|c| c.waiter().ok());
            let mut rx = vec![0u8; 4096];
            let mut bufs: Vec<Vec<u8>> = (0..UDP_HELD_BATCHES)
                .map(|_| vec![0u8; UDP_BATCH * 2048])
                .collect();
            let mut pend: Vec<Replies6> = (0..UDP_HELD_BATCHES)
                .map(|_| Vec::with_capacity(UDP_BATCH))
                .collect();
            // Held batches: (buffer index, ticket), oldest first.
            let mut held: std::collections::VecDeque<(usize, u64)> =
                std::collections::VecDeque::with_capacity(UDP_HELD_BATCHES);
            let send = |buf: &[u8], p: &Replies6, ok: bool| {
                for &(i, len, to, committed, _) in p {
                    if committed && !ok {
                        continue;
                    }
                    if let Err(e) = sock.send_to(&buf[i..i + len], to) {
                        tracing::debug!("DHCPv6 reply to {to}: {e}");
                    }
                }
            };
            while !stop.load(Ordering::Relaxed) {
                if let Some(c) = &committer {
                    let durable = c.durable();
                    while let Some(&(b, t)) = held.front() {
                        if t > durable {
                            break;
                        }
                        send(&bufs[b], &pend[b], true);
                        held.pop_front();
                    }
                }
                if held.len() == UDP_HELD_BATCHES {
                    if let Some(w) = &waiter {
                        w.wait(sock.as_raw_fd(), 10);
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    continue;
                }
                let b = held
                    .front()
                    .map_or(0, |&(h, _)| (h + held.len()) % UDP_HELD_BATCHES);
                let (buf, p) = (&mut bufs[b], &mut pend[b]);
                p.clear();
                let mut now = None;
                for i in 0..UDP_BATCH {
                    let flags = if i == 0 && held.is_empty() {
                        0
                    } else {
                        libc::MSG_DONTWAIT
                    };
                    let (n, from, dst, ifindex) = match recv_pktinfo(&sock, &mut rx, flags) {
                        Ok(v) => v,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            break
                        }
                        Err(e) => {
                            tracing::warn!("DHCPv6 UDP receive: {e}");
                            break;
                        }
                    };
                    let meta = RxMeta6 {
                        src: *from.ip(),
                        multicast: dst.is_multicast(),
                        ifindex: if ifindex != 0 { ifindex } else { v6.ifindex },
                        src_port: from.port(),
                    };
                    let now = *now.get_or_insert_with(unix_now);
                    let slot = &mut buf[i * 2048..(i + 1) * 2048];
                    if let Decision6::Reply {
                        len,
                        to,
                        port,
                        committed,
                        at_once,
                    } = v6.handle(now, &meta, &rx[..n], slot)
                    {
                        let scope = if to.segments()[0] & 0xffc0 == 0xfe80 {
                            meta.ifindex
                        } else {
                            0
                        };
                        p.push((
                            i * 2048,
                            len,
                            SocketAddrV6::new(to, port, 0, scope),
                            committed,
                            at_once,
                        ));
                    }
                }
                if p.is_empty() {
                    if !held.is_empty() {
                        // Replies wait for the committer: sleep until it committed or a
                        // request arrives.
                        match &waiter {
                            Some(w) => w.wait(sock.as_raw_fd(), 10),
                            None => std::thread::yield_now(),
                        }
                    }
                    continue;
                }
                let wrote = v6.ack && p.iter().any(|r| r.3);
                match &committer {
                    Some(c) if wrote || !held.is_empty() => {
                        let ticket = if wrote {
                            c.ticket()
                        } else {
                            held.back().map_or(0, |&(_, t)| t)
                        };
                        // Replies that wrote nothing and state nothing from the table
                        // (Advertise) leave now; the rest wait for the ticket.
                        p.retain(|&(i, len, to, _, at_once)| {
                            if at_once {
                                if let Err(e) = sock.send_to(&buf[i..i + len], to) {
                                    tracing::debug!("DHCPv6 reply to {to}: {e}");
                                }
                            }
                            !at_once
                        });
                        if !p.is_empty() {
                            held.push_back((b, ticket));
                        }
                    }
                    _ => {
                        let ok = !wrote || v6.commit();
                        send(buf, p, ok);
                    }
                }
            }
            // Stopping: replies still held were never made durable; they never leave.
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcpv6_engine_config_from_dual_stack_example() {
        let cfg = xdhcpd_config::parse(xdhcpd_config::DUAL_STACK_CONFIG, "dual-stack.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        let iface = Interface {
            name: "xd-srv0".into(),
            index: 42,
            mac: [2, 0, 0, 0, 0, 1],
            ipv4: None,
            rx_queues: 1,
        };
        let e = engine_config(&cfg, &iface).unwrap();
        let l = &e.links[0];
        assert_eq!(
            l.ifindexes,
            vec![42],
            "interface = xd-srv0 selects direct clients"
        );
        assert_eq!(l.prefix_pools[0].delegated_len, 56);
        let codes: Vec<u16> = l.options.iter().map(|o| o.0).collect();
        assert_eq!(codes, vec![23, 24, 56, 17]);
        // Option 24: "demo.xdhcpd" as a DNS wire name; option 17: 4491, sub-option 32.
        assert_eq!(l.options[1].1, b"\x04demo\x06xdhcpd\x00".to_vec());
        assert_eq!(&l.options[3].1[..8], &[0, 0, 0x11, 0x8b, 0, 32, 0, 6]);
        assert_eq!(l.reservations[0].address, Some("fd77::77".parse().unwrap()));
        // Another interface: no direct clients on this link.
        let other = Interface {
            name: "eth9".into(),
            ..iface
        };
        assert!(engine_config(&cfg, &other).unwrap().links[0]
            .ifindexes
            .is_empty());
    }
}
