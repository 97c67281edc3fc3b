//! Lease events on NATS JetStream (`[event-log.nats]`): at-least-once, in order, through a
//! local on-disk spool.
//!
//! The event log's writer thread ([`super::EventLog`]) appends every event it logs to the
//! spool ([`SpoolWriter`]): append-only segment files `spool-<n>.log` in the spool directory,
//! one line per event (`subject TAB message-id TAB json`), flushed to the kernel after every
//! batch the writer handles and synced to disk at most once a second. A publisher thread of its
//! own ([`Publisher`]: async-nats on a single-threaded tokio runtime, never on a worker) reads
//! the spool from its cursor ([`SpoolReader`]), publishes `batch-size` events, waits for every
//! JetStream ack, and only then moves the cursor (file `cursor`, replaced by rename) and deletes
//! the segments it finished. So:
//! - NATS down: the spool grows; events are sent in spool order when NATS returns;
//! - a lost ack, a timeout or a crash re-sends from the cursor: every message carries
//!   `Nats-Msg-Id` (stable: derived from the event), so the stream drops the duplicates within
//!   its duplicate window (10 min when we create the stream);
//! - order: one connection, published in spool order; after a failure the whole batch is sent
//!   again from its first event, so what the stream stored is a prefix of the spool followed by
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

use super::LeaseEvent;

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

/// The message published: the event log line plus who sent it: the server's name, its
/// `server-id` and, in a failover pair, the relationship's name and the server's role (what
/// `xdhcpd ctl servers` lists from the archive). Older publishers sent only `server`: the
/// other three are optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsEvent {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
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

/// Subjects and message ids of this server's events.
#[derive(Clone, Debug)]
pub struct Router {
    prefix: String,
    server: String,
    server_id: String,
    relationship: Option<Relationship>,
    subnets: Vec<(Ipv4Net, String)>,
}

/// `10.77.0.0/16` as a subject token: `10-77-0-0_16`.
pub fn subnet_token(n: &Ipv4Net) -> String {
    format!("{}_{}", n.addr().to_string().replace('.', "-"), n.prefix())
}

impl Router {
    pub fn new(
        cfg: &NatsConfig,
        server_id: Ipv4Addr,
        subnets: &[Ipv4Net],
        relationship: Option<Relationship>,
    ) -> Self {
        Router {
            prefix: cfg.subject_prefix.clone(),
            server: cfg
                .server_name
                .clone()
                .unwrap_or_else(|| server_id.to_string().replace('.', "-")),
            server_id: server_id.to_string(),
            relationship,
            subnets: subnets.iter().map(|n| (*n, subnet_token(n))).collect(),
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// `<prefix>.<server>.<subnet>.<event>`.
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

    /// One spool line (with its newline).
    pub fn line(&self, ev: &LeaseEvent) -> Option<Vec<u8>> {
        let msg = NatsEvent {
            server: self.server.clone(),
            server_id: Some(self.server_id.clone()),
            relationship: self.relationship.as_ref().map(|r| r.name.clone()),
            role: self.relationship.as_ref().map(|r| r.role.clone()),
            event: ev.clone(),
        };
        let json = serde_json::to_vec(&msg).ok()?;
        let mut line = Vec::with_capacity(json.len() + 96);
        line.extend_from_slice(self.subject(ev).as_bytes());
        line.push(b'\t');
        line.extend_from_slice(self.message_id(ev).as_bytes());
        line.push(b'\t');
        line.extend_from_slice(&json);
        line.push(b'\n');
        Some(line)
    }
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
        let w = SpoolWriter {
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
        };
        let r = SpoolReader {
            dir: dir.to_path_buf(),
            at: cursor,
        };
        Ok((w, r))
    }

    /// Appends one event (never blocks on the network; a full spool drops and counts it).
    pub fn append(&mut self, ev: &LeaseEvent) {
        let Some(line) = self.router.line(ev) else {
            return;
        };
        let len = line.len() as u64;
        if self.stats.depth_bytes.load(Ordering::Relaxed) + len > self.max_bytes {
            let n = self.stats.spool_dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(10_000) {
                tracing::warn!(
                    "NATS spool {} is full ({} MiB unsent): event for {} not spooled for NATS \
                     (it is in the local event log); {} dropped so far",
                    self.dir.display(),
                    self.max_bytes >> 20,
                    ev.ip,
                    n + 1
                );
            }
            return;
        }
        // Counted before the bytes can be read, so the reader never sees more than counted.
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        self.stats.depth_bytes.fetch_add(len, Ordering::Relaxed);
        match self.out.write_all(&line) {
            Ok(()) => {
                self.size += len;
                self.dirty = true;
                self.stats.spooled.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                self.stats.depth_bytes.fetch_sub(len, Ordering::Relaxed);
                self.stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("NATS spool {}: write failed: {e}", self.dir.display());
            }
        }
    }

    /// Hands what was appended to the kernel (the publisher can read it), syncs to disk at most
    /// once a second, and starts a new segment past its size.
    pub fn flush(&mut self) {
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

/// Complete lines and their bytes in `path` from `from` on.
fn count_lines(path: &Path, from: u64) -> std::io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok((lines, bytes));
        }
        lines += 1;
        bytes += n as u64;
    }
}

