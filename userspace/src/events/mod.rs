//! The lease event log: one JSON line per lease event (ACK, RENEW, RELEASE, DECLINE, EXPIRE,
//! and the same for changes the failover partner made), written off the packet path and
//! queryable afterwards ([`history`]: who held an address at a time).
//!
//! Workers hand the slots they changed to [`EventTap::offer`] (a bounded channel, `try_send`:
//! a worker never waits; when the channel is full the slots are dropped and counted in
//! `dropped`). The writer thread reads each record from the lease table itself, compares it
//! with what it logged last for that address and writes the event. EXPIRE is written by the
//! writer when a lease it logged reaches its end unrenewed (time = the lease's end).
//!
//! Files: `<directory>/events.jsonl`, rotated to `events-<unix time>.jsonl` when it reaches
//! `max-size-mb` or is `max-age-hours` old; the oldest beyond `keep` are deleted.
//! Not in the record, so not in the log: the client's host name (option 12).
//!
//! With `[event-log.nats]` the writer also appends every event to the NATS spool, which a
//! publisher thread sends to JetStream ([`nats`]); `xdhcpd events archive` ([`archive`])
//! stores the stream in PostgreSQL, where `xdhcpd ctl history --archive` asks.

pub mod archive;
pub mod history;
pub mod nats;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use lease_store::{ClientKey, KeyKind, Lease, LeaseState, LeaseTable, Slot};
use serde::{Deserialize, Serialize};
use xdhcpd_config::EventLogConfig;

use crate::clock::unix_now;
use crate::leases::time::iso8601;

/// Slots the channel holds (workers drop and count beyond it).
const CHANNEL: usize = 1 << 16;
/// How often the writer drains the channel (it never sleeps on it; see `Writer::run`).
/// At 2^16 slots a tick, up to 6.5 million changed slots a second fit.
const TICK: Duration = Duration::from_millis(10);
/// Name of the file being written.
pub const CURRENT: &str = "events.jsonl";

/// Who changed the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// This server's DHCP engine.
    Dhcp,
    /// A binding update from the failover partner.
    Failover,
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEvent {
    /// Unix seconds of the event (EXPIRE: the lease's end).
    pub time: u32,
    /// The same as RFC 3339, for people and `grep`.
    pub ts: String,
    /// `ack`, `renew`, `release`, `decline`, `expire`.
    pub event: String,
    pub ip: String,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Client identifier (option 61) in hex, if the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Relay agent information (option 82) in hex, if relayed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_info: Option<String>,
    /// Lease start and end (unix seconds).
    pub start: u32,
    pub expiry: u32,
    pub source: Source,
}

/// The writer's map of slots (one insert per event: foldhash, not SipHash).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What the writer remembers of an address it logged.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    state: LeaseState,
    client: ClientKey,
    expiry: u32,
}

/// The workers' (and the failover driver's) end: hands changed slots to the writer.
#[derive(Clone)]
pub struct EventTap {
    tx: Sender<(Slot, Source)>,
    /// Slots not handed over because the channel was full.
    pub dropped: Arc<AtomicU64>,
}

impl EventTap {
    /// Hands slots changed by DHCP to the writer; never blocks.
    pub fn offer(&self, slots: &[Slot]) {
        for s in slots {
            if !self.send(*s, Source::Dhcp) {
                return;
            }
        }
    }

    /// Hands one slot the failover partner's update changed to the writer; never blocks.
    pub fn offer_failover(&self, slot: Slot) {
        self.send(slot, Source::Failover);
    }

