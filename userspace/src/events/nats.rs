//! Lease events on NATS JetStream (`[event-log.nats]`): at-least-once, in order, through a
//! local on-disk spool.
//!
//! The event log's writer thread ([`super::EventLog`]) appends every event it logs to the
//! spool ([`SpoolWriter`], encoded from the record into reused buffers: no allocation per
//! event): append-only segment files `spool-<n>.log` in the spool directory, one record a line,
//! each record one NATS message: `subject TAB message-id TAB json` for a single event
//! (`events-per-message = 1`), else `subject TAB batch-id TAB n TAB [json,...]`, up to
//! `events-per-message` events of one subnet logged in one writer tick (a JSON array, each
//! event with its own id; the batch id is derived from the events' ids). Records are flushed to
//! the kernel after every batch the writer handles and synced to disk at most once a second. A
//! publisher thread of its own ([`Publisher`]: async-nats on a single-threaded tokio runtime,
//! never on a worker) reads the spool from its cursor ([`SpoolReader`]), publishes `batch-size`
//! messages, waits for every JetStream ack, and only then moves the cursor (file `cursor`,
//! replaced by rename at most every 250 ms within a segment, and always before it deletes the
//! segments it finished). So:
//! - NATS down: the spool grows; events are sent in spool order when NATS returns;
//! - a lost ack, a timeout or a crash re-sends from the cursor: every message carries
//!   `Nats-Msg-Id` (stable: derived from the event, or from a batch's events), so the stream
//!   drops the duplicates within its duplicate window (10 min when we create the stream), and
//!   the archive drops them per event id;
//! - order: one connection, published in spool order (an address is in one subnet, so its
//!   events keep their order across the per-subnet batches); after a failure the whole batch is
//!   sent again from its first message, so what the stream stored is a prefix of the spool followed by
//!   that prefix again (dropped as duplicates) and the rest, in order;
//! - bounded: when the unsent bytes reach `spool-max-mb` a new event is not spooled: counted
//!   (`spool_dropped`), logged (the first and every 10,000th); it stays in the local event log.
//! - a crash mid-append leaves a partial last line: cut when the spool is opened again.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use xdhcpd_config::{Ipv4Net, NatsConfig};

use lease_store::{KeyKind, Lease};

use super::{LeaseEvent, Source};

/// A segment is closed (and a new one started) past this size.
const SEGMENT_BYTES: u64 = 16 << 20;
/// The stream's duplicate window when xdhcpd creates the stream.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// A client that stayed disconnected this long is dropped and a new one connected.
const RECONNECT_AFTER: Duration = Duration::from_secs(20);
const CURSOR: &str = "cursor";

/// Counters and state of the NATS sink (for `/metrics` and `/v1/status`).
#[derive(Debug, Default)]
pub struct NatsStats {
    /// 1 while the publisher's client is connected.
    pub connected: AtomicBool,
    /// Events JetStream acknowledged (duplicates included).
    pub published: AtomicU64,
    /// Messages JetStream acknowledged (a batch message carries up to `events-per-message`).
    pub messages: AtomicU64,
    /// Of those, acks that said "duplicate" (a re-send the stream already had).
    pub duplicates: AtomicU64,
    /// Events appended to the spool.
    pub spooled: AtomicU64,
    /// Events in the spool not yet acknowledged (the depth).
    pub depth: AtomicU64,
    /// Bytes of those.
    pub depth_bytes: AtomicU64,
    /// Events not spooled because the spool was full (they stay in the local event log).
    pub spool_dropped: AtomicU64,
    /// Failed spool writes or reads (and unreadable spool lines skipped).
    pub spool_errors: AtomicU64,
    /// Batches that failed (publish error, missing ack, timeout) and are sent again.
    pub publish_errors: AtomicU64,
    /// Connection attempts that failed (or a stream that could not be created / found).
    pub connect_errors: AtomicU64,
    /// Times an established connection was lost.
    pub disconnects: AtomicU64,
}

impl NatsStats {
    /// The state as JSON for `/v1/status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "published": r(&self.published),
            "messages": r(&self.messages),
            "duplicates": r(&self.duplicates),
            "spooled": r(&self.spooled),
            "spool_depth": r(&self.depth),
            "spool_depth_bytes": r(&self.depth_bytes),
            "spool_dropped": r(&self.spool_dropped),
            "spool_errors": r(&self.spool_errors),
            "publish_errors": r(&self.publish_errors),
            "connect_errors": r(&self.connect_errors),
            "disconnects": r(&self.disconnects),
        })
    }
}

/// One event as published: the event log line plus who sent it: the server's name, its
/// `server-id` and, in a failover pair, the relationship's name and the server's role (what
/// `xdhcpd ctl servers` lists from the archive). Older publishers sent only `server`: the
/// other three are optional. In a batch message (a JSON array of these) each event also
/// carries its own `id` (what `Nats-Msg-Id` is for a single event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsEvent {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub event: LeaseEvent,
}

/// Who this server is in a failover relationship (`[failover] name` and `role`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relationship {
    pub name: String,
    /// `primary` or `secondary`.
    pub role: String,
}

/// The last subject token of a batch message.
pub const BATCH_TOKEN: &str = "batch";

/// Subjects, message ids and payloads of this server's events, encoded straight from the
/// lease record into reused buffers (no allocation per event).
#[derive(Clone, Debug)]
pub struct Router {
    prefix: String,
    server: String,
    server_id: String,
    relationship: Option<Relationship>,
    subnets: Vec<(Ipv4Net, String)>,
    /// `{"server":..,"server_id":..[,"relationship":..,"role":..]` (JSON-escaped once).
    head: Vec<u8>,
    /// `events-per-message`.
    per_message: usize,
}

/// `10.77.0.0/16` as a subject token: `10-77-0-0_16`.
pub fn subnet_token(n: &Ipv4Net) -> String {
    format!("{}_{}", n.addr().to_string().replace('.', "-"), n.prefix())
}

