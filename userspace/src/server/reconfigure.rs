//! The reconfigure driver (issue 16, DHCPv4): IO around the sans-IO campaign
//! (`xdhcpd_dhcpv4::engine::reconfigure::Reconfigurer`). Its own thread, off the packet
//! path: takes triggers from the control API, polls the campaign every 20 ms with the wall
//! clock, and sends each FORCERENEW over a kernel UDP socket bound to the server address:
//! unicast to the client's address port 68, or to the binding's relay (giaddr) port 67 with
//! the stored option 82. Policy, keys and the per-slot book come from the engine generation
//! in force (a reload changes them).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
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

use super::reload::EngineCell;

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

/// What the control API holds: the trigger channel and the counters.
#[derive(Clone)]
pub struct ReconfHandle {
    tx: Sender<Vec<Slot>>,
    /// The campaign's counters.
    pub stats: Arc<ReconfStats>,
    /// Queue and in-flight sizes.
    pub progress: Arc<Progress>,
    cell: Arc<EngineCell>,
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
    /// Starts the driver over `table`, sending from `server_id`.
    pub fn start(
        cell: Arc<EngineCell>,
        table: Arc<LeaseTable>,
        server_id: Ipv4Addr,
    ) -> anyhow::Result<Self> {
        let sock = UdpSocket::bind(SocketAddrV4::new(server_id, 0))
            .with_context(|| format!("reconfigure: binding a UDP socket to {server_id}"))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(ReconfStats::default());
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handle = ReconfHandle {
            tx,
            stats: stats.clone(),
            progress: progress.clone(),
            cell: cell.clone(),
        };
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xdhcpd-reconf".into())
            .spawn(move || run(cell, table, server_id, sock, rx, stats, progress, st))
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
