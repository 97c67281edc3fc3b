//! `[[subnet]]`: network, relays, times, pools, reservations and the options
//! it hands out (named keys and `[[subnet.options]]`).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::error::Errors;
use crate::net::{Ipv4Net, NetParseError};
use crate::options::SubnetOptions;
use crate::reader::{
    array, int_in, ipv4, ipv4_list, parse_hex, string, tables, u32_in, Field, Table,
};
use crate::{LeaseTimes, Reservation, SERVER_OWNED_OPTIONS};

use super::pools::{read_pool, read_reservation};
use super::provisioning::{class_ref, pool_keys, read_pool_rules, ClassNames};
use super::times::{check_times, read_times};
use super::{
    Loc, MAX_ADDRS_PER_OPTION, MAX_BOOT_FILE, OPTION_KEYS, OPTION_KINDS, RESERVATION_KEYS,
};
use crate::provisioning::PoolRules;

pub(super) struct RawReservation {
    pub(super) res: Reservation,
    pub(super) key_loc: Loc,
    pub(super) ip_loc: Loc,
}

pub(super) struct RawSubnet {
    pub(super) index: usize,
    pub(super) net: Option<(Ipv4Net, Loc)>,
    pub(super) relays: Vec<(Ipv4Addr, Loc)>,
    pub(super) times: LeaseTimes,
    pub(super) pools: Vec<(Ipv4Addr, Ipv4Addr, Loc)>,
    pub(super) reservations: Vec<RawReservation>,
    pub(super) next_server: Option<Ipv4Addr>,
    pub(super) boot_file: Option<String>,
    pub(super) options: SubnetOptions,
    pub(super) backup_pct: Option<u8>,
    pub(super) backup_boundary: Option<Ipv4Addr>,
    /// Parallel to `pools`.
    pub(super) pool_rules: Vec<PoolRules>,
    /// `shared-network`: index of the network and where it was named.
    pub(super) shared_network: Option<(usize, Loc)>,
    pub(super) deny_unknown: bool,
    /// `dynamic-bootp` (default false).
    pub(super) dynamic_bootp: bool,
    pub(super) reconfigure: crate::ReconfigureOverride,
    /// `failover = "NAME" | "none" | "default"`: Some((Some(name), at)) names a relationship,
    /// Some((None, at)) takes the subnet out of failover; None (or "default"): the server's
    /// default (the one relationship, when there is one).
    pub(super) failover: Option<(Option<String>, Loc)>,
}

/// What a subnet needs to know about the shared networks and classes read before it.
pub(super) struct SubnetContext<'c> {
    pub(super) classes: &'c ClassNames,
    /// (name, lease times of the network: global with its overrides).
    pub(super) networks: &'c [(String, LeaseTimes)],
}

pub(super) fn read_subnet(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    index: usize,
    global: &LeaseTimes,
    server_id: Option<Ipv4Addr>,
    ctx: &SubnetContext<'_>,
) -> RawSubnet {
    let shared_network = t.get("shared-network").and_then(|f| {
        let name = string(errs, &f)?;
        match ctx.networks.iter().position(|(n, _)| n == name) {
            Some(i) => Some((i, Loc::of(&f))),
            None => {
                let all: Vec<&str> = ctx.networks.iter().map(|(n, _)| n.as_str()).collect();
                errs.push(
                    &f.span(),
                    &f.path,
                    if all.is_empty() {
                        format!(
                            "unknown shared network `{name}`: no [[shared-network]] is declared"
                        )
                    } else {
                        format!(
                            "unknown shared network `{name}`; declared: {}",
                            all.join(", ")
                        )
                    },
                );
                None
            }
        }
    });
    let deny_unknown = t
        .get("deny-unknown")
        .and_then(|f| crate::reader::boolean(errs, &f))
        .unwrap_or(false);
    let dynamic_bootp = t
        .get("dynamic-bootp")
        .and_then(|f| crate::reader::boolean(errs, &f))
        .unwrap_or(false);
    let failover = t.get("failover").and_then(|f| match string(errs, &f)? {
        "" => {
            errs.push(
                &f.span(),
                &f.path,
                "expected a [[failover]] name, \"none\" or \"default\"",
            );
            None
        }
        "default" => None,
        "none" => Some((None, Loc::of(&f))),
        name => Some((Some(name.to_string()), Loc::of(&f))),
    });
    // Lease times: global, then the shared network's, then the subnet's own.
    let network_times = shared_network
        .as_ref()
        .and_then(|(i, _)| ctx.networks.get(*i))
        .map(|(_, t)| *t);
    let global = &network_times.unwrap_or(*global);
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
    let mut pool_rules = Vec::new();
    if let Some(f) = t.get("pool") {
        for pt in tables(errs, &f, &pool_keys()) {
            let rules = read_pool_rules(errs, &pt, ctx.classes);
            if let Some(p) = read_pool(errs, &pt, net_val, server_id, &routers) {
                pools.push(p);
                pool_rules.push(rules);
            }
        }
    }

    let mut reservations = Vec::new();
    if let Some(f) = t.get("reservation") {
        for rt in tables(errs, &f, RESERVATION_KEYS) {
            let group = rt
                .get("group")
                .and_then(|g| class_ref(errs, &g, ctx.classes));
            if let Some(mut r) = read_reservation(errs, &rt, net_val, server_id) {
                r.res.group = group;
                reservations.push(r);
            }
        }
    }

    let (backup_pct, backup_boundary) = crate::failover::read_scope_balance(errs, t, &pools);

    let reconfigure = crate::reconfigure::read_override(errs, t);
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
        pool_rules,
        shared_network,
        deny_unknown,
        dynamic_bootp,
        reconfigure,
        failover,
    }
}

pub(super) fn put(
    errs: &mut Errors<'_>,
    options: &mut SubnetOptions,
    code: u8,
    value: &[u8],
    loc: &Loc,
) {
    if let Err(e) = options.set(code, value) {
        errs.push(&loc.span, &loc.path, e.to_string());
    }
}

pub(super) fn text_value<'a>(
    errs: &mut Errors<'_>,
    f: &Field<'a, '_>,
    max: usize,
) -> Option<&'a str> {
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

pub(super) fn check_domain(s: &str) -> Result<(), String> {
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

pub(super) fn read_generic_option(
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
