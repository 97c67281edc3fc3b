//! AF_XDP socket tests in a private namespace pair (root only; see
//! `common/require.rs`).
//!
//! Run: `cargo test -p xdhcpd --test xsk_io -- --nocapture`

mod io_netns;

#[path = "common/require.rs"]
mod require;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_netns::*;
use require::{require, Capability};
use xdhcpd_io::xsk::{BindMode, Desc, TxPushError, XskConfig, XskOp, XskSocket};

/// Every test here makes namespaces and a veth (root, `ip`).
const NEEDS: &[Capability] = &[Capability::Root, Capability::Program("ip")];

const TEST_PORT: u16 = 9999;

fn cfg(ifname: &str) -> XskConfig {
    XskConfig {
        frame_count: 4096,
        tx_frames: 1024,
        ring_size: 2048,
        ..XskConfig::new(ifname, 0)
    }
}

/// Receives UDP datagrams on CLI_IP:TEST_PORT inside the client namespace
/// until `want` distinct sequence numbers arrived or `timeout` passed.
fn spawn_udp_counter(
    ns: String,
    want: usize,
    timeout: Duration,
) -> (
    mpsc::Receiver<()>,
    std::thread::JoinHandle<Result<HashSet<u32>, String>>,
) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ns = InNetns::enter(&ns)?;
        let sock = UdpSocket::bind(("10.77.0.2", TEST_PORT)).map_err(|e| format!("bind: {e}"))?;
        // Room for every datagram even if we are slow to read.
        let big: libc::c_int = 8 << 20;
        // SAFETY: valid fd and option buffer.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const libc::c_int).cast(),
                4,
            )
        };
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let mut seen = HashSet::new();
        let mut buf = [0u8; 2048];
        let end = Instant::now() + timeout;
        while seen.len() < want && Instant::now() < end {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if n >= 4 {
                    seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                }
            }
        }
        Ok(seen)
    });
    (ready_rx, h)
}

#[test]
fn xsk_tx_1000_frames_and_ownership_returns() {
    if !require(NEEDS) {
        return;
    }
    let pair = NetnsPair::new("t").expect("create namespace pair");
    const N: u32 = 1000;
    let (ready, counter) = spawn_udp_counter(pair.cli.clone(), N as usize, Duration::from_secs(10));
    ready
        .recv_timeout(Duration::from_secs(5))
        .expect("client socket ready");

    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    let mut xsk = XskSocket::open(&cfg(&pair.srv_if)).expect("open AF_XDP socket");
    eprintln!("bound in {:?} mode", xsk.bound_mode());
    assert_ne!(xsk.bound_mode(), BindMode::Auto);

    let initial = xsk.verify_accounting().expect("accounting at open");
    assert_eq!(initial.free_tx, 1024);
    // The fill ring starts full: ring_size frames with the kernel, the rest stashed.
    assert_eq!(initial.kernel_rx, 2048);
    assert_eq!(initial.free_rx, 4096 - 1024 - 2048);

    let mut sent = 0u32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent < N {
        assert!(Instant::now() < deadline, "transmit stalled at {sent}");
        let Some(addr) = xsk.alloc_tx_frame() else {
            xsk.flush().expect("flush");
            continue;
        };
        let buf = xsk.frame_mut(addr);
        assert_eq!(buf.len(), 2048, "a tx frame is a whole frame");
        let mut payload = [0u8; 300];
        payload[..4].copy_from_slice(&sent.to_be_bytes());
        let len = build_udp_frame(
            buf, CLI_MAC, SRV_MAC, SRV_IP, CLI_IP, 40000, TEST_PORT, &payload,
        );
        match xsk.tx_push(Desc {
            addr,
            len: len as u32,
        }) {
            Ok(()) => sent += 1,
            Err(TxPushError::RingFull) => {
                assert!(xsk.recycle(addr));
                xsk.flush().expect("flush");
            }
            Err(e) => panic!("tx_push: {e}"),
        }
        if sent.is_multiple_of(64) {
            xsk.flush().expect("flush");
        }
    }
    // Completions may trail the kick: flush until every frame is home.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        xsk.flush().expect("flush");
        let a = xsk.accounting();
        if a.free_tx == initial.free_tx || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = xsk
        .verify_accounting()
        .expect("accounting after completions");
    assert_eq!(end, initial, "every tx frame came back");
    let st = xsk.stats().expect("stats");
    assert_eq!(st.tx_invalid_descs, 0, "{st:?}");
    assert_eq!(xsk.anomalies(), Default::default());

    let seen = counter.join().expect("counter thread").expect("counter");
    assert_eq!(
        seen.len(),
        N as usize,
        "distinct frames received by the client"
    );
    assert!(seen.iter().all(|&s| s < N));
}

