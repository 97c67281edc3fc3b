//! The `[failover]` section: one failover relationship (draft-ietf-dhc-failover-12).
//!
//! ```toml
//! [failover]
//! role = "primary"              # or "secondary"
//! name = "pair"                 # relationship name, identical on both partners
//! address = "10.88.0.1"         # our address (listen and connect from); IPv4 or IPv6
//! port = 647
//! peer-address = "10.88.0.2"
//! peer-port = 647
//! mclt = 3600                   # primary; the secondary uses the primary's
//! max-unacked-updates = 1000      # BNDUPDs the partner may have unacknowledged
//! poll-interval = 10            # CONTACT keepalive, seconds
//! poll-timeout = 60             # silence that means the partner is lost
//! use-safe-period = true
//! safe-period = 14400           # COMMUNICATIONS-INTERRUPTED -> PARTNER-DOWN
//! lease-period-factor = 1.5
//! split = 128                   # load balancing (primary); absent = off
//! load-balance-max-seconds = 3
//! backup-pct = 50
//! dynamic-bootp-backup-pct = 50 # primary: backup's share in scopes with dynamic-bootp; absent = backup-pct
//! rebind-limit = 0             # T2 = T1 + this for the partner's clients; NORMAL: their RENEWs unanswered
//! failback-hold = 0             # flap guard: PARTNER-DOWN -> NORMAL waits this long; 0 = off
//! failover-recover = 0          # unix time of a restored database copy; 0 = off
//! partner-software = "xdhcpd"   # or "isc-dhcpd": plain TCP, address allowlist only
//! auth-key-file = "/etc/xdhcpd/failover.key"  # pre-shared key (xdhcpd partners: required)
//! partner-mclt-min = 300        # secondary: refuse a CONNECT with a smaller MCLT
//! partner-mclt-max = 86400      # secondary: refuse a CONNECT with a larger MCLT
//! relay-health-check = "off"    # "v4": answer the partner's clients of a relay cut off from it
//! rhc-unresponsive-time = 30    # the relay health check's settings (CPNR names)
//! rhc-request-count = 10
//! rhc-elapsed-time = 10
//! rhc-response-time = 60
//! rhc-restart-time = 120
//! rhc-warning-interval = 300
//! rhc-max-relays = 4096
//! ```

use std::net::{IpAddr, Ipv4Addr};

use super::error::Errors;
use super::reader::{boolean, ipv4, number, string, u32_in, Table};

pub(crate) const FAILOVER_KEYS: &[&str] = &[
    "role",
    "name",
    "address",
    "port",
    "peer-address",
    "peer-port",
    "mclt",
    "max-unacked-updates",
    "poll-interval",
    "poll-timeout",
    "use-safe-period",
    "safe-period",
    "lease-period-factor",
    "split",
    "load-balance-max-seconds",
    "backup-pct",
    "dynamic-bootp-backup-pct",
    "rebind-limit",
    "failback-hold",
    "failover-recover",
    "partner-software",
    "auth-key-file",
    "partner-mclt-min",
    "partner-mclt-max",
    "relay-health-check",
    "rhc-unresponsive-time",
    "rhc-request-count",
    "rhc-elapsed-time",
    "rhc-response-time",
    "rhc-restart-time",
    "rhc-warning-interval",
    "rhc-max-relays",
    "subnets",
];

/// Most `[[failover]]` relationships one server takes part in (N:1 backup).
pub const MAX_RELATIONSHIPS: usize = 8;

/// The relay health check's settings (`relay-health-check`, `rhc-*`; CPNR's names). Seconds
/// and counts; see `xdhcpd_failover::relay_health` for what each does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayHealthConfig {
    /// `relay-health-check = "v4"` (default `"off"`).
    pub enabled: bool,
    pub unresponsive_time: u32,
    pub request_count: u32,
    pub elapsed_time: u16,
    pub response_time: u32,
    pub restart_time: u32,
    pub warning_interval: u32,
    pub max_relays: u32,
}

