//! The configuration schema: walks the TOML document, validates every field
//! and cross-checks (overlaps, duplicates), collecting all errors.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeTable;

use super::error::{suggest, ConfigErrors, Errors};
use super::net::{Ipv4Net, NetParseError};
use super::options::SubnetOptions;
use super::reader::{
    array, boolean, int_in, ipv4, ipv4_list, number, parse_hex, parse_ipv4, string, tables, u32_in,
    Field, Span, Table,
};
use super::{
    CommitMode, Config, IoMode, LeaseTimes, Pool, QueueSel, Reservation, ReservationKey,
    ServerConfig, Subnet, SubnetLookup, XdpModeCfg, SERVER_OWNED_OPTIONS,
};

pub(crate) const ROOT_KEYS: &[&str] = &["server", "lease", "subnet", "failover"];
const SERVER_KEYS: &[&str] = &[
    "interface",
    "io",
    "xdp-mode",
    "queues",
    "server-id",
    "lease-file",
    "commit",
    "ebpf-object",
    "control-socket",
];
const LEASE_KEYS: &[&str] = &[
    "default-time",
    "min-time",
    "max-time",
    "renewal-factor",
    "rebinding-factor",
    "offer-hold",
    "decline-quarantine",
    "authoritative",
];
const SUBNET_KEYS: &[&str] = &[
    "cidr",
    "relay-addresses",
    "router",
    "dns-servers",
    "domain-name",
    "broadcast-address",
    "ntp-servers",
    "time-offset",
    "log-servers",
    "tftp-server",
    "boot-file",
    "next-server",
    "default-time",
    "min-time",
    "max-time",
    "renewal-factor",
    "rebinding-factor",
    "options",
    "pool",
    "reservation",
    "backup-pct",
    "backup-allocation-boundary",
];
const OPTION_KEYS: &[&str] = &["code", "hex", "text", "ip", "u8", "u16", "u32"];
const OPTION_KINDS: &[&str] = &["hex", "text", "ip", "u8", "u16", "u32"];
const POOL_KEYS: &[&str] = &["range"];
const RESERVATION_KEYS: &[&str] = &["hw", "client-id", "ip"];

pub(crate) const DEFAULT_LEASE_FILE: &str = "/var/lib/xdhcpd/leases.db";
/// Largest pool, in addresses: keeps one pool's lease table within reason.
const MAX_POOL_SIZE: u64 = 1 << 24;
/// Lease times are sent as u32 but must stay below 2^31 (signed arithmetic in clients).
const MAX_TIME: u32 = i32::MAX as u32;
/// The BOOTP `file` field is 128 bytes and must keep a terminating NUL.
const MAX_BOOT_FILE: usize = 127;
/// 63 addresses = 252 bytes, the most one option can carry.
const MAX_ADDRS_PER_OPTION: usize = 63;

/// A place in the file: span and field path.
#[derive(Clone, Debug)]
struct Loc {
    span: Span,
    path: String,
}

impl Loc {
    fn of(f: &Field<'_, '_>) -> Loc {
        Loc {
            span: f.span(),
            path: f.path.clone(),
        }
    }
}