#[test]
fn xsk_ownership_is_enforced() {
    if !require(NEEDS) {
        return;
    }
    let pair = NetnsPair::new("o").expect("create namespace pair");
    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    let mut c = cfg(&pair.srv_if);
    c.frame_count = 256;
    c.tx_frames = 4;
    c.ring_size = 64;
    c.mode = BindMode::Copy;
    // Huge pages fall back to normal pages when none are reserved; busy
    // polling adds a recvfrom per flush. Both must still work.
    c.hugepages = true;
    c.busy_poll = true;
    let mut xsk = XskSocket::open(&c).expect("open AF_XDP socket");
    assert_eq!(xsk.bound_mode(), BindMode::Copy);

    // The tx pool is the last 4 frames.
    let mut got = Vec::new();
    while let Some(a) = xsk.alloc_tx_frame() {
        got.push(a);
    }
    assert_eq!(got.len(), 4);
    assert!(got
        .iter()
        .all(|a| a.is_multiple_of(2048) && *a >= 252 * 2048));
    let a = got[0];

    // Frames the caller does not own are inaccessible and cannot be returned.
    let rx_frame = 0u64;
    assert!(
        xsk.frame(rx_frame).is_empty(),
        "a fill-ring frame is not ours"
    );
    assert!(!xsk.recycle(rx_frame));
    assert_eq!(
        xsk.tx_push(Desc {
            addr: rx_frame,
            len: 60
        }),
        Err(TxPushError::NotOwned)
    );
    assert!(xsk.frame(1 << 40).is_empty(), "outside the UMEM");
    // Length checks: empty, and past the frame end.
    assert_eq!(
        xsk.tx_push(Desc { addr: a, len: 0 }),
        Err(TxPushError::BadLength)
    );
    assert_eq!(
        xsk.tx_push(Desc {
            addr: a + 100,
            len: 2000
        }),
        Err(TxPushError::BadLength)
    );
    // Double recycle is refused the second time.
    assert!(xsk.recycle(a));
    assert!(!xsk.recycle(a));
    assert!(xsk.frame(a).is_empty());
    assert_eq!(xsk.anomalies().caller_misuse, 3);
    for &g in &got[1..] {
        assert!(xsk.recycle(g));
    }
    xsk.flush().expect("flush");
    let acc = xsk.verify_accounting().expect("accounting");
    assert_eq!(acc.caller, 0);
    assert_eq!(acc.free_tx, 4);
    // 252 rx frames, ring of 64: 64 in the fill ring, 188 stashed.
    assert_eq!(acc.kernel_rx, 64);
    assert_eq!(acc.free_rx, 188);
    assert!(!xsk.wait_readable(0).expect("poll"), "nothing to receive");
}

