//! Pure helpers the driver applies to its lease table: accepting a partner's binding update
//! (draft-12 figure 7.1.3-1) and recording a partner's acknowledgement.

use crate::types::{Binding, BindingStatus, RejectReason, Role};

/// Outcome of [`resolve_update`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateDecision {
    /// Write this record (it already has EXPIRED/RELEASED/RESET turned into FREE and the
    /// potential expiration set to what we acknowledge), then confirm with
    /// [`crate::FailoverEngine::binding_applied`] `Ok(())`.
    Accept(Binding),
    /// Leave the record alone and confirm with `Err((reason, message))`.
    Reject(RejectReason, &'static str),
}

/// "Is the BNDUPD's client-last-transaction-time later than `than`?" (draft-12 7.1.3: a
/// missing incoming CLTT is never later; a missing local one is always earlier).
fn later(incoming: u32, than: u32) -> bool {
    incoming != 0 && (than == 0 || incoming > than)
}

/// Decides whether to accept a partner's binding update for an address whose local record is
/// `local` (None = unknown to us, treated as FREE). `role` is ours. `grace` is the expiry
/// sweeper's grace period: a local lease counts as ended only `grace` seconds after its end
/// (so clock offsets between the partners never free a binding early), an incoming one as soon
/// as its end has passed.
pub fn resolve_update(
    local: Option<&Binding>,
    incoming: &Binding,
    now: u32,
    grace: u32,
    role: Role,
) -> UpdateDecision {
    use BindingStatus::*;
    let Some(l) = local else {
        return UpdateDecision::Accept(accepted(None, incoming));
    };
    let outdated = UpdateDecision::Reject(
        RejectReason::OutdatedBindingInfo,
        "outdated binding information",
    );
    let time1 = || later(incoming.cltt, l.cltt);
    let local_ended = now > l.lease_expiry.saturating_add(grace);
    let time2 = || local_ended;
    let ok = match (l.status, incoming.status) {
        (Active, Active) if l.same_client(incoming) => true,
        (Active, Active) => {
            // Two clients. An expired binding is no conflict: the live one wins (refinement
            // of the draft's rule 5, which assumes both are live).
            if local_ended {
                true
            } else if now > incoming.lease_expiry {
                false
            } else if role == Role::Primary {
                return UpdateDecision::Reject(
                    RejectReason::FatalConflict,
                    "address in use by another client",
                );
            } else {
                // Draft-12 figure 7.1.3-1 (5): the secondary yields to the primary.
                true
            }
        }
        (Active, Expired | Free | Backup) => time2(),
        (Active, Released) => time1(),
        (Active, Reset | Abandoned) => true,
        (Expired, Active) => time1(),
        (Released, Active | Expired) => time1(),
        // A BACKUP grant older than the lease that ended since: the partner re-sent a grant
        // whose BNDACK it lost, and the address has been leased and ended here after it.
        // Taking it back to BACKUP would leave it BACKUP here and FREE there once our ended
        // lease reaches the partner: both would lease it (found by the simulation, seed 316).
        (Expired | Released, Backup) => incoming.start > l.start,
        (Expired, _) => true,
        (Released, _) => true,
        // A BACKUP address stops being the backup's only by newer information: a FREE (or an
        // ended lease) that started before the grant is stale. Updates crossing on the wire
        // (the primary grants while the secondary's older FREE is in flight) would otherwise
        // leave the primary FREE and the secondary BACKUP: both would lease the address. A
        // reclaim (`reclaim_binding`) always starts after the grant.
        (Backup, Free | Expired | Released | Reset) => incoming.start > l.start,
        (Free | Backup, _) => true,
        (Reset, Active) => later(incoming.cltt, l.start),
        (Reset, _) => true,
        (Abandoned, Reset | Abandoned) => true,
        (Abandoned, _) => {
            return UpdateDecision::Reject(
                RejectReason::LessCriticalBindingInfo,
                "less critical binding information",
            )
        }
    };
    if ok {
        UpdateDecision::Accept(accepted(Some(l), incoming))
    } else {
        outdated
    }
}