/// One spooled event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub subject: String,
    pub id: String,
    pub payload: Vec<u8>,
}

/// Events read from the cursor on, and where the next read starts.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Spooled>,
    /// Lines consumed (the events and any unreadable line skipped).
    pub lines: u64,
    pub bytes: u64,
    pub end: Position,
}

/// The publisher's end of the spool.
pub struct SpoolReader {
    dir: PathBuf,
    at: Position,
}

impl SpoolReader {
    /// Up to `max` complete lines from the cursor (the cursor does not move).
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
                while b.events.len() < max {
                    buf.clear();
                    let n = r.read_until(b'\n', &mut buf)?;
                    if n == 0 || buf.last() != Some(&b'\n') {
                        break; // the end, or a line still being written
                    }
                    b.end.offset += n as u64;
                    b.lines += 1;
                    b.bytes += n as u64;
                    match parse_line(&buf[..n - 1]) {
                        Some(s) => b.events.push(s),
                        None => {
                            stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "NATS spool {}: unreadable line skipped at offset {}",
                                path.display(),
                                b.end.offset - n as u64
                            );
                        }
                    }
                }
            }
            if b.events.len() >= max {
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

    /// Moves the cursor to `end` (persisted by rename) and deletes finished segments.
    pub fn commit(&mut self, end: Position) -> std::io::Result<()> {
        let tmp = self.dir.join("cursor.tmp");
        std::fs::write(&tmp, format!("{} {}\n", end.segment, end.offset))?;
        std::fs::rename(&tmp, self.dir.join(CURSOR))?;
        for n in self.at.segment..end.segment {
            match std::fs::remove_file(segment_path(&self.dir, n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.at = end;
        Ok(())
    }
}

fn parse_line(line: &[u8]) -> Option<Spooled> {
    let s = std::str::from_utf8(line).ok()?;
    let mut it = s.splitn(3, '\t');
    let (subject, id, payload) = (it.next()?, it.next()?, it.next()?);
    if subject.is_empty() || id.is_empty() || !payload.starts_with('{') {
        return None;
    }
    Some(Spooled {
        subject: subject.to_string(),
        id: id.to_string(),
        payload: payload.as_bytes().to_vec(),
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

/// Publishes a batch and waits for every ack; the number of duplicates.
async fn send(
    js: &async_nats::jetstream::Context,
    b: &Batch,
    limit: Duration,
) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut acks = Vec::with_capacity(b.events.len());
    for e in &b.events {
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, e.id.as_str());
        let p = js.publish_with_headers(e.subject.clone(), h, e.payload.clone().into());
        match tokio::time::timeout_at(deadline, p).await {
            Ok(Ok(a)) => acks.push(a),
            Ok(Err(err)) => return Err(format!("publish: {err}")),
            Err(_) => return Err("publish: timed out".into()),
        }
    }
    let mut dups = 0;
    for a in acks {
        match tokio::time::timeout_at(deadline, a).await {
            Ok(Ok(ack)) => dups += u64::from(ack.duplicate),
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
        if batch.lines == 0 {
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
                let n = batch.events.len() as u64;
                stats.published.fetch_add(n, Ordering::Relaxed);
                stats.duplicates.fetch_add(dups, Ordering::Relaxed);
                stats.depth.fetch_sub(batch.lines, Ordering::Relaxed);
                stats.depth_bytes.fetch_sub(batch.bytes, Ordering::Relaxed);
                backoff = Duration::from_millis(250);
            }
            Err(e) => {
                let n = stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(20) {
                    tracing::warn!(
                        "NATS: batch of {} not acknowledged ({e}); sent again from the spool",
                        batch.events.len()
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    stats.connected.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Source;

    fn ev(ip: &str, time: u32) -> LeaseEvent {
        LeaseEvent {
            time,
            ts: String::new(),
            event: "ack".into(),
            ip: ip.into(),
            mac: "02:00:00:00:00:01".into(),
            client_id: None,
            relay_info: None,
            start: time,
            expiry: time + 60,
            source: Source::Dhcp,
        }
    }

    fn router() -> Router {
        let cfg = NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            ..NatsConfig::default()
        };
        let net = Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 16).expect("net");
        Router::new(&cfg, Ipv4Addr::new(10, 77, 0, 1), &[net], None)
    }

    #[test]
    fn nats_payload_names_server_id_relationship_and_role() {
        let cfg = NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            server_name: Some("dhcp-2b".into()),
            ..NatsConfig::default()
        };
        let net = Ipv4Net::new(Ipv4Addr::new(10, 78, 0, 0), 16).expect("net");
        let r = Router::new(
            &cfg,
            Ipv4Addr::new(10, 78, 0, 3),
            &[net],
            Some(Relationship {
                name: "pair-2".into(),
                role: "secondary".into(),
            }),
        );
        let line = r.line(&ev("10.78.1.9", 7)).expect("line");
        let text = String::from_utf8(line).expect("utf8");
        let mut f = text.trim_end().splitn(3, '\t');
        assert_eq!(
            f.next(),
            Some("xdhcpd.events.dhcp-2b.10-78-0-0_16.ack"),
            "subject per server and subnet"
        );
        assert!(f
            .next()
            .is_some_and(|id| id.starts_with("dhcp-2b/10.78.1.9/ack/7/")));
        let msg: NatsEvent = serde_json::from_str(f.next().expect("json")).expect("parse");
        assert_eq!(msg.server, "dhcp-2b");
        assert_eq!(msg.server_id.as_deref(), Some("10.78.0.3"));
        assert_eq!(msg.relationship.as_deref(), Some("pair-2"));
        assert_eq!(msg.role.as_deref(), Some("secondary"));
        assert_eq!(msg.event.ip, "10.78.1.9");
        // A message of an older publisher (server name only) still parses.
        let old = r#"{"server":"x","time":1,"ts":"","event":"ack","ip":"10.0.0.1","mac":"02:00:00:00:00:01","start":1,"expiry":2,"source":"dhcp"}"#;
        let msg: NatsEvent = serde_json::from_str(old).expect("old payload");
        assert_eq!(
            (msg.server_id, msg.relationship, msg.role),
            (None, None, None)
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
    }

    #[test]
    fn nats_spool_in_order_across_segments_cursor_and_crash_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(NatsStats::default());
        let (mut w, mut r) =
            SpoolWriter::open(dir.path(), 1 << 30, router(), stats.clone()).expect("open");
        for t in 0..10 {
            w.append(&ev("10.77.0.9", t));
        }
        w.flush();
        assert_eq!(stats.depth.load(Ordering::Relaxed), 10);
        let b = r.read_batch(4, &stats).expect("read");
        assert_eq!(b.events.len(), 4);
        let first: NatsEvent = serde_json::from_slice(&b.events[0].payload).expect("json");
        assert_eq!(first.event.time, 0);
        assert_eq!(first.server, "10-77-0-1");
        // Not committed: read again from the same place.
        assert_eq!(r.read_batch(4, &stats).expect("read").events, b.events);
        r.commit(b.end).expect("commit");
        // A new segment (as past its size), and a crash leaving half a line.
        w.size = SEGMENT_BYTES;
        w.flush();
        for t in 10..13 {
            w.append(&ev("10.77.0.9", t));
        }
        w.flush();
        drop(w);
        let last = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&last).expect("seg");
        f.write_all(b"xdhcpd.events.x\tid\t{\"half").expect("w");
        drop(f);
        let stats = Arc::new(NatsStats::default());
        let (_w, r) =
            SpoolWriter::open(dir.path(), 1 << 30, router(), stats.clone()).expect("reopen");
        assert_eq!(
            stats.depth.load(Ordering::Relaxed),
            9,
            "6 + 3 unsent, the half line cut"
        );
        let b = r.read_batch(100, &stats).expect("read");
        let times: Vec<u32> = b
            .events
            .iter()
            .map(|s| {
                serde_json::from_slice::<NatsEvent>(&s.payload)
                    .expect("json")
                    .event
                    .time
            })
            .collect();
        assert_eq!(times, (4..13).collect::<Vec<_>>(), "in order, none lost");
        assert_eq!(b.end.segment, 1);
        assert_eq!(stats.spool_errors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn nats_spool_full_counts_and_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(NatsStats::default());
        let one = router().line(&ev("10.77.0.9", 1)).expect("line").len() as u64;
        let (mut w, _r) =
            SpoolWriter::open(dir.path(), one * 3, router(), stats.clone()).expect("open");
        for t in 0..5 {
            w.append(&ev("10.77.0.9", t));
        }
        w.flush();
        assert_eq!(stats.spooled.load(Ordering::Relaxed), 3);
        assert_eq!(stats.spool_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.depth.load(Ordering::Relaxed), 3);
    }
}
