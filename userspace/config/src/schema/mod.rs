//! The configuration schema: walks the TOML document, validates every field
//! and cross-checks (overlaps, duplicates), collecting all errors.
//!
//! Here: the keys of each table and `build`, which walks the document; one
//! file per section reads it.

mod checks;
mod failover_scope;
mod ops;
mod pools;
mod provisioning;
mod regs;
mod server;
mod subnet;
mod times;
mod tls;
mod v6;

use std::path::PathBuf;

use toml::de::DeTable;

use super::error::{ConfigErrors, Errors};
use super::reader::{tables, Field, Span, Table};
use super::{Config, LeaseTimes, Pool, SharedNetwork, Subnet, SubnetLookup};

use checks::cross_check;
use server::read_server;
use subnet::read_subnet;
use times::{check_times, read_times, TimeKeys};

pub(crate) const ROOT_KEYS: &[&str] = &[
    "server",
    "lease",
    "class",
    "shared-network",
    "subnet",
    "host",
    "failover",
    "rate-limit",
    "limits",
    "reconfigure",
    "dhcpv6",
    "subnet6",
    "api",
    "bulk-leasequery",
    "event-log",
    "alarms",
    "registrations",
];
const SERVER_KEYS: &[&str] = &[
    "interface",
    "io",
    "xdp-mode",
    "queues",
    "server-id",
    "lease-file",
    "commit",
    "commit-min-gap-us",
    "worker-slice-us",
    "background-nice",
    "commit-coalesce-us",
    "commit-coalesce-max-us",
    "ebpf-object",
    "control-socket",
    "trusted-relays",
    "untrusted-relay-info",
    "leasequery-allow",
    "registration-file",
    "user",
    "group",
];
/// Largest `[lease] spare-addresses` (2^24 spare records: 2 GiB of lease file).
const MAX_SPARE_ADDRESSES: u32 = 1 << 24;
const LEASE_KEYS: &[&str] = &[
    "default-time",
    "min-time",
    "max-time",
    "renewal-factor",
    "rebinding-factor",
    "offer-hold",
    "decline-quarantine",
    "authoritative",
    "spare-addresses",
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
    "shared-network",
    "deny-unknown",
    "dynamic-bootp",
    "reconfigure-retries",
    "reconfigure-first-retry-ms",
    "failover",
];
const OPTION_KEYS: &[&str] = &["code", "hex", "text", "ip", "u8", "u16", "u32"];
const OPTION_KINDS: &[&str] = &["hex", "text", "ip", "u8", "u16", "u32"];
const RESERVATION_KEYS: &[&str] = &["hw", "client-id", "ip", "group"];

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
pub fn schema_keys() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("", ROOT_KEYS.to_vec()),
        ("server", SERVER_KEYS.to_vec()),
        ("lease", LEASE_KEYS.to_vec()),
        ("class", provisioning::class_keys()),
        ("shared-network", provisioning::shared_network_keys()),
        ("subnet", SUBNET_KEYS.to_vec()),
        ("subnet.options", OPTION_KEYS.to_vec()),
        ("subnet.pool", provisioning::pool_keys()),
        ("subnet.reservation", RESERVATION_KEYS.to_vec()),
        ("host", provisioning::HOST_KEYS.to_vec()),
        ("failover", crate::failover::FAILOVER_KEYS.to_vec()),
        ("rate-limit", crate::ratelimit::RATE_LIMIT_KEYS.to_vec()),
        ("limits", crate::limits::LIMITS_KEYS.to_vec()),
        ("reconfigure", crate::reconfigure::RECONFIGURE_KEYS.to_vec()),
        ("api", crate::api::API_KEYS.to_vec()),
        (
            "bulk-leasequery",
            crate::bulk_leasequery::BULK_LEASEQUERY_KEYS.to_vec(),
        ),
        ("event-log", ops::EVENT_LOG_KEYS.to_vec()),
        ("event-log.nats", ops::NATS_KEYS.to_vec()),
        ("alarms", ops::ALARMS_KEYS.to_vec()),
        ("registrations", regs::REGISTRATIONS_KEYS.to_vec()),
        ("registrations.postgres", regs::POSTGRES_KEYS.to_vec()),
        ("dhcpv6", v6::DHCPV6_KEYS.to_vec()),
        ("subnet6", v6::SUBNET6_KEYS.to_vec()),
        ("subnet6.pool", v6::POOL6_KEYS.to_vec()),
        ("subnet6.pd-pool", v6::PD_POOL_KEYS.to_vec()),
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

    let mut lease_spare = None;
    let (lease, lease_keys, lease_span) = match root.get("lease") {
        Some(f) => match Table::open(&mut errs, &f, LEASE_KEYS) {
            Some(t) => {
                let (times, keys) = read_times(&mut errs, &t, LeaseTimes::default(), true);
                if let Some(f) = t.get("spare-addresses") {
                    lease_spare = crate::reader::u32_in(
                        &mut errs,
                        &f,
                        0,
                        MAX_SPARE_ADDRESSES,
                        "between 0 and 16777216 addresses",
                    );
                }
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

    let mut failovers = root
        .get("failover")
        .map(|f| failover_scope::read_failovers(&mut errs, &f))
        .unwrap_or_default();

    let rate_limit = root
        .get("rate-limit")
        .and_then(|f| Table::open(&mut errs, &f, crate::ratelimit::RATE_LIMIT_KEYS))
        .map(|t| crate::ratelimit::read_rate_limit(&mut errs, &t))
        .unwrap_or_default();
    let limits = root
        .get("limits")
        .and_then(|f| Table::open(&mut errs, &f, crate::limits::LIMITS_KEYS))
        .map(|t| crate::limits::read_limits(&mut errs, &t))
        .unwrap_or_default();
    let reconfigure = root
        .get("reconfigure")
        .and_then(|f| Table::open(&mut errs, &f, crate::reconfigure::RECONFIGURE_KEYS))
        .map(|t| crate::reconfigure::read_reconfigure(&mut errs, &t));
    // Classes first: pools, reservations, hosts and other classes name them.
    let class_keys = provisioning::class_keys();
    let class_tables = root
        .get("class")
        .map(|f| tables(&mut errs, &f, &class_keys))
        .unwrap_or_default();
    let class_names = provisioning::class_names(&mut errs, &class_tables);
    let classes: Vec<_> = class_tables
        .iter()
        .filter_map(|t| provisioning::read_class(&mut errs, t, &class_names))
        .collect();

    // Shared networks before subnets: a member subnet inherits the network's lease times.
    let sn_keys = provisioning::shared_network_keys();
    let sn_tables = root
        .get("shared-network")
        .map(|f| tables(&mut errs, &f, &sn_keys))
        .unwrap_or_default();
    let mut networks: Vec<SharedNetwork> = Vec::new();
    let mut network_ctx: Vec<(String, LeaseTimes)> = Vec::new();
    let mut network_locs: Vec<Loc> = Vec::new();
    let mut network_relays: Vec<Vec<(std::net::Ipv4Addr, Loc)>> = Vec::new();
    for t in &sn_tables {
        let name = t.require(&mut errs, "name").and_then(|f| {
            crate::reader::string(&mut errs, &f).map(|s| (s.to_string(), Loc::of(&f)))
        });
        let mut relays = Vec::new();
        if let Some(f) = t.get("relay-addresses") {
            for it in crate::reader::array(&mut errs, &f).unwrap_or_default() {
                if let Some(ip) = crate::reader::ipv4(&mut errs, &it) {
                    relays.push((ip, Loc::of(&it)));
                }
            }
        }
        let deny_unknown = t
            .get("deny-unknown")
            .and_then(|f| crate::reader::boolean(&mut errs, &f))
            .unwrap_or(false);
        let settings = provisioning::read_settings(&mut errs, t);
        let Some((name, loc)) = name else { continue };
        if let Some(i) = network_ctx.iter().position(|(n, _)| *n == name) {
            let line = errs.position(network_locs[i].span.start).line;
            errs.push(
                &loc.span,
                &loc.path,
                format!(
                    "shared network `{name}` is already declared at {} (line {line})",
                    network_locs[i].path
                ),
            );
            continue;
        }
        let mut times = lease;
        if let Some(v) = settings.times.default {
            times.default = v;
        }
        if let Some(v) = settings.times.min {
            times.min = v;
        }
        if let Some(v) = settings.times.max {
            times.max = v;
        }
        if settings.times.any() {
            let keys = TimeKeys {
                default: t.get("default-time").map(|f| Loc::of(&f)),
                min: t.get("min-time").map(|f| Loc::of(&f)),
                max: t.get("max-time").map(|f| Loc::of(&f)),
                ..TimeKeys::default()
            };
            check_times(
                &mut errs,
                &times,
                &keys,
                &Loc {
                    span: t.span.clone(),
                    path: t.path.clone(),
                },
                false,
            );
        }
        network_ctx.push((name.clone(), times));
        network_locs.push(loc);
        network_relays.push(relays);
        networks.push(SharedNetwork {
            index: networks.len(),
            name,
            subnets: Vec::new(),
            relay_addresses: Vec::new(),
            deny_unknown,
            settings,
        });
    }
    let ctx = subnet::SubnetContext {
        classes: &class_names,
        networks: &network_ctx,
    };
    let api = match root.get("api") {
        Some(f) => Table::open(&mut errs, &f, crate::api::API_KEYS)
            .and_then(|t| crate::api::read_api(&mut errs, &t)),
        None => Some(crate::api::ApiConfig::default()),
    };
    let bulk_leasequery = root.get("bulk-leasequery").and_then(|f| {
        Table::open(&mut errs, &f, crate::bulk_leasequery::BULK_LEASEQUERY_KEYS)
            .and_then(|t| crate::bulk_leasequery::read_bulk_leasequery(&mut errs, &t))
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

    let registrations = match root.get("registrations") {
        Some(f) => Table::open(&mut errs, &f, regs::REGISTRATIONS_KEYS).and_then(|t| {
            let file = server.as_ref().map(|s| s.registration_file.is_some());
            regs::read_registrations(&mut errs, &t, file)
        }),
        None => Some(crate::RegistrationBackend::Local),
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
            raws.push(read_subnet(&mut errs, &t, index, &lease, server_id, &ctx));
        }
    }
    // A network's relay addresses select its first member subnet (the pool choice then
    // spans every member); the whole-file checks below see them as that subnet's.
    for (i, relays) in network_relays.into_iter().enumerate() {
        let members: Vec<usize> = raws
            .iter()
            .filter(|r| r.shared_network.as_ref().is_some_and(|(n, _)| *n == i))
            .map(|r| r.index)
            .collect();
        match members.first() {
            Some(&first) => {
                raws[first].relays.extend(relays.iter().cloned());
                networks[i].subnets = members;
                networks[i].relay_addresses = relays.into_iter().map(|(a, _)| a).collect();
            }
            None => {
                let loc = &network_locs[i];
                errs.push(
                    &loc.span,
                    &loc.path,
                    format!("shared network `{}` has no subnet (set `shared-network = \"{}\"` in its [[subnet]]s)", networks[i].name, networks[i].name),
                );
            }
        }
    }

    let mut hosts = Vec::new();
    if let Some(f) = root.get("host") {
        for t in tables(&mut errs, &f, provisioning::HOST_KEYS) {
            if let Some(h) = provisioning::read_host(&mut errs, &t, &class_names) {
                hosts.push(h);
            }
        }
    }

    cross_check(&mut errs, &raws, &hosts);
    let subnet_failover = failover_scope::assign_subnets(&mut errs, &mut failovers, &raws);
    let hosts = hosts.into_iter().map(|(h, _)| h).collect();

    let v6 = read_v6(&mut errs, &root, &class_names);

    match (server, api, registrations) {
        (Some(server), Some(api), Some(registrations)) if errs.is_empty() => {
            let mut next_pool_id = 0u32;
            let mut subnets = Vec::with_capacity(raws.len());
            for (r, failover) in raws.into_iter().zip(subnet_failover) {
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
                    pool_rules: r.pool_rules,
                    shared_network: r.shared_network.map(|(i, _)| i),
                    deny_unknown: r.deny_unknown,
                    dynamic_bootp: r.dynamic_bootp,
                    reconfigure: r.reconfigure,
                    failover,
                });
            }
            let lookup = SubnetLookup::build(&subnets);
            let failovers: Vec<_> = failovers
                .into_iter()
                .map(|r| {
                    let mut f = r.cfg;
                    f.pools = crate::failover::pool_balance(&subnets, &f.subnets);
                    f
                })
                .collect();
            Ok(Config {
                server,
                failovers,
                rate_limit,
                limits,
                reconfigure,
                api,
                bulk_leasequery,
                lease,
                lease_spare,
                subnets,
                classes,
                shared_networks: networks,
                hosts,
                event_log,
                alarms,
                registrations,
                source: PathBuf::from(source),
                lookup,
                v6,
            })
        }
        _ => Err(errs.finish()),
    }
}

/// `[dhcpv6]` and `[[subnet6]]` (`v6.rs`).
fn read_v6(
    errs: &mut Errors<'_>,
    root: &Table<'_, '_>,
    class_names: &provisioning::ClassNames,
) -> crate::V6Config {
    let d = root
        .get("dhcpv6")
        .and_then(|f| Table::open(errs, &f, v6::DHCPV6_KEYS));
    let mut c = v6::read_dhcpv6(errs, d.as_ref());
    if let Some(f) = root.get("subnet6") {
        let ts = tables(errs, &f, v6::SUBNET6_KEYS);
        for (i, t) in ts.iter().enumerate() {
            if let Some(s) = v6::read_subnet6(errs, t, i, class_names) {
                c.subnets.push(s);
            }
        }
        v6::check_subnets6(errs, &ts, &c.subnets);
    }
    c
}
