//! Lease records <-> failover bindings, and the per-record "has the partner got this?" rule.
//!
//! Record fields used by failover (lease-store [`Lease`]):
//! * `potential_expiry`: the potential expiration the DHCP engine asks the partner to commit to
//!   (sent in BNDUPD);
//! * `acked_potential_expiry`: what the partner has committed to (its BNDACK of ours, or its
//!   own BNDUPD we accepted); the MCLT rule is computed from it;
//! * `tsfp`: the *change time* (see [`change_time`]) of the newest version of this record the
//!   partner holds (acknowledged by it, or received from it); 0 = never;
//! * `tstp`: the lease end last acknowledged by the partner (informational, like ISC's);
//! * option 82, host name, vendor class: the lease's variable data ([`lease_store::VarData`],
//!   read with the record by the store: [`lease_to_binding_var`], [`write_binding_var`];
//!   carried whole in client-request-options);
//! * xdhcpd's reconfigure flags ([`FLAG_RECONFIGURING`], [`FLAG_RECONF_KEY`]): to an xdhcpd
//!   partner only (vendor-options). Changing them moves no time of the record, so whoever
//!   changes them calls [`partner_lacks`] to make the record unacknowledged.
//!
//! A record is *unacknowledged* when it changed after the version the partner holds:
//! `change_time > tsfp`, or (ACTIVE) a larger potential expiration than the partner committed
//! to. This is what a restarted server re-sends (draft-12 UPDREQ) without any queue on disk.

use lease_store::{
    ClientKey, KeyKind, Lease, LeaseState, Owner, VarData, FLAG_BOOTP, FLAG_RECONFIGURING,
    FLAG_RECONF_KEY,
};

use crate::types::{Binding, BindingStatus, IP_FLAG_BOOTP};

/// Seconds of the newest event in the record: the binding start, the client's last
/// transaction, and for RELEASED/EXPIRED the moment the lease ended (`expiry`).
pub fn change_time(l: &Lease) -> u32 {
    let end = match l.state {
        LeaseState::Released | LeaseState::Expired => l.expiry,
        _ => 0,
    };
    l.start.max(l.cltt).max(end)
}

/// Change time of a binding as [`lease_to_binding`] builds it.
pub fn binding_change_time(b: &Binding) -> u32 {
    b.start.max(b.cltt)
}

/// Failover status of a record, or None when it is not exchanged with the partner
/// (OFFERED: offers are not sent; RESERVED: both partners have the same reservations).
/// This is the one map from lease states to draft-12 binding states.
pub fn status_of(l: &Lease) -> Option<BindingStatus> {
    Some(match l.state {
        LeaseState::Free => BindingStatus::Free,
        LeaseState::Backup => BindingStatus::Backup,
        LeaseState::Active => BindingStatus::Active,
        LeaseState::Expired => BindingStatus::Expired,
        LeaseState::Released => BindingStatus::Released,
        // Draft-12 5.13 / ISC dhcpd: an address a client declined is in use by someone
        // unknown, which is what ABANDONED says; it is never handed out on the partner's word.
        LeaseState::Declined | LeaseState::Abandoned => BindingStatus::Abandoned,
        LeaseState::Offered | LeaseState::Reserved => return None,
    })
}

/// The binding status under which the DHCP engine considers giving this record to a *new*
/// client at `now` ([`crate::FailoverPolicy::may_allocate`] decides): an offer or lease that
/// has ended counts as EXPIRED, a live one as ACTIVE; otherwise [`status_of`].
pub fn allocation_status(l: &Lease, now: u32) -> BindingStatus {
    match l.state {
        // A permanent (dynamic BOOTP) binding never ends, whatever its expiry says.
        LeaseState::Offered | LeaseState::Active if l.expiry <= now && !l.is_permanent() => {
            BindingStatus::Expired
        }
        LeaseState::Offered | LeaseState::Active | LeaseState::Reserved => BindingStatus::Active,
        _ => status_of(l).unwrap_or(BindingStatus::Abandoned),
    }
}