pub(crate) fn build(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::new(text, source);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            errs.push(&span, "", format!("syntax error: {}", e.message().trim()));
        }
        return Err(errs.finish());
    }
    let root = Table::root(&mut errs, doc.get_ref(), ROOT_KEYS);

    let server = match root.require(&mut errs, "server") {
        Some(f) => Table::open(&mut errs, &f, SERVER_KEYS).and_then(|t| read_server(&mut errs, &t)),
        None => None,
    };

    let (lease, lease_keys, lease_span) = match root.get("lease") {
        Some(f) => match Table::open(&mut errs, &f, LEASE_KEYS) {
            Some(t) => {
                let (times, keys) = read_times(&mut errs, &t, LeaseTimes::default(), true);
                (times, keys, t.span.clone())
            }
            None => (LeaseTimes::default(), TimeKeys::default(), f.span()),
        },
        None => (LeaseTimes::default(), TimeKeys::default(), 0..0),
    };
    let lease_fallback = Loc {
        span: lease_span,
        path: "lease".into(),
    };
    check_times(&mut errs, &lease, &lease_keys, &lease_fallback, true);

    let failover = root.get("failover").and_then(|f| {
        Table::open(&mut errs, &f, super::failover::FAILOVER_KEYS)
            .and_then(|t| super::failover::read_failover(&mut errs, &t))
    });

    let server_id = server.as_ref().and_then(|s| s.server_id);
    let mut raws = Vec::new();
    if let Some(f) = root.require(&mut errs, "subnet") {
        let subnet_tables = tables(&mut errs, &f, SUBNET_KEYS);
        if subnet_tables.is_empty() && errs.is_empty() {
            errs.push(&f.span(), &f.path, "at least one [[subnet]] is required");
        }
        for t in subnet_tables {
            let index = raws.len();
            raws.push(read_subnet(&mut errs, &t, index, &lease, server_id));
        }
    }

    cross_check(&mut errs, &raws);

    match server {
        Some(server) if errs.is_empty() => {
            let mut next_pool_id = 0u32;
            let mut subnets = Vec::with_capacity(raws.len());
            for r in raws {
                let Some((net, _)) = r.net else {
                    // Unreachable without errors; stay total anyway.
                    return Err(errs.finish());
                };
                let pools = r
                    .pools
                    .iter()
                    .map(|(first, last, _)| {
                        let p = Pool {
                            id: next_pool_id,
                            first: *first,
                            last: *last,
                        };
                        next_pool_id += 1;
                        p
                    })
                    .collect();
                subnets.push(Subnet {
                    index: r.index,
                    net,
                    relay_addresses: r.relays.into_iter().map(|(a, _)| a).collect(),
                    times: r.times,
                    pools,
                    reservations: r.reservations.into_iter().map(|r| r.res).collect(),
                    next_server: r.next_server,
                    boot_file: r.boot_file,
                    options: r.options,
                    backup_pct: r.backup_pct,
                    backup_allocation_boundary: r.backup_boundary,
                });
            }
            let lookup = SubnetLookup::build(&subnets);
            let mut failover = failover;
            if let Some(f) = failover.as_mut() {
                f.pools = super::failover::pool_balance(&subnets);
            }
            Ok(Config {
                server,
                failover,
                lease,
                subnets,
                source: PathBuf::from(source),
                lookup,
            })
        }
        _ => Err(errs.finish()),
    }
}

// ---------------------------------------------------------------- [server]

fn read_server(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<ServerConfig> {
    let interface = t.require(errs, "interface").and_then(|f| {
        let s = string(errs, &f)?;
        match check_ifname(s) {
            Ok(()) => Some(s.to_string()),
            Err(m) => {
                errs.push(&f.span(), &f.path, m);
                None
            }
        }
    });

    let io = keyword(
        errs,
        t,
        "io",
        &[
            ("auto", IoMode::Auto),
            ("xdp", IoMode::Xdp),
            ("udp", IoMode::Udp),
        ],
    );
    let xdp_mode = keyword(
        errs,
        t,
        "xdp-mode",
        &[
            ("auto", XdpModeCfg::Auto),
            ("driver", XdpModeCfg::Driver),
            ("native", XdpModeCfg::Driver),
            ("skb", XdpModeCfg::Skb),
            ("generic", XdpModeCfg::Skb),
        ],
    );

    let queues = match t.get("queues") {
        None => Some(QueueSel::All),
        Some(f) => match f.value() {
            toml::de::DeValue::String(s) if s.as_ref() == "all" => Some(QueueSel::All),
            toml::de::DeValue::Integer(_) => {
                u32_in(errs, &f, 1, 4096, "between 1 and 4096").map(QueueSel::First)
            }
            _ => {
                errs.push(
                    &f.span(),
                    &f.path,
                    "expected \"all\" or a number of queues (1..=4096)",
                );
                None
            }
        },
    };

    let server_id = opt_unicast(errs, t, "server-id");
    let lease_file = match t.get("lease-file") {
        None => Some(PathBuf::from(DEFAULT_LEASE_FILE)),
        Some(f) => path_value(errs, &f),
    };
    let commit = match t.get("commit") {
        None => Some(CommitMode::Ack),
        Some(f) => string(errs, &f).and_then(|s| match parse_commit(s) {
            Ok(c) => Some(c),
            Err(m) => {
                errs.push(&f.span(), &f.path, m);
                None
            }
        }),
    };
    let ebpf_object = t.get("ebpf-object").map(|f| path_value(errs, &f));
    let control_socket = t.get("control-socket").map(|f| path_value(errs, &f));

    Some(ServerConfig {
        interface: interface?,
        io: io?,
        xdp_mode: xdp_mode?,
        queues: queues?,
        server_id: server_id.ok()?,
        lease_file: lease_file?,
        commit: commit?,
        ebpf_object: ebpf_object.map_or(Some(None), |p| p.map(Some))?,
        control_socket: control_socket.map_or(Some(None), |p| p.map(Some))?,
    })
}

fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("interface name is empty".into());
    }
    // IFNAMSIZ is 16 including the NUL.
    if s.len() > 15 {
        return Err(format!("interface name `{s}` is longer than 15 bytes"));
    }
    if s.contains(['/', ':'])
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
        || s == "."
        || s == ".."
    {
        return Err(format!("`{s}` is not a valid interface name"));
    }
    Ok(())
}