impl Default for RelayHealthConfig {
    fn default() -> Self {
        RelayHealthConfig {
            enabled: false,
            unresponsive_time: 30,
            request_count: 10,
            elapsed_time: 10,
            response_time: 60,
            restart_time: 120,
            warning_interval: 300,
            max_relays: 4096,
        }
    }
}

/// What runs on the partner: decides how the connection is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartnerSoftware {
    /// Another xdhcpd: both sides prove the pre-shared key before any failover message.
    Xdhcpd,
    /// ISC dhcpd, which has no authentication: plain TCP, the address allowlist only.
    IscDhcpd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverRole {
    Primary,
    Secondary,
}

/// A validated `[failover]` section. Times in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct FailoverConfig {
    pub role: FailoverRole,
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub peer_address: IpAddr,
    pub peer_port: u16,
    pub mclt: u32,
    pub max_unacked_updates: u32,
    pub poll_interval: u32,
    pub poll_timeout: u32,
    pub use_safe_period: bool,
    pub safe_period: u32,
    pub lease_period_factor: f64,
    pub split: Option<u16>,
    pub load_balance_max_seconds: u16,
    pub backup_pct: u8,
    /// `dynamic-bootp-backup-pct` (primary; the secondary ignores it, the primary decides the
    /// split): the backup's share of the pools of `dynamic-bootp` subnets, whose addresses
    /// each partner only ever allocates from its own share (draft-12 5.14). None: the scope's
    /// `backup-pct`, else `backup_pct`.
    pub dynamic_bootp_backup_pct: Option<u8>,
    pub rebind_limit: u32,
    /// `failback-hold` (default 0 = off): in PARTNER-DOWN, the step back to NORMAL waits until
    /// we have been PARTNER-DOWN and the partner reachable this long (flap guard).
    pub failback_hold: u32,
    pub failover_recover: Option<u32>,
    /// `partner-software` (default xdhcpd).
    pub partner_software: PartnerSoftware,
    /// `auth-key-file`: the pre-shared key's file (required for an xdhcpd partner).
    pub auth_key_file: Option<std::path::PathBuf>,
    /// Secondary: the smallest MCLT accepted from the primary's CONNECT.
    pub partner_mclt_min: u32,
    /// Secondary: the largest MCLT accepted from the primary's CONNECT.
    pub partner_mclt_max: u32,
    /// The relay health check (`relay-health-check`, `rhc-*`).
    pub relay_health: RelayHealthConfig,
    /// Per pool of the subnets this relationship covers: the scope's balance settings (see
    /// [`PoolBalanceCfg`]); filled from the `[[subnet]]` tables once pool ids are known. The
    /// failover driver of this relationship touches only these pools.
    pub pools: Vec<PoolBalanceCfg>,
    /// Indexes (into `Config::subnets`) of the subnets this relationship covers.
    pub subnets: Vec<usize>,
    /// Written as `[[failover]]` (one of a server's relationships, N:1 backup: its state is
    /// persisted under its name), not as the single `[failover]` table.
    pub listed: bool,
}

fn ip_any(errs: &mut Errors<'_>, t: &Table<'_, '_>, key: &str) -> Option<IpAddr> {
    let f = t.require(errs, key)?;
    let s = string(errs, &f)?;
    match s.trim().parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() => Some(ip),
        Ok(ip) => {
            errs.push(&f.span(), &f.path, format!("{ip} is not a unicast address"));
            None
        }
        Err(_) => {
            errs.push(
                &f.span(),
                &f.path,
                format!("{s} is not an IPv4 or IPv6 address"),
            );
            None
        }
    }
}

