//! The configuration schema: walks the TOML document, validates every field
//! and cross-checks (overlaps, duplicates), collecting all errors.
//!
//! Here: the keys of each table and `build`, which walks the document; one
//! file per section reads it.

mod checks;
mod ops;
mod pools;
mod server;
mod subnet;
mod times;

use std::path::PathBuf;

use toml::de::DeTable;

use super::error::{ConfigErrors, Errors};
use super::reader::{tables, Field, Span, Table};
use super::{Config, LeaseTimes, Pool, Subnet, SubnetLookup};

use checks::cross_check;
use server::read_server;
use subnet::read_subnet;
use times::{check_times, read_times, TimeKeys};

pub(crate) const ROOT_KEYS: &[&str] = &[
    "server",
    "lease",
    "subnet",
    "failover",
    "event-log",
    "alarms",
];
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
    "trusted-relays",
    "untrusted-relay-info",
    "leasequery-allow",
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

/// Every table of the file and the keys it accepts (`subnet.pool` = `[[subnet.pool]]`), for
/// the configuration reference and its test.
pub fn schema_keys() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("", ROOT_KEYS),
        ("server", SERVER_KEYS),
        ("lease", LEASE_KEYS),
        ("subnet", SUBNET_KEYS),
        ("subnet.options", OPTION_KEYS),
        ("subnet.pool", POOL_KEYS),
        ("subnet.reservation", RESERVATION_KEYS),
        ("failover", crate::failover::FAILOVER_KEYS),
        ("event-log", ops::EVENT_LOG_KEYS),
        ("alarms", ops::ALARMS_KEYS),
    ]
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
        Table::open(&mut errs, &f, crate::failover::FAILOVER_KEYS)
            .and_then(|t| crate::failover::read_failover(&mut errs, &t))
    });

    let event_log = root.get("event-log").and_then(|f| {
        Table::open(&mut errs, &f, ops::EVENT_LOG_KEYS)
            .and_then(|t| ops::read_event_log(&mut errs, &t))
    });
    let alarms = match root.get("alarms") {
        Some(f) => Table::open(&mut errs, &f, ops::ALARMS_KEYS)
            .and_then(|t| ops::read_alarms(&mut errs, &t))
            .unwrap_or_default(),
        None => crate::AlarmsConfig::default(),
    };

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
                f.pools = crate::failover::pool_balance(&subnets);
            }
            Ok(Config {
                server,
                failover,
                lease,
                subnets,
                event_log,
                alarms,
                source: PathBuf::from(source),
                lookup,
            })
        }
        _ => Err(errs.finish()),
    }
}