/// A JSON string literal (with its quotes).
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl Router {
    pub fn new(
        cfg: &NatsConfig,
        server_id: Ipv4Addr,
        subnets: &[Ipv4Net],
        relationship: Option<Relationship>,
    ) -> Self {
        let server = cfg
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.to_string().replace('.', "-"));
        let mut head = format!(
            "{{\"server\":{},\"server_id\":{}",
            json_str(&server),
            json_str(&server_id.to_string())
        );
        if let Some(r) = &relationship {
            head.push_str(&format!(
                ",\"relationship\":{},\"role\":{}",
                json_str(&r.name),
                json_str(&r.role)
            ));
        }
        Router {
            prefix: cfg.subject_prefix.clone(),
            server,
            server_id: server_id.to_string(),
            relationship,
            subnets: subnets.iter().map(|n| (*n, subnet_token(n))).collect(),
            head: head.into_bytes(),
            per_message: cfg.events_per_message.max(1) as usize,
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Events per message (`events-per-message`).
    pub fn per_message(&self) -> usize {
        self.per_message
    }

    /// Index of the subnet of `ip` (`subnets.len()`: none).
    fn subnet_of(&self, ip: Ipv4Addr) -> usize {
        self.subnets
            .iter()
            .position(|(n, _)| n.contains(ip))
            .unwrap_or(self.subnets.len())
    }

    /// Appends `<prefix>.<server>.<subnet>.<last>`.
    fn push_subject(&self, out: &mut Vec<u8>, subnet: usize, last: &str) {
        out.extend_from_slice(self.prefix.as_bytes());
        out.push(b'.');
        out.extend_from_slice(self.server.as_bytes());
        out.push(b'.');
        let t = self.subnets.get(subnet).map_or("none", |(_, t)| t.as_str());
        out.extend_from_slice(t.as_bytes());
        out.push(b'.');
        out.extend_from_slice(last.as_bytes());
    }

    /// Appends the stable id of an event: `<server>/<ip>/<event>/<time>/<expiry>/<client>`
    /// (client: the client id in hex, else the MAC), as [`Router::message_id`].
    fn push_id(&self, out: &mut Vec<u8>, kind: &str, time: u32, l: &Lease) {
        out.extend_from_slice(self.server.as_bytes());
        out.push(b'/');
        super::push_ipv4(out, l.addr);
        out.push(b'/');
        out.extend_from_slice(kind.as_bytes());
        out.push(b'/');
        super::push_u32(out, time);
        out.push(b'/');
        super::push_u32(out, l.expiry);
        out.push(b'/');
        if l.client.kind() == KeyKind::ClientId {
            super::push_hex(out, l.client.as_bytes());
        } else {
            super::push_mac(out, l);
        }
    }

    /// Appends the event's JSON object ([`NatsEvent`]; with `id` inside when given) around
    /// `fields`, the event's encoded fields ([`super::encode_fields`]).
    fn push_event(&self, out: &mut Vec<u8>, fields: &[u8], id: Option<&[u8]>) {
        out.extend_from_slice(&self.head);
        if let Some(id) = id {
            // Ids are made of tokens, digits, dots, colons, slashes and hex: no escaping.
            out.extend_from_slice(b",\"id\":\"");
            out.extend_from_slice(id);
            out.push(b'"');
        }
        out.push(b',');
        out.extend_from_slice(fields);
        out.push(b'}');
    }

    /// `<prefix>.<server>.<subnet>.<event>` (reference form of the encoder; tests).
    pub fn subject(&self, ev: &LeaseEvent) -> String {
        let subnet = ev
            .ip
            .parse::<Ipv4Addr>()
            .ok()
            .and_then(|ip| self.subnets.iter().find(|(n, _)| n.contains(ip)))
            .map_or("none", |(_, t)| t.as_str());
        format!("{}.{}.{}.{}", self.prefix, self.server, subnet, ev.event)
    }

    /// The stable message id of an event (the same event re-sent has the same id).
    pub fn message_id(&self, ev: &LeaseEvent) -> String {
        let client = ev.client_id.as_deref().unwrap_or(&ev.mac);
        format!(
            "{}/{}/{}/{}/{}/{}",
            self.server, ev.ip, ev.event, ev.time, ev.expiry, client
        )
    }

    /// The published form of an event (reference form of the encoder; tests and tools).
    pub fn nats_event(&self, ev: &LeaseEvent, id: Option<String>) -> NatsEvent {
        NatsEvent {
            server: self.server.clone(),
            server_id: Some(self.server_id.clone()),
            relationship: self.relationship.as_ref().map(|r| r.name.clone()),
            role: self.relationship.as_ref().map(|r| r.role.clone()),
            id,
            event: ev.clone(),
        }
    }
}

/// FNV-1a (64 bit) over `b`, continuing from `h`: the batch id's digest of its events' ids.
fn fnv1a(mut h: u64, b: &[u8]) -> u64 {
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Events of one subnet waiting for their batch message (the writer's tick, or a full one).
#[derive(Default)]
struct Pending {
    /// The array's elements so far, comma-separated.
    body: Vec<u8>,
    events: u32,
    first_id: Vec<u8>,
    digest: u64,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("spool-{n:010}.log"))
}

/// Segment numbers in `dir`, ascending.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("spool-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// (segment, offset) of the first unsent byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

fn read_cursor(dir: &Path) -> anyhow::Result<Option<Position>> {
    let p = dir.join(CURSOR);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Ok(Some(Position { segment, offset })),
        _ => anyhow::bail!(
            "{}: expected `<segment> <offset>`, found {:?}",
            p.display(),
            text.trim()
        ),
    }
}

/// The writer's end of the spool (on the event log's writer thread).
pub struct SpoolWriter {
    dir: PathBuf,
    segment: u64,
    out: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    router: Router,
    stats: Arc<NatsStats>,
    dirty: bool,
    unsynced: bool,
    last_sync: Instant,
    /// Per subnet (and one for none): the batch being filled (`events-per-message` > 1).
    pending: Vec<Pending>,
    /// Bytes in `pending` (counted against `spool-max-mb` with the unsent spool).
    pending_bytes: u64,
    /// Reused buffers: the spool record and an event's id.
    rec: Vec<u8>,
    id: Vec<u8>,
    fields: Vec<u8>,
}

impl SpoolWriter {
    /// Opens the spool in `dir` (created if needed): cuts a partial last line left by a crash,
    /// counts the unsent events from the cursor on, and appends to the last segment.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        router: Router,
        stats: Arc<NatsStats>,
    ) -> anyhow::Result<(SpoolWriter, SpoolReader)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("NATS spool: creating {}", dir.display()))?;
        let segs =
            segments(dir).with_context(|| format!("NATS spool: listing {}", dir.display()))?;
        let last = segs.last().copied().unwrap_or(0);
        let path = segment_path(dir, last);
        let f = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("NATS spool: opening {}", path.display()))?;
        let size =
            cut_partial_line(&f).with_context(|| format!("NATS spool: {}", path.display()))?;
        let cursor = read_cursor(dir)?.unwrap_or(Position {
            segment: segs.first().copied().unwrap_or(0),
            offset: 0,
        });
        // The backlog from the cursor on.
        let (mut events, mut bytes) = (0u64, 0u64);
        for &n in segs.iter().filter(|&&n| n >= cursor.segment) {
            let from = if n == cursor.segment {
                cursor.offset
            } else {
                0
            };
            let (e, b) = count_lines(&segment_path(dir, n), from)
                .with_context(|| format!("NATS spool: reading segment {n}"))?;
            events += e;
            bytes += b;
        }
        stats.depth.store(events, Ordering::Relaxed);
        stats.depth_bytes.store(bytes, Ordering::Relaxed);
        if events > 0 {
            tracing::info!(
                "NATS spool {}: {events} unsent event(s) from a previous run, sent first",
                dir.display()
            );
        }
        let mut w = SpoolWriter {
            dir: dir.to_path_buf(),
            segment: last,
            out: BufWriter::with_capacity(1 << 16, f),
            size,
            max_bytes,
            router,
            stats,
            dirty: false,
            unsynced: false,
            last_sync: Instant::now(),
            pending: Vec::new(),
            pending_bytes: 0,
            rec: Vec::with_capacity(1024),
            id: Vec::with_capacity(128),
            fields: Vec::with_capacity(512),
        };
        w.pending
            .resize_with(w.router.subnets.len() + 1, Pending::default);
        let r = SpoolReader {
            dir: dir.to_path_buf(),
            at: cursor,
            persisted: cursor,
            last_persist: None,
        };
        Ok((w, r))
    }

    /// Spools one event, encoded from its record (never blocks on the network; a full spool
    /// drops and counts it). With `events-per-message` > 1 the event joins its subnet's
    /// pending batch, written as one record when full or at the next [`SpoolWriter::flush`].
    /// `ri` is the record's option 82 (read with it: `LeaseTable::read_with_var`).
    pub fn append_lease(&mut self, kind: &str, time: u32, l: &Lease, ri: &[u8], source: Source) {
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        super::encode_fields(&mut fields, kind, time, l, ri, source);
        self.append_encoded(kind, time, l, &fields);
        self.fields = fields;
    }

    /// [`SpoolWriter::append_lease`] with the event's fields already encoded (the event log
    /// writer's line, [`super::encode_fields`]): `kind`, `time` and the record name it.
    pub fn append_encoded(&mut self, kind: &str, time: u32, l: &Lease, fields: &[u8]) {
        let subnet = self.router.subnet_of(l.addr);
        let mut id = std::mem::take(&mut self.id);
        id.clear();
        self.router.push_id(&mut id, kind, time, l);
        let mut rec = std::mem::take(&mut self.rec);
        rec.clear();
        if self.router.per_message == 1 {
            // `subject TAB id TAB json`: one message per event.
            self.router.push_subject(&mut rec, subnet, kind);
            rec.push(b'\t');
            rec.extend_from_slice(&id);
            rec.push(b'\t');
            self.router.push_event(&mut rec, fields, None);
            rec.push(b'\n');
            if self.has_room(rec.len() as u64, l) {
                self.write_record(&rec, 1);
            }
        } else {
            self.router.push_event(&mut rec, fields, Some(&id));
            if self.has_room(rec.len() as u64 + 1, l) {
                let p = &mut self.pending[subnet];
                if p.events == 0 {
                    p.first_id.clear();
                    p.first_id.extend_from_slice(&id);
                    p.digest = FNV_OFFSET;
                } else {
                    p.body.push(b',');
                }
                p.body.extend_from_slice(&rec);
                p.digest = fnv1a(p.digest, &id);
                p.digest = fnv1a(p.digest, b"\n");
                p.events += 1;
                self.pending_bytes += rec.len() as u64 + 1;
                if p.events as usize >= self.router.per_message {
                    self.emit(subnet, &mut rec);
                }
            }
        }
        self.rec = rec;
        self.id = id;
    }

    /// Whether `len` more bytes fit under `spool-max-mb`; if not, counts and logs the drop.
    fn has_room(&self, len: u64, l: &Lease) -> bool {
        let used = self.stats.depth_bytes.load(Ordering::Relaxed) + self.pending_bytes;
        if used + len <= self.max_bytes {
            return true;
        }
        let n = self.stats.spool_dropped.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(10_000) {
            tracing::warn!(
                "NATS spool {} is full ({} MiB unsent): event for {} not spooled for NATS \
                 (it is in the local event log); {} dropped so far",
                self.dir.display(),
                self.max_bytes >> 20,
                l.addr,
                n + 1
            );
        }
        false
    }

    /// Writes subnet `subnet`'s pending batch as one record:
    /// `subject TAB batch-id TAB n TAB [json,...]`. The batch id is the first event's id, the
    /// count and a digest of every event's id: the same batch re-sent has the same id.
    fn emit(&mut self, subnet: usize, rec: &mut Vec<u8>) {
        let p = &mut self.pending[subnet];
        if p.events == 0 {
            return;
        }
        rec.clear();
        self.router.push_subject(rec, subnet, BATCH_TOKEN);
        rec.push(b'\t');
        rec.extend_from_slice(&p.first_id);
        rec.push(b'+');
        super::push_u32(rec, p.events);
        rec.push(b'/');
        for i in (0..8).rev() {
            super::push_hex(rec, &[(p.digest >> (i * 8)) as u8]);
        }
        rec.push(b'\t');
        super::push_u32(rec, p.events);
        rec.extend_from_slice(b"\t[");
        rec.extend_from_slice(&p.body);
        rec.extend_from_slice(b"]\n");
        let events = p.events;
        // Each event was counted with one byte for its comma: the body's length plus one.
        self.pending_bytes -= p.body.len() as u64 + 1;
        p.body.clear();
        p.events = 0;
        self.write_record(rec, events);
    }

    /// Appends one record of `events` events to the segment.
    fn write_record(&mut self, rec: &[u8], events: u32) {
        let len = rec.len() as u64;
        let n = u64::from(events);
        // Counted before the bytes can be read, so the reader never sees more than counted.
        self.stats.depth.fetch_add(n, Ordering::Relaxed);
        self.stats.depth_bytes.fetch_add(len, Ordering::Relaxed);
        match self.out.write_all(rec) {
            Ok(()) => {
                self.size += len;
                self.dirty = true;
                self.stats.spooled.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.depth.fetch_sub(n, Ordering::Relaxed);
                self.stats.depth_bytes.fetch_sub(len, Ordering::Relaxed);
                self.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("NATS spool {}: write failed: {e}", self.dir.display());
            }
        }
    }

    /// Hands what was appended to the kernel (the publisher can read it), syncs to disk at most
    /// once a second, and starts a new segment past its size.
    pub fn flush(&mut self) {
        if self.pending_bytes > 0 {
            let mut rec = std::mem::take(&mut self.rec);
            for i in 0..self.pending.len() {
                self.emit(i, &mut rec);
            }
            self.rec = rec;
        }
        if self.dirty {
            if let Err(e) = self.out.flush() {
                self.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("NATS spool {}: write failed: {e}", self.dir.display());
                return;
            }
            self.dirty = false;
            self.unsynced = true;
        }
        if self.unsynced && self.last_sync.elapsed() >= Duration::from_secs(1) {
            if let Err(e) = self.out.get_ref().sync_data() {
                self.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("NATS spool {}: sync failed: {e}", self.dir.display());
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        if self.size >= SEGMENT_BYTES {
            let _ = self.out.get_ref().sync_data();
            let next = segment_path(&self.dir, self.segment + 1);
            match OpenOptions::new()
                .mode(0o600)
                .create(true)
                .append(true)
                .open(&next)
            {
                Ok(f) => {
                    self.out = BufWriter::with_capacity(1 << 16, f);
                    self.segment += 1;
                    self.size = 0;
                }
                Err(e) => {
                    self.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("NATS spool: creating {}: {e}", next.display());
                }
            }
        }
    }
}

/// Truncates `f` after its last newline; returns the new length.
fn cut_partial_line(f: &File) -> std::io::Result<u64> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut r = f;
    let mut keep = 0u64;
    // Scan back in 64 KiB blocks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 1 << 16];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        r.seek(SeekFrom::Start(start))?;
        r.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if keep < len {
        tracing::warn!(
            "NATS spool: cutting a partial last line ({} byte(s)) left by a crash",
            len - keep
        );
        f.set_len(keep)?;
    }
    Ok(keep)
}

