//! `xdhcp-loadgen`: a DHCPv4 client simulator for load tests against any
//! DHCP server (xdhcpd, Kea, ISC dhcpd).
//!
//! Each thread owns one socket (an AF_XDP socket on one RX queue, or an
//! AF_PACKET socket in a fanout group) and a share of the simulated clients,
//! and busy-polls: receive a batch, match replies, time out, send a batch of
//! up to 64 frames, flush. See [`engine`] for the state machine and
//! [`report`] for what is measured.

pub mod acklog;
pub mod addrbook;
pub mod engine;
pub mod forcerenew;
pub mod hist;
pub mod port;
pub mod reply;
pub mod report;
pub mod request;
pub mod scenario;
pub mod shared;
pub mod sys;
pub mod v6;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use xdhcpd_common::{XdpConfig, CFG_DHCPV4, CFG_DHCPV4_CLIENT, CFG_DHCPV6, CFG_DHCPV6_CLIENT};
use xdhcpd_io::xdp::{AttachMode, XdpSteering};
use xdhcpd_io::xsk::{BindMode, XskConfig, XskSocket};

use engine::Engine;
use port::{PacketPort, Port, XskPort};
pub use report::Report;
use request::Peer;
pub use scenario::{Phase, PhaseCounts, PhaseStats, Scenario};
pub use shared::{EngineConfig, ThreadReport};
use shared::{Live, Shared};

/// Which packet I/O to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// AF_XDP if the XDP program attaches and the sockets bind, else AF_PACKET.
    Auto,
    Xdp,
    Packet,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub ifname: String,
    pub io: IoMode,
    pub attach: AttachMode,
    pub bind: BindMode,
    /// Threads, one per RX queue (AF_XDP) or per fanout member (AF_PACKET).
    pub queues: u32,
    /// CPU to pin thread i to (`cpus[i % len]`); empty: no pinning.
    pub cpus: Vec<usize>,
    pub ebpf_object: Option<PathBuf>,
    /// Server address (needed in relay mode; learned from replies otherwise).
    pub server: Option<Ipv4Addr>,
    pub server_mac: Option<[u8; 6]>,
    pub engine: EngineConfig,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Append one line per ACK received to this file (see [`acklog`]).
    pub acked_log: Option<PathBuf>,
    /// Written (one line: clients bound) when every thread finished its warm-up: the
    /// signal for a test or an operator to trigger the server (`--scenario forcerenew`).
    pub ready_file: Option<PathBuf>,
}

/// SIGINT/SIGTERM flag (set by the handler, polled by the progress loop).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Relaxed);
}

/// Ctrl-C stops starting exchanges; the run drains and reports.
pub fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

enum Ports {
    Xdp {
        ports: Vec<XskPort>,
        // Kept alive for the run: dropping it detaches the program.
        _steering: Box<XdpSteering>,
    },
    Packet(Vec<PacketPort>, Vec<sys::SinkSocket>),
}

fn open_xdp(cfg: &Config) -> anyhow::Result<Ports> {
    let mut flags = CFG_DHCPV4_CLIENT;
    if cfg.engine.relay.is_some() {
        // Relayed replies go to the relay's (our) port 67.
        flags |= CFG_DHCPV4;
    }
    if let Some(v) = &cfg.engine.v6 {
        // Replies to the clients' port 546, or (relayed) to the relay's (our) port 547.
        flags = if v.relay.is_some() {
            CFG_DHCPV6
        } else {
            CFG_DHCPV6_CLIENT
        };
    }
    let xcfg = XdpConfig {
        flags,
        failover_port: 0,
        standby_max_secs: 0,
    };
    let mut steering =
        XdpSteering::attach(&cfg.ifname, cfg.attach, cfg.ebpf_object.as_deref(), xcfg)
            .with_context(|| format!("attaching the XDP program to {}", cfg.ifname))?;
    let rxq = sys::rx_queue_count(&cfg.ifname).unwrap_or(1).max(1);
    if cfg.queues > rxq {
        bail!(
            "--queues {} exceeds the {rxq} RX queue(s) of {}",
            cfg.queues,
            cfg.ifname
        );
    }
    // Every RX queue needs a socket (replies may arrive on any); socket q
    // goes to thread q % threads, which transmits on its first one.
    let mut groups: Vec<Vec<XskSocket>> = (0..cfg.queues).map(|_| Vec::new()).collect();
    for q in 0..rxq {
        let mut x = XskConfig::new(cfg.ifname.clone(), q);
        x.mode = cfg.bind;
        x.frame_count = 8192;
        x.tx_frames = 4096;
        x.ring_size = 4096;
        let sock = XskSocket::open(&x)
            .with_context(|| format!("opening the AF_XDP socket on {} queue {q}", cfg.ifname))?;
        steering
            .register_socket(q, sock.fd())
            .with_context(|| format!("registering the AF_XDP socket of queue {q}"))?;
        groups[(q % cfg.queues) as usize].push(sock);
    }
    let ports = groups.into_iter().map(XskPort::new).collect();
    Ok(Ports::Xdp {
        ports,
        _steering: Box::new(steering),
    })
}