#[test]
fn xsk_bind_errors_name_interface_and_queue() {
    if !require(NEEDS) {
        return;
    }
    let pair = NetnsPair::new("b").expect("create namespace pair");
    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    let mut c = cfg(&pair.srv_if);
    c.mode = BindMode::Copy;
    let _first = XskSocket::open(&c).expect("first socket");
    let e = match XskSocket::open(&c) {
        Ok(_) => panic!("two sockets bound the same queue"),
        Err(e) => e,
    };
    assert_eq!(e.errno(), Some(libc::EBUSY), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "bind AF_XDP socket (copy mode) to {} queue 0: EBUSY (another socket or program holds it)",
            pair.srv_if
        )
    );
    // A queue the veth does not have (it has 2).
    c.queue = 7;
    let e = match XskSocket::open(&c) {
        Ok(_) => panic!("bound a queue that does not exist"),
        Err(e) => e,
    };
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    // Zero-copy is not available on veth: explicit ZeroCopy fails, Auto falls back.
    c.queue = 1;
    c.mode = BindMode::ZeroCopy;
    match XskSocket::open(&c) {
        Ok(s) => {
            eprintln!("note: veth accepted zero-copy ({:?})", s.bound_mode());
            return;
        }
        Err(e) => {
            eprintln!("zero-copy refused as expected: {e}");
            assert!(
                matches!(e.op(), Some(XskOp::Bind(BindMode::ZeroCopy))),
                "{e}"
            );
        }
    }
    c.mode = BindMode::Auto;
    let s = XskSocket::open(&c).expect("auto falls back to copy");
    assert_eq!(s.bound_mode(), BindMode::Copy);
}

