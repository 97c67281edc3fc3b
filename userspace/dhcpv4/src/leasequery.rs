//! DHCPLEASEQUERY (RFC 4388): an access concentrator, acting as a relay
//! agent, asks which client holds an address, or which address a client
//! (by MAC or client identifier) holds. Sans-IO like the engine: reads the
//! lease table, writes the answer into the caller's buffer.
//!
//! What we answer (RFC 4388 §6.4):
//! - the query kind, in this order: ciaddr set → by address; option 61
//!   present → by client identifier; htype/hlen/chaddr set → by MAC. A
//!   query naming none of them is dropped (there is nothing to answer about).
//! - only relayed queries (giaddr != 0); the answer goes to giaddr:67. Which giaddrs may ask
//!   (`leasequery-allow`) is decided before, in `trust.rs`.
//! - DHCPLEASEACTIVE: ciaddr = the leased address, htype/hlen/chaddr of the
//!   client, 51 = remaining lease seconds, 91 = seconds since the client's
//!   last transaction, 61 when the client used one (and it fits our key),
//!   82 = the relay agent information of the client's last binding message
//!   (as stored with the lease and carried to a failover partner in BNDUPD)
//!   when the query's parameter request list asks for 82, or has no list.
//!   Option 92 (associated-ip) is never sent: the lease table binds at most
//!   one address per client key, so there is never a second address.
//! - DHCPLEASEUNASSIGNED: the address is in one of our pools but not leased.
//! - DHCPLEASEUNKNOWN: the address is not ours, or the MAC / client id has no
//!   active lease here.
//!
//! Invariants: no allocation, no write to the table, no lock taken for a
//! query by address (seqlock read); a query by MAC or client id does the
//! same client-index lookup (one shard read lock) as a DISCOVER. Nothing
//! here panics on input.

use std::net::Ipv4Addr;

use lease_store::{ClientKey, KeyKind, Lease, LeaseState, LeaseTable, VarData};

use super::wire::{opt, Message, MessageType, NoRoom, ReplyWriter, Summary};

/// What a leasequery asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query<'a> {
    /// Who holds this address (the query's ciaddr).
    Ip(Ipv4Addr),
    /// Which address the client with this identifier (option 61 value) holds.
    ClientId(&'a [u8]),
    /// Which address the client with this hardware address holds.
    Mac {
        /// Hardware type (1 = Ethernet).
        htype: u8,
        /// The hardware address: chaddr's first hlen bytes, not all zero.
        hw: &'a [u8],
    },
}

/// Why a leasequery gets no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// giaddr is 0: RFC 4388 queries come from relay agents only.
    NotRelayed,
    /// No ciaddr, no client identifier and no hardware address.
    NoQuery,
    /// The answer did not fit the output buffer.
    NoRoom,
}

/// The table's answer to a query.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// The unexpired ACTIVE lease that answers the query, as read from the table.
    Active(Lease),
    /// The queried address is in one of our pools but has no unexpired ACTIVE lease.
    Unassigned(Ipv4Addr),
    /// The address is in none of our pools, or the client has no unexpired ACTIVE lease.
    Unknown,
}

/// The query a DHCPLEASEQUERY makes, in RFC 4388 order (address, client id,
/// MAC); `None` if it names nothing.
pub fn query_of<'a>(msg: &Message<'a>, sum: &Summary<'a>) -> Option<Query<'a>> {
    let ciaddr = msg.ciaddr();
    if !ciaddr.is_unspecified() {
        return Some(Query::Ip(ciaddr));
    }
    if let Some(id) = sum.client_id {
        return Some(Query::ClientId(id));
    }
    let hw = msg.chaddr();
    if msg.htype() != 0 && !hw.is_empty() && hw.iter().any(|&b| b != 0) {
        return Some(Query::Mac {
            htype: msg.htype(),
            hw,
        });
    }
    None
}

/// A lease that holds its address for a client at `now`.
fn is_active(l: &Lease, now: u32) -> bool {
    l.state == LeaseState::Active && l.expiry > now
}

/// Looks the query up in the table (reads only).
pub fn look_up(table: &LeaseTable, now: u32, q: Query<'_>) -> Answer {
    look_up_with_var(table, now, q).0
}

/// [`look_up`] with the active lease's variable data (option 82 whole), read with the
/// record in one consistent copy.
pub fn look_up_with_var(table: &LeaseTable, now: u32, q: Query<'_>) -> (Answer, VarData) {
    let a = look_up_record(table, now, q);
    let Answer::Active(l) = a else {
        return (a, VarData::EMPTY);
    };
    let Some(slot) = table.slot_of(l.addr) else {
        return (a, VarData::EMPTY);
    };
    let (now_l, var) = table.read_with_var(slot);
    if now_l == l {
        (a, var)
    } else if is_active(&now_l, now) && now_l.client == l.client {
        // Changed in between (a renewal): the newer copy, with its data.
        (Answer::Active(now_l), var)
    } else {
        (a, VarData::EMPTY)
    }
}