/// The latest moment anyone (we, or the partner on our word) may consider this record's last
/// binding still live, plus the expiry grace (clock offsets between the partners): what
/// [`crate::FailoverPolicy::may_allocate`] counts MCLT from.
pub fn allocation_last_end(l: &Lease, grace: u32) -> u32 {
    l.expiry
        .max(l.potential_expiry)
        .max(l.acked_potential_expiry)
        .saturating_add(grace)
}

fn client_id_of(l: &Lease) -> Vec<u8> {
    // A hashed identifier cannot be sent; the hardware address then identifies the client.
    if l.client.kind() == KeyKind::ClientId && !l.client.is_hashed() {
        l.client.as_bytes().to_vec()
    } else {
        Vec::new()
    }
}

/// The binding to send to the partner for this record (None: not exchanged).
/// `potential_expiry` is the value we ask the partner to commit to. The variable data are
/// what the record holds inline ([`lease_to_binding_var`] with the store's data).
pub fn lease_to_binding(l: &Lease) -> Option<Binding> {
    lease_to_binding_var(l, &l.var.inline_data())
}

/// [`lease_to_binding`] with the record's variable data `v` (option 82 whole, host name,
/// vendor class), as the store read them with the record.
pub fn lease_to_binding_var(l: &Lease, v: &VarData) -> Option<Binding> {
    let status = status_of(l)?;
    Some(binding_with(
        l,
        v,
        status,
        l.potential_expiry.max(l.acked_potential_expiry),
    ))
}

/// The record as [`crate::resolve_update`] / [`crate::apply_ack`] see it:
/// `potential_expiry` is what the partner committed to. OFFERED counts as the free state it
/// was taken from (an offer binds nobody); RESERVED as ACTIVE.
pub fn lease_to_local(l: &Lease) -> Binding {
    let status = match l.state {
        LeaseState::Offered => match l.owner {
            Owner::Primary => BindingStatus::Free,
            Owner::Backup => BindingStatus::Backup,
        },
        LeaseState::Reserved => BindingStatus::Active,
        _ => status_of(l).unwrap_or(BindingStatus::Free),
    };
    let mut b = binding_with(l, &l.var.inline_data(), status, l.acked_potential_expiry);
    if l.state == LeaseState::Offered {
        b.client_id.clear();
        b.htype = 0;
        b.chaddr.clear();
        b.lease_expiry = 0;
        b.potential_expiry = 0;
    }
    b
}

fn binding_with(l: &Lease, v: &VarData, status: BindingStatus, potential: u32) -> Binding {
    let active = status == BindingStatus::Active;
    let has_client = !l.client.is_none();
    Binding {
        addr: l.addr,
        status,
        client_id: if has_client {
            client_id_of(l)
        } else {
            Vec::new()
        },
        htype: if has_client { l.htype } else { 0 },
        chaddr: if has_client {
            l.hw().to_vec()
        } else {
            Vec::new()
        },
        lease_expiry: if active { l.expiry } else { 0 },
        potential_expiry: if active { potential.max(l.expiry) } else { 0 },
        cltt: l.cltt,
        start: change_start(l),
        relay_agent_info: if has_client {
            v.relay_agent_info().to_vec()
        } else {
            Vec::new()
        },
        host_name: if has_client {
            v.host_name().to_vec()
        } else {
            Vec::new()
        },
        vendor_class: if has_client {
            v.vendor_class().to_vec()
        } else {
            Vec::new()
        },
        // Draft-12 5.14: the B bit for a BOOTP client's binding (to every partner).
        flags: if active && l.flags & FLAG_BOOTP != 0 {
            IP_FLAG_BOOTP
        } else {
            0
        },
        reconfiguring: active && l.flags & FLAG_RECONFIGURING != 0,
        reconf_key: active && l.flags & FLAG_RECONF_KEY != 0,
    }
}