/// Turns a received Ethernet/IPv4/UDP frame around in place: swaps MACs,
/// addresses and ports, marks the payload as a reply (first byte after the
/// sequence number = 2) and recomputes both checksums (the sender's UDP
/// checksum may be only a partial one left for offload).
fn reflect_udp(f: &mut [u8]) -> Option<u32> {
    if f.len() < 42 + 5 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 17 {
        return None;
    }
    let ip_len = usize::from(u16::from_be_bytes([f[16], f[17]]));
    if ip_len < 28 + 5 || 14 + ip_len > f.len() {
        return None;
    }
    let (dst_mac, src_mac) = f[..12].split_at_mut(6);
    dst_mac.swap_with_slice(src_mac);
    let (s, d) = f[26..34].split_at_mut(4);
    s.swap_with_slice(d);
    let (sp, dp) = f[34..38].split_at_mut(2);
    sp.swap_with_slice(dp);
    let seq = u32::from_be_bytes([f[42], f[43], f[44], f[45]]);
    f[46] = 2;
    f[24..26].copy_from_slice(&[0, 0]);
    let c = csum_fold(csum_add(0, &f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let udp_len = ip_len - 20;
    f[40..42].copy_from_slice(&[0, 0]);
    let mut sum = csum_add(0, &f[26..34]);
    sum += 17 + udp_len as u32;
    sum = csum_add(sum, &f[34..34 + udp_len]);
    let c = match csum_fold(sum) {
        0 => 0xffff,
        c => c,
    };
    f[40..42].copy_from_slice(&c.to_be_bytes());
    Some(seq)
}

/// The XDP object file `cargo xtask build-ebpf` builds.
fn xdp_object() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(xdhcpd_io::xdp::DEFAULT_OBJECT_PATH)
}

/// RX through the real XDP program: DHCP-port datagrams from the client
/// namespace arrive in `recv()` on whichever queue veth picked; each is
/// reflected in place (`tx_push` of the rx frame) and arrives back at the
/// client; afterwards every frame is back in the fill ring or its stash.
#[test]
fn xsk_rx_via_xdp_redirect_and_reflect() {
    // The object embedded in this build serves when the file was not built.
    let path = xdp_object();
    let object = (path.is_file() || !xdhcpd_io::xdp::has_embedded_object()).then_some(path);
    let mut needs = NEEDS.to_vec();
    needs.extend(object.clone().map(Capability::EbpfObject));
    if !require(&needs) {
        return;
    }
    let pair = NetnsPair::new("r").expect("create namespace pair");
    const N: u32 = 200;

    let (go_tx, go_rx) = mpsc::channel::<()>();
    let cli_ns = pair.cli.clone();
    let client = std::thread::spawn(move || -> Result<HashSet<u32>, String> {
        let _ns = InNetns::enter(&cli_ns)?;
        let s = UdpSocket::bind("10.77.0.2:68").map_err(|e| format!("bind :68: {e}"))?;
        // All N replies may arrive before the first read: make room for
        // them (the default receive buffer holds about 160 of these).
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt on our own socket with a valid int option.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!(
                "SO_RCVBUFFORCE: {}",
                std::io::Error::last_os_error()
            ));
        }
        go_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| format!("no go: {e}"))?;
        let mut msg = [0u8; 300];
        msg[4] = 1; // BOOTREQUEST-like marker the server turns into 2
        for seq in 0..N {
            msg[..4].copy_from_slice(&seq.to_be_bytes());
            s.send_to(&msg, "10.77.0.1:67")
                .map_err(|e| format!("send {seq}: {e}"))?;
        }
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let mut seen = HashSet::new();
        let mut buf = [0u8; 1500];
        let end = Instant::now() + Duration::from_secs(10);
        while seen.len() < N as usize && Instant::now() < end {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                if n == 300 && buf[4] == 2 && from.to_string() == "10.77.0.1:67" {
                    seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                }
            }
        }
        Ok(seen)
    });

    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    // veth has two queues and picks one per flow: serve both, as the daemon does.
    let mut socks = Vec::new();
    for q in 0..2 {
        let mut c = cfg(&pair.srv_if);
        c.queue = q;
        c.tx_frames = 0;
        socks.push(XskSocket::open(&c).expect("open AF_XDP socket"));
    }
    let initial: Vec<_> = socks
        .iter()
        .map(|s| s.verify_accounting().expect("accounting at open"))
        .collect();
    let xcfg = xdhcpd_common::XdpConfig {
        flags: xdhcpd_common::CFG_DHCPV4,
        failover_port: 0,
        standby_max_secs: 0,
    };
    let mut steering = xdhcpd_io::xdp::XdpSteering::attach(
        &pair.srv_if,
        xdhcpd_io::xdp::AttachMode::Auto,
        object.as_deref(),
        xcfg,
    )
    .expect("attach XDP program");
    for (q, s) in socks.iter().enumerate() {
        steering
            .register_socket(q as u32, s.fd())
            .expect("register socket");
    }
    eprintln!(
        "XDP attached in {} mode; sockets bound in {:?} mode",
        steering.mode(),
        socks[0].bound_mode()
    );
    go_tx.send(()).expect("start client");

    let mut received = HashSet::new();
    let mut rx = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.len() < N as usize && Instant::now() < deadline {
        for s in socks.iter_mut() {
            rx.clear();
            if s.recv(&mut rx, 64) == 0 {
                s.flush().expect("flush");
                continue;
            }
            for d in &rx {
                let f = s.frame_mut(d.addr);
                assert!(f.len() >= d.len as usize, "frame holds the packet");
                let (mac, ip, port) =
                    udp_frame_dst(&f[..d.len as usize]).expect("an IPv4/UDP frame");
                assert_eq!((mac, ip, port), (SRV_MAC, SRV_IP, 67));
                let seq =
                    reflect_udp(&mut f[..d.len as usize]).expect("reflectable DHCP-port frame");
                assert!(received.insert(seq), "sequence {seq} received twice");
                s.tx_push(*d).expect("tx_push the rx frame");
            }
            s.flush().expect("flush");
        }
    }
    assert_eq!(received.len(), N as usize, "all datagrams reached recv()");
    // Copy-mode transmit sends a bounded number of frames per flush: keep
    // flushing until every reflected frame has left (or a deadline).
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while socks.iter().any(|s| s.accounting().kernel_tx > 0) && Instant::now() < drain_deadline {
        for s in socks.iter_mut() {
            s.flush().expect("flush");
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let replies = client.join().expect("client thread").expect("client");
    assert_eq!(
        replies.len(),
        N as usize,
        "all reflections reached the client"
    );

    // Every frame is back: none with the caller or in flight, the fill ring full.
    for (s, init) in socks.iter_mut().zip(&initial) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.accounting().kernel_tx > 0 && Instant::now() < deadline {
            s.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(1));
        }
        let a = s.verify_accounting().expect("accounting after the run");
        assert_eq!(a.caller, 0);
        assert_eq!(a.kernel_tx, 0);
        assert_eq!(a.free_rx + a.kernel_rx, init.free_rx + init.kernel_rx);
        let st = s.stats().expect("stats");
        assert_eq!(st.rx_invalid_descs + st.tx_invalid_descs, 0, "{st:?}");
        assert_eq!(s.anomalies(), Default::default());
    }
    drop(steering);
}