/// `"ack"` or `"interval:<ms>"` with 1 ..= 60000 ms.
fn parse_commit(s: &str) -> Result<CommitMode, String> {
    if s == "ack" {
        return Ok(CommitMode::Ack);
    }
    let bad =
        || format!("`{s}` is not a commit mode: expected \"ack\" or \"interval:<ms>\" (1..=60000)");
    let ms = s.strip_prefix("interval:").ok_or_else(bad)?.trim();
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match ms.parse::<u64>() {
        Ok(n) if (1..=60_000).contains(&n) => Ok(CommitMode::Interval(Duration::from_millis(n))),
        _ => Err(format!(
            "commit interval {ms} ms is out of range: must be 1..=60000"
        )),
    }
}

fn keyword<T: Copy>(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    key: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    let Some(f) = t.get(key) else {
        return Some(choices[0].1);
    };
    let s = string(errs, &f)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let msg = match suggest(s, &names) {
        Some(m) => format!("`{s}` is not valid here; did you mean `{m}`?"),
        None => format!("`{s}` is not one of: {}", names.join(", ")),
    };
    errs.push(&f.span(), &f.path, msg);
    None
}

fn path_value(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<PathBuf> {
    let s = string(errs, f)?;
    if s.is_empty() || s.contains('\0') {
        errs.push(&f.span(), &f.path, "expected a file path");
        return None;
    }
    Some(PathBuf::from(s))
}

/// An optional unicast IPv4 address: `Ok(None)` if absent, `Err(())` if bad (reported).
fn opt_unicast(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    key: &str,
) -> Result<Option<Ipv4Addr>, ()> {
    let Some(f) = t.get(key) else {
        return Ok(None);
    };
    let ip = ipv4(errs, &f).ok_or(())?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        errs.push(&f.span(), &f.path, format!("{ip} is not a unicast address"));
        return Err(());
    }
    Ok(Some(ip))
}

// ---------------------------------------------------------------- lease times

/// Where each lease-time key was set in the current scope (None: inherited).
#[derive(Default)]
struct TimeKeys {
    default: Option<Loc>,
    min: Option<Loc>,
    max: Option<Loc>,
    renewal: Option<Loc>,
    rebinding: Option<Loc>,
}

impl TimeKeys {
    fn any(&self) -> bool {
        self.default.is_some()
            || self.min.is_some()
            || self.max.is_some()
            || self.renewal.is_some()
            || self.rebinding.is_some()
    }
}

/// Reads the lease-time keys of `t` over `base`. `global` adds the keys only
/// `[lease]` has (offer-hold, decline-quarantine, authoritative).
fn read_times(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    base: LeaseTimes,
    global: bool,
) -> (LeaseTimes, TimeKeys) {
    let mut times = base;
    let mut keys = TimeKeys::default();
    let secs = |errs: &mut Errors<'_>, key: &str, slot: &mut u32, loc: &mut Option<Loc>| {
        if let Some(f) = t.get(key) {
            if let Some(v) = u32_in(errs, &f, 1, MAX_TIME, "between 1 and 2147483647 seconds") {
                *slot = v;
                *loc = Some(Loc::of(&f));
            }
        }
    };
    secs(errs, "default-time", &mut times.default, &mut keys.default);
    secs(errs, "min-time", &mut times.min, &mut keys.min);
    secs(errs, "max-time", &mut times.max, &mut keys.max);
    let factor = |errs: &mut Errors<'_>, key: &str, slot: &mut f64, loc: &mut Option<Loc>| {
        if let Some(f) = t.get(key) {
            if let Some(v) = number(errs, &f) {
                if v > 0.0 && v < 1.0 {
                    *slot = v;
                    *loc = Some(Loc::of(&f));
                } else {
                    errs.push(
                        &f.span(),
                        &f.path,
                        format!("{v} is out of range: must be between 0 and 1 (exclusive)"),
                    );
                }
            }
        }
    };
    factor(
        errs,
        "renewal-factor",
        &mut times.renewal_factor,
        &mut keys.renewal,
    );
    factor(
        errs,
        "rebinding-factor",
        &mut times.rebinding_factor,
        &mut keys.rebinding,
    );
    if global {
        if let Some(f) = t.get("offer-hold") {
            if let Some(v) = u32_in(errs, &f, 1, 86_400, "between 1 and 86400 seconds") {
                times.offer_hold = v;
            }
        }
        if let Some(f) = t.get("decline-quarantine") {
            if let Some(v) = u32_in(errs, &f, 0, MAX_TIME, "between 0 and 2147483647 seconds") {
                times.decline_quarantine = v;
            }
        }
        if let Some(f) = t.get("authoritative") {
            if let Some(v) = boolean(errs, &f) {
                times.authoritative = v;
            }
        }
    }
    (times, keys)
}