/// The record to store for an accepted update.
fn accepted(local: Option<&Binding>, incoming: &Binding) -> Binding {
    let mut b = incoming.clone();
    if b.status == BindingStatus::Active {
        // Same client: never move the lease end or the committed potential expiration
        // backwards (draft-12 7.1.5: keep the later lease-expiration-time).
        if let Some(l) =
            local.filter(|l| l.status == BindingStatus::Active && l.same_client(incoming))
        {
            b.lease_expiry = b.lease_expiry.max(l.lease_expiry);
            b.potential_expiry = b.potential_expiry.max(l.potential_expiry);
            // A partner that carries no client data (ISC dhcpd sends no
            // client-request-options) leaves what we know of the same client.
            if b.relay_agent_info.is_empty() {
                b.relay_agent_info = l.relay_agent_info.clone();
            }
            if b.host_name.is_empty() {
                b.host_name = l.host_name.clone();
            }
            if b.vendor_class.is_empty() {
                b.vendor_class = l.vendor_class.clone();
            }
        }
        b.potential_expiry = b.potential_expiry.max(b.lease_expiry);
    } else {
        if b.status.frees_on_ack() {
            // Draft-12 5.11: the acknowledging server sets the address FREE.
            b.status = BindingStatus::Free;
        }
        // A committed potential expiration belongs to one client's binding; an address that
        // is not ACTIVE starts from scratch (first lease <= MCLT).
        b.potential_expiry = 0;
        b.lease_expiry = 0;
    }
    b
}

/// Primary, reclaiming a BACKUP address: the FREE binding update to send for `local` (a
/// BACKUP record). The local record must stay BACKUP until the partner acknowledges this update
/// ([`apply_ack`] then turns it FREE): until then the secondary may still lease the address,
/// and then rejects the update (its ACTIVE binding beats FREE in [`resolve_update`]) and sends
/// its own. Its `start` is later than the record's, which is what tells the acknowledgement of
/// a reclaim from a stale acknowledgement of an older FREE update sent before the address was
/// granted (see [`apply_ack`]).
pub fn reclaim_binding(local: &Binding, now: u32) -> Binding {
    Binding::free(local.addr, now.max(local.start.saturating_add(1)))
}

/// Is `sent` a reclaim ([`reclaim_binding`]) of the BACKUP record `local`?
fn is_reclaim_of(local: &Binding, sent: &Binding) -> bool {
    local.status == BindingStatus::Backup
        && sent.status == BindingStatus::Free
        && sent.start > local.start
}

/// Result of [`apply_ack`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckOutcome {
    /// Record to write, when it changes.
    pub record: Option<Binding>,
    /// True when the acknowledged update is the record's latest content (nothing of this
    /// address remains unacknowledged).
    pub up_to_date: bool,
}

