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
    /// `on-registration-change`: MACs of changed registrations whose binding was not found
    /// by key (its client sends a client id); the driver finds them with one scan a tick.
    pending_macs: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 6]>>>,
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

    /// The bound DHCPv4 bindings whose client is a member of class `name` in the
    /// configuration in force (`POST /v1/reconfigure {"class": name}`), judged from what
    /// the binding keeps (`binding_in_class`): its hardware address, client id, stored
    /// option 82, the relay of its last ACK since the start, and its registration (a live
    /// one first, else a configured `[[host]]` / reservation: KNOWN, and the class its
    /// group names). Err: no such class, or one that tests what a binding does not keep.
    pub fn class_slots(
        &self,
        name: &str,
        table: &LeaseTable,
        now: u32,
    ) -> Result<Vec<Slot>, String> {
        use lease_store::ClientKey;
        use xdhcpd_dhcpv4::engine::reconfigure::{binding_in_class, class_unselectable};
        let shared = self.cell.load();
        let cfg = &shared.config;
        let class =
            cfg.classes.iter().find(|c| c.name == name).ok_or_else(|| {
                format!("field \"class\": no class {name:?} in the configuration")
            })?;
        if let Some(why) = class_unselectable(class) {
            return Err(why);
        }
        let class_of = |group: &str| cfg.classes.iter().find(|c| c.name == group).map(|c| c.id);
        let hosts = xdhcpd_dhcpv4::engine::classes::Registrations::from_config(cfg);
        let book = shared.reconf_base.as_ref().map(|(_, b)| b.clone());
        let mut out = Vec::new();
        for (slot, l) in table.iter() {
            // A BOOTP client (permanent binding) speaks no DHCP: never reconfigured.
            if l.state != lease_store::LeaseState::Active || l.expiry <= now || l.is_permanent() {
                continue;
            }
            // The option 82 whole, read only for the bindings that get this far.
            let (l, var) = table.read_with_var(slot);
            if l.state != lease_store::LeaseState::Active || l.expiry <= now {
                continue;
            }
            let hw = (l.htype == 1 && l.hlen == 6).then(|| l.hw());
            let mut live: Option<Option<xdhcpd_config::ClassId>> = None;
            if let Some(view) = &shared.registrations {
                let mut visit = |r: &xdhcpd_dhcpv4::engine::Registered<'_>| {
                    live = Some(class_of(r.group));
                };
                if !view.find(&l.client, &mut visit) {
                    if let Some(hw) = hw {
                        let hk = ClientKey::from_hw(1, hw);
                        if hk != l.client {
                            view.find(&hk, &mut visit);
                        }
                    }
                }
            }
            let host = hosts.lookup(&l.client, hw).map(|r| r.group);
            // The engine's one notion of KNOWN: a live registration or a configured host;
            // the group from the registration first.
            let reg = match (live, host) {
                (None, None) => None,
                (lv, hv) => Some(lv.flatten().or(hv.flatten())),
            };
            let giaddr = book
                .as_ref()
                .map_or(Ipv4Addr::UNSPECIFIED, |b| b.get(slot).1);
            if binding_in_class(class, &l, var.relay_agent_info(), giaddr, reg) {
                out.push(slot);
            }
        }
        Ok(out)
    }
}

/// `[reconfigure] on-registration-change`: told of every registration change (the
/// registrations index's watcher); when a registration's group or fixed address changes,
/// or it is removed, the client's bound DHCPv4 binding is reconfigured (found by the
/// registration's client id and MAC keys; a MAC registration whose client sends a client
/// id is found by the driver's next scan), and so is a binding holding an address that
/// became another client's fixed address. New registrations trigger nothing (a first
/// sync of a registration database would push every client). Runs on the writer's thread:
/// key lookups and a channel send, nothing more.
pub struct RegistrationTrigger {
    handle: ReconfHandle,
    table: Arc<LeaseTable>,
}

impl RegistrationTrigger {
    pub fn new(handle: ReconfHandle, table: Arc<LeaseTable>) -> Arc<Self> {
        Arc::new(RegistrationTrigger { handle, table })
    }

