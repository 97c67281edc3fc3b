//! What the NATS sink costs per lease event, measured on the real code (issue 17: "event
//! publishing at the server's maximum DORA rate costs <= 5% of DORA/s"):
//!
//! - the event log writer's side: `SpoolWriter::append_lease` encodes each event from its
//!   record into reused buffers: no allocation per event (a counting allocator, this test
//!   binary only), one message per event or many; its CPU time per event is printed beside
//!   the reference encoding it replaced (`LeaseEvent` + serde + `format!` subject and id);
//! - the publisher's side, with a real `nats-server -js` (Debian's, on a free loopback port,
//!   started and removed here): the same spool published with `events-per-message` = 1 and
//!   = 100; every event reaches the stream (messages: one per event, or one per 100), and the
//!   CPU per event of the publisher thread and of nats-server (`/proc/.../schedstat`, all
//!   their threads) is printed. Batching must cut both.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
#[path = "common/require.rs"]
mod require;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use counting_alloc::allocs;
use lease_store::{ClientKey, Lease, LeaseState};
use require::{require, Capability};
use xdhcpd::events::nats::{NatsStats, Publisher, Router, SpoolWriter};
use xdhcpd::events::{event_of, Source};
use xdhcpd_config::{Ipv4Net, NatsConfig};

fn lease(i: u32, time: u32) -> Lease {
    let mut l = Lease::free(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 77, 0, 0)) + i));
    let hw = [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    l.state = LeaseState::Active;
    l.client = ClientKey::from_hw(1, &hw);
    l.htype = 1;
    l.hlen = 6;
    l.chaddr[..6].copy_from_slice(&hw);
    l.start = time;
    l.cltt = time;
    l.expiry = time + 3600;
    l.set_relay_agent_info(&[1, 4, 0, 0, 0, (i & 0xff) as u8]);
    l
}

fn config(port: u16, per_message: u32, stream: &str) -> NatsConfig {
    NatsConfig {
        urls: vec![format!("nats://127.0.0.1:{port}")],
        stream: stream.into(),
        events_per_message: per_message,
        ..NatsConfig::default()
    }
}

fn router(cfg: &NatsConfig) -> Router {
    let nets = [
        Ipv4Net::new(Ipv4Addr::new(10, 76, 0, 0), 16).expect("net"),
        Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 16).expect("net"),
    ];
    Router::new(cfg, Ipv4Addr::new(10, 77, 0, 1), &nets, None)
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Nanoseconds on CPU of every thread of `pid` named `comm` (any name: None).
fn task_cpu_ns(pid: u32, comm: Option<&str>) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.flatten()
        .filter(|t| {
            comm.is_none_or(|c| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.trim() == c)
            })
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn events_nats_spool_encoding_allocates_nothing_per_event() {
    const N: u32 = 30_000;
    let dir = tempfile::tempdir().expect("tempdir");
    for per_message in [1u32, 100] {
        let cfg = config(4222, per_message, "S");
        let r = router(&cfg);
        let spool = dir.path().join(format!("spool-{per_message}"));
        let stats = Arc::new(NatsStats::default());
        let (mut w, _rd) =
            SpoolWriter::open(&spool, 1 << 32, r.clone(), stats.clone()).expect("open the spool");
        let leases: Vec<Lease> = (0..N).map(|i| lease(i % 5000, 1_764_810_000 + i)).collect();
        // Warm-up: the reused buffers reach their size.
        for l in &leases[..1000] {
            w.append_lease("ack", l.cltt, l, &[], Source::Dhcp);
        }
        w.flush();
        let (a0, t0) = (allocs(), thread_cpu());
        for (i, l) in leases.iter().enumerate() {
            w.append_lease("ack", l.cltt, l, &[], Source::Dhcp);
            if i % 300 == 299 {
                // The writer's tick at 30,000 events/s.
                w.flush();
            }
        }
        w.flush();
        let (a1, t1) = (allocs(), thread_cpu());
        assert_eq!(
            a1 - a0,
            0,
            "events-per-message {per_message}: allocations while spooling {N} events"
        );
        assert_eq!(
            stats.spooled.load(Ordering::Relaxed),
            u64::from(N) + 1000,
            "every event spooled"
        );
        // The reference encoding (what the writer did before): LeaseEvent, serde, format!.
        let (b0, u0) = (allocs(), thread_cpu());
        let mut bytes = 0usize;
        for l in &leases {
            let e = event_of("ack", l.cltt, l, &[], Source::Dhcp);
            let id = r.message_id(&e);
            let json = serde_json::to_vec(&r.nats_event(&e, None)).expect("json");
            bytes += r.subject(&e).len() + id.len() + json.len();
        }
        let (b1, u1) = (allocs(), thread_cpu());
        assert!(bytes > 0 && b1 - b0 >= u64::from(N) * 8);
        eprintln!(
            "events_nats_cost: spool append, events-per-message {per_message}: {:.0} ns CPU per \
             event, 0 allocations; reference encoding (LeaseEvent + serde + format!): {:.0} ns, \
             {:.1} allocations per event",
            (t1 - t0).as_nanos() as f64 / f64::from(N),
            (u1 - u0).as_nanos() as f64 / f64::from(N),
            (b1 - b0) as f64 / f64::from(N),
        );
    }
}

