//! Whole-file checks: overlapping subnets, pools and reservations, duplicates.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::error::Errors;
use crate::net::Ipv4Net;
use crate::{Host, ReservationKey};

use super::subnet::RawSubnet;
use super::Loc;

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

pub(super) fn cross_check(errs: &mut Errors<'_>, raws: &[RawSubnet], hosts: &[(Host, Loc)]) {
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

    // Reservations and hosts: one registration per client, one reservation per address.
    let mut by_key: HashMap<&ReservationKey, &Loc> = HashMap::new();
    for (h, loc) in hosts {
        if let Some(prev) = by_key.get(&h.key) {
            let line = errs.position(prev.span.start).line;
            errs.push(
                &loc.span,
                &loc.path,
                format!(
                    "duplicate registration: {} is already registered at {} (line {line})",
                    describe_key(&h.key),
                    prev.path
                ),
            );
        } else {
            by_key.insert(&h.key, loc);
        }
    }
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