/// Checks min <= default <= max and renewal < rebinding. In a subnet (`global`
/// false) a relation is only checked when the subnet sets one of its keys, so
/// a global mistake is reported once, at `[lease]`.
fn check_times(
    errs: &mut Errors<'_>,
    t: &LeaseTimes,
    keys: &TimeKeys,
    fallback: &Loc,
    global: bool,
) {
    let scope = if global {
        String::new()
    } else {
        " (after merging with [lease])".to_string()
    };
    let place = |a: &Option<Loc>, b: &Option<Loc>| -> Option<Loc> {
        match (a, b) {
            (_, Some(l)) | (Some(l), None) => Some(l.clone()),
            (None, None) if global => Some(fallback.clone()),
            (None, None) => None,
        }
    };
    if t.min > t.default {
        if let Some(l) = place(&keys.default, &keys.min) {
            errs.push(
                &l.span,
                &l.path,
                format!(
                    "min-time {} is greater than default-time {}{scope}",
                    t.min, t.default
                ),
            );
        }
    }
    if t.default > t.max {
        if let Some(l) = place(&keys.default, &keys.max) {
            errs.push(
                &l.span,
                &l.path,
                format!(
                    "default-time {} is greater than max-time {}{scope}",
                    t.default, t.max
                ),
            );
        }
    }
    if t.renewal_factor >= t.rebinding_factor {
        if let Some(l) = place(&keys.renewal, &keys.rebinding) {
            errs.push(
                &l.span,
                &l.path,
                format!(
                    "rebinding-factor {} must be greater than renewal-factor {}{scope}",
                    t.rebinding_factor, t.renewal_factor
                ),
            );
        }
    }
}

// ---------------------------------------------------------------- [[subnet]]

struct RawReservation {
    res: Reservation,
    key_loc: Loc,
    ip_loc: Loc,
}

struct RawSubnet {
    index: usize,
    net: Option<(Ipv4Net, Loc)>,
    relays: Vec<(Ipv4Addr, Loc)>,
    times: LeaseTimes,
    pools: Vec<(Ipv4Addr, Ipv4Addr, Loc)>,
    reservations: Vec<RawReservation>,
    next_server: Option<Ipv4Addr>,
    boot_file: Option<String>,
    options: SubnetOptions,
    backup_pct: Option<u8>,
    backup_boundary: Option<Ipv4Addr>,
}

