//! The reconfigure driver (issue 16): IO around the sans-IO campaigns, DHCPv4
//! (`xdhcpd_dhcpv4::engine::reconfigure::Reconfigurer`) and DHCPv6
//! (`xdhcpd_dhcpv6::reconfigure::Reconfigurer6`). Its own thread, off the packet
//! path: takes triggers from the control API, polls the campaigns every 20 ms with the wall
//! clock, and sends each FORCERENEW over a kernel UDP socket bound to the server address:
//! unicast to the client's address port 68, or to the binding's relay (giaddr) port 67 with
//! the stored option 82. Policy, keys and the per-slot book come from the engine generation
//! in force (a reload changes them). Each DHCPv6 Reconfigure goes over a kernel UDP socket on
//! [::]: to the address the client last sent from, port 546 (a link-local one scoped to the
//! server's interface, so the kernel sends from our link-local address, which clients such
//! as dhcpcd require), or in a Relay-Reply to the relay it last came through, port 547.

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use lease_store::{Lease, LeaseTable, Slot};
use xdhcpd_common::{DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT};
use xdhcpd_dhcpv4::engine::reconfigure::{
    build_forcerenew, Action, Destination, ReconfStats, Reconfigurer,
};
use xdhcpd_dhcpv4::engine::ReconfShared;
use xdhcpd_dhcpv6::reconfigure::{
    build_reconfigure, Action6, Reconf6Policy, Reconf6Stats, Reconfigurer6,
};

use super::reload::EngineCell;
use super::v6::V6Server;

/// The file next to the lease file that keeps the generated key-derivation secret.
pub fn secret_path(lease_file: &Path) -> PathBuf {
    let mut p = lease_file.as_os_str().to_owned();
    p.push(".reconfigure-secret");
    PathBuf::from(p)
}