/// A `nats-server -js` on a free loopback port with its own store; killed on drop.
struct NatsServer {
    child: std::process::Child,
    port: u16,
}

impl NatsServer {
    fn start(store: &Path, log: &Path) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let out = std::fs::File::create(log).expect("log");
        let child = std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("starting nats-server");
        let t0 = Instant::now();
        while !std::fs::read_to_string(log).is_ok_and(|t| t.contains("Server is ready")) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "nats-server not ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NatsServer { child, port }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages in `stream` (JetStream's stream info).
fn stream_messages(port: u16, stream: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(c);
        let mut s = js.get_stream(stream).await.expect("stream");
        s.info().await.expect("info").state.messages
    })
}

#[test]
fn events_nats_batched_messages_cut_publisher_and_nats_server_cpu_per_event() {
    if !require(&[Capability::Program("nats-server")]) {
        return;
    }
    const N: u32 = 60_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut per_event = Vec::new();
    for per_message in [1u32, 100] {
        let nats = NatsServer::start(
            &dir.path().join(format!("js-{per_message}")),
            &dir.path().join(format!("nats-{per_message}.log")),
        );
        let stream = format!("COST_{per_message}");
        let cfg = config(nats.port, per_message, &stream);
        let stats = Arc::new(NatsStats::default());
        let spool = dir.path().join(format!("spool-{per_message}"));
        let (mut w, rd) =
            SpoolWriter::open(&spool, 1 << 32, router(&cfg), stats.clone()).expect("open");
        for i in 0..N {
            let l = lease(i % 5000, 1_764_810_000 + i);
            w.append_lease("ack", l.cltt, &l, &[], Source::Dhcp);
            if i % 300 == 299 {
                w.flush();
            }
        }
        w.flush();
        assert_eq!(stats.depth.load(Ordering::Relaxed), u64::from(N));
        let server0 = task_cpu_ns(nats.child.id(), None);
        let t0 = Instant::now();
        let mut p = Publisher::start(cfg, rd, stats.clone()).expect("publisher");
        // The publisher thread's CPU is read before it stops (its task entry goes with it).
        let me = std::process::id();
        let mut publisher_ns = 0;
        while stats.depth.load(Ordering::Relaxed) > 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "events-per-message {per_message}: {} events still unsent",
                stats.depth.load(Ordering::Relaxed)
            );
            publisher_ns = task_cpu_ns(me, Some("xdhcpd-nats")).max(publisher_ns);
            std::thread::sleep(Duration::from_millis(5));
        }
        let wall = t0.elapsed();
        publisher_ns = task_cpu_ns(me, Some("xdhcpd-nats")).max(publisher_ns);
        let server_ns = task_cpu_ns(nats.child.id(), None) - server0;
        p.stop();
        assert_eq!(stats.published.load(Ordering::Relaxed), u64::from(N));
        assert_eq!(stats.duplicates.load(Ordering::Relaxed), 0);
        let messages = stream_messages(nats.port, &stream);
        assert_eq!(
            messages,
            u64::from(N.div_ceil(per_message)),
            "events-per-message {per_message}: messages in the stream"
        );
        assert_eq!(stats.messages.load(Ordering::Relaxed), messages);
        let (p_us, s_us) = (
            publisher_ns as f64 / 1e3 / f64::from(N),
            server_ns as f64 / 1e3 / f64::from(N),
        );
        eprintln!(
            "events_nats_cost: events-per-message {per_message}: {N} events in {messages} \
             messages in {:.2} s; CPU per event: publisher thread {p_us:.2} µs, nats-server \
             {s_us:.2} µs",
            wall.as_secs_f64()
        );
        per_event.push((p_us, s_us));
    }
    let (single, batched) = (per_event[0], per_event[1]);
    assert!(
        batched.0 < single.0 && batched.1 < single.1,
        "batching cuts the publisher's and nats-server's CPU per event: {single:?} -> {batched:?}"
    );
}