fn read_subnet(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    index: usize,
    global: &LeaseTimes,
    server_id: Option<Ipv4Addr>,
) -> RawSubnet {
    let net = t.require(errs, "cidr").and_then(|f| {
        let s = string(errs, &f)?;
        match s.parse::<Ipv4Net>() {
            Ok(n) => Some((n, Loc::of(&f))),
            Err(NetParseError::HostBits(n)) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{s} has host bits set; did you mean {n}?"),
                );
                None
            }
            Err(NetParseError::Syntax) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{s} is not an IPv4 network (expected a.b.c.d/len)"),
                );
                None
            }
        }
    });
    let net_val = net.as_ref().map(|(n, _)| *n);

    let mut relays = Vec::new();
    if let Some(f) = t.get("relay-addresses") {
        for it in array(errs, &f).unwrap_or_default() {
            if let Some(ip) = ipv4(errs, &it) {
                relays.push((ip, Loc::of(&it)));
            }
        }
    }

    let (times, keys) = read_times(errs, t, *global, false);
    if keys.any() {
        let fallback = Loc {
            span: t.span.clone(),
            path: t.path.clone(),
        };
        check_times(errs, &times, &keys, &fallback, false);
    }

    let mut options = SubnetOptions::new();
    // Which configuration key set each option code (for conflict messages).
    let mut set_by: HashMap<u8, String> = HashMap::new();
    if let Some(n) = net_val {
        put(
            errs,
            &mut options,
            1,
            &n.mask().octets(),
            &Loc {
                span: t.span.clone(),
                path: t.path.clone(),
            },
        );
        set_by.insert(1, "cidr".into());
    }
    let broadcast = match t.get("broadcast-address") {
        Some(f) => ipv4(errs, &f),
        None => net_val.map(|n| n.broadcast()),
    };
    if let Some(b) = broadcast {
        options.set(28, &b.octets()).ok();
    }
    set_by.insert(28, "broadcast-address".into());

    let mut routers = Vec::new();
    for (key, code) in [
        ("router", 3u8),
        ("dns-servers", 6),
        ("log-servers", 7),
        ("ntp-servers", 42),
    ] {
        let Some(f) = t.get(key) else { continue };
        let Some(list) = ipv4_list(errs, &f) else {
            continue;
        };
        if list.len() > MAX_ADDRS_PER_OPTION {
            errs.push(
                &f.span(),
                &f.path,
                format!(
                    "{} addresses do not fit in one option (at most {MAX_ADDRS_PER_OPTION})",
                    list.len()
                ),
            );
            continue;
        }
        if code == 3 {
            routers.clone_from(&list);
        }
        if !list.is_empty() {
            let bytes: Vec<u8> = list.iter().flat_map(|a| a.octets()).collect();
            put(errs, &mut options, code, &bytes, &Loc::of(&f));
            set_by.insert(code, key.into());
        }
    }
    if let Some(f) = t.get("domain-name") {
        if let Some(s) = string(errs, &f) {
            match check_domain(s) {
                Ok(()) => {
                    put(errs, &mut options, 15, s.as_bytes(), &Loc::of(&f));
                    set_by.insert(15, "domain-name".into());
                }
                Err(m) => errs.push(&f.span(), &f.path, m),
            }
        }
    }
    if let Some(f) = t.get("time-offset") {
        if let Some(v) = int_in(
            errs,
            &f,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            "a signed 32-bit number of seconds",
        ) {
            // In range by the check above.
            let v = v as i32;
            options.set(2, &v.to_be_bytes()).ok();
            set_by.insert(2, "time-offset".into());
        }
    }
    if let Some(f) = t.get("tftp-server") {
        if let Some(s) = text_value(errs, &f, 255) {
            put(errs, &mut options, 66, s.as_bytes(), &Loc::of(&f));
            set_by.insert(66, "tftp-server".into());
        }
    }
    let mut boot_file = None;
    if let Some(f) = t.get("boot-file") {
        if let Some(s) = text_value(errs, &f, MAX_BOOT_FILE) {
            put(errs, &mut options, 67, s.as_bytes(), &Loc::of(&f));
            set_by.insert(67, "boot-file".into());
            boot_file = Some(s.to_string());
        }
    }
    let next_server = t.get("next-server").and_then(|f| ipv4(errs, &f));

    if let Some(f) = t.get("options") {
        for ot in tables(errs, &f, OPTION_KEYS) {
            read_generic_option(errs, &ot, &mut options, &mut set_by);
        }
    }

    let mut pools = Vec::new();
    if let Some(f) = t.get("pool") {
        for pt in tables(errs, &f, POOL_KEYS) {
            if let Some(p) = read_pool(errs, &pt, net_val, server_id, &routers) {
                pools.push(p);
            }
        }
    }

    let mut reservations = Vec::new();
    if let Some(f) = t.get("reservation") {
        for rt in tables(errs, &f, RESERVATION_KEYS) {
            if let Some(r) = read_reservation(errs, &rt, net_val, server_id) {
                reservations.push(r);
            }
        }
    }

    let (backup_pct, backup_boundary) = super::failover::read_scope_balance(errs, t, &pools);

    RawSubnet {
        index,
        net,
        relays,
        times,
        pools,
        reservations,
        next_server,
        boot_file,
        options,
        backup_pct,
        backup_boundary,
    }
}

fn put(errs: &mut Errors<'_>, options: &mut SubnetOptions, code: u8, value: &[u8], loc: &Loc) {
    if let Err(e) = options.set(code, value) {
        errs.push(&loc.span, &loc.path, e.to_string());
    }
}

fn text_value<'a>(errs: &mut Errors<'_>, f: &Field<'a, '_>, max: usize) -> Option<&'a str> {
    let s = string(errs, f)?;
    if s.is_empty() {
        errs.push(&f.span(), &f.path, "must not be empty");
        None
    } else if s.len() > max {
        errs.push(
            &f.span(),
            &f.path,
            format!("is {} bytes long; the limit is {max}", s.len()),
        );
        None
    } else if s.contains('\0') {
        errs.push(&f.span(), &f.path, "must not contain NUL characters");
        None
    } else {
        Some(s)
    }
}