fn look_up_record(table: &LeaseTable, now: u32, q: Query<'_>) -> Answer {
    match q {
        Query::Ip(ip) => match table.slot_of(ip) {
            None => Answer::Unknown,
            Some(slot) => {
                let l = table.read(slot);
                if is_active(&l, now) {
                    Answer::Active(l)
                } else {
                    Answer::Unassigned(ip)
                }
            }
        },
        Query::ClientId(id) => active_of(table, now, &ClientKey::from_client_id(id), None),
        Query::Mac { htype, hw } => {
            if let a @ Answer::Active(_) =
                active_of(table, now, &ClientKey::from_hw(htype, hw), None)
            {
                return a;
            }
            // Most clients send a client identifier of htype + MAC (RFC 2132
            // §9.14), so their lease is keyed by it: try that key too, and
            // accept it only if the record's hardware address matches.
            let mut id = [0u8; 17];
            let n = hw.len().min(16);
            id[0] = htype;
            id[1..1 + n].copy_from_slice(&hw[..n]);
            active_of(
                table,
                now,
                &ClientKey::from_client_id(&id[..1 + n]),
                Some((htype, &hw[..n])),
            )
        }
    }
}

/// The active lease of `key`, if any (and, with `hw`, only if its hardware
/// address is that one).
fn active_of(table: &LeaseTable, now: u32, key: &ClientKey, hw: Option<(u8, &[u8])>) -> Answer {
    match table.find_client(key) {
        Some((_, l)) if is_active(&l, now) => {
            let same_hw = hw.is_none_or(|(t, a)| {
                l.htype == t && l.hlen as usize == a.len() && l.chaddr.get(..a.len()) == Some(a)
            });
            if same_hw {
                Answer::Active(l)
            } else {
                Answer::Unknown
            }
        }
        _ => Answer::Unknown,
    }
}

/// Did the query's parameter request list ask for `code` (no list: yes)?
fn requested(sum: &Summary<'_>, code: u8) -> bool {
    sum.parameter_list.is_none_or(|l| l.contains(&code))
}

/// Answers one DHCPLEASEQUERY into `out`; returns the answer's length and
/// message type. `limit` is the most bytes the answer may take.
pub fn answer(
    table: &LeaseTable,
    server_id: Ipv4Addr,
    now: u32,
    msg: &Message<'_>,
    sum: &Summary<'_>,
    limit: usize,
    out: &mut [u8],
) -> Result<(usize, MessageType), Unanswered> {
    if msg.giaddr().is_unspecified() {
        return Err(Unanswered::NotRelayed);
    }
    let q = query_of(msg, sum).ok_or(Unanswered::NoQuery)?;
    let (a, var) = look_up_with_var(table, now, q);
    write(out, msg, sum, server_id, now, q, &a, &var, limit).map_err(|_| Unanswered::NoRoom)
}

#[allow(clippy::too_many_arguments)]
fn write(
    out: &mut [u8],
    msg: &Message<'_>,
    sum: &Summary<'_>,
    server_id: Ipv4Addr,
    now: u32,
    q: Query<'_>,
    a: &Answer,
    var: &VarData,
    limit: usize,
) -> Result<(usize, MessageType), NoRoom> {
    let mut w = ReplyWriter::new(out, msg, limit)?;
    let kind = match a {
        Answer::Active(_) => MessageType::LeaseActive,
        Answer::Unassigned(_) => MessageType::LeaseUnassigned,
        Answer::Unknown => MessageType::LeaseUnknown,
    };
    w.option(opt::MESSAGE_TYPE, &[kind as u8])?;
    w.option_ip(opt::SERVER_ID, server_id)?;
    match a {
        Answer::Active(l) => {
            w.set_ciaddr(l.addr);
            w.set_chaddr(l.htype, l.hlen, &l.chaddr);
            // A permanent (BOOTP) binding: RFC 2131's infinity.
            let left = if l.is_permanent() {
                u32::MAX
            } else {
                l.expiry.saturating_sub(now)
            };
            w.option_u32(opt::LEASE_TIME, left)?;
            if l.cltt != 0 {
                w.option_u32(
                    opt::CLIENT_LAST_TRANSACTION_TIME,
                    now.saturating_sub(l.cltt),
                )?;
            }
            // A hashed key no longer holds the identifier itself.
            if l.client.kind() == KeyKind::ClientId && !l.client.is_hashed() {
                w.option_if_room(opt::CLIENT_ID, l.client.as_bytes());
            }
            let ri = var.relay_agent_info();
            if !ri.is_empty() && requested(sum, opt::RELAY_AGENT_INFO) {
                w.option(opt::RELAY_AGENT_INFO, ri)?;
            }
        }
        Answer::Unassigned(ip) => w.set_ciaddr(*ip),
        Answer::Unknown => match q {
            // Echo what was asked so the requester can match the answer.
            Query::Ip(ip) => w.set_ciaddr(ip),
            Query::ClientId(id) => {
                w.option_if_room(opt::CLIENT_ID, id);
            }
            Query::Mac { .. } => {}
        },
    }
    Ok((w.finish(), kind))
}