/// Events (of complete records) and their bytes in `path` from `from` on.
fn count_lines(path: &Path, from: u64) -> std::io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok((events, bytes));
        }
        events += record_events(&buf[..n - 1]);
        bytes += n as u64;
    }
}

/// One spooled message to publish: a single event, or a batch of `events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub subject: String,
    pub id: String,
    pub payload: bytes::Bytes,
    /// Events in the message (1 for a single event).
    pub events: u32,
}

/// Messages read from the cursor on, and where the next read starts.
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<Spooled>,
    /// Events consumed (in the messages and in any unreadable record skipped).
    pub events: u64,
    pub bytes: u64,
    pub end: Position,
}

/// The publisher's end of the spool.
pub struct SpoolReader {
    dir: PathBuf,
    at: Position,
    /// The position in the `cursor` file (behind `at` by at most `CURSOR_EVERY`).
    persisted: Position,
    last_persist: Option<Instant>,
}

/// The cursor file is rewritten at most this often within one segment (a write and a rename
/// per acknowledged batch cost the publisher about as much as the batch's events at 30,000
/// events/s); a crash then re-sends at most this much, which the stream (`Nats-Msg-Id`) and
/// the archive (event ids) drop as duplicates.
const CURSOR_EVERY: Duration = Duration::from_millis(250);