/// Applies a partner's acknowledgement of `sent` to the local record `local`. An acknowledged
/// reclaim ([`reclaim_binding`]) of a record that is still BACKUP makes it FREE.
pub fn apply_ack(local: &Binding, sent: &Binding) -> AckOutcome {
    // xdhcpd's reconfigure flags are part of the version: an acknowledgement of the binding
    // before the flag changed leaves the record unacknowledged.
    let same_version = local.status == sent.status
        && local.same_client(sent)
        && local.lease_expiry == sent.lease_expiry
        && local.reconfiguring == sent.reconfiguring
        && local.reconf_key == sent.reconf_key;
    if sent.status == BindingStatus::Active
        && local.status == BindingStatus::Active
        && local.same_client(sent)
    {
        let mut r = local.clone();
        r.potential_expiry = r.potential_expiry.max(sent.potential_expiry);
        let changed = r.potential_expiry != local.potential_expiry;
        return AckOutcome {
            record: changed.then_some(r),
            up_to_date: same_version,
        };
    }
    if is_reclaim_of(local, sent) {
        // The partner gave a BACKUP address back (it was still BACKUP there): FREE, ours.
        let mut r = Binding::free(local.addr, sent.start);
        r.cltt = local.cltt;
        return AckOutcome {
            record: Some(r),
            up_to_date: true,
        };
    }
    if same_version && sent.status.frees_on_ack() {
        let mut r = local.clone();
        r.status = BindingStatus::Free;
        r.potential_expiry = 0;
        r.lease_expiry = 0;
        r.start = r.start.max(sent.start);
        return AckOutcome {
            record: Some(r),
            up_to_date: true,
        };
    }
    AckOutcome {
        record: None,
        up_to_date: same_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);

    fn backup(start: u32) -> Binding {
        Binding {
            status: BindingStatus::Backup,
            ..Binding::free(A, start)
        }
    }

    fn active(start: u32, end: u32) -> Binding {
        Binding {
            status: BindingStatus::Active,
            chaddr: vec![2, 0, 0, 0, 0, 7],
            htype: 1,
            cltt: start,
            lease_expiry: end,
            potential_expiry: end,
            ..Binding::free(A, start)
        }
    }

    #[test]
    fn secondary_accepts_a_reclaim_only_while_the_address_is_unused() {
        let r = reclaim_binding(&backup(100), 150);
        assert_eq!(r.status, BindingStatus::Free);
        assert_eq!(r.start, 150);
        // Still BACKUP there (or only offered: an offer counts as its free state): accepted.
        match resolve_update(Some(&backup(100)), &r, 150, 0, Role::Secondary) {
            UpdateDecision::Accept(b) => assert_eq!(b.status, BindingStatus::Free),
            d => panic!("reclaim of an unused BACKUP address refused: {d:?}"),
        }
        // The secondary leased it meanwhile: its ACTIVE binding wins.
        let d = resolve_update(Some(&active(140, 740)), &r, 150, 0, Role::Secondary);
        assert!(
            matches!(
                d,
                UpdateDecision::Reject(RejectReason::OutdatedBindingInfo, _)
            ),
            "{d:?}"
        );
        // The primary then accepts the secondary's ACTIVE over its (still BACKUP) record.
        let d = resolve_update(Some(&backup(100)), &active(140, 740), 151, 0, Role::Primary);
        assert!(matches!(d, UpdateDecision::Accept(b) if b.status == BindingStatus::Active));
    }

    #[test]
    fn stale_free_from_the_partner_does_not_undo_a_grant() {
        // Primary granted at 100; the secondary's FREE of 95 crossed it on the wire.
        let d = resolve_update(
            Some(&backup(100)),
            &Binding::free(A, 95),
            101,
            0,
            Role::Primary,
        );
        assert!(matches!(d, UpdateDecision::Reject(..)), "{d:?}");
        let d = resolve_update(
            Some(&backup(100)),
            &Binding::free(A, 100),
            101,
            0,
            Role::Primary,
        );
        assert!(matches!(d, UpdateDecision::Reject(..)), "{d:?}");
        // A lease the secondary ended after the grant frees the address (draft-12: FREE).
        let ended = Binding {
            status: BindingStatus::Expired,
            ..Binding::free(A, 700)
        };
        let d = resolve_update(Some(&backup(100)), &ended, 701, 0, Role::Primary);
        assert!(matches!(d, UpdateDecision::Accept(b) if b.status == BindingStatus::Free));
    }

    #[test]
    fn reclaim_start_is_later_than_the_grant_even_in_the_same_second() {
        assert_eq!(reclaim_binding(&backup(100), 100).start, 101);
        assert_eq!(reclaim_binding(&backup(100), 90).start, 101);
    }

    #[test]
    fn acked_reclaim_frees_the_address_but_a_stale_free_ack_does_not() {
        let local = backup(100);
        let out = apply_ack(&local, &reclaim_binding(&local, 120));
        assert!(out.up_to_date);
        let r = out.record.expect("the reclaim frees the record");
        assert_eq!(r.status, BindingStatus::Free);
        assert_eq!(r.start, 120);
        // An older FREE update (queued before the grant at 100) acknowledged late must not
        // undo the grant: the secondary now holds the address as BACKUP.
        let stale = Binding::free(A, 100);
        let out = apply_ack(&local, &stale);
        assert_eq!(out.record, None);
        assert!(!out.up_to_date);
        let out = apply_ack(&local, &Binding::free(A, 60));
        assert_eq!(out.record, None);
        // The record changed meanwhile (the secondary's ACTIVE arrived): the ack changes nothing.
        let out = apply_ack(&active(110, 700), &reclaim_binding(&local, 120));
        assert_eq!(out.record, None);
    }
}