    fn send(&self, s: Slot, src: Source) -> bool {
        match self.tx.try_send((s, src)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Counters of the event log (for metrics).
#[derive(Debug, Default)]
pub struct EventLogStats {
    pub written: AtomicU64,
    pub write_errors: AtomicU64,
    pub rotations: AtomicU64,
    /// The NATS sink's (None: no `[event-log.nats]`).
    pub nats: Option<Arc<nats::NatsStats>>,
}

/// The running event log writer.
pub struct EventLog {
    tap: EventTap,
    stats: Arc<EventLogStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The NATS publisher (stopped after the writer).
    publisher: Option<nats::Publisher>,
}

impl EventLog {
    /// Creates the directory if needed, opens the current file and starts the writer thread;
    /// with `[event-log.nats]` also opens the spool and starts the publisher (`server_id` and
    /// `subnets` name the subjects; `relationship`, the failover pair, goes into each message).
    pub fn start(
        cfg: &EventLogConfig,
        table: Arc<LeaseTable>,
        server_id: std::net::Ipv4Addr,
        subnets: &[xdhcpd_config::Ipv4Net],
        relationship: Option<nats::Relationship>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.directory)
            .with_context(|| format!("event log: creating {}", cfg.directory.display()))?;
        let files = Files::open(cfg)?;
        let (tx, rx) = bounded(CHANNEL);
        let tap = EventTap {
            tx,
            dropped: Arc::default(),
        };
        let (spool, publisher, nats_stats) = match &cfg.nats {
            Some(nc) => {
                let st = Arc::new(nats::NatsStats::default());
                let dir = nc
                    .spool_directory
                    .clone()
                    .unwrap_or_else(|| cfg.directory.join("nats-spool"));
                let router = nats::Router::new(nc, server_id, subnets, relationship);
                let (w, r) = nats::SpoolWriter::open(
                    &dir,
                    u64::from(nc.spool_max_mb) << 20,
                    router.clone(),
                    st.clone(),
                )?;
                let p = nats::Publisher::start(nc.clone(), r, st.clone())?;
                tracing::info!(
                    "lease events to NATS {} stream {} as {}.{}.<subnet>.<event> (spool {})",
                    nc.urls.join(","),
                    nc.stream,
                    nc.subject_prefix,
                    router.server(),
                    dir.display()
                );
                (Some(w), Some(p), Some(st))
            }
            None => (None, None, None),
        };
        let stats = Arc::new(EventLogStats {
            nats: nats_stats,
            ..EventLogStats::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = Writer {
            table,
            files,
            seen: HashMap::default(),
            ends: BinaryHeap::new(),
            stats: stats.clone(),
            line: Vec::with_capacity(512),
            spool,
        };
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xdhcpd-events".into())
            .spawn(move || w.run(rx, st))
            .context("spawning the event log thread")?;
        tracing::info!("lease event log in {}", cfg.directory.display());
        Ok(EventLog {
            tap,
            stats,
            stop,
            thread: Some(thread),
            publisher,
        })
    }

    /// The workers' end.
    pub fn tap(&self) -> EventTap {
        self.tap.clone()
    }

    pub fn stats(&self) -> Arc<EventLogStats> {
        self.stats.clone()
    }

    /// Writes what is queued and stops (call after the workers stopped); the NATS publisher
    /// stops after the writer (what it has not sent stays in the spool for the next start).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(mut p) = self.publisher.take() {
            p.stop();
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The current file and the rotation rule.
struct Files {
    dir: PathBuf,
    out: BufWriter<File>,
    size: u64,
    opened: Instant,
    max_size: u64,
    max_age: Option<Duration>,
    keep: usize,
}

impl Files {
    fn open(cfg: &EventLogConfig) -> anyhow::Result<Self> {
        let path = cfg.directory.join(CURRENT);
        let f = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("event log: opening {}", path.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Files {
            dir: cfg.directory.clone(),
            out: BufWriter::with_capacity(1 << 16, f),
            size,
            opened: Instant::now(),
            max_size: u64::from(cfg.max_size_mb) << 20,
            max_age: (cfg.max_age_hours > 0)
                .then(|| Duration::from_secs(u64::from(cfg.max_age_hours) * 3600)),
            keep: cfg.keep as usize,
        })
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.out.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn due(&self) -> bool {
        self.size >= self.max_size
            || (self.size > 0 && self.max_age.is_some_and(|a| self.opened.elapsed() >= a))
    }

    /// Renames the current file to `events-<now>.jsonl`, starts a new one, deletes the oldest
    /// rotated files beyond `keep`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let cur = self.dir.join(CURRENT);
        let mut t = u64::from(unix_now());
        let mut to = self.dir.join(format!("events-{t}.jsonl"));
        while to.exists() {
            t += 1;
            to = self.dir.join(format!("events-{t}.jsonl"));
        }
        std::fs::rename(&cur, &to)?;
        let f = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .append(true)
            .open(&cur)?;
        self.out = BufWriter::with_capacity(1 << 16, f);
        self.size = 0;
        self.opened = Instant::now();
        let mut rotated = history::rotated_files(&self.dir)?;
        while rotated.len() > self.keep {
            let (_, p) = rotated.remove(0);
            std::fs::remove_file(&p)?;
        }
        Ok(())
    }
}

struct Writer {
    table: Arc<LeaseTable>,
    files: Files,
    seen: HashMap<u32, Seen>,
    /// (lease end, slot) of the bound leases logged, soonest first.
    ends: BinaryHeap<Reverse<(u32, u32)>>,
    stats: Arc<EventLogStats>,
    /// The line being encoded (reused: no allocation per event).
    line: Vec<u8>,
    /// `[event-log.nats]`: every event also goes to the NATS spool.
    spool: Option<nats::SpoolWriter>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<(Slot, Source)>, stop: Arc<AtomicBool>) {
        let mut last_flush = Instant::now();
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            // Drained on a tick, never parked on the channel: a receiver blocked in `recv`
            // makes every worker's `try_send` wake it with a futex call (about a third of the
            // event log's cost per DORA in the bench before this change); a queue polled
            // every few milliseconds costs the workers one atomic push per slot.
            for (s, src) in rx.try_iter().take(CHANNEL) {
                self.record(s, src);
            }
            if stopping && rx.is_empty() {
                break;
            }
            self.expire(unix_now());
            if let Some(sp) = &mut self.spool {
                // The publisher reads what the kernel has: hand each batch over at once.
                sp.flush();
            }
            if last_flush.elapsed() >= Duration::from_millis(500) {
                self.flush();
                last_flush = Instant::now();
            }
            if self.files.due() {
                match self.files.rotate() {
                    Ok(()) => {
                        self.stats.rotations.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("event log: rotation failed: {e}");
                    }
                }
            }
            if rx.is_empty() && !stopping {
                std::thread::sleep(TICK);
            }
        }
        self.flush();
        if let Some(sp) = &mut self.spool {
            sp.flush();
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.files.out.flush() {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("event log: write failed: {e}");
        }
    }

    /// Reads the record of `slot` and logs what changed since it was last seen.
    fn record(&mut self, slot: Slot, src: Source) {
        // With its variable data: the line carries option 82 whole.
        let (l, var) = self.table.read_with_var(slot);
        let now = Seen {
            state: l.state,
            client: l.client,
            expiry: l.expiry,
        };
        let prev = self.seen.insert(slot.index(), now);
        if prev == Some(now) {
            return;
        }
        let same_client = prev.is_some_and(|p| p.client == l.client);
        let kind = match l.state {
            LeaseState::Active => {
                if same_client && prev.is_some_and(|p| p.state == LeaseState::Active) {
                    "renew"
                } else {
                    "ack"
                }
            }
            LeaseState::Released if prev.map(|p| p.state) != Some(LeaseState::Released) => {
                "release"
            }
            LeaseState::Declined | LeaseState::Abandoned
                if prev.map(|p| p.state) != Some(l.state) =>
            {
                "decline"
            }
            LeaseState::Expired
                if prev.is_some_and(|p| p.state == LeaseState::Active && same_client) =>
            {
                "expire"
            }
            _ => return,
        };
        let time = if kind == "expire" {
            l.expiry
        } else {
            // The record's own time of the change where it has one.
            match l.state {
                LeaseState::Active if l.cltt != 0 => l.cltt,
                _ => unix_now(),
            }
        };
        if l.state == LeaseState::Active {
            self.ends.push(Reverse((l.expiry, slot.index())));
        }
        self.write(kind, time, &l, var.relay_agent_info(), src);
    }

    /// Logs EXPIRE for bound leases that reached their end unrenewed.
    fn expire(&mut self, now: u32) {
        while let Some(Reverse((end, slot))) = self.ends.peek().copied() {
            if end > now {
                return;
            }
            self.ends.pop();
            let Some(seen) = self.seen.get(&slot).copied() else {
                continue;
            };
            if seen.state != LeaseState::Active || seen.expiry != end {
                continue; // renewed, released, ... since
            }
            let Some(s) = self.table.slot(slot) else {
                continue;
            };
            let (l, var) = self.table.read_with_var(s);
            // Still that lease (or the sweeper already marked it expired).
            if l.client == seen.client
                && l.expiry == end
                && matches!(l.state, LeaseState::Active | LeaseState::Expired)
            {
                self.seen.insert(
                    slot,
                    Seen {
                        state: LeaseState::Expired,
                        ..seen
                    },
                );
                self.write("expire", end, &l, var.relay_agent_info(), Source::Dhcp);
            }
        }
    }

    fn write(&mut self, kind: &str, time: u32, l: &Lease, ri: &[u8], source: Source) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        encode_line(&mut line, kind, time, l, ri, source);
        if let Some(sp) = &mut self.spool {
            // Only with `[event-log.nats]`: the NATS event is the line's fields (encoded once,
            // `{` and `}\n` left off) behind the server's fields; no allocation.
            sp.append_encoded(kind, time, l, &line[1..line.len() - 2]);
        }
        match self.files.write(&line) {
            Ok(()) => {
                self.stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("event log: write failed: {e}");
            }
        }
        self.line = line;
    }
}

/// Appends the JSON line of an event (with its newline) to `out`: byte for byte what
/// `serde_json` writes for [`event_of`]'s [`LeaseEvent`] (a test holds them equal), without
/// the eight `String`s that takes per event.
fn encode_line(out: &mut Vec<u8>, kind: &str, time: u32, l: &Lease, ri: &[u8], source: Source) {
    out.push(b'{');
    encode_fields(out, kind, time, l, ri, source);
    out.extend_from_slice(b"}\n");
}

/// Appends `n` in decimal (no allocation, no formatter).
pub(crate) fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut b = [0u8; 10];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

/// Appends `n` as at least two digits (`07`), for the time stamp.
fn push_2(out: &mut Vec<u8>, n: u32) {
    if n < 10 {
        out.push(b'0');
    }
    push_u32(out, n);
}

/// Appends the address in dotted decimal.
pub(crate) fn push_ipv4(out: &mut Vec<u8>, a: std::net::Ipv4Addr) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u32(out, u32::from(o));
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn push_hex(out: &mut Vec<u8>, b: &[u8]) {
    for x in b {
        out.push(HEX[usize::from(x >> 4)]);
        out.push(HEX[usize::from(x & 15)]);
    }
}

/// Appends `aa:bb:cc:dd:ee:ff`, the record's hardware address.
pub(crate) fn push_mac(out: &mut Vec<u8>, l: &Lease) {
    for (i, x) in l.hw().iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        push_hex(out, std::slice::from_ref(x));
    }
}

/// Appends an event's JSON fields without the braces (`"time":...,"source":"dhcp"`): the
/// event log line's body and the NATS message's event part (after its `server` fields).
pub(crate) fn encode_fields(
    out: &mut Vec<u8>,
    kind: &str,
    time: u32,
    l: &Lease,
    ri: &[u8],
    source: Source,
) {
    let (y, mo, d, h, mi, se) = crate::leases::time::civil(u64::from(time));
    out.extend_from_slice(b"\"time\":");
    push_u32(out, time);
    out.extend_from_slice(b",\"ts\":\"");
    // Four digits for every year a u32 of seconds reaches (1970..=2106).
    push_u32(out, y as u32);
    out.push(b'-');
    push_2(out, mo);
    out.push(b'-');
    push_2(out, d);
    out.push(b'T');
    push_2(out, h as u32);
    out.push(b':');
    push_2(out, mi as u32);
    out.push(b':');
    push_2(out, se as u32);
    out.extend_from_slice(b"Z\",\"event\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"ip\":\"");
    push_ipv4(out, l.addr);
    out.extend_from_slice(b"\",\"mac\":\"");
    push_mac(out, l);
    out.push(b'"');
    if l.client.kind() == KeyKind::ClientId {
        out.extend_from_slice(b",\"client_id\":\"");
        push_hex(out, l.client.as_bytes());
        out.push(b'"');
    }
    if !ri.is_empty() {
        out.extend_from_slice(b",\"relay_info\":\"");
        push_hex(out, ri);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"start\":");
    push_u32(out, l.start);
    out.extend_from_slice(b",\"expiry\":");
    push_u32(out, l.expiry);
    out.extend_from_slice(match source {
        Source::Dhcp => b",\"source\":\"dhcp\"",
        Source::Failover => b",\"source\":\"failover\"",
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `aa:bb:cc:dd:ee:ff` of a record's hardware address.
pub fn mac_of(l: &Lease) -> String {
    l.hw()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The event line for a record with option 82 `ri` (read with it).
pub fn event_of(kind: &str, time: u32, l: &Lease, ri: &[u8], source: Source) -> LeaseEvent {
    LeaseEvent {
        time,
        ts: iso8601(u64::from(time)),
        event: kind.to_string(),
        ip: l.addr.to_string(),
        mac: mac_of(l),
        client_id: (l.client.kind() == KeyKind::ClientId).then(|| hex(l.client.as_bytes())),
        relay_info: (!ri.is_empty()).then(|| hex(ri)),
        start: l.start,
        expiry: l.expiry,
        source,
    }
}

/// The directory a configuration's event log is in (for `xdhcpd ctl history`).
pub fn directory_of(cfg: &xdhcpd_config::Config) -> Option<&Path> {
    cfg.event_log.as_ref().map(|e| e.directory.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lease_store::{OpenOptions, PoolSpec};
    use std::net::Ipv4Addr;

    fn writer(dir: &Path) -> (Writer, Arc<LeaseTable>) {
        let pools = [PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 0, 10),
            last: Ipv4Addr::new(10, 0, 0, 19),
        }];
        let (t, _) =
            LeaseTable::open(&dir.join("l.db"), &pools, &OpenOptions::default()).expect("table");
        let t = Arc::new(t);
        let cfg = EventLogConfig {
            directory: dir.join("ev"),
            max_size_mb: 1,
            max_age_hours: 0,
            keep: 2,
            nats: None,
        };
        std::fs::create_dir_all(&cfg.directory).expect("dir");
        let w = Writer {
            table: t.clone(),
            files: Files::open(&cfg).expect("files"),
            seen: HashMap::default(),
            ends: BinaryHeap::new(),
            stats: Arc::default(),
            line: Vec::new(),
            spool: None,
        };
        (w, t)
    }

    fn bind(t: &LeaseTable, s: Slot, mac: u8, start: u32, end: u32) {
        t.update(s, |l| {
            l.state = LeaseState::Active;
            l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, mac]);
            l.htype = 1;
            l.hlen = 6;
            l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, mac]);
            l.start = start;
            l.cltt = start;
            l.expiry = end;
            l.set_relay_agent_info(&[1, 2, 0xab, 0xcd]);
        });
    }

    fn lines(dir: &Path) -> Vec<LeaseEvent> {
        std::fs::read_to_string(dir.join("ev").join(CURRENT))
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("event line"))
            .collect()
    }

