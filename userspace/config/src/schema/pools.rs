//! `[[subnet.pool]]` ranges and `[[subnet.reservation]]` entries.

use std::net::Ipv4Addr;

use crate::error::Errors;
use crate::net::Ipv4Net;
use crate::reader::{ipv4, parse_hex, parse_ipv4, string, Table};
use crate::{Reservation, ReservationKey};

use super::subnet::RawReservation;
use super::{Loc, MAX_POOL_SIZE};

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

pub(super) fn read_pool(
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

pub(super) fn read_reservation(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    net: Option<Ipv4Net>,
    server_id: Option<Ipv4Addr>,
) -> Option<RawReservation> {
    let key = read_client_key(errs, t, "a reservation");
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
        res: Reservation {
            key,
            ip,
            group: None,
        },
        key_loc,
        ip_loc,
    })
}

/// The `hw` or `client-id` key of a reservation or host (`what` names it in the error when
/// neither is given), with where it stands.
pub(super) fn read_client_key(
    errs: &mut Errors<'_>,
    t: &Table<'_, '_>,
    what: &str,
) -> Option<(ReservationKey, Loc)> {
    match (t.get("hw"), t.get("client-id")) {
        (Some(_), Some(c)) => {
            errs.push(
                &c.span(),
                &c.path,
                "give either `hw` or `client-id`, not both",
            );
            None
        }
        (None, None) => {
            errs.push(
                &t.span,
                &t.path,
                format!("{what} needs `hw` or `client-id`"),
            );
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
    }
}
