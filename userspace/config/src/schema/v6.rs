//! `[dhcpv6]` and `[[subnet6]]`: DHCPv6 links with address pools, prefix
//! pools, lifetimes, options 23/24/56/17 and reservations by DUID; every
//! error positioned (file:line:col: field).

use std::net::Ipv6Addr;
use std::path::PathBuf;

use crate::error::Errors;
use crate::provisioning::ClassSet;
use crate::reader::{array, boolean, parse_hex, string, tables, u32_in, Field, Table};
use crate::v6::{
    in_prefix6, mask6, parse_prefix6, PdPool6, PoolAccess6, Reservation6, Subnet6, V6Config,
    VendorOption6,
};

use super::provisioning::{class_list, ClassNames};

pub(super) const DHCPV6_KEYS: &[&str] = &[
    "lease-file",
    "capacity",
    "trusted-relays",
    "decline-hold",
    "server-duid",
    "leasequery-allow",
];
pub(super) const SUBNET6_KEYS: &[&str] = &[
    "prefix",
    "interface",
    "pool",
    "pd-pool",
    "preferred-time",
    "valid-time",
    "renew-time",
    "rebind-time",
    "rapid-commit",
    "dns-servers",
    "domain-search",
    "ntp-servers",
    "vendor-option",
    "reservation",
    "deny-unknown",
];
pub(super) const POOL6_KEYS: &[&str] = &["range", "allow", "deny", "deny-unknown"];
pub(super) const PD_POOL_KEYS: &[&str] = &[
    "prefix",
    "delegated-length",
    "allow",
    "deny",
    "deny-unknown",
];
const VENDOR_KEYS: &[&str] = &["enterprise", "code", "hex", "text"];
const RES6_KEYS: &[&str] = &["duid", "address", "prefix"];
const MAX_TIME: u32 = i32::MAX as u32;