pub(crate) fn read_failover(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<FailoverConfig> {
    let role = t
        .require(errs, "role")
        .and_then(|f| match string(errs, &f)? {
            "primary" | "main" => Some(FailoverRole::Primary),
            "secondary" | "backup" => Some(FailoverRole::Secondary),
            other => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{other:?} is not a role: expected \"primary\" or \"secondary\""),
                );
                None
            }
        });
    let name = t.require(errs, "name").and_then(|f| {
        let s = string(errs, &f)?;
        if s.is_empty() || s.len() > 255 {
            errs.push(&f.span(), &f.path, "must be 1 to 255 bytes");
            return None;
        }
        Some(s.to_string())
    });
    let address = ip_any(errs, t, "address");
    let peer_address = ip_any(errs, t, "peer-address");
    let num = |errs: &mut Errors<'_>, key: &str, lo: u32, hi: u32, default: u32, what: &str| match t
        .get(key)
    {
        None => Some(default),
        Some(f) => u32_in(errs, &f, lo, hi, what),
    };
    let port = num(errs, "port", 1, 65535, 647, "a port (1..=65535)");
    let peer_port = num(errs, "peer-port", 1, 65535, 647, "a port (1..=65535)");
    let mclt = num(errs, "mclt", 1, 30 * 86400, 3600, "between 1 s and 30 days");
    let max_unacked = num(
        errs,
        "max-unacked-updates",
        1,
        100_000,
        1000,
        "between 1 and 100000",
    );
    let poll_interval = num(
        errs,
        "poll-interval",
        1,
        3600,
        10,
        "between 1 and 3600 seconds",
    );
    let poll_timeout = num(
        errs,
        "poll-timeout",
        2,
        86400,
        60,
        "between 2 and 86400 seconds",
    );
    let safe_period = num(
        errs,
        "safe-period",
        1,
        30 * 86400,
        4 * 3600,
        "between 1 s and 30 days",
    );
    let split = match t.get("split") {
        None => Some(None),
        Some(f) => u32_in(errs, &f, 0, 256, "between 0 and 256 buckets").map(|v| Some(v as u16)),
    };
    let lb_max = num(
        errs,
        "load-balance-max-seconds",
        0,
        65535,
        3,
        "between 0 and 65535",
    );
    let backup_pct = num(errs, "backup-pct", 0, 100, 50, "a percentage (0..=100)");
    let bootp_pct = match t.get("dynamic-bootp-backup-pct") {
        None => Some(None),
        Some(f) => u32_in(errs, &f, 0, 100, "a percentage (0..=100)").map(|v| Some(v as u8)),
    };
    let rebind_limit = num(
        errs,
        "rebind-limit",
        0,
        86400,
        0,
        "between 0 and 86400 seconds",
    );
    let failback_hold = num(
        errs,
        "failback-hold",
        0,
        7 * 86400,
        0,
        "between 0 and 604800 seconds",
    );
    let recover = num(errs, "failover-recover", 0, u32::MAX, 0, "a unix time or 0");
    let use_safe_period = match t.get("use-safe-period") {
        None => Some(true),
        Some(f) => boolean(errs, &f),
    };
    let factor = match t.get("lease-period-factor") {
        None => Some(1.5),
        Some(f) => number(errs, &f).and_then(|v| {
            if (1.0..=100.0).contains(&v) {
                Some(v)
            } else {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{v} is out of range: must be between 1.0 and 100.0"),
                );
                None
            }
        }),
    };
    if let (Some(i), Some(o), Some(f)) = (poll_interval, poll_timeout, t.get("poll-timeout")) {
        if o <= i {
            errs.push(
                &f.span(),
                &f.path,
                format!("poll-timeout {o} must exceed poll-interval {i}"),
            );
        }
    }
    let partner_software = match t.get("partner-software") {
        None => Some(PartnerSoftware::Xdhcpd),
        Some(f) => string(errs, &f).and_then(|s| match s {
            "xdhcpd" => Some(PartnerSoftware::Xdhcpd),
            "isc-dhcpd" => Some(PartnerSoftware::IscDhcpd),
            other => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{other:?} is not known: expected \"xdhcpd\" or \"isc-dhcpd\""),
                );
                None
            }
        }),
    };
    let auth_key_file = match t.get("auth-key-file") {
        None => Some(None),
        Some(f) => string(errs, &f).and_then(|s| {
            if s.is_empty() || s.contains('\0') {
                errs.push(&f.span(), &f.path, "expected a file path");
                None
            } else {
                Some(Some(std::path::PathBuf::from(s)))
            }
        }),
    };
    if partner_software == Some(PartnerSoftware::Xdhcpd) && auth_key_file == Some(None) {
        let span = t
            .get("partner-software")
            .map_or(t.span.clone(), |f| f.span());
        errs.push(
            &span,
            "failover",
            "an xdhcpd partner is authenticated with a pre-shared key: set auth-key-file \
             (the same key on both partners), or partner-software = \"isc-dhcpd\" for ISC dhcpd",
        );
    }
    let bound_default_min = mclt.map_or(300, |m| m.min(300));
    let bound_default_max = mclt.map_or(86_400, |m| m.max(86_400));
    let mclt_min = num(
        errs,
        "partner-mclt-min",
        1,
        30 * 86400,
        bound_default_min,
        "between 1 s and 30 days",
    );
    let mclt_max = num(
        errs,
        "partner-mclt-max",
        1,
        u32::MAX,
        bound_default_max,
        "at least 1 s",
    );
    if let (Some(lo), Some(hi), Some(f)) = (mclt_min, mclt_max, t.get("partner-mclt-min")) {
        if lo > hi {
            errs.push(
                &f.span(),
                &f.path,
                format!("partner-mclt-min {lo} exceeds partner-mclt-max {hi}"),
            );
        }
    }
    let relay_health = read_relay_health(errs, t);
    if let (Some(a), Some(p), Some(f)) = (address, peer_address, t.get("peer-address")) {
        if a == p {
            errs.push(&f.span(), &f.path, "peer-address must differ from address");
        }
    }
    Some(FailoverConfig {
        role: role?,
        name: name?,
        address: address?,
        port: port? as u16,
        peer_address: peer_address?,
        peer_port: peer_port? as u16,
        mclt: mclt?,
        max_unacked_updates: max_unacked?,
        poll_interval: poll_interval?,
        poll_timeout: poll_timeout?,
        use_safe_period: use_safe_period?,
        safe_period: safe_period?,
        lease_period_factor: factor?,
        split: split?,
        load_balance_max_seconds: lb_max? as u16,
        backup_pct: backup_pct? as u8,
        dynamic_bootp_backup_pct: bootp_pct?,
        rebind_limit: rebind_limit?,
        failback_hold: failback_hold?,
        failover_recover: Some(recover?).filter(|&v| v != 0),
        partner_software: partner_software?,
        auth_key_file: auth_key_file?,
        partner_mclt_min: mclt_min?,
        partner_mclt_max: mclt_max?,
        relay_health: relay_health?,
        pools: Vec::new(),
        subnets: Vec::new(),
        listed: false,
    })
}