/// The record changed in what no time of it says (xdhcpd's reconfigure flags): the partner
/// lacks this version. Its acknowledgement of this version settles it again ([`write_ack`]).
pub fn partner_lacks(l: &mut Lease) {
    l.tsfp = l.tsfp.min(change_time(l).saturating_sub(1));
}

/// Sets or clears the reconfiguring flag of an ACTIVE binding (the reconfigure campaign's
/// writes); the partner then lacks the record. Returns whether it changed.
pub fn set_reconfiguring(l: &mut Lease, on: bool) -> bool {
    let was = l.flags & FLAG_RECONFIGURING != 0;
    if was == on || (on && l.state != LeaseState::Active) {
        return false;
    }
    if on {
        l.flags |= FLAG_RECONFIGURING;
    } else {
        l.flags &= !FLAG_RECONFIGURING;
    }
    partner_lacks(l);
    true
}

/// Restart or failover takeover (the reconfigure spec: "server restart or HA switchover:
/// reconfiguration stops"): clears the reconfiguring flag unless `deferred_nak` keeps it
/// (the client is then NAKed at its next renewal by whichever server it asks). Returns
/// whether the record changed.
pub fn stop_reconfiguring(l: &mut Lease, deferred_nak: bool) -> bool {
    !deferred_nak && set_reconfiguring(l, false)
}

/// Start time of the current binding status: for RELEASED/EXPIRED the end of the lease.
fn change_start(l: &Lease) -> u32 {
    match l.state {
        LeaseState::Released | LeaseState::Expired => l.start.max(l.expiry),
        _ => l.start,
    }
}

/// Writes an accepted partner binding into record `r` (the caller holds the record lock).
/// The record then counts as held by the partner.
pub fn write_binding(r: &mut Lease, b: &Binding) {
    let mut v = r.var.inline_data();
    write_binding_var(r, &mut v, b);
    // Data that need the side area are written by a store that has one
    // ([`write_binding_var`] under `BindingStore::update_full`); here only the handle.
    r.var = v.var_ref();
}

/// [`write_binding`] with the record's variable data `v` (the partner's option 82 whole,
/// host name and vendor class replace ours for an ACTIVE binding).
pub fn write_binding_var(r: &mut Lease, v: &mut VarData, b: &Binding) {
    match b.status {
        BindingStatus::Active => {
            let key = if b.client_id.is_empty() {
                ClientKey::from_hw(b.htype, &b.chaddr)
            } else {
                ClientKey::from_client_id(&b.client_id)
            };
            r.state = LeaseState::Active;
            r.client = key;
            r.htype = b.htype;
            let n = b.chaddr.len().min(16);
            r.hlen = n as u8;
            r.chaddr = [0; 16];
            r.chaddr[..n].copy_from_slice(&b.chaddr[..n]);
            r.expiry = b.lease_expiry;
            r.start = b.start;
            r.cltt = b.cltt;
            r.lease_time = b.lease_expiry.saturating_sub(b.start.max(b.cltt));
            r.potential_expiry = b.potential_expiry;
            r.acked_potential_expiry = b.potential_expiry;
            r.tstp = b.lease_expiry;
            // xdhcpd's flags as the partner holds them (none from other partners).
            r.flags &= !(FLAG_RECONFIGURING | FLAG_RECONF_KEY);
            if b.reconfiguring {
                r.flags |= FLAG_RECONFIGURING;
            }
            if b.reconf_key {
                r.flags |= FLAG_RECONF_KEY;
            }
            // A BOOTP client's binding (the B bit): permanent here too, whatever lease end
            // the partner wrote (ours 0xffffffff, ISC dhcpd's 0x7fffffff).
            if b.flags & IP_FLAG_BOOTP != 0 {
                r.flags |= FLAG_BOOTP;
            } else {
                r.flags &= !FLAG_BOOTP;
            }
            // Whole (any valid option 82 fits); one that is no valid option (over 255
            // bytes) is kept nowhere rather than cut (a cut option 82 would name another
            // subscriber). Host name and vendor class: as the per-lease bound allows.
            *v = VarData::from_parts(
                if b.relay_agent_info.len() <= lease_store::RELAY_AGENT_INFO_MAX {
                    b.relay_agent_info.as_slice()
                } else {
                    &[]
                },
                &b.host_name,
                &b.vendor_class,
            );
        }
        other => {
            let (state, owner) = match other {
                BindingStatus::Backup => (LeaseState::Backup, Owner::Backup),
                BindingStatus::Abandoned => (LeaseState::Abandoned, r.owner),
                BindingStatus::Released => (LeaseState::Released, r.owner),
                BindingStatus::Expired => (LeaseState::Expired, r.owner),
                _ => (LeaseState::Free, Owner::Primary),
            };
            r.clear_binding();
            *v = VarData::EMPTY;
            r.flags &= !(FLAG_RECONFIGURING | FLAG_RECONF_KEY | FLAG_BOOTP);
            r.state = state;
            r.owner = owner;
            r.start = b.start;
            r.cltt = b.cltt;
            r.expiry = b.start;
        }
    }
    r.tsfp = r.tsfp.max(change_time(r)).max(binding_change_time(b));
}

