//! The bulk leasequery (RFC 6926) TCP driver: IO only, around the sans-IO
//! `xdhcpd_dhcpv4::bulk_leasequery::Session`. Its own thread with a
//! current-thread tokio runtime, never a packet worker; it reads the lease
//! table by seqlock reads like the control API.
//!
//! - Access: the peer's address must be in `leasequery-allow` (as for RFC
//!   4388 over UDP; read from the served configuration at each connection, so a
//!   reload that changes it applies to the next connection); any other peer gets DHCPLEASEQUERYDONE / NotAllowed for
//!   its first query and is closed (counted twice: `connections_refused`,
//!   `not_allowed`); such a peer gets at most [`REFUSED_IDLE`] to send it, so
//!   refused peers cannot hold the connection slots for long.
//! - At most `max-connections` at once; one more is accepted and closed at
//!   once (`connections_refused`).
//! - Flow control: answers are made a batch (at most [`OUT_BATCH`] bytes) at
//!   a time and the next batch only after the peer has taken the last one
//!   (`write_all` waits on the socket's send buffer), so a slow reader slows
//!   the scan instead of filling memory. While a query is being answered the
//!   connection's input is not read (TCP holds the requestor back).
//! - Timeouts: no input for `idle-timeout` seconds with nothing to answer, or
//!   a peer that does not take a batch within it → closed (`connections_failed`).
//! - Shutdown: a query being answered ends with QueryTerminated.
//! - Active leasequery (RFC 7724): a DHCPACTIVELEASEQUERY subscribes the connection to
//!   the [`ActiveFeed`] (the lease table's change hook; a bounded queue of
//!   `active-queue` changes per subscriber). While subscribed the idle timeout does not
//!   apply (the requestor sends nothing more); the queue is looked at every
//!   [`FEED_TICK`]. A subscriber that lets its queue overflow is cut off with
//!   DataMissing, at once when it is not even reading (its socket is full: closed
//!   without the status), counted in `cut_off`; the packet workers never wait for it.
//! - TLS (RFC 7724 DHCPTLS; `tls = "offer" | "require"`): the session answers a DHCPTLS that
//!   is the connection's first message and asks for the handshake ([`Poll::StartTls`]); the
//!   driver writes the answer, runs the rustls server handshake on the same TCP connection
//!   (the bytes read after the DHCPTLS frame are its first: [`Prefixed`]), within
//!   `idle-timeout`, and serves the rest of the connection inside TLS. With `client-ca-file`
//!   the requestor must present a certificate that CA signed. A failed handshake is counted
//!   (`tls_failed`, and `connections_failed`) and the connection closed; `leasequery-allow`
//!   applies before anything else, TLS or not.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::Context as TaskContext;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use lease_store::LeaseTable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use xdhcpd_config::{BulkLeasequeryConfig, Ipv4Net, LeasequeryTlsMode};
use xdhcpd_dhcpv4::bulk_leasequery::{BulkStats, NoChanges, Poll, Session, TlsMode, MIN_OUT};

use super::active_feed::{ActiveFeed, Queue};

/// How long a peer not in `leasequery-allow` may take to send its query (or read the answer).
pub const REFUSED_IDLE: Duration = Duration::from_secs(2);

/// Bytes of answers written to the socket at once.
pub const OUT_BATCH: usize = 64 * 1024;

/// How often a subscribed connection with nothing to send looks at its change queue.
pub const FEED_TICK: Duration = Duration::from_millis(2);

/// The kernel send buffer of a subscribed connection: what a subscriber that stops
/// reading can hold back beyond its change queue is bounded (the kernel doubles it).
pub const SUBSCRIBER_SNDBUF: libc::c_int = 256 * 1024;