fn open_packet(cfg: &Config) -> anyhow::Result<Ports> {
    let group = (cfg.queues > 1).then(|| (std::process::id() & 0xffff) as u16);
    let mut ports = Vec::new();
    let v6 = cfg.engine.v6.is_some();
    for _ in 0..cfg.queues {
        ports.push(PacketPort::open(&cfg.ifname, group, v6)?);
    }
    if v6 {
        return Ok(Ports::Packet(ports, Vec::new()));
    }
    // Unicast replies to our own addresses (giaddr, renewing clients) would
    // make the kernel answer "port unreachable"; sockets on 67/68 absorb them.
    let mut sinks = Vec::new();
    for port in [68u16, 67] {
        match sys::SinkSocket::bind(port) {
            Ok(s) => sinks.push(s),
            Err(e) => eprintln!("xdhcp-loadgen: note: no sink socket on UDP {port}: {e}"),
        }
    }
    Ok(Ports::Packet(ports, sinks))
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < 1024 {
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                eprintln!("xdhcp-loadgen: note: could not pin a thread to CPU {cpu}");
            }
        }
    }
}

/// Runs the load test and returns the merged report.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    let e = &cfg.engine;
    if e.clients == 0 || e.clients > engine::MAX_CLIENTS {
        bail!(
            "--clients {} must be in 1..={}",
            e.clients,
            engine::MAX_CLIENTS
        );
    }
    if cfg.queues == 0 || cfg.queues > 64 {
        bail!("--queues {} must be in 1..=64", cfg.queues);
    }
    if e.clients < cfg.queues {
        bail!(
            "--clients {} is fewer than --queues {}",
            e.clients,
            cfg.queues
        );
    }
    if e.duration_ns.is_none() && e.count.is_none() {
        bail!("give --duration or --count");
    }
    if e.scenario == Scenario::ForceRenew {
        if e.v6.is_some() || e.self_test {
            bail!("--scenario forcerenew is DHCPv4 only, and no --self-test");
        }
        if e.duration_ns.is_none() {
            bail!("--scenario forcerenew needs --duration: how long the clients listen at most (--count N ends it once N clients are reconfigured)");
        }
    }
    if let Some(v) = &e.v6 {
        if matches!(
            e.scenario,
            Scenario::Release | Scenario::InitReboot | Scenario::ForceRenew
        ) {
            bail!(
                "--scenario {} is DHCPv4 only (DHCPv6: sarr, sarr-renew, renew)",
                e.scenario.name()
            );
        }
        if e.relay.is_some() {
            bail!("--relay is the DHCPv4 relay; DHCPv6 relays with --relay6");
        }
        if !v.ia_na && !v.ia_pd {
            bail!("--dhcpv6 must ask for an IA_NA, an IA_PD or both");
        }
    }
    let iface_mac = sys::iface_mac(&cfg.ifname)
        .with_context(|| format!("reading the MAC address of {}", cfg.ifname))?;
    let server = match (cfg.server, cfg.server_mac) {
        (Some(ip), Some(mac)) => Some((ip, mac)),
        (Some(ip), None) => Some((
            ip,
            sys::resolve_mac(&cfg.ifname, ip, Duration::from_secs(3))
                .with_context(|| format!("resolving the MAC address of server {ip}"))?,
        )),
        (None, _) => None,
    };
    if e.relay.is_some() && server.is_none() {
        bail!("relay mode (--relay) needs the server's address (--server)");
    }

    // Opened before any packet is sent, so a bad path fails the run at once.
    let ack_log = match &cfg.acked_log {
        Some(p) => Some(Arc::new(acklog::AckLog::open(p).with_context(|| {
            format!("opening the ACK log (--acked-log) {}", p.display())
        })?)),
        None => None,
    };

    let (ports, io_note) = match cfg.io {
        IoMode::Xdp => (open_xdp(cfg)?, None),
        IoMode::Packet => (open_packet(cfg)?, None),
        IoMode::Auto => match open_xdp(cfg) {
            Ok(p) => (p, None),
            Err(err) => {
                let why = format!("{err:#}");
                eprintln!("xdhcp-loadgen: AF_XDP unavailable ({why}); falling back to AF_PACKET");
                (open_packet(cfg)?, Some(why))
            }
        },
    };

    let threads = cfg.queues;
    let mut ecfg = e.clone();
    ecfg.threads = threads;
    let sh = Arc::new(Shared {
        book: addrbook::AddrBook::new(ecfg.clients as usize),
        book_pd: addrbook::AddrBook::new(if ecfg.v6.is_some_and(|v| v.ia_pd) {
            ecfg.clients as usize
        } else {
            0
        }),
        cfg: ecfg,
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        warmed: AtomicU32::new(0),
        live: (0..threads).map(|_| Live::default()).collect(),
        peer: Peer { server, iface_mac },
        keys: forcerenew::KeyBook::new(if e.scenario == Scenario::ForceRenew {
            e.clients as usize
        } else {
            0
        }),
        reconf_done: std::sync::atomic::AtomicU64::new(0),
    });

    let mut inboxes = Vec::new();
    let mut outboxes = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = sync_channel(65536);
        outboxes.push(tx);
        inboxes.push(rx);
    }

    let (io_name, reports) = match ports {
        Ports::Xdp { ports, _steering } => {
            let r = run_threads(cfg, &sh, ports, inboxes, &outboxes, ack_log.as_ref())?;
            drop(_steering);
            ("af_xdp", r)
        }
        Ports::Packet(ports, sinks) => {
            let r = run_threads(cfg, &sh, ports, inboxes, &outboxes, ack_log.as_ref())?;
            drop(sinks);
            ("af_packet", r)
        }
    };
    Ok(Report::build(cfg, &sh, io_name, io_note, reports))
}