fn ipv6(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<Ipv6Addr> {
    let s = string(errs, f)?;
    let ip = s.trim().parse().ok();
    if ip.is_none() {
        errs.push(&f.span(), &f.path, format!("{s} is not an IPv6 address"));
    }
    ip
}

fn ipv6_list(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Vec<Ipv6Addr> {
    array(errs, f)
        .unwrap_or_default()
        .iter()
        .filter_map(|it| ipv6(errs, it))
        .collect()
}

/// An address (a /128) or a network `addr/len`.
fn ipv6_net(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<(Ipv6Addr, u8)> {
    let s = string(errs, f)?;
    let r = if s.contains('/') {
        parse_prefix6(s)
    } else {
        s.trim()
            .parse()
            .map(|a| (a, 128))
            .map_err(|_| format!("{s} is not an IPv6 address or network"))
    };
    match r {
        Ok(n) => Some(n),
        Err(m) => {
            errs.push(&f.span(), &f.path, m);
            None
        }
    }
}

fn prefix(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Option<(Ipv6Addr, u8)> {
    let s = string(errs, f)?;
    match parse_prefix6(s) {
        Ok(p) => Some(p),
        Err(m) => {
            errs.push(&f.span(), &f.path, m);
            None
        }
    }
}

pub(super) fn read_dhcpv6(errs: &mut Errors<'_>, t: Option<&Table<'_, '_>>) -> V6Config {
    let mut c = V6Config::default();
    let Some(t) = t else { return c };
    if let Some(f) = t.get("lease-file") {
        if let Some(s) = string(errs, &f) {
            c.lease_file = PathBuf::from(s);
        }
    }
    if let Some(f) = t.get("capacity") {
        if let Some(n) = u32_in(errs, &f, 16, 1 << 26, "16 ..= 67108864") {
            c.capacity = n;
        }
    }
    if let Some(f) = t.get("trusted-relays") {
        c.trusted_relays = ipv6_list(errs, &f);
    }
    if let Some(f) = t.get("leasequery-allow") {
        let list: Vec<_> = array(errs, &f)
            .unwrap_or_default()
            .iter()
            .filter_map(|it| ipv6_net(errs, it))
            .collect();
        c.leasequery_allow = Some(list);
    }
    if let Some(f) = t.get("decline-hold") {
        if let Some(n) = u32_in(errs, &f, 0, MAX_TIME, "0 ..= 2^31-1 seconds") {
            c.decline_hold = n;
        }
    }
    if let Some(f) = t.get("server-duid") {
        if let Some(s) = string(errs, &f) {
            match parse_hex(s) {
                Ok(d) if (3..=130).contains(&d.len()) => c.server_duid = Some(d),
                Ok(d) => errs.push(
                    &f.span(),
                    &f.path,
                    format!("a DUID is 3 ..= 130 bytes, this one is {}", d.len()),
                ),
                Err(e) => errs.push(&f.span(), &f.path, format!("not hex: {e}")),
            }
        }
    }
    c
}

/// `allow` / `deny` / `deny-unknown` of a v6 pool table.
fn read_access(errs: &mut Errors<'_>, t: &Table<'_, '_>, names: &ClassNames) -> PoolAccess6 {
    let allow = t
        .get("allow")
        .map(|f| class_list(errs, &f, names))
        .unwrap_or_default();
    let deny = match t.get("deny") {
        Some(f) => {
            let d = class_list(errs, &f, names);
            if allow.intersects(d) && (allow.0 & !d.0) == 0 {
                errs.push(
                    &f.span(),
                    &f.path,
                    "this pool can never be used: every class in `allow` is also in `deny`",
                );
            }
            d
        }
        None => ClassSet::EMPTY,
    };
    let deny_unknown = t
        .get("deny-unknown")
        .and_then(|f| boolean(errs, &f))
        .unwrap_or(false);
    PoolAccess6 {
        allow,
        deny,
        deny_unknown,
    }
}

/// `[[...vendor-option]]` tables of `t` (a subnet6 or a class): option 17 sub-options
/// grouped by enterprise number.
pub(super) fn read_vendor_options(errs: &mut Errors<'_>, t: &Table<'_, '_>) -> Vec<VendorOption6> {
    let mut out: Vec<VendorOption6> = Vec::new();
    let Some(f) = t.get("vendor-option") else {
        return out;
    };
    for v in tables(errs, &f, VENDOR_KEYS) {
        let ent = v
            .require(errs, "enterprise")
            .and_then(|f| u32_in(errs, &f, 0, u32::MAX, "a 32-bit enterprise number"));
        let code = v
            .require(errs, "code")
            .and_then(|f| u32_in(errs, &f, 0, 65535, "0 ..= 65535"));
        let data = match (v.get("hex"), v.get("text")) {
            (Some(h), None) => string(errs, &h).and_then(|x| match parse_hex(x) {
                Ok(b) => Some(b),
                Err(e) => {
                    errs.push(&h.span(), &h.path, format!("not hex: {e}"));
                    None
                }
            }),
            (None, Some(tx)) => string(errs, &tx).map(|x| x.as_bytes().to_vec()),
            _ => {
                errs.push(&v.span, &v.path, "give exactly one of `hex` or `text`");
                None
            }
        };
        if let (Some(e), Some(c), Some(d)) = (ent, code, data) {
            if d.len() > 1024 {
                errs.push(
                    &v.span,
                    &v.path,
                    format!("vendor sub-option of {} bytes (at most 1024)", d.len()),
                );
                continue;
            }
            match out.iter_mut().find(|x| x.enterprise == e) {
                Some(x) => x.options.push((c as u16, d)),
                None => out.push(VendorOption6 {
                    enterprise: e,
                    options: vec![(c as u16, d)],
                }),
            }
        }
    }
    out
}

pub(super) fn read_subnet6(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    index: usize,
    names: &ClassNames,
) -> Option<Subnet6> {
    let (pfx, plen) = t.require(errs, "prefix").and_then(|f| prefix(errs, &f))?;
    let mut s = Subnet6 {
        index,
        prefix: pfx,
        prefix_len: plen,
        interface: None,
        pools: vec![],
        pool_access: vec![],
        pd_pools: vec![],
        pd_pool_access: vec![],
        deny_unknown: false,
        preferred: 3600,
        valid: 7200,
        t1: 0,
        t2: 0,
        rapid_commit: true,
        dns_servers: vec![],
        domain_search: vec![],
        ntp_servers: vec![],
        vendor_options: vec![],
        reservations: vec![],
    };
    if let Some(f) = t.get("interface") {
        s.interface = string(errs, &f).map(str::to_string);
    }
    if let Some(f) = t.get("pool") {
        for p in tables(errs, &f, POOL6_KEYS) {
            let Some(rf) = p.require(errs, "range") else {
                continue;
            };
            let Some(r) = string(errs, &rf) else { continue };
            let parsed = r.split_once('-').and_then(|(a, b)| {
                Some((
                    a.trim().parse::<Ipv6Addr>().ok()?,
                    b.trim().parse::<Ipv6Addr>().ok()?,
                ))
            });
            match parsed {
                None => errs.push(
                    &rf.span(),
                    &rf.path,
                    format!("{r} is not a range first-last of IPv6 addresses"),
                ),
                Some((a, b)) if u128::from(a) > u128::from(b) => {
                    errs.push(&rf.span(), &rf.path, format!("range {r} is reversed"))
                }
                Some((a, b)) if !in_prefix6(pfx, plen, a) || !in_prefix6(pfx, plen, b) => errs
                    .push(
                        &rf.span(),
                        &rf.path,
                        format!("range {r} is not inside the subnet6 prefix {pfx}/{plen}"),
                    ),
                Some((a, b)) => {
                    if s.pools.iter().any(|&(x, y)| {
                        u128::from(a) <= u128::from(y) && u128::from(x) <= u128::from(b)
                    }) {
                        errs.push(
                            &rf.span(),
                            &rf.path,
                            format!("range {r} overlaps another pool of this subnet6"),
                        );
                    } else {
                        s.pools.push((a, b));
                        s.pool_access.push(read_access(errs, &p, names));
                    }
                }
            }
        }
    }
    if let Some(f) = t.get("pd-pool") {
        for p in tables(errs, &f, PD_POOL_KEYS) {
            let pp = p.require(errs, "prefix").and_then(|f| prefix(errs, &f));
            let dl = p.require(errs, "delegated-length").and_then(|f| {
                let n = u32_in(errs, &f, 1, 128, "1 ..= 128")?;
                Some((n as u8, f))
            });
            if let (Some((pp, ppl)), Some((dl, df))) = (pp, dl) {
                if dl < ppl {
                    errs.push(
                        &df.span(),
                        &df.path,
                        format!("delegated-length {dl} is shorter than the pool prefix /{ppl}"),
                    );
                } else {
                    s.pd_pools.push(PdPool6 {
                        prefix: pp,
                        prefix_len: ppl,
                        delegated_len: dl,
                    });
                    s.pd_pool_access.push(read_access(errs, &p, names));
                }
            }
        }
    }
    for (key, dst, lo) in [
        ("preferred-time", &mut s.preferred, 1),
        ("valid-time", &mut s.valid, 1),
        ("renew-time", &mut s.t1, 0),
        ("rebind-time", &mut s.t2, 0),
    ] {
        if let Some(f) = t.get(key) {
            if let Some(n) = u32_in(errs, &f, lo, MAX_TIME, "a number of seconds below 2^31") {
                *dst = n;
            }
        }
    }
    if s.preferred > s.valid {
        let f = t.get("preferred-time").or_else(|| t.get("valid-time"));
        let (span, path) = f.map_or((t.span.clone(), t.path.clone()), |f| (f.span(), f.path));
        errs.push(
            &span,
            &path,
            format!(
                "preferred-time {} is longer than valid-time {}",
                s.preferred, s.valid
            ),
        );
    }
    if s.t1 > 0 && s.t2 > 0 && s.t1 > s.t2 {
        if let Some(f) = t.get("renew-time") {
            errs.push(
                &f.span(),
                &f.path,
                format!("renew-time {} is after rebind-time {}", s.t1, s.t2),
            );
        }
    }
    if let Some(f) = t.get("deny-unknown") {
        s.deny_unknown = boolean(errs, &f).unwrap_or(false);
    }
    if let Some(f) = t.get("rapid-commit") {
        if let Some(b) = boolean(errs, &f) {
            s.rapid_commit = b;
        }
    }
    if let Some(f) = t.get("dns-servers") {
        s.dns_servers = ipv6_list(errs, &f);
    }
    if let Some(f) = t.get("ntp-servers") {
        s.ntp_servers = ipv6_list(errs, &f);
    }
    if let Some(f) = t.get("domain-search") {
        for it in array(errs, &f).unwrap_or_default() {
            if let Some(d) = string(errs, &it) {
                let dd = d.trim_end_matches('.');
                if dd.is_empty()
                    || dd.len() > 253
                    || dd.split('.').any(|l| l.is_empty() || l.len() > 63)
                {
                    errs.push(&it.span(), &it.path, format!("{d:?} is not a domain name"));
                } else {
                    s.domain_search.push(dd.to_string());
                }
            }
        }
    }
    s.vendor_options = read_vendor_options(errs, t);
    if let Some(f) = t.get("reservation") {
        for r in tables(errs, &f, RES6_KEYS) {
            let duid = r.require(errs, "duid").and_then(|f| {
                let x = string(errs, &f)?;
                match parse_hex(x) {
                    Ok(d) if (3..=130).contains(&d.len()) => {
                        if s.reservations.iter().any(|o| o.duid == d) {
                            errs.push(
                                &f.span(),
                                &f.path,
                                format!("DUID {x} is reserved twice in this subnet6"),
                            );
                            None
                        } else {
                            Some(d)
                        }
                    }
                    Ok(d) => {
                        errs.push(
                            &f.span(),
                            &f.path,
                            format!("a DUID is 3 ..= 130 bytes, this one is {}", d.len()),
                        );
                        None
                    }
                    Err(e) => {
                        errs.push(&f.span(), &f.path, format!("not hex: {e}"));
                        None
                    }
                }
            });
            let address = r.get("address").and_then(|f| {
                let a = ipv6(errs, &f)?;
                if !in_prefix6(pfx, plen, a) {
                    errs.push(
                        &f.span(),
                        &f.path,
                        format!("{a} is not inside the subnet6 prefix {pfx}/{plen}"),
                    );
                    return None;
                }
                Some(a)
            });
            let rp = r.get("prefix").and_then(|f| prefix(errs, &f));
            if address.is_none()
                && rp.is_none()
                && r.get("address").is_none()
                && r.get("prefix").is_none()
            {
                errs.push(
                    &r.span,
                    &r.path,
                    "a reservation needs `address`, `prefix` or both",
                );
            }
            if let Some(d) = duid {
                s.reservations.push(Reservation6 {
                    duid: d,
                    address,
                    prefix: rp,
                });
            }
        }
    }
    Some(s)
}

/// Cross-subnet checks: prefixes and prefix pools do not overlap.
pub(super) fn check_subnets6(errs: &mut Errors<'_>, t: &[Table<'_, '_>], subs: &[Subnet6]) {
    let overlap = |a: Ipv6Addr, al: u8, b: Ipv6Addr, bl: u8| {
        let l = al.min(bl);
        u128::from(a) & mask6(l) == u128::from(b) & mask6(l)
    };
    for (i, s) in subs.iter().enumerate() {
        for o in &subs[..i] {
            if overlap(s.prefix, s.prefix_len, o.prefix, o.prefix_len) {
                if let Some(tb) = t.get(s.index) {
                    errs.push(
                        &tb.span,
                        &tb.path,
                        format!(
                            "prefix {}/{} overlaps subnet6[{}] {}/{}",
                            s.prefix, s.prefix_len, o.index, o.prefix, o.prefix_len
                        ),
                    );
                }
            }
        }
        let all: Vec<(usize, &PdPool6)> = subs
            .iter()
            .flat_map(|x| x.pd_pools.iter().map(move |p| (x.index, p)))
            .collect();
        for p in &s.pd_pools {
            let clash = all.iter().find(|(xi, q)| {
                !std::ptr::eq(*q, p)
                    && (*xi < s.index
                        || (*xi == s.index && (*q as *const PdPool6) < (p as *const PdPool6)))
                    && overlap(p.prefix, p.prefix_len, q.prefix, q.prefix_len)
            });
            if let (Some((xi, q)), Some(tb)) = (clash, t.get(s.index)) {
                errs.push(
                    &tb.span,
                    &tb.path,
                    format!(
                        "pd-pool {}/{} overlaps pd-pool {}/{} of subnet6[{xi}]",
                        p.prefix, p.prefix_len, q.prefix, q.prefix_len
                    ),
                );
            }
        }
    }
}