impl SpoolReader {
    /// Up to `max` complete records (messages) from the cursor (the cursor does not move).
    pub fn read_batch(&self, max: usize, stats: &NatsStats) -> std::io::Result<Batch> {
        let mut b = Batch {
            end: self.at,
            ..Batch::default()
        };
        loop {
            let path = segment_path(&self.dir, b.end.segment);
            let f = match File::open(&path) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if let Some(mut f) = f {
                f.seek(SeekFrom::Start(b.end.offset))?;
                let mut r = BufReader::with_capacity(1 << 16, f);
                let mut buf = Vec::new();
                while b.messages.len() < max {
                    buf.clear();
                    let n = r.read_until(b'\n', &mut buf)?;
                    if n == 0 || buf.last() != Some(&b'\n') {
                        break; // the end, or a record still being written
                    }
                    b.end.offset += n as u64;
                    b.bytes += n as u64;
                    buf.truncate(n - 1);
                    match parse_line(&buf) {
                        Some(s) => {
                            b.events += u64::from(s.events);
                            b.messages.push(s);
                        }
                        None => {
                            b.events += record_events(&buf);
                            stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "NATS spool {}: unreadable record skipped at offset {}",
                                path.display(),
                                b.end.offset - n as u64
                            );
                        }
                    }
                }
            }
            if b.messages.len() >= max {
                return Ok(b);
            }
            // The writer starts segment n+1 only after segment n is complete.
            if segment_path(&self.dir, b.end.segment + 1).exists() {
                b.end = Position {
                    segment: b.end.segment + 1,
                    offset: 0,
                };
                continue;
            }
            return Ok(b);
        }
    }

    /// Moves the cursor to `end`; persists it (by rename) before deleting finished segments,
    /// and otherwise at most every `CURSOR_EVERY`.
    pub fn commit(&mut self, end: Position) -> std::io::Result<()> {
        let finished = end.segment > self.at.segment;
        self.at = end;
        if finished
            || self
                .last_persist
                .is_none_or(|t| t.elapsed() >= CURSOR_EVERY)
        {
            self.persist()?;
        }
        Ok(())
    }

    /// With nothing to send: persists a cursor that moved since (at most every `CURSOR_EVERY`).
    pub fn idle(&mut self) -> std::io::Result<()> {
        if self
            .last_persist
            .is_none_or(|t| t.elapsed() >= CURSOR_EVERY)
        {
            self.persist()?;
        }
        Ok(())
    }

    /// Writes the cursor file (when it moved) and deletes the segments before it.
    pub fn persist(&mut self) -> std::io::Result<()> {
        let end = self.at;
        if end == self.persisted {
            return Ok(());
        }
        let tmp = self.dir.join("cursor.tmp");
        std::fs::write(&tmp, format!("{} {}\n", end.segment, end.offset))?;
        std::fs::rename(&tmp, self.dir.join(CURSOR))?;
        for n in self.persisted.segment..end.segment {
            match std::fs::remove_file(segment_path(&self.dir, n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.persisted = end;
        self.last_persist = Some(Instant::now());
        Ok(())
    }
}

/// The events a record (a line without its newline) counted for: a batch's count field, else
/// one (a single event, or a record too damaged to say).
fn record_events(line: &[u8]) -> u64 {
    let mut it = line.splitn(4, |&b| b == b'\t');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(_), Some(_), Some(n), Some(_)) => std::str::from_utf8(n)
            .ok()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1),
        _ => 1,
    }
}