/// The whole way of an event through the daemon's event log (`EventLog`: the workers' tap,
/// the writer thread, the spool, the publisher thread), fed 300 changed records every 10 ms
/// (30,000 events/s, the A/B's open-loop rate) as the workers would; CPU per event of the
/// writer thread (`xdhcpd-events`), the publisher thread (`xdhcpd-nats`) and nats-server,
/// without the sink, with one message per event and with 100.
#[test]
fn events_nats_sink_cost_per_event_through_the_event_log() {
    use lease_store::{LeaseTable, OpenOptions, PoolSpec};
    use xdhcpd::events::EventLog;
    use xdhcpd_config::EventLogConfig;
    if !require(&[Capability::Program("nats-server")]) {
        return;
    }
    const ADDRS: u32 = 20_000;
    const ROUNDS: u32 = 3;
    const N: u64 = (ADDRS * ROUNDS) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut costs = Vec::new();
    for (label, per_message) in [
        ("event log only", 0u32),
        ("+ NATS, 1", 1),
        ("+ NATS, 100", 100),
    ] {
        let run = dir.path().join(format!("run-{per_message}"));
        std::fs::create_dir_all(&run).expect("dir");
        let nats = (per_message > 0)
            .then(|| NatsServer::start(&run.join("js"), &run.join("nats-server.log")));
        let pools = [PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 77, 0, 0),
            last: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 77, 0, 0)) + ADDRS - 1),
        }];
        let (table, _) = LeaseTable::open(&run.join("leases.db"), &pools, &OpenOptions::default())
            .expect("table");
        let table = Arc::new(table);
        let cfg = EventLogConfig {
            directory: run.join("events"),
            max_size_mb: 1024,
            max_age_hours: 0,
            keep: 2,
            nats: nats.as_ref().map(|n| config(n.port, per_message, "COST")),
        };
        let nets = [Ipv4Net::new(Ipv4Addr::new(10, 77, 0, 0), 16).expect("net")];
        let log = EventLog::start(
            &cfg,
            table.clone(),
            Ipv4Addr::new(10, 77, 0, 1),
            &nets,
            None,
        )
        .expect("event log");
        let tap = log.tap();
        let stats = log.stats();
        let server0 = nats.as_ref().map_or(0, |n| task_cpu_ns(n.child.id(), None));
        let t0 = Instant::now();
        // Leases of now (an hour long): none expires during the run.
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as u32;
        let mut slots = Vec::with_capacity(300);
        for round in 0..ROUNDS {
            for i in 0..ADDRS {
                let l = lease(i, base + round);
                let s = table.slot_of(l.addr).expect("slot");
                table.update(s, |r| *r = l);
                slots.push(s);
                if slots.len() == 300 {
                    tap.offer(&slots);
                    slots.clear();
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        tap.offer(&slots);
        let me = std::process::id();
        loop {
            let written = stats.written.load(Ordering::Relaxed);
            let unsent = stats
                .nats
                .as_ref()
                .map_or(0, |n| n.depth.load(Ordering::Relaxed));
            if written == N && unsent == 0 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{label}: {written} of {N} events written, {unsent} unsent"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        let writer = task_cpu_ns(me, Some("xdhcpd-events"));
        let publisher = task_cpu_ns(me, Some("xdhcpd-nats"));
        let server = nats
            .as_ref()
            .map_or(0, |n| task_cpu_ns(n.child.id(), None) - server0);
        if let Some(n) = &stats.nats {
            assert_eq!(n.published.load(Ordering::Relaxed), N, "{label}");
            assert_eq!(n.spool_dropped.load(Ordering::Relaxed), 0, "{label}");
        }
        assert_eq!(tap.dropped.load(Ordering::Relaxed), 0, "{label}");
        log.stop();
        let us = |ns: u64| ns as f64 / 1e3 / N as f64;
        eprintln!(
            "events_nats_cost: {label}: {N} events at 30,000/s; CPU per event: writer thread \
             {:.2} µs, publisher thread {:.2} µs (daemon {:.2} µs), nats-server {:.2} µs",
            us(writer),
            us(publisher),
            us(writer + publisher),
            us(server)
        );
        costs.push((us(writer + publisher), us(server)));
    }
    assert!(
        costs[2].0 < costs[1].0 && costs[2].1 < costs[1].1,
        "batched messages cost the daemon and nats-server less per event: {costs:?}"
    );
}