fn read_relay_health(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Option<RelayHealthConfig> {
    let d = RelayHealthConfig::default();
    let enabled = match t.get("relay-health-check") {
        None => Some(false),
        Some(f) => string(errs, &f).and_then(|s| match s {
            "off" | "disabled" => Some(false),
            "v4" => Some(true),
            "v6" | "both" => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!(
                        "{s:?}: the DHCPv6 relay health check is not implemented; \
                         expected \"off\" or \"v4\""
                    ),
                );
                None
            }
            other => {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!("{other:?} is not known: expected \"off\" or \"v4\""),
                );
                None
            }
        }),
    };
    let num = |errs: &mut Errors<'_>, key: &str, lo: u32, hi: u32, default: u32, what: &str| match t
        .get(key)
    {
        None => Some(default),
        Some(f) => u32_in(errs, &f, lo, hi, what),
    };
    let day = "between 0 and 86400 seconds";
    let unresponsive = num(
        errs,
        "rhc-unresponsive-time",
        1,
        86_400,
        d.unresponsive_time,
        "between 1 and 86400 seconds",
    );
    let count = num(
        errs,
        "rhc-request-count",
        1,
        1_000_000,
        d.request_count,
        "between 1 and 1000000",
    );
    let elapsed = num(
        errs,
        "rhc-elapsed-time",
        0,
        65_535,
        u32::from(d.elapsed_time),
        "between 0 and 65535 seconds",
    );
    let response = num(errs, "rhc-response-time", 0, 86_400, d.response_time, day);
    let restart = num(
        errs,
        "rhc-restart-time",
        1,
        86_400,
        d.restart_time,
        "between 1 and 86400 seconds",
    );
    let warning = num(
        errs,
        "rhc-warning-interval",
        0,
        86_400,
        d.warning_interval,
        day,
    );
    let max_relays = num(
        errs,
        "rhc-max-relays",
        16,
        1 << 20,
        d.max_relays,
        "between 16 and 1048576",
    );
    let rf = t
        .get("rhc-restart-time")
        .or_else(|| t.get("rhc-unresponsive-time"));
    if let (Some(u), Some(r), Some(f)) = (unresponsive, restart, rf) {
        if r <= u {
            errs.push(
                &f.span(),
                &f.path,
                format!(
                    "rhc-restart-time {r} must exceed rhc-unresponsive-time {u} (else no relay \
                     is ever judged)"
                ),
            );
        }
    }
    Some(RelayHealthConfig {
        enabled: enabled?,
        unresponsive_time: unresponsive?,
        request_count: count?,
        elapsed_time: elapsed? as u16,
        response_time: response?,
        restart_time: restart?,
        warning_interval: warning?,
        max_relays: max_relays?,
    })
}