    fn on(&self) -> bool {
        self.handle
            .cell
            .load()
            .config
            .reconfigure
            .as_ref()
            .is_some_and(|r| r.on_registration_change)
    }

    fn fire(&self, regs: &[&xdhcpd_registrations::Registration], fixed: Option<Ipv4Addr>) {
        let now = (unix_ms() / 1000) as u32;
        let bound = |l: &Lease| l.state == lease_store::LeaseState::Active && l.expiry > now;
        let mut slots = Vec::new();
        let mut macs = Vec::new();
        for r in regs {
            let mut found = false;
            for k in r.keys() {
                if let Some((slot, l)) = self.table.find_client(&k) {
                    if bound(&l) && !slots.contains(&slot) {
                        slots.push(slot);
                        found = true;
                    }
                }
            }
            if let (false, Some(m)) = (found, r.mac) {
                macs.push(m);
            }
        }
        if let Some(a) = fixed {
            if let Some(slot) = self.table.slot_of(a) {
                let l = self.table.read(slot);
                let theirs = regs.iter().any(|r| r.keys().any(|k| k == l.client));
                if bound(&l) && !theirs && !slots.contains(&slot) {
                    slots.push(slot);
                }
            }
        }
        if !macs.is_empty() {
            self.handle
                .pending_macs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(macs);
        }
        if !slots.is_empty() {
            tracing::info!(
                "reconfigure: {} binding(s) after a registration change",
                slots.len()
            );
            let _ = self.handle.trigger(slots);
        }
    }
}

impl xdhcpd_registrations::IndexWatch for RegistrationTrigger {
    fn put(
        &self,
        new: &xdhcpd_registrations::Registration,
        replaced: &[xdhcpd_registrations::Registration],
    ) {
        let changed = replaced
            .iter()
            .any(|o| o.group != new.group || o.fixed_address != new.fixed_address);
        if !changed || !self.on() {
            return;
        }
        let mut regs = vec![new];
        regs.extend(replaced.iter());
        let fixed = new
            .fixed_address
            .filter(|a| replaced.iter().all(|o| o.fixed_address != Some(*a)));
        self.fire(&regs, fixed);
    }

    fn removed(&self, old: &xdhcpd_registrations::Registration) {
        if self.on() {
            self.fire(&[old], None);
        }
    }
}

/// Where the driver's record changes go: the same listeners as the workers' changes (issue
/// 16 item 3). A flag set, a binding restored or deleted at abort: the failover driver
/// (binding updates to the partner), the lease event log, and in ack mode the committer
/// (the driver takes a ticket and waits until the change is durable before the FORCERENEW
/// it leads to leaves).
#[derive(Clone, Default)]
pub struct ChangeSinks {
    /// The failover driver's change channel.
    pub failover: Option<crate::failover::FailoverTap>,
    /// The lease event log.
    pub events: Option<crate::events::EventTap>,
    /// The ack-mode committer.
    pub committer: Option<Arc<super::commit::Committer>>,
}

/// Longest wait for the committer before a FORCERENEW goes anyway (a failing disk: the
/// committer withholds ACKs meanwhile; the flag is in the page cache and the log's stage).
const DURABLE_WAIT: Duration = Duration::from_secs(2);