fn check_domain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("domain name is empty".into());
    }
    if s.len() > 255 {
        return Err(format!(
            "domain name is {} bytes long; the limit is 255",
            s.len()
        ));
    }
    let body = s.strip_suffix('.').unwrap_or(s);
    for label in body.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty()
            || label.len() > 63
            || !ok_chars
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "`{s}` is not a valid domain name (bad label `{label}`)"
            ));
        }
    }
    Ok(())
}

fn read_generic_option(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    options: &mut SubnetOptions,
    set_by: &mut HashMap<u8, String>,
) {
    let code = t.require(errs, "code").and_then(|f| {
        let c = u32_in(errs, &f, 1, 254, "between 1 and 254")?;
        let c = u8::try_from(c).ok()?;
        let refuse = |errs: &mut Errors<'_>, why: String| {
            errs.push(&f.span(), &f.path, why);
            None
        };
        if SERVER_OWNED_OPTIONS.contains(&c) {
            return refuse(
                errs,
                format!("option {c} is managed by the server and cannot be configured"),
            );
        }
        match c {
            1 => refuse(errs, "option 1 (subnet mask) is derived from `cidr`".into()),
            28 => refuse(errs, "option 28: use `broadcast-address`".into()),
            _ => match set_by.get(&c) {
                Some(by) => refuse(errs, format!("option {c} is already set by `{by}`")),
                None => Some((c, f.path.clone())),
            },
        }
    });

    let kinds: Vec<(&str, Field<'_, '_>)> = OPTION_KINDS
        .iter()
        .filter_map(|k| t.get(k).map(|f| (*k, f)))
        .collect();
    let value_field = match kinds.as_slice() {
        [] => {
            errs.push(
                &t.span,
                &t.path,
                format!(
                    "an option needs exactly one of: {}",
                    OPTION_KINDS.join(", ")
                ),
            );
            return;
        }
        [one] => one,
        [_, (_, second), ..] => {
            errs.push(
                &second.span(),
                &second.path,
                format!(
                    "an option takes exactly one of: {}",
                    OPTION_KINDS.join(", ")
                ),
            );
            return;
        }
    };
    let (kind, f) = (value_field.0, &value_field.1);
    let bytes: Option<Vec<u8>> = match kind {
        "hex" => string(errs, f).and_then(|s| match parse_hex(s) {
            Ok(b) => Some(b),
            Err(m) => {
                errs.push(&f.span(), &f.path, format!("`{s}` is not hex: {m}"));
                None
            }
        }),
        "text" => text_value(errs, f, 255).map(|s| s.as_bytes().to_vec()),
        "ip" => {
            let list = match f.value() {
                toml::de::DeValue::String(_) => ipv4(errs, f).map(|a| vec![a]),
                _ => ipv4_list(errs, f),
            };
            match list {
                Some(l) if l.is_empty() => {
                    errs.push(&f.span(), &f.path, "address list is empty");
                    None
                }
                other => other.map(|l| l.iter().flat_map(|a| a.octets()).collect()),
            }
        }
        "u8" => int_in(errs, f, 0, 0xff, "0..=255").map(|v| vec![v as u8]),
        "u16" => int_in(errs, f, 0, 0xffff, "0..=65535").map(|v| (v as u16).to_be_bytes().to_vec()),
        "u32" => int_in(errs, f, 0, i64::from(u32::MAX), "0..=4294967295")
            .map(|v| (v as u32).to_be_bytes().to_vec()),
        // OPTION_KINDS and this match list the same names.
        _ => None,
    };
    if let (Some((c, code_path)), Some(b)) = (code, bytes) {
        if b.len() > 255 {
            errs.push(
                &f.span(),
                &f.path,
                format!("encoded value is {} bytes; the limit is 255", b.len()),
            );
            return;
        }
        put(errs, options, c, &b, &Loc::of(f));
        let origin = code_path.strip_suffix(".code").unwrap_or(&code_path);
        let origin = origin.rsplit('.').next().unwrap_or(origin);
        set_by.insert(c, origin.to_string());
    }
}

/// Parses `a.b.c.d-e.f.g.h`.
fn parse_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let Some((a, b)) = s.split_once('-') else {
        return Err(format!(
            "`{s}` is not a range (expected first-last, e.g. 10.0.0.10-10.0.0.200)"
        ));
    };
    let first = parse_ipv4(a).ok_or_else(|| format!("{} is not an IPv4 address", a.trim()))?;
    let last = parse_ipv4(b).ok_or_else(|| format!("{} is not an IPv4 address", b.trim()))?;
    Ok((first, last))
}