/// Caps the socket's send buffer (best effort: a failure leaves the kernel's default).
fn cap_send_buffer(fd: RawFd) {
    let v: libc::c_int = SUBSCRIBER_SNDBUF;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(
            "active leasequery: SO_SNDBUF: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The current `leasequery-allow` (the served configuration's).
pub type AllowFn = Arc<dyn Fn() -> Vec<Ipv4Net> + Send + Sync>;

/// The running listener.
pub struct BulkLq {
    thread: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    stats: Arc<BulkStats>,
    feed: Arc<ActiveFeed>,
    addr: SocketAddr,
}

struct Ctx {
    table: Arc<LeaseTable>,
    server_id: std::net::Ipv4Addr,
    allow: AllowFn,
    stats: Arc<BulkStats>,
    idle: Duration,
    max: u32,
    open: AtomicU32,
    feed: Arc<ActiveFeed>,
    queue: usize,
    /// `tls`: what the session offers and the handshake's configuration.
    tls: Option<(TlsMode, TlsAcceptor)>,
}

/// The TLS acceptor of `[bulk-leasequery] tls` (its files read now: errors name the key).
fn tls_acceptor(cfg: &BulkLeasequeryConfig) -> anyhow::Result<Option<(TlsMode, TlsAcceptor)>> {
    let Some(t) = &cfg.tls else {
        return Ok(None);
    };
    let sc = crate::tls::server_config(
        &t.cert_file,
        &t.key_file,
        t.client_ca_file.as_deref(),
        "bulk-leasequery",
    )?;
    let mode = match t.mode {
        LeasequeryTlsMode::Offer => TlsMode::Offer,
        LeasequeryTlsMode::Require => TlsMode::Require,
    };
    Ok(Some((mode, TlsAcceptor::from(Arc::new(sc)))))
}

impl BulkLq {
    /// Binds the listener (at start-up, while the daemon may still bind port 67) and
    /// starts the thread.
    pub fn start(
        cfg: &BulkLeasequeryConfig,
        allow: AllowFn,
        table: Arc<LeaseTable>,
        server_id: std::net::Ipv4Addr,
    ) -> anyhow::Result<Self> {
        let tls = tls_acceptor(cfg)?;
        let std_listener = std::net::TcpListener::bind(cfg.listen)
            .with_context(|| format!("[bulk-leasequery] listen = {}: bind", cfg.listen))?;
        std_listener
            .set_nonblocking(true)
            .context("bulk leasequery listener: non-blocking")?;
        let addr = std_listener
            .local_addr()
            .context("bulk leasequery listener: address")?;
        let stats = Arc::new(BulkStats::default());
        let feed = Arc::new(ActiveFeed::new(stats.clone()));
        if !table.set_change_hook(feed.clone()) {
            anyhow::bail!(
                "[bulk-leasequery]: the lease table takes no more change hooks \
                 (active leasequery needs one of {})",
                lease_store::MAX_HOOKS
            );
        }
        let ctx = Arc::new(Ctx {
            table,
            server_id,
            allow,
            stats: stats.clone(),
            idle: Duration::from_secs(u64::from(cfg.idle_timeout)),
            max: cfg.max_connections,
            open: AtomicU32::new(0),
            feed: feed.clone(),
            queue: cfg.active_queue as usize,
            tls,
        });
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("xdhcpd-bulklq".into())
            .spawn(move || {
                crate::server::sched::background();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("bulk leasequery: no runtime: {e}");
                        return;
                    }
                };
                rt.block_on(accept_loop(std_listener, ctx, stop_rx));
            })
            .context("bulk leasequery thread")?;
        Ok(BulkLq {
            thread: Some(thread),
            stop,
            stats,
            feed,
            addr,
        })
    }

    /// The counters (also in `/metrics`).
    pub fn stats(&self) -> Arc<BulkStats> {
        self.stats.clone()
    }

    /// The active leasequery feed (subscribers, queued / lost changes for `/metrics`).
    pub fn feed(&self) -> Arc<ActiveFeed> {
        self.feed.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends running queries (QueryTerminated) and stops the thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BulkLq {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn allowed(allow: &[Ipv4Net], peer: IpAddr) -> bool {
    let v4 = match peer {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => a,
            None => return false,
        },
    };
    allow.iter().any(|n| n.contains(v4))
}

async fn accept_loop(
    std_listener: std::net::TcpListener,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("bulk leasequery listener: {e}");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let (stream, peer) = match acc {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("bulk leasequery accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if ctx.open.load(Ordering::Relaxed) >= ctx.max {
                    ctx.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("bulk leasequery from {peer}: over max-connections, closed");
                    drop(stream);
                    continue;
                }
                let ok = allowed(&(ctx.allow)(), peer.ip());
                let c = if ok { &ctx.stats.connections } else { &ctx.stats.connections_refused };
                c.fetch_add(1, Ordering::Relaxed);
                ctx.open.fetch_add(1, Ordering::Relaxed);
                let ctx2 = ctx.clone();
                let stop2 = stop.clone();
                tasks.spawn(async move {
                    if let Err(e) = serve(stream, ok, &ctx2, stop2).await {
                        ctx2.stats.connections_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("bulk leasequery from {peer}: {e}");
                    }
                    ctx2.open.fetch_sub(1, Ordering::Relaxed);
                });
                // Reap finished connections.
                while tasks.try_join_next().is_some() {}
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    // Running queries end with QueryTerminated; give them a moment to say so.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// A stream that yields `early` (bytes already read from `inner`) before reading `inner`:
/// the TLS handshake's first bytes may have come with the DHCPTLS frame.
pub struct Prefixed<S> {
    early: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(early: Vec<u8>, inner: S) -> Self {
        Prefixed {
            early,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.early.len() {
            let n = (this.early.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.early[this.at..this.at + n]);
            this.at += n;
            return std::task::Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One connection's buffers and change queue, kept across the switch to TLS.
struct Conn {
    /// Input not yet taken by the session: `inbuf[lo..hi]`.
    inbuf: Vec<u8>,
    lo: usize,
    hi: usize,
    out: Vec<u8>,
    /// The change queue once the connection subscribed (dropped: unsubscribed).
    queue: Option<Queue>,
    /// The TCP socket (for its send buffer once subscribed).
    fd: RawFd,
    idle: Duration,
}

async fn serve(
    stream: TcpStream,
    ok: bool,
    ctx: &Ctx,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let idle = if ok {
        ctx.idle
    } else {
        ctx.idle.min(REFUSED_IDLE)
    };
    let mut sess = Session::new(ok, ctx.server_id);
    sess.set_queue_limit(ctx.queue);
    if let Some((mode, _)) = &ctx.tls {
        sess.set_tls(*mode);
    }
    let mut c = Conn {
        inbuf: vec![0u8; 4096],
        lo: 0,
        hi: 0,
        out: vec![0u8; OUT_BATCH],
        queue: None,
        fd: stream.as_raw_fd(),
        idle,
    };
    let Some(tcp) = run(stream, &mut sess, &mut c, ctx, stop.clone()).await? else {
        return Ok(());
    };
    // DHCPTLS accepted and answered: the handshake, starting with what was read after it.
    let Some((_, acceptor)) = &ctx.tls else {
        anyhow::bail!("the session asked for TLS that is not configured");
    };
    let early = c.inbuf[c.lo..c.hi].to_vec();
    (c.lo, c.hi) = (0, 0);
    let mut tls = match tokio::time::timeout(idle, acceptor.accept(Prefixed::new(early, tcp))).await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            BulkStats::inc(&ctx.stats.tls_failed);
            anyhow::bail!("TLS handshake failed: {e}");
        }
        Err(_) => {
            BulkStats::inc(&ctx.stats.tls_failed);
            anyhow::bail!("TLS handshake not done within {idle:?}");
        }
    };
    BulkStats::inc(&ctx.stats.tls_established);
    sess.tls_established();
    // One DHCP message per TLS record (RFC 7724 section 5.1): `run` writes each message on
    // its own, and with no limit on rustls' buffer each write is taken whole and sealed into
    // one record (a message is far below the 16 KiB record size). The buffer stays bounded
    // by the batch: the next one is made only after this one is flushed.
    tls.get_mut().1.set_buffer_limit(None);
    match run(tls, &mut sess, &mut c, ctx, stop).await? {
        None => Ok(()),
        Some(_) => anyhow::bail!("a second TLS start on one connection"),
    }
}

/// Serves the session over `stream` until the connection ends (`None`) or the session asks
/// for TLS (`Some(stream)`, its DHCPTLS answer written and flushed).
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    sess: &mut Session,
    c: &mut Conn,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<S>> {
    let idle = c.idle;
    let (mut rd, mut wr) = tokio::io::split(stream);
    loop {
        if *stop.borrow() {
            sess.terminate();
        }
        if c.lo < c.hi {
            let n = sess
                .feed(&c.inbuf[c.lo..c.hi], &ctx.stats)
                .map_err(|e| anyhow::anyhow!("{e}; closed"))?;
            c.lo += n;
            if c.lo == c.hi {
                (c.lo, c.hi) = (0, 0);
            }
        }
        let now = crate::clock::unix_now();
        let mut used = 0;
        let mut again = false;
        let mut close = false;
        let mut start_tls = false;
        while c.out.len() - used >= MIN_OUT {
            let p = match c.queue.as_mut() {
                Some(q) => sess.poll_with(&ctx.table, now, &mut c.out[used..], &ctx.stats, q),
                None => sess.poll_with(
                    &ctx.table,
                    now,
                    &mut c.out[used..],
                    &ctx.stats,
                    &mut NoChanges,
                ),
            };
            match p {
                Poll::Send(n) => used += n,
                Poll::Again => {
                    again = true;
                    break;
                }
                Poll::Idle => break,
                Poll::Close => {
                    close = true;
                    break;
                }
                Poll::Subscribe => {
                    cap_send_buffer(c.fd);
                    c.queue = Some(ctx.feed.subscribe(ctx.queue));
                }
                Poll::StartTls => {
                    start_tls = true;
                    break;
                }
            }
        }
        if used > 0 {
            // Backpressure: the next batch is made only once the peer took this one. A
            // subscriber that stops reading meanwhile and lets its queue overflow is cut
            // off at once (it would not read the status either). Inside TLS the flush
            // pushes out what rustls still holds.
            let out = &c.out[..used];
            let per_message = sess.in_tls();
            let write = tokio::time::timeout(idle, async {
                if per_message {
                    // Inside TLS: one write, so one record, per framed message.
                    let mut at = 0;
                    while at < out.len() {
                        let end = match out.get(at..at + 2) {
                            Some(l) => (at + 2 + usize::from(u16::from_be_bytes([l[0], l[1]])))
                                .min(out.len()),
                            None => out.len(),
                        };
                        wr.write_all(&out[at..end]).await?;
                        at = end;
                    }
                } else {
                    wr.write_all(out).await?;
                }
                wr.flush().await
            });
            match &c.queue {
                Some(q) => {
                    let overflow = async {
                        while q.lost_none() {
                            tokio::time::sleep(FEED_TICK).await;
                        }
                    };
                    tokio::select! {
                        r = write => r.map_err(|_| anyhow::anyhow!("peer did not read for {idle:?}"))??,
                        _ = overflow => {
                            ctx.stats.cut_off.fetch_add(1, Ordering::Relaxed);
                            anyhow::bail!("active leasequery subscriber not reading: queue overflowed, cut off");
                        }
                    }
                }
                None => write
                    .await
                    .map_err(|_| anyhow::anyhow!("peer did not read for {idle:?}"))??,
            }
        }
        if start_tls {
            return Ok(Some(rd.unsplit(wr)));
        }
        if close {
            let _ = wr.shutdown().await;
            return Ok(None);
        }
        if again || sess.busy() || c.lo < c.hi || c.queue.as_ref().is_some_and(|q| q.ready()) {
            tokio::task::yield_now().await;
            continue;
        }
        let hi = c.hi;
        if c.queue.is_some() {
            // Subscribed, nothing queued: wait for input (answered ConnectionActive; 0 =
            // the requestor left), the stop, or the next look at the queue.
            tokio::select! {
                r = rd.read(&mut c.inbuf[hi..]) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(None);
                    }
                    c.hi += n;
                }
                _ = stop.changed() => sess.terminate(),
                _ = tokio::time::sleep(FEED_TICK) => {}
            }
            continue;
        }
        // Nothing to answer: wait for input.
        tokio::select! {
            r = tokio::time::timeout(idle, rd.read(&mut c.inbuf[hi..])) => {
                let n = r.map_err(|_| anyhow::anyhow!("idle for {idle:?}"))??;
                if n == 0 {
                    return Ok(None); // the requestor closed
                }
                c.hi += n;
            }
            _ = stop.changed() => sess.terminate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    use std::time::Instant;

    use lease_store::{OpenOptions, PoolSpec};
    use xdhcpd_dhcpv4::bulk_leasequery::{build_query, parse_reply, QuerySpec, Status};
    use xdhcpd_dhcpv4::wire::MessageType;

    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

    /// A table of 65,534 free addresses: 20 MB of answers to a query for all, more than
    /// loopback's socket buffers hold.
    fn table() -> (tempfile::TempDir, Arc<LeaseTable>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pools = [PoolSpec {
            id: 1,
            first: Ipv4Addr::new(10, 20, 0, 1),
            last: Ipv4Addr::new(10, 20, 255, 254),
        }];
        let (t, _) = LeaseTable::open(
            &dir.path().join("l.db"),
            &pools,
            &OpenOptions {
                now: 1000,
                ..OpenOptions::default()
            },
        )
        .expect("table");
        (dir, Arc::new(t))
    }

    fn start(allow: Ipv4Addr, max: u32, idle: u32) -> (tempfile::TempDir, BulkLq) {
        let (dir, t) = table();
        let cfg = BulkLeasequeryConfig {
            listen: SocketAddr::from((SERVER, 0)),
            max_connections: max,
            idle_timeout: idle,
            active_queue: 16_384,
            tls: None,
        };
        let acl: AllowFn = Arc::new(move || vec![Ipv4Net::truncating(allow, 32)]);
        let lq = BulkLq::start(&cfg, acl, t, SERVER).expect("listener");
        (dir, lq)
    }

    fn read_msg(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut m)?;
        Ok(m)
    }

    fn wait(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn bulk_leasequery_driver_writes_only_as_fast_as_the_peer_reads() {
        let (_dir, lq) = start(SERVER, 1, 1);
        let st = lq.stats();
        let mut c = TcpStream::connect(lq.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.write_all(&build_query(9, &QuerySpec::All, None, None))
            .expect("send");
        for _ in 0..10 {
            let m = parse_reply(&read_msg(&mut c).expect("answer")).expect("parses");
            assert_eq!((m.xid, m.kind), (9, MessageType::LeaseUnassigned));
        }
        // Over max-connections: accepted and closed at once, counted.
        let mut extra = TcpStream::connect(lq.addr()).expect("connect");
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut b = [0u8; 1];
        assert!(matches!(extra.read(&mut b), Ok(0) | Err(_)), "closed");
        assert_eq!(st.snapshot().connections_refused, 1);
        // We stop reading: the driver stalls on the full socket, then gives up after the
        // idle timeout, having made only what the socket buffers took.
        wait("the stalled connection to be closed", || {
            st.snapshot().connections_failed == 1
        });
        let s = st.snapshot();
        assert!(
            s.unassigned < 65_534,
            "the whole answer was made for a peer that did not read: {s:?}"
        );
        assert_eq!(s.done, 0);
        lq.stop();
    }

    #[test]
    fn bulk_leasequery_driver_answers_notallowed_to_a_peer_not_in_the_acl() {
        let (_dir, lq) = start(Ipv4Addr::new(192, 0, 2, 1), 4, 5);
        let mut c = TcpStream::connect(lq.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.write_all(&build_query(3, &QuerySpec::All, None, None))
            .expect("send");
        let m = parse_reply(&read_msg(&mut c).expect("answer")).expect("parses");
        assert_eq!((m.xid, m.kind), (3, MessageType::LeaseQueryDone));
        assert_eq!(
            m.status.map(|s| s.0),
            Some(Status::NotAllowed as u8),
            "NotAllowed"
        );
        let mut b = [0u8; 1];
        assert!(
            matches!(c.read(&mut b), Ok(0) | Err(_)),
            "closed after NotAllowed"
        );
        let s = lq.stats().snapshot();
        assert_eq!(
            (s.connections_refused, s.not_allowed, s.unassigned),
            (1, 1, 0)
        );
        // A refused peer that sends nothing keeps its slot only REFUSED_IDLE (the
        // configured idle timeout is 5 s).
        let mut silent = TcpStream::connect(lq.addr()).expect("connect");
        silent
            .set_read_timeout(Some(Duration::from_secs(8)))
            .expect("timeout");
        let t = Instant::now();
        assert!(matches!(silent.read(&mut b), Ok(0) | Err(_)), "closed");
        let waited = t.elapsed();
        assert!(
            waited >= REFUSED_IDLE - Duration::from_millis(100) && waited < Duration::from_secs(4),
            "closed after {waited:?}"
        );
        wait("the silent refused peer to be counted", || {
            lq.stats().snapshot().connections_failed == 1
        });
        lq.stop();
    }

    #[test]
    fn bulk_leasequery_driver_full_answer_and_terminated_on_stop() {
        let (_dir, lq) = start(SERVER, 4, 5);
        let mut c = TcpStream::connect(lq.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.write_all(&build_query(1, &QuerySpec::All, None, None))
            .expect("send");
        let mut n = 0;
        loop {
            let m = parse_reply(&read_msg(&mut c).expect("answer")).expect("parses");
            if m.kind == MessageType::LeaseQueryDone {
                assert_eq!(m.status, None);
                break;
            }
            n += 1;
        }
        assert_eq!(n, 65_534, "every address reported once");
        // A second query, stopped midway: QueryTerminated, then the connection closes.
        c.write_all(&build_query(2, &QuerySpec::All, None, None))
            .expect("send");
        read_msg(&mut c).expect("first answer");
        let stats = lq.stats();
        let stopper = std::thread::spawn(move || lq.stop());
        // The driver is held by the full socket meanwhile (20 MB of answers), so the stop
        // arrives before the answer could end.
        std::thread::sleep(Duration::from_millis(200));
        let mut last = None;
        while let Ok(m) = read_msg(&mut c) {
            last = Some(parse_reply(&m).expect("parses"));
        }
        stopper.join().expect("stopped");
        let last = last.expect("answers after the stop");
        assert_eq!(last.kind, MessageType::LeaseQueryDone);
        assert_eq!(
            last.status.map(|s| s.0),
            Some(Status::QueryTerminated as u8)
        );
        assert_eq!(stats.snapshot().terminated, 1);
    }

    /// Passes a TCP stream through and notes the TLS record headers the server sent
    /// (content type per record), so a test can count records against messages.
    struct RecordTap {
        inner: TcpStream,
        hdr: Vec<u8>,
        left: usize,
        types: Vec<u8>,
    }

    impl Read for RecordTap {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            for &b in &buf[..n] {
                if self.left > 0 {
                    self.left -= 1;
                    continue;
                }
                self.hdr.push(b);
                if self.hdr.len() == 5 {
                    self.types.push(self.hdr[0]);
                    self.left = usize::from(u16::from_be_bytes([self.hdr[3], self.hdr[4]]));
                    self.hdr.clear();
                }
            }
            Ok(n)
        }
    }

    impl Write for RecordTap {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.inner.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }

    fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate (`openssl`).
    fn pki(dir: &std::path::Path) -> bool {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let run = |args: Vec<&str>| openssl(dir, &args);
        let mut ok = run([
            &["req", "-x509"][..],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.crt"],
            &["-subj", "/CN=ca", "-days", "2"],
        ]
        .concat());
        let leaves = [
            ("srv", "IP:127.0.0.1", "serverAuth"),
            ("dev", "DNS:olt.example", "clientAuth"),
        ];
        for (name, san, usage) in leaves {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let crt = format!("{name}.crt");
            let extf = format!("{name}.ext");
            let subj = format!("/CN={name}");
            let ext = format!(
                "subjectAltName = {san}\nbasicConstraints = CA:FALSE\n\
                 keyUsage = digitalSignature\nextendedKeyUsage = {usage}\n"
            );
            ok = ok
                && std::fs::write(dir.join(&extf), ext).is_ok()
                && run([
                    &["req"][..],
                    &ec[..],
                    &["-keyout", key.as_str(), "-out", csr.as_str()],
                    &["-subj", subj.as_str()],
                ]
                .concat())
                && run(vec![
                    "x509",
                    "-req",
                    "-in",
                    csr.as_str(),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    crt.as_str(),
                    "-days",
                    "2",
                    "-extfile",
                    extf.as_str(),
                ]);
        }
        ok
    }

    #[test]
    fn leasequery_tls_one_message_per_tls_record() {
        use tokio_rustls::rustls::pki_types::ServerName;
        use tokio_rustls::rustls::{ClientConnection, StreamOwned};
        use xdhcpd_dhcpv4::bulk_leasequery::{build_tls_request, parse_tls_answer, TlsAnswer};

        let certs = tempfile::tempdir().expect("tempdir");
        if !pki(certs.path()) {
            eprintln!("skipped: no openssl to make the test certificates");
            return;
        }
        let p = |f: &str| certs.path().join(f);
        let dir = tempfile::tempdir().expect("tempdir");
        let pools = [PoolSpec {
            id: 1,
            first: Ipv4Addr::new(10, 21, 0, 1),
            last: Ipv4Addr::new(10, 21, 1, 0),
        }];
        let (t, _) = LeaseTable::open(
            &dir.path().join("l.db"),
            &pools,
            &OpenOptions {
                now: 1000,
                ..OpenOptions::default()
            },
        )
        .expect("table");
        let cfg = BulkLeasequeryConfig {
            listen: SocketAddr::from((SERVER, 0)),
            max_connections: 2,
            idle_timeout: 10,
            active_queue: 16_384,
            tls: Some(xdhcpd_config::LeasequeryTls {
                mode: LeasequeryTlsMode::Offer,
                cert_file: p("srv.crt"),
                key_file: p("srv.key"),
                client_ca_file: Some(p("ca.crt")),
            }),
        };
        let acl: AllowFn = Arc::new(|| vec![Ipv4Net::truncating(SERVER, 32)]);
        let lq = BulkLq::start(&cfg, acl, Arc::new(t), SERVER).expect("listener");

        let mut tcp = TcpStream::connect(lq.addr()).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        tcp.write_all(&build_tls_request(77)).expect("DHCPTLS");
        let answer = read_msg(&mut tcp).expect("DHCPTLS answer");
        assert_eq!(parse_tls_answer(&answer, 77), Ok(TlsAnswer::Start));
        let files = xdhcpd_config::TlsClientConfig {
            ca_file: p("ca.crt"),
            cert_file: Some(p("dev.crt")),
            key_file: Some(p("dev.key")),
        };
        let cc = crate::tls::client_config(&files, "test").expect("client config");
        let mut conn = ClientConnection::new(Arc::new(cc), ServerName::IpAddress(SERVER.into()))
            .expect("client");
        let mut tap = RecordTap {
            inner: tcp,
            hdr: Vec::new(),
            left: 0,
            types: Vec::new(),
        };
        while conn.is_handshaking() {
            conn.complete_io(&mut tap).expect("handshake");
        }
        let before = tap.types.len();
        let mut s = StreamOwned::new(conn, tap);
        s.write_all(&build_query(5, &QuerySpec::All, None, None))
            .expect("query");
        let mut messages = 0usize;
        loop {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).expect("answer length");
            let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut m).expect("answer");
            messages += 1;
            if parse_reply(&m).expect("parses").kind == MessageType::LeaseQueryDone {
                break;
            }
        }
        assert_eq!(messages, 257, "256 addresses and the DONE");
        // Every application-data record after the handshake (session tickets included, so
        // at least as many records as messages): one message per record, never several.
        let records = s.sock.types[before..].iter().filter(|&&t| t == 23).count();
        assert!(
            records >= messages,
            "{messages} messages came in {records} TLS records: several messages per record"
        );
        lq.stop();
    }
}