/// A spool record: `subject TAB id TAB {json}` (one event) or
/// `subject TAB batch-id TAB n TAB [json,...]` (a batch of n).
fn parse_line(line: &[u8]) -> Option<Spooled> {
    let s = std::str::from_utf8(line).ok()?;
    let mut it = s.splitn(4, '\t');
    let (subject, id, third, fourth) = (it.next()?, it.next()?, it.next()?, it.next());
    if subject.is_empty() || id.is_empty() {
        return None;
    }
    let (payload, events) = match fourth {
        None if third.starts_with('{') => (third, 1),
        Some(p) if p.starts_with('[') => (p, third.parse::<u32>().ok().filter(|&n| n > 0)?),
        _ => return None,
    };
    Some(Spooled {
        subject: subject.to_string(),
        id: id.to_string(),
        payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
        events,
    })
}

/// First line of a secret file (token), trimmed.
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let t = text.lines().next().unwrap_or("").trim().to_string();
    if t.is_empty() {
        anyhow::bail!("{}: empty", path.display());
    }
    Ok(t)
}

/// Connects to the first reachable of `cfg.urls` (the client then reconnects by itself), with
/// the authentication and TLS of `cfg`; `what` names the settings in errors (`event-log.nats`
/// for the daemon's section, `--nats` for command-line options).
pub async fn connect(
    cfg: &NatsConfig,
    name: &str,
    what: &str,
) -> anyhow::Result<async_nats::Client> {
    let k = |s: &str| crate::tls::key(what, s);
    let mut o = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(None::<usize>);
    if let Some(t) = &cfg.token_file {
        o = o.token(read_secret(t).with_context(|| k("token-file"))?);
    }
    if let Some(c) = &cfg.credentials_file {
        o = o
            .credentials_file(c)
            .await
            .with_context(|| format!("{}: {}", k("credentials-file"), c.display()))?;
    }
    match (&cfg.user, &cfg.password_file) {
        (Some(u), Some(p)) => {
            o = o.user_and_password(
                u.clone(),
                read_secret(p).with_context(|| k("password-file"))?,
            );
        }
        (None, None) => {}
        _ => anyhow::bail!("{}: needs both user and password-file", what),
    }
    if let Some(t) = &cfg.tls {
        // Read here once so that a bad file is reported by its key; async-nats loads the
        // same files (only these CAs: the system's store is not consulted).
        crate::tls::check_files(t, what)?;
        o = o.require_tls(true).add_root_certificates(t.ca_file.clone());
        if let (Some(c), Some(key)) = (&t.cert_file, &t.key_file) {
            o = o.add_client_certificate(c.clone(), key.clone());
        }
    }
    let mut addrs = Vec::with_capacity(cfg.urls.len());
    for u in &cfg.urls {
        let a: async_nats::ServerAddr = u
            .parse()
            .map_err(|e| anyhow::anyhow!("NATS URL {u}: {e}"))?;
        addrs.push(a);
    }
    let tls = if cfg.tls.is_some() { " (TLS)" } else { "" };
    o.connect(addrs).await.map_err(|e| {
        // async-nats' TLS failures say little: name what to check.
        let hint = if cfg.tls.is_some() && e.to_string().contains("certificate") {
            format!(
                " (is {} the CA that signed the server's certificate, and the URL's host among \
                 its names?)",
                k("ca-file")
            )
        } else {
            String::new()
        };
        anyhow::anyhow!("connecting to NATS {}{tls}: {e}{hint}", cfg.urls.join(","))
    })
}

/// The publisher thread.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    pub fn start(
        cfg: NatsConfig,
        reader: SpoolReader,
        stats: Arc<NatsStats>,
    ) -> anyhow::Result<Publisher> {
        // A misconfiguration (a secret or TLS file missing or malformed) stops the start,
        // naming the key; an unreachable NATS does not.
        for (k, p) in [
            ("token-file", &cfg.token_file),
            ("password-file", &cfg.password_file),
        ] {
            if let Some(p) = p {
                read_secret(p).with_context(|| format!("event-log.nats.{k}"))?;
            }
        }
        if let Some(t) = &cfg.tls {
            crate::tls::check_files(t, "event-log.nats")?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("NATS publisher: tokio runtime")?;
        let thread = std::thread::Builder::new()
            .name("xdhcpd-nats".into())
            .spawn(move || rt.block_on(publish_loop(cfg, reader, stats, st)))
            .context("spawning the NATS publisher thread")?;
        Ok(Publisher {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops (after at most one batch's ack timeout; what is unsent stays in the spool).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Conn {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    down_since: Option<Instant>,
}

async fn open(cfg: &NatsConfig) -> anyhow::Result<Conn> {
    let client = connect(cfg, "xdhcpd-events", "event-log.nats").await?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(u64::from(cfg.ack_timeout_secs)));
    if cfg.create_stream {
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("{}.>", cfg.subject_prefix)],
            duplicate_window: DUPLICATE_WINDOW,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the JetStream stream {}: {e}", cfg.stream))?;
    } else {
        js.get_stream(&cfg.stream)
            .await
            .map_err(|e| anyhow::anyhow!("JetStream stream {}: {e}", cfg.stream))?;
    }
    Ok(Conn {
        client,
        js,
        down_since: None,
    })
}

/// Publishes a batch of messages and waits for every ack; the events the stream already had
/// (acks that said "duplicate").
async fn send(
    js: &async_nats::jetstream::Context,
    b: &Batch,
    limit: Duration,
) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut acks = Vec::with_capacity(b.messages.len());
    for m in &b.messages {
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, m.id.as_str());
        let p = js.publish_with_headers(m.subject.clone(), h, m.payload.clone());
        match tokio::time::timeout_at(deadline, p).await {
            Ok(Ok(a)) => acks.push((a, m.events)),
            Ok(Err(err)) => return Err(format!("publish: {err}")),
            Err(_) => return Err("publish: timed out".into()),
        }
    }
    let mut dups = 0;
    for (a, events) in acks {
        match tokio::time::timeout_at(deadline, a).await {
            Ok(Ok(ack)) => {
                if ack.duplicate {
                    dups += u64::from(events);
                }
            }
            Ok(Err(err)) => return Err(format!("ack: {err}")),
            Err(_) => return Err("ack: timed out".into()),
        }
    }
    Ok(dups)
}

