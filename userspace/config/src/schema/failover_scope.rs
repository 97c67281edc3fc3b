//! The failover relationships and the subnets each covers (issue 15 items 4 and 5).
//!
//! * `[failover]` (one table): the one relationship; it covers every subnet except those with
//!   `failover = "none"` (the meaning it always had), or only the CIDRs in its `subnets`.
//! * `[[failover]]` (1 to [`MAX_RELATIONSHIPS`] entries, N:1 backup): each covers the CIDRs in
//!   its `subnets` and the subnets naming it (`failover = "NAME"`). With one entry, a subnet
//!   naming none is in it (unless the entry lists its subnets); with several, every subnet
//!   names its relationship or `"none"`.
//!
//! Refused with the place: a subnet in two relationships, unknown names, two relationships
//! with one name, one local endpoint or one peer endpoint, a shared network split across
//! relationships, a relationship covering no subnet, the relay health check with several
//! relationships.

use super::subnet::RawSubnet;
use super::Loc;
use crate::error::Errors;
use crate::failover::{read_failover, FailoverConfig, FAILOVER_KEYS, MAX_RELATIONSHIPS};
use crate::net::{Ipv4Net, NetParseError};
use crate::reader::{array, string, tables, Field, Table};
use toml::de::DeValue;

/// One relationship as read: its configuration, where it was written, and the subnets it
/// lists (`subnets = [...]`, `None` when the key is absent).
pub(super) struct RawFailover {
    pub(super) cfg: FailoverConfig,
    pub(super) at: Loc,
    pub(super) name_at: Loc,
    pub(super) subnets: Option<Vec<(Ipv4Net, Loc)>>,
}

/// Reads `[failover]` or `[[failover]]`.
pub(super) fn read_failovers(errs: &mut Errors<'_>, f: &Field<'_, '_>) -> Vec<RawFailover> {
    let (listed, tbls) = match f.value() {
        DeValue::Table(_) => (
            false,
            Table::open(errs, f, FAILOVER_KEYS).into_iter().collect(),
        ),
        DeValue::Array(a) => {
            if a.len() > MAX_RELATIONSHIPS {
                errs.push(
                    &f.span(),
                    &f.path,
                    format!(
                        "{} failover relationships: at most {MAX_RELATIONSHIPS} are supported",
                        a.len()
                    ),
                );
            }
            (true, tables(errs, f, FAILOVER_KEYS))
        }
        _ => {
            errs.push(
                &f.span(),
                &f.path,
                "expected [failover] (one relationship) or [[failover]] entries",
            );
            return Vec::new();
        }
    };
    let mut out: Vec<RawFailover> = Vec::new();
    for t in &tbls {
        let subnets = t.get("subnets").and_then(|sf| {
            let items = array(errs, &sf)?;
            let mut v = Vec::new();
            for it in &items {
                let Some(s) = string(errs, it) else { continue };
                match s.trim().parse::<Ipv4Net>() {
                    Ok(n) => v.push((n, Loc::of(it))),
                    Err(NetParseError::HostBits(n)) => errs.push(
                        &it.span(),
                        &it.path,
                        format!("{s:?} has host bits set; did you mean {n}?"),
                    ),
                    Err(NetParseError::Syntax) => errs.push(
                        &it.span(),
                        &it.path,
                        format!("{s:?} is not a CIDR (a [[subnet]]'s cidr is expected)"),
                    ),
                }
            }
            Some(v)
        });
        let name_at = t.get("name").map_or(
            Loc {
                span: t.span.clone(),
                path: t.path.clone(),
            },
            |nf| Loc::of(&nf),
        );
        let Some(mut cfg) = read_failover(errs, t) else {
            continue;
        };
        cfg.listed = listed;
        if matches!(cfg.name.as_str(), "none" | "default") {
            errs.push(
                &name_at.span,
                &name_at.path,
                format!(
                    "{:?} is reserved (a [[subnet]]'s `failover` key uses it); choose another \
                     relationship name",
                    cfg.name
                ),
            );
        }
        let at = Loc {
            span: t.span.clone(),
            path: t.path.clone(),
        };
        for o in &out {
            let line = errs.position(o.at.span.start).line;
            if o.cfg.name == cfg.name {
                errs.push(
                    &name_at.span,
                    &name_at.path,
                    format!(
                        "relationship {:?} is already declared at {} (line {line})",
                        cfg.name, o.at.path
                    ),
                );
            }
            if (o.cfg.address, o.cfg.port) == (cfg.address, cfg.port) {
                errs.push(
                    &at.span,
                    &at.path,
                    format!(
                        "relationship {:?} listens on {}:{} like {:?} ({}, line {line}): give \
                         each relationship its own address or port",
                        cfg.name, cfg.address, cfg.port, o.cfg.name, o.at.path
                    ),
                );
            }
            if (o.cfg.peer_address, o.cfg.peer_port) == (cfg.peer_address, cfg.peer_port) {
                errs.push(
                    &at.span,
                    &at.path,
                    format!(
                        "relationship {:?} has the peer {}:{} of {:?} ({}, line {line}): one \
                         partner endpoint is one relationship",
                        cfg.name, cfg.peer_address, cfg.peer_port, o.cfg.name, o.at.path
                    ),
                );
            }
        }
        out.push(RawFailover {
            cfg,
            at,
            name_at,
            subnets,
        });
    }
    if out.len() > 1 {
        for r in &out {
            if r.cfg.relay_health.enabled {
                errs.push(
                    &r.at.span,
                    &format!("{}.relay-health-check", r.at.path),
                    format!(
                        "relationship {:?}: the relay health check is supported with one \
                         failover relationship only (this server has {})",
                        r.cfg.name,
                        out.len()
                    ),
                );
            }
        }
    }
    out
}