fn read_pool(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    net: Option<Ipv4Net>,
    server_id: Option<Ipv4Addr>,
    routers: &[Ipv4Addr],
) -> Option<(Ipv4Addr, Ipv4Addr, Loc)> {
    let f = t.require(errs, "range")?;
    let s = string(errs, &f)?;
    let (first, last) = match parse_range(s) {
        Ok(r) => r,
        Err(m) => {
            errs.push(&f.span(), &f.path, m);
            return None;
        }
    };
    let (a, b) = (u32::from(first), u32::from(last));
    let show = format!("{first}-{last}");
    let mut ok = true;
    if a > b {
        errs.push(
            &f.span(),
            &f.path,
            format!("range {show} is empty: first is above last"),
        );
        return None;
    }
    let size = u64::from(b - a) + 1;
    if size > MAX_POOL_SIZE {
        errs.push(
            &f.span(),
            &f.path,
            format!("range {show} has {size} addresses; a pool may hold at most {MAX_POOL_SIZE} (2^24), split it"),
        );
        ok = false;
    }
    if let Some(n) = net {
        if !n.contains(first) || !n.contains(last) {
            errs.push(
                &f.span(),
                &f.path,
                format!("range {show} is outside subnet {n}"),
            );
            return None;
        }
        if n.has_reserved_ends() {
            for (ip, what) in [(n.addr(), "network"), (n.broadcast(), "broadcast")] {
                if (a..=b).contains(&u32::from(ip)) {
                    errs.push(
                        &f.span(),
                        &f.path,
                        format!("range {show} includes the {what} address {ip}"),
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(sid) = server_id.filter(|s| (a..=b).contains(&u32::from(*s))) {
        errs.push(
            &f.span(),
            &f.path,
            format!("range {show} includes the server address {sid}"),
        );
        ok = false;
    }
    for r in routers.iter().filter(|r| (a..=b).contains(&u32::from(**r))) {
        errs.push(
            &f.span(),
            &f.path,
            format!("range {show} includes the router address {r}"),
        );
        ok = false;
    }
    ok.then(|| (first, last, Loc::of(&f)))
}

fn read_reservation(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    net: Option<Ipv4Net>,
    server_id: Option<Ipv4Addr>,
) -> Option<RawReservation> {
    let hw = t.get("hw");
    let cid = t.get("client-id");
    let key = match (hw, cid) {
        (Some(_), Some(c)) => {
            errs.push(
                &c.span(),
                &c.path,
                "give either `hw` or `client-id`, not both",
            );
            None
        }
        (None, None) => {
            errs.push(&t.span, &t.path, "a reservation needs `hw` or `client-id`");
            None
        }
        (Some(f), None) => string(errs, &f).and_then(|s| match parse_hex(s) {
            Ok(b) => match <[u8; 6]>::try_from(b.as_slice()) {
                Ok(mac) => Some((ReservationKey::Hw(mac), Loc::of(&f))),
                Err(_) => {
                    errs.push(
                        &f.span(),
                        &f.path,
                        format!("`{s}` is not a 6-byte hardware address"),
                    );
                    None
                }
            },
            Err(m) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("`{s}` is not a hardware address: {m}"),
                );
                None
            }
        }),
        (None, Some(f)) => string(errs, &f).and_then(|s| match parse_hex(s) {
            Ok(b) if !b.is_empty() && b.len() <= 255 => {
                Some((ReservationKey::ClientId(b), Loc::of(&f)))
            }
            Ok(b) => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("client-id must be 1..=255 bytes, got {}", b.len()),
                );
                None
            }
            Err(m) => {
                errs.push(&f.span(), &f.path, format!("`{s}` is not hex: {m}"));
                None
            }
        }),
    };
    let ip = t.require(errs, "ip").and_then(|f| {
        let ip = ipv4(errs, &f)?;
        if let Some(n) = net {
            if !n.contains(ip) {
                errs.push(&f.span(), &f.path, format!("{ip} is outside subnet {n}"));
                return None;
            }
            if n.has_reserved_ends() && (ip == n.addr() || ip == n.broadcast()) {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{ip} is the network or broadcast address of {n}"),
                );
                return None;
            }
        }
        if server_id == Some(ip) {
            errs.push(
                &f.span(),
                &f.path,
                format!("{ip} is the server's own address"),
            );
            return None;
        }
        Some((ip, Loc::of(&f)))
    });
    let ((key, key_loc), (ip, ip_loc)) = (key?, ip?);
    Some(RawReservation {
        res: Reservation { key, ip },
        key_loc,
        ip_loc,
    })
}

// ---------------------------------------------------------------- whole-file checks

fn describe_key(k: &ReservationKey) -> String {
    match k {
        ReservationKey::Hw(m) => format!(
            "hw {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        ReservationKey::ClientId(b) => {
            let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("client-id {}", hex.join(""))
        }
    }
}