async fn publish_loop(
    cfg: NatsConfig,
    mut reader: SpoolReader,
    stats: Arc<NatsStats>,
    stop: Arc<AtomicBool>,
) {
    let limit = Duration::from_secs(u64::from(cfg.ack_timeout_secs));
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(250);
    let mut last_error = String::new();
    let mut was_up = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // The connection, and its state for metrics and logs.
        let up = match &mut conn {
            None => match open(&cfg).await {
                Ok(c) => {
                    conn = Some(c);
                    true
                }
                Err(e) => {
                    stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    let msg = format!("{e:#}");
                    if msg != last_error {
                        tracing::warn!(
                            "NATS: {msg}; events are spooled ({} unsent), retrying",
                            stats.depth.load(Ordering::Relaxed)
                        );
                        last_error = msg;
                    }
                    false
                }
            },
            Some(c) => {
                let state = c.client.connection_state();
                if state == async_nats::connection::State::Connected {
                    c.down_since = None;
                    true
                } else {
                    let since = *c.down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= RECONNECT_AFTER {
                        conn = None; // a fresh client on the next round
                    }
                    false
                }
            }
        };
        stats.connected.store(up, Ordering::Relaxed);
        if up != was_up {
            if up {
                tracing::info!(
                    "NATS: connected to {} (stream {}); {} spooled event(s) to send",
                    cfg.urls.join(","),
                    cfg.stream,
                    stats.depth.load(Ordering::Relaxed)
                );
                last_error.clear();
            } else if was_up {
                // Counted here: with no batch in flight a lost connection shows as no error
                // at all until the client is replaced (RECONNECT_AFTER).
                stats.disconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("NATS: disconnected; events are spooled until it returns");
            }
            was_up = up;
        }
        let Some(c) = conn.as_ref() else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        };
        let batch = match reader.read_batch(cfg.batch_size as usize, &stats) {
            Ok(b) => b,
            Err(e) => {
                stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("NATS spool: read failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.bytes == 0 {
            if let Err(e) = reader.idle() {
                stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("NATS spool: moving the cursor: {e}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if !up {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        match send(&c.js, &batch, limit).await {
            Ok(dups) => {
                if let Err(e) = reader.commit(batch.end) {
                    stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("NATS spool: moving the cursor: {e}");
                }
                let n = batch.messages.iter().map(|m| u64::from(m.events)).sum();
                stats.published.fetch_add(n, Ordering::Relaxed);
                stats
                    .messages
                    .fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
                stats.duplicates.fetch_add(dups, Ordering::Relaxed);
                stats.depth.fetch_sub(batch.events, Ordering::Relaxed);
                stats.depth_bytes.fetch_sub(batch.bytes, Ordering::Relaxed);
                backoff = Duration::from_millis(250);
            }
            Err(e) => {
                let n = stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(20) {
                    tracing::warn!(
                        "NATS: {} message(s) ({} events) not acknowledged ({e}); sent again \
                         from the spool",
                        batch.messages.len(),
                        batch.events
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    if let Err(e) = reader.persist() {
        stats.spool_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!("NATS spool: moving the cursor: {e}");
    }
    stats.connected.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use lease_store::{ClientKey, LeaseState};

    /// A bound record of `ip` for client `mac`, bound at `time` for 60 s.
    fn lease(ip: &str, time: u32) -> Lease {
        let mut l = Lease::free(ip.parse().expect("ip"));
        let hw = [2, 0, 0, 0, 0, 1];
        l.state = LeaseState::Active;
        l.client = ClientKey::from_hw(1, &hw);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&hw);
        l.start = time;
        l.cltt = time;
        l.expiry = time + 60;
        l
    }

    fn ev(ip: &str, time: u32) -> LeaseEvent {
        super::super::event_of("ack", time, &lease(ip, time), &[], Source::Dhcp)
    }

    fn router_with(per_message: u32) -> Router {
        let cfg = NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            events_per_message: per_message,
            ..NatsConfig::default()
        };
        let nets = [
            Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 16).expect("net"),
            Ipv4Net::new(Ipv4Addr::new(10, 78, 0, 0), 16).expect("net"),
        ];
        Router::new(&cfg, Ipv4Addr::new(10, 77, 0, 1), &nets, None)
    }

    fn router() -> Router {
        router_with(1)
    }

    /// The records of a spool directory's segment 0.
    fn records(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(segment_path(dir, 0))
            .expect("segment")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The events of a batch (or single) message, in order.
    fn events_of(m: &Spooled) -> Vec<NatsEvent> {
        if m.payload.starts_with(b"[") {
            serde_json::from_slice(&m.payload).expect("batch json")
        } else {
            vec![serde_json::from_slice(&m.payload).expect("json")]
        }
    }

    #[test]
    fn nats_payload_names_server_id_relationship_and_role() {
        let cfg = NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            server_name: Some("dhcp-2b".into()),
            events_per_message: 1,
            ..NatsConfig::default()
        };
        let net = Ipv4Net::new(Ipv4Addr::new(10, 78, 0, 0), 16).expect("net");
        let r = Router::new(
            &cfg,
            Ipv4Addr::new(10, 78, 0, 3),
            &[net],
            Some(Relationship {
                name: "pair-\"2\"".into(),
                role: "secondary".into(),
            }),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(NatsStats::default());
        let (mut w, _r) =
            SpoolWriter::open(dir.path(), 1 << 30, r.clone(), stats.clone()).expect("open");
        let l = lease("10.78.1.9", 7);
        w.append_lease("ack", 7, &l, &[], Source::Dhcp);
        w.flush();
        let recs = records(dir.path());
        let mut f = recs[0].splitn(3, '\t');
        assert_eq!(
            f.next(),
            Some("xdhcpd.events.dhcp-2b.10-78-0-0_16.ack"),
            "subject per server and subnet"
        );
        assert!(f
            .next()
            .is_some_and(|id| id.starts_with("dhcp-2b/10.78.1.9/ack/7/")));
        let json = f.next().expect("json");
        let msg: NatsEvent = serde_json::from_str(json).expect("parse");
        assert_eq!(msg.server, "dhcp-2b");
        assert_eq!(msg.server_id.as_deref(), Some("10.78.0.3"));
        assert_eq!(msg.relationship.as_deref(), Some("pair-\"2\""));
        assert_eq!(msg.role.as_deref(), Some("secondary"));
        assert_eq!(msg.id, None, "a single event's id is its header");
        assert_eq!(msg.event.ip, "10.78.1.9");
        // Byte for byte what serde writes for the same event.
        let want = r.nats_event(&ev("10.78.1.9", 7), None);
        assert_eq!(json, serde_json::to_string(&want).expect("serde"));
        // A message of an older publisher (server name only) still parses.
        let old = r#"{"server":"x","time":1,"ts":"","event":"ack","ip":"10.0.0.1","mac":"02:00:00:00:00:01","start":1,"expiry":2,"source":"dhcp"}"#;
        let msg: NatsEvent = serde_json::from_str(old).expect("old payload");
        assert_eq!(
            (msg.server_id, msg.relationship, msg.role, msg.id),
            (None, None, None, None)
        );
    }

    #[test]
    fn nats_subjects_per_server_and_subnet_and_stable_ids() {
        let r = router();
        assert_eq!(
            r.subject(&ev("10.77.3.4", 5)),
            "xdhcpd.events.10-77-0-1.10-77-0-0_16.ack"
        );
        assert_eq!(
            r.subject(&ev("192.0.2.1", 5)),
            "xdhcpd.events.10-77-0-1.none.ack"
        );
        assert_eq!(
            r.message_id(&ev("10.77.3.4", 5)),
            r.message_id(&ev("10.77.3.4", 5))
        );
        assert_ne!(
            r.message_id(&ev("10.77.3.4", 5)),
            r.message_id(&ev("10.77.3.4", 6))
        );
        // The encoder's subject and id are the reference forms, for a MAC and a client id.
        let mut l = lease("192.0.2.1", 5);
        for cid in [false, true] {
            if cid {
                l.client = ClientKey::from_client_id(&[1, 0xaa, 0xbb]);
            }
            let e = super::super::event_of("renew", 5, &l, &[], Source::Dhcp);
            let (mut subject, mut id) = (Vec::new(), Vec::new());
            r.push_subject(&mut subject, r.subnet_of(l.addr), "renew");
            r.push_id(&mut id, "renew", 5, &l);
            assert_eq!(String::from_utf8_lossy(&subject), r.subject(&e));
            assert_eq!(String::from_utf8_lossy(&id), r.message_id(&e));
        }
    }

    #[test]
    fn nats_batch_messages_per_subnet_in_order_with_event_ids_and_stable_batch_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(NatsStats::default());
        let r = router_with(4);
        let (mut w, mut rd) =
            SpoolWriter::open(dir.path(), 1 << 30, r.clone(), stats.clone()).expect("open");
        // 6 events in 10.77/16, 3 in 10.78/16, interleaved; one address acked then renewed.
        for t in 0..9u32 {
            let ip = if t % 3 == 2 {
                format!("10.78.0.{t}")
            } else {
                format!("10.77.0.{}", t.min(4))
            };
            w.append_lease("ack", t, &lease(&ip, t), &[], Source::Dhcp);
        }
        // The first 4 of 10.77/16 fill a message at once; the rest wait for the tick.
        assert_eq!(stats.depth.load(Ordering::Relaxed), 4);
        w.flush();
        assert_eq!(stats.depth.load(Ordering::Relaxed), 9);
        assert_eq!(stats.spooled.load(Ordering::Relaxed), 9);
        let b = rd.read_batch(100, &stats).expect("read");
        assert_eq!(b.events, 9);
        let subjects: Vec<(&str, u32)> = b
            .messages
            .iter()
            .map(|m| (m.subject.as_str(), m.events))
            .collect();
        assert_eq!(
            subjects,
            vec![
                ("xdhcpd.events.10-77-0-1.10-77-0-0_16.batch", 4),
                ("xdhcpd.events.10-77-0-1.10-77-0-0_16.batch", 2),
                ("xdhcpd.events.10-77-0-1.10-78-0-0_16.batch", 3),
            ]
        );
        let mut all = Vec::new();
        for m in &b.messages {
            let evs = events_of(m);
            assert_eq!(evs.len(), m.events as usize);
            let first = evs[0].id.as_deref().expect("id");
            assert!(
                m.id.starts_with(&format!("{first}+{}/", m.events)),
                "{}",
                m.id
            );
            all.extend(evs);
        }
        // Each event has its own id (the single-event Nats-Msg-Id) and is byte for byte what
        // serde writes; in spool order within its subnet.
        for e in &all {
            let id = e.id.clone().expect("id");
            assert_eq!(id, r.message_id(&e.event));
            let want = r.nats_event(&ev(&e.event.ip, e.event.time), Some(id));
            assert_eq!(e, &want);
        }
        let times: Vec<u32> = all.iter().map(|e| e.event.time).collect();
        assert_eq!(times, vec![0, 1, 3, 4, 6, 7, 2, 5, 8]);
        // The same events spooled again (a restart re-logging them) make the same batch ids;
        // other events other ids.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let (mut w2, rd2) =
            SpoolWriter::open(dir2.path(), 1 << 30, r.clone(), Arc::default()).expect("open");
        for t in [0u32, 1, 3, 4] {
            w2.append_lease(
                "ack",
                t,
                &lease(&format!("10.77.0.{}", t.min(4)), t),
                &[],
                Source::Dhcp,
            );
        }
        for t in [0u32, 1, 3, 5] {
            w2.append_lease(
                "ack",
                t,
                &lease(&format!("10.77.0.{}", t.min(4)), t),
                &[],
                Source::Dhcp,
            );
        }
        w2.flush();
        let b2 = rd2.read_batch(100, &NatsStats::default()).expect("read");
        assert_eq!(b2.messages[0].id, b.messages[0].id);
        assert_eq!(b2.messages[0].payload, b.messages[0].payload);
        assert_ne!(b2.messages[1].id, b.messages[0].id);
        // Committed: the depth is in events.
        rd.commit(b.end).expect("commit");
        stats.depth.fetch_sub(b.events, Ordering::Relaxed);
        let (_w, rd) = {
            drop(w);
            let st = Arc::new(NatsStats::default());
            let x = SpoolWriter::open(dir.path(), 1 << 30, r, st.clone()).expect("reopen");
            assert_eq!(st.depth.load(Ordering::Relaxed), 0);
            x
        };
        assert!(rd
            .read_batch(100, &stats)
            .expect("read")
            .messages
            .is_empty());
    }

    #[test]
    fn nats_spool_in_order_across_segments_cursor_and_crash_tail() {
        for per_message in [1u32, 3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let stats = Arc::new(NatsStats::default());
            let r = router_with(per_message);
            let (mut w, mut rd) =
                SpoolWriter::open(dir.path(), 1 << 30, r.clone(), stats.clone()).expect("open");
            for t in 0..10 {
                w.append_lease("ack", t, &lease("10.77.0.9", t), &[], Source::Dhcp);
                if per_message > 1 && t % 2 == 1 {
                    w.flush(); // a tick: partial batches go out
                }
            }
            w.flush();
            assert_eq!(stats.depth.load(Ordering::Relaxed), 10);
            let b = rd.read_batch(2, &stats).expect("read");
            let first = events_of(&b.messages[0]);
            assert_eq!(first[0].event.time, 0);
            assert_eq!(first[0].server, "10-77-0-1");
            // Not committed: read again from the same place.
            assert_eq!(rd.read_batch(2, &stats).expect("read").messages, b.messages);
            rd.commit(b.end).expect("commit");
            let sent = b.events;
            // A new segment (as past its size), and a crash leaving half a record.
            w.size = SEGMENT_BYTES;
            w.flush();
            for t in 10..13 {
                w.append_lease("ack", t, &lease("10.77.0.9", t), &[], Source::Dhcp);
            }
            w.flush();
            drop(w);
            let last = segment_path(dir.path(), 1);
            let mut f = OpenOptions::new().append(true).open(&last).expect("seg");
            f.write_all(b"xdhcpd.events.x\tid\t2\t[{\"half").expect("w");
            drop(f);
            let stats = Arc::new(NatsStats::default());
            let (_w, rd) =
                SpoolWriter::open(dir.path(), 1 << 30, r, stats.clone()).expect("reopen");
            assert_eq!(
                stats.depth.load(Ordering::Relaxed),
                13 - sent,
                "{per_message}: the unsent events, the half record cut"
            );
            let b = rd.read_batch(100, &stats).expect("read");
            let times: Vec<u32> = b
                .messages
                .iter()
                .flat_map(events_of)
                .map(|e| e.event.time)
                .collect();
            assert_eq!(
                times,
                (sent as u32..13).collect::<Vec<_>>(),
                "in order, none lost"
            );
            assert_eq!(b.end.segment, 1);
            assert_eq!(stats.spool_errors.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn nats_cursor_file_written_at_most_every_quarter_second_and_before_segments_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(NatsStats::default());
        let (mut w, mut rd) =
            SpoolWriter::open(dir.path(), 1 << 30, router(), stats.clone()).expect("open");
        for t in 0..6 {
            w.append_lease("ack", t, &lease("10.77.0.9", t), &[], Source::Dhcp);
        }
        w.flush();
        let cursor = || read_cursor(dir.path()).expect("cursor");
        let b1 = rd.read_batch(2, &stats).expect("read");
        rd.commit(b1.end).expect("commit");
        let t1 = Instant::now();
        assert_eq!(cursor(), Some(b1.end), "the first commit is written");
        let b2 = rd.read_batch(2, &stats).expect("read");
        rd.commit(b2.end).expect("commit");
        // (Only when this machine did not stall the test for 250 ms.)
        if t1.elapsed() < CURSOR_EVERY {
            assert_eq!(cursor(), Some(b1.end), "the next one within 250 ms is not");
        }
        assert_eq!(
            rd.read_batch(2, &stats).expect("read").messages[0].id,
            router().message_id(&ev("10.77.0.9", 4)),
            "but reading goes on from it"
        );
        // A finished segment: the cursor is written before the segment is deleted.
        w.size = SEGMENT_BYTES;
        w.flush();
        w.append_lease("ack", 6, &lease("10.77.0.9", 6), &[], Source::Dhcp);
        w.flush();
        let b3 = rd.read_batch(100, &stats).expect("read");
        assert_eq!(b3.events, 3);
        rd.commit(b3.end).expect("commit");
        let t3 = Instant::now();
        assert_eq!(cursor(), Some(b3.end));
        assert!(!segment_path(dir.path(), 0).exists());
        // Idle after 250 ms, or stopping: written.
        w.append_lease("ack", 7, &lease("10.77.0.9", 7), &[], Source::Dhcp);
        w.flush();
        let b4 = rd.read_batch(100, &stats).expect("read");
        rd.commit(b4.end).expect("commit");
        rd.idle().expect("idle");
        if t3.elapsed() < CURSOR_EVERY {
            assert_eq!(cursor(), Some(b3.end));
        }
        std::thread::sleep(CURSOR_EVERY);
        rd.idle().expect("idle");
        assert_eq!(cursor(), Some(b4.end));
    }

    #[test]
    fn nats_spool_reads_records_of_the_previous_format() {
        // A spool written before batching (one `subject TAB id TAB json` line per event) is
        // read as single-event messages.
        let dir = tempfile::tempdir().expect("tempdir");
        let r = router();
        let e = ev("10.77.0.9", 3);
        let json = serde_json::to_string(&r.nats_event(&e, None)).expect("json");
        let line = format!("{}\t{}\t{json}\n", r.subject(&e), r.message_id(&e));
        std::fs::write(segment_path(dir.path(), 0), line.repeat(2)).expect("write");
        let stats = Arc::new(NatsStats::default());
        let (_w, rd) =
            SpoolWriter::open(dir.path(), 1 << 30, router_with(50), stats.clone()).expect("open");
        assert_eq!(stats.depth.load(Ordering::Relaxed), 2);
        let b = rd.read_batch(10, &stats).expect("read");
        assert_eq!(b.events, 2);
        assert_eq!(b.messages[0].events, 1);
        assert_eq!(b.messages[0].id, r.message_id(&e));
        assert_eq!(events_of(&b.messages[1])[0].event, e);
    }

    #[test]
    fn nats_spool_full_counts_and_drops() {
        for per_message in [1u32, 100] {
            let dir = tempfile::tempdir().expect("tempdir");
            let stats = Arc::new(NatsStats::default());
            let l = lease("10.77.0.9", 1);
            // Room for exactly three events (three records, or one batch of three).
            let three = {
                let d = tempfile::tempdir().expect("tempdir");
                let (mut w, _r) =
                    SpoolWriter::open(d.path(), 1 << 30, router_with(per_message), Arc::default())
                        .expect("open");
                for t in 0..3 {
                    w.append_lease("ack", t, &l, &[], Source::Dhcp);
                }
                w.flush();
                std::fs::metadata(segment_path(d.path(), 0))
                    .expect("seg")
                    .len()
            };
            let (mut w, _r) =
                SpoolWriter::open(dir.path(), three, router_with(per_message), stats.clone())
                    .expect("open");
            for t in 0..5 {
                w.append_lease("ack", t, &l, &[], Source::Dhcp);
            }
            w.flush();
            assert_eq!(stats.spooled.load(Ordering::Relaxed), 3, "{per_message}");
            assert_eq!(stats.spool_dropped.load(Ordering::Relaxed), 2);
            assert_eq!(stats.depth.load(Ordering::Relaxed), 3);
        }
    }
}