fn run_threads<P: Port + Send>(
    cfg: &Config,
    sh: &Arc<Shared>,
    ports: Vec<P>,
    inboxes: Vec<std::sync::mpsc::Receiver<reply::Reply>>,
    outboxes: &[std::sync::mpsc::SyncSender<reply::Reply>],
    ack_log: Option<&Arc<acklog::AckLog>>,
) -> anyhow::Result<Vec<ThreadReport>> {
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (t, (port, inbox)) in ports.into_iter().zip(inboxes).enumerate() {
            let sh = sh.clone();
            let outs = outboxes.to_vec();
            let log = ack_log.cloned();
            let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[t % cfg.cpus.len()]);
            let h = std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn_scoped(s, move || {
                    if let Some(c) = cpu {
                        pin_to(c);
                    }
                    let e = Engine::new(port, sh, t as u32, inbox, outs);
                    match log {
                        Some(l) => e.with_ack_log(l).run(),
                        None => e.run(),
                    }
                })
                .context("spawning a loadgen thread")?;
            handles.push(h);
        }
        progress_loop(cfg, sh, &handles);
        let mut out = Vec::new();
        for (t, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(e)) => return Err(anyhow::Error::new(e).context(format!("thread {t}"))),
                Err(_) => bail!("loadgen thread {t} panicked"),
            }
        }
        Ok(out)
    })
}

fn progress_loop<T>(cfg: &Config, sh: &Shared, handles: &[std::thread::ScopedJoinHandle<'_, T>]) {
    let mut last = Instant::now();
    let mut prev = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut tick = 0u32;
    let mut ready_written = false;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if INTERRUPTED.load(Relaxed) {
            sh.stop.store(true, Relaxed);
        }
        if let Some(path) = cfg.ready_file.as_ref().filter(|_| !ready_written) {
            if sh.warmed.load(Relaxed) >= sh.cfg.threads && !sh.stop.load(Relaxed) {
                ready_written = true;
                let line = format!("warmed {} clients bound\n", sh.book.bound_count());
                if let Err(e) = std::fs::write(path, line) {
                    eprintln!(
                        "xdhcp-loadgen: cannot write the ready file {}: {e}",
                        path.display()
                    );
                    sh.stop.store(true, Relaxed);
                }
            }
        }
        if handles.iter().all(|h| h.is_finished()) {
            return;
        }
        let dt = last.elapsed();
        if dt < Duration::from_secs(1) {
            continue;
        }
        last = Instant::now();
        tick += 1;
        let sum = |f: &dyn Fn(&Live) -> u64| sh.live.iter().map(f).sum::<u64>();
        let sent = sum(&|l| l.sent.load(Relaxed));
        let answered = sum(&|l| l.answered.load(Relaxed));
        let drops = sum(&|l| l.drops.load(Relaxed));
        let tx = sum(&|l| l.tx_packets.load(Relaxed));
        let rx = sum(&|l| l.rx_frames.load(Relaxed));
        let naks = sum(&|l| l.naks.load(Relaxed));
        let outstanding = sum(&|l| l.outstanding.load(Relaxed));
        let phase = sh
            .live
            .iter()
            .map(|l| l.phase.load(Relaxed))
            .max()
            .unwrap_or(0) as usize;
        let secs = dt.as_secs_f64();
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        if cfg.progress {
            eprintln!(
                "[{tick:>4}s] {:<11} started {:>9.0}/s answered {:>9.0}/s drops {:>7.0}/s | tx {:>9.0} pps rx {:>9.0} pps | outstanding {outstanding} naks {naks} drops {drops}",
                Phase::ALL.get(phase).map_or("?", |p| p.name()),
                rate(sent, prev.0),
                rate(answered, prev.1),
                rate(drops, prev.2),
                rate(tx, prev.3),
                rate(rx, prev.4),
            );
        }
        prev = (sent, answered, drops, tx, rx);
    }
}
