//! The daemon's DHCPv6 side: the binding table (opened, its server DUID made
//! once and kept), the engine built from `[[subnet6]]`, the flush that "ack"
//! mode needs before a committed reply leaves (done by the committer thread for
//! the XDP workers, `commit.rs`; the table lock is held only to take the dirty
//! range, never across the `msync`), the kernel-UDP socket on
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
use lease_store::v6::{BindingTable6, Syncer6};
use xdhcpd_config::{CommitMode, Config, V6Config};
use xdhcpd_dhcpv6::config::encode;
use xdhcpd_dhcpv6::reconfigure::{Reconf6Keys, Reconf6Shared, Reconfigurer6};
use xdhcpd_dhcpv6::wire::opt;
use xdhcpd_dhcpv6::{
    duid_llt, AddrPool6, Config6, Decision6, Engine6, Link6, PrefixPool6, Reservation6, RxMeta6,
    Stats6,
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

/// The engine's links from the configuration (options encoded once).
pub fn engine_config(v6: &V6Config, iface: &Interface) -> anyhow::Result<Config6> {
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
        });
    }
    Ok(Config6 {
        links,
        trusted_relays: v6.trusted_relays.clone(),
        decline_hold: v6.decline_hold,
        leasequery_allow: v6.leasequery_allow(),
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

/// The v6 binding table as the daemon shares it: one lock for its single writer, and
/// the ack-mode flush that writes its dirty range back without that lock.
pub struct SharedTable6 {
    table: Mutex<BindingTable6>,
    /// Writes the table's dirty ranges back without its lock (None: in memory).
    syncer: Option<Syncer6>,
    /// One ack-mode flush at a time (the committer, the `--io udp` v6 worker), so that a
    /// flush finding nothing dirty cannot report durable what another is still writing.
    flushing: Mutex<()>,
    /// Ack-mode flushes and the bytes they wrote back.
    pub flushes: AtomicU64,
    pub flushed_bytes: AtomicU64,
}

impl SharedTable6 {
    pub fn new(table: BindingTable6) -> Self {
        SharedTable6 {
            syncer: table.syncer(),
            table: Mutex::new(table),
            flushing: Mutex::new(()),
            flushes: AtomicU64::new(0),
            flushed_bytes: AtomicU64::new(0),
        }
    }

    /// The table under its lock.
    pub fn lock(&self) -> MutexGuard<'_, BindingTable6> {
        // A worker that panicked mid-write left at worst one record torn; the CRC
        // catches that at the next open. Keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts every record written before this call on stable storage. The table lock is
    /// held only to take the dirty range (and to give it back on failure), never across
    /// the `msync`: workers go on answering meanwhile. Flushes are serialised among
    /// themselves, so one that finds nothing dirty returns only after a concurrent one
    /// that took the records has written them back.
    pub fn make_durable(&self) -> std::io::Result<()> {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(d) = self.lock().take_dirty() else {
            return Ok(());
        };
        let r = match &self.syncer {
            Some(s) => s.sync(&d),
            None => Ok(()),
        };
        match r {
            Ok(()) => {
                self.flushes.fetch_add(1, Ordering::Relaxed);
                self.flushed_bytes
                    .fetch_add(d.bytes() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.lock().restore_dirty(d);
                Err(e)
            }
        }
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
        let ecfg = engine_config(v6, iface)?;
        let (mut table, report) = BindingTable6::open(&v6.lease_file, v6.capacity, true)
            .with_context(|| format!("opening v6 binding file {}", v6.lease_file.display()))?;
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
        Ok(Some(Arc::new(V6Server {
            engine,
            table: SharedTable6::new(table),
            ack: cfg.server.commit == CommitMode::Ack,
            link_local,
            global,
            ifindex: iface.index,
            flush_errors: AtomicU64::new(0),
            reconf,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, BindingTable6> {
        self.table.lock()
    }

    /// The shared binding table (its flush counters).
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

    /// "ack" mode: puts the records written since the last flush on stable storage.
    /// Returns false when that failed (the replies that depend on it must not leave).
    /// The committer thread calls it for the XDP workers (see [`V6Server::make_durable`]).
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

/// Messages taken per batch by the UDP worker (one v6 table flush per batch in ack mode).
const UDP_BATCH: usize = 64;

/// The `--io udp` DHCPv6 worker: one thread reading [::]:547 in batches (the first
/// receive waits up to 100 ms, the rest of the batch is what is already queued); in ack
/// mode the batch's committed replies leave after one flush of the v6 table.
pub fn spawn_udp_worker(
    v6: Arc<V6Server>,
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("xdhcpd-udp6".into())
        .spawn(move || {
            let mut rx = vec![0u8; 4096];
            let mut out = vec![0u8; UDP_BATCH * 2048];
            let mut pending: Vec<(usize, usize, SocketAddrV6, bool)> =
                Vec::with_capacity(UDP_BATCH);
            while !stop.load(Ordering::Relaxed) {
                pending.clear();
                let mut now = None;
                for i in 0..UDP_BATCH {
                    let flags = if i == 0 { 0 } else { libc::MSG_DONTWAIT };
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
                    let slot = &mut out[i * 2048..(i + 1) * 2048];
                    if let Decision6::Reply {
                        len,
                        to,
                        port,
                        committed,
                    } = v6.handle(now, &meta, &rx[..n], slot)
                    {
                        let scope = if to.segments()[0] & 0xffc0 == 0xfe80 {
                            meta.ifindex
                        } else {
                            0
                        };
                        pending.push((i, len, SocketAddrV6::new(to, port, 0, scope), committed));
                    }
                }
                let durable = !(v6.ack && pending.iter().any(|p| p.3)) || v6.commit();
                for &(i, len, to, committed) in &pending {
                    if committed && !durable {
                        continue;
                    }
                    if let Err(e) = sock.send_to(&out[i * 2048..i * 2048 + len], to) {
                        tracing::debug!("DHCPv6 reply to {to}: {e}");
                    }
                }
            }
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
        let e = engine_config(&cfg.v6, &iface).unwrap();
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
        assert!(engine_config(&cfg.v6, &other).unwrap().links[0]
            .ifindexes
            .is_empty());
    }
}