/// One pool's address-balance settings from its `[[subnet]]` (the scope): `backup-pct` and
/// `backup-allocation-boundary` override the `[failover]` values on the primary; the
/// secondary ignores them (the primary decides the split).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolBalanceCfg {
    pub pool_id: u32,
    pub backup_pct: Option<u8>,
    pub boundary: Option<Ipv4Addr>,
    /// The subnet has `dynamic-bootp`: the pool's split is `dynamic-bootp-backup-pct` (when
    /// set), and neither partner ever allocates the other's addresses in it.
    pub dynamic_bootp: bool,
}

/// The balance settings of the pools of the subnets `covered` (indexes), in pool-id order.
pub(crate) fn pool_balance(subnets: &[super::Subnet], covered: &[usize]) -> Vec<PoolBalanceCfg> {
    subnets
        .iter()
        .filter(|s| covered.contains(&s.index))
        .flat_map(|s| {
            s.pools.iter().map(|p| PoolBalanceCfg {
                pool_id: p.id,
                backup_pct: s.backup_pct,
                boundary: s.backup_allocation_boundary,
                dynamic_bootp: s.dynamic_bootp,
            })
        })
        .collect()
}

/// Reads a subnet's `backup-pct` (0..=100) and `backup-allocation-boundary` (an address inside
/// one of the subnet's `pools`, given as (first, last, ...)).
pub(crate) fn read_scope_balance<L>(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    pools: &[(Ipv4Addr, Ipv4Addr, L)],
) -> (Option<u8>, Option<Ipv4Addr>) {
    let pct = t
        .get("backup-pct")
        .and_then(|f| u32_in(errs, &f, 0, 100, "a percentage (0..=100)"))
        .map(|v| v as u8);
    let boundary = t.get("backup-allocation-boundary").and_then(|f| {
        let ip = ipv4(errs, &f)?;
        let inside = pools
            .iter()
            .any(|(a, b, _)| (u32::from(*a)..=u32::from(*b)).contains(&u32::from(ip)));
        if inside {
            return Some(ip);
        }
        let ranges: Vec<String> = pools.iter().map(|(a, b, _)| format!("{a}-{b}")).collect();
        let msg = if ranges.is_empty() {
            format!("{ip}: this subnet has no pool to divide")
        } else {
            format!(
                "{ip} is outside the subnet's pools ({}); the boundary must lie inside one",
                ranges.join(", ")
            )
        };
        errs.push(&f.span(), &f.path, msg);
        None
    });
    (pct, boundary)
}
