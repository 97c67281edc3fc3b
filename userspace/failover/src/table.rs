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
        (Expired, _) => true,
        (Released, Active | Expired) => time1(),
        (Released, _) => true,
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
            if b.relay_agent_info.is_empty() {
                b.relay_agent_info = l.relay_agent_info.clone();
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

/// Result of [`apply_ack`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckOutcome {
    /// Record to write, when it changes.
    pub record: Option<Binding>,
    /// True when the acknowledged update is the record's latest content (nothing of this
    /// address remains unacknowledged).
    pub up_to_date: bool,
}

/// Applies a partner's acknowledgement of `sent` to the local record `local`.
pub fn apply_ack(local: &Binding, sent: &Binding) -> AckOutcome {
    let same_version = local.status == sent.status
        && local.same_client(sent)
        && local.lease_expiry == sent.lease_expiry;
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