/// Reads the secret kept beside the lease file, or makes one (32 bytes from
/// /dev/urandom, written mode 0600) on first use.
pub fn load_or_create_secret(lease_file: &Path) -> anyhow::Result<Vec<u8>> {
    let path = secret_path(lease_file);
    match std::fs::read(&path) {
        Ok(b) if (16..=64).contains(&b.len()) => return Ok(b),
        Ok(b) => anyhow::bail!(
            "{}: {} bytes, a reconfigure secret is 16 to 64 bytes (remove the file to make a new one)",
            path.display(),
            b.len()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
    let mut secret = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .context("reading /dev/urandom for the reconfigure secret")?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, &secret)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Progress the API shows: bindings waiting for admission and being reconfigured.
#[derive(Debug, Default)]
pub struct Progress {
    /// Triggered, waiting for the rate.
    pub queued: AtomicU64,
    /// FORCERENEW sent, waiting for the client (or the next retry).
    pub active: AtomicU64,
}

/// A DHCPv6 trigger: the client's DUID and the slots of its bindings.
pub type Trigger6 = (Vec<u8>, Vec<u32>);

/// The DHCPv6 side of the handle (present when `[[subnet6]]` and `[reconfigure]` are on).
#[derive(Clone)]
pub struct V6Handle {
    tx: Sender<Vec<Trigger6>>,
    /// The v6 campaign's counters.
    pub stats: Arc<Reconf6Stats>,
    /// Clients queued and being reconfigured.
    pub progress: Arc<Progress>,
    /// The DHCPv6 server (its table, for the selectors).
    pub server: Arc<V6Server>,
}

impl V6Handle {
    /// Queues clients for Reconfigure; false when the driver has stopped.
    pub fn trigger(&self, clients: Vec<Trigger6>) -> bool {
        self.tx.send(clients).is_ok()
    }
}

/// What the control API holds: the trigger channel and the counters.
#[derive(Clone)]
pub struct ReconfHandle {
    tx: Sender<Vec<Slot>>,
    /// The campaign's counters.
    pub stats: Arc<ReconfStats>,
    /// Queue and in-flight sizes.
    pub progress: Arc<Progress>,
    cell: Arc<EngineCell>,
    /// DHCPv6 Reconfigure, when the daemon serves DHCPv6.
    pub v6: Option<V6Handle>,
}

impl ReconfHandle {
    /// Queues `slots` for reconfiguration; false when the driver has stopped.
    pub fn trigger(&self, slots: Vec<Slot>) -> bool {
        self.tx.send(slots).is_ok()
    }

    /// Whether `[reconfigure]` is on in the configuration in force.
    pub fn enabled(&self) -> bool {
        self.cell.load().reconf.is_some()
    }
}

/// The driver thread.
pub struct ReconfDriver {
    handle: ReconfHandle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ReconfDriver {
    /// Starts the driver over `table`, sending from `server_id`; with `v6` (a DHCPv6
    /// server whose engine hands out reconfigure keys) it runs the DHCPv6 campaign too.
    pub fn start(
        cell: Arc<EngineCell>,
        table: Arc<LeaseTable>,
        server_id: Ipv4Addr,
        v6: Option<Arc<V6Server>>,
    ) -> anyhow::Result<Self> {
        let sock = UdpSocket::bind(SocketAddrV4::new(server_id, 0))
            .with_context(|| format!("reconfigure: binding a UDP socket to {server_id}"))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(ReconfStats::default());
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (v6_handle, v6_run) = match v6.filter(|s| s.reconf.is_some()) {
            Some(server) => {
                let sock6 = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0))
                    .context("reconfigure: binding a UDP socket to [::]")?;
                let (tx6, rx6) = crossbeam_channel::unbounded();
                let h = V6Handle {
                    tx: tx6,
                    stats: Arc::new(Reconf6Stats::default()),
                    progress: Arc::new(Progress::default()),
                    server: server.clone(),
                };
                let r = V6Run {
                    server,
                    sock: sock6,
                    rx: rx6,
                    stats: h.stats.clone(),
                    progress: h.progress.clone(),
                };
                (Some(h), Some(r))
            }
            None => (None, None),
        };
        let handle = ReconfHandle {
            tx,
            stats: stats.clone(),
            progress: progress.clone(),
            cell: cell.clone(),
            v6: v6_handle,
        };
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xdhcpd-reconf".into())
            .spawn(move || {
                run(
                    cell, table, server_id, sock, rx, stats, progress, st, v6_run,
                )
            })
            .context("spawning the reconfigure thread")?;
        Ok(ReconfDriver {
            handle,
            stop,
            thread: Some(thread),
        })
    }

    /// The API's handle.
    pub fn handle(&self) -> ReconfHandle {
        self.handle.clone()
    }
}

impl Drop for ReconfDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The DHCPv6 campaign's IO.
struct V6Run {
    server: Arc<V6Server>,
    sock: UdpSocket,
    rx: Receiver<Vec<Trigger6>>,
    stats: Arc<Reconf6Stats>,
    progress: Arc<Progress>,
}

/// The DHCPv6 campaign's policy from `[reconfigure]` (the same schedule, rate and abort
/// rules as FORCERENEW; the client is asked to Renew).
pub fn policy6(p: &xdhcpd_config::ReconfigureConfig) -> Reconf6Policy {
    Reconf6Policy {
        retries: p.retries,
        first_retry_ms: p.first_retry_ms,
        backoff: p.backoff,
        rate: p.rate,
        clear_on_abort: p.clear_on_abort,
        deferred_nak: p.deferred_nak,
        ..Reconf6Policy::default()
    }
}

impl V6Run {
    /// One tick of the DHCPv6 campaign: triggers in, poll under the table lock, sends out.
    fn tick(
        &self,
        campaign: &mut Reconfigurer6,
        policy: Option<&xdhcpd_config::ReconfigureConfig>,
        now_ms: u64,
        counter: &mut u32,
        actions: &mut Vec<Action6>,
        buf: &mut [u8],
    ) {
        while let Ok(clients) = self.rx.try_recv() {
            for (duid, slots) in clients {
                campaign.trigger(&duid, slots);
            }
        }
        if let Some(p) = policy {
            let p6 = policy6(p);
            if p6 != *campaign.policy() {
                campaign.set_policy(p6);
            }
        }
        if campaign.queued() + campaign.active() > 0 {
            self.server
                .with_table(|t| campaign.poll(now_ms, t, actions));
        }
        let Some(shared) = self.server.reconf.as_ref() else {
            actions.clear();
            return;
        };
        for a in actions.drain(..) {
            match a {
                Action6::Send { binding, attempt } => {
                    *counter = counter.wrapping_add(1);
                    // RDM 0: strictly increasing, above the Reply's `now << 32`.
                    let replay = ((now_ms / 1000) << 32) | u64::from((*counter).max(1));
                    let who = binding.ip();
                    match build_reconfigure(
                        buf,
                        &binding,
                        self.server.server_duid(),
                        &shared.keys,
                        replay,
                        campaign.policy().msg_type,
                    ) {
                        Ok((n, route)) => {
                            let (addr, port) = route.dest();
                            let scope = if addr.segments()[0] & 0xffc0 == 0xfe80 {
                                self.server.ifindex
                            } else {
                                0
                            };
                            let to = SocketAddrV6::new(addr, port, 0, scope);
                            match self.sock.send_to(&buf[..n], to) {
                                Ok(_) => tracing::info!(
                                    "reconfigure: DHCPv6 Reconfigure {attempt} for {who} to {to}"
                                ),
                                Err(e) => {
                                    self.stats.send_failed.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(
                                        "reconfigure: DHCPv6 Reconfigure for {who} to {to}: {e}"
                                    );
                                }
                            }
                        }
                        Err(e) => {
                            self.stats.send_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "reconfigure: DHCPv6 Reconfigure for {who} not sent: {e}"
                            );
                        }
                    }
                }
                Action6::Succeeded(d) => tracing::info!(
                    "reconfigure: DHCPv6 client {} answered (bindings deleted)",
                    hex(d.as_slice())
                ),
                Action6::Aborted(d, how) => tracing::warn!(
                    "reconfigure: DHCPv6 client {} did not answer; aborted ({how:?})",
                    hex(d.as_slice())
                ),
                Action6::NotStarted(d, why) => tracing::info!(
                    "reconfigure: DHCPv6 client {} not reconfigured: {why:?}",
                    hex(d.as_slice())
                ),
            }
        }
        self.progress
            .queued
            .store(campaign.queued() as u64, Ordering::Relaxed);
        self.progress
            .active
            .store(campaign.active() as u64, Ordering::Relaxed);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[allow(clippy::too_many_arguments)]
fn run(
    cell: Arc<EngineCell>,
    table: Arc<LeaseTable>,
    server_id: Ipv4Addr,
    sock: UdpSocket,
    rx: Receiver<Vec<Slot>>,
    stats: Arc<ReconfStats>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    v6: Option<V6Run>,
) {
    let policy = cell
        .load()
        .reconf
        .as_ref()
        .map(|r| r.policy.clone())
        .unwrap_or_default();
    let mut campaign = Reconfigurer::new(policy);
    if let Some((_, book)) = &cell.load().reconf_base {
        campaign = campaign.with_book(book.clone());
    }
    campaign.stats = stats;
    let mut actions = Vec::new();
    let mut buf = [0u8; 1024];
    let mut seen: Option<Arc<xdhcpd_dhcpv4::EngineShared>> = None;
    let mut counter: u32 = 0;
    let mut campaign6 = v6.as_ref().map(|v| {
        let p = cell
            .load()
            .config
            .reconfigure
            .as_ref()
            .map(policy6)
            .unwrap_or_default();
        let mut c = Reconfigurer6::new(p, v.server.reconf.clone());
        c.stats = v.stats.clone();
        c
    });
    let mut actions6 = Vec::new();
    let mut counter6: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(slots) => {
                for s in slots {
                    campaign.trigger(s);
                }
                // Take whatever else is waiting in the same tick.
                while let Ok(more) = rx.try_recv() {
                    for s in more {
                        campaign.trigger(s);
                    }
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        let shared = cell.load();
        if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &shared)) {
            // A new configuration: the subnets' schedules may have changed.
            campaign.set_overrides(Reconfigurer::overrides_of(&shared.config));
            seen = Some(shared.clone());
        }
        // `[reconfigure]` removed by a reload: what runs finishes under the last policy.
        let rc = shared.reconf.as_ref();
        if let Some(rc) = rc {
            if rc.policy != *campaign.policy() {
                campaign.set_policy(rc.policy.clone());
            }
        }
        let now_ms = unix_ms();
        if let (Some(v), Some(c6)) = (&v6, &mut campaign6) {
            v.tick(
                c6,
                shared.config.reconfigure.as_ref(),
                now_ms,
                &mut counter6,
                &mut actions6,
                &mut buf,
            );
        }
        campaign.poll(now_ms, &table, &mut actions);
        for a in actions.drain(..) {
            match a {
                Action::Send {
                    slot,
                    lease,
                    attempt,
                } => {
                    counter = counter.wrapping_add(1);
                    // RFC 3118 RDM 0: strictly increasing (seconds, then a send counter);
                    // above the ACK's `now << 32`.
                    let replay = ((now_ms / 1000) << 32) | u64::from(counter.max(1));
                    let Some(rc) = rc else { continue };
                    match send(rc, &sock, server_id, slot, &lease, replay, &mut buf) {
                        Ok(to) => tracing::info!(
                            "reconfigure: FORCERENEW {attempt} for {} to {to}",
                            lease.addr
                        ),
                        Err(e) => {
                            campaign.stats.send_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "reconfigure: FORCERENEW for {} not sent: {e}",
                                lease.addr
                            )
                        }
                    }
                }
                Action::Succeeded(slot) => tracing::info!(
                    "reconfigure: {} answered (binding deleted)",
                    table.addr_of(slot)
                ),
                Action::Aborted(slot, how) => tracing::warn!(
                    "reconfigure: {} did not answer; aborted ({how:?})",
                    table.addr_of(slot)
                ),
                Action::NotStarted(slot, why) => tracing::info!(
                    "reconfigure: {} not reconfigured: {why:?}",
                    table.addr_of(slot)
                ),
            }
        }
        progress
            .queued
            .store(campaign.queued() as u64, Ordering::Relaxed);
        progress
            .active
            .store(campaign.active() as u64, Ordering::Relaxed);
    }
}

/// Builds and sends one FORCERENEW; returns where it went.
fn send(
    rc: &ReconfShared,
    sock: &UdpSocket,
    server_id: Ipv4Addr,
    slot: Slot,
    lease: &Lease,
    replay: u64,
    buf: &mut [u8],
) -> anyhow::Result<SocketAddrV4> {
    let (xid, giaddr) = rc.book.get(slot);
    let (n, dest) = build_forcerenew(
        buf, lease, xid, giaddr, server_id, replay, &rc.keys, &rc.policy,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let to = match dest {
        Destination::Relay(g) => SocketAddrV4::new(g, DHCPV4_SERVER_PORT),
        Destination::Client(a) => SocketAddrV4::new(a, DHCPV4_CLIENT_PORT),
    };
    sock.send_to(&buf[..n], to)
        .with_context(|| format!("sendto {to}"))?;
    Ok(to)
}
