//! AF_XDP socket tests in a private namespace pair (root only; skipped with a
//! printed reason otherwise).
//!
//! Run: `cargo test -p xdhcpd --test xsk_io -- --nocapture`

mod io_netns;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_netns::*;
use xdhcpd::io::xsk::{BindMode, Desc, TxPushError, XskConfig, XskSocket};

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
    if !root_or_skip("xsk_tx_1000_frames_and_ownership_returns") {
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
    if !root_or_skip("xsk_ownership_is_enforced") {
        return;
    }
    let pair = NetnsPair::new("o").expect("create namespace pair");
    let _ns = InNetns::enter(&pair.srv).expect("enter server netns");
    let mut c = cfg(&pair.srv_if);
    c.frame_count = 256;
    c.tx_frames = 4;
    c.ring_size = 64;
    c.mode = BindMode::Copy;
    let mut xsk = XskSocket::open(&c).expect("open AF_XDP socket");
    assert_eq!(xsk.bound_mode(), BindMode::Copy);

    // The tx pool is the last 4 frames.
    let mut got = Vec::new();
    while let Some(a) = xsk.alloc_tx_frame() {
        got.push(a);
    }
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|a| a.is_multiple_of(2048) && *a >= 252 * 2048));
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
    if !root_or_skip("xsk_bind_errors_name_interface_and_queue") {
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
    if let Ok(s) = XskSocket::open(&c) {
        eprintln!("note: veth accepted zero-copy ({:?})", s.bound_mode());
        return;
    }
    c.mode = BindMode::Auto;
    let s = XskSocket::open(&c).expect("auto falls back to copy");
    assert_eq!(s.bound_mode(), BindMode::Copy);
}