/// Does the partner lack the current version of this record?
pub fn unacked(l: &Lease) -> bool {
    if status_of(l).is_none() {
        return false;
    }
    change_time(l) > l.tsfp
        || (l.state == LeaseState::Active && l.potential_expiry > l.acked_potential_expiry)
}

/// Part of a full binding dump (UPDREQALL): every record that ever held anything.
pub fn worth_sending_all(l: &Lease) -> bool {
    status_of(l).is_some() && (l.state != LeaseState::Free || l.start != 0 || l.tsfp != 0)
}

/// A record a worker reported changed: the binding to queue for the partner, or None
/// (offers and reservations are not exchanged; a withdrawn offer left a free state the
/// partner already holds). `v`: the record's variable data.
pub fn binding_for_change(l: &Lease, v: &VarData) -> Option<Binding> {
    if matches!(l.state, LeaseState::Free | LeaseState::Backup) && change_time(l) <= l.tsfp {
        return None;
    }
    lease_to_binding_var(l, v)
}

/// The client's DHCPRELEASE at `now`, if `l` is its ACTIVE binding: RELEASED, the client kept on
/// the record (it gets the same address back if it returns soon, RFC 2131 4.3.1), and `now` as
/// the client's last transaction: the partner orders our RELEASED against its ACTIVE copy by
/// that time (draft-12 7.1.3), so without it the release is refused as outdated.
pub fn release(l: &mut Lease, key: &ClientKey, now: u32) -> bool {
    if l.state != LeaseState::Active || l.client != *key {
        return false;
    }
    l.state = LeaseState::Released;
    l.expiry = now;
    l.cltt = l.cltt.max(now);
    true
}

/// Primary, granting a free address to the backup: FREE -> BACKUP (only a FREE record that
/// was not quarantined). Returns whether the record changed.
pub fn grant_to_backup(r: &mut Lease, now: u32) -> bool {
    if r.state != LeaseState::Free || r.is_quarantined() {
        return false;
    }
    r.clear_binding();
    r.state = LeaseState::Backup;
    r.owner = Owner::Backup;
    r.start = now;
    r.expiry = now;
    true
}