    #[test]
    fn events_ack_renew_release_expire_from_the_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, t) = writer(dir.path());
        let s = t.slot_of(Ipv4Addr::new(10, 0, 0, 12)).expect("slot");
        let s2 = t.slot_of(Ipv4Addr::new(10, 0, 0, 13)).expect("slot");
        // An offer is not an event.
        t.update(s, |l| {
            l.state = LeaseState::Offered;
            l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 1]);
        });
        w.record(s, Source::Dhcp);
        bind(&t, s, 1, 1000, 2000);
        w.record(s, Source::Dhcp);
        w.record(s, Source::Dhcp); // unchanged: nothing
        bind(&t, s, 1, 1500, 2500);
        w.record(s, Source::Dhcp);
        t.update(s, |l| l.state = LeaseState::Released);
        w.record(s, Source::Dhcp);
        // Another client on another address, from the partner; it runs out unrenewed.
        bind(&t, s2, 2, 3000, 4000);
        w.record(s2, Source::Failover);
        w.expire(3999);
        w.expire(4000);
        w.expire(4001); // once
        w.flush();
        let ev = lines(dir.path());
        let kinds: Vec<(&str, &str, u32)> = ev
            .iter()
            .map(|e| (e.event.as_str(), e.ip.as_str(), e.time))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("ack", "10.0.0.12", 1000),
                ("renew", "10.0.0.12", 1500),
                ("release", "10.0.0.12", kinds[2].2),
                ("ack", "10.0.0.13", 3000),
                ("expire", "10.0.0.13", 4000),
            ]
        );
        assert_eq!(ev[0].mac, "02:00:00:00:00:01");
        assert_eq!(ev[0].relay_info.as_deref(), Some("0102abcd"));
        assert_eq!(ev[3].source, Source::Failover);
        // And history answers from those lines.
        let a = history::who_held(&dir.path().join("ev"), Ipv4Addr::new(10, 0, 0, 13), 3500)
            .expect("history");
        assert_eq!(a.holder.expect("held").mac, "02:00:00:00:00:02");
    }

    #[test]
    fn events_line_encoding_equals_serde_for_every_field_combination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_w, t) = writer(dir.path());
        let s = t.slot_of(Ipv4Addr::new(10, 0, 0, 12)).expect("slot");
        for (cid, ri, time) in [
            (false, false, 0u32),
            (true, false, 1_795_316_927),
            (false, true, u32::MAX),
            (true, true, 951_782_400), // 2000-02-29
        ] {
            bind(&t, s, 7, 1000, 2000);
            t.update(s, |l| {
                if cid {
                    l.client = ClientKey::from_client_id(&[1, 0xaa, 0xbb, 0x0c]);
                }
                if !ri {
                    l.set_relay_agent_info(&[]);
                }
            });
            let (l, var) = t.read_with_var(s);
            let ri = var.relay_agent_info();
            for src in [Source::Dhcp, Source::Failover] {
                for kind in ["ack", "expire"] {
                    let mut want =
                        serde_json::to_vec(&event_of(kind, time, &l, ri, src)).expect("json");
                    want.push(b'\n');
                    let mut got = Vec::new();
                    encode_line(&mut got, kind, time, &l, ri, src);
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want)
                    );
                }
            }
        }
    }

    #[test]
    fn events_nats_spool_gets_the_log_line_fields_behind_the_server_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, t) = writer(dir.path());
        let nc = xdhcpd_config::NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            events_per_message: 10,
            ..Default::default()
        };
        let net = xdhcpd_config::Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24).expect("net");
        let router = nats::Router::new(&nc, Ipv4Addr::new(10, 0, 0, 1), &[net], None);
        let st = Arc::new(nats::NatsStats::default());
        let (sp, rd) = nats::SpoolWriter::open(
            &dir.path().join("spool"),
            1 << 30,
            router.clone(),
            st.clone(),
        )
        .expect("spool");
        w.spool = Some(sp);
        let s = t.slot_of(Ipv4Addr::new(10, 0, 0, 12)).expect("slot");
        bind(&t, s, 1, 1000, 2000);
        w.record(s, Source::Dhcp);
        t.update(s, |l| l.client = ClientKey::from_client_id(&[1, 0xaa]));
        w.record(s, Source::Failover);
        if let Some(sp) = &mut w.spool {
            sp.flush();
        }
        w.flush();
        let logged = lines(dir.path());
        let b = rd.read_batch(10, &st).expect("read");
        assert_eq!((b.messages.len(), b.events), (1, 2));
        let got: Vec<nats::NatsEvent> =
            serde_json::from_slice(&b.messages[0].payload).expect("batch");
        let want: Vec<nats::NatsEvent> = logged
            .iter()
            .map(|e| router.nats_event(e, Some(router.message_id(e))))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got[1].event.source, Source::Failover);
        assert!(got[1].event.client_id.is_some());
    }

    #[test]
    fn events_rotate_by_size_and_keep_the_newest_files_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, t) = writer(dir.path());
        let s = t.slot_of(Ipv4Addr::new(10, 0, 0, 12)).expect("slot");
        for round in 0..4u32 {
            // A bit over 1 MiB per round.
            let l = t.read(s);
            for _ in 0..20_000 {
                w.write("ack", round, &l, &[], Source::Dhcp);
            }
            assert!(w.files.due());
            w.files.rotate().expect("rotate");
        }
        let rotated = history::rotated_files(&dir.path().join("ev")).expect("list");
        assert_eq!(rotated.len(), 2, "keep = 2");
        // Who held which address, with option 82: readable by the daemon's user only, the
        // current file and every rotated one (they were created 0644 before).
        use std::os::unix::fs::PermissionsExt;
        let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        files.push(dir.path().join("ev").join(CURRENT));
        for p in files {
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is mode {:o}",
                p.display(),
                mode & 0o777
            );
        }
        assert_eq!(
            std::fs::metadata(dir.path().join("ev").join(CURRENT))
                .expect("cur")
                .len(),
            0
        );
    }

    #[test]
    fn events_tap_never_blocks_and_counts_drops() {
        let (tx, _rx) = bounded(2);
        let tap = EventTap {
            tx,
            dropped: Arc::default(),
        };
        let slots: Vec<Slot> = Vec::new();
        tap.offer(&slots);
        let dir = tempfile::tempdir().expect("tempdir");
        let (_w, t) = writer(dir.path());
        let s: Vec<Slot> = (0..5).filter_map(|i| t.slot(i)).collect();
        tap.offer(&s);
        assert_eq!(
            tap.dropped.load(Ordering::Relaxed),
            1,
            "the rest of a batch is dropped"
        );
    }
}