/// Reports every pair of overlapping `items` (first, last, loc, label), at the
/// one that comes later in the file.
fn report_overlaps(errs: &mut Errors<'_>, mut items: Vec<(u32, u32, Loc, String)>) {
    items.sort_by_key(|(first, _, loc, _)| (*first, loc.span.start));
    // Index of the item reaching furthest so far; any later item starting at or
    // before its end overlaps it.
    let mut reach: Option<usize> = None;
    for i in 0..items.len() {
        if let Some(r) = reach {
            if items[i].0 <= items[r].1 {
                let (later, earlier) = if items[i].2.span.start >= items[r].2.span.start {
                    (i, r)
                } else {
                    (r, i)
                };
                let line = errs.position(items[earlier].2.span.start).line;
                let msg = format!(
                    "{} overlaps {} {} (line {line})",
                    items[later].3, items[earlier].2.path, items[earlier].3
                );
                let loc = items[later].2.clone();
                errs.push(&loc.span, &loc.path, msg);
            }
        }
        if reach.is_none_or(|r| items[i].1 > items[r].1) {
            reach = Some(i);
        }
    }
}

fn cross_check(errs: &mut Errors<'_>, raws: &[RawSubnet]) {
    // Subnets must not overlap: an address must select one subnet.
    let nets: Vec<_> = raws
        .iter()
        .filter_map(|r| r.net.as_ref())
        .map(|(n, loc)| (n.first_u32(), n.last_u32(), loc.clone(), n.to_string()))
        .collect();
    report_overlaps(errs, nets);

    // Pools must not overlap anywhere in the file.
    let pools: Vec<_> = raws
        .iter()
        .flat_map(|r| r.pools.iter())
        .map(|(a, b, loc)| {
            (
                u32::from(*a),
                u32::from(*b),
                loc.clone(),
                format!("{a}-{b}"),
            )
        })
        .collect();
    report_overlaps(errs, pools);

    // Relay addresses select exactly one subnet.
    let mut sorted_nets: Vec<(u32, u32, usize, Ipv4Net)> = raws
        .iter()
        .filter_map(|r| {
            r.net
                .as_ref()
                .map(|(n, _)| (n.first_u32(), n.last_u32(), r.index, *n))
        })
        .collect();
    sorted_nets.sort_unstable_by_key(|x| x.0);
    let mut relay_seen: HashMap<Ipv4Addr, Loc> = HashMap::new();
    for r in raws {
        for (ip, loc) in &r.relays {
            let v = u32::from(*ip);
            let i = sorted_nets.partition_point(|x| x.0 <= v);
            if let Some(&(_, last, idx, n)) = i.checked_sub(1).and_then(|j| sorted_nets.get(j)) {
                if v <= last && idx != r.index {
                    errs.push(
                        &loc.span,
                        &loc.path,
                        format!(
                            "{ip} is inside subnet[{idx}] ({n}), so it already selects that subnet"
                        ),
                    );
                    continue;
                }
            }
            if let Some(prev) = relay_seen.get(ip) {
                let line = errs.position(prev.span.start).line;
                errs.push(
                    &loc.span,
                    &loc.path,
                    format!(
                        "relay address {ip} is already listed at {} (line {line})",
                        prev.path
                    ),
                );
            } else {
                relay_seen.insert(*ip, loc.clone());
            }
        }
    }

    // Reservations: one per client, one per address.
    let mut by_key: HashMap<&ReservationKey, &Loc> = HashMap::new();
    let mut by_ip: HashMap<Ipv4Addr, &Loc> = HashMap::new();
    for res in raws.iter().flat_map(|r| r.reservations.iter()) {
        if let Some(prev) = by_key.get(&res.res.key) {
            let line = errs.position(prev.span.start).line;
            errs.push(
                &res.key_loc.span,
                &res.key_loc.path,
                format!(
                    "duplicate reservation: {} is already reserved at {} (line {line})",
                    describe_key(&res.res.key),
                    prev.path
                ),
            );
        } else {
            by_key.insert(&res.res.key, &res.key_loc);
        }
        if let Some(prev) = by_ip.get(&res.res.ip) {
            let line = errs.position(prev.span.start).line;
            errs.push(
                &res.ip_loc.span,
                &res.ip_loc.path,
                format!(
                    "duplicate reservation: {} is already reserved at {} (line {line})",
                    res.res.ip, prev.path
                ),
            );
        } else {
            by_ip.insert(res.res.ip, &res.ip_loc);
        }
    }
}