/// Which relationship covers each subnet (`None`: no failover); errors recorded. Fills each
/// relationship's `subnets`.
pub(super) fn assign_subnets(
    errs: &mut Errors<'_>,
    rels: &mut [RawFailover],
    raws: &[RawSubnet],
) -> Vec<Option<usize>> {
    let mut of: Vec<Option<(usize, Loc)>> = vec![None; raws.len()];
    if rels.is_empty() {
        for r in raws {
            if let Some((Some(name), at)) = &r.failover {
                errs.push(
                    &at.span,
                    &at.path,
                    format!("relationship {name:?} is unknown: no failover is configured"),
                );
            }
        }
        return vec![None; raws.len()];
    }
    let names: Vec<String> = rels.iter().map(|r| format!("{:?}", r.cfg.name)).collect();
    // The relationships' own lists.
    for (ri, rel) in rels.iter().enumerate() {
        for (net, at) in rel.subnets.iter().flatten() {
            let Some(si) = raws
                .iter()
                .position(|r| r.net.as_ref().is_some_and(|(n, _)| n == net))
            else {
                errs.push(&at.span, &at.path, format!("no [[subnet]] has cidr {net}"));
                continue;
            };
            match &of[si] {
                Some((other, prev)) if *other != ri => {
                    let line = errs.position(prev.span.start).line;
                    errs.push(
                        &at.span,
                        &at.path,
                        format!(
                            "subnet {net} is already in relationship {:?} ({}, line {line}): a \
                             subnet belongs to one relationship",
                            rels[*other].cfg.name, prev.path
                        ),
                    );
                }
                Some(_) => {}
                None => of[si] = Some((ri, at.clone())),
            }
        }
    }
    // The subnets' `failover` keys.
    let mut none = vec![false; raws.len()];
    for (si, r) in raws.iter().enumerate() {
        let Some((want, at)) = &r.failover else {
            continue;
        };
        match want {
            None => {
                if let Some((ri, prev)) = &of[si] {
                    let line = errs.position(prev.span.start).line;
                    errs.push(
                        &at.span,
                        &at.path,
                        format!(
                            "failover = \"none\", but relationship {:?} lists this subnet ({}, \
                             line {line})",
                            rels[*ri].cfg.name, prev.path
                        ),
                    );
                }
                none[si] = true;
            }
            Some(name) => {
                let Some(ri) = rels.iter().position(|x| x.cfg.name == *name) else {
                    errs.push(
                        &at.span,
                        &at.path,
                        format!(
                            "relationship {name:?} is unknown; declared: {}",
                            names.join(", ")
                        ),
                    );
                    continue;
                };
                match &of[si] {
                    Some((other, prev)) if *other != ri => {
                        let line = errs.position(prev.span.start).line;
                        errs.push(
                            &at.span,
                            &at.path,
                            format!(
                                "this subnet names relationship {name:?}, but {:?} lists it ({}, \
                                 line {line}): a subnet belongs to one relationship",
                                rels[*other].cfg.name, prev.path
                            ),
                        );
                    }
                    _ => of[si] = Some((ri, at.clone())),
                }
            }
        }
    }
    // The server default: the one relationship that lists no subnets.
    let default = (rels.len() == 1 && rels[0].subnets.is_none()).then_some(0);
    for (si, r) in raws.iter().enumerate() {
        if of[si].is_some() || none[si] {
            continue;
        }
        match default {
            Some(d) => {
                of[si] = Some((d, rels[d].at.clone()));
            }
            None => {
                if let Some((net, at)) = &r.net {
                    errs.push(
                        &at.span,
                        &at.path,
                        format!(
                            "subnet {net} is in no failover relationship: name one with \
                             `failover = ` {} or set `failover = \"none\"`",
                            names.join(" | ")
                        ),
                    );
                }
            }
        }
    }
    // A shared network is one link: all its subnets in one relationship (or none).
    for (si, r) in raws.iter().enumerate() {
        let Some((net_idx, _)) = &r.shared_network else {
            continue;
        };
        let net_idx = *net_idx;
        let Some(first) = raws.iter().position(|x| {
            x.shared_network
                .as_ref()
                .is_some_and(|(n, _)| *n == net_idx)
        }) else {
            continue;
        };
        let rel = |i: usize| of[i].as_ref().map(|(ri, _)| *ri);
        if first != si && rel(first) != rel(si) {
            let show = |i: usize| {
                rel(i).map_or("no failover".to_string(), |ri| {
                    format!("relationship {:?}", rels[ri].cfg.name)
                })
            };
            if let Some((_, at)) = &r.net {
                errs.push(
                    &at.span,
                    &at.path,
                    format!(
                        "this subnet is in {}, but subnet[{first}] of the same shared network is \
                         in {}: a shared network is one link, served by one relationship",
                        show(si),
                        show(first)
                    ),
                );
            }
        }
    }
    for (ri, rel) in rels.iter_mut().enumerate() {
        rel.cfg.subnets = (0..raws.len())
            .filter(|&si| of[si].as_ref().is_some_and(|(x, _)| *x == ri))
            .collect();
        if rel.cfg.subnets.is_empty() {
            errs.push(
                &rel.name_at.span,
                &rel.name_at.path,
                format!(
                    "relationship {:?} covers no subnet (list them in `subnets` or name it in \
                     their `failover` key)",
                    rel.cfg.name
                ),
            );
        }
    }
    of.into_iter().map(|o| o.map(|(ri, _)| ri)).collect()
}
