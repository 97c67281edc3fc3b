//! Configuration tests: the examples parse, bad inputs name file:line:col and
//! field, and options are encoded to the exact bytes.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Parses `text` as `t.toml` and returns the error lines (empty if it parsed).
fn error_lines(text: &str) -> Vec<String> {
    match parse(text, "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

const SERVER: &str = "[server]\ninterface = \"eth0\"\n\n";

#[test]
fn demo_example_parses() {
    let cfg = parse(DEMO_CONFIG, "demo.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.server.interface, "xd-srv0");
    assert_eq!(cfg.server.io, IoMode::Auto);
    assert_eq!(cfg.server.xdp_mode, XdpModeCfg::Auto);
    assert_eq!(cfg.server.queues, QueueSel::All);
    assert_eq!(cfg.server.server_id, Some(ip("10.77.0.1")));
    assert_eq!(cfg.server.commit, CommitMode::Ack);
    assert_eq!(cfg.lease, LeaseTimes::default());
    assert_eq!(cfg.subnets.len(), 1);
    let s = &cfg.subnets[0];
    assert_eq!(s.net.to_string(), "10.77.0.0/16");
    assert_eq!(
        s.pools,
        vec![Pool {
            id: 0,
            first: ip("10.77.1.0"),
            last: ip("10.77.250.255")
        }]
    );
    // Enough for 100k perfdhcp exchanges with address reuse.
    assert_eq!(s.pools[0].size(), 250 * 256);
    assert_eq!(s.options.get(1), Some(&[255, 255, 0, 0][..]));
    assert_eq!(s.options.get(3), Some(&[10, 77, 0, 1][..]));
    assert_eq!(s.options.get(6), Some(&[10, 77, 0, 1][..]));
    assert_eq!(s.options.get(15), Some(&b"demo.xdhcpd"[..]));
    assert_eq!(s.options.get(28), Some(&[10, 77, 255, 255][..]));
    assert_eq!(s.options.get(42), Some(&[10, 77, 0, 1][..]));
    assert_eq!(
        s.options.codes().collect::<Vec<_>>(),
        vec![1, 3, 6, 15, 28, 42]
    );
    assert_eq!(
        cfg.pool_specs(),
        vec![(0, ip("10.77.1.0"), ip("10.77.250.255"))]
    );
    assert_eq!(cfg.subnet_for(ip("10.77.0.1")).map(|s| s.index), Some(0));
    assert!(cfg.subnet_for(ip("10.78.0.1")).is_none());
}

#[test]
fn relay_example_parses_and_selects_by_giaddr() {
    let cfg = parse(RELAY_CONFIG, "relay.toml").unwrap_or_else(|e| panic!("{e}"));
    // A standalone server: every lease on disk before its ACK.
    assert_eq!(cfg.server.commit, CommitMode::Ack);
    assert_eq!(cfg.subnets.len(), 2);
    // giaddr inside a cidr, giaddr listed in relay-addresses, and neither.
    assert_eq!(cfg.subnet_for(ip("10.10.0.1")).map(|s| s.index), Some(0));
    assert_eq!(cfg.subnet_for(ip("10.10.3.200")).map(|s| s.index), Some(0));
    assert_eq!(cfg.subnet_for(ip("198.51.100.7")).map(|s| s.index), Some(1));
    assert_eq!(cfg.subnet_for(ip("10.20.0.1")).map(|s| s.index), Some(1));
    assert!(cfg.subnet_for(ip("198.51.100.8")).is_none());
    assert!(cfg.subnet_for(ip("10.10.4.0")).is_none());

    let ids: Vec<u32> = cfg.pool_specs().iter().map(|p| p.0).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert_eq!(
        cfg.pool(2).map(|(s, p)| (s.index, p.first)),
        Some((1, ip("10.20.0.100")))
    );
    assert_eq!(cfg.pool_of(ip("10.10.2.7")).map(|(_, p)| p.id), Some(1));
    assert!(cfg.pool_of(ip("10.10.0.5")).is_none());

    let a = &cfg.subnets[0];
    assert_eq!(a.times.default, 7200);
    assert_eq!(
        a.reservations,
        vec![Reservation {
            key: ReservationKey::Hw([2, 0, 0, 0, 0x0a, 1]),
            ip: ip("10.10.0.5"),
            group: None,
        }]
    );
    assert_eq!(a.options.get(6), Some(&[192, 0, 2, 53, 192, 0, 2, 54][..]));

    let b = &cfg.subnets[1];
    // Per-subnet overrides merged over [lease].
    assert_eq!(
        (b.times.min, b.times.default, b.times.max),
        (300, 1800, 3600)
    );
    assert_eq!(b.relay_addresses, vec![ip("198.51.100.7")]);
    assert_eq!(b.next_server, Some(ip("192.0.2.69")));
    assert_eq!(b.boot_file.as_deref(), Some("cm.cfg"));
    assert_eq!(b.options.get(67), Some(&b"cm.cfg"[..]));
    assert_eq!(b.options.get(66), Some(&b"192.0.2.69"[..]));
    assert_eq!(b.options.get(2), Some(&3600i32.to_be_bytes()[..]));
    assert_eq!(b.options.get(43), Some(&[1, 4, 192, 0, 2, 0x45][..]));
    assert_eq!(b.options.get(150), Some(&[192, 0, 2, 69][..]));
    assert_eq!(b.options.get(1), Some(&[255, 255, 255, 0][..]));
    assert_eq!(
        b.reservations[0].key,
        ReservationKey::ClientId(vec![1, 2, 0, 0, 0, 0x14, 1])
    );
}

#[test]
fn option_encoding_is_exact() {
    let text = format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\n\
         router = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\"]\n\
         domain-name = \"example.org\"\n\
         broadcast-address = \"10.0.0.254\"\n\
         time-offset = -18000\n\
         log-servers = [\"192.0.2.1\"]\n\
         ntp-servers = []\n\
         options = [\n\
           {{ code = 43, hex = \"01020304\" }},\n\
           {{ code = 60, text = \"x\" }},\n\
           {{ code = 150, ip = [\"1.2.3.4\", \"5.6.7.8\"] }},\n\
           {{ code = 23, u8 = 64 }},\n\
           {{ code = 26, u16 = 1500 }},\n\
           {{ code = 35, u32 = 4294967295 }},\n\
           {{ code = 80, hex = \"\" }},\n\
         ]\n"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let o = &cfg.subnets[0].options;
    // Three routers: 4 bytes each.
    assert_eq!(o.get(3), Some(&[10, 0, 0, 1, 10, 0, 0, 2, 10, 0, 0, 3][..]));
    assert_eq!(o.get_tlv(3).map(|t| &t[..2]), Some(&[3, 12][..]));
    assert_eq!(o.get(15), Some(&b"example.org"[..]));
    assert_eq!(o.get(28), Some(&[10, 0, 0, 254][..]));
    assert_eq!(o.get(2), Some(&[0xff, 0xff, 0xb9, 0xb0][..]));
    assert_eq!(o.get(7), Some(&[192, 0, 2, 1][..]));
    // An empty list means "do not send".
    assert_eq!(o.get(42), None);
    assert_eq!(o.get(43), Some(&[1, 2, 3, 4][..]));
    assert_eq!(o.get(60), Some(&b"x"[..]));
    assert_eq!(o.get(150), Some(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
    assert_eq!(o.get(23), Some(&[64][..]));
    assert_eq!(o.get(26), Some(&[0x05, 0xdc][..]));
    assert_eq!(o.get(35), Some(&[0xff; 4][..]));
    assert_eq!(o.get_tlv(80), Some(&[80, 0][..]));
    assert_eq!(
        o.codes().collect::<Vec<_>>(),
        vec![1, 2, 3, 7, 15, 23, 26, 28, 35, 43, 60, 80, 150]
    );
    let mut out = Vec::new();
    o.append_requested(&[1, 3, 15], &mut out);
    let mut want = vec![
        1, 4, 255, 255, 255, 0, 3, 12, 10, 0, 0, 1, 10, 0, 0, 2, 10, 0, 0, 3, 15, 11,
    ];
    want.extend_from_slice(b"example.org");
    assert_eq!(out, want);
}

#[test]
fn defaults_when_keys_are_omitted() {
    let cfg = parse(
        &format!("{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.server.io, IoMode::Auto);
    assert_eq!(cfg.server.queues, QueueSel::All);
    assert_eq!(cfg.server.server_id, None);
    assert_eq!(
        cfg.server.lease_file,
        std::path::PathBuf::from("/var/lib/xdhcpd/leases.db")
    );
    assert_eq!(cfg.server.commit, CommitMode::Ack);
    assert_eq!(cfg.server.commit_min_gap, Duration::ZERO);
    assert_eq!(cfg.server.commit_coalesce, Duration::from_micros(200));
    assert_eq!(cfg.server.commit_coalesce_max, Duration::from_micros(1000));
    assert_eq!(cfg.server.ebpf_object, None);
    assert_eq!(cfg.lease, LeaseTimes::default());
    assert!(cfg.subnets[0].pools.is_empty());
    assert_eq!(
        cfg.subnets[0].options.codes().collect::<Vec<_>>(),
        vec![1, 28]
    );
    assert_eq!(cfg.source, std::path::PathBuf::from("t.toml"));
}

#[test]
fn server_keywords() {
    let text = "[server]\ninterface = \"eth0\"\nio = \"udp\"\nxdp-mode = \"skb\"\nqueues = 2\n\
                commit = \"interval:250\"\nebpf-object = \"/x/prog.o\"\ncontrol-socket = \"/run/x.sock\"\n\
                [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let cfg = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.server.io, IoMode::Udp);
    assert_eq!(cfg.server.xdp_mode, XdpModeCfg::Skb);
    assert_eq!(cfg.server.queues, QueueSel::First(2));
    assert_eq!(
        cfg.server.commit,
        CommitMode::Interval(Duration::from_millis(250))
    );
    assert_eq!(
        cfg.server.ebpf_object.as_deref(),
        Some(std::path::Path::new("/x/prog.o"))
    );
    assert_eq!(
        cfg.server.control_socket.as_deref(),
        Some(std::path::Path::new("/run/x.sock"))
    );
}

#[test]
fn sched_worker_slice_and_background_nice_parse_and_errors_are_positioned() {
    let sub = "[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let cfg = parse(&format!("[server]\ninterface = \"eth0\"\n{sub}"), "t.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.server.worker_slice, Duration::from_micros(100));
    assert_eq!(cfg.server.background_nice, 10);
    for (text, slice, nice) in [
        ("worker-slice-us = 0\nbackground-nice = 0", 0, 0),
        ("worker-slice-us = 100\nbackground-nice = 19", 100, 19),
        ("worker-slice-us = 100000\nbackground-nice = 5", 100_000, 5),
    ] {
        let cfg = parse(
            &format!("[server]\ninterface = \"eth0\"\n{text}\n{sub}"),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.server.worker_slice,
            Duration::from_micros(slice),
            "{text}"
        );
        assert_eq!(cfg.server.background_nice, nice, "{text}");
    }
    for (text, want) in [
        (
            "worker-slice-us = 50",
            "t.toml:3:19: server.worker-slice-us: 50 is out of range: must be 0 or 100..=100000 (µs)",
        ),
        (
            "worker-slice-us = 100001",
            "t.toml:3:19: server.worker-slice-us: 100001 is out of range: must be 0 or 100..=100000 (µs)",
        ),
        (
            "background-nice = 20",
            "t.toml:3:19: server.background-nice: 20 is out of range: must be 0..=19",
        ),
        (
            "background-nice = -5",
            "t.toml:3:19: server.background-nice: -5 is out of range: must be 0..=19",
        ),
    ] {
        assert_eq!(
            error_lines(&format!("[server]\ninterface = \"eth0\"\n{text}\n{sub}")),
            vec![want.to_string()],
            "{text}"
        );
    }
}

#[test]
fn commit_min_gap_key_parses_and_errors_are_positioned() {
    let sub = "[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    for (v, us) in [("0", 0), ("250", 250), ("100000", 100_000)] {
        let cfg = parse(
            &format!("[server]\ninterface = \"eth0\"\ncommit-min-gap-us = {v}\n{sub}"),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.server.commit_min_gap, Duration::from_micros(us));
    }
    for (text, want) in [
        (
            "commit-min-gap-us = 100001",
            "t.toml:3:21: server.commit-min-gap-us: 100001 is out of range: must be 0..=100000 (µs)",
        ),
        (
            "commit-min-gap-us = -1",
            "t.toml:3:21: server.commit-min-gap-us: -1 is out of range: must be 0..=100000 (µs)",
        ),
        (
            "commit = \"interval:10\"\ncommit-min-gap-us = 500",
            "t.toml:4:21: server.commit-min-gap-us: `commit-min-gap-us` applies to `commit = \"ack\"` only (interval mode has no group commits)",
        ),
    ] {
        assert_eq!(
            error_lines(&format!("[server]\ninterface = \"eth0\"\n{text}\n{sub}")),
            vec![want.to_string()],
            "{text}"
        );
    }
}

#[test]
fn commit_coalesce_max_key_parses_and_errors_are_positioned() {
    let sub = "[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    for (text, base, max) in [
        ("commit-coalesce-max-us = 0\ncommit-coalesce-us = 0", 0, 0),
        ("commit-coalesce-max-us = 200", 200, 200),
        ("commit-coalesce-max-us = 10000", 200, 10_000),
        (
            "commit-coalesce-us = 300\ncommit-coalesce-max-us = 2000",
            300,
            2000,
        ),
        // Not given: 1000, or the base when that is longer.
        ("commit-coalesce-us = 5000", 5000, 5000),
        ("commit-coalesce-us = 0", 0, 1000),
    ] {
        let cfg = parse(
            &format!("[server]\ninterface = \"eth0\"\n{text}\n{sub}"),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            cfg.server.commit_coalesce,
            Duration::from_micros(base),
            "{text}"
        );
        assert_eq!(
            cfg.server.commit_coalesce_max,
            Duration::from_micros(max),
            "{text}"
        );
    }
    for (text, want) in [
        (
            "commit-coalesce-max-us = 10001",
            "t.toml:3:26: server.commit-coalesce-max-us: 10001 is out of range: must be 0..=10000 (µs)",
        ),
        (
            "commit-coalesce-max-us = 100",
            "t.toml:3:26: server.commit-coalesce-max-us: 100 is below `commit-coalesce-us` (200): the longest coalescing wait cannot be shorter than the shortest",
        ),
        (
            "commit = \"interval:10\"\ncommit-coalesce-max-us = 100",
            "t.toml:4:26: server.commit-coalesce-max-us: `commit-coalesce-max-us` applies to `commit = \"ack\"` only (interval mode has no group commits)",
        ),
    ] {
        assert_eq!(
            error_lines(&format!("[server]\ninterface = \"eth0\"\n{text}\n{sub}")),
            vec![want.to_string()],
            "{text}"
        );
    }
}

#[test]
fn commit_coalesce_key_parses_and_errors_are_positioned() {
    let sub = "[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    for (v, us) in [("0", 0), ("150", 150), ("10000", 10_000)] {
        let cfg = parse(
            &format!("[server]\ninterface = \"eth0\"\ncommit-coalesce-us = {v}\n{sub}"),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.server.commit_coalesce, Duration::from_micros(us));
    }
    for (text, want) in [
        (
            "commit-coalesce-us = 10001",
            "t.toml:3:22: server.commit-coalesce-us: 10001 is out of range: must be 0..=10000 (µs)",
        ),
        (
            "commit = \"interval:10\"\ncommit-coalesce-us = 100",
            "t.toml:4:22: server.commit-coalesce-us: `commit-coalesce-us` applies to `commit = \"ack\"` only (interval mode has no group commits)",
        ),
    ] {
        assert_eq!(
            error_lines(&format!("[server]\ninterface = \"eth0\"\n{text}\n{sub}")),
            vec![want.to_string()],
            "{text}"
        );
    }
}

#[test]
fn server_user_and_group_privilege_keys() {
    let text = "[server]\ninterface = \"eth0\"\nuser = \"xdhcpd\"\ngroup = \"dhcp\"\n\
                [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let cfg = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let user = cfg.server.user.expect("user");
    assert_eq!(user.name, "xdhcpd");
    // Kept for the daemon's "no such user" error: line 3, column 8 (the value).
    assert_eq!(user.position, crate::Position { line: 3, column: 8 });
    assert_eq!(cfg.server.group.expect("group").name, "dhcp");

    let none = parse(
        "[server]\ninterface = \"eth0\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n",
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(none.server.user.is_none() && none.server.group.is_none());

    let err = parse(
        "[server]\ninterface = \"eth0\"\ngroup = \"dhcp\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n",
        "t.toml",
    )
    .expect_err("group without user");
    assert_eq!(
        err.to_string(),
        "t.toml:3:9: server.group: `group` needs `user`: the group is switched together with \
         the user"
    );
    for bad in ["", "a:b", "a b", "-x", "../etc"] {
        let text = format!(
            "[server]\ninterface = \"eth0\"\nuser = \"{bad}\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n"
        );
        let err = parse(&text, "t.toml").expect_err(bad);
        assert!(
            err.to_string().starts_with("t.toml:3:8: server.user: ")
                && err.to_string().contains("is not an account name"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn lease_time_helpers() {
    let t = LeaseTimes::default();
    assert_eq!(t.lease_for(None), 3600);
    assert_eq!(t.lease_for(Some(10)), 60);
    assert_eq!(t.lease_for(Some(1_000_000)), 86400);
    assert_eq!(t.lease_for(Some(7200)), 7200);
    assert_eq!(t.t1(3600), 1800);
    assert_eq!(t.t2(3600), 3150);
}

/// Each bad input and the exact error line(s) it must produce.
#[test]
fn bad_inputs_are_reported_with_position_and_field() {
    let sub = "[[subnet]]\ncidr = \"10.0.1.0/24\"\n"; // lines 4-5 after SERVER
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("{SERVER}{sub}[[subnet.pool]]\nrange = \"10.0.1.10-10.0.1.300\"\n"),
            vec!["t.toml:7:9: subnet[0].pool[0].range: 10.0.1.300 is not an IPv4 address"],
        ),
        (
            format!("{SERVER}{sub}router = [\"10.0.1.1\", \"10.0.1\"]\n"),
            vec!["t.toml:6:23: subnet[0].router[1]: 10.0.1 is not an IPv4 address"],
        ),
        (
            format!(
                "{SERVER}{sub}[[subnet.pool]]\nrange = \"10.0.1.10-10.0.1.100\"\n\
                 [[subnet.pool]]\nrange = \"10.0.1.50-10.0.1.60\"\n"
            ),
            vec!["t.toml:9:9: subnet[0].pool[1].range: 10.0.1.50-10.0.1.60 overlaps subnet[0].pool[0].range 10.0.1.10-10.0.1.100 (line 7)"],
        ),
        (
            format!("{SERVER}{sub}[[subnet.pool]]\nrange = \"10.9.0.10-10.9.0.20\"\n"),
            vec!["t.toml:7:9: subnet[0].pool[0].range: range 10.9.0.10-10.9.0.20 is outside subnet 10.0.1.0/24"],
        ),
        (
            format!("{SERVER}{sub}[[subnet.pool]]\nrange = \"10.0.1.20 - 10.0.1.10\"\n"),
            vec!["t.toml:7:9: subnet[0].pool[0].range: range 10.0.1.20-10.0.1.10 is empty: first is above last"],
        ),
        (
            format!("{SERVER}{sub}[[subnet.pool]]\nrange = \"10.0.1.0-10.0.1.10\"\n"),
            vec!["t.toml:7:9: subnet[0].pool[0].range: range 10.0.1.0-10.0.1.10 includes the network address 10.0.1.0"],
        ),
        (
            format!("{SERVER}[lease]\nmin-time = 7200\n\n{sub}"),
            vec!["t.toml:5:12: lease.min-time: min-time 7200 is greater than default-time 3600"],
        ),
        (
            format!("{SERVER}[lease]\nmax-time = 600\n\n{sub}"),
            vec!["t.toml:5:12: lease.max-time: default-time 3600 is greater than max-time 600"],
        ),
        (
            format!("{SERVER}[lease]\nrenewal-factor = 0.9\nrebinding-factor = 0.8\n{sub}"),
            vec!["t.toml:6:20: lease.rebinding-factor: rebinding-factor 0.8 must be greater than renewal-factor 0.9"],
        ),
        (
            format!("{SERVER}[lease]\nrenewal-factor = 1.5\n{sub}"),
            vec!["t.toml:5:18: lease.renewal-factor: 1.5 is out of range: must be between 0 and 1 (exclusive)"],
        ),
        (
            format!("{SERVER}[lease]\ndefault-time = 0\n{sub}"),
            vec!["t.toml:5:16: lease.default-time: 0 is out of range: must be between 1 and 2147483647 seconds"],
        ),
        (
            format!("{SERVER}{sub}min-time = 4000\n"),
            vec!["t.toml:6:12: subnet[0].min-time: min-time 4000 is greater than default-time 3600 (after merging with [lease])"],
        ),
        (
            format!("{SERVER}[lease]\ndefualt-time = 60\n{sub}"),
            vec!["t.toml:5:1: lease.defualt-time: unknown key `defualt-time`; did you mean `default-time`?"],
        ),
        (
            format!("[server]\nintreface = \"eth0\"\n{sub}"),
            vec![
                "t.toml:1:1: server: missing required key `interface` in `server`",
                "t.toml:2:1: server.intreface: unknown key `intreface`; did you mean `interface`?",
            ],
        ),
        (
            format!("{SERVER}{sub}colour = 1\n"),
            vec!["t.toml:6:1: subnet[0].colour: unknown key `colour`; expected one of: cidr, relay-addresses, router, dns-servers, domain-name, broadcast-address, ntp-servers, time-offset, log-servers, tftp-server, boot-file, next-server, default-time, min-time, max-time, renewal-factor, rebinding-factor, options, pool, reservation, backup-pct, backup-allocation-boundary, shared-network, deny-unknown, dynamic-bootp, reconfigure-retries, reconfigure-first-retry-ms, failover"],
        ),
        (
            format!("[server]\ninterface = \"eth0\"\ncommit = \"every:5\"\n{sub}"),
            vec!["t.toml:3:10: server.commit: `every:5` is not a commit mode: expected \"ack\" or \"interval:<ms>\" (1..=60000)"],
        ),
        (
            format!("[server]\ninterface = \"eth0\"\ncommit = \"interval:0\"\n{sub}"),
            vec!["t.toml:3:10: server.commit: commit interval 0 ms is out of range: must be 1..=60000"],
        ),
        (
            format!("[server]\ninterface = \"eth0\"\nio = \"xpd\"\n{sub}"),
            vec!["t.toml:3:6: server.io: `xpd` is not valid here; did you mean `xdp`?"],
        ),
        (
            format!("[server]\ninterface = \"eth0\"\nqueues = 0\n{sub}"),
            vec!["t.toml:3:10: server.queues: 0 is out of range: must be between 1 and 4096"],
        ),
        (
            format!("[server]\ninterface = \"a-very-long-interface\"\n{sub}"),
            vec!["t.toml:2:13: server.interface: interface name `a-very-long-interface` is longer than 15 bytes"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 53, u8 = 1 }}]\n"),
            vec!["t.toml:6:21: subnet[0].options[0].code: option 53 is managed by the server and cannot be configured"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 0, u8 = 1 }}, {{ code = 255, u8 = 1 }}]\n"),
            vec![
                "t.toml:6:21: subnet[0].options[0].code: 0 is out of range: must be between 1 and 254",
                "t.toml:6:43: subnet[0].options[1].code: 255 is out of range: must be between 1 and 254",
            ],
        ),
        (
            format!("{SERVER}{sub}router = [\"10.0.1.1\"]\noptions = [{{ code = 3, ip = [\"10.0.1.2\"] }}]\n"),
            vec!["t.toml:7:21: subnet[0].options[0].code: option 3 is already set by `router`"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 43, hex = \"01\" }}, {{ code = 43, u8 = 1 }}]\n"),
            vec!["t.toml:6:48: subnet[0].options[1].code: option 43 is already set by `options[0]`"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 43, hex = \"01\", text = \"a\" }}]\n"),
            vec!["t.toml:6:44: subnet[0].options[0].text: an option takes exactly one of: hex, text, ip, u8, u16, u32"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 43 }}]\n"),
            vec!["t.toml:6:12: subnet[0].options[0]: an option needs exactly one of: hex, text, ip, u8, u16, u32"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 43, hex = \"0g\" }}]\n"),
            vec!["t.toml:6:31: subnet[0].options[0].hex: `0g` is not hex: `0g` is not a hex byte"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 60, text = \"{}\" }}]\n", "a".repeat(256)),
            vec!["t.toml:6:32: subnet[0].options[0].text: is 256 bytes long; the limit is 255"],
        ),
        (
            format!("{SERVER}{sub}options = [{{ code = 23, u8 = 256 }}]\n"),
            vec!["t.toml:6:30: subnet[0].options[0].u8: 256 is out of range: must be 0..=255"],
        ),
        (
            format!(
                "{SERVER}{sub}[[subnet.reservation]]\nhw = \"aa:bb:cc:dd:ee:ff\"\nip = \"10.0.1.5\"\n\
                 [[subnet.reservation]]\nhw = \"AA:BB:CC:DD:EE:FF\"\nip = \"10.0.1.5\"\n"
            ),
            vec![
                "t.toml:10:6: subnet[0].reservation[1].hw: duplicate reservation: hw aa:bb:cc:dd:ee:ff is already reserved at subnet[0].reservation[0].hw (line 7)",
                "t.toml:11:6: subnet[0].reservation[1].ip: duplicate reservation: 10.0.1.5 is already reserved at subnet[0].reservation[0].ip (line 8)",
            ],
        ),
        (
            format!("{SERVER}{sub}[[subnet.reservation]]\nhw = \"aa:bb:cc:dd:ee\"\nip = \"10.0.2.5\"\n"),
            vec![
                "t.toml:7:6: subnet[0].reservation[0].hw: `aa:bb:cc:dd:ee` is not a 6-byte hardware address",
                "t.toml:8:6: subnet[0].reservation[0].ip: 10.0.2.5 is outside subnet 10.0.1.0/24",
            ],
        ),
        (
            format!("{SERVER}[[subnet]]\ncidr = \"10.0.1.5/24\"\n"),
            vec!["t.toml:5:8: subnet[0].cidr: 10.0.1.5/24 has host bits set; did you mean 10.0.1.0/24?"],
        ),
        (
            format!("{SERVER}{sub}[[subnet]]\ncidr = \"10.0.0.0/16\"\n"),
            vec!["t.toml:7:8: subnet[1].cidr: 10.0.0.0/16 overlaps subnet[0].cidr 10.0.1.0/24 (line 5)"],
        ),
        (
            format!("{SERVER}{sub}[[subnet]]\ncidr = \"10.0.2.0/24\"\nrelay-addresses = [\"10.0.1.1\"]\n"),
            vec!["t.toml:8:20: subnet[1].relay-addresses[0]: 10.0.1.1 is inside subnet[0] (10.0.1.0/24), so it already selects that subnet"],
        ),
        (
            format!("{SERVER}[[subnet]]\ncidr = \"10.0.0.0/7\"\n[[subnet.pool]]\nrange = \"10.0.0.1-10.255.255.254\"\n"),
            // Just under the 2^24 limit: accepted.
            vec![],
        ),
        (
            format!("{SERVER}[[subnet]]\ncidr = \"10.0.0.0/7\"\n[[subnet.pool]]\nrange = \"10.0.0.1-11.0.0.1\"\n"),
            vec!["t.toml:7:9: subnet[0].pool[0].range: range 10.0.0.1-11.0.0.1 has 16777217 addresses; a pool may hold at most 16777216 (2^24), split it"],
        ),
        (
            format!("[server]\ninterface = \"eth0\"\nserver-id = \"10.0.1.7\"\n{sub}[[subnet.pool]]\nrange = \"10.0.1.5-10.0.1.9\"\n"),
            vec!["t.toml:7:9: subnet[0].pool[0].range: range 10.0.1.5-10.0.1.9 includes the server address 10.0.1.7"],
        ),
        (
            format!("{SERVER}[subnet]\ncidr = \"10.0.1.0/24\"\n"),
            vec!["t.toml:4:1: subnet: expected an array of tables: write [[subnet]], not [subnet]"],
        ),
        (
            format!("{SERVER}{sub}[subnet.pool]\nrange = \"10.0.1.10-10.0.1.20\"\n"),
            vec!["t.toml:6:1: subnet[0].pool: expected an array of tables: write [[subnet.pool]], not [subnet.pool]"],
        ),
        (
            format!("{SERVER}{sub}domain-name = \"bad name\"\n"),
            vec!["t.toml:6:15: subnet[0].domain-name: `bad name` is not a valid domain name (bad label `bad name`)"],
        ),
        (
            format!("{SERVER}{sub}boot-file = \"{}\"\n", "b".repeat(128)),
            vec!["t.toml:6:13: subnet[0].boot-file: is 128 bytes long; the limit is 127"],
        ),
        (
            format!("{SERVER}{sub}router = \"10.0.1.1\"\n"),
            vec!["t.toml:6:10: subnet[0].router: expected an array, found a string"],
        ),
        (
            sub.to_string(),
            vec!["t.toml:1:1: missing required key `server` in the file"],
        ),
        (
            format!("subnet = []\n{SERVER}"),
            vec!["t.toml:1:10: subnet: at least one [[subnet]] is required"],
        ),
        (
            // A root key written after [server] belongs to [server].
            format!("{SERVER}subnet = []\n"),
            vec![
                "t.toml:1:1: missing required key `subnet` in the file",
                "t.toml:4:1: server.subnet: unknown key `subnet` (keys after the [server] header belong to it; move it above)",
            ],
        ),
        (
            format!("{SERVER}{sub}renewal-factor = 0.9\n"),
            vec!["t.toml:6:18: subnet[0].renewal-factor: rebinding-factor 0.875 must be greater than renewal-factor 0.9 (after merging with [lease])"],
        ),
        (
            format!(
                "{SERVER}{sub}relay-addresses = [\"192.0.2.1\"]\n\
                 [[subnet]]\ncidr = \"10.0.2.0/24\"\nrelay-addresses = [\"192.0.2.1\"]\n"
            ),
            vec!["t.toml:9:20: subnet[1].relay-addresses[0]: relay address 192.0.2.1 is already listed at subnet[0].relay-addresses[0] (line 6)"],
        ),
        (
            format!(
                "{SERVER}{sub}[[subnet.reservation]]\nclient-id = \"01aabbccddeeff\"\nip = \"10.0.1.5\"\n\
                 [[subnet]]\ncidr = \"10.0.2.0/24\"\n\
                 [[subnet.reservation]]\nclient-id = \"01:aa:bb:cc:dd:ee:ff\"\nip = \"10.0.2.5\"\n"
            ),
            vec!["t.toml:12:13: subnet[1].reservation[0].client-id: duplicate reservation: client-id 01aabbccddeeff is already reserved at subnet[0].reservation[0].client-id (line 7)"],
        ),
        (
            format!("{SERVER}{sub}[[subnet.reservation]]\nip = \"10.0.1.5\"\n"),
            vec!["t.toml:6:1: subnet[0].reservation[0]: a reservation needs `hw` or `client-id`"],
        ),
        (
            SERVER.to_string(),
            vec!["t.toml:1:1: missing required key `subnet` in the file"],
        ),
        (
            format!("{SERVER}{sub}router = [\"10.0.1.1\",\n"),
            vec!["t.toml:6:22: syntax error: unclosed array, expected `]`"],
        ),
    ];
    let mut failures = Vec::new();
    for (text, want) in cases {
        let got = error_lines(&text);
        if got != want {
            failures.push(format!("input:\n{text}\n  got:  {got:?}\n  want: {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_semantic_errors_are_reported_together() {
    let text = "\
[server]
interface = \"eth0\"
commit = \"sometimes\"

[lease]
min-time = 9000

[[subnet]]
cidr = \"10.0.1.0/24\"
options = [{ code = 54, ip = [\"10.0.1.1\"] }]
[[subnet.pool]]
range = \"10.0.1.10-10.0.1.300\"
[[subnet.pool]]
range = \"10.0.2.10-10.0.2.20\"
[[subnet.reservation]]
hw = \"02:00:00:00:00:01\"
ip = \"10.0.1.5\"
[[subnet.reservation]]
hw = \"02:00:00:00:00:01\"
ip = \"10.0.1.6\"
";
    let err = parse(text, "multi.toml").unwrap_err();
    let want = "\
multi.toml:3:10: server.commit: `sometimes` is not a commit mode: expected \"ack\" or \"interval:<ms>\" (1..=60000)
multi.toml:6:12: lease.min-time: min-time 9000 is greater than default-time 3600
multi.toml:10:21: subnet[0].options[0].code: option 54 is managed by the server and cannot be configured
multi.toml:12:9: subnet[0].pool[0].range: 10.0.1.300 is not an IPv4 address
multi.toml:14:9: subnet[0].pool[1].range: range 10.0.2.10-10.0.2.20 is outside subnet 10.0.1.0/24
multi.toml:19:6: subnet[0].reservation[1].hw: duplicate reservation: hw 02:00:00:00:00:01 is already reserved at subnet[0].reservation[0].hw (line 16)";
    assert_eq!(err.to_string(), want);
    assert_eq!(err.len(), 6);
    assert!(err
        .iter()
        .all(|e| e.file == "multi.toml" && e.position.is_some()));
}

#[test]
fn load_names_the_path() {
    let dir = std::env::temp_dir().join(format!("xdhcpd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, DEMO_CONFIG).unwrap();
    let cfg = load(&good).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.source, good);

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\ninterface = 3\n[[subnet]]\ncidr = \"10.0.0.0/8\"\n",
    )
    .unwrap();
    let err = load(&bad).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:2:13: server.interface: expected a string, found an integer",
            bad.display()
        )
    );

    let missing = dir.join("missing.toml");
    let err = load(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: cannot read configuration: ",
            missing.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Every prefix of the examples (cut at each character) must give a config or
/// errors with positions inside the text, never a panic.
#[test]
fn truncated_inputs_never_panic() {
    for src in [DEMO_CONFIG, RELAY_CONFIG] {
        let lines = src.lines().count() + 1;
        for (cut, _) in src.char_indices() {
            if let Err(e) = parse(&src[..cut], "cut.toml") {
                assert!(!e.is_empty());
                for err in &e {
                    let p = err.position.unwrap();
                    assert!(p.line >= 1 && p.line <= lines && p.column >= 1, "{err}");
                }
            }
        }
    }
}

const SUBNET: &str =
    "[[subnet]]\ncidr = \"10.0.0.0/24\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n\n";

#[test]
fn failover_section_defaults_and_values() {
    let text = format!(
        "{SERVER}[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"10.88.0.1\"\npeer-address = \"10.88.0.2\"\nsplit = 128\nmclt = 600\nauth-key-file = \"/etc/xdhcpd/fo.key\"\n\n{SUBNET}"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let f = cfg.failovers.into_iter().next().expect("failover section");
    assert_eq!(f.role, FailoverRole::Primary);
    assert_eq!(f.name, "pair");
    assert_eq!(f.port, 647);
    assert_eq!(f.peer_port, 647);
    assert_eq!(f.mclt, 600);
    assert_eq!(f.partner_software, PartnerSoftware::Xdhcpd);
    assert_eq!(
        f.auth_key_file.as_deref(),
        Some(std::path::Path::new("/etc/xdhcpd/fo.key"))
    );
    // The MCLT bounds default around the configured MCLT.
    assert_eq!((f.partner_mclt_min, f.partner_mclt_max), (300, 86_400));
    assert_eq!(f.split, Some(128));
    assert_eq!(f.poll_interval, 10);
    assert_eq!(f.poll_timeout, 60);
    assert!(f.use_safe_period);
    assert_eq!(f.safe_period, 4 * 3600);
    assert_eq!(f.backup_pct, 50);
    assert_eq!(f.failover_recover, None);
    let none = parse(&format!("{SERVER}{SUBNET}"), "t.toml").unwrap();
    assert!(none.failovers.is_empty());
}

#[test]
fn failover_section_errors_are_positioned() {
    let text = format!(
        "{SERVER}[failover]\nrole = \"boss\"\nname = \"pair\"\naddress = \"10.88.0.1\"\npeer-address = \"10.88.0.1\"\npoll-interval = 30\npoll-timeout = 20\nsplitt = 3\n\n{SUBNET}"
    );
    let lines = error_lines(&text);
    let joined = lines.join("\n");
    assert!(
        joined.contains("t.toml:5:8: failover.role: \"boss\" is not a role"),
        "{joined}"
    );
    assert!(
        joined.contains("failover.peer-address: peer-address must differ from address"),
        "{joined}"
    );
    assert!(
        joined.contains("failover.poll-timeout: poll-timeout 20 must exceed poll-interval 30"),
        "{joined}"
    );
    assert!(
        joined.contains("unknown key `splitt`; did you mean `split`?"),
        "{joined}"
    );
    let missing = error_lines(&format!(
        "{SERVER}[failover]\nrole = \"secondary\"\n\n{SUBNET}"
    ));
    assert!(
        missing
            .iter()
            .any(|l| l.contains("missing required key `name`")),
        "{missing:?}"
    );
    assert!(
        missing
            .iter()
            .any(|l| l.contains("missing required key `peer-address`")),
        "{missing:?}"
    );
}

const FAILOVER_PRIMARY: &str = "[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"10.88.0.1\"\npeer-address = \"10.88.0.2\"\nbackup-pct = 30\npartner-software = \"isc-dhcpd\"\n\n";

#[test]
fn scope_balance_values_override_per_pool() {
    let text = format!(
        "{SERVER}{FAILOVER_PRIMARY}[[subnet]]\ncidr = \"10.0.0.0/24\"\nbackup-pct = 20\nbackup-allocation-boundary = \"10.0.0.15\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n\n[[subnet]]\ncidr = \"10.0.1.0/24\"\n[[subnet.pool]]\nrange = \"10.0.1.10-10.0.1.20\"\n"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.subnets[0].backup_pct, Some(20));
    assert_eq!(
        cfg.subnets[0].backup_allocation_boundary,
        Some(ip("10.0.0.15"))
    );
    let f = cfg.failovers.into_iter().next().expect("failover");
    assert_eq!(f.backup_pct, 30);
    assert_eq!(
        f.pools,
        vec![
            PoolBalanceCfg {
                pool_id: 0,
                backup_pct: Some(20),
                boundary: Some(ip("10.0.0.15")),
                dynamic_bootp: false,
            },
            PoolBalanceCfg {
                pool_id: 1,
                backup_pct: None,
                boundary: None,
                dynamic_bootp: false,
            },
        ]
    );
}

#[test]
fn scope_balance_errors_are_positioned() {
    let text = format!(
        "{SERVER}{FAILOVER_PRIMARY}[[subnet]]\ncidr = \"10.0.0.0/24\"\nbackup-pct = 101\nbackup-allocation-boundary = \"10.0.0.30\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n"
    );
    let joined = error_lines(&text).join("\n");
    assert!(
        joined.contains("t.toml:14:14: subnet[0].backup-pct: 101 is out of range"),
        "{joined}"
    );
    assert!(
        joined.contains(
            "t.toml:15:30: subnet[0].backup-allocation-boundary: 10.0.0.30 is outside the subnet's pools (10.0.0.10-10.0.0.20)"
        ),
        "{joined}"
    );
    let bad_ip = format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\nbackup-allocation-boundary = \"ten\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n"
    );
    let joined = error_lines(&bad_ip).join("\n");
    assert!(
        joined.contains("subnet[0].backup-allocation-boundary"),
        "{joined}"
    );
}

#[test]
fn relay_trust_defaults_to_what_the_subnets_imply() {
    // The example lists its relays; without the list, the subnets imply them.
    let cfg = parse(RELAY_CONFIG, "relay.toml").unwrap_or_else(|e| panic!("{e}"));
    let listed: Vec<String> = cfg.trusted_relays().iter().map(|n| n.to_string()).collect();
    assert_eq!(listed, ["10.10.0.1/32", "198.51.100.7/32"]);
    let lq: Vec<String> = cfg
        .leasequery_allow()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(lq, listed);
    let line = "trusted-relays = [\"10.10.0.1\", \"198.51.100.7\"]\n";
    assert!(RELAY_CONFIG.contains(line));
    let lq_line = "leasequery-allow = [\"10.10.0.1\", \"198.51.100.7\"]\n";
    assert!(RELAY_CONFIG.contains(lq_line));
    let implied = RELAY_CONFIG.replace(line, "").replace(lq_line, "");
    let cfg = parse(&implied, "relay.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.server.trusted_relays, None);
    assert_eq!(cfg.server.untrusted_relay_info, UntrustedRelayInfo::Drop);
    assert_eq!(cfg.server.leasequery_allow, None);
    let want: Vec<String> = ["10.10.0.0/22", "10.20.0.0/24", "198.51.100.7/32"]
        .map(String::from)
        .to_vec();
    let got: Vec<String> = cfg.trusted_relays().iter().map(|n| n.to_string()).collect();
    assert_eq!(got, want);
    let lq: Vec<String> = cfg
        .leasequery_allow()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(lq, want, "leasequery-allow defaults to the trusted relays");
}

#[test]
fn leasequery_acl_key_parses_and_errors_are_positioned() {
    let text =
        "[server]\ninterface = \"eth0\"\nleasequery-allow = [\"192.0.2.10\", \"10.1.0.0/16\"]\n\
                [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let cfg = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let lq: Vec<String> = cfg
        .leasequery_allow()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(lq, ["192.0.2.10/32", "10.1.0.0/16"]);
    let lines = |t: &str| {
        error_lines(&format!(
            "[server]\ninterface = \"eth0\"\n{t}\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n"
        ))
    };
    assert!(
        lines("leasequery-allow = []").is_empty(),
        "an empty list: nobody"
    );
    assert_eq!(
        lines("leasequery-allow = \"10.0.0.1\""),
        ["t.toml:3:20: server.leasequery-allow: expected an array, found a string"]
    );
    assert_eq!(
        lines("leasequery-allow = [\"10.0.0.x\"]"),
        ["t.toml:3:21: server.leasequery-allow[0]: 10.0.0.x is not an IPv4 address or network"]
    );
}

#[test]
fn relay_trust_keys_parse() {
    let text =
        "[server]\ninterface = \"eth0\"\ntrusted-relays = [\"192.0.2.7\", \"198.51.100.0/24\"]\n\
                untrusted-relay-info = \"strip\"\n\
                [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let cfg = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let relays: Vec<String> = cfg.trusted_relays().iter().map(|n| n.to_string()).collect();
    assert_eq!(relays, ["192.0.2.7/32", "198.51.100.0/24"]);
    assert_eq!(cfg.server.untrusted_relay_info, UntrustedRelayInfo::Strip);
}

#[test]
fn relay_trust_errors_are_positioned() {
    let text = "[server]\ninterface = \"eth0\"\ntrusted-relays = [\"192.0.2.300\", \"10.0.0.1/24\", \"0.0.0.0\"]\n\
                untrusted-relay-info = \"keep\"\n\
                [[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    assert_eq!(
        error_lines(text),
        vec![
            "t.toml:3:19: server.trusted-relays[0]: 192.0.2.300 is not an IPv4 address or network",
            "t.toml:3:34: server.trusted-relays[1]: 10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?",
            "t.toml:3:49: server.trusted-relays[2]: 0.0.0.0 is no relay agent's address (giaddr 0 means not relayed)",
            "t.toml:4:24: server.untrusted-relay-info: `keep` is not one of: drop, strip",
        ]
    );
}

#[test]
fn registration_config_keys() {
    let text = "[server]\ninterface = \"eth0\"\nregistration-file = \"/var/lib/xdhcpd/regs\"\n\n\
         [[subnet]]\ncidr = \"10.0.0.0/24\"\ndeny-unknown = true\n\
         [[subnet]]\ncidr = \"10.1.0.0/24\"\n";
    let cfg = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.server.registration_file.as_deref(),
        Some(std::path::Path::new("/var/lib/xdhcpd/regs"))
    );
    assert!(cfg.subnets[0].deny_unknown);
    assert!(!cfg.subnets[1].deny_unknown);
    let bad = format!("{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\ndeny-unknown = \"yes\"\n");
    let e = error_lines(&bad);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:6:16: subnet[0].deny-unknown: expected true or false"),
        "{e:?}"
    );
    let bad = "[server]\ninterface = \"eth0\"\nregistration-file = \"\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let e = error_lines(bad);
    assert_eq!(
        e,
        vec!["t.toml:3:21: server.registration-file: expected a file path"]
    );
}

#[test]
fn failover_auth_key_is_required_for_an_xdhcpd_partner() {
    let text = format!(
        "{SERVER}[failover]\nrole = \"secondary\"\nname = \"pair\"\naddress = \"10.88.0.2\"\npeer-address = \"10.88.0.1\"\nmclt = 30\n\n{SUBNET}"
    );
    let joined = error_lines(&text).join("\n");
    assert!(joined.contains("set auth-key-file"), "{joined}");
    // ISC dhcpd has no authentication: plain TCP is then accepted, and short MCLTs bound
    // the partner's at the configured one.
    let isc = text.replace(
        "mclt = 30\n",
        "mclt = 30\npartner-software = \"isc-dhcpd\"\n",
    );
    let cfg = parse(&isc, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let f = cfg.failovers.into_iter().next().expect("failover");
    assert_eq!(f.partner_software, PartnerSoftware::IscDhcpd);
    assert_eq!(f.partner_mclt_min, 30);
    let bad = isc.replace(
        "mclt = 30\n",
        "mclt = 30\npartner-mclt-min = 900\npartner-mclt-max = 600\n",
    );
    let joined = error_lines(&bad).join("\n");
    assert!(
        joined.contains("partner-mclt-min 900 exceeds partner-mclt-max 600"),
        "{joined}"
    );
}

#[test]
fn ratelimit_section_reads_rates_and_bursts() {
    let text = format!(
        "{SERVER}[rate-limit]\nclient-rate = 10\nrelay-rate = 5000\nrelay-burst = 0\n\n{SUBNET}"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let r = cfg.rate_limit;
    assert_eq!(
        (r.client_rate, r.client_burst),
        (10, 10),
        "burst defaults to 1 s worth"
    );
    assert_eq!(
        (r.relay_rate, r.relay_burst),
        (5000, 1),
        "a burst of 0 admits one"
    );
    assert!(r.any());
    let none = parse(&format!("{SERVER}{SUBNET}"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(!none.rate_limit.any(), "no limit by default");
    let joined = error_lines(&format!(
        "{SERVER}[rate-limit]\nclient-rat = 1\nrelay-rate = -1\n\n{SUBNET}"
    ))
    .join("\n");
    assert!(joined.contains("client-rat"), "{joined}");
    assert!(joined.contains("relay-rate"), "{joined}");
}

#[test]
fn dhcpv6_dual_stack_example_parses() {
    let cfg = parse(DUAL_STACK_CONFIG, "dual-stack.toml").unwrap_or_else(|e| panic!("{e}"));
    let v6 = &cfg.v6;
    assert_eq!(
        v6.lease_file.to_str(),
        Some("/tmp/xdhcpd-demo/bindings6.db")
    );
    assert_eq!((v6.capacity, v6.decline_hold), (262144, 3600));
    assert_eq!(v6.subnets.len(), 1);
    let s = &v6.subnets[0];
    let a = |x: &str| x.parse::<std::net::Ipv6Addr>().unwrap();
    assert_eq!((s.prefix, s.prefix_len), (a("fd77::"), 64));
    assert_eq!(s.interface.as_deref(), Some("xd-srv0"));
    assert_eq!(s.pools, vec![(a("fd77::1:0"), a("fd77::1:ffff"))]);
    assert_eq!(
        s.pd_pools,
        vec![PdPool6 {
            prefix: a("fd77:100::"),
            prefix_len: 40,
            delegated_len: 56
        }]
    );
    assert_eq!((s.preferred, s.valid, s.t1, s.t2), (3600, 7200, 0, 0));
    assert_eq!(s.dns_servers, vec![a("fd77::1")]);
    assert_eq!(s.domain_search, vec!["demo.xdhcpd".to_string()]);
    assert_eq!(s.vendor_options[0].enterprise, 4491);
    assert_eq!(s.vendor_options[0].options, vec![(32, b"xdhcpd".to_vec())]);
    assert_eq!(s.reservations[0].address, Some(a("fd77::77")));
    assert_eq!(s.reservations[0].prefix, Some((a("fd77:1ff:ff00::"), 56)));
    // No [[subnet6]]: DHCPv6 off.
    assert!(parse(DEMO_CONFIG, "demo.toml")
        .unwrap()
        .v6
        .subnets
        .is_empty());
}

#[test]
fn dhcpv6_config_errors_are_positioned() {
    let v4 = "[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let text = format!(
        "{SERVER}{v4}\
[dhcpv6]\n\
server-duid = \"01\"\n\
[[subnet6]]\n\
prefix = \"fd77::1/64\"\n\
[[subnet6]]\n\
prefix = \"fd78::/64\"\n\
preferred-time = 900\n\
valid-time = 600\n\
colour = 1\n\
[[subnet6.pool]]\n\
range = \"fd79::1-fd79::9\"\n\
[[subnet6.pd-pool]]\n\
prefix = \"fd78:100::/40\"\n\
delegated-length = 32\n\
[[subnet6.reservation]]\n\
duid = \"zz\"\n\
address = \"fd78::5\"\n\
[[subnet6]]\n\
prefix = \"fd78::/48\"\n"
    );
    let lines = error_lines(&text);
    let want = [
        "t.toml:7:15: dhcpv6.server-duid: a DUID is 3 ..= 130 bytes, this one is 1",
        "t.toml:9:10: subnet6[0].prefix: fd77::1/64 has host bits set; did you mean fd77::/64?",
        "t.toml:12:18: subnet6[1].preferred-time: preferred-time 900 is longer than valid-time 600",
        "t.toml:14:1: subnet6[1].colour: unknown key `colour`",
        "t.toml:16:9: subnet6[1].pool[0].range: range fd79::1-fd79::9 is not inside the subnet6 prefix fd78::/64",
        "t.toml:19:20: subnet6[1].pd-pool[0].delegated-length: delegated-length 32 is shorter than the pool prefix /40",
        "t.toml:21:8: subnet6[1].reservation[0].duid: not hex",
        "subnet6[2]: prefix fd78::/48 overlaps subnet6[1] fd78::/64",
    ];
    for w in want {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(w) || (l.contains(w) && !w.starts_with("t.toml"))),
            "missing {w:?} in {lines:#?}"
        );
    }
}

#[test]
fn api_section_defaults_values_and_positioned_errors() {
    let base = "[server]\ninterface = \"eth0\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let cfg = parse(base, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.api, ApiConfig::default());
    assert!(cfg.api.metrics);
    let with = |t: &str| format!("{base}[api]\n{t}\n");
    let cfg = parse(
        &with("listen = \"127.0.0.1:8067\"\nmetrics = false"),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.api.listen, Some("127.0.0.1:8067".parse().unwrap()));
    assert!(!cfg.api.metrics);
    assert_eq!(cfg.api.token_file, None);
    // Non-loopback with a token file: accepted.
    let cfg = parse(
        &with("listen = \"192.0.2.1:8067\"\ntoken-file = \"/etc/xdhcpd/api.token\""),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.api.token_file.as_deref(),
        Some(std::path::Path::new("/etc/xdhcpd/api.token"))
    );
    let lines = |t: &str| error_lines(&with(t));
    // The token rule: a non-loopback listener without a token file is refused, positioned.
    assert_eq!(
        lines("listen = \"0.0.0.0:8067\""),
        [
            "t.toml:6:10: api.listen: 0.0.0.0:8067 is not a loopback address: a TCP listener \
          reachable from the network needs `api.token-file` (bearer token)"
        ]
    );
    assert_eq!(
        lines("listen = \"localhost\""),
        [
            "t.toml:6:10: api.listen: \"localhost\" is not a listen address: expected ip:port \
          (\"127.0.0.1:8067\", \"[::1]:8067\")"
        ]
    );
    assert_eq!(
        lines("listen = \"127.0.0.1:0\""),
        ["t.toml:6:10: api.listen: 127.0.0.1:0: port 0 is not a listen port"]
    );
    assert_eq!(
        lines("metrics = \"yes\""),
        ["t.toml:6:11: api.metrics: expected true or false, found a string"]
    );
    assert_eq!(lines("lissen = \"127.0.0.1:1\"").len(), 1);
    assert!(lines("lissen = \"127.0.0.1:1\"")[0].starts_with("t.toml:6:1: api.lissen"));
}

#[test]
fn registration_postgres_backend_config() {
    let base = "[server]\ninterface = \"eth0\"\nregistration-file = \"/var/lib/xdhcpd/regs\"\n\n\
         [[subnet]]\ncidr = \"10.0.0.0/24\"\n\n";
    // Default: local.
    let cfg = parse(base, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.registrations, crate::RegistrationBackend::Local);
    let text = format!(
        "{base}[registrations]\nbackend = \"postgres\"\n[registrations.postgres]\nhost = \"127.0.0.1\"\n\
         port = 5433\ndbname = \"prov\"\nuser = \"xdhcpd\"\npassword-file = \"/etc/xdhcpd/pg\"\n"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let crate::RegistrationBackend::Postgres(pg) = &cfg.registrations else {
        panic!("{:?}", cfg.registrations)
    };
    assert_eq!(
        (
            pg.host.as_str(),
            pg.port,
            pg.dbname.as_str(),
            pg.user.as_str()
        ),
        ("127.0.0.1", 5433, "prov", "xdhcpd")
    );
    assert_eq!(
        pg.password_file.as_deref(),
        Some(std::path::Path::new("/etc/xdhcpd/pg"))
    );
    assert!(pg.migrate);
    assert_eq!(pg.connect_timeout_secs, 5);

    // Errors name the key.
    let e = error_lines(&format!("{base}[registrations]\nbackend = \"postgres\"\n"));
    assert_eq!(
        e,
        vec!["t.toml:9:11: registrations.backend: backend \"postgres\" needs [registrations.postgres] (host, dbname, user)"]
    );
    let e = error_lines(&format!("{base}[registrations]\nbackend = \"mysql\"\n"));
    assert!(
        e[0].starts_with(
            "t.toml:9:11: registrations.backend: `mysql` is not a registration backend"
        ),
        "{e:?}"
    );
    let e = error_lines(&format!(
        "{base}[registrations]\nbackend = \"postgres\"\n[registrations.postgres]\nhost = \"db\"\nuser = \"u\"\n\
         tls = \"require\"\npassword = \"secret\"\n"
    ));
    let joined = e.join("\n");
    assert!(
        joined.contains("registrations.postgres: missing required key `dbname`"),
        "{joined}"
    );
    assert!(
        joined.contains(
            "registrations.postgres.tls: tls = \"require\" needs ca-file: the CA certificate(s)"
        ),
        "{joined}"
    );
    assert!(
        joined.contains("registrations.postgres.password: unknown key `password`"),
        "an inline password is refused: {joined}"
    );
    // The local copy is required.
    let e = error_lines(
        "[server]\ninterface = \"eth0\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n\
         [registrations]\nbackend = \"postgres\"\n[registrations.postgres]\nhost = \"db\"\ndbname = \"d\"\nuser = \"u\"\n",
    );
    assert_eq!(
        e,
        vec!["t.toml:6:11: registrations.backend: the postgres backend keeps its local copy in the registration store: set server.registration-file"]
    );
}

#[test]
fn registration_postgres_groups_filter_config() {
    let base = "[server]\ninterface = \"eth0\"\nregistration-file = \"/var/lib/xdhcpd/regs\"\n\n\
         [[subnet]]\ncidr = \"10.0.0.0/24\"\n\n[registrations]\nbackend = \"postgres\"\n\
         [registrations.postgres]\nhost = \"db\"\ndbname = \"prov\"\nuser = \"u\"\n";
    let groups = |text: &str| match parse(text, "t.toml").map(|c| c.registrations) {
        Ok(crate::RegistrationBackend::Postgres(pg)) => pg.groups,
        other => panic!("{other:?}"),
    };
    assert_eq!(groups(base), None, "default: every registration");
    assert_eq!(
        groups(&format!("{base}groups = [\"modem\", \"pair-1\"]\n")),
        Some(vec!["modem".to_string(), "pair-1".to_string()])
    );
    assert_eq!(
        error_lines(&format!("{base}groups = []\n")),
        vec!["t.toml:14:10: registrations.postgres.groups: an empty list would load no registration: leave `groups` out to load them all"]
    );
    assert_eq!(
        error_lines(&format!("{base}groups = [\"a\", \"a\", \"\"]\n")),
        vec![
            "t.toml:14:16: registrations.postgres.groups[1]: group `a` listed twice",
            "t.toml:14:21: registrations.postgres.groups[2]: expected a group name",
        ]
    );
    assert_eq!(
        error_lines(&format!("{base}groups = \"modem\"\n")),
        vec!["t.toml:14:10: registrations.postgres.groups: expected an array, found a string"]
    );
}

#[test]
fn lease_spare_addresses_key_default_and_range() {
    let pool =
        "[[subnet]]\ncidr = \"10.0.0.0/16\"\n[[subnet.pool]]\nrange = \"10.0.1.0-10.0.40.255\"\n";
    // Default: the larger of 1024 and a quarter of the pools' addresses (10240 here).
    let cfg = parse(&format!("{SERVER}{pool}"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.lease_spare, None);
    assert_eq!(cfg.lease_spare_addresses(), 2560);
    let small = format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.19\"\n"
    );
    let cfg = parse(&small, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.lease_spare_addresses(), 1024);
    let cfg = parse(
        &format!("{SERVER}[lease]\nspare-addresses = 0\n{pool}"),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.lease_spare_addresses(), 0);
    let errs = error_lines(&format!("{SERVER}[lease]\nspare-addresses = -1\n{pool}"));
    assert!(
        errs.iter()
            .any(|l| l.contains("t.toml:5:19: lease.spare-addresses: -1 is out of range")),
        "{errs:?}"
    );
}

#[test]
fn config_forcerenew_reconfigure_section() {
    let none = parse(&format!("{SERVER}{SUBNET}"), "t.toml").expect("no section");
    assert!(none.reconfigure.is_none(), "off without [reconfigure]");
    let cfg = parse(
        &format!(
            "{SERVER}[reconfigure]\nretries = 3\nfirst-retry-ms = 500\nrate = 10\nclear-on-abort = true\ntoken = \"abc\"\nsecret = \"000102030405060708090a0b0c0d0e0f\"\n\n{SUBNET}"
        ),
        "t.toml",
    )
    .expect("valid section");
    let r = cfg.reconfigure.expect("section read");
    assert_eq!(
        (r.retries, r.first_retry_ms, r.backoff, r.rate),
        (3, 500, 2, 10)
    );
    assert!(r.clear_on_abort && !r.deferred_nak && !r.allow_unauthenticated && r.nonce);
    assert_eq!(r.token, b"abc");
    assert_eq!(
        r.secret.as_deref(),
        Some(&(0u8..16).collect::<Vec<_>>()[..])
    );
    let err = parse(
        &format!("{SERVER}[reconfigure]\nretries = 0\nsecret = \"0102\"\nclear-on-abort = true\ndeferred-nak = true\n\n{SUBNET}"),
        "t.toml",
    )
    .expect_err("invalid section")
    .to_string();
    assert!(err.contains("reconfigure.retries"), "{err}");
    assert!(err.contains("secret is 2 bytes"), "{err}");
    assert!(err.contains("exclude each other"), "{err}");
}

#[test]
fn config_forcerenew_subnet_schedule_override() {
    let cfg = parse(
        &format!("{SERVER}[reconfigure]\n\n[[subnet]]\ncidr = \"10.0.0.0/24\"\nreconfigure-retries = 2\nreconfigure-first-retry-ms = 300\n"),
        "t.toml",
    )
    .expect("valid override");
    let o = cfg.subnets[0].reconfigure;
    assert_eq!((o.retries, o.first_retry_ms), (Some(2), Some(300)));
    let global = cfg.reconfigure.expect("section");
    assert_eq!(o.apply(&global), (2, 300));
    let err = parse(
        &format!("{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\nreconfigure-retries = 99\n"),
        "t.toml",
    )
    .expect_err("out of range")
    .to_string();
    assert!(err.contains("reconfigure-retries"), "{err}");
}

#[test]
fn registrations_postgres_tls_keys_and_errors() {
    let base = "[server]\ninterface = \"eth0\"\nregistration-file = \"/var/lib/x/regs\"\n\
                [[subnet]]\ncidr = \"10.0.0.0/24\"\n[registrations]\nbackend = \"postgres\"\n\
                [registrations.postgres]\nhost = \"db.example\"\ndbname = \"d\"\nuser = \"u\"\n";
    let cfg = parse(
        &format!(
            "{base}tls = \"require\"\nca-file = \"/etc/x/ca.pem\"\ncert-file = \"/etc/x/c.pem\"\n\
             key-file = \"/etc/x/k.pem\"\n"
        ),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let RegistrationBackend::Postgres(pg) = cfg.registrations else {
        panic!("postgres backend");
    };
    assert_eq!(
        pg.tls,
        PostgresTls::Require(TlsClientConfig {
            ca_file: "/etc/x/ca.pem".into(),
            cert_file: Some("/etc/x/c.pem".into()),
            key_file: Some("/etc/x/k.pem".into()),
        })
    );
    let e = error_lines(&format!("{base}tls = \"verify-full\"\n"));
    assert_eq!(
        e,
        vec!["t.toml:12:7: registrations.postgres.tls: `verify-full`: expected \"require\" or \"disable\""]
    );
    let e = error_lines(&format!("{base}ca-file = \"/etc/x/ca.pem\"\n"));
    assert_eq!(
        e,
        vec!["t.toml:12:11: registrations.postgres.ca-file: TLS to PostgreSQL is off: set tls = \"require\" to use it"]
    );
    let e = error_lines(&format!(
        "{base}tls = \"require\"\nca-file = \"/ca\"\ncert-file = \"/c\"\n"
    ));
    assert_eq!(
        e,
        vec!["t.toml:14:13: registrations.postgres.cert-file: a client certificate needs both cert-file and key-file"]
    );
    let sock = base.replace("db.example", "/run/postgresql");
    let e = error_lines(&format!("{sock}tls = \"require\"\nca-file = \"/ca\"\n"));
    assert_eq!(
        e,
        vec!["t.toml:12:7: registrations.postgres.tls: TLS needs a TCP connection: host is a UNIX socket directory"]
    );
}

#[test]
fn event_log_nats_tls_and_credentials_keys() {
    let base = format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\n\n[event-log]\ndirectory = \"/tmp/ev\"\n\n\
         [event-log.nats]\nurls = [\"nats://127.0.0.1:4222\"]\n"
    );
    let n = parse(
        &format!(
            "{base}user = \"xdhcpd\"\npassword-file = \"/etc/x/pw\"\ntls = \"require\"\n\
             ca-file = \"/etc/x/ca.pem\"\n"
        ),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .event_log
    .unwrap()
    .nats
    .unwrap();
    assert_eq!(n.user.as_deref(), Some("xdhcpd"));
    assert_eq!(n.password_file, Some("/etc/x/pw".into()));
    assert_eq!(
        n.tls,
        Some(TlsClientConfig {
            ca_file: "/etc/x/ca.pem".into(),
            cert_file: None,
            key_file: None,
        })
    );
    let off = parse(&base, "t.toml")
        .unwrap()
        .event_log
        .unwrap()
        .nats
        .unwrap();
    assert_eq!(off.tls, None, "TLS is off by default");
    let errs = error_lines(&format!("{base}user = \"u\"\n"));
    assert!(
        errs.iter()
            .any(|e| e.contains("event-log.nats.user: user needs password-file")),
        "{errs:?}"
    );
    let errs = error_lines(&format!(
        "{base}token-file = \"/t\"\nuser = \"u\"\npassword-file = \"/p\"\n"
    ));
    assert!(
        errs.iter()
            .any(|e| e.contains("event-log.nats.user: set one of")),
        "{errs:?}"
    );
    let errs = error_lines(&format!("{base}tls = \"require\"\n"));
    assert!(
        errs.iter()
            .any(|e| e.contains("event-log.nats.tls: tls = \"require\" needs ca-file")),
        "{errs:?}"
    );
}

#[test]
fn event_log_nats_keys_defaults_and_errors() {
    let base = format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\n\n[event-log]\ndirectory = \"/tmp/ev\"\n\n"
    );
    let cfg = parse(
        &format!("{base}[event-log.nats]\nurls = [\"nats://127.0.0.1:4222\", \"n2:4222\"]\n"),
        "t.toml",
    )
    .unwrap();
    let n = cfg.event_log.unwrap().nats.unwrap();
    assert_eq!(n.urls.len(), 2);
    assert_eq!(n.stream, "XDHCPD_EVENTS");
    assert_eq!(n.subject_prefix, "xdhcpd.events");
    assert_eq!(n.batch_size, 256);
    assert_eq!(n.events_per_message, 100);
    assert!(n.create_stream);
    let errs = error_lines(&format!(
        "{base}[event-log.nats]\nurls = [\"nats://h:99999\"]\nserver-name = \"a.b\"\n\
         subject-prefix = \"x.>\"\nbatch-size = 0\nevents-per-message = 1001\n"
    ));
    for field in [
        "event-log.nats.urls[0]",
        "event-log.nats.server-name",
        "event-log.nats.subject-prefix",
        "event-log.nats.batch-size",
        "event-log.nats.events-per-message",
    ] {
        assert!(errs.iter().any(|e| e.contains(field)), "{field}: {errs:?}");
    }
    let errs = error_lines(&format!(
        "{base}[event-log.nats]\nurls = [\"h:1\"]\ntoken-file = \"/t\"\ncredentials-file = \"/c\"\n"
    ));
    assert!(errs.iter().any(|e| e.contains("not both")), "{errs:?}");
    let errs = error_lines(&format!("{base}[event-log.nats]\nstream = \"S\"\n"));
    assert!(errs.iter().any(|e| e.contains("urls")), "{errs:?}");
}

#[test]
fn leasequery_dhcpv6_allow_key_defaults_to_trusted_relays_and_errors_are_positioned() {
    let a = |x: &str| x.parse::<std::net::Ipv6Addr>().unwrap();
    let base = format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\n[[subnet6]]\nprefix = \"fd77::/64\"\n"
    );
    let text = format!("{base}[dhcpv6]\ntrusted-relays = [\"fd77::2\"]\n");
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.v6.leasequery_allow, None);
    assert_eq!(
        cfg.v6.leasequery_allow(),
        vec![(a("fd77::2"), 128)],
        "leasequery-allow defaults to the trusted relays"
    );
    let text = format!("{base}[dhcpv6]\nleasequery-allow = [\"fd77::9\", \"fd00:1::/48\"]\n");
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.v6.leasequery_allow(),
        vec![(a("fd77::9"), 128), (a("fd00:1::"), 48)]
    );
    let text = format!("{base}[dhcpv6]\nleasequery-allow = []\n");
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.v6.leasequery_allow().is_empty(), "[] allows no one");
    let text = format!("{base}[dhcpv6]\nleasequery-allow = [\"fd77::x\", \"fd77::1/64\"]\n");
    assert_eq!(
        error_lines(&text),
        [
            "t.toml:9:21: dhcpv6.leasequery-allow[0]: fd77::x is not an IPv6 address or network",
            "t.toml:9:32: dhcpv6.leasequery-allow[1]: fd77::1/64 has host bits set; did you mean fd77::/64?",
        ]
    );
}

#[test]
fn bulk_leasequery_section_parses_defaults_and_positioned_errors() {
    let base = "[server]\ninterface = \"eth0\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let cfg = parse(base, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.bulk_leasequery, None, "off without the section");
    let with = |t: &str| format!("{base}[bulk-leasequery]\n{t}\n");
    let cfg = parse(&with(""), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.bulk_leasequery,
        Some(crate::BulkLeasequeryConfig::default())
    );
    let d = crate::BulkLeasequeryConfig::default();
    assert_eq!(d.listen.to_string(), "0.0.0.0:67");
    let cfg = parse(
        &with("listen = \"10.0.0.1\"\nmax-connections = 2\nidle-timeout = 5\nactive-queue = 64"),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let b = cfg.bulk_leasequery.expect("on");
    assert_eq!(b.active_queue, 64);
    let e = error_lines(&with("active-queue = 8"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:6:16: bulk-leasequery.active-queue:"),
        "{e:?}"
    );
    assert_eq!(
        b.listen.to_string(),
        "10.0.0.1:67",
        "a bare ip means port 67"
    );
    assert_eq!((b.max_connections, b.idle_timeout), (2, 5));
    assert_eq!(
        error_lines(&with("listen = \"10.0.0.1:0\"")),
        ["t.toml:6:10: bulk-leasequery.listen: \"10.0.0.1:0\" is not a listen address: expected ip or ip:port (\"0.0.0.0:67\", \"10.0.0.1\")"]
    );
    let e = error_lines(&with("max-connections = 0"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:6:19: bulk-leasequery.max-connections:"),
        "{e:?}"
    );
    let e = error_lines(&with("idle = 3"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("idle"), "{e:?}");
}

#[test]
fn bulk_leasequery_tls_keys_parse_and_errors_name_the_key() {
    let base = "[server]\ninterface = \"eth0\"\n[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let with = |t: &str| format!("{base}[bulk-leasequery]\n{t}\n");
    let cfg = parse(
        &with("tls = \"require\"\ncert-file = \"/e/lq.crt\"\nkey-file = \"/e/lq.key\"\nclient-ca-file = \"/e/ca.crt\""),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tls = cfg.bulk_leasequery.expect("on").tls.expect("tls on");
    assert_eq!(tls.mode, crate::LeasequeryTlsMode::Require);
    assert_eq!(tls.cert_file, std::path::PathBuf::from("/e/lq.crt"));
    assert_eq!(tls.key_file, std::path::PathBuf::from("/e/lq.key"));
    assert_eq!(
        tls.client_ca_file,
        Some(std::path::PathBuf::from("/e/ca.crt"))
    );
    let cfg = parse(
        &with("tls = \"offer\"\ncert-file = \"/e/lq.crt\"\nkey-file = \"/e/lq.key\"\nclient-ca-file = \"/e/ca.crt\""),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tls = cfg.bulk_leasequery.expect("on").tls.expect("tls on");
    assert_eq!(tls.mode, crate::LeasequeryTlsMode::Offer);
    // RFC 7724 8.1: mutually authenticated, so no TLS without the requestors' CA.
    let e = error_lines(&with(
        "tls = \"offer\"\ncert-file = \"/e/lq.crt\"\nkey-file = \"/e/lq.key\"",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:6:7: bulk-leasequery.tls: TLS needs client-ca-file"),
        "{e:?}"
    );
    let cfg = parse(&with("tls = \"disable\""), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.bulk_leasequery.expect("on").tls, None);
    assert_eq!(
        error_lines(&with("tls = \"yes\"")),
        ["t.toml:6:7: bulk-leasequery.tls: `yes`: expected \"disable\", \"offer\" or \"require\""]
    );
    let e = error_lines(&with("tls = \"require\"\ncert-file = \"/e/lq.crt\""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:6:7: bulk-leasequery.tls: TLS needs cert-file and key-file"),
        "{e:?}"
    );
    let e = error_lines(&with(
        "cert-file = \"/e/lq.crt\"\nclient-ca-file = \"/e/ca.crt\"",
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:6:13: bulk-leasequery.cert-file: leasequery TLS is off"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.toml:7:18: bulk-leasequery.client-ca-file: leasequery TLS is off"),
        "{e:?}"
    );
    let e = error_lines(&with(
        "tls = \"offer\"\ncert-file = \"\"\nkey-file = \"/k\"",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:7:13: bulk-leasequery.cert-file: expected a file path"),
        "{e:?}"
    );
}

#[test]
fn dhcpv6_class_config_pools_vendor_options_and_positioned_errors() {
    let v4 = "[[subnet]]\ncidr = \"10.0.0.0/24\"\n";
    let good = format!(
        "{SERVER}\
[[class]]\n\
name = \"cm\"\n\
enterprise = 4491\n\
vendor-class-prefix = \"docsis\"\n\
[[class.vendor-option]]\n\
enterprise = 4491\n\
code = 2\n\
text = \"cm\"\n\
[[class]]\n\
name = \"router\"\n\
user-class = \"router\"\n\
{v4}\
[[subnet6]]\n\
prefix = \"fd77::/64\"\n\
deny-unknown = false\n\
[[subnet6.pool]]\n\
range = \"fd77::100-fd77::1ff\"\n\
deny = \"cm\"\n\
[[subnet6.pool]]\n\
range = \"fd77::1000-fd77::10ff\"\n\
allow = [\"cm\"]\n\
deny-unknown = true\n\
[[subnet6.pd-pool]]\n\
prefix = \"fd77:100::/40\"\n\
delegated-length = 56\n\
allow = \"router\"\n"
    );
    let cfg = parse(&good, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let cm = &cfg.classes[0];
    assert_eq!(cm.matches.enterprise, Some(4491));
    assert_eq!(cm.vendor_options6[0].enterprise, 4491);
    assert_eq!(cm.vendor_options6[0].options, vec![(2, b"cm".to_vec())]);
    let s = &cfg.v6.subnets[0];
    assert_eq!(s.pool_access.len(), 2);
    assert_eq!(s.pool_access[0].deny, ClassSet::one(0));
    assert!(s.pool_access[0].allow.is_empty());
    assert_eq!(s.pool_access[1].allow, ClassSet::one(0));
    assert!(s.pool_access[1].deny_unknown);
    assert_eq!(s.pd_pool_access[0].allow, ClassSet::one(1));
    // Errors: an unknown class (with a suggestion), a pool that can never be used, a
    // vendor option without data, an enterprise number that is not a number.
    let bad = format!(
        "{SERVER}\
[[class]]\n\
name = \"cm\"\n\
enterprise = \"x\"\n\
[[class.vendor-option]]\n\
enterprise = 4491\n\
code = 2\n\
{v4}\
[[subnet6]]\n\
prefix = \"fd77::/64\"\n\
[[subnet6.pool]]\n\
range = \"fd77::100-fd77::1ff\"\n\
allow = \"cn\"\n\
[[subnet6.pd-pool]]\n\
prefix = \"fd77:100::/40\"\n\
delegated-length = 56\n\
allow = \"cm\"\n\
deny = \"cm\"\n"
    );
    let lines = error_lines(&bad);
    let want = [
        "class[0].enterprise:",
        "class[0].vendor-option[0]: give exactly one of `hex` or `text`",
        "subnet6[0].pool[0].allow: unknown class `cn`; did you mean `cm`?",
        "subnet6[0].pd-pool[0].deny: this pool can never be used",
    ];
    for w in want {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(w) && l.starts_with("t.toml:")),
            "missing {w:?} in {lines:#?}"
        );
    }
}

/// `failback-hold`: off by default, read in seconds, a week at most, errors name the line.
#[test]
fn failover_failback_hold_key() {
    let base = "[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"10.88.0.1\"\npeer-address = \"10.88.0.2\"\nauth-key-file = \"/etc/xdhcpd/fo.key\"\n";
    let cfg =
        parse(&format!("{SERVER}{base}\n{SUBNET}"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.failovers
            .into_iter()
            .next()
            .expect("failover")
            .failback_hold,
        0
    );
    let cfg = parse(
        &format!("{SERVER}{base}failback-hold = 1800\n\n{SUBNET}"),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.failovers
            .into_iter()
            .next()
            .expect("failover")
            .failback_hold,
        1800
    );
    let joined =
        error_lines(&format!("{SERVER}{base}failback-hold = 700000\n\n{SUBNET}")).join("\n");
    assert!(
        joined.contains("failover.failback-hold") && joined.contains("604800"),
        "{joined}"
    );
}

#[test]
fn failover_relay_health_check_keys() {
    let base = "[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"10.88.0.1\"\npeer-address = \"10.88.0.2\"\nauth-key-file = \"/etc/xdhcpd/fo.key\"\n";
    // Off by default, with the documented defaults.
    let cfg =
        parse(&format!("{SERVER}{base}\n{SUBNET}"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let r = cfg.failovers[0].relay_health;
    assert_eq!(r, crate::RelayHealthConfig::default());
    assert!(!r.enabled);
    assert_eq!(
        (r.unresponsive_time, r.request_count, r.elapsed_time),
        (30, 10, 10)
    );
    // Every key read.
    let text = format!(
        "{SERVER}{base}relay-health-check = \"v4\"\nrhc-unresponsive-time = 5\nrhc-request-count = 2\nrhc-elapsed-time = 3\nrhc-response-time = 0\nrhc-restart-time = 50\nrhc-warning-interval = 7\nrhc-max-relays = 64\n\n{SUBNET}"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let r = cfg.failovers[0].relay_health;
    assert_eq!(
        r,
        crate::RelayHealthConfig {
            enabled: true,
            unresponsive_time: 5,
            request_count: 2,
            elapsed_time: 3,
            response_time: 0,
            restart_time: 50,
            warning_interval: 7,
            max_relays: 64,
        }
    );
    // DHCPv6 is not implemented; a restart time that can never judge a relay is refused.
    let joined = error_lines(&format!(
        "{SERVER}{base}relay-health-check = \"both\"\nrhc-unresponsive-time = 60\nrhc-restart-time = 60\nrhc-max-relays = 8\n\n{SUBNET}"
    ))
    .join("\n");
    assert!(
        joined.contains("failover.relay-health-check: \"both\": the DHCPv6 relay health check is not implemented"),
        "{joined}"
    );
    assert!(
        joined.contains("rhc-restart-time 60 must exceed rhc-unresponsive-time 60"),
        "{joined}"
    );
    assert!(joined.contains("failover.rhc-max-relays"), "{joined}");
}

/// Two `[[failover]]` relationships (N:1 backup, this server the secondary of both), with
/// three subnets: one listed in a relationship's `subnets`, one naming its relationship, one
/// out of failover.
const N1: &str = "[[failover]]\nname = \"isc\"\nrole = \"secondary\"\naddress = \"10.88.0.3\"\npeer-address = \"10.88.0.1\"\npartner-software = \"isc-dhcpd\"\nsubnets = [\"10.0.0.0/24\"]\n\n[[failover]]\nname = \"xd\"\nrole = \"secondary\"\naddress = \"10.88.0.3\"\nport = 648\npeer-address = \"10.88.0.2\"\nauth-key-file = \"/etc/xdhcpd/fo.key\"\nmclt = 60\n\n";

#[test]
fn failover_n1_relationships_each_cover_their_subnets() {
    let text = format!(
        "{SERVER}{N1}[[subnet]]\ncidr = \"10.0.0.0/24\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n\n[[subnet]]\ncidr = \"10.0.1.0/24\"\nfailover = \"xd\"\n[[subnet.pool]]\nrange = \"10.0.1.10-10.0.1.20\"\n[[subnet.pool]]\nrange = \"10.0.1.30-10.0.1.40\"\n\n[[subnet]]\ncidr = \"10.0.2.0/24\"\nfailover = \"none\"\n[[subnet.pool]]\nrange = \"10.0.2.10-10.0.2.20\"\n"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.failovers.len(), 2);
    let (a, b) = (&cfg.failovers[0], &cfg.failovers[1]);
    assert_eq!((a.name.as_str(), b.name.as_str()), ("isc", "xd"));
    assert!(a.listed && b.listed);
    assert_eq!((a.port, b.port), (647, 648));
    assert_eq!((a.mclt, b.mclt), (3600, 60));
    assert_eq!(a.subnets, vec![0]);
    assert_eq!(b.subnets, vec![1]);
    let ids = |f: &FailoverConfig| f.pools.iter().map(|p| p.pool_id).collect::<Vec<_>>();
    assert_eq!(ids(a), vec![0]);
    assert_eq!(ids(b), vec![1, 2]);
    let of: Vec<_> = cfg.subnets.iter().map(|s| s.failover).collect();
    assert_eq!(of, vec![Some(0), Some(1), None]);
    assert!(!cfg.failover_everywhere());
    assert_eq!(cfg.failover_named("xd").map(|f| f.peer_port), Some(647));
}

#[test]
fn failover_per_scope_single_form_default_and_none() {
    let base = "[failover]\nrole = \"primary\"\nname = \"pair\"\naddress = \"10.88.0.1\"\npeer-address = \"10.88.0.2\"\npartner-software = \"isc-dhcpd\"\n\n";
    let two = |second: &str| {
        format!(
            "{SERVER}{base}[[subnet]]\ncidr = \"10.0.0.0/24\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n\n[[subnet]]\ncidr = \"10.0.1.0/24\"\n{second}[[subnet.pool]]\nrange = \"10.0.1.10-10.0.1.20\"\n"
        )
    };
    // Server default: the one relationship covers every subnet.
    let cfg = parse(&two(""), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.failovers[0].listed);
    assert_eq!(cfg.failovers[0].subnets, vec![0, 1]);
    assert!(cfg.failover_everywhere());
    for explicit in ["failover = \"pair\"\n", "failover = \"default\"\n"] {
        let cfg = parse(&two(explicit), "t.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.failovers[0].subnets, vec![0, 1], "{explicit}");
    }
    // Disabled for one scope: that subnet's pool is out of the relationship.
    let cfg = parse(&two("failover = \"none\"\n"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.failovers[0].subnets, vec![0]);
    assert_eq!(cfg.subnets[1].failover, None);
    assert_eq!(cfg.failovers[0].pools.len(), 1);
    assert!(!cfg.failover_everywhere());
    // Without any failover, naming a relationship is an error.
    let lines = error_lines(&format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\nfailover = \"pair\"\n"
    ));
    assert!(
        lines.iter().any(|l| l.contains(
            "t.toml:13:12: subnet[0].failover: relationship \"pair\" is unknown: no failover is configured"
        ) || l.contains("subnet[0].failover: relationship \"pair\" is unknown")),
        "{lines:?}"
    );
}

#[test]
fn failover_n1_errors_are_positioned() {
    let sub = |extra: &str, cidr: &str| {
        format!(
            "[[subnet]]\ncidr = \"{cidr}\"\n{extra}[[subnet.pool]]\nrange = \"{}\"\n\n",
            {
                let base = cidr.trim_end_matches(".0/24");
                format!("{base}.10-{base}.20")
            }
        )
    };
    // A subnet listed by one relationship and naming the other; an unknown name; a subnet in
    // no relationship.
    let text = format!(
        "{SERVER}{N1}{}{}{}",
        sub("failover = \"xd\"\n", "10.0.0.0/24"),
        sub("failover = \"nope\"\n", "10.0.1.0/24"),
        sub("", "10.0.2.0/24"),
    );
    let joined = error_lines(&text).join("\n");
    assert!(
        joined.contains("subnet[0].failover: this subnet names relationship \"xd\", but \"isc\" lists it (failover[0].subnets[0], line"),
        "{joined}"
    );
    assert!(
        joined.contains(
            "subnet[1].failover: relationship \"nope\" is unknown; declared: \"isc\", \"xd\""
        ),
        "{joined}"
    );
    assert!(
        joined.contains("subnet[2].cidr: subnet 10.0.2.0/24 is in no failover relationship"),
        "{joined}"
    );
    // Two relationships with one peer endpoint, one listen endpoint and one name.
    let dup = N1
        .replace("port = 648\n", "")
        .replace("10.88.0.2", "10.88.0.1")
        .replace("name = \"xd\"", "name = \"isc\"");
    let text = format!(
        "{SERVER}{dup}{}",
        sub("failover = \"none\"\n", "10.0.1.0/24")
    );
    let joined = error_lines(&text).join("\n");
    assert!(
        joined.contains(
            "failover[1].name: relationship \"isc\" is already declared at failover[0] (line"
        ),
        "{joined}"
    );
    assert!(
        joined.contains("listens on 10.88.0.3:647 like \"isc\""),
        "{joined}"
    );
    assert!(
        joined.contains("has the peer 10.88.0.1:647 of \"isc\""),
        "{joined}"
    );
    // A shared network split across relationships; a relationship covering nothing.
    let text = format!(
        "{SERVER}{N1}[[shared-network]]\nname = \"link\"\n\n{}{}",
        sub("shared-network = \"link\"\n", "10.0.0.0/24"),
        sub(
            "shared-network = \"link\"\nfailover = \"none\"\n",
            "10.0.1.0/24"
        ),
    );
    let joined = error_lines(&text).join("\n");
    assert!(
        joined.contains("subnet[1].cidr: this subnet is in no failover, but subnet[0] of the same shared network is in relationship \"isc\""),
        "{joined}"
    );
    assert!(
        joined.contains("failover[1].name: relationship \"xd\" covers no subnet"),
        "{joined}"
    );
    // More than eight relationships.
    let mut many = String::new();
    for i in 0..9 {
        many.push_str(&format!(
            "[[failover]]\nname = \"r{i}\"\nrole = \"secondary\"\naddress = \"10.88.0.3\"\nport = {}\npeer-address = \"10.88.1.{i}\"\npartner-software = \"isc-dhcpd\"\nsubnets = [\"10.0.{i}.0/24\"]\n\n",
            700 + i
        ));
    }
    for i in 0..9 {
        many.push_str(&sub("", &format!("10.0.{i}.0/24")));
    }
    let joined = error_lines(&format!("{SERVER}{many}")).join("\n");
    assert!(
        joined.contains("failover: 9 failover relationships: at most 8 are supported"),
        "{joined}"
    );
}

#[test]
fn dynamic_bootp_parses_per_subnet_and_defaults_off() {
    let text = format!(
        "{SERVER}{FAILOVER_PRIMARY}[[subnet]]\ncidr = \"10.0.0.0/24\"\ndynamic-bootp = true\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n\n[[subnet]]\ncidr = \"10.0.1.0/24\"\n[[subnet.pool]]\nrange = \"10.0.1.10-10.0.1.20\"\n"
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.subnets[0].dynamic_bootp);
    assert!(!cfg.subnets[1].dynamic_bootp);
    let f = cfg.failovers.into_iter().next().expect("failover");
    // Absent: the scope's backup-pct, else the relationship's.
    assert_eq!(f.dynamic_bootp_backup_pct, None);
    assert_eq!(
        f.pools.iter().map(|p| p.dynamic_bootp).collect::<Vec<_>>(),
        vec![true, false]
    );
    let text = text.replace(
        "backup-pct = 30\n",
        "backup-pct = 30\ndynamic-bootp-backup-pct = 10\n",
    );
    let cfg = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.failovers[0].dynamic_bootp_backup_pct, Some(10));
}

#[test]
fn dynamic_bootp_errors_are_positioned() {
    let text = format!(
        "{SERVER}[[subnet]]\ncidr = \"10.0.0.0/24\"\ndynamic-bootp = \"yes\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n"
    );
    let joined = error_lines(&text).join("\n");
    assert!(
        joined.contains("t.toml:6:17: subnet[0].dynamic-bootp:"),
        "{joined}"
    );
    let text = format!(
        "{SERVER}{}[[subnet]]\ncidr = \"10.0.0.0/24\"\n[[subnet.pool]]\nrange = \"10.0.0.10-10.0.0.20\"\n",
        FAILOVER_PRIMARY.replace(
            "backup-pct = 30\n",
            "backup-pct = 30\ndynamic-bootp-backup-pct = 101\n"
        )
    );
    let joined = error_lines(&text).join("\n");
    assert!(joined.contains("t.toml:10:28: "), "{joined}");
    assert!(
        joined.contains("dynamic-bootp-backup-pct: 101 is out of range"),
        "{joined}"
    );
}