/// Whether an acknowledgement of `sent` settles this record (see [`crate::apply_ack`]), with
/// the record updated accordingly: a RELEASED/EXPIRED or reclaim acknowledged makes the address
/// FREE (the primary's); an ACTIVE one raises what the partner committed to.
pub fn write_ack(r: &mut Lease, sent: &Binding) {
    let local = lease_to_local(r);
    let out = crate::apply_ack(&local, sent);
    if let Some(nb) = &out.record {
        if nb.status == BindingStatus::Free && local.status != BindingStatus::Free {
            let start = nb.start;
            r.clear_binding();
            r.state = LeaseState::Free;
            r.owner = Owner::Primary;
            r.start = start;
            r.expiry = start;
        } else if nb.status == BindingStatus::Active {
            r.acked_potential_expiry = r.acked_potential_expiry.max(nb.potential_expiry);
        }
    }
    if out.up_to_date {
        r.tsfp = r.tsfp.max(binding_change_time(sent));
        if sent.status == BindingStatus::Active {
            r.tstp = sent.lease_expiry;
            r.acked_potential_expiry = r.acked_potential_expiry.max(sent.potential_expiry);
        }
        if out.record.is_some() {
            r.tsfp = r.tsfp.max(change_time(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn active() -> Lease {
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 5));
        l.state = LeaseState::Active;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 1]);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        l.start = 1000;
        l.cltt = 1000;
        l.expiry = 1600;
        l.potential_expiry = 2000;
        assert!(l.set_relay_agent_info(&[1, 1, 7]));
        l
    }

    #[test]
    fn failover_varlen_binding_carries_120_byte_option82_host_name_vendor_class_whole() {
        let l = active();
        let ri: Vec<u8> = (0..120u8).collect();
        let mut v = VarData::EMPTY;
        assert!(v.set_relay_agent_info(&ri));
        assert!(v.set_host_name(b"cpe-host"));
        assert!(v.set_vendor_class(b"docsis3.1"));
        let b = lease_to_binding_var(&l, &v).expect("active is exchanged");
        assert_eq!(b.relay_agent_info, ri);
        // Through the wire form (client-request-options) and back.
        let t = crate::engine::txn_from_binding(&b);
        let back = crate::engine::binding_from_txn(&t, 1000).expect("decodes");
        assert_eq!(
            (&back.relay_agent_info, &back.host_name, &back.vendor_class),
            (&ri, &b"cpe-host".to_vec(), &b"docsis3.1".to_vec())
        );
        let mut r = Lease::free(l.addr);
        let mut rv = VarData::EMPTY;
        write_binding_var(&mut r, &mut rv, &back);
        assert_eq!(rv, v);
        // The store keeps the handle with the data.
        assert_eq!(rv.var_ref(), v.var_ref());
    }

    #[test]
    fn active_round_trip_keeps_client_times_and_option82() {
        let l = active();
        let b = lease_to_binding(&l).expect("active is exchanged");
        assert_eq!(b.status, BindingStatus::Active);
        assert_eq!(b.chaddr, vec![2, 0, 0, 0, 0, 1]);
        assert_eq!(b.lease_expiry, 1600);
        assert_eq!(b.potential_expiry, 2000);
        assert_eq!(b.relay_agent_info, vec![1, 1, 7]);
        let mut r = Lease::free(l.addr);
        write_binding(&mut r, &b);
        assert_eq!(r.state, LeaseState::Active);
        assert_eq!(r.client, l.client);
        assert_eq!(r.expiry, 1600);
        assert_eq!(r.acked_potential_expiry, 2000);
        assert_eq!(r.inline_relay_agent_info(), Some(&[1, 1, 7][..]));
        assert!(
            !unacked(&r),
            "a binding received from the partner is held by it"
        );
    }

    #[test]
    fn unacked_follows_changes_after_the_acked_version() {
        let mut l = active();
        assert!(unacked(&l));
        l.tsfp = 1000;
        l.acked_potential_expiry = 2000;
        assert!(!unacked(&l));
        // Renewal: larger potential expiration not yet committed by the partner.
        l.potential_expiry = 2600;
        assert!(unacked(&l));
        l.acked_potential_expiry = 2600;
        // Sweeper expired it: the end of the lease is the change.
        l.state = LeaseState::Expired;
        assert!(unacked(&l));
        l.tsfp = 1600;
        assert!(!unacked(&l));
        // Offers never go to the partner.
        l.state = LeaseState::Offered;
        l.tsfp = 0;
        assert!(!unacked(&l));
    }

    #[test]
    fn released_binding_starts_at_release_time() {
        let mut l = active();
        l.state = LeaseState::Released;
        l.expiry = 1200;
        let b = lease_to_binding(&l).expect("released is exchanged");
        assert_eq!(b.status, BindingStatus::Released);
        assert_eq!(b.start, 1200);
        assert_eq!(b.lease_expiry, 0);
        assert_eq!(binding_change_time(&b), change_time(&l));
    }

    #[test]
    fn offered_record_is_its_free_state_for_conflict_resolution() {
        let mut l = active();
        l.state = LeaseState::Offered;
        l.owner = Owner::Backup;
        let b = lease_to_local(&l);
        assert_eq!(b.status, BindingStatus::Backup);
        assert!(!b.has_client());
    }

    #[test]
    fn backup_grant_written_from_partner() {
        let mut r = active();
        let b = Binding {
            status: BindingStatus::Backup,
            ..Binding::free(r.addr, 5000)
        };
        write_binding(&mut r, &b);
        assert_eq!(r.state, LeaseState::Backup);
        assert_eq!(r.owner, Owner::Backup);
        assert!(r.client.is_none());
        assert!(!unacked(&r));
    }

    #[test]
    fn declined_is_abandoned_for_the_partner_and_for_allocation() {
        let mut l = active();
        l.state = LeaseState::Declined;
        l.expiry = 5000;
        assert_eq!(status_of(&l), Some(BindingStatus::Abandoned));
        assert_eq!(allocation_status(&l, 6000), BindingStatus::Abandoned);
    }

    #[test]
    fn ended_offer_or_lease_is_expired_for_allocation() {
        let mut l = active();
        assert_eq!(allocation_status(&l, 1500), BindingStatus::Active);
        assert_eq!(allocation_status(&l, 1600), BindingStatus::Expired);
        l.state = LeaseState::Offered;
        assert_eq!(allocation_status(&l, 1700), BindingStatus::Expired);
        assert_eq!(allocation_last_end(&l, 30), 2030);
    }

    #[test]
    fn withdrawn_offer_is_not_sent_again() {
        let mut l = Lease::free(Ipv4Addr::new(10, 0, 0, 9));
        l.start = 100;
        l.tsfp = 100;
        assert!(binding_for_change(&l, &VarData::EMPTY).is_none());
        l.start = 101;
        assert!(binding_for_change(&l, &VarData::EMPTY).is_some());
    }

    #[test]
    fn failover_reconfiguring_flag_travels_and_is_acknowledged_like_a_change() {
        let mut l = active();
        l.tsfp = 1000;
        l.acked_potential_expiry = 2000;
        assert!(!unacked(&l));
        // The campaign flags the binding: no time moves, yet the partner lacks it.
        assert!(set_reconfiguring(&mut l, true));
        assert!(!set_reconfiguring(&mut l, true), "already set: no change");
        assert!(unacked(&l), "a flag change makes the record unacknowledged");
        let b = lease_to_binding(&l).expect("active");
        assert!(b.reconfiguring);
        // The partner stores it (and would NAK the client's next REQUEST).
        let mut r = Lease::free(l.addr);
        write_binding(&mut r, &b);
        assert_eq!(r.flags & FLAG_RECONFIGURING, FLAG_RECONFIGURING);
        assert!(!unacked(&r));
        // An acknowledgement of the version before the flag does not settle it...
        let mut before = b.clone();
        before.reconfiguring = false;
        let mut l2 = l;
        write_ack(&mut l2, &before);
        assert!(unacked(&l2));
        // ...the acknowledgement of the flagged version does.
        write_ack(&mut l, &b);
        assert!(!unacked(&l));
        // A partner's update without the flag (a renewal there; any ISC update) clears it.
        let mut plain = b.clone();
        plain.reconfiguring = false;
        write_binding(&mut r, &plain);
        assert_eq!(r.flags & FLAG_RECONFIGURING, 0);
        // Ending the binding on the partner's word clears it too.
        write_binding(&mut r, &b);
        let released = Binding {
            status: BindingStatus::Released,
            ..Binding::free(r.addr, 1700)
        };
        write_binding(&mut r, &released);
        assert_eq!(r.flags & (FLAG_RECONFIGURING | FLAG_RECONF_KEY), 0);
        // Only an ACTIVE binding is flagged.
        let mut free = Lease::free(l.addr);
        assert!(!set_reconfiguring(&mut free, true));
    }

    #[test]
    fn failover_takeover_stops_reconfiguring_unless_deferred_nak() {
        let mut l = active();
        l.tsfp = 1000;
        l.acked_potential_expiry = 2000;
        assert!(set_reconfiguring(&mut l, true));
        let mut kept = l;
        assert!(
            !stop_reconfiguring(&mut kept, true),
            "deferred-nak keeps the flag"
        );
        assert_eq!(kept.flags & FLAG_RECONFIGURING, FLAG_RECONFIGURING);
        l.tsfp = 1000;
        assert!(stop_reconfiguring(&mut l, false));
        assert_eq!(l.flags & FLAG_RECONFIGURING, 0);
        assert!(unacked(&l), "the partner learns the flag is gone");
        assert!(!lease_to_binding(&l).expect("active").reconfiguring);
    }

    #[test]
    fn bootp_binding_carries_the_b_bit_and_a_permanent_end() {
        let mut l = active();
        l.expiry = lease_store::EXPIRY_PERMANENT;
        l.potential_expiry = lease_store::EXPIRY_PERMANENT;
        l.flags |= FLAG_BOOTP;
        let b = lease_to_binding(&l).expect("active is exchanged");
        assert_eq!(b.flags & IP_FLAG_BOOTP, IP_FLAG_BOOTP);
        assert_eq!(b.lease_expiry, 0xffff_ffff);
        assert_eq!(b.potential_expiry, 0xffff_ffff);
        // The partner applies it: permanent there too.
        let mut r = Lease::free(l.addr);
        write_binding(&mut r, &b);
        assert!(r.is_permanent());
        assert_eq!(r.expiry, 0xffff_ffff);
        // A DHCP binding carries no B bit.
        assert_eq!(lease_to_binding(&active()).expect("active").flags, 0);
    }

    #[test]
    fn bootp_binding_from_isc_with_its_forever_stays_permanent() {
        // ISC dhcpd writes a BOOTP lease's end as MAX_TIME (0x7fffffff) with the B bit.
        let mut b = lease_to_binding(&active()).expect("active");
        b.flags = IP_FLAG_BOOTP;
        b.lease_expiry = 0x7fff_ffff;
        b.potential_expiry = 0x7fff_ffff;
        let mut r = Lease::free(b.addr);
        write_binding(&mut r, &b);
        assert!(r.is_permanent());
        // Past 2038 it is still held for allocation.
        assert_eq!(allocation_status(&r, 0x8000_0000), BindingStatus::Active);
        // The partner's later DHCP binding for the address drops the flag; a free one too.
        b.flags = 0;
        b.lease_expiry = 5000;
        write_binding(&mut r, &b);
        assert!(!r.is_permanent());
        assert_eq!(r.flags & FLAG_BOOTP, 0);
        r.flags |= FLAG_BOOTP;
        let free = Binding::free(r.addr, 6000);
        write_binding(&mut r, &free);
        assert_eq!(r.flags & FLAG_BOOTP, 0);
    }
}