impl ChangeSinks {
    /// Hands `changed` to every listener; in ack mode waits (bounded) until the changes are
    /// durable. Returns false when that wait ran out.
    fn publish(&self, changed: &[Slot]) -> bool {
        if changed.is_empty() {
            return true;
        }
        if let Some(t) = &self.failover {
            t.offer(changed);
        }
        if let Some(e) = &self.events {
            e.offer(changed);
        }
        let Some(c) = &self.committer else {
            return true;
        };
        let ticket = c.ticket();
        let t0 = std::time::Instant::now();
        while c.durable() < ticket {
            if t0.elapsed() >= DURABLE_WAIT {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
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
        sinks: ChangeSinks,
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
        let pending_macs = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let handle = ReconfHandle {
            tx,
            stats: stats.clone(),
            progress: progress.clone(),
            cell: cell.clone(),
            v6: v6_handle,
            pending_macs: pending_macs.clone(),
        };
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xdhcpd-reconf".into())
            .spawn(move || {
                crate::server::sched::background();
                run(
                    cell,
                    table,
                    server_id,
                    sock,
                    rx,
                    stats,
                    progress,
                    st,
                    v6_run,
                    pending_macs,
                    sinks,
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
    pending_macs: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 6]>>>,
    sinks: ChangeSinks,
) {
    let policy = cell
        .load()
        .reconf
        .as_ref()
        .map(|r| r.policy.clone())
        .unwrap_or_default();
    let mut campaign = Reconfigurer::new(policy);
    campaign.stats = stats;
    let mut changed = Vec::new();
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
        // Registrations changed by MAC whose bindings are keyed by client id: one scan.
        let macs = std::mem::take(&mut *pending_macs.lock().unwrap_or_else(|p| p.into_inner()));
        if !macs.is_empty() {
            let now = (unix_ms() / 1000) as u32;
            for (slot, l) in table.iter() {
                let bound = l.state == lease_store::LeaseState::Active && l.expiry > now;
                if bound && l.htype == 1 && l.hlen == 6 {
                    if let Ok(mac) = <[u8; 6]>::try_from(l.hw()) {
                        if macs.contains(&mac) {
                            campaign.trigger(slot);
                        }
                    }
                }
            }
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
        // The campaign's record changes go where the workers' go, before any FORCERENEW of
        // this tick leaves (ack mode: durable first).
        campaign.take_changed(&mut changed);
        if !sinks.publish(&changed) {
            tracing::warn!(
                "reconfigure: {} record change(s) not yet durable after {DURABLE_WAIT:?}; \
                 sending anyway",
                changed.len()
            );
        }
        changed.clear();
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
                    // The stored option 82 whole (the record holds its handle).
                    let (now_l, var) = table.read_with_var(slot);
                    let ri = if now_l.var == lease.var {
                        var.relay_agent_info()
                    } else {
                        &[]
                    };
                    match send(rc, &sock, server_id, slot, &lease, ri, replay, &mut buf) {
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
#[allow(clippy::too_many_arguments)]
fn send(
    rc: &ReconfShared,
    sock: &UdpSocket,
    server_id: Ipv4Addr,
    slot: Slot,
    lease: &Lease,
    relay_info: &[u8],
    replay: u64,
    buf: &mut [u8],
) -> anyhow::Result<SocketAddrV4> {
    let (xid, giaddr) = rc.book.get(slot);
    let (n, dest) = build_forcerenew(
        buf, lease, relay_info, xid, giaddr, server_id, replay, &rc.keys, &rc.policy,
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

#[cfg(test)]
mod tests {
    use super::*;
    use lease_store::{ClientKey, LeaseState, OpenOptions, PoolSpec};
    use xdhcpd_registrations::{Index, Registration};

    /// A daemon's reconfigure driver over a table with two bound clients, the registration
    /// trigger watching an index. No packet leaves: the clients hold no reconfigure key and
    /// no token is set, so each trigger ends as `refused_no_auth` (what the test counts).
    struct Bed {
        _dir: tempfile::TempDir,
        driver: ReconfDriver,
        index: Arc<Index>,
    }

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn bed(on: bool) -> Bed {
        let text = format!(
            "[server]\ninterface = \"lo\"\nlease-file = \"/unused\"\n\
             [lease]\ndefault-time = 3600\nmin-time = 60\nmax-time = 7200\n\
             [reconfigure]\nrate = 0\nretries = 1\non-registration-change = {on}\n\
             [[class]]\nname = \"gold\"\n[[class]]\nname = \"silver\"\n\
             [[subnet]]\ncidr = \"127.0.0.0/8\"\n[[subnet.pool]]\nrange = \"127.0.0.10-127.0.0.20\"\n"
        );
        let cfg = Arc::new(xdhcpd_config::parse(&text, "t.toml").expect("test config"));
        let dir = tempfile::tempdir().expect("tempdir");
        let pools: Vec<PoolSpec> = cfg
            .pool_specs()
            .into_iter()
            .map(|(id, first, last)| PoolSpec { id, first, last })
            .collect();
        let now = (unix_ms() / 1000) as u32;
        let (table, _) = LeaseTable::open(
            &dir.path().join("leases.db"),
            &pools,
            &OpenOptions {
                now,
                ..OpenOptions::default()
            },
        )
        .expect("lease table");
        let table = Arc::new(table);
        // A by MAC (no client id); B sends a client id, so its binding is keyed by it.
        for (i, key, mac) in [
            (10u8, ClientKey::from_hw(1, &MAC_A), MAC_A),
            (11, ClientKey::from_client_id(&[0xff, 9, 9, 9]), MAC_B),
        ] {
            let slot = table
                .slot_of(Ipv4Addr::new(127, 0, 0, i))
                .expect("slot in pool");
            table.update(slot, |l| {
                l.state = LeaseState::Active;
                l.client = key;
                l.htype = 1;
                l.hlen = 6;
                l.chaddr[..6].copy_from_slice(&mac);
                l.start = now;
                l.expiry = now + 3600;
            });
        }
        let book = Arc::new(xdhcpd_dhcpv4::engine::reconfigure::ReconfBook::new(
            table.capacity(),
        ));
        let shared = xdhcpd_dhcpv4::EngineShared::new(cfg, table.clone(), Ipv4Addr::LOCALHOST)
            .with_reconfigure(&[7; 16], book);
        let cell = Arc::new(EngineCell::new(Arc::new(shared)));
        let driver = ReconfDriver::start(
            cell,
            table.clone(),
            Ipv4Addr::LOCALHOST,
            None,
            ChangeSinks::default(),
        )
        .expect("driver");
        let index = Arc::new(Index::new());
        index.set_watch(RegistrationTrigger::new(driver.handle(), table));
        Bed {
            _dir: dir,
            driver,
            index,
        }
    }

    fn reg(mac: [u8; 6], group: &str, fixed: Option<Ipv4Addr>) -> Registration {
        Registration {
            mac: Some(mac),
            client_id: None,
            group: group.into(),
            fixed_address: fixed,
            host_name: None,
            next_server: None,
            boot_file: None,
            options: Default::default(),
        }
    }

    fn refused_after(b: &Bed, want: u64) -> u64 {
        let st = &b.driver.handle().stats;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            let n = st.refused_no_auth.load(Ordering::Relaxed);
            if n >= want {
                // Anything more would arrive within a few ticks.
                std::thread::sleep(Duration::from_millis(100));
                return st.refused_no_auth.load(Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        st.refused_no_auth.load(Ordering::Relaxed)
    }

    #[test]
    fn reconfigure_on_registration_change_triggers_changed_clients_only() {
        let b = bed(true);
        // New registrations: nothing (a first sync must not push every client).
        b.index.put(reg(MAC_A, "gold", None));
        b.index.put(reg(MAC_B, "gold", None));
        assert_eq!(refused_after(&b, 1), 0, "additions trigger nothing");
        // The same registration again: no change, nothing.
        b.index.put(reg(MAC_A, "gold", None));
        assert_eq!(refused_after(&b, 1), 0);
        // A's group changes: A's binding (found by its MAC key).
        b.index.put(reg(MAC_A, "silver", None));
        assert_eq!(refused_after(&b, 1), 1);
        // B's fixed address changes: B's binding is keyed by its client id, found by the
        // driver's scan for its MAC; and A holds the new fixed address: A too.
        b.index
            .put(reg(MAC_B, "gold", Some(Ipv4Addr::new(127, 0, 0, 10))));
        assert_eq!(refused_after(&b, 3), 3);
        // Removal: B again.
        b.index.remove(&ClientKey::from_hw(1, &MAC_B));
        assert_eq!(refused_after(&b, 4), 4);
        assert_eq!(b.driver.handle().stats.triggered.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn reconfigure_on_registration_change_is_off_by_default() {
        let b = bed(false);
        b.index.put(reg(MAC_A, "gold", None));
        b.index.put(reg(MAC_A, "silver", None));
        b.index.remove(&ClientKey::from_hw(1, &MAC_A));
        assert_eq!(refused_after(&b, 1), 0);
    }
}
